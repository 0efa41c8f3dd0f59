// Facilitators (issue 10, end-to-end acceptance): real BitTorrent software from Debian on
// loopback, a real bridge as facilitator, real pages in headless Chromium.
//
// The test starts opentracker (whitelisting every torrent below), makes torrents with mktorrent
// (256 KiB pieces) and seeds each with its own aria2c (no DHT, no local peer discovery, no peer
// exchange). The bridge runs with `--bt-dht off --tracker <announce>`, so the facilitator finds
// the seeders through the tracker only. Pages A..E form the mesh (enough for 3-hop circuits).
//   1. A opens the video's magnet link in "Open a link": the video plays before the download
//      completes (the time from magnet link to first frame is printed); SHA-256 of blob() is the
//      file's; the page says the bytes come from BitTorrent via a facilitator.
//   2. A multi-file torrent: C sees its files listed under the player, picks the video clip; it
//      plays and verifies; aria2c's upload counter and the facilitator's librqbit both show that
//      exactly the clip's pieces were fetched (its boundary pieces whole), nothing of the others.
//   3. Bad input: a malformed magnet link gets a sentence at once; an unknown infohash fails
//      with the facilitator's sentence once its metadata timeout (10 s here) passes.
//   3b. A page reloaded mid-torrent: B opens a fresh torrent's magnet link and reloads once it
//      holds a fifth of the pieces. Nobody in the mesh holds the torrent, so only the magnet
//      link stored with B's partial download lets the resumed download reach the facilitator
//      again: B says it resumes (naming the link), fetches at most the missing pieces plus 5 %,
//      and the result is byte-identical.
//   4. The mesh without a facilitator: the video's seeder is stopped and the bridge restarted
//      (same address and key) with `--facilitator off`; B opens the same magnet link and gets
//      the video, byte-identical, from A through the mesh. A restart rather than a second,
//      federated bridge: with federation the first bridge's facilitator would still serve the
//      ORDBs registered on it, so B succeeding would not show the mesh served it. An unknown
//      infohash now gets the bridge's "not a facilitator" sentence.
//   5. A lying facilitator: the bridge restarted with `--test-corrupt-piece 2`; D opens a fresh
//      torrent; the altered piece fails its SHA-1 check and the page says so.
//   6. A facilitator that disappears mid-stream: E opens a fresh torrent; once pieces arrive the
//      bridge is killed (SIGKILL); E's page says the download stopped, within a minute.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import {
  blobDigest, checkResumed, downloadProgress, launchBrowser, makeTestVideo, openFromBox, openMesh,
  pageDump, reloadMidDownload, startBridge, waitDownloadComplete, waitFailed, waitPlaying,
  waitRegistered,
} from './harness.mjs';
import { freePort, makeTorrent, removeTemp, seed, startTracker, tempDir } from './bittorrent.mjs';

const PIECE = 1 << 18; // mktorrent -l 18
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

let dir;          // temp dir: seeded data, torrents, the bridge key
let tracker;
let torrents;     // { video, multi, corrupt, vanish }: makeTorrent results
let seeders = {}; // name -> aria2c
let bridge;
let bridgeArgs;   // the flags every bridge start shares
let listen;
let browser;
let pages;
let video;        // { file, sha, size }
let clip;         // the multi-file torrent's chosen file: { sha, size }
let resumed;      // the file of test 3b's torrent: { sha, size }

async function restartBridge(extra = []) {
  await bridge.stop();
  bridge = await startBridge([...bridgeArgs, ...extra], { listen });
  await waitRegistered(Object.values(pages).filter((p) => !p.page.isClosed()));
}

function writeRandom(file, size) {
  const bytes = randomBytes(size);
  fs.writeFileSync(file, bytes);
  return { sha: sha256(bytes), size };
}

before(async () => {
  const t0 = Date.now();
  video = await makeTestVideo();
  const short = await makeTestVideo(10);
  dir = tempDir('torrent');
  const port = await freePort();
  const announce = `http://127.0.0.1:${port}/announce`;

  // 1. The 2-minute video, a single-file torrent.
  const single = path.join(dir, 'single');
  fs.mkdirSync(single);
  fs.copyFileSync(video.file, path.join(single, 'test-video.webm'));
  // 2. Three files; the clip in the middle starts and ends inside pieces.
  const multi = path.join(dir, 'multi', 'holiday');
  fs.mkdirSync(multi, { recursive: true });
  writeRandom(path.join(multi, 'a-notes.bin'), 700_001);
  fs.copyFileSync(short.file, path.join(multi, 'b-clip.webm'));
  clip = { sha: short.sha, size: short.size };
  writeRandom(path.join(multi, 'c-extra.bin'), 6_000_003);
  // 5. and 6.: fresh content nobody in the mesh holds.
  const corrupt = path.join(dir, 'corrupt');
  fs.mkdirSync(corrupt);
  writeRandom(path.join(corrupt, 'altered.bin'), 3_000_000);
  const vanish = path.join(dir, 'vanish');
  fs.mkdirSync(vanish);
  writeRandom(path.join(vanish, 'vanishing.bin'), 24_000_000);
  const resume = path.join(dir, 'resume');
  fs.mkdirSync(resume);
  resumed = writeRandom(path.join(resume, 'resumed.bin'), 16_000_000);

  torrents = {
    video: await makeTorrent(path.join(single, 'test-video.webm'), path.join(dir, 'video.torrent'), announce),
    multi: await makeTorrent(multi, path.join(dir, 'multi.torrent'), announce),
    corrupt: await makeTorrent(path.join(corrupt, 'altered.bin'), path.join(dir, 'corrupt.torrent'), announce),
    vanish: await makeTorrent(path.join(vanish, 'vanishing.bin'), path.join(dir, 'vanish.torrent'), announce),
    resume: await makeTorrent(path.join(resume, 'resumed.bin'), path.join(dir, 'resume.torrent'), announce),
  };
  tracker = await startTracker(Object.values(torrents).map((t) => t.infohash), port);
  seeders = {
    video: await seed(torrents.video.torrent, single),
    multi: await seed(torrents.multi.torrent, path.dirname(multi)),
    corrupt: await seed(torrents.corrupt.torrent, corrupt),
    vanish: await seed(torrents.vanish.torrent, vanish),
    resume: await seed(torrents.resume.torrent, resume),
  };

  bridgeArgs = ['--key-file', path.join(dir, 'bridge.key'), '--bt-dht', 'off', '--tracker', announce, '--metadata-timeout', '10000'];
  bridge = await startBridge(bridgeArgs);
  listen = bridge.url.replace(/^http:\/\//, '');
  browser = await launchBrowser();
  pages = await openMesh(browser, bridge, ['a', 'b', 'c', 'd', 'e']);
  console.log(`set-up (tracker, 4 seeders, bridge, 5 pages) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}, { timeout: 240000 });

after(async () => {
  if (browser) await browser.close();
  if (bridge) await bridge.stop();
  for (const s of Object.values(seeders)) await s.stop();
  if (tracker) await tracker.stop();
  removeTemp(dir);
});

const consoleErrors = (p) => p.consoleLines.filter((l) => /^(error|pageerror):/.test(l));

test('A opens a magnet link: the video plays before it completes and arrives byte-identical, from BitTorrent via a facilitator', { timeout: 300000 }, async () => {
  const { a } = pages;
  const { infohash, magnet } = torrents.video;
  const t0 = Date.now();
  const status = await openFromBox(a, magnet);
  assert.match(status, /BitTorrent/, `the open status names BitTorrent: ${status}`);
  const first = await waitPlaying(a, 'A', infohash, 180000, t0);
  console.log(`magnet link to first frame: ${first.ms} ms (${first.piecesHave}/${first.pieces} pieces held)`);
  assert.equal(first.complete, false, 'the video played before the download completed');

  const info = await a.page.evaluate((h) => {
    const d = window.onionmesh.downloads.get(h);
    return { kind: d.metadata().kind, source: d.progress().source, files: d.files(), type: d.metadata().type };
  }, infohash);
  assert.equal(info.kind, 'bittorrent');
  assert.equal(info.source, 'bittorrent');
  assert.equal(info.type, 'video/webm');
  assert.deepEqual(info.files, [{ index: 0, path: 'test-video.webm', size: video.size }]);
  const row = await a.page.textContent(`#downloads tr[data-hash-name="${infohash}"] .source`);
  assert.equal(row, 'from BitTorrent via a facilitator');

  await waitDownloadComplete(a, 'A', infohash, 240000);
  console.log(`magnet link to complete: ${Date.now() - t0} ms for ${video.size} bytes`);
  const got = await blobDigest(a.page, infohash);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'SHA-256 of blob() equals the seeded file\'s');
  const after = await a.page.evaluate((h) => window.onionmesh.downloads.get(h).progress().source, infohash);
  assert.equal(after, 'bittorrent', 'the source stays named once the download is over');
  assert.deepEqual(consoleErrors(a), [], 'no console errors');
});

test('a multi-file torrent: the page lists the files, streams the one picked, and the others are not fetched', { timeout: 240000 }, async () => {
  const { c } = pages;
  const { infohash, magnet } = torrents.multi;
  await openFromBox(c, magnet);
  await c.page.waitForSelector('#player-files-list li', { timeout: 90000 }).catch(async (e) => {
    throw new Error(`C never listed the torrent's files: ${e.message}\n${await pageDump('C', c)}`);
  });
  const listed = await c.page.$$eval('#player-files-list li .path', (els) => els.map((e) => e.textContent));
  assert.deepEqual(listed, ['a-notes.bin', 'b-clip.webm', 'c-extra.bin']);
  assert.match(await c.page.textContent('#player-status'), /pick one/i);
  const t0 = Date.now();
  await c.page.click('#player-files-list li[data-index="1"] button');
  const first = await waitPlaying(c, 'C', infohash, 120000, t0);
  console.log(`picked file to first frame: ${first.ms} ms`);
  await waitDownloadComplete(c, 'C', infohash, 120000);
  const got = await blobDigest(c.page, infohash);
  assert.equal(got.size, clip.size);
  assert.equal(got.sha, clip.sha, 'SHA-256 of the chosen file equals the seeded one\'s');
  assert.equal(got.type, 'video/webm');
  // The seeder uploaded exactly the pieces overlapping the clip (the two boundary pieces whole,
  // so the page can check them), not one byte of the other files' other pieces: it is the only
  // peer, so its upload counter is what the facilitator fetched. The facilitator's librqbit
  // says the same when the request ends: it checked exactly those pieces (printed with the
  // bytes its peers sent, which would show duplicate blocks).
  const firstPiece = Math.floor(700_001 / PIECE);
  const lastPiece = Math.floor((700_001 + clip.size - 1) / PIECE);
  const clipPieces = lastPiece - firstPiece + 1;
  const total = 700_001 + clip.size + 6_000_003;
  let clipPieceBytes = 0;
  for (let p = firstPiece; p <= lastPiece; p++) clipPieceBytes += Math.min(PIECE, total - p * PIECE);
  const uploaded = await seeders.multi.uploaded();
  console.log(`the multi-file seeder uploaded ${uploaded} bytes (${(uploaded / PIECE).toFixed(2)} pieces) for a ${clip.size}-byte file over ${clipPieces} pieces (${clipPieceBytes} bytes); the other files hold ${700_001 + 6_000_003} bytes`);
  const released = new RegExp(`torrent ${infohash} released: librqbit checked (\\d+) pieces \\((\\d+) bytes\\) and received (\\d+) bytes`);
  let seen = null;
  for (let i = 0; i < 60 && !seen; i++) {
    seen = bridge.logs().match(released);
    if (!seen) await new Promise((r) => setTimeout(r, 500));
  }
  console.log(`the facilitator's librqbit: ${seen ? `checked ${seen[1]} pieces (${seen[2]} bytes), received ${seen[3]} bytes from peers` : 'no release line within 30 s'}`);
  // The request ended with the download, so the torrent was released (its cache deleted).
  assert.ok(seen, `the bridge did not release the torrent within 30 s of the download's end:\n${bridge.logs().slice(-3000)}`);
  assert.equal(Number(seen[1]), clipPieces, `librqbit checked ${seen[1]} pieces, not the clip's ${clipPieces}`);
  assert.equal(Number(seen[2]), clipPieceBytes, 'librqbit checked the bytes of the clip\'s pieces');
  assert.equal(uploaded, clipPieceBytes, `the seeder uploaded ${uploaded} bytes, not the ${clipPieceBytes} bytes of the clip's ${clipPieces} pieces`);
});

test('bad input: a malformed magnet link and an unknown infohash each get a timely sentence', { timeout: 220000 }, async () => {
  const { d } = pages;
  const status = await openFromBox(d, 'magnet:?xt=urn:btih:12345');
  assert.match(status, /magnet link is malformed.*\.$/, status);
  assert.equal(await d.page.getAttribute('#open-status', 'data-level'), 'bad');
  const thrown = await d.page.evaluate(() => {
    try { window.onionmesh.node.download('magnet:?dn=nothing'); return null; } catch (e) { return { code: e.code, message: e.message }; }
  });
  assert.equal(thrown.code, 'BAD_ARGUMENT');
  assert.match(thrown.message, /infohash/);

  // The facilitator answers DB_END NOT_FOUND after its metadata timeout (10 s here), and the
  // download fails at that first answer with the facilitator's sentence (it does not ask the
  // other ORDBs, whose bridges would search the same swarm): within the timeout plus the
  // circuit's set-up, bounded here at 30 s.
  const unknown = randomBytes(20).toString('hex');
  const t0 = Date.now();
  await openFromBox(d, unknown);
  const first = await d.page.waitForFunction((h) => {
    const e = window.onionmesh.events.find((ev) => ev.type === 'log' && ev.text.includes(h) && /metadata|NOT_FOUND|UNAVAILABLE/.test(ev.text));
    return e ? e.text : false;
  }, unknown, { timeout: 45000, polling: 250 }).then((h) => h.jsonValue());
  console.log(`unknown infohash, first sentence after ${Date.now() - t0} ms: ${first}`);
  assert.match(first, /metadata/, first);
  const reason = await waitFailed(d, 'D', unknown, Math.max(1000, 30000 - (Date.now() - t0)));
  const took = Date.now() - t0;
  console.log(`unknown infohash failed after ${took} ms: "${reason}"`);
  assert.match(reason, /could not be downloaded.*metadata/, reason);
  assert.ok(took < 30000, `the download failed after ${took} ms, not within 30 s`);
  await d.page.waitForFunction((h) => /[.!?]$/.test(document.querySelector(`#downloads tr[data-hash-name="${h}"] .state-text`)?.textContent || ''), unknown, { timeout: 5000 });
});

test('a page reloaded mid-torrent resumes through the facilitator and fetches only what it lacked', { timeout: 240000 }, async () => {
  const { b } = pages;
  const { infohash, magnet } = torrents.resume;
  const status = await openFromBox(b, magnet);
  assert.match(status, /BitTorrent/, `the open status names BitTorrent: ${status}`);
  const reload = await reloadMidDownload(b, 'B', infohash, {
    fraction: 0.2, holdTimeout: 120000, completeTimeout: 180000, what: 'partial torrent',
  });
  assert.equal(reload.resumable.source, magnet, 'the magnet link was stored with the partial download');
  checkResumed('B', reload);
  const source = await b.page.evaluate((h) => window.onionmesh.downloads.get(h).progress().source, infohash);
  assert.equal(source, 'bittorrent', 'the resumed download came from BitTorrent via a facilitator');
  const got = await blobDigest(b.page, infohash);
  assert.equal(got.size, resumed.size);
  assert.equal(got.sha, resumed.sha, 'the resumed torrent is byte-identical');
});

test('with the facilitator off and the seeder gone, B gets the video from A through the mesh', { timeout: 300000 }, async () => {
  const { a, b } = pages;
  const { infohash, magnet } = torrents.video;
  assert.ok(await a.page.evaluate((h) => window.onionmesh.node.library().some((i) => i.hashName === h && i.complete), infohash), 'A holds the video');
  await seeders.video.stop();
  delete seeders.video;
  await restartBridge(['--facilitator', 'off']);
  const t0 = Date.now();
  await openFromBox(b, magnet);
  await waitDownloadComplete(b, 'B', infohash, 240000);
  console.log(`B got the video from the mesh in ${Date.now() - t0} ms`);
  const got = await blobDigest(b.page, infohash);
  assert.equal(got.sha, video.sha, 'SHA-256 of B\'s blob() equals the seeded file\'s');
  const source = await b.page.evaluate((h) => window.onionmesh.downloads.get(h).progress().source, infohash);
  assert.equal(source, 'mesh', 'a torrent the mesh served is labelled as from the mesh');
  // The page's row says so too (it is redrawn on a timer).
  await b.page.waitForFunction((h) => document.querySelector(`#downloads tr[data-hash-name="${h}"] .source`)?.textContent === 'from the mesh', infohash, { timeout: 10000 });

  const unknown = randomBytes(20).toString('hex');
  await openFromBox(b, unknown);
  const reason = await waitFailed(b, 'B', unknown, 90000);
  assert.match(reason, /not a facilitator/i, reason);
});

test('a facilitator that alters a piece is caught, and the page says so', { timeout: 180000 }, async () => {
  const { d } = pages;
  const { infohash, magnet } = torrents.corrupt;
  await restartBridge(['--test-corrupt-piece', '2']);
  await openFromBox(d, magnet);
  const said = await d.page.waitForFunction((h) => {
    const hit = window.onionmesh.events.find((e) => (e.type === 'log' && /SHA-1|altered/i.test(e.text))
      || (e.type === 'content' && e.event === 'failed' && e.hashName === h && /SHA-1|altered/i.test(e.reason)));
    return hit ? (hit.text || hit.reason) : false;
  }, infohash, { timeout: 150000, polling: 250 }).then((h) => h.jsonValue()).catch(async (err) => {
    throw new Error(`D never said a piece was altered: ${err.message}; progress ${JSON.stringify(await downloadProgress(d.page, infohash))}\n${await pageDump('D', d)}`);
  });
  console.log(`D said: ${said}`);
  const shown = await d.page.evaluate(() => [...document.querySelectorAll('#log li')].map((li) => li.textContent).join('\n')
    + document.getElementById('player-status').textContent
    + [...document.querySelectorAll('#downloads .state-text')].map((e) => e.textContent).join('\n'));
  assert.match(shown, /SHA-1|altered/i, 'the page shows it');
});

test('a facilitator that disappears mid-stream: the page says the download stopped, within a minute', { timeout: 180000 }, async () => {
  const { e } = pages;
  const { infohash, magnet } = torrents.vanish;
  await restartBridge();
  await openFromBox(e, magnet);
  await e.page.waitForFunction((h) => {
    const d = window.onionmesh.downloads.get(h);
    return d && d.progress().piecesHave >= 2;
  }, infohash, { timeout: 120000, polling: 100 }).catch(async (err) => {
    throw new Error(`E's download never started: ${err.message}\n${await pageDump('E', e)}`);
  });
  const p = await downloadProgress(e.page, infohash);
  assert.equal(p.complete, false, 'still mid-stream');
  const t0 = Date.now();
  await bridge.kill();
  const reason = await waitFailed(e, 'E', infohash, 60000);
  console.log(`after the facilitator vanished at ${p.piecesHave}/${p.pieces} pieces, E said after ${Date.now() - t0} ms: ${reason}`);
  assert.ok(reason.length > 10, 'a sentence');
  // Restart it so that after() stops a live bridge (and other pages keep a bridge).
  bridge = await startBridge(bridgeArgs, { listen });
});

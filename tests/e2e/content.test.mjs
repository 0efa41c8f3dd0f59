// Sharing and streaming a real video between real pages (issue 9, end-to-end acceptance).
//
// One bridge, one Chromium, every page in its own browser context (its own IndexedDB and
// Service Worker). A WebM (VP9/Opus, about 20 MB, 2 min) is made with Debian's ffmpeg at test
// time and cached under tests/.cache/. Pages A, B, C, D and E form the mesh (enough for 3-hop
// circuits); E drops its link to A. Then:
//   1. A shares the video through the page's file input, as a user would; E opens the share
//      link in the "Open a link" box; E's player plays before the download completes; seeking
//      to 80 % plays within 3 s; once complete, SHA-256 of blob() equals the original's.
//   2. R opens the link at load (`#<hash_name>`), reloads mid-download, resumes, and fetches
//      no more than the remaining pieces plus 5 %.
//   3. A closes; F still gets the whole file, byte-identical (from E, R and the ORDBs).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, openNode, root, startBridge, waitForLinked } from './harness.mjs';

const FFMPEG = process.env.FFMPEG || '/usr/bin/ffmpeg';
const DURATION_S = 120;
// 640x360 at 1.3 Mbit/s for 2 minutes: about 20 MB, a usual bitrate for 360p streaming. CBR so
// the size is predictable (testsrc2 is easy to code: VBR undershoots a lot); a keyframe every
// second so a seek decodes from near where it lands; cues up front so the player can seek
// before it has the end of the file.
const FFMPEG_ARGS = [
  '-hide_banner', '-loglevel', 'error', '-y',
  '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30',
  '-f', 'lavfi', '-i', 'sine=frequency=440',
  '-t', String(DURATION_S),
  '-c:v', 'libvpx-vp9', '-b:v', '1250k', '-minrate', '1250k', '-maxrate', '1250k',
  '-g', '30', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1',
  '-c:a', 'libopus', '-b:a', '64k',
  '-cues_to_front', '1',
  '-f', 'webm',
];

/// The test video: made once per set of ffmpeg arguments, cached by their hash.
async function makeVideo() {
  const key = createHash('sha256').update(JSON.stringify(FFMPEG_ARGS)).digest('hex').slice(0, 16);
  const dir = path.join(root, 'tests', '.cache');
  const file = path.join(dir, `video-${key}.webm`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const t0 = Date.now();
  await new Promise((resolve, reject) => {
    const p = spawn(FFMPEG, [...FFMPEG_ARGS, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', (e) => reject(new Error(`could not run ${FFMPEG} (apt-get install ffmpeg): ${e.message}`)));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited with ${code}: ${err}`))));
  });
  fs.renameSync(tmp, file);
  console.log(`made the test video in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${fs.statSync(file).size} bytes`);
  return file;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/// SHA-256, size and type of `download.blob()` in the page.
async function blobDigest(page, hashName) {
  return page.evaluate(async (h) => {
    const d = window.onionmesh.downloads.get(h) || window.onionmesh.node.download(h);
    const blob = await d.blob();
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
    return { sha: hex, size: blob.size, type: blob.type };
  }, hashName);
}

async function waitComplete(page, hashName, timeout) {
  await page.waitForFunction((h) => {
    const d = window.onionmesh.downloads.get(h);
    return d && d.progress().complete;
  }, hashName, { timeout, polling: 250 });
}

const progressOf = (page, hashName) => page.evaluate((h) => {
  const d = window.onionmesh.downloads.get(h);
  return d ? d.progress() : null;
}, hashName);

/// Whatever the page said on its console and in its log card, for a failure message.
async function dump(name, p) {
  const log = await p.page.evaluate(() => [...document.querySelectorAll('#log li')].slice(-40).map((li) => li.textContent))
    .catch(() => ['(the page is gone)']);
  return `--- ${name} console:\n${p.consoleLines.slice(-30).join('\n')}\n--- ${name} log:\n${log.join('\n')}`;
}

let bridge;
let browser;
let video;        // { file, bytes, sha, size }
let pages;        // { a, b, c, d, e }
let shared;       // A's publish() result
const extra = []; // pages opened by the tests

before(async () => {
  const file = await makeVideo();
  const bytes = fs.readFileSync(file);
  video = { file, sha: sha256(bytes), size: bytes.length };
  bridge = await startBridge();
  browser = await launchBrowser();
  const names = ['a', 'b', 'c', 'd', 'e'];
  const opened = [];
  for (const n of names) opened.push(await openNode(browser, bridge.url));
  pages = Object.fromEntries(names.map((n, i) => [n, opened[i]]));
  const ids = opened.map((p) => p.id);
  for (const [i, p] of opened.entries()) {
    await waitForLinked(p.page, ids.filter((id) => id !== p.id)).catch(async (e) => {
      throw new Error(`page ${names[i]} did not link to the others: ${e.message}\n${await dump(names[i], p)}`);
    });
  }
}, { timeout: 240000 });

after(async () => {
  if (browser) await browser.close();
  if (bridge) await bridge.stop();
});

test('A shares a video from the file input; E, with no link to A, streams it, seeks, and gets it byte-identical', { timeout: 240000 }, async () => {
  const { a, e } = pages;
  // A clean load says nothing on the console at error level (favicon included).
  const errors = (p) => p.consoleLines.filter((l) => /^(error|pageerror):/.test(l));
  assert.deepEqual(errors(a), [], 'a clean load logs no console errors');

  // A shares the file as a user would: through the file input of "Share a file".
  await a.page.setInputFiles('#share-file', video.file);
  await a.page.waitForFunction(() => window.onionmesh.shared.length > 0
    || document.getElementById('share-status').dataset.level === 'bad', null, { timeout: 120000 });
  const status = await a.page.textContent('#share-status');
  shared = await a.page.evaluate(() => window.onionmesh.shared[0]);
  assert.ok(shared, `A could not share the file: ${status}\n${await dump('A', a)}`);
  assert.match(shared.hashName, /^[0-9a-f]{40}$/);
  assert.equal(shared.size, video.size);
  assert.equal(await a.page.inputValue('#share-link'), shared.link, 'the page shows the share link');
  assert.ok(shared.link.endsWith(`#${shared.hashName}`), `the link ends with #<hash_name>: ${shared.link}`);
  assert.match(status, /^Shared .*\.$/, 'the share status is a sentence');

  // E drops its link to A (and A its link to E), so that nothing can come straight from A.
  await e.page.evaluate((id) => window.onionmesh.node.disconnect(id), a.id);
  await a.page.evaluate((id) => window.onionmesh.node.disconnect(id), e.id);
  await e.page.waitForFunction((id) => !window.onionmesh.node.peers().some((p) => p.id === id && p.state === 'linked'), a.id, { timeout: 10000 });
  const eEventsBefore = await e.page.evaluate(() => window.onionmesh.events.length);

  // E opens the link as a user would: pasted into "Open a link".
  await e.page.fill('#open-input', shared.link);
  await e.page.click('#open-button');
  const linkedToAAtOpen = await e.page.evaluate((id) => window.onionmesh.node.peers().some((p) => p.id === id && p.state === 'linked'), a.id);
  assert.equal(linkedToAAtOpen, false, 'E has no link to A when it opens the share link');

  // The player plays (currentTime advances) before the download completes.
  const first = await e.page.waitForFunction((h) => {
    const v = document.getElementById('player-video');
    const d = window.onionmesh.downloads.get(h);
    if (!d || v.paused || v.currentTime <= 0.2) return false;
    const p = d.progress();
    return { t: v.currentTime, complete: p.complete, piecesHave: p.piecesHave, pieces: p.pieces };
  }, shared.hashName, { timeout: 120000, polling: 100 }).then((h) => h.jsonValue()).catch(async (err) => {
    const st = await e.page.evaluate(() => ({ player: document.getElementById('player-status').textContent, open: document.getElementById('open-status').textContent }));
    throw new Error(`E's player never played: ${err.message}; ${JSON.stringify(st)}; progress ${JSON.stringify(await progressOf(e.page, shared.hashName))}\n${await dump('E', e)}`);
  });
  assert.equal(first.complete, false, `the video played before the download completed (${first.piecesHave}/${first.pieces} pieces at ${first.t.toFixed(2)} s)`);
  await e.page.waitForFunction((t) => document.getElementById('player-video').currentTime > t + 0.5, first.t, { timeout: 10000 });
  const row = await e.page.$(`#downloads tr[data-hash-name="${shared.hashName}"]`);
  assert.ok(row, 'E lists the download under Downloads');

  // Seeking to 80 % plays within 3 s.
  const seek = await e.page.evaluate(async ({ h, duration }) => {
    const v = document.getElementById('player-video');
    const d = window.onionmesh.downloads.get(h);
    const total = Number.isFinite(v.duration) ? v.duration : duration;
    const target = total * 0.8;
    const before = d.progress();
    const t0 = performance.now();
    v.currentTime = target;
    const ok = await new Promise((resolve) => {
      const timer = setInterval(() => {
        if (!v.paused && !v.seeking && v.currentTime > target + 0.1) { clearInterval(timer); resolve(true); }
        if (performance.now() - t0 > 10000) { clearInterval(timer); resolve(false); }
      }, 20);
    });
    const buffered = [];
    for (let i = 0; i < v.buffered.length; i++) buffered.push(`${v.buffered.start(i).toFixed(1)}-${v.buffered.end(i).toFixed(1)}`);
    const arrived = window.onionmesh.events.filter((ev) => ev.type === 'content' && ev.event === 'progress' && ev.hashName === h).slice(-20).map((ev) => ev.index);
    return {
      ok, ms: performance.now() - t0, target, completeAtSeek: before.complete, piecesHave: before.piecesHave, pieces: before.pieces,
      now: v.currentTime, paused: v.paused, seeking: v.seeking, readyState: v.readyState, buffered: buffered.join(' '),
      lastPieces: arrived.join(','), piecesHaveNow: d.progress().piecesHave, status: document.getElementById('player-status').textContent,
    };
  }, { h: shared.hashName, duration: DURATION_S });
  console.log(`seek to ${seek.target.toFixed(1)} s played after ${seek.ms.toFixed(0)} ms (${seek.completeAtSeek ? 'download already complete' : `mid-download, ${seek.piecesHave}/${seek.pieces} pieces held`})`);
  assert.ok(seek.ok, `after seeking to 80 % the video did not play within 10 s: ${JSON.stringify(seek)}\n${await dump('E', e)}`);
  assert.ok(seek.ms <= 3000, `seeking to 80 % played within 3 s (took ${seek.ms.toFixed(0)} ms)`);

  // Complete: the bytes are the original's.
  await waitComplete(e.page, shared.hashName, 180000).catch(async (err) => {
    throw new Error(`E's download did not complete: ${err.message}; ${JSON.stringify(await progressOf(e.page, shared.hashName))}\n${await dump('E', e)}`);
  });
  const got = await blobDigest(e.page, shared.hashName);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'SHA-256 of E\'s blob() equals the original\'s');
  assert.equal(got.type, 'video/webm');
  await e.page.waitForSelector(`#library tr[data-hash-name="${shared.hashName}"][data-complete="true"]`, { timeout: 5000 });

  // Whether E linked to A on its own during the download (DHT lookups may): reported, since
  // what matters is that content only comes through circuits.
  const relinked = await e.page.evaluate(({ from, id }) => window.onionmesh.events.slice(from)
    .some((ev) => ev.type === 'peer' && ev.id === id && ev.state === 'linked'), { from: eEventsBefore, id: a.id });
  console.log(`E ${relinked ? 'linked to A again during the download' : 'stayed without a link to A'}`);
});

test('a page reloaded mid-download resumes and fetches no more than the remaining pieces plus 5 %', { timeout: 240000 }, async () => {
  assert.ok(shared, 'needs the shared video of the first test');
  const r = await openNode(browser, bridge.url, `#${shared.hashName}`);
  extra.push(r);
  // Opening the page with #<hash_name> starts the download at once.
  const mid = await r.page.waitForFunction((h) => {
    const d = window.onionmesh.downloads.get(h);
    if (!d) return false;
    const p = d.progress();
    if (p.complete) return { complete: true };
    return p.pieces > 0 && p.piecesHave >= p.pieces * 0.25 ? p : false;
  }, shared.hashName, { timeout: 120000, polling: 20 }).then((h) => h.jsonValue()).catch(async (err) => {
    throw new Error(`R's download never reached 25 %: ${err.message}; ${JSON.stringify(await progressOf(r.page, shared.hashName))}\n${await dump('R', r)}`);
  });
  assert.ok(!mid.complete, 'R is still downloading when it reloads');
  const heldBefore = await r.page.evaluate((h) => new Set(window.onionmesh.events
    .filter((ev) => ev.type === 'content' && ev.event === 'progress' && ev.hashName === h)
    .map((ev) => ev.index)).size, shared.hashName);

  await r.page.reload();
  await r.page.waitForFunction(() => window.onionmeshReady || window.onionmeshError, null, { timeout: 30000 });
  assert.equal(await r.page.evaluate(() => window.onionmeshError), undefined);
  await waitComplete(r.page, shared.hashName, 180000).catch(async (err) => {
    throw new Error(`R's resumed download did not complete: ${err.message}; ${JSON.stringify(await progressOf(r.page, shared.hashName))}\n${await dump('R', r)}`);
  });
  const after = await r.page.evaluate((h) => {
    const evs = window.onionmesh.events.filter((ev) => ev.type === 'content' && ev.hashName === h);
    const resumable = evs.find((ev) => ev.event === 'resumable') || null;
    const from = resumable ? evs.indexOf(resumable) : 0;
    const progress = evs.slice(from).filter((ev) => ev.event === 'progress');
    const bytesIn = window.onionmesh.node.peers().reduce((n, p) => n + p.bytesIn, 0);
    return { resumable, fetched: progress.length, distinct: new Set(progress.map((ev) => ev.index)).size, bytesIn };
  }, shared.hashName);
  const pieces = mid.pieces;
  assert.ok(after.resumable, 'R found its partial download in IndexedDB and said it resumes it');
  const stored = after.resumable.piecesHave;
  console.log(`R: ${heldBefore}/${pieces} pieces before the reload, ${stored} found stored after it; fetched ${after.fetched} pieces (${after.distinct} distinct) after it; ${after.bytesIn} bytes in on all links after it (remaining ${(pieces - stored) * 65536} bytes at most)`);
  assert.ok(stored >= heldBefore * 0.9, `what R stored before the reload survived it (${stored} of ${heldBefore} pieces)`);
  const remaining = pieces - stored;
  assert.ok(after.fetched <= Math.ceil(remaining * 1.05),
    `after the reload R fetched ${after.fetched} pieces; at most the ${remaining} remaining plus 5 %`);
  assert.ok(after.fetched >= remaining, `R fetched every missing piece (${after.fetched} of ${remaining})`);
  const got = await blobDigest(r.page, shared.hashName);
  assert.equal(got.sha, video.sha, 'the resumed download is byte-identical');
});

test('after A closes, page F still gets the whole file byte-identical', { timeout: 240000 }, async () => {
  assert.ok(shared, 'needs the shared video of the first test');
  await pages.a.context.close();
  const f = await openNode(browser, bridge.url, `#${shared.hashName}`);
  extra.push(f);
  await waitComplete(f.page, shared.hashName, 180000).catch(async (err) => {
    throw new Error(`F's download did not complete without A: ${err.message}; ${JSON.stringify(await progressOf(f.page, shared.hashName))}\n${await dump('F', f)}`);
  });
  const got = await blobDigest(f.page, shared.hashName);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'SHA-256 of F\'s blob() equals the original\'s');
  const peers = await f.page.evaluate(() => window.onionmesh.node.peers().map((p) => p.id));
  assert.ok(!peers.includes(pages.a.id), 'A is gone');
});

// Sharing and streaming a real video between real pages (issue 9, end-to-end acceptance).
//
// One bridge, one Chromium, every page in its own browser context (its own IndexedDB and
// Service Worker). The video is a WebM (VP9/Opus, about 20 MB, 2 min) made with Debian's ffmpeg
// at test time and cached under tests/.cache/ (harness.mjs `makeTestVideo`). Pages A, B, C, D
// and E form the mesh (enough for 3-hop circuits); E drops its link to A. Then:
//   1. A shares the video through the page's file input, as a user would; E opens the share
//      link in the "Open a link" box; E's player plays before the download completes; seeking
//      to 80 % plays again (the time it took is printed: the issue's target is 3 s, and timings
//      are figures to read, not assertions, on these noisy machines); once complete, SHA-256
//      of blob() equals the original's.
//   2. A closes; F, opened at the link (`#<hash_name>`), still gets the whole file,
//      byte-identical (from E and the ORDBs).
// The reload check is content-resume.test.mjs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VIDEO_DURATION_S, blobDigest, downloadProgress, launchBrowser, makeTestVideo, openMesh, openNode,
  pageDump, shareFromInput, startBridge, waitDownloadComplete,
} from './harness.mjs';

let bridge;
let browser;
let video;        // { file, sha, size }
let pages;        // { a, b, c, d, e }
let shared;       // A's publish() result

before(async () => {
  video = await makeTestVideo();
  bridge = await startBridge();
  browser = await launchBrowser();
  pages = await openMesh(browser, bridge, ['a', 'b', 'c', 'd', 'e']);
}, { timeout: 150000 });

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
  const { shared: published, status } = await shareFromInput(a, video.file);
  shared = published;
  assert.match(shared.hashName, /^[0-9a-f]{40}$/);
  assert.equal(shared.size, video.size);
  assert.equal(await a.page.inputValue('#share-link'), shared.link, 'the page shows the share link');
  assert.ok(shared.link.endsWith(`#${shared.hashName}`), `the link ends with #<hash_name>: ${shared.link}`);
  assert.match(status, /^Shared .*\.$/, 'the share status is a sentence');

  // E has no link to A. In a 5-page mesh every node keeps asking for more peers (it wants 8),
  // so a link that is merely closed comes back within seconds; both pages therefore cut any
  // link between them as soon as it starts (a partition between E and A, as when they cannot
  // reach each other). The cuts are counted, and E must never see A as linked.
  const partition = (other) => {
    const node = window.onionmesh.node;
    window.partitionCuts = 0;
    const cut = () => {
      if (node.peers().some((p) => p.id === other && p.state !== 'closed')) {
        window.partitionCuts += 1;
        node.disconnect(other);
      }
    };
    // Not from inside the node's callback: cut right after it.
    node.on((ev) => { if (ev.type === 'peer' && ev.id === other && ev.state !== 'closed') setTimeout(cut, 0); });
    cut();
  };
  await e.page.evaluate(partition, a.id);
  await a.page.evaluate(partition, e.id);
  await e.page.waitForFunction((id) => !window.onionmesh.node.peers().some((p) => p.id === id && p.state !== 'closed'), a.id, { timeout: 10000 });
  const eEventsBefore = await e.page.evaluate(() => window.onionmesh.events.length);

  // E opens the link as a user would: pasted into "Open a link".
  await e.page.fill('#open-input', shared.link);
  await e.page.click('#open-button');

  // The player plays (currentTime advances) before the download completes.
  const first = await e.page.waitForFunction((h) => {
    const v = document.getElementById('player-video');
    const d = window.onionmesh.downloads.get(h);
    if (!d || v.paused || v.currentTime <= 0.2) return false;
    const p = d.progress();
    return { t: v.currentTime, complete: p.complete, piecesHave: p.piecesHave, pieces: p.pieces };
  }, shared.hashName, { timeout: 120000, polling: 100 }).then((h) => h.jsonValue()).catch(async (err) => {
    const st = await e.page.evaluate(() => ({ player: document.getElementById('player-status').textContent, open: document.getElementById('open-status').textContent }));
    throw new Error(`E's player never played: ${err.message}; ${JSON.stringify(st)}; progress ${JSON.stringify(await downloadProgress(e.page, shared.hashName))}\n${await pageDump('E', e)}`);
  });
  assert.equal(first.complete, false, `the video played before the download completed (${first.piecesHave}/${first.pieces} pieces at ${first.t.toFixed(2)} s)`);
  await e.page.waitForFunction((t) => document.getElementById('player-video').currentTime > t + 0.5, first.t, { timeout: 10000 });
  const row = await e.page.$(`#downloads tr[data-hash-name="${shared.hashName}"]`);
  assert.ok(row, 'E lists the download under Downloads');

  // Seeking to 80 % plays (target: within 3 s; printed, see the file's docs).
  const traceFrom = Object.fromEntries(Object.entries(pages).map(([n, p]) => [n, p.consoleLines.length]));
  const origins = {};
  for (const [n, p] of Object.entries(pages)) origins[n] = await p.page.evaluate(() => performance.timeOrigin);
  const seek = await e.page.evaluate(async ({ h, duration }) => {
    const v = document.getElementById('player-video');
    const d = window.onionmesh.downloads.get(h);
    const total = Number.isFinite(v.duration) ? v.duration : duration;
    const target = total * 0.8;
    const before = d.progress();
    const t0 = performance.now();
    const media = [];
    for (const ev of ['seeking', 'seeked', 'waiting', 'canplay', 'canplaythrough', 'playing', 'progress', 'stalled']) {
      v.addEventListener(ev, () => media.push(`${(performance.now() - t0).toFixed(0)} ${ev} rs=${v.readyState} t=${v.currentTime.toFixed(2)}`));
    }
    v.currentTime = target;
    const ok = await new Promise((resolve) => {
      const timer = setInterval(() => {
        if (!v.paused && !v.seeking && v.readyState >= 3 && v.currentTime > target) { clearInterval(timer); resolve(true); }
        if (performance.now() - t0 > 30000) { clearInterval(timer); resolve(false); }
      }, 20);
    });
    const buffered = [];
    for (let i = 0; i < v.buffered.length; i++) buffered.push(`${v.buffered.start(i).toFixed(1)}-${v.buffered.end(i).toFixed(1)}`);
    const arrived = window.onionmesh.events.filter((ev) => ev.type === 'content' && ev.event === 'progress' && ev.hashName === h).slice(-20).map((ev) => ev.index);
    return {
      ok, ms: performance.now() - t0, target, t0, media, completeAtSeek: before.complete, piecesHave: before.piecesHave, pieces: before.pieces,
      now: v.currentTime, paused: v.paused, seeking: v.seeking, readyState: v.readyState, buffered: buffered.join(' '),
      lastPieces: arrived.join(','), piecesHaveNow: d.progress().piecesHave, status: document.getElementById('player-status').textContent,
    };
  }, { h: shared.hashName, duration: VIDEO_DURATION_S });
  console.log(`seek to ${seek.target.toFixed(1)} s played after ${seek.ms.toFixed(0)} ms (${seek.completeAtSeek ? 'download already complete' : `mid-download, ${seek.piecesHave}/${seek.pieces} pieces held`})`);
  if (process.env.SEEK_TRACE) {
    const e0 = origins.e + seek.t0;
    const lines = [];
    for (const [n, p] of Object.entries(pages)) {
      for (const l of p.consoleLines.slice(traceFrom[n])) {
        const m = /^debug: TRACE (\d+) (.*)$/.exec(l);
        if (!m) continue;
        const rel = origins[n] + Number(m[1]) - e0;
        if (rel > -3000 && rel < seek.ms + 500) lines.push([rel, `${rel.toFixed(0).padStart(6)} ${n} ${m[2]}`]);
      }
    }
    lines.sort((x, y) => x[0] - y[0]);
    console.log(`seek trace (ms from the seek, page):\n${lines.map((x) => x[1]).join('\n')}\nmedia events:\n${seek.media.join('\n')}`);
  }
  assert.ok(seek.ok, `after seeking to 80 % the video did not play within 30 s: ${JSON.stringify(seek)}\n${await pageDump('E', e)}`);

  // Complete: the bytes are the original's.
  await waitDownloadComplete(e, 'E', shared.hashName, 150000);
  const got = await blobDigest(e.page, shared.hashName);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'SHA-256 of E\'s blob() equals the original\'s');
  assert.equal(got.type, 'video/webm');
  await e.page.waitForSelector(`#library tr[data-hash-name="${shared.hashName}"][data-complete="true"]`, { timeout: 5000 });

  // E never had a link to A while it fetched the file.
  const linkedToA = await e.page.evaluate(({ from, id }) => window.onionmesh.events.slice(from)
    .filter((ev) => ev.type === 'peer' && ev.id === id && ev.state === 'linked').length, { from: eEventsBefore, id: a.id });
  const cuts = await e.page.evaluate(() => window.partitionCuts) + await a.page.evaluate(() => window.partitionCuts);
  console.log(`E and A cut ${cuts} attempted link(s) between them during the test`);
  assert.equal(linkedToA, 0, 'E never linked to A while it streamed and downloaded');
});

test('after A closes, page F still gets the whole file byte-identical', { timeout: 240000 }, async () => {
  assert.ok(shared, 'needs the shared video of the first test');
  await pages.a.context.close();
  const f = await openNode(browser, bridge.url, `#${shared.hashName}`);
  await waitDownloadComplete(f, 'F', shared.hashName, 150000);
  const got = await blobDigest(f.page, shared.hashName);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'SHA-256 of F\'s blob() equals the original\'s');
  // A is really gone: its page is closed and F never linked to it. F may still be *offering* a
  // link to A for a moment: as a circuit's middle hop it is asked to extend to A when another
  // ORDB follows a provider record that still names A (records live until their TTL), and the
  // bridge then answers that A is not there (seen in 2 of 4 runs on 2026-12-01, 118 ms old).
  assert.ok(pages.a.page.isClosed(), 'A\'s page is closed');
  const peers = await f.page.evaluate(() => window.onionmesh.node.peers());
  // An answered introduction (connecting) or more would mean A is still there.
  const toA = peers.filter((p) => p.id === pages.a.id && ['answering', 'connecting', 'authenticating', 'linked'].includes(p.state));
  assert.deepEqual(toA, [], `A is gone, but F has ${JSON.stringify(toA)}\n${await pageDump('F', f)}`);
});

// The web exit (issue 10, end-to-end acceptance): a page fetches a file from a web server
// through a circuit ending at an exit bridge, in real Chromium.
//
// The test serves a 10 MB file from node's http module on 127.0.0.1. The bridge runs with
// `--exit-allow-private` (tests only: loopback is refused by default). Pages A..E form the mesh.
//   1. A opens the URL in "Open a link"; the download completes; SHA-256 of blob() is the
//      file's; the page says it came from the web via an exit; the `done` event carries
//      `publishedAs`, A's own onionmesh content with its share link.
//   2. B opens that share link and gets the file, byte-identical, from the mesh.
//   2b. D opens another URL for the same bytes and reloads once it holds a fifth of the pieces:
//      the URL stored with its partial download lets the resumed download reach the exit again
//      (nobody in the mesh holds it); it fetches at most the missing pieces plus 5 %, and the
//      result is byte-identical.
//   3. The bridge restarted without `--exit-allow-private`: C opens another URL on the same
//      server and gets the exit policy's sentence; the server saw no request for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';
import {
  blobDigest, checkResumed, launchBrowser, openFromBox, openMesh, reloadMidDownload, startBridge,
  waitDownloadComplete, waitFailed, waitRegistered, webHashName,
} from './harness.mjs';
import { removeTemp, tempDir } from './bittorrent.mjs';

const SIZE = 10 * 1000 * 1000;
let file;        // the served bytes
let fileSha;
let server;
let served = []; // request paths the server answered
let base;        // http://127.0.0.1:PORT
let dir;
let bridge;
let listen;
let browser;
let pages;
let publishedAs;

before(async () => {
  const t0 = Date.now();
  file = randomBytes(SIZE);
  fileSha = createHash('sha256').update(file).digest('hex');
  server = http.createServer((req, res) => {
    served.push(req.url);
    if (req.url.startsWith('/files/')) {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(file.length) });
      res.end(file);
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${server.address().port}`;
  dir = tempDir('web-exit');
  bridge = await startBridge(['--key-file', path.join(dir, 'bridge.key'), '--exit-allow-private']);
  listen = bridge.url.replace(/^http:\/\//, '');
  browser = await launchBrowser();
  pages = await openMesh(browser, bridge, ['a', 'b', 'c', 'd', 'e']);
  console.log(`set-up (web server, bridge, 5 pages) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}, { timeout: 180000 });

after(async () => {
  if (browser) await browser.close();
  if (bridge) await bridge.stop();
  if (server) server.close();
  removeTemp(dir);
});

test('A downloads a 10 MB web file through an exit: byte-identical, and published as its own content', { timeout: 240000 }, async () => {
  const { a } = pages;
  const url = `${base}/files/ten-megabytes.bin`;
  const h = await webHashName(url);
  const t0 = Date.now();
  const status = await openFromBox(a, url);
  assert.match(status, /exit bridge/, status);
  await waitDownloadComplete(a, 'A', h, 200000);
  console.log(`URL to complete: ${Date.now() - t0} ms for ${SIZE} bytes`);
  const got = await blobDigest(a.page, h);
  assert.equal(got.size, SIZE);
  assert.equal(got.sha, fileSha, 'SHA-256 of blob() equals the served file\'s');
  const info = await a.page.evaluate((h) => {
    const d = window.onionmesh.downloads.get(h);
    const done = window.onionmesh.events.find((e) => e.type === 'content' && e.event === 'done' && e.hashName === h);
    return { kind: d.metadata().kind, source: d.progress().source, name: d.metadata().name, publishedAs: done && done.publishedAs };
  }, h);
  assert.equal(info.kind, 'web');
  assert.equal(info.source, 'web');
  assert.equal(info.name, 'ten-megabytes.bin');
  assert.ok(info.publishedAs, 'the done event carries publishedAs');
  assert.match(info.publishedAs.hashName, /^[0-9a-f]{40}$/);
  assert.notEqual(info.publishedAs.hashName, h);
  assert.ok(info.publishedAs.link.endsWith(`#${info.publishedAs.hashName}`));
  publishedAs = info.publishedAs;
  assert.equal(served.filter((p) => p === '/files/ten-megabytes.bin').length >= 1, true, 'the server was asked');
  const row = await a.page.textContent(`#downloads tr[data-hash-name="${h}"] .state-text`);
  assert.match(row, /onionmesh content/, row);
});

test('B gets the web file from A through the mesh, by the published link', { timeout: 240000 }, async () => {
  assert.ok(publishedAs, 'needs the first test');
  const { b } = pages;
  const before = served.length;
  await openFromBox(b, publishedAs.link);
  await waitDownloadComplete(b, 'B', publishedAs.hashName, 200000);
  const got = await blobDigest(b.page, publishedAs.hashName);
  assert.equal(got.sha, fileSha, 'SHA-256 of B\'s blob() equals the served file\'s');
  assert.equal(served.length, before, 'the web server was not asked again');
  const source = await b.page.evaluate((h) => window.onionmesh.downloads.get(h).progress().source, publishedAs.hashName);
  assert.equal(source, 'mesh');
});

test('a page reloaded mid-download of a web file resumes through the exit', { timeout: 240000 }, async () => {
  const { d } = pages;
  const url = `${base}/files/resumed.bin`;
  const h = await webHashName(url);
  await openFromBox(d, url);
  const reload = await reloadMidDownload(d, 'D', h, {
    fraction: 0.2, holdTimeout: 120000, completeTimeout: 180000, what: 'partial web file',
  });
  assert.equal(reload.resumable.source, url, 'the URL was stored with the partial download');
  checkResumed('D', reload);
  const got = await blobDigest(d.page, h);
  assert.equal(got.size, SIZE);
  assert.equal(got.sha, fileSha, 'the resumed web file is byte-identical');
});

test('an exit that refuses private addresses says so', { timeout: 120000 }, async () => {
  const { c } = pages;
  await bridge.stop();
  bridge = await startBridge(['--key-file', path.join(dir, 'bridge.key')], { listen });
  await waitRegistered(Object.values(pages));
  const url = `${base}/files/refused.bin`;
  const h = await webHashName(url);
  const t0 = Date.now();
  await openFromBox(c, url);
  const reason = await waitFailed(c, 'C', h, 90000);
  console.log(`refused URL: "${reason}" after ${Date.now() - t0} ms`);
  assert.match(reason, /private|loopback|refus|not allowed/i, reason);
  assert.ok(!served.includes('/files/refused.bin'), 'the server never saw the refused request');
});

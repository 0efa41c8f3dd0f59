// A download survives a reload (issue 9, end-to-end acceptance): pages A, B, C and D form the
// mesh and A shares the test video (harness.mjs `makeTestVideo`) through its file input. Page R
// opens the share link (`#<hash_name>`: the download starts at load), reloads once it holds a
// quarter of the pieces, finds what it stored in IndexedDB, and fetches no more than the
// remaining pieces plus 5 %; the result is byte-identical.
// A second page, S, downloads another file of A's, and A leaves mid-download; S reloads. Its
// resumed download ends with the mesh's sentence (nobody holds it), not with a facilitator's
// about BitTorrent: the page resumes by hash_name, and 40 bare hex digits, which would be
// taken for an infohash, are not taken so for a content the node knows is onionmesh's own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  blobDigest, checkResumed, contentEvents, launchBrowser, makeTestVideo, openMesh, openNode,
  reloadMidDownload, reloadNode, shareFromInput, startBridge, waitFailed, waitHolding,
} from './harness.mjs';
import { removeTemp, tempDir } from './bittorrent.mjs';

let bridge;
let browser;
let video;
let shared;
let a;
let dir;

before(async () => {
  video = await makeTestVideo();
  bridge = await startBridge();
  browser = await launchBrowser();
  ({ a } = await openMesh(browser, bridge, ['a', 'b', 'c', 'd']));
  ({ shared } = await shareFromInput(a, video.file));
}, { timeout: 150000 });

after(async () => {
  if (browser) await browser.close();
  if (bridge) await bridge.stop();
  removeTemp(dir);
});

test('a page reloaded mid-download resumes and fetches no more than the remaining pieces plus 5 %', { timeout: 200000 }, async () => {
  const r = await openNode(browser, bridge.url, `#${shared.hashName}`);
  const reload = await reloadMidDownload(r, 'R', shared.hashName, {
    fraction: 0.25, holdTimeout: 90000, completeTimeout: 120000, what: 'partial download',
  });
  const { fetched, remaining } = checkResumed('R', reload);
  const again = fetched.filter((ev) => reload.storedBefore.has(ev.index)).length;
  const bytesIn = await r.page.evaluate(() => window.onionmesh.node.peers().reduce((n, p) => n + p.bytesIn, 0));
  console.log(`R: ${again} of the pieces fetched after the reload were stored before it; ${bytesIn} bytes in on its links after it, for ${remaining} pieces`);

  const got = await blobDigest(r.page, shared.hashName);
  assert.equal(got.size, video.size);
  assert.equal(got.sha, video.sha, 'the resumed download is byte-identical');
});

test('a resumed download whose only holder left ends with the mesh\'s sentence, not a BitTorrent one', { timeout: 240000 }, async () => {
  dir = tempDir('resume-gone');
  const file = path.join(dir, 'only-on-a.bin');
  fs.writeFileSync(file, randomBytes(12_000_000));
  await a.page.setInputFiles('#share-file', file);
  const second = await a.page.waitForFunction(() => window.onionmesh.shared.length > 1 && window.onionmesh.shared[1], null, { timeout: 120000 })
    .then((h) => h.jsonValue());
  const s = await openNode(browser, bridge.url, `#${second.hashName}`);
  await waitHolding(s, 'S', second.hashName, 0.2, 90000);
  await a.context.close();
  await reloadNode(s);
  const t0 = Date.now();
  const reason = await waitFailed(s, 'S', second.hashName, 120000);
  console.log(`S's resumed download, its only holder gone, ended after ${Date.now() - t0} ms: "${reason}"`);
  const resumed = (await contentEvents(s.page, second.hashName)).some((ev) => ev.event === 'resumable');
  assert.ok(resumed, 'S found its partial download after the reload');
  assert.doesNotMatch(reason, /torrent|BitTorrent|facilitator/i, 'no facilitator was asked to look for it on BitTorrent');
  assert.match(reason, /holder/, reason);
});

// Shared set-up for the end-to-end tests and benchmarks: a real bridge process on loopback and a
// real headless Chromium, both started here and torn down by the caller.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');

/// Flags required on these machines (closed network, running as root), plus host candidates
/// without mDNS obfuscation so loopback WebRTC connects with no STUN server.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

/// Starts `onionmesh-bridge` on 127.0.0.1 with an OS-chosen port (or `listen`, such as the
/// address of a bridge that was killed, to restart it). Resolves once it prints its listening
/// line. `logs()` returns everything it wrote to stderr so far; `stop()` interrupts it (Ctrl-C)
/// and `kill()` kills it at once (SIGKILL: no close handshakes, as in a crash).
export async function startBridge(extraArgs = [], { listen = '127.0.0.1:0' } = {}) {
  const bin = process.env.ONIONMESH_BRIDGE || path.join(root, 'target', 'debug', 'onionmesh-bridge');
  const proc = spawn(
    bin,
    ['--listen', listen, '--static-dir', path.join(root, 'web'), '--log-level', 'info', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  let stdout = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the bridge did not start within 20 s; stderr:\n${stderr}`)), 20000);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the bridge exited with ${code}; stderr:\n${stderr}`)); });
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/onionmesh bridge listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  return {
    url,
    logs: () => stderr,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGINT');
      const [code] = await once(proc, 'exit');
      return code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    },
  };
}

/// Starts a bridge federated with `peers` (bridges from startBridge): it dials each one with
/// --peer-bridge, and this resolves once both sides logged the federation.
export async function startFederatedBridge(peers, extraArgs = []) {
  const flags = peers.flatMap((p) => ['--peer-bridge', p.url.replace(/^http:/, 'ws:') + '/ws']);
  const bridge = await startBridge([...flags, ...extraArgs]);
  const deadline = Date.now() + 20000;
  const federated = (b) => /federated with bridge/.test(b.logs());
  while (!(federated(bridge) && peers.every(federated))) {
    if (Date.now() > deadline) {
      throw new Error(`the bridges did not federate within 20 s; logs:\n${bridge.logs()}\n${peers.map((p) => p.logs()).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return bridge;
}

export async function launchBrowser() {
  // Playwright gives every launch a fresh temporary --user-data-dir and adds --headless.
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/// Opens the onionmesh page in its own browser context and waits for the node to start.
/// `initScript` (optional, a function or source text) runs in the page before its own scripts,
/// e.g. to shift its clock (see `skewedClock`).
export async function openNode(browser, url, query = '', { initScript } = {}) {
  const context = await browser.newContext();
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${url}/${query}`);
  await page.waitForFunction(() => window.onionmeshReady || window.onionmeshError, null, { timeout: 30000 })
    .catch((e) => {
      throw new Error(`the page never started its node (${e.message}); page console:\n${consoleLines.join('\n')}`);
    });
  const error = await page.evaluate(() => window.onionmeshError);
  if (error) throw new Error(`the page failed to start its node: ${error}\n${consoleLines.join('\n')}`);
  const id = await page.evaluate(() => window.onionmesh.node.id);
  return { page, context, id, consoleLines };
}

/// IDs of the peers this page holds an authenticated link with.
export async function linkedPeers(page) {
  return page.evaluate(() => window.onionmesh.node.peers().filter((p) => p.state === 'linked').map((p) => p.id).sort());
}

export async function waitForLinked(page, ids, timeout = 45000) {
  await page.waitForFunction(
    (want) => {
      const have = window.onionmesh.node.peers().filter((p) => p.state === 'linked').map((p) => p.id);
      return want.every((id) => have.includes(id));
    },
    ids,
    { timeout },
  );
}

/// Every event of one type the page's node emitted so far.
export async function events(page, type) {
  return page.evaluate((t) => window.onionmesh.events
    .filter((e) => e.type === t)
    .map((e) => (e.data instanceof Uint8Array ? { ...e, data: Array.from(e.data) } : { ...e })), type);
}

/// An init script (for `openNode`) that moves the page's wall clock by `skewMs`: `Date.now()`
/// and `new Date()` read that far off, as on a device whose clock is wrong. The monotonic
/// clock (`performance.now()`) is left alone, as it is on such a device.
export function skewedClock(skewMs) {
  return `(() => {
    const skew = ${Number(skewMs)};
    const RealDate = Date;
    const realNow = RealDate.now.bind(RealDate);
    class SkewedDate extends RealDate {
      constructor(...args) {
        if (args.length === 0) super(realNow() + skew); else super(...args);
      }
      static now() { return realNow() + skew; }
    }
    globalThis.Date = SkewedDate;
  })();`;
}

// ----- content (issue 9): a real video, and what pages hold -----------------------------------

/// Length of the test video in seconds.
export const VIDEO_DURATION_S = 120;
// 640x360 at 1.25 Mbit/s for 2 minutes: about 20 MB, a usual bitrate for 360p streaming. CBR so
// the size is predictable (testsrc2 is easy to code: VBR undershoots a lot); a keyframe every
// second so a seek decodes from near where it lands; cues up front so the player can seek
// before it has the end of the file. Realtime VP9 at speed 8 keeps making it short on 2 cores.
const videoArgs = (seconds) => [
  '-hide_banner', '-loglevel', 'error', '-y',
  '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30',
  '-f', 'lavfi', '-i', 'sine=frequency=440',
  '-t', String(seconds),
  '-c:v', 'libvpx-vp9', '-b:v', '1250k', '-minrate', '1250k', '-maxrate', '1250k',
  '-g', '30', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1',
  '-c:a', 'libopus', '-b:a', '64k',
  '-cues_to_front', '1',
  '-f', 'webm',
];

/// The test video (WebM, VP9/Opus, about 20 MB), made with Debian's ffmpeg (`FFMPEG` or
/// /usr/bin/ffmpeg) once per set of arguments and cached under tests/.cache/ by their hash.
/// Resolves to `{ file, sha, size }` (SHA-256 in hex, bytes). `seconds` makes a shorter (or
/// longer) one, cached apart.
export async function makeTestVideo(seconds = VIDEO_DURATION_S) {
  const VIDEO_FFMPEG_ARGS = videoArgs(seconds);
  const { createHash } = await import('node:crypto');
  const fs = await import('node:fs');
  const ffmpeg = process.env.FFMPEG || '/usr/bin/ffmpeg';
  const key = createHash('sha256').update(JSON.stringify(VIDEO_FFMPEG_ARGS)).digest('hex').slice(0, 16);
  const dir = path.join(root, 'tests', '.cache');
  const file = path.join(dir, `video-${key}.webm`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    const t0 = Date.now();
    await new Promise((resolve, reject) => {
      const p = spawn(ffmpeg, [...VIDEO_FFMPEG_ARGS, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d) => { err += d; });
      p.on('error', (e) => reject(new Error(`could not run ${ffmpeg} (apt-get install ffmpeg): ${e.message}`)));
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited with ${code}: ${err}`))));
    });
    fs.renameSync(tmp, file);
    console.log(`made the test video in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  const bytes = fs.readFileSync(file);
  return { file, sha: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
}

/// Opens one page per name, each in its own browser context, and waits until every page is
/// linked to every other. Resolves to `{ name: page }` (pages as `openNode` returns them).
export async function openMesh(browser, bridge, names) {
  const opened = [];
  for (let i = 0; i < names.length; i++) opened.push(await openNode(browser, bridge.url));
  const ids = opened.map((p) => p.id);
  for (const [i, p] of opened.entries()) {
    await waitForLinked(p.page, ids.filter((id) => id !== p.id)).catch(async (e) => {
      throw new Error(`page ${names[i]} did not link to the others: ${e.message}\n${await pageDump(names[i], p)}`);
    });
  }
  return Object.fromEntries(names.map((n, i) => [n, opened[i]]));
}

/// The page shares `file` through its "Share a file" input, as a user would. Resolves to
/// publish()'s answer `{ hashName, link, size, pieces, name }` and the status sentence.
export async function shareFromInput(p, file) {
  await p.page.setInputFiles('#share-file', file);
  await p.page.waitForFunction(() => window.onionmesh.shared.length > 0
    || document.getElementById('share-status').dataset.level === 'bad', null, { timeout: 120000 });
  const status = await p.page.textContent('#share-status');
  const shared = await p.page.evaluate(() => window.onionmesh.shared[0]);
  if (!shared) throw new Error(`the page could not share the file: ${status}\n${await pageDump('sharer', p)}`);
  return { shared, status };
}

/// SHA-256 (hex), size and type of the page's `download.blob()` for `hashName`.
export async function blobDigest(page, hashName) {
  return page.evaluate(async (h) => {
    const d = window.onionmesh.downloads.get(h) || window.onionmesh.node.download(h);
    const blob = await d.blob();
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
    return { sha: hex, size: blob.size, type: blob.type };
  }, hashName);
}

/// `download.progress()` of the page's download of `hashName`, or null.
export async function downloadProgress(page, hashName) {
  return page.evaluate((h) => {
    const d = window.onionmesh.downloads.get(h);
    return d ? d.progress() : null;
  }, hashName);
}

/// Waits until the page holds at least `fraction` of the pieces of `hashName`; resolves to its
/// `progress()`, or to `{ complete: true }` if it completed first. The error says how far it got.
export async function waitHolding(p, name, hashName, fraction, timeout) {
  return p.page.waitForFunction(({ h, fraction }) => {
    const d = window.onionmesh.downloads.get(h);
    if (!d) return false;
    const pr = d.progress();
    if (pr.complete) return { complete: true };
    return pr.pieces > 0 && pr.piecesHave >= pr.pieces * fraction ? pr : false;
  }, { h: hashName, fraction }, { timeout, polling: 20 }).then((x) => x.jsonValue()).catch(async (err) => {
    throw new Error(`${name}'s download never reached ${Math.round(fraction * 100)} %: ${err.message}; ${JSON.stringify(await downloadProgress(p.page, hashName))}\n${await pageDump(name, p)}`);
  });
}

/// Reloads the page and waits until its node started again; resolves to `onionmeshError`
/// (undefined when the node started).
export async function reloadNode(p) {
  await p.page.reload();
  await p.page.waitForFunction(() => window.onionmeshReady || window.onionmeshError, null, { timeout: 30000 });
  return p.page.evaluate(() => window.onionmeshError);
}

/// The pieces of `hashName` the page's node said it stored (its `progress` events, each sent once
/// the piece's IndexedDB transaction committed), as a Set of indexes. A reload may lose pieces
/// verified but not yet written; it must never lose one of these.
export async function storedPieces(page, hashName) {
  const evs = await contentEvents(page, hashName);
  return new Set(evs.filter((ev) => ev.event === 'progress').map((ev) => ev.index));
}

/// Reloads page `p` in the middle of its download of `hashName`, once it holds `fraction` of the
/// pieces, and waits until the download completed again. Asserts on the way that the page was
/// still downloading and had stored some pieces, that its node started again, and that it found
/// its partial content (`what`, for the message) in its store. Resolves to `{ mid, storedBefore,
/// evs, resumable }`: `progress()` before the reload, the pieces stored before it
/// ([`storedPieces`]), the content events after it, and their `resumable` event.
export async function reloadMidDownload(p, name, hashName, { fraction, holdTimeout, completeTimeout, what }) {
  const mid = await waitHolding(p, name, hashName, fraction, holdTimeout);
  assert.ok(!mid.complete, `${name} is still downloading when it reloads`);
  const storedBefore = await storedPieces(p.page, hashName);
  assert.ok(storedBefore.size > 0, `${name} had stored some pieces when it reloads`);

  assert.equal(await reloadNode(p), undefined);
  await waitDownloadComplete(p, name, hashName, completeTimeout);

  const evs = await contentEvents(p.page, hashName);
  const resumable = evs.find((ev) => ev.event === 'resumable');
  assert.ok(resumable, `${name} found its ${what} in its store after the reload; its events: ${JSON.stringify(evs.slice(0, 5))}\n${await pageDump(name, p)}`);
  return { mid, storedBefore, evs, resumable };
}

/// Checks what [`reloadMidDownload`] saw: every piece stored before the reload survived it, and
/// after it the page fetched the missing pieces, at most 5 % more. Logs the counts; returns the
/// progress events after the reload and the number of pieces that were missing.
export function checkResumed(name, { mid, storedBefore, evs, resumable }) {
  // Every event of the reloaded page came after the reload. (The page may ask for the download
  // before the node reports it resumable, so pieces can arrive before that event.)
  const fetched = evs.filter((ev) => ev.event === 'progress');
  const remaining = mid.pieces - resumable.piecesHave;
  console.log(`${name}: ${mid.piecesHave}/${mid.pieces} pieces verified and ${storedBefore.size} stored before the reload, ${resumable.piecesHave} found stored after it; fetched ${fetched.length} after it`);
  assert.ok(resumable.piecesHave >= storedBefore.size, `every piece ${name} said it stored survived the reload (${resumable.piecesHave} found, ${storedBefore.size} stored)`);
  assert.ok(fetched.length >= remaining && fetched.length <= Math.ceil(remaining * 1.05),
    `after the reload ${name} fetched ${fetched.length} pieces: the ${remaining} missing, at most 5 % more`);
  return { fetched, remaining };
}

/// The content events of `hashName` the page saw, in order: `{ event, index, piecesHave, source }`.
export async function contentEvents(page, hashName) {
  return page.evaluate((h) => window.onionmesh.events
    .filter((ev) => ev.type === 'content' && ev.hashName === h)
    .map((ev) => ({ event: ev.event, index: ev.index, piecesHave: ev.piecesHave, source: ev.source })), hashName);
}

/// Waits until the page holds every piece of `hashName` and its node said `done` (blob()
/// answers only from then on); the error says how far it got.
export async function waitDownloadComplete(p, name, hashName, timeout) {
  await p.page.waitForFunction((h) => {
    const d = window.onionmesh.downloads.get(h);
    return d && d.progress().complete && window.onionmesh.events
      .some((ev) => ev.type === 'content' && ev.event === 'done' && ev.hashName === h);
  }, hashName, { timeout, polling: 250 }).catch(async (err) => {
    throw new Error(`${name}'s download did not complete: ${err.message}; progress ${JSON.stringify(await downloadProgress(p.page, hashName))}\n${await pageDump(name, p)}`);
  });
}

/// What a page said on its console and in its log card, for a failure message.
export async function pageDump(name, p) {
  const log = await p.page.evaluate(() => [...document.querySelectorAll('#log li')].slice(-40).map((li) => li.textContent))
    .catch(() => ['(the page is gone)']);
  return `--- ${name} console:\n${p.consoleLines.slice(-30).join('\n')}\n--- ${name} log:\n${log.join('\n')}`;
}

// ----- facilitators and the web exit (issue 10) ------------------------------------------------

/// Types `text` into "Open a link" and presses Open, as a user would. Resolves to the status
/// sentence shown right after.
export async function openFromBox(p, text) {
  await p.page.fill('#open-input', text);
  await p.page.click('#open-button');
  return p.page.textContent('#open-status');
}

/// Waits until the player plays `hashName` (currentTime past 0.2 s). Resolves to `{ t,
/// complete, piecesHave, pieces, ms }`, `ms` since `since` (a Date.now()).
export async function waitPlaying(p, name, hashName, timeout, since = Date.now()) {
  const h = await p.page.waitForFunction((h) => {
    const v = document.getElementById('player-video');
    const d = window.onionmesh.downloads.get(h);
    if (!d || v.paused || v.currentTime <= 0.2) return false;
    const pr = d.progress();
    return { t: v.currentTime, complete: pr.complete, piecesHave: pr.piecesHave, pieces: pr.pieces };
  }, hashName, { timeout, polling: 100 }).catch(async (err) => {
    const st = await p.page.evaluate(() => ({ player: document.getElementById('player-status').textContent, open: document.getElementById('open-status').textContent }));
    throw new Error(`${name}'s player never played: ${err.message}; ${JSON.stringify(st)}; progress ${JSON.stringify(await downloadProgress(p.page, hashName))}\n${await pageDump(name, p)}`);
  });
  return { ...(await h.jsonValue()), ms: Date.now() - since };
}

/// Waits for a `failed` content event of `hashName`; resolves to its reason (a sentence).
export async function waitFailed(p, name, hashName, timeout) {
  const h = await p.page.waitForFunction((h) => {
    const e = window.onionmesh.events.find((ev) => ev.type === 'content' && ev.event === 'failed' && ev.hashName === h);
    return e ? e.reason : false;
  }, hashName, { timeout, polling: 250 }).catch(async (err) => {
    throw new Error(`${name}'s download of ${hashName} never failed: ${err.message}; progress ${JSON.stringify(await downloadProgress(p.page, hashName))}\n${await pageDump(name, p)}`);
  });
  return h.jsonValue();
}

/// The hash_name a web URL is asked for by (`DbSource::web_hash_name` in crates/wire): the first
/// 160 bits of SHA-256 of "onionmesh-web-v1\0" and the URL.
export async function webHashName(url) {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update('onionmesh-web-v1\0').update(url).digest('hex').slice(0, 40);
}

/// Waits until every page's bridge badge says `registered` again (after a bridge restart).
export async function waitRegistered(pages, timeout = 30000) {
  for (const p of pages) {
    await p.page.waitForFunction(() => window.onionmesh.node.bridgeState() === 'registered', null, { timeout });
  }
}

// Shared set-up for the end-to-end tests and benchmarks: a real bridge process on loopback and a
// real headless Chromium, both started here and torn down by the caller.
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

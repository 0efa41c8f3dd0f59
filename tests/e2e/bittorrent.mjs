// Real BitTorrent software for the facilitator tests (issue 10), all from Debian and all on
// 127.0.0.1: `opentracker` (the tracker), `mktorrent` (makes .torrent files), `aria2c` (seeds
// them). Nothing here parses BitTorrent: the infohash comes from `aria2c --show-files`, the
// seeder's upload counter from aria2's own JSON-RPC.
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/// A TCP port nobody listens on now (the OS picks it; a tiny race with other processes is
/// accepted).
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

async function waitForPort(port, what, proc, logs, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}:\n${logs()}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function spawnLogged(bin, args, opts = {}) {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  proc.on('error', (e) => { out += `\ncould not run ${bin}: ${e.message} (apt-get install opentracker mktorrent aria2)`; });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await once(proc, 'exit');
    clearTimeout(timer);
  };
  return { proc, logs: () => out, stop };
}

/// A fresh directory under the OS temp dir, removed by `removeTemp`.
export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `onionmesh-${prefix}-`));
}

export function removeTemp(dir) {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

/// Starts Debian's opentracker on 127.0.0.1 (TCP only) accepting exactly `infohashes` (hex).
/// Debian builds it with a whitelist, read after it chroots into its root dir and drops to
/// `nobody`, so the config and whitelist live in a world-readable temp dir. Resolves to
/// `{ announce, stop, logs }`.
export async function startTracker(infohashes, port) {
  const dir = tempDir('tracker');
  fs.chmodSync(dir, 0o755);
  fs.writeFileSync(path.join(dir, 'whitelist.txt'), infohashes.map((h) => `${h.toLowerCase()}\n`).join(''), { mode: 0o644 });
  const conf = path.join(dir, 'opentracker.conf');
  fs.writeFileSync(conf, [
    `listen.tcp 127.0.0.1:${port}`,
    `tracker.rootdir ${dir}`,
    'access.whitelist /whitelist.txt',
    'tracker.user nobody',
    '',
  ].join('\n'), { mode: 0o644 });
  const t = spawnLogged('/usr/bin/opentracker', ['-f', conf]);
  await waitForPort(port, 'opentracker', t.proc, t.logs);
  return {
    announce: `http://127.0.0.1:${port}/announce`,
    logs: t.logs,
    async stop() { await t.stop(); removeTemp(dir); },
  };
}

/// Makes `<out>` with mktorrent for `target` (a file or a directory, whose files become a
/// multi-file torrent) with 2^`pieceLog2`-byte pieces. Resolves to `{ torrent, infohash,
/// magnet }`, the infohash as aria2c reads it from the .torrent.
export async function makeTorrent(target, out, announce, { pieceLog2 = 18 } = {}) {
  fs.rmSync(out, { force: true });
  await run('/usr/bin/mktorrent', ['-l', String(pieceLog2), '-a', announce, '-o', out, target]);
  const { stdout } = await run('/usr/bin/aria2c', ['--show-files=true', out]);
  const m = stdout.match(/Info Hash:\s*([0-9a-f]{40})/i);
  if (!m) throw new Error(`aria2c --show-files did not print the infohash of ${out}:\n${stdout}`);
  const infohash = m[1].toLowerCase();
  return {
    torrent: out,
    infohash,
    magnet: `magnet:?xt=urn:btih:${infohash}&tr=${encodeURIComponent(announce)}`,
  };
}

/// Seeds `torrent` (whose data sits in `dir`) with aria2c on 127.0.0.1: no DHT, no local peer
/// discovery, no peer exchange, seeding forever (ratio 0). Resolves once aria2c has checked the
/// data and announced. `uploaded()` is aria2's upload counter for this torrent (bytes), read
/// through its JSON-RPC; `stop()` ends it.
export async function seed(torrent, dir, { listenPort, rpcPort } = {}) {
  listenPort ??= await freePort();
  rpcPort ??= await freePort();
  const a = spawnLogged('/usr/bin/aria2c', [
    '--dir', dir,
    '--check-integrity=true',
    '--seed-ratio=0.0',
    '--enable-dht=false', '--enable-dht6=false',
    '--bt-enable-lpd=false',
    '--enable-peer-exchange=false',
    '--disable-ipv6=true',
    `--listen-port=${listenPort}`,
    '--bt-external-ip=127.0.0.1',
    '--enable-rpc=true', `--rpc-listen-port=${rpcPort}`, '--rpc-listen-all=false',
    '--summary-interval=0', '--console-log-level=warn',
    '--bt-tracker-interval=2',
    torrent,
  ]);
  await waitForPort(rpcPort, 'aria2c', a.proc, a.logs);
  const rpc = async (method, params = []) => {
    const res = await fetch(`http://127.0.0.1:${rpcPort}/jsonrpc`, {
      method: 'POST',
      body: JSON.stringify({ jsonrpc: '2.0', id: '1', method, params }),
    });
    const body = await res.json();
    if (body.error) throw new Error(`aria2 ${method}: ${JSON.stringify(body.error)}`);
    return body.result;
  };
  const status = async () => {
    const active = await rpc('aria2.tellActive', [['gid', 'status', 'completedLength', 'totalLength', 'uploadLength', 'numSeeders', 'connections']]);
    return active[0] || null;
  };
  // Seeding once the check found every piece.
  const deadline = Date.now() + 60000;
  for (;;) {
    const s = await status().catch(() => null);
    if (s && s.totalLength !== '0' && s.completedLength === s.totalLength) break;
    if (Date.now() > deadline) throw new Error(`aria2c did not start seeding within 60 s: ${JSON.stringify(s)}\n${a.logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    listenPort,
    logs: a.logs,
    status,
    async uploaded() { const s = await status(); return s ? Number(s.uploadLength) : 0; },
    stop: a.stop,
  };
}

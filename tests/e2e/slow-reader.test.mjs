// Pull-based reads from end to end, in real Chromium: a page that stops reading its stream makes
// the writer at the other end of a 3-hop circuit see `write` return 0 after a bounded number of
// bytes (the flow-control windows and the bounded buffers on the way), in both directions. When
// reading resumes, every byte arrives, byte-identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser } from './harness.mjs';
import { buildCircuit, fourPages } from './circuits.mjs';

/// Far more than the windows hold (a 500-cell stream window is about 250 KB), so that the
/// transfer can finish only if reading really resumed.
const TOTAL = 3 * 1024 * 1024;
/// What a writer may get accepted while its reader does not read: the stream window plus the
/// bounded stream buffers at both ends, with room to spare. The core's numbers give about 320 KB.
const BOUND = 1024 * 1024;

// In page D: serve "sink" and remember the service stream that opens; D reads only when told.
async function serveSink(page) {
  await page.evaluate(() => {
    const node = window.onionmesh.node;
    node.serve('sink');
    window.sink = { stream: null, readable: 0, writable: 0 };
    node.on((e) => {
      if (e.type !== 'service') return;
      if (e.event === 'opened' && e.service === 'sink') window.sink.stream = { circuit: e.circuit, stream: e.stream };
      if (e.event === 'readable') window.sink.readable += 1;
      if (e.event === 'writable') window.sink.writable += 1;
      if (window.sink.onEvent) window.sink.onEvent(e);
    });
  });
}

// In page A: open a stream to "sink" on `circ`; A reads only when told.
async function openSinkStream(page, circ) {
  return page.evaluate((circ) => new Promise((resolve, reject) => {
    const node = window.onionmesh.node;
    window.client = { circ, stream: null };
    const timer = setTimeout(() => reject(new Error('the stream did not open within 20 s')), 20000);
    node.on((e) => {
      if (e.type === 'circuit' && e.event === 'closed' && e.circuit === circ) {
        reject(new Error(`the circuit closed: ${e.code} ${e.reason}`));
      }
      if (e.type !== 'stream' || e.circuit !== circ || e.stream !== window.client.stream) return;
      if (e.event === 'opened') { clearTimeout(timer); resolve(e.stream); }
      if (window.client.onEvent) window.client.onEvent(e);
    });
    window.client.stream = node.openStream(circ, 'sink');
  }), circ);
}

// Write from one side until `write` returns 0 and keeps returning 0 for a second (the reader is
// not reading). Returns the bytes accepted. `side` is "client" (A, node.write) or "sink" (D,
// node.serviceWrite). The data is deterministic so the reader can check it.
async function writeUntilBlocked(page, side, total) {
  return page.evaluate(async ({ side, total }) => {
    const node = window.onionmesh.node;
    const data = new Uint8Array(total);
    for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 11) + (side === 'sink' ? 13 : 0)) & 0xff;
    const write = side === 'client'
      ? (chunk) => node.write(window.client.circ, window.client.stream, chunk)
      : (chunk) => node.serviceWrite(window.sink.stream.circuit, window.sink.stream.stream, chunk);
    const w = { data, sent: 0, zeros: 0 };
    window.writer = w;
    w.pump = () => {
      while (w.sent < total) {
        const want = Math.min(65536, total - w.sent);
        const n = write(data.subarray(w.sent, w.sent + want));
        w.sent += n;
        if (n === 0) { w.zeros += 1; return; }
      }
    };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    // Keep offering bytes until the writer is refused, then check that it stays refused.
    const deadline = performance.now() + 30000;
    while (w.zeros === 0 && performance.now() < deadline) { w.pump(); await sleep(20); }
    if (w.zeros === 0) throw new Error(`write never returned 0; ${w.sent} bytes accepted`);
    const blockedAt = w.sent;
    await sleep(1000);
    w.pump();
    return { blockedAt, afterASecond: w.sent };
  }, { side, total });
}

// Let the writer continue on `writable` events (of its own side).
async function resumeWriterOnWritable(page, side) {
  await page.evaluate((side) => {
    const obj = side === 'client' ? window.client : window.sink;
    obj.onEvent = (e) => { if (e.event === 'writable') window.writer.pump(); };
  }, side);
}

// Start reading on the other side; resolves with the SHA-256 of what arrived and its length once
// `total` bytes arrived.
async function readAll(page, side, total) {
  return page.evaluate(({ side, total }) => new Promise((resolve, reject) => {
    const node = window.onionmesh.node;
    const got = new Uint8Array(total);
    let received = 0;
    const read = side === 'client'
      ? () => node.read(window.client.circ, window.client.stream)
      : () => node.serviceRead(window.sink.stream.circuit, window.sink.stream.stream, 100000);
    const timer = setTimeout(() => reject(new Error(`only ${received} of ${total} bytes arrived within 60 s`)), 60000);
    const drain = async () => {
      for (let chunk; (chunk = read()).length > 0;) {
        if (received + chunk.length > total) { reject(new Error('more bytes arrived than were written')); return; }
        got.set(chunk, received);
        received += chunk.length;
      }
      if (received === total) {
        clearTimeout(timer);
        const sha = [...new Uint8Array(await crypto.subtle.digest('SHA-256', got))]
          .map((x) => x.toString(16).padStart(2, '0')).join('');
        resolve({ received, sha });
      }
    };
    const obj = side === 'client' ? window.client : window.sink;
    const previous = obj.onEvent;
    obj.onEvent = (e) => { if (previous) previous(e); if (e.event === 'readable') drain(); };
    drain();
  }), { side, total });
}

async function writerSha(page) {
  return page.evaluate(async () => [...new Uint8Array(await crypto.subtle.digest('SHA-256', window.writer.data))]
    .map((x) => x.toString(16).padStart(2, '0')).join(''));
}

test('a page that stops reading pushes back on the writer across 3 hops, and everything arrives once it reads again', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const [a, b, c, d] = await fourPages(browser, bridge);
    await serveSink(d.page);
    const circ = await buildCircuit(a.page, [b.id, c.id, d.id]);
    await openSinkStream(a.page, circ);
    await d.page.waitForFunction(() => window.sink.stream !== null, null, { timeout: 20000 });

    // 1. D writes, A does not read: D's serviceWrite returns 0 within the bound.
    const toA = await writeUntilBlocked(d.page, 'sink', TOTAL);
    console.log(`A not reading: D's serviceWrite returned 0 after ${toA.blockedAt} bytes`);
    assert.ok(toA.blockedAt <= BOUND, `D got ${toA.blockedAt} bytes accepted while A did not read`);
    assert.equal(toA.afterASecond, toA.blockedAt, 'still refused a second later');
    await resumeWriterOnWritable(d.page, 'sink');
    const gotA = await readAll(a.page, 'client', TOTAL);
    assert.equal(gotA.received, TOTAL);
    assert.equal(gotA.sha, await writerSha(d.page), 'A got D\'s bytes unchanged');

    // 2. A writes, D does not read: A's write returns 0 within the bound.
    const toD = await writeUntilBlocked(a.page, 'client', TOTAL);
    console.log(`D not reading: A's write returned 0 after ${toD.blockedAt} bytes`);
    assert.ok(toD.blockedAt <= BOUND, `A got ${toD.blockedAt} bytes accepted while D did not read`);
    assert.equal(toD.afterASecond, toD.blockedAt, 'still refused a second later');
    await resumeWriterOnWritable(a.page, 'client');
    const gotD = await readAll(d.page, 'sink', TOTAL);
    assert.equal(gotD.received, TOTAL);
    assert.equal(gotD.sha, await writerSha(a.page), 'D got A\'s bytes unchanged');

    // The links and the circuit are still up.
    const built = await a.page.evaluate((circ) => window.onionmesh.node.circuits().find((x) => x.id === circ)?.state, circ);
    assert.equal(built, 'built');
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

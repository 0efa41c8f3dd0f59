// Helpers for onion-routing tests and benchmarks between real pages (see onion.test.mjs).
import { openNode, waitForLinked } from './harness.mjs';

export const TOTAL = 8 * 1024 * 1024;

/// In page A: open a stream on `circ` to `service`, send `total` pseudo-random bytes with
/// backpressure, collect the echo. Returns both SHA-256s, the byte count and the time taken.
export async function echoThroughCircuit(page, circ, service, total) {
  return page.evaluate(async ({ circ, service, total }) => {
    const node = window.onionmesh.node;
    const data = new Uint8Array(total);
    for (let off = 0; off < total; off += 65536) crypto.getRandomValues(data.subarray(off, off + 65536));
    const got = new Uint8Array(total);
    let received = 0;
    let sent = 0;
    let stream = null;
    let shortWrites = 0;
    const hex = async (b) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', b))]
      .map((x) => x.toString(16).padStart(2, '0')).join('');
    const result = await new Promise((resolve, reject) => {
      let t0 = 0;
      const timer = setTimeout(() => reject(new Error(`timed out: sent ${sent}, received ${received}`)), 150000);
      const pump = () => {
        while (sent < total) {
          const want = Math.min(total - sent, 65536);
          const n = node.write(circ, stream, data.subarray(sent, sent + want));
          sent += n;
          if (n < want) { shortWrites += 1; return; }
        }
      };
      const sub = node.on((e) => {
        if (e.circuit !== circ) return;
        if (e.type === 'circuit' && e.event === 'closed') {
          clearTimeout(timer);
          reject(new Error(`the circuit closed: ${e.code} ${e.reason}`));
        }
        if (e.type !== 'stream' || e.stream !== stream) return;
        if (e.event === 'opened') { t0 = performance.now(); pump(); }
        if (e.event === 'writable') pump();
        if (e.event === 'ended') { clearTimeout(timer); reject(new Error(`the stream ended: ${e.reason}`)); }
        if (e.event === 'readable') {
          // Pull everything that waits: reading is what lets the echo send more.
          for (let chunk; (chunk = node.read(circ, stream)).length > 0;) {
            if (received + chunk.length > total) { clearTimeout(timer); reject(new Error('more bytes came back than were sent')); return; }
            got.set(chunk, received);
            received += chunk.length;
          }
          if (received === total) {
            clearTimeout(timer);
            node.off(sub);
            resolve({ ms: performance.now() - t0 });
          }
        }
      });
      stream = node.openStream(circ, service);
    });
    return { sentSha: await hex(data), gotSha: await hex(got), received, shortWrites, ms: result.ms };
  }, { circ, service, total });
}

/// Four pages, all linked to each other; D serves echo. Returns them and the bridge.
export async function fourPages(browser, bridge) {
  const pages = [];
  for (let i = 0; i < 4; i++) pages.push(await openNode(browser, bridge.url, i === 3 ? '?echo=1' : ''));
  const ids = pages.map((p) => p.id);
  for (const [i, p] of pages.entries()) {
    await waitForLinked(p.page, ids.filter((id) => id !== p.id)).catch((e) => {
      throw new Error(`page ${i} did not link to the others: ${e.message}\n${p.consoleLines.join('\n')}\nbridge:\n${bridge.logs()}`);
    });
  }
  return pages;
}

/// Page A builds a circuit through `path` and waits until it is built.
export async function buildCircuit(page, path) {
  return page.evaluate(async (path) => {
    const node = window.onionmesh.node;
    return new Promise((resolve, reject) => {
      let circ = null;
      const timer = setTimeout(() => reject(new Error('the circuit was not built within 30 s')), 30000);
      const sub = node.on((e) => {
        if (e.type !== 'circuit' || e.circuit !== circ) return;
        if (e.event === 'built') { clearTimeout(timer); node.off(sub); resolve(circ); }
        if (e.event === 'closed') { clearTimeout(timer); node.off(sub); reject(new Error(`closed: ${e.code} ${e.reason}`)); }
      });
      circ = node.buildCircuit(path);
    });
  }, path);
}


/// In page `sinkPage`: serve `service`, count what arrives, answer one byte once `total` arrived.
export async function serveSink(sinkPage, service, total) {
  await sinkPage.evaluate(({ service, total }) => {
    const node = window.onionmesh.node;
    node.serve(service);
    const counts = new Map();
    node.on((e) => {
      if (e.type !== 'service') return;
      const key = `${e.circuit}/${e.stream}`;
      if (e.event === 'opened' && e.service === service) counts.set(key, 0);
      if (!counts.has(key) || (e.event !== 'readable' && e.event !== 'writable')) return;
      for (;;) {
        const chunk = node.serviceRead(e.circuit, e.stream, 1 << 20);
        if (chunk.length === 0) break;
        const n = counts.get(key) + chunk.length;
        counts.set(key, n);
        if (n === total) node.serviceWrite(e.circuit, e.stream, new Uint8Array([1]));
      }
    });
  }, { service, total });
}

/// In page A: send `total` bytes on a new stream of `circ` to a sink service and wait for its
/// one-byte answer. Returns seconds from the stream opening to the answer.
export async function sendToSink(page, circ, service, total) {
  return page.evaluate(async ({ circ, service, total }) => {
    const node = window.onionmesh.node;
    const chunk = new Uint8Array(65536);
    crypto.getRandomValues(chunk);
    let sent = 0;
    let stream = null;
    return new Promise((resolve, reject) => {
      let t0 = 0;
      const timer = setTimeout(() => reject(new Error(`timed out after sending ${sent}`)), 300000);
      const pump = () => {
        while (sent < total) {
          const want = Math.min(total - sent, chunk.length);
          const n = node.write(circ, stream, chunk.subarray(0, want));
          sent += n;
          if (n < want) return;
        }
      };
      const sub = node.on((e) => {
        if (e.circuit !== circ) return;
        if (e.type === 'circuit' && e.event === 'closed') { clearTimeout(timer); reject(new Error(`closed: ${e.reason}`)); }
        if (e.type !== 'stream' || e.stream !== stream) return;
        if (e.event === 'opened') { t0 = performance.now(); pump(); }
        if (e.event === 'writable') pump();
        if (e.event === 'readable' && node.read(circ, stream).length > 0) {
          clearTimeout(timer);
          node.off(sub);
          resolve((performance.now() - t0) / 1000);
        }
      });
      stream = node.openStream(circ, service);
    });
  }, { circ, service, total });
}

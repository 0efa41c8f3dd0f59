// What pages and people do to links, in real Chromium against a real bridge (issue 11):
// 2. a send burst far larger than the link's queue: `send` refuses with BUSY, a `writable` event
//    says when to go on, everything accepted arrives in order, and the link and a circuit riding
//    it survive;
// 4. `disconnect` right after a burst: every message `send` accepted arrives before the close;
// 3. a hop's page closing: its neighbours see the link close and the circuit through it
//    destroyed within 5 s (the page stops its node on `pagehide`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, waitForLinked } from './harness.mjs';
import { buildCircuit, fourPages } from './circuits.mjs';

const MAX = 65531;

// In page `from`: send `count` messages of `size` bytes to `to`, each starting with its index
// (4 bytes) followed by a deterministic pattern; on BUSY wait for `writable` and go on. Returns
// how many sends were refused with BUSY and every other error code met.
async function burst(page, to, count, size) {
  return page.evaluate(({ to, count, size }) => new Promise((resolve, reject) => {
    const node = window.onionmesh.node;
    let next = 0;
    let busy = 0;
    const other = [];
    const message = (i) => {
      const m = new Uint8Array(size);
      new DataView(m.buffer).setUint32(0, i);
      for (let j = 4; j < size; j++) m[j] = (i * 7 + j) & 0xff;
      return m;
    };
    const timer = setTimeout(() => reject(new Error(`the burst stalled at ${next} of ${count} (${busy} BUSY)`)), 60000);
    const go = () => {
      while (next < count) {
        try {
          node.send(to, message(next));
          next += 1;
        } catch (e) {
          if (e.code !== 'BUSY') { other.push(e.code); next += 1; continue; }
          busy += 1;
          return; // wait for `writable`
        }
      }
      clearTimeout(timer);
      node.off(sub);
      resolve({ busy, other });
    };
    const sub = node.on((e) => { if (e.type === 'writable' && e.id === to) go(); });
    go();
  }), { to, count, size });
}

// In page `at`: the messages from `from` (their indexes, and whether each is intact).
async function received(page, from, size) {
  return page.evaluate(({ from, size }) => window.onionmesh.events
    .filter((e) => e.type === 'message' && e.from === from && e.data.length === size)
    .map((e) => {
      const i = new DataView(e.data.buffer, e.data.byteOffset).getUint32(0);
      let ok = true;
      for (let j = 4; j < size; j++) if (e.data[j] !== ((i * 7 + j) & 0xff)) { ok = false; break; }
      return { i, ok };
    }), { from, size });
}

async function circuitState(page, circ) {
  return page.evaluate((circ) => window.onionmesh.node.circuits().find((c) => c.id === circ)?.state ?? 'gone', circ);
}

// Echo a few bytes through `circ` and wait for them to come back.
async function echoOnce(page, circ) {
  return page.evaluate((circ) => new Promise((resolve, reject) => {
    const node = window.onionmesh.node;
    let stream = null;
    const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10000);
    const sub = node.on((e) => {
      if (e.type !== 'stream' || e.circuit !== circ || e.stream !== stream) return;
      if (e.event === 'opened') node.write(circ, stream, new TextEncoder().encode('ping'));
      if (e.event === 'readable') {
        const b = node.read(circ, stream);
        if (b.length > 0) {
          clearTimeout(timer);
          node.off(sub);
          node.closeStream(circ, stream);
          resolve(new TextDecoder().decode(b));
        }
      }
    });
    stream = node.openStream(circ, 'echo');
  }), circ);
}

test('send bursts meet BUSY, not a dead link; disconnect delivers what was accepted; a closed hop is noticed within 5 s', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const [a, b, c, d] = await fourPages(browser, bridge);
    const circ = await buildCircuit(a.page, [b.id, c.id, d.id]);

    // Case 2: 160 maximum-size sends in a tight loop (about 10 MiB) from A to B.
    const r = await burst(a.page, b.id, 160, MAX);
    console.log(`160 sends of ${MAX} bytes: ${r.busy} refused with BUSY (then resumed on 'writable')`);
    assert.deepEqual(r.other, [], 'only BUSY may refuse a send on a live link');
    assert.ok(r.busy > 0, 'a 10 MiB burst must meet backpressure');
    await b.page.waitForFunction(({ from, size }) => window.onionmesh.events
      .filter((e) => e.type === 'message' && e.from === from && e.data.length === size).length >= 160,
    { from: a.id, size: MAX }, { timeout: 60000 });
    const got = await received(b.page, a.id, MAX);
    assert.deepEqual(got.map((m) => m.i), [...Array(160).keys()], 'every message arrived, in order');
    assert.ok(got.every((m) => m.ok), 'every message arrived intact');
    await waitForLinked(a.page, [b.id], 1000);
    assert.equal(await circuitState(a.page, circ), 'built', 'the circuit over the A-B link survived');
    assert.equal(await echoOnce(a.page, circ), 'ping');

    // Case 4: 48 sends then disconnect at once; every accepted one arrives.
    const accepted = await a.page.evaluate((to) => {
      const node = window.onionmesh.node;
      let n = 0;
      for (let i = 0; i < 48; i++) {
        const m = new Uint8Array(40000);
        new DataView(m.buffer).setUint32(0, 1000 + i);
        for (let j = 4; j < m.length; j++) m[j] = ((1000 + i) * 7 + j) & 0xff;
        try { node.send(to, m); n += 1; } catch (e) { if (e.code !== 'BUSY') throw e; break; }
      }
      node.disconnect(to);
      return n;
    }, b.id);
    assert.ok(accepted > 0);
    await b.page.waitForFunction((from) => window.onionmesh.events.some((e) => e.type === 'peer' && e.id === from && e.state === 'closed'),
      a.id, { timeout: 10000 });
    await new Promise((res) => setTimeout(res, 500));
    const after = (await received(b.page, a.id, 40000)).filter((m) => m.i >= 1000);
    console.log(`disconnect right after ${accepted} accepted sends: ${after.length} arrived`);
    assert.deepEqual(after.map((m) => m.i), [...Array(accepted).keys()].map((i) => 1000 + i));
    assert.ok(after.every((m) => m.ok));

    // Case 3: a hop's page closes. C (linked to B and D, the middle of A's new circuit through
    // D, C and B) goes away; its neighbours see the link close and the circuit die within 5 s.
    await a.page.evaluate((id) => window.onionmesh.node.connect(id), b.id);
    await waitForLinked(a.page, [b.id], 30000);
    const circ2 = await buildCircuit(a.page, [d.id, c.id, b.id]);
    const closedAt = Date.now();
    await c.page.close();
    await d.page.waitForFunction((id) => window.onionmesh.events.some((e) => e.type === 'peer' && e.id === id && e.state === 'closed'),
      c.id, { timeout: 5000 });
    await a.page.waitForFunction((circ) => window.onionmesh.events.some((e) => e.type === 'circuit' && e.circuit === circ && e.event === 'closed'),
      circ2, { timeout: 5000 });
    console.log(`a hop's page closed: the neighbour and the circuit's owner noticed within ${Date.now() - closedAt} ms`);
    await assert.rejects(
      a.page.evaluate((circ) => window.onionmesh.node.openStream(circ, 'echo'), circ2),
      /UNKNOWN_CIRCUIT|NOT_OPEN|closed|unknown/i,
    );
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

test('pagehide stops the node: its links close at once and the page says STOPPED', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const [a, b] = [await openNode(browser, bridge.url), await openNode(browser, bridge.url)];
    await waitForLinked(a.page, [b.id]);
    const start = Date.now();
    const after = await a.page.evaluate(() => {
      // What the browser fires when the tab closes or navigates away.
      window.dispatchEvent(new PageTransitionEvent('pagehide'));
      try { window.onionmesh.node.peers(); return 'still running'; } catch (e) { return e.code; }
    });
    assert.equal(after, 'STOPPED');
    await b.page.waitForFunction((id) => window.onionmesh.events.some((e) => e.type === 'peer' && e.id === id && e.state === 'closed'),
      a.id, { timeout: 2000 });
    console.log(`pagehide: the neighbour saw the link close after ${Date.now() - start} ms`);
    assert.ok(!a.consoleLines.some((l) => l.startsWith('pageerror')), a.consoleLines.join('\n'));
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

// Issue 13, acceptance: after a page leaves, automatic circuits stop choosing it. Six linked pages
// serve echo; page A builds an automatic circuit and echoes 1 MiB through it; the middle hop's
// page closes; as soon as A sees its circuit close it builds a new automatic circuit, which must
// be built and echo 1 MiB byte-identically. Ten rounds; after each, a fresh page takes the place
// of the one that left, so every round starts from six linked pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, waitForLinked } from './harness.mjs';
import { echoThroughCircuit } from './circuits.mjs';

const ROUNDS = 10;
const MIB = 1024 * 1024;

// In page A: build an automatic circuit; resolves with its id and hops (short IDs) once built.
async function buildAuto(page) {
  return page.evaluate(() => new Promise((resolve, reject) => {
    const node = window.onionmesh.node;
    let circ = null;
    const timer = setTimeout(() => reject(new Error('no automatic circuit built within 40 s')), 40000);
    const sub = node.on((e) => {
      if (e.type !== 'circuit' || e.circuit !== circ) return;
      if (e.event === 'built') {
        clearTimeout(timer);
        node.off(sub);
        resolve({ circ, hops: node.circuits().find((c) => c.id === circ).hops });
      }
      if (e.event === 'closed') { clearTimeout(timer); node.off(sub); reject(new Error(`build failed: ${e.code} ${e.reason}`)); }
    });
    circ = node.buildCircuit();
  }));
}

// In page A: arm a watcher that, the moment `circ` closes, builds a new automatic circuit.
// `rebuilt()` then waits for its outcome.
async function rebuildOnClose(page, circ) {
  await page.evaluate((circ) => {
    const node = window.onionmesh.node;
    window.rebuild = new Promise((resolve) => {
      let next = null;
      let closedAt = 0;
      const sub = node.on((e) => {
        if (e.type !== 'circuit') return;
        if (e.circuit === circ && e.event === 'closed' && next === null) {
          closedAt = performance.now();
          try {
            next = node.buildCircuit();
          } catch (err) {
            node.off(sub);
            resolve({ error: `buildCircuit threw ${err.code}: ${err.message}`, closeReason: e.reason });
          }
          return;
        }
        if (next === null || e.circuit !== next) return;
        if (e.event === 'built') {
          node.off(sub);
          resolve({ circ: next, hops: node.circuits().find((c) => c.id === next).hops, buildMs: performance.now() - closedAt });
        }
        if (e.event === 'closed') { node.off(sub); resolve({ error: `the new circuit failed: ${e.code} ${e.reason}` }); }
      });
    });
  }, circ);
  return {
    rebuilt: () => page.evaluate(() => Promise.race([
      window.rebuild,
      new Promise((r) => setTimeout(() => r({ error: 'no close and rebuild within 40 s' }), 40000)),
    ])),
  };
}

async function linkAll(pages, bridge) {
  const ids = pages.map((p) => p.id);
  for (const [i, p] of pages.entries()) {
    await waitForLinked(p.page, ids.filter((id) => id !== p.id)).catch((e) => {
      throw new Error(`page ${i} did not link to the others: ${e.message}\n${p.consoleLines.join('\n')}\nbridge:\n${bridge.logs()}`);
    });
  }
}

test('after the middle hop leaves, a new automatic circuit is built at once and echoes 1 MiB, 10 rounds of 10', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  const started = Date.now();
  try {
    const pages = [];
    for (let i = 0; i < 6; i++) pages.push(await openNode(browser, bridge.url, '?echo=1'));
    await linkAll(pages, bridge);
    const a = pages[0];
    const results = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Build until the middle hop is a page (an automatic path may also pass the bridge).
      let first;
      for (let tries = 0; ; tries++) {
        first = await buildAuto(a.page);
        if (pages.some((p) => p !== a && p.id.startsWith(first.hops[1]))) break;
        assert.ok(tries < 10, `ten automatic paths in a row had no page in the middle: ${first.hops}`);
        await a.page.evaluate((c) => window.onionmesh.node.destroyCircuit(c), first.circ);
      }
      const e1 = await echoThroughCircuit(a.page, first.circ, 'echo', MIB);
      assert.equal(e1.received, MIB);
      assert.equal(e1.gotSha, e1.sentSha, `round ${round}: the first echo came back altered`);

      const middle = pages.find((p) => p !== a && p.id.startsWith(first.hops[1]));
      const watch = await rebuildOnClose(a.page, first.circ);
      const closedAt = Date.now();
      await middle.context.close();
      const r = await watch.rebuilt();
      assert.ok(!r.error, `round ${round}: ${r.error} (first path ${first.hops.join(' ')}, middle ${middle.id.slice(0, 8)})\npage A:\n${a.consoleLines.slice(-30).join('\n')}`);
      const noticedMs = Date.now() - closedAt;
      assert.ok(!r.hops.some((h) => middle.id.startsWith(h)), `round ${round}: the new path ${r.hops} goes through the page that left`);
      const e2 = await echoThroughCircuit(a.page, r.circ, 'echo', MIB);
      assert.equal(e2.received, MIB);
      assert.equal(e2.gotSha, e2.sentSha, `round ${round}: the echo through the new circuit came back altered`);
      results.push({ round, first: first.hops.join('-'), second: r.hops.join('-'), closeToBuiltMs: noticedMs, buildMs: Math.round(r.buildMs), echoMs: Math.round(e2.ms) });
      await a.page.evaluate((c) => window.onionmesh.node.destroyCircuit(c), r.circ);

      // A fresh page takes the place of the one that left.
      pages.splice(pages.indexOf(middle), 1);
      if (round + 1 < ROUNDS) {
        pages.push(await openNode(browser, bridge.url, '?echo=1'));
        await linkAll(pages, bridge);
      }
    }
    console.table(results);
    console.log(`${ROUNDS} of ${ROUNDS} rounds rebuilt and echoed 1 MiB; whole test ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

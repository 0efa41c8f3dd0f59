// The DHT across browser nodes and federated bridges, in real Chromium: two bridges on loopback
// (the second started with --peer-bridge), three pages on each.
//
// 1. A key published by a page on bridge 1 is found (its providers name that page) by a page on
//    bridge 2, with no link between the two sides: DHT frames cross through the bridges.
// 2. A page on bridge 2 links to a page on bridge 1 through a cross-bridge introduction.
// 3. A page reaches a DHT node it has no link to through an introducer (a page linked to both)
//    that relays its frames: it gets the node's answer, and no link to it exists before or after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startBridge, startFederatedBridge, launchBrowser, openNode, linkedPeers, waitForLinked, pageDump } from './harness.mjs';

const dht = (page, fn, arg) => page.evaluate(fn, arg);
const stats = (n) => n.page.evaluate(() => window.onionmesh.node.dhtStats());

/// Retries a DHT lookup until `ok(result)` (the mesh is still forming at first).
async function until(what, call, ok, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await call();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: gave up; last result ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('DHT across two federated bridges: find a value, link across bridges, reach a node through an introducer', async () => {
  const b1 = await startBridge();
  const b2 = await startFederatedBridge([b1]);
  const browser = await launchBrowser();
  const logs = () => `bridge 1:\n${b1.logs()}\nbridge 2:\n${b2.logs()}`;
  try {
    const side1 = [];
    const side2 = [];
    for (let i = 0; i < 3; i++) side1.push(await openNode(browser, b1.url));
    for (let i = 0; i < 3; i++) side2.push(await openNode(browser, b2.url));
    // Pages link to the pages of their own bridge only; the other side is reached through the DHT.
    for (const side of [side1, side2]) {
      for (const n of side) {
        await waitForLinked(n.page, side.filter((o) => o !== n).map((o) => o.id)).catch((e) => {
          throw new Error(`${e.message}\n${n.consoleLines.join('\n')}\n${logs()}`);
        });
      }
    }
    const [p1, p2, p3] = side1;
    const [p4, p5, p6] = side2;
    for (const n of side2) {
      const linked = await linkedPeers(n.page);
      assert.ok(side1.every((o) => !linked.includes(o.id)), 'no cross-bridge link yet');
    }

    // 1. Publish on bridge 1, find from bridge 2.
    const key = randomBytes(20).toString('hex');
    const published = await dht(p1.page, (k) => window.onionmesh.node.dhtPublish(k), key);
    assert.ok(published.holders >= 1, `stored nowhere: ${JSON.stringify(published)}`);
    const found = await until(
      'find the value from bridge 2',
      () => dht(p6.page, (k) => window.onionmesh.node.dhtFindValue(k), key),
      (r) => r.providers.includes(p1.id),
    );
    assert.ok(found.providers.includes(p1.id));
    const s6 = await stats(p6);
    assert.ok(s6.sentViaBridge > 0, 'page 6 reached bridge 1 nodes through the bridges');
    for (const n of side2) {
      const linked = await linkedPeers(n.page);
      assert.ok(side1.every((o) => !linked.includes(o.id)), 'the lookup opened no cross-bridge link');
    }

    // 2. A page on bridge 2 links to a page on bridge 1 via a cross-bridge introduction.
    await p4.page.evaluate((id) => window.onionmesh.node.connect(id), p1.id);
    await waitForLinked(p4.page, [p1.id]).catch(async (e) => {
      throw new Error(`cross-bridge link: ${e.message}\n${await pageDump('page 4', p4)}\n${await pageDump('page 1', p1)}\n${logs()}`);
    });
    await waitForLinked(p1.page, [p4.id]);

    // 3. Page 5 (bridge 2) is linked to page 4, which is now linked to page 1; page 5 has no
    // link to page 1. Page 5 learns from lookups' answers that page 4 can introduce page 1; a
    // later lookup then reaches page 1 through page 4. If page 5 tried page 4 for page 1 before
    // step 2 linked them, page 4 refused, and page 5 remembers that refusal (`NO_ROUTE_TTL`, 30 s,
    // in `crates/node/src/dht.rs`) until an answer of page 4 names itself page 1's introducer,
    // which it does once linked to page 1: the next lookup after that goes through page 4. So
    // lookups are repeated, for at most LOOKUP_WINDOW_MS (less than the 30 s, so a node that only
    // waited the refusal out would fail here), until one goes through an introducer (printed).
    assert.ok(!(await linkedPeers(p5.page)).includes(p1.id), 'no direct link before');
    // The introducer is whichever page linked to both relayed the frames: page 4, unless another
    // page has since linked to page 1 as well (the mesh links by itself), so every page but 1
    // and 5 is counted.
    const others = [p2, p3, p4, p6];
    const relayed = async () => Promise.all(others.map(async (n) => (await stats(n)).relayed));
    const LOOKUP_WINDOW_MS = 20000;
    const t0 = Date.now();
    let lookups = 0;
    const lookup = async () => {
      lookups += 1;
      const before5 = await stats(p5);
      const beforeRelayed = await relayed();
      const r = await dht(p5.page, (id) => window.onionmesh.node.dhtFindNode(id), p1.id);
      const afterRelayed = await relayed();
      const after5 = await stats(p5);
      // Page 1 itself answered, page 5 sent through an introducer, and a page relayed.
      const through = r.closest[0] === p1.id && after5.sentViaIntroducer > before5.sentViaIntroducer
        && afterRelayed.some((n, i) => n > beforeRelayed[i]);
      return { through, relayed: `${beforeRelayed} before, ${afterRelayed} after` };
    };
    await until('reach page 1 through an introducer', lookup, (l) => l.through, LOOKUP_WINDOW_MS).catch(async (e) => {
      const all = await Promise.all([p1, p2, p3, p4, p5, p6].map(async (n, i) => {
        const s = await stats(n);
        return `page ${i + 1}: relayed ${s.relayed}, refused ${s.relayRefused}, via introducer ${s.sentViaIntroducer}, via bridge ${s.sentViaBridge}, linked to ${(await linkedPeers(n.page)).map((id) => id.slice(0, 8))}`;
      }));
      assert.fail(`in ${lookups} lookups from page 5 over ${LOOKUP_WINDOW_MS / 1000} s, none reached page 1 (${p1.id.slice(0, 8)}) through an introducer (relayed counters of pages 2, 3, 4, 6: ${e.message})\n${all.join('\n')}\n${await pageDump('page 5', p5)}\n${await pageDump('page 4', p4)}`);
    });
    console.log(`page 5 reached page 1 through an introducer at lookup ${lookups}, ${Math.round((Date.now() - t0) / 1000)} s after the first`);
    assert.ok(!(await linkedPeers(p5.page)).includes(p1.id), 'and no link was opened');

    // The DHT card shows it.
    assert.notEqual(await p5.page.textContent('#dht-table'), '0');
  } finally {
    await browser.close();
    await b2.stop();
    await b1.stop();
  }
});

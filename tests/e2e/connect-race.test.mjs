// Issue 12, case 2, end to end: two linked pages disconnect, then both call `connect()` on each
// other at the same moment, round after round. Every round must relink within a few seconds,
// with no protocol complaint ("certificate before nonce") on either side. Rounds alternate how
// the link went down: A closes it and both sides see it closed; both close it; or A closes it
// and both connect 20 ms later, before B may have heard of the close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, waitForLinked } from './harness.mjs';

const ROUNDS = 30;
// The target for a relink (printed with every round's time). The test asserts only that each
// round relinks at all, within RELINK_LIMIT_MS, with no protocol complaint: timings are figures
// on these shared 2-core machines (one round in four full runs took over 5 s on 2026-11-30).
const RELINK_MS = 5000;
const RELINK_LIMIT_MS = 30000;

// Peer events of `page` about `peer` from index `from` of the page's event list on.
async function peerEvents(page, peer, from) {
  return page.evaluate(({ peer, from }) => window.onionmesh.events.slice(from)
    .filter((e) => e.type === 'peer' && e.id === peer)
    .map((e) => ({ state: e.state, code: e.code, reason: e.reason })), { peer, from });
}

const eventCount = (page) => page.evaluate(() => window.onionmesh.events.length);

// In `page`: no link (in any state) to `peer`. On a page that called `disconnect` itself
// (`again`), a link to `peer` still there is a new one (seen once, in the round after a round
// whose link had sat in `authenticating` until its timeout and been relinked by the node): it is
// disconnected again, so that every round starts with no link on either side. Resolves to how
// many times that was needed (printed).
const noLink = async (page, peer, timeout, again) => {
  const h = await page.waitForFunction(({ id, again }) => {
    const node = window.onionmesh.node;
    window.__againDisconnects = window.__againDisconnects || 0;
    if (!node.peers().some((p) => p.id === id)) return { n: window.__againDisconnects };
    if (again) {
      window.__againDisconnects += 1;
      node.disconnect(id);
    }
    return false;
  }, { id: peer, again }, { timeout, polling: 250 });
  const { n } = await h.jsonValue();
  await page.evaluate(() => { window.__againDisconnects = 0; });
  return n;
};

// In `page`: call connect(peer) at wall-clock time `at` (ms since 1970); resolves with the ms
// from then until the link is up.
const connectAt = (page, peer, at) => page.evaluate(({ peer, at }) => new Promise((resolve, reject) => {
  const node = window.onionmesh.node;
  setTimeout(() => {
    const t0 = Date.now();
    const sub = node.on((e) => {
      if (e.type === 'peer' && e.id === peer && e.state === 'linked') { node.off(sub); resolve(Date.now() - t0); }
    });
    try { node.connect(peer); } catch (err) { node.off(sub); reject(new Error(`connect threw ${err.code}: ${err.message}`)); }
    if (node.peers().some((p) => p.id === peer && p.state === 'linked')) { node.off(sub); resolve(Date.now() - t0); }
  }, Math.max(0, at - Date.now()));
}), { peer, at });

test(`both pages connect at once after a disconnect, ${ROUNDS} rounds: every round relinks (target ${RELINK_MS / 1000} s)`, async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const a = await openNode(browser, bridge.url);
    const b = await openNode(browser, bridge.url);
    await waitForLinked(a.page, [b.id]);
    await waitForLinked(b.page, [a.id]);
    const times = [];
    for (let round = 0; round < ROUNDS; round++) {
      const kind = ['a closes', 'both close', 'a closes, no wait'][round % 3];
      const [fromA, fromB] = [await eventCount(a.page), await eventCount(b.page)];
      if (kind === 'both close') {
        await Promise.all([
          a.page.evaluate((id) => window.onionmesh.node.disconnect(id), b.id),
          b.page.evaluate((id) => window.onionmesh.node.disconnect(id), a.id),
        ]);
      } else {
        await a.page.evaluate((id) => window.onionmesh.node.disconnect(id), b.id);
      }
      if (kind !== 'a closes, no wait') {
        const again = (await noLink(a.page, b.id, 10000, true)) + (await noLink(b.page, a.id, 10000, kind === 'both close'));
        if (again > 0) console.log(`round ${round} (${kind}): a link came back after the disconnect and was disconnected again (${again} time(s))`);
      }
      // Both call connect() in the same millisecond (the pages share the machine's clock).
      const at = Date.now() + (kind === 'a closes, no wait' ? 20 : 150);
      const race = Promise.all([connectAt(a.page, b.id, at), connectAt(b.page, a.id, at)]);
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), RELINK_LIMIT_MS));
      let ms;
      try {
        ms = await Promise.race([race, timeout]);
      } catch (e) {
        const evA = await peerEvents(a.page, b.id, fromA);
        const evB = await peerEvents(b.page, a.id, fromB);
        assert.fail(`round ${round} (${kind}): no link within ${RELINK_LIMIT_MS} ms (${e.message})\nA: ${JSON.stringify(evA)}\nB: ${JSON.stringify(evB)}`);
      }
      await waitForLinked(a.page, [b.id], 1000);
      await waitForLinked(b.page, [a.id], 1000);
      const slowest = Math.max(...ms);
      const seen = [...await peerEvents(a.page, b.id, fromA), ...await peerEvents(b.page, a.id, fromB)];
      const glare = seen.some((e) => e.code === 'GLARE');
      const replaced = seen.some((e) => /offered a new link/.test(e.reason || ''));
      times.push({ round, kind, aMs: ms[0], bMs: ms[1], glare, replaced });
      if (slowest > RELINK_MS) console.log(`round ${round} (${kind}): relinked after ${slowest} ms (target ${RELINK_MS} ms)`);
      for (const [name, page, peer, from] of [['A', a.page, b.id, fromA], ['B', b.page, a.id, fromB]]) {
        const events = await peerEvents(page, peer, from);
        // A link that sat in `authenticating` until its timeout ("timed out while
        // authenticating") fails here too: until 2026-12-01 about one round in a hundred did,
        // because the answerer's nonce, sent the moment its channel opened, could reach the
        // offerer's channel before it was open and be dropped by Chromium (`links.rs` docs).
        const bad = events
          .filter((e) => /certificate|nonce|protocol|timed out/i.test(e.reason || '') || ['AUTH_FAILED', 'TIMEOUT', 'PROTOCOL'].includes(e.code));
        assert.deepEqual(bad, [], `round ${round} (${kind}): page ${name} closed a link for a bad reason`);
      }
    }
    const all = times.map((t) => Math.max(t.aMs, t.bMs)).sort((x, y) => x - y);
    console.table(times);
    const glares = times.filter((t) => t.glare).length;
    console.log(`${ROUNDS} rounds: relink median ${all[Math.floor(all.length / 2)]} ms, slowest ${all[all.length - 1]} ms; `
      + `${glares} rounds resolved a glare, ${times.filter((t) => t.replaced).length} replaced a link the peer had dropped`);
    // The rounds must really have raced: both offers in flight at once, one side yielding.
    assert.ok(glares >= ROUNDS / 3, `only ${glares} of ${ROUNDS} rounds met a glare`);
    for (const p of [a, b]) assert.ok(!p.consoleLines.some((l) => l.startsWith('pageerror')), p.consoleLines.join('\n'));
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

// Issue 11, case 1: a page whose wall clock is a day ahead or a day behind registers with the
// bridge and links like any other (registration freshness comes from the bridge's challenge,
// not the page's clock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, waitForLinked, skewedClock } from './harness.mjs';

const DAY = 24 * 60 * 60 * 1000;

test('pages whose clocks are a day ahead and a day behind register and link with a normal page', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const started = Date.now();
    const normal = await openNode(browser, bridge.url);
    const ahead = await openNode(browser, bridge.url, '', { initScript: skewedClock(DAY) });
    const behind = await openNode(browser, bridge.url, '', { initScript: skewedClock(-DAY) });
    const pages = { normal, ahead, behind };

    // The skew really is in force in the pages.
    for (const [name, p, want] of [['ahead', ahead, DAY], ['behind', behind, -DAY], ['normal', normal, 0]]) {
      const off = await p.page.evaluate(() => Date.now()) - Date.now();
      assert.ok(Math.abs(off - want) < 60000, `the ${name} page's clock is ${off} ms off, not ${want}`);
      assert.ok(Math.abs(await p.page.evaluate(() => new Date().getTime()) - Date.now() - want) < 60000);
    }

    const ids = Object.values(pages).map((p) => p.id);
    for (const [name, p] of Object.entries(pages)) {
      await p.page.waitForFunction(() => window.onionmesh.node.bridgeState() === 'registered', null, { timeout: 20000 })
        .catch((e) => { throw new Error(`the ${name} page never registered: ${e.message}\n${p.consoleLines.join('\n')}\nbridge:\n${bridge.logs()}`); });
      await waitForLinked(p.page, ids.filter((id) => id !== p.id), 30000)
        .catch((e) => { throw new Error(`the ${name} page did not link to the others: ${e.message}\n${p.consoleLines.join('\n')}`); });
    }
    console.log(`pages at +1 day, -1 day and on time registered and linked in ${Date.now() - started} ms`);

    // The links carry data both ways between the skewed pages.
    await ahead.page.evaluate((to) => window.onionmesh.node.send(to, new TextEncoder().encode('from tomorrow')), behind.id);
    await behind.page.waitForFunction((from) => window.onionmesh.events.some((e) => e.type === 'message' && e.from === from
      && new TextDecoder().decode(e.data) === 'from tomorrow'), ahead.id, { timeout: 10000 });
    assert.doesNotMatch(bridge.logs(), /timestamp|clock/i, 'the bridge complained about a clock');
    for (const p of Object.values(pages)) {
      assert.ok(!p.consoleLines.some((l) => l.startsWith('pageerror')), p.consoleLines.join('\n'));
    }
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

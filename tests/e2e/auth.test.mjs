// A page whose link-authentication proof is wrong (the test-only switch) is refused and its links
// are closed, while honest pages still link with each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, linkedPeers, waitForLinked, events } from './harness.mjs';

test('a peer with a wrong link proof is refused and the link is closed', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const honest = await openNode(browser, bridge.url);
    const liar = await openNode(browser, bridge.url, '?test-bad-proof=1');
    const late = await openNode(browser, bridge.url);

    // The honest pages link with each other.
    await waitForLinked(honest.page, [late.id]);
    await waitForLinked(late.page, [honest.id]);

    // Both honest pages refuse the liar: it was introduced, the channel opened, its proof failed.
    for (const n of [honest, late]) {
      await n.page.waitForFunction(
        (liarId) => window.onionmesh.events.some((e) => e.type === 'peer' && e.id === liarId && e.state === 'refused'),
        liar.id, { timeout: 30000 },
      );
      const refused = (await events(n.page, 'peer')).find((e) => e.id === liar.id && e.state === 'refused');
      assert.match(refused.reason, /authentication failed/);
      assert.ok(!(await linkedPeers(n.page)).includes(liar.id));
    }
    // The liar's side of those links is closed too, and it holds no authenticated link.
    await liar.page.waitForFunction(
      (ids) => ids.every((id) => window.onionmesh.events.some((e) => e.type === 'peer' && e.id === id && (e.state === 'closed' || e.state === 'refused'))),
      [honest.id, late.id], { timeout: 30000 },
    );
    assert.deepEqual(await linkedPeers(liar.page), []);
    const liarRows = await liar.page.locator('#peers tr[data-peer-id]').evaluateAll((rows) => rows.map((r) => r.querySelector('.state').textContent.trim()));
    assert.ok(!liarRows.includes('linked'));
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

test('a page pinned to the bridge ID registers; pinned to another ID it refuses the bridge', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const id = bridge.logs().match(/bridge ID ([0-9a-f]{40})/)?.[1];
    assert.ok(id, `the bridge logged no ID:\n${bridge.logs()}`);
    const pinned = await openNode(browser, bridge.url, `?bridge-id=${id}`);
    await pinned.page.waitForFunction(() => window.onionmesh.node.bridgeState() === 'registered', null, { timeout: 30000 });

    const wrong = 'ab'.repeat(20);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${bridge.url}/?bridge-id=${wrong}`);
    await page.waitForFunction(() => window.onionmeshReady || window.onionmeshError, null, { timeout: 30000 });
    const error = await page.evaluate(() => window.onionmeshError);
    assert.match(String(error), new RegExp(`not the pinned ${wrong}`));
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

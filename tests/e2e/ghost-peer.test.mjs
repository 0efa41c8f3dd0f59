// Ghost peers (issue 12, case 1), in real Chromium against the real bridge: a registered page
// whose script is paused (as a suspended laptop's browser: its connections stay open, nothing
// answers) must not cost newcomers their links. The bridge probes the target of every
// introduction, fails the introduction in seconds with a sentence, stops offering the silent
// page, and drops its registration within 30 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode } from './harness.mjs';
import { fourPages } from './circuits.mjs';

async function suspend(p) {
  const cdp = await p.context.newCDPSession(p.page);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  // Make sure the pause takes: run a little script in the page.
  p.page.evaluate(() => 1).catch(() => {});
  return cdp;
}

test('a suspended page costs newcomers nothing and is dropped by the bridge', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const [a, b, c, ghost] = await fourPages(browser, bridge);
    await suspend(ghost);

    // A newcomer right away: three links to the live pages within seconds, not 30 s per attempt.
    let start = Date.now();
    const e = await openNode(browser, bridge.url);
    await e.page.waitForFunction((n) => window.onionmesh.node.peers().filter((p) => p.state === 'linked').length >= n, 3, { timeout: 20000, polling: 100 });
    const firstMs = Date.now() - start;
    const linked = await e.page.evaluate(() => window.onionmesh.node.peers().filter((p) => p.state === 'linked').map((p) => p.id).sort());
    assert.deepEqual(linked, [a.id, b.id, c.id].sort(), 'the newcomer links to every live page');
    // If it tried the ghost, that attempt failed with a sentence, in seconds.
    const ghostTries = await e.page.evaluate((id) => window.onionmesh.events
      .filter((ev) => ev.type === 'peer' && ev.id === id && (ev.state === 'closed' || ev.state === 'refused'))
      .map((ev) => ev.reason), ghost.id);
    for (const why of ghostTries) assert.match(why ?? '', /\w+ \w+/, 'a failed link says why');
    console.log(`newcomer: 3 links in ${firstMs} ms; attempts at the suspended page: ${JSON.stringify(ghostTries)}`);
    assert.ok(firstMs < 15000, `the newcomer took ${firstMs} ms to hold 3 links`);

    // Within 30 s the bridge drops the silent page and says so to the others.
    await new Promise((r) => setTimeout(r, 30000));
    const logs = bridge.logs();
    assert.match(logs, /silent|did not answer|stopped answering|no answer/i, `the bridge logs why it dropped the page:\n${logs.slice(-2000)}`);

    // A second newcomer is never offered the ghost.
    const f = await openNode(browser, bridge.url);
    await f.page.waitForFunction((n) => window.onionmesh.node.peers().filter((p) => p.state === 'linked').length >= n, 3, { timeout: 20000, polling: 100 });
    const offered = await f.page.evaluate((id) => window.onionmesh.events.some((ev) => ev.type === 'peer' && ev.id === id), ghost.id);
    assert.equal(offered, false, 'the dropped page is not offered to a newcomer');
    for (const p of [a, b, c, ghost, e, f]) await p.context.close().catch(() => {});
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

// Three pages, each in its own browser context, join through a real bridge, link to each other
// over authenticated WebRTC data channels and exchange messages that must arrive byte-identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startBridge, launchBrowser, openNode, linkedPeers, waitForLinked, events } from './harness.mjs';

const sha = (bytes) => createHash('sha256').update(Buffer.from(bytes)).digest('hex');

test('three pages link to each other and exchange byte-identical messages', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await openNode(browser, bridge.url));
    const ids = nodes.map((n) => n.id);
    assert.equal(new Set(ids).size, 3, 'every page has its own ID');

    for (const [i, n] of nodes.entries()) {
      const others = ids.filter((id) => id !== n.id);
      await waitForLinked(n.page, others).catch((e) => {
        throw new Error(`page ${i} did not link to the other two: ${e.message}\n${n.consoleLines.join('\n')}\nbridge:\n${bridge.logs()}`);
      });
      assert.deepEqual(await linkedPeers(n.page), [...others].sort());
    }

    // One message over every link, in both directions, of varied sizes (up to 60 000 bytes).
    const sent = [];
    for (const [i, from] of nodes.entries()) {
      for (const [j, to] of nodes.entries()) {
        if (i === j) continue;
        const payload = randomBytes(1 + ((i * 3 + j) * 9973) % 60000);
        sent.push({ from: from.id, to: j, hash: sha(payload), len: payload.length });
        await from.page.evaluate(({ peer, data }) => window.onionmesh.node.send(peer, new Uint8Array(data)),
          { peer: to.id, data: Array.from(payload) });
      }
    }
    for (const [j, to] of nodes.entries()) {
      const want = sent.filter((s) => s.to === j);
      await to.page.waitForFunction((n) => window.onionmesh.events.filter((e) => e.type === 'message').length >= n,
        want.length, { timeout: 30000 });
      const got = await events(to.page, 'message');
      assert.equal(got.length, want.length);
      for (const w of want) {
        const m = got.find((g) => g.from === w.from);
        assert.ok(m, `page ${j} got nothing from ${w.from}`);
        assert.equal(m.data.length, w.len);
        assert.equal(sha(m.data), w.hash, 'the bytes arrived changed');
      }
    }

    // What a person sees: the bridge state, the page's own ID and the two linked peers.
    for (const [i, n] of nodes.entries()) {
      assert.equal(await n.page.textContent('#bridge-state'), 'registered');
      assert.equal(await n.page.textContent('#my-id'), n.id.slice(0, 8));
      for (const other of ids.filter((id) => id !== n.id)) {
        const row = n.page.locator(`#peers tr[data-peer-id="${other}"]`);
        await row.waitFor({ timeout: 5000 });
        assert.equal((await row.locator('.state').textContent()).trim(), 'linked', `page ${i}'s row for ${other}`);
        assert.match(await row.textContent(), new RegExp(other.slice(0, 8)));
      }
      assert.equal(await n.page.locator('#peers tr[data-peer-id]').count(), 2);
    }
    // The page's own screenshot, for people reading the CI logs' artefacts.
    await nodes[0].page.screenshot({ path: new URL('../../target/e2e-mesh.png', import.meta.url).pathname }).catch(() => {});
  } finally {
    await browser.close();
    assert.equal(await bridge.stop(), 0, 'the bridge shuts down cleanly on Ctrl-C');
  }
});

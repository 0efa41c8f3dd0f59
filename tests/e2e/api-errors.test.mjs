// Every error the page's API throws or rejects with carries a stable `code` (issue 12 case 4),
// including arguments of the wrong type and a circuit path through the page itself; `stop()`
// settles pending promises with STOPPED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser, openNode, waitForLinked } from './harness.mjs';

test('thrown and rejected errors carry stable codes; stop() rejects pending lookups with STOPPED', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const a = await openNode(browser, bridge.url);
    const b = await openNode(browser, bridge.url);
    await waitForLinked(a.page, [b.id]);
    const codes = await a.page.evaluate((other) => {
      const node = window.onionmesh.node;
      const code = (f) => {
        try { f(); return 'no error'; } catch (e) { return e instanceof Error ? e.code ?? 'no code' : 'not an Error'; }
      };
      return {
        nonStringHop: code(() => node.buildCircuit([42])),
        notAnArray: code(() => node.buildCircuit('abc')),
        selfInPath: code(() => node.buildCircuit([other, node.id])),
        selfFirst: code(() => node.buildCircuit([node.id])),
        badPeer: code(() => node.send('not-a-peer', new Uint8Array(1))),
        textData: code(() => node.send(other, 'text')),
        tooLarge: code(() => node.send(other, new Uint8Array(70000))),
        unknownCircuit: code(() => node.read(7, 1)),
        badCircuit: code(() => node.write('x', 1, new Uint8Array(1))),
        badKey: code(() => node.dhtFindValue('zz')),
        badCallback: code(() => node.on(3)),
        badService: code(() => node.serve(17)),
      };
    }, b.id);
    // The core answers a read on a circuit it never had with UNKNOWN_STREAM or UNKNOWN_CIRCUIT.
    assert.match(codes.unknownCircuit, /^UNKNOWN_(CIRCUIT|STREAM)$/);
    delete codes.unknownCircuit;
    assert.deepEqual(codes, {
      nonStringHop: 'BAD_ARGUMENT',
      notAnArray: 'BAD_ARGUMENT',
      selfInPath: 'PATH_THROUGH_SELF',
      selfFirst: 'PATH_THROUGH_SELF',
      badPeer: 'BAD_PEER_ID',
      textData: 'BAD_ARGUMENT',
      tooLarge: 'TOO_LARGE',
      badCircuit: 'BAD_ARGUMENT',
      badKey: 'BAD_ARGUMENT',
      badCallback: 'BAD_ARGUMENT',
      badService: 'BAD_ARGUMENT',
    });

    // A lookup that needs the network is pending when stop() comes: it rejects with STOPPED,
    // and later calls throw STOPPED.
    const settled = await a.page.evaluate(async () => {
      const node = window.onionmesh.node;
      const key = [...crypto.getRandomValues(new Uint8Array(20))].map((x) => x.toString(16).padStart(2, '0')).join('');
      const lookup = node.dhtFindValue(key).then(() => 'resolved', (e) => e.code);
      const publish = node.dhtPublish(key).then(() => 'resolved', (e) => e.code);
      node.stop();
      let after;
      try { node.peers(); after = 'no error'; } catch (e) { after = e.code; }
      return { lookup: await lookup, publish: await publish, after };
    });
    assert.deepEqual(settled, { lookup: 'STOPPED', publish: 'STOPPED', after: 'STOPPED' });
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

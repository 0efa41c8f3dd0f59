// Onion routing between real pages: four pages join a real bridge; page A builds a 3-hop circuit
// through B and C to D, sends 8 MiB to D's echo service over a stream and gets it back. The bytes
// must be equal (SHA-256 and count), and A's page must list the circuit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBridge, launchBrowser } from './harness.mjs';
import { TOTAL, buildCircuit, echoThroughCircuit, fourPages } from './circuits.mjs';

test('page A sends 8 MiB through a 3-hop circuit of pages to an echo service and gets it back', async () => {
  const bridge = await startBridge();
  const browser = await launchBrowser();
  try {
    const [a, b, c, d] = await fourPages(browser, bridge);
    const circ = await buildCircuit(a.page, [b.id, c.id, d.id]);

    // B and C relay it without being its end; D ends it.
    const relayed = async (p) => p.page.evaluate(() => window.onionmesh.node.relayedCircuits());
    const short = (p) => p.id.slice(0, 8);
    assert.deepEqual((await relayed(b)).map((x) => x.hops), [[short(a), short(c)]]);
    assert.deepEqual((await relayed(c)).map((x) => x.hops), [[short(b), short(d)]]);
    assert.deepEqual((await relayed(d)).map((x) => x.hops), [[short(c)]]);

    const r = await echoThroughCircuit(a.page, circ, 'echo', TOTAL).catch((e) => {
      throw new Error(`${e.message}\nA:\n${a.consoleLines.join('\n')}\nD:\n${d.consoleLines.join('\n')}`);
    });
    assert.equal(r.received, TOTAL);
    assert.equal(r.gotSha, r.sentSha, 'the echo is byte-identical');
    assert.ok(r.shortWrites > 0, 'the writer met backpressure (bounded stream buffers)');
    console.log(`8 MiB echoed through 3 hops in ${(r.ms / 1000).toFixed(1)} s (${(2 * TOTAL / r.ms / 1000).toFixed(1)} MB/s both ways)`);

    // A's page lists the circuit: 3 hops, built, more than 8 MiB each way.
    await a.page.waitForFunction((total) => {
      const row = document.querySelector('#circuits tr[data-circuit-id]');
      return row && row.dataset.state === 'built' && row.dataset.hops === '3'
        && Number(row.dataset.bytesSent) >= total && Number(row.dataset.bytesReceived) >= total;
    }, TOTAL, { timeout: 5000 });
    const hopsText = await a.page.textContent('#circuits tr[data-circuit-id] .hops');
    assert.equal(hopsText, [b, c, d].map(short).join(' → '));
  } finally {
    await browser.close();
    await bridge.stop();
  }
});

// The page's DHT card: routing-table size, lookups and how DHT frames travelled, plus a key box
// to publish or look up a content key. Kept apart from app.js; app.js calls wireDht(node, log)
// once the node runs and describeDht(event) for the log.

const $ = (id) => document.getElementById(id);

/// A log line for a `{type: "dht"}` event.
export function describeDht(event) {
  switch (event.event) {
    case 'lookup-done':
      if (event.kind === 'find-value') {
        return `DHT: ${event.providers.length} provider(s) of ${event.target.slice(0, 8)} found in ${event.rounds} rounds.`;
      }
      return `DHT: ${event.kind} of ${event.target.slice(0, 8)} done, ${event.closest.length} nodes answered in ${event.rounds} rounds.`;
    case 'published':
      if (event.code) return `DHT: publishing ${event.key.slice(0, 8)} fell short (${event.code}): ${event.error}; ${event.holders} of ${event.attempted} nodes hold it.`;
      return `DHT: ${event.key.slice(0, 8)} stored at ${event.holders} of ${event.attempted} nodes.`;
    case 'provider-stored':
      return `DHT: holding ${event.provider.slice(0, 8)} as a provider of ${event.key.slice(0, 8)}.`;
    case 'suspect-bridge':
      return `DHT: the bridge keeps returning far peers; other bridges: ${event.alternatives.join(', ') || 'none known'}.`;
    default:
      return `DHT: ${JSON.stringify(event)}`;
  }
}

function renderDht(node) {
  let s;
  try {
    s = node.dhtStats();
  } catch {
    return; // stopped
  }
  $('dht-table').textContent = String(s.tableSize);
  $('dht-lookups').textContent = `${s.lookupsDone} done, ${s.runningLookups} running`;
  $('dht-routes').textContent = `${s.sentDirect} direct / ${s.sentViaIntroducer} via introducer / ${s.sentViaBridge} via bridge`;
  $('dht-relayed').textContent = String(s.relayed);
  $('dht-keys').textContent = `${s.publishedKeys} published, ${s.storedKeys} held for others`;
}

export function wireDht(node, log) {
  const key = $('dht-key');
  const run = async (what, call) => {
    const k = key.value.trim().toLowerCase();
    try {
      const r = await call(k);
      if (what === 'publish') log(`Published ${k.slice(0, 8)} at ${r.holders} nodes.`);
      else log(`Providers of ${k.slice(0, 8)}: ${r.providers.map((p) => p.slice(0, 8)).join(', ') || 'none'}.`);
    } catch (err) {
      log(`DHT ${what} failed (${err.code}): ${err.message}`, 'warn');
    }
    renderDht(node);
  };
  $('dht-publish').addEventListener('click', () => run('publish', (k) => node.dhtPublish(k)));
  $('dht-find').addEventListener('click', () => run('find', (k) => node.dhtFindValue(k)));
  $('dht-publish').disabled = false;
  $('dht-find').disabled = false;
  renderDht(node);
  setInterval(() => renderDht(node), 1000);
}

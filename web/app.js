// The onionmesh page: starts one node; lets its user share a file, open a share link and play
// or save what arrives (content.js, share.js, player.js); and shows the mesh underneath
// (peers, messages, circuits, DHT, log). Tests drive it through `window.onionmesh` and the
// element ids below; keep both stable.
import init, { Node } from './pkg/onionmesh_browser.js';
import { describeContent, wireContent } from './content.js';
import { describeDht, wireDht } from './dht.js';
import { formatBytes, sentence } from './format.js';
import { wireShare } from './share.js';

const MAX_LIST_ITEMS = 200;     // messages and log lines kept on screen
const MAX_EVENTS = 10000;       // events kept in window.onionmesh.events

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// `?bridge-id=<40 hex>` pins the bridge: the node refuses any bridge that cannot prove that ID.
const pinnedBridge = params.get('bridge-id');
const bridgeUrl = (() => {
  const url = params.get('bridge')
    || `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
  if (!pinnedBridge) return url;
  return `${url}${url.includes('?') ? '&' : '?'}bridge-id=${encodeURIComponent(pinnedBridge)}`;
})();
const testBadProof = params.get('test-bad-proof') === '1';

/// What tests (and curious users in the console) can reach: the node, its events, the
/// downloads by hash name, the results of publish(), and `open(linkOrHashName)`.
window.onionmesh = { node: null, events: [], downloads: new Map(), shared: [], open: null };
let content = null;   // wireContent's handle once the node runs

/// The bridge badge; while reconnecting, `#bridge-next` says when the next attempt is due
/// (the node keeps its links and circuits meanwhile).
function setBridgeState(state, event = {}) {
  const el = $('bridge-state');
  el.textContent = state;
  el.dataset.state = state;
  const next = $('bridge-next');
  if (state === 'reconnecting' && typeof event.nextAttemptAt === 'number') {
    const at = new Date(event.nextAttemptAt);
    next.textContent = `attempt ${event.attempt} at ${at.toLocaleTimeString()}`;
    next.dataset.nextAttemptAt = String(event.nextAttemptAt);
    next.hidden = false;
  } else {
    next.textContent = '';
    delete next.dataset.nextAttemptAt;
    next.hidden = true;
  }
}

function append(listId, item) {
  const list = $(listId);
  list.append(item);
  while (list.children.length > MAX_LIST_ITEMS) list.firstElementChild.remove();
  item.scrollIntoView({ block: 'nearest' });
}

function log(text, level = 'info') {
  const li = document.createElement('li');
  li.className = level;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, ' ', text);
  append('log', li);
}

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

function describe(event) {
  switch (event.type) {
    case 'bridge':
      if (event.state === 'reconnecting' && typeof event.nextAttemptAt === 'number') {
        return `Bridge: ${sentence(event.detail)} Reconnecting (attempt ${event.attempt}) at ${new Date(event.nextAttemptAt).toLocaleTimeString()}.`;
      }
      return `Bridge: ${sentence(event.detail)}`;
    case 'writable':
      return `Peer ${event.shortId} can take messages again.`;
    case 'peer':
      return event.reason
        ? `Peer ${event.shortId} is ${event.state} (${event.code}): ${sentence(event.reason)}`
        : `Peer ${event.shortId} is ${event.state}.`;
    case 'message':
      return `Message from ${event.fromShortId} (${event.data.length} bytes).`;
    case 'log':
      return sentence(event.text);
    case 'dht':
      return describeDht(event);
    case 'content':
      return describeContent(event);
    case 'circuit':
      if (event.event === 'closed') return `Circuit ${event.circuit} closed (${event.code}): ${sentence(event.reason)}`;
      if (event.event === 'extended') return `Circuit ${event.circuit} has ${event.hops} hop(s).`;
      return `Circuit ${event.circuit} is ${event.event}.`;
    case 'stream':
    case 'service':
      return `${event.type === 'stream' ? 'Stream' : 'Service stream'} ${event.circuit}/${event.stream} ${event.event}${event.reason ? `: ${event.reason}` : ''}${event.service ? ` (${event.service})` : ''}.`;
    default:
      return `Unknown event ${JSON.stringify(event)}.`;
  }
}

// Messages are bytes. Show them as text when they are UTF-8, otherwise say what arrived.
const decoder = new TextDecoder('utf-8', { fatal: true });

function messageText(bytes) {
  try {
    return decoder.decode(bytes);
  } catch {
    return `${bytes.length} bytes of binary data`;
  }
}

function showMessage(event) {
  const li = document.createElement('li');
  li.dataset.from = event.from;
  const who = document.createElement('span');
  who.className = 'from';
  who.textContent = event.fromShortId;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = messageText(event.data);
  li.append(who, text);
  append('messages', li);
}

function renderPeers(node) {
  let peers;
  try {
    peers = node.peers();
  } catch (err) {
    return; // stopped
  }
  const tbody = $('peers').tBodies[0];
  const seen = new Set();
  for (const p of peers) {
    seen.add(p.id);
    let row = tbody.querySelector(`tr[data-peer-id="${p.id}"]`);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.peerId = p.id;
      row.innerHTML = '<td><code class="short-id"></code></td><td class="state"></td>'
        + '<td class="role"></td><td class="bytes"></td><td class="actions"></td>';
      row.querySelector('.short-id').textContent = p.shortId;
      row.querySelector('.short-id').title = p.id;
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'disconnect';
      button.textContent = 'Disconnect';
      button.addEventListener('click', () => {
        try {
          node.disconnect(p.id);
        } catch (err) {
          log(err.message, 'warn');
        }
      });
      row.querySelector('.actions').append(button);
      tbody.append(row);
    }
    const state = row.querySelector('.state');
    state.textContent = p.state;
    state.dataset.state = p.state;
    row.querySelector('.role').textContent = p.initiator ? 'we offered' : 'they offered';
    row.querySelector('.bytes').textContent = `${formatBytes(p.bytesIn)} / ${formatBytes(p.bytesOut)}`;
  }
  for (const row of [...tbody.rows]) {
    if (!seen.has(row.dataset.peerId)) row.remove();
  }
  $('no-peers').hidden = peers.length > 0;

  // The send form offers linked peers only.
  const select = $('send-peer');
  const linked = peers.filter((p) => p.state === 'linked');
  const chosen = select.value;
  const wanted = linked.map((p) => p.id).join(',');
  if (select.dataset.ids !== wanted) {
    select.dataset.ids = wanted;
    select.replaceChildren();
    if (linked.length === 0) {
      select.append(new Option('(no linked peer)', ''));
    }
    for (const p of linked) select.append(new Option(p.shortId, p.id, false, p.id === chosen));
  }
  $('send-button').disabled = linked.length === 0;
}

// The Circuits card: our circuits (hops as short IDs, state, bytes) and how many we relay.
function renderCircuits(node) {
  let ours;
  let relayed;
  try {
    ours = node.circuits();
    relayed = node.relayedCircuits();
  } catch (err) {
    return; // stopped
  }
  const tbody = $('circuits').tBodies[0];
  const rows = ours.map((c) => {
    const row = document.createElement('tr');
    row.dataset.circuitId = String(c.id);
    row.dataset.state = c.state;
    row.dataset.hops = String(c.hops.length);
    row.dataset.bytesSent = String(c.bytesSent);
    row.dataset.bytesReceived = String(c.bytesReceived);
    row.innerHTML = '<td class="id"></td><td class="hops"></td><td class="state"></td><td class="bytes"></td><td></td>';
    row.querySelector('.id').textContent = String(c.id);
    row.querySelector('.hops').textContent = c.hops.join(' → ');
    row.querySelector('.state').textContent = c.state;
    row.querySelector('.bytes').textContent = `${formatBytes(c.bytesSent)} / ${formatBytes(c.bytesReceived)}`;
    return row;
  });
  if (relayed.length > 0) {
    const row = document.createElement('tr');
    row.className = 'relayed';
    row.innerHTML = '<td colspan="4" class="muted">circuits of other nodes through this page</td><td class="count"></td>';
    row.querySelector('.count').textContent = String(relayed.length);
    rows.push(row);
  }
  tbody.replaceChildren(...rows);
  $('no-circuits').hidden = rows.length > 0;
}

function wireCircuits(node) {
  $('build-circuit').disabled = false;
  $('serve-echo').disabled = false;
  $('build-circuit').addEventListener('click', () => {
    try {
      const id = node.buildCircuit();
      log(`Building circuit ${id}.`);
    } catch (err) {
      log(`Could not build a circuit: ${err.message}`, 'warn');
    }
    renderCircuits(node);
  });
  $('serve-echo').addEventListener('change', (ev) => {
    if (!ev.target.checked) return;
    try {
      node.serve('echo');
      ev.target.disabled = true;
      log('Serving echo: circuits ending here may open streams to "echo".');
    } catch (err) {
      log(err.message, 'warn');
    }
  });
}

function onEvent(node, event) {
  // Streams signal readiness thousands of times a second; a page that wants the bytes subscribes
  // itself (node.on) and pulls them with node.read / node.serviceRead.
  if ((event.type === 'stream' || event.type === 'service')
    && ['readable', 'writable'].includes(event.event)) return;
  const events = window.onionmesh.events;
  events.push(event);
  if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);

  if (event.type === 'bridge') setBridgeState(event.state, event);
  if (event.type === 'message') showMessage(event);
  if (event.type === 'circuit') renderCircuits(node);
  if (event.type === 'content' && content) content.onEvent(event);
  const warn = (event.type === 'log' && event.level === 'warn')
    || (event.type === 'peer' && event.state === 'refused')
    || (event.type === 'content' && event.event === 'failed');
  const line = describe(event);
  if (line !== null) log(line, warn ? 'warn' : 'info');
  if (event.type === 'peer' || event.type === 'bridge') renderPeers(node);
}

function wireForm(node) {
  const encoder = new TextEncoder();
  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const peer = $('send-peer').value;
    const input = $('send-text');
    try {
      node.send(peer, encoder.encode(input.value));
      log(`Sent ${encoder.encode(input.value).length} bytes to ${peer.slice(0, 8)}.`);
      input.value = '';
    } catch (err) {
      // BUSY: the link's queue is full; a {type: "writable"} event says when to try again.
      log(`Could not send (${err.code}): ${err.message}`, 'warn');
    }
  });
  $('find-peers').addEventListener('click', () => {
    try {
      node.findPeers();
      log('Asked the bridge for peers.');
    } catch (err) {
      log(err.message, 'warn');
    }
  });
}

async function main() {
  $('bridge-url').textContent = bridgeUrl;
  setBridgeState('connecting');
  log(`Connecting to the bridge at ${bridgeUrl}${testBadProof ? ' (test: corrupt link proof)' : ''}.`);
  try {
    await init();
    const node = await Node.start(bridgeUrl, { testOnlyCorruptLinkProof: testBadProof });
    window.onionmesh.node = node;
    node.on((event) => onEvent(node, event));
    $('my-id').textContent = node.shortId;
    $('my-id').title = node.id;
    setBridgeState(node.bridgeState());
    $('find-peers').disabled = false;
    wireForm(node);
    wireDht(node, log);
    renderPeers(node);
    wireCircuits(node);
    if (params.get('echo') === '1') {
      node.serve('echo');
      $('serve-echo').checked = true;
      $('serve-echo').disabled = true;
    }
    renderCircuits(node);
    content = wireContent(node, log);
    window.onionmesh.open = content.open;
    wireShare(node, log, () => content.render());
    // A share link opened in the browser (`…/#<hash_name>`) starts its download at once and
    // plays it when it is audio or video; so does a hash typed into the address bar later.
    openFromLocation();
    window.addEventListener('hashchange', openFromLocation);
    // Keep the byte counters fresh between events.
    setInterval(() => { renderPeers(node); renderCircuits(node); }, 1000);
    log(`Started as ${node.shortId}.`);
    window.onionmeshReady = true;
  } catch (err) {
    const message = err && err.message ? err.message : String(err);
    window.onionmeshError = message;
    setBridgeState('disconnected');
    showError(message);
    log(message, 'warn');
  }
}

function openFromLocation() {
  const hash = location.hash.replace(/^#/, '');
  if (/^[0-9a-fA-F]{40}$/.test(hash)) {
    $('open-input').value = location.href;
    content.open(location.href);
  }
}

// The node stops by itself on `pagehide` (its neighbours see its links close at once). A page
// brought back from the back/forward cache therefore has a stopped node: start afresh.
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) location.reload();
});

main();

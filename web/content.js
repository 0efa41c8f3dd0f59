// The content half of the page: the "Open a link" box, the current downloads and the library.
// app.js calls wireContent(node, log) once the node runs, hands it every {type: "content"}
// event, and calls describeContent(event) for the log. Tests reach the downloads through
// `window.onionmesh.downloads` (hashName -> Download) and `window.onionmesh.open(text)`.
import { errorSentence, formatBytes, formatDuration, formatRate, sentence } from './format.js';
import { createPlayer, saveToDisk } from './player.js';
import { Node } from './pkg/onionmesh_browser.js';

const $ = (id) => document.getElementById(id);
const JOIN_GRACE_MS = 10000;   // with 1 or 2 linked peers, wait this long for more
const JOIN_TIMEOUT_MS = 60000; // then say that no peer came
const RENDER_EVERY_MS = 250;    // progress redraws at most this often

/// A log line for a content event, or null for the per-piece ones (they would flood the log).
export function describeContent(event) {
  const h = event.hashName ? event.hashName.slice(0, 8) : '?';
  switch (event.event) {
    case 'metadata':
      return `Found ${event.name} (${formatBytes(event.size)}, ${event.mime || 'unknown type'}, ${event.pieces} pieces) for ${h}; its description checks out against ${{ bittorrent: 'the infohash', web: 'the address asked for' }[event.kind] || 'the link'}.`;
    case 'done':
      return event.publishedAs
        ? `Every piece of the web file ${h} arrived; it is kept as onionmesh content ${event.publishedAs.hashName.slice(0, 8)}.`
        : `Every piece of ${h} arrived and checked out against its hashes.`;
    case 'failed':
      return `The download of ${h} stopped: ${sentence(event.reason)}`;
    case 'resumable':
      return `Resuming ${h}: ${event.piecesHave} of ${event.pieces} pieces were already in this browser.`;
    case 'progress':
    case 'served':
      return null;
    default:
      return `Content event ${event.event} for ${h}.`;
  }
}

/// What the "Open" box was given: `{ target, hashName, kind }` to pass to node.download, or
/// `{ error }`, a sentence. The node's own parser decides (Node.parseTarget: share links,
/// 40-hex hashes and infohashes, magnet links, http(s) addresses), so a malformed magnet link is
/// refused at once, before the page has peers. `kind` is "link", "hash", "magnet" or "web".
export function parseTarget(text) {
  const s = String(text || '').trim();
  if (!s) return { error: 'Paste a share link (it ends with # and 40 hexadecimal characters), a magnet link, a 40-character infohash or a web address.' };
  try {
    const { hashName, kind } = Node.parseTarget(s);
    return { target: s, hashName, kind };
  } catch (err) {
    return { error: errorSentence(err) };
  }
}

/// Where a download's bytes come from, as the page says it (`progress().source`).
export const SOURCE_TEXT = {
  mesh: 'from the mesh',
  bittorrent: 'from BitTorrent via a facilitator',
  web: 'from the web via an exit',
};

function percent(have, total) {
  if (!total) return 0;
  return Math.min(100, Math.floor((100 * have) / total));
}

export function wireContent(node, log) {
  const player = createPlayer(log);
  const downloads = window.onionmesh.downloads;   // hashName -> Download
  const states = new Map();                        // hashName -> { state, reason }
  const targets = new Map();                       // hashName -> what was opened (for Retry)
  const published = new Map();                     // hashName -> { hashName, link } of a web file
  const startedAt = performance.now();
  let renderQueued = false;
  let frameQueued = false;

  function track(download) {
    if (!downloads.has(download.hashName)) {
      downloads.set(download.hashName, download);
      states.set(download.hashName, { state: 'running', reason: '' });
    } else if (states.get(download.hashName).state !== 'done') {
      states.set(download.hashName, { state: 'running', reason: '' });
    }
    return downloads.get(download.hashName);
  }

  function linkedPeers() {
    try { return node.peers().filter((p) => p.state === 'linked').length; } catch { return 0; }
  }

  /// Whether the node has peers enough to ask the mesh: a download started before that fails
  /// at once ("knows no ORDB to ask yet"). Three linked peers make a 3-hop circuit; a smaller
  /// mesh gets JOIN_GRACE_MS to grow first.
  function joined() {
    const n = linkedPeers();
    return n >= 3 || (n >= 1 && performance.now() - startedAt > JOIN_GRACE_MS);
  }

  /// Whether this browser holds every piece of `hashName` (it plays without any peer).
  function held(hashName) {
    try { return node.library().some((i) => i.hashName === hashName && i.complete); } catch { return false; }
  }

  /// Opens a share link or hash name: starts (or finds) its download and shows it in the
  /// player. Returns the Download, or null (the page says why; a link opened before the node
  /// has peers opens by itself once it has).
  function open(text, { play = true } = {}) {
    const status = $('open-status');
    const parsed = parseTarget(text);
    if (parsed.error) {
      status.textContent = parsed.error;
      status.dataset.level = 'bad';
      return null;
    }
    if (!joined() && !held(parsed.hashName)) {
      status.textContent = 'Joining the mesh first: the link opens as soon as this page is linked to a few peers.';
      status.dataset.level = 'busy';
      const asked = performance.now();
      const timer = setInterval(() => {
        if (joined()) {
          clearInterval(timer);
          open(text, { play });
        } else if (performance.now() - asked > JOIN_TIMEOUT_MS) {
          clearInterval(timer);
          status.textContent = 'No peer linked with this page within a minute, so the link cannot be opened yet. Check that the bridge is reachable, then press Open again.';
          status.dataset.level = 'bad';
        }
      }, 250);
      return null;
    }
    let download;
    try {
      download = track(node.download(parsed.target));
    } catch (err) {
      status.textContent = `Could not open it: ${errorSentence(err)}`;
      status.dataset.level = 'bad';
      return null;
    }
    targets.set(download.hashName, parsed.target);
    const meta = download.metadata();
    const h8 = download.hashName.slice(0, 8);
    const asking = {
      magnet: `Opening torrent ${h8}…: asking the mesh through onion circuits; if no page holds it, a bridge fetches it from BitTorrent for you without learning who asked.`,
      hash: `Opening ${h8}…: asking the mesh through onion circuits; if no page holds it and it is a torrent's infohash, a bridge fetches it from BitTorrent for you.`,
      web: 'Fetching the web file through an exit bridge at the end of an onion circuit: the web server sees the bridge, not you.',
      link: `Opening ${h8}…: asking the mesh for it through onion circuits.`,
    }[parsed.kind];
    status.textContent = meta ? `Opened ${meta.name}.` : asking;
    status.dataset.level = 'ok';
    if (play) player.show(download);
    render();
    return download;
  }

  function stateSentence(download, st, p, meta) {
    switch (st.state) {
      case 'done': {
        const pub = published.get(download.hashName);
        return pub ? `Done; kept as onionmesh content ${pub.hashName.slice(0, 8)}, which other pages can open with ${pub.link}.` : 'Done.';
      }
      case 'cancelled': return `Cancelled; the ${formatBytes(p.bytes)} already fetched stay in the library.`;
      case 'failed': return sentence(st.reason);
      default: {
        if (!meta) return 'Looking for the file.';
        let files = null;
        try { files = download.files(); if (download.selectedFile() !== null) files = null; } catch { /* stopped */ }
        if (files && files.length > 1) return `Pick one of its ${files.length} files in the player.`;
        if (p.circuits === 0) return 'Waiting for a circuit to a node that has it.';
        return `Downloading ${SOURCE_TEXT[p.source] || ''} through ${p.circuits} circuit${p.circuits === 1 ? '' : 's'}.`.replace('  ', ' ');
      }
    }
  }

  /// The row of `hashName` in `tbody`, made with `cells` the first time. Rows are updated in
  /// place, not rebuilt: a button replaced under the pointer would lose the click.
  function rowFor(tbody, hashName, cells) {
    let row = tbody.querySelector(`tr[data-hash-name="${hashName}"]`);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.hashName = hashName;
      row.innerHTML = cells;
      tbody.append(row);
    }
    return row;
  }

  function button(className, text, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = className;
    b.textContent = text;
    b.addEventListener('click', onClick);
    return b;
  }

  function renderDownloads() {
    const tbody = $('downloads').tBodies[0];
    const seen = new Set();
    for (const [hashName, download] of downloads) {
      const st = states.get(hashName);
      let p;
      try { p = download.progress(); } catch { continue; }
      seen.add(hashName);
      if (p.complete && st.state === 'running') st.state = 'done';
      const meta = download.metadata();
      const row = rowFor(tbody, hashName, '<td class="name"></td><td class="progress"><progress max="100"></progress> <span class="pct"></span></td>'
        + '<td class="source"></td><td class="rate"></td><td class="circuits"></td><td class="eta"></td><td class="state-text"></td><td class="actions"></td>');
      const name = meta ? meta.name : `${hashName.slice(0, 8)}…`;
      row.querySelector('.name').textContent = name;
      row.querySelector('.name').title = hashName;
      const size = p.size ?? (meta && meta.size);
      const pct = p.complete ? 100 : (size ? percent(p.bytes, size) : percent(p.piecesHave, p.pieces));
      row.querySelector('progress').value = pct;
      row.querySelector('.pct').textContent = `${pct} %`;
      const running = st.state === 'running';
      row.querySelector('.source').textContent = SOURCE_TEXT[p.source] || '';
      row.querySelector('.rate').textContent = running ? formatRate(p.rateBps) : '';
      row.querySelector('.circuits').textContent = running ? String(p.circuits) : '';
      row.querySelector('.eta').textContent = running ? formatDuration(p.etaS) : '';
      row.querySelector('.state-text').textContent = stateSentence(download, st, p, meta);
      if (row.dataset.state !== st.state) {
        row.dataset.state = st.state;
        const actions = row.querySelector('.actions');
        if (running) {
          actions.replaceChildren(button('cancel', 'Cancel', () => {
            download.cancel();
            states.set(hashName, { state: 'cancelled', reason: '' });
            log(`Cancelled ${name}; what arrived stays in the library.`);
            render();
          }));
        } else if (st.state === 'failed' || st.state === 'cancelled') {
          actions.replaceChildren(button('play', st.state === 'failed' ? 'Retry' : 'Resume', () => {
            open(targets.get(hashName) || hashName, { play: player.current === download });
          }));
        } else {
          const hide = button('dismiss', 'Hide', () => {
            if (player.current !== download) { downloads.delete(hashName); states.delete(hashName); }
            row.remove();
          });
          hide.title = 'Remove from this list (the file stays in the library)';
          actions.replaceChildren(hide);
        }
      }
    }
    for (const row of [...tbody.rows]) if (!seen.has(row.dataset.hashName)) row.remove();
    $('no-downloads').hidden = tbody.rows.length > 0;
  }

  function renderLibrary() {
    let items;
    try { items = node.library(); } catch { return; }
    const tbody = $('library').tBodies[0];
    const seen = new Set();
    for (const item of items) {
      seen.add(item.hashName);
      const row = rowFor(tbody, item.hashName, '<td class="name"></td><td class="size"></td><td class="have"></td><td class="actions"></td>');
      row.dataset.complete = String(item.complete);
      row.querySelector('.name').textContent = item.name;
      row.querySelector('.name').title = `${item.type || 'unknown type'}, hash name ${item.hashName}`;
      row.querySelector('.size').textContent = formatBytes(item.size);
      const have = item.complete ? 100 : percent(item.bytesHave, item.size);
      row.querySelector('.have').textContent = item.complete
        ? 'Complete'
        : `${have} %${item.downloading ? ', downloading' : ', paused'}`;
      const media = /^(video|audio)\//.test(item.type);
      const kind = media ? 'play' : (item.complete ? 'save' : 'resume');
      if (row.dataset.kind === kind) continue;
      row.dataset.kind = kind;
      const use = button(kind === 'resume' ? 'save' : kind, { play: 'Play', save: 'Save', resume: 'Resume' }[kind], () => {
        if (media) { open(item.hashName); return; }
        const d = open(item.hashName, { play: false });
        if (d && item.complete) saveToDisk(d, log);
      });
      const del = button('delete', 'Delete', async () => {
        del.disabled = true;
        try {
          await node.remove(item.hashName);
          downloads.delete(item.hashName);
          states.delete(item.hashName);
          player.forget(item.hashName);
          log(`Deleted ${item.name} from this browser; it is no longer served from here.`);
        } catch (err) {
          log(`Could not delete ${item.name}: ${errorSentence(err)}`, 'warn');
          del.disabled = false;
        }
        render();
      });
      row.querySelector('.actions').replaceChildren(use, ' ', del);
    }
    for (const row of [...tbody.rows]) if (!seen.has(row.dataset.hashName)) row.remove();
    $('no-library').hidden = tbody.rows.length > 0;
  }

  function render() {
    renderDownloads();
    renderLibrary();
    player.update();
  }

  // Per-piece events come hundreds of times a second, and every redraw costs the page a style
  // and layout pass on the thread that also moves the node's cells: redraw at most four times a
  // second (a number that changes faster cannot be read anyway).
  function renderSoon() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => { renderQueued = false; renderNext(); }, RENDER_EVERY_MS);
  }

  // A new state (metadata found, done, failed): redraw at the next frame.
  function renderNext() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(() => { frameQueued = false; render(); });
  }

  function onEvent(event) {
    const st = states.get(event.hashName);
    switch (event.event) {
      case 'resumable':
        // The node resumes it by itself; the handle lets the page show it.
        try { track(node.download(event.hashName)); } catch (err) { log(errorSentence(err), 'warn'); }
        break;
      case 'done':
        if (st) st.state = 'done';
        if (event.publishedAs) {
          published.set(event.hashName, event.publishedAs);
          log(`The web file is now onionmesh content ${event.publishedAs.hashName.slice(0, 8)}, served from this page: share ${event.publishedAs.link}`);
        }
        break;
      case 'served':
        // Serving a piece changes nothing on screen.
        return;
      case 'progress':
        return renderSoon();
      case 'failed':
        if (st) { st.state = 'failed'; st.reason = event.reason; }
        player.failed(event.hashName, sentence(event.reason));
        return renderNext();
      default:
        break;
    }
    renderNext();
  }

  $('open-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    open($('open-input').value);
  });
  $('open-input').disabled = false;
  $('open-button').disabled = false;

  // Partial downloads found in the store at start resume by themselves; show them.
  try {
    for (const item of node.library()) {
      if (item.downloading) track(node.download(item.hashName));
    }
  } catch (err) {
    log(`Could not read the library: ${errorSentence(err)}`, 'warn');
  }
  render();
  setInterval(render, 1000);
  return { open, onEvent, render };
}

// "Share a file": a drop zone and a file picker. The chosen file is published (split into
// pieces, stored in this browser, announced in the mesh) and its share link shown with a copy
// button. app.js calls wireShare(node, log) once the node runs.
import { errorSentence, formatBytes } from './format.js';

const $ = (id) => document.getElementById(id);

function setStatus(text, level = 'info') {
  const el = $('share-status');
  el.textContent = text;
  el.dataset.level = level;
}

/// Publishes `file` and shows its link. Resolves to the node's answer
/// (`{ hashName, link, size, pieces }`) or null when publishing failed (the page says why).
async function share(node, log, file) {
  const what = `${file.name || 'the file'} (${formatBytes(file.size)})`;
  setStatus(`Sharing ${what}: splitting it into pieces, storing them in this browser and announcing it in the mesh…`, 'busy');
  $('share-file').disabled = true;
  try {
    const shared = await node.publish(file, { name: file.name || 'file', type: file.type || 'application/octet-stream' });
    window.onionmesh.shared.push({ ...shared, name: file.name });
    $('share-link').value = shared.link;
    $('share-link').dataset.hashName = shared.hashName;
    $('share-result').hidden = false;
    $('share-copy-status').textContent = '';
    setStatus(`Shared ${what} in ${shared.pieces} pieces. Anyone who opens this link streams it through the mesh, without learning who you are; it stays available while this page or another copy is online.`, 'ok');
    log(`Shared ${file.name} as ${shared.hashName}.`);
    return shared;
  } catch (err) {
    setStatus(`Could not share ${what}: ${errorSentence(err)}`, 'bad');
    log(`Could not share ${file.name}: ${errorSentence(err)}`, 'warn');
    return null;
  } finally {
    $('share-file').disabled = false;
    $('share-file').value = '';
  }
}

async function copyLink() {
  const input = $('share-link');
  const status = $('share-copy-status');
  try {
    await navigator.clipboard.writeText(input.value);
    status.textContent = 'Copied.';
  } catch {
    // The clipboard needs a secure context and permission; selecting lets the user copy.
    input.focus();
    input.select();
    status.textContent = 'The browser refused the clipboard: the link is selected, copy it with Ctrl+C.';
  }
}

/// Wires the drop zone, the picker and the copy button; `onShared(result)` runs after each
/// successful publication (the library shows it).
export function wireShare(node, log, onShared = () => {}) {
  const drop = $('share-drop');
  const input = $('share-file');
  const take = async (files) => {
    if (!files || files.length === 0) return;
    if (files.length > 1) log(`Sharing the first of ${files.length} files; drop the others one at a time.`, 'warn');
    const shared = await share(node, log, files[0]);
    if (shared) onShared(shared);
  };
  input.disabled = false;
  input.addEventListener('change', () => take(input.files));
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', () => drop.classList.remove('over'));
  // A file dropped beside the zone must not replace the page (and stop the node).
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => {
    ev.preventDefault();
    take(ev.dataTransfer && ev.dataTransfer.files);
  });
  $('share-copy').addEventListener('click', copyLink);
  setStatus('Drop a file here, or choose one. It stays in this browser and is served to others from here.');
}

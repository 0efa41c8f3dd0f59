// The player: one <video> element that plays audio or video while it downloads (through
// `download.streamTo`, which hands the element to the node's Service Worker), and a Save button
// for any file once every piece is held. content.js owns the downloads and tells the player
// which one to show.
import { errorSentence, formatBytes } from './format.js';

const $ = (id) => document.getElementById(id);

const MEDIA_ERRORS = {
  1: 'the browser stopped fetching it',
  2: 'a network error interrupted it',
  3: 'the browser could not decode it',
  4: 'the browser cannot play this format',
};

function setStatus(text, level = 'info') {
  const el = $('player-status');
  el.textContent = text;
  el.dataset.level = level;
}

/// Hands a complete file to the browser's "save as": a temporary object URL on a download link.
export async function saveToDisk(download, log) {
  const meta = download.metadata();
  const name = (meta && meta.name) || download.hashName;
  try {
    const blob = await download.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    // The browser has started reading the URL by now; keep it a while for slow disks.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    log(`Saving ${name} (${formatBytes(blob.size)}).`);
  } catch (err) {
    log(`Could not save ${name}: ${errorSentence(err)}`, 'warn');
    setStatus(`Could not save ${name}: ${errorSentence(err)}`, 'bad');
  }
}

export function createPlayer(log) {
  const video = $('player-video');
  const save = $('player-save');
  let current = null;     // the Download shown
  let streaming = false;  // streamTo was called for `current`
  let failure = null;     // why `current`'s download stopped, a sentence

  video.addEventListener('error', () => {
    if (!current || !video.error) return;
    const why = MEDIA_ERRORS[video.error.code] || 'an unknown media error happened';
    setStatus(`The player stopped: ${why}${video.error.message ? ` (${video.error.message})` : ''}. Save the file once it has downloaded and open it with another program.`, 'bad');
  });
  video.addEventListener('playing', () => {
    if (current) setStatus(`Playing ${nameOf(current)}${video.muted ? ' muted (the browser allows sound after you click the player)' : ''}.`, 'ok');
  });
  video.addEventListener('waiting', () => {
    if (current) setStatus(`Waiting for the pieces at ${Math.round(video.currentTime)} s to arrive.`, 'busy');
  });
  save.addEventListener('click', () => { if (current) saveToDisk(current, log); });

  /// Lists the files of a multi-file torrent under the player, each with a button that selects
  /// it (only its pieces are fetched). Returns the files, or null (not known yet, or one file).
  function renderFiles(download) {
    let files = null;
    let selected = null;
    try { files = download.files(); selected = download.selectedFile(); } catch { /* stopped */ }
    const box = $('player-files');
    if (!files || files.length < 2) {
      box.hidden = true;
      return null;
    }
    box.hidden = false;
    $('player-files-title').textContent = selected === null
      ? `This torrent holds ${files.length} files: pick the one to stream or save; only its pieces are fetched.`
      : `This torrent holds ${files.length} files; fetching ${files[selected].path}. Pick another to switch.`;
    const list = $('player-files-list');
    if (list.dataset.hashName !== download.hashName || list.children.length !== files.length) {
      list.dataset.hashName = download.hashName;
      list.replaceChildren(...files.map((f) => {
        const li = document.createElement('li');
        li.dataset.index = String(f.index);
        const path = document.createElement('span');
        path.className = 'path';
        path.textContent = f.path;
        const size = document.createElement('span');
        size.className = 'muted';
        size.textContent = formatBytes(f.size);
        const pick = document.createElement('button');
        pick.type = 'button';
        pick.className = 'pick-file';
        pick.textContent = /\.(webm|mp4|m4v|mkv|ogg|ogv|mp3|m4a|opus|wav|flac)$/i.test(f.path) ? 'Stream' : 'Fetch';
        pick.addEventListener('click', () => selectFile(download, f));
        li.append(path, size, pick);
        return li;
      }));
    }
    for (const li of list.children) li.dataset.selected = String(Number(li.dataset.index) === selected);
    return files;
  }

  function selectFile(download, file) {
    try {
      download.selectFile(file.index);
    } catch (err) {
      setStatus(`Could not pick ${file.path}: ${errorSentence(err)}`, 'bad');
      return;
    }
    log(`Fetching ${file.path} (${formatBytes(file.size)}) of the torrent; its other files are not fetched.`);
    // The element may be playing another file of the same torrent: start over.
    streaming = false;
    video.pause();
    video.removeAttribute('src');
    video.load();
    video.hidden = true;
    update();
  }

  function nameOf(download) {
    const m = download.metadata();
    return m ? m.name : download.hashName.slice(0, 8);
  }

  async function play() {
    try {
      await video.play();
    } catch (err) {
      if (err && err.name === 'NotAllowedError') {
        // Autoplay with sound needs a click on this page; muted playback needs none.
        video.muted = true;
        try { await video.play(); } catch (e) { setStatus(`Press play to start: ${errorSentence(e)}`, 'info'); }
      } else if (err && err.name !== 'AbortError') {
        setStatus(`Could not start playing: ${errorSentence(err)}`, 'bad');
      }
    }
  }

  async function startStream(download, meta) {
    streaming = true;
    video.hidden = false;
    setStatus(`Streaming ${meta.name} (${formatBytes(meta.size)}): it plays while it downloads, and you can seek.`, 'busy');
    try {
      await download.streamTo(video);
    } catch (err) {
      if (current !== download) return;
      video.hidden = true;
      setStatus(`This browser cannot stream ${meta.name} while it downloads: ${errorSentence(err)} Save it once it has downloaded.`, 'bad');
      return;
    }
    if (current === download) await play();
  }

  /// Refreshes the player for its download: starts streaming once the metadata says audio or
  /// video, and enables Save once every piece is held.
  function update() {
    const download = current;
    if (!download) return;
    const meta = download.metadata();
    let complete = false;
    try { complete = download.progress().complete; } catch { /* stopped */ }
    save.disabled = !complete;
    $('player-title').textContent = meta ? meta.name : `Content ${download.hashName.slice(0, 8)}…`;
    if (failure) {
      setStatus(failure, 'bad');
      return;
    }
    const files = renderFiles(download);
    if (!meta) {
      setStatus('Looking for this file: waiting for its description (name, type and size).', 'busy');
      return;
    }
    let selected = null;
    try { selected = download.selectedFile(); } catch { /* stopped */ }
    if (files && selected === null) {
      video.hidden = true;
      save.disabled = true;
      setStatus(`${meta.name} is a torrent of ${files.length} files: pick one below.`, 'info');
      return;
    }
    const media = /^(video|audio)\//.test(meta.type);
    if (media && !streaming) {
      startStream(download, meta);
    } else if (!media) {
      video.hidden = true;
      setStatus(complete
        ? `${meta.name} (${formatBytes(meta.size)}, ${meta.type || 'unknown type'}) has downloaded: save it to open it.`
        : `${meta.name} (${meta.type || 'unknown type'}) is not audio or video: save it once it has downloaded.`, complete ? 'ok' : 'busy');
    }
  }

  return {
    /// Shows `download` (replacing what was shown).
    show(download) {
      failure = null;
      if (current === download) { update(); return; }
      current = download;
      streaming = false;
      $('player-files-list').replaceChildren();
      $('player-files').hidden = true;
      video.pause();
      video.removeAttribute('src');
      video.load();
      video.hidden = true;
      $('player').hidden = false;
      update();
    },
    update,
    /// The download shown, or null.
    get current() { return current; },
    /// Says why the download shown stopped (a `failed` event's sentence).
    failed(hashName, reason) {
      if (!current || current.hashName !== hashName) return;
      failure = `The download stopped: ${reason} Press Retry under Downloads to try again.`;
      setStatus(failure, 'bad');
    },
    /// Forgets `hashName` if it is shown (it was deleted).
    forget(hashName) {
      if (!current || current.hashName !== hashName) return;
      current = null;
      failure = null;
      video.pause();
      video.removeAttribute('src');
      video.load();
      video.hidden = true;
      save.disabled = true;
      $('player-title').textContent = 'Nothing playing';
      setStatus('The file was deleted from this browser.');
    },
  };
}

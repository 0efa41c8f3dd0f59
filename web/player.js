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
    if (!meta) {
      setStatus('Looking for this file in the mesh: waiting for its description (name, type and size).', 'busy');
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

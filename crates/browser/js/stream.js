// onionmesh streaming, the page's half (pulled into the wasm bundle by crates/browser/src/stream.rs).
//
// The Service Worker (web/sw.js) answers the media element's Range requests for
// "<scope>onionmesh/stream/<hashName>/<name>". It has no node: it asks a page through
// postMessage, with a MessageChannel port for the answer:
//   {onionmesh: 1, op: "info", hashName}                  -> {ok: true, size, type, name}
//   {onionmesh: 1, op: "read", hashName, offset, length}  -> {ok: true, bytes: Uint8Array}
//   any failure                                          -> {ok: false, code, message}
// This module answers those questions by calling the nodes' handlers (newest first; a node that
// does not know the content says NOT_FOUND and the next one is asked), and keeps the worker
// alive while something streams (a worker with no event for about 30 s may be stopped).

const KEEPALIVE_MS = 20000;
const CONTROL_TIMEOUT_MS = 10000;

/** The nodes' answerers, oldest first. */
let handlers = [];
let listening = false;
let keepalive = null;

function codedError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

/** Called when a node stops. */
export function forgetHandler(handler) {
  handlers = handlers.filter((h) => h !== handler);
  if (handlers.length === 0 && keepalive !== null) {
    clearInterval(keepalive);
    keepalive = null;
  }
}

async function answer(event) {
  const msg = event.data;
  if (!msg || msg.onionmesh !== 1 || (msg.op !== 'info' && msg.op !== 'read')) return;
  const port = event.ports && event.ports[0];
  if (!port) return;
  let failure = {
    code: 'NOT_FOUND',
    message: 'This page runs no onionmesh node that holds or downloads this content.',
  };
  for (const handler of [...handlers].reverse()) {
    try {
      const result = await handler(msg.op, msg.hashName, msg.offset ?? 0, msg.length ?? 0);
      if (msg.op === 'read') {
        // A fresh copy out of wasm memory: hand its buffer over instead of copying again.
        port.postMessage({ ok: true, bytes: result }, [result.buffer]);
      } else {
        port.postMessage({ ok: true, size: result.size, type: result.type, name: result.name });
      }
      return;
    } catch (e) {
      failure = {
        code: (e && e.code) || 'INTERNAL',
        message: String((e && e.message) || e),
      };
      if (failure.code !== 'NOT_FOUND' && failure.code !== 'STOPPED') break;
    }
  }
  port.postMessage({ ok: false, ...failure });
}

function listen() {
  if (listening) return;
  listening = true;
  navigator.serviceWorker.addEventListener('message', (event) => {
    answer(event).catch((e) => console.error('onionmesh: answering the Service Worker failed:', e));
  });
  // Messages from the worker wait until the page says it listens.
  navigator.serviceWorker.startMessages();
}

function startKeepalive() {
  if (keepalive !== null) return;
  keepalive = setInterval(() => {
    const worker = navigator.serviceWorker.controller;
    if (worker) worker.postMessage({ onionmesh: 1, op: 'ping' });
  }, KEEPALIVE_MS);
}

/** Resolves once a Service Worker controls this page (the worker claims its clients when it
 *  activates); rejects after CONTROL_TIMEOUT_MS. */
function controlled() {
  if (navigator.serviceWorker.controller) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      navigator.serviceWorker.removeEventListener('controllerchange', done);
      resolve();
    };
    const timer = setTimeout(() => {
      navigator.serviceWorker.removeEventListener('controllerchange', done);
      reject(codedError('BROWSER',
        'The Service Worker did not take control of this page within 10 seconds (a forced reload bypasses it). Reload the page normally and try again.'));
    }, CONTROL_TIMEOUT_MS);
    navigator.serviceWorker.addEventListener('controllerchange', done);
  });
}

/**
 * Register the worker at `swUrl`, wait until it controls the page, and point `media` at the
 * worker's URL for `hashName`. `handler(op, hashName, offset, length)` answers the worker.
 */
export async function streamTo(handler, swUrl, hashName, name, media) {
  if (!('serviceWorker' in navigator) || !navigator.serviceWorker) {
    throw codedError('BROWSER',
      'This browser offers no Service Workers here (they need https:// or localhost, and some private windows disable them), so the content cannot play while it downloads. Save it with blob() once it is complete.');
  }
  if (!handlers.includes(handler)) handlers.push(handler);
  listen();
  let registration;
  try {
    registration = await navigator.serviceWorker.register(swUrl);
  } catch (e) {
    throw codedError('BROWSER',
      `The Service Worker ${swUrl} could not be registered (${(e && e.message) || e}). Put sw.js next to the page, or pass its URL as the serviceWorker start option.`);
  }
  await controlled();
  startKeepalive();
  const path = `onionmesh/stream/${hashName}/${encodeURIComponent(name || hashName)}`;
  media.src = new URL(path, registration.scope).href;
}

// onionmesh streaming Service Worker.
//
// A page's <video>/<audio> plays a content while the page's node downloads it: Download.streamTo()
// sets media.src to "<scope>onionmesh/stream/<hashName>/<name>", and this worker answers those
// GET requests (200, or 206 for a Range) with bytes it asks the page for. The worker holds no node
// and no bytes: every question goes to a window client through postMessage, answered on a
// MessageChannel port (the page's half is crates/browser/js/stream.js):
//   {onionmesh: 1, op: "info", hashName}                  -> {ok: true, size, type, name}
//   {onionmesh: 1, op: "read", hashName, offset, length}  -> {ok: true, bytes: Uint8Array}
//   any failure                                          -> {ok: false, code, message}
//
// Bytes that are not downloaded yet make the page's read wait (and move the download there), so a
// question may take long: the worker waits as long as the page that asked is open, and gives up
// only when that page is gone. The response body is a ReadableStream pulled CHUNK bytes at a
// time, so a media element that seeks elsewhere cancels it and nothing more is fetched for it.
//
// Everything else (other URLs, other methods) goes to the network untouched.

const PREFIX = 'onionmesh/stream/';
/** Bytes asked of the page per pull of a response body; the first pull of a response asks for
 *  one piece only, so a player that just seeked gets its first bytes as soon as one piece is in. */
const CHUNK = 256 * 1024;
const FIRST_CHUNK = 64 * 1024;
/** While waiting for a page, how often to check it is still open. */
const CLIENT_CHECK_MS = 10000;

self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});

self.addEventListener('activate', (event) => {
  // Take control of pages already open, so streamTo works without a reload.
  event.waitUntil(self.clients.claim());
});

self.addEventListener('message', () => {
  // The page's keep-alive pings: receiving one keeps this worker running; nothing to do.
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  const base = new URL(PREFIX, self.registration.scope);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) return;
  event.respondWith(respond(event, url.pathname.slice(base.pathname.length)));
});

function text(status, message, headers = {}) {
  return new Response(message + '\n', {
    status,
    headers: { 'Content-Type': 'text/plain; charset=utf-8', ...headers },
  });
}

class PageError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Ask one page a question; waits until it answers or the page is gone. */
function askClient(client, question) {
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    let watch = null;
    const finish = () => {
      clearInterval(watch);
      channel.port1.close();
    };
    channel.port1.onmessage = (event) => {
      finish();
      const a = event.data || {};
      if (a.ok) resolve(a);
      else reject(new PageError(a.code || 'INTERNAL', a.message || 'The page could not answer.'));
    };
    watch = setInterval(async () => {
      const still = await self.clients.get(client.id);
      if (!still) {
        finish();
        reject(new PageError('GONE', 'The page that runs the onionmesh node was closed.'));
      }
    }, CLIENT_CHECK_MS);
    client.postMessage({ onionmesh: 1, ...question }, [channel.port2]);
  });
}

/** The window clients to ask, the page that made the request first. */
async function candidates(event) {
  const all = await self.clients.matchAll({ type: 'window' });
  const first = event.clientId ? all.filter((c) => c.id === event.clientId) : [];
  return [...first, ...all.filter((c) => c.id !== event.clientId)];
}

/** Ask pages in turn until one knows the content. Returns [answer, client]. */
async function ask(event, question, preferred) {
  const list = preferred ? [preferred] : await candidates(event);
  let last = new PageError('NOT_FOUND', 'No open page runs an onionmesh node that holds this content.');
  for (const client of list) {
    try {
      return [await askClient(client, question), client];
    } catch (e) {
      last = e;
      if (e.code !== 'NOT_FOUND' && e.code !== 'STOPPED' && e.code !== 'GONE') break;
    }
  }
  throw last;
}

// The Range header. A media element sends exactly "bytes=<first>-<last>" or "bytes=<first>-"
// (Chromium and Firefox do, including the "bytes=0-1" probe), so those two forms are parsed here
// and anything else (suffix ranges, several ranges) is answered 416 with a sentence. A well-kept
// parser (npm "range-parser") is CommonJS and cannot be loaded by a plain Service Worker without a
// bundler, which this project does not use.
function parseRange(header, size) {
  if (header === null) return { whole: true };
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return { error: `the Range "${header}" is not of the form bytes=<first>-<last> or bytes=<first>-` };
  const first = Number(m[1]);
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(first) || first >= size || last < first) {
    return { error: `the Range "${header}" is outside the content's ${size} bytes` };
  }
  return { first, last };
}

function body(event, client, hashName, first, last) {
  let position = first;
  let chunk = FIRST_CHUNK;
  return new ReadableStream({
    async pull(controller) {
      const length = Math.min(chunk, last - position + 1);
      chunk = CHUNK;
      try {
        const [a, c] = await ask(event, { op: 'read', hashName, offset: position, length }, client);
        client = c;
        const bytes = a.bytes;
        if (!bytes || bytes.length === 0) {
          throw new PageError('INTERNAL', `The page returned no bytes at ${position}.`);
        }
        controller.enqueue(bytes);
        position += bytes.length;
        if (position > last) controller.close();
      } catch (e) {
        controller.error(e);
      }
    },
  }, { highWaterMark: 1 });
}

async function respond(event, rest) {
  const hashName = rest.split('/')[0];
  if (!/^[0-9a-fA-F]{40}$/.test(hashName)) {
    return text(404, 'This is not an onionmesh stream address: it should end in /onionmesh/stream/<40 hex characters>/<name>.');
  }
  let info;
  let client;
  try {
    [info, client] = await ask(event, { op: 'info', hashName });
  } catch (e) {
    const status = e.code === 'NOT_FOUND' ? 404 : 503;
    return text(status, e.message);
  }
  const size = info.size;
  const range = parseRange(event.request.headers.get('Range'), size);
  const headers = {
    'Content-Type': info.type || 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'no-store',
  };
  if (range.error) {
    return text(416, `Cannot answer: ${range.error}.`, { 'Content-Range': `bytes */${size}` });
  }
  if (range.whole) {
    headers['Content-Length'] = String(size);
    return new Response(size === 0 ? null : body(event, client, hashName, 0, size - 1), { status: 200, headers });
  }
  headers['Content-Range'] = `bytes ${range.first}-${range.last}/${size}`;
  headers['Content-Length'] = String(range.last - range.first + 1);
  return new Response(body(event, client, hashName, range.first, range.last), { status: 206, headers });
}

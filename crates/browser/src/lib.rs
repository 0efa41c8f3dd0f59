//! # onionmesh-browser: onionmesh in a web page
//!
//! The thin driver around the sans-IO `onionmesh_node::Node` core, compiled to WebAssembly. It is
//! the only onionmesh code in a page that touches the world:
//!
//! - a WebSocket to the bridge (binary frames, `ArrayBuffer`), behind the small
//!   `BridgeTransport` seam so that tests can plug in an in-page rendezvous instead;
//! - one `RTCPeerConnection` per peer link, with no ICE servers (host candidates only) and one
//!   ordered, reliable data channel named `onionmesh`, negotiated without trickle ICE: the offer
//!   or answer is reported once candidate gathering completes;
//! - backpressure on every channel: above 1 MiB buffered, frames wait in a per-link queue that
//!   drains on `bufferedamountlow`, and the core hears the link is congested (application
//!   `send` then throws `BUSY` until a `writable` event; onion cells wait in the core's bounded
//!   queues). A link is closed for its peer only when the peer reads nothing for 30 s;
//! - one `setTimeout` for the core's next deadline, and `performance.now()` as its clock;
//! - reconnection: when the core asks (`Output::ConnectBridge`, with backoff and jitter decided
//!   by the core) the driver opens a new WebSocket; links and circuits stay up meanwhile;
//! - `pagehide`: the node stops, closing its links and bridge connection, so neighbours notice
//!   at once.
//!
//! Every JS callback is a struct field of the thing it belongs to (the WebSocket transport, a
//! link, its channel, the timer) and is detached and freed with it; nothing is `forget()`-ed.
//! The session key is generated in wasm memory at every start from the browser's CSPRNG and is
//! never exported.
//!
//! ## The JS API
//!
//! ```js
//! import init, { Node } from './pkg/onionmesh_browser.js';
//! await init();
//! const node = await Node.start('ws://127.0.0.1:8080/ws');   // rejects: BAD_ARGUMENT, NO_BRIDGE
//! console.log(node.id, node.shortId, node.bridgeState());
//! node.on(event => {
//!   if (event.type === 'peer' && event.state === 'linked') {
//!     node.send(event.id, new TextEncoder().encode('hello'));   // throws BUSY, NOT_LINKED, ...
//!   }
//!   if (event.type === 'writable') { /* the link to event.id takes messages again */ }
//!   if (event.type === 'message') {
//!     console.log(event.fromShortId, new TextDecoder().decode(event.data));
//!   }
//!   if (event.type === 'bridge' && event.state === 'reconnecting') {
//!     console.log('next attempt at', new Date(event.nextAttemptAt));
//!   }
//!   if (event.type === 'stream' && event.event === 'readable') {
//!     // Pull what waits (reads are what let the far writer send more).
//!     for (let b; (b = node.read(event.circuit, event.stream)).length > 0;) console.log(b);
//!   }
//! });
//! // node.peers(), node.findPeers(), node.connect(id), node.disconnect(id), node.off(sub),
//! // node.buildCircuit(path?), node.openStream(c, service), node.write(c, s, bytes),
//! // node.read(c, s, max?), node.serve(name), node.serviceRead(c, s, max?),
//! // node.serviceWrite(c, s, bytes), node.dhtPublish(key), node.dhtFindValue(key),
//! // node.dhtFindNode(id), node.dhtStats(), node.stop()
//!
//! // Content (api_content.rs): share a file, open a link, play while downloading.
//! const { hashName, link } = await node.publish(file, { name: 'clip.webm' });
//! const dl = node.download(link);                  // a Download: metadata(), progress(), cancel()
//! await dl.streamTo(videoElement);                 // needs sw.js next to the page
//! const blob = await dl.blob();                    // once every piece is held
//! const bytes = await node.readContent(hashName, 0, 4096);
//! // node.library(), node.remove(hashName); events {type: "content", event, hashName, ...}
//! ```
//!
//! Errors are JS `Error`s whose message is a sentence saying what happened and what to do, with a
//! stable `code` from the one list (`ErrorCode`, a TypeScript union in the `.d.ts` generated from
//! `onionmesh_node::ErrorCode::ALL`). Arguments of the wrong type throw `BAD_ARGUMENT` (or
//! `BAD_PEER_ID`). `stop()` rejects every pending promise with `STOPPED`.
//!
//! Changes from the earlier API: stream data no longer comes in `{event: "data"}` events (pull it
//! with `read` on `readable`); `serviceRead`'s `max` is optional; `send` may throw `BUSY`; the
//! codes `BAD_URL`, `BAD_CALLBACK` and `BAD_KEY` are now `BAD_ARGUMENT`, `BRIDGE_UNREACHABLE` is
//! `NO_BRIDGE`; DHT calls reject (rather than throw) when the core refuses them.
//!
//! ## Building
//!
//! ```sh
//! cargo build -p onionmesh-browser --target wasm32-unknown-unknown --profile wasm
//! wasm-bindgen --target web --out-dir web/pkg target/wasm32-unknown-unknown/wasm/onionmesh_browser.wasm
//! ```
//!
//! On other targets the crate is empty.
//!
//! ## Testing
//!
//! The tests run in real headless Chromium (`webdriver.json` in this directory holds its flags):
//!
//! ```sh
//! CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=120 \
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   cargo test -p onionmesh-browser --target wasm32-unknown-unknown
//! ```
//!
//! `tests/links_in_page.rs` links two nodes over real WebRTC, introduced by the bridge's
//! `Rendezvous` core running in the same page and plugged in with
//! `BrowserNode::start_with_transport`. `tests/layers.rs` (native) checks that no module imports
//! one that imports it back, and `codes`' unit test (native) that the TypeScript union of codes
//! is `ErrorCode::ALL`.

// Layers, each using only those above it (no module imports one that imports it back):
//   leaves:    codes (the one error-code list, JS errors), timer, views (presentation), args,
//              idb (the content store in IndexedDB)
//   events:    events (core events as JS objects), pending (promises waiting on the core),
//              content (the content reader: plain logic, native tests)
//   wrappers:  bridge (WebSocket + secure channel), link (RTCPeerConnection + data channel),
//              store (which content store), stream (js/stream.js, the Service Worker's page side)
//   driver:    driver (feeds the core, carries out its outputs)
//   JS API:    api (the Node class), api_onion, api_dht, api_content (more methods of the same
//              class, and the Download class)
#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod api_content;
#[cfg(target_arch = "wasm32")]
mod api_dht;
#[cfg(target_arch = "wasm32")]
mod api_onion;
#[cfg(target_arch = "wasm32")]
mod args;
#[cfg(target_arch = "wasm32")]
mod bench;
#[cfg(target_arch = "wasm32")]
mod bridge;
pub mod codes;
pub mod content;
#[cfg(target_arch = "wasm32")]
mod driver;
#[cfg(target_arch = "wasm32")]
mod events;
#[cfg(target_arch = "wasm32")]
pub mod idb;
#[cfg(target_arch = "wasm32")]
mod link;
#[cfg(target_arch = "wasm32")]
mod pending;
pub mod store;
#[cfg(target_arch = "wasm32")]
mod stream;
pub mod target;
#[cfg(target_arch = "wasm32")]
mod timer;
#[cfg(target_arch = "wasm32")]
mod views;

#[cfg(target_arch = "wasm32")]
pub use api::{BrowserNode, EventCallback, NodeOptions, PeerList, StartOptions};
#[cfg(target_arch = "wasm32")]
pub use api_content::{Download, LibraryList};
#[cfg(target_arch = "wasm32")]
pub use api_onion::CircuitList;
#[cfg(target_arch = "wasm32")]
pub use bridge::{BridgeSink, BridgeTransport, WebSocketTransport};
pub use codes::ErrorCode;
pub use store::StoreChoice;

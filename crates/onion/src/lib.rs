//! # onionmesh-onion: Tor-style onion routing, sans-IO
//!
//! Every onionmesh node is both an *onion proxy* (it builds circuits for its own traffic) and an
//! *onion router* (it relays other nodes' circuits and serves streams at the last hop). This
//! crate holds both as plain state machines: they take `now`, cells and API calls in, and hand
//! back [`Output`]s. They own no socket, read no clock and draw randomness only from the seed
//! they were given, so the same code runs in a page, in the bridge and in a 1,000-node
//! simulation on a virtual clock.
//!
//! ## Layers
//!
//! | module | job |
//! |---|---|
//! | [`onionmesh_wire::cell`] | the 512-byte cell and relay-message codec |
//! | [`handshake`] | ntor on secp256k1: onionskin, reply, [`HopKeys`] |
//! | [`crypto`] | per-hop relay layers, recognition, digests, SENDME tags |
//! | [`flow`] | SENDME windows |
//! | [`path`] | choosing hops |
//! | [`OnionProxy`], [`OnionRouter`] | circuits, streams, caps, timers |
//!
//! ## Calling rules
//!
//! - Time is [`onionmesh_wire::Time`], milliseconds on the driver's monotonic clock (a virtual clock
//!   in the simulator), shared with every other sans-IO crate. It must not go backwards.
//! - After **every** `handle_*`, `link_*` or API call, drain [`OnionProxy::poll_output`] /
//!   [`OnionRouter::poll_output`] until `None`, and (re)arm a timer for `poll_timeout()`; when it
//!   fires, call `handle_timeout(now)`.
//! - A node runs one proxy and one router. Each incoming `LinkMsg::Cell` goes to one of them by
//!   [`owner_of`]`(local, peer, circ_id)`; both emit `Output::Cell { peer, cell }` for the driver
//!   to send as `LinkMsg::Cell`. Tell both about links closing (`link_closed`) and congestion
//!   (`link_blocked`); tell the router about links opening (`link_opened`), because an EXTEND2
//!   may be waiting for one (`Output::NeedLink`).
//! - `Output::CloseLink` means the peer sent link-level garbage: close that link, then report
//!   `link_closed` to both machines.
//!
//! ```
//! use onionmesh_onion::*;
//! use onionmesh_wire::Time;
//!
//! // A proxy and one router, wired back to back.
//! let key = OnionKey::from_seed([7; 32]).unwrap();
//! let router_id = key.public().node_id();
//! let hop = HopSpec { id: router_id, onion_key: *key.public() };
//! let proxy_id = onionmesh_wire::NodeId([1; 20]);
//! let mut proxy = OnionProxy::new(proxy_id, ProxyConfig::default(), [1; 32]);
//! let mut router = OnionRouter::new(router_id, key, RouterConfig::default(), [2; 32]);
//! router.register_service("echo").unwrap();
//!
//! let t = Time::ZERO;
//! let circ = proxy.build_circuit(t, &[hop]).unwrap();
//! let mut built = false;
//! for _ in 0..4 {
//!     while let Some(out) = proxy.poll_output() {
//!         match out {
//!             Output::Cell { cell, .. } => router.handle_cell(t, proxy_id, cell),
//!             Output::Event(ProxyEvent::CircuitBuilt { .. }) => built = true,
//!             _ => {}
//!         }
//!     }
//!     while let Some(out) = router.poll_output() {
//!         if let Output::Cell { cell, .. } = out {
//!             proxy.handle_cell(t, router_id, cell);
//!         }
//!     }
//! }
//! assert!(built);
//! let stream = proxy.begin_stream(t, circ, "echo").unwrap();
//! ```
//!
//! ## Cells
//!
//! 512 bytes on every link: circuit id (2), command (1), body (509). Relay bodies start with an
//! 11-byte header (command, recognized, stream id, digest, length), leaving 498 data bytes, the
//! spec's chunk size. Link commands are 0x40.. and relay commands 0x60.., away from Tor's
//! numbers; relay commands 0x70..=0x7f are kept for the chunk/content (`DB_*`) messages.
//! Circuit ids never collide between the two ends of a link: see [`circid`].
//!
//! ## Handshake
//!
//! Tor's ntor, on k256 ECDH, with protocol id `onionmesh-ntor-k256-v1`; one-way authenticated
//! (the router proves it holds the onion key the client expected; the client stays anonymous)
//! and forward secret (both sides' ephemerals are dropped after the handshake). Details and the
//! exact derivation in [`handshake`]; hex test vectors in `tests/vectors.rs`, checked against an
//! independent implementation. Routers use an [`OnionKey`]; whether it equals the node's identity
//! key is the node's choice (see [`OnionKey`]).
//!
//! ## Relay crypto
//!
//! Per hop and per direction, the handshake gives four layer keys and a digest seed. A body is
//! protected in two ways:
//!
//! 1. **A wide-block layer per hop (LIONESS over ChaCha20 and HMAC-SHA256, tweaked by a per-hop
//!    cell counter).** The proxy wraps a forward cell in the layers of hops `k..=1`; each hop
//!    removes its own. Backward, each hop adds its layer and the proxy removes them in order.
//!    The body stays 509 bytes. Because LIONESS is a strong pseudorandom permutation of the whole
//!    body (not a stream cipher), changing *any* bit of a layered body turns the entire plaintext
//!    under the next honest layer into noise, and because the tweak is the cell counter, a cell
//!    decrypted at the wrong position (reordered, replayed, dropped before it) is noise too.
//! 2. **Recognition and a running digest, as in Tor.** The endpoint that builds a cell zeroes
//!    `recognized`, feeds the body into a SHA-256 state seeded with the secret digest seed and
//!    kept across every cell of that hop and direction, and writes the first 4 bytes into
//!    `digest`. A hop that removes its layer and sees `recognized == 0` *and* a matching digest
//!    knows the cell is for it (a false match costs 2^-48). Otherwise it passes the cell on.
//!
//! Why this detects tampering, reordering and replay: a modified body decrypts to noise at the
//! hop it was addressed to, so `recognized`/`digest` fail there; the running digest (and the
//! counter tweak) also make any cell out of its place fail. A cell no hop recognizes ends at the
//! last hop (forward) or at the proxy (backward) with nowhere to go, and that end destroys the
//! circuit ([`DestroyReason::BAD_CELL`]). For a cell addressed to a middle hop, the middle hop
//! cannot tell "tampered" from "for someone further on", so the circuit dies one hop later, at
//! the end: no cell is ever *accepted* modified.
//!
//! **Tagging attacks.** Tor's classic relay crypto is a stream cipher: a malicious first hop can
//! XOR a pattern into a cell and a colluding last hop can XOR it back out, confirming that they
//! share a circuit while the circuit keeps working; only honest last hops see a broken cell.
//! Tor's answer is Counter Galois Onion, a wide-block (UIV+) construction with chained tags.
//! We take the same idea with a construction that needs only ChaCha20 and SHA-256 (both already
//! in the wasm bundle): with a wide-block layer, the pattern cannot be removed by anyone who
//! lacks the keys of the honest hops in between, so a tag always kills the circuit. What is left
//! to colluding ends is the signal "the circuit broke now", which is no more than they learn by
//! dropping or delaying cells (end-to-end timing correlation, which onion routing does not
//! prevent; see "Attacks on Tor" in the spec notes). Counting failed circuits per first hop
//! (Tor's path-bias detection) is how a node can notice a guard doing this; the events here
//! carry the reasons it needs. Costs: two ChaCha20 passes and two HMAC-SHA256 per layer.
//! Measured with `cargo bench -p onionmesh-onion --bench relay` (native, release, one core of a
//! shared 2-core AMD EPYC with SHA extensions): the proxy seals a cell for 3 hops in ~6.7 µs
//! (~150k cells/s, ~75 MB/s of payload), a hop removes its layer and recognizes the cell in
//! ~2.5 µs (~400k cells/s), or passes it on in ~2.1 µs; the proxy peels 3 backward layers in
//! ~7 µs. WebRTC data channels carry far less than that per peer. Not done, unlike CGO: tag
//! chaining and a per-cell key ratchet (forward secrecy within a circuit's life); circuits are
//! short-lived instead.
//!
//! ## Circuits
//!
//! [`OnionProxy::build_circuit`] sends CREATE2 to hop 1, then, hop by hop, EXTEND2 inside
//! RELAY_EARLY to the current last hop (at most 8 RELAY_EARLY per circuit, so at most 8 hops).
//! A router answering EXTEND2 opens a circuit to the next hop on its link, asking the driver
//! for the link first if needed (`Output::NeedLink`, then `link_opened` / `link_failed`). Streams
//! ([`OnionProxy::begin_stream`]) go to a named service at the last hop
//! ([`OnionRouter::register_service`]). DESTROY travels both ways and tears the whole circuit
//! down; TRUNCATE drops the hops after the one it is addressed to; a failed extension comes
//! back as TRUNCATED. Path choice: [`path`].
//!
//! ## Flow control and resources
//!
//! SENDME windows per circuit (1000 cells, +100 per SENDME) and per stream (500, +50), with
//! authenticated circuit SENDMEs (see [`flow`]); acknowledgements follow what the application
//! *read*, so a slow reader holds back a fast writer. Every queue is bounded: per-stream send
//! buffers, per-link cell queues (with `link_blocked` for a congested data channel), a cap on
//! what one circuit may have queued at a router. Routers cap circuits per link and in total and
//! rate-limit CREATE2 per link with a token bucket; past a cap they answer
//! DESTROY(RESOURCELIMIT) without doing the handshake, and keep serving everyone else.
//!
//! ## Errors
//!
//! A peer that breaks the protocol costs its circuit (or, for link-level garbage, its link):
//! [`ProtocolError`] inside [`CloseReason`]. API misuse is an [`ApiError`] and changes nothing.
//! Nothing here panics on input.
#![forbid(unsafe_code)]

mod bucket;
pub mod circid;
pub mod crypto;
mod error;
pub mod flow;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod handshake;
mod key;
mod output;
pub mod path;
mod proxy;
mod queue;
mod router;
mod stream;

pub use circid::{owner_of, CellOwner};
pub use crypto::{Forward, ProxyCrypto, RouterCrypto, SendmeTag};
pub use error::{ApiError, CloseReason, ProtocolError};
pub use handshake::{server_handshake, ClientHandshake, HandshakeError, HopKeys};
pub use key::{OnionKey, OnionPublicKey};
pub use onionmesh_wire::cell::{DestroyReason, EndReason, StreamId};
pub use output::{CircuitView, Output};
pub use path::{select_path, Candidate, HopSpec, PathError, PathRules};
pub use proxy::{
    CircHandle, OnionProxy, ProxyConfig, ProxyEvent, ProxyOutput, StreamHandle, MAX_RELAY_EARLY,
};
pub use router::{ExitStream, OnionRouter, RouterConfig, RouterEvent, RouterOutput};
pub use stream::STREAM_SEND_BUFFER;

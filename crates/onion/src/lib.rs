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
//! | [`path`] | choosing hops, with pinned positions ([`PathPins`]) |
//! | `stream` | the one end-of-circuit stream handler, used by both the proxy and the router |
//! | `ready` | the ready set: circuits with cells to package, per link |
//! | [`OnionProxy`] | `proxy/{build,retry,relay,streams,view}`: building, automatic retries, backward cells |
//! | [`OnionRouter`] | `router/{admission,extend,relay,endpoint,deadlines,view}`: CREATE2, EXTEND2, relaying, the last hop |
//!
//! The proxy and the router each own their parts as fields; a part returns what should happen
//! (a typed enum) and its owner carries it out. No module imports one that imports it back.
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
//! Tor's relay crypto, with ChaCha20 in place of AES-CTR. Per hop and per direction the
//! handshake gives a ChaCha20 key and a digest seed (32 bytes each). A body is protected in two
//! ways:
//!
//! 1. **A stream-cipher layer per hop.** Cell number `n` of a hop and direction is XORed with
//!    the first 509 bytes of ChaCha20 (RFC 8439) under that hop's key with nonce
//!    `0x00000000 | n` (u64, big-endian). The proxy wraps a forward cell in the layers of hops
//!    `k..=1`; each hop removes its own. Backward, each hop adds its layer and the proxy removes
//!    them in order. The body stays 509 bytes at every hop. Each hop keeps its own counter, so a
//!    cell that reaches a hop out of its place (reordered, replayed, or after a dropped one) is
//!    XORed with the wrong keystream and turns into noise there, and so does every later cell:
//!    the circuit is out of step for good and gets destroyed.
//! 2. **Recognition and a running digest, as in Tor.** The endpoint that builds a cell zeroes
//!    `recognized`, feeds the body into a SHA-256 state seeded with the secret digest seed and
//!    kept across every cell of that hop and direction, and writes the first 4 bytes into
//!    `digest`. A hop that removes its layer and sees `recognized == 0` *and* a matching digest
//!    knows the cell is for it (a false match costs 2^-48). Otherwise it passes the cell on.
//!
//! A modified cell: the change survives XOR into the plaintext at the hop it is addressed to,
//! whose digest then fails; a reordered or replayed one is noise, as above. A cell no hop
//! recognizes ends at the last hop (forward) or at the proxy (backward) with nowhere to go, and
//! that end destroys the circuit ([`DestroyReason::BAD_CELL`]). For a cell addressed to a middle
//! hop, the middle hop cannot tell "tampered" from "for someone further on", so the circuit dies
//! one hop later, at the end: no cell is ever *accepted* modified. Circuit SENDMEs echo the
//! running digest of the cell they acknowledge (see [`flow`]), so they cannot be forged blind.
//!
//! **Why this construction.** Speed where it counts: a hop a cell only passes through does one
//! ChaCha20 pass over 509 bytes and compares two bytes, nothing else. Raw ChaCha20 in wasm runs
//! at about 390 MB/s, and the issue asks for 500k cells/s (254 MB/s of bodies) per core in the
//! browser, so a hop can afford one keystream pass and little more. The previous design, LIONESS
//! (two ChaCha20 passes and two HMAC-SHA256 per layer, a wide-block cipher), resisted tagging
//! but ran at 200-700k cells/s natively and far less in wasm. The keystream comes from the
//! `chacha20` crate, which picks AVX2/SSE2 at run time natively and its portable code in wasm.
//!
//! **Known limits, compared with Counter Galois Onion.** A stream cipher is malleable, so this
//! is open to Tor's classic *tagging attack*: a malicious first hop XORs a pattern into a cell
//! and a colluding last hop XORs it back out before checking the digest, confirming that they
//! share a circuit while the circuit keeps working; only an honest last hop sees a broken cell
//! (and destroys the circuit, which is the signal path-bias counting per first hop can use).
//! CGO closes this with a per-hop wide-block (UIV+) layer and tags chained from cell to cell,
//! so any change anywhere turns the rest of the circuit into noise for everyone; it also
//! updates keys per cell (forward secrecy within a circuit's life) and replaces the 4-byte
//! digest with a 16-byte tag. None of that is done here: a wide-block layer costs a second
//! pass (a universal hash or a second keystream) per hop that the wasm target leaves no room
//! for. What colluding ends learn from tagging they can also learn by end-to-end timing
//! correlation, which onion routing does not prevent either ("Attacks on Tor" in the spec
//! notes); circuits are short-lived instead of ratcheting keys.
//!
//! Measured with `cargo bench -p onionmesh-onion --bench relay` (native, release, one core of a
//! shared 2-core AMD EPYC with AVX2 and SHA extensions), in cells/s per core: a hop passes a
//! cell on at ~2.8 M (criterion; ~3.8 M in the bench's plain timed loop) and adds its backward
//! layer at ~2.9 M, recognizes a cell addressed to it at ~1.45 M (the SHA-256 digest doubles the
//! cost), the proxy seals a cell for 3 hops at ~0.78 M and peels 3 backward layers at ~0.84 M.
//! In wasm (headless Chromium, `benchRelayCrypto` in the browser crate) a hop passes a cell on
//! at ~0.75-0.88 M cells/s, with WebAssembly SIMD on and the ChaCha20 keystream built at
//! `opt-level = 3` (it lives in `onionmesh-keystream` so that this crate can be built for size).
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
//! [`OnionProxy::build_circuit_auto`] chooses the path itself (from candidates the node gives,
//! minus hops that failed recently or whose link closed) and, when a hop fails before the
//! circuit is built, starts over on a fresh path avoiding it: up to
//! [`ProxyConfig::build_attempts`] paths within [`ProxyConfig::build_deadline`], under one
//! handle, ending in one `CircuitBuilt` or one `CircuitClosed` with
//! [`CloseReason::BuildFailed`] naming every attempt's failed hop and reason. A path through
//! the node itself is refused as [`PathError::ContainsSelf`] (code `PATH_THROUGH_SELF`).
//!
//! ## Flow control and resources
//!
//! SENDME windows per circuit (1000 cells, +100 per SENDME) and per stream (500, +50), with
//! authenticated circuit SENDMEs (see [`flow`]); acknowledgements follow what the application
//! *read*, so a slow reader holds back a fast writer. Every queue is bounded: per-stream send
//! buffers, per-link cell queues (with `link_blocked` for a congested data channel), a cap on
//! what one circuit may have queued at a router. Routers cap circuits per link and in total and
//! rate-limit CREATE2 per link with a token bucket (`onionmesh_bounded::TokenBucket`, the
//! workspace's one); past a cap they answer DESTROY(RESOURCELIMIT) without doing the
//! handshake, and keep serving everyone else.
//!
//! Per-cell cost does not grow with idle circuits: stream data is packaged from a ready set of
//! circuits that may have something to send (not by asking every circuit on every cell), and
//! the router's timers sit in a deadline index (`poll_timeout` is O(log n)). The bench prints
//! relay cells/s through a whole router with 1 and with 1,001 circuits open, the two cases
//! interleaved: on the shared 2-core machine above, ratio 0.94-1.01 (about 0.5-0.6 M cells/s
//! each under load); 0.003 before the ready set (964 k vs 2.5 k cells/s), when every cell
//! visited every circuit with streams.
//!
//! ## Errors
//!
//! A peer that breaks the protocol costs its circuit (or, for link-level garbage, its link):
//! [`ProtocolError`] inside [`CloseReason`]. API misuse is an [`ApiError`] and changes nothing.
//! Nothing here panics on input.
#![forbid(unsafe_code)]

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
mod ready;
mod router;
mod stream;

pub use circid::{owner_of, CellOwner};
pub use crypto::{Forward, ProxyCrypto, RouterCrypto, SendmeTag};
pub use error::{ApiError, BuildAttempt, CloseReason, ProtocolError};
pub use handshake::{server_handshake, ClientHandshake, HandshakeError, HopKeys};
pub use key::{OnionKey, OnionPublicKey};
pub use onionmesh_wire::cell::{DestroyReason, EndReason, StreamId};
pub use output::{CircuitState, CircuitView, Output};
pub use path::{
    check_path_ids, select_path, select_path_pinned, Candidate, HopSpec, PathError, PathPins,
    PathRules,
};
pub use proxy::{
    CircHandle, OnionProxy, ProxyConfig, ProxyEvent, ProxyOutput, StreamHandle, MAX_RELAY_EARLY,
};
pub use router::{ExitStream, OnionRouter, RouterConfig, RouterEvent, RouterOutput};
pub use stream::STREAM_SEND_BUFFER;

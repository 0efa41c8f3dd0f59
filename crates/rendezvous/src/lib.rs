//! # onionmesh-rendezvous: the bridge's core, sans-IO
//!
//! What a bridge does for the pages registered with it, as one state machine that pretends the
//! network does not exist ([`Rendezvous`]):
//!
//! - **Registration.** Every connection gets a random [`SignalMsg::Challenge`](onionmesh_wire::SignalMsg::Challenge) first; the page
//!   answers with a hello that signs it (`onionmesh_crypto::hello`), proving it holds the key
//!   behind its ID *now*. No wall clock is involved, so a visitor whose clock is days off
//!   registers like anyone else, and a hello recorded on one connection is refused on another.
//! - **Peer answers and introductions.** `FindPeer` is answered with the registered peers
//!   closest to the asker (XOR distance), across federated bridges; `Introduce` / `Introduced`
//!   / `IntroduceFailed` are relayed between peers.
//! - **Liveness.** A connection silent for [`RendezvousConfig::ping_interval`] gets a
//!   [`SignalMsg::Ping`](onionmesh_wire::SignalMsg::Ping); one that stays silent for [`RendezvousConfig::silence_timeout`] is
//!   dropped with its registration and federation announcements. An introduction is relayed
//!   together with a ping: a target that does not answer within
//!   [`RendezvousConfig::probe_timeout`] fails the introduction with a sentence and is not
//!   offered to anyone until it is heard from again.
//! - **Departures.** Peers that leave (or stop answering) are announced to every registered page
//!   in [`SignalMsg::PeersGone`](onionmesh_wire::SignalMsg::PeersGone) (at most one frame of
//!   100 IDs per page per [`RendezvousConfig::departure_batch`]) and to federated bridges in
//!   [`SignalMsg::PeersLeft`](onionmesh_wire::SignalMsg::PeersLeft), coalesced over that
//!   interval.
//! - **Federation** (the `federation` module): bridges exchange challenge-signed
//!   `BridgeHello`s, share registrations, forward DHT frames and introductions for each other,
//!   and run a Kademlia node each ([`Rendezvous::with_dht`]).
//!
//! It owns no socket, spawns no task, reads no clock and draws no randomness it was not given.
//! Calling rules (str0m / quinn-proto style):
//! 1. feed every event in with [`Rendezvous::handle_input`], passing `now` (a [`Time`] on the
//!    driver's monotonic clock; a `now` earlier than one already seen is taken as the latest);
//! 2. after each call, drain [`Rendezvous::poll_output`] until it returns `None` and carry out
//!    the outputs in order;
//! 3. arm one timer for [`Rendezvous::poll_timeout`] and feed [`RendezvousInput::Timeout`] when
//!    it fires.
//!
//! ```
//! use onionmesh_crypto::{hello, Identity};
//! use onionmesh_rendezvous::{
//!     ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput, Time,
//! };
//! use onionmesh_wire::{Frame, SignalMsg};
//!
//! let bridge = Identity::from_seed([1; 32]).unwrap();
//! let mut rv = Rendezvous::new(bridge, RendezvousConfig::default(), [9; 32]);
//! let conn = ConnId(1);
//! rv.handle_input(Time::ZERO, RendezvousInput::Opened(conn));
//! // The bridge's first frame is the challenge.
//! let Some(RendezvousOutput::Send { bytes, .. }) = rv.poll_output() else { panic!() };
//! let Ok(SignalMsg::Challenge { nonce }) = SignalMsg::decode_frame(&bytes) else { panic!() };
//! // The page signs it.
//! let page = Identity::from_seed([2; 32]).unwrap();
//! let hello = SignalMsg::Hello {
//!     pubkey: page.public_key(),
//!     challenge: nonce,
//!     sig: hello::sign(&page, &nonce),
//! };
//! let frame = hello.encode_frame();
//! rv.handle_input(Time::from_millis(20), RendezvousInput::Frame { conn, bytes: &frame });
//! assert!(matches!(rv.poll_output(), Some(RendezvousOutput::Registered { .. })));
//! assert_eq!(rv.registered_peers(), 1);
//! ```
#![forbid(unsafe_code)]

mod config;
mod conn;
mod departures;
mod federation;
mod rendezvous;

pub use config::{codes, RendezvousConfig};
pub use conn::ConnId;
pub use onionmesh_wire::Time;
pub use rendezvous::{Rendezvous, RendezvousInput, RendezvousOutput};

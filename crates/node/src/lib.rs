//! # onionmesh-node: the sans-IO page node
//!
//! [`Node`]: one mesh node (a browser page). It registers with a bridge (answering the bridge's
//! challenge with a signed hello), asks it for peers, gets introduced to them over WebRTC, and
//! authenticates every link with the CERTS binding (see `onionmesh_crypto::link_auth`). The
//! bridge's side of this lives in `onionmesh-rendezvous`.
//!
//! The node runs the Kademlia DHT (`onionmesh_kad`): it routes its DHT frames over links,
//! through introducers or through its bridge (see the `dht` module: `Node::dht_publish`,
//! `dht_find_value`, `dht_find_node`, [`DhtEvent`]).
//!
//! It owns no socket, spawns no task, reads no clock and draws no randomness it was not given.
//! Calling rules (in the style of quinn-proto):
//! 1. feed every event in with a `handle_*` method, passing `now` (a [`Time`] on the driver's
//!    monotonic clock);
//! 2. after each call, drain [`Node::poll_output`] until it returns `None` and carry out the
//!    actions in order;
//! 3. arm one timer for [`Node::poll_timeout`] and call [`Node::handle_timeout`] when it fires.
//!
//! ```
//! use onionmesh_node::{Node, NodeConfig, Output, Time};
//! use onionmesh_crypto::Identity;
//! use onionmesh_wire::{Frame, SignalMsg};
//! let identity = Identity::from_seed([7; 32]).unwrap();
//! let mut node = Node::new(identity, NodeConfig::default(), [1; 32]);
//! node.handle_bridge_opened(Time::ZERO, 1_700_000_000_000);
//! // The node waits for the bridge's challenge ...
//! assert!(matches!(node.poll_output(), Some(Output::Event(_))));
//! assert!(node.poll_output().is_none());
//! // ... and answers it with its signed hello.
//! let challenge = SignalMsg::Challenge { nonce: [3; 32] }.encode_frame();
//! node.handle_bridge_frame(Time::from_millis(5), &challenge);
//! let Some(Output::SendBridge(hello)) = node.poll_output() else { panic!() };
//! assert!(matches!(
//!     SignalMsg::decode_frame(&hello),
//!     Ok(SignalMsg::Hello { challenge, .. }) if challenge == [3; 32]
//! ));
//! ```
#![forbid(unsafe_code)]

mod circuits;
mod dht;
mod event;
mod link;
mod node;

pub use circuits::{CircuitInfo, OnionConfig, OnionError, OnionEvent, ECHO_BUFFER, MAX_DIRECTORY};
pub use dht::{DhtConfig, DhtError, DhtEvent, DhtLookupKind, DhtStats};
pub use event::{BridgeState, Event, LinkState, LogLevel, PeerView};
pub use link::LinkId;
pub use node::{ApiError, Node, NodeConfig, Output};
pub use onionmesh_wire::Time;

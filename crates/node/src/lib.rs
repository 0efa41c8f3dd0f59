//! # onionmesh-node: the sans-IO core
//!
//! Two state machines that pretend the network does not exist:
//!
//! - [`Node`]: one mesh node (a browser page, later also a bridge's own node). It registers with
//!   a bridge, asks it for peers, gets introduced to them over WebRTC, and authenticates every
//!   link with the CERTS binding (see `onionmesh_crypto::link_auth`).
//! - [`Rendezvous`]: the bridge's job towards its peers: verify signed hellos, answer
//!   `FindPeer` with the closest registered peers, relay `Introduce` / `Introduced`.
//!
//! Both run the Kademlia DHT (`onionmesh_kad`): a node routes its DHT frames over links,
//! through introducers or through its bridge (see the `dht` module: `Node::dht_publish`,
//! `dht_find_value`, `dht_find_node`, [`DhtEvent`]), and a bridge built with
//! [`Rendezvous::with_dht`] is a DHT node that federates with other bridges (see the
//! `federation` module: `handle_dialed`, shared registrations, cross-bridge introductions and
//! DHT forwarding).
//!
//! Neither owns a socket, spawns a task, reads a clock or draws randomness it was not given.
//! Calling rules (the same for both, in the style of quinn-proto):
//! 1. feed every event in with a `handle_*` method, passing `now` (a [`Time`] on the driver's
//!    monotonic clock);
//! 2. after each call, drain [`Node::poll_output`] until it returns `None` and carry out the
//!    actions in order;
//! 3. arm one timer for [`Node::poll_timeout`] and call [`Node::handle_timeout`] when it fires.
//!
//! ```
//! use onionmesh_node::{Node, NodeConfig, Output, Time};
//! use onionmesh_crypto::Identity;
//! let identity = Identity::from_seed([7; 32]).unwrap();
//! let mut node = Node::new(identity, NodeConfig::default(), [1; 32]);
//! node.handle_bridge_opened(Time::ZERO, 1_700_000_000_000);
//! // The node greets the bridge and asks for peers.
//! assert!(matches!(node.poll_output(), Some(Output::Event(_))));
//! assert!(matches!(node.poll_output(), Some(Output::SendBridge(_))));
//! ```
#![forbid(unsafe_code)]

mod circuits;
mod dht;
mod event;
mod federation;
mod link;
mod node;
mod rendezvous;

pub use circuits::{CircuitInfo, OnionConfig, OnionError, OnionEvent, ECHO_BUFFER, MAX_DIRECTORY};
pub use dht::{DhtConfig, DhtError, DhtEvent, DhtLookupKind, DhtStats};
pub use event::{BridgeState, Event, LinkState, LogLevel, PeerView};
pub use link::LinkId;
pub use node::{ApiError, Node, NodeConfig, Output};
pub use onionmesh_wire::Time;
pub use rendezvous::{ConnId, Rendezvous, RendezvousConfig, RendezvousOutput};

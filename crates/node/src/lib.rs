//! # onionmesh-node: the peer node's sans-IO core
//!
//! [`Node`] is one mesh node (a browser page, or a simulated one). It registers with a bridge,
//! asks it for peers, gets introduced to them over WebRTC, authenticates every link with the
//! CERTS binding (`onionmesh_crypto::link_auth`), builds and relays onion circuits, and runs the
//! Kademlia DHT. It owns no socket, spawns no task, reads no clock and draws no randomness it
//! was not given.
//!
//! ## Shape: one owner, owned parts
//!
//! `Node` owns its parts as fields, each a state machine in its own module with its own
//! methods:
//!
//! | part | module | job |
//! |---|---|---|
//! | link table | `links` | WebRTC links, authentication, deadlines, idle policy |
//! | bridge link | `bridge` | registration, refresh, reconnection with backoff |
//! | onion | `onion` | the onion proxy and router, cell batching, the service seam |
//! | DHT | `dht` | Kademlia over links, introducers and the bridge |
//! | introducer relay | `relay` | `Relay` / `Relayed` / `RelayFailed` for linked peers |
//! | content (ORDB) | `ordb` | the `ordb` service at circuit ends, downloads over our circuits, the driver's store |
//!
//! Parts never write each other's fields: they return typed requests (send on a link, open a
//! link, close a link, emit an event) that `Node` carries out in one pump. Events and views
//! (`event`) and the error-code list (`code`) are leaf modules.
//!
//! ## Calling rules (the style of quinn-proto and str0m)
//! 1. feed every driver event in with [`Node::handle_input`]`(now, `[`Input`]`)`, passing `now`
//!    (a [`Time`] on the driver's monotonic clock; it never goes backwards inside the node);
//! 2. after each call (and each application call through a handle), drain
//!    [`Node::poll_output`] until it returns `None` and carry out the [`Output`]s in order;
//! 3. arm one timer for [`Node::poll_timeout`] and feed [`Input::Timeout`] when it fires;
//! 4. run every [`Output::Store`] on the content store the driver owns (IndexedDB in the page,
//!    `onionmesh_ordb::MemStore` in the simulator) and feed its completion back as
//!    [`Input::StoreDone`]; call `node.ordb().load(now)` once at start so stored content is
//!    served again.
//!
//! The application API is grouped into borrowed handles: [`Node::onion`] (circuits, streams,
//! services), [`Node::dht`] (lookups and publication), [`Node::link`] (one peer's link),
//! [`Node::ordb`] (publish, download, the library).
//!
//! ```
//! use onionmesh_node::{Input, Node, NodeConfig, Output, Time};
//! use onionmesh_crypto::Identity;
//! let identity = Identity::from_seed([7; 32]).unwrap();
//! let mut node = Node::new(identity, NodeConfig::default(), [1; 32]);
//! node.handle_input(Time::ZERO, Input::BridgeOpened);
//! // The node says it is registering, and waits for the bridge's challenge.
//! assert!(matches!(node.poll_output(), Some(Output::Event(_))));
//! assert_eq!(node.poll_output(), None);
//! ```
#![forbid(unsafe_code)]

mod bridge;
mod code;
mod dht;
mod error;
mod event;
mod links;
mod node;
mod onion;
mod ordb;
mod output;
mod relay;
mod services;
#[cfg(feature = "testing")]
pub mod testing;

pub use bridge::BridgeConfig;
pub use code::{ErrorCode, TS_ERROR_CODE};
pub use dht::{DhtApi, DhtConfig};
pub use error::{ApiError, DhtError, OnionError};
pub use event::{
    BridgeCloseReason, BridgeState, CircuitInfo, CircuitState, ContentEvent, DhtEvent,
    DhtLookupKind, DhtStats, Event, LinkCloseReason, LinkState, LogLevel, OnionEvent, PeerView,
};
pub use links::LinkConfig;
pub use node::{LinkApi, Node, NodeConfig};
pub use onion::{OnionApi, OnionConfig, MAX_DIRECTORY};
pub use onionmesh_onion::{CircHandle, ExitStream, StreamHandle, StreamId};
pub use onionmesh_wire::Time;
pub use ordb::{
    ContentConfig, ContentError, ContentStats, KnownAs, OrdbApi, ORDB_NEIGHBOUR_SERVICE,
    ORDB_SERVICE,
};
pub use output::{Input, LinkId, Output};
pub use relay::RelayConfig;
pub use services::{Echo, StreamIo, StreamService, ECHO_BUFFER};

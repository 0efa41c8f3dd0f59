//! # onionmesh-sim: many nodes, one process, a virtual clock
//!
//! The simulator drives real [`onionmesh_node::Node`]s and real
//! [`onionmesh_rendezvous::Rendezvous`]es (the bridge's core) exactly as the browser and tokio
//! drivers do, but over an emulated network:
//!
//! - every node has a WebSocket to its bridge with its own latency; several bridges federate
//!   (full mesh), node `i` registering at bridge `i % bridges`;
//! - churn: nodes leave cleanly ([`Sim::leave`] with `silent = false`, as a tab closing on
//!   `pagehide`), vanish (`silent = true`: they stop reading and answering, as a frozen page)
//!   or join during the run ([`Sim::add_node`]); a bridge can crash and come back with the same
//!   identity and an empty registry ([`Sim::restart_bridge`]), and its pages reconnect;
//! - WebRTC is emulated at the level the node sees it: an offer or answer is an SDP carrying a
//!   fresh DTLS fingerprint, applying the answer "connects" the two endpoints after a latency, and
//!   ICE can fail with a given probability;
//! - links are reliable and ordered like SCTP data channels; "loss" shows up as retransmission
//!   delay, never as a missing or reordered frame;
//! - an optional man-in-the-middle bridge rewrites the DTLS fingerprints in the SDPs it relays and
//!   terminates both DTLS sessions itself, to show that link authentication catches it.
//!
//! Everything is seeded; the same [`SimConfig`] gives the same run. Time jumps from event to event,
//! so 100 nodes over ten virtual minutes take well under a second.
//!
//! ```
//! use onionmesh_sim::{Sim, SimConfig};
//! let mut sim = Sim::new(SimConfig { nodes: 5, ..SimConfig::default() });
//! sim.run_for(std::time::Duration::from_secs(60));
//! assert!(sim.node(0).linked_peers().len() >= 1);
//! ```
#![forbid(unsafe_code)]

mod net;

pub use net::{Life, LinkTap, Sim, SimConfig, SimStats};

//! The rendezvous' tunables and the stable error codes it sends before a close.

use onionmesh_wire::BridgeAddr;
use std::time::Duration;

/// Tunables of a [`crate::Rendezvous`]. The defaults suit a public bridge.
#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Most registered peers; further hellos are refused with [`codes::FULL`].
    pub max_peers: usize,
    /// Sustained frames per second per connection, and the burst above it.
    pub frames_per_sec: u32,
    pub burst: u32,
    /// A connection must answer the challenge with a hello within this time.
    pub hello_timeout: Duration,
    /// A registered page or federated bridge silent this long is sent a `Ping`.
    pub ping_interval: Duration,
    /// A registered page or federated bridge from which nothing at all arrives for this long
    /// (not even the answer to a ping) is dropped as gone. At most 30 s (issue 12: ghost peers).
    pub silence_timeout: Duration,
    /// An introduction's target must show it is alive (any frame, e.g. the `Pong` to the ping
    /// sent with the introduction) within this time, or the introduction fails.
    pub probe_timeout: Duration,
    /// Departures are collected this long before they are announced, so a burst of them costs
    /// one frame per page (and per federated bridge), not one per departure. Pages get at most
    /// one `PeersGone` frame per interval.
    pub departure_batch: Duration,
    /// How many peers one `FoundPeer` names.
    pub peers_per_answer: usize,
    /// The address other bridges and the DHT know this bridge by (`ws://host:port/ws`); sent to
    /// each node in `BridgeInfo` and to federated bridges in `BridgeHello`.
    pub addr: BridgeAddr,
    /// Most peers registered at federated bridges that this bridge remembers (least recently
    /// announced or used are forgotten first).
    pub max_remote_peers: usize,
    /// Federated bridge connections may send this many times the per-peer frame rate.
    pub bridge_rate_factor: u32,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        RendezvousConfig {
            max_peers: 10_000,
            frames_per_sec: 50,
            burst: 200,
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(25),
            probe_timeout: Duration::from_secs(3),
            departure_batch: Duration::from_millis(500),
            peers_per_answer: 8,
            // Cannot fail: a non-empty constant far under MAX_ADDR.
            addr: BridgeAddr::new("bridge").expect("a valid constant address"),
            max_remote_peers: 50_000,
            bridge_rate_factor: 20,
        }
    }
}

/// Error codes sent in `SignalMsg::Error` before a close. Stable: the page shows them.
pub mod codes {
    /// A frame that does not decode, or that the transport refused.
    pub const MALFORMED: u16 = 1;
    /// Frames faster than the per-connection rate limit.
    pub const RATE_LIMITED: u16 = 2;
    /// A hello whose signature, key or challenge is wrong.
    pub const BAD_HELLO: u16 = 3;
    /// No hello within `hello_timeout`.
    pub const HELLO_TIMEOUT: u16 = 4;
    /// A frame that is well formed but not allowed here.
    pub const PROTOCOL: u16 = 5;
    /// The bridge has no room for more peers.
    pub const FULL: u16 = 6;
    /// That ID is already registered (or that bridge already federated).
    pub const DUPLICATE_ID: u16 = 7;
    /// Nothing arrived from the connection within `silence_timeout`.
    pub const SILENT: u16 = 8;
}

use onionmesh_wire::NodeId;
use serde::Serialize;

/// The node's connection to its bridge, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BridgeState {
    Connecting,
    /// The socket is open and the signed hello is sent.
    Registering,
    /// The bridge accepted the hello.
    Registered,
    Disconnected,
}

/// Where a peer link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// We are preparing an SDP offer.
    Offering,
    /// Our offer went to the bridge; waiting for the answer.
    Introducing,
    /// We are preparing an answer to the peer's offer.
    Answering,
    /// Offer and answer exchanged; waiting for the data channel to open.
    Connecting,
    /// The channel is open; proving identities.
    Authenticating,
    /// Authenticated: the peer is who we asked for.
    Linked,
    /// The link is gone (see the reason).
    Closed,
    /// The peer failed authentication and the link was closed.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Info,
    Warn,
}

/// Something the page (or a test) may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Bridge {
        state: BridgeState,
        detail: String,
    },
    Peer {
        id: NodeId,
        state: LinkState,
        reason: Option<String>,
    },
    Message {
        from: NodeId,
        data: Vec<u8>,
    },
    Log {
        level: LogLevel,
        text: String,
    },
    /// A DHT outcome (see `crate::dht`).
    Dht(crate::dht::DhtEvent),
    /// Circuits and streams (see `crate::circuits`).
    Onion(crate::circuits::OnionEvent),
}

/// One entry of [`crate::Node::peers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    pub id: String,
    pub short_id: String,
    pub state: LinkState,
    /// True when we sent the offer.
    pub initiator: bool,
    /// Milliseconds in the current state.
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

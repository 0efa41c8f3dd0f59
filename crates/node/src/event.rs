//! What the node tells its driver and application: events, states, typed close reasons and the
//! typed views behind the page's cards. It imports only the error-code list (`crate::code`), a
//! leaf.
//!
//! Presentation (hex IDs, camelCase, state strings) is the driver's job (`crates/browser`); here
//! everything is typed.

use crate::code::ErrorCode;
use onionmesh_onion::EndReason;
use onionmesh_onion::{CircHandle, ExitStream, StreamHandle};
use onionmesh_wire::db::{DbSource, DescriptorKind, HashName};
use onionmesh_wire::{NodeId, Time};
use std::fmt;

/// Milliseconds shown as seconds with one decimal, rounded (`1250` -> `1.3`), for the sentences
/// of events and states. Integer arithmetic only: formatting an `f64` would bring the standard
/// library's float printing (about 17 KB) into the wasm bundle.
pub(crate) struct Seconds {
    /// The duration, in milliseconds.
    pub(crate) ms: u64,
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.ms.saturating_add(50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// The node's connection to its bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeState {
    /// The driver is opening the WebSocket (first connection).
    Connecting,
    /// The socket is open; waiting for the bridge's challenge or its answer to our hello.
    Registering,
    /// The bridge accepted the hello.
    Registered,
    /// The connection dropped; the next attempt is due at `next_attempt` (driver's clock).
    /// Links and circuits stay up meanwhile.
    Reconnecting { next_attempt: Time, attempt: u32 },
    /// Stopped for good (the node was stopped).
    Disconnected,
}

/// Where a peer link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

impl LinkState {
    /// Lower-case words for logs ("introducing", "authenticating", ...).
    pub fn as_words(self) -> &'static str {
        match self {
            LinkState::Offering => "offering",
            LinkState::Introducing => "introducing",
            LinkState::Answering => "answering",
            LinkState::Connecting => "connecting",
            LinkState::Authenticating => "authenticating",
            LinkState::Linked => "linked",
            LinkState::Closed => "closed",
            LinkState::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
}

/// Why a link closed. `Display` is the sentence the page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkCloseReason {
    /// The application or the node itself asked (`disconnect`), with its words.
    Requested(String),
    /// The peer sent `Close` with these words.
    PeerClosed(String),
    /// The driver reported the data channel or peer connection gone.
    ChannelClosed(String),
    /// The driver could not create the offer/answer, or ICE failed.
    DriverFailed(String),
    /// No progress in time while in this state.
    Timeout(LinkState),
    /// Nothing arrived on the authenticated link for `ms` milliseconds, keepalives included:
    /// the peer's page is gone or frozen.
    Silent { ms: u64 },
    /// The peer's link proof did not verify.
    AuthFailed(String),
    /// The peer broke the link protocol (malformed or unexpected frame).
    Protocol(String),
    /// The bridge could not introduce us.
    IntroductionFailed(String),
    /// The bridge went away in the middle of the introduction.
    BridgeGone,
    /// Both sides offered at once and the peer's offer won.
    Glare,
    /// Idle for too long while more than the target number of links were open.
    Idle,
    /// The node is stopping.
    Stopped,
}

impl LinkCloseReason {
    /// A stable code for the JS API (from the one list, [`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as Code;
        match self {
            LinkCloseReason::Requested(_) => Code::Requested,
            LinkCloseReason::PeerClosed(_) => Code::PeerClosed,
            LinkCloseReason::ChannelClosed(_) => Code::LinkClosed,
            LinkCloseReason::DriverFailed(_) => Code::ConnectFailed,
            LinkCloseReason::Timeout(_) | LinkCloseReason::Silent { .. } => Code::Timeout,
            LinkCloseReason::AuthFailed(_) => Code::AuthFailed,
            LinkCloseReason::Protocol(_) => Code::Protocol,
            LinkCloseReason::IntroductionFailed(_) => Code::IntroductionFailed,
            LinkCloseReason::BridgeGone => Code::NoBridge,
            LinkCloseReason::Glare => Code::Glare,
            LinkCloseReason::Idle => Code::Idle,
            LinkCloseReason::Stopped => Code::Stopped,
        }
    }
}

impl fmt::Display for LinkCloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkCloseReason::Requested(r) => write!(f, "{r}"),
            LinkCloseReason::PeerClosed(r) => write!(f, "the peer closed the link: {r}"),
            LinkCloseReason::ChannelClosed(r) => write!(f, "{r}"),
            LinkCloseReason::DriverFailed(r) => write!(f, "{r}"),
            LinkCloseReason::Timeout(s) => write!(f, "timed out while {}", s.as_words()),
            LinkCloseReason::Silent { ms } => write!(
                f,
                "the peer went silent for {} s (its page closed, crashed or froze)",
                Seconds { ms: *ms }
            ),
            LinkCloseReason::AuthFailed(r) => write!(f, "link authentication failed: {r}"),
            LinkCloseReason::Protocol(r) => write!(f, "{r}"),
            LinkCloseReason::IntroductionFailed(r) => write!(f, "introduction failed: {r}"),
            LinkCloseReason::BridgeGone => {
                write!(f, "the bridge went away during the introduction")
            }
            LinkCloseReason::Glare => write!(f, "both sides offered; taking the peer's offer"),
            LinkCloseReason::Idle => {
                write!(f, "idle for too long; keeping the link count low")
            }
            LinkCloseReason::Stopped => write!(f, "the node stopped"),
        }
    }
}

/// Why the node closes its bridge connection. `Display` is the sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeCloseReason {
    /// The bridge sent a frame we cannot decode.
    Malformed(String),
    /// The node is stopping.
    Stopped,
}

impl fmt::Display for BridgeCloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeCloseReason::Malformed(e) => write!(f, "the bridge sent a malformed frame: {e}"),
            BridgeCloseReason::Stopped => write!(f, "the node stopped"),
        }
    }
}

/// What a lookup was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtLookupKind {
    FindNode,
    FindValue,
    Publish,
    Bootstrap,
    Refresh,
}

/// A DHT outcome the page (or a test) may want.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhtEvent {
    /// A lookup finished. `closest` answered us, closest first; `providers` (FIND_VALUE) are
    /// the nodes that said they hold the key.
    LookupDone {
        lookup: u64,
        kind: DhtLookupKind,
        target: NodeId,
        closest: Vec<NodeId>,
        providers: Vec<NodeId>,
        rounds: u32,
        requests: u32,
    },
    /// A publication round ended: `holders` of `attempted` nodes stored our record. `error`
    /// is `None` when the round reached the closest nodes (`onionmesh_kad::PublishError` gives
    /// the rule), else its code and sentence; a round never succeeds with no holder.
    Published {
        lookup: u64,
        key: NodeId,
        holders: usize,
        attempted: usize,
        error: Option<(ErrorCode, String)>,
    },
    /// We now hold a provider record for another node.
    ProviderStored { key: NodeId, provider: NodeId },
    /// Our bridge keeps answering with peers far from our ID; `alternatives` are other bridges
    /// we have heard of.
    SuspectBridge {
        bridge: String,
        far_answers: u32,
        alternatives: Vec<String>,
    },
}

/// What the onion layer tells the application, with typed handles.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnionEvent {
    /// One more hop of our circuit answered.
    CircuitExtended {
        circ: CircHandle,
        hops: usize,
    },
    /// Our circuit is built: streams may be opened.
    CircuitBuilt {
        circ: CircHandle,
    },
    /// Our circuit is gone; `code` says why (`Timeout`, `Destroyed`, `Protocol`, ...).
    CircuitClosed {
        circ: CircHandle,
        code: ErrorCode,
        reason: String,
    },
    StreamOpened {
        stream: StreamHandle,
    },
    /// Data waits on our stream: pull it with `node.onion().read(..)`.
    StreamReadable {
        stream: StreamHandle,
    },
    /// A stream that took a short write has room again.
    StreamWritable {
        stream: StreamHandle,
    },
    /// The far end ended the stream (its `END` reason: `reason.describe()` for people); unread
    /// data can still be read.
    StreamEnded {
        stream: StreamHandle,
        reason: EndReason,
    },
    /// A client opened a stream to one of our application services (we are its last hop).
    ServiceStreamOpened {
        stream: ExitStream,
        service: String,
    },
    ServiceReadable {
        stream: ExitStream,
    },
    ServiceWritable {
        stream: ExitStream,
    },
    ServiceEnded {
        stream: ExitStream,
    },
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
        reason: Option<LinkCloseReason>,
    },
    Message {
        from: NodeId,
        data: Vec<u8>,
    },
    /// The link to `peer` drained below its high-water mark after a send was refused with
    /// `BUSY`: sending may resume.
    LinkWritable {
        peer: NodeId,
    },
    Log {
        level: LogLevel,
        text: String,
    },
    /// A DHT outcome.
    Dht(DhtEvent),
    /// Circuits and streams.
    Onion(OnionEvent),
    /// Content: publish and download news, serving (`crate::Node::ordb`).
    Content(ContentEvent),
}

/// Content news (issue 9 item 9's `{ type: "content", event, hashName, ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentEvent {
    /// A download's metadata arrived and verified against its hash_name.
    Metadata {
        hash_name: HashName,
        /// Where the content comes from: `ONIONMESH_V1` (published in the mesh),
        /// `BITTORRENT_V1_INFO` (a torrent) or `WEB_V1` (a web file fetched by an exit).
        kind: DescriptorKind,
        name: String,
        mime: String,
        /// Bytes.
        size: u64,
        pieces: u32,
    },
    /// Verified piece `index` is stored (a download, or a publication being stored): a player
    /// may read it from the driver's store now.
    Progress {
        hash_name: HashName,
        index: u32,
        pieces_have: u32,
        pieces: u32,
    },
    /// Every piece is held and stored.
    Done { hash_name: HashName },
    /// The download stopped; `reason` is a sentence saying what happened and what to do.
    Failed { hash_name: HashName, reason: String },
    /// This node served a piece of held content to an ORDB's request stream.
    Served { hash_name: HashName, index: u32 },
    /// Found in the store at start, incomplete: `node.ordb().download(..)` resumes it, or
    /// `node.ordb().download_from(source)` when it was fetched from outside the mesh (`source`:
    /// the magnet link or URL stored with its descriptor), so that ORDBs can hand it to a
    /// facilitator again.
    Resumable {
        hash_name: HashName,
        pieces_have: u32,
        pieces: u32,
        source: Option<DbSource>,
    },
}

/// One link, as [`crate::Node::peers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub id: NodeId,
    pub state: LinkState,
    /// True when we sent the offer.
    pub initiator: bool,
    /// Milliseconds in the current state.
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Where one of our circuits (or one we relay) stands (the onion crate's type).
pub use onionmesh_onion::CircuitState;

/// One circuit as [`crate::OnionApi::circuits`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitInfo {
    /// The proxy's handle for ours; the router's circuit key for relayed ones.
    pub id: u64,
    /// The path for our circuits; `[previous, next]` (or `[previous]`) for relayed ones.
    pub hops: Vec<NodeId>,
    pub state: CircuitState,
    /// Stream payload bytes sent and received at this end.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub cells_in: u64,
    pub cells_out: u64,
    pub streams: usize,
}

/// Counters and sizes for the page's DHT card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtStats {
    pub bootstrapped: bool,
    pub table_size: usize,
    pub running_lookups: usize,
    pub lookups_done: u64,
    pub stored_keys: usize,
    pub published_keys: usize,
    /// Frames we sent on a link to the contact itself.
    pub sent_direct: u64,
    /// Frames we sent through an introducer.
    pub sent_via_introducer: u64,
    /// Frames we sent through our bridge.
    pub sent_via_bridge: u64,
    /// Frames we could not route at all.
    pub unroutable: u64,
    /// Frames we relayed for a linked peer.
    pub relayed: u64,
    /// Relay requests we refused (rate limit, target not linked, not a Kademlia frame).
    pub relay_refused: u64,
    /// Messages refused by the DHT (malformed, bad token, flood...).
    pub rejected: u64,
    pub far_answers: u32,
    /// Our bridge's address, once it told us.
    pub bridge: Option<String>,
}

#[cfg(test)]
mod seconds_tests {
    use super::Seconds;

    #[test]
    fn seconds_have_one_rounded_decimal() {
        let show = |ms| Seconds { ms }.to_string();
        assert_eq!(show(0), "0.0");
        assert_eq!(show(49), "0.0");
        assert_eq!(show(1250), "1.3");
        assert_eq!(show(15_000), "15.0");
        assert_eq!(show(59_960), "60.0");
    }
}

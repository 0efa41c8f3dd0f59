//! Why circuits, streams and links close, and how the API can be misused.
//!
//! Three kinds, kept apart as the style guide asks:
//! - [`ProtocolError`]: a peer broke the protocol. The circuit (or, for link-level garbage, the
//!   link) is closed; the node keeps running.
//! - [`CloseReason`]: everything that can end a circuit, reported in events and in the page.
//! - [`ApiError`]: the caller misused the API; nothing on the network changes.

use crate::handshake::HandshakeError;
use crate::path::PathError;
use onionmesh_wire::cell::DestroyReason;
use onionmesh_wire::{NodeId, WireError};
use std::fmt;
use thiserror::Error;

/// A peer broke the onion protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("a cell on circuit 0 that is not padding (link-level garbage)")]
    CircuitZero,
    #[error("CREATE2 with a circuit id from our half of the id space")]
    WrongIdSpace,
    #[error("CREATE2 for a circuit id already in use")]
    DuplicateCircuit,
    #[error("a malformed cell: {0}")]
    Malformed(WireError),
    #[error("a relay cell was recognized by no hop: it was modified, reordered or replayed")]
    Unrecognized,
    #[error("EXTEND2 arrived in a RELAY cell; it must come in RELAY_EARLY")]
    ExtendNotEarly,
    #[error("more than 8 RELAY_EARLY cells on one circuit")]
    TooManyRelayEarly,
    #[error("a RELAY_EARLY cell travelling towards the proxy")]
    InboundRelayEarly,
    #[error("the other end sent more DATA than the window allows")]
    WindowExceeded,
    #[error("a SENDME that does not acknowledge a cell we sent")]
    BadSendme,
    #[error("unexpected {0}")]
    Unexpected(&'static str),
}

/// Why a circuit ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CloseReason {
    #[error("closed on request")]
    Requested,
    #[error("the circuit was destroyed by a hop ({})", .0.name())]
    Destroyed(DestroyReason),
    #[error("a peer broke the protocol: {0}")]
    Protocol(ProtocolError),
    #[error("a hop failed the handshake: {0}")]
    Handshake(HandshakeError),
    #[error("over a resource limit: {0}")]
    ResourceLimit(&'static str),
    #[error("timed out")]
    Timeout,
    #[error("a link under the circuit closed")]
    LinkClosed,
    #[error("a hop could not extend the circuit ({})", .0.name())]
    ExtendFailed(DestroyReason),
    /// An automatic build ([`crate::OnionProxy::build_circuit_auto`]) failed on every path it
    /// tried: each attempt, in order, with the hop that failed and why; and, if it stopped
    /// before running out of attempts, why no further path could be chosen.
    #[error("{}", describe_attempts(.attempts, .no_path.as_ref()))]
    BuildFailed {
        attempts: Vec<BuildAttempt>,
        no_path: Option<PathError>,
    },
}

/// One failed attempt of an automatic circuit build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildAttempt {
    /// The path tried, first hop first.
    pub path: Vec<NodeId>,
    /// Index in `path` of the hop that failed, when one can be named: the hop being added when
    /// the build broke (the one a TRUNCATED says could not be reached, the one whose handshake
    /// failed or timed out), or the first hop when its link closed.
    pub failed_hop: Option<usize>,
    pub reason: CloseReason,
}

impl BuildAttempt {
    /// The node that failed, if one is named.
    pub fn failed_node(&self) -> Option<NodeId> {
        self.failed_hop.and_then(|i| self.path.get(i).copied())
    }
}

impl fmt::Display for BuildAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failed_node() {
            Some(id) => write!(
                f,
                "hop {} of {} (node {}) failed: {}",
                self.failed_hop.unwrap_or(0) + 1,
                self.path.len(),
                id.short(),
                self.reason
            ),
            None => write!(f, "the build failed: {}", self.reason),
        }
    }
}

fn describe_attempts(attempts: &[BuildAttempt], no_path: Option<&PathError>) -> String {
    let mut s = format!(
        "no automatic circuit could be built ({} attempt{})",
        attempts.len(),
        if attempts.len() == 1 { "" } else { "s" }
    );
    for (i, a) in attempts.iter().enumerate() {
        s.push_str(&format!("; attempt {}: {a}", i + 1));
    }
    if let Some(e) = no_path {
        s.push_str(&format!("; no other path: {e}"));
    }
    s
}

impl CloseReason {
    /// The reason to put in the DESTROY we send for this closure.
    pub fn destroy_reason(&self) -> DestroyReason {
        match self {
            CloseReason::Requested => DestroyReason::REQUESTED,
            CloseReason::Destroyed(r) => *r,
            CloseReason::Protocol(ProtocolError::Unrecognized) => DestroyReason::BAD_CELL,
            CloseReason::Protocol(_) => DestroyReason::PROTOCOL,
            CloseReason::Handshake(HandshakeError::NotForUs) => DestroyReason::OR_IDENTITY,
            CloseReason::Handshake(_) => DestroyReason::PROTOCOL,
            CloseReason::ResourceLimit(_) => DestroyReason::RESOURCELIMIT,
            CloseReason::Timeout => DestroyReason::TIMEOUT,
            CloseReason::LinkClosed => DestroyReason::CHANNEL_CLOSED,
            CloseReason::ExtendFailed(r) => *r,
            CloseReason::BuildFailed { attempts, .. } => attempts
                .last()
                .map_or(DestroyReason::REQUESTED, |a| a.reason.destroy_reason()),
        }
    }

    /// A stable code for the JS API and logs.
    pub fn code(&self) -> &'static str {
        match self {
            CloseReason::Requested => "REQUESTED",
            CloseReason::Destroyed(_) => "DESTROYED",
            CloseReason::Protocol(_) => "PROTOCOL",
            CloseReason::Handshake(_) => "HANDSHAKE",
            CloseReason::ResourceLimit(_) => "RESOURCE_LIMIT",
            CloseReason::Timeout => "TIMEOUT",
            CloseReason::LinkClosed => "LINK_CLOSED",
            CloseReason::ExtendFailed(_) => "EXTEND_FAILED",
            CloseReason::BuildFailed { .. } => "BUILD_FAILED",
        }
    }
}

/// The caller misused the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("no such circuit (it may have closed: watch for CircuitClosed events)")]
    UnknownCircuit,
    #[error("no such stream (it may have ended: watch for StreamEnded events)")]
    UnknownStream,
    #[error("the circuit is not open yet; wait for CircuitBuilt")]
    NotOpen,
    #[error("the stream is not open yet; wait for StreamOpened")]
    StreamNotOpen,
    #[error("bad path: {0}")]
    BadPath(PathError),
    #[error("too many circuits (at most {0}); close one first")]
    TooManyCircuits(usize),
    #[error("too many streams on this circuit (at most {0})")]
    TooManyStreams(usize),
    #[error("the circuit already carried streams; build a new one instead of extending it")]
    CircuitUsed,
    #[error("a circuit can keep between 1 and {0} hops")]
    BadHopCount(usize),
    #[error("the service name is empty or longer than 64 bytes")]
    BadServiceName,
}

impl ApiError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownCircuit => "UNKNOWN_CIRCUIT",
            ApiError::UnknownStream => "UNKNOWN_STREAM",
            ApiError::NotOpen => "NOT_OPEN",
            ApiError::StreamNotOpen => "STREAM_NOT_OPEN",
            // A path through ourselves has its own code (issue 12): it is not an unknown peer.
            ApiError::BadPath(PathError::ContainsSelf) => "PATH_THROUGH_SELF",
            ApiError::BadPath(_) => "BAD_PATH",
            ApiError::TooManyCircuits(_) => "TOO_MANY_CIRCUITS",
            ApiError::TooManyStreams(_) => "TOO_MANY_STREAMS",
            ApiError::CircuitUsed => "CIRCUIT_USED",
            ApiError::BadHopCount(_) => "BAD_HOP_COUNT",
            ApiError::BadServiceName => "BAD_SERVICE_NAME",
        }
    }
}

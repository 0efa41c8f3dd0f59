//! What the router tells its services and its log.

use crate::error::CloseReason;
use crate::output::Output;
use onionmesh_wire::cell::{DestroyReason, EndReason, StreamId};
use onionmesh_wire::NodeId;

/// A stream at this router's service end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExitStream {
    pub circuit: u64,
    pub stream: StreamId,
}

/// What the router tells its services and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouterEvent {
    /// A client opened a stream to one of our services.
    StreamOpened {
        stream: ExitStream,
        service: String,
    },
    StreamReadable {
        stream: ExitStream,
    },
    StreamWritable {
        stream: ExitStream,
    },
    StreamEnded {
        stream: ExitStream,
        reason: EndReason,
    },
    /// A circuit through us is gone.
    CircuitClosed {
        circuit: u64,
        reason: CloseReason,
    },
    /// A CREATE2 from `peer` was answered with DESTROY.
    CreateRefused {
        peer: NodeId,
        reason: DestroyReason,
    },
}

pub type RouterOutput = Output<RouterEvent>;

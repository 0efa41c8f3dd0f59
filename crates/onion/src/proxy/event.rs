//! Handles and what the proxy tells its application.

use crate::error::{BuildAttempt, CloseReason};
use crate::output::Output;
use onionmesh_wire::cell::{DestroyReason, EndReason, StreamId};
use onionmesh_wire::NodeId;

/// A circuit built by this proxy. An automatic build keeps its handle across retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CircHandle(pub u64);

/// A stream on one of this proxy's circuits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamHandle {
    pub circ: CircHandle,
    pub stream: StreamId,
}

/// What the proxy tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// One more hop answered; `hops` are ready.
    CircuitExtended { circ: CircHandle, hops: usize },
    /// Every hop of the path is ready: streams may be opened.
    CircuitBuilt { circ: CircHandle },
    /// A hop answered TRUNCATE (or failed to extend); the circuit now has `hops` hops and any
    /// streams it carried are gone.
    CircuitTruncated {
        circ: CircHandle,
        hops: usize,
        reason: DestroyReason,
    },
    /// The circuit is gone, with all its streams. For an automatic build that never got built,
    /// `reason` is [`CloseReason::BuildFailed`] with every attempt.
    CircuitClosed {
        circ: CircHandle,
        reason: CloseReason,
    },
    /// An automatic build failed on one path and starts over on `path` (same handle). For the
    /// log: the application still gets exactly one `CircuitBuilt` or `CircuitClosed`.
    CircuitRetrying {
        circ: CircHandle,
        failed: BuildAttempt,
        path: Vec<NodeId>,
    },
    /// The last hop accepted the stream.
    StreamOpened { stream: StreamHandle },
    /// Data arrived on a stream whose buffer was empty: call `stream_read`.
    StreamReadable { stream: StreamHandle },
    /// A stream that refused part of a write has room again.
    StreamWritable { stream: StreamHandle },
    /// The other end ended the stream; unread data can still be read.
    StreamEnded {
        stream: StreamHandle,
        reason: EndReason,
    },
}

pub type ProxyOutput = Output<ProxyEvent>;

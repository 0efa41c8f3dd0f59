//! A relay cell addressed to this hop: EXTEND2, TRUNCATE, BEGIN, and stream traffic when we
//! are the last hop. Stream traffic goes through the shared end-of-circuit handler
//! ([`crate::stream::Endpoint`]), the same one the proxy uses.

use super::circuit::Circuit;
use super::event::{ExitStream, RouterEvent};
use crate::error::{CloseReason, ProtocolError};
use crate::stream::{EndSignal, Reaction, StreamEnd};
use onionmesh_bounded::FlatSet;
use onionmesh_wire::cell::{EndReason, Extend2Hdata, HandshakeType, RelayCell, RelayMsg, StreamId};
use onionmesh_wire::NodeId;

/// What a relay cell addressed to this hop asks for.
#[derive(Debug)]
pub(crate) enum AtHop {
    /// EXTEND2: the router checks it and extends (see `extend`).
    Extend {
        target: NodeId,
        htype: HandshakeType,
        hdata: Extend2Hdata,
    },
    /// BEGIN accepted (the stream exists now): send CONNECTED, tell the service.
    Opened {
        stream: StreamId,
        service: String,
    },
    /// Send this one cell back (END for a refused BEGIN).
    Reply(RelayCell),
    /// Stream traffic handled by the endpoint.
    Stream(Reaction),
    /// TRUNCATE: drop the hops after us, answer TRUNCATED.
    Truncate,
    Close(CloseReason),
    Nothing,
}

/// Handle `cell`, recognized at this hop of circuit `c`.
pub(crate) fn at_hop(
    c: &mut Circuit,
    cell: RelayCell,
    tag: crate::crypto::SendmeTag,
    services: &FlatSet<String>,
    max_streams: usize,
) -> AtHop {
    let last = c.is_last();
    let unexpected = |what| AtHop::Close(CloseReason::Protocol(ProtocolError::Unexpected(what)));
    match cell.msg {
        RelayMsg::Extend2 {
            target,
            htype,
            hdata,
        } => AtHop::Extend {
            target,
            htype,
            hdata,
        },
        RelayMsg::Begin { service } => {
            if cell.stream == StreamId(0) || c.endpoint.streams.contains_key(&cell.stream) {
                unexpected("BEGIN on a stream id in use")
            } else if !last || !services.contains(service.as_str()) {
                AtHop::Reply(RelayCell::new(
                    cell.stream,
                    RelayMsg::End(EndReason::NO_SUCH_SERVICE),
                ))
            } else if c.endpoint.streams.len() >= max_streams {
                AtHop::Reply(RelayCell::new(
                    cell.stream,
                    RelayMsg::End(EndReason::RESOURCELIMIT),
                ))
            } else {
                c.endpoint.streams.insert(cell.stream, StreamEnd::new(true));
                AtHop::Opened {
                    stream: cell.stream,
                    service: service.into_string(),
                }
            }
        }
        RelayMsg::Data(_) | RelayMsg::Sendme { .. } | RelayMsg::End(_) if !last => {
            unexpected("stream traffic at a middle hop")
        }
        msg @ (RelayMsg::Data(_) | RelayMsg::Sendme { .. } | RelayMsg::End(_)) => {
            match c.endpoint.on_stream_msg(cell.stream, msg, tag) {
                Ok(r) => AtHop::Stream(r),
                Err(e) => AtHop::Close(CloseReason::Protocol(e)),
            }
        }
        RelayMsg::Truncate => AtHop::Truncate,
        RelayMsg::Drop | RelayMsg::Unrecognized { .. } => AtHop::Nothing,
        RelayMsg::Extended2 { .. } | RelayMsg::Connected | RelayMsg::Truncated(_) => {
            unexpected("a backward-only message travelling forward")
        }
    }
}

/// The service-side event for an endpoint signal on circuit `circuit`.
pub(crate) fn event(circuit: u64, signal: EndSignal) -> Option<RouterEvent> {
    let s = |stream| ExitStream { circuit, stream };
    match signal {
        EndSignal::Readable(id) => Some(RouterEvent::StreamReadable { stream: s(id) }),
        EndSignal::Ended(id, reason) => Some(RouterEvent::StreamEnded {
            stream: s(id),
            reason,
        }),
        // CONNECTED never reaches a router's endpoint (refused as backward-only above).
        EndSignal::Opened(_) => None,
    }
}

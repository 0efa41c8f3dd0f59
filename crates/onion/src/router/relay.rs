//! Relaying: what a cell arriving on either side of a circuit means, before anything is sent.
//!
//! [`from_prev`] removes this hop's layer from a forward cell and says whether it is for us or
//! passes on; [`from_next`] adds our layer to a backward cell or reads the next hop's answer to
//! our CREATE2. Both return what to do; the router carries it out.

use super::circuit::{Circuit, DestroyTo, Next};
use crate::crypto::{Forward, SendmeTag};
use crate::error::{CloseReason, ProtocolError};
use crate::path::MAX_RELAY_EARLY;
use onionmesh_wire::cell::{Cell, CellBody, CellMsg, DestroyReason, Extended2Hdata};
use onionmesh_wire::NodeId;

/// What a cell from the previous hop asks for.
#[derive(Debug)]
pub(crate) enum FromPrev {
    /// Addressed to this hop: decode and handle it.
    Recognized {
        body: CellBody,
        tag: SendmeTag,
        early: bool,
    },
    /// Pass it on to the next hop.
    Pass {
        peer: NodeId,
        cell: Cell,
    },
    Close(CloseReason, DestroyTo),
    /// The previous hop sent link-level nonsense: close its link.
    CloseLink(ProtocolError),
    Ignore,
}

pub(crate) fn from_prev(c: &mut Circuit, msg: CellMsg) -> FromPrev {
    let proto = |e| FromPrev::Close(CloseReason::Protocol(e), DestroyTo::Both);
    let (mut body, early) = match msg {
        CellMsg::Relay(body) => (body, false),
        CellMsg::RelayEarly(body) => (body, true),
        CellMsg::Destroy(reason) => {
            return FromPrev::Close(CloseReason::Destroyed(reason), DestroyTo::Next)
        }
        CellMsg::Create2 { .. } => return FromPrev::CloseLink(ProtocolError::DuplicateCircuit),
        CellMsg::Created2 { .. } => {
            return proto(ProtocolError::Unexpected("CREATED2 from the previous hop"))
        }
        CellMsg::Padding | CellMsg::Unrecognized { .. } => return FromPrev::Ignore,
    };
    if early {
        c.relay_early_in = c.relay_early_in.saturating_add(1);
        if c.relay_early_in > MAX_RELAY_EARLY {
            return proto(ProtocolError::TooManyRelayEarly);
        }
    }
    match c.crypto.forward(&mut body) {
        Forward::Recognized(tag) => FromPrev::Recognized { body, tag, early },
        Forward::Pass => match c.next {
            Next::Open { peer, id } => {
                let msg = if early {
                    CellMsg::RelayEarly(body)
                } else {
                    CellMsg::Relay(body)
                };
                FromPrev::Pass {
                    peer,
                    cell: Cell::new(id, &msg),
                }
            }
            // Not for us and nowhere to go: modified, reordered or replayed.
            _ => proto(ProtocolError::Unrecognized),
        },
    }
}

/// What a cell from the next hop asks for.
// Nearly every answer is `PassBack`: boxing the cell would cost an allocation per cell.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum FromNext {
    /// The next hop answered our CREATE2: send EXTENDED2 with this reply back.
    Extended(Extended2Hdata),
    /// A backward cell, our layer added: send it to the previous hop.
    PassBack {
        peer: NodeId,
        cell: Cell,
    },
    /// The extension failed: forget the next hop and answer TRUNCATED.
    ExtendFailed(DestroyReason),
    Close(CloseReason, DestroyTo),
    CloseLink(ProtocolError),
    Ignore,
}

pub(crate) fn from_next(c: &mut Circuit, msg: CellMsg) -> FromNext {
    let proto = |e| FromNext::Close(CloseReason::Protocol(e), DestroyTo::Both);
    match msg {
        CellMsg::Created2 { hdata } => {
            if let Next::Creating { peer, id, .. } = c.next {
                c.next = Next::Open { peer, id };
                // A CREATED2 may carry more than an EXTENDED2 can: refuse, never cut.
                match Extended2Hdata::from_slice(&hdata) {
                    Ok(hdata) => FromNext::Extended(hdata),
                    Err(e) => proto(ProtocolError::Malformed(e)),
                }
            } else {
                proto(ProtocolError::Unexpected("a second CREATED2"))
            }
        }
        CellMsg::Relay(mut body) => {
            if matches!(c.next, Next::Open { .. }) {
                c.crypto.relay_backward(&mut body);
                FromNext::PassBack {
                    peer: c.prev,
                    cell: Cell::new(c.prev_id, &CellMsg::Relay(body)),
                }
            } else {
                proto(ProtocolError::Unexpected("RELAY before CREATED2"))
            }
        }
        CellMsg::RelayEarly(_) => proto(ProtocolError::InboundRelayEarly),
        CellMsg::Destroy(reason) => {
            if matches!(c.next, Next::Creating { .. }) {
                // The extension failed: keep the circuit up to us, tell the proxy.
                FromNext::ExtendFailed(reason)
            } else {
                FromNext::Close(CloseReason::Destroyed(reason), DestroyTo::Prev)
            }
        }
        CellMsg::Create2 { .. } => FromNext::CloseLink(ProtocolError::DuplicateCircuit),
        CellMsg::Padding | CellMsg::Unrecognized { .. } => FromNext::Ignore,
    }
}

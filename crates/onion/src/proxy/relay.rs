//! What a backward cell on one of our circuits means: peel the layers, find the hop that sent
//! it, decode, and check the message may come from there.

use super::circuit::Circuit;
use crate::crypto::SendmeTag;
use crate::error::{CloseReason, ProtocolError};
use onionmesh_wire::cell::{CellBody, DestroyReason, RelayCell, RelayMsg, StreamId};

#[derive(Debug)]
pub(crate) enum Backward {
    /// The hop being added answered our EXTEND2.
    Extended2(Vec<u8>),
    /// Hop `hop` dropped the hops after it (0-based: `hop + 1` hops remain).
    Truncated {
        hop: usize,
        reason: DestroyReason,
    },
    /// Stream traffic from the last hop, for the endpoint.
    Stream {
        stream: StreamId,
        msg: RelayMsg,
        tag: SendmeTag,
    },
    Close(CloseReason),
    Nothing,
}

pub(crate) fn backward(c: &mut Circuit, mut body: CellBody) -> Backward {
    let proto = |e| Backward::Close(CloseReason::Protocol(e));
    let unexpected = |what| proto(ProtocolError::Unexpected(what));
    let Some((hop, tag)) = c.crypto.receive(&mut body) else {
        return proto(ProtocolError::Unrecognized);
    };
    let cell = match RelayCell::decode(&body) {
        Ok(cell) => cell,
        Err(e) => return proto(ProtocolError::Malformed(e)),
    };
    let last = hop == c.last_hop();
    match cell.msg {
        RelayMsg::Extended2 { hdata } => {
            if !last || c.pending.is_none() || c.crypto.is_empty() {
                unexpected("EXTENDED2")
            } else {
                Backward::Extended2(hdata.into_vec())
            }
        }
        RelayMsg::Truncated(reason) => Backward::Truncated { hop, reason },
        RelayMsg::Connected | RelayMsg::Data(_) | RelayMsg::Sendme { .. } | RelayMsg::End(_)
            if !last || !c.built =>
        {
            unexpected("stream traffic from a middle hop")
        }
        msg @ (RelayMsg::Connected
        | RelayMsg::Data(_)
        | RelayMsg::Sendme { .. }
        | RelayMsg::End(_)) => Backward::Stream {
            stream: cell.stream,
            msg,
            tag,
        },
        RelayMsg::Drop | RelayMsg::Unrecognized { .. } => Backward::Nothing,
        RelayMsg::Extend2 { .. } | RelayMsg::Begin { .. } | RelayMsg::Truncate => {
            unexpected("a forward-only message travelling backward")
        }
    }
}

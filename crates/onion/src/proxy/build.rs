//! Building a circuit: EXTEND2 hop by hop and the handshake replies. The proxy queues the cells
//! these steps return.

use super::circuit::Circuit;
use crate::error::{CloseReason, ProtocolError};
use crate::handshake::ClientHandshake;
use crate::path::MAX_RELAY_EARLY;
use onionmesh_wire::cell::{HandshakeType, RelayCell, RelayMsg, StreamId};
use rand_core::CryptoRngCore;

/// The EXTEND2 for the next hop of `c`'s path, and the hop (0-based) it is addressed to; `None`
/// when every hop is added.
pub(crate) fn next_extend(
    rng: &mut impl CryptoRngCore,
    c: &mut Circuit,
) -> Result<Option<(usize, RelayCell)>, CloseReason> {
    let n = c.crypto.len();
    let Some(next) = c.path.get(n).copied() else {
        return Ok(None);
    };
    if n == 0 {
        return Err(CloseReason::Protocol(ProtocolError::Unexpected(
            "an extension before the first hop answered",
        )));
    }
    if c.relay_early_sent >= MAX_RELAY_EARLY {
        return Err(CloseReason::ResourceLimit("no RELAY_EARLY cells left"));
    }
    let (hs, skin) = ClientHandshake::new(rng, next.id, &next.onion_key);
    c.pending = Some(hs);
    let msg = RelayMsg::Extend2 {
        target: next.id,
        htype: HandshakeType::NTOR_K256,
        hdata: skin.into(),
    };
    Ok(Some((n - 1, RelayCell::new(StreamId(0), msg))))
}

/// A hop answered (CREATED2 or EXTENDED2): finish its handshake. Returns the hops now ready.
pub(crate) fn finish_hop(c: &mut Circuit, hdata: &[u8]) -> Result<usize, CloseReason> {
    let Some(hs) = c.pending.take() else {
        return Err(CloseReason::Protocol(ProtocolError::Unexpected(
            "a handshake reply",
        )));
    };
    let keys = hs.finish(hdata).map_err(CloseReason::Handshake)?;
    c.crypto.add_hop(&keys);
    Ok(c.crypto.len())
}

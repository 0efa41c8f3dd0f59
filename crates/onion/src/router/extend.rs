//! Extending a circuit past this router: the EXTEND2 checks and the table of circuits waiting
//! for the driver to open a link.
//!
//! The number of extensions in progress is not kept as a counter: it is the number of circuits
//! whose [`Next`] is pending, counted when an EXTEND2 asks (rare next to relay cells), so it
//! cannot drift.

use super::circuit::{Circuit, Next};
use crate::error::{CloseReason, ProtocolError};
use onionmesh_bounded::FlatMap;
use onionmesh_wire::cell::{DestroyReason, HandshakeType};
use onionmesh_wire::NodeId;

/// Why an EXTEND2 is not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The proxy broke the protocol: close the circuit.
    Close(CloseReason),
    /// A fair request we cannot serve: answer TRUNCATED, keep the circuit up to us.
    Truncated(DestroyReason),
}

/// May circuit `c` extend to `target`? `pending` extensions are in progress here.
pub(crate) fn check(
    c: &Circuit,
    local: NodeId,
    early: bool,
    target: NodeId,
    htype: HandshakeType,
    pending: usize,
    max_pending: usize,
) -> Result<(), Refusal> {
    let unexpected = |what| Refusal::Close(CloseReason::Protocol(ProtocolError::Unexpected(what)));
    if !early {
        Err(Refusal::Close(CloseReason::Protocol(
            ProtocolError::ExtendNotEarly,
        )))
    } else if !c.is_last() || !c.endpoint.streams.is_empty() {
        Err(unexpected("EXTEND2 on a circuit that already goes on"))
    } else if target == local || target == c.prev {
        Err(unexpected("EXTEND2 to ourselves or back"))
    } else if htype != HandshakeType::NTOR_K256 {
        Err(Refusal::Truncated(DestroyReason::PROTOCOL))
    } else if pending >= max_pending {
        Err(Refusal::Truncated(DestroyReason::RESOURCELIMIT))
    } else {
        Ok(())
    }
}

/// Extensions in progress among `circuits`.
pub(crate) fn pending<'a>(circuits: impl Iterator<Item = &'a Circuit>) -> usize {
    circuits.filter(|c| c.next.is_pending()).count()
}

/// Circuits waiting for a link, by the peer they wait for. Bounded by `max_pending_extends`.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    by_target: FlatMap<NodeId, Vec<u64>>,
}

impl Waiting {
    /// Circuit `key` waits for `target`; true if it is the first (ask the driver for the link).
    pub(crate) fn add(&mut self, target: NodeId, key: u64) -> bool {
        let w = self.by_target.entry(target).or_default();
        w.push(key);
        w.len() == 1
    }

    pub(crate) fn remove(&mut self, target: &NodeId, key: u64) {
        if let Some(w) = self.by_target.get_mut(target) {
            w.retain(|k| *k != key);
            if w.is_empty() {
                self.by_target.remove(target);
            }
        }
    }

    /// Every circuit waiting for `target`, which stop waiting.
    pub(crate) fn take(&mut self, target: &NodeId) -> Vec<u64> {
        self.by_target.remove(target).unwrap_or_default()
    }
}

/// Is `c` still waiting for a link to `peer`?
pub(crate) fn waits_for(c: &Circuit, peer: NodeId) -> bool {
    matches!(&c.next, Next::WaitingLink { target, .. } if *target == peer)
}

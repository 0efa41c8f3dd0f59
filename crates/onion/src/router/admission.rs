//! Admission: whether a CREATE2 gets a circuit, cheapest checks first.
//!
//! Order: the per-link CREATE2 rate (a token bucket from `onionmesh-bounded`), the caps on
//! circuits in total and per link, the message itself, then the handshake (two scalar
//! multiplications, so last). A refusal is a [`DestroyReason`] for the DESTROY answer.

use super::config::RouterConfig;
use crate::handshake::{server_handshake, HandshakeError, HopKeys, REPLY_LEN};
use crate::key::OnionKey;
use onionmesh_bounded::{BoundedLru, FlatMap, TokenBucket};
use onionmesh_wire::cell::{Cell, CellMsg, DestroyReason, HandshakeType};
use onionmesh_wire::{NodeId, Time};
use rand_core::CryptoRngCore;

/// Rate buckets kept at most: one per linked peer in practice. A bucket evicted by a flood of
/// new links comes back full, which costs the evicted peer nothing it had not earned.
const MAX_BUCKETS: usize = 4096;

#[derive(Debug)]
pub(crate) struct Admission {
    buckets: BoundedLru<NodeId, TokenBucket>,
    /// Live circuits each link created through us (no entry means 0).
    per_link: FlatMap<NodeId, usize>,
}

impl Admission {
    pub(crate) fn new() -> Admission {
        Admission {
            buckets: BoundedLru::new(MAX_BUCKETS),
            per_link: FlatMap::new(),
        }
    }

    /// Rate and caps for a CREATE2 from `peer` while `total` circuits exist.
    pub(crate) fn check(
        &mut self,
        now: Time,
        peer: NodeId,
        total: usize,
        cfg: &RouterConfig,
    ) -> Result<(), DestroyReason> {
        let allowed = match self.buckets.get_mut(&peer) {
            Some(b) => b.take(now),
            None => {
                let mut b = TokenBucket::new(now, cfg.create_burst, cfg.create_per_sec);
                let ok = b.take(now);
                self.buckets.insert(peer, b);
                ok
            }
        };
        if !allowed {
            return Err(DestroyReason::RESOURCELIMIT);
        }
        let on_link = self.per_link.get(&peer).copied().unwrap_or(0);
        if total >= cfg.max_circuits || on_link >= cfg.max_circuits_per_link {
            return Err(DestroyReason::RESOURCELIMIT);
        }
        Ok(())
    }

    /// The server side of the ntor handshake for a CREATE2 cell: the CREATED2 reply and keys.
    pub(crate) fn handshake(
        rng: &mut impl CryptoRngCore,
        local: NodeId,
        key: &OnionKey,
        cell: &Cell,
    ) -> Result<([u8; REPLY_LEN], HopKeys), DestroyReason> {
        let hdata = match cell.msg() {
            Ok(CellMsg::Create2 { htype, hdata }) if htype == HandshakeType::NTOR_K256 => hdata,
            _ => return Err(DestroyReason::PROTOCOL),
        };
        server_handshake(rng, local, key, &hdata).map_err(|e| match e {
            HandshakeError::NotForUs => DestroyReason::OR_IDENTITY,
            _ => DestroyReason::PROTOCOL,
        })
    }

    /// A circuit from `peer` was admitted.
    pub(crate) fn opened(&mut self, peer: NodeId) {
        *self.per_link.entry(peer).or_default() += 1;
    }

    /// A circuit from `peer` closed.
    pub(crate) fn closed(&mut self, peer: &NodeId) {
        if let Some(n) = self.per_link.get_mut(peer) {
            debug_assert!(*n > 0, "per-link count out of step");
            *n -= 1;
            if *n == 0 {
                self.per_link.remove(peer);
            }
        }
    }

    /// The link to `peer` closed: its rate history goes too.
    pub(crate) fn link_closed(&mut self, peer: &NodeId) {
        self.buckets.remove(peer);
    }
}

//! The introducer relay: a linked peer asks us to hand a Kademlia frame to another peer we are
//! linked to (`LinkMsg::Relay`); we check it, rate-limit the asker per link, and deliver it as
//! `LinkMsg::Relayed` with the asker's authenticated key, or answer `RelayFailed` at once when
//! we have no link to the target (so the asker tries its bridge instead of waiting).

use crate::event::LogLevel;
use crate::links::LinkTable;
use crate::output::{log, Request, Requests};
use onionmesh_bounded::{BoundedLru, TokenBucket};
use onionmesh_wire::kad::{KadBytes, KadMsg};
use onionmesh_wire::{Frame, LinkMsg, NodeId, Time};

/// Refusals beyond this many are counted but only every 100th is logged.
const LOGGED_REFUSALS: u64 = 50;

/// Tunables of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Frames per second one linked peer may ask us to relay, sustained, and the burst above.
    pub per_sec: u32,
    pub burst: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            per_sec: 20,
            burst: 60,
        }
    }
}

/// See the module docs.
pub(crate) struct IntroducerRelay {
    cfg: RelayConfig,
    /// One bucket per asking peer; bounded by the link limit (a forgotten bucket starts full,
    /// which is what a fresh link gets anyway).
    buckets: BoundedLru<NodeId, TokenBucket>,
    pub relayed: u64,
    pub refused: u64,
}

impl IntroducerRelay {
    pub fn new(cfg: RelayConfig, max_links: usize) -> IntroducerRelay {
        IntroducerRelay {
            cfg,
            buckets: BoundedLru::new(max_links.max(1)),
            relayed: 0,
            refused: 0,
        }
    }

    pub fn link_down(&mut self, peer: &NodeId) {
        self.buckets.remove(peer);
    }

    fn refuse(&mut self, from: NodeId, to: NodeId, why: &str, reqs: &mut Requests) {
        self.refused += 1;
        let n = self.refused;
        if n <= LOGGED_REFUSALS || n.is_multiple_of(100) {
            log(
                reqs,
                LogLevel::Warn,
                format!(
                    "not relaying a DHT frame from {} to {}: {why} ({n} refused so far)",
                    from.short(),
                    to.short()
                ),
            );
        }
    }

    /// `from` (linked) asks us to relay `bytes` to `to`.
    pub fn on_relay(
        &mut self,
        now: Time,
        links: &LinkTable,
        from: NodeId,
        to: NodeId,
        bytes: KadBytes,
        reqs: &mut Requests,
    ) {
        let (burst, per_sec) = (self.cfg.burst, self.cfg.per_sec);
        let allowed = match self.buckets.get_mut(&from) {
            Some(b) => b.take(now),
            None => {
                let mut b = TokenBucket::new(now, burst, per_sec);
                let ok = b.take(now);
                self.buckets.insert(from, b);
                ok
            }
        };
        if !allowed {
            self.refuse(
                from,
                to,
                "the peer asks faster than the per-link relay limit",
                reqs,
            );
            return;
        }
        if let Err(e) = KadMsg::decode_frame(&bytes) {
            self.refuse(from, to, &format!("it is not a Kademlia frame ({e})"), reqs);
            return;
        }
        if to == from || !links.is_linked(&to) {
            // Whoever named us as `to`'s introducer knew we know `to`, not that we are linked to
            // it. Hand the frame back at once.
            self.refused += 1;
            reqs.push_back(Request::SendTo {
                peer: from,
                msg: LinkMsg::RelayFailed { to, bytes },
            });
            return;
        }
        let Some(pubkey) = links.linked_pubkey(&from) else {
            return;
        };
        self.relayed += 1;
        reqs.push_back(Request::SendTo {
            peer: to,
            msg: LinkMsg::Relayed {
                from,
                pubkey,
                bytes,
            },
        });
    }
}

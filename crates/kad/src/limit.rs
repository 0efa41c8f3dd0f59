//! Per-peer and global request rate limits: token buckets on the caller's clock.
//!
//! Each peer gets a bucket of `peer_burst` requests refilled at `peer_per_sec`; all peers share a
//! global bucket of `global_burst` refilled at `global_per_sec`. The per-peer map is bounded
//! (`max_peers`): when it is full, a peer whose bucket has refilled completely is forgotten
//! first (forgetting it changes nothing), else the least recently active one. A flooder that
//! spreads over many identities can thus get a fresh bucket, but the global bucket still bounds
//! the total work we do for others.

use crate::Time;
use onionmesh_wire::NodeId;
use std::collections::BTreeMap;

/// Tunables of the rate limiter.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub peer_burst: u32,
    pub peer_per_sec: u32,
    pub global_burst: u32,
    pub global_per_sec: u32,
    pub max_peers: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            peer_burst: 32,
            peer_per_sec: 16,
            global_burst: 512,
            global_per_sec: 256,
            max_peers: 256,
        }
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit. `first` is true for the first refusal after an allowed request, so the
    /// caller reports a flood once rather than once per message.
    Deny {
        first: bool,
    },
}

#[derive(Debug, Clone)]
struct Bucket {
    /// In thousandths of a request.
    milli: u64,
    last: Time,
    denying: bool,
}

impl Bucket {
    fn full(burst: u32, now: Time) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            last: now,
            denying: false,
        }
    }

    fn refill(&mut self, now: Time, burst: u32, per_sec: u32) {
        let add = self.since_last(now).saturating_mul(u64::from(per_sec));
        self.milli = (self.milli.saturating_add(add)).min(u64::from(burst) * 1000);
        self.last = self.last.max(now);
    }

    fn since_last(&self, now: Time) -> u64 {
        now.since(self.last)
    }

    fn take(&mut self) -> bool {
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateConfig,
    global: Bucket,
    peers: BTreeMap<NodeId, Bucket>,
}

impl RateLimiter {
    pub fn new(mut cfg: RateConfig, now: Time) -> RateLimiter {
        cfg.max_peers = cfg.max_peers.max(1);
        RateLimiter {
            global: Bucket::full(cfg.global_burst, now),
            cfg,
            peers: BTreeMap::new(),
        }
    }

    /// Peers currently tracked (at most `max_peers`).
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// May `peer` have one more request answered now?
    pub fn check(&mut self, now: Time, peer: &NodeId) -> Verdict {
        let cfg = &self.cfg;
        if !self.peers.contains_key(peer) && self.peers.len() >= cfg.max_peers {
            let refill_ms = (u64::from(cfg.peer_burst) * 1000) / u64::from(cfg.peer_per_sec.max(1));
            let victim = self
                .peers
                .iter()
                .find(|(_, b)| b.since_last(now) >= refill_ms)
                .or_else(|| self.peers.iter().min_by_key(|(_, b)| b.last))
                .map(|(id, _)| *id);
            if let Some(id) = victim {
                self.peers.remove(&id);
            }
        }
        let b = self
            .peers
            .entry(*peer)
            .or_insert_with(|| Bucket::full(cfg.peer_burst, now));
        b.refill(now, cfg.peer_burst, cfg.peer_per_sec);
        self.global
            .refill(now, cfg.global_burst, cfg.global_per_sec);
        // Check the peer first so that one flooder does not drain the global bucket.
        if b.milli >= 1000 && self.global.take() {
            b.take();
            b.denying = false;
            Verdict::Allow
        } else {
            let first = !b.denying;
            b.denying = true;
            Verdict::Deny { first }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn burst_then_refill() {
        let cfg = RateConfig {
            peer_burst: 3,
            peer_per_sec: 2,
            ..RateConfig::default()
        };
        let mut rl = RateLimiter::new(cfg, ms(0));
        let a = NodeId([1; 20]);
        for _ in 0..3 {
            assert_eq!(rl.check(ms(0), &a), Verdict::Allow);
        }
        assert_eq!(rl.check(ms(0), &a), Verdict::Deny { first: true });
        assert_eq!(rl.check(ms(100), &a), Verdict::Deny { first: false });
        assert_eq!(
            rl.check(ms(500), &a),
            Verdict::Allow,
            "2/s refills one in 500 ms"
        );
        assert_eq!(rl.check(ms(500), &a), Verdict::Deny { first: true });
        // Another peer is not affected.
        assert_eq!(rl.check(ms(500), &NodeId([2; 20])), Verdict::Allow);
    }

    #[test]
    fn global_bucket_bounds_many_identities() {
        let cfg = RateConfig {
            global_burst: 10,
            global_per_sec: 1,
            max_peers: 4,
            ..RateConfig::default()
        };
        let mut rl = RateLimiter::new(cfg, ms(0));
        let allowed = (0..200u8)
            .filter(|i| rl.check(ms(0), &NodeId([*i; 20])) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 10);
        assert!(rl.tracked() <= 4, "the per-peer map is bounded");
    }
}

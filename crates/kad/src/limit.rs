//! Per-peer and global request rate limits: token buckets on the caller's clock.
//!
//! Each peer gets a bucket of `peer_burst` requests refilled at `peer_per_sec`; all peers share a
//! global bucket of `global_burst` refilled at `global_per_sec`. The per-peer map is bounded
//! (`max_peers`): when it is full, a peer whose bucket has refilled completely is forgotten
//! first (forgetting it changes nothing), else the least recently active one. A flooder that
//! spreads over many identities can thus get a fresh bucket, but the global bucket still bounds
//! the total work we do for others.
//!
//! The buckets and the bounded map are the workspace's one [`TokenBucket`] and [`BoundedLru`]
//! (`onionmesh_bounded`), so saturation and eviction agree with every other limit in onionmesh.

use crate::Time;
use onionmesh_bounded::{BoundedLru, TokenBucket};
use onionmesh_wire::NodeId;

/// Tunables of the rate limiter. Publishers pace themselves below these defaults (see
/// `KadConfig::pacing`), so keep the two in step when changing them.
#[derive(Debug, Clone)]
pub struct RateConfig {
    /// Requests one peer may send at once, above its sustained rate.
    pub peer_burst: u32,
    /// Requests per second one peer may send, sustained.
    pub peer_per_sec: u32,
    /// Requests all peers together may send at once, above the sustained rate.
    pub global_burst: u32,
    /// Requests per second all peers together may send, sustained.
    pub global_per_sec: u32,
    /// Most peers with a bucket of their own (at least 1).
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
struct PeerState {
    bucket: TokenBucket,
    denying: bool,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateConfig,
    global: TokenBucket,
    peers: BoundedLru<NodeId, PeerState>,
}

impl RateLimiter {
    pub fn new(mut cfg: RateConfig, now: Time) -> RateLimiter {
        cfg.max_peers = cfg.max_peers.max(1);
        RateLimiter {
            global: TokenBucket::new(now, cfg.global_burst, cfg.global_per_sec),
            peers: BoundedLru::new(cfg.max_peers),
            cfg,
        }
    }

    /// Peers currently tracked (at most `max_peers`).
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// May `peer` have one more request answered now?
    pub fn check(&mut self, now: Time, peer: &NodeId) -> Verdict {
        if !self.peers.contains_key(peer) {
            if self.peers.len() >= self.peers.capacity() {
                // Forget a peer whose bucket is full again (that changes nothing); failing that,
                // the insert below evicts the least recently active one.
                let refilled = self
                    .peers
                    .iter_mut()
                    .find_map(|(id, p)| p.bucket.is_full(now).then_some(*id));
                if let Some(id) = refilled {
                    self.peers.remove(&id);
                }
            }
            let fresh = PeerState {
                bucket: TokenBucket::new(now, self.cfg.peer_burst, self.cfg.peer_per_sec),
                denying: false,
            };
            self.peers.insert(*peer, fresh);
        }
        let Some(p) = self.peers.get_mut(peer) else {
            // Just inserted (capacity is at least 1, and an insert never evicts its own key).
            return Verdict::Deny { first: false };
        };
        // Check the peer first so that one flooder does not drain the global bucket.
        if p.bucket.has_token(now) && self.global.take(now) {
            p.bucket.take(now);
            p.denying = false;
            Verdict::Allow
        } else {
            let first = !p.denying;
            p.denying = true;
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

    #[test]
    fn a_full_map_forgets_a_refilled_peer_before_the_least_recent_one() {
        let cfg = RateConfig {
            peer_burst: 2,
            peer_per_sec: 10,
            max_peers: 2,
            ..RateConfig::default()
        };
        let mut rl = RateLimiter::new(cfg, ms(0));
        let (a, b, c) = (NodeId([1; 20]), NodeId([2; 20]), NodeId([3; 20]));
        // `b` (least recently active) spends its burst; `a`, more recent, spends one token.
        assert_eq!(rl.check(ms(1_000), &b), Verdict::Allow);
        assert_eq!(rl.check(ms(1_000), &b), Verdict::Allow);
        assert_eq!(rl.check(ms(1_050), &a), Verdict::Allow);
        // At 1,150 ms `a` is full again and `b` holds 1.5 tokens: `a` is the one forgotten.
        assert_eq!(rl.check(ms(1_150), &c), Verdict::Allow);
        assert_eq!(rl.tracked(), 2);
        assert_eq!(rl.check(ms(1_150), &b), Verdict::Allow);
        assert_eq!(
            rl.check(ms(1_150), &b),
            Verdict::Deny { first: true },
            "`b` kept its half-spent bucket"
        );
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing_extra() {
        let cfg = RateConfig {
            peer_burst: 1,
            peer_per_sec: 1,
            ..RateConfig::default()
        };
        let mut rl = RateLimiter::new(cfg, ms(10_000));
        let a = NodeId([1; 20]);
        assert_eq!(rl.check(ms(10_000), &a), Verdict::Allow);
        assert_eq!(rl.check(ms(1_000), &a), Verdict::Deny { first: true });
        assert_eq!(rl.check(ms(10_999), &a), Verdict::Deny { first: false });
        assert_eq!(rl.check(ms(11_000), &a), Verdict::Allow);
    }
}

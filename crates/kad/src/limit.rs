//! Per-peer and global request rate limits: token buckets on the caller's clock.
//!
//! Each peer gets a bucket of `peer_burst` requests refilled at `peer_per_sec`; all peers share a
//! global bucket of `global_burst` refilled at `global_per_sec`. The per-peer map is bounded
//! (`max_peers`): when it is full, a peer whose bucket has refilled completely is forgotten
//! first (forgetting it changes nothing), else the least recently active one. A flooder that
//! spreads over many identities can thus get a fresh bucket, but the global bucket still bounds
//! the total work we do for others.
//!
//! The other side of the same limit is [`Pacer`]: the rate at which *we* send requests to one
//! peer, kept below what a peer with the default [`RateConfig`] answers, so that a burst of our
//! own work (a hundred publications at once) is spread out instead of being dropped unanswered.
//!
//! The buckets and the bounded maps are the workspace's one [`TokenBucket`] and [`BoundedLru`]
//! (`onionmesh_bounded`), so saturation and eviction agree with every other limit in onionmesh.

use crate::Time;
use onionmesh_bounded::{BoundedLru, TokenBucket};
use onionmesh_wire::NodeId;

/// Tunables of the rate limiter. Our own requests are paced below these defaults (see
/// [`PacingConfig`]), so keep the two in step when changing them.
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

/// How fast we send requests to any one peer: a burst of `burst`, then `per_sec` per second.
/// The defaults are half of [`RateConfig`]'s per-peer defaults, leaving the other half for
/// lookups that other nodes route through the same peer and for clock drift between the two.
#[derive(Debug, Clone)]
pub struct PacingConfig {
    pub burst: u32,
    pub per_sec: u32,
    /// Most peers with a bucket of their own (at least 1); a forgotten peer starts full again,
    /// which is harmless because its bucket at the peer has refilled meanwhile for all but the
    /// busiest few, and those are the most recently used, not the forgotten.
    pub max_peers: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        let rate = RateConfig::default();
        PacingConfig {
            burst: rate.peer_burst / 2,
            per_sec: rate.peer_per_sec / 2,
            max_peers: 256,
        }
    }
}

/// One outgoing token bucket per peer. See the module docs.
#[derive(Debug, Clone)]
pub struct Pacer {
    cfg: PacingConfig,
    peers: BoundedLru<NodeId, TokenBucket>,
}

impl Pacer {
    pub fn new(cfg: PacingConfig) -> Pacer {
        Pacer {
            peers: BoundedLru::new(cfg.max_peers),
            cfg,
        }
    }

    /// May one more request go to `peer` now? Takes a token if so.
    pub fn try_send(&mut self, now: Time, peer: &NodeId) -> bool {
        if let Some(b) = self.peers.get_mut(peer) {
            return b.take(now);
        }
        let mut b = TokenBucket::new(now, self.cfg.burst, self.cfg.per_sec);
        let ok = b.take(now);
        self.peers.insert(*peer, b);
        ok
    }

    /// Time for one token to refill: when a refused send is worth trying again.
    pub fn retry_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1000u64.div_ceil(u64::from(self.cfg.per_sec.max(1))))
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
    fn pacing_stays_under_the_default_per_peer_limit() {
        let mut pacer = Pacer::new(PacingConfig::default());
        let mut limiter = RateLimiter::new(RateConfig::default(), ms(0));
        let (me, peer) = (NodeId([1; 20]), NodeId([2; 20]));
        let mut sent = 0;
        // Try to send every millisecond for a minute: the pacer lets through what it may, and
        // the peer's limiter allows every one of them.
        for t in 0..60_000 {
            if pacer.try_send(ms(t), &peer) {
                sent += 1;
                assert_eq!(limiter.check(ms(t), &me), Verdict::Allow, "at {t} ms");
            }
        }
        // A burst of 16, then 8 per second: 479 more tokens by 59,999 ms.
        assert_eq!(sent, 16 + 479);
        assert_eq!(pacer.retry_after(), std::time::Duration::from_millis(125));
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

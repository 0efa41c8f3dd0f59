//! Round-trip times to peers, and the adaptive request timeout derived from them.
//!
//! The estimator is TCP's (RFC 6298, section 2): after the first sample `R`, `SRTT = R` and
//! `RTTVAR = R / 2`; after each later sample, `RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|` and
//! `SRTT = 7/8 SRTT + 1/8 R`; the timeout is `SRTT + 4 RTTVAR`, clamped to
//! `[min_timeout, max_timeout]`. Values are kept in microseconds so that the 1/8 and 1/4 steps
//! do not round away on millisecond samples.
//!
//! [`RoundTrips`] keeps one estimate per peer (a bounded LRU map: the peers asked most recently)
//! and one over all answers. A peer with no sample of its own gets the timeout of the overall
//! estimate, and before any answer at all, `initial_timeout`.
//!
//! Kademlia does not retransmit a request, so every answer gives an unambiguous sample (Karn's
//! rule is about retransmissions): the caller reports `now - sent` for every answer, late ones
//! included, which is how a timeout that was too short grows.

use onionmesh_bounded::BoundedLru;
use onionmesh_wire::NodeId;
use std::time::Duration;

/// Tunables of the adaptive timeout.
#[derive(Debug, Clone)]
pub struct RttConfig {
    /// Shortest timeout, however fast the answers (a timer wheel and a busy browser tab add
    /// jitter that a few samples do not show).
    pub min_timeout: Duration,
    /// Longest timeout, however slow the answers.
    pub max_timeout: Duration,
    /// Timeout before any round trip was measured (RFC 6298 uses 1 s).
    pub initial_timeout: Duration,
    /// Most peers with an estimate of their own (at least 1).
    pub max_peers: usize,
}

impl Default for RttConfig {
    fn default() -> Self {
        RttConfig {
            min_timeout: Duration::from_millis(300),
            max_timeout: Duration::from_secs(3),
            initial_timeout: Duration::from_secs(1),
            max_peers: 256,
        }
    }
}

/// One smoothed round-trip estimate (RFC 6298), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimate {
    srtt_us: u64,
    rttvar_us: u64,
}

impl RttEstimate {
    /// The estimate after its first sample.
    pub fn new(sample: Duration) -> RttEstimate {
        let r = duration_us(sample);
        RttEstimate {
            srtt_us: r,
            rttvar_us: r / 2,
        }
    }

    /// Fold in one more sample.
    pub fn update(&mut self, sample: Duration) {
        let r = duration_us(sample);
        let err = self.srtt_us.abs_diff(r);
        self.rttvar_us = (3 * self.rttvar_us + err) / 4;
        self.srtt_us = (7 * self.srtt_us + r) / 8;
    }

    /// The smoothed round trip.
    pub fn srtt(&self) -> Duration {
        Duration::from_micros(self.srtt_us)
    }

    /// `SRTT + 4 RTTVAR`, unclamped.
    pub fn timeout(&self) -> Duration {
        Duration::from_micros(
            self.srtt_us
                .saturating_add(self.rttvar_us.saturating_mul(4)),
        )
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 8)
}

/// Per-peer and overall round-trip estimates. See the module docs.
#[derive(Debug, Clone)]
pub struct RoundTrips {
    cfg: RttConfig,
    overall: Option<RttEstimate>,
    peers: BoundedLru<NodeId, RttEstimate>,
}

impl RoundTrips {
    pub fn new(cfg: RttConfig) -> RoundTrips {
        RoundTrips {
            peers: BoundedLru::new(cfg.max_peers),
            overall: None,
            cfg,
        }
    }

    /// A request to `peer` was answered after `rtt`.
    pub fn on_sample(&mut self, peer: &NodeId, rtt: Duration) {
        match self.overall.as_mut() {
            Some(e) => e.update(rtt),
            None => self.overall = Some(RttEstimate::new(rtt)),
        }
        match self.peers.get_mut(peer) {
            Some(e) => e.update(rtt),
            None => {
                self.peers.insert(*peer, RttEstimate::new(rtt));
            }
        }
    }

    /// The estimate for `peer`, if it answered recently enough to have one.
    pub fn estimate(&self, peer: &NodeId) -> Option<RttEstimate> {
        self.peers.peek(peer).copied()
    }

    /// How long to wait for `peer` before treating it as slow: its own estimate, else the
    /// overall one, else `initial_timeout`; clamped to `[min_timeout, max_timeout]`.
    pub fn timeout(&self, peer: &NodeId) -> Duration {
        let raw = self
            .peers
            .peek(peer)
            .or(self.overall.as_ref())
            .map_or(self.cfg.initial_timeout, RttEstimate::timeout);
        raw.clamp(
            self.cfg.min_timeout,
            self.cfg.max_timeout.max(self.cfg.min_timeout),
        )
    }

    /// The timeout for attempt `attempt` (from 1) of a request that is retried: doubled per
    /// earlier attempt (RFC 6298's back-off), within the same bounds.
    pub fn backed_off(&self, peer: &NodeId, attempt: u8) -> Duration {
        let base = self.timeout(peer);
        let factor = 1u32 << u32::from(attempt.clamp(1, 8) - 1);
        base.saturating_mul(factor)
            .min(self.cfg.max_timeout.max(self.cfg.min_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn follows_rfc_6298() {
        let mut e = RttEstimate::new(ms(100));
        assert_eq!(e.srtt(), ms(100));
        assert_eq!(e.timeout(), ms(300), "R + 4 R/2");
        e.update(ms(200));
        // RTTVAR = 3/4 * 50 + 1/4 * 100 = 62.5; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5.
        assert_eq!(e.srtt(), Duration::from_micros(112_500));
        assert_eq!(e.timeout(), Duration::from_micros(112_500 + 250_000));
        for _ in 0..100 {
            e.update(ms(40));
        }
        assert!(e.srtt() < ms(41) && e.timeout() < ms(45), "{e:?}");
    }

    #[test]
    fn per_peer_then_overall_then_initial_and_clamped() {
        let mut rt = RoundTrips::new(RttConfig::default());
        let (a, b) = (NodeId([1; 20]), NodeId([2; 20]));
        assert_eq!(rt.timeout(&a), ms(1_000), "initial");
        rt.on_sample(&a, ms(20));
        assert_eq!(
            rt.timeout(&a),
            ms(300),
            "60 ms is clamped up to the minimum"
        );
        rt.on_sample(&b, ms(2_500));
        assert_eq!(
            rt.timeout(&b),
            ms(3_000),
            "7.5 s is clamped down to the maximum"
        );
        assert!(rt.timeout(&a) == ms(300), "a keeps its own estimate");
        let c = NodeId([3; 20]);
        assert!(
            rt.timeout(&c) > ms(1_500),
            "no sample of its own: the overall estimate"
        );
        assert_eq!(rt.backed_off(&a, 1), ms(300));
        assert_eq!(rt.backed_off(&a, 2), ms(600));
        assert_eq!(rt.backed_off(&a, 9), ms(3_000));
    }

    #[test]
    fn the_per_peer_map_is_bounded() {
        let mut rt = RoundTrips::new(RttConfig {
            max_peers: 4,
            ..RttConfig::default()
        });
        for i in 0..100u8 {
            rt.on_sample(&NodeId([i; 20]), ms(50));
        }
        assert_eq!(rt.peers.len(), 4);
        assert!(rt.estimate(&NodeId([99; 20])).is_some());
        assert!(rt.estimate(&NodeId([0; 20])).is_none());
    }
}

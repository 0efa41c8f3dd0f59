//! The node's bridge connection: registration, the periodic "find me peers" refresh, and
//! reconnection after a drop.
//!
//! Reconnection: when the connection drops the node keeps its links and circuits, and asks the
//! driver to reconnect (`Output::ConnectBridge`) after a backoff: the first try within
//! [`BridgeConfig::first_retry`] (default 1 s, plus up to 50 % jitter, so under 2 s), doubling
//! up to [`BridgeConfig::max_retry`] (30 s), each with random jitter so that the pages of a
//! restarted bridge do not all come back in the same millisecond. The node registers again
//! under the same session identity and the DHT part re-announces its records when the bridge
//! sends its address.

use crate::event::{BridgeState, Event, Seconds};
use crate::output::{Request, Requests};
use onionmesh_wire::Time;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::Duration;

/// Tunables of the bridge connection.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// How often to ask the bridge for peers while below the target link count.
    pub refresh_interval: Duration,
    /// Delay before the first reconnection attempt (jitter adds up to half of it).
    pub first_retry: Duration,
    /// Longest delay between attempts.
    pub max_retry: Duration,
    /// Reconnect at all after a drop.
    pub reconnect: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            refresh_interval: Duration::from_secs(30),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
            reconnect: true,
        }
    }
}

/// See the module docs.
pub(crate) struct BridgeLink {
    cfg: BridgeConfig,
    state: BridgeState,
    next_refresh: Option<Time>,
    /// Failed attempts since the last registration.
    attempts: u32,
    rng: ChaCha20Rng,
}

impl BridgeLink {
    pub fn new(cfg: BridgeConfig, seed: [u8; 32]) -> BridgeLink {
        BridgeLink {
            cfg,
            state: BridgeState::Connecting,
            next_refresh: None,
            attempts: 0,
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    pub fn state(&self) -> BridgeState {
        self.state
    }

    pub fn registered(&self) -> bool {
        self.state == BridgeState::Registered
    }

    fn set(&mut self, state: BridgeState, detail: String, reqs: &mut Requests) {
        self.state = state;
        reqs.push_back(Request::Emit(Event::Bridge { state, detail }));
    }

    pub fn opened(&mut self, now: Time, reqs: &mut Requests) {
        self.set(
            BridgeState::Registering,
            "sending the signed hello".into(),
            reqs,
        );
        self.next_refresh = Some(now + self.cfg.refresh_interval);
    }

    pub fn welcomed(&mut self, peers_online: u32, reqs: &mut Requests) {
        self.attempts = 0;
        self.set(
            BridgeState::Registered,
            format!("registered; {peers_online} peers online at this bridge"),
            reqs,
        );
    }

    /// The connection closed (or an attempt failed): schedule the next attempt.
    pub fn closed(&mut self, now: Time, reason: &str, reqs: &mut Requests) {
        self.next_refresh = None;
        if self.state == BridgeState::Disconnected {
            return;
        }
        if !self.cfg.reconnect {
            self.set(BridgeState::Disconnected, reason.to_owned(), reqs);
            return;
        }
        let delay = self.backoff();
        self.attempts = self.attempts.saturating_add(1);
        let next_attempt = now + delay;
        self.set(
            BridgeState::Reconnecting {
                next_attempt,
                attempt: self.attempts,
            },
            format!(
                "{reason}; reconnecting in {} s (attempt {})",
                Seconds {
                    ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
                },
                self.attempts
            ),
            reqs,
        );
    }

    /// `first_retry · 2^attempts`, capped at `max_retry`, plus up to 50 % random jitter.
    fn backoff(&mut self) -> Duration {
        let base = self
            .cfg
            .first_retry
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.cfg.max_retry);
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        let jitter = if base_ms >= 2 {
            self.rng.next_u64() % (base_ms / 2)
        } else {
            0
        };
        Duration::from_millis(base_ms.saturating_add(jitter))
    }

    /// The node stops: no more attempts.
    pub fn stop(&mut self, reqs: &mut Requests) {
        self.next_refresh = None;
        if self.state != BridgeState::Disconnected {
            self.set(BridgeState::Disconnected, "the node stopped".into(), reqs);
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        let retry = match self.state {
            BridgeState::Reconnecting { next_attempt, .. } => Some(next_attempt),
            _ => None,
        };
        self.next_refresh.into_iter().chain(retry).min()
    }

    /// Returns (refresh due, reconnect due).
    pub fn handle_timeout(&mut self, now: Time, reqs: &mut Requests) -> (bool, bool) {
        let mut refresh = false;
        if self.next_refresh.is_some_and(|t| t <= now) {
            self.next_refresh = Some(now + self.cfg.refresh_interval);
            refresh = true;
        }
        let mut reconnect = false;
        if let BridgeState::Reconnecting { next_attempt, .. } = self.state {
            if next_attempt <= now {
                reconnect = true;
                self.set(
                    BridgeState::Connecting,
                    format!("reconnecting to the bridge (attempt {})", self.attempts),
                    reqs,
                );
            }
        }
        (refresh, reconnect)
    }
}

//! One connection as the rendezvous sees it: its state, rate limit, challenge and liveness.

use crate::Time;
use onionmesh_bounded::TokenBucket;
use onionmesh_wire::signal::ChallengeNonce;
use onionmesh_wire::{NodeId, PublicKeyBytes};

/// A connection handle chosen by the driver (one per WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Most introductions remembered per unanswered probe; more fail at the page's own timeout.
pub(crate) const MAX_PROBED_INTRODUCTIONS: usize = 16;

#[derive(Debug)]
pub(crate) enum ConnState {
    /// Challenge sent, waiting for the hello. `their_challenge` is the other side's challenge,
    /// which only a bridge sends (federation: each side challenges the other).
    AwaitingHello {
        deadline: Time,
        their_challenge: Option<ChallengeNonce>,
    },
    Registered {
        id: NodeId,
        pubkey: PublicKeyBytes,
    },
    /// A federated bridge (its address and peers are the federation part's).
    Bridge,
}

/// Introductions relayed to a connection that has not been heard from since.
#[derive(Debug)]
pub(crate) struct Probe {
    pub deadline: Time,
    /// `(offerer, session)` of each introduction waiting on the answer.
    pub introductions: Vec<(NodeId, u64)>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub state: ConnState,
    pub bucket: TokenBucket,
    /// The nonce this side sent in its `Challenge`; the peer's hello must sign it.
    pub challenge: ChallengeNonce,
    /// When the last input from this connection arrived.
    pub last_heard: Time,
    /// A `Ping` went out since `last_heard`.
    pub pinged: bool,
    pub probe: Option<Probe>,
    /// An introduction probe failed and nothing was heard since: not offered to anyone, and
    /// announced as gone.
    pub suspect: bool,
    /// This connection's entry in the rendezvous' wake-up set.
    pub wake: Time,
}

impl Conn {
    /// When this connection next needs the timer: its hello deadline, its next ping, its
    /// silence deadline or its probe deadline, whichever is first.
    pub fn next_wake(
        &self,
        ping_interval: std::time::Duration,
        silence: std::time::Duration,
    ) -> Time {
        let keepalive = match self.state {
            ConnState::AwaitingHello { deadline, .. } => return deadline,
            _ if self.pinged => self.last_heard + silence,
            _ => self.last_heard + ping_interval,
        };
        match &self.probe {
            Some(p) => keepalive.min(p.deadline),
            None => keepalive,
        }
    }
}

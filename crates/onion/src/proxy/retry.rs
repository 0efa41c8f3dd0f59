//! Automatic builds: the proxy chooses the path, and retries on a fresh one when a hop fails.
//!
//! An automatic build ([`crate::OnionProxy::build_circuit_auto`]) keeps the rules, pins and
//! candidates it was given. When its circuit fails before it is built, the failed hop is
//! remembered ([`FailedHops`]) and, while attempts and the deadline allow, a new path is chosen
//! from the same candidates minus every recently failed hop, under the same handle. The
//! application sees one `CircuitBuilt`, or one `CircuitClosed` with
//! [`CloseReason::BuildFailed`] listing every attempt. Explicit paths are never retried, but
//! their failures are remembered too.

use super::circuit::Circuit;
use crate::error::{BuildAttempt, CloseReason};
use crate::path::{select_path_pinned, Candidate, HopSpec, PathError, PathPins, PathRules};
use onionmesh_bounded::BoundedLru;
use onionmesh_wire::{NodeId, Time};
use rand_core::RngCore;

/// Candidates an automatic build keeps for its retries, at most.
pub(crate) const MAX_AUTO_CANDIDATES: usize = 1024;

/// Hops that failed recently, each with the time until which it is left out; and links that
/// closed, with when, so the candidates an automatic build stored before that no longer count
/// them as linked.
#[derive(Debug)]
pub(crate) struct FailedHops {
    until: BoundedLru<NodeId, Time>,
    unlinked_at: BoundedLru<NodeId, Time>,
}

impl FailedHops {
    pub(crate) fn new(capacity: usize) -> FailedHops {
        FailedHops {
            until: BoundedLru::new(capacity),
            unlinked_at: BoundedLru::new(capacity),
        }
    }

    /// Our link to `id` closed at `now` (not by itself a failure: the node may have closed an
    /// idle link).
    pub(crate) fn unlinked(&mut self, id: NodeId, now: Time) {
        self.unlinked_at.insert(id, now);
    }

    /// Did our link to `id` close after `since`? (A close at the very instant a build starts
    /// is taken as known to the caller that supplied the candidates.)
    fn unlinked_since(&self, id: &NodeId, since: Time) -> bool {
        self.unlinked_at.peek(id).is_some_and(|t| *t > since)
    }

    /// Leave `id` out of automatic paths until `until`.
    pub(crate) fn remember(&mut self, id: NodeId, until: Time) {
        let later = self.until.peek(&id).map_or(until, |t| (*t).max(until));
        self.until.insert(id, later);
    }

    pub(crate) fn forget(&mut self, id: &NodeId) {
        self.until.remove(id);
        self.unlinked_at.remove(id);
    }

    pub(crate) fn is_failed(&self, id: &NodeId, now: Time) -> bool {
        self.until.peek(id).is_some_and(|t| now < *t)
    }

    /// Every hop still left out at `now` (expired entries are dropped).
    pub(crate) fn list(&mut self, now: Time) -> Vec<NodeId> {
        self.until.retain(|_, t| now < *t);
        self.until.iter().map(|(id, _)| *id).collect()
    }
}

/// An automatic build in progress.
#[derive(Debug)]
pub(crate) struct AutoBuild {
    pub(crate) hops: usize,
    pub(crate) rules: PathRules,
    pub(crate) pins: PathPins,
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) attempts: Vec<BuildAttempt>,
    pub(crate) no_path: Option<PathError>,
    pub(crate) started: Time,
}

impl AutoBuild {
    /// The final reason once no attempt is left.
    pub(crate) fn into_reason(self) -> CloseReason {
        CloseReason::BuildFailed {
            attempts: self.attempts,
            no_path: self.no_path,
        }
    }
}

/// Which hop of `c`'s path a failure names: the hop being added when it broke, or the first
/// hop when its link closed; none for our own decisions (a request, a local limit).
pub(crate) fn failed_hop(c: &Circuit, reason: &CloseReason) -> Option<usize> {
    let last = c.path.len().checked_sub(1)?;
    match reason {
        CloseReason::Requested
        | CloseReason::ResourceLimit(_)
        | CloseReason::BuildFailed { .. } => None,
        CloseReason::LinkClosed => Some(0),
        _ => Some(c.crypto.len().min(last)),
    }
}

/// Choose a path for the next attempt of `auto`, leaving out recently failed hops (unless the
/// caller pinned them) and not starting at a peer whose link closed since the build began.
pub(crate) fn choose(
    rng: &mut impl RngCore,
    auto: &AutoBuild,
    failed: &FailedHops,
    now: Time,
) -> Result<Vec<HopSpec>, PathError> {
    let pinned =
        |id: &NodeId| auto.pins.last == Some(*id) || auto.pins.at.iter().any(|(_, p)| p == id);
    let live: Vec<Candidate> = auto
        .candidates
        .iter()
        .filter(|c| pinned(&c.hop.id) || !failed.is_failed(&c.hop.id, now))
        .map(|c| Candidate {
            linked: c.linked && !failed.unlinked_since(&c.hop.id, auto.started),
            ..c.clone()
        })
        .collect();
    select_path_pinned(rng, &auto.rules, &auto.pins, &live, auto.hops)
}

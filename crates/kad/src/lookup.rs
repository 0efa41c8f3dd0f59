//! The iterative lookup as its own sans-IO iterator, in the style of rust-libp2p's
//! `ClosestPeersIter`: it only decides *whom to ask next*; the caller sends the requests and
//! reports each outcome with [`ClosestIter::on_success`] or [`ClosestIter::on_failure`].
//!
//! Rules:
//! - at most `alpha` requests in flight;
//! - the next peer asked is always the closest not yet contacted among the `k` closest peers
//!   known that have not failed;
//! - the lookup is finished when those `k` closest have all answered: then no answer can still
//!   bring a closer node that would change the result (a round that yields no closer nodes
//!   leaves the same `k` peers on top, all answered). It also finishes when every candidate has
//!   been tried, when the request budget is spent, or when the caller calls [`ClosestIter::finish`]
//!   (FIND_VALUE does, once enough holders returned the value).
//!
//! The iterator has no clock. The caller owns the request timeouts, and has two of them (as
//! rust-libp2p's `ClosestPeersIter` does): after a short one (an adaptive timeout from measured
//! round trips, see [`crate::rtt`]) it reports the peer *slow* with
//! [`ClosestIter::on_unresponsive`], which frees its `alpha` slot and stops the lookup from
//! waiting for it, though a late answer is still taken; after the long one it reports a failure.
//!
//! Statistics: `requests` counts the requests handed out; `rounds` is the depth of the lookup,
//! counted as in the synchronous model of Kademlia: the peers we start from are at round 1, a
//! peer first learned from an answer of a round-`r` peer is at round `r + 1`, and the lookup's
//! rounds are the deepest round it queried.
//!
//! ```
//! use onionmesh_kad::lookup::{ClosestIter, LookupConfig, Step};
//! use onionmesh_wire::{kad::Contact, NodeId};
//! let c = |b: u8| Contact { id: NodeId([b; 20]), pubkey: [2; 33], bridge: None, introducers: Default::default() };
//! let me = NodeId([0; 20]);
//! let mut it = ClosestIter::new(me, NodeId([1; 20]), LookupConfig::default(), vec![c(3)]);
//! let Step::Query(first) = it.next_step() else { panic!() };
//! assert_eq!(first.id, NodeId([3; 20]));
//! assert_eq!(it.next_step(), Step::Waiting);
//! it.on_success(&first.id, vec![c(1)]);
//! assert!(matches!(it.next_step(), Step::Query(p) if p.id == NodeId([1; 20])));
//! it.on_success(&NodeId([1; 20]), vec![]);
//! assert_eq!(it.next_step(), Step::Finished);
//! assert_eq!(it.closest().len(), 2);
//! assert_eq!(it.stats().rounds, 2);
//! ```

use onionmesh_wire::kad::Contact;
use onionmesh_wire::{NodeId, ID_LEN};

/// Tunables of one lookup.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// Requests in flight at once (Kademlia's `alpha`).
    pub alpha: usize,
    /// Size of the result (Kademlia's `k`).
    pub k: usize,
    /// Most candidates remembered; the farthest are forgotten first.
    pub max_candidates: usize,
    /// Most requests one lookup may send.
    pub max_requests: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            alpha: 3,
            k: 8,
            max_candidates: 64,
            max_requests: 100,
        }
    }
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send a request to this peer, then report the outcome. Call `next_step` again: there may be
    /// more to send.
    Query(Contact),
    /// Nothing to send until an outcome is reported.
    Waiting,
    /// Done: read [`ClosestIter::closest`].
    Finished,
}

/// Per-lookup figures, reported with the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub rounds: u32,
    pub requests: u32,
    pub answers: u32,
    pub failures: u32,
    /// Requests given up on as slow (see [`ClosestIter::on_unresponsive`]). Such a request may
    /// still end as an answer or a failure, and is then counted there too.
    pub slow: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting,
    /// Asked, not answered within the short timeout: no longer awaited, but a late answer counts.
    Unresponsive,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    contact: Contact,
    distance: [u8; ID_LEN],
    state: State,
    round: u32,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ClosestIter {
    me: NodeId,
    target: NodeId,
    cfg: LookupConfig,
    /// Sorted by distance to `target`, closest first; no duplicates, never `me`.
    candidates: Vec<Candidate>,
    in_flight: usize,
    stats: LookupStats,
    finished: bool,
}

impl ClosestIter {
    /// Starts a lookup of `target` from `seeds` (usually the `k` closest contacts in our
    /// routing table). `me` is never queried nor returned. `alpha`, `k` and `max_candidates` are
    /// raised to sane minimums.
    pub fn new(
        me: NodeId,
        target: NodeId,
        mut cfg: LookupConfig,
        seeds: impl IntoIterator<Item = Contact>,
    ) -> ClosestIter {
        cfg.alpha = cfg.alpha.max(1);
        cfg.k = cfg.k.max(1);
        cfg.max_candidates = cfg.max_candidates.max(cfg.k);
        let mut it = ClosestIter {
            me,
            target,
            cfg,
            candidates: Vec::new(),
            in_flight: 0,
            stats: LookupStats::default(),
            finished: false,
        };
        for c in seeds {
            it.add(c, 1);
        }
        it
    }

    pub fn target(&self) -> &NodeId {
        &self.target
    }

    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Requests currently awaiting an outcome.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn add(&mut self, contact: Contact, round: u32) {
        if contact.id == self.me {
            return;
        }
        let distance = contact.id.distance(&self.target);
        match self
            .candidates
            .binary_search_by(|c| c.distance.cmp(&distance))
        {
            Ok(i) => {
                // Known already: a shorter path only matters before it is contacted.
                let c = &mut self.candidates[i];
                if c.state == State::NotContacted && round < c.round {
                    c.round = round;
                }
            }
            Err(i) => {
                if i >= self.cfg.max_candidates {
                    return; // farther than everything we keep
                }
                self.candidates.insert(
                    i,
                    Candidate {
                        contact,
                        distance,
                        state: State::NotContacted,
                        round,
                    },
                );
                // Forget the farthest candidates that are not awaiting an answer.
                while self.candidates.len() > self.cfg.max_candidates {
                    match self
                        .candidates
                        .iter()
                        .rposition(|c| c.state != State::Waiting)
                    {
                        Some(j) => {
                            self.candidates.remove(j);
                        }
                        None => break,
                    }
                }
            }
        }
    }

    /// Whom to ask next. Call until it returns something other than [`Step::Query`].
    pub fn next_step(&mut self) -> Step {
        if self.finished {
            return Step::Finished;
        }
        let mut considered = 0;
        let mut all_answered = true;
        let budget_left = (self.stats.requests as usize) < self.cfg.max_requests;
        for c in self.candidates.iter_mut() {
            match c.state {
                // A slow peer neither holds a place among the `k` nor keeps the lookup waiting.
                State::Failed | State::Unresponsive => continue,
                State::Succeeded => {}
                State::Waiting => all_answered = false,
                State::NotContacted => {
                    all_answered = false;
                    if self.in_flight < self.cfg.alpha && budget_left {
                        c.state = State::Waiting;
                        self.in_flight += 1;
                        self.stats.requests += 1;
                        self.stats.rounds = self.stats.rounds.max(c.round);
                        return Step::Query(c.contact.clone());
                    }
                }
            }
            considered += 1;
            if considered == self.cfg.k {
                break;
            }
        }
        if all_answered || self.in_flight == 0 {
            self.finished = true;
            return Step::Finished;
        }
        Step::Waiting
    }

    /// The candidate `id` if a request to it is outstanding (in flight or slow).
    fn asked_mut(&mut self, id: &NodeId) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| {
            c.contact.id == *id && matches!(c.state, State::Waiting | State::Unresponsive)
        })
    }

    /// `id` answered with `closer` contacts (in time, or late after
    /// [`ClosestIter::on_unresponsive`]). Returns false (and ignores the answer) if no request to
    /// `id` was outstanding.
    pub fn on_success(&mut self, id: &NodeId, closer: Vec<Contact>) -> bool {
        let Some(c) = self.asked_mut(id) else {
            return false;
        };
        let was_waiting = c.state == State::Waiting;
        c.state = State::Succeeded;
        let round = c.round.saturating_add(1);
        if was_waiting {
            self.in_flight -= 1;
        }
        self.stats.answers += 1;
        if !self.finished {
            for contact in closer {
                self.add(contact, round);
            }
        }
        true
    }

    /// The request to `id` failed or timed out for good. Returns false if none was outstanding.
    pub fn on_failure(&mut self, id: &NodeId) -> bool {
        let Some(c) = self.asked_mut(id) else {
            return false;
        };
        let was_waiting = c.state == State::Waiting;
        c.state = State::Failed;
        if was_waiting {
            self.in_flight -= 1;
        }
        self.stats.failures += 1;
        true
    }

    /// The request to `id` is slow: stop waiting for it (its `alpha` slot goes to the next
    /// peer, and the lookup may finish without it) but keep taking its answer if one comes.
    /// Returns false if no request to `id` was in flight.
    pub fn on_unresponsive(&mut self, id: &NodeId) -> bool {
        let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.contact.id == *id && c.state == State::Waiting)
        else {
            return false;
        };
        c.state = State::Unresponsive;
        self.in_flight -= 1;
        self.stats.slow += 1;
        true
    }

    /// Stop now; outstanding requests may still be reported and are counted, but nothing new
    /// is sent.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Up to `k` peers that answered, closest to the target first.
    pub fn closest(&self) -> Vec<Contact> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Succeeded)
            .take(self.cfg.k)
            .map(|c| c.contact.clone())
            .collect()
    }

    /// Every peer that answered (at most `max_candidates`), closest to the target first: the
    /// `k` of [`ClosestIter::closest`], then the ones a publisher may fall back on.
    pub fn answered(&self) -> Vec<Contact> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Succeeded)
            .map(|c| c.contact.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionmesh_bounded::FlatSet;
    use proptest::prelude::*;

    fn c(id: NodeId) -> Contact {
        Contact {
            id,
            pubkey: [2; 33],
            bridge: None,
            introducers: Default::default(),
        }
    }

    fn true_closest(ids: &[NodeId], target: &NodeId, k: usize, me: &NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = ids.iter().copied().filter(|i| i != me).collect();
        v.sort_by_key(|i| i.distance(target));
        v.truncate(k);
        v
    }

    /// A network of nodes that answer with their `k` known nodes closest to the target, or fail
    /// when dead.
    struct Net {
        ids: Vec<NodeId>,
        known: Vec<Vec<NodeId>>,
        dead: FlatSet<NodeId>,
    }

    impl Net {
        fn answer(&self, who: &NodeId, target: &NodeId, k: usize) -> Option<Vec<Contact>> {
            if self.dead.contains(who) {
                return None;
            }
            let i = self.ids.iter().position(|x| x == who)?;
            let mut v = self.known[i].clone();
            v.sort_by_key(|x| x.distance(target));
            v.truncate(k);
            Some(v.into_iter().map(c).collect())
        }
    }

    fn run(net: &Net, it: &mut ClosestIter, reorder: &[u8]) -> usize {
        let mut queue: Vec<NodeId> = Vec::new();
        let mut max_in_flight = 0;
        let mut step = 0;
        loop {
            loop {
                match it.next_step() {
                    Step::Query(p) => {
                        assert!(p.id != it.me, "queried ourselves");
                        queue.push(p.id);
                    }
                    Step::Waiting => break,
                    Step::Finished => return max_in_flight,
                }
            }
            max_in_flight = max_in_flight.max(it.in_flight());
            assert!(it.in_flight() <= it.cfg.alpha);
            // Answer in an arbitrary order.
            let pick = usize::from(reorder.get(step).copied().unwrap_or(0)) % queue.len();
            step += 1;
            let who = queue.remove(pick);
            match net.answer(&who, it.target(), it.cfg.k) {
                Some(closer) => assert!(it.on_success(&who, closer)),
                None => assert!(it.on_failure(&who)),
            }
        }
    }

    /// Every node knows up to `per_bucket` nodes of each of its buckets (the first ones in ID
    /// order), like a settled Kademlia table; every `dead_every`-th node is dead.
    fn build(seed_ids: &[[u8; 20]], per_bucket: usize, dead_every: usize) -> Net {
        let ids: Vec<NodeId> = seed_ids.iter().copied().map(NodeId).collect();
        let known = ids
            .iter()
            .map(|me| {
                let mut count = [0usize; 160];
                let mut v = Vec::new();
                for other in &ids {
                    if let Some(j) = crate::contact::bucket_index(me, other) {
                        if count[j] < per_bucket {
                            count[j] += 1;
                            v.push(*other);
                        }
                    }
                }
                v
            })
            .collect();
        let dead = if dead_every == 0 {
            FlatSet::new()
        } else {
            ids.iter().step_by(dead_every).copied().collect()
        };
        Net { ids, known, dead }
    }

    #[test]
    fn finds_the_true_closest_in_a_well_connected_network() {
        let raw: Vec<[u8; 20]> = (0..300u32)
            .map(|i| {
                let mut id = [0u8; 20];
                // Spread IDs with a cheap mixing function.
                let x = i.wrapping_mul(2_654_435_761);
                id[..4].copy_from_slice(&x.to_be_bytes());
                id[4] = i as u8;
                id
            })
            .collect();
        let net = build(&raw, 8, 0);
        for t in 0..50u32 {
            let mut target = [0u8; 20];
            target[..4].copy_from_slice(&t.wrapping_mul(40_503).wrapping_mul(99_991).to_be_bytes());
            let target = NodeId(target);
            let me = net.ids[(t as usize * 13) % net.ids.len()];
            let seeds = net.answer(&me, &target, 8).unwrap();
            let mut it = ClosestIter::new(me, target, LookupConfig::default(), seeds);
            run(&net, &mut it, &[]);
            let got: Vec<NodeId> = it.closest().iter().map(|c| c.id).collect();
            assert_eq!(got, true_closest(&net.ids, &target, 8, &me));
            assert!(it.stats().rounds >= 1);
        }
    }

    #[test]
    fn empty_start_finishes_at_once() {
        let mut it = ClosestIter::new(
            NodeId([0; 20]),
            NodeId([1; 20]),
            LookupConfig::default(),
            vec![],
        );
        assert_eq!(it.next_step(), Step::Finished);
        assert!(it.closest().is_empty());
        assert!(
            !it.on_success(&NodeId([1; 20]), vec![]),
            "nothing outstanding"
        );
    }

    #[test]
    fn everyone_failing_finishes_with_nothing() {
        let me = NodeId([0; 20]);
        let seeds: Vec<Contact> = (1..=5).map(|b| c(NodeId([b; 20]))).collect();
        let mut it = ClosestIter::new(me, NodeId([9; 20]), LookupConfig::default(), seeds);
        let mut sent = Vec::new();
        while let Step::Query(p) = it.next_step() {
            sent.push(p.id);
        }
        assert_eq!(sent.len(), 3, "alpha = 3 in flight");
        for id in sent {
            it.on_failure(&id);
        }
        while let Step::Query(p) = it.next_step() {
            it.on_failure(&p.id);
        }
        assert_eq!(it.next_step(), Step::Finished);
        assert!(it.closest().is_empty());
        assert_eq!(it.stats().failures, 5);
    }

    #[test]
    fn request_budget_is_respected() {
        let me = NodeId([0; 20]);
        let cfg = LookupConfig {
            max_requests: 4,
            ..LookupConfig::default()
        };
        let seeds: Vec<Contact> = (1..=20).map(|b| c(NodeId([b; 20]))).collect();
        let mut it = ClosestIter::new(me, NodeId([9; 20]), cfg, seeds);
        let mut n = 0;
        loop {
            match it.next_step() {
                Step::Query(p) => {
                    n += 1;
                    it.on_failure(&p.id);
                }
                Step::Waiting => unreachable!("answers are immediate"),
                Step::Finished => break,
            }
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn the_own_id_is_never_a_candidate() {
        let me = NodeId([5; 20]);
        let mut it = ClosestIter::new(me, NodeId([5; 20]), LookupConfig::default(), vec![c(me)]);
        assert_eq!(it.next_step(), Step::Finished);
    }

    #[test]
    fn a_slow_peer_frees_its_slot_and_a_late_answer_still_counts() {
        let me = NodeId([0; 20]);
        let target = NodeId([0x10; 20]);
        let cfg = LookupConfig {
            alpha: 1,
            k: 2,
            ..LookupConfig::default()
        };
        let (slow, fast) = (NodeId([0x11; 20]), NodeId([0x30; 20]));
        let mut it = ClosestIter::new(me, target, cfg, vec![c(slow), c(fast)]);
        assert_eq!(it.next_step(), Step::Query(c(slow)));
        assert_eq!(it.next_step(), Step::Waiting, "alpha = 1");
        assert!(it.on_unresponsive(&slow));
        assert!(!it.on_unresponsive(&slow), "only once");
        assert_eq!(it.next_step(), Step::Query(c(fast)), "its slot went on");
        assert!(it.on_success(&fast, vec![]));
        assert_eq!(
            it.next_step(),
            Step::Finished,
            "not waiting for the slow one"
        );
        assert_eq!(it.closest(), vec![c(fast)]);
        // A late answer is still taken (for the result; the lookup stays finished).
        assert!(it.on_success(&slow, vec![c(NodeId([0x12; 20]))]));
        assert_eq!(it.closest(), vec![c(slow), c(fast)]);
        assert_eq!(it.in_flight(), 0);
        let st = it.stats();
        assert_eq!(
            (st.requests, st.answers, st.failures, st.slow),
            (2, 2, 0, 1)
        );
    }

    proptest! {
        #[test]
        fn invariants_hold_with_failures_and_reordering(
            raw in proptest::collection::btree_set(any::<[u8; 20]>(), 2..120),
            knows in 1usize..12,
            dead_every in 0usize..5,
            target in any::<[u8; 20]>(),
            alpha in 1usize..5,
            k in 1usize..10,
            reorder in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let raw: Vec<[u8; 20]> = raw.into_iter().collect();
            let net = build(&raw, knows, dead_every);
            let me = net.ids[0];
            let target = NodeId(target);
            let cfg = LookupConfig { alpha, k, max_candidates: 3 * k, max_requests: 60 };
            let seeds: Vec<Contact> = net.known[0].iter().copied().map(c).collect();
            let mut it = ClosestIter::new(me, target, cfg, seeds);
            let max_in_flight = run(&net, &mut it, &reorder);
            prop_assert!(max_in_flight <= alpha);
            let st = it.stats();
            prop_assert!(st.requests <= 60);
            prop_assert_eq!(st.requests, st.answers + st.failures + it.in_flight() as u32);
            let got = it.closest();
            prop_assert!(got.len() <= k);
            for w in got.windows(2) {
                prop_assert!(w[0].id.distance(&target) < w[1].id.distance(&target));
            }
            for p in &got {
                prop_assert!(p.id != me);
                prop_assert!(!net.dead.contains(&p.id), "a failed peer in the result");
            }
        }
    }
}

//! A deterministic network of [`Kad`] nodes on a virtual clock, for the tests and the
//! `lookup_bench` example. It uses only the public API, exactly as a driver would.
//!
//! - every message is one Kademlia frame, encoded and decoded by the real codec;
//! - each pair of nodes has a fixed latency drawn from `[min_latency, max_latency]`, and frames
//!   between them arrive in order (like a data channel);
//! - a frame to a node that has left is lost: the sender learns it by a timeout;
//! - a *suspended* node (a laptop whose lid closed) keeps its state and its place in everyone's
//!   tables but reads nothing and answers nothing until it is resumed;
//! - time jumps from event to event, so ten thousand nodes over an hour of virtual time take
//!   seconds. The same [`SimConfig`] gives the same run.
//!
//! [`Scenario`] is the acceptance run: a static network (are FIND_NODE results the true `k`
//! closest?) and then churn (do FIND_VALUE lookups still find stored values?).
//!
//! ```
//! use onionmesh_kad::sim::{Sim, SimConfig};
//! let mut sim = Sim::new(SimConfig::default());
//! for _ in 0..50 {
//!     sim.join();
//!     sim.run_for(std::time::Duration::from_millis(200));
//! }
//! let target = sim.random_id();
//! let lookup = sim.find_node(7, target).unwrap();
//! sim.run_for(std::time::Duration::from_secs(30));
//! let result = sim.result(7, lookup).unwrap();
//! assert_eq!(result.closest.iter().map(|c| c.id).collect::<Vec<_>>(), sim.true_closest(&target, 8, Some(7)));
//! ```

use crate::contact::id_of;
use crate::{
    Kad, KadConfig, KadEvent, LookupId, LookupKind, LookupResult, Output, PublishError, Time,
};
use onionmesh_wire::kad::Contact;
use onionmesh_wire::{NodeId, ID_LEN};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

/// A valid contact made from `seed`: the public key is 33 pseudo-random bytes (the DHT only
/// hashes it) and the ID is its hash.
pub fn test_contact(seed: u64) -> Contact {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut pubkey = [0u8; 33];
    rng.fill_bytes(&mut pubkey);
    pubkey[0] = 0x02;
    Contact {
        id: id_of(&pubkey),
        pubkey,
        bridge: None,
        introducers: Default::default(),
    }
}

/// Tunables of a simulated network.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Existing nodes a joining node is given (by "the bridge").
    pub bootstrap_seeds: usize,
    pub kad: KadConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            min_latency: Duration::from_millis(10),
            max_latency: Duration::from_millis(100),
            bootstrap_seeds: 3,
            kad: KadConfig::default(),
        }
    }
}

/// Network-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub frames_delivered: u64,
    pub frames_lost: u64,
    pub bytes: u64,
    pub rejections: u64,
    pub stores_accepted: u64,
}

enum Ev {
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct SimNode {
    kad: Option<Kad>,
    contact: Contact,
    wake: Option<Time>,
    suspended: bool,
}

/// How a publication round ended, as [`KadEvent::Published`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRound {
    pub holders: usize,
    pub attempted: usize,
    pub error: Option<PublishError>,
    /// Virtual time at which the round ended.
    pub at: Time,
}

/// The simulated network. Nodes are named by their index, in join order.
pub struct Sim {
    cfg: SimConfig,
    now: Time,
    rng: ChaCha20Rng,
    nodes: Vec<SimNode>,
    alive: Vec<usize>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    results: HashMap<(usize, LookupId), LookupResult>,
    published: HashMap<(usize, LookupId), PublishRound>,
    finished_at: HashMap<(usize, LookupId), Time>,
    by_id: HashMap<NodeId, usize>,
    stats: SimStats,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        Sim {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            cfg,
            now: Time::ZERO,
            nodes: Vec::new(),
            alive: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            results: HashMap::new(),
            published: HashMap::new(),
            finished_at: HashMap::new(),
            by_id: HashMap::new(),
            stats: SimStats::default(),
        }
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Indices of the nodes that are up.
    pub fn alive(&self) -> &[usize] {
        &self.alive
    }

    /// Nodes ever created (up or gone).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.kad.is_some())
    }

    pub fn contact(&self, i: usize) -> &Contact {
        &self.nodes[i].contact
    }

    /// The node, if it is up.
    pub fn node(&self, i: usize) -> Option<&Kad> {
        self.nodes.get(i).and_then(|n| n.kad.as_ref())
    }

    /// A uniformly random ID from the simulation's RNG.
    pub fn random_id(&mut self) -> NodeId {
        let mut id = [0u8; ID_LEN];
        self.rng.fill_bytes(&mut id);
        NodeId(id)
    }

    /// A random live node; panics if none is up (a test bug).
    pub fn random_alive(&mut self) -> usize {
        let pick = self.random_below(self.alive.len());
        self.alive[pick]
    }

    /// A uniformly random index below `n` (`n > 0`).
    pub fn random_below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }

    fn latency(&self, a: usize, b: usize) -> u64 {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let min = self.cfg.min_latency.as_millis() as u64;
        let max = (self.cfg.max_latency.as_millis() as u64).max(min);
        let h = splitmix(self.cfg.seed ^ splitmix(lo.wrapping_mul(0x1_0000_0001) ^ hi));
        min + h % (max - min + 1)
    }

    /// The round trip between nodes `a` and `b` (twice their fixed one-way latency).
    pub fn round_trip(&self, a: usize, b: usize) -> Duration {
        Duration::from_millis(2 * self.latency(a, b))
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// Adds a node, bootstrapped from `bootstrap_seeds` random live nodes. Returns its index.
    pub fn join(&mut self) -> usize {
        let (i, contact, kad) = self.new_node();
        let mut seeds = Vec::new();
        for _ in 0..self.cfg.bootstrap_seeds.min(self.alive.len()) * 2 {
            if seeds.len() == self.cfg.bootstrap_seeds {
                break;
            }
            let pick = self.random_below(self.alive.len());
            let j = self.alive[pick];
            let c = self.nodes[j].contact.clone();
            if !seeds.contains(&c) {
                seeds.push(c);
            }
        }
        self.start_node(i, contact, kad, seeds)
    }

    /// Adds a node bootstrapped from the nodes `seeds` only (indices; departed ones are
    /// skipped), as a page joins through its bridge's DHT node. Returns its index.
    pub fn join_through(&mut self, seeds: &[usize]) -> usize {
        let (i, contact, kad) = self.new_node();
        let seeds = seeds
            .iter()
            .filter(|j| self.is_alive(**j))
            .map(|j| self.nodes[*j].contact.clone())
            .collect();
        self.start_node(i, contact, kad, seeds)
    }

    fn new_node(&mut self) -> (usize, Contact, Kad) {
        let i = self.nodes.len();
        let contact = test_contact(splitmix(self.cfg.seed ^ (i as u64).wrapping_mul(7919)));
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let kad = Kad::new(contact.clone(), self.cfg.kad.clone(), seed, self.now)
            .expect("test contacts are valid");
        (i, contact, kad)
    }

    fn start_node(&mut self, i: usize, contact: Contact, kad: Kad, seeds: Vec<Contact>) -> usize {
        self.by_id.insert(contact.id, i);
        self.nodes.push(SimNode {
            kad: Some(kad),
            contact,
            wake: None,
            suspended: false,
        });
        self.alive.push(i);
        let now = self.now;
        if let Some(k) = self.nodes[i].kad.as_mut() {
            let _ = k.bootstrap(now, &seeds);
        }
        self.flush(i);
        i
    }

    /// Node `i` leaves without a word (a closed tab). Frames to it are lost from now on.
    pub fn leave(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.kad = None;
            n.wake = None;
        }
        self.alive.retain(|&j| j != i);
    }

    /// Node `i` stops reading and answering without closing anything (its process is stopped):
    /// frames to it are lost, its timers do not run, the others notice only by timeouts.
    pub fn suspend(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.suspended = true;
        }
    }

    /// Node `i` runs again: its overdue timers fire now.
    pub fn resume(&mut self, i: usize) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.suspended = false;
        n.wake = None;
        let now = self.now;
        if let Some(k) = n.kad.as_mut() {
            k.handle_timeout(now);
            self.flush(i);
        }
    }

    fn with_node(&mut self, i: usize, f: impl FnOnce(&mut Kad, Time)) {
        let now = self.now;
        if let Some(k) = self.nodes.get_mut(i).and_then(|n| n.kad.as_mut()) {
            f(k, now);
            self.flush(i);
        }
    }

    /// Starts a FIND_NODE at node `i`; `None` if `i` is down or has too many lookups running.
    pub fn find_node(&mut self, i: usize, target: NodeId) -> Option<LookupId> {
        let mut id = None;
        self.with_node(i, |k, now| id = k.find_node(now, target).ok());
        id
    }

    /// Starts a FIND_VALUE at node `i`.
    pub fn find_value(&mut self, i: usize, key: NodeId) -> Option<LookupId> {
        let mut id = None;
        self.with_node(i, |k, now| id = k.find_value(now, key).ok());
        id
    }

    /// Node `i` publishes itself as a provider of `key` (and republishes it periodically).
    pub fn publish(&mut self, i: usize, key: NodeId) -> Option<LookupId> {
        let mut id = None;
        self.with_node(i, |k, now| id = k.publish(now, key).ok());
        id
    }

    /// The result of a finished FIND_NODE / FIND_VALUE / bootstrap / refresh lookup.
    pub fn result(&self, i: usize, id: LookupId) -> Option<&LookupResult> {
        self.results.get(&(i, id))
    }

    /// `(holders, attempted)` of a finished publication round.
    pub fn published(&self, i: usize, id: LookupId) -> Option<(usize, usize)> {
        self.published
            .get(&(i, id))
            .map(|r| (r.holders, r.attempted))
    }

    /// The whole outcome of a finished publication round.
    pub fn publish_round(&self, i: usize, id: LookupId) -> Option<&PublishRound> {
        self.published.get(&(i, id))
    }

    /// Virtual time at which lookup `id` of node `i` finished (its result or its publication
    /// round).
    pub fn finished_at(&self, i: usize, id: LookupId) -> Option<Time> {
        self.finished_at.get(&(i, id)).copied()
    }

    /// Publication rounds node `i` has finished (the first one and every republication).
    pub fn publication_rounds(&self, i: usize) -> usize {
        self.published.keys().filter(|(n, _)| *n == i).count()
    }

    /// Drain node `i`'s outputs into the network and re-arm its timer.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let mut sends = Vec::new();
        let Some(k) = self.nodes[i].kad.as_mut() else {
            return;
        };
        while let Some(o) = k.poll_output() {
            match o {
                Output::Send { to, bytes } => sends.push((to.id, bytes)),
                Output::Event(e) => match e {
                    KadEvent::LookupFinished(r) => {
                        // Refresh results are not asked for by anyone: keep memory flat.
                        if !matches!(r.kind, LookupKind::Refresh { .. }) {
                            self.finished_at.insert((i, r.id), now);
                            self.results.insert((i, r.id), r);
                        }
                    }
                    KadEvent::Published {
                        id,
                        holders,
                        attempted,
                        error,
                        ..
                    } => {
                        self.finished_at.insert((i, id), now);
                        let round = PublishRound {
                            holders,
                            attempted,
                            error,
                            at: now,
                        };
                        self.published.insert((i, id), round);
                    }
                    KadEvent::Rejected { .. } => self.stats.rejections += 1,
                    KadEvent::ProviderStored { .. } => self.stats.stores_accepted += 1,
                },
            }
        }
        let wake = k.poll_timeout();
        for (to, bytes) in sends {
            match self.index_of(&to) {
                Some(j) => {
                    let at = now.as_millis() + self.latency(i, j);
                    self.stats.bytes += bytes.len() as u64;
                    self.push(
                        at,
                        Ev::Deliver {
                            to: j,
                            from: i,
                            bytes,
                        },
                    );
                }
                None => self.stats.frames_lost += 1,
            }
        }
        if let Some(t) = wake {
            let t = t.max(now);
            let n = &mut self.nodes[i];
            if n.wake.is_none_or(|w| t < w) {
                n.wake = Some(t);
                self.push(t.as_millis(), Ev::Wake { node: i });
            }
        }
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Runs the network until virtual time `until` (inclusive).
    pub fn run_until(&mut self, until: Time) {
        while let Some(Reverse(top)) = self.queue.peek() {
            if top.at > until.as_millis() {
                break;
            }
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(Time::from_millis(next.at));
            match next.ev {
                Ev::Deliver { to, from, bytes } => {
                    let from_contact = self.nodes[from].contact.clone();
                    let now = self.now;
                    let suspended = self.nodes[to].suspended;
                    match self.nodes[to].kad.as_mut() {
                        Some(k) if !suspended => {
                            self.stats.frames_delivered += 1;
                            k.handle_message(now, &from_contact, &bytes);
                            self.flush(to);
                        }
                        _ => self.stats.frames_lost += 1,
                    }
                }
                Ev::Wake { node } => {
                    if self.nodes[node].suspended {
                        continue; // `resume` runs its timers
                    }
                    if self.nodes[node].wake != Some(self.now) {
                        continue; // superseded by an earlier wake-up
                    }
                    self.nodes[node].wake = None;
                    let now = self.now;
                    if let Some(k) = self.nodes[node].kad.as_mut() {
                        k.handle_timeout(now);
                        self.flush(node);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The `k` live nodes closest to `target`, closest first, leaving out node `exclude` (the
    /// one that looks, which never returns itself).
    pub fn true_closest(&self, target: &NodeId, k: usize, exclude: Option<usize>) -> Vec<NodeId> {
        let mut v: Vec<([u8; ID_LEN], NodeId)> = self
            .alive
            .iter()
            .filter(|&&i| Some(i) != exclude)
            .map(|&i| {
                let id = self.nodes[i].contact.id;
                (id.distance(target), id)
            })
            .collect();
        if v.len() > k {
            v.select_nth_unstable(k);
            v.truncate(k);
        }
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }
}

/// The acceptance run: build a network, check FIND_NODE on it as it is, then publish values and
/// check FIND_VALUE while nodes leave and join.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: usize,
    /// Lookups in each phase (FIND_NODE static, FIND_VALUE under churn).
    pub lookups: usize,
    /// Keys published before the churn phase, each by a different node that stays up.
    pub values: usize,
    /// Fraction of `nodes` that leave during the churn phase, and also the fraction that join.
    pub churn: f64,
    /// Time between two joins while the network is built.
    pub join_gap: Duration,
    /// Time between two lookups in the static phase.
    pub lookup_gap: Duration,
    /// Length of the churn phase; leaves, joins and lookups are spread uniformly over it.
    pub churn_window: Duration,
    pub sim: SimConfig,
}

impl Scenario {
    /// `nodes` nodes, `lookups` lookups per phase, 20% churn over 20 minutes.
    pub fn new(nodes: usize, lookups: usize, seed: u64) -> Scenario {
        Scenario {
            nodes,
            lookups,
            values: (lookups / 10).clamp(1, nodes.max(1)),
            churn: 0.2,
            join_gap: Duration::from_millis(20),
            lookup_gap: Duration::from_millis(10),
            churn_window: Duration::from_secs(20 * 60),
            sim: SimConfig {
                seed,
                ..SimConfig::default()
            },
        }
    }
}

/// Figures of one phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseReport {
    /// Lookups started.
    pub lookups: usize,
    /// Lookups that met the phase's goal (exact result, or value found).
    pub ok: usize,
    /// Lookups with no result by the end of the phase.
    pub unfinished: usize,
    /// Rounds and requests of every finished lookup, sorted.
    pub rounds: Vec<u32>,
    pub requests: Vec<u32>,
}

impl PhaseReport {
    /// Share of lookups that met the goal, in percent.
    pub fn percent_ok(&self) -> f64 {
        if self.lookups == 0 {
            return 100.0;
        }
        100.0 * self.ok as f64 / self.lookups as f64
    }

    fn add(&mut self, r: &LookupResult, ok: bool) {
        self.rounds.push(r.stats.rounds);
        self.requests.push(r.stats.requests);
        if ok {
            self.ok += 1;
        }
    }

    fn sort(&mut self) {
        self.rounds.sort_unstable();
        self.requests.sort_unstable();
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of sorted `v`; 0 when empty.
pub fn percentile(v: &[u32], p: u32) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let rank = (v.len() * p.min(100) as usize).div_ceil(100).max(1);
    v[rank - 1]
}

/// What [`Scenario::run`] measured.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub nodes: usize,
    /// FIND_NODE in the static network; `ok` = the result is exactly the true `k` closest.
    pub static_find_node: PhaseReport,
    /// FIND_VALUE under churn; `ok` = the publisher is among the providers found.
    pub churn_find_value: PhaseReport,
    /// Publication rounds before the churn phase: `(holders, attempted)` summed.
    pub publish_holders: (usize, usize),
    pub left: usize,
    pub joined: usize,
    pub stats: SimStats,
    pub virtual_time: Time,
}

enum ChurnAction {
    Leave(usize),
    Join,
    Lookup,
}

impl Scenario {
    pub fn run(&self) -> ScenarioReport {
        let mut sim = Sim::new(self.sim.clone());
        let k = self.sim.kad.lookup.k;
        let patience = self.sim.kad.request_timeout * 12;
        for _ in 0..self.nodes {
            sim.join();
            sim.run_for(self.join_gap);
        }
        sim.run_for(Duration::from_secs(60));

        // Phase 1: static network, FIND_NODE for random targets from random nodes.
        let mut started = Vec::with_capacity(self.lookups);
        let mut static_report = PhaseReport::default();
        for _ in 0..self.lookups {
            let origin = sim.random_alive();
            let target = sim.random_id();
            static_report.lookups += 1;
            if let Some(id) = sim.find_node(origin, target) {
                started.push((origin, id, target));
            }
            sim.run_for(self.lookup_gap);
        }
        sim.run_for(patience);
        for (origin, id, target) in &started {
            match sim.result(*origin, *id) {
                Some(r) => {
                    let got: Vec<NodeId> = r.closest.iter().map(|c| c.id).collect();
                    let exact = got == sim.true_closest(target, k, Some(*origin));
                    static_report.add(r, exact);
                }
                None => static_report.unfinished += 1,
            }
        }
        static_report.sort();

        // Phase 2: publish values from nodes that will stay.
        let mut stable: HashSet<usize> = HashSet::new();
        let mut values: Vec<(NodeId, NodeId)> = Vec::new(); // (key, publisher)
        let mut rounds = Vec::new();
        for _ in 0..self.values {
            let publisher = sim.random_alive();
            if !stable.insert(publisher) {
                continue;
            }
            let key = sim.random_id();
            if let Some(id) = sim.publish(publisher, key) {
                values.push((key, sim.contact(publisher).id));
                rounds.push((publisher, id));
            }
            sim.run_for(self.lookup_gap);
        }
        sim.run_for(patience);
        let mut publish_holders = (0, 0);
        for (p, id) in rounds {
            if let Some((h, a)) = sim.published(p, id) {
                publish_holders.0 += h;
                publish_holders.1 += a;
            }
        }

        // Phase 3: churn. Leavers are drawn from the nodes that publish nothing.
        let n_churn = (self.nodes as f64 * self.churn).round() as usize;
        let mut candidates: Vec<usize> = sim
            .alive()
            .iter()
            .copied()
            .filter(|i| !stable.contains(i))
            .collect();
        let mut doomed: HashSet<usize> = HashSet::new();
        let window = self.churn_window.as_millis() as u64;
        let mut plan: Vec<(u64, ChurnAction)> = Vec::new();
        for _ in 0..n_churn.min(candidates.len()) {
            let pick = sim.random_below(candidates.len());
            let i = candidates.swap_remove(pick);
            doomed.insert(i);
            plan.push((sim.rng.next_u64() % window.max(1), ChurnAction::Leave(i)));
        }
        for _ in 0..n_churn {
            plan.push((sim.rng.next_u64() % window.max(1), ChurnAction::Join));
        }
        for _ in 0..self.lookups {
            plan.push((sim.rng.next_u64() % window.max(1), ChurnAction::Lookup));
        }
        plan.sort_by_key(|(t, _)| *t);
        let start = sim.now();
        let (mut left, mut joined) = (0, 0);
        let mut finds = Vec::with_capacity(self.lookups);
        let mut churn_report = PhaseReport::default();
        for (offset, action) in plan {
            sim.run_until(start + Duration::from_millis(offset));
            match action {
                ChurnAction::Leave(i) => {
                    sim.leave(i);
                    doomed.remove(&i);
                    left += 1;
                }
                ChurnAction::Join => {
                    sim.join();
                    joined += 1;
                }
                ChurnAction::Lookup => {
                    if values.is_empty() {
                        continue;
                    }
                    // The asker stays up until its answer (a node that leaves takes its lookup
                    // with it, which says nothing about the DHT).
                    let mut origin = sim.random_alive();
                    while doomed.contains(&origin) {
                        origin = sim.random_alive();
                    }
                    let (key, publisher) = values[sim.random_below(values.len())];
                    churn_report.lookups += 1;
                    if let Some(id) = sim.find_value(origin, key) {
                        finds.push((origin, id, publisher));
                    }
                }
            }
        }
        sim.run_for(patience);
        for (origin, id, publisher) in &finds {
            match sim.result(*origin, *id) {
                Some(r) => {
                    let found = r.providers.iter().any(|p| p.contact.id == *publisher);
                    churn_report.add(r, found);
                }
                None => churn_report.unfinished += 1,
            }
        }
        churn_report.sort();
        ScenarioReport {
            nodes: self.nodes,
            static_find_node: static_report,
            churn_find_value: churn_report,
            publish_holders,
            left,
            joined,
            stats: sim.stats(),
            virtual_time: sim.now(),
        }
    }
}

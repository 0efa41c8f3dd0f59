//! The DHT node: [`Kad`] answers RPCs, runs lookups, publishes and holds content references.
//! See the crate docs for the calling rules.

use crate::contact::{
    bucket_index, check_contact, learned_via, random_id_in_bucket, ContactError, ID_BITS,
};
use crate::limit::{Pacer, PacingConfig, RateConfig, RateLimiter, Verdict};
use crate::lookup::{ClosestIter, LookupConfig, LookupStats, Step};
use crate::rtt::{RoundTrips, RttConfig};
use crate::store::{StoreConfig, StoreFull, ValueStore};
use crate::table::{Failure, Insert, RoutingTable, TableConfig};
use crate::token::{TokenCheck, Tokens};
use crate::Time;
use onionmesh_bounded::{BoundedLru, FlatMap, FlatSet};
use onionmesh_wire::kad::{
    Contact, Contacts, KadErrorCode, KadMsg, Provider, Providers, Reason, Token, MAX_CONTACTS,
    MAX_PROVIDERS,
};
use onionmesh_wire::{BridgeAddr, Frame, NodeId, WireError};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;
use thiserror::Error;

/// Tunables of a DHT node. The defaults suit a browser page.
#[derive(Debug, Clone)]
pub struct KadConfig {
    pub table: TableConfig,
    /// `alpha`, `k` of lookups (keep `lookup.k` equal to `table.k`), and their bounds.
    pub lookup: LookupConfig,
    /// A request not answered within this time has failed (the routing table counts a failure
    /// and a late answer is dropped). Generous: a request to a node we have no link to travels
    /// through an introducer or a bridge. Lookups and publications do not wait this long for a
    /// slow peer: see `rtt`.
    pub request_timeout: Duration,
    /// The short, adaptive timeout (from measured round trips, RFC 6298) after which a lookup
    /// stops waiting for a peer and asks the next one (a late answer is still taken until
    /// `request_timeout`), and a STORE is tried again or given up.
    pub rtt: RttConfig,
    /// How fast we send requests to any one peer (below what its rate limiter accepts); requests
    /// beyond that wait in a queue bounded by `max_pending`.
    pub pacing: PacingConfig,
    /// Tries of a STORE that goes unanswered (dropped by a busy holder, or lost) before that
    /// holder is given up on for this round and the next closest node is asked instead.
    pub store_attempts: u8,
    /// Most requests awaiting an answer, all purposes together.
    pub max_pending: usize,
    /// Most lookups running at once (yours, refreshes and republishing together).
    pub max_lookups: usize,
    /// Most publication rounds running at once; further rounds wait their turn in a queue
    /// (one per published key at most), so a burst of publications neither fails nor takes every
    /// lookup slot.
    pub max_publish_lookups: usize,
    /// Most internal refresh lookups running at once.
    pub max_refresh_lookups: usize,
    /// A FIND_VALUE lookup stops once this many holders returned providers, or when it would
    /// stop anyway. 1 (the default) returns as soon as one holder answered with providers: every
    /// holder of a key holds the records of all its providers, so waiting for more holders
    /// mostly waits for the slowest peer.
    pub value_quorum: usize,
    /// TTL of the provider records we publish.
    pub provider_ttl: Duration,
    /// How often we store our provider records again (well within `provider_ttl`, so that nodes
    /// that became the closest to a key since the last time learn it).
    pub republish_interval: Duration,
    /// Most keys we publish.
    pub max_publications: usize,
    pub store: StoreConfig,
    /// STORE tokens rotate this often and live for one to two rotations.
    pub token_rotation: Duration,
    pub rate: RateConfig,
    /// Housekeeping period: expiry, bucket refresh, republishing.
    pub maintenance_interval: Duration,
}

impl Default for KadConfig {
    fn default() -> Self {
        KadConfig {
            table: TableConfig::default(),
            lookup: LookupConfig::default(),
            request_timeout: Duration::from_secs(10),
            rtt: RttConfig::default(),
            pacing: PacingConfig::default(),
            store_attempts: 3,
            max_pending: 512,
            max_lookups: 32,
            max_publish_lookups: 8,
            max_refresh_lookups: 4,
            value_quorum: 1,
            provider_ttl: Duration::from_secs(30 * 60),
            republish_interval: Duration::from_secs(10 * 60),
            max_publications: 256,
            store: StoreConfig::default(),
            token_rotation: Duration::from_secs(5 * 60),
            rate: RateConfig::default(),
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

/// Names a lookup started with [`Kad::find_node`], [`Kad::find_value`], [`Kad::publish`],
/// [`Kad::bootstrap`] or by the node itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub u64);

/// Why a lookup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    FindNode,
    FindValue,
    /// Find the closest nodes to a key, then STORE our provider record there.
    Publish,
    /// Keep bucket `bucket` fresh (a lookup of a random ID in its range).
    Refresh {
        bucket: usize,
    },
    /// The self-lookup that joins the network.
    Bootstrap,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    pub id: LookupId,
    pub kind: LookupKind,
    pub target: NodeId,
    /// Up to `k` nodes that answered, closest to the target first.
    pub closest: Vec<Contact>,
    /// FIND_VALUE only: the providers found, from up to `value_quorum` holders.
    pub providers: Vec<Provider>,
    pub stats: LookupStats,
}

/// Something the node layer (or a test) may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KadEvent {
    LookupFinished(LookupResult),
    /// A publication round ended: `holders` of the `attempted` nodes asked accepted our record.
    /// `error` is `None` when the round reached its goal (see [`PublishError`] for the rule), and
    /// says why not otherwise; the key stays published either way and is tried again at the
    /// next republication.
    Published {
        id: LookupId,
        key: NodeId,
        holders: usize,
        attempted: usize,
        stats: LookupStats,
        error: Option<PublishError>,
    },
    /// We accepted a provider record from another node.
    ProviderStored {
        key: NodeId,
        provider: NodeId,
    },
    /// A message from `from` was refused or dropped, and why.
    Rejected {
        from: NodeId,
        reason: Rejection,
    },
}

/// Why a message was refused. Each one means "that peer misbehaved or is out of date"; the
/// node keeps running.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("malformed Kademlia frame: {0}")]
    Malformed(WireError),
    #[error("unknown Kademlia command 0x{0:02x}")]
    UnknownCommand(u8),
    #[error("{0}")]
    BadContact(ContactError),
    #[error("too many requests: dropping them unanswered until the rate falls")]
    RateLimited,
    #[error("STORE with a token this node never issued to the sender")]
    BadToken,
    #[error("STORE with an expired token; the sender should look the key up again")]
    StaleToken,
    #[error("STORE of a provider record for another node: nobody may sign up someone else")]
    NotSelf,
    #[error("STORE refused: {0}")]
    StoreFull(StoreFull),
    #[error("an answer to no request of ours (request id {rid:#x})")]
    Unsolicited { rid: u64 },
    #[error("an answer of the wrong kind to request {rid:#x}")]
    WrongAnswer { rid: u64 },
    #[error("the peer refused our request: {} ({reason})", code.name())]
    Refused { code: KadErrorCode, reason: String },
}

/// A caller misused the API (as opposed to a peer breaking the protocol).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}; the node's own contact must be valid")]
    BadOwnContact(ContactError),
    #[error("{max} lookups are already running; wait for one to finish")]
    TooManyLookups { max: usize },
    #[error("{max} keys are already published; unpublish one first")]
    TooManyPublications { max: usize },
}

impl ApiError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadOwnContact(_) => "BAD_OWN_CONTACT",
            ApiError::TooManyLookups { .. } => "TOO_MANY_LOOKUPS",
            ApiError::TooManyPublications { .. } => "TOO_MANY_PUBLICATIONS",
        }
    }
}

/// Why a publication round did not reach its goal.
///
/// The rule: a round looks the key up, then STOREs the record at the `k` closest nodes that
/// answered the lookup. A STORE that goes unanswered is sent again (paced, with the adaptive
/// timeout doubled each time) up to `store_attempts` times; a node that refuses, or stays silent
/// through every try, is replaced by the next closest node that answered. The round succeeds
/// when `min(k, nodes that answered)` nodes hold the record, and fails with one of these
/// otherwise. A round never succeeds with no holder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("no node answered the lookup for the key; the DHT is not reachable from here yet (link to a peer or wait for the bridge)")]
    NoNodes,
    #[error("only {holders} of the {wanted} closest nodes stored the record (the others refused or did not answer); it is tried again at the next republication")]
    Incomplete { holders: usize, wanted: usize },
}

impl PublishError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::NoNodes => "PUBLISH_NO_NODES",
            PublishError::Incomplete { .. } => "PUBLISH_INCOMPLETE",
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Deliver `bytes` (one Kademlia frame) to `to`. The contact carries its bridge and
    /// introducers: the node layer sends on a link if it has one, else relays through an
    /// introducer or the bridge (the node's DHT part chooses). If it cannot, it calls
    /// [`Kad::handle_send_failed`]; otherwise silence ends in a timeout.
    Send {
        to: Contact,
        bytes: Vec<u8>,
    },
    Event(KadEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup(LookupId),
    /// A STORE of a publication round; `attempt` counts from 1.
    Store {
        lookup: LookupId,
        attempt: u8,
    },
    /// Checking a questionable entry of a full bucket; `attempt` counts from 1.
    Ping {
        attempt: u8,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    to: NodeId,
    purpose: Purpose,
    /// When it was sent; `None` while it waits for the pacer (in `Kad::queued`).
    sent: Option<Time>,
    /// When the request counts as slow (the adaptive timeout), then when it has failed.
    slow_at: Time,
    deadline: Time,
    /// Past `slow_at`: no longer awaited, but a late answer is still taken.
    slow: bool,
}

/// How one STORE of a publication round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreOutcome {
    Stored,
    /// An ERROR answer, or an answer of the wrong kind.
    Refused,
    /// No answer within the adaptive timeout: try again while attempts remain.
    Silent,
    /// The node layer could not route it, or the long timeout passed.
    Failed,
}

#[derive(Debug, Clone)]
struct StorePhase {
    /// Nodes that answered the lookup and were not asked yet, closest first, with the token
    /// each gave us: the ones that replace a holder that refuses or stays silent.
    spare: VecDeque<(Contact, Token)>,
    /// Nodes asked and not done yet: their contact, token and the attempts made.
    asking: FlatMap<NodeId, (Contact, Token, u8)>,
    /// `min(k, nodes that answered)`: the holders the round wants.
    wanted: usize,
    holders: usize,
    attempted: usize,
}

#[derive(Debug, Clone)]
struct Lookup {
    kind: LookupKind,
    iter: ClosestIter,
    /// STORE tokens from the nodes that answered (at most `max_requests` of them).
    tokens: FlatMap<NodeId, Token>,
    providers: Vec<Provider>,
    holders: usize,
    store: Option<StorePhase>,
}

/// Recently timed-out request ids, so a late answer is dropped quietly instead of being
/// reported as unsolicited.
const RECENT_TIMEOUTS: usize = 128;

/// Most peers remembered as linked ([`Kad::set_linked`]); more than a node ever holds links.
pub const MAX_LINKED: usize = 256;

/// One DHT node. See the crate docs for the calling rules.
pub struct Kad {
    me: Contact,
    cfg: KadConfig,
    rng: ChaCha20Rng,
    table: RoutingTable,
    store: ValueStore,
    tokens: Tokens,
    limiter: RateLimiter,
    pacer: Pacer,
    rtt: RoundTrips,
    pending: FlatMap<u64, Pending>,
    /// Requests waiting for the pacer, in order (each also in `pending`, with `sent: None`).
    queued: VecDeque<(u64, Contact, Vec<u8>)>,
    /// When to try the queue again, while it is not empty.
    next_pump: Option<Time>,
    /// Publication rounds waiting for a lookup slot, at most one per published key.
    rounds: VecDeque<(LookupId, NodeId)>,
    recent_timeouts: BoundedLru<u64, ()>,
    pinging: FlatSet<NodeId>,
    /// Peers the node layer holds an authenticated link to, at most [`MAX_LINKED`]: an answer
    /// names this node as their first introducer.
    linked: FlatSet<NodeId>,
    /// Buckets waiting for a refresh lookup (at most [`ID_BITS`]): the join's buckets farther
    /// than our closest neighbour, and stale ones. Started farthest first, at most
    /// `max_refresh_lookups` at once.
    refresh_due: FlatSet<usize>,
    lookups: FlatMap<LookupId, Lookup>,
    publications: FlatMap<NodeId, Time>,
    next_lookup: u64,
    next_maintenance: Time,
    out: VecDeque<Output>,
}

impl Kad {
    /// A node whose own contact is `me` (its ID must be the hash of its public key). `seed` feeds
    /// its RNG (request ids, token secrets, refresh targets): 32 bytes from the OS RNG in a
    /// driver, a fixed value in a simulation.
    pub fn new(me: Contact, cfg: KadConfig, seed: [u8; 32], now: Time) -> Result<Kad, ApiError> {
        check_contact(&me).map_err(ApiError::BadOwnContact)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let tokens = Tokens::new(now, cfg.token_rotation, &mut rng);
        Ok(Kad {
            table: RoutingTable::new(me.id, cfg.table.clone(), now),
            store: ValueStore::new(cfg.store.clone()),
            limiter: RateLimiter::new(cfg.rate.clone(), now),
            pacer: Pacer::new(cfg.pacing.clone()),
            rtt: RoundTrips::new(cfg.rtt.clone()),
            tokens,
            rng,
            pending: FlatMap::new(),
            queued: VecDeque::new(),
            next_pump: None,
            rounds: VecDeque::new(),
            recent_timeouts: BoundedLru::new(RECENT_TIMEOUTS),
            pinging: FlatSet::new(),
            linked: FlatSet::new(),
            refresh_due: FlatSet::new(),
            lookups: FlatMap::new(),
            publications: FlatMap::new(),
            next_lookup: 1,
            next_maintenance: now + cfg.maintenance_interval,
            out: VecDeque::new(),
            me,
            cfg,
        })
    }

    pub fn me(&self) -> &Contact {
        &self.me
    }

    pub fn id(&self) -> &NodeId {
        &self.me.id
    }

    /// Change our bridge address or introducers (what we publish about ourselves). The ID and
    /// key cannot change.
    pub fn set_reachability(&mut self, bridge: Option<BridgeAddr>, introducers: Vec<NodeId>) {
        self.me.bridge = bridge;
        let own = self.me.id;
        self.me.introducers.clear();
        crate::contact::merge_introducers(&mut self.me.introducers, &introducers, &own);
    }

    /// The node layer now holds (`true`) or no longer holds an authenticated link to `peer`.
    /// While it does, every `Nodes` or `Value` answer that names `peer` lists this node first
    /// among `peer`'s introducers: the asker learns that this node can relay to `peer` *now*
    /// (the spec's `[IDx]`, "a list of peers that can perform the introduction to N"), which a
    /// contact it merely knows of would not tell. Beyond [`MAX_LINKED`] peers, new ones are
    /// not marked.
    pub fn set_linked(&mut self, peer: NodeId, linked: bool) {
        if !linked {
            self.linked.remove(&peer);
        } else if self.linked.len() < MAX_LINKED {
            self.linked.insert(peer);
        }
    }

    /// The `n` contacts closest to `target` for an answer to `asker`, those we are linked to
    /// with us as their first introducer.
    fn answer_contacts(&self, target: &NodeId, n: usize, asker: &NodeId) -> Contacts {
        let mut contacts = self.table.closest(target, n, Some(asker));
        for c in &mut contacts {
            if self.linked.contains(&c.id) {
                let own = c.id;
                crate::contact::merge_introducers(&mut c.introducers, &[self.me.id], &own);
            }
        }
        // `n` is at most MAX_CONTACTS, so nothing is cut here.
        Contacts::truncating(contacts)
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn store(&self) -> &ValueStore {
        &self.store
    }

    pub fn config(&self) -> &KadConfig {
        &self.cfg
    }

    /// Requests awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Lookups running (including publications in their STORE phase).
    pub fn running_lookups(&self) -> usize {
        self.lookups.len()
    }

    /// Publication rounds waiting for a lookup slot (see `KadConfig::max_publish_lookups`).
    pub fn waiting_publications(&self) -> usize {
        self.rounds.len()
    }

    /// Requests held back by pacing (see `KadConfig::pacing`); they are part of
    /// [`Kad::pending_requests`].
    pub fn paced_requests(&self) -> usize {
        self.queued.len()
    }

    /// Measured round trips to peers, and the adaptive timeout derived from them.
    pub fn round_trips(&self) -> &RoundTrips {
        &self.rtt
    }

    /// Next output for the driver, in order. Drain it after every `handle_*` / API call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Kad::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let earliest_request = self
            .pending
            .values()
            .filter(|p| p.sent.is_some())
            .map(|p| if p.slow { p.deadline } else { p.slow_at })
            .min();
        let mut t = self.next_maintenance;
        for other in [earliest_request, self.next_pump].into_iter().flatten() {
            t = t.min(other);
        }
        Some(t)
    }

    /// A contact learned out of band (from the bridge's `FoundPeer`, or a link that opened).
    /// It enters the routing table if its bucket has room.
    pub fn add_contact(&mut self, now: Time, contact: &Contact) -> Result<(), ContactError> {
        check_contact(contact)?;
        self.table.on_heard_of(now, contact);
        Ok(())
    }

    /// Join the network: add `seeds` (a few nodes from the bridge) and look up our own ID, which
    /// fills the buckets near us and makes our neighbours learn about us.
    pub fn bootstrap(&mut self, now: Time, seeds: &[Contact]) -> Result<LookupId, ApiError> {
        let mut valid = Vec::new();
        for s in seeds {
            if check_contact(s).is_ok() && s.id != self.me.id {
                self.table.on_heard_of(now, s);
                valid.push(s.clone());
            }
        }
        let target = self.me.id;
        self.start_lookup(now, LookupKind::Bootstrap, target, valid)
    }

    /// Find the `k` nodes closest to `target`; ends with [`KadEvent::LookupFinished`].
    pub fn find_node(&mut self, now: Time, target: NodeId) -> Result<LookupId, ApiError> {
        self.start_lookup(now, LookupKind::FindNode, target, Vec::new())
    }

    /// Find providers of `key`; ends with [`KadEvent::LookupFinished`] carrying the providers.
    pub fn find_value(&mut self, now: Time, key: NodeId) -> Result<LookupId, ApiError> {
        self.start_lookup(now, LookupKind::FindValue, key, Vec::new())
    }

    /// Announce that we provide `key`: store our record at the `k` closest nodes now and every
    /// `republish_interval` until [`Kad::unpublish`]. Each round ends with one
    /// [`KadEvent::Published`] carrying the returned id, which says whether the round reached
    /// its goal (see [`PublishError`]). At most `max_publish_lookups` rounds run at once; the
    /// others wait their turn (publishing a key whose round is still waiting returns that
    /// round's id), and their requests are paced below the holders' rate limits, so a burst of
    /// publications is spread out rather than dropped.
    ///
    /// Errors: [`ApiError::TooManyPublications`] if `max_publications` other keys are
    /// published.
    pub fn publish(&mut self, now: Time, key: NodeId) -> Result<LookupId, ApiError> {
        if !self.publications.contains_key(&key)
            && self.publications.len() >= self.cfg.max_publications
        {
            return Err(ApiError::TooManyPublications {
                max: self.cfg.max_publications,
            });
        }
        self.publications
            .insert(key, now + self.cfg.republish_interval);
        let id = self.queue_round(key);
        self.start_rounds(now);
        Ok(id)
    }

    /// Stop republishing `key`. The records already stored expire with their TTL; a round
    /// that waits for its turn is dropped without an event.
    pub fn unpublish(&mut self, key: &NodeId) -> bool {
        self.rounds.retain(|(_, k)| k != key);
        self.publications.remove(key).is_some()
    }

    /// Queue a publication round for `key` (or find the one already waiting).
    fn queue_round(&mut self, key: NodeId) -> LookupId {
        if let Some((id, _)) = self.rounds.iter().find(|(_, k)| *k == key) {
            return *id;
        }
        let id = self.next_lookup_id();
        self.rounds.push_back((id, key));
        id
    }

    /// Start waiting publication rounds while lookup slots allow.
    fn start_rounds(&mut self, now: Time) {
        loop {
            let running = self
                .lookups
                .values()
                .filter(|l| l.kind == LookupKind::Publish)
                .count();
            if running >= self.cfg.max_publish_lookups.max(1)
                || self.lookups.len() >= self.cfg.max_lookups
            {
                return;
            }
            let Some((id, key)) = self.rounds.pop_front() else {
                return;
            };
            self.start_lookup_as(now, id, LookupKind::Publish, key, Vec::new());
        }
    }

    fn next_lookup_id(&mut self) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        id
    }

    fn start_lookup(
        &mut self,
        now: Time,
        kind: LookupKind,
        target: NodeId,
        extra_seeds: Vec<Contact>,
    ) -> Result<LookupId, ApiError> {
        if self.lookups.len() >= self.cfg.max_lookups {
            return Err(ApiError::TooManyLookups {
                max: self.cfg.max_lookups,
            });
        }
        let id = self.next_lookup_id();
        self.start_lookup_as(now, id, kind, target, extra_seeds);
        Ok(id)
    }

    /// Starts lookup `id` (the caller checked the lookup limit).
    fn start_lookup_as(
        &mut self,
        now: Time,
        id: LookupId,
        kind: LookupKind,
        target: NodeId,
        extra_seeds: Vec<Contact>,
    ) {
        let mut seeds = self.table.closest(&target, self.cfg.lookup.k, None);
        seeds.extend(extra_seeds);
        let iter = ClosestIter::new(self.me.id, target, self.cfg.lookup.clone(), seeds);
        let mut lookup = Lookup {
            kind,
            iter,
            tokens: FlatMap::new(),
            providers: Default::default(),
            holders: 0,
            store: None,
        };
        if kind == LookupKind::FindValue {
            // We may hold the value ourselves: that counts as one holder.
            let local = self.store.get(now, &target, MAX_PROVIDERS);
            if !local.is_empty() {
                lookup.providers = local;
                lookup.holders = 1;
            }
        }
        self.lookups.insert(id, lookup);
        self.drive(now, id);
    }

    /// One Kademlia frame arrived from `from`. The node layer vouches for `from`: it is the
    /// authenticated peer of the link (or relay circuit) the frame came on, with the bridge and
    /// introducers the node layer knows for it.
    pub fn handle_message(&mut self, now: Time, from: &Contact, bytes: &[u8]) {
        if from.id == self.me.id {
            return;
        }
        if let Err(e) = check_contact(from) {
            self.reject(from.id, Rejection::BadContact(e));
            return;
        }
        let msg = match KadMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.reject(from.id, Rejection::Malformed(e));
                return;
            }
        };
        if let KadMsg::Unrecognized { cmd, .. } = msg {
            self.reject(from.id, Rejection::UnknownCommand(cmd));
        } else if msg.is_request() {
            self.on_request(now, from, msg);
        } else {
            self.on_answer(now, from, msg);
            self.settle(now);
        }
    }

    /// The node layer could not deliver a frame to `to` (no link, no introducer, bridge down):
    /// every request to it fails now instead of timing out.
    pub fn handle_send_failed(&mut self, now: Time, to: &NodeId) {
        let rids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to == *to)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in rids {
            self.on_request_failed(now, rid);
        }
        self.settle(now);
    }

    /// The timer from [`Kad::poll_timeout`] fired (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.is_some() && p.deadline <= now)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in expired {
            self.recent_timeouts.insert(rid, ());
            self.on_request_failed(now, rid);
        }
        let slow: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.is_some() && !p.slow && p.slow_at <= now)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in slow {
            self.on_slow(now, rid);
        }
        if now >= self.next_maintenance {
            self.maintain(now);
            self.next_maintenance = now + self.cfg.maintenance_interval;
        }
        self.settle(now);
    }

    /// After every input: start publication rounds that have room, send what pacing allows.
    fn settle(&mut self, now: Time) {
        self.start_rounds(now);
        self.start_refreshes(now);
        if self.next_pump.is_some_and(|t| t <= now) {
            self.pump(now);
        }
    }

    /// Sends the queued requests the pacer lets through now, in order per peer.
    fn pump(&mut self, now: Time) {
        self.next_pump = None;
        let mut blocked: FlatSet<NodeId> = FlatSet::new();
        let mut keep = VecDeque::with_capacity(self.queued.len());
        while let Some((rid, to, bytes)) = self.queued.pop_front() {
            let Some(p) = self.pending.get(&rid) else {
                continue; // failed meanwhile (the node layer reported it unroutable)
            };
            let lookup = match p.purpose {
                Purpose::Lookup(lid) | Purpose::Store { lookup: lid, .. } => Some(lid),
                Purpose::Ping { .. } => None,
            };
            if lookup.is_some_and(|lid| !self.lookups.contains_key(&lid)) {
                // Its lookup finished while it waited (FIND_VALUE found the value): drop it.
                self.pending.remove(&rid);
                continue;
            }
            if blocked.contains(&to.id) || !self.pacer.try_send(now, &to.id) {
                blocked.insert(to.id);
                keep.push_back((rid, to, bytes));
                continue;
            }
            self.mark_sent(now, rid);
            self.out.push_back(Output::Send { to, bytes });
        }
        if !keep.is_empty() {
            self.next_pump = Some(now + self.pacer.retry_after());
        }
        self.queued = keep;
    }

    /// Request `rid` leaves now: its timeouts start.
    fn mark_sent(&mut self, now: Time, rid: u64) {
        let Some(p) = self.pending.get_mut(&rid) else {
            return;
        };
        let deadline = now + self.cfg.request_timeout;
        p.slow_at = match p.purpose {
            Purpose::Lookup(_) => now + self.rtt.timeout(&p.to),
            Purpose::Store { attempt, .. } => now + self.rtt.backed_off(&p.to, attempt),
            // Checking a questionable entry is no hurry: only the long timeout.
            Purpose::Ping { .. } => deadline,
        };
        p.slow_at = p.slow_at.min(deadline);
        p.deadline = deadline;
        p.sent = Some(now);
    }

    /// Request `rid` passed its adaptive timeout.
    fn on_slow(&mut self, now: Time, rid: u64) {
        let Some(p) = self.pending.get_mut(&rid) else {
            return;
        };
        match p.purpose {
            Purpose::Lookup(lid) => {
                // Stop waiting, but keep the request until `deadline` for a late answer.
                p.slow = true;
                let peer = p.to;
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.iter.on_unresponsive(&peer);
                    self.drive(now, lid);
                }
            }
            Purpose::Store { lookup, attempt } => {
                // Given up: a retry is a new request (a late answer to this one is dropped
                // quietly, and a STORE is idempotent at the holder).
                let peer = p.to;
                self.pending.remove(&rid);
                self.recent_timeouts.insert(rid, ());
                self.store_done(now, lookup, peer, attempt, StoreOutcome::Silent);
            }
            Purpose::Ping { .. } => p.slow = true,
        }
    }

    fn maintain(&mut self, now: Time) {
        self.store.expire(now);
        self.tokens.rotate(now, &mut self.rng);
        self.refresh_due.extend(self.table.stale_buckets(now));
        let due: Vec<NodeId> = self
            .publications
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.queue_round(key);
            self.publications
                .insert(key, now + self.cfg.republish_interval);
        }
    }

    /// Start refresh lookups for due buckets, farthest first, while the refresh and lookup
    /// limits allow. A bucket refreshed meanwhile by a lookup of its own is still looked up:
    /// the lookup also tells the nodes there about us.
    fn start_refreshes(&mut self, now: Time) {
        let mut refreshing = self
            .lookups
            .values()
            .filter(|l| matches!(l.kind, LookupKind::Refresh { .. }))
            .count();
        while refreshing < self.cfg.max_refresh_lookups && self.lookups.len() < self.cfg.max_lookups
        {
            let Some(j) = self.refresh_due.pop_last() else {
                return;
            };
            let target = random_id_in_bucket(&self.me.id, j, &mut self.rng);
            self.table.mark_refreshed(j, now);
            if self
                .start_lookup(now, LookupKind::Refresh { bucket: j }, target, Vec::new())
                .is_ok()
            {
                refreshing += 1;
            }
        }
    }

    /// The join's last step (Kademlia, section 2.3): after the self-lookup, refresh every
    /// bucket farther than our closest neighbour. The self-lookup only meets nodes near our ID;
    /// without this, the far buckets (half and a quarter of the network) stay nearly empty
    /// until the 15-minute refresh, and a node with an empty far bucket answers lookups for keys
    /// over there with nodes on its own side only, which can lead a lookup (or a publication)
    /// to a wrong set of nodes. The refreshes also put us in the far nodes' tables.
    /// `closest`: the nodes that answered the self-lookup, closest first.
    fn schedule_join_refresh(&mut self, closest: &[Contact]) {
        let Some(nearest) = closest.first() else {
            return; // nobody answered: refreshing would only ask the same silent seeds
        };
        let Some(b) = bucket_index(&self.me.id, &nearest.id) else {
            return;
        };
        self.refresh_due.extend(b + 1..ID_BITS);
    }

    fn reject(&mut self, from: NodeId, reason: Rejection) {
        self.out
            .push_back(Output::Event(KadEvent::Rejected { from, reason }));
    }

    fn send(&mut self, to: Contact, msg: &KadMsg) {
        self.out.push_back(Output::Send {
            to,
            bytes: msg.encode_frame(),
        });
    }

    /// Sends a request now, or queues it behind the pacer; false if too many are pending
    /// already.
    fn request(
        &mut self,
        now: Time,
        to: Contact,
        purpose: Purpose,
        make: impl FnOnce(u64) -> KadMsg,
    ) -> bool {
        if self.pending.len() >= self.cfg.max_pending {
            return false;
        }
        let mut rid = self.rng.next_u64();
        while self.pending.contains_key(&rid) {
            rid = self.rng.next_u64();
        }
        self.pending.insert(
            rid,
            Pending {
                to: to.id,
                purpose,
                sent: None,
                slow_at: now,
                deadline: now,
                slow: false,
            },
        );
        let bytes = make(rid).encode_frame();
        // Keep each peer's requests in order: behind its queued ones, if any.
        let behind = self.queued.iter().any(|(_, c, _)| c.id == to.id);
        if !behind && self.pacer.try_send(now, &to.id) {
            self.mark_sent(now, rid);
            self.out.push_back(Output::Send { to, bytes });
        } else {
            self.queued.push_back((rid, to, bytes));
            if self.next_pump.is_none() {
                self.next_pump = Some(now + self.pacer.retry_after());
            }
        }
        true
    }

    /// The table saw `contact`; ping a questionable entry if that makes room for it.
    fn after_insert(&mut self, now: Time, outcome: Insert) {
        if let Insert::Full { ping: Some(old) } = outcome {
            self.ping(now, old, 1);
        }
    }

    fn ping(&mut self, now: Time, to: Contact, attempt: u8) {
        if attempt == 1 && !self.pinging.insert(to.id) {
            return; // already being checked
        }
        let id = to.id;
        if !self.request(now, to, Purpose::Ping { attempt }, |rid| KadMsg::Ping {
            rid,
        }) {
            self.pinging.remove(&id);
        }
    }

    fn on_request(&mut self, now: Time, from: &Contact, msg: KadMsg) {
        match self.limiter.check(now, &from.id) {
            Verdict::Allow => {}
            Verdict::Deny { first } => {
                // Dropped unanswered: an ERROR would cost us as much as an answer. Reported once
                // per burst so that a flood cannot flood the event queue either.
                if first {
                    self.reject(from.id, Rejection::RateLimited);
                }
                return;
            }
        }
        let outcome = self.table.on_query(now, from);
        self.after_insert(now, outcome);
        self.tokens.rotate(now, &mut self.rng);
        let n = self.cfg.table.k.min(MAX_CONTACTS);
        let reply = match msg {
            KadMsg::Ping { rid } => KadMsg::Pong { rid },
            KadMsg::FindNode { rid, target } => KadMsg::Nodes {
                rid,
                token: self.tokens.issue(&from.id),
                contacts: self.answer_contacts(&target, n, &from.id),
            },
            KadMsg::FindValue { rid, key } => {
                let token = self.tokens.issue(&from.id);
                // Both lists are asked for at most their wire maximum: nothing is cut here.
                let contacts = self.answer_contacts(&key, n, &from.id);
                let providers = Providers::truncating(self.store.get(now, &key, MAX_PROVIDERS));
                if providers.is_empty() {
                    KadMsg::Nodes {
                        rid,
                        token,
                        contacts,
                    }
                } else {
                    KadMsg::Value {
                        rid,
                        token,
                        providers,
                        contacts,
                    }
                }
            }
            KadMsg::Store {
                rid,
                key,
                token,
                provider,
            } => self.on_store(now, from, rid, key, token, provider),
            _ => return, // `is_request` admitted only the four above
        };
        self.send(from.clone(), &reply);
    }

    fn on_store(
        &mut self,
        now: Time,
        from: &Contact,
        rid: u64,
        key: NodeId,
        token: Token,
        provider: Provider,
    ) -> KadMsg {
        let refusal = |code: KadErrorCode, reason: &Rejection| KadMsg::Error {
            rid,
            code,
            // Our own sentence, for the peer's log: shortened rather than not sent.
            reason: Reason::lossy(&reason.to_string()),
        };
        let (code, why) = match self.tokens.check(&from.id, &token) {
            TokenCheck::Valid => {
                if provider.contact.id != from.id {
                    (KadErrorCode::NOT_SELF, Rejection::NotSelf)
                } else if let Err(e) = check_contact(&provider.contact) {
                    (KadErrorCode::BAD_CONTACT, Rejection::BadContact(e))
                } else {
                    let ttl = Duration::from_secs(u64::from(provider.ttl_secs));
                    match self.store.put(now, key, &provider.contact, ttl) {
                        Ok(()) => {
                            self.out.push_back(Output::Event(KadEvent::ProviderStored {
                                key,
                                provider: from.id,
                            }));
                            return KadMsg::StoreOk { rid };
                        }
                        Err(full) => (KadErrorCode::STORE_FULL, Rejection::StoreFull(full)),
                    }
                }
            }
            TokenCheck::Stale => (KadErrorCode::STALE_TOKEN, Rejection::StaleToken),
            TokenCheck::Bad => (KadErrorCode::BAD_TOKEN, Rejection::BadToken),
        };
        let reply = refusal(code, &why);
        self.reject(from.id, why);
        reply
    }

    fn on_answer(&mut self, now: Time, from: &Contact, msg: KadMsg) {
        let Some(rid) = msg.rid() else { return };
        match self.pending.get(&rid) {
            Some(p) if p.to == from.id && p.sent.is_some() => {}
            _ => {
                if !self.recent_timeouts.contains_key(&rid) {
                    self.reject(from.id, Rejection::Unsolicited { rid });
                }
                return;
            }
        }
        let Some(p) = self.pending.remove(&rid) else {
            return;
        };
        let fits = matches!(
            (&p.purpose, &msg),
            (Purpose::Ping { .. }, KadMsg::Pong { .. })
                | (Purpose::Lookup(_), KadMsg::Nodes { .. })
                | (Purpose::Lookup(_), KadMsg::Value { .. })
                | (Purpose::Store { .. }, KadMsg::StoreOk { .. })
                | (_, KadMsg::Error { .. })
        );
        if let Some(sent) = p.sent {
            // Late answers too: that is how a timeout that was too short grows.
            self.rtt
                .on_sample(&from.id, Duration::from_millis(now.since(sent)));
        }
        if !fits {
            self.reject(from.id, Rejection::WrongAnswer { rid });
            self.table.on_failure(now, &from.id);
            self.purpose_failed(now, from.id, p.purpose);
            return;
        }
        let outcome = self.table.on_answer(now, from);
        self.after_insert(now, outcome);
        match (p.purpose, msg) {
            (Purpose::Ping { .. }, _) => {
                self.pinging.remove(&from.id);
            }
            (Purpose::Store { lookup, attempt }, KadMsg::Error { code, reason, .. }) => {
                let reason = reason.into_string();
                self.reject(from.id, Rejection::Refused { code, reason });
                self.store_done(now, lookup, from.id, attempt, StoreOutcome::Refused);
            }
            (purpose, KadMsg::Error { code, reason, .. }) => {
                let reason = reason.into_string();
                self.reject(from.id, Rejection::Refused { code, reason });
                self.purpose_failed(now, from.id, purpose);
            }
            (
                Purpose::Lookup(lid),
                KadMsg::Nodes {
                    token, contacts, ..
                },
            ) => {
                self.lookup_answer(now, lid, from, token, Vec::new(), contacts.into_vec());
            }
            (
                Purpose::Lookup(lid),
                KadMsg::Value {
                    token,
                    providers,
                    contacts,
                    ..
                },
            ) => self.lookup_answer(
                now,
                lid,
                from,
                token,
                providers.into_vec(),
                contacts.into_vec(),
            ),
            (Purpose::Store { lookup, attempt }, _) => {
                self.store_done(now, lookup, from.id, attempt, StoreOutcome::Stored);
            }
            _ => {}
        }
    }

    fn lookup_answer(
        &mut self,
        now: Time,
        lid: LookupId,
        from: &Contact,
        token: Token,
        providers: Vec<Provider>,
        contacts: Vec<Contact>,
    ) {
        let mut bad = None;
        let mut closer = Vec::with_capacity(contacts.len());
        for c in contacts {
            match check_contact(&c) {
                Ok(()) => {
                    let c = learned_via(c, &from.id);
                    self.table.on_route(&c);
                    closer.push(c);
                }
                Err(e) => bad = Some(e),
            }
        }
        let quorum = self.cfg.value_quorum.max(1);
        let Some(l) = self.lookups.get_mut(&lid) else {
            return; // finished meanwhile
        };
        l.tokens.insert(from.id, token);
        if l.kind == LookupKind::FindValue && !providers.is_empty() {
            let mut any = false;
            for p in providers {
                if check_contact(&p.contact).is_err() {
                    continue;
                }
                any = true;
                if l.providers.len() < MAX_PROVIDERS
                    && !l.providers.iter().any(|q| q.contact.id == p.contact.id)
                {
                    let p = Provider {
                        contact: learned_via(p.contact, &from.id),
                        ttl_secs: p.ttl_secs,
                    };
                    l.providers.push(p);
                }
            }
            if any {
                l.holders += 1;
            }
        }
        l.iter.on_success(&from.id, closer);
        if l.holders >= quorum {
            l.iter.finish();
        }
        if let Some(e) = bad {
            self.reject(from.id, Rejection::BadContact(e));
        }
        self.drive(now, lid);
    }

    /// One STORE of round `lid` to `peer` ended: count it, try again or ask a spare node, and
    /// end the round once nobody is being asked.
    fn store_done(
        &mut self,
        now: Time,
        lid: LookupId,
        peer: NodeId,
        attempt: u8,
        outcome: StoreOutcome,
    ) {
        let max_attempts = self.cfg.store_attempts.max(1);
        let Some(phase) = self.lookups.get_mut(&lid).and_then(|l| l.store.as_mut()) else {
            return;
        };
        let Some((contact, token, _)) = phase.asking.remove(&peer) else {
            return; // an answer to an attempt we had given up on
        };
        match outcome {
            StoreOutcome::Stored => phase.holders += 1,
            StoreOutcome::Silent if attempt < max_attempts => {
                // (If even the retry cannot be queued, `fill_stores` below moves on.)
                self.send_store(now, lid, contact, token, attempt + 1);
            }
            StoreOutcome::Silent => {
                // Silent through every try: count it against the node, as a timeout would.
                self.table.on_failure(now, &peer);
            }
            StoreOutcome::Refused | StoreOutcome::Failed => {}
        }
        self.fill_stores(now, lid);
    }

    /// Ask spare nodes until the round asks or holds as many as it wants; end it when nobody is
    /// being asked any more.
    fn fill_stores(&mut self, now: Time, lid: LookupId) {
        loop {
            let Some(phase) = self.lookups.get_mut(&lid).and_then(|l| l.store.as_mut()) else {
                return;
            };
            if phase.holders + phase.asking.len() >= phase.wanted {
                break;
            }
            let Some((contact, token)) = phase.spare.pop_front() else {
                break;
            };
            phase.attempted += 1;
            self.send_store(now, lid, contact, token, 1);
        }
        let done = self
            .lookups
            .get(&lid)
            .and_then(|l| l.store.as_ref())
            .is_some_and(|p| p.asking.is_empty());
        if done {
            self.finish_publication(lid);
        }
    }

    /// Attempt `attempt` of our STORE at `to`; if it cannot even be queued (too many requests
    /// pending), that node is done with for this round.
    fn send_store(&mut self, now: Time, lid: LookupId, to: Contact, token: Token, attempt: u8) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let Some(phase) = l.store.as_mut() else {
            return;
        };
        phase.asking.insert(to.id, (to.clone(), token, attempt));
        let key = *l.iter.target();
        let provider = Provider {
            contact: self.me.clone(),
            ttl_secs: u32::try_from(self.cfg.provider_ttl.as_secs()).unwrap_or(u32::MAX),
        };
        let id = to.id;
        let purpose = Purpose::Store {
            lookup: lid,
            attempt,
        };
        let sent = self.request(now, to, purpose, |rid| KadMsg::Store {
            rid,
            key,
            token,
            provider,
        });
        if !sent {
            if let Some(phase) = self.lookups.get_mut(&lid).and_then(|l| l.store.as_mut()) {
                phase.asking.remove(&id);
            }
        }
    }

    fn finish_publication(&mut self, lid: LookupId) {
        if let Some(l) = self.lookups.remove(&lid) {
            let (holders, attempted, wanted) = l
                .store
                .as_ref()
                .map_or((0, 0, 0), |p| (p.holders, p.attempted, p.wanted));
            let error = if wanted == 0 {
                Some(PublishError::NoNodes)
            } else if holders < wanted {
                Some(PublishError::Incomplete { holders, wanted })
            } else {
                None
            };
            self.out.push_back(Output::Event(KadEvent::Published {
                id: lid,
                key: *l.iter.target(),
                holders,
                attempted,
                stats: l.iter.stats(),
                error,
            }));
        }
    }

    fn on_request_failed(&mut self, now: Time, rid: u64) {
        let Some(p) = self.pending.remove(&rid) else {
            return;
        };
        let failure = self.table.on_failure(now, &p.to);
        if let Purpose::Ping { attempt } = p.purpose {
            // BEP 5: a questionable node that fails is tried once more before it is replaced.
            match (failure, self.table.get(&p.to).cloned()) {
                (Failure::Counted { .. }, Some(c)) => self.ping(now, c, attempt.saturating_add(1)),
                _ => {
                    self.pinging.remove(&p.to);
                }
            }
            return;
        }
        self.purpose_failed(now, p.to, p.purpose);
    }

    fn purpose_failed(&mut self, now: Time, peer: NodeId, purpose: Purpose) {
        match purpose {
            Purpose::Lookup(lid) => {
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.iter.on_failure(&peer);
                    self.drive(now, lid);
                }
            }
            Purpose::Store { lookup, attempt } => {
                self.store_done(now, lookup, peer, attempt, StoreOutcome::Failed);
            }
            Purpose::Ping { .. } => {
                self.pinging.remove(&peer);
            }
        }
    }

    /// Sends whatever the lookup wants sent; finishes it when it is done.
    fn drive(&mut self, now: Time, lid: LookupId) {
        loop {
            let Some(l) = self.lookups.get_mut(&lid) else {
                return;
            };
            if l.store.is_some() {
                return; // in its STORE phase
            }
            let target = *l.iter.target();
            let kind = l.kind;
            match l.iter.next_step() {
                Step::Query(peer) => {
                    let id = peer.id;
                    let sent = self.request(now, peer, Purpose::Lookup(lid), |rid| {
                        if kind == LookupKind::FindValue {
                            KadMsg::FindValue { rid, key: target }
                        } else {
                            KadMsg::FindNode { rid, target }
                        }
                    });
                    if !sent {
                        if let Some(l) = self.lookups.get_mut(&lid) {
                            l.iter.on_failure(&id);
                        }
                    }
                }
                Step::Waiting => return,
                Step::Finished => {
                    self.finish_lookup(now, lid);
                    return;
                }
            }
        }
    }

    fn finish_lookup(&mut self, now: Time, lid: LookupId) {
        let Some(mut l) = self.lookups.remove(&lid) else {
            return;
        };
        let closest = l.iter.closest();
        if l.kind == LookupKind::Bootstrap {
            self.schedule_join_refresh(&closest);
        }
        if l.kind == LookupKind::Publish {
            // Every node that answered, closest first, with its token: the k closest are asked
            // first, the others replace any of them that refuses or stays silent.
            let spare: VecDeque<(Contact, Token)> = l
                .iter
                .answered()
                .into_iter()
                .filter_map(|c| l.tokens.get(&c.id).map(|t| (c, *t)))
                .collect();
            l.store = Some(StorePhase {
                wanted: spare.len().min(self.cfg.lookup.k.max(1)),
                spare,
                asking: FlatMap::new(),
                holders: 0,
                attempted: 0,
            });
            self.lookups.insert(lid, l);
            self.fill_stores(now, lid);
            return;
        }
        self.out
            .push_back(Output::Event(KadEvent::LookupFinished(LookupResult {
                id: lid,
                kind: l.kind,
                target: *l.iter.target(),
                closest,
                providers: l.providers,
                stats: l.iter.stats(),
            })));
    }
}

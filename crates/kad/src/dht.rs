//! The DHT node: [`Kad`] answers RPCs, runs lookups, publishes and holds content references.
//! See the crate docs for the calling rules.

use crate::contact::{check_contact, learned_via, random_id_in_bucket, ContactError};
use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::lookup::{ClosestIter, LookupConfig, LookupStats, Step};
use crate::store::{StoreConfig, StoreFull, ValueStore};
use crate::table::{Failure, Insert, RoutingTable, TableConfig};
use crate::token::{TokenCheck, Tokens};
use crate::Time;
use onionmesh_bounded::BoundedLru;
use onionmesh_wire::kad::{
    Contact, KadErrorCode, KadMsg, Provider, Token, MAX_CONTACTS, MAX_PROVIDERS,
};
use onionmesh_wire::{Frame, NodeId, WireError};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use thiserror::Error;

/// Tunables of a DHT node. The defaults suit a browser page.
#[derive(Debug, Clone)]
pub struct KadConfig {
    pub table: TableConfig,
    /// `alpha`, `k` of lookups (keep `lookup.k` equal to `table.k`), and their bounds.
    pub lookup: LookupConfig,
    /// A request not answered within this time has failed. Generous by default: a request to a
    /// node we have no link to travels through an introducer, or waits for a new link.
    pub request_timeout: Duration,
    /// Most requests awaiting an answer, all purposes together.
    pub max_pending: usize,
    /// Most lookups running at once (yours, refreshes and republishing together).
    pub max_lookups: usize,
    /// Most internal refresh lookups running at once.
    pub max_refresh_lookups: usize,
    /// A FIND_VALUE lookup stops once this many holders returned providers (so the download is
    /// not performed only from the first peer found), or when it would stop anyway.
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
            max_pending: 512,
            max_lookups: 32,
            max_refresh_lookups: 4,
            value_quorum: 3,
            provider_ttl: Duration::from_secs(30 * 60),
            republish_interval: Duration::from_secs(10 * 60),
            max_publications: 64,
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
    /// A publication round ended: `holders` of the `attempted` closest nodes accepted our record.
    Published {
        id: LookupId,
        key: NodeId,
        holders: usize,
        attempted: usize,
        stats: LookupStats,
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
    Store(LookupId),
    /// Checking a questionable entry of a full bucket; `attempt` counts from 1.
    Ping {
        attempt: u8,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    to: NodeId,
    deadline: Time,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
struct StorePhase {
    waiting: usize,
    holders: usize,
    attempted: usize,
}

#[derive(Debug, Clone)]
struct Lookup {
    kind: LookupKind,
    iter: ClosestIter,
    /// STORE tokens from the nodes that answered (at most `max_requests` of them).
    tokens: BTreeMap<NodeId, Token>,
    providers: Vec<Provider>,
    holders: usize,
    store: Option<StorePhase>,
}

/// Recently timed-out request ids, so a late answer is dropped quietly instead of being
/// reported as unsolicited.
const RECENT_TIMEOUTS: usize = 128;

/// One DHT node. See the crate docs for the calling rules.
pub struct Kad {
    me: Contact,
    cfg: KadConfig,
    rng: ChaCha20Rng,
    table: RoutingTable,
    store: ValueStore,
    tokens: Tokens,
    limiter: RateLimiter,
    pending: BTreeMap<u64, Pending>,
    recent_timeouts: BoundedLru<u64, ()>,
    pinging: BTreeSet<NodeId>,
    lookups: BTreeMap<LookupId, Lookup>,
    publications: BTreeMap<NodeId, Time>,
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
            tokens,
            rng,
            pending: BTreeMap::new(),
            recent_timeouts: BoundedLru::new(RECENT_TIMEOUTS),
            pinging: BTreeSet::new(),
            lookups: BTreeMap::new(),
            publications: BTreeMap::new(),
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
    pub fn set_reachability(&mut self, bridge: String, introducers: Vec<NodeId>) {
        self.me.bridge = bridge;
        let own = self.me.id;
        self.me.introducers.clear();
        crate::contact::merge_introducers(&mut self.me.introducers, &introducers, &own);
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

    /// Next output for the driver, in order. Drain it after every `handle_*` / API call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Kad::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let earliest_request = self.pending.values().map(|p| p.deadline).min();
        Some(earliest_request.map_or(self.next_maintenance, |t| t.min(self.next_maintenance)))
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
    /// `republish_interval` until [`Kad::unpublish`]. Each round ends with
    /// [`KadEvent::Published`].
    pub fn publish(&mut self, now: Time, key: NodeId) -> Result<LookupId, ApiError> {
        if !self.publications.contains_key(&key)
            && self.publications.len() >= self.cfg.max_publications
        {
            return Err(ApiError::TooManyPublications {
                max: self.cfg.max_publications,
            });
        }
        let id = self.start_lookup(now, LookupKind::Publish, key, Vec::new())?;
        self.publications
            .insert(key, now + self.cfg.republish_interval);
        Ok(id)
    }

    /// Stop republishing `key`. The records already stored expire with their TTL.
    pub fn unpublish(&mut self, key: &NodeId) -> bool {
        self.publications.remove(key).is_some()
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
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let mut seeds = self.table.closest(&target, self.cfg.lookup.k, None);
        seeds.extend(extra_seeds);
        let iter = ClosestIter::new(self.me.id, target, self.cfg.lookup.clone(), seeds);
        let mut lookup = Lookup {
            kind,
            iter,
            tokens: BTreeMap::new(),
            providers: Vec::new(),
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
        Ok(id)
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
    }

    /// The timer from [`Kad::poll_timeout`] fired (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Time) {
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in expired {
            self.recent_timeouts.insert(rid, ());
            self.on_request_failed(now, rid);
        }
        if now >= self.next_maintenance {
            self.maintain(now);
            self.next_maintenance = now + self.cfg.maintenance_interval;
        }
    }

    fn maintain(&mut self, now: Time) {
        self.store.expire(now);
        self.tokens.rotate(now, &mut self.rng);
        let mut refreshing = self
            .lookups
            .values()
            .filter(|l| matches!(l.kind, LookupKind::Refresh { .. }))
            .count();
        for j in self.table.stale_buckets(now) {
            if refreshing >= self.cfg.max_refresh_lookups
                || self.lookups.len() >= self.cfg.max_lookups
            {
                break;
            }
            let target = random_id_in_bucket(&self.me.id, j, &mut self.rng);
            self.table.mark_refreshed(j, now);
            if self
                .start_lookup(now, LookupKind::Refresh { bucket: j }, target, Vec::new())
                .is_ok()
            {
                refreshing += 1;
            }
        }
        let due: Vec<NodeId> = self
            .publications
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if self
                .start_lookup(now, LookupKind::Publish, key, Vec::new())
                .is_err()
            {
                break; // no room now; the next maintenance tick tries again
            }
            self.publications
                .insert(key, now + self.cfg.republish_interval);
        }
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

    /// Sends a request; false if too many are pending already.
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
                deadline: now + self.cfg.request_timeout,
                purpose,
            },
        );
        let msg = make(rid);
        self.send(to, &msg);
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
                contacts: self.table.closest(&target, n, Some(&from.id)),
            },
            KadMsg::FindValue { rid, key } => {
                let token = self.tokens.issue(&from.id);
                let contacts = self.table.closest(&key, n, Some(&from.id));
                let providers = self.store.get(now, &key, MAX_PROVIDERS);
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
            reason: reason.to_string(),
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
            Some(p) if p.to == from.id => {}
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
                | (Purpose::Store(_), KadMsg::StoreOk { .. })
                | (_, KadMsg::Error { .. })
        );
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
            (purpose, KadMsg::Error { code, reason, .. }) => {
                self.reject(from.id, Rejection::Refused { code, reason });
                self.purpose_failed(now, from.id, purpose);
            }
            (
                Purpose::Lookup(lid),
                KadMsg::Nodes {
                    token, contacts, ..
                },
            ) => {
                self.lookup_answer(now, lid, from, token, Vec::new(), contacts);
            }
            (
                Purpose::Lookup(lid),
                KadMsg::Value {
                    token,
                    providers,
                    contacts,
                    ..
                },
            ) => self.lookup_answer(now, lid, from, token, providers, contacts),
            (Purpose::Store(lid), _) => self.store_answered(lid, true),
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

    fn store_answered(&mut self, lid: LookupId, ok: bool) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let Some(phase) = l.store.as_mut() else {
            return;
        };
        phase.waiting = phase.waiting.saturating_sub(1);
        if ok {
            phase.holders += 1;
        }
        if phase.waiting == 0 {
            self.finish_publication(lid);
        }
    }

    fn finish_publication(&mut self, lid: LookupId) {
        if let Some(l) = self.lookups.remove(&lid) {
            let phase = l.store.unwrap_or(StorePhase {
                waiting: 0,
                holders: 0,
                attempted: 0,
            });
            self.out.push_back(Output::Event(KadEvent::Published {
                id: lid,
                key: *l.iter.target(),
                holders: phase.holders,
                attempted: phase.attempted,
                stats: l.iter.stats(),
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
            Purpose::Store(lid) => self.store_answered(lid, false),
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
        if l.kind == LookupKind::Publish {
            let key = *l.iter.target();
            let provider = Provider {
                contact: self.me.clone(),
                ttl_secs: u32::try_from(self.cfg.provider_ttl.as_secs()).unwrap_or(u32::MAX),
            };
            let mut phase = StorePhase {
                waiting: 0,
                holders: 0,
                attempted: 0,
            };
            let targets: Vec<(Contact, Token)> = closest
                .into_iter()
                .filter_map(|c| l.tokens.get(&c.id).map(|t| (c, *t)))
                .collect();
            for (c, token) in targets {
                let provider = provider.clone();
                let sent = self.request(now, c, Purpose::Store(lid), |rid| KadMsg::Store {
                    rid,
                    key,
                    token,
                    provider,
                });
                if sent {
                    phase.waiting += 1;
                    phase.attempted += 1;
                }
            }
            let done = phase.waiting == 0;
            l.store = Some(phase);
            self.lookups.insert(lid, l);
            if done {
                self.finish_publication(lid);
            }
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

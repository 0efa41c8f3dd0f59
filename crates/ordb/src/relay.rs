//! The ORDB function (sans-IO): serve what this node holds, otherwise relay the query to an ORDB
//! that knows a holder, otherwise ask the DHT for providers; and advertise what it holds.
//!
//! Spec: Peersm, "DHT and Bridges", "Content discovery", "Requests", "Handling the lists in the
//! ORDBs". The parts:
//!
//! - **Serving.** A `DB_QUERY` arrives on a stream whose last hop is this node
//!   ([`RelayInput::Query`], from an opaque [`RequestId`]). If every piece asked for is held, the
//!   pieces are read from the store one at a time ([`RelayOutput::Store`], completions come back
//!   as [`RelayInput::Store`]) and answered as `DB_PROOF` + `DB_DATA` from the asked offset; a
//!   `count = 0` query is answered with the descriptor (`DB_CONNECTED`).
//! - **Relaying.** Otherwise the query goes on, its counter plus one, over one of this node's own
//!   circuits to another ORDB ([`RelayOutput::Forward`]), chosen from the OR_files (or
//!   OR_streams) list of that hash_name: the first entry whose circuit is up and not dropped,
//!   which then moves to the end (rotation), among the best-placed ones: ORDBs that advertised
//!   the whole content first, then those holding a share, then those that only passed a
//!   reference on (each relaying step adds a circuit to the path of every byte; measured
//!   2026-12-01, in a five-page mesh, five to nine data-channel crossings per downloaded byte
//!   before this preference). The answers come back as [`RelayInput::Upstream`]
//!   and are passed down unchanged ([`RelayOutput::Reply`]). Later queries of the same request
//!   stream for the same hash_name use the same upstream stream (a pipe).
//! - **Finding.** With no usable entry, the node asks the DHT for providers
//!   ([`RelayOutput::FindProviders`]); the driver runs `FIND_VALUE`, builds circuits to what it
//!   finds and reports them ([`RelayInput::Providers`]); they join the list and the parked
//!   queries go on. Nothing found: the query goes to a facilitator (an ORDB that advertised with
//!   the F flag, which can fetch from outside the mesh), else `DB_END UNAVAILABLE`.
//! - **Facilitating (issue 10).** A `DB_SOURCE` on a request stream ([`RelayInput::Source`]:
//!   a magnet link or a web URL) is remembered for that stream; a query forwarded for it
//!   carries it along (sent first on the new upstream stream: [`RelayOutput::Forward`]'s
//!   `source`). When the mesh has nobody (no list entry and the DHT search found no provider
//!   or facilitator ORDB, or every forward ended unavailable) and the stream carried a
//!   `DB_SOURCE` for that content, the query goes to this node's bridge, the facilitator
//!   ([`RelayOutput::Facilitate`]); its answers come back as [`RelayInput::Upstream`] like any
//!   forward's and are relayed unchanged, and its `DB_END` (with its sentence) ends the
//!   request. First on the stream goes a `DB_INFO` with the F flag for that hash_name, and a
//!   relay passes such a `DB_INFO` on from upstream: the requester learns that the bytes come
//!   from outside the mesh (not which ORDB or bridge fetched them). The bridge sees this node,
//!   never the requester; and since a node's own downloads never go through its relay (they
//!   use circuits to other ORDBs), a relay never facilitates for its own node. At most
//!   [`RelayConfig::max_facilitated`] at once.
//! - **Loops.** A query whose counter has reached 5 is answered `DB_END LOOP`.
//! - **Advertising.** When held content crosses 25/50/75/100 %, a `DB_INFO` (with F if this node
//!   is a facilitator) goes to every neighbour ORDB ([`RelayOutput::SendInfo`]); at 25 % the
//!   node also becomes a DHT provider ([`RelayOutput::Provide`]). A `DB_INFO` received about a
//!   hash_name new to this node is passed on, once, only to neighbours not known to have it
//!   (not the sender, not one already told, not one listed as holding it): no flooding. A
//!   reference passed on carries the R flag (`InfoFlags::REFERENCE`): this node relays for it,
//!   it does not hold it.
//! - **Free riders.** An ORDB that accepts forwarded queries but answers nothing (or says
//!   `UNAVAILABLE` for a content it advertised holding whole: one that advertised a share may
//!   lack the pieces asked for) collects strikes; at
//!   [`RelayConfig::free_rider_strikes`] it is dropped from every list and never chosen again
//!   this session ([`RelayEvent::FreeRiderDropped`]).
//!
//! Every table is bounded ([`RelayConfig`]); past a bound a query is answered `DB_END BUSY`, an
//! advert or a list entry is dropped. Relayed bytes are not verified here (the requester verifies
//! every piece against the root); served bytes were verified before they were stored.
//!
//! Calling rules: feed inputs with [`Relay::handle_input`], drain [`Relay::poll_output`] after
//! each, and feed [`RelayInput::Timeout`] at [`Relay::poll_timeout`].

use std::collections::VecDeque;
use std::time::Duration;

use onionmesh_bounded::{BoundedLru, FlatMap, FlatSet, TokenBucket};
use onionmesh_wire::db::{
    Completion, DataSlice, DbEnd, DbEndReason, DbInfo, DbMsg, DbQuery, DbSource, DescriptorSlice,
    HashName, InfoFlags, ProofPart, MAX_COUNTER,
};
use onionmesh_wire::Time;

use crate::content::{Descriptor, PieceRecord};
use crate::store::{StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest};

/// The caller's handle for a request stream that ends at this node (it arrived over a circuit;
/// the relay never learns from whom).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// The caller's handle for a circuit from this node to another ORDB (a neighbour, or a provider
/// found in the DHT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrdbCirc(pub u64);

/// A query this node forwarded; allocated by the relay. The first [`RelayOutput::Forward`] with
/// a given id opens a stream on its circuit; later ones with the same id use that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelayId(pub u64);

/// Store operations issued by the relay have this bit set in their [`StoreOpId`], so a driver
/// that also issues its own can route completions by id.
pub const RELAY_STORE_OP_BIT: u64 = 1 << 63;

/// Limits and policy of the ORDB function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// This node fetches from outside the mesh (the F flag of its adverts).
    pub facilitator: bool,
    /// hash_names remembered in OR_files, and again in OR_streams (least recently used go).
    pub max_names: usize,
    /// Entries per hash_name in a list.
    pub max_entries_per_name: usize,
    /// Circuits to other ORDBs tracked.
    pub max_circuits: usize,
    /// Contents held that are served and advertised.
    pub max_held: usize,
    /// Request streams being served or relayed at once.
    pub max_sessions: usize,
    /// Queries queued per request stream.
    pub max_queued_per_session: usize,
    /// Forwarded queries at once.
    pub max_relays: usize,
    /// DHT provider searches at once, and queries parked per search.
    pub max_finds: usize,
    pub max_parked_per_find: usize,
    /// Pieces one query may ask for.
    pub max_pieces_per_query: u16,
    /// A forwarded query unanswered this long costs its ORDB a strike and goes elsewhere.
    pub forward_timeout: Duration,
    /// A pipe (or a served request) idle this long is closed.
    pub idle_timeout: Duration,
    /// A provider search with no answer this long fails.
    pub find_timeout: Duration,
    /// ORDBs tried per query before giving up.
    pub max_attempts: usize,
    /// Strikes before an ORDB is dropped as a free rider.
    pub free_rider_strikes: u8,
    /// Queries accepted per second, and in a burst, over all request streams.
    pub queries_per_sec: u32,
    pub query_burst: u32,
    /// Requests handed to this node's bridge (the facilitator) at once.
    pub max_facilitated: usize,
    /// A facilitated request unanswered this long fails (a facilitator may first have to
    /// find a torrent's peers and metadata, or fetch a web file's headers).
    pub facilitate_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            facilitator: false,
            max_names: 4096,
            max_entries_per_name: 16,
            max_circuits: 256,
            max_held: 4096,
            max_sessions: 64,
            max_queued_per_session: 4,
            max_relays: 128,
            max_finds: 32,
            max_parked_per_find: 16,
            max_pieces_per_query: 64,
            forward_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            find_timeout: Duration::from_secs(30),
            max_attempts: 3,
            free_rider_strikes: 3,
            queries_per_sec: 200,
            query_burst: 400,
            max_facilitated: 16,
            facilitate_timeout: Duration::from_secs(60),
        }
    }
}

/// What the driver tells the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayInput {
    /// A `DB_QUERY` arrived on request stream `from` (this node is the stream's last hop).
    Query { from: RequestId, query: DbQuery },
    /// A `DB_SOURCE` arrived on request stream `from`: where its content can be fetched from
    /// outside the mesh (remembered for the stream; see "Facilitating" in the module docs).
    Source { from: RequestId, source: DbSource },
    /// That request stream closed.
    RequestClosed(RequestId),
    /// What the driver queued on request stream `to` passed its high-water mark (`writable:
    /// false`: the stream's flow control holds it back), or drained below it again (`true`).
    /// While a stream is not writable, no further piece is read from the store or sent for it
    /// (pieces already read wait, at most four of them), so what this node queues
    /// for a slow reader stays bounded by the mark plus that many pieces. (Relayed answers
    /// are held back by the driver, which stops reading the upstream stream; see
    /// [`Relay::forwarded_for`].)
    Writable { to: RequestId, writable: bool },
    /// A circuit to another ORDB is up. `neighbour`: an ORDB this node is connected to (adverts
    /// go to neighbours); otherwise a circuit built to a provider.
    CircuitUp { circ: OrdbCirc, neighbour: bool },
    /// That circuit closed.
    CircuitDown(OrdbCirc),
    /// A `DB_INFO` arrived from a neighbour ORDB.
    Info { from: OrdbCirc, info: DbInfo },
    /// A message arrived on the stream of a forwarded query.
    Upstream { relay: RelayId, msg: DbMsg },
    /// The stream of a forwarded query closed (or could not open).
    UpstreamClosed(RelayId),
    /// Answer to [`RelayOutput::FindProviders`]: circuits the driver built to providers of
    /// `hash_name` (empty when none was found).
    Providers {
        hash_name: HashName,
        circs: Vec<OrdbCirc>,
    },
    /// This node holds (part of) a content: its descriptor and the pieces stored. Sent at start
    /// for every stored content, after a publish, and when a download learns its descriptor.
    Hold {
        descriptor: Box<Descriptor>,
        pieces: Vec<u32>,
    },
    /// A piece of a held content was stored.
    PieceStored { hash_name: HashName, index: u32 },
    /// A content was removed from the store.
    Forget(HashName),
    /// A store operation the relay issued finished.
    Store(StoreCompletion),
    /// The timer armed for [`Relay::poll_timeout`] fired.
    Timeout,
}

/// What the relay asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutput {
    /// Send on request stream `to`. A `DB_END` ends that stream: close it after sending.
    Reply { to: RequestId, msg: DbMsg },
    /// Send `query` on the stream of forwarded query `relay` over circuit `via` (open the stream,
    /// to the ORDB service at the circuit's last hop, the first time this id is seen). `source`
    /// (only on the first `Forward` of an id, when the request carried a `DB_SOURCE`): send it
    /// on the new stream before the query.
    Forward {
        relay: RelayId,
        via: OrdbCirc,
        query: DbQuery,
        source: Option<DbSource>,
    },
    /// Hand `query` to this node's bridge, the facilitator (issue 10): the first time `relay`
    /// is seen, send `source` then `query` as `SignalMsg::Facilitate` under a new request
    /// number; later, only the query under the same number. Answers come back as
    /// [`RelayInput::Upstream`]; a bridge that closes the request (or is not connected) is
    /// [`RelayInput::UpstreamClosed`]. Close it with [`RelayOutput::CancelForward`].
    Facilitate {
        relay: RelayId,
        source: DbSource,
        query: DbQuery,
    },
    /// Close the stream of forwarded query `relay` (or the facilitated request).
    CancelForward(RelayId),
    /// Send a `DB_INFO` to a neighbour ORDB.
    SendInfo { to: OrdbCirc, info: DbInfo },
    /// Look up providers of `hash_name` in the DHT (`FIND_VALUE`), build circuits to them and
    /// answer with [`RelayInput::Providers`].
    FindProviders(HashName),
    /// Publish this node as a provider of `hash_name` in the DHT (`STORE` at the k closest).
    Provide(HashName),
    /// Carry out a store operation and feed its completion back as [`RelayInput::Store`].
    Store {
        id: StoreOpId,
        request: StoreRequest,
    },
    /// Something for the log or the page.
    Event(RelayEvent),
}

/// Table sizes, for the page's Network section and for tests of the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Contents held (served and advertised).
    pub held: usize,
    /// hash_names in OR_files and in OR_streams.
    pub file_names: usize,
    pub stream_names: usize,
    /// The longest list of ORDBs for one hash_name.
    pub longest_list: usize,
    /// Circuits to other ORDBs known, and of those, neighbours.
    pub circuits: usize,
    pub neighbours: usize,
    /// ORDBs dropped as free riders this session.
    pub banned: usize,
    /// Request streams being served or relayed, forwarded queries, provider searches.
    pub sessions: usize,
    pub relays: usize,
    pub finds: usize,
    /// Queries parked waiting for provider searches.
    pub parked: usize,
    /// Store reads outstanding: at most [`READ_AHEAD`] per session, so at most
    /// `max_sessions` times that.
    pub reads: usize,
}

/// Things worth telling a person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// A piece of held content was served.
    Served { hash_name: HashName, index: u32 },
    /// A query was refused or could not be answered.
    Refused {
        hash_name: HashName,
        reason: DbEndReason,
        sentence: String,
    },
    /// An ORDB accepted queries but never answered: dropped from every list for the session.
    FreeRiderDropped(OrdbCirc),
    /// The store failed while serving.
    StoreFailed(StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    circ: OrdbCirc,
    /// `None` for a provider found in the DHT (its share is not known).
    completion: Option<Completion>,
    flags: InfoFlags,
}

impl Entry {
    /// Which entries a query goes to first (lowest first; in list order, which rotates, within
    /// one rank). 0: an ORDB that advertised holding the whole content, which serves every
    /// piece itself. 1: one that holds a share (an advert below 100 %, or a DHT provider), which
    /// relays on for the pieces it lacks. 2: one that only passed a reference on (the R flag),
    /// which relays every query on. Each relaying step adds a whole circuit to the path of
    /// every byte of the answer, so the others are tried only when no better entry is usable.
    fn path_rank(&self) -> u8 {
        if self.flags.contains(InfoFlags::REFERENCE) {
            2
        } else if self.completion == Some(Completion::Full) {
            0
        } else {
            1
        }
    }

    /// It advertised holding all of the content itself (an ORDB that then says it has nothing
    /// is a free rider).
    fn claims_whole(&self) -> bool {
        self.path_rank() == 0
    }
}

#[derive(Debug)]
struct CircState {
    neighbour: bool,
    strikes: u8,
}

#[derive(Debug)]
struct Held {
    descriptor: Descriptor,
    have: Vec<bool>,
    count: u32,
    advertised: Option<Completion>,
    provided: bool,
}

impl Held {
    fn completion(&self) -> Option<Completion> {
        Completion::from_fraction(u64::from(self.count), self.have.len() as u64)
    }
    fn holds(&self, first: u32, count: u16) -> bool {
        (first..first.saturating_add(u32::from(count)))
            .all(|i| self.have.get(i as usize).copied().unwrap_or(false))
    }
}

#[derive(Debug)]
struct ServeJob {
    hash_name: HashName,
    next: u32,
    end: u32,
    offset: u32,
}

/// One piece being read from the store for a session; `result` once the store answered.
#[derive(Debug)]
struct PendingRead {
    id: StoreOpId,
    hash_name: HashName,
    index: u32,
    offset: u32,
    result: Option<Result<StoreReply, StoreError>>,
}

/// Pieces read from the store at once per request stream. A page's store is IndexedDB, where
/// each read is a transaction of some milliseconds to hundreds on a busy machine; reading one
/// piece at a time made that latency the serving rate's limit (measured 2026-11-30: about
/// 0.8 s from query to first byte through a 3-hop circuit). Bounds the pieces held per session
/// to this many.
const READ_AHEAD: usize = 4;

#[derive(Debug, Default)]
struct Session {
    jobs: VecDeque<ServeJob>,
    /// Store reads started for this session, in the order their pieces are sent (at most
    /// [`READ_AHEAD`]).
    reading: VecDeque<PendingRead>,
    /// The driver's queue for this stream is past its high-water mark.
    blocked: bool,
    pipe: Option<RelayId>,
    last_activity: Option<Time>,
    /// The stream's `DB_SOURCE`, if it sent one.
    source: Option<DbSource>,
}

#[derive(Debug)]
struct Forwarded {
    to: RequestId,
    /// The ORDB's circuit; `None`: this node's bridge, the facilitator.
    via: Option<OrdbCirc>,
    hash_name: HashName,
    /// The query as received (counter not yet incremented), to retry elsewhere.
    query: DbQuery,
    answered: bool,
    sent_at: Time,
    last_activity: Time,
    tried: Vec<OrdbCirc>,
    searched: bool,
}

#[derive(Debug)]
struct Find {
    started: Time,
    parked: Vec<(RequestId, DbQuery, Vec<OrdbCirc>)>,
}

/// The ORDB function of one node.
pub struct Relay {
    config: RelayConfig,
    queries: TokenBucket,
    held: FlatMap<HashName, Held>,
    or_files: BoundedLru<HashName, Vec<Entry>>,
    or_streams: BoundedLru<HashName, Vec<Entry>>,
    /// Neighbours told about (or known to know) each hash_name.
    told: BoundedLru<HashName, Vec<OrdbCirc>>,
    circuits: FlatMap<OrdbCirc, CircState>,
    banned: BoundedLru<OrdbCirc, ()>,
    /// ORDBs that advertised with the F flag, in rotation order.
    facilitators: VecDeque<OrdbCirc>,
    sessions: FlatMap<RequestId, Session>,
    relays: FlatMap<RelayId, Forwarded>,
    finds: FlatMap<HashName, Find>,
    reads: FlatMap<StoreOpId, RequestId>,
    next_relay: u64,
    next_op: u64,
    out: VecDeque<RelayOutput>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("held", &self.held.len())
            .field("sessions", &self.sessions.len())
            .field("relays", &self.relays.len())
            .finish_non_exhaustive()
    }
}

/// Most adverts sent to a new neighbour about what this node holds.
const MAX_ADVERTS_TO_NEW_NEIGHBOUR: usize = 256;

impl Relay {
    pub fn new(now: Time, config: RelayConfig) -> Relay {
        Relay {
            queries: TokenBucket::new(now, config.query_burst, config.queries_per_sec),
            held: FlatMap::new(),
            or_files: BoundedLru::new(config.max_names),
            or_streams: BoundedLru::new(config.max_names),
            told: BoundedLru::new(config.max_names),
            circuits: FlatMap::new(),
            banned: BoundedLru::new(config.max_circuits * 4),
            facilitators: VecDeque::new(),
            sessions: FlatMap::new(),
            relays: FlatMap::new(),
            finds: FlatMap::new(),
            reads: FlatMap::new(),
            next_relay: 0,
            next_op: 0,
            out: VecDeque::new(),
            config,
        }
    }

    /// The next action.
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.out.pop_front()
    }

    /// The 25 % step of `hash_name` this node holds, if it holds at least a quarter.
    pub fn held_completion(&self, hash_name: &HashName) -> Option<Completion> {
        self.held.get(hash_name).and_then(Held::completion)
    }

    /// Table sizes.
    pub fn stats(&self) -> RelayStats {
        let longest = |l: &BoundedLru<HashName, Vec<Entry>>| l.iter().map(|(_, v)| v.len()).max();
        RelayStats {
            held: self.held.len(),
            file_names: self.or_files.len(),
            stream_names: self.or_streams.len(),
            longest_list: longest(&self.or_files)
                .max(longest(&self.or_streams))
                .unwrap_or(0),
            circuits: self.circuits.len(),
            neighbours: self.circuits.values().filter(|c| c.neighbour).count(),
            banned: self.banned.len(),
            sessions: self.sessions.len(),
            relays: self.relays.len(),
            finds: self.finds.len(),
            parked: self.finds.values().map(|f| f.parked.len()).sum(),
            reads: self.reads.len(),
        }
    }

    /// The hash_names of the contents held.
    pub fn held_names(&self) -> impl Iterator<Item = HashName> + '_ {
        self.held.keys().copied()
    }

    /// The descriptor of a held content and the pieces held.
    pub fn held(&self, hash_name: &HashName) -> Option<(&Descriptor, Vec<u32>)> {
        self.held.get(hash_name).map(|h| {
            let pieces = (0..h.have.len() as u32)
                .filter(|i| h.have[*i as usize])
                .collect();
            (&h.descriptor, pieces)
        })
    }

    /// Whether every piece `first..end` of `hash_name` is held (stored).
    pub fn holds_all(&self, hash_name: &HashName, first: u32, end: u32) -> bool {
        self.held
            .get(hash_name)
            .is_some_and(|h| (first..end).all(|i| h.have.get(i as usize).copied().unwrap_or(false)))
    }

    /// Pieces held of `hash_name` and pieces in all, if it is held.
    pub fn held_count(&self, hash_name: &HashName) -> Option<(u32, u32)> {
        self.held
            .get(hash_name)
            .map(|h| (h.count, h.have.len() as u32))
    }

    /// The request stream a forwarded query answers to, while it is under way: a driver that
    /// holds back relayed answers for a stream that is not writable stops reading that
    /// forwarded query's upstream stream.
    pub fn forwarded_for(&self, relay: RelayId) -> Option<RequestId> {
        self.relays.get(&relay).map(|r| r.to)
    }

    /// The ORDBs listed for `hash_name` (OR_files then OR_streams), in rotation order.
    pub fn listed(&self, hash_name: &HashName) -> Vec<OrdbCirc> {
        let files = self.or_files.peek(hash_name).into_iter().flatten();
        let streams = self.or_streams.peek(hash_name).into_iter().flatten();
        files.chain(streams).map(|e| e.circ).collect()
    }

    /// When to feed [`RelayInput::Timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        let c = &self.config;
        let relays = self.relays.values().map(|r| {
            if r.answered {
                r.last_activity + c.idle_timeout
            } else if r.via.is_none() {
                r.sent_at + c.facilitate_timeout
            } else {
                r.sent_at + c.forward_timeout
            }
        });
        let finds = self.finds.values().map(|f| f.started + c.find_timeout);
        let sessions = self
            .sessions
            .values()
            .filter_map(|s| s.last_activity.map(|t| t + c.idle_timeout));
        relays.chain(finds).chain(sessions).min()
    }

    pub fn handle_input(&mut self, now: Time, input: RelayInput) {
        match input {
            RelayInput::Query { from, query } => self.on_query(now, from, query),
            RelayInput::Source { from, source } => self.on_source(now, from, source),
            RelayInput::RequestClosed(from) => self.close_session(from, false),
            RelayInput::Writable { to, writable } => {
                if let Some(s) = self.sessions.get_mut(&to) {
                    s.blocked = !writable;
                    if writable {
                        self.kick(to);
                    }
                }
            }
            RelayInput::CircuitUp { circ, neighbour } => self.circuit_up(circ, neighbour),
            RelayInput::CircuitDown(circ) => {
                self.circuits.remove(&circ);
                // Lists keep the entry (the spec does not re-sort lists when circuits break);
                // a dead circuit is skipped when choosing.
                let dead: Vec<RelayId> = self
                    .relays
                    .iter()
                    .filter(|(_, r)| r.via == Some(circ))
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    self.upstream_failed(now, id, false);
                }
            }
            RelayInput::Info { from, info } => self.on_info(from, info),
            RelayInput::Upstream { relay, msg } => self.on_upstream(now, relay, msg),
            RelayInput::UpstreamClosed(relay) => self.upstream_failed(now, relay, false),
            RelayInput::Providers { hash_name, circs } => self.on_providers(now, hash_name, circs),
            RelayInput::Hold { descriptor, pieces } => self.hold(*descriptor, pieces),
            RelayInput::PieceStored { hash_name, index } => {
                if let Some(h) = self.held.get_mut(&hash_name) {
                    if let Some(slot) = h.have.get_mut(index as usize) {
                        if !*slot {
                            *slot = true;
                            h.count += 1;
                        }
                    }
                    self.advertise(hash_name);
                }
            }
            RelayInput::Forget(hash_name) => {
                self.held.remove(&hash_name);
            }
            RelayInput::Store(c) => self.on_store(now, c),
            RelayInput::Timeout => self.on_timeout(now),
        }
    }

    fn circuit_up(&mut self, circ: OrdbCirc, neighbour: bool) {
        if self.banned.contains_key(&circ) {
            return;
        }
        if !self.circuits.contains_key(&circ) && self.circuits.len() >= self.config.max_circuits {
            return;
        }
        let state = self.circuits.entry(circ).or_insert(CircState {
            neighbour: false,
            strikes: 0,
        });
        let newly_neighbour = neighbour && !state.neighbour;
        state.neighbour |= neighbour;
        if newly_neighbour {
            // Tell a new neighbour what this node holds (bounded).
            let adverts: Vec<DbInfo> = self
                .held
                .iter()
                .filter_map(|(h, held)| {
                    held.advertised.map(|c| DbInfo {
                        hash_name: *h,
                        completion: c,
                        flags: self.own_flags(),
                    })
                })
                .take(MAX_ADVERTS_TO_NEW_NEIGHBOUR)
                .collect();
            for info in adverts {
                self.note_told(info.hash_name, circ);
                self.out.push_back(RelayOutput::SendInfo { to: circ, info });
            }
        }
    }

    fn own_flags(&self) -> InfoFlags {
        if self.config.facilitator {
            InfoFlags::FACILITATOR
        } else {
            InfoFlags::default()
        }
    }

    fn next_op(&mut self) -> StoreOpId {
        self.next_op += 1;
        StoreOpId(RELAY_STORE_OP_BIT | self.next_op)
    }

    fn refuse(&mut self, to: RequestId, hash_name: HashName, reason: DbEndReason, sentence: &str) {
        let end = DbEnd::with_sentence(reason, sentence);
        self.out.push_back(RelayOutput::Reply {
            to,
            msg: DbMsg::End(end),
        });
        self.out.push_back(RelayOutput::Event(RelayEvent::Refused {
            hash_name,
            reason,
            sentence: sentence.to_owned(),
        }));
    }

    // ----- holding and advertising -----

    fn hold(&mut self, descriptor: Descriptor, pieces: Vec<u32>) {
        let name = descriptor.hash_name();
        if !self.held.contains_key(&name) && self.held.len() >= self.config.max_held {
            return;
        }
        let n = descriptor.piece_count() as usize;
        let held = self.held.entry(name).or_insert_with(|| Held {
            descriptor,
            have: vec![false; n],
            count: 0,
            advertised: None,
            provided: false,
        });
        for i in pieces {
            if let Some(slot) = held.have.get_mut(i as usize) {
                if !*slot {
                    *slot = true;
                    held.count += 1;
                }
            }
        }
        self.advertise(name);
    }

    /// Send `DB_INFO` to every neighbour when the held share crosses a 25 % step.
    fn advertise(&mut self, name: HashName) {
        let flags = self.own_flags();
        let Some(h) = self.held.get_mut(&name) else {
            return;
        };
        let Some(c) = h.completion() else { return };
        if h.advertised.is_some_and(|a| a >= c) {
            return;
        }
        h.advertised = Some(c);
        if !h.provided {
            h.provided = true;
            self.out.push_back(RelayOutput::Provide(name));
        }
        let info = DbInfo {
            hash_name: name,
            completion: c,
            flags,
        };
        let neighbours: Vec<OrdbCirc> = self
            .circuits
            .iter()
            .filter(|(_, s)| s.neighbour)
            .map(|(c, _)| *c)
            .collect();
        for to in neighbours {
            self.note_told(name, to);
            self.out.push_back(RelayOutput::SendInfo { to, info });
        }
    }

    fn note_told(&mut self, name: HashName, circ: OrdbCirc) {
        let max = self.config.max_circuits;
        if let Some(v) = self.told.get_mut(&name) {
            if !v.contains(&circ) && v.len() < max {
                v.push(circ);
            }
        } else {
            self.told.insert(name, vec![circ]);
        }
    }

    fn on_info(&mut self, from: OrdbCirc, info: DbInfo) {
        if self.banned.contains_key(&from) || !self.circuits.contains_key(&from) {
            return;
        }
        if info.flags.contains(InfoFlags::FACILITATOR) && !self.facilitators.contains(&from) {
            if self.facilitators.len() >= self.config.max_circuits {
                self.facilitators.pop_front();
            }
            self.facilitators.push_back(from);
        }
        let name = info.hash_name;
        let is_new = !self.or_files.contains_key(&name)
            && !self.or_streams.contains_key(&name)
            && !self.held.contains_key(&name);
        let entry = Entry {
            circ: from,
            completion: Some(info.completion),
            flags: info.flags,
        };
        self.upsert(name, entry);
        self.note_told(name, from);
        if !is_new {
            return;
        }
        // Pass the reference on, once, to neighbours not known to have it. The F flag is the
        // advertiser's, not ours: drop it; keep S so the list kind is known; set R, since this
        // node does not hold the content itself.
        let fwd = DbInfo {
            hash_name: name,
            completion: info.completion,
            flags: InfoFlags(info.flags.0 & InfoFlags::STREAM.0).with(InfoFlags::REFERENCE),
        };
        let listed = self.listed(&name);
        let told = self.told.peek(&name).cloned().unwrap_or_default();
        let targets: Vec<OrdbCirc> = self
            .circuits
            .iter()
            .filter(|(c, s)| s.neighbour && **c != from && !told.contains(c) && !listed.contains(c))
            .map(|(c, _)| *c)
            .collect();
        for to in targets {
            self.note_told(name, to);
            self.out.push_back(RelayOutput::SendInfo { to, info: fwd });
        }
    }

    fn upsert(&mut self, name: HashName, entry: Entry) {
        let max = self.config.max_entries_per_name;
        let list = if entry.flags.contains(InfoFlags::STREAM) {
            &mut self.or_streams
        } else {
            &mut self.or_files
        };
        match list.get_mut(&name) {
            Some(v) => {
                if let Some(e) = v.iter_mut().find(|e| e.circ == entry.circ) {
                    *e = entry;
                } else if v.len() < max {
                    v.push(entry);
                }
            }
            None => {
                list.insert(name, vec![entry]);
            }
        }
    }

    // ----- queries -----

    fn on_query(&mut self, now: Time, from: RequestId, q: DbQuery) {
        let name = q.hash_name;
        if !self.queries.take(now) {
            return self.refuse(
                from,
                name,
                DbEndReason::BUSY,
                "This node gets too many requests; try another.",
            );
        }
        if q.counter >= MAX_COUNTER {
            return self.refuse(
                from,
                name,
                DbEndReason::LOOP,
                "The request crossed 5 ORDBs without finding the content; it was stopped to avoid a loop.",
            );
        }
        if q.count > self.config.max_pieces_per_query {
            return self.refuse(
                from,
                name,
                DbEndReason::BAD_REQUEST,
                "The request asks for too many pieces at once.",
            );
        }
        if !self.sessions.contains_key(&from) && self.sessions.len() >= self.config.max_sessions {
            return self.refuse(
                from,
                name,
                DbEndReason::BUSY,
                "This node serves too many requests; try another.",
            );
        }
        let session = self.sessions.entry(from).or_default();
        session.last_activity = Some(now);

        if let Some(h) = self.held.get(&name) {
            if q.count == 0 {
                let d = &h.descriptor;
                match DescriptorSlice::split(d.kind(), d.encoded()) {
                    Ok(slices) => {
                        for s in slices {
                            self.out.push_back(RelayOutput::Reply {
                                to: from,
                                msg: DbMsg::Connected(s),
                            });
                        }
                    }
                    Err(_) => self.refuse(
                        from,
                        name,
                        DbEndReason::DESTROYED,
                        "The stored description is too large to send.",
                    ),
                }
                return;
            }
            if h.holds(q.piece, q.count) {
                let d = &h.descriptor;
                let first_len = d.piece_len(q.piece).unwrap_or(0);
                if q.offset >= first_len {
                    return self.refuse(
                        from,
                        name,
                        DbEndReason::BAD_REQUEST,
                        "The request starts past the end of its piece.",
                    );
                }
                let session = self.sessions.entry(from).or_default();
                if session.jobs.len() >= self.config.max_queued_per_session {
                    return self.refuse(
                        from,
                        name,
                        DbEndReason::BUSY,
                        "Too many requests queued on this stream.",
                    );
                }
                session.jobs.push_back(ServeJob {
                    hash_name: name,
                    next: q.piece,
                    end: q.piece + u32::from(q.count),
                    offset: q.offset,
                });
                return self.kick(from);
            }
            if q.piece.saturating_add(u32::from(q.count)) > h.descriptor.piece_count() {
                return self.refuse(
                    from,
                    name,
                    DbEndReason::BAD_REQUEST,
                    "The request asks for pieces past the end of the content.",
                );
            }
        }
        // Not held (or not all of it): relay, through this stream's pipe if it has one.
        let pipe = self.sessions.get(&from).and_then(|s| s.pipe);
        if let Some(id) = pipe {
            if let Some(r) = self.relays.get_mut(&id) {
                if r.hash_name == name {
                    let via = r.via;
                    r.query = q;
                    if !r.answered {
                        r.sent_at = now;
                    }
                    let query = DbQuery {
                        counter: q.counter + 1,
                        ..q
                    };
                    let out = match via {
                        Some(via) => RelayOutput::Forward {
                            relay: id,
                            via,
                            query,
                            source: None,
                        },
                        None => match self.source_for(from, &name) {
                            Some(source) => RelayOutput::Facilitate {
                                relay: id,
                                source,
                                query: q,
                            },
                            None => return self.give_up(from, name),
                        },
                    };
                    self.out.push_back(out);
                    return;
                }
            }
            // A pipe for another content: close it, open a new one.
            self.relays.remove(&id);
            self.out.push_back(RelayOutput::CancelForward(id));
            if let Some(s) = self.sessions.get_mut(&from) {
                s.pipe = None;
            }
        }
        self.forward(now, from, q, Vec::new(), false);
    }

    /// Pick the first usable entry for `q` (rotating it to the end) and forward; else search.
    fn forward(
        &mut self,
        now: Time,
        from: RequestId,
        q: DbQuery,
        tried: Vec<OrdbCirc>,
        searched: bool,
    ) {
        let name = q.hash_name;
        if tried.len() >= self.config.max_attempts {
            // Every ORDB tried said no: a facilitator may fetch it from outside the mesh.
            return self.facilitate(now, from, q);
        }
        if self.relays.len() >= self.config.max_relays {
            return self.refuse(
                from,
                name,
                DbEndReason::BUSY,
                "This node relays too many requests; try another.",
            );
        }
        let mut chosen = self.choose(&name, &tried);
        if chosen.is_none() && searched {
            // Nobody in the mesh has it: a facilitator may fetch it from outside (spec: "If the
            // FIND process is unsuccessful, the ORDB sends the request to facilitators").
            chosen = self.choose_facilitator(&tried);
        }
        let Some(via) = chosen else {
            if searched {
                return self.facilitate(now, from, q);
            }
            return self.park(now, from, q, tried);
        };
        self.next_relay += 1;
        let id = RelayId(self.next_relay);
        let mut tried = tried;
        tried.push(via);
        self.relays.insert(
            id,
            Forwarded {
                to: from,
                via: Some(via),
                hash_name: name,
                query: q,
                answered: false,
                sent_at: now,
                last_activity: now,
                tried,
                searched,
            },
        );
        if let Some(s) = self.sessions.get_mut(&from) {
            s.pipe = Some(id);
        }
        let query = DbQuery {
            counter: q.counter + 1,
            ..q
        };
        let source = self.source_for(from, &name);
        self.out.push_back(RelayOutput::Forward {
            relay: id,
            via,
            query,
            source,
        });
    }

    /// The `DB_SOURCE` request stream `from` sent for `name`, if any.
    fn source_for(&self, from: RequestId, name: &HashName) -> Option<DbSource> {
        self.sessions
            .get(&from)
            .and_then(|s| s.source.clone())
            .filter(|src| src.hash_name == *name)
    }

    fn on_source(&mut self, now: Time, from: RequestId, source: DbSource) {
        if !self.sessions.contains_key(&from) && self.sessions.len() >= self.config.max_sessions {
            // Its query will be refused BUSY as well.
            return;
        }
        let s = self.sessions.entry(from).or_default();
        s.last_activity = Some(now);
        s.source = Some(source);
    }

    /// Nobody in the mesh has `q`'s content: hand it to this node's bridge if the request
    /// carried a `DB_SOURCE`, else answer `UNAVAILABLE`.
    fn facilitate(&mut self, now: Time, from: RequestId, q: DbQuery) {
        let name = q.hash_name;
        let Some(source) = self.source_for(from, &name) else {
            return self.give_up(from, name);
        };
        let busy = self.relays.values().filter(|r| r.via.is_none()).count();
        if busy >= self.config.max_facilitated {
            return self.refuse(
                from,
                name,
                DbEndReason::BUSY,
                "Nobody in the mesh holds the content, and this ORDB's facilitator is busy; try another.",
            );
        }
        self.next_relay += 1;
        let id = RelayId(self.next_relay);
        self.relays.insert(
            id,
            Forwarded {
                to: from,
                via: None,
                hash_name: name,
                query: q,
                answered: false,
                sent_at: now,
                last_activity: now,
                tried: Vec::new(),
                searched: true,
            },
        );
        if let Some(s) = self.sessions.get_mut(&from) {
            s.pipe = Some(id);
        }
        // The requester may tell where its bytes come from (its progress says "BitTorrent via
        // a facilitator" rather than "mesh"): a DB_INFO with F, first on the stream.
        self.out.push_back(RelayOutput::Reply {
            to: from,
            msg: DbMsg::Info(DbInfo {
                hash_name: name,
                completion: Completion::Full,
                flags: InfoFlags::FACILITATOR,
            }),
        });
        self.out.push_back(RelayOutput::Facilitate {
            relay: id,
            source,
            query: q,
        });
    }

    /// A live facilitator not tried yet, rotating so they share the load.
    fn choose_facilitator(&mut self, tried: &[OrdbCirc]) -> Option<OrdbCirc> {
        let pos = self.facilitators.iter().position(|c| {
            self.circuits.contains_key(c) && !self.banned.contains_key(c) && !tried.contains(c)
        })?;
        let c = self.facilitators.remove(pos)?;
        self.facilitators.push_back(c);
        Some(c)
    }

    fn choose(&mut self, name: &HashName, tried: &[OrdbCirc]) -> Option<OrdbCirc> {
        let circuits = &self.circuits;
        let banned = &self.banned;
        let usable = |e: &Entry| {
            circuits.contains_key(&e.circ)
                && !banned.contains_key(&e.circ)
                && !tried.contains(&e.circ)
        };
        for list in [&mut self.or_files, &mut self.or_streams] {
            if let Some(v) = list.get_mut(name) {
                let best = v
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| usable(e))
                    .min_by_key(|(i, e)| (e.path_rank(), *i));
                if let Some((pos, _)) = best {
                    let e = v.remove(pos);
                    v.push(e);
                    return Some(e.circ);
                }
            }
        }
        None
    }

    fn park(&mut self, now: Time, from: RequestId, q: DbQuery, tried: Vec<OrdbCirc>) {
        let name = q.hash_name;
        if let Some(f) = self.finds.get_mut(&name) {
            if f.parked.len() >= self.config.max_parked_per_find {
                return self.refuse(
                    from,
                    name,
                    DbEndReason::BUSY,
                    "Too many requests wait for this content; try again later.",
                );
            }
            f.parked.push((from, q, tried));
            return;
        }
        if self.finds.len() >= self.config.max_finds {
            return self.refuse(
                from,
                name,
                DbEndReason::BUSY,
                "This node searches for too many contents; try another.",
            );
        }
        self.finds.insert(
            name,
            Find {
                started: now,
                parked: vec![(from, q, tried)],
            },
        );
        self.out.push_back(RelayOutput::FindProviders(name));
    }

    fn give_up(&mut self, from: RequestId, name: HashName) {
        self.refuse(
            from,
            name,
            DbEndReason::UNAVAILABLE,
            "No node reachable from this ORDB holds the content.",
        );
        self.close_session(from, false);
    }

    fn on_providers(&mut self, now: Time, name: HashName, circs: Vec<OrdbCirc>) {
        for c in &circs {
            self.circuit_up(*c, false);
            if self.circuits.contains_key(c) {
                self.upsert(
                    name,
                    Entry {
                        circ: *c,
                        completion: None,
                        flags: InfoFlags::default(),
                    },
                );
            }
        }
        let Some(f) = self.finds.remove(&name) else {
            return;
        };
        for (from, q, tried) in f.parked {
            if self.sessions.contains_key(&from) {
                self.forward(now, from, q, tried, true);
            }
        }
    }

    fn on_upstream(&mut self, now: Time, id: RelayId, msg: DbMsg) {
        let Some(r) = self.relays.get_mut(&id) else {
            return;
        };
        match msg {
            DbMsg::Connected(_) | DbMsg::Proof(_) | DbMsg::Data(_) => {
                r.answered = true;
                r.last_activity = now;
                let (to, via) = (r.to, r.via);
                if let Some(c) = via.and_then(|v| self.circuits.get_mut(&v)) {
                    c.strikes = 0;
                }
                if let Some(s) = self.sessions.get_mut(&to) {
                    s.last_activity = Some(now);
                }
                self.out.push_back(RelayOutput::Reply { to, msg });
            }
            DbMsg::End(end) => {
                // A facilitator's word is final: its sentence (no peers, refused URL...) goes
                // to the requester as it is.
                if r.answered || r.via.is_none() {
                    let to = r.to;
                    self.relays.remove(&id);
                    self.out.push_back(RelayOutput::Reply {
                        to,
                        msg: DbMsg::End(end),
                    });
                    self.close_session(to, false);
                } else {
                    // Nothing there: the query goes elsewhere. Saying so is not free riding,
                    // unless that ORDB advertised holding all of this very content (one that
                    // advertised a share may lack the pieces asked for, and relays on).
                    let (name, Some(via)) = (r.hash_name, r.via) else {
                        return;
                    };
                    let advertised = self
                        .or_files
                        .peek(&name)
                        .into_iter()
                        .chain(self.or_streams.peek(&name))
                        .flatten()
                        .any(|e| e.circ == via && e.claims_whole());
                    self.upstream_failed(now, id, advertised);
                }
            }
            // An ORDB further on facilitates: the requester learns it, as from `facilitate`.
            DbMsg::Info(info)
                if info.hash_name == r.hash_name && info.flags.contains(InfoFlags::FACILITATOR) =>
            {
                let to = r.to;
                self.out.push_back(RelayOutput::Reply {
                    to,
                    msg: DbMsg::Info(info),
                });
            }
            // Queries and other adverts do not come back up a forwarded stream.
            DbMsg::Query(_) | DbMsg::Info(_) | DbMsg::Source(_) | DbMsg::Unrecognized { .. } => {}
        }
    }

    /// A forwarded query got nothing: strike its ORDB (if `strike`) and try the next one.
    fn upstream_failed(&mut self, now: Time, id: RelayId, strike: bool) {
        let Some(r) = self.relays.remove(&id) else {
            return;
        };
        self.out.push_back(RelayOutput::CancelForward(id));
        if let (true, Some(via)) = (strike, r.via) {
            self.strike(via);
        }
        if let Some(s) = self.sessions.get_mut(&r.to) {
            if s.pipe == Some(id) {
                s.pipe = None;
            }
        } else {
            return;
        }
        if r.via.is_none() && !r.answered {
            self.refuse(
                r.to,
                r.hash_name,
                DbEndReason::UNAVAILABLE,
                "Nobody in the mesh holds the content, and this ORDB's bridge did not deliver it (it is no facilitator, it is not connected, or it found nothing in time).",
            );
            return self.close_session(r.to, false);
        }
        if r.answered {
            // The pipe broke mid-way; the requester resumes elsewhere.
            self.refuse(
                r.to,
                r.hash_name,
                DbEndReason::DESTROYED,
                "The ORDB this request went through left.",
            );
            return self.close_session(r.to, false);
        }
        self.forward(now, r.to, r.query, r.tried, r.searched);
    }

    fn strike(&mut self, circ: OrdbCirc) {
        let limit = self.config.free_rider_strikes;
        let Some(c) = self.circuits.get_mut(&circ) else {
            return;
        };
        c.strikes = c.strikes.saturating_add(1);
        if c.strikes < limit {
            return;
        }
        self.circuits.remove(&circ);
        self.banned.insert(circ, ());
        self.facilitators.retain(|c| *c != circ);
        for list in [&mut self.or_files, &mut self.or_streams] {
            list.retain(|_, v| {
                v.retain(|e| e.circ != circ);
                !v.is_empty()
            });
        }
        self.out
            .push_back(RelayOutput::Event(RelayEvent::FreeRiderDropped(circ)));
    }

    // ----- serving from the store -----

    /// Send what the store has read, in order, then read ahead: up to [`READ_AHEAD`] pieces of
    /// `from`'s jobs are read at once, so the store's latency per read (an IndexedDB
    /// transaction in a page) overlaps instead of adding up piece after piece. Nothing is sent
    /// and no read starts while the stream is blocked.
    fn kick(&mut self, from: RequestId) {
        loop {
            let Some(s) = self.sessions.get_mut(&from) else {
                return;
            };
            if s.blocked {
                return;
            }
            if s.reading.front().is_some_and(|r| r.result.is_some()) {
                let Some(r) = s.reading.pop_front() else {
                    return;
                };
                let Some(result) = r.result else { return };
                if !self.answer_read(from, r.hash_name, r.index, r.offset, result) {
                    return;
                }
                continue;
            }
            if s.reading.len() >= READ_AHEAD {
                return;
            }
            let Some(job) = s.jobs.front_mut() else {
                return;
            };
            let (hash_name, index, offset) = (job.hash_name, job.next, job.offset);
            job.next += 1;
            job.offset = 0;
            if job.next >= job.end {
                s.jobs.pop_front();
            }
            let id = self.next_op();
            if let Some(s) = self.sessions.get_mut(&from) {
                s.reading.push_back(PendingRead {
                    id,
                    hash_name,
                    index,
                    offset,
                    result: None,
                });
            }
            self.reads.insert(id, from);
            self.out.push_back(RelayOutput::Store {
                id,
                request: StoreRequest::GetPiece { hash_name, index },
            });
        }
    }

    fn on_store(&mut self, now: Time, c: StoreCompletion) {
        let Some(from) = self.reads.remove(&c.id) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&from) else {
            return;
        };
        s.last_activity = Some(now);
        if let Some(r) = s.reading.iter_mut().find(|r| r.id == c.id) {
            r.result = Some(c.result);
        }
        self.kick(from);
    }

    /// Answer one read of piece `index` (from byte `offset`) of `name` on `from`. False when the
    /// session ended (a piece gone from the store, a broken proof, a store error).
    fn answer_read(
        &mut self,
        from: RequestId,
        name: HashName,
        index: u32,
        offset: u32,
        result: Result<StoreReply, StoreError>,
    ) -> bool {
        match result {
            Ok(StoreReply::Piece(Some(PieceRecord { bytes, proof }))) => {
                match ProofPart::split(index, &proof) {
                    Ok(parts) => {
                        for p in parts {
                            self.out.push_back(RelayOutput::Reply {
                                to: from,
                                msg: DbMsg::Proof(p),
                            });
                        }
                    }
                    Err(_) => {
                        self.refuse(
                            from,
                            name,
                            DbEndReason::DESTROYED,
                            "A stored piece has a broken proof.",
                        );
                        self.close_session(from, false);
                        return false;
                    }
                }
                for d in DataSlice::split(index, offset, &bytes) {
                    self.out.push_back(RelayOutput::Reply {
                        to: from,
                        msg: DbMsg::Data(d),
                    });
                }
                self.out.push_back(RelayOutput::Event(RelayEvent::Served {
                    hash_name: name,
                    index,
                }));
                true
            }
            Ok(_) => {
                // Gone from the store since it was announced.
                if let Some(h) = self.held.get_mut(&name) {
                    if let Some(slot) = h.have.get_mut(index as usize) {
                        if *slot {
                            *slot = false;
                            h.count -= 1;
                        }
                    }
                }
                self.refuse(
                    from,
                    name,
                    DbEndReason::UNAVAILABLE,
                    "The piece is no longer stored here.",
                );
                self.close_session(from, false);
                false
            }
            Err(e) => {
                self.out
                    .push_back(RelayOutput::Event(RelayEvent::StoreFailed(e)));
                self.refuse(
                    from,
                    name,
                    DbEndReason::DESTROYED,
                    "This node could not read its storage.",
                );
                self.close_session(from, false);
                false
            }
        }
    }

    fn close_session(&mut self, from: RequestId, notify: bool) {
        let Some(s) = self.sessions.remove(&from) else {
            return;
        };
        if let Some(id) = s.pipe {
            if self.relays.remove(&id).is_some() {
                self.out.push_back(RelayOutput::CancelForward(id));
            }
        }
        for r in &s.reading {
            self.reads.remove(&r.id);
        }
        for f in self.finds.values_mut() {
            f.parked.retain(|(r, _, _)| *r != from);
        }
        if notify {
            self.out.push_back(RelayOutput::Reply {
                to: from,
                msg: DbMsg::End(DbEnd::with_sentence(
                    DbEndReason::DESTROYED,
                    "The request was idle for too long.",
                )),
            });
        }
    }

    fn on_timeout(&mut self, now: Time) {
        let c = self.config.clone();
        let unanswered: Vec<RelayId> = self
            .relays
            .iter()
            .filter(|(_, r)| {
                let limit = match r.via {
                    Some(_) => c.forward_timeout,
                    None => c.facilitate_timeout,
                };
                !r.answered && now.elapsed_since(r.sent_at, limit)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unanswered {
            self.upstream_failed(now, id, true);
        }
        let finds: Vec<HashName> = self
            .finds
            .iter()
            .filter(|(_, f)| now.elapsed_since(f.started, c.find_timeout))
            .map(|(h, _)| *h)
            .collect();
        for name in finds {
            self.on_providers(now, name, Vec::new());
        }
        let idle: FlatSet<RequestId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.last_activity
                    .is_some_and(|t| now.elapsed_since(t, c.idle_timeout))
            })
            .map(|(id, _)| *id)
            .chain(
                self.relays
                    .values()
                    .filter(|r| r.answered && now.elapsed_since(r.last_activity, c.idle_timeout))
                    .map(|r| r.to),
            )
            .collect();
        for id in idle {
            self.close_session(id, true);
        }
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;

//! The node's ORDB part: the content layer ([`onionmesh_ordb::Ordb`]) wired to this node's
//! circuits, streams, DHT and the driver's store. Reached through [`crate::Node::ordb`].
//!
//! ## Who talks to whom
//!
//! - **Serving (this node as an ORDB).** Every node serves the onion service named
//!   [`ORDB_SERVICE`] at the end of circuits others build. A request stream is known only by its
//!   `ExitStream` (circuit number and stream number on the circuit's last hop), which becomes an
//!   opaque [`RequestId`]: the ORDB never learns who built the circuit. `DB_*` messages on it go
//!   to the content layer's relay, which serves what it holds or forwards.
//! - **Forwarding and finding (this node relaying for a requester).** A query this node cannot
//!   serve goes on over *our own* circuits: `FindProviders` runs a DHT `FIND_VALUE` on the
//!   hash_name (a 160-bit DHT key), builds a circuit of [`ContentConfig::hops`] hops ending at
//!   each provider found (`PathPins::last`), and opens a stream to the provider's ORDB service
//!   on it. The provider sees a stream on a circuit, not this node.
//! - **Downloading (this node as a requester).** A download builds circuits of
//!   [`ContentConfig::hops`] hops ending at ORDBs chosen at random among the peers this node
//!   knows (linked peers and DHT contacts) and never at a provider it looked up itself: the
//!   requester asks ORDBs, the ORDBs find the holders. Each circuit's stream is one download
//!   source. A source the scheduler drops (slow, stalled, a corrupt piece, `DB_END`) has its
//!   circuit destroyed and is replaced by a circuit to another ORDB, up to
//!   [`ContentConfig::max_source_attempts`] circuits per download; past that with no source
//!   left the download fails with a sentence.
//! - **Advertising.** At 25 % held, the content layer asks to `Provide`: a DHT provider record
//!   at the k closest nodes; and it sends `DB_INFO` at each 25 % step to its neighbour ORDBs
//!   (next section).
//!
//! ## Neighbours
//!
//! The spec's ORDBs "a node is connected to" become, with onion circuits, **neighbour
//! channels**. Once this node holds a quarter of some content, it keeps
//! [`ContentConfig::neighbours`] circuits of [`ContentConfig::hops`] hops, each ending at a
//! neighbour chosen at random among its linked peers and DHT contacts (never one dropped as a
//! free rider), and opens on each a stream to the neighbour's [`ORDB_NEIGHBOUR_SERVICE`]. A
//! failed one is rebuilt after 10 s. Both ends count the other as a neighbour ORDB
//! (`RelayInput::CircuitUp { neighbour: true }`):
//!
//! - **Adverts** (`DB_INFO`, from `RelayOutput::SendInfo`) go both ways on the channel: this
//!   node's own at each 25 % step, the neighbour's own, and references passed on once to
//!   neighbours not known to have them (the relay's rule: no flooding).
//! - **Queries along the lists.** The builder's list entry for what the neighbour advertised is
//!   its circuit to the neighbour: it forwards on a fresh `ORDB_SERVICE` stream on that
//!   circuit, as on a provider circuit. The neighbour's entry is the channel built to it (an
//!   [`OrdbCirc`] with a high bit set, naming no peer): it forwards *back through the channel*,
//!   on a numbered pipe.
//!
//! What each end learns: the neighbour learns that the far end of a channel built to it holds
//! (or knows of) a content, never who built it; its answers reach the holder through the
//! builder's circuit. The builder knows its neighbour's ID (it chose it), and so learns which
//! contents that neighbour, acting as an ORDB, asks for: recorded as [`KnownAs::Neighbour`].
//! A relay never forwards its own node's downloads (they use source circuits), so the
//! neighbour is an ORDB relaying for a requester the builder never learns.
//!
//! Framing on a channel: each frame is `[pipe u16, big-endian]` then a stream frame (below).
//! Pipe 0 carries `DB_INFO` only, both ways. Other pipes carry one forwarded query each,
//! opened by the neighbour (the service end): `DB_QUERY` from it, answers (`DB_CONNECTED`,
//! `DB_PROOF`, `DB_DATA`, `DB_END`) from the builder; a `DB_END` from the neighbour cancels the
//! pipe. At most 64 pipes per channel; anything else on a pipe closes the channel.
//!
//! ## Facilitators (issue 10)
//!
//! A download started with a source hint ([`OrdbApi::download_from`]: a magnet link or a web
//! URL) sends a `DB_SOURCE` first on every source stream. An ORDB passes it along when it
//! forwards (on the new stream, or first on a neighbour pipe), and when the mesh has nobody the
//! relay hands the query to this node's bridge (`RelayOutput::Facilitate`): the part sends
//! `SignalMsg::Facilitate { req, msg }` on the bridge connection, first the `DB_SOURCE`, then
//! each `DB_QUERY` of that request under the same `req` (a number of this node's, one per
//! facilitated request, naming no requester). The bridge's `Facilitated { req, msg }` answers
//! go to the relay as `Upstream` and on to the request stream unchanged; a `FacilitateClose`
//! from the bridge, or the bridge connection dropping, is `UpstreamClosed`; the relay's
//! `CancelForward` sends `FacilitateClose`. A node that is not registered at a bridge answers
//! `UpstreamClosed` at once. The bridge sees this node's connection, never the requester, who
//! is behind its own 3-hop circuit to this node.
//!
//! ## Free riders
//!
//! The relay drops an ORDB that takes forwarded queries and answers none (or says
//! `UNAVAILABLE` for a content it advertised whole). When that ORDB is at the end of one of
//! our circuits (a neighbour or a provider), this part drops its *peer* for the session: it is
//! never chosen again as a download's ORDB, a neighbour or a provider, and our circuits to it
//! go. A download's ORDB that accepted a request and sent back nothing at all before the
//! download gave up on it gets a strike; at the relay's `free_rider_strikes` it is dropped the
//! same way. A channel built to us whose far end is dropped is closed (its builder is not
//! known, by design, so it cannot be barred from building another).
//! - **Storage** belongs to the driver: [`crate::Output::Store`] asks it to run a
//!   [`StoreRequest`], and [`crate::Input::StoreDone`] brings the completion back. The page
//!   uses IndexedDB; the simulator and the tests use [`onionmesh_ordb::MemStore`]. Call
//!   [`OrdbApi::load`] once at start so stored content is served and advertised again.
//!
//! ## Framing on a stream
//!
//! `DB_*` messages cross onion *streams* (byte pipes with flow control), not bare relay cells,
//! so the onion layer's windows and backpressure apply to content like to any other stream.
//! Each message is framed as `[relay command u8][body length u16, big-endian][body]`, the body
//! being [`DbMsg::encode`]'s, at most `RELAY_DATA_LEN` (498) bytes: so a frame is at most 501
//! bytes, one cell's worth. A length over that, or a command outside `0x70..=0x7f`, is a
//! protocol error that closes that stream only.
//!
//! ## Bounds
//!
//! Bytes received and not yet parsed are at most one frame per stream. Bytes queued to send
//! per stream (or channel) are capped at [`ContentConfig::max_stream_buffer`]; a stream past
//! it is closed. Neighbour channels: [`ContentConfig::neighbours`] of ours, at most the relay's
//! `max_circuits` built to us, 64 pipes each.
//! A request stream's queue past 128 KiB holds the relay back (`RelayInput::Writable`): no
//! further piece is read from the store for it, and relayed answers for it stay in their
//! upstream circuit (whose windows then push back on the ORDB upstream), until it drains below
//! half of that. (Query pipes on a neighbour channel share the channel's queue and are bounded
//! by `max_stream_buffer` only.) Circuits
//! per download are capped by [`ContentConfig::sources`], provider circuits by
//! [`ContentConfig::max_provider_circuits`]. Source streams are not read while the store is
//! behind ([`onionmesh_ordb::Ordb::wants_source_data`]): the circuits' windows then push back
//! on the ORDBs, and nothing is dropped.
//!
//! This part writes no other part's fields: it acts on the onion and DHT parts through their
//! handles ([`OnionApi`], [`DhtApi`]), which push the node's typed requests.

use std::time::Duration;

use onionmesh_bounded::{BoundedLru, FlatMap, FlatSet};
use onionmesh_onion::{CircHandle, ExitStream, PathPins, StreamHandle};
use onionmesh_ordb::{
    publish_bytes, DbMsg, DownloadInput, HashName, LibraryEntry, Ordb, OrdbConfig, OrdbError,
    OrdbEvent, OrdbInput, OrdbOutput, Progress, Publication, PublishError, RelayEvent, RelayInput,
    RelayOutput, RelayStats, RequestId, SourceId, SourceProblem, StoreCompletion,
    DEFAULT_PIECE_SIZE,
};
use onionmesh_ordb::{Descriptor, OrdbCirc, PieceRecord, RelayId, TorrentFile};
use onionmesh_wire::cell::{RelayCmd, RELAY_DATA_LEN};
use onionmesh_wire::db::{DbEnd, DbEndReason, DbInfo, DbQuery, DbSource, DescriptorKind};
use onionmesh_wire::signal::FacilitatedAnswer;
use onionmesh_wire::{NodeId, SignalMsg, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use thiserror::Error;

use crate::dht::{DhtApi, DhtPart, Route};
use crate::event::{ContentEvent, DhtEvent, Event, LogLevel, OnionEvent};
use crate::links::LinkTable;
use crate::onion::{OnionApi, OnionPart};
use crate::output::{log, Output, Request, Requests};

/// The onion service name of the ORDB function, served by every node.
pub const ORDB_SERVICE: &str = "ordb";

/// The onion service name of neighbour channels (see "Neighbours" in the module docs), served
/// by every node.
pub const ORDB_NEIGHBOUR_SERVICE: &str = "ordb-neighbour";

/// The pipe of a neighbour channel that carries adverts (`DB_INFO`), both ways.
const PIPE_ADVERTS: u16 = 0;
/// Bytes of a pipe number in front of each frame on a neighbour channel.
const PIPE_HEADER: usize = 2;
/// Query pipes open at once on one neighbour channel.
const MAX_PIPES: usize = 64;
/// [`OrdbCirc`] handles of neighbour channels built *to* us have this bit set, so they never
/// collide with our own circuits' handles (which are small counters).
const INBOUND_BIT: u64 = 1 << 62;
/// After a neighbour circuit fails, wait this long before building another.
const NEIGHBOUR_RETRY: Duration = Duration::from_secs(10);
/// Most (neighbour, hash_name, step, own) adverts remembered to count repeats.
const MAX_ADVERTS_REMEMBERED: usize = 8192;
/// Peers dropped as free riders this session, remembered.
const MAX_BANNED_PEERS: usize = 1024;
/// A peer that one of our circuits pinned to end at it could not reach (the circuit got as far
/// as the hop before it) is not chosen as a last hop for this long: typically a bridge's DHT
/// node (bridges take part in the DHT but are no onion routers), or a peer that left.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5 * 60);
/// Peers remembered as unreachable last hops.
const MAX_UNREACHABLE: usize = 256;
/// Circuit builds refused at once (no path, no key, too many circuits) in one top-up of a
/// download, each to another ORDB, before it backs off. These are no source attempts.
const SYNC_FAILURES_PER_TOP_UP: u32 = 3;
/// First back-off of a download that could not build a circuit at all (doubling per back-off
/// up to [`TOP_UP_RETRY_MAX`]), and back-offs in a row before it fails (about 4 minutes).
const TOP_UP_RETRY: Duration = Duration::from_secs(1);
const TOP_UP_RETRY_MAX: Duration = Duration::from_secs(30);
const MAX_TOP_UP_BACKOFFS: u32 = 12;

/// Bytes of a frame header on a stream: command and body length.
const FRAME_HEADER: usize = onionmesh_wire::db::STREAM_FRAME_HEADER_LEN;
// A framed DB_DATA of the largest slice fills one relay cell exactly (see MAX_DATA_SLICE).
const _: () = assert!(
    FRAME_HEADER + onionmesh_wire::db::DATA_HEADER_LEN + onionmesh_wire::db::MAX_DATA_SLICE
        == onionmesh_wire::cell::RELAY_DATA_LEN
);
/// Most bytes pulled from one stream per read.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes queued for a request stream past which the relay reads no further piece for it and
/// relayed answers for it are left in their upstream circuit; below half of it, both go on.
const REQUEST_HIGH_WATER: usize = 128 * 1024;
/// Handles of closed circuits and streams remembered, so their late events are swallowed.
const CLOSED_MEMORY: usize = 1024;

/// The content part of [`crate::NodeConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentConfig {
    /// The content layer's own limits (relay, downloads, store backlog).
    pub ordb: OrdbConfig,
    /// Hops of every content circuit (to an ORDB, or to a provider). 3 as in Tor: the first hop
    /// knows us, the last knows the ORDB, no single hop knows both.
    pub hops: usize,
    /// Circuits (sources) per download at once (the spec's up to 5 circuits).
    pub sources: usize,
    /// Circuits built per download before it fails, counting replacements.
    pub max_source_attempts: u32,
    /// Provider circuits built per provider search, and held in all.
    pub providers_per_find: usize,
    pub max_provider_circuits: usize,
    /// Bytes queued to send on one stream before it is closed as stuck.
    pub max_stream_buffer: usize,
    /// Neighbour ORDBs this node keeps a circuit to, once it holds something to advertise
    /// (adverts go there, and they query back through it). 0 turns adverts off.
    pub neighbours: usize,
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            ordb: OrdbConfig::default(),
            hops: 3,
            sources: 3,
            max_source_attempts: 12,
            providers_per_find: 3,
            max_provider_circuits: 128,
            max_stream_buffer: 8 * 1024 * 1024,
            neighbours: 3,
        }
    }
}

/// Why a content call failed (the caller misused the API, or the file cannot be published).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentError {
    #[error("cannot publish this file: {0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Ordb(#[from] OrdbError),
    #[error("the node is stopped")]
    Stopped,
}

/// Counters for tests and the page's Network section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentStats {
    /// The relay's table sizes.
    pub relay: RelayStats,
    /// Request streams that ended at this node (this node as an ORDB).
    pub requests_served: u64,
    /// Pieces from a source that failed verification (each dropped that source).
    pub bad_pieces: u64,
    /// Whole pieces this node's downloads received from their sources and checked, good or
    /// bad ([`onionmesh_ordb::Ordb::pieces_received`]): the requester's side of delivery. A
    /// piece its ORDBs served but that never arrived (its request cancelled, its circuit
    /// gone) is not counted.
    pub pieces_received: u64,
    /// Sources dropped for any reason.
    pub sources_dropped: u64,
    /// Circuits built towards ORDBs for downloads, and towards providers.
    pub source_circuits: u64,
    pub provider_circuits: u64,
    /// Circuits built to neighbour ORDBs, and neighbour channels now up (ours and built to us).
    pub neighbour_circuits: u64,
    pub neighbours_out: usize,
    pub neighbours_in: usize,
    /// `DB_INFO` adverts sent to and received from neighbours.
    pub infos_sent: u64,
    pub infos_received: u64,
    /// Adverts sent that repeated one already sent on the same channel (same hash_name, same
    /// step, same kind: own or passed on). Anything but 0 is flooding.
    pub infos_repeated: u64,
    /// Queries this node, as an ORDB, forwarded over a neighbour channel (a list entry learnt
    /// from `DB_INFO`), and of those, the ones that brought data back.
    pub forwards_via_adverts: u64,
    pub answered_via_adverts: u64,
    /// Queries this node forwarded that needed a DHT provider search (`FIND_VALUE`).
    pub provider_searches: u64,
    /// Peers dropped as free riders this session (never chosen again as ORDB, neighbour or
    /// provider).
    pub free_riders: u64,
    /// Requests this node, as an ORDB, handed to its bridge (the facilitator) because nobody
    /// in the mesh had the content.
    pub facilitated: u64,
}

/// How this node came to associate a peer with a content ([`OrdbApi::peers_known_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KnownAs {
    /// We asked it for the content as an ORDB (a download's circuit ended there). Nothing tells
    /// us whether it holds the content or relays for a holder.
    Ordb,
    /// The DHT named it a provider when this node, as an ORDB, searched for a requester.
    Provider,
    /// A neighbour this node chose (and built a neighbour circuit to) forwarded a query for the
    /// content back through that circuit: it is an ORDB relaying for someone else (a relay
    /// never forwards its own node's downloads), not the requester.
    Neighbour,
}

/// A failed DHT announcement is tried again after this, doubling per failure up to
/// [`PROVIDE_RETRY_MAX`], at most [`PROVIDE_ATTEMPTS`] times (the DHT republishes a
/// successful one by itself).
const PROVIDE_RETRY: Duration = Duration::from_secs(5);
const PROVIDE_RETRY_MAX: Duration = Duration::from_secs(300);
const PROVIDE_ATTEMPTS: u32 = 8;

/// Most (content, peer) associations remembered for [`OrdbApi::peers_known_for`].
const MAX_KNOWN: usize = 4096;

/// What a circuit of ours is for.
#[derive(Debug, Clone, Copy)]
enum CircJob {
    /// A download's source: a stream to the ORDB at the circuit's end.
    Source {
        hash_name: HashName,
        source: SourceId,
        ordb: NodeId,
    },
    /// A circuit to a provider found in the DHT, known to the relay as an [`OrdbCirc`].
    Provider { hash_name: HashName, peer: NodeId },
    /// A circuit to a neighbour ORDB, carrying our neighbour channel (and, like a provider
    /// circuit, the queries we forward to it on streams of their own).
    Neighbour { peer: NodeId },
}

#[derive(Debug)]
struct OurCirc {
    job: CircJob,
    built: bool,
    /// Hops the (latest attempt of the) build has reached so far (`CircuitExtended`).
    extended: usize,
}

#[derive(Debug, Clone, Copy)]
enum StreamJob {
    Source {
        hash_name: HashName,
        source: SourceId,
    },
    Forward(RelayId),
    /// Our end of a neighbour channel (on a [`CircJob::Neighbour`] circuit).
    Neighbour,
}

/// One stream, ours or a request stream: its framing buffers.
#[derive(Debug, Default)]
struct Pipe {
    open: bool,
    tx: Vec<u8>,
    rx: Vec<u8>,
    readable: bool,
    /// Close once `tx` is sent.
    closing: bool,
}

#[derive(Debug)]
struct OurStream {
    job: StreamJob,
    pipe: Pipe,
    /// Any byte came back on it (a source that sends nothing is a free rider).
    heard: bool,
}

/// Where a request's answers go: a request stream, or a query pipe on our end of a neighbour
/// channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqAt {
    Exit(ExitStream),
    Pipe(StreamHandle, u16),
}

/// A neighbour channel built to us: its stream, and the pipes of the queries we forward back
/// through it.
#[derive(Debug)]
struct NbIn {
    circ: OrdbCirc,
    pipe: Pipe,
    next_pipe: u16,
    pipes: FlatMap<u16, RelayId>,
}

#[derive(Debug)]
struct ReqStream {
    id: RequestId,
    pipe: Pipe,
    /// Past [`REQUEST_HIGH_WATER`] (the relay was told it is not writable).
    blocked: bool,
}

#[derive(Debug, Default)]
struct DlState {
    /// Our circuit per source.
    sources: FlatMap<SourceId, CircHandle>,
    attempts: u32,
    /// ORDBs tried, so replacements go elsewhere first.
    tried: FlatSet<NodeId>,
    last_problem: Option<String>,
    /// No circuit could be built at all (refused at once, or no ORDB known): try again then.
    retry_at: Option<Time>,
    /// Back-offs in a row (reset by a circuit that could be started).
    backoffs: u32,
}

#[derive(Debug, Default)]
struct ProviderFind {
    pending: FlatSet<CircHandle>,
    built: Vec<OrdbCirc>,
}

/// What the ORDB part uses of the rest of the node, for one call. The node makes it from its
/// own fields ([`crate::Node`]); the part reaches the onion and DHT parts only through their
/// handles.
pub(crate) struct NodeIo<'a> {
    pub me: NodeId,
    pub onion: &'a mut OnionPart,
    pub dht: &'a mut DhtPart,
    pub links: &'a LinkTable,
    pub registered: bool,
    pub reqs: &'a mut Requests,
}

impl NodeIo<'_> {
    fn onion(&mut self) -> OnionApi<'_> {
        OnionApi {
            part: self.onion,
            links: self.links,
            reqs: self.reqs,
        }
    }

    fn dht(&mut self) -> DhtApi<'_> {
        DhtApi {
            part: self.dht,
            route: Route {
                links: self.links,
                registered: self.registered,
            },
            reqs: self.reqs,
            relay_counts: (0, 0),
        }
    }

    fn emit(&mut self, e: ContentEvent) {
        self.reqs.push_back(Request::Emit(Event::Content(e)));
    }

    /// Make sure the onion part knows `id`'s key when the DHT does (a provider, a contact).
    fn learn_from_dht(&mut self, id: NodeId) {
        if let Some(c) = self.dht.kad().table().get(&id) {
            let pubkey = c.pubkey;
            let _ = self.onion().learn_peer(id, &pubkey);
        }
    }

    /// Peers that can be a content circuit's last hop: linked peers and DHT contacts, but
    /// never this node nor its bridge. A bridge takes part in the DHT (its contacts are in
    /// the table like any node's) but routes no circuit, so a circuit pinned to end there
    /// always fails. Contacts carry no "bridge" mark, so a federated bridge's DHT node is
    /// left out only once a circuit failed to reach it ([`OrdbPart`]'s unreachable peers).
    fn ordb_candidates(&self) -> Vec<NodeId> {
        let mut ids: FlatSet<NodeId> = self.links.linked_peers().into_iter().collect();
        ids.extend(self.dht.kad().table().iter().map(|(_, c)| c.id));
        ids.remove(&self.me);
        if let Some(bridge) = self.onion.bridge() {
            ids.remove(&bridge);
        }
        ids.into_iter().collect()
    }
}

/// The node's content part (see the module docs).
pub(crate) struct OrdbPart {
    cfg: ContentConfig,
    ordb: Ordb,
    rng: ChaCha20Rng,
    circs: FlatMap<CircHandle, OurCirc>,
    streams: FlatMap<StreamHandle, OurStream>,
    sources: FlatMap<(HashName, SourceId), StreamHandle>,
    forwards: FlatMap<RelayId, StreamHandle>,
    requests: FlatMap<ExitStream, ReqStream>,
    request_streams: FlatMap<RequestId, ReqAt>,
    /// Our neighbour circuits, with our channel's stream once it is open.
    nb_out: FlatMap<CircHandle, Option<StreamHandle>>,
    /// Queries neighbours sent back through our channels, by (channel, pipe).
    pipe_requests: FlatMap<(StreamHandle, u16), RequestId>,
    /// Neighbour channels built to us.
    nb_in: FlatMap<ExitStream, NbIn>,
    nb_in_circ: FlatMap<OrdbCirc, ExitStream>,
    /// Forwarded queries on a pipe of a channel built to us.
    relay_pipes: FlatMap<RelayId, (ExitStream, u16)>,
    /// Forwarded queries over neighbour channels not yet answered with data.
    advert_relays: FlatSet<RelayId>,
    /// Adverts sent: (channel, hash_name, step, own), to count repeats.
    adverts_sent: BoundedLru<(OrdbCirc, HashName, u8, bool), ()>,
    /// Peers dropped as free riders this session, and strikes of download ORDBs that sent
    /// nothing.
    banned_peers: BoundedLru<NodeId, ()>,
    peer_strikes: BoundedLru<NodeId, u8>,
    /// Peers our circuits pinned to end at them could not reach, until when (see
    /// [`UNREACHABLE_FOR`]): not chosen as an ORDB, a neighbour or a provider meanwhile.
    unreachable: BoundedLru<NodeId, Time>,
    /// No neighbour circuit is built before this (after a failure).
    nb_retry_at: Option<Time>,
    downloads: FlatMap<HashName, DlState>,
    /// DHT lookups for provider searches.
    lookups: FlatMap<u64, HashName>,
    finds: FlatMap<HashName, ProviderFind>,
    closed_circs: BoundedLru<CircHandle, ()>,
    closed_streams: BoundedLru<StreamHandle, ()>,
    known: BoundedLru<(HashName, NodeId), KnownAs>,
    /// DHT announcements under way, and failed ones waiting to be tried again (when, attempts
    /// so far). Both bounded by the relay's held contents.
    provides: FlatMap<u64, HashName>,
    provide_retry: FlatMap<HashName, (Time, u32)>,
    next_id: u64,
    provider_circuits: usize,
    stats: ContentStats,
    /// Requests handed to the bridge (the facilitator): relay id <-> request number. Bounded
    /// by the relay's `max_facilitated`.
    facilitated: FlatMap<RelayId, u32>,
    facilitated_req: FlatMap<u32, RelayId>,
    next_req: u32,
}

fn frame(msg: &DbMsg) -> Vec<u8> {
    let (cmd, body) = msg.encode();
    let mut v = Vec::with_capacity(FRAME_HEADER + body.len());
    v.push(cmd.0);
    // Bodies are at most RELAY_DATA_LEN (498) bytes: the length fits a u16.
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(&body);
    v
}

/// Take the whole frames out of `rx`. Errors are sentences; the stream must then be closed.
fn take_frames(rx: &mut Vec<u8>) -> Result<Vec<DbMsg>, String> {
    let mut msgs = Vec::new();
    let mut at = 0;
    while rx.len() - at >= FRAME_HEADER {
        let cmd = RelayCmd(rx[at]);
        let len = usize::from(u16::from_be_bytes([rx[at + 1], rx[at + 2]]));
        if len > RELAY_DATA_LEN {
            return Err(format!(
                "a content message claims {len} bytes, more than the {RELAY_DATA_LEN} allowed"
            ));
        }
        if !DbMsg::is_db_cmd(cmd) {
            return Err(format!("command {:#04x} is not a content message", cmd.0));
        }
        if rx.len() - at - FRAME_HEADER < len {
            break;
        }
        let body = &rx[at + FRAME_HEADER..at + FRAME_HEADER + len];
        msgs.push(
            DbMsg::decode(cmd, body).map_err(|e| format!("a content message is malformed: {e}"))?,
        );
        at += FRAME_HEADER + len;
    }
    rx.drain(..at);
    Ok(msgs)
}

/// A frame on a neighbour channel: the pipe number, then a stream frame.
fn frame_on_pipe(pipe: u16, msg: &DbMsg) -> Vec<u8> {
    let mut v = pipe.to_be_bytes().to_vec();
    v.extend_from_slice(&frame(msg));
    v
}

/// Take the whole frames out of a neighbour channel's `rx`, with their pipes. Errors are
/// sentences; the channel must then be closed.
fn take_pipe_frames(rx: &mut Vec<u8>) -> Result<Vec<(u16, DbMsg)>, String> {
    let mut msgs = Vec::new();
    let mut at = 0;
    while rx.len() - at >= PIPE_HEADER + FRAME_HEADER {
        let pipe = u16::from_be_bytes([rx[at], rx[at + 1]]);
        let len = usize::from(u16::from_be_bytes([rx[at + 3], rx[at + 4]]));
        let end = at + PIPE_HEADER + FRAME_HEADER + len;
        if len <= RELAY_DATA_LEN && rx.len() < end {
            break;
        }
        // take_frames checks the length and the command (and fails on a lying length).
        let mut one = rx[at + PIPE_HEADER..end.min(rx.len())].to_vec();
        match take_frames(&mut one)?.pop() {
            Some(m) => msgs.push((pipe, m)),
            None => break,
        }
        at = end;
    }
    rx.drain(..at);
    Ok(msgs)
}

fn key_of(hash_name: HashName) -> NodeId {
    NodeId(hash_name.0)
}

fn problem_sentence(p: &SourceProblem) -> String {
    match p {
        SourceProblem::TooSlow { rate_bps, best_bps } => {
            format!("too slow ({rate_bps} B/s while the best gives {best_bps} B/s)")
        }
        SourceProblem::Stalled => "it stopped answering".into(),
        SourceProblem::BadPiece { index, error } => {
            format!("it sent piece {index} corrupted ({error}); the piece is fetched elsewhere")
        }
        SourceProblem::BadMetadata(e) => format!("it sent forged metadata ({e})"),
        SourceProblem::Ended { reason, sentence } => {
            format!("it ended the request ({}: {sentence})", reason.name())
        }
        SourceProblem::Protocol(what) => format!("it broke the protocol ({what})"),
        other => format!("{other:?}"),
    }
}

impl OrdbPart {
    pub fn new(cfg: ContentConfig, seed: [u8; 32]) -> OrdbPart {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut ordb_seed = [0u8; 32];
        rng.fill_bytes(&mut ordb_seed);
        OrdbPart {
            ordb: Ordb::new(Time::ZERO, cfg.ordb.clone(), ordb_seed),
            cfg,
            rng,
            circs: FlatMap::new(),
            streams: FlatMap::new(),
            sources: FlatMap::new(),
            forwards: FlatMap::new(),
            requests: FlatMap::new(),
            request_streams: FlatMap::new(),
            nb_out: FlatMap::new(),
            pipe_requests: FlatMap::new(),
            nb_in: FlatMap::new(),
            nb_in_circ: FlatMap::new(),
            relay_pipes: FlatMap::new(),
            advert_relays: FlatSet::new(),
            adverts_sent: BoundedLru::new(MAX_ADVERTS_REMEMBERED),
            banned_peers: BoundedLru::new(MAX_BANNED_PEERS),
            peer_strikes: BoundedLru::new(MAX_BANNED_PEERS),
            unreachable: BoundedLru::new(MAX_UNREACHABLE),
            nb_retry_at: None,
            downloads: FlatMap::new(),
            lookups: FlatMap::new(),
            finds: FlatMap::new(),
            closed_circs: BoundedLru::new(CLOSED_MEMORY),
            closed_streams: BoundedLru::new(CLOSED_MEMORY),
            known: BoundedLru::new(MAX_KNOWN),
            provides: FlatMap::new(),
            provide_retry: FlatMap::new(),
            next_id: 0,
            provider_circuits: 0,
            stats: ContentStats::default(),
            facilitated: FlatMap::new(),
            facilitated_req: FlatMap::new(),
            next_req: 0,
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.ordb
            .poll_timeout()
            .into_iter()
            .chain(self.provide_retry.values().map(|(t, _)| *t))
            .chain(self.nb_retry_at)
            .chain(self.downloads.values().filter_map(|d| d.retry_at))
            .min()
    }

    fn alloc(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether an event of another part concerns this part (its circuits, streams, lookups, or
    /// a request stream to the ORDB service). Claimed events go to [`OrdbPart::on_event`]
    /// instead of the application.
    pub fn claims(&self, e: &Event) -> bool {
        match e {
            Event::Onion(o) => match o {
                OnionEvent::ServiceStreamOpened { service, .. } => {
                    service == ORDB_SERVICE || service == ORDB_NEIGHBOUR_SERVICE
                }
                OnionEvent::ServiceReadable { stream }
                | OnionEvent::ServiceWritable { stream }
                | OnionEvent::ServiceEnded { stream } => {
                    self.requests.contains_key(stream) || self.nb_in.contains_key(stream)
                }
                OnionEvent::CircuitBuilt { circ }
                | OnionEvent::CircuitClosed { circ, .. }
                | OnionEvent::CircuitExtended { circ, .. } => {
                    self.circs.contains_key(circ) || self.closed_circs.contains_key(circ)
                }
                OnionEvent::StreamOpened { stream }
                | OnionEvent::StreamReadable { stream }
                | OnionEvent::StreamWritable { stream }
                | OnionEvent::StreamEnded { stream, .. } => {
                    self.streams.contains_key(stream)
                        || self.closed_streams.contains_key(stream)
                        || self.closed_circs.contains_key(&stream.circ)
                }
            },
            Event::Dht(DhtEvent::LookupDone { lookup, .. }) => self.lookups.contains_key(lookup),
            Event::Dht(DhtEvent::Published { lookup, .. }) => self.provides.contains_key(lookup),
            _ => false,
        }
    }

    /// A claimed event.
    pub fn on_event(&mut self, now: Time, e: Event, io: &mut NodeIo<'_>) {
        match e {
            Event::Onion(o) => self.on_onion(now, o, io),
            Event::Dht(DhtEvent::LookupDone {
                lookup, providers, ..
            }) => {
                if let Some(h) = self.lookups.remove(&lookup) {
                    self.providers_found(now, h, providers, io);
                }
            }
            Event::Dht(DhtEvent::Published {
                lookup,
                holders,
                ref error,
                ..
            }) => {
                if let Some(h) = self.provides.remove(&lookup) {
                    if error.is_some() || holders == 0 {
                        self.provide_failed(now, h);
                    } else {
                        self.provide_retry.remove(&h);
                    }
                }
                // The application sees its node's announcements too (no longer claimed).
                io.reqs.push_back(Request::Emit(e));
            }
            _ => {}
        }
        self.drive(now, io);
    }

    fn on_onion(&mut self, now: Time, o: OnionEvent, io: &mut NodeIo<'_>) {
        match o {
            OnionEvent::ServiceStreamOpened { stream, service } => {
                if service == ORDB_NEIGHBOUR_SERVICE {
                    return self.neighbour_opened_to_us(now, stream, io);
                }
                let id = RequestId(self.alloc());
                self.requests.insert(
                    stream,
                    ReqStream {
                        id,
                        pipe: Pipe {
                            open: true,
                            ..Pipe::default()
                        },
                        blocked: false,
                    },
                );
                self.request_streams.insert(id, ReqAt::Exit(stream));
                self.stats.requests_served += 1;
                self.read_request(now, stream, io);
            }
            OnionEvent::ServiceReadable { stream } if self.nb_in.contains_key(&stream) => {
                self.read_nb_in(now, stream, io)
            }
            OnionEvent::ServiceWritable { stream } if self.nb_in.contains_key(&stream) => {
                self.flush_nb_in(now, stream, io)
            }
            OnionEvent::ServiceEnded { stream } if self.nb_in.contains_key(&stream) => {
                self.drop_nb_in(now, stream, io, false)
            }
            OnionEvent::ServiceReadable { stream } => self.read_request(now, stream, io),
            OnionEvent::ServiceWritable { stream } => self.flush_request(now, stream, io),
            OnionEvent::ServiceEnded { stream } => self.drop_request(now, stream, io, false),
            OnionEvent::CircuitBuilt { circ } => self.circuit_built(now, circ, io),
            OnionEvent::CircuitExtended { circ, hops } => {
                if let Some(c) = self.circs.get_mut(&circ) {
                    c.extended = hops;
                }
            }
            OnionEvent::CircuitClosed { circ, reason, .. } => {
                self.circuit_gone(now, circ, &reason, io)
            }
            OnionEvent::StreamOpened { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.pipe.open = true;
                    match s.job {
                        StreamJob::Source { hash_name, source } => self.ordb_input(
                            now,
                            OrdbInput::Download {
                                hash_name,
                                input: DownloadInput::AddSource(source),
                            },
                        ),
                        StreamJob::Neighbour => {
                            // The channel is up: the relay tells the neighbour what we hold.
                            self.nb_out.insert(stream.circ, Some(stream));
                            self.ordb_input(
                                now,
                                OrdbInput::Relay(RelayInput::CircuitUp {
                                    circ: OrdbCirc(stream.circ.0),
                                    neighbour: true,
                                }),
                            );
                        }
                        StreamJob::Forward(_) => {}
                    }
                    self.flush_stream(now, stream, io);
                }
            }
            OnionEvent::StreamReadable { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.pipe.readable = true;
                    self.read_stream(now, stream, io);
                }
            }
            OnionEvent::StreamWritable { stream } => self.flush_stream(now, stream, io),
            OnionEvent::StreamEnded { stream, reason } => {
                self.stream_gone(now, stream, reason.describe(), io)
            }
        }
    }

    fn ordb_input(&mut self, now: Time, input: OrdbInput) {
        // Errors here are the caller misusing the API (a download that is gone); the inputs
        // come from our own bookkeeping, so they are only logged by the callers that care.
        let _ = self.ordb.handle_input(now, input);
    }

    // ----- request streams (this node as an ORDB) --------------------------------------------

    fn read_request(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>) {
        loop {
            let Some(r) = self.requests.get_mut(&stream) else {
                return;
            };
            let data = io
                .onion()
                .service_read(now, stream, READ_CHUNK)
                .unwrap_or_default();
            if data.is_empty() {
                return;
            }
            r.pipe.rx.extend_from_slice(&data);
            let id = r.id;
            match take_frames(&mut r.pipe.rx) {
                Ok(msgs) => {
                    for m in msgs {
                        match m {
                            DbMsg::Query(query) => self.ordb_input(
                                now,
                                OrdbInput::Relay(RelayInput::Query { from: id, query }),
                            ),
                            DbMsg::Source(source) => self.ordb_input(
                                now,
                                OrdbInput::Relay(RelayInput::Source { from: id, source }),
                            ),
                            // Adverts belong on neighbour channels, not request streams.
                            DbMsg::Info(_) => {}
                            other => {
                                log(
                                    io.reqs,
                                    LogLevel::Info,
                                    format!(
                                        "closed a content request stream: it sent {:?} where only queries belong",
                                        other.cmd()
                                    ),
                                );
                                self.drop_request(now, stream, io, true);
                                return;
                            }
                        }
                    }
                }
                Err(sentence) => {
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!("closed a content request stream: {sentence}"),
                    );
                    self.drop_request(now, stream, io, true);
                    return;
                }
            }
        }
    }

    fn drop_request(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>, close: bool) {
        if let Some(r) = self.requests.remove(&stream) {
            self.request_streams.remove(&r.id);
            self.ordb_input(now, OrdbInput::Relay(RelayInput::RequestClosed(r.id)));
            if close {
                let _ = io.onion().service_close(now, stream);
            }
        }
    }

    fn flush_request(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>) {
        let Some(r) = self.requests.get_mut(&stream) else {
            return;
        };
        if !r.pipe.tx.is_empty() {
            match io.onion().service_write(now, stream, &r.pipe.tx) {
                Ok(n) => {
                    r.pipe.tx.drain(..n);
                }
                Err(_) => {
                    self.drop_request(now, stream, io, false);
                    return;
                }
            }
        }
        if r.pipe.closing && r.pipe.tx.is_empty() {
            self.drop_request(now, stream, io, true);
            return;
        }
        // Backpressure from the stream's flow control to the relay (and to relayed answers).
        let (id, queued, blocked) = (r.id, r.pipe.tx.len(), r.blocked);
        if !blocked && queued > REQUEST_HIGH_WATER {
            r.blocked = true;
            self.ordb_input(
                now,
                OrdbInput::Relay(RelayInput::Writable {
                    to: id,
                    writable: false,
                }),
            );
        } else if blocked && queued < REQUEST_HIGH_WATER / 2 {
            r.blocked = false;
            self.ordb_input(
                now,
                OrdbInput::Relay(RelayInput::Writable {
                    to: id,
                    writable: true,
                }),
            );
            let waiting: Vec<StreamHandle> = self
                .streams
                .iter()
                .filter(|(_, s)| {
                    s.pipe.readable
                        && matches!(s.job, StreamJob::Forward(relay)
                            if self.ordb.relay().forwarded_for(relay) == Some(id))
                })
                .map(|(h, _)| *h)
                .collect();
            for s in waiting {
                self.read_stream(now, s, io);
            }
        }
    }

    /// Whether answers for request `id` must wait (its stream is past its high-water mark).
    fn request_blocked(&self, id: RequestId) -> bool {
        match self.request_streams.get(&id) {
            Some(ReqAt::Exit(stream)) => self.requests.get(stream).is_some_and(|r| r.blocked),
            _ => false,
        }
    }

    // ----- our circuits and streams ----------------------------------------------------------

    fn circuit_built(&mut self, now: Time, circ: CircHandle, io: &mut NodeIo<'_>) {
        let Some(c) = self.circs.get_mut(&circ) else {
            return;
        };
        c.built = true;
        match c.job {
            CircJob::Source {
                hash_name, source, ..
            } => match io.onion().open_stream(now, circ, ORDB_SERVICE) {
                Ok(s) => {
                    self.streams.insert(
                        s,
                        OurStream {
                            job: StreamJob::Source { hash_name, source },
                            pipe: Pipe::default(),
                            heard: false,
                        },
                    );
                    self.sources.insert((hash_name, source), s);
                }
                Err(e) => {
                    let why = format!("no stream could be opened on it: {e}");
                    self.destroy(now, circ, io);
                    self.source_lost(now, hash_name, source, why, io);
                }
            },
            CircJob::Provider { hash_name, .. } => {
                self.ordb_input(
                    now,
                    OrdbInput::Relay(RelayInput::CircuitUp {
                        circ: OrdbCirc(circ.0),
                        neighbour: false,
                    }),
                );
                self.find_step(now, hash_name, circ, true);
            }
            CircJob::Neighbour { .. } => {
                match io.onion().open_stream(now, circ, ORDB_NEIGHBOUR_SERVICE) {
                    Ok(s) => {
                        self.streams.insert(
                            s,
                            OurStream {
                                job: StreamJob::Neighbour,
                                pipe: Pipe::default(),
                                heard: false,
                            },
                        );
                    }
                    Err(e) => {
                        log(
                            io.reqs,
                            LogLevel::Info,
                            format!("no channel could be opened to a neighbour ORDB: {e}"),
                        );
                        self.destroy(now, circ, io);
                    }
                }
            }
        }
    }

    fn circuit_gone(&mut self, now: Time, circ: CircHandle, reason: &str, io: &mut NodeIo<'_>) {
        let Some(c) = self.circs.remove(&circ) else {
            return;
        };
        self.closed_circs.insert(circ, ());
        if !c.built && c.extended + 1 == self.cfg.hops {
            // The build reached the hop before the pinned last one and went no further: the
            // last hop could not be reached (a bridge, or a peer that left).
            let peer = match c.job {
                CircJob::Source { ordb, .. } => ordb,
                CircJob::Provider { peer, .. } | CircJob::Neighbour { peer } => peer,
            };
            self.unreachable.insert(peer, now + UNREACHABLE_FOR);
        }
        let gone: Vec<StreamHandle> = self
            .streams
            .keys()
            .filter(|s| s.circ == circ)
            .copied()
            .collect();
        for s in gone {
            self.forget_stream(now, s);
        }
        match c.job {
            CircJob::Source {
                hash_name, source, ..
            } => self.source_lost(
                now,
                hash_name,
                source,
                format!("its circuit closed: {reason}"),
                io,
            ),
            CircJob::Neighbour { .. } => self.neighbour_gone(now, circ),
            CircJob::Provider { hash_name, .. } => {
                self.provider_circuits = self.provider_circuits.saturating_sub(1);
                if c.built {
                    self.ordb_input(
                        now,
                        OrdbInput::Relay(RelayInput::CircuitDown(OrdbCirc(circ.0))),
                    );
                }
                self.find_step(now, hash_name, circ, false);
            }
        }
    }

    fn stream_gone(&mut self, now: Time, stream: StreamHandle, reason: &str, io: &mut NodeIo<'_>) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        let job = s.job;
        self.forget_stream(now, stream);
        match job {
            StreamJob::Source { hash_name, source } => {
                // One stream per source circuit: the circuit has no further use.
                self.destroy(now, stream.circ, io);
                self.source_lost(
                    now,
                    hash_name,
                    source,
                    format!("its stream ended: {reason}"),
                    io,
                );
            }
            StreamJob::Neighbour => {
                // The channel is the neighbour circuit's reason to be: build another.
                self.destroy(now, stream.circ, io);
            }
            StreamJob::Forward(_) => {}
        }
    }

    /// Drop a stream's bookkeeping and tell the content layer.
    fn forget_stream(&mut self, now: Time, stream: StreamHandle) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        self.closed_streams.insert(stream, ());
        match s.job {
            StreamJob::Source { hash_name, source } => {
                self.sources.remove(&(hash_name, source));
            }
            StreamJob::Forward(relay) => {
                self.forwards.remove(&relay);
                self.advert_relays.remove(&relay);
                self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
            }
            StreamJob::Neighbour => {
                // Queries the neighbour sent back through this channel end with it.
                let pipes: Vec<(StreamHandle, u16)> = self
                    .pipe_requests
                    .range((stream, 0)..=(stream, u16::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                for k in pipes {
                    if let Some(id) = self.pipe_requests.remove(&k) {
                        self.request_streams.remove(&id);
                        self.ordb_input(now, OrdbInput::Relay(RelayInput::RequestClosed(id)));
                    }
                }
            }
        }
    }

    fn destroy(&mut self, now: Time, circ: CircHandle, io: &mut NodeIo<'_>) {
        if let Some(c) = self.circs.remove(&circ) {
            match c.job {
                CircJob::Provider { .. } => {
                    self.provider_circuits = self.provider_circuits.saturating_sub(1);
                    if c.built {
                        self.ordb_input(
                            now,
                            OrdbInput::Relay(RelayInput::CircuitDown(OrdbCirc(circ.0))),
                        );
                    }
                }
                CircJob::Neighbour { .. } => self.neighbour_gone(now, circ),
                CircJob::Source { .. } => {}
            }
        }
        self.closed_circs.insert(circ, ());
        let _ = io.onion().destroy(circ);
    }

    fn read_stream(&mut self, now: Time, stream: StreamHandle, io: &mut NodeIo<'_>) {
        loop {
            let Some(s) = self.streams.get_mut(&stream) else {
                return;
            };
            let is_source = matches!(s.job, StreamJob::Source { .. });
            if is_source && !self.ordb.wants_source_data() {
                // The store is behind: leave the bytes in the circuit (its windows push back).
                return;
            }
            if let StreamJob::Forward(relay) = s.job {
                let to = self.ordb.relay().forwarded_for(relay);
                if to.is_some_and(|to| self.request_blocked(to)) {
                    // The requester reads slowly: leave the answers in the upstream circuit.
                    return;
                }
            }
            let Some(s) = self.streams.get_mut(&stream) else {
                return;
            };
            let data = io.onion().read(now, stream, READ_CHUNK).unwrap_or_default();
            if data.is_empty() {
                s.pipe.readable = false;
                return;
            }
            s.pipe.rx.extend_from_slice(&data);
            s.heard = true;
            let job = s.job;
            if let StreamJob::Neighbour = job {
                match take_pipe_frames(&mut s.pipe.rx) {
                    Ok(msgs) => {
                        for (pipe, msg) in msgs {
                            if let Err(sentence) = self.on_our_channel(now, stream, pipe, msg, io) {
                                log(
                                    io.reqs,
                                    LogLevel::Info,
                                    format!("closed a channel to a neighbour ORDB: {sentence}"),
                                );
                                let _ = io.onion().close_stream(now, stream);
                                self.stream_gone(now, stream, &sentence, io);
                                return;
                            }
                        }
                    }
                    Err(sentence) => {
                        log(
                            io.reqs,
                            LogLevel::Info,
                            format!("closed a channel to a neighbour ORDB: {sentence}"),
                        );
                        let _ = io.onion().close_stream(now, stream);
                        self.stream_gone(now, stream, &sentence, io);
                        return;
                    }
                }
                self.drive(now, io);
                continue;
            }
            match take_frames(&mut s.pipe.rx) {
                Ok(msgs) => {
                    for msg in msgs {
                        let input = match job {
                            StreamJob::Source { hash_name, source } => OrdbInput::Download {
                                hash_name,
                                input: DownloadInput::Message { source, msg },
                            },
                            StreamJob::Forward(relay) => {
                                if matches!(msg, DbMsg::Data(_))
                                    && self.advert_relays.remove(&relay)
                                {
                                    self.stats.answered_via_adverts += 1;
                                }
                                OrdbInput::Relay(RelayInput::Upstream { relay, msg })
                            }
                            StreamJob::Neighbour => continue,
                        };
                        self.ordb_input(now, input);
                    }
                }
                Err(sentence) => {
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!("closed a content stream to an ORDB: {sentence}"),
                    );
                    let _ = io.onion().close_stream(now, stream);
                    self.stream_gone(now, stream, &sentence, io);
                    return;
                }
            }
            // Carry out what the messages asked (more queries, replacements) before reading on.
            self.drive(now, io);
        }
    }

    fn flush_stream(&mut self, now: Time, stream: StreamHandle, io: &mut NodeIo<'_>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.pipe.open {
            return;
        }
        if !s.pipe.tx.is_empty() {
            match io.onion().write(now, stream, &s.pipe.tx) {
                Ok(n) => {
                    s.pipe.tx.drain(..n);
                }
                Err(e) => {
                    let why = format!("writing failed: {e}");
                    self.stream_gone(now, stream, &why, io);
                    return;
                }
            }
        }
        if s.pipe.closing && s.pipe.tx.is_empty() {
            let _ = io.onion().close_stream(now, stream);
            self.forget_stream(now, stream);
        }
    }

    /// Queue a message on one of our streams (sent once open).
    fn send_on(&mut self, now: Time, stream: StreamHandle, msg: &DbMsg, io: &mut NodeIo<'_>) {
        self.send_bytes(now, stream, &frame(msg), io);
    }

    /// Queue framed bytes on one of our streams (sent once open).
    fn send_bytes(&mut self, now: Time, stream: StreamHandle, bytes: &[u8], io: &mut NodeIo<'_>) {
        let max = self.cfg.max_stream_buffer;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.pipe.tx.extend_from_slice(bytes);
        if s.pipe.tx.len() > max {
            log(
                io.reqs,
                LogLevel::Warn,
                format!(
                    "a content stream has {} bytes waiting to be sent; closing it",
                    s.pipe.tx.len()
                ),
            );
            let _ = io.onion().close_stream(now, stream);
            self.stream_gone(now, stream, "too much waiting to be sent", io);
            return;
        }
        self.flush_stream(now, stream, io);
    }

    // ----- neighbour channels ----------------------------------------------------------------

    /// Whether this node holds anything it advertises (a quarter of some content or more).
    fn has_adverts(&self) -> bool {
        let relay = self.ordb.relay();
        relay
            .held_names()
            .any(|h| relay.held_completion(&h).is_some())
    }

    /// Keep [`ContentConfig::neighbours`] neighbour circuits once there is something to
    /// advertise: built to peers chosen at random among linked peers and DHT contacts, never
    /// one dropped as a free rider, nor one already a neighbour.
    fn ensure_neighbours(&mut self, now: Time, io: &mut NodeIo<'_>) {
        if self.nb_out.len() >= self.cfg.neighbours {
            return;
        }
        if self.nb_retry_at.is_some_and(|t| now < t) || !self.has_adverts() {
            return;
        }
        self.nb_retry_at = None;
        let current: FlatSet<NodeId> = self
            .circs
            .values()
            .filter_map(|c| match c.job {
                CircJob::Neighbour { peer } => Some(peer),
                _ => None,
            })
            .collect();
        let mut pool: Vec<NodeId> = io
            .ordb_candidates()
            .into_iter()
            .filter(|p| !current.contains(p) && self.usable_peer(now, p))
            .collect();
        while self.nb_out.len() < self.cfg.neighbours && !pool.is_empty() {
            let peer = pool.swap_remove((self.rng.next_u64() % pool.len() as u64) as usize);
            io.learn_from_dht(peer);
            match io
                .onion()
                .build_pinned(now, self.cfg.hops, &PathPins::last(peer))
            {
                Ok((circ, _)) => {
                    self.stats.neighbour_circuits += 1;
                    self.nb_out.insert(circ, None);
                    self.circs.insert(
                        circ,
                        OurCirc {
                            job: CircJob::Neighbour { peer },
                            built: false,
                            extended: 0,
                        },
                    );
                }
                Err(e) => {
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!("no circuit to a neighbour ORDB yet: {e}; trying again soon"),
                    );
                    self.nb_retry_at = Some(now + NEIGHBOUR_RETRY);
                    return;
                }
            }
        }
    }

    /// One of our neighbour circuits is gone: the relay forgets it; another is built after
    /// [`NEIGHBOUR_RETRY`].
    fn neighbour_gone(&mut self, now: Time, circ: CircHandle) {
        let Some(stream) = self.nb_out.remove(&circ) else {
            return;
        };
        if let Some(stream) = stream {
            self.forget_stream(now, stream);
            self.ordb_input(
                now,
                OrdbInput::Relay(RelayInput::CircuitDown(OrdbCirc(circ.0))),
            );
        }
        self.nb_retry_at.get_or_insert(now + NEIGHBOUR_RETRY);
    }

    /// A message on a pipe of our end of a neighbour channel: adverts on pipe 0, queries the
    /// neighbour forwards back to us on the others. Errors are sentences (close the channel).
    fn on_our_channel(
        &mut self,
        now: Time,
        stream: StreamHandle,
        pipe: u16,
        msg: DbMsg,
        io: &mut NodeIo<'_>,
    ) -> Result<(), String> {
        match (pipe, msg) {
            (PIPE_ADVERTS, DbMsg::Info(info)) => {
                self.stats.infos_received += 1;
                self.ordb_input(
                    now,
                    OrdbInput::Relay(RelayInput::Info {
                        from: OrdbCirc(stream.circ.0),
                        info,
                    }),
                );
                Ok(())
            }
            (PIPE_ADVERTS, other) => Err(format!(
                "it sent {:?} on the advert pipe, where only DB_INFO belongs",
                other.cmd()
            )),
            (_, DbMsg::Source(source)) => {
                // Sent before the pipe's first query (see "Facilitators" in the module docs).
                if let Some(from) = self.pipe_request(now, stream, pipe, io) {
                    self.ordb_input(now, OrdbInput::Relay(RelayInput::Source { from, source }));
                }
                Ok(())
            }
            (_, DbMsg::Query(query)) => {
                let Some(id) = self.pipe_request(now, stream, pipe, io) else {
                    return Ok(());
                };
                // What this node could learn: the neighbour it chose asked, as an ORDB.
                if let Some(CircJob::Neighbour { peer }) =
                    self.circs.get(&stream.circ).map(|c| c.job)
                {
                    if !self.known.contains_key(&(query.hash_name, peer)) {
                        self.known
                            .insert((query.hash_name, peer), KnownAs::Neighbour);
                    }
                }
                self.ordb_input(now, OrdbInput::Relay(RelayInput::Query { from: id, query }));
                Ok(())
            }
            (_, DbMsg::End(_)) => {
                // The neighbour is done with that pipe.
                if let Some(id) = self.pipe_requests.remove(&(stream, pipe)) {
                    self.request_streams.remove(&id);
                    self.ordb_input(now, OrdbInput::Relay(RelayInput::RequestClosed(id)));
                }
                Ok(())
            }
            (_, other) => Err(format!(
                "it sent {:?} on a query pipe, where only queries belong",
                other.cmd()
            )),
        }
    }

    /// The request a query pipe of our channel carries, opened on its first message; `None`
    /// (answered `BUSY`) past [`MAX_PIPES`].
    fn pipe_request(
        &mut self,
        now: Time,
        stream: StreamHandle,
        pipe: u16,
        io: &mut NodeIo<'_>,
    ) -> Option<RequestId> {
        if let Some(id) = self.pipe_requests.get(&(stream, pipe)) {
            return Some(*id);
        }
        let open = self
            .pipe_requests
            .range((stream, 0)..=(stream, u16::MAX))
            .count();
        if open >= MAX_PIPES {
            let end = DbMsg::End(DbEnd::with_sentence(
                DbEndReason::BUSY,
                "Too many requests on this channel.",
            ));
            self.send_bytes(now, stream, &frame_on_pipe(pipe, &end), io);
            return None;
        }
        let id = RequestId(self.alloc());
        self.pipe_requests.insert((stream, pipe), id);
        self.request_streams.insert(id, ReqAt::Pipe(stream, pipe));
        self.stats.requests_served += 1;
        Some(id)
    }

    /// A neighbour channel built to us opened: the relay counts the far end as a neighbour
    /// (and tells it what we hold). We never learn who built it.
    fn neighbour_opened_to_us(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>) {
        if self.nb_in.len() >= self.cfg.ordb.relay.max_circuits {
            let _ = io.onion().service_close(now, stream);
            return;
        }
        let circ = OrdbCirc(INBOUND_BIT | self.alloc());
        self.nb_in.insert(
            stream,
            NbIn {
                circ,
                pipe: Pipe {
                    open: true,
                    ..Pipe::default()
                },
                next_pipe: 0,
                pipes: FlatMap::new(),
            },
        );
        self.nb_in_circ.insert(circ, stream);
        self.ordb_input(
            now,
            OrdbInput::Relay(RelayInput::CircuitUp {
                circ,
                neighbour: true,
            }),
        );
        self.read_nb_in(now, stream, io);
    }

    fn read_nb_in(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>) {
        loop {
            let Some(nb) = self.nb_in.get_mut(&stream) else {
                return;
            };
            let data = io
                .onion()
                .service_read(now, stream, READ_CHUNK)
                .unwrap_or_default();
            if data.is_empty() {
                return;
            }
            nb.pipe.rx.extend_from_slice(&data);
            let from = nb.circ;
            let msgs = match take_pipe_frames(&mut nb.pipe.rx) {
                Ok(m) => m,
                Err(sentence) => {
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!("closed a neighbour channel built to us: {sentence}"),
                    );
                    return self.drop_nb_in(now, stream, io, true);
                }
            };
            for (pipe, msg) in msgs {
                match (pipe, msg) {
                    (PIPE_ADVERTS, DbMsg::Info(info)) => {
                        self.stats.infos_received += 1;
                        self.ordb_input(now, OrdbInput::Relay(RelayInput::Info { from, info }));
                    }
                    // Answers to a query we forwarded; a DB_INFO there says the answers come
                    // from a facilitator (passed on to the requester by the relay).
                    (
                        p,
                        msg @ (DbMsg::Connected(_)
                        | DbMsg::Proof(_)
                        | DbMsg::Data(_)
                        | DbMsg::End(_)
                        | DbMsg::Info(_)),
                    ) if p != PIPE_ADVERTS => {
                        let Some(nb) = self.nb_in.get_mut(&stream) else {
                            return;
                        };
                        // A pipe we closed may still bring late answers: dropped.
                        let Some(&relay) = nb.pipes.get(&p) else {
                            continue;
                        };
                        if matches!(msg, DbMsg::End(_)) {
                            nb.pipes.remove(&p);
                            self.relay_pipes.remove(&relay);
                        }
                        if matches!(msg, DbMsg::Data(_)) && self.advert_relays.remove(&relay) {
                            self.stats.answered_via_adverts += 1;
                        }
                        self.ordb_input(now, OrdbInput::Relay(RelayInput::Upstream { relay, msg }));
                    }
                    (_, other) => {
                        log(
                            io.reqs,
                            LogLevel::Info,
                            format!(
                                "closed a neighbour channel built to us: it sent {:?} out of place",
                                other.cmd()
                            ),
                        );
                        return self.drop_nb_in(now, stream, io, true);
                    }
                }
            }
            self.drive(now, io);
        }
    }

    fn flush_nb_in(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>) {
        let Some(nb) = self.nb_in.get_mut(&stream) else {
            return;
        };
        if nb.pipe.tx.is_empty() {
            return;
        }
        match io.onion().service_write(now, stream, &nb.pipe.tx) {
            Ok(n) => {
                nb.pipe.tx.drain(..n);
            }
            Err(_) => self.drop_nb_in(now, stream, io, false),
        }
    }

    /// Queue a message on a pipe of a neighbour channel built to us.
    fn send_nb_in(
        &mut self,
        now: Time,
        stream: ExitStream,
        pipe: u16,
        msg: &DbMsg,
        io: &mut NodeIo<'_>,
    ) {
        let max = self.cfg.max_stream_buffer;
        let Some(nb) = self.nb_in.get_mut(&stream) else {
            return;
        };
        nb.pipe.tx.extend_from_slice(&frame_on_pipe(pipe, msg));
        if nb.pipe.tx.len() > max {
            log(
                io.reqs,
                LogLevel::Warn,
                "a neighbour channel built to us is not reading; closing it".into(),
            );
            return self.drop_nb_in(now, stream, io, true);
        }
        self.flush_nb_in(now, stream, io);
    }

    fn drop_nb_in(&mut self, now: Time, stream: ExitStream, io: &mut NodeIo<'_>, close: bool) {
        let Some(nb) = self.nb_in.remove(&stream) else {
            return;
        };
        self.nb_in_circ.remove(&nb.circ);
        for relay in nb.pipes.values() {
            self.relay_pipes.remove(relay);
            self.advert_relays.remove(relay);
        }
        // The relay fails (and retries elsewhere) what was forwarded through it.
        self.ordb_input(now, OrdbInput::Relay(RelayInput::CircuitDown(nb.circ)));
        if close {
            let _ = io.onion().service_close(now, stream);
        }
    }

    /// Send a `DB_INFO` on the advert pipe of a neighbour channel, counting repeats.
    fn send_info(&mut self, now: Time, to: OrdbCirc, info: DbInfo, io: &mut NodeIo<'_>) {
        let own = self.ordb.relay().held_completion(&info.hash_name) == Some(info.completion);
        let key = (to, info.hash_name, info.completion as u8, own);
        let msg = DbMsg::Info(info);
        if to.0 & INBOUND_BIT != 0 {
            let Some(&stream) = self.nb_in_circ.get(&to) else {
                return;
            };
            self.send_nb_in(now, stream, PIPE_ADVERTS, &msg, io);
        } else {
            let Some(&Some(stream)) = self.nb_out.get(&CircHandle(to.0)) else {
                return;
            };
            self.send_bytes(now, stream, &frame_on_pipe(PIPE_ADVERTS, &msg), io);
        }
        self.stats.infos_sent += 1;
        if self.adverts_sent.contains_key(&key) {
            self.stats.infos_repeated += 1;
        } else {
            self.adverts_sent.insert(key, ());
        }
    }

    /// Forward a query on a pipe of a neighbour channel built to us.
    fn forward_on_pipe(
        &mut self,
        now: Time,
        relay: RelayId,
        via: OrdbCirc,
        query: DbQuery,
        source: Option<DbSource>,
        io: &mut NodeIo<'_>,
    ) {
        let msg = DbMsg::Query(query);
        if let Some(&(stream, pipe)) = self.relay_pipes.get(&relay) {
            return self.send_nb_in(now, stream, pipe, &msg, io);
        }
        let Some(&stream) = self.nb_in_circ.get(&via) else {
            return self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        };
        let Some(nb) = self.nb_in.get_mut(&stream) else {
            return self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        };
        if nb.pipes.len() >= MAX_PIPES {
            return self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        }
        let mut pipe = nb.next_pipe;
        loop {
            pipe = pipe.wrapping_add(1);
            if pipe != PIPE_ADVERTS && !nb.pipes.contains_key(&pipe) {
                break;
            }
        }
        nb.next_pipe = pipe;
        nb.pipes.insert(pipe, relay);
        self.relay_pipes.insert(relay, (stream, pipe));
        self.stats.forwards_via_adverts += 1;
        self.advert_relays.insert(relay);
        if let Some(source) = source {
            self.send_nb_in(now, stream, pipe, &DbMsg::Source(source), io);
        }
        self.send_nb_in(now, stream, pipe, &msg, io);
    }

    /// A download's ORDB accepted a request and sent nothing back: at the relay's
    /// [`onionmesh_ordb::RelayConfig::free_rider_strikes`] such strikes it is dropped as a free
    /// rider.
    fn strike_peer(&mut self, now: Time, peer: NodeId, io: &mut NodeIo<'_>) {
        let strikes = self.peer_strikes.peek(&peer).copied().unwrap_or(0) + 1;
        self.peer_strikes.insert(peer, strikes);
        if strikes >= self.cfg.ordb.relay.free_rider_strikes {
            self.ban_peer(
                now,
                peer,
                "took download requests and sent nothing back",
                io,
            );
        }
    }

    /// Drop a peer as a free rider for the session: it is never chosen again as a download's
    /// ORDB, a neighbour or a provider, and our circuits to it go.
    fn ban_peer(&mut self, now: Time, peer: NodeId, why: &str, io: &mut NodeIo<'_>) {
        if self.banned_peers.contains_key(&peer) {
            return;
        }
        self.banned_peers.insert(peer, ());
        self.stats.free_riders += 1;
        log(
            io.reqs,
            LogLevel::Info,
            format!(
                "ORDB: peer {} {why}; it is not asked again this session",
                peer.short()
            ),
        );
        let circs: Vec<CircHandle> = self
            .circs
            .iter()
            .filter(|(_, c)| match c.job {
                CircJob::Neighbour { peer: p } | CircJob::Provider { peer: p, .. } => p == peer,
                CircJob::Source { .. } => false,
            })
            .map(|(h, _)| *h)
            .collect();
        for c in circs {
            self.destroy(now, c, io);
        }
    }

    /// Whether `peer` may end one of our circuits now: not dropped as a free rider, not an
    /// unreachable last hop lately.
    fn usable_peer(&self, now: Time, peer: &NodeId) -> bool {
        !self.banned_peers.contains_key(peer)
            && self
                .unreachable
                .peek(peer)
                .is_none_or(|until| *until <= now)
    }

    // ----- downloads -------------------------------------------------------------------------

    /// Build circuits to ORDBs until the download has its sources or its attempts are spent.
    ///
    /// Only a circuit that was started counts as a source attempt. A build refused at once
    /// (no path yet, no key for that ORDB, too many circuits) is tried with up to
    /// [`SYNC_FAILURES_PER_TOP_UP`] other ORDBs; then, or when no ORDB is known at all, the
    /// download backs off ([`TOP_UP_RETRY`], doubling) and tries again from
    /// [`OrdbPart::handle_timeout`]. After [`MAX_TOP_UP_BACKOFFS`] back-offs in a row with no
    /// source it fails with a sentence.
    fn top_up(&mut self, now: Time, hash_name: HashName, io: &mut NodeIo<'_>) {
        let hops = self.cfg.hops;
        let mut refused = 0u32;
        loop {
            let Some(d) = self.downloads.get(&hash_name) else {
                return;
            };
            if d.sources.len() >= self.cfg.sources {
                return;
            }
            if d.retry_at.is_some_and(|t| now < t) {
                return;
            }
            if d.attempts >= self.cfg.max_source_attempts {
                if d.sources.is_empty() {
                    let why = d.last_problem.clone().unwrap_or_else(|| "no answer".into());
                    let reason = format!(
                        "{} could not be downloaded: {} circuits to ORDBs were tried and none delivered it (last: {why}); check the link, or try again when the publisher or another holder is online",
                        hash_name.to_hex(),
                        d.attempts,
                    );
                    self.fail(now, hash_name, reason, io);
                }
                return;
            }
            let candidates: Vec<NodeId> = io
                .ordb_candidates()
                .into_iter()
                .filter(|c| self.usable_peer(now, c))
                .collect();
            let fresh: Vec<NodeId> = candidates
                .iter()
                .filter(|c| !d.tried.contains(c))
                .copied()
                .collect();
            let pool = if fresh.is_empty() { candidates } else { fresh };
            if pool.is_empty() || refused >= SYNC_FAILURES_PER_TOP_UP {
                if pool.is_empty() {
                    let Some(d) = self.downloads.get_mut(&hash_name) else {
                        return;
                    };
                    d.last_problem = Some("this node knows no ORDB to ask yet".into());
                }
                return self.back_off(now, hash_name, io);
            }
            let ordb = pool[(self.rng.next_u64() % pool.len() as u64) as usize];
            io.learn_from_dht(ordb);
            let source = SourceId(self.alloc());
            let built = io.onion().build_pinned(now, hops, &PathPins::last(ordb));
            let Some(d) = self.downloads.get_mut(&hash_name) else {
                return;
            };
            d.tried.insert(ordb);
            match built {
                Ok((circ, _path)) => {
                    d.attempts += 1;
                    d.backoffs = 0;
                    d.sources.insert(source, circ);
                    if !self.known.contains_key(&(hash_name, ordb)) {
                        self.known.insert((hash_name, ordb), KnownAs::Ordb);
                    }
                    self.stats.source_circuits += 1;
                    self.circs.insert(
                        circ,
                        OurCirc {
                            job: CircJob::Source {
                                hash_name,
                                source,
                                ordb,
                            },
                            built: false,
                            extended: 0,
                        },
                    );
                }
                Err(e) => {
                    // Refused before any cell left: no source attempt.
                    d.last_problem = Some(format!("no circuit to an ORDB could be built: {e}"));
                    refused += 1;
                }
            }
        }
    }

    /// No circuit could be started for a download: try again later, or fail it after
    /// [`MAX_TOP_UP_BACKOFFS`] back-offs in a row while it has no source.
    fn back_off(&mut self, now: Time, hash_name: HashName, io: &mut NodeIo<'_>) {
        let Some(d) = self.downloads.get_mut(&hash_name) else {
            return;
        };
        if !d.sources.is_empty() {
            // It goes on with what it has; more sources are tried at the next loss, and later.
            d.retry_at = Some(now + TOP_UP_RETRY_MAX);
            return;
        }
        d.backoffs += 1;
        if d.backoffs > MAX_TOP_UP_BACKOFFS {
            let why = d
                .last_problem
                .clone()
                .unwrap_or_else(|| "no circuit could be built".into());
            let reason = format!(
                "{} could not be downloaded: no circuit to an ORDB could be started for several minutes (last: {why}); wait until this node has more peers and try again",
                hash_name.to_hex()
            );
            return self.fail(now, hash_name, reason, io);
        }
        let delay = TOP_UP_RETRY
            .saturating_mul(1 << (d.backoffs - 1).min(16))
            .min(TOP_UP_RETRY_MAX);
        d.retry_at = Some(now + delay);
    }

    /// A source's circuit or stream is gone (or never came up): tell the download, replace it.
    fn source_lost(
        &mut self,
        now: Time,
        hash_name: HashName,
        source: SourceId,
        why: String,
        io: &mut NodeIo<'_>,
    ) {
        if let Some(s) = self.sources.remove(&(hash_name, source)) {
            self.streams.remove(&s);
            self.closed_streams.insert(s, ());
        }
        let Some(d) = self.downloads.get_mut(&hash_name) else {
            return;
        };
        if d.sources.remove(&source).is_some() {
            d.last_problem = Some(why);
            self.stats.sources_dropped += 1;
            self.ordb_input(
                now,
                OrdbInput::Download {
                    hash_name,
                    input: DownloadInput::RemoveSource(source),
                },
            );
            self.top_up(now, hash_name, io);
        }
    }

    fn end_download(&mut self, now: Time, hash_name: HashName, io: &mut NodeIo<'_>) {
        if let Some(d) = self.downloads.remove(&hash_name) {
            for (source, circ) in d.sources {
                if let Some(s) = self.sources.remove(&(hash_name, source)) {
                    self.streams.remove(&s);
                    self.closed_streams.insert(s, ());
                }
                self.destroy(now, circ, io);
            }
        }
    }

    fn fail(&mut self, now: Time, hash_name: HashName, reason: String, io: &mut NodeIo<'_>) {
        let _ = self.ordb.cancel(&hash_name);
        self.end_download(now, hash_name, io);
        log(io.reqs, LogLevel::Warn, reason.clone());
        io.emit(ContentEvent::Failed { hash_name, reason });
    }

    // ----- provider searches (this node relaying) --------------------------------------------

    fn find_providers(&mut self, now: Time, hash_name: HashName, io: &mut NodeIo<'_>) {
        match io.dht().find_value(now, key_of(hash_name)) {
            Ok(lookup) => {
                self.lookups.insert(lookup, hash_name);
                self.finds.entry(hash_name).or_default();
            }
            Err(e) => {
                log(
                    io.reqs,
                    LogLevel::Info,
                    format!("cannot look for providers of {}: {e}", hash_name.to_hex()),
                );
                self.ordb_input(
                    now,
                    OrdbInput::Relay(RelayInput::Providers {
                        hash_name,
                        circs: Vec::new(),
                    }),
                );
            }
        }
    }

    fn providers_found(
        &mut self,
        now: Time,
        hash_name: HashName,
        providers: Vec<NodeId>,
        io: &mut NodeIo<'_>,
    ) {
        log(
            io.reqs,
            LogLevel::Info,
            format!(
                "ORDB: the DHT names {} provider(s) of {}",
                providers.len(),
                hash_name.to_hex()
            ),
        );
        let mut pending = FlatSet::new();
        let me = io.me;
        let usable: Vec<NodeId> = providers
            .into_iter()
            .filter(|p| *p != me && self.usable_peer(now, p))
            .take(self.cfg.providers_per_find)
            .collect();
        for p in usable {
            if self.provider_circuits >= self.cfg.max_provider_circuits {
                break;
            }
            io.learn_from_dht(p);
            self.known.insert((hash_name, p), KnownAs::Provider);
            match io
                .onion()
                .build_pinned(now, self.cfg.hops, &PathPins::last(p))
            {
                Ok((circ, _)) => {
                    self.provider_circuits += 1;
                    self.stats.provider_circuits += 1;
                    self.circs.insert(
                        circ,
                        OurCirc {
                            job: CircJob::Provider { hash_name, peer: p },
                            built: false,
                            extended: 0,
                        },
                    );
                    pending.insert(circ);
                }
                Err(e) => log(
                    io.reqs,
                    LogLevel::Info,
                    format!("no circuit to a provider of {}: {e}", hash_name.to_hex()),
                ),
            }
        }
        let f = self.finds.entry(hash_name).or_default();
        f.pending = pending;
        if f.pending.is_empty() {
            let circs = std::mem::take(&mut f.built);
            self.finds.remove(&hash_name);
            self.ordb_input(
                now,
                OrdbInput::Relay(RelayInput::Providers { hash_name, circs }),
            );
        }
    }

    /// A provider circuit of a search came up (`built`) or failed.
    fn find_step(&mut self, now: Time, hash_name: HashName, circ: CircHandle, built: bool) {
        let Some(f) = self.finds.get_mut(&hash_name) else {
            return;
        };
        if !f.pending.remove(&circ) {
            return;
        }
        if built {
            f.built.push(OrdbCirc(circ.0));
        }
        if f.pending.is_empty() {
            let circs = std::mem::take(&mut f.built);
            self.finds.remove(&hash_name);
            self.ordb_input(
                now,
                OrdbInput::Relay(RelayInput::Providers { hash_name, circs }),
            );
        }
    }

    // ----- DHT announcements -------------------------------------------------------------------

    fn provide(&mut self, now: Time, h: HashName, io: &mut NodeIo<'_>) {
        match io.dht().publish(now, key_of(h)) {
            Ok(lookup) => {
                self.provides.insert(lookup, h);
            }
            Err(e) => {
                log(
                    io.reqs,
                    LogLevel::Info,
                    format!(
                        "cannot announce {} in the DHT yet: {e}; trying again soon, and it is served to ORDBs that ask meanwhile",
                        h.to_hex()
                    ),
                );
                self.provide_failed(now, h);
            }
        }
    }

    fn provide_failed(&mut self, now: Time, h: HashName) {
        let attempts = self.provide_retry.get(&h).map_or(0, |(_, a)| *a) + 1;
        if attempts > PROVIDE_ATTEMPTS || self.ordb.relay().held(&h).is_none() {
            self.provide_retry.remove(&h);
            return;
        }
        let delay = PROVIDE_RETRY
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(PROVIDE_RETRY_MAX);
        self.provide_retry.insert(h, (now + delay, attempts));
    }

    // ----- the content layer's outputs -------------------------------------------------------

    /// Carry out everything the content layer asks, in order.
    pub fn drive(&mut self, now: Time, io: &mut NodeIo<'_>) {
        while let Some(o) = self.ordb.poll_output() {
            match o {
                OrdbOutput::Store { id, request } => io
                    .reqs
                    .push_back(Request::Driver(Output::Store { id, request })),
                OrdbOutput::ToSource {
                    hash_name,
                    source,
                    msg,
                } => {
                    if let Some(&s) = self.sources.get(&(hash_name, source)) {
                        self.send_on(now, s, &msg, io);
                    }
                }
                OrdbOutput::ReplaceSource {
                    hash_name,
                    source,
                    problem,
                } => {
                    if matches!(problem, SourceProblem::BadPiece { .. }) {
                        self.stats.bad_pieces += 1;
                    }
                    let why = problem_sentence(&problem);
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!(
                            "download of {}: dropped a source because {why}",
                            hash_name.to_hex()
                        ),
                    );
                    if let SourceProblem::Ended {
                        reason: DbEndReason::NOT_FOUND,
                        sentence,
                    } = &problem
                    {
                        // A facilitator searched outside the mesh and found nothing: other
                        // ORDBs' facilitators would search the same world, so the download
                        // stops now with its sentence (a descriptor already held means the
                        // content exists: then it is one source's problem only).
                        if self.ordb.descriptor(&hash_name).is_none()
                            && self.downloads.contains_key(&hash_name)
                        {
                            let reason = format!(
                                "{} could not be downloaded: a facilitator looked outside the mesh and found nothing ({sentence})",
                                hash_name.to_hex()
                            );
                            self.fail(now, hash_name, reason, io);
                            continue;
                        }
                    }
                    let circ = self
                        .downloads
                        .get(&hash_name)
                        .and_then(|d| d.sources.get(&source).copied());
                    if matches!(problem, SourceProblem::Stalled) {
                        // Accepted the request, then neither served nor relayed a byte.
                        let heard = self
                            .sources
                            .get(&(hash_name, source))
                            .and_then(|s| self.streams.get(s))
                            .is_some_and(|s| s.heard);
                        let ordb =
                            circ.and_then(|c| self.circs.get(&c))
                                .and_then(|c| match c.job {
                                    CircJob::Source { ordb, .. } => Some(ordb),
                                    _ => None,
                                });
                        if let (false, Some(ordb)) = (heard, ordb) {
                            self.strike_peer(now, ordb, io);
                        }
                    }
                    if let Some(circ) = circ {
                        self.destroy(now, circ, io);
                    }
                    // The download already dropped it: no RemoveSource, but count and replace.
                    if let Some(s) = self.sources.remove(&(hash_name, source)) {
                        self.streams.remove(&s);
                        self.closed_streams.insert(s, ());
                    }
                    if let Some(d) = self.downloads.get_mut(&hash_name) {
                        d.sources.remove(&source);
                        d.last_problem = Some(why);
                        self.stats.sources_dropped += 1;
                    }
                    self.top_up(now, hash_name, io);
                }
                OrdbOutput::Relay(r) => self.relay_output(now, r, io),
                OrdbOutput::Event(e) => self.ordb_event(now, e, io),
            }
        }
        self.ensure_neighbours(now, io);
    }

    fn relay_output(&mut self, now: Time, r: RelayOutput, io: &mut NodeIo<'_>) {
        match r {
            RelayOutput::Reply { to, msg } => {
                let stream = match self.request_streams.get(&to) {
                    Some(ReqAt::Exit(stream)) => *stream,
                    Some(ReqAt::Pipe(stream, pipe)) => {
                        let (stream, pipe) = (*stream, *pipe);
                        if matches!(msg, DbMsg::End(_)) {
                            self.request_streams.remove(&to);
                            self.pipe_requests.remove(&(stream, pipe));
                        }
                        return self.send_bytes(now, stream, &frame_on_pipe(pipe, &msg), io);
                    }
                    None => return,
                };
                let max = self.cfg.max_stream_buffer;
                let Some(rq) = self.requests.get_mut(&stream) else {
                    return;
                };
                rq.pipe.tx.extend_from_slice(&frame(&msg));
                if matches!(msg, DbMsg::End(_)) {
                    rq.pipe.closing = true;
                }
                if rq.pipe.tx.len() > max {
                    log(
                        io.reqs,
                        LogLevel::Warn,
                        "a content request stream is not reading its answers; closing it".into(),
                    );
                    self.drop_request(now, stream, io, true);
                    return;
                }
                self.flush_request(now, stream, io);
            }
            RelayOutput::Forward {
                relay,
                via,
                query,
                source,
            } => {
                if via.0 & INBOUND_BIT != 0 {
                    return self.forward_on_pipe(now, relay, via, query, source, io);
                }
                if let Some(&s) = self.forwards.get(&relay) {
                    self.send_on(now, s, &DbMsg::Query(query), io);
                    return;
                }
                match io.onion().open_stream(now, CircHandle(via.0), ORDB_SERVICE) {
                    Ok(s) => {
                        self.streams.insert(
                            s,
                            OurStream {
                                job: StreamJob::Forward(relay),
                                pipe: Pipe::default(),
                                heard: false,
                            },
                        );
                        self.forwards.insert(relay, s);
                        if self.nb_out.contains_key(&CircHandle(via.0)) {
                            self.stats.forwards_via_adverts += 1;
                            self.advert_relays.insert(relay);
                        }
                        if let Some(source) = source {
                            self.send_on(now, s, &DbMsg::Source(source), io);
                        }
                        self.send_on(now, s, &DbMsg::Query(query), io);
                    }
                    Err(_) => {
                        self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)))
                    }
                }
            }
            RelayOutput::Facilitate {
                relay,
                source,
                query,
            } => self.facilitate(now, relay, source, query, io),
            RelayOutput::CancelForward(relay) => {
                self.advert_relays.remove(&relay);
                if let Some(req) = self.facilitated.remove(&relay) {
                    self.facilitated_req.remove(&req);
                    io.reqs
                        .push_back(Request::SendBridge(SignalMsg::FacilitateClose { req }));
                    return;
                }
                if let Some((stream, pipe)) = self.relay_pipes.remove(&relay) {
                    if let Some(nb) = self.nb_in.get_mut(&stream) {
                        nb.pipes.remove(&pipe);
                    }
                    let end = DbMsg::End(DbEnd::with_sentence(
                        DbEndReason::DESTROYED,
                        "The request was cancelled.",
                    ));
                    return self.send_nb_in(now, stream, pipe, &end, io);
                }
                if let Some(s) = self.forwards.get(&relay).copied() {
                    if let Some(st) = self.streams.get_mut(&s) {
                        st.pipe.closing = true;
                    }
                    self.flush_stream(now, s, io);
                }
            }
            RelayOutput::SendInfo { to, info } => self.send_info(now, to, info, io),
            RelayOutput::FindProviders(h) => {
                self.stats.provider_searches += 1;
                self.find_providers(now, h, io)
            }
            RelayOutput::Provide(h) => self.provide(now, h, io),
            RelayOutput::Store { id, request } => io
                .reqs
                .push_back(Request::Driver(Output::Store { id, request })),
            RelayOutput::Event(e) => self.ordb_event(now, OrdbEvent::Relay(e), io),
        }
    }

    fn ordb_event(&mut self, now: Time, e: OrdbEvent, io: &mut NodeIo<'_>) {
        match e {
            OrdbEvent::Metadata {
                hash_name,
                descriptor,
            } => io.emit(ContentEvent::Metadata {
                hash_name,
                kind: descriptor.kind(),
                name: descriptor.name().to_owned(),
                mime: descriptor.mime().to_owned(),
                size: descriptor.size(),
                pieces: descriptor.piece_count(),
            }),
            OrdbEvent::Stored {
                hash_name,
                index,
                pieces_have,
                pieces,
            } => io.emit(ContentEvent::Progress {
                hash_name,
                index,
                pieces_have,
                pieces,
            }),
            OrdbEvent::Complete(hash_name) => {
                self.end_download(now, hash_name, io);
                io.emit(ContentEvent::Done { hash_name });
            }
            OrdbEvent::Resumable {
                hash_name,
                pieces_have,
                pieces,
                source,
            } => io.emit(ContentEvent::Resumable {
                hash_name,
                pieces_have,
                pieces,
                source,
            }),
            OrdbEvent::BadStoredContent(h) => log(
                io.reqs,
                LogLevel::Warn,
                format!(
                    "stored content {} fails verification and is ignored; remove it from the library",
                    h.to_hex()
                ),
            ),
            OrdbEvent::StoreFailed { hash_name, error } => match hash_name {
                Some(hash_name) => {
                    let reason = format!("{} was stopped: {error}", hash_name.to_hex());
                    self.fail(now, hash_name, reason, io);
                }
                None => log(
                    io.reqs,
                    LogLevel::Warn,
                    format!("the content store could not be read: {error}"),
                ),
            },
            OrdbEvent::Relay(RelayEvent::Served { hash_name, index }) => {
                io.emit(ContentEvent::Served { hash_name, index })
            }
            OrdbEvent::Relay(RelayEvent::Refused {
                hash_name,
                reason,
                sentence,
            }) => {
                if reason != DbEndReason::FINISHED {
                    log(
                        io.reqs,
                        LogLevel::Info,
                        format!(
                            "ORDB: a query for {} was answered {}: {sentence}",
                            hash_name.to_hex(),
                            reason.name()
                        ),
                    );
                }
            }
            OrdbEvent::Relay(RelayEvent::FreeRiderDropped(c)) => {
                if c.0 & INBOUND_BIT != 0 {
                    // A channel built to us: we do not know who is at its far end (and must
                    // not), so the channel goes; the relay never uses that handle again.
                    log(
                        io.reqs,
                        LogLevel::Info,
                        "ORDB: a neighbour channel built to us takes queries but answers none; it is closed and not asked again".into(),
                    );
                    if let Some(&stream) = self.nb_in_circ.get(&c) {
                        self.drop_nb_in(now, stream, io, true);
                    }
                    return;
                }
                let peer = self.circs.get(&CircHandle(c.0)).and_then(|o| match o.job {
                    CircJob::Neighbour { peer } | CircJob::Provider { peer, .. } => Some(peer),
                    CircJob::Source { .. } => None,
                });
                match peer {
                    Some(peer) => {
                        self.ban_peer(now, peer, "takes queries but answers none", io)
                    }
                    None => log(
                        io.reqs,
                        LogLevel::Info,
                        format!(
                            "ORDB: the ORDB at the end of circuit {} takes queries but answers none; it is not asked again this session",
                            c.0
                        ),
                    ),
                }
            }
            OrdbEvent::Relay(RelayEvent::StoreFailed(e)) => log(
                io.reqs,
                LogLevel::Warn,
                format!("ORDB: serving failed: {e}"),
            ),
            other => log(io.reqs, LogLevel::Info, format!("content: {other:?}")),
        }
    }

    // ----- facilitated requests (this node's bridge fetches from outside the mesh) -----------

    /// Hand a query to the bridge (see "Facilitators" in the module docs).
    fn facilitate(
        &mut self,
        now: Time,
        relay: RelayId,
        source: DbSource,
        query: DbQuery,
        io: &mut NodeIo<'_>,
    ) {
        if let Some(&req) = self.facilitated.get(&relay) {
            let msg = DbMsg::Query(query);
            io.reqs
                .push_back(Request::SendBridge(SignalMsg::Facilitate { req, msg }));
            return;
        }
        if !io.registered {
            return self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        }
        // A number not in use (the map is bounded by the relay's max_facilitated).
        let mut req = self.next_req;
        loop {
            req = req.wrapping_add(1);
            if !self.facilitated_req.contains_key(&req) {
                break;
            }
        }
        self.next_req = req;
        self.facilitated.insert(relay, req);
        self.facilitated_req.insert(req, relay);
        self.stats.facilitated += 1;
        io.reqs
            .push_back(Request::SendBridge(SignalMsg::Facilitate {
                req,
                msg: DbMsg::Source(source),
            }));
        io.reqs
            .push_back(Request::SendBridge(SignalMsg::Facilitate {
                req,
                msg: DbMsg::Query(query),
            }));
    }

    /// The bridge answered facilitated requests (`SignalMsg::Facilitated`): every answer is
    /// passed to its relay, then the ORDB runs once for the whole batch.
    pub fn facilitated(&mut self, now: Time, answers: Vec<FacilitatedAnswer>, io: &mut NodeIo<'_>) {
        for FacilitatedAnswer { req, msg } in answers {
            self.facilitated_one(now, req, msg, io);
        }
        self.drive(now, io);
    }

    fn facilitated_one(&mut self, now: Time, req: u32, msg: DbMsg, io: &mut NodeIo<'_>) {
        let Some(&relay) = self.facilitated_req.get(&req) else {
            return; // a late answer to a request we closed
        };
        if matches!(msg, DbMsg::End(_)) {
            self.facilitated_req.remove(&req);
            self.facilitated.remove(&relay);
        }
        match msg {
            DbMsg::Connected(_) | DbMsg::Data(_) | DbMsg::End(_) => {
                self.ordb_input(now, OrdbInput::Relay(RelayInput::Upstream { relay, msg }))
            }
            other => {
                log(
                    io.reqs,
                    LogLevel::Info,
                    format!(
                        "the bridge sent {:?} for a facilitated request, where only DB_CONNECTED, DB_DATA and DB_END belong; the request is closed",
                        other.cmd()
                    ),
                );
                self.facilitated_req.remove(&req);
                self.facilitated.remove(&relay);
                io.reqs
                    .push_back(Request::SendBridge(SignalMsg::FacilitateClose { req }));
                self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
            }
        }
    }

    /// The bridge closed facilitated request `req` (`SignalMsg::FacilitateClose`).
    pub fn facilitate_closed(&mut self, now: Time, req: u32, io: &mut NodeIo<'_>) {
        if let Some(relay) = self.facilitated_req.remove(&req) {
            self.facilitated.remove(&relay);
            self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        }
        self.drive(now, io);
    }

    /// The bridge connection dropped: every facilitated request is over.
    pub fn bridge_lost(&mut self, now: Time, io: &mut NodeIo<'_>) {
        let relays: Vec<RelayId> = self.facilitated.keys().copied().collect();
        self.facilitated.clear();
        self.facilitated_req.clear();
        for relay in relays {
            self.ordb_input(now, OrdbInput::Relay(RelayInput::UpstreamClosed(relay)));
        }
        self.drive(now, io);
    }

    // ----- driver inputs ---------------------------------------------------------------------

    pub fn store_done(&mut self, now: Time, c: StoreCompletion, io: &mut NodeIo<'_>) {
        self.ordb_input(now, OrdbInput::Store(c));
        self.drive(now, io);
        if self.ordb.wants_source_data() {
            let waiting: Vec<StreamHandle> = self
                .streams
                .iter()
                .filter(|(_, s)| s.pipe.readable)
                .map(|(h, _)| *h)
                .collect();
            for s in waiting {
                self.read_stream(now, s, io);
            }
        }
        self.drive(now, io);
    }

    pub fn handle_timeout(&mut self, now: Time, io: &mut NodeIo<'_>) {
        let due: Vec<HashName> = self
            .provide_retry
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            if let Some(r) = self.provide_retry.get_mut(&h) {
                // Not due again until this attempt fails.
                r.0 = now + PROVIDE_RETRY_MAX;
            }
            self.provide(now, h, io);
        }
        if self.ordb.poll_timeout().is_some_and(|t| t <= now) {
            self.ordb_input(now, OrdbInput::Timeout);
        }
        let retry: Vec<HashName> = self
            .downloads
            .iter()
            .filter(|(_, d)| d.retry_at.is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for h in retry {
            if let Some(d) = self.downloads.get_mut(&h) {
                d.retry_at = None;
            }
            self.top_up(now, h, io);
        }
        self.drive(now, io);
    }
}

/// The content API, borrowed from the node with [`crate::Node::ordb`]: publish, download,
/// progress, the library. Every method that changes state takes `now`; outputs (including
/// [`crate::Output::Store`] for the driver's store) appear on the node's `poll_output`, news as
/// [`crate::Event::Content`].
pub struct OrdbApi<'a> {
    pub(crate) part: &'a mut OrdbPart,
    pub(crate) io: NodeIo<'a>,
    pub(crate) stopped: bool,
}

impl OrdbApi<'_> {
    fn check(&self) -> Result<(), ContentError> {
        if self.stopped {
            return Err(ContentError::Stopped);
        }
        Ok(())
    }

    /// Read the driver's store (call once at start, after the store is open): stored content is
    /// served and advertised again, partial downloads are reported as
    /// [`ContentEvent::Resumable`] (resume them with [`OrdbApi::download`], or
    /// [`OrdbApi::download_from`] with the event's source).
    pub fn load(&mut self, now: Time) {
        if self.check().is_err() {
            return;
        }
        self.part.ordb.load();
        self.part.drive(now, &mut self.io);
    }

    /// Publish `bytes` (a whole file in memory) under a MIME type and a file name: it is split
    /// into 64 KiB pieces, signed, stored (through [`crate::Output::Store`]) and announced in
    /// the DHT. Returns the hash_name (the share link's fragment, in hex).
    pub fn publish(
        &mut self,
        now: Time,
        bytes: &[u8],
        mime: &str,
        name: &str,
    ) -> Result<HashName, ContentError> {
        self.check()?;
        let (publication, pieces) =
            publish_bytes(&mut self.part.rng, bytes, mime, name, DEFAULT_PIECE_SIZE)?;
        let hash_name = publication.descriptor().hash_name();
        self.publish_prepared(now, &publication, pieces)?;
        Ok(hash_name)
    }

    /// Publish a file the driver split itself (`onionmesh_ordb::Publisher`, two passes over a
    /// large `File`): the publication and its piece records, in order.
    pub fn publish_prepared(
        &mut self,
        now: Time,
        publication: &Publication,
        pieces: Vec<PieceRecord>,
    ) -> Result<(), ContentError> {
        self.check()?;
        let hash_name = publication.descriptor().hash_name();
        self.part.ordb.publish(now, publication);
        for (i, record) in pieces.into_iter().enumerate() {
            self.part.ordb.put_piece(now, hash_name, i as u32, record);
        }
        self.part.drive(now, &mut self.io);
        Ok(())
    }

    /// Start (or resume) downloading `hash_name` through circuits to ORDBs. Watch for
    /// [`ContentEvent::Metadata`], `Progress`, then `Done` or `Failed`.
    pub fn download(&mut self, now: Time, hash_name: HashName) -> Result<(), ContentError> {
        self.check()?;
        self.part.ordb.download(now, hash_name)?;
        self.started(now, hash_name);
        Ok(())
    }

    /// Start (or resume) downloading `source.hash_name` with a source hint (issue 10): a
    /// magnet link (the hash_name is the v1 infohash) or a web URL (the hash_name is
    /// `DbSource::web_hash_name(url)`). Every source stream carries the `DB_SOURCE` before its
    /// first query, so an ORDB that finds no holder in the mesh hands the request to its
    /// bridge, the facilitator. Joining a download under way adds the hint to its next
    /// sources. Events as for [`OrdbApi::download`]; the descriptor's kind
    /// ([`OrdbApi::kind`]) tells where the content came from.
    pub fn download_from(&mut self, now: Time, source: DbSource) -> Result<(), ContentError> {
        self.check()?;
        let hash_name = source.hash_name;
        let running = self.part.downloads.contains_key(&hash_name);
        self.part.ordb.download_from(now, source)?;
        if !running {
            self.started(now, hash_name);
        }
        Ok(())
    }

    fn started(&mut self, now: Time, hash_name: HashName) {
        if self.part.ordb.downloads().any(|h| h == hash_name) {
            self.part.downloads.insert(hash_name, DlState::default());
            self.part.top_up(now, hash_name, &mut self.io);
        }
        self.part.drive(now, &mut self.io);
    }

    /// Restrict a download to file `index` of its torrent ([`OrdbApi::files`]): only the
    /// pieces overlapping that file are fetched (boundary pieces whole, so they can be
    /// checked), `Progress` and [`OrdbApi::progress`] count them, and `Done` comes when they
    /// are stored. A multi-file torrent fetches no piece until this (or
    /// [`OrdbApi::select_all`]) is called: show [`OrdbApi::files`] after `Metadata`. Offsets stay the torrent's (a seek is a byte of the torrent: the file's
    /// `offset` plus the position in the file). Errors: not downloading, descriptor not known
    /// yet (wait for `Metadata`), no such file.
    pub fn select_file(
        &mut self,
        now: Time,
        hash_name: HashName,
        index: usize,
    ) -> Result<(), ContentError> {
        self.check()?;
        self.part.ordb.select_file(now, hash_name, index)?;
        self.part.drive(now, &mut self.io);
        Ok(())
    }

    /// Fetch every file of a multi-file torrent (undo [`OrdbApi::select_file`]). A multi-file
    /// torrent fetches no piece until this or `select_file` is called.
    pub fn select_all(&mut self, now: Time, hash_name: HashName) -> Result<(), ContentError> {
        self.check()?;
        self.part.ordb.select_all(now, hash_name)?;
        self.part.drive(now, &mut self.io);
        Ok(())
    }

    /// The verified descriptor of a content being downloaded or held.
    pub fn descriptor(&self, hash_name: &HashName) -> Option<&Descriptor> {
        self.part.ordb.descriptor(hash_name)
    }

    /// The kind of a content's descriptor, once known: `ONIONMESH_V1` (published in the
    /// mesh), `BITTORRENT_V1_INFO` (a torrent, from a facilitator or a page that has it) or
    /// `WEB_V1` (a web file from an exit).
    pub fn kind(&self, hash_name: &HashName) -> Option<DescriptorKind> {
        self.descriptor(hash_name).map(Descriptor::kind)
    }

    /// A content's files, once its descriptor is known: a torrent's `[(path, offset, length)]`
    /// in the torrent's byte space; any other content is one file, its name, at offset 0.
    pub fn files(&self, hash_name: &HashName) -> Option<Vec<TorrentFile>> {
        let d = self.descriptor(hash_name)?;
        Some(match d.torrent() {
            Some(t) => t.files().to_vec(),
            None => vec![TorrentFile {
                path: d.name().to_owned(),
                offset: 0,
                length: d.size(),
            }],
        })
    }

    /// The pieces a download is restricted to (first, end exclusive), after
    /// [`OrdbApi::select_file`].
    pub fn selection(&self, hash_name: &HashName) -> Option<(u32, u32)> {
        self.part.ordb.selection(hash_name)
    }

    /// Play or seek position of a download, in bytes: the pieces there come first.
    pub fn seek(&mut self, now: Time, hash_name: HashName, byte: u64) {
        self.part.ordb_input(
            now,
            OrdbInput::Download {
                hash_name,
                input: DownloadInput::Seek { byte },
            },
        );
        self.part.drive(now, &mut self.io);
    }

    /// Stop downloading `hash_name`; what is stored stays and is served.
    pub fn cancel(&mut self, now: Time, hash_name: HashName) -> Result<(), ContentError> {
        self.part.ordb.cancel(&hash_name)?;
        self.part.end_download(now, hash_name, &mut self.io);
        self.part.drive(now, &mut self.io);
        Ok(())
    }

    /// Remove a content: stop its download, stop serving it, delete it from the store.
    pub fn remove(&mut self, now: Time, hash_name: HashName) {
        self.part.end_download(now, hash_name, &mut self.io);
        self.part.ordb.remove(now, hash_name);
        self.part.drive(now, &mut self.io);
    }

    /// A download's progress, or the held share of a content not being downloaded.
    pub fn progress(&self, hash_name: &HashName) -> Option<Progress> {
        self.part.ordb.progress(hash_name)
    }

    /// Every content held, whole or in part.
    pub fn library(&self) -> Vec<LibraryEntry> {
        self.part.ordb.library()
    }

    /// The peers this node has associated with `hash_name`, and how: the ORDBs its downloads
    /// asked, and the providers the DHT named when it searched as an ORDB. A holder serving a
    /// request learns no peer at all (it sees a stream on a circuit). This is the recorded view
    /// the simulation checks anonymity against; bounded (least recent forgotten first).
    pub fn peers_known_for(&self, hash_name: &HashName) -> Vec<(NodeId, KnownAs)> {
        self.part
            .known
            .iter()
            .filter(|((h, _), _)| h == hash_name)
            .map(|((_, id), k)| (*id, *k))
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> ContentStats {
        ContentStats {
            relay: self.part.ordb.relay().stats(),
            neighbours_out: self.part.nb_out.values().filter(|s| s.is_some()).count(),
            neighbours_in: self.part.nb_in.len(),
            pieces_received: self.part.ordb.pieces_received(),
            ..self.part.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_split() {
        let msgs = vec![
            DbMsg::Query(DbQuery {
                hash_name: HashName([3; 20]),
                piece: 7,
                offset: 490,
                count: 2,
                counter: 1,
            }),
            DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "gone")),
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        for split in 0..bytes.len() {
            let mut rx = bytes[..split].to_vec();
            let mut got = take_frames(&mut rx).unwrap();
            rx.extend_from_slice(&bytes[split..]);
            got.extend(take_frames(&mut rx).unwrap());
            assert_eq!(got, msgs, "split at {split}");
            assert!(rx.is_empty());
        }
    }

    #[test]
    fn pipe_frames_round_trip_in_any_split_and_keep_their_pipes() {
        let msgs = vec![
            (
                PIPE_ADVERTS,
                DbMsg::Info(DbInfo {
                    hash_name: HashName([5; 20]),
                    completion: onionmesh_wire::db::Completion::Half,
                    flags: onionmesh_wire::db::InfoFlags::default(),
                }),
            ),
            (
                7,
                DbMsg::Query(DbQuery {
                    hash_name: HashName([3; 20]),
                    piece: 1,
                    offset: 0,
                    count: 2,
                    counter: 3,
                }),
            ),
            (
                65535,
                DbMsg::End(DbEnd::with_sentence(DbEndReason::DESTROYED, "bye")),
            ),
        ];
        let bytes: Vec<u8> = msgs
            .iter()
            .flat_map(|(p, m)| frame_on_pipe(*p, m))
            .collect();
        for split in 0..bytes.len() {
            let mut rx = bytes[..split].to_vec();
            let mut got = take_pipe_frames(&mut rx).unwrap();
            rx.extend_from_slice(&bytes[split..]);
            got.extend(take_pipe_frames(&mut rx).unwrap());
            assert_eq!(got, msgs, "split at {split}");
            assert!(rx.is_empty());
        }
        // A lying length or a foreign command on any pipe is an error.
        let mut rx = vec![0, 9, 0x70, 0xff, 0xff];
        assert!(take_pipe_frames(&mut rx).unwrap_err().contains("more than"));
        let mut rx = vec![0, 0, 0x02, 0, 1, 0];
        assert!(take_pipe_frames(&mut rx)
            .unwrap_err()
            .contains("not a content"));
    }

    #[test]
    fn a_lying_length_or_a_foreign_command_is_an_error() {
        let mut rx = vec![0x70, 0xff, 0xff];
        assert!(take_frames(&mut rx).unwrap_err().contains("more than"));
        let mut rx = vec![0x02, 0, 1, 0];
        assert!(take_frames(&mut rx).unwrap_err().contains("not a content"));
        // A truncated frame waits for more, holding at most one frame.
        let mut rx = vec![0x70, 0, 45, 1, 2];
        assert!(take_frames(&mut rx).unwrap().is_empty());
        assert_eq!(rx.len(), 5);
    }
}

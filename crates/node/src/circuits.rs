//! Onion routing inside the node: one [`OnionProxy`] (circuits this node builds) and one
//! [`OnionRouter`] (circuits it relays or ends), glued to the node's links.
//!
//! How the pieces meet:
//! - An incoming `LinkMsg::Cell` (or each cell of a `LinkMsg::Cells` batch) on an authenticated
//!   link goes to the proxy or the router by [`owner_of`]; their `Output::Cell`s leave on the
//!   peer's link, consecutive cells for one link batched into one `LinkMsg::Cells` frame.
//! - Links reaching `Linked` are reported to the router (`link_opened`), links closing to both
//!   (`link_closed`), and a congested data channel to both (`link_blocked`, see
//!   [`Node::handle_link_congestion`]).
//! - A router asked to extend to a peer it has no link with says `NeedLink`; the node opens the
//!   link through its bridge ([`Node::connect`]) and reports `link_opened` or `link_failed`.
//! - Timers of both machines are part of [`Node::poll_timeout`] / [`Node::handle_timeout`].
//!
//! **Onion keys.** A node's onion key *is* its session identity key (see
//! `onionmesh_onion::OnionKey`): peer records from the bridge and link certificates already carry
//! every peer's public key, checked against its ID, so a proxy knows the key each hop must prove
//! in the ntor handshake without any new record or message. The node keeps these keys in a
//! bounded directory ([`MAX_DIRECTORY`]). One key for ECDSA and ECDH is the choice the onion
//! crate documents as sound; the session key is per page load anyway.
//!
//! **Path rules** ([`Node::build_circuit_auto`]): `onionmesh_onion::select_path` with no node
//! twice, the first hop linked, hops from distinct introducers where possible, and the node's own
//! bridge never tied to both ends. Today every peer is introduced by our one bridge, so that last
//! rule cannot hold in its strict form (the bridge "introduced" every hop); the node then relaxes
//! it, logs that it did, and relies on the literal rule (the bridge is never a hop: bridges run no
//! onion router yet). With federated bridges the strict form applies again unchanged.
//!
//! **Services.** `serve("echo")` enables the built-in echo service: every byte a client sends on a
//! stream to it comes back, and the echo holds at most [`ECHO_BUFFER`] bytes per stream (it stops
//! reading, so the client's windows close, rather than buffer more). Any other name registers an
//! application service: the application sees [`OnionEvent::ServiceStreamOpened`] and uses
//! `service_read` / `service_write` / `service_close`.

use crate::event::{Event, LinkState, LogLevel};
use crate::node::Node;
use crate::Time;
use onionmesh_onion::{
    owner_of, ApiError as OnionApiError, Candidate, CellOwner, CircHandle, CircuitView, ExitStream,
    HopSpec, OnionKey, OnionProxy, OnionPublicKey, OnionRouter, Output as OnionOutput, PathError,
    PathRules, ProxyConfig, ProxyEvent, RouterConfig, RouterEvent, StreamHandle, StreamId,
};
use onionmesh_wire::cell::Cell;
use onionmesh_wire::link::MAX_CELLS_PER_FRAME;
use onionmesh_wire::{Frame, LinkMsg, NodeId, PublicKeyBytes};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;

/// Most peers whose onion keys the node remembers (oldest forgotten first).
pub const MAX_DIRECTORY: usize = 4096;
/// Most bytes the echo service holds per stream between reading and writing back.
pub const ECHO_BUFFER: usize = 64 * 1024;
/// Most link requests from the router waiting at once (each also costs a link slot).
const MAX_NEEDED_LINKS: usize = 64;

/// The onion part of [`crate::NodeConfig`].
#[derive(Debug, Clone, Default)]
pub struct OnionConfig {
    pub proxy: ProxyConfig,
    pub router: RouterConfig,
}

/// What the onion layer tells the application. Circuit ids are the proxy's handles; stream ids
/// are per circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnionEvent {
    /// One more hop of our circuit answered.
    CircuitExtended {
        circ: u64,
        hops: usize,
    },
    /// Our circuit is built: streams may be opened.
    CircuitBuilt {
        circ: u64,
    },
    /// Our circuit is gone; `code` is stable (`TIMEOUT`, `DESTROYED`, `PROTOCOL`, ...).
    CircuitClosed {
        circ: u64,
        code: &'static str,
        reason: String,
    },
    StreamOpened {
        circ: u64,
        stream: u16,
    },
    /// Data waits on our stream: call [`Node::stream_read`].
    StreamReadable {
        circ: u64,
        stream: u16,
    },
    /// A stream that took a short write has room again.
    StreamWritable {
        circ: u64,
        stream: u16,
    },
    StreamEnded {
        circ: u64,
        stream: u16,
        reason: String,
    },
    /// Bytes read from our stream. The node never emits this: a driver that reads on the
    /// application's behalf on `StreamReadable` (the browser) hands the bytes on in it.
    StreamData {
        circ: u64,
        stream: u16,
        data: Vec<u8>,
    },
    /// A client opened a stream to one of our application services (we are its last hop).
    ServiceStreamOpened {
        circuit: u64,
        stream: u16,
        service: String,
    },
    ServiceReadable {
        circuit: u64,
        stream: u16,
    },
    ServiceWritable {
        circuit: u64,
        stream: u16,
    },
    ServiceEnded {
        circuit: u64,
        stream: u16,
    },
}

/// The onion API was misused (nothing on the network changed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OnionError {
    #[error("peer {0} is unknown: its key has not been seen (find peers first)")]
    UnknownPeer(String),
    #[error("the key given for peer {0} is not its key (or the peer is this node)")]
    BadPeerKey(String),
    #[error("there is no authenticated link to the first hop {0}; wait for its 'linked' event")]
    FirstHopNotLinked(String),
    #[error("cannot choose a path: {0}")]
    NoPath(PathError),
    #[error("{0}")]
    Onion(OnionApiError),
}

impl OnionError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            OnionError::UnknownPeer(_) => "UNKNOWN_PEER",
            OnionError::BadPeerKey(_) => "BAD_PEER_KEY",
            OnionError::FirstHopNotLinked(_) => "NOT_LINKED",
            OnionError::NoPath(_) => "NO_PATH",
            OnionError::Onion(e) => e.code(),
        }
    }
}

impl From<OnionApiError> for OnionError {
    fn from(e: OnionApiError) -> Self {
        OnionError::Onion(e)
    }
}

/// One circuit as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitInfo {
    pub id: u64,
    /// Hops as short IDs: the path for our circuits; `[previous, next]` for relayed ones.
    pub hops: Vec<String>,
    /// "building", "extending", "built" (ours), "open", "waiting for link" (relayed).
    pub state: &'static str,
    /// Stream payload bytes sent and received at this end.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub cells_in: u64,
    pub cells_out: u64,
    pub streams: usize,
}

impl CircuitInfo {
    fn from_view(v: CircuitView, ours: bool) -> CircuitInfo {
        CircuitInfo {
            id: v.id,
            hops: v.hops,
            state: if ours && v.state == "open" {
                "built"
            } else {
                v.state
            },
            bytes_sent: v.bytes_sent,
            bytes_received: v.bytes_received,
            cells_in: v.cells_in,
            cells_out: v.cells_out,
            streams: v.streams,
        }
    }
}

struct DirEntry {
    key: OnionPublicKey,
    introducer: Option<NodeId>,
}

/// The node's onion state (held by [`Node`]).
pub(crate) struct Onion {
    proxy: OnionProxy,
    router: OnionRouter,
    directory: BTreeMap<NodeId, DirEntry>,
    dir_order: VecDeque<NodeId>,
    /// Peers the router asked a link for and is waiting on.
    needed: BTreeSet<NodeId>,
    /// Peers whose link closed before it was authenticated: if no new link replaced it by the
    /// next pump, a waiting extension to them has failed (a glare close is replaced at once).
    maybe_failed: Vec<NodeId>,
    /// Links the driver reported congested.
    blocked: BTreeSet<NodeId>,
    echo_on: bool,
    echo: BTreeMap<ExitStream, Vec<u8>>,
    app_services: BTreeSet<String>,
    bridge: Option<NodeId>,
    rng: ChaCha20Rng,
}

impl Onion {
    pub(crate) fn new(local: NodeId, secret: [u8; 32], cfg: &OnionConfig, seed: [u8; 32]) -> Onion {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut sub = |tag: u8| {
            use rand_core::RngCore;
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s[0] ^= tag;
            s
        };
        let (pseed, rseed, oseed) = (sub(1), sub(2), sub(3));
        // The identity key is a valid non-zero scalar, so this is too; the fallback only keeps
        // the constructor total.
        let key = OnionKey::from_seed(secret)
            .unwrap_or_else(|| OnionKey::generate(&mut ChaCha20Rng::from_seed(oseed)));
        Onion {
            proxy: OnionProxy::new(local, cfg.proxy.clone(), pseed),
            router: OnionRouter::new(local, key, cfg.router.clone(), rseed),
            directory: BTreeMap::new(),
            dir_order: VecDeque::new(),
            needed: BTreeSet::new(),
            maybe_failed: Vec::new(),
            blocked: BTreeSet::new(),
            echo_on: false,
            echo: BTreeMap::new(),
            app_services: BTreeSet::new(),
            bridge: None,
            rng: ChaCha20Rng::from_seed(oseed),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        [self.proxy.poll_timeout(), self.router.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn set_bridge(&mut self, bridge: NodeId) {
        self.bridge = Some(bridge);
    }

    /// Remember `id`'s onion key (its identity key, already checked against `id`).
    pub(crate) fn learn(
        &mut self,
        id: NodeId,
        pubkey: &PublicKeyBytes,
        introducer: Option<NodeId>,
    ) {
        let Ok(key) = OnionPublicKey::from_bytes(pubkey) else {
            return;
        };
        if let Some(e) = self.directory.get_mut(&id) {
            e.key = key;
            if introducer.is_some() {
                e.introducer = introducer;
            }
            return;
        }
        while self.directory.len() >= MAX_DIRECTORY {
            let Some(old) = self.dir_order.pop_front() else {
                break;
            };
            self.directory.remove(&old);
        }
        self.directory.insert(id, DirEntry { key, introducer });
        self.dir_order.push_back(id);
    }

    fn hop(&self, id: NodeId) -> Result<HopSpec, OnionError> {
        let e = self
            .directory
            .get(&id)
            .ok_or_else(|| OnionError::UnknownPeer(id.short()))?;
        Ok(HopSpec {
            id,
            onion_key: e.key,
        })
    }
}

fn ev(e: OnionEvent) -> crate::Output {
    crate::Output::Event(Event::Onion(e))
}

impl Node {
    // ----- onion API -------------------------------------------------------------------------

    /// Build a circuit through `path` (peer IDs, first hop first). The first hop must be linked;
    /// later hops are reached by the hops before them (introduced on demand). Watch for
    /// `CircuitBuilt` or `CircuitClosed`.
    pub fn build_circuit(&mut self, now: Time, path: &[NodeId]) -> Result<u64, OnionError> {
        self.now = now;
        let hops = path
            .iter()
            .map(|id| self.onion.hop(*id))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = path.first() {
            if !self.linked_peers().contains(first) {
                return Err(OnionError::FirstHopNotLinked(first.short()));
            }
        }
        Ok(self.onion.proxy.build_circuit(now, &hops)?.0)
    }

    /// Choose a `hops`-hop path under the path rules (see the module docs) and build it.
    /// Returns the circuit and its path.
    pub fn build_circuit_auto(
        &mut self,
        now: Time,
        hops: usize,
    ) -> Result<(u64, Vec<NodeId>), OnionError> {
        self.now = now;
        let linked: BTreeSet<NodeId> = self.linked_peers().into_iter().collect();
        let candidates: Vec<Candidate> = self
            .onion
            .directory
            .iter()
            .map(|(id, e)| Candidate {
                hop: HopSpec {
                    id: *id,
                    onion_key: e.key,
                },
                introducer: e.introducer,
                linked: linked.contains(id),
            })
            .collect();
        let mut rules = PathRules {
            local: self.id(),
            own_bridge: self.onion.bridge,
            guards: Vec::new(),
        };
        let o = &mut self.onion;
        let path = match onionmesh_onion::select_path(&mut o.rng, &rules, &candidates, hops) {
            Err(PathError::BridgeAtBothEnds) => {
                rules.own_bridge = None;
                let p = onionmesh_onion::select_path(&mut o.rng, &rules, &candidates, hops)
                    .map_err(OnionError::NoPath)?;
                self.log(
                    LogLevel::Info,
                    "every candidate hop was introduced by our one bridge; the bridge-at-both-ends rule is relaxed (the bridge is no hop)".into(),
                );
                p
            }
            r => r.map_err(OnionError::NoPath)?,
        };
        let ids = path.iter().map(|h| h.id).collect();
        let circ = self.onion.proxy.build_circuit(now, &path)?;
        Ok((circ.0, ids))
    }

    /// Remember a peer's key learned elsewhere (a DHT record, another bridge) so that it can be
    /// a hop. The key must hash to the ID, as everywhere else.
    pub fn learn_peer(&mut self, id: NodeId, pubkey: &PublicKeyBytes) -> Result<(), OnionError> {
        if onionmesh_crypto::node_id(pubkey) != id || id == self.id() {
            return Err(OnionError::BadPeerKey(id.short()));
        }
        self.onion.learn(id, pubkey, None);
        Ok(())
    }

    /// Tear one of our circuits down.
    pub fn destroy_circuit(&mut self, circ: u64) -> Result<(), OnionError> {
        Ok(self.onion.proxy.destroy_circuit(CircHandle(circ))?)
    }

    /// Open a stream to `service` at the last hop of a built circuit. Returns the stream id.
    pub fn open_stream(&mut self, now: Time, circ: u64, service: &str) -> Result<u16, OnionError> {
        self.now = now;
        let s = self
            .onion
            .proxy
            .begin_stream(now, CircHandle(circ), service)?;
        Ok(s.stream.0)
    }

    /// Queue bytes on a stream. Returns how many were taken: a short count is backpressure (the
    /// stream's bounded buffer is full because the circuit's windows are); wait for
    /// `StreamWritable`.
    pub fn stream_write(
        &mut self,
        now: Time,
        circ: u64,
        stream: u16,
        data: &[u8],
    ) -> Result<usize, OnionError> {
        self.now = now;
        Ok(self.onion.proxy.stream_write(now, sh(circ, stream), data)?)
    }

    /// Take up to `max` received bytes (reading is what reopens the windows).
    pub fn stream_read(
        &mut self,
        now: Time,
        circ: u64,
        stream: u16,
        max: usize,
    ) -> Result<Vec<u8>, OnionError> {
        self.now = now;
        Ok(self.onion.proxy.stream_read(now, sh(circ, stream), max)?)
    }

    /// End a stream once its queued bytes are sent.
    pub fn stream_close(&mut self, now: Time, circ: u64, stream: u16) -> Result<(), OnionError> {
        self.now = now;
        Ok(self.onion.proxy.stream_close(now, sh(circ, stream))?)
    }

    /// Our circuits.
    pub fn circuits(&self) -> Vec<CircuitInfo> {
        self.onion
            .proxy
            .circuits()
            .into_iter()
            .map(|v| CircuitInfo::from_view(v, true))
            .collect()
    }

    /// Circuits we relay or end for others.
    pub fn relayed_circuits(&self) -> Vec<CircuitInfo> {
        self.onion
            .router
            .circuits()
            .into_iter()
            .map(|v| CircuitInfo::from_view(v, false))
            .collect()
    }

    /// Accept streams to `service` at this node. `"echo"` is built in; other names are
    /// application services (see [`OnionEvent::ServiceStreamOpened`]).
    pub fn serve(&mut self, service: &str) -> Result<(), OnionError> {
        self.onion.router.register_service(service)?;
        if service == "echo" {
            self.onion.echo_on = true;
        } else {
            self.onion.app_services.insert(service.to_owned());
        }
        Ok(())
    }

    /// Read what a client sent to an application service.
    pub fn service_read(
        &mut self,
        now: Time,
        circuit: u64,
        stream: u16,
        max: usize,
    ) -> Result<Vec<u8>, OnionError> {
        self.now = now;
        Ok(self
            .onion
            .router
            .stream_read(now, xs(circuit, stream), max)?)
    }

    /// Send to the client of an application service; a short count is backpressure.
    pub fn service_write(
        &mut self,
        now: Time,
        circuit: u64,
        stream: u16,
        data: &[u8],
    ) -> Result<usize, OnionError> {
        self.now = now;
        Ok(self
            .onion
            .router
            .stream_write(now, xs(circuit, stream), data)?)
    }

    pub fn service_close(
        &mut self,
        now: Time,
        circuit: u64,
        stream: u16,
    ) -> Result<(), OnionError> {
        self.now = now;
        Ok(self.onion.router.stream_close(now, xs(circuit, stream))?)
    }

    /// The driver's data channel to `link` is congested (`true`, stop giving it cells) or has
    /// drained (`false`). Cells then wait in the onion layer's bounded per-link queues, and
    /// stream writers see short writes.
    pub fn handle_link_congestion(&mut self, link: crate::LinkId, blocked: bool) {
        let Some(peer) = self.links.get(&link).map(|l| l.peer) else {
            return;
        };
        let changed = if blocked {
            self.onion.blocked.insert(peer)
        } else {
            self.onion.blocked.remove(&peer)
        };
        if changed {
            self.onion.proxy.link_blocked(peer, blocked);
            self.onion.router.link_blocked(peer, blocked);
        }
    }

    // ----- hooks called by node.rs -----------------------------------------------------------

    /// Who introduced the peers we hear of: today always our own bridge.
    pub(crate) fn onion_bridge(&self) -> Option<NodeId> {
        self.onion.bridge
    }

    /// A cell arrived on an authenticated link.
    pub(crate) fn onion_cell(&mut self, now: Time, peer: NodeId, cell: Cell) {
        self.now = now;
        match owner_of(self.id(), peer, cell.circ_id) {
            CellOwner::Proxy => self.onion.proxy.handle_cell(now, peer, cell),
            CellOwner::Router => self.onion.router.handle_cell(now, peer, cell),
        }
    }

    pub(crate) fn onion_link_up(&mut self, now: Time, peer: NodeId) {
        self.now = now;
        self.onion.needed.remove(&peer);
        self.onion.router.link_opened(now, peer);
    }

    /// A link closed; `was_linked` says whether it had been authenticated.
    pub(crate) fn onion_link_down(&mut self, peer: NodeId, was_linked: bool) {
        let now = self.now;
        if self.onion.blocked.remove(&peer) {
            self.onion.proxy.link_blocked(peer, false);
            self.onion.router.link_blocked(peer, false);
        }
        if was_linked {
            self.onion.proxy.link_closed(now, peer);
            self.onion.router.link_closed(now, peer);
            self.onion.needed.remove(&peer);
        } else if self.onion.needed.contains(&peer) {
            self.onion.maybe_failed.push(peer);
        }
    }

    pub(crate) fn onion_timeout(&mut self, now: Time) {
        self.now = now;
        self.onion.proxy.handle_timeout(now);
        self.onion.router.handle_timeout(now);
    }

    /// Move onion outputs into the node's output queue until it holds something or both
    /// machines are idle. Called lazily by `poll_output`.
    pub(crate) fn pump_onion(&mut self) {
        let now = self.now;
        for peer in std::mem::take(&mut self.onion.maybe_failed) {
            if !self.by_peer.contains_key(&peer) && self.onion.needed.remove(&peer) {
                self.onion.router.link_failed(now, peer);
            }
        }
        // Cells for one link leave in batches of up to MAX_CELLS_PER_FRAME (one data-channel
        // message each), in order; anything else ends the batching so that it keeps its place.
        let mut batches: BTreeMap<NodeId, Vec<Cell>> = BTreeMap::new();
        while self.out.is_empty() {
            let cell = if let Some(o) = self.onion.proxy.poll_output() {
                match o {
                    OnionOutput::Cell { peer, cell } => Some((peer, cell)),
                    other => {
                        self.flush_batches(&mut batches);
                        self.onion_proxy_output(other);
                        None
                    }
                }
            } else if let Some(o) = self.onion.router.poll_output() {
                match o {
                    OnionOutput::Cell { peer, cell } => Some((peer, cell)),
                    other => {
                        self.flush_batches(&mut batches);
                        self.onion_router_output(now, other);
                        None
                    }
                }
            } else {
                break;
            };
            if let Some((peer, cell)) = cell {
                let batch = batches.entry(peer).or_default();
                batch.push(cell);
                if batch.len() >= MAX_CELLS_PER_FRAME {
                    let cells = std::mem::take(batch);
                    self.send_cells(peer, cells);
                }
            }
        }
        self.flush_batches(&mut batches);
    }

    fn flush_batches(&mut self, batches: &mut BTreeMap<NodeId, Vec<Cell>>) {
        for (peer, cells) in std::mem::take(batches) {
            if !cells.is_empty() {
                self.send_cells(peer, cells);
            }
        }
    }

    fn send_cells(&mut self, peer: NodeId, mut cells: Vec<Cell>) {
        if cells.len() == 1 {
            if let Some(cell) = cells.pop() {
                self.send_cell(peer, cell);
            }
            return;
        }
        let Some(&link) = self.by_peer.get(&peer) else {
            return;
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state != LinkState::Linked {
            return;
        }
        let bytes = LinkMsg::Cells(cells).encode_frame();
        l.bytes_out += bytes.len() as u64;
        self.out.push_back(crate::Output::SendLink { link, bytes });
    }

    fn send_cell(&mut self, peer: NodeId, cell: Cell) {
        let Some(&link) = self.by_peer.get(&peer) else {
            return; // The link is gone; the machines hear `link_closed` and drop the circuit.
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.state != LinkState::Linked {
            return;
        }
        let bytes = LinkMsg::Cell(Box::new(cell)).encode_frame();
        l.bytes_out += bytes.len() as u64;
        self.out.push_back(crate::Output::SendLink { link, bytes });
    }

    fn onion_link_garbage(&mut self, peer: NodeId, reason: String) {
        if let Some(&link) = self.by_peer.get(&peer) {
            self.protocol_violation(link, &format!("onion: {reason}"));
        }
    }

    fn onion_proxy_output(&mut self, o: OnionOutput<ProxyEvent>) {
        match o {
            OnionOutput::Cell { peer, cell } => self.send_cell(peer, cell),
            OnionOutput::CloseLink { peer, reason } => {
                self.onion_link_garbage(peer, reason.to_string())
            }
            OnionOutput::NeedLink { .. } => {} // Only routers ask for links.
            OnionOutput::Event(e) => {
                let e = match e {
                    ProxyEvent::CircuitExtended { circ, hops } => {
                        OnionEvent::CircuitExtended { circ: circ.0, hops }
                    }
                    ProxyEvent::CircuitBuilt { circ } => OnionEvent::CircuitBuilt { circ: circ.0 },
                    ProxyEvent::CircuitTruncated { circ, hops, reason } => {
                        // We never truncate on purpose: a truncated circuit is a failed one.
                        self.log(
                            LogLevel::Warn,
                            format!(
                                "circuit {} lost its hops after hop {hops} ({}); closing it",
                                circ.0,
                                reason.name()
                            ),
                        );
                        let _ = self.onion.proxy.destroy_circuit(circ);
                        return;
                    }
                    ProxyEvent::CircuitClosed { circ, reason } => {
                        if !matches!(reason, onionmesh_onion::CloseReason::Requested) {
                            self.log(
                                LogLevel::Info,
                                format!("circuit {} closed: {reason}", circ.0),
                            );
                        }
                        OnionEvent::CircuitClosed {
                            circ: circ.0,
                            code: reason.code(),
                            reason: reason.to_string(),
                        }
                    }
                    ProxyEvent::StreamOpened { stream } => OnionEvent::StreamOpened {
                        circ: stream.circ.0,
                        stream: stream.stream.0,
                    },
                    ProxyEvent::StreamReadable { stream } => OnionEvent::StreamReadable {
                        circ: stream.circ.0,
                        stream: stream.stream.0,
                    },
                    ProxyEvent::StreamWritable { stream } => OnionEvent::StreamWritable {
                        circ: stream.circ.0,
                        stream: stream.stream.0,
                    },
                    ProxyEvent::StreamEnded { stream, reason } => OnionEvent::StreamEnded {
                        circ: stream.circ.0,
                        stream: stream.stream.0,
                        reason: end_reason(reason).to_string(),
                    },
                    _ => return,
                };
                self.out.push_back(ev(e));
            }
        }
    }

    fn onion_router_output(&mut self, now: Time, o: OnionOutput<RouterEvent>) {
        match o {
            OnionOutput::Cell { peer, cell } => self.send_cell(peer, cell),
            OnionOutput::CloseLink { peer, reason } => {
                self.onion_link_garbage(peer, reason.to_string())
            }
            OnionOutput::NeedLink { peer } => self.onion_need_link(now, peer),
            OnionOutput::Event(e) => match e {
                RouterEvent::StreamOpened { stream, service } => {
                    if service == "echo" && self.onion.echo_on {
                        self.onion.echo.insert(stream, Vec::new());
                    } else {
                        self.out.push_back(ev(OnionEvent::ServiceStreamOpened {
                            circuit: stream.circuit,
                            stream: stream.stream.0,
                            service,
                        }));
                    }
                }
                RouterEvent::StreamReadable { stream } | RouterEvent::StreamWritable { stream }
                    if self.onion.echo.contains_key(&stream) =>
                {
                    self.echo(now, stream)
                }
                RouterEvent::StreamReadable { stream } => {
                    self.out.push_back(ev(OnionEvent::ServiceReadable {
                        circuit: stream.circuit,
                        stream: stream.stream.0,
                    }))
                }
                RouterEvent::StreamWritable { stream } => {
                    self.out.push_back(ev(OnionEvent::ServiceWritable {
                        circuit: stream.circuit,
                        stream: stream.stream.0,
                    }))
                }
                RouterEvent::StreamEnded { stream, .. } => {
                    if self.onion.echo.remove(&stream).is_some() {
                        let _ = self.onion.router.stream_close(now, stream);
                    } else {
                        self.out.push_back(ev(OnionEvent::ServiceEnded {
                            circuit: stream.circuit,
                            stream: stream.stream.0,
                        }));
                    }
                }
                RouterEvent::CircuitClosed { circuit, reason } => {
                    self.onion.echo.retain(|s, _| s.circuit != circuit);
                    if !matches!(
                        reason,
                        onionmesh_onion::CloseReason::Requested
                            | onionmesh_onion::CloseReason::Destroyed(_)
                            | onionmesh_onion::CloseReason::LinkClosed
                    ) {
                        self.log(
                            LogLevel::Info,
                            format!("relayed circuit {circuit} closed: {reason}"),
                        );
                    }
                }
                RouterEvent::CreateRefused { peer, reason } => self.log(
                    LogLevel::Info,
                    format!("refused a circuit from {}: {}", peer.short(), reason.name()),
                ),
                _ => {}
            },
        }
    }

    fn onion_need_link(&mut self, now: Time, peer: NodeId) {
        if self.linked_peers().contains(&peer) {
            self.onion.router.link_opened(now, peer);
            return;
        }
        if self.by_peer.contains_key(&peer) {
            self.onion.needed.insert(peer); // A link is on its way.
            return;
        }
        if self.onion.needed.len() >= MAX_NEEDED_LINKS {
            self.onion.router.link_failed(now, peer);
            return;
        }
        match self.connect(now, peer) {
            Ok(()) => {
                self.onion.needed.insert(peer);
            }
            Err(e) => {
                self.log(
                    LogLevel::Info,
                    format!("cannot extend a circuit to {}: {e}", peer.short()),
                );
                self.onion.router.link_failed(now, peer);
            }
        }
    }

    /// The built-in echo service: write back what is held, then read as much as fits.
    fn echo(&mut self, now: Time, s: ExitStream) {
        loop {
            let Some(pending) = self.onion.echo.get_mut(&s) else {
                return;
            };
            if !pending.is_empty() {
                match self.onion.router.stream_write(now, s, pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(_) => {
                        self.onion.echo.remove(&s);
                        return;
                    }
                }
            }
            let room = ECHO_BUFFER - pending.len().min(ECHO_BUFFER);
            if room == 0 {
                return;
            }
            match self.onion.router.stream_read(now, s, room) {
                Ok(data) if !data.is_empty() => {
                    if let Some(p) = self.onion.echo.get_mut(&s) {
                        p.extend_from_slice(&data);
                    }
                }
                _ => return,
            }
        }
    }
}

fn end_reason(r: onionmesh_onion::EndReason) -> &'static str {
    use onionmesh_onion::EndReason as E;
    match r {
        E::DONE => "done",
        E::NO_SUCH_SERVICE => "no such service",
        E::RESOURCELIMIT => "resource limit",
        E::PROTOCOL => "protocol error",
        E::TIMEOUT => "timeout",
        _ => "misc",
    }
}

fn sh(circ: u64, stream: u16) -> StreamHandle {
    StreamHandle {
        circ: CircHandle(circ),
        stream: StreamId(stream),
    }
}

fn xs(circuit: u64, stream: u16) -> ExitStream {
    ExitStream {
        circuit,
        stream: StreamId(stream),
    }
}

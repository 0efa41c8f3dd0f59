//! The node's onion part: one onion proxy (circuits we build) and one onion router (circuits we
//! relay or end), wired to links and to the services at circuit ends.
//!
//! **Onion keys** are identity keys: `OnionKey::from_seed(identity.onion_secret())`, so a peer's
//! onion key is the `pubkey` that hashes to its ID (`onionmesh_onion::OnionKey`): peer records
//! from the bridge and link certificates already carry it, and a peer's key is known as soon as
//! the bridge names it.
//!
//! **Links**: a router asked to EXTEND2 to a node it has no link with makes the node open one
//! through a bridge introduction (`Request::Connect`), and hears `link_opened` / `link_failed`.
//!
//! **Path rules** ([`OnionApi::build_auto`]): `onionmesh_onion::select_path` with no node twice,
//! not ourselves, not our bridge, and the bridge that introduced a hop not at both ends; with a
//! single bridge that rule cannot hold (it introduced everyone), so it is relaxed and logged.
//!
//! **Services** live behind the seam in `crate::services`: `echo` is the first built-in one.
//!
//! **Cells** for one link leave in batches of up to `MAX_CELLS_PER_FRAME` (one data-channel
//! message each), produced only while the node's output queue is empty, so a congested link
//! pushes back into the onion layer's bounded queues.

use crate::code::ErrorCode;
use crate::error::OnionError;
use crate::event::{CircuitInfo, Event, LogLevel, OnionEvent};
use crate::links::LinkTable;
use crate::output::{log, Request, Requests};
use crate::services::{Echo, Handler, Services, StreamIo};
use onionmesh_bounded::{BoundedLru, FlatMap, FlatSet};
use onionmesh_onion::{
    owner_of, ApiError, Candidate, CellOwner, CircHandle, CircuitView, CloseReason, ExitStream,
    HopSpec, OnionKey, OnionProxy, OnionPublicKey, OnionRouter, Output as OnionOutput, PathError,
    PathPins, PathRules, ProxyConfig, ProxyEvent, RouterConfig, RouterEvent, StreamHandle,
};
use onionmesh_wire::cell::Cell;
use onionmesh_wire::link::{CellBatch, MAX_CELLS_PER_FRAME};
use onionmesh_wire::{LinkMsg, NodeId, PublicKeyBytes, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Most peers whose onion keys the node remembers (least recently used forgotten first).
pub const MAX_DIRECTORY: usize = 4096;
/// Most link requests from the router waiting at once (each also costs a link slot).
const MAX_NEEDED_LINKS: usize = 64;

/// The onion part of [`crate::NodeConfig`].
#[derive(Debug, Clone, Default)]
pub struct OnionConfig {
    pub proxy: ProxyConfig,
    pub router: RouterConfig,
}

struct DirEntry {
    key: OnionPublicKey,
    introducer: Option<NodeId>,
}

/// The node's onion state (see the module docs).
pub(crate) struct OnionPart {
    me: NodeId,
    proxy: OnionProxy,
    router: OnionRouter,
    directory: BoundedLru<NodeId, DirEntry>,
    /// Peers the router asked a link for and is waiting on.
    needed: FlatSet<NodeId>,
    /// Peers whose link closed before it was authenticated: if no new link replaced it by the
    /// next poll, a waiting extension to them has failed (a glare close is replaced at once).
    maybe_failed: Vec<NodeId>,
    /// Links the driver reported congested.
    blocked: FlatSet<NodeId>,
    services: Services,
    bridge: Option<NodeId>,
}

/// The router's exit side of one stream, as a service sees it.
struct RouterIo<'a> {
    router: &'a mut OnionRouter,
    now: Time,
    stream: ExitStream,
}

impl StreamIo for RouterIo<'_> {
    fn read(&mut self, max: usize) -> Vec<u8> {
        self.router
            .stream_read(self.now, self.stream, max)
            .unwrap_or_default()
    }
    fn write(&mut self, data: &[u8]) -> Option<usize> {
        self.router.stream_write(self.now, self.stream, data).ok()
    }
    fn close(&mut self) {
        // Already gone is fine: the service only wants it ended.
        let _ = self.router.stream_close(self.now, self.stream);
    }
}

fn ev(e: OnionEvent) -> Request {
    Request::Emit(Event::Onion(e))
}

impl OnionPart {
    pub fn new(me: NodeId, secret: [u8; 32], cfg: &OnionConfig, seed: [u8; 32]) -> OnionPart {
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
        OnionPart {
            me,
            proxy: OnionProxy::new(me, cfg.proxy.clone(), pseed),
            router: OnionRouter::new(me, key, cfg.router.clone(), rseed),
            directory: BoundedLru::new(MAX_DIRECTORY),
            needed: FlatSet::new(),
            maybe_failed: Vec::new(),
            blocked: FlatSet::new(),
            services: Services::default(),
            bridge: None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        [self.proxy.poll_timeout(), self.router.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Our bridge, which introduces the peers we hear of.
    pub fn set_bridge(&mut self, bridge: NodeId) {
        self.bridge = Some(bridge);
    }

    pub fn bridge(&self) -> Option<NodeId> {
        self.bridge
    }

    /// Remember `id`'s onion key (its identity key, already checked against `id`).
    pub fn learn(&mut self, id: NodeId, pubkey: &PublicKeyBytes, introducer: Option<NodeId>) {
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
        self.directory.insert(id, DirEntry { key, introducer });
    }

    /// The bridge reports these peers gone: automatic paths leave them out (until they link
    /// again) and their keys are forgotten.
    pub fn peers_gone(&mut self, now: Time, ids: &[NodeId]) {
        for id in ids {
            self.directory.remove(id);
            self.proxy.hop_failed(now, *id);
        }
    }

    fn hop(&self, id: NodeId) -> Result<HopSpec, OnionError> {
        if id == self.me {
            return Err(OnionError::SelfInPath);
        }
        let e = self
            .directory
            .peek(&id)
            .ok_or_else(|| OnionError::UnknownPeer(id.short()))?;
        Ok(HopSpec {
            id,
            onion_key: e.key,
        })
    }

    pub fn circuits(&self) -> Vec<CircuitInfo> {
        self.proxy
            .circuits()
            .into_iter()
            .map(circuit_info)
            .collect()
    }

    pub fn relayed_circuits(&self) -> Vec<CircuitInfo> {
        self.router
            .circuits()
            .into_iter()
            .map(circuit_info)
            .collect()
    }

    // ----- inputs from the node --------------------------------------------------------------

    /// A cell arrived on an authenticated link.
    pub fn handle_cell(&mut self, now: Time, peer: NodeId, cell: Cell) {
        match owner_of(self.me, peer, cell.circ_id) {
            CellOwner::Proxy => self.proxy.handle_cell(now, peer, cell),
            CellOwner::Router => self.router.handle_cell(now, peer, cell),
        }
    }

    pub fn link_up(&mut self, now: Time, peer: NodeId, pubkey: &PublicKeyBytes) {
        let bridge = self.bridge;
        self.learn(peer, pubkey, bridge);
        self.needed.remove(&peer);
        self.proxy.hop_recovered(peer);
        self.router.link_opened(now, peer);
    }

    /// A link closed; `was_linked` says whether it had been authenticated.
    pub fn link_down(&mut self, now: Time, peer: NodeId, was_linked: bool) {
        if self.blocked.remove(&peer) {
            self.proxy.link_blocked(peer, false);
            self.router.link_blocked(peer, false);
        }
        if was_linked {
            self.proxy.link_closed(now, peer);
            self.router.link_closed(now, peer);
            self.needed.remove(&peer);
        } else if self.needed.contains(&peer) {
            self.maybe_failed.push(peer);
        }
    }

    /// The node could not start a link the router asked for.
    pub fn link_refused(&mut self, now: Time, peer: NodeId) {
        self.needed.remove(&peer);
        self.router.link_failed(now, peer);
    }

    pub fn set_blocked(&mut self, peer: NodeId, blocked: bool) {
        let changed = if blocked {
            self.blocked.insert(peer)
        } else {
            self.blocked.remove(&peer)
        };
        if changed {
            self.proxy.link_blocked(peer, blocked);
            self.router.link_blocked(peer, blocked);
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.proxy.handle_timeout(now);
        self.router.handle_timeout(now);
    }

    /// Move onion outputs into `reqs` until it holds something or both machines are idle.
    pub fn poll(&mut self, now: Time, links: &LinkTable, reqs: &mut Requests) {
        for peer in std::mem::take(&mut self.maybe_failed) {
            if !links.has_link(&peer) && self.needed.remove(&peer) {
                self.router.link_failed(now, peer);
            }
        }
        let mut batches: FlatMap<NodeId, Vec<Cell>> = FlatMap::new();
        while reqs.is_empty() {
            let cell = if let Some(o) = self.proxy.poll_output() {
                match o {
                    OnionOutput::Cell { peer, cell } => Some((peer, cell)),
                    other => {
                        flush(&mut batches, reqs);
                        self.proxy_output(other, reqs);
                        None
                    }
                }
            } else if let Some(o) = self.router.poll_output() {
                match o {
                    OnionOutput::Cell { peer, cell } => Some((peer, cell)),
                    other => {
                        flush(&mut batches, reqs);
                        self.router_output(now, links, other, reqs);
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
                    send_cells(peer, cells, reqs);
                }
            }
        }
        flush(&mut batches, reqs);
    }

    fn proxy_output(&mut self, o: OnionOutput<ProxyEvent>, reqs: &mut Requests) {
        match o {
            OnionOutput::Cell { peer, cell } => send_cells(peer, vec![cell], reqs),
            OnionOutput::CloseLink { peer, reason } => garbage(peer, reason.to_string(), reqs),
            OnionOutput::NeedLink { .. } => {} // Only routers ask for links.
            OnionOutput::Event(e) => {
                let e = match e {
                    ProxyEvent::CircuitExtended { circ, hops } => {
                        OnionEvent::CircuitExtended { circ, hops }
                    }
                    ProxyEvent::CircuitBuilt { circ } => OnionEvent::CircuitBuilt { circ },
                    ProxyEvent::CircuitTruncated { circ, hops, reason } => {
                        // We never truncate on purpose: a truncated circuit is a failed one.
                        log(
                            reqs,
                            LogLevel::Warn,
                            format!(
                                "circuit {} lost its hops after hop {hops} ({}); closing it",
                                circ.0,
                                reason.name()
                            ),
                        );
                        let _ = self.proxy.destroy_circuit(circ);
                        return;
                    }
                    ProxyEvent::CircuitClosed { circ, reason } => {
                        if !matches!(reason, CloseReason::Requested) {
                            log(
                                reqs,
                                LogLevel::Info,
                                format!("circuit {} closed: {reason}", circ.0),
                            );
                        }
                        OnionEvent::CircuitClosed {
                            circ,
                            code: ErrorCode::from_text(reason.code())
                                .unwrap_or(ErrorCode::Internal),
                            reason: reason.to_string(),
                        }
                    }
                    ProxyEvent::CircuitRetrying { circ, failed, path } => {
                        log(
                            reqs,
                            LogLevel::Info,
                            format!(
                                "circuit {}: {failed}; trying again through {}",
                                circ.0,
                                path.iter()
                                    .map(|h| h.short())
                                    .collect::<Vec<_>>()
                                    .join(" → ")
                            ),
                        );
                        return;
                    }
                    ProxyEvent::StreamOpened { stream } => OnionEvent::StreamOpened { stream },
                    ProxyEvent::StreamReadable { stream } => OnionEvent::StreamReadable { stream },
                    ProxyEvent::StreamWritable { stream } => OnionEvent::StreamWritable { stream },
                    ProxyEvent::StreamEnded { stream, reason } => {
                        OnionEvent::StreamEnded { stream, reason }
                    }
                    _ => return,
                };
                reqs.push_back(ev(e));
            }
        }
    }

    fn router_output(
        &mut self,
        now: Time,
        links: &LinkTable,
        o: OnionOutput<RouterEvent>,
        reqs: &mut Requests,
    ) {
        match o {
            OnionOutput::Cell { peer, cell } => send_cells(peer, vec![cell], reqs),
            OnionOutput::CloseLink { peer, reason } => garbage(peer, reason.to_string(), reqs),
            OnionOutput::NeedLink { peer } => self.need_link(now, links, peer, reqs),
            OnionOutput::Event(e) => match e {
                RouterEvent::StreamOpened { stream, service } => {
                    let mut io = RouterIo {
                        router: &mut self.router,
                        now,
                        stream,
                    };
                    if !self.services.opened(now, stream, &service, &mut io) {
                        reqs.push_back(ev(OnionEvent::ServiceStreamOpened { stream, service }));
                    }
                }
                RouterEvent::StreamReadable { stream } => {
                    let mut io = RouterIo {
                        router: &mut self.router,
                        now,
                        stream,
                    };
                    if !self.services.ready(now, stream, &mut io) {
                        reqs.push_back(ev(OnionEvent::ServiceReadable { stream }));
                    }
                }
                RouterEvent::StreamWritable { stream } => {
                    let mut io = RouterIo {
                        router: &mut self.router,
                        now,
                        stream,
                    };
                    if !self.services.ready(now, stream, &mut io) {
                        reqs.push_back(ev(OnionEvent::ServiceWritable { stream }));
                    }
                }
                RouterEvent::StreamEnded { stream, .. } => {
                    let mut io = RouterIo {
                        router: &mut self.router,
                        now,
                        stream,
                    };
                    if !self.services.ended(stream, &mut io) {
                        reqs.push_back(ev(OnionEvent::ServiceEnded { stream }));
                    }
                }
                RouterEvent::CircuitClosed { circuit, reason } => {
                    for stream in self.services.streams_of(circuit) {
                        let mut io = RouterIo {
                            router: &mut self.router,
                            now,
                            stream,
                        };
                        if !self.services.ended(stream, &mut io) {
                            reqs.push_back(ev(OnionEvent::ServiceEnded { stream }));
                        }
                    }
                    if !matches!(
                        reason,
                        CloseReason::Requested
                            | CloseReason::Destroyed(_)
                            | CloseReason::LinkClosed
                    ) {
                        log(
                            reqs,
                            LogLevel::Info,
                            format!("relayed circuit {circuit} closed: {reason}"),
                        );
                    }
                }
                RouterEvent::CreateRefused { peer, reason } => log(
                    reqs,
                    LogLevel::Info,
                    format!("refused a circuit from {}: {}", peer.short(), reason.name()),
                ),
                _ => {}
            },
        }
    }

    fn need_link(&mut self, now: Time, links: &LinkTable, peer: NodeId, reqs: &mut Requests) {
        if links.is_linked(&peer) {
            self.router.link_opened(now, peer);
            return;
        }
        if links.has_link(&peer) {
            self.needed.insert(peer); // A link is on its way.
            return;
        }
        if self.needed.len() >= MAX_NEEDED_LINKS {
            self.router.link_failed(now, peer);
            return;
        }
        self.needed.insert(peer);
        reqs.push_back(Request::Connect { peer });
    }
}

fn flush(batches: &mut FlatMap<NodeId, Vec<Cell>>, reqs: &mut Requests) {
    for (peer, cells) in std::mem::take(batches) {
        if !cells.is_empty() {
            send_cells(peer, cells, reqs);
        }
    }
}

fn send_cells(peer: NodeId, mut cells: Vec<Cell>, reqs: &mut Requests) {
    let msg = if cells.len() == 1 {
        match cells.pop() {
            Some(c) => LinkMsg::Cell(Box::new(c)),
            None => return,
        }
    } else {
        // Cannot fail: batches are cut at MAX_CELLS_PER_FRAME where they are built, and this
        // one holds at least two cells.
        match CellBatch::new(cells) {
            Ok(batch) => LinkMsg::Cells(batch),
            Err(e) => {
                debug_assert!(false, "a cell batch out of bounds: {e}");
                return;
            }
        }
    };
    reqs.push_back(Request::SendTo { peer, msg });
}

/// The peer broke the onion protocol at link level (a cell no circuit can own): close its link,
/// with a logged reason.
fn garbage(peer: NodeId, reason: String, reqs: &mut Requests) {
    log(
        reqs,
        LogLevel::Warn,
        format!("closing the link to {}: onion: {reason}", peer.short()),
    );
    reqs.push_back(Request::Disconnect {
        peer,
        reason: crate::event::LinkCloseReason::Protocol(format!("onion: {reason}")),
    });
}

fn circuit_info(v: CircuitView) -> CircuitInfo {
    CircuitInfo {
        id: v.id,
        hops: v.hops,
        state: v.state,
        bytes_sent: v.bytes_sent,
        bytes_received: v.bytes_received,
        cells_in: v.cells_in,
        cells_out: v.cells_out,
        streams: v.streams,
    }
}

/// The onion API, borrowed from the node with [`crate::Node::onion`]: circuits we build,
/// streams on them, and the services we offer as a last hop. Every method that changes state
/// takes `now`; outputs appear on the node's `poll_output`.
pub struct OnionApi<'a> {
    pub(crate) part: &'a mut OnionPart,
    pub(crate) links: &'a LinkTable,
    pub(crate) reqs: &'a mut Requests,
}

impl OnionApi<'_> {
    /// Build a circuit through `path` (peer IDs, first hop first). The first hop must be linked;
    /// later hops are reached by the hops before them (introduced on demand). Watch for
    /// `CircuitBuilt` or `CircuitClosed`. An explicit path is never retried.
    ///
    /// Errors: `SelfInPath` (a hop is this node), `UnknownPeer` (no key known),
    /// `FirstHopNotLinked`, or the onion crate's `BadPath` / `TooManyCircuits` / `BadHopCount`.
    pub fn build(&mut self, now: Time, path: &[NodeId]) -> Result<CircHandle, OnionError> {
        let hops = path
            .iter()
            .map(|id| self.part.hop(*id))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = path.first() {
            if !self.links.is_linked(first) {
                return Err(OnionError::FirstHopNotLinked(first.short()));
            }
        }
        Ok(self.part.proxy.build_circuit(now, &hops)?)
    }

    /// Choose a `hops`-hop path under the path rules (see the module docs) and build it,
    /// retrying on a fresh path when a hop fails (see
    /// `onionmesh_onion::OnionProxy::build_circuit_auto`): the application sees one
    /// `CircuitBuilt` or one `CircuitClosed` listing every attempt. Returns the circuit and the
    /// first path tried.
    pub fn build_auto(
        &mut self,
        now: Time,
        hops: usize,
    ) -> Result<(CircHandle, Vec<NodeId>), OnionError> {
        self.build_pinned(now, hops, &PathPins::default())
    }

    /// [`OnionApi::build_auto`] with some hops fixed, e.g. `PathPins::last(id)` to end the
    /// circuit at a chosen node while the other hops follow the rules.
    pub fn build_pinned(
        &mut self,
        now: Time,
        hops: usize,
        pins: &PathPins,
    ) -> Result<(CircHandle, Vec<NodeId>), OnionError> {
        let candidates: Vec<Candidate> = self
            .part
            .directory
            .iter()
            .map(|(id, e)| Candidate {
                hop: HopSpec {
                    id: *id,
                    onion_key: e.key,
                },
                introducer: e.introducer,
                linked: self.links.is_linked(id),
            })
            .collect();
        let mut rules = PathRules {
            local: self.part.me,
            own_bridge: self.part.bridge,
            guards: Vec::new(),
        };
        let p = &mut *self.part;
        let built = match p
            .proxy
            .build_circuit_auto(now, hops, &rules, pins, &candidates)
        {
            Err(ApiError::BadPath(PathError::BridgeAtBothEnds)) => {
                rules.own_bridge = None;
                let built = p
                    .proxy
                    .build_circuit_auto(now, hops, &rules, pins, &candidates);
                if built.is_ok() {
                    log(
                        self.reqs,
                        LogLevel::Info,
                        "every candidate hop was introduced by our one bridge; the bridge-at-both-ends rule is relaxed (the bridge is no hop)".into(),
                    );
                }
                built
            }
            other => other,
        };
        let (circ, path) = built.map_err(|e| match e {
            ApiError::BadPath(PathError::ContainsSelf) => OnionError::SelfInPath,
            ApiError::BadPath(p) => OnionError::NoPath(p),
            e => OnionError::Onion(e),
        })?;
        Ok((circ, path.iter().map(|h| h.id).collect()))
    }

    /// Remember a peer's key learned elsewhere (a DHT record, another bridge) so that it can be
    /// a hop. The key must hash to the ID, as everywhere else.
    pub fn learn_peer(&mut self, id: NodeId, pubkey: &PublicKeyBytes) -> Result<(), OnionError> {
        if id == self.part.me {
            return Err(OnionError::SelfInPath);
        }
        if onionmesh_crypto::node_id(pubkey) != id {
            return Err(OnionError::BadPeerKey(id.short()));
        }
        self.part.learn(id, pubkey, None);
        Ok(())
    }

    /// Tear one of our circuits down.
    pub fn destroy(&mut self, circ: CircHandle) -> Result<(), OnionError> {
        Ok(self.part.proxy.destroy_circuit(circ)?)
    }

    /// Open a stream to `service` at the last hop of a built circuit.
    pub fn open_stream(
        &mut self,
        now: Time,
        circ: CircHandle,
        service: &str,
    ) -> Result<StreamHandle, OnionError> {
        Ok(self.part.proxy.begin_stream(now, circ, service)?)
    }

    /// Queue bytes on a stream. Returns how many were taken: a short count is backpressure (the
    /// stream's bounded buffer is full because the circuit's windows are); wait for
    /// `StreamWritable`.
    pub fn write(
        &mut self,
        now: Time,
        stream: StreamHandle,
        data: &[u8],
    ) -> Result<usize, OnionError> {
        Ok(self.part.proxy.stream_write(now, stream, data)?)
    }

    /// Pull up to `max` received bytes. Reading is what reopens the windows: a reader that
    /// stops makes the far writer see short writes.
    pub fn read(
        &mut self,
        now: Time,
        stream: StreamHandle,
        max: usize,
    ) -> Result<Vec<u8>, OnionError> {
        Ok(self.part.proxy.stream_read(now, stream, max)?)
    }

    /// End a stream once its queued bytes are sent.
    pub fn close_stream(&mut self, now: Time, stream: StreamHandle) -> Result<(), OnionError> {
        Ok(self.part.proxy.stream_close(now, stream)?)
    }

    /// Our circuits.
    pub fn circuits(&self) -> Vec<CircuitInfo> {
        self.part.circuits()
    }

    /// Circuits we relay or end for others.
    pub fn relayed_circuits(&self) -> Vec<CircuitInfo> {
        self.part.relayed_circuits()
    }

    /// Accept streams to `service` at this node. `"echo"` is built in; other names are
    /// application services (see [`OnionEvent::ServiceStreamOpened`]).
    pub fn serve(&mut self, service: &str) -> Result<(), OnionError> {
        if self.part.services.is_registered(service) {
            return Ok(());
        }
        self.part.router.register_service(service)?;
        let handler = if service == "echo" {
            Handler::Builtin(Box::new(Echo::default()))
        } else {
            Handler::App
        };
        self.part.services.register(service, handler);
        Ok(())
    }

    /// Pull what a client sent to an application service.
    pub fn service_read(
        &mut self,
        now: Time,
        stream: ExitStream,
        max: usize,
    ) -> Result<Vec<u8>, OnionError> {
        Ok(self.part.router.stream_read(now, stream, max)?)
    }

    /// Send to the client of an application service; a short count is backpressure.
    pub fn service_write(
        &mut self,
        now: Time,
        stream: ExitStream,
        data: &[u8],
    ) -> Result<usize, OnionError> {
        Ok(self.part.router.stream_write(now, stream, data)?)
    }

    pub fn service_close(&mut self, now: Time, stream: ExitStream) -> Result<(), OnionError> {
        Ok(self.part.router.stream_close(now, stream)?)
    }
}

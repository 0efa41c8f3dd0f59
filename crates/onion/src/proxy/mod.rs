//! The onion proxy: builds circuits hop by hop and carries streams over them.
//!
//! [`OnionProxy`] owns its parts and carries out what they return:
//!
//! | module | job |
//! |---|---|
//! | `build` | EXTEND2 hop by hop, handshake replies |
//! | `retry` | automatic paths, retries on a fresh path, recently failed hops |
//! | `relay` | what a backward cell means (which hop, which message, allowed or not) |
//! | `streams` | stream ids and stream events; the stream logic is [`crate::stream`], shared with the router |
//! | `view` | circuits as the page shows them |
//!
//! Stream packaging goes through the ready set ([`crate::ready`]).

mod build;
mod circuit;
mod config;
mod event;
mod relay;
mod retry;
mod streams;
mod view;

use crate::circid::{self, CellOwner};
use crate::crypto::SendmeTag;
use crate::error::{ApiError, BuildAttempt, CloseReason, ProtocolError};
use crate::flow::STREAM_WINDOW_START;
use crate::handshake::ClientHandshake;
use crate::output::{CircuitView, Output};
use crate::path::{check_path, Candidate, HopSpec, PathError, PathPins, PathRules, MAX_HOPS};
use crate::queue::LinkQueues;
use crate::ready::ReadySet;
use crate::stream::{plaintext, sendmes, Endpoint};
use circuit::{Circuit, Teardown};
use onionmesh_bounded::FlatMap;
use onionmesh_wire::cell::{
    Cell, CellCmd, CellMsg, EndReason, HandshakeType, RelayCell, RelayMsg, ServiceName, StreamId,
};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use relay::Backward;
use retry::{AutoBuild, FailedHops};
use std::collections::VecDeque;

pub use crate::path::MAX_RELAY_EARLY;
pub use config::ProxyConfig;
pub use event::{CircHandle, ProxyEvent, ProxyOutput, StreamHandle};

/// Queue tag for cells that belong to no live circuit (the DESTROY of a failed attempt).
const NO_CIRCUIT: u64 = u64::MAX;

/// The proxy side of a node. See the crate docs for the calling rules.
pub struct OnionProxy {
    local: NodeId,
    cfg: ProxyConfig,
    rng: ChaCha20Rng,
    /// The latest `now` of any input.
    now: Time,
    circuits: FlatMap<u64, Circuit>,
    by_link: FlatMap<(NodeId, onionmesh_wire::cell::CircId), u64>,
    /// Automatic builds not yet built, by circuit key.
    auto: FlatMap<u64, AutoBuild>,
    failed: FailedHops,
    next_handle: u64,
    queues: LinkQueues,
    /// Built circuits that may have stream cells to package, by first hop.
    ready: ReadySet,
    events: VecDeque<ProxyOutput>,
}

impl std::fmt::Debug for OnionProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionProxy")
            .field("local", &self.local)
            .field("circuits", &self.circuits.len())
            .finish_non_exhaustive()
    }
}

impl OnionProxy {
    /// `local` is this node's ID (it decides which half of each link's circuit ids we use);
    /// `seed` feeds the proxy's RNG (handshakes, ids, padding, automatic paths).
    pub fn new(local: NodeId, cfg: ProxyConfig, seed: [u8; 32]) -> OnionProxy {
        OnionProxy {
            local,
            queues: LinkQueues::new(cfg.link_queue_cap),
            failed: FailedHops::new(cfg.failed_hop_capacity),
            cfg,
            rng: ChaCha20Rng::from_seed(seed),
            now: Time::ZERO,
            circuits: FlatMap::new(),
            by_link: FlatMap::new(),
            auto: FlatMap::new(),
            next_handle: 1,
            ready: ReadySet::default(),
            events: VecDeque::new(),
        }
    }

    fn tick(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    // ----- driver side -----------------------------------------------------------------------

    /// The next action. Call after every `handle_*` and API call until it returns `None`.
    pub fn poll_output(&mut self) -> Option<ProxyOutput> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        let (peer, _, cell) = self.queues.pop()?;
        if self.ready.has_link(&peer) && self.queues.len(&peer) < self.cfg.link_high_water / 2 {
            self.pump_link(peer);
        }
        Some(Output::Cell { peer, cell })
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.circuits
            .values()
            .filter_map(|c| self.deadline(c))
            .min()
    }

    fn deadline(&self, c: &Circuit) -> Option<Time> {
        if !c.built {
            Some(c.build_started + self.cfg.build_timeout)
        } else if c.endpoint.streams.is_empty() {
            Some(c.last_activity + self.cfg.idle_timeout)
        } else {
            None
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
        let expired: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| self.deadline(c).is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.close(key, CloseReason::Timeout, Teardown::SendDestroy);
        }
    }

    /// The link to `peer` is congested (`true`) or drained (`false`).
    pub fn link_blocked(&mut self, peer: NodeId, blocked: bool) {
        self.queues.set_blocked(peer, blocked);
        if !blocked {
            self.pump_link(peer);
        }
    }

    /// The link to `peer` closed: every circuit through it is gone (an automatic build through
    /// it starts over elsewhere). If circuits ran through it, `peer` is left out of automatic
    /// paths for [`ProxyConfig::failed_hop_memory`]; a link without circuits (the node closing
    /// an idle link) only stops `peer` being a first hop in the retries of builds already under
    /// way.
    pub fn link_closed(&mut self, now: Time, peer: NodeId) {
        self.tick(now);
        self.failed.unlinked(peer, now);
        if self.circuits.values().any(|c| c.peer == peer) {
            self.failed.remember(peer, now + self.cfg.failed_hop_memory);
        }
        self.queues.remove_link(&peer);
        self.ready.remove_link(&peer);
        let dead: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.close(key, CloseReason::LinkClosed, Teardown::Silently);
        }
    }

    /// A cell from `peer` whose circuit id [`circid::owner_of`] gave to the proxy.
    pub fn handle_cell(&mut self, now: Time, peer: NodeId, cell: Cell) {
        self.tick(now);
        let Some(&key) = self.by_link.get(&(peer, cell.circ_id)) else {
            if cell.cmd == CellCmd::CREATE2 {
                // The peer picked an id from our half of the space.
                self.events.push_back(Output::CloseLink {
                    peer,
                    reason: ProtocolError::WrongIdSpace,
                });
            }
            // Anything else is a late cell for a circuit we closed: drop it.
            return;
        };
        if let Some(c) = self.circuits.get_mut(&key) {
            c.cells_in += 1;
            c.last_activity = now;
        }
        let proto = |e| CloseReason::Protocol(e);
        match cell.msg() {
            Err(e) => self.close(
                key,
                proto(ProtocolError::Malformed(e)),
                Teardown::SendDestroy,
            ),
            Ok(CellMsg::Created2 { hdata }) => self.on_created(now, key, &hdata),
            Ok(CellMsg::Relay(body)) => self.on_relay(now, key, body),
            Ok(CellMsg::RelayEarly(_)) => self.close(
                key,
                proto(ProtocolError::InboundRelayEarly),
                Teardown::SendDestroy,
            ),
            Ok(CellMsg::Destroy(reason)) => {
                self.close(key, CloseReason::Destroyed(reason), Teardown::Silently)
            }
            Ok(CellMsg::Create2 { .. }) => self.events.push_back(Output::CloseLink {
                peer,
                reason: ProtocolError::DuplicateCircuit,
            }),
            Ok(CellMsg::Padding | CellMsg::Unrecognized { .. }) => {}
        }
        self.pump();
    }

    // ----- API ---------------------------------------------------------------------------------

    /// Start building a circuit through `path` (hop 0 first). The proxy must already have a
    /// link to `path[0]`. Watch for `CircuitBuilt` or `CircuitClosed`. A failure is final (see
    /// [`OnionProxy::build_circuit_auto`] for builds that retry).
    pub fn build_circuit(&mut self, now: Time, path: &[HopSpec]) -> Result<CircHandle, ApiError> {
        self.tick(now);
        check_path(self.local, path).map_err(ApiError::BadPath)?;
        if self.circuits.len() >= self.cfg.max_circuits {
            return Err(ApiError::TooManyCircuits(self.cfg.max_circuits));
        }
        let key = self.next_handle;
        self.start(now, key, path)?;
        self.next_handle += 1;
        Ok(CircHandle(key))
    }

    /// Choose a `hops`-hop path from `candidates` under `rules` and `pins` (see
    /// [`crate::path`]), leaving out hops that failed recently, and build it. If the build
    /// fails at a hop, it starts over on a fresh path avoiding that hop, up to
    /// [`ProxyConfig::build_attempts`] paths within [`ProxyConfig::build_deadline`], under the
    /// same handle: the application sees one `CircuitBuilt`, or one `CircuitClosed` whose
    /// reason is [`CloseReason::BuildFailed`] with every attempt (`CircuitRetrying` events
    /// report each restart for the log). Returns the handle and the first path tried.
    ///
    /// `candidates` should be the peers the node knows now, with `linked` set for those it
    /// has a link to; at most 1,024 of them are kept for the retries.
    pub fn build_circuit_auto(
        &mut self,
        now: Time,
        hops: usize,
        rules: &PathRules,
        pins: &PathPins,
        candidates: &[Candidate],
    ) -> Result<(CircHandle, Vec<HopSpec>), ApiError> {
        self.tick(now);
        if self.circuits.len() >= self.cfg.max_circuits {
            return Err(ApiError::TooManyCircuits(self.cfg.max_circuits));
        }
        let mut rules = rules.clone();
        rules.local = self.local;
        let auto = AutoBuild {
            hops,
            rules,
            pins: pins.clone(),
            candidates: candidates
                .iter()
                .take(retry::MAX_AUTO_CANDIDATES)
                .cloned()
                .collect(),
            attempts: Vec::new(),
            no_path: None,
            started: now,
        };
        let path = retry::choose(&mut self.rng, &auto, &self.failed, now)?;
        let key = self.next_handle;
        self.start(now, key, &path)?;
        self.next_handle += 1;
        self.auto.insert(key, auto);
        Ok((CircHandle(key), path))
    }

    /// Hops left out of automatic paths at `now`: they failed an extension, a handshake or a
    /// build recently, or their link closed under our circuits, or the node reported them gone
    /// ([`OnionProxy::hop_failed`]).
    pub fn recently_failed(&mut self, now: Time) -> Vec<NodeId> {
        self.tick(now);
        self.failed.list(now)
    }

    /// Leave `peer` out of automatic paths for [`ProxyConfig::failed_hop_memory`] (the node
    /// learned it is gone, e.g. from its bridge).
    pub fn hop_failed(&mut self, now: Time, peer: NodeId) {
        self.tick(now);
        self.failed.remember(peer, now + self.cfg.failed_hop_memory);
    }

    /// `peer` proved alive again (a new link): let automatic paths use it at once, as a first
    /// hop too.
    pub fn hop_recovered(&mut self, peer: NodeId) {
        self.failed.forget(&peer);
    }

    /// Add one hop to a built circuit that never carried streams.
    pub fn extend_circuit(
        &mut self,
        now: Time,
        circ: CircHandle,
        hop: HopSpec,
    ) -> Result<(), ApiError> {
        self.tick(now);
        let local = self.local;
        let c = self
            .circuits
            .get_mut(&circ.0)
            .ok_or(ApiError::UnknownCircuit)?;
        if !c.built {
            return Err(ApiError::NotOpen);
        }
        if c.used {
            return Err(ApiError::CircuitUsed);
        }
        if c.path.len() >= MAX_HOPS {
            return Err(ApiError::BadHopCount(MAX_HOPS));
        }
        let mut path = c.path.clone();
        path.push(hop);
        check_path(local, &path).map_err(ApiError::BadPath)?;
        c.path = path;
        c.built = false;
        c.build_started = now;
        self.send_extend(circ.0);
        Ok(())
    }

    /// Ask hop `keep - 1` to drop every hop after it. Streams on the circuit end.
    pub fn truncate_circuit(
        &mut self,
        now: Time,
        circ: CircHandle,
        keep: usize,
    ) -> Result<(), ApiError> {
        self.tick(now);
        let c = self.circuits.get(&circ.0).ok_or(ApiError::UnknownCircuit)?;
        if !c.built {
            return Err(ApiError::NotOpen);
        }
        if keep == 0 || keep >= c.crypto.len() {
            return Err(ApiError::BadHopCount(c.crypto.len().saturating_sub(1)));
        }
        let truncate = RelayCell::new(StreamId(0), RelayMsg::Truncate);
        self.send_relay(circ.0, keep - 1, truncate, false);
        Ok(())
    }

    /// Tear a circuit down (DESTROY towards the first hop).
    pub fn destroy_circuit(&mut self, circ: CircHandle) -> Result<(), ApiError> {
        if !self.circuits.contains_key(&circ.0) {
            return Err(ApiError::UnknownCircuit);
        }
        self.close(circ.0, CloseReason::Requested, Teardown::SendDestroy);
        Ok(())
    }

    /// Open a stream to the service `service` at the circuit's last hop.
    pub fn begin_stream(
        &mut self,
        now: Time,
        circ: CircHandle,
        service: &str,
    ) -> Result<StreamHandle, ApiError> {
        self.tick(now);
        if service.is_empty() {
            return Err(ApiError::BadServiceName);
        }
        let service = ServiceName::new(service).map_err(|_| ApiError::BadServiceName)?;
        let max = self.cfg.max_streams_per_circuit;
        let c = self
            .circuits
            .get_mut(&circ.0)
            .ok_or(ApiError::UnknownCircuit)?;
        let stream = streams::begin(c, max)?;
        c.last_activity = now;
        let hop = c.last_hop();
        let begin = RelayMsg::Begin { service };
        self.send_relay(circ.0, hop, RelayCell::new(stream, begin), false);
        Ok(StreamHandle { circ, stream })
    }

    /// Queue bytes on a stream; returns how many were taken (short when the stream's buffer is
    /// full: wait for `StreamWritable`).
    pub fn stream_write(
        &mut self,
        now: Time,
        s: StreamHandle,
        data: &[u8],
    ) -> Result<usize, ApiError> {
        self.tick(now);
        let c = self.active_circuit(now, s.circ.0)?;
        let n = c
            .endpoint
            .write(s.stream, data)
            .ok_or(ApiError::UnknownStream)?;
        self.mark(s.circ.0);
        self.pump();
        Ok(n)
    }

    /// Take up to `max` received bytes. Reading is what opens the windows again.
    pub fn stream_read(
        &mut self,
        now: Time,
        s: StreamHandle,
        max: usize,
    ) -> Result<Vec<u8>, ApiError> {
        self.tick(now);
        let c = self.active_circuit(now, s.circ.0)?;
        let out = c
            .endpoint
            .read(s.stream, max)
            .ok_or(ApiError::UnknownStream)?;
        let hop = c.last_hop();
        for cell in sendmes(s.stream, out.stream_sendmes, &out.circ_sendmes) {
            self.send_relay(s.circ.0, hop, cell, false);
        }
        if let Some(c) = self.circuits.get_mut(&s.circ.0) {
            c.endpoint.reap();
        }
        self.pump();
        Ok(out.data)
    }

    /// Close a stream once its queued bytes are sent.
    pub fn stream_close(&mut self, now: Time, s: StreamHandle) -> Result<(), ApiError> {
        self.tick(now);
        let c = self
            .circuits
            .get_mut(&s.circ.0)
            .ok_or(ApiError::UnknownStream)?;
        let tags = c
            .endpoint
            .close_stream(s.stream)
            .ok_or(ApiError::UnknownStream)?;
        let hop = c.last_hop();
        for cell in sendmes(StreamId(0), 0, &tags) {
            self.send_relay(s.circ.0, hop, cell, false);
        }
        self.mark(s.circ.0);
        self.pump();
        Ok(())
    }

    /// Every circuit, for the page.
    pub fn circuits(&self) -> Vec<CircuitView> {
        self.circuits
            .iter()
            .map(|(k, c)| view::view(*k, c))
            .collect()
    }

    /// DATA cells sent on `s` and not yet acknowledged by a stream SENDME.
    pub fn stream_in_flight(&self, s: StreamHandle) -> Option<u32> {
        let st = self
            .circuits
            .get(&s.circ.0)?
            .endpoint
            .streams
            .get(&s.stream)?;
        Some(STREAM_WINDOW_START - st.flow.package_window())
    }

    /// Bytes queued on `s` but not yet packaged into cells.
    pub fn stream_buffered(&self, s: StreamHandle) -> Option<usize> {
        Some(
            self.circuits
                .get(&s.circ.0)?
                .endpoint
                .streams
                .get(&s.stream)?
                .buffered_out(),
        )
    }

    // ----- carrying out what the parts decide --------------------------------------------------

    /// Allocate a circuit id on `path[0]`'s link and send CREATE2, as circuit `key` (new, or an
    /// automatic build starting over).
    fn start(&mut self, now: Time, key: u64, path: &[HopSpec]) -> Result<(), ApiError> {
        let peer = path[0].id;
        let by_link = &self.by_link;
        let id = circid::allocate(&mut self.rng, self.local, peer, CellOwner::Proxy, |id| {
            by_link.contains_key(&(peer, id))
        })
        .ok_or(ApiError::TooManyCircuits(self.cfg.max_circuits))?;
        let (hs, skin) = ClientHandshake::new(&mut self.rng, path[0].id, &path[0].onion_key);
        self.circuits.insert(key, Circuit::new(now, id, path, hs));
        self.by_link.insert((peer, id), key);
        let create = CellMsg::Create2 {
            htype: HandshakeType::NTOR_K256,
            hdata: skin.into(),
        };
        self.push_cell(key, Cell::new(id, &create));
        Ok(())
    }

    fn push_cell(&mut self, key: u64, cell: Cell) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        c.cells_out += 1;
        let peer = c.peer;
        if self.queues.push(peer, key, cell).is_err() {
            let reason = CloseReason::ResourceLimit("link queue full");
            self.close(key, reason, Teardown::SendDestroy);
        }
    }

    /// Seal `cell` for `hop` and queue it. Returns the cell's tag.
    fn send_relay(
        &mut self,
        key: u64,
        hop: usize,
        cell: RelayCell,
        early: bool,
    ) -> Option<SendmeTag> {
        let c = self.circuits.get_mut(&key)?;
        let mut body = plaintext(&mut self.rng, &cell);
        let tag = c.crypto.originate(hop, &mut body);
        let msg = if early {
            c.relay_early_sent += 1;
            CellMsg::RelayEarly(body)
        } else {
            CellMsg::Relay(body)
        };
        let out = Cell::new(c.id, &msg);
        self.push_cell(key, out);
        Some(tag)
    }

    /// The circuit a stream call addresses, marked active at `now`.
    fn active_circuit(&mut self, now: Time, key: u64) -> Result<&mut Circuit, ApiError> {
        let c = self.circuits.get_mut(&key).ok_or(ApiError::UnknownStream)?;
        c.last_activity = now;
        Ok(c)
    }

    fn send_extend(&mut self, key: u64) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        match build::next_extend(&mut self.rng, c) {
            Ok(Some((hop, cell))) => {
                self.send_relay(key, hop, cell, true);
            }
            Ok(None) => {}
            Err(reason) => self.close(key, reason, Teardown::SendDestroy),
        }
    }

    fn on_created(&mut self, now: Time, key: u64, hdata: &[u8]) {
        let Some(c) = self.circuits.get(&key) else {
            return;
        };
        if !c.crypto.is_empty() {
            let reason = CloseReason::Protocol(ProtocolError::Unexpected("CREATED2"));
            self.close(key, reason, Teardown::SendDestroy);
            return;
        }
        self.finish_hop(now, key, hdata);
    }

    fn finish_hop(&mut self, now: Time, key: u64, hdata: &[u8]) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let hops = match build::finish_hop(c, hdata) {
            Ok(hops) => hops,
            Err(reason) => return self.close(key, reason, Teardown::SendDestroy),
        };
        let circ = CircHandle(key);
        self.events
            .push_back(Output::Event(ProxyEvent::CircuitExtended { circ, hops }));
        if hops < c.path.len() {
            self.send_extend(key);
        } else {
            c.built = true;
            c.last_activity = now;
            self.auto.remove(&key);
            self.events
                .push_back(Output::Event(ProxyEvent::CircuitBuilt { circ }));
        }
    }

    fn on_relay(&mut self, now: Time, key: u64, body: onionmesh_wire::cell::CellBody) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let circ = CircHandle(key);
        match relay::backward(c, body) {
            Backward::Extended2(hdata) => self.finish_hop(now, key, &hdata),
            Backward::Truncated { hop, reason } => {
                c.crypto.truncate(hop + 1);
                c.pending = None;
                if !c.built {
                    // The hop after `hop` could not be reached: the build failed there. The
                    // path stays whole so the failure can name that hop.
                    self.close(
                        key,
                        CloseReason::ExtendFailed(reason),
                        Teardown::SendDestroy,
                    );
                    return;
                }
                c.path.truncate(hop + 1);
                // The streams lived at the old last hop.
                let ended: Vec<StreamId> = c.endpoint.streams.keys().copied().collect();
                c.endpoint = Endpoint::default();
                c.used = false;
                let peer = c.peer;
                self.ready.remove(&peer, key);
                for stream in ended {
                    self.events
                        .push_back(Output::Event(ProxyEvent::StreamEnded {
                            stream: StreamHandle { circ, stream },
                            reason: EndReason::MISC,
                        }));
                }
                self.events
                    .push_back(Output::Event(ProxyEvent::CircuitTruncated {
                        circ,
                        hops: hop + 1,
                        reason,
                    }));
            }
            Backward::Stream { stream, msg, tag } => {
                let hop = c.last_hop();
                match c.endpoint.on_stream_msg(stream, msg, tag) {
                    Ok(r) => {
                        for cell in r.replies {
                            self.send_relay(key, hop, cell, false);
                        }
                        if r.ready {
                            self.mark(key);
                        }
                        if let Some(signal) = r.signal {
                            let e = streams::event(circ, signal);
                            self.events.push_back(Output::Event(e));
                        }
                    }
                    Err(e) => {
                        self.close(key, CloseReason::Protocol(e), Teardown::SendDestroy);
                    }
                }
            }
            Backward::Close(reason) => self.close(key, reason, Teardown::SendDestroy),
            Backward::Nothing => {}
        }
    }

    /// Circuit `key` may have stream cells to package.
    fn mark(&mut self, key: u64) {
        if let Some(c) = self.circuits.get(&key) {
            if c.built {
                self.ready.mark(c.peer, key);
            }
        }
    }

    /// Package local data on every link that has ready circuits.
    fn pump(&mut self) {
        for peer in self.ready.links() {
            self.pump_link(peer);
        }
    }

    /// Package cells of `peer`'s ready circuits, round-robin, while the link has room.
    fn pump_link(&mut self, peer: NodeId) {
        while !self.queues.is_blocked(&peer) && self.queues.len(&peer) < self.cfg.link_high_water {
            let Some(key) = self.ready.next(&peer) else {
                return;
            };
            let Some(c) = self.circuits.get_mut(&key).filter(|c| c.built) else {
                self.ready.remove(&peer, key);
                continue;
            };
            match c.endpoint.next_cell() {
                None => self.ready.remove(&peer, key),
                Some(cell) => {
                    let is_data = matches!(cell.msg, RelayMsg::Data(_));
                    let hop = c.last_hop();
                    if let Some(tag) = self.send_relay(key, hop, cell, false) {
                        if let Some(c) = self.circuits.get_mut(&key) {
                            if is_data {
                                c.endpoint.flow.on_sent(tag);
                            }
                            c.endpoint.reap();
                        }
                    }
                }
            }
            if let Some(c) = self.circuits.get_mut(&key) {
                for stream in c.endpoint.take_writable() {
                    let stream = StreamHandle {
                        circ: CircHandle(key),
                        stream,
                    };
                    self.events
                        .push_back(Output::Event(ProxyEvent::StreamWritable { stream }));
                }
            }
        }
    }

    /// An automatic build failed with `reason`: start over on a fresh path if attempts and
    /// the deadline allow. True if it did (the circuit lives on under the same key).
    fn retry(&mut self, key: u64, reason: &CloseReason, teardown: Teardown) -> bool {
        let now = self.now;
        let (Some(c), Some(auto)) = (self.circuits.get(&key), self.auto.get_mut(&key)) else {
            return false;
        };
        if c.built || matches!(reason, CloseReason::Requested) {
            return false;
        }
        let attempt = BuildAttempt {
            path: c.path.iter().map(|h| h.id).collect(),
            failed_hop: retry::failed_hop(c, reason),
            reason: reason.clone(),
        };
        auto.attempts.push(attempt.clone());
        if auto.attempts.len() >= self.cfg.build_attempts
            || now >= auto.started + self.cfg.build_deadline
        {
            return false;
        }
        let path = match retry::choose(&mut self.rng, auto, &self.failed, now) {
            Ok(p) => p,
            Err(e) => {
                auto.no_path = Some(e);
                return false;
            }
        };
        // Tear the failed attempt down, then start again under the same key.
        let Some(old) = self.circuits.remove(&key) else {
            return false;
        };
        self.by_link.remove(&(old.peer, old.id));
        self.queues.drop_circ(&old.peer, key);
        self.ready.remove(&old.peer, key);
        if teardown == Teardown::SendDestroy {
            let cell = Cell::new(old.id, &CellMsg::Destroy(reason.destroy_reason()));
            let _ = self.queues.push(old.peer, NO_CIRCUIT, cell);
        }
        if self.start(now, key, &path).is_err() {
            // No circuit id left on the new first hop: give up with what we have.
            if let Some(auto) = self.auto.remove(&key) {
                self.events
                    .push_back(Output::Event(ProxyEvent::CircuitClosed {
                        circ: CircHandle(key),
                        reason: auto.into_reason(),
                    }));
            }
            return true;
        }
        self.events
            .push_back(Output::Event(ProxyEvent::CircuitRetrying {
                circ: CircHandle(key),
                failed: attempt,
                path: path.iter().map(|h| h.id).collect(),
            }));
        true
    }

    fn close(&mut self, key: u64, reason: CloseReason, teardown: Teardown) {
        if let Some(c) = self.circuits.get(&key) {
            if let Some(i) = retry::failed_hop(c, &reason).filter(|_| !c.built) {
                let id = c.path[i].id;
                self.failed
                    .remember(id, self.now + self.cfg.failed_hop_memory);
            }
        }
        if self.retry(key, &reason, teardown) {
            return;
        }
        let Some(c) = self.circuits.remove(&key) else {
            return;
        };
        let reason = match self.auto.remove(&key) {
            Some(auto) if reason != CloseReason::Requested => auto.into_reason(),
            _ => reason,
        };
        self.by_link.remove(&(c.peer, c.id));
        self.queues.drop_circ(&c.peer, key);
        self.ready.remove(&c.peer, key);
        if teardown == Teardown::SendDestroy {
            let cell = Cell::new(c.id, &CellMsg::Destroy(reason.destroy_reason()));
            // If even the DESTROY does not fit, the link is hopeless; the peer's idle timeout
            // will collect the circuit.
            let _ = self.queues.push(c.peer, key, cell);
        }
        self.events
            .push_back(Output::Event(ProxyEvent::CircuitClosed {
                circ: CircHandle(key),
                reason,
            }));
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        ApiError::BadPath(e)
    }
}

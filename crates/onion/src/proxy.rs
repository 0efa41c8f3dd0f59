//! The onion proxy: builds circuits hop by hop and carries streams over them.

use crate::circid::{self, CellOwner};
use crate::crypto::{ProxyCrypto, SendmeTag};
use crate::error::{ApiError, CloseReason, ProtocolError};
use crate::flow::{CIRC_WINDOW_START, STREAM_WINDOW_START};
use crate::handshake::ClientHandshake;
use crate::output::{CircuitView, Output};
use crate::path::{check_path, HopSpec, PathError, MAX_HOPS};
use crate::queue::LinkQueues;
use crate::stream::{plaintext, DataOutcome, Endpoint, StreamEnd};
use onionmesh_wire::cell::{
    Cell, CellCmd, CellMsg, CircId, DestroyReason, EndReason, HandshakeType, RelayCell, RelayMsg,
    StreamId, MAX_SERVICE_NAME,
};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// At most this many RELAY_EARLY cells per circuit (Tor's limit); each EXTEND2 uses one.
pub const MAX_RELAY_EARLY: u8 = 8;

/// Tunables of a proxy. The defaults suit a browser page.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub max_circuits: usize,
    pub max_streams_per_circuit: usize,
    /// From CREATE2 (or an extend) to the last hop's answer.
    pub build_timeout: Duration,
    /// A built circuit without streams and without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Cells the proxy may queue per link before refusing more.
    pub link_queue_cap: usize,
    /// Local data is only packaged while the first hop's queue is shorter than this.
    pub link_high_water: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_circuits: 64,
            max_streams_per_circuit: 32,
            build_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            link_queue_cap: 4096,
            link_high_water: 64,
        }
    }
}

/// A circuit built by this proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CircHandle(pub u64);

/// A stream on one of this proxy's circuits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamHandle {
    pub circ: CircHandle,
    pub stream: StreamId,
}

/// What the proxy tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// One more hop answered; `hops` are ready.
    CircuitExtended { circ: CircHandle, hops: usize },
    /// Every hop of the path is ready: streams may be opened.
    CircuitBuilt { circ: CircHandle },
    /// A hop answered TRUNCATE (or failed to extend); the circuit now has `hops` hops and any
    /// streams it carried are gone.
    CircuitTruncated {
        circ: CircHandle,
        hops: usize,
        reason: DestroyReason,
    },
    /// The circuit is gone, with all its streams.
    CircuitClosed {
        circ: CircHandle,
        reason: CloseReason,
    },
    /// The last hop accepted the stream.
    StreamOpened { stream: StreamHandle },
    /// Data arrived on a stream whose buffer was empty: call `stream_read`.
    StreamReadable { stream: StreamHandle },
    /// A stream that refused part of a write has room again.
    StreamWritable { stream: StreamHandle },
    /// The other end ended the stream; unread data can still be read.
    StreamEnded {
        stream: StreamHandle,
        reason: EndReason,
    },
}

pub type ProxyOutput = Output<ProxyEvent>;

#[derive(Debug)]
struct Circuit {
    peer: NodeId,
    id: CircId,
    path: Vec<HopSpec>,
    crypto: ProxyCrypto,
    pending: Option<ClientHandshake>,
    relay_early_sent: u8,
    endpoint: Endpoint,
    /// Streams were opened on it: no more extending.
    used: bool,
    built: bool,
    next_stream: u16,
    build_started: Time,
    last_activity: Time,
    cells_in: u64,
    cells_out: u64,
}

impl Circuit {
    fn last_hop(&self) -> usize {
        self.crypto.len().saturating_sub(1)
    }
}

/// The proxy side of a node. See the crate docs for the calling rules.
pub struct OnionProxy {
    local: NodeId,
    cfg: ProxyConfig,
    rng: ChaCha20Rng,
    circuits: BTreeMap<u64, Circuit>,
    by_link: BTreeMap<(NodeId, CircId), u64>,
    next_handle: u64,
    queues: LinkQueues,
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
    /// `seed` feeds the proxy's RNG (handshakes, ids, padding).
    pub fn new(local: NodeId, cfg: ProxyConfig, seed: [u8; 32]) -> OnionProxy {
        OnionProxy {
            local,
            queues: LinkQueues::new(cfg.link_queue_cap),
            cfg,
            rng: ChaCha20Rng::from_seed(seed),
            circuits: BTreeMap::new(),
            by_link: BTreeMap::new(),
            next_handle: 1,
            events: VecDeque::new(),
        }
    }

    // ----- driver side -----------------------------------------------------------------------

    /// The next action. Call after every `handle_*` and API call until it returns `None`.
    pub fn poll_output(&mut self) -> Option<ProxyOutput> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        let (peer, _, cell) = self.queues.pop()?;
        if self.queues.len(&peer) < self.cfg.link_high_water / 2 {
            self.pump();
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
        let expired: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| self.deadline(c).is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            self.close(key, CloseReason::Timeout, true);
        }
    }

    /// The link to `peer` is congested (`true`) or drained (`false`).
    pub fn link_blocked(&mut self, peer: NodeId, blocked: bool) {
        self.queues.set_blocked(peer, blocked);
        if !blocked {
            self.pump();
        }
    }

    /// The link to `peer` closed: every circuit through it is gone.
    pub fn link_closed(&mut self, _now: Time, peer: NodeId) {
        self.queues.remove_link(&peer);
        let dead: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.peer == peer)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.close(key, CloseReason::LinkClosed, false);
        }
    }

    /// A cell from `peer` whose circuit id [`circid::owner_of`] gave to the proxy.
    pub fn handle_cell(&mut self, now: Time, peer: NodeId, cell: Cell) {
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
        let msg = match cell.msg() {
            Ok(m) => m,
            Err(e) => {
                self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::Malformed(e)),
                    true,
                );
                return;
            }
        };
        match msg {
            CellMsg::Created2 { hdata } => self.on_created(now, key, &hdata),
            CellMsg::Relay(body) => self.on_relay(now, key, body),
            CellMsg::RelayEarly(_) => self.close(
                key,
                CloseReason::Protocol(ProtocolError::InboundRelayEarly),
                true,
            ),
            CellMsg::Destroy(reason) => self.close(key, CloseReason::Destroyed(reason), false),
            CellMsg::Create2 { .. } => self.events.push_back(Output::CloseLink {
                peer,
                reason: ProtocolError::DuplicateCircuit,
            }),
            CellMsg::Padding | CellMsg::Unrecognized { .. } => {}
        }
        self.pump();
    }

    // ----- API ---------------------------------------------------------------------------------

    /// Start building a circuit through `path` (hop 0 first). The proxy must already have a
    /// link to `path[0]`. Watch for `CircuitBuilt` or `CircuitClosed`.
    pub fn build_circuit(&mut self, now: Time, path: &[HopSpec]) -> Result<CircHandle, ApiError> {
        check_path(self.local, path).map_err(ApiError::BadPath)?;
        if self.circuits.len() >= self.cfg.max_circuits {
            return Err(ApiError::TooManyCircuits(self.cfg.max_circuits));
        }
        let peer = path[0].id;
        let by_link = &self.by_link;
        let id = circid::allocate(&mut self.rng, self.local, peer, CellOwner::Proxy, |id| {
            by_link.contains_key(&(peer, id))
        })
        .ok_or(ApiError::TooManyCircuits(self.cfg.max_circuits))?;
        let (hs, skin) = ClientHandshake::new(&mut self.rng, path[0].id, &path[0].onion_key);
        let key = self.next_handle;
        self.next_handle += 1;
        self.circuits.insert(
            key,
            Circuit {
                peer,
                id,
                path: path.to_vec(),
                crypto: ProxyCrypto::new(),
                pending: Some(hs),
                relay_early_sent: 0,
                endpoint: Endpoint::default(),
                used: false,
                built: false,
                next_stream: 1,
                build_started: now,
                last_activity: now,
                cells_in: 0,
                cells_out: 0,
            },
        );
        self.by_link.insert((peer, id), key);
        let cell = Cell::new(
            id,
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                hdata: skin,
            },
        );
        self.push_cell(key, cell);
        Ok(CircHandle(key))
    }

    /// Add one hop to a built circuit that never carried streams.
    pub fn extend_circuit(
        &mut self,
        now: Time,
        circ: CircHandle,
        hop: HopSpec,
    ) -> Result<(), ApiError> {
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
        _now: Time,
        circ: CircHandle,
        keep: usize,
    ) -> Result<(), ApiError> {
        let c = self.circuits.get(&circ.0).ok_or(ApiError::UnknownCircuit)?;
        if !c.built {
            return Err(ApiError::NotOpen);
        }
        if keep == 0 || keep >= c.crypto.len() {
            return Err(ApiError::BadHopCount(c.crypto.len().saturating_sub(1)));
        }
        self.send_relay(
            circ.0,
            keep - 1,
            RelayCell::new(StreamId(0), RelayMsg::Truncate),
            false,
        );
        Ok(())
    }

    /// Tear a circuit down (DESTROY towards the first hop).
    pub fn destroy_circuit(&mut self, circ: CircHandle) -> Result<(), ApiError> {
        if !self.circuits.contains_key(&circ.0) {
            return Err(ApiError::UnknownCircuit);
        }
        self.close(circ.0, CloseReason::Requested, true);
        Ok(())
    }

    /// Open a stream to the service `service` at the circuit's last hop.
    pub fn begin_stream(
        &mut self,
        now: Time,
        circ: CircHandle,
        service: &str,
    ) -> Result<StreamHandle, ApiError> {
        if service.is_empty() || service.len() > MAX_SERVICE_NAME {
            return Err(ApiError::BadServiceName);
        }
        let max = self.cfg.max_streams_per_circuit;
        let c = self
            .circuits
            .get_mut(&circ.0)
            .ok_or(ApiError::UnknownCircuit)?;
        if !c.built {
            return Err(ApiError::NotOpen);
        }
        if c.endpoint.streams.len() >= max {
            return Err(ApiError::TooManyStreams(max));
        }
        let mut id = c.next_stream;
        while id == 0 || c.endpoint.streams.contains_key(&StreamId(id)) {
            id = id.wrapping_add(1);
        }
        c.next_stream = id.wrapping_add(1);
        c.used = true;
        c.last_activity = now;
        c.endpoint
            .streams
            .insert(StreamId(id), StreamEnd::new(false));
        let hop = c.last_hop();
        self.send_relay(
            circ.0,
            hop,
            RelayCell::new(
                StreamId(id),
                RelayMsg::Begin {
                    service: service.to_owned(),
                },
            ),
            false,
        );
        Ok(StreamHandle {
            circ,
            stream: StreamId(id),
        })
    }

    /// Queue bytes on a stream; returns how many were taken (short when the stream's buffer is
    /// full: wait for `StreamWritable`).
    pub fn stream_write(
        &mut self,
        now: Time,
        s: StreamHandle,
        data: &[u8],
    ) -> Result<usize, ApiError> {
        let c = self.active_circuit(now, s.circ.0)?;
        let n = c
            .endpoint
            .write(s.stream, data)
            .ok_or(ApiError::UnknownStream)?;
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
        let c = self.active_circuit(now, s.circ.0)?;
        let out = c
            .endpoint
            .read(s.stream, max)
            .ok_or(ApiError::UnknownStream)?;
        let hop = c.last_hop();
        self.send_sendmes(
            s.circ.0,
            hop,
            s.stream,
            out.stream_sendmes,
            &out.circ_sendmes,
        );
        if let Some(c) = self.circuits.get_mut(&s.circ.0) {
            c.endpoint.reap();
        }
        self.pump();
        Ok(out.data)
    }

    /// Close a stream once its queued bytes are sent.
    pub fn stream_close(&mut self, _now: Time, s: StreamHandle) -> Result<(), ApiError> {
        let c = self
            .circuits
            .get_mut(&s.circ.0)
            .ok_or(ApiError::UnknownStream)?;
        let tags = c
            .endpoint
            .close_stream(s.stream)
            .ok_or(ApiError::UnknownStream)?;
        let hop = c.last_hop();
        self.send_sendmes(s.circ.0, hop, StreamId(0), 0, &tags);
        self.pump();
        Ok(())
    }

    /// Every circuit, for the page.
    pub fn circuits(&self) -> Vec<CircuitView> {
        self.circuits
            .iter()
            .map(|(k, c)| {
                let data_sent: u64 = c.endpoint.streams.values().map(|s| s.bytes_out).sum();
                let data_recv: u64 = c.endpoint.streams.values().map(|s| s.bytes_in).sum();
                CircuitView {
                    id: *k,
                    hops: c.path.iter().map(|h| h.id.short()).collect(),
                    state: match (c.built, c.crypto.len()) {
                        (true, _) => "open",
                        (false, 0) => "building",
                        (false, _) => "extending",
                    },
                    bytes_sent: data_sent,
                    bytes_received: data_recv,
                    cells_in: c.cells_in,
                    cells_out: c.cells_out,
                    streams: c.endpoint.streams.len(),
                    package_window: c.endpoint.flow.package_window(),
                    deliver_window: c.endpoint.flow.deliver_window(),
                    in_flight: CIRC_WINDOW_START - c.endpoint.flow.package_window(),
                }
            })
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

    // ----- internals ---------------------------------------------------------------------------

    fn push_cell(&mut self, key: u64, cell: Cell) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        c.cells_out += 1;
        let peer = c.peer;
        if self.queues.push(peer, key, cell).is_err() {
            self.close(key, CloseReason::ResourceLimit("link queue full"), true);
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

    fn send_sendmes(&mut self, key: u64, hop: usize, stream: StreamId, n: u32, tags: &[SendmeTag]) {
        for _ in 0..n {
            self.send_relay(
                key,
                hop,
                RelayCell::new(stream, RelayMsg::Sendme { tag: None }),
                false,
            );
        }
        for tag in tags {
            self.send_relay(
                key,
                hop,
                RelayCell::new(StreamId(0), RelayMsg::Sendme { tag: Some(*tag) }),
                false,
            );
        }
    }

    fn send_extend(&mut self, key: u64) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let n = c.crypto.len();
        let Some(next) = c.path.get(n).copied() else {
            return;
        };
        if c.relay_early_sent >= MAX_RELAY_EARLY {
            self.close(
                key,
                CloseReason::ResourceLimit("no RELAY_EARLY cells left"),
                true,
            );
            return;
        }
        let (hs, skin) = ClientHandshake::new(&mut self.rng, next.id, &next.onion_key);
        c.pending = Some(hs);
        let msg = RelayMsg::Extend2 {
            target: next.id,
            htype: HandshakeType::NTOR_K256,
            hdata: skin,
        };
        self.send_relay(key, n - 1, RelayCell::new(StreamId(0), msg), true);
    }

    fn on_created(&mut self, now: Time, key: u64, hdata: &[u8]) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        if !c.crypto.is_empty() {
            self.close(
                key,
                CloseReason::Protocol(ProtocolError::Unexpected("CREATED2")),
                true,
            );
            return;
        }
        self.finish_hop(now, key, hdata);
    }

    fn finish_hop(&mut self, now: Time, key: u64, hdata: &[u8]) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let Some(hs) = c.pending.take() else {
            self.close(
                key,
                CloseReason::Protocol(ProtocolError::Unexpected("a handshake reply")),
                true,
            );
            return;
        };
        match hs.finish(hdata) {
            Ok(keys) => {
                c.crypto.add_hop(&keys);
                let hops = c.crypto.len();
                let circ = CircHandle(key);
                self.events
                    .push_back(Output::Event(ProxyEvent::CircuitExtended { circ, hops }));
                if hops < c.path.len() {
                    self.send_extend(key);
                } else {
                    c.built = true;
                    c.last_activity = now;
                    self.events
                        .push_back(Output::Event(ProxyEvent::CircuitBuilt { circ }));
                }
            }
            Err(e) => self.close(key, CloseReason::Handshake(e), true),
        }
    }

    fn on_relay(&mut self, now: Time, key: u64, mut body: onionmesh_wire::cell::CellBody) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let Some((hop, tag)) = c.crypto.receive(&mut body) else {
            self.close(
                key,
                CloseReason::Protocol(ProtocolError::Unrecognized),
                true,
            );
            return;
        };
        let cell = match RelayCell::decode(&body) {
            Ok(cell) => cell,
            Err(e) => {
                self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::Malformed(e)),
                    true,
                );
                return;
            }
        };
        let last = hop == c.last_hop();
        let circ = CircHandle(key);
        let handle = StreamHandle {
            circ,
            stream: cell.stream,
        };
        let unexpected = |what| CloseReason::Protocol(ProtocolError::Unexpected(what));
        match cell.msg {
            RelayMsg::Extended2 { hdata } => {
                if !last || c.pending.is_none() || c.crypto.is_empty() {
                    self.close(key, unexpected("EXTENDED2"), true);
                    return;
                }
                self.finish_hop(now, key, &hdata);
            }
            RelayMsg::Truncated(reason) => {
                c.crypto.truncate(hop + 1);
                c.path.truncate(hop + 1);
                c.pending = None;
                if !c.built {
                    self.close(key, CloseReason::ExtendFailed(reason), true);
                    return;
                }
                // The streams lived at the old last hop.
                let ended: Vec<StreamId> = c.endpoint.streams.keys().copied().collect();
                c.endpoint = Endpoint::default();
                c.used = false;
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
            RelayMsg::Connected
            | RelayMsg::Data(_)
            | RelayMsg::Sendme { .. }
            | RelayMsg::End(_)
                if !last || !c.built =>
            {
                self.close(key, unexpected("stream traffic from a middle hop"), true);
            }
            RelayMsg::Connected => {
                if let Some(s) = c.endpoint.streams.get_mut(&cell.stream) {
                    if !s.open {
                        s.open = true;
                        self.events
                            .push_back(Output::Event(ProxyEvent::StreamOpened { stream: handle }));
                    }
                }
            }
            RelayMsg::Data(data) => match c.endpoint.on_data(cell.stream, data, tag) {
                Ok(DataOutcome::Buffered(true)) => {
                    self.events
                        .push_back(Output::Event(ProxyEvent::StreamReadable { stream: handle }));
                }
                Ok(DataOutcome::Buffered(false)) => {}
                Ok(DataOutcome::Dropped(tags)) => {
                    self.send_sendmes(key, hop, StreamId(0), 0, &tags)
                }
                Err(_) => self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::WindowExceeded),
                    true,
                ),
            },
            RelayMsg::Sendme { tag } => {
                let ok = if cell.stream == StreamId(0) {
                    c.endpoint.flow.on_sendme(tag).is_ok()
                } else {
                    match c.endpoint.streams.get_mut(&cell.stream) {
                        Some(s) => s.flow.on_sendme().is_ok(),
                        None => true,
                    }
                };
                if !ok {
                    self.close(key, CloseReason::Protocol(ProtocolError::BadSendme), true);
                }
            }
            RelayMsg::End(reason) => {
                if let Some(s) = c.endpoint.streams.get_mut(&cell.stream) {
                    if s.remote_end.is_none() {
                        s.remote_end = Some(reason);
                        self.events
                            .push_back(Output::Event(ProxyEvent::StreamEnded {
                                stream: handle,
                                reason,
                            }));
                    }
                }
                c.endpoint.reap();
            }
            RelayMsg::Drop | RelayMsg::Unrecognized { .. } => {}
            RelayMsg::Extend2 { .. } | RelayMsg::Begin { .. } | RelayMsg::Truncate => {
                self.close(
                    key,
                    unexpected("a forward-only message travelling backward"),
                    true,
                );
            }
        }
    }

    /// Package local data into cells while windows and the first hop's queue allow.
    fn pump(&mut self) {
        let keys: Vec<u64> = self.circuits.keys().copied().collect();
        for key in keys {
            while let Some(c) = self.circuits.get_mut(&key) {
                if !c.built
                    || self.queues.is_blocked(&c.peer)
                    || self.queues.len(&c.peer) >= self.cfg.link_high_water
                {
                    break;
                }
                let Some(cell) = c.endpoint.next_cell() else {
                    break;
                };
                let is_data = matches!(cell.msg, RelayMsg::Data(_));
                let hop = c.last_hop();
                let Some(tag) = self.send_relay(key, hop, cell, false) else {
                    break;
                };
                if let Some(c) = self.circuits.get_mut(&key) {
                    if is_data {
                        c.endpoint.flow.on_sent(tag);
                    }
                    c.endpoint.reap();
                }
            }
            if let Some(c) = self.circuits.get_mut(&key) {
                for stream in c.endpoint.take_writable() {
                    self.events
                        .push_back(Output::Event(ProxyEvent::StreamWritable {
                            stream: StreamHandle {
                                circ: CircHandle(key),
                                stream,
                            },
                        }));
                }
            }
        }
    }

    fn close(&mut self, key: u64, reason: CloseReason, send_destroy: bool) {
        let Some(c) = self.circuits.remove(&key) else {
            return;
        };
        self.by_link.remove(&(c.peer, c.id));
        self.queues.drop_circ(&c.peer, key);
        if send_destroy {
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

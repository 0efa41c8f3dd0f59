//! The onion router: answers CREATE2, extends circuits, relays cells both ways, and is the
//! stream end for services at the last hop.

use crate::bucket::TokenBucket;
use crate::circid::{self, CellOwner};
use crate::crypto::{Forward, RouterCrypto, SendmeTag};
use crate::error::{ApiError, CloseReason, ProtocolError};
use crate::flow::CIRC_WINDOW_START;
use crate::handshake::{server_handshake, HandshakeError};
use crate::key::OnionKey;
use crate::output::{CircuitView, Output};
use crate::proxy::MAX_RELAY_EARLY;
use crate::queue::LinkQueues;
use crate::stream::{plaintext, DataOutcome, Endpoint, StreamEnd};
use onionmesh_wire::cell::{
    Cell, CellBody, CellCmd, CellMsg, CircId, DestroyReason, EndReason, HandshakeType, RelayCell,
    RelayMsg, StreamId, MAX_SERVICE_NAME,
};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Queue tag for cells that belong to no circuit (refusals).
const NO_CIRCUIT: u64 = u64::MAX;

/// A router's caps and timers. Past a cap it answers DESTROY(RESOURCELIMIT) and carries on.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub max_circuits: usize,
    /// Circuits one link may have created through us.
    pub max_circuits_per_link: usize,
    /// CREATE2 token bucket per link: burst size and refill per second.
    pub create_burst: u32,
    pub create_per_sec: u32,
    /// A circuit with no cell either way for this long is destroyed.
    pub idle_timeout: Duration,
    /// From EXTEND2 to CREATED2 (including waiting for a link).
    pub extend_timeout: Duration,
    /// Circuits waiting for a link or a CREATED2 at once.
    pub max_pending_extends: usize,
    pub max_streams_per_circuit: usize,
    pub max_services: usize,
    pub link_queue_cap: usize,
    /// Cells one circuit may have queued (both directions). Honest ends never exceed two
    /// windows; beyond, the circuit is ignoring flow control.
    pub circuit_queue_cap: usize,
    /// Service data is only packaged while the link back is shorter than this.
    pub link_high_water: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_circuits: 1024,
            max_circuits_per_link: 128,
            create_burst: 16,
            create_per_sec: 4,
            idle_timeout: Duration::from_secs(300),
            extend_timeout: Duration::from_secs(30),
            max_pending_extends: 64,
            max_streams_per_circuit: 32,
            max_services: 16,
            link_queue_cap: 8192,
            circuit_queue_cap: 2 * CIRC_WINDOW_START as usize + 500,
            link_high_water: 64,
        }
    }
}

/// A stream at this router's service end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExitStream {
    pub circuit: u64,
    pub stream: StreamId,
}

/// What the router tells its services and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouterEvent {
    /// A client opened a stream to one of our services.
    StreamOpened {
        stream: ExitStream,
        service: String,
    },
    StreamReadable {
        stream: ExitStream,
    },
    StreamWritable {
        stream: ExitStream,
    },
    StreamEnded {
        stream: ExitStream,
        reason: EndReason,
    },
    /// A circuit through us is gone.
    CircuitClosed {
        circuit: u64,
        reason: CloseReason,
    },
    /// A CREATE2 from `peer` was answered with DESTROY.
    CreateRefused {
        peer: NodeId,
        reason: DestroyReason,
    },
}

pub type RouterOutput = Output<RouterEvent>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Prev,
    Next,
}

#[derive(Debug)]
enum Next {
    /// We are the last hop.
    None,
    WaitingLink {
        target: NodeId,
        hdata: Vec<u8>,
        since: Time,
    },
    Creating {
        peer: NodeId,
        id: CircId,
        since: Time,
    },
    Open {
        peer: NodeId,
        id: CircId,
    },
}

#[derive(Debug)]
struct Circuit {
    prev: NodeId,
    prev_id: CircId,
    next: Next,
    crypto: RouterCrypto,
    relay_early_in: u8,
    endpoint: Endpoint,
    last_activity: Time,
    cells_in: u64,
    cells_out: u64,
}

impl Circuit {
    fn next_link(&self) -> Option<(NodeId, CircId)> {
        match self.next {
            Next::Creating { peer, id, .. } | Next::Open { peer, id } => Some((peer, id)),
            _ => None,
        }
    }
}

/// The router side of a node. See the crate docs for the calling rules.
pub struct OnionRouter {
    local: NodeId,
    key: OnionKey,
    cfg: RouterConfig,
    rng: ChaCha20Rng,
    services: BTreeSet<String>,
    circuits: BTreeMap<u64, Circuit>,
    by_link: BTreeMap<(NodeId, CircId), (u64, Side)>,
    per_link: BTreeMap<NodeId, usize>,
    buckets: BTreeMap<NodeId, TokenBucket>,
    linked: BTreeSet<NodeId>,
    waiting: BTreeMap<NodeId, Vec<u64>>,
    pending_extends: usize,
    next_key: u64,
    queues: LinkQueues,
    events: VecDeque<RouterOutput>,
}

impl std::fmt::Debug for OnionRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionRouter")
            .field("local", &self.local)
            .field("circuits", &self.circuits.len())
            .finish_non_exhaustive()
    }
}

impl OnionRouter {
    /// `local` is this node's ID, `key` its onion key (see [`OnionKey`] for the choice of key),
    /// `seed` feeds the router's RNG.
    pub fn new(local: NodeId, key: OnionKey, cfg: RouterConfig, seed: [u8; 32]) -> OnionRouter {
        OnionRouter {
            local,
            key,
            queues: LinkQueues::new(cfg.link_queue_cap),
            cfg,
            rng: ChaCha20Rng::from_seed(seed),
            services: BTreeSet::new(),
            circuits: BTreeMap::new(),
            by_link: BTreeMap::new(),
            per_link: BTreeMap::new(),
            buckets: BTreeMap::new(),
            linked: BTreeSet::new(),
            waiting: BTreeMap::new(),
            pending_extends: 0,
            next_key: 1,
            events: VecDeque::new(),
        }
    }

    pub fn onion_key(&self) -> &OnionKey {
        &self.key
    }

    /// Extensions waiting for a link or a CREATED2 (bounded by `max_pending_extends`).
    pub fn pending_extends(&self) -> usize {
        self.pending_extends
    }

    /// Accept BEGIN for `name` at this hop.
    pub fn register_service(&mut self, name: &str) -> Result<(), ApiError> {
        if name.is_empty()
            || name.len() > MAX_SERVICE_NAME
            || self.services.len() >= self.cfg.max_services
        {
            return Err(ApiError::BadServiceName);
        }
        self.services.insert(name.to_owned());
        Ok(())
    }

    // ----- driver side -----------------------------------------------------------------------

    /// The next action. Call after every `handle_*`/`link_*` and API call until `None`.
    pub fn poll_output(&mut self) -> Option<RouterOutput> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        let (peer, _, cell) = self.queues.pop()?;
        if self.queues.len(&peer) < self.cfg.link_high_water / 2 {
            self.pump();
        }
        Some(Output::Cell { peer, cell })
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.circuits.values().map(|c| self.deadline(c)).min()
    }

    fn deadline(&self, c: &Circuit) -> Time {
        let idle = c.last_activity + self.cfg.idle_timeout;
        match c.next {
            Next::WaitingLink { since, .. } | Next::Creating { since, .. } => {
                idle.min(since + self.cfg.extend_timeout)
            }
            _ => idle,
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        let keys: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| self.deadline(c) <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(c) = self.circuits.get(&key) else {
                continue;
            };
            if c.last_activity + self.cfg.idle_timeout <= now {
                self.close(key, CloseReason::Timeout, true, true);
            } else {
                self.drop_next(key, DestroyReason::TIMEOUT);
                self.send_back(
                    key,
                    RelayCell::new(StreamId(0), RelayMsg::Truncated(DestroyReason::TIMEOUT)),
                );
            }
        }
    }

    /// A link to `peer` is up (authenticated). Circuits waiting to extend to it go on.
    pub fn link_opened(&mut self, now: Time, peer: NodeId) {
        self.linked.insert(peer);
        for key in self.waiting.remove(&peer).unwrap_or_default() {
            let Some(c) = self.circuits.get_mut(&key) else {
                continue;
            };
            if let Next::WaitingLink { target, .. } = &c.next {
                if *target == peer {
                    let Next::WaitingLink { hdata, .. } =
                        std::mem::replace(&mut c.next, Next::None)
                    else {
                        continue;
                    };
                    // Still one pending extension: WaitingLink becomes Creating.
                    self.start_create(now, key, peer, hdata);
                }
            }
        }
    }

    /// A link we asked for with `NeedLink` could not be opened.
    pub fn link_failed(&mut self, _now: Time, peer: NodeId) {
        self.fail_waiting(peer, DestroyReason::CONNECTFAILED);
    }

    /// The link to `peer` closed: circuits through it are torn down (or truncated, if the link
    /// was their next hop and the extension was still in progress).
    pub fn link_closed(&mut self, _now: Time, peer: NodeId) {
        self.linked.remove(&peer);
        self.buckets.remove(&peer);
        self.queues.remove_link(&peer);
        self.fail_waiting(peer, DestroyReason::CHANNEL_CLOSED);
        let affected: Vec<(u64, Side)> = self
            .by_link
            .range((peer, CircId(0))..=(peer, CircId(u16::MAX)))
            .map(|(_, v)| *v)
            .collect();
        for (key, side) in affected {
            match side {
                Side::Prev => self.close(key, CloseReason::LinkClosed, false, true),
                Side::Next => {
                    let creating = matches!(
                        self.circuits.get(&key).map(|c| &c.next),
                        Some(Next::Creating { .. })
                    );
                    if creating {
                        self.drop_next(key, DestroyReason::CHANNEL_CLOSED);
                        self.send_back(
                            key,
                            RelayCell::new(
                                StreamId(0),
                                RelayMsg::Truncated(DestroyReason::CHANNEL_CLOSED),
                            ),
                        );
                    } else {
                        self.close(key, CloseReason::LinkClosed, true, false);
                    }
                }
            }
        }
    }

    /// The link to `peer` is congested (`true`) or drained (`false`).
    pub fn link_blocked(&mut self, peer: NodeId, blocked: bool) {
        self.queues.set_blocked(peer, blocked);
        if !blocked {
            self.pump();
        }
    }

    /// A cell from `peer` whose circuit id [`circid::owner_of`] gave to the router.
    pub fn handle_cell(&mut self, now: Time, peer: NodeId, cell: Cell) {
        if cell.circ_id == CircId(0) {
            if cell.cmd != CellCmd::PADDING {
                self.events.push_back(Output::CloseLink {
                    peer,
                    reason: ProtocolError::CircuitZero,
                });
            }
            return;
        }
        match self.by_link.get(&(peer, cell.circ_id)).copied() {
            None if cell.cmd == CellCmd::CREATE2 => self.on_create(now, peer, cell),
            // DESTROY for nothing, or a late cell for a circuit already gone: drop it.
            None => {}
            Some((key, side)) => {
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
                            true,
                        );
                        return;
                    }
                };
                match side {
                    Side::Prev => self.cell_from_prev(now, key, peer, msg),
                    Side::Next => self.cell_from_next(key, peer, msg),
                }
            }
        }
        self.pump();
    }

    // ----- service API ---------------------------------------------------------------------------

    /// Queue bytes towards the client; returns how many were taken.
    pub fn stream_write(
        &mut self,
        now: Time,
        s: ExitStream,
        data: &[u8],
    ) -> Result<usize, ApiError> {
        let c = self.active_circuit(now, s.circuit)?;
        let n = c
            .endpoint
            .write(s.stream, data)
            .ok_or(ApiError::UnknownStream)?;
        self.pump();
        Ok(n)
    }

    /// Take up to `max` bytes the client sent.
    pub fn stream_read(
        &mut self,
        now: Time,
        s: ExitStream,
        max: usize,
    ) -> Result<Vec<u8>, ApiError> {
        let c = self.active_circuit(now, s.circuit)?;
        let out = c
            .endpoint
            .read(s.stream, max)
            .ok_or(ApiError::UnknownStream)?;
        c.endpoint.reap();
        self.send_sendmes(s.circuit, s.stream, out.stream_sendmes, &out.circ_sendmes);
        self.pump();
        Ok(out.data)
    }

    /// Close a stream once its queued bytes are sent.
    pub fn stream_close(&mut self, _now: Time, s: ExitStream) -> Result<(), ApiError> {
        let c = self
            .circuits
            .get_mut(&s.circuit)
            .ok_or(ApiError::UnknownStream)?;
        let tags = c
            .endpoint
            .close_stream(s.stream)
            .ok_or(ApiError::UnknownStream)?;
        self.send_sendmes(s.circuit, StreamId(0), 0, &tags);
        self.pump();
        Ok(())
    }

    /// Unread cells buffered on a stream (for tests and the page).
    pub fn stream_buffered_cells(&self, s: ExitStream) -> Option<usize> {
        Some(
            self.circuits
                .get(&s.circuit)?
                .endpoint
                .streams
                .get(&s.stream)?
                .buffered_in_cells(),
        )
    }

    /// Every circuit through this router, for the page.
    pub fn circuits(&self) -> Vec<CircuitView> {
        self.circuits
            .iter()
            .map(|(k, c)| {
                let mut hops = vec![c.prev.short()];
                let state = match &c.next {
                    Next::None => "open",
                    Next::WaitingLink { target, .. } => {
                        hops.push(target.short());
                        "waiting for link"
                    }
                    Next::Creating { peer, .. } => {
                        hops.push(peer.short());
                        "extending"
                    }
                    Next::Open { peer, .. } => {
                        hops.push(peer.short());
                        "open"
                    }
                };
                CircuitView {
                    id: *k,
                    hops,
                    state,
                    bytes_sent: c.endpoint.streams.values().map(|s| s.bytes_out).sum(),
                    bytes_received: c.endpoint.streams.values().map(|s| s.bytes_in).sum(),
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

    // ----- internals ---------------------------------------------------------------------------

    fn refuse(&mut self, peer: NodeId, id: CircId, reason: DestroyReason) {
        let _ = self
            .queues
            .push(peer, NO_CIRCUIT, Cell::new(id, &CellMsg::Destroy(reason)));
        self.events
            .push_back(Output::Event(RouterEvent::CreateRefused { peer, reason }));
    }

    fn on_create(&mut self, now: Time, peer: NodeId, cell: Cell) {
        let id = cell.circ_id;
        if circid::allocated_by_us(self.local, peer, id) {
            self.events.push_back(Output::CloseLink {
                peer,
                reason: ProtocolError::WrongIdSpace,
            });
            return;
        }
        // Cheap checks first: the handshake costs two scalar multiplications.
        let (burst, rate) = (self.cfg.create_burst, self.cfg.create_per_sec);
        let bucket = self
            .buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(now, burst, rate));
        if !bucket.take(now) {
            self.refuse(peer, id, DestroyReason::RESOURCELIMIT);
            return;
        }
        let on_link = self.per_link.get(&peer).copied().unwrap_or(0);
        if self.circuits.len() >= self.cfg.max_circuits || on_link >= self.cfg.max_circuits_per_link
        {
            self.refuse(peer, id, DestroyReason::RESOURCELIMIT);
            return;
        }
        let hdata = match cell.msg() {
            Ok(CellMsg::Create2 { htype, hdata }) if htype == HandshakeType::NTOR_K256 => hdata,
            _ => {
                self.refuse(peer, id, DestroyReason::PROTOCOL);
                return;
            }
        };
        let (reply, keys) = match server_handshake(&mut self.rng, self.local, &self.key, &hdata) {
            Ok(ok) => ok,
            Err(HandshakeError::NotForUs) => {
                self.refuse(peer, id, DestroyReason::OR_IDENTITY);
                return;
            }
            Err(_) => {
                self.refuse(peer, id, DestroyReason::PROTOCOL);
                return;
            }
        };
        let key = self.next_key;
        self.next_key += 1;
        self.circuits.insert(
            key,
            Circuit {
                prev: peer,
                prev_id: id,
                next: Next::None,
                crypto: RouterCrypto::new(&keys),
                relay_early_in: 0,
                endpoint: Endpoint::default(),
                last_activity: now,
                cells_in: 1,
                cells_out: 0,
            },
        );
        self.by_link.insert((peer, id), (key, Side::Prev));
        *self.per_link.entry(peer).or_default() += 1;
        self.push(
            key,
            peer,
            Cell::new(id, &CellMsg::Created2 { hdata: reply }),
        );
    }

    fn cell_from_prev(&mut self, now: Time, key: u64, peer: NodeId, msg: CellMsg) {
        let (mut body, early) = match msg {
            CellMsg::Relay(body) => (body, false),
            CellMsg::RelayEarly(body) => (body, true),
            CellMsg::Destroy(reason) => {
                self.close(key, CloseReason::Destroyed(reason), false, true);
                return;
            }
            CellMsg::Create2 { .. } => {
                self.events.push_back(Output::CloseLink {
                    peer,
                    reason: ProtocolError::DuplicateCircuit,
                });
                return;
            }
            CellMsg::Created2 { .. } => {
                self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::Unexpected(
                        "CREATED2 from the previous hop",
                    )),
                    true,
                    true,
                );
                return;
            }
            CellMsg::Padding | CellMsg::Unrecognized { .. } => return,
        };
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        if early {
            c.relay_early_in = c.relay_early_in.saturating_add(1);
            if c.relay_early_in > MAX_RELAY_EARLY {
                self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::TooManyRelayEarly),
                    true,
                    true,
                );
                return;
            }
        }
        match c.crypto.forward(&mut body) {
            Forward::Recognized(tag) => self.on_recognized(now, key, body, tag, early),
            Forward::Pass => match c.next {
                Next::Open { peer, id } => {
                    let msg = if early {
                        CellMsg::RelayEarly(body)
                    } else {
                        CellMsg::Relay(body)
                    };
                    self.push(key, peer, Cell::new(id, &msg));
                }
                // Not for us and nowhere to go: modified, reordered or replayed.
                _ => self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::Unrecognized),
                    true,
                    true,
                ),
            },
        }
    }

    fn cell_from_next(&mut self, key: u64, peer: NodeId, msg: CellMsg) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        match msg {
            CellMsg::Created2 { hdata } => {
                if let Next::Creating { peer, id, .. } = c.next {
                    c.next = Next::Open { peer, id };
                    self.pending_extends = self.pending_extends.saturating_sub(1);
                    self.send_back(
                        key,
                        RelayCell::new(StreamId(0), RelayMsg::Extended2 { hdata }),
                    );
                } else {
                    self.close(
                        key,
                        CloseReason::Protocol(ProtocolError::Unexpected("a second CREATED2")),
                        true,
                        true,
                    );
                }
            }
            CellMsg::Relay(mut body) => {
                if matches!(c.next, Next::Open { .. }) {
                    c.crypto.relay_backward(&mut body);
                    let (prev, prev_id) = (c.prev, c.prev_id);
                    self.push(key, prev, Cell::new(prev_id, &CellMsg::Relay(body)));
                } else {
                    self.close(
                        key,
                        CloseReason::Protocol(ProtocolError::Unexpected("RELAY before CREATED2")),
                        true,
                        true,
                    );
                }
            }
            CellMsg::RelayEarly(_) => self.close(
                key,
                CloseReason::Protocol(ProtocolError::InboundRelayEarly),
                true,
                true,
            ),
            CellMsg::Destroy(reason) => {
                if matches!(c.next, Next::Creating { .. }) {
                    // The extension failed: keep the circuit up to us, tell the proxy.
                    self.drop_next(key, reason);
                    self.send_back(
                        key,
                        RelayCell::new(StreamId(0), RelayMsg::Truncated(reason)),
                    );
                } else {
                    self.close(key, CloseReason::Destroyed(reason), true, false);
                }
            }
            CellMsg::Create2 { .. } => self.events.push_back(Output::CloseLink {
                peer,
                reason: ProtocolError::DuplicateCircuit,
            }),
            CellMsg::Padding | CellMsg::Unrecognized { .. } => {}
        }
    }

    fn on_recognized(&mut self, now: Time, key: u64, body: CellBody, tag: SendmeTag, early: bool) {
        let cell = match RelayCell::decode(&body) {
            Ok(cell) => cell,
            Err(e) => {
                self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::Malformed(e)),
                    true,
                    true,
                );
                return;
            }
        };
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let last = matches!(c.next, Next::None);
        let unexpected = |what| CloseReason::Protocol(ProtocolError::Unexpected(what));
        let stream = ExitStream {
            circuit: key,
            stream: cell.stream,
        };
        match cell.msg {
            RelayMsg::Extend2 {
                target,
                htype,
                hdata,
            } => {
                if !early {
                    self.close(
                        key,
                        CloseReason::Protocol(ProtocolError::ExtendNotEarly),
                        true,
                        true,
                    );
                } else if !last || !c.endpoint.streams.is_empty() {
                    self.close(
                        key,
                        unexpected("EXTEND2 on a circuit that already goes on"),
                        true,
                        true,
                    );
                } else if target == self.local || target == c.prev {
                    self.close(key, unexpected("EXTEND2 to ourselves or back"), true, true);
                } else if htype != HandshakeType::NTOR_K256 {
                    self.send_back(
                        key,
                        RelayCell::new(StreamId(0), RelayMsg::Truncated(DestroyReason::PROTOCOL)),
                    );
                } else if self.pending_extends >= self.cfg.max_pending_extends {
                    self.send_back(
                        key,
                        RelayCell::new(
                            StreamId(0),
                            RelayMsg::Truncated(DestroyReason::RESOURCELIMIT),
                        ),
                    );
                } else if self.linked.contains(&target) {
                    self.pending_extends += 1;
                    self.start_create(now, key, target, hdata);
                } else {
                    self.pending_extends += 1;
                    c.next = Next::WaitingLink {
                        target,
                        hdata,
                        since: now,
                    };
                    let waiters = self.waiting.entry(target).or_default();
                    waiters.push(key);
                    if waiters.len() == 1 {
                        self.events.push_back(Output::NeedLink { peer: target });
                    }
                }
            }
            RelayMsg::Begin { service } => {
                let reason = if cell.stream == StreamId(0)
                    || c.endpoint.streams.contains_key(&cell.stream)
                {
                    self.close(key, unexpected("BEGIN on a stream id in use"), true, true);
                    return;
                } else if !last || !self.services.contains(&service) {
                    Some(EndReason::NO_SUCH_SERVICE)
                } else if c.endpoint.streams.len() >= self.cfg.max_streams_per_circuit {
                    Some(EndReason::RESOURCELIMIT)
                } else {
                    None
                };
                match reason {
                    Some(r) => {
                        self.send_back(key, RelayCell::new(cell.stream, RelayMsg::End(r)));
                    }
                    None => {
                        c.endpoint.streams.insert(cell.stream, StreamEnd::new(true));
                        self.send_back(key, RelayCell::new(cell.stream, RelayMsg::Connected));
                        self.events
                            .push_back(Output::Event(RouterEvent::StreamOpened {
                                stream,
                                service,
                            }));
                    }
                }
            }
            RelayMsg::Data(_) | RelayMsg::Sendme { .. } | RelayMsg::End(_) if !last => {
                self.close(
                    key,
                    unexpected("stream traffic at a middle hop"),
                    true,
                    true,
                );
            }
            RelayMsg::Data(data) => match c.endpoint.on_data(cell.stream, data, tag) {
                Ok(DataOutcome::Buffered(true)) => {
                    self.events
                        .push_back(Output::Event(RouterEvent::StreamReadable { stream }));
                }
                Ok(DataOutcome::Buffered(false)) => {}
                Ok(DataOutcome::Dropped(tags)) => {
                    for tag in tags {
                        self.send_back(
                            key,
                            RelayCell::new(StreamId(0), RelayMsg::Sendme { tag: Some(tag) }),
                        );
                    }
                }
                Err(_) => self.close(
                    key,
                    CloseReason::Protocol(ProtocolError::WindowExceeded),
                    true,
                    true,
                ),
            },
            RelayMsg::Sendme { tag } => {
                let ok = if cell.stream == StreamId(0) {
                    c.endpoint.flow.on_sendme(tag).is_ok()
                } else {
                    c.endpoint
                        .streams
                        .get_mut(&cell.stream)
                        .is_none_or(|s| s.flow.on_sendme().is_ok())
                };
                if !ok {
                    self.close(
                        key,
                        CloseReason::Protocol(ProtocolError::BadSendme),
                        true,
                        true,
                    );
                }
            }
            RelayMsg::End(reason) => {
                if let Some(s) = c.endpoint.streams.get_mut(&cell.stream) {
                    if s.remote_end.is_none() {
                        s.remote_end = Some(reason);
                        self.events
                            .push_back(Output::Event(RouterEvent::StreamEnded { stream, reason }));
                    }
                }
                c.endpoint.reap();
            }
            RelayMsg::Truncate => {
                self.drop_next(key, DestroyReason::REQUESTED);
                self.send_back(
                    key,
                    RelayCell::new(StreamId(0), RelayMsg::Truncated(DestroyReason::REQUESTED)),
                );
            }
            RelayMsg::Drop | RelayMsg::Unrecognized { .. } => {}
            RelayMsg::Extended2 { .. } | RelayMsg::Connected | RelayMsg::Truncated(_) => {
                self.close(
                    key,
                    unexpected("a backward-only message travelling forward"),
                    true,
                    true,
                );
            }
        }
    }

    fn start_create(&mut self, now: Time, key: u64, target: NodeId, hdata: Vec<u8>) {
        let by_link = &self.by_link;
        let Some(id) =
            circid::allocate(&mut self.rng, self.local, target, CellOwner::Router, |id| {
                by_link.contains_key(&(target, id))
            })
        else {
            self.pending_extends = self.pending_extends.saturating_sub(1);
            self.send_back(
                key,
                RelayCell::new(
                    StreamId(0),
                    RelayMsg::Truncated(DestroyReason::RESOURCELIMIT),
                ),
            );
            return;
        };
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        c.next = Next::Creating {
            peer: target,
            id,
            since: now,
        };
        self.by_link.insert((target, id), (key, Side::Next));
        let cell = Cell::new(
            id,
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                hdata,
            },
        );
        self.push(key, target, cell);
    }

    /// Forget the next hop (sending it DESTROY if it exists); we become the last hop.
    fn drop_next(&mut self, key: u64, reason: DestroyReason) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let next = std::mem::replace(&mut c.next, Next::None);
        match next {
            Next::None => {}
            Next::WaitingLink { target, .. } => {
                self.pending_extends = self.pending_extends.saturating_sub(1);
                if let Some(w) = self.waiting.get_mut(&target) {
                    w.retain(|k| *k != key);
                    if w.is_empty() {
                        self.waiting.remove(&target);
                    }
                }
            }
            Next::Creating { peer, id, .. } | Next::Open { peer, id } => {
                if matches!(next, Next::Creating { .. }) {
                    self.pending_extends = self.pending_extends.saturating_sub(1);
                }
                self.by_link.remove(&(peer, id));
                self.queues.drop_circ(&peer, key);
                let _ =
                    self.queues
                        .push(peer, NO_CIRCUIT, Cell::new(id, &CellMsg::Destroy(reason)));
            }
        }
    }

    fn fail_waiting(&mut self, peer: NodeId, reason: DestroyReason) {
        for key in self.waiting.remove(&peer).unwrap_or_default() {
            if let Some(c) = self.circuits.get_mut(&key) {
                if matches!(&c.next, Next::WaitingLink { target, .. } if *target == peer) {
                    c.next = Next::None;
                    self.pending_extends = self.pending_extends.saturating_sub(1);
                    self.send_back(
                        key,
                        RelayCell::new(StreamId(0), RelayMsg::Truncated(reason)),
                    );
                }
            }
        }
    }

    /// Queue a cell for circuit `key` on `peer`'s link, within the circuit's and link's caps.
    fn push(&mut self, key: u64, peer: NodeId, cell: Cell) {
        if self.queues.circ_len(key) >= self.cfg.circuit_queue_cap {
            self.close(
                key,
                CloseReason::ResourceLimit("circuit queue full"),
                true,
                true,
            );
            return;
        }
        if self.queues.push(peer, key, cell).is_err() {
            self.close(
                key,
                CloseReason::ResourceLimit("link queue full"),
                true,
                true,
            );
            return;
        }
        if let Some(c) = self.circuits.get_mut(&key) {
            c.cells_out += 1;
        }
    }

    /// Seal a relay message from this hop towards the proxy.
    /// The circuit a service call addresses, marked active at `now`.
    fn active_circuit(&mut self, now: Time, key: u64) -> Result<&mut Circuit, ApiError> {
        let c = self.circuits.get_mut(&key).ok_or(ApiError::UnknownStream)?;
        c.last_activity = now;
        Ok(c)
    }

    /// `n` stream SENDMEs for `stream`, then one authenticated circuit SENDME per tag, towards
    /// the client.
    fn send_sendmes(&mut self, key: u64, stream: StreamId, n: u32, tags: &[SendmeTag]) {
        for _ in 0..n {
            self.send_back(key, RelayCell::new(stream, RelayMsg::Sendme { tag: None }));
        }
        for tag in tags {
            self.send_back(
                key,
                RelayCell::new(StreamId(0), RelayMsg::Sendme { tag: Some(*tag) }),
            );
        }
    }

    fn send_back(&mut self, key: u64, cell: RelayCell) -> Option<SendmeTag> {
        let c = self.circuits.get_mut(&key)?;
        let mut body = plaintext(&mut self.rng, &cell);
        let tag = c.crypto.originate_backward(&mut body);
        let (prev, prev_id) = (c.prev, c.prev_id);
        self.push(key, prev, Cell::new(prev_id, &CellMsg::Relay(body)));
        Some(tag)
    }

    fn pump(&mut self) {
        let keys: Vec<u64> = self
            .circuits
            .iter()
            .filter(|(_, c)| !c.endpoint.streams.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            while let Some(c) = self.circuits.get_mut(&key) {
                if self.queues.is_blocked(&c.prev)
                    || self.queues.len(&c.prev) >= self.cfg.link_high_water
                {
                    break;
                }
                let Some(cell) = c.endpoint.next_cell() else {
                    break;
                };
                let is_data = matches!(cell.msg, RelayMsg::Data(_));
                let Some(tag) = self.send_back(key, cell) else {
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
                        .push_back(Output::Event(RouterEvent::StreamWritable {
                            stream: ExitStream {
                                circuit: key,
                                stream,
                            },
                        }));
                }
            }
        }
    }

    /// Remove a circuit, sending DESTROY to the previous and/or next hop.
    fn close(&mut self, key: u64, reason: CloseReason, to_prev: bool, to_next: bool) {
        let Some(c) = self.circuits.remove(&key) else {
            return;
        };
        let destroy = reason.destroy_reason();
        self.by_link.remove(&(c.prev, c.prev_id));
        if let Some(n) = self.per_link.get_mut(&c.prev) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_link.remove(&c.prev);
            }
        }
        self.queues.drop_circ(&c.prev, key);
        if to_prev {
            let _ = self.queues.push(
                c.prev,
                NO_CIRCUIT,
                Cell::new(c.prev_id, &CellMsg::Destroy(destroy)),
            );
        }
        match &c.next {
            Next::WaitingLink { target, .. } => {
                self.pending_extends = self.pending_extends.saturating_sub(1);
                if let Some(w) = self.waiting.get_mut(target) {
                    w.retain(|k| *k != key);
                    if w.is_empty() {
                        self.waiting.remove(target);
                    }
                }
            }
            Next::Creating { .. } | Next::Open { .. } | Next::None => {}
        }
        if matches!(c.next, Next::Creating { .. }) {
            self.pending_extends = self.pending_extends.saturating_sub(1);
        }
        if let Some((peer, id)) = c.next_link() {
            self.by_link.remove(&(peer, id));
            self.queues.drop_circ(&peer, key);
            if to_next {
                let _ =
                    self.queues
                        .push(peer, NO_CIRCUIT, Cell::new(id, &CellMsg::Destroy(destroy)));
            }
        }
        self.events
            .push_back(Output::Event(RouterEvent::CircuitClosed {
                circuit: key,
                reason,
            }));
    }
}

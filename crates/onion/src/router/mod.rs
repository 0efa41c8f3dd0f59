//! The onion router: answers CREATE2, extends circuits, relays cells both ways, and is the
//! stream end for services at the last hop.
//!
//! [`OnionRouter`] owns its parts and carries out what they ask:
//!
//! | module | job |
//! |---|---|
//! | `admission` | CREATE2 rate and caps, the server handshake |
//! | `extend` | EXTEND2 checks, circuits waiting for a link |
//! | `relay` | what a cell from either side means (pass on, for us, close) |
//! | `endpoint` | cells addressed to this hop: BEGIN, TRUNCATE, stream traffic |
//! | `view` | circuits as the page shows them |
//!
//! Stream packaging goes through the ready set ([`crate::ready`]): only circuits that may have
//! something to send are visited, so idle circuits cost nothing per cell.

mod admission;
mod circuit;
mod config;
mod deadlines;
mod endpoint;
mod event;
mod extend;
mod relay;
mod view;

use crate::circid::{self, CellOwner};
use crate::crypto::SendmeTag;
use crate::error::{ApiError, CloseReason, ProtocolError};
use crate::key::OnionKey;
use crate::output::{CircuitView, Output};
use crate::queue::LinkQueues;
use crate::ready::ReadySet;
use crate::stream::{plaintext, sendmes, Endpoint};
use admission::Admission;
use circuit::{ByLink, Circuit, DestroyTo, Next, Side};
use deadlines::Deadlines;
use endpoint::AtHop;
use extend::{Refusal, Waiting};
use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_wire::cell::{
    Cell, CellBody, CellCmd, CellMsg, CircId, DestroyReason, Extend2Hdata, HandshakeType,
    RelayCell, RelayMsg, StreamId, MAX_SERVICE_NAME,
};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use relay::{FromNext, FromPrev};
use std::collections::VecDeque;

pub use config::RouterConfig;
pub use event::{ExitStream, RouterEvent, RouterOutput};

/// Queue tag for cells that belong to no circuit (refusals).
const NO_CIRCUIT: u64 = u64::MAX;

/// The router side of a node. See the crate docs for the calling rules.
pub struct OnionRouter {
    local: NodeId,
    key: OnionKey,
    cfg: RouterConfig,
    rng: ChaCha20Rng,
    services: FlatSet<String>,
    circuits: FlatMap<u64, Circuit>,
    by_link: ByLink,
    admission: Admission,
    linked: FlatSet<NodeId>,
    waiting: Waiting,
    /// Last-hop circuits that may have stream cells to package, by the link back.
    ready: ReadySet,
    /// When each circuit next needs looking at (possibly early).
    deadlines: Deadlines,
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
            services: FlatSet::new(),
            circuits: FlatMap::new(),
            by_link: ByLink::default(),
            admission: Admission::new(),
            linked: FlatSet::new(),
            waiting: Waiting::default(),
            ready: ReadySet::default(),
            deadlines: Deadlines::default(),
            next_key: 1,
            events: VecDeque::new(),
        }
    }

    pub fn onion_key(&self) -> &OnionKey {
        &self.key
    }

    /// Extensions waiting for a link or a CREATED2 (bounded by `max_pending_extends`). Counted
    /// from the circuits' states, so it cannot drift: O(circuits).
    pub fn pending_extends(&self) -> usize {
        extend::pending(self.circuits.values())
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
        if self.ready.has_link(&peer) && self.queues.len(&peer) < self.cfg.link_high_water / 2 {
            self.pump_link(peer);
        }
        Some(Output::Cell { peer, cell })
    }

    /// When `handle_timeout` must next be called. It may be earlier than needed (a circuit
    /// that saw traffic since is simply looked at again later); never later. O(log circuits).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.next()
    }

    /// Look at circuit `key` again no later than its deadline.
    fn arm(&mut self, key: u64) {
        if let Some(c) = self.circuits.get(&key) {
            let t = self.deadline(c);
            self.deadlines.arm(key, t);
        }
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
        for key in self.deadlines.due(now) {
            let Some(c) = self.circuits.get(&key) else {
                continue;
            };
            if self.deadline(c) > now {
                // Traffic moved it on since it was armed.
            } else if c.last_activity + self.cfg.idle_timeout <= now {
                self.close(key, CloseReason::Timeout, DestroyTo::Both);
            } else {
                self.truncate_here(key, DestroyReason::TIMEOUT);
            }
            self.arm(key);
        }
    }

    /// A link to `peer` is up (authenticated). Circuits waiting to extend to it go on.
    pub fn link_opened(&mut self, now: Time, peer: NodeId) {
        self.linked.insert(peer);
        for key in self.waiting.take(&peer) {
            let Some(c) = self.circuits.get_mut(&key) else {
                continue;
            };
            if extend::waits_for(c, peer) {
                if let Next::WaitingLink { hdata, .. } = std::mem::replace(&mut c.next, Next::None)
                {
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
        self.admission.link_closed(&peer);
        self.queues.remove_link(&peer);
        self.ready.remove_link(&peer);
        self.fail_waiting(peer, DestroyReason::CHANNEL_CLOSED);
        let affected = self.by_link.on_link(&peer);
        for (key, side) in affected {
            match side {
                Side::Prev => self.close(key, CloseReason::LinkClosed, DestroyTo::Next),
                Side::Next => {
                    let creating = matches!(
                        self.circuits.get(&key).map(|c| &c.next),
                        Some(Next::Creating { .. })
                    );
                    if creating {
                        self.truncate_here(key, DestroyReason::CHANNEL_CLOSED);
                    } else {
                        self.close(key, CloseReason::LinkClosed, DestroyTo::Prev);
                    }
                }
            }
        }
    }

    /// The link to `peer` is congested (`true`) or drained (`false`).
    pub fn link_blocked(&mut self, peer: NodeId, blocked: bool) {
        self.queues.set_blocked(peer, blocked);
        if !blocked {
            self.pump_link(peer);
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
        match self.by_link.get(&peer, cell.circ_id) {
            None if cell.cmd == CellCmd::CREATE2 => self.on_create(now, peer, cell),
            // DESTROY for nothing, or a late cell for a circuit already gone: drop it.
            None => {}
            Some((key, side)) => {
                let Some(c) = self.circuits.get_mut(&key) else {
                    return;
                };
                c.cells_in += 1;
                c.last_activity = now;
                match (cell.msg(), side) {
                    (Err(e), _) => {
                        let reason = CloseReason::Protocol(ProtocolError::Malformed(e));
                        self.close(key, reason, DestroyTo::Both);
                        return;
                    }
                    (Ok(msg), Side::Prev) => {
                        let action = relay::from_prev(c, msg);
                        self.on_from_prev(now, key, peer, action);
                    }
                    (Ok(msg), Side::Next) => {
                        let action = relay::from_next(c, msg);
                        self.on_from_next(key, peer, action);
                    }
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
        self.mark(s.circuit);
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
        for cell in sendmes(s.stream, out.stream_sendmes, &out.circ_sendmes) {
            self.send_back(s.circuit, cell);
        }
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
        for cell in sendmes(StreamId(0), 0, &tags) {
            self.send_back(s.circuit, cell);
        }
        self.mark(s.circuit);
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
            .map(|(k, c)| view::view(*k, c))
            .collect()
    }

    // ----- carrying out what the parts decide --------------------------------------------------

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
        let admitted = self
            .admission
            .check(now, peer, self.circuits.len(), &self.cfg)
            .and_then(|()| Admission::handshake(&mut self.rng, self.local, &self.key, &cell));
        let (reply, keys) = match admitted {
            Ok(ok) => ok,
            Err(reason) => {
                self.refuse(peer, id, reason);
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
                crypto: crate::crypto::RouterCrypto::new(&keys),
                relay_early_in: 0,
                endpoint: Endpoint::default(),
                last_activity: now,
                cells_in: 1,
                cells_out: 0,
            },
        );
        self.by_link.insert(peer, id, (key, Side::Prev));
        self.admission.opened(peer);
        self.arm(key);
        self.push(
            key,
            peer,
            Cell::new(
                id,
                &CellMsg::Created2 {
                    hdata: reply.into(),
                },
            ),
        );
    }

    /// Carry out what a cell from the previous hop asked for.
    fn on_from_prev(&mut self, now: Time, key: u64, peer: NodeId, action: FromPrev) {
        match action {
            FromPrev::Recognized { body, tag, early } => {
                self.on_recognized(now, key, body, tag, early)
            }
            FromPrev::Pass { peer, cell } => self.push(key, peer, cell),
            FromPrev::Close(reason, to) => self.close(key, reason, to),
            FromPrev::CloseLink(reason) => {
                self.events.push_back(Output::CloseLink { peer, reason })
            }
            FromPrev::Ignore => {}
        }
    }

    /// Carry out what a cell from the next hop asked for.
    fn on_from_next(&mut self, key: u64, peer: NodeId, action: FromNext) {
        match action {
            FromNext::Extended(hdata) => {
                self.send_back(
                    key,
                    RelayCell::new(StreamId(0), RelayMsg::Extended2 { hdata }),
                );
            }
            FromNext::PassBack { peer, cell } => self.push(key, peer, cell),
            FromNext::ExtendFailed(reason) => self.truncate_here(key, reason),
            FromNext::Close(reason, to) => self.close(key, reason, to),
            FromNext::CloseLink(reason) => {
                self.events.push_back(Output::CloseLink { peer, reason })
            }
            FromNext::Ignore => {}
        }
    }

    fn on_recognized(&mut self, now: Time, key: u64, body: CellBody, tag: SendmeTag, early: bool) {
        let cell = match RelayCell::decode(&body) {
            Ok(cell) => cell,
            Err(e) => {
                let reason = CloseReason::Protocol(ProtocolError::Malformed(e));
                self.close(key, reason, DestroyTo::Both);
                return;
            }
        };
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let max_streams = self.cfg.max_streams_per_circuit;
        match endpoint::at_hop(c, cell, tag, &self.services, max_streams) {
            AtHop::Extend {
                target,
                htype,
                hdata,
            } => self.extend(now, key, early, target, htype, hdata),
            AtHop::Opened { stream, service } => {
                self.send_back(key, RelayCell::new(stream, RelayMsg::Connected));
                let stream = ExitStream {
                    circuit: key,
                    stream,
                };
                self.events
                    .push_back(Output::Event(RouterEvent::StreamOpened { stream, service }));
            }
            AtHop::Reply(cell) => {
                self.send_back(key, cell);
            }
            AtHop::Stream(reaction) => {
                for cell in reaction.replies {
                    self.send_back(key, cell);
                }
                if reaction.ready {
                    self.mark(key);
                }
                if let Some(e) = reaction.signal.and_then(|s| endpoint::event(key, s)) {
                    self.events.push_back(Output::Event(e));
                }
            }
            AtHop::Truncate => self.truncate_here(key, DestroyReason::REQUESTED),
            AtHop::Close(reason) => self.close(key, reason, DestroyTo::Both),
            AtHop::Nothing => {}
        }
    }

    fn extend(
        &mut self,
        now: Time,
        key: u64,
        early: bool,
        target: NodeId,
        htype: HandshakeType,
        hdata: Extend2Hdata,
    ) {
        let pending = self.pending_extends();
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        let max = self.cfg.max_pending_extends;
        match extend::check(c, self.local, early, target, htype, pending, max) {
            Err(Refusal::Close(reason)) => self.close(key, reason, DestroyTo::Both),
            Err(Refusal::Truncated(reason)) => {
                self.send_back(
                    key,
                    RelayCell::new(StreamId(0), RelayMsg::Truncated(reason)),
                );
            }
            Ok(()) if self.linked.contains(&target) => self.start_create(now, key, target, hdata),
            Ok(()) => {
                c.next = Next::WaitingLink {
                    target,
                    hdata,
                    since: now,
                };
                self.arm(key);
                if self.waiting.add(target, key) {
                    self.events.push_back(Output::NeedLink { peer: target });
                }
            }
        }
    }

    fn start_create(&mut self, now: Time, key: u64, target: NodeId, hdata: Extend2Hdata) {
        let by_link = &self.by_link;
        let Some(id) =
            circid::allocate(&mut self.rng, self.local, target, CellOwner::Router, |id| {
                by_link.contains(&target, id)
            })
        else {
            self.truncate_here(key, DestroyReason::RESOURCELIMIT);
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
        self.arm(key);
        self.by_link.insert(target, id, (key, Side::Next));
        let cell = Cell::new(
            id,
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                // An EXTEND2's handshake always fits a CREATE2 (checked when compiled).
                hdata: hdata.widen(),
            },
        );
        self.push(key, target, cell);
    }

    /// Drop the hops after us (DESTROY to the next hop if there is one) and answer TRUNCATED:
    /// we become the last hop.
    fn truncate_here(&mut self, key: u64, reason: DestroyReason) {
        let Some(c) = self.circuits.get_mut(&key) else {
            return;
        };
        match std::mem::replace(&mut c.next, Next::None) {
            Next::None => {}
            Next::WaitingLink { target, .. } => self.waiting.remove(&target, key),
            Next::Creating { peer, id, .. } | Next::Open { peer, id } => {
                self.by_link.remove(&peer, id);
                self.queues.drop_circ(&peer, key);
                let destroy = Cell::new(id, &CellMsg::Destroy(reason));
                let _ = self.queues.push(peer, NO_CIRCUIT, destroy);
            }
        }
        self.send_back(
            key,
            RelayCell::new(StreamId(0), RelayMsg::Truncated(reason)),
        );
    }

    fn fail_waiting(&mut self, peer: NodeId, reason: DestroyReason) {
        for key in self.waiting.take(&peer) {
            if let Some(c) = self.circuits.get_mut(&key) {
                if extend::waits_for(c, peer) {
                    c.next = Next::None;
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
            let reason = CloseReason::ResourceLimit("circuit queue full");
            self.close(key, reason, DestroyTo::Both);
            return;
        }
        if self.queues.push(peer, key, cell).is_err() {
            let reason = CloseReason::ResourceLimit("link queue full");
            self.close(key, reason, DestroyTo::Both);
            return;
        }
        if let Some(c) = self.circuits.get_mut(&key) {
            c.cells_out += 1;
        }
    }

    /// The circuit a service call addresses, marked active at `now`.
    fn active_circuit(&mut self, now: Time, key: u64) -> Result<&mut Circuit, ApiError> {
        let c = self.circuits.get_mut(&key).ok_or(ApiError::UnknownStream)?;
        c.last_activity = now;
        Ok(c)
    }

    /// Seal a relay message from this hop towards the proxy and queue it.
    fn send_back(&mut self, key: u64, cell: RelayCell) -> Option<SendmeTag> {
        let c = self.circuits.get_mut(&key)?;
        let mut body = plaintext(&mut self.rng, &cell);
        let tag = c.crypto.originate_backward(&mut body);
        let (prev, prev_id) = (c.prev, c.prev_id);
        self.push(key, prev, Cell::new(prev_id, &CellMsg::Relay(body)));
        Some(tag)
    }

    /// Circuit `key` may have stream cells to package.
    fn mark(&mut self, key: u64) {
        if let Some(c) = self.circuits.get(&key) {
            self.ready.mark(c.prev, key);
        }
    }

    /// Package stream cells on every link that has ready circuits.
    fn pump(&mut self) {
        for peer in self.ready.links() {
            self.pump_link(peer);
        }
    }

    /// Package stream cells of `peer`'s ready circuits, round-robin, while the link has room.
    fn pump_link(&mut self, peer: NodeId) {
        while !self.queues.is_blocked(&peer) && self.queues.len(&peer) < self.cfg.link_high_water {
            let Some(key) = self.ready.next(&peer) else {
                return;
            };
            let Some(c) = self.circuits.get_mut(&key) else {
                self.ready.remove(&peer, key);
                continue;
            };
            match c.endpoint.next_cell() {
                None => self.ready.remove(&peer, key),
                Some(cell) => {
                    let is_data = matches!(cell.msg, RelayMsg::Data(_));
                    if let Some(tag) = self.send_back(key, cell) {
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
                    let stream = ExitStream {
                        circuit: key,
                        stream,
                    };
                    self.events
                        .push_back(Output::Event(RouterEvent::StreamWritable { stream }));
                }
            }
        }
    }

    /// Remove a circuit, sending DESTROY to the neighbours `to` names.
    fn close(&mut self, key: u64, reason: CloseReason, to: DestroyTo) {
        let Some(c) = self.circuits.remove(&key) else {
            return;
        };
        self.deadlines.remove(key);
        let destroy = reason.destroy_reason();
        self.by_link.remove(&c.prev, c.prev_id);
        self.admission.closed(&c.prev);
        self.queues.drop_circ(&c.prev, key);
        self.ready.remove(&c.prev, key);
        if to.prev() {
            let cell = Cell::new(c.prev_id, &CellMsg::Destroy(destroy));
            let _ = self.queues.push(c.prev, NO_CIRCUIT, cell);
        }
        if let Next::WaitingLink { target, .. } = &c.next {
            self.waiting.remove(target, key);
        }
        if let Some((peer, id)) = c.next_link() {
            self.by_link.remove(&peer, id);
            self.queues.drop_circ(&peer, key);
            if to.next() {
                let cell = Cell::new(id, &CellMsg::Destroy(destroy));
                let _ = self.queues.push(peer, NO_CIRCUIT, cell);
            }
        }
        self.events
            .push_back(Output::Event(RouterEvent::CircuitClosed {
                circuit: key,
                reason,
            }));
    }
}

//! The bridge's rendezvous: the one object the driver feeds ([`Rendezvous::handle_input`]).
//!
//! It registers peers by their challenge-signed hello, keeps each connection's liveness, answers
//! `FindPeer` with the closest live peers, relays WebRTC introductions (probing the target),
//! announces departures, and owns the federation part (`federation`), carrying out what it asks. A connection
//! that sends a malformed or unexpected frame, sends too fast, never says hello or goes silent
//! is closed with a reason; nothing one connection does can affect another beyond the
//! documented limits.

use crate::config::{codes, RendezvousConfig};
use crate::conn::{Conn, ConnId, ConnState, Probe, MAX_PROBED_INTRODUCTIONS};
use crate::departures::Departures;
use crate::federation::{FedRequest, Federation, Me, NewBridge};
use crate::Time;
use onionmesh_bounded::TokenBucket;
use onionmesh_crypto::{hello, Identity};
use onionmesh_kad::{Kad, KadConfig};
use onionmesh_wire::db::DbMsg;
use onionmesh_wire::kad::Contact;
use onionmesh_wire::signal::{
    ChallengeNonce, FoundPeers, PeerIds, Reason, Sdp, MAX_PEERS_GONE, MAX_PEERS_PER_ANSWER,
    MAX_PEERS_PER_SYNC,
};
use onionmesh_wire::{
    BridgeAddr, Frame, NodeId, PeerRecord, PublicKeyBytes, SignalMsg, SignatureBytes,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Everything the driver tells the rendezvous. Every input comes with `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RendezvousInput<'a> {
    /// A connection was accepted and its transport is ready (for the bridge: the WebSocket's
    /// link handshake is done). The rendezvous challenges it.
    Opened(ConnId),
    /// The driver dialed another bridge (`--peer-bridge`) and the connection is ready; the
    /// rendezvous challenges it and answers its challenge with a bridge hello.
    Dialed(ConnId),
    /// One frame from `conn`, already within the transport's size limit.
    Frame { conn: ConnId, bytes: &'a [u8] },
    /// The transport refused something before it reached the core (too large, not binary, a
    /// broken channel). The rendezvous closes the connection with this reason.
    TransportError { conn: ConnId, reason: &'a str },
    /// The connection is gone (closed by either side, or dropped by the driver).
    Closed(ConnId),
    /// The time from [`Rendezvous::poll_timeout`] has come.
    Timeout,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousOutput {
    /// Write this frame to `conn`.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Close `conn` after writing what was queued for it (an `Error` frame saying why comes
    /// first); `reason` is for the log. The rendezvous has already forgotten the connection.
    Close { conn: ConnId, reason: String },
    /// A peer registered (for the log).
    Registered { conn: ConnId, id: NodeId },
    /// A federated bridge said hello on `conn` (for the log).
    Federated {
        conn: ConnId,
        id: NodeId,
        addr: BridgeAddr,
    },
    /// Something worth a line in the log; `warn` for misbehaviour.
    Log { warn: bool, text: String },
    /// A registered node asked its bridge, the facilitator, for content from outside the mesh
    /// (issue 10): one `DB_*` message of its request `req`. The rendezvous only passes these
    /// through; the driver's facilitator answers with `Facilitated` frames on `conn`.
    Facilitate { conn: ConnId, req: u32, msg: DbMsg },
    /// The registered node on `conn` cancelled its facilitated request `req`.
    FacilitateClose { conn: ConnId, req: u32 },
}

/// The bridge's peer registry, introduction relay and federation member.
pub struct Rendezvous {
    identity: Identity,
    cfg: RendezvousConfig,
    /// The latest `now` seen; never goes backwards.
    now: Time,
    rng: ChaCha20Rng,
    conns: BTreeMap<ConnId, Conn>,
    by_id: BTreeMap<NodeId, ConnId>,
    /// One `(conn.wake, conn)` per connection, so the next timer is the first entry.
    wakes: BTreeSet<(Time, ConnId)>,
    departures: Departures,
    out: VecDeque<RendezvousOutput>,
    /// The federation part: federated bridges, their peers, the bridge's DHT node.
    fed: Federation,
    /// Warnings about dropped frames so far (see [`Rendezvous::drop_log`]).
    logged_drops: u64,
}

impl Rendezvous {
    /// A rendezvous without a DHT node (see [`Rendezvous::with_dht`]). `seed` feeds its RNG
    /// (challenges, ping nonces): 32 bytes from the OS in the bridge.
    pub fn new(identity: Identity, cfg: RendezvousConfig, seed: [u8; 32]) -> Self {
        let me = Me {
            id: identity.id(),
            pubkey: identity.public_key(),
            addr: cfg.addr.clone(),
        };
        let fed = Federation::new(me, cfg.max_remote_peers);
        Rendezvous {
            identity,
            cfg,
            now: Time::ZERO,
            rng: ChaCha20Rng::from_seed(seed),
            conns: BTreeMap::new(),
            by_id: BTreeMap::new(),
            wakes: BTreeSet::new(),
            departures: Departures::default(),
            out: VecDeque::new(),
            fed,
            logged_drops: 0,
        }
    }

    /// A rendezvous that is also a DHT node under the bridge's identity, its clock starting at
    /// `now`. `seed` feeds both RNGs (challenges; the DHT's token secrets and request ids): 32
    /// bytes from the OS in the bridge.
    pub fn with_dht(identity: Identity, cfg: RendezvousConfig, seed: [u8; 32], now: Time) -> Self {
        let me = Contact {
            id: identity.id(),
            pubkey: identity.public_key(),
            bridge: Some(cfg.addr.clone()),
            introducers: Default::default(),
        };
        let mut r = Rendezvous::new(identity, cfg, seed);
        r.now = now;
        let mut kad_seed = [0u8; 32];
        r.rng.fill_bytes(&mut kad_seed);
        if let Ok(kad) = Kad::new(me, KadConfig::default(), kad_seed, now) {
            r.fed.run_dht(kad);
        }
        r
    }

    /// The bridge's DHT node, if it runs one.
    pub fn dht(&self) -> Option<&Kad> {
        self.fed.dht()
    }

    /// Federated bridges connected now.
    pub fn federated_bridges(&self) -> usize {
        self.fed.bridges()
    }

    /// Peers registered at federated bridges that this bridge knows.
    pub fn remote_peers(&self) -> usize {
        self.fed.remote_peers()
    }

    /// This bridge's node ID.
    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// Peers registered here now (suspect ones included).
    pub fn registered_peers(&self) -> usize {
        self.by_id.len()
    }

    /// Open connections (registered, federated or waiting for a hello).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<RendezvousOutput> {
        self.out.pop_front()
    }

    /// When to feed [`RendezvousInput::Timeout`] next.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.wakes.first().map(|(t, _)| *t),
            self.departures.due(),
            self.fed.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feed one event. `now` is stored first; an earlier `now` than one already seen is taken
    /// as the latest one (the driver's clock is monotonic, but nothing here relies on that).
    pub fn handle_input(&mut self, now: Time, input: RendezvousInput<'_>) {
        self.now = self.now.max(now);
        match input {
            RendezvousInput::Opened(conn) => self.open(conn),
            RendezvousInput::Dialed(conn) => {
                self.open(conn);
                self.fed.dialed(conn);
            }
            RendezvousInput::Frame { conn, bytes } => self.on_frame(conn, bytes),
            RendezvousInput::TransportError { conn, reason } => {
                self.reject(conn, codes::MALFORMED, reason)
            }
            RendezvousInput::Closed(conn) => self.forget(conn),
            RendezvousInput::Timeout => self.on_timeout(),
        }
    }

    fn open(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            // A driver bug; the old connection's state would be lost silently otherwise.
            self.log(
                true,
                format!("connection {} opened twice; closing it", conn.0),
            );
            self.reject(conn, codes::PROTOCOL, "connection opened twice");
            return;
        }
        let now = self.now;
        let mut challenge = [0u8; 32];
        self.rng.fill_bytes(&mut challenge);
        let deadline = now + self.cfg.hello_timeout;
        self.conns.insert(
            conn,
            Conn {
                state: ConnState::AwaitingHello {
                    deadline,
                    their_challenge: None,
                },
                bucket: TokenBucket::new(now, self.cfg.burst, self.cfg.frames_per_sec),
                challenge,
                last_heard: now,
                pinged: false,
                probe: None,
                suspect: false,
                wake: deadline,
            },
        );
        self.wakes.insert((deadline, conn));
        self.send(conn, &SignalMsg::Challenge { nonce: challenge });
    }

    /// Forget `conn` (closed by either side): its registration, its wake-up, its federation.
    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.wakes.remove(&(c.wake, conn));
        match c.state {
            ConnState::Registered { id, .. } => {
                if self.by_id.get(&id) == Some(&conn) {
                    self.by_id.remove(&id);
                    // A suspect peer was announced as gone already.
                    if !c.suspect {
                        self.peer_left(id, true);
                    }
                }
            }
            ConnState::Bridge | ConnState::AwaitingHello { .. } => {}
        }
        self.fed.closed(conn);
    }

    // ----- time ------------------------------------------------------------------------------

    fn on_timeout(&mut self) {
        let now = self.now;
        while let Some(&(t, conn)) = self.wakes.first() {
            if t > now {
                break;
            }
            self.wakes.pop_first();
            self.wake(conn);
        }
        if self.departures.due().is_some_and(|t| t <= now) {
            self.announce_departures();
        }
        self.fed.timeout(now, &self.by_id);
        self.pump_fed();
    }

    /// `conn`'s wake-up time came: hello deadline, ping, silence or probe.
    fn wake(&mut self, conn: ConnId) {
        let now = self.now;
        let (ping_interval, silence) = (self.cfg.ping_interval, self.cfg.silence_timeout);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let ConnState::AwaitingHello { deadline, .. } = c.state {
            if deadline <= now {
                self.reject(conn, codes::HELLO_TIMEOUT, "no hello within the time limit");
            } else {
                self.reschedule(conn);
            }
            return;
        }
        let silent_for = now.since(c.last_heard);
        if u128::from(silent_for) >= silence.as_millis() {
            let reason = format!(
                "nothing arrived from the peer for {} s, not even the answer to a keepalive \
                 ping: dropping it as gone",
                silent_for / 1000
            );
            self.reject(conn, codes::SILENT, &reason);
            return;
        }
        let probe_failed = c.probe.as_ref().is_some_and(|p| p.deadline <= now);
        if probe_failed {
            let probe = c.probe.take();
            self.probe_failed(conn, probe.map(|p| p.introductions).unwrap_or_default());
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.pinged && u128::from(silent_for) >= ping_interval.as_millis() {
            c.pinged = true;
            let nonce = self.rng.next_u64();
            self.send(conn, &SignalMsg::Ping { nonce });
        }
        self.reschedule(conn);
    }

    /// Put `conn`'s wake-up at the time its state asks for.
    fn reschedule(&mut self, conn: ConnId) {
        let (ping_interval, silence) = (self.cfg.ping_interval, self.cfg.silence_timeout);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.wakes.remove(&(c.wake, conn));
        c.wake = c.next_wake(ping_interval, silence);
        self.wakes.insert((c.wake, conn));
    }

    /// Something arrived from `conn`: it is alive. Clears a ping, a probe and a suspicion (a
    /// suspect peer is announced again).
    fn heard(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_heard = now;
        c.pinged = false;
        c.probe = None;
        if std::mem::take(&mut c.suspect) {
            if let ConnState::Registered { id, pubkey } = c.state {
                self.log(
                    false,
                    format!("peer {} answers again; offering it to others", id.short()),
                );
                self.peer_joined(id, pubkey);
            }
        }
        // The wake-up stays where it is (earlier than needed at worst) and is moved on when it
        // fires, so a busy connection costs no set update per frame.
    }

    // ----- frames ----------------------------------------------------------------------------

    fn on_frame(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.bucket.take(now) {
            self.reject(
                conn,
                codes::RATE_LIMITED,
                "sending faster than the per-peer rate limit",
            );
            return;
        }
        self.heard(conn);
        let msg = match SignalMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.reject(conn, codes::MALFORMED, &format!("malformed frame: {e}"));
                return;
            }
        };
        let registered = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Registered { id, .. }) => Some(*id),
            Some(ConnState::Bridge) => {
                self.fed.on_frame(now, &self.by_id, conn, msg);
                self.pump_fed();
                return;
            }
            _ => None,
        };
        match (registered, msg) {
            (None, msg) => self.before_hello(conn, msg),
            (Some(_), SignalMsg::Ping { nonce }) => self.send(conn, &SignalMsg::Pong { nonce }),
            (Some(_), SignalMsg::Pong { .. }) => {}
            (Some(from), SignalMsg::KadTo { peer, bytes }) => {
                let Some(ConnState::Registered { pubkey, .. }) =
                    self.conns.get(&conn).map(|c| &c.state)
                else {
                    return;
                };
                let pubkey = *pubkey;
                self.fed
                    .kad_from_node(now, &self.by_id, from, pubkey, peer, bytes);
                self.pump_fed();
            }
            (Some(_), SignalMsg::FindPeer { id, .. }) => self.on_find_peer(conn, id),
            (Some(_), SignalMsg::Facilitate { req, msg }) => self
                .out
                .push_back(RendezvousOutput::Facilitate { conn, req, msg }),
            (Some(_), SignalMsg::FacilitateClose { req }) => self
                .out
                .push_back(RendezvousOutput::FacilitateClose { conn, req }),
            (Some(from), SignalMsg::Introduce { peer, session, sdp }) => {
                self.on_introduce(conn, from, peer, session, sdp)
            }
            (Some(from), SignalMsg::Introduced { peer, session, sdp }) => self.deliver(
                &peer,
                SignalMsg::Introduced {
                    peer: from,
                    session,
                    sdp,
                },
            ),
            (
                Some(from),
                SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason,
                },
            ) => self.deliver(
                &peer,
                SignalMsg::IntroduceFailed {
                    peer: from,
                    session,
                    reason,
                },
            ),
            (Some(_), SignalMsg::Unrecognized { cmd, .. }) => self.reject(
                conn,
                codes::PROTOCOL,
                &format!("unknown command 0x{cmd:02x}"),
            ),
            (Some(_), other) => {
                let name = match other {
                    SignalMsg::Hello { .. } => "a second hello",
                    SignalMsg::Challenge { .. } => "a challenge after the hello",
                    _ => "a bridge-to-node message",
                };
                self.reject(conn, codes::PROTOCOL, &format!("unexpected {name}"))
            }
        }
    }

    /// A frame on a connection that has not said hello yet: the hello, or (federation) the
    /// other bridge's challenge and hello.
    fn before_hello(&mut self, conn: ConnId, msg: SignalMsg) {
        match msg {
            SignalMsg::Hello {
                pubkey,
                challenge,
                sig,
            } => self.on_hello(conn, pubkey, challenge, sig),
            SignalMsg::Challenge { nonce } => self.on_challenge(conn, nonce),
            SignalMsg::BridgeHello {
                pubkey,
                challenge,
                sig,
                addr,
            } => self.on_bridge_hello(conn, pubkey, challenge, sig, addr),
            _ => self.reject(conn, codes::PROTOCOL, "the first frame must be a hello"),
        }
    }

    /// Checks a hello's challenge and signature against this connection's challenge; returns
    /// the ID it proves, or rejects the connection.
    fn check_hello(
        &mut self,
        conn: ConnId,
        pubkey: &PublicKeyBytes,
        challenge: &ChallengeNonce,
        sig: &SignatureBytes,
    ) -> Option<NodeId> {
        let ours = self.conns.get(&conn)?.challenge;
        if *challenge != ours {
            self.reject(
                conn,
                codes::BAD_HELLO,
                "the hello signs another connection's challenge (a replayed hello?)",
            );
            return None;
        }
        match hello::verify_hello(pubkey, &ours, sig) {
            Ok(id) => Some(id),
            Err(e) => {
                self.reject(conn, codes::BAD_HELLO, &format!("bad hello signature: {e}"));
                None
            }
        }
    }

    fn on_hello(
        &mut self,
        conn: ConnId,
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
    ) {
        let Some(id) = self.check_hello(conn, &pubkey, &challenge, &sig) else {
            return;
        };
        if self.by_id.contains_key(&id) {
            self.reject(conn, codes::DUPLICATE_ID, "that ID is already connected");
            return;
        }
        if self.by_id.len() >= self.cfg.max_peers {
            self.reject(conn, codes::FULL, "this bridge has no room for more peers");
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Registered { id, pubkey };
        }
        self.reschedule(conn);
        self.by_id.insert(id, conn);
        self.out
            .push_back(RendezvousOutput::Registered { conn, id });
        let peers_online = u32::try_from(self.by_id.len()).unwrap_or(u32::MAX);
        self.send(
            conn,
            &SignalMsg::Welcome {
                bridge_pubkey: self.identity.public_key(),
                peers_online,
            },
        );
        self.send(
            conn,
            &SignalMsg::BridgeInfo {
                addr: self.cfg.addr.clone(),
            },
        );
        self.peer_joined(id, pubkey);
    }

    /// Peers registered at this bridge and alive (but the one on `except`), as records with an
    /// empty bridge field ("this bridge").
    fn local_records(&self, except: Option<ConnId>) -> impl Iterator<Item = PeerRecord> + '_ {
        self.conns
            .iter()
            .filter(move |(c, _)| Some(**c) != except)
            .filter(|(_, c)| !c.suspect)
            .filter_map(|(_, c)| match c.state {
                ConnState::Registered { id, pubkey } => Some(PeerRecord {
                    id,
                    pubkey,
                    bridge: None,
                }),
                _ => None,
            })
    }

    fn on_find_peer(&mut self, conn: ConnId, target: NodeId) {
        let n = self.cfg.peers_per_answer.min(MAX_PEERS_PER_ANSWER);
        // A linear scan is fine at the bridge's scale (max_peers plus max_remote_peers).
        let mut best: Vec<PeerRecord> = self.local_records(Some(conn)).collect();
        // Peers registered at federated bridges, each tagged with the bridge that introduces it.
        best.extend(self.fed.remote_records(&target, n));
        best.sort_by_key(|p| p.id.distance(&target));
        // The answer names the `n` closest (n is at most MAX_PEERS_PER_ANSWER): the rest are
        // dropped on purpose.
        let peers = FoundPeers::truncating(best.into_iter().take(n));
        self.send(conn, &SignalMsg::FoundPeer { peers });
    }

    // ----- introductions ---------------------------------------------------------------------

    fn on_introduce(&mut self, conn: ConnId, from: NodeId, peer: NodeId, session: u64, sdp: Sdp) {
        if peer == from {
            let reason = Reason::lossy("a peer cannot be introduced to itself");
            self.send(
                conn,
                &SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason,
                },
            );
            return;
        }
        if !self.by_id.contains_key(&peer) && self.fed.knows(&peer) {
            let msg = SignalMsg::Introduce {
                peer: from,
                session,
                sdp,
            };
            self.fed.forward(&peer, &msg);
            self.pump_fed();
            return;
        }
        match self.by_id.get(&peer).copied() {
            Some(target) if self.conns.get(&target).is_some_and(|c| c.suspect) => {
                let reason = Reason::lossy(&not_answering(&peer, self.cfg.probe_timeout));
                self.send(
                    conn,
                    &SignalMsg::IntroduceFailed {
                        peer,
                        session,
                        reason,
                    },
                );
            }
            Some(target) => self.introduce_local(target, from, session, sdp),
            None => self.send(
                conn,
                &SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason: Reason::lossy("that peer is not connected to this bridge"),
                },
            ),
        }
    }

    /// Relay an introduction from `from` (here or at a federated bridge) to the peer registered
    /// on `target`, and probe the target: it must show it is alive within `probe_timeout`.
    fn introduce_local(&mut self, target: ConnId, from: NodeId, session: u64, sdp: Sdp) {
        self.send(
            target,
            &SignalMsg::Introduce {
                peer: from,
                session,
                sdp,
            },
        );
        let deadline = self.now + self.cfg.probe_timeout;
        let Some(c) = self.conns.get_mut(&target) else {
            return;
        };
        let first = c.probe.is_none();
        let probe = c.probe.get_or_insert(Probe {
            deadline,
            introductions: Vec::new(),
        });
        if probe.introductions.len() < MAX_PROBED_INTRODUCTIONS {
            probe.introductions.push((from, session));
        }
        if first {
            c.pinged = true;
            let nonce = self.rng.next_u64();
            self.send(target, &SignalMsg::Ping { nonce });
            self.reschedule(target);
        }
    }

    /// Nothing came from `conn` within the probe time after introductions were relayed to it:
    /// fail them, stop offering the peer and announce it as gone (it comes back when heard).
    fn probe_failed(&mut self, conn: ConnId, introductions: Vec<(NodeId, u64)>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::Registered { id, .. } = c.state else {
            return;
        };
        let reason = not_answering(&id, self.cfg.probe_timeout);
        if !std::mem::replace(&mut c.suspect, true) {
            self.log(false, format!("peer {}: {reason}", id.short()));
            self.peer_left(id, true);
        }
        for (offerer, session) in introductions {
            self.deliver(
                &offerer,
                SignalMsg::IntroduceFailed {
                    peer: id,
                    session,
                    reason: Reason::lossy(&reason),
                },
            );
        }
    }

    /// Deliver `msg` (whose `peer` is the source) to `to`: registered here, or through the
    /// federated bridge that has it. Dropped if neither (the sender's own timeout answers).
    fn deliver(&mut self, to: &NodeId, msg: SignalMsg) {
        if let Some(target) = self.by_id.get(to).copied() {
            self.send(target, &msg);
        } else if self.fed.knows(to) {
            self.fed.forward(to, &msg);
            self.pump_fed();
        }
    }

    // ----- arrivals and departures -----------------------------------------------------------

    /// `id` registered here (or answers again): tell the federated bridges at once.
    fn peer_joined(&mut self, id: NodeId, pubkey: PublicKeyBytes) {
        self.departures.returned(&id);
        self.fed.peer_joined(id, pubkey);
        self.pump_fed();
    }

    /// `id` is gone (`here`: it was registered at this bridge); announced in the next batch.
    fn peer_left(&mut self, id: NodeId, here: bool) {
        let (now, batch) = (self.now, self.cfg.departure_batch);
        if !self.departures.left(now, batch, id, here) {
            self.drop_log(format!(
                "not announcing that peer {} left to pages: {} departures wait already",
                id.short(),
                crate::departures::MAX_PENDING
            ));
        }
    }

    /// Tell every registered page which peers are gone (one `PeersGone` of at most
    /// `MAX_PEERS_GONE` IDs per batch interval), and every federated bridge which of this
    /// bridge's peers left (all of them, in `PeersLeft` frames of `MAX_PEERS_PER_SYNC`).
    fn announce_departures(&mut self) {
        let a = self.departures.take(self.now, self.cfg.departure_batch);
        let mut pages = Vec::new();
        let mut bridges = Vec::new();
        for (conn, c) in &self.conns {
            match c.state {
                ConnState::Registered { .. } if !c.suspect => pages.push(*conn),
                ConnState::Bridge => bridges.push(*conn),
                _ => {}
            }
        }
        for chunk in a.gone.chunks(MAX_PEERS_GONE) {
            // `chunks` keeps each frame within its maximum: nothing is cut.
            let frame = SignalMsg::PeersGone {
                ids: PeerIds::truncating(chunk.iter().copied()),
            }
            .encode_frame();
            for conn in &pages {
                self.out.push_back(RendezvousOutput::Send {
                    conn: *conn,
                    bytes: frame.clone(),
                });
            }
        }
        for chunk in a.left_here.chunks(MAX_PEERS_PER_SYNC) {
            let frame = SignalMsg::PeersLeft {
                ids: PeerIds::truncating(chunk.iter().copied()),
            }
            .encode_frame();
            for conn in &bridges {
                self.out.push_back(RendezvousOutput::Send {
                    conn: *conn,
                    bytes: frame.clone(),
                });
            }
        }
    }

    // ----- federation ------------------------------------------------------------------------

    /// The other side of a connection that has not said hello sent its challenge: only a
    /// bridge does. A connection we dialed answers it with our hello at once; otherwise we
    /// keep it for the answer to the dialer's hello.
    fn on_challenge(&mut self, conn: ConnId, nonce: ChallengeNonce) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::AwaitingHello {
            their_challenge, ..
        } = &mut c.state
        else {
            return;
        };
        if their_challenge.replace(nonce).is_some() {
            self.reject(conn, codes::PROTOCOL, "a second challenge");
            return;
        }
        if self.fed.was_dialed(conn) {
            self.send_bridge_hello(conn, nonce);
        }
    }

    /// Sign the other bridge's `challenge` into our hello.
    fn send_bridge_hello(&mut self, conn: ConnId, challenge: ChallengeNonce) {
        let msg = SignalMsg::BridgeHello {
            pubkey: self.identity.public_key(),
            challenge,
            sig: hello::sign(&self.identity, &challenge),
            addr: self.cfg.addr.clone(),
        };
        self.send(conn, &msg);
    }

    /// Another bridge's hello: checked like a page's, then the connection is a federated
    /// bridge (with the bridges' rate limit) and the federation part takes it on.
    fn on_bridge_hello(
        &mut self,
        conn: ConnId,
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
        addr: BridgeAddr,
    ) {
        let now = self.now;
        let their_challenge = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::AwaitingHello {
                their_challenge: Some(n),
                ..
            }) => *n,
            _ => {
                self.reject(
                    conn,
                    codes::PROTOCOL,
                    "a bridge must send its challenge before its hello",
                );
                return;
            }
        };
        let Some(id) = self.check_hello(conn, &pubkey, &challenge, &sig) else {
            return;
        };
        if id == self.identity.id() {
            self.reject(
                conn,
                codes::PROTOCOL,
                "a bridge cannot federate with itself",
            );
            return;
        }
        if self.fed.is_federated(&id) {
            self.reject(
                conn,
                codes::DUPLICATE_ID,
                "that bridge is already federated",
            );
            return;
        }
        let factor = self.cfg.bridge_rate_factor.max(1);
        let (burst, rate) = (
            self.cfg.burst.saturating_mul(factor),
            self.cfg.frames_per_sec.saturating_mul(factor),
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Bridge;
            c.bucket = TokenBucket::new(now, burst, rate);
        }
        self.reschedule(conn);
        if !self.fed.was_dialed(conn) {
            self.send_bridge_hello(conn, their_challenge);
        }
        self.out.push_back(RendezvousOutput::Federated {
            conn,
            id,
            addr: addr.clone(),
        });
        // Everyone registered here goes to the new bridge.
        let mine: Vec<PeerRecord> = self.local_records(None).collect();
        let bridge = NewBridge {
            conn,
            id,
            pubkey,
            addr,
        };
        self.fed.bridge_joined(now, &self.by_id, bridge, mine);
        self.pump_fed();
    }

    /// Carry out what the federation part asked for, in order.
    fn pump_fed(&mut self) {
        while let Some(req) = self.fed.poll_request() {
            match req {
                FedRequest::Send { conn, msg } => self.send(conn, &msg),
                FedRequest::Reject { conn, code, reason } => self.reject(conn, code, &reason),
                FedRequest::Dropped(text) => self.drop_log(text),
                FedRequest::Returned(id) => self.departures.returned(&id),
                FedRequest::Left(id) => self.peer_left(id, false),
                FedRequest::Introduce {
                    target,
                    to,
                    from,
                    session,
                    sdp,
                } => {
                    if self.conns.get(&target).is_some_and(|c| c.suspect) {
                        let reason = format!(
                            "peer {} does not answer its bridge (its page may be suspended or gone)",
                            to.short()
                        );
                        let failed = SignalMsg::IntroduceFailed {
                            peer: to,
                            session,
                            reason: Reason::lossy(&reason),
                        };
                        self.fed.forward(&from, &failed);
                    } else {
                        self.introduce_local(target, from, session, sdp);
                    }
                }
            }
        }
    }

    /// A warning for the log about a dropped frame, at most 100 in full and then every 1000th,
    /// so a flood cannot flood the log.
    fn drop_log(&mut self, text: String) {
        self.logged_drops += 1;
        let n = self.logged_drops;
        if n <= 100 || n.is_multiple_of(1000) {
            self.log(true, format!("{text} ({n} dropped so far)"));
        }
    }

    // ----- output ----------------------------------------------------------------------------

    fn send(&mut self, conn: ConnId, msg: &SignalMsg) {
        self.out.push_back(RendezvousOutput::Send {
            conn,
            bytes: msg.encode_frame(),
        });
    }

    fn log(&mut self, warn: bool, text: String) {
        self.out.push_back(RendezvousOutput::Log { warn, text });
    }

    /// Tell the peer why, then close it and forget it.
    fn reject(&mut self, conn: ConnId, code: u16, reason: &str) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.send(
            conn,
            &SignalMsg::Error {
                code,
                // Our own sentence, for the page: shortened rather than not sent.
                reason: Reason::lossy(reason),
            },
        );
        self.out.push_back(RendezvousOutput::Close {
            conn,
            reason: reason.to_owned(),
        });
        self.forget(conn);
    }
}

/// Why an introduction to `id` failed when it did not answer its probe.
fn not_answering(id: &NodeId, within: std::time::Duration) -> String {
    format!(
        "peer {} did not answer the bridge within {} s (its page may be suspended or gone); \
         try another peer",
        id.short(),
        within.as_secs().max(1)
    )
}

#[cfg(test)]
mod proptests;

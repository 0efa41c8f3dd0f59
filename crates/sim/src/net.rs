use onionmesh_crypto::Identity;
use onionmesh_node::{Event, Input, LinkId, LinkState, Node, NodeConfig, Output, Time};
use onionmesh_ordb::{MemStore, StoreCompletion, StoreReply, StoreRequest};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use onionmesh_wire::signal::Sdp;
use onionmesh_wire::{BridgeAddr, Frame, SignalMsg};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Federated bridges (full mesh); node `i` registers at bridge `i % bridges`.
    pub bridges: usize,
    pub seed: u64,
    /// One-way latency of every hop is drawn uniformly from this range (ms).
    pub latency_ms: (u64, u64),
    /// Probability that a frame needs a retransmission (adds one round trip of delay).
    pub loss: f64,
    /// Probability that ICE fails for a new WebRTC connection.
    pub ice_failure: f64,
    /// Nodes join one after another, this far apart (ms).
    pub join_interval_ms: u64,
    /// Time to create an offer or answer and gather candidates (ms).
    pub sdp_delay_ms: u64,
    pub node: NodeConfig,
    pub bridge: RendezvousConfig,
    /// Nodes (by index) that sign wrong link proofs.
    pub corrupt_proof_nodes: Vec<usize>,
    /// The bridge rewrites DTLS fingerprints in the introductions it relays and sits in the
    /// middle of every resulting connection.
    pub mitm_bridge: bool,
    /// Bytes each node's content store (a `MemStore`, completing after `store_delay_ms`) holds.
    pub store_quota: u64,
    pub store_delay_ms: u64,
    /// Nodes (by index) whose store hands out every piece with a byte flipped: corrupting
    /// holders, which requesters must catch.
    pub forging_stores: Vec<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10,
            bridges: 1,
            seed: 1,
            latency_ms: (10, 60),
            loss: 0.01,
            ice_failure: 0.0,
            join_interval_ms: 50,
            sdp_delay_ms: 20,
            node: NodeConfig::default(),
            bridge: RendezvousConfig::default(),
            corrupt_proof_nodes: Vec::new(),
            mitm_bridge: false,
            store_quota: 256 << 20,
            store_delay_ms: 1,
            forging_stores: Vec::new(),
        }
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub events: u64,
    pub bridge_frames: u64,
    pub link_frames: u64,
    pub offers: u64,
    pub links_opened: u64,
    pub links_refused: u64,
    pub ice_failures: u64,
    pub messages_delivered: u64,
    /// Bridge connections a node opened after its first one (reconnections).
    pub reconnections: u64,
}

type End = (usize, LinkId);
/// A bridge's end of a connection: (bridge index, its connection id).
type BEnd = (usize, ConnId);

/// Where a node stands in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Not joined yet.
    Waiting,
    Alive,
    /// Left cleanly (closed its links and its bridge connection).
    Left,
    /// Vanished: stopped reading and answering without closing anything.
    Vanished,
}

#[derive(Debug, Clone, Copy)]
enum Remote {
    Node(usize),
    Bridge(BEnd),
}

#[derive(Debug)]
enum Ev {
    Join(usize),
    ToBridge(BEnd, Vec<u8>),
    ToNode(usize, BEnd, Vec<u8>),
    NodeBridgeClosed(usize, BEnd, String),
    BridgeConnClosed(BEnd),
    BridgeUp(usize),
    OfferReady(End, String),
    AnswerReady(End, String),
    Open(End),
    Frame(End, Vec<u8>),
    Closed(End, String),
    NodeTimer(usize),
    BridgeTimer(usize),
    StoreDone(usize, StoreCompletion),
}

/// The simulated network.
pub struct Sim {
    cfg: SimConfig,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    events: BTreeMap<u64, Ev>,
    rng: ChaCha20Rng,
    nodes: Vec<Node>,
    life: Vec<Life>,
    bridges: Vec<Rendezvous>,
    bridge_seeds: Vec<[u8; 32]>,
    bridge_up: Vec<bool>,
    /// What each bridge connection leads to.
    conns: BTreeMap<BEnd, Remote>,
    next_conn: u64,
    /// Each node's current bridge connection.
    node_conn: Vec<Option<BEnd>>,
    ever_connected: Vec<bool>,
    /// Connected WebRTC endpoints, both directions.
    pairs: BTreeMap<End, End>,
    /// FIFO: a frame on a directed path is never delivered before the previous one.
    last_delivery: BTreeMap<(End, End), Time>,
    last_bridge_delivery: BTreeMap<(BEnd, bool), Time>,
    /// The earliest pending timer event per node / bridge, so a drain queues no duplicates.
    node_timer: Vec<Option<Time>>,
    bridge_timer: Vec<Option<Time>>,
    /// Every event each node emitted, for tests.
    node_events: Vec<Vec<Event>>,
    /// Each node's content store, and the forged pieces it handed out.
    stores: Vec<MemStore>,
    forged: Vec<u64>,
    stats: SimStats,
    /// Sees every link frame `(from, to, bytes)` as it is sent (tests record relays' views).
    link_tap: Option<LinkTap>,
}

/// See [`Sim::set_link_tap`].
pub type LinkTap = Box<dyn FnMut(usize, usize, &[u8])>;

fn fake_sdp(rng: &mut ChaCha20Rng, end: End) -> String {
    let mut fp = [0u8; 32];
    rng.fill_bytes(&mut fp);
    let fp: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 {}\r\na=x-sim-endpoint:{}:{}\r\n",
        fp.join(":"),
        end.0,
        (end.1).0
    )
}

fn endpoint_of(sdp: &str) -> Option<End> {
    let v = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=x-sim-endpoint:"))?;
    let (n, l) = v.split_once(':')?;
    Some((n.parse().ok()?, LinkId(l.parse().ok()?)))
}

/// What a man-in-the-middle does to an SDP: its own certificate replaces the real one.
/// A swapped SDP too long for the field is relayed as it was: the MITM then fails to tamper, and
/// the test that expects its links refused sees them succeed.
fn swap_fingerprint(sdp: &Sdp) -> Sdp {
    let swapped = sdp
        .lines()
        .map(|l| {
            if l.starts_with("a=fingerprint:") {
                "a=fingerprint:sha-256 66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    Sdp::new(swapped).unwrap_or_else(|_| sdp.clone())
}

fn seed32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

fn identity(rng: &mut ChaCha20Rng) -> ([u8; 32], Identity) {
    loop {
        let seed = seed32(rng);
        if let Some(id) = Identity::from_seed(seed) {
            return (seed, id);
        }
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
        let mut sim = Sim {
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(0),
            nodes: Vec::new(),
            life: Vec::new(),
            bridges: Vec::new(),
            bridge_seeds: Vec::new(),
            bridge_up: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            node_conn: Vec::new(),
            ever_connected: Vec::new(),
            pairs: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            last_bridge_delivery: BTreeMap::new(),
            node_timer: Vec::new(),
            bridge_timer: Vec::new(),
            node_events: Vec::new(),
            stores: Vec::new(),
            forged: Vec::new(),
            stats: SimStats::default(),
            link_tap: None,
            cfg: cfg.clone(),
        };
        // Nodes first, then bridges, from one seeded stream (the same config, the same run).
        let mut made = Vec::new();
        for i in 0..cfg.nodes {
            let (_, id) = identity(&mut rng);
            let seed = seed32(&mut rng);
            made.push((i, id, seed));
        }
        for b in 0..cfg.bridges.max(1) {
            let (seed, _) = identity(&mut rng);
            sim.bridge_seeds.push(seed);
            let rv = sim.make_bridge(b, seed32(&mut rng));
            sim.bridges.push(rv);
            sim.bridge_up.push(true);
            sim.bridge_timer.push(None);
        }
        sim.rng = rng;
        for (i, id, seed) in made {
            sim.push_node(i, id, seed);
            let at = Time::from_millis(i as u64 * sim.cfg.join_interval_ms);
            sim.schedule(at, Ev::Join(i));
        }
        sim.federate_all();
        sim
    }

    fn make_bridge(&self, b: usize, seed: [u8; 32]) -> Rendezvous {
        let identity = Identity::from_seed(self.bridge_seeds[b]).expect("seeded above");
        let mut cfg = self.cfg.bridge.clone();
        cfg.addr = BridgeAddr::new(format!("sim://bridge-{b}")).expect("a short address");
        Rendezvous::with_dht(identity, cfg, seed, self.now)
    }

    fn push_node(&mut self, i: usize, identity: Identity, seed: [u8; 32]) {
        let mut node_cfg = self.cfg.node.clone();
        node_cfg.links.test_only_corrupt_link_proof = self.cfg.corrupt_proof_nodes.contains(&i);
        self.nodes.push(Node::new(identity, node_cfg, seed));
        self.life.push(Life::Waiting);
        self.node_conn.push(None);
        self.ever_connected.push(false);
        self.node_timer.push(None);
        self.node_events.push(Vec::new());
        self.stores.push(MemStore::new(self.cfg.store_quota));
        self.forged.push(0);
    }

    /// Node `i`'s content store (read it to check what a download stored).
    pub fn store_mut(&mut self, i: usize) -> &mut MemStore {
        &mut self.stores[i]
    }

    /// Forged pieces node `i`'s store handed out (see [`SimConfig::forging_stores`]).
    pub fn forged(&self, i: usize) -> u64 {
        self.forged[i]
    }

    /// Run a store request of node `i`, forging the piece if its store is a forging one.
    fn store_op(
        &mut self,
        i: usize,
        request: StoreRequest,
    ) -> Result<StoreReply, onionmesh_ordb::StoreError> {
        let get = matches!(request, StoreRequest::GetPiece { .. });
        let mut result = self.stores[i].execute(request);
        if get && self.cfg.forging_stores.contains(&i) {
            if let Ok(StoreReply::Piece(Some(rec))) = result.as_mut() {
                let at = rec.bytes.len() / 2;
                if let Some(b) = rec.bytes.get_mut(at) {
                    *b ^= 0x55;
                    self.forged[i] += 1;
                }
            }
        }
        result
    }

    /// Dial every pair of live bridges that are not federated yet (lower index dials).
    fn federate_all(&mut self) {
        let n = self.bridges.len();
        for b in 0..n {
            for c in (b + 1)..n {
                if self.bridge_up[b] && self.bridge_up[c] && !self.federated(b, c) {
                    self.federate(b, c);
                }
            }
        }
    }

    fn federated(&self, b: usize, c: usize) -> bool {
        self.conns
            .iter()
            .any(|((x, _), r)| *x == b && matches!(r, Remote::Bridge((y, _)) if *y == c))
    }

    fn federate(&mut self, b: usize, c: usize) {
        let cb = ConnId(self.next_conn);
        let cc = ConnId(self.next_conn + 1);
        self.next_conn += 2;
        self.conns.insert((b, cb), Remote::Bridge((c, cc)));
        self.conns.insert((c, cc), Remote::Bridge((b, cb)));
        let now = self.now;
        self.bridges[b].handle_input(now, RendezvousInput::Dialed(cb));
        self.bridges[c].handle_input(now, RendezvousInput::Opened(cc));
        self.drain_bridge(b);
        self.drain_bridge(c);
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Bridge 0 (the only one in a single-bridge run).
    pub fn bridge(&self) -> &Rendezvous {
        &self.bridges[0]
    }

    pub fn bridge_at(&self, b: usize) -> &Rendezvous {
        &self.bridges[b]
    }

    /// Which bridge node `i` registers at.
    pub fn bridge_of(&self, i: usize) -> usize {
        i % self.bridges.len()
    }

    pub fn life(&self, i: usize) -> Life {
        self.life[i]
    }

    /// Nodes that are alive now.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.life[*i] == Life::Alive)
            .collect()
    }

    /// Every event node `i` emitted so far.
    pub fn events_of(&self, i: usize) -> &[Event] {
        &self.node_events[i]
    }

    /// Index of the node with this ID.
    pub fn index_of(&self, id: onionmesh_wire::NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == id)
    }

    /// Application send from node `from` to node `to` (through the node API).
    pub fn send(
        &mut self,
        from: usize,
        to: usize,
        data: &[u8],
    ) -> Result<(), onionmesh_node::ApiError> {
        let peer = self.nodes[to].id();
        let now = self.now;
        let r = self.nodes[from].link(peer).send(now, data);
        self.drain_node(from);
        r
    }

    /// Run `f` on node `i` (any node API call), then carry out what it asked for.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Time) -> R) -> R {
        let r = f(&mut self.nodes[i], self.now);
        self.drain_node(i);
        r
    }

    /// Ask node `from` to open a link to node `to` through the bridge (the node API's `connect`).
    pub fn connect(&mut self, from: usize, to: usize) -> Result<(), onionmesh_node::ApiError> {
        let peer = self.nodes[to].id();
        let r = self.nodes[from].link(peer).connect(self.now);
        self.drain_node(from);
        r
    }

    /// Watch every link frame as it is sent: `(from node, to node, frame bytes)`.
    pub fn set_link_tap(&mut self, tap: Option<LinkTap>) {
        self.link_tap = tap;
    }

    /// Node `i` leaves: `silent` makes it vanish (it stops reading and answering without
    /// closing anything, like a frozen or crashed page); otherwise it closes its links and its
    /// bridge connection, like a tab closed on `pagehide`.
    pub fn leave(&mut self, i: usize, silent: bool) {
        if self.life[i] != Life::Alive && self.life[i] != Life::Waiting {
            return;
        }
        if silent {
            self.life[i] = Life::Vanished;
            return;
        }
        self.nodes[i].stop();
        self.drain_node(i);
        self.life[i] = Life::Left;
    }

    /// A new node joins now; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let (_, id) = identity(&mut self.rng);
        let seed = seed32(&mut self.rng);
        self.push_node(i, id, seed);
        self.schedule(self.now, Ev::Join(i));
        i
    }

    /// Bridge `b` crashes now (every connection to it drops) and comes back after `downtime`
    /// with the same identity and an empty registry; federated bridges dial it again.
    pub fn restart_bridge(&mut self, b: usize, downtime: Duration) {
        let mine: Vec<(BEnd, Remote)> = self
            .conns
            .iter()
            .filter(|((x, _), _)| *x == b)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (end, remote) in mine {
            self.conns.remove(&end);
            match remote {
                Remote::Node(i) => {
                    let d = Duration::from_millis(self.cfg.latency_ms.0);
                    self.schedule(
                        self.now + d,
                        Ev::NodeBridgeClosed(i, end, "the bridge went away (code 1006)".into()),
                    );
                }
                Remote::Bridge(other) => {
                    self.conns.remove(&other);
                    self.schedule(self.now, Ev::BridgeConnClosed(other));
                }
            }
        }
        self.bridge_up[b] = false;
        self.schedule(self.now + downtime, Ev::BridgeUp(b));
    }

    /// Run until the virtual clock passes `now + d` or nothing is left to do.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > end {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(ev) = self.events.remove(&seq) {
                self.stats.events += 1;
                self.dispatch(ev);
            }
        }
        self.now = end;
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.cfg.latency_ms;
        let base = lo + self.rng.next_u64() % (hi.saturating_sub(lo) + 1);
        let lost = (self.rng.next_u64() % 1_000_000) as f64 / 1_000_000.0 < self.cfg.loss;
        if lost {
            base * 3
        } else {
            base
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    /// Schedules a reliable, ordered delivery on the directed path `key`.
    fn deliver_link(&mut self, from: End, to: End, ev: Ev) {
        let lat = self.latency();
        let mut at = self.now + Duration::from_millis(lat);
        if let Some(last) = self.last_delivery.get(&(from, to)) {
            at = at.max(*last);
        }
        self.last_delivery.insert((from, to), at);
        self.schedule(at, ev);
    }

    fn deliver_bridge(&mut self, end: BEnd, to_bridge: bool, ev: Ev) {
        let lat = self.latency();
        let mut at = self.now + Duration::from_millis(lat);
        if let Some(last) = self.last_bridge_delivery.get(&(end, to_bridge)) {
            at = at.max(*last);
        }
        self.last_bridge_delivery.insert((end, to_bridge), at);
        self.schedule(at, ev);
    }

    fn awake(&self, i: usize) -> bool {
        self.life[i] == Life::Alive
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Join(i) => {
                if !matches!(self.life[i], Life::Waiting | Life::Alive)
                    || self.node_conn[i].is_some()
                {
                    return;
                }
                self.life[i] = Life::Alive;
                let b = self.bridge_of(i);
                if !self.bridge_up[b] {
                    self.nodes[i].handle_input(
                        now,
                        Input::BridgeClosed {
                            reason: "the connection to the bridge could not be opened",
                        },
                    );
                    self.drain_node(i);
                    return;
                }
                if self.ever_connected[i] {
                    self.stats.reconnections += 1;
                }
                self.ever_connected[i] = true;
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.conns.insert((b, conn), Remote::Node(i));
                self.node_conn[i] = Some((b, conn));
                self.bridges[b].handle_input(now, RendezvousInput::Opened(conn));
                self.drain_bridge(b);
                self.nodes[i].handle_input(now, Input::BridgeOpened);
                self.drain_node(i);
            }
            Ev::ToBridge(end, bytes) => {
                if self.conns.contains_key(&end) {
                    self.stats.bridge_frames += 1;
                    let (b, conn) = end;
                    self.bridges[b].handle_input(
                        now,
                        RendezvousInput::Frame {
                            conn,
                            bytes: &bytes,
                        },
                    );
                    self.drain_bridge(b);
                }
            }
            Ev::ToNode(i, end, bytes) => {
                if self.awake(i) && self.node_conn[i] == Some(end) {
                    self.stats.bridge_frames += 1;
                    self.nodes[i].handle_input(now, Input::BridgeFrame(&bytes));
                    self.drain_node(i);
                }
            }
            Ev::NodeBridgeClosed(i, end, reason) => {
                if self.node_conn[i] == Some(end) {
                    self.node_conn[i] = None;
                    if self.awake(i) {
                        self.nodes[i].handle_input(now, Input::BridgeClosed { reason: &reason });
                        self.drain_node(i);
                    }
                }
            }
            Ev::BridgeConnClosed(end) => {
                let (b, conn) = end;
                self.conns.remove(&end);
                if self.bridge_up[b] {
                    self.bridges[b].handle_input(now, RendezvousInput::Closed(conn));
                    self.drain_bridge(b);
                }
            }
            Ev::BridgeUp(b) => {
                let seed = seed32(&mut self.rng);
                self.bridges[b] = self.make_bridge(b, seed);
                self.bridge_up[b] = true;
                self.bridge_timer[b] = None;
                self.federate_all();
            }
            Ev::OfferReady((i, l), sdp) => {
                if self.awake(i) {
                    self.nodes[i].handle_input(now, Input::OfferReady { link: l, sdp });
                    self.drain_node(i);
                }
            }
            Ev::AnswerReady((i, l), sdp) => {
                if self.awake(i) {
                    self.nodes[i].handle_input(now, Input::AnswerReady { link: l, sdp });
                    self.drain_node(i);
                }
            }
            Ev::Open((i, l)) => {
                if self.awake(i) && self.pairs.contains_key(&(i, l)) {
                    self.nodes[i].handle_input(now, Input::LinkOpened { link: l });
                    self.drain_node(i);
                }
            }
            Ev::Frame((i, l), bytes) => {
                if self.awake(i) {
                    self.stats.link_frames += 1;
                    self.nodes[i].handle_input(
                        now,
                        Input::LinkFrame {
                            link: l,
                            bytes: &bytes,
                        },
                    );
                    self.drain_node(i);
                }
            }
            Ev::Closed((i, l), reason) => {
                if self.awake(i) {
                    self.nodes[i].handle_input(
                        now,
                        Input::LinkClosed {
                            link: l,
                            reason: &reason,
                        },
                    );
                    self.drain_node(i);
                }
            }
            Ev::StoreDone(i, c) => {
                if self.awake(i) {
                    self.nodes[i].handle_input(now, Input::StoreDone(c));
                    self.drain_node(i);
                }
            }
            Ev::NodeTimer(i) => {
                if self.node_timer[i] == Some(now) {
                    self.node_timer[i] = None;
                }
                if self.awake(i) {
                    if self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                        self.nodes[i].handle_input(now, Input::Timeout);
                    }
                    // Re-arms the timer even when this one came early: a node whose only
                    // activity is its timers (its bridge down, no links) must not fall asleep.
                    self.drain_node(i);
                }
            }
            Ev::BridgeTimer(b) => {
                if self.bridge_timer[b] == Some(now) {
                    self.bridge_timer[b] = None;
                }
                if self.bridge_up[b] {
                    if self.bridges[b].poll_timeout().is_some_and(|t| t <= now) {
                        self.bridges[b].handle_input(now, RendezvousInput::Timeout);
                    }
                    self.drain_bridge(b);
                }
            }
        }
    }

    fn drain_bridge(&mut self, b: usize) {
        while let Some(out) = self.bridges[b].poll_output() {
            match out {
                RendezvousOutput::Send { conn, bytes } => {
                    let end = (b, conn);
                    match self.conns.get(&end).copied() {
                        Some(Remote::Node(i)) => {
                            let bytes = if self.cfg.mitm_bridge {
                                self.tamper(bytes)
                            } else {
                                bytes
                            };
                            self.deliver_bridge(end, false, Ev::ToNode(i, end, bytes));
                        }
                        Some(Remote::Bridge(other)) => {
                            self.deliver_bridge(end, false, Ev::ToBridge(other, bytes));
                        }
                        None => {}
                    }
                }
                RendezvousOutput::Close { conn, reason } => {
                    let end = (b, conn);
                    match self.conns.remove(&end) {
                        Some(Remote::Node(i)) => {
                            let lat = self.latency();
                            self.schedule(
                                self.now + Duration::from_millis(lat),
                                Ev::NodeBridgeClosed(i, end, reason),
                            );
                        }
                        Some(Remote::Bridge(other)) => {
                            self.conns.remove(&other);
                            self.schedule(self.now, Ev::BridgeConnClosed(other));
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = self.bridges[b].poll_timeout() {
            let t = t.max(self.now);
            if self.bridge_timer[b].is_none_or(|pending| t < pending) {
                self.bridge_timer[b] = Some(t);
                self.schedule(t, Ev::BridgeTimer(b));
            }
        }
    }

    /// The MITM bridge swaps the DTLS fingerprint in every SDP it relays.
    fn tamper(&self, bytes: Vec<u8>) -> Vec<u8> {
        match SignalMsg::decode_frame(&bytes) {
            Ok(SignalMsg::Introduce { peer, session, sdp }) => SignalMsg::Introduce {
                peer,
                session,
                sdp: swap_fingerprint(&sdp),
            }
            .encode_frame(),
            Ok(SignalMsg::Introduced { peer, session, sdp }) => SignalMsg::Introduced {
                peer,
                session,
                sdp: swap_fingerprint(&sdp),
            }
            .encode_frame(),
            _ => bytes,
        }
    }

    fn drain_node(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::SendBridge(bytes) => {
                    if let Some(end) = self.node_conn[i] {
                        self.deliver_bridge(end, true, Ev::ToBridge(end, bytes));
                    }
                }
                Output::CloseBridge { .. } => {
                    if let Some(end) = self.node_conn[i].take() {
                        if self.conns.remove(&end).is_some() {
                            let lat = self.latency();
                            self.schedule(
                                self.now + Duration::from_millis(lat),
                                Ev::BridgeConnClosed(end),
                            );
                        }
                    }
                }
                Output::Store { id, request } => {
                    let result = self.store_op(i, request);
                    let at = self.now + Duration::from_millis(self.cfg.store_delay_ms);
                    self.schedule(at, Ev::StoreDone(i, StoreCompletion { id, result }));
                }
                Output::ConnectBridge => {
                    let lat = self.latency();
                    self.schedule(self.now + Duration::from_millis(lat), Ev::Join(i));
                }
                Output::CreateOffer { link } => {
                    self.stats.offers += 1;
                    let sdp = fake_sdp(&mut self.rng, (i, link));
                    let at = self.now + Duration::from_millis(self.cfg.sdp_delay_ms);
                    self.schedule(at, Ev::OfferReady((i, link), sdp));
                }
                Output::CreateAnswer { link, offer } => {
                    let sdp = fake_sdp(&mut self.rng, (i, link));
                    // The connection forms when the offerer applies this answer; the offer itself
                    // carries nothing the emulation needs.
                    let _ = offer;
                    let at = self.now + Duration::from_millis(self.cfg.sdp_delay_ms);
                    self.schedule(at, Ev::AnswerReady((i, link), sdp));
                }
                Output::ApplyAnswer { link, answer } => {
                    let Some(remote) = endpoint_of(&answer) else {
                        continue;
                    };
                    let local = (i, link);
                    if self.chance(self.cfg.ice_failure) || !self.awake(remote.0) {
                        self.stats.ice_failures += 1;
                        let d = Duration::from_millis(self.cfg.latency_ms.1 * 4);
                        self.schedule(self.now + d, Ev::Closed(local, "ICE failed".into()));
                        self.schedule(self.now + d, Ev::Closed(remote, "ICE failed".into()));
                        continue;
                    }
                    self.pairs.insert(local, remote);
                    self.pairs.insert(remote, local);
                    self.stats.links_opened += 1;
                    // DTLS and SCTP setup: a couple of round trips.
                    let lat = self.latency() * 4;
                    self.schedule(self.now + Duration::from_millis(lat), Ev::Open(local));
                    self.schedule(self.now + Duration::from_millis(lat), Ev::Open(remote));
                }
                Output::SendLink { link, bytes } => {
                    let local = (i, link);
                    if let Some(remote) = self.pairs.get(&local).copied() {
                        if let Some(tap) = self.link_tap.as_mut() {
                            tap(i, remote.0, &bytes);
                        }
                        self.deliver_link(local, remote, Ev::Frame(remote, bytes));
                    }
                }
                Output::CloseLink { link, reason } => {
                    let local = (i, link);
                    if let Some(remote) = self.pairs.remove(&local) {
                        self.pairs.remove(&remote);
                        self.deliver_link(
                            local,
                            remote,
                            Ev::Closed(remote, format!("the peer closed: {reason}")),
                        );
                    }
                }
                Output::Event(ev) => {
                    match &ev {
                        Event::Peer {
                            state: LinkState::Refused,
                            ..
                        } => self.stats.links_refused += 1,
                        Event::Message { .. } => self.stats.messages_delivered += 1,
                        _ => {}
                    }
                    self.node_events[i].push(ev);
                }
            }
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            let t = t.max(self.now);
            if self.node_timer[i].is_none_or(|pending| t < pending) {
                self.node_timer[i] = Some(t);
                self.schedule(t, Ev::NodeTimer(i));
            }
        }
    }
}

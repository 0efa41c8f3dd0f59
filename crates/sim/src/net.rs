use onionmesh_crypto::Identity;
use onionmesh_node::{Event, LinkId, LinkState, Node, NodeConfig, Output, Time};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use onionmesh_wire::{Frame, SignalMsg};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

/// Wall-clock origin of the simulation (the hello timestamps need one).
const UNIX_EPOCH_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
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
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 10,
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
}

type End = (usize, LinkId);

#[derive(Debug)]
enum Ev {
    Join(usize),
    ToBridge(usize, Vec<u8>),
    ToNode(usize, Vec<u8>),
    OfferReady(End, String),
    AnswerReady(End, String),
    Open(End),
    Frame(End, Vec<u8>),
    Closed(End, String),
    NodeTimer(usize),
    BridgeTimer,
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
    joined: Vec<bool>,
    bridge: Rendezvous,
    /// Connected WebRTC endpoints, both directions.
    pairs: BTreeMap<End, End>,
    /// FIFO: a frame on a directed path is never delivered before the previous one.
    last_delivery: BTreeMap<(End, End), Time>,
    last_bridge_delivery: BTreeMap<(usize, bool), Time>,
    /// The earliest pending timer event per node, so a drain does not queue duplicates.
    node_timer: Vec<Option<Time>>,
    /// Every event each node emitted, for tests.
    node_events: Vec<Vec<Event>>,
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
fn swap_fingerprint(sdp: &str) -> String {
    sdp.lines()
        .map(|l| {
            if l.starts_with("a=fingerprint:") {
                "a=fingerprint:sha-256 66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66:66".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let identity = loop {
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                if let Some(id) = Identity::from_seed(seed) {
                    break id;
                }
            };
            let mut node_cfg = cfg.node.clone();
            node_cfg.test_only_corrupt_link_proof = cfg.corrupt_proof_nodes.contains(&i);
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            nodes.push(Node::new(identity, node_cfg, seed));
        }
        let mut bseed = [0u8; 32];
        rng.fill_bytes(&mut bseed);
        let bridge_identity =
            Identity::from_seed(bseed).unwrap_or_else(|| Identity::generate(&mut rng));
        let mut dht_seed = [0u8; 32];
        rng.fill_bytes(&mut dht_seed);
        let bridge =
            Rendezvous::with_dht(bridge_identity, cfg.bridge.clone(), dht_seed, Time::ZERO);
        let n = cfg.nodes;
        let mut sim = Sim {
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            rng,
            nodes,
            joined: vec![false; n],
            bridge,
            pairs: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            last_bridge_delivery: BTreeMap::new(),
            node_timer: vec![None; n],
            node_events: vec![Vec::new(); n],
            stats: SimStats::default(),
            link_tap: None,
            cfg,
        };
        for i in 0..n {
            let at = Time::from_millis(i as u64 * sim.cfg.join_interval_ms);
            sim.schedule(at, Ev::Join(i));
        }
        sim
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

    pub fn bridge(&self) -> &Rendezvous {
        &self.bridge
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
        let r = self.nodes[from].send(peer, data);
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
        let r = self.nodes[from].connect(self.now, peer);
        self.drain_node(from);
        r
    }

    /// Watch every link frame as it is sent: `(from node, to node, frame bytes)`.
    pub fn set_link_tap(&mut self, tap: Option<LinkTap>) {
        self.link_tap = tap;
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

    fn deliver_bridge(&mut self, node: usize, to_bridge: bool, ev: Ev) {
        let lat = self.latency();
        let mut at = self.now + Duration::from_millis(lat);
        if let Some(last) = self.last_bridge_delivery.get(&(node, to_bridge)) {
            at = at.max(*last);
        }
        self.last_bridge_delivery.insert((node, to_bridge), at);
        self.schedule(at, ev);
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Join(i) => {
                self.joined[i] = true;
                self.bridge
                    .handle_input(now, RendezvousInput::Opened(ConnId(i as u64)));
                self.drain_bridge();
                self.nodes[i].handle_bridge_opened(now, UNIX_EPOCH_MS + now.as_millis());
                self.drain_node(i);
            }
            Ev::ToBridge(i, bytes) => {
                self.stats.bridge_frames += 1;
                let conn = ConnId(i as u64);
                self.bridge.handle_input(
                    now,
                    RendezvousInput::Frame {
                        conn,
                        bytes: &bytes,
                    },
                );
                self.drain_bridge();
            }
            Ev::ToNode(i, bytes) => {
                self.stats.bridge_frames += 1;
                self.nodes[i].handle_bridge_frame(now, &bytes);
                self.drain_node(i);
            }
            Ev::OfferReady((i, l), sdp) => {
                self.nodes[i].handle_offer_ready(now, l, sdp);
                self.drain_node(i);
            }
            Ev::AnswerReady((i, l), sdp) => {
                self.nodes[i].handle_answer_ready(now, l, sdp);
                self.drain_node(i);
            }
            Ev::Open((i, l)) => {
                if self.pairs.contains_key(&(i, l)) {
                    self.nodes[i].handle_link_opened(now, l);
                    self.drain_node(i);
                }
            }
            Ev::Frame((i, l), bytes) => {
                self.stats.link_frames += 1;
                self.nodes[i].handle_link_frame(now, l, &bytes);
                self.drain_node(i);
            }
            Ev::Closed((i, l), reason) => {
                self.nodes[i].handle_link_closed(now, l, &reason);
                self.drain_node(i);
            }
            Ev::NodeTimer(i) => {
                if self.node_timer[i] == Some(now) {
                    self.node_timer[i] = None;
                }
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.nodes[i].handle_timeout(now);
                    self.drain_node(i);
                }
            }
            Ev::BridgeTimer => {
                if self.bridge.poll_timeout().is_some_and(|t| t <= now) {
                    self.bridge.handle_input(now, RendezvousInput::Timeout);
                    self.drain_bridge();
                }
            }
        }
    }

    fn drain_bridge(&mut self) {
        while let Some(out) = self.bridge.poll_output() {
            match out {
                RendezvousOutput::Send { conn, bytes } => {
                    let i = conn.0 as usize;
                    let bytes = if self.cfg.mitm_bridge {
                        self.tamper(bytes)
                    } else {
                        bytes
                    };
                    self.deliver_bridge(i, false, Ev::ToNode(i, bytes));
                }
                RendezvousOutput::Close { .. }
                | RendezvousOutput::Registered { .. }
                | RendezvousOutput::Federated { .. }
                | RendezvousOutput::Log { .. } => {}
            }
        }
        if let Some(t) = self.bridge.poll_timeout() {
            self.schedule(t, Ev::BridgeTimer);
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
                Output::SendBridge(bytes) => self.deliver_bridge(i, true, Ev::ToBridge(i, bytes)),
                Output::CloseBridge { .. } => {}
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
                    if self.chance(self.cfg.ice_failure) {
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

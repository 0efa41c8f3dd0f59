//! Test networks for node tests, behind the `testing` feature (the crate's own tests turn it on
//! through a dev-dependency on the crate itself).
//!
//! Two shapes:
//!
//! - [`Net`]: `n` real [`Node`]s and a real bridge core (`onionmesh_rendezvous::Rendezvous`),
//!   wired by an instant FIFO "network" on a virtual clock. Fake SDPs carry the far end of each
//!   link (as in the simulator). Every node serves `echo`, has an in-memory content store
//!   (`onionmesh_ordb::MemStore`) driven through [`Output::Store`] / [`Input::StoreDone`], and
//!   can leave; the bridge can be kept from introducing two nodes (`apart`) or from handing
//!   peers to a node (`undiscovering`); a hook may rewrite or drop any link frame
//!   ([`Net::tamper`]); a node's store may hand out forged pieces ([`Net::forge`]); a hook
//!   may play the bridge's facilitator ([`Net::facilitator`], issue 10).
//! - [`pair`]: two nodes introduced to each other by hand, their data channels not open yet,
//!   for tests that step a link frame by frame; [`introduce`], [`forward`], [`handshake`] and
//!   [`link`] are its pieces, for nodes a test made itself.
//!
//! ```
//! use onionmesh_node::testing::Net;
//! let mut net = Net::new(4);
//! let circ = net.build(0, &[1, 2, 3]).unwrap();
//! assert!(net.linked(1, 2));
//! # let _ = circ;
//! ```
//!
//! `crates/sim` is the large-scale simulator (latency, federated bridges, churn); this module is
//! the small, instant one.

use crate::{
    CircHandle, ContentConfig, ContentEvent, DhtEvent, Event, Input, LinkId, Node, NodeConfig,
    OnionEvent, Output, Time,
};
use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_crypto::Identity;
use onionmesh_ordb::{HashName, MemStore, StoreCompletion, StoreOpId, StoreReply, StoreRequest};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use onionmesh_wire::signal::Sdp;
use onionmesh_wire::{BoundedVec, Frame, LinkMsg, NodeId, PeerRecord, SignalMsg};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;

/// One end of a link: (node index, that node's link id).
pub type End = (usize, LinkId);

/// A hook on every link frame `from -> to` (node indexes); it may rewrite the message, and
/// returning false drops it.
pub type Tamper = Box<dyn FnMut(usize, usize, &mut LinkMsg) -> bool>;

/// Plays the bridge's facilitator (issue 10): called with the index of the node whose bridge
/// connection sent a `SignalMsg::Facilitate` or `FacilitateClose` frame (what a bridge knows
/// of its sender) and the frame; the frames it returns (`Facilitated`, `FacilitateClose`) go
/// back to that node.
pub type Facilitator = Box<dyn FnMut(usize, &SignalMsg) -> Vec<SignalMsg>>;

/// The step at which [`Net`] gives up on a network that never settles.
const MAX_STEPS: u64 = 50_000_000;

/// A fake SDP for `end`: a fingerprint unique to the node (its index in the first two bytes)
/// and an `a=x-end:` line naming the end, which [`end_of`] reads back.
pub fn fake_sdp(end: End) -> String {
    let fp: Vec<String> = (0..32)
        .map(|i| match i {
            0 => format!("{:02X}", (end.0 >> 8) as u8),
            1 => format!("{:02X}", end.0 as u8),
            _ => format!("{:02X}", i as u8),
        })
        .collect();
    format!(
        "v=0\r\na=fingerprint:sha-256 {}\r\na=x-end:{}:{}\r\n",
        fp.join(":"),
        end.0,
        end.1 .0
    )
}

/// The end a [`fake_sdp`] names; `None` for any other SDP.
pub fn end_of(sdp: &str) -> Option<End> {
    let v = sdp.lines().find_map(|l| l.strip_prefix("a=x-end:"))?;
    let (n, l) = v.split_once(':')?;
    Some((n.parse().ok()?, LinkId(l.parse().ok()?)))
}

/// `len` pseudo-random bytes from `seed` (test content).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// 32 seed bytes for node `i` (any `i`), `tag` telling uses apart.
fn seed(i: usize, tag: u8) -> [u8; 32] {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    s
}

/// A store fault: hand out pieces with one byte flipped.
#[derive(Debug, Clone)]
pub enum Forge {
    /// Piece `index` of `hash_name`, `times` times.
    Piece {
        hash_name: HashName,
        index: u32,
        times: u32,
    },
    /// Every piece, every time.
    All,
}

/// How a [`Net`] is made.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Every node's configuration (by default [`NodeConfig::default`] with room for 64 links,
    /// for the links circuits make on demand beyond the ones found at start).
    pub node: NodeConfig,
    /// Node pairs the bridge never introduces to each other (the network drops those
    /// introductions and leaves each out of the other's peer answers).
    pub apart: Vec<(usize, usize)>,
    /// Nodes that never get the bridge's peer answers (they link only when asked to, for
    /// example by a circuit extended through them).
    pub undiscovering: Vec<usize>,
    /// Content-store quotas in bytes, by node (64 MiB for the others).
    pub quotas: Vec<(usize, u64)>,
    /// Virtual time run after every node registered, to let the DHT settle.
    pub settle: Duration,
}

impl NetConfig {
    /// `nodes` nodes, the defaults above, 5 s to settle.
    pub fn new(nodes: usize) -> NetConfig {
        let mut node = NodeConfig::default();
        node.links.max_links = 64;
        NetConfig {
            nodes,
            node,
            apart: Vec::new(),
            undiscovering: Vec::new(),
            quotas: Vec::new(),
            settle: Duration::from_secs(5),
        }
    }

    /// The same with this content configuration.
    pub fn content(mut self, content: ContentConfig) -> NetConfig {
        self.node.content = content;
        self
    }
}

/// What travels on the network, in FIFO order.
enum Msg {
    ToBridge(usize, Vec<u8>),
    ToNode(usize, Vec<u8>),
    BridgeClosed(usize, String),
    Frame(End, Vec<u8>),
    Open(End),
    Closed(End, String),
    Offer(End),
    Answer(End),
}

impl Msg {
    /// The node a message is for (`None`: the bridge).
    fn to(&self) -> Option<usize> {
        match self {
            Msg::ToBridge(..) => None,
            Msg::ToNode(i, _) | Msg::BridgeClosed(i, _) => Some(*i),
            Msg::Frame((i, _), _)
            | Msg::Open((i, _))
            | Msg::Closed((i, _), _)
            | Msg::Offer((i, _))
            | Msg::Answer((i, _)) => Some(*i),
        }
    }
}

/// A small network of real nodes and one real bridge core on an instant FIFO network and a
/// virtual clock (see the module docs). Fields are public for tests to read and steer; after
/// calling a node directly, call [`Net::drain`] for it and then [`Net::run`].
pub struct Net {
    pub nodes: Vec<Node>,
    pub bridge: Rendezvous,
    /// Every event each node emitted, in order.
    pub events: Vec<Vec<Event>>,
    /// Each node's content store.
    pub stores: Vec<MemStore>,
    /// A fault in each node's store.
    pub forge: Vec<Option<Forge>>,
    /// Forged pieces handed out, by node.
    pub forged: Vec<u32>,
    /// Called on every link frame (see [`Tamper`]).
    pub tamper: Option<Tamper>,
    /// Answers the nodes' `Facilitate` frames instead of the bridge core (see [`Facilitator`]);
    /// without one they go to the bridge core like any frame.
    pub facilitator: Option<Facilitator>,
    /// Every `Facilitate` / `FacilitateClose` frame a node sent its bridge: (node, frame).
    pub facilitate_log: Vec<(usize, SignalMsg)>,
    /// The virtual clock.
    pub now: Time,
    /// Bridge connections the bridge closed: (node, reason).
    pub bridge_closes: Vec<(usize, String)>,
    queue: VecDeque<Msg>,
    pairs: FlatMap<End, End>,
    alive: Vec<bool>,
    apart: FlatSet<(usize, usize)>,
    undiscovering: FlatSet<usize>,
    index: FlatMap<NodeId, usize>,
}

impl Net {
    /// `n` nodes with [`NetConfig::new`]: registered, linked to the peers the bridge named, the
    /// DHT settled.
    pub fn new(n: usize) -> Net {
        Net::with(NetConfig::new(n))
    }

    /// A network made as `cfg` says: every node in turn loads its store and registers (and
    /// links to the peers the bridge names), then the clock runs `cfg.settle`.
    pub fn with(cfg: NetConfig) -> Net {
        let n = cfg.nodes;
        let mut nodes = Vec::new();
        for i in 0..n {
            let identity = Identity::from_seed(seed(i, 1)).expect("a valid seed");
            let mut node = Node::new(identity, cfg.node.clone(), seed(i, 50));
            node.onion()
                .serve("echo")
                .expect("a fresh node serves echo");
            nodes.push(node);
        }
        let stores = (0..n)
            .map(|i| {
                let q = cfg.quotas.iter().find(|(j, _)| *j == i).map(|(_, q)| *q);
                MemStore::new(q.unwrap_or(64 << 20))
            })
            .collect();
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id(), i)).collect();
        let mut net = Net {
            nodes,
            bridge: Rendezvous::new(
                Identity::from_seed([99; 32]).expect("a valid seed"),
                RendezvousConfig::default(),
                [98; 32],
            ),
            events: vec![Vec::new(); n],
            stores,
            forge: vec![None; n],
            forged: vec![0; n],
            tamper: None,
            facilitator: None,
            facilitate_log: Vec::new(),
            now: Time::from_millis(1_000),
            bridge_closes: Vec::new(),
            queue: VecDeque::new(),
            pairs: FlatMap::new(),
            alive: vec![true; n],
            apart: cfg.apart.iter().copied().collect(),
            undiscovering: cfg.undiscovering.iter().copied().collect(),
            index,
        };
        let now = net.now;
        for i in 0..n {
            net.nodes[i].ordb().load(now);
            net.bridge
                .handle_input(now, RendezvousInput::Opened(ConnId(i as u64)));
            net.drain_bridge();
            net.nodes[i].handle_input(now, Input::BridgeOpened);
            net.drain(i);
            net.run();
        }
        net.advance_for(cfg.settle);
        net
    }

    /// Node `i`'s ID.
    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id()
    }

    /// Whether node `a` has an authenticated link to node `b`.
    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].linked_peers().contains(&self.id(b))
    }

    /// Node `a` links to node `b` through the bridge (`link(b).connect`), and the network runs.
    pub fn connect(&mut self, a: usize, b: usize) -> Result<(), crate::ApiError> {
        let (now, id) = (self.now, self.id(b));
        self.nodes[a].link(id).connect(now)?;
        self.drain(a);
        self.run();
        Ok(())
    }

    /// Node `a`'s end of its open channel to node `b`, if any.
    pub fn link_end(&self, a: usize, b: usize) -> Option<LinkId> {
        self.pairs
            .iter()
            .find(|((n, _), (m, _))| *n == a && *m == b)
            .map(|((_, l), _)| *l)
    }

    fn holds_apart(&self, a: usize, b: usize) -> bool {
        self.apart.contains(&(a, b)) || self.apart.contains(&(b, a))
    }

    /// Whether the bridge's frame `bytes` to node `to` may pass, rewritten if need be.
    fn filter(&self, to: usize, bytes: Vec<u8>) -> Option<Vec<u8>> {
        if self.apart.is_empty() && self.undiscovering.is_empty() {
            return Some(bytes);
        }
        match SignalMsg::decode_frame(&bytes) {
            Ok(SignalMsg::FoundPeer { .. }) if self.undiscovering.contains(&to) => None,
            Ok(SignalMsg::FoundPeer { mut peers }) => {
                peers.retain(|p| {
                    self.index
                        .get(&p.id)
                        .is_none_or(|&j| !self.holds_apart(to, j))
                });
                Some(SignalMsg::FoundPeer { peers }.encode_frame())
            }
            Ok(SignalMsg::Introduce { peer, .. })
                if self
                    .index
                    .get(&peer)
                    .is_some_and(|&j| self.holds_apart(to, j)) =>
            {
                None
            }
            _ => Some(bytes),
        }
    }

    fn drain_bridge(&mut self) {
        while let Some(o) = self.bridge.poll_output() {
            match o {
                RendezvousOutput::Send { conn, bytes } => {
                    let to = conn.0 as usize;
                    if let Some(bytes) = self.filter(to, bytes) {
                        self.queue.push_back(Msg::ToNode(to, bytes));
                    }
                }
                RendezvousOutput::Close { conn, reason } => {
                    let to = conn.0 as usize;
                    self.bridge_closes.push((to, reason.clone()));
                    self.queue.push_back(Msg::BridgeClosed(to, reason));
                }
                _ => {}
            }
        }
    }

    /// Run one store request on node `i`'s store, forging the piece if its fault says so.
    fn store_op(&mut self, i: usize, id: StoreOpId, request: StoreRequest) -> StoreCompletion {
        let get = match &request {
            StoreRequest::GetPiece { hash_name, index } => Some((*hash_name, *index)),
            _ => None,
        };
        let mut result = self.stores[i].execute(request);
        if let (Some((h, index)), Some(f)) = (get, self.forge[i].as_mut()) {
            let forge = match f {
                Forge::Piece {
                    hash_name,
                    index: at,
                    times,
                } if *hash_name == h && *at == index && *times > 0 => {
                    *times -= 1;
                    true
                }
                Forge::Piece { .. } => false,
                Forge::All => true,
            };
            if let (true, Ok(StoreReply::Piece(Some(rec)))) = (forge, result.as_mut()) {
                let at = rec.bytes.len() / 2;
                rec.bytes[at] ^= 0x55;
                self.forged[i] += 1;
            }
        }
        StoreCompletion { id, result }
    }

    /// Carry out node `i`'s outputs (store operations complete at once).
    pub fn drain(&mut self, i: usize) {
        if !self.alive[i] {
            return;
        }
        loop {
            let mut done = Vec::new();
            while let Some(o) = self.nodes[i].poll_output() {
                match o {
                    Output::SendBridge(b) => self.queue.push_back(Msg::ToBridge(i, b)),
                    Output::CreateOffer { link } => self.queue.push_back(Msg::Offer((i, link))),
                    Output::CreateAnswer { link, .. } => {
                        self.queue.push_back(Msg::Answer((i, link)))
                    }
                    Output::ApplyAnswer { link, answer } => {
                        let remote = end_of(&answer).expect("an answer made by fake_sdp");
                        self.pairs.insert((i, link), remote);
                        self.pairs.insert(remote, (i, link));
                        self.queue.push_back(Msg::Open((i, link)));
                        self.queue.push_back(Msg::Open(remote));
                    }
                    Output::SendLink { link, mut bytes } => {
                        let Some(&remote) = self.pairs.get(&(i, link)) else {
                            continue;
                        };
                        if let Some(t) = self.tamper.as_mut() {
                            let mut msg = LinkMsg::decode_frame(&bytes).expect("a node's frame");
                            if !t(i, remote.0, &mut msg) {
                                continue;
                            }
                            bytes = msg.encode_frame();
                        }
                        self.queue.push_back(Msg::Frame(remote, bytes));
                    }
                    Output::CloseLink { link, reason } => {
                        if let Some(remote) = self.pairs.remove(&(i, link)) {
                            self.pairs.remove(&remote);
                            self.queue
                                .push_back(Msg::Closed(remote, reason.to_string()));
                        }
                    }
                    Output::Store { id, request } => done.push(self.store_op(i, id, request)),
                    Output::Event(e) => self.events[i].push(e),
                    Output::CloseBridge { .. } | Output::ConnectBridge => {}
                }
            }
            if done.is_empty() {
                return;
            }
            let now = self.now;
            for c in done {
                self.nodes[i].handle_input(now, Input::StoreDone(c));
            }
        }
    }

    /// Deliver everything in flight, and what that causes, until the network is quiet; no
    /// virtual time passes. Panics if it never settles.
    pub fn run(&mut self) {
        let mut steps = 0u64;
        while let Some(m) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < MAX_STEPS, "the network never settles");
            let now = self.now;
            if let Msg::ToBridge(i, b) = &m {
                let i = *i;
                if let Ok(f @ (SignalMsg::Facilitate { .. } | SignalMsg::FacilitateClose { .. })) =
                    SignalMsg::decode_frame(b)
                {
                    self.facilitate_log.push((i, f.clone()));
                    if let Some(fac) = self.facilitator.as_mut() {
                        for reply in fac(i, &f) {
                            self.queue.push_back(Msg::ToNode(i, reply.encode_frame()));
                        }
                        continue;
                    }
                }
                let conn = ConnId(i as u64);
                self.bridge
                    .handle_input(now, RendezvousInput::Frame { conn, bytes: b });
                self.drain_bridge();
                continue;
            }
            let Some(i) = m.to().filter(|&i| self.alive[i]) else {
                continue;
            };
            let input = match &m {
                Msg::ToBridge(..) => continue,
                Msg::ToNode(_, b) => Input::BridgeFrame(b),
                Msg::BridgeClosed(_, reason) => Input::BridgeClosed { reason },
                Msg::Offer((_, link)) => Input::OfferReady {
                    link: *link,
                    sdp: fake_sdp((i, *link)),
                },
                Msg::Answer((_, link)) => Input::AnswerReady {
                    link: *link,
                    sdp: fake_sdp((i, *link)),
                },
                Msg::Open((_, link)) => Input::LinkOpened { link: *link },
                Msg::Frame((_, link), bytes) => Input::LinkFrame { link: *link, bytes },
                Msg::Closed((_, link), reason) => Input::LinkClosed {
                    link: *link,
                    reason,
                },
            };
            self.nodes[i].handle_input(now, input);
            self.drain(i);
        }
    }

    /// Move the clock on by `by`, fire the timers that are due (the bridge's and the nodes'),
    /// and [`Net::run`].
    pub fn tick(&mut self, by: Duration) {
        self.now = self.now + by;
        let now = self.now;
        if self.bridge.poll_timeout().is_some_and(|t| t <= now) {
            self.bridge.handle_input(now, RendezvousInput::Timeout);
            self.drain_bridge();
        }
        for i in 0..self.nodes.len() {
            if self.alive[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].handle_input(now, Input::Timeout);
                self.drain(i);
            }
        }
        self.run();
    }

    /// Run the clock for `d` in 100 ms ticks.
    pub fn advance_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run();
        while self.now < end {
            self.tick(Duration::from_millis(100));
        }
    }

    /// Step the clock in 100 ms ticks until `done` holds; panics after `limit` of virtual time,
    /// naming `what`.
    pub fn until(&mut self, limit: Duration, what: &str, done: impl Fn(&Net) -> bool) {
        let end = self.now + limit;
        self.run();
        while !done(self) {
            assert!(self.now < end, "{what}: not within {limit:?}");
            self.tick(Duration::from_millis(100));
        }
    }

    /// Node `i` leaves like a closing tab: it stops (closing its links), the bridge forgets it,
    /// and nothing reaches it any more.
    pub fn leave(&mut self, i: usize) {
        self.nodes[i].stop();
        self.drain(i);
        self.alive[i] = false;
        self.bridge
            .handle_input(self.now, RendezvousInput::Closed(ConnId(i as u64)));
        self.drain_bridge();
        self.run();
    }

    /// Node `i`'s onion events so far.
    pub fn onion_events(&self, i: usize) -> Vec<OnionEvent> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Onion(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    /// Node `i`'s content events so far.
    pub fn content(&self, i: usize) -> Vec<ContentEvent> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Content(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Node `i`'s log lines so far.
    pub fn logs(&self, i: usize) -> Vec<String> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Log { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Build a circuit from node `from` through the nodes `path` (indexes) and run the network;
    /// the handle once it is built, or why not.
    pub fn build(&mut self, from: usize, path: &[usize]) -> Result<CircHandle, String> {
        let ids: Vec<NodeId> = path.iter().map(|&i| self.id(i)).collect();
        let now = self.now;
        let circ = self.nodes[from]
            .onion()
            .build(now, &ids)
            .map_err(|e| e.to_string())?;
        self.drain(from);
        self.run();
        let evs = self.onion_events(from);
        if evs.contains(&OnionEvent::CircuitBuilt { circ }) {
            Ok(circ)
        } else {
            Err(format!("not built: {evs:?}"))
        }
    }

    /// How node `i`'s circuit `circ` closed (its code and reason), if it did.
    pub fn closed(&self, i: usize, circ: CircHandle) -> Option<(String, String)> {
        self.onion_events(i).into_iter().find_map(|e| match e {
            OnionEvent::CircuitClosed {
                circ: c,
                code,
                reason,
            } if c == circ => Some((code.to_string(), reason)),
            _ => None,
        })
    }

    /// Whether node `i`'s download of `h` finished.
    pub fn done(&self, i: usize, h: HashName) -> bool {
        self.content(i)
            .contains(&ContentEvent::Done { hash_name: h })
    }

    /// Why node `i`'s download of `h` failed, if it did.
    pub fn failed(&self, i: usize, h: HashName) -> Option<String> {
        self.content(i).into_iter().find_map(|e| match e {
            ContentEvent::Failed { hash_name, reason } if hash_name == h => Some(reason),
            _ => None,
        })
    }

    /// The verified bytes node `i` stored for `h`, in order (`None` if a piece is missing).
    pub fn stored_bytes(&mut self, i: usize, h: HashName, pieces: u32) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for index in 0..pieces {
            match self.stores[i].execute(StoreRequest::GetPiece {
                hash_name: h,
                index,
            }) {
                Ok(StoreReply::Piece(Some(rec))) => out.extend_from_slice(&rec.bytes),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Node `i` publishes `data` as `name`; returns once it is stored and announced in the DHT
    /// (panics if that takes over 60 s of virtual time).
    pub fn publish(&mut self, i: usize, data: &[u8], name: &str) -> HashName {
        let now = self.now;
        let h = self.nodes[i]
            .ordb()
            .publish(now, data, "application/octet-stream", name)
            .expect("a publishable file");
        self.drain(i);
        let announced = |n: &Net| {
            n.done(i, h)
                && n.events[i].iter().any(|e| {
                    matches!(e, Event::Dht(DhtEvent::Published { key, holders, .. })
                        if key.0 == h.0 && *holders > 0)
                })
        };
        let end = self.now + Duration::from_secs(60);
        while !announced(self) {
            if self.now >= end {
                let seen: Vec<&Event> = self.events[i]
                    .iter()
                    .filter(|e| matches!(e, Event::Dht(_) | Event::Log { .. } | Event::Content(_)))
                    .collect();
                panic!("node {i}'s publication is not stored and announced within 60 s: {seen:#?}");
            }
            self.tick(Duration::from_millis(100));
        }
        h
    }

    /// Node `i` starts downloading `source.hash_name` with that source hint.
    pub fn download_from(&mut self, i: usize, source: onionmesh_wire::db::DbSource) {
        let now = self.now;
        self.nodes[i]
            .ordb()
            .download_from(now, source)
            .expect("a download starts");
        self.drain(i);
    }

    /// Node `i` starts downloading `h`.
    pub fn download(&mut self, i: usize, h: HashName) {
        let now = self.now;
        self.nodes[i]
            .ordb()
            .download(now, h)
            .expect("a download starts");
        self.drain(i);
    }
}

/// Two nodes introduced to each other by hand ([`pair`]): `la` is `a`'s link to `b`, `lb`
/// `b`'s link to `a`.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub la: LinkId,
    pub lb: LinkId,
}

/// Two fresh nodes (default configuration, registered at no bridge) that a pretend bridge
/// introduced to each other: both links wait for their data channels to open
/// ([`Input::LinkOpened`]); the handshake is the test's to drive ([`forward`], [`handshake`]).
pub fn pair() -> Pair {
    let identity = |n: u8| Identity::from_seed([n; 32]).expect("a valid seed");
    let mut a = Node::new(identity(10), NodeConfig::default(), [1; 32]);
    let mut b = Node::new(identity(11), NodeConfig::default(), [2; 32]);
    let (la, lb) = introduce(&mut a, &mut b, Time::ZERO);
    Pair { a, b, la, lb }
}

/// The bridge address [`registered`] gives its node.
pub const TEST_BRIDGE_ADDR: &str = "ws://bridge.test/ws";

/// A node with identity seed `seed`, registered at a bridge whose DHT node is `bridge` and whose
/// address is [`TEST_BRIDGE_ADDR`] (`Welcome` and `BridgeInfo` handled), its outputs drained.
pub fn registered(seed: u8, bridge: &Identity) -> Node {
    let identity = Identity::from_seed([seed; 32]).expect("a valid seed");
    let mut n = Node::new(identity, NodeConfig::default(), [seed; 32]);
    n.handle_input(Time::ZERO, Input::BridgeOpened);
    for msg in [
        SignalMsg::Welcome {
            bridge_pubkey: bridge.public_key(),
            peers_online: 1,
        },
        SignalMsg::BridgeInfo {
            addr: TEST_BRIDGE_ADDR.try_into().expect("a short address"),
        },
    ] {
        n.handle_input(Time::ZERO, Input::BridgeFrame(&msg.encode_frame()));
    }
    outputs(&mut n);
    n
}

/// Every output `n` has now.
pub fn outputs(n: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| n.poll_output()).collect()
}

/// Play the bridge between `a` and `b`: `a` opens a link to `b` (with `connect` if `a` is
/// registered at a bridge, else on the bridge's peer answer naming `b`), `b` answers, and `a`
/// applies the answer. Returns each side's link id; the data channels are not open yet. The
/// outputs of both nodes up to then are dropped.
pub fn introduce(a: &mut Node, b: &mut Node, now: Time) -> (LinkId, LinkId) {
    if a.link(b.id()).connect(now).is_err() {
        let found = SignalMsg::FoundPeer {
            peers: BoundedVec::one(PeerRecord {
                id: b.id(),
                pubkey: b.public_key(),
                bridge: None,
            }),
        };
        a.handle_input(now, Input::BridgeFrame(&found.encode_frame()));
    }
    let la = outputs(a)
        .into_iter()
        .find_map(|o| match o {
            Output::CreateOffer { link } => Some(link),
            _ => None,
        })
        .expect("a makes an offer");
    a.handle_input(
        now,
        Input::OfferReady {
            link: la,
            sdp: fake_sdp((0, la)),
        },
    );
    let (session, offer) = outputs(a)
        .into_iter()
        .find_map(|o| match o {
            Output::SendBridge(f) => match SignalMsg::decode_frame(&f) {
                Ok(SignalMsg::Introduce { session, sdp, .. }) => Some((session, sdp)),
                _ => None,
            },
            _ => None,
        })
        .expect("a asks the bridge to introduce it");
    let intro = SignalMsg::Introduce {
        peer: a.id(),
        session,
        sdp: offer,
    };
    b.handle_input(now, Input::BridgeFrame(&intro.encode_frame()));
    let lb = outputs(b)
        .into_iter()
        .find_map(|o| match o {
            Output::CreateAnswer { link, .. } => Some(link),
            _ => None,
        })
        .expect("b answers");
    let answer = fake_sdp((1, lb));
    b.handle_input(
        now,
        Input::AnswerReady {
            link: lb,
            sdp: answer.clone(),
        },
    );
    outputs(b);
    let back = SignalMsg::Introduced {
        peer: b.id(),
        session,
        sdp: Sdp::new(answer).expect("a fake SDP fits the field"),
    };
    a.handle_input(now, Input::BridgeFrame(&back.encode_frame()));
    outputs(a);
    (la, lb)
}

/// Hand every link frame `from` sends now to `to` on its link `to_link` (other outputs of
/// `from` are dropped). Returns how many frames moved.
pub fn forward(from: &mut Node, to: &mut Node, to_link: LinkId, now: Time) -> usize {
    let frames: Vec<Vec<u8>> = outputs(from)
        .into_iter()
        .filter_map(|o| match o {
            Output::SendLink { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    for bytes in &frames {
        to.handle_input(
            now,
            Input::LinkFrame {
                link: to_link,
                bytes,
            },
        );
    }
    frames.len()
}

/// [`introduce`] then [`handshake`]: `a` and `b` end up linked; returns each side's link id.
pub fn link(a: &mut Node, b: &mut Node, now: Time) -> (LinkId, LinkId) {
    let (la, lb) = introduce(a, b, now);
    handshake(a, b, la, lb, now);
    (la, lb)
}

/// Open the data channels of an [`introduce`]d pair and shuttle link frames until both sides
/// are quiet (the handshake runs); panics unless they end up linked.
pub fn handshake(a: &mut Node, b: &mut Node, la: LinkId, lb: LinkId, now: Time) {
    a.handle_input(now, Input::LinkOpened { link: la });
    b.handle_input(now, Input::LinkOpened { link: lb });
    for _ in 0..10 {
        let moved = forward(a, b, lb, now) + forward(b, a, la, now);
        if moved == 0 {
            break;
        }
    }
    assert!(
        a.linked_peers().contains(&b.id()) && b.linked_peers().contains(&a.id()),
        "the handshake did not link the pair"
    );
}

//! The content tests' network: real `Node`s with their ORDB parts, each with an in-memory
//! store (`MemStore`) driven through `Output::Store` / `Input::StoreDone`, wired by an instant
//! FIFO "network" and a real bridge core (`Rendezvous`). Nodes can leave, two nodes can be kept
//! from ever linking, and a node's store can hand out forged pieces (a corrupting holder).
#![allow(dead_code)] // Each test file uses part of it.

use onionmesh_crypto::Identity;
use onionmesh_node::{
    ContentConfig, ContentEvent, Event, Input, LinkId, Node, NodeConfig, Output, Time,
};
use onionmesh_ordb::{HashName, MemStore, StoreCompletion, StoreOpId, StoreReply, StoreRequest};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use onionmesh_wire::{Frame, NodeId, SignalMsg};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub enum Msg {
    ToBridge(usize, Vec<u8>),
    ToNode(usize, Vec<u8>),
    Frame((usize, LinkId), Vec<u8>),
    Open((usize, LinkId)),
    Closed((usize, LinkId), String),
    Offer((usize, LinkId)),
    Answer((usize, LinkId)),
    BridgeClosed(usize, String),
}

/// Which node pairs the bridge must never introduce to each other (the network drops those
/// introductions and leaves each out of the other's peer answers).
pub struct Apart {
    pairs: BTreeSet<(usize, usize)>,
    ids: BTreeMap<NodeId, usize>,
}

impl Apart {
    fn holds(&self, a: usize, b: usize) -> bool {
        self.pairs.contains(&(a, b)) || self.pairs.contains(&(b, a))
    }

    /// Whether the bridge's frame `bytes` to node `to` may pass, rewritten if need be.
    fn filter(&self, to: usize, bytes: Vec<u8>) -> Option<Vec<u8>> {
        if self.pairs.is_empty() {
            return Some(bytes);
        }
        match SignalMsg::decode_frame(&bytes) {
            Ok(SignalMsg::FoundPeer { mut peers }) => {
                peers.retain(|p| self.ids.get(&p.id).is_none_or(|&j| !self.holds(to, j)));
                Some(SignalMsg::FoundPeer { peers }.encode_frame())
            }
            Ok(SignalMsg::Introduce { peer, .. })
                if self.ids.get(&peer).is_some_and(|&j| self.holds(to, j)) =>
            {
                None
            }
            _ => Some(bytes),
        }
    }
}

/// A store fault: hand out pieces with one byte flipped.
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

pub struct Net {
    pub nodes: Vec<Node>,
    pub bridge: Rendezvous,
    pub apart: Apart,
    pub queue: VecDeque<Msg>,
    pub pairs: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    pub events: Vec<Vec<Event>>,
    pub stores: Vec<MemStore>,
    pub forge: Vec<Option<Forge>>,
    /// Forged pieces handed out, by node.
    pub forged: Vec<u32>,
    pub alive: Vec<bool>,
    pub now: Time,
}

/// 32 seed bytes for node `i` (any `i`), `tag` telling uses apart.
fn seed(i: usize, tag: u8) -> [u8; 32] {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    s
}

pub fn sdp(end: (usize, LinkId)) -> String {
    let fp: Vec<String> = (0..32)
        // The node's index in the first two bytes: one fingerprint per node.
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

pub fn end_of(sdp: &str) -> (usize, LinkId) {
    let v = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=x-end:"))
        .unwrap();
    let (n, l) = v.split_once(':').unwrap();
    (n.parse().unwrap(), LinkId(l.parse().unwrap()))
}

impl Net {
    pub fn new(n: usize, apart: &[(usize, usize)], quotas: &[(usize, u64)]) -> Net {
        Net::with(n, apart, quotas, ContentConfig::default())
    }

    pub fn with(
        n: usize,
        apart: &[(usize, usize)],
        quotas: &[(usize, u64)],
        content: ContentConfig,
    ) -> Net {
        let mut nodes = Vec::new();
        for i in 0..n {
            let identity = Identity::from_seed(seed(i, 1)).unwrap();
            let mut cfg = NodeConfig {
                content: content.clone(),
                ..NodeConfig::default()
            };
            // Room for the links circuits make on demand beyond the ones found at start.
            cfg.links.max_links = 64;
            nodes.push(Node::new(identity, cfg, seed(i, 50)));
        }
        let stores = (0..n)
            .map(|i| {
                let q = quotas
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, q)| *q)
                    .unwrap_or(64 << 20);
                MemStore::new(q)
            })
            .collect();
        let mut net = Net {
            nodes,
            apart: Apart {
                pairs: apart.iter().copied().collect(),
                ids: BTreeMap::new(),
            },
            bridge: Rendezvous::new(
                Identity::from_seed([99; 32]).unwrap(),
                RendezvousConfig::default(),
                [98; 32],
            ),
            queue: VecDeque::new(),
            pairs: BTreeMap::new(),
            events: vec![Vec::new(); n],
            stores,
            forge: (0..n).map(|_| None).collect(),
            forged: vec![0; n],
            alive: vec![true; n],
            now: Time::from_millis(1_000),
        };
        for i in 0..n {
            let id = net.id(i);
            net.apart.ids.insert(id, i);
            let now = net.now;
            net.nodes[i].ordb().load(now);
            net.bridge
                .handle_input(now, RendezvousInput::Opened(ConnId(i as u64)));
            net.drain_bridge();
            net.nodes[i].handle_input(now, Input::BridgeOpened);
            net.drain(i);
            net.run();
        }
        // Let the DHT settle (bootstrap lookups, refreshes).
        net.advance_for(Duration::from_secs(5));
        net
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id()
    }

    fn drain_bridge(&mut self) {
        while let Some(o) = self.bridge.poll_output() {
            match o {
                RendezvousOutput::Send { conn, bytes } => {
                    let to = conn.0 as usize;
                    if let Some(bytes) = self.apart.filter(to, bytes) {
                        self.queue.push_back(Msg::ToNode(to, bytes));
                    }
                }
                RendezvousOutput::Close { conn, reason } => self
                    .queue
                    .push_back(Msg::BridgeClosed(conn.0 as usize, reason)),
                _ => {}
            }
        }
    }

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
                        let remote = end_of(&answer);
                        self.pairs.insert((i, link), remote);
                        self.pairs.insert(remote, (i, link));
                        self.queue.push_back(Msg::Open((i, link)));
                        self.queue.push_back(Msg::Open(remote));
                    }
                    Output::SendLink { link, bytes } => {
                        if let Some(&remote) = self.pairs.get(&(i, link)) {
                            self.queue.push_back(Msg::Frame(remote, bytes));
                        }
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
            for c in done {
                let now = self.now;
                self.nodes[i].handle_input(now, Input::StoreDone(c));
            }
        }
    }

    pub fn run(&mut self) {
        let mut steps = 0u64;
        while let Some(m) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 50_000_000, "the network never settles");
            let now = self.now;
            let i = match m {
                Msg::ToBridge(i, b) => {
                    self.bridge.handle_input(
                        now,
                        RendezvousInput::Frame {
                            conn: ConnId(i as u64),
                            bytes: &b,
                        },
                    );
                    self.drain_bridge();
                    continue;
                }
                Msg::BridgeClosed(i, reason) if self.alive[i] => {
                    self.nodes[i].handle_input(now, Input::BridgeClosed { reason: &reason });
                    i
                }
                Msg::BridgeClosed(..) => continue,
                Msg::ToNode(i, _)
                | Msg::Frame((i, _), _)
                | Msg::Open((i, _))
                | Msg::Closed((i, _), _)
                | Msg::Offer((i, _))
                | Msg::Answer((i, _))
                    if !self.alive[i] =>
                {
                    continue;
                }
                Msg::ToNode(i, b) => {
                    self.nodes[i].handle_input(now, Input::BridgeFrame(&b));
                    i
                }
                Msg::Offer((i, l)) => {
                    self.nodes[i].handle_input(
                        now,
                        Input::OfferReady {
                            link: l,
                            sdp: sdp((i, l)),
                        },
                    );
                    i
                }
                Msg::Answer((i, l)) => {
                    self.nodes[i].handle_input(
                        now,
                        Input::AnswerReady {
                            link: l,
                            sdp: sdp((i, l)),
                        },
                    );
                    i
                }
                Msg::Open((i, l)) => {
                    self.nodes[i].handle_input(now, Input::LinkOpened { link: l });
                    i
                }
                Msg::Frame((i, l), b) => {
                    self.nodes[i].handle_input(now, Input::LinkFrame { link: l, bytes: &b });
                    i
                }
                Msg::Closed((i, l), r) => {
                    self.nodes[i].handle_input(
                        now,
                        Input::LinkClosed {
                            link: l,
                            reason: &r,
                        },
                    );
                    i
                }
            };
            self.drain(i);
        }
    }

    pub fn tick(&mut self, by: Duration) {
        self.now = self.now + by;
        if self.bridge.poll_timeout().is_some_and(|t| t <= self.now) {
            self.bridge.handle_input(self.now, RendezvousInput::Timeout);
            self.drain_bridge();
        }
        for i in 0..self.nodes.len() {
            if self.alive[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                let now = self.now;
                self.nodes[i].handle_input(now, Input::Timeout);
                self.drain(i);
            }
        }
        self.run();
    }

    pub fn advance_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick(Duration::from_millis(100));
        }
    }

    /// Step the clock until `done` holds; panics after `limit` of virtual time.
    pub fn until(&mut self, limit: Duration, what: &str, done: impl Fn(&Net) -> bool) {
        let end = self.now + limit;
        self.run();
        while !done(self) {
            assert!(self.now < end, "{what}: not within {limit:?}");
            self.tick(Duration::from_millis(100));
        }
    }

    pub fn content(&self, i: usize) -> Vec<ContentEvent> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Content(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn done(&self, i: usize, h: HashName) -> bool {
        self.content(i)
            .contains(&ContentEvent::Done { hash_name: h })
    }

    pub fn failed(&self, i: usize, h: HashName) -> Option<String> {
        self.content(i).into_iter().find_map(|e| match e {
            ContentEvent::Failed { hash_name, reason } if hash_name == h => Some(reason),
            _ => None,
        })
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

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].linked_peers().contains(&self.id(b))
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

    pub fn publish(&mut self, i: usize, data: &[u8], name: &str) -> HashName {
        let now = self.now;
        let h = self.nodes[i]
            .ordb()
            .publish(now, data, "application/octet-stream", name)
            .unwrap();
        self.drain(i);
        let announced = |n: &Net| {
            n.done(i, h)
                && n.events[i].iter().any(|e| {
                    matches!(e, Event::Dht(onionmesh_node::DhtEvent::Published { key, holders, .. })
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

    pub fn download(&mut self, i: usize, h: HashName) {
        let now = self.now;
        self.nodes[i].ordb().download(now, h).unwrap();
        self.drain(i);
    }
}

pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

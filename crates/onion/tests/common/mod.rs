//! A tiny in-memory mesh: nodes with a proxy and a router each, links as sets, cells delivered
//! in FIFO order by an event loop on a virtual clock. No network.

#![allow(dead_code)]

use onionmesh_onion::*;
use onionmesh_wire::cell::Cell;
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub struct Node {
    pub id: NodeId,
    pub proxy: OnionProxy,
    pub router: OnionRouter,
}

/// What the echo service does with what it reads.
#[derive(Default)]
pub struct Service {
    pub reading: bool,
    pub echo: bool,
    pub pending: Vec<u8>,
    pub received: usize,
}

pub struct Net {
    pub nodes: BTreeMap<NodeId, Node>,
    pub order: Vec<NodeId>,
    pub links: BTreeSet<(NodeId, NodeId)>,
    pub now: Time,
    pub wire: VecDeque<(NodeId, NodeId, Cell)>,
    pub proxy_events: Vec<(NodeId, ProxyEvent)>,
    pub router_events: Vec<(NodeId, RouterEvent)>,
    pub close_links: Vec<(NodeId, NodeId, ProtocolError)>,
    pub need_links: Vec<(NodeId, NodeId)>,
    /// Answer NeedLink by opening the link at once.
    pub auto_link: bool,
    pub services: BTreeMap<(NodeId, ExitStream), Service>,
    pub service_reading: bool,
    /// Cells delivered per (from, to).
    pub delivered: BTreeMap<(NodeId, NodeId), u64>,
}

pub fn hop(n: &Node) -> HopSpec {
    HopSpec {
        id: n.id,
        onion_key: *n.router.onion_key().public(),
    }
}

impl Net {
    pub fn new(count: usize, rcfg: RouterConfig) -> Net {
        let mut nodes = BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..count {
            let key = OnionKey::from_seed([i as u8 + 1; 32]).unwrap();
            let id = key.public().node_id();
            let mut router = OnionRouter::new(id, key, rcfg.clone(), [i as u8 + 100; 32]);
            router.register_service("echo").unwrap();
            let proxy = OnionProxy::new(id, ProxyConfig::default(), [i as u8 + 200; 32]);
            nodes.insert(id, Node { id, proxy, router });
            order.push(id);
        }
        Net {
            nodes,
            order,
            links: BTreeSet::new(),
            now: Time::from_millis(1_000_000),
            wire: VecDeque::new(),
            proxy_events: Vec::new(),
            router_events: Vec::new(),
            close_links: Vec::new(),
            need_links: Vec::new(),
            auto_link: true,
            services: BTreeMap::new(),
            service_reading: true,
            delivered: BTreeMap::new(),
        }
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.order[i]
    }

    pub fn node(&mut self, i: usize) -> &mut Node {
        let id = self.order[i];
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn hop(&self, i: usize) -> HopSpec {
        hop(&self.nodes[&self.order[i]])
    }

    pub fn link(&mut self, a: NodeId, b: NodeId) {
        self.links.insert((a.min(b), a.max(b)));
        let now = self.now;
        self.nodes.get_mut(&a).unwrap().router.link_opened(now, b);
        self.nodes.get_mut(&b).unwrap().router.link_opened(now, a);
    }

    pub fn linked(&self, a: NodeId, b: NodeId) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    pub fn unlink(&mut self, a: NodeId, b: NodeId) {
        self.links.remove(&(a.min(b), a.max(b)));
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            let n = self.nodes.get_mut(&x).unwrap();
            n.proxy.link_closed(now, y);
            n.router.link_closed(now, y);
        }
    }

    /// Move every output onto the wire or into the event logs. Returns whether anything moved.
    fn drain(&mut self) -> bool {
        let mut moved = false;
        let ids: Vec<NodeId> = self.order.clone();
        for id in ids {
            loop {
                let n = self.nodes.get_mut(&id).unwrap();
                let out = match n.proxy.poll_output() {
                    Some(o) => map_proxy(o),
                    None => match n.router.poll_output() {
                        Some(o) => map_router(o),
                        None => break,
                    },
                };
                moved = true;
                match out {
                    Either::Cell(peer, cell) => self.wire.push_back((id, peer, cell)),
                    Either::Need(peer) => self.need_links.push((id, peer)),
                    Either::Close(peer, reason) => self.close_links.push((id, peer, reason)),
                    Either::Proxy(e) => self.proxy_events.push((id, e)),
                    Either::Router(e) => {
                        if let RouterEvent::StreamOpened { stream, .. } = &e {
                            self.services.insert(
                                (id, *stream),
                                Service {
                                    reading: self.service_reading,
                                    echo: true,
                                    ..Service::default()
                                },
                            );
                        }
                        self.router_events.push((id, e))
                    }
                }
            }
        }
        let needs: Vec<(NodeId, NodeId)> = std::mem::take(&mut self.need_links);
        for (a, b) in needs {
            if self.auto_link {
                self.link(a, b);
                moved = true;
            } else {
                self.need_links.push((a, b));
            }
        }
        moved
    }

    /// Deliver one cell; returns false if the wire is empty.
    pub fn deliver_one(&mut self) -> bool {
        let Some((from, to, cell)) = self.wire.pop_front() else {
            return false;
        };
        if !self.linked(from, to) {
            return true;
        }
        *self.delivered.entry((from, to)).or_default() += 1;
        let now = self.now;
        let n = self.nodes.get_mut(&to).unwrap();
        match owner_of(to, from, cell.circ_id) {
            CellOwner::Proxy => n.proxy.handle_cell(now, from, cell),
            CellOwner::Router => n.router.handle_cell(now, from, cell),
        }
        true
    }

    /// Let the services read/echo what they can.
    fn serve(&mut self) -> bool {
        let mut moved = false;
        let now = self.now;
        let keys: Vec<(NodeId, ExitStream)> = self.services.keys().copied().collect();
        for key in keys {
            let s = self.services.get_mut(&key).unwrap();
            let n = self.nodes.get_mut(&key.0).unwrap();
            if s.reading {
                if let Ok(data) = n.router.stream_read(now, key.1, usize::MAX) {
                    if !data.is_empty() {
                        moved = true;
                        s.received += data.len();
                        if s.echo {
                            s.pending.extend_from_slice(&data);
                        }
                    }
                }
            }
            if !s.pending.is_empty() {
                if let Ok(n) = n.router.stream_write(now, key.1, &s.pending) {
                    if n > 0 {
                        moved = true;
                        s.pending.drain(..n);
                    }
                }
            }
        }
        moved
    }

    /// Run until nothing moves; `check` runs after every delivered cell.
    pub fn run_with(&mut self, mut check: impl FnMut(&mut Net)) {
        for _ in 0..10_000_000 {
            let a = self.drain();
            let b = self.deliver_one();
            let c = self.serve();
            check(self);
            if !a && !b && !c && self.wire.is_empty() {
                return;
            }
        }
        panic!("the mesh did not settle");
    }

    /// Step until `pred` holds (panics if the mesh settles first).
    pub fn run_until(&mut self, mut pred: impl FnMut(&Net) -> bool) {
        for _ in 0..1_000_000 {
            if pred(self) {
                return;
            }
            let a = self.drain();
            if pred(self) {
                return;
            }
            let b = self.deliver_one();
            let c = self.serve();
            if !a && !b && !c && self.wire.is_empty() && !pred(self) {
                panic!("the mesh settled before the condition held");
            }
        }
        panic!("the condition never held");
    }

    pub fn run(&mut self) {
        self.run_with(|_| {});
    }

    /// Advance the virtual clock and fire every timer that is due.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let now = self.now;
        for n in self.nodes.values_mut() {
            n.proxy.handle_timeout(now);
            n.router.handle_timeout(now);
        }
        self.run();
    }

    /// Build a circuit from node `from` through `path` (node indices), linking `from` to the
    /// first hop. Returns the handle once built (panics otherwise).
    pub fn build(&mut self, from: usize, path: &[usize]) -> CircHandle {
        let a = self.id(from);
        let first = self.id(path[0]);
        if !self.linked(a, first) {
            self.link(a, first);
        }
        let hops: Vec<HopSpec> = path.iter().map(|&i| self.hop(i)).collect();
        let now = self.now;
        let circ = self.node(from).proxy.build_circuit(now, &hops).unwrap();
        self.run();
        assert!(
            self.proxy_events
                .iter()
                .any(|(n, e)| *n == a && *e == ProxyEvent::CircuitBuilt { circ }),
            "circuit not built: {:?}",
            self.proxy_events
        );
        circ
    }

    pub fn closed(&self, node: NodeId, circ: CircHandle) -> Option<CloseReason> {
        self.proxy_events.iter().find_map(|(n, e)| match e {
            ProxyEvent::CircuitClosed { circ: c, reason } if *n == node && *c == circ => {
                Some(reason.clone())
            }
            _ => None,
        })
    }

    pub fn router_circuits(&self, i: usize) -> usize {
        self.nodes[&self.order[i]].router.circuits().len()
    }
}

#[allow(clippy::large_enum_variant)]
pub enum Either {
    Cell(NodeId, Cell),
    Need(NodeId),
    Close(NodeId, ProtocolError),
    Proxy(ProxyEvent),
    Router(RouterEvent),
}

pub fn map_proxy(o: ProxyOutput) -> Either {
    match o {
        Output::Cell { peer, cell } => Either::Cell(peer, cell),
        Output::NeedLink { peer } => Either::Need(peer),
        Output::CloseLink { peer, reason } => Either::Close(peer, reason),
        Output::Event(e) => Either::Proxy(e),
    }
}

pub fn map_router(o: RouterOutput) -> Either {
    match o {
        Output::Cell { peer, cell } => Either::Cell(peer, cell),
        Output::NeedLink { peer } => Either::Need(peer),
        Output::CloseLink { peer, reason } => Either::Close(peer, reason),
        Output::Event(e) => Either::Router(e),
    }
}

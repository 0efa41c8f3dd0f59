//! Onion routing at node level: real `Node`s and a real `Rendezvous`, wired by an instant FIFO
//! "network" (fake SDPs carry the endpoint, as in the simulator). Covers a 3-hop circuit whose
//! later hops are linked on demand through the bridge, an echo of 300 KB, backpressure, and
//! malformed or tampered cells closing only the circuit or link concerned.

use onionmesh_crypto::Identity;
use onionmesh_node::{
    CircHandle, CircuitState, ErrorCode, Event, Input, LinkId, Node, NodeConfig, OnionEvent,
    Output, Time,
};
use onionmesh_onion::{owner_of, CellOwner};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use onionmesh_wire::cell::{Cell, CellCmd, CellMsg, CircId, HandshakeType};
use onionmesh_wire::{Frame, LinkMsg, NodeId, SignalMsg};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

enum Msg {
    ToBridge(usize, Vec<u8>),
    ToNode(usize, Vec<u8>),
    Frame((usize, LinkId), Vec<u8>),
    Open((usize, LinkId)),
    Closed((usize, LinkId), String),
    Offer((usize, LinkId)),
    Answer((usize, LinkId)),
}

type Tamper = Box<dyn FnMut(usize, usize, &mut LinkMsg) -> bool>;

struct Net {
    nodes: Vec<Node>,
    bridge: Rendezvous,
    queue: VecDeque<Msg>,
    pairs: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    events: Vec<Vec<Event>>,
    now: Time,
    /// Which nodes get FoundPeer answers (the others only link on demand).
    discover: Vec<bool>,
    /// Called on every link frame `from -> to`; returning false drops it.
    tamper: Option<Tamper>,
}

fn sdp(end: (usize, LinkId)) -> String {
    let fp: Vec<String> = (0..32)
        .map(|i| format!("{:02X}", (i + end.0) as u8))
        .collect();
    format!(
        "v=0\r\na=fingerprint:sha-256 {}\r\na=x-end:{}:{}\r\n",
        fp.join(":"),
        end.0,
        end.1 .0
    )
}

fn end_of(sdp: &str) -> (usize, LinkId) {
    let v = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=x-end:"))
        .unwrap();
    let (n, l) = v.split_once(':').unwrap();
    (n.parse().unwrap(), LinkId(l.parse().unwrap()))
}

impl Net {
    fn new(n: usize, discover: Vec<bool>) -> Net {
        let mut nodes = Vec::new();
        for i in 0..n {
            let identity = Identity::from_seed([i as u8 + 1; 32]).unwrap();
            let mut cfg = NodeConfig::default();
            // This network jumps its clock (`advance`) without carrying keepalives meanwhile.
            cfg.links.keepalive_interval = None;
            let mut node = Node::new(identity, cfg, [i as u8 + 50; 32]);
            node.onion().serve("echo").unwrap();
            nodes.push(node);
        }
        let bridge = Rendezvous::new(
            Identity::from_seed([99; 32]).unwrap(),
            RendezvousConfig::default(),
            [98; 32],
        );
        let mut net = Net {
            nodes,
            bridge,
            queue: VecDeque::new(),
            pairs: BTreeMap::new(),
            events: vec![Vec::new(); n],
            now: Time::from_millis(1_000),
            discover,
            tamper: None,
        };
        for i in 0..n {
            net.bridge
                .handle_input(net.now, RendezvousInput::Opened(ConnId(i as u64)));
            net.drain_bridge();
            net.nodes[i].handle_input(net.now, Input::BridgeOpened);
            net.drain(i);
        }
        net.run();
        net
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].id()
    }

    fn drain_bridge(&mut self) {
        while let Some(o) = self.bridge.poll_output() {
            if let RendezvousOutput::Send { conn, bytes } = o {
                self.queue.push_back(Msg::ToNode(conn.0 as usize, bytes));
            }
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].poll_output() {
            match o {
                Output::SendBridge(b) => self.queue.push_back(Msg::ToBridge(i, b)),
                Output::CreateOffer { link } => self.queue.push_back(Msg::Offer((i, link))),
                Output::CreateAnswer { link, .. } => self.queue.push_back(Msg::Answer((i, link))),
                Output::ApplyAnswer { link, answer } => {
                    let remote = end_of(&answer);
                    self.pairs.insert((i, link), remote);
                    self.pairs.insert(remote, (i, link));
                    self.queue.push_back(Msg::Open((i, link)));
                    self.queue.push_back(Msg::Open(remote));
                }
                Output::SendLink { link, bytes } => {
                    if let Some(&remote) = self.pairs.get(&(i, link)) {
                        let mut bytes = bytes;
                        if let Some(t) = self.tamper.as_mut() {
                            let mut msg = LinkMsg::decode_frame(&bytes).unwrap();
                            if !t(i, remote.0, &mut msg) {
                                continue;
                            }
                            bytes = msg.encode_frame();
                        }
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
                Output::Event(e) => self.events[i].push(e),
                Output::CloseBridge { .. } | Output::ConnectBridge => {}
                // No content is published or fetched here (see tests/ordb.rs).
                Output::Store { .. } => {}
            }
        }
    }

    fn run(&mut self) {
        let mut steps = 0u64;
        while let Some(m) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 50_000_000, "the network never settles");
            let now = self.now;
            let i = match m {
                Msg::ToBridge(i, b) => {
                    let conn = ConnId(i as u64);
                    self.bridge
                        .handle_input(now, RendezvousInput::Frame { conn, bytes: &b });
                    self.drain_bridge();
                    continue;
                }
                Msg::ToNode(i, b) => {
                    let found =
                        matches!(SignalMsg::decode_frame(&b), Ok(SignalMsg::FoundPeer { .. }));
                    if found && !self.discover[i] {
                        continue;
                    }
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

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        for i in 0..self.nodes.len() {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.nodes[i].handle_input(self.now, Input::Timeout);
                self.drain(i);
            }
        }
        self.run();
    }

    fn onion_events(&self, i: usize) -> Vec<OnionEvent> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Onion(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    fn logs(&self, i: usize) -> Vec<String> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Log { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    fn build(&mut self, from: usize, path: &[usize]) -> Result<CircHandle, String> {
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

    fn closed(&self, i: usize, circ: CircHandle) -> Option<(String, String)> {
        self.onion_events(i).into_iter().find_map(|e| match e {
            OnionEvent::CircuitClosed {
                circ: c,
                code,
                reason,
            } if c == circ => Some((code.to_string(), reason)),
            _ => None,
        })
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].linked_peers().contains(&self.id(b))
    }
}

/// Node 0 discovers everyone; 1, 2, 3 only link when a circuit needs it.
fn four() -> Net {
    let net = Net::new(4, vec![true, false, false, false]);
    for i in 1..4 {
        assert!(net.linked(0, i));
    }
    assert!(!net.linked(1, 2) && !net.linked(2, 3));
    net
}

fn echo(net: &mut Net, from: usize, circ: CircHandle, data: &[u8]) -> Vec<u8> {
    let now = net.now;
    let s = net.nodes[from]
        .onion()
        .open_stream(now, circ, "echo")
        .unwrap();
    net.drain(from);
    net.run();
    assert!(net
        .onion_events(from)
        .contains(&OnionEvent::StreamOpened { stream: s }));
    let (mut sent, mut got) = (0, Vec::new());
    let mut short_writes = 0;
    for _ in 0..100_000 {
        let now = net.now;
        if sent < data.len() {
            let n = net.nodes[from]
                .onion()
                .write(now, s, &data[sent..])
                .unwrap();
            if sent + n < data.len() {
                short_writes += 1;
            }
            sent += n;
        }
        got.extend(net.nodes[from].onion().read(now, s, usize::MAX).unwrap());
        net.drain(from);
        net.run();
        if got.len() >= data.len() {
            break;
        }
    }
    assert!(
        short_writes > 0,
        "a big write must be held back (bounded buffers)"
    );
    got
}

#[test]
fn three_hops_linked_on_demand_echo_300k() {
    let mut net = four();
    let circ = net.build(0, &[1, 2, 3]).unwrap();
    // The routers asked the bridge for the links they needed.
    assert!(net.linked(1, 2) && net.linked(2, 3));
    let info = net.nodes[0].circuits();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].state, CircuitState::Built);
    assert_eq!(
        info[0].hops,
        vec![net.id(1).short(), net.id(2).short(), net.id(3).short()]
    );
    // The middle hop sees only its neighbours.
    let mid = net.nodes[2].onion().relayed_circuits();
    assert_eq!(mid[0].hops, vec![net.id(1).short(), net.id(3).short()]);

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 498) as u8).collect();
    let got = echo(&mut net, 0, circ, &data);
    assert!(got == data, "echo differs or is out of order");
    let info = &net.nodes[0].circuits()[0];
    assert_eq!(info.bytes_sent, data.len() as u64);
    assert_eq!(info.bytes_received, data.len() as u64);
}

#[test]
fn automatic_path_obeys_the_rules() {
    let mut net = Net::new(6, vec![true; 6]);
    let now = net.now;
    let (circ, path) = net.nodes[0].onion().build_auto(now, 3).unwrap();
    net.drain(0);
    net.run();
    assert_eq!(path.len(), 3);
    let mut uniq = path.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3, "no node twice");
    assert!(!path.contains(&net.id(0)));
    assert!(net
        .onion_events(0)
        .contains(&OnionEvent::CircuitBuilt { circ }));
    // With one bridge that introduced everyone, the node says it relaxed the bridge rule.
    assert!(net.logs(0).iter().any(|l| l.contains("relaxed")));
}

#[test]
fn unknown_or_unlinked_hops_are_api_errors() {
    let mut net = four();
    let now = net.now;
    let stranger = NodeId([0xab; 20]);
    let path = [net.id(1), stranger];
    let e = net.nodes[0].onion().build(now, &path).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownPeer);
    // Node 1 knows node 0 (from its link certificate) but has no link to 2.
    let (a, b) = (net.id(2), net.id(0));
    let e = net.nodes[1].onion().build(now, &[a, b]);
    assert!(e.is_err());
    let path = [net.id(1), net.id(1)];
    let e = net.nodes[0].onion().build(now, &path).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadPath);
}

#[test]
fn extend2_outside_relay_early_closes_the_circuit_not_the_node() {
    let mut net = four();
    // Rewrite node 0's RELAY_EARLY cells (which carry EXTEND2) to RELAY on their way to node 1.
    net.tamper = Some(Box::new(|from, to, msg| {
        if let (0, 1, LinkMsg::Cell(c)) = (from, to, msg) {
            if c.cmd == CellCmd::RELAY_EARLY {
                c.cmd = CellCmd::RELAY;
            }
        }
        true
    }));
    let now = net.now;
    let path = [net.id(1), net.id(2), net.id(3)];
    let circ = net.nodes[0].onion().build(now, &path).unwrap();
    net.drain(0);
    net.run();
    let (code, reason) = net.closed(0, circ).expect("the circuit must close");
    assert_eq!(code, "DESTROYED", "{reason}");
    assert!(
        net.logs(1).iter().any(|l| l.contains("RELAY_EARLY")),
        "hop 1 logs why: {:?}",
        net.logs(1)
    );
    // Links and nodes are fine: a clean circuit works at once.
    net.tamper = None;
    assert!(net.linked(0, 1));
    net.build(0, &[1, 2, 3]).unwrap();
}

#[test]
fn a_modified_relay_cell_kills_only_its_circuit() {
    let mut net = four();
    let good = net.build(0, &[1, 2, 3]).unwrap();
    let bad = net.build(0, &[1, 3, 2]).unwrap();
    // While the flag is up, flip one body byte of every RELAY cell from node 0 to node 1: the
    // only such cell is the BEGIN of the stream opened on `bad` below.
    let flip = std::rc::Rc::new(std::cell::Cell::new(true));
    let on = flip.clone();
    net.tamper = Some(Box::new(move |from, to, msg| {
        if let (0, 1, LinkMsg::Cell(c)) = (from, to, msg) {
            if c.cmd == CellCmd::RELAY && on.get() {
                c.body[100] ^= 0x01;
            }
        }
        true
    }));
    let now = net.now;
    net.nodes[0].onion().open_stream(now, bad, "echo").unwrap();
    net.drain(0);
    flip.set(false);
    net.run();
    let (code, reason) = net.closed(0, bad).expect("the tampered circuit closes");
    assert_eq!(code, "DESTROYED", "{reason}");
    assert!(
        net.logs(2).iter().any(|l| l.contains("modified")),
        "the last hop logs why: {:?}",
        net.logs(2)
    );
    assert!(net.closed(0, good).is_none(), "the other circuit lives");
    net.tamper = None;
    let data = vec![7u8; 100_000];
    assert_eq!(echo(&mut net, 0, good, &data), data);
}

#[test]
fn link_level_garbage_closes_that_link_only() {
    let (id0, id1) = (
        Identity::from_seed([1; 32]).unwrap().id(),
        Identity::from_seed([2; 32]).unwrap().id(),
    );
    // Circuit 0 that is not padding.
    let zero = Cell::new(
        CircId(0),
        &CellMsg::Destroy(onionmesh_onion::DestroyReason::REQUESTED),
    );
    // CREATE2 with an id from node 0's own half of the id space.
    let wrong = (1..=u16::MAX)
        .map(CircId)
        .find(|id| owner_of(id0, id1, *id) == CellOwner::Proxy)
        .unwrap();
    let create = Cell::new(
        wrong,
        &CellMsg::Create2 {
            htype: HandshakeType::NTOR_K256,
            hdata: vec![0; 65].try_into().unwrap(),
        },
    );
    let mut short_cell = LinkMsg::Cell(Box::new(zero.clone())).encode_frame();
    short_cell.truncate(short_cell.len() - 10);
    let cases = [
        ("circuit zero", LinkMsg::Cell(Box::new(zero)).encode_frame()),
        (
            "wrong id space",
            LinkMsg::Cell(Box::new(create)).encode_frame(),
        ),
        ("short cell", short_cell),
    ];
    for (what, frame) in cases {
        let mut net = four();
        assert_eq!(net.id(0), id0);
        // Node 0's end of its link to node 1.
        let l0 = net
            .pairs
            .iter()
            .find(|((n, _), (m, _))| *n == 0 && *m == 1)
            .map(|((_, l), _)| *l)
            .unwrap();
        let now = net.now;
        net.nodes[0].handle_input(
            now,
            Input::LinkFrame {
                link: l0,
                bytes: &frame,
            },
        );
        net.drain(0);
        net.run();
        assert!(!net.linked(0, 1), "{what}: the link to the offender closes");
        assert!(
            net.linked(0, 2) && net.linked(0, 3),
            "{what}: other links stay"
        );
        assert!(
            net.logs(0).iter().any(|l| l.contains("closing the link")),
            "{what}: a logged reason: {:?}",
            net.logs(0)
        );
        // The node still builds circuits through its other peers.
        net.build(0, &[2, 1, 3]).unwrap();
    }
}

#[test]
fn idle_circuits_time_out_and_destroy_travels() {
    let mut net = four();
    let circ = net.build(0, &[1, 2, 3]).unwrap();
    assert_eq!(net.nodes[3].onion().relayed_circuits().len(), 1);
    net.advance(Duration::from_secs(601));
    assert_eq!(
        net.closed(0, circ).map(|c| c.0),
        Some("TIMEOUT".to_string())
    );
    net.run();
    for i in 1..4 {
        assert!(
            net.nodes[i].onion().relayed_circuits().is_empty(),
            "hop {i} dropped it"
        );
    }
    // DESTROY travelled hop by hop; the links under the circuit stay up.
    assert!(net.linked(0, 1) && net.linked(1, 2) && net.linked(2, 3));
}

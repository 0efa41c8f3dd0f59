//! Onion routing at node level: real `Node`s and a real `Rendezvous` on the shared instant FIFO
//! network of `onionmesh_node::testing`. Covers a 3-hop circuit whose
//! later hops are linked on demand through the bridge, an echo of 300 KB, backpressure, and
//! malformed or tampered cells closing only the circuit or link concerned.

use onionmesh_node::testing::{Net, NetConfig};
use onionmesh_node::{CircHandle, CircuitState, ErrorCode, Input, OnionEvent};
use onionmesh_onion::{owner_of, CellOwner};
use onionmesh_wire::cell::{Cell, CellCmd, CellMsg, CircId, HandshakeType};
use onionmesh_wire::{Frame, LinkMsg, NodeId};
use std::time::Duration;

/// Node 0 links to everyone; 1, 2, 3 get no peers from the bridge and only link when a circuit
/// needs it.
fn four() -> Net {
    let mut cfg = NetConfig::new(4);
    cfg.undiscovering = vec![1, 2, 3];
    // `idle_circuits_time_out_and_destroy_travels` jumps the clock in one step, without
    // carrying keepalives meanwhile.
    cfg.node.links.keepalive_interval = None;
    let mut net = Net::with(cfg);
    for i in 1..4 {
        net.connect(0, i).unwrap();
    }
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
    assert_eq!(info[0].hops, vec![net.id(1), net.id(2), net.id(3)]);
    // The middle hop sees only its neighbours.
    let mid = net.nodes[2].onion().relayed_circuits();
    assert_eq!(mid[0].hops, vec![net.id(1), net.id(3)]);

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 498) as u8).collect();
    let got = echo(&mut net, 0, circ, &data);
    assert!(got == data, "echo differs or is out of order");
    let info = &net.nodes[0].circuits()[0];
    assert_eq!(info.bytes_sent, data.len() as u64);
    assert_eq!(info.bytes_received, data.len() as u64);
}

#[test]
fn automatic_path_obeys_the_rules() {
    let mut net = Net::new(6);
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
    let (id0, id1) = {
        let net = four();
        (net.id(0), net.id(1))
    };
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
        let l0 = net.link_end(0, 1).unwrap();
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
    net.tick(Duration::from_secs(601));
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

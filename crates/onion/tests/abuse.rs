//! A hand-driven client against a router, and a hand-driven router against a proxy: every kind
//! of malformed or unexpected cell ends the circuit (or the link) with a typed reason, and the
//! router stays responsive. Also the resource caps.

use onionmesh_onion::*;
use onionmesh_wire::cell::{
    field, Cell, CellBody, CellCmd, CellMsg, CircId, HandshakeType, RelayCell, RelayMsg, BODY_LEN,
};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Duration;

const T0: Time = Time::from_millis(50_000);

fn router_with(cfg: RouterConfig) -> (OnionRouter, HopSpec) {
    let key = OnionKey::from_seed([9; 32]).unwrap();
    let hop = HopSpec {
        id: key.public().node_id(),
        onion_key: *key.public(),
    };
    let mut r = OnionRouter::new(hop.id, key, cfg, [3; 32]);
    r.register_service("echo").unwrap();
    (r, hop)
}

fn outs(r: &mut OnionRouter) -> Vec<RouterOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// A client node whose circuit ids are in its own half of the space.
struct Raw {
    me: NodeId,
    circ: CircId,
    crypto: ProxyCrypto,
}

fn client_id(n: u8) -> NodeId {
    NodeId([n; 20])
}

fn circ_for(me: NodeId, router: NodeId, low: u16) -> CircId {
    CircId(if me > router { 0x8000 | low } else { low })
}

fn create(
    r: &mut OnionRouter,
    hop: &HopSpec,
    me: NodeId,
    low: u16,
) -> Result<Raw, Vec<RouterOutput>> {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(low));
    let (hs, skin) = ClientHandshake::new(&mut rng, hop.id, &hop.onion_key);
    let circ = circ_for(me, hop.id, low);
    let cell = Cell::new(
        circ,
        &CellMsg::Create2 {
            htype: HandshakeType::NTOR_K256,
            hdata: skin.into(),
        },
    );
    r.handle_cell(T0, me, cell);
    let o = outs(r);
    for out in &o {
        if let Output::Cell { cell, .. } = out {
            if let Ok(CellMsg::Created2 { hdata }) = cell.msg() {
                let keys = hs.finish(&hdata).unwrap();
                let mut crypto = ProxyCrypto::new();
                crypto.add_hop(&keys);
                return Ok(Raw { me, circ, crypto });
            }
        }
    }
    Err(o)
}

impl Raw {
    fn body(&mut self, msg: RelayMsg, stream: u16) -> CellBody {
        let mut body = RelayCell::new(StreamId(stream), msg).encode();
        self.crypto.originate(0, &mut body);
        body
    }

    fn send(&mut self, r: &mut OnionRouter, msg: CellMsg) -> Vec<RouterOutput> {
        r.handle_cell(T0, self.me, Cell::new(self.circ, &msg));
        outs(r)
    }

    fn relay(&mut self, r: &mut OnionRouter, msg: RelayMsg, stream: u16) -> Vec<RouterOutput> {
        let body = self.body(msg, stream);
        self.send(r, CellMsg::Relay(body))
    }

    fn early(&mut self, r: &mut OnionRouter, msg: RelayMsg) -> Vec<RouterOutput> {
        let body = self.body(msg, 0);
        self.send(r, CellMsg::RelayEarly(body))
    }
}

/// The circuit was closed for `want`, and a DESTROY went back to the client.
fn assert_closed(o: &[RouterOutput], want: CloseReason) {
    let closed = o.iter().find_map(|x| match x {
        Output::Event(RouterEvent::CircuitClosed { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(closed, Some(want.clone()), "outputs: {o:?}");
    let destroy = o.iter().any(|x| {
        matches!(x, Output::Cell { cell, .. }
            if cell.msg() == Ok(CellMsg::Destroy(want.destroy_reason())))
    });
    assert!(destroy, "no DESTROY sent back: {o:?}");
}

fn refused(o: &[RouterOutput]) -> Option<DestroyReason> {
    o.iter().find_map(|x| match x {
        Output::Event(RouterEvent::CreateRefused { reason, .. }) => Some(*reason),
        _ => None,
    })
}

fn proto(e: ProtocolError) -> CloseReason {
    CloseReason::Protocol(e)
}

#[test]
fn link_level_garbage_closes_the_link() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let me = client_id(1);
    // A relay cell on circuit 0.
    r.handle_cell(T0, me, Cell::new(CircId(0), &CellMsg::Relay([0; BODY_LEN])));
    assert_eq!(
        outs(&mut r),
        vec![Output::CloseLink {
            peer: me,
            reason: ProtocolError::CircuitZero
        }]
    );
    // Padding on circuit 0 is fine.
    r.handle_cell(T0, me, Cell::new(CircId(0), &CellMsg::Padding));
    assert!(outs(&mut r).is_empty());
    // CREATE2 with an id from the router's half.
    let wrong = CircId(if me > hop.id { 1 } else { 0x8001 });
    r.handle_cell(
        T0,
        me,
        Cell::new(
            wrong,
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                hdata: vec![0; 86].try_into().unwrap(),
            },
        ),
    );
    assert_eq!(
        outs(&mut r),
        vec![Output::CloseLink {
            peer: me,
            reason: ProtocolError::WrongIdSpace
        }]
    );
    // CREATE2 on a circuit id already in use.
    let mut raw = create(&mut r, &hop, me, 5).unwrap();
    let o = raw.send(
        &mut r,
        CellMsg::Create2 {
            htype: HandshakeType::NTOR_K256,
            hdata: vec![0; 86].try_into().unwrap(),
        },
    );
    assert_eq!(
        o,
        vec![Output::CloseLink {
            peer: me,
            reason: ProtocolError::DuplicateCircuit
        }]
    );
    // An unknown link command is ignored, and the circuit lives on.
    let o = raw.send(
        &mut r,
        CellMsg::Unrecognized {
            cmd: 0x99,
            body: [1; BODY_LEN],
        },
    );
    assert!(o.is_empty());
    assert!(raw.relay(&mut r, RelayMsg::Drop, 0).is_empty());
}

#[test]
fn bad_create2_is_refused_with_a_reason() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let me = client_id(1);
    let circ = circ_for(me, hop.id, 9);
    // hlen larger than the body.
    let mut body = [0u8; BODY_LEN];
    body[2..4].copy_from_slice(&600u16.to_be_bytes());
    r.handle_cell(
        T0,
        me,
        Cell {
            circ_id: circ,
            cmd: CellCmd::CREATE2,
            body,
        },
    );
    let o = outs(&mut r);
    assert_eq!(refused(&o), Some(DestroyReason::PROTOCOL));
    assert!(o.iter().any(|x| matches!(x, Output::Cell { cell, .. }
        if cell.circ_id == circ && cell.msg() == Ok(CellMsg::Destroy(DestroyReason::PROTOCOL)))));
    // Wrong onionskin length, unknown handshake type.
    for (htype, len) in [(HandshakeType::NTOR_K256, 10), (HandshakeType(2), 86)] {
        r.handle_cell(
            T0,
            me,
            Cell::new(
                circ,
                &CellMsg::Create2 {
                    htype,
                    hdata: vec![0; len].try_into().unwrap(),
                },
            ),
        );
        assert_eq!(refused(&outs(&mut r)), Some(DestroyReason::PROTOCOL));
    }
    // An onionskin for another router key.
    let other = OnionKey::from_seed([10; 32]).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (_, skin) = ClientHandshake::new(&mut rng, hop.id, other.public());
    r.handle_cell(
        T0,
        me,
        Cell::new(
            circ,
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                hdata: skin.into(),
            },
        ),
    );
    assert_eq!(refused(&outs(&mut r)), Some(DestroyReason::OR_IDENTITY));
    // Still responsive.
    assert!(create(&mut r, &hop, me, 10).is_ok());
}

#[test]
fn extend2_outside_relay_early_closes_the_circuit() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    let extend = RelayMsg::Extend2 {
        target: client_id(2),
        htype: HandshakeType::NTOR_K256,
        hdata: vec![0; 86].try_into().unwrap(),
    };
    let o = raw.relay(&mut r, extend, 0);
    assert_closed(&o, proto(ProtocolError::ExtendNotEarly));
    assert!(r.circuits().is_empty());
}

#[test]
fn a_ninth_relay_early_closes_the_circuit() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    for _ in 0..MAX_RELAY_EARLY {
        assert!(raw.early(&mut r, RelayMsg::Drop).is_empty());
    }
    let o = raw.early(&mut r, RelayMsg::Drop);
    assert_closed(&o, proto(ProtocolError::TooManyRelayEarly));
}

#[test]
fn bad_relay_lengths_close_the_circuit() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    let mut body =
        RelayCell::new(StreamId(1), RelayMsg::Data(vec![1; 10].try_into().unwrap())).encode();
    body[field::LENGTH].copy_from_slice(&499u16.to_be_bytes());
    raw.crypto.originate(0, &mut body);
    let o = raw.send(&mut r, CellMsg::Relay(body));
    assert_closed(
        &o,
        proto(ProtocolError::Malformed(
            onionmesh_wire::WireError::LengthTooLarge { len: 499, max: 498 },
        )),
    );
    // A well-formed length with a body its command cannot parse (END needs its reason byte).
    let mut raw = create(&mut r, &hop, client_id(1), 2).unwrap();
    let mut body = RelayCell::new(StreamId(1), RelayMsg::End(EndReason::DONE)).encode();
    body[field::LENGTH].copy_from_slice(&0u16.to_be_bytes());
    raw.crypto.originate(0, &mut body);
    let o = raw.send(&mut r, CellMsg::Relay(body));
    assert!(matches!(
        o.iter().find_map(|x| match x {
            Output::Event(RouterEvent::CircuitClosed { reason, .. }) => Some(reason.clone()),
            _ => None,
        }),
        Some(CloseReason::Protocol(ProtocolError::Malformed(_)))
    ));
}

#[test]
fn wrong_digest_replay_and_garbage_close_the_circuit() {
    let (mut r, hop) = router_with(RouterConfig::default());
    // Garbage body.
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    let o = raw.send(&mut r, CellMsg::Relay([0x5a; BODY_LEN]));
    assert_closed(&o, proto(ProtocolError::Unrecognized));
    // One flipped bit.
    let mut raw = create(&mut r, &hop, client_id(1), 2).unwrap();
    let mut body = raw.body(RelayMsg::Drop, 0);
    body[300] ^= 0x10;
    let o = raw.send(&mut r, CellMsg::Relay(body));
    assert_closed(&o, proto(ProtocolError::Unrecognized));
    // Replay.
    let mut raw = create(&mut r, &hop, client_id(1), 3).unwrap();
    let body = raw.body(RelayMsg::Drop, 0);
    assert!(raw.send(&mut r, CellMsg::Relay(body)).is_empty());
    let o = raw.send(&mut r, CellMsg::Relay(body));
    assert_closed(&o, proto(ProtocolError::Unrecognized));
    // Reorder.
    let mut raw = create(&mut r, &hop, client_id(1), 4).unwrap();
    let first = raw.body(RelayMsg::Drop, 0);
    let second = raw.body(RelayMsg::Drop, 0);
    let o = raw.send(&mut r, CellMsg::Relay(second));
    assert_closed(&o, proto(ProtocolError::Unrecognized));
    let _ = first;
    // A backward-only message travelling forward.
    let mut raw = create(&mut r, &hop, client_id(1), 5).unwrap();
    let o = raw.relay(&mut r, RelayMsg::Connected, 1);
    assert!(matches!(
        o.iter().find_map(|x| match x {
            Output::Event(RouterEvent::CircuitClosed { reason, .. }) => Some(reason.clone()),
            _ => None,
        }),
        Some(CloseReason::Protocol(ProtocolError::Unexpected(_)))
    ));
}

#[test]
fn forged_sendme_and_window_overrun_close_the_circuit() {
    let (mut r, hop) = router_with(RouterConfig::default());
    // A circuit SENDME acknowledging nothing, with a made-up tag.
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    let o = raw.relay(&mut r, RelayMsg::Sendme { tag: Some([7; 20]) }, 0);
    assert_closed(&o, proto(ProtocolError::BadSendme));

    // More DATA than the stream window, to a service that does not read.
    let mut raw = create(&mut r, &hop, client_id(1), 2).unwrap();
    let o = raw.relay(
        &mut r,
        RelayMsg::Begin {
            service: "echo".try_into().unwrap(),
        },
        1,
    );
    assert!(o
        .iter()
        .any(|x| matches!(x, Output::Event(RouterEvent::StreamOpened { .. }))));
    for i in 0..500 {
        let o = raw.relay(&mut r, RelayMsg::Data(vec![1; 498].try_into().unwrap()), 1);
        assert!(
            !o.iter()
                .any(|x| matches!(x, Output::Event(RouterEvent::CircuitClosed { .. }))),
            "closed at cell {i}"
        );
    }
    let o = raw.relay(&mut r, RelayMsg::Data(vec![1; 498].try_into().unwrap()), 1);
    assert_closed(&o, proto(ProtocolError::WindowExceeded));
}

#[test]
fn begin_to_an_unknown_service_ends_the_stream_only() {
    let (mut r, hop) = router_with(RouterConfig::default());
    let mut raw = create(&mut r, &hop, client_id(1), 1).unwrap();
    let o = raw.relay(
        &mut r,
        RelayMsg::Begin {
            service: "nope".try_into().unwrap(),
        },
        4,
    );
    // One relay cell back (END), no closure.
    assert_eq!(o.len(), 1);
    let Output::Cell { cell, .. } = &o[0] else {
        panic!("{o:?}")
    };
    let CellMsg::Relay(mut body) = cell.msg().unwrap() else {
        panic!()
    };
    assert!(raw.crypto.receive(&mut body).is_some());
    assert_eq!(
        RelayCell::decode(&body).unwrap().msg,
        RelayMsg::End(EndReason::NO_SUCH_SERVICE)
    );
    assert_eq!(r.circuits().len(), 1);
}

#[test]
fn caps_answer_resourcelimit_and_the_router_stays_responsive() {
    // Per-link circuit cap.
    let (mut r, hop) = router_with(RouterConfig {
        max_circuits_per_link: 2,
        ..RouterConfig::default()
    });
    let me = client_id(1);
    let mut a = create(&mut r, &hop, me, 1).unwrap();
    let _b = create(&mut r, &hop, me, 2).unwrap();
    let o = create(&mut r, &hop, me, 3).err().unwrap();
    assert_eq!(refused(&o), Some(DestroyReason::RESOURCELIMIT));
    assert!(o.iter().any(|x| matches!(x, Output::Cell { cell, .. }
        if cell.msg() == Ok(CellMsg::Destroy(DestroyReason::RESOURCELIMIT)))));
    // Another link is not affected, and existing circuits still work.
    assert!(create(&mut r, &hop, client_id(2), 1).is_ok());
    assert!(a.relay(&mut r, RelayMsg::Drop, 0).is_empty());

    // CREATE2 rate per link: burst 3, then 1 per second.
    let (mut r, hop) = router_with(RouterConfig {
        create_burst: 3,
        create_per_sec: 1,
        ..RouterConfig::default()
    });
    for low in 1..=3 {
        assert!(create(&mut r, &hop, me, low).is_ok());
    }
    let o = create(&mut r, &hop, me, 4).err().unwrap();
    assert_eq!(refused(&o), Some(DestroyReason::RESOURCELIMIT));
    // A second later, one more.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (_, skin) = ClientHandshake::new(&mut rng, hop.id, &hop.onion_key);
    r.handle_cell(
        T0 + Duration::from_secs(1),
        me,
        Cell::new(
            circ_for(me, hop.id, 5),
            &CellMsg::Create2 {
                htype: HandshakeType::NTOR_K256,
                hdata: skin.into(),
            },
        ),
    );
    let o = outs(&mut r);
    assert!(refused(&o).is_none(), "{o:?}");

    // Total circuit cap.
    let (mut r, hop) = router_with(RouterConfig {
        max_circuits: 1,
        ..RouterConfig::default()
    });
    assert!(create(&mut r, &hop, me, 1).is_ok());
    let o = create(&mut r, &hop, client_id(3), 1).err().unwrap();
    assert_eq!(refused(&o), Some(DestroyReason::RESOURCELIMIT));
}

// ----- a hand-driven router against the proxy ---------------------------------------------------

fn proxy_and_first_cell() -> (OnionProxy, HopSpec, OnionKey, Cell) {
    let key = OnionKey::from_seed([9; 32]).unwrap();
    let hop = HopSpec {
        id: key.public().node_id(),
        onion_key: *key.public(),
    };
    let mut p = OnionProxy::new(client_id(1), ProxyConfig::default(), [4; 32]);
    p.build_circuit(T0, &[hop]).unwrap();
    let Some(Output::Cell { cell, .. }) = p.poll_output() else {
        panic!("no CREATE2")
    };
    (p, hop, key, cell)
}

fn proxy_closed(p: &mut OnionProxy) -> Option<CloseReason> {
    std::iter::from_fn(|| p.poll_output()).find_map(|o| match o {
        Output::Event(ProxyEvent::CircuitClosed { reason, .. }) => Some(reason),
        _ => None,
    })
}

#[test]
fn proxy_refuses_forged_created2() {
    let (mut p, hop, _, create) = proxy_and_first_cell();
    let mut reply = [0u8; 65];
    reply[0] = 2;
    reply[1..33].copy_from_slice(&hop.onion_key.to_bytes()[1..]);
    p.handle_cell(
        T0,
        hop.id,
        Cell::new(
            create.circ_id,
            &CellMsg::Created2 {
                hdata: reply.into(),
            },
        ),
    );
    assert!(matches!(
        proxy_closed(&mut p),
        Some(CloseReason::Handshake(_))
    ));
}

#[test]
fn proxy_closes_on_inbound_relay_early_and_on_unrecognized_cells() {
    for early in [true, false] {
        let (mut p, hop, key, create) = proxy_and_first_cell();
        let CellMsg::Create2 { hdata, .. } = create.msg().unwrap() else {
            panic!()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (reply, _) = server_handshake(&mut rng, hop.id, &key, &hdata).unwrap();
        p.handle_cell(
            T0,
            hop.id,
            Cell::new(
                create.circ_id,
                &CellMsg::Created2 {
                    hdata: reply.into(),
                },
            ),
        );
        assert!(std::iter::from_fn(|| p.poll_output())
            .any(|o| matches!(o, Output::Event(ProxyEvent::CircuitBuilt { .. }))));
        let msg = if early {
            CellMsg::RelayEarly([3; BODY_LEN])
        } else {
            CellMsg::Relay([3; BODY_LEN])
        };
        p.handle_cell(T0, hop.id, Cell::new(create.circ_id, &msg));
        let want = if early {
            ProtocolError::InboundRelayEarly
        } else {
            ProtocolError::Unrecognized
        };
        assert_eq!(proxy_closed(&mut p), Some(CloseReason::Protocol(want)));
    }
}

//! Bad input closes the connection or link concerned, with a reason, and nothing else.

use onionmesh_crypto::{hello, Identity};
use onionmesh_node::{
    ConnId, Event, LinkState, Node, NodeConfig, Output, Rendezvous, RendezvousConfig,
    RendezvousOutput, Time,
};
use onionmesh_wire::{Frame, LinkMsg, SignalMsg};

const UNIX: u64 = 1_700_000_000_000;

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

fn hello_frame(id: &Identity, ts: u64) -> Vec<u8> {
    SignalMsg::Hello {
        pubkey: id.public_key(),
        timestamp_ms: ts,
        sig: hello::sign(id, ts),
    }
    .encode_frame()
}

fn drain(r: &mut Rendezvous) -> Vec<RendezvousOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn closed(outs: &[RendezvousOutput], conn: ConnId) -> Option<String> {
    outs.iter().find_map(|o| match o {
        RendezvousOutput::Close { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn rendezvous_closes_only_the_offender() {
    let mut r = Rendezvous::new(identity(1), RendezvousConfig::default());
    let good = identity(2);
    r.handle_connected(Time::ZERO, ConnId(1));
    r.handle_frame(Time::ZERO, UNIX, ConnId(1), &hello_frame(&good, UNIX));
    assert!(matches!(
        drain(&mut r).last(),
        Some(RendezvousOutput::Send { .. })
    ));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef]),
        (
            "truncated hello",
            hello_frame(&identity(3), UNIX)[..50].to_vec(),
        ),
        ("empty", vec![]),
        ("oversized", vec![0x12; 40_000]),
        (
            "find before hello",
            SignalMsg::FindPeer {
                id: good.id(),
                pubkey: good.public_key(),
            }
            .encode_frame(),
        ),
        ("stale hello", hello_frame(&identity(4), UNIX - 3_600_000)),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        let conn = ConnId(10 + n as u64);
        r.handle_connected(Time::ZERO, conn);
        r.handle_frame(Time::ZERO, UNIX, conn, &bytes);
        let outs = drain(&mut r);
        assert!(
            closed(&outs, conn).is_some(),
            "{what} must close its connection"
        );
        assert!(closed(&outs, ConnId(1)).is_none());
    }
    // The good peer is still registered and served.
    assert_eq!(r.registered_peers(), 1);
    r.handle_frame(
        Time::ZERO,
        UNIX,
        ConnId(1),
        &SignalMsg::FindPeer {
            id: good.id(),
            pubkey: good.public_key(),
        }
        .encode_frame(),
    );
    let outs = drain(&mut r);
    let RendezvousOutput::Send { bytes, .. } = &outs[0] else {
        panic!("expected an answer")
    };
    assert!(matches!(
        SignalMsg::decode_frame(bytes),
        Ok(SignalMsg::FoundPeer { .. })
    ));
}

#[test]
fn rendezvous_rate_limits_and_refuses_duplicates_and_silence() {
    let cfg = RendezvousConfig {
        frames_per_sec: 10,
        burst: 5,
        ..RendezvousConfig::default()
    };
    let mut r = Rendezvous::new(identity(1), cfg);
    let a = identity(2);
    r.handle_connected(Time::ZERO, ConnId(1));
    r.handle_frame(Time::ZERO, UNIX, ConnId(1), &hello_frame(&a, UNIX));
    let find = SignalMsg::FindPeer {
        id: a.id(),
        pubkey: a.public_key(),
    }
    .encode_frame();
    let mut reason = None;
    for _ in 0..20 {
        r.handle_frame(Time::ZERO, UNIX, ConnId(1), &find);
        if let Some(why) = closed(&drain(&mut r), ConnId(1)) {
            reason = Some(why);
            break;
        }
    }
    assert!(reason.unwrap().contains("rate limit"));

    // The same ID twice.
    r.handle_connected(Time::ZERO, ConnId(2));
    r.handle_frame(Time::ZERO, UNIX, ConnId(2), &hello_frame(&a, UNIX));
    r.handle_connected(Time::ZERO, ConnId(3));
    r.handle_frame(Time::ZERO, UNIX, ConnId(3), &hello_frame(&a, UNIX));
    assert!(closed(&drain(&mut r), ConnId(3))
        .unwrap()
        .contains("already connected"));

    // Silence.
    r.handle_connected(Time::ZERO, ConnId(4));
    let deadline = r.poll_timeout().unwrap();
    r.handle_timeout(deadline);
    assert!(closed(&drain(&mut r), ConnId(4))
        .unwrap()
        .contains("no hello"));
    assert_eq!(r.registered_peers(), 1);
}

/// Walks two nodes through an introduction by hand, up to an open channel.
fn linked_pair() -> (Node, Node, onionmesh_node::LinkId, onionmesh_node::LinkId) {
    let sdp = |fp: u8| {
        format!(
            "v=0\r\na=fingerprint:sha-256 {}\r\n",
            vec![format!("{fp:02X}"); 32].join(":")
        )
    };
    let mut a = Node::new(identity(10), NodeConfig::default(), [1; 32]);
    let mut b = Node::new(identity(11), NodeConfig::default(), [2; 32]);
    let now = Time::ZERO;
    let found = SignalMsg::FoundPeer {
        peers: vec![onionmesh_wire::PeerRecord {
            id: b.id(),
            pubkey: b.public_key(),
            bridge: String::new(),
        }],
    };
    a.handle_input(now, Input::BridgeFrame(&found.encode_frame()));
    let la = std::iter::from_fn(|| a.poll_output())
        .find_map(|o| match o {
            Output::CreateOffer { link } => Some(link),
            _ => None,
        })
        .unwrap();
    a.handle_input(
        now,
        Input::OfferReady {
            link: la,
            sdp: sdp(0xaa),
        },
    );
    let Some(Output::SendBridge(intro)) =
        std::iter::from_fn(|| a.poll_output()).find(|o| matches!(o, Output::SendBridge(_)))
    else {
        panic!()
    };
    let Ok(SignalMsg::Introduce {
        session,
        sdp: offer,
        ..
    }) = SignalMsg::decode_frame(&intro)
    else {
        panic!()
    };
    b.handle_input(
        now,
        Input::BridgeFrame(
            &SignalMsg::Introduce {
                peer: a.id(),
                session,
                sdp: offer,
            }
            .encode_frame(),
        ),
    );
    let lb = std::iter::from_fn(|| b.poll_output())
        .find_map(|o| match o {
            Output::CreateAnswer { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    b.handle_input(
        now,
        Input::AnswerReady {
            link: lb,
            sdp: sdp(0xbb),
        },
    );
    while b.poll_output().is_some() {}
    a.handle_input(
        now,
        Input::BridgeFrame(
            &SignalMsg::Introduced {
                peer: b.id(),
                session,
                sdp: sdp(0xbb),
            }
            .encode_frame(),
        ),
    );
    while a.poll_output().is_some() {}
    (a, b, la, lb)
}

fn sends(n: &mut Node) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| n.poll_output())
        .filter_map(|o| match o {
            Output::SendLink { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_by_hand_then_malformed_frames_close_the_link_only() {
    let (mut a, mut b, la, lb) = linked_pair();
    let now = Time::ZERO;
    a.handle_input(now, Input::LinkOpened { link: la });
    b.handle_input(now, Input::LinkOpened { link: lb });
    // Exchange nonces, then certs.
    for f in sends(&mut a) {
        b.handle_input(
            now,
            Input::LinkFrame {
                link: lb,
                bytes: &f,
            },
        );
    }
    for f in sends(&mut b) {
        a.handle_input(
            now,
            Input::LinkFrame {
                link: la,
                bytes: &f,
            },
        );
    }
    for f in sends(&mut a) {
        b.handle_input(
            now,
            Input::LinkFrame {
                link: lb,
                bytes: &f,
            },
        );
    }
    for f in sends(&mut b) {
        a.handle_input(
            now,
            Input::LinkFrame {
                link: la,
                bytes: &f,
            },
        );
    }
    assert_eq!(a.linked_peers(), vec![b.id()]);
    assert_eq!(b.linked_peers(), vec![a.id()]);

    a.link(b.id()).send(now, b"ping").unwrap();
    for f in sends(&mut a) {
        b.handle_input(
            now,
            Input::LinkFrame {
                link: lb,
                bytes: &f,
            },
        );
    }
    let got: Vec<_> = std::iter::from_fn(|| b.poll_output()).collect();
    assert!(got.contains(&Output::Event(Event::Message {
        from: a.id(),
        data: b"ping".to_vec()
    })));

    // A truncated frame: the link closes with a reason, the node carries on.
    b.handle_input(
        now,
        Input::LinkFrame {
            link: lb,
            bytes: &LinkMsg::Data(vec![1; 10]).encode_frame()[..6],
        },
    );
    let outs: Vec<_> = std::iter::from_fn(|| b.poll_output()).collect();
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::CloseLink { reason, .. } if reason.to_string().contains("malformed"))));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::Peer {
            state: LinkState::Closed,
            ..
        })
    )));
    assert!(b.linked_peers().is_empty());
    assert_eq!(
        b.link(a.id()).send(now, b"x").unwrap_err().code(),
        ErrorCode::NotLinked
    );
}

#[test]
fn data_before_authentication_is_a_violation() {
    let (mut a, _b, la, _lb) = linked_pair();
    a.handle_input(Time::ZERO, Input::LinkOpened { link: la });
    while a.poll_output().is_some() {}
    a.handle_input(
        Time::ZERO,
        Input::LinkFrame {
            link: la,
            bytes: &LinkMsg::Data(b"sneaky".to_vec()).encode_frame(),
        },
    );
    let outs: Vec<_> = std::iter::from_fn(|| a.poll_output()).collect();
    assert!(outs.iter().any(|o| matches!(o, Output::CloseLink { reason, .. } if reason.to_string().contains("data before authentication"))));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Message { .. }))));
}

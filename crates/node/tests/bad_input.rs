//! Bad input closes the connection or link concerned, with a reason, and nothing else.
//! (The rendezvous' own bad-input tests moved to `onionmesh-rendezvous` with it.)

use onionmesh_crypto::Identity;
use onionmesh_node::{ErrorCode, Event, Input, LinkState, Node, NodeConfig, Output, Time};
use onionmesh_wire::{Frame, LinkMsg, SignalMsg};

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
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
            bridge: None,
        }]
        .try_into()
        .unwrap(),
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
                sdp: sdp(0xbb).try_into().unwrap(),
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
            bytes: &LinkMsg::Data(vec![1; 10].try_into().unwrap()).encode_frame()[..6],
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
            bytes: &LinkMsg::Data(b"sneaky".to_vec().try_into().unwrap()).encode_frame(),
        },
    );
    let outs: Vec<_> = std::iter::from_fn(|| a.poll_output()).collect();
    assert!(outs.iter().any(|o| matches!(o, Output::CloseLink { reason, .. } if reason.to_string().contains("data before authentication"))));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Message { .. }))));
}

/// Issue 11, case 3: a peer whose page is gone without a close (crashed, frozen) goes silent;
/// the keepalive notices within 5 s, the link closes with a sentence, and sends then fail with
/// a code instead of vanishing. A peer that only sends keepalives stays linked.
#[test]
fn a_silent_peer_is_dropped_by_the_keepalive_within_5_s() {
    let (mut a, mut b, la, lb) = linked_pair();
    let t0 = Time::ZERO;
    a.handle_input(t0, Input::LinkOpened { link: la });
    b.handle_input(t0, Input::LinkOpened { link: lb });
    let mut t = t0;
    // The handshake, then ten quiet seconds in which both sides answer each other's keepalives.
    for round in 0..12 {
        if round >= 2 {
            t = t + std::time::Duration::from_secs(1);
            a.handle_input(t, Input::Timeout);
            b.handle_input(t, Input::Timeout);
        }
        for f in sends(&mut a) {
            b.handle_input(
                t,
                Input::LinkFrame {
                    link: lb,
                    bytes: &f,
                },
            );
        }
        for f in sends(&mut b) {
            a.handle_input(
                t,
                Input::LinkFrame {
                    link: la,
                    bytes: &f,
                },
            );
        }
    }
    assert_eq!(
        a.linked_peers(),
        vec![b.id()],
        "a quiet but live peer stays linked"
    );
    // Now b's page freezes: nothing more arrives from it.
    let frozen_at = t;
    let mut closed_after = None;
    while closed_after.is_none() {
        t = a.poll_timeout().expect("a keepalive deadline is armed");
        a.handle_input(t, Input::Timeout);
        for o in std::iter::from_fn(|| a.poll_output()) {
            if let Output::CloseLink { reason, .. } = o {
                assert_eq!(reason.code(), ErrorCode::Timeout);
                assert!(reason.to_string().contains("went silent"), "{reason}");
                closed_after = Some(t.since(frozen_at));
            }
        }
        assert!(
            t.since(frozen_at) <= 6_000,
            "still linked 6 s after the peer froze"
        );
    }
    assert!(
        closed_after.unwrap() <= 5_000,
        "noticed after {closed_after:?} ms"
    );
    assert!(a.linked_peers().is_empty());
    assert_eq!(
        a.link(b.id()).send(t, b"are you there").unwrap_err().code(),
        ErrorCode::NotLinked
    );
}

//! The node's DHT against bad input: malformed frames, STOREs with wrong tokens, floods of
//! FIND and of relay requests, and a bridge that keeps handing out far peers. Every case is
//! refused or rate-limited, logged, and leaves the node (and its links) running.

use onionmesh_crypto::Identity;
use onionmesh_node::testing::{link, outputs, registered, TEST_BRIDGE_ADDR as BRIDGE_ADDR};
use onionmesh_node::{DhtEvent, Event, Input, LogLevel, Output, Time};
use onionmesh_wire::kad::{Contact, KadErrorCode, KadMsg, Provider, TOKEN_LEN};
use onionmesh_wire::{Frame, LinkMsg, NodeId, PeerRecord, SignalMsg};

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

fn warnings(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(Event::Log {
                level: LogLevel::Warn,
                text,
            }) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn bridge_frames(outs: &[Output]) -> Vec<SignalMsg> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendBridge(b) => SignalMsg::decode_frame(b).ok(),
            _ => None,
        })
        .collect()
}

fn kad_from(from: &Identity, msg: &KadMsg) -> Vec<u8> {
    SignalMsg::KadFrom {
        peer: from.id(),
        pubkey: from.public_key(),
        bridge: None,
        bytes: msg.encode_frame().try_into().unwrap(),
    }
    .encode_frame()
}

#[test]
fn malformed_kad_frames_are_logged_and_the_node_carries_on() {
    let bridge = identity(100);
    let mut n = registered(1, &bridge);
    let peer = identity(2);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x03, 1, 2, 3],
        vec![0x77; 40],
        vec![0x07; 2000],
    ];
    for bytes in cases {
        let frame = SignalMsg::KadFrom {
            peer: peer.id(),
            pubkey: peer.public_key(),
            bridge: None,
            bytes: bytes.try_into().unwrap(),
        }
        .encode_frame();
        n.handle_input(Time::ZERO, Input::BridgeFrame(&frame));
        let outs = outputs(&mut n);
        assert!(
            warnings(&outs).iter().any(|w| w.contains("DHT: refused")),
            "{outs:?}"
        );
        assert!(!outs.iter().any(|o| matches!(o, Output::CloseBridge { .. })));
    }
    // A frame whose sender's ID is not the hash of the key it claims.
    let frame = SignalMsg::KadFrom {
        peer: NodeId([9; 20]),
        pubkey: peer.public_key(),
        bridge: None,
        bytes: KadMsg::Ping { rid: 1 }.encode_frame().try_into().unwrap(),
    }
    .encode_frame();
    n.handle_input(Time::ZERO, Input::BridgeFrame(&frame));
    let outs = outputs(&mut n);
    assert!(warnings(&outs).iter().any(|w| w.contains("not the hash")));
    assert!(
        bridge_frames(&outs).is_empty(),
        "no answer to a bad contact"
    );
    assert_eq!(n.dht().stats().rejected, 5);
}

#[test]
fn store_with_a_wrong_or_missing_token_is_refused() {
    let bridge = identity(100);
    let mut n = registered(3, &bridge);
    let peer = identity(4);
    let provider = Provider {
        contact: Contact {
            id: peer.id(),
            pubkey: peer.public_key(),
            bridge: Some(BRIDGE_ADDR.try_into().unwrap()),
            introducers: Default::default(),
        },
        ttl_secs: 600,
    };
    let store = KadMsg::Store {
        rid: 11,
        key: NodeId([5; 20]),
        token: [0xaa; TOKEN_LEN],
        provider,
    };
    n.handle_input(Time::ZERO, Input::BridgeFrame(&kad_from(&peer, &store)));
    let outs = outputs(&mut n);
    let answer = bridge_frames(&outs)
        .into_iter()
        .find_map(|m| match m {
            SignalMsg::KadTo { peer: to, bytes } if to == peer.id() => {
                KadMsg::decode_frame(&bytes).ok()
            }
            _ => None,
        })
        .expect("an answer through the bridge");
    assert!(matches!(
        answer,
        KadMsg::Error { rid: 11, code, .. } if code == KadErrorCode::BAD_TOKEN
    ));
    assert!(warnings(&outs).iter().any(|w| w.contains("token")));
    assert_eq!(n.kad().store().keys(), 0, "nothing stored");
}

#[test]
fn a_flood_of_find_requests_is_rate_limited() {
    let bridge = identity(100);
    let mut n = registered(5, &bridge);
    let peer = identity(6);
    let mut answered = 0;
    let mut limited_logs = 0;
    for rid in 0..500u64 {
        let find = KadMsg::FindNode {
            rid,
            target: NodeId([1; 20]),
        };
        n.handle_input(Time::ZERO, Input::BridgeFrame(&kad_from(&peer, &find)));
        let outs = outputs(&mut n);
        answered += bridge_frames(&outs).len();
        limited_logs += warnings(&outs)
            .iter()
            .filter(|w| w.contains("too many requests"))
            .count();
    }
    assert!(answered <= 64, "answered {answered} of 500");
    assert_eq!(limited_logs, 1, "one log line per burst");
    // After a pause the peer is served again.
    let find = KadMsg::FindNode {
        rid: 9999,
        target: NodeId([1; 20]),
    };
    n.handle_input(
        Time::from_millis(10_000),
        Input::BridgeFrame(&kad_from(&peer, &find)),
    );
    assert_eq!(bridge_frames(&outputs(&mut n)).len(), 1);
}

#[test]
fn relay_requests_are_checked_and_rate_limited_per_link() {
    let bridge = identity(100);
    let (mut a, mut i) = (registered(7, &bridge), registered(8, &bridge));
    let mut x = registered(9, &bridge);
    let now = Time::from_millis(1);
    let (la, li_a) = link(&mut a, &mut i, now);
    let (_li_x, _lx) = link(&mut i, &mut x, now);
    outputs(&mut a);
    outputs(&mut i);
    outputs(&mut x);

    // A valid relay request is passed on with the sender's authenticated key.
    let ping = KadMsg::Ping { rid: 1 }.encode_frame();
    let relay = LinkMsg::Relay {
        to: x.id(),
        bytes: ping.clone().try_into().unwrap(),
    };
    i.handle_input(
        now,
        Input::LinkFrame {
            link: li_a,
            bytes: &relay.encode_frame(),
        },
    );
    let outs = outputs(&mut i);
    let relayed: Vec<LinkMsg> = outs
        .iter()
        .filter_map(|o| match o {
            Output::SendLink { bytes, .. } => LinkMsg::decode_frame(bytes).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        relayed,
        vec![LinkMsg::Relayed {
            from: a.id(),
            pubkey: a.public_key(),
            bytes: ping.clone().try_into().unwrap()
        }]
    );

    // Not a Kademlia frame: refused and logged, the link stays.
    i.handle_input(
        now,
        Input::LinkFrame {
            link: li_a,
            bytes: &LinkMsg::Relay {
                to: x.id(),
                bytes: vec![0x03, 1, 2].try_into().unwrap(),
            }
            .encode_frame(),
        },
    );
    let outs = outputs(&mut i);
    assert!(warnings(&outs)
        .iter()
        .any(|w| w.contains("not a Kademlia frame")));
    assert!(!outs.iter().any(|o| matches!(o, Output::CloseLink { .. })));

    // To a node the introducer has no link to: the frame comes straight back.
    let stranger = identity(50).id();
    i.handle_input(
        now,
        Input::LinkFrame {
            link: li_a,
            bytes: &LinkMsg::Relay {
                to: stranger,
                bytes: ping.clone().try_into().unwrap(),
            }
            .encode_frame(),
        },
    );
    let back = outputs(&mut i)
        .into_iter()
        .find_map(|o| match o {
            Output::SendLink { link, bytes } if link == li_a => LinkMsg::decode_frame(&bytes).ok(),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        back,
        LinkMsg::RelayFailed {
            to: stranger,
            bytes: ping.clone().try_into().unwrap()
        }
    );

    // A flood: at most the burst is relayed, the rest refused with a bounded number of logs.
    let mut passed = 0;
    let mut logs = 0;
    for _ in 0..1000 {
        i.handle_input(
            now,
            Input::LinkFrame {
                link: li_a,
                bytes: &relay.encode_frame(),
            },
        );
        let outs = outputs(&mut i);
        passed += outs
            .iter()
            .filter(|o| matches!(o, Output::SendLink { .. }))
            .count();
        logs += warnings(&outs).len();
        assert!(!outs.iter().any(|o| matches!(o, Output::CloseLink { .. })));
    }
    assert!(passed <= 60, "relayed {passed} of 1000");
    assert!(logs <= 60, "{logs} log lines for one flood");
    let _ = la;
}

#[test]
fn a_bridge_that_keeps_returning_far_peers_is_reported() {
    let bridge = identity(100);
    let mut n = registered(11, &bridge);
    let me = n.id();
    // Keys whose IDs sit in the far half of the ID space from ours (first bit differs).
    let far: Vec<Identity> = (1u8..=255)
        .map(identity)
        .filter(|id| (id.id().0[0] ^ me.0[0]) & 0x80 != 0)
        .take(6)
        .collect();
    let answer = SignalMsg::FoundPeer {
        peers: far
            .iter()
            .map(|id| PeerRecord {
                id: id.id(),
                pubkey: id.public_key(),
                bridge: Some("ws://other-bridge.test/ws".try_into().unwrap()),
            })
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
    };
    let mut suspected = Vec::new();
    let mut logs = Vec::new();
    for _ in 0..3 {
        n.handle_input(Time::ZERO, Input::BridgeFrame(&answer.encode_frame()));
        let outs = outputs(&mut n);
        logs.extend(warnings(&outs));
        suspected.extend(outs.into_iter().filter_map(|o| match o {
            Output::Event(Event::Dht(DhtEvent::SuspectBridge {
                bridge,
                alternatives,
                ..
            })) => Some((bridge, alternatives)),
            _ => None,
        }));
    }
    assert_eq!(n.dht().stats().far_answers, 3);
    assert_eq!(
        suspected,
        vec![(
            BRIDGE_ADDR.to_owned(),
            vec!["ws://other-bridge.test/ws".to_owned()]
        )]
    );
    assert!(logs.iter().any(|l| l.contains("far from our ID")
        && l.contains("asking the DHT through peers of ws://other-bridge.test/ws")));
}

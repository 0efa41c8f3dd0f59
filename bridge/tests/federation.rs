//! Federated bridges and the bridge's DHT node, end to end: two real `onionmesh-bridge`
//! processes started with `--peer-bridge`, real WebSocket clients.

mod common;

use common::{Bridge, Client, PATIENCE};
use onionmesh_crypto::{hello, node_id, Identity};
use onionmesh_wire::kad::{Contact, KadErrorCode, KadMsg, Provider};
use onionmesh_wire::{BoundedVec, Frame, NodeId, PeerRecord, SignalMsg};
use tokio_tungstenite::tungstenite::Message;

const MALFORMED: u16 = 1;
const RATE_LIMITED: u16 = 2;
const PROTOCOL: u16 = 5;

/// Two bridges, the second started with `--peer-bridge` pointing at the first.
async fn federated_pair() -> (Bridge, Bridge) {
    let b1 = Bridge::start(&[]);
    let peer = format!("ws://{}", b1.addr);
    let b2 = Bridge::start(&["--peer-bridge", &peer]);
    b1.wait_for_log(&["federated with bridge"]).await;
    b2.wait_for_log(&["federated with bridge"]).await;
    (b1, b2)
}

/// Registers and returns the client with its bridge's DHT ID (from the Welcome key).
async fn registered_with_bridge_id(bridge: &Bridge, seed: u8) -> (Client, NodeId) {
    let mut c = Client::connect(bridge, seed).await;
    c.send_raw(Message::Binary(c.hello_frame().into())).await;
    let SignalMsg::Welcome { bridge_pubkey, .. } = c.recv().await else {
        panic!("expected Welcome")
    };
    let SignalMsg::BridgeInfo { addr } = c.recv().await else {
        panic!("expected BridgeInfo")
    };
    assert_eq!(
        addr.as_str(),
        bridge.ws_url(),
        "the bridge advertises its ws:// address"
    );
    (c, node_id(&bridge_pubkey))
}

/// Waits until `c`'s FindPeer names `who`; returns that record.
async fn wait_for_record(c: &mut Client, who: NodeId) -> PeerRecord {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(r) = c.find_peer(who).await.into_iter().find(|p| p.id == who) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "never listed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The next frame that is not a FoundPeer.
async fn next_signal(c: &mut Client) -> SignalMsg {
    loop {
        match c.recv().await {
            SignalMsg::FoundPeer { .. } => {}
            other => return other,
        }
    }
}

#[tokio::test]
async fn find_peer_spans_federated_bridges_and_introductions_cross_them() {
    let (b1, b2) = federated_pair().await;
    let mut a = Client::registered(&b1, 1).await;
    let mut x = Client::registered(&b2, 2).await;

    // DB_FIND_PEER at bridge 2 names the peer of bridge 1, tagged with bridge 1's address.
    let rec = wait_for_record(&mut x, a.id()).await;
    assert_eq!(rec.bridge.as_deref(), Some(b1.ws_url().as_str()));
    assert_eq!(rec.pubkey, a.identity.public_key());
    // And the other way round.
    let rec = wait_for_record(&mut a, x.id()).await;
    assert_eq!(rec.bridge.as_deref(), Some(b2.ws_url().as_str()));

    // INTRODUCE / INTRODUCED are relayed bridge to bridge.
    x.send(&SignalMsg::Introduce {
        peer: a.id(),
        session: 77,
        sdp: "offer-sdp".try_into().unwrap(),
    })
    .await;
    match next_signal(&mut a).await {
        SignalMsg::Introduce { peer, session, sdp } => {
            assert_eq!((peer, session, sdp.as_str()), (x.id(), 77, "offer-sdp"))
        }
        other => panic!("expected Introduce, got {other:?}"),
    }
    a.send(&SignalMsg::Introduced {
        peer: x.id(),
        session: 77,
        sdp: "answer-sdp".try_into().unwrap(),
    })
    .await;
    match next_signal(&mut x).await {
        SignalMsg::Introduced { peer, session, sdp } => {
            assert_eq!((peer, session, sdp.as_str()), (a.id(), 77, "answer-sdp"))
        }
        other => panic!("expected Introduced, got {other:?}"),
    }

    // A DHT frame for a peer of the other bridge is forwarded, naming the sender's bridge.
    let ping = KadMsg::Ping { rid: 5 }.encode_frame();
    x.send(&SignalMsg::KadTo {
        peer: a.id(),
        bytes: ping.clone().try_into().unwrap(),
    })
    .await;
    match next_signal(&mut a).await {
        SignalMsg::KadFrom {
            peer,
            pubkey,
            bridge,
            bytes,
        } => {
            assert_eq!(peer, x.id());
            assert_eq!(pubkey, x.identity.public_key());
            assert_eq!(bridge.as_deref(), Some(b2.ws_url().as_str()));
            assert_eq!(bytes, ping);
        }
        other => panic!("expected KadFrom, got {other:?}"),
    }

    // A peer that leaves bridge 1 disappears from bridge 2's answers.
    a.close().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while x
        .find_peer(NodeId([0; 20]))
        .await
        .iter()
        .any(|p| p.bridge.is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the peer is still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn bridges_are_dht_nodes_and_reach_each_other() {
    let (b1, b2) = federated_pair().await;
    let (mut x, b2_id) = registered_with_bridge_id(&b2, 3).await;
    // Bridge 2's DHT node answers a FIND_NODE, and knows bridge 1's DHT node (they bootstrapped
    // from each other over the federation link).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        x.send(&SignalMsg::KadTo {
            peer: b2_id,
            bytes: KadMsg::FindNode {
                rid: 9,
                target: NodeId([0; 20]),
            }
            .encode_frame()
            .try_into()
            .unwrap(),
        })
        .await;
        let SignalMsg::KadFrom { peer, bytes, .. } = next_signal(&mut x).await else {
            panic!("expected KadFrom")
        };
        assert_eq!(peer, b2_id);
        let KadMsg::Nodes {
            rid: 9, contacts, ..
        } = KadMsg::decode_frame(&bytes).unwrap()
        else {
            panic!("expected Nodes")
        };
        if contacts
            .iter()
            .any(|c| c.bridge.as_deref() == Some(b1.ws_url().as_str()))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bridge 1 unknown");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_dht_input_is_refused_and_logged_without_closing() {
    let bridge = Bridge::start(&[]);
    let (mut c, bridge_id) = registered_with_bridge_id(&bridge, 4).await;

    // A malformed Kademlia frame: logged, nothing sent back, the connection stays.
    c.send(&SignalMsg::KadTo {
        peer: bridge_id,
        bytes: vec![0x03, 1, 2].try_into().unwrap(),
    })
    .await;
    bridge
        .wait_for_log(&["WARN", "DHT: refused a message", "malformed"])
        .await;

    // A STORE with a token the bridge never issued: refused with BAD_TOKEN, and logged.
    let me = Contact {
        id: c.id(),
        pubkey: c.identity.public_key(),
        bridge: None,
        introducers: Default::default(),
    };
    c.send(&SignalMsg::KadTo {
        peer: bridge_id,
        bytes: KadMsg::Store {
            rid: 1,
            key: NodeId([7; 20]),
            token: [0; onionmesh_wire::kad::TOKEN_LEN],
            provider: Provider {
                contact: me,
                ttl_secs: 60,
            },
        }
        .encode_frame()
        .try_into()
        .unwrap(),
    })
    .await;
    match next_signal(&mut c).await {
        SignalMsg::KadFrom { bytes, .. } => match KadMsg::decode_frame(&bytes).unwrap() {
            KadMsg::Error { code, .. } => assert_eq!(code, KadErrorCode::BAD_TOKEN),
            other => panic!("expected an Error, got {other:?}"),
        },
        other => panic!("expected KadFrom, got {other:?}"),
    }
    bridge.wait_for_log(&["WARN", "token"]).await;

    // A flood of FIND_NODE within the connection's frame budget: the DHT answers the first
    // ones and drops the rest unanswered, logging it once.
    for rid in 0..100u64 {
        c.send(&SignalMsg::KadTo {
            peer: bridge_id,
            bytes: KadMsg::FindNode {
                rid,
                target: NodeId([1; 20]),
            }
            .encode_frame()
            .try_into()
            .unwrap(),
        })
        .await;
    }
    bridge.wait_for_log(&["WARN", "too many requests"]).await;
    // Still registered and served (after the answers to the flood).
    let (id, pubkey) = (c.id(), c.identity.public_key());
    c.send(&SignalMsg::FindPeer { id, pubkey }).await;
    loop {
        match c.recv().await {
            SignalMsg::KadFrom { .. } => {}
            SignalMsg::FoundPeer { peers } => {
                assert!(peers.is_empty());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // A flood beyond the frame budget closes only that connection.
    let mut other = Client::registered(&bridge, 5).await;
    for rid in 0..400u64 {
        if !c
            .try_send_raw(Message::Binary(
                SignalMsg::KadTo {
                    peer: bridge_id,
                    bytes: KadMsg::Ping { rid }.encode_frame().try_into().unwrap(),
                }
                .encode_frame()
                .into(),
            ))
            .await
        {
            break;
        }
    }
    let ending = c.expect_closed().await;
    assert_eq!(ending.error.map(|e| e.0), Some(RATE_LIMITED));
    let oid = other.id();
    assert!(other.find_peer(oid).await.is_empty());
}

#[tokio::test]
async fn a_lying_bridge_is_cut_off() {
    let bridge = Bridge::start(&[]);
    let fake = Identity::from_seed([9; 32]).unwrap();
    // A bridge challenges the bridge it talks to, then signs that bridge's challenge.
    let hello_msg = |id: &Identity, c: &Client| SignalMsg::BridgeHello {
        pubkey: id.public_key(),
        challenge: c.challenge,
        sig: hello::sign(id, &c.challenge),
        addr: "ws://fake.invalid/ws".try_into().unwrap(),
    };
    let challenge = SignalMsg::Challenge { nonce: [5; 32] };

    // A record whose ID is not the hash of its key.
    let mut c = Client::connect(&bridge, 9).await;
    c.send(&challenge).await;
    c.send(&hello_msg(&fake, &c)).await;
    assert!(matches!(c.recv().await, SignalMsg::BridgeHello { .. }));
    c.send(&SignalMsg::PeersJoined {
        peers: BoundedVec::one(PeerRecord {
            id: NodeId([1; 20]),
            pubkey: [2; 33],
            bridge: None,
        }),
    })
    .await;
    let ending = c.expect_closed().await;
    assert_eq!(ending.error.map(|e| e.0), Some(PROTOCOL));

    // A Federate wrapping garbage, or a kind that is never forwarded.
    for inner in [
        vec![0xde, 0xad],
        SignalMsg::FindPeer {
            id: NodeId([1; 20]),
            pubkey: [2; 33],
        }
        .encode_frame(),
    ] {
        let mut c = Client::connect(&bridge, 9).await;
        c.send(&challenge).await;
        c.send(&hello_msg(&fake, &c)).await;
        assert!(matches!(c.recv().await, SignalMsg::BridgeHello { .. }));
        c.send(&SignalMsg::Federate {
            to: NodeId([3; 20]),
            inner: inner.try_into().unwrap(),
        })
        .await;
        let ending = c.expect_closed().await;
        let code = ending.error.map(|e| e.0);
        assert!(
            code == Some(MALFORMED) || code == Some(PROTOCOL),
            "{code:?}"
        );
    }

    // A node may not speak bridge-to-bridge.
    let mut n = Client::registered(&bridge, 10).await;
    n.send(&SignalMsg::PeersLeft {
        ids: BoundedVec::empty(),
    })
    .await;
    let ending = n.expect_closed().await;
    assert_eq!(ending.error.map(|e| e.0), Some(PROTOCOL));

    // The bridge still serves.
    let mut ok = Client::registered(&bridge, 11).await;
    let id = ok.id();
    ok.find_peer(id).await;
}

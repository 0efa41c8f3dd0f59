//! Introducers in DHT answers: a node names itself the first introducer of the contacts it is
//! linked to, and a node that remembers an introducer's refusal (`RelayFailed`) forgets it as
//! soon as that introducer's answer says it is linked to the node now, instead of sending
//! through the bridge until the refusal expires.

use onionmesh_crypto::Identity;
use onionmesh_node::testing::{link, outputs, registered};
use onionmesh_node::{Input, LinkId, Node, Output, Time};
use onionmesh_wire::kad::{Contact, Contacts, Introducers, KadMsg, TOKEN_LEN};
use onionmesh_wire::{Frame, LinkMsg, NodeId, PeerRecord, SignalMsg};
use std::time::Duration;

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

/// The Kademlia frames `n` sent on `on`, and those it sent through the bridge to `to`.
fn sent(n: &mut Node, on: LinkId, to: NodeId) -> (Vec<LinkMsg>, usize) {
    let mut on_link = Vec::new();
    let mut via_bridge = 0;
    for o in outputs(n) {
        match o {
            Output::SendLink { link, bytes } if link == on => {
                on_link.extend(LinkMsg::decode_frame(&bytes).ok());
            }
            Output::SendBridge(b) => {
                if let Ok(SignalMsg::KadTo { peer, .. }) = SignalMsg::decode_frame(&b) {
                    via_bridge += usize::from(peer == to);
                }
            }
            _ => {}
        }
    }
    (on_link, via_bridge)
}

/// A frame from the peer on `link` (an answer of i's, here), its outputs dropped.
fn answer(n: &mut Node, link: LinkId, at: Time, frame: &[u8]) {
    n.handle_input(at, Input::LinkFrame { link, bytes: frame });
    outputs(n);
}

/// `n` looks `target` up: what it sent on `on`, and how many frames to `target` went through the
/// bridge ([`sent`]).
fn look_up(n: &mut Node, on: LinkId, at: Time, target: NodeId) -> (Vec<LinkMsg>, usize) {
    n.dht().find_node(at, target).unwrap();
    sent(n, on, target)
}

fn relayed_to(msgs: &[LinkMsg], to: NodeId) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, LinkMsg::Relay { to: t, .. } if *t == to))
        .count()
}

/// `i`'s answer to a `FindNode` for `target` from the node on `from`, through the link.
fn ask(i: &mut Node, from: LinkId, target: NodeId, now: Time) -> Vec<Contact> {
    outputs(i);
    let q = KadMsg::FindNode { rid: 9, target }.encode_frame();
    i.handle_input(
        now,
        Input::LinkFrame {
            link: from,
            bytes: &LinkMsg::Kad(q.try_into().unwrap()).encode_frame(),
        },
    );
    outputs(i)
        .into_iter()
        .find_map(|o| match o {
            Output::SendLink { link, bytes } if link == from => match LinkMsg::decode_frame(&bytes)
            {
                Ok(LinkMsg::Kad(k)) => match KadMsg::decode_frame(&k) {
                    Ok(KadMsg::Nodes { contacts, .. }) => Some(contacts.to_vec()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .expect("a Nodes answer")
}

#[test]
fn an_answer_names_its_sender_introducer_of_the_contacts_it_is_linked_to() {
    let bridge = identity(100);
    let now = Time::ZERO;
    let (mut a, mut i, mut b) = (
        registered(1, &bridge),
        registered(2, &bridge),
        registered(3, &bridge),
    );
    let (_, li_a) = link(&mut a, &mut i, now);
    let (li_b, _) = link(&mut i, &mut b, now);
    let named = ask(&mut i, li_a, b.id(), now);
    let c = named.iter().find(|c| c.id == b.id()).expect("b is named");
    assert_eq!(c.introducers.first(), Some(&i.id()), "{c:?}");
    // Not for a contact it has no link to: a is the asker and is left out; i's own link to a
    // does not make a an entry.
    assert!(named.iter().all(|c| c.id != a.id()));

    // Once the link to b is gone, the answer names b without the mark.
    i.link(b.id()).disconnect("test: drop the link");
    let _ = li_b;
    assert!(!i.linked_peers().contains(&b.id()));
    let later = now + Duration::from_secs(1);
    let named = ask(&mut i, li_a, b.id(), later);
    if let Some(c) = named.iter().find(|c| c.id == b.id()) {
        assert!(!c.introducers.contains(&i.id()), "{c:?}");
    }
}

#[test]
fn a_refusal_is_forgotten_when_the_introducer_says_it_is_linked_now() {
    let bridge = identity(100);
    let now = Time::ZERO;
    let mut a = registered(1, &bridge);
    let mut i = registered(2, &bridge);
    let b = identity(3);
    let (la_i, _) = link(&mut a, &mut i, now);
    // a knows b from the bridge, and i names b in an answer: a hint that i may introduce b.
    a.handle_input(
        now,
        Input::BridgeFrame(
            &SignalMsg::FoundPeer {
                peers: vec![PeerRecord {
                    id: b.id(),
                    pubkey: b.public_key(),
                    bridge: None,
                }]
                .try_into()
                .unwrap(),
            }
            .encode_frame(),
        ),
    );
    let nodes = |introducers: Vec<NodeId>| {
        let c = Contact {
            id: b.id(),
            pubkey: b.public_key(),
            bridge: None,
            introducers: Introducers::new(introducers).unwrap(),
        };
        LinkMsg::Kad(
            KadMsg::Nodes {
                rid: 77,
                token: [0; TOKEN_LEN],
                contacts: Contacts::new(vec![c]).unwrap(),
            }
            .encode_frame()
            .try_into()
            .unwrap(),
        )
        .encode_frame()
    };
    answer(&mut a, la_i, now, &nodes(Vec::new()));

    // The first lookup of b goes through i, which answers that it has no link to b.
    let (msgs, _) = look_up(&mut a, la_i, now, b.id());
    let relay = msgs
        .into_iter()
        .find_map(|m| match m {
            LinkMsg::Relay { to, bytes } if to == b.id() => Some(bytes),
            _ => None,
        })
        .expect("the frame for b went through i");
    a.handle_input(
        now,
        Input::LinkFrame {
            link: la_i,
            bytes: &LinkMsg::RelayFailed {
                to: b.id(),
                bytes: relay,
            }
            .encode_frame(),
        },
    );
    let (_, bridge_sends) = sent(&mut a, la_i, b.id());
    assert_eq!(
        bridge_sends, 1,
        "after the refusal, the frame went through the bridge"
    );

    // Within the refusal's memory, a hint without the mark changes nothing.
    let t1 = now + Duration::from_secs(2);
    answer(&mut a, la_i, t1, &nodes(Vec::new()));
    let (msgs, bridge_sends) = look_up(&mut a, la_i, t1, b.id());
    assert_eq!(
        (relayed_to(&msgs, b.id()), bridge_sends),
        (0, 1),
        "i is still remembered as unable to introduce b"
    );

    // i's answer now names itself b's introducer: it has linked to b since. The next frame
    // for b goes through i at once.
    let t2 = now + Duration::from_secs(4);
    answer(&mut a, la_i, t2, &nodes(vec![i.id()]));
    let (msgs, bridge_sends) = look_up(&mut a, la_i, t2, b.id());
    assert_eq!((relayed_to(&msgs, b.id()), bridge_sends), (1, 0));
}

//! The rule of a publication round, driven by hand: the `k` closest nodes that answered the
//! lookup are asked to STORE; an unanswered STORE is sent again (new request id, timeout
//! doubled) up to `store_attempts` times; a node that refuses or stays silent is replaced by the
//! next closest node that answered; the round reports success only when it holds as many
//! holders as it wanted, and says why not otherwise.

use onionmesh_kad::sim::test_contact;
use onionmesh_kad::{Kad, KadConfig, KadEvent, Output, PublishError, Time};
use onionmesh_wire::kad::{Contact, KadErrorCode, KadMsg};
use onionmesh_wire::{Frame, NodeId};
use std::time::Duration;

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn drain(k: &mut Kad) -> Vec<Output> {
    std::iter::from_fn(|| k.poll_output()).collect()
}

fn sent(outs: &[Output]) -> Vec<(NodeId, KadMsg)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes } => Some((to.id, KadMsg::decode_frame(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

fn published(outs: &[Output]) -> Option<(usize, usize, Option<PublishError>)> {
    outs.iter().find_map(|o| match o {
        Output::Event(KadEvent::Published {
            holders,
            attempted,
            error,
            ..
        }) => Some((*holders, *attempted, error.clone())),
        _ => None,
    })
}

/// The request `k` sent to `to`, among `outs`.
fn to_peer(outs: &[Output], to: &Contact) -> KadMsg {
    let all: Vec<KadMsg> = sent(outs)
        .into_iter()
        .filter(|(id, _)| *id == to.id)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(all.len(), 1, "one request to {}: {all:?}", to.id);
    all.into_iter().next().unwrap()
}

struct Round {
    k: Kad,
    near: [Contact; 2],
    far: [Contact; 2],
    now: Time,
    /// The STOREs of the first wave, by peer.
    stores: Vec<(NodeId, KadMsg)>,
}

/// A publisher with `k = 2` that knows two far nodes; they name the two near ones, and all four
/// answer the lookup 100 ms after being asked. Returns once the first STOREs are out.
fn round() -> Round {
    let key = NodeId([0x42; 20]);
    let mut all: Vec<Contact> = (10..14).map(test_contact).collect();
    all.sort_by_key(|c| c.id.distance(&key));
    let near = [all[0].clone(), all[1].clone()];
    let far = [all[2].clone(), all[3].clone()];
    let mut cfg = KadConfig::default();
    cfg.lookup.k = 2;
    let mut k = Kad::new(test_contact(1), cfg, [1; 32], ms(0)).unwrap();
    for c in &far {
        k.add_contact(ms(0), c).unwrap();
    }
    k.publish(ms(0), key).unwrap();
    let outs = drain(&mut k);
    let mut now = ms(100);
    let q = to_peer(&outs, &far[0]);
    let answer = KadMsg::Nodes {
        rid: q.rid().unwrap(),
        token: [1; 16],
        contacts: near.to_vec().try_into().unwrap(),
    };
    k.handle_message(now, &far[0], &answer.encode_frame());
    let q = to_peer(&outs, &far[1]);
    let answer = KadMsg::Nodes {
        rid: q.rid().unwrap(),
        token: [2; 16],
        contacts: Default::default(),
    };
    k.handle_message(now, &far[1], &answer.encode_frame());
    let outs = drain(&mut k);
    now = ms(200);
    for (i, c) in near.iter().enumerate() {
        let q = to_peer(&outs, c);
        assert!(matches!(q, KadMsg::FindNode { .. }));
        let answer = KadMsg::Nodes {
            rid: q.rid().unwrap(),
            token: [3 + i as u8; 16],
            contacts: Default::default(),
        };
        k.handle_message(now, c, &answer.encode_frame());
    }
    let outs = drain(&mut k);
    let stores = sent(&outs);
    Round {
        k,
        near,
        far,
        now,
        stores,
    }
}

fn store_rid(stores: &[(NodeId, KadMsg)], to: &Contact) -> u64 {
    match stores.iter().find(|(id, _)| *id == to.id) {
        Some((_, KadMsg::Store { rid, .. })) => *rid,
        other => panic!("no STORE to {}: {other:?}", to.id),
    }
}

#[test]
fn a_refusing_holder_is_replaced_and_a_silent_one_is_retried_then_replaced() {
    let Round {
        mut k,
        near,
        far,
        mut now,
        stores,
    } = round();
    // The first wave goes to the two closest only.
    assert_eq!(stores.len(), 2, "{stores:?}");
    let ok = KadMsg::StoreOk {
        rid: store_rid(&stores, &near[0]),
    };
    k.handle_message(now, &near[0], &ok.encode_frame());
    let full = KadMsg::Error {
        rid: store_rid(&stores, &near[1]),
        code: KadErrorCode::STORE_FULL,
        reason: "full".try_into().unwrap(),
    };
    k.handle_message(now, &near[1], &full.encode_frame());
    // near[1] refused: the closest spare (far[0]) is asked instead.
    let outs = drain(&mut k);
    let mut rids = vec![store_rid(&sent(&outs), &far[0])];
    // far[0] stays silent: tried three times in all, each after a longer wait.
    let mut waits = Vec::new();
    for _ in 0..2 {
        let t = k.poll_timeout().unwrap();
        waits.push(t.since(now));
        now = t;
        k.handle_timeout(now);
        let outs = drain(&mut k);
        rids.push(store_rid(&sent(&outs), &far[0]));
    }
    assert!(waits[1] == 2 * waits[0], "backed off: {waits:?}");
    assert!(waits[0] >= 300 && waits[0] < 1_000, "adaptive: {waits:?}");
    rids.dedup();
    assert_eq!(rids.len(), 3, "a new request each time");
    // The third try goes unanswered too: far[0] is given up, far[1] is asked.
    let t = k.poll_timeout().unwrap();
    now = t;
    k.handle_timeout(now);
    let outs = drain(&mut k);
    assert!(published(&outs).is_none(), "not over yet");
    let ok = KadMsg::StoreOk {
        rid: store_rid(&sent(&outs), &far[1]),
    };
    k.handle_message(now, &far[1], &ok.encode_frame());
    let outs = drain(&mut k);
    assert_eq!(
        published(&outs),
        Some((2, 4, None)),
        "2 holders of 2 wanted"
    );
    // A late answer of the silent node is dropped quietly.
    let late = KadMsg::StoreOk { rid: rids[0] };
    k.handle_message(
        now + Duration::from_millis(1),
        &far[0],
        &late.encode_frame(),
    );
    assert!(drain(&mut k).is_empty());
}

#[test]
fn a_round_short_of_holders_fails_with_a_code() {
    let Round {
        mut k,
        near,
        far,
        now,
        stores,
    } = round();
    let ok = KadMsg::StoreOk {
        rid: store_rid(&stores, &near[0]),
    };
    k.handle_message(now, &near[0], &ok.encode_frame());
    // Everyone else refuses.
    let refuse = |k: &mut Kad, to: &Contact, rid: u64| {
        let no = KadMsg::Error {
            rid,
            code: KadErrorCode::STORE_FULL,
            reason: "full".try_into().unwrap(),
        };
        k.handle_message(now, to, &no.encode_frame());
        drain(k)
    };
    let outs = refuse(&mut k, &near[1], store_rid(&stores, &near[1]));
    let outs = refuse(&mut k, &far[0], store_rid(&sent(&outs), &far[0]));
    let outs = refuse(&mut k, &far[1], store_rid(&sent(&outs), &far[1]));
    let (holders, attempted, error) = published(&outs).expect("the round ended");
    assert_eq!((holders, attempted), (1, 4));
    let error = error.expect("1 of 2 is not success");
    assert_eq!(
        error,
        PublishError::Incomplete {
            holders: 1,
            wanted: 2
        }
    );
    assert_eq!(error.code(), "PUBLISH_INCOMPLETE");
}

mod every_round_ends {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever the peers do (answer, refuse, stay silent, be unroutable) and however few
        /// requests may be pending, a round ends with exactly one `Published`, and reports
        /// success exactly when it holds as many holders as it wanted.
        #[test]
        fn exactly_one_honest_outcome(
            peers in 0usize..12,
            max_pending in 1usize..24,
            store_attempts in 1u8..4,
            fates in proptest::collection::vec(0u8..7, 0..400),
        ) {
            let cfg = KadConfig {
                max_pending,
                store_attempts,
                ..KadConfig::default()
            };
            let mut k = Kad::new(test_contact(1), cfg, [1; 32], ms(0)).unwrap();
            let contacts: Vec<Contact> = (100..100 + peers as u64).map(test_contact).collect();
            for c in &contacts {
                k.add_contact(ms(0), c).unwrap();
            }
            k.publish(ms(0), NodeId([0x42; 20])).unwrap();
            let mut now = ms(0);
            let mut fate = fates.into_iter().chain(std::iter::repeat(0));
            let mut outcomes = Vec::new();
            let mut outs = drain(&mut k);
            // Five virtual minutes: well past any round, before the first republication.
            while now < ms(5 * 60 * 1000) {
                if let Some(p) = published(&outs) {
                    outcomes.push(p);
                }
                let mut answers = Vec::new();
                let mut failed = Vec::new();
                for (to, msg) in sent(&outs) {
                    let Some(c) = contacts.iter().find(|c| c.id == to) else { continue };
                    let rid = msg.rid().unwrap();
                    match (fate.next().unwrap(), &msg) {
                        (0..=3, KadMsg::Store { .. }) => answers.push((c, KadMsg::StoreOk { rid })),
                        (0..=3, _) => answers.push((
                            c,
                            KadMsg::Nodes { rid, token: [9; 16], contacts: Default::default() },
                        )),
                        (4, _) => answers.push((
                            c,
                            KadMsg::Error { rid, code: KadErrorCode::STORE_FULL, reason: Default::default() },
                        )),
                        (5, _) => {} // silent
                        _ => failed.push(to),
                    }
                }
                outs.clear();
                now = now + Duration::from_millis(50);
                for (c, a) in answers {
                    k.handle_message(now, c, &a.encode_frame());
                    outs.extend(drain(&mut k));
                }
                for to in failed {
                    k.handle_send_failed(now, &to);
                    outs.extend(drain(&mut k));
                }
                if outs.is_empty() {
                    now = k.poll_timeout().unwrap().max(now);
                    k.handle_timeout(now);
                    outs = drain(&mut k);
                }
            }
            prop_assert_eq!(outcomes.len(), 1, "exactly one outcome: {:?}", outcomes);
            let (holders, attempted, error) = outcomes.pop().unwrap();
            prop_assert!(holders <= attempted);
            match error {
                None => prop_assert!(holders >= 1),
                Some(PublishError::NoNodes) => prop_assert_eq!(holders, 0),
                Some(PublishError::Incomplete { holders: h, wanted }) => {
                    prop_assert_eq!(h, holders);
                    prop_assert!(holders < wanted);
                }
                Some(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}

//! What a `Kad` node does with hostile or broken input, and with peers that stop answering:
//! it refuses, rate-limits or drops, says why in an event, never panics, and stays bounded.

use onionmesh_kad::contact::bucket_index;
use onionmesh_kad::sim::test_contact;
use onionmesh_kad::table::Status;
use onionmesh_kad::{Kad, KadConfig, KadEvent, LookupKind, Output, Rejection, Time};
use onionmesh_wire::kad::{Contact, KadErrorCode, KadMsg, Provider, Token};
use onionmesh_wire::{Frame, NodeId};
use proptest::prelude::*;
use std::time::Duration;

fn node(seed: u64) -> Kad {
    Kad::new(
        test_contact(seed),
        KadConfig::default(),
        [seed as u8; 32],
        Time::ZERO,
    )
    .unwrap()
}

fn secs(s: u64) -> Time {
    Time::from_millis(s * 1000)
}

fn drain(k: &mut Kad) -> Vec<Output> {
    std::iter::from_fn(|| k.poll_output()).collect()
}

fn sent(outs: &[Output]) -> Vec<(Contact, KadMsg)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes } => Some((to.clone(), KadMsg::decode_frame(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

fn rejections(outs: &[Output]) -> Vec<Rejection> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(KadEvent::Rejected { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Asks `k` for a STORE token as `who` would.
fn token_for(k: &mut Kad, now: Time, who: &Contact) -> Token {
    let q = KadMsg::FindValue {
        rid: 99,
        key: NodeId([7; 20]),
    };
    k.handle_message(now, who, &q.encode_frame());
    let outs = drain(k);
    // (A full bucket may also make the node ping one of its entries: skip that.)
    let answers: Vec<_> = sent(&outs)
        .into_iter()
        .filter(|(to, m)| to.id == who.id && m.rid() == Some(99))
        .collect();
    match &answers[..] {
        [(_, KadMsg::Nodes { token, .. })] | [(_, KadMsg::Value { token, .. })] => *token,
        other => panic!("expected one answer with a token, got {other:?}"),
    }
}

fn store_msg(rid: u64, token: Token, provider: &Contact) -> Vec<u8> {
    KadMsg::Store {
        rid,
        key: NodeId([7; 20]),
        token,
        provider: Provider {
            contact: provider.clone(),
            ttl_secs: 600,
        },
    }
    .encode_frame()
}

#[test]
fn malformed_and_unknown_frames_are_reported_and_dropped() {
    let mut k = node(1);
    let peer = test_contact(2);
    for bytes in [
        &[][..],
        &[0x03, 1, 2, 3][..],                // FIND_NODE cut short
        &[0x04, 0, 0, 0, 0, 0, 0, 0, 1][..], // NODES without a token
    ] {
        k.handle_message(secs(1), &peer, bytes);
        let outs = drain(&mut k);
        assert!(sent(&outs).is_empty(), "nothing is answered");
        assert!(matches!(rejections(&outs)[..], [Rejection::Malformed(_)]));
    }
    k.handle_message(secs(1), &peer, &[0x77, 1, 2]);
    assert_eq!(
        rejections(&drain(&mut k)),
        vec![Rejection::UnknownCommand(0x77)]
    );
    // Trailing bytes after a valid PING.
    let mut ping = KadMsg::Ping { rid: 1 }.encode_frame();
    ping.push(0);
    k.handle_message(secs(1), &peer, &ping);
    assert!(matches!(
        rejections(&drain(&mut k))[..],
        [Rejection::Malformed(_)]
    ));
}

#[test]
fn a_sender_whose_id_is_not_its_key_is_refused() {
    let mut k = node(1);
    let mut liar = test_contact(2);
    liar.id = NodeId([1; 20]);
    k.handle_message(secs(1), &liar, &KadMsg::Ping { rid: 1 }.encode_frame());
    let outs = drain(&mut k);
    assert!(sent(&outs).is_empty());
    assert!(matches!(rejections(&outs)[..], [Rejection::BadContact(_)]));
    assert!(k.table().is_empty());
}

#[test]
fn store_needs_a_fresh_token_of_ones_own_and_only_for_oneself() {
    let mut k = node(1);
    let a = test_contact(2);
    let b = test_contact(3);
    let tok_a = token_for(&mut k, secs(0), &a);

    // Wrong token: B presents A's.
    k.handle_message(secs(1), &b, &store_msg(1, tok_a, &b));
    let outs = drain(&mut k);
    assert!(matches!(
        &sent(&outs)[..],
        [(to, KadMsg::Error { rid: 1, code: KadErrorCode::BAD_TOKEN, .. })] if to.id == b.id
    ));
    assert_eq!(rejections(&outs), vec![Rejection::BadToken]);

    // A signs up B with its own valid token: refused.
    k.handle_message(secs(1), &a, &store_msg(2, tok_a, &b));
    let outs = drain(&mut k);
    assert!(matches!(
        &sent(&outs)[..],
        [(
            _,
            KadMsg::Error {
                code: KadErrorCode::NOT_SELF,
                ..
            }
        )]
    ));
    assert_eq!(rejections(&outs), vec![Rejection::NotSelf]);
    assert_eq!(k.store().records(), 0);

    // A for itself, 6 minutes later (one rotation): still valid.
    k.handle_message(secs(360), &a, &store_msg(3, tok_a, &a));
    let outs = drain(&mut k);
    assert!(matches!(
        &sent(&outs)[..],
        [(_, KadMsg::StoreOk { rid: 3 })]
    ));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(KadEvent::ProviderStored { provider, .. }) if *provider == a.id
    )));
    assert_eq!(k.store().records(), 1);

    // 11 minutes after issue (two rotations): stale.
    k.handle_message(secs(660), &a, &store_msg(4, tok_a, &a));
    let outs = drain(&mut k);
    assert!(matches!(
        &sent(&outs)[..],
        [(
            _,
            KadMsg::Error {
                code: KadErrorCode::STALE_TOKEN,
                ..
            }
        )]
    ));
    assert_eq!(rejections(&outs), vec![Rejection::StaleToken]);

    // And the stored provider is served to others.
    let q = KadMsg::FindValue {
        rid: 5,
        key: NodeId([7; 20]),
    };
    k.handle_message(secs(661), &b, &q.encode_frame());
    let outs = drain(&mut k);
    assert!(matches!(
        &sent(&outs)[..],
        [(_, KadMsg::Value { providers, .. })] if providers.len() == 1 && providers[0].contact.id == a.id
    ));
}

#[test]
fn a_find_flood_from_one_peer_is_cut_to_its_burst_and_reported_once() {
    let mut k = node(1);
    let flooder = test_contact(2);
    let mut answered = 0;
    let mut reports = 0;
    for rid in 0..10_000u64 {
        let q = KadMsg::FindNode {
            rid,
            target: NodeId([rid as u8; 20]),
        };
        k.handle_message(secs(5), &flooder, &q.encode_frame());
        let outs = drain(&mut k);
        answered += sent(&outs).len();
        reports += rejections(&outs)
            .iter()
            .filter(|r| **r == Rejection::RateLimited)
            .count();
    }
    assert_eq!(answered, 32, "the default per-peer burst");
    assert_eq!(reports, 1, "one event per flood, not per message");
    // A second later it may ask again, at the refill rate.
    let q = KadMsg::FindNode {
        rid: 1,
        target: NodeId([1; 20]),
    };
    k.handle_message(secs(6), &flooder, &q.encode_frame());
    assert_eq!(sent(&drain(&mut k)).len(), 1);
    assert_eq!(k.pending_requests(), 0, "answering allocates no state");
}

#[test]
fn a_flood_from_many_identities_is_bounded_globally() {
    let mut k = node(1);
    let mut answered = 0;
    for i in 0..2_000u64 {
        let who = test_contact(1_000 + i);
        let q = KadMsg::FindNode {
            rid: i,
            target: who.id,
        };
        k.handle_message(secs(5), &who, &q.encode_frame());
        answered += sent(&drain(&mut k))
            .iter()
            .filter(|(to, _)| to.id == who.id)
            .count();
    }
    assert_eq!(answered, 512, "the default global burst");
    assert!(k.table().len() <= 160 * 8);
    // Every bucket stays within k, replacement caches within their bound.
    for j in 0..160 {
        let (n, r) = k.table().bucket_len(j);
        assert!(n <= 8 && r <= 8);
    }
    // Pings of questionable entries are bounded by the pending cap.
    assert!(k.pending_requests() <= k.config().max_pending);
}

#[test]
fn a_store_flood_cannot_grow_the_store_past_its_bounds() {
    let mut cfg = KadConfig::default();
    cfg.store.max_records = 50;
    cfg.store.max_keys = 40;
    cfg.rate.global_burst = 100_000;
    let mut k = Kad::new(test_contact(1), cfg, [1; 32], Time::ZERO).unwrap();
    let mut full = 0;
    for i in 0..300u64 {
        let who = test_contact(5_000 + i);
        let tok = token_for(&mut k, secs(1), &who);
        let msg = KadMsg::Store {
            rid: i,
            key: NodeId([(i % 200) as u8; 20]),
            token: tok,
            provider: Provider {
                contact: who.clone(),
                ttl_secs: u32::MAX,
            },
        };
        k.handle_message(secs(1), &who, &msg.encode_frame());
        let outs = drain(&mut k);
        if rejections(&outs)
            .iter()
            .any(|r| matches!(r, Rejection::StoreFull(_)))
        {
            full += 1;
        }
        assert!(k.store().records() <= 50 && k.store().keys() <= 40);
    }
    assert!(full > 0);
}

#[test]
fn unsolicited_and_mismatched_answers_are_reported() {
    let mut k = node(1);
    let b = test_contact(2);
    let c = test_contact(3);
    k.handle_message(secs(0), &b, &KadMsg::Pong { rid: 42 }.encode_frame());
    assert_eq!(
        rejections(&drain(&mut k)),
        vec![Rejection::Unsolicited { rid: 42 }]
    );
    // We ask B; C answers in its place.
    k.bootstrap(secs(0), std::slice::from_ref(&b)).unwrap();
    let outs = drain(&mut k);
    let [(_, KadMsg::FindNode { rid, .. })] = sent(&outs)[..] else {
        panic!("expected one FIND_NODE");
    };
    let answer = KadMsg::Nodes {
        rid,
        token: [0; 16],
        contacts: Default::default(),
    };
    k.handle_message(secs(1), &c, &answer.encode_frame());
    assert_eq!(
        rejections(&drain(&mut k)),
        vec![Rejection::Unsolicited { rid }]
    );
    // B answers the FIND_NODE with a PONG: wrong kind, counted as a failure.
    k.handle_message(secs(1), &b, &KadMsg::Pong { rid }.encode_frame());
    let outs = drain(&mut k);
    assert_eq!(rejections(&outs), vec![Rejection::WrongAnswer { rid }]);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(KadEvent::LookupFinished(r)) if r.closest.is_empty()
    )));
}

#[test]
fn contacts_with_forged_ids_in_answers_are_dropped() {
    let mut k = node(1);
    let b = test_contact(2);
    k.bootstrap(secs(0), std::slice::from_ref(&b)).unwrap();
    let outs = drain(&mut k);
    let [(_, KadMsg::FindNode { rid, .. })] = sent(&outs)[..] else {
        panic!("expected one FIND_NODE");
    };
    let mut forged = test_contact(3);
    forged.id = *k.id(); // pretend to be right next to the target
    forged.id.0[19] ^= 1;
    let good = test_contact(4);
    let answer = KadMsg::Nodes {
        rid,
        token: [0; 16],
        contacts: vec![forged, good.clone()].try_into().unwrap(),
    };
    k.handle_message(secs(1), &b, &answer.encode_frame());
    let outs = drain(&mut k);
    assert!(matches!(rejections(&outs)[..], [Rejection::BadContact(_)]));
    // The lookup goes on with the good contact only, learned through B.
    let next = sent(&outs);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0.id, good.id);
    assert_eq!(next[0].0.introducers, vec![b.id]);
}

#[test]
fn silent_peers_time_out_and_turn_bad() {
    let mut k = node(1);
    let dead = test_contact(2);
    k.bootstrap(secs(0), std::slice::from_ref(&dead)).unwrap();
    assert_eq!(sent(&drain(&mut k)).len(), 1);
    // First the short timeout (1 s before any round trip was measured): the lookup stops
    // waiting for the silent peer and, with nobody else to ask, finishes.
    let t = k.poll_timeout().unwrap();
    assert_eq!(t, secs(1), "the initial adaptive timeout");
    k.handle_timeout(t);
    let outs = drain(&mut k);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(KadEvent::LookupFinished(r)) if r.kind == LookupKind::Bootstrap && r.closest.is_empty() && r.stats.slow == 1
    )));
    // Then the long one: now the request has failed, once (the short timeout counted nothing).
    let t = k.poll_timeout().unwrap();
    assert_eq!(t, secs(10), "the request timeout");
    k.handle_timeout(t);
    assert!(drain(&mut k).is_empty());
    assert_eq!(k.table().status(&dead.id, t), Some(Status::Questionable));
    // A second failure (reported by the node layer this time) makes it bad.
    k.find_node(secs(11), NodeId([5; 20])).unwrap();
    drain(&mut k);
    k.handle_send_failed(secs(11), &dead.id);
    drain(&mut k);
    assert_eq!(k.table().status(&dead.id, secs(11)), Some(Status::Bad));
    assert_eq!(k.pending_requests(), 0);
    // A late answer to a timed-out request is dropped quietly.
    k.handle_message(secs(12), &dead, &KadMsg::Pong { rid: 1 }.encode_frame());
    assert_eq!(rejections(&drain(&mut k)).len(), 1, "rid 1 was never ours");
}

#[test]
fn a_full_bucket_pings_its_oldest_questionable_entry_twice_then_replaces_it() {
    let mut k = node(1);
    let me = *k.id();
    let far: Vec<Contact> = (100..)
        .map(test_contact)
        .filter(|c| bucket_index(&me, &c.id) == Some(159))
        .take(9)
        .collect();
    // Eight of them answer our queries (a lookup from all eight).
    k.bootstrap(secs(0), &far[..8]).unwrap();
    for (to, msg) in sent(&drain(&mut k)) {
        let answer = KadMsg::Nodes {
            rid: msg.rid().unwrap(),
            token: [0; 16],
            contacts: Default::default(),
        };
        k.handle_message(secs(1), &to, &answer.encode_frame());
    }
    loop {
        let outs = drain(&mut k);
        let s = sent(&outs);
        if s.is_empty() {
            break;
        }
        for (to, msg) in s {
            let answer = KadMsg::Nodes {
                rid: msg.rid().unwrap(),
                token: [0; 16],
                contacts: Default::default(),
            };
            k.handle_message(secs(1), &to, &answer.encode_frame());
        }
    }
    assert_eq!(k.table().bucket_len(159).0, 8);
    // 16 minutes later they are questionable; a ninth node queries us.
    let t = secs(16 * 60);
    k.handle_message(t, &far[8], &KadMsg::Ping { rid: 1 }.encode_frame());
    let s = sent(&drain(&mut k));
    let pings: Vec<&Contact> = s
        .iter()
        .filter(|(_, m)| matches!(m, KadMsg::Ping { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pings.len(), 1, "one check at a time: {s:?}");
    let victim = pings[0].id;
    assert_eq!(k.table().bucket_len(159), (8, 1));
    // No answer: a second ping, then the replacement.
    k.handle_timeout(t + Duration::from_secs(10));
    let again: Vec<_> = sent(&drain(&mut k))
        .into_iter()
        .filter(|(to, m)| to.id == victim && matches!(m, KadMsg::Ping { .. }))
        .collect();
    assert_eq!(again.len(), 1, "tried one more time");
    k.handle_timeout(t + Duration::from_secs(20));
    drain(&mut k);
    assert!(k.table().get(&victim).is_none());
    assert!(k.table().get(&far[8].id).is_some());
}

#[test]
fn stale_buckets_are_refreshed_with_a_lookup_in_their_range() {
    let mut k = node(1);
    let me = *k.id();
    let b = test_contact(2);
    k.add_contact(secs(0), &b).unwrap();
    let j = bucket_index(&me, &b.id).unwrap();
    // Maintenance runs every minute; nothing is stale before 15 minutes.
    let mut t = secs(0);
    while t < secs(14 * 60) {
        t = k.poll_timeout().unwrap();
        k.handle_timeout(t);
        assert!(sent(&drain(&mut k)).is_empty());
    }
    while t < secs(16 * 60) {
        t = k.poll_timeout().unwrap();
        k.handle_timeout(t);
        let s = sent(&drain(&mut k));
        if !s.is_empty() {
            let targets: Vec<usize> = s
                .iter()
                .filter_map(|(_, m)| match m {
                    KadMsg::FindNode { target, .. } => bucket_index(&me, target),
                    _ => None,
                })
                .collect();
            assert!(targets.contains(&j), "bucket {j} refreshed: {targets:?}");
            return;
        }
    }
    panic!("no refresh within 16 minutes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary frames from arbitrary (valid) peers at arbitrary times: no panic, and every
    /// table and queue stays within its bounds.
    #[test]
    fn arbitrary_frames_never_panic_and_stay_bounded(
        frames in proptest::collection::vec((0u64..40, 0u64..600, proptest::collection::vec(any::<u8>(), 0..200)), 1..200),
    ) {
        let mut k = node(1);
        let peers: Vec<Contact> = (2..42).map(test_contact).collect();
        for (who, at, mut bytes) in frames {
            // Half of the frames start with a known command byte so they get past the first check.
            if bytes.first().is_some_and(|b| b & 1 == 0) {
                bytes[0] = (bytes[0] >> 1) % 9 + 1;
            }
            k.handle_message(secs(at), &peers[who as usize], &bytes);
            let outs = drain(&mut k);
            prop_assert!(outs.len() <= 3);
            k.handle_timeout(secs(at));
            drain(&mut k);
            prop_assert!(k.pending_requests() <= k.config().max_pending);
            prop_assert!(k.running_lookups() <= k.config().max_lookups);
            prop_assert!(k.store().records() <= k.config().store.max_records);
        }
    }
}

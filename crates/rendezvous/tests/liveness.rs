//! Ghost peers (issue 12, case 1) and departures (issue 13, item 1) at the bridge core: a
//! connection that stops answering is dropped within 30 s, an introduction to it fails within
//! seconds and it is not offered until it answers again, and departures reach the other pages
//! (and federated bridges) in batched frames.

mod common;

use common::*;
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput, Time,
};
use onionmesh_wire::{Frame, NodeId, SignalMsg};
use std::collections::BTreeSet;
use std::time::Duration;

fn find(r: &mut Rendezvous, now: Time, conn: ConnId, who: &Identity) -> Vec<NodeId> {
    let outs = frame(
        r,
        now,
        conn,
        &SignalMsg::FindPeer {
            id: who.id(),
            pubkey: who.public_key(),
        }
        .encode_frame(),
    );
    match sent_to(&outs, conn).as_slice() {
        [SignalMsg::FoundPeer { peers }] => peers.iter().map(|p| p.id).collect(),
        other => panic!("expected FoundPeer, got {other:?}"),
    }
}

/// Steps the clock 100 ms at a time up to `until`; connections in `alive` answer every ping at
/// once. Returns all outputs with their times.
fn run(
    r: &mut Rendezvous,
    from: Time,
    until: Time,
    alive: &BTreeSet<ConnId>,
) -> Vec<(Time, RendezvousOutput)> {
    let mut all = Vec::new();
    let mut now = from;
    while now <= until {
        r.handle_input(now, RendezvousInput::Timeout);
        let outs = drain(r);
        for o in &outs {
            if let RendezvousOutput::Send { conn, bytes } = o {
                if let Ok(SignalMsg::Ping { nonce }) = SignalMsg::decode_frame(bytes) {
                    if alive.contains(conn) {
                        all.extend(
                            frame(r, now, *conn, &SignalMsg::Pong { nonce }.encode_frame())
                                .into_iter()
                                .map(|o| (now, o)),
                        );
                    }
                }
            }
        }
        all.extend(outs.into_iter().map(|o| (now, o)));
        now = now + Duration::from_millis(100);
    }
    all
}

#[test]
fn a_page_that_stops_answering_is_dropped_within_30_s_and_announced_gone() {
    let mut r = bridge(RendezvousConfig::default());
    let (ghost, live) = (identity(10), identity(11));
    register(&mut r, Time::ZERO, ConnId(1), &ghost);
    register(&mut r, Time::ZERO, ConnId(2), &live);
    assert_eq!(find(&mut r, Time::ZERO, ConnId(2), &live), vec![ghost.id()]);

    let alive = BTreeSet::from([ConnId(2)]);
    let outs = run(&mut r, Time::ZERO, Time::from_millis(40_000), &alive);
    // The ghost was pinged, then dropped with a reason, within 30 s of its last frame.
    let pinged = outs.iter().any(|(_, o)| {
        matches!(o, RendezvousOutput::Send { conn: ConnId(1), bytes }
            if matches!(SignalMsg::decode_frame(bytes), Ok(SignalMsg::Ping { .. })))
    });
    assert!(pinged, "a silent page is pinged before it is dropped");
    let (dropped_at, reason) = outs
        .iter()
        .find_map(|(t, o)| match o {
            RendezvousOutput::Close {
                conn: ConnId(1),
                reason,
            } => Some((*t, reason.clone())),
            _ => None,
        })
        .expect("the silent page is dropped");
    assert!(dropped_at <= Time::from_millis(30_000), "{dropped_at:?}");
    assert!(
        reason.contains("not even the answer to a keepalive ping"),
        "{reason}"
    );
    // The live page answered its pings and stays.
    assert!(!outs.iter().any(|(_, o)| matches!(
        o,
        RendezvousOutput::Close {
            conn: ConnId(2),
            ..
        }
    )));
    assert_eq!(r.registered_peers(), 1);
    // ... and was told, once, in a batch shortly after the drop.
    let gone: Vec<(Time, Vec<NodeId>)> = outs
        .iter()
        .filter_map(|(t, o)| match o {
            RendezvousOutput::Send {
                conn: ConnId(2),
                bytes,
            } => match SignalMsg::decode_frame(bytes) {
                Ok(SignalMsg::PeersGone { ids }) => Some((*t, ids.into_vec())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].1, vec![ghost.id()]);
    assert!(gone[0].0 <= dropped_at + Duration::from_secs(1));
    // Not offered any more.
    let now = Time::from_millis(40_000);
    assert!(find(&mut r, now, ConnId(2), &live).is_empty());
}

#[test]
fn an_introduction_to_a_silent_peer_fails_in_seconds_and_it_is_not_offered_until_it_answers() {
    let mut r = bridge(RendezvousConfig::default());
    let (asker, ghost, other) = (identity(20), identity(21), identity(22));
    register(&mut r, Time::ZERO, ConnId(1), &asker);
    register(&mut r, Time::ZERO, ConnId(2), &ghost);
    register(&mut r, Time::ZERO, ConnId(3), &other);

    let t = Time::from_millis(1_000);
    let intro = SignalMsg::Introduce {
        peer: ghost.id(),
        session: 77,
        sdp: "offer".try_into().unwrap(),
    };
    let outs = frame(&mut r, t, ConnId(1), &intro.encode_frame());
    // Relayed, with a ping to prove the target is there.
    let to_ghost = sent_to(&outs, ConnId(2));
    assert!(matches!(
        to_ghost[0],
        SignalMsg::Introduce { session: 77, .. }
    ));
    assert!(matches!(to_ghost[1], SignalMsg::Ping { .. }));

    let alive = BTreeSet::from([ConnId(1), ConnId(3)]);
    let outs = run(&mut r, t, Time::from_millis(6_000), &alive);
    let (failed_at, reason) = outs
        .iter()
        .find_map(|(at, o)| match o {
            RendezvousOutput::Send {
                conn: ConnId(1),
                bytes,
            } => match SignalMsg::decode_frame(bytes) {
                Ok(SignalMsg::IntroduceFailed {
                    peer,
                    session: 77,
                    reason,
                }) if peer == ghost.id() => Some((*at, reason)),
                _ => None,
            },
            _ => None,
        })
        .expect("the introduction fails");
    assert!(failed_at <= t + Duration::from_secs(4), "{failed_at:?}");
    assert!(
        reason.contains("did not answer the bridge within 3 s"),
        "{reason}"
    );
    // The others are told it is gone, and it is no longer offered ...
    let gone_to_other = outs.iter().any(|(_, o)| {
        matches!(o, RendezvousOutput::Send { conn: ConnId(3), bytes }
            if SignalMsg::decode_frame(bytes) == Ok(SignalMsg::PeersGone { ids: vec![ghost.id()].try_into().unwrap() }))
    });
    assert!(gone_to_other);
    let now = Time::from_millis(6_000);
    assert_eq!(find(&mut r, now, ConnId(1), &asker), vec![other.id()]);
    // ... and a second introduction fails at once, without waiting.
    let outs = frame(&mut r, now, ConnId(1), &intro.encode_frame());
    assert!(matches!(
        sent_to(&outs, ConnId(1)).as_slice(),
        [SignalMsg::IntroduceFailed { session: 77, .. }]
    ));
    assert!(sent_to(&outs, ConnId(2)).is_empty());

    // It wakes up (any frame proves it alive): offered again.
    let later = Time::from_millis(7_000);
    frame(
        &mut r,
        later,
        ConnId(2),
        &SignalMsg::Pong { nonce: 0 }.encode_frame(),
    );
    let mut found = find(&mut r, later, ConnId(1), &asker);
    found.sort();
    let mut want = vec![ghost.id(), other.id()];
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn a_live_target_passes_the_probe() {
    let mut r = bridge(RendezvousConfig::default());
    let (asker, target) = (identity(30), identity(31));
    register(&mut r, Time::ZERO, ConnId(1), &asker);
    register(&mut r, Time::ZERO, ConnId(2), &target);
    let t = Time::from_millis(500);
    let intro = SignalMsg::Introduce {
        peer: target.id(),
        session: 5,
        sdp: "offer".try_into().unwrap(),
    };
    let outs = frame(&mut r, t, ConnId(1), &intro.encode_frame());
    // The target answers the ping sent with the introduction, a round trip later.
    let Some(SignalMsg::Ping { nonce }) = sent_to(&outs, ConnId(2)).pop() else {
        panic!("the introduction comes with a ping")
    };
    let pong = SignalMsg::Pong { nonce }.encode_frame();
    frame(&mut r, t + Duration::from_millis(80), ConnId(2), &pong);
    let alive = BTreeSet::from([ConnId(1), ConnId(2)]);
    let outs = run(&mut r, t, Time::from_millis(60_000), &alive);
    assert!(!outs.iter().any(|(_, o)| {
        matches!(o, RendezvousOutput::Send { bytes, .. }
            if matches!(SignalMsg::decode_frame(bytes), Ok(SignalMsg::IntroduceFailed { .. } | SignalMsg::PeersGone { .. })))
            || matches!(o, RendezvousOutput::Close { .. })
    }));
    assert_eq!(r.registered_peers(), 2);
}

#[test]
fn busy_pages_are_not_pinged() {
    let mut r = bridge(RendezvousConfig::default());
    let a = identity(40);
    register(&mut r, Time::ZERO, ConnId(1), &a);
    let mut pings = 0;
    for s in 1..=60u64 {
        let now = Time::from_millis(s * 1_000);
        let outs = find_outs(&mut r, now, &a);
        r.handle_input(now, RendezvousInput::Timeout);
        let outs: Vec<_> = outs.into_iter().chain(drain(&mut r)).collect();
        pings += sent_to(&outs, ConnId(1))
            .iter()
            .filter(|m| matches!(m, SignalMsg::Ping { .. }))
            .count();
        assert!(closed(&outs, ConnId(1)).is_none());
    }
    assert_eq!(pings, 0);
}

fn find_outs(r: &mut Rendezvous, now: Time, who: &Identity) -> Vec<RendezvousOutput> {
    frame(
        r,
        now,
        ConnId(1),
        &SignalMsg::FindPeer {
            id: who.id(),
            pubkey: who.public_key(),
        }
        .encode_frame(),
    )
}

#[test]
fn departures_are_batched_and_paced_one_frame_per_interval() {
    let mut r = bridge(RendezvousConfig {
        max_peers: 1_000,
        ..RendezvousConfig::default()
    });
    let watcher = identity(1);
    register(&mut r, Time::ZERO, ConnId(1), &watcher);
    let mut left = Vec::new();
    for i in 0..250u32 {
        let id = Identity::from_seed(seed(i)).unwrap();
        left.push(id.id());
        register(&mut r, Time::ZERO, ConnId(100 + u64::from(i)), &id);
    }
    drain(&mut r);
    let t = Time::from_millis(1_000);
    for i in 0..250u64 {
        r.handle_input(t, RendezvousInput::Closed(ConnId(100 + i)));
    }
    assert!(
        sent_to(&drain(&mut r), ConnId(1)).is_empty(),
        "not one frame per departure"
    );
    // One frame per page per 500 ms: 100, 100, then 50 IDs.
    let mut told = Vec::new();
    let mut at = t;
    for want in [100, 100, 50] {
        at = at + Duration::from_millis(500);
        assert_eq!(r.poll_timeout(), Some(at));
        r.handle_input(at, RendezvousInput::Timeout);
        let frames = sent_to(&drain(&mut r), ConnId(1));
        let [SignalMsg::PeersGone { ids }] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        assert_eq!(ids.len(), want);
        told.extend(ids.iter().copied());
    }
    // Nothing left to announce.
    let next = at + Duration::from_millis(500);
    r.handle_input(next, RendezvousInput::Timeout);
    assert!(sent_to(&drain(&mut r), ConnId(1)).is_empty());
    told.sort();
    left.sort();
    assert_eq!(told, left);
}

#[test]
fn a_peer_that_returns_before_the_announcement_is_not_announced() {
    let mut r = bridge(RendezvousConfig::default());
    let (watcher, flaky) = (identity(1), identity(2));
    register(&mut r, Time::ZERO, ConnId(1), &watcher);
    register(&mut r, Time::ZERO, ConnId(2), &flaky);
    r.handle_input(Time::from_millis(10), RendezvousInput::Closed(ConnId(2)));
    register(&mut r, Time::from_millis(100), ConnId(3), &flaky);
    let outs = run_until(&mut r, Time::from_millis(2_000));
    assert!(!sent_to(&outs, ConnId(1))
        .iter()
        .any(|m| matches!(m, SignalMsg::PeersGone { .. })));
}

#[test]
fn a_clock_going_backwards_is_taken_as_the_latest_time() {
    let mut r = bridge(RendezvousConfig::default());
    let a = identity(3);
    register(&mut r, Time::from_millis(100_000), ConnId(1), &a);
    // An input from the past: nothing is due "earlier" and nothing panics.
    open(&mut r, Time::from_millis(1_000), ConnId(2));
    let next = r.poll_timeout().unwrap();
    assert!(next >= Time::from_millis(100_000), "{next:?}");
    r.handle_input(Time::from_millis(500), RendezvousInput::Timeout);
    assert!(closed(&drain(&mut r), ConnId(2)).is_none());
    assert_eq!(r.registered_peers(), 1);
}

fn seed(i: u32) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

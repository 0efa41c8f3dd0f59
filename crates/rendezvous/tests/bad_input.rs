//! Bad input closes the connection concerned, with a reason, and nothing else.
//! (Moved from `onionmesh-node`'s tests with the rendezvous.)

mod common;

use common::*;
use onionmesh_rendezvous::{ConnId, RendezvousConfig, RendezvousInput, RendezvousOutput, Time};
use onionmesh_wire::{Frame, SignalMsg};

#[test]
fn rendezvous_closes_only_the_offender() {
    let mut r = bridge(RendezvousConfig::default());
    let good = identity(2);
    register(&mut r, Time::ZERO, ConnId(1), &good);

    let find = SignalMsg::FindPeer {
        id: good.id(),
        pubkey: good.public_key(),
    }
    .encode_frame();
    type Case = (&'static str, Box<dyn Fn(&[u8; 32]) -> Vec<u8>>);
    let cases: Vec<Case> = vec![
        ("garbage", Box::new(|_| vec![0xde, 0xad, 0xbe, 0xef])),
        (
            "truncated hello",
            Box::new(|n| hello_frame(&identity(3), n)[..50].to_vec()),
        ),
        ("empty", Box::new(|_| vec![])),
        ("oversized", Box::new(|_| vec![0x12; 40_000])),
        ("find before hello", Box::new(move |_| find.clone())),
        (
            "hello signing another challenge",
            Box::new(|n| {
                let mut other = *n;
                other[0] ^= 1;
                hello_frame(&identity(4), &other)
            }),
        ),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        let conn = ConnId(10 + n as u64);
        let nonce = open(&mut r, Time::ZERO, conn);
        let outs = frame(&mut r, Time::ZERO, conn, &bytes(&nonce));
        assert!(
            closed(&outs, conn).is_some(),
            "{what} must close its connection"
        );
        assert!(closed(&outs, ConnId(1)).is_none());
    }
    // The good peer is still registered and served.
    assert_eq!(r.registered_peers(), 1);
    let outs = frame(
        &mut r,
        Time::ZERO,
        ConnId(1),
        &SignalMsg::FindPeer {
            id: good.id(),
            pubkey: good.public_key(),
        }
        .encode_frame(),
    );
    assert!(matches!(
        sent_to(&outs, ConnId(1)).as_slice(),
        [SignalMsg::FoundPeer { .. }]
    ));
}

#[test]
fn rendezvous_rate_limits_and_refuses_duplicates_and_silence() {
    let cfg = RendezvousConfig {
        frames_per_sec: 10,
        burst: 5,
        ..RendezvousConfig::default()
    };
    let mut r = bridge(cfg);
    let a = identity(2);
    register(&mut r, Time::ZERO, ConnId(1), &a);
    let find = SignalMsg::FindPeer {
        id: a.id(),
        pubkey: a.public_key(),
    }
    .encode_frame();
    let mut reason = None;
    for _ in 0..20 {
        if let Some(why) = closed(&frame(&mut r, Time::ZERO, ConnId(1), &find), ConnId(1)) {
            reason = Some(why);
            break;
        }
    }
    assert!(reason.unwrap().contains("rate limit"));

    // The same ID twice.
    register(&mut r, Time::ZERO, ConnId(2), &a);
    let nonce = open(&mut r, Time::ZERO, ConnId(3));
    let outs = frame(&mut r, Time::ZERO, ConnId(3), &hello_frame(&a, &nonce));
    assert!(closed(&outs, ConnId(3))
        .unwrap()
        .contains("already connected"));

    // No hello.
    open(&mut r, Time::ZERO, ConnId(4));
    let deadline = r.poll_timeout().unwrap();
    r.handle_input(deadline, RendezvousInput::Timeout);
    assert!(closed(&drain(&mut r), ConnId(4))
        .unwrap()
        .contains("no hello"));
    assert_eq!(r.registered_peers(), 1);
}

#[test]
fn a_replayed_hello_is_refused() {
    // A hello recorded on one connection (an observer with the keys of the channel, or a
    // malicious page relaying another's hello) is worthless on any other: its challenge differs.
    let mut r = bridge(RendezvousConfig::default());
    let victim = identity(5);
    let nonce = open(&mut r, Time::ZERO, ConnId(1));
    let recorded = hello_frame(&victim, &nonce);
    frame(&mut r, Time::ZERO, ConnId(1), &recorded);
    assert_eq!(r.registered_peers(), 1);
    r.handle_input(Time::from_millis(10), RendezvousInput::Closed(ConnId(1)));
    assert_eq!(r.registered_peers(), 0);

    open(&mut r, Time::from_millis(20), ConnId(2));
    let outs = frame(&mut r, Time::from_millis(20), ConnId(2), &recorded);
    let why = closed(&outs, ConnId(2)).expect("the replay is refused");
    assert!(why.contains("another connection's challenge"), "{why}");
    assert!(matches!(
        sent_to(&outs, ConnId(2)).as_slice(),
        [SignalMsg::Error { code: 3, .. }]
    ));
    assert_eq!(r.registered_peers(), 0);

    // Claiming the new challenge with the old signature does not help either.
    let nonce3 = open(&mut r, Time::from_millis(30), ConnId(3));
    let Ok(SignalMsg::Hello { pubkey, sig, .. }) = SignalMsg::decode_frame(&recorded) else {
        panic!()
    };
    let forged = SignalMsg::Hello {
        pubkey,
        challenge: nonce3,
        sig,
    }
    .encode_frame();
    let outs = frame(&mut r, Time::from_millis(30), ConnId(3), &forged);
    assert!(closed(&outs, ConnId(3))
        .unwrap()
        .contains("bad hello signature"));
    assert_eq!(r.registered_peers(), 0);
}

#[test]
fn every_connection_gets_its_own_challenge() {
    let mut r = bridge(RendezvousConfig::default());
    let a = open(&mut r, Time::ZERO, ConnId(1));
    let b = open(&mut r, Time::ZERO, ConnId(2));
    assert_ne!(a, b);
    // Same seed, same challenges: reproducible in the simulator.
    let mut again = bridge(RendezvousConfig::default());
    assert_eq!(open(&mut again, Time::ZERO, ConnId(1)), a);
}

#[test]
fn outputs_of_a_close_are_error_then_close() {
    let mut r = bridge(RendezvousConfig::default());
    open(&mut r, Time::ZERO, ConnId(1));
    r.handle_input(
        Time::ZERO,
        RendezvousInput::TransportError {
            conn: ConnId(1),
            reason: "a text frame arrived",
        },
    );
    let outs = drain(&mut r);
    assert!(matches!(outs[0], RendezvousOutput::Send { .. }));
    assert!(
        matches!(&outs[1], RendezvousOutput::Close { reason, .. } if reason == "a text frame arrived")
    );
    assert_eq!(r.connections(), 0);
}

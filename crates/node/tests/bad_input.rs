//! Bad input closes the connection or link concerned, with a reason, and nothing else.
//! (The rendezvous' own bad-input tests moved to `onionmesh-rendezvous` with it.)

use onionmesh_node::testing::{forward, outputs, pair, Pair};
use onionmesh_node::{ErrorCode, Event, Input, LinkState, Output, Time};
use onionmesh_wire::{Frame, LinkMsg};

#[test]
fn handshake_by_hand_then_malformed_frames_close_the_link_only() {
    let Pair {
        mut a,
        mut b,
        la,
        lb,
    } = pair();
    let now = Time::ZERO;
    a.handle_input(now, Input::LinkOpened { link: la });
    b.handle_input(now, Input::LinkOpened { link: lb });
    // Exchange nonces, then certs.
    forward(&mut a, &mut b, lb, now);
    forward(&mut b, &mut a, la, now);
    forward(&mut a, &mut b, lb, now);
    forward(&mut b, &mut a, la, now);
    assert_eq!(a.linked_peers(), vec![b.id()]);
    assert_eq!(b.linked_peers(), vec![a.id()]);

    a.link(b.id()).send(now, b"ping").unwrap();
    forward(&mut a, &mut b, lb, now);
    let got: Vec<_> = outputs(&mut b);
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
    let outs: Vec<_> = outputs(&mut b);
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
    let Pair { mut a, la, .. } = pair();
    a.handle_input(Time::ZERO, Input::LinkOpened { link: la });
    outputs(&mut a);
    a.handle_input(
        Time::ZERO,
        Input::LinkFrame {
            link: la,
            bytes: &LinkMsg::Data(b"sneaky".to_vec().try_into().unwrap()).encode_frame(),
        },
    );
    let outs: Vec<_> = outputs(&mut a);
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
    let Pair {
        mut a,
        mut b,
        la,
        lb,
    } = pair();
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
        forward(&mut a, &mut b, lb, t);
        forward(&mut b, &mut a, la, t);
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
        for o in outputs(&mut a) {
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

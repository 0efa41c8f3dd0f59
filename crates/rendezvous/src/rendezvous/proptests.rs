//! Random driver behaviour against the rendezvous' invariants: whatever order connections open,
//! say hello, talk, go silent and close in, and however the clock jumps (backwards too), the
//! registry, the wake-up set and the departures stay consistent, and nothing panics.

use super::*;
use crate::departures::MAX_PENDING;
use proptest::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Open(u8),
    Dial(u8),
    Close(u8),
    /// Hello from identity `id` on `conn`, signing its challenge (or a wrong one).
    Hello {
        conn: u8,
        id: u8,
        right: bool,
    },
    Find(u8),
    Introduce {
        conn: u8,
        to: u8,
    },
    Pong(u8),
    Garbage(u8, Vec<u8>),
    /// Move the clock by this many ms (negative: a clock going backwards) and fire timers.
    Tick(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Open),
        (0u8..6).prop_map(Op::Dial),
        (0u8..6).prop_map(Op::Close),
        (0u8..6, 0u8..4, any::<bool>()).prop_map(|(conn, id, right)| Op::Hello { conn, id, right }),
        (0u8..6).prop_map(Op::Find),
        (0u8..6, 0u8..4).prop_map(|(conn, to)| Op::Introduce { conn, to }),
        (0u8..6).prop_map(Op::Pong),
        (0u8..6, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(c, b)| Op::Garbage(c, b)),
        (-5_000i32..30_000).prop_map(Op::Tick),
    ]
}

fn identity(n: u8) -> Identity {
    Identity::from_seed([n + 1; 32]).unwrap()
}

fn check(r: &Rendezvous) {
    assert_eq!(r.wakes.len(), r.conns.len(), "one wake-up per connection");
    for (conn, c) in &r.conns {
        assert!(r.wakes.contains(&(c.wake, *conn)));
    }
    for (id, conn) in &r.by_id {
        match r.conns.get(conn).map(|c| &c.state) {
            Some(ConnState::Registered { id: rid, .. }) => assert_eq!(rid, id),
            other => panic!("by_id points at {other:?}"),
        }
    }
    let registered = r
        .conns
        .values()
        .filter(|c| matches!(c.state, ConnState::Registered { .. }))
        .count();
    assert_eq!(registered, r.by_id.len());
    assert!(r.departures.len() <= MAX_PENDING);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_drivers_keep_the_registry_consistent(ops in proptest::collection::vec(op(), 1..80)) {
        let mut r = Rendezvous::new(identity(9), RendezvousConfig::default(), [5; 32]);
        let mut now = Time::from_millis(100_000);
        let mut challenges: BTreeMap<ConnId, ChallengeNonce> = BTreeMap::new();
        let mut latest = Time::ZERO;
        for op in ops {
            match op {
                Op::Open(c) => r.handle_input(now, RendezvousInput::Opened(ConnId(c.into()))),
                Op::Dial(c) => r.handle_input(now, RendezvousInput::Dialed(ConnId(c.into()))),
                Op::Close(c) => r.handle_input(now, RendezvousInput::Closed(ConnId(c.into()))),
                Op::Hello { conn, id, right } => {
                    let conn = ConnId(conn.into());
                    let mut ch = challenges.get(&conn).copied().unwrap_or([0; 32]);
                    if !right {
                        ch[0] ^= 1;
                    }
                    let who = identity(id);
                    let frame = SignalMsg::Hello {
                        pubkey: who.public_key(),
                        challenge: ch,
                        sig: hello::sign(&who, &ch),
                    }
                    .encode_frame();
                    r.handle_input(now, RendezvousInput::Frame { conn, bytes: &frame });
                }
                Op::Find(c) => {
                    let who = identity(0);
                    let frame = SignalMsg::FindPeer { id: who.id(), pubkey: who.public_key() }
                        .encode_frame();
                    r.handle_input(now, RendezvousInput::Frame { conn: ConnId(c.into()), bytes: &frame });
                }
                Op::Introduce { conn, to } => {
                    let frame = SignalMsg::Introduce {
                        peer: identity(to).id(),
                        session: 1,
                        sdp: "o".try_into().unwrap(),
                    }
                    .encode_frame();
                    r.handle_input(now, RendezvousInput::Frame { conn: ConnId(conn.into()), bytes: &frame });
                }
                Op::Pong(c) => {
                    let frame = SignalMsg::Pong { nonce: 0 }.encode_frame();
                    r.handle_input(now, RendezvousInput::Frame { conn: ConnId(c.into()), bytes: &frame });
                }
                Op::Garbage(c, bytes) => {
                    r.handle_input(now, RendezvousInput::Frame { conn: ConnId(c.into()), bytes: &bytes });
                }
                Op::Tick(ms) => {
                    now = if ms >= 0 {
                        now + Duration::from_millis(ms as u64)
                    } else {
                        Time::from_millis(now.as_millis().saturating_sub(ms.unsigned_abs().into()))
                    };
                    r.handle_input(now, RendezvousInput::Timeout);
                }
            }
            while let Some(o) = r.poll_output() {
                match o {
                    RendezvousOutput::Send { conn, bytes } => {
                        if let Ok(SignalMsg::Challenge { nonce }) = SignalMsg::decode_frame(&bytes) {
                            challenges.insert(conn, nonce);
                        }
                    }
                    RendezvousOutput::Close { conn, .. } => {
                        challenges.remove(&conn);
                        prop_assert!(!r.conns.contains_key(&conn), "a closed connection is forgotten");
                    }
                    _ => {}
                }
            }
            check(&r);
            // The rendezvous' clock is the latest time it was given: never backwards.
            latest = latest.max(now);
            prop_assert_eq!(r.now, latest);
        }
    }
}

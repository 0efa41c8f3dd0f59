//! Two federated rendezvous cores wired by hand: the challenge-signed bridge hellos, shared
//! registrations, and departures (a silent page at one bridge reaches the other's pages as
//! `PeersGone`).

mod common;

use common::*;
use onionmesh_crypto::hello;
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput, Time,
};
use onionmesh_wire::{Frame, NodeId, SignalMsg};
use std::time::Duration;

/// Bridge `x` dialed bridge `y`: `x`'s end is `ConnId(900)`, `y`'s is `ConnId(901)`.
const XY: ConnId = ConnId(900);
const YX: ConnId = ConnId(901);

struct Pair {
    x: Rendezvous,
    y: Rendezvous,
    now: Time,
    /// Frames for pages: (bridge 0 = x / 1 = y, conn, message).
    pages: Vec<(usize, ConnId, SignalMsg)>,
}

impl Pair {
    fn new() -> Pair {
        let x = Rendezvous::new(identity(100), RendezvousConfig::default(), [1; 32]);
        let y = Rendezvous::new(identity(101), RendezvousConfig::default(), [2; 32]);
        let mut p = Pair {
            x,
            y,
            now: Time::ZERO,
            pages: Vec::new(),
        };
        p.y.handle_input(p.now, RendezvousInput::Opened(YX));
        p.x.handle_input(p.now, RendezvousInput::Dialed(XY));
        p.pump();
        p
    }

    /// Moves frames between the two bridges until both are quiet; keeps the pages' frames.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for side in 0..2 {
                let outs = drain(if side == 0 { &mut self.x } else { &mut self.y });
                for o in outs {
                    let RendezvousOutput::Send { conn, bytes } = o else {
                        continue;
                    };
                    moved = true;
                    let now = self.now;
                    match (side, conn) {
                        (0, XY) => self.y.handle_input(
                            now,
                            RendezvousInput::Frame {
                                conn: YX,
                                bytes: &bytes,
                            },
                        ),
                        (1, YX) => self.x.handle_input(
                            now,
                            RendezvousInput::Frame {
                                conn: XY,
                                bytes: &bytes,
                            },
                        ),
                        _ => {
                            self.pages
                                .push((side, conn, SignalMsg::decode_frame(&bytes).unwrap()))
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Steps both clocks to `until` (100 ms steps); pages in `alive` answer pings.
    fn run(&mut self, until: Time, alive: &[(usize, ConnId)]) {
        while self.now < until {
            self.now = self.now + Duration::from_millis(100);
            let now = self.now;
            self.x.handle_input(now, RendezvousInput::Timeout);
            self.y.handle_input(now, RendezvousInput::Timeout);
            self.pump();
            let pings: Vec<(usize, ConnId, u64)> = self
                .pages
                .iter()
                .filter_map(|(s, c, m)| match m {
                    SignalMsg::Ping { nonce } if alive.contains(&(*s, *c)) => {
                        Some((*s, *c, *nonce))
                    }
                    _ => None,
                })
                .collect();
            self.pages
                .retain(|(_, _, m)| !matches!(m, SignalMsg::Ping { .. }));
            for (s, c, nonce) in pings {
                let b = if s == 0 { &mut self.x } else { &mut self.y };
                b.handle_input(
                    now,
                    RendezvousInput::Frame {
                        conn: c,
                        bytes: &SignalMsg::Pong { nonce }.encode_frame(),
                    },
                );
            }
            self.pump();
        }
    }
}

#[test]
fn bridges_federate_by_signing_each_others_challenge() {
    let p = Pair::new();
    assert_eq!(p.x.federated_bridges(), 1);
    assert_eq!(p.y.federated_bridges(), 1);
}

#[test]
fn a_replayed_bridge_hello_is_refused() {
    // A bridge hello signed over some other challenge, presented on a new connection.
    let mut y = Rendezvous::new(identity(101), RendezvousConfig::default(), [2; 32]);
    let fake = identity(102);
    let their_challenge = open(&mut y, Time::ZERO, ConnId(5));
    let mut other = their_challenge;
    other[31] ^= 0xff;
    frame(
        &mut y,
        Time::ZERO,
        ConnId(5),
        &SignalMsg::Challenge { nonce: [9; 32] }.encode_frame(),
    );
    let outs = frame(
        &mut y,
        Time::ZERO,
        ConnId(5),
        &SignalMsg::BridgeHello {
            pubkey: fake.public_key(),
            challenge: other,
            sig: hello::sign(&fake, &other),
            addr: "ws://fake/ws".try_into().unwrap(),
        }
        .encode_frame(),
    );
    assert!(closed(&outs, ConnId(5))
        .unwrap()
        .contains("another connection's challenge"));
    assert_eq!(y.federated_bridges(), 0);

    // A bridge hello without a challenge of its own first is refused too: the dialed side could
    // not answer it.
    let nonce = open(&mut y, Time::ZERO, ConnId(6));
    let outs = frame(
        &mut y,
        Time::ZERO,
        ConnId(6),
        &SignalMsg::BridgeHello {
            pubkey: fake.public_key(),
            challenge: nonce,
            sig: hello::sign(&fake, &nonce),
            addr: "ws://fake/ws".try_into().unwrap(),
        }
        .encode_frame(),
    );
    assert!(closed(&outs, ConnId(6))
        .unwrap()
        .contains("challenge before its hello"));
}

#[test]
fn a_silent_page_at_one_bridge_is_announced_gone_at_the_other() {
    let mut p = Pair::new();
    let (ghost, watcher) = (identity(10), identity(11));
    // The ghost registers at y, the watcher at x.
    let n = open(&mut p.y, p.now, ConnId(1));
    p.y.handle_input(
        p.now,
        RendezvousInput::Frame {
            conn: ConnId(1),
            bytes: &hello_frame(&ghost, &n),
        },
    );
    let n = open(&mut p.x, p.now, ConnId(2));
    p.x.handle_input(
        p.now,
        RendezvousInput::Frame {
            conn: ConnId(2),
            bytes: &hello_frame(&watcher, &n),
        },
    );
    p.pump();
    assert_eq!(p.x.remote_peers(), 1);

    // The bridges keep each other alive with pings; the watcher answers, the ghost does not.
    p.run(Time::from_millis(31_000), &[(0, ConnId(2))]);
    assert_eq!(p.y.registered_peers(), 0);
    assert_eq!(p.x.remote_peers(), 0);
    assert_eq!(p.x.federated_bridges(), 1, "the federation link stays up");
    let gone: Vec<&[NodeId]> = p
        .pages
        .iter()
        .filter_map(|(s, c, m)| match m {
            SignalMsg::PeersGone { ids } if (*s, *c) == (0, ConnId(2)) => Some(ids.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(gone, vec![&[ghost.id()][..]]);
}

#[test]
fn an_introduction_across_bridges_to_a_silent_page_fails_in_seconds() {
    let mut p = Pair::new();
    let (ghost, asker) = (identity(12), identity(13));
    let n = open(&mut p.y, p.now, ConnId(1));
    p.y.handle_input(
        p.now,
        RendezvousInput::Frame {
            conn: ConnId(1),
            bytes: &hello_frame(&ghost, &n),
        },
    );
    let n = open(&mut p.x, p.now, ConnId(2));
    p.x.handle_input(
        p.now,
        RendezvousInput::Frame {
            conn: ConnId(2),
            bytes: &hello_frame(&asker, &n),
        },
    );
    p.pump();
    p.pages.clear();

    let intro = SignalMsg::Introduce {
        peer: ghost.id(),
        session: 3,
        sdp: "offer".try_into().unwrap(),
    };
    p.x.handle_input(
        p.now,
        RendezvousInput::Frame {
            conn: ConnId(2),
            bytes: &intro.encode_frame(),
        },
    );
    p.pump();
    // y relayed it to the ghost, with a ping.
    assert!(p
        .pages
        .iter()
        .any(|(s, c, m)| (*s, *c) == (1, ConnId(1)) && matches!(m, SignalMsg::Introduce { .. })));
    let asked = p.now;
    p.run(asked + Duration::from_secs(5), &[(0, ConnId(2))]);
    let failed = p.pages.iter().find_map(|(s, c, m)| match m {
        SignalMsg::IntroduceFailed {
            peer,
            session: 3,
            reason,
        } if (*s, *c) == (0, ConnId(2)) && *peer == ghost.id() => Some(reason.clone()),
        _ => None,
    });
    let reason = failed.expect("the failure comes back across the federation");
    assert!(reason.contains("did not answer the bridge"), "{reason}");
    // x forgot it (y announced it gone), and told its own page.
    assert_eq!(p.x.remote_peers(), 0);
    assert!(p.pages.iter().any(|(s, c, m)| (*s, *c) == (0, ConnId(2))
        && *m
            == SignalMsg::PeersGone {
                ids: vec![ghost.id()].try_into().unwrap()
            }));
}

//! Helpers shared by the rendezvous tests: a bridge on a hand-driven clock and pages that answer
//! its challenge by hand.

#![allow(dead_code)] // Each test binary uses a different part.

use onionmesh_crypto::{hello, Identity};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput, Time,
};
use onionmesh_wire::signal::ChallengeNonce;
use onionmesh_wire::{Frame, SignalMsg};

pub fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

pub fn bridge(cfg: RendezvousConfig) -> Rendezvous {
    Rendezvous::new(identity(1), cfg, [42; 32])
}

pub fn drain(r: &mut Rendezvous) -> Vec<RendezvousOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

/// The frames sent to `conn` among `outs`, decoded.
pub fn sent_to(outs: &[RendezvousOutput], conn: ConnId) -> Vec<SignalMsg> {
    outs.iter()
        .filter_map(|o| match o {
            RendezvousOutput::Send { conn: c, bytes } if *c == conn => {
                Some(SignalMsg::decode_frame(bytes).expect("the bridge sends valid frames"))
            }
            _ => None,
        })
        .collect()
}

pub fn closed(outs: &[RendezvousOutput], conn: ConnId) -> Option<String> {
    outs.iter().find_map(|o| match o {
        RendezvousOutput::Close { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

/// Open `conn`; returns the challenge the bridge sent on it.
pub fn open(r: &mut Rendezvous, now: Time, conn: ConnId) -> ChallengeNonce {
    r.handle_input(now, RendezvousInput::Opened(conn));
    let outs = drain(r);
    match sent_to(&outs, conn).as_slice() {
        [SignalMsg::Challenge { nonce }] => *nonce,
        other => panic!("expected exactly a challenge, got {other:?}"),
    }
}

pub fn hello_frame(id: &Identity, challenge: &ChallengeNonce) -> Vec<u8> {
    SignalMsg::Hello {
        pubkey: id.public_key(),
        challenge: *challenge,
        sig: hello::sign(id, challenge),
    }
    .encode_frame()
}

pub fn frame(r: &mut Rendezvous, now: Time, conn: ConnId, bytes: &[u8]) -> Vec<RendezvousOutput> {
    r.handle_input(now, RendezvousInput::Frame { conn, bytes });
    drain(r)
}

/// Open `conn` and register `id` on it.
pub fn register(r: &mut Rendezvous, now: Time, conn: ConnId, id: &Identity) {
    let nonce = open(r, now, conn);
    let outs = frame(r, now, conn, &hello_frame(id, &nonce));
    assert!(
        outs.iter()
            .any(|o| matches!(o, RendezvousOutput::Registered { conn: c, .. } if *c == conn)),
        "{outs:?}"
    );
}

/// Feed timeouts up to and including `until`; returns every output.
pub fn run_until(r: &mut Rendezvous, until: Time) -> Vec<RendezvousOutput> {
    let mut outs = Vec::new();
    while let Some(t) = r.poll_timeout().filter(|t| *t <= until) {
        r.handle_input(t, RendezvousInput::Timeout);
        outs.extend(drain(r));
    }
    outs
}

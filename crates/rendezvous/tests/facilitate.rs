//! Facilitate frames (issue 10) pass through the rendezvous to the driver, only from registered
//! nodes.

mod common;

use common::*;
use onionmesh_rendezvous::{ConnId, RendezvousConfig, RendezvousOutput, Time};
use onionmesh_wire::db::{DbMsg, DbQuery, HashName};
use onionmesh_wire::{Frame, SignalMsg};

fn query() -> DbMsg {
    DbMsg::Query(DbQuery {
        hash_name: HashName([7; 20]),
        piece: 3,
        offset: 0,
        count: 2,
        counter: 0,
    })
}

#[test]
fn facilitate_frames_reach_the_driver() {
    let mut r = bridge(RendezvousConfig::default());
    let page = identity(2);
    register(&mut r, Time::ZERO, ConnId(1), &page);
    let bytes = SignalMsg::Facilitate {
        req: 9,
        msg: query(),
    }
    .encode_frame();
    let outs = frame(&mut r, Time::ZERO, ConnId(1), &bytes);
    assert!(
        matches!(
            outs.as_slice(),
            [RendezvousOutput::Facilitate { conn: ConnId(1), req: 9, msg }] if *msg == query()
        ),
        "{outs:?}"
    );
    let outs = frame(
        &mut r,
        Time::ZERO,
        ConnId(1),
        &SignalMsg::FacilitateClose { req: 9 }.encode_frame(),
    );
    assert!(
        matches!(
            outs.as_slice(),
            [RendezvousOutput::FacilitateClose {
                conn: ConnId(1),
                req: 9
            }]
        ),
        "{outs:?}"
    );
}

#[test]
fn facilitate_before_hello_closes_the_connection() {
    let mut r = bridge(RendezvousConfig::default());
    open(&mut r, Time::ZERO, ConnId(4));
    let bytes = SignalMsg::Facilitate {
        req: 1,
        msg: query(),
    }
    .encode_frame();
    let outs = frame(&mut r, Time::ZERO, ConnId(4), &bytes);
    assert!(closed(&outs, ConnId(4)).is_some(), "{outs:?}");
    assert!(!outs
        .iter()
        .any(|o| matches!(o, RendezvousOutput::Facilitate { .. })));
}

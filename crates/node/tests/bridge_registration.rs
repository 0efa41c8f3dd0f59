//! A page registers with the bridge by signing the bridge's challenge (issue 11, case 1): its
//! wall clock plays no part, so pages whose clocks are a day off register; and a registered page
//! answers the bridge's keepalive pings, so it is never dropped as silent (issue 12, case 1).
//! Real `Node`s against a real `Rendezvous`, wired by hand.

use onionmesh_crypto::Identity;
use onionmesh_node::{BridgeState, Input, Node, NodeConfig, Output, Time};
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput,
};
use std::time::Duration;

const DAY_MS: u64 = 24 * 3600 * 1000;
const BRIDGE_UNIX_MS: u64 = 1_700_000_000_000;

/// Moves frames both ways until nothing is left; returns the bridge's closes.
fn pump(now: Time, rv: &mut Rendezvous, nodes: &mut [Node]) -> Vec<(ConnId, String)> {
    let mut closes = Vec::new();
    loop {
        let mut moved = false;
        while let Some(o) = rv.poll_output() {
            match o {
                RendezvousOutput::Send { conn, bytes } => {
                    moved = true;
                    nodes[conn.0 as usize].handle_input(now, Input::BridgeFrame(&bytes));
                }
                RendezvousOutput::Close { conn, reason } => closes.push((conn, reason)),
                _ => {}
            }
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Some(o) = n.poll_output() {
                if let Output::SendBridge(bytes) = o {
                    moved = true;
                    let conn = ConnId(i as u64);
                    rv.handle_input(
                        now,
                        RendezvousInput::Frame {
                            conn,
                            bytes: &bytes,
                        },
                    );
                }
            }
        }
        if !moved {
            return closes;
        }
    }
}

#[test]
fn pages_with_clocks_a_day_off_register_and_stay_registered() {
    let mut rv = Rendezvous::new(
        Identity::from_seed([1; 32]).unwrap(),
        RendezvousConfig::default(),
        [2; 32],
    );
    // Wall clocks: a day behind, exact, a day ahead, and one stuck at 1970.
    let clocks = [
        BRIDGE_UNIX_MS - DAY_MS,
        BRIDGE_UNIX_MS,
        BRIDGE_UNIX_MS + DAY_MS,
        0,
    ];
    let mut nodes: Vec<Node> = (0..clocks.len())
        .map(|i| {
            let id = Identity::from_seed([10 + i as u8; 32]).unwrap();
            Node::new(id, NodeConfig::default(), [i as u8; 32])
        })
        .collect();
    let now = Time::from_millis(1_000);
    // The page's wall clock (one day behind, right, one day ahead, the epoch) never reaches
    // the node: `Input::BridgeOpened` carries none, and freshness is the bridge's challenge.
    for (i, _clock) in clocks.iter().enumerate() {
        rv.handle_input(now, RendezvousInput::Opened(ConnId(i as u64)));
        nodes[i].handle_input(now, Input::BridgeOpened);
    }
    let closes = pump(now, &mut rv, &mut nodes);
    assert!(closes.is_empty(), "{closes:?}");
    assert_eq!(rv.registered_peers(), clocks.len());
    for n in &nodes {
        assert_eq!(n.bridge_state(), BridgeState::Registered);
    }

    // Two minutes with no traffic but the bridge's pings and the pages' answers.
    let mut t = now;
    for _ in 0..1_200 {
        t = t + Duration::from_millis(100);
        if rv.poll_timeout().is_some_and(|w| w <= t) {
            rv.handle_input(t, RendezvousInput::Timeout);
        }
        let closes = pump(t, &mut rv, &mut nodes);
        assert!(closes.is_empty(), "{closes:?}");
    }
    assert_eq!(rv.registered_peers(), clocks.len());
}

//! Which peers a node's content circuits may end at, and what a download does when no circuit
//! can be started at all (issue 9).
//!
//! - A bridge takes part in the DHT (its contact is in every node's table) but routes no
//!   circuit: it is never chosen as a download's ORDB, a neighbour or a provider, so no circuit
//!   is ever pinned to end there.
//! - A circuit build refused at once (here: too few peers for a 3-hop path) is no source
//!   attempt: the download backs off and tries again instead of spending every attempt in one
//!   call, and fails with a sentence only after several minutes of refusals.

use onionmesh_crypto::Identity;
use onionmesh_node::testing::{data, Net, NetConfig};
use onionmesh_node::{ContentConfig, Event};
use std::time::Duration;

const PIECE: usize = 64 * 1024;

fn logs(net: &Net, i: usize) -> Vec<String> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::Log { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn no_content_circuit_ever_ends_at_the_bridge() {
    let n = 8;
    let mut net = Net::new(n);
    // The network's bridge (see `onionmesh_node::testing`): in the DHT tables, so a candidate by the DHT.
    let bridge = Identity::from_seed([99; 32]).unwrap().id();
    let in_tables = (0..n)
        .filter(|&i| net.nodes[i].dht().kad().table().get(&bridge).is_some())
        .count();
    assert!(
        in_tables > 0,
        "the bridge is in no DHT table: the test would prove nothing"
    );

    let file = data(3 * PIECE + 99, 7);
    let h = net.publish(0, &file, "three.bin");
    // Many picks of last hops: every other node downloads (3 sources each, and neighbours once
    // each holds a quarter).
    for i in 1..n {
        net.download(i, h);
    }
    let short = bridge.short();
    let mut pinned_at_bridge = Vec::new();
    let end = net.now + Duration::from_secs(300);
    while !(1..n).all(|i| net.done(i, h) || net.failed(i, h).is_some()) {
        assert!(net.now < end, "the downloads did not end within 300 s");
        net.tick(Duration::from_millis(100));
        for i in 0..n {
            for c in net.nodes[i].circuits() {
                if c.hops.last() == Some(&bridge) {
                    pinned_at_bridge.push((i, c.hops.clone()));
                }
            }
        }
    }
    for i in 1..n {
        assert_eq!(net.failed(i, h), None, "node {i}");
        assert_eq!(net.stored_bytes(i, h, 4).unwrap(), file, "node {i}");
    }
    assert!(pinned_at_bridge.is_empty(), "{pinned_at_bridge:?}");
    // Circuits that fail within one step are seen in the logs: no hop failure names the bridge
    // (the path rules keep it out of the other hops, so only a pinned last hop could).
    for i in 0..n {
        let bad: Vec<String> = logs(&net, i)
            .into_iter()
            .filter(|l| l.contains(&format!("(node {short})")))
            .collect();
        assert!(bad.is_empty(), "node {i}: {bad:#?}");
    }
}

#[test]
fn a_download_with_no_possible_circuit_backs_off_instead_of_spending_its_attempts() {
    // Three nodes: a 3-hop circuit ending at an ORDB needs two other peers besides it, so every
    // build is refused at once.
    let mut net = Net::with(NetConfig::new(3).content(ContentConfig {
        max_source_attempts: 4,
        ..ContentConfig::default()
    }));
    let file = data(PIECE, 3);
    let h = net.publish(0, &file, "one.bin");
    let start = net.now;
    net.download(2, h);
    assert_eq!(net.failed(2, h), None, "failed in the call itself");
    assert_eq!(net.nodes[2].ordb().stats().source_circuits, 0);

    // Backing off: still alive well past what four immediate attempts would take.
    net.advance_for(Duration::from_secs(60));
    assert_eq!(net.failed(2, h), None, "failed within 60 s");
    assert!(net.nodes[2].ordb().progress(&h).is_some());

    net.until(Duration::from_secs(600), "the download fails", |n| {
        n.failed(2, h).is_some()
    });
    let took = net.now.since(start);
    let reason = net.failed(2, h).unwrap();
    assert!(
        reason.contains(&h.to_hex())
            && reason.contains("no circuit to an ORDB could be started")
            && !reason.contains("were tried"),
        "{reason}"
    );
    assert!(took >= 120_000, "it gave up after {took} ms");
    assert_eq!(net.nodes[2].ordb().stats().source_circuits, 0);
    // The node goes on.
    assert!(!net.nodes[2].is_stopped());
}

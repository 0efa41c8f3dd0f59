//! The DHT running inside real `Node`s and the bridge's `Rendezvous`, on the simulated network:
//! bootstrap from the bridge, publish / find a value, and reaching a node without a link
//! through an introducer.

use onionmesh_node::{DhtEvent, DhtLookupKind, Event, LinkCloseReason};
use onionmesh_sim::{Sim, SimConfig};
use onionmesh_wire::NodeId;
use std::time::Duration;

fn lookup_done(sim: &Sim, i: usize, lookup: u64) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
    sim.events_of(i).iter().find_map(|e| match e {
        Event::Dht(DhtEvent::LookupDone {
            lookup: l,
            closest,
            providers,
            ..
        }) if *l == lookup => Some((closest.clone(), providers.clone())),
        _ => None,
    })
}

fn mesh(nodes: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig {
        nodes,
        seed,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(30));
    sim
}

#[test]
fn every_node_bootstraps_and_the_bridge_is_a_dht_node() {
    let sim = mesh(12, 7);
    for i in 0..12 {
        let s = sim.node(i).dht_stats();
        assert!(s.bootstrapped, "node {i} never bootstrapped");
        assert!(
            s.table_size >= 5,
            "node {i} knows only {} nodes",
            s.table_size
        );
        assert!(
            sim.events_of(i).iter().any(|e| matches!(
                e,
                Event::Dht(DhtEvent::LookupDone {
                    kind: DhtLookupKind::Bootstrap,
                    ..
                })
            )),
            "node {i} has no finished bootstrap"
        );
    }
    let bridge_table = sim
        .bridge()
        .dht()
        .expect("the bridge runs a DHT")
        .table()
        .len();
    assert!(bridge_table >= 10, "the bridge's DHT knows {bridge_table}");
}

#[test]
fn a_published_key_is_found_by_another_node() {
    let mut sim = mesh(12, 8);
    let key = NodeId([0x5a; 20]);
    let publisher = sim.node(3).id();
    let p = sim
        .with_node(3, |n, now| n.dht().publish(now, key))
        .expect("publish starts");
    sim.run_for(Duration::from_secs(10));
    let holders = sim.events_of(3).iter().find_map(|e| match e {
        Event::Dht(DhtEvent::Published {
            lookup, holders, ..
        }) if *lookup == p => Some(*holders),
        _ => None,
    });
    assert!(holders.is_some_and(|h| h >= 3), "published at {holders:?}");
    let f = sim
        .with_node(9, |n, now| n.dht().find_value(now, key))
        .unwrap();
    sim.run_for(Duration::from_secs(10));
    let (_, providers) = lookup_done(&sim, 9, f).expect("the lookup finished");
    assert_eq!(providers, vec![publisher]);
}

#[test]
fn an_unlinked_node_is_reached_through_an_introducer() {
    let mut sim = mesh(6, 9);
    let (a, b) = (1, 2);
    let b_id = sim.node(b).id();
    // Make a and b know each other with introducers, then drop their link.
    let warm = sim
        .with_node(a, |n, now| n.dht().find_node(now, b_id))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert!(lookup_done(&sim, a, warm).is_some());
    sim.with_node(a, |n, _| {
        n.link(b_id).disconnect("test: drop the direct link")
    });
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.node(a).linked_peers().contains(&b_id));
    let relayed_before: u64 = (0..6).map(|i| sim.node(i).dht_stats().relayed).sum();
    let via_before = sim.node(a).dht_stats().sent_via_introducer;

    let l = sim
        .with_node(a, |n, now| n.dht().find_node(now, b_id))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    let (closest, _) = lookup_done(&sim, a, l).expect("the lookup finished");
    assert_eq!(closest.first(), Some(&b_id), "b itself answered");
    assert!(
        !sim.node(a).linked_peers().contains(&b_id),
        "no link was opened"
    );
    assert!(sim.node(a).dht_stats().sent_via_introducer > via_before);
    let relayed_after: u64 = (0..6).map(|i| sim.node(i).dht_stats().relayed).sum();
    assert!(
        relayed_after > relayed_before,
        "an introducer relayed frames"
    );
}

#[test]
fn idle_links_are_closed_down_to_the_target_and_lookups_open_none() {
    let mut cfg = SimConfig {
        nodes: 8,
        seed: 10,
        ..SimConfig::default()
    };
    cfg.node.links.target_links = 3;
    cfg.node.links.idle_timeout = Duration::from_secs(20);
    let mut sim = Sim::new(cfg);
    sim.run_for(Duration::from_secs(10));
    let before: usize = (0..8).map(|i| sim.node(i).linked_peers().len()).sum();
    sim.run_for(Duration::from_secs(60));
    let idle_closes = (0..8)
        .flat_map(|i| sim.events_of(i).iter())
        .filter(|e| {
            matches!(
                e,
                Event::Peer {
                    reason: Some(LinkCloseReason::Idle),
                    ..
                }
            )
        })
        .count();
    assert!(idle_closes > 0, "no idle link was closed");
    let after: usize = (0..8).map(|i| sim.node(i).linked_peers().len()).sum();
    assert!(after < before, "links {before} -> {after}");

    // Lookups touch every node but open no link.
    let links: Vec<usize> = (0..8).map(|i| sim.node(i).linked_peers().len()).collect();
    let target = sim.node(7).id();
    let l = sim
        .with_node(0, |n, now| n.dht().find_node(now, target))
        .unwrap();
    sim.run_for(Duration::from_secs(5));
    assert!(lookup_done(&sim, 0, l).is_some());
    assert!(sim.node(0).linked_peers().len() <= links[0]);
}

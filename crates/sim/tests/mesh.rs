//! Whole-mesh behaviour of the real node and rendezvous cores on the simulated network.

use onionmesh_node::{Event, LinkState};
use onionmesh_sim::{Sim, SimConfig};
use std::collections::BTreeSet;
use std::time::Duration;

/// Every link a node holds is authenticated, and the other side holds it too.
fn assert_links_consistent(sim: &Sim) {
    for (i, node) in sim.nodes().iter().enumerate() {
        for view in node.peers(sim.now()) {
            assert_eq!(
                view.state,
                LinkState::Linked,
                "node {i} has a link stuck in {:?}",
                view.state
            );
        }
        for peer in node.linked_peers() {
            let j = sim
                .index_of(peer)
                .expect("linked to a node that does not exist");
            assert!(
                sim.node(j).linked_peers().contains(&node.id()),
                "node {i} is linked to {j} but not the other way round"
            );
        }
    }
}

fn closed_events(sim: &Sim, i: usize) -> Vec<(LinkState, Option<String>)> {
    sim.events_of(i)
        .iter()
        .filter_map(|e| match e {
            Event::Peer {
                state: s @ (LinkState::Closed | LinkState::Refused),
                reason,
                ..
            } => Some((*s, reason.as_ref().map(|r| r.to_string()))),
            _ => None,
        })
        .collect()
}

#[test]
fn hundred_nodes_all_get_introduced_and_linked() {
    let mut sim = Sim::new(SimConfig {
        nodes: 100,
        seed: 42,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.bridge().registered_peers(), 100);
    assert_links_consistent(&sim);
    for i in 0..100 {
        let linked = sim.node(i).linked_peers().len();
        assert!(linked >= 1, "node {i} has no link");
        // Every introduction that started finished as an authenticated link; none failed. The only
        // link a node may drop is its own offer when both sides offered at once (glare).
        let lost: Vec<_> = closed_events(&sim, i)
            .into_iter()
            .filter(|(_, reason)| {
                reason.as_deref() != Some("both sides offered; taking the peer's offer")
            })
            .collect();
        assert_eq!(lost, vec![], "node {i} lost or refused a link");
    }
    // A node that joined after at least 8 others was introduced to the 8 closest of them.
    for i in 8..100 {
        assert!(
            sim.node(i).linked_peers().len() >= 8,
            "node {i} has too few links"
        );
    }
    let total: usize = sim.nodes().iter().map(|n| n.linked_peers().len()).sum();
    println!("100 nodes: {} links, {:?}", total / 2, sim.stats());
}

#[test]
fn messages_arrive_byte_identical_and_in_order() {
    let mut sim = Sim::new(SimConfig {
        nodes: 12,
        seed: 3,
        loss: 0.2,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(30));
    assert_links_consistent(&sim);
    let mut sent = Vec::new();
    for i in 0..12 {
        for peer in sim.node(i).linked_peers() {
            let j = sim.index_of(peer).unwrap();
            for k in 0..5u8 {
                let payload: Vec<u8> = (0..(100 * usize::from(k) + i))
                    .map(|b| (b as u8) ^ k ^ (j as u8))
                    .collect();
                sim.send(i, j, &payload).expect("linked peers accept sends");
                sent.push((i, j, payload));
            }
        }
    }
    sim.run_for(Duration::from_secs(10));
    for j in 0..12 {
        let from_node = |from| sim.index_of(from).unwrap();
        let got: Vec<(usize, Vec<u8>)> = sim
            .events_of(j)
            .iter()
            .filter_map(|e| match e {
                Event::Message { from, data } => Some((from_node(*from), data.clone())),
                _ => None,
            })
            .collect();
        let expected: Vec<(usize, Vec<u8>)> = sent
            .iter()
            .filter(|(_, to, _)| *to == j)
            .map(|(i, _, p)| (*i, p.clone()))
            .collect();
        // Per sender, order is preserved.
        for i in 0..12 {
            let g: Vec<_> = got.iter().filter(|(f, _)| *f == i).collect();
            let e: Vec<_> = expected.iter().filter(|(f, _)| *f == i).collect();
            assert_eq!(g, e, "messages from {i} to {j} differ");
        }
    }
    assert_eq!(sim.stats().messages_delivered as usize, sent.len());
}

#[test]
fn a_node_with_a_wrong_link_proof_is_refused_by_everyone() {
    let bad = 4;
    let mut sim = Sim::new(SimConfig {
        nodes: 10,
        seed: 5,
        corrupt_proof_nodes: vec![bad],
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(30));
    let bad_id = sim.node(bad).id();
    assert!(sim.node(bad).linked_peers().is_empty());
    let mut refusers = BTreeSet::new();
    for i in (0..10).filter(|i| *i != bad) {
        assert!(!sim.node(i).linked_peers().contains(&bad_id));
        assert!(
            !sim.node(i).linked_peers().is_empty(),
            "honest node {i} should still link"
        );
        for e in sim.events_of(i) {
            if let Event::Peer {
                id,
                state: LinkState::Refused,
                reason,
            } = e
            {
                assert_eq!(*id, bad_id, "only the bad node is refused");
                assert!(reason
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default()
                    .contains("authentication failed"));
                refusers.insert(i);
            }
        }
    }
    assert!(
        !refusers.is_empty(),
        "somebody must have tried and refused the bad node"
    );
    assert_links_consistent(&sim);
}

#[test]
fn a_bridge_that_swaps_fingerprints_gets_every_link_refused() {
    let mut sim = Sim::new(SimConfig {
        nodes: 8,
        seed: 9,
        mitm_bridge: true,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(30));
    for i in 0..8 {
        assert!(
            sim.node(i).linked_peers().is_empty(),
            "node {i} accepted a MITM link"
        );
    }
    assert!(sim.stats().links_refused > 0);
}

#[test]
fn nodes_recover_from_ice_failures_by_asking_again() {
    let mut sim = Sim::new(SimConfig {
        nodes: 30,
        seed: 11,
        ice_failure: 0.3,
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_secs(300));
    assert!(sim.stats().ice_failures > 0);
    for i in 0..30 {
        assert!(
            !sim.node(i).linked_peers().is_empty(),
            "node {i} never linked"
        );
    }
    assert_links_consistent(&sim);
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut sim = Sim::new(SimConfig {
            nodes: 20,
            seed: 77,
            loss: 0.1,
            ..SimConfig::default()
        });
        sim.run_for(Duration::from_secs(60));
        (
            sim.stats().clone(),
            sim.nodes()
                .iter()
                .map(|n| n.linked_peers())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn connect_links_two_chosen_nodes_through_the_bridge() {
    // Nodes that never look for peers by themselves: only `connect` makes links.
    let mut cfg = SimConfig {
        nodes: 20,
        seed: 9,
        ..SimConfig::default()
    };
    cfg.node.links.target_links = 0;
    let mut sim = Sim::new(cfg);
    sim.run_for(Duration::from_secs(5));
    // A registered node finds a few peers on its own at Welcome; pick a pair that is not linked.
    let (a, b) = (0..20)
        .flat_map(|a| (0..20).map(move |b| (a, b)))
        .find(|&(a, b)| a != b && !sim.node(a).linked_peers().contains(&sim.node(b).id()))
        .expect("some pair is not linked");
    sim.connect(a, b).unwrap();
    sim.run_for(Duration::from_secs(10));
    assert!(sim.node(a).linked_peers().contains(&sim.node(b).id()));
    assert!(sim.node(b).linked_peers().contains(&sim.node(a).id()));
    // Asking again is a no-op; asking for oneself is an error.
    sim.connect(a, b).unwrap();
    assert_eq!(
        sim.connect(a, a).unwrap_err(),
        onionmesh_node::ApiError::SelfConnect
    );
    assert_links_consistent(&sim);
}

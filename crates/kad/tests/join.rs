//! Joining through one well-known node, as every page joins through its bridge's DHT node.
//!
//! The self-lookup of a joining node only meets nodes near its own ID, so it fills the buckets
//! near us and leaves the far ones (half and a quarter of the network, buckets 159 and 158)
//! nearly empty. A node with an empty far bucket answers a lookup for a key over there with
//! nodes on its own side only, and a lookup that meets only such nodes settles on a wrong set:
//! in the 1,000-node churn simulation a third of the nodes had no contact in the other half of
//! the ID space, so some keys were published to, and looked up at, a cluster hundreds of ranks
//! away from the key. Kademlia's join ends by refreshing every bucket farther than the closest
//! neighbour (Maymounkov and Mazières, section 2.3), which both fills our far buckets and puts
//! us in the far nodes' tables.

use onionmesh_kad::contact::bucket_index;
use onionmesh_kad::sim::{Sim, SimConfig};
use std::time::Duration;

const NODES: usize = 200;

fn joined_through_one_node() -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        ..SimConfig::default()
    });
    let seed = sim.join();
    for _ in 1..NODES {
        sim.join_through(&[seed]);
        sim.run_for(Duration::from_millis(50));
    }
    // Well under the 15-minute bucket refresh: only the join itself may fill the far buckets.
    sim.run_for(Duration::from_secs(30));
    sim
}

#[test]
fn nodes_joined_through_one_node_know_the_far_half_and_lookups_are_exact() {
    let mut sim = joined_through_one_node();
    // The Kademlia invariant for the far buckets: a node whose bucket 158 or 159 covers some
    // live node knows at least one node there.
    let alive: Vec<usize> = sim.alive().to_vec();
    let mut blind = Vec::new();
    for &i in &alive {
        let me = sim.contact(i).id;
        let table = sim.node(i).expect("alive").table();
        for j in [158, 159] {
            let exists = alive
                .iter()
                .any(|&o| bucket_index(&me, &sim.contact(o).id) == Some(j));
            if exists && table.bucket_len(j).0 == 0 {
                blind.push((i, j));
            }
        }
    }
    // And so lookups from anyone for anything find the true closest.
    let mut started = Vec::new();
    for _ in 0..100 {
        let origin = sim.random_alive();
        let target = sim.random_id();
        if let Some(id) = sim.find_node(origin, target) {
            started.push((origin, id, target));
        }
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(30));
    let exact = started
        .iter()
        .filter(|(origin, id, target)| {
            sim.result(*origin, *id).is_some_and(|r| {
                r.closest.iter().map(|c| c.id).collect::<Vec<_>>()
                    == sim.true_closest(target, 8, Some(*origin))
            })
        })
        .count();
    eprintln!(
        "{NODES} nodes joined through one: {} (node, far bucket) pairs empty, {exact}/100 FIND_NODE exact",
        blind.len()
    );
    assert!(
        blind.is_empty(),
        "{} (node, bucket) pairs with an empty far bucket although nodes live there: {:?}",
        blind.len(),
        &blind[..blind.len().min(10)]
    );
    assert_eq!(started.len(), 100);
    assert!(exact >= 99, "only {exact} of 100 FIND_NODE results exact");
}

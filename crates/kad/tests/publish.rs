//! Content references end to end on a small simulated network: several holders, republishing,
//! and expiry once the publisher is gone.

use onionmesh_kad::sim::{Sim, SimConfig};
use onionmesh_wire::NodeId;
use std::time::Duration;

fn network(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    for _ in 0..n {
        sim.join();
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(Duration::from_secs(30));
    sim
}

fn providers_seen(sim: &mut Sim, asker: usize, key: NodeId) -> Vec<NodeId> {
    let id = sim.find_value(asker, key).unwrap();
    sim.run_for(Duration::from_secs(60));
    let r = sim.result(asker, id).expect("lookup finished");
    r.providers.iter().map(|p| p.contact.id).collect()
}

#[test]
fn find_value_collects_providers_from_several_holders() {
    let mut sim = network(80, 11);
    let key = sim.random_id();
    let id_a = sim.publish(3, key).unwrap();
    let id_b = sim.publish(40, key).unwrap();
    sim.run_for(Duration::from_secs(60));
    let (holders, attempted) = sim.published(3, id_a).unwrap();
    assert!(
        holders >= 6 && holders == attempted,
        "{holders}/{attempted}"
    );
    assert!(sim.published(40, id_b).is_some());
    let seen = providers_seen(&mut sim, 70, key);
    assert!(seen.contains(&sim.contact(3).id) && seen.contains(&sim.contact(40).id));
}

#[test]
fn records_are_republished_and_expire_once_the_publisher_is_gone() {
    let mut sim = network(60, 12);
    let key = sim.random_id();
    sim.publish(5, key).unwrap();
    // Default: republish every 10 minutes, records live 30 minutes.
    sim.run_for(Duration::from_secs(25 * 60));
    assert_eq!(sim.publication_rounds(5), 3, "at 0, 10 and 20 minutes");
    let seen = providers_seen(&mut sim, 30, key);
    assert_eq!(seen, vec![sim.contact(5).id]);
    // The publisher leaves: its last records (stored at ~20 min) expire at ~50 min.
    sim.leave(5);
    sim.run_for(Duration::from_secs(20 * 60));
    assert_eq!(providers_seen(&mut sim, 30, key), vec![sim.contact(5).id]);
    sim.run_for(Duration::from_secs(10 * 60));
    assert!(providers_seen(&mut sim, 30, key).is_empty());
    let held: usize = sim
        .alive()
        .iter()
        .map(|&i| sim.node(i).unwrap().store().records())
        .sum();
    assert_eq!(held, 0, "expired records are dropped, not just hidden");
}

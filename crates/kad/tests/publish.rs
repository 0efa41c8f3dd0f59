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

/// Issue 11, case 7: one node publishes 100 keys at once (a visitor sharing a folder). Its
/// requests are paced below the holders' rate limits and its rounds wait their turn, so no
/// holder drops anything, every round reaches its holders, and every key is found from another
/// node.
#[test]
fn a_burst_of_100_publications_reaches_every_holder_and_every_key_is_found() {
    let mut sim = network(40, 21);
    let before = sim.stats().rejections;
    let keys: Vec<NodeId> = (0..100).map(|_| sim.random_id()).collect();
    let rounds: Vec<_> = keys.iter().map(|k| sim.publish(7, *k).unwrap()).collect();
    let start = sim.now();
    sim.run_for(Duration::from_secs(5 * 60));
    let mut last = start;
    for (key, id) in keys.iter().zip(&rounds) {
        let r = sim.publish_round(7, *id).expect("every round ends");
        assert_eq!(r.error, None, "key {key}: {r:?}");
        assert_eq!(r.holders, 8, "the k closest: {r:?}");
        last = last.max(r.at);
    }
    eprintln!("100 publications done in {} ms", last.since(start));
    assert_eq!(
        sim.stats().rejections,
        before,
        "nobody refused or dropped anything"
    );
    for key in &keys {
        let seen = providers_seen(&mut sim, 30, *key);
        assert_eq!(seen, vec![sim.contact(7).id], "key {key}");
    }
}

/// The same burst without pacing (as before the fix): holders rate-limit the publisher. The
/// retries still get the records stored, but only pacing keeps the holders from dropping
/// requests, which is what the test above checks.
#[test]
fn without_pacing_the_same_burst_is_rate_limited() {
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        kad: onionmesh_kad::KadConfig {
            pacing: onionmesh_kad::limit::PacingConfig {
                burst: 10_000,
                per_sec: 10_000,
                ..Default::default()
            },
            max_publish_lookups: 32,
            ..Default::default()
        },
        ..SimConfig::default()
    });
    for _ in 0..40 {
        sim.join();
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(Duration::from_secs(30));
    let before = sim.stats().rejections;
    for _ in 0..100 {
        let key = sim.random_id();
        sim.publish(7, key).unwrap();
    }
    sim.run_for(Duration::from_secs(5 * 60));
    assert!(sim.stats().rejections > before, "holders dropped requests");
}

/// A node that reaches nobody does not report a publication as done.
#[test]
fn a_publication_that_reaches_nobody_fails_with_a_code() {
    let mut sim = network(1, 22);
    let key = sim.random_id();
    let id = sim.publish(0, key).unwrap();
    sim.run_for(Duration::from_secs(30));
    let r = sim.publish_round(0, id).unwrap();
    assert_eq!(r.holders, 0);
    let err = r
        .error
        .clone()
        .expect("an error, not success with 0 holders");
    assert_eq!(err, onionmesh_kad::PublishError::NoNodes);
    assert_eq!(err.code(), "PUBLISH_NO_NODES");
}

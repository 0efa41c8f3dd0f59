//! Issue 12, case 3: a lookup must not wait for a silent peer once the answer is in hand, and
//! must skip a slow peer after a short timeout learned from measured round trips, not the fixed
//! long one. A *suspended* node (its process stopped, as when a laptop lid closes) neither
//! answers nor closes anything.

use onionmesh_kad::sim::{Sim, SimConfig};
use onionmesh_kad::{KadConfig, LookupId};
use onionmesh_wire::NodeId;
use std::time::Duration;

/// Five nodes, all of which know each other; node 0 publishes `key`, which all others hold.
fn five(seed: u64, kad: KadConfig) -> (Sim, NodeId) {
    let mut sim = Sim::new(SimConfig {
        seed,
        kad,
        ..SimConfig::default()
    });
    for _ in 0..5 {
        sim.join();
        sim.run_for(Duration::from_millis(300));
    }
    sim.run_for(Duration::from_secs(10));
    let key = sim.random_id();
    let id = sim.publish(0, key).unwrap();
    sim.run_for(Duration::from_secs(10));
    let round = sim.publish_round(0, id).unwrap();
    assert_eq!(
        (round.holders, &round.error),
        (4, &None),
        "all four hold it"
    );
    (sim, key)
}

/// The peer of node 4 closest to `key` other than the publisher: one it asks first.
fn closest_holder(sim: &Sim, key: &NodeId) -> usize {
    (1..4)
        .min_by_key(|&i| sim.contact(i).id.distance(key))
        .unwrap()
}

fn elapsed(sim: &Sim, node: usize, id: LookupId, start: onionmesh_kad::Time) -> Duration {
    let end = sim.finished_at(node, id).expect("finished");
    Duration::from_millis(end.since(start))
}

#[test]
fn find_value_with_one_of_four_peers_suspended_takes_one_round_trip() {
    for seed in 1..=5 {
        let (mut sim, key) = five(seed, KadConfig::default());
        let silent = closest_holder(&sim, &key);
        sim.suspend(silent);
        let start = sim.now();
        let id = sim.find_value(4, key).unwrap();
        sim.run_for(Duration::from_secs(30));
        let r = sim.result(4, id).unwrap();
        assert_eq!(r.providers.len(), 1, "seed {seed}");
        assert_eq!(r.providers[0].contact.id, sim.contact(0).id);
        // The responsive peers' slowest round trip bounds it: the first provider ends it.
        let slowest = (0..4)
            .filter(|&i| i != silent)
            .map(|i| sim.round_trip(4, i))
            .max()
            .unwrap();
        let took = elapsed(&sim, 4, id, start);
        assert!(took <= slowest, "seed {seed}: {took:?} > {slowest:?}");
    }
}

#[test]
fn a_lookup_that_needs_the_silent_peer_skips_it_after_the_adaptive_timeout() {
    // Asking for every holder there is: the lookup must give up on the suspended one (asked
    // first, as the closest) and end once the responsive ones answered.
    let kad = KadConfig {
        value_quorum: 8,
        ..KadConfig::default()
    };
    for seed in 1..=5 {
        let (mut sim, key) = five(seed, kad.clone());
        let silent = closest_holder(&sim, &key);
        let learned = sim
            .node(4)
            .unwrap()
            .round_trips()
            .timeout(&sim.contact(silent).id);
        sim.suspend(silent);
        let start = sim.now();
        let id = sim.find_value(4, key).unwrap();
        sim.run_for(Duration::from_secs(30));
        let r = sim.result(4, id).unwrap();
        assert_eq!(r.providers.len(), 1);
        assert_eq!(
            r.stats.slow, 1,
            "seed {seed}: the suspended peer was skipped"
        );
        let slowest = (0..4)
            .filter(|&i| i != silent)
            .map(|i| sim.round_trip(4, i))
            .max()
            .unwrap();
        let took = elapsed(&sim, 4, id, start);
        // The adaptive timeout for that peer, then one more round trip; far below the fixed 10 s.
        assert!(
            learned <= Duration::from_secs(1),
            "seed {seed}: learned {learned:?}"
        );
        assert!(
            took <= learned + slowest,
            "seed {seed}: {took:?} > {learned:?} + {slowest:?}"
        );
    }
}

#[test]
fn publishing_does_not_wait_for_a_silent_holder_beyond_the_adaptive_timeout() {
    for seed in 1..=5 {
        let (mut sim, _) = five(seed, KadConfig::default());
        let key = sim.random_id();
        let silent = closest_holder(&sim, &key);
        sim.suspend(silent);
        let start = sim.now();
        let id = sim.publish(4, key).unwrap();
        sim.run_for(Duration::from_secs(30));
        let round = sim.publish_round(4, id).unwrap().clone();
        // The suspended node did not answer the lookup, so the round wants the three others,
        // and gets them.
        assert_eq!(round.holders, 3, "seed {seed}: {round:?}");
        assert_eq!(round.error, None);
        let learned_max = (0..4)
            .map(|i| {
                sim.node(4)
                    .unwrap()
                    .round_trips()
                    .timeout(&sim.contact(i).id)
            })
            .max()
            .unwrap();
        let slowest = (0..4)
            .filter(|&i| i != silent)
            .map(|i| sim.round_trip(4, i))
            .max()
            .unwrap();
        let took = elapsed(&sim, 4, id, start);
        // Lookup: at most the adaptive timeout for the silent one plus a round trip to the next;
        // then one round trip of STOREs.
        assert!(
            took <= learned_max + slowest * 2,
            "seed {seed}: {took:?} > {learned_max:?} + 2 x {slowest:?}"
        );
        assert!(took < Duration::from_secs(2), "seed {seed}: {took:?}");
        // Resumed, it answers again and is asked again.
        sim.resume(silent);
        let other = sim.random_id();
        let again = sim.publish(4, other).unwrap();
        sim.run_for(Duration::from_secs(30));
        assert_eq!(sim.publish_round(4, again).unwrap().holders, 4);
    }
}

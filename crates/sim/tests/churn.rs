//! Churn (issue 8's simulation acceptance): nodes on three federated bridges; while the run goes
//! on, a fifth of the nodes leave (half of them cleanly, half by vanishing without a word), as
//! many new ones join, and one bridge crashes and comes back with an empty registry.
//!
//! Asserted afterwards:
//! - every live node is registered (the restarted bridge's pages registered again);
//! - at least 99 % of 2,000 automatic three-hop circuits (retried on a failed hop by the onion
//!   proxy) are built and echo their payload byte-identically, none through a departed node;
//! - at least 99.5 % of FIND_VALUE lookups for published keys (100 keys, 10 lookups each from
//!   random live nodes) find a live provider;
//! - the same seed gives the same run.
//!
//! The suite runs the size, 1,000 nodes and 2,000 circuits, and prints the figures
//! (`cargo test -p onionmesh-sim --test churn -- --nocapture`); `CHURN_SIM_NODES` and
//! `CHURN_SIM_CIRCUITS` change it. FIND_VALUE used to find a live provider for only 97 of 100
//! keys at this size: pages join through their bridge's DHT node, and without Kademlia's
//! join-time refresh of the far buckets a third of the nodes knew nobody in the other half of
//! the ID space, so some keys were published to (or looked up at) a cluster of nodes far from
//! the key (`onionmesh_kad`'s crate docs, "Joining"; `crates/kad/tests/join.rs` shows it in
//! the small).

use onionmesh_node::{BridgeState, CircHandle, DhtEvent, Event, OnionEvent, StreamHandle};
use onionmesh_rendezvous::RendezvousConfig;
use onionmesh_sim::{Life, Sim, SimConfig};
use onionmesh_wire::NodeId;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PAYLOAD: usize = 1_024;
const PUBLISHERS: usize = 100;
/// FIND_VALUE lookups of each published key, each from a random live node: 1,000 in all, so
/// that 99.5 % is a threshold (5 may fail) rather than "all of them".
const LOOKUPS_PER_KEY: usize = 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(k: usize) -> Vec<u8> {
    (0..PAYLOAD)
        .map(|i| (i as u32 ^ (k as u32).wrapping_mul(2_654_435_761)) as u8)
        .collect()
}

/// What one run measured.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    alive: usize,
    registered: usize,
    circuits: usize,
    echoed: usize,
    through_departed: usize,
    lookups: usize,
    found_live: usize,
    reconnections: u64,
    failures: Vec<String>,
}

/// Build `circuits` automatic three-hop circuits from random live nodes (a few hundred per
/// virtual second), echo a payload through each, and count those echoed byte-identically and
/// those built through a departed node (by short ID).
fn build_and_echo(
    sim: &mut Sim,
    rng: &mut ChaCha20Rng,
    alive: &[usize],
    departed: &BTreeSet<String>,
    circuits: usize,
) -> (usize, usize, Vec<String>) {
    let mut failures = Vec::new();
    struct Circ {
        node: usize,
        /// The path it was built on (short IDs), which a retry may have changed.
        built_path: Vec<String>,
        stream: Option<StreamHandle>,
        sent: usize,
        got: Vec<u8>,
        built: bool,
        closed: Option<String>,
    }
    let mut circs: Vec<Circ> = Vec::new();
    let mut by_handle: BTreeMap<(usize, CircHandle), usize> = BTreeMap::new();
    let mut cursor: Vec<usize> = (0..sim.nodes().len())
        .map(|i| sim.events_of(i).len())
        .collect();
    for k in 0..circuits {
        let node = alive[(rng.next_u64() % alive.len() as u64) as usize];
        match sim.with_node(node, |nd, now| nd.onion().build_auto(now, 3)) {
            Ok((id, _first_path)) => {
                by_handle.insert((node, id), circs.len());
                circs.push(Circ {
                    node,
                    built_path: Vec::new(),
                    stream: None,
                    sent: 0,
                    got: Vec::new(),
                    built: false,
                    closed: None,
                });
            }
            Err(e) => failures.push(format!("circuit {k} from node {node}: {e}")),
        }
        if k % 20 == 19 {
            sim.run_for(Duration::from_millis(100));
        }
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        sim.run_for(Duration::from_millis(200));
        let mut work = Vec::new();
        for (i, cur) in cursor.iter_mut().enumerate() {
            let evs = sim.events_of(i);
            for e in &evs[*cur..] {
                if let Event::Onion(o) = e {
                    work.push((i, o.clone()));
                }
            }
            *cur = evs.len();
        }
        for (i, e) in work {
            match e {
                OnionEvent::CircuitBuilt { circ } => {
                    if let Some(&c) = by_handle.get(&(i, circ)) {
                        circs[c].built = true;
                        circs[c].built_path = sim
                            .node(i)
                            .circuits()
                            .into_iter()
                            .find(|v| v.id == circ.0)
                            .map(|v| v.hops.iter().map(NodeId::short).collect())
                            .unwrap_or_default();
                        let (p, node) = (payload(c), circs[c].node);
                        let (s, sent) = sim.with_node(node, |nd, now| {
                            let s = nd.onion().open_stream(now, circ, "echo").unwrap();
                            (s, nd.onion().write(now, s, &p).unwrap())
                        });
                        circs[c].stream = Some(s);
                        circs[c].sent = sent;
                    }
                }
                OnionEvent::CircuitClosed { circ, reason, .. } => {
                    if let Some(&c) = by_handle.get(&(i, circ)) {
                        circs[c].closed = Some(reason);
                    }
                }
                OnionEvent::StreamReadable { stream } => {
                    if let Some(&c) = by_handle.get(&(i, stream.circ)) {
                        let data =
                            sim.with_node(i, |nd, now| nd.onion().read(now, stream, usize::MAX));
                        circs[c].got.extend(data.unwrap_or_default());
                    }
                }
                _ => {}
            }
        }
        for (c, circ) in circs.iter_mut().enumerate() {
            if let (Some(s), None) = (circ.stream, &circ.closed) {
                if circ.sent < PAYLOAD {
                    let p = payload(c);
                    let from = circ.sent;
                    circ.sent += sim
                        .with_node(circ.node, |nd, now| nd.onion().write(now, s, &p[from..]))
                        .unwrap_or(0);
                }
            }
        }
        let done = circs
            .iter()
            .all(|c| c.closed.is_some() || c.got.len() >= PAYLOAD);
        if done || rounds > 600 {
            break;
        }
    }
    let mut echoed = 0;
    let mut through_departed = 0;
    for (c, circ) in circs.iter().enumerate() {
        if circ.built && circ.built_path.iter().any(|h| departed.contains(h)) {
            through_departed += 1;
        }
        if circ.got == payload(c) {
            echoed += 1;
        } else if failures.len() < 20 {
            failures.push(format!(
                "circuit {c} from node {}: built {}, closed {:?}, {} of {PAYLOAD} bytes back",
                circ.node,
                circ.built,
                circ.closed,
                circ.got.len()
            ));
        }
    }

    (echoed, through_departed, failures)
}

fn run(n: usize, circuits: usize, seed: u64) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        bridges: 3,
        seed,
        join_interval_ms: 10,
        loss: 0.0,
        bridge: RendezvousConfig {
            frames_per_sec: 500,
            burst: 2_000,
            ..RendezvousConfig::default()
        },
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_millis(n as u64 * 10 + 10_000));
    for i in 0..n {
        sim.with_node(i, |node, _| node.onion().serve("echo").unwrap());
    }

    // Publishers (never among those who leave) announce one key each.
    let keys: Vec<NodeId> = (0..PUBLISHERS)
        .map(|_| {
            let mut id = [0u8; 20];
            rng.fill_bytes(&mut id);
            NodeId(id)
        })
        .collect();
    for (k, key) in keys.iter().enumerate() {
        let p = k % n;
        sim.with_node(p, |node, now| node.dht().publish(now, *key).unwrap());
    }
    sim.run_for(Duration::from_secs(20));

    // Churn over 20 s: a fifth leave (half silently), as many join, bridge 1 restarts.
    let leaving: Vec<usize> = {
        let mut pool: Vec<usize> = (PUBLISHERS.min(n)..n).collect();
        let mut out = Vec::new();
        while out.len() < n / 5 && !pool.is_empty() {
            let j = (rng.next_u64() % pool.len() as u64) as usize;
            out.push(pool.swap_remove(j));
        }
        out
    };
    let steps = 20;
    for step in 0..steps {
        let chunk = leaving.len().div_ceil(steps);
        for (j, &i) in leaving.iter().enumerate().skip(step * chunk).take(chunk) {
            sim.leave(i, j % 2 == 1);
        }
        for _ in 0..chunk.min(n / 5 - (step * chunk).min(n / 5)) {
            let i = sim.add_node();
            sim.with_node(i, |node, _| node.onion().serve("echo").unwrap());
        }
        if step == steps / 2 {
            sim.restart_bridge(1, Duration::from_secs(2));
        }
        sim.run_for(Duration::from_secs(1));
    }
    // Silent departures are noticed by keepalives (links) and pings (bridges) meanwhile.
    sim.run_for(Duration::from_secs(40));

    let alive = sim.alive();
    let departed: BTreeSet<String> = (0..sim.nodes().len())
        .filter(|i| matches!(sim.life(*i), Life::Left | Life::Vanished))
        .map(|i| sim.node(i).id().short())
        .collect();
    let live_ids: BTreeSet<NodeId> = alive.iter().map(|i| sim.node(*i).id()).collect();
    let registered = alive
        .iter()
        .filter(|i| sim.node(**i).bridge_state() == BridgeState::Registered)
        .count();
    let mut failures = Vec::new();
    for &i in &alive {
        if sim.node(i).bridge_state() != BridgeState::Registered {
            let last: Vec<String> = sim
                .events_of(i)
                .iter()
                .filter_map(|e| match e {
                    Event::Bridge { state, detail } => Some(format!("{state:?}: {detail}")),
                    _ => None,
                })
                .rev()
                .take(4)
                .collect();
            failures.push(format!(
                "node {i} (bridge {}) not registered: {last:?}",
                sim.bridge_of(i)
            ));
        }
    }

    let (echoed, through_departed, circuit_failures) =
        build_and_echo(&mut sim, &mut rng, &alive, &departed, circuits);
    failures.extend(circuit_failures);

    // FIND_VALUE for every published key from random live nodes.
    let mut lookups: BTreeMap<(usize, u64), NodeId> = BTreeMap::new();
    for _ in 0..LOOKUPS_PER_KEY {
        for key in &keys {
            let from = alive[(rng.next_u64() % alive.len() as u64) as usize];
            if let Ok(l) = sim.with_node(from, |nd, now| nd.dht().find_value(now, *key)) {
                lookups.insert((from, l), *key);
            }
        }
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(30));
    let mut found_live = 0;
    for (from, l) in lookups.keys() {
        let providers = sim.events_of(*from).iter().find_map(|e| match e {
            Event::Dht(DhtEvent::LookupDone {
                lookup, providers, ..
            }) if lookup == l => Some(providers.clone()),
            _ => None,
        });
        if providers
            .as_ref()
            .is_some_and(|p| p.iter().any(|id| live_ids.contains(id)))
        {
            found_live += 1;
        } else {
            let done = sim.events_of(*from).iter().find_map(|e| match e {
                Event::Dht(d @ DhtEvent::LookupDone { lookup, .. }) if lookup == l => {
                    Some(format!("{d:?}").chars().take(300).collect::<String>())
                }
                _ => None,
            });
            failures.push(format!(
                "lookup {l} from node {from} (stats {:?}): {done:?}",
                sim.node(*from).dht_stats()
            ));
        }
    }
    Outcome {
        alive: alive.len(),
        registered,
        circuits,
        echoed,
        through_departed,
        lookups: keys.len() * LOOKUPS_PER_KEY,
        found_live,
        reconnections: sim.stats().reconnections,
        failures,
    }
}

#[test]
fn churn_and_a_bridge_restart_leave_the_mesh_working() {
    let n = env("CHURN_SIM_NODES", 1_000);
    let circuits = env("CHURN_SIM_CIRCUITS", 2_000);
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let o = run(n, circuits, 11);
    println!(
        "churn: {n} nodes on 3 bridges, {} alive after churn; {} registered; {} reconnections; circuits {}/{} echoed ({} through departed nodes); FIND_VALUE {}/{} found a live provider; {:.1} s",
        o.alive,
        o.registered,
        o.reconnections,
        o.echoed,
        o.circuits,
        o.through_departed,
        o.found_live,
        o.lookups,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        o.registered, o.alive,
        "every live node is registered: {:#?}",
        o.failures
    );
    assert!(
        o.reconnections > 0,
        "the restarted bridge's pages reconnected"
    );
    assert!(
        o.echoed * 100 >= o.circuits * 99,
        "only {} of {} circuits echoed: {:#?}",
        o.echoed,
        o.circuits,
        o.failures
    );
    assert_eq!(
        o.through_departed, 0,
        "a built circuit went through a departed node"
    );
    assert!(
        o.found_live * 1000 >= o.lookups * 995,
        "only {} of {} lookups found a live provider: {:#?}",
        o.found_live,
        o.lookups,
        o.failures
    );
}

#[test]
fn churn_runs_are_deterministic() {
    let a = run(60, 50, 5);
    let b = run(60, 50, 5);
    assert_eq!(a, b);
}

/// Issue 13's acceptance: after a fifth of the nodes leave at once (their tabs close), at least
/// 99 % of the next 1,000 automatic builds succeed (each retrying around a failed hop by
/// itself), and none goes through a departed node. Size from `LEAVE_SIM_NODES` (default 1,000).
#[test]
fn after_a_fifth_leave_at_once_automatic_builds_avoid_them() {
    let n = env("LEAVE_SIM_NODES", 1_000);
    let circuits = 1_000;
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        bridges: 1,
        seed: 13,
        join_interval_ms: 10,
        loss: 0.0,
        bridge: RendezvousConfig {
            frames_per_sec: 500,
            burst: 2_000,
            ..RendezvousConfig::default()
        },
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_millis(n as u64 * 10 + 10_000));
    for i in 0..n {
        sim.with_node(i, |node, _| node.onion().serve("echo").unwrap());
    }
    let mut pool: Vec<usize> = (0..n).collect();
    let mut departed = BTreeSet::new();
    for _ in 0..n / 5 {
        let i = pool.swap_remove((rng.next_u64() % pool.len() as u64) as usize);
        departed.insert(sim.node(i).id().short());
        sim.leave(i, false);
    }
    // The closes reach the neighbours and the bridge's departure notices reach every page
    // (batched every 500 ms) within a second or two; builds start right after.
    sim.run_for(Duration::from_secs(2));
    let alive = sim.alive();
    let (echoed, through_departed, failures) =
        build_and_echo(&mut sim, &mut rng, &alive, &departed, circuits);
    println!(
        "leave: {n} nodes, {} left at once; {echoed}/{circuits} automatic circuits built and echoed, {through_departed} through departed nodes",
        departed.len()
    );
    assert!(
        echoed * 100 >= circuits * 99,
        "only {echoed} of {circuits} circuits echoed: {failures:#?}"
    );
    assert_eq!(
        through_departed, 0,
        "a built circuit went through a departed node"
    );
}

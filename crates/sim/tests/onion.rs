//! Onion routing across a simulated mesh (issue 3's acceptance run): 1,000 nodes build 10,000
//! three-hop circuits, mostly over links the routers open on demand through bridge introductions,
//! and each circuit carries a stream to a service at its last hop that echoes its payload.
//!
//! What each relay "sees" is recorded from three places:
//! - its router's circuits (`relayed_circuits`: previous and next hop, by ID);
//! - what reaches its application (service streams: the stream target and the payload);
//! - every cell frame on every link, scanned for the payload and the service name.
//!
//! Asserted: each relay's set of (previous, next) pairs is exactly the one the paths imply, so
//! no relay but the first hop ever has the proxy as a neighbour on that circuit; only the last hop's
//! application gets the stream's target and payload; neither ever crosses a link in clear; every
//! echo comes back byte-identical and in order.
//!
//! The size comes from `ONION_SIM_NODES` / `ONION_SIM_CIRCUITS` (default 1,000 / 10,000).

use onionmesh_node::{CircHandle, Event, ExitStream, NodeConfig, OnionEvent, StreamHandle};
use onionmesh_rendezvous::RendezvousConfig;
use onionmesh_sim::{Sim, SimConfig};
use onionmesh_wire::NodeId;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A long service name: found in a cell in clear would mean a leak, not chance.
const SERVICE: &str = "onionmesh-sim-echo-service-v1";
/// Every payload starts with this, then the circuit's number.
const MARK: &[u8] = b"SECRET-PAYLOAD-OF-CIRCUIT:";
const PAYLOAD_LEN: usize = 1_500;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(c: usize) -> Vec<u8> {
    let mut p = MARK.to_vec();
    p.extend_from_slice(format!("{c:08}:").as_bytes());
    let mut x = c as u32 ^ 0x9e37_79b9;
    while p.len() < PAYLOAD_LEN {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        p.push((x >> 24) as u8);
    }
    p
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A service stream at a last hop: its target, its first bytes, echo not yet sent.
type Service = (String, Vec<u8>, Vec<u8>);

struct Circ {
    proxy: usize,
    path: [usize; 3],
    id: CircHandle,
    stream: Option<StreamHandle>,
    sent: usize,
    got: Vec<u8>,
    built: bool,
    closed: Option<String>,
}

#[test]
fn thousand_nodes_ten_thousand_circuits() {
    let n = env("ONION_SIM_NODES", 1_000);
    let total = env("ONION_SIM_CIRCUITS", 10_000);
    // The test reports its own wall time; the nodes only ever see the virtual clock.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let mut node = NodeConfig::default();
    // Few links at first: most circuit hops are linked on demand (NeedLink).
    node.links.target_links = 2;
    node.links.max_links = 160;
    node.onion.router.max_circuits_per_link = 256;
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        seed: 3,
        join_interval_ms: 10,
        loss: 0.0,
        node,
        bridge: RendezvousConfig {
            peers_per_answer: 2,
            frames_per_sec: 500,
            burst: 2_000,
            ..RendezvousConfig::default()
        },
        ..SimConfig::default()
    });
    for i in 0..n {
        sim.with_node(i, |node, _| node.onion().serve(SERVICE).unwrap());
    }
    sim.run_for(Duration::from_millis(n as u64 * 10 + 5_000));
    let links_before: usize = sim.nodes().iter().map(|x| x.linked_peers().len()).sum();

    // The wire view: any cell frame with the payload mark or the service name in clear.
    let leaks = Rc::new(RefCell::new(0usize));
    let cells = Rc::new(RefCell::new(0u64));
    {
        let (leaks, cells) = (leaks.clone(), cells.clone());
        sim.set_link_tap(Some(Box::new(move |_, _, bytes| {
            // 0x10: one cell; 0x11: a batch, its count first.
            let n = match bytes.first() {
                Some(0x10) => 1,
                Some(0x11) => bytes.get(1).copied().unwrap_or(0) as u64,
                _ => 0,
            };
            if n > 0 {
                *cells.borrow_mut() += n;
                if find(bytes, MARK) || find(bytes, SERVICE.as_bytes()) {
                    *leaks.borrow_mut() += 1;
                }
            }
        })));
    }

    // Build: each node in turn picks a linked first hop and two random further hops, whose keys
    // it learns as from a directory lookup.
    let ids: Vec<NodeId> = sim.nodes().iter().map(|x| x.id()).collect();
    let index: BTreeMap<NodeId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let keys: Vec<_> = sim.nodes().iter().map(|x| x.public_key()).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut circs: Vec<Circ> = Vec::with_capacity(total);
    let mut by_handle: BTreeMap<(usize, CircHandle), usize> = BTreeMap::new();
    for c in 0..total {
        let proxy = c % n;
        let firsts = sim.node(proxy).linked_peers();
        assert!(!firsts.is_empty(), "node {proxy} has no link");
        let h1 = index[&firsts[rng.next_u32() as usize % firsts.len()]];
        let mut pick = |not: &[usize]| loop {
            let x = rng.next_u32() as usize % n;
            if !not.contains(&x) {
                break x;
            }
        };
        let h2 = pick(&[proxy, h1]);
        let h3 = pick(&[proxy, h1, h2]);
        let path = [h1, h2, h3];
        let id = sim.with_node(proxy, |node, now| {
            for &h in &path[1..] {
                node.onion().learn_peer(ids[h], &keys[h]).unwrap();
            }
            let p: Vec<NodeId> = path.iter().map(|&h| ids[h]).collect();
            node.onion().build(now, &p).unwrap()
        });
        by_handle.insert((proxy, id), c);
        circs.push(Circ {
            proxy,
            path,
            id,
            stream: None,
            sent: 0,
            got: Vec::new(),
            built: false,
            closed: None,
        });
        // About 200 circuit builds per virtual second over the whole mesh.
        if c % 20 == 19 {
            sim.run_for(Duration::from_millis(100));
        }
    }

    // Drive everything: builds finish, streams open, services echo, proxies read.
    let mut cursor = vec![0usize; n];
    // Per service stream (node, circuit, stream): its target, its first bytes, unsent echo.
    let mut svc: BTreeMap<(usize, ExitStream), Service> = BTreeMap::new();
    let mut views_checked = false;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 20_000, "the run did not finish");
        sim.run_for(Duration::from_millis(100));
        let mut work: Vec<(usize, OnionEvent)> = Vec::new();
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
                    let c = by_handle[&(i, circ)];
                    circs[c].built = true;
                }
                OnionEvent::CircuitClosed { circ, reason, .. } => {
                    let c = by_handle[&(i, circ)];
                    circs[c].closed = Some(reason);
                }
                OnionEvent::StreamOpened { .. } => {}
                OnionEvent::StreamReadable { stream } => {
                    let c = by_handle[&(i, stream.circ)];
                    let data = sim.with_node(i, |node, now| {
                        node.onion().read(now, stream, usize::MAX).unwrap()
                    });
                    circs[c].got.extend(data);
                }
                OnionEvent::ServiceStreamOpened { stream, service } => {
                    svc.insert((i, stream), (service, Vec::new(), Vec::new()));
                }
                OnionEvent::ServiceReadable { stream } | OnionEvent::ServiceWritable { stream } => {
                    let Some((_, first, pending)) = svc.get_mut(&(i, stream)) else {
                        continue;
                    };
                    let data = sim.with_node(i, |node, now| {
                        node.onion()
                            .service_read(now, stream, 64 * 1024)
                            .unwrap_or_default()
                    });
                    if first.len() < MARK.len() + 8 {
                        first.extend_from_slice(&data[..data.len().min(MARK.len() + 8)]);
                    }
                    pending.extend(data);
                    let out = std::mem::take(pending);
                    let taken = sim.with_node(i, |node, now| {
                        node.onion()
                            .service_write(now, stream, &out)
                            .unwrap_or(out.len())
                    });
                    pending.extend_from_slice(&out[taken..]);
                }
                _ => {}
            }
        }
        let all_built = circs.iter().all(|c| c.built || c.closed.is_some());
        if all_built && !views_checked {
            views_checked = true;
            check_views(&sim, &circs, &ids);
            // Every built circuit opens its stream and sends its payload.
            for (k, c) in circs.iter_mut().enumerate() {
                if c.built && c.closed.is_none() {
                    let p = payload(k);
                    let (id, proxy) = (c.id, c.proxy);
                    let (s, sent) = sim.with_node(proxy, |node, now| {
                        let s = node.onion().open_stream(now, id, SERVICE).unwrap();
                        (s, node.onion().write(now, s, &p).unwrap())
                    });
                    c.stream = Some(s);
                    c.sent = sent;
                }
            }
        }
        if views_checked {
            // Top up writes that came back short, then stop once every echo is home.
            for (k, c) in circs.iter_mut().enumerate() {
                if let (Some(s), None) = (c.stream, &c.closed) {
                    if c.sent < PAYLOAD_LEN {
                        let p = payload(k);
                        let (proxy, from) = (c.proxy, c.sent);
                        c.sent += sim.with_node(proxy, |node, now| {
                            node.onion().write(now, s, &p[from..]).unwrap()
                        });
                    }
                }
            }
            let done = circs
                .iter()
                .all(|c| c.closed.is_some() || c.got.len() >= PAYLOAD_LEN);
            if done {
                break;
            }
        }
    }

    let built = circs.iter().filter(|c| c.built).count();
    let failed: Vec<&String> = circs.iter().filter_map(|c| c.closed.as_ref()).collect();
    assert!(
        failed.is_empty(),
        "{} of {total} circuits failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(built, total);
    for (k, c) in circs.iter().enumerate() {
        assert!(c.got == payload(k), "circuit {k}: the echo differs");
    }
    // Only last hops' applications saw targets and payloads, each exactly its own circuits'.
    let mut expected: BTreeMap<usize, usize> = BTreeMap::new();
    for c in &circs {
        *expected.entry(c.path[2]).or_default() += 1;
    }
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for ((node, _), (service, first, _)) in &svc {
        assert_eq!(service, SERVICE);
        assert!(first.starts_with(MARK));
        let k: usize = std::str::from_utf8(&first[MARK.len()..MARK.len() + 8])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            circs[k].path[2], *node,
            "circuit {k}'s payload reached a node that is not its last hop"
        );
        *seen.entry(*node).or_default() += 1;
    }
    assert_eq!(seen, expected);
    assert_eq!(
        *leaks.borrow(),
        0,
        "payload or target crossed a link in clear"
    );
    let links_after: usize = sim.nodes().iter().map(|x| x.linked_peers().len()).sum();
    println!(
        "onion sim: {n} nodes, {total} 3-hop circuits, {} cells on links, links {} -> {} (opened on demand), virtual {:.0} s, wall {:.1} s",
        cells.borrow(),
        links_before / 2,
        links_after / 2,
        sim.now().as_millis() as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    assert!(
        links_after > links_before * 2,
        "routers opened links by introduction"
    );
}

/// Each relay's (previous, next) pairs are exactly the ones the paths imply.
fn check_views(sim: &Sim, circs: &[Circ], ids: &[NodeId]) {
    let mut expected: BTreeMap<usize, Vec<Vec<NodeId>>> = BTreeMap::new();
    for c in circs.iter().filter(|c| c.built && c.closed.is_none()) {
        let [a, b, d] = c.path;
        let s = |i: usize| ids[i];
        expected.entry(a).or_default().push(vec![s(c.proxy), s(b)]);
        expected.entry(b).or_default().push(vec![s(a), s(d)]);
        expected.entry(d).or_default().push(vec![s(b)]);
    }
    for (i, node) in sim.nodes().iter().enumerate() {
        let mut got: Vec<Vec<NodeId>> = node
            .relayed_circuits()
            .into_iter()
            .map(|v| v.hops)
            .collect();
        let mut want = expected.remove(&i).unwrap_or_default();
        got.sort();
        want.sort();
        assert_eq!(got, want, "node {i}'s view of the circuits through it");
    }
    // Equal views mean a proxy is a neighbour on a circuit only at that circuit's first hop: a
    // relay further along that had learned the proxy would hold a pair the paths do not imply.
}

//! Issue 9's content acceptance on a network of real nodes (`onionmesh_node::testing::Net`:
//! instant links, a real `Rendezvous`, in-memory stores, a virtual clock), deterministic. The same
//! acceptance runs with latency and federated bridges in `crates/sim/tests/ordb.rs`; this one
//! is the quick version:
//!
//! - `ORDB_NODES` nodes (default 60; the target is 500), `ORDB_FILES` files published
//!   (default 6; target 20), `ORDB_DOWNLOADS` downloads (default 30; target 200) by random
//!   nodes through 3-hop circuits, 10 % of the other nodes leaving mid-run, 5 % corrupting
//!   every piece they serve;
//! - every download completes byte-identical, so no corrupted byte was ever accepted; the
//!   corruptions that reached a requester were each caught (bad pieces counted, sources
//!   dropped); a run with corrupting nodes and no corruption caught would be vacuous, so at
//!   least one is required;
//! - anonymity from the recorded views (`OrdbApi::peers_known_for`): a requester knows only the
//!   ORDBs it asked, never a provider; a holder associates no peer with what it serves; only
//!   ORDBs learn providers.
//!
//! Run the size with
//! `ORDB_NODES=500 ORDB_FILES=20 ORDB_DOWNLOADS=200 cargo test -p onionmesh-node --release --test ordb_network`.

use onionmesh_node::testing::{data, Forge, Net, NetConfig};
use onionmesh_node::{ContentConfig, KnownAs};
use onionmesh_ordb::HashName;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;

/// What a stuck download looks like, for a failure message.
fn describe(net: &mut Net, stuck: &[(usize, HashName)]) -> String {
    let mut out = String::new();
    for &(i, h) in stuck.iter().take(3) {
        let progress = net.nodes[i].ordb().progress(&h);
        let stats = net.nodes[i].ordb().stats();
        let logs: Vec<String> = net.events[i]
            .iter()
            .filter_map(|e| match e {
                onionmesh_node::Event::Log { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        let tail = &logs[logs.len().saturating_sub(12)..];
        out += &format!(
            "\nnode {i}, {h:?}: {progress:?}\n{stats:?}\nfailed: {:?}\nlast logs: {tail:#?}\nlinks: {}",
            net.failed(i, h),
            net.nodes[i].linked_peers().len()
        );
    }
    out
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn many_downloads_complete_through_churn_and_corruption_and_nobody_learns_the_other_side() {
    let n = env("ORDB_NODES", 60).max(12);
    let files = env("ORDB_FILES", 6).max(1);
    let downloads = env("ORDB_DOWNLOADS", 30).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let pick = |rng: &mut ChaCha8Rng, n: usize| (rng.next_u64() % n as u64) as usize;

    let mut net = Net::with(NetConfig::new(n).content(ContentConfig {
        max_source_attempts: 60,
        ..ContentConfig::default()
    }));
    // Roles: publishers first, then corrupting nodes, then the rest.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, pick(&mut rng, i + 1));
    }
    let publishers = &order[..files];
    let corrupt: Vec<usize> = order[files..files + (n / 20).max(1)].to_vec();
    let others: Vec<usize> = order[files + corrupt.len()..].to_vec();
    // Leavers and requesters are disjoint: a node that leaves cannot finish its downloads.
    let leavers: Vec<usize> = others[..(n / 10).max(1)].to_vec();
    let requesters: Vec<usize> = others[leavers.len()..].to_vec();
    for &c in &corrupt {
        net.forge[c] = Some(Forge::All);
    }

    // Publish: files of 1..=3 pieces and a tail, so pieces of every shape cross.
    let mut contents: Vec<(HashName, Vec<u8>, usize)> = Vec::new();
    for (k, &p) in publishers.iter().enumerate() {
        let len = 64 * 1024 * (1 + k % 3) + 1000 * k + 17;
        let file = data(len, 100 + k as u64);
        let h = net.publish(p, &file, &format!("file-{k}.bin"));
        let pieces = len.div_ceil(64 * 1024);
        contents.push((h, file, pieces));
    }

    // The corrupting nodes fetch a file each first (honestly: their store forges only what it
    // hands out), so they hold content and serve it, forged.
    for (k, &c) in corrupt.iter().enumerate() {
        let h = contents[k % contents.len()].0;
        let now = net.now;
        net.nodes[c].ordb().download(now, h).unwrap();
        net.drain(c);
    }
    let pending = |net: &Net| -> Vec<(usize, HashName)> {
        corrupt
            .iter()
            .enumerate()
            .map(|(k, &c)| (c, contents[k % contents.len()].0))
            .filter(|&(c, h)| !net.done(c, h))
            .collect()
    };
    let end = net.now + Duration::from_secs(600);
    while !pending(&net).is_empty() {
        if net.now >= end {
            let stuck = pending(&net);
            panic!(
                "the corrupting nodes do not hold their files: {}",
                describe(&mut net, &stuck)
            );
        }
        net.tick(Duration::from_millis(100));
    }

    // Downloads in waves, churn after the first wave.
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    let mut taken: BTreeSet<(usize, usize)> = BTreeSet::new();
    while jobs.len() < downloads {
        let r = requesters[pick(&mut rng, requesters.len())];
        let f = pick(&mut rng, contents.len());
        if taken.insert((r, f)) {
            jobs.push((r, f));
        } else if taken.len() >= requesters.len() * contents.len() {
            break;
        }
    }
    let wave = 10;
    for (w, chunk) in jobs.chunks(wave).enumerate() {
        for &(r, f) in chunk {
            let h = contents[f].0;
            let now = net.now;
            net.nodes[r].ordb().download(now, h).unwrap();
            net.drain(r);
        }
        net.run();
        if w == 0 {
            // Mid-run: let the first wave get going, then 10 % of the nodes leave at once.
            net.advance_for(Duration::from_millis(300));
            for &l in &leavers {
                net.leave(l);
            }
        }
        net.until(
            Duration::from_secs(900),
            "a wave of downloads ends",
            |net| {
                chunk.iter().all(|&(r, f)| {
                    let h = contents[f].0;
                    net.done(r, h) || net.failed(r, h).is_some()
                })
            },
        );
    }

    // Every download completed, byte-identical.
    let mut failures = Vec::new();
    for &(r, f) in &jobs {
        let (h, ref file, pieces) = contents[f];
        if let Some(reason) = net.failed(r, h) {
            failures.push(format!("node {r}, file {f}: {reason}"));
            continue;
        }
        assert_eq!(
            net.stored_bytes(r, h, pieces as u32).as_deref(),
            Some(&file[..]),
            "node {r}, file {f}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );

    // Corruption: served by the corrupting nodes, and caught by the requesters.
    let forged: u32 = corrupt.iter().map(|&c| net.forged[c]).sum();
    let caught: u64 = requesters
        .iter()
        .map(|&r| net.nodes[r].ordb().stats().bad_pieces)
        .sum();
    println!(
        "{n} nodes, {} files, {} downloads: {forged} forged pieces served, {caught} caught, {} nodes left",
        contents.len(),
        jobs.len(),
        leavers.len()
    );
    assert!(
        caught >= 1,
        "no forged piece reached a requester ({forged} served)"
    );
    assert_eq!(
        caught,
        u64::from(forged),
        "every forged piece served reached a requester and was caught"
    );

    // Anonymity from the recorded views.
    let holders: BTreeSet<usize> = publishers
        .iter()
        .copied()
        .chain(jobs.iter().map(|&(r, _)| r))
        .collect();
    // A requester's downloads never ask the DHT: it associates with the content only the ORDBs
    // it asked (which of them hold it, it cannot tell). Every node is also an ORDB, and one that
    // relayed someone else's query for the same content may have looked providers up in that
    // role: it must then have served request streams.
    let mut requesters_as_ordbs = 0;
    for &(r, f) in &jobs {
        let h = contents[f].0;
        let known = net.nodes[r].ordb().peers_known_for(&h);
        assert!(known.iter().any(|(_, how)| *how == KnownAs::Ordb));
        if known.iter().any(|(_, how)| *how == KnownAs::Provider) {
            requesters_as_ordbs += 1;
            assert!(net.nodes[r].ordb().stats().requests_served > 0);
        }
    }
    println!("{requesters_as_ordbs} requesters also searched for their content as ORDBs");
    for (k, &p) in publishers.iter().enumerate() {
        // The publisher learned no peer for its file but neighbours it chose that relayed
        // queries back to it, each acting as an ORDB.
        let known = net.nodes[p].ordb().peers_known_for(&contents[k].0);
        for (id, how) in &known {
            let j = (0..n).find(|&j| net.id(j) == *id).unwrap();
            assert!(
                *how == KnownAs::Neighbour && net.nodes[j].ordb().stats().requests_served > 0,
                "publisher {p} learned {known:?}"
            );
        }
    }
    // Providers were learned only by nodes that searched as ORDBs, and never by a requester
    // about its own download (checked above); at least one search happened.
    let searches = (0..n)
        .filter(|&i| {
            contents.iter().any(|(h, _, _)| {
                net.nodes[i]
                    .ordb()
                    .peers_known_for(h)
                    .iter()
                    .any(|(_, how)| *how == KnownAs::Provider)
            })
        })
        .count();
    assert!(searches >= 1);
    assert!(holders.len() > publishers.len());
}

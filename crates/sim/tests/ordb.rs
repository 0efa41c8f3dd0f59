//! Content (issue 9's simulation acceptance) on the simulator: real nodes on federated bridges,
//! latency, in-memory stores that complete later, a virtual clock. Deterministic.
//!
//! - `ORDB_SIM_NODES` nodes (default 500, issue 9's size) on `ORDB_SIM_BRIDGES` bridges
//!   (default 2), `ORDB_SIM_FILES` files published (default 20) and `ORDB_SIM_DOWNLOADS`
//!   downloads (default 200) by random nodes, each through
//!   3-hop circuits to ORDBs, which reach the holders over their own 3-hop circuits;
//! - 10 % of the other nodes leave mid-run (half closing their tab, half vanishing);
//! - 5 % of the nodes are corrupting holders: their store hands out every piece with a byte
//!   flipped.
//!
//! Asserted: every download completes and the stored bytes equal the published file (so no
//! corrupted byte was accepted); every forged piece that reached a requester was caught there
//! (its source dropped, the piece fetched elsewhere). "Reached" is counted at the requester's
//! side of delivery: the whole pieces its downloads received ([`ContentStats::pieces_received`])
//! beyond the one good copy of each piece they needed. A forged piece a holder's store handed
//! out may never reach anyone: its request was cancelled or its circuit went while it was on
//! the way (an ORDB that cancelled a query drops late answers on that pipe or stream, unread);
//! such a piece is no undetected corruption, so it is reported, not asserted; holders advertised on
//! their neighbour channels (`DB_INFO` sent and received), never twice the same step of the
//! same content on one channel (no flooding), and some ORDBs served downloads from list
//! entries learnt that way with no DHT search at all; from the recorded views, requesters know
//! only the ORDBs they asked (a provider or a neighbour's query only as ORDBs themselves),
//! publishers associate with what they serve only neighbours they chose that relayed queries
//! as ORDBs, and no cell on any link carries a hash_name in clear (relays inside circuits never
//! see one).
//!
//! The suite runs the size (about 4 minutes of one core). A quicker look:
//! `ORDB_SIM_NODES=100 ORDB_SIM_FILES=10 ORDB_SIM_DOWNLOADS=50 cargo test -p onionmesh-sim
//! --test ordb -- --nocapture`.

use onionmesh_node::{
    ContentConfig, ContentEvent, ContentStats, DhtEvent, Event, KnownAs, NodeConfig,
};
use onionmesh_ordb::{HashName, StoreReply, StoreRequest};
use onionmesh_rendezvous::RendezvousConfig;
use onionmesh_sim::{Sim, SimConfig};
use onionmesh_wire::{Frame, LinkMsg};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

const PIECE: usize = 64 * 1024;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn content_events(sim: &Sim, i: usize) -> impl Iterator<Item = &ContentEvent> {
    sim.events_of(i).iter().filter_map(|e| match e {
        Event::Content(c) => Some(c),
        _ => None,
    })
}

fn done(sim: &Sim, i: usize, h: HashName) -> bool {
    content_events(sim, i).any(|e| *e == ContentEvent::Done { hash_name: h })
}

fn failed(sim: &Sim, i: usize, h: HashName) -> Option<String> {
    content_events(sim, i).find_map(|e| match e {
        ContentEvent::Failed { hash_name, reason } if *hash_name == h => Some(reason.clone()),
        _ => None,
    })
}

fn stored(sim: &mut Sim, i: usize, h: HashName, len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for index in 0..len.div_ceil(PIECE) as u32 {
        match sim.store_mut(i).execute(StoreRequest::GetPiece {
            hash_name: h,
            index,
        }) {
            Ok(StoreReply::Piece(Some(r))) => out.extend_from_slice(&r.bytes),
            _ => return None,
        }
    }
    Some(out)
}

/// Whether `bytes` contains one of `names` anywhere. Every cell of the run passes here, so a
/// 64 Ki-bit table of the names' first two bytes rules out almost every position before a full
/// comparison (comparing every name at every position took most of a 500-node run's time).
fn carries_a_name(bytes: &[u8], names: &[HashName]) -> bool {
    let Some(len) = names.first().map(|h| h.0.len()) else {
        return false;
    };
    let mut first_two = vec![0u64; 1024];
    for h in names {
        let k = usize::from(u16::from_be_bytes([h.0[0], h.0[1]]));
        first_two[k / 64] |= 1 << (k % 64);
    }
    bytes.windows(len).any(|w| {
        let k = usize::from(u16::from_be_bytes([w[0], w[1]]));
        first_two[k / 64] & (1 << (k % 64)) != 0 && names.iter().any(|h| h.0 == *w)
    })
}

/// Run until `cond` holds, in steps of one virtual second; panics after `limit`.
fn run_until(sim: &mut Sim, limit: Duration, what: &str, cond: impl Fn(&Sim) -> bool) {
    let end = sim.now() + limit;
    while !cond(sim) {
        assert!(sim.now() < end, "{what}: not within {limit:?}");
        sim.run_for(Duration::from_secs(1));
    }
}

#[test]
fn downloads_through_circuits_survive_churn_and_corruption_and_stay_anonymous() {
    let n = env("ORDB_SIM_NODES", 500).max(20);
    let files = env("ORDB_SIM_FILES", 20).max(1);
    let downloads = env("ORDB_SIM_DOWNLOADS", 200).max(1);
    let bridges = env("ORDB_SIM_BRIDGES", 2).max(1);
    let mut rng = ChaCha20Rng::seed_from_u64(0x0dbb);
    let pick = |rng: &mut ChaCha20Rng, n: usize| (rng.next_u64() % n as u64) as usize;

    // Roles: publishers, corrupting holders, leavers, requesters (disjoint).
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, pick(&mut rng, i + 1));
    }
    let publishers: Vec<usize> = order[..files].to_vec();
    let corrupt: Vec<usize> = order[files..files + (n / 20).max(1)].to_vec();
    let rest = &order[files + corrupt.len()..];
    let leavers: Vec<usize> = rest[..(n / 10).max(1)].to_vec();
    let requesters: Vec<usize> = rest[leavers.len()..].to_vec();

    let mut node = NodeConfig {
        content: ContentConfig {
            max_source_attempts: 60,
            // ORDB_SIM_NEIGHBOURS=0 turns adverts off (to compare with the DHT alone).
            neighbours: env("ORDB_SIM_NEIGHBOURS", 3),
            ..ContentConfig::default()
        },
        ..NodeConfig::default()
    };
    node.links.max_links = 64;
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        bridges,
        seed: 9,
        join_interval_ms: 10,
        loss: 0.0,
        node,
        bridge: RendezvousConfig {
            frames_per_sec: 500,
            burst: 2_000,
            ..RendezvousConfig::default()
        },
        forging_stores: corrupt.clone(),
        ..SimConfig::default()
    });
    sim.run_for(Duration::from_millis(n as u64 * 10 + 10_000));

    // The wire view: no cell on any link carries a hash_name in clear.
    let names: Rc<RefCell<Vec<HashName>>> = Rc::default();
    let leaks = Rc::new(RefCell::new(0usize));
    let cells = Rc::new(RefCell::new(0u64));
    {
        let (names, leaks, cells) = (names.clone(), leaks.clone(), cells.clone());
        sim.set_link_tap(Some(Box::new(move |_, _, bytes: &[u8]| {
            let cell_frame = matches!(
                LinkMsg::decode_frame(bytes),
                Ok(LinkMsg::Cell(_) | LinkMsg::Cells(_))
            );
            if !cell_frame {
                return; // DHT frames name keys by design; only circuits must hide them.
            }
            *cells.borrow_mut() += 1;
            if carries_a_name(bytes, &names.borrow()) {
                *leaks.borrow_mut() += 1;
            }
        })));
    }

    // Publish.
    let mut contents: Vec<(HashName, Vec<u8>)> = Vec::new();
    for (k, &p) in publishers.iter().enumerate() {
        let len = PIECE * (1 + k % 3) + 1000 * k + 17;
        let mut file = vec![0u8; len];
        ChaCha20Rng::seed_from_u64(100 + k as u64).fill_bytes(&mut file);
        let h = sim.with_node(p, |node, now| {
            node.ordb()
                .publish(
                    now,
                    &file,
                    "application/octet-stream",
                    &format!("file-{k}.bin"),
                )
                .unwrap()
        });
        names.borrow_mut().push(h);
        contents.push((h, file));
    }
    run_until(
        &mut sim,
        Duration::from_secs(120),
        "publications announced",
        |sim| {
            publishers.iter().zip(&contents).all(|(&p, (h, _))| {
                done(sim, p, *h)
                    && sim.events_of(p).iter().any(|e| {
                        matches!(e, Event::Dht(DhtEvent::Published { key, holders, .. })
                        if key.0 == h.0 && *holders > 0)
                    })
            })
        },
    );

    // The corrupting nodes fetch a file each (honestly) and then serve it forged.
    for (k, &c) in corrupt.iter().enumerate() {
        let h = contents[k % contents.len()].0;
        sim.with_node(c, |node, now| node.ordb().download(now, h).unwrap());
    }
    run_until(
        &mut sim,
        Duration::from_secs(600),
        "corrupting nodes hold files",
        |sim| {
            corrupt
                .iter()
                .enumerate()
                .all(|(k, &c)| done(sim, c, contents[k % contents.len()].0))
        },
    );

    // Downloads in waves of 20; after the first wave starts, 10 % of the nodes leave.
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    let mut taken = BTreeSet::new();
    while jobs.len() < downloads && taken.len() < requesters.len() * contents.len() {
        let r = requesters[pick(&mut rng, requesters.len())];
        let f = pick(&mut rng, contents.len());
        if taken.insert((r, f)) {
            jobs.push((r, f));
        }
    }
    for (w, wave) in jobs.chunks(20).enumerate() {
        for &(r, f) in wave {
            let h = contents[f].0;
            sim.with_node(r, |node, now| node.ordb().download(now, h).unwrap());
        }
        if w == 0 {
            sim.run_for(Duration::from_millis(500));
            for (j, &l) in leavers.iter().enumerate() {
                sim.leave(l, j % 2 == 1);
            }
        }
        run_until(&mut sim, Duration::from_secs(900), "a wave ends", |sim| {
            wave.iter().all(|&(r, f)| {
                let h = contents[f].0;
                done(sim, r, h) || failed(sim, r, h).is_some()
            })
        });
    }

    // Every download complete and byte-identical.
    let mut failures = Vec::new();
    for &(r, f) in &jobs {
        let (h, ref file) = contents[f];
        if let Some(reason) = failed(&sim, r, h) {
            failures.push(format!("node {r}, file {f}: {reason}"));
        } else {
            let got = stored(&mut sim, r, h, file.len());
            assert!(
                got.as_deref() == Some(&file[..]),
                "node {r}, file {f}: bytes differ"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:#?}",
        failures.len(),
        jobs.len()
    );

    // Corruption: every forged piece that reached a requester was caught there. Pieces
    // needed: one good copy of each piece of each download (requesters' and the corrupting
    // nodes' own first downloads; none resumed).
    let pieces_of = |f: usize| contents[f].1.len().div_ceil(PIECE) as u64;
    let needed: u64 = jobs.iter().map(|&(_, f)| pieces_of(f)).sum::<u64>()
        + (0..corrupt.len())
            .map(|k| pieces_of(k % contents.len()))
            .sum::<u64>();
    let forged: u64 = corrupt.iter().map(|&c| sim.forged(c)).sum();
    let (caught, received): (u64, u64) = (0..n)
        .map(|i| {
            sim.with_node(i, |node, _| {
                let s = node.ordb().stats();
                (s.bad_pieces, s.pieces_received)
            })
        })
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let reached = received.saturating_sub(needed);
    println!(
        "{n} nodes on {bridges} bridges, {} files, {} downloads, {} left: {forged} forged pieces served, {reached} reached a requester, {caught} caught, {} lost on the way (request cancelled or circuit gone); {} cells seen, {} with a hash_name in clear",
        contents.len(),
        jobs.len(),
        leavers.len(),
        forged.saturating_sub(reached),
        cells.borrow(),
        leaks.borrow()
    );
    assert!(forged >= 1, "no corrupting node was ever asked");
    assert!(reached >= 1, "no forged piece reached a requester");
    assert!(
        received >= needed,
        "{received} pieces received, {needed} needed"
    );
    assert_eq!(
        caught, reached,
        "every forged piece that reached a requester is caught"
    );
    assert!(
        reached <= forged,
        "more forged pieces reached requesters than were served"
    );

    // Adverts and the lists they fill (issue 9 items 3 and 4).
    let stats: Vec<ContentStats> = (0..n)
        .map(|i| sim.with_node(i, |node, _| node.ordb().stats()))
        .collect();
    let sum = |f: fn(&ContentStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (sent, received) = (sum(|s| s.infos_sent), sum(|s| s.infos_received));
    let (forwarded, answered) = (
        sum(|s| s.forwards_via_adverts),
        sum(|s| s.answered_via_adverts),
    );
    let searches = sum(|s| s.provider_searches);
    let listed_only = stats
        .iter()
        .filter(|s| s.answered_via_adverts > 0 && s.provider_searches == 0)
        .count();
    println!(
        "adverts: {sent} DB_INFO sent, {received} received, {} repeated; {} neighbour circuits; queries forwarded along advert lists: {forwarded}, {answered} answered; provider searches (FIND_VALUE): {searches}; ORDBs that served from advert lists alone: {listed_only}; free riders dropped: {}",
        sum(|s| s.infos_repeated),
        sum(|s| s.neighbour_circuits),
        sum(|s| s.free_riders),
    );
    assert!(sent > 0 && received > 0 && received <= sent);
    assert!(
        stats.iter().all(|s| s.infos_repeated == 0),
        "an advert was repeated on a channel (flooding)"
    );
    assert!(answered > 0, "no query was answered along an advert list");
    assert!(
        listed_only > 0,
        "no ORDB served from its advert lists alone"
    );

    // Anonymity from the recorded views.
    assert!(*cells.borrow() > 0);
    assert_eq!(*leaks.borrow(), 0, "a hash_name crossed a link in clear");
    for &(r, f) in &jobs {
        let h = contents[f].0;
        let (known, served) = sim.with_node(r, |node, _| {
            let o = node.ordb();
            (o.peers_known_for(&h), o.stats().requests_served)
        });
        assert!(known.iter().any(|(_, how)| *how == KnownAs::Ordb));
        // A provider, or a neighbour's query, can only have come to this node acting as an
        // ORDB (or holder) for others.
        if known.iter().any(|(_, how)| *how != KnownAs::Ordb) {
            assert!(served > 0, "requester {r} learned a provider of {h:?}");
        }
    }
    let ids: Vec<_> = (0..n)
        .map(|i| sim.with_node(i, |node, _| node.id()))
        .collect();
    for (k, &p) in publishers.iter().enumerate() {
        // A publisher knows only neighbours it chose that relayed queries to it as ORDBs.
        let known = sim.with_node(p, |node, _| node.ordb().peers_known_for(&contents[k].0));
        for (id, how) in &known {
            let j = ids.iter().position(|x| x == id).unwrap();
            assert!(
                *how == KnownAs::Neighbour && stats[j].requests_served > 0,
                "publisher {p} learned {known:?}"
            );
        }
    }
}

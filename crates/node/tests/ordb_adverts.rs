//! Issue 9 items 3, 4 and 8 at node level (`onionmesh_node::testing::Net`: real nodes, instant links, a
//! real bridge core, in-memory stores, a virtual clock), deterministic:
//!
//! - a holder keeps channels to neighbour ORDBs and advertises (`DB_INFO`) on them, with no
//!   repeat; an ORDB that learnt the content from an advert forwards queries along that list
//!   entry (back through the holder's channel) and serves downloads with no DHT search; nobody
//!   learns the other side's ID;
//! - an ORDB dropped as a free rider (it advertised a whole content, then answered every query
//!   for it with nothing) is never chosen again this session, not even as a download's ORDB.

use onionmesh_node::testing::{data, Net, NetConfig};
use onionmesh_node::{ContentConfig, KnownAs};
use onionmesh_ordb::{HashName, StoreRequest};
use std::time::Duration;

const PIECE: usize = 64 * 1024;

fn known_ordbs(net: &mut Net, i: usize, h: &HashName) -> Vec<onionmesh_wire::NodeId> {
    net.nodes[i]
        .ordb()
        .peers_known_for(h)
        .into_iter()
        .filter(|(_, how)| *how == KnownAs::Ordb)
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn adverts_reach_neighbours_once_and_their_lists_serve_downloads_without_the_dht() {
    let n = 10;
    // 0 publishes; 5..9 download; 0 and 9 are never introduced to each other.
    let mut net = Net::with(NetConfig {
        apart: vec![(0, 9)],
        ..NetConfig::new(n)
    });
    let file = data(4 * PIECE + 99, 7);
    let h = net.publish(0, &file, "four.bin");
    // It builds its neighbour channels (3 by default), rebuilding any that fails.
    let end = net.now + Duration::from_secs(60);
    while net.nodes[0].ordb().stats().neighbours_out < 3 {
        assert!(net.now < end, "no 3 neighbour channels within 60 s");
        net.tick(Duration::from_millis(100));
    }
    let st0 = net.nodes[0].ordb().stats();
    assert!(st0.infos_sent >= 3, "{st0:?}");

    let requesters: Vec<usize> = (5..n).collect();
    for &r in &requesters {
        net.download(r, h);
    }
    net.until(Duration::from_secs(300), "the downloads end", |net| {
        requesters
            .iter()
            .all(|&r| net.done(r, h) || net.failed(r, h).is_some())
    });
    for &r in &requesters {
        assert_eq!(net.failed(r, h), None, "node {r}");
        assert_eq!(net.stored_bytes(r, h, 5).unwrap(), file, "node {r}");
    }
    // Requesters advertise too once they hold a quarter: more adverts than the publisher's.
    net.advance_for(Duration::from_secs(5));
    let stats: Vec<_> = (0..n).map(|i| net.nodes[i].ordb().stats()).collect();
    let sent: u64 = stats.iter().map(|s| s.infos_sent).sum();
    let received: u64 = stats.iter().map(|s| s.infos_received).sum();
    println!("adverts: {sent} sent, {received} received");
    for s in &stats {
        println!(
            "  out {} in {} sent {} recv {} fwd-adv {} ans-adv {} searches {}",
            s.neighbours_out,
            s.neighbours_in,
            s.infos_sent,
            s.infos_received,
            s.forwards_via_adverts,
            s.answered_via_adverts,
            s.provider_searches
        );
    }
    assert!(sent > st0.infos_sent && received >= st0.infos_sent);
    // No flooding: no advert repeated on a channel (same content, step and kind).
    assert!(stats.iter().all(|s| s.infos_repeated == 0));
    // Some ORDB served from a list entry learnt by DB_INFO, without ever searching the DHT.
    let listed_only: Vec<usize> = (0..n)
        .filter(|&i| stats[i].answered_via_adverts > 0 && stats[i].provider_searches == 0)
        .collect();
    assert!(
        !listed_only.is_empty(),
        "no ORDB served from its advert lists alone"
    );

    // Anonymity: an ORDB that only used its lists never learnt the publisher's ID; the
    // publisher learnt only neighbours it chose, acting as ORDBs, never a requester as such.
    let id0 = net.id(0);
    for &i in &listed_only {
        let known = net.nodes[i].ordb().peers_known_for(&h);
        assert!(known.iter().all(|(id, _)| *id != id0), "{i}: {known:?}");
    }
    for (id, how) in net.nodes[0].ordb().peers_known_for(&h) {
        let j = (0..n).find(|&j| net.id(j) == id).unwrap();
        assert_eq!(how, KnownAs::Neighbour);
        assert!(
            stats[j].requests_served > 0,
            "node {j} never acted as an ORDB"
        );
    }
    for &r in &requesters {
        let known = net.nodes[r].ordb().peers_known_for(&h);
        assert!(known.iter().any(|(_, how)| *how == KnownAs::Ordb));
        // Chosen at random as an ORDB, the holder is just an ORDB to it (nothing says it
        // holds the content); any other association must come from serving as an ORDB.
        if known
            .iter()
            .any(|(id, how)| *id == id0 && *how != KnownAs::Ordb)
        {
            assert!(
                stats[r].requests_served > 0,
                "requester {r} learnt the holder"
            );
        }
    }
}

#[test]
fn an_ordb_dropped_as_a_free_rider_is_never_chosen_again_not_even_for_downloads() {
    let n = 6;
    // Every node holds something (so every node keeps neighbour channels) and a download
    // asks 5 ORDBs at once: out of 5 candidates, each would be chosen unless dropped.
    let mut net = Net::with(NetConfig::new(n).content(ContentConfig {
        sources: 5,
        max_source_attempts: 30,
        ..ContentConfig::default()
    }));
    let files: Vec<HashName> = (0..n)
        .map(|i| net.publish(i, &data(2 * PIECE + i, 20 + i as u64), &format!("f{i}")))
        .collect();
    net.advance_for(Duration::from_secs(5));
    // Node 0 turns liar: its store loses file 0, which it still advertises as whole. It
    // takes queries for it and answers each with nothing but "unavailable".
    let liar = 0;
    net.stores[liar]
        .execute(StoreRequest::Delete {
            hash_name: files[0],
        })
        .unwrap();
    for r in 1..n {
        net.download(r, files[0]);
    }
    let liar_id = net.id(liar);
    let end = net.now + Duration::from_secs(600);
    while !(1..n).any(|i| net.nodes[i].ordb().stats().free_riders > 0) {
        assert!(net.now < end, "no ORDB dropped the liar within 600 s");
        net.tick(Duration::from_millis(100));
    }
    let judges: Vec<usize> = (1..n)
        .filter(|&i| net.nodes[i].ordb().stats().free_riders > 0)
        .collect();
    println!("ORDBs that dropped the liar: {judges:?}");
    for &j in &judges {
        let logs = net.events[j].iter().any(|e| {
            matches!(e, onionmesh_node::Event::Log { text, .. }
                if text.contains(&liar_id.short().to_string()) && text.contains("not asked again"))
        });
        assert!(logs, "node {j} dropped someone else");
    }
    // A judge now downloads another file with 5 sources: every other node is asked, except
    // the liar.
    let j = judges[0];
    let other = files[(1..n).find(|&k| k != j).unwrap()];
    net.download(j, other);
    net.until(
        Duration::from_secs(300),
        "the second download ends",
        |net| net.done(j, other) || net.failed(j, other).is_some(),
    );
    assert_eq!(net.failed(j, other), None);
    let asked = known_ordbs(&mut net, j, &other);
    assert!(asked.len() >= 3, "{asked:?}");
    assert!(!asked.contains(&liar_id), "the free rider was asked again");
}

//! Content at node level, over the shared small network of
//! `onionmesh_node::testing` (real nodes, in-memory stores).
//!
//! Covers: a file published on one node and downloaded through 3-hop circuits by a node with no
//! link to the publisher, byte-identical; a holder whose store hands out a forged piece, caught
//! and fetched again; an unknown hash_name failing with a sentence; a query whose loop counter
//! is past 5; a malformed frame; a query flood refused `BUSY` with the ORDB going on; a full
//! quota stopping a download with a sentence while keeping what was stored.

use onionmesh_node::testing::{data, Forge, Net, NetConfig};
use onionmesh_node::{ContentConfig, ContentEvent, Event, KnownAs, OnionEvent, ORDB_SERVICE};
use onionmesh_onion::StreamHandle;
use onionmesh_ordb::{HashName, StoreReply, StoreRequest};
use onionmesh_wire::cell::RelayCmd;
use onionmesh_wire::db::{DbEndReason, DbMsg, DbQuery};
use std::collections::BTreeSet;
use std::time::Duration;

const PIECE: usize = 64 * 1024;

#[test]
fn a_file_published_on_one_node_downloads_on_another_with_no_link_to_it() {
    // 0 publishes, 7 downloads; the bridge never introduces them to each other.
    let mut net = Net::with(NetConfig {
        apart: vec![(0, 7)],
        ..NetConfig::new(8)
    });
    let file = data(5 * PIECE + 1234, 1);
    let h = net.publish(0, &file, "five.bin");
    let lib = net.nodes[0].ordb().library();
    assert_eq!(lib.len(), 1);
    assert!(lib[0].complete && lib[0].size == file.len() as u64 && lib[0].name == "five.bin");

    net.download(7, h);
    net.until(Duration::from_secs(120), "the download completes", |n| {
        n.done(7, h) || n.failed(7, h).is_some()
    });
    assert_eq!(net.failed(7, h), None);
    assert!(net.content(7).iter().any(|e| matches!(e,
        ContentEvent::Metadata { hash_name, size, pieces: 6, .. } if *hash_name == h && *size == file.len() as u64)));
    assert_eq!(net.stored_bytes(7, h, 6).unwrap(), file);
    let p = net.nodes[7].ordb().progress(&h).unwrap();
    assert!(p.complete && p.bytes_have == file.len() as u64);
    // The publisher served every piece, to request streams on circuits it ended.
    let served: BTreeSet<u32> = net
        .content(0)
        .iter()
        .filter_map(|e| match e {
            ContentEvent::Served { hash_name, index } if *hash_name == h => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(served.len(), 6, "{served:?}");
    assert!(!net.linked(0, 7) && !net.linked(7, 0));
    // Anonymity, from the recorded views: the requester knows only the ORDBs it asked (never
    // a provider found in the DHT), the publisher (a holder) associates no peer at all with the
    // content, and the ORDBs that searched for it are the ones that learned the providers.
    let seen7 = net.nodes[7].ordb().peers_known_for(&h);
    assert!(
        !seen7.is_empty() && seen7.iter().all(|(_, k)| *k == KnownAs::Ordb),
        "{seen7:?}"
    );
    // The publisher may know the neighbours it chose that relayed queries back (ORDBs), never 7.
    let seen0 = net.nodes[0].ordb().peers_known_for(&h);
    assert!(seen0
        .iter()
        .all(|(id, k)| *k == KnownAs::Neighbour && *id != net.id(7)));
    let id0 = net.id(0);
    let searchers: Vec<usize> = (1..7)
        .filter(|&i| {
            net.nodes[i]
                .ordb()
                .peers_known_for(&h)
                .contains(&(id0, KnownAs::Provider))
        })
        .collect();
    // The ORDBs found the holder in the DHT, or in the lists its adverts filled.
    let via_adverts: u64 = (1..7)
        .map(|i| net.nodes[i].ordb().stats().answered_via_adverts)
        .sum();
    assert!(!searchers.is_empty() || via_adverts > 0);
    for &i in &searchers {
        assert!(
            seen7.iter().any(|(id, _)| *id == net.id(i)),
            "ORDB {i} searched for nobody's request"
        );
    }
    let st = net.nodes[7].ordb().stats();
    assert!(st.source_circuits >= 1 && st.bad_pieces == 0, "{st:?}");
    // Content-circuit events stay inside the part: the application saw none of its streams.
    assert!(!net.events[7].iter().any(|e| matches!(
        e,
        Event::Onion(OnionEvent::StreamOpened { .. } | OnionEvent::ServiceStreamOpened { .. })
    )));
}

#[test]
fn a_forged_piece_is_caught_and_fetched_again() {
    // 1 downloads first and becomes a holder; then the publisher leaves, and 1's store hands
    // out piece 2 forged twice. 6 still gets the whole file, byte for byte.
    let mut net = Net::with(
        NetConfig {
            apart: vec![(0, 6), (1, 6)],
            ..NetConfig::new(8)
        }
        .content(ContentConfig {
            max_source_attempts: 40,
            ..ContentConfig::default()
        }),
    );
    let file = data(4 * PIECE, 2);
    let h = net.publish(0, &file, "four.bin");
    net.download(1, h);
    net.until(
        Duration::from_secs(120),
        "the first download completes",
        |n| n.done(1, h),
    );
    // 1 announced itself as a provider.
    net.until(Duration::from_secs(60), "1 is a provider", |n| {
        n.events[1].iter().any(|e| {
            matches!(e, Event::Dht(onionmesh_node::DhtEvent::Published { key, holders, .. })
                if key.0 == h.0 && *holders > 0)
        })
    });
    net.nodes[0].stop();
    net.drain(0);
    net.run();
    net.forge[1] = Some(Forge::Piece {
        hash_name: h,
        index: 2,
        times: 2,
    });
    net.download(6, h);
    net.until(Duration::from_secs(300), "the download completes", |n| {
        n.done(6, h) || n.failed(6, h).is_some()
    });
    assert_eq!(net.failed(6, h), None);
    assert!(net.forged[1] >= 1, "the forging store was never read");
    let st = net.nodes[6].ordb().stats();
    assert_eq!(
        u64::from(net.forged[1]),
        st.bad_pieces,
        "every forged piece is caught: {st:?}"
    );
    assert_eq!(net.stored_bytes(6, h, 4).unwrap(), file);
    let logs: Vec<String> = net.events[6]
        .iter()
        .filter_map(|e| match e {
            Event::Log { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("sent piece 2 corrupted")),
        "{logs:#?}"
    );
}

#[test]
fn an_unknown_hash_name_fails_with_a_sentence() {
    let mut net = Net::with(NetConfig::new(6).content(ContentConfig {
        max_source_attempts: 4,
        ..ContentConfig::default()
    }));
    let h = HashName([0xab; 20]);
    net.download(3, h);
    net.until(Duration::from_secs(300), "the download fails", |n| {
        n.failed(3, h).is_some()
    });
    let reason = net.failed(3, h).unwrap();
    assert!(
        reason.contains(&h.to_hex()) && reason.contains("could not be downloaded"),
        "{reason}"
    );
    assert!(net.nodes[3].ordb().progress(&h).is_none());
    // The node goes on: it can download again (and fail again) without a restart.
    net.download(3, h);
    assert!(!net.nodes[3].is_stopped());
}

fn frame(msg: &DbMsg) -> Vec<u8> {
    let (cmd, body) = msg.encode();
    let mut v = vec![cmd.0];
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(&body);
    v
}

#[test]
fn a_query_past_the_loop_counter_is_ended_and_a_malformed_frame_closes_only_its_stream() {
    let mut net = Net::new(5);
    let now = net.now;
    let target = net.id(4);
    let (circ, _) = net.nodes[0]
        .onion()
        .build_pinned(now, 3, &onionmesh_onion::PathPins::last(target))
        .unwrap();
    net.drain(0);
    net.until(Duration::from_secs(30), "the circuit is built", |n| {
        n.events[0].contains(&Event::Onion(OnionEvent::CircuitBuilt { circ }))
    });
    let open = |net: &mut Net| -> StreamHandle {
        let now = net.now;
        let s = net.nodes[0]
            .onion()
            .open_stream(now, circ, ORDB_SERVICE)
            .unwrap();
        net.drain(0);
        net.until(Duration::from_secs(10), "the stream opens", |n| {
            n.events[0].contains(&Event::Onion(OnionEvent::StreamOpened { stream: s }))
        });
        s
    };
    let s = open(&mut net);
    let q = DbMsg::Query(DbQuery {
        hash_name: HashName([1; 20]),
        piece: 0,
        offset: 0,
        count: 0,
        counter: 5,
    });
    let now = net.now;
    net.nodes[0].onion().write(now, s, &frame(&q)).unwrap();
    net.drain(0);
    net.advance_for(Duration::from_secs(1));
    let now = net.now;
    let got = net.nodes[0].onion().read(now, s, 4096).unwrap();
    assert!(got.len() > 3, "no answer: {got:?}");
    let len = usize::from(u16::from_be_bytes([got[1], got[2]]));
    match DbMsg::decode(RelayCmd(got[0]), &got[3..3 + len]).unwrap() {
        DbMsg::End(end) => assert_eq!(end.reason(), DbEndReason::LOOP, "{}", end.sentence()),
        other => panic!("expected DB_END LOOP, got {other:?}"),
    }

    // A frame claiming 60,000 bytes: that stream is closed, the circuit and the node stay.
    let s2 = open(&mut net);
    let now = net.now;
    net.nodes[0]
        .onion()
        .write(now, s2, &[0x70, 0xea, 0x60, 1, 2, 3])
        .unwrap();
    net.drain(0);
    net.advance_for(Duration::from_secs(1));
    assert!(net.events[0].iter().any(|e| matches!(e,
        Event::Onion(OnionEvent::StreamEnded { stream, .. }) if *stream == s2)));
    assert!(net.events[4].iter().any(|e| matches!(e,
        Event::Log { text, .. } if text.contains("more than the 498 allowed"))));
    assert!(!net.events[0].iter().any(|e| matches!(e,
        Event::Onion(OnionEvent::CircuitClosed { circ: c, .. }) if *c == circ)));
    // The same ORDB still answers on a new stream of the same circuit.
    let s3 = open(&mut net);
    let now = net.now;
    net.nodes[0].onion().write(now, s3, &frame(&q)).unwrap();
    net.drain(0);
    net.advance_for(Duration::from_secs(1));
    let now = net.now;
    assert!(!net.nodes[0].onion().read(now, s3, 4096).unwrap().is_empty());
}

#[test]
fn a_full_quota_stops_the_download_with_a_sentence_and_keeps_what_was_stored() {
    // 5's store holds about two pieces of a six-piece file.
    let quota = 2 * PIECE as u64 + 20_000;
    let mut net = Net::with(NetConfig {
        apart: vec![(0, 5)],
        quotas: vec![(5, quota)],
        ..NetConfig::new(7)
    });
    let file = data(6 * PIECE, 3);
    let h = net.publish(0, &file, "big.bin");
    net.download(5, h);
    net.until(Duration::from_secs(120), "the download stops", |n| {
        n.failed(5, h).is_some() || n.done(5, h)
    });
    let reason = net.failed(5, h).expect("a full store stops the download");
    assert!(
        reason.contains("storage is full") && reason.contains("nothing stored was lost"),
        "{reason}"
    );
    // What was stored is still there, whole and verified, and still listed.
    let listed = match net.stores[5].execute(StoreRequest::List) {
        Ok(StoreReply::List(l)) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(listed.len(), 1);
    let have = listed[0].pieces.clone();
    assert!(!have.is_empty() && have.len() < 6, "{have:?}");
    for &i in &have {
        let Ok(StoreReply::Piece(Some(rec))) = net.stores[5].execute(StoreRequest::GetPiece {
            hash_name: h,
            index: i,
        }) else {
            panic!("piece {i} lost");
        };
        let at = i as usize * PIECE;
        assert_eq!(rec.bytes, file[at..at + PIECE]);
    }
    let lib = net.nodes[5].ordb().library();
    assert_eq!(lib.len(), 1);
    assert!(
        !lib[0].complete && !lib[0].downloading && lib[0].bytes_have == (have.len() * PIECE) as u64
    );
    // More traffic after the failure does not make the node lose what it holds.
    net.advance_for(Duration::from_secs(20));
    match net.stores[5].execute(StoreRequest::List) {
        Ok(StoreReply::List(l)) => assert_eq!(l[0].pieces, have),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_query_flood_is_refused_busy_and_the_ordb_goes_on() {
    let mut net = Net::new(5);
    let now = net.now;
    let target = net.id(4);
    let (circ, _) = net.nodes[0]
        .onion()
        .build_pinned(now, 3, &onionmesh_onion::PathPins::last(target))
        .unwrap();
    net.drain(0);
    net.until(Duration::from_secs(30), "the circuit is built", |n| {
        n.events[0].contains(&Event::Onion(OnionEvent::CircuitBuilt { circ }))
    });
    // 30 request streams at once, 20 queries each, all in the same instant: 600 queries
    // against the relay's burst of 400.
    let q = DbMsg::Query(DbQuery {
        hash_name: HashName([2; 20]),
        piece: 0,
        offset: 0,
        count: 0,
        counter: 5,
    });
    let burst: Vec<u8> = (0..20).flat_map(|_| frame(&q)).collect();
    let now = net.now;
    let streams: Vec<StreamHandle> = (0..30)
        .map(|_| {
            net.nodes[0]
                .onion()
                .open_stream(now, circ, ORDB_SERVICE)
                .unwrap()
        })
        .collect();
    net.drain(0);
    net.until(Duration::from_secs(10), "the streams open", |n| {
        streams
            .iter()
            .all(|s| n.events[0].contains(&Event::Onion(OnionEvent::StreamOpened { stream: *s })))
    });
    for &s in &streams {
        let now = net.now;
        assert_eq!(
            net.nodes[0].onion().write(now, s, &burst).unwrap(),
            burst.len()
        );
    }
    net.drain(0);
    net.run();
    let refusals = |net: &Net, what: &str| {
        net.events[4]
            .iter()
            .filter(|e| matches!(e, Event::Log { text, .. } if text.contains(what)))
            .count()
    };
    let busy = refusals(&net, "answered BUSY");
    assert!(busy >= 1, "no query was refused");
    assert!(refusals(&net, "answered LOOP") >= 1);
    assert!(!net.nodes[4].is_stopped());
    // A second later the bucket has refilled: a fresh stream is answered as usual.
    net.advance_for(Duration::from_secs(3));
    let before = refusals(&net, "answered LOOP");
    let now = net.now;
    let s = net.nodes[0]
        .onion()
        .open_stream(now, circ, ORDB_SERVICE)
        .unwrap();
    net.drain(0);
    net.until(Duration::from_secs(10), "the stream opens", |n| {
        n.events[0].contains(&Event::Onion(OnionEvent::StreamOpened { stream: s }))
    });
    let now = net.now;
    net.nodes[0].onion().write(now, s, &frame(&q)).unwrap();
    net.drain(0);
    net.run();
    assert_eq!(refusals(&net, "answered LOOP"), before + 1);
}

#[test]
fn a_stream_to_the_ordb_service_opens_without_waiting_for_a_timer() {
    // The ORDB part takes the service's events for itself; the node must still hand out the
    // onion cells that follow them in the same drain (a regression: they waited for the next
    // timer, a second later).
    let mut net = Net::new(5);
    let now = net.now;
    let target = net.id(4);
    let (circ, _) = net.nodes[0]
        .onion()
        .build_pinned(now, 3, &onionmesh_onion::PathPins::last(target))
        .unwrap();
    net.drain(0);
    net.until(Duration::from_secs(30), "the circuit is built", |n| {
        n.events[0].contains(&Event::Onion(OnionEvent::CircuitBuilt { circ }))
    });
    let now = net.now;
    let s = net.nodes[0]
        .onion()
        .open_stream(now, circ, ORDB_SERVICE)
        .unwrap();
    net.drain(0);
    net.run();
    assert!(net.events[0].contains(&Event::Onion(OnionEvent::StreamOpened { stream: s })));
}

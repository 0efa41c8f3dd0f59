use super::*;
use crate::download::{Download, DownloadConfig, DownloadEvent, DownloadInput, SourceId};
use crate::publish::publish_bytes;
use crate::store::{MemStore, Store};
use onionmesh_bounded::FlatSet;
use rand_chacha::rand_core::SeedableRng;

const T0: Time = Time::from_millis(0);

fn name(b: u8) -> HashName {
    HashName([b; 20])
}

fn query(h: HashName, piece: u32, count: u16, counter: u8) -> DbQuery {
    DbQuery {
        hash_name: h,
        piece,
        offset: 0,
        count,
        counter,
    }
}

fn info(h: HashName, completion: Completion, flags: InfoFlags) -> DbInfo {
    DbInfo {
        hash_name: h,
        completion,
        flags,
    }
}

fn drain(r: &mut Relay) -> Vec<RelayOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn ends(out: &[RelayOutput]) -> Vec<(RequestId, DbEndReason)> {
    out.iter()
        .filter_map(|o| match o {
            RelayOutput::Reply {
                to,
                msg: DbMsg::End(e),
            } => Some((*to, e.reason())),
            _ => None,
        })
        .collect()
}

fn forwards(out: &[RelayOutput]) -> Vec<(RelayId, OrdbCirc, DbQuery)> {
    out.iter()
        .filter_map(|o| match o {
            RelayOutput::Forward {
                relay, via, query, ..
            } => Some((*relay, *via, *query)),
            _ => None,
        })
        .collect()
}

fn relay_with_neighbours(config: RelayConfig, circs: &[u64]) -> Relay {
    let mut r = Relay::new(T0, config);
    for c in circs {
        r.handle_input(
            T0,
            RelayInput::CircuitUp {
                circ: OrdbCirc(*c),
                neighbour: true,
            },
        );
    }
    drain(&mut r);
    r
}

/// A query for piece 0 of `h` from request stream `from` is forwarded via `via`, whose ORDB
/// answers `DB_END UNAVAILABLE`. Returns what the relay did after that answer.
fn ask_and_deny(r: &mut Relay, h: HashName, from: u64, via: OrdbCirc) -> Vec<RelayOutput> {
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(from),
            query: query(h, 0, 1, 0),
        },
    );
    let f = forwards(&drain(r));
    assert_eq!(f[0].1, via);
    r.handle_input(
        T0,
        RelayInput::Upstream {
            relay: f[0].0,
            msg: DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
        },
    );
    drain(r)
}

/// A requester's download served by a relay that holds the content, through a memory store.
#[test]
fn held_content_is_served_and_verifies_at_the_requester() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (publication, records) = publish_bytes(&mut rng, &data, "video/webm", "v", 16384).unwrap();
    let d = publication.descriptor().clone();
    let h = d.hash_name();
    let mut store = MemStore::new(10_000_000);
    store
        .execute(StoreRequest::PutDescriptor {
            hash_name: h,
            kind: d.kind(),
            descriptor: d.encoded().to_vec(),
            source: None,
        })
        .unwrap();
    for (i, rec) in records.iter().enumerate() {
        store
            .execute(StoreRequest::PutPiece {
                hash_name: h,
                index: i as u32,
                record: rec.clone(),
            })
            .unwrap();
    }
    let mut relay = Relay::new(T0, RelayConfig::default());
    relay.handle_input(
        T0,
        RelayInput::Hold {
            descriptor: Box::new(d.clone()),
            pieces: (0..d.piece_count()).collect(),
        },
    );
    // Holding everything with no neighbour: a DHT provider, no adverts.
    assert_eq!(drain(&mut relay), vec![RelayOutput::Provide(h)]);

    let mut dl = Download::new(h, DownloadConfig::default(), [3; 32]);
    let src = SourceId(1);
    dl.handle_input(T0, DownloadInput::AddSource(src)).unwrap();
    let mut got = FlatMap::new();
    let mut served = 0;
    let mut now = T0;
    for _ in 0..100_000 {
        now = now + Duration::from_millis(1);
        let mut progressed = false;
        while let Some(ev) = dl.poll_event() {
            progressed = true;
            match ev {
                DownloadEvent::Send {
                    msg: DbMsg::Query(q),
                    ..
                } => relay.handle_input(
                    now,
                    RelayInput::Query {
                        from: RequestId(7),
                        query: q,
                    },
                ),
                DownloadEvent::Piece { index, record } => {
                    got.insert(index, record.bytes);
                }
                DownloadEvent::ReplaceSource { problem, .. } => panic!("{problem:?}"),
                _ => {}
            }
        }
        while let Some(o) = relay.poll_output() {
            progressed = true;
            match o {
                RelayOutput::Store { id, request } => {
                    assert!(id.0 & RELAY_STORE_OP_BIT != 0);
                    store.submit(id, request);
                }
                RelayOutput::Reply { to, msg } => {
                    assert_eq!(to, RequestId(7));
                    dl.handle_input(now, DownloadInput::Message { source: src, msg })
                        .unwrap();
                }
                RelayOutput::Event(RelayEvent::Served { .. }) => served += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(c) = store.poll_completion() {
            progressed = true;
            relay.handle_input(now, RelayInput::Store(c));
        }
        if !progressed {
            break;
        }
    }
    assert!(dl.is_complete());
    assert_eq!(got.values().flatten().copied().collect::<Vec<u8>>(), data);
    assert_eq!(served, d.piece_count());
}

#[test]
fn queries_are_relayed_along_the_list_in_rotation() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1, 2, 3]);
    let h = name(5);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(2),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    drain(&mut r);
    assert_eq!(r.listed(&h), vec![OrdbCirc(1), OrdbCirc(2)]);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(10),
            query: query(h, 0, 1, 2),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(11),
            query: query(h, 4, 1, 0),
        },
    );
    let f = forwards(&drain(&mut r));
    assert_eq!(f.len(), 2);
    // First entry first, then the next one; counters go up by one.
    assert_eq!((f[0].1, f[0].2.counter), (OrdbCirc(1), 3));
    assert_eq!((f[1].1, f[1].2.counter), (OrdbCirc(2), 1));
    assert_eq!(r.listed(&h), vec![OrdbCirc(1), OrdbCirc(2)]);
    // Answers go back down to the stream that asked, unchanged.
    let data = DbMsg::Data(DataSlice::new(4, 0, vec![9; 10]).unwrap());
    r.handle_input(
        T0,
        RelayInput::Upstream {
            relay: f[1].0,
            msg: data.clone(),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![RelayOutput::Reply {
            to: RequestId(11),
            msg: data
        }]
    );
    // The next query of that stream goes through the same pipe.
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(11),
            query: query(h, 5, 1, 0),
        },
    );
    let f2 = forwards(&drain(&mut r));
    assert_eq!(f2, vec![(f[1].0, OrdbCirc(2), query(h, 5, 1, 1))]);
}

/// Queries go to an ORDB that holds the whole content before one that holds a share, and to
/// either before one that only passed a reference on; rotation stays within the best rank, and
/// the others are used when the better ones are gone.
#[test]
fn queries_go_to_holders_before_shares_and_shares_before_references() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1, 2, 3, 4]);
    let h = name(6);
    let adverts = [
        (1, Completion::Full, InfoFlags::REFERENCE),
        (2, Completion::Half, InfoFlags::default()),
        (3, Completion::Full, InfoFlags::default()),
        (4, Completion::Full, InfoFlags::default()),
    ];
    for (c, completion, flags) in adverts {
        r.handle_input(
            T0,
            RelayInput::Info {
                from: OrdbCirc(c),
                info: info(h, completion, flags),
            },
        );
    }
    drain(&mut r);
    let mut next = 0u64;
    let mut ask = |r: &mut Relay| {
        next += 1;
        r.handle_input(
            T0,
            RelayInput::Query {
                from: RequestId(next),
                query: query(h, 0, 1, 0),
            },
        );
        let f = forwards(&drain(r));
        assert_eq!(f.len(), 1, "one forward per query: {f:?}");
        f[0].1
    };
    // The two whole holders, in rotation; never the share or the reference.
    let firsts: Vec<OrdbCirc> = (0..4).map(|_| ask(&mut r)).collect();
    assert_eq!(
        firsts,
        vec![OrdbCirc(3), OrdbCirc(4), OrdbCirc(3), OrdbCirc(4)]
    );
    // Without them, the share; without it too, the reference.
    r.handle_input(T0, RelayInput::CircuitDown(OrdbCirc(3)));
    r.handle_input(T0, RelayInput::CircuitDown(OrdbCirc(4)));
    drain(&mut r);
    assert_eq!(ask(&mut r), OrdbCirc(2));
    r.handle_input(T0, RelayInput::CircuitDown(OrdbCirc(2)));
    drain(&mut r);
    assert_eq!(ask(&mut r), OrdbCirc(1));
}

/// An ORDB that only passed a reference on (R) and then has nothing is not a free rider, even
/// when the reference said 100 %.
#[test]
fn a_reference_that_finds_nothing_is_not_a_free_rider() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1]);
    let h = name(41);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::REFERENCE),
        },
    );
    drain(&mut r);
    for i in 0..5 {
        ask_and_deny(&mut r, h, i, OrdbCirc(1));
    }
    assert_eq!(r.stats().banned, 0);
}

#[test]
fn the_loop_counter_stops_at_five() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1]);
    let h = name(6);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    drain(&mut r);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(1),
            query: query(h, 0, 1, 5),
        },
    );
    assert_eq!(
        ends(&drain(&mut r)),
        vec![(RequestId(1), DbEndReason::LOOP)]
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(2),
            query: query(h, 0, 1, 4),
        },
    );
    let f = forwards(&drain(&mut r));
    assert_eq!(f[0].2.counter, 5);
}

#[test]
fn with_no_list_entry_the_dht_is_asked() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[]);
    let h = name(7);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(1),
            query: query(h, 0, 0, 0),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(2),
            query: query(h, 0, 0, 0),
        },
    );
    // One search for both.
    assert_eq!(drain(&mut r), vec![RelayOutput::FindProviders(h)]);
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h,
            circs: vec![OrdbCirc(40)],
        },
    );
    let f = forwards(&drain(&mut r));
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|x| x.1 == OrdbCirc(40)));

    // Nothing found: UNAVAILABLE, with a sentence.
    let h2 = name(8);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(3),
            query: query(h2, 0, 0, 0),
        },
    );
    drain(&mut r);
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h2,
            circs: vec![],
        },
    );
    let out = drain(&mut r);
    assert_eq!(ends(&out), vec![(RequestId(3), DbEndReason::UNAVAILABLE)]);
    assert!(out
        .iter()
        .any(|o| matches!(o, RelayOutput::Event(RelayEvent::Refused { sentence, .. }) if sentence.contains("No node"))));
    // A search that never answers times out the same way.
    let h3 = name(9);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(4),
            query: query(h3, 0, 0, 0),
        },
    );
    drain(&mut r);
    let mut ended = Vec::new();
    while let Some(t) = r.poll_timeout() {
        assert!(
            t.as_millis() <= 60_000,
            "the search should end by its timeout"
        );
        r.handle_input(t, RelayInput::Timeout);
        ended.extend(ends(&drain(&mut r)));
        if ended.iter().any(|e| e.0 == RequestId(4)) {
            break;
        }
    }
    assert!(ended.contains(&(RequestId(4), DbEndReason::UNAVAILABLE)));
    // The unanswered forwards to circuit 40 were given up on as well.
    assert!(ended.contains(&(RequestId(1), DbEndReason::UNAVAILABLE)));
}

#[test]
fn references_are_passed_once_to_those_who_lack_them() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1, 2, 3]);
    let h = name(11);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Quarter, InfoFlags::FACILITATOR),
        },
    );
    let out = drain(&mut r);
    let expected: Vec<RelayOutput> = [2, 3]
        .iter()
        .map(|c| RelayOutput::SendInfo {
            to: OrdbCirc(*c),
            // The facilitator flag was the advertiser's, not this node's; R says this node
            // only passes the reference on.
            info: info(h, Completion::Quarter, InfoFlags::REFERENCE),
        })
        .collect();
    assert_eq!(out, expected);
    // The same reference again, from another neighbour: already known, nothing sent.
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(2),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    assert_eq!(drain(&mut r), vec![]);
    // A stream reference goes in OR_streams; adverts from unknown circuits are ignored.
    let s = name(12);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(99),
            info: info(s, Completion::Full, InfoFlags::STREAM),
        },
    );
    assert_eq!(drain(&mut r), vec![]);
    assert!(r.listed(&s).is_empty());
}

#[test]
fn own_content_is_advertised_at_each_quarter_with_the_f_flag() {
    let config = RelayConfig {
        facilitator: true,
        ..RelayConfig::default()
    };
    let mut r = relay_with_neighbours(config, &[1, 2]);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let (p, _) = publish_bytes(&mut rng, &[3; 8 * 16384], "a/b", "x", 16384).unwrap();
    let d = p.descriptor().clone();
    let h = d.hash_name();
    r.handle_input(
        T0,
        RelayInput::Hold {
            descriptor: Box::new(d),
            pieces: vec![],
        },
    );
    assert_eq!(drain(&mut r), vec![]);
    let mut adverts = Vec::new();
    let mut provides = 0;
    for i in 0..8 {
        r.handle_input(
            T0,
            RelayInput::PieceStored {
                hash_name: h,
                index: i,
            },
        );
        // A repeat changes nothing.
        r.handle_input(
            T0,
            RelayInput::PieceStored {
                hash_name: h,
                index: i,
            },
        );
        for o in drain(&mut r) {
            match o {
                RelayOutput::SendInfo { to, info } => {
                    assert_eq!(info.flags, InfoFlags::FACILITATOR);
                    adverts.push((i, to, info.completion));
                }
                RelayOutput::Provide(x) => {
                    assert_eq!((x, i), (h, 1));
                    provides += 1;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(provides, 1);
    let steps: Vec<(u32, Completion)> = adverts
        .iter()
        .filter(|a| a.1 == OrdbCirc(1))
        .map(|a| (a.0, a.2))
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, Completion::Quarter),
            (3, Completion::Half),
            (5, Completion::ThreeQuarters),
            (7, Completion::Full)
        ]
    );
    assert_eq!(adverts.len(), 8);
    assert_eq!(r.held_completion(&h), Some(Completion::Full));
    // A neighbour that joins later is told what is held.
    r.handle_input(
        T0,
        RelayInput::CircuitUp {
            circ: OrdbCirc(3),
            neighbour: true,
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![RelayOutput::SendInfo {
            to: OrdbCirc(3),
            info: info(h, Completion::Full, InfoFlags::FACILITATOR)
        }]
    );
}

#[test]
fn a_free_rider_is_dropped_for_the_session() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1, 2]);
    let h = name(13);
    for c in [1, 2] {
        r.handle_input(
            T0,
            RelayInput::Info {
                from: OrdbCirc(c),
                info: info(h, Completion::Full, InfoFlags::default()),
            },
        );
    }
    drain(&mut r);
    let mut now = T0;
    let mut dropped = false;
    for i in 0..3u64 {
        // Make circuit 1 the next in rotation by asking twice when needed.
        r.handle_input(
            now,
            RelayInput::Query {
                from: RequestId(100 + i),
                query: query(h, 0, 1, 0),
            },
        );
        let f = forwards(&drain(&mut r));
        let to_one = f.iter().find(|x| x.1 == OrdbCirc(1));
        let Some(&(id1, _, _)) = to_one else {
            // Circuit 2 got it: it answers.
            r.handle_input(
                now,
                RelayInput::Upstream {
                    relay: f[0].0,
                    msg: DbMsg::Data(DataSlice::new(0, 0, vec![1]).unwrap()),
                },
            );
            drain(&mut r);
            continue;
        };
        // Circuit 1 says nothing: after the timeout, a strike, and the query goes to 2.
        now = r.poll_timeout().unwrap();
        r.handle_input(now, RelayInput::Timeout);
        let out = drain(&mut r);
        assert!(out.contains(&RelayOutput::CancelForward(id1)));
        dropped |= out.contains(&RelayOutput::Event(RelayEvent::FreeRiderDropped(OrdbCirc(
            1,
        ))));
        assert!(forwards(&out).iter().all(|x| x.1 == OrdbCirc(2)));
    }
    // Three unanswered queries at most reach circuit 1 (one per rotation)...
    for i in 0..6u64 {
        r.handle_input(
            now,
            RelayInput::Query {
                from: RequestId(200 + i),
                query: query(h, 0, 1, 0),
            },
        );
        for f in forwards(&drain(&mut r)) {
            if f.1 == OrdbCirc(1) {
                now = r.poll_timeout().unwrap();
                r.handle_input(now, RelayInput::Timeout);
                let out = drain(&mut r);
                dropped |= out.contains(&RelayOutput::Event(RelayEvent::FreeRiderDropped(
                    OrdbCirc(1),
                )));
            }
        }
    }
    // ...then it is gone from the lists and never chosen again.
    assert!(dropped);
    assert_eq!(r.listed(&h), vec![OrdbCirc(2)]);
    r.handle_input(
        now,
        RelayInput::Query {
            from: RequestId(999),
            query: query(h, 0, 1, 0),
        },
    );
    assert!(forwards(&drain(&mut r)).iter().all(|f| f.1 == OrdbCirc(2)));
    // Its adverts are ignored too.
    r.handle_input(
        now,
        RelayInput::CircuitUp {
            circ: OrdbCirc(1),
            neighbour: true,
        },
    );
    r.handle_input(
        now,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(name(14), Completion::Full, InfoFlags::default()),
        },
    );
    assert!(r.listed(&name(14)).is_empty());
}

#[test]
fn a_query_flood_is_refused_busy() {
    let config = RelayConfig {
        query_burst: 5,
        queries_per_sec: 1,
        ..RelayConfig::default()
    };
    let mut r = relay_with_neighbours(config, &[]);
    let h = name(15);
    let mut busy = 0;
    for i in 0..20 {
        r.handle_input(
            T0,
            RelayInput::Query {
                from: RequestId(i),
                query: query(h, 0, 0, 0),
            },
        );
        busy += ends(&drain(&mut r))
            .iter()
            .filter(|e| e.1 == DbEndReason::BUSY)
            .count();
    }
    assert_eq!(busy, 15);
    // Sessions are bounded too.
    let config = RelayConfig {
        max_sessions: 2,
        ..RelayConfig::default()
    };
    let mut r = relay_with_neighbours(config, &[]);
    for i in 0..3 {
        r.handle_input(
            T0,
            RelayInput::Query {
                from: RequestId(i),
                query: query(h, 0, 0, 0),
            },
        );
    }
    assert_eq!(
        ends(&drain(&mut r)),
        vec![(RequestId(2), DbEndReason::BUSY)]
    );
}

#[test]
fn a_store_failure_is_a_sentence_and_the_relay_goes_on() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let (p, _) = publish_bytes(&mut rng, &[1; 40_000], "a/b", "x", 16384).unwrap();
    let d = p.descriptor().clone();
    let h = d.hash_name();
    let mut r = relay_with_neighbours(RelayConfig::default(), &[]);
    r.handle_input(
        T0,
        RelayInput::Hold {
            descriptor: Box::new(d),
            pieces: vec![0, 1, 2],
        },
    );
    drain(&mut r);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(1),
            query: query(h, 0, 2, 0),
        },
    );
    let out = drain(&mut r);
    let Some(RelayOutput::Store { id, .. }) = out.first() else {
        panic!("{out:?}")
    };
    r.handle_input(
        T0,
        RelayInput::Store(StoreCompletion {
            id: *id,
            result: Err(StoreError::Backend("QuotaExceededError".into())),
        }),
    );
    let out = drain(&mut r);
    assert_eq!(ends(&out), vec![(RequestId(1), DbEndReason::DESTROYED)]);
    assert!(out
        .iter()
        .any(|o| matches!(o, RelayOutput::Event(RelayEvent::StoreFailed(_)))));
    // Out-of-range and over-long queries are refused with BAD_REQUEST.
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(2),
            query: query(h, 2, 5, 0),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(3),
            query: query(h, 0, 1000, 0),
        },
    );
    assert_eq!(
        ends(&drain(&mut r)),
        vec![
            (RequestId(2), DbEndReason::BAD_REQUEST),
            (RequestId(3), DbEndReason::BAD_REQUEST)
        ]
    );
}

mod bounds {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Query(u64, u8, u32, u16, u8),
        Closed(u64),
        Up(u64, bool),
        Down(u64),
        Info(u64, u8, u8, u8),
        Upstream(u64, u8),
        UpClosed(u64),
        Providers(u8, Vec<u64>),
        StoreDone(u8),
        Stored(u32),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..40, 0u8..6, 0u32..8, 0u16..5, 0u8..7).prop_map(|(a, b, c, d, e)| Op::Query(a, b, c, d, e)),
            1 => (0u64..40).prop_map(Op::Closed),
            2 => (0u64..20, any::<bool>()).prop_map(|(c, n)| Op::Up(c, n)),
            1 => (0u64..20).prop_map(Op::Down),
            3 => (0u64..20, 0u8..6, 0u8..4, 0u8..4).prop_map(|(a, b, c, d)| Op::Info(a, b, c, d)),
            3 => (0u64..30, 0u8..4).prop_map(|(a, b)| Op::Upstream(a, b)),
            1 => (0u64..30).prop_map(Op::UpClosed),
            1 => (0u8..6, proptest::collection::vec(0u64..20, 0..4)).prop_map(|(a, b)| Op::Providers(a, b)),
            2 => (0u8..3).prop_map(Op::StoreDone),
            1 => (0u32..8).prop_map(Op::Stored),
            1 => (0u64..40_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn tables_stay_bounded_whatever_arrives(ops in proptest::collection::vec(op(), 1..300)) {
            let config = RelayConfig {
                max_names: 4,
                max_entries_per_name: 3,
                max_circuits: 10,
                max_sessions: 8,
                max_queued_per_session: 2,
                max_relays: 6,
                max_finds: 3,
                max_parked_per_find: 2,
                ..RelayConfig::default()
            };
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
            let (p, records) = publish_bytes(&mut rng, &[4; 7 * 16384], "a/b", "x", 16384).unwrap();
            let d = p.descriptor().clone();
            let held = d.hash_name();
            let names = |i: u8| if i == 0 { held } else { name(i) };
            let mut r = Relay::new(T0, config.clone());
            r.handle_input(T0, RelayInput::Hold { descriptor: Box::new(d), pieces: vec![0, 1, 2] });
            let mut now = T0;
            let mut reads: Vec<StoreOpId> = Vec::new();
            let mut up: FlatSet<OrdbCirc> = FlatSet::new();
            for op in ops {
                let input = match op {
                    Op::Query(from, n, piece, count, counter) => RelayInput::Query {
                        from: RequestId(from),
                        query: DbQuery { hash_name: names(n), piece, offset: 0, count, counter },
                    },
                    Op::Closed(from) => RelayInput::RequestClosed(RequestId(from)),
                    Op::Up(c, neighbour) => { up.insert(OrdbCirc(c)); RelayInput::CircuitUp { circ: OrdbCirc(c), neighbour } }
                    Op::Down(c) => { up.remove(&OrdbCirc(c)); RelayInput::CircuitDown(OrdbCirc(c)) }
                    Op::Info(c, n, comp, flags) => RelayInput::Info {
                        from: OrdbCirc(c),
                        info: info(names(n), [Completion::Quarter, Completion::Half, Completion::ThreeQuarters, Completion::Full][comp as usize], InfoFlags(flags)),
                    },
                    Op::Upstream(id, kind) => RelayInput::Upstream {
                        relay: RelayId(id),
                        msg: match kind {
                            0 => DbMsg::Data(DataSlice::new(0, 0, vec![1; 5]).unwrap()),
                            1 => DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
                            2 => DbMsg::Proof(ProofPart::new(0, 0, vec![]).unwrap()),
                            _ => DbMsg::Query(query(held, 0, 1, 0)),
                        },
                    },
                    Op::UpClosed(id) => RelayInput::UpstreamClosed(RelayId(id)),
                    Op::Providers(n, circs) => {
                        for c in &circs { up.insert(OrdbCirc(*c)); }
                        RelayInput::Providers { hash_name: names(n), circs: circs.into_iter().map(OrdbCirc).collect() }
                    }
                    Op::StoreDone(kind) => {
                        let Some(id) = reads.pop() else { continue };
                        RelayInput::Store(StoreCompletion {
                            id,
                            result: match kind {
                                0 => Ok(StoreReply::Piece(Some(records[0].clone()))),
                                1 => Ok(StoreReply::Piece(None)),
                                _ => Err(StoreError::Backend("x".into())),
                            },
                        })
                    }
                    Op::Stored(i) => RelayInput::PieceStored { hash_name: held, index: i },
                    Op::Wait(ms) => {
                        now = now + Duration::from_millis(ms);
                        RelayInput::Timeout
                    }
                };
                r.handle_input(now, input);
                for o in drain(&mut r) {
                    match o {
                        RelayOutput::Store { id, .. } => reads.push(id),
                        RelayOutput::Forward { via, query, .. } => {
                            prop_assert!(up.contains(&via), "forwarded over a circuit that is down");
                            prop_assert!(query.counter <= MAX_COUNTER);
                        }
                        RelayOutput::SendInfo { to, .. } => prop_assert!(up.contains(&to)),
                        _ => {}
                    }
                }
                let s = r.stats();
                prop_assert!(s.sessions <= config.max_sessions);
                prop_assert!(s.relays <= config.max_relays);
                prop_assert!(s.finds <= config.max_finds);
                prop_assert!(s.parked <= config.max_finds * config.max_parked_per_find);
                prop_assert!(s.file_names <= config.max_names && s.stream_names <= config.max_names);
                prop_assert!(s.longest_list <= config.max_entries_per_name);
                prop_assert!(s.circuits <= config.max_circuits);
                prop_assert!(s.reads <= config.max_sessions * READ_AHEAD, "{} reads", s.reads);
            }
        }
    }
}

#[test]
fn when_the_dht_finds_nobody_a_facilitator_is_asked() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1, 2]);
    // Circuit 2 is a facilitator (it said so in an advert about another content).
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(2),
            info: info(name(30), Completion::Full, InfoFlags::FACILITATOR),
        },
    );
    drain(&mut r);
    let h = name(31);
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(1),
            query: query(h, 0, 0, 0),
        },
    );
    assert_eq!(drain(&mut r), vec![RelayOutput::FindProviders(h)]);
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h,
            circs: vec![],
        },
    );
    let f = forwards(&drain(&mut r));
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].1, f[0].2.counter), (OrdbCirc(2), 1));
    // That ORDB's word that it facilitates is passed on to the requester; other adverts on
    // an answer stream are not.
    let said = info(h, Completion::Full, InfoFlags::FACILITATOR);
    for msg in [
        DbMsg::Info(info(h, Completion::Half, InfoFlags::default())),
        DbMsg::Info(info(name(32), Completion::Full, InfoFlags::FACILITATOR)),
        DbMsg::Info(said),
    ] {
        r.handle_input(T0, RelayInput::Upstream { relay: f[0].0, msg });
    }
    assert_eq!(
        drain(&mut r),
        vec![RelayOutput::Reply {
            to: RequestId(1),
            msg: DbMsg::Info(said),
        }]
    );
    // The facilitator has nothing either: UNAVAILABLE, and no other facilitator to try.
    r.handle_input(
        T0,
        RelayInput::Upstream {
            relay: f[0].0,
            msg: DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
        },
    );
    assert_eq!(
        ends(&drain(&mut r)),
        vec![(RequestId(1), DbEndReason::UNAVAILABLE)]
    );
}

#[test]
fn an_ordb_that_denies_what_it_advertised_is_dropped_but_an_honest_no_is_not() {
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1]);
    let h = name(40);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    drain(&mut r);
    let mut dropped = false;
    for i in 0..3 {
        dropped |= ask_and_deny(&mut r, h, i, OrdbCirc(1)).contains(&RelayOutput::Event(
            RelayEvent::FreeRiderDropped(OrdbCirc(1)),
        ));
    }
    assert!(dropped);
    assert_eq!(r.stats().banned, 1);

    // A provider found in the DHT that says "no" is not penalised.
    let mut r = relay_with_neighbours(RelayConfig::default(), &[]);
    for i in 0..5 {
        let h = name(50 + i);
        r.handle_input(
            T0,
            RelayInput::Query {
                from: RequestId(u64::from(i)),
                query: query(h, 0, 1, 0),
            },
        );
        drain(&mut r);
        r.handle_input(
            T0,
            RelayInput::Providers {
                hash_name: h,
                circs: vec![OrdbCirc(7)],
            },
        );
        let f = forwards(&drain(&mut r));
        r.handle_input(
            T0,
            RelayInput::Upstream {
                relay: f[0].0,
                msg: DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
            },
        );
        drain(&mut r);
    }
    assert_eq!(r.stats().banned, 0);
}

/// A request stream that is not writable gets no further piece read for it until it is again.
#[test]
fn a_stream_that_is_not_writable_gets_no_more_pieces_read_until_it_is() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (publication, records) = publish_bytes(&mut rng, &data, "a/b", "x", 16384).unwrap();
    let d = publication.descriptor().clone();
    let h = d.hash_name();
    let mut relay = Relay::new(T0, RelayConfig::default());
    relay.handle_input(
        T0,
        RelayInput::Hold {
            descriptor: Box::new(d.clone()),
            pieces: (0..d.piece_count()).collect(),
        },
    );
    drain(&mut relay);
    let from = RequestId(3);
    relay.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 6, 0),
        },
    );
    let reads = |out: &[RelayOutput]| -> Vec<(StoreOpId, u32)> {
        out.iter()
            .filter_map(|o| match o {
                RelayOutput::Store {
                    id,
                    request: StoreRequest::GetPiece { index, .. },
                } => Some((*id, *index)),
                _ => None,
            })
            .collect()
    };
    let data_of = |out: &[RelayOutput]| -> Vec<u32> {
        let mut v: Vec<u32> = out
            .iter()
            .filter_map(|o| match o {
                RelayOutput::Reply {
                    msg: DbMsg::Data(s),
                    ..
                } => Some(s.piece()),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    };
    let complete = |relay: &mut Relay, id: StoreOpId, index: u32| {
        relay.handle_input(
            T0,
            RelayInput::Store(StoreCompletion {
                id,
                result: Ok(StoreReply::Piece(Some(records[index as usize].clone()))),
            }),
        );
    };
    // Four pieces are read at once (read-ahead), not the whole query.
    let first = reads(&drain(&mut relay));
    assert_eq!(
        first.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // Pieces go out in order: piece 1 read before piece 0 waits for it.
    complete(&mut relay, first[1].0, 1);
    assert!(
        data_of(&drain(&mut relay)).is_empty(),
        "piece 1 sent before piece 0"
    );
    complete(&mut relay, first[0].0, 0);
    let out = drain(&mut relay);
    assert_eq!(data_of(&out), vec![0, 1]);
    assert_eq!(
        reads(&out).iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![4, 5]
    );
    // The driver's queue is full: a piece read meanwhile is neither sent nor followed by a read.
    relay.handle_input(
        T0,
        RelayInput::Writable {
            to: from,
            writable: false,
        },
    );
    complete(&mut relay, first[2].0, 2);
    let out = drain(&mut relay);
    assert!(data_of(&out).is_empty(), "sent while the stream is blocked");
    assert!(
        reads(&out).is_empty(),
        "read on while the stream is blocked"
    );
    // Drained: what was read goes out.
    relay.handle_input(
        T0,
        RelayInput::Writable {
            to: from,
            writable: true,
        },
    );
    assert_eq!(data_of(&drain(&mut relay)), vec![2]);
}

fn magnet(h: HashName) -> DbSource {
    DbSource {
        hash_name: h,
        kind: onionmesh_wire::db::SourceKind::MAGNET,
        uri: onionmesh_wire::db::SourceUri::new(format!("magnet:?xt=urn:btih:{}", h.to_hex()))
            .unwrap(),
    }
}

fn facilitated(out: &[RelayOutput]) -> Vec<(RelayId, DbSource, DbQuery)> {
    out.iter()
        .filter_map(|o| match o {
            RelayOutput::Facilitate {
                relay,
                source,
                query,
            } => Some((*relay, source.clone(), *query)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_db_source_goes_along_with_the_forwarded_query() {
    let h = name(7);
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1]);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    drain(&mut r);
    let from = RequestId(5);
    r.handle_input(
        T0,
        RelayInput::Source {
            from,
            source: magnet(h),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 0, 1),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 2, 1),
        },
    );
    let out = drain(&mut r);
    let sources: Vec<Option<DbSource>> = out
        .iter()
        .filter_map(|o| match o {
            RelayOutput::Forward { source, .. } => Some(source.clone()),
            _ => None,
        })
        .collect();
    // The first forward on the new upstream stream carries the DB_SOURCE; the pipe's next
    // query does not repeat it.
    assert_eq!(sources, vec![Some(magnet(h)), None]);
    assert!(facilitated(&out).is_empty());
    // A DB_SOURCE for another content is not passed on.
    let mut r = relay_with_neighbours(RelayConfig::default(), &[1]);
    r.handle_input(
        T0,
        RelayInput::Info {
            from: OrdbCirc(1),
            info: info(h, Completion::Full, InfoFlags::default()),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Source {
            from,
            source: magnet(name(8)),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 0, 1),
        },
    );
    assert!(drain(&mut r)
        .iter()
        .any(|o| matches!(o, RelayOutput::Forward { source: None, .. })));
}

#[test]
fn nobody_in_the_mesh_hands_the_query_to_the_facilitator_and_relays_its_answers() {
    let h = name(9);
    let mut r = Relay::new(T0, RelayConfig::default());
    let from = RequestId(3);
    r.handle_input(
        T0,
        RelayInput::Source {
            from,
            source: magnet(h),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 0, 2),
        },
    );
    // No list entry: the DHT is asked first.
    assert_eq!(drain(&mut r), vec![RelayOutput::FindProviders(h)]);
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h,
            circs: Vec::new(),
        },
    );
    let out = drain(&mut r);
    let f = facilitated(&out);
    assert_eq!(f.len(), 1, "{out:?}");
    let (relay, source, q) = f[0].clone();
    assert_eq!(source, magnet(h));
    assert_eq!(q, query(h, 0, 0, 2));
    assert!(ends(&out).is_empty());
    // The requester learns that the answers come from a facilitator (a DB_INFO with F).
    assert_eq!(
        out[0],
        RelayOutput::Reply {
            to: from,
            msg: DbMsg::Info(info(h, Completion::Full, InfoFlags::FACILITATOR)),
        }
    );
    // Its answers go to the requester unchanged; the next query uses the same request.
    let slice = DescriptorSlice::split(
        onionmesh_wire::db::DescriptorKind::BITTORRENT_V1_INFO,
        b"d4:name1:ae",
    )
    .unwrap()
    .remove(0);
    r.handle_input(
        T0,
        RelayInput::Upstream {
            relay,
            msg: DbMsg::Connected(slice.clone()),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![RelayOutput::Reply {
            to: from,
            msg: DbMsg::Connected(slice)
        }]
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 1, 2),
        },
    );
    let f = facilitated(&drain(&mut r));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, relay);
    // Its DB_END, sentence and all, ends the request.
    let end = DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no BitTorrent peer has it");
    r.handle_input(
        T0,
        RelayInput::Upstream {
            relay,
            msg: DbMsg::End(end.clone()),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![RelayOutput::Reply {
            to: from,
            msg: DbMsg::End(end)
        }]
    );
    assert_eq!(r.stats().relays, 0);
    assert_eq!(r.stats().sessions, 0);
}

#[test]
fn without_a_db_source_or_a_facilitator_the_answer_is_unavailable() {
    let h = name(10);
    // No DB_SOURCE: nobody found means UNAVAILABLE, as before.
    let mut r = Relay::new(T0, RelayConfig::default());
    r.handle_input(
        T0,
        RelayInput::Query {
            from: RequestId(1),
            query: query(h, 0, 0, 1),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h,
            circs: Vec::new(),
        },
    );
    let out = drain(&mut r);
    assert!(facilitated(&out).is_empty());
    assert_eq!(ends(&out), vec![(RequestId(1), DbEndReason::UNAVAILABLE)]);
    // With one, a bridge that cannot take it (UpstreamClosed before any answer) ends it with
    // a sentence, once.
    let from = RequestId(2);
    r.handle_input(
        T0,
        RelayInput::Source {
            from,
            source: magnet(h),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 0, 1),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Providers {
            hash_name: h,
            circs: Vec::new(),
        },
    );
    let (relay, _, _) = facilitated(&drain(&mut r))[0].clone();
    r.handle_input(T0, RelayInput::UpstreamClosed(relay));
    let out = drain(&mut r);
    assert_eq!(ends(&out), vec![(from, DbEndReason::UNAVAILABLE)]);
    assert!(facilitated(&out).is_empty());
}

#[test]
fn forwards_that_all_end_unavailable_fall_back_to_the_facilitator_and_it_is_bounded() {
    let h = name(11);
    let config = RelayConfig {
        max_facilitated: 1,
        ..RelayConfig::default()
    };
    let mut r = relay_with_neighbours(config, &[1, 2, 3]);
    for c in [1, 2, 3] {
        r.handle_input(
            T0,
            RelayInput::Info {
                from: OrdbCirc(c),
                info: info(h, Completion::Half, InfoFlags::default()),
            },
        );
    }
    drain(&mut r);
    let from = RequestId(4);
    r.handle_input(
        T0,
        RelayInput::Source {
            from,
            source: magnet(h),
        },
    );
    r.handle_input(
        T0,
        RelayInput::Query {
            from,
            query: query(h, 0, 0, 0),
        },
    );
    let mut out = drain(&mut r);
    for _ in 0..3 {
        let (relay, _, _) = forwards(&out)[0];
        r.handle_input(
            T0,
            RelayInput::Upstream {
                relay,
                msg: DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
            },
        );
        out = drain(&mut r);
        if !facilitated(&out).is_empty() {
            break;
        }
    }
    assert_eq!(facilitated(&out).len(), 1, "{out:?}");
    // A second request while the one facilitated slot is taken: BUSY, with a sentence.
    let other = RequestId(6);
    r.handle_input(
        T0,
        RelayInput::Source {
            from: other,
            source: magnet(h),
        },
    );
    // Its forwards end unavailable too.
    r.handle_input(
        T0,
        RelayInput::Query {
            from: other,
            query: query(h, 0, 0, 0),
        },
    );
    let mut out = drain(&mut r);
    for _ in 0..3 {
        let Some((relay, _, _)) = forwards(&out).first().copied() else {
            break;
        };
        r.handle_input(
            T0,
            RelayInput::Upstream {
                relay,
                msg: DbMsg::End(DbEnd::with_sentence(DbEndReason::UNAVAILABLE, "no")),
            },
        );
        out = drain(&mut r);
    }
    assert_eq!(ends(&out), vec![(other, DbEndReason::BUSY)]);
    // An unanswered facilitated request times out after facilitate_timeout, with a sentence.
    let later = T0 + Duration::from_secs(61);
    r.handle_input(later, RelayInput::Timeout);
    let ends_for_from: Vec<_> = ends(&drain(&mut r))
        .into_iter()
        .filter(|(to, _)| *to == from)
        .collect();
    assert_eq!(ends_for_from, vec![(from, DbEndReason::UNAVAILABLE)]);
}

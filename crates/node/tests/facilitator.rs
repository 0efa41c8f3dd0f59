//! Facilitators at node level (issue 10), over the shared small network of
//! `onionmesh_node::testing`: the network's bridge plays a BitTorrent facilitator from an
//! in-memory torrent built here (its info dictionary bencoded with `onionmesh_ordb::torrent`'s
//! bendy encoder), answering `SignalMsg::Facilitate` frames like a bridge.
//!
//! Covers: a requester with no link to any holder downloads a single-file torrent through its
//! 3-hop circuits to ORDBs, which find nobody in the mesh and hand the request to their bridge;
//! the bytes are identical and the content is then served inside the mesh to another page with
//! no facilitator; a file of a multi-file torrent downloads byte-identical and only its pieces
//! are asked of the facilitator, and a later `select_all` fetches only the rest and completes; a facilitator that corrupts a piece is caught (SHA-1 against
//! the info) and the piece is fetched again; the facilitator never sees the requester (only
//! ORDBs' bridge connections, and no frame carries the requester's ID); a torrent no
//! facilitator finds (`DB_END NOT_FOUND`) fails at the first such answer with the
//! facilitator's sentence, a few seconds after the request; a bridge that closes every
//! facilitated request (the mesh merely lacks the content) ends the download with a sentence
//! only after other ORDBs were tried; two bridges, each a facilitator for its own ORDBs, both
//! serve pieces of one download (the requester's scheduler splits the ranges between its
//! sources), which completes byte-identical.

use onionmesh_node::testing::{data, Facilitator, Net};
use onionmesh_node::{ContentEvent, Event};
use onionmesh_ordb::torrent::{build_info, infohash};
use onionmesh_ordb::{HashName, StoreReply, StoreRequest};
use onionmesh_wire::db::{
    DataSlice, DbEnd, DbEndReason, DbMsg, DbSource, DescriptorKind, DescriptorSlice, SourceKind,
    SourceUri,
};
use onionmesh_wire::signal::{FacilitatedAnswer, FacilitatedAnswers, MAX_FACILITATED_BATCH};
use onionmesh_wire::{Frame, SignalMsg};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone)]
struct Torrent {
    info: Vec<u8>,
    data: Vec<u8>,
    piece_length: u32,
}

impl Torrent {
    fn new(files: &[(&str, u64)], piece_length: u32, seed: u64) -> Torrent {
        let size: u64 = files.iter().map(|f| f.1).sum();
        let data = data(size as usize, seed);
        let info = build_info("t", files, piece_length, &data);
        Torrent {
            info,
            data,
            piece_length,
        }
    }
    fn hash(&self) -> HashName {
        infohash(&self.info)
    }
    fn piece(&self, i: u32) -> &[u8] {
        let pl = self.piece_length as usize;
        let s = i as usize * pl;
        &self.data[s..(s + pl).min(self.data.len())]
    }
    fn magnet(&self) -> DbSource {
        DbSource {
            hash_name: self.hash(),
            kind: SourceKind::MAGNET,
            uri: SourceUri::new(format!("magnet:?xt=urn:btih:{}", self.hash().to_hex())).unwrap(),
        }
    }
}

/// What the facilitator saw.
#[derive(Default)]
struct Seen {
    /// Bridge connections (node indexes) that sent Facilitate frames.
    nodes: BTreeSet<usize>,
    /// Pieces asked for, per hash_name.
    pieces: BTreeMap<HashName, BTreeSet<u32>>,
    /// Encoded frames received, to look for IDs in.
    frames: Vec<Vec<u8>>,
    corrupted: u32,
}

/// A facilitator serving `torrents` from memory; it flips a byte of piece `corrupt` the first
/// `corrupt_times` times it serves it.
fn facilitator(
    torrents: Vec<Torrent>,
    corrupt: Option<(u32, u32)>,
    seen: Rc<RefCell<Seen>>,
) -> Facilitator {
    let mut sources: BTreeMap<(usize, u32), HashName> = BTreeMap::new();
    let mut corrupt = corrupt;
    Box::new(move |node, frame| {
        let mut seen = seen.borrow_mut();
        seen.nodes.insert(node);
        seen.frames.push(frame.encode_frame());
        let SignalMsg::Facilitate { req, msg } = frame else {
            if let SignalMsg::FacilitateClose { req } = frame {
                sources.remove(&(node, *req));
            }
            return Vec::new();
        };
        let req = *req;
        let reply = |msg| FacilitatedAnswer { req, msg };
        match msg {
            DbMsg::Source(src) => {
                sources.insert((node, req), src.hash_name);
                Vec::new()
            }
            DbMsg::Query(q) => {
                let Some(h) = sources.get(&(node, req)).copied() else {
                    return vec![SignalMsg::FacilitateClose { req }];
                };
                let Some(t) = torrents.iter().find(|t| t.hash() == h && q.hash_name == h) else {
                    // As the bridge answers when no metadata comes within its timeout.
                    return batches(vec![reply(DbMsg::End(DbEnd::with_sentence(
                        DbEndReason::NOT_FOUND,
                        "no BitTorrent peer has this torrent",
                    )))]);
                };
                if q.count == 0 {
                    return batches(
                        DescriptorSlice::split(DescriptorKind::BITTORRENT_V1_INFO, &t.info)
                            .unwrap()
                            .into_iter()
                            .map(|s| reply(DbMsg::Connected(s)))
                            .collect(),
                    );
                }
                let mut out = Vec::new();
                for i in q.piece..q.piece + u32::from(q.count) {
                    seen.pieces.entry(h).or_default().insert(i);
                    let mut bytes = t.piece(i).to_vec();
                    if let Some((at, times)) = corrupt.as_mut() {
                        if *at == i && *times > 0 {
                            *times -= 1;
                            let mid = bytes.len() / 2;
                            bytes[mid] ^= 0x20;
                            seen.corrupted += 1;
                        }
                    }
                    let from = if i == q.piece { q.offset } else { 0 };
                    out.extend(
                        DataSlice::split(i, from, &bytes)
                            .into_iter()
                            .map(|d| reply(DbMsg::Data(d))),
                    );
                }
                batches(out)
            }
            _ => Vec::new(),
        }
    })
}

/// Answers in frames of at most `MAX_FACILITATED_BATCH`, as the bridge sends them.
fn batches(answers: Vec<FacilitatedAnswer>) -> Vec<SignalMsg> {
    answers
        .chunks(MAX_FACILITATED_BATCH)
        .map(|c| SignalMsg::Facilitated {
            answers: FacilitatedAnswers::new(c.to_vec()).unwrap(),
        })
        .collect()
}

fn stored(net: &mut Net, i: usize, h: HashName, pieces: std::ops::Range<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for index in pieces {
        match net.stores[i].execute(StoreRequest::GetPiece {
            hash_name: h,
            index,
        }) {
            Ok(StoreReply::Piece(Some(rec))) => out.extend_from_slice(&rec.bytes),
            other => panic!("piece {index} of {h} is not stored at node {i}: {other:?}"),
        }
    }
    out
}

/// The facilitator saw only ORDBs, never the requester `r`, and no frame named `r`.
fn requester_unseen(net: &Net, seen: &Seen, r: usize) {
    assert!(!seen.nodes.is_empty());
    assert!(!seen.nodes.contains(&r), "{:?}", seen.nodes);
    assert!(net.facilitate_log.iter().all(|(i, _)| *i != r));
    let id = net.id(r).0;
    for f in &seen.frames {
        assert!(
            !f.windows(id.len()).any(|w| w == id),
            "a frame names the requester"
        );
    }
}

#[test]
fn a_torrent_nobody_in_the_mesh_has_comes_through_the_facilitator_then_from_the_mesh() {
    let mut net = Net::new(8);
    let t = Torrent::new(&[("film.webm", 300_000)], 32 * 1024, 5);
    let (h, whole) = (t.hash(), t.data.clone());
    let magnet = t.magnet();
    let seen = Rc::new(RefCell::new(Seen::default()));
    net.facilitator = Some(facilitator(vec![t], Some((3, 1)), seen.clone()));

    net.download_from(7, magnet);
    net.until(Duration::from_secs(300), "the torrent downloads", |n| {
        n.done(7, h) || n.failed(7, h).is_some()
    });
    assert_eq!(net.failed(7, h), None);
    assert!(net.content(7).iter().any(|e| matches!(e,
        ContentEvent::Metadata { hash_name, kind, size: 300_000, pieces: 10, .. }
            if *hash_name == h && *kind == DescriptorKind::BITTORRENT_V1_INFO)));
    assert_eq!(stored(&mut net, 7, h, 0..10), whole);
    assert_eq!(
        net.nodes[7].ordb().kind(&h),
        Some(DescriptorKind::BITTORRENT_V1_INFO)
    );
    // The corrupted piece was caught by its SHA-1 and fetched again.
    let seen_ref = seen.borrow();
    assert_eq!(seen_ref.corrupted, 1);
    assert!(net.nodes[7].ordb().stats().bad_pieces >= 1);
    assert!(
        net.logs(7)
            .iter()
            .any(|l| l.contains("failed its SHA-1 check against the torrent's info")),
        "{:#?}",
        net.logs(7)
    );
    requester_unseen(&net, &seen_ref, 7);
    let facilitating: u64 = (0..7)
        .map(|i| net.nodes[i].ordb().stats().facilitated)
        .sum();
    assert!(facilitating >= 1);
    assert_eq!(net.nodes[7].ordb().stats().facilitated, 0);
    drop(seen_ref);
    // The requester learnt that the bytes came through a facilitator (its ORDB said so), and
    // still knows it once the download is over.
    assert!(net.nodes[7].ordb().progress(&h).unwrap().facilitated);

    // Afterwards the content lives in the mesh: another page gets it with no facilitator.
    net.facilitator = None;
    let asked = net.facilitate_log.len();
    net.download(3, h);
    net.until(
        Duration::from_secs(300),
        "the mesh serves the torrent",
        |n| n.done(3, h) || n.failed(3, h).is_some(),
    );
    assert_eq!(net.failed(3, h), None);
    assert_eq!(stored(&mut net, 3, h, 0..10), whole);
    assert_eq!(net.facilitate_log.len(), asked, "no facilitator was asked");
    // ... and this one knows its bytes came from the mesh.
    assert!(!net.nodes[3].ordb().progress(&h).unwrap().facilitated);
}

#[test]
fn one_file_of_a_multi_file_torrent_and_only_its_pieces() {
    let mut net = Net::new(8);
    // 16 KiB pieces; file 1 is bytes 70 000..170 000: pieces 4..=10 (of 0..=15).
    let files = [
        ("a/one.mkv", 70_000),
        ("a/two.webm", 100_000),
        ("b.txt", 80_000),
    ];
    let t = Torrent::new(&files, 16 * 1024, 9);
    let (h, whole) = (t.hash(), t.data.clone());
    let magnet = t.magnet();
    let seen = Rc::new(RefCell::new(Seen::default()));
    net.facilitator = Some(facilitator(vec![t], None, seen.clone()));

    net.download_from(6, magnet.clone());
    net.until(
        Duration::from_secs(300),
        "the torrent's info arrives",
        |n| {
            n.content(6)
                .iter()
                .any(|e| matches!(e, ContentEvent::Metadata { hash_name, .. } if *hash_name == h))
                || n.failed(6, h).is_some()
        },
    );
    let listed = net.nodes[6].ordb().files(&h).unwrap();
    let paths: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a/one.mkv", "a/two.webm", "b.txt"]);
    assert_eq!((listed[1].offset, listed[1].length), (70_000, 100_000));
    // No piece is asked for until a file is chosen.
    net.advance_for(Duration::from_secs(2));
    assert!(seen.borrow().pieces.is_empty());
    let now = net.now;
    net.nodes[6].ordb().select_file(now, h, 1).unwrap();
    net.drain(6);
    net.until(Duration::from_secs(300), "the chosen file downloads", |n| {
        n.done(6, h) || n.failed(6, h).is_some()
    });
    assert_eq!(net.failed(6, h), None);
    assert_eq!(
        net.nodes[6].ordb().selection(&h),
        None,
        "the download is over"
    );
    let got = stored(&mut net, 6, h, 4..11);
    let off = 70_000 - 4 * 16384;
    assert_eq!(&got[off..off + 100_000], &whole[70_000..170_000]);
    let asked = seen.borrow().pieces.get(&h).cloned().unwrap_or_default();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|i| (4..11).contains(i)),
        "only file 1's pieces were asked of the facilitator: {asked:?}"
    );
    // The other files' pieces are not stored.
    let outside = net.stores[6].execute(StoreRequest::GetPiece {
        hash_name: h,
        index: 0,
    });
    assert!(
        matches!(outside, Ok(StoreReply::Piece(None))),
        "{outside:?}"
    );
    requester_unseen(&net, &seen.borrow(), 6);
    // The Done event, not a failure, ended it.
    let dones = |n: &Net| {
        n.events[6]
            .iter()
            .filter(
                |e| matches!(e, Event::Content(ContentEvent::Done { hash_name }) if *hash_name == h),
            )
            .count()
    };
    assert_eq!(dones(&net), 1);

    // Later the page wants the whole torrent: the download resumes from what is stored (no
    // piece is asked for before the choice), `select_all` fetches only the other files'
    // pieces, and the download completes.
    seen.borrow_mut().pieces.clear();
    net.download_from(6, magnet);
    net.advance_for(Duration::from_secs(2));
    assert!(seen.borrow().pieces.is_empty());
    let now = net.now;
    net.nodes[6].ordb().select_all(now, h).unwrap();
    net.drain(6);
    net.until(
        Duration::from_secs(300),
        "the whole torrent downloads",
        |n| dones(n) == 2 || n.failed(6, h).is_some(),
    );
    assert_eq!(net.failed(6, h), None);
    assert_eq!(stored(&mut net, 6, h, 0..16), whole);
    let asked = seen.borrow().pieces.get(&h).cloned().unwrap_or_default();
    let rest: BTreeSet<u32> = (0..4).chain(11..16).collect();
    assert_eq!(asked, rest, "only the pieces not stored yet were asked for");
}

#[test]
fn a_torrent_no_facilitator_can_find_fails_in_time_with_the_facilitators_sentence() {
    let mut net = Net::new(8);
    let known = Torrent::new(&[("x", 20_000)], 16 * 1024, 1);
    let unknown = Torrent::new(&[("y", 20_000)], 16 * 1024, 2);
    let h = unknown.hash();
    let seen = Rc::new(RefCell::new(Seen::default()));
    net.facilitator = Some(facilitator(vec![known], None, seen.clone()));
    let start = net.now;
    net.download_from(7, unknown.magnet());
    net.until(Duration::from_secs(600), "the download fails", |n| {
        n.done(7, h) || n.failed(7, h).is_some()
    });
    let why = net.failed(7, h).expect("it fails");
    assert!(why.contains("no BitTorrent peer has this torrent"), "{why}");
    // This facilitator answers at once (a bridge after its --metadata-timeout): the download
    // stops at its first answer, not after trying every other ORDB (each of them would ask
    // the same bridge, or another searching the same swarm).
    let took = net.now.since(start);
    assert!(took < 10_000, "a sentence within 10 s, not {took} ms");
    assert_eq!(
        net.facilitate_log
            .iter()
            .filter(|(_, f)| matches!(
                f,
                SignalMsg::Facilitate {
                    msg: DbMsg::Source(_),
                    ..
                }
            ))
            .count(),
        1,
        "one facilitated request only"
    );
    requester_unseen(&net, &seen.borrow(), 7);
}

#[test]
fn a_bridge_that_drops_facilitated_requests_ends_them_with_a_sentence() {
    let mut net = Net::new(8);
    let t = Torrent::new(&[("x", 20_000)], 16 * 1024, 3);
    let h = t.hash();
    // The bridge closes every facilitated request at once (it is no facilitator, or it went).
    net.facilitator = Some(Box::new(|_, frame| match frame {
        SignalMsg::Facilitate { req, .. } => vec![SignalMsg::FacilitateClose { req: *req }],
        _ => Vec::new(),
    }));
    net.download_from(7, t.magnet());
    net.until(Duration::from_secs(600), "the download fails", |n| {
        n.done(7, h) || n.failed(7, h).is_some()
    });
    let why = net.failed(7, h).expect("it fails");
    assert!(why.contains("bridge did not deliver it"), "{why}");
    // An ORDB whose bridge delivers nothing is one source's failure: others were tried.
    assert!(
        net.nodes[7].ordb().stats().source_circuits > 1,
        "{:?}",
        net.nodes[7].ordb().stats()
    );
}

#[test]
fn two_facilitators_on_two_bridges_share_the_pieces_of_one_torrent() {
    let mut net = Net::new(8);
    // Two bridges: the even nodes are registered at one, the odd nodes at the other; each
    // bridge is a facilitator with its own BitTorrent session (here: its own copy of the
    // torrent and its own record of what it served).
    let t = Torrent::new(&[("film.webm", 1_200_000)], 16 * 1024, 21);
    let (h, whole, magnet) = (t.hash(), t.data.clone(), t.magnet());
    let pieces = whole.len().div_ceil(16 * 1024) as u32;
    let seen = [
        Rc::new(RefCell::new(Seen::default())),
        Rc::new(RefCell::new(Seen::default())),
    ];
    let mut bridges = [
        facilitator(vec![t.clone()], None, seen[0].clone()),
        facilitator(vec![t], None, seen[1].clone()),
    ];
    net.facilitator = Some(Box::new(move |node, frame| bridges[node % 2](node, frame)));

    net.download_from(7, magnet);
    net.until(Duration::from_secs(300), "the torrent downloads", |n| {
        n.done(7, h) || n.failed(7, h).is_some()
    });
    assert_eq!(net.failed(7, h), None);
    assert_eq!(stored(&mut net, 7, h, 0..pieces), whole);
    // The requester split the pieces between the ORDBs of both bridges, so both facilitators
    // served some.
    let served: Vec<usize> = seen
        .iter()
        .map(|s| s.borrow().pieces.get(&h).map_or(0, BTreeSet::len))
        .collect();
    assert!(
        served.iter().all(|&n| n > 0),
        "pieces served per bridge: {served:?}"
    );
    assert!(served.iter().sum::<usize>() >= pieces as usize);
    for s in &seen {
        requester_unseen(&net, &s.borrow(), 7);
    }
}

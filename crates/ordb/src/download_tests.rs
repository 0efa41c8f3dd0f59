//! The scheduler against simulated sources on a virtual clock: each source has a rate and a
//! round trip, and may corrupt a piece, forge the descriptor, stall or refuse.

use super::*;
use crate::merkle::Hash;
use crate::publish::{publish_bytes, Publication};
use onionmesh_wire::db::{DataSlice, DbEnd, ProofPart, MAX_DATA_SLICE};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;

#[derive(Debug, Clone, Default)]
struct Behaviour {
    rate_bps: u64,
    rtt_ms: u64,
    corrupt: Option<u32>,
    stall_after: Option<u64>,
    bad_meta: bool,
    unavailable: bool,
    /// Everything a query asks for arrives in one burst when the last byte would have (a
    /// stream read late by a busy page), instead of spread over the transfer.
    burst: bool,
}

fn honest(rate_bps: u64) -> Behaviour {
    Behaviour {
        rate_bps,
        rtt_ms: 100,
        ..Default::default()
    }
}

struct Harness {
    dl: Download,
    now: Time,
    queue: FlatMap<(u64, u64), (SourceId, DbMsg)>,
    seq: u64,
    busy_until: FlatMap<SourceId, u64>,
    behaviours: FlatMap<SourceId, Behaviour>,
    sent: FlatMap<SourceId, u64>,
    data_bytes: u64,
    publication: Publication,
    records: Vec<PieceRecord>,
    got: FlatMap<u32, Vec<u8>>,
    replaced: Vec<(SourceId, SourceProblem)>,
    queries: Vec<(SourceId, DbQuery)>,
    spares: VecDeque<(SourceId, Behaviour)>,
    complete: bool,
    max_unverified_seen: u64,
    max_rate_seen: u64,
}

impl Harness {
    fn new(
        data: &[u8],
        piece_size: u32,
        sources: Vec<Behaviour>,
        spares: Vec<Behaviour>,
    ) -> Harness {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(data.len() as u64);
        let (publication, records) =
            publish_bytes(&mut rng, data, "video/webm", "v.webm", piece_size).unwrap();
        let dl = Download::new(
            publication.descriptor().hash_name(),
            DownloadConfig::default(),
            [9; 32],
        );
        let mut h = Harness {
            dl,
            now: Time::from_millis(1000),
            queue: FlatMap::new(),
            seq: 0,
            busy_until: FlatMap::new(),
            behaviours: FlatMap::new(),
            sent: FlatMap::new(),
            data_bytes: 0,
            publication,
            records,
            got: FlatMap::new(),
            replaced: Vec::new(),
            queries: Vec::new(),
            spares: VecDeque::new(),
            complete: false,
            max_unverified_seen: 0,
            max_rate_seen: 0,
        };
        for (i, b) in spares.into_iter().enumerate() {
            h.spares.push_back((SourceId(100 + i as u64), b));
        }
        for (i, b) in sources.into_iter().enumerate() {
            h.add(SourceId(i as u64), b);
        }
        h
    }

    fn add(&mut self, s: SourceId, b: Behaviour) {
        self.behaviours.insert(s, b);
        self.dl
            .handle_input(self.now, DownloadInput::AddSource(s))
            .unwrap();
        self.pump();
    }

    fn deliver_at(&mut self, s: SourceId, msg: DbMsg, bytes: u64) -> bool {
        let b = self.behaviours[&s].clone();
        let sent = self.sent.entry(s).or_default();
        if b.stall_after.is_some_and(|limit| *sent >= limit) {
            return false;
        }
        *sent += bytes;
        let start = (self.now.as_millis() + b.rtt_ms / 2)
            .max(self.busy_until.get(&s).copied().unwrap_or(0));
        let t = start + (bytes * 1000).div_ceil(b.rate_bps);
        self.busy_until.insert(s, t);
        self.seq += 1;
        self.queue.insert((t, self.seq), (s, msg));
        true
    }

    fn serve(&mut self, s: SourceId, q: DbQuery) {
        let b = self.behaviours[&s].clone();
        self.queries.push((s, q));
        if b.unavailable {
            let end = DbEnd::new(DbEndReason::UNAVAILABLE, "Nobody holds it.").unwrap();
            self.deliver_at(s, DbMsg::End(end), 20);
            return;
        }
        let d = self.publication.descriptor().clone();
        if q.count == 0 {
            let mut bytes = d.encoded().to_vec();
            if b.bad_meta {
                bytes[20] ^= 1;
            }
            for slice in DescriptorSlice::split(DescriptorKind::ONIONMESH_V1, &bytes).unwrap() {
                self.deliver_at(s, DbMsg::Connected(slice), 498);
            }
            return;
        }
        let end = (q.piece + u32::from(q.count)).min(d.piece_count());
        let first_seq = self.seq;
        self.serve_pieces(s, q, end, &b);
        if b.burst {
            let mine: Vec<(u64, u64)> = self
                .queue
                .keys()
                .filter(|(_, seq)| *seq > first_seq)
                .copied()
                .collect();
            // The burst drains fast: about 64 cells (32 KB) a millisecond.
            let last = mine.iter().map(|(t, _)| *t).max().unwrap_or(0);
            for (n, key) in mine.into_iter().enumerate() {
                let v = self.queue.remove(&key).unwrap();
                self.queue.insert((last + n as u64 / 64, key.1), v);
            }
        }
    }

    fn serve_pieces(&mut self, s: SourceId, q: DbQuery, end: u32, b: &Behaviour) {
        for i in q.piece..end {
            let rec = self.records[i as usize].clone();
            for part in ProofPart::split(i, &rec.proof).unwrap() {
                self.deliver_at(s, DbMsg::Proof(part), 498);
            }
            let mut bytes = rec.bytes.clone();
            if b.corrupt == Some(i) {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
            }
            let from = if i == q.piece { q.offset } else { 0 };
            for slice in DataSlice::split(i, from, &bytes) {
                let n = slice.data().len() as u64;
                if self.deliver_at(s, DbMsg::Data(slice), 498) {
                    self.data_bytes += n;
                }
            }
        }
    }

    fn pump(&mut self) {
        while let Some(ev) = self.dl.poll_event() {
            match ev {
                DownloadEvent::Send { source, msg } => match msg {
                    DbMsg::Query(q) => self.serve(source, q),
                    other => panic!("unexpected message to a source: {other:?}"),
                },
                DownloadEvent::Metadata(d) => assert_eq!(&d, self.publication.descriptor()),
                DownloadEvent::Piece { index, record } => {
                    assert!(
                        self.got.insert(index, record.bytes).is_none(),
                        "piece {index} twice"
                    );
                }
                DownloadEvent::ReplaceSource { source, problem } => {
                    self.behaviours.remove(&source);
                    self.queue.retain(|_, (s, _)| *s != source);
                    self.replaced.push((source, problem));
                    if let Some((s, b)) = self.spares.pop_front() {
                        self.behaviours.insert(s, b);
                        self.dl
                            .handle_input(self.now, DownloadInput::AddSource(s))
                            .unwrap();
                    }
                }
                DownloadEvent::Complete => self.complete = true,
            }
            let p = self.dl.progress();
            self.max_unverified_seen = self.max_unverified_seen.max(p.unverified_bytes);
            self.max_rate_seen = self.max_rate_seen.max(p.rate_bps);
        }
    }

    fn run(&mut self) {
        self.run_until(|h| h.complete);
    }

    /// Run the virtual clock until `stop` holds (or nothing is left to happen).
    fn run_until(&mut self, stop: impl Fn(&Harness) -> bool) {
        for _ in 0..2_000_000 {
            self.pump();
            if stop(self) {
                return;
            }
            let next_msg = self.queue.keys().next().copied();
            let timeout = self.dl.poll_timeout().map(Time::as_millis);
            match (next_msg, timeout) {
                (Some((t, seq)), to) if to.is_none_or(|to| t <= to) => {
                    let (s, msg) = self.queue.remove(&(t, seq)).unwrap();
                    self.now = Time::from_millis(t.max(self.now.as_millis()));
                    self.dl
                        .handle_input(self.now, DownloadInput::Message { source: s, msg })
                        .unwrap();
                }
                (Some(_), Some(to)) | (None, Some(to)) => {
                    self.now = Time::from_millis(to.max(self.now.as_millis()));
                    self.dl
                        .handle_input(self.now, DownloadInput::Timeout)
                        .unwrap();
                }
                (Some(_), None) => unreachable!("the first arm takes it"),
                (None, None) => return,
            }
        }
        panic!("the download did not settle");
    }

    fn assembled(&self) -> Vec<u8> {
        self.got.values().flatten().copied().collect()
    }
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn honest_sources_download_byte_identical() {
    let data = content(1_000_000);
    let mut h = Harness::new(
        &data,
        16 * 1024,
        vec![honest(1_000_000), honest(500_000), honest(800_000)],
        vec![],
    );
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert!(h.replaced.is_empty(), "{:?}", h.replaced);
    // Nothing was fetched twice, and the fastest source carried the most.
    assert_eq!(h.data_bytes, data.len() as u64);
    assert!(h.sent[&SourceId(0)] > h.sent[&SourceId(1)]);
    let p = h.dl.progress();
    assert_eq!((p.pieces_have, p.pieces, p.bytes_have), (62, 62, 1_000_000));
    assert!(p.rate_bps > 0 && p.complete && p.eta_s == Some(0));
    assert!(h.max_unverified_seen <= DownloadConfig::default().max_unverified_bytes);
    // Every query's loop counter leaves room for relays, and none asks past the window.
    for (_, q) in &h.queries {
        assert!(q.counter <= 2);
        assert!(u64::from(q.count) * 16384 <= 500_000 + 16384);
    }
}

#[test]
fn a_corrupting_source_is_caught_and_the_piece_fetched_elsewhere() {
    let data = content(600_000);
    let liar = Behaviour {
        corrupt: Some(3),
        ..honest(2_000_000)
    };
    let mut h = Harness::new(
        &data,
        16 * 1024,
        vec![liar, honest(700_000), honest(600_000)],
        vec![],
    );
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert_eq!(h.replaced.len(), 1);
    let (s, problem) = &h.replaced[0];
    assert_eq!(*s, SourceId(0));
    assert!(
        matches!(
            problem,
            SourceProblem::BadPiece {
                index: 3,
                error: PieceError::ProofMismatch { index: 3 }
            }
        ),
        "{problem:?}"
    );
    // Piece 3 was asked again of an honest source.
    assert!(h
        .queries
        .iter()
        .any(|(s, q)| *s != SourceId(0) && q.piece <= 3 && 3 < q.piece + u32::from(q.count)));
}

#[test]
fn forged_metadata_is_refused() {
    let data = content(100_000);
    let forger = Behaviour {
        bad_meta: true,
        ..honest(1_000_000)
    };
    let mut h = Harness::new(&data, 16 * 1024, vec![forger, honest(500_000)], vec![]);
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert_eq!(
        h.replaced,
        vec![(
            SourceId(0),
            SourceProblem::BadMetadata(MetaError::HashMismatch)
        )]
    );
}

#[test]
fn an_interrupted_request_resumes_where_it_stopped() {
    let data = content(200_000);
    let staller = Behaviour {
        stall_after: Some(20 * 498),
        ..honest(1_000_000)
    };
    let mut h = Harness::new(&data, 16 * 1024, vec![staller], vec![honest(1_000_000)]);
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert_eq!(h.replaced, vec![(SourceId(0), SourceProblem::Stalled)]);
    // The replacement was asked for piece 0 from the first byte it lacked.
    let resumed = h
        .queries
        .iter()
        .find(|(s, q)| *s == SourceId(100) && q.count > 0)
        .unwrap()
        .1;
    assert_eq!(resumed.piece, 0);
    assert!(resumed.offset > 0, "{resumed:?}");
    // No byte of piece data crossed the network twice.
    assert_eq!(h.data_bytes, data.len() as u64);
}

#[test]
fn a_far_slower_source_is_replaced() {
    let data = content(3_000_000);
    let mut h = Harness::new(
        &data,
        64 * 1024,
        vec![
            honest(2_000_000),
            honest(2_000_000),
            honest(2_000_000),
            honest(40_000),
        ],
        vec![],
    );
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert!(
        h.replaced
            .iter()
            .any(|(s, p)| *s == SourceId(3) && matches!(p, SourceProblem::TooSlow { .. })),
        "{:?}",
        h.replaced
    );
    assert!(h.replaced.iter().all(|(s, _)| *s == SourceId(3)));
}

#[test]
fn an_unavailable_source_is_replaced() {
    let data = content(50_000);
    let no = Behaviour {
        unavailable: true,
        ..honest(1_000_000)
    };
    let mut h = Harness::new(&data, 16 * 1024, vec![no, honest(300_000)], vec![]);
    h.run();
    assert!(h.complete);
    assert!(matches!(
        &h.replaced[..],
        [(
            SourceId(0),
            SourceProblem::Ended {
                reason: DbEndReason::UNAVAILABLE,
                ..
            }
        )]
    ));
}

#[test]
fn seek_and_resume_fetch_only_what_is_missing_from_the_seek_point() {
    let data = content(1_000_000);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let (publication, _) = publish_bytes(&mut rng, &data, "video/webm", "v", 16384).unwrap();
    let d = publication.descriptor().clone();
    // Half the pieces are already stored.
    let have: Vec<u32> = (0..d.piece_count()).filter(|i| i % 2 == 0).collect();
    let mut dl = Download::resume(d.clone(), have.clone(), DownloadConfig::default(), [1; 32]);
    assert_eq!(dl.progress().pieces_have, 31);
    let now = Time::ZERO;
    dl.handle_input(now, DownloadInput::Seek { byte: 800_000 })
        .unwrap();
    dl.handle_input(now, DownloadInput::AddSource(SourceId(1)))
        .unwrap();
    let Some(DownloadEvent::Send {
        msg: DbMsg::Query(q),
        ..
    }) = dl.poll_event()
    else {
        panic!("a query")
    };
    // Piece 48 holds byte 800,000 and is held; 49 is the first missing piece from there.
    assert_eq!(d.piece_at(800_000), 48);
    assert_eq!((q.piece, q.offset, q.count), (49, 0, 1));
}

#[test]
fn api_misuse_is_an_error() {
    let mut dl = Download::new(HashName([1; 20]), DownloadConfig::default(), [0; 32]);
    for i in 0..5 {
        dl.handle_input(Time::ZERO, DownloadInput::AddSource(SourceId(i)))
            .unwrap();
    }
    assert_eq!(
        dl.handle_input(Time::ZERO, DownloadInput::AddSource(SourceId(9))),
        Err(DownloadError::TooManySources { max: 5 })
    );
    assert_eq!(
        dl.handle_input(Time::ZERO, DownloadInput::AddSource(SourceId(1))),
        Err(DownloadError::DuplicateSource(SourceId(1)))
    );
    // Only one source is asked for the descriptor.
    let mut queries = 0;
    while let Some(ev) = dl.poll_event() {
        if let DownloadEvent::Send {
            msg: DbMsg::Query(q),
            ..
        } = ev
        {
            assert_eq!(q.count, 0);
            queries += 1;
        }
    }
    assert_eq!(queries, 1);
    // Data from a source before any descriptor drops that source.
    let s = SourceId(0);
    dl.handle_input(
        Time::ZERO,
        DownloadInput::Message {
            source: s,
            msg: DbMsg::Data(DataSlice::new(0, 0, vec![1]).unwrap()),
        },
    )
    .unwrap();
    assert!(std::iter::from_fn(|| dl.poll_event()).any(|e| matches!(
        e,
        DownloadEvent::ReplaceSource { source, problem: SourceProblem::Protocol(_) } if source == s
    )));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_mix_of_faults_still_completes_byte_identical(
        len in 1usize..400_000,
        faults in proptest::collection::vec((0u8..4, 0u32..30, 20_000u64..3_000_000), 1..4),
    ) {
        let data = content(len);
        let mut sources = Vec::new();
        for (kind, piece, rate) in faults {
            let mut b = honest(rate);
            match kind {
                0 => b.corrupt = Some(piece),
                1 => b.stall_after = Some(u64::from(piece) * 498),
                2 => b.bad_meta = true,
                _ => b.unavailable = true,
            }
            sources.push(b);
        }
        sources.push(honest(500_000));
        let spares = vec![honest(800_000), honest(300_000), honest(1_000_000), honest(900_000)];
        let mut h = Harness::new(&data, 16 * 1024, sources, spares);
        h.run();
        prop_assert!(h.complete);
        prop_assert_eq!(h.assembled(), data);
        prop_assert!(h.max_unverified_seen <= DownloadConfig::default().max_unverified_bytes);
    }
}

#[derive(Debug, Clone)]
enum Noise {
    Data(u32, u32, usize, u8),
    Proof(u32, u8, usize),
    Meta(bool, u32),
    End,
    Remove,
    Wait(u64),
}

fn noise() -> impl Strategy<Value = Noise> {
    prop_oneof![
        5 => (0u32..12, 0u32..20_000, 0usize..=MAX_DATA_SLICE, any::<u8>()).prop_map(|(p, o, n, b)| Noise::Data(p, o, n, b)),
        2 => (0u32..12, 0u8..5, 0usize..5).prop_map(|(p, l, n)| Noise::Proof(p, l, n)),
        2 => (any::<bool>(), 0u32..600).prop_map(|(g, o)| Noise::Meta(g, o)),
        1 => Just(Noise::End),
        1 => Just(Noise::Remove),
        1 => (0u64..20_000).prop_map(Noise::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Sources sending arbitrary messages never get a wrong piece accepted, never make the
    /// scheduler panic, and never push unverified bytes past the bound.
    #[test]
    fn arbitrary_source_messages_never_yield_a_wrong_piece(
        steps in proptest::collection::vec((0u64..3, noise()), 1..400),
    ) {
        let data = content(150_000);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let (publication, records) = publish_bytes(&mut rng, &data, "a/b", "x", 16384).unwrap();
        let d = publication.descriptor().clone();
        let config = DownloadConfig { max_unverified_bytes: 100_000, ..DownloadConfig::default() };
        let mut dl = Download::new(d.hash_name(), config.clone(), [2; 32]);
        let mut now = Time::ZERO;
        let mut live = FlatSet::new();
        for (s, n) in steps {
            let s = SourceId(s);
            if live.insert(s) {
                dl.handle_input(now, DownloadInput::AddSource(s)).unwrap();
            }
            let msg = match n {
                Noise::Data(p, o, len, b) => {
                    // Half the time, true bytes of the piece at that offset.
                    let truth = records.get(p as usize).map(|r| r.bytes.clone()).unwrap_or_default();
                    let o = if b % 2 == 0 { o.min(truth.len() as u32) } else { o };
                    let bytes = if b % 2 == 0 {
                        truth[(o as usize).min(truth.len())..].iter().take(len).copied().collect()
                    } else {
                        vec![b; len]
                    };
                    DbMsg::Data(DataSlice::new(p, o, bytes).unwrap())
                }
                Noise::Proof(p, level, n) => {
                    let truth = records.get(p as usize).map(|r| r.proof.clone()).unwrap_or_default();
                    let hashes: Vec<Hash> = if level == 0 { truth.into_iter().take(n).collect() } else { vec![[level; 32]; n] };
                    DbMsg::Proof(ProofPart::new(p, level, hashes).unwrap())
                }
                Noise::Meta(good, off) => {
                    let mut bytes = d.encoded().to_vec();
                    let at = (off as usize) % bytes.len();
                    if !good { bytes[at] ^= 1; }
                    DbMsg::Connected(DescriptorSlice::split(DescriptorKind::ONIONMESH_V1, &bytes).unwrap().remove(0))
                }
                Noise::End => DbMsg::End(DbEnd::with_sentence(DbEndReason::DESTROYED, "bye")),
                Noise::Remove => {
                    live.remove(&s);
                    DbMsg::Unrecognized { cmd: 0, data: Default::default() }
                }
                Noise::Wait(ms) => {
                    now = now + Duration::from_millis(ms);
                    DbMsg::Unrecognized { cmd: 1, data: Default::default() }
                }
            };
            let input = match msg {
                DbMsg::Unrecognized { cmd: 0, .. } => DownloadInput::RemoveSource(s),
                DbMsg::Unrecognized { cmd: 1, .. } => DownloadInput::Timeout,
                msg => DownloadInput::Message { source: s, msg },
            };
            dl.handle_input(now, input).unwrap();
            while let Some(ev) = dl.poll_event() {
                match ev {
                    DownloadEvent::Piece { index, record } => {
                        prop_assert_eq!(&record.bytes, &records[index as usize].bytes);
                    }
                    DownloadEvent::Metadata(m) => prop_assert_eq!(&m, &d),
                    DownloadEvent::ReplaceSource { source, .. } => { live.remove(&source); }
                    _ => {}
                }
            }
            prop_assert!(dl.progress().unverified_bytes <= config.max_unverified_bytes);
            prop_assert!(dl.sources().count() <= config.max_sources);
        }
    }
}

#[test]
fn a_burst_of_late_read_bytes_is_not_taken_for_a_fast_source() {
    // Four sources at the same 1 MB/s; one's bytes arrive in bursts (its stream read late).
    let data = content(4_000_000);
    let bursty = Behaviour {
        burst: true,
        ..honest(1_000_000)
    };
    let mut h = Harness::new(
        &data,
        64 * 1024,
        vec![
            honest(1_000_000),
            honest(1_000_000),
            honest(1_000_000),
            bursty,
        ],
        vec![honest(1_000_000), honest(1_000_000)],
    );
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert!(
        h.replaced.is_empty(),
        "equal sources were dropped: {:?}",
        h.replaced
    );
    // The real aggregate is 4 MB/s; a rate from one burst would be far above it.
    assert!(
        h.max_rate_seen <= 6_000_000,
        "rate estimate jumped to {} B/s",
        h.max_rate_seen
    );
}

#[test]
fn a_seek_asks_for_the_sought_piece_at_once_even_with_a_full_window() {
    let data = content(2_000_000);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let (publication, _) = publish_bytes(&mut rng, &data, "video/webm", "v", 65536).unwrap();
    let d = publication.descriptor().clone();
    let mut dl = Download::resume(d.clone(), vec![], DownloadConfig::default(), [3; 32]);
    let now = Time::from_millis(10);
    for i in 0..3 {
        dl.handle_input(now, DownloadInput::AddSource(SourceId(i)))
            .unwrap();
    }
    let mut asked = FlatSet::new();
    while let Some(ev) = dl.poll_event() {
        if let DownloadEvent::Send {
            msg: DbMsg::Query(q),
            ..
        } = ev
        {
            asked.extend(q.piece..q.piece + u32::from(q.count));
        }
    }
    let target = d.piece_at(1_600_000);
    assert!(!asked.contains(&target), "{asked:?}");
    dl.handle_input(now, DownloadInput::Seek { byte: 1_600_000 })
        .unwrap();
    let mut first = None;
    while let Some(ev) = dl.poll_event() {
        if let DownloadEvent::Send {
            msg: DbMsg::Query(q),
            ..
        } = ev
        {
            first.get_or_insert(q);
        }
    }
    let q = first.expect("a query right after the seek");
    assert_eq!(q.piece, target);
}

/// A torrent download against sources that answer at once from the torrent's bytes; `corrupt`
/// maps a source to a piece it alters. Returns the download, the queries each source got, and
/// the sources dropped with why.
struct TorrentRun {
    dl: Download,
    info: Vec<u8>,
    data: Vec<u8>,
    piece_length: u32,
    corrupt: FlatMap<SourceId, u32>,
    asked: Vec<(SourceId, DbMsg)>,
    replaced: Vec<(SourceId, SourceProblem)>,
    pieces: FlatMap<u32, Vec<u8>>,
    complete: bool,
    now: Time,
}

impl TorrentRun {
    fn new(files: &[(&str, u64)], piece_length: u32, source: Option<DbSource>) -> TorrentRun {
        let size: u64 = files.iter().map(|f| f.1).sum();
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 241) as u8).collect();
        let info = crate::torrent::build_info("t", files, piece_length, &data);
        let mut dl = Download::new(
            crate::torrent::infohash(&info),
            DownloadConfig::default(),
            [3; 32],
        );
        dl.set_source(source);
        TorrentRun {
            dl,
            info,
            data,
            piece_length,
            corrupt: FlatMap::new(),
            asked: Vec::new(),
            replaced: Vec::new(),
            pieces: FlatMap::new(),
            complete: false,
            now: Time::from_millis(1000),
        }
    }

    fn input(&mut self, input: DownloadInput) {
        self.dl.handle_input(self.now, input).unwrap();
        self.pump();
    }

    fn answer(&self, s: SourceId, q: &DbQuery) -> Vec<DbMsg> {
        if q.count == 0 {
            return DescriptorSlice::split(DescriptorKind::BITTORRENT_V1_INFO, &self.info)
                .unwrap()
                .into_iter()
                .map(DbMsg::Connected)
                .collect();
        }
        let pl = self.piece_length as usize;
        let mut out = Vec::new();
        for i in q.piece..q.piece + u32::from(q.count) {
            let start = i as usize * pl;
            let mut bytes = self.data[start..(start + pl).min(self.data.len())].to_vec();
            if self.corrupt.get(&s) == Some(&i) {
                bytes[0] ^= 0xff;
            }
            let from = if i == q.piece { q.offset } else { 0 };
            out.extend(
                DataSlice::split(i, from, &bytes)
                    .into_iter()
                    .map(DbMsg::Data),
            );
        }
        out
    }

    fn pump(&mut self) {
        let mut todo = VecDeque::new();
        while let Some(ev) = self.dl.poll_event() {
            match ev {
                DownloadEvent::Send { source, msg } => {
                    self.asked.push((source, msg.clone()));
                    if let DbMsg::Query(q) = msg {
                        for m in self.answer(source, &q) {
                            todo.push_back((source, m));
                        }
                    }
                }
                DownloadEvent::Piece { index, record } => {
                    assert!(record.proof.is_empty());
                    self.pieces.insert(index, record.bytes);
                }
                DownloadEvent::ReplaceSource { source, problem } => {
                    self.replaced.push((source, problem))
                }
                DownloadEvent::Complete => self.complete = true,
                DownloadEvent::Metadata(_) => {}
            }
        }
        for (source, msg) in todo {
            self.input(DownloadInput::Message { source, msg });
        }
    }

    fn queried_pieces(&self) -> FlatSet<u32> {
        self.asked
            .iter()
            .filter_map(|(_, m)| match m {
                DbMsg::Query(q) if q.count > 0 => Some(q.piece..q.piece + u32::from(q.count)),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[test]
fn a_torrent_downloads_whole_with_the_source_hint_sent_first_on_each_source() {
    let hint = DbSource {
        hash_name: HashName([0; 20]),
        kind: onionmesh_wire::db::SourceKind::MAGNET,
        uri: onionmesh_wire::db::SourceUri::new("magnet:?xt=urn:btih:00").unwrap(),
    };
    let mut r = TorrentRun::new(&[("a.webm", 300_000)], 64 * 1024, Some(hint.clone()));
    r.input(DownloadInput::AddSource(SourceId(1)));
    r.input(DownloadInput::AddSource(SourceId(2)));
    for s in [SourceId(1), SourceId(2)] {
        let first = r
            .asked
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, m)| m.clone());
        assert_eq!(first, Some(DbMsg::Source(hint.clone())), "{s:?}");
    }
    assert!(r.complete);
    let got: Vec<u8> = r.pieces.values().flatten().copied().collect();
    assert_eq!(got, r.data);
    // A facilitated download waits longer for its first answer.
    assert_eq!(r.dl.timeout(), Duration::from_secs(60));
}

#[test]
fn one_file_of_a_multi_file_torrent_fetches_only_its_pieces() {
    // 16 KiB pieces; file 1 spans bytes 50 000..110 000: pieces 3..=6.
    let files = [("a.mkv", 50_000), ("b.webm", 60_000), ("c.txt", 90_000)];
    let mut r = TorrentRun::new(&files, 16 * 1024, None);
    r.input(DownloadInput::AddSource(SourceId(1)));
    // Before the descriptor, no file can be chosen.
    assert_eq!(
        Download::new(HashName([1; 20]), DownloadConfig::default(), [0; 32]).select_file(r.now, 1),
        Err(DownloadError::NoDescriptor)
    );
    // The descriptor arrived at once (the source answers synchronously); a multi-file torrent
    // asks for no piece until a file is chosen.
    assert!(r.dl.descriptor().is_some());
    assert!(r.dl.awaiting_selection());
    assert!(r.queried_pieces().is_empty());
    assert_eq!(
        r.dl.select_file(r.now, 7),
        Err(DownloadError::NoSuchFile(7))
    );
    r.dl.select_file(r.now, 1).unwrap();
    r.pump();
    r.input(DownloadInput::AddSource(SourceId(2)));
    assert!(r.complete, "the selection is held");
    let p = r.dl.progress();
    assert_eq!((p.pieces, p.pieces_have), (4, 4));
    assert_eq!(p.size, Some(4 * 16384));
    assert!(p.complete);
    assert_eq!(
        r.queried_pieces(),
        (3..7).collect::<FlatSet<u32>>(),
        "only file 1's pieces are asked for"
    );
    for i in 3..7u32 {
        let s = i as usize * 16384;
        assert_eq!(r.pieces[&i], r.data[s..(s + 16384).min(r.data.len())]);
    }
    // The file's bytes, cut from its pieces, are the file.
    let file: Vec<u8> = (3..7u32).flat_map(|i| r.pieces[&i].clone()).collect();
    let off = 50_000 - 3 * 16384;
    assert_eq!(&file[off..off + 60_000], &r.data[50_000..110_000]);
}

#[test]
fn a_torrent_piece_failing_sha1_drops_its_source_and_is_fetched_elsewhere() {
    let mut r = TorrentRun::new(&[("a.webm", 200_000)], 32 * 1024, None);
    r.corrupt.insert(SourceId(1), 2);
    r.input(DownloadInput::AddSource(SourceId(1)));
    assert_eq!(r.replaced.len(), 1);
    let (s, problem) = &r.replaced[0];
    assert_eq!(*s, SourceId(1));
    let SourceProblem::BadPiece { index: 2, error } = problem else {
        panic!("{problem:?}");
    };
    assert_eq!(
        error.to_string(),
        "piece 2 failed its SHA-1 check against the torrent's info: it was altered"
    );
    assert!(!r.complete);
    r.input(DownloadInput::AddSource(SourceId(2)));
    assert!(r.complete);
    let got: Vec<u8> = r.pieces.values().flatten().copied().collect();
    assert_eq!(got, r.data);
}

#[test]
fn torrent_pieces_larger_than_the_unverified_bound_are_fetched_one_at_a_time() {
    let mut r = TorrentRun::new(&[("a", 5 << 20)], 4 << 20, None);
    r.input(DownloadInput::AddSource(SourceId(1)));
    assert!(r.complete);
    assert_eq!(r.pieces.len(), 2);
}

#[test]
fn a_web_file_downloads_by_length_only_once_its_url_matches() {
    use onionmesh_wire::db::{SourceKind, SourceUri, WebMeta};
    use onionmesh_wire::BoundedString;
    let url = "http://127.0.0.1:9/clip.webm";
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 199) as u8).collect();
    let meta = WebMeta {
        size: data.len() as u64,
        mime: BoundedString::new("video/webm").unwrap(),
        url: SourceUri::new(url).unwrap(),
    };
    let h = DbSource::web_hash_name(url);
    let mut dl = Download::new(h, DownloadConfig::default(), [1; 32]);
    dl.set_source(Some(DbSource {
        hash_name: h,
        kind: SourceKind::WEB,
        uri: SourceUri::new(url).unwrap(),
    }));
    let now = Time::from_millis(5);
    let s = SourceId(1);
    dl.handle_input(now, DownloadInput::AddSource(s)).unwrap();
    let mut pieces = FlatMap::new();
    let mut complete = false;
    let mut first = true;
    loop {
        let mut todo = Vec::new();
        while let Some(ev) = dl.poll_event() {
            match ev {
                DownloadEvent::Send { msg, .. } if first => {
                    assert!(matches!(msg, DbMsg::Source(_)), "{msg:?}");
                    first = false;
                }
                DownloadEvent::Send {
                    msg: DbMsg::Query(q),
                    ..
                } => {
                    if q.count == 0 {
                        for d in
                            DescriptorSlice::split(DescriptorKind::WEB_V1, &meta.encode()).unwrap()
                        {
                            todo.push(DbMsg::Connected(d));
                        }
                    }
                    for i in q.piece..q.piece + u32::from(q.count) {
                        let st = i as usize * 65536;
                        let bytes = &data[st..(st + 65536).min(data.len())];
                        let from = if i == q.piece { q.offset } else { 0 };
                        todo.extend(
                            DataSlice::split(i, from, bytes)
                                .into_iter()
                                .map(DbMsg::Data),
                        );
                    }
                }
                DownloadEvent::Metadata(d) => {
                    assert_eq!(d.kind(), DescriptorKind::WEB_V1);
                    assert_eq!(d.name(), "clip.webm");
                }
                DownloadEvent::Piece { index, record } => {
                    pieces.insert(index, record.bytes);
                }
                DownloadEvent::Complete => complete = true,
                other => panic!("{other:?}"),
            }
        }
        if todo.is_empty() {
            break;
        }
        for msg in todo {
            dl.handle_input(now, DownloadInput::Message { source: s, msg })
                .unwrap();
        }
    }
    assert!(complete);
    assert_eq!(pieces.into_values().flatten().collect::<Vec<u8>>(), data);
    // A descriptor for another URL is refused as forged.
    let mut dl = Download::new(h, DownloadConfig::default(), [1; 32]);
    dl.handle_input(now, DownloadInput::AddSource(s)).unwrap();
    while dl.poll_event().is_some() {}
    let other = WebMeta {
        url: SourceUri::new("http://127.0.0.1:9/other.webm").unwrap(),
        ..meta
    };
    for d in DescriptorSlice::split(DescriptorKind::WEB_V1, &other.encode()).unwrap() {
        dl.handle_input(
            now,
            DownloadInput::Message {
                source: s,
                msg: DbMsg::Connected(d),
            },
        )
        .unwrap();
    }
    assert!(std::iter::from_fn(|| dl.poll_event()).any(|e| matches!(
        e,
        DownloadEvent::ReplaceSource {
            problem: SourceProblem::BadMetadata(MetaError::WrongUrl),
            ..
        }
    )));
}

#[test]
fn a_seek_asks_two_sources_at_once_and_nothing_is_lost_or_fetched_twice() {
    let data = content(2_000_000); // 31 pieces of 64 KiB
    let slow_far = Behaviour {
        rtt_ms: 900,
        ..honest(200_000)
    };
    let fast = honest(800_000);
    let near = honest(400_000);
    let mut h = Harness::new(&data, 65_536, vec![slow_far, fast, near], vec![]);
    // Play from the start until a few pieces are held and the sources are measured.
    h.run_until(|h| h.got.len() >= 8);
    let before = h.queries.len();
    let in_flight: Vec<u32> =
        h.dl.partials
            .iter()
            .filter(|(_, p)| p.owner.is_some())
            .map(|(i, _)| *i)
            .collect();
    assert!(
        !in_flight.is_empty(),
        "older pieces are in flight at the seek"
    );
    let target = 20;
    h.dl.handle_input(
        h.now,
        DownloadInput::Seek {
            byte: u64::from(target) * 65_536 + 100,
        },
    )
    .unwrap();
    h.pump();
    let urgent: Vec<(SourceId, DbQuery)> = h.queries[before..].to_vec();
    assert!(urgent.len() >= 2, "{urgent:?}");
    let (s1, q1) = urgent[0];
    let (s2, q2) = urgent[1];
    // The sought piece first, then the run after it, on two distinct sources, neither of them
    // the far one (a 900 ms round trip).
    assert_eq!((q1.piece, q1.count), (target, 4));
    assert_eq!((q2.piece, q2.count), (target + 4, 4));
    assert_ne!(s1, s2);
    assert!(s1 != SourceId(0) && s2 != SourceId(0), "{urgent:?}");
    // Both answered: the eight pieces after the seek arrive before the download moves on.
    h.run_until(|h| (target..target + 8).all(|i| h.got.contains_key(&i)));
    // Then everything completes, byte-identical; every byte was fetched once (the harness
    // also fails on a piece delivered twice).
    h.run();
    assert!(h.complete);
    assert_eq!(h.assembled(), data);
    assert_eq!(h.data_bytes, data.len() as u64);
    assert_eq!(h.dl.progress().pieces_have, 31);
}

use super::*;
use onionmesh_ordb::{publish_bytes, MemStore, PieceRecord, Store, DEFAULT_PIECE_SIZE};
use rand_chacha::rand_core::SeedableRng;

/// A reader with a real in-memory store, driven as the driver drives it. Waiters are numbers.
struct Bench {
    reader: Reader<u32>,
    store: MemStore,
    next_node_op: u64,
    seeks: Vec<(HashName, u64)>,
    reads: FlatMap<u32, Result<Vec<u8>, Failure>>,
    settled: FlatMap<u32, Result<(), Failure>>,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            reader: Reader::default(),
            store: MemStore::new(64 << 20),
            next_node_op: 0,
            seeks: Vec::new(),
            reads: FlatMap::new(),
            settled: FlatMap::new(),
        }
    }

    /// What the driver does with one of the node's store requests.
    fn node_store(&mut self, request: StoreRequest) {
        self.next_node_op += 1;
        let id = StoreOpId(self.next_node_op);
        self.reader.observe_submit(id, &request);
        self.store.submit(id, request);
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let mut idle = true;
            while let Some(c) = self.store.poll_completion() {
                idle = false;
                if c.id.0 & READER_STORE_OP_BIT != 0 {
                    self.reader.on_completion(c);
                } else {
                    self.reader.observe_completion(&c);
                }
            }
            while let Some(o) = self.reader.poll_output() {
                idle = false;
                match o {
                    ReaderOutput::Store { id, request } => self.store.submit(id, request),
                    ReaderOutput::Seek { hash_name, byte } => self.seeks.push((hash_name, byte)),
                    ReaderOutput::Read { waiter, result } => {
                        assert!(self.reads.insert(waiter, result).is_none());
                    }
                    ReaderOutput::Settle { waiter, result } => {
                        assert!(self.settled.insert(waiter, result).is_none());
                    }
                }
            }
            if idle {
                return;
            }
        }
    }

    fn read(&mut self, h: HashName, offset: u64, len: u64, w: u32) {
        if let Err((f, w)) = self.reader.read(h, offset, len, w) {
            self.reads.insert(w, Err(f));
        }
        self.pump();
    }

    fn got(&self, w: u32) -> &[u8] {
        match self.reads.get(&w) {
            Some(Ok(b)) => b,
            other => panic!("read {w}: {other:?}"),
        }
    }

    fn code(&self, w: u32) -> ErrorCode {
        match self.reads.get(&w) {
            Some(Err(f)) => f.code,
            other => panic!("read {w} should have failed: {other:?}"),
        }
    }
}

fn content(len: usize) -> (Vec<u8>, Descriptor, Vec<PieceRecord>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(len as u64);
    let (p, records) = publish_bytes(&mut rng, &data, "video/webm", "v.webm", DEFAULT_PIECE_SIZE)
        .expect("publishes");
    (data, p.descriptor().clone(), records)
}

fn put_descriptor(d: &Descriptor) -> StoreRequest {
    StoreRequest::PutDescriptor {
        hash_name: d.hash_name(),
        kind: d.kind(),
        descriptor: d.encoded().to_vec(),
        source: None,
    }
}

fn put_piece(d: &Descriptor, index: u32, record: &PieceRecord) -> StoreRequest {
    StoreRequest::PutPiece {
        hash_name: d.hash_name(),
        index,
        record: record.clone(),
    }
}

#[test]
fn reads_of_a_stored_content_are_byte_identical_and_clamped() {
    let (data, d, records) = content(300_000); // 5 pieces, the last one short
    let h = d.hash_name();
    let mut b = Bench::new();
    b.read(h, 0, 10, 1);
    assert_eq!(b.code(1), ErrorCode::NotFound);
    b.node_store(put_descriptor(&d));
    for (i, r) in records.iter().enumerate() {
        b.node_store(put_piece(&d, i as u32, r));
    }
    assert!(b.reader.is_complete(&h));
    let cases = [
        (0u64, 300_000u64),
        (1, 2),
        (65_535, 2),
        (65_536, 65_536),
        (100_000, 150_001),
        (299_999, 1_000),
        (250_000, u64::MAX),
    ];
    for (w, (off, len)) in cases.iter().enumerate() {
        b.read(h, *off, *len, 10 + w as u32);
        let end = (off + len.min(&(data.len() as u64))).min(data.len() as u64) as usize;
        assert_eq!(
            b.got(10 + w as u32),
            &data[*off as usize..end],
            "{off}+{len}"
        );
    }
    // Past the end: empty, at once.
    b.read(h, 400_000, 10, 30);
    assert!(b.got(30).is_empty());
    // Nothing waits, nothing was sought.
    assert!(b.seeks.is_empty());
    assert!(b.reader.reads.is_empty() && b.reader.gets.is_empty());
}

#[test]
fn a_read_longer_than_the_bound_returns_the_first_bytes() {
    let (data, d, records) = content(5 << 20);
    let mut b = Bench::new();
    b.node_store(put_descriptor(&d));
    for (i, r) in records.iter().enumerate() {
        b.node_store(put_piece(&d, i as u32, r));
    }
    b.read(d.hash_name(), 1, 5 << 20, 1);
    assert_eq!(b.got(1), &data[1..1 + MAX_READ_BYTES as usize]);
}

#[test]
fn a_read_during_a_download_waits_for_its_pieces_and_seeks_there() {
    let (data, d, records) = content(400_000); // 7 pieces
    let h = d.hash_name();
    let mut b = Bench::new();
    b.reader.download_started(h);
    // Before the metadata: waits, no seek yet (nothing known of the pieces).
    b.read(h, 200_000, 100_000, 1);
    assert!(b.reads.is_empty());
    b.node_store(put_descriptor(&d));
    // Pieces 3 and 4 are wanted; none is held: seek to the read's first byte.
    assert_eq!(b.seeks, vec![(h, 200_000)]);
    b.node_store(put_piece(&d, 0, &records[0]));
    b.node_store(put_piece(&d, 3, &records[3]));
    assert!(b.reads.is_empty());
    // Now waiting for piece 4: a seek to its first byte.
    assert_eq!(b.seeks[1], (h, 4 * 65_536));
    b.node_store(put_piece(&d, 4, &records[4]));
    assert_eq!(b.got(1), &data[200_000..300_000]);
    // The download fails: a read waiting on a missing piece fails NOT_COMPLETE; one of held
    // bytes still works; without the download a missing piece fails at once.
    b.read(h, 390_000, 10, 2);
    assert!(!b.reads.contains_key(&2));
    b.reader.download_ended(h, Some("no ORDB answered."));
    b.pump();
    assert_eq!(b.code(2), ErrorCode::NotComplete);
    let Some(Err(f)) = b.reads.get(&2) else {
        unreachable!()
    };
    assert!(f.message.contains("(no ORDB answered)"), "{}", f.message);
    b.read(h, 0, 10, 3);
    assert_eq!(b.got(3), &data[..10]);
    b.read(h, 65_536, 10, 4);
    assert_eq!(b.code(4), ErrorCode::NotComplete);
}

#[test]
fn removal_fails_reads_and_settles_the_remove_call() {
    let (_, d, records) = content(100_000);
    let h = d.hash_name();
    let mut b = Bench::new();
    b.node_store(put_descriptor(&d));
    b.node_store(put_piece(&d, 0, &records[0]));
    b.reader.download_started(h);
    b.read(h, 70_000, 10, 1); // piece 1 is missing: waits
    assert!(b.reads.is_empty());
    b.reader.wait_removed(h, 50).unwrap();
    b.node_store(StoreRequest::Delete { hash_name: h });
    assert_eq!(b.code(1), ErrorCode::NotFound);
    assert_eq!(b.settled.get(&50), Some(&Ok(())));
    assert!(b.reader.descriptor(&h).is_none());
    b.read(h, 0, 10, 2);
    assert_eq!(b.code(2), ErrorCode::NotFound);
}

#[test]
fn publish_waiters_settle_on_done_and_on_a_full_store() {
    let (_, d, records) = content(100_000);
    let h = d.hash_name();
    let mut b = Bench::new();
    b.node_store(put_descriptor(&d));
    b.reader.wait_published(h, 1).unwrap();
    b.reader.wait_published(h, 2).unwrap();
    b.node_store(put_piece(&d, 0, &records[0]));
    b.pump();
    assert!(b.settled.is_empty());
    b.reader.content_done(h);
    b.pump();
    assert_eq!(b.settled.get(&1), Some(&Ok(())));
    assert_eq!(b.settled.get(&2), Some(&Ok(())));
    b.reader.wait_published(h, 3).unwrap();
    b.reader.download_ended(
        h,
        Some("x was stopped: storage is full: 10 of 10 bytes are used"),
    );
    b.pump();
    match b.settled.get(&3) {
        Some(Err(f)) => assert_eq!(f.code, ErrorCode::QuotaFull),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parked_reads_are_bounded_and_stop_settles_them() {
    let (_, d, _) = content(100_000);
    let h = d.hash_name();
    let mut b = Bench::new();
    b.reader.download_started(h);
    for w in 0..MAX_PARKED_READS as u32 {
        b.read(h, 0, 10, w);
    }
    assert!(b.reads.is_empty());
    b.read(h, 0, 10, 999);
    assert_eq!(b.code(999), ErrorCode::Busy);
    let stopped = b.reader.stop("stopped");
    assert_eq!(stopped.len(), MAX_PARKED_READS);
    assert!(stopped.iter().all(|(_, f)| f.code == ErrorCode::Stopped));
}

#[test]
fn contents_listed_at_start_are_readable() {
    let (data, d, records) = content(200_000);
    let mut b = Bench::new();
    // What the node stored in an earlier session, read back by `load`.
    let mut old = MemStore::new(1 << 20);
    old.execute(put_descriptor(&d)).unwrap();
    old.execute(put_piece(&d, 2, &records[2])).unwrap();
    b.store = old;
    b.node_store(StoreRequest::List);
    b.read(d.hash_name(), 140_000, 10, 1);
    assert_eq!(b.got(1), &data[140_000..140_010]);
    assert!(!b.reader.is_complete(&d.hash_name()));
}

#[test]
fn only_the_newest_read_of_a_content_steers_its_download() {
    let (data, d, records) = content(1_000_000); // 16 pieces
    let h = d.hash_name();
    let mut b = Bench::new();
    b.reader.download_started(h);
    b.node_store(put_descriptor(&d));
    // A player reads from the start, then seeks to the end: two reads wait.
    b.read(h, 0, 200_000, 1);
    b.read(h, 900_000, 50_000, 2);
    assert_eq!(b.seeks, vec![(h, 0), (h, 900_000)]);
    // A piece of the old read arrives: it advances and waits again, without seeking back.
    b.node_store(put_piece(&d, 0, &records[0]));
    assert_eq!(b.seeks.len(), 2, "{:?}", b.seeks);
    // The new read's pieces arrive: it is served; the old one goes on waiting.
    for i in 13..=14 {
        b.node_store(put_piece(&d, i, &records[i as usize]));
    }
    assert_eq!(b.got(2), &data[900_000..950_000]);
    assert!(!b.reads.contains_key(&1));
    // With no newer read left, the old read steers again, at once, where it waits.
    assert_eq!(b.seeks.last(), Some(&(h, 65_536)));
    b.node_store(put_piece(&d, 1, &records[1]));
    assert_eq!(b.seeks.last(), Some(&(h, 2 * 65_536)));
}

#[test]
fn holds_range_needs_every_overlapping_piece() {
    let (_, d, records) = content(300_000); // pieces of 65 536 bytes, 5 of them
    let h = d.hash_name();
    let mut b = Bench::new();
    assert!(!b.reader.holds_range(&h, 0, 0), "nothing known yet");
    b.node_store(put_descriptor(&d));
    assert!(b.reader.holds_range(&h, 10, 0), "an empty range");
    b.node_store(put_piece(&d, 1, &records[1]));
    b.node_store(put_piece(&d, 2, &records[2]));
    assert!(b.reader.holds_range(&h, 65_536, 131_072));
    assert!(b.reader.holds_range(&h, 70_000, 100));
    assert!(
        !b.reader.holds_range(&h, 65_535, 2),
        "byte 65 535 is in piece 0"
    );
    assert!(
        !b.reader.holds_range(&h, 131_072, 65_537),
        "reaches piece 3"
    );
    assert!(!b.reader.is_complete(&h));
}

#[test]
fn a_waiting_read_gets_a_fresh_piece_before_the_store_has_written_it() {
    let (data, d, records) = content(400_000); // 7 pieces
    let h = d.hash_name();
    let mut b = Bench::new();
    b.reader.download_started(h);
    b.node_store(put_descriptor(&d));
    b.node_store(put_piece(&d, 2, &records[2]));
    // A player's read of pieces 2..=4 (piece 2 stored, 3 and 4 not yet).
    b.read(h, 150_000, 150_000, 1);
    assert!(b.reads.is_empty());
    // The node hands pieces 3 and 4 to the store; the writes have not completed (a slow
    // IndexedDB): the read is answered from the copies, byte-identical.
    b.reader
        .observe_submit(StoreOpId(900), &put_piece(&d, 3, &records[3]));
    b.pump();
    assert!(b.reads.is_empty(), "piece 4 is still missing");
    b.reader
        .observe_submit(StoreOpId(901), &put_piece(&d, 4, &records[4]));
    b.pump();
    assert_eq!(b.got(1), &data[150_000..300_000]);
    // Not stored yet: the reader does not count them as held.
    assert!(!b.reader.holds_range(&h, 3 * 65_536, 1));
    // A later read of the fresh pieces needs no store read either: a store that has neither
    // piece 3 nor 4 would fail a GetPiece with "no longer stored".
    b.read(h, 3 * 65_536, 2 * 65_536, 2);
    assert_eq!(b.got(2), &data[3 * 65_536..5 * 65_536]);
    // The writes complete: the pieces are held; nothing was lost or double-counted.
    b.reader.observe_completion(&StoreCompletion {
        id: StoreOpId(900),
        result: Ok(StoreReply::Stored),
    });
    assert!(b.reader.holds_range(&h, 3 * 65_536, 1));
    assert_eq!(b.reader.contents.get(&h).map(|k| k.held.len()), Some(2));
}

#[test]
fn pieces_kept_in_memory_are_bounded_and_forgotten_with_their_content() {
    let size = (MAX_RECENT_PIECES + 8) * DEFAULT_PIECE_SIZE as usize;
    let (data, d, records) = content(size);
    let h = d.hash_name();
    let mut b = Bench::new();
    b.node_store(put_descriptor(&d));
    for (i, r) in records.iter().enumerate() {
        b.node_store(put_piece(&d, i as u32, r));
        assert!(b.reader.recent.len() <= MAX_RECENT_PIECES);
        assert!(b.reader.recent_bytes <= MAX_RECENT_BYTES);
    }
    assert_eq!(b.reader.recent.len(), MAX_RECENT_PIECES);
    // The oldest were dropped; the newest are kept.
    assert!(recent_piece(&b.reader.recent, &h, 0).is_none());
    let last = records.len() as u32 - 1;
    assert!(recent_piece(&b.reader.recent, &h, last).is_some());
    // Pieces no longer in memory are read from the store, byte-identical.
    b.read(h, 0, size as u64, 1);
    assert_eq!(b.got(1), &data[..]);
    // Removing the content forgets its copies.
    b.node_store(StoreRequest::Delete { hash_name: h });
    assert!(b.reader.recent.is_empty());
    assert_eq!(b.reader.recent_bytes, 0);
}

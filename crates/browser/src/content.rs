//! The driver-side content reader: what `node.read`, `Download.blob()` and the promises of
//! `node.publish` / `node.remove` wait on. Pure logic, compiled on every target and tested
//! natively; the driver feeds it and carries out what it asks, like any sans-IO part.
//!
//! The reader learns what the store holds by watching the store traffic the driver carries out
//! for the node ([`Reader::observe_submit`] for every `Output::Store`,
//! [`Reader::observe_completion`] for every completion the node gets): a descriptor stored
//! (`PutDescriptor`, or one listed at start) makes a content readable, a `PutPiece` that
//! completed makes that piece readable, a `Delete` forgets the content. It then reads pieces
//! back with its own `GetPiece` requests (ids with [`READER_STORE_OP_BIT`] set, so the driver
//! routes their completions here instead of to the node) and slices them.
//!
//! The newest verified pieces are also kept in memory as the node hands them to the store
//! ([`MAX_RECENT_PIECES`], [`MAX_RECENT_BYTES`]), and a read takes them from there: a player
//! that waits for the piece a download just fetched gets it at once, not after the store's write
//! and a read back. On a loaded machine those two IndexedDB transactions took seconds each behind
//! a download's writes (measured 2026-12-01: 1-2 s from a piece verified to stored, then 1-2.5 s
//! more for the read, in the e2e content test's seek), which was most of a seek's time.
//!
//! A read of bytes that are not stored yet waits (parked, at most [`MAX_PARKED_READS`]) while a
//! download of the content runs, and asks the download to fetch that place first
//! ([`ReaderOutput::Seek`], the driver's `ordb().seek`). Without a download it fails at once:
//! nothing would ever bring the bytes.
//!
//! Bounds: pieces kept in memory ([`MAX_RECENT_PIECES`], [`MAX_RECENT_BYTES`]), reads parked ([`MAX_PARKED_READS`]), bytes per read ([`MAX_READ_BYTES`]; a longer
//! request gets the first `MAX_READ_BYTES`, as a POSIX `read` may), `GetPiece`s in flight per
//! read ([`MAX_GETS_PER_READ`]), contents known ([`MAX_CONTENTS`]), publish and remove waiters
//! ([`MAX_WAITERS`]). The table of the node's store operations watched holds one small entry per
//! operation in flight, so it is bounded by what the store lets be in flight.
//!
//! `W` is whatever settles a caller (the JS promise's functions in the page, a number in tests).

use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_node::ErrorCode;
use onionmesh_ordb::{
    Descriptor, HashName, StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest,
};
use std::collections::VecDeque;

/// Set in the ids of the reader's own store requests. The node's ids stay far below it (its
/// relay uses bit 63, its content layer counts up from 1).
pub const READER_STORE_OP_BIT: u64 = 1 << 62;
/// Most bytes one read returns.
pub const MAX_READ_BYTES: u64 = 4 << 20;
/// Most reads waiting at once (for pieces, or for the store).
pub const MAX_PARKED_READS: usize = 128;
/// Most `GetPiece` requests one read has in flight.
pub const MAX_GETS_PER_READ: usize = 4;
/// Most contents the reader tracks (the store holds fewer in practice: the node's relay holds
/// at most its `max_held`).
pub const MAX_CONTENTS: usize = 4096;
/// Most `publish` and `remove` calls waiting at once.
pub const MAX_WAITERS: usize = 64;
/// Most verified pieces kept in memory as they go to the store (the newest ones; 2 MiB of
/// 64 KiB pieces: about 13 s of a 1.25 Mbit/s video).
pub const MAX_RECENT_PIECES: usize = 32;
/// Most bytes of those pieces (a torrent's pieces may be up to 4 MiB; a larger one is not kept).
pub const MAX_RECENT_BYTES: usize = 4 << 20;

/// Why a read (or a publish, a remove) failed: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

fn failure(code: ErrorCode, message: String) -> Failure {
    Failure { code, message }
}

/// The code a store error is reported with.
pub fn store_error_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::QuotaFull { .. } => ErrorCode::QuotaFull,
        StoreError::UnknownContent(_) => ErrorCode::NotFound,
        StoreError::Busy(_) => ErrorCode::Busy,
        _ => ErrorCode::Browser,
    }
}

/// What the reader asks the driver to do.
#[derive(Debug)]
pub enum ReaderOutput<W> {
    /// Run this on the store; its completion comes back to [`Reader::on_completion`].
    Store {
        id: StoreOpId,
        request: StoreRequest,
    },
    /// Ask the download of `hash_name` to fetch from `byte` first.
    Seek { hash_name: HashName, byte: u64 },
    /// Settle a read with its bytes, or a failure.
    Read {
        waiter: W,
        result: Result<Vec<u8>, Failure>,
    },
    /// Settle a `publish` (`Ok` once every piece is stored) or a `remove` (`Ok` once deleted).
    Settle {
        waiter: W,
        result: Result<(), Failure>,
    },
}

struct Known {
    descriptor: Descriptor,
    held: FlatSet<u32>,
}

/// The node's store operations being watched, by id.
enum Watched {
    Descriptor(Box<Descriptor>),
    Piece(HashName, u32),
    List,
    Delete(HashName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ReadId(u64);

struct Read<W> {
    hash_name: HashName,
    offset: u64,
    len: u64,
    waiter: W,
    /// Allocated when the first piece arrives (a waiting read costs no buffer).
    buf: Vec<u8>,
    /// Next piece to ask the store for.
    next: u32,
    in_flight: usize,
    /// Pieces copied into `buf`.
    filled: u32,
    /// The missing piece this read waits for (a seek was asked for it).
    waiting_for: Option<u32>,
    /// The descriptor was known and the read clamped to the content's size.
    started: bool,
}

/// The reader (see the module docs).
pub struct Reader<W> {
    contents: FlatMap<HashName, Known>,
    downloading: FlatSet<HashName>,
    watched: FlatMap<StoreOpId, Watched>,
    reads: FlatMap<ReadId, Read<W>>,
    gets: FlatMap<StoreOpId, (ReadId, u32)>,
    publishes: Vec<(HashName, W)>,
    removals: Vec<(HashName, W)>,
    /// Removals whose `Delete` was submitted, by its id.
    deletes: FlatMap<StoreOpId, W>,
    /// The newest verified pieces handed to the store, oldest first: (content, index, bytes).
    recent: VecDeque<(HashName, u32, Vec<u8>)>,
    /// Bytes held in `recent` (at most [`MAX_RECENT_BYTES`]).
    recent_bytes: usize,
    next_read: u64,
    next_op: u64,
    out: VecDeque<ReaderOutput<W>>,
}

impl<W> Default for Reader<W> {
    fn default() -> Self {
        Reader {
            contents: FlatMap::new(),
            downloading: FlatSet::new(),
            watched: FlatMap::new(),
            reads: FlatMap::new(),
            gets: FlatMap::new(),
            publishes: Vec::new(),
            removals: Vec::new(),
            deletes: FlatMap::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            next_read: 0,
            next_op: 0,
            out: VecDeque::new(),
        }
    }
}

impl<W> Reader<W> {
    /// The descriptor of a content whose descriptor is stored.
    pub fn descriptor(&self, hash_name: &HashName) -> Option<&Descriptor> {
        self.contents.get(hash_name).map(|k| &k.descriptor)
    }

    /// Whether every piece of `hash_name` is stored.
    pub fn is_complete(&self, hash_name: &HashName) -> bool {
        self.contents
            .get(hash_name)
            .is_some_and(|k| k.held.len() as u64 == u64::from(k.descriptor.piece_count()))
    }

    /// Whether every piece overlapping bytes `[offset, offset + len)` of `hash_name` is stored
    /// (a file of a multi-file torrent: its boundary pieces whole). An empty range is held once
    /// the descriptor is known.
    pub fn holds_range(&self, hash_name: &HashName, offset: u64, len: u64) -> bool {
        let Some(k) = self.contents.get(hash_name) else {
            return false;
        };
        if len == 0 {
            return true;
        }
        let first = k.descriptor.piece_at(offset);
        let last = k.descriptor.piece_at(offset.saturating_add(len - 1));
        (first..=last).all(|i| k.held.contains(&i))
    }

    /// The driver started (or resumed) a download of `hash_name`.
    pub fn download_started(&mut self, hash_name: HashName) {
        self.downloading.insert(hash_name);
    }

    /// The download of `hash_name` ended (done, failed, cancelled): reads still waiting for
    /// pieces fail with `why`, and a publish waiting for it settles.
    pub fn download_ended(&mut self, hash_name: HashName, why: Option<&str>) {
        self.downloading.remove(&hash_name);
        let complete = self.is_complete(&hash_name);
        if !complete {
            let waiting: Vec<ReadId> = self
                .reads
                .iter()
                .filter(|(_, r)| {
                    r.hash_name == hash_name && (!r.started || r.waiting_for.is_some())
                })
                .map(|(id, _)| *id)
                .collect();
            let message = format!(
                "The download of {} stopped before these bytes arrived{}. Start it again with node.download(\"{}\").",
                hash_name.to_hex(),
                why.map(|w| format!(" ({})", w.trim_end_matches('.')))
                    .unwrap_or_default(),
                hash_name.to_hex()
            );
            for id in waiting {
                self.fail_read(id, failure(ErrorCode::NotComplete, message.clone()));
            }
        }
        // A publication's `Failed` (a full store) ends its publish call too.
        if let Some(why) = why {
            self.settle_publishes(hash_name, Err(why));
        }
    }

    /// Wait for a publication to be stored whole (`Done`) or to fail.
    pub fn wait_published(&mut self, hash_name: HashName, waiter: W) -> Result<(), (Failure, W)> {
        if self.publishes.len() >= MAX_WAITERS {
            return Err((busy("publications"), waiter));
        }
        if self.is_complete(&hash_name) {
            self.out.push_back(ReaderOutput::Settle {
                waiter,
                result: Ok(()),
            });
            return Ok(());
        }
        self.publishes.push((hash_name, waiter));
        Ok(())
    }

    /// A content is held whole (the node's `Done` event).
    pub fn content_done(&mut self, hash_name: HashName) {
        self.downloading.remove(&hash_name);
        self.settle_publishes(hash_name, Ok(()));
    }

    fn settle_publishes(&mut self, hash_name: HashName, result: Result<(), &str>) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.publishes)
            .into_iter()
            .partition(|(h, _)| *h == hash_name);
        self.publishes = rest;
        for (_, waiter) in mine {
            let result = result.map_err(|why| {
                let code = if why.contains("storage is full") {
                    ErrorCode::QuotaFull
                } else {
                    ErrorCode::Browser
                };
                failure(code, crate::codes::sentence(why))
            });
            self.out.push_back(ReaderOutput::Settle { waiter, result });
        }
    }

    /// Wait for the node's `Delete` of `hash_name` to complete. Call before `ordb().remove`.
    pub fn wait_removed(&mut self, hash_name: HashName, waiter: W) -> Result<(), (Failure, W)> {
        if self.removals.len() + self.deletes.len() >= MAX_WAITERS {
            return Err((busy("removals"), waiter));
        }
        self.removals.push((hash_name, waiter));
        Ok(())
    }

    /// Read `len` bytes at `offset` of `hash_name` (clamped to the content's size and to
    /// [`MAX_READ_BYTES`]). Settles through [`ReaderOutput::Read`]; refused at once (the waiter
    /// handed back) when too many reads wait or nothing could ever bring the bytes.
    pub fn read(
        &mut self,
        hash_name: HashName,
        offset: u64,
        len: u64,
        waiter: W,
    ) -> Result<(), (Failure, W)> {
        if !self.contents.contains_key(&hash_name) && !self.downloading.contains(&hash_name) {
            return Err((not_found(hash_name), waiter));
        }
        if self.reads.len() >= MAX_PARKED_READS {
            return Err((busy("reads"), waiter));
        }
        self.next_read += 1;
        let id = ReadId(self.next_read);
        self.reads.insert(
            id,
            Read {
                hash_name,
                offset,
                len: len.min(MAX_READ_BYTES),
                waiter,
                buf: Vec::new(),
                next: 0,
                in_flight: 0,
                filled: 0,
                waiting_for: None,
                started: false,
            },
        );
        self.start_read(id);
        Ok(())
    }

    /// The descriptor is known: clamp the read and go.
    fn start_read(&mut self, id: ReadId) {
        let Some(r) = self.reads.get_mut(&id) else {
            return;
        };
        let Some(k) = self.contents.get(&r.hash_name) else {
            return; // waits for the descriptor (a download is running)
        };
        r.started = true;
        let size = k.descriptor.size();
        r.offset = r.offset.min(size);
        r.len = r.len.min(size - r.offset);
        if r.len == 0 {
            self.finish_read(id);
            return;
        }
        r.next = k.descriptor.piece_at(r.offset);
        self.advance(id);
    }

    fn pieces_of(d: &Descriptor, r: &Read<W>) -> (u32, u32) {
        (d.piece_at(r.offset), d.piece_at(r.offset + r.len - 1))
    }

    /// Take the next pieces from memory or ask the store for them; wait (and seek) at the first
    /// missing one.
    fn advance(&mut self, id: ReadId) {
        let Some(r) = self.reads.get_mut(&id) else {
            return;
        };
        let Some(k) = self.contents.get(&r.hash_name) else {
            return;
        };
        let (first, last) = Self::pieces_of(&k.descriptor, r);
        while r.next <= last {
            if let Some(bytes) = recent_piece(&self.recent, &r.hash_name, r.next) {
                copy_piece(&k.descriptor, r, r.next, bytes);
                r.next += 1;
                continue;
            }
            if r.in_flight >= MAX_GETS_PER_READ || !k.held.contains(&r.next) {
                break;
            }
            self.next_op += 1;
            let op = StoreOpId(READER_STORE_OP_BIT | self.next_op);
            self.gets.insert(op, (id, r.next));
            self.out.push_back(ReaderOutput::Store {
                id: op,
                request: StoreRequest::GetPiece {
                    hash_name: r.hash_name,
                    index: r.next,
                },
            });
            r.next += 1;
            r.in_flight += 1;
        }
        if r.filled == last - first + 1 {
            self.finish_read(id);
            return;
        }
        if r.next <= last && !k.held.contains(&r.next) {
            if !self.downloading.contains(&r.hash_name) {
                let message = format!(
                    "Bytes {}..{} of {} are not stored and it is not being downloaded. Download it with node.download(\"{}\"), then read again.",
                    r.offset,
                    r.offset + r.len,
                    r.hash_name.to_hex(),
                    r.hash_name.to_hex()
                );
                self.fail_read(id, failure(ErrorCode::NotComplete, message));
                return;
            }
            if r.waiting_for != Some(r.next) {
                r.waiting_for = Some(r.next);
                let byte = r
                    .offset
                    .max(u64::from(r.next) * u64::from(k.descriptor.piece_size()));
                let hash_name = r.hash_name;
                // Only the newest read of a content steers its download. An older one (a
                // player's request abandoned by a seek) waits where it is: if it seeked back
                // each time one of its pieces came in, the download would swing between the
                // old and the new place.
                let newer = self
                    .reads
                    .range(ReadId(id.0 + 1)..)
                    .any(|(_, o)| o.hash_name == hash_name);
                if !newer {
                    self.out.push_back(ReaderOutput::Seek { hash_name, byte });
                }
            }
        }
    }

    fn finish_read(&mut self, id: ReadId) {
        if let Some(mut r) = self.reads.remove(&id) {
            r.buf.resize(r.len as usize, 0);
            let hash_name = r.hash_name;
            self.out.push_back(ReaderOutput::Read {
                waiter: r.waiter,
                result: Ok(r.buf),
            });
            self.steer(hash_name);
        }
    }

    fn fail_read(&mut self, id: ReadId, f: Failure) {
        if let Some(r) = self.reads.remove(&id) {
            let hash_name = r.hash_name;
            self.out.push_back(ReaderOutput::Read {
                waiter: r.waiter,
                result: Err(f),
            });
            self.steer(hash_name);
        }
    }

    /// The newest read of a content is gone: the newest one left that waits for a piece takes
    /// over the download's steering (it may have been waiting quietly behind it).
    fn steer(&mut self, hash_name: HashName) {
        let Some(k) = self.contents.get(&hash_name) else {
            return;
        };
        let waiting = self
            .reads
            .values()
            .rev()
            .find(|r| r.hash_name == hash_name && r.started);
        if let Some(r) = waiting {
            if let Some(p) = r.waiting_for {
                let byte = r
                    .offset
                    .max(u64::from(p) * u64::from(k.descriptor.piece_size()));
                self.out.push_back(ReaderOutput::Seek { hash_name, byte });
            }
        }
    }

    /// Every store request the driver submits for the node.
    pub fn observe_submit(&mut self, id: StoreOpId, request: &StoreRequest) {
        let watched = match request {
            StoreRequest::PutDescriptor {
                hash_name,
                kind,
                descriptor,
                ..
            } => match Descriptor::verify(*kind, descriptor, *hash_name) {
                Ok(d) => Watched::Descriptor(Box::new(d)),
                // The node verified it before storing; a failure here cannot happen.
                Err(_) => return,
            },
            StoreRequest::PutPiece {
                hash_name,
                index,
                record,
            } => {
                self.remember(*hash_name, *index, &record.bytes);
                Watched::Piece(*hash_name, *index)
            }
            StoreRequest::List => Watched::List,
            StoreRequest::Delete { hash_name } => {
                // The oldest `remove` call for this content waits on this deletion.
                if let Some(pos) = self.removals.iter().position(|(h, _)| h == hash_name) {
                    let (_, waiter) = self.removals.remove(pos);
                    self.deletes.insert(id, waiter);
                }
                Watched::Delete(*hash_name)
            }
            StoreRequest::GetPiece { .. } | StoreRequest::GetDescriptor { .. } => return,
        };
        self.watched.insert(id, watched);
    }

    /// Every completion the driver feeds to the node (call before feeding it).
    pub fn observe_completion(&mut self, c: &StoreCompletion) {
        let Some(w) = self.watched.remove(&c.id) else {
            return;
        };
        match (w, &c.result) {
            (Watched::Descriptor(d), Ok(_)) => self.learn(*d, &[]),
            (Watched::Piece(h, i), Ok(_)) => self.piece_stored(h, i),
            (Watched::List, Ok(StoreReply::List(list))) => {
                for s in list {
                    if let Ok(d) = Descriptor::verify(s.kind, &s.descriptor, s.hash_name) {
                        self.learn(d, &s.pieces);
                    }
                }
            }
            (Watched::Delete(h), _) => {
                self.forget(h);
                if let Some(waiter) = self.deletes.remove(&c.id) {
                    let result = c.result.as_ref().map(|_| ()).map_err(|e| {
                        failure(
                            store_error_code(e),
                            crate::codes::sentence(&format!(
                                "{} could not be deleted: {e}",
                                h.to_hex()
                            )),
                        )
                    });
                    self.out.push_back(ReaderOutput::Settle { waiter, result });
                }
            }
            _ => {}
        }
    }

    fn learn(&mut self, descriptor: Descriptor, pieces: &[u32]) {
        let h = descriptor.hash_name();
        if !self.contents.contains_key(&h) {
            if self.contents.len() >= MAX_CONTENTS {
                return;
            }
            self.contents.insert(
                h,
                Known {
                    descriptor,
                    held: FlatSet::new(),
                },
            );
        }
        if let Some(k) = self.contents.get_mut(&h) {
            let count = k.descriptor.piece_count();
            k.held.extend(pieces.iter().filter(|i| **i < count));
        }
        // Reads that waited for the descriptor start now.
        let waiting: Vec<ReadId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.hash_name == h && !r.started)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.start_read(id);
        }
    }

    /// A verified piece goes to the store: keep a copy among the newest pieces (evicting the
    /// oldest past the bounds) and hand it to the reads waiting for it. A piece of a content
    /// whose descriptor is not known yet, of the wrong length or larger than
    /// [`MAX_RECENT_BYTES`] is not kept (reads then wait for the store as before).
    fn remember(&mut self, h: HashName, index: u32, bytes: &[u8]) {
        let Some(k) = self.contents.get(&h) else {
            return;
        };
        if k.descriptor.piece_len(index).map(|l| l as usize) != Some(bytes.len())
            || bytes.len() > MAX_RECENT_BYTES
            || recent_piece(&self.recent, &h, index).is_some()
        {
            return;
        }
        self.recent.push_back((h, index, bytes.to_vec()));
        self.recent_bytes += bytes.len();
        while self.recent.len() > MAX_RECENT_PIECES || self.recent_bytes > MAX_RECENT_BYTES {
            let Some((_, _, old)) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.len();
        }
        self.wake_reads(h, index);
    }

    fn piece_stored(&mut self, h: HashName, index: u32) {
        let Some(k) = self.contents.get_mut(&h) else {
            return;
        };
        if index >= k.descriptor.piece_count() {
            return;
        }
        k.held.insert(index);
        self.wake_reads(h, index);
    }

    /// Piece `index` of `h` can be read now: move on the reads waiting for it.
    fn wake_reads(&mut self, h: HashName, index: u32) {
        let waiting: Vec<ReadId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.hash_name == h && r.waiting_for == Some(index))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(r) = self.reads.get_mut(&id) {
                r.waiting_for = None;
            }
            self.advance(id);
        }
    }

    /// A content was deleted: forget it; reads of it fail.
    fn forget(&mut self, h: HashName) {
        self.contents.remove(&h);
        self.recent.retain(|(x, _, _)| *x != h);
        self.recent_bytes = self.recent.iter().map(|(_, _, b)| b.len()).sum();
        self.downloading.remove(&h);
        let gone: Vec<ReadId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.hash_name == h)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.fail_read(id, not_found(h));
        }
    }

    /// A completion of one of the reader's own requests (its id has [`READER_STORE_OP_BIT`]).
    pub fn on_completion(&mut self, c: StoreCompletion) {
        let Some((id, index)) = self.gets.remove(&c.id) else {
            return;
        };
        let Some(r) = self.reads.get_mut(&id) else {
            return; // the read failed meanwhile
        };
        r.in_flight = r.in_flight.saturating_sub(1);
        let Some(k) = self.contents.get(&r.hash_name) else {
            return;
        };
        let record = match c.result {
            Ok(StoreReply::Piece(Some(record))) => record,
            Ok(_) => {
                let message = format!(
                    "Piece {index} of {} is no longer stored (it was removed meanwhile).",
                    r.hash_name.to_hex()
                );
                return self.fail_read(id, failure(ErrorCode::NotComplete, message));
            }
            Err(e) => {
                let message =
                    crate::codes::sentence(&format!("reading the content store failed: {e}"));
                return self.fail_read(id, failure(store_error_code(&e), message));
            }
        };
        let d = &k.descriptor;
        if Some(record.bytes.len()) != d.piece_len(index).map(|l| l as usize) {
            let message = format!(
                "The store gave piece {index} of {} with {} bytes instead of {:?}; remove it from the library and download it again.",
                r.hash_name.to_hex(),
                record.bytes.len(),
                d.piece_len(index)
            );
            return self.fail_read(id, failure(ErrorCode::Internal, message));
        }
        copy_piece(d, r, index, &record.bytes);
        self.advance(id);
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<ReaderOutput<W>> {
        self.out.pop_front()
    }

    /// The node stopped: every waiting read, publish and remove fails with `STOPPED`. Returns
    /// the waiters with their failure.
    pub fn stop(&mut self, message: &str) -> Vec<(W, Failure)> {
        let f = || failure(ErrorCode::Stopped, message.to_owned());
        let mut out: Vec<(W, Failure)> = Vec::new();
        out.extend(
            std::mem::take(&mut self.reads)
                .into_values()
                .map(|r| (r.waiter, f())),
        );
        out.extend(
            std::mem::take(&mut self.publishes)
                .into_iter()
                .map(|(_, w)| (w, f())),
        );
        out.extend(
            std::mem::take(&mut self.removals)
                .into_iter()
                .map(|(_, w)| (w, f())),
        );
        out.extend(
            std::mem::take(&mut self.deletes)
                .into_values()
                .map(|w| (w, f())),
        );
        for o in std::mem::take(&mut self.out) {
            match o {
                ReaderOutput::Read { waiter, .. } | ReaderOutput::Settle { waiter, .. } => {
                    out.push((waiter, f()))
                }
                _ => {}
            }
        }
        self.gets.clear();
        out
    }
}

/// Piece `index` of `h` among the newest pieces kept in memory.
fn recent_piece<'a>(
    recent: &'a VecDeque<(HashName, u32, Vec<u8>)>,
    h: &HashName,
    index: u32,
) -> Option<&'a [u8]> {
    recent
        .iter()
        .find(|(x, i, _)| x == h && *i == index)
        .map(|(_, _, b)| b.as_slice())
}

/// Copy the part of piece `index` (`bytes`, of the length the descriptor gives) that falls in
/// the read's `[offset, offset + len)` into its buffer, and count the piece as filled.
fn copy_piece<W>(d: &Descriptor, r: &mut Read<W>, index: u32, bytes: &[u8]) {
    let piece_start = u64::from(index) * u64::from(d.piece_size());
    let piece_end = piece_start + bytes.len() as u64;
    let from = r.offset.max(piece_start);
    let to = (r.offset + r.len).min(piece_end);
    if r.buf.is_empty() {
        r.buf = vec![0; r.len as usize];
    }
    if from < to {
        r.buf[(from - r.offset) as usize..(to - r.offset) as usize]
            .copy_from_slice(&bytes[(from - piece_start) as usize..(to - piece_start) as usize]);
    }
    r.filled += 1;
}

fn not_found(h: HashName) -> Failure {
    failure(
        ErrorCode::NotFound,
        format!(
            "No content {} is held or being downloaded. Open its link or call node.download(\"{}\") first.",
            h.to_hex(),
            h.to_hex()
        ),
    )
}

fn busy(what: &str) -> Failure {
    failure(
        ErrorCode::Busy,
        format!("Too many {what} are waiting already; try again when one has finished."),
    )
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;

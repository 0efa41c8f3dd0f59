//! [`Ordb`]: one node's content layer, the owner of the [`Relay`] and the [`Download`]s.
//!
//! It adds what joins the parts: verified pieces and descriptors go to the store, stored pieces
//! make the relay serve and advertise, contents found in the store at start are held again (and
//! partial ones can resume), and store completions are routed to whoever asked. The node glue
//! (`node.ordb()`) talks to this object only.
//!
//! Calling rules (as for every sans-IO part): feed inputs with [`Ordb::handle_input`] or the
//! API methods, then drain [`Ordb::poll_output`] until `None` and carry out each output in
//! order; arm one timer for [`Ordb::poll_timeout`] and feed [`OrdbInput::Timeout`].

use onionmesh_bounded::FlatMap;
use std::collections::VecDeque;

use onionmesh_wire::db::{DbMsg, DbSource, DescriptorKind, HashName, SourceKind};
use onionmesh_wire::Time;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::content::{Descriptor, PieceRecord};
use crate::download::{
    Download, DownloadConfig, DownloadError, DownloadEvent, DownloadInput, Progress, SourceId,
    SourceProblem,
};
use crate::publish::Publication;
use crate::relay::{Relay, RelayConfig, RelayEvent, RelayInput, RelayOutput, RELAY_STORE_OP_BIT};
use crate::store::{StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest};

/// Limits of the content layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdbConfig {
    pub relay: RelayConfig,
    pub download: DownloadConfig,
    /// Downloads at once.
    pub max_downloads: usize,
    /// Store writes outstanding before [`Ordb::wants_source_data`] turns false.
    pub max_pending_writes: usize,
}

impl Default for OrdbConfig {
    fn default() -> Self {
        OrdbConfig {
            relay: RelayConfig::default(),
            download: DownloadConfig::default(),
            max_downloads: 16,
            max_pending_writes: 256,
        }
    }
}

/// What the driver tells the content layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrdbInput {
    /// Serving and relaying: queries, circuits, adverts, forwarded answers, provider answers
    /// (see [`RelayInput`]; `Store` and `Timeout` are routed by the owner, send them here
    /// as [`OrdbInput::Store`] and [`OrdbInput::Timeout`]).
    Relay(RelayInput),
    /// For the download of `hash_name`: a source added or gone, a message from a source, a seek.
    Download {
        hash_name: HashName,
        input: DownloadInput,
    },
    /// A store operation finished.
    Store(StoreCompletion),
    /// The timer armed for [`Ordb::poll_timeout`] fired.
    Timeout,
}

/// What the content layer asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrdbOutput {
    /// A serving/relaying action (never `RelayOutput::Store`: that comes as [`OrdbOutput::Store`]).
    Relay(RelayOutput),
    /// Send a message to a source of a download.
    ToSource {
        hash_name: HashName,
        source: SourceId,
        msg: DbMsg,
    },
    /// A download dropped this source: close its stream, build another if possible.
    ReplaceSource {
        hash_name: HashName,
        source: SourceId,
        problem: SourceProblem,
    },
    /// Carry out a store operation; feed its completion back as [`OrdbInput::Store`].
    Store {
        id: StoreOpId,
        request: StoreRequest,
    },
    Event(OrdbEvent),
}

/// News for the page and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrdbEvent {
    /// A download's descriptor arrived and verified.
    Metadata {
        hash_name: HashName,
        descriptor: Box<Descriptor>,
    },
    /// A verified piece is now stored (the player may read it); counts held and in all.
    Stored {
        hash_name: HashName,
        index: u32,
        pieces_have: u32,
        pieces: u32,
    },
    /// Every piece is held and stored: a download is over (close its sources), or a
    /// publication is fully stored.
    Complete(HashName),
    /// Found in the store at start, incomplete: [`Ordb::download`] resumes it, or
    /// [`Ordb::download_from`] with `source` when it came from outside the mesh (the magnet
    /// link or URL stored with its descriptor), so ORDBs can hand it to a facilitator again.
    Resumable {
        hash_name: HashName,
        pieces_have: u32,
        pieces: u32,
        source: Option<DbSource>,
    },
    /// A stored descriptor failed verification at start; it is ignored.
    BadStoredContent(HashName),
    /// A store write failed (a full quota, say); the download of `hash_name` was stopped, what
    /// was stored is kept.
    StoreFailed {
        /// `None` when listing the store at start failed.
        hash_name: Option<HashName>,
        error: StoreError,
    },
    /// News from the serving side.
    Relay(RelayEvent),
}

/// One content in this node's library (`node.library()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryEntry {
    pub hash_name: HashName,
    pub name: String,
    pub mime: String,
    /// Content size, bytes.
    pub size: u64,
    /// Verified bytes stored.
    pub bytes_have: u64,
    pub complete: bool,
    /// Being downloaded now.
    pub downloading: bool,
}

/// The caller misused the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OrdbError {
    #[error("at most {0} downloads can run at once; wait for one to finish")]
    TooManyDownloads(usize),
    #[error("{0} is already being downloaded")]
    AlreadyDownloading(HashName),
    #[error("{0} is not being downloaded")]
    NotDownloading(HashName),
    #[error("the source hint names {got}, not the content asked for ({want})")]
    SourceMismatch { want: HashName, got: HashName },
    #[error(transparent)]
    Download(#[from] crate::download::DownloadError),
}

#[derive(Debug)]
enum Op {
    List,
    PutDescriptor(HashName),
    PutPiece(HashName, u32),
}

/// One node's content layer.
pub struct Ordb {
    config: OrdbConfig,
    rng: ChaCha8Rng,
    relay: Relay,
    downloads: FlatMap<HashName, Download>,
    ops: FlatMap<StoreOpId, Op>,
    pending_writes: usize,
    next_op: u64,
    /// See [`Ordb::pieces_received`].
    pieces_received: u64,
    /// Contents whose completed download came (in part) through a facilitator, newest last, at
    /// most [`MAX_FACILITATED_REMEMBERED`]: their [`Progress::facilitated`] stays true once the
    /// download is over (not across a reload).
    facilitated: VecDeque<HashName>,
    out: VecDeque<OrdbOutput>,
}

/// Completed facilitated downloads remembered for [`Progress::facilitated`].
pub const MAX_FACILITATED_REMEMBERED: usize = 64;

impl std::fmt::Debug for Ordb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordb")
            .field("relay", &self.relay)
            .field("downloads", &self.downloads.len())
            .finish_non_exhaustive()
    }
}

impl Ordb {
    /// `seed` seeds every random draw (the downloads' loop counters).
    pub fn new(now: Time, config: OrdbConfig, seed: [u8; 32]) -> Ordb {
        Ordb {
            rng: ChaCha8Rng::from_seed(seed),
            relay: Relay::new(now, config.relay.clone()),
            downloads: FlatMap::new(),
            ops: FlatMap::new(),
            pending_writes: 0,
            facilitated: VecDeque::new(),
            next_op: 0,
            pieces_received: 0,
            out: VecDeque::new(),
            config,
        }
    }

    /// The serving side, read-only (lists, what is held).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Whole pieces the downloads of this node received from their sources and checked
    /// against the Merkle root, good or bad, since it started: the requester's side of
    /// delivery (a piece lost on the way, e.g. because its request was cancelled, is not
    /// counted).
    pub fn pieces_received(&self) -> u64 {
        self.pieces_received
    }

    /// Read what the store holds (call once at start): every valid content is served and
    /// advertised again, incomplete ones are reported [`OrdbEvent::Resumable`].
    pub fn load(&mut self) {
        self.store(Op::List, StoreRequest::List);
    }

    /// Start (or resume) downloading `hash_name`. Add sources with
    /// [`OrdbInput::Download`] + [`DownloadInput::AddSource`]. A content already held whole
    /// completes at once.
    pub fn download(&mut self, now: Time, hash_name: HashName) -> Result<(), OrdbError> {
        self.download_with(now, hash_name, None)
    }

    /// [`Ordb::download`] with a source hint (issue 10): `source.hash_name` is downloaded, and
    /// every source stream gets the `DB_SOURCE` first, so that an ORDB that finds nobody in
    /// the mesh can hand the request to a facilitator. Joining a download already under way
    /// sets its hint.
    ///
    /// A hint that does not fit the content's descriptor, once this node knows it (a magnet
    /// link for a content that is no torrent, as 40 bare hex digits give), is dropped, here and
    /// when the descriptor arrives: a facilitator could not find it, and would end the download
    /// with a sentence about torrents.
    pub fn download_from(&mut self, now: Time, source: DbSource) -> Result<(), OrdbError> {
        let hash_name = source.hash_name;
        let fits = self
            .descriptor(&hash_name)
            .is_none_or(|d| source_fits(d.kind(), &source));
        let source = fits.then_some(source);
        if let Some(d) = self.downloads.get_mut(&hash_name) {
            if source.is_some() {
                d.set_source(source);
            }
            return Ok(());
        }
        self.download_with(now, hash_name, source)
    }

    fn download_with(
        &mut self,
        now: Time,
        hash_name: HashName,
        source: Option<DbSource>,
    ) -> Result<(), OrdbError> {
        if let Some(src) = &source {
            if src.hash_name != hash_name {
                return Err(OrdbError::SourceMismatch {
                    want: hash_name,
                    got: src.hash_name,
                });
            }
        }
        if self.downloads.contains_key(&hash_name) {
            return Err(OrdbError::AlreadyDownloading(hash_name));
        }
        if self.downloads.len() >= self.config.max_downloads {
            return Err(OrdbError::TooManyDownloads(self.config.max_downloads));
        }
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let dl = match self.relay.held(&hash_name) {
            Some((d, pieces)) => {
                Download::resume(d.clone(), pieces, self.config.download.clone(), seed)
            }
            None => Download::new(hash_name, self.config.download.clone(), seed),
        };
        let mut dl = dl;
        dl.set_source(source);
        if dl.is_complete() {
            self.out
                .push_back(OrdbOutput::Event(OrdbEvent::Complete(hash_name)));
            return Ok(());
        }
        self.downloads.insert(hash_name, dl);
        self.pump(now);
        Ok(())
    }

    /// Restrict the download of `hash_name` to file `index` of its torrent (the pieces that
    /// overlap it, boundary pieces whole); its progress then reports that file's pieces, and it
    /// completes when they are stored. A multi-file torrent fetches no piece before this (or
    /// [`Ordb::select_all`]). Errors: not downloading, no descriptor yet, no such file.
    pub fn select_file(
        &mut self,
        now: Time,
        hash_name: HashName,
        index: usize,
    ) -> Result<(), OrdbError> {
        self.reselect(now, hash_name, |d| d.select_file(now, index))?;
        self.complete_selection(hash_name);
        Ok(())
    }

    /// Fetch every piece of `hash_name` again (undo [`Ordb::select_file`]; a multi-file
    /// torrent waits for this or `select_file` before fetching any piece).
    pub fn select_all(&mut self, now: Time, hash_name: HashName) -> Result<(), OrdbError> {
        self.reselect(now, hash_name, |d| d.select_pieces(now, None))
    }

    /// Change the selection of the download of `hash_name` with `change`, then pump.
    fn reselect(
        &mut self,
        now: Time,
        hash_name: HashName,
        change: impl FnOnce(&mut Download) -> Result<(), DownloadError>,
    ) -> Result<(), OrdbError> {
        let d = self
            .downloads
            .get_mut(&hash_name)
            .ok_or(OrdbError::NotDownloading(hash_name))?;
        change(d)?;
        self.pump(now);
        Ok(())
    }

    /// The verified descriptor of `hash_name`: the download's, or the held content's.
    pub fn descriptor(&self, hash_name: &HashName) -> Option<&Descriptor> {
        if let Some(d) = self.downloads.get(hash_name).and_then(Download::descriptor) {
            return Some(d);
        }
        self.relay.held(hash_name).map(|(d, _)| d)
    }

    /// The selection of a download (first piece, end exclusive), if restricted.
    pub fn selection(&self, hash_name: &HashName) -> Option<(u32, u32)> {
        self.downloads.get(hash_name).and_then(Download::selection)
    }

    /// A download restricted to a selection is over once the selection is verified and stored.
    fn complete_selection(&mut self, hash_name: HashName) {
        let Some(d) = self.downloads.get(&hash_name) else {
            return;
        };
        let Some((first, end)) = d.selection() else {
            return;
        };
        if d.is_complete() && self.relay.holds_all(&hash_name, first, end) {
            self.download_completed(hash_name);
            self.out
                .push_back(OrdbOutput::Event(OrdbEvent::Complete(hash_name)));
        }
    }

    /// A download is over, complete: forget it, remembering whether it was facilitated.
    fn download_completed(&mut self, hash_name: HashName) {
        let Some(d) = self.downloads.remove(&hash_name) else {
            return;
        };
        if d.progress().facilitated && !self.facilitated.contains(&hash_name) {
            if self.facilitated.len() >= MAX_FACILITATED_REMEMBERED {
                self.facilitated.pop_front();
            }
            self.facilitated.push_back(hash_name);
        }
    }

    /// Stop downloading `hash_name` (what is stored stays, and is served).
    pub fn cancel(&mut self, hash_name: &HashName) -> Result<(), OrdbError> {
        self.downloads
            .remove(hash_name)
            .map(|_| ())
            .ok_or(OrdbError::NotDownloading(*hash_name))
    }

    /// Remove a content: stop its download, stop serving it, delete it from the store.
    pub fn remove(&mut self, now: Time, hash_name: HashName) {
        self.downloads.remove(&hash_name);
        self.facilitated.retain(|h| *h != hash_name);
        self.relay.handle_input(now, RelayInput::Forget(hash_name));
        let id = self.alloc_op();
        self.out.push_back(OrdbOutput::Store {
            id,
            request: StoreRequest::Delete { hash_name },
        });
        self.pump(now);
    }

    /// Start storing a new publication: its descriptor now, then each piece with
    /// [`Ordb::put_piece`] (from the publisher's second pass).
    pub fn publish(&mut self, now: Time, publication: &Publication) {
        let d = publication.descriptor();
        self.hold_descriptor(now, d.clone(), None);
        if d.piece_count() == 0 {
            self.out
                .push_back(OrdbOutput::Event(OrdbEvent::Complete(d.hash_name())));
        }
    }

    /// Store one piece of a content whose descriptor is held (a publication's second pass).
    pub fn put_piece(&mut self, now: Time, hash_name: HashName, index: u32, record: PieceRecord) {
        self.store(
            Op::PutPiece(hash_name, index),
            StoreRequest::PutPiece {
                hash_name,
                index,
                record,
            },
        );
        self.pump(now);
    }

    /// The download's progress, or the held share of a content not being downloaded.
    pub fn progress(&self, hash_name: &HashName) -> Option<Progress> {
        if let Some(d) = self.downloads.get(hash_name) {
            return Some(d.progress());
        }
        let (d, pieces) = self.relay.held(hash_name)?;
        let bytes_have = pieces
            .iter()
            .map(|i| u64::from(d.piece_len(*i).unwrap_or(0)))
            .sum();
        Some(Progress {
            bytes_have,
            size: Some(d.size()),
            pieces: d.piece_count(),
            pieces_have: pieces.len() as u32,
            rate_bps: 0,
            sources: 0,
            eta_s: None,
            unverified_bytes: 0,
            complete: pieces.len() as u32 == d.piece_count(),
            facilitated: self.facilitated.contains(hash_name),
        })
    }

    /// False while the store is more than [`OrdbConfig::max_pending_writes`] writes behind:
    /// the driver then stops reading download streams (stream flow control pushes back through
    /// the circuits to the sources) until it turns true again. Nothing is dropped.
    pub fn wants_source_data(&self) -> bool {
        self.pending_writes < self.config.max_pending_writes
    }

    /// Store writes not yet completed.
    pub fn store_backlog(&self) -> usize {
        self.pending_writes
    }

    /// Every content held (whole or in part), by hash_name. Bounded by
    /// [`RelayConfig::max_held`].
    pub fn library(&self) -> Vec<LibraryEntry> {
        self.relay
            .held_names()
            .filter_map(|h| {
                let (d, pieces) = self.relay.held(&h)?;
                let bytes_have = pieces
                    .iter()
                    .map(|i| u64::from(d.piece_len(*i).unwrap_or(0)))
                    .sum();
                Some(LibraryEntry {
                    hash_name: h,
                    name: d.name().to_owned(),
                    mime: d.mime().to_owned(),
                    size: d.size(),
                    bytes_have,
                    complete: pieces.len() as u32 == d.piece_count(),
                    downloading: self.downloads.contains_key(&h),
                })
            })
            .collect()
    }

    /// The contents being downloaded.
    pub fn downloads(&self) -> impl Iterator<Item = HashName> + '_ {
        self.downloads.keys().copied()
    }

    pub fn handle_input(&mut self, now: Time, input: OrdbInput) -> Result<(), OrdbError> {
        match input {
            OrdbInput::Relay(RelayInput::Store(c)) | OrdbInput::Store(c) => self.on_store(now, c),
            OrdbInput::Relay(RelayInput::Timeout) | OrdbInput::Timeout => {
                self.relay.handle_input(now, RelayInput::Timeout);
                for d in self.downloads.values_mut() {
                    d.handle_input(now, DownloadInput::Timeout)?;
                }
            }
            OrdbInput::Relay(input) => self.relay.handle_input(now, input),
            OrdbInput::Download { hash_name, input } => {
                // A download that is gone (finished, cancelled) ignores late messages.
                if let Some(d) = self.downloads.get_mut(&hash_name) {
                    d.handle_input(now, input)?;
                }
            }
        }
        self.pump(now);
        Ok(())
    }

    /// The next action.
    pub fn poll_output(&mut self) -> Option<OrdbOutput> {
        self.out.pop_front()
    }

    /// When to feed [`OrdbInput::Timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.downloads
            .values()
            .filter_map(Download::poll_timeout)
            .chain(self.relay.poll_timeout())
            .min()
    }

    fn alloc_op(&mut self) -> StoreOpId {
        self.next_op += 1;
        // Below the relay's bit, so completions route by id.
        StoreOpId(self.next_op & !RELAY_STORE_OP_BIT)
    }

    fn store(&mut self, op: Op, request: StoreRequest) {
        let id = self.alloc_op();
        if !matches!(op, Op::List) {
            self.pending_writes += 1;
        }
        self.ops.insert(id, op);
        self.out.push_back(OrdbOutput::Store { id, request });
    }

    /// Store `d` (with the download's `source` hint, kept for resuming) and serve it.
    fn hold_descriptor(&mut self, now: Time, d: Descriptor, source: Option<DbSource>) {
        let hash_name = d.hash_name();
        self.store(
            Op::PutDescriptor(hash_name),
            StoreRequest::PutDescriptor {
                hash_name,
                kind: d.kind(),
                descriptor: d.encoded().to_vec(),
                source,
            },
        );
        // Held (and served) from now on; pieces count as they are stored.
        self.relay.handle_input(
            now,
            RelayInput::Hold {
                descriptor: Box::new(d),
                pieces: Vec::new(),
            },
        );
        self.pump(now);
    }

    /// Move every part's pending outputs to the driver's queue, in a fixed order.
    fn pump(&mut self, now: Time) {
        while let Some(o) = self.relay.poll_output() {
            self.out.push_back(match o {
                RelayOutput::Store { id, request } => OrdbOutput::Store { id, request },
                RelayOutput::Event(e) => OrdbOutput::Event(OrdbEvent::Relay(e)),
                other => OrdbOutput::Relay(other),
            });
        }
        let names: Vec<HashName> = self.downloads.keys().copied().collect();
        for hash_name in names {
            while let Some(ev) = self
                .downloads
                .get_mut(&hash_name)
                .and_then(Download::poll_event)
            {
                match ev {
                    DownloadEvent::Send { source, msg } => {
                        self.out.push_back(OrdbOutput::ToSource {
                            hash_name,
                            source,
                            msg,
                        })
                    }
                    DownloadEvent::ReplaceSource { source, problem } => {
                        if matches!(problem, SourceProblem::BadPiece { .. }) {
                            self.pieces_received += 1;
                        }
                        self.out.push_back(OrdbOutput::ReplaceSource {
                            hash_name,
                            source,
                            problem,
                        })
                    }
                    DownloadEvent::Metadata(d) => {
                        self.out.push_back(OrdbOutput::Event(OrdbEvent::Metadata {
                            hash_name,
                            descriptor: Box::new(d.clone()),
                        }));
                        // A hint that does not fit the content (40 bare hex digits, taken
                        // for an infohash, that named onionmesh content) is dropped: it is
                        // neither sent again nor stored.
                        let source = match self.downloads.get_mut(&hash_name) {
                            Some(dl)
                                if dl.source().is_some_and(|src| !source_fits(d.kind(), src)) =>
                            {
                                dl.set_source(None);
                                None
                            }
                            Some(dl) => dl.source().cloned(),
                            None => None,
                        };
                        self.hold_descriptor(now, d, source);
                    }
                    DownloadEvent::Piece { index, record } => {
                        self.pieces_received += 1;
                        self.store(
                            Op::PutPiece(hash_name, index),
                            StoreRequest::PutPiece {
                                hash_name,
                                index,
                                record,
                            },
                        )
                    }
                    // Complete is announced once the last piece is stored (see on_store),
                    // or here for a content with no piece at all.
                    DownloadEvent::Complete => {
                        self.complete_selection(hash_name);
                        if self.relay.held_count(&hash_name) == Some((0, 0)) {
                            self.download_completed(hash_name);
                            self.out
                                .push_back(OrdbOutput::Event(OrdbEvent::Complete(hash_name)));
                        }
                    }
                }
            }
        }
        // hold_descriptor may have produced relay outputs (adverts) after the first drain.
        while let Some(o) = self.relay.poll_output() {
            self.out.push_back(match o {
                RelayOutput::Store { id, request } => OrdbOutput::Store { id, request },
                RelayOutput::Event(e) => OrdbOutput::Event(OrdbEvent::Relay(e)),
                other => OrdbOutput::Relay(other),
            });
        }
    }

    fn on_store(&mut self, now: Time, c: StoreCompletion) {
        if c.id.0 & RELAY_STORE_OP_BIT != 0 {
            self.relay.handle_input(now, RelayInput::Store(c));
            return;
        }
        let Some(op) = self.ops.remove(&c.id) else {
            return;
        };
        if !matches!(op, Op::List) {
            self.pending_writes = self.pending_writes.saturating_sub(1);
        }
        match (op, c.result) {
            (Op::List, Ok(StoreReply::List(contents))) => {
                for s in contents {
                    match Descriptor::verify(s.kind, &s.descriptor, s.hash_name) {
                        Ok(d) => {
                            let (have, all) = (s.pieces.len() as u32, d.piece_count());
                            self.relay.handle_input(
                                now,
                                RelayInput::Hold {
                                    descriptor: Box::new(d),
                                    pieces: s.pieces,
                                },
                            );
                            if have < all {
                                self.out.push_back(OrdbOutput::Event(OrdbEvent::Resumable {
                                    hash_name: s.hash_name,
                                    pieces_have: have,
                                    pieces: all,
                                    source: s.source.filter(|src| src.hash_name == s.hash_name),
                                }));
                            }
                        }
                        Err(_) => self
                            .out
                            .push_back(OrdbOutput::Event(OrdbEvent::BadStoredContent(s.hash_name))),
                    }
                }
            }
            (Op::PutPiece(hash_name, index), Ok(_)) => {
                self.relay
                    .handle_input(now, RelayInput::PieceStored { hash_name, index });
                if let Some((have, all)) = self.relay.held_count(&hash_name) {
                    self.out.push_back(OrdbOutput::Event(OrdbEvent::Stored {
                        hash_name,
                        index,
                        pieces_have: have,
                        pieces: all,
                    }));
                    if have == all {
                        self.download_completed(hash_name);
                        self.out
                            .push_back(OrdbOutput::Event(OrdbEvent::Complete(hash_name)));
                    } else {
                        self.complete_selection(hash_name);
                    }
                }
            }
            (Op::PutDescriptor(_), Ok(_)) | (Op::List, Ok(_)) => {}
            (Op::PutPiece(hash_name, _) | Op::PutDescriptor(hash_name), Err(error)) => {
                // Stop the download; keep what is stored. Reported once per failure.
                self.downloads.remove(&hash_name);
                self.out
                    .push_back(OrdbOutput::Event(OrdbEvent::StoreFailed {
                        hash_name: Some(hash_name),
                        error,
                    }));
            }
            (Op::List, Err(error)) => {
                self.out
                    .push_back(OrdbOutput::Event(OrdbEvent::StoreFailed {
                        hash_name: None,
                        error,
                    }))
            }
        }
        self.pump(now);
    }
}

/// Whether a source hint can lead to a content of `kind`: a magnet link to a torrent, a URL to
/// a web file. Onionmesh content has no source outside the mesh.
fn source_fits(kind: DescriptorKind, source: &DbSource) -> bool {
    matches!(
        (kind, source.kind),
        (DescriptorKind::BITTORRENT_V1_INFO, SourceKind::MAGNET)
            | (DescriptorKind::WEB_V1, SourceKind::WEB)
    )
}

#[cfg(test)]
#[path = "ordb_tests.rs"]
mod tests;

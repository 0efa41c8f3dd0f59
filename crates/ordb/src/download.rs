//! The download scheduler: one content fetched from up to five sources at once (sans-IO).
//!
//! A *source* is whatever the caller uses to reach an ORDB, normally one stream on a circuit
//! whose last hop is that ORDB; the scheduler only sees an opaque [`SourceId`]. It follows the
//! spec's "Requests" section, with self-certifying pieces:
//!
//! - First the descriptor (`DB_QUERY` with `count = 0`), checked against the hash_name.
//! - Then pieces, in order from the play/seek position ([`DownloadInput::Seek`]), wrapping
//!   around to the pieces before it. The pieces in flight over all sources form the window
//!   (about [`DownloadConfig::window_bytes`] = 500 kB, the spec's W1..W5); each source gets a
//!   share of it in proportion to its measured rate (a source not yet measured gets one piece).
//! - Each source's round trip (query to first byte) and rate (bytes per second while busy) are
//!   measured. A source is sent its next query before its current one drains, when what it still
//!   owes would arrive within one round trip (the spec's "send a new GET after the C-c block").
//! - A source far slower than the best ([`DownloadConfig::slow_factor`]) or silent for
//!   [`DownloadConfig::request_timeout`] is dropped and reported as
//!   [`DownloadEvent::ReplaceSource`], so the caller can build another circuit.
//! - Bytes already received of a piece are kept when its source goes away; the piece is asked
//!   again from another source from the first missing byte (`DB_QUERY.offset`).
//! - Every piece is verified against the Merkle root before it is handed out as
//!   [`DownloadEvent::Piece`]. A bad piece is dropped, its source dropped (reported with
//!   [`SourceProblem::BadPiece`]), and the piece fetched again from another source.
//! - Unverified bytes held (partial pieces) are bounded by [`DownloadConfig::max_unverified_bytes`].
//!
//! Calling rules: after every [`Download::handle_input`], drain [`Download::poll_event`] until
//! `None` and carry out each event; arm a timer for [`Download::poll_timeout`] and feed
//! [`DownloadInput::Timeout`] when it fires.
//!
//! The first query's loop counter is drawn at random in `0..=2` (the spec's "random < 5"), so
//! the first ORDB cannot tell a requester from another ORDB relaying for one.
//!
//! Issue 10 adds two things:
//! - a **source hint** ([`Download::set_source`], a `DB_SOURCE`: magnet link or web URL) sent
//!   first on every source, before its first query, so an ORDB that finds no holder in the
//!   mesh can hand the request to a facilitator; while a download has one, a source is given
//!   [`DownloadConfig::facilitated_timeout`] (a facilitator may have to find BitTorrent peers
//!   first) instead of [`DownloadConfig::request_timeout`];
//! - a **selection** ([`Download::select_file`], [`Download::select_pieces`]): only the pieces
//!   in it are asked for, [`DownloadEvent::Complete`] means the selection is held, and
//!   [`Progress`] reports the selection. A multi-file torrent fetches no piece until a
//!   selection is made (the user picks a file; the others are never fetched):
//!   `select_pieces(now, None)` takes them all.
//!
//! Pieces larger than the window (a torrent's up to 4 MiB) are fetched one at a time: when no
//! piece is in flight one is always asked for, whatever its size.

use onionmesh_bounded::{FlatMap, FlatSet};
use std::collections::VecDeque;
use std::time::Duration;

use onionmesh_wire::db::{
    DbEndReason, DbMsg, DbQuery, DbSource, DescriptorKind, DescriptorSlice, HashName, InfoFlags,
    MAX_CONTENT_META, MAX_DESCRIPTOR_LEN, MAX_MIME, MAX_SOURCE_URI,
};
use onionmesh_wire::Time;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::content::{Descriptor, MetaError, PieceError, PieceRecord};
use crate::merkle::Hash;

/// The caller's handle for one source (one stream to an ORDB). Opaque to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u64);

/// Limits and tuning of one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadConfig {
    /// Sources at once (the spec's 5 circuits).
    pub max_sources: usize,
    /// Bytes in flight over all sources (the spec's ~500 kB window, W1..W5).
    pub window_bytes: u64,
    /// Queries outstanding per source (the current one and one pipelined).
    pub max_requests_per_source: usize,
    /// Pieces in one query.
    pub max_pieces_per_request: u16,
    /// A source silent this long on its current query is dropped.
    pub request_timeout: Duration,
    /// A source whose rate is below the best one's divided by this is dropped...
    pub slow_factor: u64,
    /// ...once at least this many sources have a measured rate.
    pub min_measured_for_slow: usize,
    /// Most bytes of not-yet-verified pieces held (one piece in flight is always allowed,
    /// whatever its size).
    pub max_unverified_bytes: u64,
    /// The silence allowed instead of `request_timeout` while the download has a source hint
    /// (a facilitator may first have to find the torrent's peers or fetch the web file).
    pub facilitated_timeout: Duration,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            max_sources: 5,
            window_bytes: 500_000,
            max_requests_per_source: 2,
            max_pieces_per_request: 4,
            request_timeout: Duration::from_secs(10),
            slow_factor: 4,
            min_measured_for_slow: 3,
            max_unverified_bytes: 2 * 1024 * 1024,
            facilitated_timeout: Duration::from_secs(60),
        }
    }
}

/// What the caller tells a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadInput {
    /// A new source is ready (a stream to an ORDB is open).
    AddSource(SourceId),
    /// A source is gone (its circuit or stream closed). Its partial pieces are kept.
    RemoveSource(SourceId),
    /// A `DB_*` message arrived from a source.
    Message { source: SourceId, msg: DbMsg },
    /// Play or seek position, in bytes: pieces from there on come first.
    Seek { byte: u64 },
    /// The timer armed for [`Download::poll_timeout`] fired.
    Timeout,
}

/// Why a source was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceProblem {
    /// Far slower than the best source.
    TooSlow { rate_bps: u64, best_bps: u64 },
    /// No answer to its current query within the timeout.
    Stalled,
    /// It sent a piece that fails verification: it lied, or relays for someone who does.
    BadPiece { index: u32, error: PieceError },
    /// It sent a descriptor that does not match the hash_name, or is invalid.
    BadMetadata(MetaError),
    /// It ended the stream (`DB_END`).
    Ended {
        reason: DbEndReason,
        sentence: String,
    },
    /// It broke the message order (data before its query, a gap in a piece, a descriptor slice
    /// out of place).
    Protocol(&'static str),
}

/// What a download asks the caller to do, or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// Send this message to this source.
    Send { source: SourceId, msg: DbMsg },
    /// The descriptor arrived and verified: store it (`StoreRequest::PutDescriptor`), show it.
    Metadata(Descriptor),
    /// A piece arrived and verified: store it, serve it, play it.
    Piece { index: u32, record: PieceRecord },
    /// This source was dropped; close its stream and, if possible, add another source.
    ReplaceSource {
        source: SourceId,
        problem: SourceProblem,
    },
    /// Every piece is held.
    Complete,
}

/// The caller misused the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("a download uses at most {max} sources")]
    TooManySources { max: usize },
    #[error("source {0:?} is already part of this download")]
    DuplicateSource(SourceId),
    #[error("the content's description is not known yet; choose a file once it is")]
    NoDescriptor,
    #[error("this content has no file {0}")]
    NoSuchFile(usize),
    #[error("pieces {first}..{end} are not pieces of this content")]
    BadSelection { first: u32, end: u32 },
}

/// A snapshot for the page: `{ bytes, size, pieces, piecesHave, rateBps, circuits, etaS }`.
/// With a selection ([`Download::select_pieces`]) the byte and piece counts are the
/// selection's (its pieces whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Verified bytes held.
    pub bytes_have: u64,
    /// Content size (or the selection's), once the descriptor is known.
    pub size: Option<u64>,
    pub pieces: u32,
    /// Verified pieces held (the store may not have written the last few yet).
    pub pieces_have: u32,
    /// Sum of the sources' measured rates, bytes per second.
    pub rate_bps: u64,
    pub sources: usize,
    /// Seconds left at the current rate, when there is a rate.
    pub eta_s: Option<u64>,
    /// Bytes of pieces received but not yet verified.
    pub unverified_bytes: u64,
    pub complete: bool,
    /// True once the descriptor or a verified piece came from a source that said, with a
    /// `DB_INFO` carrying the F flag on its stream, that its answers come from a facilitator
    /// (issue 10: a torrent or web file fetched from outside the mesh); false while every byte
    /// came from ORDBs that hold the content.
    pub facilitated: bool,
}

#[derive(Debug)]
struct Request {
    /// Pieces this query still owes, in order.
    pieces: VecDeque<u32>,
    sent_at: Time,
    answered: bool,
    /// Last time this query made progress (or became the source's current one).
    last_activity: Time,
}

#[derive(Debug, Default)]
struct Source {
    requests: VecDeque<Request>,
    rate_bps: Option<u64>,
    /// Rate samples taken so far: a source is judged too slow only after two.
    samples: u32,
    rtt_ms: Option<u64>,
    /// What the next rate sample is made of.
    meter: Meter,
    /// The source said its answers come from a facilitator (a `DB_INFO` with F on its stream).
    facilitated: bool,
}

/// Bytes a source delivered over the time it was busy. Busy time starts when a query goes to
/// an idle source, not at its first byte, so a burst of bytes held up on the way (a stream
/// read late) does not look like a fast link; idle time between queries does not count.
#[derive(Debug, Default)]
struct Meter {
    bytes: u64,
    /// Busy milliseconds before the current busy period.
    busy_ms: u64,
    /// Start of the current busy period, while the source owes a query.
    busy_since: Option<Time>,
}

impl Meter {
    fn busy_ms(&self, now: Time) -> u64 {
        self.busy_ms + self.busy_since.map_or(0, |t| now.since(t))
    }
}

/// A rate sample covers at least this long (ms), so one burst of cells is not a rate.
const MIN_RATE_SAMPLE_MS: u64 = 250;
/// Sources a seek's first pieces are asked of at once, one run each ([`Download::ask_urgent`]).
const URGENT_SOURCES: usize = 2;
/// Rate samples a source needs before it can be dropped as too slow.
const MIN_SAMPLES_FOR_SLOW: u32 = 1;

#[derive(Debug, Default)]
struct Partial {
    owner: Option<SourceId>,
    buf: Vec<u8>,
    proof: Vec<Hash>,
    /// Sources that sent a bad copy of this piece: not asked for it again.
    bad: Vec<SourceId>,
}

/// Longest encoded web descriptor: `[version][size u64][mime str16][url str16]`.
const MAX_WEB_META: usize = 1 + 8 + 2 + MAX_MIME + 2 + MAX_SOURCE_URI;

/// Most sources remembered as bad for one piece.
const MAX_BAD_PER_PIECE: usize = 8;

struct MetaFetch {
    source: SourceId,
    sent_at: Time,
    last_activity: Time,
    kind: Option<DescriptorKind>,
    total: u32,
    bytes: Vec<u8>,
}

/// One content being downloaded.
pub struct Download {
    hash_name: HashName,
    config: DownloadConfig,
    rng: ChaCha8Rng,
    descriptor: Option<Descriptor>,
    meta: Option<MetaFetch>,
    have: Vec<bool>,
    pieces_have: u32,
    bytes_have: u64,
    sources: FlatMap<SourceId, Source>,
    partials: FlatMap<u32, Partial>,
    cursor: u32,
    seek_byte: Option<u64>,
    /// The first missing piece at a seek position, to ask for at once (ahead of the window).
    urgent: Option<u32>,
    events: VecDeque<DownloadEvent>,
    complete: bool,
    /// Sent first on every source (issue 10).
    source_hint: Option<DbSource>,
    /// Only these pieces (first, end exclusive) are fetched; `None`: all.
    selection: Option<(u32, u32)>,
    /// Pieces and bytes held inside the selection (equal to the totals without one).
    sel_have: u32,
    sel_bytes_have: u64,
    /// A multi-file torrent with no selection yet: no piece is asked for.
    awaiting_selection: bool,
    /// The descriptor or a verified piece came through a facilitator ([`Progress::facilitated`]).
    facilitated: bool,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("hash_name", &self.hash_name)
            .field("pieces_have", &self.pieces_have)
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Start a download of `hash_name` (nothing known yet). `seed` seeds the loop-counter draw.
    pub fn new(hash_name: HashName, config: DownloadConfig, seed: [u8; 32]) -> Download {
        Download {
            hash_name,
            config,
            rng: ChaCha8Rng::from_seed(seed),
            descriptor: None,
            meta: None,
            have: Vec::new(),
            pieces_have: 0,
            bytes_have: 0,
            sources: FlatMap::new(),
            partials: FlatMap::new(),
            cursor: 0,
            seek_byte: None,
            urgent: None,
            events: VecDeque::new(),
            complete: false,
            source_hint: None,
            selection: None,
            sel_have: 0,
            sel_bytes_have: 0,
            awaiting_selection: false,
            facilitated: false,
        }
    }

    /// Where the content can be fetched from outside the mesh: sent as `DB_SOURCE` first on
    /// every source added from now on.
    pub fn set_source(&mut self, source: Option<DbSource>) {
        self.source_hint = source;
    }

    /// The source hint, if any.
    pub fn source(&self) -> Option<&DbSource> {
        self.source_hint.as_ref()
    }

    /// The selection (first piece, end exclusive), if the download is restricted to one.
    pub fn selection(&self) -> Option<(u32, u32)> {
        self.selection
    }

    /// Fetch only pieces `first..end` (`None`: all of them again). Pieces in flight outside it
    /// are still received. Errors: no descriptor yet, or a range outside the content.
    pub fn select_pieces(
        &mut self,
        now: Time,
        range: Option<(u32, u32)>,
    ) -> Result<(), DownloadError> {
        let Some(d) = &self.descriptor else {
            return Err(DownloadError::NoDescriptor);
        };
        if let Some((first, end)) = range {
            if first > end || end > d.piece_count() {
                return Err(DownloadError::BadSelection { first, end });
            }
        }
        self.selection = range;
        self.awaiting_selection = false;
        self.recount_selection();
        if let Some((first, end)) = range {
            if !(first..end).contains(&self.cursor) {
                self.cursor = first;
            }
        }
        self.complete = false;
        self.check_complete();
        self.schedule(now);
        Ok(())
    }

    /// Fetch only the pieces of file `index` of a torrent (its boundary pieces whole). A
    /// single-file content's file 0 is all of it.
    pub fn select_file(&mut self, now: Time, index: usize) -> Result<(), DownloadError> {
        let d = self
            .descriptor
            .as_ref()
            .ok_or(DownloadError::NoDescriptor)?;
        let range = match d.torrent() {
            Some(t) => t
                .file_pieces(index)
                .ok_or(DownloadError::NoSuchFile(index))?,
            None if index == 0 => (0, d.piece_count()),
            None => return Err(DownloadError::NoSuchFile(index)),
        };
        self.select_pieces(now, Some(range))
    }

    fn in_selection(&self, i: u32) -> bool {
        self.selection.is_none_or(|(a, b)| (a..b).contains(&i))
    }

    fn recount_selection(&mut self) {
        let (first, end) = self.selection.unwrap_or((0, self.have.len() as u32));
        let mut n = 0;
        let mut bytes = 0;
        if let Some(d) = &self.descriptor {
            for i in first..end {
                if self.have[i as usize] {
                    n += 1;
                    bytes += u64::from(d.piece_len(i).unwrap_or(0));
                }
            }
        }
        self.sel_have = n;
        self.sel_bytes_have = bytes;
    }

    /// The silence allowed on a query.
    fn timeout(&self) -> Duration {
        if self.source_hint.is_some() {
            self.config
                .request_timeout
                .max(self.config.facilitated_timeout)
        } else {
            self.config.request_timeout
        }
    }

    /// Resume a download whose descriptor and some pieces are already stored (after a reload):
    /// only the missing pieces are fetched.
    pub fn resume(
        descriptor: Descriptor,
        have: impl IntoIterator<Item = u32>,
        config: DownloadConfig,
        seed: [u8; 32],
    ) -> Download {
        let mut d = Download::new(descriptor.hash_name(), config, seed);
        d.set_descriptor(descriptor);
        for i in have {
            if let Some(len) = d.descriptor.as_ref().and_then(|x| x.piece_len(i)) {
                if !d.have[i as usize] {
                    d.have[i as usize] = true;
                    d.pieces_have += 1;
                    d.bytes_have += u64::from(len);
                }
            }
        }
        d.recount_selection();
        d.check_complete();
        d
    }

    pub fn hash_name(&self) -> HashName {
        self.hash_name
    }
    /// The verified descriptor, once known.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.as_ref()
    }
    pub fn is_complete(&self) -> bool {
        self.complete
    }
    /// True when piece `index` is held (verified).
    pub fn has_piece(&self, index: u32) -> bool {
        self.have.get(index as usize).copied().unwrap_or(false)
    }
    /// The sources in use.
    pub fn sources(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.sources.keys().copied()
    }

    /// Feed one input. Errors only for API misuse (too many or duplicate sources); a source
    /// that misbehaves is reported as an event instead.
    pub fn handle_input(&mut self, now: Time, input: DownloadInput) -> Result<(), DownloadError> {
        match input {
            DownloadInput::AddSource(s) => {
                if self.sources.contains_key(&s) {
                    return Err(DownloadError::DuplicateSource(s));
                }
                if self.sources.len() >= self.config.max_sources {
                    return Err(DownloadError::TooManySources {
                        max: self.config.max_sources,
                    });
                }
                self.sources.insert(s, Source::default());
                if let Some(hint) = &self.source_hint {
                    self.events.push_back(DownloadEvent::Send {
                        source: s,
                        msg: DbMsg::Source(hint.clone()),
                    });
                }
            }
            DownloadInput::RemoveSource(s) => self.drop_source(s, None),
            DownloadInput::Message { source, msg } => self.on_message(now, source, msg),
            DownloadInput::Seek { byte } => {
                self.seek_byte = Some(byte);
                if let Some(d) = &self.descriptor {
                    self.cursor = d.piece_at(byte);
                    self.urgent = self.first_missing_from(self.cursor);
                }
            }
            DownloadInput::Timeout => self.on_timeout(now),
        }
        self.schedule(now);
        Ok(())
    }

    /// The next event to carry out.
    pub fn poll_event(&mut self) -> Option<DownloadEvent> {
        self.events.pop_front()
    }

    /// When to feed [`DownloadInput::Timeout`]: the earliest deadline of a current query.
    pub fn poll_timeout(&self) -> Option<Time> {
        let t = self.timeout();
        let meta = self.meta.as_ref().map(|m| m.last_activity + t);
        let reqs = self
            .sources
            .values()
            .filter_map(|s| s.requests.front().map(|r| r.last_activity + t));
        meta.into_iter().chain(reqs).min()
    }

    /// Where the download stands.
    pub fn progress(&self) -> Progress {
        let rate_bps: u64 = self.sources.values().filter_map(|s| s.rate_bps).sum();
        let (size, pieces) = match (&self.descriptor, self.selection) {
            (Some(d), Some((first, end))) => {
                let bytes = (first..end)
                    .map(|i| u64::from(d.piece_len(i).unwrap_or(0)))
                    .sum();
                (Some(bytes), end - first)
            }
            (Some(d), None) => (Some(d.size()), d.piece_count()),
            (None, _) => (None, 0),
        };
        let eta_s = match size {
            Some(size) if rate_bps > 0 => Some(size.saturating_sub(self.sel_bytes_have) / rate_bps),
            Some(_) if self.complete => Some(0),
            _ => None,
        };
        Progress {
            bytes_have: self.sel_bytes_have,
            size,
            pieces,
            pieces_have: self.sel_have,
            rate_bps,
            sources: self.sources.len(),
            eta_s,
            unverified_bytes: self.unverified_bytes(),
            complete: self.complete,
            facilitated: self.facilitated,
        }
    }

    fn unverified_bytes(&self) -> u64 {
        self.partials.values().map(|p| p.buf.len() as u64).sum()
    }

    /// True while a multi-file torrent waits for [`Download::select_file`] (or
    /// `select_pieces`) before fetching any piece.
    pub fn awaiting_selection(&self) -> bool {
        self.awaiting_selection
    }

    fn set_descriptor(&mut self, d: Descriptor) {
        self.have = vec![false; d.piece_count() as usize];
        self.awaiting_selection =
            self.selection.is_none() && d.torrent().is_some_and(|t| t.is_multi_file());
        if let Some(b) = self.seek_byte {
            self.cursor = d.piece_at(b);
        }
        self.descriptor = Some(d);
    }

    fn check_complete(&mut self) {
        let wanted = match self.selection {
            Some((first, end)) => end - first,
            None => self.have.len() as u32,
        };
        if !self.complete && self.descriptor.is_some() && self.sel_have == wanted {
            self.complete = true;
            self.events.push_back(DownloadEvent::Complete);
        }
    }

    fn counter(&mut self) -> u8 {
        (self.rng.next_u32() % 3) as u8
    }

    /// Remove a source: its pieces lose their owner (their bytes are kept, unless it sent a bad
    /// piece, in which case nothing it sent is trusted), and the caller is told if `problem`.
    fn drop_source(&mut self, s: SourceId, problem: Option<SourceProblem>) {
        if self.sources.remove(&s).is_none() {
            return;
        }
        let distrust = matches!(problem, Some(SourceProblem::BadPiece { .. }));
        for p in self.partials.values_mut() {
            if p.owner == Some(s) {
                p.owner = None;
                if distrust {
                    p.buf.clear();
                    p.proof.clear();
                }
            }
        }
        self.partials
            .retain(|_, p| p.owner.is_some() || !p.buf.is_empty() || !p.bad.is_empty());
        if self.meta.as_ref().is_some_and(|m| m.source == s) {
            self.meta = None;
        }
        if let Some(problem) = problem {
            self.events
                .push_back(DownloadEvent::ReplaceSource { source: s, problem });
        }
    }

    fn on_timeout(&mut self, now: Time) {
        let t = self.timeout();
        if let Some(m) = &self.meta {
            if now.elapsed_since(m.last_activity, t) {
                let s = m.source;
                self.drop_source(s, Some(SourceProblem::Stalled));
            }
        }
        let stalled: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(_, src)| {
                src.requests
                    .front()
                    .is_some_and(|r| now.elapsed_since(r.last_activity, t))
            })
            .map(|(id, _)| *id)
            .collect();
        for s in stalled {
            self.drop_source(s, Some(SourceProblem::Stalled));
        }
    }

    fn on_message(&mut self, now: Time, s: SourceId, msg: DbMsg) {
        if !self.sources.contains_key(&s) {
            // Late messages from a dropped source.
            return;
        }
        match msg {
            DbMsg::Connected(slice) => self.on_descriptor_slice(now, s, slice),
            DbMsg::Proof(part) => {
                let Some(d) = &self.descriptor else {
                    return self
                        .drop_source(s, Some(SourceProblem::Protocol("proof before descriptor")));
                };
                let index = part.piece();
                let want = d.proof_len(index);
                let Some(p) = self.partials.get_mut(&index).filter(|p| p.owner == Some(s)) else {
                    // Not asked of this source (or no longer): ignore.
                    return;
                };
                if part.first_level() == 0 {
                    p.proof.clear();
                }
                if usize::from(part.first_level()) != p.proof.len()
                    || p.proof.len() + part.hashes().len() > want
                {
                    return self.drop_source(
                        s,
                        Some(SourceProblem::Protocol("a proof out of order or too long")),
                    );
                }
                p.proof.extend_from_slice(part.hashes());
                self.touch(now, s, index);
            }
            DbMsg::Data(slice) => self.on_data(now, s, slice.piece(), slice.offset(), slice.data()),
            DbMsg::End(end) => self.drop_source(
                s,
                Some(SourceProblem::Ended {
                    reason: end.reason(),
                    sentence: end.sentence().to_owned(),
                }),
            ),
            // An ORDB that hands the query to a facilitator says so (see `Relay`'s module doc).
            DbMsg::Info(info) => {
                if info.hash_name == self.hash_name && info.flags.contains(InfoFlags::FACILITATOR) {
                    if let Some(src) = self.sources.get_mut(&s) {
                        src.facilitated = true;
                    }
                }
            }
            // Queries and unknown messages have no business on a download stream.
            DbMsg::Query(_) | DbMsg::Source(_) | DbMsg::Unrecognized { .. } => {}
        }
    }

    fn on_descriptor_slice(&mut self, now: Time, s: SourceId, slice: DescriptorSlice) {
        if self.descriptor.is_some() {
            return;
        }
        let Some(m) = self.meta.as_mut().filter(|m| m.source == s) else {
            return;
        };
        let first = m.kind.is_none();
        if first {
            let max = match slice.kind() {
                DescriptorKind::ONIONMESH_V1 => MAX_CONTENT_META,
                DescriptorKind::BITTORRENT_V1_INFO => MAX_DESCRIPTOR_LEN,
                DescriptorKind::WEB_V1 => MAX_WEB_META,
                k => {
                    return self.drop_source(
                        s,
                        Some(SourceProblem::BadMetadata(MetaError::UnsupportedKind(k.0))),
                    )
                }
            };
            if slice.total() as usize > max {
                return self.drop_source(
                    s,
                    Some(SourceProblem::BadMetadata(MetaError::Malformed(
                        onionmesh_wire::WireError::LengthTooLarge {
                            len: slice.total() as usize,
                            max,
                        },
                    ))),
                );
            }
            m.kind = Some(slice.kind());
            m.total = slice.total();
        }
        if Some(slice.kind()) != m.kind
            || slice.total() != m.total
            || slice.offset() as usize != m.bytes.len()
        {
            return self.drop_source(
                s,
                Some(SourceProblem::Protocol("a descriptor slice out of place")),
            );
        }
        m.bytes.extend_from_slice(slice.bytes());
        m.last_activity = now;
        if m.bytes.len() < m.total as usize {
            return;
        }
        let (kind, bytes, sent_at) = (slice.kind(), std::mem::take(&mut m.bytes), m.sent_at);
        self.meta = None;
        match Descriptor::verify(kind, &bytes, self.hash_name) {
            Ok(d) => {
                if let Some(src) = self.sources.get_mut(&s) {
                    src.rtt_ms = Some(now.since(sent_at));
                    self.facilitated |= src.facilitated;
                }
                self.set_descriptor(d.clone());
                self.events.push_back(DownloadEvent::Metadata(d));
                self.check_complete();
            }
            Err(e) => self.drop_source(s, Some(SourceProblem::BadMetadata(e))),
        }
    }

    /// Progress on `index` from `s`: the query that owes it is answered and active.
    fn touch(&mut self, now: Time, s: SourceId, index: u32) {
        if let Some(src) = self.sources.get_mut(&s) {
            if let Some(r) = src.requests.iter_mut().find(|r| r.pieces.contains(&index)) {
                if !r.answered {
                    r.answered = true;
                    let rtt = now.since(r.sent_at);
                    src.rtt_ms = Some(src.rtt_ms.map_or(rtt, |old| (3 * old + rtt) / 4));
                }
                r.last_activity = now;
            }
        }
    }

    fn on_data(&mut self, now: Time, s: SourceId, index: u32, offset: u32, data: &[u8]) {
        let Some(d) = &self.descriptor else {
            return self.drop_source(s, Some(SourceProblem::Protocol("data before descriptor")));
        };
        let Some(len) = d.piece_len(index) else {
            return self.drop_source(
                s,
                Some(SourceProblem::Protocol("data for a piece past the end")),
            );
        };
        let Some(p) = self.partials.get_mut(&index).filter(|p| p.owner == Some(s)) else {
            return;
        };
        let filled = p.buf.len() as u64;
        let (offset, end) = (u64::from(offset), u64::from(offset) + data.len() as u64);
        if offset > filled {
            return self.drop_source(s, Some(SourceProblem::Protocol("a gap in a piece's data")));
        }
        if end > u64::from(len) {
            return self.drop_source(
                s,
                Some(SourceProblem::Protocol("data past the end of a piece")),
            );
        }
        if end <= filled {
            return; // a repeat of bytes already held
        }
        let fresh = &data[(filled - offset) as usize..];
        p.buf.extend_from_slice(fresh);
        let done = p.buf.len() as u64 == u64::from(len);
        let fresh_len = fresh.len() as u64;
        if let Some(src) = self.sources.get_mut(&s) {
            src.meter.bytes += fresh_len;
        }
        self.touch(now, s, index);
        if done {
            self.finish_piece(now, s, index);
        }
    }

    fn finish_piece(&mut self, now: Time, s: SourceId, index: u32) {
        let Some(d) = &self.descriptor else { return };
        let Some(p) = self.partials.get_mut(&index) else {
            return;
        };
        match d.verify_piece(index, &p.buf, &p.proof) {
            Ok(()) => {
                let p = self.partials.remove(&index).expect("just looked up");
                self.have[index as usize] = true;
                self.pieces_have += 1;
                self.bytes_have += p.buf.len() as u64;
                if self.in_selection(index) {
                    self.sel_have += 1;
                    self.sel_bytes_have += p.buf.len() as u64;
                }
                self.events.push_back(DownloadEvent::Piece {
                    index,
                    record: PieceRecord {
                        bytes: p.buf,
                        proof: p.proof,
                    },
                });
                self.facilitated |= self.sources.get(&s).is_some_and(|src| src.facilitated);
                self.piece_done_by(now, s, index);
                self.check_complete();
            }
            Err(error) => {
                if p.bad.len() < MAX_BAD_PER_PIECE {
                    p.bad.push(s);
                }
                self.drop_source(s, Some(SourceProblem::BadPiece { index, error }));
            }
        }
    }

    /// Bookkeeping after `s` delivered `index`: the query shrinks, the rate is sampled, and a
    /// source far slower than the best is dropped.
    fn piece_done_by(&mut self, now: Time, s: SourceId, index: u32) {
        let Some(src) = self.sources.get_mut(&s) else {
            return;
        };
        for r in src.requests.iter_mut() {
            r.pieces.retain(|&i| i != index);
        }
        let before = src.requests.len();
        src.requests.retain(|r| !r.pieces.is_empty());
        if src.requests.len() < before {
            if let Some(next) = src.requests.front_mut() {
                // The next query only now becomes the one the source is working on.
                next.last_activity = now;
            }
        }
        let ms = src.meter.busy_ms(now);
        if ms >= MIN_RATE_SAMPLE_MS && src.meter.bytes > 0 {
            let sample = src.meter.bytes.saturating_mul(1000) / ms;
            src.rate_bps = Some(src.rate_bps.map_or(sample, |old| (3 * old + sample) / 4));
            src.samples = src.samples.saturating_add(1);
            src.meter = Meter {
                busy_since: src.meter.busy_since.map(|_| now),
                ..Meter::default()
            };
        }
        if src.requests.is_empty() {
            // Idle from now: bank the busy time so far.
            src.meter.busy_ms = src.meter.busy_ms(now);
            src.meter.busy_since = None;
        }
        if src.samples < MIN_SAMPLES_FOR_SLOW {
            return;
        }
        let Some(rate) = src.rate_bps else { return };
        let measured: Vec<u64> = self
            .sources
            .values()
            .filter(|x| x.samples >= MIN_SAMPLES_FOR_SLOW)
            .filter_map(|x| x.rate_bps)
            .collect();
        if measured.len() >= self.config.min_measured_for_slow {
            let best = measured.iter().copied().max().unwrap_or(0);
            if rate.saturating_mul(self.config.slow_factor) < best {
                self.drop_source(
                    s,
                    Some(SourceProblem::TooSlow {
                        rate_bps: rate,
                        best_bps: best,
                    }),
                );
            }
        }
    }

    /// Bytes `s` still owes on its queries.
    fn owed_bytes(&self, s: &Source) -> u64 {
        let Some(d) = &self.descriptor else { return 0 };
        s.requests
            .iter()
            .flat_map(|r| r.pieces.iter())
            .map(|&i| {
                let len = u64::from(d.piece_len(i).unwrap_or(0));
                let got = self.partials.get(&i).map_or(0, |p| p.buf.len() as u64);
                len.saturating_sub(got)
            })
            .sum()
    }

    fn wants_more(&self, s: &Source) -> bool {
        if s.requests.is_empty() {
            return true;
        }
        if s.requests.len() >= self.config.max_requests_per_source {
            return false;
        }
        match (s.rate_bps, s.rtt_ms) {
            // Pipeline: ask again when what is owed would arrive within one round trip.
            (Some(rate), Some(rtt)) => self.owed_bytes(s) <= rate.saturating_mul(rtt) / 1000,
            _ => false,
        }
    }

    fn schedule(&mut self, now: Time) {
        if self.descriptor.is_none() {
            if self.meta.is_none() {
                let best = self.best_sources().into_iter().next();
                if let Some(s) = best {
                    let counter = self.counter();
                    self.meta = Some(MetaFetch {
                        source: s,
                        sent_at: now,
                        last_activity: now,
                        kind: None,
                        total: 0,
                        bytes: Vec::new(),
                    });
                    self.send_query(s, 0, 0, 0, counter);
                }
            }
            return;
        }
        if self.complete || self.awaiting_selection {
            return;
        }
        let piece_size = u64::from(self.descriptor.as_ref().map_or(1, Descriptor::piece_size));
        let window = self.config.window_bytes.div_ceil(piece_size).max(1) as usize;
        if let Some(piece) = self.urgent.take() {
            self.ask_urgent(now, piece, window);
        }
        let mut skipped = FlatSet::new();
        loop {
            let inflight = self.partials.values().filter(|p| p.owner.is_some()).count();
            if inflight >= window {
                break;
            }
            // One piece in flight is always allowed, whatever its size (a torrent's piece may
            // be larger than the bound).
            if inflight > 0
                && self.unverified_bytes() + piece_size > self.config.max_unverified_bytes
                && !self.evict_one()
            {
                break;
            }
            let candidate = self.best_sources().into_iter().find(|id| {
                !skipped.contains(id) && self.sources.get(id).is_some_and(|s| self.wants_more(s))
            });
            let Some(s) = candidate else { break };
            let n = self.share(s, window, inflight);
            let run = self.next_run(s, n);
            if run.is_empty() {
                skipped.insert(s);
                continue;
            }
            self.push_query(now, s, &run);
        }
    }

    /// Record a query of `run` (consecutive pieces) to `s` and send it.
    fn push_query(&mut self, now: Time, s: SourceId, run: &[u32]) {
        let Some(&first) = run.first() else { return };
        let offset = self.partials.get(&first).map_or(0, |p| p.buf.len() as u32);
        for &i in run {
            self.partials.entry(i).or_default().owner = Some(s);
        }
        let counter = self.counter();
        if let Some(src) = self.sources.get_mut(&s) {
            if src.meter.busy_since.is_none() {
                src.meter.busy_since = Some(now);
            }
            src.requests.push_back(Request {
                pieces: run.iter().copied().collect(),
                sent_at: now,
                answered: false,
                last_activity: now,
            });
        }
        self.send_query(s, first, offset, run.len() as u16, counter);
    }

    /// A seek landed on `piece`, which nobody is fetching: ask for it now, ahead of the
    /// window, from the source expected to deliver it first (the least round trip plus owed
    /// bytes for its rate), and the run after it at once from the next best source
    /// ([`URGENT_SOURCES`] runs of up to [`DownloadConfig::max_pieces_per_request`] pieces on
    /// distinct sources), so the pieces a player needs after a seek arrive side by side instead
    /// of one run after the other, or trickling in later behind the window's older pieces (a
    /// player needed about six 64 KiB pieces to play again after a seek in the e2e content
    /// test, 2026-12-01). Sources answer their queries in order, so this is the best a
    /// requester can do without cancelling what is in flight (which would waste bytes already
    /// on the way). A source takes at most one query beyond
    /// [`DownloadConfig::max_requests_per_source`].
    fn ask_urgent(&mut self, now: Time, piece: u32, window: usize) {
        let limit = self.config.max_requests_per_source + 1;
        let n = usize::from(self.config.max_pieces_per_request).min(window.max(1));
        let mut next = piece;
        let mut used: Vec<SourceId> = Vec::new();
        for _ in 0..URGENT_SOURCES {
            if !self.is_free(next) {
                return;
            }
            let best = self
                .sources
                .iter()
                .filter(|(id, s)| s.requests.len() < limit && !used.contains(id))
                .filter(|(id, _)| self.partials.get(&next).is_none_or(|p| !p.bad.contains(id)))
                .min_by_key(|(id, s)| {
                    let owed = self.owed_bytes(s);
                    // Unmeasured sources count as slow: ~16 KB/s and a 1 s round trip.
                    let rate = s.rate_bps.unwrap_or(16_000).max(1);
                    let rtt = s.rtt_ms.unwrap_or(1000);
                    (rtt + owed.saturating_mul(1000) / rate, **id)
                })
                .map(|(id, _)| *id);
            let Some(s) = best else { return };
            let saved = self.cursor;
            self.cursor = next;
            let run = self.next_run(s, n);
            self.cursor = saved;
            let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
                return;
            };
            if first != next {
                return;
            }
            self.push_query(now, s, &run);
            used.push(s);
            next = last + 1;
        }
    }

    /// Not held, not being fetched, selected.
    fn is_free(&self, i: u32) -> bool {
        self.have.get(i as usize).is_some_and(|h| !h)
            && self.in_selection(i)
            && self.partials.get(&i).is_none_or(|p| p.owner.is_none())
    }

    /// The first piece not held at or after `from` (wrapping around), if any.
    fn first_missing_from(&self, from: u32) -> Option<u32> {
        let count = self.have.len() as u32;
        (from..count)
            .chain(0..from.min(count))
            .find(|&i| !self.have[i as usize] && self.in_selection(i))
    }

    fn send_query(&mut self, s: SourceId, piece: u32, offset: u32, count: u16, counter: u8) {
        self.events.push_back(DownloadEvent::Send {
            source: s,
            msg: DbMsg::Query(DbQuery {
                hash_name: self.hash_name,
                piece,
                offset,
                count,
                counter,
            }),
        });
    }

    /// Sources by preference: unmeasured ones first (so they get measured), then by rate.
    fn best_sources(&self) -> Vec<SourceId> {
        let mut v: Vec<(Option<u64>, SourceId)> = self
            .sources
            .iter()
            .map(|(id, s)| (s.rate_bps, *id))
            .collect();
        v.sort_by(|a, b| match (a.0, b.0) {
            (None, None) => a.1.cmp(&b.1),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x).then(a.1.cmp(&b.1)),
        });
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Pieces for `s`'s next query: its share of the window by rate.
    fn share(&self, s: SourceId, window: usize, inflight: usize) -> usize {
        let room = window.saturating_sub(inflight).max(1);
        let cap = usize::from(self.config.max_pieces_per_request)
            .min(room)
            .max(1);
        let Some(rate) = self.sources.get(&s).and_then(|x| x.rate_bps) else {
            return 1;
        };
        let total: u64 = self.sources.values().filter_map(|x| x.rate_bps).sum();
        let n = (window as u64 * rate).div_ceil(total.max(1)) as usize;
        n.clamp(1, cap)
    }

    /// Up to `n` consecutive wanted pieces for `s`, from the cursor on, wrapping around.
    fn next_run(&self, s: SourceId, n: usize) -> Vec<u32> {
        let count = self.have.len() as u32;
        let free = |i: u32| {
            !self.have[i as usize]
                && self.in_selection(i)
                && self
                    .partials
                    .get(&i)
                    .is_none_or(|p| p.owner.is_none() && !p.bad.contains(&s))
        };
        let order = (self.cursor..count).chain(0..self.cursor.min(count));
        let mut run = Vec::new();
        for i in order {
            if run.is_empty() {
                if free(i) {
                    run.push(i);
                }
            } else if run.len() < n
                && i == run[run.len() - 1] + 1
                && free(i)
                // A later piece must start from its beginning: the query has one offset.
                && self.partials.get(&i).is_none_or(|p| p.buf.is_empty())
            {
                run.push(i);
            } else {
                break;
            }
        }
        run
    }

    /// Free room for unverified bytes: forget the ownerless partial piece farthest from the
    /// cursor. False when there is none.
    fn evict_one(&mut self) -> bool {
        let count = self.have.len() as u32;
        let cursor = self.cursor;
        let dist = |i: u32| (i + count - cursor) % count.max(1);
        let victim = self
            .partials
            .iter()
            .filter(|(_, p)| p.owner.is_none() && !p.buf.is_empty())
            .max_by_key(|(i, _)| dist(**i))
            .map(|(i, _)| *i);
        match victim {
            Some(i) => {
                if let Some(p) = self.partials.get_mut(&i) {
                    p.buf.clear();
                    p.proof.clear();
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;

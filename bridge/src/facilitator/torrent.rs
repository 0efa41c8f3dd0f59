//! BitTorrent through librqbit: one session for the bridge, one torrent per infohash however
//! many requests share it, deleted with its files when the last of them ends (unless
//! `--keep`).
//!
//! A torrent is added with no file selected, so nothing is fetched until a query asks for
//! pieces; then the file that alone holds a queried piece is selected (librqbit's
//! `only_files`), and the pieces are read in order through librqbit's file streams, which wait
//! for verified pieces and move the download to the read position. A boundary piece (shared by
//! two files) selects neither: a query for it alone does not say which file the requester is
//! after, and librqbit fetches every piece of a selected file. It is fetched alone, through the
//! stream of the first file in it, which ends inside it (see [`ServedTorrent::shared_piece_bytes`]).
//! librqbit waits for a magnet link's metadata without limit, so adding is bounded by
//! `--metadata-timeout`.

use super::answer::Stop;
use super::cache::{CacheBudget, Reservation};
use librqbit::api::TorrentIdOrHash;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions, Magnet,
    ManagedTorrent, Session, SessionOptions, TorrentMetadata,
};
use onionmesh_wire::db::{DbEndReason, DbSource};
use sha1::{Digest, Sha1};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::OnceCell;
use tokio::time::timeout;
use tracing::{debug, info, warn};

/// A read that gets no byte from the swarm for this long ends the request UNAVAILABLE.
pub const PIECE_TIMEOUT: Duration = Duration::from_secs(60);

/// The facilitator's BitTorrent settings (from the command line).
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// Where librqbit writes pieces: one sub-directory per infohash.
    pub cache_dir: PathBuf,
    pub max_torrents: usize,
    pub metadata_timeout: Duration,
    /// Trackers tried for every torrent besides the magnet link's.
    pub trackers: Vec<reqwest::Url>,
    pub dht: bool,
    pub listen_port: Option<u16>,
    /// Keep torrents and their files after the last request.
    pub keep: bool,
    /// `--test-corrupt-piece`.
    pub corrupt_piece: Option<u32>,
}

/// Why the session could not start.
#[derive(Debug, thiserror::Error)]
#[error("the BitTorrent session could not start: {0:#}")]
pub struct SessionError(anyhow::Error);

/// A torrent the session holds: its metadata once resolved.
struct Loaded {
    handle: Arc<ManagedTorrent>,
    metadata: Arc<TorrentMetadata>,
}

type Opening = Arc<OnceCell<Result<Arc<Loaded>, Stop>>>;

/// One infohash's place in the table.
struct Entry {
    /// Requests holding it (leases).
    refs: usize,
    opening: Opening,
    /// Files selected so far (only grows while the torrent lives).
    selected: BTreeSet<usize>,
    /// Boundary pieces asked for while no selected file held them, each fetched alone.
    loose: BTreeSet<u32>,
    /// Cache bytes of the selected files and of the loose pieces (one piece each).
    reserved: Option<Reservation>,
}

/// The bridge's BitTorrent side.
pub struct Torrents {
    session: Arc<Session>,
    cfg: TorrentConfig,
    cache: Arc<CacheBudget>,
    // At most --max-torrents entries.
    entries: Mutex<HashMap<[u8; 20], Entry>>,
}

impl Torrents {
    /// Start the session (no persistence, no local peer discovery, never uploading).
    pub async fn start(
        cfg: TorrentConfig,
        cache: Arc<CacheBudget>,
    ) -> Result<Arc<Self>, SessionError> {
        let opts = SessionOptions {
            dht: if cfg.dht {
                Some(librqbit::DhtSessionConfig {
                    persistence: None,
                    ..Default::default()
                })
            } else {
                None
            },
            persistence: None,
            fastresume: false,
            listen: cfg.listen_port.map(|port| ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                enable_upnp_port_forwarding: false,
                ..Default::default()
            }),
            trackers: cfg.trackers.iter().cloned().collect(),
            disable_upload: true,
            disable_local_service_discovery: true,
            // Streams hold one of these each while reading (the bridge's runtime has one
            // thread, so it is only a count here).
            runtime_worker_threads: Some(64),
            ..Default::default()
        };
        let session = Session::new_with_opts(cfg.cache_dir.clone(), opts)
            .await
            .map_err(SessionError)?;
        Ok(Arc::new(Torrents {
            session,
            cfg,
            cache,
            entries: Mutex::new(HashMap::new()),
        }))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 20], Entry>> {
        // Nothing panics while holding the lock; if something did, the table is still whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The torrent a `DB_SOURCE` names, its metadata resolved, for one request.
    pub async fn open(self: &Arc<Self>, source: &DbSource) -> Result<ServedTorrent, Stop> {
        let magnet = Magnet::parse(&source.uri)
            .map_err(|e| Stop::bad_request(format!("the magnet link cannot be read: {e}")))?;
        let Some(infohash) = magnet.as_id20() else {
            return Err(Stop::bad_request(
                "the magnet link has no BitTorrent v1 infohash (xt=urn:btih:...)",
            ));
        };
        if infohash.0 != source.hash_name.0 {
            return Err(Stop::bad_request(format!(
                "the magnet link's infohash {} is not the hash_name {} asked for",
                hex::encode(infohash.0),
                source.hash_name.to_hex()
            )));
        }
        let lease = self.lease(infohash.0)?;
        let this = self.clone();
        let uri = source.uri.to_string();
        let loaded = lease
            .opening
            .get_or_init(|| async move { this.add(&uri, infohash.0).await.map(Arc::new) })
            .await
            .clone()?;
        Ok(ServedTorrent {
            lease,
            loaded,
            reader: None,
        })
    }

    /// Take a reference on `infohash`'s entry, making it if there is room.
    fn lease(self: &Arc<Self>, infohash: [u8; 20]) -> Result<Lease, Stop> {
        let mut entries = self.entries();
        let len = entries.len();
        if !entries.contains_key(&infohash) && len >= self.cfg.max_torrents {
            return Err(Stop::busy(format!(
                "this facilitator is already fetching {len} torrents, its most \
                 (--max-torrents); try another or later"
            )));
        }
        let entry = entries.entry(infohash).or_insert_with(|| Entry {
            refs: 0,
            opening: Arc::new(OnceCell::new()),
            selected: BTreeSet::new(),
            loose: BTreeSet::new(),
            reserved: None,
        });
        entry.refs += 1;
        Ok(Lease {
            torrents: self.clone(),
            infohash,
            opening: entry.opening.clone(),
        })
    }

    /// Add the magnet link to the session and wait (bounded) for its metadata. No metadata
    /// in time is `NOT_FOUND` (a verdict on the infohash: the requester stops at once); other
    /// failures are `UNAVAILABLE` (another facilitator may do better).
    async fn add(&self, magnet: &str, infohash: [u8; 20]) -> Result<Loaded, Stop> {
        let secs = self.cfg.metadata_timeout.as_secs_f64();
        let opts = AddTorrentOptions {
            // Nothing until a query says which pieces.
            only_files: Some(Vec::new()),
            // One directory per infohash: two torrents with the same name never share files.
            sub_folder: Some(hex::encode(infohash)),
            overwrite: true,
            ..Default::default()
        };
        let added = timeout(
            self.cfg.metadata_timeout,
            self.session
                .add_torrent(AddTorrent::from_url(magnet), Some(opts)),
        )
        .await
        .map_err(|_| {
            Stop::end(
                DbEndReason::NOT_FOUND,
                format!(
                    "no BitTorrent peer sent this torrent's metadata within {secs:.0} s: unknown \
                     infohash, or nobody seeds it"
                ),
            )
        })?
        .map_err(|e| Stop::unavailable(format!("BitTorrent could not add the torrent: {e:#}")))?;
        let handle = match added {
            AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
            AddTorrentResponse::ListOnly(_) => {
                return Err(Stop::unavailable(
                    "BitTorrent listed the torrent instead of adding it",
                ))
            }
        };
        let metadata = handle.metadata.load_full().ok_or_else(|| {
            Stop::unavailable("BitTorrent added the torrent without its metadata")
        })?;
        let digest: [u8; 20] = Sha1::digest(&metadata.info_bytes).into();
        if digest != handle.info_hash().0 {
            return Err(Stop::unavailable(format!(
                "the metadata BitTorrent returned hashes to {}, not the infohash {}; refusing \
                 to serve it",
                hex::encode(digest),
                hex::encode(handle.info_hash().0)
            )));
        }
        info!(
            "torrent {} resolved: {} bytes in {} files, pieces of {} bytes",
            hex::encode(digest),
            metadata.lengths().total_length(),
            metadata.file_infos.len(),
            metadata.lengths().default_piece_length()
        );
        Ok(Loaded { handle, metadata })
    }

    /// Make sure the pieces holding bytes `from..to` of `infohash` will be fetched, reserving
    /// their cache bytes: select the files that alone hold one of them (see
    /// [`plan_selection`]); a boundary piece no selected file holds is left loose, to be fetched
    /// alone when it is read. Each call is logged (debug) with the pieces and what they added.
    async fn select(
        &self,
        infohash: [u8; 20],
        loaded: &Loaded,
        from: u64,
        to: u64,
    ) -> Result<(), Stop> {
        let files = &loaded.metadata.file_infos;
        let spans = spans(loaded);
        let piece_len = u64::from(loaded.metadata.lengths().default_piece_length());
        let pieces = (from / piece_len) as u32..to.div_ceil(piece_len) as u32;
        let selection = {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(&infohash) else {
                return Err(Stop::unavailable("the torrent was removed meanwhile"));
            };
            let plan = plan_selection(&spans, &entry.selected, pieces.clone());
            let loose: Vec<u32> = plan
                .loose
                .iter()
                .copied()
                .filter(|p| !entry.loose.contains(p))
                .collect();
            if plan.files.is_empty() && loose.is_empty() {
                return Ok(());
            }
            let bytes: u64 = plan.files.iter().map(|&i| files[i].len).sum::<u64>()
                + loose.len() as u64 * piece_len;
            let ok = match &mut entry.reserved {
                Some(r) => r.grow(bytes),
                None => match self.cache.reserve(bytes) {
                    Some(r) => {
                        entry.reserved = Some(r);
                        true
                    }
                    None => false,
                },
            };
            if !ok {
                return Err(Stop::busy(format!(
                    "this facilitator's cache is full ({} of {} bytes, --cache-max-bytes); \
                     try another or later",
                    self.cache.used(),
                    self.cache.max()
                )));
            }
            entry.selected.extend(plan.files.iter().copied());
            entry.loose.extend(loose.iter().copied());
            debug!(
                "torrent {}: pieces {pieces:?} asked for; files {:?} selected (now {:?}), \
                 boundary pieces {loose:?} left to fetch alone",
                hex::encode(infohash),
                plan.files,
                entry.selected
            );
            if plan.files.is_empty() {
                return Ok(());
            }
            entry.selected.iter().copied().collect::<HashSet<usize>>()
        };
        loaded.handle.wait_until_initialized().await.map_err(|e| {
            Stop::unavailable(format!("BitTorrent could not start the torrent: {e:#}"))
        })?;
        self.session
            .update_only_files(&loaded.handle, &selection)
            .await
            .map_err(|e| Stop::unavailable(format!("BitTorrent could not select the files: {e:#}")))
    }

    /// A lease ended.
    fn release(self: &Arc<Self>, infohash: [u8; 20]) {
        let removed = {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(&infohash) else {
                return;
            };
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs > 0 {
                return;
            }
            let failed = !matches!(entry.opening.get(), Some(Ok(_)));
            if self.cfg.keep && !failed {
                return;
            }
            entries.remove(&infohash)
        };
        let Some(entry) = removed else { return };
        let Some(Ok(loaded)) = entry.opening.get() else {
            return;
        };
        // What librqbit took from the swarm for this torrent: the pieces it checked (only the
        // selected files' pieces, if the selection held) and the bytes its peers sent (more
        // than the checked pieces when a block came twice, from two connections).
        if let Some(live) = loaded.handle.stats().live {
            let s = &live.snapshot;
            info!(
                "torrent {} released: librqbit checked {} pieces ({} bytes) and received {} bytes \
                 from peers",
                hex::encode(infohash),
                s.downloaded_and_checked_pieces,
                s.downloaded_and_checked_bytes,
                s.fetched_bytes
            );
        }
        let id = TorrentIdOrHash::Id(loaded.handle.id());
        let session = self.session.clone();
        // The cache bytes are given back once the files are gone.
        let reserved = entry.reserved;
        tokio::spawn(async move {
            if let Err(e) = session.delete(id, true).await {
                warn!("could not delete torrent {}: {e:#}", hex::encode(infohash));
            }
            drop(reserved);
        });
    }
}

/// A request's reference on a torrent entry; released when dropped (also when the request is
/// cancelled while the metadata is still coming).
struct Lease {
    torrents: Arc<Torrents>,
    infohash: [u8; 20],
    opening: Opening,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.torrents.release(self.infohash);
    }
}

/// What librqbit's file stream is to us (its type is not exported).
trait FileStream: tokio::io::AsyncRead + tokio::io::AsyncSeek + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncSeek + Unpin + Send> FileStream for T {}

/// An open file stream, the file it reads, and where it is.
struct Reader {
    file: usize,
    stream: Box<dyn FileStream>,
    position: u64,
}

/// One request's view of a torrent.
pub struct ServedTorrent {
    lease: Lease,
    loaded: Arc<Loaded>,
    reader: Option<Reader>,
}

impl ServedTorrent {
    /// The raw bencoded info dictionary (SHA-1 checked against the infohash at open).
    pub fn info_bytes(&self) -> &[u8] {
        &self.loaded.metadata.info_bytes
    }

    pub fn total_len(&self) -> u64 {
        self.loaded.metadata.lengths().total_length()
    }

    pub fn piece_len(&self) -> u64 {
        u64::from(self.loaded.metadata.lengths().default_piece_length())
    }

    pub fn corrupt_piece(&self) -> Option<u32> {
        self.lease.torrents.cfg.corrupt_piece
    }

    /// Select the files that bytes `from..to` of the torrent overlap.
    pub async fn want(&mut self, from: u64, to: u64) -> Result<(), Stop> {
        self.lease
            .torrents
            .select(self.lease.infohash, &self.loaded, from, to)
            .await
    }

    /// Drop the open stream (it holds one of the session's stream slots).
    pub fn idle(&mut self) {
        self.reader = None;
    }

    /// Fill `buf` with the torrent's bytes from `at` (files concatenated in order).
    pub async fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), Stop> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = at + done as u64;
            let Some((index, offset, len)) = self
                .loaded
                .metadata
                .file_infos
                .iter()
                .enumerate()
                .find(|(_, f)| f.offset_in_torrent <= pos && pos < f.offset_in_torrent + f.len)
                .map(|(i, f)| (i, f.offset_in_torrent, f.len))
            else {
                return Err(Stop::unavailable(format!(
                    "byte {pos} is in no file of the torrent"
                )));
            };
            let in_file = pos - offset;
            // One file's bytes in one piece at a time: a boundary piece is waited for alone.
            let piece_end = (pos / self.piece_len() + 1) * self.piece_len();
            let n = ((len - in_file).min(piece_end - pos) as usize).min(buf.len() - done);
            let span = &mut buf[done..done + n];
            if self.shared_piece_bytes(index, pos, in_file, span).await? {
                done += n;
                continue;
            }
            self.read_stream(index, in_file, span, &format!("the bytes at {pos}"))
                .await?;
            done += n;
        }
        Ok(())
    }

    /// Bytes `span` of file `index`, at `in_file`, inside one boundary piece, when `index` is
    /// not selected: read from the cache file on disk once the piece is verified, never through
    /// `index`'s stream (unless it is the piece's first file, below). A librqbit stream asks the
    /// swarm for up to 32 MiB of its file from its position on, selected or not, so reading a
    /// neighbour's bytes through its stream fetched the neighbour's next pieces too. The piece
    /// is waited for through one byte of the stream of a selected file holding it (its
    /// position then lies inside that same piece); if none does (the piece is loose: see
    /// [`Torrents::select`]), through the stream of the first file in the piece, which ends
    /// inside it, so that stream asks for this piece and nothing more. The bytes are on disk
    /// since librqbit writes every verified piece whole, into every file it overlaps. False
    /// (nothing read) when `index` is selected or is that first file: then the caller reads
    /// through `index`'s stream.
    async fn shared_piece_bytes(
        &mut self,
        index: usize,
        pos: u64,
        in_file: u64,
        span: &mut [u8],
    ) -> Result<bool, Stop> {
        let selected = {
            let entries = self.lease.torrents.entries();
            match entries.get(&self.lease.infohash) {
                Some(e) => e.selected.clone(),
                None => return Ok(false),
            }
        };
        if selected.contains(&index) {
            return Ok(false);
        }
        let loaded = self.loaded.clone();
        let files = &loaded.metadata.file_infos;
        let spans = spans(&loaded);
        let piece_len = self.piece_len();
        let piece = (pos / piece_len) as u32;
        let held_by_selected = piece_files(&spans, piece).find(|j| selected.contains(j));
        let Some(j) = held_by_selected.or_else(|| piece_files(&spans, piece).next()) else {
            return Ok(false);
        };
        if j == index {
            return Ok(false);
        }
        let start = (u64::from(piece) * piece_len).max(spans[j].offset);
        let j_in_file = start - spans[j].offset;
        // One byte of file j inside the same piece: returns once it is verified.
        let mut one = [0u8; 1];
        self.read_stream(j, j_in_file, &mut one, &format!("piece {piece}"))
            .await?;
        let info = &files[index];
        if info.attrs.padding {
            // BEP 47 padding: zeros, not on disk.
            span.fill(0);
            return Ok(true);
        }
        let path = loaded.handle.output_folder().join(&info.relative_filename);
        let read = async {
            let mut f = tokio::fs::File::open(&path).await?;
            f.seek(std::io::SeekFrom::Start(in_file)).await?;
            f.read_exact(span).await
        };
        read.await.map_err(|e| {
            Stop::unavailable(format!(
                "the cache lost piece {piece}'s bytes of file {index} ({}): {e}",
                path.display()
            ))
        })?;
        Ok(true)
    }

    /// Fill `buf` from file `index`'s stream at `in_file` (waiting, at most
    /// [`PIECE_TIMEOUT`], for librqbit to verify the pieces there). A failed or late read
    /// drops the stream and is `UNAVAILABLE`, its sentence naming `what` was being read.
    async fn read_stream(
        &mut self,
        index: usize,
        in_file: u64,
        buf: &mut [u8],
        what: &str,
    ) -> Result<(), Stop> {
        let reader = self.reader_at(index, in_file).await?;
        let stop = match timeout(PIECE_TIMEOUT, reader.stream.read_exact(buf)).await {
            Ok(Ok(_)) => {
                reader.position += buf.len() as u64;
                return Ok(());
            }
            Ok(Err(e)) => format!("BitTorrent could not read {what}: {e}"),
            Err(_) => format!(
                "no BitTorrent peer delivered {what} within {} s",
                PIECE_TIMEOUT.as_secs()
            ),
        };
        self.reader = None;
        Err(Stop::unavailable(stop))
    }

    /// The stream of file `index`, positioned at `in_file`.
    async fn reader_at(&mut self, index: usize, in_file: u64) -> Result<&mut Reader, Stop> {
        if self.reader.as_ref().is_none_or(|r| r.file != index) {
            self.reader = None;
            let stream = self
                .loaded
                .handle
                .clone()
                .stream(index)
                .await
                .map_err(|e| {
                    Stop::unavailable(format!("BitTorrent could not open file {index}: {e:#}"))
                })?;
            self.reader = Some(Reader {
                file: index,
                stream: Box::new(stream),
                position: 0,
            });
        }
        let Some(reader) = self.reader.as_mut() else {
            // Set just above.
            return Err(Stop::unavailable("no file stream"));
        };
        if reader.position != in_file {
            reader
                .stream
                .seek(std::io::SeekFrom::Start(in_file))
                .await
                .map_err(|e| Stop::unavailable(format!("BitTorrent could not seek: {e}")))?;
            reader.position = in_file;
        }
        Ok(reader)
    }
}

/// Where one file of a torrent lies: bytes `offset..offset + len` of the torrent, over
/// `pieces`. Padding files (BEP 47) are not real files: nothing is selected or streamed for
/// them.
#[derive(Debug, Clone)]
struct FileSpan {
    offset: u64,
    len: u64,
    pieces: std::ops::Range<u32>,
    padding: bool,
}

/// The torrent's files as [`FileSpan`]s, in torrent order.
fn spans(loaded: &Loaded) -> Vec<FileSpan> {
    loaded
        .metadata
        .file_infos
        .iter()
        .map(|f| FileSpan {
            offset: f.offset_in_torrent,
            len: f.len,
            pieces: f.piece_range.clone(),
            padding: f.attrs.padding,
        })
        .collect()
}

/// The real (non-empty, not padding) files holding bytes of `piece`, in torrent order. When
/// there are two or more, the first ends inside the piece.
fn piece_files(spans: &[FileSpan], piece: u32) -> impl Iterator<Item = usize> + '_ {
    spans
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.len > 0 && !s.padding && s.pieces.contains(&piece))
        .map(|(i, _)| i)
}

/// What a query for some pieces adds to a torrent's selection.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Files to select: each alone holds one of the pieces.
    files: Vec<usize>,
    /// Boundary pieces (held by two or more files) that no selected file holds: fetched alone.
    loose: Vec<u32>,
}

/// Which files to add to `selected` for `pieces`. A piece held by one file selects that file
/// (librqbit then fetches all of it, which the requester reading that file wants). A piece
/// held by two files (a boundary piece) selects neither: asked for alone it does not say which
/// file the requester reads (a page reading a file asks for its first piece, or its last when
/// the player seeks to the end), and selecting the wrong one fetches a whole file nobody asked
/// for. Such a piece is loose, unless a file selected here or before holds it.
fn plan_selection(
    spans: &[FileSpan],
    selected: &BTreeSet<usize>,
    pieces: std::ops::Range<u32>,
) -> Plan {
    let mut plan = Plan::default();
    let mut shared = Vec::new();
    for piece in pieces {
        let holders: Vec<usize> = piece_files(spans, piece).collect();
        if holders
            .iter()
            .any(|i| selected.contains(i) || plan.files.contains(i))
        {
            continue;
        }
        match holders.as_slice() {
            [] => {}
            [only] => plan.files.push(*only),
            _ => shared.push((piece, holders)),
        }
    }
    plan.loose = shared
        .into_iter()
        .filter(|(_, holders)| !holders.iter().any(|i| plan.files.contains(i)))
        .map(|(piece, _)| piece)
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: u64, len: u64, pieces: std::ops::Range<u32>) -> FileSpan {
        FileSpan {
            offset,
            len,
            pieces,
            padding: false,
        }
    }

    /// Three files over 2^18-byte pieces, as in the e2e test: a 0..700_001 (pieces 0..=2),
    /// b ..2_344_988 (2..=8), c ..8_344_991 (8..=31).
    fn spans() -> Vec<FileSpan> {
        vec![
            span(0, 700_001, 0..3),
            span(700_001, 1_644_987, 2..9),
            span(2_344_988, 6_000_003, 8..32),
        ]
    }

    fn plan(files: &[usize], loose: &[u32]) -> Plan {
        Plan {
            files: files.to_vec(),
            loose: loose.to_vec(),
        }
    }

    #[test]
    fn a_file_is_fetched_without_its_neighbours() {
        let none = BTreeSet::new();
        // The pieces of b: b alone holds 3..=7, and it holds both boundary pieces.
        assert_eq!(plan_selection(&spans(), &none, 2..9), plan(&[1], &[]));
        // A range inside a.
        assert_eq!(plan_selection(&spans(), &none, 0..2), plan(&[0], &[]));
        // Everything: all three.
        assert_eq!(
            plan_selection(&spans(), &none, 0..32),
            plan(&[0, 1, 2], &[])
        );
        // Already selected files count.
        let b = BTreeSet::from([1]);
        assert_eq!(plan_selection(&spans(), &b, 2..9), plan(&[], &[]));
        assert_eq!(plan_selection(&spans(), &b, 8..10), plan(&[2], &[]));
    }

    #[test]
    fn a_boundary_piece_alone_selects_no_file() {
        let none = BTreeSet::new();
        // b's first piece, asked for first (a source not yet measured gets one piece): a holds
        // more of it, but selecting a would fetch a's pieces 0 and 1 for nobody.
        assert_eq!(plan_selection(&spans(), &none, 2..3), plan(&[], &[2]));
        // b's last piece (a player seeking to the end): selecting c would fetch 23 pieces more.
        assert_eq!(plan_selection(&spans(), &none, 8..9), plan(&[], &[8]));
        // With one of b's own pieces, b is selected and holds the boundary piece too.
        assert_eq!(plan_selection(&spans(), &none, 2..4), plan(&[1], &[]));
        assert_eq!(plan_selection(&spans(), &none, 7..9), plan(&[1], &[]));
        // A selected neighbour holds it.
        let a = BTreeSet::from([0]);
        assert_eq!(plan_selection(&spans(), &a, 2..3), plan(&[], &[]));
    }

    #[test]
    fn empty_and_padding_files_hold_no_piece() {
        let none = BTreeSet::new();
        // x ends inside piece 0, padding fills it, y starts at piece 1, an empty file between.
        let pl = 1u64 << 18;
        let spans = vec![
            span(0, 100, 0..1),
            FileSpan {
                offset: 100,
                len: pl - 100,
                pieces: 0..1,
                padding: true,
            },
            span(pl, 0, 1..1),
            span(pl, 2 * pl, 1..3),
        ];
        assert_eq!(plan_selection(&spans, &none, 0..1), plan(&[0], &[]));
        assert_eq!(plan_selection(&spans, &none, 1..2), plan(&[3], &[]));
        assert_eq!(piece_files(&spans, 0).collect::<Vec<_>>(), [0]);
    }
}

//! BitTorrent through librqbit: one session for the bridge, one torrent per infohash however
//! many requests share it, deleted with its files when the last of them ends (unless
//! `--keep`).
//!
//! A torrent is added with no file selected, so nothing is fetched until a query asks for
//! pieces; then the files those pieces overlap are selected (librqbit's `only_files`), and the
//! pieces are read in order through librqbit's file streams, which wait for verified pieces
//! and move the download to the read position. librqbit waits for a magnet link's metadata
//! without limit, so adding is bounded by `--metadata-timeout`.

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
use tracing::{info, warn};

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
    /// Cache bytes of the selected files.
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

    /// Select files so that the pieces holding bytes `from..to` of `infohash` are fetched,
    /// reserving their cache bytes. librqbit fetches every piece of a selected file, boundary
    /// pieces included, so a neighbour file that only shares a boundary piece with the range
    /// is not selected (it would be fetched whole); see [`covering_files`].
    async fn select(
        &self,
        infohash: [u8; 20],
        loaded: &Loaded,
        from: u64,
        to: u64,
    ) -> Result<(), Stop> {
        let files = &loaded.metadata.file_infos;
        let spans: Vec<(u64, u64, std::ops::Range<u32>)> = files
            .iter()
            .map(|f| (f.offset_in_torrent, f.len, f.piece_range.clone()))
            .collect();
        let piece_len = u64::from(loaded.metadata.lengths().default_piece_length());
        let pieces = (from / piece_len) as u32..to.div_ceil(piece_len) as u32;
        let selection = {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(&infohash) else {
                return Err(Stop::unavailable("the torrent was removed meanwhile"));
            };
            let new = covering_files(&spans, &entry.selected, pieces, from, to);
            if new.is_empty() {
                return Ok(());
            }
            let bytes: u64 = new.iter().map(|&i| files[i].len).sum();
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
            entry.selected.extend(new);
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
            let n = ((len - in_file) as usize).min(buf.len() - done);
            let span = &mut buf[done..done + n];
            if self.neighbour_bytes(index, pos, in_file, span).await? {
                done += n;
                continue;
            }
            self.read_stream(index, in_file, span, &format!("the bytes at {pos}"))
                .await?;
            done += n;
        }
        Ok(())
    }

    /// Bytes of a boundary piece that belong to a neighbour file no query selected: read from
    /// the cache file on disk once the piece is verified, never through that file's stream. A
    /// librqbit stream asks the swarm for up to 32 MiB of its file from its position on,
    /// selected or not, so reading the neighbour's bytes through it fetched the neighbour's
    /// next pieces too (2 extra pieces per boundary in the e2e test). The piece is waited for
    /// through a selected file's stream (its position then lies inside that same piece); the
    /// bytes are on disk since librqbit writes every verified piece whole, into every file it
    /// overlaps. False (nothing read) when `index` is selected, or no selected file shares the
    /// piece: then the caller reads through `index`'s stream.
    async fn neighbour_bytes(
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
        let piece_len = self.piece_len();
        let piece = (pos / piece_len) as u32;
        let Some((j, j_in_file)) = selected.iter().find_map(|&j| {
            let f = files.get(j)?;
            if f.len == 0 || !f.piece_range.contains(&piece) {
                return None;
            }
            let start = (u64::from(piece) * piece_len).max(f.offset_in_torrent);
            Some((j, start - f.offset_in_torrent))
        }) else {
            return Ok(false);
        };
        // One byte of the selected file inside the same piece: returns once it is verified.
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

/// The files to add to `selected` so that every piece in `pieces` belongs to a selected file.
/// `spans` are the files' `(offset, length, piece range)` in torrent order. Greedy: the files
/// holding the most of bytes `from..to` first, each only if it covers a piece not yet covered.
fn covering_files(
    spans: &[(u64, u64, std::ops::Range<u32>)],
    selected: &BTreeSet<usize>,
    pieces: std::ops::Range<u32>,
    from: u64,
    to: u64,
) -> Vec<usize> {
    let mut uncovered: BTreeSet<u32> = pieces
        .filter(|p| {
            !selected
                .iter()
                .any(|&i| spans.get(i).is_some_and(|s| s.2.contains(p)))
        })
        .collect();
    let mut candidates: Vec<(u64, usize)> = spans
        .iter()
        .enumerate()
        .filter(|(i, s)| s.1 > 0 && !selected.contains(i))
        .map(|(i, s)| {
            let overlap = (s.0 + s.1).min(to).saturating_sub(s.0.max(from));
            (overlap, i)
        })
        .filter(|(overlap, _)| *overlap > 0)
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut new = Vec::new();
    for (_, i) in candidates {
        let range = &spans[i].2;
        if uncovered.iter().any(|p| range.contains(p)) {
            uncovered.retain(|p| !range.contains(p));
            new.push(i);
        }
        if uncovered.is_empty() {
            break;
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three files over 2^18-byte pieces: a 0..1_200_000 (pieces 0..=4), b ..1_900_000
    /// (4..=7), c ..3_200_000 (7..=12).
    fn spans() -> Vec<(u64, u64, std::ops::Range<u32>)> {
        vec![
            (0, 1_200_000, 0..5),
            (1_200_000, 700_000, 4..8),
            (1_900_000, 1_300_000, 7..13),
        ]
    }

    #[test]
    fn a_file_is_fetched_without_its_neighbours() {
        let pl = 1u64 << 18;
        let none = BTreeSet::new();
        // The pieces of b: b alone covers them, boundary pieces included.
        assert_eq!(covering_files(&spans(), &none, 4..8, 4 * pl, 8 * pl), [1]);
        // A range inside a.
        assert_eq!(covering_files(&spans(), &none, 0..2, 0, 2 * pl), [0]);
        // Everything: all three.
        let mut all = covering_files(&spans(), &none, 0..13, 0, 3_200_000);
        all.sort();
        assert_eq!(all, [0, 1, 2]);
        // Already selected files count.
        let b = BTreeSet::from([1]);
        assert!(covering_files(&spans(), &b, 4..8, 4 * pl, 8 * pl).is_empty());
        assert_eq!(covering_files(&spans(), &b, 7..9, 7 * pl, 9 * pl), [2]);
    }
}

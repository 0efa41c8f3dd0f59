//! One facilitated request: open the content its `DB_SOURCE` names, then answer its queries in
//! order until it ends.

use super::answer::{Answers, Stop};
use super::torrent::{ServedTorrent, Torrents};
use super::web::{WebExit, WebFile};
use onionmesh_wire::db::{
    DataSlice, DbMsg, DbQuery, DbSource, DescriptorKind, DescriptorSlice, SourceKind,
    MAX_DATA_SLICE,
};
use onionmesh_wire::signal::MAX_FACILITATED_BATCH;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::debug;

/// A request with no new query for this long ends (DESTROYED): its torrent or web file would
/// otherwise stay in the cache for a node that forgot it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes read from the content at a time: the `DB_DATA` slices of one full `Facilitated` frame.
const READ_CHUNK: usize = MAX_DATA_SLICE * MAX_FACILITATED_BATCH;
const _: () = assert!(MAX_FACILITATED_BATCH <= super::FACILITATED_QUEUE);

/// The parts a request task may use: `None` where switched off.
pub struct Services {
    pub torrents: Option<Arc<Torrents>>,
    pub web: Option<Arc<WebExit>>,
}

/// Serve one request until it ends; a `DB_END` says why, unless the connection is gone.
pub async fn run(
    services: Arc<Services>,
    source: DbSource,
    mut queries: mpsc::Receiver<DbQuery>,
    answers: Answers,
) {
    match serve(&services, &source, &mut queries, &answers).await {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::End { reason, sentence }) => {
            debug!(
                "facilitated request for {} ends {}: {sentence}",
                source.hash_name.to_hex(),
                reason.name()
            );
            let _ = answers.end(reason, &sentence).await;
        }
    }
}

/// What a request serves.
enum Content {
    Torrent(ServedTorrent),
    Web(WebFile),
}

impl Content {
    fn descriptor(&self) -> (DescriptorKind, &[u8]) {
        match self {
            Content::Torrent(t) => (DescriptorKind::BITTORRENT_V1_INFO, t.info_bytes()),
            Content::Web(w) => (DescriptorKind::WEB_V1, w.descriptor()),
        }
    }

    /// (total bytes, piece size)
    fn shape(&self) -> (u64, u64) {
        match self {
            Content::Torrent(t) => (t.total_len(), t.piece_len()),
            Content::Web(w) => (w.size(), u64::from(onionmesh_wire::db::WebMeta::PIECE_SIZE)),
        }
    }

    /// Make sure bytes `from..to` will come (a torrent selects the files they overlap).
    async fn want(&mut self, from: u64, to: u64) -> Result<(), Stop> {
        match self {
            Content::Torrent(t) => t.want(from, to).await,
            Content::Web(_) => Ok(()),
        }
    }

    /// Fill `buf` with the content's bytes from `at`, waiting for them to arrive.
    async fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), Stop> {
        match self {
            Content::Torrent(t) => t.read_at(at, buf).await,
            Content::Web(w) => w.read_at(at, buf).await,
        }
    }

    /// The piece whose first byte sent is flipped (`--test-corrupt-piece`).
    fn corrupt_piece(&self) -> Option<u32> {
        match self {
            Content::Torrent(t) => t.corrupt_piece(),
            Content::Web(_) => None,
        }
    }

    /// Nothing is being read until the next query: let go of what reading holds.
    fn idle(&mut self) {
        if let Content::Torrent(t) = self {
            t.idle();
        }
    }
}

async fn open(services: &Services, source: &DbSource) -> Result<Content, Stop> {
    match source.kind {
        SourceKind::MAGNET => match &services.torrents {
            Some(t) => Ok(Content::Torrent(t.open(source).await?)),
            None => Err(Stop::unavailable("this bridge is not a facilitator")),
        },
        SourceKind::WEB => match &services.web {
            Some(w) => Ok(Content::Web(w.open(source).await?)),
            None => Err(Stop::unavailable("this bridge is not a web exit")),
        },
        other => Err(Stop::bad_request(format!(
            "unknown DB_SOURCE kind {}: a facilitator takes magnet links (1) and web URLs (2)",
            other.0
        ))),
    }
}

async fn serve(
    services: &Services,
    source: &DbSource,
    queries: &mut mpsc::Receiver<DbQuery>,
    answers: &Answers,
) -> Result<(), Stop> {
    let mut content = open(services, source).await?;
    loop {
        content.idle();
        let query = match timeout(IDLE_TIMEOUT, queries.recv()).await {
            Ok(Some(q)) => q,
            // The facilitator let go of the request (it aborts the task first, so rarely seen).
            Ok(None) => return Ok(()),
            Err(_) => {
                return Err(Stop::end(
                    onionmesh_wire::db::DbEndReason::DESTROYED,
                    format!(
                        "no query for {} s: the facilitator closed this request",
                        IDLE_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        if query.hash_name != source.hash_name {
            return Err(Stop::bad_request(format!(
                "a query for {} on a request whose DB_SOURCE names {}",
                query.hash_name.to_hex(),
                source.hash_name.to_hex()
            )));
        }
        if query.count == 0 {
            let (kind, bytes) = content.descriptor();
            let slices = DescriptorSlice::split(kind, bytes)
                .map_err(|e| Stop::unavailable(format!("the descriptor cannot be sent: {e}")))?;
            for slice in slices {
                answers.send(DbMsg::Connected(slice)).await?;
            }
            continue;
        }
        serve_range(&mut content, &query, answers).await?;
    }
}

/// Pieces `piece..piece + count` in order, the first from byte `offset`, as `DB_DATA` slices.
async fn serve_range(
    content: &mut Content,
    query: &DbQuery,
    answers: &Answers,
) -> Result<(), Stop> {
    let (total, piece_len) = content.shape();
    let pieces = total.div_ceil(piece_len);
    let first = u64::from(query.piece);
    let end = first + u64::from(query.count);
    if end > pieces {
        return Err(Stop::bad_request(format!(
            "pieces {first}..{end} asked for, but the content has {pieces}"
        )));
    }
    let first_len = piece_len.min(total - first * piece_len);
    if u64::from(query.offset) >= first_len {
        return Err(Stop::bad_request(format!(
            "offset {} is past the end of piece {first} ({first_len} bytes)",
            query.offset
        )));
    }
    content
        .want(first * piece_len, (end * piece_len).min(total))
        .await?;
    let corrupt = content.corrupt_piece();
    let mut buf = vec![0u8; READ_CHUNK];
    for piece in first..end {
        let start = piece * piece_len;
        let len = piece_len.min(total - start);
        let mut pos = if piece == first {
            u64::from(query.offset)
        } else {
            0
        };
        let first_sent = pos;
        // u32: piece and offsets fit, since the query's piece is a u32 and pieces are < 4 GiB.
        let index = piece as u32;
        while pos < len {
            let n = (len - pos).min(READ_CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            content.read_at(start + pos, chunk).await?;
            if corrupt == Some(index) && pos == first_sent {
                chunk[0] ^= 0xff;
            }
            let mut slices = Vec::with_capacity(MAX_FACILITATED_BATCH);
            for (i, data) in chunk.chunks(MAX_DATA_SLICE).enumerate() {
                let offset = (pos + (i * MAX_DATA_SLICE) as u64) as u32;
                let slice = DataSlice::new(index, offset, data.to_vec())
                    .map_err(|e| Stop::unavailable(format!("a data slice: {e}")))?;
                slices.push(DbMsg::Data(slice));
            }
            answers.send_all(slices).await?;
            pos += n as u64;
        }
    }
    Ok(())
}

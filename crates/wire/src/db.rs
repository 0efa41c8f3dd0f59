//! Content (`DB_*`) messages: what a requester and the ORDBs say to each other on a stream of a
//! circuit, inside relay cells (relay commands `0x70..=0x7f`, see [`crate::cell`]).
//!
//! Spec: Peersm, "Messages format", "Requests" and "Content discovery", improved as issue 9 asks
//! (self-certifying content: a Merkle root in signed metadata instead of a 4-byte signature
//! fragment per chunk).
//!
//! | code | message        | body                                                              |
//! |------|----------------|-------------------------------------------------------------------|
//! | 0x70 | `DB_QUERY`     | `[hash_name 20][piece u32][offset u32][count u16][counter u8]`    |
//! | 0x71 | `DB_CONNECTED` | `[kind u8][total u32][offset u32][descriptor bytes]`              |
//! | 0x72 | `DB_PROOF`     | `[piece u32][first level u8][n u8][n x 32-byte hash]`             |
//! | 0x73 | `DB_DATA`      | `[piece u32][offset u32][data]`                                   |
//! | 0x74 | `DB_END`       | `[reason u8][sentence str16]`                                     |
//! | 0x75 | `DB_INFO`      | `[hash_name 20][P u8 (0..=3)][flags u8]`                          |
//! | 0x76 | `DB_SOURCE`    | `[hash_name 20][kind u8][uri str16]`                              |
//!
//! Every body fits one relay cell's 498 data bytes ([`RELAY_DATA_LEN`]), so the messages never
//! need a reassembly layer of their own. How a 64 KiB piece crosses 498-byte cells:
//!
//! - The piece travels as many `DB_DATA` slices, each naming its piece and its byte offset in
//!   that piece (8 bytes of header, at most 487 bytes of data, [`MAX_DATA_SLICE`]). Because
//!   every slice says where it goes, an interrupted request resumes with a new `DB_QUERY` whose
//!   `offset` is the first missing byte, and pipelined requests on one stream need no request
//!   id.
//! - The piece's Merkle proof travels once per piece, in one or more `DB_PROOF` messages sent
//!   *before* the piece's first `DB_DATA`. Putting it in its own message (rather than in the
//!   first slice) keeps every `DB_DATA` the same shape, lets a resumed request (offset > 0) still
//!   carry the proof, and lets proofs deeper than one cell (more than
//!   [`MAX_PROOF_HASHES_PER_MSG`] levels, over 32k pieces) be split by level.
//! - The metadata (`DB_CONNECTED`) is carried the same way, as slices of a *descriptor* of a
//!   given [`DescriptorKind`]. Onionmesh's own signed [`ContentMeta`] fits in one slice; the
//!   framing leaves room for a BitTorrent v1 info dictionary (issue 10), which can be many
//!   kilobytes, without a new message.
//!
//! `count == 0` in a `DB_QUERY` asks for the descriptor only (the spec's "nb chunks 0").
//!
//! `DB_SOURCE` (issue 10) tells the ORDBs where a content can be fetched from outside the mesh
//! when nobody inside has it: a magnet link (the content is a BitTorrent v1 torrent and its
//! hash_name is the infohash) or a web URL (hash_name = [`DbSource::web_hash_name`]). A requester
//! sends it on a stream before the first `DB_QUERY` for that hash_name; an ORDB that forwards
//! the query sends it along, and one that finds no holder in the mesh hands the query to a
//! facilitator (its bridge) with it. Spec: "If the FIND process is unsuccessful, the ORDB sends
//! the request to several facilitators".
//!
//! Constructors that carry a length ([`DataSlice::new`], [`ProofPart::new`],
//! [`DescriptorSlice::new`], [`DbEnd::new`], [`ContentMeta::new`]) fail instead of truncating,
//! so whatever is built can be encoded and decoded back unchanged.
//!
//! ```
//! use onionmesh_wire::db::{DbMsg, DbQuery, HashName};
//! let q = DbMsg::Query(DbQuery { hash_name: HashName([7; 20]), piece: 3, offset: 0, count: 2, counter: 0 });
//! let (cmd, data) = q.encode();
//! assert_eq!(cmd.0, 0x70);
//! assert_eq!(DbMsg::decode(cmd, &data).unwrap(), q);
//! ```

use std::fmt;

use crate::cell::{RelayCmd, RelayData, RelayMsg, RELAY_DATA_LEN};
use crate::{
    BoundedString, PublicKeyBytes, Reader, SignatureBytes, WireError, Writer, PUBKEY_LEN, SIG_LEN,
};

/// Length of a hash_name: 160 bits, the size of a DHT key.
pub const HASH_NAME_LEN: usize = 20;
/// Length of a Merkle tree hash (SHA-256).
pub const HASH_LEN: usize = 32;
/// Header bytes of a `DB_DATA` (piece, offset).
pub const DATA_HEADER_LEN: usize = 8;
/// Header bytes the node puts before each `DB_*` message on a content stream (command, u16
/// body length; `onionmesh_node`'s stream framing).
pub const STREAM_FRAME_HEADER_LEN: usize = 3;
/// Most piece bytes in one `DB_DATA`: 487, so that a `DB_DATA` framed on a content stream
/// fills exactly one relay cell (3 + 8 + 487 = 498). With 490 (the whole cell body), every
/// framed slice took a full cell and 3 bytes of the next. A relaying ORDB writes answers as
/// they arrive, so it sent two cells per slice; in a five-page mesh that made a relayed byte
/// cost about 8.5 data-channel crossings instead of 6 (measured 2026-12-01, README "Where the
/// CPU goes").
pub const MAX_DATA_SLICE: usize = RELAY_DATA_LEN - DATA_HEADER_LEN - STREAM_FRAME_HEADER_LEN;
/// Header bytes of a `DB_PROOF` (piece, first level, count).
pub const PROOF_HEADER_LEN: usize = 6;
/// Most proof hashes in one `DB_PROOF`: 15 (486 bytes).
pub const MAX_PROOF_HASHES_PER_MSG: usize = (RELAY_DATA_LEN - PROOF_HEADER_LEN) / HASH_LEN;
/// Deepest Merkle proof: one hash per level of a tree of up to 2^32 leaves.
pub const MAX_PROOF_LEVELS: usize = 32;
/// Header bytes of a `DB_CONNECTED` slice (kind, total, offset).
pub const DESCRIPTOR_HEADER_LEN: usize = 9;
/// Most descriptor bytes in one `DB_CONNECTED`: 489.
pub const MAX_DESCRIPTOR_SLICE: usize = RELAY_DATA_LEN - DESCRIPTOR_HEADER_LEN;
/// Largest whole descriptor (all slices together). A BitTorrent info dictionary of a 64 GiB
/// torrent with 256 KiB pieces is about 5 MiB of piece hashes; 8 MiB leaves headroom.
pub const MAX_DESCRIPTOR_LEN: usize = 8 * 1024 * 1024;
/// Longest sentence in a `DB_END`.
pub const MAX_END_SENTENCE: usize = 200;
/// Longest MIME type in [`ContentMeta`].
pub const MAX_MIME: usize = 100;
/// Longest file name in [`ContentMeta`], in UTF-8 bytes.
pub const MAX_NAME: usize = 200;
/// The spec's loop counter stops a query once it reaches this value.
pub const MAX_COUNTER: u8 = 5;

/// The name of a content: the first 160 bits of SHA-256 of its descriptor (for onionmesh's own
/// content, the encoded [`ContentMeta`]); for a BitTorrent-backed content, its v1 infohash.
/// The same width as a DHT key, so provider records are found with `FIND_VALUE(hash_name)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HashName(pub [u8; HASH_NAME_LEN]);

impl HashName {
    /// Lower-case hex, 40 characters (the share link's `#` part).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From 40 hex characters (surrounding white space ignored); `None` otherwise.
    pub fn from_hex(s: &str) -> Option<HashName> {
        let mut out = [0u8; HASH_NAME_LEN];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(HashName(out))
    }
}

impl fmt::Debug for HashName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashName({})", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for HashName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The `DB_*` relay command codes (a subset of [`RelayCmd`]'s reserved `0x70..=0x7f`).
pub mod cmd {
    use crate::cell::RelayCmd;
    pub const QUERY: RelayCmd = RelayCmd(0x70);
    pub const CONNECTED: RelayCmd = RelayCmd(0x71);
    pub const PROOF: RelayCmd = RelayCmd(0x72);
    pub const DATA: RelayCmd = RelayCmd(0x73);
    pub const END: RelayCmd = RelayCmd(0x74);
    pub const INFO: RelayCmd = RelayCmd(0x75);
    pub const SOURCE: RelayCmd = RelayCmd(0x76);
}

/// `DB_QUERY`: ask for `count` pieces starting at byte `offset` of piece `piece`, or for the
/// descriptor when `count == 0`. `counter` counts the ORDBs the query has crossed; an ORDB that
/// receives it at [`MAX_COUNTER`] answers `DB_END` instead of relaying (the spec's loop stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbQuery {
    pub hash_name: HashName,
    /// First piece wanted (0-based).
    pub piece: u32,
    /// First byte wanted within `piece` (non-zero when resuming an interrupted request).
    pub offset: u32,
    /// Pieces wanted; 0 = the descriptor only.
    pub count: u16,
    /// ORDB hops crossed so far, 0 from the requester.
    pub counter: u8,
}

/// Which kind of descriptor a `DB_CONNECTED` carries. Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DescriptorKind(pub u8);

impl DescriptorKind {
    /// An encoded [`ContentMeta`]: signed, SHA-256 Merkle tree over the pieces.
    pub const ONIONMESH_V1: DescriptorKind = DescriptorKind(1);
    /// A raw BitTorrent v1 info dictionary (SHA-1 per piece, hash_name = infohash). A
    /// facilitator sends it for a torrent it streams from BitTorrent (issue 10).
    pub const BITTORRENT_V1_INFO: DescriptorKind = DescriptorKind(2);
    /// An encoded [`WebMeta`]: a file an exit bridge fetched from the web (issue 10). Nothing
    /// certifies its bytes but the exit: the requester stores it as new content of its own.
    pub const WEB_V1: DescriptorKind = DescriptorKind(3);
}

/// Where a `DB_SOURCE` says a content can be fetched from outside the mesh. Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceKind(pub u8);

impl SourceKind {
    /// `uri` is a magnet link (`magnet:?xt=urn:btih:...`) whose infohash is the hash_name; its
    /// `tr` trackers are worth trying. A bare 40-hex infohash is sent as a magnet link too.
    pub const MAGNET: SourceKind = SourceKind(1);
    /// `uri` is an `http://` or `https://` URL; the hash_name is [`DbSource::web_hash_name`].
    pub const WEB: SourceKind = SourceKind(2);
}

/// Longest URI in a `DB_SOURCE` (it fits one relay cell): 475 bytes.
pub const MAX_SOURCE_URI: usize = RELAY_DATA_LEN - HASH_NAME_LEN - 1 - 2;

/// A `DB_SOURCE` URI: at most [`MAX_SOURCE_URI`] bytes. Never cut: a shortened URL names
/// something else.
pub type SourceUri = BoundedString<MAX_SOURCE_URI>;

/// `DB_SOURCE`: "if nobody in the mesh holds `hash_name`, a facilitator can fetch it from
/// `uri`". Only the shape is checked here; what a facilitator accepts (schemes, addresses,
/// that a magnet's infohash equals `hash_name`) is its own policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSource {
    pub hash_name: HashName,
    pub kind: SourceKind,
    pub uri: SourceUri,
}

impl DbSource {
    /// The hash_name a web file is asked for by, before anyone knows its bytes: the first 160
    /// bits of SHA-256 of `"onionmesh-web-v1\0"` followed by the URL, exactly as given. It
    /// names the request, not the content; the requester then stores what arrived as its own
    /// content under a new hash_name.
    pub fn web_hash_name(url: &str) -> HashName {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"onionmesh-web-v1\0");
        h.update(url.as_bytes());
        let digest = h.finalize();
        let mut out = [0u8; HASH_NAME_LEN];
        out.copy_from_slice(&digest[..HASH_NAME_LEN]);
        HashName(out)
    }
}

/// Version byte of [`WebMeta`]'s encoding.
pub const WEB_META_V1: u8 = 1;

/// The descriptor of a web file ([`DescriptorKind::WEB_V1`]), sent by the exit that fetched it:
/// `[version u8 = 1][size u64][mime str16][url str16]`. `size` is exact (an exit that does not
/// know it from `Content-Length` fetches the whole file first). Pieces are [`WebMeta::PIECE_SIZE`]
/// bytes. The requester checks that `url` hashes to the hash_name it asked for
/// ([`DbSource::web_hash_name`]); nothing else about the bytes can be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebMeta {
    pub size: u64,
    pub mime: BoundedString<MAX_MIME>,
    pub url: SourceUri,
}

impl WebMeta {
    /// Piece size of a web file on the wire and in the store: 64 KiB, the same as onionmesh's
    /// own content (see `onionmesh-ordb`'s crate docs, "Piece size").
    pub const PIECE_SIZE: u32 = 64 * 1024;

    /// The descriptor bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.put_u8(WEB_META_V1);
        w.put_u64(self.size);
        w.put_str16(&self.mime);
        w.put_str16(&self.url);
        w.into_vec()
    }

    /// Decode descriptor bytes. Errors: [`WireError`] for a wrong version, a short or long
    /// body, or over-long fields.
    pub fn decode(bytes: &[u8]) -> Result<WebMeta, WireError> {
        let mut r = Reader::new(bytes);
        if r.take_u8()? != WEB_META_V1 {
            return Err(WireError::BadValue("unknown web descriptor version"));
        }
        let meta = WebMeta {
            size: r.take_u64()?,
            mime: r.take_string16()?,
            url: r.take_string16()?,
        };
        r.should_be_exhausted()?;
        Ok(meta)
    }
}

/// `DB_CONNECTED`: `bytes` are the descriptor's bytes `offset..offset + bytes.len()` out of
/// `total`. Checked on construction and decode: `total <= MAX_DESCRIPTOR_LEN`, the slice ends
/// within `total`, and the slice is at most [`MAX_DESCRIPTOR_SLICE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorSlice {
    kind: DescriptorKind,
    total: u32,
    offset: u32,
    bytes: Vec<u8>,
}

impl DescriptorSlice {
    /// Errors: [`WireError::LengthTooLarge`] for a slice over [`MAX_DESCRIPTOR_SLICE`] or a total
    /// over [`MAX_DESCRIPTOR_LEN`]; [`WireError::BadValue`] when the slice ends past `total`.
    pub fn new(
        kind: DescriptorKind,
        total: u32,
        offset: u32,
        bytes: Vec<u8>,
    ) -> Result<Self, WireError> {
        if bytes.len() > MAX_DESCRIPTOR_SLICE {
            return Err(WireError::LengthTooLarge {
                len: bytes.len(),
                max: MAX_DESCRIPTOR_SLICE,
            });
        }
        if total as usize > MAX_DESCRIPTOR_LEN {
            return Err(WireError::LengthTooLarge {
                len: total as usize,
                max: MAX_DESCRIPTOR_LEN,
            });
        }
        if u64::from(offset) + bytes.len() as u64 > u64::from(total) {
            return Err(WireError::BadValue(
                "a descriptor slice ends past its total",
            ));
        }
        Ok(DescriptorSlice {
            kind,
            total,
            offset,
            bytes,
        })
    }

    /// Cut a whole descriptor into slices. Errors when it is over [`MAX_DESCRIPTOR_LEN`].
    pub fn split(kind: DescriptorKind, descriptor: &[u8]) -> Result<Vec<Self>, WireError> {
        if descriptor.len() > MAX_DESCRIPTOR_LEN {
            return Err(WireError::LengthTooLarge {
                len: descriptor.len(),
                max: MAX_DESCRIPTOR_LEN,
            });
        }
        let total = descriptor.len() as u32;
        if descriptor.is_empty() {
            return Ok(vec![DescriptorSlice::new(kind, 0, 0, Vec::new())?]);
        }
        descriptor
            .chunks(MAX_DESCRIPTOR_SLICE)
            .enumerate()
            .map(|(i, c)| {
                DescriptorSlice::new(kind, total, (i * MAX_DESCRIPTOR_SLICE) as u32, c.to_vec())
            })
            .collect()
    }

    pub fn kind(&self) -> DescriptorKind {
        self.kind
    }
    /// Length of the whole descriptor, bytes.
    pub fn total(&self) -> u32 {
        self.total
    }
    /// Where this slice starts in the descriptor.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// `DB_PROOF`: hashes `first_level..first_level + hashes.len()` of piece `piece`'s Merkle audit
/// path, leaf side first. At most [`MAX_PROOF_HASHES_PER_MSG`] per message and
/// [`MAX_PROOF_LEVELS`] levels in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPart {
    piece: u32,
    first_level: u8,
    hashes: Vec<[u8; HASH_LEN]>,
}

impl ProofPart {
    /// Errors: [`WireError::LengthTooLarge`] for more hashes than fit a cell or a path that would
    /// go past [`MAX_PROOF_LEVELS`].
    pub fn new(
        piece: u32,
        first_level: u8,
        hashes: Vec<[u8; HASH_LEN]>,
    ) -> Result<Self, WireError> {
        if hashes.len() > MAX_PROOF_HASHES_PER_MSG {
            return Err(WireError::LengthTooLarge {
                len: hashes.len(),
                max: MAX_PROOF_HASHES_PER_MSG,
            });
        }
        let end = usize::from(first_level) + hashes.len();
        if end > MAX_PROOF_LEVELS {
            return Err(WireError::LengthTooLarge {
                len: end,
                max: MAX_PROOF_LEVELS,
            });
        }
        Ok(ProofPart {
            piece,
            first_level,
            hashes,
        })
    }

    /// Cut a whole audit path into parts. An empty path (a one-piece content) is one empty
    /// part, so the receiver still learns that the proof is complete.
    pub fn split(piece: u32, path: &[[u8; HASH_LEN]]) -> Result<Vec<Self>, WireError> {
        if path.len() > MAX_PROOF_LEVELS {
            return Err(WireError::LengthTooLarge {
                len: path.len(),
                max: MAX_PROOF_LEVELS,
            });
        }
        if path.is_empty() {
            return Ok(vec![ProofPart::new(piece, 0, Vec::new())?]);
        }
        path.chunks(MAX_PROOF_HASHES_PER_MSG)
            .enumerate()
            .map(|(i, c)| ProofPart::new(piece, (i * MAX_PROOF_HASHES_PER_MSG) as u8, c.to_vec()))
            .collect()
    }

    pub fn piece(&self) -> u32 {
        self.piece
    }
    /// Level (0 = the leaf's sibling) of the first hash here.
    pub fn first_level(&self) -> u8 {
        self.first_level
    }
    pub fn hashes(&self) -> &[[u8; HASH_LEN]] {
        &self.hashes
    }
}

/// `DB_DATA`: bytes `offset..offset + data.len()` of piece `piece`; at most
/// [`MAX_DATA_SLICE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSlice {
    piece: u32,
    offset: u32,
    data: Vec<u8>,
}

impl DataSlice {
    /// Errors: [`WireError::LengthTooLarge`] for more than [`MAX_DATA_SLICE`] bytes.
    pub fn new(piece: u32, offset: u32, data: Vec<u8>) -> Result<Self, WireError> {
        if data.len() > MAX_DATA_SLICE {
            return Err(WireError::LengthTooLarge {
                len: data.len(),
                max: MAX_DATA_SLICE,
            });
        }
        Ok(DataSlice {
            piece,
            offset,
            data,
        })
    }

    /// Slices of `piece_bytes[from..]` for piece `piece`, in order. Never fails: each slice is
    /// cut to [`MAX_DATA_SLICE`]. `from` past the end gives no slice.
    pub fn split(piece: u32, from: u32, piece_bytes: &[u8]) -> Vec<DataSlice> {
        let start = (from as usize).min(piece_bytes.len());
        piece_bytes[start..]
            .chunks(MAX_DATA_SLICE)
            .enumerate()
            .map(|(i, c)| DataSlice {
                piece,
                offset: (start + i * MAX_DATA_SLICE) as u32,
                data: c.to_vec(),
            })
            .collect()
    }

    pub fn piece(&self) -> u32 {
        self.piece
    }
    /// Byte offset of `data` within the piece.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// Why a `DB_END` was sent. Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbEndReason(pub u8);

impl DbEndReason {
    /// Nobody reachable from here holds it (spec 0).
    pub const UNAVAILABLE: DbEndReason = DbEndReason(0);
    /// The requesting side stops the request (spec 1).
    pub const FINISHED: DbEndReason = DbEndReason(1);
    /// The serving side stops (spec 2).
    pub const DESTROYED: DbEndReason = DbEndReason(2);
    /// The query's counter reached [`MAX_COUNTER`]: a relay loop, or too long a chain of ORDBs.
    pub const LOOP: DbEndReason = DbEndReason(3);
    /// The ORDB is at one of its limits (requests, relays); try another.
    pub const BUSY: DbEndReason = DbEndReason(4);
    /// The query made no sense (a piece past the end, a count over the limit).
    pub const BAD_REQUEST: DbEndReason = DbEndReason(5);
    /// A facilitator looked outside the mesh and found nothing (an infohash no BitTorrent
    /// peer knows, say): a verdict about the content, not about this ORDB, so a requester
    /// that has no descriptor yet stops at once with the sentence instead of asking other
    /// ORDBs, whose facilitators would search the same world (issue 10, "bad input").
    pub const NOT_FOUND: DbEndReason = DbEndReason(6);

    /// A stable upper-case name for logs and the JS API.
    pub fn name(self) -> &'static str {
        match self {
            Self::UNAVAILABLE => "UNAVAILABLE",
            Self::FINISHED => "FINISHED",
            Self::DESTROYED => "DESTROYED",
            Self::LOOP => "LOOP",
            Self::BUSY => "BUSY",
            Self::BAD_REQUEST => "BAD_REQUEST",
            Self::NOT_FOUND => "NOT_FOUND",
            _ => "UNKNOWN",
        }
    }
}

/// `DB_END`: the end of a request, with a reason and a sentence for people (at most
/// [`MAX_END_SENTENCE`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEnd {
    reason: DbEndReason,
    sentence: BoundedString<MAX_END_SENTENCE>,
}

impl DbEnd {
    /// Errors: [`WireError::LengthTooLarge`] for a sentence over [`MAX_END_SENTENCE`] bytes.
    pub fn new(reason: DbEndReason, sentence: impl Into<String>) -> Result<Self, WireError> {
        Ok(DbEnd {
            reason,
            sentence: BoundedString::new(sentence)?,
        })
    }

    /// Like [`DbEnd::new`] for sentences written in this code base: a longer one is cut at a
    /// character boundary ([`BoundedString::lossy`], so this cannot fail); use `new` for text
    /// from elsewhere.
    pub fn with_sentence(reason: DbEndReason, sentence: &str) -> Self {
        DbEnd {
            reason,
            sentence: BoundedString::lossy(sentence),
        }
    }

    pub fn reason(&self) -> DbEndReason {
        self.reason
    }
    pub fn sentence(&self) -> &str {
        &self.sentence
    }
}

/// How much of a content an advertiser holds (the spec's P: 0 = 25 %, 1 = 50 %, 2 = 75 %,
/// 3 = 100 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Completion {
    Quarter = 0,
    Half = 1,
    ThreeQuarters = 2,
    Full = 3,
}

impl Completion {
    /// The highest step reached by `have` of `total` (pieces or bytes), or `None` under 25 %.
    pub fn from_fraction(have: u64, total: u64) -> Option<Completion> {
        if total == 0 {
            return None;
        }
        let have = u128::from(have.min(total)) * 4;
        let total = u128::from(total);
        Some(if have >= 4 * total {
            Completion::Full
        } else if have >= 3 * total {
            Completion::ThreeQuarters
        } else if have >= 2 * total {
            Completion::Half
        } else if have >= total {
            Completion::Quarter
        } else {
            return None;
        })
    }

    /// The percentage this step stands for: 25, 50, 75 or 100.
    pub fn percent(self) -> u8 {
        (self as u8 + 1) * 25
    }

    fn from_wire(b: u8) -> Result<Completion, WireError> {
        Ok(match b {
            0 => Completion::Quarter,
            1 => Completion::Half,
            2 => Completion::ThreeQuarters,
            3 => Completion::Full,
            _ => return Err(WireError::BadValue("DB_INFO completion is not 0..=3")),
        })
    }
}

/// Flag bits of a `DB_INFO`. Unknown bits are carried through unchanged (a newer peer's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InfoFlags(pub u8);

impl InfoFlags {
    /// F: the advertiser is a facilitator (can fetch from outside the mesh).
    pub const FACILITATOR: InfoFlags = InfoFlags(0x01);
    /// S: the content is a continuous (live) stream: it goes in OR_streams, not OR_files.
    pub const STREAM: InfoFlags = InfoFlags(0x02);
    /// R: a reference passed on. The sender does not claim to hold the content: it heard of it
    /// from another ORDB and can relay a query there. `completion` is that ORDB's. (Not in the
    /// Peersm spec, whose `DB_INFO` cannot tell the two apart. Without it, a query could go
    /// from one ORDB that only heard of the content to another one, each such step adding a
    /// whole circuit to the path of every byte.)
    pub const REFERENCE: InfoFlags = InfoFlags(0x04);

    pub fn contains(self, other: InfoFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn with(self, other: InfoFlags) -> InfoFlags {
        InfoFlags(self.0 | other.0)
    }
}

/// `DB_INFO`: "I (or someone I can relay to) hold `completion` of `hash_name`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbInfo {
    pub hash_name: HashName,
    pub completion: Completion,
    pub flags: InfoFlags,
}

/// One `DB_*` message, the typed view of a relay message with a command in `0x70..=0x7f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbMsg {
    Query(DbQuery),
    Connected(DescriptorSlice),
    Proof(ProofPart),
    Data(DataSlice),
    End(DbEnd),
    Info(DbInfo),
    Source(DbSource),
    /// A code of the reserved range this version does not know; the data is kept.
    Unrecognized {
        cmd: u8,
        data: RelayData,
    },
}

impl DbMsg {
    /// True for a relay command in the `DB_*` range.
    pub fn is_db_cmd(cmd: RelayCmd) -> bool {
        (RelayCmd::DB_FIRST.0..=RelayCmd::DB_LAST.0).contains(&cmd.0)
    }

    /// The relay command.
    pub fn cmd(&self) -> RelayCmd {
        match self {
            DbMsg::Query(_) => cmd::QUERY,
            DbMsg::Connected(_) => cmd::CONNECTED,
            DbMsg::Proof(_) => cmd::PROOF,
            DbMsg::Data(_) => cmd::DATA,
            DbMsg::End(_) => cmd::END,
            DbMsg::Info(_) => cmd::INFO,
            DbMsg::Source(_) => cmd::SOURCE,
            DbMsg::Unrecognized { cmd, .. } => RelayCmd(*cmd),
        }
    }

    /// The command and the relay data (at most [`RELAY_DATA_LEN`] bytes: every variant is
    /// bounded by construction).
    pub fn encode(&self) -> (RelayCmd, RelayData) {
        let mut w = Writer::new();
        match self {
            DbMsg::Query(q) => {
                w.put_bytes(&q.hash_name.0);
                w.put_u32(q.piece);
                w.put_u32(q.offset);
                w.put_u16(q.count);
                w.put_u8(q.counter);
            }
            DbMsg::Connected(s) => {
                w.put_u8(s.kind.0);
                w.put_u32(s.total);
                w.put_u32(s.offset);
                w.put_bytes(&s.bytes);
            }
            DbMsg::Proof(p) => {
                w.put_u32(p.piece);
                w.put_u8(p.first_level);
                w.put_u8(p.hashes.len() as u8);
                for h in &p.hashes {
                    w.put_bytes(h);
                }
            }
            DbMsg::Data(d) => {
                w.put_u32(d.piece);
                w.put_u32(d.offset);
                w.put_bytes(&d.data);
            }
            DbMsg::End(e) => {
                w.put_u8(e.reason.0);
                w.put_str16(&e.sentence);
            }
            DbMsg::Info(i) => {
                w.put_bytes(&i.hash_name.0);
                w.put_u8(i.completion as u8);
                w.put_u8(i.flags.0);
            }
            DbMsg::Source(src) => {
                w.put_bytes(&src.hash_name.0);
                w.put_u8(src.kind.0);
                w.put_str16(&src.uri);
            }
            DbMsg::Unrecognized { data, .. } => w.put_bytes(data),
        }
        // Cannot fail: every variant is bounded to fit one relay cell (the const assertions
        // after this impl), and `Unrecognized` carries a `RelayData` already.
        let data = RelayData::new(w.into_vec()).expect("a DB_* message fits one relay cell");
        (self.cmd(), data)
    }

    /// Decode the relay data of command `cmd`. A command outside `0x70..=0x7f` is a caller bug
    /// reported as [`WireError::BadValue`]; an unknown one inside it is `Unrecognized`. The data
    /// must be consumed exactly.
    pub fn decode(cmd: RelayCmd, data: &[u8]) -> Result<DbMsg, WireError> {
        if !Self::is_db_cmd(cmd) {
            return Err(WireError::BadValue("not a DB_* relay command"));
        }
        if data.len() > RELAY_DATA_LEN {
            return Err(WireError::FrameTooLarge {
                len: data.len(),
                max: RELAY_DATA_LEN,
            });
        }
        let mut r = Reader::new(data);
        let msg = match cmd {
            cmd::QUERY => DbMsg::Query(DbQuery {
                hash_name: HashName(r.take_array()?),
                piece: r.take_u32()?,
                offset: r.take_u32()?,
                count: r.take_u16()?,
                counter: r.take_u8()?,
            }),
            cmd::CONNECTED => {
                let kind = DescriptorKind(r.take_u8()?);
                let total = r.take_u32()?;
                let offset = r.take_u32()?;
                DbMsg::Connected(DescriptorSlice::new(
                    kind,
                    total,
                    offset,
                    r.take_rest().to_vec(),
                )?)
            }
            cmd::PROOF => {
                let piece = r.take_u32()?;
                let first_level = r.take_u8()?;
                let n = usize::from(r.take_u8()?);
                if n > MAX_PROOF_HASHES_PER_MSG {
                    return Err(WireError::LengthTooLarge {
                        len: n,
                        max: MAX_PROOF_HASHES_PER_MSG,
                    });
                }
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.take_array()?);
                }
                DbMsg::Proof(ProofPart::new(piece, first_level, hashes)?)
            }
            cmd::DATA => {
                let piece = r.take_u32()?;
                let offset = r.take_u32()?;
                DbMsg::Data(DataSlice::new(piece, offset, r.take_rest().to_vec())?)
            }
            cmd::END => DbMsg::End(DbEnd {
                reason: DbEndReason(r.take_u8()?),
                sentence: r.take_string16()?,
            }),
            cmd::INFO => DbMsg::Info(DbInfo {
                hash_name: HashName(r.take_array()?),
                completion: Completion::from_wire(r.take_u8()?)?,
                flags: InfoFlags(r.take_u8()?),
            }),
            cmd::SOURCE => DbMsg::Source(DbSource {
                hash_name: HashName(r.take_array()?),
                kind: SourceKind(r.take_u8()?),
                uri: r.take_string16()?,
            }),
            RelayCmd(cmd) => DbMsg::Unrecognized {
                cmd,
                data: r.take_rest_bounded()?,
            },
        };
        r.should_be_exhausted()?;
        Ok(msg)
    }

    /// The relay message that carries this one (`RelayMsg::Unrecognized` with the `DB_*` code,
    /// until the onion layer's `RelayMsg` grows a variant of its own).
    pub fn to_relay(&self) -> RelayMsg {
        let (cmd, data) = self.encode();
        RelayMsg::Unrecognized { cmd: cmd.0, data }
    }

    /// The `DB_*` message inside a relay message: `None` when it is not in the `DB_*` range,
    /// `Some(Err)` when it is but does not decode.
    pub fn from_relay(msg: &RelayMsg) -> Option<Result<DbMsg, WireError>> {
        match msg {
            RelayMsg::Unrecognized { cmd, data } if Self::is_db_cmd(RelayCmd(*cmd)) => {
                Some(Self::decode(RelayCmd(*cmd), data))
            }
            _ => None,
        }
    }
}

// The largest body of each variant fits one relay cell, so `DbMsg::encode` cannot fail.
const QUERY_LEN: usize = HASH_NAME_LEN + 4 + 4 + 2 + 1;
const _: () = assert!(QUERY_LEN <= RELAY_DATA_LEN);
const _: () = assert!(DESCRIPTOR_HEADER_LEN + MAX_DESCRIPTOR_SLICE <= RELAY_DATA_LEN);
const _: () = assert!(PROOF_HEADER_LEN + MAX_PROOF_HASHES_PER_MSG * HASH_LEN <= RELAY_DATA_LEN);
const _: () = assert!(DATA_HEADER_LEN + MAX_DATA_SLICE <= RELAY_DATA_LEN);
const _: () = assert!(1 + 2 + MAX_END_SENTENCE <= RELAY_DATA_LEN); // END
const _: () = assert!(HASH_NAME_LEN + 2 <= RELAY_DATA_LEN); // INFO
const _: () = assert!(HASH_NAME_LEN + 1 + 2 + MAX_SOURCE_URI <= RELAY_DATA_LEN); // SOURCE

/// Version byte of [`ContentMeta`]'s encoding.
pub const CONTENT_META_V1: u8 = 1;

/// Onionmesh's own content descriptor, the spec's `DB_CONNECTED` answer made self-certifying:
/// `[version u8 = 1][size u64][piece_size u32][root 32][publisher 33][mime str16][name str16]
/// [signature 64]`. The signature (ECDSA secp256k1 over SHA-256, by `publisher`) covers every
/// byte before it ([`ContentMeta::signed_bytes`]); the content's hash_name is the first 160
/// bits of SHA-256 of the whole encoding. At most 446 bytes, so it fits one `DB_CONNECTED`.
///
/// This type only guarantees the *shape* (lengths, UTF-8, version). The signature, the piece
/// size range and the hash_name are checked by `onionmesh-ordb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMeta {
    size: u64,
    piece_size: u32,
    root: [u8; HASH_LEN],
    publisher: PublicKeyBytes,
    mime: BoundedString<MAX_MIME>,
    name: BoundedString<MAX_NAME>,
    signature: SignatureBytes,
}

impl ContentMeta {
    /// Errors: [`WireError::LengthTooLarge`] for a MIME type over [`MAX_MIME`] or a name over
    /// [`MAX_NAME`] bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        size: u64,
        piece_size: u32,
        root: [u8; HASH_LEN],
        publisher: PublicKeyBytes,
        mime: String,
        name: String,
        signature: SignatureBytes,
    ) -> Result<Self, WireError> {
        Ok(ContentMeta {
            size,
            piece_size,
            root,
            publisher,
            mime: BoundedString::new(mime)?,
            name: BoundedString::new(name)?,
            signature,
        })
    }

    /// Total content size, bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Bytes per piece (the last piece may be shorter).
    pub fn piece_size(&self) -> u32 {
        self.piece_size
    }
    /// Merkle root over the pieces.
    pub fn root(&self) -> &[u8; HASH_LEN] {
        &self.root
    }
    /// The publisher's per-content public key (SEC1 compressed).
    pub fn publisher(&self) -> &PublicKeyBytes {
        &self.publisher
    }
    pub fn mime(&self) -> &str {
        &self.mime
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn signature(&self) -> &SignatureBytes {
        &self.signature
    }
    /// Replace the signature (the publisher signs [`ContentMeta::signed_bytes`] and then sets it).
    pub fn set_signature(&mut self, signature: SignatureBytes) {
        self.signature = signature;
    }

    fn write_unsigned(&self, w: &mut Writer) {
        w.put_u8(CONTENT_META_V1);
        w.put_u64(self.size);
        w.put_u32(self.piece_size);
        w.put_bytes(&self.root);
        w.put_bytes(&self.publisher);
        w.put_str16(&self.mime);
        w.put_str16(&self.name);
    }

    /// The bytes the signature covers: the encoding up to, not including, the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w);
        w.into_vec()
    }

    /// The canonical encoding (the descriptor bytes hashed into the hash_name).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_unsigned(&mut w);
        w.put_bytes(&self.signature);
        w.into_vec()
    }

    /// Decode a whole descriptor; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<ContentMeta, WireError> {
        if bytes.len() > MAX_CONTENT_META {
            return Err(WireError::FrameTooLarge {
                len: bytes.len(),
                max: MAX_CONTENT_META,
            });
        }
        let mut r = Reader::new(bytes);
        if r.take_u8().map_err(|_| WireError::Empty)? != CONTENT_META_V1 {
            return Err(WireError::BadValue("unknown content metadata version"));
        }
        let meta = ContentMeta {
            size: r.take_u64()?,
            piece_size: r.take_u32()?,
            root: r.take_array()?,
            publisher: r.take_array()?,
            mime: r.take_string16()?,
            name: r.take_string16()?,
            signature: r.take_array()?,
        };
        r.should_be_exhausted()?;
        Ok(meta)
    }
}

/// Largest encoded [`ContentMeta`].
pub const MAX_CONTENT_META: usize =
    1 + 8 + 4 + HASH_LEN + PUBKEY_LEN + 2 + MAX_MIME + 2 + MAX_NAME + SIG_LEN;

const _: () = assert!(MAX_CONTENT_META <= MAX_DESCRIPTOR_SLICE);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_hash_name() -> impl Strategy<Value = HashName> {
        any::<[u8; 20]>().prop_map(HashName)
    }

    fn arb_completion() -> impl Strategy<Value = Completion> {
        prop_oneof![
            Just(Completion::Quarter),
            Just(Completion::Half),
            Just(Completion::ThreeQuarters),
            Just(Completion::Full)
        ]
    }

    fn arb_msg() -> impl Strategy<Value = DbMsg> {
        prop_oneof![
            (
                arb_hash_name(),
                any::<u32>(),
                any::<u32>(),
                any::<u16>(),
                any::<u8>()
            )
                .prop_map(|(hash_name, piece, offset, count, counter)| DbMsg::Query(
                    DbQuery {
                        hash_name,
                        piece,
                        offset,
                        count,
                        counter
                    }
                )),
            (
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_DESCRIPTOR_SLICE),
                0u32..10_000,
                0u32..10_000
            )
                .prop_map(|(k, bytes, offset, extra)| {
                    let total = offset + bytes.len() as u32 + extra;
                    DbMsg::Connected(
                        DescriptorSlice::new(DescriptorKind(k), total, offset, bytes).unwrap(),
                    )
                }),
            (
                any::<u32>(),
                0u8..=17,
                proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF_HASHES_PER_MSG)
            )
                .prop_map(|(p, l, h)| DbMsg::Proof(ProofPart::new(p, l, h).unwrap())),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_DATA_SLICE)
            )
                .prop_map(|(p, o, d)| DbMsg::Data(DataSlice::new(p, o, d).unwrap())),
            (any::<u8>(), "\\PC{0,60}")
                .prop_map(|(r, s)| DbMsg::End(DbEnd::with_sentence(DbEndReason(r), &s))),
            (arb_hash_name(), arb_completion(), any::<u8>()).prop_map(|(h, c, f)| DbMsg::Info(
                DbInfo {
                    hash_name: h,
                    completion: c,
                    flags: InfoFlags(f)
                }
            )),
            (arb_hash_name(), any::<u8>(), "\\PC{0,120}").prop_map(|(h, k, uri)| DbMsg::Source(
                DbSource {
                    hash_name: h,
                    kind: SourceKind(k),
                    uri: SourceUri::lossy(&uri)
                }
            )),
            (
                0x77u8..=0x7f,
                proptest::collection::vec(any::<u8>(), 0..=RELAY_DATA_LEN)
            )
                .prop_map(|(cmd, data)| DbMsg::Unrecognized {
                    cmd,
                    data: RelayData::new(data).unwrap()
                }),
        ]
    }

    fn arb_meta() -> impl Strategy<Value = ContentMeta> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            any::<[u8; 33]>(),
            "[a-z/0-9.+-]{0,100}",
            "\\PC{0,50}",
            proptest::collection::vec(any::<u8>(), 64),
        )
            .prop_map(|(size, ps, root, pk, mime, name, sig)| {
                ContentMeta::new(size, ps, root, pk, mime, name, sig.try_into().unwrap()).unwrap()
            })
    }

    #[test]
    fn web_meta_round_trips_and_refuses_a_trailing_byte() {
        let m = WebMeta {
            size: 10 << 20,
            mime: BoundedString::new("video/webm").unwrap(),
            url: SourceUri::new("http://127.0.0.1:9/a.webm").unwrap(),
        };
        let mut b = m.encode();
        assert_eq!(WebMeta::decode(&b).unwrap(), m);
        b.push(0);
        assert!(WebMeta::decode(&b).is_err());
        assert!(WebMeta::decode(&[2]).is_err());
    }

    #[test]
    fn a_uri_too_long_for_one_cell_is_refused_not_cut() {
        assert!(SourceUri::new("h".repeat(MAX_SOURCE_URI)).is_ok());
        assert!(SourceUri::new("h".repeat(MAX_SOURCE_URI + 1)).is_err());
        assert_ne!(
            DbSource::web_hash_name("http://a/x"),
            DbSource::web_hash_name("http://a/y")
        );
    }

    proptest! {
        #[test]
        fn db_round_trip(msg in arb_msg()) {
            let (cmd, data) = msg.encode();
            prop_assert!(data.len() <= RELAY_DATA_LEN);
            prop_assert_eq!(DbMsg::decode(cmd, &data).unwrap(), msg.clone());
            // Through a relay message as well.
            prop_assert_eq!(DbMsg::from_relay(&msg.to_relay()).unwrap().unwrap(), msg);
        }

        #[test]
        fn db_arbitrary_data_never_panics(cmd in 0x70u8..=0x7f, data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(msg) = DbMsg::decode(RelayCmd(cmd), &data) {
                let (c, d) = msg.encode();
                prop_assert_eq!(c.0, cmd);
                prop_assert_eq!(d.as_slice(), &data[..]);
            }
        }

        #[test]
        fn meta_round_trip(meta in arb_meta()) {
            let bytes = meta.encode();
            prop_assert!(bytes.len() <= MAX_CONTENT_META);
            prop_assert_eq!(ContentMeta::decode(&bytes).unwrap(), meta.clone());
            prop_assert_eq!(&bytes[..bytes.len() - SIG_LEN], &meta.signed_bytes()[..]);
            // Every truncation fails.
            for cut in 0..bytes.len() {
                prop_assert!(ContentMeta::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn meta_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = ContentMeta::decode(&bytes) {
                prop_assert_eq!(m.encode(), bytes);
            }
        }

        #[test]
        fn splits_reassemble(desc in proptest::collection::vec(any::<u8>(), 0..3000),
                             path in proptest::collection::vec(any::<[u8; 32]>(), 0..=32),
                             piece in proptest::collection::vec(any::<u8>(), 0..5000),
                             from in 0u32..6000) {
            let slices = DescriptorSlice::split(DescriptorKind::ONIONMESH_V1, &desc).unwrap();
            let mut back = Vec::new();
            for s in &slices {
                prop_assert_eq!(s.offset() as usize, back.len());
                prop_assert_eq!(s.total() as usize, desc.len());
                back.extend_from_slice(s.bytes());
            }
            prop_assert_eq!(back, desc);

            let parts = ProofPart::split(9, &path).unwrap();
            let mut hashes = Vec::new();
            for p in &parts {
                prop_assert_eq!(usize::from(p.first_level()), hashes.len());
                hashes.extend_from_slice(p.hashes());
            }
            prop_assert_eq!(hashes, path);

            let slices = DataSlice::split(4, from, &piece);
            let start = (from as usize).min(piece.len());
            let mut back = Vec::new();
            for s in &slices {
                prop_assert_eq!(s.offset() as usize, start + back.len());
                prop_assert!(s.data().len() <= MAX_DATA_SLICE);
                back.extend_from_slice(s.data());
            }
            prop_assert_eq!(&back[..], &piece[start..]);
        }
    }

    #[test]
    fn layout_vector() {
        let q = DbMsg::Query(DbQuery {
            hash_name: HashName([0xab; 20]),
            piece: 2,
            offset: 490,
            count: 3,
            counter: 1,
        });
        let (cmd, data) = q.encode();
        assert_eq!(cmd, RelayCmd(0x70));
        assert_eq!(
            hex::encode(&data),
            format!("{}{}", "ab".repeat(20), "00000002000001ea000301")
        );
        let d = DbMsg::Data(DataSlice::new(1, 2, vec![0xee]).unwrap());
        assert_eq!(hex::encode(d.encode().1), "0000000100000002ee");
        let e = DbMsg::End(DbEnd::new(DbEndReason::LOOP, "loop").unwrap());
        assert_eq!(
            hex::encode(e.encode().1),
            "030004".to_owned() + &hex::encode("loop")
        );
        let i = DbMsg::Info(DbInfo {
            hash_name: HashName([1; 20]),
            completion: Completion::Full,
            flags: InfoFlags::FACILITATOR,
        });
        assert_eq!(
            hex::encode(i.encode().1),
            format!("{}0301", "01".repeat(20))
        );
    }

    #[test]
    fn content_meta_vector() {
        let meta = ContentMeta::new(
            0x1_0000,
            0x4000,
            [0x11; 32],
            [0x02; 33],
            "a/b".into(),
            "n".into(),
            [0x33; 64],
        )
        .unwrap();
        let expected = format!(
            "01{}{}{}{}{}{}{}",
            "0000000000010000",
            "00004000",
            "11".repeat(32),
            "02".repeat(33),
            "0003612f62",
            "00016e",
            "33".repeat(64)
        );
        assert_eq!(hex::encode(meta.encode()), expected);
        assert_eq!(meta.signed_bytes().len(), meta.encode().len() - SIG_LEN);
        // An unknown version is refused.
        let mut bytes = meta.encode();
        bytes[0] = 2;
        assert!(matches!(
            ContentMeta::decode(&bytes),
            Err(WireError::BadValue(_))
        ));
        assert_eq!(ContentMeta::decode(&[]), Err(WireError::Empty));
    }

    #[test]
    fn malformed_inputs_are_refused() {
        // A query one byte short, and one byte long.
        let (cmd, data) = DbMsg::Query(DbQuery {
            hash_name: HashName([0; 20]),
            piece: 0,
            offset: 0,
            count: 0,
            counter: 0,
        })
        .encode();
        let mut data = data.into_vec();
        assert!(matches!(
            DbMsg::decode(cmd, &data[..data.len() - 1]),
            Err(WireError::Truncated { .. })
        ));
        data.push(0);
        assert_eq!(DbMsg::decode(cmd, &data), Err(WireError::TrailingBytes(1)));
        // A proof claiming 16 hashes.
        let mut p = vec![0, 0, 0, 1, 0, 16];
        p.extend(vec![0u8; 16 * 32]);
        assert!(matches!(
            DbMsg::decode(cmd::PROOF, &p[..RELAY_DATA_LEN]),
            Err(WireError::LengthTooLarge { len: 16, .. })
        ));
        // A proof claiming 2 hashes and carrying 1.
        let mut p = vec![0, 0, 0, 1, 0, 2];
        p.extend([0u8; 32]);
        assert!(matches!(
            DbMsg::decode(cmd::PROOF, &p),
            Err(WireError::Truncated { .. })
        ));
        // A proof past level 32.
        let mut p = vec![0, 0, 0, 1, 30, 3];
        p.extend([0u8; 96]);
        assert!(matches!(
            DbMsg::decode(cmd::PROOF, &p),
            Err(WireError::LengthTooLarge { len: 33, .. })
        ));
        // A descriptor slice ending past its total, and a total over the maximum.
        let mut c = vec![1, 0, 0, 0, 4, 0, 0, 0, 2];
        c.extend([0u8; 3]);
        assert!(matches!(
            DbMsg::decode(cmd::CONNECTED, &c),
            Err(WireError::BadValue(_))
        ));
        let c = [1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            DbMsg::decode(cmd::CONNECTED, &c),
            Err(WireError::LengthTooLarge { .. })
        ));
        // A completion of 4, a DB_END sentence over the limit, bad UTF-8.
        let mut i = vec![0u8; 20];
        i.extend([4, 0]);
        assert!(DbMsg::decode(cmd::INFO, &i).is_err());
        let mut e = vec![0, 0, 201];
        e.extend([b'a'; 201]);
        assert!(matches!(
            DbMsg::decode(cmd::END, &e),
            Err(WireError::LengthTooLarge { .. })
        ));
        assert_eq!(
            DbMsg::decode(cmd::END, &[0, 0, 1, 0xff]),
            Err(WireError::BadUtf8)
        );
        // Data past one cell, a command outside the range, empty bodies.
        assert!(DbMsg::decode(cmd::DATA, &[0u8; RELAY_DATA_LEN + 1]).is_err());
        assert!(DbMsg::decode(RelayCmd(0x64), &[]).is_err());
        for c in [
            cmd::QUERY,
            cmd::CONNECTED,
            cmd::PROOF,
            cmd::DATA,
            cmd::END,
            cmd::INFO,
        ] {
            assert!(DbMsg::decode(c, &[]).is_err(), "{c:?}");
        }
        // Non-DB relay messages are not ours.
        assert!(DbMsg::from_relay(&RelayMsg::Data(RelayData::from_slice(&[1]).unwrap())).is_none());
    }

    #[test]
    fn constructors_fail_instead_of_truncating() {
        assert!(DataSlice::new(0, 0, vec![0; MAX_DATA_SLICE + 1]).is_err());
        assert!(ProofPart::new(0, 0, vec![[0; 32]; MAX_PROOF_HASHES_PER_MSG + 1]).is_err());
        assert!(ProofPart::new(0, 31, vec![[0; 32]; 2]).is_err());
        assert!(ProofPart::split(0, &[[0; 32]; 33]).is_err());
        assert!(DescriptorSlice::new(DescriptorKind(1), 2, 0, vec![0; 3]).is_err());
        assert!(
            DescriptorSlice::split(DescriptorKind(1), &vec![0; MAX_DESCRIPTOR_LEN + 1]).is_err()
        );
        assert!(DbEnd::new(DbEndReason::UNAVAILABLE, "x".repeat(MAX_END_SENTENCE)).is_ok());
        assert!(DbEnd::new(DbEndReason::UNAVAILABLE, "x".repeat(MAX_END_SENTENCE + 1)).is_err());
        assert_eq!(
            DbEnd::with_sentence(DbEndReason::UNAVAILABLE, &"é".repeat(150))
                .sentence()
                .len(),
            200
        );
        let meta = |mime: usize, name: usize| {
            ContentMeta::new(
                0,
                0,
                [0; 32],
                [0; 33],
                "m".repeat(mime),
                "n".repeat(name),
                [0; 64],
            )
        };
        assert!(meta(MAX_MIME, MAX_NAME).is_ok());
        assert!(meta(MAX_MIME + 1, 0).is_err());
        assert!(meta(0, MAX_NAME + 1).is_err());
    }

    #[test]
    fn completion_steps() {
        assert_eq!(Completion::from_fraction(0, 100), None);
        assert_eq!(Completion::from_fraction(24, 100), None);
        assert_eq!(
            Completion::from_fraction(25, 100),
            Some(Completion::Quarter)
        );
        assert_eq!(Completion::from_fraction(74, 100), Some(Completion::Half));
        assert_eq!(
            Completion::from_fraction(99, 100),
            Some(Completion::ThreeQuarters)
        );
        assert_eq!(Completion::from_fraction(100, 100), Some(Completion::Full));
        assert_eq!(
            Completion::from_fraction(u64::MAX, u64::MAX),
            Some(Completion::Full)
        );
        assert_eq!(Completion::from_fraction(1, 0), None);
        assert_eq!(Completion::Full.percent(), 100);
        assert_eq!(
            HashName::from_hex(&HashName([0x5a; 20]).to_hex()),
            Some(HashName([0x5a; 20]))
        );
    }
}

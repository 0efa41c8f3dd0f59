//! BitTorrent v1 info dictionaries as content descriptors (issue 10; BEP 3, "info dictionary").
//!
//! A facilitator streams a torrent into the mesh and sends its raw, bencoded info dictionary as
//! the descriptor ([`onionmesh_wire::db::DescriptorKind::BITTORRENT_V1_INFO`]). The requester
//! checks SHA-1(bytes) against the hash_name it asked for (the v1 infohash), parses the
//! dictionary ([`TorrentInfo::parse`]) and then checks SHA-1 of every whole piece against the
//! `pieces` list. The content's byte space is the torrent's: its files concatenated in order, so
//! one file of a multi-file torrent is a byte range ([`TorrentFile`]) and the pieces that
//! overlap it ([`TorrentInfo::file_pieces`]) are what fetching that file costs (the boundary
//! pieces whole, neighbouring files' bytes included, so that they can be checked).
//!
//! Limits, and why:
//! - the dictionary is at most [`onionmesh_wire::db::MAX_DESCRIPTOR_LEN`] (8 MiB, the wire's
//!   bound) and nests at most [`MAX_DEPTH`] levels (bendy's decoder enforces it without
//!   recursing, so a hostile dictionary cannot exhaust the stack);
//! - `piece length` is a power of two from [`MIN_TORRENT_PIECE`] (16 KiB) to
//!   [`MAX_TORRENT_PIECE`] (4 MiB): a piece is buffered whole before its check, so the bound is
//!   what one unverified piece per source can cost a page;
//! - at most [`MAX_TORRENT_FILES`] files, each path at most [`MAX_PATH_LEN`] bytes;
//! - keys must be sorted, as BEP 3 requires (bendy refuses a non-canonical dictionary).

use bendy::decoding::{Decoder, Object};
use onionmesh_wire::db::{HashName, HASH_NAME_LEN};
use sha1::{Digest, Sha1};
use thiserror::Error;

/// Smallest `piece length` accepted: 16 KiB (BEP 3's block size).
pub const MIN_TORRENT_PIECE: u32 = 16 * 1024;
/// Largest `piece length` accepted: 4 MiB. Larger pieces are refused with
/// [`TorrentError::PieceLength`].
pub const MAX_TORRENT_PIECE: u32 = 4 * 1024 * 1024;
/// Most files in one torrent.
pub const MAX_TORRENT_FILES: usize = 100_000;
/// Longest path of one file (its components joined with `/`), bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Deepest nesting of lists and dictionaries read.
pub const MAX_DEPTH: usize = 16;
/// Bytes of one SHA-1 hash.
pub const SHA1_LEN: usize = 20;

/// Why an info dictionary was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TorrentError {
    #[error("the torrent's info dictionary is not valid bencode: {0}")]
    Bencode(String),
    #[error("the torrent's info dictionary lacks `{0}`")]
    Missing(&'static str),
    #[error("the torrent's info dictionary has a bad `{0}`")]
    BadField(&'static str),
    #[error("the torrent's pieces are {0} bytes; only powers of two from 16 KiB to 4 MiB are accepted (a piece is held in memory until its SHA-1 is checked)")]
    PieceLength(u64),
    #[error("the torrent's `pieces` list has {got} hashes; its size needs {expected}")]
    PieceCount { expected: u64, got: u64 },
    #[error("the torrent has no data")]
    Empty,
    #[error("the torrent has more than {max} files", max = MAX_TORRENT_FILES)]
    TooManyFiles,
}

impl From<bendy::decoding::Error> for TorrentError {
    fn from(e: bendy::decoding::Error) -> Self {
        TorrentError::Bencode(e.to_string())
    }
}

/// One file of a torrent: a byte range of the torrent's byte space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// Path inside the torrent, components joined with `/` (for a single-file torrent, its
    /// `name`). Not UTF-8 bytes are replaced (U+FFFD).
    pub path: String,
    /// First byte in the torrent's byte space.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

/// A parsed, checked info dictionary. Accessors cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentInfo {
    encoded: Vec<u8>,
    hash_name: HashName,
    name: String,
    piece_length: u32,
    hashes: Vec<[u8; SHA1_LEN]>,
    size: u64,
    files: Vec<TorrentFile>,
}

/// The v1 infohash of info dictionary bytes: SHA-1 of them (BEP 3).
pub fn infohash(info: &[u8]) -> HashName {
    let d = Sha1::digest(info);
    let mut out = [0u8; HASH_NAME_LEN];
    out.copy_from_slice(&d);
    HashName(out)
}

fn int(o: Object<'_, '_>, field: &'static str) -> Result<u64, TorrentError> {
    let s = o
        .try_into_integer()
        .map_err(|_| TorrentError::BadField(field))?;
    s.parse::<u64>().map_err(|_| TorrentError::BadField(field))
}

fn bytes<'s>(o: Object<'_, 's>, field: &'static str) -> Result<&'s [u8], TorrentError> {
    o.try_into_bytes()
        .map_err(|_| TorrentError::BadField(field))
}

impl TorrentInfo {
    /// Parse and check raw info dictionary bytes (the caller checks the infohash: see
    /// [`infohash`]). Errors: [`TorrentError`], one sentence each.
    pub fn parse(info: &[u8]) -> Result<TorrentInfo, TorrentError> {
        let mut dec = Decoder::new(info).with_max_depth(MAX_DEPTH);
        let mut name = None;
        let mut piece_length = None;
        let mut pieces: Option<&[u8]> = None;
        let mut length = None;
        let mut files: Option<Vec<(String, u64)>> = None;
        {
            let Some(Object::Dict(mut dict)) = dec.next_object()? else {
                return Err(TorrentError::BadField("info"));
            };
            while let Some((key, value)) = dict.next_pair()? {
                match key {
                    b"name" => name = Some(String::from_utf8_lossy(bytes(value, "name")?).into()),
                    b"piece length" => piece_length = Some(int(value, "piece length")?),
                    b"pieces" => pieces = Some(bytes(value, "pieces")?),
                    b"length" => length = Some(int(value, "length")?),
                    b"files" => files = Some(Self::parse_files(value)?),
                    _ => {} // dropping the value skips it (and checks its structure)
                }
            }
        }
        if dec.next_object()?.is_some() {
            return Err(TorrentError::Bencode(
                "bytes follow the info dictionary".into(),
            ));
        }
        let name: String = name.ok_or(TorrentError::Missing("name"))?;
        let pl = piece_length.ok_or(TorrentError::Missing("piece length"))?;
        if !(u64::from(MIN_TORRENT_PIECE)..=u64::from(MAX_TORRENT_PIECE)).contains(&pl)
            || !pl.is_power_of_two()
        {
            return Err(TorrentError::PieceLength(pl));
        }
        let pieces = pieces.ok_or(TorrentError::Missing("pieces"))?;
        if pieces.len() % SHA1_LEN != 0 {
            return Err(TorrentError::BadField("pieces"));
        }
        let list = match (length, files) {
            (Some(len), None) => vec![TorrentFile {
                path: name.clone(),
                offset: 0,
                length: len,
            }],
            (None, Some(fs)) => {
                let mut offset = 0u64;
                let mut out = Vec::with_capacity(fs.len());
                for (path, length) in fs {
                    out.push(TorrentFile {
                        path,
                        offset,
                        length,
                    });
                    offset = offset
                        .checked_add(length)
                        .ok_or(TorrentError::BadField("length"))?;
                }
                out
            }
            (None, None) => return Err(TorrentError::Missing("length")),
            (Some(_), Some(_)) => return Err(TorrentError::BadField("files")),
        };
        let size = list.last().map_or(0, |f| f.offset + f.length);
        if size == 0 {
            return Err(TorrentError::Empty);
        }
        let expected = size.div_ceil(pl);
        let got = (pieces.len() / SHA1_LEN) as u64;
        if expected != got {
            return Err(TorrentError::PieceCount { expected, got });
        }
        let hashes = pieces
            .chunks_exact(SHA1_LEN)
            .map(|c| {
                let mut h = [0u8; SHA1_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(TorrentInfo {
            encoded: info.to_vec(),
            hash_name: infohash(info),
            name,
            piece_length: pl as u32,
            hashes,
            size,
            files: list,
        })
    }

    /// `files`: a list of `{ length, path: [component, ...] }`.
    fn parse_files(value: Object<'_, '_>) -> Result<Vec<(String, u64)>, TorrentError> {
        let mut list = value
            .try_into_list()
            .map_err(|_| TorrentError::BadField("files"))?;
        let mut out = Vec::new();
        while let Some(f) = list.next_object()? {
            if out.len() >= MAX_TORRENT_FILES {
                return Err(TorrentError::TooManyFiles);
            }
            let mut d = f
                .try_into_dictionary()
                .map_err(|_| TorrentError::BadField("files"))?;
            let (mut length, mut path) = (None, None);
            while let Some((k, v)) = d.next_pair()? {
                match k {
                    b"length" => length = Some(int(v, "length")?),
                    b"path" => {
                        let mut parts = v
                            .try_into_list()
                            .map_err(|_| TorrentError::BadField("path"))?;
                        let mut p = String::new();
                        while let Some(c) = parts.next_object()? {
                            let c = String::from_utf8_lossy(bytes(c, "path")?);
                            if !p.is_empty() {
                                p.push('/');
                            }
                            p.push_str(&c);
                            if p.len() > MAX_PATH_LEN {
                                return Err(TorrentError::BadField("path"));
                            }
                        }
                        if p.is_empty() {
                            return Err(TorrentError::BadField("path"));
                        }
                        path = Some(p);
                    }
                    _ => {}
                }
            }
            out.push((
                path.ok_or(TorrentError::Missing("path"))?,
                length.ok_or(TorrentError::Missing("length"))?,
            ));
        }
        if out.is_empty() {
            return Err(TorrentError::BadField("files"));
        }
        Ok(out)
    }

    /// The raw info dictionary (what `DB_CONNECTED` carries and the store keeps).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
    /// The v1 infohash.
    pub fn hash_name(&self) -> HashName {
        self.hash_name
    }
    /// The torrent's `name` (the file name of a single-file torrent, the folder of a
    /// multi-file one).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `piece length`, bytes.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }
    pub fn piece_count(&self) -> u32 {
        self.hashes.len() as u32
    }
    /// Bytes of all files together.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// The files, in order (one entry for a single-file torrent).
    pub fn files(&self) -> &[TorrentFile] {
        &self.files
    }
    /// True for a torrent with a `files` list (even of one file) or more than one file.
    pub fn is_multi_file(&self) -> bool {
        self.files.len() > 1 || self.files.first().is_some_and(|f| f.path != self.name)
    }

    /// The pieces overlapping file `index` (first, end exclusive); `None` for no such file.
    /// An empty file has no piece.
    pub fn file_pieces(&self, index: usize) -> Option<(u32, u32)> {
        let f = self.files.get(index)?;
        if f.length == 0 {
            let p = (f.offset / u64::from(self.piece_length)) as u32;
            return Some((p, p));
        }
        let pl = u64::from(self.piece_length);
        let first = f.offset / pl;
        let last = (f.offset + f.length - 1) / pl;
        Some((first as u32, last as u32 + 1))
    }

    /// Whether `bytes` is piece `index` (SHA-1 of the whole piece equals the listed hash).
    pub fn piece_matches(&self, index: u32, bytes: &[u8]) -> bool {
        self.hashes
            .get(index as usize)
            .is_some_and(|h| Sha1::digest(bytes)[..] == h[..])
    }
}

/// Build the info dictionary of a torrent over `data` (the files concatenated in order):
/// `files` is `[(path, length)]`, one entry and no `/` making a single-file torrent named
/// after it; paths split on `/`. For tools and tests (a real torrent's dictionary comes from
/// a `.torrent` file or a facilitator). Panics if the lengths do not add up to `data.len()`.
pub fn build_info(name: &str, files: &[(&str, u64)], piece_length: u32, data: &[u8]) -> Vec<u8> {
    use bendy::encoding::Encoder;
    assert_eq!(
        files.iter().map(|f| f.1).sum::<u64>(),
        data.len() as u64,
        "file lengths must add up to the data"
    );
    let pieces: Vec<u8> = data
        .chunks(piece_length as usize)
        .flat_map(|c| Sha1::digest(c).to_vec())
        .collect();
    let single = files.len() == 1 && !files[0].0.contains('/');
    let mut e = Encoder::new();
    let r = e.emit_and_sort_dict(|d| {
        if single {
            d.emit_pair(b"length", files[0].1)?;
        } else {
            d.emit_pair_with(b"files", |e| {
                e.emit_list(|e| {
                    for (path, len) in files {
                        e.emit_and_sort_dict(|f| {
                            f.emit_pair(b"length", *len)?;
                            f.emit_pair_with(b"path", |e| {
                                e.emit_list(|e| {
                                    for part in path.split('/') {
                                        e.emit_str(part)?;
                                    }
                                    Ok(())
                                })
                            })
                        })?;
                    }
                    Ok(())
                })
            })?;
        }
        d.emit_pair(b"name", name)?;
        d.emit_pair(b"piece length", piece_length)?;
        d.emit_pair_with(b"pieces", |e| e.emit_bytes(&pieces))
    });
    // Cannot fail: the nesting is 4 deep, far below the encoder's bound.
    r.expect("an info dictionary encodes");
    e.get_output().expect("an info dictionary encodes")
}

/// A MIME type for a file name, from its extension (a small table of what a page can play or
/// show; anything else is `application/octet-stream`).
pub fn mime_for(path: &str) -> &'static str {
    let ext = path
        .rsplit('/')
        .next()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "webm" => "video/webm",
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "ogv" => "video/ogg",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "weba" => "audio/webm",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "nfo" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_single_file_torrent_parses_and_checks_its_pieces() {
        let d = data(100_000);
        let info = build_info("a.webm", &[("a.webm", 100_000)], 32 * 1024, &d);
        let t = TorrentInfo::parse(&info).unwrap();
        assert_eq!(t.size(), 100_000);
        assert_eq!(t.piece_count(), 4);
        assert_eq!(t.name(), "a.webm");
        assert!(!t.is_multi_file());
        assert_eq!(t.files().len(), 1);
        assert_eq!(t.file_pieces(0), Some((0, 4)));
        assert_eq!(t.hash_name(), infohash(&info));
        assert!(t.piece_matches(3, &d[3 * 32768..]));
        let mut bad = d[..32768].to_vec();
        bad[5] ^= 1;
        assert!(!t.piece_matches(0, &bad));
        assert_eq!(mime_for(&t.files()[0].path), "video/webm");
    }

    #[test]
    fn a_multi_file_torrent_maps_files_to_pieces() {
        // Files of 40 000, 10 and 60 000 bytes over 16 KiB pieces.
        let d = data(100_010);
        let info = build_info(
            "album",
            &[("cd1/x.mp3", 40_000), ("readme.txt", 10), ("y.ogg", 60_000)],
            16 * 1024,
            &d,
        );
        let t = TorrentInfo::parse(&info).unwrap();
        assert!(t.is_multi_file());
        let f = t.files();
        assert_eq!(f[0].path, "cd1/x.mp3");
        assert_eq!((f[1].offset, f[1].length), (40_000, 10));
        assert_eq!((f[2].offset, f[2].length), (40_010, 60_000));
        // 40 000 / 16 384 = 2.44: file 0 is in pieces 0..=2; file 1 (40 000..40 010) in piece 2;
        // file 2 (40 010..100 010) in pieces 2..=6.
        assert_eq!(t.file_pieces(0), Some((0, 3)));
        assert_eq!(t.file_pieces(1), Some((2, 3)));
        assert_eq!(t.file_pieces(2), Some((2, 7)));
        assert_eq!(t.file_pieces(3), None);
        assert_eq!(t.piece_count(), 7);
    }

    #[test]
    fn bad_dictionaries_are_refused_with_a_reason() {
        let d = data(50_000);
        // Piece length out of range or not a power of two.
        for pl in [8 * 1024, 8 * 1024 * 1024, 48 * 1024] {
            let info = build_info("a", &[("a", 50_000)], pl, &d);
            assert_eq!(
                TorrentInfo::parse(&info),
                Err(TorrentError::PieceLength(u64::from(pl))),
                "{pl}"
            );
        }
        let info = build_info("a", &[("a", 50_000)], 16 * 1024, &d);
        // A trailing byte, a cut, garbage.
        let mut long = info.clone();
        long.push(b'e');
        assert!(TorrentInfo::parse(&long).is_err());
        assert!(TorrentInfo::parse(&info[..info.len() - 1]).is_err());
        assert!(TorrentInfo::parse(b"i3e").is_err());
        // A deep nesting is refused, not followed.
        let mut deep = b"d1:x".to_vec();
        deep.extend(std::iter::repeat_n(b'l', 100_000));
        assert!(matches!(
            TorrentInfo::parse(&deep),
            Err(TorrentError::Bencode(_))
        ));
        // A size the pieces do not cover.
        let at = info.windows(7).position(|w| w == b"i50000e").unwrap();
        let mut lying = info.clone();
        lying[at..at + 7].copy_from_slice(b"i90000e");
        assert_eq!(
            TorrentInfo::parse(&lying),
            Err(TorrentError::PieceCount {
                expected: 6,
                got: 4
            })
        );
    }
}

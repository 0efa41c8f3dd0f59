//! Self-certifying content: the verified descriptor of a content and the check of each piece.
//!
//! A content is named by its hash_name, the first 160 bits of SHA-256 of its descriptor bytes.
//! For onionmesh's own content the descriptor is an encoded [`ContentMeta`] (size, MIME type,
//! name, piece size, Merkle root, the publisher's per-content public key, its signature). So:
//!
//! 1. the requester asks for `hash_name` and gets descriptor bytes: [`Descriptor::verify`]
//!    checks they hash to `hash_name`, decode, carry a piece size in range and a valid
//!    signature; nobody on the path can substitute another content;
//! 2. every piece arrives with its Merkle audit path: [`Descriptor::verify_piece`] checks it
//!    against the root before the piece is stored, relayed or played.
//!
//! The signature adds who-published-it (the same per-content key can sign a later version or a
//! live stream's timestamps) on top of what the hash already guarantees.
//!
//! [`Descriptor`] is an enum so other kinds plug in without touching the scheduler or the
//! relay (issue 10):
//!
//! - [`Descriptor::Torrent`]: a BitTorrent v1 torrent a facilitator streams from BitTorrent.
//!   The descriptor is the raw info dictionary (`DescriptorKind::BITTORRENT_V1_INFO`), its
//!   hash_name the v1 infohash (SHA-1 of those bytes), `piece_size` its `piece length`
//!   (16 KiB to 4 MiB, see [`crate::torrent`]), and [`Descriptor::verify_piece`] compares
//!   SHA-1 of the whole piece with the `pieces` list; the proof is empty.
//! - [`Descriptor::Web`]: a web file an exit bridge fetched (`DescriptorKind::WEB_V1`, an
//!   encoded [`WebMeta`]). Its hash_name names the request ([`DbSource::web_hash_name`] of the
//!   URL), not the bytes: the check is that the URL is the one asked for. Pieces are
//!   [`WebMeta::PIECE_SIZE`]; `verify_piece` can check only their length: **the exit is
//!   trusted for the bytes**, as any web fetch trusts its server. The page publishes the bytes
//!   as its own content once whole (a new hash_name, checked as any other from then on).

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use onionmesh_wire::db::{ContentMeta, DbSource, DescriptorKind, HashName, WebMeta, HASH_NAME_LEN};
use onionmesh_wire::{PublicKeyBytes, WireError};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::{self, Hash};
use crate::torrent::{mime_for, TorrentError, TorrentInfo};

/// Smallest piece size a descriptor may declare: 16 KiB.
pub const MIN_PIECE_SIZE: u32 = 16 * 1024;
/// Largest piece size a descriptor may declare: 256 KiB (Chromium's data-channel message limit,
/// and a bound on what one unverified piece can cost a requester).
pub const MAX_PIECE_SIZE: u32 = 256 * 1024;
/// The piece size the publisher uses: 64 KiB. See the crate docs, "Piece size".
pub const DEFAULT_PIECE_SIZE: u32 = 64 * 1024;

/// The hash_name of descriptor bytes: the first 160 bits of their SHA-256.
pub fn hash_name_of(descriptor: &[u8]) -> HashName {
    let digest = Sha256::digest(descriptor);
    let mut out = [0u8; HASH_NAME_LEN];
    out.copy_from_slice(&digest[..HASH_NAME_LEN]);
    HashName(out)
}

/// Domain separation for the metadata signature.
const SIGNING_CONTEXT: &[u8] = b"onionmesh-ordb-content-v1\0";

fn signed_message(meta: &ContentMeta) -> Vec<u8> {
    let mut m = SIGNING_CONTEXT.to_vec();
    m.extend_from_slice(&meta.signed_bytes());
    m
}

/// Why descriptor bytes were refused. Every variant means the source lied or is broken: drop
/// the descriptor and penalise the source.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("the content description does not match the link's hash_name: someone on the path altered it")]
    HashMismatch,
    #[error("the content description is malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("the content description uses an unsupported format (kind {0})")]
    UnsupportedKind(u8),
    #[error("the content description declares pieces of {0} bytes; only powers of two from 16 KiB to 256 KiB are accepted")]
    BadPieceSize(u32),
    #[error("the content description declares more than {max} pieces", max = merkle::MAX_LEAVES)]
    TooManyPieces,
    #[error("the publisher key in the content description is not a valid secp256k1 key")]
    BadPublicKey,
    #[error("the publisher's signature on the content description does not verify")]
    BadSignature,
    #[error(transparent)]
    Torrent(#[from] TorrentError),
    #[error("the web file's description names another URL than the one asked for")]
    WrongUrl,
    #[error("the web file's description declares {0} bytes; at most 1 TiB is accepted")]
    WebTooLarge(u64),
}

/// Why a piece was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PieceError {
    #[error("piece {index} does not exist: the content has {count} pieces")]
    OutOfRange { index: u32, count: u32 },
    #[error("piece {index} has {got} bytes; it should have {expected}")]
    WrongLength {
        index: u32,
        expected: u32,
        got: usize,
    },
    #[error("piece {index} does not match the content's Merkle root: it was altered")]
    ProofMismatch { index: u32 },
    #[error("piece {index} failed its SHA-1 check against the torrent's info: it was altered")]
    Sha1Mismatch { index: u32 },
}

/// Onionmesh signed metadata that passed every check: the hash_name is right, the piece size is
/// in range, the signature verifies. Accessors cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMeta {
    meta: ContentMeta,
    encoded: Vec<u8>,
    hash_name: HashName,
    piece_count: u32,
}

impl VerifiedMeta {
    /// Sign and wrap metadata for a new content (the publisher's side).
    pub fn sign(mut meta: ContentMeta, key: &SigningKey) -> Result<VerifiedMeta, MetaError> {
        let sig: Signature = key.sign(&signed_message(&meta));
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&sig.to_bytes());
        meta.set_signature(bytes);
        Self::check(meta)
    }

    /// Check decoded metadata (signature, piece size, piece count) and compute its hash_name.
    pub fn check(meta: ContentMeta) -> Result<VerifiedMeta, MetaError> {
        let ps = meta.piece_size();
        if !(MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&ps) || !ps.is_power_of_two() {
            return Err(MetaError::BadPieceSize(ps));
        }
        let count = meta.size().div_ceil(u64::from(ps));
        if count > u64::from(merkle::MAX_LEAVES) {
            return Err(MetaError::TooManyPieces);
        }
        let key =
            VerifyingKey::from_sec1_bytes(meta.publisher()).map_err(|_| MetaError::BadPublicKey)?;
        let sig = Signature::from_slice(meta.signature()).map_err(|_| MetaError::BadSignature)?;
        key.verify(&signed_message(&meta), &sig)
            .map_err(|_| MetaError::BadSignature)?;
        let encoded = meta.encode();
        Ok(VerifiedMeta {
            hash_name: hash_name_of(&encoded),
            encoded,
            piece_count: count as u32,
            meta,
        })
    }

    /// Decode and check descriptor bytes that must hash to `expected`.
    pub fn verify(bytes: &[u8], expected: HashName) -> Result<VerifiedMeta, MetaError> {
        if hash_name_of(bytes) != expected {
            return Err(MetaError::HashMismatch);
        }
        Self::check(ContentMeta::decode(bytes)?)
    }

    pub fn meta(&self) -> &ContentMeta {
        &self.meta
    }
    /// The canonical encoding (what `DB_CONNECTED` carries and what is stored).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
    pub fn hash_name(&self) -> HashName {
        self.hash_name
    }
    pub fn publisher(&self) -> &PublicKeyBytes {
        self.meta.publisher()
    }
}

/// Largest web file accepted: 1 TiB (16 Mi pieces of 64 KiB, the bound a piece table may
/// take in memory).
pub const MAX_WEB_SIZE: u64 = 1 << 40;

/// A web file's descriptor whose URL is the one asked for (see the module docs: nothing
/// certifies the bytes but the exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebDescriptor {
    meta: WebMeta,
    encoded: Vec<u8>,
    hash_name: HashName,
    name: String,
}

impl WebDescriptor {
    /// Decode `bytes` and check that its URL hashes to `expected`
    /// ([`DbSource::web_hash_name`]).
    pub fn verify(bytes: &[u8], expected: HashName) -> Result<WebDescriptor, MetaError> {
        let meta = WebMeta::decode(bytes)?;
        if DbSource::web_hash_name(&meta.url) != expected {
            return Err(MetaError::WrongUrl);
        }
        if meta.size > MAX_WEB_SIZE {
            return Err(MetaError::WebTooLarge(meta.size));
        }
        // The file name: the URL's last path segment, without query or fragment.
        let path = meta.url.split(['?', '#']).next().unwrap_or("");
        let path = path.split_once("://").map_or(path, |(_, rest)| rest);
        let name = match path.split_once('/') {
            Some((_, p)) => p.rsplit('/').next().unwrap_or(""),
            None => "",
        };
        let name = if name.is_empty() { "download" } else { name }.to_owned();
        Ok(WebDescriptor {
            encoded: bytes.to_vec(),
            hash_name: expected,
            name,
            meta,
        })
    }
    pub fn meta(&self) -> &WebMeta {
        &self.meta
    }
    /// The URL's last path segment (`download` when it has none).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A verified content descriptor of any supported kind. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Descriptor {
    /// Onionmesh's own signed metadata with a SHA-256 Merkle tree over the pieces.
    Signed(VerifiedMeta),
    /// A BitTorrent v1 info dictionary; pieces checked by SHA-1.
    Torrent(TorrentInfo),
    /// A web file fetched by an exit; pieces checked by length only.
    Web(WebDescriptor),
}

impl Descriptor {
    /// Check descriptor bytes of `kind` against the hash_name that was asked for.
    pub fn verify(
        kind: DescriptorKind,
        bytes: &[u8],
        expected: HashName,
    ) -> Result<Descriptor, MetaError> {
        match kind {
            DescriptorKind::ONIONMESH_V1 => {
                Ok(Descriptor::Signed(VerifiedMeta::verify(bytes, expected)?))
            }
            DescriptorKind::BITTORRENT_V1_INFO => {
                if crate::torrent::infohash(bytes) != expected {
                    return Err(MetaError::HashMismatch);
                }
                Ok(Descriptor::Torrent(TorrentInfo::parse(bytes)?))
            }
            DescriptorKind::WEB_V1 => Ok(Descriptor::Web(WebDescriptor::verify(bytes, expected)?)),
            DescriptorKind(k) => Err(MetaError::UnsupportedKind(k)),
        }
    }

    pub fn kind(&self) -> DescriptorKind {
        match self {
            Descriptor::Signed(_) => DescriptorKind::ONIONMESH_V1,
            Descriptor::Torrent(_) => DescriptorKind::BITTORRENT_V1_INFO,
            Descriptor::Web(_) => DescriptorKind::WEB_V1,
        }
    }
    /// The bytes that travel in `DB_CONNECTED` and hash to the hash_name (for a web file:
    /// whose URL does).
    pub fn encoded(&self) -> &[u8] {
        match self {
            Descriptor::Signed(m) => m.encoded(),
            Descriptor::Torrent(t) => t.encoded(),
            Descriptor::Web(w) => &w.encoded,
        }
    }
    pub fn hash_name(&self) -> HashName {
        match self {
            Descriptor::Signed(m) => m.hash_name(),
            Descriptor::Torrent(t) => t.hash_name(),
            Descriptor::Web(w) => w.hash_name,
        }
    }
    /// Content size, bytes (a torrent's: all its files).
    pub fn size(&self) -> u64 {
        match self {
            Descriptor::Signed(m) => m.meta.size(),
            Descriptor::Torrent(t) => t.size(),
            Descriptor::Web(w) => w.meta.size,
        }
    }
    /// Bytes per piece (all but the last, which may be shorter).
    pub fn piece_size(&self) -> u32 {
        match self {
            Descriptor::Signed(m) => m.meta.piece_size(),
            Descriptor::Torrent(t) => t.piece_length(),
            Descriptor::Web(_) => WebMeta::PIECE_SIZE,
        }
    }
    pub fn piece_count(&self) -> u32 {
        match self {
            Descriptor::Signed(m) => m.piece_count,
            Descriptor::Torrent(t) => t.piece_count(),
            // Cannot truncate: the size is at most MAX_WEB_SIZE (checked in verify).
            Descriptor::Web(w) => w.meta.size.div_ceil(u64::from(WebMeta::PIECE_SIZE)) as u32,
        }
    }
    /// MIME type: the publisher's, the exit's, or for a torrent the one its (first) file's
    /// extension suggests.
    pub fn mime(&self) -> &str {
        match self {
            Descriptor::Signed(m) => m.meta.mime(),
            Descriptor::Torrent(t) => t.files().first().map_or("", |f| mime_for(&f.path)),
            Descriptor::Web(w) => &w.meta.mime,
        }
    }
    /// File name: the publisher's, the torrent's `name`, or the URL's last segment.
    pub fn name(&self) -> &str {
        match self {
            Descriptor::Signed(m) => m.meta.name(),
            Descriptor::Torrent(t) => t.name(),
            Descriptor::Web(w) => w.name(),
        }
    }
    /// The torrent's info, for a torrent.
    pub fn torrent(&self) -> Option<&TorrentInfo> {
        match self {
            Descriptor::Torrent(t) => Some(t),
            _ => None,
        }
    }

    /// Length of piece `index`, or `None` past the end.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        if index >= self.piece_count() {
            return None;
        }
        let start = u64::from(index) * u64::from(self.piece_size());
        Some((self.size() - start).min(u64::from(self.piece_size())) as u32)
    }

    /// The piece holding byte `offset` (the last piece for an offset past the end).
    pub fn piece_at(&self, offset: u64) -> u32 {
        let p = offset / u64::from(self.piece_size());
        (p.min(u64::from(self.piece_count().saturating_sub(1)))) as u32
    }

    /// How many proof hashes piece `index` has (0 past the end, and for torrents and web
    /// files).
    pub fn proof_len(&self, index: u32) -> usize {
        match self {
            Descriptor::Signed(m) => merkle::proof_len(m.piece_count, index),
            Descriptor::Torrent(_) | Descriptor::Web(_) => 0,
        }
    }

    /// Check a whole piece and its proof: against the Merkle root, the torrent's SHA-1 list,
    /// or (a web file) its length only.
    pub fn verify_piece(&self, index: u32, bytes: &[u8], proof: &[Hash]) -> Result<(), PieceError> {
        let expected = self.piece_len(index).ok_or(PieceError::OutOfRange {
            index,
            count: self.piece_count(),
        })?;
        if bytes.len() != expected as usize {
            return Err(PieceError::WrongLength {
                index,
                expected,
                got: bytes.len(),
            });
        }
        match self {
            Descriptor::Signed(m) => {
                let leaf = merkle::leaf_hash(bytes);
                if merkle::verify(m.meta.root(), m.piece_count, index, &leaf, proof) {
                    Ok(())
                } else {
                    Err(PieceError::ProofMismatch { index })
                }
            }
            Descriptor::Torrent(t) => {
                if t.piece_matches(index, bytes) {
                    Ok(())
                } else {
                    Err(PieceError::Sha1Mismatch { index })
                }
            }
            Descriptor::Web(_) => Ok(()),
        }
    }
}

/// One stored piece: its bytes and its Merkle audit path. Storing the path with the piece lets
/// any holder (publisher or downloader) serve the piece with its proof without the whole tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceRecord {
    pub bytes: Vec<u8>,
    pub proof: Vec<Hash>,
}

impl PieceRecord {
    /// Bytes this record takes in a store (piece plus proof).
    pub fn stored_len(&self) -> u64 {
        (self.bytes.len() + self.proof.len() * 32) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish_bytes;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn metadata_checks() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (publication, pieces) =
            publish_bytes(&mut rng, &data, "video/webm", "a.webm", DEFAULT_PIECE_SIZE).unwrap();
        let d = publication.descriptor();
        assert_eq!(d.piece_count(), 4);
        assert_eq!(d.piece_len(3), Some(200_000 - 3 * 65536));
        assert_eq!(d.piece_len(4), None);
        let bytes = d.encoded().to_vec();
        let name = d.hash_name();
        assert_eq!(
            Descriptor::verify(DescriptorKind::ONIONMESH_V1, &bytes, name).unwrap(),
            *d
        );
        assert_eq!(
            Descriptor::verify(DescriptorKind::ONIONMESH_V1, &bytes, HashName([0; 20])),
            Err(MetaError::HashMismatch)
        );
        assert_eq!(
            Descriptor::verify(DescriptorKind(9), &bytes, name),
            Err(MetaError::UnsupportedKind(9))
        );
        // Any flipped bit changes the hash_name; with the hash_name recomputed, the signature
        // catches it (or the decoder does).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_eq!(VerifiedMeta::verify(&b, name), Err(MetaError::HashMismatch));
            assert!(
                VerifiedMeta::verify(&b, hash_name_of(&b)).is_err(),
                "byte {i}"
            );
        }
        // Piece checks.
        for (i, p) in pieces.iter().enumerate() {
            d.verify_piece(i as u32, &p.bytes, &p.proof).unwrap();
        }
        let mut bad = pieces[1].bytes.clone();
        bad[7] ^= 1;
        assert_eq!(
            d.verify_piece(1, &bad, &pieces[1].proof),
            Err(PieceError::ProofMismatch { index: 1 })
        );
        assert_eq!(
            d.verify_piece(0, &pieces[1].bytes, &pieces[1].proof),
            Err(PieceError::ProofMismatch { index: 0 })
        );
        assert!(matches!(
            d.verify_piece(3, &pieces[0].bytes, &pieces[3].proof),
            Err(PieceError::WrongLength { .. })
        ));
        assert!(matches!(
            d.verify_piece(9, &[], &[]),
            Err(PieceError::OutOfRange { .. })
        ));
    }

    #[test]
    fn piece_size_and_key_are_checked() {
        let key = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let mut pk = [0u8; 33];
        pk.copy_from_slice(key.verifying_key().to_encoded_point(true).as_bytes());
        let meta = |ps: u32, pk: [u8; 33]| {
            ContentMeta::new(10, ps, [0; 32], pk, "a/b".into(), "n".into(), [0; 64]).unwrap()
        };
        assert!(VerifiedMeta::sign(meta(65536, pk), &key).is_ok());
        for ps in [0, 8192, 65535, 512 * 1024] {
            assert_eq!(
                VerifiedMeta::sign(meta(ps, pk), &key),
                Err(MetaError::BadPieceSize(ps))
            );
        }
        assert_eq!(
            VerifiedMeta::sign(meta(65536, [5; 33]), &key),
            Err(MetaError::BadPublicKey)
        );
        // Signed by another key than the one it names.
        let other = SigningKey::from_bytes(&[8u8; 32].into()).unwrap();
        assert_eq!(
            VerifiedMeta::sign(meta(65536, pk), &other),
            Err(MetaError::BadSignature)
        );
    }

    #[test]
    fn a_torrent_descriptor_checks_its_infohash_and_each_piece_by_sha1() {
        use crate::torrent::{build_info, infohash};
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let info = build_info("v.webm", &[("v.webm", 70_000)], 16 * 1024, &data);
        let name = infohash(&info);
        let d = Descriptor::verify(DescriptorKind::BITTORRENT_V1_INFO, &info, name).unwrap();
        assert_eq!(d.kind(), DescriptorKind::BITTORRENT_V1_INFO);
        assert_eq!(
            (d.size(), d.piece_size(), d.piece_count()),
            (70_000, 16384, 5)
        );
        assert_eq!((d.name(), d.mime()), ("v.webm", "video/webm"));
        assert_eq!(d.encoded(), &info[..]);
        assert_eq!(d.proof_len(0), 0);
        for i in 0..5u32 {
            let s = i as usize * 16384;
            let piece = &data[s..(s + 16384).min(data.len())];
            d.verify_piece(i, piece, &[]).unwrap();
        }
        let mut bad = data[16384..32768].to_vec();
        bad[100] ^= 0x40;
        let e = d.verify_piece(1, &bad, &[]).unwrap_err();
        assert_eq!(e, PieceError::Sha1Mismatch { index: 1 });
        assert_eq!(
            e.to_string(),
            "piece 1 failed its SHA-1 check against the torrent's info: it was altered"
        );
        // A forged info dictionary (one byte changed) no longer has the infohash asked for.
        let mut forged = info.clone();
        let at = forged.len() - 3;
        forged[at] ^= 1;
        assert_eq!(
            Descriptor::verify(DescriptorKind::BITTORRENT_V1_INFO, &forged, name),
            Err(MetaError::HashMismatch)
        );
        // Valid bencode under its own infohash, but with 8 MiB pieces: refused with a sentence.
        let big = build_info("v", &[("v", 70_000)], 8 << 20, &data);
        let e = Descriptor::verify(DescriptorKind::BITTORRENT_V1_INFO, &big, infohash(&big))
            .unwrap_err();
        assert!(e.to_string().contains("16 KiB to 4 MiB"), "{e}");
    }

    #[test]
    fn a_web_descriptor_must_name_the_url_asked_for() {
        use onionmesh_wire::db::SourceUri;
        use onionmesh_wire::BoundedString;
        let url = "http://127.0.0.1:8080/files/film.webm?x=1";
        let meta = WebMeta {
            size: 200_000,
            mime: BoundedString::new("video/webm").unwrap(),
            url: SourceUri::new(url).unwrap(),
        };
        let bytes = meta.encode();
        let name = DbSource::web_hash_name(url);
        let d = Descriptor::verify(DescriptorKind::WEB_V1, &bytes, name).unwrap();
        assert_eq!(d.kind(), DescriptorKind::WEB_V1);
        assert_eq!(
            (d.size(), d.piece_size(), d.piece_count()),
            (200_000, 65536, 4)
        );
        assert_eq!((d.name(), d.mime()), ("film.webm", "video/webm"));
        assert_eq!(d.hash_name(), name);
        // Only lengths can be checked: the exit is trusted for the bytes.
        d.verify_piece(3, &[0; 200_000 - 3 * 65536], &[]).unwrap();
        assert!(matches!(
            d.verify_piece(3, &[0; 10], &[]),
            Err(PieceError::WrongLength { .. })
        ));
        // Another URL's descriptor is refused.
        let other = DbSource::web_hash_name("http://127.0.0.1:8080/files/other.webm");
        assert_eq!(
            Descriptor::verify(DescriptorKind::WEB_V1, &bytes, other),
            Err(MetaError::WrongUrl)
        );
        let huge = WebMeta {
            size: MAX_WEB_SIZE + 1,
            ..meta
        };
        assert_eq!(
            Descriptor::verify(DescriptorKind::WEB_V1, &huge.encode(), name),
            Err(MetaError::WebTooLarge(MAX_WEB_SIZE + 1))
        );
    }
}

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
//! [`Descriptor`] is an enum so another kind can plug in without touching the scheduler or the
//! relay: a BitTorrent v1 torrent (issue 10) would be a `Torrent` variant built from the raw
//! info dictionary (`DescriptorKind::BITTORRENT_V1_INFO`), with `hash_name` = SHA-1(info) (the
//! v1 infohash), `piece_size` = `piece length`, and `verify_piece` comparing SHA-1(piece) with
//! the `pieces` list, the proof being empty. Nothing else changes.

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use onionmesh_wire::db::{ContentMeta, DescriptorKind, HashName, HASH_NAME_LEN};
use onionmesh_wire::{PublicKeyBytes, WireError};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::merkle::{self, Hash};

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

/// A verified content descriptor of any supported kind. See the module docs for how a
/// BitTorrent-backed kind plugs in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Descriptor {
    /// Onionmesh's own signed metadata with a SHA-256 Merkle tree over the pieces.
    Signed(VerifiedMeta),
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
            DescriptorKind(k) => Err(MetaError::UnsupportedKind(k)),
        }
    }

    pub fn kind(&self) -> DescriptorKind {
        match self {
            Descriptor::Signed(_) => DescriptorKind::ONIONMESH_V1,
        }
    }
    /// The bytes that travel in `DB_CONNECTED` and hash to the hash_name.
    pub fn encoded(&self) -> &[u8] {
        match self {
            Descriptor::Signed(m) => m.encoded(),
        }
    }
    pub fn hash_name(&self) -> HashName {
        match self {
            Descriptor::Signed(m) => m.hash_name(),
        }
    }
    /// Content size, bytes.
    pub fn size(&self) -> u64 {
        match self {
            Descriptor::Signed(m) => m.meta.size(),
        }
    }
    /// Bytes per piece (all but the last, which may be shorter).
    pub fn piece_size(&self) -> u32 {
        match self {
            Descriptor::Signed(m) => m.meta.piece_size(),
        }
    }
    pub fn piece_count(&self) -> u32 {
        match self {
            Descriptor::Signed(m) => m.piece_count,
        }
    }
    /// MIME type, as the publisher gave it.
    pub fn mime(&self) -> &str {
        match self {
            Descriptor::Signed(m) => m.meta.mime(),
        }
    }
    /// File name, as the publisher gave it.
    pub fn name(&self) -> &str {
        match self {
            Descriptor::Signed(m) => m.meta.name(),
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

    /// How many proof hashes piece `index` has (0 past the end).
    pub fn proof_len(&self, index: u32) -> usize {
        match self {
            Descriptor::Signed(m) => merkle::proof_len(m.piece_count, index),
        }
    }

    /// Check a whole piece and its proof.
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
}

//! Turning bytes into a content: pieces, Merkle tree, signed metadata, hash_name.
//!
//! The bytes come in any chunks ([`Publisher::push`]), so a large file never has to be in memory
//! at once: the publisher keeps one partial piece and one 32-byte hash per piece. The hash_name
//! is only known at the end (it covers the Merkle root), so storing is a second pass: the
//! driver reads the file again piece by piece (a `Blob.slice` in the browser) and turns each
//! piece into a [`PieceRecord`] with [`Publication::piece_record`], which checks the bytes are
//! the ones that were hashed and attaches the proof.
//!
//! ```
//! use onionmesh_ordb::{Publisher, DEFAULT_PIECE_SIZE};
//! use rand_chacha::rand_core::SeedableRng;
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let data = vec![42u8; 100_000];
//! let mut p = Publisher::new(DEFAULT_PIECE_SIZE).unwrap();
//! for chunk in data.chunks(7_000) { p.push(chunk).unwrap(); }
//! let publication = p.finish(&mut rng, "application/octet-stream", "answer.bin").unwrap();
//! assert_eq!(publication.descriptor().piece_count(), 2);
//! let first = publication.piece_record(0, data[..65536].to_vec()).unwrap();
//! assert!(publication.descriptor().verify_piece(0, &first.bytes, &first.proof).is_ok());
//! ```

use k256::ecdsa::SigningKey;
use onionmesh_wire::db::{ContentMeta, MAX_MIME, MAX_NAME};
use rand_core::CryptoRngCore;
use thiserror::Error;

use crate::content::{
    Descriptor, MetaError, PieceError, PieceRecord, VerifiedMeta, MAX_PIECE_SIZE, MIN_PIECE_SIZE,
};
use crate::merkle::{self, Hash, MerkleTree};

/// Why a content could not be published. The caller misused the API or gave too big a file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("the piece size {0} is not a power of two from 16 KiB to 256 KiB")]
    BadPieceSize(u32),
    #[error("the file is too large: at most {max} pieces are supported", max = merkle::MAX_LEAVES)]
    TooLarge,
    #[error("the MIME type is longer than {MAX_MIME} bytes")]
    MimeTooLong,
    #[error("the file name is longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("the metadata could not be signed: {0}")]
    Meta(#[from] MetaError),
}

/// Accumulates a file's bytes and hashes each piece as it fills.
#[derive(Debug, Clone)]
pub struct Publisher {
    piece_size: u32,
    partial: Vec<u8>,
    leaves: Vec<Hash>,
    size: u64,
}

impl Publisher {
    /// `piece_size`: a power of two in 16..=256 KiB; use [`crate::DEFAULT_PIECE_SIZE`].
    pub fn new(piece_size: u32) -> Result<Publisher, PublishError> {
        if !(MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&piece_size) || !piece_size.is_power_of_two()
        {
            return Err(PublishError::BadPieceSize(piece_size));
        }
        Ok(Publisher {
            piece_size,
            partial: Vec::with_capacity(piece_size as usize),
            leaves: Vec::new(),
            size: 0,
        })
    }

    /// Add the next bytes of the file. Fails once the file passes the piece limit.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), PublishError> {
        while !bytes.is_empty() {
            let room = self.piece_size as usize - self.partial.len();
            let take = room.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.size += take as u64;
            if self.partial.len() == self.piece_size as usize {
                if self.leaves.len() >= merkle::MAX_LEAVES as usize {
                    return Err(PublishError::TooLarge);
                }
                self.leaves.push(merkle::leaf_hash(&self.partial));
                self.partial.clear();
            }
        }
        Ok(())
    }

    /// Bytes pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Close the file: hash the last partial piece, build the tree, draw a fresh per-content key
    /// from `rng` and sign. A fresh key per content means two contents of one publisher cannot
    /// be linked by their key.
    pub fn finish(
        mut self,
        rng: &mut impl CryptoRngCore,
        mime: &str,
        name: &str,
    ) -> Result<Publication, PublishError> {
        if mime.len() > MAX_MIME {
            return Err(PublishError::MimeTooLong);
        }
        if name.len() > MAX_NAME {
            return Err(PublishError::NameTooLong);
        }
        if !self.partial.is_empty() {
            if self.leaves.len() >= merkle::MAX_LEAVES as usize {
                return Err(PublishError::TooLarge);
            }
            self.leaves.push(merkle::leaf_hash(&self.partial));
        }
        let tree = MerkleTree::from_leaves(self.leaves).ok_or(PublishError::TooLarge)?;
        let key = SigningKey::random(rng);
        let mut publisher = [0u8; 33];
        // A compressed point is always 33 bytes.
        publisher.copy_from_slice(key.verifying_key().to_encoded_point(true).as_bytes());
        let meta = ContentMeta::new(
            self.size,
            self.piece_size,
            tree.root(),
            publisher,
            mime.to_owned(),
            name.to_owned(),
            [0; 64],
        )
        .map_err(|_| PublishError::NameTooLong)?;
        let meta = VerifiedMeta::sign(meta, &key)?;
        Ok(Publication {
            descriptor: Descriptor::Signed(meta),
            tree,
        })
    }
}

/// A published content: its descriptor (with the hash_name) and its Merkle tree.
#[derive(Debug, Clone)]
pub struct Publication {
    descriptor: Descriptor,
    tree: MerkleTree,
}

impl Publication {
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Piece `index` with its proof, ready to store. Fails when `bytes` are not the bytes that
    /// were pushed for that piece (the file changed between the two passes).
    pub fn piece_record(&self, index: u32, bytes: Vec<u8>) -> Result<PieceRecord, PieceError> {
        let proof = self.tree.proof(index).ok_or(PieceError::OutOfRange {
            index,
            count: self.tree.leaf_count(),
        })?;
        self.descriptor.verify_piece(index, &bytes, &proof)?;
        Ok(PieceRecord { bytes, proof })
    }
}

/// Publish bytes already in memory (tests, the simulator, the bridge): the publication and every
/// piece record.
pub fn publish_bytes(
    rng: &mut impl CryptoRngCore,
    bytes: &[u8],
    mime: &str,
    name: &str,
    piece_size: u32,
) -> Result<(Publication, Vec<PieceRecord>), PublishError> {
    let mut p = Publisher::new(piece_size)?;
    p.push(bytes)?;
    let publication = p.finish(rng, mime, name)?;
    let records = bytes
        .chunks(piece_size as usize)
        .enumerate()
        .map(|(i, c)| publication.piece_record(i as u32, c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PublishError::TooLarge)?;
    Ok((publication, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::hash_name_of;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn chunking_does_not_change_the_content(len in 0usize..200_000, chunk in 1usize..70_000, seed in any::<u64>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(seed) as u8).collect();
            let mut a = Publisher::new(16 * 1024).unwrap();
            a.push(&data).unwrap();
            let mut b = Publisher::new(16 * 1024).unwrap();
            for c in data.chunks(chunk) { b.push(c).unwrap(); }
            let pa = a.finish(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed), "x/y", "f").unwrap();
            let pb = b.finish(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed), "x/y", "f").unwrap();
            prop_assert_eq!(pa.descriptor(), pb.descriptor());
            let d = pa.descriptor();
            prop_assert_eq!(d.size(), len as u64);
            prop_assert_eq!(d.hash_name(), hash_name_of(d.encoded()));
            for (i, c) in data.chunks(16 * 1024).enumerate() {
                let r = pa.piece_record(i as u32, c.to_vec()).unwrap();
                prop_assert!(d.verify_piece(i as u32, &r.bytes, &r.proof).is_ok());
            }
        }
    }

    #[test]
    fn second_pass_must_match_and_names_are_bounded() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let (p, _) = publish_bytes(&mut rng, &[5; 40_000], "a/b", "n", 16384).unwrap();
        assert!(p.piece_record(0, vec![6; 16384]).is_err());
        assert!(p.piece_record(3, vec![5; 16384]).is_err());
        assert!(Publisher::new(1000).is_err());
        let long = "x".repeat(MAX_NAME + 1);
        let pubr = Publisher::new(16384).unwrap();
        assert_eq!(
            pubr.finish(&mut rng, "a/b", &long).unwrap_err(),
            PublishError::NameTooLong
        );
        // Two publications of the same bytes get different per-content keys and hash_names.
        let (a, _) = publish_bytes(&mut rng, &[1; 10], "a/b", "n", 16384).unwrap();
        let (b, _) = publish_bytes(&mut rng, &[1; 10], "a/b", "n", 16384).unwrap();
        assert_ne!(a.descriptor().hash_name(), b.descriptor().hash_name());
        // The empty file is a content too: zero pieces, the empty root.
        let (e, recs) = publish_bytes(&mut rng, &[], "a/b", "empty", 16384).unwrap();
        assert_eq!(e.descriptor().piece_count(), 0);
        assert!(recs.is_empty());
    }
}

//! The SHA-256 Merkle tree over a content's pieces.
//!
//! The tree shape and the audit-path verification follow RFC 9162 (Certificate Transparency
//! v2), section 2.1: leaves are `SHA-256(0x00 || piece)`, inner nodes `SHA-256(0x01 || left ||
//! right)`, so a leaf can never be passed off as an inner node (the second-preimage trick of
//! Bitcoin's duplicate-the-last-node trees). Odd counts need no padding: the tree over `n`
//! leaves splits at the largest power of two below `n`. Built level by level, that is the same
//! as carrying a lone last node up unchanged, which is how [`MerkleTree`] stores it.
//!
//! An audit path ("proof") lists the sibling hashes from the leaf up; its length is between
//! `floor(log2 n)` and `ceil(log2 n)`. Every `DB_PROOF` carries one.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Most leaves a tree may have (2^24 pieces: 1 TiB at 64 KiB). Keeps a proof at 24 hashes.
pub const MAX_LEAVES: u32 = 1 << 24;

/// The hash of a piece as a leaf.
pub fn leaf_hash(piece: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(piece);
    h.finalize().into()
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing (RFC 9162). An empty content has it.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A whole tree, kept level by level (level 0 = the leaves), about `2 * n` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Build from the leaf hashes. `None` for more than [`MAX_LEAVES`] leaves.
    pub fn from_leaves(leaves: Vec<Hash>) -> Option<MerkleTree> {
        if leaves.len() > MAX_LEAVES as usize {
            return None;
        }
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("the loop condition saw a level");
            let up = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    // A lone last node goes up unchanged.
                    [lone] => *lone,
                    _ => unreachable!("chunks(2) yields one or two items"),
                })
                .collect();
            levels.push(up);
        }
        Some(MerkleTree { levels })
    }

    /// Number of leaves (pieces).
    pub fn leaf_count(&self) -> u32 {
        // from_leaves bounds it to MAX_LEAVES.
        self.levels[0].len() as u32
    }

    /// The root; [`empty_root`] for no leaves.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) => *root,
            None => empty_root(),
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u32) -> Option<Hash> {
        self.levels[0].get(index as usize).copied()
    }

    /// The audit path of leaf `index`, leaf side first; `None` past the last leaf.
    pub fn proof(&self, index: u32) -> Option<Vec<Hash>> {
        let mut i = index as usize;
        if i >= self.levels[0].len() {
            return None;
        }
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(h) = level.get(sibling) {
                path.push(*h);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// Check that `leaf` is leaf `index` of the tree with `leaf_count` leaves and root `root`, with
/// the audit path `proof` (RFC 9162, 2.1.3.2). False on any mismatch, including a path of the
/// wrong length.
pub fn verify(root: &Hash, leaf_count: u32, index: u32, leaf: &Hash, proof: &[Hash]) -> bool {
    if index >= leaf_count {
        return false;
    }
    let mut fnode = index;
    let mut snode = leaf_count - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Length of leaf `index`'s audit path in a tree of `leaf_count` leaves (0 when out of range).
pub fn proof_len(leaf_count: u32, index: u32) -> usize {
    if index >= leaf_count {
        return 0;
    }
    let (mut i, mut n, mut len) = (index as u64, leaf_count as u64, 0);
    while n > 1 {
        if (i ^ 1) < n {
            len += 1;
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9162's recursive definition, as an independent check of the level-wise build.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                // The largest power of two below n.
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u32).to_be_bytes()))
            .collect()
    }

    #[test]
    fn known_shapes() {
        let t = MerkleTree::from_leaves(vec![]).unwrap();
        assert_eq!(t.root(), empty_root());
        assert_eq!(t.proof(0), None);
        let l = leaves(3);
        let t = MerkleTree::from_leaves(l.clone()).unwrap();
        // Three leaves: ((0, 1), 2); leaf 2's path is the single hash of (0, 1).
        assert_eq!(t.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(t.proof(2).unwrap(), vec![node_hash(&l[0], &l[1])]);
        assert_eq!(t.proof(0).unwrap(), vec![l[1], l[2]]);
        assert!(verify(&t.root(), 3, 2, &l[2], &t.proof(2).unwrap()));
        // Leaf and node hashes are separated.
        assert_ne!(leaf_hash(&[1; 64]), node_hash(&[1; 32], &[1; 32]));
        // A test vector for other implementations: SHA-256(0x00 || "abc").
        assert_eq!(
            hex::encode(leaf_hash(b"abc")),
            hex::encode(Sha256::digest([&[0u8][..], b"abc"].concat()))
        );
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_bit_flips_fail(n in 1usize..300, pick in any::<u32>(), bit in 0usize..256) {
            let l = leaves(n);
            let t = MerkleTree::from_leaves(l.clone()).unwrap();
            prop_assert_eq!(t.root(), mth(&l));
            let root = t.root();
            for i in 0..n as u32 {
                let p = t.proof(i).unwrap();
                prop_assert_eq!(p.len(), proof_len(n as u32, i));
                prop_assert!(verify(&root, n as u32, i, &l[i as usize], &p));
            }
            let i = pick % n as u32;
            let p = t.proof(i).unwrap();
            // A flipped bit in the leaf, in any proof hash, or in the root fails.
            let mut leaf = l[i as usize];
            leaf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!verify(&root, n as u32, i, &leaf, &p));
            for k in 0..p.len() {
                let mut q = p.clone();
                q[k][bit / 8] ^= 1 << (bit % 8);
                prop_assert!(!verify(&root, n as u32, i, &l[i as usize], &q));
            }
            let mut bad_root = root;
            bad_root[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!verify(&bad_root, n as u32, i, &l[i as usize], &p));
            // The wrong index, a wrong leaf count, a short or long path fail.
            if n > 1 {
                let j = (i + 1) % n as u32;
                prop_assert!(!verify(&root, n as u32, j, &l[i as usize], &p) || l[i as usize] == l[j as usize]);
            }
            prop_assert!(!verify(&root, n as u32, n as u32, &l[i as usize], &p));
            if !p.is_empty() {
                prop_assert!(!verify(&root, n as u32, i, &l[i as usize], &p[..p.len() - 1]));
            }
            let mut long = p.clone();
            long.push([0; 32]);
            prop_assert!(!verify(&root, n as u32, i, &l[i as usize], &long));
        }
    }
}

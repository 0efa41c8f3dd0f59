//! Contacts and the XOR metric: which bucket an ID falls in, a random ID inside a bucket, and the
//! checks a contact passes before it enters the routing table.

use onionmesh_wire::kad::{Contact, Introducers};
use onionmesh_wire::{NodeId, PublicKeyBytes, ID_LEN};
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Number of bits in an ID, and so the number of buckets.
pub const ID_BITS: usize = ID_LEN * 8;

/// The node ID that belongs to `pubkey`: the first 160 bits of its SHA-256 (the same rule as
/// `onionmesh_crypto::node_id`; a test checks they agree).
pub fn id_of(pubkey: &PublicKeyBytes) -> NodeId {
    let digest = Sha256::digest(pubkey);
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&digest[..ID_LEN]);
    NodeId(id)
}

/// The bucket `other` belongs to in `me`'s table: `j` such that `2^j <= d(me, other) < 2^(j+1)`.
/// `None` for `me` itself (distance 0), which no table ever stores.
pub fn bucket_index(me: &NodeId, other: &NodeId) -> Option<usize> {
    let d = me.distance(other);
    let (byte, &b) = d.iter().enumerate().find(|(_, b)| **b != 0)?;
    let leading = byte * 8 + b.leading_zeros() as usize;
    Some(ID_BITS - 1 - leading)
}

/// A uniformly random ID in `me`'s bucket `j` (used to refresh that bucket). `j` must be below
/// [`ID_BITS`]; larger values are clamped to the farthest bucket.
pub fn random_id_in_bucket(me: &NodeId, j: usize, rng: &mut dyn RngCore) -> NodeId {
    let j = j.min(ID_BITS - 1);
    let mut d = [0u8; ID_LEN];
    rng.fill_bytes(&mut d);
    // Bit j (counted from the least significant bit) is set, all higher bits are clear.
    let top_byte = ID_LEN - 1 - j / 8;
    for b in d.iter_mut().take(top_byte) {
        *b = 0;
    }
    let bit = 1u8 << (j % 8);
    let below = bit.wrapping_sub(1);
    d[top_byte] = (d[top_byte] & below) | bit;
    let mut out = [0u8; ID_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = me.0[i] ^ d[i];
    }
    NodeId(out)
}

/// Why a contact was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContactError {
    #[error("contact {0} claims an ID that is not the hash of its public key")]
    IdMismatch(String),
}

/// Checks a contact learned from the network. The ID must be the hash of the public key, so a
/// peer cannot place arbitrary IDs next to a target without generating the keys. The sizes
/// (bridge address, introducers) are bounded by the codec's types, for contacts built locally
/// as for decoded ones.
pub fn check_contact(c: &Contact) -> Result<(), ContactError> {
    if id_of(&c.pubkey) != c.id {
        return Err(ContactError::IdMismatch(c.id.short()));
    }
    Ok(())
}

/// Puts `fresh` introducers in front of `list`, drops duplicates and the contact itself, and
/// keeps the first [`onionmesh_wire::kad::MAX_INTRODUCERS`]: recent introducers are the
/// likeliest to still be online, so the older ones are the ones dropped.
pub fn merge_introducers(list: &mut Introducers, fresh: &[NodeId], own: &NodeId) {
    let mut out = Introducers::empty();
    for id in fresh.iter().chain(list.iter()) {
        if id != own && !out.contains(id) && out.try_push(*id).is_err() {
            break;
        }
    }
    *list = out;
}

/// `c` as learned from `via`: `via` knows `c`, so it becomes the first introducer (the spec's
/// "`[IDx]` is a list of peers that can perform the introduction to N").
pub fn learned_via(mut c: Contact, via: &NodeId) -> Contact {
    let own = c.id;
    merge_introducers(&mut c.introducers, &[*via], &own);
    c
}

/// Sorts `contacts` by XOR distance to `target`, closest first.
pub fn sort_by_distance(contacts: &mut [Contact], target: &NodeId) {
    contacts.sort_by_key(|c| c.id.distance(target));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn id_rule_matches_the_crypto_crate() {
        let pk = [3u8; 33];
        assert_eq!(id_of(&pk), onionmesh_crypto::node_id(&pk));
    }

    #[test]
    fn bucket_of_extremes() {
        let me = NodeId([0; 20]);
        assert_eq!(bucket_index(&me, &me), None);
        let mut one = [0u8; 20];
        one[19] = 1;
        assert_eq!(bucket_index(&me, &NodeId(one)), Some(0));
        assert_eq!(bucket_index(&me, &NodeId([0xff; 20])), Some(159));
        let mut mid = [0u8; 20];
        mid[18] = 0x01; // 2^8
        assert_eq!(bucket_index(&me, &NodeId(mid)), Some(8));
    }

    #[test]
    fn contact_checks() {
        let pk = [2u8; 33];
        let mut c = Contact {
            id: id_of(&pk),
            pubkey: pk,
            bridge: None,
            introducers: Introducers::empty(),
        };
        assert_eq!(check_contact(&c), Ok(()));
        c.id = NodeId([1; 20]);
        assert!(matches!(
            check_contact(&c),
            Err(ContactError::IdMismatch(_))
        ));
    }

    #[test]
    fn introducers_are_merged_and_bounded() {
        let own = NodeId([0; 20]);
        let ids: Vec<NodeId> = (1..=6).map(|i| NodeId([i; 20])).collect();
        let mut list = Introducers::new(vec![ids[0], ids[1], own]).unwrap();
        merge_introducers(&mut list, &[ids[2], ids[0], own, ids[3], ids[4]], &own);
        assert_eq!(list, vec![ids[2], ids[0], ids[3], ids[4]]);
    }

    proptest! {
        /// The 160 buckets are disjoint and together cover every nonzero distance: each ID other
        /// than ours falls in exactly one bucket, the one whose range holds its distance.
        #[test]
        fn buckets_tile_the_id_space(me in any::<[u8; 20]>(), other in any::<[u8; 20]>()) {
            let me = NodeId(me);
            let other = NodeId(other);
            let d = me.distance(&other);
            let holders: Vec<usize> = (0..ID_BITS).filter(|&j| in_range(&d, j)).collect();
            if me == other {
                prop_assert!(holders.is_empty());
                prop_assert_eq!(bucket_index(&me, &other), None);
            } else {
                prop_assert_eq!(holders.len(), 1);
                prop_assert_eq!(bucket_index(&me, &other), Some(holders[0]));
            }
        }

        #[test]
        fn random_ids_land_in_their_bucket(me in any::<[u8; 20]>(), j in 0usize..ID_BITS, seed in any::<u64>()) {
            let me = NodeId(me);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let id = random_id_in_bucket(&me, j, &mut rng);
            prop_assert_eq!(bucket_index(&me, &id), Some(j));
        }
    }

    /// `2^j <= d < 2^(j+1)`, written out bit by bit independently of `bucket_index`.
    fn in_range(d: &[u8; 20], j: usize) -> bool {
        let bit = |i: usize| d[19 - i / 8] >> (i % 8) & 1 == 1;
        bit(j) && (j + 1..ID_BITS).all(|i| !bit(i))
    }
}

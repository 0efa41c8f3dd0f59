//! Circuit ids on a link, chosen so the two ends never collide.
//!
//! The 16-bit space is split by the top bit: the end with the larger node ID allocates ids with
//! the top bit set, the other end ids with it clear. Within its own half a node splits again by
//! the next bit, so its proxy and its router (which extends circuits, i.e. opens circuits on
//! *its* links too) never collide with each other either:
//!
//! ```text
//! bit 15: 1 if the allocating node's ID > the peer's ID
//! bit 14: 1 = allocated by the node's proxy, 0 = by its router (EXTEND2)
//! 0 is never a circuit (link-level cells only)
//! ```
//!
//! A driver that runs both an [`crate::OnionProxy`] and an [`crate::OnionRouter`] routes each
//! incoming cell with [`owner_of`].

use onionmesh_wire::cell::CircId;
use onionmesh_wire::NodeId;
use rand_core::RngCore;

const HIGH: u16 = 0x8000;
const ROLE: u16 = 0x4000;
const LOW_MASK: u16 = 0x3fff;

/// Which local state machine a cell belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellOwner {
    /// A circuit our proxy built (the id is in our half, proxy quarter).
    Proxy,
    /// A circuit the peer created through us, or one our router extended.
    Router,
}

/// Who handles a cell with `id` arriving from `peer`. Circuit id 0 (link padding) goes to the
/// router, which ignores padding and closes the link for anything else.
pub fn owner_of(local: NodeId, peer: NodeId, id: CircId) -> CellOwner {
    if id.0 != 0 && allocated_by_us(local, peer, id) && id.0 & ROLE != 0 {
        CellOwner::Proxy
    } else {
        CellOwner::Router
    }
}

/// Whether `id` is in the half of the space `local` allocates on its link to `peer`.
pub(crate) fn allocated_by_us(local: NodeId, peer: NodeId, id: CircId) -> bool {
    (id.0 & HIGH != 0) == (local > peer)
}

/// Pick a free id in our half for `owner`. `None` only if ~16k ids are in use on this link,
/// which the per-link caps rule out.
pub(crate) fn allocate(
    rng: &mut impl RngCore,
    local: NodeId,
    peer: NodeId,
    owner: CellOwner,
    in_use: impl Fn(CircId) -> bool,
) -> Option<CircId> {
    let base =
        if local > peer { HIGH } else { 0 } | if owner == CellOwner::Proxy { ROLE } else { 0 };
    // Random ids do not reveal how many circuits a node has built.
    for _ in 0..32 {
        let low = (rng.next_u32() as u16) & LOW_MASK;
        let id = CircId(base | low);
        if low != 0 && !in_use(id) {
            return Some(id);
        }
    }
    (1..=LOW_MASK)
        .map(|low| CircId(base | low))
        .find(|id| !in_use(*id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn the_two_ends_never_collide() {
        let a = NodeId([1; 20]);
        let b = NodeId([2; 20]);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for _ in 0..200 {
            let pa = allocate(&mut rng, a, b, CellOwner::Proxy, |_| false).unwrap();
            let ra = allocate(&mut rng, a, b, CellOwner::Router, |_| false).unwrap();
            let pb = allocate(&mut rng, b, a, CellOwner::Proxy, |_| false).unwrap();
            let rb = allocate(&mut rng, b, a, CellOwner::Router, |_| false).unwrap();
            assert_eq!(pa.0 & 0xc000, 0x4000);
            assert_eq!(ra.0 & 0xc000, 0x0000);
            assert_eq!(pb.0 & 0xc000, 0xc000);
            assert_eq!(rb.0 & 0xc000, 0x8000);
            for id in [pa, ra, pb, rb] {
                assert_ne!(id.0 & LOW_MASK, 0);
            }
            // a's own proxy circuits go to a's proxy; b's circuits arriving at a go to a's router.
            assert_eq!(owner_of(a, b, pa), CellOwner::Proxy);
            assert_eq!(owner_of(a, b, ra), CellOwner::Router);
            assert_eq!(owner_of(a, b, pb), CellOwner::Router);
            assert_eq!(owner_of(a, b, rb), CellOwner::Router);
            assert_eq!(owner_of(b, a, pb), CellOwner::Proxy);
        }
        assert_eq!(owner_of(a, b, CircId(0)), CellOwner::Router);
        // A full quarter falls back to a scan.
        let id = allocate(&mut rng, a, b, CellOwner::Proxy, |id| id.0 != 0x4000 | 77).unwrap();
        assert_eq!(id, CircId(0x4000 | 77));
    }
}

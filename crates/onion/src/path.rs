//! Choosing the hops of a circuit.
//!
//! Rules, after Tor's (see "How Is a Circuit Created?" in the spec notes), adapted to a mesh where
//! peers are found through introducers (a bridge or another peer relaying the WebRTC offer):
//!
//! 1. No node twice, and never ourselves: a node in two positions sees both.
//! 2. The first hop must already be linked (the proxy cannot open links), and if the node
//!    pinned guards, it must be one of them (guard pinning: a small stable set of first hops
//!    limits how often an adversary gets to be first).
//! 3. Hops introduced by distinct introducers where possible: whoever introduced a peer knows
//!    we talk to it, so one introducer behind several hops would see more of the path (Tor's
//!    "one per family / per /16" in spirit).
//! 4. The node's own bridge is never tied to both the first and the last hop (being that hop, or
//!    having introduced it): it already sees our address, and with both ends it could match
//!    traffic entering and leaving the circuit.

use crate::key::OnionPublicKey;
use onionmesh_wire::NodeId;
use rand_core::RngCore;
use std::collections::BTreeSet;
use thiserror::Error;

/// The most hops a circuit may have (each EXTEND2 costs one of the 8 RELAY_EARLY cells).
pub const MAX_HOPS: usize = 8;

/// One hop to build through: who, and the onion key we expect it to prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopSpec {
    pub id: NodeId,
    pub onion_key: OnionPublicKey,
}

/// A peer the path selector may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub hop: HopSpec,
    /// Who introduced us to it (a bridge or a peer), if known.
    pub introducer: Option<NodeId>,
    /// We have an authenticated link to it now.
    pub linked: bool,
}

/// What the selector must respect besides the candidates.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    /// Our own node ID.
    pub local: NodeId,
    /// The bridge our node is attached to.
    pub own_bridge: Option<NodeId>,
    /// Pinned first hops; empty means any linked candidate.
    pub guards: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("a circuit needs between 1 and {MAX_HOPS} hops, not {0}")]
    BadLength(usize),
    #[error("node {0} appears twice in the path")]
    Repeated(NodeId),
    #[error("the path contains this node itself")]
    ContainsSelf,
    #[error("no linked peer can be the first hop (link to a guard or a peer first)")]
    NoFirstHop,
    #[error("only {have} usable peers for {need} hops; discover more peers first")]
    NotEnoughCandidates { need: usize, have: usize },
    #[error("every possible last hop is tied to our own bridge, as the first hop is")]
    BridgeAtBothEnds,
}

/// Check a path given by the caller: length, no repeats, not ourselves.
pub fn check_path(local: NodeId, path: &[HopSpec]) -> Result<(), PathError> {
    if path.is_empty() || path.len() > MAX_HOPS {
        return Err(PathError::BadLength(path.len()));
    }
    let mut seen = BTreeSet::new();
    for h in path {
        if h.id == local {
            return Err(PathError::ContainsSelf);
        }
        if !seen.insert(h.id) {
            return Err(PathError::Repeated(h.id));
        }
    }
    Ok(())
}

fn tied_to(c: &Candidate, bridge: Option<NodeId>) -> bool {
    bridge.is_some_and(|b| c.hop.id == b || c.introducer == Some(b))
}

fn pick<'a>(rng: &mut impl RngCore, from: &[&'a Candidate]) -> Option<&'a Candidate> {
    if from.is_empty() {
        return None;
    }
    Some(from[(rng.next_u32() as usize) % from.len()])
}

/// Choose `hops` hops from `candidates` under the rules above.
pub fn select_path(
    rng: &mut impl RngCore,
    rules: &PathRules,
    candidates: &[Candidate],
    hops: usize,
) -> Result<Vec<HopSpec>, PathError> {
    if hops == 0 || hops > MAX_HOPS {
        return Err(PathError::BadLength(hops));
    }
    // Distinct candidates other than ourselves (first occurrence wins).
    let mut ids = BTreeSet::new();
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.hop.id != rules.local && ids.insert(c.hop.id))
        .collect();
    if usable.len() < hops {
        return Err(PathError::NotEnoughCandidates {
            need: hops,
            have: usable.len(),
        });
    }
    let firsts: Vec<&Candidate> = usable
        .iter()
        .copied()
        .filter(|c| c.linked && (rules.guards.is_empty() || rules.guards.contains(&c.hop.id)))
        .collect();
    // Prefer a first hop that does not force the bridge rule, when hops > 1.
    let first = pick(rng, &firsts).ok_or(PathError::NoFirstHop)?;
    let mut path = vec![first];
    let mut introducers: BTreeSet<NodeId> = first.introducer.into_iter().collect();
    for position in 1..hops {
        let last = position == hops - 1;
        let bridge_both_ends = |c: &Candidate| {
            last && tied_to(path[0], rules.own_bridge) && tied_to(c, rules.own_bridge)
        };
        let allowed = |c: &&Candidate| {
            let repeated = path.iter().any(|p| p.hop.id == c.hop.id);
            !repeated && !bridge_both_ends(c)
        };
        let open: Vec<&Candidate> = usable.iter().copied().filter(allowed).collect();
        let fresh: Vec<&Candidate> = open
            .iter()
            .copied()
            .filter(|c| c.introducer.is_none_or(|i| !introducers.contains(&i)))
            .collect();
        let chosen = match pick(rng, &fresh).or_else(|| pick(rng, &open)) {
            Some(c) => c,
            None if last => return Err(PathError::BridgeAtBothEnds),
            None => {
                return Err(PathError::NotEnoughCandidates {
                    need: hops,
                    have: usable.len(),
                })
            }
        };
        introducers.extend(chosen.introducer);
        path.push(chosen);
    }
    Ok(path.into_iter().map(|c| c.hop).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::OnionKey;
    use rand_chacha::rand_core::SeedableRng;

    fn cand(n: u8, introducer: Option<u8>, linked: bool) -> Candidate {
        let key = OnionKey::from_seed([n; 32]).unwrap();
        Candidate {
            hop: HopSpec {
                id: NodeId([n; 20]),
                onion_key: *key.public(),
            },
            introducer: introducer.map(|i| NodeId([i; 20])),
            linked,
        }
    }

    #[test]
    fn rules_hold_over_many_draws() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let bridge = NodeId([200; 20]);
        let rules = PathRules {
            local: NodeId([1; 20]),
            own_bridge: Some(bridge),
            guards: vec![],
        };
        let mut cands = vec![cand(1, None, true)]; // ourselves: never used
        for n in 2..12 {
            // Half the peers came through our bridge.
            let intro = if n % 2 == 0 { 200 } else { 100 + n };
            cands.push(cand(n, Some(intro), n < 5));
        }
        for _ in 0..300 {
            let p = select_path(&mut rng, &rules, &cands, 3).unwrap();
            check_path(rules.local, &p).unwrap();
            assert!(p[0].id.0[0] < 5, "first hop is linked");
            let tied = |h: &HopSpec| {
                cands
                    .iter()
                    .any(|c| c.hop.id == h.id && tied_to(c, rules.own_bridge))
            };
            assert!(!(tied(&p[0]) && tied(&p[2])), "bridge tied to both ends");
            // Enough distinct introducers exist, so they are distinct.
            let intros: BTreeSet<_> = p
                .iter()
                .map(|h| cands.iter().find(|c| c.hop.id == h.id).unwrap().introducer)
                .collect();
            assert_eq!(intros.len(), 3);
        }
    }

    #[test]
    fn failures_are_explained() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let rules = PathRules {
            local: NodeId([1; 20]),
            own_bridge: Some(NodeId([200; 20])),
            guards: vec![],
        };
        let two = [cand(2, None, true), cand(3, None, false)];
        assert_eq!(
            select_path(&mut rng, &rules, &two, 3),
            Err(PathError::NotEnoughCandidates { need: 3, have: 2 })
        );
        let unlinked = [cand(2, None, false), cand(3, None, false)];
        assert_eq!(
            select_path(&mut rng, &rules, &unlinked, 2),
            Err(PathError::NoFirstHop)
        );
        let all_bridge = [cand(2, Some(200), true), cand(3, Some(200), false)];
        assert_eq!(
            select_path(&mut rng, &rules, &all_bridge, 2),
            Err(PathError::BridgeAtBothEnds)
        );
        // Guards pin the first hop.
        let rules = PathRules {
            guards: vec![NodeId([3; 20])],
            ..rules
        };
        let many = [
            cand(2, None, true),
            cand(3, None, true),
            cand(4, None, true),
        ];
        for _ in 0..20 {
            assert_eq!(
                select_path(&mut rng, &rules, &many, 2).unwrap()[0].id,
                NodeId([3; 20])
            );
        }
        assert_eq!(
            check_path(NodeId([1; 20]), &[]),
            Err(PathError::BadLength(0))
        );
        let h = many[0].hop;
        assert_eq!(
            check_path(NodeId([1; 20]), &[h, h]),
            Err(PathError::Repeated(h.id))
        );
        assert_eq!(check_path(h.id, &[h]), Err(PathError::ContainsSelf));
    }
}

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
//!
//! [`select_path_pinned`] lets the caller fix some positions ([`PathPins`]), in particular the
//! last hop, so a circuit can end at a chosen node (the holder of some content, a service)
//! while the other hops follow the rules above. Pinned hops count for rules 1, 3 and 4 (no
//! other hop repeats them or shares their introducer where avoidable, and the bridge rule
//! holds); a pinned first hop must be linked, but need not be a guard (the caller chose it).

use crate::key::OnionPublicKey;
use onionmesh_bounded::FlatSet;
use onionmesh_wire::NodeId;
use rand_core::RngCore;
use thiserror::Error;

/// At most this many RELAY_EARLY cells per circuit (Tor's limit); each EXTEND2 uses one.
pub const MAX_RELAY_EARLY: u8 = 8;

/// The most hops a circuit may have (each EXTEND2 costs one of the 8 RELAY_EARLY cells).
pub const MAX_HOPS: usize = MAX_RELAY_EARLY as usize;

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

/// Positions of a path the caller fixes; the selector fills the others. Empty by default.
///
/// ```
/// use onionmesh_onion::PathPins;
/// use onionmesh_wire::NodeId;
/// // End at node 7, whatever the length; hop 2 (0-based 1) is node 9.
/// let pins = PathPins::last(NodeId([7; 20])).and_at(1, NodeId([9; 20]));
/// assert_eq!(pins.at, vec![(1, NodeId([9; 20]))]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPins {
    /// The last hop, whatever the path's length.
    pub last: Option<NodeId>,
    /// Other fixed positions, 0 being the first hop.
    pub at: Vec<(usize, NodeId)>,
}

impl PathPins {
    /// Pin only the last hop.
    pub fn last(id: NodeId) -> PathPins {
        PathPins {
            last: Some(id),
            at: Vec::new(),
        }
    }

    /// Also pin position `position` (0 = first hop) to `id`.
    pub fn and_at(mut self, position: usize, id: NodeId) -> PathPins {
        self.at.push((position, id));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none() && self.at.is_empty()
    }
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
    #[error("the pinned hop {0} is not among the candidates (learn its key first)")]
    PinnedUnknown(NodeId),
    #[error("the pinned first hop {0} is not linked (link to it first)")]
    PinnedNotLinked(NodeId),
    #[error("a hop is pinned at position {position}, outside a {hops}-hop path")]
    PinOutOfRange { position: usize, hops: usize },
    #[error("two different nodes are pinned at position {0}")]
    PinConflict(usize),
}

/// Check a path given by the caller: length, no repeats, not ourselves.
pub fn check_path(local: NodeId, path: &[HopSpec]) -> Result<(), PathError> {
    let ids: Vec<NodeId> = path.iter().map(|h| h.id).collect();
    check_path_ids(local, &ids)
}

/// [`check_path`] on node IDs alone, before any key is looked up: a driver that turns IDs into
/// [`HopSpec`]s from its directory calls this first, so a path through itself is refused as
/// [`PathError::ContainsSelf`] rather than as an unknown peer (ourselves is never in our own
/// directory).
pub fn check_path_ids(local: NodeId, path: &[NodeId]) -> Result<(), PathError> {
    if path.is_empty() || path.len() > MAX_HOPS {
        return Err(PathError::BadLength(path.len()));
    }
    let mut seen = FlatSet::new();
    for id in path {
        if *id == local {
            return Err(PathError::ContainsSelf);
        }
        if !seen.insert(*id) {
            return Err(PathError::Repeated(*id));
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
    select_path_pinned(rng, rules, &PathPins::default(), candidates, hops)
}

/// The pinned candidate per position (`None` where the selector chooses).
fn resolve_pins<'a>(
    pins: &PathPins,
    usable: &[&'a Candidate],
    local: NodeId,
    hops: usize,
) -> Result<Vec<Option<&'a Candidate>>, PathError> {
    let mut fixed: Vec<Option<&Candidate>> = vec![None; hops];
    let all = pins
        .at
        .iter()
        .copied()
        .chain(pins.last.map(|id| (hops - 1, id)));
    for (position, id) in all {
        if position >= hops {
            return Err(PathError::PinOutOfRange { position, hops });
        }
        if id == local {
            return Err(PathError::ContainsSelf);
        }
        let c = usable
            .iter()
            .copied()
            .find(|c| c.hop.id == id)
            .ok_or(PathError::PinnedUnknown(id))?;
        match fixed[position] {
            Some(other) if other.hop.id != id => return Err(PathError::PinConflict(position)),
            _ => fixed[position] = Some(c),
        }
    }
    let mut seen = FlatSet::new();
    for c in fixed.iter().flatten() {
        // One node pinned at two positions.
        if !seen.insert(c.hop.id) {
            return Err(PathError::Repeated(c.hop.id));
        }
    }
    Ok(fixed)
}

/// Choose `hops` hops from `candidates` under the rules above, with the positions in `pins`
/// fixed. A pinned node must be among the candidates (for its onion key); a pinned first hop
/// must be linked.
pub fn select_path_pinned(
    rng: &mut impl RngCore,
    rules: &PathRules,
    pins: &PathPins,
    candidates: &[Candidate],
    hops: usize,
) -> Result<Vec<HopSpec>, PathError> {
    if hops == 0 || hops > MAX_HOPS {
        return Err(PathError::BadLength(hops));
    }
    // Distinct candidates other than ourselves (first occurrence wins).
    let mut ids = FlatSet::new();
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.hop.id != rules.local && ids.insert(c.hop.id))
        .collect();
    let fixed = resolve_pins(pins, &usable, rules.local, hops)?;
    if usable.len() < hops {
        return Err(PathError::NotEnoughCandidates {
            need: hops,
            have: usable.len(),
        });
    }
    let pinned: FlatSet<NodeId> = fixed.iter().flatten().map(|c| c.hop.id).collect();
    let tied = |c: &Candidate| tied_to(c, rules.own_bridge);
    // A pinned last hop tied to the bridge rules out bridge-tied first hops.
    let last_pinned_tied = hops > 1 && fixed[hops - 1].is_some_and(tied);
    let first = match fixed[0] {
        Some(c) if !c.linked => return Err(PathError::PinnedNotLinked(c.hop.id)),
        Some(c) => c,
        None => {
            let firsts: Vec<&Candidate> = usable
                .iter()
                .copied()
                .filter(|c| {
                    c.linked
                        && (rules.guards.is_empty() || rules.guards.contains(&c.hop.id))
                        && !pinned.contains(&c.hop.id)
                })
                .collect();
            let untied: Vec<&Candidate> = if last_pinned_tied {
                firsts.iter().copied().filter(|c| !tied(c)).collect()
            } else {
                firsts.clone()
            };
            match pick(rng, &untied) {
                Some(c) => c,
                None if !firsts.is_empty() => return Err(PathError::BridgeAtBothEnds),
                None => return Err(PathError::NoFirstHop),
            }
        }
    };
    let mut path = vec![first];
    // Pinned hops' introducers count from the start, so free hops avoid them where they can.
    let mut introducers: FlatSet<NodeId> = fixed
        .iter()
        .flatten()
        .chain(std::iter::once(&first))
        .filter_map(|c| c.introducer)
        .collect();
    for (position, pin) in fixed.iter().enumerate().skip(1) {
        let last = position == hops - 1;
        if let Some(c) = *pin {
            if last && tied(path[0]) && tied(c) {
                return Err(PathError::BridgeAtBothEnds);
            }
            path.push(c);
            continue;
        }
        let bridge_both_ends = |c: &Candidate| last && tied(path[0]) && tied(c);
        let allowed = |c: &&Candidate| {
            let repeated = path.iter().any(|p| p.hop.id == c.hop.id) || pinned.contains(&c.hop.id);
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
            let intros: FlatSet<_> = p
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

    #[test]
    fn pins_fix_positions_and_are_checked() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let rules = PathRules {
            local: NodeId([1; 20]),
            own_bridge: None,
            guards: vec![],
        };
        let cands: Vec<Candidate> = (2..9).map(|n| cand(n, Some(100 + n), n < 4)).collect();
        for _ in 0..100 {
            let p = select_path_pinned(
                &mut rng,
                &rules,
                &PathPins::last(NodeId([7; 20])),
                &cands,
                3,
            )
            .unwrap();
            assert_eq!(p[2].id, NodeId([7; 20]));
            check_path(rules.local, &p).unwrap();
        }
        let pins = PathPins::last(NodeId([7; 20])).and_at(0, NodeId([3; 20]));
        let p = select_path_pinned(&mut rng, &rules, &pins, &cands, 4).unwrap();
        assert_eq!((p[0].id, p[3].id), (NodeId([3; 20]), NodeId([7; 20])));
        let mut err =
            |pins: PathPins, hops| select_path_pinned(&mut rng, &rules, &pins, &cands, hops);
        assert_eq!(
            err(PathPins::last(NodeId([50; 20])), 3),
            Err(PathError::PinnedUnknown(NodeId([50; 20])))
        );
        assert_eq!(
            err(PathPins::last(NodeId([1; 20])), 3),
            Err(PathError::ContainsSelf)
        );
        assert_eq!(
            err(PathPins::default().and_at(3, NodeId([2; 20])), 3),
            Err(PathError::PinOutOfRange {
                position: 3,
                hops: 3
            })
        );
        assert_eq!(
            err(
                PathPins::last(NodeId([5; 20])).and_at(2, NodeId([6; 20])),
                3
            ),
            Err(PathError::PinConflict(2))
        );
        assert_eq!(
            err(
                PathPins::last(NodeId([5; 20])).and_at(1, NodeId([5; 20])),
                3
            ),
            Err(PathError::Repeated(NodeId([5; 20])))
        );
        assert_eq!(
            err(PathPins::default().and_at(0, NodeId([6; 20])), 3),
            Err(PathError::PinnedNotLinked(NodeId([6; 20])))
        );
        assert_eq!(
            check_path_ids(NodeId([1; 20]), &[NodeId([2; 20]), NodeId([1; 20])]),
            Err(PathError::ContainsSelf)
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the candidates, a pinned last hop (and a pinned middle hop) end up where
        /// they were pinned, and every rule still holds for the rest of the path; when no path
        /// exists, the error is one of the explained ones.
        #[test]
        fn pinned_paths_keep_the_rules(
            seed in any::<u64>(),
            peers in proptest::collection::vec((any::<bool>(), 0u8..4, any::<bool>()), 2..14),
            hops in 1usize..=MAX_HOPS,
            last_pick in any::<prop::sample::Index>(),
            middle in any::<Option<(prop::sample::Index, prop::sample::Index)>>(),
            bridge in any::<bool>(),
        ) {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let own_bridge = NodeId([200; 20]);
            let rules = PathRules {
                local: NodeId([1; 20]),
                own_bridge: bridge.then_some(own_bridge),
                guards: vec![],
            };
            // Introducer 0 is our bridge; 1..4 others.
            let cands: Vec<Candidate> = peers
                .iter()
                .enumerate()
                .map(|(i, (linked, intro, known))| {
                    let intro = match intro { 0 => Some(200), n if *known => Some(100 + n), _ => None };
                    cand(i as u8 + 2, intro, *linked)
                })
                .collect();
            let last = cands[last_pick.index(cands.len())].hop.id;
            let mut pins = PathPins::last(last);
            if let Some((pos, who)) = middle {
                if hops > 2 {
                    pins = pins.and_at(1 + pos.index(hops - 2), cands[who.index(cands.len())].hop.id);
                }
            }
            match select_path_pinned(&mut rng, &rules, &pins, &cands, hops) {
                Ok(p) => {
                    prop_assert_eq!(p.len(), hops);
                    prop_assert_eq!(p[hops - 1].id, last);
                    for (pos, id) in &pins.at {
                        prop_assert_eq!(p[*pos].id, *id);
                    }
                    prop_assert!(check_path(rules.local, &p).is_ok());
                    let c = |id: NodeId| cands.iter().find(|c| c.hop.id == id).unwrap();
                    prop_assert!(c(p[0].id).linked, "first hop linked");
                    if hops > 1 {
                        let tied = |id| tied_to(c(id), rules.own_bridge);
                        prop_assert!(!(tied(p[0].id) && tied(p[hops - 1].id)), "bridge at both ends");
                    }
                }
                Err(e) => prop_assert!(matches!(
                    e,
                    PathError::NoFirstHop
                        | PathError::NotEnoughCandidates { .. }
                        | PathError::BridgeAtBothEnds
                        | PathError::PinnedNotLinked(_)
                        | PathError::Repeated(_)
                        | PathError::PinConflict(_)
                ), "unexpected {:?}", e),
            }
        }
    }
}

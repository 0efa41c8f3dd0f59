//! The ready set: which circuits may have cells to package, per link.
//!
//! An end of a circuit (the proxy, or a router serving a stream) packages DATA only when its
//! windows, its stream buffers and the link allow. Instead of asking every circuit on every
//! cell, the owner marks a circuit here when something could have made it able to send (a
//! write, a SENDME, an opened stream, a close), and packaging visits only the marked circuits
//! of links that have room. A circuit that turns out to have nothing leaves the set. So a relay
//! with a thousand idle circuits pays per cell what it pays with one.
//!
//! Bounded by the owner's circuit table: one entry per live circuit at most.

use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_wire::NodeId;

#[derive(Debug, Default)]
pub(crate) struct ReadySet {
    links: FlatMap<NodeId, Link>,
}

#[derive(Debug, Default)]
struct Link {
    circuits: FlatSet<u64>,
    /// The circuit served last, for round-robin between a link's ready circuits.
    last: u64,
}

impl ReadySet {
    /// Circuit `key` (whose cells go to `peer`) may have something to send.
    pub(crate) fn mark(&mut self, peer: NodeId, key: u64) {
        self.links.entry(peer).or_default().circuits.insert(key);
    }

    /// Circuit `key` has nothing to send (or is gone).
    pub(crate) fn remove(&mut self, peer: &NodeId, key: u64) {
        if let Some(l) = self.links.get_mut(peer) {
            l.circuits.remove(&key);
            if l.circuits.is_empty() {
                self.links.remove(peer);
            }
        }
    }

    pub(crate) fn remove_link(&mut self, peer: &NodeId) {
        self.links.remove(peer);
    }

    pub(crate) fn has_link(&self, peer: &NodeId) -> bool {
        self.links.contains_key(peer)
    }

    /// Links with at least one ready circuit.
    pub(crate) fn links(&self) -> Vec<NodeId> {
        self.links.keys().copied().collect()
    }

    /// The next ready circuit on `peer`'s link, round-robin.
    pub(crate) fn next(&mut self, peer: &NodeId) -> Option<u64> {
        let l = self.links.get_mut(peer)?;
        let key = l
            .circuits
            .range(l.last.saturating_add(1)..)
            .next()
            .or_else(|| l.circuits.iter().next())
            .copied()?;
        l.last = key;
        Some(key)
    }

    /// Ready circuits in total (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.links.values().map(|l| l.circuits.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_per_link_and_removal() {
        let (a, b) = (NodeId([1; 20]), NodeId([2; 20]));
        let mut r = ReadySet::default();
        r.mark(a, 3);
        r.mark(a, 1);
        r.mark(b, 2);
        r.mark(a, 1);
        assert_eq!(r.len(), 3);
        assert_eq!(r.next(&a), Some(1));
        assert_eq!(r.next(&a), Some(3));
        assert_eq!(r.next(&a), Some(1));
        r.remove(&a, 1);
        assert_eq!(r.next(&a), Some(3));
        r.remove(&a, 3);
        assert!(!r.has_link(&a));
        assert_eq!(r.next(&a), None);
        assert_eq!(r.links(), vec![b]);
        r.remove_link(&b);
        assert_eq!(r.len(), 0);
    }
}

//! Outgoing cells, one bounded FIFO per link, drained round-robin across links.
//!
//! A link the driver reports as congested ([`LinkQueues::set_blocked`], e.g. a data channel
//! over its `bufferedAmount` high-water mark) keeps its cells here; the others keep flowing.
//! Each queued cell is tagged with the local circuit key so the owner can bound how much one
//! circuit may have queued, and drop a dead circuit's cells.

use onionmesh_bounded::FlatMap;
use onionmesh_wire::cell::Cell;
use onionmesh_wire::NodeId;
use std::collections::VecDeque;

#[derive(Debug, Default)]
struct LinkQ {
    cells: VecDeque<(u64, Cell)>,
    blocked: bool,
    in_ready: bool,
}

#[derive(Debug)]
pub(crate) struct LinkQueues {
    links: FlatMap<NodeId, LinkQ>,
    per_circ: FlatMap<u64, usize>,
    ready: VecDeque<NodeId>,
    cap: usize,
}

/// The link queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl LinkQueues {
    pub(crate) fn new(cap: usize) -> LinkQueues {
        LinkQueues {
            links: FlatMap::new(),
            per_circ: FlatMap::new(),
            ready: VecDeque::new(),
            cap,
        }
    }

    /// Queue `cell` for `peer` on behalf of circuit `circ`.
    pub(crate) fn push(&mut self, peer: NodeId, circ: u64, cell: Cell) -> Result<(), Full> {
        let q = self.links.entry(peer).or_default();
        if q.cells.len() >= self.cap {
            return Err(Full);
        }
        q.cells.push_back((circ, cell));
        *self.per_circ.entry(circ).or_default() += 1;
        if !q.blocked && !q.in_ready {
            q.in_ready = true;
            self.ready.push_back(peer);
        }
        Ok(())
    }

    /// Cells queued on `peer`'s link.
    pub(crate) fn len(&self, peer: &NodeId) -> usize {
        self.links.get(peer).map_or(0, |q| q.cells.len())
    }

    /// Cells circuit `circ` has queued (on any link).
    pub(crate) fn circ_len(&self, circ: u64) -> usize {
        self.per_circ.get(&circ).copied().unwrap_or(0)
    }

    /// The next cell to send, round-robin over unblocked links.
    pub(crate) fn pop(&mut self) -> Option<(NodeId, u64, Cell)> {
        while let Some(peer) = self.ready.pop_front() {
            let Some(q) = self.links.get_mut(&peer) else {
                continue;
            };
            q.in_ready = false;
            if q.blocked {
                continue;
            }
            let Some((circ, cell)) = q.cells.pop_front() else {
                continue;
            };
            if !q.cells.is_empty() {
                q.in_ready = true;
                self.ready.push_back(peer);
            } else {
                self.links.remove(&peer);
            }
            self.dec(circ, 1);
            return Some((peer, circ, cell));
        }
        None
    }

    fn dec(&mut self, circ: u64, n: usize) {
        if let Some(c) = self.per_circ.get_mut(&circ) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_circ.remove(&circ);
            }
        }
    }

    pub(crate) fn set_blocked(&mut self, peer: NodeId, blocked: bool) {
        let q = self.links.entry(peer).or_default();
        q.blocked = blocked;
        if !blocked && !q.cells.is_empty() && !q.in_ready {
            q.in_ready = true;
            self.ready.push_back(peer);
        }
        if !blocked && q.cells.is_empty() {
            self.links.remove(&peer);
        }
    }

    pub(crate) fn is_blocked(&self, peer: &NodeId) -> bool {
        self.links.get(peer).is_some_and(|q| q.blocked)
    }

    /// Forget a closed link and everything queued on it.
    pub(crate) fn remove_link(&mut self, peer: &NodeId) {
        if let Some(q) = self.links.remove(peer) {
            for (circ, _) in q.cells {
                self.dec(circ, 1);
            }
        }
    }

    /// Drop what circuit `circ` still has queued on `peer`'s link.
    pub(crate) fn drop_circ(&mut self, peer: &NodeId, circ: u64) {
        if let Some(q) = self.links.get_mut(peer) {
            let before = q.cells.len();
            q.cells.retain(|(c, _)| *c != circ);
            let dropped = before - q.cells.len();
            self.dec(circ, dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionmesh_wire::cell::{CellMsg, CircId};

    fn cell(n: u16) -> Cell {
        Cell::new(CircId(n), &CellMsg::Padding)
    }

    #[test]
    fn round_robin_bounded_and_blockable() {
        let a = NodeId([1; 20]);
        let b = NodeId([2; 20]);
        let mut q = LinkQueues::new(3);
        for i in 0..3 {
            q.push(a, 1, cell(i)).unwrap();
        }
        assert_eq!(q.push(a, 1, cell(9)), Err(Full));
        q.push(b, 2, cell(100)).unwrap();
        assert_eq!(q.circ_len(1), 3);
        let order: Vec<(NodeId, u16)> = std::iter::from_fn(|| q.pop())
            .map(|(p, _, c)| (p, c.circ_id.0))
            .collect();
        assert_eq!(order, vec![(a, 0), (b, 100), (a, 1), (a, 2)]);
        assert_eq!(q.circ_len(1), 0);

        q.set_blocked(a, true);
        q.push(a, 1, cell(5)).unwrap();
        assert!(q.pop().is_none());
        q.set_blocked(a, false);
        assert_eq!(q.pop().unwrap().2.circ_id.0, 5);

        q.push(a, 1, cell(6)).unwrap();
        q.push(a, 3, cell(7)).unwrap();
        q.drop_circ(&a, 1);
        assert_eq!(q.len(&a), 1);
        q.remove_link(&a);
        assert_eq!(q.circ_len(3), 0);
        assert!(q.pop().is_none());
    }
}

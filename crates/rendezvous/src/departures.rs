//! Departures waiting to be announced: batched and bounded (issue 13, item 1).

use crate::Time;
use onionmesh_wire::signal::MAX_PEERS_GONE;
use onionmesh_wire::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

/// Most departures held before an early announcement. Ten full `PeersGone` frames.
pub(crate) const MAX_PENDING: usize = 10 * MAX_PEERS_GONE;

/// What to announce now: to pages, and (only this bridge's own peers) to federated bridges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub gone: Vec<NodeId>,
    pub left_here: Vec<NodeId>,
}

/// Peers gone since the last announcement. A peer that comes back before the announcement is
/// taken off the list, so nobody is told it left.
#[derive(Debug, Default)]
pub(crate) struct Departures {
    gone: BTreeSet<NodeId>,
    /// The subset registered at this bridge: federated bridges are told about these only.
    left_here: BTreeSet<NodeId>,
    due: Option<Time>,
}

impl Departures {
    /// `id` left (`here`: it was registered at this bridge). Returns true when the list is full
    /// and should be announced now rather than at [`Departures::due`].
    pub fn left(&mut self, now: Time, batch: Duration, id: NodeId, here: bool) -> bool {
        self.gone.insert(id);
        if here {
            self.left_here.insert(id);
        }
        self.due.get_or_insert(now + batch);
        self.gone.len() >= MAX_PENDING
    }

    /// `id` is back (registered here or announced by a federated bridge) before it was
    /// announced as gone.
    pub fn returned(&mut self, id: &NodeId) {
        self.gone.remove(id);
        self.left_here.remove(id);
        if self.gone.is_empty() {
            self.due = None;
        }
    }

    /// Departures waiting to be announced.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.gone.len()
    }

    /// When the next announcement is due.
    pub fn due(&self) -> Option<Time> {
        self.due
    }

    /// Everything pending, emptying the list.
    pub fn take(&mut self) -> Announcement {
        self.due = None;
        Announcement {
            gone: std::mem::take(&mut self.gone).into_iter().collect(),
            left_here: std::mem::take(&mut self.left_here).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_until_due_and_forgets_returns() {
        let mut d = Departures::default();
        let batch = Duration::from_millis(500);
        let t = Time::from_millis(1_000);
        assert!(!d.left(t, batch, NodeId([1; 20]), true));
        assert!(!d.left(
            t + Duration::from_millis(100),
            batch,
            NodeId([2; 20]),
            false
        ));
        assert_eq!(
            d.due(),
            Some(t + batch),
            "the first departure sets the deadline"
        );
        d.left(t, batch, NodeId([3; 20]), true);
        d.returned(&NodeId([3; 20]));
        let a = d.take();
        assert_eq!(a.gone, vec![NodeId([1; 20]), NodeId([2; 20])]);
        assert_eq!(a.left_here, vec![NodeId([1; 20])]);
        assert_eq!(d.due(), None);
        assert_eq!(d.take(), Announcement::default());
    }

    #[test]
    fn a_full_list_asks_for_an_early_announcement() {
        let mut d = Departures::default();
        let t = Time::ZERO;
        let mut full = false;
        for i in 0..MAX_PENDING {
            let mut id = [0u8; 20];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            full = d.left(t, Duration::from_secs(1), NodeId(id), true);
        }
        assert!(full);
        assert_eq!(d.take().gone.len(), MAX_PENDING);
    }
}

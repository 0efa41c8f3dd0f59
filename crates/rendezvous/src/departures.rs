//! Departures waiting to be announced: batched and bounded (issue 13, item 1).
//!
//! Pages get at most one `PeersGone` frame (of at most `MAX_PEERS_GONE` IDs) per batch
//! interval, so a mass departure costs each page a steady trickle rather than a burst, and the
//! bridge never builds more than one frame per page at once. The list for pages is capped at
//! [`MAX_PENDING`]; beyond it departures are not announced to pages (they are a hint: a page
//! also learns from failed links and introductions). Federated bridges, whose peer tables must
//! stay right, get every departure of this bridge's own peers, in `PeersLeft` frames.

use crate::Time;
use onionmesh_wire::signal::MAX_PEERS_GONE;
use onionmesh_wire::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

/// Most departures held for pages: ten full `PeersGone` frames.
pub(crate) const MAX_PENDING: usize = 10 * MAX_PEERS_GONE;

/// What to announce now: to pages (at most one frame's worth), and (only this bridge's own
/// peers, all of them) to federated bridges.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub gone: Vec<NodeId>,
    pub left_here: Vec<NodeId>,
}

/// Peers gone since the last announcement. A peer that comes back before it is announced is
/// taken off the lists, so nobody is told it left.
#[derive(Debug, Default)]
pub(crate) struct Departures {
    gone: BTreeSet<NodeId>,
    /// This bridge's own peers that left. Bounded by the registrations of one batch interval.
    left_here: BTreeSet<NodeId>,
    due: Option<Time>,
}

impl Departures {
    /// `id` left (`here`: it was registered at this bridge). Returns false if the list for
    /// pages is full and `id` will not be announced to them.
    pub fn left(&mut self, now: Time, batch: Duration, id: NodeId, here: bool) -> bool {
        if here {
            self.left_here.insert(id);
        }
        self.due.get_or_insert(now + batch);
        if self.gone.len() >= MAX_PENDING && !self.gone.contains(&id) {
            return false;
        }
        self.gone.insert(id);
        true
    }

    /// `id` is back (registered here or announced by a federated bridge) before it was
    /// announced as gone.
    pub fn returned(&mut self, id: &NodeId) {
        self.gone.remove(id);
        self.left_here.remove(id);
        if self.gone.is_empty() && self.left_here.is_empty() {
            self.due = None;
        }
    }

    /// When the next announcement is due.
    pub fn due(&self) -> Option<Time> {
        self.due
    }

    /// Departures waiting for pages.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.gone.len()
    }

    /// What is due at `now`: up to one frame of departures for pages, and every departure for
    /// bridges. If more wait for pages, the next announcement is due one `batch` later.
    pub fn take(&mut self, now: Time, batch: Duration) -> Announcement {
        let mut gone = Vec::with_capacity(self.gone.len().min(MAX_PEERS_GONE));
        while gone.len() < MAX_PEERS_GONE {
            let Some(id) = self.gone.pop_first() else {
                break;
            };
            gone.push(id);
        }
        self.due = (!self.gone.is_empty()).then_some(now + batch);
        Announcement {
            gone,
            left_here: std::mem::take(&mut self.left_here).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> NodeId {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        NodeId(id)
    }

    #[test]
    fn batches_until_due_and_forgets_returns() {
        let mut d = Departures::default();
        let batch = Duration::from_millis(500);
        let t = Time::from_millis(1_000);
        assert!(d.left(t, batch, NodeId([1; 20]), true));
        assert!(d.left(
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
        let a = d.take(t + batch, batch);
        assert_eq!(a.gone, vec![NodeId([1; 20]), NodeId([2; 20])]);
        assert_eq!(a.left_here, vec![NodeId([1; 20])]);
        assert_eq!(d.due(), None);
        assert_eq!(d.take(t + batch, batch), Announcement::default());
    }

    #[test]
    fn pages_get_one_frame_per_interval_and_bridges_everything() {
        let mut d = Departures::default();
        let batch = Duration::from_millis(500);
        let t = Time::ZERO;
        for i in 0..MAX_PENDING + 5 {
            let recorded = d.left(t, batch, id(i), true);
            assert_eq!(recorded, i < MAX_PENDING, "{i}");
        }
        assert_eq!(d.len(), MAX_PENDING);
        let first = d.take(t + batch, batch);
        assert_eq!(first.gone.len(), MAX_PEERS_GONE);
        assert_eq!(
            first.left_here.len(),
            MAX_PENDING + 5,
            "bridges hear of every one"
        );
        assert_eq!(d.due(), Some(t + batch + batch));
        let mut frames = 1;
        while d.due().is_some() {
            let a = d.take(t, batch);
            assert!(a.gone.len() <= MAX_PEERS_GONE && a.left_here.is_empty());
            frames += 1;
        }
        assert_eq!(frames, MAX_PENDING / MAX_PEERS_GONE);
    }
}

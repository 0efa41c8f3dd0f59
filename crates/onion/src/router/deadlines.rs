//! When each circuit next needs looking at, indexed by time, so `poll_timeout` does not visit
//! every circuit.
//!
//! An entry may be early, never late: traffic pushes a circuit's real deadline later without
//! touching the index (that would cost a tree update per cell), and `handle_timeout` re-arms a
//! circuit it finds still alive. Only a change that brings a deadline earlier (an extension
//! starting) re-arms at once. So a busy circuit costs one spurious wake-up per idle period.

use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_wire::Time;

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    by_time: FlatSet<(Time, u64)>,
    at: FlatMap<u64, Time>,
}

impl Deadlines {
    /// Look at `key` no later than `t` (an earlier entry stays).
    pub(crate) fn arm(&mut self, key: u64, t: Time) {
        if let Some(old) = self.at.get(&key) {
            if *old <= t {
                return;
            }
            self.by_time.remove(&(*old, key));
        }
        self.at.insert(key, t);
        self.by_time.insert((t, key));
    }

    pub(crate) fn remove(&mut self, key: u64) {
        if let Some(t) = self.at.remove(&key) {
            self.by_time.remove(&(t, key));
        }
    }

    /// The earliest entry.
    pub(crate) fn next(&self) -> Option<Time> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Remove and return every circuit due at `now`.
    pub(crate) fn due(&mut self, now: Time) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&(t, key)) = self.by_time.first() {
            if t > now {
                break;
            }
            self.by_time.pop_first();
            self.at.remove(&key);
            out.push(key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_wins_and_due_pops_in_order() {
        let t = |ms| Time::from_millis(ms);
        let mut d = Deadlines::default();
        d.arm(1, t(500));
        d.arm(2, t(300));
        d.arm(1, t(900)); // later: ignored
        d.arm(1, t(100)); // earlier: moves
        assert_eq!(d.next(), Some(t(100)));
        assert_eq!(d.due(t(300)), vec![1, 2]);
        assert_eq!(d.next(), None);
        d.arm(3, t(50));
        d.remove(3);
        assert_eq!(d.due(t(1000)), Vec::<u64>::new());
    }
}

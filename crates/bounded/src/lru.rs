//! A bounded map that evicts its least recently used entry.

use crate::flat::FlatMap;

/// A map of at most `capacity` entries (at least 1).
///
/// `get_mut`, `touch` and `insert` mark an entry as most recently used; `peek` does not. Inserting
/// a new key into a full map evicts the least recently used entry and returns it. Ordered maps
/// throughout, so iteration and eviction are deterministic (the simulators rely on it).
/// Lookups are O(log n); insert, touch and eviction O(n) (sorted-`Vec` maps, see [`crate::flat`]).
#[derive(Debug, Clone)]
pub struct BoundedLru<K: Ord + Clone, V> {
    capacity: usize,
    tick: u64,
    entries: FlatMap<K, (u64, V)>,
    by_use: FlatMap<u64, K>,
}

impl<K: Ord + Clone, V> BoundedLru<K, V> {
    /// An empty map holding at most `capacity` entries (0 is taken as 1).
    pub fn new(capacity: usize) -> Self {
        BoundedLru {
            capacity: capacity.max(1),
            tick: 0,
            entries: FlatMap::new(),
            by_use: FlatMap::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    fn bump(&mut self, key: &K) {
        if let Some((stamp, _)) = self.entries.get_mut(key) {
            self.by_use.remove(stamp);
            self.tick += 1;
            *stamp = self.tick;
            self.by_use.insert(self.tick, key.clone());
        }
    }

    /// Insert or replace `key`, marking it most recently used. Returns the entry evicted to make
    /// room, if any (never the key just inserted).
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some(slot) = self.entries.get_mut(&key) {
            slot.1 = value;
            self.bump(&key);
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.pop_lru()
        } else {
            None
        };
        self.tick += 1;
        self.by_use.insert(self.tick, key.clone());
        self.entries.insert(key, (self.tick, value));
        evicted
    }

    /// The value for `key`, marking it most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.bump(key);
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    /// Mark `key` most recently used; false if absent.
    pub fn touch(&mut self, key: &K) -> bool {
        let present = self.entries.contains_key(key);
        self.bump(key);
        present
    }

    /// The value for `key`, without changing its recency.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (stamp, v) = self.entries.remove(key)?;
        self.by_use.remove(&stamp);
        Some(v)
    }

    /// Remove and return the least recently used entry.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        let (_, key) = self.by_use.pop_first()?;
        let (_, v) = self.entries.remove(&key)?;
        Some((key, v))
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (_, v))| (k, v))
    }

    /// Entries in key order, mutable; recency unchanged.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, (_, v))| (k, v))
    }

    /// Keep only the entries for which `f` is true.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        let by_use = &mut self.by_use;
        self.entries.retain(|k, (stamp, v)| {
            let keep = f(k, v);
            if !keep {
                by_use.remove(stamp);
            }
            keep
        });
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_use.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut m = BoundedLru::new(2);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(2, "b"), None);
        assert!(m.touch(&1));
        assert_eq!(m.insert(3, "c"), Some((2, "b")));
        assert_eq!(m.peek(&1), Some(&"a"));
        // peek does not refresh: 1 is now older than 3.
        assert_eq!(m.insert(4, "d"), Some((1, "a")));
        // Replacing an existing key evicts nothing.
        assert_eq!(m.insert(4, "e"), None);
        assert_eq!(m.len(), 2);
        m.retain(|k, _| *k != 3);
        assert_eq!(m.pop_lru(), Some((4, "e")));
        assert!(m.is_empty());
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity(cap in 1usize..8, ops in proptest::collection::vec((0u8..3, 0u8..16), 0..200)) {
            let mut m = BoundedLru::new(cap);
            for (op, k) in ops {
                match op {
                    0 => { m.insert(k, k); }
                    1 => { m.get_mut(&k); }
                    _ => { m.remove(&k); }
                }
                prop_assert!(m.len() <= cap);
                prop_assert_eq!(m.entries.len(), m.by_use.len());
            }
        }
    }
}

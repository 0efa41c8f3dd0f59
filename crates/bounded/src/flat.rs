//! Ordered maps and sets stored as one sorted `Vec`: [`FlatMap`] and [`FlatSet`].
//!
//! They replace `std::collections::BTreeMap`/`BTreeSet` in the crates compiled into the wasm
//! bundle. A B-tree's code is large and is instantiated once per key/value type *and per crate*
//! (about 860 KB of the 1.94 MB of wasm code were `BTreeMap` instantiations, 2026-11-30); a
//! sorted `Vec` needs only a binary search and a `memmove` per type. The storage is ICU4X's
//! [`litemap::LiteMap`]; this module adds the `BTreeMap` operations it lacks (`range`,
//! `pop_first`, `retain` with `&mut V`, ...), with the same semantics, so call sites only change
//! the type name.
//!
//! Costs: lookup O(log n); insert and remove O(n) (a `memmove` of the entries after the key);
//! iteration in key order, like `BTreeMap`. Every table in onionmesh is bounded; the few large
//! hot ones keep a `BTreeMap` (see the README's "wasm bundle" paragraph).
//!
//! Differences from `BTreeMap`: `range` with a start after its end yields nothing instead of
//! panicking.

use litemap::LiteMap;
use std::borrow::Borrow;
use std::fmt;
use std::iter::{Map, Skip, Take};
use std::ops::{Bound, Index, RangeBounds};
use std::slice;

/// A view into one entry of a [`FlatMap`] (occupied or vacant), as `btree_map::Entry`.
pub type Entry<'a, K, V> = litemap::Entry<'a, K, V, Vec<(K, V)>>;

/// Entries of a [`FlatMap`] in key order (concrete, so a borrow ends where it is consumed).
pub type Iter<'a, K, V> = Map<slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

/// Entries of a [`FlatMap`] in key order, values mutable.
pub type IterMut<'a, K, V> = <&'a mut LiteMap<K, V> as IntoIterator>::IntoIter;

/// Keys of a [`FlatMap`] (or elements of a [`FlatSet`]) in order.
pub type Keys<'a, K, V> = Map<slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> &'a K>;

/// Values of a [`FlatMap`] in key order.
pub type Values<'a, K, V> = Map<slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> &'a V>;

/// Values of a [`FlatMap`] in key order, mutable.
pub type ValuesMut<'a, K, V> = Map<IterMut<'a, K, V>, fn((&'a K, &'a mut V)) -> &'a mut V>;

/// Entries of a [`FlatMap`] in a key range, values mutable.
pub type RangeMut<'a, K, V> = Take<Skip<IterMut<'a, K, V>>>;

/// An ordered map in one sorted `Vec<(K, V)>`; the `BTreeMap` API onionmesh uses.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlatMap<K, V>(LiteMap<K, V>);

/// Index range `[start, end)` of the entries whose keys fall in `range`, in a slice sorted by key.
fn index_range<K, Q, V, R>(entries: &[(K, V)], range: &R) -> (usize, usize)
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
    R: RangeBounds<Q> + ?Sized,
{
    let start = match range.start_bound() {
        Bound::Included(q) => entries.partition_point(|(k, _)| k.borrow() < q),
        Bound::Excluded(q) => entries.partition_point(|(k, _)| k.borrow() <= q),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(q) => entries.partition_point(|(k, _)| k.borrow() <= q),
        Bound::Excluded(q) => entries.partition_point(|(k, _)| k.borrow() < q),
        Bound::Unbounded => entries.len(),
    };
    (start, end.max(start))
}

impl<K, V> FlatMap<K, V> {
    /// An empty map (no allocation).
    pub const fn new() -> Self {
        FlatMap(LiteMap::new_vec())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// The entries, sorted by key.
    pub fn as_slice(&self) -> &[(K, V)] {
        self.0.as_slice()
    }

    /// Run `f` on the sorted `Vec` of entries. `f` must keep it sorted with unique keys
    /// (removing entries or changing values does).
    fn with_vec<T>(&mut self, f: impl FnOnce(&mut Vec<(K, V)>) -> T) -> T {
        let mut entries = std::mem::take(&mut self.0).into_tuple_vec();
        let out = f(&mut entries);
        self.0 = LiteMap::from_sorted_store_unchecked(entries);
        out
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.as_slice().iter().map(|(k, v)| (k, v))
    }

    /// Entries in key order, values mutable.
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        self.0.iter_mut()
    }

    /// Keys in order.
    pub fn keys(&self) -> Keys<'_, K, V> {
        self.as_slice().iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> Values<'_, K, V> {
        self.as_slice().iter().map(|(_, v)| v)
    }

    /// Values in key order, mutable.
    pub fn values_mut(&mut self) -> ValuesMut<'_, K, V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// Keys in order, consuming the map.
    pub fn into_keys(self) -> impl DoubleEndedIterator<Item = K> + ExactSizeIterator {
        self.0.into_tuple_vec().into_iter().map(|(k, _)| k)
    }

    /// Values in key order, consuming the map.
    pub fn into_values(self) -> impl DoubleEndedIterator<Item = V> + ExactSizeIterator {
        self.0.into_tuple_vec().into_iter().map(|(_, v)| v)
    }

    /// The entry with the smallest key.
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.0.first()
    }

    /// The entry with the largest key.
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.0.last()
    }

    /// Remove and return the entry with the smallest key (O(n)).
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        if self.is_empty() {
            return None;
        }
        self.with_vec(|v| Some(v.remove(0)))
    }

    /// Remove and return the entry with the largest key.
    pub fn pop_last(&mut self) -> Option<(K, V)> {
        self.with_vec(|v| v.pop())
    }

    /// Keep only the entries for which `keep` returns true, visiting them in key order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.with_vec(|v| v.retain_mut(|(k, v)| keep(k, v)))
    }
}

impl<K: Ord, V> FlatMap<K, V> {
    /// The value for `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.get(key)
    }

    /// The key and value for `key`.
    pub fn get_key_value<Q: Ord + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        let i = self.0.find_index(key).ok()?;
        self.0.get_indexed(i)
    }

    /// The value for `key`, mutable.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.0.get_mut(key)
    }

    /// True if `key` has an entry.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(key)
    }

    /// Insert or replace; returns the old value (O(n) for a new key).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.insert(key, value)
    }

    /// Remove `key`'s entry and return its value (O(n)).
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.0.remove(key)
    }

    /// Remove `key`'s entry and return it (O(n)).
    pub fn remove_entry<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let i = self.0.find_index(key).ok()?;
        Some(self.with_vec(|v| v.remove(i)))
    }

    /// The entry for `key`, to read, insert or change in place.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        self.0.entry(key)
    }

    /// Entries whose keys fall in `range`, in key order (empty if the start is after the end).
    pub fn range<Q, R>(&self, range: R) -> Iter<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        let entries = self.as_slice();
        let (start, end) = index_range(entries, &range);
        entries[start..end].iter().map(|(k, v)| (k, v))
    }

    /// Entries whose keys fall in `range`, values mutable.
    pub fn range_mut<Q, R>(&mut self, range: R) -> RangeMut<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        let (start, end) = index_range(self.as_slice(), &range);
        self.0.iter_mut().skip(start).take(end - start)
    }

    /// Move every entry with a key at or after `key` into a new map.
    pub fn split_off<Q: Ord + ?Sized>(&mut self, key: &Q) -> Self
    where
        K: Borrow<Q>,
    {
        let at = self.as_slice().partition_point(|(k, _)| k.borrow() < key);
        FlatMap(LiteMap::from_sorted_store_unchecked(
            self.with_vec(|v| v.split_off(at)),
        ))
    }
}

impl<K, V> Default for FlatMap<K, V> {
    fn default() -> Self {
        FlatMap::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for FlatMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> Index<&Q> for FlatMap<K, V> {
    type Output = V;

    /// The value for `key`; panics if absent, as `BTreeMap`'s.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("FlatMap: no entry for key")
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for FlatMap<K, V> {
    /// Later duplicates replace earlier ones, as in `BTreeMap`.
    ///
    /// One [`insert`](FlatMap::insert) per entry, not litemap's collect-then-sort: a stable sort
    /// is about 2 KB of wasm per key/value type (22 KB in all, 2026-12-01) where `insert` is
    /// already there. O(n log n) for entries in key order (the usual case: they come from another
    /// sorted map), O(n^2) moves at worst; every onionmesh table is bounded and small.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = FlatMap::new();
        map.extend(iter);
        map
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for FlatMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Ord, V> Extend<(K, V)> for FlatMap<K, V> {
    /// Later duplicates replace earlier entries, as in `BTreeMap`. One
    /// [`insert`](FlatMap::insert) per entry (see `from_iter` for why).
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl<K, V> IntoIterator for FlatMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a FlatMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter().map(|(k, v)| (k, v))
    }
}

impl<'a, K, V> IntoIterator for &'a mut FlatMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = <&'a mut LiteMap<K, V> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        (&mut self.0).into_iter()
    }
}

/// An ordered set in one sorted `Vec<T>` (a [`FlatMap`] to `()`); the `BTreeSet` API onionmesh
/// uses.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlatSet<T>(FlatMap<T, ()>);

impl<T> FlatSet<T> {
    /// An empty set (no allocation).
    pub const fn new() -> Self {
        FlatSet(FlatMap::new())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the set has no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Remove every element.
    pub fn clear(&mut self) {
        self.0.clear()
    }

    /// Elements in order.
    pub fn iter(&self) -> Keys<'_, T, ()> {
        self.0.keys()
    }

    /// The smallest element.
    pub fn first(&self) -> Option<&T> {
        self.0.first_key_value().map(|(k, _)| k)
    }

    /// The largest element.
    pub fn last(&self) -> Option<&T> {
        self.0.last_key_value().map(|(k, _)| k)
    }

    /// Remove and return the smallest element (O(n)).
    pub fn pop_first(&mut self) -> Option<T> {
        self.0.pop_first().map(|(k, _)| k)
    }

    /// Remove and return the largest element.
    pub fn pop_last(&mut self) -> Option<T> {
        self.0.pop_last().map(|(k, _)| k)
    }

    /// Keep only the elements for which `keep` returns true, visiting them in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|k, _| keep(k))
    }
}

impl<T: Ord> FlatSet<T> {
    /// True if `value` is in the set.
    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.0.contains_key(value)
    }

    /// The element equal to `value`.
    pub fn get<Q: Ord + ?Sized>(&self, value: &Q) -> Option<&T>
    where
        T: Borrow<Q>,
    {
        self.0.get_key_value(value).map(|(k, _)| k)
    }

    /// Add `value`; false if it was already there (the set is then unchanged). O(n).
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.entry(value) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(());
                true
            }
        }
    }

    /// Remove `value`; false if it was not there. O(n).
    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.0.remove(value).is_some()
    }

    /// Remove and return the element equal to `value`.
    pub fn take<Q: Ord + ?Sized>(&mut self, value: &Q) -> Option<T>
    where
        T: Borrow<Q>,
    {
        self.0.remove_entry(value).map(|(k, _)| k)
    }

    /// Elements that fall in `range`, in order (empty if the start is after the end).
    pub fn range<Q, R>(&self, range: R) -> Keys<'_, T, ()>
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        let entries = self.0.as_slice();
        let (start, end) = index_range(entries, &range);
        entries[start..end].iter().map(|(k, _)| k)
    }
}

impl<T> Default for FlatSet<T> {
    fn default() -> Self {
        FlatSet::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for FlatSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T: Ord> FromIterator<T> for FlatSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        FlatSet(iter.into_iter().map(|k| (k, ())).collect())
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for FlatSet<T> {
    fn from(values: [T; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<T: Ord> Extend<T> for FlatSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|k| (k, ())))
    }
}

impl<'a, T: Ord + Copy + 'a> Extend<&'a T> for FlatSet<T> {
    fn extend<I: IntoIterator<Item = &'a T>>(&mut self, iter: I) {
        self.extend(iter.into_iter().copied())
    }
}

impl<T> IntoIterator for FlatSet<T> {
    type Item = T;
    type IntoIter = std::iter::Map<std::vec::IntoIter<(T, ())>, fn((T, ())) -> T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(k, ())| k)
    }
}

impl<'a, T> IntoIterator for &'a FlatSet<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (T, ())>, fn(&'a (T, ())) -> &'a T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.as_slice().iter().map(|(k, ())| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u8),
        PopFirst,
        PopLast,
        RetainEven,
        Entry(u8),
        SplitOff(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            any::<u8>().prop_map(Op::Remove),
            Just(Op::PopFirst),
            Just(Op::PopLast),
            Just(Op::RetainEven),
            any::<u8>().prop_map(Op::Entry),
            any::<u8>().prop_map(Op::SplitOff),
        ]
    }

    proptest! {
        /// Every operation gives what `BTreeMap` gives, and iteration, `range` and `first/last`
        /// agree after each one.
        #[test]
        fn flat_map_behaves_as_btree_map(ops in proptest::collection::vec(op(), 0..200), lo: u8, hi: u8) {
            let mut flat = FlatMap::new();
            let mut tree = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(flat.insert(k, v), tree.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(flat.remove(&k), tree.remove(&k)),
                    Op::PopFirst => prop_assert_eq!(flat.pop_first(), tree.pop_first()),
                    Op::PopLast => prop_assert_eq!(flat.pop_last(), tree.pop_last()),
                    Op::RetainEven => {
                        flat.retain(|k, v| { *v = v.wrapping_add(1); k % 2 == 0 });
                        tree.retain(|k, v| { *v = v.wrapping_add(1); k % 2 == 0 });
                    }
                    Op::Entry(k) => {
                        *flat.entry(k).or_insert(7) += 1;
                        *tree.entry(k).or_insert(7) += 1;
                    }
                    Op::SplitOff(k) => {
                        let a: Vec<_> = flat.split_off(&k).into_iter().collect();
                        let b: Vec<_> = tree.split_off(&k).into_iter().collect();
                        prop_assert_eq!(a, b);
                    }
                }
                prop_assert!(flat.iter().eq(tree.iter()));
                prop_assert_eq!(flat.len(), tree.len());
                prop_assert_eq!(flat.first_key_value(), tree.first_key_value());
                prop_assert_eq!(flat.last_key_value(), tree.last_key_value());
            }
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            prop_assert!(flat.range(lo..hi).eq(tree.range(lo..hi)));
            prop_assert!(flat.range(lo..=hi).rev().eq(tree.range(lo..=hi).rev()));
            prop_assert!(flat.range(..hi).eq(tree.range(..hi)));
            prop_assert!(flat.range((Bound::Excluded(lo), Bound::Unbounded)).eq(tree.range((Bound::Excluded(lo), Bound::Unbounded))));
            prop_assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
        }

        /// A set built, extended and trimmed the same way as a `BTreeSet` holds the same elements.
        #[test]
        fn flat_set_behaves_as_btree_set(a in proptest::collection::vec(any::<u8>(), 0..100), b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut flat: FlatSet<u8> = a.iter().copied().collect();
            let mut tree: BTreeSet<u8> = a.iter().copied().collect();
            flat.extend(b.iter().copied());
            tree.extend(b.iter().copied());
            prop_assert!(flat.iter().eq(tree.iter()));
            for x in &b {
                prop_assert_eq!(flat.insert(*x), tree.insert(*x));
                prop_assert_eq!(flat.remove(&x.wrapping_mul(3)), tree.remove(&x.wrapping_mul(3)));
            }
            prop_assert!(flat.iter().eq(tree.iter()));
            prop_assert_eq!(flat.pop_first(), tree.pop_first());
            prop_assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
        }
    }
}

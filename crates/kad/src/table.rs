//! The routing table: 160 fixed buckets of at most `k` contacts, as the spec says ("for bucket j,
//! 2^j <= distance < 2^(j+1)").
//!
//! Why fixed buckets rather than BEP 5's splitting ones: both hold the same contacts for a random
//! network (only buckets near our own ID ever fill up), the fixed layout is what the spec
//! describes, and a bucket's index is a pure function of the distance, which keeps the code and
//! its invariants small. The cost is that far buckets cannot grow past `k` even when space would
//! allow; lookups do not need them to.
//!
//! Node states follow BEP 5's 15-minute rules:
//! - **good**: it has answered one of our queries, has not failed since, and we heard from it
//!   (an answer or a query of its own) within the last 15 minutes;
//! - **questionable**: anything else that has not failed `max_failures` queries in a row;
//! - **bad**: it failed `max_failures` queries in a row. A bad entry is replaced as soon as a
//!   candidate is at hand; until then it is kept but never handed out.
//!
//! A full bucket takes a newcomer only in place of a bad entry. Otherwise the newcomer waits in
//! the bucket's bounded replacement cache, and the table asks the caller to ping the least
//! recently seen questionable entry ([`Insert::Full`] with `ping`): if that entry keeps failing
//! it turns bad and the newest waiting candidate takes its place.

use crate::contact::{bucket_index, merge_introducers, ID_BITS};
use crate::Time;
use onionmesh_wire::kad::Contact;
use onionmesh_wire::NodeId;
use std::time::Duration;

/// Tunables of the routing table.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Contacts per bucket (Kademlia's `k`).
    pub k: usize,
    /// Candidates waiting per full bucket.
    pub replacements: usize,
    /// Failed queries in a row after which a contact is bad.
    pub max_failures: u8,
    /// How long an answer keeps a contact good (15 minutes in BEP 5).
    pub good_for: Duration,
    /// A bucket that has not changed for this long needs a refresh lookup (15 minutes).
    pub refresh_after: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            k: 8,
            replacements: 8,
            max_failures: 2,
            good_for: Duration::from_secs(15 * 60),
            refresh_after: Duration::from_secs(15 * 60),
        }
    }
}

/// A contact's standing, see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Good,
    Questionable,
    Bad,
}

#[derive(Debug, Clone)]
struct Entry {
    contact: Contact,
    /// Last time it answered us or queried us.
    last_seen: Time,
    ever_answered: bool,
    /// Failed queries in a row.
    failures: u8,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// Candidates for a full bucket, newest last. A plain `Vec` rather than the workspace's
    /// `BoundedLru`: it holds `replacements` (8) contacts, is consumed newest first (BEP 5), and
    /// the LRU map can only give back its oldest entry.
    replacements: Vec<Contact>,
    last_changed: Time,
}

/// What happened to a contact offered to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// It was new and took a free slot (or a bad entry's slot).
    Added,
    /// It was already there; its record was refreshed.
    Updated,
    /// Its bucket is full; it waits in the replacement cache. If `ping` is set, the caller should
    /// ping that questionable entry and report the outcome, so that a dead entry makes room.
    Full { ping: Option<Contact> },
    /// Our own ID: never stored.
    OwnId,
}

/// The outcome of a failed query, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not in the table (never was, or already replaced).
    Unknown,
    /// Counted; the contact is not bad yet.
    Counted { failures: u8 },
    /// The contact turned bad and was replaced by a waiting candidate.
    Replaced { by: NodeId },
    /// The contact turned bad; no candidate was waiting, so it stays until one comes.
    Bad,
}

/// One node's view of the network. See the module docs.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    me: NodeId,
    cfg: TableConfig,
    /// Exactly [`ID_BITS`] buckets; bucket `j` holds distances in `[2^j, 2^(j+1))`.
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// `cfg.k` and `cfg.max_failures` are raised to at least 1.
    pub fn new(me: NodeId, mut cfg: TableConfig, now: Time) -> RoutingTable {
        cfg.k = cfg.k.max(1);
        cfg.max_failures = cfg.max_failures.max(1);
        let buckets = (0..ID_BITS)
            .map(|_| Bucket {
                last_changed: now,
                ..Bucket::default()
            })
            .collect();
        RoutingTable { me, cfg, buckets }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    fn status_of(&self, e: &Entry, now: Time) -> Status {
        if e.failures >= self.cfg.max_failures {
            Status::Bad
        } else if e.failures == 0
            && e.ever_answered
            && !now.elapsed_since(e.last_seen, self.cfg.good_for)
        {
            Status::Good
        } else {
            Status::Questionable
        }
    }

    /// The standing of `id`, if it is in the table.
    pub fn status(&self, id: &NodeId, now: Time) -> Option<Status> {
        let j = bucket_index(&self.me, id)?;
        let e = self.buckets[j]
            .entries
            .iter()
            .find(|e| e.contact.id == *id)?;
        Some(self.status_of(e, now))
    }

    /// The stored contact for `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Contact> {
        let j = bucket_index(&self.me, id)?;
        self.buckets[j]
            .entries
            .iter()
            .find(|e| e.contact.id == *id)
            .map(|e| &e.contact)
    }

    /// Number of contacts stored (all states).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(entries, replacement candidates)` in bucket `j`.
    pub fn bucket_len(&self, j: usize) -> (usize, usize) {
        self.buckets
            .get(j)
            .map_or((0, 0), |b| (b.entries.len(), b.replacements.len()))
    }

    /// Every stored contact with its bucket index, for inspection and tests.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Contact)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .flat_map(|(j, b)| b.entries.iter().map(move |e| (j, &e.contact)))
    }

    /// Every replacement candidate with its bucket index.
    pub fn iter_replacements(&self) -> impl Iterator<Item = (usize, &Contact)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .flat_map(|(j, b)| b.replacements.iter().map(move |c| (j, c)))
    }

    /// `contact` answered one of our queries: it becomes good.
    pub fn on_answer(&mut self, now: Time, contact: &Contact) -> Insert {
        self.offer(now, contact, true)
    }

    /// `contact` sent us a query: it is alive, but only answers make it good.
    pub fn on_query(&mut self, now: Time, contact: &Contact) -> Insert {
        self.offer(now, contact, false)
    }

    /// `contact` was handed to us (by a bridge, or a lookup result) without talking to it yet.
    /// It is added only if there is room; it never displaces anyone and does not count as seen.
    pub fn on_heard_of(&mut self, now: Time, contact: &Contact) -> Insert {
        let Some(j) = bucket_index(&self.me, &contact.id) else {
            return Insert::OwnId;
        };
        let k = self.cfg.k;
        let b = &mut self.buckets[j];
        if let Some(e) = b.entries.iter_mut().find(|e| e.contact.id == contact.id) {
            // A new way to reach it (its introducers, its bridge) is worth keeping: the node
            // layer routes through the first introducer it is linked to.
            merge_contact(&mut e.contact, contact);
            return Insert::Updated;
        }
        if b.entries.len() < k {
            b.entries.insert(
                0,
                Entry {
                    contact: contact.clone(),
                    last_seen: now,
                    ever_answered: false,
                    failures: 0,
                },
            );
            b.last_changed = now;
            b.replacements.retain(|c| c.id != contact.id);
            return Insert::Added;
        }
        Insert::Full { ping: None }
    }

    /// Another way to reach a node we already store (a node that named it in an answer is one
    /// more introducer). Never adds an entry: unknown contacts wait until they talk to us.
    pub fn on_route(&mut self, contact: &Contact) {
        let Some(j) = bucket_index(&self.me, &contact.id) else {
            return;
        };
        if let Some(e) = self.buckets[j]
            .entries
            .iter_mut()
            .find(|e| e.contact.id == contact.id)
        {
            merge_contact(&mut e.contact, contact);
        }
    }

    fn offer(&mut self, now: Time, contact: &Contact, answered: bool) -> Insert {
        let Some(j) = bucket_index(&self.me, &contact.id) else {
            return Insert::OwnId;
        };
        let (k, max_repl) = (self.cfg.k, self.cfg.replacements);
        let b = &mut self.buckets[j];
        if let Some(pos) = b.entries.iter().position(|e| e.contact.id == contact.id) {
            let mut e = b.entries.remove(pos);
            e.last_seen = now;
            if answered {
                e.ever_answered = true;
                e.failures = 0;
                b.last_changed = now;
            }
            merge_contact(&mut e.contact, contact);
            b.entries.push(e);
            return Insert::Updated;
        }
        let entry = Entry {
            contact: contact.clone(),
            last_seen: now,
            ever_answered: answered,
            failures: 0,
        };
        if b.entries.len() < k {
            b.entries.push(entry);
            b.last_changed = now;
            b.replacements.retain(|c| c.id != contact.id);
            return Insert::Added;
        }
        let max_failures = self.cfg.max_failures;
        if let Some(pos) = b.entries.iter().position(|e| e.failures >= max_failures) {
            b.entries.remove(pos);
            b.entries.push(entry);
            b.last_changed = now;
            b.replacements.retain(|c| c.id != contact.id);
            return Insert::Added;
        }
        // Full of live entries: wait in the replacement cache (newest last, oldest dropped).
        b.replacements.retain(|c| c.id != contact.id);
        if max_repl > 0 {
            if b.replacements.len() >= max_repl {
                b.replacements.remove(0);
            }
            b.replacements.push(contact.clone());
        }
        // Ask for a ping of the least recently seen questionable entry, if there is one.
        let ping = self.buckets[j]
            .entries
            .iter()
            .find(|e| self.status_of(e, now) == Status::Questionable)
            .map(|e| e.contact.clone());
        Insert::Full { ping }
    }

    /// A query to `id` failed (timeout, unreachable, or an answer that broke the protocol).
    pub fn on_failure(&mut self, now: Time, id: &NodeId) -> Failure {
        let Some(j) = bucket_index(&self.me, id) else {
            return Failure::Unknown;
        };
        let max_failures = self.cfg.max_failures;
        let b = &mut self.buckets[j];
        let Some(pos) = b.entries.iter().position(|e| e.contact.id == *id) else {
            // A candidate that fails is not worth waiting for.
            b.replacements.retain(|c| c.id != *id);
            return Failure::Unknown;
        };
        let e = &mut b.entries[pos];
        e.failures = e.failures.saturating_add(1);
        if e.failures < max_failures {
            return Failure::Counted {
                failures: e.failures,
            };
        }
        match b.replacements.pop() {
            Some(c) => {
                let by = c.id;
                b.entries.remove(pos);
                b.entries.push(Entry {
                    contact: c,
                    last_seen: now,
                    ever_answered: false,
                    failures: 0,
                });
                b.last_changed = now;
                Failure::Replaced { by }
            }
            None => Failure::Bad,
        }
    }

    /// Forget `id` (for example, the node layer learned it left for good).
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(j) = bucket_index(&self.me, id) else {
            return false;
        };
        let b = &mut self.buckets[j];
        let before = b.entries.len();
        b.entries.retain(|e| e.contact.id != *id);
        b.replacements.retain(|c| c.id != *id);
        if b.entries.len() < before {
            // Fill the hole with the newest candidate.
            if let Some(c) = b.replacements.pop() {
                b.entries.insert(
                    0,
                    Entry {
                        contact: c,
                        last_seen: Time::ZERO,
                        ever_answered: false,
                        failures: 0,
                    },
                );
            }
            true
        } else {
            false
        }
    }

    /// Up to `n` non-bad contacts closest to `target`, closest first, without `exclude`.
    pub fn closest(&self, target: &NodeId, n: usize, exclude: Option<&NodeId>) -> Vec<Contact> {
        let max_failures = self.cfg.max_failures;
        let mut all: Vec<(_, &Contact)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| e.failures < max_failures && Some(&e.contact.id) != exclude)
            .map(|e| (e.contact.id.distance(target), &e.contact))
            .collect();
        if all.len() > n {
            all.select_nth_unstable_by(n, |a, b| a.0.cmp(&b.0));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// Buckets that need a refresh lookup: unchanged for `refresh_after`, and not below the
    /// closest non-empty bucket (buckets nearer to us than any known node are covered by the
    /// self-lookup, and would otherwise cost ~140 useless lookups every period).
    pub fn stale_buckets(&self, now: Time) -> Vec<usize> {
        let Some(lowest) = self.buckets.iter().position(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        (lowest..ID_BITS)
            .filter(|&j| now.elapsed_since(self.buckets[j].last_changed, self.cfg.refresh_after))
            .collect()
    }

    /// A refresh lookup for bucket `j` started: it counts as a change.
    pub fn mark_refreshed(&mut self, j: usize, now: Time) {
        if let Some(b) = self.buckets.get_mut(j) {
            b.last_changed = now;
        }
    }

    /// When the earliest bucket goes stale (for the caller's timer), if any bucket is populated.
    pub fn next_refresh(&self) -> Option<Time> {
        let lowest = self.buckets.iter().position(|b| !b.entries.is_empty())?;
        self.buckets[lowest..]
            .iter()
            .map(|b| b.last_changed + self.cfg.refresh_after)
            .min()
    }
}

/// Newer information about the same node: keep a non-empty bridge, put new introducers first.
fn merge_contact(old: &mut Contact, new: &Contact) {
    if new.bridge.is_some() {
        old.bridge.clone_from(&new.bridge);
    }
    let own = old.id;
    merge_introducers(&mut old.introducers, &new.introducers, &own);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::random_id_in_bucket;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn contact(id: NodeId) -> Contact {
        Contact {
            id,
            pubkey: [2; 33],
            bridge: None,
            introducers: Default::default(),
        }
    }

    fn t(secs: u64) -> Time {
        Time::from_millis(secs * 1000)
    }

    /// `n` distinct IDs in bucket 159 of a table whose own ID is all zeros.
    fn far_ids(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| {
                let mut id = [0x80u8; 20];
                id[19] = i as u8;
                NodeId(id)
            })
            .collect()
    }

    #[test]
    fn own_id_is_never_stored() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        assert_eq!(rt.on_answer(t(1), &contact(me)), Insert::OwnId);
        assert_eq!(rt.on_heard_of(t(1), &contact(me)), Insert::OwnId);
        assert!(rt.is_empty());
    }

    #[test]
    fn states_follow_the_fifteen_minute_rules() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        let a = far_ids(1)[0];
        rt.on_query(t(0), &contact(a));
        assert_eq!(
            rt.status(&a, t(0)),
            Some(Status::Questionable),
            "never answered"
        );
        rt.on_answer(t(10), &contact(a));
        assert_eq!(rt.status(&a, t(10)), Some(Status::Good));
        assert_eq!(rt.status(&a, t(10 + 899)), Some(Status::Good));
        assert_eq!(rt.status(&a, t(10 + 900)), Some(Status::Questionable));
        // Having answered once, a query of its own makes it good again.
        rt.on_query(t(2000), &contact(a));
        assert_eq!(rt.status(&a, t(2000)), Some(Status::Good));
        assert_eq!(rt.on_failure(t(2001), &a), Failure::Counted { failures: 1 });
        assert_eq!(rt.status(&a, t(2001)), Some(Status::Questionable));
        assert_eq!(rt.on_failure(t(2002), &a), Failure::Bad);
        assert_eq!(rt.status(&a, t(2002)), Some(Status::Bad));
        assert!(
            rt.closest(&a, 8, None).is_empty(),
            "bad contacts are not handed out"
        );
    }

    #[test]
    fn full_bucket_pings_least_recently_seen_questionable_then_replaces() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        let ids = far_ids(10);
        for id in &ids[..8] {
            assert_eq!(rt.on_answer(t(0), &contact(*id)), Insert::Added);
        }
        // All good: the newcomer waits, nobody needs a ping.
        assert_eq!(
            rt.on_query(t(1), &contact(ids[8])),
            Insert::Full { ping: None }
        );
        // 15 minutes later everybody is questionable except ids[3], heard from again.
        rt.on_answer(t(800), &contact(ids[3]));
        let r = rt.on_query(t(901), &contact(ids[9]));
        assert_eq!(
            r,
            Insert::Full {
                ping: Some(contact(ids[0]))
            }
        );
        assert_eq!(rt.bucket_len(159), (8, 2));
        // ids[0] fails twice: replaced by the newest candidate, ids[9].
        assert_eq!(
            rt.on_failure(t(902), &ids[0]),
            Failure::Counted { failures: 1 }
        );
        assert_eq!(
            rt.on_failure(t(903), &ids[0]),
            Failure::Replaced { by: ids[9] }
        );
        assert!(rt.get(&ids[0]).is_none());
        assert!(rt.get(&ids[9]).is_some());
        assert_eq!(rt.bucket_len(159), (8, 1));
    }

    #[test]
    fn a_newcomer_takes_a_bad_entrys_slot() {
        let me = NodeId([0; 20]);
        let cfg = TableConfig {
            replacements: 0,
            ..TableConfig::default()
        };
        let mut rt = RoutingTable::new(me, cfg, t(0));
        let ids = far_ids(9);
        for id in &ids[..8] {
            rt.on_answer(t(0), &contact(*id));
        }
        rt.on_failure(t(1), &ids[5]);
        assert_eq!(rt.on_failure(t(1), &ids[5]), Failure::Bad);
        assert_eq!(rt.on_answer(t(2), &contact(ids[8])), Insert::Added);
        assert!(rt.get(&ids[5]).is_none());
    }

    #[test]
    fn introducers_are_merged_on_update() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        let a = far_ids(1)[0];
        let mut c = contact(a);
        c.introducers = vec![NodeId([1; 20])].try_into().unwrap();
        rt.on_query(t(0), &c);
        c.introducers = vec![NodeId([2; 20])].try_into().unwrap();
        c.bridge = Some("wss://b".try_into().unwrap());
        rt.on_answer(t(1), &c);
        let got = rt.get(&a).unwrap();
        assert_eq!(got.introducers, vec![NodeId([2; 20]), NodeId([1; 20])]);
        assert_eq!(got.bridge.as_deref(), Some("wss://b"));
    }

    #[test]
    fn closest_is_sorted_and_excludes() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for j in 100..160 {
            for _ in 0..3 {
                rt.on_answer(t(0), &contact(random_id_in_bucket(&me, j, &mut rng)));
            }
        }
        let target = NodeId([0x55; 20]);
        let got = rt.closest(&target, 8, None);
        assert_eq!(got.len(), 8);
        let mut all: Vec<Contact> = rt.iter().map(|(_, c)| c.clone()).collect();
        crate::contact::sort_by_distance(&mut all, &target);
        assert_eq!(got, all[..8].to_vec());
        let excl = rt.closest(&target, 8, Some(&all[0].id));
        assert_eq!(excl[0], all[1]);
    }

    #[test]
    fn stale_buckets_and_refresh() {
        let me = NodeId([0; 20]);
        let mut rt = RoutingTable::new(me, TableConfig::default(), t(0));
        assert!(
            rt.stale_buckets(t(10_000)).is_empty(),
            "empty table: nothing to refresh"
        );
        assert_eq!(rt.next_refresh(), None);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        rt.on_answer(t(0), &contact(random_id_in_bucket(&me, 150, &mut rng)));
        assert!(rt.stale_buckets(t(899)).is_empty());
        assert_eq!(rt.stale_buckets(t(900)), (150..160).collect::<Vec<_>>());
        assert_eq!(rt.next_refresh(), Some(t(900)));
        for j in 150..160 {
            rt.mark_refreshed(j, t(900));
        }
        assert!(rt.stale_buckets(t(901)).is_empty());
        assert_eq!(rt.next_refresh(), Some(t(1800)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Answer(u8, [u8; 20]),
        Query(u8, [u8; 20]),
        HeardOf(u8, [u8; 20]),
        Fail(usize),
        Remove(usize),
        Advance(u16),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        // The first byte picks how many leading bits the ID shares with ours, so close buckets
        // get exercised too, not only the far half of the space.
        prop_oneof![
            (any::<u8>(), any::<[u8; 20]>()).prop_map(|(s, id)| Op::Answer(s, id)),
            (any::<u8>(), any::<[u8; 20]>()).prop_map(|(s, id)| Op::Query(s, id)),
            (any::<u8>(), any::<[u8; 20]>()).prop_map(|(s, id)| Op::HeardOf(s, id)),
            any::<usize>().prop_map(Op::Fail),
            any::<usize>().prop_map(Op::Remove),
            any::<u16>().prop_map(Op::Advance),
        ]
    }

    fn shaped(me: &NodeId, shared_bits: u8, raw: [u8; 20]) -> NodeId {
        // Keep `shared_bits % 12` leading bits of our own ID (few distinct buckets, so they fill).
        let shared = usize::from(shared_bits % 12);
        let mut id = raw;
        for i in 0..shared {
            let (byte, bit) = (i / 8, 7 - i % 8);
            id[byte] = (id[byte] & !(1 << bit)) | (me.0[byte] & (1 << bit));
        }
        if shared_bits == 255 {
            return *me; // sometimes offer our own ID
        }
        NodeId(id)
    }

    proptest! {
        #[test]
        fn bounds_hold_under_arbitrary_sequences(
            me in any::<[u8; 20]>(),
            k in 1usize..5,
            repl in 0usize..4,
            ops in proptest::collection::vec(arb_op(), 1..300),
        ) {
            let me = NodeId(me);
            let cfg = TableConfig { k, replacements: repl, ..TableConfig::default() };
            let mut rt = RoutingTable::new(me, cfg, Time::ZERO);
            let mut now = Time::ZERO;
            let mut known: Vec<NodeId> = Vec::new();
            for op in ops {
                match op {
                    Op::Answer(s, raw) => { let id = shaped(&me, s, raw); known.push(id); rt.on_answer(now, &contact(id)); }
                    Op::Query(s, raw) => { let id = shaped(&me, s, raw); known.push(id); rt.on_query(now, &contact(id)); }
                    Op::HeardOf(s, raw) => { let id = shaped(&me, s, raw); known.push(id); rt.on_heard_of(now, &contact(id)); }
                    Op::Fail(i) => if !known.is_empty() { rt.on_failure(now, &known[i % known.len()]); },
                    Op::Remove(i) => if !known.is_empty() { rt.remove(&known[i % known.len()]); },
                    Op::Advance(s) => now = now + Duration::from_secs(u64::from(s)),
                }
                let mut seen = onionmesh_bounded::FlatSet::new();
                for j in 0..ID_BITS {
                    let (n, r) = rt.bucket_len(j);
                    prop_assert!(n <= k, "bucket {} holds {} > k", j, n);
                    prop_assert!(r <= repl, "bucket {} has {} candidates", j, r);
                }
                for (j, c) in rt.iter() {
                    prop_assert!(c.id != me, "own ID stored");
                    prop_assert_eq!(bucket_index(&me, &c.id), Some(j), "contact in the wrong bucket");
                    prop_assert!(seen.insert(c.id), "duplicate contact");
                }
                for (j, c) in rt.iter_replacements() {
                    prop_assert!(c.id != me);
                    prop_assert_eq!(bucket_index(&me, &c.id), Some(j));
                    prop_assert!(rt.get(&c.id).is_none(), "a candidate is also an entry");
                }
            }
        }
    }
}

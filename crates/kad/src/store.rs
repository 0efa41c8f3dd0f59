//! The value store: content references (`key` -> providers) held for other nodes, with expiry.
//!
//! Bounded three ways: at most `max_keys` keys, `max_providers_per_key` providers per key and
//! `max_records` records in all. A full store refuses new records ([`StoreFull`]) rather than
//! evicting older ones: a flooder then cannot push honest records out, and the publisher of a
//! refused record simply stores it at the next closest node. The one exception is a full key:
//! a new provider replaces the one that expires first, if it outlives it, so a popular key keeps
//! its freshest providers.

use crate::Time;
use onionmesh_bounded::FlatMap;
use onionmesh_wire::kad::{Contact, Provider};
use onionmesh_wire::NodeId;
use std::time::Duration;
use thiserror::Error;

/// Tunables of the value store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub max_keys: usize,
    pub max_providers_per_key: usize,
    pub max_records: usize,
    /// Longest TTL accepted; longer requests are cut to it.
    pub max_ttl: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_keys: 1024,
            max_providers_per_key: onionmesh_wire::kad::MAX_PROVIDERS,
            max_records: 4096,
            max_ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// The store cannot take the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the value store is full ({records} records under {keys} keys)")]
pub struct StoreFull {
    pub records: usize,
    pub keys: usize,
}

#[derive(Debug, Clone)]
struct Record {
    contact: Contact,
    expires: Time,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ValueStore {
    cfg: StoreConfig,
    map: FlatMap<NodeId, Vec<Record>>,
    records: usize,
}

impl ValueStore {
    pub fn new(cfg: StoreConfig) -> ValueStore {
        ValueStore {
            cfg,
            map: FlatMap::new(),
            records: 0,
        }
    }

    pub fn keys(&self) -> usize {
        self.map.len()
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Adds or refreshes `provider` for `key` for `ttl` (cut to `max_ttl`).
    pub fn put(
        &mut self,
        now: Time,
        key: NodeId,
        provider: &Contact,
        ttl: Duration,
    ) -> Result<(), StoreFull> {
        let expires = now + ttl.min(self.cfg.max_ttl);
        self.expire_key(now, &key);
        let full = StoreFull {
            records: self.records,
            keys: self.map.len(),
        };
        if let Some(list) = self.map.get_mut(&key) {
            if let Some(r) = list.iter_mut().find(|r| r.contact.id == provider.id) {
                r.contact = provider.clone();
                r.expires = r.expires.max(expires);
                return Ok(());
            }
            if list.len() >= self.cfg.max_providers_per_key {
                let (i, soonest) = list
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| r.expires)
                    .map(|(i, r)| (i, r.expires))
                    .ok_or(full)?;
                if soonest >= expires {
                    return Err(full);
                }
                list[i] = Record {
                    contact: provider.clone(),
                    expires,
                };
                return Ok(());
            }
        } else if self.map.len() >= self.cfg.max_keys {
            self.expire(now);
            if self.map.len() >= self.cfg.max_keys {
                return Err(full);
            }
        }
        if self.records >= self.cfg.max_records {
            self.expire(now);
            if self.records >= self.cfg.max_records {
                return Err(full);
            }
        }
        self.map.entry(key).or_default().push(Record {
            contact: provider.clone(),
            expires,
        });
        self.records += 1;
        Ok(())
    }

    /// The live providers of `key`, at most `max`, with their remaining TTL.
    pub fn get(&self, now: Time, key: &NodeId, max: usize) -> Vec<Provider> {
        self.map
            .get(key)
            .into_iter()
            .flatten()
            .filter(|r| r.expires > now)
            .take(max)
            .map(|r| Provider {
                contact: r.contact.clone(),
                ttl_secs: u32::try_from(r.expires.since(now) / 1000).unwrap_or(u32::MAX),
            })
            .collect()
    }

    fn expire_key(&mut self, now: Time, key: &NodeId) {
        if let Some(list) = self.map.get_mut(key) {
            let before = list.len();
            list.retain(|r| r.expires > now);
            self.records -= before - list.len();
            if list.is_empty() {
                self.map.remove(key);
            }
        }
    }

    /// Drops every expired record.
    pub fn expire(&mut self, now: Time) {
        let mut removed = 0;
        self.map.retain(|_, list| {
            let before = list.len();
            list.retain(|r| r.expires > now);
            removed += before - list.len();
            !list.is_empty()
        });
        self.records -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(b: u8) -> Contact {
        Contact {
            id: NodeId([b; 20]),
            pubkey: [2; 33],
            bridge: None,
            introducers: Default::default(),
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn at(n: u64) -> Time {
        Time::from_millis(n * 1000)
    }

    #[test]
    fn records_expire() {
        let mut s = ValueStore::new(StoreConfig::default());
        let k = NodeId([9; 20]);
        s.put(at(0), k, &c(1), secs(60)).unwrap();
        s.put(at(30), k, &c(2), secs(60)).unwrap();
        assert_eq!(s.get(at(59), &k, 20).len(), 2);
        assert_eq!(s.get(at(59), &k, 20)[0].ttl_secs, 1);
        assert_eq!(s.get(at(60), &k, 20).len(), 1);
        s.expire(at(100));
        assert_eq!((s.keys(), s.records()), (0, 0));
    }

    #[test]
    fn refresh_extends_and_ttl_is_capped() {
        let mut s = ValueStore::new(StoreConfig::default());
        let k = NodeId([9; 20]);
        s.put(at(0), k, &c(1), secs(10 * 3600)).unwrap();
        assert_eq!(s.get(at(0), &k, 20)[0].ttl_secs, 3600);
        s.put(at(3000), k, &c(1), secs(3600)).unwrap();
        assert_eq!(s.records(), 1);
        assert_eq!(s.get(at(3000), &k, 20)[0].ttl_secs, 3600);
    }

    #[test]
    fn a_full_key_keeps_its_freshest_providers() {
        let cfg = StoreConfig {
            max_providers_per_key: 2,
            ..StoreConfig::default()
        };
        let mut s = ValueStore::new(cfg);
        let k = NodeId([9; 20]);
        s.put(at(0), k, &c(1), secs(100)).unwrap();
        s.put(at(0), k, &c(2), secs(200)).unwrap();
        assert!(
            s.put(at(0), k, &c(3), secs(50)).is_err(),
            "would expire first"
        );
        s.put(at(0), k, &c(3), secs(150)).unwrap();
        let ids: Vec<u8> = s
            .get(at(0), &k, 20)
            .iter()
            .map(|p| p.contact.id.0[0])
            .collect();
        assert_eq!(ids, vec![3, 2]);
    }

    #[test]
    fn full_store_refuses_new_keys() {
        let cfg = StoreConfig {
            max_keys: 2,
            ..StoreConfig::default()
        };
        let mut s = ValueStore::new(cfg);
        s.put(at(0), NodeId([1; 20]), &c(1), secs(10)).unwrap();
        s.put(at(0), NodeId([2; 20]), &c(1), secs(100)).unwrap();
        assert!(s.put(at(5), NodeId([3; 20]), &c(1), secs(10)).is_err());
        // Once the first key expires there is room again.
        s.put(at(11), NodeId([3; 20]), &c(1), secs(10)).unwrap();
    }

    proptest! {
        #[test]
        fn bounds_hold(ops in proptest::collection::vec((any::<u8>(), any::<u8>(), 0u64..500, 0u64..50), 1..400)) {
            let cfg = StoreConfig { max_keys: 8, max_providers_per_key: 3, max_records: 12, ..StoreConfig::default() };
            let mut s = ValueStore::new(cfg);
            let mut now = at(0);
            for (key, who, ttl, dt) in ops {
                now = now + secs(dt);
                let _ = s.put(now, NodeId([key % 16; 20]), &c(who % 8), secs(ttl));
                prop_assert!(s.keys() <= 8);
                prop_assert!(s.records() <= 12);
                let total: usize = s.map.values().map(Vec::len).sum();
                prop_assert_eq!(total, s.records());
                prop_assert!(s.map.values().all(|l| l.len() <= 3 && !l.is_empty()));
            }
        }
    }
}

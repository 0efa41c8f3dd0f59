//! The workspace's one token bucket ([`TokenBucket`]), one bounded LRU map ([`BoundedLru`]), and
//! the ordered flat maps ([`FlatMap`], [`FlatSet`]) that replace `BTreeMap`/`BTreeSet` in the crates
//! compiled into the wasm bundle (their code per type is a fraction of a B-tree's).
//!
//! Every rate limit and every bounded cache in onionmesh (onion admission, Kademlia request
//! limits, the node's DHT relay limits, the bridge's rendezvous limits, the ORDB lists) uses these
//! two types, so they agree on saturation and eviction:
//!
//! - A bucket never holds more than its capacity, refills linearly with the caller's `now`, and a
//!   clock that goes backwards refills nothing (and never panics or underflows).
//! - A full map evicts its least recently used entry, and only on insert of a new key.
//!
//! Both are sans-IO: time is an argument ([`onionmesh_wire::Time`], milliseconds).
#![forbid(unsafe_code)]

mod bucket;
pub mod flat;
mod lru;

pub use bucket::TokenBucket;
pub use flat::{FlatMap, FlatSet};
pub use lru::BoundedLru;

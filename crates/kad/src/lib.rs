//! Kademlia DHT for onionmesh: routing table, RPCs, iterative lookups, value store (sans-IO)
#![forbid(unsafe_code)]

pub mod contact;
pub mod limit;
pub mod lookup;
pub mod store;
pub mod table;
mod time;
pub mod token;

pub use time::Time;

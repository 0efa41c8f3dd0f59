//! Kademlia DHT for onionmesh: routing table, RPCs, iterative lookups, value store (sans-IO)
#![forbid(unsafe_code)]

pub mod contact;
pub mod lookup;
pub mod table;
mod time;

pub use time::Time;

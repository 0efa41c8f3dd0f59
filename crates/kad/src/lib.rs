//! Kademlia DHT for onionmesh: routing table, RPCs, iterative lookups, value store (sans-IO)
#![forbid(unsafe_code)]

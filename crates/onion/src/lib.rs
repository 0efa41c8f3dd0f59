//! Tor-style onion routing for onionmesh: cells, the k256 ntor-style handshake, relay crypto, circuits (sans-IO)
#![forbid(unsafe_code)]

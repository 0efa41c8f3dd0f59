//! Tor-style onion routing for onionmesh (docs to come with the circuits).
#![forbid(unsafe_code)]

pub mod crypto;
pub mod handshake;
mod key;

pub use crypto::{Forward, ProxyCrypto, RouterCrypto, SendmeTag};
pub use handshake::{server_handshake, ClientHandshake, HandshakeError, HopKeys};
pub use key::{OnionKey, OnionPublicKey};

//! # onionmesh-crypto: who a node is, and proving it on a link
//!
//! - [`Identity`]: a session key pair on secp256k1 (k256), made fresh at every page load and never
//!   persisted or exported. The node ID is the first 160 bits of SHA-256 over the SEC1-compressed
//!   public key ([`node_id`]).
//! - [`hello`]: the signed hello a node sends its bridge (ID, public key, timestamp).
//! - [`link_auth`]: the spec's CERTS idea for WebRTC. DTLS authenticates a self-signed certificate
//!   whose fingerprint travels in the SDP, but the SDP passes through a bridge that could swap it.
//!   So once the data channel is open each side signs, with its ID key, both DTLS fingerprints and
//!   a fresh nonce chosen by the other side. A bridge that substituted its own fingerprints cannot
//!   produce that signature, and a recorded proof cannot be replayed on another link.
//! - [`dtls`]: reading the DTLS fingerprint out of an SDP.
//! - [`channel`]: the encrypted, mutually authenticated channel a node runs over its WebSocket
//!   to a bridge (ECDH handshake signed by both identities, then ChaCha20-Poly1305 frames).
//!
//! The crate takes its randomness from the caller (`rand_core::CryptoRngCore`), so simulations
//! stay reproducible.
#![forbid(unsafe_code)]

pub mod channel;
pub mod dtls;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hello;
mod identity;
pub mod link_auth;

pub use identity::{node_id, verify, Identity};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("the public key is not a valid compressed secp256k1 point")]
    BadPublicKey,
    #[error("the signature is malformed")]
    BadSignature,
    #[error("the signature does not verify")]
    SignatureMismatch,
}

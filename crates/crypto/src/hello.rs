//! The signed hello a node sends its bridge: it proves the node holds the key behind its ID, at a
//! time the bridge can check for freshness.

use crate::{node_id, verify, CryptoError, Identity};
use onionmesh_wire::{NodeId, PublicKeyBytes, SignatureBytes};

const DOMAIN: &[u8] = b"onionmesh/hello/v1";

fn message(pubkey: &PublicKeyBytes, timestamp_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 33 + 8);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(pubkey);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

/// Sign a hello at wall-clock time `timestamp_ms` (Unix milliseconds).
pub fn sign(identity: &Identity, timestamp_ms: u64) -> SignatureBytes {
    identity.sign(&message(&identity.public_key(), timestamp_ms))
}

/// Check a hello's signature; returns the ID it proves.
pub fn verify_hello(
    pubkey: &PublicKeyBytes,
    timestamp_ms: u64,
    sig: &SignatureBytes,
) -> Result<NodeId, CryptoError> {
    verify(pubkey, &message(pubkey, timestamp_ms), sig)?;
    Ok(node_id(pubkey))
}

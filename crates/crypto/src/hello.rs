//! The signed hello a node (or a federated bridge) sends its bridge: it proves the sender holds
//! the key behind its ID, now, by signing the random challenge the bridge sent on this
//! connection (`SignalMsg::Challenge`).
//!
//! Freshness comes from the challenge, not from a timestamp: a visitor whose clock is days off
//! registers like anyone else, and a hello recorded on one connection is worthless on another
//! (its challenge differs).
//!
//! Signed message: `"onionmesh/hello/v2" || pubkey (33 bytes, compressed SEC1) || challenge
//! (32 bytes)`, ECDSA over secp256k1 with SHA-256 (see [`crate::Identity::sign`]).

use crate::{node_id, verify, CryptoError, Identity};
use onionmesh_wire::signal::{ChallengeNonce, CHALLENGE_LEN};
use onionmesh_wire::{NodeId, PublicKeyBytes, SignatureBytes};

const DOMAIN: &[u8] = b"onionmesh/hello/v2";

fn message(pubkey: &PublicKeyBytes, challenge: &ChallengeNonce) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + pubkey.len() + CHALLENGE_LEN);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(pubkey);
    m.extend_from_slice(challenge);
    m
}

/// Sign a hello over the bridge's `challenge` for this connection.
pub fn sign(identity: &Identity, challenge: &ChallengeNonce) -> SignatureBytes {
    identity.sign(&message(&identity.public_key(), challenge))
}

/// Check a hello's signature over `challenge` (the nonce *this* side sent on this connection,
/// never the one the hello claims); returns the ID it proves.
///
/// # Errors
/// [`CryptoError`] if the key is not a valid point or the signature does not verify.
pub fn verify_hello(
    pubkey: &PublicKeyBytes,
    challenge: &ChallengeNonce,
    sig: &SignatureBytes,
) -> Result<NodeId, CryptoError> {
    verify(pubkey, &message(pubkey, challenge), sig)?;
    Ok(node_id(pubkey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_message_vector() {
        // The exact bytes signed, so another implementation can check its own.
        let id = Identity::from_seed([1; 32]).unwrap();
        let m = message(&id.public_key(), &[0x5a; 32]);
        assert_eq!(&m[..18], b"onionmesh/hello/v2");
        assert_eq!(&m[18..51], &id.public_key());
        assert_eq!(&m[51..], &[0x5a; 32]);
        assert_eq!(
            hex::encode(&m[..18]),
            "6f6e696f6e6d6573682f68656c6c6f2f7632"
        );
    }

    #[test]
    fn signature_vector() {
        // ECDSA here is deterministic (RFC 6979), so the whole hello is a fixed vector: secret
        // key 0x01 repeated 32 times, challenge 0x5a repeated 32 times.
        let id = Identity::from_seed([1; 32]).unwrap();
        assert_eq!(
            hex::encode(id.public_key()),
            "031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f"
        );
        let sig = sign(&id, &[0x5a; 32]);
        assert_eq!(
            hex::encode(sig),
            "cc734cc580ef7508b3c1c35761f7a8926055166a91b09c8b28e6010c18b094c3\
             7b35a3dceec71d6d9d3dada775bb578d5f6e864f4f30c23796773361047b709d"
        );
        assert_eq!(
            verify_hello(&id.public_key(), &[0x5a; 32], &sig),
            Ok(id.id())
        );
    }

    #[test]
    fn a_hello_verifies_only_for_its_own_challenge() {
        let id = Identity::from_seed([2; 32]).unwrap();
        let sig = sign(&id, &[1; 32]);
        assert_eq!(verify_hello(&id.public_key(), &[1; 32], &sig), Ok(id.id()));
        // Replayed on a connection whose challenge differs: refused.
        assert!(verify_hello(&id.public_key(), &[2; 32], &sig).is_err());
        // Someone else's key: refused.
        let other = Identity::from_seed([3; 32]).unwrap();
        assert!(verify_hello(&other.public_key(), &[1; 32], &sig).is_err());
    }
}

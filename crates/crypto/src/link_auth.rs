//! Link authentication over a WebRTC data channel (the spec's CERTS binding).
//!
//! Both sides run the same exchange as soon as the channel opens:
//! 1. send `Nonce(n_self)`, a fresh 32-byte challenge;
//! 2. on the peer's `Nonce(n_peer)`, send `Cert(pubkey, sig)` where `sig` signs
//!    `DOMAIN || fp(prover) || fp(verifier) || n_peer` with the ID key, `fp(prover)` being the
//!    prover's own DTLS fingerprint (from its local SDP) and `fp(verifier)` the other side's;
//! 3. on the peer's `Cert`, check that the key hashes to the ID we meant to reach, and that the
//!    signature verifies over *our view*: the remote SDP's fingerprint as prover, our local SDP's
//!    fingerprint as verifier, and our own nonce.
//!
//! Because DTLS already proved that the remote end holds the certificate behind the remote
//! fingerprint, a valid signature proves the ID key holder is the DTLS endpoint. A bridge that
//! rewrote the SDPs would leave the two views of the fingerprints different, and the fresh nonce
//! makes a proof from another link useless.

use crate::dtls::Fingerprint;
use crate::{node_id, verify, Identity};
use onionmesh_wire::{NodeId, PublicKeyBytes, SignatureBytes};
use thiserror::Error;

const DOMAIN: &[u8] = b"onionmesh/link-auth/v1";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkAuthError {
    #[error("the peer's key belongs to node {got}, not to {expected} that we asked for")]
    WrongIdentity { expected: NodeId, got: NodeId },
    #[error("the peer's link proof does not verify: {0}")]
    BadProof(crate::CryptoError),
}

fn message(
    prover_fp: &Fingerprint,
    verifier_fp: &Fingerprint,
    verifier_nonce: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 140);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&prover_fp.canonical());
    m.extend_from_slice(&verifier_fp.canonical());
    m.extend_from_slice(verifier_nonce);
    m
}

/// Our proof for the peer: signs our fingerprint, theirs, and their nonce.
pub fn prove(
    identity: &Identity,
    local_fp: &Fingerprint,
    remote_fp: &Fingerprint,
    remote_nonce: &[u8; 32],
) -> SignatureBytes {
    identity.sign(&message(local_fp, remote_fp, remote_nonce))
}

/// Check the peer's proof against what *we* saw: their fingerprint from the remote SDP, ours from
/// the local SDP, and the nonce we sent.
pub fn check(
    expected: NodeId,
    pubkey: &PublicKeyBytes,
    sig: &SignatureBytes,
    local_fp: &Fingerprint,
    remote_fp: &Fingerprint,
    local_nonce: &[u8; 32],
) -> Result<(), LinkAuthError> {
    let got = node_id(pubkey);
    if got != expected {
        return Err(LinkAuthError::WrongIdentity { expected, got });
    }
    verify(pubkey, &message(remote_fp, local_fp, local_nonce), sig).map_err(LinkAuthError::BadProof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn fp(b: u8) -> Fingerprint {
        Fingerprint {
            algorithm: "sha-256".into(),
            digest: vec![b; 32],
        }
    }

    #[test]
    fn honest_exchange_verifies_and_tampering_fails() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        let (fa, fb) = (fp(1), fp(2));
        let (na, nb) = ([3u8; 32], [4u8; 32]);
        // B proves to A (A's nonce), A checks from its own view.
        let sig = prove(&b, &fb, &fa, &na);
        assert_eq!(check(b.id(), &b.public_key(), &sig, &fa, &fb, &na), Ok(()));
        // Wrong nonce (replay from another link).
        assert!(matches!(
            check(b.id(), &b.public_key(), &sig, &fa, &fb, &nb),
            Err(LinkAuthError::BadProof(_))
        ));
        // A MITM swapped A's view of B's fingerprint.
        assert!(check(b.id(), &b.public_key(), &sig, &fa, &fp(9), &na).is_err());
        // Someone else's key.
        assert!(matches!(
            check(a.id(), &b.public_key(), &sig, &fa, &fb, &na),
            Err(LinkAuthError::WrongIdentity { .. })
        ));
    }
}

//! The router's long-term onion key: a secp256k1 key pair used for ECDH in the handshake.
//!
//! `onionmesh-crypto`'s `Identity` keeps its secret to itself (it only signs), so the onion layer
//! holds its own key type. Two ways the node can use it, both supported by the handshake (which
//! names the router by ID *and* key, separately):
//!
//! - **Same key as the identity**: build both from one seed (`Identity::from_seed(s)` and
//!   [`OnionKey::from_seed`]`(s)`). Then the onion public key *is* the node's ID key and
//!   `node_id(B) == ID`, so anyone who knows a peer's ID record already knows its onion key.
//!   Using one secp256k1 key for ECDSA and ECDH is considered safe (the two uses are jointly
//!   secure in the generic group model), and it is what the spec's "one key pair per session"
//!   suggests.
//! - **A separate onion key**, generated per session and published next to the ID key. This
//!   limits what a leak of either key gives away, at the cost of one more field in peer records.
//!
//! The node integration picks; this crate does not care.

use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{NonZeroScalar, PublicKey};
use onionmesh_wire::{NodeId, PublicKeyBytes};
use rand_core::CryptoRngCore;
use thiserror::Error;

/// Why a handshake failed. Every variant means the other side (or the path data that named the
/// router) is wrong: the circuit is closed, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("the handshake message is {got} bytes; expected {expected}")]
    BadLength { got: usize, expected: usize },
    #[error("a public key in the handshake is not a valid secp256k1 point")]
    BadPoint,
    #[error("the onionskin is for another router (its ID or onion key is not ours)")]
    NotForUs,
    #[error("the router's AUTH does not verify: it does not hold the onion key we expected")]
    BadAuth,
    #[error("unknown handshake type 0x{0:04x}")]
    UnknownType(u16),
}

/// A router's secret onion key. Not `Clone`; `Debug` shows only the public half.
pub struct OnionKey {
    secret: NonZeroScalar,
    public: OnionPublicKey,
}

impl std::fmt::Debug for OnionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl OnionKey {
    /// A fresh key from the caller's RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> OnionKey {
        Self::from_scalar(NonZeroScalar::random(rng))
    }

    /// The key whose secret scalar is `seed` (big-endian), exactly like `Identity::from_seed`.
    /// `None` for the rare seed that is zero or not below the group order.
    pub fn from_seed(seed: [u8; 32]) -> Option<OnionKey> {
        Option::from(NonZeroScalar::from_repr(seed.into())).map(Self::from_scalar)
    }

    fn from_scalar(secret: NonZeroScalar) -> OnionKey {
        let public = OnionPublicKey::from_point(PublicKey::from_secret_scalar(&secret));
        OnionKey { secret, public }
    }

    pub fn public(&self) -> &OnionPublicKey {
        &self.public
    }

    pub(crate) fn secret(&self) -> &NonZeroScalar {
        &self.secret
    }
}

/// A validated onion public key: a point on secp256k1 (never the identity), with its
/// SEC1-compressed encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OnionPublicKey {
    point: PublicKey,
    bytes: PublicKeyBytes,
}

impl std::fmt::Debug for OnionPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnionPublicKey({})", hex::encode(&self.bytes[..8]))
    }
}

impl OnionPublicKey {
    /// Validate a compressed point (33 bytes, prefix 02/03, on the curve).
    pub fn from_bytes(bytes: &PublicKeyBytes) -> Result<OnionPublicKey, HandshakeError> {
        // SEC1 also has a 33-byte "compact" form (tag 0x05) that the parser accepts; only the
        // compressed form is canonical here.
        if !matches!(bytes[0], 0x02 | 0x03) {
            return Err(HandshakeError::BadPoint);
        }
        let point = PublicKey::from_sec1_bytes(bytes).map_err(|_| HandshakeError::BadPoint)?;
        Ok(OnionPublicKey {
            point,
            bytes: *bytes,
        })
    }

    pub(crate) fn from_point(point: PublicKey) -> OnionPublicKey {
        let mut bytes = [0u8; 33];
        // A compressed non-identity point is always 33 bytes.
        bytes.copy_from_slice(point.to_encoded_point(true).as_bytes());
        OnionPublicKey { point, bytes }
    }

    pub fn to_bytes(&self) -> PublicKeyBytes {
        self.bytes
    }

    pub(crate) fn point(&self) -> &PublicKey {
        &self.point
    }

    /// The node ID this key would have if it were also the identity key.
    pub fn node_id(&self) -> NodeId {
        onionmesh_crypto::node_id(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_matches_identity() {
        let mut seed = [0u8; 32];
        seed[31] = 7;
        let key = OnionKey::from_seed(seed).unwrap();
        let id = onionmesh_crypto::Identity::from_seed(seed).unwrap();
        assert_eq!(key.public().to_bytes(), id.public_key());
        assert_eq!(key.public().node_id(), id.id());
        assert!(OnionKey::from_seed([0; 32]).is_none());
        assert!(OnionKey::from_seed([0xff; 32]).is_none());
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn bad_points_are_refused() {
        assert_eq!(
            OnionPublicKey::from_bytes(&[0u8; 33]),
            Err(HandshakeError::BadPoint)
        );
        let mut compact = OnionKey::from_seed([3; 32]).unwrap().public().to_bytes();
        compact[0] = 0x05;
        assert_eq!(
            OnionPublicKey::from_bytes(&compact),
            Err(HandshakeError::BadPoint)
        );
        let mut not_on_curve = [0xffu8; 33];
        not_on_curve[0] = 2;
        assert_eq!(
            OnionPublicKey::from_bytes(&not_on_curve),
            Err(HandshakeError::BadPoint)
        );
    }
}

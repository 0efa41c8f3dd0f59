use crate::CryptoError;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use onionmesh_wire::{NodeId, PublicKeyBytes, SignatureBytes, ID_LEN};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

/// A node's session identity. The secret stays inside this struct: there is no accessor for it,
/// it is not `Clone`, and its `Debug` output shows only the ID.
pub struct Identity {
    key: SigningKey,
    public: PublicKeyBytes,
    id: NodeId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh key pair from the caller's RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_key(SigningKey::random(rng))
    }

    /// A deterministic identity for tests and simulations. Returns `None` for the rare seed
    /// that is not a valid scalar.
    pub fn from_seed(seed: [u8; 32]) -> Option<Self> {
        SigningKey::from_bytes(&seed.into())
            .ok()
            .map(Self::from_key)
    }

    fn from_key(key: SigningKey) -> Self {
        let point = key.verifying_key().to_encoded_point(true);
        let mut public = [0u8; 33];
        // A compressed point is always 33 bytes.
        public.copy_from_slice(point.as_bytes());
        let id = node_id(&public);
        Identity { key, public, id }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn public_key(&self) -> PublicKeyBytes {
        self.public
    }

    /// The secret scalar, big-endian, for the one other use of this key pair: the node's onion
    /// key (`onionmesh_onion::OnionKey::from_seed`), so that the public key peers already know
    /// from hellos, peer records and link certificates is also the key a circuit's ntor
    /// handshake expects. Nothing else should call this.
    pub fn onion_secret(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    /// ECDSA over SHA-256(msg), deterministic (RFC 6979), low-S.
    pub fn sign(&self, msg: &[u8]) -> SignatureBytes {
        let sig: Signature = self.key.sign(msg);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

/// The node ID for a compressed public key: the first 160 bits of its SHA-256.
pub fn node_id(pubkey: &PublicKeyBytes) -> NodeId {
    let digest = Sha256::digest(pubkey);
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&digest[..ID_LEN]);
    NodeId(id)
}

/// Verify `sig` over `msg` by `pubkey`.
pub fn verify(
    pubkey: &PublicKeyBytes,
    msg: &[u8],
    sig: &SignatureBytes,
) -> Result<(), CryptoError> {
    let key = VerifyingKey::from_sec1_bytes(pubkey).map_err(|_| CryptoError::BadPublicKey)?;
    let sig = Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
    key.verify(msg, &sig)
        .map_err(|_| CryptoError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn sign_verify_and_id() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        assert_ne!(a.id(), b.id());
        assert_eq!(node_id(&a.public_key()), a.id());
        let sig = a.sign(b"hello");
        assert_eq!(verify(&a.public_key(), b"hello", &sig), Ok(()));
        assert_eq!(
            verify(&a.public_key(), b"hellO", &sig),
            Err(CryptoError::SignatureMismatch)
        );
        assert_eq!(
            verify(&b.public_key(), b"hello", &sig),
            Err(CryptoError::SignatureMismatch)
        );
        assert_eq!(
            verify(&[0u8; 33], b"hello", &sig),
            Err(CryptoError::BadPublicKey)
        );
        assert!(!format!("{a:?}").contains("key:"));
    }

    #[test]
    fn id_test_vector() {
        // Secret scalar 1: the public key is the generator G.
        let mut seed = [0u8; 32];
        seed[31] = 1;
        let id = Identity::from_seed(seed).unwrap();
        assert_eq!(
            hex::encode(id.public_key()),
            "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
        // SHA-256 of that compressed key, first 20 bytes.
        assert_eq!(id.id().to_hex(), "0f715baf5d4c2ed329785cef29e562f73488c8a2");
    }
}

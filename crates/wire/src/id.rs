use std::fmt;

/// Length of a node ID: the first 160 bits of SHA-256 of the compressed public key.
pub const ID_LEN: usize = 20;
/// A SEC1-compressed secp256k1 public key.
pub const PUBKEY_LEN: usize = 33;
/// A fixed-size (r || s) ECDSA signature.
pub const SIG_LEN: usize = 64;

pub type PublicKeyBytes = [u8; PUBKEY_LEN];
pub type SignatureBytes = [u8; SIG_LEN];

/// A 160-bit node identifier, compared by XOR distance (Kademlia).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; ID_LEN]);

impl NodeId {
    /// XOR distance to `other`, itself a 160-bit number compared big-endian.
    pub fn distance(&self, other: &NodeId) -> [u8; ID_LEN] {
        let mut d = [0u8; ID_LEN];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        d
    }

    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex characters, for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    pub fn from_hex(s: &str) -> Option<NodeId> {
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(NodeId(out))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_distance() {
        let a = NodeId([0xab; ID_LEN]);
        assert_eq!(NodeId::from_hex(&a.to_hex()), Some(a));
        assert_eq!(a.short(), "abababab");
        assert_eq!(a.distance(&a), [0; ID_LEN]);
        assert_eq!(NodeId::from_hex("zz"), None);
    }
}

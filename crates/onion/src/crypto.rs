//! Relay crypto: how a 509-byte relay body is layered, recognized and checked.
//!
//! See the crate docs ("Relay crypto") for the construction, why it was chosen and its limits.
//! In short, per hop and per direction (Tor's relay crypto with ChaCha20 in place of AES-CTR):
//!
//! - a **layer**: the body XORed with 509 bytes of ChaCha20 keystream (RFC 8439) under this
//!   hop's and direction's key, with the cell's position in this hop's and direction's sequence
//!   as the nonce. The body never grows. A cell processed out of its place (reordered, replayed,
//!   one dropped before it) is XORed with the wrong keystream and turns into noise.
//! - a **running digest** (SHA-256 seeded with a secret): the endpoint that builds a cell sets
//!   `recognized = 0` and the first 4 digest bytes; the hop it is for sees `recognized == 0` and
//!   a matching digest after removing its layer, and absorbs the cell into its own digest. Hops
//!   a cell only passes through do one ChaCha20 pass and compare two bytes.
//!
//! ```text
//! layer(n):  body ^= ChaCha20(key, nonce = 0x00000000 | n (u64, big-endian), counter 0)[..509]
//! n = 0, 1, 2, ...: the cell counter of this hop and direction (encrypt and decrypt alike)
//! ```

use crate::handshake::{HopKeys, DIRECTION_KEYS_LEN};
use onionmesh_keystream::{xor_chacha20, KEYSTREAM_LEN};
use onionmesh_wire::cell::{field, CellBody, BODY_LEN, SENDME_TAG_LEN};
use sha2::{Digest as _, Sha256};

/// The authenticator an authenticated SENDME echoes: the running digest of the cell it
/// acknowledges, cut to [`SENDME_TAG_LEN`] bytes.
pub type SendmeTag = [u8; SENDME_TAG_LEN];

/// XOR `body` with the ChaCha20 keystream for `key` and cell number `n`.
fn xor_keystream(key: &[u8; 32], n: u64, body: &mut CellBody) {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    // Work on 8 whole 64-byte blocks: the SIMD backends make keystream 4 blocks at a time and
    // a lone trailing block costs as much as 4, so 509 bytes in place would cost 5 batches
    // instead of 2.
    let mut blocks = [0u8; KEYSTREAM_LEN];
    blocks[..BODY_LEN].copy_from_slice(body);
    xor_chacha20(key, &nonce, &mut blocks);
    body.copy_from_slice(&blocks[..BODY_LEN]);
}

/// One hop's crypto in one direction: its layer key, the layer's cell counter and the running
/// digest of the cells this direction's endpoints exchanged with that hop.
#[derive(Clone)]
struct Direction {
    key: [u8; 32],
    counter: u64,
    digest: Sha256,
}

impl Direction {
    fn new(k: &[u8; DIRECTION_KEYS_LEN]) -> Direction {
        let mut digest = Sha256::new();
        digest.update(&k[32..64]);
        Direction {
            key: k[..32].try_into().expect("32 of DIRECTION_KEYS_LEN bytes"),
            counter: 0,
            digest,
        }
    }

    /// Add or remove (the same thing) this direction's layer for the next cell.
    fn layer(&mut self, body: &mut CellBody) {
        xor_keystream(&self.key, self.counter, body);
        // 2^64 cells is never reached; wrapping would only repeat a nonce.
        self.counter = self.counter.wrapping_add(1);
    }

    /// Origin: `body` is a plaintext relay body with `recognized` = 0 and `digest` = 0. Absorb
    /// it, write the digest field, return the SENDME tag for it.
    fn seal(&mut self, body: &mut CellBody) -> SendmeTag {
        body[field::RECOGNIZED].fill(0);
        body[field::DIGEST].fill(0);
        self.digest.update(&body[..]);
        let d = self.digest.clone().finalize();
        body[field::DIGEST].copy_from_slice(&d[..4]);
        tag(&d)
    }

    /// Endpoint: is this plaintext body for us? If so, absorb it and return its SENDME tag.
    fn recognize(&mut self, body: &CellBody) -> Option<SendmeTag> {
        if body[field::RECOGNIZED] != [0, 0] {
            return None;
        }
        let mut zeroed = *body;
        zeroed[field::DIGEST].fill(0);
        let mut candidate = self.digest.clone();
        candidate.update(&zeroed[..]);
        let d = candidate.clone().finalize();
        // Not constant time, deliberately: a mismatch destroys the circuit, so there is no
        // oracle to query twice.
        if d[..4] != body[field::DIGEST] {
            return None;
        }
        self.digest = candidate;
        Some(tag(&d))
    }
}

fn tag(d: &[u8]) -> SendmeTag {
    d[..SENDME_TAG_LEN].try_into().expect("SHA-256 is 32 bytes")
}

/// The state both ends of one hop share.
#[derive(Clone)]
struct HopCrypto {
    fwd: Direction,
    bwd: Direction,
}

impl HopCrypto {
    fn new(keys: &HopKeys) -> HopCrypto {
        HopCrypto {
            fwd: Direction::new(keys.forward()),
            bwd: Direction::new(keys.backward()),
        }
    }
}

/// The proxy's relay crypto for one circuit: one [`HopKeys`] per hop, hop 0 first.
#[derive(Clone, Default)]
pub struct ProxyCrypto {
    hops: Vec<HopCrypto>,
}

impl std::fmt::Debug for ProxyCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyCrypto({} hops)", self.hops.len())
    }
}

impl ProxyCrypto {
    pub fn new() -> ProxyCrypto {
        ProxyCrypto::default()
    }

    /// Add the next hop (after its handshake finished).
    pub fn add_hop(&mut self, keys: &HopKeys) {
        self.hops.push(HopCrypto::new(keys));
    }

    /// Forget every hop after the first `n` (after TRUNCATED).
    pub fn truncate(&mut self, n: usize) {
        self.hops.truncate(n);
    }

    pub fn len(&self) -> usize {
        self.hops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// Seal a plaintext relay body for hop `hop` (0-based) and wrap it in the layers of hops
    /// `hop..=0`, ready to send to hop 0. Returns the cell's SENDME tag. `hop` out of range is a
    /// caller bug and is clamped to the last hop.
    pub fn originate(&mut self, hop: usize, body: &mut CellBody) -> SendmeTag {
        let hop = hop.min(self.hops.len().saturating_sub(1));
        let Some(target) = self.hops.get_mut(hop) else {
            return [0; SENDME_TAG_LEN];
        };
        let tag = target.fwd.seal(body);
        for h in self.hops[..=hop].iter_mut().rev() {
            h.fwd.layer(body);
        }
        tag
    }

    /// Peel backward layers, hop 0 first, until a hop recognizes the cell. Returns which hop
    /// sent it and its SENDME tag, or `None` if no hop did: the cell was modified, reordered
    /// or replayed, and the circuit must be destroyed (its state is now out of step anyway).
    pub fn receive(&mut self, body: &mut CellBody) -> Option<(usize, SendmeTag)> {
        for (i, h) in self.hops.iter_mut().enumerate() {
            h.bwd.layer(body);
            if let Some(tag) = h.bwd.recognize(body) {
                return Some((i, tag));
            }
        }
        None
    }
}

/// A router's relay crypto for one circuit (its own hop only).
#[derive(Clone)]
pub struct RouterCrypto {
    hop: HopCrypto,
}

impl std::fmt::Debug for RouterCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouterCrypto(..)")
    }
}

/// What a router found under its layer of a forward cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cell is for this hop; here is its SENDME tag. The body is now plaintext.
    Recognized(SendmeTag),
    /// Not for this hop: pass the (still layered) body to the next hop, or, at the last hop,
    /// destroy the circuit.
    Pass,
}

impl RouterCrypto {
    pub fn new(keys: &HopKeys) -> RouterCrypto {
        RouterCrypto {
            hop: HopCrypto::new(keys),
        }
    }

    /// Remove this hop's layer from a forward cell and see whether it is for us.
    pub fn forward(&mut self, body: &mut CellBody) -> Forward {
        self.hop.fwd.layer(body);
        match self.hop.fwd.recognize(body) {
            Some(tag) => Forward::Recognized(tag),
            None => Forward::Pass,
        }
    }

    /// Add this hop's layer to a backward cell coming from further along the circuit.
    pub fn relay_backward(&mut self, body: &mut CellBody) {
        self.hop.bwd.layer(body);
    }

    /// Seal a plaintext relay body from this hop to the proxy and add our layer.
    pub fn originate_backward(&mut self, body: &mut CellBody) -> SendmeTag {
        let tag = self.hop.bwd.seal(body);
        self.hop.bwd.layer(body);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_rfc8439_chacha20_and_its_own_inverse() {
        // RFC 8439 appendix A.1, test vector 1: all-zero key and nonce, block counter 0.
        let mut body = [0u8; BODY_LEN];
        xor_keystream(&[0; 32], 0, &mut body);
        assert_eq!(
            hex::encode(&body[..64]),
            concat!(
                "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7",
                "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
            )
        );
        let ks = body;
        xor_keystream(&[0; 32], 0, &mut body);
        assert_eq!(body, [0u8; BODY_LEN]);
        // Another cell number is another keystream.
        xor_keystream(&[0; 32], 1, &mut body);
        assert_ne!(body, ks);
    }
}

//! Relay crypto: how a 509-byte relay body is layered, recognized and checked.
//!
//! See the crate docs ("Relay crypto") for the construction and why it was chosen. In short,
//! per hop and per direction:
//!
//! - a **layer**: LIONESS, a 4-round wide-block cipher over the whole body built from ChaCha20
//!   and HMAC-SHA256, tweaked by a cell counter. The body never grows. Any change to a layered
//!   body turns *all* of it into noise after the next honest hop removes its layer.
//! - a **running digest** (SHA-256 seeded with a secret): the endpoint that builds a cell sets
//!   `recognized = 0` and the first 4 digest bytes; the hop it is for sees `recognized == 0` and
//!   a matching digest after removing its layer, and absorbs the cell into its own digest.
//!
//! ```text
//! body = L (32 bytes) | R (477 bytes)
//! encrypt(t):  R ^= ChaCha20(L ^ K1, nonce t)   L ^= HMAC(K2, t | R)
//!              R ^= ChaCha20(L ^ K3, nonce t)   L ^= HMAC(K4, t | R)
//! decrypt(t):  the same four steps in reverse order
//! t = 12-byte nonce: 4 zero bytes | cell counter (u64, big-endian) of this hop and direction
//! ```

use crate::handshake::{HopKeys, DIRECTION_KEYS_LEN};
use hmac::{Hmac, Mac};
use onionmesh_wire::cell::{field, CellBody, BODY_LEN, SENDME_TAG_LEN};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

const L_LEN: usize = 32;

/// The authenticator an authenticated SENDME echoes: the running digest of the cell it
/// acknowledges, cut to [`SENDME_TAG_LEN`] bytes.
pub type SendmeTag = [u8; SENDME_TAG_LEN];

/// LIONESS over the 509-byte body.
#[derive(Clone)]
struct Lioness {
    k1: [u8; 32],
    k2: Hmac<Sha256>,
    k3: [u8; 32],
    k4: Hmac<Sha256>,
}

impl Lioness {
    fn new(k: &[u8]) -> Lioness {
        let key = |i: usize| -> [u8; 32] { k[32 * i..32 * (i + 1)].try_into().expect("32") };
        let mac = |i: usize| {
            <Hmac<Sha256> as Mac>::new_from_slice(&key(i)).expect("HMAC takes any key length")
        };
        Lioness {
            k1: key(0),
            k2: mac(1),
            k3: key(2),
            k4: mac(3),
        }
    }

    /// XOR the ChaCha20 keystream for key `key ^ l` and nonce `tweak` into `r`.
    ///
    /// The keystream comes from `rand_chacha`, whose block function is the original ChaCha20
    /// (64-bit block counter in words 12-13, 64-bit nonce in words 14-15), value-stable across
    /// versions. Our 12-byte tweak always starts with 4 zero bytes, so this is exactly RFC 8439
    /// ChaCha20 with nonce `tweak` and initial counter 0 (checked by `tests/vectors.rs`, whose
    /// expected values come from an RFC 8439 implementation). Why not the `chacha20` crate: its
    /// generic code is compiled into this crate, unoptimised in debug builds, which made the
    /// test suite ten times slower; `rand_chacha`'s block function is compiled as a dependency.
    fn stream(key: &[u8; 32], l: &[u8], tweak: &[u8; 12], r: &mut [u8]) {
        let mut k = *key;
        for (k, l) in k.iter_mut().zip(l) {
            *k ^= l;
        }
        let mut ks = ChaCha20Rng::from_seed(k);
        ks.set_stream(u64::from_le_bytes(tweak[4..].try_into().expect("8 bytes")));
        let mut buf = [0u8; BODY_LEN - L_LEN];
        let buf = &mut buf[..r.len().min(BODY_LEN - L_LEN)];
        ks.fill_bytes(buf);
        for (r, k) in r.iter_mut().zip(buf.iter()) {
            *r ^= k;
        }
    }

    fn hash(mac: &Hmac<Sha256>, tweak: &[u8; 12], r: &[u8], l: &mut [u8]) {
        let mut m = mac.clone();
        m.update(tweak);
        m.update(r);
        for (l, h) in l.iter_mut().zip(m.finalize().into_bytes()) {
            *l ^= h;
        }
    }

    fn encrypt(&self, tweak: &[u8; 12], body: &mut CellBody) {
        let (l, r) = body.split_at_mut(L_LEN);
        Self::stream(&self.k1, l, tweak, r);
        Self::hash(&self.k2, tweak, r, l);
        Self::stream(&self.k3, l, tweak, r);
        Self::hash(&self.k4, tweak, r, l);
    }

    fn decrypt(&self, tweak: &[u8; 12], body: &mut CellBody) {
        let (l, r) = body.split_at_mut(L_LEN);
        Self::hash(&self.k4, tweak, r, l);
        Self::stream(&self.k3, l, tweak, r);
        Self::hash(&self.k2, tweak, r, l);
        Self::stream(&self.k1, l, tweak, r);
    }
}

/// One hop's crypto in one direction: its layer, the layer's cell counter and the running
/// digest of the cells this direction's endpoints exchanged with that hop.
#[derive(Clone)]
struct Direction {
    layer: Lioness,
    counter: u64,
    digest: Sha256,
}

impl Direction {
    fn new(k: &[u8; DIRECTION_KEYS_LEN]) -> Direction {
        let mut digest = Sha256::new();
        digest.update(&k[128..160]);
        Direction {
            layer: Lioness::new(&k[..128]),
            counter: 0,
            digest,
        }
    }

    fn tweak(&mut self) -> [u8; 12] {
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&self.counter.to_be_bytes());
        // 2^64 cells of 509 bytes is never reached; wrapping would only repeat a tweak.
        self.counter = self.counter.wrapping_add(1);
        t
    }

    fn encrypt(&mut self, body: &mut CellBody) {
        let t = self.tweak();
        self.layer.encrypt(&t, body);
    }

    fn decrypt(&mut self, body: &mut CellBody) {
        let t = self.tweak();
        self.layer.decrypt(&t, body);
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
            h.fwd.encrypt(body);
        }
        tag
    }

    /// Peel backward layers, hop 0 first, until a hop recognizes the cell. Returns which hop
    /// sent it and its SENDME tag, or `None` if no hop did: the cell was modified, reordered
    /// or replayed, and the circuit must be destroyed (its state is now out of step anyway).
    pub fn receive(&mut self, body: &mut CellBody) -> Option<(usize, SendmeTag)> {
        for (i, h) in self.hops.iter_mut().enumerate() {
            h.bwd.decrypt(body);
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
        self.hop.fwd.decrypt(body);
        match self.hop.fwd.recognize(body) {
            Some(tag) => Forward::Recognized(tag),
            None => Forward::Pass,
        }
    }

    /// Add this hop's layer to a backward cell coming from further along the circuit.
    pub fn relay_backward(&mut self, body: &mut CellBody) {
        self.hop.bwd.encrypt(body);
    }

    /// Seal a plaintext relay body from this hop to the proxy and add our layer.
    pub fn originate_backward(&mut self, body: &mut CellBody) -> SendmeTag {
        let tag = self.hop.bwd.seal(body);
        self.hop.bwd.encrypt(body);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lioness_is_a_permutation_and_diffuses() {
        let keys: Vec<u8> = (0..128).collect();
        let l = Lioness::new(&keys);
        let mut body = [7u8; BODY_LEN];
        let orig = body;
        l.encrypt(&[0; 12], &mut body);
        let once = body;
        l.decrypt(&[0; 12], &mut body);
        assert_eq!(body, orig);
        // One flipped bit anywhere changes about half of the output bits everywhere.
        for pos in [0usize, 31, 32, 300, 508] {
            let mut b = orig;
            b[pos] ^= 1;
            l.encrypt(&[0; 12], &mut b);
            let changed: u32 = b
                .iter()
                .zip(once.iter())
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert!(changed > 1800 && changed < 2300, "{changed} bits changed");
        }
        // The tweak matters.
        let mut b = orig;
        l.encrypt(&[1; 12], &mut b);
        assert_ne!(b, once);
    }
}

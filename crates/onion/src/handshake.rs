//! The circuit handshake: Tor's ntor, one-way authenticated, on secp256k1.
//!
//! The client knows the router's ID and onion key `B = b·G`; the router proves it holds `b`,
//! the client stays anonymous. Both sides get fresh keys for one hop.
//!
//! ```text
//! client                                          router (ID, b, B)
//! x random, X = x·G
//!            -- onionskin: ID (20) | B (33) | X (33) -->
//!                                                 check ID and B are ours
//!                                                 y random, Y = y·G
//!                                                 s = X·y | X·b | ID | B | X | Y | PROTOID
//!            <-- reply: Y (33) | AUTH (32) --------
//! s = Y·x | B·x | ID | B | X | Y | PROTOID
//! ```
//!
//! With `PROTOID = "onionmesh-ntor-k256-v1"` and `T(label) = PROTOID ":" label`:
//!
//! ```text
//! PRK    = HKDF-Extract(salt = T("key_extract"), IKM = s)          (SHA-256)
//! verify = HKDF-Expand(PRK, T("verify"), 32)
//! keys   = HKDF-Expand(PRK, T("key_expand"), 128)                  -> HopKeys
//! AUTH   = HMAC-SHA256(T("mac"), verify | ID | B | Y | X | PROTOID | "Server")
//! ```
//!
//! Points are SEC1-compressed; `P·k` is the x-coordinate of the product (32 bytes, as in
//! ECDH). `X·y` gives forward secrecy (both ephemerals are thrown away after the handshake);
//! `X·b` authenticates the router: only the holder of `b` can compute `s`, hence `AUTH`. The
//! client compares `AUTH` in constant time. A router refuses an onionskin naming another ID or
//! key, so a client that picked a router by ID cannot silently be handed a different one.

// Defined beside the keys (whose parsing fails with `BadPoint`), so that `key` needs nothing
// from this module and the two do not import each other.
pub use crate::key::HandshakeError;
use crate::key::{OnionKey, OnionPublicKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use k256::elliptic_curve::ecdh::diffie_hellman;
use k256::{NonZeroScalar, PublicKey};
use onionmesh_wire::{NodeId, ID_LEN, PUBKEY_LEN};
use rand_core::CryptoRngCore;
use sha2::Sha256;

/// Domain separation for every derivation in the handshake.
pub const PROTOID: &[u8] = b"onionmesh-ntor-k256-v1";
/// Client -> router: ID, B, X.
pub const ONIONSKIN_LEN: usize = ID_LEN + 2 * PUBKEY_LEN;
/// Router -> client: Y, AUTH.
pub const REPLY_LEN: usize = PUBKEY_LEN + 32;
/// Bytes of key material per hop: per direction a ChaCha20 key and a digest seed, 32 each.
pub const HOP_KEYS_LEN: usize = 2 * DIRECTION_KEYS_LEN;
/// Bytes of key material per direction.
pub const DIRECTION_KEYS_LEN: usize = 2 * 32;

/// Keys for one hop, both directions. Forward = proxy to router, backward = router to proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct HopKeys {
    material: [u8; HOP_KEYS_LEN],
}

impl std::fmt::Debug for HopKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopKeys(..)")
    }
}

impl HopKeys {
    /// Keys from raw material (tests and benches; real keys come from the handshake).
    pub fn from_bytes(material: [u8; HOP_KEYS_LEN]) -> HopKeys {
        HopKeys { material }
    }

    /// All 128 bytes: forward (ChaCha20 key, digest seed), then backward, 32 bytes each.
    pub fn as_bytes(&self) -> &[u8; HOP_KEYS_LEN] {
        &self.material
    }

    pub(crate) fn forward(&self) -> &[u8; DIRECTION_KEYS_LEN] {
        self.material[..DIRECTION_KEYS_LEN]
            .try_into()
            .expect("half of HOP_KEYS_LEN")
    }

    pub(crate) fn backward(&self) -> &[u8; DIRECTION_KEYS_LEN] {
        self.material[DIRECTION_KEYS_LEN..]
            .try_into()
            .expect("half of HOP_KEYS_LEN")
    }
}

fn label(name: &str) -> Vec<u8> {
    let mut v = PROTOID.to_vec();
    v.push(b':');
    v.extend_from_slice(name.as_bytes());
    v
}

fn dh(secret: &NonZeroScalar, public: &PublicKey) -> [u8; 32] {
    let shared = diffie_hellman(secret, public.as_affine());
    (*shared.raw_secret_bytes()).into()
}

struct Transcript<'a> {
    id: &'a NodeId,
    b: &'a [u8; PUBKEY_LEN],
    x: &'a [u8; PUBKEY_LEN],
    y: &'a [u8; PUBKEY_LEN],
}

/// Derive (the AUTH MAC, ready to finalize or verify; keys) from the two shared secrets and the
/// public transcript.
fn derive(xy: &[u8; 32], xb: &[u8; 32], t: &Transcript<'_>) -> (Hmac<Sha256>, [u8; HOP_KEYS_LEN]) {
    let mut secret_input = Vec::with_capacity(64 + ONIONSKIN_LEN + PUBKEY_LEN + PROTOID.len());
    secret_input.extend_from_slice(xy);
    secret_input.extend_from_slice(xb);
    secret_input.extend_from_slice(&t.id.0);
    secret_input.extend_from_slice(t.b);
    secret_input.extend_from_slice(t.x);
    secret_input.extend_from_slice(t.y);
    secret_input.extend_from_slice(PROTOID);

    let hk = Hkdf::<Sha256>::new(Some(&label("key_extract")), &secret_input);
    let mut verify = [0u8; 32];
    let mut keys = [0u8; HOP_KEYS_LEN];
    // Both lengths are far below HKDF-SHA256's limit of 255 * 32 bytes.
    hk.expand(&label("verify"), &mut verify)
        .expect("32 bytes is a valid HKDF length");
    hk.expand(&label("key_expand"), &mut keys)
        .expect("128 bytes is a valid HKDF length");

    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&label("mac"))
        .expect("HMAC takes keys of any length");
    mac.update(&verify);
    mac.update(&t.id.0);
    mac.update(t.b);
    mac.update(t.y);
    mac.update(t.x);
    mac.update(PROTOID);
    mac.update(b"Server");
    (mac, keys)
}

/// The client's half-finished handshake with one router.
pub struct ClientHandshake {
    x: NonZeroScalar,
    big_x: [u8; PUBKEY_LEN],
    router_id: NodeId,
    router_key: OnionPublicKey,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("router_id", &self.router_id)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Start a handshake with the router `router_id` whose onion key is `router_key`.
    /// Returns the state to keep and the onionskin to send (in CREATE2 or EXTEND2).
    pub fn new(
        rng: &mut impl CryptoRngCore,
        router_id: NodeId,
        router_key: &OnionPublicKey,
    ) -> (ClientHandshake, [u8; ONIONSKIN_LEN]) {
        let x = NonZeroScalar::random(rng);
        let big_x = OnionPublicKey::from_point(PublicKey::from_secret_scalar(&x)).to_bytes();
        let mut skin = [0u8; ONIONSKIN_LEN];
        skin[..ID_LEN].copy_from_slice(&router_id.0);
        skin[ID_LEN..ID_LEN + PUBKEY_LEN].copy_from_slice(&router_key.to_bytes());
        skin[ID_LEN + PUBKEY_LEN..].copy_from_slice(&big_x);
        (
            ClientHandshake {
                x,
                big_x,
                router_id,
                router_key: *router_key,
            },
            skin,
        )
    }

    /// The router this handshake is with.
    pub fn router_id(&self) -> NodeId {
        self.router_id
    }

    /// Check the router's reply and derive the hop keys. Consumes the ephemeral secret.
    pub fn finish(self, reply: &[u8]) -> Result<HopKeys, HandshakeError> {
        if reply.len() != REPLY_LEN {
            return Err(HandshakeError::BadLength {
                got: reply.len(),
                expected: REPLY_LEN,
            });
        }
        let (y_bytes, auth) = reply.split_at(PUBKEY_LEN);
        let y_bytes: [u8; PUBKEY_LEN] = y_bytes.try_into().expect("split at PUBKEY_LEN");
        let y = OnionPublicKey::from_bytes(&y_bytes)?;
        let xy = dh(&self.x, y.point());
        let xb = dh(&self.x, self.router_key.point());
        let b = self.router_key.to_bytes();
        let t = Transcript {
            id: &self.router_id,
            b: &b,
            x: &self.big_x,
            y: &y_bytes,
        };
        let (mac, keys) = derive(&xy, &xb, &t);
        // `verify_slice` compares in constant time.
        mac.verify_slice(auth)
            .map_err(|_| HandshakeError::BadAuth)?;
        Ok(HopKeys { material: keys })
    }
}

/// The router's side: check the onionskin, answer it, derive the hop keys.
pub fn server_handshake(
    rng: &mut impl CryptoRngCore,
    local_id: NodeId,
    key: &OnionKey,
    onionskin: &[u8],
) -> Result<([u8; REPLY_LEN], HopKeys), HandshakeError> {
    if onionskin.len() != ONIONSKIN_LEN {
        return Err(HandshakeError::BadLength {
            got: onionskin.len(),
            expected: ONIONSKIN_LEN,
        });
    }
    let (id, rest) = onionskin.split_at(ID_LEN);
    let (b, x) = rest.split_at(PUBKEY_LEN);
    let our_b = key.public().to_bytes();
    if id != local_id.0 || b != our_b {
        return Err(HandshakeError::NotForUs);
    }
    let x_bytes: [u8; PUBKEY_LEN] = x.try_into().expect("split at PUBKEY_LEN");
    let big_x = OnionPublicKey::from_bytes(&x_bytes)?;
    let y = NonZeroScalar::random(rng);
    let big_y = OnionPublicKey::from_point(PublicKey::from_secret_scalar(&y)).to_bytes();
    let xy = dh(&y, big_x.point());
    let xb = dh(key.secret(), big_x.point());
    let t = Transcript {
        id: &local_id,
        b: &our_b,
        x: &x_bytes,
        y: &big_y,
    };
    let (mac, keys) = derive(&xy, &xb, &t);
    let auth = mac.finalize().into_bytes();
    let mut reply = [0u8; REPLY_LEN];
    reply[..PUBKEY_LEN].copy_from_slice(&big_y);
    reply[PUBKEY_LEN..].copy_from_slice(&auth);
    Ok((reply, HopKeys { material: keys }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn router(seed: u8) -> (NodeId, OnionKey) {
        let key = OnionKey::from_seed([seed; 32]).unwrap();
        (key.public().node_id(), key)
    }

    #[test]
    fn both_sides_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (id, key) = router(5);
        let (client, skin) = ClientHandshake::new(&mut rng, id, key.public());
        assert_eq!(skin.len(), ONIONSKIN_LEN);
        let (reply, server_keys) = server_handshake(&mut rng, id, &key, &skin).unwrap();
        assert_eq!(reply.len(), REPLY_LEN);
        let client_keys = client.finish(&reply).unwrap();
        assert_eq!(client_keys, server_keys);
        assert_ne!(client_keys.forward(), client_keys.backward());
    }

    #[test]
    fn wrong_key_and_forged_auth_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (id, key) = router(5);
        let (_, other) = router(6);

        // The client expects `other`'s key at `id`: the router refuses.
        let (_, skin) = ClientHandshake::new(&mut rng, id, other.public());
        assert_eq!(
            server_handshake(&mut rng, id, &key, &skin).unwrap_err(),
            HandshakeError::NotForUs
        );

        // An impostor holding `other` answers for `id`/`key` (it skips its own check):
        // it cannot compute X·b, so AUTH fails at the client.
        let (client, skin) = ClientHandshake::new(&mut rng, id, key.public());
        let mut forged_skin = skin;
        forged_skin[ID_LEN..ID_LEN + PUBKEY_LEN].copy_from_slice(&other.public().to_bytes());
        let (reply, _) = server_handshake(&mut rng, id, &other, &forged_skin).unwrap();
        assert_eq!(client.finish(&reply).unwrap_err(), HandshakeError::BadAuth);

        // Any flipped bit of a real reply fails.
        for bit in [0usize, 8 * 20, 8 * 40, 8 * 64 + 7] {
            let (client, skin) = ClientHandshake::new(&mut rng, id, key.public());
            let (mut reply, _) = server_handshake(&mut rng, id, &key, &skin).unwrap();
            reply[bit / 8] ^= 1 << (bit % 8);
            assert!(client.finish(&reply).is_err());
        }

        // Lengths.
        let (client, _) = ClientHandshake::new(&mut rng, id, key.public());
        assert!(matches!(
            client.finish(&[0; 10]),
            Err(HandshakeError::BadLength { .. })
        ));
        assert!(matches!(
            server_handshake(&mut rng, id, &key, &[0; 85]),
            Err(HandshakeError::BadLength { .. })
        ));
    }
}

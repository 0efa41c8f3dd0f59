//! The secure channel between a node and its bridge: a WebSocket, possibly plain `ws://`, that
//! carries nothing an observer can read, and nothing an attacker can change, replay, reorder or
//! cut short without the receiver noticing.
//!
//! Sans-IO: the caller moves the three handshake messages and every frame; this module only
//! turns bytes into bytes. One WebSocket binary message is one handshake message or one frame.
//!
//! ## Handshake (SIGMA-I with ECDH on secp256k1, identities hidden from passive observers)
//!
//! ```text
//! client (node identity C)                               server (bridge identity S)
//! e_c random
//!   -- m1: 0x01 (version) | E_c (33) ------------------>
//!                                                        e_s random
//!                                                        th1 = SHA-256(PROTO | m1 | E_s)
//!                                                        PRK = HKDF-Extract(th1, ECDH(e_s, E_c))
//!   <-- m2: E_s (33) | AEAD(hs_s2c, 0, th1, S (33) | sig_S (64)) --
//!          sig_S = Sign_S(PROTO | "server" | th1)
//! check sig_S (and S's ID against a pinned one)
//! th2 = SHA-256(th1 | S | sig_S)
//!   -- m3: AEAD(hs_c2s, 0, th2, C (33) | sig_C (64)) --->
//!          sig_C = Sign_C(PROTO | "client" | th2)
//!                                                        check sig_C
//! th3 = SHA-256(th2 | C | sig_C)
//! frames: AEAD(k_c2s or k_s2c, counter, "", payload)
//! ```
//!
//! with `PROTO = "onionmesh-link-v1"`, ECDH the x-coordinate of the shared point, `Sign` the
//! identities' ECDSA (SHA-256, RFC 6979, low-S) and AEAD ChaCha20-Poly1305 (RFC 8439) with the
//! 12-byte nonce `0x00000000 | counter (u64, big-endian)` and the transcript hash as associated
//! data. Keys, all 32 bytes, are `HKDF-Expand(PRK, PROTO | label [| th3])` with labels
//! `" hs s2c"`, `" hs c2s"` (handshake) and `" c2s"`, `" s2c"` (followed by th3; the frames).
//!
//! Why this shape:
//! - Both ephemerals are fresh and thrown away: forward secrecy. Each side signs a transcript
//!   that holds both ephemerals (and the client's also the server's identity), so a signature
//!   cannot be replayed into another session, and the frame keys depend on both identities.
//! - The identities travel encrypted. A passive observer sees two random-looking points and
//!   ciphertext; it learns neither the bridge's ID nor the node's (SIGMA-I). The client reveals
//!   its identity only after checking the server's signature, so with a pinned bridge ID only
//!   that bridge ever learns who connected. Without a pin the client still gets a channel no
//!   passive observer can read, but an active man in the middle would not be detected.
//! - Each direction numbers its frames implicitly (the nonce counter is not on the wire), so a
//!   changed, replayed, reordered or dropped frame fails authentication, and the channel is
//!   dead from then on: the caller closes the WebSocket.
//!
//! Test vectors: `tests` below (hex).

use crate::{verify, Identity};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use k256::elliptic_curve::ecdh::diffie_hellman;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{NonZeroScalar, PublicKey};
use onionmesh_wire::{NodeId, PublicKeyBytes, SignatureBytes, PUBKEY_LEN};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain separation for every hash, key and signature of the channel.
pub const PROTO: &[u8] = b"onionmesh-link-v1";
/// The only version of m1.
pub const VERSION: u8 = 1;
/// The Poly1305 tag every encrypted message carries.
pub const TAG_LEN: usize = 16;
/// Client -> server: version, ephemeral key.
pub const M1_LEN: usize = 1 + PUBKEY_LEN;
const SIGNED_ID_LEN: usize = PUBKEY_LEN + 64;
/// Server -> client: ephemeral key, then its identity and signature, encrypted.
pub const M2_LEN: usize = PUBKEY_LEN + SIGNED_ID_LEN + TAG_LEN;
/// Client -> server: its identity and signature, encrypted.
pub const M3_LEN: usize = SIGNED_ID_LEN + TAG_LEN;

/// Why the handshake or a frame failed. Every variant but [`ChannelError::Exhausted`] means the
/// other side (or someone on the wire) broke the protocol: close the connection, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelError {
    #[error("the {what} is {got} bytes; expected {expected}")]
    BadLength {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("the peer speaks link protocol version {0}; this node speaks version 1")]
    UnsupportedVersion(u8),
    #[error("a public key in the handshake is not a valid secp256k1 point")]
    BadPoint,
    #[error(
        "a handshake message failed authentication: it was changed on the way, or the peer \
         does not share our keys"
    )]
    HandshakeDecrypt,
    #[error("the peer's identity signature over the handshake does not verify")]
    BadSignature,
    #[error("the bridge is {got}, not the pinned {expected}: refusing to talk to it")]
    WrongPeer { expected: NodeId, got: NodeId },
    #[error(
        "a frame failed authentication: it was changed, replayed, reordered or cut short on \
         the way"
    )]
    FrameDecrypt,
    #[error("the frame is {0} bytes, shorter than its 16-byte authentication tag")]
    FrameTooShort(usize),
    #[error("this channel sent 2^64 frames; open a new one")]
    Exhausted,
}

/// One direction's key and frame counter.
struct Dir {
    aead: ChaCha20Poly1305,
    counter: u64,
}

impl Dir {
    fn new(key: &[u8; 32]) -> Dir {
        Dir {
            aead: ChaCha20Poly1305::new(key.into()),
            counter: 0,
        }
    }

    fn nonce(&mut self) -> Result<[u8; 12], ChannelError> {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.checked_add(1).ok_or(ChannelError::Exhausted)?;
        Ok(n)
    }
}

/// An established channel: seal what you send, open what you receive.
pub struct Channel {
    send: Dir,
    recv: Dir,
    peer: PublicKeyBytes,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.peer_id())
            .field("sent", &self.send.counter)
            .field("received", &self.recv.counter)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Encrypt one frame; the result is `payload.len() + 16` bytes.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let nonce = self.send.nonce()?;
        // ChaCha20-Poly1305 fails only past 2^38 bytes per message, far above any frame size.
        self.send
            .aead
            .encrypt(&nonce.into(), payload)
            .map_err(|_| ChannelError::Exhausted)
    }

    /// Decrypt and authenticate the next frame. After an error the channel is out of step for
    /// good: close the connection.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if frame.len() < TAG_LEN {
            return Err(ChannelError::FrameTooShort(frame.len()));
        }
        let nonce = self.recv.nonce()?;
        self.recv
            .aead
            .decrypt(&nonce.into(), frame)
            .map_err(|_| ChannelError::FrameDecrypt)
    }

    /// The peer's long-term public key, as proven in the handshake.
    pub fn peer_key(&self) -> PublicKeyBytes {
        self.peer
    }

    /// The peer's node ID, as proven in the handshake.
    pub fn peer_id(&self) -> NodeId {
        crate::node_id(&self.peer)
    }
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn ephemeral(rng: &mut impl CryptoRngCore) -> (NonZeroScalar, PublicKeyBytes) {
    // Read the scalar as 32 bytes (not `NonZeroScalar::random`) so that test vectors can give
    // it exactly; a value outside 1..n (probability 2^-128) is drawn again.
    let secret = loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Some(s) = Option::from(NonZeroScalar::from_repr(bytes.into())) {
            break s;
        }
    };
    (secret, point_bytes(&PublicKey::from_secret_scalar(&secret)))
}

fn point_bytes(p: &PublicKey) -> PublicKeyBytes {
    let mut out = [0u8; PUBKEY_LEN];
    // A compressed point is always 33 bytes.
    out.copy_from_slice(p.to_encoded_point(true).as_bytes());
    out
}

fn parse_point(bytes: &[u8]) -> Result<PublicKey, ChannelError> {
    PublicKey::from_sec1_bytes(bytes).map_err(|_| ChannelError::BadPoint)
}

/// The pseudorandom key every later key is expanded from.
struct Prk(Hkdf<Sha256>);

impl Prk {
    fn new(secret: &NonZeroScalar, peer: &PublicKey, th1: &[u8; 32]) -> Prk {
        let shared: [u8; 32] =
            (*diffie_hellman(secret, peer.as_affine()).raw_secret_bytes()).into();
        Prk(Hkdf::<Sha256>::new(Some(th1), &shared))
    }

    fn key(&self, label: &str, th: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        self.0
            .expand_multi_info(&[PROTO, label.as_bytes(), th], &mut out)
            .expect("32 bytes is a valid HKDF length");
        out
    }
}

fn signed_message(role: &str, th: &[u8; 32]) -> Vec<u8> {
    [PROTO, role.as_bytes(), th].concat()
}

/// `identity`'s public key and its signature over `role | th`, as one plaintext.
fn signed_id(identity: &Identity, role: &str, th: &[u8; 32]) -> Vec<u8> {
    let sig = identity.sign(&signed_message(role, th));
    [&identity.public_key()[..], &sig[..]].concat()
}

/// Check a decrypted `key | signature` and return the key.
fn check_signed_id(
    plain: &[u8],
    role: &str,
    th: &[u8; 32],
) -> Result<PublicKeyBytes, ChannelError> {
    let (key, sig) = plain.split_at(PUBKEY_LEN);
    let key: PublicKeyBytes = key.try_into().map_err(|_| ChannelError::BadPoint)?;
    let sig: SignatureBytes = sig.try_into().map_err(|_| ChannelError::BadSignature)?;
    verify(&key, &signed_message(role, th), &sig).map_err(|e| match e {
        crate::CryptoError::BadPublicKey => ChannelError::BadPoint,
        _ => ChannelError::BadSignature,
    })?;
    Ok(key)
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), ChannelError> {
    if got == expected {
        Ok(())
    } else {
        Err(ChannelError::BadLength {
            what,
            got,
            expected,
        })
    }
}

/// The client (a node) between sending m1 and receiving m2.
pub struct ClientHandshake {
    secret: NonZeroScalar,
    m1: [u8; M1_LEN],
    pinned: Option<NodeId>,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Start a handshake; send the returned m1. With `pinned`, only a server that proves that
    /// ID is accepted.
    pub fn start(
        rng: &mut impl CryptoRngCore,
        pinned: Option<NodeId>,
    ) -> (ClientHandshake, [u8; M1_LEN]) {
        let (secret, public) = ephemeral(rng);
        let mut m1 = [0u8; M1_LEN];
        m1[0] = VERSION;
        m1[1..].copy_from_slice(&public);
        (ClientHandshake { secret, m1, pinned }, m1)
    }

    /// Take the server's m2; on success send the returned m3 and use the channel at once.
    pub fn finish(
        self,
        identity: &Identity,
        m2: &[u8],
    ) -> Result<(Channel, Vec<u8>), ChannelError> {
        check_len("server's handshake reply", m2.len(), M2_LEN)?;
        let (e_s, sealed) = m2.split_at(PUBKEY_LEN);
        let peer_e = parse_point(e_s)?;
        let th1 = sha(&[PROTO, &self.m1, e_s]);
        let prk = Prk::new(&self.secret, &peer_e, &th1);
        let plain = ChaCha20Poly1305::new(&prk.key(" hs s2c", &[]).into())
            .decrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: sealed,
                    aad: &th1,
                },
            )
            .map_err(|_| ChannelError::HandshakeDecrypt)?;
        let server = check_signed_id(&plain, "server", &th1)?;
        if let Some(expected) = self.pinned {
            let got = crate::node_id(&server);
            if got != expected {
                return Err(ChannelError::WrongPeer { expected, got });
            }
        }
        let th2 = sha(&[&th1, &plain]);
        let mine = signed_id(identity, "client", &th2);
        let m3 = ChaCha20Poly1305::new(&prk.key(" hs c2s", &[]).into())
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: &mine,
                    aad: &th2,
                },
            )
            .map_err(|_| ChannelError::Exhausted)?;
        let th3 = sha(&[&th2, &mine]);
        let channel = Channel {
            send: Dir::new(&prk.key(" c2s", &th3)),
            recv: Dir::new(&prk.key(" s2c", &th3)),
            peer: server,
        };
        Ok((channel, m3))
    }
}

/// The server (a bridge) between sending m2 and receiving m3.
pub struct ServerHandshake {
    prk: Prk,
    th2: [u8; 32],
    own: PublicKeyBytes,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake").finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// Answer a client's m1; send the returned m2.
    pub fn respond(
        rng: &mut impl CryptoRngCore,
        identity: &Identity,
        m1: &[u8],
    ) -> Result<(ServerHandshake, Vec<u8>), ChannelError> {
        if let Some(&v) = m1.first() {
            if v != VERSION {
                return Err(ChannelError::UnsupportedVersion(v));
            }
        }
        check_len("client's first handshake message", m1.len(), M1_LEN)?;
        let peer_e = parse_point(&m1[1..])?;
        let (secret, e_s) = ephemeral(rng);
        let th1 = sha(&[PROTO, m1, &e_s]);
        let prk = Prk::new(&secret, &peer_e, &th1);
        let mine = signed_id(identity, "server", &th1);
        let sealed = ChaCha20Poly1305::new(&prk.key(" hs s2c", &[]).into())
            .encrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: &mine,
                    aad: &th1,
                },
            )
            .map_err(|_| ChannelError::Exhausted)?;
        let th2 = sha(&[&th1, &mine]);
        let m2 = [&e_s[..], &sealed].concat();
        let own = identity.public_key();
        Ok((ServerHandshake { prk, th2, own }, m2))
    }

    /// Take the client's m3: the channel, whose `peer_id` is the client's proven node ID.
    pub fn finish(self, m3: &[u8]) -> Result<Channel, ChannelError> {
        check_len("client's handshake proof", m3.len(), M3_LEN)?;
        let plain = ChaCha20Poly1305::new(&self.prk.key(" hs c2s", &[]).into())
            .decrypt(
                &[0u8; 12].into(),
                Payload {
                    msg: m3,
                    aad: &self.th2,
                },
            )
            .map_err(|_| ChannelError::HandshakeDecrypt)?;
        let client = check_signed_id(&plain, "client", &self.th2)?;
        if client == self.own {
            // Our own signature reflected back: not a client.
            return Err(ChannelError::BadSignature);
        }
        let th3 = sha(&[&self.th2, &plain]);
        Ok(Channel {
            send: Dir::new(&self.prk.key(" s2c", &th3)),
            recv: Dir::new(&self.prk.key(" c2s", &th3)),
            peer: client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{CryptoRng, RngCore};

    /// An "RNG" that hands out the bytes it was given (the ephemeral scalars, big-endian).
    struct Fixed(Vec<u8>);
    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            unimplemented!("the handshake only fills byte arrays")
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!("the handshake only fills byte arrays")
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            let rest = self.0.split_off(dest.len());
            dest.copy_from_slice(&self.0);
            self.0 = rest;
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Fixed {}

    fn ids() -> (Identity, Identity) {
        (
            Identity::from_seed([0x11; 32]).unwrap(),
            Identity::from_seed([0x22; 32]).unwrap(),
        )
    }

    fn pair(seed: u64) -> (Channel, Channel) {
        let (client_id, server_id) = ids();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (c, m1) = ClientHandshake::start(&mut rng, Some(server_id.id()));
        let (s, m2) = ServerHandshake::respond(&mut rng, &server_id, &m1).unwrap();
        let (client, m3) = c.finish(&client_id, &m2).unwrap();
        let server = s.finish(&m3).unwrap();
        (client, server)
    }

    /// Client identity secret 11..11, server 22..22, client ephemeral 33..33, server ephemeral
    /// 44..44; then the client sends "hello" and the server "welcome". Checked independently
    /// with Python's `cryptography` (ECDH, HKDF, ChaCha20-Poly1305, ECDSA verification: every
    /// step but producing the RFC 6979 signatures).
    #[test]
    fn handshake_vector() {
        let (client_id, server_id) = ids();
        let (c, m1) = ClientHandshake::start(&mut Fixed(vec![0x33; 32]), Some(server_id.id()));
        let (s, m2) =
            ServerHandshake::respond(&mut Fixed(vec![0x44; 32]), &server_id, &m1).unwrap();
        let (mut client, m3) = c.finish(&client_id, &m2).unwrap();
        let mut server = s.finish(&m3).unwrap();
        assert_eq!(server.peer_id(), client_id.id());
        assert_eq!(client.peer_id(), server_id.id());
        let f1 = client.seal(b"hello").unwrap();
        let f2 = server.seal(b"welcome").unwrap();
        let got = [
            hex::encode(m1),
            hex::encode(&m2),
            hex::encode(&m3),
            hex::encode(&f1),
            hex::encode(&f2),
        ];
        let want: [&str; 5] = [
            concat!(
                "01023c72addb4fdf09af94f0c94d7fe92a386a7e70cf8a1d85916386bb2535c7",
                "b1b1"
            ),
            concat!(
                "032c0b7cf95324a07d05398b240174dc0c2be444d96b159aa6c7f7b1e6686809",
                "9199723ed5c0d760fb32698b4a3608723a6512d8948dcbf640cf5da55a9b7143",
                "05dfb463763d1623d7c86ed6264c86c1eaf3356a225ef8eb6dabef559e13ff24",
                "e8b99279529ed9a86f7ba554850e18f3a9fab7099f120e8146c096041c778466",
                "4276588bde8d1ee905c33be8309fd5b71dca"
            ),
            concat!(
                "f9802fdd8c3e194bc2fdb16a6662efffb9227de815195bb08269b63efb1852f9",
                "cfe35810a7b630a53809361c311ef7cb650fe0fa5ba78e7bd641fe9328c4ae0f",
                "4e93d47415b3081210719389776fd72e5b1c451b122b6a30cacd7afa2f4e5b30",
                "7ea6b8fd5a8e3245b25e494469efe6f6f5"
            ),
            "52d1de967b6a40bab3913262ead6b726c63ed3c818",
            "1d5c5a3e518a49703f837b75c2924788a254d4fc13ad32",
        ];
        assert_eq!(got, want);
        assert_eq!(server.open(&f1).unwrap(), b"hello");
        assert_eq!(client.open(&f2).unwrap(), b"welcome");
    }

    #[test]
    fn frames_flow_both_ways_and_tampering_is_caught() {
        let (mut c, mut s) = pair(1);
        for i in 0..3u8 {
            let f = c.seal(&[i; 40]).unwrap();
            assert_eq!(f.len(), 40 + TAG_LEN);
            assert_eq!(s.open(&f).unwrap(), vec![i; 40]);
            let g = s.seal(&[]).unwrap();
            assert_eq!(c.open(&g).unwrap(), Vec::<u8>::new());
        }
        // Replay.
        let f = c.seal(b"once").unwrap();
        assert_eq!(s.open(&f).unwrap(), b"once");
        assert_eq!(s.open(&f), Err(ChannelError::FrameDecrypt));
        // Reorder.
        let (mut c, mut s) = pair(2);
        let a = c.seal(b"a").unwrap();
        let b = c.seal(b"b").unwrap();
        assert_eq!(s.open(&b), Err(ChannelError::FrameDecrypt));
        let _ = a;
        // Truncation and a frame too short to hold a tag.
        let (mut c, mut s) = pair(3);
        let f = c.seal(b"some bytes").unwrap();
        assert_eq!(s.open(&f[..f.len() - 1]), Err(ChannelError::FrameDecrypt));
        assert_eq!(s.open(&f[..3]), Err(ChannelError::FrameTooShort(3)));
        // A frame for the other direction (reflection).
        let (mut c, _) = pair(4);
        let f = c.seal(b"to server").unwrap();
        assert_eq!(c.open(&f), Err(ChannelError::FrameDecrypt));
    }

    #[test]
    fn handshake_failures_are_typed() {
        let (client_id, server_id) = ids();
        let other = Identity::from_seed([0x55; 32]).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        // Pinned to another bridge.
        let (c, m1) = ClientHandshake::start(&mut rng, Some(other.id()));
        let (_, m2) = ServerHandshake::respond(&mut rng, &server_id, &m1).unwrap();
        assert_eq!(
            c.finish(&client_id, &m2).unwrap_err(),
            ChannelError::WrongPeer {
                expected: other.id(),
                got: server_id.id()
            }
        );
        // Any bit of m2 changed.
        for bit in [0usize, 8 * 40, 8 * (M2_LEN - 1)] {
            let (c, m1) = ClientHandshake::start(&mut rng, None);
            let (_, mut m2) = ServerHandshake::respond(&mut rng, &server_id, &m1).unwrap();
            m2[bit / 8] ^= 1 << (bit % 8);
            let e = c.finish(&client_id, &m2).unwrap_err();
            assert!(
                matches!(e, ChannelError::HandshakeDecrypt | ChannelError::BadPoint),
                "{e}"
            );
        }
        // Any bit of m3 changed.
        let (c, m1) = ClientHandshake::start(&mut rng, None);
        let (s, m2) = ServerHandshake::respond(&mut rng, &server_id, &m1).unwrap();
        let (_, mut m3) = c.finish(&client_id, &m2).unwrap();
        m3[5] ^= 1;
        assert_eq!(s.finish(&m3).unwrap_err(), ChannelError::HandshakeDecrypt);
        // Bad m1.
        assert_eq!(
            ServerHandshake::respond(&mut rng, &server_id, &[2; M1_LEN]).unwrap_err(),
            ChannelError::UnsupportedVersion(2)
        );
        assert!(matches!(
            ServerHandshake::respond(&mut rng, &server_id, &[1; 5]).unwrap_err(),
            ChannelError::BadLength { got: 5, .. }
        ));
        let mut m1 = [5u8; M1_LEN];
        m1[0] = VERSION;
        assert_eq!(
            ServerHandshake::respond(&mut rng, &server_id, &m1).unwrap_err(),
            ChannelError::BadPoint
        );
    }

    proptest! {
        #[test]
        fn any_change_to_a_frame_is_caught(
            seed in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<prop::sample::Index>(),
        ) {
            let (mut c, mut s) = pair(seed);
            let mut f = c.seal(&payload).unwrap();
            let bit = bit.index(f.len() * 8);
            f[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(s.open(&f), Err(ChannelError::FrameDecrypt));
        }

        #[test]
        fn frames_round_trip(seed in any::<u64>(), frames in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 1..8)) {
            let (mut c, mut s) = pair(seed);
            for f in &frames {
                prop_assert_eq!(&s.open(&c.seal(f).unwrap()).unwrap(), f);
                prop_assert_eq!(&c.open(&s.seal(f).unwrap()).unwrap(), f);
            }
        }

    }
}

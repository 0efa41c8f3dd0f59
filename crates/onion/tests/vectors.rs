//! Handshake test vectors, as hex, so another implementation can check itself.
//!
//! The ephemeral scalars are fed in through an RNG that returns fixed bytes: `x`, then `y`,
//! are exactly the 32 bytes below (big-endian scalars).

use onionmesh_onion::handshake::{server_handshake, ClientHandshake, HandshakeError, PROTOID};
use onionmesh_onion::{OnionKey, OnionPublicKey};
use rand_core::{CryptoRng, RngCore};

/// An "RNG" that hands out the bytes it was given.
struct Fixed(Vec<u8>);

impl RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("the handshake only fills byte arrays")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("the handshake only fills byte arrays")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(self.0.len() >= dest.len(), "vector RNG exhausted");
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

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

const B_SECRET: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const X_SECRET: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const Y_SECRET: &str = "3333333333333333333333333333333333333333333333333333333333333333";

#[test]
fn ntor_k256_vector() {
    assert_eq!(PROTOID, b"onionmesh-ntor-k256-v1");
    let key = OnionKey::from_seed(h(B_SECRET).try_into().unwrap()).unwrap();
    let id = key.public().node_id();
    let (client, skin) = ClientHandshake::new(&mut Fixed(h(X_SECRET)), id, key.public());
    let (reply, server_keys) = server_handshake(&mut Fixed(h(Y_SECRET)), id, &key, &skin).unwrap();
    let client_keys = client.finish(&reply).unwrap();
    assert_eq!(client_keys, server_keys);

    assert_eq!(
        hex::encode(key.public().to_bytes()),
        "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa"
    );
    assert_eq!(id.to_hex(), "5b6b92b37b765963ab61d52a3171a54da33778c1");
    assert_eq!(
        hex::encode(skin),
        concat!(
            "5b6b92b37b765963ab61d52a3171a54da33778c1",
            "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
            "02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
        )
    );
    assert_eq!(
        hex::encode(reply),
        concat!(
            "023c72addb4fdf09af94f0c94d7fe92a386a7e70cf8a1d85916386bb2535c7b1b1",
            "853c87c9dd9d67a7ce3bdbc6b37d478649461dc72ac1f468ccbe6c32b9d24986"
        )
    );
    assert_eq!(
        hex::encode(client_keys.as_bytes()),
        concat!(
            "686fcbce831940d134edc4c75294009bb26bd5f0289ef6189c6aed5530e06a59",
            "4b40ee571a0875c4804470f78d83c0438d8e30c2281d53539390b29ac1634ec4",
            "4ae6641f0d6734a133ac56d79b6272155d70e02959bf2f308ffb9c966d5d6165",
            "e46e8f7433e309d4c345611345b186397820d25cb5d405fa7dd17df4b567ec51",
        )
    );

    // A reply from a router that does not hold b (AUTH computed with another key) fails, and
    // so does any change to the real reply.
    let (client, _) = ClientHandshake::new(&mut Fixed(h(X_SECRET)), id, key.public());
    let mut forged = reply;
    forged[40] ^= 0x80;
    assert_eq!(client.finish(&forged), Err(HandshakeError::BadAuth));
    let (client, _) = ClientHandshake::new(&mut Fixed(h(X_SECRET)), id, key.public());
    let mut bad_y = reply;
    bad_y[0] = 0x05;
    assert_eq!(client.finish(&bad_y), Err(HandshakeError::BadPoint));
    let other = OnionPublicKey::from_bytes(
        &h("02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27")
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let (client, _) = ClientHandshake::new(&mut Fixed(h(X_SECRET)), id, &other);
    assert_eq!(client.finish(&reply), Err(HandshakeError::BadAuth));
}

/// One hop, forward direction: key material bytes are `i mod 256` for i in 0..128 (so the
/// forward ChaCha20 key is 00..1f and the digest seed 20..3f); the plaintext is DATA "hello" on
/// stream 1 with zero padding, sent twice (cell counters 0 and 1). The expected values were
/// computed independently, with Python's `hashlib` and `cryptography` (RFC 8439 ChaCha20, nonce
/// `00000000 | counter as u64 big-endian`, block counter 0).
#[test]
fn relay_layer_vector() {
    use onionmesh_onion::{HopKeys, ProxyCrypto, RouterCrypto};
    use onionmesh_wire::cell::{RelayCell, RelayMsg, StreamId};
    use sha2::{Digest, Sha256};

    let material: [u8; 128] = std::array::from_fn(|i| i as u8);
    let keys = HopKeys::from_bytes(material);
    let mut proxy = ProxyCrypto::new();
    proxy.add_hop(&keys);
    let mut router = RouterCrypto::new(&keys);
    let plain = RelayCell::new(
        StreamId(1),
        RelayMsg::Data(b"hello".to_vec().try_into().unwrap()),
    )
    .encode();
    let expected = [
        (
            "48589768478d652ff46ed38197a535b82a868fad",
            "5dfd2b7dd88d41fde5bd061fddb026268a35d86fbcde6accb2cc7d4cd8ea2492",
        ),
        (
            "801dc1ad72fa2502f1c23da1b5bb50368df3173c",
            "6523b9e11b7a946704492e0a943d96843aa3ec5be9fcbe70b058bf539af77bec",
        ),
    ];
    for (n, (want_tag, want_head)) in expected.into_iter().enumerate() {
        let mut body = plain;
        let tag = proxy.originate(0, &mut body);
        assert_eq!(hex::encode(tag), want_tag, "cell {n}");
        assert_eq!(hex::encode(&body[..32]), want_head, "cell {n}");
        if n == 0 {
            assert_eq!(
                hex::encode(Sha256::digest(body)),
                "d4d391c68703734f08f6783341f6e5eb7a45bf13b728260b2b934afa424e4025"
            );
        }
        assert_eq!(
            router.forward(&mut body),
            onionmesh_onion::Forward::Recognized(tag)
        );
        assert_eq!(
            RelayCell::decode(&body).unwrap().msg,
            RelayMsg::Data(b"hello".to_vec().try_into().unwrap())
        );
    }
}

//! The identity and codec crates behave the same in wasm as natively: keys from the browser's
//! CSPRNG, signatures, node IDs, the hello and link proofs, and frame round trips.
#![cfg(target_arch = "wasm32")]

use onionmesh_crypto::dtls::Fingerprint;
use onionmesh_crypto::{hello, link_auth, node_id, verify, Identity};
use onionmesh_wire::{BoundedBytes, BoundedVec, Frame, LinkMsg, NodeId, PeerRecord, SignalMsg};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn browser_rng() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("the browser has crypto.getRandomValues");
    assert_ne!(seed, [0u8; 32]);
    ChaCha20Rng::from_seed(seed)
}

#[wasm_bindgen_test]
fn identity_signs_and_verifies() {
    let mut rng = browser_rng();
    let a = Identity::generate(&mut rng);
    let b = Identity::generate(&mut rng);
    assert_ne!(a.id(), b.id());
    assert_eq!(node_id(&a.public_key()), a.id());
    let sig = a.sign(b"onionmesh");
    assert!(verify(&a.public_key(), b"onionmesh", &sig).is_ok());
    assert!(verify(&a.public_key(), b"onionmesH", &sig).is_err());
    assert!(verify(&b.public_key(), b"onionmesh", &sig).is_err());
}

#[wasm_bindgen_test]
fn node_id_test_vector_matches_native() {
    // Secret scalar 1: the public key is the generator; same vector as the native crypto tests.
    let mut seed = [0u8; 32];
    seed[31] = 1;
    let id = Identity::from_seed(seed).unwrap();
    assert_eq!(id.id().to_hex(), "0f715baf5d4c2ed329785cef29e562f73488c8a2");
    assert_eq!(id.id().short(), "0f715baf");
}

#[wasm_bindgen_test]
fn hello_and_link_proofs() {
    let mut rng = browser_rng();
    let a = Identity::generate(&mut rng);
    let b = Identity::generate(&mut rng);

    // The hello signs the bridge's challenge for this connection.
    let challenge = [0x5a; 32];
    let sig = hello::sign(&a, &challenge);
    assert_eq!(
        hello::verify_hello(&a.public_key(), &challenge, &sig),
        Ok(a.id())
    );
    assert!(hello::verify_hello(&a.public_key(), &[0x5b; 32], &sig).is_err());

    let fp_a = Fingerprint {
        algorithm: "sha-256".into(),
        digest: vec![0xaa; 32],
    };
    let fp_b = Fingerprint {
        algorithm: "sha-256".into(),
        digest: vec![0xbb; 32],
    };
    let nonce_b = [7u8; 32];
    // A proves itself to B: A's view is (local a, remote b); B checks with (local b, remote a).
    let proof = link_auth::prove(&a, &fp_a, &fp_b, &nonce_b);
    assert!(link_auth::check(a.id(), &a.public_key(), &proof, &fp_b, &fp_a, &nonce_b).is_ok());
    // A swapped fingerprint, another nonce or another identity all fail.
    let fp_x = Fingerprint {
        algorithm: "sha-256".into(),
        digest: vec![0xcc; 32],
    };
    assert!(link_auth::check(a.id(), &a.public_key(), &proof, &fp_b, &fp_x, &nonce_b).is_err());
    assert!(link_auth::check(a.id(), &a.public_key(), &proof, &fp_b, &fp_a, &[8u8; 32]).is_err());
    assert!(link_auth::check(b.id(), &a.public_key(), &proof, &fp_b, &fp_a, &nonce_b).is_err());
}

#[wasm_bindgen_test]
fn frames_round_trip() {
    let mut rng = browser_rng();
    let a = Identity::generate(&mut rng);
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let link_msgs = [
        LinkMsg::Nonce([3; 32]),
        LinkMsg::Cert {
            pubkey: a.public_key(),
            sig: a.sign(b"x"),
        },
        LinkMsg::Data(data[..onionmesh_wire::link::MAX_DATA].try_into().unwrap()),
        LinkMsg::Data(BoundedBytes::empty()),
        LinkMsg::Close {
            reason: "bye".try_into().unwrap(),
        },
    ];
    for m in link_msgs {
        assert_eq!(LinkMsg::decode_frame(&m.encode_frame()).unwrap(), m);
    }
    let signal_msgs = [
        SignalMsg::FindPeer {
            id: a.id(),
            pubkey: a.public_key(),
        },
        SignalMsg::FoundPeer {
            peers: BoundedVec::one(PeerRecord {
                id: a.id(),
                pubkey: a.public_key(),
                bridge: None,
            }),
        },
        SignalMsg::Introduce {
            peer: NodeId([9; 20]),
            session: u64::MAX,
            sdp: "v=0\r\n".try_into().unwrap(),
        },
        SignalMsg::Error {
            code: 3,
            reason: "bad hello".try_into().unwrap(),
        },
    ];
    for m in signal_msgs {
        assert_eq!(SignalMsg::decode_frame(&m.encode_frame()).unwrap(), m);
    }
    // Malformed input is an error, never a panic.
    assert!(LinkMsg::decode_frame(&[]).is_err());
    assert!(LinkMsg::decode_frame(&[0x03, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(SignalMsg::decode_frame(&data).is_err());
}

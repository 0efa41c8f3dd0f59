//! Entry points for the fuzz targets in `crates/onion/fuzz` (cargo-fuzz, nightly). They are
//! compiled only with the `fuzzing` feature or in this crate's own tests, where proptest feeds
//! them arbitrary bytes, so the normal `cargo test` exercises the same bodies on stable.
//!
//! Each function must simply return, whatever the input: a panic is the bug being looked for.

use crate::{
    owner_of, server_handshake, CellOwner, ClientHandshake, OnionKey, OnionProxy, OnionRouter,
    ProxyConfig, RouterConfig,
};
use onionmesh_wire::cell::{Cell, CellBody, RelayCell, RelayCmd, RelayMsg, BODY_LEN, CELL_LEN};
use onionmesh_wire::Time;
use onionmesh_wire::{Frame, LinkMsg, NodeId};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Duration;

fn router_key() -> OnionKey {
    OnionKey::from_seed([0x42; 32]).expect("a valid scalar")
}

/// `data` as one link frame and as one cell, through every cell decoder.
pub fn cell(data: &[u8]) {
    let _ = LinkMsg::decode_frame(data);
    if let Ok(cell) = Cell::decode_frame(data) {
        let _ = cell.msg();
        let _ = RelayCell::decode(&cell.body);
        let _ = Cell::decode_frame(&cell.encode_frame());
    }
}

/// `data[0]` as a relay command and the rest as its data; and, if long enough, as a whole
/// decrypted relay body.
pub fn relay_msg(data: &[u8]) {
    if let Some((&cmd, rest)) = data.split_first() {
        if let Ok(msg) = RelayMsg::decode(RelayCmd(cmd), rest) {
            let cell = RelayCell::new(Default::default(), msg);
            let _ = RelayCell::decode(&cell.encode());
        }
    }
    if data.len() >= BODY_LEN {
        let body: CellBody = data[..BODY_LEN].try_into().expect("BODY_LEN bytes");
        let _ = RelayCell::decode(&body);
    }
}

/// `data` as the data of an EXTEND2 relay message and, if it decodes, its handshake data as
/// the onionskin the next hop would get in CREATE2 (the path an extending router takes).
pub fn extend2(data: &[u8]) {
    if let Ok(msg) = RelayMsg::decode(RelayCmd::EXTEND2, data) {
        let cell = RelayCell::new(Default::default(), msg.clone());
        let _ = RelayCell::decode(&cell.encode());
        if let RelayMsg::Extend2 { hdata, .. } = msg {
            handshake_server_onionskin(&hdata);
        }
    }
}

/// `data` as a router's reply to a real onionskin.
pub fn handshake_client_reply(data: &[u8]) {
    let key = router_key();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (hs, _) = ClientHandshake::new(&mut rng, key.public().node_id(), key.public());
    let _ = hs.finish(data);
}

/// `data` as an onionskin arriving at a router.
pub fn handshake_server_onionskin(data: &[u8]) {
    let key = router_key();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let id = key.public().node_id();
    let _ = server_handshake(&mut rng, id, &key, data);
}

/// `data` as a stream of (peer byte, 512-byte cell) records delivered to a node's router and
/// proxy, with the clock moving; every output is drained.
pub fn node_cells(data: &[u8]) {
    let key = router_key();
    let local = key.public().node_id();
    let mut router = OnionRouter::new(local, key, RouterConfig::default(), [1; 32]);
    let _ = router.register_service("echo");
    let mut proxy = OnionProxy::new(local, ProxyConfig::default(), [2; 32]);
    let mut now = Time::from_millis(1000);
    for record in data.chunks(CELL_LEN + 1) {
        let Some((&who, rest)) = record.split_first() else {
            break;
        };
        let mut bytes = [0u8; CELL_LEN];
        bytes[..rest.len()].copy_from_slice(rest);
        let peer = NodeId([who % 4; 20]);
        let cell = Cell::from_bytes(&bytes);
        match owner_of(local, peer, cell.circ_id) {
            CellOwner::Proxy => proxy.handle_cell(now, peer, cell),
            CellOwner::Router => router.handle_cell(now, peer, cell),
        }
        if who & 0x80 != 0 {
            now = now + Duration::from_secs(u64::from(who & 0x7f));
            router.handle_timeout(now);
            proxy.handle_timeout(now);
            router.link_opened(now, peer);
        }
        while router.poll_output().is_some() {}
        while proxy.poll_output().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cell_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            cell(&data);
        }

        #[test]
        fn relay_msg_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            relay_msg(&data);
        }

        #[test]
        fn extend2_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            extend2(&data);
        }

        #[test]
        fn handshake_client_reply_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            handshake_client_reply(&data);
        }

        #[test]
        fn handshake_server_onionskin_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            handshake_server_onionskin(&data);
        }

        #[test]
        fn node_cells_never_panic(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            node_cells(&data);
        }
    }

    #[test]
    fn plausible_inputs_reach_deep() {
        // A real onionskin and a 65-byte reply with a valid point reach the crypto.
        let key = router_key();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (_, skin) = ClientHandshake::new(&mut rng, key.public().node_id(), key.public());
        handshake_server_onionskin(&skin);
        let mut reply = key.public().to_bytes().to_vec();
        reply.extend_from_slice(&[0; 32]);
        handshake_client_reply(&reply);
        // A CREATE2 record for the router.
        let mut rec = vec![1u8];
        rec.extend_from_slice(
            &Cell::new(
                onionmesh_wire::cell::CircId(0x8001),
                &onionmesh_wire::cell::CellMsg::Create2 {
                    htype: onionmesh_wire::cell::HandshakeType::NTOR_K256,
                    hdata: skin.into(),
                },
            )
            .to_bytes(),
        );
        node_cells(&rec);
    }
}

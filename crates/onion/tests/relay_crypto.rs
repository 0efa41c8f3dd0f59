//! Relay crypto properties: a cell onion-encrypted for hop n is read at hop n and nowhere
//! before; a flipped bit, a reordered or a replayed cell is recognized by no hop, so the hop it
//! was addressed to (or, for a middle hop, the end of the circuit) destroys the circuit.

use onionmesh_onion::{Forward, HopKeys, ProxyCrypto, RouterCrypto};
use onionmesh_wire::cell::{CellBody, RelayCell, RelayMsg, StreamId, RELAY_DATA_LEN};
use proptest::prelude::*;

fn circuit(n: usize, seed: u8) -> (ProxyCrypto, Vec<RouterCrypto>) {
    let mut proxy = ProxyCrypto::new();
    let mut routers = Vec::new();
    for hop in 0..n {
        let material: [u8; 128] =
            std::array::from_fn(|i| (i as u8).wrapping_mul(31) ^ seed ^ (hop as u8 * 17));
        let keys = HopKeys::from_bytes(material);
        proxy.add_hop(&keys);
        routers.push(RouterCrypto::new(&keys));
    }
    (proxy, routers)
}

fn data_body(payload: &[u8]) -> CellBody {
    RelayCell::new(
        StreamId(3),
        RelayMsg::Data(payload.to_vec().try_into().unwrap()),
    )
    .encode()
}

/// Send `body` (already layered) from the proxy along the routers; returns the index of the
/// first hop that recognized it, if any, and the body as that hop saw it.
fn forward(routers: &mut [RouterCrypto], mut body: CellBody) -> Option<(usize, CellBody)> {
    for (i, r) in routers.iter_mut().enumerate() {
        if let Forward::Recognized(_) = r.forward(&mut body) {
            return Some((i, body));
        }
    }
    None
}

/// Like `forward`, but flips `bit` of the body just before hop `at` receives it.
fn forward_tampered(
    routers: &mut [RouterCrypto],
    mut body: CellBody,
    at: usize,
    bit: usize,
) -> Option<usize> {
    for (i, r) in routers.iter_mut().enumerate() {
        if i == at {
            body[bit / 8] ^= 1 << (bit % 8);
        }
        if let Forward::Recognized(_) = r.forward(&mut body) {
            return Some(i);
        }
    }
    None
}

fn backward(routers: &mut [RouterCrypto], from: usize, plain: CellBody) -> CellBody {
    let mut body = plain;
    routers[from].originate_backward(&mut body);
    for r in routers[..from].iter_mut().rev() {
        r.relay_backward(&mut body);
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn read_at_hop_n_only(
        n in 1usize..=8,
        seed in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..=RELAY_DATA_LEN),
        cells in 1usize..4,
    ) {
        let (mut proxy, mut routers) = circuit(n, seed);
        for _ in 0..cells {
            let mut body = data_body(&payload);
            let tag = proxy.originate(n - 1, &mut body);
            let (hop, plain) = forward(&mut routers, body).expect("recognized");
            prop_assert_eq!(hop, n - 1);
            prop_assert_eq!(RelayCell::decode(&plain).unwrap().msg, RelayMsg::Data(payload.clone().try_into().unwrap()));
            prop_assert_eq!(tag.len(), 20);

            // And back, from every hop.
            for from in 0..n {
                let mut body = backward(&mut routers, from, data_body(&payload));
                let (got, _) = proxy.receive(&mut body).expect("recognized by the proxy");
                prop_assert_eq!(got, from);
                prop_assert_eq!(RelayCell::decode(&body).unwrap().msg, RelayMsg::Data(payload.clone().try_into().unwrap()));
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_caught(
        n in 1usize..=8,
        seed in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..=RELAY_DATA_LEN),
        at in 0usize..8,
        bit in 0usize..(509 * 8),
        target_choice in any::<prop::sample::Index>(),
    ) {
        let at = at % n;
        // Forward, for the last hop and for a random hop.
        for target in [n - 1, target_choice.index(n)] {
            let (mut proxy, mut routers) = circuit(n, seed);
            let mut body = data_body(&payload);
            proxy.originate(target, &mut body);
            let hit = forward_tampered(&mut routers, body, at.min(target), bit);
            // No hop accepts it: the addressed hop does not, and neither does anyone after it,
            // so the last hop finds an unrecognized cell with nowhere to go.
            prop_assert_eq!(hit, None);
        }
        // Backward: tamper between hop `at` and the proxy.
        let (mut proxy, mut routers) = circuit(n, seed);
        let from = n - 1;
        let mut body = data_body(&payload);
        routers[from].originate_backward(&mut body);
        for (i, r) in routers[..from].iter_mut().enumerate().rev() {
            if i == at { body[bit / 8] ^= 1 << (bit % 8); }
            r.relay_backward(&mut body);
        }
        if at == from { body[bit / 8] ^= 1 << (bit % 8); }
        prop_assert_eq!(proxy.receive(&mut body), None);
    }

    #[test]
    fn reorder_and_replay_are_caught(n in 1usize..=8, seed in any::<u8>(), second in any::<u8>()) {
        // Reorder: the second cell arrives first.
        let (mut proxy, mut routers) = circuit(n, seed);
        let mut a = data_body(b"first");
        let mut b = data_body(&[second; 40]);
        proxy.originate(n - 1, &mut a);
        proxy.originate(n - 1, &mut b);
        prop_assert!(forward(&mut routers, b).is_none());

        // Replay: the same cell twice.
        let (mut proxy, mut routers) = circuit(n, seed);
        let mut a = data_body(b"once");
        proxy.originate(n - 1, &mut a);
        prop_assert!(forward(&mut routers, a).is_some());
        prop_assert!(forward(&mut routers, a).is_none());

        // Drop: a cell lost before the hop makes the next one unreadable too.
        let (mut proxy, mut routers) = circuit(n, seed);
        let mut lost = data_body(b"lost");
        let mut next = data_body(b"next");
        proxy.originate(n - 1, &mut lost);
        proxy.originate(n - 1, &mut next);
        prop_assert!(forward(&mut routers, next).is_none());

        // Backward reorder.
        let (mut proxy, mut routers) = circuit(n, seed);
        let _first = backward(&mut routers, n - 1, data_body(b"first"));
        let mut second = backward(&mut routers, n - 1, data_body(&[second; 40]));
        prop_assert!(proxy.receive(&mut second).is_none());

        // Backward replay.
        let (mut proxy, mut routers) = circuit(n, seed);
        let body = backward(&mut routers, n - 1, data_body(b"back"));
        let mut first = body;
        prop_assert!(proxy.receive(&mut first).is_some());
        let mut again = body;
        prop_assert!(proxy.receive(&mut again).is_none());
    }
}

#[test]
fn tampered_cell_for_a_middle_hop_dies_at_the_end() {
    let (mut proxy, mut routers) = circuit(3, 9);
    let mut body = data_body(b"for hop 1");
    proxy.originate(1, &mut body);
    body[100] ^= 4;
    let mut b = body;
    for r in routers.iter_mut() {
        assert_eq!(r.forward(&mut b), Forward::Pass);
    }
}

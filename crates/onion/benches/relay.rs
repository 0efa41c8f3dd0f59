//! Relay-crypto throughput, in cells per second on one core (criterion's "thrpt" line, one
//! element = one 509-byte cell):
//!
//! - `proxy_originate_3_hops`: the proxy seals a DATA cell for hop 3 and adds three layers.
//! - `router_forward_recognize`: one hop removes its layer and recognizes the cell.
//! - `router_forward_pass`: one hop removes its layer and finds the cell is not for it.
//! - `proxy_receive_3_hops`: the proxy peels three backward layers to find the sender.
//!
//! `cargo bench -p onionmesh-onion --bench relay`. Nothing here asserts a speed.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use onionmesh_onion::{HopKeys, ProxyCrypto, RouterCrypto};
use onionmesh_wire::cell::{RelayCell, RelayMsg, StreamId, RELAY_DATA_LEN};

fn keys(hop: u8) -> HopKeys {
    HopKeys::from_bytes(std::array::from_fn(|i| (i as u8) ^ hop))
}

fn bench(c: &mut Criterion) {
    let plain = RelayCell::new(StreamId(1), RelayMsg::Data(vec![0x5a; RELAY_DATA_LEN])).encode();
    let mut g = c.benchmark_group("relay_crypto");
    g.throughput(Throughput::Elements(1));

    let mut proxy = ProxyCrypto::new();
    for hop in 0..3 {
        proxy.add_hop(&keys(hop));
    }
    g.bench_function("proxy_originate_3_hops", |b| {
        b.iter(|| {
            let mut body = plain;
            proxy.originate(2, &mut body);
            body
        })
    });

    // One hop's view: fresh state per batch so the digest and counter stay in step.
    g.bench_function("router_forward_recognize", |b| {
        b.iter_batched(
            || {
                let mut p = ProxyCrypto::new();
                p.add_hop(&keys(0));
                let mut body = plain;
                p.originate(0, &mut body);
                (RouterCrypto::new(&keys(0)), body)
            },
            |(mut r, mut body)| {
                r.forward(&mut body);
                body
            },
            BatchSize::SmallInput,
        )
    });

    let mut router = RouterCrypto::new(&keys(0));
    g.bench_function("router_forward_pass", |b| {
        b.iter(|| {
            let mut body = plain;
            router.forward(&mut body);
            body
        })
    });

    g.bench_function("proxy_receive_3_hops", |b| {
        b.iter_batched(
            || {
                let mut p = ProxyCrypto::new();
                let mut rs = Vec::new();
                for hop in 0..3 {
                    p.add_hop(&keys(hop));
                    rs.push(RouterCrypto::new(&keys(hop)));
                }
                let mut body = plain;
                rs[2].originate_backward(&mut body);
                rs[1].relay_backward(&mut body);
                rs[0].relay_backward(&mut body);
                (p, body)
            },
            |(mut p, mut body)| {
                p.receive(&mut body);
                body
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Relay-crypto throughput, in cells per second on one core (criterion's "thrpt" line, one
//! element = one 509-byte cell):
//!
//! - `router_forward_pass`: **the per-hop relay rate**, what a middle hop spends on each cell
//!   it passes on: remove its layer, see the cell is not for it. The target is
//!   1.5 M cells/s per core.
//! - `router_backward_relay`: a hop adds its layer to a backward cell.
//! - `router_forward_recognize`: one hop removes its layer and recognizes the cell (digest).
//! - `proxy_originate_3_hops`: the proxy seals a DATA cell for hop 3 and adds three layers.
//! - `proxy_receive_3_hops`: the proxy peels three backward layers to find the sender.
//!
//! After criterion, a plain summary line per case prints cells/s per core (a simple timed loop
//! of 200,000 cells), so the figure can be read without parsing criterion's output.
//!
//! `cargo bench -p onionmesh-onion --bench relay`. Nothing here asserts a speed.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use onionmesh_onion::{HopKeys, ProxyCrypto, RouterCrypto};
use onionmesh_wire::cell::{CellBody, RelayCell, RelayMsg, StreamId, RELAY_DATA_LEN};

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

    let mut router = RouterCrypto::new(&keys(0));
    g.bench_function("router_backward_relay", |b| {
        b.iter(|| {
            let mut body = plain;
            router.relay_backward(&mut body);
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

/// Cells per second for `f` over `n` cells, one core.
fn rate(n: u32, mut f: impl FnMut(&mut CellBody)) -> f64 {
    let plain = RelayCell::new(StreamId(1), RelayMsg::Data(vec![0x5a; RELAY_DATA_LEN])).encode();
    let start = std::time::Instant::now();
    for _ in 0..n {
        let mut body = plain;
        f(&mut body);
        std::hint::black_box(&body);
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn summary() {
    const N: u32 = 200_000;
    let mut router = RouterCrypto::new(&keys(0));
    let pass = rate(N, |b| {
        router.forward(b);
    });
    let mut router = RouterCrypto::new(&keys(0));
    let back = rate(N, |b| router.relay_backward(b));
    let mut proxy = ProxyCrypto::new();
    for hop in 0..3 {
        proxy.add_hop(&keys(hop));
    }
    let originate = rate(N, |b| {
        proxy.originate(2, b);
    });
    println!();
    println!("relay crypto, cells/s per core ({N} cells each, 509-byte bodies):");
    println!("  per-hop forward (relay): {pass:>12.0}   target >= 1,500,000");
    println!("  per-hop backward relay:  {back:>12.0}");
    println!("  proxy seal for 3 hops:   {originate:>12.0}");
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}

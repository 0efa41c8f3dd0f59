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
//! Then **a whole router** ([`OnionRouter`], not just its crypto): relay cells/s through a middle
//! hop carrying one busy circuit (a stream from a proxy to a service one hop further), first
//! with that circuit alone, then with 1,000 more circuits open through the same router, each
//! ending there with an idle stream. Both directions count (DATA forward, SENDMEs back), and
//! only the router's own calls (`handle_cell` and draining `poll_output`) are timed. The two
//! routers run side by side, taking turns, so machine load hits both alike. The ratio shows
//! what idle circuits cost per cell; with the ready set it stays near 1.
//! `cargo bench -p onionmesh-onion --bench relay -- --router` prints only this table.
//!
//! `cargo bench -p onionmesh-onion --bench relay`. Nothing here asserts a speed.

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use onionmesh_onion::{
    HopKeys, HopSpec, OnionKey, OnionProxy, OnionRouter, Output, ProxyConfig, ProxyCrypto,
    ProxyEvent, RouterConfig, RouterCrypto, RouterEvent, StreamHandle,
};
use onionmesh_wire::cell::{Cell, CellBody, RelayCell, RelayMsg, StreamId, RELAY_DATA_LEN};
use onionmesh_wire::{NodeId, Time};
use std::time::Duration;

fn keys(hop: u8) -> HopKeys {
    HopKeys::from_bytes(std::array::from_fn(|i| (i as u8) ^ hop))
}

fn bench(c: &mut Criterion) {
    let plain = RelayCell::new(
        StreamId(1),
        RelayMsg::Data(vec![0x5a; RELAY_DATA_LEN].try_into().unwrap()),
    )
    .encode();
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
    let plain = RelayCell::new(
        StreamId(1),
        RelayMsg::Data(vec![0x5a; RELAY_DATA_LEN].try_into().unwrap()),
    )
    .encode();
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

/// A proxy `p`, the router under test `r` (middle hop) and a last hop `x`, linked directly;
/// a second proxy `q` owns the idle circuits, so that `p`'s own work stays the same size in
/// both cases and only `r` carries the extra circuits.
struct Mesh {
    p: OnionProxy,
    q: OnionProxy,
    qid: NodeId,
    r: OnionRouter,
    x: OnionRouter,
    pid: NodeId,
    rid: NodeId,
    xid: NodeId,
    now: Time,
    /// Time spent inside `r` and the cells it handled.
    r_time: Duration,
    r_cells: u64,
}

impl Mesh {
    fn new() -> Mesh {
        let rkey = OnionKey::from_seed([11; 32]).unwrap();
        let xkey = OnionKey::from_seed([12; 32]).unwrap();
        let (rid, xid) = (rkey.public().node_id(), xkey.public().node_id());
        let pid = NodeId([1; 20]);
        let rcfg = RouterConfig {
            max_circuits: 4096,
            max_circuits_per_link: 4096,
            create_burst: 4096,
            ..RouterConfig::default()
        };
        let pcfg = ProxyConfig {
            max_circuits: 4096,
            ..ProxyConfig::default()
        };
        let qid = NodeId([2; 20]);
        let mut m = Mesh {
            p: OnionProxy::new(pid, pcfg.clone(), [1; 32]),
            q: OnionProxy::new(qid, pcfg, [4; 32]),
            qid,
            r: OnionRouter::new(rid, rkey, rcfg.clone(), [2; 32]),
            x: OnionRouter::new(xid, xkey, rcfg, [3; 32]),
            pid,
            rid,
            xid,
            now: Time::from_millis(1_000),
            r_time: Duration::ZERO,
            r_cells: 0,
        };
        m.r.register_service("sink").unwrap();
        m.x.register_service("sink").unwrap();
        let now = m.now;
        m.r.link_opened(now, xid);
        m.x.link_opened(now, rid);
        m
    }

    fn hop(r: &OnionRouter) -> HopSpec {
        HopSpec {
            id: r.onion_key().public().node_id(),
            onion_key: *r.onion_key().public(),
        }
    }

    /// Move cells until nobody has anything to say; returns the proxy's events.
    fn settle(&mut self, timed: bool) -> Vec<ProxyEvent> {
        let mut events = Vec::new();
        let now = self.now;
        loop {
            let mut moved = false;
            let mut to_r: Vec<(NodeId, Cell)> = Vec::new();
            while let Some(o) = self.p.poll_output() {
                moved = true;
                match o {
                    Output::Cell { cell, .. } => to_r.push((self.pid, cell)),
                    Output::Event(e) => events.push(e),
                    _ => {}
                }
            }
            while let Some(o) = self.q.poll_output() {
                moved = true;
                if let Output::Cell { cell, .. } = o {
                    to_r.push((self.qid, cell));
                }
                // `q`'s events are not needed: its circuits only have to exist.
            }
            let mut x_streams = Vec::new();
            while let Some(o) = self.x.poll_output() {
                moved = true;
                match o {
                    Output::Cell { cell, .. } => to_r.push((self.xid, cell)),
                    Output::Event(RouterEvent::StreamOpened { stream, .. })
                    | Output::Event(RouterEvent::StreamReadable { stream }) => {
                        x_streams.push(stream)
                    }
                    _ => {}
                }
            }
            // The router under test.
            let start = std::time::Instant::now();
            let mut to_p = Vec::new();
            let mut to_q = Vec::new();
            let mut to_x = Vec::new();
            self.r_cells += to_r.len() as u64;
            for (from, cell) in to_r {
                self.r.handle_cell(now, from, cell);
                while let Some(o) = self.r.poll_output() {
                    if let Output::Cell { peer, cell } = o {
                        if peer == self.pid {
                            to_p.push(cell);
                        } else if peer == self.qid {
                            to_q.push(cell);
                        } else {
                            to_x.push(cell);
                        }
                    }
                }
            }
            while let Some(o) = self.r.poll_output() {
                if let Output::Cell { peer, cell } = o {
                    if peer == self.pid {
                        to_p.push(cell);
                    } else if peer == self.qid {
                        to_q.push(cell);
                    } else {
                        to_x.push(cell);
                    }
                }
            }
            if timed {
                self.r_time += start.elapsed();
            }
            moved |= !to_p.is_empty() || !to_q.is_empty() || !to_x.is_empty();
            for cell in to_p {
                self.p.handle_cell(now, self.rid, cell);
            }
            for cell in to_q {
                self.q.handle_cell(now, self.rid, cell);
            }
            for cell in to_x {
                self.x.handle_cell(now, self.rid, cell);
            }
            // The last hop's service reads everything (which sends the SENDMEs back).
            for s in x_streams {
                let _ = self.x.stream_read(now, s, usize::MAX);
            }
            if !moved {
                return events;
            }
        }
    }

    fn open_stream(&mut self, path: &[HopSpec]) -> StreamHandle {
        let circ = self.p.build_circuit(self.now, path).unwrap();
        let ev = self.settle(false);
        assert!(ev.contains(&ProxyEvent::CircuitBuilt { circ }), "{ev:?}");
        let s = self.p.begin_stream(self.now, circ, "sink").unwrap();
        let ev = self.settle(false);
        assert!(
            ev.contains(&ProxyEvent::StreamOpened { stream: s }),
            "{ev:?}"
        );
        s
    }

    /// An idle circuit from `q` ending at `r`, with an open stream.
    fn open_idle(&mut self, rh: HopSpec) {
        let circ = self.q.build_circuit(self.now, &[rh]).unwrap();
        self.settle(false);
        self.q.begin_stream(self.now, circ, "sink").unwrap();
        self.settle(false);
    }
}

/// A mesh whose router carries `idle` idle circuits besides the busy one; returns it and the
/// busy stream.
fn mesh_with(idle: usize) -> (Mesh, StreamHandle) {
    let mut m = Mesh::new();
    let (rh, xh) = (Mesh::hop(&m.r), Mesh::hop(&m.x));
    let busy = m.open_stream(&[rh, xh]);
    for _ in 0..idle {
        m.open_idle(rh);
    }
    assert_eq!(m.r.circuits().len(), idle + 1);
    assert!(m.r.circuits().iter().filter(|c| c.streams == 1).count() >= idle);
    m.r_time = Duration::ZERO;
    m.r_cells = 0;
    (m, busy)
}

/// Push one 64 KiB chunk through the busy circuit of `m` (the router's share is timed).
fn push_chunk(m: &mut Mesh, busy: StreamHandle, chunk: &[u8]) {
    m.now = m.now + Duration::from_millis(1);
    let mut left = chunk;
    while !left.is_empty() {
        let n = m.p.stream_write(m.now, busy, left).unwrap();
        left = &left[n..];
        m.settle(true);
    }
}

fn router_summary() {
    const CELLS: u64 = 300_000;
    // Both meshes exist side by side and take turns, 1 MiB (about 2,100 cells) each, so that
    // a shared machine's load changes hit both cases alike, while a turn is long enough that
    // switching between the meshes' working sets costs little.
    let (mut one, one_busy) = mesh_with(0);
    let (mut many, many_busy) = mesh_with(1000);
    let chunk = vec![0x5a; 64 * 1024];
    while one.r_cells < CELLS || many.r_cells < CELLS {
        for _ in 0..16 {
            push_chunk(&mut one, one_busy, &chunk);
        }
        for _ in 0..16 {
            push_chunk(&mut many, many_busy, &chunk);
        }
    }
    let rate = |m: &Mesh| m.r_cells as f64 / m.r_time.as_secs_f64();
    let (one, many) = (rate(&one), rate(&many));
    println!();
    println!(
        "a whole router as a middle hop, relay cells/s (one busy circuit, {CELLS} cells each, interleaved):"
    );
    println!("  1 circuit open:          {one:>12.0}");
    println!("  1,001 circuits open:     {many:>12.0}");
    println!("  ratio (1,001 / 1):       {:>12.3}", many / one);
}

criterion_group!(benches, bench);

fn main() {
    // `--router` runs only the whole-router table (quick, no criterion).
    if std::env::args().any(|a| a == "--router") {
        router_summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
    router_summary();
}

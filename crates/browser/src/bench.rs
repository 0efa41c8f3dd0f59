//! `benchRelayCrypto(cells)`: the onion relay crypto's per-hop rate in this browser, in cells
//! per second on one core (the page's main thread).
//!
//! It times what a middle hop spends on each cell it passes on (remove its ChaCha20 layer, see
//! the cell is not for it) with `performance.now()`, the same work as the native
//! `router_forward_pass` criterion benchmark, so the two figures compare directly. The issue's
//! targets are 500k cells/s in wasm and 1.5 M natively.
//!
//! ```js
//! import init, { benchRelayCrypto } from './pkg/onionmesh_browser.js';
//! await init();
//! console.log(benchRelayCrypto(200000), 'cells/s');
//! ```

use onionmesh_onion::{HopKeys, RouterCrypto};
use onionmesh_wire::cell::{RelayCell, RelayMsg, StreamId, RELAY_DATA_LEN};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Pass `cells` full DATA cells through one hop's forward layer; returns cells per second.
/// `cells` is clamped to 1..=10,000,000 so a typo cannot hang the page for minutes.
#[wasm_bindgen(js_name = benchRelayCrypto)]
pub fn bench_relay_crypto(cells: u32) -> f64 {
    let cells = cells.clamp(1, 10_000_000);
    let keys = HopKeys::from_bytes(std::array::from_fn(|i| i as u8));
    let mut router = RouterCrypto::new(&keys);
    let plain = RelayCell::new(StreamId(1), RelayMsg::Data([0x5a; RELAY_DATA_LEN].into())).encode();
    // Warm up (JIT tiers, caches) before the clock starts.
    let mut sink = 0u8;
    for _ in 0..cells.min(10_000) {
        let mut body = plain;
        router.forward(&mut body);
        sink ^= body[0];
    }
    let start = performance_now();
    for _ in 0..cells {
        let mut body = plain;
        router.forward(&mut body);
        sink ^= body[0];
    }
    let seconds = (performance_now() - start) / 1000.0;
    // Use the result so the optimiser cannot drop the loop.
    std::hint::black_box(sink);
    f64::from(cells) / seconds.max(1e-9)
}

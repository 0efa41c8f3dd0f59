//! The page's clocks and `setTimeout`, bound as globals so they work in a window and in a worker.

use onionmesh_node::Time;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: i32);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The driver's monotonic clock, as the core wants it.
pub fn now() -> Time {
    Time::from_millis(performance_now() as u64)
}

/// Wall-clock milliseconds since 1970, signed into the bridge hello.
pub fn unix_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// One pending `setTimeout`. Dropping it cancels the timeout and frees the closure, so a timer
/// that is replaced or whose owner goes away never fires into freed memory.
pub struct Timer {
    id: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    /// Calls `f` once after `ms` milliseconds (clamped to what `setTimeout` accepts).
    pub fn new(ms: u64, f: impl FnMut() + 'static) -> Timer {
        let callback = Closure::<dyn FnMut()>::new(f);
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        let id = set_timeout(callback.as_ref().unchecked_ref(), ms);
        Timer {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Clearing a timeout that already fired is a no-op.
        clear_timeout(self.id);
    }
}

/// Runs `f` once after `ms` milliseconds without anyone holding a handle. The closure belongs to
/// the JS garbage collector and is freed after its single call (`once_into_js`), so nothing leaks;
/// use it only for fire-and-forget cleanup that must outlive its owner.
pub fn after(ms: i32, f: impl FnOnce() + 'static) {
    let callback = Closure::once_into_js(f);
    set_timeout(callback.unchecked_ref(), ms);
}

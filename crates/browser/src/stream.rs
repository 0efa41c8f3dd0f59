//! The page-side half of streaming (`Download.streamTo`): bindings of `js/stream.js`, which
//! registers the Service Worker (`web/sw.js`), waits until it controls the page, points the
//! media element at the worker's URL and answers the worker's questions ("how big is this
//! content", "give me these bytes") through the node's [`StreamHandler`].
//!
//! The worker protocol (one `MessageChannel` port per question, from the worker to a page):
//! `{onionmesh: 1, op: "info" | "read", hashName, offset, length}`, answered
//! `{ok: true, size, type, name}` / `{ok: true, bytes: Uint8Array}` or
//! `{ok: false, code, message}`. A page whose nodes do not know the content answers
//! `NOT_FOUND`, and the worker asks another page.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(module = "/js/stream.js")]
extern "C" {
    #[wasm_bindgen(js_name = streamTo)]
    fn stream_to_js(
        handler: &js_sys::Function,
        sw_url: &str,
        hash_name: &str,
        name: &str,
        media: &web_sys::HtmlMediaElement,
    ) -> js_sys::Promise;
    #[wasm_bindgen(js_name = forgetHandler)]
    fn forget_handler(handler: &js_sys::Function);
}

/// The answerer's signature: `(op, hashName, offset, length) => Promise` (arguments as the
/// worker sent them, checked by the callee).
pub type HandlerFn = dyn FnMut(JsValue, JsValue, JsValue, JsValue) -> js_sys::Promise;

/// One node's answerer of the worker's questions. Dropping it (the node stops) unregisters it
/// from `stream.js` and frees the closure.
pub struct StreamHandler {
    closure: Closure<HandlerFn>,
}

impl StreamHandler {
    pub fn new(
        f: impl FnMut(JsValue, JsValue, JsValue, JsValue) -> js_sys::Promise + 'static,
    ) -> StreamHandler {
        StreamHandler {
            closure: Closure::<HandlerFn>::new(f),
        }
    }

    pub fn function(&self) -> js_sys::Function {
        self.closure
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone()
    }
}

impl Drop for StreamHandler {
    fn drop(&mut self) {
        forget_handler(self.closure.as_ref().unchecked_ref());
    }
}

/// Register the worker `sw_url`, wait until it controls the page, and set `media.src` to the
/// worker URL of `hash_name`. Rejects with a sentence (and a code) when the browser has no
/// Service Workers or the worker does not take control.
pub fn stream_to(
    handler: &js_sys::Function,
    sw_url: &str,
    hash_name: &str,
    name: &str,
    media: &web_sys::HtmlMediaElement,
) -> js_sys::Promise {
    stream_to_js(handler, sw_url, hash_name, name, media)
}

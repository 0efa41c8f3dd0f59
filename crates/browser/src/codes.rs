//! The one error-code mechanism of the JS API, and the leaf every other module may import.
//!
//! Every error thrown or rejected to JavaScript is a JS `Error` whose `message` is a sentence
//! (what happened, what to do) and whose `code` is the text of an [`ErrorCode`] from the
//! workspace's one list (`onionmesh_node::ErrorCode`). There is no second list here: an error
//! without a code cannot be built ([`js_error`] takes an `ErrorCode`), and the TypeScript union
//! in the `.d.ts` is generated from the list itself (`onionmesh_node::TS_ERROR_CODE`).

pub use onionmesh_node::ErrorCode;

/// The TypeScript union of every code, as it appears in the generated `.d.ts`: generated in
/// `onionmesh_node` from the one list by the macro that defines [`ErrorCode`].
#[cfg_attr(
    target_arch = "wasm32",
    wasm_bindgen::prelude::wasm_bindgen(typescript_custom_section)
)]
pub const TS_ERROR_CODES: &str = onionmesh_node::TS_ERROR_CODE;

/// Upper-case the first letter and end with a full stop: core errors are lower-case clauses.
pub fn sentence(text: &str) -> String {
    let t = text.trim();
    let mut c = t.chars();
    let mut s: String = match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => return String::new(),
    };
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

#[cfg(target_arch = "wasm32")]
pub use js::*;

#[cfg(target_arch = "wasm32")]
mod js {
    use super::{sentence, ErrorCode};
    use js_sys::Reflect;
    use wasm_bindgen::{JsCast, JsValue};

    /// A JS `Error` with `message` and `code`.
    pub fn js_error(code: ErrorCode, message: &str) -> JsValue {
        let err = js_sys::Error::new(message);
        // Setting a property on a fresh Error object cannot fail.
        let _ = Reflect::set(&err, &"code".into(), &code.as_str().into());
        err.into()
    }

    /// A JS `Error` for any of the core's errors: its `Display` as a sentence, its own code.
    pub fn core_error(code: ErrorCode, err: &dyn std::fmt::Display) -> JsValue {
        js_error(code, &sentence(&err.to_string()))
    }

    /// The thrown error used after `stop()`.
    pub fn stopped() -> JsValue {
        js_error(
            ErrorCode::Stopped,
            "This node has been stopped. Start a new one with Node.start(bridgeUrl).",
        )
    }

    /// A short human description of a JS exception or rejection value, for log sentences.
    pub fn describe(value: &JsValue) -> String {
        // DOMException (what WebRTC and WebSocket throw) is an `Error` too.
        if let Some(err) = value.dyn_ref::<js_sys::Error>() {
            return String::from(err.message());
        }
        value.as_string().unwrap_or_else(|| format!("{value:?}"))
    }
}

// Native only: on wasm32 the `typescript_custom_section` attribute consumes the constant.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn sentences_start_upper_case_and_end_with_a_stop() {
        assert_eq!(sentence("the node has stopped"), "The node has stopped.");
        assert_eq!(sentence("Done!"), "Done!");
        assert_eq!(sentence("  "), "");
    }
}

//! The one error-code mechanism of the JS API, and the leaf every other module may import.
//!
//! Every error thrown or rejected to JavaScript is a JS `Error` whose `message` is a sentence
//! (what happened, what to do) and whose `code` is the text of an [`ErrorCode`] from the
//! workspace's one list (`onionmesh_node::ErrorCode`). There is no second list here: an error
//! without a code cannot be built ([`js_error`] takes an `ErrorCode`), and the TypeScript union
//! below is checked against [`ErrorCode::ALL`] by a unit test, so the `.d.ts` cannot drift.

pub use onionmesh_node::ErrorCode;

/// The TypeScript union of every code, as it appears in the generated `.d.ts`. It is a literal
/// because `typescript_custom_section` needs one; `ts_union_matches_the_code_list` rebuilds it
/// from [`ErrorCode::ALL`] and fails if the two differ (paste its output here when it does).
#[cfg_attr(
    target_arch = "wasm32",
    wasm_bindgen::prelude::wasm_bindgen(typescript_custom_section)
)]
pub const TS_ERROR_CODES: &str = r#"
/** The `code` of every error this module throws or rejects with (one list for the whole node). */
export type ErrorCode =
  | "NOT_LINKED"
  | "TOO_LARGE"
  | "BAD_PEER_ID"
  | "NO_BRIDGE"
  | "TOO_MANY_LINKS"
  | "BUSY"
  | "REQUESTED"
  | "PEER_CLOSED"
  | "LINK_CLOSED"
  | "CONNECT_FAILED"
  | "TIMEOUT"
  | "AUTH_FAILED"
  | "PROTOCOL"
  | "INTRODUCTION_FAILED"
  | "GLARE"
  | "IDLE"
  | "STOPPED"
  | "UNKNOWN_PEER"
  | "BAD_PEER_KEY"
  | "PATH_THROUGH_SELF"
  | "NO_PATH"
  | "UNKNOWN_CIRCUIT"
  | "UNKNOWN_STREAM"
  | "NOT_OPEN"
  | "STREAM_NOT_OPEN"
  | "BAD_PATH"
  | "TOO_MANY_CIRCUITS"
  | "TOO_MANY_STREAMS"
  | "CIRCUIT_USED"
  | "BAD_HOP_COUNT"
  | "BAD_SERVICE_NAME"
  | "DESTROYED"
  | "HANDSHAKE"
  | "RESOURCE_LIMIT"
  | "EXTEND_FAILED"
  | "BUILD_FAILED"
  | "BAD_OWN_CONTACT"
  | "TOO_MANY_LOOKUPS"
  | "TOO_MANY_PUBLICATIONS"
  | "PUBLISH_NO_NODES"
  | "PUBLISH_INCOMPLETE"
  | "NOT_FOUND"
  | "NOT_COMPLETE"
  | "QUOTA_FULL"
  | "BAD_ARGUMENT"
  | "BROWSER"
  | "INTERNAL";
"#;

/// The union `TS_ERROR_CODES` must hold, built from [`ErrorCode::ALL`].
pub fn ts_union() -> String {
    let mut s = String::from(
        "\n/** The `code` of every error this module throws or rejects with (one list for the whole node). */\nexport type ErrorCode =\n",
    );
    for (i, c) in ErrorCode::ALL.iter().enumerate() {
        s.push_str("  | \"");
        s.push_str(c.as_str());
        s.push('"');
        s.push_str(if i + 1 == ErrorCode::ALL.len() {
            ";\n"
        } else {
            "\n"
        });
    }
    s
}

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
    fn ts_union_matches_the_code_list() {
        assert_eq!(
            TS_ERROR_CODES,
            ts_union(),
            "the TypeScript union in codes.rs differs from ErrorCode::ALL; replace it with:\n{}",
            ts_union()
        );
    }

    #[test]
    fn sentences_start_upper_case_and_end_with_a_stop() {
        assert_eq!(sentence("the node has stopped"), "The node has stopped.");
        assert_eq!(sentence("Done!"), "Done!");
        assert_eq!(sentence("  "), "");
    }
}

//! Errors as the page sees them: a JS `Error` whose message is a sentence saying what happened and
//! what to do, with a stable `code` property a program can switch on.

use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};

/// The stable codes of the JS API. The strings never change; the sentences may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `Node.start` was given something other than a `ws://` or `wss://` URL.
    BadUrl,
    /// The bridge's WebSocket did not open (refused, unreachable, or no answer within 10 s).
    BridgeUnreachable,
    /// `send` to a peer without an authenticated link.
    NotLinked,
    /// `send` with more bytes than fit in one link frame.
    TooLarge,
    /// A peer ID that is not 40 hex characters.
    BadPeerId,
    /// `on` was given something that is not a function.
    BadCallback,
    /// The node was stopped.
    Stopped,
    /// An onion (circuit, stream, service) call failed; the code comes from the core
    /// (`UNKNOWN_PEER`, `BAD_PEER_KEY`, `NOT_LINKED`, `NO_PATH`, `BAD_PATH`, `UNKNOWN_CIRCUIT`,
    /// `UNKNOWN_STREAM`, `NOT_OPEN`, `TOO_MANY_CIRCUITS`, `TOO_MANY_STREAMS`, `BAD_SERVICE_NAME`,
    /// ...).
    Onion(&'static str),
    /// Something this crate did not expect (a bug, or a browser without WebRTC). The message says
    /// what.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadUrl => "BAD_URL",
            ErrorCode::BridgeUnreachable => "BRIDGE_UNREACHABLE",
            ErrorCode::NotLinked => "NOT_LINKED",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::BadPeerId => "BAD_PEER_ID",
            ErrorCode::BadCallback => "BAD_CALLBACK",
            ErrorCode::Stopped => "STOPPED",
            ErrorCode::Onion(code) => code,
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A JS `Error` with `message` and `code`.
pub fn js_error(code: ErrorCode, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &"code".into(), &code.as_str().into());
    err.into()
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

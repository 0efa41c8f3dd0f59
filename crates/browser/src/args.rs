//! Arguments from JavaScript, checked once at the boundary: every bad one throws an `Error` with
//! code `BAD_ARGUMENT` (or `BAD_PEER_ID` for a peer ID), never a wasm-bindgen `TypeError`
//! without a code. The exported functions take `JsValue` where a caller could pass the wrong
//! type, and come here.

use crate::codes::{js_error, ErrorCode};
use js_sys::{Array, Uint8Array};
use onionmesh_ordb::HashName;
use onionmesh_wire::NodeId;
use wasm_bindgen::{JsCast, JsValue};

fn shown(value: &JsValue) -> String {
    match value.as_string() {
        Some(s) => format!("'{}'", s.chars().take(48).collect::<String>()),
        None => value
            .js_typeof()
            .as_string()
            .map(|t| format!("a {t}"))
            .unwrap_or_else(|| "something else".into()),
    }
}

pub fn bad_argument(message: String) -> JsValue {
    js_error(ErrorCode::BadArgument, &message)
}

/// A 40-hex-character peer ID.
pub fn peer_id(value: &JsValue) -> Result<NodeId, JsValue> {
    let parsed = value
        .as_string()
        .filter(|s| s.len() == 40)
        .and_then(|s| NodeId::from_hex(&s));
    parsed.ok_or_else(|| {
        js_error(
            ErrorCode::BadPeerId,
            &format!(
                "{} is not a peer ID. Use the 40-hex-character id from peers() or a peer event.",
                shown(value)
            ),
        )
    })
}

/// A 40-hex-character DHT key (a hash_name or a node ID).
pub fn key(value: &JsValue) -> Result<NodeId, JsValue> {
    let parsed = value
        .as_string()
        .filter(|s| s.len() == 40)
        .and_then(|s| NodeId::from_hex(&s));
    parsed.ok_or_else(|| {
        bad_argument(format!(
            "{} is not a DHT key. Give 40 hex characters (a 160-bit hash_name or node ID).",
            shown(value)
        ))
    })
}

/// `undefined`/`null` (let the node choose) or an array of peer IDs.
pub fn path(value: &JsValue) -> Result<Option<Vec<NodeId>>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let Some(array) = value.dyn_ref::<Array>() else {
        return Err(bad_argument(format!(
            "A circuit path is an array of peer IDs, such as [idB, idC, idD], not {}.",
            shown(value)
        )));
    };
    let mut ids = Vec::with_capacity(array.length() as usize);
    for (i, hop) in array.iter().enumerate() {
        if hop.as_string().is_none() {
            return Err(bad_argument(format!(
                "Hop {i} of the path is {}; every hop must be a 40-hex-character peer ID string.",
                shown(&hop)
            )));
        }
        ids.push(peer_id(&hop)?);
    }
    Ok(Some(ids))
}

/// Bytes: a `Uint8Array` (any typed array view works through its buffer) or an `ArrayBuffer`.
pub fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if let Some(b) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Uint8Array::new(b).to_vec());
    }
    Err(bad_argument(format!(
        "{what} must be a Uint8Array (or an ArrayBuffer), not {}; encode text with new TextEncoder().encode(text).",
        shown(value)
    )))
}

/// A string argument, such as a service name.
pub fn string(value: &JsValue, what: &str) -> Result<String, JsValue> {
    value
        .as_string()
        .ok_or_else(|| bad_argument(format!("{what} must be a string, not {}.", shown(value))))
}

/// A circuit or stream number from JS: a non-negative integer up to `max`.
pub fn handle(value: &JsValue, what: &str, max: f64) -> Result<u64, JsValue> {
    match value.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= max => Ok(n as u64),
        _ => Err(bad_argument(format!(
            "{what} must be the number from the call or event that made it, not {}.",
            shown(value)
        ))),
    }
}

/// An optional byte count (`undefined` gives `default`), at least 1.
pub fn max_bytes(value: &JsValue, default: usize) -> Result<usize, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(default);
    }
    match value.as_f64() {
        Some(n) if n.is_finite() && n >= 1.0 => Ok(n.min(usize::MAX as f64) as usize),
        _ => Err(bad_argument(format!(
            "max must be a positive number of bytes, not {}.",
            shown(value)
        ))),
    }
}

/// A content's hash_name: 40 hex characters.
pub fn hash_name(value: &JsValue) -> Result<HashName, JsValue> {
    let parsed = value
        .as_string()
        .filter(|s| s.len() == 40)
        .and_then(|s| HashName::from_hex(&s));
    parsed.ok_or_else(|| {
        bad_argument(format!(
            "{} is not a hashName. Give the 40 hex characters from publish(), a link or library().",
            shown(value)
        ))
    })
}

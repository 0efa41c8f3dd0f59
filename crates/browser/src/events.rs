//! The core's events as the plain JS objects the page receives.

use js_sys::{Object, Reflect, Uint8Array};
use onionmesh_node::Event;
use serde::Serialize;
use wasm_bindgen::JsValue;

/// The name the core's serde attributes give a state (`"linked"`, `"registered"`, `"warn"`...).
pub fn name<T: Serialize>(value: &T) -> String {
    serde_wasm_bindgen::to_value(value)
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

/// `{type:"bridge", state, detail}`, `{type:"peer", id, shortId, state, reason?}`,
/// `{type:"message", from, fromShortId, data: Uint8Array}` or `{type:"log", level, text}`.
pub fn to_js(event: &Event) -> JsValue {
    let obj = Object::new();
    match event {
        Event::Bridge { state, detail } => {
            set(&obj, "type", "bridge");
            set(&obj, "state", name(state));
            set(&obj, "detail", detail.as_str());
        }
        Event::Peer { id, state, reason } => {
            set(&obj, "type", "peer");
            set(&obj, "id", id.to_hex());
            set(&obj, "shortId", id.short());
            set(&obj, "state", name(state));
            if let Some(reason) = reason {
                set(&obj, "reason", reason.as_str());
            }
        }
        Event::Message { from, data } => {
            set(&obj, "type", "message");
            set(&obj, "from", from.to_hex());
            set(&obj, "fromShortId", from.short());
            // A copy the page owns, independent of wasm memory.
            set(&obj, "data", Uint8Array::from(data.as_slice()));
        }
        Event::Log { level, text } => {
            set(&obj, "type", "log");
            set(&obj, "level", name(level));
            set(&obj, "text", text.as_str());
        }
        Event::Dht(e) => {
            set(&obj, "type", "dht");
            crate::dht::fill_event(&obj, e);
        }
    }
    obj.into()
}

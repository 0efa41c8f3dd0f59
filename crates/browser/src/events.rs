//! The core's events as the plain JS objects the page receives.

use js_sys::{Object, Reflect, Uint8Array};
use onionmesh_node::{Event, OnionEvent};
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
        Event::Onion(e) => onion_to_js(&obj, e),
    }
    obj.into()
}

/// `{type:"circuit", event:"extended"|"built"|"closed", circuit, hops?, code?, reason?}`,
/// `{type:"stream", event:"opened"|"data"|"writable"|"ended", circuit, stream, data?, reason?}`
/// or `{type:"service", event:"opened"|"readable"|"writable"|"ended", circuit, stream, service?}`.
fn onion_to_js(obj: &Object, e: &OnionEvent) {
    let (kind, event, circ, stream) = match e {
        OnionEvent::CircuitExtended { circ, hops } => {
            set(obj, "hops", *hops as u32);
            ("circuit", "extended", *circ, None)
        }
        OnionEvent::CircuitBuilt { circ } => ("circuit", "built", *circ, None),
        OnionEvent::CircuitClosed { circ, code, reason } => {
            set(obj, "code", *code);
            set(obj, "reason", reason.as_str());
            ("circuit", "closed", *circ, None)
        }
        OnionEvent::StreamOpened { circ, stream } => ("stream", "opened", *circ, Some(*stream)),
        OnionEvent::StreamReadable { circ, stream } => ("stream", "readable", *circ, Some(*stream)),
        OnionEvent::StreamData { circ, stream, data } => {
            set(obj, "data", Uint8Array::from(data.as_slice()));
            ("stream", "data", *circ, Some(*stream))
        }
        OnionEvent::StreamWritable { circ, stream } => ("stream", "writable", *circ, Some(*stream)),
        OnionEvent::StreamEnded {
            circ,
            stream,
            reason,
        } => {
            set(obj, "reason", reason.as_str());
            ("stream", "ended", *circ, Some(*stream))
        }
        OnionEvent::ServiceStreamOpened {
            circuit,
            stream,
            service,
        } => {
            set(obj, "service", service.as_str());
            ("service", "opened", *circuit, Some(*stream))
        }
        OnionEvent::ServiceReadable { circuit, stream } => {
            ("service", "readable", *circuit, Some(*stream))
        }
        OnionEvent::ServiceWritable { circuit, stream } => {
            ("service", "writable", *circuit, Some(*stream))
        }
        OnionEvent::ServiceEnded { circuit, stream } => {
            ("service", "ended", *circuit, Some(*stream))
        }
        _ => ("circuit", "unknown", 0, None),
    };
    set(obj, "type", kind);
    set(obj, "event", event);
    // Circuit handles count up from 1 and stay far below 2^53.
    set(obj, "circuit", circ as f64);
    if let Some(s) = stream {
        set(obj, "stream", s);
    }
}

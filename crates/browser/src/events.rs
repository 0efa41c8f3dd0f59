//! The core's events as the plain JS objects the page receives (see the `NodeEvent` type in
//! the `.d.ts`, declared in `api.rs`).

use crate::timer;
use crate::views;
use js_sys::{Array, Object, Reflect, Uint8Array};
use onionmesh_node::{BridgeState, ContentEvent, DhtEvent, Event, OnionEvent};
use onionmesh_wire::NodeId;
use wasm_bindgen::JsValue;

pub fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

fn ids(list: &[NodeId]) -> Array {
    list.iter().map(|id| JsValue::from(id.to_hex())).collect()
}

/// `{type:"bridge", state, detail, attempt?, nextAttemptAt?, nextAttemptInMs?}`,
/// `{type:"peer", id, shortId, state, reason?, code?}`, `{type:"writable", id, shortId}`,
/// `{type:"message", from, fromShortId, data}`, `{type:"log", level, text}`,
/// `{type:"dht", event, ...}`, or a circuit/stream/service event.
pub fn to_js(event: &Event) -> JsValue {
    let obj = Object::new();
    match event {
        Event::Bridge { state, detail } => {
            set(&obj, "type", "bridge");
            set(&obj, "state", views::bridge_state(state));
            set(&obj, "detail", detail.as_str());
            if let BridgeState::Reconnecting {
                next_attempt,
                attempt,
            } = state
            {
                let now = timer::now();
                set(&obj, "attempt", *attempt);
                set(&obj, "nextAttemptInMs", next_attempt.since(now) as f64);
                set(
                    &obj,
                    "nextAttemptAt",
                    views::wall_clock_of(*next_attempt, now, timer::unix_ms()) as f64,
                );
            }
        }
        Event::Peer { id, state, reason } => {
            set(&obj, "type", "peer");
            set(&obj, "id", id.to_hex());
            set(&obj, "shortId", id.short());
            set(&obj, "state", views::link_state(*state));
            if let Some(reason) = reason {
                set(&obj, "reason", reason.to_string());
                set(&obj, "code", reason.code().as_str());
            }
        }
        Event::LinkWritable { peer } => {
            set(&obj, "type", "writable");
            set(&obj, "id", peer.to_hex());
            set(&obj, "shortId", peer.short());
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
            set(&obj, "level", views::log_level(*level));
            set(&obj, "text", text.as_str());
        }
        Event::Dht(e) => {
            set(&obj, "type", "dht");
            fill_dht(&obj, e);
        }
        Event::Onion(e) => fill_onion(&obj, e),
        Event::Content(e) => fill_content(&obj, e),
    }
    obj.into()
}

/// `{type:"content", event:"metadata"|"progress"|"done"|"failed"|"served"|"resumable",
/// hashName, ...}` (issue 9 item 9).
fn fill_content(obj: &Object, e: &ContentEvent) {
    set(obj, "type", "content");
    let (event, hash_name) = match e {
        ContentEvent::Metadata {
            hash_name,
            name,
            mime,
            size,
            pieces,
            kind,
        } => {
            set(obj, "name", name.as_str());
            set(obj, "mime", mime.as_str());
            set(obj, "size", *size as f64);
            set(obj, "pieces", *pieces);
            set(obj, "kind", crate::views::content_kind(*kind));
            ("metadata", hash_name)
        }
        ContentEvent::Progress {
            hash_name,
            index,
            pieces_have,
            pieces,
        } => {
            set(obj, "index", *index);
            set(obj, "piecesHave", *pieces_have);
            set(obj, "pieces", *pieces);
            ("progress", hash_name)
        }
        ContentEvent::Done { hash_name } => ("done", hash_name),
        ContentEvent::Failed { hash_name, reason } => {
            set(obj, "reason", reason.as_str());
            ("failed", hash_name)
        }
        ContentEvent::Served { hash_name, index } => {
            set(obj, "index", *index);
            ("served", hash_name)
        }
        ContentEvent::Resumable {
            hash_name,
            pieces_have,
            pieces,
            source,
        } => {
            set(obj, "piecesHave", *pieces_have);
            set(obj, "pieces", *pieces);
            if let Some(s) = source {
                set(obj, "source", s.uri.as_str());
            }
            ("resumable", hash_name)
        }
        _ => {
            set(obj, "event", "other");
            return;
        }
    };
    set(obj, "event", event);
    set(obj, "hashName", hash_name.to_hex());
}

/// The fields of a `{type: "dht"}` event (and of the objects the DHT promises resolve to).
pub fn fill_dht(obj: &Object, e: &DhtEvent) {
    match e {
        DhtEvent::LookupDone {
            lookup,
            kind,
            target,
            closest,
            providers,
            rounds,
            requests,
        } => {
            set(obj, "event", "lookup-done");
            set(obj, "lookup", *lookup as f64);
            set(obj, "kind", views::lookup_kind(*kind));
            set(obj, "target", target.to_hex());
            set(obj, "closest", ids(closest));
            set(obj, "providers", ids(providers));
            set(obj, "rounds", *rounds);
            set(obj, "requests", *requests);
        }
        DhtEvent::Published {
            lookup,
            key,
            holders,
            attempted,
            error,
        } => {
            set(obj, "event", "published");
            set(obj, "lookup", *lookup as f64);
            set(obj, "key", key.to_hex());
            set(obj, "holders", *holders as u32);
            set(obj, "attempted", *attempted as u32);
            if let Some((code, why)) = error {
                set(obj, "code", code.as_str());
                set(obj, "error", why.as_str());
            }
        }
        DhtEvent::ProviderStored { key, provider } => {
            set(obj, "event", "provider-stored");
            set(obj, "key", key.to_hex());
            set(obj, "provider", provider.to_hex());
        }
        DhtEvent::SuspectBridge {
            bridge,
            far_answers,
            alternatives,
        } => {
            set(obj, "event", "suspect-bridge");
            set(obj, "bridge", bridge.as_str());
            set(obj, "farAnswers", *far_answers);
            let alts: Array = alternatives
                .iter()
                .map(|a| JsValue::from(a.as_str()))
                .collect();
            set(obj, "alternatives", alts);
        }
        _ => set(obj, "event", "other"),
    }
}

/// `{type:"circuit", event:"extended"|"built"|"closed", circuit, hops?, code?, reason?}`,
/// `{type:"stream", event:"opened"|"readable"|"writable"|"ended", circuit, stream, reason?}` or
/// `{type:"service", event:"opened"|"readable"|"writable"|"ended", circuit, stream, service?}`.
/// Circuit handles count up from 1 and stay far below 2^53, so they are plain JS numbers.
fn fill_onion(obj: &Object, e: &OnionEvent) {
    let (kind, event, circ, stream) = match e {
        OnionEvent::CircuitExtended { circ, hops } => {
            set(obj, "hops", *hops as u32);
            ("circuit", "extended", circ.0, None)
        }
        OnionEvent::CircuitBuilt { circ } => ("circuit", "built", circ.0, None),
        OnionEvent::CircuitClosed { circ, code, reason } => {
            set(obj, "code", code.as_str());
            set(obj, "reason", reason.as_str());
            ("circuit", "closed", circ.0, None)
        }
        OnionEvent::StreamOpened { stream } => {
            ("stream", "opened", stream.circ.0, Some(stream.stream.0))
        }
        OnionEvent::StreamReadable { stream } => {
            ("stream", "readable", stream.circ.0, Some(stream.stream.0))
        }
        OnionEvent::StreamWritable { stream } => {
            ("stream", "writable", stream.circ.0, Some(stream.stream.0))
        }
        OnionEvent::StreamEnded { stream, reason } => {
            set(obj, "reason", reason.describe());
            ("stream", "ended", stream.circ.0, Some(stream.stream.0))
        }
        OnionEvent::ServiceStreamOpened { stream, service } => {
            set(obj, "service", service.as_str());
            ("service", "opened", stream.circuit, Some(stream.stream.0))
        }
        OnionEvent::ServiceReadable { stream } => {
            ("service", "readable", stream.circuit, Some(stream.stream.0))
        }
        OnionEvent::ServiceWritable { stream } => {
            ("service", "writable", stream.circuit, Some(stream.stream.0))
        }
        OnionEvent::ServiceEnded { stream } => {
            ("service", "ended", stream.circuit, Some(stream.stream.0))
        }
        _ => ("circuit", "other", 0, None),
    };
    set(obj, "type", kind);
    set(obj, "event", event);
    set(obj, "circuit", circ as f64);
    if let Some(s) = stream {
        set(obj, "stream", s);
    }
}

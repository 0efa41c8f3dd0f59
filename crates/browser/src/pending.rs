//! Promises waiting on the core: `dhtFindNode`, `dhtFindValue` and `dhtPublish` park their
//! `resolve`/`reject` here, keyed by lookup id; the core's `LookupDone` / `Published` event
//! settles them, and `stop()` (or the page going away) rejects every one with `STOPPED`.
//! At most [`MAX_WAITERS`] wait at once (the core runs at most 32 lookups anyway).

use crate::codes::{js_error, sentence, ErrorCode};
use crate::events::fill_dht;
use js_sys::{Function, Object};
use onionmesh_bounded::FlatMap;
use onionmesh_node::{DhtEvent, Event};
use std::collections::VecDeque;
use wasm_bindgen::JsValue;

/// Most DHT promises waiting at once.
pub const MAX_WAITERS: usize = 64;
/// Most lookups remembered that finished before their promise was parked.
const MAX_EARLY: usize = 16;

/// A parked promise's functions (DHT calls here; content reads, publish and remove in the
/// driver's content reader).
pub struct Waiter {
    pub resolve: Function,
    pub reject: Function,
}

impl Waiter {
    /// A promise and its parked functions.
    pub fn new() -> (js_sys::Promise, Option<Waiter>) {
        let mut waiter = None;
        let promise =
            js_sys::Promise::new(&mut |resolve, reject| waiter = Some(Waiter { resolve, reject }));
        (promise, waiter)
    }

    pub fn resolve(self, value: &JsValue) {
        let _ = self.resolve.call1(&JsValue::NULL, value);
    }

    pub fn reject(self, code: ErrorCode, message: &str) {
        let _ = self.reject.call1(&JsValue::NULL, &js_error(code, message));
    }
}

#[derive(Default)]
pub struct Promises {
    waiting: FlatMap<u64, Waiter>,
    /// Lookups that finished before their promise was parked (an empty routing table ends a
    /// lookup within the call that starts it). Bounded by [`MAX_EARLY`].
    early: VecDeque<(u64, Settle)>,
}

/// How a finished lookup settles its promise.
enum Settle {
    Resolve(JsValue),
    Reject(JsValue),
}

impl Promises {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Settle the promise this event finishes, if any.
    pub fn on_event(&mut self, event: &Event) {
        let Event::Dht(e) = event else { return };
        let lookup = match e {
            DhtEvent::LookupDone { lookup, .. } | DhtEvent::Published { lookup, .. } => *lookup,
            _ => return,
        };
        // A publication that did not reach the closest nodes rejects with the core's code
        // (`PUBLISH_NO_NODES`, `PUBLISH_INCOMPLETE`), its sentence and the counts.
        let obj = match e {
            DhtEvent::Published {
                error: Some((code, why)),
                holders,
                attempted,
                ..
            } => {
                let err = js_error(
                    *code,
                    &sentence(&format!(
                        "{why} ({holders} of {attempted} nodes stored the record)"
                    )),
                );
                let _ = js_sys::Reflect::set(&err, &"holders".into(), &(*holders as u32).into());
                let _ =
                    js_sys::Reflect::set(&err, &"attempted".into(), &(*attempted as u32).into());
                Settle::Reject(err)
            }
            _ => {
                let obj = Object::new();
                fill_dht(&obj, e);
                Settle::Resolve(obj.into())
            }
        };
        if let Some(w) = self.waiting.remove(&lookup) {
            let _ = match &obj {
                Settle::Resolve(v) => w.resolve.call1(&JsValue::NULL, v),
                Settle::Reject(v) => w.reject.call1(&JsValue::NULL, v),
            };
        } else {
            if self.early.len() >= MAX_EARLY {
                self.early.pop_front();
            }
            self.early.push_back((lookup, obj));
        }
    }

    /// Wait for `lookup` (or settle at once if it already finished).
    pub fn park(&mut self, lookup: u64, resolve: Function, reject: Function) {
        if let Some(pos) = self.early.iter().position(|(l, _)| *l == lookup) {
            let _ = match self.early.remove(pos) {
                Some((_, Settle::Resolve(v))) => resolve.call1(&JsValue::NULL, &v),
                Some((_, Settle::Reject(v))) => reject.call1(&JsValue::NULL, &v),
                None => Ok(JsValue::UNDEFINED),
            };
            return;
        }
        self.waiting.insert(lookup, Waiter { resolve, reject });
    }

    /// Reject every waiting promise with `code` (the node stopped).
    pub fn reject_all(&mut self, code: ErrorCode, message: &str) {
        for (_, w) in std::mem::take(&mut self.waiting) {
            let _ = w.reject.call1(&JsValue::NULL, &js_error(code, message));
        }
        self.early.clear();
    }
}

//! Promises waiting on the core: `dhtFindNode`, `dhtFindValue` and `dhtPublish` park their
//! `resolve`/`reject` here, keyed by lookup id; the core's `LookupDone` / `Published` event
//! settles them, and `stop()` (or the page going away) rejects every one with `STOPPED`.
//! At most [`MAX_WAITERS`] wait at once (the core runs at most 32 lookups anyway).

use crate::codes::{js_error, ErrorCode};
use crate::events::fill_dht;
use js_sys::{Function, Object};
use onionmesh_node::{DhtEvent, Event};
use std::collections::{BTreeMap, VecDeque};
use wasm_bindgen::JsValue;

/// Most DHT promises waiting at once.
pub const MAX_WAITERS: usize = 64;
/// Most lookups remembered that finished before their promise was parked.
const MAX_EARLY: usize = 16;

struct Waiter {
    resolve: Function,
    reject: Function,
}

#[derive(Default)]
pub struct Promises {
    waiting: BTreeMap<u64, Waiter>,
    /// Lookups that finished before their promise was parked (an empty routing table ends a
    /// lookup within the call that starts it). Bounded by [`MAX_EARLY`].
    early: VecDeque<(u64, Object)>,
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
        let obj = Object::new();
        fill_dht(&obj, e);
        if let Some(w) = self.waiting.remove(&lookup) {
            let _ = w.resolve.call1(&JsValue::NULL, &obj);
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
            if let Some((_, obj)) = self.early.remove(pos) {
                let _ = resolve.call1(&JsValue::NULL, &obj);
            }
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

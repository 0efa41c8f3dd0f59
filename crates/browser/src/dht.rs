//! The DHT part of the JS API: `dhtPublish`, `dhtFindValue`, `dhtFindNode`, `dhtStats`, and
//! `connect` (a link through a bridge introduction, across federated bridges too).
//!
//! Lookups are promises: each call starts a lookup in the core and parks its `resolve` here,
//! keyed by the lookup id; the core's `LookupDone` / `Published` event settles it. At most
//! [`MAX_WAITERS`] promises wait at once (the core runs at most 32 lookups anyway).
//!
//! ```js
//! const { holders } = await node.dhtPublish(keyHex);            // store "I provide keyHex"
//! const { providers } = await other.dhtFindValue(keyHex);       // -> [node.id, ...]
//! const { closest } = await other.dhtFindNode(node.id);         // closest first
//! node.dhtStats();  // { tableSize, runningLookups, sentViaIntroducer, relayed, ... }
//! ```

use crate::api::{parse_peer, BrowserNode};
use js_sys::{Array, Object, Promise, Reflect};
use onionmesh_node::{DhtEvent, Event};
use onionmesh_wire::NodeId;
use serde::Serialize;
use std::collections::BTreeMap;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_DHT: &str = r#"
/** What `dhtFindNode` and `dhtFindValue` resolve to. IDs are 40 hex characters. */
export interface DhtLookup {
  lookup: number;
  kind: "find-node" | "find-value" | "publish" | "bootstrap" | "refresh";
  target: string;
  /** Nodes that answered, closest to `target` first. */
  closest: string[];
  /** `dhtFindValue` only: nodes that said they provide the key. */
  providers: string[];
  rounds: number;
  requests: number;
}
/** What `dhtPublish` resolves to. */
export interface DhtPublished { lookup: number; key: string; holders: number; attempted: number; }
/** `Node.dhtStats()`. */
export interface DhtStats {
  bootstrapped: boolean; tableSize: number; runningLookups: number; lookupsDone: number;
  storedKeys: number; publishedKeys: number; sentDirect: number; sentViaIntroducer: number;
  sentViaBridge: number; unroutable: number; relayed: number; relayRefused: number;
  rejected: number; farAnswers: number; bridge: string;
}
/** Codes of the DHT calls' errors (besides `BAD_PEER_ID` and `STOPPED`). */
export type DhtErrorCode = "BAD_KEY" | "TOO_MANY_LOOKUPS" | "TOO_MANY_PUBLICATIONS" | "NO_BRIDGE" | "TOO_MANY_LINKS";
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "Promise<DhtLookup>")]
    pub type DhtLookupPromise;
    #[wasm_bindgen(typescript_type = "Promise<DhtPublished>")]
    pub type DhtPublishedPromise;
    #[wasm_bindgen(typescript_type = "DhtStats")]
    pub type DhtStatsObject;
}

/// Most DHT promises waiting at once.
pub const MAX_WAITERS: usize = 64;

/// DHT promises waiting for their lookup, by lookup id.
#[derive(Default)]
pub struct Waiters {
    waiting: BTreeMap<u64, js_sys::Function>,
    /// Lookups that finished before their promise was parked (an empty routing table ends a
    /// lookup within the call that starts it). Bounded by [`MAX_EARLY`].
    early: std::collections::VecDeque<(u64, Object)>,
}

const MAX_EARLY: usize = 16;

impl Waiters {
    /// Settle the promise this event finishes, if any.
    pub fn on_event(&mut self, event: &Event) {
        let Event::Dht(e) = event else { return };
        let lookup = match e {
            DhtEvent::LookupDone { lookup, .. } | DhtEvent::Published { lookup, .. } => *lookup,
            _ => return,
        };
        let obj = Object::new();
        fill_event(&obj, e);
        if let Some(resolve) = self.waiting.remove(&lookup) {
            let _ = resolve.call1(&JsValue::NULL, &obj);
        } else {
            if self.early.len() >= MAX_EARLY {
                self.early.pop_front();
            }
            self.early.push_back((lookup, obj));
        }
    }

    fn park(&mut self, lookup: u64, resolve: js_sys::Function) {
        if let Some(pos) = self.early.iter().position(|(l, _)| *l == lookup) {
            if let Some((_, obj)) = self.early.remove(pos) {
                let _ = resolve.call1(&JsValue::NULL, &obj);
            }
            return;
        }
        self.waiting.insert(lookup, resolve);
    }
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

fn ids(list: &[NodeId]) -> Array {
    list.iter().map(|id| JsValue::from(id.to_hex())).collect()
}

/// The fields of a `{type: "dht"}` event (and of the objects the promises resolve to).
pub fn fill_event(obj: &Object, e: &DhtEvent) {
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
            set(obj, "kind", crate::events::name(kind));
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
        } => {
            set(obj, "event", "published");
            set(obj, "lookup", *lookup as f64);
            set(obj, "key", key.to_hex());
            set(obj, "holders", *holders as u32);
            set(obj, "attempted", *attempted as u32);
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

/// A JS `Error` with a DHT `code` (kept here so the DHT adds no variant to the shared enum).
fn dht_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    let _ = Reflect::set(&err, &"code".into(), &code.into());
    err.into()
}

fn parse_key(key: &str) -> Result<NodeId, JsValue> {
    let parsed = if key.len() == 40 {
        NodeId::from_hex(key)
    } else {
        None
    };
    parsed.ok_or_else(|| {
        let shown: String = key.chars().take(48).collect();
        dht_error(
            "BAD_KEY",
            &format!("'{shown}' is not a DHT key. Give 40 hex characters (a 160-bit hash_name or node ID)."),
        )
    })
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Announce that this page provides `keyHex` (40 hex characters, a content hash_name): the
    /// record is stored at the closest DHT nodes and republished while the page runs. Resolves
    /// with `{lookup, key, holders, attempted}`. Rejects with `BAD_KEY`,
    /// `TOO_MANY_PUBLICATIONS`, `TOO_MANY_LOOKUPS` or `STOPPED`.
    #[wasm_bindgen(js_name = dhtPublish)]
    pub fn dht_publish(
        &self,
        #[wasm_bindgen(js_name = "keyHex")] key_hex: &str,
    ) -> Result<DhtPublishedPromise, JsValue> {
        let key = parse_key(key_hex)?;
        self.start_lookup(|d, now| d.node.dht_publish(now, key))
            .map(JsCast::unchecked_into)
    }

    /// Find who provides `keyHex`. Resolves with `{providers, closest, rounds, requests, ...}`;
    /// `providers` is empty when nobody does.
    #[wasm_bindgen(js_name = dhtFindValue)]
    pub fn dht_find_value(
        &self,
        #[wasm_bindgen(js_name = "keyHex")] key_hex: &str,
    ) -> Result<DhtLookupPromise, JsValue> {
        let key = parse_key(key_hex)?;
        self.start_lookup(|d, now| d.node.dht_find_value(now, key))
            .map(JsCast::unchecked_into)
    }

    /// Find the DHT nodes closest to `idHex`. Resolves with `{closest, rounds, requests, ...}`;
    /// a node in `closest` answered this lookup, over a link, an introducer or a bridge.
    #[wasm_bindgen(js_name = dhtFindNode)]
    pub fn dht_find_node(
        &self,
        #[wasm_bindgen(js_name = "idHex")] id_hex: &str,
    ) -> Result<DhtLookupPromise, JsValue> {
        let target = parse_key(id_hex)?;
        self.start_lookup(|d, now| d.node.dht_find_node(now, target))
            .map(JsCast::unchecked_into)
    }

    /// Routing-table size, lookups and how DHT frames travelled (direct, through an
    /// introducer, through the bridge), for display.
    #[wasm_bindgen(js_name = dhtStats)]
    pub fn dht_stats(&self) -> Result<DhtStatsObject, JsValue> {
        let stats = self.live(|d, _| d.node.dht_stats())?;
        let ser = serde_wasm_bindgen::Serializer::json_compatible();
        stats
            .serialize(&ser)
            .map(JsCast::unchecked_into)
            .map_err(|e| dht_error("INTERNAL", &format!("Could not read the DHT stats: {e}.")))
    }

    /// Open a link to `peerId` through a bridge introduction; the peer may be registered at a
    /// federated bridge (its introduction is relayed bridge to bridge). Watch for its `linked`
    /// peer event. Throws `BAD_PEER_ID`, `NO_BRIDGE`, `TOO_MANY_LINKS` or `STOPPED`.
    pub fn connect(
        &self,
        #[wasm_bindgen(js_name = "peerId")] peer_id: &str,
    ) -> Result<(), JsValue> {
        let peer = parse_peer(peer_id)?;
        self.live(|d, now| d.node.connect(now, peer))?
            .map_err(|e| dht_error(e.code(), &format!("{e}.")))
    }
}

impl BrowserNode {
    fn start_lookup(
        &self,
        start: impl FnOnce(
            &mut crate::driver::Driver,
            onionmesh_node::Time,
        ) -> Result<u64, onionmesh_node::DhtError>,
    ) -> Result<Promise, JsValue> {
        if self.shared.dht_waiters.borrow().waiting.len() >= MAX_WAITERS {
            return Err(dht_error(
                "TOO_MANY_LOOKUPS",
                &format!("{MAX_WAITERS} DHT calls are already waiting; await one first."),
            ));
        }
        let mut resolver: Option<js_sys::Function> = None;
        let promise = Promise::new(&mut |resolve, _reject| resolver = Some(resolve));
        let lookup = self
            .live(|d, now| start(d, now))?
            .map_err(|e| dht_error(e.code(), &format!("{e}.")))?;
        if let Some(resolve) = resolver {
            self.shared.dht_waiters.borrow_mut().park(lookup, resolve);
        }
        Ok(promise)
    }
}

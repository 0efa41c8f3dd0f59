//! The DHT part of the JS API: `dhtPublish`, `dhtFindValue`, `dhtFindNode`, `dhtStats`.
//!
//! Lookups are promises: each call starts a lookup in the core and parks its `resolve` and
//! `reject` with the driver (`pending`), keyed by the lookup id; the core's `LookupDone` /
//! `Published` event settles it, and `stop()` rejects it with `STOPPED`.
//!
//! ```js
//! const { holders } = await node.dhtPublish(keyHex);            // store "I provide keyHex"
//! const { providers } = await other.dhtFindValue(keyHex);       // -> [node.id, ...]
//! const { closest } = await other.dhtFindNode(node.id);         // closest first
//! node.dhtStats();  // { tableSize, runningLookups, sentViaIntroducer, relayed, ... }
//! ```

use crate::api::{to_js, BrowserNode};
use crate::args;
use crate::codes::{core_error, js_error, ErrorCode};
use crate::driver::Driver;
use crate::pending::MAX_WAITERS;
use crate::views::DhtStatsView;
use js_sys::Promise;
use onionmesh_node::{DhtError, Time};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

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
/** DHT events (`type: "dht"`). */
export type DhtNodeEvent =
  | ({ type: "dht"; event: "lookup-done" } & DhtLookup)
  /** `code` and `error` when the publication missed the closest nodes (the promise rejects). */
  | ({ type: "dht"; event: "published"; code?: ErrorCode; error?: string } & DhtPublished)
  | { type: "dht"; event: "provider-stored"; key: string; provider: string }
  | { type: "dht"; event: "suspect-bridge"; bridge: string; farAnswers: number; alternatives: string[] };
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

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Announce that this page provides `keyHex` (40 hex characters, a content hash_name): the
    /// record is stored at the closest DHT nodes and republished while the page runs. Resolves
    /// with `{lookup, key, holders, attempted}` when it reached them. Throws `BAD_ARGUMENT`;
    /// rejects with `PUBLISH_NO_NODES` (no DHT node answered) or `PUBLISH_INCOMPLETE` (fewer
    /// holders than wanted; the error has `holders` and `attempted`), `TOO_MANY_PUBLICATIONS`,
    /// `TOO_MANY_LOOKUPS` or `STOPPED`.
    #[wasm_bindgen(js_name = dhtPublish)]
    pub fn dht_publish(
        &self,
        #[wasm_bindgen(js_name = "keyHex", unchecked_param_type = "string")] key_hex: JsValue,
    ) -> Result<DhtPublishedPromise, JsValue> {
        let key = args::key(&key_hex)?;
        self.start_lookup(move |d, now| d.node.dht().publish(now, key))
            .map(JsCast::unchecked_into)
    }

    /// Find who provides `keyHex`. Resolves with `{providers, closest, rounds, requests, ...}`;
    /// `providers` is empty when nobody does.
    #[wasm_bindgen(js_name = dhtFindValue)]
    pub fn dht_find_value(
        &self,
        #[wasm_bindgen(js_name = "keyHex", unchecked_param_type = "string")] key_hex: JsValue,
    ) -> Result<DhtLookupPromise, JsValue> {
        let key = args::key(&key_hex)?;
        self.start_lookup(move |d, now| d.node.dht().find_value(now, key))
            .map(JsCast::unchecked_into)
    }

    /// Find the DHT nodes closest to `idHex`. Resolves with `{closest, rounds, requests, ...}`;
    /// a node in `closest` answered this lookup, over a link, an introducer or a bridge.
    #[wasm_bindgen(js_name = dhtFindNode)]
    pub fn dht_find_node(
        &self,
        #[wasm_bindgen(js_name = "idHex", unchecked_param_type = "string")] id_hex: JsValue,
    ) -> Result<DhtLookupPromise, JsValue> {
        let target = args::key(&id_hex)?;
        self.start_lookup(move |d, now| d.node.dht().find_node(now, target))
            .map(JsCast::unchecked_into)
    }

    /// Routing-table size, lookups and how DHT frames travelled (direct, through an
    /// introducer, through the bridge), for display.
    #[wasm_bindgen(js_name = dhtStats)]
    pub fn dht_stats(&self) -> Result<DhtStatsObject, JsValue> {
        let stats = self.live(|d, _| DhtStatsView::from(&d.node.dht_stats()))?;
        to_js(&stats, "the DHT stats").map(JsCast::unchecked_into)
    }
}

impl BrowserNode {
    /// Start a lookup and return a promise for its outcome. A refusal from the core rejects
    /// the promise (with the core's code) rather than throwing, as for any async call.
    fn start_lookup(
        &self,
        start: impl FnOnce(&mut Driver, Time) -> Result<u64, DhtError>,
    ) -> Result<Promise, JsValue> {
        let mut functions = None;
        let promise = Promise::new(&mut |resolve, reject| functions = Some((resolve, reject)));
        let Some((resolve, reject)) = functions else {
            return Err(js_error(
                ErrorCode::Internal,
                "The browser did not run the Promise executor. This is a bug.",
            ));
        };
        let outcome = self.live(|d, now| {
            if d.promises.len() >= MAX_WAITERS {
                return Err(js_error(
                    ErrorCode::TooManyLookups,
                    &format!("{MAX_WAITERS} DHT calls are already waiting; await one first."),
                ));
            }
            let lookup = start(d, now).map_err(|e| core_error(e.code(), &e))?;
            d.promises.park(lookup, resolve.clone(), reject.clone());
            Ok(())
        })?;
        if let Err(e) = outcome {
            let _ = reject.call1(&JsValue::NULL, &e);
        }
        Ok(promise)
    }
}

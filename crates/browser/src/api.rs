//! The JS API: the `Node` class (start, identity, links, messages, events, stop). Circuits and
//! streams are in `api_onion`, the DHT in `api_dht`; all three sit on top of `driver`.

use crate::args;
use crate::bridge::{BridgeSink, BridgeTransport, WebSocketTransport};
use crate::codes::{core_error, describe, js_error, stopped, ErrorCode};
use crate::driver::{callback, Connector, Driver, Shared};
use crate::store::{self, StoreChoice, DEFAULT_QUOTA_BYTES, DEFAULT_STORE_NAME};
use crate::timer;
use crate::views::{self, PeerInfo};
use onionmesh_crypto::Identity;
use onionmesh_node::{Node, NodeConfig, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Options for `Node.start`. */
export interface StartOptions {
  /** IndexedDB database that keeps content across reloads (default "onionmesh"). If IndexedDB
   *  cannot be opened the node runs with content in memory and logs a sentence saying so. */
  storeName?: string;
  /** Most bytes of content stored (default 1 GiB); past it writes fail with QUOTA_FULL and
   *  nothing already stored is lost. */
  storeQuotaBytes?: number;
  /** URL of the streaming Service Worker for `Download.streamTo` (default "sw.js", resolved
   *  against the page); null switches streaming off. */
  serviceWorker?: string | null;
  /** Test only: sign a wrong link proof, so that every peer must refuse this node. */
  testOnlyCorruptLinkProof?: boolean;
}

export type BridgeState = "connecting" | "registering" | "registered" | "reconnecting" | "disconnected";
export type PeerState = "offering" | "introducing" | "answering" | "connecting" | "authenticating" | "linked";

/** One entry of `Node.peers()`. */
export interface PeerInfo {
  /** 40 hex characters. */
  id: string;
  /** The first 8 hex characters of `id`. */
  shortId: string;
  state: PeerState;
  /** True when this node sent the offer. */
  initiator: boolean;
  /** Milliseconds in the current state. */
  sinceMs: number;
  bytesIn: number;
  bytesOut: number;
}

/** What `Node.on` callbacks receive. */
export type NodeEvent =
  /** `reconnecting` carries the attempt number and when it is due (`nextAttemptAt`, ms since
   *  1970, for `new Date(...)`; `nextAttemptInMs` from now). Links and circuits stay up. */
  | { type: "bridge"; state: BridgeState; detail: string; attempt?: number; nextAttemptAt?: number; nextAttemptInMs?: number }
  /** A closed or refused link says why: `reason` is a sentence, `code` is stable. */
  | { type: "peer"; id: string; shortId: string; state: PeerState | "closed" | "refused"; reason?: string; code?: ErrorCode }
  /** A link that refused `send` with `BUSY` (or was congested) can take messages again. */
  | { type: "writable"; id: string; shortId: string }
  | { type: "message"; from: string; fromShortId: string; data: Uint8Array }
  | { type: "log"; level: "info" | "warn"; text: string }
  | DhtNodeEvent
  | OnionNodeEvent
  | ContentNodeEvent;
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "StartOptions")]
    pub type StartOptions;
    #[wasm_bindgen(typescript_type = "PeerInfo[]")]
    pub type PeerList;
    #[wasm_bindgen(typescript_type = "(event: NodeEvent) => void")]
    pub type EventCallback;
}

/// Options for [`BrowserNode::start_with_transport`] (the Rust side of `StartOptions`).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Test only: sign a wrong link proof, so that peers must refuse this node.
    pub test_only_corrupt_link_proof: bool,
    /// The content store. The default here is memory (tests); `Node.start`'s default is the
    /// IndexedDB database "onionmesh".
    pub store: StoreChoice,
    /// The Service Worker script for `streamTo` (`None`: streaming is off). Default "sw.js".
    pub service_worker: Option<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            test_only_corrupt_link_proof: false,
            store: StoreChoice::default(),
            service_worker: Some("sw.js".into()),
        }
    }
}

impl NodeOptions {
    fn from_js(options: Option<&StartOptions>) -> Result<NodeOptions, JsValue> {
        let get = |key: &str| {
            options
                .and_then(|o| js_sys::Reflect::get(o, &key.into()).ok())
                .unwrap_or(JsValue::UNDEFINED)
        };
        let name = get("storeName");
        let name = if name.is_undefined() || name.is_null() {
            DEFAULT_STORE_NAME.to_owned()
        } else {
            args::string(&name, "The storeName option")?
        };
        let quota = get("storeQuotaBytes");
        let quota_bytes = if quota.is_undefined() || quota.is_null() {
            DEFAULT_QUOTA_BYTES
        } else {
            match quota.as_f64() {
                Some(q) if q.is_finite() && q >= 1.0 => q as u64,
                _ => {
                    return Err(args::bad_argument(
                        "The storeQuotaBytes option must be a positive number of bytes, such as 1073741824 for 1 GiB."
                            .into(),
                    ))
                }
            }
        };
        let sw = get("serviceWorker");
        let service_worker = if sw.is_null() {
            None
        } else if sw.is_undefined() {
            Some("sw.js".to_owned())
        } else {
            Some(args::string(
                &sw,
                "The serviceWorker option (a script URL, or null)",
            )?)
        };
        Ok(NodeOptions {
            test_only_corrupt_link_proof: get("testOnlyCorruptLinkProof").is_truthy(),
            store: StoreChoice {
                name: Some(name),
                quota_bytes,
            },
            service_worker,
        })
    }
}

/// One onionmesh node running in this page. See the crate documentation for an example.
///
/// Keep a reference to it: when the object is freed (`free()`, or garbage collection) the node
/// stops, as with `stop()`. It also stops by itself when the page goes away (`pagehide`).
#[wasm_bindgen(js_name = Node)]
pub struct BrowserNode {
    pub(crate) shared: Rc<Shared>,
    id: String,
    short_id: String,
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Start a node: open its content store (`options.storeName`, IndexedDB), make a fresh
    /// identity, connect to the bridge at `bridgeUrl` (`ws://` or `wss://`), secure the link
    /// (add `?bridge-id=<40 hex>` to accept only that bridge) and register. Content found in
    /// the store is served again; partial downloads report `resumable` and resume by themselves
    /// once the node has peers. Resolves once the WebSocket is open; registration and peer links follow as
    /// events. Rejects with code `BAD_ARGUMENT` for another kind of URL and `NO_BRIDGE` when
    /// the bridge cannot be reached within 10 seconds.
    ///
    /// Later, when the bridge connection drops, the node reconnects by itself with backoff
    /// (`{type:"bridge", state:"reconnecting", nextAttemptAt}` events) and keeps its links and
    /// circuits meanwhile.
    ///
    /// Events that happen before the promise resolves are not delivered; read `bridgeState()` and
    /// `peers()` for the state at that point.
    pub async fn start(
        #[wasm_bindgen(js_name = "bridgeUrl", unchecked_param_type = "string")] bridge_url: JsValue,
        options: Option<StartOptions>,
    ) -> Result<BrowserNode, JsValue> {
        let bridge_url = args::string(&bridge_url, "The bridge URL")?;
        check_url(&bridge_url)?;
        let opts = NodeOptions::from_js(options.as_ref())?;
        let url = bridge_url.clone();
        let connect = move |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
            match WebSocketTransport::connect(&url, sink) {
                Ok(t) => Ok(Box::new(t)),
                Err(e) => Err(JsValue::from_str(&format!(
                    "the browser refused the bridge URL {url}: {e}"
                ))),
            }
        };
        BrowserNode::start_with_transport(connect, &bridge_url, opts).await
    }

    /// This node's ID: 40 hex characters (160 bits of SHA-256 of its public key). The key pair is
    /// new at every start and its secret never leaves this module.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The first 8 hex characters of `id`, for people.
    #[wasm_bindgen(getter = shortId)]
    pub fn short_id(&self) -> String {
        self.short_id.clone()
    }

    /// `"connecting"`, `"registering"`, `"registered"`, `"reconnecting"` or `"disconnected"`.
    #[wasm_bindgen(js_name = bridgeState, unchecked_return_type = "BridgeState")]
    pub fn bridge_state(&self) -> Result<String, JsValue> {
        self.live(|d, _| views::bridge_state(&d.node.bridge_state()).to_owned())
    }

    /// Every peer link that is open or opening (closed ones are gone).
    pub fn peers(&self) -> Result<PeerList, JsValue> {
        let peers: Vec<PeerInfo> = self.live(|d, now| {
            d.node
                .peers(now)
                .iter()
                .map(PeerInfo::from)
                .collect::<Vec<_>>()
        })?;
        to_js(&peers, "the peers").map(JsCast::unchecked_into)
    }

    /// Subscribe to events. Returns a subscription id for `off`. A callback that throws is
    /// reported on the console and does not affect the node or other callbacks. Throws
    /// `BAD_ARGUMENT` for something that is not a function.
    pub fn on(&self, callback: EventCallback) -> Result<u32, JsValue> {
        self.live(|_, _| ())?;
        let f = callback.dyn_into::<js_sys::Function>().map_err(|_| {
            js_error(
                ErrorCode::BadArgument,
                "Node.on needs a function, such as node.on(event => console.log(event)).",
            )
        })?;
        Ok(self.shared.subscribers.borrow_mut().add(f))
    }

    /// Unsubscribe. Unknown ids are ignored.
    pub fn off(&self, subscription: u32) {
        self.shared.subscribers.borrow_mut().remove(subscription);
    }

    /// Send bytes (a `Uint8Array`, at most 65531 bytes) to a peer with an authenticated
    /// (`"linked"`) link. Everything accepted is delivered in order. Throws `BUSY` when the
    /// link's send queue is over its high-water mark: nothing was sent; wait for the peer's
    /// `{type:"writable"}` event and send again. Also throws `BAD_PEER_ID`, `BAD_ARGUMENT`,
    /// `NOT_LINKED`, `TOO_LARGE` or `STOPPED`.
    pub fn send(
        &self,
        #[wasm_bindgen(js_name = "peerId", unchecked_param_type = "string")] peer_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: JsValue,
    ) -> Result<(), JsValue> {
        let peer = args::peer_id(&peer_id)?;
        let data = args::bytes(&data, "The message")?;
        self.live(|d, now| d.node.link(peer).send(now, &data))?
            .map_err(|e| core_error(e.code(), &e))
    }

    /// Ask the bridge for more peers now (the node also does this by itself when it has few).
    #[wasm_bindgen(js_name = findPeers)]
    pub fn find_peers(&self) -> Result<(), JsValue> {
        self.live(|d, _| d.node.find_peers())
    }

    /// Open a link to `peerId` through a bridge introduction; the peer may be registered at a
    /// federated bridge (its introduction is relayed bridge to bridge). Watch for its `linked`
    /// peer event. Throws `BAD_PEER_ID`, `NO_BRIDGE`, `TOO_MANY_LINKS` or `STOPPED`.
    pub fn connect(
        &self,
        #[wasm_bindgen(js_name = "peerId", unchecked_param_type = "string")] peer_id: JsValue,
    ) -> Result<(), JsValue> {
        let peer = args::peer_id(&peer_id)?;
        self.live(|d, now| d.node.link(peer).connect(now))?
            .map_err(|e| core_error(e.code(), &e))
    }

    /// Close the link to a peer, if there is one. Messages `send` accepted before still go out
    /// first: the link's queue is flushed into the data channel (at most 5 s; a log event counts
    /// any that could not be), and the channel sends what it holds before it closes.
    pub fn disconnect(
        &self,
        #[wasm_bindgen(js_name = "peerId", unchecked_param_type = "string")] peer_id: JsValue,
    ) -> Result<(), JsValue> {
        let peer = args::peer_id(&peer_id)?;
        self.live(|d, _| d.node.link(peer).disconnect("disconnected by this page"))
    }

    /// Close every link and the bridge connection, and reject every waiting promise (DHT
    /// lookups and publications, a pending start) with `STOPPED`. The close events are
    /// delivered, then every subscription is dropped, and any further call throws `STOPPED`.
    /// Calling it twice is fine. The page going away (`pagehide`) does the same.
    pub fn stop(&self) {
        let _ = self
            .shared
            .with(|d, now| d.stop(now, "this node was stopped by the page"));
        self.shared.subscribers.borrow_mut().clear();
    }
}

/// The Rust-only side, for tests and embedders.
impl BrowserNode {
    /// Start a node over any [`BridgeTransport`] instead of a WebSocket. `connect` is called for
    /// the first connection and for every reconnection the core asks for, with the
    /// [`BridgeSink`] that attempt reports to; it must report `opened` (asynchronously) for the
    /// returned future to resolve. An `Err` from it is a reason (string or `Error`). `label`
    /// names the bridge in error sentences.
    pub async fn start_with_transport(
        mut connect: impl FnMut(BridgeSink) -> Result<Box<dyn BridgeTransport>, JsValue> + 'static,
        label: &str,
        options: NodeOptions,
    ) -> Result<BrowserNode, JsValue> {
        let (identity, link_identity, seed) = fresh_identity()?;
        let id = identity.id();
        let mut cfg = NodeConfig::default();
        cfg.links.test_only_corrupt_link_proof = options.test_only_corrupt_link_proof;
        let connector: Connector = Box::new(move |sink| connect(sink).map_err(|e| describe(&e)));
        // The store wakes the driver when completions wait; the driver exists only after the
        // store is open, so the wake function finds it through this slot.
        let slot: Rc<RefCell<Weak<Shared>>> = Rc::new(RefCell::new(Weak::new()));
        let wake: Rc<dyn Fn()> = {
            let slot = slot.clone();
            Rc::new(move || {
                let weak = slot.borrow().clone();
                callback(&weak, |_, _| {});
            })
        };
        let (store, fallback) = store::open(&options.store, wake).await;
        let shared = Shared::new(
            Node::new(identity, cfg, seed),
            label.to_owned(),
            link_identity,
            connector,
            store,
            options.service_worker.clone(),
        );
        *slot.borrow_mut() = Rc::downgrade(&shared);
        if let Some(sentence) = fallback {
            web_sys::console::warn_1(&format!("onionmesh: {sentence}").into());
            shared.with(|d, _| d.warn(sentence))?;
        }
        // Serve and advertise what the store holds; partial downloads resume by themselves.
        shared.with(|d, now| d.node.ordb().load(now))?;
        let opened = {
            let mut resolve_reject = None;
            let promise = js_sys::Promise::new(&mut |resolve, reject| {
                resolve_reject = Some((resolve, reject))
            });
            if let Some((resolve, reject)) = resolve_reject {
                shared.with(|d, now| d.start(now, resolve, reject))?;
            }
            promise
        };
        let node = BrowserNode {
            shared,
            id: id.to_hex(),
            short_id: id.short(),
        };
        match JsFuture::from(opened).await {
            Ok(_) => {
                // After the caller's first `node.on(...)` (a later task), content events held
                // back since start (what the store held) go out.
                let weak = Rc::downgrade(&node.shared);
                timer::after(0, move || callback(&weak, |d, _| d.release_held_events()));
                Ok(node)
            }
            Err(e) => {
                node.stop();
                Err(e)
            }
        }
    }

    /// Bytes waiting in the driver's per-link send queues (backpressure), over all links.
    pub fn queued_bytes(&self) -> usize {
        self.shared
            .driver
            .try_borrow()
            .map_or(0, |d| d.queued_bytes())
    }

    /// Run `f` unless the node is stopped.
    pub(crate) fn live<R>(&self, f: impl FnOnce(&mut Driver, Time) -> R) -> Result<R, JsValue> {
        self.shared
            .with(|d, now| if d.stopped { None } else { Some(f(d, now)) })?
            .ok_or_else(stopped)
    }
}

/// A view as a plain JS value (numbers, strings, arrays, objects; no `Map`s).
pub(crate) fn to_js<T: Serialize>(value: &T, what: &str) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&ser).map_err(|e| {
        js_error(
            ErrorCode::Internal,
            &format!("Could not list {what}: {e}. This is a bug."),
        )
    })
}

/// A fresh session identity (twice: one for the core, one for the bridge link's handshake; an
/// `Identity` is not `Clone`) and node RNG seed, both from the browser's CSPRNG.
fn fresh_identity() -> Result<(Identity, Identity, [u8; 32]), JsValue> {
    let random = |buf: &mut [u8; 32]| {
        getrandom::getrandom(buf).map_err(|e| {
            js_error(
                ErrorCode::Browser,
                &format!("This browser has no usable random number generator ({e}); onionmesh cannot make a key."),
            )
        })
    };
    let mut key_seed = [0u8; 32];
    random(&mut key_seed)?;
    // The same seed gives the same key pair.
    let identity = Identity::generate(&mut ChaCha20Rng::from_seed(key_seed));
    let link_identity = Identity::generate(&mut ChaCha20Rng::from_seed(key_seed));
    key_seed.fill(0);
    let mut node_seed = [0u8; 32];
    random(&mut node_seed)?;
    Ok((identity, link_identity, node_seed))
}

fn check_url(url: &str) -> Result<(), JsValue> {
    let bad = |why: String| js_error(ErrorCode::BadArgument, &why);
    let parsed = web_sys::Url::new(url).map_err(|_| {
        bad(format!(
            "'{url}' is not a URL. Give the bridge's WebSocket address, such as ws://127.0.0.1:8080/ws."
        ))
    })?;
    match parsed.protocol().as_str() {
        "ws:" | "wss:" => Ok(()),
        other => Err(bad(format!(
            "The bridge URL '{url}' uses {other}// but the bridge speaks WebSocket: use ws:// or wss://, such as ws://127.0.0.1:8080/ws."
        ))),
    }
}

//! The JS API: the `Node` class.

use crate::bridge::{BridgeSink, BridgeTransport, WebSocketTransport};
use crate::driver::Shared;
use crate::error::{js_error, stopped, ErrorCode};
use crate::events;
use onionmesh_crypto::Identity;
use onionmesh_node::{Node, NodeConfig};
use onionmesh_wire::NodeId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Options for `Node.start`. */
export interface StartOptions {
  /** Test only: sign a wrong link proof, so that every peer must refuse this node. */
  testOnlyCorruptLinkProof?: boolean;
}

export type BridgeState = "connecting" | "registering" | "registered" | "disconnected";
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
  | { type: "bridge"; state: BridgeState; detail: string }
  | { type: "peer"; id: string; shortId: string; state: PeerState | "closed" | "refused"; reason?: string }
  | { type: "message"; from: string; fromShortId: string; data: Uint8Array }
  | { type: "log"; level: "info" | "warn"; text: string }
  | OnionNodeEvent;

/** Thrown and rejected errors carry one of these in `code`. */
export type ErrorCode =
  | "BAD_URL" | "BRIDGE_UNREACHABLE" | "NOT_LINKED" | "TOO_LARGE" | "BAD_PEER_ID" | "BAD_CALLBACK" | "STOPPED" | "INTERNAL"
  // circuits, streams, services
  | "UNKNOWN_PEER" | "BAD_PEER_KEY" | "NO_PATH" | "BAD_PATH" | "UNKNOWN_CIRCUIT" | "UNKNOWN_STREAM" | "NOT_OPEN"
  | "STREAM_NOT_OPEN" | "TOO_MANY_CIRCUITS" | "TOO_MANY_STREAMS" | "CIRCUIT_USED" | "BAD_HOP_COUNT" | "BAD_SERVICE_NAME";
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
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Test only: sign a wrong link proof, so that peers must refuse this node.
    pub test_only_corrupt_link_proof: bool,
}

impl NodeOptions {
    fn from_js(options: Option<&StartOptions>) -> NodeOptions {
        let flag = options
            .and_then(|o| js_sys::Reflect::get(o, &"testOnlyCorruptLinkProof".into()).ok())
            .is_some_and(|v| v.is_truthy());
        NodeOptions {
            test_only_corrupt_link_proof: flag,
        }
    }
}

/// One onionmesh node running in this page. See the crate documentation for an example.
///
/// Keep a reference to it: when the object is freed (`free()`, or garbage collection) the node
/// stops, as with `stop()`.
#[wasm_bindgen(js_name = Node)]
pub struct BrowserNode {
    pub(crate) shared: Rc<Shared>,
    id: String,
    short_id: String,
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Start a node: make a fresh identity, connect to the bridge at `bridgeUrl` (`ws://` or
    /// `wss://`), secure the link (add `?bridge-id=<40 hex>` to accept only that bridge) and
    /// register. Resolves once the WebSocket is open; registration and peer links
    /// follow as events. Rejects with code `BAD_URL` for another kind of URL and
    /// `BRIDGE_UNREACHABLE` when the bridge cannot be reached within 10 seconds.
    ///
    /// Events that happen before the promise resolves are not delivered; read `bridgeState()` and
    /// `peers()` for the state at that point.
    pub async fn start(
        #[wasm_bindgen(js_name = "bridgeUrl")] bridge_url: String,
        options: Option<StartOptions>,
    ) -> Result<BrowserNode, JsValue> {
        check_url(&bridge_url)?;
        let opts = NodeOptions::from_js(options.as_ref());
        let url = bridge_url.clone();
        let connect = move |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
            match WebSocketTransport::connect(&url, sink) {
                Ok(t) => Ok(Box::new(t)),
                Err(e) => Err(js_error(
                    ErrorCode::BadUrl,
                    &format!("The browser refused the bridge URL {url}: {e}. Give a ws:// or wss:// address such as ws://127.0.0.1:8080/ws."),
                )),
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

    /// `"connecting"`, `"registering"`, `"registered"` or `"disconnected"`.
    #[wasm_bindgen(js_name = bridgeState, unchecked_return_type = "BridgeState")]
    pub fn bridge_state(&self) -> Result<String, JsValue> {
        self.live(|d, _| events::name(&d.node.bridge_state()))
    }

    /// Every peer link that is open or opening (closed ones are gone).
    pub fn peers(&self) -> Result<PeerList, JsValue> {
        let peers = self.live(|d, now| d.node.peers(now))?;
        let ser = serde_wasm_bindgen::Serializer::json_compatible();
        peers
            .serialize(&ser)
            .map(JsCast::unchecked_into)
            .map_err(|e| {
                js_error(
                    ErrorCode::Internal,
                    &format!("Could not list the peers: {e}."),
                )
            })
    }

    /// Subscribe to events. Returns a subscription id for `off`. A callback that throws is
    /// reported on the console and does not affect the node or other callbacks.
    pub fn on(&self, callback: EventCallback) -> Result<u32, JsValue> {
        self.live(|_, _| ())?;
        let f = callback.dyn_into::<js_sys::Function>().map_err(|_| {
            js_error(
                ErrorCode::BadCallback,
                "Node.on needs a function, such as node.on(event => console.log(event)).",
            )
        })?;
        Ok(self.shared.subscribers.borrow_mut().add(f))
    }

    /// Unsubscribe. Unknown ids are ignored.
    pub fn off(&self, subscription: u32) {
        self.shared.subscribers.borrow_mut().remove(subscription);
    }

    /// Send bytes to a peer with an authenticated (`"linked"`) link. Throws `BAD_PEER_ID`,
    /// `NOT_LINKED`, `TOO_LARGE` (more than 65531 bytes) or `STOPPED`.
    pub fn send(
        &self,
        #[wasm_bindgen(js_name = "peerId")] peer_id: &str,
        data: &[u8],
    ) -> Result<(), JsValue> {
        let peer = parse_peer(peer_id)?;
        self.live(|d, _| d.node.send(peer, data))?.map_err(|e| {
            let sentence = capitalise(&e.to_string());
            js_error(api_code(e.code()), &format!("{sentence}."))
        })
    }

    /// Ask the bridge for more peers now (the node also does this by itself when it has few).
    #[wasm_bindgen(js_name = findPeers)]
    pub fn find_peers(&self) -> Result<(), JsValue> {
        self.live(|d, _| d.node.find_peers())
    }

    /// Close the link to a peer, if there is one.
    pub fn disconnect(
        &self,
        #[wasm_bindgen(js_name = "peerId")] peer_id: &str,
    ) -> Result<(), JsValue> {
        let peer = parse_peer(peer_id)?;
        self.live(|d, _| d.node.disconnect(peer, "disconnected by this page"))
    }

    /// Close every link and the bridge connection. The close events are delivered, then every
    /// subscription is dropped, and any further call throws `STOPPED`. Calling it twice is fine.
    pub fn stop(&self) {
        let _ = self
            .shared
            .with(|d, now| d.stop(now, "this node was stopped by the page"));
        self.shared.subscribers.borrow_mut().clear();
    }
}

/// The Rust-only side, for tests and embedders.
impl BrowserNode {
    /// Start a node over any [`BridgeTransport`] instead of a WebSocket. `connect` receives the
    /// [`BridgeSink`] the transport reports to; it must report `opened` (asynchronously) for the
    /// returned future to resolve. `label` names the bridge in error sentences.
    pub async fn start_with_transport(
        connect: impl FnOnce(BridgeSink) -> Result<Box<dyn BridgeTransport>, JsValue>,
        label: &str,
        options: NodeOptions,
    ) -> Result<BrowserNode, JsValue> {
        let (identity, link_identity, seed) = fresh_identity()?;
        let id = identity.id();
        let cfg = NodeConfig {
            test_only_corrupt_link_proof: options.test_only_corrupt_link_proof,
            ..NodeConfig::default()
        };
        let shared = Shared::new(Node::new(identity, cfg, seed), label.to_owned());
        let transport = connect(BridgeSink {
            shared: Rc::downgrade(&shared),
            identity: Rc::new(link_identity),
        })?;
        let opened = {
            let mut d = shared.driver.try_borrow_mut().map_err(|_| {
                js_error(ErrorCode::Internal, "The new node is busy; this is a bug.")
            })?;
            d.set_transport(transport);
            js_sys::Promise::new(&mut |resolve, reject| d.await_start(resolve, reject))
        };
        let node = BrowserNode {
            shared,
            id: id.to_hex(),
            short_id: id.short(),
        };
        match JsFuture::from(opened).await {
            Ok(_) => Ok(node),
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
    pub(crate) fn live<R>(
        &self,
        f: impl FnOnce(&mut crate::driver::Driver, onionmesh_node::Time) -> R,
    ) -> Result<R, JsValue> {
        self.shared
            .with(|d, now| if d.stopped { None } else { Some(f(d, now)) })?
            .ok_or_else(stopped)
    }
}

/// A fresh session identity (twice: one for the core, one for the bridge link's handshake; an
/// `Identity` is not `Clone`) and node RNG seed, both from the browser's CSPRNG.
fn fresh_identity() -> Result<(Identity, Identity, [u8; 32]), JsValue> {
    let random = |buf: &mut [u8; 32]| {
        getrandom::getrandom(buf).map_err(|e| {
            js_error(
                ErrorCode::Internal,
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
    let bad = |why: String| js_error(ErrorCode::BadUrl, &why);
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

pub(crate) fn parse_peer(peer_id: &str) -> Result<NodeId, JsValue> {
    if peer_id.len() != 40 {
        return Err(bad_peer(peer_id));
    }
    NodeId::from_hex(peer_id).ok_or_else(|| bad_peer(peer_id))
}

fn bad_peer(peer_id: &str) -> JsValue {
    let shown: String = peer_id.chars().take(48).collect();
    js_error(
        ErrorCode::BadPeerId,
        &format!(
            "'{shown}' is not a peer ID. Use the 40-hex-character id from peers() or a peer event."
        ),
    )
}

fn api_code(code: &str) -> ErrorCode {
    match code {
        "NOT_LINKED" => ErrorCode::NotLinked,
        "TOO_LARGE" => ErrorCode::TooLarge,
        _ => ErrorCode::Internal,
    }
}

pub(crate) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

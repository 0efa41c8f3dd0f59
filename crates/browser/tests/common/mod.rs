//! What the in-page wasm tests share: an in-page bridge (the bridge's sans-IO rendezvous core,
//! plugged in through the driver's `BridgeTransport` seam), clocks and waits, and a recorder of
//! the events a node delivers.
#![allow(dead_code)] // each test file uses a part

use js_sys::{Array, Reflect, Uint8Array};
use onionmesh_browser::{BridgeSink, BridgeTransport, BrowserNode, NodeOptions};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::{
    ConnId, Rendezvous, RendezvousConfig, RendezvousInput, RendezvousOutput, Time,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

// Named apart from the crate's own bindings of the same globals: identical import signatures in
// two crates collide at link time.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn test_set_timeout(handler: &JsValue, ms: f64) -> JsValue;
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn test_performance_now() -> JsValue;
}

pub fn performance_now() -> f64 {
    test_performance_now().as_f64().unwrap_or_default()
}

pub fn now() -> Time {
    Time::from_millis(performance_now() as u64)
}

pub async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        test_set_timeout(&resolve, f64::from(ms));
    });
    let _ = JsFuture::from(p).await;
}

pub async fn wait_until(what: &str, timeout_ms: f64, mut cond: impl FnMut() -> bool) {
    let start = performance_now();
    while !cond() {
        if performance_now() - start > timeout_ms {
            panic!("timed out after {timeout_ms} ms waiting for {what}");
        }
        sleep(20).await;
    }
}

// ----- an in-page bridge ---------------------------------------------------------------------

/// The bridge's rendezvous core, with each node's transport as one connection. Deliveries to a
/// node are queued as microtasks, as a real socket would deliver them later.
pub struct Hub {
    rv: Rendezvous,
    sinks: BTreeMap<ConnId, BridgeSink>,
    next: u64,
}

pub type HubRef = Rc<RefCell<Hub>>;

pub fn new_hub() -> HubRef {
    let identity = Identity::from_seed([42; 32]).unwrap();
    let hub = Rc::new(RefCell::new(Hub {
        rv: Rendezvous::new(identity, RendezvousConfig::default(), [7; 32]),
        sinks: BTreeMap::new(),
        next: 0,
    }));
    spawn_local(tick(Rc::downgrade(&hub)));
    hub
}

/// The rendezvous's timers (keepalives, deadlines), checked every 100 ms while the hub lives.
pub async fn tick(hub: Weak<RefCell<Hub>>) {
    loop {
        sleep(100).await;
        let Some(hub) = hub.upgrade() else { return };
        let mut h = hub.borrow_mut();
        if h.rv.poll_timeout().is_some_and(|t| t <= now()) {
            h.rv.handle_input(now(), RendezvousInput::Timeout);
            h.flush();
        }
    }
}

impl Hub {
    fn flush(&mut self) {
        while let Some(out) = self.rv.poll_output() {
            match out {
                RendezvousOutput::Send { conn, bytes } => {
                    if let Some(sink) = self.sinks.get(&conn).cloned() {
                        spawn_local(async move { sink.frame(bytes) });
                    }
                }
                RendezvousOutput::Close { conn, reason } => {
                    if let Some(sink) = self.sinks.remove(&conn) {
                        spawn_local(async move { sink.closed(reason) });
                    }
                }
                RendezvousOutput::Registered { .. }
                | RendezvousOutput::Federated { .. }
                | RendezvousOutput::Log { .. } => {}
                // This in-page hub is no facilitator: a facilitated request is never answered
                // and ends at the node's own facilitate timeout. No test here asks for one.
                RendezvousOutput::Facilitate { .. } | RendezvousOutput::FacilitateClose { .. } => {}
            }
        }
    }
}

pub struct HubTransport {
    hub: HubRef,
    conn: ConnId,
}

impl BridgeTransport for HubTransport {
    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        let mut hub = self.hub.borrow_mut();
        hub.rv.handle_input(
            now(),
            RendezvousInput::Frame {
                conn: self.conn,
                bytes: frame,
            },
        );
        hub.flush();
        Ok(())
    }
}

impl Drop for HubTransport {
    fn drop(&mut self) {
        let mut hub = self.hub.borrow_mut();
        hub.sinks.remove(&self.conn);
        hub.rv
            .handle_input(now(), RendezvousInput::Closed(self.conn));
        hub.flush();
    }
}

pub async fn start_node(hub: &HubRef, corrupt_proof: bool) -> BrowserNode {
    let hub = hub.clone();
    let connect = move |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
        let conn = {
            let mut h = hub.borrow_mut();
            h.next += 1;
            let conn = ConnId(h.next);
            h.sinks.insert(conn, sink.clone());
            conn
        };
        // Opened first, then the rendezvous's challenge (as over a real socket).
        let h2 = hub.clone();
        spawn_local(async move {
            sink.opened();
            let mut h = h2.borrow_mut();
            h.rv.handle_input(now(), RendezvousInput::Opened(conn));
            h.flush();
        });
        Ok(Box::new(HubTransport {
            hub: hub.clone(),
            conn,
        }))
    };
    let options = NodeOptions {
        test_only_corrupt_link_proof: corrupt_proof,
        ..NodeOptions::default()
    };
    BrowserNode::start_with_transport(connect, "the in-page test hub", options)
        .await
        .expect("the node starts over the in-page hub")
}

// ----- reading the JS side -------------------------------------------------------------------

/// Every event a node delivered to its `on` callback, as the JS objects the page gets.
pub struct Recorder {
    pub events: Rc<RefCell<Vec<JsValue>>>,
    _callback: Closure<dyn FnMut(JsValue)>,
}

pub fn record(node: &BrowserNode) -> Recorder {
    let events = Rc::new(RefCell::new(Vec::new()));
    let e = events.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| e.borrow_mut().push(ev));
    node.on(callback.as_ref().clone().unchecked_into()).unwrap();
    Recorder {
        events,
        _callback: callback,
    }
}

pub fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

pub fn get_str(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

impl Recorder {
    pub fn peer_states(&self, peer: &str) -> Vec<String> {
        self.events
            .borrow()
            .iter()
            .filter(|e| get_str(e, "type") == "peer" && get_str(e, "id") == peer)
            .map(|e| get_str(e, "state"))
            .collect()
    }

    pub fn peer_event(&self, peer: &str, state: &str) -> Option<JsValue> {
        self.events
            .borrow()
            .iter()
            .find(|e| {
                get_str(e, "type") == "peer"
                    && get_str(e, "id") == peer
                    && get_str(e, "state") == state
            })
            .cloned()
    }

    pub fn writable_count(&self, peer: &str) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| get_str(e, "type") == "writable" && get_str(e, "id") == peer)
            .count()
    }

    pub fn messages_from(&self, peer: &str) -> Vec<Vec<u8>> {
        self.events
            .borrow()
            .iter()
            .filter(|e| get_str(e, "type") == "message" && get_str(e, "from") == peer)
            .map(|e| {
                get(e, "data")
                    .dyn_into::<Uint8Array>()
                    .expect("data is a Uint8Array")
                    .to_vec()
            })
            .collect()
    }
}

/// The `peers()` entry for `peer`, if any.
pub fn peer_entry(node: &BrowserNode, peer: &str) -> Option<JsValue> {
    let list: Array = node.peers().expect("peers() works").unchecked_into();
    list.iter().find(|p| get_str(p, "id") == peer)
}

pub fn peer_state(node: &BrowserNode, peer: &str) -> Option<String> {
    peer_entry(node, peer).map(|p| get_str(&p, "state"))
}

pub fn error_code(err: &JsValue) -> String {
    get_str(err, "code")
}

/// `node.send(peer, bytes)` as JavaScript calls it.
pub fn send(node: &BrowserNode, peer: &str, data: &[u8]) -> Result<(), JsValue> {
    node.send(JsValue::from_str(peer), Uint8Array::from(data).into())
}

pub fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ salt ^ ((i >> 8) as u8))
        .collect()
}

//! Real WebRTC in headless Chromium: two nodes in one page, introduced by an in-page rendezvous
//! (the bridge's sans-IO core) plugged in through the driver's `BridgeTransport` seam. Nothing
//! about WebRTC is mocked: each node makes real peer connections and data channels.
#![cfg(target_arch = "wasm32")]

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
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

// Named apart from the crate's own bindings of the same globals: identical import signatures in
// two crates collide at link time.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn test_set_timeout(handler: &JsValue, ms: f64) -> JsValue;
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn test_performance_now() -> JsValue;
}

fn performance_now() -> f64 {
    test_performance_now().as_f64().unwrap_or_default()
}

fn now() -> Time {
    Time::from_millis(performance_now() as u64)
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        test_set_timeout(&resolve, f64::from(ms));
    });
    let _ = JsFuture::from(p).await;
}

async fn wait_until(what: &str, timeout_ms: f64, mut cond: impl FnMut() -> bool) {
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
struct Hub {
    rv: Rendezvous,
    sinks: BTreeMap<ConnId, BridgeSink>,
    next: u64,
}

type HubRef = Rc<RefCell<Hub>>;

fn new_hub() -> HubRef {
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
async fn tick(hub: Weak<RefCell<Hub>>) {
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
            }
        }
    }
}

struct HubTransport {
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

async fn start_node(hub: &HubRef, corrupt_proof: bool) -> BrowserNode {
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
struct Recorder {
    events: Rc<RefCell<Vec<JsValue>>>,
    _callback: Closure<dyn FnMut(JsValue)>,
}

fn record(node: &BrowserNode) -> Recorder {
    let events = Rc::new(RefCell::new(Vec::new()));
    let e = events.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| e.borrow_mut().push(ev));
    node.on(callback.as_ref().clone().unchecked_into()).unwrap();
    Recorder {
        events,
        _callback: callback,
    }
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn get_str(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

impl Recorder {
    fn peer_states(&self, peer: &str) -> Vec<String> {
        self.events
            .borrow()
            .iter()
            .filter(|e| get_str(e, "type") == "peer" && get_str(e, "id") == peer)
            .map(|e| get_str(e, "state"))
            .collect()
    }

    fn peer_event(&self, peer: &str, state: &str) -> Option<JsValue> {
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

    fn writable_count(&self, peer: &str) -> usize {
        self.events
            .borrow()
            .iter()
            .filter(|e| get_str(e, "type") == "writable" && get_str(e, "id") == peer)
            .count()
    }

    fn messages_from(&self, peer: &str) -> Vec<Vec<u8>> {
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
fn peer_entry(node: &BrowserNode, peer: &str) -> Option<JsValue> {
    let list: Array = node.peers().expect("peers() works").unchecked_into();
    list.iter().find(|p| get_str(p, "id") == peer)
}

fn peer_state(node: &BrowserNode, peer: &str) -> Option<String> {
    peer_entry(node, peer).map(|p| get_str(&p, "state"))
}

fn error_code(err: &JsValue) -> String {
    get_str(err, "code")
}

/// `node.send(peer, bytes)` as JavaScript calls it.
fn send(node: &BrowserNode, peer: &str, data: &[u8]) -> Result<(), JsValue> {
    node.send(JsValue::from_str(peer), Uint8Array::from(data).into())
}

fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ salt ^ ((i >> 8) as u8))
        .collect()
}

// ----- the tests -----------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn two_nodes_link_over_webrtc_and_exchange_bytes() {
    let hub = new_hub();
    let a = start_node(&hub, false).await;
    let ra = record(&a);
    let b = start_node(&hub, false).await;
    let rb = record(&b);
    let (id_a, id_b) = (a.id(), b.id());
    assert_eq!(id_a.len(), 40);
    assert_eq!(a.short_id(), id_a[..8]);

    wait_until("both nodes to see the link as linked", 30_000.0, || {
        peer_state(&a, &id_b).as_deref() == Some("linked")
            && peer_state(&b, &id_a).as_deref() == Some("linked")
    })
    .await;
    assert_eq!(a.bridge_state().unwrap(), "registered");
    // The page saw the link come up through its states, as plain event objects.
    let linked = rb
        .peer_event(&id_a, "linked")
        .expect("a 'linked' peer event");
    assert_eq!(get_str(&linked, "shortId"), id_a[..8]);
    assert!(get(&linked, "reason").is_undefined());
    let states_b = rb.peer_states(&id_a);
    assert!(
        states_b.contains(&"authenticating".to_string()),
        "{states_b:?}"
    );

    // Small messages both ways, byte-identical, including every byte value.
    let one: Vec<u8> = (0..=255u8).collect();
    send(&a, &id_b, &one).unwrap();
    send(&b, &id_a, b"hello from b").unwrap();
    wait_until("the two small messages", 10_000.0, || {
        !rb.messages_from(&id_a).is_empty() && !ra.messages_from(&id_b).is_empty()
    })
    .await;
    assert_eq!(rb.messages_from(&id_a), vec![one.clone()]);
    assert_eq!(ra.messages_from(&id_b), vec![b"hello from b".to_vec()]);

    // A burst of maximum-size frames (issue 11 case 2): more than the channel's high-water
    // mark, so the link becomes congested and `send` refuses with BUSY instead of queueing
    // without end; a `writable` event says when to go on. Everything accepted arrives, in order
    // and intact, and the link survives.
    let max = onionmesh_wire::link::MAX_DATA;
    let burst: Vec<Vec<u8>> = (0..64u8).map(|i| payload(max, i)).collect();
    let mut busy = 0;
    let mut next = 0;
    let started = performance_now();
    while next < burst.len() {
        match send(&a, &id_b, &burst[next]) {
            Ok(()) => next += 1,
            Err(e) => {
                assert_eq!(error_code(&e), "BUSY", "only BUSY may refuse a burst");
                busy += 1;
                let writable_before = ra.writable_count(&id_b);
                wait_until("a writable event after BUSY", 30_000.0, || {
                    ra.writable_count(&id_b) > writable_before
                })
                .await;
            }
        }
        assert!(
            performance_now() - started < 60_000.0,
            "the burst took too long"
        );
    }
    assert!(
        busy > 0,
        "a 4 MiB burst should exceed the 1 MiB high-water mark"
    );
    wait_until("the 4 MiB burst to arrive", 60_000.0, || {
        rb.messages_from(&id_a).len() == 65
    })
    .await;
    let got = rb.messages_from(&id_a);
    assert_eq!(
        &got[1..],
        &burst[..],
        "the burst arrived reordered or changed"
    );
    assert_eq!(a.queued_bytes(), 0);
    assert_eq!(peer_state(&a, &id_b).as_deref(), Some("linked"));
    let entry = peer_entry(&a, &id_b).unwrap();
    assert_eq!(
        get(&entry, "bytesOut").as_f64(),
        Some((256 + 64 * max) as f64)
    );
    // B's 12-byte message, plus whatever link frames B sent (keepalives count as bytes in).
    let bytes_in = get(&entry, "bytesIn").as_f64().unwrap_or_default();
    assert!(bytes_in >= 12.0, "{bytes_in}");

    // API misuse gets stable codes.
    let err = send(&a, &id_b, &vec![0; max + 1]).unwrap_err();
    assert_eq!(error_code(&err), "TOO_LARGE");
    let err = send(&a, &"ab".repeat(20), b"x").unwrap_err();
    assert_eq!(error_code(&err), "NOT_LINKED");
    let err = send(&a, "not-a-peer", b"x").unwrap_err();
    assert_eq!(error_code(&err), "BAD_PEER_ID");
    assert!(
        err.dyn_ref::<js_sys::Error>().is_some(),
        "errors are JS Error objects"
    );
    let err = a
        .send(JsValue::from_str(&id_b), JsValue::from_str("text"))
        .unwrap_err();
    assert_eq!(error_code(&err), "BAD_ARGUMENT");
    let err = a
        .build_circuit(Array::of1(&JsValue::from(42)).into())
        .unwrap_err();
    assert_eq!(error_code(&err), "BAD_ARGUMENT", "buildCircuit([42])");
    let err = a
        .build_circuit(Array::of2(&JsValue::from_str(&id_b), &JsValue::from_str(&id_a)).into())
        .unwrap_err();
    assert_eq!(
        error_code(&err),
        "PATH_THROUGH_SELF",
        "a path through the page itself"
    );
    let err = a
        .read(JsValue::from(7), JsValue::from(1), JsValue::UNDEFINED)
        .unwrap_err();
    let code = error_code(&err);
    assert!(
        code == "UNKNOWN_CIRCUIT" || code == "UNKNOWN_STREAM",
        "{code}"
    );

    // A graceful disconnect right after a burst of sends (issue 11 case 4): everything `send`
    // accepted arrives before the link closes.
    let mut accepted = 0;
    for i in 0..48u8 {
        if send(&a, &id_b, &payload(60_000, i)).is_ok() {
            accepted += 1;
        }
    }
    assert!(accepted > 0);
    let before = rb.messages_from(&id_a).len();
    a.disconnect(JsValue::from_str(&id_b)).unwrap();
    assert_eq!(peer_state(&a, &id_b), None);
    wait_until("b to see the link closed", 10_000.0, || {
        peer_state(&b, &id_a).is_none()
    })
    .await;
    assert!(rb.peer_event(&id_a, "closed").is_some());
    let flushed = &rb.messages_from(&id_a)[before..];
    assert_eq!(
        flushed.len(),
        accepted,
        "messages accepted before disconnect were lost"
    );
    for (i, m) in flushed.iter().enumerate() {
        assert_eq!(m, &payload(60_000, i as u8));
    }

    a.stop();
    b.stop();
    assert_eq!(error_code(&a.peers().err().unwrap()), "STOPPED");
    assert_eq!(error_code(&send(&b, &id_a, b"x").unwrap_err()), "STOPPED");
}

#[wasm_bindgen_test]
async fn a_peer_with_a_bad_link_proof_is_refused() {
    let hub = new_hub();
    let honest = start_node(&hub, false).await;
    let rh = record(&honest);
    let liar = start_node(&hub, true).await;
    let rl = record(&liar);
    let (id_h, id_l) = (honest.id(), liar.id());

    wait_until("the honest node to refuse the liar", 30_000.0, || {
        rh.peer_event(&id_l, "refused").is_some()
    })
    .await;
    let refused = rh.peer_event(&id_l, "refused").unwrap();
    let reason = get_str(&refused, "reason");
    assert!(reason.contains("authentication failed"), "{reason}");
    assert!(!rh.peer_states(&id_l).contains(&"linked".to_string()));
    assert_eq!(peer_state(&honest, &id_l), None);
    assert_eq!(
        error_code(&send(&honest, &id_l, b"x").unwrap_err()),
        "NOT_LINKED"
    );

    // The liar's side of the link goes away too (it hears the refusal or sees the channel close).
    wait_until("the liar to lose the link", 10_000.0, || {
        peer_state(&liar, &id_h).is_none()
    })
    .await;
    assert!(rl.peer_event(&id_h, "closed").is_some());

    honest.stop();
    liar.stop();
}

#[wasm_bindgen_test]
async fn a_callback_that_throws_does_not_break_the_node() {
    let hub = new_hub();
    let a = start_node(&hub, false).await;
    let thrower = js_sys::Function::new_with_args("event", "throw new Error('subscriber bug')");
    let sub = a.on(thrower.unchecked_into()).unwrap();
    let ra = record(&a);
    let b = start_node(&hub, false).await;
    let id_b = b.id();
    wait_until("the link despite a throwing subscriber", 30_000.0, || {
        ra.peer_event(&id_b, "linked").is_some()
    })
    .await;
    a.off(sub);
    let err = a.on(JsValue::from(3).unchecked_into()).unwrap_err();
    assert_eq!(error_code(&err), "BAD_ARGUMENT");
    a.stop();
    b.stop();
}

#[wasm_bindgen_test]
async fn start_rejects_bad_urls_and_unreachable_bridges() {
    let err = match BrowserNode::start(JsValue::from_str("http://127.0.0.1:8080/ws"), None).await {
        Ok(_) => panic!("an http:// URL must be refused"),
        Err(e) => e,
    };
    assert_eq!(error_code(&err), "BAD_ARGUMENT");
    let message = err.dyn_ref::<js_sys::Error>().unwrap().message();
    assert!(String::from(message).contains("ws://"));

    let err = match BrowserNode::start(JsValue::from_str("not a url"), None).await {
        Ok(_) => panic!("garbage must be refused"),
        Err(e) => e,
    };
    assert_eq!(error_code(&err), "BAD_ARGUMENT");

    // Nothing listens there: the connection is refused at once.
    let err = match BrowserNode::start(JsValue::from_str("ws://127.0.0.1:59999/ws"), None).await {
        Ok(_) => panic!("nothing listens on that port"),
        Err(e) => e,
    };
    assert_eq!(error_code(&err), "NO_BRIDGE");
}

//! Real WebRTC in headless Chromium: two nodes in one page, introduced by an in-page rendezvous
//! (the bridge's sans-IO core) plugged in through the driver's `BridgeTransport` seam. Nothing
//! about WebRTC is mocked: each node makes real peer connections and data channels.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use js_sys::Array;
use onionmesh_browser::BrowserNode;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);
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

//! The content JS API on one node in real headless Chromium: publish a Blob, find it in the
//! library, read it back byte-identical (whole, across pieces, past the end), assemble it with
//! `Download.blob()`, remove it; the errors (bad arguments, unknown content, a full store,
//! a stopped node) come with their codes.
//!
//! The node's bridge is a transport that opens and then stays silent: the node never registers,
//! which publishing and reading do not need.
#![cfg(target_arch = "wasm32")]

mod common;

use common::{get_str, new_hub, record, sleep, start_node, wait_until, Recorder};
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use onionmesh_browser::{
    BridgeSink, BridgeTransport, BrowserNode, Download, NodeOptions, StoreChoice,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

struct Silent;

impl BridgeTransport for Silent {
    fn send(&mut self, _frame: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

async fn start(quota_bytes: u64) -> BrowserNode {
    let connect = |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
        spawn_local(async move { sink.opened() });
        Ok(Box::new(Silent))
    };
    let options = NodeOptions {
        store: StoreChoice {
            name: None,
            quota_bytes,
        },
        ..NodeOptions::default()
    };
    BrowserNode::start_with_transport(connect, "a silent test bridge", options)
        .await
        .expect("the node starts")
}

use common::get;

fn code(err: &JsValue) -> String {
    get(err, "code").as_string().unwrap_or_default()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

fn blob_of(bytes: &[u8], mime: &str) -> web_sys::Blob {
    let parts = Array::of1(&Uint8Array::from(bytes));
    let bag = web_sys::BlobPropertyBag::new();
    bag.set_type(mime);
    web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &bag).unwrap()
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

async fn read(node: &BrowserNode, h: &str, offset: f64, len: f64) -> Result<Vec<u8>, JsValue> {
    let v = settle(node.read_content(h.into(), offset.into(), len.into())).await?;
    Ok(v.unchecked_into::<Uint8Array>().to_vec())
}

#[wasm_bindgen_test]
async fn publish_library_read_blob_remove() {
    let node = start(64 << 20).await;
    let bytes = data(300_000); // 5 pieces of 64 KiB, the last one short
    let opts = Object::new();
    Reflect::set(&opts, &"name".into(), &"test.bin".into()).unwrap();
    let published = settle(node.publish(blob_of(&bytes, "application/x-test").into(), opts.into()))
        .await
        .expect("publish resolves");
    let h = get(&published, "hashName").as_string().unwrap();
    assert_eq!(h.len(), 40);
    let link = get(&published, "link").as_string().unwrap();
    assert!(link.ends_with(&format!("#{h}")), "{link}");
    assert_eq!(get(&published, "size").as_f64(), Some(300_000.0));
    assert_eq!(get(&published, "pieces").as_f64(), Some(5.0));

    // The library lists it whole, named and typed as published.
    let lib: Array = node.library().unwrap().unchecked_into();
    assert_eq!(lib.length(), 1);
    let e = lib.get(0);
    assert_eq!(get(&e, "hashName").as_string().as_deref(), Some(h.as_str()));
    assert_eq!(get(&e, "name").as_string().as_deref(), Some("test.bin"));
    assert_eq!(
        get(&e, "type").as_string().as_deref(),
        Some("application/x-test")
    );
    assert_eq!(get(&e, "bytesHave").as_f64(), Some(300_000.0));
    assert_eq!(get(&e, "complete").as_bool(), Some(true));
    assert_eq!(get(&e, "downloading").as_bool(), Some(false));

    // Reads: whole, across a piece boundary, clamped at the end, past the end.
    assert_eq!(read(&node, &h, 0.0, 300_000.0).await.unwrap(), bytes);
    assert_eq!(
        read(&node, &h, 65_530.0, 20.0).await.unwrap(),
        &bytes[65_530..65_550]
    );
    assert_eq!(
        read(&node, &h, 299_990.0, 1e6).await.unwrap(),
        &bytes[299_990..]
    );
    assert!(read(&node, &h, 400_000.0, 10.0).await.unwrap().is_empty());

    // A Download of held content: metadata, progress, blob.
    let dl: Download = node
        .download(link.clone().into())
        .expect("a link is accepted");
    assert_eq!(dl.hash_name(), h);
    let meta = dl.metadata().unwrap();
    assert_eq!(get(&meta, "pieceSize").as_f64(), Some(65_536.0));
    assert_eq!(
        get(&meta, "type").as_string().as_deref(),
        Some("application/x-test")
    );
    let progress = dl.progress().unwrap();
    assert_eq!(get(&progress, "complete").as_bool(), Some(true));
    assert_eq!(get(&progress, "bytes").as_f64(), Some(300_000.0));
    let blob: web_sys::Blob = settle(dl.blob()).await.unwrap().unchecked_into();
    assert_eq!(blob.type_(), "application/x-test");
    let back = settle(blob.array_buffer()).await.unwrap();
    assert_eq!(Uint8Array::new(&back).to_vec(), bytes);
    // Asking twice is the same download.
    assert_eq!(node.download(h.clone().into()).unwrap().hash_name(), h);

    // Errors, with codes.
    let unknown = "ab".repeat(20);
    assert_eq!(
        code(&read(&node, &unknown, 0.0, 1.0).await.unwrap_err()),
        "NOT_FOUND"
    );
    assert_eq!(
        code(&read(&node, "nope", 0.0, 1.0).await.unwrap_err()),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        code(&read(&node, &h, -1.0, 1.0).await.unwrap_err()),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        code(&node.download("x#123".into()).err().unwrap()),
        "BAD_ARGUMENT"
    );
    let err = settle(node.publish("not a file".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BAD_ARGUMENT");
    assert_eq!(
        code(&settle(dl_of(&node, &unknown).blob()).await.unwrap_err()),
        "NOT_COMPLETE"
    );

    // Remove: gone from the library, reads fail.
    settle(node.remove(h.clone().into()))
        .await
        .expect("remove resolves");
    let lib: Array = node.library().unwrap().unchecked_into();
    assert_eq!(lib.length(), 0);
    assert_eq!(
        code(&read(&node, &h, 0.0, 1.0).await.unwrap_err()),
        "NOT_FOUND"
    );
    assert_eq!(code(&settle(dl.blob()).await.unwrap_err()), "NOT_COMPLETE");

    // A stopped node.
    node.stop();
    assert_eq!(
        code(&read(&node, &h, 0.0, 1.0).await.unwrap_err()),
        "STOPPED"
    );
    assert_eq!(code(&node.library().err().unwrap()), "STOPPED");
}

/// A `Download` handle for `h` whatever the download's state (a download that failed at once
/// for want of peers still gives one).
fn dl_of(node: &BrowserNode, h: &str) -> Download {
    node.download(h.into())
        .expect("download() accepts a hashName")
}

#[wasm_bindgen_test]
async fn a_full_store_rejects_publish_with_quota_full() {
    let node = start(100_000).await;
    let err = settle(node.publish(blob_of(&data(300_000), "").into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "QUOTA_FULL", "{err:?}");
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("100000"), "{message}");
    // What fitted stays readable.
    let lib: Array = node.library().unwrap().unchecked_into();
    assert_eq!(lib.length(), 1);
    let h = get(&lib.get(0), "hashName").as_string().unwrap();
    assert_eq!(read(&node, &h, 0.0, 10.0).await.unwrap(), &data(10)[..]);
    node.stop();
}

#[wasm_bindgen_test]
async fn stream_to_without_a_service_worker_option_says_so() {
    let connect = |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
        spawn_local(async move { sink.opened() });
        Ok(Box::new(Silent))
    };
    let options = NodeOptions {
        service_worker: None,
        ..NodeOptions::default()
    };
    let node = BrowserNode::start_with_transport(connect, "a silent test bridge", options)
        .await
        .unwrap();
    let published = settle(node.publish(
        blob_of(&data(1000), "video/webm").into(),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let h = get(&published, "hashName").as_string().unwrap();
    let dl = dl_of(&node, &h);
    let video = js_sys::Function::new_no_args("return document.createElement('video')")
        .call0(&JsValue::NULL)
        .unwrap();
    let err = settle(dl.stream_to(video)).await.unwrap_err();
    assert_eq!(code(&err), "BAD_ARGUMENT");
    let err = settle(dl.stream_to(JsValue::from(3))).await.unwrap_err();
    assert_eq!(code(&err), "BAD_ARGUMENT");
    node.stop();
}

// ----- two nodes of a mesh -------------------------------------------------------------------

fn linked_count(node: &BrowserNode) -> usize {
    let list: Array = node.peers().unwrap().unchecked_into();
    list.iter()
        .filter(|p| get(p, "state").as_string().as_deref() == Some("linked"))
        .count()
}

fn content_event(r: &Recorder, h: &str, event: &str) -> Option<JsValue> {
    r.events
        .borrow()
        .iter()
        .find(|e| {
            get_str(e, "type") == "content"
                && get_str(e, "hashName") == h
                && get_str(e, "event") == event
        })
        .cloned()
}

/// Five nodes in one page over real WebRTC, introduced by the in-page rendezvous: one publishes,
/// another downloads through 3-hop circuits to ORDBs (which find the publisher in the DHT), and
/// a read issued before the download completes waits for its pieces and gets the right bytes.
#[wasm_bindgen_test]
async fn a_content_published_on_one_node_downloads_on_another() {
    let hub = new_hub();
    let mut nodes = Vec::new();
    for _ in 0..5 {
        nodes.push(start_node(&hub, false).await);
    }
    wait_until("every node to link with 3 others", 60_000.0, || {
        nodes.iter().all(|n| linked_count(n) >= 3)
    })
    .await;
    // Let the DHT learn the mesh before announcing.
    sleep(2_000).await;
    let publisher = &nodes[0];
    let rp = record(publisher);
    let bytes = data(200_000);
    let published =
        settle(publisher.publish(blob_of(&bytes, "video/webm").into(), JsValue::UNDEFINED))
            .await
            .expect("publish resolves");
    let h = get(&published, "hashName").as_string().unwrap();
    wait_until("the DHT announcement", 60_000.0, || {
        rp.events.borrow().iter().any(|e| {
            get_str(e, "type") == "dht"
                && get_str(e, "event") == "published"
                && get_str(e, "key") == h
                && get(e, "code").is_undefined()
        })
    })
    .await;

    let downloader = &nodes[4];
    let rd = record(downloader);
    let dl = downloader
        .download(h.clone().into())
        .expect("download starts");
    // A read before anything arrived: it waits for the metadata and its pieces.
    let early = downloader.read_content(h.clone().into(), 150_000.into(), 1_000.into());
    wait_until("the download to finish", 120_000.0, || {
        content_event(&rd, &h, "done").is_some() || content_event(&rd, &h, "failed").is_some()
    })
    .await;
    if let Some(failed) = content_event(&rd, &h, "failed") {
        panic!("the download failed: {}", get_str(&failed, "reason"));
    }
    let early: Uint8Array = settle(early)
        .await
        .expect("the early read")
        .unchecked_into();
    assert_eq!(early.to_vec(), &bytes[150_000..151_000]);
    assert!(content_event(&rd, &h, "metadata").is_some());
    assert_eq!(read(downloader, &h, 0.0, 200_000.0).await.unwrap(), bytes);
    let blob: web_sys::Blob = settle(dl.blob()).await.unwrap().unchecked_into();
    assert_eq!(blob.type_(), "video/webm");
    let progress = dl.progress().unwrap();
    assert_eq!(get(&progress, "complete").as_bool(), Some(true));
    let lib: Array = downloader.library().unwrap().unchecked_into();
    assert_eq!(lib.length(), 1);
    assert_eq!(get(&lib.get(0), "complete").as_bool(), Some(true));

    // A node that asks right after it started, before it has any peer: the download waits for
    // peers instead of failing for want of an ORDB, then completes.
    let late = start_node(&hub, false).await;
    let rl = record(&late);
    let dl2 = late.download(h.clone().into()).expect("download starts");
    wait_until("the late node's download to finish", 120_000.0, || {
        content_event(&rl, &h, "done").is_some() || content_event(&rl, &h, "failed").is_some()
    })
    .await;
    if let Some(failed) = content_event(&rl, &h, "failed") {
        panic!("the late download failed: {}", get_str(&failed, "reason"));
    }
    let blob: web_sys::Blob = settle(dl2.blob()).await.unwrap().unchecked_into();
    let back = settle(blob.array_buffer()).await.unwrap();
    assert_eq!(Uint8Array::new(&back).to_vec(), bytes);
    late.stop();
    for n in &nodes {
        n.stop();
    }
}

/// A file of several read slices (4 MiB each) and a short last piece comes back byte-identical,
/// through `blob()` (4 MiB reads) and a read across the slice boundary.
#[wasm_bindgen_test]
async fn a_file_larger_than_one_slice_round_trips() {
    let node = start(64 << 20).await;
    let bytes = data((9 << 20) + 3);
    let published = settle(node.publish(blob_of(&bytes, "").into(), JsValue::UNDEFINED))
        .await
        .expect("publish resolves");
    assert_eq!(get(&published, "pieces").as_f64(), Some(145.0));
    let h = get(&published, "hashName").as_string().unwrap();
    let lib: Array = node.library().unwrap().unchecked_into();
    assert_eq!(
        get(&lib.get(0), "type").as_string().as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        get(&lib.get(0), "name").as_string().as_deref(),
        Some("file")
    );
    let around = (4 << 20) as f64 - 5.0;
    assert_eq!(
        read(&node, &h, around, 10.0).await.unwrap(),
        &bytes[(4 << 20) - 5..(4 << 20) + 5]
    );
    let blob: web_sys::Blob = settle(dl_of(&node, &h).blob())
        .await
        .unwrap()
        .unchecked_into();
    let back = settle(blob.array_buffer()).await.unwrap();
    assert!(Uint8Array::new(&back).to_vec() == bytes, "the blob differs");
    node.stop();
}

// ----- IndexedDB -----------------------------------------------------------------------------

fn db_name(what: &str) -> String {
    format!(
        "onionmesh-test-{what}-{}",
        (js_sys::Math::random() * 1e9) as u64
    )
}

async fn start_on(db: &str) -> BrowserNode {
    let connect = |sink: BridgeSink| -> Result<Box<dyn BridgeTransport>, JsValue> {
        spawn_local(async move { sink.opened() });
        Ok(Box::new(Silent))
    };
    let options = NodeOptions {
        store: StoreChoice {
            name: Some(db.to_owned()),
            quota_bytes: 64 << 20,
        },
        ..NodeOptions::default()
    };
    BrowserNode::start_with_transport(connect, "a silent test bridge", options)
        .await
        .expect("the node starts")
}

async fn library_len(node: &BrowserNode, want: u32) -> Array {
    wait_until("the store to be read", 10_000.0, || {
        node.library()
            .map(|l| l.unchecked_into::<Array>().length() == want)
            .unwrap_or(false)
    })
    .await;
    node.library().unwrap().unchecked_into()
}

/// What one page published is there for the next page on the same IndexedDB database: listed,
/// whole, readable.
#[wasm_bindgen_test]
async fn published_content_outlives_the_node_in_indexeddb() {
    let db = db_name("persist");
    let bytes = data(200_000);
    let h = {
        let a = start_on(&db).await;
        let p = settle(a.publish(blob_of(&bytes, "audio/ogg").into(), JsValue::UNDEFINED))
            .await
            .expect("publish resolves once stored in IndexedDB");
        a.stop();
        get(&p, "hashName").as_string().unwrap()
    };
    let b = start_on(&db).await;
    let lib = library_len(&b, 1).await;
    assert_eq!(
        get(&lib.get(0), "hashName").as_string().as_deref(),
        Some(h.as_str())
    );
    assert_eq!(get(&lib.get(0), "complete").as_bool(), Some(true));
    assert_eq!(read(&b, &h, 0.0, 200_000.0).await.unwrap(), bytes);
    settle(b.remove(h.clone().into())).await.unwrap();
    b.stop();
    let c = start_on(&db).await;
    sleep(300).await;
    assert_eq!(c.library().unwrap().unchecked_into::<Array>().length(), 0);
    c.stop();
}

/// A partial download found in IndexedDB at start: the page hears `resumable` (delivered after
/// start resolves), the library shows it partial, the held bytes read, and the node resumes it
/// by itself (here it has no peers, so it waits for them).
#[wasm_bindgen_test]
async fn a_partial_content_in_indexeddb_is_resumable_at_start() {
    use onionmesh_ordb::{publish_bytes, Store, StoreOpId, StoreRequest, DEFAULT_PIECE_SIZE};
    use rand_chacha::rand_core::SeedableRng;
    let db = db_name("partial");
    let bytes = data(300_000);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let (p, records) = publish_bytes(
        &mut rng,
        &bytes,
        "video/webm",
        "part.webm",
        DEFAULT_PIECE_SIZE,
    )
    .unwrap();
    let d = p.descriptor();
    let h = d.hash_name();
    {
        let mut store = onionmesh_browser::idb::open(&db, 64 << 20, std::rc::Rc::new(|| {}))
            .await
            .expect("IndexedDB opens");
        store.submit(
            StoreOpId(1),
            StoreRequest::PutDescriptor {
                hash_name: h,
                kind: d.kind(),
                descriptor: d.encoded().to_vec(),
                source: None,
            },
        );
        for i in [0u32, 1] {
            store.submit(
                StoreOpId(2 + u64::from(i)),
                StoreRequest::PutPiece {
                    hash_name: h,
                    index: i,
                    record: records[i as usize].clone(),
                },
            );
        }
        let mut done = 0;
        while done < 3 {
            match store.poll_completion() {
                Some(c) => {
                    assert!(c.result.is_ok(), "{c:?}");
                    done += 1;
                }
                None => sleep(10).await,
            }
        }
    }
    let node = start_on(&db).await;
    let r = record(&node);
    let hex = h.to_hex();
    wait_until("the resumable event", 10_000.0, || {
        content_event(&r, &hex, "resumable").is_some()
    })
    .await;
    let ev = content_event(&r, &hex, "resumable").unwrap();
    assert_eq!(get(&ev, "piecesHave").as_f64(), Some(2.0));
    assert_eq!(get(&ev, "pieces").as_f64(), Some(5.0));
    let lib = library_len(&node, 1).await;
    assert_eq!(get(&lib.get(0), "complete").as_bool(), Some(false));
    assert_eq!(get(&lib.get(0), "bytesHave").as_f64(), Some(131_072.0));
    assert_eq!(
        read(&node, &hex, 100_000.0, 20_000.0).await.unwrap(),
        &bytes[100_000..120_000]
    );
    // Waiting for peers to resume: a read of missing bytes waits instead of failing.
    let waiting = node.read_content(hex.clone().into(), 200_000.into(), 10.into());
    sleep(200).await;
    let dl = node.download(hex.clone().into()).unwrap();
    assert_eq!(code(&settle(dl.blob()).await.unwrap_err()), "NOT_COMPLETE");
    node.stop();
    assert_eq!(code(&settle(waiting).await.unwrap_err()), "STOPPED");
}

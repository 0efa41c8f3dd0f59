//! The IndexedDB content store in real Chromium: what goes in comes back byte-identical, pieces
//! need their descriptor, the store survives reopening, a full quota refuses without losing
//! anything, deletes remove content and pieces, and concurrent requests complete by id. Each
//! test uses a database name of its own.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

use onionmesh_browser::idb::{open, IdbStore, IDB_MAX_PENDING};
use onionmesh_ordb::{
    HashName, PieceRecord, Store, StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest,
};
use onionmesh_wire::db::DescriptorKind;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Set by the store's `wake`, taken by the test.
#[derive(Default)]
struct Bell {
    rung: bool,
    waker: Option<Waker>,
}

struct Harness {
    store: IdbStore,
    bell: Rc<RefCell<Bell>>,
    next_id: u64,
}

impl Harness {
    async fn open(db_name: &str, quota: u64) -> Harness {
        let bell = Rc::new(RefCell::new(Bell::default()));
        let b = bell.clone();
        let wake = Rc::new(move || {
            let mut b = b.borrow_mut();
            b.rung = true;
            if let Some(w) = b.waker.take() {
                w.wake();
            }
        });
        let store = open(db_name, quota, wake).await.expect("the store opens");
        Harness {
            store,
            bell,
            next_id: 0,
        }
    }

    fn submit(&mut self, request: StoreRequest) -> StoreOpId {
        self.next_id += 1;
        let id = StoreOpId(self.next_id);
        self.store.submit(id, request);
        id
    }

    /// The next completion, waiting for `wake` if none is ready.
    async fn next(&mut self) -> StoreCompletion {
        loop {
            if let Some(c) = self.store.poll_completion() {
                return c;
            }
            let bell = self.bell.clone();
            std::future::poll_fn(move |cx| {
                let mut b = bell.borrow_mut();
                if b.rung {
                    b.rung = false;
                    Poll::Ready(())
                } else {
                    b.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Submits one request and waits for its completion.
    async fn run(&mut self, request: StoreRequest) -> Result<StoreReply, StoreError> {
        let id = self.submit(request);
        let c = self.next().await;
        assert_eq!(c.id, id, "one request in flight completes as itself");
        c.result
    }

    async fn list(&mut self) -> Vec<onionmesh_ordb::StoredContent> {
        match self.run(StoreRequest::List).await {
            Ok(StoreReply::List(l)) => l,
            other => panic!("list: {other:?}"),
        }
    }

    async fn piece(&mut self, hash_name: HashName, index: u32) -> Option<PieceRecord> {
        match self.run(StoreRequest::GetPiece { hash_name, index }).await {
            Ok(StoreReply::Piece(p)) => p,
            other => panic!("get piece: {other:?}"),
        }
    }
}

fn db_name(test: &str) -> String {
    format!(
        "onionmesh-test-{test}-{}",
        (js_sys::Math::random() * 1e15) as u64
    )
}

fn desc(hash_name: HashName, len: usize) -> StoreRequest {
    StoreRequest::PutDescriptor {
        hash_name,
        kind: DescriptorKind::ONIONMESH_V1,
        descriptor: (0..len).map(|i| (i * 7 + 3) as u8).collect(),
        source: None,
    }
}

/// A piece of `len` bytes (a pattern that differs per `seed`) with `hashes` proof hashes.
fn rec(seed: u8, len: usize, hashes: usize) -> PieceRecord {
    PieceRecord {
        bytes: (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect(),
        proof: (0..hashes)
            .map(|h| [seed.wrapping_add(h as u8); 32])
            .collect(),
    }
}

fn put(hash_name: HashName, index: u32, record: PieceRecord) -> StoreRequest {
    StoreRequest::PutPiece {
        hash_name,
        index,
        record,
    }
}

#[wasm_bindgen_test]
async fn pieces_come_back_byte_identical() {
    let mut h = Harness::open(&db_name("identical"), 10 << 20).await;
    let name = HashName([0xab; 20]);
    let records = [
        rec(1, 65536, 3),
        rec(2, 16384, 0),
        rec(3, 1, 1),
        rec(4, 40000, 17),
    ];
    // Submitted back to back without waiting: the pieces still see their descriptor, because
    // transactions start in submit order.
    let mut ids = vec![h.submit(desc(name, 300))];
    for (i, r) in records.iter().enumerate() {
        ids.push(h.submit(put(name, i as u32, r.clone())));
    }
    let mut seen = Vec::new();
    for _ in 0..ids.len() {
        let c = h.next().await;
        assert_eq!(c.result, Ok(StoreReply::Stored), "{:?}", c.id);
        seen.push(c.id);
    }
    seen.sort();
    assert_eq!(seen, ids);

    for (i, r) in records.iter().enumerate() {
        assert_eq!(h.piece(name, i as u32).await.as_ref(), Some(r), "piece {i}");
    }
    assert_eq!(h.piece(name, 4).await, None);
    assert_eq!(h.piece(HashName([1; 20]), 0).await, None);
    let StoreRequest::PutDescriptor { descriptor, .. } = desc(name, 300) else {
        unreachable!()
    };
    assert_eq!(
        h.run(StoreRequest::GetDescriptor { hash_name: name }).await,
        Ok(StoreReply::Descriptor(Some((
            DescriptorKind::ONIONMESH_V1,
            descriptor
        ))))
    );
    assert_eq!(
        h.run(StoreRequest::GetDescriptor {
            hash_name: HashName([1; 20])
        })
        .await,
        Ok(StoreReply::Descriptor(None))
    );
    let stored: u64 = 300 + records.iter().map(PieceRecord::stored_len).sum::<u64>();
    assert_eq!(h.store.stored_bytes(), stored);
}

#[wasm_bindgen_test]
async fn a_piece_needs_its_descriptor() {
    let mut h = Harness::open(&db_name("unknown"), 1 << 20).await;
    let name = HashName([7; 20]);
    assert_eq!(
        h.run(put(name, 0, rec(1, 100, 1))).await,
        Err(StoreError::UnknownContent(name))
    );
    assert!(h.list().await.is_empty());
    assert_eq!(h.store.stored_bytes(), 0);
    assert_eq!(h.run(desc(name, 50)).await, Ok(StoreReply::Stored));
    assert_eq!(
        h.run(put(name, 0, rec(1, 100, 1))).await,
        Ok(StoreReply::Stored)
    );
    // Putting the descriptor again changes nothing (MemStore's rule).
    assert_eq!(h.run(desc(name, 999)).await, Ok(StoreReply::Stored));
    assert_eq!(h.store.stored_bytes(), 50 + 132);
}

#[wasm_bindgen_test]
async fn the_store_survives_reopening() {
    let db = db_name("reopen");
    let a = HashName([0x10; 20]);
    let b = HashName([0x01; 20]);
    // b came from outside the mesh: its magnet link is kept for resuming it.
    let uri = "magnet:?xt=urn:btih:0101010101010101010101010101010101010101&tr=http://t/a";
    let source = onionmesh_wire::db::DbSource {
        hash_name: b,
        kind: onionmesh_wire::db::SourceKind::MAGNET,
        uri: uri.try_into().unwrap(),
    };
    {
        let mut h = Harness::open(&db, 1 << 20).await;
        assert_eq!(h.run(desc(a, 200)).await, Ok(StoreReply::Stored));
        let mut with_source = desc(b, 80);
        if let StoreRequest::PutDescriptor { source: s, .. } = &mut with_source {
            *s = Some(source.clone());
        }
        assert_eq!(h.run(with_source).await, Ok(StoreReply::Stored));
        for i in [5u32, 0, 2] {
            assert_eq!(
                h.run(put(a, i, rec(i as u8, 1000 + i as usize, 2))).await,
                Ok(StoreReply::Stored)
            );
        }
        // Replacing a piece by a smaller one frees the difference.
        assert_eq!(
            h.run(put(a, 2, rec(9, 500, 2))).await,
            Ok(StoreReply::Stored)
        );
        assert_eq!(
            h.run(put(b, 7, rec(3, 10, 0))).await,
            Ok(StoreReply::Stored)
        );
    } // dropped: the connection closes
    let a_bytes = 200 + (1005 + 64) + (1000 + 64) + (500 + 64);
    let mut h = Harness::open(&db, 1 << 20).await;
    let b_bytes = 80 + uri.len() as u64 + 10;
    assert_eq!(h.store.stored_bytes(), a_bytes + b_bytes);
    let list = h.list().await;
    assert_eq!(list.len(), 2);
    // Listed in hash_name order, like MemStore.
    assert_eq!(list[0].hash_name, b);
    assert_eq!(list[0].pieces, vec![7]);
    assert_eq!(list[0].stored_bytes, b_bytes);
    // The source outlived a piece's write (which rewrites the record) and the reopening.
    assert_eq!(list[0].source, Some(source));
    assert_eq!(list[1].source, None);
    assert_eq!(list[1].hash_name, a);
    assert_eq!(list[1].kind, DescriptorKind::ONIONMESH_V1);
    assert_eq!(list[1].descriptor.len(), 200);
    assert_eq!(list[1].pieces, vec![0, 2, 5]);
    assert_eq!(list[1].stored_bytes, a_bytes);
    assert_eq!(h.piece(a, 2).await, Some(rec(9, 500, 2)));
}

#[wasm_bindgen_test]
async fn a_full_quota_refuses_and_loses_nothing() {
    let db = db_name("quota");
    let name = HashName([3; 20]);
    {
        let mut h = Harness::open(&db, 1000).await;
        assert_eq!(h.run(desc(name, 100)).await, Ok(StoreReply::Stored));
        for i in 0..2 {
            assert_eq!(
                h.run(put(name, i, rec(i as u8, 368, 1))).await,
                Ok(StoreReply::Stored)
            );
        }
        let full = StoreError::QuotaFull {
            stored_bytes: 900,
            quota_bytes: 1000,
            needed_bytes: 400,
        };
        let err = h.run(put(name, 2, rec(2, 368, 1))).await.unwrap_err();
        assert_eq!(err, full);
        assert!(err.to_string().contains("900 of 1000 bytes"), "{err}");
        // Nothing was lost, nothing was half-written.
        assert_eq!(h.piece(name, 0).await, Some(rec(0, 368, 1)));
        assert_eq!(h.piece(name, 1).await, Some(rec(1, 368, 1)));
        assert_eq!(h.piece(name, 2).await, None);
        assert_eq!(h.list().await[0].pieces, vec![0, 1]);
        assert_eq!(h.store.stored_bytes(), 900);
        // Replacing a piece by one of the same size fits; a new content of 101 bytes does
        // not, one of 100 bytes does (exactly full).
        assert_eq!(
            h.run(put(name, 1, rec(5, 368, 1))).await,
            Ok(StoreReply::Stored)
        );
        assert!(matches!(
            h.run(desc(HashName([4; 20]), 101)).await,
            Err(StoreError::QuotaFull {
                needed_bytes: 101,
                ..
            })
        ));
        assert_eq!(
            h.run(desc(HashName([4; 20]), 100)).await,
            Ok(StoreReply::Stored)
        );
        assert_eq!(h.store.stored_bytes(), 1000);
    }
    // The running total is read back at open: still full.
    let mut h = Harness::open(&db, 1000).await;
    assert_eq!(h.store.stored_bytes(), 1000);
    assert!(matches!(
        h.run(put(name, 2, rec(2, 1, 0))).await,
        Err(StoreError::QuotaFull {
            stored_bytes: 1000,
            quota_bytes: 1000,
            needed_bytes: 1
        })
    ));
    assert_eq!(h.piece(name, 1).await, Some(rec(5, 368, 1)));
}

#[wasm_bindgen_test]
async fn delete_removes_a_content_and_its_pieces_only() {
    let db = db_name("delete");
    let gone = HashName([0x22; 20]);
    // Sorts right after `gone`: a key range that overshot would reach its pieces.
    let kept = HashName({
        let mut k = [0x22; 20];
        k[19] = 0x23;
        k
    });
    let mut h = Harness::open(&db, 1 << 20).await;
    for n in [gone, kept] {
        assert_eq!(h.run(desc(n, 64)).await, Ok(StoreReply::Stored));
        for i in [0u32, 1, u32::MAX] {
            assert_eq!(
                h.run(put(n, i, rec(i as u8, 100, 1))).await,
                Ok(StoreReply::Stored)
            );
        }
    }
    assert_eq!(h.store.stored_bytes(), 2 * (64 + 3 * 132));
    assert_eq!(
        h.run(StoreRequest::Delete { hash_name: gone }).await,
        Ok(StoreReply::Deleted)
    );
    assert_eq!(h.store.stored_bytes(), 64 + 3 * 132);
    assert_eq!(
        h.run(StoreRequest::GetDescriptor { hash_name: gone }).await,
        Ok(StoreReply::Descriptor(None))
    );
    for i in [0u32, 1, u32::MAX] {
        assert_eq!(h.piece(gone, i).await, None);
        assert_eq!(h.piece(kept, i).await, Some(rec(i as u8, 100, 1)));
    }
    assert_eq!(
        h.run(put(gone, 0, rec(0, 100, 1))).await,
        Err(StoreError::UnknownContent(gone))
    );
    // Deleting what is not there is fine (MemStore's rule).
    assert_eq!(
        h.run(StoreRequest::Delete { hash_name: gone }).await,
        Ok(StoreReply::Deleted)
    );
    drop(h);
    let mut h = Harness::open(&db, 1 << 20).await;
    assert_eq!(h.store.stored_bytes(), 64 + 3 * 132);
    let list = h.list().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].hash_name, kept);
    assert_eq!(list[0].pieces, vec![0, 1, u32::MAX]);
}

#[wasm_bindgen_test]
async fn concurrent_requests_complete_by_id() {
    let mut h = Harness::open(&db_name("concurrent"), 64 << 20).await;
    let name = HashName([9; 20]);
    // One descriptor, then writes and reads interleaved, all submitted in one go.
    let mut expect: BTreeMap<StoreOpId, Result<StoreReply, StoreError>> = BTreeMap::new();
    expect.insert(h.submit(desc(name, 128)), Ok(StoreReply::Stored));
    for i in 0..30u32 {
        let r = rec(i as u8, 20_000 + i as usize, 4);
        expect.insert(h.submit(put(name, i, r.clone())), Ok(StoreReply::Stored));
        // Issued after the write: sees it.
        expect.insert(
            h.submit(StoreRequest::GetPiece {
                hash_name: name,
                index: i,
            }),
            Ok(StoreReply::Piece(Some(r))),
        );
    }
    assert!(expect.len() < IDB_MAX_PENDING);
    let mut got = BTreeMap::new();
    while got.len() < expect.len() {
        let c = h.next().await;
        assert!(got.insert(c.id, c.result).is_none(), "{:?} twice", c.id);
    }
    assert_eq!(got, expect);
    let list = h.list().await;
    assert_eq!(list[0].pieces, (0..30).collect::<Vec<_>>());

    // Past the bound, requests are refused at once with Busy; the others still complete.
    let ids: Vec<StoreOpId> = (0..IDB_MAX_PENDING + 10)
        .map(|_| h.submit(StoreRequest::List))
        .collect();
    let mut busy = 0;
    let mut listed = 0;
    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let c = h.next().await;
        seen.push(c.id);
        match c.result {
            Err(StoreError::Busy(_)) => busy += 1,
            Ok(StoreReply::List(l)) => {
                assert_eq!(l.len(), 1);
                listed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!((listed, busy), (IDB_MAX_PENDING, 10));
}

/// Writes `value` under `key` in `store` of database `db_name`, behind the store's back.
async fn write_raw(db_name: &str, store: &str, key: JsValue, value: JsValue) {
    let factory = idb::Factory::new().unwrap();
    let db = factory.open(db_name, Some(1)).unwrap().await.unwrap();
    let tx = db
        .transaction(&[store], idb::TransactionMode::ReadWrite)
        .unwrap();
    tx.object_store(store)
        .unwrap()
        .put(&value, Some(&key))
        .unwrap()
        .await
        .unwrap();
    assert!(tx.await.unwrap().is_committed());
    db.close();
}

#[wasm_bindgen_test]
async fn a_corrupt_record_is_an_error_sentence() {
    let db = db_name("corrupt");
    let name = HashName([0x5a; 20]);
    let mut h = Harness::open(&db, 1 << 20).await;
    assert_eq!(h.run(desc(name, 10)).await, Ok(StoreReply::Stored));
    assert_eq!(
        h.run(put(name, 0, rec(0, 10, 1))).await,
        Ok(StoreReply::Stored)
    );
    let piece_key: JsValue = js_sys::Array::of2(&name.to_hex().into(), &0.into()).into();
    // A proof that is not whole hashes.
    let bad = js_sys::Object::new();
    js_sys::Reflect::set(
        &bad,
        &"bytes".into(),
        &js_sys::Uint8Array::new_with_length(4),
    )
    .unwrap();
    js_sys::Reflect::set(
        &bad,
        &"proof".into(),
        &js_sys::Uint8Array::new_with_length(33),
    )
    .unwrap();
    write_raw(&db, "pieces", piece_key, bad.into()).await;
    let err = h
        .run(StoreRequest::GetPiece {
            hash_name: name,
            index: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(s) if s.contains("unreadable") && s.contains("32-byte")),
        "{err}"
    );
    // A content record that is not an object at all.
    write_raw(
        &db,
        "contents",
        name.to_hex().into(),
        JsValue::from_f64(7.0),
    )
    .await;
    for request in [
        StoreRequest::List,
        StoreRequest::GetDescriptor { hash_name: name },
    ] {
        let err = h.run(request).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend(s) if s.contains(&name.to_hex())),
            "{err}"
        );
    }
    // Deleting it is the way out, and the store goes on.
    assert_eq!(
        h.run(StoreRequest::Delete { hash_name: name }).await,
        Ok(StoreReply::Deleted)
    );
    assert!(h.list().await.is_empty());
}

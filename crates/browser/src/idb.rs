//! The page's content store: [`onionmesh_ordb::Store`] over IndexedDB, so descriptors and
//! pieces outlive the page that fetched or published them.
//!
//! [`open`] opens (or creates) the database and reads how many bytes it holds; [`IdbStore`] then
//! carries out each [`StoreRequest`] as exactly one IndexedDB transaction and hands back its
//! [`StoreCompletion`] through [`Store::poll_completion`], calling the `wake` callback given to
//! [`open`] when one is ready. The semantics are [`onionmesh_ordb::MemStore`]'s, request for
//! request: pieces only after their content's descriptor, one byte quota over descriptors,
//! pieces and proofs, [`StoreError::QuotaFull`] refusing a write before anything is written.
//!
//! ## Schema (database version [`DB_VERSION`] = 1)
//!
//! - object store `contents`; key: the hash_name in lower-case hex (40 characters); value:
//!   `{ kind: number (u8), descriptor: Uint8Array, storedBytes: number, pieces: number }`, where
//!   `storedBytes` counts the descriptor plus every held piece's bytes and proof (32 bytes a hash,
//!   [`PieceRecord::stored_len`]) and `pieces` is how many pieces are held;
//! - object store `pieces`; key: `[hash_name hex, index]`. Array keys order by their first
//!   element, then numerically by the second, so one content's pieces are the key range
//!   `[hex, 0] ..= [hex, 2^32 - 1]`, in index order. Value: `{ bytes: Uint8Array, proof:
//!   Uint8Array }`, the proof's 32-byte hashes concatenated, leaf to root.
//!
//! Records are read back defensively: a record of the wrong shape is a [`StoreError::Backend`]
//! sentence naming it, never a panic.
//!
//! ## Transactions and order
//!
//! IndexedDB commits a transaction at the first event-loop turn with no request pending, so
//! inside one this module awaits only that transaction's own requests and its completion: no
//! timers, no other futures, no JS promises. A piece and its content's new byte count are written
//! in the same readwrite transaction, so they commit (or roll back) together.
//!
//! `submit` creates the request's transaction and places its first requests synchronously,
//! before it returns; the spawned future only awaits them and places the follow-ups from their
//! success callbacks. IndexedDB starts readwrite transactions whose scopes overlap in the order
//! they were created, and a readonly one after every readwrite one created before it on an
//! overlapping scope; every write scope includes `contents`. So requests take effect in `submit`
//! order: a `PutPiece` submitted after its `PutDescriptor` sees the descriptor, and a `GetPiece`
//! submitted after a `PutPiece` sees the piece, even though completions may arrive in any order.
//!
//! ## Why `idb` and not `rexie`
//!
//! rexie 0.6 is a thin layer over the same author's `idb` crate, and hides three things this
//! store needs: its request methods are `async fn`s, so nothing is placed until the spawned
//! future first runs (we place the first requests in `submit`); `Transaction::done()` reports an
//! abort without `IDBTransaction.error`, so a `QuotaExceededError` raised at commit could not be
//! told from any other abort; and `Rexie` does not give out its `idb::Database`, so the two
//! cannot be mixed on one connection. `idb` (without its `builder` feature) gives all three.
//!
//! ## Quota
//!
//! [`open`] sums `storedBytes` over `contents` once; the store keeps that running total and
//! checks every write against it before writing, reserving the bytes until the transaction
//! commits (or releasing them when it aborts). A real `QuotaExceededError` from the browser
//! (its own storage quota) is reported as [`StoreError::QuotaFull`] too; the transaction is then
//! rolled back, so nothing stored before is lost.

use onionmesh_bounded::FlatMap;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use ::idb::{
    Database, DatabaseEvent, Factory, KeyRange, ObjectStore, ObjectStoreParams, TransactionFuture,
    TransactionMode, TransactionResult,
};
use js_sys::{Array, Object, Reflect, Uint8Array};
use onionmesh_ordb::{
    record_len, HashName, PieceRecord, Store, StoreCompletion, StoreError, StoreOpId, StoreReply,
    StoreRequest, StoredContent,
};
use onionmesh_wire::db::{DbSource, DescriptorKind, SourceKind};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{DomException, IdbTransaction};

/// The IndexedDB schema version [`open`] asks for; version 1 creates the two object stores.
pub const DB_VERSION: u32 = 1;

/// Most requests an [`IdbStore`] holds at once, running or finished but not yet polled; past
/// it, `submit` answers [`StoreError::Busy`].
pub const IDB_MAX_PENDING: usize = 64;

/// Most completions queued for the caller. Only `Busy` answers can push the queue past
/// [`IDB_MAX_PENDING`]; past this bound they are dropped (as [`onionmesh_ordb::MemStore`] does),
/// since a caller that submits without polling would otherwise grow it forever.
const MAX_QUEUED: usize = 2 * IDB_MAX_PENDING;

const CONTENTS: &str = "contents";
const PIECES: &str = "pieces";

/// 2^53: integers up to it are exact in a JS number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

type OpResult = Result<StoreReply, StoreError>;
type Op = Pin<Box<dyn Future<Output = OpResult>>>;

/// The content store of a page, in IndexedDB. See the module docs for the schema and the
/// ordering guarantee. Dropping it closes the database connection once the transactions in
/// flight have finished; their completions are then discarded.
pub struct IdbStore {
    db: Database,
    shared: Rc<RefCell<Shared>>,
}

/// What the store and its running requests share (single-threaded; never borrowed across an
/// `await` or while `wake` runs).
struct Shared {
    quota: u64,
    /// Bytes committed, as counted in the `contents` records.
    stored: u64,
    /// Bytes reserved by write transactions that have not committed yet.
    reserved: u64,
    /// Requests submitted whose transaction has not finished.
    running: usize,
    done: VecDeque<StoreCompletion>,
    /// A deferred `wake` is already scheduled for completions queued by `submit` itself.
    wake_scheduled: bool,
    wake: Rc<dyn Fn()>,
}

impl Shared {
    fn quota_full(&self, needed_bytes: u64) -> StoreError {
        StoreError::QuotaFull {
            stored_bytes: self.stored.saturating_add(self.reserved),
            quota_bytes: self.quota,
            needed_bytes,
        }
    }
}

/// Opens (creating it at version [`DB_VERSION`] if needed) the IndexedDB database `db_name` as a
/// content store holding at most `quota_bytes` of descriptors, pieces and proofs, and reads the
/// bytes already stored (one pass over `contents`).
///
/// `wake` is called each time a completion is ready to be taken with
/// [`Store::poll_completion`]; always from a microtask of its own, never from inside `submit`,
/// so it may borrow whatever the caller holds while submitting.
///
/// Errors: [`StoreError::Backend`] with a sentence when IndexedDB is unavailable (a private
/// window may refuse it), the database cannot be opened or upgraded, or it lacks the object
/// stores. Records that cannot be read are counted as 0 bytes here (and reported when read).
pub async fn open(
    db_name: &str,
    quota_bytes: u64,
    wake: Rc<dyn Fn()>,
) -> Result<IdbStore, StoreError> {
    let factory = Factory::new().map_err(|e| backend("be reached in this page", e.into()))?;
    let mut request = factory
        .open(db_name, Some(DB_VERSION))
        .map_err(|e| backend("open the content database", e.into()))?;
    request.on_upgrade_needed(|event| {
        // Version 0 (no database) -> 1: the two object stores, with keys given on each put.
        // A failure here leaves a store missing, which the check below reports.
        if let Ok(db) = event.database() {
            let names = db.store_names();
            for name in [CONTENTS, PIECES] {
                if !names.iter().any(|n| n == name) {
                    let _ = db.create_object_store(name, ObjectStoreParams::new());
                }
            }
        }
    });
    let db = request
        .into_future()
        .await
        .map_err(|e| backend("open the content database", e.into()))?;
    let names = db.store_names();
    for name in [CONTENTS, PIECES] {
        if !names.iter().any(|n| n == name) {
            db.close();
            return Err(StoreError::Backend(format!(
                "the IndexedDB database {db_name:?} has no object store {name:?}; it was made by \
                 something else: use another database name"
            )));
        }
    }
    let stored = read_stored_total(&db).await.inspect_err(|_| db.close())?;
    Ok(IdbStore {
        db,
        shared: Rc::new(RefCell::new(Shared {
            quota: quota_bytes,
            stored,
            reserved: 0,
            running: 0,
            done: VecDeque::new(),
            wake_scheduled: false,
            wake,
        })),
    })
}

/// The sum of `storedBytes` over `contents` (unreadable records count 0).
async fn read_stored_total(db: &Database) -> Result<u64, StoreError> {
    let tx = db
        .transaction(&[CONTENTS], TransactionMode::ReadOnly)
        .map_err(|e| backend("read the content database", e.into()))?;
    let contents = object_store(&tx, CONTENTS)?;
    let values = issue(contents.get_all(None, None), "read the stored contents")?
        .await
        .map_err(|e| backend("read the stored contents", e.into()))?;
    Ok(values
        .iter()
        .filter_map(|v| field_u64(v, "storedBytes"))
        .fold(0u64, u64::saturating_add))
}

impl IdbStore {
    /// Bytes stored (descriptors, pieces and proofs), as of the last committed write.
    pub fn stored_bytes(&self) -> u64 {
        self.shared.borrow().stored
    }

    /// The byte quota given to [`open`].
    pub fn quota_bytes(&self) -> u64 {
        self.shared.borrow().quota
    }

    /// Queues a completion decided in `submit` itself and wakes the caller from a microtask.
    fn finish_soon(&self, id: StoreOpId, result: OpResult) {
        let mut s = self.shared.borrow_mut();
        if s.done.len() >= MAX_QUEUED {
            return;
        }
        s.done.push_back(StoreCompletion { id, result });
        if !s.wake_scheduled {
            s.wake_scheduled = true;
            let weak = Rc::downgrade(&self.shared);
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(shared) = weak.upgrade() {
                    let wake = {
                        let mut s = shared.borrow_mut();
                        s.wake_scheduled = false;
                        s.wake.clone()
                    };
                    wake();
                }
            });
        }
    }

    /// Creates the transaction and places the first requests (synchronously), returning the
    /// future that finishes the operation.
    fn start(&self, request: StoreRequest) -> Result<Op, StoreError> {
        let shared = Rc::downgrade(&self.shared);
        match request {
            StoreRequest::PutDescriptor {
                hash_name,
                kind,
                descriptor,
                source,
            } => self.put_descriptor(shared, hash_name, kind, descriptor, source),
            StoreRequest::PutPiece {
                hash_name,
                index,
                record,
            } => self.put_piece(shared, hash_name, index, record),
            StoreRequest::GetPiece { hash_name, index } => self.get_piece(hash_name, index),
            StoreRequest::GetDescriptor { hash_name } => self.get_descriptor(hash_name),
            StoreRequest::List => self.list(),
            StoreRequest::Delete { hash_name } => self.delete(shared, hash_name),
        }
    }

    fn put_descriptor(
        &self,
        shared: Weak<RefCell<Shared>>,
        hash_name: HashName,
        kind: DescriptorKind,
        descriptor: Vec<u8>,
        source: Option<DbSource>,
    ) -> Result<Op, StoreError> {
        const DOING: &str = "store a content's description";
        let tx = WriteTx::open(&self.db, &[CONTENTS])?;
        let contents = tx.store(CONTENTS)?;
        let key = content_key(&hash_name);
        let exists = issue(contents.get_key(key.clone()), DOING)?;
        Ok(Box::pin(async move {
            if exists
                .await
                .map_err(|e| backend(DOING, e.into()))?
                .is_some()
            {
                // Kept as it is, like MemStore: a descriptor never changes under its hash_name.
                return Ok(StoreReply::Stored);
            }
            let need = record_len(&descriptor, source.as_ref());
            let reservation = Reservation::take(&shared, need)?;
            let record = ContentRecord {
                kind,
                descriptor,
                source,
                stored_bytes: need,
                pieces: 0,
            };
            issue(contents.put(&record.to_js(), Some(&key)), DOING)?
                .await
                .map_err(|e| write_failed(&shared, need, DOING, e.into()))?;
            tx.commit()
                .await
                .map_err(|e| write_failed(&shared, need, DOING, e))?;
            reservation.commit(need, 0);
            Ok(StoreReply::Stored)
        }))
    }

    fn put_piece(
        &self,
        shared: Weak<RefCell<Shared>>,
        hash_name: HashName,
        index: u32,
        record: PieceRecord,
    ) -> Result<Op, StoreError> {
        const DOING: &str = "store a piece";
        let tx = WriteTx::open(&self.db, &[CONTENTS, PIECES])?;
        let contents = tx.store(CONTENTS)?;
        let pieces = tx.store(PIECES)?;
        let key = content_key(&hash_name);
        let piece_key = piece_key(&hash_name, index);
        let content = issue(contents.get(key.clone()), DOING)?;
        let old_key = issue(pieces.get_key(piece_key.clone()), DOING)?;
        Ok(Box::pin(async move {
            let content = content.await.map_err(|e| backend(DOING, e.into()))?;
            let had_piece = old_key
                .await
                .map_err(|e| backend(DOING, e.into()))?
                .is_some();
            let Some(content) = content else {
                return Err(StoreError::UnknownContent(hash_name));
            };
            let mut content = ContentRecord::from_js(&hash_name, &content)?;
            // Replacing a piece costs only what it grows by (MemStore counts the same way). An
            // unreadable old piece counts 0: it is being overwritten anyway.
            let old_len = if had_piece {
                issue(pieces.get(piece_key.clone()), DOING)?
                    .await
                    .map_err(|e| backend(DOING, e.into()))?
                    .and_then(|v| piece_from_js(&hash_name, index, &v).ok())
                    .map_or(0, |r| r.stored_len())
            } else {
                0
            };
            let new_len = record.stored_len();
            let need = new_len.saturating_sub(old_len);
            let reservation = Reservation::take(&shared, need)?;
            content.stored_bytes = content
                .stored_bytes
                .saturating_add(new_len)
                .saturating_sub(old_len);
            if !had_piece {
                content.pieces = content.pieces.saturating_add(1);
            }
            let put_piece = issue(pieces.put(&piece_to_js(&record), Some(&piece_key)), DOING)?;
            let put_content = issue(contents.put(&content.to_js(), Some(&key)), DOING)?;
            let piece_done = put_piece.await;
            let content_done = put_content.await;
            piece_done
                .and(content_done)
                .map_err(|e| write_failed(&shared, need, DOING, e.into()))?;
            tx.commit()
                .await
                .map_err(|e| write_failed(&shared, need, DOING, e))?;
            reservation.commit(new_len, old_len);
            Ok(StoreReply::Stored)
        }))
    }

    fn get_piece(&self, hash_name: HashName, index: u32) -> Result<Op, StoreError> {
        const DOING: &str = "read a piece";
        let tx = self
            .db
            .transaction(&[PIECES], TransactionMode::ReadOnly)
            .map_err(|e| backend(DOING, e.into()))?;
        let got = issue(
            object_store(&tx, PIECES)?.get(piece_key(&hash_name, index)),
            DOING,
        )?;
        Ok(Box::pin(async move {
            match got.await.map_err(|e| backend(DOING, e.into()))? {
                None => Ok(StoreReply::Piece(None)),
                Some(v) => Ok(StoreReply::Piece(Some(piece_from_js(
                    &hash_name, index, &v,
                )?))),
            }
        }))
    }

    fn get_descriptor(&self, hash_name: HashName) -> Result<Op, StoreError> {
        const DOING: &str = "read a content's description";
        let tx = self
            .db
            .transaction(&[CONTENTS], TransactionMode::ReadOnly)
            .map_err(|e| backend(DOING, e.into()))?;
        let got = issue(
            object_store(&tx, CONTENTS)?.get(content_key(&hash_name)),
            DOING,
        )?;
        Ok(Box::pin(async move {
            match got.await.map_err(|e| backend(DOING, e.into()))? {
                None => Ok(StoreReply::Descriptor(None)),
                Some(v) => {
                    let c = ContentRecord::from_js(&hash_name, &v)?;
                    Ok(StoreReply::Descriptor(Some((c.kind, c.descriptor))))
                }
            }
        }))
    }

    fn list(&self) -> Result<Op, StoreError> {
        const DOING: &str = "list the stored contents";
        let tx = self
            .db
            .transaction(&[CONTENTS, PIECES], TransactionMode::ReadOnly)
            .map_err(|e| backend(DOING, e.into()))?;
        let contents = object_store(&tx, CONTENTS)?;
        let pieces = object_store(&tx, PIECES)?;
        // Keys and values of `contents` come back in the same (key) order, from one snapshot;
        // of `pieces` only the keys, so no piece bytes are read.
        let keys = issue(contents.get_all_keys(None, None), DOING)?;
        let values = issue(contents.get_all(None, None), DOING)?;
        let piece_keys = issue(pieces.get_all_keys(None, None), DOING)?;
        Ok(Box::pin(async move {
            let keys = keys.await;
            let values = values.await;
            let piece_keys = piece_keys.await;
            let (keys, values, piece_keys) = match (keys, values, piece_keys) {
                (Ok(k), Ok(v), Ok(p)) => (k, v, p),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    return Err(backend(DOING, e.into()))
                }
            };
            if keys.len() != values.len() {
                return Err(StoreError::Backend(format!(
                    "IndexedDB returned {} content keys but {} records; try again",
                    keys.len(),
                    values.len()
                )));
            }
            let mut held: FlatMap<String, Vec<u32>> = FlatMap::new();
            for k in &piece_keys {
                let (hex, index) = piece_key_from_js(k).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "a stored piece has an unreadable key ({}); clear the site's data to \
                         reset the store",
                        describe(k)
                    ))
                })?;
                // Keys come sorted, so each list is in ascending index order.
                held.entry(hex).or_default().push(index);
            }
            let mut out = Vec::with_capacity(keys.len());
            for (k, v) in keys.iter().zip(&values) {
                let hash_name = k
                    .as_string()
                    .and_then(|s| HashName::from_hex(&s))
                    .filter(|h| Some(h.to_hex()) == k.as_string())
                    .ok_or_else(|| {
                        StoreError::Backend(format!(
                            "a stored content has an unreadable key ({}); clear the site's data \
                             to reset the store",
                            describe(k)
                        ))
                    })?;
                let c = ContentRecord::from_js(&hash_name, v)?;
                out.push(StoredContent {
                    hash_name,
                    kind: c.kind,
                    descriptor: c.descriptor,
                    source: c.source,
                    pieces: held.remove(&hash_name.to_hex()).unwrap_or_default(),
                    stored_bytes: c.stored_bytes,
                });
            }
            Ok(StoreReply::List(out))
        }))
    }

    fn delete(&self, shared: Weak<RefCell<Shared>>, hash_name: HashName) -> Result<Op, StoreError> {
        const DOING: &str = "remove a content";
        let tx = WriteTx::open(&self.db, &[CONTENTS, PIECES])?;
        let contents = tx.store(CONTENTS)?;
        let pieces = tx.store(PIECES)?;
        let key = content_key(&hash_name);
        // Read before delete, in the same transaction: its byte count leaves the running total.
        let got = issue(contents.get(key.clone()), DOING)?;
        let range = KeyRange::bound(
            &piece_key(&hash_name, 0),
            &piece_key(&hash_name, u32::MAX),
            Some(false),
            Some(false),
        )
        .map_err(|e| backend(DOING, e.into()))?;
        let removed = issue(contents.delete(key), DOING)?;
        let removed_pieces = issue(pieces.delete(range), DOING)?;
        Ok(Box::pin(async move {
            let got = got.await;
            let removed = removed.await;
            let removed_pieces = removed_pieces.await;
            let got = got
                .and_then(|g| removed.and(removed_pieces).map(|()| g))
                .map_err(|e| backend(DOING, e.into()))?;
            tx.commit().await.map_err(|e| backend(DOING, e))?;
            // An unreadable record frees 0 bytes from the running total (it is gone either way).
            let freed = got
                .and_then(|v| ContentRecord::from_js(&hash_name, &v).ok())
                .map_or(0, |c| c.stored_bytes);
            if let Some(shared) = shared.upgrade() {
                let mut s = shared.borrow_mut();
                s.stored = s.stored.saturating_sub(freed);
            }
            Ok(StoreReply::Deleted)
        }))
    }
}

impl Store for IdbStore {
    /// Starts `request` as one IndexedDB transaction (created, with its first requests placed,
    /// before this returns, which is what keeps requests in submit order). Its completion comes
    /// later through `poll_completion`, announced by `wake`. With [`IDB_MAX_PENDING`] requests
    /// pending the answer is [`StoreError::Busy`]; a transaction IndexedDB refuses to start
    /// (the connection was closed) is a [`StoreError::Backend`] answer.
    fn submit(&mut self, id: StoreOpId, request: StoreRequest) {
        let pending = {
            let s = self.shared.borrow();
            s.running + s.done.len()
        };
        if pending >= IDB_MAX_PENDING {
            self.finish_soon(id, Err(StoreError::Busy(pending)));
            return;
        }
        let op = match self.start(request) {
            Ok(op) => op,
            Err(e) => {
                self.finish_soon(id, Err(e));
                return;
            }
        };
        self.shared.borrow_mut().running += 1;
        let weak = Rc::downgrade(&self.shared);
        wasm_bindgen_futures::spawn_local(async move {
            let result = op.await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let wake = {
                let mut s = shared.borrow_mut();
                s.running -= 1;
                s.done.push_back(StoreCompletion { id, result });
                s.wake.clone()
            };
            wake();
        });
    }

    fn poll_completion(&mut self) -> Option<StoreCompletion> {
        self.shared.borrow_mut().done.pop_front()
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        self.db.close();
    }
}

// ----- transactions and requests -------------------------------------------------------------

/// A readwrite transaction that reports how it ended. It listens for `complete` and `abort`
/// from the moment it is created; dropping it (an early error return) detaches those handlers
/// first, so the browser never calls a freed closure.
struct WriteTx {
    raw: IdbTransaction,
    done: Option<TransactionFuture>,
}

impl WriteTx {
    fn open(db: &Database, stores: &[&str]) -> Result<WriteTx, StoreError> {
        let tx = db
            .transaction(stores, TransactionMode::ReadWrite)
            .map_err(|e| backend("start a write", e.into()))?;
        let raw: IdbTransaction = tx.into();
        let done = ::idb::Transaction::from(raw.clone()).into_future();
        // The future's `error` handler is once-only, and every request an abort fails bubbles an
        // `error` to the transaction: each request reports its own error instead, and the
        // transaction's end is read from `complete` / `abort` (with `IDBTransaction.error`).
        raw.set_onerror(None);
        Ok(WriteTx {
            raw,
            done: Some(done),
        })
    }

    fn store(&self, name: &str) -> Result<ObjectStore, StoreError> {
        ::idb::Transaction::from(self.raw.clone())
            .object_store(name)
            .map_err(|e| backend("open an object store", e.into()))
    }

    /// Waits for the transaction to end: `Ok` once committed, the abort's reason otherwise
    /// (`QuotaExceededError` when the browser's own quota refused the commit).
    async fn commit(mut self) -> Result<(), DbFailure> {
        let Some(done) = self.done.take() else {
            return Err(DbFailure::other("the transaction was already awaited"));
        };
        match done.await {
            Ok(TransactionResult::Committed) => Ok(()),
            Ok(TransactionResult::Aborted) => Err(match self.raw.error() {
                Some(e) => DbFailure::from_dom(&e),
                None => DbFailure::other("the transaction was aborted"),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        self.raw.set_oncomplete(None);
        self.raw.set_onabort(None);
        self.raw.set_onerror(None);
    }
}

/// An IndexedDB request already placed. Await it; if it is dropped before it finished (an
/// early return on another request's error), it is handed to the executor to finish on its own,
/// because the browser will still call its success or error handler.
struct Placed<F: Future + Unpin + 'static>(Option<F>);

impl<F: Future + Unpin + 'static> Future for Placed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(f) = self.0.as_mut() else {
            // Polled after it returned Ready: a bug in this module, never reached.
            return Poll::Pending;
        };
        let out = Pin::new(f).poll(cx);
        if out.is_ready() {
            self.0 = None;
        }
        out
    }
}

impl<F: Future + Unpin + 'static> Drop for Placed<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = f.await;
            });
        }
    }
}

/// Wraps a request placed with `idb` (its handlers attached now, synchronously).
fn issue<R>(
    request: Result<R, ::idb::Error>,
    doing: &str,
) -> Result<Placed<R::IntoFuture>, StoreError>
where
    R: IntoFuture,
    R::IntoFuture: Unpin + 'static,
{
    request
        .map(|r| Placed(Some(r.into_future())))
        .map_err(|e| backend(doing, e.into()))
}

fn object_store(tx: &::idb::Transaction, name: &str) -> Result<ObjectStore, StoreError> {
    tx.object_store(name)
        .map_err(|e| backend("open an object store", e.into()))
}

/// Bytes a write transaction may add, held against the quota until it commits or aborts.
struct Reservation {
    shared: Rc<RefCell<Shared>>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `bytes`, or refuses with [`StoreError::QuotaFull`] (nothing written yet).
    fn take(shared: &Weak<RefCell<Shared>>, bytes: u64) -> Result<Reservation, StoreError> {
        let shared = shared.upgrade().ok_or_else(|| {
            StoreError::Backend("the content store was closed; reopen the page".into())
        })?;
        {
            let mut s = shared.borrow_mut();
            if s.stored.saturating_add(s.reserved).saturating_add(bytes) > s.quota {
                return Err(s.quota_full(bytes));
            }
            s.reserved += bytes;
        }
        Ok(Reservation { shared, bytes })
    }

    /// The write committed: `added` bytes are now stored and `removed` freed.
    fn commit(self, added: u64, removed: u64) {
        let mut s = self.shared.borrow_mut();
        s.stored = s.stored.saturating_add(added).saturating_sub(removed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.shared.borrow_mut();
        s.reserved = s.reserved.saturating_sub(self.bytes);
    }
}

// ----- errors --------------------------------------------------------------------------------

/// What IndexedDB reported: a DOMException's name and message, or `idb`'s description.
#[derive(Debug)]
struct DbFailure {
    /// The DOMException name (`QuotaExceededError`, `AbortError`, ...); empty when there is none.
    name: String,
    message: String,
}

impl DbFailure {
    fn from_dom(e: &DomException) -> DbFailure {
        DbFailure {
            name: e.name(),
            message: e.message(),
        }
    }

    fn other(message: &str) -> DbFailure {
        DbFailure {
            name: String::new(),
            message: message.to_string(),
        }
    }
}

impl From<::idb::Error> for DbFailure {
    fn from(e: ::idb::Error) -> DbFailure {
        use ::idb::Error as E;
        // Requests that fail report a DOMException; calls that throw carry it as a JsValue.
        let thrown = match &e {
            E::DomException(d) => return DbFailure::from_dom(d),
            E::AddFailed(v)
            | E::UpdateFailed(v)
            | E::GetFailed(v)
            | E::GetKeyFailed(v)
            | E::GetAllFailed(v)
            | E::GetAllKeysFailed(v)
            | E::DeleteFailed(v)
            | E::TransactionOpenFailed(v)
            | E::ObjectStoreNotFound(v)
            | E::IndexedDbOpenFailed(v)
            | E::KeyRangeCreateFailed(v) => v.dyn_ref::<DomException>(),
            _ => None,
        };
        match thrown {
            Some(d) => DbFailure::from_dom(d),
            // Not `e.to_string()`: idb's Display for its 40-odd variants costs about 5 KB of
            // wasm, for failures that carry no DOMException and are not expected to happen.
            None => DbFailure::other(match e {
                E::UnexpectedJsType(expected, _) => {
                    return DbFailure::other(&format!(
                        "it answered with something not a {expected}"
                    ))
                }
                E::OneshotChannelReceiveError => "its answer was lost",
                E::IndexedDbNotFound(_) => "this page has no IndexedDB",
                _ => "it answered in an unexpected way",
            }),
        }
    }
}

fn backend(doing: &str, f: DbFailure) -> StoreError {
    if f.name.is_empty() {
        StoreError::Backend(format!("IndexedDB could not {doing}: {}", f.message))
    } else {
        StoreError::Backend(format!(
            "IndexedDB could not {doing}: {} ({})",
            f.message, f.name
        ))
    }
}

/// A failed write: the browser's own `QuotaExceededError` becomes [`StoreError::QuotaFull`].
fn write_failed(
    shared: &Weak<RefCell<Shared>>,
    need: u64,
    doing: &str,
    f: DbFailure,
) -> StoreError {
    match shared.upgrade() {
        Some(shared) if f.name == "QuotaExceededError" => shared.borrow().quota_full(need),
        _ => backend(doing, f),
    }
}

fn corrupt(what: &str, hash_name: &HashName, why: &str) -> StoreError {
    StoreError::Backend(format!(
        "the stored {what} of content {hash_name} is unreadable ({why}); remove that content \
         from the library and fetch it again"
    ))
}

/// A short description of an unexpected JS value, for error sentences.
fn describe(v: &JsValue) -> String {
    match v.as_string() {
        Some(s) => format!("{:?}", s.chars().take(60).collect::<String>()),
        None => format!("{:?}", v.js_typeof().as_string().unwrap_or_default()),
    }
}

// ----- records ---------------------------------------------------------------------------------

fn content_key(hash_name: &HashName) -> JsValue {
    JsValue::from_str(&hash_name.to_hex())
}

fn piece_key(hash_name: &HashName, index: u32) -> JsValue {
    Array::of2(
        &JsValue::from_str(&hash_name.to_hex()),
        &JsValue::from_f64(f64::from(index)),
    )
    .into()
}

/// `[hex, index]` back from a `pieces` key; `None` if it has another shape.
fn piece_key_from_js(key: &JsValue) -> Option<(String, u32)> {
    let key = key.dyn_ref::<Array>()?;
    if key.length() != 2 {
        return None;
    }
    let hex = key.get(0).as_string()?;
    let index = key.get(1).as_f64()?;
    ((0.0..=f64::from(u32::MAX)).contains(&index) && index.fract() == 0.0)
        .then_some((hex, index as u32))
}

/// A `contents` value.
struct ContentRecord {
    kind: DescriptorKind,
    descriptor: Vec<u8>,
    /// The magnet link or URL the content was downloaded from (`sourceKind`, `sourceUri`;
    /// absent in records written before 2026-12-01 and for content from the mesh).
    source: Option<DbSource>,
    /// Descriptor + pieces + proofs, bytes.
    stored_bytes: u64,
    /// Pieces held.
    pieces: u32,
}

impl ContentRecord {
    fn to_js(&self) -> JsValue {
        let o = Object::new();
        set(&o, "kind", &JsValue::from_f64(f64::from(self.kind.0)));
        set(&o, "descriptor", &Uint8Array::from(&self.descriptor[..]));
        // Exact up to 2^53 bytes, far past any quota.
        set(
            &o,
            "storedBytes",
            &JsValue::from_f64(self.stored_bytes as f64),
        );
        set(&o, "pieces", &JsValue::from_f64(f64::from(self.pieces)));
        if let Some(src) = &self.source {
            set(&o, "sourceKind", &JsValue::from_f64(f64::from(src.kind.0)));
            set(&o, "sourceUri", &JsValue::from_str(src.uri.as_str()));
        }
        o.into()
    }

    fn from_js(hash_name: &HashName, v: &JsValue) -> Result<ContentRecord, StoreError> {
        let bad = |why| corrupt("record", hash_name, why);
        let kind = field_u64(v, "kind")
            .and_then(|k| u8::try_from(k).ok())
            .ok_or_else(|| bad("no kind"))?;
        let descriptor = field_bytes(v, "descriptor").ok_or_else(|| bad("no descriptor bytes"))?;
        let stored_bytes = field_u64(v, "storedBytes").ok_or_else(|| bad("no byte count"))?;
        let pieces = field_u64(v, "pieces")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("no piece count"))?;
        // An unreadable source costs only the resume's hint, never the content.
        let source = field_u64(v, "sourceKind")
            .and_then(|k| u8::try_from(k).ok())
            .zip(field(v, "sourceUri").and_then(|u| u.as_string()))
            .and_then(|(k, uri)| {
                Some(DbSource {
                    hash_name: *hash_name,
                    kind: SourceKind(k),
                    uri: uri.try_into().ok()?,
                })
            });
        Ok(ContentRecord {
            kind: DescriptorKind(kind),
            descriptor,
            source,
            stored_bytes,
            pieces,
        })
    }
}

fn piece_to_js(record: &PieceRecord) -> JsValue {
    let proof: Vec<u8> = record.proof.iter().flatten().copied().collect();
    let o = Object::new();
    set(&o, "bytes", &Uint8Array::from(&record.bytes[..]));
    set(&o, "proof", &Uint8Array::from(&proof[..]));
    o.into()
}

fn piece_from_js(hash_name: &HashName, index: u32, v: &JsValue) -> Result<PieceRecord, StoreError> {
    let bad = |why: &str| corrupt(&format!("piece {index}"), hash_name, why);
    let bytes = field_bytes(v, "bytes").ok_or_else(|| bad("no bytes"))?;
    let proof = field_bytes(v, "proof").ok_or_else(|| bad("no proof"))?;
    if proof.len() % 32 != 0 {
        return Err(bad("its proof is not a whole number of 32-byte hashes"));
    }
    let proof = proof
        .chunks_exact(32)
        .map(|h| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(h);
            hash
        })
        .collect();
    Ok(PieceRecord { bytes, proof })
}

/// Sets a property on an object this module just created. `Reflect.set` fails only on frozen
/// objects or throwing setters, which a fresh `Object` has neither of.
fn set(o: &Object, name: &str, value: &JsValue) {
    let _ = Reflect::set(o, &JsValue::from_str(name), value);
}

fn field(v: &JsValue, name: &str) -> Option<JsValue> {
    if !v.is_object() {
        return None;
    }
    Reflect::get(v, &JsValue::from_str(name)).ok()
}

/// A non-negative integer property, exact in a JS number.
fn field_u64(v: &JsValue, name: &str) -> Option<u64> {
    let n = field(v, name)?.as_f64()?;
    ((0.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0).then_some(n as u64)
}

/// A `Uint8Array` property, copied into wasm memory.
fn field_bytes(v: &JsValue, name: &str) -> Option<Vec<u8>> {
    field(v, name)?
        .dyn_into::<Uint8Array>()
        .ok()
        .map(|a| a.to_vec())
}

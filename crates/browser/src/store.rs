//! Which content store the driver runs: IndexedDB when it opens, memory otherwise.
//!
//! The driver owns a `Box<dyn onionmesh_ordb::Store>`, submits each store request the node (or
//! the content reader) makes and drains completions in its pump. An asynchronous store (IndexedDB)
//! calls the `wake` function it was given after it queues completions, and the driver pumps.

use onionmesh_ordb::{Store, StoreCompletion, StoreOpId, StoreRequest};
use std::collections::VecDeque;

/// Most operations the driver has in a store at once; more wait in [`StoreQueue`]'s backlog.
/// Below IndexedDB store's own limit (64), past which it answers `Busy`.
pub const MAX_IN_FLIGHT: usize = 48;

/// Default IndexedDB database name (`storeName`).
pub const DEFAULT_STORE_NAME: &str = "onionmesh";
/// Default quota (`storeQuotaBytes`): 1 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;

/// What `Node.start` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    /// IndexedDB database name; `None` keeps content in memory for the page's lifetime.
    pub name: Option<String>,
    pub quota_bytes: u64,
}

impl Default for StoreChoice {
    /// In memory, 1 GiB (tests and embedders that want no IndexedDB).
    fn default() -> Self {
        StoreChoice {
            name: None,
            quota_bytes: DEFAULT_QUOTA_BYTES,
        }
    }
}

/// Open the store. When IndexedDB cannot be opened the node still runs, on a memory store, and
/// the second value is a sentence saying so (the driver logs it).
#[cfg(target_arch = "wasm32")]
pub async fn open(
    choice: &StoreChoice,
    wake: std::rc::Rc<dyn Fn()>,
) -> (Box<dyn Store>, Option<String>) {
    use onionmesh_ordb::MemStore;
    let Some(name) = &choice.name else {
        return (Box::new(MemStore::new(choice.quota_bytes)), None);
    };
    match crate::idb::open(name, choice.quota_bytes, wake).await {
        Ok(store) => (Box::new(store), None),
        Err(e) => (
            Box::new(MemStore::new(choice.quota_bytes)),
            Some(format!(
                "content is kept in memory for this page only, because the IndexedDB database \"{name}\" could not be opened: {e}"
            )),
        ),
    }
}

/// Most writes (`PutDescriptor`, `PutPiece`, `Delete`) the driver has in the store at once.
/// IndexedDB starts a readonly transaction only after every readwrite one created before it on
/// the same object stores, so every write in flight delays every read: with up to
/// [`MAX_IN_FLIGHT`] writes in flight, a player's read of a piece stored long ago waited 2-4 s
/// behind a download's writes on a loaded machine (measured 2026-12-01, the e2e content test's
/// seek). Writes run one after another in IndexedDB anyway, so keeping the rest in the backlog
/// costs them nothing but the hop from one completion to the next submission.
pub const MAX_WRITES_IN_FLIGHT: usize = 4;

/// The driver's store with a backlog: at most [`MAX_IN_FLIGHT`] operations are in the store at
/// once, of which at most [`MAX_WRITES_IN_FLIGHT`] writes; the rest wait here. Reads (`GetPiece`,
/// `GetDescriptor`, `List`) go ahead of waiting writes, the content reader's (`urgent`) ahead of
/// the other reads, so a player is neither stuck behind a large publication nor behind a
/// download's writes; writes keep their order. Reordering a read ahead of a write is safe here:
/// the node and the reader read only what a completed write stored. The backlog holds requests
/// the core has already made (their bytes exist already); it copies nothing, and empties as the
/// store completes.
pub struct StoreQueue {
    store: Box<dyn Store>,
    in_flight: usize,
    /// Ids of the writes in the store (at most [`MAX_WRITES_IN_FLIGHT`]).
    writes_in_flight: Vec<StoreOpId>,
    reads: VecDeque<(StoreOpId, StoreRequest)>,
    writes: VecDeque<(StoreOpId, StoreRequest)>,
}

fn is_write(request: &StoreRequest) -> bool {
    match request {
        StoreRequest::PutDescriptor { .. }
        | StoreRequest::PutPiece { .. }
        | StoreRequest::Delete { .. } => true,
        StoreRequest::GetPiece { .. } | StoreRequest::GetDescriptor { .. } | StoreRequest::List => {
            false
        }
    }
}

impl StoreQueue {
    pub fn new(store: Box<dyn Store>) -> StoreQueue {
        StoreQueue {
            store,
            in_flight: 0,
            writes_in_flight: Vec::new(),
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    /// Submit now, or queue behind what waits. `urgent` reads go ahead of the other reads.
    pub fn submit(&mut self, id: StoreOpId, request: StoreRequest, urgent: bool) {
        if is_write(&request) {
            self.writes.push_back((id, request));
        } else if urgent {
            self.reads.push_front((id, request));
        } else {
            self.reads.push_back((id, request));
        }
        self.fill();
    }

    /// Let waiting requests in while there is room: reads first, then writes.
    fn fill(&mut self) {
        while self.in_flight < MAX_IN_FLIGHT {
            let next = match self.reads.pop_front() {
                Some(read) => read,
                None if self.writes_in_flight.len() < MAX_WRITES_IN_FLIGHT => {
                    let Some(write) = self.writes.pop_front() else {
                        break;
                    };
                    self.writes_in_flight.push(write.0);
                    write
                }
                None => break,
            };
            self.in_flight += 1;
            self.store.submit(next.0, next.1);
        }
    }

    /// The next finished operation; each one lets a waiting request in.
    pub fn poll_completion(&mut self) -> Option<StoreCompletion> {
        let c = self.store.poll_completion()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.writes_in_flight.retain(|id| *id != c.id);
        self.fill();
        Some(c)
    }

    /// Requests waiting to enter the store.
    pub fn backlog(&self) -> usize {
        self.reads.len() + self.writes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionmesh_ordb::{HashName, StoreReply};

    /// A store that completes only when told, and counts what it holds.
    #[derive(Default)]
    struct Slow {
        held: VecDeque<StoreOpId>,
        done: VecDeque<StoreCompletion>,
        most: usize,
    }

    struct Shared(std::rc::Rc<std::cell::RefCell<Slow>>);

    impl Store for Shared {
        fn submit(&mut self, id: StoreOpId, _request: StoreRequest) {
            let mut s = self.0.borrow_mut();
            s.held.push_back(id);
            s.most = s.most.max(s.held.len());
        }
        fn poll_completion(&mut self) -> Option<StoreCompletion> {
            self.0.borrow_mut().done.pop_front()
        }
    }

    fn get(i: u64) -> StoreRequest {
        StoreRequest::GetPiece {
            hash_name: HashName([1; 20]),
            index: i as u32,
        }
    }

    fn put(i: u64) -> StoreRequest {
        StoreRequest::PutPiece {
            hash_name: HashName([1; 20]),
            index: i as u32,
            record: onionmesh_ordb::PieceRecord {
                bytes: vec![0; 8],
                proof: Vec::new(),
            },
        }
    }

    /// Completes the oldest operation in the store; returns its id.
    fn complete_one(
        slow: &std::rc::Rc<std::cell::RefCell<Slow>>,
        q: &mut StoreQueue,
    ) -> Option<u64> {
        let id = slow.borrow_mut().held.pop_front()?;
        slow.borrow_mut().done.push_back(StoreCompletion {
            id,
            result: Ok(StoreReply::Stored),
        });
        assert!(q.poll_completion().is_some());
        Some(id.0)
    }

    #[test]
    fn reads_pass_waiting_writes_and_few_writes_are_in_flight() {
        let slow = std::rc::Rc::new(std::cell::RefCell::new(Slow::default()));
        let mut q = StoreQueue::new(Box::new(Shared(slow.clone())));
        // A download's burst of 100 writes, then a relay's read and a player's read.
        for i in 0..100 {
            q.submit(StoreOpId(i), put(i), false);
        }
        assert_eq!(slow.borrow().held.len(), MAX_WRITES_IN_FLIGHT);
        q.submit(StoreOpId(500), get(500), false);
        q.submit(StoreOpId(501), get(501), true);
        // Both reads entered the store at once, behind only MAX_WRITES_IN_FLIGHT writes.
        let held: Vec<u64> = slow.borrow().held.iter().map(|id| id.0).collect();
        assert_eq!(held, [0, 1, 2, 3, 500, 501]);
        let mut order = Vec::new();
        while let Some(id) = complete_one(&slow, &mut q) {
            order.push(id);
            let writes = slow.borrow().held.iter().filter(|id| id.0 < 100).count();
            assert!(writes <= MAX_WRITES_IN_FLIGHT, "{writes} writes in flight");
        }
        // Every write went in, in order; nothing was lost or repeated.
        let writes: Vec<u64> = order.iter().copied().filter(|&id| id < 100).collect();
        assert_eq!(writes, (0..100).collect::<Vec<_>>());
        assert_eq!(order.len(), 102);
        assert_eq!(q.backlog(), 0);
    }

    #[test]
    fn at_most_max_in_flight_reach_the_store_and_urgent_ones_go_first() {
        let slow = std::rc::Rc::new(std::cell::RefCell::new(Slow::default()));
        let mut q = StoreQueue::new(Box::new(Shared(slow.clone())));
        for i in 0..200 {
            q.submit(StoreOpId(i), get(i), false);
        }
        q.submit(StoreOpId(999), get(999), true);
        assert_eq!(slow.borrow().held.len(), MAX_IN_FLIGHT);
        assert_eq!(q.backlog(), 201 - MAX_IN_FLIGHT);
        let mut order = Vec::new();
        loop {
            let next = slow.borrow_mut().held.pop_front();
            let Some(id) = next else { break };
            order.push(id.0);
            slow.borrow_mut().done.push_back(StoreCompletion {
                id,
                result: Ok(StoreReply::Stored),
            });
            assert!(q.poll_completion().is_some());
        }
        assert_eq!(order.len(), 201);
        assert_eq!(slow.borrow().most, MAX_IN_FLIGHT);
        // The urgent read entered first once there was room.
        assert_eq!(order[MAX_IN_FLIGHT], 999);
        assert_eq!(q.backlog(), 0);
    }
}

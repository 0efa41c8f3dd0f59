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
                "content is kept in memory for this page only: the IndexedDB store \"{name}\" could not be opened: {e}"
            )),
        ),
    }
}

/// The driver's store with a backlog: at most [`MAX_IN_FLIGHT`] operations are in the store at
/// once, the rest wait here in order (the content reader's reads ahead of writes, so a player is
/// not stuck behind a large publication). The backlog holds requests the core has already made
/// (their bytes exist already); it copies nothing, and empties as the store completes.
pub struct StoreQueue {
    store: Box<dyn Store>,
    in_flight: usize,
    backlog: VecDeque<(StoreOpId, StoreRequest)>,
}

impl StoreQueue {
    pub fn new(store: Box<dyn Store>) -> StoreQueue {
        StoreQueue {
            store,
            in_flight: 0,
            backlog: VecDeque::new(),
        }
    }

    /// Submit now, or queue behind what waits. `urgent` requests go ahead of the backlog.
    pub fn submit(&mut self, id: StoreOpId, request: StoreRequest, urgent: bool) {
        if self.in_flight < MAX_IN_FLIGHT && self.backlog.is_empty() {
            self.in_flight += 1;
            self.store.submit(id, request);
        } else if urgent {
            self.backlog.push_front((id, request));
        } else {
            self.backlog.push_back((id, request));
        }
    }

    /// The next finished operation; each one lets a waiting request in.
    pub fn poll_completion(&mut self) -> Option<StoreCompletion> {
        let c = self.store.poll_completion()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        while self.in_flight < MAX_IN_FLIGHT {
            let Some((id, request)) = self.backlog.pop_front() else {
                break;
            };
            self.in_flight += 1;
            self.store.submit(id, request);
        }
        Some(c)
    }

    /// Requests waiting to enter the store.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
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

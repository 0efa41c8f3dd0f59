//! Which content store the driver runs: IndexedDB when it opens, memory otherwise.
//!
//! The driver owns a `Box<dyn onionmesh_ordb::Store>`, submits each store request the node (or
//! the content reader) makes and drains completions in its pump. An asynchronous store (IndexedDB)
//! calls the `wake` function it was given after it queues completions, and the driver pumps.

use onionmesh_ordb::{MemStore, Store};
use std::rc::Rc;

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
pub async fn open(choice: &StoreChoice, wake: Rc<dyn Fn()>) -> (Box<dyn Store>, Option<String>) {
    let Some(name) = &choice.name else {
        return (Box::new(MemStore::new(choice.quota_bytes)), None);
    };
    // TODO(issue 9 item 6): IndexedDB (crates/browser/src/idb.rs, another helper's branch).
    let _ = wake;
    (
        Box::new(MemStore::new(choice.quota_bytes)),
        Some(format!(
            "content is kept in memory for this page only: the IndexedDB store \"{name}\" is not available in this build"
        )),
    )
}

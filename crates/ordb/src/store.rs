//! The content store, as a completion-based interface the driver owns.
//!
//! The sans-IO parts never wait on storage. They hand out [`StoreRequest`]s tagged with a
//! [`StoreOpId`]; the driver carries each one out (IndexedDB in the browser, [`MemStore`] in the
//! simulator and the bridge) and feeds the [`StoreCompletion`] with the same id back in. The
//! [`Store`] trait is that contract; `MemStore` completes at once, IndexedDB later.
//!
//! What is stored per content: its descriptor (kind + bytes, which hash to the hash_name) and
//! its pieces, each a [`PieceRecord`] (bytes + Merkle proof). A piece can only be put after its
//! content's descriptor, so a store never holds pieces it cannot verify or serve.
//!
//! A full store refuses the write with [`StoreError::QuotaFull`], naming how much is stored;
//! nothing already stored is touched.

use onionmesh_bounded::FlatMap;
use std::collections::VecDeque;

use onionmesh_wire::db::{DbSource, DescriptorKind, HashName};
use thiserror::Error;

use crate::content::PieceRecord;

/// Tags a store request so its completion can be matched. Allocated by the part that issues
/// the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreOpId(pub u64);

/// One storage operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRequest {
    /// Create (or keep) the content's record with its descriptor, and the magnet link or URL
    /// it was downloaded from (`source`, when it came from outside the mesh), so a partial
    /// download can be handed to a facilitator again after a reload. A record that exists is
    /// kept as it is.
    PutDescriptor {
        hash_name: HashName,
        kind: DescriptorKind,
        descriptor: Vec<u8>,
        source: Option<DbSource>,
    },
    /// Store a verified piece. Fails with `UnknownContent` before `PutDescriptor`.
    PutPiece {
        hash_name: HashName,
        index: u32,
        record: PieceRecord,
    },
    GetPiece {
        hash_name: HashName,
        index: u32,
    },
    GetDescriptor {
        hash_name: HashName,
    },
    /// Everything stored, without piece bytes (for the library view and for resuming).
    List,
    /// Remove a content and all its pieces.
    Delete {
        hash_name: HashName,
    },
}

/// A successful result, one variant per request kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    Stored,
    Piece(Option<PieceRecord>),
    Descriptor(Option<(DescriptorKind, Vec<u8>)>),
    List(Vec<StoredContent>),
    Deleted,
}

/// A stored content, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub hash_name: HashName,
    pub kind: DescriptorKind,
    pub descriptor: Vec<u8>,
    /// The magnet link or URL it was downloaded from, if it was stored with its descriptor.
    pub source: Option<DbSource>,
    /// Indexes of the pieces held, ascending.
    pub pieces: Vec<u32>,
    /// Bytes used (descriptor, pieces and proofs).
    pub stored_bytes: u64,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage is full: {stored_bytes} of {quota_bytes} bytes are used and this needs {needed_bytes} more; nothing stored was lost; remove something from the library to make room")]
    QuotaFull {
        stored_bytes: u64,
        quota_bytes: u64,
        needed_bytes: u64,
    },
    #[error("no content {0} is stored: store its description first")]
    UnknownContent(HashName),
    #[error("storage is busy with {0} operations; try again later")]
    Busy(usize),
    /// The driver's backend failed (an IndexedDB error name and message, for instance).
    #[error("storage failed: {0}")]
    Backend(String),
}

/// The completion of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCompletion {
    pub id: StoreOpId,
    pub result: Result<StoreReply, StoreError>,
}

/// A store driven by completions: `submit` starts an operation, `poll_completion` hands back
/// finished ones (in any order; match them by id).
pub trait Store {
    fn submit(&mut self, id: StoreOpId, request: StoreRequest);
    fn poll_completion(&mut self) -> Option<StoreCompletion>;
}

#[derive(Debug, Clone)]
struct MemContent {
    kind: DescriptorKind,
    descriptor: Vec<u8>,
    source: Option<DbSource>,
    pieces: FlatMap<u32, PieceRecord>,
    bytes: u64,
}

/// Bytes a content's record takes before its pieces: the descriptor and the source's link.
pub fn record_len(descriptor: &[u8], source: Option<&DbSource>) -> u64 {
    (descriptor.len() + source.map_or(0, |s| s.uri.len())) as u64
}

/// Most completions a [`MemStore`] holds before the caller drains them; past it, requests fail
/// with [`StoreError::Busy`] (the caller is not polling).
pub const MEM_STORE_MAX_PENDING: usize = 4096;

/// An in-memory store bounded by a byte quota, for the simulator and the bridge. Completes
/// every request immediately.
#[derive(Debug, Clone)]
pub struct MemStore {
    quota: u64,
    used: u64,
    contents: FlatMap<HashName, MemContent>,
    done: VecDeque<StoreCompletion>,
}

impl MemStore {
    /// A store holding at most `quota_bytes` of descriptors, pieces and proofs.
    pub fn new(quota_bytes: u64) -> MemStore {
        MemStore {
            quota: quota_bytes,
            used: 0,
            contents: FlatMap::new(),
            done: VecDeque::new(),
        }
    }

    /// Bytes used.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Carry out one request now (what `submit` does, without the queue).
    pub fn execute(&mut self, request: StoreRequest) -> Result<StoreReply, StoreError> {
        match request {
            StoreRequest::PutDescriptor {
                hash_name,
                kind,
                descriptor,
                source,
            } => {
                if self.contents.contains_key(&hash_name) {
                    return Ok(StoreReply::Stored);
                }
                let need = record_len(&descriptor, source.as_ref());
                self.check_room(need)?;
                self.used += need;
                self.contents.insert(
                    hash_name,
                    MemContent {
                        kind,
                        descriptor,
                        source,
                        pieces: FlatMap::new(),
                        bytes: need,
                    },
                );
                Ok(StoreReply::Stored)
            }
            StoreRequest::PutPiece {
                hash_name,
                index,
                record,
            } => {
                let (stored, quota) = (self.used, self.quota);
                let c = self
                    .contents
                    .get_mut(&hash_name)
                    .ok_or(StoreError::UnknownContent(hash_name))?;
                let old = c.pieces.get(&index).map_or(0, PieceRecord::stored_len);
                let new = record.stored_len();
                let need = new.saturating_sub(old);
                if stored.saturating_add(need) > quota {
                    return Err(StoreError::QuotaFull {
                        stored_bytes: stored,
                        quota_bytes: quota,
                        needed_bytes: need,
                    });
                }
                c.pieces.insert(index, record);
                c.bytes = c.bytes + new - old;
                self.used = self.used + new - old;
                Ok(StoreReply::Stored)
            }
            StoreRequest::GetPiece { hash_name, index } => Ok(StoreReply::Piece(
                self.contents
                    .get(&hash_name)
                    .and_then(|c| c.pieces.get(&index).cloned()),
            )),
            StoreRequest::GetDescriptor { hash_name } => Ok(StoreReply::Descriptor(
                self.contents
                    .get(&hash_name)
                    .map(|c| (c.kind, c.descriptor.clone())),
            )),
            StoreRequest::List => Ok(StoreReply::List(
                self.contents
                    .iter()
                    .map(|(h, c)| StoredContent {
                        hash_name: *h,
                        kind: c.kind,
                        descriptor: c.descriptor.clone(),
                        source: c.source.clone(),
                        pieces: c.pieces.keys().copied().collect(),
                        stored_bytes: c.bytes,
                    })
                    .collect(),
            )),
            StoreRequest::Delete { hash_name } => {
                if let Some(c) = self.contents.remove(&hash_name) {
                    self.used -= c.bytes;
                }
                Ok(StoreReply::Deleted)
            }
        }
    }

    fn check_room(&self, need: u64) -> Result<(), StoreError> {
        if self.used.saturating_add(need) > self.quota {
            return Err(StoreError::QuotaFull {
                stored_bytes: self.used,
                quota_bytes: self.quota,
                needed_bytes: need,
            });
        }
        Ok(())
    }
}

impl Store for MemStore {
    fn submit(&mut self, id: StoreOpId, request: StoreRequest) {
        let result = if self.done.len() >= MEM_STORE_MAX_PENDING {
            Err(StoreError::Busy(self.done.len()))
        } else {
            self.execute(request)
        };
        if self.done.len() <= MEM_STORE_MAX_PENDING {
            self.done.push_back(StoreCompletion { id, result });
        }
    }

    fn poll_completion(&mut self) -> Option<StoreCompletion> {
        self.done.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> PieceRecord {
        PieceRecord {
            bytes: vec![1; n],
            proof: vec![[2; 32]],
        }
    }

    #[test]
    fn the_source_is_kept_and_listed_with_its_content() {
        let uri = "magnet:?xt=urn:btih:0101010101010101010101010101010101010101&tr=http://t/a";
        let source = DbSource {
            hash_name: HashName([1; 20]),
            kind: onionmesh_wire::db::SourceKind::MAGNET,
            uri: uri.try_into().unwrap(),
        };
        let mut s = MemStore::new(1000);
        for (h, src) in [
            (HashName([1; 20]), Some(source.clone())),
            (HashName([2; 20]), None),
        ] {
            s.execute(StoreRequest::PutDescriptor {
                hash_name: h,
                kind: DescriptorKind::BITTORRENT_V1_INFO,
                descriptor: vec![0; 100],
                source: src,
            })
            .unwrap();
        }
        assert_eq!(
            s.used(),
            200 + uri.len() as u64,
            "the link counts as stored bytes"
        );
        let Ok(StoreReply::List(list)) = s.execute(StoreRequest::List) else {
            panic!("a list")
        };
        let sources: Vec<_> = list
            .iter()
            .map(|c| (c.hash_name, c.source.clone()))
            .collect();
        assert_eq!(
            sources,
            vec![(HashName([1; 20]), Some(source)), (HashName([2; 20]), None)]
        );
    }

    #[test]
    fn quota_full_keeps_what_is_stored() {
        let h = HashName([1; 20]);
        let mut s = MemStore::new(1000);
        let put_desc = StoreRequest::PutDescriptor {
            hash_name: h,
            kind: DescriptorKind::ONIONMESH_V1,
            descriptor: vec![0; 100],
            source: None,
        };
        // A piece before its descriptor is refused.
        assert_eq!(
            s.execute(StoreRequest::PutPiece {
                hash_name: h,
                index: 0,
                record: rec(10)
            }),
            Err(StoreError::UnknownContent(h))
        );
        s.submit(StoreOpId(1), put_desc);
        assert_eq!(
            s.poll_completion(),
            Some(StoreCompletion {
                id: StoreOpId(1),
                result: Ok(StoreReply::Stored)
            })
        );
        for i in 0..2 {
            s.execute(StoreRequest::PutPiece {
                hash_name: h,
                index: i,
                record: rec(368),
            })
            .unwrap();
        }
        assert_eq!(s.used(), 100 + 2 * 400);
        let err = s
            .execute(StoreRequest::PutPiece {
                hash_name: h,
                index: 2,
                record: rec(368),
            })
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::QuotaFull {
                stored_bytes: 900,
                quota_bytes: 1000,
                needed_bytes: 400
            }
        );
        assert!(err.to_string().contains("900 of 1000 bytes"));
        // Nothing was lost; replacing a piece by one of the same size fits.
        assert_eq!(
            s.execute(StoreRequest::GetPiece {
                hash_name: h,
                index: 1
            }),
            Ok(StoreReply::Piece(Some(rec(368))))
        );
        s.execute(StoreRequest::PutPiece {
            hash_name: h,
            index: 1,
            record: rec(368),
        })
        .unwrap();
        let Ok(StoreReply::List(list)) = s.execute(StoreRequest::List) else {
            panic!("list")
        };
        assert_eq!(list[0].pieces, vec![0, 1]);
        assert_eq!(list[0].stored_bytes, 900);
        s.execute(StoreRequest::Delete { hash_name: h }).unwrap();
        assert_eq!(s.used(), 0);
        assert_eq!(
            s.execute(StoreRequest::GetDescriptor { hash_name: h }),
            Ok(StoreReply::Descriptor(None))
        );
    }

    #[test]
    fn an_undrained_store_says_busy() {
        let mut s = MemStore::new(10);
        for i in 0..MEM_STORE_MAX_PENDING as u64 + 5 {
            s.submit(StoreOpId(i), StoreRequest::List);
        }
        let mut n = 0;
        let mut busy = 0;
        while let Some(c) = s.poll_completion() {
            n += 1;
            if matches!(c.result, Err(StoreError::Busy(_))) {
                busy += 1;
            }
        }
        assert_eq!(n, MEM_STORE_MAX_PENDING + 1);
        assert_eq!(busy, 1);
    }
}

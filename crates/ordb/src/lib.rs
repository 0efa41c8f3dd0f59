//! # onionmesh-ordb: the content layer (sans-IO)
//!
//! TODO(crate docs): filled in below once the parts exist.
#![forbid(unsafe_code)]

pub mod content;
pub mod download;
pub mod merkle;
mod ordb;
pub mod publish;
pub mod relay;
pub mod store;

pub use content::{
    hash_name_of, Descriptor, MetaError, PieceError, PieceRecord, VerifiedMeta, DEFAULT_PIECE_SIZE,
    MAX_PIECE_SIZE, MIN_PIECE_SIZE,
};
pub use download::{
    Download, DownloadConfig, DownloadError, DownloadEvent, DownloadInput, Progress, SourceId,
    SourceProblem,
};
pub use onionmesh_wire::db::{DbMsg, HashName};
pub use onionmesh_wire::Time;
pub use ordb::{Ordb, OrdbConfig, OrdbError, OrdbEvent, OrdbInput, OrdbOutput};
pub use publish::{publish_bytes, Publication, PublishError, Publisher};
pub use relay::{
    OrdbCirc, Relay, RelayConfig, RelayEvent, RelayId, RelayInput, RelayOutput, RequestId,
    RELAY_STORE_OP_BIT,
};
pub use store::{
    MemStore, Store, StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest,
    StoredContent,
};

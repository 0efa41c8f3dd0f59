//! # onionmesh-ordb: the content layer (sans-IO)
//!
//! What a visitor comes for: drop a file, get a link; open a link, stream the file. This crate
//! is the logic of it, with no IO: self-certifying content, the ORDB function (serve, relay,
//! advertise), the multi-source download scheduler and the storage interface. Its messages are
//! the `DB_*` relay messages of [`onionmesh_wire::db`]. Spec: Peersm's "DHT and Bridges",
//! "Content discovery", "Data validation", "Pieces and sliding window", "Requests", "Handling
//! the lists in the ORDBs", "Streaming", "Differences with Bittorrent", "Messages format",
//! improved as issue 9 says.
//!
//! ## Parts
//!
//! - [`content`], [`merkle`], [`publish`]: a file becomes pieces, a SHA-256 Merkle tree over
//!   them and signed metadata ([`VerifiedMeta`]); its hash_name is the first 160 bits of SHA-256
//!   of the metadata. Anyone can check the metadata against the hash_name and every piece
//!   against the root ([`Descriptor::verify`], [`Descriptor::verify_piece`]).
//! - [`torrent`] (issue 10): content from outside the mesh. A BitTorrent v1 info dictionary is
//!   a descriptor too ([`Descriptor::Torrent`]: hash_name = infohash, pieces checked by
//!   SHA-1), and so is a web file's [`onionmesh_wire::db::WebMeta`] ([`Descriptor::Web`]: the
//!   URL checked, the bytes trusted to the exit). A download may carry a `DB_SOURCE` hint
//!   ([`Ordb::download_from`]) and a selection ([`Ordb::select_file`]); a relay that finds
//!   nobody in the mesh hands a hinted query to its bridge ([`RelayOutput::Facilitate`]).
//! - [`store`]: the completion-based [`Store`] the driver owns (IndexedDB in the page,
//!   [`MemStore`] in the simulator and the bridge).
//! - [`download`]: one content from up to 5 sources ([`Download`]).
//! - [`relay`]: the ORDB function ([`Relay`]).
//! - [`Ordb`]: the owner of one relay and the downloads, and the only object the node glue
//!   (`node.ordb()`) talks to.
//!
//! ## Calling rules
//!
//! Every machine here is driven the same way: feed an input with `handle_input(now, ..)` (time
//! is the driver's [`Time`]; nothing here reads a clock or draws randomness it was not given
//! as a seed), then drain `poll_output` (or `poll_event`) until `None` and carry out each item
//! in order, and arm one timer at `poll_timeout`, feeding `Timeout` when it fires. For [`Ordb`]:
//!
//! - [`OrdbOutput::Store`]: run it on the store; feed the completion as [`OrdbInput::Store`].
//! - [`OrdbOutput::ToSource`] / [`OrdbOutput::ReplaceSource`]: a download's streams (one per
//!   circuit to an ORDB; the driver chooses the circuits and names them with [`SourceId`]s).
//! - [`OrdbOutput::Relay`]: answers on request streams ([`RequestId`]), forwarded queries over
//!   this node's circuits to other ORDBs ([`OrdbCirc`], [`RelayId`]), adverts, DHT lookups
//!   (`FindProviders`: `FIND_VALUE`, then circuits to the providers, answered with
//!   [`RelayInput::Providers`]; `Provide`: a provider record at the k closest nodes).
//! - [`OrdbOutput::Event`]: news for the page (metadata, stored pieces, completion, failures).
//!
//! ## Anonymity rules
//!
//! - A requester talks only to ORDBs, each at the end of one of its circuits. It never learns
//!   the holder's ID: answers arrive on its own stream, relayed by the ORDB, and nothing in a
//!   `DB_*` message names a node.
//! - A holder (or an ORDB) sees queries arrive on a stream of a circuit it is the last hop of
//!   ([`RequestId`] is a handle for that stream, nothing more). It never learns the requester's
//!   ID; the loop counter starts at a random value in `0..=2`, so the first ORDB cannot even tell
//!   a requester from another ORDB relaying for one.
//! - Only the requester, the ORDBs on the path and the holder see a hash_name; the hops inside
//!   circuits see encrypted cells. Adverts (`DB_INFO`) go to neighbour ORDBs, and name the
//!   content, not who first had it: a reference passed on carries no origin.
//! - Relays do not need to be trusted: the requester verifies every piece against the root, so
//!   a relay can only withhold or corrupt, and a corrupted piece is caught and its source dropped.
//!
//! - An ORDB forwarding a query reveals itself, not the requester, to the next ORDB or holder
//!   when that one chose it (a neighbour the holder built a channel to): the holder then knows
//!   which ORDB relayed, never for whom. A relay never forwards its own node's downloads.
//!
//! The node glue must keep these by construction: never put the requester's ID next to a
//! [`RequestId`] (a request arrives on a circuit someone else built, or on a neighbour's pipe,
//! and a neighbour relays only what others asked it), and build the circuits for
//! [`SourceId`]s and [`OrdbCirc`]s itself.
//!
//! ## Piece size: 64 KiB
//!
//! Three units, three sizes. The *transport* unit is the 498-byte relay cell: a piece crosses as
//! `DB_DATA` slices of 487 bytes. The *verification and storage* unit is the piece. The
//! *scheduling* unit is a query of 1..4 pieces. The publisher's piece size is 64 KiB
//! ([`DEFAULT_PIECE_SIZE`]; descriptors may declare any power of two from 16 to 256 KiB):
//!
//! - **Unverified bytes.** A piece is checked only once whole, so a requester buffers up to one
//!   piece per source unverified; 5 x 64 KiB is well inside the 500 kB window, while 256 KiB
//!   pieces would make one piece half the window and leave 2 sources idle.
//! - **Proof overhead.** One proof per piece, `log2(pieces)` hashes: for a 20 MB video, 320
//!   pieces, 9 hashes = 288 bytes per 64 KiB (0.4 %, one cell). 16 KiB pieces would cost four
//!   times the proofs and the store records for the same bytes.
//! - **Storage.** One IndexedDB record per piece: 64 KiB records keep the number of
//!   transactions small (320 for 20 MB) without the large structured-clone copies that stall
//!   the page with multi-megabyte records.
//! - **Seek granularity.** A seek fetches the piece holding the position first: 64 KiB is about
//!   half a second of a 1 Mbit/s video, so playback resumes after one piece on one circuit.
//! - **Loss on failure.** A bad or abandoned piece costs at most 64 KiB to fetch again, and an
//!   interrupted query resumes mid-piece from its first missing byte anyway.
//!
//! BitTorrent's 256 KiB-1 MiB pieces suit thousands of peers and a metadata file listing every
//! hash; here a handful of circuits and a Merkle root favour small pieces (spec, "Differences
//! with Bittorrent").
//!
//! ## Example
//!
//! A publisher A and a requester B, B's source being a stream straight to A's ORDB function:
//!
//! ```
//! use onionmesh_ordb::*;
//! use rand_chacha::rand_core::SeedableRng;
//! let now = Time::ZERO;
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let data = vec![7u8; 100_000];
//! let (publication, pieces) = publish_bytes(&mut rng, &data, "text/plain", "a.txt", DEFAULT_PIECE_SIZE).unwrap();
//! let name = publication.descriptor().hash_name();
//!
//! let (mut a, mut b) = (Ordb::new(now, OrdbConfig::default(), [1; 32]), Ordb::new(now, OrdbConfig::default(), [2; 32]));
//! let (mut store_a, mut store_b) = (MemStore::new(1 << 20), MemStore::new(1 << 20));
//! a.publish(now, &publication);
//! for (i, p) in pieces.into_iter().enumerate() { a.put_piece(now, name, i as u32, p); }
//! b.download(now, name).unwrap();
//! b.handle_input(now, OrdbInput::Download { hash_name: name, input: DownloadInput::AddSource(SourceId(1)) }).unwrap();
//!
//! let mut done = false;
//! while !done {
//!     let mut idle = true;
//!     while let Some(c) = store_a.poll_completion() { idle = false; a.handle_input(now, OrdbInput::Store(c)).unwrap(); }
//!     while let Some(c) = store_b.poll_completion() { idle = false; b.handle_input(now, OrdbInput::Store(c)).unwrap(); }
//!     while let Some(out) = a.poll_output() {
//!         idle = false;
//!         match out {
//!             OrdbOutput::Store { id, request } => store_a.submit(id, request),
//!             OrdbOutput::Relay(RelayOutput::Reply { msg, .. }) => b.handle_input(now, OrdbInput::Download {
//!                 hash_name: name, input: DownloadInput::Message { source: SourceId(1), msg } }).unwrap(),
//!             _ => {}
//!         }
//!     }
//!     while let Some(out) = b.poll_output() {
//!         idle = false;
//!         match out {
//!             OrdbOutput::Store { id, request } => store_b.submit(id, request),
//!             OrdbOutput::ToSource { msg: DbMsg::Query(query), .. } =>
//!                 a.handle_input(now, OrdbInput::Relay(RelayInput::Query { from: RequestId(9), query })).unwrap(),
//!             OrdbOutput::Event(OrdbEvent::Complete(h)) => { assert_eq!(h, name); done = true; }
//!             _ => {}
//!         }
//!     }
//!     assert!(!idle || done, "stuck");
//! }
//! assert_eq!(b.progress(&name).unwrap().bytes_have, 100_000);
//! ```
#![forbid(unsafe_code)]

pub mod content;
pub mod download;
pub mod merkle;
mod ordb;
pub mod publish;
pub mod relay;
pub mod store;
pub mod torrent;

pub use content::{
    hash_name_of, Descriptor, MetaError, PieceError, PieceRecord, VerifiedMeta, WebDescriptor,
    DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MAX_WEB_SIZE, MIN_PIECE_SIZE,
};
pub use download::{
    Download, DownloadConfig, DownloadError, DownloadEvent, DownloadInput, Progress, SourceId,
    SourceProblem,
};
pub use onionmesh_wire::db::{DbMsg, HashName};
pub use onionmesh_wire::Time;
pub use ordb::{
    LibraryEntry, Ordb, OrdbConfig, OrdbError, OrdbEvent, OrdbInput, OrdbOutput,
    MAX_FACILITATED_REMEMBERED,
};
pub use publish::{publish_bytes, Publication, PublishError, Publisher};
pub use relay::{
    OrdbCirc, Relay, RelayConfig, RelayEvent, RelayId, RelayInput, RelayOutput, RelayStats,
    RequestId, RELAY_STORE_OP_BIT,
};
pub use store::{
    record_len, MemStore, Store, StoreCompletion, StoreError, StoreOpId, StoreReply, StoreRequest,
    StoredContent,
};
pub use torrent::{TorrentError, TorrentFile, TorrentInfo, MAX_TORRENT_PIECE};

//! The content part of the JS `Node` class (issue 9 item 9): publish a file, download one,
//! read it while it downloads, stream it into a `<video>`, list and remove what is held. Also
//! the `Download` class.
//!
//! ```js
//! const { hashName, link } = await node.publish(file);          // file: a File or Blob
//! const dl = node.download(location.hash.slice(1));            // or the whole link
//! node.on(e => { if (e.type === 'content' && e.hashName === dl.hashName) console.log(e.event); });
//! await dl.streamTo(document.querySelector('video'));            // plays while it downloads
//! console.log(dl.progress());                                   // bytes, rateBps, circuits, etaS, ...
//! const bytes = await node.readContent(dl.hashName, 0, 1024);  // waits for the pieces
//! const blob = await dl.blob();                                 // once complete
//! for (const c of node.library()) console.log(c.name, c.bytesHave, '/', c.size);
//! await node.remove(dl.hashName);
//! ```
//!
//! Content lives in the driver's store (IndexedDB, start option `storeName`); reads go through
//! the driver's content reader (`content.rs`), streaming through the Service Worker `sw.js` and
//! `js/stream.js`.

use crate::api::BrowserNode;
use crate::args;
use crate::codes::{core_error, js_error, stopped, ErrorCode};
use crate::content::MAX_READ_BYTES;
use crate::driver::{remember, Driver, Shared};
use crate::events::set;
use crate::pending::Waiter;
use crate::stream::{self, StreamHandler};
use js_sys::{Array, Object, Promise, Uint8Array};
use onionmesh_node::ContentError;
use onionmesh_ordb::{
    Descriptor, HashName, OrdbError, PublishError, Publisher, TorrentFile, DEFAULT_PIECE_SIZE,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

/// The largest file `publish` takes: its pieces are held in memory until stored.
pub const MAX_PUBLISH_BYTES: f64 = (1u64 << 30) as f64;
/// `publish` reads the file in slices of this many bytes (a whole number of pieces).
const PUBLISH_SLICE: u64 = 4 << 20;

#[wasm_bindgen(typescript_custom_section)]
const TS_CONTENT: &str = r##"
/** Options of `Node.publish`. */
export interface PublishOptions {
  /** File name shown to downloaders (default: the File's name, else "file"). At most 255 bytes. */
  name?: string;
  /** MIME type (default: the Blob's type, else "application/octet-stream"). */
  type?: string;
}

/** What `Node.publish` resolves to. */
export interface Published {
  /** 40 hex characters: the content's self-certifying name. */
  hashName: string;
  /** This page's address without its fragment, then "#" and the hashName: a share link. */
  link: string;
  /** Bytes. */
  size: number;
  pieces: number;
}

/** What a content is: onionmesh's own signed content, a BitTorrent v1 torrent (hashName = its
 * infohash), or a web file an exit fetched (hashName names the URL). */
export type ContentKind = "onionmesh" | "bittorrent" | "web";

/** Where a download's bytes come from: the mesh (onionmesh content), BitTorrent through a
 * facilitator bridge (or pages that already hold the torrent), the web through an exit bridge. */
export type ContentSource = "mesh" | "bittorrent" | "web";

/** `Download.metadata()`: the content's verified description. With a file of a multi-file
 * torrent selected (`selectFile`), `name`, `type` and `size` are that file's. */
export interface ContentMetadata {
  name: string;
  /** MIME type (for a torrent, guessed from the file name's extension). */
  type: string;
  /** Bytes. */
  size: number;
  /** Pieces of the whole content. */
  pieces: number;
  /** Bytes per piece (all but the last). */
  pieceSize: number;
  kind: ContentKind;
}

/** One entry of `Download.files()`. */
export interface ContentFile {
  index: number;
  /** Path inside the torrent, "/" between folders. */
  path: string;
  /** Bytes. */
  size: number;
}

/** What `Node.parseTarget` makes of a `download` argument. */
export interface DownloadTarget {
  /** The hashName the download will have. */
  hashName: string;
  /** A share link, 40 hex digits (a hash name or infohash), a magnet link, or a web URL. */
  kind: "link" | "hash" | "magnet" | "web";
}

/** A finished web file, published as this page's own content. */
export interface PublishedAs {
  hashName: string;
  /** A share link other pages open to fetch it from the mesh. */
  link: string;
}

/** `Download.progress()`. */
export interface DownloadProgress {
  /** Verified bytes held. */
  bytes: number;
  /** Content size in bytes, null until the metadata arrived. */
  size: number | null;
  pieces: number;
  /** Verified pieces held. The last few may not be written to IndexedDB yet; a reload fetches
   * those again. The `progress` content event counts the stored ones. */
  piecesHave: number;
  /** Bytes per second over all circuits now. */
  rateBps: number;
  /** Circuits (sources) fetching now. */
  circuits: number;
  /** Seconds left at the current rate, null without a rate. */
  etaS: number | null;
  complete: boolean;
  /** Where the bytes come from: "bittorrent" or "web" once a facilitator fetched some of them
   * from outside the mesh (the ORDB that asked it says so), "mesh" while every byte came from
   * pages and ORDBs that hold the content; null until the content's description arrived. */
  source: ContentSource | null;
}

/** One entry of `Node.library()`: a content held whole or in part. */
export interface LibraryEntry {
  hashName: string;
  name: string;
  /** MIME type. */
  type: string;
  size: number;
  bytesHave: number;
  complete: boolean;
  downloading: boolean;
}

/** Content events. `metadata` carries the MIME type as `mime`. */
export type ContentNodeEvent =
  | { type: "content"; event: "metadata"; hashName: string; name: string; mime: string; size: number; pieces: number; kind: ContentKind }
  /** Piece `index` is verified and stored (of a download, or of a publication being stored). */
  | { type: "content"; event: "progress"; hashName: string; index: number; piecesHave: number; pieces: number }
  /** Every piece (of the selected file) is held. A web file is first published as this page's
   * content: `publishedAs` names it. */
  | { type: "content"; event: "done"; hashName: string; publishedAs?: PublishedAs }
  /** `reason` is a sentence. */
  | { type: "content"; event: "failed"; hashName: string; reason: string }
  /** This node served piece `index` to an ORDB. */
  | { type: "content"; event: "served"; hashName: string; index: number }
  /** Found in the store at start, incomplete: the node resumes it by itself once it has peers. */
  | { type: "content"; event: "resumable"; hashName: string; piecesHave: number; pieces: number; source?: string };
"##;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "LibraryEntry[]")]
    pub type LibraryList;
}

/// Bytes `[start, min(start + PUBLISH_SLICE, size))` of a file.
async fn read_slice(blob: &web_sys::Blob, start: u64, size: u64) -> Result<Vec<u8>, JsValue> {
    let end = (start + PUBLISH_SLICE).min(size);
    let part = blob.slice_with_f64_and_f64(start as f64, end as f64)?;
    let buffer = JsFuture::from(part.array_buffer()).await.map_err(|e| {
        js_error(
            ErrorCode::Browser,
            &format!(
                "The browser could not read the file ({}). Pick it again.",
                crate::codes::describe(&e)
            ),
        )
    })?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

fn file_changed() -> JsValue {
    js_error(
        ErrorCode::BadArgument,
        "The file changed while it was being published. Pick it again.",
    )
}

/// A CSPRNG for the content's signing key, seeded from the browser's.
fn fresh_rng() -> Result<ChaCha20Rng, JsValue> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| {
        js_error(
            ErrorCode::Browser,
            &format!("This browser has no usable random number generator ({e}); the file cannot be signed."),
        )
    })?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// A JS rejected promise with a code.
fn rejected(code: ErrorCode, message: &str) -> Promise {
    Promise::reject(&js_error(code, message))
}

fn content_error(e: &ContentError) -> JsValue {
    let code = match e {
        ContentError::Stopped => ErrorCode::Stopped,
        ContentError::Publish(PublishError::TooLarge) => ErrorCode::TooLarge,
        ContentError::Publish(_) => ErrorCode::BadArgument,
        ContentError::Ordb(OrdbError::TooManyDownloads(_)) => ErrorCode::ResourceLimit,
        _ => ErrorCode::Internal,
    };
    core_error(code, e)
}

/// `readContent`'s promise: parks a waiter in the driver's content reader.
fn read_promise(shared: &Shared, hash_name: HashName, offset: u64, len: u64) -> Promise {
    let (promise, waiter) = Waiter::new();
    let Some(waiter) = waiter else {
        return rejected(
            ErrorCode::Internal,
            "Could not make a promise. This is a bug.",
        );
    };
    let reject = waiter.reject.clone();
    let parked = shared.with(move |d, _| {
        if d.stopped {
            return Err((
                crate::content::Failure {
                    code: ErrorCode::Stopped,
                    message:
                        "This node has been stopped. Start a new one with Node.start(bridgeUrl)."
                            .into(),
                },
                waiter,
            ));
        }
        d.reader.read(hash_name, offset, len, waiter)
    });
    match parked {
        Ok(Ok(())) => {}
        Ok(Err((f, waiter))) => waiter.reject(f.code, &f.message),
        Err(e) => {
            let _ = reject.call1(&JsValue::NULL, &e);
        }
    }
    promise
}

/// A byte offset or length from JS: a whole number from 0 to 2^53 - 1.
fn byte_count(value: &JsValue, what: &str) -> Result<u64, JsValue> {
    match value.as_f64() {
        Some(n)
            if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 =>
        {
            Ok(n as u64)
        }
        _ => Err(args::bad_argument(format!(
            "{what} must be a whole number of bytes from 0 up, not {}.",
            value
                .as_string()
                .map(|s| format!("'{s}'"))
                .unwrap_or_else(|| format!("{value:?}"))
        ))),
    }
}

/// This page's address without its fragment.
fn page_address() -> String {
    let href = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    match href.split_once('#') {
        Some((base, _)) => base.to_owned(),
        None => href,
    }
}

fn string_option(opts: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    if opts.is_undefined() || opts.is_null() {
        return Ok(None);
    }
    let v = js_sys::Reflect::get(opts, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    args::string(&v, &format!("The option {key}")).map(Some)
}

async fn publish(shared: Weak<Shared>, file: JsValue, opts: JsValue) -> Result<JsValue, JsValue> {
    let blob = file.dyn_into::<web_sys::Blob>().map_err(|_| {
        args::bad_argument(
            "node.publish needs a File or a Blob, such as the file from an <input type=file> or a drop event."
                .into(),
        )
    })?;
    let size = blob.size();
    if size > MAX_PUBLISH_BYTES {
        // Tenths of a GiB in integers: formatting an f64 would bring the standard library's
        // float printing (about 17 KB) into the wasm bundle.
        let tenths = (size * 10.0 / MAX_PUBLISH_BYTES).round() as u64;
        return Err(js_error(
            ErrorCode::TooLarge,
            &format!(
                "This file is {}.{} GiB; a page can publish at most 1 GiB. Split it, or publish a smaller file.",
                tenths / 10,
                tenths % 10
            ),
        ));
    }
    let name = match string_option(&opts, "name")? {
        Some(n) => n,
        None => blob
            .dyn_ref::<web_sys::File>()
            .map(|f| f.name())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".into()),
    };
    let mime = match string_option(&opts, "type")? {
        Some(t) => t,
        None => Some(blob.type_())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
    };
    // Two passes over the file, a slice at a time, so it is never in memory twice: the first
    // hashes the pieces (the hash_name covers the Merkle root, known only at the end), the
    // second turns each piece into a record with its proof.
    let piece_size = DEFAULT_PIECE_SIZE;
    let mut publisher = Publisher::new(piece_size).map_err(|e| content_error(&e.into()))?;
    let slices = || (0..size as u64).step_by(PUBLISH_SLICE as usize);
    for start in slices() {
        let bytes = read_slice(&blob, start, size as u64).await?;
        publisher
            .push(&bytes)
            .map_err(|e| content_error(&e.into()))?;
    }
    if publisher.size() != size as u64 {
        return Err(file_changed());
    }
    let mut rng = fresh_rng()?;
    let publication = publisher
        .finish(&mut rng, &mime, &name)
        .map_err(|e| content_error(&e.into()))?;
    let pieces = publication.descriptor().piece_count();
    let mut records = Vec::with_capacity(pieces as usize);
    for start in slices() {
        let bytes = read_slice(&blob, start, size as u64).await?;
        for chunk in bytes.chunks(piece_size as usize) {
            let index = records.len() as u32;
            let record = publication
                .piece_record(index, chunk.to_vec())
                .map_err(|_| file_changed())?;
            records.push(record);
        }
    }
    if records.len() as u32 != pieces {
        return Err(file_changed());
    }
    let hash_name = publication.descriptor().hash_name();
    let (done, waiter) = Waiter::new();
    let waiter =
        waiter.ok_or_else(|| js_error(ErrorCode::Internal, "No promise. This is a bug."))?;
    let shared = shared.upgrade().ok_or_else(stopped)?;
    shared.with(|d, now| {
        if d.stopped {
            return Err(stopped());
        }
        d.node
            .ordb()
            .publish_prepared(now, &publication, records)
            .map_err(|e| content_error(&e))?;
        // Parked before the store runs, so a full store reaches this call too.
        if let Err((f, _)) = d.reader.wait_published(hash_name, waiter) {
            return Err(js_error(f.code, &f.message));
        }
        Ok(())
    })??;
    drop(shared);
    JsFuture::from(done).await?;
    let out = Object::new();
    set(&out, "hashName", hash_name.to_hex());
    set(
        &out,
        "link",
        format!("{}#{}", page_address(), hash_name.to_hex()),
    );
    set(&out, "size", size);
    set(&out, "pieces", pieces);
    Ok(out.into())
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Publish a file: read it (at most 1 GiB), split it into 64 KiB pieces under a Merkle tree,
    /// sign its metadata with a fresh key, store it (IndexedDB) and announce it in the DHT.
    /// Resolves once every piece is stored, with the hashName and a share link; the DHT
    /// announcement goes on in the background (and is retried while there are no peers).
    /// Rejects `BAD_ARGUMENT` (not a Blob, a name over 255 bytes), `TOO_LARGE`, `QUOTA_FULL`
    /// (nothing already stored is lost), `BROWSER` (the file could not be read), `STOPPED`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Published>")]
    pub fn publish(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Blob")] file: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PublishOptions | undefined")] opts: JsValue,
    ) -> Promise {
        future_to_promise(publish(Rc::downgrade(&self.shared), file, opts))
    }

    /// Start (or join) the download of a content. `target` is one of:
    /// - a share link (an address ending in `#<40 hex>`): onionmesh content, from the mesh;
    /// - 40 hex characters: a hash name or a BitTorrent infohash. It is asked for in the mesh,
    ///   and if no page holds it an ORDB hands the request to its bridge, a facilitator, which
    ///   fetches the torrent from BitTorrent. For a content this page already knows it uses
    ///   what was stored instead: the magnet link or URL the content came from, or, for
    ///   onionmesh content, the mesh only;
    /// - a magnet link `magnet:?xt=urn:btih:<infohash>&tr=...` (40 hex or 32 base32): the
    ///   same, its trackers passed on to the facilitator;
    /// - an `http://` or `https://` URL: fetched by an exit bridge at the end of a circuit
    ///   (the web server sees the bridge, never this page); once complete it is published as
    ///   this page's own content (the `done` event carries `publishedAs`).
    ///
    /// Calling it again for the same content gives a `Download` of the same download. A content
    /// already held whole completes at once (a `done` event). Throws `BAD_ARGUMENT` (with a
    /// sentence: a malformed magnet link or URL, anything else), `RESOURCE_LIMIT` (16
    /// downloads run already), `STOPPED`. Called before the node has 3 linked peers (right
    /// after start, say), the download waits for them (at most 15 s, then it tries with what
    /// there is); reads and `streamTo` wait meanwhile.
    ///
    /// ```js
    /// const dl = node.download('magnet:?xt=urn:btih:...');
    /// node.on((e) => { if (e.type === 'content' && e.event === 'metadata') console.log(dl.files()); });
    /// dl.selectFile(1);                       // a multi-file torrent: fetch only file 1
    /// await dl.streamTo(video);               // plays file 1 while it downloads
    /// ```
    pub fn download(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] target: JsValue,
    ) -> Result<Download, JsValue> {
        let target = target_of(&target)?;
        let hash_name = target.hash_name();
        let source = target.source();
        self.live(|d, now| {
            d.web_publisher = Some(publish_web);
            d.start_download(now, hash_name, source)
        })?
        .map_err(|e| content_error(&e))?;
        Ok(Download {
            shared: Rc::downgrade(&self.shared),
            hash_name,
        })
    }

    /// Check what `node.download` would be given, without starting anything (a page can say
    /// "malformed magnet link" before it has peers). Returns `{ hashName, kind }`: `kind` is
    /// `"link"` (a share link), `"hash"` (40 hex: a hash name or infohash), `"magnet"` or
    /// `"web"`. Throws `BAD_ARGUMENT` with the sentence `download` would throw.
    #[wasm_bindgen(js_name = parseTarget, unchecked_return_type = "DownloadTarget")]
    pub fn parse_target(
        #[wasm_bindgen(unchecked_param_type = "string")] target: JsValue,
    ) -> Result<JsValue, JsValue> {
        let text = target.as_string().unwrap_or_default();
        let parsed = target_of(&target)?;
        let kind = match &parsed {
            crate::target::Target::Content(_) => "link",
            crate::target::Target::Magnet { .. } if !text.trim().starts_with(['m', 'M']) => "hash",
            crate::target::Target::Magnet { .. } => "magnet",
            crate::target::Target::Web { .. } => "web",
        };
        let o = Object::new();
        set(&o, "hashName", parsed.hash_name().to_hex());
        set(&o, "kind", kind);
        Ok(o.into())
    }

    /// Bytes `[offset, offset + length)` of a content, clamped to its size and to 4 MiB per call
    /// (read again for the rest). Waits until the pieces are verified (the newest 32 are
    /// answered from memory, before their store write ends); a range not held moves the
    /// download there first (seeking). Rejects `NOT_FOUND` (neither held nor being
    /// downloaded), `NOT_COMPLETE` (not held and not being downloaded, or the download stopped
    /// first), `BUSY` (128 reads wait already), `BAD_ARGUMENT`, `STOPPED`.
    #[wasm_bindgen(js_name = readContent, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn read_content(
        &self,
        #[wasm_bindgen(js_name = "hashName", unchecked_param_type = "string")] hash_name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] offset: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] length: JsValue,
    ) -> Promise {
        let parsed = args::hash_name(&hash_name).and_then(|h| {
            Ok((
                h,
                byte_count(&offset, "The offset")?,
                byte_count(&length, "The length")?,
            ))
        });
        match parsed {
            Ok((h, offset, len)) => read_promise(&self.shared, h, offset, len),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Every content held, whole or in part (published here, downloaded, or found in the store
    /// at start once it has been read, a moment after `Node.start`).
    pub fn library(&self) -> Result<LibraryList, JsValue> {
        let entries = self.live(|d, _| d.node.ordb().library())?;
        let list: Array = entries
            .iter()
            .map(|e| {
                let o = Object::new();
                set(&o, "hashName", e.hash_name.to_hex());
                set(&o, "name", e.name.as_str());
                set(&o, "type", e.mime.as_str());
                set(&o, "size", e.size as f64);
                set(&o, "bytesHave", e.bytes_have as f64);
                set(&o, "complete", e.complete);
                set(&o, "downloading", e.downloading);
                JsValue::from(o)
            })
            .collect();
        Ok(list.unchecked_into())
    }

    /// Remove a content: cancel its download, stop serving it, delete it from the store. Resolves
    /// once deleted (also for a content that was not held). Reads waiting on it reject
    /// `NOT_FOUND`. Rejects `BAD_ARGUMENT`, `BUSY` (64 removals wait already), `STOPPED`,
    /// `BROWSER` (the store failed).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn remove(
        &self,
        #[wasm_bindgen(js_name = "hashName", unchecked_param_type = "string")] hash_name: JsValue,
    ) -> Promise {
        let h = match args::hash_name(&hash_name) {
            Ok(h) => h,
            Err(e) => return Promise::reject(&e),
        };
        let (promise, waiter) = Waiter::new();
        let Some(waiter) = waiter else {
            return rejected(ErrorCode::Internal, "No promise. This is a bug.");
        };
        let r = self.live(move |d, now| {
            d.forget_waiting_download(&h);
            d.selected.remove(&h);
            d.reader
                .wait_removed(h, waiter)
                .map(|()| d.node.ordb().remove(now, h))
        });
        match r {
            Ok(Ok(())) => promise,
            Ok(Err((f, _))) => rejected(f.code, &f.message),
            Err(e) => Promise::reject(&e),
        }
    }
}

/// One download (or a content held), as `node.download` returns it. Holds no bytes: every call
/// asks the node, and throws `STOPPED` once the node is gone.
#[wasm_bindgen]
pub struct Download {
    shared: Weak<Shared>,
    hash_name: HashName,
}

impl Download {
    fn shared(&self) -> Result<Rc<Shared>, JsValue> {
        self.shared.upgrade().ok_or_else(stopped)
    }
}

#[wasm_bindgen]
impl Download {
    /// 40 hex characters.
    #[wasm_bindgen(getter = hashName)]
    pub fn hash_name(&self) -> String {
        self.hash_name.to_hex()
    }

    /// The verified metadata, or `null` until it has arrived. With a file of a multi-file
    /// torrent selected, `name`, `type` and `size` are the file's.
    #[wasm_bindgen(unchecked_return_type = "ContentMetadata | null")]
    pub fn metadata(&self) -> Result<JsValue, JsValue> {
        let h = self.hash_name;
        let shared = self.shared()?;
        shared.with(|d, _| {
            let (Some(desc), Some(v)) = (d.reader.descriptor(&h), view(d, &h)) else {
                return JsValue::NULL;
            };
            let o = Object::new();
            set(&o, "name", v.name);
            set(&o, "type", v.mime);
            set(&o, "size", v.size as f64);
            set(&o, "pieces", desc.piece_count());
            set(&o, "pieceSize", desc.piece_size());
            set(&o, "kind", crate::views::content_kind(desc.kind()));
            o.into()
        })
    }

    /// The files of the content: `null` until its description arrived, then `[{ index, path,
    /// size }]`, one entry per file of a torrent (one entry for anything else).
    #[wasm_bindgen(unchecked_return_type = "ContentFile[] | null")]
    pub fn files(&self) -> Result<JsValue, JsValue> {
        let h = self.hash_name;
        let shared = self.shared()?;
        shared.with(|d, _| {
            let Some(desc) = d.reader.descriptor(&h) else {
                return JsValue::NULL;
            };
            let file = |index: usize, path: &str, size: u64| {
                let o = Object::new();
                set(&o, "index", index as u32);
                set(&o, "path", path);
                set(&o, "size", size as f64);
                JsValue::from(o)
            };
            let list: Array = match desc.torrent() {
                Some(t) => t
                    .files()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| file(i, &f.path, f.length))
                    .collect(),
                None => std::iter::once(file(0, desc.name(), desc.size())).collect(),
            };
            list.into()
        })
    }

    /// Fetch only file `index` of a multi-file torrent (the pieces overlapping it, its boundary
    /// pieces whole so they can be checked): `progress()`, `metadata()`, `streamTo` and `blob()`
    /// then act on that file, and `done` comes once it is held. Throws `BAD_ARGUMENT` before the
    /// file list is known (`files()` is null; wait for the `metadata` event) or for no such file,
    /// `STOPPED`.
    #[wasm_bindgen(js_name = selectFile)]
    pub fn select_file(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] index: JsValue,
    ) -> Result<(), JsValue> {
        let h = self.hash_name;
        let i = args::handle(&index, "The file index", f64::from(u32::MAX))? as usize;
        let shared = self.shared()?;
        shared.with(|d, now| {
            let count = match d.reader.descriptor(&h) {
                None => return Err(args::bad_argument(
                    "The file list is not known yet: wait until files() is not null (the metadata event), then select a file.".into(),
                )),
                Some(desc) => desc.torrent().map_or(1, |t| t.files().len()),
            };
            if i >= count {
                return Err(args::bad_argument(format!(
                    "This content has {count} file(s), numbered from 0; there is no file {i}."
                )));
            }
            if !d.reader.is_complete(&h) {
                let mut selected = d.node.ordb().select_file(now, h, i);
                if let Err(ContentError::Ordb(OrdbError::NotDownloading(_))) = selected {
                    // Another file of a torrent whose earlier pick is done: fetch again (with
                    // the source it was opened with), this time that file.
                    d.start_download(now, h, None)
                        .map_err(|e| content_error(&e))?;
                    selected = d.node.ordb().select_file(now, h, i);
                }
                selected.map_err(|e| core_error(ErrorCode::BadArgument, &e))?;
            }
            remember(&mut d.selected, h, i);
            Ok(())
        })?
    }

    /// The index of the file `selectFile` chose, or `null`.
    #[wasm_bindgen(js_name = selectedFile, unchecked_return_type = "number | null")]
    pub fn selected_file(&self) -> Result<JsValue, JsValue> {
        let h = self.hash_name;
        let shared = self.shared()?;
        shared.with(|d, _| {
            d.selected
                .get(&h)
                .map_or(JsValue::NULL, |i| JsValue::from(*i as u32))
        })
    }

    /// Where the download stands (also for a content held and not downloading: rate 0).
    #[wasm_bindgen(unchecked_return_type = "DownloadProgress")]
    pub fn progress(&self) -> Result<JsValue, JsValue> {
        let h = self.hash_name;
        let shared = self.shared()?;
        let (p, source, selection_held) = shared.with(|d, _| {
            let p = d.node.ordb().progress(&h);
            let facilitated = p.as_ref().is_some_and(|p| p.facilitated);
            let source = d
                .reader
                .descriptor(&h)
                .map(|desc| crate::views::content_source(desc.kind(), facilitated));
            // A selected file held whole is complete, whatever the rest of the torrent.
            let held = d.selected.contains_key(&h)
                && view(d, &h).is_some_and(|v| d.reader.holds_range(&h, v.offset, v.size));
            (p, source, held)
        })?;
        let o = Object::new();
        set(&o, "source", source.map_or(JsValue::NULL, JsValue::from));
        let num = |v: Option<u64>| v.map_or(JsValue::NULL, |n| JsValue::from(n as f64));
        match p {
            Some(p) => {
                set(&o, "bytes", p.bytes_have as f64);
                set(&o, "size", num(p.size));
                set(&o, "pieces", p.pieces);
                set(&o, "piecesHave", p.pieces_have);
                set(&o, "rateBps", p.rate_bps as f64);
                set(&o, "circuits", p.sources as u32);
                set(&o, "etaS", num(p.eta_s));
                set(&o, "complete", p.complete || selection_held);
            }
            None => {
                set(&o, "bytes", 0);
                set(&o, "size", JsValue::NULL);
                set(&o, "pieces", 0);
                set(&o, "piecesHave", 0);
                set(&o, "rateBps", 0);
                set(&o, "circuits", 0);
                set(&o, "etaS", JsValue::NULL);
                set(&o, "complete", false);
            }
        }
        Ok(o.into())
    }

    /// Play the content in `media` while it downloads, seeking included: registers the Service
    /// Worker (start option `serviceWorker`, default "sw.js" next to the page), waits until it
    /// controls the page, then sets `media.src` to the worker's URL
    /// "<scope>onionmesh/stream/<hashName>/<name>", which it answers from this node's
    /// `readContent`. Rejects `BROWSER` when Service Workers are unavailable or the worker does
    /// not take control, `BAD_ARGUMENT` (not a media element, or streaming switched off with
    /// `serviceWorker: null`), `STOPPED`.
    #[wasm_bindgen(js_name = streamTo, unchecked_return_type = "Promise<void>")]
    pub fn stream_to(
        &self,
        #[wasm_bindgen(unchecked_param_type = "HTMLMediaElement")] media: JsValue,
    ) -> Promise {
        let Ok(media) = media.dyn_into::<web_sys::HtmlMediaElement>() else {
            return rejected(
                ErrorCode::BadArgument,
                "streamTo needs a <video> or <audio> element.",
            );
        };
        let shared = match self.shared() {
            Ok(s) => s,
            Err(e) => return Promise::reject(&e),
        };
        let h = self.hash_name;
        let weak = self.shared.clone();
        let setup = shared.with(move |d, _| {
            if d.stopped {
                return Err(stopped());
            }
            let sw = d.service_worker.clone().ok_or_else(|| {
                js_error(
                    ErrorCode::BadArgument,
                    "Streaming is switched off: this node was started with serviceWorker: null. Start it with the URL of sw.js to play while downloading.",
                )
            })?;
            let handler = d
                .stream_handler
                .get_or_insert_with(|| StreamHandler::new(answerer(weak)))
                .function();
            let name = view(d, &h).map_or_else(|| h.to_hex(), |v| v.name);
            Ok((sw, handler, name))
        });
        match setup {
            Ok(Ok((sw, handler, name))) => {
                stream::stream_to(&handler, &sw, &h.to_hex(), &name, &media)
            }
            Ok(Err(e)) | Err(e) => Promise::reject(&e),
        }
    }

    /// The whole content as a `Blob` typed with its MIME type, assembled from the store 4 MiB
    /// at a time. Rejects `NOT_COMPLETE` until every piece is held, `STOPPED`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Blob>")]
    pub fn blob(&self) -> Promise {
        let weak = self.shared.clone();
        let h = self.hash_name;
        future_to_promise(async move {
            let shared = weak.upgrade().ok_or_else(stopped)?;
            let (start, size, mime) = shared.with(|d, _| {
                match view(d, &h) {
                    Some(v) if d.reader.holds_range(&h, v.offset, v.size) => {
                        Ok((v.offset, v.size, v.mime))
                    }
                    _ => Err(js_error(
                        ErrorCode::NotComplete,
                        &format!(
                            "{} is not complete yet; wait for its \"done\" event, then ask for the blob again.",
                            h.to_hex()
                        ),
                    )),
                }
            })??;
            drop(shared);
            let bag = web_sys::BlobPropertyBag::new();
            bag.set_type(&mime);
            let mut blob =
                web_sys::Blob::new_with_u8_array_sequence_and_options(&Array::new(), &bag)?;
            let end = start + size;
            let mut offset = start;
            while offset < end {
                let promise = {
                    let shared = weak.upgrade().ok_or_else(stopped)?;
                    read_promise(&shared, h, offset, MAX_READ_BYTES.min(end - offset))
                };
                let chunk: Uint8Array = JsFuture::from(promise).await?.unchecked_into();
                if chunk.length() == 0 {
                    return Err(js_error(
                        ErrorCode::Internal,
                        "The store returned no bytes while the content was being assembled. This is a bug.",
                    ));
                }
                offset += u64::from(chunk.length());
                // Blobs are composed by reference: each step keeps the earlier parts without
                // copying them, so the page holds one chunk at a time in script memory.
                blob = web_sys::Blob::new_with_blob_sequence_and_options(
                    &Array::of2(&blob, &chunk),
                    &bag,
                )?;
            }
            Ok(blob.into())
        })
    }

    /// Stop fetching; what is stored stays (and is served). Reads waiting for missing pieces
    /// reject `NOT_COMPLETE`. Does nothing for a download that already ended.
    pub fn cancel(&self) {
        let h = self.hash_name;
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared.with(|d, now| {
                if d.stopped {
                    return;
                }
                d.forget_waiting_download(&h);
                let _ = d.node.ordb().cancel(now, h);
                d.reader.download_ended(h, Some("it was cancelled"));
            });
        }
    }
}

/// The node's answerer of the Service Worker's questions (see `stream.rs`).
fn answerer(
    weak: Weak<Shared>,
) -> impl FnMut(JsValue, JsValue, JsValue, JsValue) -> Promise + 'static {
    move |op, hash_name, offset, length| {
        let Some(shared) = weak.upgrade() else {
            return Promise::reject(&stopped());
        };
        let h = match args::hash_name(&hash_name) {
            Ok(h) => h,
            Err(e) => return Promise::reject(&e),
        };
        match op.as_string().as_deref() {
            Some("info") => {
                // A zero-length read settles once the metadata is known.
                let known = read_promise(&shared, h, 0, 0);
                let weak = weak.clone();
                future_to_promise(async move {
                    JsFuture::from(known).await?;
                    let shared = weak.upgrade().ok_or_else(stopped)?;
                    shared.with(|d, _| {
                        let o = Object::new();
                        if let Some(v) = view(d, &h) {
                            set(&o, "size", v.size as f64);
                            set(&o, "type", v.mime);
                            set(&o, "name", v.name);
                        }
                        JsValue::from(o)
                    })
                })
            }
            Some("read") => {
                match (
                    byte_count(&offset, "The offset"),
                    byte_count(&length, "The length"),
                ) {
                    (Ok(o), Ok(l)) => {
                        // Offsets are the selected file's (the whole content's without one).
                        let range = shared.with(|d, _| view(d, &h).map(|v| (v.offset, v.size)));
                        match range {
                            Ok(Some((start, size))) => read_promise(
                                &shared,
                                h,
                                start + o.min(size),
                                l.min(size - o.min(size)),
                            ),
                            Ok(None) => read_promise(&shared, h, o, l),
                            Err(e) => Promise::reject(&e),
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => Promise::reject(&e),
                }
            }
            _ => rejected(
                ErrorCode::BadArgument,
                "The Service Worker asked something unknown.",
            ),
        }
    }
}

/// `node.download`'s argument, checked (see `target.rs`).
fn target_of(value: &JsValue) -> Result<crate::target::Target, JsValue> {
    let text = value.as_string().ok_or_else(|| {
        args::bad_argument(
            "node.download needs a string: a share link, a magnet link, a 40-character hash or infohash, or an http(s) address."
                .into(),
        )
    })?;
    crate::target::parse(&text).map_err(|e| args::bad_argument(e.to_string()))
}

/// What reads, `blob`, `streamTo` and `metadata` act on: the selected file of a torrent, or the
/// whole content. `None` until the descriptor is known.
struct View {
    offset: u64,
    size: u64,
    name: String,
    mime: String,
}

fn selected_file<'a>(d: &'a Driver, h: &HashName) -> Option<&'a TorrentFile> {
    let i = *d.selected.get(h)?;
    d.reader.descriptor(h)?.torrent()?.files().get(i)
}

fn view(d: &Driver, h: &HashName) -> Option<View> {
    let desc: &Descriptor = d.reader.descriptor(h)?;
    Some(match selected_file(d, h) {
        Some(f) => View {
            offset: f.offset,
            size: f.length,
            name: f.path.rsplit('/').next().unwrap_or(&f.path).to_owned(),
            mime: onionmesh_ordb::torrent::mime_for(&f.path).to_owned(),
        },
        None => View {
            offset: 0,
            size: desc.size(),
            name: desc.name().to_owned(),
            mime: desc.mime().to_owned(),
        },
    })
}

/// A web file an exit fetched is complete (the driver held its `done` back): publish its
/// bytes as this page's own content (a new hash_name under a Merkle tree, so other pages fetch
/// it from the mesh and check it), then send `done` with `publishedAs`. If publishing fails
/// (a full store), `done` goes out without it and the log says why; the file stays readable
/// under its request's hashName either way.
pub fn publish_web(weak: Weak<Shared>, h: HashName) {
    wasm_bindgen_futures::spawn_local(async move {
        let result = publish_held(weak.clone(), h).await;
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if let Ok(out) = &result {
            let get = |k: &str| {
                js_sys::Reflect::get(out, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
            };
            if let (Some(hash_name), Some(link)) = (get("hashName"), get("link")) {
                shared.published_as(h, hash_name, link);
            }
        }
        let _ = shared.with(|d, _| {
            d.publishing.retain(|x| *x != h);
            if let Err(e) = &result {
                d.warn(format!(
                    "The web file {} arrived whole, but could not be kept as this page's own content: {}",
                    h.to_hex(),
                    crate::codes::describe(e)
                ));
            }
            d.push_event(onionmesh_node::Event::Content(
                onionmesh_node::ContentEvent::Done { hash_name: h },
            ));
        });
    });
}

async fn publish_held(weak: Weak<Shared>, h: HashName) -> Result<JsValue, JsValue> {
    let download = Download {
        shared: weak.clone(),
        hash_name: h,
    };
    let opts = Object::new();
    if let Some(Ok(Some(v))) = weak.upgrade().map(|s| s.with(|d, _| view(d, &h))) {
        set(&opts, "name", v.name);
        set(&opts, "type", v.mime);
    }
    let blob = JsFuture::from(download.blob()).await?;
    publish(weak, blob, opts.into()).await
}

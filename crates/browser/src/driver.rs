//! The driver: feeds browser events into the sans-IO [`onionmesh_node::Node`] with
//! `handle_input(now, Input)` and carries out its outputs. Everything the node needs from the
//! world goes through here: the bridge transport (and its reconnections), the peer links, the
//! one timer, the page's `pagehide`, and the promises waiting on the core.
//!
//! Layers: this module uses the leaf helpers (`codes`, `timer`, `events`, `pending`) and the
//! two wrappers (`bridge`, `link`), which report back through sinks it gives them; only the JS
//! API (`api`, `api_onion`, `api_dht`) uses this module.
//!
//! Ownership: the JS `Node` object holds the only strong reference ([`Shared`]); every JS callback
//! and pending future holds a `Weak`. Dropping the JS object (or `stop()`) therefore drops the
//! WebSocket, every peer connection, the timer and all their closures.
//!
//! Re-entrancy: the driver is borrowed while it executes outputs, and subscriber callbacks run
//! only after that borrow is released, so they may call back into the node. A browser event that
//! still finds the driver busy (it should not happen: events are tasks) is retried as a microtask
//! instead of panicking.

use crate::bridge::{BridgeEvent, BridgeSink, BridgeTransport};
use crate::codes::{describe, js_error, ErrorCode};
use crate::content::{Reader, ReaderOutput, READER_STORE_OP_BIT};
use crate::events;
use crate::link::{LinkEvent, LinkSink, PeerLink, STALL_MS};
use crate::pending::{Promises, Waiter};
use crate::store::StoreQueue;
use crate::stream::StreamHandler;
use crate::timer::{self, Timer};
use onionmesh_bounded::FlatMap;
use onionmesh_crypto::Identity;
use onionmesh_node::{ContentEvent, Event, Input, LinkId, LinkState, LogLevel, Node, Output, Time};
use onionmesh_ordb::{HashName, OrdbError, Store, StoreCompletion};
use onionmesh_wire::db::{DbSource, DescriptorKind};
use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// A connection attempt to the bridge (the first, and every reconnection) that has not opened by
/// then is given up (and the core schedules the next one).
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Opens one connection to the bridge, reporting to the given sink. An `Err` is a sentence.
pub type Connector = Box<dyn FnMut(BridgeSink) -> Result<Box<dyn BridgeTransport>, String>>;

/// What the JS `Node` object owns.
pub struct Shared {
    pub driver: RefCell<Driver>,
    pub subscribers: RefCell<Subscribers>,
    /// Events waiting for delivery, and whether a delivery loop is running (so that events caused
    /// by a subscriber are delivered after the current one, in order).
    pending: RefCell<VecDeque<Event>>,
    dispatching: Cell<bool>,
    /// Web files published as this page's content: request hashName -> (hashName, link), for
    /// their `done` event's `publishedAs`. At most [`MAX_REMEMBERED`].
    published: RefCell<FlatMap<HashName, (String, String)>>,
}

#[derive(Default)]
pub struct Subscribers {
    next_id: u32,
    list: Vec<(u32, js_sys::Function)>,
}

impl Subscribers {
    pub fn add(&mut self, f: js_sys::Function) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.list.push((self.next_id, f));
        self.next_id
    }

    pub fn remove(&mut self, id: u32) {
        self.list.retain(|(i, _)| *i != id);
    }

    pub fn clear(&mut self) {
        self.list.clear();
    }
}

/// The promise `Node.start` waits on: settled by the first connection's outcome.
struct StartWaiter {
    resolve: js_sys::Function,
    reject: js_sys::Function,
}

/// The page's `pagehide` listener; removed when dropped.
struct PageHide {
    window: web_sys::Window,
    callback: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for PageHide {
    fn drop(&mut self) {
        let _ = self.window.remove_event_listener_with_callback(
            "pagehide",
            self.callback.as_ref().unchecked_ref(),
        );
    }
}

pub struct Driver {
    pub node: Node,
    me: Weak<Shared>,
    /// For sentences: the bridge URL (or the test transport's name).
    bridge_label: String,
    connector: Connector,
    identity: Rc<Identity>,
    /// Counts bridge connection attempts; reports from an older one are ignored.
    generation: u64,
    transport: Option<Box<dyn BridgeTransport>>,
    /// Gives the current attempt [`CONNECT_TIMEOUT_MS`] to open.
    connect_timer: Option<Timer>,
    links: FlatMap<LinkId, PeerLink>,
    /// Links the core has closed whose queued frames are still going into the channel.
    closing: FlatMap<LinkId, PeerLink>,
    link_sink: LinkSink,
    /// The one armed timer, for the core's `poll_timeout`.
    timer: Option<(Time, Timer)>,
    start: Option<StartWaiter>,
    /// DHT promises.
    pub promises: Promises,
    pub stopped: bool,
    events: Vec<Event>,
    /// The content store (IndexedDB, or memory): requests are submitted as the core makes
    /// them, completions drained in [`Driver::pump`].
    store: StoreQueue,
    /// What `readContent`, `blob`, `publish` and `remove` wait on.
    pub reader: Reader<Waiter>,
    /// Downloads waiting for peers: partial ones found in the store at start, and those the
    /// page started before the node had [`RESUME_PEERS`] linked peers (the core fails a download
    /// at once when it knows no ORDB to ask). They start once it has, or after
    /// [`RESUME_AFTER_MS`] with whatever peers there are. At most [`MAX_RESUMABLE`].
    resumable: Vec<HashName>,
    resume_timer: Option<Timer>,
    /// Where the page said a download can be fetched from outside the mesh (a magnet link or
    /// a web URL, issue 10), sent as `DB_SOURCE` on its source streams. At most
    /// [`MAX_REMEMBERED`] (the oldest forgotten: a retry then asks the mesh only).
    sources: FlatMap<HashName, DbSource>,
    /// The file of a multi-file torrent each download was restricted to (`selectFile`). At
    /// most [`MAX_REMEMBERED`].
    pub selected: FlatMap<HashName, usize>,
    /// Web files whose `done` is held back while they are published as this page's content.
    pub publishing: Vec<HashName>,
    /// What publishes a finished web file as this page's own content and then sends its `done`
    /// with `publishedAs`. Set by the JS API when it starts a download (`api_content.rs`), so
    /// the driver calls up into the API layer without importing it; `None`: `done` goes out as
    /// it is.
    pub web_publisher: Option<fn(Weak<Shared>, HashName)>,
    /// Content events held back until `Node.start` resolves (nobody is subscribed before), so
    /// the page sees `resumable` for what the store held. `None` once delivered.
    held_back: Option<Vec<Event>>,
    /// The Service Worker script for `streamTo` (`None`: streaming is off).
    pub service_worker: Option<String>,
    /// The page-side answerer of the Service Worker's questions, made at the first `streamTo`.
    pub stream_handler: Option<StreamHandler>,
    _pagehide: Option<PageHide>,
}

/// Most downloads waiting for peers (the core runs at most 16 at once anyway).
const MAX_RESUMABLE: usize = 16;
/// Most download sources and file selections remembered.
pub const MAX_REMEMBERED: usize = 64;
/// Linked peers wanted before resuming downloads: enough for a 3-hop circuit's first hop and
/// an ORDB at its end.
const RESUME_PEERS: usize = 3;
/// After this, downloads found at start are resumed with whatever peers there are.
const RESUME_AFTER_MS: u64 = 15_000;

impl Shared {
    pub fn new(
        node: Node,
        bridge_label: String,
        identity: Identity,
        connector: Connector,
        store: Box<dyn Store>,
        service_worker: Option<String>,
    ) -> Rc<Shared> {
        Rc::new_cyclic(|me: &Weak<Shared>| {
            let weak = me.clone();
            let link_sink: LinkSink = Rc::new(move |link, ev| {
                callback(&weak, move |d, now| d.on_link_event(now, link, ev))
            });
            Shared {
                driver: RefCell::new(Driver {
                    node,
                    me: me.clone(),
                    bridge_label,
                    connector,
                    identity: Rc::new(identity),
                    generation: 0,
                    transport: None,
                    connect_timer: None,
                    links: FlatMap::new(),
                    closing: FlatMap::new(),
                    link_sink,
                    timer: None,
                    start: None,
                    promises: Promises::default(),
                    stopped: false,
                    events: Vec::new(),
                    store: StoreQueue::new(store),
                    reader: Reader::default(),
                    resumable: Vec::new(),
                    resume_timer: None,
                    sources: FlatMap::new(),
                    selected: FlatMap::new(),
                    publishing: Vec::new(),
                    web_publisher: None,
                    held_back: Some(Vec::new()),
                    service_worker,
                    stream_handler: None,
                    _pagehide: pagehide_listener(me),
                }),
                subscribers: RefCell::new(Subscribers::default()),
                pending: RefCell::new(VecDeque::new()),
                dispatching: Cell::new(false),
                published: RefCell::new(FlatMap::new()),
            }
        })
    }

    /// Run `f` on the driver, carry out every output, re-arm the timer, then deliver events.
    /// Fails only if the driver is already borrowed (a re-entrant call).
    ///
    /// Generic only around `f`: the borrow and the pump are out-of-line functions, so the ~50
    /// callers do not each get a copy of them in the wasm.
    pub fn with<R>(&self, f: impl FnOnce(&mut Driver, Time) -> R) -> Result<R, JsValue> {
        let mut d = self.borrow_driver()?;
        let now = timer::now();
        let result = f(&mut d, now);
        self.pump_and_deliver(d, now);
        Ok(result)
    }

    #[inline(never)]
    fn borrow_driver(&self) -> Result<RefMut<'_, Driver>, JsValue> {
        self.driver.try_borrow_mut().map_err(|_| {
            js_error(
                ErrorCode::Internal,
                "The node is busy handling another call; try again from a later task.",
            )
        })
    }

    /// Pump, release the driver, then deliver the events (subscribers may call into the node).
    #[inline(never)]
    fn pump_and_deliver(&self, mut d: RefMut<'_, Driver>, now: Time) {
        d.pump(now);
        let events = std::mem::take(&mut d.events);
        drop(d);
        self.deliver(events);
    }

    /// A web file (request `request`) was published as `hash_name` with share link `link`.
    pub fn published_as(&self, request: HashName, hash_name: String, link: String) {
        remember(&mut self.published.borrow_mut(), request, (hash_name, link));
    }

    pub fn deliver(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.pending.borrow_mut().extend(events);
        if self.dispatching.replace(true) {
            // An outer loop (a subscriber called into the node) delivers these in order.
            return;
        }
        loop {
            let Some(event) = self.pending.borrow_mut().pop_front() else {
                break;
            };
            let obj = events::to_js(&event);
            if let Event::Content(ContentEvent::Done { hash_name }) = &event {
                if let Some((h, link)) = self.published.borrow().get(hash_name) {
                    let p = js_sys::Object::new();
                    events::set(&p, "hashName", h.as_str());
                    events::set(&p, "link", link.as_str());
                    events::set(obj.unchecked_ref(), "publishedAs", p);
                }
            }
            // Copy the list: a callback may subscribe or unsubscribe.
            let subs: Vec<js_sys::Function> = self
                .subscribers
                .borrow()
                .list
                .iter()
                .map(|(_, f)| f.clone())
                .collect();
            for f in subs {
                if let Err(err) = f.call1(&JsValue::NULL, &obj) {
                    // A broken callback must not break the node.
                    web_sys::console::error_2(
                        &"onionmesh: an event callback threw; the node carries on:".into(),
                        &err,
                    );
                }
            }
        }
        self.dispatching.set(false);
    }
}

/// Stop the node when the page goes away (tab closed, navigation, reload), so that its
/// neighbours see its links and its bridge connection close at once instead of waiting for a
/// timeout. Pages restored from the back/forward cache must start a new node.
fn pagehide_listener(me: &Weak<Shared>) -> Option<PageHide> {
    let window = web_sys::window()?;
    let weak = me.clone();
    let callback = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
        callback(&weak, |d, now| d.stop(now, "the page is going away"));
    });
    window
        .add_event_listener_with_callback("pagehide", callback.as_ref().unchecked_ref())
        .ok()?;
    Some(PageHide { window, callback })
}

/// Enter the driver from a JS callback or a future. Does nothing once the node is gone.
pub fn callback(shared: &Weak<Shared>, f: impl FnOnce(&mut Driver, Time) + 'static) {
    let Some(s) = shared.upgrade() else { return };
    if s.driver.try_borrow_mut().is_err() {
        let weak = shared.clone();
        wasm_bindgen_futures::spawn_local(async move { callback(&weak, f) });
        return;
    }
    let _ = s.with(|d, now| {
        if !d.stopped {
            f(d, now)
        }
    });
}

impl Driver {
    /// Open the first bridge connection and remember the `Node.start` promise's functions: it
    /// resolves when the connection opens and rejects (`NO_BRIDGE`) when it fails or does not
    /// open within [`CONNECT_TIMEOUT_MS`].
    pub fn start(&mut self, now: Time, resolve: js_sys::Function, reject: js_sys::Function) {
        self.start = Some(StartWaiter { resolve, reject });
        self.connect_bridge(now);
    }

    /// One connection attempt (the first, or an `Output::ConnectBridge`).
    fn connect_bridge(&mut self, now: Time) {
        self.generation += 1;
        self.transport = None;
        let gen = self.generation;
        let weak = self.me.clone();
        let sink = BridgeSink {
            report: Rc::new(move |ev| {
                callback(&weak, move |d, now| d.on_bridge_event(now, gen, ev))
            }),
            identity: self.identity.clone(),
        };
        match (self.connector)(sink) {
            Ok(t) => {
                self.transport = Some(t);
                let weak = self.me.clone();
                self.connect_timer = Some(Timer::new(CONNECT_TIMEOUT_MS, move || {
                    callback(&weak, move |d, now| d.on_connect_timeout(now, gen))
                }));
            }
            Err(reason) => self.bridge_failed(now, &reason),
        }
    }

    fn on_bridge_event(&mut self, now: Time, gen: u64, ev: BridgeEvent) {
        if gen != self.generation {
            return; // a report from a connection we have already given up
        }
        match ev {
            BridgeEvent::Opened => {
                self.connect_timer = None;
                if let Some(w) = self.start.take() {
                    let _ = w.resolve.call0(&JsValue::NULL);
                }
                self.node.handle_input(now, Input::BridgeOpened);
            }
            BridgeEvent::Frame(bytes) => self.node.handle_input(now, Input::BridgeFrame(&bytes)),
            BridgeEvent::Closed(reason) => self.bridge_failed(now, &reason),
        }
    }

    fn on_connect_timeout(&mut self, now: Time, gen: u64) {
        if gen != self.generation || self.connect_timer.is_none() {
            return;
        }
        let reason = format!(
            "the bridge did not answer within {} seconds",
            CONNECT_TIMEOUT_MS / 1000
        );
        self.bridge_failed(now, &reason);
    }

    /// The current connection is gone (or never opened): tell the core, which decides when to
    /// try again (`Output::ConnectBridge`), and reject `Node.start` if it is still waiting.
    fn bridge_failed(&mut self, now: Time, reason: &str) {
        self.generation += 1;
        self.transport = None;
        self.connect_timer = None;
        if let Some(w) = self.start.take() {
            let msg = format!(
                "Could not connect to the bridge at {}: {reason}. Check that the bridge is running and that the address is right, then try again.",
                self.bridge_label
            );
            let _ = w
                .reject
                .call1(&JsValue::NULL, &js_error(ErrorCode::NoBridge, &msg));
        }
        self.node.handle_input(now, Input::BridgeClosed { reason });
    }

    fn on_link_event(&mut self, now: Time, link: LinkId, ev: LinkEvent) {
        if self.closing.contains_key(&link) {
            self.on_closing_event(link, ev);
            return;
        }
        let Some(l) = self.links.get_mut(&link) else {
            if let LinkEvent::DataChannel(dc) = ev {
                dc.close();
            }
            return;
        };
        let input = match ev {
            LinkEvent::OfferReady(sdp) => Input::OfferReady { link, sdp },
            LinkEvent::AnswerReady(sdp) => Input::AnswerReady { link, sdp },
            LinkEvent::Failed(reason) => {
                return self.node.handle_input(
                    now,
                    Input::LinkFailed {
                        link,
                        reason: &reason,
                    },
                )
            }
            LinkEvent::Opened => Input::LinkOpened { link },
            LinkEvent::Closed(reason) => {
                return self.node.handle_input(
                    now,
                    Input::LinkClosed {
                        link,
                        reason: &reason,
                    },
                )
            }
            LinkEvent::Frame(bytes) => {
                return self.node.handle_input(
                    now,
                    Input::LinkFrame {
                        link,
                        bytes: &bytes,
                    },
                )
            }
            LinkEvent::Drained => return self.flush_link(now, link),
            LinkEvent::DataChannel(dc) => {
                if !l.attach_channel(dc) {
                    return;
                }
                Input::LinkOpened { link }
            }
            LinkEvent::Stalled => {
                let queued = l.queued_bytes();
                if queued == 0 {
                    return;
                }
                // The peer's fault, not the local sender's: it gets its own sentence.
                let reason = format!(
                    "the peer has read nothing for {} s while {queued} bytes wait for it",
                    STALL_MS / 1000
                );
                return self.node.handle_input(
                    now,
                    Input::LinkClosed {
                        link,
                        reason: &reason,
                    },
                );
            }
            LinkEvent::CloseDeadline => return,
        };
        self.node.handle_input(now, input);
    }

    /// A link the core has closed, still sending what was accepted before the close.
    fn on_closing_event(&mut self, link: LinkId, ev: LinkEvent) {
        let Some(l) = self.closing.get_mut(&link) else {
            return;
        };
        let done = match ev {
            LinkEvent::Drained => !matches!(l.flush(), Ok(false)) || l.queued_bytes() == 0,
            LinkEvent::CloseDeadline | LinkEvent::Closed(_) | LinkEvent::Failed(_) => true,
            _ => false,
        };
        if !done {
            return;
        }
        if let Some(l) = self.closing.remove(&link) {
            let (frames, bytes) = (l.queued_frames(), l.queued_bytes());
            if frames > 0 {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "{frames} frames ({bytes} bytes) queued before a link closed were dropped: the peer did not take them in time"
                    ),
                );
            }
        }
    }

    fn flush_link(&mut self, now: Time, link: LinkId) {
        match self.links.get_mut(&link).map(PeerLink::flush) {
            Some(Err(reason)) => self.node.handle_input(
                now,
                Input::LinkClosed {
                    link,
                    reason: &reason,
                },
            ),
            Some(Ok(true)) => self.node.handle_input(
                now,
                Input::LinkCongestion {
                    link,
                    blocked: false,
                },
            ),
            _ => {}
        }
    }

    /// Bytes waiting in the driver's per-link queues, over all links (for tests and diagnostics).
    pub fn queued_bytes(&self) -> usize {
        self.links.values().map(PeerLink::queued_bytes).sum()
    }

    /// Close everything: every link, the bridge, the timer; reject every waiting promise with
    /// `STOPPED`. Events for the closes are delivered.
    pub fn stop(&mut self, now: Time, reason: &str) {
        if self.stopped {
            return;
        }
        let stopped_msg = format!("The node stopped ({reason}) before this call finished.");
        if let Some(w) = self.start.take() {
            let _ = w
                .reject
                .call1(&JsValue::NULL, &js_error(ErrorCode::Stopped, &stopped_msg));
        }
        self.promises.reject_all(ErrorCode::Stopped, &stopped_msg);
        self.node.stop();
        self.pump(now);
        for (waiter, f) in self.reader.stop(&stopped_msg) {
            waiter.reject(f.code, &f.message);
        }
        self.stream_handler = None;
        self.resume_timer = None;
        // No flushing on the way out: the page is going away or asked for it.
        self.links.clear();
        self.closing.clear();
        self.transport = None;
        self.connect_timer = None;
        self.timer = None;
        self._pagehide = None;
        self.stopped = true;
    }

    /// Drain the core's outputs and carry them out in order, then re-arm the timer.
    pub fn pump(&mut self, now: Time) {
        loop {
            let mut busy = false;
            while let Some(out) = self.node.poll_output() {
                busy = true;
                self.execute(now, out);
            }
            busy |= self.drain_store(now);
            while let Some(o) = self.reader.poll_output() {
                busy = true;
                self.reader_output(now, o);
            }
            if !busy {
                break;
            }
        }
        if self.stopped {
            return;
        }
        let want = self.node.poll_timeout();
        if self.timer.as_ref().map(|(t, _)| *t) != want {
            self.timer = want.map(|t| {
                let me = self.me.clone();
                // Round up so the core never sees the timer fire before its deadline.
                let timer = Timer::new(t.since(now) + 1, move || {
                    callback(&me, |d, now| {
                        d.timer = None;
                        d.node.handle_input(now, Input::Timeout);
                    })
                });
                (t, timer)
            });
        }
    }

    fn execute(&mut self, now: Time, out: Output) {
        match out {
            Output::SendBridge(bytes) => {
                let Some(t) = self.transport.as_mut() else {
                    return;
                };
                if let Err(reason) = t.send(&bytes) {
                    self.bridge_failed(now, &reason);
                }
            }
            Output::CloseBridge { reason } => {
                self.generation += 1;
                self.connect_timer = None;
                if self.transport.take().is_some() {
                    self.log(
                        LogLevel::Info,
                        format!("closed the bridge connection: {reason}"),
                    );
                }
            }
            Output::ConnectBridge => self.connect_bridge(now),
            Output::CreateOffer { link } => match PeerLink::offer(&self.link_sink, link) {
                Ok(l) => {
                    self.links.insert(link, l);
                }
                Err(e) => self.link_setup_failed(now, link, &e),
            },
            Output::CreateAnswer { link, offer } => {
                match PeerLink::answer(&self.link_sink, link, offer) {
                    Ok(l) => {
                        self.links.insert(link, l);
                    }
                    Err(e) => self.link_setup_failed(now, link, &e),
                }
            }
            Output::ApplyAnswer { link, answer } => {
                if let Some(l) = self.links.get(&link) {
                    l.apply_answer(answer);
                }
            }
            Output::SendLink { link, bytes } => {
                match self.links.get_mut(&link).map(|l| l.send(bytes)) {
                    Some(Err(reason)) => self.node.handle_input(
                        now,
                        Input::LinkClosed {
                            link,
                            reason: &reason,
                        },
                    ),
                    Some(Ok(true)) => self.node.handle_input(
                        now,
                        Input::LinkCongestion {
                            link,
                            blocked: true,
                        },
                    ),
                    _ => {}
                }
            }
            Output::CloseLink { link, .. } => {
                // What was accepted before the close still goes out (bounded by
                // `CLOSE_FLUSH_MS`); dropping the link closes the channel and the connection
                // and frees its closures.
                if let Some(l) = self.links.remove(&link) {
                    if let Some(closing) = l.into_closing() {
                        self.closing.insert(link, closing);
                    }
                }
            }
            Output::Event(e) => {
                self.promises.on_event(&e);
                self.on_event(now, &e);
                if let Event::Content(ContentEvent::Done { hash_name }) = &e {
                    let publisher = self
                        .web_publisher
                        .filter(|_| self.is_web(hash_name) && !self.publishing.contains(hash_name));
                    if let Some(publish) = publisher {
                        // Its `done` goes out once it is published as this page's own content
                        // (`web_publisher`), carrying `publishedAs`.
                        self.publishing.push(*hash_name);
                        publish(self.me.clone(), *hash_name);
                        return;
                    }
                }
                match &mut self.held_back {
                    Some(held) if matches!(e, Event::Content(_)) => held.push(e),
                    _ => self.events.push(e),
                }
            }
            Output::Store { id, request } => {
                self.reader.observe_submit(id, &request);
                self.store.submit(id, request, false);
                // A store that completes at once (memory) is drained now, so its bounded
                // completion queue never fills while the core queues many writes.
                self.drain_store(now);
            }
        }
    }

    /// Feed every finished store operation to whoever asked: the content reader (its own ids)
    /// or the core (after the reader has seen it). Returns whether there was any.
    fn drain_store(&mut self, now: Time) -> bool {
        let mut any = false;
        while let Some(c) = self.store.poll_completion() {
            any = true;
            self.store_done(now, c);
        }
        any
    }

    fn store_done(&mut self, now: Time, c: StoreCompletion) {
        if c.id.0 & READER_STORE_OP_BIT != 0 {
            self.reader.on_completion(c);
        } else {
            self.reader.observe_completion(&c);
            self.node.handle_input(now, Input::StoreDone(c));
        }
    }

    fn reader_output(&mut self, now: Time, o: ReaderOutput<Waiter>) {
        match o {
            ReaderOutput::Store { id, request } => self.store.submit(id, request, true),
            ReaderOutput::Seek { hash_name, byte } => self.node.ordb().seek(now, hash_name, byte),
            ReaderOutput::Read { waiter, result } => match result {
                Ok(bytes) => waiter.resolve(&js_sys::Uint8Array::from(bytes.as_slice())),
                Err(f) => waiter.reject(f.code, &f.message),
            },
            ReaderOutput::Settle { waiter, result } => match result {
                Ok(()) => waiter.resolve(&JsValue::UNDEFINED),
                Err(f) => waiter.reject(f.code, &f.message),
            },
        }
    }

    /// What the driver itself does on the core's events: content waiters, resuming downloads.
    fn on_event(&mut self, now: Time, e: &Event) {
        match e {
            Event::Content(ContentEvent::Done { hash_name }) => {
                self.reader.content_done(*hash_name)
            }
            Event::Content(ContentEvent::Failed { hash_name, reason }) => {
                self.reader.download_ended(*hash_name, Some(reason))
            }
            Event::Content(ContentEvent::Resumable {
                hash_name, source, ..
            }) => {
                if let Err(e) = self.start_download(now, *hash_name, source.clone()) {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "could not resume the download of {}: {e}",
                            hash_name.to_hex()
                        ),
                    );
                }
            }
            Event::Peer {
                state: LinkState::Linked,
                ..
            } if !self.resumable.is_empty() => self.resume_downloads(now, false),
            _ => {}
        }
    }

    /// Resume the downloads found at start once enough peers are linked (or `force`).
    fn resume_downloads(&mut self, now: Time, force: bool) {
        if self.resumable.is_empty() {
            return;
        }
        if !force && self.linked_peers(now) < RESUME_PEERS {
            return;
        }
        self.resume_timer = None;
        for h in std::mem::take(&mut self.resumable) {
            if let Err(e) = self.begin_download(now, h) {
                self.log(
                    LogLevel::Warn,
                    format!("could not start the download of {}: {e}", h.to_hex()),
                );
            }
        }
    }

    fn linked_peers(&self, now: Time) -> usize {
        self.node
            .peers(now)
            .iter()
            .filter(|p| p.state == LinkState::Linked)
            .count()
    }

    /// Start (or join) the download of `hash_name`, at once when the node has peers to ask,
    /// else as soon as it has (see [`Driver::resumable`]). Either way the content reader lets
    /// reads wait for its pieces from now on.
    pub fn start_download(
        &mut self,
        now: Time,
        hash_name: HashName,
        source: Option<DbSource>,
    ) -> Result<(), onionmesh_node::ContentError> {
        if let Some(source) = source {
            // 40 bare hex digits stand for a magnet link with no tracker, a guess: it never
            // replaces a source known for this content (the page resumes a download, or plays a
            // library item, by its hash_name, after the node resumed it with the magnet link or
            // URL it stored). A guess for a content that is no torrent is dropped by the ORDB
            // (`Ordb::download_from`).
            let guess = source.uri.as_str() == crate::target::bare_magnet(&hash_name).as_str();
            if !(guess && self.sources.contains_key(&hash_name)) {
                remember(&mut self.sources, hash_name, source);
            }
        }
        let held_whole = self.reader.is_complete(&hash_name);
        if held_whole
            || self.resumable.len() >= MAX_RESUMABLE
            || self.linked_peers(now) >= RESUME_PEERS
        {
            return self.begin_download(now, hash_name);
        }
        if !self.resumable.contains(&hash_name) {
            self.resumable.push(hash_name);
        }
        self.reader.download_started(hash_name);
        if self.resume_timer.is_none() {
            let me = self.me.clone();
            self.resume_timer = Some(Timer::new(RESUME_AFTER_MS, move || {
                callback(&me, |d, now| d.resume_downloads(now, true))
            }));
        }
        Ok(())
    }

    /// A download waiting for peers is cancelled (or its content removed): it does not start.
    pub fn forget_waiting_download(&mut self, hash_name: &HashName) {
        self.resumable.retain(|h| h != hash_name);
    }

    fn begin_download(
        &mut self,
        now: Time,
        hash_name: HashName,
    ) -> Result<(), onionmesh_node::ContentError> {
        let started = match self.sources.get(&hash_name) {
            Some(source) => self.node.ordb().download_from(now, source.clone()),
            None => self.node.ordb().download(now, hash_name),
        };
        match started {
            Ok(()) | Err(onionmesh_node::ContentError::Ordb(OrdbError::AlreadyDownloading(_))) => {
                self.resumable.retain(|h| *h != hash_name);
                self.reader.download_started(hash_name);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `Node.start` resolved: deliver the content events held back meanwhile, from now on
    /// events go straight out.
    pub fn release_held_events(&mut self) {
        if let Some(held) = self.held_back.take() {
            self.events.extend(held);
        }
    }

    fn link_setup_failed(&mut self, now: Time, link: LinkId, err: &JsValue) {
        let reason = format!(
            "this browser could not create a WebRTC peer connection: {}",
            describe(err)
        );
        self.node.handle_input(
            now,
            Input::LinkFailed {
                link,
                reason: &reason,
            },
        );
    }

    /// Whether `hash_name`'s descriptor says it is a web file an exit fetched.
    pub fn is_web(&self, hash_name: &HashName) -> bool {
        self.reader
            .descriptor(hash_name)
            .is_some_and(|d| d.kind() == DescriptorKind::WEB_V1)
    }

    /// Queue an event for the page (a web file's `done`, once published).
    pub fn push_event(&mut self, e: Event) {
        self.events.push(e);
    }

    /// A warning for the page's log (and its subscribers).
    pub fn warn(&mut self, text: String) {
        self.log(LogLevel::Warn, text);
    }

    fn log(&mut self, level: LogLevel, text: String) {
        self.events.push(Event::Log { level, text });
    }
}

/// Insert into a map bounded at [`MAX_REMEMBERED`] entries, forgetting the first key when full.
pub fn remember<V>(map: &mut FlatMap<HashName, V>, key: HashName, value: V) {
    if !map.contains_key(&key) && map.len() >= MAX_REMEMBERED {
        map.pop_first();
    }
    map.insert(key, value);
}

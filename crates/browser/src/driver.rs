//! The driver: feeds browser events into the sans-IO [`onionmesh_node::Node`] and carries out its
//! outputs. Everything the node needs from the world goes through here.
//!
//! Ownership: the JS `Node` object holds the only strong reference ([`Shared`]); every JS callback
//! and pending future holds a `Weak`. Dropping the JS object (or `stop()`) therefore drops the
//! WebSocket, every peer connection, the timer and all their closures.
//!
//! Re-entrancy: the driver is borrowed while it executes outputs, and subscriber callbacks run
//! only after that borrow is released, so they may call back into the node. A browser event that
//! still finds the driver busy (it should not happen: events are tasks) is retried as a microtask
//! instead of panicking.

use crate::bridge::BridgeTransport;
use crate::error::{js_error, ErrorCode};
use crate::events;
use crate::link::PeerLink;
use crate::timer::{self, Timer};
use onionmesh_node::{Event, LinkId, LogLevel, Node, OnionEvent, Output, Time};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};
use wasm_bindgen::JsValue;
use web_sys::RtcDataChannel;

/// `Node.start` gives up on a bridge that has not opened by then.
pub const START_TIMEOUT_MS: u64 = 10_000;

/// What the JS `Node` object owns.
pub struct Shared {
    pub driver: RefCell<Driver>,
    pub subscribers: RefCell<Subscribers>,
    /// Events waiting for delivery, and whether a delivery loop is running (so that events caused
    /// by a subscriber are delivered after the current one, in order).
    pending: RefCell<VecDeque<Event>>,
    dispatching: Cell<bool>,
    /// Promises of `dhtFindNode` / `dhtFindValue` / `dhtPublish` waiting for their lookup.
    pub dht_waiters: RefCell<crate::dht::Waiters>,
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

/// The promise `Node.start` waits on.
struct StartWaiter {
    resolve: js_sys::Function,
    reject: js_sys::Function,
    _timeout: Timer,
}

pub struct Driver {
    pub node: Node,
    me: Weak<Shared>,
    /// For sentences: the bridge URL (or the test transport's name).
    bridge_label: String,
    transport: Option<Box<dyn BridgeTransport>>,
    links: BTreeMap<LinkId, PeerLink>,
    /// The one armed timer, for the core's `poll_timeout`.
    timer: Option<(Time, Timer)>,
    start: Option<StartWaiter>,
    pub stopped: bool,
    events: Vec<Event>,
}

impl Shared {
    pub fn new(node: Node, bridge_label: String) -> Rc<Shared> {
        Rc::new_cyclic(|me| Shared {
            driver: RefCell::new(Driver {
                node,
                me: me.clone(),
                bridge_label,
                transport: None,
                links: BTreeMap::new(),
                timer: None,
                start: None,
                stopped: false,
                events: Vec::new(),
            }),
            subscribers: RefCell::new(Subscribers::default()),
            pending: RefCell::new(VecDeque::new()),
            dispatching: Cell::new(false),
            dht_waiters: RefCell::new(crate::dht::Waiters::default()),
        })
    }

    /// Run `f` on the driver, carry out every output, re-arm the timer, then deliver events.
    /// Fails only if the driver is already borrowed (a re-entrant call).
    pub fn with<R>(&self, f: impl FnOnce(&mut Driver, Time) -> R) -> Result<R, JsValue> {
        let (result, events) = {
            let mut d = self.driver.try_borrow_mut().map_err(|_| {
                js_error(
                    ErrorCode::Internal,
                    "The node is busy handling another call; try again from a later task.",
                )
            })?;
            let now = timer::now();
            let result = f(&mut d, now);
            d.pump(now);
            (result, std::mem::take(&mut d.events))
        };
        self.deliver(events);
        Ok(result)
    }

    fn deliver(&self, events: Vec<Event>) {
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
            self.dht_waiters.borrow_mut().on_event(&event);
            let obj = events::to_js(&event);
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
    pub fn set_transport(&mut self, transport: Box<dyn BridgeTransport>) {
        self.transport = Some(transport);
    }

    /// Remember the `Node.start` promise's functions and give the bridge [`START_TIMEOUT_MS`].
    pub fn await_start(&mut self, resolve: js_sys::Function, reject: js_sys::Function) {
        let me = self.me.clone();
        let timeout = Timer::new(START_TIMEOUT_MS, move || {
            callback(&me, |d, now| d.on_start_timeout(now))
        });
        self.start = Some(StartWaiter {
            resolve,
            reject,
            _timeout: timeout,
        });
    }

    pub fn on_bridge_opened(&mut self, now: Time) {
        if let Some(w) = self.start.take() {
            let _ = w.resolve.call0(&JsValue::NULL);
        }
        self.node.handle_bridge_opened(now, timer::unix_ms());
    }

    pub fn on_bridge_closed(&mut self, now: Time, reason: &str) {
        self.transport = None;
        if let Some(w) = self.start.take() {
            let msg = format!(
                "Could not connect to the bridge at {}: {reason}. Check that the bridge is running and that the address is right, then try again.",
                self.bridge_label
            );
            let _ = w.reject.call1(
                &JsValue::NULL,
                &js_error(ErrorCode::BridgeUnreachable, &msg),
            );
        }
        self.node.handle_bridge_closed(now, reason);
    }

    fn on_start_timeout(&mut self, now: Time) {
        let Some(w) = self.start.take() else { return };
        self.transport = None;
        let msg = format!(
            "The bridge at {} did not answer within {} seconds. Check that it is running and reachable from this page, then try again.",
            self.bridge_label,
            START_TIMEOUT_MS / 1000
        );
        let _ = w.reject.call1(
            &JsValue::NULL,
            &js_error(ErrorCode::BridgeUnreachable, &msg),
        );
        self.node
            .handle_bridge_closed(now, "the bridge did not answer in time");
    }

    pub fn on_datachannel(&mut self, now: Time, link: LinkId, dc: RtcDataChannel) {
        let Some(l) = self.links.get_mut(&link) else {
            dc.close();
            return;
        };
        if l.attach_channel(&self.me, link, dc) {
            self.node.handle_link_opened(now, link);
        }
    }

    pub fn flush_link(&mut self, now: Time, link: LinkId) {
        if let Some(Err(reason)) = self.links.get_mut(&link).map(PeerLink::flush) {
            self.node.handle_link_failed(now, link, &reason);
        }
        // Onion cells wait in the core's bounded queues while our own queue is not empty.
        if self.links.get(&link).is_some_and(|l| l.queued_bytes() == 0) {
            self.node.handle_link_congestion(link, false);
        }
    }

    /// Bytes waiting in the driver's per-link queues, over all links (for tests and diagnostics).
    pub fn queued_bytes(&self) -> usize {
        self.links.values().map(PeerLink::queued_bytes).sum()
    }

    /// Close everything: every link, the bridge, the timer. Events for the closes are delivered.
    pub fn stop(&mut self, now: Time, reason: &str) {
        if self.stopped {
            return;
        }
        if let Some(w) = self.start.take() {
            let msg = format!(
                "The node was stopped before the bridge at {} answered.",
                self.bridge_label
            );
            let _ = w
                .reject
                .call1(&JsValue::NULL, &js_error(ErrorCode::Stopped, &msg));
        }
        for peer in self.node.peers(now) {
            if let Some(id) = onionmesh_wire::NodeId::from_hex(&peer.id) {
                self.node.disconnect(id, reason);
            }
        }
        if self.transport.take().is_some() {
            self.node.handle_bridge_closed(now, reason);
        }
        self.pump(now);
        self.links.clear();
        self.timer = None;
        self.stopped = true;
    }

    /// Drain the core's outputs and carry them out in order, then re-arm the timer.
    fn pump(&mut self, now: Time) {
        while let Some(out) = self.node.poll_output() {
            self.execute(now, out);
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
                        d.node.handle_timeout(now);
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
                    self.transport = None;
                    self.node.handle_bridge_closed(now, &reason);
                }
            }
            Output::CloseBridge { reason } => {
                if self.transport.take().is_some() {
                    self.log(
                        LogLevel::Warn,
                        format!("closed the bridge connection: {reason}"),
                    );
                }
            }
            Output::CreateOffer { link } => match PeerLink::offer(&self.me, link) {
                Ok(l) => {
                    self.links.insert(link, l);
                }
                Err(e) => self.link_setup_failed(now, link, &e),
            },
            Output::CreateAnswer { link, offer } => match PeerLink::answer(&self.me, link, offer) {
                Ok(l) => {
                    self.links.insert(link, l);
                }
                Err(e) => self.link_setup_failed(now, link, &e),
            },
            Output::ApplyAnswer { link, answer } => {
                if let Some(l) = self.links.get(&link) {
                    l.apply_answer(&self.me, link, answer);
                }
            }
            Output::SendLink { link, bytes } => {
                match self.links.get_mut(&link).map(|l| l.send(bytes)) {
                    Some(Err(reason)) => self.node.handle_link_failed(now, link, &reason),
                    Some(Ok(())) if self.links.get(&link).is_some_and(|l| l.queued_bytes() > 0) => {
                        self.node.handle_link_congestion(link, true)
                    }
                    _ => {}
                }
            }
            Output::CloseLink { link, .. } => {
                // Dropping the link closes the channel and the connection and frees its closures.
                self.links.remove(&link);
            }
            Output::Event(Event::Onion(OnionEvent::StreamReadable { circ, stream })) => {
                self.read_stream(now, circ, stream)
            }
            Output::Event(e) => self.events.push(e),
        }
    }

    /// Read a stream for the page as soon as data arrives and hand it on as a `data` event
    /// (the page keeps what it receives; reading is what reopens the circuit's windows).
    fn read_stream(&mut self, now: Time, circ: u64, stream: u16) {
        if let Ok(data) = self.node.stream_read(now, circ, stream, usize::MAX) {
            if !data.is_empty() {
                self.events
                    .push(Event::Onion(OnionEvent::StreamData { circ, stream, data }));
            }
        }
    }

    fn link_setup_failed(&mut self, now: Time, link: LinkId, err: &JsValue) {
        let reason = format!(
            "this browser could not create a WebRTC peer connection: {}",
            crate::error::describe(err)
        );
        self.node.handle_link_failed(now, link, &reason);
    }

    fn log(&mut self, level: LogLevel, text: String) {
        self.events.push(Event::Log { level, text });
    }
}

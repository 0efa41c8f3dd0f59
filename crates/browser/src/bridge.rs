//! The connection to the bridge: a small seam between the driver and whatever carries the signalling
//! frames. In a page it is a [`WebSocketTransport`]; a test can plug in its own transport (for
//! example an in-page `Rendezvous`) with [`crate::BrowserNode::start_with_transport`].
//!
//! The WebSocket runs the link's secure channel ([`onionmesh_crypto::channel`]): the handshake
//! first (the bridge proves its identity, then this node proves its own), and only then does the
//! driver hear `opened`; every frame after that is ChaCha20-Poly1305 in both directions, so a
//! plain `ws://` bridge connection shows the network nothing. With `bridge-id=<40 hex>` in the
//! WebSocket URL's query (the page passes its own `?bridge-id=` on), only a bridge that proves
//! that ID is accepted. Without it the node accepts the bridge it reaches and logs its ID to the
//! console: a passive observer still learns nothing, but an active man in the middle on a plain
//! `ws://` link would not be noticed. (No trust-on-first-use memory: bridges without
//! `--key-file` change identity at every restart, so remembering would mostly raise false
//! alarms.)

use crate::codes::describe;
use onionmesh_crypto::channel::{Channel, ClientHandshake};
use onionmesh_crypto::Identity;
use onionmesh_wire::NodeId;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// Carries frames to the bridge. The driver owns it; dropping it must close the connection and
/// release every JS callback.
pub trait BridgeTransport {
    /// Send one frame. An `Err` is a sentence saying why the connection cannot carry it; the
    /// driver then treats the bridge as gone.
    fn send(&mut self, frame: &[u8]) -> Result<(), String>;
}

/// What a transport reports.
pub enum BridgeEvent {
    Opened,
    Frame(Vec<u8>),
    /// The connection closed or failed; the sentence is for the page.
    Closed(String),
}

/// How a transport reports back to the driver. Every method may be called from any JS callback;
/// none may be called synchronously from inside [`BridgeTransport::send`] (queue a microtask, as
/// the network would). Each connection attempt gets its own sink: reports from an older
/// connection are ignored by the driver.
#[derive(Clone)]
pub struct BridgeSink {
    pub(crate) report: Rc<dyn Fn(BridgeEvent)>,
    /// The node's identity (a second copy of the one inside the core), for transports that
    /// authenticate the link to the bridge.
    pub(crate) identity: Rc<Identity>,
}

impl BridgeSink {
    /// The connection is open: the node sends its signed hello.
    pub fn opened(&self) {
        (self.report)(BridgeEvent::Opened);
    }

    /// One frame arrived from the bridge.
    pub fn frame(&self, bytes: Vec<u8>) {
        (self.report)(BridgeEvent::Frame(bytes));
    }

    /// The connection closed or failed; `reason` is a sentence for the page.
    pub fn closed(&self, reason: String) {
        (self.report)(BridgeEvent::Closed(reason));
    }
}

/// A signalling frame is at most 32 KiB and the bridge rate-limits them, so more than this waiting
/// in the socket means the bridge stopped reading; we give up on it rather than buffer without end.
const MAX_WS_BUFFERED: u32 = 1 << 20;

/// Where the secure channel over the WebSocket stands.
enum Link {
    /// The socket is not open yet.
    Connecting,
    /// m1 sent, waiting for the bridge's m2.
    Handshake(ClientHandshake),
    Secured(Channel),
    /// The channel failed: this sentence is what the page hears when the socket closes.
    Failed(String),
}

/// The bridge connection in a page: one WebSocket carrying the secure channel's binary frames.
pub struct WebSocketTransport {
    ws: WebSocket,
    link: Rc<RefCell<Link>>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl WebSocketTransport {
    /// Opens the WebSocket. Fails only when the browser rejects the URL outright.
    pub fn connect(url: &str, sink: BridgeSink) -> Result<WebSocketTransport, String> {
        let pinned = pinned_bridge_id(url)?;
        let ws = WebSocket::new(url).map_err(|e| describe(&e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let link = Rc::new(RefCell::new(Link::Connecting));

        let (l, w) = (link.clone(), ws.clone());
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let mut seed = [0u8; 32];
            if let Err(e) = getrandom::getrandom(&mut seed) {
                fail(
                    &l,
                    &w,
                    format!("this browser has no usable random number generator ({e})"),
                );
                return;
            }
            let (hs, m1) = ClientHandshake::start(&mut ChaCha20Rng::from_seed(seed), pinned);
            *l.borrow_mut() = Link::Handshake(hs);
            if let Err(e) = w.send_with_u8_array(&m1) {
                fail(
                    &l,
                    &w,
                    format!("the browser could not send to the bridge: {}", describe(&e)),
                );
            }
        });
        let (l, w, s) = (link.clone(), ws.clone(), sink.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let Ok(buf) = ev.data().dyn_into::<js_sys::ArrayBuffer>() else {
                let why = "the bridge sent a text message; it must send binary frames";
                fail(&l, &w, why.into());
                return;
            };
            // The one copy into wasm memory.
            let bytes = js_sys::Uint8Array::new(&buf).to_vec();
            let state = std::mem::replace(&mut *l.borrow_mut(), Link::Connecting);
            match state {
                Link::Handshake(hs) => match hs.finish(&s.identity, &bytes) {
                    Ok((channel, m3)) => {
                        let id = channel.peer_id();
                        *l.borrow_mut() = Link::Secured(channel);
                        if let Err(e) = w.send_with_u8_array(&m3) {
                            let why = format!(
                                "the browser could not send to the bridge: {}",
                                describe(&e)
                            );
                            fail(&l, &w, why);
                            return;
                        }
                        if pinned.is_none() {
                            web_sys::console::info_1(&format!(
                                "onionmesh: the bridge proved ID {id}; add ?bridge-id={id} to the page URL to accept only this bridge"
                            ).into());
                        }
                        s.opened();
                    }
                    Err(e) => fail(
                        &l,
                        &w,
                        format!("the link handshake with the bridge failed: {e}"),
                    ),
                },
                Link::Secured(mut channel) => {
                    let opened = channel.open(&bytes);
                    *l.borrow_mut() = Link::Secured(channel);
                    match opened {
                        Ok(plain) => s.frame(plain),
                        Err(e) => fail(&l, &w, format!("the link to the bridge is broken: {e}")),
                    }
                }
                // Nothing is expected before our m1, and nothing counts after a failure.
                other => *l.borrow_mut() = other,
            }
        });
        // An `error` event is always followed by `close`, which carries the code, so `close` alone
        // reports both.
        let l = link.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            let why = match &*l.borrow() {
                Link::Failed(why) => why.clone(),
                _ => close_sentence(&ev),
            };
            sink.closed(why);
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(WebSocketTransport {
            ws,
            link,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
}

/// Record why the channel failed and close the socket; `on_close` reports the sentence.
fn fail(link: &RefCell<Link>, ws: &WebSocket, why: String) {
    *link.borrow_mut() = Link::Failed(why);
    let _ = ws.close();
}

/// The `bridge-id` query parameter of the WebSocket URL, if any.
fn pinned_bridge_id(url: &str) -> Result<Option<NodeId>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&') {
        if let Some(hex) = pair.strip_prefix("bridge-id=") {
            return NodeId::from_hex(hex)
                .map(Some)
                .ok_or_else(|| format!("bridge-id={hex} is not a bridge ID (40 hex characters)"));
        }
    }
    Ok(None)
}

fn close_sentence(ev: &CloseEvent) -> String {
    let code = ev.code();
    let why = match code {
        1000 => "closed normally",
        1001 => "is going away",
        1006 => "was lost or could not be opened",
        1008 => "was closed by the bridge for a policy violation",
        1009 => "was closed because a frame was too large",
        1011 => "was closed by a bridge error",
        _ => "closed",
    };
    let reason = ev.reason();
    if reason.is_empty() {
        format!("the connection to the bridge {why} (code {code})")
    } else {
        format!("the connection to the bridge {why} (code {code}: {reason})")
    }
}

impl BridgeTransport for WebSocketTransport {
    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        let sealed = match &mut *self.link.borrow_mut() {
            Link::Secured(channel) => channel
                .seal(frame)
                .map_err(|e| format!("the link to the bridge is broken: {e}"))?,
            _ => return Err("the link to the bridge is not secured".into()),
        };
        if self.ws.buffered_amount() > MAX_WS_BUFFERED {
            return Err(
                "the bridge stopped reading: more than 1 MiB is waiting to be sent to it".into(),
            );
        }
        self.ws
            .send_with_u8_array(&sealed)
            .map_err(|e| format!("the browser could not send to the bridge: {}", describe(&e)))
    }
}

impl Drop for WebSocketTransport {
    fn drop(&mut self) {
        // Detach first: the socket may still fire events after `close()`, and the closures are
        // about to be freed.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

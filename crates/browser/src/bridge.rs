//! The connection to the bridge: a small seam between the driver and whatever carries the signalling
//! frames. In a page it is a [`WebSocketTransport`]; a test can plug in its own transport (for
//! example an in-page `Rendezvous`) with [`crate::BrowserNode::start_with_transport`].

use crate::driver::{self, Shared};
use crate::error::describe;
use std::rc::Weak;
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

/// How a transport reports back to the driver. Every method may be called from any JS callback;
/// none may be called synchronously from inside [`BridgeTransport::send`] (queue a microtask, as
/// the network would).
#[derive(Clone)]
pub struct BridgeSink {
    pub(crate) shared: Weak<Shared>,
}

impl BridgeSink {
    /// The connection is open: the node sends its signed hello.
    pub fn opened(&self) {
        driver::callback(&self.shared, |d, now| d.on_bridge_opened(now));
    }

    /// One frame arrived from the bridge.
    pub fn frame(&self, bytes: Vec<u8>) {
        driver::callback(&self.shared, move |d, now| {
            d.node.handle_bridge_frame(now, &bytes)
        });
    }

    /// The connection closed or failed; `reason` is a sentence for the page.
    pub fn closed(&self, reason: String) {
        driver::callback(&self.shared, move |d, now| d.on_bridge_closed(now, &reason));
    }
}

/// A signalling frame is at most 32 KiB and the bridge rate-limits them, so more than this waiting
/// in the socket means the bridge stopped reading; we give up on it rather than buffer without end.
const MAX_WS_BUFFERED: u32 = 1 << 20;

/// The bridge connection in a page: one WebSocket carrying binary frames.
pub struct WebSocketTransport {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl WebSocketTransport {
    /// Opens the WebSocket. Fails only when the browser rejects the URL outright.
    pub fn connect(url: &str, sink: BridgeSink) -> Result<WebSocketTransport, String> {
        let ws = WebSocket::new(url).map_err(|e| describe(&e))?;
        ws.set_binary_type(BinaryType::Arraybuffer);

        let s = sink.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| s.opened());
        let s = sink.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            match ev.data().dyn_into::<js_sys::ArrayBuffer>() {
                // The one copy into wasm memory.
                Ok(buf) => s.frame(js_sys::Uint8Array::new(&buf).to_vec()),
                Err(_) => {
                    s.closed("the bridge sent a text message; it must send binary frames".into())
                }
            }
        });
        // An `error` event is always followed by `close`, which carries the code, so `close` alone
        // reports both.
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
            sink.closed(close_sentence(&ev));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(WebSocketTransport {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
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
        if self.ws.buffered_amount() > MAX_WS_BUFFERED {
            return Err(
                "the bridge stopped reading: more than 1 MiB is waiting to be sent to it".into(),
            );
        }
        self.ws
            .send_with_u8_array(frame)
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

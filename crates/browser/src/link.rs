//! One peer link: an `RTCPeerConnection` with one ordered, reliable data channel, and the
//! backpressure around it.
//!
//! The link owns every JS callback it registers. Dropping it detaches them, closes the channel
//! (which still delivers what it has buffered, such as a final `Close` frame) and closes the peer
//! connection shortly after.

use crate::driver::{self, Shared};
use crate::error::describe;
use crate::timer::{self, Timer};
use onionmesh_node::LinkId;
use std::collections::VecDeque;
use std::rc::Weak;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceGatheringState, RtcPeerConnection,
    RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

/// The one data channel's label. The answerer ignores channels with any other label.
pub const CHANNEL_LABEL: &str = "onionmesh";
/// Above this many bytes buffered in the channel, frames wait in our own queue.
const HIGH_WATER: u32 = 1 << 20;
/// The channel tells us (`bufferedamountlow`) when it drains below this, and we refill it.
const LOW_WATER: u32 = 256 << 10;
/// Most bytes queued per link. Chromium kills a channel past about 16 MiB buffered; we close the
/// link with a reason long before, and a slow peer can never make us buffer more than this.
const MAX_QUEUED: usize = 8 << 20;
/// Non-trickle ICE: wait this long at most for candidate gathering to complete, then send what
/// has been gathered. Host candidates on a LAN take milliseconds.
const ICE_GATHER_TIMEOUT_MS: u64 = 3_000;
/// Let a closing channel flush its last frames before the peer connection goes.
const CLOSE_GRACE_MS: i32 = 1_000;

pub struct PeerLink {
    pc: RtcPeerConnection,
    channel: Option<Channel>,
    _on_state: Closure<dyn FnMut(Event)>,
    /// Only on the answering side, until the channel arrives.
    on_datachannel: Option<Closure<dyn FnMut(RtcDataChannelEvent)>>,
}

struct Channel {
    dc: RtcDataChannel,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
    _on_low: Closure<dyn FnMut(Event)>,
}

impl PeerLink {
    /// The offering side: a peer connection with its data channel, and the offer under way. The
    /// offer SDP reaches the core through `handle_offer_ready` once ICE gathering is done.
    pub fn offer(shared: &Weak<Shared>, link: LinkId) -> Result<PeerLink, JsValue> {
        let pc = new_peer_connection()?;
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let dc = pc.create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
        let channel = Channel::new(shared, link, dc);
        let on_state = state_callback(shared, link, &pc);
        wasm_bindgen_futures::spawn_local(make_offer(shared.clone(), link, pc.clone()));
        Ok(PeerLink {
            pc,
            channel: Some(channel),
            _on_state: on_state,
            on_datachannel: None,
        })
    }

    /// The answering side: a peer connection for the remote offer; the channel arrives with
    /// `datachannel`, the answer SDP through `handle_answer_ready`.
    pub fn answer(shared: &Weak<Shared>, link: LinkId, offer: String) -> Result<PeerLink, JsValue> {
        let pc = new_peer_connection()?;
        let on_state = state_callback(shared, link, &pc);
        let s = shared.clone();
        let on_datachannel =
            Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
                let dc = ev.channel();
                driver::callback(&s, move |d, now| d.on_datachannel(now, link, dc));
            });
        pc.set_ondatachannel(Some(on_datachannel.as_ref().unchecked_ref()));
        wasm_bindgen_futures::spawn_local(make_answer(shared.clone(), link, pc.clone(), offer));
        Ok(PeerLink {
            pc,
            channel: None,
            _on_state: on_state,
            on_datachannel: Some(on_datachannel),
        })
    }

    /// Apply the peer's answer (offering side).
    pub fn apply_answer(&self, shared: &Weak<Shared>, link: LinkId, answer: String) {
        let pc = self.pc.clone();
        let shared = shared.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            desc.set_sdp(&answer);
            if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                let reason = format!("the browser rejected the peer's answer: {}", describe(&e));
                driver::callback(&shared, move |d, now| {
                    d.node.handle_link_failed(now, link, &reason)
                });
            }
        });
    }

    /// The answering side's channel arrived. Returns whether it is already open (then no `open`
    /// event may follow, so the caller reports it). Channels with another label, or a second
    /// channel, are closed.
    pub fn attach_channel(
        &mut self,
        shared: &Weak<Shared>,
        link: LinkId,
        dc: RtcDataChannel,
    ) -> bool {
        if self.channel.is_some() || dc.label() != CHANNEL_LABEL {
            dc.close();
            return false;
        }
        if let Some(cb) = self.on_datachannel.take() {
            self.pc.set_ondatachannel(None);
            drop(cb);
        }
        let open = dc.ready_state() == RtcDataChannelState::Open;
        self.channel = Some(Channel::new(shared, link, dc));
        open
    }

    /// Send one frame, or queue it while the channel is above its high-water mark. An `Err` is a
    /// sentence; the caller closes the link with it.
    pub fn send(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let Some(ch) = self.channel.as_mut() else {
            return Err("there is no data channel to send on yet".into());
        };
        if ch.dc.ready_state() != RtcDataChannelState::Open {
            return Err("the data channel is no longer open".into());
        }
        if ch.queue.is_empty() && ch.dc.buffered_amount() <= HIGH_WATER {
            return ch.send_now(&bytes);
        }
        if ch.queued_bytes + bytes.len() > MAX_QUEUED {
            return Err(format!(
                "the peer is not keeping up: more than {} MiB are waiting to be sent to it",
                MAX_QUEUED >> 20
            ));
        }
        ch.queued_bytes += bytes.len();
        ch.queue.push_back(bytes);
        Ok(())
    }

    /// The channel drained below its low-water mark: move queued frames into it.
    pub fn flush(&mut self) -> Result<(), String> {
        let Some(ch) = self.channel.as_mut() else {
            return Ok(());
        };
        while ch.dc.buffered_amount() <= HIGH_WATER {
            let Some(bytes) = ch.queue.pop_front() else {
                break;
            };
            ch.queued_bytes -= bytes.len();
            ch.send_now(&bytes)?;
        }
        Ok(())
    }

    /// Bytes waiting in our queue (not yet handed to the channel).
    pub fn queued_bytes(&self) -> usize {
        self.channel.as_ref().map_or(0, |c| c.queued_bytes)
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        if let Some(ch) = self.channel.take() {
            ch.detach();
            // A graceful close: the channel still sends what it has buffered.
            ch.dc.close();
        }
        // Closing the peer connection at once would cut the buffered frames off (the refusal's
        // `Close` frame in particular), so give the channel a moment.
        let pc = self.pc.clone();
        timer::after(CLOSE_GRACE_MS, move || pc.close());
    }
}

impl Channel {
    fn new(shared: &Weak<Shared>, link: LinkId, dc: RtcDataChannel) -> Channel {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(LOW_WATER);

        let s = shared.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            driver::callback(&s, move |d, now| d.node.handle_link_opened(now, link));
        });
        let s = shared.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            match ev.data().dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buf) => {
                    // The one copy into wasm memory.
                    let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                    driver::callback(&s, move |d, now| {
                        d.node.handle_link_frame(now, link, &bytes)
                    });
                }
                Err(_) => driver::callback(&s, move |d, now| {
                    d.node.handle_link_failed(
                        now,
                        link,
                        "the peer sent a text message; links carry binary frames only",
                    )
                }),
            }
        });
        let s = shared.clone();
        let on_close = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            driver::callback(&s, move |d, now| {
                d.node
                    .handle_link_closed(now, link, "the peer's data channel closed")
            });
        });
        let s = shared.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
            // An RTCErrorEvent; its `error` says what broke.
            let detail = js_sys::Reflect::get(&ev, &"error".into())
                .map(|e| describe(&e))
                .unwrap_or_default();
            let reason = format!("the data channel failed: {detail}");
            driver::callback(&s, move |d, now| {
                d.node.handle_link_closed(now, link, &reason)
            });
        });
        let s = shared.clone();
        let on_low = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            driver::callback(&s, move |d, now| d.flush_link(now, link));
        });
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        dc.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        Channel {
            dc,
            queue: VecDeque::new(),
            queued_bytes: 0,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
            _on_low: on_low,
        }
    }

    fn send_now(&self, bytes: &[u8]) -> Result<(), String> {
        // `send` copies the bytes out of wasm memory before it returns.
        self.dc.send_with_u8_array(bytes).map_err(|e| {
            format!(
                "the browser refused to send on the data channel: {}",
                describe(&e)
            )
        })
    }

    fn detach(&self) {
        self.dc.set_onopen(None);
        self.dc.set_onmessage(None);
        self.dc.set_onclose(None);
        self.dc.set_onerror(None);
        self.dc.set_onbufferedamountlow(None);
    }
}

fn new_peer_connection() -> Result<RtcPeerConnection, JsValue> {
    // No STUN or TURN: peers reach each other over host candidates only (a LAN, or loopback in
    // tests). Public-internet reachability is the bridge's job, later.
    let cfg = RtcConfiguration::new();
    cfg.set_ice_servers(&js_sys::Array::new());
    RtcPeerConnection::new_with_configuration(&cfg)
}

/// Report a connection that ICE or DTLS gave up on; `disconnected` may still recover, so only
/// `failed` counts.
fn state_callback(
    shared: &Weak<Shared>,
    link: LinkId,
    pc: &RtcPeerConnection,
) -> Closure<dyn FnMut(Event)> {
    let s = shared.clone();
    let pc2 = pc.clone();
    let cb = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        if pc2.connection_state() == RtcPeerConnectionState::Failed {
            driver::callback(&s, move |d, now| {
                d.node.handle_link_closed(
                    now,
                    link,
                    "the WebRTC connection failed: ICE or DTLS could not reach the peer",
                )
            });
        }
    });
    pc.set_onconnectionstatechange(Some(cb.as_ref().unchecked_ref()));
    cb
}

async fn make_offer(shared: Weak<Shared>, link: LinkId, pc: RtcPeerConnection) {
    let result = async {
        let offer = JsFuture::from(pc.create_offer()).await?;
        JsFuture::from(pc.set_local_description(offer.unchecked_ref())).await?;
        gathered_sdp(&pc).await
    }
    .await;
    driver::callback(&shared, move |d, now| match result {
        Ok(sdp) => d.node.handle_offer_ready(now, link, sdp),
        Err(e) => {
            let reason = format!("the browser could not create an offer: {}", describe(&e));
            d.node.handle_link_failed(now, link, &reason)
        }
    });
}

async fn make_answer(shared: Weak<Shared>, link: LinkId, pc: RtcPeerConnection, offer: String) {
    let result = async {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&offer);
        JsFuture::from(pc.set_remote_description(&desc)).await?;
        let answer = JsFuture::from(pc.create_answer()).await?;
        JsFuture::from(pc.set_local_description(answer.unchecked_ref())).await?;
        gathered_sdp(&pc).await
    }
    .await;
    driver::callback(&shared, move |d, now| match result {
        Ok(sdp) => d.node.handle_answer_ready(now, link, sdp),
        Err(e) => {
            let reason = format!(
                "the browser could not answer the peer's offer: {}",
                describe(&e)
            );
            d.node.handle_link_failed(now, link, &reason)
        }
    });
}

/// Non-trickle ICE: wait until candidate gathering completes (or the fallback timeout passes),
/// then read the local description with every candidate in it.
async fn gathered_sdp(pc: &RtcPeerConnection) -> Result<String, JsValue> {
    if pc.ice_gathering_state() != RtcIceGatheringState::Complete {
        let mut on_change = None;
        let mut fallback = None;
        let done = js_sys::Promise::new(&mut |resolve: js_sys::Function, _reject| {
            let pc2 = pc.clone();
            let r = resolve.clone();
            let cb = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
                if pc2.ice_gathering_state() == RtcIceGatheringState::Complete {
                    let _ = r.call0(&JsValue::NULL);
                }
            });
            pc.set_onicegatheringstatechange(Some(cb.as_ref().unchecked_ref()));
            on_change = Some(cb);
            fallback = Some(Timer::new(ICE_GATHER_TIMEOUT_MS, move || {
                let _ = resolve.call0(&JsValue::NULL);
            }));
        });
        // Gathering may have finished between the first check and hooking the event.
        if pc.ice_gathering_state() != RtcIceGatheringState::Complete {
            let _ = JsFuture::from(done).await;
        }
        pc.set_onicegatheringstatechange(None);
        drop(on_change);
        drop(fallback);
    }
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| JsValue::from_str("the peer connection has no local description"))
}

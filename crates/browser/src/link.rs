//! One peer link: an `RTCPeerConnection` with one ordered, reliable data channel, and the
//! backpressure around it.
//!
//! The link knows nothing of the node: it reports what happens to a [`LinkSink`] (the driver
//! gives it one), so the module layering stays one-way (`driver` uses `link`, never back).
//!
//! **Backpressure.** Frames go straight into the channel while its `bufferedAmount` is at most
//! [`HIGH_WATER`]; above it they wait in the link's own queue, and [`PeerLink::send`] says the
//! link just became congested (the driver feeds `LinkCongestion { blocked: true }`, so the core
//! refuses application sends with `BUSY` and holds onion cells in its bounded queues). When the
//! channel drains below [`LOW_WATER`] (`bufferedamountlow`) the queue refills it, and once it is
//! empty [`PeerLink::flush`] says the link drained (`blocked: false`, then a `writable` event).
//! A link is closed for its peer's sake only when the peer reads nothing for [`STALL_MS`] while
//! frames wait (a local burst never closes it), or, as a last memory bound, when [`MAX_QUEUED`]
//! bytes wait.
//!
//! **Closing.** The link owns every JS callback it registers. [`PeerLink::into_closing`] keeps a
//! link whose queue is not empty alive (detached from the core) until the queue has gone into the
//! channel, at most [`CLOSE_FLUSH_MS`]; dropping it then closes the channel (which still sends
//! what it has buffered) and closes the peer connection once the channel is empty (at most
//! [`CLOSE_GRACE_MS`] later).

use crate::codes::describe;
use crate::timer::{self, Timer};
use onionmesh_node::LinkId;
use std::collections::VecDeque;
use std::rc::Rc;
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
/// Above this many bytes buffered in the channel, frames wait in our own queue and the link is
/// congested.
pub const HIGH_WATER: u32 = 1 << 20;
/// The channel tells us (`bufferedamountlow`) when it drains below this, and we refill it.
pub const LOW_WATER: u32 = 256 << 10;
/// Most bytes queued per link, a memory bound only: while the link is congested the core sends
/// nothing but small control frames, so this is not reached by a local burst.
pub const MAX_QUEUED: usize = 16 << 20;
/// A congested link whose channel has not drained at all for this long has a peer that does not
/// read: it is closed with that reason.
pub const STALL_MS: u64 = 30_000;
/// A closed link's queued frames get this long to go into the channel; what is left is dropped
/// and counted.
pub const CLOSE_FLUSH_MS: u64 = 5_000;
/// Non-trickle ICE: wait this long at most for candidate gathering to complete, then send what
/// has been gathered. Host candidates on a LAN take milliseconds.
const ICE_GATHER_TIMEOUT_MS: u64 = 3_000;
/// Let a closing channel send what it has buffered before the peer connection goes: checked
/// every [`CLOSE_POLL_MS`], at most this long.
pub const CLOSE_GRACE_MS: u64 = 5_000;
const CLOSE_POLL_MS: i32 = 100;

/// What a link reports to its driver.
pub enum LinkEvent {
    OfferReady(String),
    AnswerReady(String),
    /// Setting the link up failed; the sentence says why.
    Failed(String),
    Opened,
    /// The channel or the connection closed; the sentence says why.
    Closed(String),
    Frame(Vec<u8>),
    /// The channel drained below [`LOW_WATER`]: call [`PeerLink::flush`].
    Drained,
    /// The answering side's channel arrived: call [`PeerLink::attach_channel`].
    DataChannel(RtcDataChannel),
    /// Frames have waited [`STALL_MS`] without the channel draining.
    Stalled,
    /// A closing link's [`CLOSE_FLUSH_MS`] are over.
    CloseDeadline,
}

/// Where a link reports. Called from JS callbacks, never from inside a `PeerLink` method.
pub type LinkSink = Rc<dyn Fn(LinkId, LinkEvent)>;

pub struct PeerLink {
    link: LinkId,
    sink: LinkSink,
    pc: RtcPeerConnection,
    channel: Option<Channel>,
    _on_state: Closure<dyn FnMut(Event)>,
    /// Only on the answering side, until the channel arrives.
    on_datachannel: Option<Closure<dyn FnMut(RtcDataChannelEvent)>>,
    /// Armed while frames wait: fires [`LinkEvent::Stalled`] unless the channel drains first.
    stall: Option<Timer>,
    /// Armed once the link is closing: fires [`LinkEvent::CloseDeadline`].
    close_deadline: Option<Timer>,
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
    /// offer SDP is reported as [`LinkEvent::OfferReady`] once ICE gathering is done.
    pub fn offer(sink: &LinkSink, link: LinkId) -> Result<PeerLink, JsValue> {
        let pc = new_peer_connection()?;
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let dc = pc.create_data_channel_with_data_channel_dict(CHANNEL_LABEL, &init);
        let channel = Channel::new(sink, link, dc);
        let on_state = state_callback(sink, link, &pc);
        wasm_bindgen_futures::spawn_local(make_offer(sink.clone(), link, pc.clone()));
        Ok(PeerLink {
            link,
            sink: sink.clone(),
            pc,
            channel: Some(channel),
            _on_state: on_state,
            on_datachannel: None,
            stall: None,
            close_deadline: None,
        })
    }

    /// The answering side: a peer connection for the remote offer; the channel arrives as
    /// [`LinkEvent::DataChannel`], the answer SDP as [`LinkEvent::AnswerReady`].
    pub fn answer(sink: &LinkSink, link: LinkId, offer: String) -> Result<PeerLink, JsValue> {
        let pc = new_peer_connection()?;
        let on_state = state_callback(sink, link, &pc);
        let s = sink.clone();
        let on_datachannel =
            Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |ev: RtcDataChannelEvent| {
                s(link, LinkEvent::DataChannel(ev.channel()));
            });
        pc.set_ondatachannel(Some(on_datachannel.as_ref().unchecked_ref()));
        wasm_bindgen_futures::spawn_local(make_answer(sink.clone(), link, pc.clone(), offer));
        Ok(PeerLink {
            link,
            sink: sink.clone(),
            pc,
            channel: None,
            _on_state: on_state,
            on_datachannel: Some(on_datachannel),
            stall: None,
            close_deadline: None,
        })
    }

    /// Apply the peer's answer (offering side).
    pub fn apply_answer(&self, answer: String) {
        let pc = self.pc.clone();
        let (sink, link) = (self.sink.clone(), self.link);
        wasm_bindgen_futures::spawn_local(async move {
            let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            desc.set_sdp(&answer);
            if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                let reason = format!("the browser rejected the peer's answer: {}", describe(&e));
                sink(link, LinkEvent::Failed(reason));
            }
        });
    }

    /// The answering side's channel arrived. Returns whether it is already open (then no `open`
    /// event may follow, so the caller reports it). Channels with another label, or a second
    /// channel, are closed.
    pub fn attach_channel(&mut self, dc: RtcDataChannel) -> bool {
        if self.channel.is_some() || dc.label() != CHANNEL_LABEL {
            dc.close();
            return false;
        }
        if let Some(cb) = self.on_datachannel.take() {
            self.pc.set_ondatachannel(None);
            drop(cb);
        }
        let open = dc.ready_state() == RtcDataChannelState::Open;
        self.channel = Some(Channel::new(&self.sink, self.link, dc));
        open
    }

    /// Send one frame, or queue it while the channel is above its high-water mark. `Ok(true)`
    /// when the link has just become congested (report it to the core). An `Err` is a sentence;
    /// the caller closes the link with it.
    pub fn send(&mut self, bytes: Vec<u8>) -> Result<bool, String> {
        let Some(ch) = self.channel.as_mut() else {
            return Err("there is no data channel to send on yet".into());
        };
        if ch.dc.ready_state() != RtcDataChannelState::Open {
            return Err("the data channel is no longer open".into());
        }
        if ch.queue.is_empty() && ch.dc.buffered_amount() <= HIGH_WATER {
            ch.send_now(&bytes)?;
            return Ok(false);
        }
        if ch.queued_bytes + bytes.len() > MAX_QUEUED {
            return Err(format!(
                "more than {} MiB wait to be sent to the peer",
                MAX_QUEUED >> 20
            ));
        }
        let became_congested = ch.queue.is_empty();
        ch.queued_bytes += bytes.len();
        ch.queue.push_back(bytes);
        if became_congested {
            self.arm_stall();
        }
        Ok(became_congested)
    }

    /// The channel drained below its low-water mark: move queued frames into it. `Ok(true)` when
    /// the queue is now empty after having held frames (the link is no longer congested).
    pub fn flush(&mut self) -> Result<bool, String> {
        let Some(ch) = self.channel.as_mut() else {
            return Ok(false);
        };
        let had = !ch.queue.is_empty();
        while ch.dc.buffered_amount() <= HIGH_WATER {
            let Some(bytes) = ch.queue.pop_front() else {
                break;
            };
            ch.queued_bytes -= bytes.len();
            ch.send_now(&bytes)?;
        }
        let drained = had && ch.queue.is_empty();
        if drained {
            self.stall = None;
        } else if had {
            // The peer reads: give it a new stall period.
            self.arm_stall();
        }
        Ok(drained)
    }

    /// Bytes waiting in our queue (not yet handed to the channel).
    pub fn queued_bytes(&self) -> usize {
        self.channel.as_ref().map_or(0, |c| c.queued_bytes)
    }

    /// Frames waiting in our queue.
    pub fn queued_frames(&self) -> usize {
        self.channel.as_ref().map_or(0, |c| c.queue.len())
    }

    /// The core has closed this link. `None` when nothing waits (drop it now); otherwise the
    /// link, detached from the core's events except [`LinkEvent::Drained`] and
    /// [`LinkEvent::CloseDeadline`], to keep until [`PeerLink::flush`] empties it or the
    /// deadline passes.
    pub fn into_closing(mut self) -> Option<PeerLink> {
        let open = self
            .channel
            .as_ref()
            .is_some_and(|c| c.dc.ready_state() == RtcDataChannelState::Open);
        if !open || self.queued_bytes() == 0 {
            return None;
        }
        self.stall = None;
        let (sink, link) = (self.sink.clone(), self.link);
        self.close_deadline = Some(Timer::new(CLOSE_FLUSH_MS, move || {
            sink(link, LinkEvent::CloseDeadline)
        }));
        Some(self)
    }

    fn arm_stall(&mut self) {
        let (sink, link) = (self.sink.clone(), self.link);
        self.stall = Some(Timer::new(STALL_MS, move || sink(link, LinkEvent::Stalled)));
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.pc.set_onconnectionstatechange(None);
        self.pc.set_ondatachannel(None);
        let dc = self.channel.take().map(|ch| {
            ch.detach();
            // A graceful close: the channel still sends what it has buffered.
            ch.dc.close();
            ch.dc.clone()
        });
        // Closing the peer connection at once would cut the buffered frames off, so wait until
        // the channel is empty (bounded).
        close_when_sent(self.pc.clone(), dc, CLOSE_GRACE_MS / CLOSE_POLL_MS as u64);
    }
}

/// Close `pc` once `dc` has sent everything (or after `tries` more polls).
fn close_when_sent(pc: RtcPeerConnection, dc: Option<RtcDataChannel>, tries: u64) {
    let busy = dc.as_ref().is_some_and(|dc| {
        dc.buffered_amount() > 0 && dc.ready_state() != RtcDataChannelState::Closed
    });
    if !busy || tries == 0 {
        pc.close();
        return;
    }
    timer::after(CLOSE_POLL_MS, move || close_when_sent(pc, dc, tries - 1));
}

impl Channel {
    fn new(sink: &LinkSink, link: LinkId, dc: RtcDataChannel) -> Channel {
        dc.set_binary_type(RtcDataChannelType::Arraybuffer);
        dc.set_buffered_amount_low_threshold(LOW_WATER);

        let s = sink.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| s(link, LinkEvent::Opened));
        let s = sink.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            match ev.data().dyn_into::<js_sys::ArrayBuffer>() {
                // The one copy into wasm memory.
                Ok(buf) => s(
                    link,
                    LinkEvent::Frame(js_sys::Uint8Array::new(&buf).to_vec()),
                ),
                Err(_) => s(
                    link,
                    LinkEvent::Failed(
                        "the peer sent a text message; links carry binary frames only".into(),
                    ),
                ),
            }
        });
        let s = sink.clone();
        let on_close = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            s(
                link,
                LinkEvent::Closed("the peer's data channel closed".into()),
            )
        });
        let s = sink.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |ev: Event| {
            // An RTCErrorEvent; its `error` says what broke.
            let detail = js_sys::Reflect::get(&ev, &"error".into())
                .map(|e| describe(&e))
                .unwrap_or_default();
            s(
                link,
                LinkEvent::Closed(format!("the data channel failed: {detail}")),
            )
        });
        let s = sink.clone();
        let on_low = Closure::<dyn FnMut(Event)>::new(move |_: Event| s(link, LinkEvent::Drained));
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
    sink: &LinkSink,
    link: LinkId,
    pc: &RtcPeerConnection,
) -> Closure<dyn FnMut(Event)> {
    let s = sink.clone();
    let pc2 = pc.clone();
    let cb = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        if pc2.connection_state() == RtcPeerConnectionState::Failed {
            s(
                link,
                LinkEvent::Closed(
                    "the WebRTC connection failed: ICE or DTLS could not reach the peer".into(),
                ),
            );
        }
    });
    pc.set_onconnectionstatechange(Some(cb.as_ref().unchecked_ref()));
    cb
}

async fn make_offer(sink: LinkSink, link: LinkId, pc: RtcPeerConnection) {
    let result = async {
        let offer = JsFuture::from(pc.create_offer()).await?;
        JsFuture::from(pc.set_local_description(offer.unchecked_ref())).await?;
        gathered_sdp(&pc).await
    }
    .await;
    match result {
        Ok(sdp) => sink(link, LinkEvent::OfferReady(sdp)),
        Err(e) => sink(
            link,
            LinkEvent::Failed(format!(
                "the browser could not create an offer: {}",
                describe(&e)
            )),
        ),
    }
}

async fn make_answer(sink: LinkSink, link: LinkId, pc: RtcPeerConnection, offer: String) {
    let result = async {
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&offer);
        JsFuture::from(pc.set_remote_description(&desc)).await?;
        let answer = JsFuture::from(pc.create_answer()).await?;
        JsFuture::from(pc.set_local_description(answer.unchecked_ref())).await?;
        gathered_sdp(&pc).await
    }
    .await;
    match result {
        Ok(sdp) => sink(link, LinkEvent::AnswerReady(sdp)),
        Err(e) => sink(
            link,
            LinkEvent::Failed(format!(
                "the browser could not answer the peer's offer: {}",
                describe(&e)
            )),
        ),
    }
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

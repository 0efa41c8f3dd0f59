//! The node's one input type, its driver actions, and the typed requests its parts hand to the
//! owner (the node), which carries them out in one pump.

use crate::event::{BridgeCloseReason, Event, LinkCloseReason};
use onionmesh_ordb::{StoreCompletion, StoreOpId, StoreRequest};
use onionmesh_wire::{LinkMsg, NodeId, PublicKeyBytes, SignalMsg};
use std::collections::VecDeque;

/// A handle for one WebRTC peer connection, chosen by the core. The driver maps it to its
/// `RTCPeerConnection` and data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// Every event a driver feeds in, through [`crate::Node::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// The WebSocket to the bridge is open (its secure channel included). The node then waits
    /// for the bridge's challenge and answers it with its signed hello: no wall clock is
    /// involved, so a page whose clock is days off registers like any other.
    BridgeOpened,
    /// The bridge connection closed or failed to open.
    BridgeClosed { reason: &'a str },
    /// One frame from the bridge.
    BridgeFrame(&'a [u8]),
    /// The local offer for `link` is ready (ICE candidates gathered).
    OfferReady { link: LinkId, sdp: String },
    /// The local answer for `link` is ready.
    AnswerReady { link: LinkId, sdp: String },
    /// The driver could not create an offer or answer, or the connection failed.
    LinkFailed { link: LinkId, reason: &'a str },
    /// The data channel of `link` opened.
    LinkOpened { link: LinkId },
    /// The data channel of `link` closed.
    LinkClosed { link: LinkId, reason: &'a str },
    /// One frame from `link`'s data channel.
    LinkFrame { link: LinkId, bytes: &'a [u8] },
    /// The data channel of `link` is congested (`blocked`) or has drained (`!blocked`).
    LinkCongestion { link: LinkId, blocked: bool },
    /// The timer armed for [`crate::Node::poll_timeout`] fired.
    Timeout,
    /// A store operation asked for with [`Output::Store`] finished.
    StoreDone(StoreCompletion),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one frame to the bridge.
    SendBridge(Vec<u8>),
    /// Close the bridge connection (it broke the protocol, or the node stops).
    CloseBridge {
        reason: BridgeCloseReason,
    },
    /// Open a new connection to the bridge now (a reconnection attempt after a drop), then feed
    /// [`Input::BridgeOpened`] or [`Input::BridgeClosed`].
    ConnectBridge,
    /// Create a peer connection and a data channel, then report the local offer SDP (after ICE
    /// gathering) with [`Input::OfferReady`].
    CreateOffer {
        link: LinkId,
    },
    /// Create a peer connection for this remote offer, then report the local answer SDP with
    /// [`Input::AnswerReady`].
    CreateAnswer {
        link: LinkId,
        offer: String,
    },
    /// Apply the remote answer to the link's peer connection.
    ApplyAnswer {
        link: LinkId,
        answer: String,
    },
    /// Send one frame on the link's data channel.
    SendLink {
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// Tear the link down. The core has already forgotten it.
    CloseLink {
        link: LinkId,
        reason: LinkCloseReason,
    },
    Event(Event),
    /// Run a content-store operation (IndexedDB in the page, `onionmesh_ordb::MemStore` in the
    /// simulator) and feed its completion, with the same `id`, as [`Input::StoreDone`].
    /// Completions may come back in any order.
    Store {
        id: StoreOpId,
        request: StoreRequest,
    },
}

/// A typed request from one of the node's parts, carried out by the node's pump.
#[derive(Debug)]
pub(crate) enum Request {
    /// Pass an action straight to the driver.
    Driver(Output),
    /// Send a signalling message to the bridge (dropped if not connected).
    SendBridge(SignalMsg),
    /// Send a message on the authenticated link to `peer` (dropped if there is none: the parts
    /// hear `LinkDown`).
    SendTo { peer: NodeId, msg: LinkMsg },
    /// Open a link to `peer` through a bridge introduction (the onion router extending a
    /// circuit); failure comes back as `LinkDown` or an immediate refusal.
    Connect { peer: NodeId },
    /// Close the link to `peer`.
    Disconnect {
        peer: NodeId,
        reason: LinkCloseReason,
    },
    /// A link authenticated.
    LinkUp {
        peer: NodeId,
        pubkey: PublicKeyBytes,
    },
    /// A link went away; `was_linked` says whether it had authenticated.
    LinkDown { peer: NodeId, was_linked: bool },
    /// A frame from an authenticated link for the upper parts (DHT, relay, onion).
    Deliver { peer: NodeId, msg: LinkMsg },
    /// Tell the application.
    Emit(Event),
    /// Keys of peers the DHT named (providers of a content), for the onion directory, so that
    /// circuits can end at them. Each key must hash to its ID.
    PeerKeys(Vec<(NodeId, PublicKeyBytes)>),
}

/// The queue the parts push [`Request`]s into.
pub(crate) type Requests = VecDeque<Request>;

/// Push a log line.
pub(crate) fn log(reqs: &mut Requests, level: crate::event::LogLevel, text: String) {
    reqs.push_back(Request::Emit(Event::Log { level, text }));
}

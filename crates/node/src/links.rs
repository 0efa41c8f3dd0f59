//! The link table: WebRTC links to peers, from the bridge introduction to the authenticated
//! link (the CERTS binding, `onionmesh_crypto::link_auth`), their deadlines and the idle
//! policy. It owns every link's state; other parts see links only through its read methods and
//! through `LinkUp` / `LinkDown` / `Deliver` requests.
//!
//! Authentication: the offering side sends its nonce when its data channel opens; the answering
//! side sends its own nonce only when the offerer's arrives, followed at once by its certificate
//! over the offerer's nonce; the offerer then answers with its certificate. Each side thus
//! proves itself over the other's fresh nonce, as before, but the answerer never speaks first.
//! That is on purpose: in Chromium the answerer's channel opens (`datachannel`) before the
//! offerer's does (`open`), and a frame the answerer sent at once could reach the offerer's
//! channel before it was open and be dropped there, leaving both sides in `authenticating`
//! until the timeout (seen on 2026-12-01: the answerer's nonce was sent 4 ms before the
//! offerer's `open` event and never delivered, while its certificate, sent after the offerer's
//! nonce came, was). A frame sent in answer to one the offerer sent is never early. A
//! certificate that comes before the peer's nonce (a peer of an earlier version, whose
//! answerer sends its nonce on open) is still held, and checked once the nonce is there.

use crate::event::{Event, LinkCloseReason, LinkState, LogLevel, PeerView};
use crate::output::{log, LinkId, Output, Request, Requests};
use onionmesh_bounded::FlatMap;
use onionmesh_crypto::dtls::{self, Fingerprint};
use onionmesh_crypto::{link_auth, Identity};
use onionmesh_wire::link::{CloseReason, LinkData, MAX_DATA, NONCE_LEN};
use onionmesh_wire::signal::{Reason, Sdp, MAX_SDP};
use onionmesh_wire::{
    Frame, LinkMsg, NodeId, PeerRecord, PublicKeyBytes, SignalMsg, SignatureBytes, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::Duration;

use crate::error::ApiError;

/// Tunables of the link table.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Most peer links open or opening at once.
    pub max_links: usize,
    /// Below this many links the node asks its bridge for more peers; above it, idle links are
    /// closed.
    pub target_links: usize,
    /// From our offer (or their offer) to an open data channel.
    pub connect_timeout: Duration,
    /// From an open data channel to a verified proof.
    pub auth_timeout: Duration,
    /// While more than `target_links` links are open, one idle this long is closed.
    pub idle_timeout: Duration,
    /// An authenticated link with nothing to send for this long sends a `Keepalive`. `None`
    /// turns keepalives (and silence detection) off, for simulations that jump the clock.
    pub keepalive_interval: Option<Duration>,
    /// An authenticated link from which nothing at all arrived for this long is dead (a closed
    /// tab, a crashed or suspended page): it is closed, which destroys its circuits at once.
    pub silence_timeout: Duration,
    /// Test-only: sign a wrong link proof, so that peers must refuse us.
    pub test_only_corrupt_link_proof: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_links: 32,
            target_links: 8,
            connect_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10 * 60),
            keepalive_interval: Some(Duration::from_secs(1)),
            silence_timeout: Duration::from_secs(5),
            test_only_corrupt_link_proof: false,
        }
    }
}

/// Everything the core knows about one link.
#[derive(Debug)]
struct Link {
    peer: NodeId,
    state: LinkState,
    initiator: bool,
    /// Matches an offer with its answer through the bridge.
    session: u64,
    local_fp: Option<Fingerprint>,
    remote_fp: Option<Fingerprint>,
    /// Our challenge for the peer's proof.
    nonce: [u8; NONCE_LEN],
    got_peer_nonce: bool,
    /// A certificate that arrived before the peer's nonce, checked once the nonce is in.
    early_cert: Option<(PublicKeyBytes, SignatureBytes)>,
    /// Entered the current state at.
    since: Time,
    /// A link not yet `Linked` is closed at this time.
    deadline: Option<Time>,
    /// The peer's authenticated key, once linked.
    pubkey: Option<PublicKeyBytes>,
    /// Last frame in or out carrying work (the idle policy; keepalives do not count).
    last_used: Time,
    /// Last frame of any kind received, and sent (silence detection and keepalives).
    last_in: Time,
    last_out: Time,
    /// The driver said its channel is congested.
    blocked: bool,
    bytes_in: u64,
    bytes_out: u64,
}

/// The link table (see the module docs).
pub(crate) struct LinkTable {
    cfg: LinkConfig,
    links: FlatMap<LinkId, Link>,
    by_peer: FlatMap<NodeId, LinkId>,
    next_link: u64,
    rng: ChaCha20Rng,
}

impl LinkTable {
    pub fn new(cfg: LinkConfig, seed: [u8; 32]) -> LinkTable {
        LinkTable {
            cfg,
            links: FlatMap::new(),
            by_peer: FlatMap::new(),
            next_link: 1,
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    // ----- reading -------------------------------------------------------------------------

    /// Links open or opening.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// The authenticated link to `peer`, if any.
    pub fn linked_link(&self, peer: &NodeId) -> Option<LinkId> {
        let link = *self.by_peer.get(peer)?;
        self.links
            .get(&link)
            .filter(|l| l.state == LinkState::Linked)
            .map(|_| link)
    }

    pub fn is_linked(&self, peer: &NodeId) -> bool {
        self.linked_link(peer).is_some()
    }

    /// True when a link to `peer` exists in any state.
    pub fn has_link(&self, peer: &NodeId) -> bool {
        self.by_peer.contains_key(peer)
    }

    /// Peers with an authenticated link.
    pub fn linked_peers(&self) -> Vec<NodeId> {
        self.links
            .values()
            .filter(|l| l.state == LinkState::Linked)
            .map(|l| l.peer)
            .collect()
    }

    /// The authenticated key of a linked peer.
    pub fn linked_pubkey(&self, peer: &NodeId) -> Option<PublicKeyBytes> {
        let link = self.linked_link(peer)?;
        self.links.get(&link).and_then(|l| l.pubkey)
    }

    /// Every link, typed.
    pub fn views(&self, now: Time) -> Vec<PeerView> {
        self.links
            .values()
            .map(|l| PeerView {
                id: l.peer,
                state: l.state,
                initiator: l.initiator,
                since_ms: now.since(l.since),
                bytes_in: l.bytes_in,
                bytes_out: l.bytes_out,
            })
            .collect()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.links
            .values()
            .filter_map(|l| l.deadline)
            .chain(self.keepalive_due())
            .min()
    }

    // ----- application API -----------------------------------------------------------------

    /// Queue application bytes for an authenticated peer.
    pub fn send_data(
        &mut self,
        now: Time,
        peer: NodeId,
        data: &[u8],
        reqs: &mut Requests,
    ) -> Result<(), ApiError> {
        let data = LinkData::from_slice(data).map_err(|_| ApiError::TooLarge {
            len: data.len(),
            max: MAX_DATA,
        })?;
        let link = self
            .linked_link(&peer)
            .ok_or_else(|| ApiError::NotLinked(peer.short()))?;
        let Some(l) = self.links.get_mut(&link) else {
            return Err(ApiError::NotLinked(peer.short()));
        };
        if l.blocked {
            // The driver's channel is over its high-water mark: this is the caller's
            // backpressure, not the peer's fault (it keeps the link and its circuits alive).
            return Err(ApiError::Busy(peer.short()));
        }
        l.bytes_out += data.len() as u64;
        l.last_used = now;
        l.last_out = now;
        reqs.push_back(Request::Driver(Output::SendLink {
            link,
            bytes: LinkMsg::Data(data).encode_frame(),
        }));
        Ok(())
    }

    /// Start a link to `peer` by a bridge introduction. Does nothing if one exists.
    pub fn connect(
        &mut self,
        now: Time,
        me: NodeId,
        peer: NodeId,
        registered: bool,
        reqs: &mut Requests,
    ) -> Result<(), ApiError> {
        if peer == me {
            return Err(ApiError::SelfConnect);
        }
        if self.by_peer.contains_key(&peer) {
            return Ok(());
        }
        if !registered {
            return Err(ApiError::NoBridge);
        }
        if self.links.len() >= self.cfg.max_links {
            return Err(ApiError::TooManyLinks(self.cfg.max_links));
        }
        let session = self.rng.next_u64();
        let link = self.new_link(now, peer, true, session, LinkState::Offering, reqs);
        reqs.push_back(Request::Driver(Output::CreateOffer { link }));
        Ok(())
    }

    /// Close the link to `peer`, if any.
    pub fn disconnect(&mut self, peer: NodeId, reason: LinkCloseReason, reqs: &mut Requests) {
        if let Some(&link) = self.by_peer.get(&peer) {
            self.close(link, reason, LinkState::Closed, reqs);
        }
    }

    /// Close every link (the node stops).
    pub fn close_all(&mut self, reqs: &mut Requests) {
        let all: Vec<LinkId> = self.links.keys().copied().collect();
        for link in all {
            self.close(link, LinkCloseReason::Stopped, LinkState::Closed, reqs);
        }
    }

    /// Queue an encoded frame for the authenticated link to `peer`. False if there is none.
    pub fn send_frame(
        &mut self,
        now: Time,
        peer: NodeId,
        bytes: Vec<u8>,
        reqs: &mut Requests,
    ) -> bool {
        let Some(link) = self.linked_link(&peer) else {
            return false;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.bytes_out += bytes.len() as u64;
            l.last_used = now;
            l.last_out = now;
        }
        reqs.push_back(Request::Driver(Output::SendLink { link, bytes }));
        true
    }

    /// The driver's channel for `link` is congested or drained. Returns the peer and whether
    /// the state changed.
    pub fn set_blocked(
        &mut self,
        link: LinkId,
        blocked: bool,
        reqs: &mut Requests,
    ) -> Option<(NodeId, bool)> {
        let l = self.links.get_mut(&link)?;
        let changed = l.blocked != blocked;
        l.blocked = blocked;
        if changed && !blocked && l.state == LinkState::Linked {
            reqs.push_back(Request::Emit(Event::LinkWritable { peer: l.peer }));
        }
        Some((l.peer, changed))
    }

    // ----- bridge signalling ---------------------------------------------------------------

    /// Peers from the bridge's `FoundPeer`: link to those at our own bridge, up to the limit.
    pub fn on_found_peers(
        &mut self,
        now: Time,
        me: NodeId,
        peers: &[PeerRecord],
        reqs: &mut Requests,
    ) {
        for p in peers {
            if p.id == me || self.by_peer.contains_key(&p.id) {
                continue;
            }
            // Peers at other bridges only enter the DHT: a link to one is made on demand with
            // `connect`, so lookups do not link to everyone.
            if p.bridge.is_some() {
                continue;
            }
            if onionmesh_crypto::node_id(&p.pubkey) != p.id {
                log(
                    reqs,
                    LogLevel::Warn,
                    format!(
                        "the bridge named peer {} with a key that is not its own",
                        p.id.short()
                    ),
                );
                continue;
            }
            if self.links.len() >= self.cfg.max_links {
                break;
            }
            let session = self.rng.next_u64();
            let link = self.new_link(now, p.id, true, session, LinkState::Offering, reqs);
            reqs.push_back(Request::Driver(Output::CreateOffer { link }));
        }
    }

    /// A peer's offer, relayed by the bridge.
    pub fn on_introduce(
        &mut self,
        now: Time,
        me: NodeId,
        from: NodeId,
        session: u64,
        sdp: String,
        reqs: &mut Requests,
    ) {
        if from == me {
            return;
        }
        if let Some(&existing) = self.by_peer.get(&from) {
            let Some(l) = self.links.get(&existing) else {
                return;
            };
            let ours_pending =
                l.initiator && matches!(l.state, LinkState::Offering | LinkState::Introducing);
            if ours_pending {
                // Glare: both sides offered at once. The lower ID's offer wins.
                if me < from {
                    return;
                }
                self.close(existing, LinkCloseReason::Glare, LinkState::Closed, reqs);
            } else if l.session == session {
                // The same offer again: nothing new.
                return;
            } else {
                // A new offer from a peer we hold a link with (one it answered or offered
                // earlier): it has dropped its end, and its close has not reached us yet (issue
                // 12, case 2: both sides reconnect right after a disconnect). The bridge relays
                // one peer's frames in order, so this offer is newer than anything of that
                // link, and the peer no longer holds it: replace it.
                self.close(
                    existing,
                    LinkCloseReason::ChannelClosed(
                        "the peer offered a new link, so it has dropped this one".into(),
                    ),
                    LinkState::Closed,
                    reqs,
                );
            }
        }
        if self.links.len() >= self.cfg.max_links {
            reqs.push_back(Request::SendBridge(SignalMsg::IntroduceFailed {
                peer: from,
                session,
                reason: Reason::lossy("the peer has no room for another link"),
            }));
            return;
        }
        let Some(remote_fp) = dtls::fingerprint(&sdp) else {
            reqs.push_back(Request::SendBridge(SignalMsg::IntroduceFailed {
                peer: from,
                session,
                reason: Reason::lossy("the offer has no DTLS fingerprint"),
            }));
            return;
        };
        let link = self.new_link(now, from, false, session, LinkState::Answering, reqs);
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_fp = Some(remote_fp);
        }
        reqs.push_back(Request::Driver(Output::CreateAnswer { link, offer: sdp }));
    }

    /// The peer's answer to our offer, relayed by the bridge.
    pub fn on_introduced(
        &mut self,
        now: Time,
        from: NodeId,
        session: u64,
        sdp: String,
        reqs: &mut Requests,
    ) {
        let Some(&link) = self.by_peer.get(&from) else {
            return;
        };
        let matches = self.links.get(&link).is_some_and(|l| {
            l.initiator && l.session == session && l.state == LinkState::Introducing
        });
        if !matches {
            return;
        }
        let Some(fp) = dtls::fingerprint(&sdp) else {
            self.close(
                link,
                LinkCloseReason::Protocol("the answer has no DTLS fingerprint".into()),
                LinkState::Closed,
                reqs,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_fp = Some(fp);
        }
        self.set_state(now, link, LinkState::Connecting, reqs);
        reqs.push_back(Request::Driver(Output::ApplyAnswer { link, answer: sdp }));
    }

    /// The bridge could not deliver our offer.
    pub fn on_introduce_failed(
        &mut self,
        peer: NodeId,
        session: u64,
        reason: String,
        reqs: &mut Requests,
    ) {
        if let Some(&link) = self.by_peer.get(&peer) {
            if self
                .links
                .get(&link)
                .is_some_and(|l| l.session == session && l.initiator)
            {
                self.close(
                    link,
                    LinkCloseReason::IntroductionFailed(reason),
                    LinkState::Closed,
                    reqs,
                );
            }
        }
    }

    /// The bridge connection dropped: introductions in flight cannot finish.
    pub fn bridge_lost(&mut self, reqs: &mut Requests) {
        let stuck: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l.state, LinkState::Offering | LinkState::Introducing))
            .map(|(id, _)| *id)
            .collect();
        for link in stuck {
            self.close(link, LinkCloseReason::BridgeGone, LinkState::Closed, reqs);
        }
    }

    // ----- driver events -------------------------------------------------------------------

    /// The browser's SDP, if the bridge can carry it; else the link closes with a sentence
    /// (an SDP is never cut: a shortened one is garbage).
    fn bounded_sdp(
        &mut self,
        link: LinkId,
        sdp: String,
        what: &str,
        reqs: &mut Requests,
    ) -> Option<Sdp> {
        let len = sdp.len();
        match Sdp::new(sdp) {
            Ok(sdp) => Some(sdp),
            Err(_) => {
                let why = format!(
                    "our own {what} is {len} bytes, more than the {MAX_SDP} a bridge relays (too many ICE candidates?)"
                );
                self.close(
                    link,
                    LinkCloseReason::DriverFailed(why),
                    LinkState::Closed,
                    reqs,
                );
                None
            }
        }
    }

    pub fn offer_ready(&mut self, now: Time, link: LinkId, sdp: String, reqs: &mut Requests) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Offering {
            return;
        }
        let (peer, session) = (l.peer, l.session);
        let Some(sdp) = self.bounded_sdp(link, sdp, "offer", reqs) else {
            return;
        };
        let Some(fp) = dtls::fingerprint(&sdp) else {
            self.close(
                link,
                LinkCloseReason::DriverFailed("our own offer has no DTLS fingerprint".into()),
                LinkState::Closed,
                reqs,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.local_fp = Some(fp);
        }
        self.set_state(now, link, LinkState::Introducing, reqs);
        reqs.push_back(Request::SendBridge(SignalMsg::Introduce {
            peer,
            session,
            sdp,
        }));
    }

    pub fn answer_ready(&mut self, now: Time, link: LinkId, sdp: String, reqs: &mut Requests) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Answering {
            return;
        }
        let (peer, session) = (l.peer, l.session);
        let Some(sdp) = self.bounded_sdp(link, sdp, "answer", reqs) else {
            return;
        };
        let Some(fp) = dtls::fingerprint(&sdp) else {
            self.close(
                link,
                LinkCloseReason::DriverFailed("our own answer has no DTLS fingerprint".into()),
                LinkState::Closed,
                reqs,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.local_fp = Some(fp);
        }
        self.set_state(now, link, LinkState::Connecting, reqs);
        reqs.push_back(Request::SendBridge(SignalMsg::Introduced {
            peer,
            session,
            sdp,
        }));
    }

    pub fn link_failed(&mut self, link: LinkId, reason: &str, reqs: &mut Requests) {
        if self.links.contains_key(&link) {
            self.close(
                link,
                LinkCloseReason::DriverFailed(reason.to_owned()),
                LinkState::Closed,
                reqs,
            );
        }
    }

    pub fn link_closed(&mut self, link: LinkId, reason: &str, reqs: &mut Requests) {
        if self.links.contains_key(&link) {
            self.close(
                link,
                LinkCloseReason::ChannelClosed(reason.to_owned()),
                LinkState::Closed,
                reqs,
            );
        }
    }

    /// The data channel opened: start the authentication deadline, and on the offering side send
    /// our nonce (the answering side waits for the offerer's; see the module docs).
    pub fn link_opened(&mut self, now: Time, link: LinkId, reqs: &mut Requests) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Connecting {
            return;
        }
        let (initiator, nonce) = (l.initiator, l.nonce);
        self.set_state(now, link, LinkState::Authenticating, reqs);
        if let Some(l) = self.links.get_mut(&link) {
            l.deadline = Some(now + self.cfg.auth_timeout);
        }
        if initiator {
            send_nonce(link, nonce, reqs);
        }
    }

    /// One frame from `link`. Authentication is handled here; authenticated application
    /// frames become `Event::Message`, the rest `Request::Deliver` for the upper parts.
    pub fn link_frame(
        &mut self,
        now: Time,
        identity: &Identity,
        link: LinkId,
        bytes: &[u8],
        reqs: &mut Requests,
    ) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let state = l.state;
        let msg = match LinkMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.violation(link, format!("malformed frame: {e}"), reqs);
                return;
            }
        };
        l.last_in = now;
        if state == LinkState::Linked && msg != LinkMsg::Keepalive {
            l.bytes_in += bytes.len() as u64;
            l.last_used = now;
        }
        let peer = l.peer;
        match (state, msg) {
            (LinkState::Authenticating, LinkMsg::Nonce(n)) => {
                self.on_peer_nonce(now, identity, link, n, reqs)
            }
            (LinkState::Authenticating, LinkMsg::Cert { pubkey, sig }) => {
                self.on_peer_cert(now, link, pubkey, sig, reqs)
            }
            (LinkState::Linked, LinkMsg::Data(data)) => {
                reqs.push_back(Request::Emit(Event::Message {
                    from: peer,
                    data: data.into_vec(),
                }));
            }
            (_, LinkMsg::Keepalive) => {}
            (_, LinkMsg::Close { reason }) => {
                self.close(
                    link,
                    LinkCloseReason::PeerClosed(reason.into_string()),
                    LinkState::Closed,
                    reqs,
                );
            }
            (LinkState::Linked, LinkMsg::Unrecognized { cmd, .. }) => {
                log(
                    reqs,
                    LogLevel::Info,
                    format!("ignoring unknown link command 0x{cmd:02x}"),
                );
            }
            (
                LinkState::Linked,
                msg @ (LinkMsg::Kad(_)
                | LinkMsg::Relay { .. }
                | LinkMsg::Relayed { .. }
                | LinkMsg::RelayFailed { .. }
                | LinkMsg::Cell(_)
                | LinkMsg::Cells(_)),
            ) => reqs.push_back(Request::Deliver { peer, msg }),
            (state, msg) => {
                let what = match msg {
                    LinkMsg::Nonce(_) => "a second nonce",
                    LinkMsg::Cert { .. } => "a certificate outside authentication",
                    LinkMsg::Data(_) => "data before authentication",
                    LinkMsg::Cell(_) | LinkMsg::Cells(_) => "an onion cell before authentication",
                    _ => "a command before authentication",
                };
                self.violation(
                    link,
                    format!("unexpected {what} while {}", state.as_words()),
                    reqs,
                );
            }
        }
    }

    fn on_peer_nonce(
        &mut self,
        now: Time,
        identity: &Identity,
        link: LinkId,
        their_nonce: [u8; NONCE_LEN],
        reqs: &mut Requests,
    ) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.got_peer_nonce {
            self.violation(link, "the peer sent a second nonce".into(), reqs);
            return;
        }
        l.got_peer_nonce = true;
        let (Some(local_fp), Some(remote_fp)) = (l.local_fp.clone(), l.remote_fp.clone()) else {
            self.close(
                link,
                LinkCloseReason::Protocol("fingerprints unknown at authentication".into()),
                LinkState::Closed,
                reqs,
            );
            return;
        };
        let early = l.early_cert.take();
        if !l.initiator {
            // The answerer's nonce goes out now, ahead of its certificate (the offerer sent its
            // own on open; a second nonce from the peer never gets here).
            send_nonce(link, l.nonce, reqs);
        }
        let mut nonce = their_nonce;
        if self.cfg.test_only_corrupt_link_proof {
            nonce[0] ^= 0x80;
        }
        let sig = link_auth::prove(identity, &local_fp, &remote_fp, &nonce);
        reqs.push_back(Request::Driver(Output::SendLink {
            link,
            bytes: LinkMsg::Cert {
                pubkey: identity.public_key(),
                sig,
            }
            .encode_frame(),
        }));
        if let Some((pubkey, sig)) = early {
            self.on_peer_cert(now, link, pubkey, sig, reqs);
        }
    }

    fn on_peer_cert(
        &mut self,
        now: Time,
        link: LinkId,
        pubkey: PublicKeyBytes,
        sig: SignatureBytes,
        reqs: &mut Requests,
    ) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.got_peer_nonce {
            // The peer's certificate overtook its nonce (its channel opened first): hold it.
            if l.early_cert.is_some() {
                self.violation(link, "the peer sent two certificates".into(), reqs);
            } else {
                l.early_cert = Some((pubkey, sig));
            }
            return;
        }
        let (Some(local_fp), Some(remote_fp)) = (l.local_fp.as_ref(), l.remote_fp.as_ref()) else {
            return;
        };
        let peer = l.peer;
        match link_auth::check(peer, &pubkey, &sig, local_fp, remote_fp, &l.nonce) {
            Ok(()) => {
                l.deadline = None;
                l.pubkey = Some(pubkey);
                l.last_used = now;
                l.last_in = now;
                l.last_out = now;
                self.set_state(now, link, LinkState::Linked, reqs);
                reqs.push_back(Request::LinkUp { peer, pubkey });
            }
            Err(e) => {
                let reason = LinkCloseReason::AuthFailed(e.to_string());
                reqs.push_back(Request::Driver(Output::SendLink {
                    link,
                    bytes: LinkMsg::Close {
                        // Our own sentence, for the peer's log: shortened rather than not sent.
                        reason: CloseReason::lossy(&reason.to_string()),
                    }
                    .encode_frame(),
                }));
                log(
                    reqs,
                    LogLevel::Warn,
                    format!("refusing peer {}: {reason}", peer.short()),
                );
                self.close(link, reason, LinkState::Refused, reqs);
            }
        }
    }

    // ----- timers --------------------------------------------------------------------------

    /// Deadlines of links still being set up, and the idle policy.
    pub fn handle_timeout(&mut self, now: Time, reqs: &mut Requests) {
        let expired: Vec<(LinkId, LinkState)> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline.is_some_and(|d| d <= now))
            .map(|(id, l)| (*id, l.state))
            .collect();
        for (link, state) in expired {
            self.close(
                link,
                LinkCloseReason::Timeout(state),
                LinkState::Closed,
                reqs,
            );
        }
        self.keepalives(now, reqs);
        self.close_idle(now, reqs);
    }

    /// Close links that went silent; send a keepalive on those we have been quiet on.
    fn keepalives(&mut self, now: Time, reqs: &mut Requests) {
        let Some(interval) = self.cfg.keepalive_interval else {
            return;
        };
        let silence = u64::try_from(self.cfg.silence_timeout.as_millis()).unwrap_or(u64::MAX);
        let interval = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let mut dead = Vec::new();
        for (id, l) in self.links.iter_mut() {
            if l.state != LinkState::Linked {
                continue;
            }
            if now.since(l.last_in) >= silence {
                dead.push((*id, now.since(l.last_in)));
            } else if now.since(l.last_out) >= interval {
                l.last_out = now;
                reqs.push_back(Request::Driver(Output::SendLink {
                    link: *id,
                    bytes: LinkMsg::Keepalive.encode_frame(),
                }));
            }
        }
        for (link, ms) in dead {
            self.close(
                link,
                LinkCloseReason::Silent { ms },
                LinkState::Closed,
                reqs,
            );
        }
    }

    /// When the keepalive policy next needs a look.
    fn keepalive_due(&self) -> Option<Time> {
        let interval = self.cfg.keepalive_interval?;
        self.links
            .values()
            .filter(|l| l.state == LinkState::Linked)
            .map(|l| (l.last_in + self.cfg.silence_timeout).min(l.last_out + interval))
            .min()
    }

    /// While more than `target_links` links are authenticated, close those idle for too long,
    /// least recently used first.
    fn close_idle(&mut self, now: Time, reqs: &mut Requests) {
        let idle_ms = u64::try_from(self.cfg.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut idle: Vec<(Time, LinkId)> = self
            .links
            .iter()
            .filter(|(_, l)| l.state == LinkState::Linked && now.since(l.last_used) >= idle_ms)
            .map(|(id, l)| (l.last_used, *id))
            .collect();
        idle.sort();
        let mut open = self
            .links
            .values()
            .filter(|l| l.state == LinkState::Linked)
            .count();
        for (_, link) in idle {
            if open <= self.cfg.target_links {
                break;
            }
            self.close(link, LinkCloseReason::Idle, LinkState::Closed, reqs);
            open -= 1;
        }
    }

    /// When the idle policy next needs a look (only while above the target).
    pub fn idle_check_due(&self) -> Option<Time> {
        let linked: Vec<&Link> = self
            .links
            .values()
            .filter(|l| l.state == LinkState::Linked)
            .collect();
        if linked.len() <= self.cfg.target_links {
            return None;
        }
        linked
            .iter()
            .map(|l| l.last_used + self.cfg.idle_timeout)
            .min()
    }

    // ----- helpers -------------------------------------------------------------------------

    fn new_link(
        &mut self,
        now: Time,
        peer: NodeId,
        initiator: bool,
        session: u64,
        state: LinkState,
        reqs: &mut Requests,
    ) -> LinkId {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        self.links.insert(
            id,
            Link {
                peer,
                state,
                initiator,
                session,
                local_fp: None,
                remote_fp: None,
                nonce,
                got_peer_nonce: false,
                early_cert: None,
                pubkey: None,
                since: now,
                deadline: Some(now + self.cfg.connect_timeout),
                last_used: now,
                last_in: now,
                last_out: now,
                blocked: false,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.by_peer.insert(peer, id);
        reqs.push_back(Request::Emit(Event::Peer {
            id: peer,
            state,
            reason: None,
        }));
        id
    }

    fn set_state(&mut self, now: Time, link: LinkId, state: LinkState, reqs: &mut Requests) {
        if let Some(l) = self.links.get_mut(&link) {
            l.state = state;
            l.since = now;
            reqs.push_back(Request::Emit(Event::Peer {
                id: l.peer,
                state,
                reason: None,
            }));
        }
    }

    /// Forget `link` and tell the driver to close it.
    fn close(
        &mut self,
        link: LinkId,
        reason: LinkCloseReason,
        final_state: LinkState,
        reqs: &mut Requests,
    ) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        let current = self.by_peer.get(&l.peer) == Some(&link);
        if current {
            self.by_peer.remove(&l.peer);
        }
        // Even when the driver reported the close itself it may still hold the peer connection;
        // closing twice is harmless for it, and forgetting would leak.
        reqs.push_back(Request::Driver(Output::CloseLink {
            link,
            reason: reason.clone(),
        }));
        reqs.push_back(Request::Emit(Event::Peer {
            id: l.peer,
            state: final_state,
            reason: Some(reason),
        }));
        if current {
            reqs.push_back(Request::LinkDown {
                peer: l.peer,
                was_linked: l.state == LinkState::Linked,
            });
        }
    }

    /// The peer on `link` broke the protocol: close that link only.
    pub fn violation(&mut self, link: LinkId, what: String, reqs: &mut Requests) {
        let peer = self
            .links
            .get(&link)
            .map(|l| l.peer.short())
            .unwrap_or_default();
        log(
            reqs,
            LogLevel::Warn,
            format!("closing the link to {peer}: {what}"),
        );
        self.close(
            link,
            LinkCloseReason::Protocol(what),
            LinkState::Closed,
            reqs,
        );
    }
}

/// Send our nonce on `link`: the offerer on open, the answerer on the offerer's nonce.
fn send_nonce(link: LinkId, nonce: [u8; NONCE_LEN], reqs: &mut Requests) {
    reqs.push_back(Request::Driver(Output::SendLink {
        link,
        bytes: LinkMsg::Nonce(nonce).encode_frame(),
    }));
}

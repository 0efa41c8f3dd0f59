//! The peer node's state machine. See the crate docs for the calling rules.

use crate::dht::{DhtConfig, NodeDht};
use crate::event::{BridgeState, Event, LinkState, LogLevel, PeerView};
use crate::link::{Link, LinkId};
use crate::Time;
use onionmesh_crypto::{dtls, hello, link_auth, node_id, Identity};
use onionmesh_wire::link::{MAX_DATA, NONCE_LEN};
use onionmesh_wire::{Frame, LinkMsg, NodeId, PeerRecord, SignalMsg};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use thiserror::Error;

/// Tunables of a node. The defaults suit a browser page.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Most peer links open or opening at once.
    pub max_links: usize,
    /// Below this many links the node asks its bridge for more peers every `refresh_interval`.
    pub target_links: usize,
    pub refresh_interval: Duration,
    /// From our offer (or their offer) to an open data channel.
    pub connect_timeout: Duration,
    /// From an open data channel to a verified proof.
    pub auth_timeout: Duration,
    /// Test-only: sign a wrong link proof, so that peers must refuse us.
    pub test_only_corrupt_link_proof: bool,
    /// The Kademlia DHT (see `crate::dht`).
    pub dht: DhtConfig,
    /// Onion proxy and router tunables.
    pub onion: crate::circuits::OnionConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_links: 32,
            target_links: 8,
            refresh_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(10),
            test_only_corrupt_link_proof: false,
            dht: DhtConfig::default(),
            onion: crate::circuits::OnionConfig::default(),
        }
    }
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one frame to the bridge.
    SendBridge(Vec<u8>),
    /// Close the bridge connection (it broke the protocol).
    CloseBridge {
        reason: String,
    },
    /// Create a peer connection and a data channel, then report the local offer SDP (after ICE
    /// gathering) with [`Node::handle_offer_ready`].
    CreateOffer {
        link: LinkId,
    },
    /// Create a peer connection for this remote offer, then report the local answer SDP with
    /// [`Node::handle_answer_ready`].
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
        reason: String,
    },
    Event(Event),
}

/// A caller misused the API (as opposed to a peer breaking the protocol).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("there is no authenticated link to peer {0}; wait for its 'linked' event first")]
    NotLinked(String),
    #[error("the message is {len} bytes; at most {max} fit in one link frame")]
    TooLarge { len: usize, max: usize },
    #[error("a node cannot link to itself")]
    SelfConnect,
    #[error("the node is not registered with a bridge, so nobody can introduce it")]
    NoBridge,
    #[error("the node already has {0} links open or opening; close one first")]
    TooManyLinks(usize),
}

impl ApiError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotLinked(_) => "NOT_LINKED",
            ApiError::TooLarge { .. } => "TOO_LARGE",
            ApiError::SelfConnect => "BAD_PEER_ID",
            ApiError::NoBridge => "NO_BRIDGE",
            ApiError::TooManyLinks(_) => "TOO_MANY_LINKS",
        }
    }
}

/// One mesh node.
pub struct Node {
    identity: Identity,
    pub(crate) cfg: NodeConfig,
    rng: ChaCha20Rng,
    pub(crate) bridge: BridgeState,
    next_refresh: Option<Time>,
    pub(crate) links: BTreeMap<LinkId, Link>,
    pub(crate) by_peer: BTreeMap<NodeId, LinkId>,
    next_link: u64,
    pub(crate) out: VecDeque<Output>,
    pub(crate) dht: NodeDht,
    /// Onion proxy and router (crate::circuits).
    pub(crate) onion: crate::circuits::Onion,
    /// The latest `now` the node was given, for work the onion layer starts inside `poll_output`.
    pub(crate) now: Time,
}

impl Node {
    /// `seed` feeds the node's RNG (nonces, session ids): give it 32 bytes from the OS RNG in a
    /// driver, a fixed value in a simulation.
    pub fn new(identity: Identity, cfg: NodeConfig, seed: [u8; 32]) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut dht_seed = [0u8; 32];
        rng.fill_bytes(&mut dht_seed);
        let me = onionmesh_wire::kad::Contact {
            id: identity.id(),
            pubkey: identity.public_key(),
            bridge: String::new(),
            introducers: Vec::new(),
        };
        let mut onion_seed = [0u8; 32];
        rng.fill_bytes(&mut onion_seed);
        let onion = crate::circuits::Onion::new(
            identity.id(),
            identity.onion_secret(),
            &cfg.onion,
            onion_seed,
        );
        Node {
            dht: NodeDht::new(me, cfg.dht.clone(), dht_seed),
            identity,
            cfg,
            rng,
            bridge: BridgeState::Connecting,
            next_refresh: None,
            links: BTreeMap::new(),
            by_peer: BTreeMap::new(),
            next_link: 1,
            out: VecDeque::new(),
            onion,
            now: Time::ZERO,
        }
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    pub fn public_key(&self) -> onionmesh_wire::PublicKeyBytes {
        self.identity.public_key()
    }

    pub fn bridge_state(&self) -> BridgeState {
        self.bridge
    }

    /// The next action for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_empty() {
            self.pump_onion();
        }
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.links
            .values()
            .filter_map(|l| l.deadline)
            .chain(self.next_refresh)
            .chain(self.dht_poll_timeout())
            .chain(self.onion.poll_timeout())
            .min()
    }

    /// Every link, in the page's terms.
    pub fn peers(&self, now: Time) -> Vec<PeerView> {
        self.links
            .values()
            .map(|l| PeerView {
                id: l.peer.to_hex(),
                short_id: l.peer.short(),
                state: l.state,
                initiator: l.initiator,
                since_ms: now.since(l.since),
                bytes_in: l.bytes_in,
                bytes_out: l.bytes_out,
            })
            .collect()
    }

    /// Peers with an authenticated link.
    pub fn linked_peers(&self) -> Vec<NodeId> {
        self.links
            .values()
            .filter(|l| l.state == LinkState::Linked)
            .map(|l| l.peer)
            .collect()
    }

    // ----- API -------------------------------------------------------------------------------

    /// Send application bytes to an authenticated peer.
    pub fn send(&mut self, peer: NodeId, data: &[u8]) -> Result<(), ApiError> {
        if data.len() > MAX_DATA {
            return Err(ApiError::TooLarge {
                len: data.len(),
                max: MAX_DATA,
            });
        }
        let link_id = self
            .by_peer
            .get(&peer)
            .copied()
            .filter(|l| {
                self.links
                    .get(l)
                    .is_some_and(|l| l.state == LinkState::Linked)
            })
            .ok_or_else(|| ApiError::NotLinked(peer.short()))?;
        let bytes = LinkMsg::Data(data.to_vec()).encode_frame();
        if let Some(l) = self.links.get_mut(&link_id) {
            l.bytes_out += data.len() as u64;
        }
        self.out.push_back(Output::SendLink {
            link: link_id,
            bytes,
        });
        Ok(())
    }

    /// Ask the bridge for peers now (the node also does this by itself when it has few links).
    pub fn find_peers(&mut self) {
        if self.bridge == BridgeState::Registered {
            let msg = SignalMsg::FindPeer {
                id: self.id(),
                pubkey: self.identity.public_key(),
            };
            self.send_bridge(&msg);
        }
    }

    /// Open a link to `peer` through an introduction by our bridge (the bridge relays our offer
    /// and the answer). Does nothing if a link to `peer` exists or is being made; watch for the
    /// `linked` event or a closed link.
    pub fn connect(&mut self, now: Time, peer: NodeId) -> Result<(), ApiError> {
        if peer == self.id() {
            return Err(ApiError::SelfConnect);
        }
        if self.by_peer.contains_key(&peer) {
            return Ok(());
        }
        if self.bridge != BridgeState::Registered {
            return Err(ApiError::NoBridge);
        }
        if self.links.len() >= self.cfg.max_links {
            return Err(ApiError::TooManyLinks(self.cfg.max_links));
        }
        let session = self.rng.next_u64();
        let link = self.new_link(now, peer, true, session, LinkState::Offering);
        self.out.push_back(Output::CreateOffer { link });
        Ok(())
    }

    /// Close the link to `peer`, if any.
    pub fn disconnect(&mut self, peer: NodeId, reason: &str) {
        if let Some(&link) = self.by_peer.get(&peer) {
            self.close_link(link, reason, LinkState::Closed);
        }
    }

    // ----- bridge ----------------------------------------------------------------------------

    /// The WebSocket to the bridge is open. The node waits for the bridge's `Challenge` and
    /// answers it with its signed hello (issue 11, case 1: no wall clock is involved).
    /// `_unix_ms` is no longer used.
    // TODO(node author): drop `_unix_ms` from the signature (browser driver, sim, tests).
    pub fn handle_bridge_opened(&mut self, now: Time, _unix_ms: u64) {
        self.set_bridge(
            BridgeState::Registering,
            "waiting for the bridge's challenge",
        );
        self.next_refresh = Some(now + self.cfg.refresh_interval);
    }

    /// The bridge connection closed or failed.
    pub fn handle_bridge_closed(&mut self, _now: Time, reason: &str) {
        self.next_refresh = None;
        self.set_bridge(BridgeState::Disconnected, reason);
        // Links in the middle of an introduction cannot finish without the bridge.
        let stuck: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l.state, LinkState::Offering | LinkState::Introducing))
            .map(|(id, _)| *id)
            .collect();
        for link in stuck {
            self.close_link(
                link,
                "the bridge went away during the introduction",
                LinkState::Closed,
            );
        }
    }

    /// One frame from the bridge.
    pub fn handle_bridge_frame(&mut self, now: Time, bytes: &[u8]) {
        let msg = match SignalMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                let reason = format!("the bridge sent a malformed frame: {e}");
                self.log(LogLevel::Warn, reason.clone());
                self.out.push_back(Output::CloseBridge {
                    reason: reason.clone(),
                });
                self.handle_bridge_closed(now, &reason);
                return;
            }
        };
        match msg {
            // The bridge challenges every new connection; the hello signs its nonce.
            SignalMsg::Challenge { nonce } => {
                let sig = hello::sign(&self.identity, &nonce);
                self.send_bridge(&SignalMsg::Hello {
                    pubkey: self.identity.public_key(),
                    challenge: nonce,
                    sig,
                });
            }
            // The bridge's keepalive: answer at once, or it drops us as gone.
            SignalMsg::Ping { nonce } => self.send_bridge(&SignalMsg::Pong { nonce }),
            // TODO(node author, issue 13): stop choosing these peers for links and paths.
            SignalMsg::PeersGone { .. } => {}
            SignalMsg::Welcome {
                peers_online,
                bridge_pubkey,
            } => {
                self.dht_on_welcome(bridge_pubkey);
                self.onion.set_bridge(node_id(&bridge_pubkey));
                self.set_bridge(
                    BridgeState::Registered,
                    &format!("registered; {peers_online} peers online at this bridge"),
                );
                self.find_peers();
            }
            SignalMsg::FoundPeer { peers } => {
                self.dht_on_found_peers(now, &peers);
                self.on_found_peers(now, peers)
            }
            SignalMsg::BridgeInfo { addr } => self.dht_on_bridge_info(now, addr),
            SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } => self.dht_on_kad_from(now, peer, pubkey, bridge, &bytes),
            SignalMsg::Introduce { peer, session, sdp } => {
                self.on_introduce(now, peer, session, sdp)
            }
            SignalMsg::Introduced { peer, session, sdp } => {
                self.on_introduced(now, peer, session, sdp)
            }
            SignalMsg::IntroduceFailed {
                peer,
                session,
                reason,
            } => {
                if let Some(&link) = self.by_peer.get(&peer) {
                    if self
                        .links
                        .get(&link)
                        .is_some_and(|l| l.session == session && l.initiator)
                    {
                        self.close_link(
                            link,
                            &format!("introduction failed: {reason}"),
                            LinkState::Closed,
                        );
                    }
                }
            }
            SignalMsg::Error { code, reason } => {
                self.log(
                    LogLevel::Warn,
                    format!("the bridge reports error {code}: {reason}"),
                );
            }
            other => {
                self.log(
                    LogLevel::Warn,
                    format!("ignoring an unexpected frame from the bridge: {other:?}"),
                );
            }
        }
    }

    fn on_found_peers(&mut self, now: Time, peers: Vec<PeerRecord>) {
        for p in peers {
            // Onion keys are identity keys (crate::circuits): remember the checked ones.
            if p.id != self.id() && node_id(&p.pubkey) == p.id {
                let bridge = self.onion_bridge();
                self.onion.learn(p.id, &p.pubkey, bridge);
            }
            if p.id == self.id() || self.by_peer.contains_key(&p.id) {
                continue;
            }
            // Peers at other bridges only enter the DHT (see `dht_on_found_peers`): a link to
            // one is made on demand with `connect`, so lookups do not link to everyone.
            if !p.bridge.is_empty() {
                continue;
            }
            if node_id(&p.pubkey) != p.id {
                self.log(
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
            let link = self.new_link(now, p.id, true, session, LinkState::Offering);
            self.out.push_back(Output::CreateOffer { link });
        }
    }

    fn on_introduce(&mut self, now: Time, from: NodeId, session: u64, sdp: String) {
        if from == self.id() {
            return;
        }
        if let Some(&existing) = self.by_peer.get(&from) {
            let ours_pending = self.links.get(&existing).is_some_and(|l| {
                l.initiator && matches!(l.state, LinkState::Offering | LinkState::Introducing)
            });
            // Glare: both sides offered at once. The lower ID's offer wins.
            if ours_pending && self.id() > from {
                self.close_link(
                    existing,
                    "both sides offered; taking the peer's offer",
                    LinkState::Closed,
                );
            } else {
                return;
            }
        }
        if self.links.len() >= self.cfg.max_links {
            self.send_bridge(&SignalMsg::IntroduceFailed {
                peer: from,
                session,
                reason: "the peer has no room for another link".into(),
            });
            return;
        }
        let Some(remote_fp) = dtls::fingerprint(&sdp) else {
            self.send_bridge(&SignalMsg::IntroduceFailed {
                peer: from,
                session,
                reason: "the offer has no DTLS fingerprint".into(),
            });
            return;
        };
        let link = self.new_link(now, from, false, session, LinkState::Answering);
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_fp = Some(remote_fp);
        }
        self.out
            .push_back(Output::CreateAnswer { link, offer: sdp });
    }

    fn on_introduced(&mut self, now: Time, from: NodeId, session: u64, sdp: String) {
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
            self.close_link(
                link,
                "the answer has no DTLS fingerprint",
                LinkState::Closed,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.remote_fp = Some(fp);
        }
        self.set_link_state(now, link, LinkState::Connecting);
        self.out
            .push_back(Output::ApplyAnswer { link, answer: sdp });
    }

    // ----- links -----------------------------------------------------------------------------

    /// The local offer for `link` is ready (ICE candidates gathered).
    pub fn handle_offer_ready(&mut self, now: Time, link: LinkId, sdp: String) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Offering {
            return;
        }
        let (peer, session) = (l.peer, l.session);
        let Some(fp) = dtls::fingerprint(&sdp) else {
            self.close_link(
                link,
                "our own offer has no DTLS fingerprint",
                LinkState::Closed,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.local_fp = Some(fp);
        }
        self.set_link_state(now, link, LinkState::Introducing);
        self.send_bridge(&SignalMsg::Introduce { peer, session, sdp });
    }

    /// The local answer for `link` is ready.
    pub fn handle_answer_ready(&mut self, now: Time, link: LinkId, sdp: String) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Answering {
            return;
        }
        let (peer, session) = (l.peer, l.session);
        let Some(fp) = dtls::fingerprint(&sdp) else {
            self.close_link(
                link,
                "our own answer has no DTLS fingerprint",
                LinkState::Closed,
            );
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.local_fp = Some(fp);
        }
        self.set_link_state(now, link, LinkState::Connecting);
        self.send_bridge(&SignalMsg::Introduced { peer, session, sdp });
    }

    /// The driver could not create an offer or answer, or the connection failed.
    pub fn handle_link_failed(&mut self, _now: Time, link: LinkId, reason: &str) {
        if self.links.contains_key(&link) {
            self.close_link(link, reason, LinkState::Closed);
        }
    }

    /// The data channel of `link` opened: start authentication.
    pub fn handle_link_opened(&mut self, now: Time, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if l.state != LinkState::Connecting {
            return;
        }
        let nonce = l.nonce;
        self.set_link_state(now, link, LinkState::Authenticating);
        if let Some(l) = self.links.get_mut(&link) {
            l.deadline = Some(now + self.cfg.auth_timeout);
        }
        self.out.push_back(Output::SendLink {
            link,
            bytes: LinkMsg::Nonce(nonce).encode_frame(),
        });
    }

    /// The data channel of `link` closed.
    pub fn handle_link_closed(&mut self, _now: Time, link: LinkId, reason: &str) {
        if self.links.contains_key(&link) {
            self.close_link(link, reason, LinkState::Closed);
        }
    }

    /// One frame from `link`'s data channel.
    pub fn handle_link_frame(&mut self, now: Time, link: LinkId, bytes: &[u8]) {
        self.now = now;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let state = l.state;
        let msg = match LinkMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.protocol_violation(link, &format!("malformed frame: {e}"));
                return;
            }
        };
        match (state, msg) {
            (LinkState::Authenticating, LinkMsg::Nonce(n)) => self.on_peer_nonce(link, n),
            (LinkState::Authenticating, LinkMsg::Cert { pubkey, sig }) => {
                self.on_peer_cert(now, link, pubkey, sig)
            }
            (LinkState::Linked, LinkMsg::Data(data)) => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                l.bytes_in += data.len() as u64;
                let from = l.peer;
                self.dht_touch(now, from);
                self.out
                    .push_back(Output::Event(Event::Message { from, data }));
            }
            (
                LinkState::Linked,
                msg @ (LinkMsg::Kad(_)
                | LinkMsg::Relay { .. }
                | LinkMsg::Relayed { .. }
                | LinkMsg::RelayFailed { .. }),
            ) => {
                let Some(peer) = self.links.get(&link).map(|l| l.peer) else {
                    return;
                };
                self.dht_on_link_msg(now, link, peer, msg);
            }
            (_, LinkMsg::Close { reason }) => {
                self.close_link(
                    link,
                    &format!("the peer closed the link: {reason}"),
                    LinkState::Closed,
                );
            }
            (LinkState::Linked, LinkMsg::Cell(cell)) => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                l.bytes_in += bytes.len() as u64;
                let peer = l.peer;
                self.onion_cell(now, peer, *cell);
            }
            (LinkState::Linked, LinkMsg::Cells(cells)) => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                l.bytes_in += bytes.len() as u64;
                let peer = l.peer;
                for cell in cells {
                    self.onion_cell(now, peer, cell);
                }
            }
            (LinkState::Linked, LinkMsg::Unrecognized { cmd, .. }) => {
                self.log(
                    LogLevel::Info,
                    format!("ignoring unknown link command 0x{cmd:02x}"),
                );
            }
            (state, msg) => {
                let what = match msg {
                    LinkMsg::Nonce(_) => "a second nonce",
                    LinkMsg::Cert { .. } => "a certificate outside authentication",
                    LinkMsg::Data(_) => "data before authentication",
                    LinkMsg::Cell(_) | LinkMsg::Cells(_) => "an onion cell before authentication",
                    _ => "an unknown command",
                };
                self.protocol_violation(link, &format!("unexpected {what} while {state:?}"));
            }
        }
    }

    fn on_peer_nonce(&mut self, link: LinkId, their_nonce: [u8; NONCE_LEN]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.got_peer_nonce {
            self.protocol_violation(link, "the peer sent a second nonce");
            return;
        }
        l.got_peer_nonce = true;
        let (Some(local_fp), Some(remote_fp)) = (l.local_fp.clone(), l.remote_fp.clone()) else {
            self.close_link(
                link,
                "fingerprints unknown at authentication",
                LinkState::Closed,
            );
            return;
        };
        let mut nonce = their_nonce;
        if self.cfg.test_only_corrupt_link_proof {
            nonce[0] ^= 0x80;
        }
        let sig = link_auth::prove(&self.identity, &local_fp, &remote_fp, &nonce);
        let bytes = LinkMsg::Cert {
            pubkey: self.identity.public_key(),
            sig,
        }
        .encode_frame();
        self.out.push_back(Output::SendLink { link, bytes });
    }

    fn on_peer_cert(
        &mut self,
        now: Time,
        link: LinkId,
        pubkey: onionmesh_wire::PublicKeyBytes,
        sig: onionmesh_wire::SignatureBytes,
    ) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        if !l.got_peer_nonce {
            self.protocol_violation(link, "the peer sent its certificate before its nonce");
            return;
        }
        let (Some(local_fp), Some(remote_fp)) = (l.local_fp.as_ref(), l.remote_fp.as_ref()) else {
            return;
        };
        match link_auth::check(l.peer, &pubkey, &sig, local_fp, remote_fp, &l.nonce) {
            Ok(()) => {
                let peer = l.peer;
                if let Some(l) = self.links.get_mut(&link) {
                    l.deadline = None;
                }
                let bridge = self.onion_bridge();
                self.onion.learn(peer, &pubkey, bridge);
                self.set_link_state(now, link, LinkState::Linked);
                self.dht_on_linked(now, peer, pubkey);
                self.onion_link_up(now, peer);
            }
            Err(e) => {
                let reason = format!("link authentication failed: {e}");
                self.out.push_back(Output::SendLink {
                    link,
                    bytes: LinkMsg::Close {
                        reason: reason.clone(),
                    }
                    .encode_frame(),
                });
                self.log(
                    LogLevel::Warn,
                    format!("refusing peer {}: {reason}", l.peer.short()),
                );
                self.close_link(link, &reason, LinkState::Refused);
            }
        }
    }

    // ----- timers ----------------------------------------------------------------------------

    pub fn handle_timeout(&mut self, now: Time) {
        self.onion_timeout(now);
        let expired: Vec<(LinkId, LinkState)> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline.is_some_and(|d| d <= now))
            .map(|(id, l)| (*id, l.state))
            .collect();
        for (link, state) in expired {
            let reason = format!("timed out while {}", format!("{state:?}").to_lowercase());
            self.close_link(link, &reason, LinkState::Closed);
        }
        if self.next_refresh.is_some_and(|t| t <= now) {
            self.next_refresh = Some(now + self.cfg.refresh_interval);
            if self.links.len() < self.cfg.target_links {
                self.find_peers();
            }
        }
        self.dht_timeout(now);
    }

    // ----- helpers ---------------------------------------------------------------------------

    fn new_link(
        &mut self,
        now: Time,
        peer: NodeId,
        initiator: bool,
        session: u64,
        state: LinkState,
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
                since: now,
                deadline: Some(now + self.cfg.connect_timeout),
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.by_peer.insert(peer, id);
        self.emit_peer(peer, state, None);
        id
    }

    fn set_link_state(&mut self, now: Time, link: LinkId, state: LinkState) {
        if let Some(l) = self.links.get_mut(&link) {
            l.state = state;
            l.since = now;
            let peer = l.peer;
            self.emit_peer(peer, state, None);
        }
    }

    /// Forget `link` and tell the driver to close it.
    fn close_link(&mut self, link: LinkId, reason: &str, final_state: LinkState) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        if self.by_peer.get(&l.peer) == Some(&link) {
            self.by_peer.remove(&l.peer);
            self.dht_on_closed(&l.peer);
        }
        self.onion_link_down(l.peer, l.state == LinkState::Linked);
        // Even when the driver reported the close itself it may still hold the peer connection;
        // closing twice is harmless for it, and forgetting would leak.
        self.out.push_back(Output::CloseLink {
            link,
            reason: reason.to_owned(),
        });
        self.emit_peer(l.peer, final_state, Some(reason.to_owned()));
    }

    pub(crate) fn protocol_violation(&mut self, link: LinkId, what: &str) {
        let peer = self
            .links
            .get(&link)
            .map(|l| l.peer.short())
            .unwrap_or_default();
        self.log(
            LogLevel::Warn,
            format!("closing the link to {peer}: {what}"),
        );
        self.close_link(link, what, LinkState::Closed);
    }

    pub(crate) fn send_bridge(&mut self, msg: &SignalMsg) {
        self.out.push_back(Output::SendBridge(msg.encode_frame()));
    }

    fn set_bridge(&mut self, state: BridgeState, detail: &str) {
        self.bridge = state;
        self.out.push_back(Output::Event(Event::Bridge {
            state,
            detail: detail.to_owned(),
        }));
    }

    fn emit_peer(&mut self, id: NodeId, state: LinkState, reason: Option<String>) {
        self.out
            .push_back(Output::Event(Event::Peer { id, state, reason }));
    }

    pub(crate) fn log(&mut self, level: LogLevel, text: String) {
        self.out
            .push_back(Output::Event(Event::Log { level, text }));
    }
}

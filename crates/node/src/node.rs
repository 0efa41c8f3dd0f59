//! The node: the one owner of the parts. See the crate docs for the calling rules.

use crate::bridge::{BridgeConfig, BridgeLink};
use crate::dht::{DhtApi, DhtConfig, DhtPart, Route};
use crate::error::ApiError;
use crate::event::{BridgeCloseReason, BridgeState, LinkCloseReason, LogLevel, PeerView};
use crate::links::{LinkConfig, LinkTable};
use crate::onion::{OnionApi, OnionConfig, OnionPart};
use crate::ordb::{ContentConfig, NodeIo, OrdbApi, OrdbPart, ORDB_NEIGHBOUR_SERVICE, ORDB_SERVICE};
use crate::output::{log, Input, Output, Request, Requests};
use crate::relay::{IntroducerRelay, RelayConfig};
use onionmesh_crypto::{hello, node_id, Identity};
use onionmesh_wire::{Frame, LinkMsg, NodeId, SignalMsg, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::VecDeque;

/// Tunables of a node, one field per part. The defaults suit a browser page.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub links: LinkConfig,
    pub bridge: BridgeConfig,
    pub dht: DhtConfig,
    pub relay: RelayConfig,
    pub onion: OnionConfig,
    pub content: ContentConfig,
}

/// One mesh node: the owner of its parts (the link table, the bridge connection, the onion
/// proxy and router, the DHT, the introducer relay). Parts return typed requests that the node
/// carries out in one pump; the application reaches them through borrowed handles
/// ([`Node::onion`], [`Node::dht`], [`Node::link`]).
pub struct Node {
    identity: Identity,
    links: LinkTable,
    bridge: BridgeLink,
    onion: OnionPart,
    dht: DhtPart,
    relay: IntroducerRelay,
    ordb: OrdbPart,
    reqs: Requests,
    out: VecDeque<Output>,
    /// The latest `now` given; never goes backwards.
    now: Time,
    stopped: bool,
}

impl Node {
    /// `seed` feeds the node's RNGs (nonces, session ids, jitter): give it 32 bytes from the OS
    /// RNG in a driver, a fixed value in a simulation.
    pub fn new(identity: Identity, cfg: NodeConfig, seed: [u8; 32]) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut sub = || {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            s
        };
        let (link_seed, dht_seed, onion_seed, bridge_seed) = (sub(), sub(), sub(), sub());
        let ordb_seed = sub();
        let me = onionmesh_wire::kad::Contact {
            id: identity.id(),
            pubkey: identity.public_key(),
            bridge: None,
            introducers: Default::default(),
        };
        let mut node = Node {
            links: LinkTable::new(cfg.links.clone(), link_seed),
            bridge: BridgeLink::new(cfg.bridge, bridge_seed),
            onion: OnionPart::new(
                identity.id(),
                identity.onion_secret(),
                &cfg.onion,
                onion_seed,
            ),
            dht: DhtPart::new(me, cfg.dht, dht_seed),
            relay: IntroducerRelay::new(cfg.relay, cfg.links.max_links),
            ordb: OrdbPart::new(cfg.content, ordb_seed),
            identity,
            reqs: VecDeque::new(),
            out: VecDeque::new(),
            now: Time::ZERO,
            stopped: false,
        };
        // Every node is an ORDB (crate::ordb). The name is free: nothing else is registered.
        let _ = node.onion().serve(ORDB_SERVICE);
        let _ = node.onion().serve(ORDB_NEIGHBOUR_SERVICE);
        node
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    pub fn public_key(&self) -> onionmesh_wire::PublicKeyBytes {
        self.identity.public_key()
    }

    pub fn bridge_state(&self) -> BridgeState {
        self.bridge.state()
    }

    /// Every link, typed.
    pub fn peers(&self, now: Time) -> Vec<PeerView> {
        self.links.views(now.max(self.now))
    }

    /// Peers with an authenticated link.
    pub fn linked_peers(&self) -> Vec<NodeId> {
        self.links.linked_peers()
    }

    /// The DHT's counters (read-only; lookups go through [`Node::dht`]).
    pub fn dht_stats(&self) -> crate::event::DhtStats {
        self.dht.stats((self.relay.relayed, self.relay.refused))
    }

    /// The DHT node itself, read-only (for tests and diagnostics).
    pub fn kad(&self) -> &onionmesh_kad::Kad {
        self.dht.kad()
    }

    /// Our circuits (read-only; see [`Node::onion`]).
    pub fn circuits(&self) -> Vec<crate::event::CircuitInfo> {
        self.onion.circuits()
    }

    /// Circuits we relay or end for others (read-only).
    pub fn relayed_circuits(&self) -> Vec<crate::event::CircuitInfo> {
        self.onion.relayed_circuits()
    }

    // ----- handles ---------------------------------------------------------------------------

    /// Circuits, streams and services.
    pub fn onion(&mut self) -> OnionApi<'_> {
        OnionApi {
            part: &mut self.onion,
            links: &self.links,
            reqs: &mut self.reqs,
        }
    }

    /// The Kademlia DHT.
    pub fn dht(&mut self) -> DhtApi<'_> {
        DhtApi {
            part: &mut self.dht,
            route: Route {
                links: &self.links,
                registered: self.bridge.registered(),
            },
            reqs: &mut self.reqs,
            relay_counts: (self.relay.relayed, self.relay.refused),
        }
    }

    /// Content: publish, download, progress, the library (the ORDB part, `crate::ordb`).
    pub fn ordb(&mut self) -> OrdbApi<'_> {
        let stopped = self.stopped;
        let (part, io) = self.ordb_io();
        OrdbApi { part, io, stopped }
    }

    /// The ORDB part and what it may use of the other parts, for one call.
    fn ordb_io(&mut self) -> (&mut OrdbPart, NodeIo<'_>) {
        let io = NodeIo {
            me: self.identity.id(),
            onion: &mut self.onion,
            dht: &mut self.dht,
            links: &self.links,
            registered: self.bridge.registered(),
            reqs: &mut self.reqs,
        };
        (&mut self.ordb, io)
    }

    /// The link to `peer` (which may not exist yet: [`LinkApi::connect`] makes it).
    pub fn link(&mut self, peer: NodeId) -> LinkApi<'_> {
        LinkApi { node: self, peer }
    }

    /// Ask the bridge for peers now (the node also does this by itself when it has few links).
    pub fn find_peers(&mut self) {
        if self.bridge.registered() {
            self.reqs
                .push_back(Request::SendBridge(SignalMsg::FindPeer {
                    id: self.id(),
                    pubkey: self.identity.public_key(),
                }));
        }
    }

    /// Stop: close every link and the bridge connection, and make no further attempts. Every
    /// later API call fails with `STOPPED`.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.links.close_all(&mut self.reqs);
        self.bridge.stop(&mut self.reqs);
        self.reqs.push_back(Request::Driver(Output::CloseBridge {
            reason: BridgeCloseReason::Stopped,
        }));
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    // ----- the one input ---------------------------------------------------------------------

    /// Feed one driver event in. `now` is stored first and never goes backwards.
    pub fn handle_input(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.stopped {
            return;
        }
        let reqs = &mut self.reqs;
        match input {
            Input::BridgeOpened => self.bridge.opened(now, reqs),
            Input::BridgeClosed { reason } => {
                self.bridge.closed(now, reason, reqs);
                self.links.bridge_lost(reqs);
                let (ordb, mut io) = self.ordb_io();
                ordb.bridge_lost(now, &mut io);
            }
            Input::BridgeFrame(bytes) => self.bridge_frame(now, bytes),
            Input::OfferReady { link, sdp } => self.links.offer_ready(now, link, sdp, reqs),
            Input::AnswerReady { link, sdp } => self.links.answer_ready(now, link, sdp, reqs),
            Input::LinkFailed { link, reason } => self.links.link_failed(link, reason, reqs),
            Input::LinkOpened { link } => self.links.link_opened(now, link, reqs),
            Input::LinkClosed { link, reason } => self.links.link_closed(link, reason, reqs),
            Input::LinkFrame { link, bytes } => {
                self.links
                    .link_frame(now, &self.identity, link, bytes, reqs)
            }
            Input::LinkCongestion { link, blocked } => {
                if let Some((peer, true)) = self.links.set_blocked(link, blocked, reqs) {
                    self.onion.set_blocked(peer, blocked);
                }
            }
            Input::Timeout => {
                self.onion.handle_timeout(now);
                self.links.handle_timeout(now, reqs);
                let (refresh, reconnect) = self.bridge.handle_timeout(now, reqs);
                if reconnect {
                    reqs.push_back(Request::Driver(Output::ConnectBridge));
                }
                if refresh && self.links.len() < self.links.config().target_links {
                    self.find_peers();
                }
                let route = Route {
                    links: &self.links,
                    registered: self.bridge.registered(),
                };
                self.dht.handle_timeout(now, &route, &mut self.reqs);
                let (ordb, mut io) = self.ordb_io();
                ordb.handle_timeout(now, &mut io);
            }
            Input::StoreDone(c) => {
                let (ordb, mut io) = self.ordb_io();
                ordb.store_done(now, c, &mut io);
            }
        }
        self.pump();
    }

    /// The next action for the driver.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_empty() {
            self.pump();
        }
        // A request can be carried out with no output for the driver (an event the ORDB part
        // takes for itself): keep pulling from the onion part until there is output or it is
        // idle; stopping earlier would leave its cells waiting for the next input.
        while self.out.is_empty() {
            self.onion.poll(self.now, &self.links, &mut self.reqs);
            if self.reqs.is_empty() {
                break;
            }
            self.pump();
        }
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] must next be fed in.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.links.poll_timeout(),
            self.links.idle_check_due(),
            self.bridge.poll_timeout(),
            self.dht.poll_timeout(),
            self.onion.poll_timeout(),
            self.ordb.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- the pump --------------------------------------------------------------------------

    /// Carry out the parts' requests until none is left.
    fn pump(&mut self) {
        let now = self.now;
        let me = self.id();
        while let Some(req) = self.reqs.pop_front() {
            let reqs = &mut self.reqs;
            match req {
                Request::Driver(o) => self.out.push_back(o),
                // Events about the ORDB part's own circuits, streams and lookups, and request
                // streams to its service, go to it rather than to the application.
                Request::Emit(e) if self.ordb.claims(&e) => {
                    let (ordb, mut io) = self.ordb_io();
                    ordb.on_event(now, e, &mut io);
                }
                Request::Emit(e) => self.out.push_back(Output::Event(e)),
                Request::PeerKeys(keys) => {
                    for (id, pubkey) in keys {
                        if id != me && node_id(&pubkey) == id {
                            self.onion.learn(id, &pubkey, None);
                        }
                    }
                }
                // Without an open connection the driver drops it, as a socket would.
                Request::SendBridge(msg) => {
                    self.out.push_back(Output::SendBridge(msg.encode_frame()))
                }
                Request::SendTo { peer, msg } => {
                    // No link: the parts hear (or heard) `LinkDown` and clean up themselves.
                    let _ = self.links.send_frame(now, peer, msg.encode_frame(), reqs);
                }
                Request::Connect { peer } => {
                    let registered = self.bridge.registered();
                    if let Err(e) = self.links.connect(now, me, peer, registered, reqs) {
                        log(
                            reqs,
                            LogLevel::Info,
                            format!("cannot extend a circuit to {}: {e}", peer.short()),
                        );
                        self.onion.link_refused(now, peer);
                    }
                }
                Request::Disconnect { peer, reason } => self.links.disconnect(peer, reason, reqs),
                Request::LinkUp { peer, pubkey } => {
                    self.onion.link_up(now, peer, &pubkey);
                    let route = Route {
                        links: &self.links,
                        registered: self.bridge.registered(),
                    };
                    self.dht.link_up(now, peer, pubkey, &route, &mut self.reqs);
                }
                Request::LinkDown { peer, was_linked } => {
                    self.onion.link_down(now, peer, was_linked);
                    self.relay.link_down(&peer);
                    self.dht.link_down(peer);
                }
                Request::Deliver { peer, msg } => self.deliver(now, peer, msg),
            }
        }
    }

    /// A frame from an authenticated link, for the part it belongs to.
    fn deliver(&mut self, now: Time, peer: NodeId, msg: LinkMsg) {
        match msg {
            LinkMsg::Cell(cell) => self.onion.handle_cell(now, peer, *cell),
            LinkMsg::Cells(cells) => {
                for cell in cells {
                    self.onion.handle_cell(now, peer, cell);
                }
            }
            LinkMsg::Relay { to, bytes } => {
                self.relay
                    .on_relay(now, &self.links, peer, to, bytes, &mut self.reqs)
            }
            msg => {
                let route = Route {
                    links: &self.links,
                    registered: self.bridge.registered(),
                };
                self.dht.on_link_msg(now, peer, msg, &route, &mut self.reqs);
            }
        }
    }

    /// One frame from the bridge.
    fn bridge_frame(&mut self, now: Time, bytes: &[u8]) {
        let me = self.id();
        let msg = match SignalMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                let reason = BridgeCloseReason::Malformed(e.to_string());
                log(&mut self.reqs, LogLevel::Warn, reason.to_string());
                let text = reason.to_string();
                self.reqs
                    .push_back(Request::Driver(Output::CloseBridge { reason }));
                self.bridge.closed(now, &text, &mut self.reqs);
                self.links.bridge_lost(&mut self.reqs);
                let (ordb, mut io) = self.ordb_io();
                ordb.bridge_lost(now, &mut io);
                return;
            }
        };
        let registered = self.bridge.registered();
        let route = Route {
            links: &self.links,
            registered,
        };
        let reqs = &mut self.reqs;
        match msg {
            // The bridge challenges every new connection; the hello signs its nonce, which is
            // what makes it fresh (issue 11, case 1).
            SignalMsg::Challenge { nonce } => {
                let sig = hello::sign(&self.identity, &nonce);
                reqs.push_back(Request::SendBridge(SignalMsg::Hello {
                    pubkey: self.identity.public_key(),
                    challenge: nonce,
                    sig,
                }));
            }
            // The bridge's keepalive: answer at once, or it drops us as gone.
            SignalMsg::Ping { nonce } => {
                reqs.push_back(Request::SendBridge(SignalMsg::Pong { nonce }))
            }
            SignalMsg::Pong { .. } => {}
            // Peers that left (here or at a federated bridge): no new links or paths to them.
            SignalMsg::PeersGone { ids } => self.onion.peers_gone(now, &ids),
            SignalMsg::Welcome {
                peers_online,
                bridge_pubkey,
            } => {
                self.dht.on_welcome(bridge_pubkey);
                self.onion.set_bridge(node_id(&bridge_pubkey));
                self.bridge.welcomed(peers_online, reqs);
                self.find_peers();
            }
            SignalMsg::FoundPeer { peers } => {
                self.dht.on_found_peers(now, &peers, &route, reqs);
                let introducer = self.onion.bridge();
                for p in &peers {
                    // Onion keys are identity keys (crate::onion): remember the checked ones.
                    if p.id != me && node_id(&p.pubkey) == p.id {
                        self.onion.learn(p.id, &p.pubkey, introducer);
                    }
                }
                self.links.on_found_peers(now, me, &peers, reqs);
            }
            SignalMsg::BridgeInfo { addr } => self.dht.on_bridge_info(now, addr, &route, reqs),
            SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } => {
                let from = onionmesh_wire::kad::Contact {
                    id: peer,
                    pubkey,
                    bridge,
                    introducers: Default::default(),
                };
                self.dht.on_kad_from(now, from, &bytes, &route, reqs)
            }
            SignalMsg::Introduce { peer, session, sdp } => {
                self.links
                    .on_introduce(now, me, peer, session, sdp.into_string(), reqs)
            }
            SignalMsg::Introduced { peer, session, sdp } => {
                self.links
                    .on_introduced(now, peer, session, sdp.into_string(), reqs)
            }
            SignalMsg::IntroduceFailed {
                peer,
                session,
                reason,
            } => self
                .links
                .on_introduce_failed(peer, session, reason.into_string(), reqs),
            // Answers of the facilitator to requests this node's ORDB handed it (issue 10).
            SignalMsg::Facilitated { answers } => {
                let (ordb, mut io) = self.ordb_io();
                ordb.facilitated(now, answers.into_vec(), &mut io);
            }
            SignalMsg::FacilitateClose { req } => {
                let (ordb, mut io) = self.ordb_io();
                ordb.facilitate_closed(now, req, &mut io);
            }
            SignalMsg::Error { code, reason } => log(
                reqs,
                LogLevel::Warn,
                format!("the bridge reports error {code}: {reason}"),
            ),
            other => log(
                reqs,
                LogLevel::Warn,
                format!("ignoring an unexpected frame from the bridge: {other:?}"),
            ),
        }
    }
}

/// The link to one peer, borrowed from the node with [`Node::link`].
pub struct LinkApi<'a> {
    node: &'a mut Node,
    peer: NodeId,
}

impl LinkApi<'_> {
    /// Send application bytes (at most `MAX_DATA`) on the authenticated link. `BUSY` when the
    /// link's channel is over its high-water mark: wait for `Event::LinkWritable`. Everything
    /// accepted is sent in order.
    pub fn send(&mut self, now: Time, data: &[u8]) -> Result<(), ApiError> {
        let n = &mut *self.node;
        if n.stopped {
            return Err(ApiError::Stopped);
        }
        n.now = n.now.max(now);
        n.links.send_data(n.now, self.peer, data, &mut n.reqs)
    }

    /// Open a link to the peer through an introduction by our bridge (the bridge relays our
    /// offer and the answer). Does nothing if a link exists or is being made; watch for the
    /// peer's `linked` event or a closed link.
    pub fn connect(&mut self, now: Time) -> Result<(), ApiError> {
        let n = &mut *self.node;
        if n.stopped {
            return Err(ApiError::Stopped);
        }
        n.now = n.now.max(now);
        let (me, registered) = (n.identity.id(), n.bridge.registered());
        n.links
            .connect(n.now, me, self.peer, registered, &mut n.reqs)
    }

    /// Close the link, if any.
    pub fn disconnect(&mut self, reason: &str) {
        let n = &mut *self.node;
        n.links.disconnect(
            self.peer,
            LinkCloseReason::Requested(reason.to_owned()),
            &mut n.reqs,
        );
    }

    pub fn is_linked(&self) -> bool {
        self.node.links.is_linked(&self.peer)
    }
}

//! The node's DHT part: a [`Kad`] wired to the node's links and bridge.
//!
//! Kademlia frames travel three ways, chosen per frame by this part's router:
//!
//! 1. on the authenticated link to the contact (`LinkMsg::Kad`);
//! 2. else through one of the contact's introducers we are linked to (`LinkMsg::Relay`; the
//!    introducer — `crate::relay` — checks the frame, rate-limits the sender per link, and hands
//!    it on as `LinkMsg::Relayed` with the sender's authenticated key). The answer comes back
//!    the same way, because the target learns the introducer as the sender's introducer;
//! 3. else through our bridge (`SignalMsg::KadTo`), which delivers it to its own DHT node, to a
//!    peer registered there, or through a federated bridge to a peer registered at that one.
//!
//! This is the only place DHT routing happens. A lookup never opens a link, and the DHT never
//! closes one: the link table's idle policy does.
//!
//! Contacts enter the DHT from authenticated links and from the bridge's `FoundPeer` records;
//! `onionmesh_kad` refuses any whose ID is not the hash of its key. The DHT bootstraps when the
//! bridge has told us its address (`BridgeInfo`), with the bridge's own DHT node as the seed.
//!
//! Security ("Security" in the spec): the bridge could hand us only peers of its choosing. A
//! `FoundPeer` answer is *far* when it names at least four peers that all sit in the far half of
//! the ID space from us, or when its closest peer is farther than a node we already know. After
//! `far_answers_to_warn` far answers in a row the node logs a warning, reports
//! [`DhtEvent::SuspectBridge`] with the other bridges it has heard of, and looks itself up again
//! through the peers registered at those other bridges.

use crate::code::ErrorCode;
use crate::error::DhtError;
use crate::event::{DhtEvent, DhtLookupKind, DhtStats, Event, LogLevel};
use crate::links::LinkTable;
use crate::output::{log, Request, Requests};
use onionmesh_bounded::{BoundedLru, FlatSet};
use onionmesh_crypto::node_id;
use onionmesh_kad::contact::{bucket_index, ID_BITS};
use onionmesh_kad::{Kad, KadConfig, KadEvent, LookupKind, Output as KadOutput};
use onionmesh_wire::kad::{Contact, Introducers, KadBytes, KadMsg};
use onionmesh_wire::{
    BridgeAddr, Frame, LinkMsg, NodeId, PeerRecord, PublicKeyBytes, SignalMsg, Time,
};
use std::time::Duration;

/// Tunables of the node's DHT.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    pub kad: KadConfig,
    /// Far `FoundPeer` answers in a row before the bridge is suspected.
    pub far_answers_to_warn: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            kad: KadConfig::default(),
            far_answers_to_warn: 3,
        }
    }
}

/// Most other bridges remembered (from the tags of `FoundPeer` records).
const MAX_KNOWN_BRIDGES: usize = 8;
/// Most remembered "this introducer has no link to that node" answers.
const MAX_NO_ROUTE: usize = 256;
/// Most targets with introducer hints, and hints per target.
const MAX_HINTS: usize = 512;
const HINTS_PER_TARGET: usize = 4;
/// How long such an answer is remembered, unless the introducer names itself an introducer of
/// that node in a later answer (it linked to it since; see `learn_hints`). Links in the mesh
/// form within seconds: with the 5 minutes this was until 2026-12-01, and no such mark in
/// answers, a node that had once tried an introducer too early went on through the bridge for
/// 5 minutes after the introducer had linked (`tests/e2e/dht.test.mjs` failed on it in 6 of 14
/// runs on a loaded machine). A stale hint costs one refused frame per introducer and node each
/// period.
const NO_ROUTE_TTL: Duration = Duration::from_secs(30);
/// Rejections beyond this many are counted but only every 100th is logged.
const LOGGED_REJECTIONS: u64 = 50;

/// What the DHT part reads of the rest of the node when it routes.
pub(crate) struct Route<'a> {
    pub links: &'a LinkTable,
    pub registered: bool,
}

/// The node's DHT state (see the module docs).
pub(crate) struct DhtPart {
    kad: Kad,
    cfg: DhtConfig,
    bridge_contact: Option<Contact>,
    bridge_pubkey: Option<PublicKeyBytes>,
    bridge_addr: Option<BridgeAddr>,
    other_bridges: FlatSet<String>,
    far_in_a_row: u32,
    published: FlatSet<NodeId>,
    /// `(introducer, target)` pairs whose relay failed (the introducer had no link to the
    /// target), with when: skipped when routing.
    no_route: BoundedLru<(NodeId, NodeId), Time>,
    /// Linked peers that named a node in their DHT answers, most recent first: candidates to
    /// introduce it. Entries whose peer unlinks are skipped by the router.
    hints: BoundedLru<NodeId, Vec<NodeId>>,
    stats: DhtStats,
}

impl DhtPart {
    pub fn new(me: Contact, cfg: DhtConfig, seed: [u8; 32]) -> DhtPart {
        // The node's own contact is built from its identity, so its ID is the hash of its key and
        // `Kad::new` cannot refuse it. `Time::ZERO`: drivers start their clock with the node.
        let kad = match Kad::new(me, cfg.kad.clone(), seed, Time::ZERO) {
            Ok(k) => k,
            Err(e) => unreachable!("the node's own contact is valid by construction: {e}"),
        };
        DhtPart {
            kad,
            cfg,
            bridge_contact: None,
            bridge_pubkey: None,
            bridge_addr: None,
            other_bridges: FlatSet::new(),
            far_in_a_row: 0,
            published: FlatSet::new(),
            no_route: BoundedLru::new(MAX_NO_ROUTE),
            hints: BoundedLru::new(MAX_HINTS),
            stats: DhtStats::default(),
        }
    }

    pub fn kad(&self) -> &Kad {
        &self.kad
    }

    fn bridge_addr(&self) -> Option<BridgeAddr> {
        self.bridge_addr.clone()
    }

    /// The counters, with the introducer relay's `(relayed, refused)` counts filled in.
    pub fn stats(&self, relay: (u64, u64)) -> DhtStats {
        let mut s = self.stats.clone();
        (s.relayed, s.relay_refused) = relay;
        s.table_size = self.kad.table().len();
        s.running_lookups = self.kad.running_lookups();
        s.stored_keys = self.kad.store().keys();
        s.published_keys = self.published.len();
        s.bridge = self.bridge_addr.as_ref().map(|a| a.to_string());
        s
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.kad.poll_timeout()
    }

    // ----- inputs from the node ------------------------------------------------------------

    pub fn on_welcome(&mut self, bridge_pubkey: PublicKeyBytes) {
        self.bridge_pubkey = Some(bridge_pubkey);
    }

    /// The bridge told us its address: we can now name our bridge in the DHT, and bootstrap
    /// from the bridge's DHT node and our linked peers. After a reconnection this also
    /// re-announces every key we publish.
    pub fn on_bridge_info(&mut self, now: Time, addr: BridgeAddr, r: &Route, reqs: &mut Requests) {
        let again = self.bridge_addr.is_some();
        self.bridge_addr = Some(addr.clone());
        self.kad.set_reachability(Some(addr.clone()), Vec::new());
        let mut seeds: Vec<Contact> = r
            .links
            .linked_peers()
            .into_iter()
            .filter_map(|id| {
                r.links.linked_pubkey(&id).map(|pk| Contact {
                    id,
                    pubkey: pk,
                    bridge: Some(addr.clone()),
                    introducers: Default::default(),
                })
            })
            .collect();
        if let Some(pk) = self.bridge_pubkey {
            let c = Contact {
                id: node_id(&pk),
                pubkey: pk,
                bridge: Some(addr),
                introducers: Default::default(),
            };
            self.bridge_contact = Some(c.clone());
            seeds.push(c);
        }
        if self.kad.bootstrap(now, &seeds).is_ok() {
            self.stats.bootstrapped = true;
        }
        if again {
            for key in self.published.clone() {
                // A refusal (too many publications at once) leaves the periodic republish.
                let _ = self.kad.publish(now, key);
            }
        }
        self.flush(now, r, reqs);
    }

    /// Records from the bridge's `FoundPeer`: contacts for the DHT, and the far-answer check.
    pub fn on_found_peers(
        &mut self,
        now: Time,
        peers: &[PeerRecord],
        r: &Route,
        reqs: &mut Requests,
    ) {
        let me = self.kad.me().id;
        let valid: Vec<&PeerRecord> = peers
            .iter()
            .filter(|p| p.id != me && node_id(&p.pubkey) == p.id)
            .collect();
        self.check_far_answer(now, me, &valid, r, reqs);
        for p in valid {
            let bridge = match &p.bridge {
                None => self.bridge_addr(),
                Some(b) => {
                    if Some(b) != self.bridge_addr.as_ref()
                        && self.other_bridges.len() < MAX_KNOWN_BRIDGES
                    {
                        self.other_bridges.insert(b.to_string());
                    }
                    Some(b.clone())
                }
            };
            let c = Contact {
                id: p.id,
                pubkey: p.pubkey,
                bridge,
                introducers: Default::default(),
            };
            // Checked above; a refusal here would only mean a bad record, which we skip.
            let _ = self.kad.add_contact(now, &c);
        }
        self.flush(now, r, reqs);
    }

    fn check_far_answer(
        &mut self,
        now: Time,
        me: NodeId,
        answer: &[&PeerRecord],
        r: &Route,
        reqs: &mut Requests,
    ) {
        if answer.is_empty() {
            return;
        }
        let all_far_half = answer.len() >= 4
            && answer
                .iter()
                .all(|p| bucket_index(&me, &p.id) == Some(ID_BITS - 1));
        let best_answer = answer.iter().map(|p| p.id.distance(&me)).min();
        let best_known = self
            .kad
            .table()
            .closest(&me, 1, None)
            .first()
            .map(|c| c.id.distance(&me));
        let withholds = matches!((best_answer, best_known), (Some(a), Some(k)) if a > k);
        if !(all_far_half || withholds) {
            self.far_in_a_row = 0;
            return;
        }
        self.far_in_a_row = self.far_in_a_row.saturating_add(1);
        self.stats.far_answers = self.stats.far_answers.saturating_add(1);
        if self.far_in_a_row < self.cfg.far_answers_to_warn {
            return;
        }
        self.far_in_a_row = 0;
        let alternatives: Vec<String> = self.other_bridges.iter().cloned().collect();
        let bridge_addr = self.bridge_addr();
        let bridge = bridge_addr.as_deref().unwrap_or_default().to_owned();
        let next = if alternatives.is_empty() {
            "no other bridge is known; add peers by hand or use another bridge".to_owned()
        } else {
            format!(
                "asking the DHT through peers of {} instead",
                alternatives.join(", ")
            )
        };
        log(
            reqs,
            LogLevel::Warn,
            format!(
                "the bridge {bridge} keeps returning peers far from our ID ({} far answers in a row); it may be hiding our neighbours: {next}",
                self.cfg.far_answers_to_warn
            ),
        );
        reqs.push_back(Request::Emit(Event::Dht(DhtEvent::SuspectBridge {
            bridge: bridge.clone(),
            far_answers: self.cfg.far_answers_to_warn,
            alternatives: alternatives.clone(),
        })));
        if !alternatives.is_empty() {
            let seeds: Vec<Contact> = self
                .kad
                .table()
                .closest(&me, 64, None)
                .into_iter()
                .filter(|c| c.bridge.is_some() && c.bridge != bridge_addr)
                .collect();
            let _ = self.kad.bootstrap(now, &seeds);
            self.flush(now, r, reqs);
        }
    }

    /// A `KadFrom` from the bridge: a frame from the bridge's DHT node or one it forwarded.
    pub fn on_kad_from(
        &mut self,
        now: Time,
        mut from: Contact,
        bytes: &[u8],
        r: &Route,
        reqs: &mut Requests,
    ) {
        if from.bridge.is_none() {
            from.bridge = self.bridge_addr();
        }
        self.kad.handle_message(now, &from, bytes);
        self.flush(now, r, reqs);
    }

    /// A DHT frame on an authenticated link from `peer` (`Kad`, `Relayed` or `RelayFailed`).
    pub fn on_link_msg(
        &mut self,
        now: Time,
        peer: NodeId,
        msg: LinkMsg,
        r: &Route,
        reqs: &mut Requests,
    ) {
        match msg {
            LinkMsg::Kad(bytes) => {
                let Some(pubkey) = r.links.linked_pubkey(&peer) else {
                    return;
                };
                self.learn_hints(peer, &bytes);
                let from = Contact {
                    id: peer,
                    pubkey,
                    bridge: self.known_bridge(&peer),
                    introducers: Default::default(),
                };
                self.kad.handle_message(now, &from, &bytes);
            }
            LinkMsg::Relayed {
                from,
                pubkey,
                bytes,
            } => {
                let c = Contact {
                    id: from,
                    pubkey,
                    bridge: self.known_bridge(&from),
                    introducers: Introducers::one(peer),
                };
                self.kad.handle_message(now, &c, &bytes);
            }
            LinkMsg::RelayFailed { to, bytes } => {
                // Remember that this peer cannot introduce `to`, and try the next way.
                self.no_route.insert((peer, to), now);
                match self.kad.table().get(&to).cloned() {
                    Some(c) => self.route(now, c, bytes, r, reqs),
                    None if r.registered && self.bridge_addr.is_some() => {
                        self.stats.sent_via_bridge += 1;
                        reqs.push_back(Request::SendBridge(SignalMsg::KadTo { peer: to, bytes }));
                    }
                    None => {
                        self.stats.unroutable += 1;
                        self.kad.handle_send_failed(now, &to);
                    }
                }
            }
            _ => {}
        }
        self.flush(now, r, reqs);
    }

    /// `peer` is linked to us and named these nodes: it may be linked to them too. Those it
    /// names itself an introducer of, it is linked to now (`Kad::set_linked` on its side): an
    /// earlier refusal of `peer` to introduce one of them is forgotten at once.
    fn learn_hints(&mut self, peer: NodeId, bytes: &[u8]) {
        let contacts = match KadMsg::decode_frame(bytes) {
            Ok(KadMsg::Nodes { contacts, .. }) | Ok(KadMsg::Value { contacts, .. }) => contacts,
            _ => return,
        };
        for c in contacts {
            if c.id == peer {
                continue;
            }
            if c.introducers.contains(&peer) {
                self.no_route.remove(&(peer, c.id));
            }
            let mut list = self.hints.remove(&c.id).unwrap_or_default();
            list.retain(|p| *p != peer);
            list.insert(0, peer);
            list.truncate(HINTS_PER_TARGET);
            self.hints.insert(c.id, list);
        }
    }

    pub fn link_up(
        &mut self,
        now: Time,
        peer: NodeId,
        pubkey: PublicKeyBytes,
        r: &Route,
        reqs: &mut Requests,
    ) {
        let c = Contact {
            id: peer,
            pubkey,
            bridge: self.known_bridge(&peer),
            introducers: Default::default(),
        };
        let _ = self.kad.add_contact(now, &c);
        self.kad.set_linked(peer, true);
        self.flush(now, r, reqs);
    }

    /// The link to `peer` is gone: answers stop naming us as its introducer.
    pub fn link_down(&mut self, peer: NodeId) {
        self.kad.set_linked(peer, false);
    }

    pub fn handle_timeout(&mut self, now: Time, r: &Route, reqs: &mut Requests) {
        if self.kad.poll_timeout().is_some_and(|t| t <= now) {
            self.kad.handle_timeout(now);
        }
        self.flush(now, r, reqs);
    }

    // ----- API (through DhtApi) ------------------------------------------------------------

    fn find_node(&mut self, now: Time, target: NodeId) -> Result<u64, DhtError> {
        Ok(self.kad.find_node(now, target)?.0)
    }

    fn find_value(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        Ok(self.kad.find_value(now, key)?.0)
    }

    fn publish(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        let id = self.kad.publish(now, key)?;
        self.published.insert(key);
        Ok(id.0)
    }

    // ----- routing -------------------------------------------------------------------------

    fn known_bridge(&self, peer: &NodeId) -> Option<BridgeAddr> {
        self.kad
            .table()
            .get(peer)
            .and_then(|c| c.bridge.clone())
            .or_else(|| self.bridge_addr())
    }

    /// Carry out what the DHT asked for, routing each frame (see the module docs).
    pub fn flush(&mut self, now: Time, r: &Route, reqs: &mut Requests) {
        while let Some(out) = self.kad.poll_output() {
            match out {
                KadOutput::Send { to, bytes } => match KadBytes::new(bytes) {
                    Ok(bytes) => self.route(now, to, bytes, r, reqs),
                    // The DHT encodes frames of at most MAX_KAD_FRAME; one that is not is a
                    // bug, refused (as a failed send), never cut.
                    Err(_) => {
                        self.stats.unroutable += 1;
                        self.kad.handle_send_failed(now, &to.id);
                    }
                },
                KadOutput::Event(e) => self.event(e, reqs),
            }
        }
    }

    fn route(&mut self, now: Time, to: Contact, bytes: KadBytes, r: &Route, reqs: &mut Requests) {
        let is_bridge = self.bridge_contact.as_ref().map(|c| c.id) == Some(to.id);
        if r.links.is_linked(&to.id) {
            self.stats.sent_direct += 1;
            reqs.push_back(Request::SendTo {
                peer: to.id,
                msg: LinkMsg::Kad(bytes),
            });
            return;
        }
        let ttl = u64::try_from(NO_ROUTE_TTL.as_millis()).unwrap_or(u64::MAX);
        let hinted: Vec<NodeId> = self.hints.peek(&to.id).cloned().unwrap_or_default();
        let via = to.introducers.iter().chain(hinted.iter()).find(|i| {
            let failed = self
                .no_route
                .peek(&(**i, to.id))
                .is_some_and(|t| now.since(*t) < ttl);
            !failed && r.links.is_linked(i)
        });
        if let Some(via) = via {
            self.stats.sent_via_introducer += 1;
            reqs.push_back(Request::SendTo {
                peer: *via,
                msg: LinkMsg::Relay { to: to.id, bytes },
            });
        } else if r.registered && (is_bridge || to.bridge.is_some()) {
            self.stats.sent_via_bridge += 1;
            reqs.push_back(Request::SendBridge(SignalMsg::KadTo { peer: to.id, bytes }));
        } else {
            self.stats.unroutable += 1;
            self.kad.handle_send_failed(now, &to.id);
        }
    }

    fn event(&mut self, e: KadEvent, reqs: &mut Requests) {
        let ev = match e {
            KadEvent::LookupFinished(r) => {
                self.stats.lookups_done += 1;
                if !r.providers.is_empty() {
                    // Providers must be reachable as a circuit's last hop (for the content part).
                    reqs.push_back(Request::PeerKeys(
                        r.providers
                            .iter()
                            .map(|p| (p.contact.id, p.contact.pubkey))
                            .collect(),
                    ));
                }
                let kind = match r.kind {
                    LookupKind::FindNode => DhtLookupKind::FindNode,
                    LookupKind::FindValue => DhtLookupKind::FindValue,
                    LookupKind::Publish => DhtLookupKind::Publish,
                    LookupKind::Bootstrap => DhtLookupKind::Bootstrap,
                    LookupKind::Refresh { .. } => DhtLookupKind::Refresh,
                };
                DhtEvent::LookupDone {
                    lookup: r.id.0,
                    kind,
                    target: r.target,
                    closest: r.closest.iter().map(|c| c.id).collect(),
                    providers: r.providers.iter().map(|p| p.contact.id).collect(),
                    rounds: r.stats.rounds,
                    requests: r.stats.requests,
                }
            }
            KadEvent::Published {
                id,
                key,
                holders,
                attempted,
                error,
                ..
            } => {
                self.stats.lookups_done += 1;
                DhtEvent::Published {
                    lookup: id.0,
                    key,
                    holders,
                    attempted,
                    error: error.map(|e| {
                        (
                            ErrorCode::from_text(e.code()).unwrap_or(ErrorCode::Internal),
                            e.to_string(),
                        )
                    }),
                }
            }
            KadEvent::ProviderStored { key, provider } => {
                DhtEvent::ProviderStored { key, provider }
            }
            KadEvent::Rejected { from, reason } => {
                self.stats.rejected += 1;
                let n = self.stats.rejected;
                if n <= LOGGED_REJECTIONS || n.is_multiple_of(100) {
                    log(
                        reqs,
                        LogLevel::Warn,
                        format!(
                            "DHT: refused a message from {}: {reason} ({n} refused so far)",
                            from.short()
                        ),
                    );
                }
                return;
            }
            _ => return,
        };
        reqs.push_back(Request::Emit(Event::Dht(ev)));
    }
}

/// The DHT API, borrowed from the node with [`crate::Node::dht`]. Lookups end with a
/// [`DhtEvent`] on the node's output carrying the returned lookup id.
pub struct DhtApi<'a> {
    pub(crate) part: &'a mut DhtPart,
    pub(crate) route: Route<'a>,
    pub(crate) reqs: &'a mut Requests,
    /// The introducer relay's (relayed, refused) counters, for [`DhtApi::stats`].
    pub(crate) relay_counts: (u64, u64),
}

impl DhtApi<'_> {
    /// Find the nodes closest to `target`; ends with [`DhtEvent::LookupDone`].
    pub fn find_node(&mut self, now: Time, target: NodeId) -> Result<u64, DhtError> {
        let id = self.part.find_node(now, target)?;
        self.part.flush(now, &self.route, self.reqs);
        Ok(id)
    }

    /// Find providers of `key`; ends with [`DhtEvent::LookupDone`] whose `providers` name them.
    pub fn find_value(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        let id = self.part.find_value(now, key)?;
        self.part.flush(now, &self.route, self.reqs);
        Ok(id)
    }

    /// Announce that this node provides `key` (a content hash_name): our record is stored at
    /// the closest nodes now, republished until the node stops, and re-announced after a
    /// bridge reconnection. Ends with [`DhtEvent::Published`].
    pub fn publish(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        let id = self.part.publish(now, key)?;
        self.part.flush(now, &self.route, self.reqs);
        Ok(id)
    }

    /// Sizes and counters for display.
    pub fn stats(&self) -> DhtStats {
        self.part.stats(self.relay_counts)
    }

    /// The DHT node itself, read-only (for tests and diagnostics).
    pub fn kad(&self) -> &Kad {
        &self.part.kad
    }
}

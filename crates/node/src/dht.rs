//! The node's Kademlia DHT: a [`Kad`] wired to the node's links and bridge.
//!
//! Kademlia frames travel three ways, chosen per frame here (this is the one place DHT routing
//! lives; `onionmesh_kad` only names the contact, with its bridge and introducers):
//!
//! 1. on the authenticated link to the contact (`LinkMsg::Kad`);
//! 2. else through one of the contact's introducers we are linked to (`LinkMsg::Relay`; the
//!    introducer checks the frame, rate-limits the sender per link, and hands it on as
//!    `LinkMsg::Relayed` with the sender's authenticated key). The answer comes back the same
//!    way, because the target learns the introducer as the sender's introducer;
//! 3. else through our bridge (`SignalMsg::KadTo`), which delivers it to its own DHT node, to a
//!    peer registered there, or through a federated bridge to a peer registered at that one.
//!
//! A lookup never opens a link: links stay at most `max_links` (about 32), and links idle for
//! `idle_link_timeout` are closed while more than `target_links` are open.
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
//! through the peers registered at those other bridges (it cannot switch bridges itself: that
//! is the driver's decision).

use crate::event::{Event, LinkState, LogLevel};
use crate::link::LinkId;
use crate::node::Node;
use crate::Time;
use onionmesh_crypto::node_id;
use onionmesh_kad::contact::{bucket_index, ID_BITS};
use onionmesh_kad::{Kad, KadConfig, KadEvent, LookupKind, Output as KadOutput};
use onionmesh_wire::kad::{Contact, KadMsg};
use onionmesh_wire::{Frame, LinkMsg, NodeId, PeerRecord, PublicKeyBytes, SignalMsg};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use thiserror::Error;

/// Tunables of the node's DHT.
#[derive(Debug, Clone)]
pub struct DhtConfig {
    pub kad: KadConfig,
    /// Frames per second one linked peer may ask us to relay, sustained, and the burst above.
    pub relay_per_sec: u32,
    pub relay_burst: u32,
    /// While more than `target_links` links are open, one idle this long is closed.
    pub idle_link_timeout: Duration,
    /// Far `FoundPeer` answers in a row before the bridge is suspected.
    pub far_answers_to_warn: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            kad: KadConfig::default(),
            relay_per_sec: 20,
            relay_burst: 60,
            idle_link_timeout: Duration::from_secs(10 * 60),
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
/// How long such an answer is remembered.
const NO_ROUTE_TTL: Duration = Duration::from_secs(5 * 60);
/// Rejections beyond this many are counted but only every 100th is logged.
const LOGGED_REJECTIONS: u64 = 50;

/// What a lookup was for, in the page's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DhtLookupKind {
    FindNode,
    FindValue,
    Publish,
    Bootstrap,
    Refresh,
}

/// A DHT outcome the page (or a test) may want.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhtEvent {
    /// A lookup finished. `closest` answered us, closest first; `providers` (FIND_VALUE) are
    /// the nodes that said they hold the key.
    LookupDone {
        lookup: u64,
        kind: DhtLookupKind,
        target: NodeId,
        closest: Vec<NodeId>,
        providers: Vec<NodeId>,
        rounds: u32,
        requests: u32,
    },
    /// A publication round ended: `holders` of `attempted` nodes stored our record.
    Published {
        lookup: u64,
        key: NodeId,
        holders: usize,
        attempted: usize,
    },
    /// We now hold a provider record for another node.
    ProviderStored { key: NodeId, provider: NodeId },
    /// Our bridge keeps answering with peers far from our ID; `alternatives` are other bridges
    /// we have heard of.
    SuspectBridge {
        bridge: String,
        far_answers: u32,
        alternatives: Vec<String>,
    },
}

/// A caller misused the DHT API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DhtError {
    #[error(transparent)]
    Kad(#[from] onionmesh_kad::ApiError),
}

impl DhtError {
    /// A stable code for the JS API.
    pub fn code(&self) -> &'static str {
        match self {
            DhtError::Kad(e) => e.code(),
        }
    }
}

/// Counters and sizes for the page's DHT card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DhtStats {
    pub bootstrapped: bool,
    pub table_size: usize,
    pub running_lookups: usize,
    pub lookups_done: u64,
    pub stored_keys: usize,
    pub published_keys: usize,
    /// Frames we sent on a link to the contact itself.
    pub sent_direct: u64,
    /// Frames we sent through an introducer.
    pub sent_via_introducer: u64,
    /// Frames we sent through our bridge.
    pub sent_via_bridge: u64,
    /// Frames we could not route at all.
    pub unroutable: u64,
    /// Frames we relayed for a linked peer.
    pub relayed: u64,
    /// Relay requests we refused (rate limit, target not linked, not a Kademlia frame).
    pub relay_refused: u64,
    /// Messages refused by the DHT (malformed, bad token, flood...).
    pub rejected: u64,
    pub far_answers: u32,
    pub bridge: String,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens_milli: u64,
    at: Time,
}

/// The node's DHT state (see the module docs).
pub(crate) struct NodeDht {
    pub kad: Kad,
    cfg: DhtConfig,
    /// Keys of authenticated link peers, and when each link last carried traffic. Both are
    /// bounded by the links (`max_links`): entries leave when the link closes.
    pubkeys: BTreeMap<NodeId, PublicKeyBytes>,
    last_used: BTreeMap<NodeId, Time>,
    relay_buckets: BTreeMap<NodeId, Bucket>,
    bridge_contact: Option<Contact>,
    bridge_pubkey: Option<PublicKeyBytes>,
    bridge_addr: String,
    other_bridges: BTreeSet<String>,
    far_in_a_row: u32,
    published: BTreeSet<NodeId>,
    /// `(introducer, target)` pairs whose relay failed (the introducer had no link to the
    /// target), with when: skipped when routing. Bounded by [`MAX_NO_ROUTE`].
    no_route: BTreeMap<(NodeId, NodeId), Time>,
    /// Linked peers that named a node in their DHT answers, most recent first: candidates to
    /// introduce it (the routing table's introducer list is capped and also holds unlinked
    /// nodes). Bounded by [`MAX_HINTS`] targets of [`HINTS_PER_TARGET`]; entries whose peer
    /// unlinks are skipped by the router.
    hints: BTreeMap<NodeId, (Time, Vec<NodeId>)>,
    stats: DhtStats,
}

impl NodeDht {
    pub fn new(me: Contact, cfg: DhtConfig, seed: [u8; 32]) -> NodeDht {
        // The node's own contact is built from its identity, so its ID is the hash of its key and
        // `Kad::new` cannot refuse it. `Time::ZERO`: drivers start their clock with the node.
        let kad = match Kad::new(me, cfg.kad.clone(), seed, Time::ZERO) {
            Ok(k) => k,
            Err(e) => unreachable!("the node's own contact is valid by construction: {e}"),
        };
        NodeDht {
            kad,
            cfg,
            pubkeys: BTreeMap::new(),
            last_used: BTreeMap::new(),
            relay_buckets: BTreeMap::new(),
            bridge_contact: None,
            bridge_pubkey: None,
            bridge_addr: String::new(),
            other_bridges: BTreeSet::new(),
            far_in_a_row: 0,
            published: BTreeSet::new(),
            no_route: BTreeMap::new(),
            hints: BTreeMap::new(),
            stats: DhtStats::default(),
        }
    }

    fn relay_allow(&mut self, now: Time, peer: NodeId) -> bool {
        let cap = u64::from(self.cfg.relay_burst) * 1000;
        let b = self.relay_buckets.entry(peer).or_insert(Bucket {
            tokens_milli: cap,
            at: now,
        });
        let refill = now
            .since(b.at)
            .saturating_mul(u64::from(self.cfg.relay_per_sec));
        b.tokens_milli = b.tokens_milli.saturating_add(refill).min(cap);
        b.at = now;
        if b.tokens_milli >= 1000 {
            b.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

impl Node {
    // ----- API -------------------------------------------------------------------------------

    /// Find the nodes closest to `target`; ends with [`DhtEvent::LookupDone`] carrying the
    /// returned lookup id.
    pub fn dht_find_node(&mut self, now: Time, target: NodeId) -> Result<u64, DhtError> {
        let id = self.dht.kad.find_node(now, target)?;
        self.dht_flush(now);
        Ok(id.0)
    }

    /// Find providers of `key`; ends with [`DhtEvent::LookupDone`] whose `providers` name them.
    pub fn dht_find_value(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        let id = self.dht.kad.find_value(now, key)?;
        self.dht_flush(now);
        Ok(id.0)
    }

    /// Announce that this node provides `key` (a content hash_name): our record is stored at
    /// the closest nodes now and republished until the node stops. Ends with
    /// [`DhtEvent::Published`].
    pub fn dht_publish(&mut self, now: Time, key: NodeId) -> Result<u64, DhtError> {
        let id = self.dht.kad.publish(now, key)?;
        self.dht.published.insert(key);
        self.dht_flush(now);
        Ok(id.0)
    }

    /// Sizes and counters for display.
    pub fn dht_stats(&self) -> DhtStats {
        let mut s = self.dht.stats.clone();
        s.table_size = self.dht.kad.table().len();
        s.running_lookups = self.dht.kad.running_lookups();
        s.stored_keys = self.dht.kad.store().keys();
        s.published_keys = self.dht.published.len();
        s.bridge = self.dht.bridge_addr.clone();
        s
    }

    /// The DHT node itself, read-only (for tests and diagnostics).
    pub fn dht(&self) -> &Kad {
        &self.dht.kad
    }

    // ----- hooks called by the node ----------------------------------------------------------

    pub(crate) fn dht_on_welcome(&mut self, bridge_pubkey: PublicKeyBytes) {
        self.dht.bridge_pubkey = Some(bridge_pubkey);
    }

    /// The bridge told us its address: we can now name our bridge in the DHT, and bootstrap
    /// from the bridge's DHT node and our linked peers.
    pub(crate) fn dht_on_bridge_info(&mut self, now: Time, addr: String) {
        self.dht.bridge_addr = addr.clone();
        self.dht.kad.set_reachability(addr.clone(), Vec::new());
        let mut seeds: Vec<Contact> = self
            .dht
            .pubkeys
            .iter()
            .map(|(id, pk)| Contact {
                id: *id,
                pubkey: *pk,
                bridge: addr.clone(),
                introducers: Vec::new(),
            })
            .collect();
        if let Some(pk) = self.dht.bridge_pubkey {
            let c = Contact {
                id: node_id(&pk),
                pubkey: pk,
                bridge: addr,
                introducers: Vec::new(),
            };
            self.dht.bridge_contact = Some(c.clone());
            seeds.push(c);
        }
        if self.dht.kad.bootstrap(now, &seeds).is_ok() {
            self.dht.stats.bootstrapped = true;
        }
        self.dht_flush(now);
    }

    /// Records from the bridge's `FoundPeer`: contacts for the DHT, and the far-answer check.
    pub(crate) fn dht_on_found_peers(&mut self, now: Time, peers: &[PeerRecord]) {
        let me = self.id();
        let valid: Vec<&PeerRecord> = peers
            .iter()
            .filter(|p| p.id != me && node_id(&p.pubkey) == p.id)
            .collect();
        self.check_far_answer(now, &valid);
        for p in valid {
            let bridge = if p.bridge.is_empty() {
                self.dht.bridge_addr.clone()
            } else {
                if p.bridge != self.dht.bridge_addr
                    && self.dht.other_bridges.len() < MAX_KNOWN_BRIDGES
                {
                    self.dht.other_bridges.insert(p.bridge.clone());
                }
                p.bridge.clone()
            };
            let c = Contact {
                id: p.id,
                pubkey: p.pubkey,
                bridge,
                introducers: Vec::new(),
            };
            // Checked above; a refusal here would only mean a bad record, which we skip.
            let _ = self.dht.kad.add_contact(now, &c);
        }
        self.dht_flush(now);
    }

    fn check_far_answer(&mut self, now: Time, answer: &[&PeerRecord]) {
        let me = self.id();
        if answer.is_empty() {
            return;
        }
        let all_far_half = answer.len() >= 4
            && answer
                .iter()
                .all(|p| bucket_index(&me, &p.id) == Some(ID_BITS - 1));
        let best_answer = answer.iter().map(|p| p.id.distance(&me)).min();
        let best_known = self
            .dht
            .kad
            .table()
            .closest(&me, 1, None)
            .first()
            .map(|c| c.id.distance(&me));
        let withholds = matches!((best_answer, best_known), (Some(a), Some(k)) if a > k);
        if !(all_far_half || withholds) {
            self.dht.far_in_a_row = 0;
            return;
        }
        self.dht.far_in_a_row = self.dht.far_in_a_row.saturating_add(1);
        self.dht.stats.far_answers = self.dht.stats.far_answers.saturating_add(1);
        if self.dht.far_in_a_row < self.cfg.dht.far_answers_to_warn {
            return;
        }
        self.dht.far_in_a_row = 0;
        let alternatives: Vec<String> = self.dht.other_bridges.iter().cloned().collect();
        let bridge = self.dht.bridge_addr.clone();
        let next = if alternatives.is_empty() {
            "no other bridge is known; add peers by hand or use another bridge".to_owned()
        } else {
            format!(
                "asking the DHT through peers of {} instead",
                alternatives.join(", ")
            )
        };
        self.log(
            LogLevel::Warn,
            format!(
                "the bridge {bridge} keeps returning peers far from our ID ({} far answers in a row); it may be hiding our neighbours: {next}",
                self.cfg.dht.far_answers_to_warn
            ),
        );
        self.out
            .push_back(crate::Output::Event(Event::Dht(DhtEvent::SuspectBridge {
                bridge: bridge.clone(),
                far_answers: self.cfg.dht.far_answers_to_warn,
                alternatives: alternatives.clone(),
            })));
        if !alternatives.is_empty() {
            let seeds: Vec<Contact> = self
                .dht
                .kad
                .table()
                .closest(&me, 64, None)
                .into_iter()
                .filter(|c| c.bridge != bridge && !c.bridge.is_empty())
                .collect();
            let _ = self.dht.kad.bootstrap(now, &seeds);
            self.dht_flush(now);
        }
    }

    /// A `KadFrom` from the bridge: a frame from the bridge's DHT node or one it forwarded.
    pub(crate) fn dht_on_kad_from(
        &mut self,
        now: Time,
        peer: NodeId,
        pubkey: PublicKeyBytes,
        bridge: String,
        bytes: &[u8],
    ) {
        let bridge = if bridge.is_empty() {
            self.dht.bridge_addr.clone()
        } else {
            bridge
        };
        let from = Contact {
            id: peer,
            pubkey,
            bridge,
            introducers: Vec::new(),
        };
        self.dht.kad.handle_message(now, &from, bytes);
        self.dht_flush(now);
    }

    /// A DHT frame on an authenticated link from `peer`.
    pub(crate) fn dht_on_link_msg(&mut self, now: Time, link: LinkId, peer: NodeId, msg: LinkMsg) {
        self.dht_touch(now, peer);
        match msg {
            LinkMsg::Kad(bytes) => {
                let Some(pubkey) = self.dht.pubkeys.get(&peer).copied() else {
                    return;
                };
                self.learn_hints(now, peer, &bytes);
                let from = Contact {
                    id: peer,
                    pubkey,
                    bridge: self.known_bridge(&peer),
                    introducers: Vec::new(),
                };
                self.dht.kad.handle_message(now, &from, &bytes);
            }
            LinkMsg::Relay { to, bytes } => self.on_relay_request(now, link, peer, to, bytes),
            LinkMsg::Relayed {
                from,
                pubkey,
                bytes,
            } => {
                let c = Contact {
                    id: from,
                    pubkey,
                    bridge: self.known_bridge(&from),
                    introducers: vec![peer],
                };
                self.dht.kad.handle_message(now, &c, &bytes);
            }
            LinkMsg::RelayFailed { to, bytes } => {
                // Remember that this peer cannot introduce `to`, and try the next way.
                if self.dht.no_route.len() >= MAX_NO_ROUTE {
                    if let Some(oldest) = self
                        .dht
                        .no_route
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(k, _)| *k)
                    {
                        self.dht.no_route.remove(&oldest);
                    }
                }
                self.dht.no_route.insert((peer, to), now);
                let contact = self.dht.kad.table().get(&to).cloned();
                match contact {
                    Some(c) => self.dht_route(now, c, bytes),
                    None => {
                        let registered = self.bridge == crate::BridgeState::Registered;
                        if registered && !self.dht.bridge_addr.is_empty() {
                            self.dht.stats.sent_via_bridge += 1;
                            self.send_bridge(&SignalMsg::KadTo { peer: to, bytes });
                        } else {
                            self.dht.stats.unroutable += 1;
                            self.dht.kad.handle_send_failed(now, &to);
                        }
                    }
                }
            }
            _ => {}
        }
        self.dht_flush(now);
    }

    /// `peer` is linked to us and named these nodes: it may be linked to them too.
    fn learn_hints(&mut self, now: Time, peer: NodeId, bytes: &[u8]) {
        let contacts = match KadMsg::decode_frame(bytes) {
            Ok(KadMsg::Nodes { contacts, .. }) | Ok(KadMsg::Value { contacts, .. }) => contacts,
            _ => return,
        };
        for c in contacts {
            if c.id == peer {
                continue;
            }
            if !self.dht.hints.contains_key(&c.id) && self.dht.hints.len() >= MAX_HINTS {
                if let Some(oldest) = self
                    .dht
                    .hints
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| *k)
                {
                    self.dht.hints.remove(&oldest);
                }
            }
            let entry = self
                .dht
                .hints
                .entry(c.id)
                .or_insert_with(|| (now, Vec::new()));
            entry.0 = now;
            entry.1.retain(|p| *p != peer);
            entry.1.insert(0, peer);
            entry.1.truncate(HINTS_PER_TARGET);
        }
    }

    fn on_relay_request(
        &mut self,
        now: Time,
        link: LinkId,
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    ) {
        let refuse = |node: &mut Node, why: String| {
            node.dht.stats.relay_refused += 1;
            let n = node.dht.stats.relay_refused;
            if n <= LOGGED_REJECTIONS || n.is_multiple_of(100) {
                node.log(
                    LogLevel::Warn,
                    format!(
                        "not relaying a DHT frame from {} to {}: {why} ({n} refused so far)",
                        from.short(),
                        to.short()
                    ),
                );
            }
        };
        if !self.dht.relay_allow(now, from) {
            refuse(
                self,
                "the peer asks faster than the per-link relay limit".into(),
            );
            return;
        }
        if let Err(e) = KadMsg::decode_frame(&bytes) {
            refuse(self, format!("it is not a Kademlia frame ({e})"));
            return;
        }
        let target = self.linked_link(&to).filter(|_| to != from);
        let Some(target) = target else {
            // Whoever named us as `to`'s introducer knew we know `to`, not that we are linked
            // to it. Hand the frame back at once, so the sender tries its bridge instead of
            // waiting for a timeout.
            self.dht.stats.relay_refused += 1;
            self.out.push_back(crate::Output::SendLink {
                link,
                bytes: LinkMsg::RelayFailed { to, bytes }.encode_frame(),
            });
            return;
        };
        let Some(pubkey) = self.dht.pubkeys.get(&from).copied() else {
            return;
        };
        self.dht.stats.relayed += 1;
        self.dht_touch(now, to);
        self.out.push_back(crate::Output::SendLink {
            link: target,
            bytes: LinkMsg::Relayed {
                from,
                pubkey,
                bytes,
            }
            .encode_frame(),
        });
    }

    pub(crate) fn dht_on_linked(&mut self, now: Time, peer: NodeId, pubkey: PublicKeyBytes) {
        self.dht.pubkeys.insert(peer, pubkey);
        self.dht.last_used.insert(peer, now);
        let c = Contact {
            id: peer,
            pubkey,
            bridge: self.known_bridge(&peer),
            introducers: Vec::new(),
        };
        let _ = self.dht.kad.add_contact(now, &c);
        self.dht_flush(now);
    }

    pub(crate) fn dht_on_closed(&mut self, peer: &NodeId) {
        self.dht.pubkeys.remove(peer);
        self.dht.last_used.remove(peer);
        self.dht.relay_buckets.remove(peer);
    }

    pub(crate) fn dht_touch(&mut self, now: Time, peer: NodeId) {
        if let Some(t) = self.dht.last_used.get_mut(&peer) {
            *t = now;
        }
    }

    pub(crate) fn dht_poll_timeout(&self) -> Option<Time> {
        self.dht.kad.poll_timeout()
    }

    pub(crate) fn dht_timeout(&mut self, now: Time) {
        if self.dht.kad.poll_timeout().is_some_and(|t| t <= now) {
            self.dht.kad.handle_timeout(now);
        }
        self.dht_flush(now);
        self.close_idle_links(now);
    }

    /// While more than `target_links` links are open, close those idle for too long, least
    /// recently used first.
    fn close_idle_links(&mut self, now: Time) {
        let mut idle: Vec<(Time, NodeId)> = self
            .dht
            .last_used
            .iter()
            .filter(|(_, t)| now.since(**t) >= self.cfg.dht.idle_link_timeout.as_millis() as u64)
            .map(|(p, t)| (*t, *p))
            .collect();
        idle.sort();
        let mut open = self.dht.last_used.len();
        for (_, peer) in idle {
            if open <= self.cfg.target_links {
                break;
            }
            self.disconnect(peer, "idle for too long; keeping the link count low");
            open -= 1;
        }
    }

    // ----- routing ---------------------------------------------------------------------------

    fn known_bridge(&self, peer: &NodeId) -> String {
        self.dht
            .kad
            .table()
            .get(peer)
            .map(|c| c.bridge.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| self.dht.bridge_addr.clone())
    }

    fn linked_link(&self, peer: &NodeId) -> Option<LinkId> {
        let link = *self.by_peer.get(peer)?;
        self.links
            .get(&link)
            .filter(|l| l.state == LinkState::Linked)
            .map(|_| link)
    }

    /// Carry out what the DHT asked for, routing each frame (see the module docs).
    pub(crate) fn dht_flush(&mut self, now: Time) {
        while let Some(out) = self.dht.kad.poll_output() {
            match out {
                KadOutput::Send { to, bytes } => self.dht_route(now, to, bytes),
                KadOutput::Event(e) => self.dht_event(e),
            }
        }
    }

    fn dht_route(&mut self, now: Time, to: Contact, bytes: Vec<u8>) {
        let registered = self.bridge == crate::BridgeState::Registered;
        let is_bridge = self.dht.bridge_contact.as_ref().map(|c| c.id) == Some(to.id);
        if let Some(link) = self.linked_link(&to.id) {
            self.dht.stats.sent_direct += 1;
            self.dht_touch(now, to.id);
            self.out.push_back(crate::Output::SendLink {
                link,
                bytes: LinkMsg::Kad(bytes).encode_frame(),
            });
        } else if let Some((via, link)) = to
            .introducers
            .iter()
            .chain(
                self.dht
                    .hints
                    .get(&to.id)
                    .map(|h| h.1.iter())
                    .into_iter()
                    .flatten(),
            )
            .find_map(|i| {
                let failed = self
                    .dht
                    .no_route
                    .get(&(*i, to.id))
                    .is_some_and(|t| now.since(*t) < NO_ROUTE_TTL.as_millis() as u64);
                if failed {
                    None
                } else {
                    self.linked_link(i).map(|l| (*i, l))
                }
            })
        {
            self.dht.stats.sent_via_introducer += 1;
            self.dht_touch(now, via);
            self.out.push_back(crate::Output::SendLink {
                link,
                bytes: LinkMsg::Relay { to: to.id, bytes }.encode_frame(),
            });
        } else if registered && (is_bridge || !to.bridge.is_empty()) {
            self.dht.stats.sent_via_bridge += 1;
            self.send_bridge(&SignalMsg::KadTo { peer: to.id, bytes });
        } else {
            self.dht.stats.unroutable += 1;
            self.dht.kad.handle_send_failed(now, &to.id);
        }
    }

    fn dht_event(&mut self, e: KadEvent) {
        let ev = match e {
            KadEvent::LookupFinished(r) => {
                self.dht.stats.lookups_done += 1;
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
                ..
            } => {
                self.dht.stats.lookups_done += 1;
                DhtEvent::Published {
                    lookup: id.0,
                    key,
                    holders,
                    attempted,
                }
            }
            KadEvent::ProviderStored { key, provider } => {
                DhtEvent::ProviderStored { key, provider }
            }
            KadEvent::Rejected { from, reason } => {
                self.dht.stats.rejected += 1;
                let n = self.dht.stats.rejected;
                if n <= LOGGED_REJECTIONS || n.is_multiple_of(100) {
                    self.log(
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
        self.out.push_back(crate::Output::Event(Event::Dht(ev)));
    }
}

//! Bridges as DHT nodes, and bridges federated with each other.
//!
//! Each bridge runs a [`Kad`] under its own identity: pages use it as their bootstrap seed
//! (`KadTo` addressed to the bridge's ID), and it stores provider records like any node.
//!
//! A bridge is started with other bridges' addresses; its driver dials them
//! ([`crate::RendezvousInput::Dialed`]). Each side sends a `Challenge` first and answers the
//! other's with a `BridgeHello` signing it and carrying the address it is known by (the dialer
//! answers first; the dialed bridge answers once the dialer's hello checks out). Then, on that
//! connection:
//!
//! - **Registrations.** Each side sends `PeersJoined` for the peers registered with it (a
//!   snapshot, then one frame per newcomer) and `PeersLeft` when they go (batched with the
//!   departures announced to pages, see `crate::departures`). So `FindPeer`
//!   (`DB_FIND_PEER`) is answered with the closest peers known *across* bridges, each record
//!   tagged with the address of the bridge that can introduce it. Bridges are few (the spec:
//!   "bridges are not numerous"), so this flooding costs one frame per registration per
//!   federated bridge; the remote table is a bounded LRU of `max_remote_peers`. A peer that
//!   left a federated bridge is announced to this bridge's pages in `PeersGone` too.
//! - **Kademlia among bridges.** The bridges' DHT nodes bootstrap from each other, and their
//!   frames travel as `Federate { to: bridge, inner: KadFrom }`.
//! - **Forwarding for peers.** A page's `KadTo`, `Introduce`, `Introduced` or
//!   `IntroduceFailed` for a peer registered at a federated bridge goes there as
//!   `Federate { to, inner }`, where `inner` is exactly the frame the target will receive
//!   (its `peer` is the source). So a page on bridge 2 reaches DHT nodes on bridge 1, and a
//!   peer on bridge 1 links to a peer on bridge 2 (the introduction is relayed bridge to
//!   bridge).
//!
//! A federated bridge is trusted like a peer: what it sends is decoded, checked (a record's ID
//! must be the hash of its key, only the four deliverable kinds may be wrapped, the target must
//! be registered here) and bounded by the same per-connection rate limit (times
//! `bridge_rate_factor`) and keepalive; anything else closes that connection with a reason.
//!
//! TODO: this module still continues `Rendezvous`'s `impl` (it moved here from
//! `onionmesh-node` as it was); making the federation a part with its own methods that returns
//! typed requests is the next step of issue 8's "owned parts" for this crate.

use crate::config::codes;
use crate::conn::ConnState;
use crate::{ConnId, Rendezvous, RendezvousOutput, Time};
use onionmesh_bounded::{BoundedLru, TokenBucket};
use onionmesh_crypto::{hello, node_id, Identity};
use onionmesh_kad::{Kad, KadConfig, KadEvent, Output as KadOutput};
use onionmesh_wire::kad::{Contact, KadBytes};
use onionmesh_wire::signal::{ChallengeNonce, InnerFrame, Reason, SyncPeers, MAX_PEERS_PER_SYNC};
use onionmesh_wire::{
    BridgeAddr, Frame, NodeId, PeerRecord, PublicKeyBytes, SignalMsg, SignatureBytes,
};
use rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};

/// A peer registered at a federated bridge.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pubkey: PublicKeyBytes,
    via: ConnId,
}

/// The federation state of a [`Rendezvous`].
pub(crate) struct Federation {
    pub kad: Option<Kad>,
    /// Peers registered at federated bridges; least recently announced or used go first.
    remote: BoundedLru<NodeId, Remote>,
    /// Federated bridges by ID. Bounded by the connections.
    bridges: BTreeMap<NodeId, ConnId>,
    /// Connections we dialed: we answer their challenge with our `BridgeHello` first.
    pub dialed: BTreeSet<ConnId>,
    logged_drops: u64,
}

impl Federation {
    pub fn new(max_remote_peers: usize) -> Self {
        Federation {
            kad: None,
            remote: BoundedLru::new(max_remote_peers),
            bridges: BTreeMap::new(),
            dialed: BTreeSet::new(),
            logged_drops: 0,
        }
    }
}

impl Rendezvous {
    /// A rendezvous that is also a DHT node under the bridge's identity, its clock starting at
    /// `now`. `seed` feeds both RNGs (challenges; the DHT's token secrets and request ids): 32
    /// bytes from the OS in the bridge.
    pub fn with_dht(
        identity: Identity,
        cfg: crate::RendezvousConfig,
        seed: [u8; 32],
        now: Time,
    ) -> Self {
        let me = Contact {
            id: identity.id(),
            pubkey: identity.public_key(),
            bridge: Some(cfg.addr.clone()),
            introducers: Default::default(),
        };
        let mut r = Rendezvous::new(identity, cfg, seed);
        r.now = now;
        let mut kad_seed = [0u8; 32];
        r.rng.fill_bytes(&mut kad_seed);
        r.fed.kad = Kad::new(me, KadConfig::default(), kad_seed, now).ok();
        r
    }

    /// The bridge's DHT node, if it runs one.
    pub fn dht(&self) -> Option<&Kad> {
        self.fed.kad.as_ref()
    }

    /// Federated bridges connected now.
    pub fn federated_bridges(&self) -> usize {
        self.fed.bridges.len()
    }

    /// Peers registered at federated bridges that this bridge knows.
    pub fn remote_peers(&self) -> usize {
        self.fed.remote.len()
    }

    /// Sign the other bridge's `challenge` into our hello.
    fn send_bridge_hello(&mut self, conn: ConnId, challenge: ChallengeNonce) {
        let msg = SignalMsg::BridgeHello {
            pubkey: self.identity.public_key(),
            challenge,
            sig: hello::sign(&self.identity, &challenge),
            addr: self.cfg.addr.clone(),
        };
        self.send(conn, &msg);
    }

    /// The other side of a connection that has not said hello sent its challenge: only a
    /// bridge does. A connection we dialed answers it with our hello at once; otherwise we
    /// keep it for the answer to the dialer's hello.
    pub(crate) fn fed_on_challenge(&mut self, conn: ConnId, nonce: ChallengeNonce) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::AwaitingHello {
            their_challenge, ..
        } = &mut c.state
        else {
            return;
        };
        if their_challenge.replace(nonce).is_some() {
            self.reject(conn, codes::PROTOCOL, "a second challenge");
            return;
        }
        if self.fed.dialed.contains(&conn) {
            self.send_bridge_hello(conn, nonce);
        }
    }

    pub(crate) fn fed_on_bridge_hello(
        &mut self,
        conn: ConnId,
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
        addr: BridgeAddr,
    ) {
        let now = self.now;
        let their_challenge = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::AwaitingHello {
                their_challenge: Some(n),
                ..
            }) => *n,
            _ => {
                self.reject(
                    conn,
                    codes::PROTOCOL,
                    "a bridge must send its challenge before its hello",
                );
                return;
            }
        };
        let Some(id) = self.check_hello(conn, &pubkey, &challenge, &sig) else {
            return;
        };
        if id == self.identity.id() {
            self.reject(
                conn,
                codes::PROTOCOL,
                "a bridge cannot federate with itself",
            );
            return;
        }
        if self.fed.bridges.contains_key(&id) {
            self.reject(
                conn,
                codes::DUPLICATE_ID,
                "that bridge is already federated",
            );
            return;
        }
        let factor = self.cfg.bridge_rate_factor.max(1);
        let (burst, rate) = (
            self.cfg.burst.saturating_mul(factor),
            self.cfg.frames_per_sec.saturating_mul(factor),
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Bridge {
                id,
                addr: addr.clone(),
            };
            c.bucket = TokenBucket::new(now, burst, rate);
        }
        self.reschedule(conn);
        self.fed.bridges.insert(id, conn);
        if !self.fed.dialed.remove(&conn) {
            self.send_bridge_hello(conn, their_challenge);
        }
        self.out.push_back(RendezvousOutput::Federated {
            conn,
            id,
            addr: addr.clone(),
        });
        // Everyone registered here, in frames of at most MAX_PEERS_PER_SYNC.
        let mine: Vec<PeerRecord> = self.local_records(None).collect();
        for chunk in mine.chunks(MAX_PEERS_PER_SYNC) {
            // `chunks` keeps each frame within its maximum: nothing is cut.
            let peers = SyncPeers::truncating(chunk.iter().cloned());
            self.send(conn, &SignalMsg::PeersJoined { peers });
        }
        // The bridges' DHT nodes know each other.
        if let Some(kad) = self.fed.kad.as_mut() {
            let c = Contact {
                id,
                pubkey,
                bridge: Some(addr),
                introducers: Default::default(),
            };
            let _ = kad.bootstrap(now, &[c]);
        }
        self.fed_flush(now);
    }

    /// One frame on a federated bridge connection.
    pub(crate) fn fed_bridge_frame(&mut self, now: Time, conn: ConnId, msg: SignalMsg) {
        let Some(ConnState::Bridge {
            id: bridge_id,
            addr,
            ..
        }) = self.conns.get(&conn).map(|c| &c.state)
        else {
            return;
        };
        let (bridge_id, bridge_addr) = (*bridge_id, addr.clone());
        match msg {
            SignalMsg::PeersJoined { peers } => {
                for p in peers {
                    if node_id(&p.pubkey) != p.id {
                        self.reject(
                            conn,
                            codes::PROTOCOL,
                            "a peer record whose ID is not the hash of its key",
                        );
                        return;
                    }
                    if self.by_id.contains_key(&p.id) || p.id == self.identity.id() {
                        continue;
                    }
                    self.departures.returned(&p.id);
                    self.fed.remote.insert(
                        p.id,
                        Remote {
                            pubkey: p.pubkey,
                            via: conn,
                        },
                    );
                }
            }
            SignalMsg::PeersLeft { ids } => {
                for id in ids {
                    if self.fed.remote.peek(&id).is_some_and(|r| r.via == conn) {
                        self.fed.remote.remove(&id);
                        // This bridge's pages may hold it as a candidate too.
                        self.peer_left(id, false);
                    }
                }
            }
            SignalMsg::Ping { nonce } => self.send(conn, &SignalMsg::Pong { nonce }),
            SignalMsg::Pong { .. } => {}
            SignalMsg::Federate { to, inner } => {
                let inner_msg = match SignalMsg::decode_frame(&inner) {
                    Ok(m) => m,
                    Err(e) => {
                        self.reject(
                            conn,
                            codes::MALFORMED,
                            &format!("malformed federated frame: {e}"),
                        );
                        return;
                    }
                };
                self.on_federate(now, conn, bridge_id, bridge_addr, to, inner_msg);
            }
            SignalMsg::Unrecognized { cmd, .. } => self.reject(
                conn,
                codes::PROTOCOL,
                &format!("unknown bridge command 0x{cmd:02x}"),
            ),
            _ => self.reject(
                conn,
                codes::PROTOCOL,
                "a node-to-bridge message on a bridge connection",
            ),
        }
    }

    fn on_federate(
        &mut self,
        now: Time,
        conn: ConnId,
        bridge_id: NodeId,
        bridge_addr: BridgeAddr,
        to: NodeId,
        inner: SignalMsg,
    ) {
        let source = match &inner {
            SignalMsg::KadFrom { peer, .. }
            | SignalMsg::Introduce { peer, .. }
            | SignalMsg::Introduced { peer, .. }
            | SignalMsg::IntroduceFailed { peer, .. } => *peer,
            _ => {
                self.reject(
                    conn,
                    codes::PROTOCOL,
                    "a federated frame of a kind that is never forwarded",
                );
                return;
            }
        };
        // The answer to a frame from a peer we did not know yet goes back the same way.
        if source != bridge_id
            && !self.by_id.contains_key(&source)
            && !self.fed.remote.contains_key(&source)
            && self.fed.remote.len() < self.cfg.max_remote_peers
        {
            if let SignalMsg::KadFrom { pubkey, .. } = &inner {
                if node_id(pubkey) == source {
                    self.fed.remote.insert(
                        source,
                        Remote {
                            pubkey: *pubkey,
                            via: conn,
                        },
                    );
                }
            }
        }
        if to == self.identity.id() {
            let SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } = inner
            else {
                self.fed_drop_log(format!(
                    "dropping an introduction addressed to this bridge from {}",
                    bridge_id.short()
                ));
                return;
            };
            let from = Contact {
                id: peer,
                pubkey,
                bridge: bridge.or(Some(bridge_addr)),
                introducers: Default::default(),
            };
            if let Some(kad) = self.fed.kad.as_mut() {
                kad.handle_message(now, &from, &bytes);
            }
            self.fed_flush(now);
            return;
        }
        let Some(target) = self.by_id.get(&to).copied() else {
            self.fed_drop_log(format!(
                "dropping a federated frame for {}: not registered here",
                to.short()
            ));
            return;
        };
        let deliver = match inner {
            // Probed like a local introduction; a suspect target fails it at once.
            SignalMsg::Introduce { peer, session, sdp } => {
                if self.conns.get(&target).is_some_and(|c| c.suspect) {
                    let reason = format!(
                        "peer {} does not answer its bridge (its page may be suspended or gone)",
                        to.short()
                    );
                    self.fed_forward(
                        &peer,
                        &SignalMsg::IntroduceFailed {
                            peer: to,
                            session,
                            reason: Reason::lossy(&reason),
                        },
                    );
                } else {
                    self.introduce_local(target, peer, session, sdp);
                }
                return;
            }
            // Name the source's bridge so the target can answer (and others can reach it).
            SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } => SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge: bridge.or(Some(bridge_addr)),
                bytes,
            },
            other => other,
        };
        self.send(target, &deliver);
    }

    /// A registered node sent `KadTo { peer, bytes }`.
    pub(crate) fn fed_kad_from_node(
        &mut self,
        now: Time,
        conn: ConnId,
        from: NodeId,
        peer: NodeId,
        bytes: KadBytes,
    ) {
        let Some(ConnState::Registered { pubkey, .. }) = self.conns.get(&conn).map(|c| &c.state)
        else {
            return;
        };
        let pubkey = *pubkey;
        if peer == self.identity.id() {
            let c = Contact {
                id: from,
                pubkey,
                bridge: Some(self.cfg.addr.clone()),
                introducers: Default::default(),
            };
            if let Some(kad) = self.fed.kad.as_mut() {
                kad.handle_message(now, &c, &bytes);
            }
            self.fed_flush(now);
            return;
        }
        if peer == from {
            return;
        }
        if let Some(target) = self.by_id.get(&peer).copied() {
            self.send(
                target,
                &SignalMsg::KadFrom {
                    peer: from,
                    pubkey,
                    bridge: None,
                    bytes,
                },
            );
            return;
        }
        if self.fed_knows(&peer) {
            let inner = SignalMsg::KadFrom {
                peer: from,
                pubkey,
                bridge: Some(self.cfg.addr.clone()),
                bytes,
            };
            self.fed_forward(&peer, &inner);
        } else {
            self.fed_drop_log(format!(
                "dropping a DHT frame from {} for {}: no route to that node",
                from.short(),
                peer.short()
            ));
        }
    }

    /// True if `peer` is a federated bridge or registered at one.
    pub(crate) fn fed_knows(&self, peer: &NodeId) -> bool {
        // (`contains_key` does not refresh the entry; forwarding through it does.)
        self.fed.bridges.contains_key(peer) || self.fed.remote.contains_key(peer)
    }

    /// Send `inner` to `to` through the federated bridge that has it.
    pub(crate) fn fed_forward(&mut self, to: &NodeId, inner: &SignalMsg) {
        let via = self
            .fed
            .bridges
            .get(to)
            .copied()
            .or_else(|| self.fed.remote.get_mut(to).map(|r| r.via));
        let Some(via) = via else {
            return;
        };
        // Every message forwarded here (a KadFrom, an introduction) is far under MAX_INNER;
        // one that is not is refused, never cut.
        match InnerFrame::new(inner.encode_frame()) {
            Ok(inner) => self.send(via, &SignalMsg::Federate { to: *to, inner }),
            Err(e) => self.fed_drop_log(format!(
                "dropping a frame for {}: it does not fit a Federate ({e})",
                to.short()
            )),
        }
    }

    /// Up to `n` remote peers closest to `target`, tagged with their bridge's address.
    pub(crate) fn fed_remote_records(&self, target: &NodeId, n: usize) -> Vec<PeerRecord> {
        let mut best: Vec<(&NodeId, &Remote)> = self.fed.remote.iter().collect();
        if best.len() > n {
            best.select_nth_unstable_by_key(n, |(id, _)| id.distance(target));
            best.truncate(n);
        }
        best.into_iter()
            .filter_map(|(id, r)| {
                let addr = match self.conns.get(&r.via).map(|c| &c.state) {
                    Some(ConnState::Bridge { addr, .. }) => addr.clone(),
                    _ => return None,
                };
                Some(PeerRecord {
                    id: *id,
                    pubkey: r.pubkey,
                    bridge: Some(addr),
                })
            })
            .collect()
    }

    pub(crate) fn fed_peer_joined(&mut self, id: NodeId, pubkey: PublicKeyBytes) {
        let conns: Vec<ConnId> = self.fed.bridges.values().copied().collect();
        for c in conns {
            self.send(
                c,
                &SignalMsg::PeersJoined {
                    peers: SyncPeers::one(PeerRecord {
                        id,
                        pubkey,
                        bridge: None,
                    }),
                },
            );
        }
    }

    pub(crate) fn fed_bridge_closed(&mut self, conn: ConnId) {
        self.fed.bridges.retain(|_, c| *c != conn);
        self.fed.remote.retain(|_, r| r.via != conn);
    }

    pub(crate) fn fed_timeout(&mut self, now: Time) {
        if let Some(kad) = self.fed.kad.as_mut() {
            if kad.poll_timeout().is_some_and(|t| t <= now) {
                kad.handle_timeout(now);
            }
        }
        self.fed_flush(now);
    }

    /// Carry out what the bridge's DHT node asked for.
    pub(crate) fn fed_flush(&mut self, now: Time) {
        loop {
            let Some(out) = self.fed.kad.as_mut().and_then(|k| k.poll_output()) else {
                return;
            };
            match out {
                KadOutput::Send { to, bytes } => {
                    // The DHT encodes frames of at most MAX_KAD_FRAME; one that is not is a
                    // bug, refused (as a failed send), never cut.
                    let Ok(bytes) = KadBytes::new(bytes) else {
                        self.fed_drop_log(format!(
                            "dropping an oversized DHT frame for {}",
                            to.id.short()
                        ));
                        if let Some(kad) = self.fed.kad.as_mut() {
                            kad.handle_send_failed(now, &to.id);
                        }
                        continue;
                    };
                    let me = self.identity.id();
                    let msg = SignalMsg::KadFrom {
                        peer: me,
                        pubkey: self.identity.public_key(),
                        bridge: None,
                        bytes,
                    };
                    if let Some(conn) = self.by_id.get(&to.id).copied() {
                        self.send(conn, &msg);
                    } else if self.fed_knows(&to.id) {
                        self.fed_forward(&to.id, &msg);
                    } else if let Some(kad) = self.fed.kad.as_mut() {
                        kad.handle_send_failed(now, &to.id);
                    }
                }
                KadOutput::Event(KadEvent::Rejected { from, reason }) => {
                    self.fed_drop_log(format!(
                        "DHT: refused a message from {}: {reason}",
                        from.short()
                    ));
                }
                KadOutput::Event(_) => {}
            }
        }
    }

    /// A warning for the log, at most 100 in full and then every 1000th, so a flood cannot
    /// flood the log.
    pub(crate) fn fed_drop_log(&mut self, text: String) {
        self.fed.logged_drops += 1;
        let n = self.fed.logged_drops;
        if n <= 100 || n.is_multiple_of(1000) {
            self.log(true, format!("{text} ({n} dropped so far)"));
        }
    }
}

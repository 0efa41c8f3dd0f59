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
//! ## Shape
//!
//! [`Federation`] is a part of the rendezvous: a field with its own methods, holding the
//! federation's state (the bridge's DHT node, the federated bridges, the peers registered at
//! them). It reads what it needs of its owner from its arguments (who is registered here) and
//! asks the owner for everything else as typed [`FedRequest`]s (send a frame, reject a
//! connection, relay an introduction, announce a departure), which the owner carries out in
//! order after each call. The connection handshake (challenges, signed `BridgeHello`s, the
//! connection's state and rate limit) is the owner's; this part starts at "that connection is
//! a federated bridge".

use crate::config::codes;
use crate::conn::ConnId;
use crate::Time;
use onionmesh_bounded::BoundedLru;
use onionmesh_crypto::node_id;
use onionmesh_kad::{Kad, KadEvent, Output as KadOutput};
use onionmesh_wire::kad::{Contact, KadBytes};
use onionmesh_wire::signal::{InnerFrame, Sdp, SyncPeers, MAX_PEERS_PER_SYNC};
use onionmesh_wire::{BridgeAddr, Frame, NodeId, PeerRecord, PublicKeyBytes, SignalMsg};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Who is registered at this bridge (the owner's table), as the federation reads it.
pub(crate) type Local = BTreeMap<NodeId, ConnId>;

/// What the federation asks its owner to do, in order.
#[derive(Debug)]
pub(crate) enum FedRequest {
    /// Send `msg` on `conn`.
    Send { conn: ConnId, msg: SignalMsg },
    /// The connection broke the protocol: tell it why and close it (the owner then calls
    /// [`Federation::closed`] for it).
    Reject {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// A dropped frame worth a (throttled) warning.
    Dropped(String),
    /// `id` is registered at a federated bridge: it has not left.
    Returned(NodeId),
    /// `id` left a federated bridge: announce it to this bridge's pages.
    Left(NodeId),
    /// An introduction from `from` (at a federated bridge) for `to`, registered here on
    /// `target`: relay and probe it like a local one, or, if `to` is suspect, fail it back
    /// through the federation.
    Introduce {
        target: ConnId,
        to: NodeId,
        from: NodeId,
        session: u64,
        sdp: Sdp,
    },
}

/// This bridge as the federation names it in frames.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub id: NodeId,
    pub pubkey: PublicKeyBytes,
    /// The address pages and bridges reach this bridge by.
    pub addr: BridgeAddr,
}

/// A bridge that just said a valid hello on `conn`.
#[derive(Debug, Clone)]
pub(crate) struct NewBridge {
    pub conn: ConnId,
    pub id: NodeId,
    pub pubkey: PublicKeyBytes,
    /// The address it is known by.
    pub addr: BridgeAddr,
}

/// A peer registered at a federated bridge.
#[derive(Debug, Clone)]
struct Remote {
    pubkey: PublicKeyBytes,
    via: ConnId,
}

/// A federated bridge's connection.
#[derive(Debug, Clone)]
struct BridgeConn {
    id: NodeId,
    addr: BridgeAddr,
}

/// The federation part of a rendezvous (see the module docs).
pub(crate) struct Federation {
    me: Me,
    kad: Option<Kad>,
    /// Peers registered at federated bridges; least recently announced or used go first.
    remote: BoundedLru<NodeId, Remote>,
    /// `remote` takes in unannounced peers (the sources of forwarded frames) only below this.
    max_remote: usize,
    /// Federated bridges by ID, and by connection. Bounded by the connections.
    bridges: BTreeMap<NodeId, ConnId>,
    conns: BTreeMap<ConnId, BridgeConn>,
    /// Connections we dialed: we answer their challenge with our `BridgeHello` first.
    dialed: BTreeSet<ConnId>,
    /// Requests for the owner; drained after every call.
    reqs: VecDeque<FedRequest>,
}

impl Federation {
    pub fn new(me: Me, max_remote_peers: usize) -> Self {
        Federation {
            me,
            kad: None,
            remote: BoundedLru::new(max_remote_peers),
            max_remote: max_remote_peers,
            bridges: BTreeMap::new(),
            conns: BTreeMap::new(),
            dialed: BTreeSet::new(),
            reqs: VecDeque::new(),
        }
    }

    /// Run `kad` as the bridge's DHT node.
    pub fn run_dht(&mut self, kad: Kad) {
        self.kad = Some(kad);
    }

    pub fn dht(&self) -> Option<&Kad> {
        self.kad.as_ref()
    }

    /// Federated bridges connected now.
    pub fn bridges(&self) -> usize {
        self.bridges.len()
    }

    /// Peers registered at federated bridges that this bridge knows.
    pub fn remote_peers(&self) -> usize {
        self.remote.len()
    }

    /// The next request for the owner.
    pub fn poll_request(&mut self) -> Option<FedRequest> {
        self.reqs.pop_front()
    }

    /// When the DHT node needs the timer.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.kad.as_ref().and_then(|k| k.poll_timeout())
    }

    /// The driver dialed `conn` to another bridge.
    pub fn dialed(&mut self, conn: ConnId) {
        self.dialed.insert(conn);
    }

    /// Whether we dialed `conn` (and so answer its challenge first).
    pub fn was_dialed(&self, conn: ConnId) -> bool {
        self.dialed.contains(&conn)
    }

    /// Whether the bridge `id` is federated already.
    pub fn is_federated(&self, id: &NodeId) -> bool {
        self.bridges.contains_key(id)
    }

    /// `conn` is gone: forget it, the bridge on it and the peers it announced.
    pub fn closed(&mut self, conn: ConnId) {
        self.dialed.remove(&conn);
        if let Some(b) = self.conns.remove(&conn) {
            self.bridges.remove(&b.id);
        }
        self.remote.retain(|_, r| r.via != conn);
    }

    fn send(&mut self, conn: ConnId, msg: SignalMsg) {
        self.reqs.push_back(FedRequest::Send { conn, msg });
    }

    fn reject(&mut self, conn: ConnId, code: u16, reason: impl Into<String>) {
        self.reqs.push_back(FedRequest::Reject {
            conn,
            code,
            reason: reason.into(),
        });
    }

    fn dropped(&mut self, text: String) {
        self.reqs.push_back(FedRequest::Dropped(text));
    }

    /// A bridge said a valid hello: send it everyone registered here (`mine`, in frames of at
    /// most `MAX_PEERS_PER_SYNC`), and let the DHT nodes know each other.
    pub fn bridge_joined(
        &mut self,
        now: Time,
        local: &Local,
        bridge: NewBridge,
        mine: Vec<PeerRecord>,
    ) {
        let NewBridge {
            conn,
            id,
            pubkey,
            addr,
        } = bridge;
        self.dialed.remove(&conn);
        self.bridges.insert(id, conn);
        self.conns.insert(
            conn,
            BridgeConn {
                id,
                addr: addr.clone(),
            },
        );
        for chunk in mine.chunks(MAX_PEERS_PER_SYNC) {
            // `chunks` keeps each frame within its maximum: nothing is cut.
            let peers = SyncPeers::truncating(chunk.iter().cloned());
            self.send(conn, SignalMsg::PeersJoined { peers });
        }
        if let Some(kad) = self.kad.as_mut() {
            let c = Contact {
                id,
                pubkey,
                bridge: Some(addr),
                introducers: Default::default(),
            };
            let _ = kad.bootstrap(now, &[c]);
        }
        self.flush(now, local);
    }

    /// One frame on a federated bridge connection.
    pub fn on_frame(&mut self, now: Time, local: &Local, conn: ConnId, msg: SignalMsg) {
        let Some(BridgeConn {
            id: bridge_id,
            addr: bridge_addr,
        }) = self.conns.get(&conn).cloned()
        else {
            return;
        };
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
                    if local.contains_key(&p.id) || p.id == self.me.id {
                        continue;
                    }
                    self.reqs.push_back(FedRequest::Returned(p.id));
                    self.remote.insert(
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
                    if self.remote.peek(&id).is_some_and(|r| r.via == conn) {
                        self.remote.remove(&id);
                        // This bridge's pages may hold it as a candidate too.
                        self.reqs.push_back(FedRequest::Left(id));
                    }
                }
            }
            SignalMsg::Ping { nonce } => self.send(conn, SignalMsg::Pong { nonce }),
            SignalMsg::Pong { .. } => {}
            SignalMsg::Federate { to, inner } => match SignalMsg::decode_frame(&inner) {
                Ok(inner) => {
                    let from = BridgeConn {
                        id: bridge_id,
                        addr: bridge_addr,
                    };
                    self.on_federate(now, local, conn, from, to, inner)
                }
                Err(e) => self.reject(
                    conn,
                    codes::MALFORMED,
                    format!("malformed federated frame: {e}"),
                ),
            },
            SignalMsg::Unrecognized { cmd, .. } => self.reject(
                conn,
                codes::PROTOCOL,
                format!("unknown bridge command 0x{cmd:02x}"),
            ),
            _ => self.reject(
                conn,
                codes::PROTOCOL,
                "a node-to-bridge message on a bridge connection",
            ),
        }
    }

    /// `Federate { to, inner }` from the bridge `bridge` on `conn`.
    fn on_federate(
        &mut self,
        now: Time,
        local: &Local,
        conn: ConnId,
        bridge: BridgeConn,
        to: NodeId,
        inner: SignalMsg,
    ) {
        let BridgeConn {
            id: bridge_id,
            addr: bridge_addr,
        } = bridge;
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
            && !local.contains_key(&source)
            && !self.remote.contains_key(&source)
            && self.remote.len() < self.max_remote
        {
            if let SignalMsg::KadFrom { pubkey, .. } = &inner {
                if node_id(pubkey) == source {
                    self.remote.insert(
                        source,
                        Remote {
                            pubkey: *pubkey,
                            via: conn,
                        },
                    );
                }
            }
        }
        if to == self.me.id {
            let SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } = inner
            else {
                self.dropped(format!(
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
            if let Some(kad) = self.kad.as_mut() {
                kad.handle_message(now, &from, &bytes);
            }
            self.flush(now, local);
            return;
        }
        let Some(target) = local.get(&to).copied() else {
            self.dropped(format!(
                "dropping a federated frame for {}: not registered here",
                to.short()
            ));
            return;
        };
        let deliver = match inner {
            // Probed like a local introduction; a suspect target fails it at once.
            SignalMsg::Introduce { peer, session, sdp } => {
                self.reqs.push_back(FedRequest::Introduce {
                    target,
                    to,
                    from: peer,
                    session,
                    sdp,
                });
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
        self.send(target, deliver);
    }

    /// The peer `from` (key `pubkey`) registered here sent `KadTo { peer, bytes }`.
    pub fn kad_from_node(
        &mut self,
        now: Time,
        local: &Local,
        from: NodeId,
        pubkey: PublicKeyBytes,
        peer: NodeId,
        bytes: KadBytes,
    ) {
        if peer == self.me.id {
            let c = Contact {
                id: from,
                pubkey,
                bridge: Some(self.me.addr.clone()),
                introducers: Default::default(),
            };
            if let Some(kad) = self.kad.as_mut() {
                kad.handle_message(now, &c, &bytes);
            }
            self.flush(now, local);
            return;
        }
        if peer == from {
            return;
        }
        if let Some(target) = local.get(&peer).copied() {
            self.send(
                target,
                SignalMsg::KadFrom {
                    peer: from,
                    pubkey,
                    bridge: None,
                    bytes,
                },
            );
            return;
        }
        if self.knows(&peer) {
            let inner = SignalMsg::KadFrom {
                peer: from,
                pubkey,
                bridge: Some(self.me.addr.clone()),
                bytes,
            };
            self.forward(&peer, &inner);
        } else {
            self.dropped(format!(
                "dropping a DHT frame from {} for {}: no route to that node",
                from.short(),
                peer.short()
            ));
        }
    }

    /// True if `peer` is a federated bridge or registered at one.
    pub fn knows(&self, peer: &NodeId) -> bool {
        // (`contains_key` does not refresh the entry; forwarding through it does.)
        self.bridges.contains_key(peer) || self.remote.contains_key(peer)
    }

    /// Send `inner` to `to` through the federated bridge that has it.
    pub fn forward(&mut self, to: &NodeId, inner: &SignalMsg) {
        let via = self
            .bridges
            .get(to)
            .copied()
            .or_else(|| self.remote.get_mut(to).map(|r| r.via));
        let Some(via) = via else {
            return;
        };
        // Every message forwarded here (a KadFrom, an introduction) is far under MAX_INNER;
        // one that is not is refused, never cut.
        match InnerFrame::new(inner.encode_frame()) {
            Ok(inner) => self.send(via, SignalMsg::Federate { to: *to, inner }),
            Err(e) => self.dropped(format!(
                "dropping a frame for {}: it does not fit a Federate ({e})",
                to.short()
            )),
        }
    }

    /// Up to `n` remote peers closest to `target`, tagged with their bridge's address.
    pub fn remote_records(&self, target: &NodeId, n: usize) -> Vec<PeerRecord> {
        let mut best: Vec<(&NodeId, &Remote)> = self.remote.iter().collect();
        if best.len() > n {
            best.select_nth_unstable_by_key(n, |(id, _)| id.distance(target));
            best.truncate(n);
        }
        best.into_iter()
            .filter_map(|(id, r)| {
                let addr = self.conns.get(&r.via)?.addr.clone();
                Some(PeerRecord {
                    id: *id,
                    pubkey: r.pubkey,
                    bridge: Some(addr),
                })
            })
            .collect()
    }

    /// `id` registered here (or answers again): tell the federated bridges at once.
    pub fn peer_joined(&mut self, id: NodeId, pubkey: PublicKeyBytes) {
        let conns: Vec<ConnId> = self.bridges.values().copied().collect();
        for c in conns {
            self.send(
                c,
                SignalMsg::PeersJoined {
                    peers: SyncPeers::one(PeerRecord {
                        id,
                        pubkey,
                        bridge: None,
                    }),
                },
            );
        }
    }

    /// The timer fired.
    pub fn timeout(&mut self, now: Time, local: &Local) {
        if let Some(kad) = self.kad.as_mut() {
            if kad.poll_timeout().is_some_and(|t| t <= now) {
                kad.handle_timeout(now);
            }
        }
        self.flush(now, local);
    }

    /// Carry out what the bridge's DHT node asked for.
    fn flush(&mut self, now: Time, local: &Local) {
        loop {
            let Some(out) = self.kad.as_mut().and_then(|k| k.poll_output()) else {
                return;
            };
            match out {
                KadOutput::Send { to, bytes } => {
                    // The DHT encodes frames of at most MAX_KAD_FRAME; one that is not is a
                    // bug, refused (as a failed send), never cut.
                    let Ok(bytes) = KadBytes::new(bytes) else {
                        self.dropped(format!(
                            "dropping an oversized DHT frame for {}",
                            to.id.short()
                        ));
                        if let Some(kad) = self.kad.as_mut() {
                            kad.handle_send_failed(now, &to.id);
                        }
                        continue;
                    };
                    let msg = SignalMsg::KadFrom {
                        peer: self.me.id,
                        pubkey: self.me.pubkey,
                        bridge: None,
                        bytes,
                    };
                    if let Some(conn) = local.get(&to.id).copied() {
                        self.send(conn, msg);
                    } else if self.knows(&to.id) {
                        self.forward(&to.id, &msg);
                    } else if let Some(kad) = self.kad.as_mut() {
                        kad.handle_send_failed(now, &to.id);
                    }
                }
                KadOutput::Event(KadEvent::Rejected { from, reason }) => {
                    self.dropped(format!(
                        "DHT: refused a message from {}: {reason}",
                        from.short()
                    ));
                }
                KadOutput::Event(_) => {}
            }
        }
    }
}

//! One circuit through this router: its two sides, its crypto and (at the last hop) its streams.

use crate::crypto::RouterCrypto;
use crate::stream::Endpoint;
use onionmesh_bounded::FlatMap;
use onionmesh_wire::cell::{CircId, Extend2Hdata};
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;

/// Which side of a circuit a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Towards the proxy.
    Prev,
    /// Away from the proxy.
    Next,
}

/// Which neighbours hear a DESTROY when a circuit closes here. The side a DESTROY or a link
/// close came from is not told again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestroyTo {
    Both,
    /// Only the previous hop (the next one is gone or sent the DESTROY).
    Prev,
    /// Only the next hop (the previous one is gone or sent the DESTROY).
    Next,
}

impl DestroyTo {
    pub(crate) fn prev(self) -> bool {
        matches!(self, DestroyTo::Both | DestroyTo::Prev)
    }
    pub(crate) fn next(self) -> bool {
        matches!(self, DestroyTo::Both | DestroyTo::Next)
    }
}

/// The far side of a circuit at this router.
#[derive(Debug)]
pub(crate) enum Next {
    /// We are the last hop.
    None,
    /// EXTEND2 accepted, waiting for the driver to open a link to `target`.
    WaitingLink {
        target: NodeId,
        hdata: Extend2Hdata,
        since: Time,
    },
    /// CREATE2 sent to `peer`, waiting for CREATED2.
    Creating {
        peer: NodeId,
        id: CircId,
        since: Time,
    },
    Open {
        peer: NodeId,
        id: CircId,
    },
}

impl Next {
    /// An extension in progress (counts against `max_pending_extends`).
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self, Next::WaitingLink { .. } | Next::Creating { .. })
    }
}

#[derive(Debug)]
pub(crate) struct Circuit {
    pub(crate) prev: NodeId,
    pub(crate) prev_id: CircId,
    pub(crate) next: Next,
    pub(crate) crypto: RouterCrypto,
    pub(crate) relay_early_in: u8,
    pub(crate) endpoint: Endpoint,
    pub(crate) last_activity: Time,
    pub(crate) cells_in: u64,
    pub(crate) cells_out: u64,
}

impl Circuit {
    pub(crate) fn next_link(&self) -> Option<(NodeId, CircId)> {
        match self.next {
            Next::Creating { peer, id, .. } | Next::Open { peer, id } => Some((peer, id)),
            _ => None,
        }
    }

    pub(crate) fn is_last(&self) -> bool {
        matches!(self.next, Next::None)
    }
}

/// Which circuit and side a (link, circuit id) pair belongs to. Two levels, links first: a
/// lookup compares a 20-byte node ID against the few links, then 2-byte ids, instead of
/// comparing `(NodeId, CircId)` pairs across every circuit, and a closed link's circuits are
/// one removal away.
#[derive(Debug, Default)]
pub(crate) struct ByLink {
    links: FlatMap<NodeId, FlatMap<CircId, (u64, Side)>>,
}

impl ByLink {
    pub(crate) fn get(&self, peer: &NodeId, id: CircId) -> Option<(u64, Side)> {
        self.links.get(peer)?.get(&id).copied()
    }

    pub(crate) fn contains(&self, peer: &NodeId, id: CircId) -> bool {
        self.links.get(peer).is_some_and(|l| l.contains_key(&id))
    }

    pub(crate) fn insert(&mut self, peer: NodeId, id: CircId, v: (u64, Side)) {
        self.links.entry(peer).or_default().insert(id, v);
    }

    pub(crate) fn remove(&mut self, peer: &NodeId, id: CircId) {
        if let Some(l) = self.links.get_mut(peer) {
            l.remove(&id);
            if l.is_empty() {
                self.links.remove(peer);
            }
        }
    }

    /// Every circuit on `peer`'s link, in circuit id order.
    pub(crate) fn on_link(&self, peer: &NodeId) -> Vec<(u64, Side)> {
        self.links
            .get(peer)
            .map(|l| l.values().copied().collect())
            .unwrap_or_default()
    }
}

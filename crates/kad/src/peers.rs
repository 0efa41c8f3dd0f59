//! The node layer's side of "reaching nodes": a capped set of linked peers and the choice of a
//! route for each [`Output::Send`](crate::Output::Send).
//!
//! A browser keeps few WebRTC links open (about 32: each costs a DTLS association and memory),
//! while its routing table names a hundred nodes or more. So the DHT never demands a link per
//! contact; the node layer routes each frame:
//!
//! 1. over the link to the contact, if one is open;
//! 2. else through the first of the contact's introducers we are linked to, which relays it
//!    (the spec's `[IDx]`: "peers that can perform the introduction to N without requesting the
//!    bridges");
//! 3. else through the contact's bridge (an `INTRODUCE`, which may open a new link; at the cap
//!    the least recently used link is closed first, see [`ConnectedPeers::on_linked`]);
//! 4. else it is unreachable: the node layer calls
//!    [`Kad::handle_send_failed`](crate::Kad::handle_send_failed) at once.
//!
//! This module only decides; the relay frame and the introduction belong to the node layer
//! (`crates/node`), which is where this plugs in: keep one `ConnectedPeers`, call `on_linked` /
//! `on_closed` / `touch` as links open, close and carry traffic, and `route` for every `Send`.

use crate::Time;
use onionmesh_wire::kad::Contact;
use onionmesh_wire::NodeId;
use std::collections::BTreeMap;

/// Default cap on open links.
pub const DEFAULT_MAX_LINKS: usize = 32;

/// How to deliver a frame to a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send on the open link to this peer (the contact itself).
    Link(NodeId),
    /// Ask this linked peer to relay the frame to the contact.
    Introducer(NodeId),
    /// Ask this bridge to introduce us to the contact, then send on the new link.
    Bridge(String),
    /// No way to reach it now.
    Unreachable,
}

/// The peers we hold a link to, at most `cap`, with their last use. See the module docs.
#[derive(Debug, Clone)]
pub struct ConnectedPeers {
    cap: usize,
    linked: BTreeMap<NodeId, Time>,
}

impl Default for ConnectedPeers {
    fn default() -> Self {
        ConnectedPeers::new(DEFAULT_MAX_LINKS)
    }
}

impl ConnectedPeers {
    pub fn new(cap: usize) -> ConnectedPeers {
        ConnectedPeers {
            cap: cap.max(1),
            linked: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.linked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linked.is_empty()
    }

    pub fn is_linked(&self, id: &NodeId) -> bool {
        self.linked.contains_key(id)
    }

    /// True while another link may open without closing one.
    pub fn has_room(&self) -> bool {
        self.linked.len() < self.cap
    }

    /// A link to `id` is open. If that exceeds the cap, returns the least recently used other
    /// peer, which the caller should disconnect (it is already forgotten here).
    pub fn on_linked(&mut self, now: Time, id: NodeId) -> Option<NodeId> {
        self.linked.insert(id, now);
        if self.linked.len() <= self.cap {
            return None;
        }
        let victim = self
            .linked
            .iter()
            .filter(|(p, _)| **p != id)
            .min_by_key(|(_, t)| **t)
            .map(|(p, _)| *p)?;
        self.linked.remove(&victim);
        Some(victim)
    }

    pub fn on_closed(&mut self, id: &NodeId) {
        self.linked.remove(id);
    }

    /// Traffic went over the link to `id`.
    pub fn touch(&mut self, now: Time, id: &NodeId) {
        if let Some(t) = self.linked.get_mut(id) {
            *t = now;
        }
    }

    /// The route for a frame to `to`, in the order of the module docs.
    pub fn route(&self, to: &Contact) -> Route {
        if self.is_linked(&to.id) {
            return Route::Link(to.id);
        }
        if let Some(via) = to.introducers.iter().find(|i| self.is_linked(i)) {
            return Route::Introducer(*via);
        }
        if !to.bridge.is_empty() {
            return Route::Bridge(to.bridge.clone());
        }
        Route::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn routes_prefer_link_then_introducer_then_bridge() {
        let mut p = ConnectedPeers::new(4);
        let mut c = Contact {
            id: id(9),
            pubkey: [2; 33],
            bridge: String::new(),
            introducers: vec![id(1), id(2)],
        };
        assert_eq!(p.route(&c), Route::Unreachable);
        c.bridge = "wss://bridge".into();
        assert_eq!(p.route(&c), Route::Bridge("wss://bridge".into()));
        p.on_linked(Time::ZERO, id(2));
        assert_eq!(p.route(&c), Route::Introducer(id(2)));
        p.on_linked(Time::ZERO, id(1));
        assert_eq!(p.route(&c), Route::Introducer(id(1)), "first listed wins");
        p.on_linked(Time::ZERO, id(9));
        assert_eq!(p.route(&c), Route::Link(id(9)));
        p.on_closed(&id(9));
        assert_eq!(p.route(&c), Route::Introducer(id(1)));
    }

    #[test]
    fn the_cap_closes_the_least_recently_used() {
        let mut p = ConnectedPeers::new(2);
        assert_eq!(p.on_linked(Time::from_millis(1), id(1)), None);
        assert_eq!(p.on_linked(Time::from_millis(2), id(2)), None);
        assert!(!p.has_room());
        p.touch(Time::from_millis(3), &id(1));
        assert_eq!(p.on_linked(Time::from_millis(4), id(3)), Some(id(2)));
        assert_eq!(p.len(), 2);
        assert!(p.is_linked(&id(1)) && p.is_linked(&id(3)));
    }
}

//! One circuit built by this proxy.

use crate::crypto::ProxyCrypto;
use crate::handshake::ClientHandshake;
use crate::path::HopSpec;
use crate::stream::Endpoint;
use onionmesh_wire::cell::CircId;
use onionmesh_wire::NodeId;
use onionmesh_wire::Time;

/// Whether closing a circuit sends DESTROY to its first hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Teardown {
    /// Tell the first hop.
    SendDestroy,
    /// The first hop already knows (it sent DESTROY, or its link closed).
    Silently,
}

#[derive(Debug)]
pub(crate) struct Circuit {
    /// The first hop.
    pub(crate) peer: NodeId,
    pub(crate) id: CircId,
    pub(crate) path: Vec<HopSpec>,
    pub(crate) crypto: ProxyCrypto,
    pub(crate) pending: Option<ClientHandshake>,
    pub(crate) relay_early_sent: u8,
    pub(crate) endpoint: Endpoint,
    /// Streams were opened on it: no more extending.
    pub(crate) used: bool,
    pub(crate) built: bool,
    pub(crate) next_stream: u16,
    pub(crate) build_started: Time,
    pub(crate) last_activity: Time,
    pub(crate) cells_in: u64,
    pub(crate) cells_out: u64,
}

impl Circuit {
    /// A circuit about to send CREATE2 to `path[0]` on circuit id `id`.
    pub(crate) fn new(now: Time, id: CircId, path: &[HopSpec], hs: ClientHandshake) -> Circuit {
        Circuit {
            peer: path[0].id,
            id,
            path: path.to_vec(),
            crypto: ProxyCrypto::new(),
            pending: Some(hs),
            relay_early_sent: 0,
            endpoint: Endpoint::default(),
            used: false,
            built: false,
            next_stream: 1,
            build_started: now,
            last_activity: now,
            cells_in: 0,
            cells_out: 0,
        }
    }

    pub(crate) fn last_hop(&self) -> usize {
        self.crypto.len().saturating_sub(1)
    }
}

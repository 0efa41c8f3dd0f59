//! What the state machines hand back to their driver, and what they show the page.

use crate::error::ProtocolError;
use onionmesh_wire::cell::Cell;
use onionmesh_wire::NodeId;

/// One action for the driver, from [`crate::OnionProxy::poll_output`] or
/// [`crate::OnionRouter::poll_output`].
// Nearly every output is a cell: boxing it would cost an allocation per cell to save space
// in the rare other variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<E> {
    /// Send this cell on the link to `peer` (as `LinkMsg::Cell`).
    Cell { peer: NodeId, cell: Cell },
    /// Open a link to `peer` (through an introducer), then report `link_opened` or
    /// `link_failed`. Only the router asks for links.
    NeedLink { peer: NodeId },
    /// `peer` sent link-level garbage: close the link, then report `link_closed`.
    CloseLink { peer: NodeId, reason: ProtocolError },
    /// Something for the application.
    Event(E),
}

/// Where one of our circuits (or one we relay) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Ours: hops are being added.
    Building,
    /// Ours: every hop answered.
    Built,
    /// Relayed: open.
    Open,
    /// Ours: the first hop answered, later ones are being added. Relayed: extending to the
    /// next hop.
    Extending,
    /// Relayed: waiting for a link to the next hop.
    WaitingForLink,
}

/// A circuit as [`crate::OnionProxy::circuits`] or [`crate::OnionRouter::circuits`] lists it
/// (typed: the driver that shows it chooses the words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitView {
    /// The proxy's circuit handle, or the router's circuit key.
    pub id: u64,
    /// The path for the proxy; `[previous, next]` (or just `[previous]`) for a router.
    pub hops: Vec<NodeId>,
    /// Proxy: `Building`, `Extending` or `Built`; router: `Open`, `Extending` or
    /// `WaitingForLink`.
    pub state: CircuitState,
    /// Relay payload bytes sent / received by this end (DATA only).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Cells in and out of this circuit at this node.
    pub cells_in: u64,
    pub cells_out: u64,
    pub streams: usize,
    /// Circuit-level windows at this end (0 for a middle router).
    pub package_window: u32,
    pub deliver_window: u32,
    /// DATA cells sent and not yet acknowledged by a SENDME.
    pub in_flight: u32,
}

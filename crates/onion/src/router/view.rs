//! Circuits through this router as the page shows them.

use super::circuit::{Circuit, Next};
use crate::flow::CIRC_WINDOW_START;
use crate::output::CircuitView;

pub(crate) fn view(key: u64, c: &Circuit) -> CircuitView {
    let mut hops = vec![c.prev.short()];
    let state = match &c.next {
        Next::None => "open",
        Next::WaitingLink { target, .. } => {
            hops.push(target.short());
            "waiting for link"
        }
        Next::Creating { peer, .. } => {
            hops.push(peer.short());
            "extending"
        }
        Next::Open { peer, .. } => {
            hops.push(peer.short());
            "open"
        }
    };
    CircuitView {
        id: key,
        hops,
        state,
        bytes_sent: c.endpoint.streams.values().map(|s| s.bytes_out).sum(),
        bytes_received: c.endpoint.streams.values().map(|s| s.bytes_in).sum(),
        cells_in: c.cells_in,
        cells_out: c.cells_out,
        streams: c.endpoint.streams.len(),
        package_window: c.endpoint.flow.package_window(),
        deliver_window: c.endpoint.flow.deliver_window(),
        in_flight: CIRC_WINDOW_START - c.endpoint.flow.package_window(),
    }
}

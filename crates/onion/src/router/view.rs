//! Circuits through this router, as a typed view.

use super::circuit::{Circuit, Next};
use crate::flow::CIRC_WINDOW_START;
use crate::output::{CircuitState, CircuitView};

pub(crate) fn view(key: u64, c: &Circuit) -> CircuitView {
    let mut hops = vec![c.prev];
    let state = match &c.next {
        Next::None => CircuitState::Open,
        Next::WaitingLink { target, .. } => {
            hops.push(*target);
            CircuitState::WaitingForLink
        }
        Next::Creating { peer, .. } => {
            hops.push(*peer);
            CircuitState::Extending
        }
        Next::Open { peer, .. } => {
            hops.push(*peer);
            CircuitState::Open
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

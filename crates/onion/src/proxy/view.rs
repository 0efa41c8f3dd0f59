//! The proxy's circuits, as a typed view.

use super::circuit::Circuit;
use crate::flow::CIRC_WINDOW_START;
use crate::output::{CircuitState, CircuitView};

pub(crate) fn view(key: u64, c: &Circuit) -> CircuitView {
    CircuitView {
        id: key,
        hops: c.path.iter().map(|h| h.id).collect(),
        state: match (c.built, c.crypto.len()) {
            (true, _) => CircuitState::Built,
            (false, 0) => CircuitState::Building,
            (false, _) => CircuitState::Extending,
        },
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

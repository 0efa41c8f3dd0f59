//! A router's caps and timers.

use crate::flow::CIRC_WINDOW_START;
use std::time::Duration;

/// A router's caps and timers. Past a cap it answers DESTROY(RESOURCELIMIT) and carries on.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub max_circuits: usize,
    /// Circuits one link may have created through us.
    pub max_circuits_per_link: usize,
    /// CREATE2 token bucket per link: burst size and refill per second.
    pub create_burst: u32,
    pub create_per_sec: u32,
    /// A circuit with no cell either way for this long is destroyed.
    pub idle_timeout: Duration,
    /// From EXTEND2 to CREATED2 (including waiting for a link).
    pub extend_timeout: Duration,
    /// Circuits waiting for a link or a CREATED2 at once.
    pub max_pending_extends: usize,
    pub max_streams_per_circuit: usize,
    pub max_services: usize,
    pub link_queue_cap: usize,
    /// Cells one circuit may have queued (both directions). Honest ends never exceed two
    /// windows; beyond, the circuit is ignoring flow control.
    pub circuit_queue_cap: usize,
    /// Service data is only packaged while the link back is shorter than this.
    pub link_high_water: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_circuits: 1024,
            max_circuits_per_link: 128,
            create_burst: 16,
            create_per_sec: 4,
            idle_timeout: Duration::from_secs(300),
            extend_timeout: Duration::from_secs(30),
            max_pending_extends: 64,
            max_streams_per_circuit: 32,
            max_services: 16,
            link_queue_cap: 8192,
            circuit_queue_cap: 2 * CIRC_WINDOW_START as usize + 500,
            link_high_water: 64,
        }
    }
}

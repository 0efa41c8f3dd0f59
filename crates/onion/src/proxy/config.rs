//! Tunables of a proxy.

use std::time::Duration;

/// Tunables of a proxy. The defaults suit a browser page.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub max_circuits: usize,
    pub max_streams_per_circuit: usize,
    /// From CREATE2 (or an extend) to the last hop's answer.
    pub build_timeout: Duration,
    /// A built circuit without streams and without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Cells the proxy may queue per link before refusing more.
    pub link_queue_cap: usize,
    /// Local data is only packaged while the first hop's queue is shorter than this.
    pub link_high_water: usize,
    /// Paths an automatic build tries before it fails (1 = no retry).
    pub build_attempts: usize,
    /// An automatic build starts no new attempt this long after it was asked for.
    pub build_deadline: Duration,
    /// A hop that failed (an extension, a handshake, a timeout) or whose link closed is left
    /// out of automatic paths for this long.
    pub failed_hop_memory: Duration,
    /// Failed hops remembered at most (the oldest are forgotten first).
    pub failed_hop_capacity: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_circuits: 64,
            max_streams_per_circuit: 32,
            build_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(600),
            link_queue_cap: 4096,
            link_high_water: 64,
            build_attempts: 3,
            build_deadline: Duration::from_secs(60),
            failed_hop_memory: Duration::from_secs(120),
            failed_hop_capacity: 256,
        }
    }
}

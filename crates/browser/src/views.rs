//! Presentation: the core's typed views and states as the page sees them (hex IDs, camelCase
//! fields, lower-case state words). The core (`onionmesh_node`) stays typed; this leaf module is
//! the only place that turns its types into strings.

use onionmesh_node::{
    BridgeState, CircuitInfo, CircuitState, DhtLookupKind, DhtStats, LinkState, LogLevel, PeerView,
    Time,
};
use serde::Serialize;

/// `"connecting"`, `"registering"`, `"registered"`, `"reconnecting"` or `"disconnected"`.
pub fn bridge_state(s: &BridgeState) -> &'static str {
    match s {
        BridgeState::Connecting => "connecting",
        BridgeState::Registering => "registering",
        BridgeState::Registered => "registered",
        BridgeState::Reconnecting { .. } => "reconnecting",
        BridgeState::Disconnected => "disconnected",
    }
}

/// `"offering"`, `"introducing"`, ..., `"linked"`, `"closed"` or `"refused"`.
pub fn link_state(s: LinkState) -> &'static str {
    s.as_words()
}

pub fn circuit_state(s: CircuitState) -> &'static str {
    match s {
        CircuitState::Building => "building",
        CircuitState::Built => "built",
        CircuitState::Open => "open",
        CircuitState::Extending => "extending",
        CircuitState::WaitingForLink => "waiting for link",
    }
}

pub fn lookup_kind(k: DhtLookupKind) -> &'static str {
    match k {
        DhtLookupKind::FindNode => "find-node",
        DhtLookupKind::FindValue => "find-value",
        DhtLookupKind::Publish => "publish",
        DhtLookupKind::Bootstrap => "bootstrap",
        DhtLookupKind::Refresh => "refresh",
    }
}

pub fn log_level(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
    }
}

/// When a reconnection attempt is due, as wall-clock milliseconds since 1970 (what a page can
/// format), from the core's monotonic `next_attempt`, the driver's `now` and the wall clock.
pub fn wall_clock_of(next_attempt: Time, now: Time, unix_ms_now: u64) -> u64 {
    unix_ms_now.saturating_add(next_attempt.since(now))
}

/// One entry of `Node.peers()`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// 40 hex characters.
    pub id: String,
    /// The first 8 hex characters of `id`.
    pub short_id: String,
    pub state: &'static str,
    pub initiator: bool,
    pub since_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<&PeerView> for PeerInfo {
    fn from(p: &PeerView) -> PeerInfo {
        PeerInfo {
            id: p.id.to_hex(),
            short_id: p.id.short(),
            state: link_state(p.state),
            initiator: p.initiator,
            since_ms: p.since_ms,
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
        }
    }
}

/// One entry of `Node.circuits()` / `Node.relayedCircuits()`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitView {
    pub id: u64,
    pub hops: Vec<String>,
    pub state: &'static str,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub cells_in: u64,
    pub cells_out: u64,
    pub streams: usize,
}

impl From<&CircuitInfo> for CircuitView {
    fn from(c: &CircuitInfo) -> CircuitView {
        CircuitView {
            id: c.id,
            hops: c.hops.iter().map(|h| h.short()).collect(),
            state: circuit_state(c.state),
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            cells_in: c.cells_in,
            cells_out: c.cells_out,
            streams: c.streams,
        }
    }
}

/// `Node.dhtStats()`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DhtStatsView {
    pub bootstrapped: bool,
    pub table_size: usize,
    pub running_lookups: usize,
    pub lookups_done: u64,
    pub stored_keys: usize,
    pub published_keys: usize,
    pub sent_direct: u64,
    pub sent_via_introducer: u64,
    pub sent_via_bridge: u64,
    pub unroutable: u64,
    pub relayed: u64,
    pub relay_refused: u64,
    pub rejected: u64,
    pub far_answers: u32,
    /// Our bridge's address, or `""` until it told us.
    pub bridge: String,
}

impl From<&DhtStats> for DhtStatsView {
    fn from(s: &DhtStats) -> DhtStatsView {
        DhtStatsView {
            bootstrapped: s.bootstrapped,
            table_size: s.table_size,
            running_lookups: s.running_lookups,
            lookups_done: s.lookups_done,
            stored_keys: s.stored_keys,
            published_keys: s.published_keys,
            sent_direct: s.sent_direct,
            sent_via_introducer: s.sent_via_introducer,
            sent_via_bridge: s.sent_via_bridge,
            unroutable: s.unroutable,
            relayed: s.relayed,
            relay_refused: s.relay_refused,
            rejected: s.rejected,
            far_answers: s.far_answers,
            bridge: s.bridge.clone().unwrap_or_default(),
        }
    }
}

/// A content's kind as the page names it (`metadata().kind`, the `metadata` event's `kind`).
pub fn content_kind(kind: onionmesh_wire::db::DescriptorKind) -> &'static str {
    use onionmesh_wire::db::DescriptorKind;
    match kind {
        DescriptorKind::BITTORRENT_V1_INFO => "bittorrent",
        DescriptorKind::WEB_V1 => "web",
        _ => "onionmesh",
    }
}

/// Where a content's bytes come from (`progress().source`): "bittorrent" or "web" when a
/// facilitator fetched them from outside the mesh (its ORDB said so on the stream; see
/// `onionmesh_ordb::Progress::facilitated`), else "mesh", whatever the content's kind: a torrent
/// that pages of the mesh already hold comes from the mesh.
pub fn content_source(kind: onionmesh_wire::db::DescriptorKind, facilitated: bool) -> &'static str {
    use onionmesh_wire::db::DescriptorKind;
    match kind {
        DescriptorKind::BITTORRENT_V1_INFO if facilitated => "bittorrent",
        DescriptorKind::WEB_V1 if facilitated => "web",
        _ => "mesh",
    }
}

//! The bridge's rendezvous: registers peers by their signed hello, answers `FindPeer` with the
//! closest registered peers, and relays WebRTC introductions between them.
//!
//! It is sans-IO like [`crate::Node`]: the tokio bridge (and the simulator) feed it connection
//! events and frames and carry out its [`RendezvousOutput`]s. A connection that sends a malformed
//! or unexpected frame, sends too fast, or never says hello is closed with a reason; nothing one
//! connection does can affect another beyond the documented limits.

use crate::Time;
use onionmesh_crypto::{hello, Identity};
use onionmesh_wire::signal::MAX_PEERS_PER_ANSWER;
use onionmesh_wire::{Frame, NodeId, PeerRecord, PublicKeyBytes, SignalMsg};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A connection handle chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Most registered peers; further hellos are refused.
    pub max_peers: usize,
    /// Sustained frames per second per connection, and the burst above it.
    pub frames_per_sec: u32,
    pub burst: u32,
    /// How far a hello's timestamp may be from the bridge's clock.
    pub max_clock_skew: Duration,
    /// A connection must say hello within this time.
    pub hello_timeout: Duration,
    /// How many peers one `FoundPeer` names.
    pub peers_per_answer: usize,
    /// The address other bridges and the DHT know this bridge by (`ws://host:port/ws`); sent to
    /// each node in `BridgeInfo` and to federated bridges in `BridgeHello`.
    pub addr: String,
    /// Most peers registered at federated bridges that this bridge remembers.
    pub max_remote_peers: usize,
    /// Federated bridge connections may send this many times the per-peer frame rate.
    pub bridge_rate_factor: u32,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        RendezvousConfig {
            max_peers: 10_000,
            frames_per_sec: 50,
            burst: 200,
            max_clock_skew: Duration::from_secs(300),
            hello_timeout: Duration::from_secs(10),
            peers_per_answer: 8,
            addr: "bridge".into(),
            max_remote_peers: 50_000,
            bridge_rate_factor: 20,
        }
    }
}

/// Error codes sent in `SignalMsg::Error` before a close. Stable: the page shows them.
pub mod codes {
    pub const MALFORMED: u16 = 1;
    pub const RATE_LIMITED: u16 = 2;
    pub const BAD_HELLO: u16 = 3;
    pub const HELLO_TIMEOUT: u16 = 4;
    pub const PROTOCOL: u16 = 5;
    pub const FULL: u16 = 6;
    pub const DUPLICATE_ID: u16 = 7;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousOutput {
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// Close `conn`; `reason` is for the log.
    Close {
        conn: ConnId,
        reason: String,
    },
    /// A peer registered (for the log).
    Registered {
        conn: ConnId,
        id: NodeId,
    },
    /// A federated bridge said hello on `conn` (for the log).
    Federated {
        conn: ConnId,
        id: NodeId,
        addr: String,
    },
    /// Something worth a line in the log; `warn` for misbehaviour.
    Log {
        warn: bool,
        text: String,
    },
}

#[derive(Debug)]
pub(crate) enum ConnState {
    AwaitingHello {
        deadline: Time,
    },
    Registered {
        id: NodeId,
        pubkey: PublicKeyBytes,
    },
    /// A federated bridge (see `crate::federation`).
    Bridge {
        id: NodeId,
        addr: String,
    },
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) state: ConnState,
    /// Token bucket, in thousandths of a frame.
    tokens_milli: u64,
    refilled_at: Time,
}

/// The bridge's peer registry and introduction relay.
pub struct Rendezvous {
    pub(crate) identity: Identity,
    pub(crate) cfg: RendezvousConfig,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) by_id: BTreeMap<NodeId, ConnId>,
    pub(crate) out: VecDeque<RendezvousOutput>,
    pub(crate) fed: crate::federation::Federation,
}

impl Rendezvous {
    /// A rendezvous without a DHT node (see [`Rendezvous::with_dht`]).
    pub fn new(identity: Identity, cfg: RendezvousConfig) -> Self {
        Rendezvous {
            identity,
            cfg,
            conns: BTreeMap::new(),
            by_id: BTreeMap::new(),
            out: VecDeque::new(),
            fed: crate::federation::Federation::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    pub fn registered_peers(&self) -> usize {
        self.by_id.len()
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn poll_output(&mut self) -> Option<RendezvousOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.conns
            .values()
            .filter_map(|c| match c.state {
                ConnState::AwaitingHello { deadline } => Some(deadline),
                _ => None,
            })
            .chain(self.fed.kad.as_ref().and_then(|k| k.poll_timeout()))
            .min()
    }

    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                state: ConnState::AwaitingHello {
                    deadline: now + self.cfg.hello_timeout,
                },
                tokens_milli: u64::from(self.cfg.burst) * 1000,
                refilled_at: now,
            },
        );
    }

    /// The connection is gone (closed by either side). Forgets it.
    pub fn handle_closed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            match c.state {
                ConnState::Registered { id, .. } => {
                    if self.by_id.get(&id) == Some(&conn) {
                        self.by_id.remove(&id);
                        self.fed_peer_left(id);
                    }
                }
                ConnState::Bridge { .. } => self.fed_bridge_closed(conn),
                ConnState::AwaitingHello { .. } => {}
            }
        }
    }

    /// The transport refused a frame before it reached the core (too large, not binary, a
    /// broken WebSocket). Closes the connection with the reason.
    pub fn handle_transport_error(&mut self, conn: ConnId, reason: &str) {
        self.reject(conn, codes::MALFORMED, reason);
    }

    pub fn handle_timeout(&mut self, now: Time) {
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::AwaitingHello { deadline } if deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for conn in late {
            self.reject(conn, codes::HELLO_TIMEOUT, "no hello within the time limit");
        }
        self.fed_timeout(now);
    }

    /// One frame from `conn`. `unix_ms` is the bridge's wall clock, to check hello freshness.
    pub fn handle_frame(&mut self, now: Time, unix_ms: u64, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let factor = match c.state {
            ConnState::Bridge { .. } => self.cfg.bridge_rate_factor.max(1),
            _ => 1,
        };
        if !take_token(
            c,
            now,
            self.cfg.frames_per_sec.saturating_mul(factor),
            self.cfg.burst.saturating_mul(factor),
        ) {
            self.reject(
                conn,
                codes::RATE_LIMITED,
                "sending faster than the per-peer rate limit",
            );
            return;
        }
        let msg = match SignalMsg::decode_frame(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.reject(conn, codes::MALFORMED, &format!("malformed frame: {e}"));
                return;
            }
        };
        let registered = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Registered { id, .. }) => Some(*id),
            Some(ConnState::Bridge { .. }) => {
                self.fed_bridge_frame(now, conn, msg);
                return;
            }
            _ => None,
        };
        match (registered, msg) {
            (
                None,
                SignalMsg::BridgeHello {
                    pubkey,
                    timestamp_ms,
                    sig,
                    addr,
                },
            ) => self.fed_on_bridge_hello(now, unix_ms, conn, pubkey, timestamp_ms, sig, addr),
            (Some(from), SignalMsg::KadTo { peer, bytes }) => {
                self.fed_kad_from_node(now, conn, from, peer, bytes)
            }
            (
                None,
                SignalMsg::Hello {
                    pubkey,
                    timestamp_ms,
                    sig,
                },
            ) => self.on_hello(conn, unix_ms, pubkey, timestamp_ms, sig),
            (None, _) => self.reject(conn, codes::PROTOCOL, "the first frame must be a hello"),
            (Some(_), SignalMsg::FindPeer { id, .. }) => self.on_find_peer(conn, id),
            (Some(from), SignalMsg::Introduce { peer, session, sdp })
                if !self.by_id.contains_key(&peer) && self.fed_knows(&peer) =>
            {
                self.fed_forward(
                    &peer,
                    &SignalMsg::Introduce {
                        peer: from,
                        session,
                        sdp,
                    },
                )
            }
            (Some(from), SignalMsg::Introduced { peer, session, sdp })
                if !self.by_id.contains_key(&peer) && self.fed_knows(&peer) =>
            {
                self.fed_forward(
                    &peer,
                    &SignalMsg::Introduced {
                        peer: from,
                        session,
                        sdp,
                    },
                )
            }
            (
                Some(from),
                SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason,
                },
            ) if !self.by_id.contains_key(&peer) && self.fed_knows(&peer) => self.fed_forward(
                &peer,
                &SignalMsg::IntroduceFailed {
                    peer: from,
                    session,
                    reason,
                },
            ),
            (Some(from), SignalMsg::Introduce { peer, session, sdp }) => {
                match self.by_id.get(&peer).copied() {
                    Some(target) if peer != from => self.send(
                        target,
                        &SignalMsg::Introduce {
                            peer: from,
                            session,
                            sdp,
                        },
                    ),
                    _ => self.send(
                        conn,
                        &SignalMsg::IntroduceFailed {
                            peer,
                            session,
                            reason: "that peer is not connected to this bridge".into(),
                        },
                    ),
                }
            }
            (Some(from), SignalMsg::Introduced { peer, session, sdp }) => {
                if let Some(target) = self.by_id.get(&peer).copied() {
                    self.send(
                        target,
                        &SignalMsg::Introduced {
                            peer: from,
                            session,
                            sdp,
                        },
                    );
                }
            }
            (
                Some(from),
                SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason,
                },
            ) => {
                if let Some(target) = self.by_id.get(&peer).copied() {
                    self.send(
                        target,
                        &SignalMsg::IntroduceFailed {
                            peer: from,
                            session,
                            reason,
                        },
                    );
                }
            }
            (Some(_), SignalMsg::Unrecognized { cmd, .. }) => self.reject(
                conn,
                codes::PROTOCOL,
                &format!("unknown command 0x{cmd:02x}"),
            ),
            (Some(_), other) => {
                let name = match other {
                    SignalMsg::Hello { .. } => "a second hello",
                    _ => "a bridge-to-node message",
                };
                self.reject(conn, codes::PROTOCOL, &format!("unexpected {name}"))
            }
        }
    }

    fn on_hello(
        &mut self,
        conn: ConnId,
        unix_ms: u64,
        pubkey: PublicKeyBytes,
        timestamp_ms: u64,
        sig: onionmesh_wire::SignatureBytes,
    ) {
        let id = match hello::verify_hello(&pubkey, timestamp_ms, &sig) {
            Ok(id) => id,
            Err(e) => {
                self.reject(conn, codes::BAD_HELLO, &format!("bad hello signature: {e}"));
                return;
            }
        };
        let skew = unix_ms.abs_diff(timestamp_ms);
        if u128::from(skew) > self.cfg.max_clock_skew.as_millis() {
            self.reject(
                conn,
                codes::BAD_HELLO,
                &format!(
                    "hello timestamp is {} s away from the bridge's clock",
                    skew / 1000
                ),
            );
            return;
        }
        if self.by_id.contains_key(&id) {
            self.reject(conn, codes::DUPLICATE_ID, "that ID is already connected");
            return;
        }
        if self.by_id.len() >= self.cfg.max_peers {
            self.reject(conn, codes::FULL, "this bridge has no room for more peers");
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Registered { id, pubkey };
        }
        self.by_id.insert(id, conn);
        self.out
            .push_back(RendezvousOutput::Registered { conn, id });
        let peers_online = u32::try_from(self.by_id.len()).unwrap_or(u32::MAX);
        self.send(
            conn,
            &SignalMsg::Welcome {
                bridge_pubkey: self.identity.public_key(),
                peers_online,
            },
        );
        self.send(
            conn,
            &SignalMsg::BridgeInfo {
                addr: self.cfg.addr.clone(),
            },
        );
        self.fed_peer_joined(id, pubkey);
    }

    /// Peers registered at this bridge (but the one on `except`), as records with an empty
    /// bridge field ("this bridge").
    pub(crate) fn local_records(
        &self,
        except: Option<ConnId>,
    ) -> impl Iterator<Item = PeerRecord> + '_ {
        self.conns
            .iter()
            .filter(move |(c, _)| Some(**c) != except)
            .filter_map(|(_, c)| match c.state {
                ConnState::Registered { id, pubkey } => Some(PeerRecord {
                    id,
                    pubkey,
                    bridge: String::new(),
                }),
                _ => None,
            })
    }

    fn on_find_peer(&mut self, conn: ConnId, target: NodeId) {
        let n = self.cfg.peers_per_answer.min(MAX_PEERS_PER_ANSWER);
        // A linear scan is fine at the bridge's scale (max_peers plus max_remote_peers).
        let mut best: Vec<PeerRecord> = self.local_records(Some(conn)).collect();
        // Peers registered at federated bridges, each tagged with the bridge that introduces it.
        best.extend(self.fed_remote_records(&target, n));
        best.sort_by_key(|p| p.id.distance(&target));
        best.truncate(n);
        self.send(conn, &SignalMsg::FoundPeer { peers: best });
    }

    pub(crate) fn send(&mut self, conn: ConnId, msg: &SignalMsg) {
        self.out.push_back(RendezvousOutput::Send {
            conn,
            bytes: msg.encode_frame(),
        });
    }

    /// Tell the peer why, then close it and forget it.
    pub(crate) fn reject(&mut self, conn: ConnId, code: u16, reason: &str) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.send(
            conn,
            &SignalMsg::Error {
                code,
                reason: reason.to_owned(),
            },
        );
        self.out.push_back(RendezvousOutput::Close {
            conn,
            reason: reason.to_owned(),
        });
        self.handle_closed(conn);
    }
}

fn take_token(c: &mut Conn, now: Time, per_sec: u32, burst: u32) -> bool {
    let elapsed = now.since(c.refilled_at);
    c.refilled_at = now;
    let cap = u64::from(burst) * 1000;
    c.tokens_milli = (c.tokens_milli + elapsed.saturating_mul(u64::from(per_sec))).min(cap);
    if c.tokens_milli >= 1000 {
        c.tokens_milli -= 1000;
        true
    } else {
        false
    }
}

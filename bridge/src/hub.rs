//! The hub: the one task that owns the sans-IO [`Rendezvous`].
//!
//! Connection tasks send it [`ToHub`] events over one bounded channel; it feeds them to the
//! rendezvous, drains [`RendezvousOutput`]s and routes them to each connection's bounded
//! outbound queue with `try_send`. The hub never waits on a connection: a peer whose queue is
//! full reads too slowly and is dropped on the spot, so one slow peer cannot stall the others.
//!
//! Every close is logged here, once, because only the hub knows which peer ID a connection
//! registered: [`Closing`] formats the line.

use crate::facilitator::{FacilitatedTx, Facilitator};
use axum::body::Bytes;
use onionmesh_rendezvous::{ConnId, Rendezvous, RendezvousInput, RendezvousOutput, Time};
use onionmesh_wire::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

/// Frames waiting to be written to one peer. A full queue means the peer reads too slowly.
/// Each frame is at most `MAX_SIGNAL_FRAME` (32 KiB), so a peer holds at most 2 MiB here.
pub const OUTBOUND_QUEUE: usize = 64;

/// Events from all connections to the hub. Connection tasks wait when it is full, which pushes
/// back on their sockets rather than growing memory.
pub const HUB_QUEUE: usize = 1024;

/// What the hub tells one connection task.
#[derive(Debug)]
pub enum Outbound {
    /// Write this frame.
    Frame(Vec<u8>),
    /// Write a close frame and end: the rendezvous closed the connection for `reason`.
    Close { reason: String },
}

/// Why a connection ended without the hub asking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goodbye {
    /// The peer sent a close frame.
    PeerClosed,
    /// The TCP connection ended without a close frame.
    PeerVanished,
    /// The socket failed (reset, I/O error).
    Broken(String),
    /// The bridge is shutting down.
    Shutdown,
    /// The hub closed it (its `Close`, or dropped as a slow reader); already logged.
    ByHub,
}

/// What a connection task tells the hub.
#[derive(Debug)]
pub enum ToHub {
    /// A WebSocket is open. `out` is its bounded outbound queue; `facilitated` the queue for
    /// the facilitator's answers, which request tasks wait on; notifying `kill` makes the task
    /// drop the socket at once, even in the middle of a write.
    Connected {
        conn: ConnId,
        out: mpsc::Sender<Outbound>,
        facilitated: FacilitatedTx,
        kill: Arc<Notify>,
    },
    /// The federation dialer opened a WebSocket to a `--peer-bridge`; like `Connected`, and the
    /// rendezvous answers that bridge's challenge with a bridge hello.
    Dialed {
        conn: ConnId,
        out: mpsc::Sender<Outbound>,
        kill: Arc<Notify>,
    },
    /// One binary message, already checked against `--max-frame`.
    Frame { conn: ConnId, bytes: Bytes },
    /// The transport refused something before it reached the core (too large, a text frame, a
    /// WebSocket protocol violation).
    TransportError { conn: ConnId, reason: String },
    /// The task has ended.
    Closed { conn: ConnId, why: Goodbye },
}

struct ConnHandle {
    out: mpsc::Sender<Outbound>,
    /// `None` for a dialed bridge (the rendezvous never passes it Facilitate frames).
    facilitated: Option<FacilitatedTx>,
    kill: Arc<Notify>,
    peer: Option<NodeId>,
}

/// The log line for a close: `closing connection 7 (peer 1a2b3c4d): <reason>`.
pub struct Closing<'a> {
    pub conn: ConnId,
    pub peer: Option<NodeId>,
    pub reason: &'a str,
}

impl fmt::Display for Closing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "closing connection {}", self.conn.0)?;
        if let Some(id) = self.peer {
            write!(f, " (peer {})", id.short())?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The rendezvous plus the routing table to the connection tasks. Synchronous: the async part
/// is [`run`], so the routing rules can be tested without sockets.
pub struct Hub {
    rv: Rendezvous,
    /// Requests for content from outside the mesh (issue 10).
    facilitator: Facilitator,
    // Bounded by --max-connections: only a task holding a connection slot sends `Connected`.
    conns: BTreeMap<ConnId, ConnHandle>,
}

impl Hub {
    /// A hub that is neither facilitator nor web exit.
    #[cfg(test)]
    pub fn new(rv: Rendezvous) -> Self {
        Hub::with_facilitator(rv, Facilitator::disabled())
    }

    pub fn with_facilitator(rv: Rendezvous, facilitator: Facilitator) -> Self {
        Hub {
            rv,
            facilitator,
            conns: BTreeMap::new(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.rv.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.rv.handle_input(now, RendezvousInput::Timeout);
        self.flush(now);
    }

    /// One event from a connection task.
    pub fn handle(&mut self, now: Time, event: ToHub) {
        match event {
            ToHub::Connected {
                conn,
                out,
                facilitated,
                kill,
            } => {
                self.conns.insert(
                    conn,
                    ConnHandle {
                        out,
                        facilitated: Some(facilitated),
                        kill,
                        peer: None,
                    },
                );
                self.rv.handle_input(now, RendezvousInput::Opened(conn));
            }
            ToHub::Dialed { conn, out, kill } => {
                self.conns.insert(
                    conn,
                    ConnHandle {
                        out,
                        facilitated: None,
                        kill,
                        peer: None,
                    },
                );
                self.rv.handle_input(now, RendezvousInput::Dialed(conn));
            }
            ToHub::Frame { conn, bytes } => self.rv.handle_input(
                now,
                RendezvousInput::Frame {
                    conn,
                    bytes: &bytes,
                },
            ),
            ToHub::TransportError { conn, reason } => self.rv.handle_input(
                now,
                RendezvousInput::TransportError {
                    conn,
                    reason: &reason,
                },
            ),
            ToHub::Closed { conn, why } => {
                if let Some(h) = self.conns.remove(&conn) {
                    log_goodbye(conn, h.peer, &why);
                }
                self.facilitator.conn_closed(conn);
                self.rv.handle_input(now, RendezvousInput::Closed(conn));
            }
        }
        self.flush(now);
    }

    /// Carry out everything the rendezvous asked for, in order.
    fn flush(&mut self, now: Time) {
        while let Some(output) = self.rv.poll_output() {
            match output {
                RendezvousOutput::Send { conn, bytes } => {
                    let Some(h) = self.conns.get(&conn) else {
                        continue;
                    };
                    match h.out.try_send(Outbound::Frame(bytes)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => self.drop_slow_reader(now, conn),
                        // The task is already ending; its `Closed` event is on the way.
                        Err(TrySendError::Closed(_)) => {}
                    }
                }
                RendezvousOutput::Close { conn, reason } => {
                    // The rendezvous has already forgotten `conn` and queued an Error frame.
                    self.facilitator.conn_closed(conn);
                    let Some(h) = self.conns.remove(&conn) else {
                        continue;
                    };
                    warn!(
                        "{}",
                        Closing {
                            conn,
                            peer: h.peer,
                            reason: &reason
                        }
                    );
                    if let Err(TrySendError::Full(_)) = h.out.try_send(Outbound::Close { reason }) {
                        h.kill.notify_one();
                    }
                    // Dropping `h.out` lets the task see the end of its queue after the close.
                }
                RendezvousOutput::Federated { conn, id, addr } => {
                    if let Some(h) = self.conns.get_mut(&conn) {
                        h.peer = Some(id);
                    }
                    info!(
                        "federated with bridge {addr} (ID {id}) on connection {}; {} bridges federated",
                        conn.0,
                        self.rv.federated_bridges()
                    );
                }
                RendezvousOutput::Facilitate { conn, req, msg } => {
                    if let Some(out) = self.conns.get(&conn).and_then(|h| h.facilitated.as_ref()) {
                        self.facilitator.handle(conn, out, req, msg);
                    }
                }
                RendezvousOutput::FacilitateClose { conn, req } => {
                    self.facilitator.close(conn, req);
                }
                RendezvousOutput::Log { warn: true, text } => warn!("{text}"),
                RendezvousOutput::Log { warn: false, text } => info!("{text}"),
                RendezvousOutput::Registered { conn, id } => {
                    if let Some(h) = self.conns.get_mut(&conn) {
                        h.peer = Some(id);
                    }
                    info!(
                        "peer {} registered on connection {} ({} online; ID {id})",
                        id.short(),
                        conn.0,
                        self.rv.registered_peers()
                    );
                }
            }
        }
    }

    fn drop_slow_reader(&mut self, now: Time, conn: ConnId) {
        self.facilitator.conn_closed(conn);
        if let Some(h) = self.conns.remove(&conn) {
            warn!(
                "{}",
                Closing {
                    conn,
                    peer: h.peer,
                    reason: &format!(
                        "the peer reads too slowly: {OUTBOUND_QUEUE} frames are waiting for it"
                    ),
                }
            );
            h.kill.notify_one();
        }
        self.rv.handle_input(now, RendezvousInput::Closed(conn));
    }
}

fn log_goodbye(conn: ConnId, peer: Option<NodeId>, why: &Goodbye) {
    let line = |reason: &str| Closing { conn, peer, reason }.to_string();
    match why {
        Goodbye::PeerClosed => info!("{}", line("the peer said goodbye")),
        Goodbye::PeerVanished => info!("{}", line("the peer went away without a close frame")),
        Goodbye::Shutdown => info!("{}", line("the bridge is shutting down")),
        Goodbye::Broken(e) => warn!("{}", line(&format!("the connection broke: {e}"))),
        // The hub removed its handle when it decided; reaching here means a race, not a bug.
        Goodbye::ByHub => debug!("{}", line("closed by the bridge")),
    }
}

/// The bridge's monotonic clock: milliseconds since start, as the core's [`Time`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_millis(t.as_millis())
    }
}

/// Run the hub until every sender of `events` is gone (the server and all connections ended).
pub async fn run(mut hub: Hub, mut events: mpsc::Receiver<ToHub>, clock: Clock) {
    loop {
        let wake = hub.poll_timeout().map(|t| clock.instant(t));
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    hub.handle(clock.now(), event);
                    // Let the connection tasks we just queued frames for write them before the
                    // next event. Without this the hub could run a whole burst of events (tokio's
                    // budget is 128) and fill a queue whose peer reads perfectly well; with it, a
                    // full queue really means a socket that does not drain. (On the
                    // current-thread runtime every woken task runs before the hub again.)
                    tokio::task::yield_now().await;
                }
                None => break,
            },
            () = sleep_until_opt(wake) => hub.handle_timeout(clock.now()),
        }
    }
    debug!("hub stopped");
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionmesh_crypto::{hello, Identity};
    use onionmesh_rendezvous::RendezvousConfig;
    use onionmesh_wire::signal::ChallengeNonce;
    use onionmesh_wire::{Frame, SignalMsg};

    fn hub() -> Hub {
        let id = Identity::from_seed([9; 32]).unwrap();
        Hub::new(Rendezvous::new(id, RendezvousConfig::default(), [8; 32]))
    }

    /// Connects `conn`; returns its queue (the challenge already read), kill switch and
    /// challenge.
    fn connect(
        hub: &mut Hub,
        conn: u64,
        queue: usize,
    ) -> (mpsc::Receiver<Outbound>, Arc<Notify>, ChallengeNonce) {
        let (out, mut rx) = mpsc::channel(queue);
        let (facilitated, _) = mpsc::channel(1);
        let kill = Arc::new(Notify::new());
        hub.handle(
            Time::ZERO,
            ToHub::Connected {
                conn: ConnId(conn),
                out,
                facilitated,
                kill: kill.clone(),
            },
        );
        let Outbound::Frame(bytes) = next(&mut rx) else {
            panic!("expected the challenge")
        };
        let Ok(SignalMsg::Challenge { nonce }) = SignalMsg::decode_frame(&bytes) else {
            panic!("expected the challenge")
        };
        (rx, kill, nonce)
    }

    fn frame(hub: &mut Hub, conn: u64, msg: &SignalMsg) {
        hub.handle(
            Time::ZERO,
            ToHub::Frame {
                conn: ConnId(conn),
                bytes: msg.encode_frame().into(),
            },
        );
    }

    fn hello_msg(identity: &Identity, challenge: &ChallengeNonce) -> SignalMsg {
        SignalMsg::Hello {
            pubkey: identity.public_key(),
            challenge: *challenge,
            sig: hello::sign(identity, challenge),
        }
    }

    fn next(rx: &mut mpsc::Receiver<Outbound>) -> Outbound {
        rx.try_recv().expect("an outbound message")
    }

    #[test]
    fn close_line_format() {
        let peer = NodeId([
            0x1a, 0x2b, 0x3c, 0x4d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let with = Closing {
            conn: ConnId(7),
            peer: Some(peer),
            reason: "malformed frame: x",
        };
        assert_eq!(
            with.to_string(),
            "closing connection 7 (peer 1a2b3c4d): malformed frame: x"
        );
        let without = Closing {
            conn: ConnId(3),
            peer: None,
            reason: "r",
        };
        assert_eq!(without.to_string(), "closing connection 3: r");
    }

    #[tokio::test]
    async fn rejection_sends_error_then_close_and_forgets_the_connection() {
        let mut hub = hub();
        let (mut rx, _kill, _) = connect(&mut hub, 1, 8);
        let asker = Identity::from_seed([1; 32]).unwrap();
        frame(
            &mut hub,
            1,
            &SignalMsg::FindPeer {
                id: asker.id(),
                pubkey: asker.public_key(),
            },
        );
        let Outbound::Frame(bytes) = next(&mut rx) else {
            panic!("expected the Error frame first")
        };
        assert!(matches!(
            SignalMsg::decode_frame(&bytes),
            Ok(SignalMsg::Error { .. })
        ));
        assert!(matches!(next(&mut rx), Outbound::Close { reason } if reason.contains("hello")));
        // The hub dropped its sender: the task sees the end of the queue.
        assert!(rx.recv().await.is_none());
        assert!(hub.conns.is_empty());
        assert_eq!(hub.rv.connections(), 0);
    }

    #[tokio::test]
    async fn a_slow_reader_is_dropped_without_blocking() {
        let mut hub = hub();
        let slow = Identity::from_seed([1; 32]).unwrap();
        // Room for two frames: the Welcome and the BridgeInfo fill it, and nobody reads them.
        let (mut rx, kill, challenge) = connect(&mut hub, 1, 2);
        frame(&mut hub, 1, &hello_msg(&slow, &challenge));
        assert_eq!(hub.conns[&ConnId(1)].peer, Some(slow.id()));
        frame(
            &mut hub,
            1,
            &SignalMsg::FindPeer {
                id: slow.id(),
                pubkey: slow.public_key(),
            },
        );
        // The FoundPeer did not fit: the peer was dropped and its task told to stop.
        tokio::time::timeout(Duration::from_secs(1), kill.notified())
            .await
            .expect("the kill signal");
        assert!(hub.conns.is_empty());
        assert_eq!(hub.rv.registered_peers(), 0);
        assert!(matches!(next(&mut rx), Outbound::Frame(_)));

        // Others are unaffected.
        let fine = Identity::from_seed([2; 32]).unwrap();
        let (mut rx2, _kill2, challenge2) = connect(&mut hub, 2, 8);
        frame(&mut hub, 2, &hello_msg(&fine, &challenge2));
        let Outbound::Frame(bytes) = next(&mut rx2) else {
            panic!("expected Welcome")
        };
        assert!(matches!(
            SignalMsg::decode_frame(&bytes),
            Ok(SignalMsg::Welcome {
                peers_online: 1,
                ..
            })
        ));
    }

    #[test]
    fn closed_connection_is_forgotten() {
        let mut hub = hub();
        let (_rx, _kill, _) = connect(&mut hub, 4, 8);
        hub.handle(
            Time::ZERO,
            ToHub::Closed {
                conn: ConnId(4),
                why: Goodbye::PeerClosed,
            },
        );
        assert!(hub.conns.is_empty());
        assert_eq!(hub.rv.connections(), 0);
        assert_eq!(hub.poll_timeout(), None);
    }
}

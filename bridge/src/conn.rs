//! One task per WebSocket: reads frames and hands them to the hub, writes what the hub queued.
//!
//! The task owns no rendezvous state. It runs the link's secure channel
//! ([`onionmesh_crypto::channel`]): first the handshake (the bridge proves its identity, the
//! node proves its own, both hidden from the wire), then every WebSocket message in either
//! direction is one ChaCha20-Poly1305 frame, so a plain `ws://` connection shows an observer
//! nothing but sizes and timing. A failed handshake closes the socket before the hub ever hears
//! of it. After that the task enforces the transport rules before bytes reach the core (binary
//! frames only, at most `--max-frame` bytes of plaintext, every frame authentic and in order) and
//! reports violations to the hub as transport errors, so the rendezvous answers them like any
//! other broken frame: an Error frame (still encrypted), then a close.

use crate::facilitator::FACILITATED_QUEUE;
use crate::hub::{Goodbye, Outbound, ToHub, OUTBOUND_QUEUE};
use crate::limits::{Admission, Refusal};
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use onionmesh_crypto::channel::{Channel, ServerHandshake, TAG_LEN};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::ConnId;
use onionmesh_wire::signal::{FacilitatedAnswer, FacilitatedAnswers, MAX_FACILITATED_BATCH};
use onionmesh_wire::{Frame, SignalMsg};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;
use tracing::{debug, warn};

/// How long to wait for the peer's half of the close handshake (or for a close frame to be
/// written) before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Longest close-frame reason the WebSocket protocol allows.
const MAX_CLOSE_REASON: usize = 123;

pub struct ConnTask {
    pub conn: ConnId,
    pub addr: SocketAddr,
    pub hub: mpsc::Sender<ToHub>,
    pub shutdown: watch::Receiver<bool>,
    pub max_frame: usize,
    /// This connection's place at the gate (its slot under --max-connections), given back when
    /// the task ends. Until the link handshake succeeds, the gate may evict it for a newer one.
    pub admission: Admission,
    /// The bridge's long-term identity, proven to every node in the link handshake.
    pub identity: Arc<Identity>,
    /// How long a new connection has to finish the link handshake.
    pub handshake_timeout: Duration,
    /// How long a new connection has to send the handshake's first message (at most
    /// `handshake_timeout`): a real page sends it as soon as the socket opens, so a short
    /// deadline frees the slots of connections that never will.
    pub first_message_timeout: Duration,
}

/// How a handshake attempt ended.
enum Handshake {
    Done(Channel),
    Failed(String),
    Evicted,
}

/// The WebSocket message limit for `max_frame` bytes of plaintext: the frame plus its tag, and
/// never less than the largest handshake message.
pub fn ws_message_limit(max_frame: usize) -> usize {
    (max_frame + TAG_LEN).max(onionmesh_crypto::channel::M3_LEN)
}

impl ConnTask {
    pub async fn run(self, socket: WebSocket) {
        let ConnTask {
            conn,
            addr,
            hub,
            shutdown,
            max_frame,
            admission,
            identity,
            handshake_timeout,
            first_message_timeout,
        } = self;
        debug!("connection {} opened from {addr}", conn.0);
        let mut socket = socket;
        let first = first_message_timeout.min(handshake_timeout);
        let attempt = tokio::select! {
            biased;
            () = admission.evicted() => Handshake::Evicted,
            done = timeout(handshake_timeout, handshake(&mut socket, &identity, first)) => {
                match done {
                    Ok(Ok(channel)) => Handshake::Done(channel),
                    Ok(Err(reason)) => Handshake::Failed(reason),
                    Err(_) => Handshake::Failed(format!(
                        "no link handshake within {} ms",
                        handshake_timeout.as_millis()
                    )),
                }
            }
        };
        let channel = match attempt {
            Handshake::Done(channel) => channel,
            Handshake::Failed(reason) => {
                return refuse(conn, addr, socket, close_code::POLICY, &reason).await
            }
            Handshake::Evicted => {
                let reason = Refusal::GaveWay.to_string();
                debug!("closing connection {} from {addr}: {reason}", conn.0);
                return refuse_quietly(socket, close_code::AGAIN, &reason).await;
            }
        };
        admission.linked();
        debug!(
            "connection {}: link secured with node {}",
            conn.0,
            channel.peer_id().short()
        );
        let (out, queue) = mpsc::channel(OUTBOUND_QUEUE);
        let (facilitated, facilitated_queue) = mpsc::channel(FACILITATED_QUEUE);
        let kill = Arc::new(Notify::new());
        let connected = ToHub::Connected {
            conn,
            out,
            facilitated,
            kill: kill.clone(),
        };
        if hub.send(connected).await.is_err() {
            // The hub is gone: the bridge is stopping.
            return;
        }
        let mut link = Link {
            socket,
            conn,
            hub,
            queue,
            facilitated: facilitated_queue,
            kill,
            shutdown,
            max_frame,
            close_code: close_code::POLICY,
            channel,
        };
        let why = link.serve().await;
        debug!("connection {} ended: {why:?}", conn.0);
        drop(link.socket);
        // If the hub is gone there is nobody left to tell.
        let _ = link.hub.send(ToHub::Closed { conn, why }).await;
        drop(admission);
    }
}

struct Link {
    socket: WebSocket,
    conn: ConnId,
    hub: mpsc::Sender<ToHub>,
    queue: mpsc::Receiver<Outbound>,
    /// Answers of the facilitator (issue 10), written after the hub's frames, as many as are
    /// waiting in one `Facilitated` frame. The request tasks wait for room here, so a slow page
    /// slows its own downloads and is never dropped for them.
    facilitated: mpsc::Receiver<FacilitatedAnswer>,
    kill: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    max_frame: usize,
    /// The close code to use when the hub closes us; set by the transport error that caused it.
    close_code: u16,
    channel: Channel,
}

/// The server side of the link handshake: m1 in (within `first`), m2 out, m3 in. Returns a
/// sentence on failure.
async fn handshake(
    socket: &mut WebSocket,
    identity: &Identity,
    first: Duration,
) -> Result<Channel, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| format!("the bridge has no randomness for the link handshake: {e}"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let m1 = timeout(first, handshake_message(socket))
        .await
        .map_err(|_| {
            format!(
                "no link handshake within {} ms: its first message is due that soon after \
                 the WebSocket opens",
                first.as_millis()
            )
        })??;
    let (pending, m2) = ServerHandshake::respond(&mut rng, identity, &m1)
        .map_err(|e| format!("link handshake failed: {e}"))?;
    socket
        .send(Message::Binary(m2.into()))
        .await
        .map_err(|e| format!("could not write the link handshake: {e}"))?;
    let m3 = handshake_message(socket).await?;
    pending
        .finish(&m3)
        .map_err(|e| format!("link handshake failed: {e}"))
}

async fn handshake_message(socket: &mut WebSocket) -> Result<axum::body::Bytes, String> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Binary(b))) => return Ok(b),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Text(_))) => {
                return Err(
                    "link handshake failed: a text frame arrived; this protocol uses \
                            binary frames only (is this an old onionmesh page?)"
                        .into(),
                )
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err("the peer left during the link handshake".into())
            }
            Some(Err(e)) => return Err(format!("link handshake failed: {e}")),
        }
    }
}

/// Close a connection whose handshake failed; the hub never knew it.
async fn refuse(conn: ConnId, addr: SocketAddr, socket: WebSocket, code: u16, reason: &str) {
    warn!("closing connection {} from {addr}: {reason}", conn.0);
    refuse_quietly(socket, code, reason).await;
}

/// [`refuse`] without the log line.
async fn refuse_quietly(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: truncate(reason, MAX_CLOSE_REASON).into(),
    };
    // Best effort, as in `Link::close`.
    let _ = timeout(CLOSE_LINGER, socket.send(Message::Close(Some(frame)))).await;
}

/// What the read side saw.
enum Inbound {
    Frame(axum::body::Bytes),
    /// Refused before the core; stop reading and wait for the hub's verdict.
    Refused {
        code: u16,
        reason: String,
    },
    /// Ignore (ping, pong: the library answers pings itself).
    Nothing,
    /// The peer sent a close frame; the library answers it, and the next read ends the stream.
    Close,
    End(Goodbye),
}

impl Link {
    async fn serve(&mut self) -> Goodbye {
        if *self.shutdown.borrow() {
            return self.going_away().await;
        }
        // False once a transport error went to the hub: we only wait for its Error frame and close.
        let mut reading = true;
        let mut peer_said_goodbye = false;
        // An event read from the socket and not yet accepted by the hub. While the hub's queue is
        // full we stop reading (back-pressure onto TCP) but keep draining our outbound queue:
        // a task stuck in `hub.send` could not write, and the hub would think the peer slow.
        let mut pending: Option<ToHub> = None;
        // A local handle, so a reserved slot does not borrow `self` across the branches.
        let hub = self.hub.clone();
        // False once every sender of the facilitated queue is gone.
        let mut facilitating = true;
        loop {
            tokio::select! {
                biased;
                () = self.kill.notified() => return Goodbye::ByHub,
                _ = self.shutdown.changed() => return self.going_away().await,
                out = self.queue.recv() => match out {
                    // The peer has closed; the library already answered it, and writing data
                    // after a close is not allowed.
                    Some(Outbound::Frame(_)) if peer_said_goodbye => {}
                    Some(Outbound::Frame(bytes)) => {
                        if let Err(why) = self.write_frame(&bytes).await {
                            return why;
                        }
                    }
                    Some(Outbound::Close { reason }) => {
                        return self.close(self.close_code, &reason, Goodbye::ByHub).await;
                    }
                    // The hub dropped us (as a slow reader, and `kill` raced this branch).
                    None => return Goodbye::ByHub,
                },
                answer = self.facilitated.recv(), if facilitating => match answer {
                    Some(_) if peer_said_goodbye => {}
                    Some(first) => {
                        let frame = self.facilitated_frame(first);
                        if let Err(why) = self.write_frame(&frame).await {
                            return why;
                        }
                    }
                    None => facilitating = false,
                },
                permit = hub.reserve(), if pending.is_some() => match (permit, pending.take()) {
                    (Ok(permit), Some(event)) => permit.send(event),
                    (Ok(_), None) => {}
                    // The hub is gone: the bridge is stopping.
                    (Err(_), _) => return Goodbye::Shutdown,
                },
                msg = self.socket.recv(), if reading && pending.is_none() => match self.inbound(msg) {
                    Inbound::Frame(bytes) => {
                        pending = Some(ToHub::Frame { conn: self.conn, bytes });
                    }
                    Inbound::Refused { code, reason } => {
                        reading = false;
                        self.close_code = code;
                        pending = Some(ToHub::TransportError { conn: self.conn, reason });
                    }
                    Inbound::Nothing => {}
                    Inbound::Close => peer_said_goodbye = true,
                    Inbound::End(why) => {
                        return match why {
                            Goodbye::PeerVanished if peer_said_goodbye => Goodbye::PeerClosed,
                            why => why,
                        };
                    }
                },
            }
        }
    }

    /// One `Facilitated` frame: `first` and the answers queued behind it, up to
    /// [`MAX_FACILITATED_BATCH`]. A page then handles a burst of slices in one go.
    fn facilitated_frame(&mut self, first: FacilitatedAnswer) -> Vec<u8> {
        let mut answers = FacilitatedAnswers::one(first);
        while answers.len() < MAX_FACILITATED_BATCH {
            match self.facilitated.try_recv() {
                Ok(next) => {
                    let _ = answers.try_push(next);
                }
                Err(_) => break,
            }
        }
        SignalMsg::Facilitated { answers }.encode_frame()
    }

    fn inbound(&mut self, msg: Option<Result<Message, axum::Error>>) -> Inbound {
        match msg {
            None => Inbound::End(Goodbye::PeerVanished),
            Some(Ok(Message::Binary(sealed))) => match self.channel.open(&sealed) {
                Ok(bytes) if bytes.len() > self.max_frame => Inbound::Refused {
                    code: close_code::SIZE,
                    reason: too_large(self.max_frame, &format!("{} bytes", bytes.len())),
                },
                Ok(bytes) => Inbound::Frame(bytes.into()),
                Err(e) => Inbound::Refused {
                    code: close_code::POLICY,
                    reason: format!("link channel: {e}"),
                },
            },
            Some(Ok(Message::Text(_))) => Inbound::Refused {
                code: close_code::UNSUPPORTED,
                reason: "a text frame arrived; this protocol uses binary frames only".into(),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Nothing,
            Some(Ok(Message::Close(_))) => Inbound::Close,
            Some(Err(e)) => self.read_error(e),
        }
    }

    fn read_error(&self, e: axum::Error) -> Inbound {
        let e = match e.into_inner().downcast::<tungstenite::Error>() {
            Ok(e) => *e,
            Err(other) => return Inbound::End(Goodbye::Broken(other.to_string())),
        };
        match e {
            tungstenite::Error::Capacity(c) => Inbound::Refused {
                code: close_code::SIZE,
                reason: too_large(self.max_frame, &c.to_string()),
            },
            tungstenite::Error::Protocol(p) => Inbound::Refused {
                code: close_code::PROTOCOL,
                reason: format!("WebSocket protocol violation: {p}"),
            },
            tungstenite::Error::Utf8(u) => Inbound::Refused {
                code: close_code::INVALID,
                reason: format!("a text frame is not valid UTF-8: {u}"),
            },
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                Inbound::End(Goodbye::PeerVanished)
            }
            other => Inbound::End(Goodbye::Broken(other.to_string())),
        }
    }

    /// Seal one frame and write it; on a channel failure, close.
    async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), Goodbye> {
        let sealed = match self.channel.seal(bytes) {
            Ok(sealed) => sealed,
            Err(e) => {
                let reason = format!("link channel: {e}");
                let why = Goodbye::Broken(reason.clone());
                return Err(self.close(close_code::POLICY, &reason, why).await);
            }
        };
        self.send(Message::Binary(sealed.into())).await
    }

    /// Write one message, unless the hub kills us or the bridge stops meanwhile.
    async fn send(&mut self, msg: Message) -> Result<(), Goodbye> {
        tokio::select! {
            biased;
            () = self.kill.notified() => Err(Goodbye::ByHub),
            _ = self.shutdown.changed() => Err(Goodbye::Shutdown),
            sent = self.socket.send(msg) => {
                sent.map_err(|e| Goodbye::Broken(format!("could not write to the socket: {e}")))
            }
        }
    }

    async fn going_away(&mut self) -> Goodbye {
        let reason = "the bridge is shutting down";
        self.close(close_code::AWAY, reason, Goodbye::Shutdown)
            .await
    }

    /// Write a close frame, wait briefly for the peer's reply so it reads everything we sent,
    /// then give up the socket. Returns `why` for the hub.
    async fn close(&mut self, code: u16, reason: &str, why: Goodbye) -> Goodbye {
        let frame = CloseFrame {
            code,
            reason: truncate(reason, MAX_CLOSE_REASON).into(),
        };
        let linger = async {
            self.socket.send(Message::Close(Some(frame))).await?;
            // Reads end with the peer's close (or with an error on the bytes we did not read).
            while let Some(Ok(_)) = self.socket.recv().await {}
            Ok::<(), axum::Error>(())
        };
        // The close is best effort: the peer may be gone or not reading.
        let _ = timeout(CLOSE_LINGER, linger).await;
        why
    }
}

fn too_large(max: usize, detail: &str) -> String {
    format!("the frame is larger than the maximum of {max} bytes ({detail})")
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(truncate("short", MAX_CLOSE_REASON), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, MAX_CLOSE_REASON);
        assert!(cut.len() <= MAX_CLOSE_REASON && cut.len() == 122);
    }
}

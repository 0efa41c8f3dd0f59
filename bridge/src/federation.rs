//! The federation dialer: one task per `--peer-bridge`, keeping a WebSocket open to that
//! bridge and moving frames between it and the hub.
//!
//! It is the outbound twin of [`crate::conn`]: the hub sees a dialed connection like any other
//! (a bounded outbound queue, a kill switch), except that it announces it with
//! [`ToHub::Dialed`] so the rendezvous challenges it and answers its challenge with a bridge hello. Everything the two bridges
//! say to each other is decided by the sans-IO core (`onionmesh_rendezvous`'s federation module).
//! When the connection fails or ends, the task waits [`REDIAL`] and dials again, until
//! shutdown.
//!
//! Like every bridge WebSocket, the connection runs the secure channel
//! ([`onionmesh_crypto::channel`]); the dialing bridge is the client. A `bridge-id=<hex>` query
//! parameter in the `--peer-bridge` URL pins the other bridge's identity, exactly as it does for
//! pages; without one the channel still encrypts, and the federation hello authenticates the
//! bridge's ID at the rendezvous layer.

use crate::hub::{Goodbye, Outbound, ToHub, OUTBOUND_QUEUE};
use futures_util::{SinkExt, StreamExt};
use onionmesh_crypto::channel::{Channel, ClientHandshake, TAG_LEN};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::ConnId;
use onionmesh_wire::NodeId;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

/// Wait between two dial attempts.
pub const REDIAL: Duration = Duration::from_secs(2);
/// Give up on one dial attempt after this long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// `ws://host:port` gets the `/ws` path the bridges serve; anything else is used as given.
pub fn ws_url(addr: &str) -> String {
    let rest = addr
        .strip_prefix("ws://")
        .or_else(|| addr.strip_prefix("wss://"));
    match rest {
        Some(r) if !r.contains('/') => format!("{addr}/ws"),
        Some(_) => addr.to_owned(),
        None => format!("ws://{addr}/ws"),
    }
}

/// Keep a federation connection to `url` until shutdown.
pub async fn dial_forever(
    url: String,
    hub: mpsc::Sender<ToHub>,
    next_conn: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
    max_frame: usize,
    identity: Arc<Identity>,
) {
    let pinned = match pinned_id(&url) {
        Ok(p) => p,
        Err(e) => {
            warn!("not dialing peer bridge {url}: {e}");
            return;
        }
    };
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let dial = tokio::time::timeout(DIAL_TIMEOUT, tokio_tungstenite::connect_async(&url));
        let why = tokio::select! {
            _ = shutdown.changed() => return,
            r = dial => match r {
                Ok(Ok((mut ws, _))) => {
                    match tokio::time::timeout(DIAL_TIMEOUT, handshake(&mut ws, &identity, pinned)).await {
                        Ok(Ok(channel)) => {
                            failures = 0;
                            let conn = ConnId(next_conn.fetch_add(1, Ordering::Relaxed));
                            info!(
                                "dialed peer bridge {url} (link channel to {}) as connection {}",
                                channel.peer_id().short(),
                                conn.0
                            );
                            serve(conn, ws, channel, &hub, &mut shutdown, max_frame).await
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(format!(
                            "no link handshake within {} s",
                            DIAL_TIMEOUT.as_secs()
                        )),
                    }
                }
                Ok(Err(e)) => Err(format!("{e}")),
                Err(_) => Err(format!("no answer within {} s", DIAL_TIMEOUT.as_secs())),
            },
        };
        match why {
            Ok(()) => return, // shutdown or the hub is gone
            Err(e) => {
                failures += 1;
                // Every failure while it is down would be noise: the first, then every 30th.
                if failures == 1 || failures % 30 == 0 {
                    warn!(
                        "peer bridge {url} is unreachable ({e}); retrying every {} s",
                        REDIAL.as_secs()
                    );
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(REDIAL) => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The client side of the link handshake: m1 out, m2 in, m3 out.
async fn handshake(
    ws: &mut Ws,
    identity: &Identity,
    pinned: Option<NodeId>,
) -> Result<Channel, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| format!("no randomness for the link handshake: {e}"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    let (pending, m1) = ClientHandshake::start(&mut rng, pinned);
    ws.send(Message::Binary(m1.to_vec().into()))
        .await
        .map_err(|e| format!("could not write the link handshake: {e}"))?;
    let m2 = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => break b,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => {
                return Err(format!(
                    "link handshake failed: unexpected {} frame",
                    kind(&other)
                ))
            }
            Some(Err(e)) => return Err(format!("link handshake failed: {e}")),
            None => return Err("the peer bridge left during the link handshake".into()),
        }
    };
    let (channel, m3) = pending
        .finish(identity, &m2)
        .map_err(|e| format!("link handshake failed: {e}"))?;
    ws.send(Message::Binary(m3.into()))
        .await
        .map_err(|e| format!("could not write the link handshake: {e}"))?;
    Ok(channel)
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Close(_) => "close",
        _ => "non-binary",
    }
}

/// The `bridge-id=<40 hex>` pin in a peer bridge URL, if any.
fn pinned_id(url: &str) -> Result<Option<NodeId>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(hex) = pair.strip_prefix("bridge-id=") {
            return NodeId::from_hex(hex)
                .map(Some)
                .ok_or_else(|| format!("bridge-id={hex} is not a 40-digit hex node ID"));
        }
    }
    Ok(None)
}

/// Pump one dialed connection. `Ok(())` means stop for good (shutdown, hub gone); `Err` means
/// dial again.
async fn serve(
    conn: ConnId,
    mut ws: Ws,
    mut channel: Channel,
    hub: &mpsc::Sender<ToHub>,
    shutdown: &mut watch::Receiver<bool>,
    max_frame: usize,
) -> Result<(), String> {
    let (out, mut queue) = mpsc::channel(OUTBOUND_QUEUE);
    let kill = Arc::new(Notify::new());
    if hub
        .send(ToHub::Dialed {
            conn,
            out,
            kill: kill.clone(),
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    let (result, why) = loop {
        tokio::select! {
            biased;
            () = kill.notified() => break (Err("closed by this bridge".to_owned()), Goodbye::ByHub),
            _ = shutdown.changed() => {
                let _ = ws.close(None).await;
                break (Ok(()), Goodbye::Shutdown);
            }
            out = queue.recv() => match out {
                Some(Outbound::Frame(bytes)) => {
                    let sealed = match channel.seal(&bytes) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ws.close(None).await;
                            break (Err(format!("link channel: {e}")), Goodbye::ByHub);
                        }
                    };
                    if let Err(e) = ws.send(Message::Binary(sealed.into())).await {
                        break (Err(format!("{e}")), Goodbye::Broken(e.to_string()));
                    }
                }
                Some(Outbound::Close { reason }) => {
                    let _ = ws.close(None).await;
                    break (Err(reason), Goodbye::ByHub);
                }
                None => break (Err("closed by this bridge".to_owned()), Goodbye::ByHub),
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(sealed))) if sealed.len() <= max_frame + TAG_LEN => {
                    let bytes = match channel.open(&sealed) {
                        Ok(b) => b,
                        Err(e) => {
                            let reason = format!("link channel: {e}");
                            let _ = hub.send(ToHub::TransportError { conn, reason: reason.clone() }).await;
                            let _ = ws.close(None).await;
                            break (Err(reason), Goodbye::ByHub);
                        }
                    };
                    if hub.send(ToHub::Frame { conn, bytes: bytes.into() }).await.is_err() {
                        break (Ok(()), Goodbye::Shutdown);
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let reason = format!("a {}-byte frame, over --max-frame", bytes.len());
                    let _ = hub.send(ToHub::TransportError { conn, reason: reason.clone() }).await;
                    break (Err(reason), Goodbye::ByHub);
                }
                Some(Ok(Message::Close(_))) | None => {
                    break (Err("the peer bridge closed the connection".to_owned()), Goodbye::PeerClosed)
                }
                Some(Ok(_)) => {} // ping, pong, text: nothing for the core
                Some(Err(e)) => break (Err(format!("{e}")), Goodbye::Broken(e.to_string())),
            },
        }
    };
    let _ = hub.send(ToHub::Closed { conn, why }).await;
    result
}

#[cfg(test)]
mod tests {
    use super::{pinned_id, ws_url};

    #[test]
    fn peer_bridge_addresses_get_the_ws_path() {
        assert_eq!(ws_url("ws://127.0.0.1:9"), "ws://127.0.0.1:9/ws");
        assert_eq!(ws_url("ws://127.0.0.1:9/ws"), "ws://127.0.0.1:9/ws");
        assert_eq!(ws_url("127.0.0.1:9"), "ws://127.0.0.1:9/ws");
        assert_eq!(ws_url("wss://b.example/x"), "wss://b.example/x");
    }

    #[test]
    fn a_bridge_id_in_the_url_pins_the_peer_bridge() {
        assert_eq!(pinned_id("ws://127.0.0.1:9/ws").unwrap(), None);
        let hex = "00112233445566778899aabbccddeeff00112233";
        let id = pinned_id(&format!("ws://127.0.0.1:9/ws?bridge-id={hex}")).unwrap();
        assert_eq!(id.unwrap().to_hex(), hex);
        assert!(pinned_id("ws://h/ws?bridge-id=zz").is_err());
    }
}

//! The HTTP side: `GET /ws` upgrades to a WebSocket (within `--max-connections`), everything
//! else is a static file from `--static-dir`.
//!
//! The router runs on connections the accept loop (the `serve` module) has put through the
//! [`Gate`]: each request carries the connection's [`Admission`] (or, on a connection the gate
//! refused, a [`Refused`]) and its peer address as [`ConnectInfo`].

use crate::conn::ConnTask;
use crate::hub::ToHub;
use crate::limits::{log_refusal, Admission, Gate, Refusal, Refused};
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::ConnId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tower_http::services::ServeDir;
use tracing::warn;

/// How long a refused WebSocket has to take its close frame.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub hub: mpsc::Sender<ToHub>,
    /// Connection limits; WebSocket slots are taken here.
    pub gate: Arc<Gate>,
    pub next_conn: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
    pub max_frame: usize,
    /// The bridge's identity, for the link handshake (the same key the rendezvous uses).
    pub identity: Arc<Identity>,
    /// `--hello-timeout`: for the whole link handshake.
    pub handshake_timeout: Duration,
    /// `--first-message-timeout`: for the handshake's first message.
    pub first_message_timeout: Duration,
}

pub fn router(state: AppState, static_dir: &Path) -> Router {
    // ServeDir answers `/` with index.html and picks Content-Type from the extension
    // (`.wasm` -> application/wasm, which browsers require for streaming compilation).
    Router::new()
        .route("/ws", get(upgrade))
        .fallback_service(ServeDir::new(static_dir))
        .layer(middleware::from_fn(turn_away))
        .layer(middleware::map_response(no_cache))
        .with_state(state)
}

/// On a refused connection, anything but a WebSocket upgrade gets an HTTP 503 with the reason.
async fn turn_away(req: Request, next: Next) -> Response {
    match req.extensions().get::<Refused>() {
        Some(Refused(refusal)) if req.uri().path() != "/ws" => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{refusal}\n")).into_response()
        }
        _ => next.run(req).await,
    }
}

/// The page and the wasm bundle change with every build; make browsers revalidate.
async fn no_cache(mut res: Response) -> Response {
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

async fn upgrade(
    State(st): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    admission: Option<Extension<Admission>>,
    refused: Option<Extension<Refused>>,
    ws: WebSocketUpgrade,
) -> Response {
    let admission = match (admission, refused) {
        (_, Some(Extension(Refused(refusal)))) => return refuse_ws(ws, refusal, None),
        (Some(Extension(admission)), None) => match admission.upgrade() {
            Ok(()) => admission,
            Err(refusal) => {
                log_refusal(&st.gate, addr, &refusal);
                return refuse_ws(ws, refusal, Some(admission));
            }
        },
        // Every connection the accept loop serves carries one or the other.
        (None, None) => {
            warn!("a WebSocket request from {addr} came without an admission; refusing it");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let conn = ConnId(st.next_conn.fetch_add(1, Ordering::Relaxed));
    let task = ConnTask {
        conn,
        addr,
        hub: st.hub,
        shutdown: st.shutdown,
        max_frame: st.max_frame,
        admission,
        identity: st.identity,
        handshake_timeout: st.handshake_timeout,
        first_message_timeout: st.first_message_timeout,
    };
    // tungstenite refuses a larger frame from its header, before reading (or allocating) the
    // payload; `ConnTask` checks the length again before the core sees it.
    let limit = crate::conn::ws_message_limit(st.max_frame);
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(move |e| {
            warn!(
                "connection {}: the WebSocket upgrade from {addr} failed: {e}",
                conn.0
            )
        })
        .on_upgrade(move |socket| task.run(socket))
}

/// Accept the upgrade only to close it at once with `refusal` as the reason (code 1013, "try
/// again later"): a page's script sees the close reason, while an HTTP 503 would reach it as a
/// bare 1006. `admission` is held until the socket is closed, so its file stays counted. On a
/// connection refused at the gate there is none: that socket is outside every count for up to
/// [`REFUSAL_LINGER`], which stays short because one close frame into a fresh socket's empty
/// send buffer does not wait on the client.
fn refuse_ws(ws: WebSocketUpgrade, refusal: Refusal, admission: Option<Admission>) -> Response {
    ws.on_upgrade(move |mut socket: WebSocket| async move {
        let frame = CloseFrame {
            code: close_code::AGAIN,
            reason: refusal.to_string().into(),
        };
        let _ =
            tokio::time::timeout(REFUSAL_LINGER, socket.send(Message::Close(Some(frame)))).await;
        drop(admission);
    })
}

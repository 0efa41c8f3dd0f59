//! The HTTP side: `GET /ws` upgrades to a WebSocket (within `--max-connections`), everything
//! else is a static file from `--static-dir`.

use crate::conn::ConnTask;
use crate::hub::ToHub;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::ConnId;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tower_http::services::ServeDir;
use tracing::warn;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub hub: mpsc::Sender<ToHub>,
    /// One permit per allowed WebSocket connection.
    pub slots: Arc<Semaphore>,
    pub max_connections: usize,
    pub next_conn: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
    pub max_frame: usize,
    /// The bridge's identity, for the link handshake (the same key the rendezvous uses).
    pub identity: Arc<Identity>,
    pub handshake_timeout: Duration,
}

pub fn router(state: AppState, static_dir: &Path) -> Router {
    // ServeDir answers `/` with index.html and picks Content-Type from the extension
    // (`.wasm` -> application/wasm, which browsers require for streaming compilation).
    Router::new()
        .route("/ws", get(upgrade))
        .fallback_service(ServeDir::new(static_dir))
        .layer(middleware::map_response(no_cache))
        .with_state(state)
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
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(slot) = st.slots.clone().try_acquire_owned() else {
        warn!(
            "refusing a WebSocket from {addr}: all {} connection slots are in use \
             (raise --max-connections to allow more)",
            st.max_connections
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this bridge is full; try again later or use another bridge\n",
        )
            .into_response();
    };
    let conn = ConnId(st.next_conn.fetch_add(1, Ordering::Relaxed));
    let task = ConnTask {
        conn,
        addr,
        hub: st.hub,
        shutdown: st.shutdown,
        max_frame: st.max_frame,
        slot,
        identity: st.identity,
        handshake_timeout: st.handshake_timeout,
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

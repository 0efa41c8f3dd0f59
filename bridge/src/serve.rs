//! The accept loop: hyper's HTTP/1 server on each admitted connection, with a header-read
//! timeout on a real timer.
//!
//! axum only routes ([`crate::http::router`]); this module owns the sockets, so that
//!
//! - every accepted connection passes the [`Gate`] before a byte is read (per-address caps, the
//!   open-file budget, eviction of the oldest unfinished connections);
//! - a request head that does not arrive within `--header-timeout` closes the connection
//!   (hyper's `header_read_timeout`, which also bounds the idle time between kept-alive
//!   requests; it needs [`TokioTimer`] to run at all);
//! - an evicted connection is dropped at once;
//! - an `accept` error (a connection reset before we took it, or `EMFILE` if the reserve was
//!   not enough) is logged and waited out, never a reason to spin or to stop serving.

use crate::limits::{log_refusal, Admission, Gate, Refusal, Refused, TALLY_EVERY};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout, Instant};
use tower_service::Service;
use tracing::{debug, warn};

/// Connections refused at the gate that are still told why (an HTTP 503 with a body, or a
/// WebSocket close frame with a reason) at the same time; further ones are closed without a
/// word. Their files come out of the open-file reserve (`FileLimit::reserve` in `files`).
pub const REFUSING_AT_ONCE: usize = 32;

/// How long a refused connection may take to send its request and read the answer.
const REFUSAL_LIFETIME: Duration = Duration::from_secs(2);

/// How long an HTTP connection may take to finish its response once the bridge is stopping.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// Largest request head, in bytes. Browsers send a few hundred bytes to the bridge (it sets no
/// cookies); hyper's default (about 400 KiB) would let each slow connection pin that much memory.
const MAX_HEAD: usize = 16 * 1024;

/// Waits after an `accept` error that is not about one connection (out of files or memory),
/// doubling up to the maximum while errors continue.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// What the accept loop needs besides the listener.
pub struct Server {
    pub router: Router,
    pub gate: Arc<Gate>,
    /// `--header-timeout`.
    pub header_timeout: Duration,
    /// Becomes true when the bridge stops.
    pub shutdown: watch::Receiver<bool>,
}

impl Server {
    /// Accept until `shutdown` turns true. Returns once the listener is closed; connections
    /// still open finish on their own tasks.
    pub async fn run(self, listener: TcpListener) {
        let Server {
            router,
            gate,
            header_timeout,
            mut shutdown,
        } = self;
        let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
        tokio::spawn(log_tally(gate.clone(), header_timeout, shutdown.clone()));
        let mut backoff = ACCEPT_BACKOFF.0;
        // Accept errors are logged at WARN once per TALLY_EVERY, else at DEBUG.
        let mut quiet_until = Instant::now();
        loop {
            let accepted = tokio::select! {
                biased;
                () = stopping(&mut shutdown) => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    backoff = ACCEPT_BACKOFF.0;
                    pair
                }
                Err(e) if per_connection(&e) => {
                    debug!("a connection failed before it was accepted: {e}");
                    continue;
                }
                Err(e) => {
                    if Instant::now() >= quiet_until {
                        quiet_until = Instant::now() + TALLY_EVERY;
                        warn!(
                            "could not accept a connection: {e}; retrying in {} ms, and \
                             longer while it lasts (if this says too many open files, raise \
                             the hard limit: ulimit -Hn, or LimitNOFILE= under systemd)",
                            backoff.as_millis()
                        );
                    } else {
                        debug!("could not accept a connection: {e}");
                    }
                    tokio::select! {
                        () = stopping(&mut shutdown) => break,
                        () = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            };
            match gate.admit(peer.ip()) {
                Ok(admission) => {
                    let conn = Connection {
                        router: router.clone(),
                        peer,
                        header_timeout,
                        shutdown: shutdown.clone(),
                        farewells: refusing.clone(),
                    };
                    tokio::spawn(conn.serve(stream, admission));
                }
                Err(refusal) => {
                    log_refusal(&gate, peer, &refusal);
                    match refusing.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let conn = Connection {
                                router: router.clone(),
                                peer,
                                header_timeout: header_timeout.min(REFUSAL_LIFETIME),
                                shutdown: shutdown.clone(),
                                farewells: refusing.clone(),
                            };
                            tokio::spawn(async move {
                                conn.refuse(stream, refusal).await;
                                drop(permit);
                            });
                        }
                        // Too many refusals in progress: close without a word.
                        Err(_) => drop(stream),
                    }
                }
            }
            // Let the connections just spawned and those told to give way run (and close their
            // sockets) before the next accept: without this, tokio's cooperative budget lets the
            // loop accept over a hundred sockets in one go, each holding a file until its task
            // runs, which is more than the reserve below the open-file limit.
            tokio::task::yield_now().await;
        }
        debug!("the listener is closed");
    }
}

/// Resolves once the bridge is stopping (or nobody can tell it to any more).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accept errors that concern only the connection being accepted (it was reset or aborted
/// first); anything else (out of files, out of memory) concerns the whole listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

async fn log_tally(gate: Arc<Gate>, header_timeout: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => return,
            () = sleep(TALLY_EVERY) => {}
        }
        let t = gate.take_tally();
        if t.refused == 0 && t.evicted == [0; 3] && t.head_timeouts == 0 {
            continue;
        }
        let u = gate.usage();
        warn!(
            "in the last {} s: {} connections refused; {} gave way to newer ones ({} without a \
             request head, {} in the link handshake, {} idle HTTP); {} sent no request head \
             within {} ms; now {} connections ({} WebSockets, {} files)",
            TALLY_EVERY.as_secs(),
            t.refused,
            t.evicted.iter().sum::<u64>(),
            t.evicted[0],
            t.evicted[1],
            t.evicted[2],
            t.head_timeouts,
            header_timeout.as_millis(),
            u.connections,
            u.websockets,
            u.files,
        );
    }
}

/// One TCP connection, served by hyper.
struct Connection {
    router: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    /// Shared with refusals: evicted connections that may still be told why.
    farewells: Arc<Semaphore>,
}

impl Connection {
    fn builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD);
        b
    }

    /// Serve an admitted connection until it ends, upgrades, is evicted or the bridge stops.
    async fn serve(self, stream: TcpStream, admission: Admission) {
        let Connection { router, peer, .. } = &self;
        let (router, peer) = (router.clone(), *peer);
        let held = admission.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if held.is_evicted() {
                // Told why on its way out (see the eviction branch below).
                req.extensions_mut().insert(Refused(Refusal::GaveWay));
            } else {
                held.served();
                req.extensions_mut().insert(held.clone());
            }
            let mut router = router.clone();
            async move { router.call(req).await }
        });
        let builder = self.builder();
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let mut shutdown = self.shutdown.clone();
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = admission.evicted() => {
                debug!("closing the HTTP connection from {peer}: it gave way to a newer one");
                // While there is room, a connection that gave way is still answered: a head
                // being read gets the refusal (a 503, or a WebSocket closed with the reason), a
                // response being sent is finished, an idle kept-alive connection closes at once.
                // Its files are no longer counted by the gate, hence the bounded pool.
                let Ok(_permit) = self.farewells.clone().try_acquire_owned() else {
                    return;
                };
                conn.as_mut().graceful_shutdown();
                let _ = timeout(REFUSAL_LIFETIME, conn.as_mut()).await;
                return;
            }
            () = stopping(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                match timeout(HTTP_DRAIN, conn.as_mut()).await {
                    Ok(ended) => ended,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = ended {
            if e.is_timeout() {
                admission.note_head_timeout();
                debug!(
                    "closing the HTTP connection from {peer}: no request head within {} ms",
                    self.header_timeout.as_millis()
                );
            } else {
                debug!("the HTTP connection from {peer} ended: {e}");
            }
        }
    }

    /// Tell a refused connection why: a WebSocket upgrade is accepted and closed with the reason
    /// (the only answer a page's script can read), any other request gets a 503 with it.
    async fn refuse(self, stream: TcpStream, refusal: Refusal) {
        let Connection { router, peer, .. } = &self;
        let (router, peer) = (router.clone(), *peer);
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(Refused(refusal.clone()));
            let mut router = router.clone();
            async move { router.call(req).await }
        });
        let mut builder = self.builder();
        builder.keep_alive(false);
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        // The upgraded socket is closed by its own short-lived task (`http::refuse_ws`).
        let _ = timeout(REFUSAL_LIFETIME, conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_about_one_connection_are_told_apart() {
        assert!(per_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(per_connection(&io::Error::from(io::ErrorKind::Interrupted)));
        // EMFILE ("too many open files") concerns the listener: back off, do not spin.
        #[cfg(unix)]
        assert!(!per_connection(&io::Error::from_raw_os_error(24)));
        assert!(!per_connection(&io::Error::from(
            io::ErrorKind::OutOfMemory
        )));
    }
}

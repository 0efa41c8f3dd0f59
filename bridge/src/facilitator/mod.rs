//! The facilitator and the web exit (issue 10): content from outside the mesh, for the pages
//! registered here.
//!
//! An ORDB (a page) that finds no holder of a content in the mesh hands the request to its
//! bridge over its WebSocket: `Facilitate { req, msg }` frames, first a `DB_SOURCE` (a magnet
//! link or an http(s) URL), then `DB_QUERY`s exactly as on a stream. The bridge answers each
//! with `Facilitated { req, msg }` frames: the descriptor as `DB_CONNECTED` slices (count 0),
//! pieces as `DB_DATA` slices, and a `DB_END` with a sentence when the request cannot go on.
//! The bridge sees the ORDB, never the requester behind its circuit.
//!
//! Layout: [`Facilitator`] (owned by the hub, synchronous) keeps the table of open requests
//! and starts one task per request ([`request`]); the task opens the content —
//! [`torrent::Torrents`] (librqbit) or [`web::WebExit`] (reqwest) — and serves the queries in
//! order. Answers go out through the connection's own facilitated queue, a bounded channel the
//! task waits on, so a page that reads slowly slows its own requests and nothing else, and no
//! file is ever buffered whole.
//!
//! Limits: requests per connection (`--max-requests-per-peer`), queries waiting per request
//! ([`QUERY_QUEUE`]), torrents (`--max-torrents`), web fetches (`--max-fetches`), cache bytes
//! (`--cache-max-bytes`), web file size (`--exit-max-bytes`).

mod answer;
mod cache;
mod request;
pub mod torrent;
pub mod web;

pub use answer::FacilitatedTx;
pub use cache::CacheBudget;
pub use request::Services;

use answer::Answers;

use onionmesh_rendezvous::ConnId;
use onionmesh_wire::db::{DbEndReason, DbMsg};
use onionmesh_wire::signal::MAX_FACILITATED_BATCH;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tracing::debug;

/// Facilitated answers waiting to be written to one connection: two full `Facilitated` frames
/// (about 60 KB), so one batch can fill while the last is written. The request tasks wait for
/// room (back-pressure from the page's socket).
pub const FACILITATED_QUEUE: usize = 2 * MAX_FACILITATED_BATCH;

/// Queries of one request waiting for its task. A node asks for the next range when the last
/// one arrived, so a full queue means a node that floods: its request ends BUSY.
pub const QUERY_QUEUE: usize = 8;

struct Open {
    queries: mpsc::Sender<onionmesh_wire::db::DbQuery>,
    task: JoinHandle<()>,
}

/// The facilitated requests of every connection. Owned by the hub and called synchronously
/// (it never waits): it starts, feeds and cancels request tasks.
pub struct Facilitator {
    services: Arc<Services>,
    max_per_conn: usize,
    // Bounded: at most `max_per_conn` live entries per connection, and connections are bounded
    // by --max-connections; finished entries are swept before counting.
    open: BTreeMap<(ConnId, u32), Open>,
}

impl Facilitator {
    pub fn new(services: Services, max_per_conn: usize) -> Self {
        Facilitator {
            services: Arc::new(services),
            max_per_conn,
            open: BTreeMap::new(),
        }
    }

    /// Neither facilitator nor exit (the hub's unit tests).
    #[cfg(test)]
    pub fn disabled() -> Self {
        Facilitator::new(
            Services {
                torrents: None,
                web: None,
            },
            1,
        )
    }

    /// One `DB_*` message of request `req` from the node on `conn`, whose facilitated queue is
    /// `out`.
    pub fn handle(&mut self, conn: ConnId, out: &FacilitatedTx, req: u32, msg: DbMsg) {
        let key = (conn, req);
        if self.open.get(&key).is_some_and(|o| o.task.is_finished()) {
            self.open.remove(&key);
        }
        let answers = Answers::new(req, out.clone());
        if let Some(open) = self.open.get(&key) {
            let refusal = match msg {
                DbMsg::Query(q) => match open.queries.try_send(q) {
                    Ok(()) => return,
                    Err(TrySendError::Full(_)) => (
                        DbEndReason::BUSY,
                        format!(
                            "more than {QUERY_QUEUE} queries are waiting on this request; ask \
                             for the next range when the last one has arrived"
                        ),
                    ),
                    // The task ended between the check above and now; it said why.
                    Err(TrySendError::Closed(_)) => return,
                },
                DbMsg::Source(_) => (
                    DbEndReason::BAD_REQUEST,
                    "a second DB_SOURCE on a request that already has one".into(),
                ),
                other => (
                    DbEndReason::BAD_REQUEST,
                    format!(
                        "a facilitator takes DB_SOURCE and DB_QUERY, not {}",
                        msg_name(&other)
                    ),
                ),
            };
            if let Some(open) = self.open.remove(&key) {
                open.task.abort();
            }
            reply(answers, refusal.0, refusal.1);
            return;
        }
        let source = match msg {
            DbMsg::Source(source) => source,
            DbMsg::Query(_) => {
                return reply(
                    answers,
                    DbEndReason::BAD_REQUEST,
                    "a facilitated request starts with a DB_SOURCE (a magnet link or a URL)".into(),
                )
            }
            other => {
                return reply(
                    answers,
                    DbEndReason::BAD_REQUEST,
                    format!(
                        "a facilitator takes DB_SOURCE and DB_QUERY, not {}",
                        msg_name(&other)
                    ),
                )
            }
        };
        self.open.retain(|_, o| !o.task.is_finished());
        let live = self.open.range((conn, 0)..=(conn, u32::MAX)).count();
        if live >= self.max_per_conn {
            return reply(
                answers,
                DbEndReason::BUSY,
                format!(
                    "this node already has {live} facilitated requests open here, the most \
                     allowed (--max-requests-per-peer); end one first"
                ),
            );
        }
        let (queries, rx) = mpsc::channel(QUERY_QUEUE);
        let task = tokio::spawn(request::run(self.services.clone(), source, rx, answers));
        debug!("connection {}: facilitated request {req} opened", conn.0);
        self.open.insert(key, Open { queries, task });
    }

    /// The node cancelled request `req` (`FacilitateClose`): dropped without a `DB_END`.
    pub fn close(&mut self, conn: ConnId, req: u32) {
        if let Some(open) = self.open.remove(&(conn, req)) {
            open.task.abort();
        }
    }

    /// The connection is gone: cancel all its requests.
    pub fn conn_closed(&mut self, conn: ConnId) {
        let keys: Vec<_> = self
            .open
            .range((conn, 0)..=(conn, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(open) = self.open.remove(&key) {
                open.task.abort();
            }
        }
    }
}

impl Drop for Facilitator {
    fn drop(&mut self) {
        for open in self.open.values() {
            open.task.abort();
        }
    }
}

/// Answer a refusal from the synchronous side: a small task waits for room in the queue (it
/// ends when the connection does).
fn reply(answers: Answers, reason: DbEndReason, sentence: String) {
    tokio::spawn(async move {
        let _ = answers.end(reason, &sentence).await;
    });
}

/// The message's name for sentences.
fn msg_name(msg: &DbMsg) -> &'static str {
    match msg {
        DbMsg::Query(_) => "DB_QUERY",
        DbMsg::Connected(_) => "DB_CONNECTED",
        DbMsg::Proof(_) => "DB_PROOF",
        DbMsg::Data(_) => "DB_DATA",
        DbMsg::End(_) => "DB_END",
        DbMsg::Info(_) => "DB_INFO",
        DbMsg::Source(_) => "DB_SOURCE",
        _ => "an unknown DB_* message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionmesh_wire::db::{DbEnd, DbQuery, DbSource, HashName, SourceKind};
    use onionmesh_wire::signal::FacilitatedAnswer;
    use onionmesh_wire::BoundedString;
    use std::time::Duration;

    fn source(uri: &str) -> DbMsg {
        DbMsg::Source(DbSource {
            hash_name: DbSource::web_hash_name(uri),
            kind: SourceKind::WEB,
            uri: BoundedString::new(uri).unwrap(),
        })
    }

    fn query() -> DbMsg {
        DbMsg::Query(DbQuery {
            hash_name: HashName([1; 20]),
            piece: 0,
            offset: 0,
            count: 0,
            counter: 0,
        })
    }

    async fn end(rx: &mut mpsc::Receiver<FacilitatedAnswer>) -> (u32, DbEnd) {
        let answer = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an answer in time")
            .expect("the queue is open");
        match answer {
            FacilitatedAnswer {
                req,
                msg: DbMsg::End(end),
            } => (req, end),
            other => panic!("expected a DB_END, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn requests_start_with_a_source_and_are_bounded_per_connection() {
        // The exit is "on" in name only: no service, so a web source ends UNAVAILABLE at once;
        // the limit is checked on the open requests before that.
        let mut f = Facilitator::disabled();
        let (tx, mut rx) = mpsc::channel(8);
        f.handle(ConnId(1), &tx, 4, query());
        let (req, e) = end(&mut rx).await;
        assert_eq!((req, e.reason()), (4, DbEndReason::BAD_REQUEST));
        assert!(e.sentence().contains("DB_SOURCE"), "{}", e.sentence());

        f.handle(ConnId(1), &tx, 5, source("http://example.org/a"));
        let (req, e) = end(&mut rx).await;
        assert_eq!((req, e.reason()), (5, DbEndReason::UNAVAILABLE));
        assert_eq!(e.sentence(), "this bridge is not a web exit");
        f.handle(
            ConnId(1),
            &tx,
            6,
            DbMsg::End(DbEnd::with_sentence(DbEndReason::FINISHED, "")),
        );
        let (req, e) = end(&mut rx).await;
        assert_eq!((req, e.reason()), (6, DbEndReason::BAD_REQUEST));
        assert!(e.sentence().contains("DB_END"));
    }

    #[tokio::test]
    async fn a_busy_connection_is_refused_and_closing_cancels() {
        let mut f = Facilitator::disabled();
        f.max_per_conn = 1;
        // A request that never ends: its task waits forever.
        let (queries, _rx) = mpsc::channel(QUERY_QUEUE);
        let task = tokio::spawn(std::future::pending::<()>());
        f.open.insert((ConnId(1), 1), Open { queries, task });
        let (tx, mut rx) = mpsc::channel(8);
        f.handle(ConnId(1), &tx, 2, source("http://example.org/b"));
        let (req, e) = end(&mut rx).await;
        assert_eq!((req, e.reason()), (2, DbEndReason::BUSY));
        // Another connection is not affected by the first one's limit.
        let (tx2, mut rx2) = mpsc::channel(8);
        f.handle(ConnId(2), &tx2, 2, source("http://example.org/b"));
        let (_, e) = end(&mut rx2).await;
        assert_eq!(e.reason(), DbEndReason::UNAVAILABLE);
        assert!(f.open.contains_key(&(ConnId(1), 1)));
        f.conn_closed(ConnId(1));
        assert!(!f.open.contains_key(&(ConnId(1), 1)));
    }
}

//! How a request task answers: `Facilitated` frames into its connection's bounded queue, and
//! why a request stops.

use onionmesh_wire::db::{DbEnd, DbEndReason, DbMsg};
use onionmesh_wire::signal::FacilitatedAnswer;
use tokio::sync::mpsc;

/// The sending half of a connection's facilitated queue: answers waiting to be written, which
/// the connection puts into `Facilitated` frames as many at a time as are waiting.
pub type FacilitatedTx = mpsc::Sender<FacilitatedAnswer>;

/// One request's answers: queues each `(req, msg)` and waits for room in the connection's
/// queue.
#[derive(Clone)]
pub struct Answers {
    req: u32,
    out: FacilitatedTx,
}

/// The connection is gone; the request ends silently.
#[derive(Debug)]
pub struct Gone;

impl Answers {
    pub fn new(req: u32, out: FacilitatedTx) -> Self {
        Answers { req, out }
    }

    pub async fn send(&self, msg: DbMsg) -> Result<(), Gone> {
        let answer = FacilitatedAnswer { req: self.req, msg };
        self.out.send(answer).await.map_err(|_| Gone)
    }

    /// Queue `msgs` together, once there is room for all of them (at most the queue's size,
    /// [`super::FACILITATED_QUEUE`]), so the connection finds them side by side and writes
    /// them in as few `Facilitated` frames as fit.
    pub async fn send_all(&self, msgs: Vec<DbMsg>) -> Result<(), Gone> {
        let permits = self.out.reserve_many(msgs.len()).await.map_err(|_| Gone)?;
        for (permit, msg) in permits.zip(msgs) {
            permit.send(FacilitatedAnswer { req: self.req, msg });
        }
        Ok(())
    }

    /// End the request with `reason` and `sentence`.
    pub async fn end(&self, reason: DbEndReason, sentence: &str) -> Result<(), Gone> {
        self.send(DbMsg::End(DbEnd::with_sentence(reason, sentence)))
            .await
    }
}

/// Why a request stops early.
#[derive(Debug, Clone)]
pub enum Stop {
    /// Answer `DB_END` with this reason and sentence.
    End {
        reason: DbEndReason,
        sentence: String,
    },
    /// The connection is gone: nobody to tell.
    Gone,
}

impl Stop {
    pub fn end(reason: DbEndReason, sentence: impl Into<String>) -> Self {
        Stop::End {
            reason,
            sentence: sentence.into(),
        }
    }

    pub fn unavailable(sentence: impl Into<String>) -> Self {
        Stop::end(DbEndReason::UNAVAILABLE, sentence)
    }

    pub fn bad_request(sentence: impl Into<String>) -> Self {
        Stop::end(DbEndReason::BAD_REQUEST, sentence)
    }

    pub fn busy(sentence: impl Into<String>) -> Self {
        Stop::end(DbEndReason::BUSY, sentence)
    }
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Stop::Gone
    }
}

//! How a request task answers: `Facilitated` frames into its connection's bounded queue, and
//! why a request stops.

use onionmesh_wire::db::{DbEnd, DbEndReason, DbMsg};
use onionmesh_wire::{Frame, SignalMsg};
use tokio::sync::mpsc;

/// The sending half of a connection's facilitated queue: encoded `Facilitated` frames.
pub type FacilitatedTx = mpsc::Sender<Vec<u8>>;

/// One request's answers: encodes `Facilitated { req, msg }` and waits for room in the
/// connection's queue.
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
        let frame = SignalMsg::Facilitated { req: self.req, msg }.encode_frame();
        self.out.send(frame).await.map_err(|_| Gone)
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

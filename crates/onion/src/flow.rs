//! SENDME flow control, Tor's numbers.
//!
//! - Circuit: a sender may have [`CIRC_WINDOW_START`] DATA cells unacknowledged; the receiver
//!   sends a circuit SENDME every [`CIRC_WINDOW_INCREMENT`] cells its application *consumed*.
//!   The SENDME is authenticated: it carries the tag (running digest) of the 100th, 200th, ...
//!   DATA cell, which the sender remembered when it sent that cell. A party that did not receive
//!   the cells cannot produce it, so nobody can make a sender flood by acknowledging blind: not
//!   a middle relay (it does not know the digest seed), and not the other endpoint either,
//!   because every tagged cell carries at least [`TAG_CELL_MIN_PADDING`] random bytes.
//! - Stream: [`STREAM_WINDOW_START`] cells, a SENDME (unauthenticated, as in Tor: the circuit
//!   window already bounds what a liar can pull) every [`STREAM_WINDOW_INCREMENT`] consumed.
//!
//! Acknowledging on *consumption* (not on arrival) bounds what a receiver buffers per circuit to
//! one window, and makes a slow reader hold back a fast writer end to end.

use crate::crypto::SendmeTag;
use std::collections::VecDeque;

pub const CIRC_WINDOW_START: u32 = 1000;
pub const CIRC_WINDOW_INCREMENT: u32 = 100;
pub const STREAM_WINDOW_START: u32 = 500;
pub const STREAM_WINDOW_INCREMENT: u32 = 50;
/// Random padding bytes every SENDME-tagged DATA cell carries, so its tag is unpredictable.
pub const TAG_CELL_MIN_PADDING: usize = 16;

const MAX_TAGS: usize = (CIRC_WINDOW_START / CIRC_WINDOW_INCREMENT) as usize;

/// How flow control was broken by the other endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowError {
    /// More DATA than the window allows.
    WindowExceeded,
    /// A SENDME that acknowledges nothing we sent, or with the wrong tag.
    BadSendme,
}

/// Circuit-level windows at one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct CircFlow {
    package: u32,
    deliver: u32,
    sent: u64,
    received: u64,
    consumed_since_sendme: u32,
    sent_tags: VecDeque<SendmeTag>,
    recv_tags: VecDeque<SendmeTag>,
}

impl Default for CircFlow {
    fn default() -> Self {
        CircFlow {
            package: CIRC_WINDOW_START,
            deliver: CIRC_WINDOW_START,
            sent: 0,
            received: 0,
            consumed_since_sendme: 0,
            sent_tags: VecDeque::new(),
            recv_tags: VecDeque::new(),
        }
    }
}

impl CircFlow {
    pub(crate) fn can_send(&self) -> bool {
        self.package > 0
    }

    pub(crate) fn package_window(&self) -> u32 {
        self.package
    }

    pub(crate) fn deliver_window(&self) -> u32 {
        self.deliver
    }

    /// Whether the next DATA cell is one whose tag a SENDME will echo (so it needs padding).
    pub(crate) fn next_is_tagged(&self) -> bool {
        self.sent % u64::from(CIRC_WINDOW_INCREMENT) == u64::from(CIRC_WINDOW_INCREMENT) - 1
    }

    /// We sent a DATA cell with this tag.
    pub(crate) fn on_sent(&mut self, tag: SendmeTag) {
        self.package = self.package.saturating_sub(1);
        if self.next_is_tagged() && self.sent_tags.len() < MAX_TAGS {
            self.sent_tags.push_back(tag);
        }
        self.sent += 1;
    }

    /// A circuit SENDME arrived.
    pub(crate) fn on_sendme(&mut self, tag: Option<SendmeTag>) -> Result<(), FlowError> {
        let expected = self.sent_tags.pop_front().ok_or(FlowError::BadSendme)?;
        if tag != Some(expected) {
            return Err(FlowError::BadSendme);
        }
        self.package += CIRC_WINDOW_INCREMENT;
        Ok(())
    }

    /// A DATA cell with this tag arrived.
    pub(crate) fn on_received(&mut self, tag: SendmeTag) -> Result<(), FlowError> {
        if self.deliver == 0 {
            return Err(FlowError::WindowExceeded);
        }
        self.deliver -= 1;
        if self.received % u64::from(CIRC_WINDOW_INCREMENT) == u64::from(CIRC_WINDOW_INCREMENT) - 1
        {
            // At most one window of unconsumed cells exists, so at most MAX_TAGS tags wait.
            self.recv_tags.push_back(tag);
        }
        self.received += 1;
        Ok(())
    }

    /// The application consumed `cells` DATA cells; returns the SENDME tags to send now.
    pub(crate) fn on_consumed(&mut self, cells: u32) -> Vec<SendmeTag> {
        self.consumed_since_sendme += cells;
        let mut out = Vec::new();
        while self.consumed_since_sendme >= CIRC_WINDOW_INCREMENT {
            let Some(tag) = self.recv_tags.pop_front() else {
                break;
            };
            self.consumed_since_sendme -= CIRC_WINDOW_INCREMENT;
            self.deliver += CIRC_WINDOW_INCREMENT;
            out.push(tag);
        }
        out
    }
}

/// Stream-level windows at one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct StreamFlow {
    package: u32,
    deliver: u32,
    consumed_since_sendme: u32,
}

impl Default for StreamFlow {
    fn default() -> Self {
        StreamFlow {
            package: STREAM_WINDOW_START,
            deliver: STREAM_WINDOW_START,
            consumed_since_sendme: 0,
        }
    }
}

impl StreamFlow {
    pub(crate) fn can_send(&self) -> bool {
        self.package > 0
    }
    pub(crate) fn package_window(&self) -> u32 {
        self.package
    }
    pub(crate) fn on_sent(&mut self) {
        self.package = self.package.saturating_sub(1);
    }
    pub(crate) fn on_sendme(&mut self) -> Result<(), FlowError> {
        if self.package + STREAM_WINDOW_INCREMENT > STREAM_WINDOW_START {
            return Err(FlowError::BadSendme);
        }
        self.package += STREAM_WINDOW_INCREMENT;
        Ok(())
    }
    pub(crate) fn on_received(&mut self) -> Result<(), FlowError> {
        if self.deliver == 0 {
            return Err(FlowError::WindowExceeded);
        }
        self.deliver -= 1;
        Ok(())
    }
    /// Returns how many stream SENDMEs to send.
    pub(crate) fn on_consumed(&mut self, cells: u32) -> u32 {
        self.consumed_since_sendme += cells;
        let n = self.consumed_since_sendme / STREAM_WINDOW_INCREMENT;
        self.consumed_since_sendme %= STREAM_WINDOW_INCREMENT;
        self.deliver += n * STREAM_WINDOW_INCREMENT;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_window_and_authenticated_sendme() {
        let mut tx = CircFlow::default();
        let mut rx = CircFlow::default();
        for i in 0..CIRC_WINDOW_START {
            assert!(tx.can_send());
            let tag = [(i % 251) as u8; 20];
            assert_eq!(tx.next_is_tagged(), (i + 1) % 100 == 0);
            tx.on_sent(tag);
            rx.on_received(tag).unwrap();
        }
        assert!(!tx.can_send());
        assert_eq!(rx.on_received([0; 20]), Err(FlowError::WindowExceeded));
        assert!(rx.on_consumed(99).is_empty());
        let tags = rx.on_consumed(1);
        assert_eq!(tags, vec![[99u8; 20]]);
        // A forged tag is refused; the real one reopens the window.
        let mut forged = tx.clone();
        assert_eq!(forged.on_sendme(Some([1; 20])), Err(FlowError::BadSendme));
        assert_eq!(forged.clone().on_sendme(None), Err(FlowError::BadSendme));
        tx.on_sendme(Some(tags[0])).unwrap();
        assert_eq!(tx.package_window(), 100);
        // Nothing more to acknowledge beyond what was consumed.
        let mut fresh = CircFlow::default();
        assert_eq!(fresh.on_sendme(Some([0; 20])), Err(FlowError::BadSendme));
    }

    #[test]
    fn stream_window() {
        let mut s = StreamFlow::default();
        assert_eq!(s.on_sendme(), Err(FlowError::BadSendme));
        for _ in 0..STREAM_WINDOW_START {
            s.on_sent();
            s.on_received().unwrap();
        }
        assert!(!s.can_send());
        assert_eq!(s.on_received(), Err(FlowError::WindowExceeded));
        assert_eq!(s.on_consumed(120), 2);
        s.on_sendme().unwrap();
        assert_eq!(s.package_window(), 50);
    }
}

//! # onionmesh-wire: the one codec
//!
//! Every message that crosses a WebSocket or a WebRTC data channel is encoded and decoded here,
//! with one [`Reader`] and one [`Writer`]. Nothing else in onionmesh touches raw bytes.
//!
//! Rules this crate keeps:
//! - Decoding never panics and never trusts a length field: every length is checked against what
//!   is left in the frame *and* against a per-field maximum before anything is allocated.
//! - A frame is one transport message (WebSocket and data channels preserve message boundaries),
//!   at most [`MAX_SIGNAL_FRAME`] or [`MAX_LINK_FRAME`] bytes, and a decoded message must consume
//!   its frame exactly ([`Reader::should_be_exhausted`]).
//! - Encoding never fails, panics or truncates: every length-limited field is a bounded type
//!   ([`BoundedBytes`], [`BoundedString`], [`BoundedVec`], [`BridgeAddr`]) whose constructor
//!   refuses what the field cannot carry, and decoders build values through the same
//!   constructors. See [`bounded`].
//! - Command codes are open newtypes: an unknown command decodes to an `Unrecognized` arm so the
//!   caller decides what to do (ignore it, or close the link), rather than the codec failing.
//!
//! ```
//! use onionmesh_wire::{LinkMsg, Frame};
//! let msg = LinkMsg::Data(b"hello".to_vec().try_into()?);
//! let bytes = msg.encode_frame();
//! assert_eq!(LinkMsg::decode_frame(&bytes)?, msg);
//! # Ok::<(), onionmesh_wire::WireError>(())
//! ```
#![forbid(unsafe_code)]

mod addr;
pub mod bounded;
pub mod cell;
pub mod db;
mod error;
mod id;
pub mod kad;
pub mod link;
mod reader;
pub mod signal;
mod time;
mod writer;

pub use addr::{BridgeAddr, MAX_ADDR};
pub use bounded::{BoundedBytes, BoundedString, BoundedVec};
pub use db::{DbMsg, HashName};
pub use error::WireError;
pub use id::{NodeId, PublicKeyBytes, SignatureBytes, ID_LEN, PUBKEY_LEN, SIG_LEN};
pub use link::{LinkCmd, LinkMsg};
pub use reader::Reader;
pub use signal::{PeerRecord, SignalCmd, SignalMsg};
pub use time::Time;
pub use writer::Writer;

/// Largest frame on a bridge WebSocket. SDP with gathered host candidates is a few KiB.
pub const MAX_SIGNAL_FRAME: usize = 32 * 1024;
/// Largest frame on a peer link. Chromium's data-channel limit is 256 KiB; we stay well below so a
/// single message can never monopolise the SCTP association.
pub const MAX_LINK_FRAME: usize = 64 * 1024;

/// A message that is sent as exactly one transport frame.
pub trait Frame: Sized {
    /// The largest encoded size this message type may have.
    const MAX_FRAME: usize;

    /// Append the encoding of `self` to `w`.
    fn write_onto(&self, w: &mut Writer);
    /// Read one message from `r`; the caller checks exhaustion.
    fn take_from(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// Encode as one frame.
    fn encode_frame(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write_onto(&mut w);
        w.into_vec()
    }

    /// Decode one whole frame: checks the frame size, decodes, and requires no trailing bytes.
    fn decode_frame(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > Self::MAX_FRAME {
            return Err(WireError::FrameTooLarge {
                len: bytes.len(),
                max: Self::MAX_FRAME,
            });
        }
        let mut r = Reader::new(bytes);
        let msg = Self::take_from(&mut r)?;
        r.should_be_exhausted()?;
        Ok(msg)
    }
}

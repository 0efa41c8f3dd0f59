//! Onion cells: the fixed 512-byte unit every circuit speaks, and the relay messages inside them.
//!
//! Two layers, as in arti's `tor-cell`:
//!
//! 1. [`Cell`] is the raw cell on a link: circuit id, command, 509-byte body. Every 512-byte
//!    string decodes to a `Cell`, so a link never has to be closed because a *body* was bad; the
//!    onion layer decides what a bad body costs (usually the circuit).
//! 2. [`CellMsg`] is the typed view of a link command and its body ([`CellMsg::decode`]);
//!    [`RelayCell`] is the typed view of a *decrypted* relay body: the relay header
//!    (command, "recognized", stream id, digest, length) and a [`RelayMsg`].
//!
//! ```text
//! cell      | circ id (2) | cmd (1) | body (509)                                              |
//! relay body| rcmd (1) | recognized (2) | stream (2) | digest (4) | len (2) | data (498) ... |
//! ```
//!
//! Command numbers stay clear of Tor's assigned ranges (link commands 0..=15 and 128..=132,
//! relay commands 1..=22, 32..=44), so an onionmesh cell can never be mistaken for a Tor cell:
//! link commands use 0x40..=0x4f, relay commands 0x60..=0x6f, and 0x70..=0x7f is reserved for the
//! chunk/content (`DB_*`) messages, which will be carried as relay messages on a stream.
//!
//! Encoding is canonical: control bodies (CREATE2, CREATED2, DESTROY) are zero-padded and a
//! decoder refuses non-zero padding, so `decode(encode(m)) == m` and nobody can hide bits there.
//! Relay bodies are the exception: after `len` bytes of data the rest is padding the sender fills
//! with random bytes (it makes digests, and so authenticated SENDMEs, unpredictable), and the
//! decoder ignores it.

use crate::{BoundedBytes, BoundedString, Frame, NodeId, Reader, WireError, Writer, ID_LEN};
/// Every cell is exactly this long.
pub const CELL_LEN: usize = 512;
/// Bytes of body after the circuit id and the command.
pub const BODY_LEN: usize = 509;
/// Bytes of relay header at the start of a decrypted relay body.
pub const RELAY_HEADER_LEN: usize = 11;
/// Most data bytes in one relay cell (the spec's "payload for streams is 498 B").
pub const RELAY_DATA_LEN: usize = BODY_LEN - RELAY_HEADER_LEN;
/// Longest service name in a BEGIN.
pub const MAX_SERVICE_NAME: usize = 64;
/// Length of the tag an authenticated SENDME carries.
pub const SENDME_TAG_LEN: usize = 20;
/// Version byte of an authenticated (v1) SENDME.
pub const SENDME_V1: u8 = 1;

/// Field positions within a cell and within a relay body.
pub mod field {
    use std::ops::Range;
    /// Cell: circuit id, big-endian.
    pub const CIRC_ID: Range<usize> = 0..2;
    /// Cell: link command.
    pub const COMMAND: usize = 2;
    /// Cell: body.
    pub const BODY: Range<usize> = 3..512;

    /// Relay body: relay command.
    pub const RELAY_CMD: usize = 0;
    /// Relay body: zero when the cell is meant for the hop that just removed its layer.
    pub const RECOGNIZED: Range<usize> = 1..3;
    /// Relay body: stream id, 0 for circuit-level messages.
    pub const STREAM_ID: Range<usize> = 3..5;
    /// Relay body: first 4 bytes of the running digest.
    pub const DIGEST: Range<usize> = 5..9;
    /// Relay body: number of data bytes that follow the header.
    pub const LENGTH: Range<usize> = 9..11;
    /// Relay body: data, then padding.
    pub const DATA: Range<usize> = 11..509;
}

/// A cell body: opaque bytes (encrypted, for relay cells).
pub type CellBody = [u8; BODY_LEN];

/// A circuit id on one link. 0 means "no circuit" and is only valid on PADDING cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CircId(pub u16);

/// A link-level cell command (open: unknown values decode to [`CellMsg::Unrecognized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellCmd(pub u8);

impl CellCmd {
    /// Create a circuit: handshake type and onionskin.
    pub const CREATE2: CellCmd = CellCmd(0x40);
    /// Answer to CREATE2: the handshake reply.
    pub const CREATED2: CellCmd = CellCmd(0x41);
    /// An onion-encrypted relay body.
    pub const RELAY: CellCmd = CellCmd(0x42);
    /// Like RELAY, but counted: only these may carry EXTEND2, and at most 8 per circuit.
    pub const RELAY_EARLY: CellCmd = CellCmd(0x43);
    /// Tear the circuit down; 1-byte reason.
    pub const DESTROY: CellCmd = CellCmd(0x44);
    /// Link padding, ignored.
    pub const PADDING: CellCmd = CellCmd(0x45);
}

/// A relay command, inside a decrypted relay body (open newtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelayCmd(pub u8);

impl RelayCmd {
    pub const EXTEND2: RelayCmd = RelayCmd(0x60);
    pub const EXTENDED2: RelayCmd = RelayCmd(0x61);
    /// Open a stream to a named service at this (last) hop.
    pub const BEGIN: RelayCmd = RelayCmd(0x62);
    /// The stream is open.
    pub const CONNECTED: RelayCmd = RelayCmd(0x63);
    pub const DATA: RelayCmd = RelayCmd(0x64);
    pub const END: RelayCmd = RelayCmd(0x65);
    pub const SENDME: RelayCmd = RelayCmd(0x66);
    pub const TRUNCATE: RelayCmd = RelayCmd(0x67);
    pub const TRUNCATED: RelayCmd = RelayCmd(0x68);
    /// Long-range padding: recognized, then dropped.
    pub const DROP: RelayCmd = RelayCmd(0x69);
    /// First code of the range kept free for the chunk/content (`DB_*`) messages.
    pub const DB_FIRST: RelayCmd = RelayCmd(0x70);
    /// Last code of that range.
    pub const DB_LAST: RelayCmd = RelayCmd(0x7f);
}

/// Handshake type in CREATE2 / EXTEND2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandshakeType(pub u16);

impl HandshakeType {
    /// The ntor-style handshake on secp256k1 (`onionmesh-ntor-k256-v1`).
    pub const NTOR_K256: HandshakeType = HandshakeType(0x4001);
}

/// Why a circuit was destroyed (DESTROY, TRUNCATED). Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestroyReason(pub u8);

impl DestroyReason {
    pub const NONE: DestroyReason = DestroyReason(0);
    /// The other side broke the protocol.
    pub const PROTOCOL: DestroyReason = DestroyReason(1);
    pub const INTERNAL: DestroyReason = DestroyReason(2);
    /// The client asked for it (TRUNCATE, or a DESTROY from the proxy).
    pub const REQUESTED: DestroyReason = DestroyReason(3);
    /// A router is over one of its caps (circuits, CREATE rate, queues).
    pub const RESOURCELIMIT: DestroyReason = DestroyReason(5);
    /// EXTEND2 could not reach the next hop.
    pub const CONNECTFAILED: DestroyReason = DestroyReason(6);
    /// The next hop did not hold the key the client expected.
    pub const OR_IDENTITY: DestroyReason = DestroyReason(7);
    /// A link under the circuit closed.
    pub const CHANNEL_CLOSED: DestroyReason = DestroyReason(8);
    pub const FINISHED: DestroyReason = DestroyReason(9);
    /// Idle or building for too long.
    pub const TIMEOUT: DestroyReason = DestroyReason(10);
    /// A cell was not recognized by the end of the circuit: modified, reordered or replayed.
    pub const BAD_CELL: DestroyReason = DestroyReason(0x40);

    /// A short English name for logs and the page.
    pub fn name(self) -> &'static str {
        match self {
            Self::NONE => "none",
            Self::PROTOCOL => "protocol violation",
            Self::INTERNAL => "internal error",
            Self::REQUESTED => "requested",
            Self::RESOURCELIMIT => "resource limit",
            Self::CONNECTFAILED => "could not connect to the next hop",
            Self::OR_IDENTITY => "wrong router identity",
            Self::CHANNEL_CLOSED => "link closed",
            Self::FINISHED => "finished",
            Self::TIMEOUT => "timeout",
            Self::BAD_CELL => "modified, reordered or replayed cell",
            _ => "unknown reason",
        }
    }
}

/// Why a stream ended (END). Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndReason(pub u8);

impl EndReason {
    pub const MISC: EndReason = EndReason(1);
    /// No service of that name at this hop (or this hop is not the last one).
    pub const NO_SUCH_SERVICE: EndReason = EndReason(2);
    pub const RESOURCELIMIT: EndReason = EndReason(3);
    /// Closed normally.
    pub const DONE: EndReason = EndReason(6);
    pub const PROTOCOL: EndReason = EndReason(7);
    pub const TIMEOUT: EndReason = EndReason(8);

    /// A short lower-case description for logs and the JS API (`"done"`, `"no such service"`,
    /// `"resource limit"`, `"protocol error"`, `"timeout"`; `"misc"` for any other code).
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::DONE => "done",
            EndReason::NO_SUCH_SERVICE => "no such service",
            EndReason::RESOURCELIMIT => "resource limit",
            EndReason::PROTOCOL => "protocol error",
            EndReason::TIMEOUT => "timeout",
            _ => "misc",
        }
    }
}

/// A raw cell as it crosses a link. Every 512-byte string is a valid `Cell`; the body is
/// interpreted by [`CellMsg::decode`] (link commands) or, after decryption, [`RelayCell::decode`].
#[derive(Clone, PartialEq, Eq)]
pub struct Cell {
    pub circ_id: CircId,
    pub cmd: CellCmd,
    pub body: CellBody,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("circ_id", &self.circ_id.0)
            .field("cmd", &format_args!("0x{:02x}", self.cmd.0))
            .field("body", &format_args!("{}..", hex::encode(&self.body[..16])))
            .finish()
    }
}

impl Cell {
    /// A cell from a typed message.
    pub fn new(circ_id: CircId, msg: &CellMsg) -> Cell {
        let (cmd, body) = msg.encode();
        Cell { circ_id, cmd, body }
    }

    /// The exact 512 bytes.
    pub fn to_bytes(&self) -> [u8; CELL_LEN] {
        let mut out = [0u8; CELL_LEN];
        out[field::CIRC_ID].copy_from_slice(&self.circ_id.0.to_be_bytes());
        out[field::COMMAND] = self.cmd.0;
        out[field::BODY].copy_from_slice(&self.body);
        out
    }

    /// From exactly 512 bytes; cannot fail.
    pub fn from_bytes(bytes: &[u8; CELL_LEN]) -> Cell {
        let mut body = [0u8; BODY_LEN];
        body.copy_from_slice(&bytes[field::BODY]);
        Cell {
            circ_id: CircId(u16::from_be_bytes([bytes[0], bytes[1]])),
            cmd: CellCmd(bytes[field::COMMAND]),
            body,
        }
    }

    /// The typed link message.
    pub fn msg(&self) -> Result<CellMsg, WireError> {
        CellMsg::decode(self.cmd, &self.body)
    }
}

impl Frame for Cell {
    const MAX_FRAME: usize = CELL_LEN;

    fn write_onto(&self, w: &mut Writer) {
        w.put_bytes(&self.to_bytes());
    }

    fn take_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Cell::from_bytes(&r.take_array()?))
    }
}

/// The typed view of a link cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellMsg {
    Create2 {
        htype: HandshakeType,
        hdata: Create2Hdata,
    },
    Created2 {
        hdata: Created2Hdata,
    },
    /// The (encrypted) relay body.
    Relay(CellBody),
    RelayEarly(CellBody),
    Destroy(DestroyReason),
    Padding,
    Unrecognized {
        cmd: u8,
        body: CellBody,
    },
}

/// Most handshake bytes in CREATE2 (body minus htype and hlen).
pub const MAX_CREATE2_HDATA: usize = BODY_LEN - 4;
/// Most handshake bytes in CREATED2 (body minus hlen).
pub const MAX_CREATED2_HDATA: usize = BODY_LEN - 2;

/// The handshake bytes of a CREATE2: at most [`MAX_CREATE2_HDATA`].
pub type Create2Hdata = BoundedBytes<MAX_CREATE2_HDATA>;
/// The handshake bytes of a CREATED2: at most [`MAX_CREATED2_HDATA`].
pub type Created2Hdata = BoundedBytes<MAX_CREATED2_HDATA>;

impl CellMsg {
    /// The command and body, zero-padded. Cannot fail: the handshake fields are bounded so
    /// that they fit the body.
    pub fn encode(&self) -> (CellCmd, CellBody) {
        let mut w = Writer::new();
        let cmd = match self {
            CellMsg::Create2 { htype, hdata } => {
                w.put_u16(htype.0);
                w.put_var16(hdata);
                CellCmd::CREATE2
            }
            CellMsg::Created2 { hdata } => {
                w.put_var16(hdata);
                CellCmd::CREATED2
            }
            CellMsg::Relay(body) => return (CellCmd::RELAY, *body),
            CellMsg::RelayEarly(body) => return (CellCmd::RELAY_EARLY, *body),
            CellMsg::Destroy(reason) => {
                w.put_u8(reason.0);
                CellCmd::DESTROY
            }
            CellMsg::Padding => CellCmd::PADDING,
            CellMsg::Unrecognized { cmd, body } => return (CellCmd(*cmd), *body),
        };
        let mut body = [0u8; BODY_LEN];
        let bytes = w.into_vec();
        body[..bytes.len()].copy_from_slice(&bytes);
        (cmd, body)
    }

    /// Interpret a body. Never panics; lengths are checked against the body.
    pub fn decode(cmd: CellCmd, body: &CellBody) -> Result<CellMsg, WireError> {
        let mut r = Reader::new(body);
        let msg = match cmd {
            CellCmd::CREATE2 => CellMsg::Create2 {
                htype: HandshakeType(r.take_u16()?),
                hdata: r.take_bytes16()?,
            },
            CellCmd::CREATED2 => CellMsg::Created2 {
                hdata: r.take_bytes16()?,
            },
            CellCmd::RELAY => return Ok(CellMsg::Relay(*body)),
            CellCmd::RELAY_EARLY => return Ok(CellMsg::RelayEarly(*body)),
            CellCmd::DESTROY => CellMsg::Destroy(DestroyReason(r.take_u8()?)),
            // Padding content is meaningless by definition.
            CellCmd::PADDING => return Ok(CellMsg::Padding),
            CellCmd(cmd) => return Ok(CellMsg::Unrecognized { cmd, body: *body }),
        };
        if r.take_rest().iter().any(|&b| b != 0) {
            return Err(WireError::BadValue("non-zero padding after a control cell"));
        }
        Ok(msg)
    }
}

/// A stream id within a circuit; 0 is the circuit itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId(pub u16);

/// A decrypted relay body, typed. The `recognized` and `digest` fields are the relay crypto's
/// business ([`RelayCell::encode`] leaves them zero; the onion layer fills them in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCell {
    pub stream: StreamId,
    pub msg: RelayMsg,
}

/// The messages a relay cell carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMsg {
    /// Ask the last hop to extend the circuit to `target` with this onionskin.
    Extend2 {
        target: NodeId,
        htype: HandshakeType,
        hdata: Extend2Hdata,
    },
    /// The new hop's handshake reply.
    Extended2 {
        hdata: Extended2Hdata,
    },
    /// Open a stream to a named service at the last hop.
    Begin {
        service: ServiceName,
    },
    Connected,
    /// Stream bytes: at most [`RELAY_DATA_LEN`] per cell.
    Data(RelayData),
    End(EndReason),
    /// Flow control. A circuit-level SENDME carries the tag (a digest) of the cell it
    /// acknowledges; a stream-level SENDME carries none.
    Sendme {
        tag: Option<[u8; SENDME_TAG_LEN]>,
    },
    /// Remove every hop after the one this is addressed to.
    Truncate,
    Truncated(DestroyReason),
    Drop,
    Unrecognized {
        cmd: u8,
        data: RelayData,
    },
}

/// Most handshake bytes in an EXTEND2 (data minus target, htype and hlen).
pub const MAX_EXTEND2_HDATA: usize = RELAY_DATA_LEN - ID_LEN - 4;
/// Most handshake bytes in an EXTENDED2.
pub const MAX_EXTENDED2_HDATA: usize = RELAY_DATA_LEN - 2;

/// The data of one relay cell: at most [`RELAY_DATA_LEN`] bytes.
pub type RelayData = BoundedBytes<RELAY_DATA_LEN>;
/// The handshake bytes of an EXTEND2: at most [`MAX_EXTEND2_HDATA`].
pub type Extend2Hdata = BoundedBytes<MAX_EXTEND2_HDATA>;
/// The handshake bytes of an EXTENDED2: at most [`MAX_EXTENDED2_HDATA`].
pub type Extended2Hdata = BoundedBytes<MAX_EXTENDED2_HDATA>;
/// The service name of a BEGIN: at most [`MAX_SERVICE_NAME`] bytes.
pub type ServiceName = BoundedString<MAX_SERVICE_NAME>;

// Every relay message fits the data part of one cell (see `RelayMsg::write_data`).
const _: () = assert!(ID_LEN + 2 + 2 + MAX_EXTEND2_HDATA <= RELAY_DATA_LEN);
const _: () = assert!(2 + MAX_EXTENDED2_HDATA <= RELAY_DATA_LEN);
const _: () = assert!(2 + MAX_SERVICE_NAME <= RELAY_DATA_LEN);
const _: () = assert!(1 + 2 + SENDME_TAG_LEN <= RELAY_DATA_LEN);

impl RelayMsg {
    /// The relay command for this message.
    pub fn cmd(&self) -> RelayCmd {
        match self {
            RelayMsg::Extend2 { .. } => RelayCmd::EXTEND2,
            RelayMsg::Extended2 { .. } => RelayCmd::EXTENDED2,
            RelayMsg::Begin { .. } => RelayCmd::BEGIN,
            RelayMsg::Connected => RelayCmd::CONNECTED,
            RelayMsg::Data(_) => RelayCmd::DATA,
            RelayMsg::End(_) => RelayCmd::END,
            RelayMsg::Sendme { .. } => RelayCmd::SENDME,
            RelayMsg::Truncate => RelayCmd::TRUNCATE,
            RelayMsg::Truncated(_) => RelayCmd::TRUNCATED,
            RelayMsg::Drop => RelayCmd::DROP,
            RelayMsg::Unrecognized { cmd, .. } => RelayCmd(*cmd),
        }
    }

    /// The data part: at most [`RELAY_DATA_LEN`] bytes, because every field is bounded so
    /// that it fits (the `const` assertions above the `impl`).
    fn write_data(&self, w: &mut Writer) {
        match self {
            RelayMsg::Extend2 {
                target,
                htype,
                hdata,
            } => {
                w.put_bytes(&target.0);
                w.put_u16(htype.0);
                w.put_var16(hdata);
            }
            RelayMsg::Extended2 { hdata } => {
                w.put_var16(hdata);
            }
            RelayMsg::Begin { service } => {
                w.put_str16(service);
            }
            RelayMsg::Connected | RelayMsg::Truncate | RelayMsg::Drop => {}
            RelayMsg::Data(d) => w.put_bytes(d),
            RelayMsg::End(r) => w.put_u8(r.0),
            RelayMsg::Sendme { tag } => {
                if let Some(tag) = tag {
                    w.put_u8(SENDME_V1);
                    w.put_u16(SENDME_TAG_LEN as u16);
                    w.put_bytes(tag);
                }
            }
            RelayMsg::Truncated(r) => w.put_u8(r.0),
            RelayMsg::Unrecognized { data, .. } => w.put_bytes(data),
        }
    }

    /// Interpret `data` (exactly the `len` bytes after the header) for `cmd`.
    pub fn decode(cmd: RelayCmd, data: &[u8]) -> Result<RelayMsg, WireError> {
        let mut r = Reader::new(data);
        let msg = match cmd {
            RelayCmd::EXTEND2 => RelayMsg::Extend2 {
                target: NodeId(r.take_array()?),
                htype: HandshakeType(r.take_u16()?),
                hdata: r.take_bytes16()?,
            },
            RelayCmd::EXTENDED2 => RelayMsg::Extended2 {
                hdata: r.take_bytes16()?,
            },
            RelayCmd::BEGIN => RelayMsg::Begin {
                service: r.take_string16()?,
            },
            RelayCmd::CONNECTED => RelayMsg::Connected,
            RelayCmd::DATA => RelayMsg::Data(r.take_rest_bounded()?),
            RelayCmd::END => RelayMsg::End(EndReason(r.take_u8()?)),
            RelayCmd::SENDME => {
                if r.remaining() == 0 {
                    RelayMsg::Sendme { tag: None }
                } else {
                    if r.take_u8()? != SENDME_V1 {
                        return Err(WireError::BadValue("unknown SENDME version"));
                    }
                    let tag = r.take_var16(SENDME_TAG_LEN)?;
                    let tag: [u8; SENDME_TAG_LEN] = tag
                        .try_into()
                        .map_err(|_| WireError::BadValue("short SENDME tag"))?;
                    RelayMsg::Sendme { tag: Some(tag) }
                }
            }
            RelayCmd::TRUNCATE => RelayMsg::Truncate,
            RelayCmd::TRUNCATED => RelayMsg::Truncated(DestroyReason(r.take_u8()?)),
            RelayCmd::DROP => RelayMsg::Drop,
            RelayCmd(cmd) => RelayMsg::Unrecognized {
                cmd,
                data: r.take_rest_bounded()?,
            },
        };
        r.should_be_exhausted()?;
        Ok(msg)
    }
}

impl RelayCell {
    pub fn new(stream: StreamId, msg: RelayMsg) -> RelayCell {
        RelayCell { stream, msg }
    }

    /// The plaintext body with `recognized` and `digest` zero and zero padding after the data.
    pub fn encode(&self) -> CellBody {
        let mut w = Writer::new();
        self.msg.write_data(&mut w);
        let data = w.into_vec();
        let mut body = [0u8; BODY_LEN];
        body[field::RELAY_CMD] = self.msg.cmd().0;
        body[field::STREAM_ID].copy_from_slice(&self.stream.0.to_be_bytes());
        // write_data never writes more than RELAY_DATA_LEN bytes: every field is bounded so
        // that the message fits (the const assertions next to `RelayData`), so this slice is
        // in range and the length fits a u16.
        let len = data.len();
        body[field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
        body[field::DATA.start..field::DATA.start + len].copy_from_slice(&data);
        body
    }

    /// The number of data bytes `encode` writes: padding starts at `field::DATA.start + this`.
    pub fn data_len(&self) -> usize {
        let mut w = Writer::new();
        self.msg.write_data(&mut w);
        w.len()
    }

    /// Parse a decrypted, recognized body. Padding after the data is ignored (see module docs);
    /// `recognized` and `digest` are not checked here.
    pub fn decode(body: &CellBody) -> Result<RelayCell, WireError> {
        let len = usize::from(u16::from_be_bytes([
            body[field::LENGTH.start],
            body[field::LENGTH.start + 1],
        ]));
        if len > RELAY_DATA_LEN {
            return Err(WireError::LengthTooLarge {
                len,
                max: RELAY_DATA_LEN,
            });
        }
        let data = &body[field::DATA.start..field::DATA.start + len];
        let stream = StreamId(u16::from_be_bytes([
            body[field::STREAM_ID.start],
            body[field::STREAM_ID.start + 1],
        ]));
        let msg = RelayMsg::decode(RelayCmd(body[field::RELAY_CMD]), data)?;
        Ok(RelayCell { stream, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_body() -> impl Strategy<Value = CellBody> {
        proptest::collection::vec(any::<u8>(), BODY_LEN).prop_map(|v| v.try_into().unwrap())
    }

    fn arb_cell_msg() -> impl Strategy<Value = CellMsg> {
        prop_oneof![
            (
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_CREATE2_HDATA)
            )
                .prop_map(|(h, hdata)| CellMsg::Create2 {
                    htype: HandshakeType(h),
                    hdata: Create2Hdata::new(hdata).unwrap()
                }),
            proptest::collection::vec(any::<u8>(), 0..=MAX_CREATED2_HDATA).prop_map(|hdata| {
                CellMsg::Created2 {
                    hdata: Created2Hdata::new(hdata).unwrap(),
                }
            }),
            arb_body().prop_map(CellMsg::Relay),
            arb_body().prop_map(CellMsg::RelayEarly),
            any::<u8>().prop_map(|r| CellMsg::Destroy(DestroyReason(r))),
            Just(CellMsg::Padding),
            (
                any::<u8>().prop_filter("unassigned", |c| !(0x40..=0x45).contains(c)),
                arb_body()
            )
                .prop_map(|(cmd, body)| CellMsg::Unrecognized { cmd, body }),
        ]
    }

    fn arb_relay_msg() -> impl Strategy<Value = RelayMsg> {
        prop_oneof![
            (
                any::<[u8; 20]>(),
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_EXTEND2_HDATA)
            )
                .prop_map(|(t, h, hdata)| RelayMsg::Extend2 {
                    target: NodeId(t),
                    htype: HandshakeType(h),
                    hdata: Extend2Hdata::new(hdata).unwrap()
                }),
            proptest::collection::vec(any::<u8>(), 0..=MAX_EXTENDED2_HDATA).prop_map(|hdata| {
                RelayMsg::Extended2 {
                    hdata: Extended2Hdata::new(hdata).unwrap(),
                }
            }),
            "[a-z0-9.-]{0,64}".prop_map(|service| RelayMsg::Begin {
                service: ServiceName::new(service).unwrap()
            }),
            Just(RelayMsg::Connected),
            proptest::collection::vec(any::<u8>(), 0..=RELAY_DATA_LEN)
                .prop_map(|d| RelayMsg::Data(RelayData::new(d).unwrap())),
            any::<u8>().prop_map(|r| RelayMsg::End(EndReason(r))),
            proptest::option::of(any::<[u8; 20]>()).prop_map(|tag| RelayMsg::Sendme { tag }),
            Just(RelayMsg::Truncate),
            any::<u8>().prop_map(|r| RelayMsg::Truncated(DestroyReason(r))),
            Just(RelayMsg::Drop),
            (
                0x70u8..=0x7f,
                proptest::collection::vec(any::<u8>(), 0..=RELAY_DATA_LEN)
            )
                .prop_map(|(cmd, data)| RelayMsg::Unrecognized {
                    cmd,
                    data: RelayData::new(data).unwrap()
                }),
        ]
    }

    proptest! {
        #[test]
        fn cell_round_trip(circ in any::<u16>(), msg in arb_cell_msg()) {
            let cell = Cell::new(CircId(circ), &msg);
            let bytes = cell.encode_frame();
            prop_assert_eq!(bytes.len(), CELL_LEN);
            let back = Cell::decode_frame(&bytes).unwrap();
            prop_assert_eq!(&back, &cell);
            prop_assert_eq!(back.msg().unwrap(), msg);
        }

        #[test]
        fn relay_round_trip(stream in any::<u16>(), msg in arb_relay_msg(), pad in any::<u8>()) {
            let cell = RelayCell::new(StreamId(stream), msg);
            let mut body = cell.encode();
            // Padding is ignored whatever it holds.
            let start = field::DATA.start + cell.data_len();
            for b in &mut body[start..] { *b = pad; }
            prop_assert_eq!(RelayCell::decode(&body).unwrap(), cell);
        }

        #[test]
        fn arbitrary_cells_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(cell) = Cell::decode_frame(&bytes) {
                let _ = cell.msg();
                let _ = RelayCell::decode(&cell.body);
            }
        }

        #[test]
        fn arbitrary_relay_bodies_never_panic(body in arb_body(), cmd in 0x5eu8..0x72) {
            let mut body = body;
            body[field::RELAY_CMD] = cmd;
            // Make the length plausible half of the time, to reach the message decoders.
            if body[0] & 1 == 0 {
                let len = (u16::from(body[1]) * 2).min(RELAY_DATA_LEN as u16);
                body[field::LENGTH].copy_from_slice(&len.to_be_bytes());
            }
            let _ = RelayCell::decode(&body);
        }
    }

    #[test]
    fn layout_vector() {
        let cell = Cell::new(
            CircId(0x8001),
            &CellMsg::Destroy(DestroyReason::RESOURCELIMIT),
        );
        let bytes = cell.to_bytes();
        assert_eq!(hex::encode(&bytes[..5]), "8001440500");
        assert!(bytes[5..].iter().all(|&b| b == 0));

        let relay = RelayCell::new(
            StreamId(7),
            RelayMsg::Data(RelayData::from_slice(b"hi").unwrap()),
        )
        .encode();
        assert_eq!(hex::encode(&relay[..13]), "64000000070000000000026869");

        let sendme = RelayCell::new(
            StreamId(0),
            RelayMsg::Sendme {
                tag: Some([0xaa; 20]),
            },
        )
        .encode();
        assert_eq!(
            hex::encode(&sendme[..11 + 23]),
            format!("660000000000000000001701{}{}", "0014", "aa".repeat(20))
        );
    }

    #[test]
    fn bad_lengths_are_refused() {
        let mut body = [0u8; BODY_LEN];
        body[field::RELAY_CMD] = RelayCmd::DATA.0;
        body[field::LENGTH].copy_from_slice(&499u16.to_be_bytes());
        assert_eq!(
            RelayCell::decode(&body),
            Err(WireError::LengthTooLarge { len: 499, max: 498 })
        );
        // CREATE2 claiming more handshake bytes than the body holds.
        let mut body = [0u8; BODY_LEN];
        body[2..4].copy_from_slice(&600u16.to_be_bytes());
        assert!(matches!(
            CellMsg::decode(CellCmd::CREATE2, &body),
            Err(WireError::LengthTooLarge { .. })
        ));
        // Non-zero padding after a DESTROY.
        let mut body = [0u8; BODY_LEN];
        body[1] = 1;
        assert!(CellMsg::decode(CellCmd::DESTROY, &body).is_err());
        // END with trailing bytes inside its declared length.
        assert_eq!(
            RelayMsg::decode(RelayCmd::END, &[1, 2]),
            Err(WireError::TrailingBytes(1))
        );
        // A short cell is not a cell.
        assert!(Cell::decode_frame(&[0u8; 511]).is_err());
        assert!(Cell::decode_frame(&[0u8; 513]).is_err());
    }

    #[test]
    fn constructors_accept_exactly_the_maximum_and_refuse_one_more() {
        assert!(RelayData::new(vec![0; RELAY_DATA_LEN]).is_ok());
        assert_eq!(
            RelayData::new(vec![0; RELAY_DATA_LEN + 1]),
            Err(WireError::LengthTooLarge {
                len: RELAY_DATA_LEN + 1,
                max: RELAY_DATA_LEN
            })
        );
        assert!(Create2Hdata::new(vec![0; MAX_CREATE2_HDATA]).is_ok());
        assert!(Create2Hdata::new(vec![0; MAX_CREATE2_HDATA + 1]).is_err());
        assert!(Created2Hdata::new(vec![0; MAX_CREATED2_HDATA]).is_ok());
        assert!(Created2Hdata::new(vec![0; MAX_CREATED2_HDATA + 1]).is_err());
        assert!(Extend2Hdata::new(vec![0; MAX_EXTEND2_HDATA]).is_ok());
        assert!(Extend2Hdata::new(vec![0; MAX_EXTEND2_HDATA + 1]).is_err());
        assert!(Extended2Hdata::new(vec![0; MAX_EXTENDED2_HDATA]).is_ok());
        assert!(Extended2Hdata::new(vec![0; MAX_EXTENDED2_HDATA + 1]).is_err());
        assert!(ServiceName::new("s".repeat(MAX_SERVICE_NAME)).is_ok());
        assert!(ServiceName::new("s".repeat(MAX_SERVICE_NAME + 1)).is_err());
    }

    #[test]
    fn largest_fields_fill_a_cell_exactly_and_round_trip() {
        let full = [
            RelayMsg::Data(RelayData::new(vec![1; RELAY_DATA_LEN]).unwrap()),
            RelayMsg::Extend2 {
                target: NodeId([2; 20]),
                htype: HandshakeType::NTOR_K256,
                hdata: Extend2Hdata::new(vec![3; MAX_EXTEND2_HDATA]).unwrap(),
            },
            RelayMsg::Extended2 {
                hdata: Extended2Hdata::new(vec![4; MAX_EXTENDED2_HDATA]).unwrap(),
            },
        ];
        for msg in full {
            let cell = RelayCell::new(StreamId(1), msg);
            assert_eq!(cell.data_len(), RELAY_DATA_LEN);
            assert_eq!(RelayCell::decode(&cell.encode()).unwrap(), cell);
        }
        let create = CellMsg::Create2 {
            htype: HandshakeType::NTOR_K256,
            hdata: Create2Hdata::new(vec![5; MAX_CREATE2_HDATA]).unwrap(),
        };
        let (cmd, body) = create.encode();
        assert_eq!(CellMsg::decode(cmd, &body).unwrap(), create);
    }
}

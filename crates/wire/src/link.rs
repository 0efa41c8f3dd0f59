//! Frames on a peer link (a WebRTC data channel). Right after the channel opens both sides run the
//! CERTS-style authentication: each sends a fresh [`LinkMsg::Nonce`], then a [`LinkMsg::Cert`]
//! signing both DTLS fingerprints and the other side's nonce. Only then may other frames flow.
//!
//! Layout: `[cmd: u8][body]`. Codes 0x10..=0x1f are reserved for onion cells; 0x10 carries one
//! 512-byte [`Cell`]; 0x11 carries 1 to [`MAX_CELLS_PER_FRAME`] cells (`[count: u8][cells]`), so
//! that a busy link sends one data-channel message per burst of cells instead of one per cell.
//! Codes 0x20..=0x2f carry the DHT: a Kademlia frame for the peer itself ([`LinkMsg::Kad`]), and
//! the relay through an introducer ([`LinkMsg::Relay`] in, [`LinkMsg::Relayed`] out), which lets
//! a node reach a DHT node it has no link to.

use crate::cell::{Cell, CELL_LEN};
use crate::kad::KadBytes;
use crate::{
    BoundedBytes, BoundedString, BoundedVec, Frame, NodeId, PublicKeyBytes, Reader, SignatureBytes,
    WireError, Writer, MAX_LINK_FRAME,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCmd(pub u8);

impl LinkCmd {
    pub const NONCE: LinkCmd = LinkCmd(0x01);
    pub const CERT: LinkCmd = LinkCmd(0x02);
    pub const DATA: LinkCmd = LinkCmd(0x03);
    pub const CLOSE: LinkCmd = LinkCmd(0x04);
    /// "I am still here": sent on an idle authenticated link so that the peer can tell a
    /// silent link (a closed tab, a crashed page) from a quiet one. No body.
    pub const KEEPALIVE: LinkCmd = LinkCmd(0x05);
    /// One onion cell (exactly [`CELL_LEN`] bytes follow).
    pub const CELL: LinkCmd = LinkCmd(0x10);
    /// One Kademlia frame (`onionmesh_wire::kad::KadMsg`) for the peer at the other end.
    pub const KAD: LinkCmd = LinkCmd(0x20);
    /// "Pass this Kademlia frame on to your peer X": sender -> introducer.
    pub const RELAY: LinkCmd = LinkCmd(0x21);
    /// "Peer X (with this key) sent you this Kademlia frame": introducer -> target.
    pub const RELAYED: LinkCmd = LinkCmd(0x22);
    /// "I have no link to X; here is your frame back": introducer -> sender.
    pub const RELAY_FAILED: LinkCmd = LinkCmd(0x23);
    /// Several onion cells: a count byte, then exactly that many cells.
    pub const CELLS: LinkCmd = LinkCmd(0x11);
}

/// Most cells in one [`LinkMsg::Cells`] frame (16 KiB of cells: a data-channel message size that
/// every browser sends efficiently).
pub const MAX_CELLS_PER_FRAME: usize = 120;
const _: () = assert!(2 + MAX_CELLS_PER_FRAME * CELL_LEN <= MAX_LINK_FRAME);

pub const NONCE_LEN: usize = 32;
/// Largest application payload in one `Data` frame.
pub const MAX_DATA: usize = MAX_LINK_FRAME - 5;
/// Longest reason in a `Close`, in UTF-8 bytes.
pub const MAX_CLOSE_REASON: usize = 512;

/// The payload of one `Data` frame: at most [`MAX_DATA`] bytes.
pub type LinkData = BoundedBytes<MAX_DATA>;
/// The reason of a `Close`: at most [`MAX_CLOSE_REASON`] bytes.
pub type CloseReason = BoundedString<MAX_CLOSE_REASON>;
/// The body of an unknown command (everything after the command byte).
pub type UnrecognizedBody = BoundedBytes<{ MAX_LINK_FRAME - 1 }>;

/// The cells of one [`LinkMsg::Cells`]: 1 to [`MAX_CELLS_PER_FRAME`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellBatch(BoundedVec<Cell, MAX_CELLS_PER_FRAME>);

impl CellBatch {
    /// Errors: [`WireError::BadValue`] for no cells, [`WireError::LengthTooLarge`] for more than
    /// [`MAX_CELLS_PER_FRAME`].
    pub fn new(cells: Vec<Cell>) -> Result<CellBatch, WireError> {
        if cells.is_empty() {
            return Err(WireError::BadValue("a cell batch with no cells"));
        }
        Ok(CellBatch(BoundedVec::new(cells)?))
    }

    pub fn as_slice(&self) -> &[Cell] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Cell> {
        self.0.into_vec()
    }
}

impl std::ops::Deref for CellBatch {
    type Target = [Cell];
    fn deref(&self) -> &[Cell] {
        &self.0
    }
}

impl TryFrom<Vec<Cell>> for CellBatch {
    type Error = WireError;
    fn try_from(cells: Vec<Cell>) -> Result<CellBatch, WireError> {
        CellBatch::new(cells)
    }
}

impl IntoIterator for CellBatch {
    type Item = Cell;
    type IntoIter = std::vec::IntoIter<Cell>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a CellBatch {
    type Item = &'a Cell;
    type IntoIter = std::slice::Iter<'a, Cell>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

// The largest Kademlia frame fits in one link frame (a `Relay`/`KadFrom` carries one).
const _: () = assert!(crate::kad::MAX_KAD_FRAME <= MAX_DATA);

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkMsg {
    /// A fresh challenge the other side must sign.
    Nonce([u8; NONCE_LEN]),
    /// The sender's ID public key and its signature over both fingerprints and our nonce.
    Cert {
        pubkey: PublicKeyBytes,
        sig: SignatureBytes,
    },
    /// Application bytes between two authenticated peers.
    Data(LinkData),
    /// The sender is closing the link, and why.
    Close {
        reason: CloseReason,
    },
    /// The sender is alive (see [`LinkCmd::KEEPALIVE`]).
    Keepalive,
    /// One onion cell, for the onion layer (`onionmesh-onion`).
    Cell(Box<Cell>),
    /// One Kademlia frame (at most [`crate::kad::MAX_KAD_FRAME`] bytes), for the peer itself.
    Kad(KadBytes),
    /// Sender -> introducer: relay `bytes` (one Kademlia frame) to the introducer's peer `to`.
    Relay {
        to: NodeId,
        bytes: KadBytes,
    },
    /// Introducer -> target: `from`, whose ID key is `pubkey`, asked us to relay `bytes`. The
    /// target trusts the introducer for `from` (it authenticated `from` on its own link), as
    /// it trusts a bridge for the peers it introduces.
    Relayed {
        from: NodeId,
        pubkey: PublicKeyBytes,
        bytes: KadBytes,
    },
    /// Introducer -> sender: it has no link to `to`, so `bytes` come back for another route.
    RelayFailed {
        to: NodeId,
        bytes: KadBytes,
    },
    /// 1 to [`MAX_CELLS_PER_FRAME`] onion cells for the same link, in order.
    Cells(CellBatch),
    Unrecognized {
        cmd: u8,
        body: UnrecognizedBody,
    },
}

impl Frame for LinkMsg {
    const MAX_FRAME: usize = MAX_LINK_FRAME;

    fn write_onto(&self, w: &mut Writer) {
        match self {
            LinkMsg::Nonce(n) => {
                w.put_u8(LinkCmd::NONCE.0);
                w.put_bytes(n);
            }
            LinkMsg::Cert { pubkey, sig } => {
                w.put_u8(LinkCmd::CERT.0);
                w.put_bytes(pubkey);
                w.put_bytes(sig);
            }
            LinkMsg::Data(d) => {
                w.put_u8(LinkCmd::DATA.0);
                w.put_var32(d);
            }
            LinkMsg::Close { reason } => {
                w.put_u8(LinkCmd::CLOSE.0);
                w.put_str16(reason);
            }
            LinkMsg::Keepalive => w.put_u8(LinkCmd::KEEPALIVE.0),
            LinkMsg::Cell(cell) => {
                w.put_u8(LinkCmd::CELL.0);
                w.put_bytes(&cell.to_bytes());
            }
            LinkMsg::Kad(bytes) => {
                w.put_u8(LinkCmd::KAD.0);
                w.put_var16(bytes);
            }
            LinkMsg::Relay { to, bytes } => {
                w.put_u8(LinkCmd::RELAY.0);
                w.put_bytes(&to.0);
                w.put_var16(bytes);
            }
            LinkMsg::Relayed {
                from,
                pubkey,
                bytes,
            } => {
                w.put_u8(LinkCmd::RELAYED.0);
                w.put_bytes(&from.0);
                w.put_bytes(pubkey);
                w.put_var16(bytes);
            }
            LinkMsg::RelayFailed { to, bytes } => {
                w.put_u8(LinkCmd::RELAY_FAILED.0);
                w.put_bytes(&to.0);
                w.put_var16(bytes);
            }
            LinkMsg::Cells(cells) => {
                w.put_u8(LinkCmd::CELLS.0);
                w.put_count8(&cells.0);
                for c in cells {
                    w.put_bytes(&c.to_bytes());
                }
            }
            LinkMsg::Unrecognized { cmd, body } => {
                w.put_u8(*cmd);
                w.put_bytes(body);
            }
        }
    }

    fn take_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let cmd = r.take_u8().map_err(|_| WireError::Empty)?;
        Ok(match LinkCmd(cmd) {
            LinkCmd::NONCE => LinkMsg::Nonce(r.take_array()?),
            LinkCmd::CERT => LinkMsg::Cert {
                pubkey: r.take_array()?,
                sig: r.take_array()?,
            },
            LinkCmd::DATA => LinkMsg::Data(r.take_bytes32()?),
            LinkCmd::CLOSE => LinkMsg::Close {
                reason: r.take_string16()?,
            },
            LinkCmd::KEEPALIVE => LinkMsg::Keepalive,
            LinkCmd::CELL => {
                LinkMsg::Cell(Box::new(Cell::from_bytes(&r.take_array::<CELL_LEN>()?)))
            }
            LinkCmd::KAD => LinkMsg::Kad(r.take_bytes16()?),
            LinkCmd::RELAY => LinkMsg::Relay {
                to: NodeId(r.take_array()?),
                bytes: r.take_bytes16()?,
            },
            LinkCmd::RELAYED => LinkMsg::Relayed {
                from: NodeId(r.take_array()?),
                pubkey: r.take_array()?,
                bytes: r.take_bytes16()?,
            },
            LinkCmd::RELAY_FAILED => LinkMsg::RelayFailed {
                to: NodeId(r.take_array()?),
                bytes: r.take_bytes16()?,
            },
            LinkCmd::CELLS => {
                let cells: BoundedVec<Cell, MAX_CELLS_PER_FRAME> =
                    r.take_list8(|r| Ok(Cell::from_bytes(&r.take_array::<CELL_LEN>()?)))?;
                LinkMsg::Cells(CellBatch::new(cells.into_vec())?)
            }
            LinkCmd(cmd) => LinkMsg::Unrecognized {
                cmd,
                body: r.take_rest_bounded()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kad_bytes() -> impl Strategy<Value = KadBytes> {
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| KadBytes::new(b).unwrap())
    }

    fn arb_msg() -> impl Strategy<Value = LinkMsg> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(LinkMsg::Nonce),
            (
                proptest::collection::vec(any::<u8>(), 33),
                proptest::collection::vec(any::<u8>(), 64)
            )
                .prop_map(|(p, s)| LinkMsg::Cert {
                    pubkey: p.try_into().unwrap(),
                    sig: s.try_into().unwrap()
                }),
            proptest::collection::vec(any::<u8>(), 0..2000)
                .prop_map(|d| LinkMsg::Data(LinkData::new(d).unwrap())),
            ".{0,80}".prop_map(|reason| LinkMsg::Close {
                reason: CloseReason::new(reason).unwrap()
            }),
            Just(LinkMsg::Keepalive),
            proptest::collection::vec(any::<u8>(), CELL_LEN)
                .prop_map(|b| LinkMsg::Cell(Box::new(Cell::from_bytes(&b.try_into().unwrap())))),
            kad_bytes().prop_map(LinkMsg::Kad),
            (any::<[u8; 20]>(), kad_bytes()).prop_map(|(to, bytes)| LinkMsg::Relay {
                to: NodeId(to),
                bytes
            }),
            (any::<[u8; 20]>(), kad_bytes()).prop_map(|(to, bytes)| LinkMsg::RelayFailed {
                to: NodeId(to),
                bytes
            }),
            (
                any::<[u8; 20]>(),
                proptest::collection::vec(any::<u8>(), 33),
                kad_bytes()
            )
                .prop_map(|(from, pk, bytes)| LinkMsg::Relayed {
                    from: NodeId(from),
                    pubkey: pk.try_into().unwrap(),
                    bytes
                }),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), CELL_LEN),
                1..=MAX_CELLS_PER_FRAME
            )
            .prop_map(|v| LinkMsg::Cells(
                CellBatch::new(
                    v.into_iter()
                        .map(|b| Cell::from_bytes(&b.try_into().unwrap()))
                        .collect()
                )
                .unwrap()
            )),
            (0x30u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
                |(cmd, body)| LinkMsg::Unrecognized {
                    cmd,
                    body: UnrecognizedBody::new(body).unwrap()
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let bytes = msg.encode_frame();
            prop_assert!(bytes.len() <= MAX_LINK_FRAME);
            prop_assert_eq!(LinkMsg::decode_frame(&bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Same property as the cargo-fuzz target in crates/wire/fuzz.
            if let Ok(msg) = LinkMsg::decode_frame(&bytes) {
                prop_assert_eq!(LinkMsg::decode_frame(&msg.encode_frame()).unwrap(), msg);
            }
        }
    }

    #[test]
    fn largest_data_fits_a_frame() {
        let msg = LinkMsg::Data(LinkData::new(vec![7; MAX_DATA]).unwrap());
        let bytes = msg.encode_frame();
        assert_eq!(bytes.len(), MAX_LINK_FRAME);
        assert_eq!(LinkMsg::decode_frame(&bytes).unwrap(), msg);
    }

    #[test]
    fn cell_frames_are_exactly_one_cell() {
        use crate::cell::{CellMsg, CircId, DestroyReason};
        let cell = Cell::new(CircId(0x8001), &CellMsg::Destroy(DestroyReason::PROTOCOL));
        let bytes = LinkMsg::Cell(Box::new(cell.clone())).encode_frame();
        assert_eq!(bytes.len(), 1 + CELL_LEN);
        assert_eq!(hex::encode(&bytes[..6]), "108001440100");
        assert_eq!(
            LinkMsg::decode_frame(&bytes).unwrap(),
            LinkMsg::Cell(Box::new(cell))
        );
        assert!(matches!(
            LinkMsg::decode_frame(&bytes[..CELL_LEN]),
            Err(WireError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            LinkMsg::decode_frame(&long),
            Err(WireError::TrailingBytes(1))
        );
    }

    #[test]
    fn kad_frames_vector_and_bounds() {
        let bytes = LinkMsg::Relay {
            to: NodeId([0xab; 20]),
            bytes: KadBytes::new(vec![1, 2, 3]).unwrap(),
        }
        .encode_frame();
        assert_eq!(hex::encode(&bytes[..3]), "21abab");
        assert_eq!(hex::encode(&bytes[21..]), "0003010203");
        // A length field beyond the Kademlia maximum is refused before allocating.
        let mut big = vec![LinkCmd::KAD.0, 0xff, 0xff];
        big.extend(std::iter::repeat_n(0u8, 100));
        assert!(LinkMsg::decode_frame(&big).is_err());
    }

    #[test]
    fn cell_batches_check_their_count() {
        use crate::cell::{CellMsg, CircId, DestroyReason};
        let cell = Cell::new(CircId(7), &CellMsg::Destroy(DestroyReason::PROTOCOL));
        let two = LinkMsg::Cells(CellBatch::new(vec![cell.clone(), cell.clone()]).unwrap())
            .encode_frame();
        assert_eq!(two.len(), 2 + 2 * CELL_LEN);
        assert_eq!(&two[..2], &[0x11, 2]);
        assert!(LinkMsg::decode_frame(&two).is_ok());
        // Fewer cells than the count says, one more than it says, zero, too many.
        assert!(LinkMsg::decode_frame(&two[..2 + CELL_LEN]).is_err());
        let mut extra = two.clone();
        extra.extend_from_slice(&cell.to_bytes());
        assert_eq!(
            LinkMsg::decode_frame(&extra),
            Err(WireError::TrailingBytes(CELL_LEN))
        );
        assert!(LinkMsg::decode_frame(&[0x11, 0]).is_err());
        let over = MAX_CELLS_PER_FRAME + 1;
        let mut many = vec![0x11, over as u8];
        for _ in 0..over {
            many.extend_from_slice(&cell.to_bytes());
        }
        assert!(matches!(
            LinkMsg::decode_frame(&many),
            Err(WireError::LengthTooLarge { len, .. }) if len == over
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = LinkMsg::Nonce([1; 32]).encode_frame();
        bytes.push(0);
        assert_eq!(
            LinkMsg::decode_frame(&bytes),
            Err(WireError::TrailingBytes(1))
        );
    }

    #[test]
    fn constructors_accept_exactly_the_maximum_and_refuse_one_more() {
        use crate::cell::{CellMsg, CircId};
        assert!(LinkData::new(vec![0; MAX_DATA]).is_ok());
        assert_eq!(
            LinkData::new(vec![0; MAX_DATA + 1]),
            Err(WireError::LengthTooLarge {
                len: MAX_DATA + 1,
                max: MAX_DATA
            })
        );
        assert!(CloseReason::new("c".repeat(MAX_CLOSE_REASON)).is_ok());
        assert!(CloseReason::new("c".repeat(MAX_CLOSE_REASON + 1)).is_err());
        let cell = Cell::new(CircId(1), &CellMsg::Padding);
        assert!(CellBatch::new(vec![cell.clone(); MAX_CELLS_PER_FRAME]).is_ok());
        assert!(CellBatch::new(vec![cell; MAX_CELLS_PER_FRAME + 1]).is_err());
        assert!(matches!(
            CellBatch::new(Vec::new()),
            Err(WireError::BadValue(_))
        ));
        assert!(UnrecognizedBody::new(vec![0; MAX_LINK_FRAME - 1]).is_ok());
        assert!(UnrecognizedBody::new(vec![0; MAX_LINK_FRAME]).is_err());
        let big = LinkMsg::Relayed {
            from: NodeId([1; 20]),
            pubkey: [2; 33],
            bytes: KadBytes::new(vec![3; crate::kad::MAX_KAD_FRAME]).unwrap(),
        };
        assert!(big.encode_frame().len() <= MAX_LINK_FRAME);
    }
}

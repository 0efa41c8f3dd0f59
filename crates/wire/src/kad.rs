//! Kademlia RPC frames: the DHT messages peers exchange to find each other and content.
//!
//! Every frame is `[cmd: u8][request id: u64][body]`. A request carries a fresh request id and
//! the answer echoes it, so the asker can match answers and drop late or unsolicited ones.
//!
//! | request                         | answer                                        |
//! |---------------------------------|-----------------------------------------------|
//! | `Ping`                          | `Pong`                                        |
//! | `FindNode { target }`           | `Nodes { token, contacts }`                   |
//! | `FindValue { key }`             | `Value { token, providers, contacts }`, or `Nodes` when the key is unknown |
//! | `Store { key, token, provider }`| `StoreOk`, or `Error`                         |
//! | any                             | `Error { code, reason }`                      |
//!
//! `FIND_*` answers carry a STORE token: the answering node will only accept a `Store` from the
//! same requester if it presents that token (the BitTorrent DHT's anti-spoofing rule, keyed on
//! the requester's node ID instead of its IP address).
//!
//! Every count is bounded on decode *before* anything is allocated: at most
//! [`MAX_CONTACTS`] contacts and [`MAX_PROVIDERS`] providers per answer, at most
//! [`MAX_INTRODUCERS`] introducers per contact, strings of at most [`MAX_ADDR`] /
//! [`MAX_REASON`] bytes, and the whole frame at most [`MAX_KAD_FRAME`] bytes. The same bounds
//! are in the types ([`Contacts`], [`Providers`], [`Introducers`], [`Reason`], [`BridgeAddr`]),
//! whose constructors refuse more, so whatever can be built can be written and read back.
//!
//! ```
//! use onionmesh_wire::kad::KadMsg;
//! use onionmesh_wire::{Frame, NodeId};
//! let msg = KadMsg::FindNode { rid: 7, target: NodeId([1; 20]) };
//! let bytes = msg.encode_frame();
//! assert_eq!(bytes.len(), 1 + 8 + 20);
//! assert_eq!(KadMsg::decode_frame(&bytes).unwrap(), msg);
//! ```

use crate::{
    BoundedBytes, BoundedString, BoundedVec, BridgeAddr, Frame, NodeId, PublicKeyBytes, Reader,
    WireError, Writer,
};

/// Command byte of a Kademlia frame: an open newtype, so an unknown code decodes to
/// [`KadMsg::Unrecognized`] rather than an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KadCmd(pub u8);

impl KadCmd {
    pub const PING: KadCmd = KadCmd(0x01);
    pub const PONG: KadCmd = KadCmd(0x02);
    pub const FIND_NODE: KadCmd = KadCmd(0x03);
    pub const NODES: KadCmd = KadCmd(0x04);
    pub const FIND_VALUE: KadCmd = KadCmd(0x05);
    pub const VALUE: KadCmd = KadCmd(0x06);
    pub const STORE: KadCmd = KadCmd(0x07);
    pub const STORE_OK: KadCmd = KadCmd(0x08);
    pub const ERROR: KadCmd = KadCmd(0x0f);
}

/// Why a request was refused, in an [`KadMsg::Error`] answer. Open newtype: unknown codes are
/// carried through so a newer peer's reasons still reach the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KadErrorCode(pub u16);

impl KadErrorCode {
    /// The STORE token is not one this node issued to this requester.
    pub const BAD_TOKEN: KadErrorCode = KadErrorCode(1);
    /// The STORE token was issued to this requester but has expired; ask again with `FindValue`.
    pub const STALE_TOKEN: KadErrorCode = KadErrorCode(2);
    /// The provider record does not describe the requester: nobody may sign up someone else.
    pub const NOT_SELF: KadErrorCode = KadErrorCode(3);
    /// The value store is full; try the next closest node.
    pub const STORE_FULL: KadErrorCode = KadErrorCode(4);
    /// A contact in the request is invalid (its ID is not the hash of its public key).
    pub const BAD_CONTACT: KadErrorCode = KadErrorCode(5);
    /// The requester sends too fast.
    pub const RATE_LIMITED: KadErrorCode = KadErrorCode(6);

    /// A stable upper-case name for logs and the JS API.
    pub fn name(self) -> &'static str {
        match self {
            KadErrorCode::BAD_TOKEN => "BAD_TOKEN",
            KadErrorCode::STALE_TOKEN => "STALE_TOKEN",
            KadErrorCode::NOT_SELF => "NOT_SELF",
            KadErrorCode::STORE_FULL => "STORE_FULL",
            KadErrorCode::BAD_CONTACT => "BAD_CONTACT",
            KadErrorCode::RATE_LIMITED => "RATE_LIMITED",
            _ => "UNKNOWN",
        }
    }
}

/// Length of a STORE token.
pub const TOKEN_LEN: usize = 16;
/// A STORE token, opaque to everyone but the node that issued it.
pub type Token = [u8; TOKEN_LEN];
/// Most contacts in one answer.
pub const MAX_CONTACTS: usize = 20;
/// Most provider records in one `Value` answer.
pub const MAX_PROVIDERS: usize = 20;
/// Most introducers listed for one contact (the spec's `[IDx]`).
pub const MAX_INTRODUCERS: usize = 4;
/// Longest bridge address in a contact.
pub use crate::MAX_ADDR;
/// Longest human-readable reason in an `Error`.
pub const MAX_REASON: usize = 256;
/// Largest Kademlia frame. The largest possible `Value` answer (20 providers and 20 contacts
/// with maximal addresses) is under 16 KiB; it travels as one link `Data` frame.
pub const MAX_KAD_FRAME: usize = 16 * 1024;

/// A contact's introducers: at most [`MAX_INTRODUCERS`].
pub type Introducers = BoundedVec<NodeId, MAX_INTRODUCERS>;
/// The contacts of one answer: at most [`MAX_CONTACTS`].
pub type Contacts = BoundedVec<Contact, MAX_CONTACTS>;
/// The providers of one `Value` answer: at most [`MAX_PROVIDERS`].
pub type Providers = BoundedVec<Provider, MAX_PROVIDERS>;
/// The human-readable reason of an `Error`: at most [`MAX_REASON`] bytes.
pub type Reason = BoundedString<MAX_REASON>;
/// One encoded Kademlia frame carried inside another message (a link's `Kad`, `Relay`, a
/// bridge's `KadTo` / `KadFrom`): at most [`MAX_KAD_FRAME`] bytes.
pub type KadBytes = BoundedBytes<MAX_KAD_FRAME>;
/// The body of an unknown command (everything after the command byte).
pub type UnrecognizedBody = BoundedBytes<{ MAX_KAD_FRAME - 1 }>;

/// How to reach a node: who it is, which bridge it is registered at, and which peers can
/// introduce it without asking a bridge (the spec's `[IDN, modulusN, IP:port, [IDx]]`).
///
/// The codec does not check that `id` is the hash of `pubkey` (that is a policy decision of the
/// DHT, see `onionmesh-kad`); it only bounds the sizes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Contact {
    pub id: NodeId,
    pub pubkey: PublicKeyBytes,
    /// The bridge this node is registered at, `host:port` or a URL; `None` when unknown
    /// (the empty string on the wire).
    pub bridge: Option<BridgeAddr>,
    /// Peers that can introduce this node, most useful first.
    pub introducers: Introducers,
}

/// A content reference: "this contact holds (part of) the content", valid for `ttl_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    pub contact: Contact,
    pub ttl_secs: u32,
}

/// One Kademlia RPC. `rid` is the request id, echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KadMsg {
    Ping {
        rid: u64,
    },
    Pong {
        rid: u64,
    },
    /// Ask for the contacts closest to `target`.
    FindNode {
        rid: u64,
        target: NodeId,
    },
    /// Contacts closest to the asked target, plus a STORE token for the asker.
    Nodes {
        rid: u64,
        token: Token,
        contacts: Contacts,
    },
    /// Ask for the providers of `key` (a 160-bit hash_name).
    FindValue {
        rid: u64,
        key: NodeId,
    },
    /// Providers of the asked key, the answerer's closest contacts (so the lookup can go on
    /// collecting providers from other holders), and a STORE token.
    Value {
        rid: u64,
        token: Token,
        providers: Providers,
        contacts: Contacts,
    },
    /// Announce that `provider` (which must be the sender itself) holds `key`.
    Store {
        rid: u64,
        key: NodeId,
        token: Token,
        provider: Provider,
    },
    StoreOk {
        rid: u64,
    },
    Error {
        rid: u64,
        code: KadErrorCode,
        reason: Reason,
    },
    /// A command this version does not know; the body (after the command byte) is kept as is.
    Unrecognized {
        cmd: u8,
        body: UnrecognizedBody,
    },
}

impl KadMsg {
    /// The request id, for every known command.
    pub fn rid(&self) -> Option<u64> {
        match self {
            KadMsg::Ping { rid }
            | KadMsg::Pong { rid }
            | KadMsg::FindNode { rid, .. }
            | KadMsg::Nodes { rid, .. }
            | KadMsg::FindValue { rid, .. }
            | KadMsg::Value { rid, .. }
            | KadMsg::Store { rid, .. }
            | KadMsg::StoreOk { rid }
            | KadMsg::Error { rid, .. } => Some(*rid),
            KadMsg::Unrecognized { .. } => None,
        }
    }

    /// True for the messages a node sends unasked (as opposed to answers).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            KadMsg::Ping { .. }
                | KadMsg::FindNode { .. }
                | KadMsg::FindValue { .. }
                | KadMsg::Store { .. }
        )
    }
}

fn take_id(r: &mut Reader<'_>) -> Result<NodeId, WireError> {
    Ok(NodeId(r.take_array()?))
}

impl Contact {
    /// Append the wire form: `[id: 20][pubkey: 33][bridge: str16][n: u8][n x id: 20]`.
    pub fn write_onto(&self, w: &mut Writer) {
        w.put_bytes(&self.id.0);
        w.put_bytes(&self.pubkey);
        BridgeAddr::write_opt(self.bridge.as_ref(), w);
        w.put_count8(&self.introducers);
        for id in &self.introducers {
            w.put_bytes(&id.0);
        }
    }

    pub fn take_from(r: &mut Reader<'_>) -> Result<Contact, WireError> {
        let id = take_id(r)?;
        let pubkey = r.take_array()?;
        let bridge = BridgeAddr::take_opt(r)?;
        let introducers = r.take_list8(take_id)?;
        Ok(Contact {
            id,
            pubkey,
            bridge,
            introducers,
        })
    }
}

impl Provider {
    /// `[contact][ttl_secs: u32]`.
    pub fn write_onto(&self, w: &mut Writer) {
        self.contact.write_onto(w);
        w.put_u32(self.ttl_secs);
    }

    pub fn take_from(r: &mut Reader<'_>) -> Result<Provider, WireError> {
        Ok(Provider {
            contact: Contact::take_from(r)?,
            ttl_secs: r.take_u32()?,
        })
    }
}

fn put_contacts(w: &mut Writer, contacts: &Contacts) {
    w.put_count8(contacts);
    for c in contacts {
        c.write_onto(w);
    }
}

fn take_contacts(r: &mut Reader<'_>) -> Result<Contacts, WireError> {
    r.take_list8(Contact::take_from)
}

impl Frame for KadMsg {
    const MAX_FRAME: usize = MAX_KAD_FRAME;

    fn write_onto(&self, w: &mut Writer) {
        match self {
            KadMsg::Ping { rid } => {
                w.put_u8(KadCmd::PING.0);
                w.put_u64(*rid);
            }
            KadMsg::Pong { rid } => {
                w.put_u8(KadCmd::PONG.0);
                w.put_u64(*rid);
            }
            KadMsg::FindNode { rid, target } => {
                w.put_u8(KadCmd::FIND_NODE.0);
                w.put_u64(*rid);
                w.put_bytes(&target.0);
            }
            KadMsg::Nodes {
                rid,
                token,
                contacts,
            } => {
                w.put_u8(KadCmd::NODES.0);
                w.put_u64(*rid);
                w.put_bytes(token);
                put_contacts(w, contacts);
            }
            KadMsg::FindValue { rid, key } => {
                w.put_u8(KadCmd::FIND_VALUE.0);
                w.put_u64(*rid);
                w.put_bytes(&key.0);
            }
            KadMsg::Value {
                rid,
                token,
                providers,
                contacts,
            } => {
                w.put_u8(KadCmd::VALUE.0);
                w.put_u64(*rid);
                w.put_bytes(token);
                w.put_count8(providers);
                for p in providers {
                    p.write_onto(w);
                }
                put_contacts(w, contacts);
            }
            KadMsg::Store {
                rid,
                key,
                token,
                provider,
            } => {
                w.put_u8(KadCmd::STORE.0);
                w.put_u64(*rid);
                w.put_bytes(&key.0);
                w.put_bytes(token);
                provider.write_onto(w);
            }
            KadMsg::StoreOk { rid } => {
                w.put_u8(KadCmd::STORE_OK.0);
                w.put_u64(*rid);
            }
            KadMsg::Error { rid, code, reason } => {
                w.put_u8(KadCmd::ERROR.0);
                w.put_u64(*rid);
                w.put_u16(code.0);
                w.put_str16(reason);
            }
            KadMsg::Unrecognized { cmd, body } => {
                w.put_u8(*cmd);
                w.put_bytes(body);
            }
        }
    }

    fn take_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let cmd = KadCmd(r.take_u8().map_err(|_| WireError::Empty)?);
        let known = matches!(
            cmd,
            KadCmd::PING
                | KadCmd::PONG
                | KadCmd::FIND_NODE
                | KadCmd::NODES
                | KadCmd::FIND_VALUE
                | KadCmd::VALUE
                | KadCmd::STORE
                | KadCmd::STORE_OK
                | KadCmd::ERROR
        );
        if !known {
            return Ok(KadMsg::Unrecognized {
                cmd: cmd.0,
                body: r.take_rest_bounded()?,
            });
        }
        let rid = r.take_u64()?;
        Ok(match cmd {
            KadCmd::PING => KadMsg::Ping { rid },
            KadCmd::PONG => KadMsg::Pong { rid },
            KadCmd::FIND_NODE => KadMsg::FindNode {
                rid,
                target: take_id(r)?,
            },
            KadCmd::NODES => KadMsg::Nodes {
                rid,
                token: r.take_array()?,
                contacts: take_contacts(r)?,
            },
            KadCmd::FIND_VALUE => KadMsg::FindValue {
                rid,
                key: take_id(r)?,
            },
            KadCmd::VALUE => {
                let token = r.take_array()?;
                let providers = r.take_list8(Provider::take_from)?;
                KadMsg::Value {
                    rid,
                    token,
                    providers,
                    contacts: take_contacts(r)?,
                }
            }
            KadCmd::STORE => KadMsg::Store {
                rid,
                key: take_id(r)?,
                token: r.take_array()?,
                provider: Provider::take_from(r)?,
            },
            KadCmd::STORE_OK => KadMsg::StoreOk { rid },
            // Only ERROR is left: `known` listed every code handled above.
            _ => KadMsg::Error {
                rid,
                code: KadErrorCode(r.take_u16()?),
                reason: r.take_string16()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 20]>().prop_map(NodeId)
    }

    fn arb_contact() -> impl Strategy<Value = Contact> {
        (
            arb_id(),
            proptest::collection::vec(any::<u8>(), 33),
            proptest::option::of("[a-z0-9.:/]{1,40}"),
            proptest::collection::vec(arb_id(), 0..=MAX_INTRODUCERS),
        )
            .prop_map(|(id, pk, bridge, introducers)| Contact {
                id,
                pubkey: pk.try_into().unwrap(),
                bridge: bridge.map(|b| BridgeAddr::new(b).unwrap()),
                introducers: Introducers::new(introducers).unwrap(),
            })
    }

    fn arb_provider() -> impl Strategy<Value = Provider> {
        (arb_contact(), any::<u32>()).prop_map(|(contact, ttl_secs)| Provider { contact, ttl_secs })
    }

    fn arb_msg() -> impl Strategy<Value = KadMsg> {
        let contacts = || {
            proptest::collection::vec(arb_contact(), 0..=MAX_CONTACTS)
                .prop_map(|c| Contacts::new(c).unwrap())
        };
        prop_oneof![
            any::<u64>().prop_map(|rid| KadMsg::Ping { rid }),
            any::<u64>().prop_map(|rid| KadMsg::Pong { rid }),
            (any::<u64>(), arb_id()).prop_map(|(rid, target)| KadMsg::FindNode { rid, target }),
            (any::<u64>(), any::<Token>(), contacts()).prop_map(|(rid, token, contacts)| {
                KadMsg::Nodes {
                    rid,
                    token,
                    contacts,
                }
            }),
            (any::<u64>(), arb_id()).prop_map(|(rid, key)| KadMsg::FindValue { rid, key }),
            (
                any::<u64>(),
                any::<Token>(),
                proptest::collection::vec(arb_provider(), 0..=MAX_PROVIDERS)
                    .prop_map(|p| Providers::new(p).unwrap()),
                contacts()
            )
                .prop_map(|(rid, token, providers, contacts)| KadMsg::Value {
                    rid,
                    token,
                    providers,
                    contacts
                }),
            (any::<u64>(), arb_id(), any::<Token>(), arb_provider()).prop_map(
                |(rid, key, token, provider)| KadMsg::Store {
                    rid,
                    key,
                    token,
                    provider
                }
            ),
            any::<u64>().prop_map(|rid| KadMsg::StoreOk { rid }),
            (any::<u64>(), any::<u16>(), ".{0,60}").prop_map(|(rid, code, reason)| {
                KadMsg::Error {
                    rid,
                    code: KadErrorCode(code),
                    reason: Reason::new(reason).unwrap(),
                }
            }),
            (0x10u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
                |(cmd, body)| KadMsg::Unrecognized {
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
            prop_assert!(bytes.len() <= MAX_KAD_FRAME);
            prop_assert_eq!(KadMsg::decode_frame(&bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = KadMsg::decode_frame(&bytes);
        }

        #[test]
        fn known_command_with_arbitrary_body_never_panics(
            cmd in 0u8..0x10,
            body in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let mut bytes = vec![cmd];
            bytes.extend_from_slice(&body);
            let _ = KadMsg::decode_frame(&bytes);
        }

        #[test]
        fn truncation_is_an_error(msg in arb_msg(), cut in 1usize..200) {
            let bytes = msg.encode_frame();
            if !matches!(msg, KadMsg::Unrecognized { .. }) && cut < bytes.len() {
                prop_assert!(KadMsg::decode_frame(&bytes[..bytes.len() - cut]).is_err());
            }
        }

        #[test]
        fn trailing_bytes_are_refused(msg in arb_msg(), extra in 1usize..10) {
            let mut bytes = msg.encode_frame();
            if !matches!(msg, KadMsg::Unrecognized { .. }) {
                bytes.extend(std::iter::repeat_n(0u8, extra));
                prop_assert_eq!(KadMsg::decode_frame(&bytes), Err(WireError::TrailingBytes(extra)));
            }
        }
    }

    fn big_contact(i: u8) -> Contact {
        Contact {
            id: NodeId([i; 20]),
            pubkey: [2; 33],
            bridge: Some(BridgeAddr::new("b".repeat(MAX_ADDR)).unwrap()),
            introducers: Introducers::new(vec![NodeId([9; 20]); MAX_INTRODUCERS]).unwrap(),
        }
    }

    #[test]
    fn largest_value_answer_fits_a_frame() {
        let msg = KadMsg::Value {
            rid: u64::MAX,
            token: [0xee; TOKEN_LEN],
            providers: Providers::new(
                (0..MAX_PROVIDERS as u8)
                    .map(|i| Provider {
                        contact: big_contact(i),
                        ttl_secs: u32::MAX,
                    })
                    .collect(),
            )
            .unwrap(),
            contacts: Contacts::new((0..MAX_CONTACTS as u8).map(big_contact).collect()).unwrap(),
        };
        let bytes = msg.encode_frame();
        // (`MAX_KAD_FRAME` fits in a link's DATA: checked at compile time in `link`.)
        assert!(bytes.len() <= MAX_KAD_FRAME, "{} bytes", bytes.len());
        assert_eq!(KadMsg::decode_frame(&bytes).unwrap(), msg);
    }

    #[test]
    fn oversized_fields_are_refused_when_built() {
        // Exactly the maximum is accepted, one more is refused: nothing is cut on encode.
        assert!(Introducers::new(vec![NodeId([3; 20]); MAX_INTRODUCERS]).is_ok());
        assert_eq!(
            Introducers::new(vec![NodeId([3; 20]); MAX_INTRODUCERS + 1]),
            Err(WireError::LengthTooLarge {
                len: MAX_INTRODUCERS + 1,
                max: MAX_INTRODUCERS
            })
        );
        let c = big_contact(1);
        assert!(Contacts::new(vec![c.clone(); MAX_CONTACTS]).is_ok());
        assert!(Contacts::new(vec![c.clone(); MAX_CONTACTS + 1]).is_err());
        let p = Provider {
            contact: c,
            ttl_secs: 1,
        };
        assert!(Providers::new(vec![p.clone(); MAX_PROVIDERS]).is_ok());
        assert!(Providers::new(vec![p; MAX_PROVIDERS + 1]).is_err());
        assert!(Reason::new("r".repeat(MAX_REASON)).is_ok());
        assert!(Reason::new("r".repeat(MAX_REASON + 1)).is_err());
        assert!(KadBytes::new(vec![0; MAX_KAD_FRAME]).is_ok());
        assert!(KadBytes::new(vec![0; MAX_KAD_FRAME + 1]).is_err());
        // "é" is two bytes: 129 of them are one byte over.
        assert!(BridgeAddr::new("é".repeat(128)).is_ok());
        assert!(BridgeAddr::new("é".repeat(129)).is_err());
    }

    #[test]
    fn an_empty_bridge_decodes_as_none_and_a_long_one_is_refused() {
        let mut c = big_contact(1);
        c.bridge = None;
        let mut w = Writer::new();
        c.write_onto(&mut w);
        let bytes = w.into_vec();
        assert_eq!(&bytes[20 + 33..20 + 33 + 2], &[0, 0]);
        assert_eq!(Contact::take_from(&mut Reader::new(&bytes)), Ok(c));
        // A bridge field claiming 257 bytes.
        let mut bad = vec![0u8; 20 + 33];
        bad.extend_from_slice(&257u16.to_be_bytes());
        bad.extend(vec![b'b'; 257]);
        bad.push(0);
        assert!(matches!(
            Contact::take_from(&mut Reader::new(&bad)),
            Err(WireError::LengthTooLarge { len: 257, .. })
        ));
    }

    #[test]
    fn counts_are_checked_before_allocating() {
        // NODES claiming 200 contacts.
        let mut frame = vec![KadCmd::NODES.0];
        frame.extend_from_slice(&[0; 8 + TOKEN_LEN]);
        frame.push(200);
        assert_eq!(
            KadMsg::decode_frame(&frame),
            Err(WireError::LengthTooLarge {
                len: 200,
                max: MAX_CONTACTS
            })
        );
        // A contact claiming 5 introducers.
        let mut frame = vec![KadCmd::STORE.0];
        frame.extend_from_slice(&[0; 8 + 20 + TOKEN_LEN + 20 + 33]);
        frame.extend_from_slice(&[0, 0, 5]);
        assert_eq!(
            KadMsg::decode_frame(&frame),
            Err(WireError::LengthTooLarge {
                len: 5,
                max: MAX_INTRODUCERS
            })
        );
    }

    #[test]
    fn oversized_frame_is_refused_before_decoding() {
        let big = vec![KadCmd::VALUE.0; MAX_KAD_FRAME + 1];
        assert!(matches!(
            KadMsg::decode_frame(&big),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn empty_and_unknown() {
        assert_eq!(KadMsg::decode_frame(&[]), Err(WireError::Empty));
        assert_eq!(
            KadMsg::decode_frame(&[0x42, 1, 2]).unwrap(),
            KadMsg::Unrecognized {
                cmd: 0x42,
                body: UnrecognizedBody::new(vec![1, 2]).unwrap()
            }
        );
        assert_eq!(KadErrorCode(999).name(), "UNKNOWN");
        assert_eq!(KadErrorCode::BAD_TOKEN.name(), "BAD_TOKEN");
    }

    #[test]
    fn vectors() {
        // Fixed vectors so another implementation can check its encoder.
        let ping = KadMsg::Ping {
            rid: 0x0102030405060708,
        };
        assert_eq!(
            hex::encode(ping.encode_frame()),
            "010102030405060708",
            "PING = cmd 01, rid big-endian"
        );
        let store = KadMsg::Store {
            rid: 1,
            key: NodeId([0xaa; 20]),
            token: [0xbb; TOKEN_LEN],
            provider: Provider {
                contact: Contact {
                    id: NodeId([0x11; 20]),
                    pubkey: [0x02; 33],
                    bridge: Some(BridgeAddr::new("b:1").unwrap()),
                    introducers: Introducers::new(vec![NodeId([0x22; 20])]).unwrap(),
                },
                ttl_secs: 1800,
            },
        };
        let expected = format!(
            "07{}{}{}{}{}0003623a3101{}00000708",
            "0000000000000001",
            "aa".repeat(20),
            "bb".repeat(TOKEN_LEN),
            "11".repeat(20),
            "02".repeat(33),
            "22".repeat(20),
        );
        assert_eq!(hex::encode(store.encode_frame()), expected);
    }
}

//! Frames on the WebSocket between a node and a bridge: the signed hello, peer discovery
//! (`DB_FIND_PEER` / `DB_FOUND_PEER` in the spec) and the relayed WebRTC introduction
//! (`INTRODUCE` / `INTRODUCED`).
//!
//! Layout of every frame: `[cmd: u8][body]`. The `peer` field of the introduction messages names
//! the *target* when a node sends it to the bridge and the *source* when the bridge delivers it,
//! exactly as in the spec (`INTRODUCE [IDB, offer]` in, `INTRODUCE [IDA, offer]` out).

use crate::{
    Frame, NodeId, PublicKeyBytes, Reader, SignatureBytes, WireError, Writer, MAX_SIGNAL_FRAME,
};

/// Command byte of a signalling frame. Codes 0x20..=0x3f are reserved for the DB_* content
/// messages that travel over bridges later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalCmd(pub u8);

impl SignalCmd {
    pub const HELLO: SignalCmd = SignalCmd(0x01);
    pub const WELCOME: SignalCmd = SignalCmd(0x02);
    pub const ERROR: SignalCmd = SignalCmd(0x0f);
    pub const FIND_PEER: SignalCmd = SignalCmd(0x10);
    pub const FOUND_PEER: SignalCmd = SignalCmd(0x11);
    pub const INTRODUCE: SignalCmd = SignalCmd(0x12);
    pub const INTRODUCED: SignalCmd = SignalCmd(0x13);
    pub const INTRODUCE_FAILED: SignalCmd = SignalCmd(0x14);
}

/// Longest SDP accepted (offer or answer with its gathered candidates).
pub const MAX_SDP: usize = 16 * 1024;
/// Longest human-readable reason.
pub const MAX_REASON: usize = 512;
/// Longest bridge address in a peer record.
pub const MAX_ADDR: usize = 256;
/// Most peer records in one `FoundPeer`.
pub const MAX_PEERS_PER_ANSWER: usize = 20;

/// One peer in a `FoundPeer` answer: who it is and which bridge can introduce it. An empty
/// `bridge` means "the bridge that sent this answer".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: NodeId,
    pub pubkey: PublicKeyBytes,
    pub bridge: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalMsg {
    /// Node -> bridge, first frame: proves the node holds the key behind its ID.
    Hello {
        pubkey: PublicKeyBytes,
        timestamp_ms: u64,
        sig: SignatureBytes,
    },
    /// Bridge -> node: the hello was accepted. Carries the bridge's own public key.
    Welcome {
        bridge_pubkey: PublicKeyBytes,
        peers_online: u32,
    },
    /// Bridge -> node: why the bridge is about to close the connection.
    Error { code: u16, reason: String },
    /// DB_FIND_PEER [ID, public key].
    FindPeer { id: NodeId, pubkey: PublicKeyBytes },
    /// DB_FOUND_PEER: peers closest to the asker by XOR distance.
    FoundPeer { peers: Vec<PeerRecord> },
    /// INTRODUCE [peer, SDP offer].
    Introduce {
        peer: NodeId,
        session: u64,
        sdp: String,
    },
    /// INTRODUCED [peer, SDP answer].
    Introduced {
        peer: NodeId,
        session: u64,
        sdp: String,
    },
    /// Bridge -> offerer: the introduction could not be delivered.
    IntroduceFailed {
        peer: NodeId,
        session: u64,
        reason: String,
    },
    /// A command this version does not know; the body is kept for logging.
    Unrecognized { cmd: u8, body: Vec<u8> },
}

fn take_id(r: &mut Reader<'_>) -> Result<NodeId, WireError> {
    Ok(NodeId(r.take_array()?))
}

impl Frame for SignalMsg {
    const MAX_FRAME: usize = MAX_SIGNAL_FRAME;

    fn write_onto(&self, w: &mut Writer) {
        match self {
            SignalMsg::Hello {
                pubkey,
                timestamp_ms,
                sig,
            } => {
                w.put_u8(SignalCmd::HELLO.0);
                w.put_bytes(pubkey);
                w.put_u64(*timestamp_ms);
                w.put_bytes(sig);
            }
            SignalMsg::Welcome {
                bridge_pubkey,
                peers_online,
            } => {
                w.put_u8(SignalCmd::WELCOME.0);
                w.put_bytes(bridge_pubkey);
                w.put_u32(*peers_online);
            }
            SignalMsg::Error { code, reason } => {
                w.put_u8(SignalCmd::ERROR.0);
                w.put_u16(*code);
                w.put_str16(reason, MAX_REASON);
            }
            SignalMsg::FindPeer { id, pubkey } => {
                w.put_u8(SignalCmd::FIND_PEER.0);
                w.put_bytes(&id.0);
                w.put_bytes(pubkey);
            }
            SignalMsg::FoundPeer { peers } => {
                w.put_u8(SignalCmd::FOUND_PEER.0);
                let peers = &peers[..peers.len().min(MAX_PEERS_PER_ANSWER)];
                w.put_u8(peers.len() as u8);
                for p in peers {
                    w.put_bytes(&p.id.0);
                    w.put_bytes(&p.pubkey);
                    w.put_str16(&p.bridge, MAX_ADDR);
                }
            }
            SignalMsg::Introduce { peer, session, sdp } => {
                w.put_u8(SignalCmd::INTRODUCE.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(sdp, MAX_SDP);
            }
            SignalMsg::Introduced { peer, session, sdp } => {
                w.put_u8(SignalCmd::INTRODUCED.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(sdp, MAX_SDP);
            }
            SignalMsg::IntroduceFailed {
                peer,
                session,
                reason,
            } => {
                w.put_u8(SignalCmd::INTRODUCE_FAILED.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(reason, MAX_REASON);
            }
            SignalMsg::Unrecognized { cmd, body } => {
                w.put_u8(*cmd);
                w.put_bytes(body);
            }
        }
    }

    fn take_from(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let cmd = r.take_u8().map_err(|_| WireError::Empty)?;
        Ok(match SignalCmd(cmd) {
            SignalCmd::HELLO => SignalMsg::Hello {
                pubkey: r.take_array()?,
                timestamp_ms: r.take_u64()?,
                sig: r.take_array()?,
            },
            SignalCmd::WELCOME => SignalMsg::Welcome {
                bridge_pubkey: r.take_array()?,
                peers_online: r.take_u32()?,
            },
            SignalCmd::ERROR => SignalMsg::Error {
                code: r.take_u16()?,
                reason: r.take_str16(MAX_REASON)?.to_owned(),
            },
            SignalCmd::FIND_PEER => SignalMsg::FindPeer {
                id: take_id(r)?,
                pubkey: r.take_array()?,
            },
            SignalCmd::FOUND_PEER => {
                let n = usize::from(r.take_u8()?);
                if n > MAX_PEERS_PER_ANSWER {
                    return Err(WireError::LengthTooLarge {
                        len: n,
                        max: MAX_PEERS_PER_ANSWER,
                    });
                }
                let mut peers = Vec::with_capacity(n);
                for _ in 0..n {
                    peers.push(PeerRecord {
                        id: take_id(r)?,
                        pubkey: r.take_array()?,
                        bridge: r.take_str16(MAX_ADDR)?.to_owned(),
                    });
                }
                SignalMsg::FoundPeer { peers }
            }
            SignalCmd::INTRODUCE => SignalMsg::Introduce {
                peer: take_id(r)?,
                session: r.take_u64()?,
                sdp: r.take_str16(MAX_SDP)?.to_owned(),
            },
            SignalCmd::INTRODUCED => SignalMsg::Introduced {
                peer: take_id(r)?,
                session: r.take_u64()?,
                sdp: r.take_str16(MAX_SDP)?.to_owned(),
            },
            SignalCmd::INTRODUCE_FAILED => SignalMsg::IntroduceFailed {
                peer: take_id(r)?,
                session: r.take_u64()?,
                reason: r.take_str16(MAX_REASON)?.to_owned(),
            },
            SignalCmd(cmd) => SignalMsg::Unrecognized {
                cmd,
                body: r.take_rest().to_vec(),
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
    fn arb_pk() -> impl Strategy<Value = PublicKeyBytes> {
        proptest::collection::vec(any::<u8>(), 33).prop_map(|v| v.try_into().unwrap())
    }
    fn arb_sig() -> impl Strategy<Value = SignatureBytes> {
        proptest::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap())
    }

    fn arb_msg() -> impl Strategy<Value = SignalMsg> {
        prop_oneof![
            (arb_pk(), any::<u64>(), arb_sig()).prop_map(|(pubkey, timestamp_ms, sig)| {
                SignalMsg::Hello {
                    pubkey,
                    timestamp_ms,
                    sig,
                }
            }),
            (arb_pk(), any::<u32>()).prop_map(|(bridge_pubkey, peers_online)| SignalMsg::Welcome {
                bridge_pubkey,
                peers_online
            }),
            (any::<u16>(), ".{0,100}").prop_map(|(code, reason)| SignalMsg::Error { code, reason }),
            (arb_id(), arb_pk()).prop_map(|(id, pubkey)| SignalMsg::FindPeer { id, pubkey }),
            proptest::collection::vec(
                (arb_id(), arb_pk(), "[a-z0-9.:]{0,30}")
                    .prop_map(|(id, pubkey, bridge)| PeerRecord { id, pubkey, bridge }),
                0..=MAX_PEERS_PER_ANSWER
            )
            .prop_map(|peers| SignalMsg::FoundPeer { peers }),
            (arb_id(), any::<u64>(), ".{0,300}")
                .prop_map(|(peer, session, sdp)| SignalMsg::Introduce { peer, session, sdp }),
            (arb_id(), any::<u64>(), ".{0,300}")
                .prop_map(|(peer, session, sdp)| SignalMsg::Introduced { peer, session, sdp }),
            (arb_id(), any::<u64>(), ".{0,50}").prop_map(|(peer, session, reason)| {
                SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason,
                }
            }),
            (0x40u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(cmd, body)| SignalMsg::Unrecognized { cmd, body }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let bytes = msg.encode_frame();
            prop_assert_eq!(SignalMsg::decode_frame(&bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            // Same property as the cargo-fuzz target in crates/wire/fuzz.
            if let Ok(msg) = SignalMsg::decode_frame(&bytes) {
                prop_assert_eq!(SignalMsg::decode_frame(&msg.encode_frame()).unwrap(), msg);
            }
        }

        #[test]
        fn truncation_is_an_error(msg in arb_msg(), cut in 1usize..64) {
            let bytes = msg.encode_frame();
            if !matches!(msg, SignalMsg::Unrecognized { .. }) && cut < bytes.len() {
                prop_assert!(SignalMsg::decode_frame(&bytes[..bytes.len() - cut]).is_err());
            }
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_decoding() {
        let big = vec![SignalCmd::INTRODUCE.0; MAX_SIGNAL_FRAME + 1];
        assert!(matches!(
            SignalMsg::decode_frame(&big),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn found_peer_count_is_bounded() {
        let frame = [SignalCmd::FOUND_PEER.0, 200];
        assert!(matches!(
            SignalMsg::decode_frame(&frame),
            Err(WireError::LengthTooLarge { len: 200, .. })
        ));
    }

    #[test]
    fn hello_vector() {
        // A fixed vector so another implementation can check its encoder.
        let msg = SignalMsg::Hello {
            pubkey: [2; 33],
            timestamp_ms: 0x0102030405060708,
            sig: [9; 64],
        };
        let bytes = msg.encode_frame();
        assert_eq!(bytes.len(), 1 + 33 + 8 + 64);
        assert_eq!(&bytes[..2], &[0x01, 0x02]);
        assert_eq!(&bytes[34..42], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }
}

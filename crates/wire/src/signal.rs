//! Frames on the WebSocket between a node and a bridge: the bridge's challenge and the signed
//! hello that answers it, keepalive pings, peer discovery
//! (`DB_FIND_PEER` / `DB_FOUND_PEER` in the spec) and the relayed WebRTC introduction
//! (`INTRODUCE` / `INTRODUCED`).
//!
//! Layout of every frame: `[cmd: u8][body]`. The `peer` field of the introduction messages names
//! the *target* when a node sends it to the bridge and the *source* when the bridge delivers it,
//! exactly as in the spec (`INTRODUCE [IDB, offer]` in, `INTRODUCE [IDA, offer]` out).

use crate::{
    Frame, NodeId, PublicKeyBytes, Reader, SignatureBytes, WireError, Writer, MAX_SIGNAL_FRAME,
};

/// Command byte of a signalling frame. Codes 0x20..=0x2f carry the DHT between a node and its
/// bridge, 0x30..=0x4f are bridge-to-bridge (federation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalCmd(pub u8);

impl SignalCmd {
    pub const HELLO: SignalCmd = SignalCmd(0x01);
    pub const WELCOME: SignalCmd = SignalCmd(0x02);
    pub const CHALLENGE: SignalCmd = SignalCmd(0x03);
    pub const PING: SignalCmd = SignalCmd(0x04);
    pub const PONG: SignalCmd = SignalCmd(0x05);
    pub const ERROR: SignalCmd = SignalCmd(0x0f);
    pub const FIND_PEER: SignalCmd = SignalCmd(0x10);
    pub const FOUND_PEER: SignalCmd = SignalCmd(0x11);
    pub const INTRODUCE: SignalCmd = SignalCmd(0x12);
    pub const INTRODUCED: SignalCmd = SignalCmd(0x13);
    pub const INTRODUCE_FAILED: SignalCmd = SignalCmd(0x14);
    pub const KAD_TO: SignalCmd = SignalCmd(0x20);
    pub const KAD_FROM: SignalCmd = SignalCmd(0x21);
    pub const BRIDGE_INFO: SignalCmd = SignalCmd(0x22);
    pub const PEERS_GONE: SignalCmd = SignalCmd(0x23);
    pub const BRIDGE_HELLO: SignalCmd = SignalCmd(0x30);
    pub const FEDERATE: SignalCmd = SignalCmd(0x31);
    pub const PEERS_JOINED: SignalCmd = SignalCmd(0x32);
    pub const PEERS_LEFT: SignalCmd = SignalCmd(0x33);
}

/// Most peer records (or IDs) in one `PeersJoined` / `PeersLeft`.
pub const MAX_PEERS_PER_SYNC: usize = 100;
/// Most IDs in one `PeersGone`.
pub const MAX_PEERS_GONE: usize = 100;
/// Length of the random challenge a bridge sends and a hello signs.
pub const CHALLENGE_LEN: usize = 32;
/// The random challenge of one connection (see `SignalMsg::Challenge`).
pub type ChallengeNonce = [u8; CHALLENGE_LEN];
/// Largest Kademlia frame carried in `KadTo` / `KadFrom` (the `kad` codec's maximum).
pub const MAX_KAD_BYTES: usize = crate::kad::MAX_KAD_FRAME;
/// Largest frame wrapped in a `Federate`.
pub const MAX_INNER: usize = MAX_SIGNAL_FRAME - 64;

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
    /// Node -> bridge, first frame, sent after the bridge's `Challenge`: proves the node holds
    /// the key behind its ID *now*, by signing this connection's challenge
    /// (`onionmesh_crypto::hello`). `challenge` echoes the nonce signed, so a hello signed for
    /// another connection is refused as such. No wall clock is involved.
    Hello {
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
    },
    /// Bridge -> node (and bridge -> bridge, both ways), first frame on a new connection: a
    /// fresh random nonce the peer's hello must sign. Freshness comes from the nonce, so a
    /// visitor's clock being days off does not matter, and a recorded hello cannot be replayed.
    Challenge { nonce: ChallengeNonce },
    /// Keepalive, either direction after registration: the receiver answers `Pong` with the same
    /// nonce at once. The bridge sends it to a connection that has been silent for a while and
    /// drops the connection if nothing at all arrives within its silence timeout.
    Ping { nonce: u64 },
    /// The answer to `Ping`.
    Pong { nonce: u64 },
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
    /// Node -> bridge: deliver one Kademlia frame to `peer` (the bridge itself, a peer
    /// registered here, or a peer or bridge reachable through a federated bridge).
    KadTo { peer: NodeId, bytes: Vec<u8> },
    /// Bridge -> node (or inside `Federate`): `peer`, whose key is `pubkey` and whose bridge is
    /// `bridge` (empty: the sending bridge), sent this Kademlia frame.
    KadFrom {
        peer: NodeId,
        pubkey: PublicKeyBytes,
        bridge: String,
        bytes: Vec<u8>,
    },
    /// Bridge -> node, after `Welcome`: the address under which other bridges know this bridge
    /// (what the node publishes as its own bridge in the DHT).
    BridgeInfo { addr: String },
    /// Bridge -> node, batched: these peers are gone (they left this bridge or a federated
    /// one, or stopped answering), so do not choose them for new links or paths. At most
    /// [`MAX_PEERS_GONE`] IDs per frame; a bridge coalesces departures over a short interval.
    PeersGone { ids: Vec<NodeId> },
    /// Bridge -> bridge, after the receiver's `Challenge`: a signed hello like a node's (over
    /// the receiver's challenge), plus the address the sender is reachable at.
    BridgeHello {
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
        addr: String,
    },
    /// Bridge -> bridge: deliver `inner` (one encoded `KadFrom`, `Introduce`, `Introduced` or
    /// `IntroduceFailed` whose `peer` is the source) to `to`: the receiving bridge itself or a
    /// peer registered there.
    Federate { to: NodeId, inner: Vec<u8> },
    /// Bridge -> bridge: these peers registered at the sender (their `bridge` field is ignored).
    PeersJoined { peers: Vec<PeerRecord> },
    /// Bridge -> bridge: these peers left the sender.
    PeersLeft { ids: Vec<NodeId> },
    /// A command this version does not know; the body is kept for logging.
    Unrecognized { cmd: u8, body: Vec<u8> },
}

fn take_id(r: &mut Reader<'_>) -> Result<NodeId, WireError> {
    Ok(NodeId(r.take_array()?))
}

/// A count byte (checked against `max` before allocating), then that many peer records.
fn take_records(r: &mut Reader<'_>, max: usize) -> Result<Vec<PeerRecord>, WireError> {
    let n = usize::from(r.take_u8()?);
    if n > max {
        return Err(WireError::LengthTooLarge { len: n, max });
    }
    let mut peers = Vec::with_capacity(n);
    for _ in 0..n {
        peers.push(PeerRecord {
            id: take_id(r)?,
            pubkey: r.take_array()?,
            bridge: r.take_str16(MAX_ADDR)?.to_owned(),
        });
    }
    Ok(peers)
}

/// A count byte (checked against `max` before allocating), then that many IDs.
fn take_ids(r: &mut Reader<'_>, max: usize) -> Result<Vec<NodeId>, WireError> {
    let n = usize::from(r.take_u8()?);
    if n > max {
        return Err(WireError::LengthTooLarge { len: n, max });
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(take_id(r)?);
    }
    Ok(ids)
}

/// At most `max` IDs after a count byte. Callers split longer lists (`chunks(max)`); a longer
/// slice here is a caller bug, cut like every other list in this codec.
// TODO: when the codec stops cutting (issue 8, item 6), make this a constructor that refuses.
fn put_ids(w: &mut Writer, ids: &[NodeId], max: usize) {
    let ids = &ids[..ids.len().min(max).min(usize::from(u8::MAX))];
    w.put_u8(ids.len() as u8);
    for id in ids {
        w.put_bytes(&id.0);
    }
}

impl Frame for SignalMsg {
    const MAX_FRAME: usize = MAX_SIGNAL_FRAME;

    fn write_onto(&self, w: &mut Writer) {
        match self {
            SignalMsg::Hello {
                pubkey,
                challenge,
                sig,
            } => {
                w.put_u8(SignalCmd::HELLO.0);
                w.put_bytes(pubkey);
                w.put_bytes(challenge);
                w.put_bytes(sig);
            }
            SignalMsg::Challenge { nonce } => {
                w.put_u8(SignalCmd::CHALLENGE.0);
                w.put_bytes(nonce);
            }
            SignalMsg::Ping { nonce } => {
                w.put_u8(SignalCmd::PING.0);
                w.put_u64(*nonce);
            }
            SignalMsg::Pong { nonce } => {
                w.put_u8(SignalCmd::PONG.0);
                w.put_u64(*nonce);
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
            SignalMsg::KadTo { peer, bytes } => {
                w.put_u8(SignalCmd::KAD_TO.0);
                w.put_bytes(&peer.0);
                w.put_var16(&bytes[..bytes.len().min(MAX_KAD_BYTES)]);
            }
            SignalMsg::KadFrom {
                peer,
                pubkey,
                bridge,
                bytes,
            } => {
                w.put_u8(SignalCmd::KAD_FROM.0);
                w.put_bytes(&peer.0);
                w.put_bytes(pubkey);
                w.put_str16(bridge, MAX_ADDR);
                w.put_var16(&bytes[..bytes.len().min(MAX_KAD_BYTES)]);
            }
            SignalMsg::BridgeInfo { addr } => {
                w.put_u8(SignalCmd::BRIDGE_INFO.0);
                w.put_str16(addr, MAX_ADDR);
            }
            SignalMsg::PeersGone { ids } => {
                w.put_u8(SignalCmd::PEERS_GONE.0);
                put_ids(w, ids, MAX_PEERS_GONE);
            }
            SignalMsg::BridgeHello {
                pubkey,
                challenge,
                sig,
                addr,
            } => {
                w.put_u8(SignalCmd::BRIDGE_HELLO.0);
                w.put_bytes(pubkey);
                w.put_bytes(challenge);
                w.put_bytes(sig);
                w.put_str16(addr, MAX_ADDR);
            }
            SignalMsg::Federate { to, inner } => {
                w.put_u8(SignalCmd::FEDERATE.0);
                w.put_bytes(&to.0);
                w.put_var16(&inner[..inner.len().min(MAX_INNER)]);
            }
            SignalMsg::PeersJoined { peers } => {
                w.put_u8(SignalCmd::PEERS_JOINED.0);
                let peers = &peers[..peers.len().min(MAX_PEERS_PER_SYNC)];
                w.put_u8(peers.len() as u8);
                for p in peers {
                    w.put_bytes(&p.id.0);
                    w.put_bytes(&p.pubkey);
                    w.put_str16(&p.bridge, MAX_ADDR);
                }
            }
            SignalMsg::PeersLeft { ids } => {
                w.put_u8(SignalCmd::PEERS_LEFT.0);
                put_ids(w, ids, MAX_PEERS_PER_SYNC);
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
                challenge: r.take_array()?,
                sig: r.take_array()?,
            },
            SignalCmd::CHALLENGE => SignalMsg::Challenge {
                nonce: r.take_array()?,
            },
            SignalCmd::PING => SignalMsg::Ping {
                nonce: r.take_u64()?,
            },
            SignalCmd::PONG => SignalMsg::Pong {
                nonce: r.take_u64()?,
            },
            SignalCmd::PEERS_GONE => SignalMsg::PeersGone {
                ids: take_ids(r, MAX_PEERS_GONE)?,
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
            SignalCmd::FOUND_PEER => SignalMsg::FoundPeer {
                peers: take_records(r, MAX_PEERS_PER_ANSWER)?,
            },
            SignalCmd::KAD_TO => SignalMsg::KadTo {
                peer: take_id(r)?,
                bytes: r.take_var16(MAX_KAD_BYTES)?.to_vec(),
            },
            SignalCmd::KAD_FROM => SignalMsg::KadFrom {
                peer: take_id(r)?,
                pubkey: r.take_array()?,
                bridge: r.take_str16(MAX_ADDR)?.to_owned(),
                bytes: r.take_var16(MAX_KAD_BYTES)?.to_vec(),
            },
            SignalCmd::BRIDGE_INFO => SignalMsg::BridgeInfo {
                addr: r.take_str16(MAX_ADDR)?.to_owned(),
            },
            SignalCmd::BRIDGE_HELLO => SignalMsg::BridgeHello {
                pubkey: r.take_array()?,
                challenge: r.take_array()?,
                sig: r.take_array()?,
                addr: r.take_str16(MAX_ADDR)?.to_owned(),
            },
            SignalCmd::FEDERATE => SignalMsg::Federate {
                to: take_id(r)?,
                inner: r.take_var16(MAX_INNER)?.to_vec(),
            },
            SignalCmd::PEERS_JOINED => SignalMsg::PeersJoined {
                peers: take_records(r, MAX_PEERS_PER_SYNC)?,
            },
            SignalCmd::PEERS_LEFT => SignalMsg::PeersLeft {
                ids: take_ids(r, MAX_PEERS_PER_SYNC)?,
            },
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
            (arb_pk(), any::<[u8; 32]>(), arb_sig()).prop_map(|(pubkey, challenge, sig)| {
                SignalMsg::Hello {
                    pubkey,
                    challenge,
                    sig,
                }
            }),
            any::<[u8; 32]>().prop_map(|nonce| SignalMsg::Challenge { nonce }),
            any::<u64>().prop_map(|nonce| SignalMsg::Ping { nonce }),
            any::<u64>().prop_map(|nonce| SignalMsg::Pong { nonce }),
            proptest::collection::vec(arb_id(), 0..=MAX_PEERS_GONE)
                .prop_map(|ids| SignalMsg::PeersGone { ids }),
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
            (arb_id(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(peer, bytes)| SignalMsg::KadTo { peer, bytes }),
            (
                arb_id(),
                arb_pk(),
                "[a-z0-9.:/]{0,30}",
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(peer, pubkey, bridge, bytes)| SignalMsg::KadFrom {
                    peer,
                    pubkey,
                    bridge,
                    bytes
                }),
            "[a-z0-9.:/]{0,40}".prop_map(|addr| SignalMsg::BridgeInfo { addr }),
            (arb_pk(), any::<[u8; 32]>(), arb_sig(), "[a-z0-9.:/]{0,40}").prop_map(
                |(pubkey, challenge, sig, addr)| SignalMsg::BridgeHello {
                    pubkey,
                    challenge,
                    sig,
                    addr
                }
            ),
            (arb_id(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(to, inner)| SignalMsg::Federate { to, inner }),
            proptest::collection::vec(
                (arb_id(), arb_pk(), "[a-z0-9.:]{0,10}")
                    .prop_map(|(id, pubkey, bridge)| PeerRecord { id, pubkey, bridge }),
                0..=30
            )
            .prop_map(|peers| SignalMsg::PeersJoined { peers }),
            proptest::collection::vec(arb_id(), 0..=30)
                .prop_map(|ids| SignalMsg::PeersLeft { ids }),
            (0x50u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40))
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
    fn sync_counts_are_bounded() {
        for cmd in [
            SignalCmd::PEERS_JOINED,
            SignalCmd::PEERS_LEFT,
            SignalCmd::PEERS_GONE,
        ] {
            assert!(matches!(
                SignalMsg::decode_frame(&[cmd.0, 101]),
                Err(WireError::LengthTooLarge { len: 101, .. })
            ));
        }
    }

    #[test]
    fn kad_to_vector() {
        let bytes = SignalMsg::KadTo {
            peer: NodeId([0x11; 20]),
            bytes: vec![0xaa],
        }
        .encode_frame();
        assert_eq!(bytes.len(), 1 + 20 + 2 + 1);
        assert_eq!(hex::encode(&bytes[..2]), "2011");
        assert_eq!(hex::encode(&bytes[21..]), "0001aa");
    }

    #[test]
    fn hello_vector() {
        // A fixed vector so another implementation can check its encoder.
        let msg = SignalMsg::Hello {
            pubkey: [2; 33],
            challenge: [7; 32],
            sig: [9; 64],
        };
        let bytes = msg.encode_frame();
        assert_eq!(bytes.len(), 1 + 33 + 32 + 64);
        assert_eq!(&bytes[..2], &[0x01, 0x02]);
        assert_eq!(&bytes[34..66], &[7; 32]);
        assert_eq!(&bytes[66..], &[9; 64]);
    }

    #[test]
    fn challenge_ping_and_gone_vectors() {
        let challenge = SignalMsg::Challenge { nonce: [0xab; 32] }.encode_frame();
        assert_eq!(hex::encode(&challenge), format!("03{}", "ab".repeat(32)));
        let ping = SignalMsg::Ping {
            nonce: 0x0102030405060708,
        };
        assert_eq!(hex::encode(ping.encode_frame()), "040102030405060708");
        let pong = SignalMsg::Pong { nonce: 1 };
        assert_eq!(hex::encode(pong.encode_frame()), "050000000000000001");
        let gone = SignalMsg::PeersGone {
            ids: vec![NodeId([0x11; 20]), NodeId([0x22; 20])],
        };
        let bytes = gone.encode_frame();
        assert_eq!(
            hex::encode(&bytes),
            format!("2302{}{}", "11".repeat(20), "22".repeat(20))
        );
        assert_eq!(SignalMsg::decode_frame(&bytes).unwrap(), gone);
    }

    #[test]
    fn peers_gone_count_over_the_cap_is_refused() {
        let mut frame = vec![SignalCmd::PEERS_GONE.0, (MAX_PEERS_GONE + 1) as u8];
        frame.extend(std::iter::repeat_n(0u8, 20 * (MAX_PEERS_GONE + 1)));
        assert!(matches!(
            SignalMsg::decode_frame(&frame),
            Err(WireError::LengthTooLarge { .. })
        ));
    }
}

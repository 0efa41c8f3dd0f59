//! Frames on the WebSocket between a node and a bridge: the bridge's challenge and the signed
//! hello that answers it, keepalive pings, peer discovery
//! (`DB_FIND_PEER` / `DB_FOUND_PEER` in the spec) and the relayed WebRTC introduction
//! (`INTRODUCE` / `INTRODUCED`).
//!
//! Layout of every frame: `[cmd: u8][body]`. The `peer` field of the introduction messages names
//! the *target* when a node sends it to the bridge and the *source* when the bridge delivers it,
//! exactly as in the spec (`INTRODUCE [IDB, offer]` in, `INTRODUCE [IDA, offer]` out).

use crate::cell::RelayCmd;
use crate::db::DbMsg;
use crate::kad::KadBytes;
use crate::{
    BoundedBytes, BoundedString, BoundedVec, BridgeAddr, Frame, NodeId, PublicKeyBytes, Reader,
    SignatureBytes, WireError, Writer, MAX_SIGNAL_FRAME,
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
    pub const FACILITATE: SignalCmd = SignalCmd(0x24);
    /// Bridge -> node, one answer per frame: retired on 2026-12-01 for [`Self::FACILITATED`]
    /// (a page of the older version logs the new frame as unexpected, and the other way round).
    pub const FACILITATED_ONE: SignalCmd = SignalCmd(0x25);
    pub const FACILITATE_CLOSE: SignalCmd = SignalCmd(0x26);
    pub const FACILITATED: SignalCmd = SignalCmd(0x27);
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
pub use crate::MAX_ADDR;
/// Most peer records in one `FoundPeer`.
pub const MAX_PEERS_PER_ANSWER: usize = 20;

/// A human-readable reason (`Error`, `IntroduceFailed`): at most [`MAX_REASON`] bytes.
pub type Reason = BoundedString<MAX_REASON>;
/// An SDP offer or answer: at most [`MAX_SDP`] bytes. Never cut: a shortened SDP is garbage.
pub type Sdp = BoundedString<MAX_SDP>;
/// The peer records of one `FoundPeer`: at most [`MAX_PEERS_PER_ANSWER`].
pub type FoundPeers = BoundedVec<PeerRecord, MAX_PEERS_PER_ANSWER>;
/// The peer records of one `PeersJoined`: at most [`MAX_PEERS_PER_SYNC`]; split longer lists
/// with `chunks(MAX_PEERS_PER_SYNC)`.
pub type SyncPeers = BoundedVec<PeerRecord, MAX_PEERS_PER_SYNC>;
/// The IDs of one `PeersLeft` or `PeersGone`: at most [`MAX_PEERS_PER_SYNC`] (=
/// [`MAX_PEERS_GONE`]); split longer lists with `chunks`.
pub type PeerIds = BoundedVec<NodeId, MAX_PEERS_PER_SYNC>;
const _: () = assert!(MAX_PEERS_GONE == MAX_PEERS_PER_SYNC);
/// Most answers in one `Facilitated` frame: the most that fit in [`MAX_SIGNAL_FRAME`] when
/// every one carries a full cell's worth of relay data (7 bytes of request, command and
/// length, plus at most [`RELAY_DATA_LEN`](crate::cell::RELAY_DATA_LEN)).
pub const MAX_FACILITATED_BATCH: usize = 60;
const _: () = assert!(
    1 + 1 + MAX_FACILITATED_BATCH * (4 + 1 + 2 + crate::cell::RELAY_DATA_LEN) <= MAX_SIGNAL_FRAME
);
/// The answers of one `Facilitated` frame: at most [`MAX_FACILITATED_BATCH`].
pub type FacilitatedAnswers = BoundedVec<FacilitatedAnswer, MAX_FACILITATED_BATCH>;

/// One `DB_*` answer of a facilitator to request `req` (see `SignalMsg::Facilitated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilitatedAnswer {
    pub req: u32,
    pub msg: DbMsg,
}

/// One encoded signalling frame inside a `Federate`: at most [`MAX_INNER`] bytes.
pub type InnerFrame = BoundedBytes<MAX_INNER>;
/// The body of an unknown command (everything after the command byte).
pub type UnrecognizedBody = BoundedBytes<{ MAX_SIGNAL_FRAME - 1 }>;

/// One peer in a `FoundPeer` answer: who it is and which bridge can introduce it. `None` for
/// `bridge` (the empty string on the wire) means "the bridge that sent this answer".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: NodeId,
    pub pubkey: PublicKeyBytes,
    pub bridge: Option<BridgeAddr>,
}

impl PeerRecord {
    fn write_onto(&self, w: &mut Writer) {
        w.put_bytes(&self.id.0);
        w.put_bytes(&self.pubkey);
        BridgeAddr::write_opt(self.bridge.as_ref(), w);
    }

    fn take_from(r: &mut Reader<'_>) -> Result<PeerRecord, WireError> {
        Ok(PeerRecord {
            id: take_id(r)?,
            pubkey: r.take_array()?,
            bridge: BridgeAddr::take_opt(r)?,
        })
    }
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
    Error { code: u16, reason: Reason },
    /// DB_FIND_PEER [ID, public key].
    FindPeer { id: NodeId, pubkey: PublicKeyBytes },
    /// DB_FOUND_PEER: peers closest to the asker by XOR distance.
    FoundPeer { peers: FoundPeers },
    /// INTRODUCE [peer, SDP offer].
    Introduce {
        peer: NodeId,
        session: u64,
        sdp: Sdp,
    },
    /// INTRODUCED [peer, SDP answer].
    Introduced {
        peer: NodeId,
        session: u64,
        sdp: Sdp,
    },
    /// Bridge -> offerer: the introduction could not be delivered.
    IntroduceFailed {
        peer: NodeId,
        session: u64,
        reason: Reason,
    },
    /// Node -> bridge: deliver one Kademlia frame to `peer` (the bridge itself, a peer
    /// registered here, or a peer or bridge reachable through a federated bridge).
    KadTo { peer: NodeId, bytes: KadBytes },
    /// Bridge -> node (or inside `Federate`): `peer`, whose key is `pubkey` and whose bridge is
    /// `bridge` (`None`: the sending bridge), sent this Kademlia frame.
    KadFrom {
        peer: NodeId,
        pubkey: PublicKeyBytes,
        bridge: Option<BridgeAddr>,
        bytes: KadBytes,
    },
    /// Bridge -> node, after `Welcome`: the address under which other bridges know this bridge
    /// (what the node publishes as its own bridge in the DHT).
    BridgeInfo { addr: BridgeAddr },
    /// Bridge -> node, batched: these peers are gone (they left this bridge or a federated
    /// one, or stopped answering), so do not choose them for new links or paths. At most
    /// [`MAX_PEERS_GONE`] IDs per frame; a bridge coalesces departures over a short interval.
    PeersGone { ids: PeerIds },
    /// Node -> bridge: one `DB_*` message of facilitated request `req` (issue 10). An ORDB that
    /// finds no holder of a content in the mesh hands the request to its bridge, the
    /// facilitator: a `DB_SOURCE` (magnet link or web URL) first, then `DB_QUERY`s exactly as on
    /// a stream to an ORDB. `req` is the node's own number for the request (one per stream it
    /// relays); the bridge never learns whom the ORDB relays for.
    Facilitate { req: u32, msg: DbMsg },
    /// Bridge -> node: `DB_*` answers to facilitated requests (`DB_CONNECTED`, `DB_DATA`,
    /// `DB_END`), each request's in the order a stream would carry them; a `DB_END` ends its
    /// request. Up to [`MAX_FACILITATED_BATCH`] per frame: a bridge puts every answer waiting
    /// for the connection into one frame, so a page handles a burst of slices in one go (one
    /// WebSocket message, one pass of its node, one batch of cells on the circuit) instead of
    /// one slice at a time.
    Facilitated { answers: FacilitatedAnswers },
    /// Either way: request `req` is over (the node cancels it, or the bridge drops it without a
    /// `DB_END`, for instance when the node exceeds its limits).
    FacilitateClose { req: u32 },
    /// Bridge -> bridge, after the receiver's `Challenge`: a signed hello like a node's (over
    /// the receiver's challenge), plus the address the sender is reachable at.
    BridgeHello {
        pubkey: PublicKeyBytes,
        challenge: ChallengeNonce,
        sig: SignatureBytes,
        addr: BridgeAddr,
    },
    /// Bridge -> bridge: deliver `inner` (one encoded `KadFrom`, `Introduce`, `Introduced` or
    /// `IntroduceFailed` whose `peer` is the source) to `to`: the receiving bridge itself or a
    /// peer registered there.
    Federate { to: NodeId, inner: InnerFrame },
    /// Bridge -> bridge: these peers registered at the sender (their `bridge` field is ignored).
    PeersJoined { peers: SyncPeers },
    /// Bridge -> bridge: these peers left the sender.
    PeersLeft { ids: PeerIds },
    /// A command this version does not know; the body is kept for logging.
    Unrecognized { cmd: u8, body: UnrecognizedBody },
}

fn take_id(r: &mut Reader<'_>) -> Result<NodeId, WireError> {
    Ok(NodeId(r.take_array()?))
}

/// A count byte, then the records.
fn put_records<const MAX: usize>(w: &mut Writer, peers: &BoundedVec<PeerRecord, MAX>) {
    w.put_count8(peers);
    for p in peers {
        p.write_onto(w);
    }
}

/// A count byte, then the IDs.
fn put_ids(w: &mut Writer, ids: &PeerIds) {
    w.put_count8(ids);
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
                w.put_str16(reason);
            }
            SignalMsg::FindPeer { id, pubkey } => {
                w.put_u8(SignalCmd::FIND_PEER.0);
                w.put_bytes(&id.0);
                w.put_bytes(pubkey);
            }
            SignalMsg::FoundPeer { peers } => {
                w.put_u8(SignalCmd::FOUND_PEER.0);
                put_records(w, peers);
            }
            SignalMsg::Introduce { peer, session, sdp } => {
                w.put_u8(SignalCmd::INTRODUCE.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(sdp);
            }
            SignalMsg::Introduced { peer, session, sdp } => {
                w.put_u8(SignalCmd::INTRODUCED.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(sdp);
            }
            SignalMsg::IntroduceFailed {
                peer,
                session,
                reason,
            } => {
                w.put_u8(SignalCmd::INTRODUCE_FAILED.0);
                w.put_bytes(&peer.0);
                w.put_u64(*session);
                w.put_str16(reason);
            }
            SignalMsg::KadTo { peer, bytes } => {
                w.put_u8(SignalCmd::KAD_TO.0);
                w.put_bytes(&peer.0);
                w.put_var16(bytes);
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
                BridgeAddr::write_opt(bridge.as_ref(), w);
                w.put_var16(bytes);
            }
            SignalMsg::BridgeInfo { addr } => {
                w.put_u8(SignalCmd::BRIDGE_INFO.0);
                addr.write(w);
            }
            SignalMsg::PeersGone { ids } => {
                w.put_u8(SignalCmd::PEERS_GONE.0);
                put_ids(w, ids);
            }
            SignalMsg::Facilitate { req, msg } => {
                w.put_u8(SignalCmd::FACILITATE.0);
                put_db(w, *req, msg);
            }
            SignalMsg::Facilitated { answers } => {
                w.put_u8(SignalCmd::FACILITATED.0);
                w.put_u8(answers.len() as u8);
                for a in answers.iter() {
                    put_db(w, a.req, &a.msg);
                }
            }
            SignalMsg::FacilitateClose { req } => {
                w.put_u8(SignalCmd::FACILITATE_CLOSE.0);
                w.put_u32(*req);
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
                addr.write(w);
            }
            SignalMsg::Federate { to, inner } => {
                w.put_u8(SignalCmd::FEDERATE.0);
                w.put_bytes(&to.0);
                w.put_var16(inner);
            }
            SignalMsg::PeersJoined { peers } => {
                w.put_u8(SignalCmd::PEERS_JOINED.0);
                put_records(w, peers);
            }
            SignalMsg::PeersLeft { ids } => {
                w.put_u8(SignalCmd::PEERS_LEFT.0);
                put_ids(w, ids);
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
                ids: r.take_list8(take_id)?,
            },
            SignalCmd::WELCOME => SignalMsg::Welcome {
                bridge_pubkey: r.take_array()?,
                peers_online: r.take_u32()?,
            },
            SignalCmd::ERROR => SignalMsg::Error {
                code: r.take_u16()?,
                reason: r.take_string16()?,
            },
            SignalCmd::FIND_PEER => SignalMsg::FindPeer {
                id: take_id(r)?,
                pubkey: r.take_array()?,
            },
            SignalCmd::FOUND_PEER => SignalMsg::FoundPeer {
                peers: r.take_list8(PeerRecord::take_from)?,
            },
            SignalCmd::KAD_TO => SignalMsg::KadTo {
                peer: take_id(r)?,
                bytes: r.take_bytes16()?,
            },
            SignalCmd::KAD_FROM => SignalMsg::KadFrom {
                peer: take_id(r)?,
                pubkey: r.take_array()?,
                bridge: BridgeAddr::take_opt(r)?,
                bytes: r.take_bytes16()?,
            },
            SignalCmd::BRIDGE_INFO => SignalMsg::BridgeInfo {
                addr: BridgeAddr::take(r)?,
            },
            SignalCmd::BRIDGE_HELLO => SignalMsg::BridgeHello {
                pubkey: r.take_array()?,
                challenge: r.take_array()?,
                sig: r.take_array()?,
                addr: BridgeAddr::take(r)?,
            },
            SignalCmd::FEDERATE => SignalMsg::Federate {
                to: take_id(r)?,
                inner: r.take_bytes16()?,
            },
            SignalCmd::PEERS_JOINED => SignalMsg::PeersJoined {
                peers: r.take_list8(PeerRecord::take_from)?,
            },
            SignalCmd::PEERS_LEFT => SignalMsg::PeersLeft {
                ids: r.take_list8(take_id)?,
            },
            SignalCmd::INTRODUCE => SignalMsg::Introduce {
                peer: take_id(r)?,
                session: r.take_u64()?,
                sdp: r.take_string16()?,
            },
            SignalCmd::INTRODUCED => SignalMsg::Introduced {
                peer: take_id(r)?,
                session: r.take_u64()?,
                sdp: r.take_string16()?,
            },
            SignalCmd::INTRODUCE_FAILED => SignalMsg::IntroduceFailed {
                peer: take_id(r)?,
                session: r.take_u64()?,
                reason: r.take_string16()?,
            },
            SignalCmd::FACILITATE => {
                let (req, msg) = take_db(r)?;
                SignalMsg::Facilitate { req, msg }
            }
            SignalCmd::FACILITATED => SignalMsg::Facilitated {
                answers: r.take_list8(|r| {
                    let (req, msg) = take_db(r)?;
                    Ok(FacilitatedAnswer { req, msg })
                })?,
            },
            SignalCmd::FACILITATE_CLOSE => SignalMsg::FacilitateClose { req: r.take_u32()? },
            SignalCmd(cmd) => SignalMsg::Unrecognized {
                cmd,
                body: r.take_rest_bounded()?,
            },
        })
    }
}

/// `[req u32][DB_* command u8][relay data var16]`: a `DB_*` message as a stream would carry
/// it (the length prefix makes a cut frame an error, not a shorter slice).
fn put_db(w: &mut Writer, req: u32, msg: &DbMsg) {
    let (cmd, data) = msg.encode();
    w.put_u32(req);
    w.put_u8(cmd.0);
    w.put_var16(&data);
}

fn take_db(r: &mut Reader<'_>) -> Result<(u32, DbMsg), WireError> {
    let req = r.take_u32()?;
    let cmd = RelayCmd(r.take_u8()?);
    let data = r.take_var16(crate::cell::RELAY_DATA_LEN)?;
    let msg = DbMsg::decode(cmd, data)?;
    Ok((req, msg))
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

    fn arb_addr() -> impl Strategy<Value = BridgeAddr> {
        "[a-z0-9.:/]{1,40}".prop_map(|a| BridgeAddr::new(a).unwrap())
    }
    fn arb_bridge() -> impl Strategy<Value = Option<BridgeAddr>> {
        proptest::option::of(arb_addr())
    }
    fn arb_record() -> impl Strategy<Value = PeerRecord> {
        (arb_id(), arb_pk(), arb_bridge()).prop_map(|(id, pubkey, bridge)| PeerRecord {
            id,
            pubkey,
            bridge,
        })
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
            (any::<u32>(), any::<u32>(), 0u16..=8).prop_map(|(req, piece, count)| {
                SignalMsg::Facilitate {
                    req,
                    msg: DbMsg::Query(crate::db::DbQuery {
                        hash_name: crate::db::HashName([3; 20]),
                        piece,
                        offset: 0,
                        count,
                        counter: 1,
                    }),
                }
            }),
            proptest::collection::vec(
                (
                    any::<u32>(),
                    proptest::collection::vec(any::<u8>(), 0..=crate::db::MAX_DATA_SLICE)
                ),
                0..=MAX_FACILITATED_BATCH
            )
            .prop_map(|answers| SignalMsg::Facilitated {
                answers: FacilitatedAnswers::new(
                    answers
                        .into_iter()
                        .map(|(req, data)| FacilitatedAnswer {
                            req,
                            msg: DbMsg::Data(crate::db::DataSlice::new(7, 0, data).unwrap()),
                        })
                        .collect()
                )
                .unwrap(),
            }),
            any::<u32>().prop_map(|req| SignalMsg::FacilitateClose { req }),
            any::<u64>().prop_map(|nonce| SignalMsg::Ping { nonce }),
            any::<u64>().prop_map(|nonce| SignalMsg::Pong { nonce }),
            proptest::collection::vec(arb_id(), 0..=MAX_PEERS_GONE).prop_map(|ids| {
                SignalMsg::PeersGone {
                    ids: PeerIds::new(ids).unwrap(),
                }
            }),
            (arb_pk(), any::<u32>()).prop_map(|(bridge_pubkey, peers_online)| SignalMsg::Welcome {
                bridge_pubkey,
                peers_online
            }),
            (any::<u16>(), ".{0,100}").prop_map(|(code, reason)| SignalMsg::Error {
                code,
                reason: Reason::new(reason).unwrap()
            }),
            (arb_id(), arb_pk()).prop_map(|(id, pubkey)| SignalMsg::FindPeer { id, pubkey }),
            proptest::collection::vec(arb_record(), 0..=MAX_PEERS_PER_ANSWER).prop_map(|peers| {
                SignalMsg::FoundPeer {
                    peers: FoundPeers::new(peers).unwrap(),
                }
            }),
            (arb_id(), any::<u64>(), ".{0,300}").prop_map(|(peer, session, sdp)| {
                SignalMsg::Introduce {
                    peer,
                    session,
                    sdp: Sdp::new(sdp).unwrap(),
                }
            }),
            (arb_id(), any::<u64>(), ".{0,300}").prop_map(|(peer, session, sdp)| {
                SignalMsg::Introduced {
                    peer,
                    session,
                    sdp: Sdp::new(sdp).unwrap(),
                }
            }),
            (arb_id(), any::<u64>(), ".{0,50}").prop_map(|(peer, session, reason)| {
                SignalMsg::IntroduceFailed {
                    peer,
                    session,
                    reason: Reason::new(reason).unwrap(),
                }
            }),
            (arb_id(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(peer, bytes)| {
                SignalMsg::KadTo {
                    peer,
                    bytes: KadBytes::new(bytes).unwrap(),
                }
            }),
            (
                arb_id(),
                arb_pk(),
                arb_bridge(),
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(peer, pubkey, bridge, bytes)| SignalMsg::KadFrom {
                    peer,
                    pubkey,
                    bridge,
                    bytes: KadBytes::new(bytes).unwrap(),
                }),
            arb_addr().prop_map(|addr| SignalMsg::BridgeInfo { addr }),
            (arb_pk(), any::<[u8; 32]>(), arb_sig(), arb_addr()).prop_map(
                |(pubkey, challenge, sig, addr)| SignalMsg::BridgeHello {
                    pubkey,
                    challenge,
                    sig,
                    addr
                }
            ),
            (arb_id(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(to, inner)| {
                SignalMsg::Federate {
                    to,
                    inner: InnerFrame::new(inner).unwrap(),
                }
            }),
            proptest::collection::vec(arb_record(), 0..=30).prop_map(|peers| {
                SignalMsg::PeersJoined {
                    peers: SyncPeers::new(peers).unwrap(),
                }
            }),
            proptest::collection::vec(arb_id(), 0..=30).prop_map(|ids| SignalMsg::PeersLeft {
                ids: PeerIds::new(ids).unwrap()
            }),
            (0x50u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
                |(cmd, body)| SignalMsg::Unrecognized {
                    cmd,
                    body: UnrecognizedBody::new(body).unwrap()
                }
            ),
        ]
    }

    #[test]
    fn a_full_facilitated_batch_fits_and_one_more_is_refused() {
        let full = |n: usize| {
            (0..n)
                .map(|i| FacilitatedAnswer {
                    req: i as u32,
                    msg: DbMsg::Data(
                        crate::db::DataSlice::new(1, 0, vec![7; crate::db::MAX_DATA_SLICE])
                            .unwrap(),
                    ),
                })
                .collect::<Vec<_>>()
        };
        let msg = SignalMsg::Facilitated {
            answers: FacilitatedAnswers::new(full(MAX_FACILITATED_BATCH)).unwrap(),
        };
        let bytes = msg.encode_frame();
        assert!(bytes.len() <= MAX_SIGNAL_FRAME, "{} bytes", bytes.len());
        assert_eq!(SignalMsg::decode_frame(&bytes).unwrap(), msg);
        assert!(FacilitatedAnswers::new(full(MAX_FACILITATED_BATCH + 1)).is_err());
        // A frame that claims one answer more than allowed is refused before anything is read.
        let mut forged = bytes.clone();
        forged[1] = (MAX_FACILITATED_BATCH + 1) as u8;
        assert_eq!(
            SignalMsg::decode_frame(&forged),
            Err(WireError::LengthTooLarge {
                len: MAX_FACILITATED_BATCH + 1,
                max: MAX_FACILITATED_BATCH
            })
        );
    }

    proptest! {
        #[test]
        fn round_trip(msg in arb_msg()) {
            let bytes = msg.encode_frame();
            prop_assert!(bytes.len() <= MAX_SIGNAL_FRAME);
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
            bytes: KadBytes::new(vec![0xaa]).unwrap(),
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
            ids: PeerIds::new(vec![NodeId([0x11; 20]), NodeId([0x22; 20])]).unwrap(),
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

    #[test]
    fn constructors_accept_exactly_the_maximum_and_refuse_one_more() {
        assert!(Reason::new("r".repeat(MAX_REASON)).is_ok());
        assert!(Reason::new("r".repeat(MAX_REASON + 1)).is_err());
        assert!(Sdp::new("s".repeat(MAX_SDP)).is_ok());
        assert!(Sdp::new("s".repeat(MAX_SDP + 1)).is_err());
        assert!(InnerFrame::new(vec![0; MAX_INNER]).is_ok());
        assert!(InnerFrame::new(vec![0; MAX_INNER + 1]).is_err());
        assert!(PeerIds::new(vec![NodeId::default(); MAX_PEERS_PER_SYNC]).is_ok());
        assert!(PeerIds::new(vec![NodeId::default(); MAX_PEERS_PER_SYNC + 1]).is_err());
        let rec = PeerRecord {
            id: NodeId::default(),
            pubkey: [2; 33],
            bridge: None,
        };
        assert!(FoundPeers::new(vec![rec.clone(); MAX_PEERS_PER_ANSWER]).is_ok());
        assert!(FoundPeers::new(vec![rec.clone(); MAX_PEERS_PER_ANSWER + 1]).is_err());
        assert!(SyncPeers::new(vec![rec.clone(); MAX_PEERS_PER_SYNC]).is_ok());
        assert!(SyncPeers::new(vec![rec; MAX_PEERS_PER_SYNC + 1]).is_err());
        assert!(UnrecognizedBody::new(vec![0; MAX_SIGNAL_FRAME - 1]).is_ok());
        assert!(UnrecognizedBody::new(vec![0; MAX_SIGNAL_FRAME]).is_err());
    }

    #[test]
    fn largest_messages_fit_a_frame() {
        let addr = || BridgeAddr::new("a".repeat(MAX_ADDR)).unwrap();
        let rec = PeerRecord {
            id: NodeId([1; 20]),
            pubkey: [2; 33],
            bridge: Some(addr()),
        };
        let largest = [
            SignalMsg::PeersJoined {
                peers: SyncPeers::new(vec![rec.clone(); MAX_PEERS_PER_SYNC]).unwrap(),
            },
            SignalMsg::FoundPeer {
                peers: FoundPeers::new(vec![rec; MAX_PEERS_PER_ANSWER]).unwrap(),
            },
            SignalMsg::Federate {
                to: NodeId([3; 20]),
                inner: InnerFrame::new(vec![4; MAX_INNER]).unwrap(),
            },
            SignalMsg::KadFrom {
                peer: NodeId([5; 20]),
                pubkey: [2; 33],
                bridge: Some(addr()),
                bytes: KadBytes::new(vec![6; MAX_KAD_BYTES]).unwrap(),
            },
            SignalMsg::Introduce {
                peer: NodeId([7; 20]),
                session: 1,
                sdp: Sdp::new("v".repeat(MAX_SDP)).unwrap(),
            },
            SignalMsg::Unrecognized {
                cmd: 0xee,
                body: UnrecognizedBody::new(vec![8; MAX_SIGNAL_FRAME - 1]).unwrap(),
            },
        ];
        for msg in largest {
            let bytes = msg.encode_frame();
            assert!(bytes.len() <= MAX_SIGNAL_FRAME, "{} bytes", bytes.len());
            assert_eq!(SignalMsg::decode_frame(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn bridge_fields_round_trip_none_as_empty() {
        let msg = SignalMsg::KadFrom {
            peer: NodeId([1; 20]),
            pubkey: [2; 33],
            bridge: None,
            bytes: KadBytes::empty(),
        };
        let bytes = msg.encode_frame();
        assert_eq!(hex::encode(&bytes[1 + 20 + 33..]), "00000000");
        assert_eq!(SignalMsg::decode_frame(&bytes).unwrap(), msg);
        // BridgeInfo and BridgeHello must name an address: empty is refused.
        assert!(matches!(
            SignalMsg::decode_frame(&[SignalCmd::BRIDGE_INFO.0, 0, 0]),
            Err(WireError::BadValue(_))
        ));
    }
}

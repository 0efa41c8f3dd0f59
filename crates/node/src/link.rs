use crate::{LinkState, Time};
use onionmesh_crypto::dtls::Fingerprint;
use onionmesh_wire::NodeId;

/// A handle for one WebRTC peer connection, chosen by the core. The driver maps it to its
/// `RTCPeerConnection` and data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// Everything the core knows about one link.
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: NodeId,
    pub state: LinkState,
    pub initiator: bool,
    /// Matches an offer with its answer through the bridge.
    pub session: u64,
    pub local_fp: Option<Fingerprint>,
    pub remote_fp: Option<Fingerprint>,
    /// Our challenge for the peer's proof.
    pub nonce: [u8; 32],
    pub got_peer_nonce: bool,
    /// Entered the current state at.
    pub since: Time,
    /// A link not yet `Linked` is closed at this time.
    pub deadline: Option<Time>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

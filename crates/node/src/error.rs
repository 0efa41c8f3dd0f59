//! The node's API errors: a caller misused the API (as opposed to a peer breaking the protocol,
//! which closes that link or circuit). Each has a stable [`ErrorCode`] from the one list.

use crate::code::ErrorCode;
use onionmesh_onion::{ApiError as OnionApiError, PathError};
use thiserror::Error;

/// Misuse of the link API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("there is no authenticated link to peer {0}; wait for its 'linked' event first")]
    NotLinked(String),
    #[error("the message is {len} bytes; at most {max} fit in one link frame")]
    TooLarge { len: usize, max: usize },
    #[error("a node cannot link to itself")]
    SelfConnect,
    #[error("the node is not registered with a bridge, so nobody can introduce it")]
    NoBridge,
    #[error("the node already has {0} links open or opening; close one first")]
    TooManyLinks(usize),
    #[error("the link to {0} has too much queued; wait for its 'writable' event")]
    Busy(String),
    #[error("the node has stopped")]
    Stopped,
}

impl ApiError {
    /// A stable code for the JS API.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::NotLinked(_) => ErrorCode::NotLinked,
            ApiError::TooLarge { .. } => ErrorCode::TooLarge,
            ApiError::SelfConnect => ErrorCode::BadPeerId,
            ApiError::NoBridge => ErrorCode::NoBridge,
            ApiError::TooManyLinks(_) => ErrorCode::TooManyLinks,
            ApiError::Busy(_) => ErrorCode::Busy,
            ApiError::Stopped => ErrorCode::Stopped,
        }
    }
}

/// Misuse of the onion API (nothing on the network changed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OnionError {
    #[error("peer {0} is unknown: its key has not been seen (find peers first)")]
    UnknownPeer(String),
    #[error("the key given for peer {0} is not its key (or the peer is this node)")]
    BadPeerKey(String),
    #[error("a path cannot go through this node itself")]
    SelfInPath,
    #[error("there is no authenticated link to the first hop {0}; wait for its 'linked' event")]
    FirstHopNotLinked(String),
    #[error("cannot choose a path: {0}")]
    NoPath(PathError),
    #[error("{0}")]
    Onion(OnionApiError),
}

impl OnionError {
    /// A stable code for the JS API.
    pub fn code(&self) -> ErrorCode {
        match self {
            OnionError::UnknownPeer(_) => ErrorCode::UnknownPeer,
            OnionError::BadPeerKey(_) => ErrorCode::BadPeerKey,
            OnionError::SelfInPath => ErrorCode::PathThroughSelf,
            OnionError::FirstHopNotLinked(_) => ErrorCode::NotLinked,
            OnionError::NoPath(_) => ErrorCode::NoPath,
            // The onion crate's codes are all in the list (tested below); a new one that is not
            // is a bug caught by that test, not something to hide.
            OnionError::Onion(e) => ErrorCode::from_text(e.code()).unwrap_or(ErrorCode::Internal),
        }
    }
}

impl From<OnionApiError> for OnionError {
    fn from(e: OnionApiError) -> Self {
        OnionError::Onion(e)
    }
}

/// Misuse of the DHT API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DhtError {
    #[error(transparent)]
    Kad(#[from] onionmesh_kad::ApiError),
}

impl DhtError {
    /// A stable code for the JS API.
    pub fn code(&self) -> ErrorCode {
        match self {
            DhtError::Kad(e) => ErrorCode::from_text(e.code()).unwrap_or(ErrorCode::Internal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_crate_codes_are_in_the_list() {
        let onion = [
            OnionApiError::UnknownCircuit,
            OnionApiError::UnknownStream,
            OnionApiError::NotOpen,
            OnionApiError::StreamNotOpen,
            OnionApiError::CircuitUsed,
            OnionApiError::BadServiceName,
        ];
        for e in onion {
            assert!(ErrorCode::from_text(e.code()).is_some(), "{}", e.code());
        }
        for text in [
            "BAD_PATH",
            "TOO_MANY_CIRCUITS",
            "TOO_MANY_STREAMS",
            "BAD_HOP_COUNT",
            "BAD_OWN_CONTACT",
            "TOO_MANY_LOOKUPS",
            "TOO_MANY_PUBLICATIONS",
            "PUBLISH_NO_NODES",
            "PUBLISH_INCOMPLETE",
            "REQUESTED",
            "DESTROYED",
            "PROTOCOL",
            "HANDSHAKE",
            "RESOURCE_LIMIT",
            "TIMEOUT",
            "LINK_CLOSED",
            "EXTEND_FAILED",
            "BUILD_FAILED",
            "PATH_THROUGH_SELF",
        ] {
            assert!(ErrorCode::from_text(text).is_some(), "{text}");
        }
    }
}

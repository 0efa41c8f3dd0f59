//! The one list of stable error codes. Every error and close reason that reaches JavaScript
//! carries one of these. The one macro below defines the enum, [`ErrorCode::ALL`], the texts
//! and the TypeScript union [`TS_ERROR_CODE`] the browser crate puts in its `.d.ts`, so the
//! list, the `.d.ts` and the docs cannot drift apart. One code a line: `Variant = "TEXT",`.
//! A leaf module: it imports nothing from this crate.

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable code, shown to JavaScript as its `SCREAMING_SNAKE` text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code's text, as JavaScript sees it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            /// The code for `text`, if it is one of ours.
            pub fn from_text(text: &str) -> Option<ErrorCode> {
                match text {
                    $($text => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }

        /// The TypeScript declaration of the codes, `export type ErrorCode = | "NOT_LINKED" |
        /// ...;`, generated from this list: the browser crate's `.d.ts` section is this constant.
        pub const TS_ERROR_CODE: &str = concat!(
            "\n/** The `code` of every error this module throws or rejects with (one list for the whole node). */\nexport type ErrorCode =\n",
            $("  | \"", $text, "\"\n",)*
            "  ;\n"
        );
    };
}

codes! {
    // --- links and the bridge ---
    /// No authenticated link to that peer.
    NotLinked = "NOT_LINKED",
    /// A message or argument is larger than allowed.
    TooLarge = "TOO_LARGE",
    /// An ID, key or path names the wrong thing (or this node itself).
    BadPeerId = "BAD_PEER_ID",
    /// Not registered with a bridge, so nobody can introduce us.
    NoBridge = "NO_BRIDGE",
    TooManyLinks = "TOO_MANY_LINKS",
    /// The link's send queue is over its high-water mark: wait for `writable`.
    Busy = "BUSY",
    /// Closed on request.
    Requested = "REQUESTED",
    /// The peer closed the link.
    PeerClosed = "PEER_CLOSED",
    /// The link or channel is gone.
    LinkClosed = "LINK_CLOSED",
    /// The driver could not set the connection up.
    ConnectFailed = "CONNECT_FAILED",
    Timeout = "TIMEOUT",
    AuthFailed = "AUTH_FAILED",
    /// The peer broke the protocol.
    Protocol = "PROTOCOL",
    IntroductionFailed = "INTRODUCTION_FAILED",
    /// Both sides offered at once.
    Glare = "GLARE",
    Idle = "IDLE",
    /// The node was stopped; pending work is settled with this code.
    Stopped = "STOPPED",
    // --- onion ---
    UnknownPeer = "UNKNOWN_PEER",
    BadPeerKey = "BAD_PEER_KEY",
    /// A path names this node itself.
    PathThroughSelf = "PATH_THROUGH_SELF",
    NoPath = "NO_PATH",
    UnknownCircuit = "UNKNOWN_CIRCUIT",
    UnknownStream = "UNKNOWN_STREAM",
    NotOpen = "NOT_OPEN",
    StreamNotOpen = "STREAM_NOT_OPEN",
    BadPath = "BAD_PATH",
    TooManyCircuits = "TOO_MANY_CIRCUITS",
    TooManyStreams = "TOO_MANY_STREAMS",
    CircuitUsed = "CIRCUIT_USED",
    BadHopCount = "BAD_HOP_COUNT",
    BadServiceName = "BAD_SERVICE_NAME",
    Destroyed = "DESTROYED",
    Handshake = "HANDSHAKE",
    ResourceLimit = "RESOURCE_LIMIT",
    ExtendFailed = "EXTEND_FAILED",
    /// An automatic circuit failed on every path it tried.
    BuildFailed = "BUILD_FAILED",
    // --- DHT ---
    BadOwnContact = "BAD_OWN_CONTACT",
    TooManyLookups = "TOO_MANY_LOOKUPS",
    TooManyPublications = "TOO_MANY_PUBLICATIONS",
    /// No DHT node answered the lookup for a key being published.
    PublishNoNodes = "PUBLISH_NO_NODES",
    /// A publication reached fewer than the closest nodes it wanted.
    PublishIncomplete = "PUBLISH_INCOMPLETE",
    // --- content ---
    /// No content with that hash_name is held or being downloaded.
    NotFound = "NOT_FOUND",
    /// The content is not (yet) held whole, or the bytes asked for are not held.
    NotComplete = "NOT_COMPLETE",
    /// The content store is full; nothing already stored was lost.
    QuotaFull = "QUOTA_FULL",
    // --- the JS edge ---
    /// An argument from JavaScript has the wrong type or shape.
    BadArgument = "BAD_ARGUMENT",
    /// The browser refused an operation (WebRTC, WebSocket, storage).
    Browser = "BROWSER",
    /// A bug: something that cannot happen did.
    Internal = "INTERNAL",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_unique_and_round_trip() {
        let mut seen = onionmesh_bounded::FlatSet::new();
        for c in ErrorCode::ALL {
            assert!(
                seen.insert(c.as_str()),
                "duplicate code text {}",
                c.as_str()
            );
            assert_eq!(ErrorCode::from_text(c.as_str()), Some(*c));
            assert!(c
                .as_str()
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch == '_'));
        }
        assert_eq!(ErrorCode::from_text("NOPE"), None);
    }

    #[test]
    fn the_typescript_union_lists_every_code_once() {
        let members: Vec<&str> = TS_ERROR_CODE
            .lines()
            .filter_map(|l| l.trim().strip_prefix("| "))
            .collect();
        let texts: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect();
        assert_eq!(members, texts);
        assert!(TS_ERROR_CODE.contains("export type ErrorCode =\n"));
        assert!(TS_ERROR_CODE.trim_end().ends_with(';'));
    }
}

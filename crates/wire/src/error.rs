use thiserror::Error;

/// Why a frame could not be decoded, or a value could not be built. From a decoder, every
/// variant means "the peer sent something malformed": the caller closes that link (or circuit)
/// and keeps running. From a constructor ([`crate::BoundedBytes::new`], [`crate::BridgeAddr::new`],
/// ...), it means the caller's value does not fit its wire field (`LengthTooLarge`, `BadValue`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("the frame ended early: {needed} more bytes were needed but only {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("a length field says {len} bytes but at most {max} are allowed here")]
    LengthTooLarge { len: usize, max: usize },
    #[error("the frame is {len} bytes, larger than the maximum of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("{0} unexpected bytes follow the message")]
    TrailingBytes(usize),
    #[error("the frame is empty")]
    Empty,
    #[error("a text field is not valid UTF-8")]
    BadUtf8,
    #[error("a field has an invalid value: {0}")]
    BadValue(&'static str),
}

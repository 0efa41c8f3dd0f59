use std::fmt;
use std::ops::Deref;

use crate::{BoundedString, Reader, WireError, Writer};

/// Longest bridge address, in UTF-8 bytes (in a peer record, a contact, `BridgeInfo` and
/// `BridgeHello`).
pub const MAX_ADDR: usize = 256;

/// The address a bridge is known by (`ws://host:port/ws`, or `host:port`): 1 to [`MAX_ADDR`]
/// bytes of UTF-8. Never empty, so "no bridge" is `Option::<BridgeAddr>::None`; on the wire,
/// where the field is a u16 length and the bytes, `None` is the empty string.
///
/// The codec only bounds the shape. Whether the address is one a page can dial is the driver's
/// business (the browser opens it with `WebSocket`, which refuses what is not a URL).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BridgeAddr(BoundedString<MAX_ADDR>);

impl BridgeAddr {
    /// Errors: [`WireError::BadValue`] for an empty address, [`WireError::LengthTooLarge`] for
    /// one over [`MAX_ADDR`] bytes.
    pub fn new(addr: impl Into<String>) -> Result<BridgeAddr, WireError> {
        let addr = BoundedString::new(addr)?;
        if addr.is_empty() {
            return Err(WireError::BadValue("an empty bridge address"));
        }
        Ok(BridgeAddr(addr))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `None` as the empty string, as it goes on the wire.
    pub fn write_opt(addr: Option<&BridgeAddr>, w: &mut Writer) {
        match addr {
            Some(a) => w.put_str16(&a.0),
            None => w.put_str16(&BoundedString::<MAX_ADDR>::empty()),
        }
    }

    /// The wire form of an optional address: the empty string is `None`.
    pub fn take_opt(r: &mut Reader<'_>) -> Result<Option<BridgeAddr>, WireError> {
        let s = r.take_str16(MAX_ADDR)?;
        if s.is_empty() {
            Ok(None)
        } else {
            BridgeAddr::new(s).map(Some)
        }
    }

    /// The wire form of an address that must be there.
    pub fn take(r: &mut Reader<'_>) -> Result<BridgeAddr, WireError> {
        BridgeAddr::new(r.take_str16(MAX_ADDR)?)
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.put_str16(&self.0);
    }
}

impl Deref for BridgeAddr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for BridgeAddr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BridgeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for BridgeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for BridgeAddr {
    type Error = WireError;
    fn try_from(s: &str) -> Result<Self, WireError> {
        BridgeAddr::new(s)
    }
}

impl TryFrom<String> for BridgeAddr {
    type Error = WireError;
    fn try_from(s: String) -> Result<Self, WireError> {
        BridgeAddr::new(s)
    }
}

impl std::str::FromStr for BridgeAddr {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        BridgeAddr::new(s)
    }
}

impl From<BridgeAddr> for String {
    fn from(a: BridgeAddr) -> String {
        a.0.into_string()
    }
}

impl PartialEq<str> for BridgeAddr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for BridgeAddr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_max_and_refuses_one_more_or_empty() {
        assert!(BridgeAddr::new("b".repeat(MAX_ADDR)).is_ok());
        assert_eq!(
            BridgeAddr::new("b".repeat(MAX_ADDR + 1)),
            Err(WireError::LengthTooLarge {
                len: MAX_ADDR + 1,
                max: MAX_ADDR
            })
        );
        assert!(matches!(BridgeAddr::new(""), Err(WireError::BadValue(_))));
        assert_eq!(BridgeAddr::new("ws://b:1/ws").unwrap(), "ws://b:1/ws");
    }

    #[test]
    fn none_is_the_empty_string_on_the_wire() {
        let mut w = Writer::new();
        BridgeAddr::write_opt(None, &mut w);
        let a = BridgeAddr::new("b:1").unwrap();
        BridgeAddr::write_opt(Some(&a), &mut w);
        let bytes = w.into_vec();
        assert_eq!(hex::encode(&bytes), "00000003623a31");
        let mut r = Reader::new(&bytes);
        assert_eq!(BridgeAddr::take_opt(&mut r), Ok(None));
        assert_eq!(BridgeAddr::take_opt(&mut r), Ok(Some(a)));
        // A required address may not be empty.
        assert!(BridgeAddr::take(&mut Reader::new(&[0, 0])).is_err());
    }
}

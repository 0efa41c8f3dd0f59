use crate::{BoundedBytes, BoundedString, BoundedVec, WireError};

/// A bounds-checked cursor over one frame. Every `take_*` either returns data that really is in
/// the frame or an error; nothing here can panic or allocate more than the frame holds.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte has been consumed.
    pub fn should_be_exhausted(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }

    pub fn take_bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(WireError::Truncated {
                needed: n,
                remaining,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take_bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn take_u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take_array::<1>()?[0])
    }

    pub fn take_u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    pub fn take_u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub fn take_u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// A u16 length followed by that many bytes; the length is checked against `max` first.
    pub fn take_var16(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.take_u16()?);
        if len > max {
            return Err(WireError::LengthTooLarge { len, max });
        }
        self.take_bytes(len)
    }

    /// A u32 length followed by that many bytes; the length is checked against `max` first.
    pub fn take_var32(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.take_u32()?).unwrap_or(usize::MAX);
        if len > max {
            return Err(WireError::LengthTooLarge { len, max });
        }
        self.take_bytes(len)
    }

    /// A u16-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn take_str16(&mut self, max: usize) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take_var16(max)?).map_err(|_| WireError::BadUtf8)
    }

    /// [`Reader::take_var16`] into the bounded type the matching `Writer::put_var16` takes.
    pub fn take_bytes16<const MAX: usize>(&mut self) -> Result<BoundedBytes<MAX>, WireError> {
        BoundedBytes::from_slice(self.take_var16(MAX)?)
    }

    /// [`Reader::take_var32`] into the bounded type the matching `Writer::put_var32` takes.
    pub fn take_bytes32<const MAX: usize>(&mut self) -> Result<BoundedBytes<MAX>, WireError> {
        BoundedBytes::from_slice(self.take_var32(MAX)?)
    }

    /// [`Reader::take_str16`] into the bounded type the matching `Writer::put_str16` takes.
    pub fn take_string16<const MAX: usize>(&mut self) -> Result<BoundedString<MAX>, WireError> {
        BoundedString::new(self.take_str16(MAX)?)
    }

    /// Everything that is left, which must be at most `MAX` bytes.
    pub fn take_rest_bounded<const MAX: usize>(&mut self) -> Result<BoundedBytes<MAX>, WireError> {
        let remaining = self.remaining();
        if remaining > MAX {
            return Err(WireError::LengthTooLarge {
                len: remaining,
                max: MAX,
            });
        }
        BoundedBytes::from_slice(self.take_rest())
    }

    /// A count byte (checked against `MAX` before anything is allocated), then that many items
    /// read by `item`.
    pub fn take_list8<T, const MAX: usize>(
        &mut self,
        mut item: impl FnMut(&mut Reader<'a>) -> Result<T, WireError>,
    ) -> Result<BoundedVec<T, MAX>, WireError> {
        let n = usize::from(self.take_u8()?);
        if n > MAX {
            return Err(WireError::LengthTooLarge { len: n, max: MAX });
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(item(self)?);
        }
        BoundedVec::new(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_never_trusted() {
        // Claims 65535 bytes, has 2.
        let mut r = Reader::new(&[0xff, 0xff, 1, 2]);
        assert_eq!(
            r.take_var16(100),
            Err(WireError::LengthTooLarge {
                len: 65535,
                max: 100
            })
        );
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert_eq!(
            r.take_var16(100),
            Err(WireError::Truncated {
                needed: 5,
                remaining: 2
            })
        );
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.take_var32(1 << 20),
            Err(WireError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn exhaustion() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take_u16(), Ok(0x0102));
        assert_eq!(r.should_be_exhausted(), Err(WireError::TrailingBytes(1)));
        assert_eq!(r.take_u8(), Ok(3));
        assert_eq!(r.should_be_exhausted(), Ok(()));
        assert!(r.take_u8().is_err());
    }
}

use crate::{BoundedBytes, BoundedString, BoundedVec};

/// Appends big-endian fields to a buffer. Writing cannot fail, panic or truncate: a
/// length-prefixed field takes a bounded type ([`BoundedBytes`], [`BoundedString`],
/// [`BoundedVec`]) whose maximum fits its length prefix, checked when the code is compiled, and
/// whose length was checked when the value was built.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A u16 length, then the bytes (read back with [`crate::Reader::take_var16`]).
    pub fn put_var16<const MAX: usize>(&mut self, v: &BoundedBytes<MAX>) {
        const { assert!(MAX <= u16::MAX as usize, "field maximum over a u16 length") };
        self.put_u16(v.len() as u16);
        self.put_bytes(v);
    }

    /// A u16 length, then the UTF-8 bytes (read back with [`crate::Reader::take_str16`]).
    pub fn put_str16<const MAX: usize>(&mut self, s: &BoundedString<MAX>) {
        const { assert!(MAX <= u16::MAX as usize, "field maximum over a u16 length") };
        self.put_u16(s.len() as u16);
        self.put_bytes(s.as_bytes());
    }

    /// A u32 length, then the bytes (read back with [`crate::Reader::take_var32`]).
    pub fn put_var32<const MAX: usize>(&mut self, v: &BoundedBytes<MAX>) {
        const { assert!(MAX <= u32::MAX as usize, "field maximum over a u32 length") };
        self.put_u32(v.len() as u32);
        self.put_bytes(v);
    }

    /// The item count of a list as one byte; the caller writes the items.
    pub fn put_count8<T, const MAX: usize>(&mut self, v: &BoundedVec<T, MAX>) {
        const { assert!(MAX <= u8::MAX as usize, "list maximum over a u8 count") };
        self.put_u8(v.len() as u8);
    }
}

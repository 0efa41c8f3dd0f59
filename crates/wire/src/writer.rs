/// Appends big-endian fields to a buffer. Writing cannot fail; the caller is responsible for
/// respecting the field maxima that the matching [`crate::Reader`] call enforces, which the message
/// types do by construction or by truncating at their API boundary.
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
    /// u16 length then the bytes. Panics only on a caller bug (a field longer than 65535 bytes),
    /// which the message constructors rule out.
    pub fn put_var16(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).expect("field longer than u16::MAX: a caller bug");
        self.put_u16(len);
        self.put_bytes(v);
    }
    /// A u16-length-prefixed UTF-8 string, cut to at most `max` bytes at a character boundary,
    /// so the frame never carries more than the matching `Reader::take_str16(max)` accepts.
    pub fn put_str16(&mut self, s: &str, max: usize) {
        let mut end = s.len().min(max).min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.put_var16(&s.as_bytes()[..end]);
    }

    /// u32 length then the bytes.
    pub fn put_var32(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("field longer than u32::MAX: a caller bug");
        self.put_u32(len);
        self.put_bytes(v);
    }
}

//! Bounded field types: byte strings, text and lists that are never longer than their wire
//! field allows.
//!
//! This is how the codec keeps its one policy for over-long fields: *an encoder is never handed
//! a value it cannot encode*. Each type has a private field and a constructor that fails
//! ([`WireError::LengthTooLarge`]) instead of cutting, so writing a message cannot fail, panic or
//! silently truncate, and `decode(encode(m)) == m` for every message that can be built. Decoders
//! build the same types through the same constructors, after checking the length field against
//! the maximum and against what is left in the frame.
//!
//! A caller that takes a value from outside (text from JavaScript, a URL from a command line)
//! either reports the error or cuts *explicitly*, with a named helper that says so at the call
//! site: [`BoundedString::lossy`] for human-readable text, [`BoundedVec::truncating`] for ranked
//! lists where the protocol keeps the first few. Bytes are never cut.
//!
//! ```
//! use onionmesh_wire::{BoundedBytes, BoundedString, WireError};
//! assert!(BoundedBytes::<3>::new(vec![1, 2, 3]).is_ok());
//! assert_eq!(
//!     BoundedBytes::<3>::new(vec![1, 2, 3, 4]),
//!     Err(WireError::LengthTooLarge { len: 4, max: 3 })
//! );
//! assert_eq!(BoundedString::<3>::lossy("héllo").as_str(), "hé");
//! ```

use std::fmt;
use std::ops::Deref;

use crate::WireError;

fn too_long(len: usize, max: usize) -> WireError {
    WireError::LengthTooLarge { len, max }
}

/// At most `MAX` bytes. Dereferences to `[u8]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BoundedBytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> BoundedBytes<MAX> {
    /// The most bytes this type holds.
    pub const MAX: usize = MAX;

    /// Errors: [`WireError::LengthTooLarge`] when `bytes` is longer than `MAX`.
    pub fn new(bytes: Vec<u8>) -> Result<Self, WireError> {
        if bytes.len() > MAX {
            return Err(too_long(bytes.len(), MAX));
        }
        Ok(BoundedBytes(bytes))
    }

    /// A copy of `bytes`; errors as [`BoundedBytes::new`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX {
            return Err(too_long(bytes.len(), MAX));
        }
        Ok(BoundedBytes(bytes.to_vec()))
    }

    /// No bytes.
    pub fn empty() -> Self {
        BoundedBytes(Vec::new())
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The same bytes in a field with a larger (or equal) maximum: checked when the code is
    /// compiled, so it cannot fail. The other way, use [`BoundedBytes::from_slice`].
    pub fn widen<const WIDER: usize>(self) -> BoundedBytes<WIDER> {
        const { assert!(MAX <= WIDER, "widen to a smaller maximum") };
        BoundedBytes(self.0)
    }
}

impl<const MAX: usize> Deref for BoundedBytes<MAX> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> AsRef<[u8]> for BoundedBytes<MAX> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedBytes<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> TryFrom<Vec<u8>> for BoundedBytes<MAX> {
    type Error = WireError;
    fn try_from(v: Vec<u8>) -> Result<Self, WireError> {
        Self::new(v)
    }
}

/// A fixed-size array whose length fits: checked when the code is compiled, so it cannot fail.
impl<const MAX: usize, const N: usize> From<[u8; N]> for BoundedBytes<MAX> {
    fn from(bytes: [u8; N]) -> Self {
        const { assert!(N <= MAX, "the array is longer than the field allows") };
        BoundedBytes(bytes.to_vec())
    }
}

impl<const MAX: usize> TryFrom<&[u8]> for BoundedBytes<MAX> {
    type Error = WireError;
    fn try_from(v: &[u8]) -> Result<Self, WireError> {
        Self::from_slice(v)
    }
}

impl<const MAX: usize> From<BoundedBytes<MAX>> for Vec<u8> {
    fn from(b: BoundedBytes<MAX>) -> Vec<u8> {
        b.0
    }
}

impl<const MAX: usize> PartialEq<[u8]> for BoundedBytes<MAX> {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl<const MAX: usize> PartialEq<&[u8]> for BoundedBytes<MAX> {
    fn eq(&self, other: &&[u8]) -> bool {
        self.0 == *other
    }
}

impl<const MAX: usize> PartialEq<Vec<u8>> for BoundedBytes<MAX> {
    fn eq(&self, other: &Vec<u8>) -> bool {
        &self.0 == other
    }
}

impl<const MAX: usize, const N: usize> PartialEq<[u8; N]> for BoundedBytes<MAX> {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.0 == other
    }
}

/// UTF-8 text of at most `MAX` bytes. Dereferences to `str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// The most bytes (of UTF-8) this type holds.
    pub const MAX: usize = MAX;

    /// Errors: [`WireError::LengthTooLarge`] when `s` is longer than `MAX` bytes.
    pub fn new(s: impl Into<String>) -> Result<Self, WireError> {
        let s = s.into();
        if s.len() > MAX {
            return Err(too_long(s.len(), MAX));
        }
        Ok(BoundedString(s))
    }

    /// The longest prefix of `s` that fits, cut at a character boundary: the named policy for
    /// human-readable text (reasons, sentences) where a shortened sentence beats none. Never
    /// use it for text a program parses (addresses, SDP, service names).
    pub fn lossy(s: &str) -> Self {
        let mut end = s.len().min(MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        BoundedString(s[..end].to_owned())
    }

    /// No text.
    pub fn empty() -> Self {
        BoundedString(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> Deref for BoundedString<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> AsRef<str> for BoundedString<MAX> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> TryFrom<String> for BoundedString<MAX> {
    type Error = WireError;
    fn try_from(s: String) -> Result<Self, WireError> {
        Self::new(s)
    }
}

impl<const MAX: usize> TryFrom<&str> for BoundedString<MAX> {
    type Error = WireError;
    fn try_from(s: &str) -> Result<Self, WireError> {
        Self::new(s)
    }
}

impl<const MAX: usize> From<BoundedString<MAX>> for String {
    fn from(s: BoundedString<MAX>) -> String {
        s.0
    }
}

impl<const MAX: usize> PartialEq<str> for BoundedString<MAX> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl<const MAX: usize> PartialEq<&str> for BoundedString<MAX> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<const MAX: usize> PartialEq<String> for BoundedString<MAX> {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// At most `MAX` items. Dereferences to `[T]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// The most items this type holds.
    pub const MAX: usize = MAX;

    /// Errors: [`WireError::LengthTooLarge`] when `items` holds more than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, WireError> {
        if items.len() > MAX {
            return Err(too_long(items.len(), MAX));
        }
        Ok(BoundedVec(items))
    }

    /// The first `MAX` items of `items`, the rest dropped: the named policy for ranked lists
    /// where the protocol sends only the best few (the closest contacts, the freshest
    /// introducers). Never use it where every item matters; split those with `chunks(MAX)`.
    pub fn truncating(items: impl IntoIterator<Item = T>) -> Self {
        BoundedVec(items.into_iter().take(MAX).collect())
    }

    /// No items.
    pub fn empty() -> Self {
        BoundedVec(Vec::new())
    }

    /// One item: checked when the code is compiled (`MAX` is at least 1), so it cannot fail.
    pub fn one(item: T) -> Self {
        const { assert!(MAX >= 1, "a list that holds no item") };
        BoundedVec(vec![item])
    }

    /// Appends `item`, or gives it back when the list is full.
    pub fn try_push(&mut self, item: T) -> Result<(), T> {
        if self.0.len() >= MAX {
            return Err(item);
        }
        self.0.push(item);
        Ok(())
    }

    /// Keeps the items for which `keep` is true (cannot grow the list).
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.0.retain(keep);
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        BoundedVec(Vec::new())
    }
}

impl<T, const MAX: usize> Deref for BoundedVec<T, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T, const MAX: usize> AsRef<[T]> for BoundedVec<T, MAX> {
    fn as_ref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const MAX: usize> fmt::Debug for BoundedVec<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedVec<T, MAX> {
    type Error = WireError;
    fn try_from(v: Vec<T>) -> Result<Self, WireError> {
        Self::new(v)
    }
}

impl<T, const MAX: usize> From<BoundedVec<T, MAX>> for Vec<T> {
    fn from(v: BoundedVec<T, MAX>) -> Vec<T> {
        v.0
    }
}

impl<T, const MAX: usize> IntoIterator for BoundedVec<T, MAX> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T, const MAX: usize> IntoIterator for &'a BoundedVec<T, MAX> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: PartialEq, const MAX: usize> PartialEq<Vec<T>> for BoundedVec<T, MAX> {
    fn eq(&self, other: &Vec<T>) -> bool {
        &self.0 == other
    }
}

impl<T: PartialEq, const MAX: usize> PartialEq<[T]> for BoundedVec<T, MAX> {
    fn eq(&self, other: &[T]) -> bool {
        self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_accept_exactly_max_and_refuse_one_more() {
        assert_eq!(BoundedBytes::<4>::new(vec![0; 4]).unwrap().len(), 4);
        assert_eq!(
            BoundedBytes::<4>::new(vec![0; 5]),
            Err(WireError::LengthTooLarge { len: 5, max: 4 })
        );
        assert!(BoundedBytes::<4>::from_slice(&[0; 5]).is_err());
        assert!(BoundedBytes::<0>::new(Vec::new()).is_ok());
        assert!(BoundedBytes::<0>::new(vec![1]).is_err());
        assert_eq!(BoundedBytes::<4>::from([1u8; 4]), [1u8; 4]);
        let wide: BoundedBytes<9> = BoundedBytes::<4>::from([1u8; 4]).widen();
        assert_eq!(wide, [1u8; 4]);
    }

    #[test]
    fn strings_accept_exactly_max_bytes_and_refuse_one_more() {
        assert!(BoundedString::<4>::new("abcd").is_ok());
        // Counted in bytes, not characters: "éé" is four bytes.
        assert!(BoundedString::<4>::new("éé").is_ok());
        assert_eq!(
            BoundedString::<4>::new("abcde"),
            Err(WireError::LengthTooLarge { len: 5, max: 4 })
        );
        assert!(BoundedString::<4>::new("ééa").is_err());
    }

    #[test]
    fn lossy_cuts_at_a_character_boundary() {
        assert_eq!(BoundedString::<4>::lossy("abcdef"), "abcd");
        // "é" is two bytes: five bytes allowed, "éé" plus half an "é" would not be UTF-8.
        assert_eq!(BoundedString::<5>::lossy("ééé"), "éé");
        assert_eq!(BoundedString::<5>::lossy("short"), "short");
    }

    #[test]
    fn vecs_accept_exactly_max_items_and_refuse_one_more() {
        assert_eq!(BoundedVec::<u8, 3>::new(vec![1, 2, 3]).unwrap().len(), 3);
        assert_eq!(
            BoundedVec::<u8, 3>::new(vec![1, 2, 3, 4]),
            Err(WireError::LengthTooLarge { len: 4, max: 3 })
        );
        let mut v = BoundedVec::<u8, 2>::empty();
        assert_eq!(v.try_push(1), Ok(()));
        assert_eq!(v.try_push(2), Ok(()));
        assert_eq!(v.try_push(3), Err(3));
        assert_eq!(v, vec![1, 2]);
        assert_eq!(BoundedVec::<u8, 2>::truncating([7, 8, 9]), vec![7, 8]);
    }
}

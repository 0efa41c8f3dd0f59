//! # onionmesh-keystream: the ChaCha20 keystream XOR of the onion relay crypto
//!
//! One function, [`xor_chacha20`], run for every relayed cell by `onionmesh-onion`'s relay
//! crypto (see that crate's docs, "Relay crypto", for the construction).
//!
//! It is a crate of its own for the wasm bundle's sake: ChaCha20's code is generic and is
//! compiled in the crate that calls it, at that crate's optimisation level. This crate is built
//! at `opt-level = 3` (root `Cargo.toml`, `[profile.release.package.onionmesh-keystream]`), so
//! the hot loop runs at full speed while the large onion crate is size-optimised: in wasm the
//! relay crypto ran about 7 times slower with the keystream built at "z" (2026-12-01), and
//! building all of `onionmesh-onion` or `onionmesh-crypto` at 3 instead cost 27 KB and 8 KB of
//! the gzipped bundle.
#![forbid(unsafe_code)]

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

/// Bytes [`xor_chacha20`] processes: 8 whole 64-byte ChaCha20 blocks.
pub const KEYSTREAM_LEN: usize = 512;

/// XOR `blocks` with the ChaCha20 keystream (RFC 8439) for `key` and `nonce`, starting at block
/// counter 0.
///
/// Whole blocks on purpose: the SIMD backends make keystream 4 blocks at a time and a lone
/// trailing block costs as much as 4. Kept out of line and non-generic so every caller shares one
/// optimised copy.
#[inline(never)]
pub fn xor_chacha20(key: &[u8; 32], nonce: &[u8; 12], blocks: &mut [u8; KEYSTREAM_LEN]) {
    // `apply_keystream` panics only when the 32-bit block counter would wrap, after 256 GiB;
    // this is 8 blocks from block 0.
    ChaCha20::new(key.into(), nonce.into()).apply_keystream(blocks);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8439 section 2.4.2: the keystream at block counter 1 for the test key and nonce;
    /// block 0 is skipped by XORing zeros and reading from byte 64.
    #[test]
    fn matches_rfc_8439_keystream() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce = [0, 0, 0, 0, 0, 0, 0, 0x4a, 0, 0, 0, 0];
        let mut blocks = [0u8; KEYSTREAM_LEN];
        xor_chacha20(&key, &nonce, &mut blocks);
        // Plaintext "Ladies and Gentlemen of the class of '99: ..." encrypted at counter 1
        // begins 6e 2e 35 9a; the keystream is that XOR the plaintext's "Ladi".
        let expected = [0x6e ^ b'L', 0x2e ^ b'a', 0x35 ^ b'd', 0x9a ^ b'i'];
        assert_eq!(&blocks[64..68], &expected);
        // XOR twice is the identity.
        let mut again = blocks;
        xor_chacha20(&key, &nonce, &mut again);
        assert_eq!(again, [0u8; KEYSTREAM_LEN]);
    }
}

//! STORE tokens: proof that a requester asked us recently, so nobody can sign up others.
//!
//! A token is `HMAC-SHA256(secret, requester ID)` cut to [`TOKEN_LEN`] bytes. The secret rotates
//! every `rotation` (5 minutes); tokens made with the current or the previous secret are valid,
//! so a token lives between 5 and 10 minutes (as in the BitTorrent DHT). The secret before that
//! is kept only to tell a *stale* token (an honest but slow requester) from a *wrong* one.

use crate::Time;
use hmac::{Hmac, Mac};
use onionmesh_wire::kad::{Token, TOKEN_LEN};
use onionmesh_wire::NodeId;
use rand_core::RngCore;
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// How a presented token compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    /// Issued to this requester, but more than one rotation ago.
    Stale,
    /// Not issued to this requester.
    Bad,
}

/// Issues and checks STORE tokens. See the module docs.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Current, previous, and the one before (for diagnostics only).
    secrets: [[u8; 32]; 3],
    next_rotation: Time,
    rotation: Duration,
}

impl Tokens {
    pub fn new(now: Time, rotation: Duration, rng: &mut dyn RngCore) -> Tokens {
        let mut secrets = [[0u8; 32]; 3];
        for s in &mut secrets {
            rng.fill_bytes(s);
        }
        Tokens {
            secrets,
            next_rotation: now + rotation,
            rotation: rotation.max(Duration::from_millis(1)),
        }
    }

    /// Rotates the secrets if a rotation is due. At most three rotations happen at once: after
    /// a long sleep every old token is bad, which is what three fresh secrets give.
    pub fn rotate(&mut self, now: Time, rng: &mut dyn RngCore) {
        let mut turns = 0;
        while now >= self.next_rotation && turns < 3 {
            self.secrets.rotate_right(1);
            rng.fill_bytes(&mut self.secrets[0]);
            self.next_rotation = self.next_rotation + self.rotation;
            turns += 1;
        }
        if now >= self.next_rotation {
            self.next_rotation = now + self.rotation;
        }
    }

    fn mac(secret: &[u8; 32], id: &NodeId) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(&id.0);
        mac
    }

    /// The token for `requester` under the current secret. Call [`Tokens::rotate`] first.
    pub fn issue(&self, requester: &NodeId) -> Token {
        let tag = Self::mac(&self.secrets[0], requester)
            .finalize()
            .into_bytes();
        let mut out = [0u8; TOKEN_LEN];
        out.copy_from_slice(&tag[..TOKEN_LEN]);
        out
    }

    /// Checks `token` from `requester` in constant time. Call [`Tokens::rotate`] first.
    pub fn check(&self, requester: &NodeId, token: &Token) -> TokenCheck {
        let ok = |s: &[u8; 32]| Self::mac(s, requester).verify_truncated_left(token).is_ok();
        if ok(&self.secrets[0]) || ok(&self.secrets[1]) {
            TokenCheck::Valid
        } else if ok(&self.secrets[2]) {
            TokenCheck::Stale
        } else {
            TokenCheck::Bad
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn tokens_live_one_to_two_rotations() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let five = Duration::from_secs(300);
        let mut t = Tokens::new(Time::ZERO, five, &mut rng);
        let a = NodeId([1; 20]);
        let b = NodeId([2; 20]);
        let tok = t.issue(&a);
        assert_eq!(t.check(&a, &tok), TokenCheck::Valid);
        assert_eq!(t.check(&b, &tok), TokenCheck::Bad, "bound to the requester");
        assert_eq!(t.check(&a, &[0; TOKEN_LEN]), TokenCheck::Bad);
        t.rotate(Time::from_millis(299_999), &mut rng);
        assert_eq!(t.check(&a, &tok), TokenCheck::Valid);
        t.rotate(Time::from_millis(300_000), &mut rng);
        assert_eq!(t.check(&a, &tok), TokenCheck::Valid, "previous secret");
        assert_ne!(t.issue(&a), tok);
        t.rotate(Time::from_millis(600_000), &mut rng);
        assert_eq!(t.check(&a, &tok), TokenCheck::Stale);
        t.rotate(Time::from_millis(900_000), &mut rng);
        assert_eq!(t.check(&a, &tok), TokenCheck::Bad);
    }

    #[test]
    fn a_long_sleep_invalidates_everything() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut t = Tokens::new(Time::ZERO, Duration::from_secs(300), &mut rng);
        let a = NodeId([1; 20]);
        let tok = t.issue(&a);
        t.rotate(Time::from_millis(100 * 300_000), &mut rng);
        assert_eq!(t.check(&a, &tok), TokenCheck::Bad);
        let fresh = t.issue(&a);
        assert_eq!(t.check(&a, &fresh), TokenCheck::Valid);
    }
}

//! A token bucket on the caller's clock, for CREATE2 rate limits.

use onionmesh_wire::Time;

/// `capacity` tokens, refilled at `per_sec` tokens per second. Kept in milli-tokens so that the
/// arithmetic is exact on integer milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    milli: u64,
    capacity_milli: u64,
    per_sec: u64,
    last: Time,
}

impl TokenBucket {
    pub(crate) fn new(now: Time, capacity: u32, per_sec: u32) -> TokenBucket {
        TokenBucket {
            milli: u64::from(capacity) * 1000,
            capacity_milli: u64::from(capacity) * 1000,
            per_sec: u64::from(per_sec),
            last: now,
        }
    }

    /// Take one token if there is one.
    pub(crate) fn take(&mut self, now: Time) -> bool {
        let elapsed_ms = now.since(self.last);
        if now > self.last {
            self.last = now;
        }
        // per_sec tokens per second = per_sec milli-tokens per millisecond.
        self.milli = self
            .milli
            .saturating_add(elapsed_ms.saturating_mul(self.per_sec))
            .min(self.capacity_milli);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_with_time() {
        let t = Time::from_millis(100_000);
        let mut b = TokenBucket::new(t, 3, 2);
        assert!(b.take(t) && b.take(t) && b.take(t));
        assert!(!b.take(t));
        assert!(!b.take(t + Duration::from_millis(499)));
        assert!(b.take(t + Duration::from_millis(500)));
        // Long idle: capped at capacity.
        let later = t + Duration::from_secs(3600);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
        // A clock that goes backwards refills nothing and does not panic.
        assert!(!b.take(t));
    }
}

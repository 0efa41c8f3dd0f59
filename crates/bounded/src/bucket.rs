//! A token bucket on the caller's clock.

use onionmesh_wire::Time;

/// `capacity` tokens, refilled at `per_sec` tokens per second.
///
/// Kept in milli-tokens, so the arithmetic is exact on integer milliseconds: `per_sec` tokens per
/// second is `per_sec` milli-tokens per millisecond. Saturating everywhere: a long idle period
/// refills to `capacity` and no further; a `now` earlier than the last one seen refills nothing
/// and does not move the bucket's clock back.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli: u64,
    capacity_milli: u64,
    per_sec: u64,
    last: Time,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `per_sec` tokens/s, its clock at `now`.
    pub fn new(now: Time, capacity: u32, per_sec: u32) -> TokenBucket {
        TokenBucket {
            milli: u64::from(capacity) * 1000,
            capacity_milli: u64::from(capacity) * 1000,
            per_sec: u64::from(per_sec),
            last: now,
        }
    }

    fn refill(&mut self, now: Time) {
        let elapsed_ms = now.since(self.last);
        if now > self.last {
            self.last = now;
        }
        self.milli = self
            .milli
            .saturating_add(elapsed_ms.saturating_mul(self.per_sec))
            .min(self.capacity_milli);
    }

    /// Take one token if there is one (after refilling up to `now`).
    pub fn take(&mut self, now: Time) -> bool {
        self.take_n(now, 1)
    }

    /// Take `n` tokens at once if there are that many; otherwise take none.
    pub fn take_n(&mut self, now: Time, n: u32) -> bool {
        self.refill(now);
        let want = u64::from(n) * 1000;
        if self.milli >= want {
            self.milli -= want;
            true
        } else {
            false
        }
    }

    /// Would one token be available at `now`? Refills, takes nothing.
    pub fn has_token(&mut self, now: Time) -> bool {
        self.refill(now);
        self.milli >= 1000
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Time) -> u64 {
        self.refill(now);
        self.milli / 1000
    }

    /// True when the bucket is full at `now` (forgetting it would change nothing).
    pub fn is_full(&mut self, now: Time) -> bool {
        self.refill(now);
        self.milli >= self.capacity_milli
    }

    /// The latest `now` this bucket has seen.
    pub fn last_seen(&self) -> Time {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_with_time_and_caps_at_capacity() {
        let t = Time::from_millis(100_000);
        let mut b = TokenBucket::new(t, 3, 2);
        assert!(b.take(t) && b.take(t) && b.take(t));
        assert!(!b.take(t));
        assert!(!b.take(t + Duration::from_millis(499)));
        assert!(b.take(t + Duration::from_millis(500)));
        let later = t + Duration::from_secs(3600);
        assert_eq!(b.available(later), 3);
        assert!(b.is_full(later));
        assert!(b.take_n(later, 3));
        assert!(!b.take(later));
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let t = Time::from_millis(10_000);
        let mut b = TokenBucket::new(t, 2, 1000);
        assert!(b.take_n(t, 2));
        // Backwards by 5 s: no refill, no panic, clock not moved back.
        assert!(!b.take(Time::from_millis(5_000)));
        assert_eq!(b.last_seen(), t);
        // Forward again from the latest time seen, not from the earlier one.
        assert!(!b.take(t));
        assert!(b.take(t + Duration::from_millis(1)));
        // From the very start of the clock too.
        assert!(!b.take(Time::ZERO));
    }

    #[test]
    fn take_n_is_all_or_nothing() {
        let t = Time::ZERO;
        let mut b = TokenBucket::new(t, 5, 0);
        assert!(!b.take_n(t, 6));
        assert_eq!(b.available(t), 5);
        assert!(b.take_n(t, 5));
        assert!(
            !b.has_token(t + Duration::from_secs(100)),
            "rate 0 never refills"
        );
    }
}

use std::time::Duration;

/// A point on the driver's monotonic clock, in milliseconds from an arbitrary origin. No protocol
/// crate reads a clock: drivers pass `Time` in (`performance.now()` in the browser, a tokio
/// `Instant` in the bridge, a virtual clock in the simulators). Every sans-IO crate uses this one
/// type, so `now` passes between layers unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Milliseconds since `earlier`, or 0 if `earlier` is later.
    pub fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// True when at least `d` has passed since `earlier`.
    pub fn elapsed_since(self, earlier: Time, d: Duration) -> bool {
        u128::from(self.since(earlier)) >= d.as_millis()
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_millis(1000);
        assert_eq!(t.since(Time::from_millis(400)), 600);
        assert_eq!(Time::ZERO.since(t), 0);
        assert_eq!((t + Duration::from_secs(2)).as_millis(), 3000);
        assert_eq!((t + Duration::MAX).as_millis(), u64::MAX);
        assert!(t.elapsed_since(Time::ZERO, Duration::from_secs(1)));
        assert!(!t.elapsed_since(Time::ZERO, Duration::from_millis(1001)));
    }
}

//! The cache's byte budget (`--cache-max-bytes`), shared by torrents and web fetches.

use std::sync::{Arc, Mutex};

/// Bytes the cache may hold, and how many are promised. Reservations give their bytes back
/// when dropped.
#[derive(Debug)]
pub struct CacheBudget {
    max: u64,
    used: Mutex<u64>,
}

/// Bytes held in the cache until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<CacheBudget>,
    bytes: u64,
}

impl CacheBudget {
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(CacheBudget {
            max,
            used: Mutex::new(0),
        })
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Reserve `bytes`, or `None` if that would pass the maximum.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        // A poisoned lock only means a panic elsewhere while holding it; the count is a u64
        // and stays consistent.
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let after = used.checked_add(bytes).filter(|&a| a <= self.max)?;
        *used = after;
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reservation {
    /// Grow this reservation by `bytes`; false (and unchanged) if that would pass the maximum.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        match used.checked_add(bytes).filter(|&a| a <= self.budget.max) {
            Some(after) => {
                *used = after;
                self.bytes += bytes;
                true
            }
            None => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let b = CacheBudget::new(100);
        let mut a = b.reserve(60).unwrap();
        assert!(b.reserve(41).is_none());
        assert!(!a.grow(41));
        assert!(a.grow(40));
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 0);
        assert!(b.reserve(100).is_some());
        assert_eq!(b.used(), 0);
    }
}

//! Injectable wall clock, so token-time and cache-staleness logic can be tested deterministically.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Source of the current wall-clock time.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A settable clock for tests and local development.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, to: SystemTime) {
        // A poisoned lock only means another thread panicked mid-update of a plain value: keep going.
        let mut guard = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *guard = to;
    }

    pub fn advance(&self, by: Duration) {
        let mut guard = self.now.lock().unwrap_or_else(|e| e.into_inner());
        // Saturate rather than panic on absurd durations.
        *guard = guard.checked_add(by).unwrap_or(*guard);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0 rather than panicking.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (audit `ts_ms`, the EMF `Timestamp`); before 1970 reads as
/// 0, past `u64::MAX` ms as `u64::MAX`, never a panic.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_set_and_advance() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let c = ManualClock::new(t0);
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), t0 + Duration::from_secs(5));
        c.set(t0);
        assert_eq!(c.now(), t0);
        assert!(SystemClock.now() > t0);
    }
}

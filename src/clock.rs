//! The wall clock, read in one place.
//!
//! A `Check` reads the time once, in [`crate::check::Checker::check`], and
//! passes that `now` down to the caches, the session code and the verifiers,
//! so every step of one decision judges expiry against the same instant, and
//! tests can move time instead of sleeping ([`Clock::manual`]).
//!
//! Work that is not part of a decision (a cache's own eviction timer, the
//! JWKS refresh timestamp in the metrics) reads [`system_now`]: the real
//! time is what those are about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a decision's `now` comes from: the system clock, or (in tests) a
/// clock that moves only when told to.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds since the Unix epoch; `None` reads the system clock.
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock stopped at `at`; every clone shares it, so a test keeps one
    /// and moves the checker's time with [`Clock::advance`]. Start it at the
    /// real time or later: caches free memory by real time, so a clock
    /// behind it would see its entries vanish early.
    pub fn manual(at: SystemTime) -> Self {
        Self {
            manual: Some(Arc::new(AtomicU64::new(millis(at)))),
        }
    }

    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(ms) => UNIX_EPOCH + Duration::from_millis(ms.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock forward; returns false (and does nothing) on
    /// the system clock, which no one can move.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.manual {
            None => false,
            Some(ms) => {
                let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
                ms.fetch_add(by, Ordering::AcqRel);
                true
            }
        }
    }
}

/// The real time, for work that is not part of a decision.
pub fn system_now() -> SystemTime {
    SystemTime::now()
}

/// Whole seconds since the Unix epoch (0 before it), as sessions and
/// cookies store times.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The same, signed, as Tenuo's warrants count time.
pub fn unix_i64(t: SystemTime) -> i64 {
    i64::try_from(unix(t)).unwrap_or(i64::MAX)
}

pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_move_with_it() {
        let start = from_unix(1_700_000_000);
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        assert!(shared.advance(Duration::from_millis(1500)));
        assert_eq!(clock.now(), start + Duration::from_millis(1500));
        assert_eq!(unix(clock.now()), 1_700_000_001);
    }

    #[test]
    fn the_system_clock_cannot_be_moved() {
        let clock = Clock::system();
        assert!(!clock.advance(Duration::from_secs(3600)));
        assert!(clock.now() < SystemTime::now() + Duration::from_secs(60));
    }

    #[test]
    fn times_before_the_epoch_read_as_zero() {
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(unix_i64(from_unix(42)), 42);
    }
}

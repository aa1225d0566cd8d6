//! The loop's clock: the real monotonic clock, or a manual one for tests.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Where `EventLoop::time()` gets its answer.
#[derive(Debug)]
pub(crate) enum Clock {
    /// `Instant::now()`.
    Real,
    /// A virtual clock that only moves with `advance_time`: it starts at the
    /// real instant the loop was built and adds the total advanced so far.
    Manual { start: Instant, offset: Cell<Duration> },
}

impl Clock {
    pub(crate) fn manual() -> Clock {
        Clock::Manual { start: Instant::now(), offset: Cell::new(Duration::ZERO) }
    }

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Manual { start, offset } => *start + offset.get(),
        }
    }

    pub(crate) fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual { .. })
    }

    /// Moves a manual clock forward to `when` (never back); returns false
    /// for the real clock.
    pub(crate) fn advance_to(&self, when: Instant) -> bool {
        let now = self.now();
        self.advance(when.saturating_duration_since(now))
    }

    /// Moves a manual clock forward; returns false for the real clock.
    pub(crate) fn advance(&self, d: Duration) -> bool {
        match self {
            Clock::Real => false,
            Clock::Manual { offset, .. } => {
                offset.set(offset.get() + d);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = Clock::manual();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        assert!(c.advance(Duration::from_secs(3600)));
        assert_eq!(c.now() - t0, Duration::from_secs(3600));
        assert!(!Clock::Real.advance(Duration::from_secs(1)));
    }
}

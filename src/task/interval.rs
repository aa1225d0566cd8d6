//! [`interval`]: ticks at a fixed period of loop time (no asyncio
//! counterpart; Rust users expect one).
//!
//! Invariant: ticks are due at `start + k * period` and never early;
//! ticks missed while the task was busy are skipped, not replayed.

use std::fmt;
use std::time::{Duration, Instant};

use crate::runtime::event_loop::running_loop;
use crate::task::helpers::sleep_until;

/// Ticks every `period` of loop time; see [`interval`].
pub struct Interval {
    period: Duration,
    /// When the next tick is due; `None` before the first tick.
    next: Option<Instant>,
}

/// A ticker whose [`tick`](Interval::tick) completes every `period` of
/// loop time, the first time at once.
///
/// Missed ticks are skipped: if the task comes back to `tick` after
/// several periods went by, it gets one tick at once and the next one on
/// the original schedule (`start + k * period`), so a slow consumer never
/// sees a burst of catch-up ticks (tokio's default, `Burst`, replays them)
/// and the schedule does not drift (as `sleep(period)` in a loop would).
///
/// # Panics
///
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// // A virtual clock that jumps to the next timer when idle.
/// let lp = evloop::EventLoop::builder().autojump(Duration::ZERO).build()?;
/// let start = lp.time();
/// let ticks = lp.run_until_complete(async move {
///     let mut every = evloop::interval(Duration::from_secs(10));
///     let mut at = Vec::new();
///     for _ in 0..3 {
///         at.push(every.tick().await - start);
///     }
///     at
/// })?;
/// assert_eq!(ticks, [Duration::ZERO, Duration::from_secs(10), Duration::from_secs(20)]);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "an interval needs a non-zero period");
    Interval { period, next: None }
}

impl Interval {
    /// Waits for the next tick and returns when it was due (loop time).
    ///
    /// # Panics
    ///
    /// When awaited outside a running loop.
    pub async fn tick(&mut self) -> Instant {
        let lp = running_loop("Interval::tick");
        let due = *self.next.get_or_insert_with(|| lp.time());
        if due > lp.time() {
            sleep_until(due).await;
        }
        let now = lp.time();
        // Skip every tick that is already past: the next one is the first
        // of the schedule after now.
        let behind = now.saturating_duration_since(due).as_nanos() / self.period.as_nanos();
        let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
        self.next = Some(due + self.period * skip);
        due
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Restarts the schedule: the next tick is due one period from now.
    ///
    /// # Panics
    ///
    /// Outside a running loop.
    pub fn reset(&mut self) {
        self.next = Some(running_loop("Interval::reset").time() + self.period);
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interval").field("period", &self.period).field("next", &self.next).finish()
    }
}

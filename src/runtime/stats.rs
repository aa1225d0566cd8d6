//! [`LoopStats`]: counters for watching a loop at work.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A snapshot of an event loop's counters, from
/// [`EventLoop::stats`](crate::EventLoop::stats).
///
/// Busy time is the time spent inside `run_*` calls minus the time spent
/// blocked in the poller waiting for something to happen (idle time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Iterations (`run_once` passes) so far.
    pub iterations: u64,
    /// Callbacks, fd callbacks and task steps run so far (cancelled ones
    /// that were skipped are not counted).
    pub callbacks_run: u64,
    /// Times the loop waited on the OS poller. An iteration with work ready
    /// and no fd registered skips the wait.
    pub polls: u64,
    /// Callbacks reported as slow in debug mode.
    pub slow_callbacks: u64,
    /// Callbacks on the ready queue now.
    pub ready: usize,
    /// Timers scheduled and not cancelled, not yet due.
    pub timers: usize,
    /// Registered fd readers.
    pub readers: usize,
    /// Registered fd writers.
    pub writers: usize,
    /// Tasks that have not finished.
    pub tasks: usize,
    /// Time spent running (inside `run_*`, not blocked in the poller).
    pub busy_time: Duration,
    /// Time spent blocked in the poller.
    pub idle_time: Duration,
}

/// The loop's live counters.
#[derive(Default)]
pub(crate) struct StatsCells {
    pub(crate) iterations: Cell<u64>,
    pub(crate) callbacks_run: Cell<u64>,
    pub(crate) polls: Cell<u64>,
    pub(crate) slow_callbacks: Cell<u64>,
    run_time: Cell<Duration>,
    idle_time: Cell<Duration>,
    run_started: Cell<Option<Instant>>,
}

impl StatsCells {
    pub(crate) fn start_run(&self, at: Instant) {
        self.run_started.set(Some(at));
    }

    /// Ends the busy-time clock of a run, if it was started (a
    /// `run_until_complete` done inline never starts it).
    #[inline]
    pub(crate) fn end_run(&self) {
        if self.run_started.get().is_some() {
            self.add_run_time();
        }
    }

    #[cold]
    #[inline(never)]
    fn add_run_time(&self) {
        if let Some(started) = self.run_started.take() {
            self.run_time.set(self.run_time.get() + started.elapsed());
        }
    }

    pub(crate) fn add_idle_time(&self, d: Duration) {
        self.idle_time.set(self.idle_time.get() + d);
    }

    pub(crate) fn snapshot(&self) -> LoopStats {
        let current = self.run_started.get().map_or(Duration::ZERO, |s| s.elapsed());
        let run_time = self.run_time.get() + current;
        let idle_time = self.idle_time.get();
        LoopStats {
            iterations: self.iterations.get(),
            callbacks_run: self.callbacks_run.get(),
            polls: self.polls.get(),
            slow_callbacks: self.slow_callbacks.get(),
            busy_time: run_time.saturating_sub(idle_time),
            idle_time,
            ..LoopStats::default()
        }
    }
}

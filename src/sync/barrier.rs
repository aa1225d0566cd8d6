//! [`Barrier`]: a meeting point for a fixed number of tasks (asyncio 3.11).
//!
//! The state machine is asyncio's: *filling* (parties arrive), *draining*
//! (the last one came: everyone inside leaves; newcomers wait outside),
//! *resetting* (like draining, but the ones inside fail), *broken*. The
//! barrier is filling again once the last task has left it. Every change
//! of state wakes every waiter, which re-checks it.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::{WaitQueue, ignore_abandon};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct BarrierInner {
    parties: usize,
    state: Cell<State>,
    /// Tasks inside the barrier (arrived and not yet left).
    count: Cell<usize>,
    changed: WaitQueue,
}

impl BarrierInner {
    fn set_state(&self, state: State) {
        self.state.set(state);
        self.changed.grant_all();
    }

    /// Waits until `done(state)` holds.
    async fn wait_until(&self, done: impl Fn(State) -> bool) {
        while !done(self.state.get()) {
            self.changed.wait(ignore_abandon).await;
        }
    }
}

/// A task inside the barrier; leaving it (returning, failing, or being
/// dropped while waiting) is asyncio's `finally: count -= 1; _exit()`.
struct Inside<'a> {
    barrier: &'a BarrierInner,
    /// Still waiting for the barrier to fill: dropped now means cancelled.
    waiting: bool,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let b = self.barrier;
        if self.waiting && b.state.get() == State::Filling {
            // Cancelled while waiting: the party can never arrive, so the
            // others would wait forever. Break the barrier, as a timed-out
            // `threading.Barrier.wait` does.
            b.set_state(State::Broken);
        }
        b.count.set(b.count.get() - 1);
        if b.count.get() == 0 {
            if matches!(b.state.get(), State::Draining | State::Resetting) {
                b.state.set(State::Filling);
            }
            b.changed.grant_all();
        }
    }
}

/// asyncio's `Barrier`: [`wait`](Barrier::wait) blocks until `parties`
/// tasks are waiting, then releases them all at once; the barrier can then
/// be used again.
///
/// Unlike asyncio 3.11, where a cancelled waiter just leaves, a waiter
/// cancelled (dropped) while the barrier fills breaks it, as a timed-out
/// `threading.Barrier.wait` does: the others get
/// [`Error::BrokenBarrier`] instead of waiting for a party that will not
/// come. [`reset`](Barrier::reset) makes it usable again.
///
/// # Examples
///
/// ```
/// use evloop::sync::Barrier;
/// let mut indexes = evloop::run(async {
///     let barrier = Barrier::new(3);
///     let tasks: Vec<_> = (0..3)
///         .map(|_| {
///             let b = barrier.clone();
///             evloop::spawn(async move { b.wait().await })
///         })
///         .collect();
///     let mut out = Vec::new();
///     for t in tasks {
///         out.push(t.await??);
///     }
///     Ok::<_, evloop::Error>(out)
/// })??;
/// indexes.sort();
/// assert_eq!(indexes, [0, 1, 2]);
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<BarrierInner>,
}

impl Barrier {
    /// A barrier for `parties` tasks.
    ///
    /// # Panics
    ///
    /// If `parties` is 0 (asyncio's `ValueError`).
    pub fn new(parties: usize) -> Barrier {
        assert!(parties > 0, "a Barrier needs at least one party");
        Barrier {
            inner: Rc::new(BarrierInner {
                parties,
                state: Cell::new(State::Filling),
                count: Cell::new(0),
                changed: WaitQueue::default(),
            }),
        }
    }

    /// Waits until `parties` tasks are waiting, and returns this task's
    /// arrival index, `0..parties` (the last to arrive gets
    /// `parties - 1`). While the barrier drains or resets, a newcomer
    /// first waits for that to end.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is broken, or is aborted,
    /// reset or broken while this task waits.
    pub async fn wait(&self) -> Result<usize> {
        let b = &*self.inner;
        b.wait_until(|s| !matches!(s, State::Draining | State::Resetting)).await;
        if b.state.get() == State::Broken {
            return Err(Error::BrokenBarrier);
        }
        let index = b.count.get();
        b.count.set(index + 1);
        let mut inside = Inside { barrier: b, waiting: true };
        if index + 1 == b.parties {
            inside.waiting = false;
            b.set_state(State::Draining);
            return Ok(index);
        }
        b.wait_until(|s| s != State::Filling).await;
        inside.waiting = false;
        match b.state.get() {
            State::Broken | State::Resetting => Err(Error::BrokenBarrier),
            _ => Ok(index),
        }
    }

    /// Returns the barrier to its empty state; tasks waiting in it get
    /// [`Error::BrokenBarrier`]. A plain method: asyncio's `await
    /// barrier.reset()` only needs the loop for its internal lock.
    pub fn reset(&self) {
        let b = &*self.inner;
        if b.count.get() > 0 {
            b.set_state(State::Resetting);
        } else {
            b.set_state(State::Filling);
        }
    }

    /// Breaks the barrier: waiting tasks, and every later `wait`, get
    /// [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.inner.set_state(State::Broken);
    }

    /// How many tasks must wait to trip the barrier.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }

    /// Tasks waiting for the barrier to fill (0 while it drains).
    pub fn n_waiting(&self) -> usize {
        if self.inner.state.get() == State::Filling { self.inner.count.get() } else { 0 }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.inner.state.get() == State::Broken
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("state", &self.inner.state.get())
            .field("waiting", &self.n_waiting())
            .field("parties", &self.inner.parties)
            .finish()
    }
}

//! [`Condition`]: tasks wait, with a [`Lock`] released, until another task
//! notifies them.
//!
//! Invariant: a waiter is queued on the condition before it gives up the
//! lock, so a `notify` made by the next holder of the lock always finds it;
//! a notified waiter takes the lock back before `wait` returns.

use std::fmt;
use std::rc::Rc;

use super::lock::{Lock, LockGuard};
use super::{WaitQueue, pass_on};
use crate::error::{Error, Result};

/// asyncio's `Condition`: a [`Lock`] plus a queue of tasks waiting to be
/// notified.
///
/// Holding the lock is holding its [`LockGuard`]: `acquire` gives one,
/// `wait` and `wait_for` take it and give it back once the lock is held
/// again, so a task cannot wait without holding the lock (asyncio checks
/// that at run time). `notify` and `notify_all` do check it, as asyncio
/// does.
///
/// A notified waiter that is dropped (its task cancelled) before it runs
/// passes its notification to the next waiter (asyncio does so from
/// 3.13).
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use evloop::sync::Condition;
/// evloop::run(async {
///     let cond = Condition::new();
///     let ready = Rc::new(Cell::new(false));
///     let (c, r) = (cond.clone(), ready.clone());
///     evloop::spawn(async move {
///         let _guard = c.acquire().await;
///         r.set(true);
///         c.notify(1).unwrap();
///     });
///     let guard = cond.acquire().await;
///     let _guard = cond.wait_for(guard, || ready.get()).await;
///     assert!(ready.get());
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Condition {
    inner: Rc<ConditionInner>,
}

#[derive(Default)]
struct ConditionInner {
    lock: Lock,
    waiters: WaitQueue,
}

impl Condition {
    /// A condition with a lock of its own.
    pub fn new() -> Condition {
        Condition::default()
    }

    /// A condition on `lock`, which other code may also take directly
    /// (asyncio's `Condition(lock)`).
    pub fn with_lock(lock: Lock) -> Condition {
        Condition { inner: Rc::new(ConditionInner { lock, waiters: WaitQueue::default() }) }
    }

    /// The condition's lock.
    pub fn lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// Waits for the lock (asyncio's `acquire`).
    pub async fn acquire(&self) -> LockGuard {
        self.inner.lock.acquire().await
    }

    /// Releases the lock (the same as dropping the guard).
    ///
    /// # Panics
    ///
    /// If `guard` is not of this condition's lock.
    pub fn release(&self, guard: LockGuard) {
        self.check_guard(&guard);
        drop(guard);
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> bool {
        self.inner.lock.locked()
    }

    /// Releases the lock, waits until notified, then takes the lock back
    /// and returns its guard (asyncio's `wait`). If the waiting future is
    /// dropped, the lock is not taken back: the guard went with it.
    ///
    /// # Panics
    ///
    /// If `guard` is not of this condition's lock.
    pub async fn wait(&self, guard: LockGuard) -> LockGuard {
        self.check_guard(&guard);
        let notified = self.inner.waiters.wait(pass_on);
        drop(guard);
        notified.await;
        self.inner.lock.acquire().await
    }

    /// Waits until `predicate` is true, checking it first and then after
    /// every notification, always with the lock held (asyncio's
    /// `wait_for`). Returns with the lock held and the predicate true.
    ///
    /// # Panics
    ///
    /// If `guard` is not of this condition's lock.
    pub async fn wait_for(&self, guard: LockGuard, mut predicate: impl FnMut() -> bool) -> LockGuard {
        let mut guard = guard;
        while !predicate() {
            guard = self.wait(guard).await;
        }
        guard
    }

    /// Wakes up to `n` waiting tasks, first come first served; each takes
    /// the lock in turn once the caller releases it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the lock is not held (asyncio's
    /// `RuntimeError: cannot notify on un-acquired lock`).
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.locked() {
            return Err(Error::InvalidState("cannot notify on an un-acquired lock"));
        }
        self.inner.waiters.grant_many(n);
        Ok(())
    }

    /// Wakes every waiting task.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the lock is not held.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// Tasks waiting to be notified.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.len()
    }

    fn check_guard(&self, guard: &LockGuard) {
        assert!(Rc::ptr_eq(&guard.lock, &self.inner.lock.inner), "the guard is not of this Condition's lock");
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("locked", &self.locked()).field("waiters", &self.waiters()).finish()
    }
}

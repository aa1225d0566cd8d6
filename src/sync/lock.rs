//! [`Lock`]: mutual exclusion for tasks, handed over FIFO.
//!
//! Invariant: while waiters are queued the lock is held; `release` gives it
//! straight to the first waiter, so `locked` never flickers to false
//! between two holders.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::WaitQueue;

/// A mutual-exclusion lock for tasks (asyncio's `Lock`). Waiters acquire
/// it in FIFO order: `release` hands the lock straight to the first waiter.
///
/// # Examples
///
/// ```
/// use evloop::sync::Lock;
/// evloop::run(async {
///     let lock = Lock::new();
///     let guard = lock.acquire().await;
///     assert!(lock.locked());
///     drop(guard);
///     assert!(!lock.locked());
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Lock {
    pub(super) inner: Rc<LockInner>,
}

#[derive(Default)]
pub(super) struct LockInner {
    locked: Cell<bool>,
    waiters: WaitQueue,
}

impl LockInner {
    /// Passes the lock to the next waiter, or unlocks it.
    pub(super) fn release(&self) {
        if !self.waiters.grant_one() {
            self.locked.set(false);
        }
    }
}

/// Holds a [`Lock`]; dropping it releases the lock.
pub struct LockGuard {
    pub(super) lock: Rc<LockInner>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock::default()
    }

    /// Whether the lock is held.
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// Takes the lock now if it is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<LockGuard> {
        if self.inner.locked.get() || !self.inner.waiters.is_empty() {
            return None;
        }
        self.inner.locked.set(true);
        Some(LockGuard { lock: self.inner.clone() })
    }

    /// Waits for the lock; waiters get it in the order they asked.
    pub async fn acquire(&self) -> LockGuard {
        if let Some(guard) = self.try_acquire() {
            return guard;
        }
        let lock = self.inner.clone();
        // A waiter dropped after being handed the lock passes it on.
        self.inner.waiters.wait(move |_| lock.release()).await;
        LockGuard { lock: self.inner.clone() }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).finish()
    }
}

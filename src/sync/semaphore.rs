//! [`Semaphore`] and [`BoundedSemaphore`]: counters of permits, handed out
//! FIFO.
//!
//! Invariant: while waiters are queued no permit is free; a returned permit
//! goes straight to the first waiter. A bounded semaphore never holds more
//! free permits than it started with.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::WaitQueue;
use crate::error::{Error, Result};

struct SemaphoreInner {
    permits: Cell<usize>,
    /// `BoundedSemaphore`'s initial value: `release` may not go above it.
    bound: Option<usize>,
    waiters: WaitQueue,
}

impl SemaphoreInner {
    fn new(permits: usize, bound: Option<usize>) -> Rc<SemaphoreInner> {
        Rc::new(SemaphoreInner { permits: Cell::new(permits), bound, waiters: WaitQueue::default() })
    }

    fn release(&self) {
        if !self.waiters.grant_one() {
            self.permits.set(self.permits.get() + 1);
        }
    }

    fn locked(&self) -> bool {
        self.permits.get() == 0 || !self.waiters.is_empty()
    }

    fn try_acquire(self: &Rc<Self>) -> Option<SemaphorePermit> {
        if self.locked() {
            return None;
        }
        self.permits.set(self.permits.get() - 1);
        Some(SemaphorePermit { sem: Some(self.clone()) })
    }

    async fn acquire(self: &Rc<Self>) -> SemaphorePermit {
        if let Some(permit) = self.try_acquire() {
            return permit;
        }
        let sem = self.clone();
        // A waiter dropped after being handed a permit passes it on.
        self.waiters.wait(move |_| sem.release()).await;
        SemaphorePermit { sem: Some(self.clone()) }
    }
}

/// One permit of a [`Semaphore`] or [`BoundedSemaphore`], returned when
/// dropped.
pub struct SemaphorePermit {
    sem: Option<Rc<SemaphoreInner>>,
}

impl SemaphorePermit {
    /// Keeps the permit: it is not returned to the semaphore.
    pub fn forget(mut self) {
        self.sem = None;
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            sem.release();
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphorePermit")
    }
}

// -------------------------------------------------------------- Semaphore

/// A counter of permits (asyncio's `Semaphore`): `acquire` waits while none
/// is left; waiters are served FIFO.
///
/// # Examples
///
/// ```
/// use evloop::sync::Semaphore;
/// evloop::run(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await;
///     let _b = sem.acquire().await;
///     assert!(sem.locked());
///     drop(a);
///     assert_eq!(sem.available(), 1);
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemaphoreInner>,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore { inner: SemaphoreInner::new(permits, None) }
    }

    /// Permits available now.
    pub fn available(&self) -> usize {
        self.inner.permits.get()
    }

    /// Whether `acquire` would wait.
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Adds a permit (asyncio's `release()` without a matching acquire),
    /// serving the first waiter if there is one.
    pub fn release(&self) {
        self.inner.release();
    }

    /// Takes a permit now if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        self.inner.try_acquire()
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> SemaphorePermit {
        self.inner.acquire().await
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("available", &self.available()).finish()
    }
}

// ------------------------------------------------------- BoundedSemaphore

/// A [`Semaphore`] that refuses to grow past its initial value (asyncio's
/// `BoundedSemaphore`): a [`release`](BoundedSemaphore::release) with
/// every permit already free is an error, which catches a release without
/// a matching acquire.
///
/// # Examples
///
/// ```
/// use evloop::sync::BoundedSemaphore;
/// evloop::run(async {
///     let sem = BoundedSemaphore::new(1);
///     sem.acquire().await.forget();
///     assert_eq!(sem.available(), 0);
///     sem.release()?;
///     assert!(sem.release().is_err(), "released too many times");
///     assert_eq!(sem.available(), 1);
///     Ok::<(), evloop::Error>(())
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Rc<SemaphoreInner>,
}

impl BoundedSemaphore {
    /// A semaphore with `permits` permits, never more.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore { inner: SemaphoreInner::new(permits, Some(permits)) }
    }

    /// Permits available now.
    pub fn available(&self) -> usize {
        self.inner.permits.get()
    }

    /// Whether `acquire` would wait.
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Returns a permit taken with [`SemaphorePermit::forget`], serving the
    /// first waiter if there is one. (A permit that is dropped returns
    /// itself and never trips the bound.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if every permit is already free (asyncio's
    /// `ValueError: BoundedSemaphore released too many times`); nothing
    /// changes.
    pub fn release(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.waiters.is_empty() && Some(inner.permits.get()) >= inner.bound {
            return Err(Error::InvalidState("BoundedSemaphore released too many times"));
        }
        inner.release();
        Ok(())
    }

    /// Takes a permit now if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        self.inner.try_acquire()
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> SemaphorePermit {
        self.inner.acquire().await
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.available())
            .field("bound", &self.inner.bound)
            .finish()
    }
}

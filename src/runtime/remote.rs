//! [`RemoteLoop`]: the one door into a loop from other threads.
//!
//! Other threads push onto a mutex-protected queue and wake the poller with
//! `Poller::notify()`; the loop drains the queue once per iteration, right
//! after it polls. An atomic `pending` flag lets the loop skip the mutex when
//! nothing arrived, and lets senders skip the notify syscall when a wake-up
//! is already on its way.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use polling::Poller;

use crate::error::{Error, Result};

/// What another thread can ask of the loop.
pub(crate) enum RemoteItem {
    /// `call_soon_threadsafe`, with where it was called.
    Call(Box<dyn FnOnce() + Send>, &'static Location<'static>),
    /// A task woken from another thread (the task's key in the loop).
    Wake(u64),
}

struct Queue {
    items: Vec<RemoteItem>,
    closed: bool,
}

/// The part of a loop that other threads may touch.
pub(crate) struct RemoteShared {
    queue: Mutex<Queue>,
    /// Set by senders after they push; cleared by the loop before it drains.
    pending: AtomicBool,
    /// Weak: a `RemoteLoop` or task waker that outlives its loop must not
    /// keep the loop's epoll and eventfd open.
    poller: Weak<Poller>,
    /// The fork generation the loop was built in: in a child of `fork()`
    /// the queue is refused, its lock may have stayed with a parent thread.
    fork_generation: u64,
}

impl RemoteShared {
    pub(crate) fn new(poller: &Arc<Poller>) -> RemoteShared {
        RemoteShared {
            queue: Mutex::new(Queue { items: Vec::new(), closed: false }),
            pending: AtomicBool::new(false),
            poller: Arc::downgrade(poller),
            fork_generation: crate::sys::fork::generation(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A sender cannot panic while holding the lock (it only pushes), but
        // a poisoned mutex must not take the loop down with it either.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` and wakes the loop. Fails once the loop is closed, and
    /// then hands the item back so the caller decides where it is dropped.
    pub(crate) fn push(&self, item: RemoteItem) -> std::result::Result<(), RemoteItem> {
        if self.fork_generation != crate::sys::fork::generation() {
            return Err(item);
        }
        {
            let mut q = self.lock();
            if q.closed {
                return Err(item);
            }
            q.items.push(item);
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            // The loop may be blocked in `wait`: wake it. The poller is gone
            // only while the loop is being torn down; a notify error means
            // the same.
            if let Some(poller) = self.poller.upgrade() {
                let _ = poller.notify();
            }
        }
        Ok(())
    }

    /// Wakes the loop for a signal (called in signal context, by
    /// `sys::signal`): marks the queue pending so the loop's next drain
    /// looks at its signals, and notifies `poller` unless a wake-up is on
    /// its way. Async-signal-safe: one atomic swap, then `Poller::notify`
    /// (an atomic compare-exchange and a `write(2)` to its eventfd).
    pub(crate) fn wake_from_signal(&self, poller: &Poller) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = poller.notify();
        }
    }

    /// The loop's poller, while the loop lives (for signal targets, which
    /// must hold it strongly: see `sys::signal`).
    pub(crate) fn poller(&self) -> Option<Arc<Poller>> {
        self.poller.upgrade()
    }

    /// Whether something was pushed since the last `take`.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Takes everything queued so far (the loop thread only), reusing `buf`.
    pub(crate) fn take_into(&self, buf: &mut Vec<RemoteItem>) {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut q = self.lock();
        std::mem::swap(&mut q.items, buf);
    }

    /// Refuses every later push and returns what was still queued, for the
    /// caller to drop outside the lock.
    pub(crate) fn close(&self) -> Vec<RemoteItem> {
        let mut q = self.lock();
        q.closed = true;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut q.items)
    }

    /// `close` for a loop inherited through `fork()`: a parent thread may
    /// have held the lock at the fork, and that thread does not exist here,
    /// so only try it. If it is taken, the queue may be half-updated: leak
    /// it rather than touch it.
    pub(crate) fn abandon_after_fork(self: &Arc<Self>) -> Vec<RemoteItem> {
        let mut q = match self.queue.try_lock() {
            Ok(q) => q,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                std::mem::forget(Arc::clone(self));
                return Vec::new();
            }
        };
        q.closed = true;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut q.items)
    }

    pub(crate) fn is_closed(&self) -> bool {
        if self.fork_generation != crate::sys::fork::generation() {
            return true; // refused, as after close
        }
        self.lock().closed
    }
}

/// A `Send + Sync` handle to an [`EventLoop`](crate::EventLoop), for
/// scheduling callbacks from other threads (asyncio's
/// `loop.call_soon_threadsafe`).
///
/// Get one with [`EventLoop::remote`](crate::EventLoop::remote). It keeps
/// only the loop's cross-thread queue alive, not the loop itself.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// let lp = evloop::EventLoop::new()?;
/// let remote = lp.remote();
/// let (tx, rx) = mpsc::channel();
/// let worker = std::thread::spawn(move || {
///     let r = remote.clone();
///     remote.call_soon_threadsafe(move || {
///         tx.send("ran on the loop thread").unwrap();
///         // Stop the loop from inside the callback, via the same door.
///         r.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
///     })
/// });
/// worker.join().unwrap()?;
/// lp.run_forever()?;
/// assert_eq!(rx.recv().unwrap(), "ran on the loop thread");
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteLoop {
    pub(crate) shared: Arc<RemoteShared>,
}

impl RemoteLoop {
    /// Schedules `f` to run on the loop thread in the loop's next iteration,
    /// waking the loop if it is blocked waiting for I/O or timers.
    ///
    /// Calls from one thread run in the order they were made. Every call that
    /// returns `Ok` runs exactly once if the loop keeps running; calls still
    /// queued when the loop is closed are dropped without running, like the
    /// rest of the loop's pending work.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the loop has been closed; `f` is dropped.
    #[track_caller]
    pub fn call_soon_threadsafe(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let item = RemoteItem::Call(Box::new(f), Location::caller());
        self.shared.push(item).map_err(|_| Error::Closed)
    }

    /// Whether the loop has been closed (further calls would fail).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl fmt::Debug for RemoteLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteLoop").field("closed", &self.is_closed()).finish()
    }
}

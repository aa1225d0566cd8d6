//! [`RemoteLoop`]: the one door into a loop from other threads.
//!
//! Other threads push onto a mutex-protected queue and wake the poller with
//! `Poller::notify()`; the loop drains the queue once per iteration, right
//! after it polls. An atomic `pending` flag lets the loop skip the mutex when
//! nothing arrived, and lets senders skip the notify syscall when a wake-up
//! is already on its way.
//!
//! [`RemoteLoop::run_coroutine_threadsafe`] builds on it: its
//! [`ConcurrentFuture`] is resolved exactly once, by the task or, if the
//! task or the job is dropped unfinished, by the drop (`Cancelled` or
//! `Closed`), so a thread blocked on it is always released.

use std::fmt;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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

// ------------------------------------------------- run_coroutine_threadsafe

/// What a [`ConcurrentFuture`] shares with the task that resolves it.
struct Concurrent<T> {
    state: Mutex<ConcurrentState<T>>,
    resolved: Condvar,
}

struct ConcurrentState<T> {
    outcome: Option<Result<T>>,
    /// The outcome was moved out by `result` or an awaiter.
    taken: bool,
    cancel_requested: bool,
    /// The task's waker on the loop, to deliver a cancellation to it.
    task_waker: Option<Waker>,
    /// An awaiter's waker on another loop.
    awaiter: Option<Waker>,
}

impl<T> Concurrent<T> {
    fn lock(&self) -> MutexGuard<'_, ConcurrentState<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome (the first one wins) and wakes every waiter.
    fn resolve(&self, outcome: Result<T>) {
        let awaiter = {
            let mut state = self.lock();
            if state.outcome.is_some() || state.taken {
                return;
            }
            state.outcome = Some(outcome);
            state.task_waker = None;
            state.awaiter.take()
        };
        self.resolved.notify_all();
        if let Some(waker) = awaiter {
            waker.wake();
        }
    }
}

/// Resolves its [`Concurrent`] when dropped unresolved: the job was
/// dropped without running (the loop closed first) or the task was
/// dropped unfinished (cancelled, or the loop closed).
struct Resolver<T>(Arc<Concurrent<T>>);

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        let cancelled = self.0.lock().cancel_requested;
        self.0.resolve(Err(if cancelled { Error::Cancelled } else { Error::Closed }));
    }
}

/// The submitted future inside its task: polls it, and ends the task
/// when the other side asks for a cancellation.
struct Submitted<F: std::future::Future> {
    fut: Pin<Box<F>>,
    resolver: Resolver<F::Output>,
}

impl<F: std::future::Future> std::future::Future for Submitted<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = self.resolver.0.lock();
            if state.cancel_requested {
                drop(state);
                // Cancel the task itself, so it ends cancelled as asyncio's
                // does; its next step drops this future (and `fut`).
                if let Some(task) = crate::task::current_task() {
                    task.cancel();
                }
                return Poll::Pending;
            }
            if !state.task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.task_waker = Some(cx.waker().clone());
            }
        }
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(value) => {
                self.resolver.0.resolve(Ok(value));
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The handle [`RemoteLoop::run_coroutine_threadsafe`] gives (asyncio's
/// `concurrent.futures.Future`): `Send + Sync`, so any thread can block on
/// it ([`result`](ConcurrentFuture::result)), await it from another loop
/// (`(&fut).await` or `fut.await`), or [`cancel`](ConcurrentFuture::cancel)
/// the task.
///
/// The outcome can be taken once: a second `result` or await after a
/// successful one gives [`Error::InvalidState`].
pub struct ConcurrentFuture<T> {
    shared: Arc<Concurrent<T>>,
}

impl<T: Send + 'static> ConcurrentFuture<T> {
    /// Blocks this thread until the task is done, at most `timeout`
    /// (`None`: no limit), and moves its outcome out.
    ///
    /// Never call it on the loop's own thread while the loop should run
    /// the task: the loop would wait for itself.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if `timeout` passes first (the task goes on, and
    /// the call can be made again); [`Error::Cancelled`] if the task was
    /// cancelled; [`Error::Closed`] if the loop closed before the task
    /// finished; [`Error::Panicked`] if it panicked; [`Error::InvalidState`]
    /// if the outcome was taken already.
    pub fn result(&self, timeout: Option<Duration>) -> Result<T> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut state = self.shared.lock();
        loop {
            if let Some(outcome) = state.outcome.take() {
                state.taken = true;
                return outcome;
            }
            if state.taken {
                return Err(Error::InvalidState("the result was taken already"));
            }
            state = match deadline {
                None => self.shared.resolved.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    self.shared.resolved.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    /// Asks for the task to be cancelled: it is, at its next step on the
    /// loop, and the outcome becomes [`Error::Cancelled`]. Returns false if
    /// the task is done already.
    pub fn cancel(&self) -> bool {
        let waker = {
            let mut state = self.shared.lock();
            if state.outcome.is_some() || state.taken {
                return false;
            }
            state.cancel_requested = true;
            state.task_waker.take()
        };
        // No waker: the task has not been polled yet, and sees the request
        // when it is (or its job sees it and makes no task).
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether the task is done (its outcome is there or was taken).
    pub fn done(&self) -> bool {
        let state = self.shared.lock();
        state.outcome.is_some() || state.taken
    }

    /// Whether the task ended cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.shared.lock().outcome, Some(Err(Error::Cancelled)))
    }

    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.shared.lock();
        if let Some(outcome) = state.outcome.take() {
            state.taken = true;
            return Poll::Ready(outcome);
        }
        if state.taken {
            return Poll::Ready(Err(Error::InvalidState("the result was taken already")));
        }
        if !state.awaiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.awaiter = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<T: Send + 'static> std::future::Future for ConcurrentFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.poll_outcome(cx)
    }
}

impl<T: Send + 'static> std::future::Future for &ConcurrentFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.poll_outcome(cx)
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ConcurrentFuture")
            .field("done", &(state.outcome.is_some() || state.taken))
            .field("cancel_requested", &state.cancel_requested)
            .finish()
    }
}

impl RemoteLoop {
    /// Runs `fut` as a task on the loop, from any thread (asyncio's
    /// `run_coroutine_threadsafe`), and returns a [`ConcurrentFuture`] to
    /// wait for, await or cancel it. The task is created in the loop's next
    /// iteration.
    ///
    /// `fut` must be `Send` to cross threads, which a future holding one of
    /// evloop's own (single-threaded) futures across an `.await` is not:
    /// for those, send a closure that makes the future on the loop thread,
    /// with [`run_coroutine_threadsafe_with`](RemoteLoop::run_coroutine_threadsafe_with).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the loop is closed; `fut` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let remote = lp.remote();
    /// let worker = std::thread::spawn(move || {
    ///     let fut = remote.run_coroutine_threadsafe(async { 6 * 7 })?;
    ///     let answer = fut.result(Some(std::time::Duration::from_secs(20)));
    ///     remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop())?;
    ///     answer
    /// });
    /// lp.run_forever()?;
    /// assert_eq!(worker.join().unwrap()?, 42);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn run_coroutine_threadsafe<F>(&self, fut: F) -> Result<ConcurrentFuture<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.run_coroutine_threadsafe_with(move || fut)
    }

    /// [`run_coroutine_threadsafe`](RemoteLoop::run_coroutine_threadsafe)
    /// for a future that is not `Send`: `make` is sent to the loop thread
    /// and called there, and the future it returns runs as the task. Only
    /// `make` and the output cross threads.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the loop is closed; `make` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::new()?;
    /// let remote = lp.remote();
    /// let worker = std::thread::spawn(move || {
    ///     let fut = remote.run_coroutine_threadsafe_with(|| async {
    ///         evloop::sleep(Duration::from_millis(1)).await;
    ///         "slept on the loop"
    ///     })?;
    ///     let out = fut.result(Some(Duration::from_secs(20)));
    ///     remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop())?;
    ///     out
    /// });
    /// lp.run_forever()?;
    /// assert_eq!(worker.join().unwrap()?, "slept on the loop");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn run_coroutine_threadsafe_with<M, F>(&self, make: M) -> Result<ConcurrentFuture<F::Output>>
    where
        M: FnOnce() -> F + Send + 'static,
        F: std::future::Future + 'static,
        F::Output: Send + 'static,
    {
        let shared = Arc::new(Concurrent {
            state: Mutex::new(ConcurrentState {
                outcome: None,
                taken: false,
                cancel_requested: false,
                task_waker: None,
                awaiter: None,
            }),
            resolved: Condvar::new(),
        });
        let resolver = Resolver(shared.clone());
        self.call_soon_threadsafe(move || {
            if resolver.0.lock().cancel_requested {
                return; // cancelled before it started: the drop resolves it
            }
            let Ok(lp) = crate::runtime::event_loop::get_running_loop() else { return };
            let fut = make();
            lp.create_task(Submitted { fut: Box::pin(fut), resolver });
        })?;
        Ok(ConcurrentFuture { shared })
    }
}

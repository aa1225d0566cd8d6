//! Running a future to completion: `run_until_complete` (`evloop::run`
//! and [`Runner`](crate::Runner) are in `runner.rs`).
//!
//! `run_until_complete` polls its future itself, with no task around it:
//! the loop has one ready-queue entry for it ([`MainMarker`]), queued where
//! asyncio would queue the wrapper task's step (first step, each wake-up,
//! and the done callback that stops the loop one pass after completion),
//! and the pass polls the future in that entry's place. On a quiet loop
//! (nothing ready, no fd, no timer) the first step would run alone in pass
//! 1 and the stop alone in pass 2, so both are done inline: a trivial
//! future costs no allocation, no pass and no clock read.
//!
//! A refused call schedules nothing; a [`Task`] or [`Future`] passed in
//! keeps its result.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result, panic_message};
use crate::runtime::event_loop::{EventLoop, LoopInner};
use crate::runtime::handle::Runnable;
use crate::task::future::Future;
use crate::task::helpers::TaskGroup;
use crate::task::task::{Task, main_waker};

mod sealed {
    pub trait Sealed {}
}

/// What [`EventLoop::run_until_complete`] and [`run`](crate::run) accept
/// (asyncio's awaitables): any `std::future::Future` (an `async` block, an
/// adapter future), which the loop polls in place of a task; a [`Task`] or
/// a [`Future`], which is awaited in place; a [`TaskGroup`].
///
/// A `Task<T>` or `Future<T>` passed in keeps its result: it is cloned out
/// (`T: Clone`, as for [`Task::result`]), so the task can still be asked
/// afterwards, or run again after a [`stop`](EventLoop::stop). For a
/// non-`Clone` result, pass `async move { task.await }`, which moves it out.
///
/// Sealed: implemented by evloop only.
pub trait Awaitable: sealed::Sealed + 'static {
    /// What `run_until_complete` returns in its `Ok`.
    type Output;

    #[doc(hidden)]
    fn run_on(self, lp: &EventLoop) -> Result<Self::Output>;

    /// The awaitable as a plain future, for a runner that must run it as
    /// a task (Ctrl-C cancels the main task).
    #[doc(hidden)]
    fn into_main_future(self) -> Pin<Box<dyn std::future::Future<Output = Result<Self::Output>>>>;
}

impl<F: std::future::Future + 'static> sealed::Sealed for F {}
impl<T: Clone + 'static> sealed::Sealed for Task<T> {}
impl<T: Clone + 'static> sealed::Sealed for Future<T> {}
impl sealed::Sealed for TaskGroup {}

impl<F: std::future::Future + 'static> Awaitable for F {
    type Output = F::Output;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<F::Output> {
        run_main_future(lp, self, Location::caller())
    }

    fn into_main_future(self) -> Pin<Box<dyn std::future::Future<Output = Result<F::Output>>>> {
        Box::pin(async move { Ok(self.await) })
    }
}

impl<T: Clone + 'static> Awaitable for Task<T> {
    type Output = Result<T>;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<Result<T>> {
        self.as_future().clone().run_on(lp)
    }

    fn into_main_future(self) -> Pin<Box<dyn std::future::Future<Output = Result<Result<T>>>>> {
        self.as_future().clone().into_main_future()
    }
}

impl<T: Clone + 'static> Awaitable for Future<T> {
    type Output = Result<T>;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<Result<T>> {
        let running = lp.enter_untimed()?;
        if !self.state_loop_is(lp) {
            return Err(Error::InvalidState("the future belongs to another event loop"));
        }
        let marker = &lp.inner.main;
        let _active = marker.begin();
        marker.location.set(Location::caller());
        let mut main = AwaitDone { fut: &self, waker: main_waker(&lp.inner) };
        // asyncio's `add_done_callback(_run_until_complete_cb)`: on a done
        // future the stop is scheduled at once, else it waits for the wake.
        if self.done() {
            marker.schedule(&lp.inner);
        } else {
            self.register(&main.waker);
        }
        running.start_timing();
        lp.run_main(&mut main, false)?;
        if !self.done() {
            return Err(Error::StoppedBeforeComplete);
        }
        Ok(self.result())
    }

    fn into_main_future(self) -> Pin<Box<dyn std::future::Future<Output = Result<Result<T>>>>> {
        Box::pin(async move { Ok((&self).await) })
    }
}

impl Awaitable for TaskGroup {
    type Output = Result<()>;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<Result<()>> {
        std::future::IntoFuture::into_future(self).run_on(lp)
    }

    fn into_main_future(self) -> Pin<Box<dyn std::future::Future<Output = Result<Result<()>>>>> {
        std::future::IntoFuture::into_future(self).into_main_future()
    }
}

/// `run_until_complete`'s future as the pass sees it.
pub(crate) trait MainStep {
    /// One step, run where the loop's [`MainMarker`] entry was in the
    /// ready queue, with no borrow of the loop alive.
    fn step(&mut self, lp: &EventLoop);
}

/// What a pass does after each item it runs: nothing (`()`, for
/// `run_forever` and friends, compiled away), or poll `run_until_complete`'s
/// future when the item was its entry.
pub(crate) trait PassHook {
    /// Called after each `Rc` item the pass ran (the entry is one).
    fn after_item(&mut self, lp: &EventLoop);
}

impl PassHook for () {
    #[inline(always)]
    fn after_item(&mut self, _: &EventLoop) {}
}

impl PassHook for &mut dyn MainStep {
    #[inline]
    fn after_item(&mut self, lp: &EventLoop) {
        if lp.inner.main.take_due() {
            self.step(lp);
        }
    }
}

/// The loop's ready-queue entry for `run_until_complete`'s future: one per
/// loop, made with it and reused by every call.
///
/// An entry still queued when its call returns (the run was stopped or
/// interrupted) is *stale*: it is skipped when it comes up, so a later
/// call's future is never polled ahead of its own place. Stale entries are
/// always the oldest in the queue, so counting them is enough.
pub(crate) struct MainMarker {
    /// The entry just ran: `run_ready` calls the main step right after it.
    due: Cell<bool>,
    /// A `run_until_complete` call is using the entry.
    active: Cell<bool>,
    /// Entries of this marker in the ready queue, stale ones included.
    queued: Cell<u32>,
    /// How many of the queued entries are stale.
    stale: Cell<u32>,
    location: Cell<&'static Location<'static>>,
}

impl MainMarker {
    pub(crate) fn new() -> Rc<MainMarker> {
        Rc::new(MainMarker {
            due: Cell::new(false),
            active: Cell::new(false),
            queued: Cell::new(0),
            stale: Cell::new(0),
            location: Cell::new(Location::caller()),
        })
    }

    /// Whether the entry just ran (and forgets it).
    #[inline]
    pub(crate) fn take_due(&self) -> bool {
        if self.due.get() {
            self.due.set(false);
            return true;
        }
        false
    }

    /// Queues the main future's next step, unless no call is using the
    /// entry or its step is queued already (a wake-up of a queued task).
    pub(crate) fn schedule(self: &Rc<Self>, inner: &LoopInner) {
        if !self.active.get() || self.queued.get() > self.stale.get() {
            return;
        }
        self.queued.set(self.queued.get() + 1);
        inner.push_ready(self.clone());
    }

    /// Starts a call's use of the entry; `at` is set as its location
    /// (for debug reports) before its first pass.
    #[inline]
    fn begin(&self) -> ActiveMain<'_> {
        self.active.set(true);
        ActiveMain(self)
    }
}

/// Ends a call's use of the [`MainMarker`] on every exit path.
struct ActiveMain<'a>(&'a MainMarker);

impl Drop for ActiveMain<'_> {
    #[inline]
    fn drop(&mut self) {
        let marker = self.0;
        marker.active.set(false);
        // `due` is false here: `run_ready` clears it as soon as it is set.
        marker.stale.set(marker.queued.get());
    }
}

impl Runnable for MainMarker {
    fn run(&self) -> bool {
        self.queued.set(self.queued.get().saturating_sub(1));
        if self.stale.get() > 0 {
            self.stale.set(self.stale.get() - 1);
            return false;
        }
        if !self.active.get() {
            return false;
        }
        self.due.set(true);
        true
    }

    fn location(&self) -> &'static Location<'static> {
        self.location.get()
    }
}

/// The main step of a plain future: poll it; once it is done, the next
/// step is asyncio's done callback, which stops the loop.
struct MainFuture<'a, F: std::future::Future> {
    /// `None` once done: dropped in place, as a finished task drops its
    /// future.
    fut: Pin<&'a mut Option<F>>,
    output: Option<Result<F::Output>>,
    waker: Waker,
}

impl<F: std::future::Future> MainFuture<'_, F> {
    /// Drops the future in place; a destructor that panics is reported.
    fn clear(&mut self, lp: &EventLoop) {
        let fut = &mut self.fut;
        if !std::mem::needs_drop::<F>() {
            fut.set(None);
            return;
        }
        if let Err(message) = crate::runtime::guard::run_user(|| fut.set(None)) {
            let ctx = crate::exception::ExceptionContext::new("panic in the destructor of a future")
                .with_error(Error::Panicked(message));
            lp.call_exception_handler(&ctx);
        }
    }
}

impl<F: std::future::Future> MainFuture<'_, F> {
    /// Polls the future once; its output (or panic) once it is done, the
    /// future then dropped.
    #[inline(always)]
    fn poll_once(&mut self, lp: &EventLoop) -> Option<Result<F::Output>> {
        let fut = self.fut.as_mut().as_pin_mut()?;
        let mut cx = Context::from_waker(&self.waker);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)));
        let output = match polled {
            Ok(Poll::Pending) => return None,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => {
                let message = panic_message(&*payload);
                let _ = crate::runtime::guard::drop_user(payload);
                Err(Error::Panicked(message))
            }
        };
        self.clear(lp);
        Some(output)
    }
}

impl<F: std::future::Future> MainStep for MainFuture<'_, F> {
    fn step(&mut self, lp: &EventLoop) {
        if self.output.is_some() {
            lp.stop();
            return;
        }
        if let Some(output) = self.poll_once(lp) {
            self.output = Some(output);
            lp.inner.main.schedule(&lp.inner);
        }
    }
}

/// The main step of a [`Future`] or [`Task`] awaited in place: stop once
/// it is done, else wait for its wake-up.
struct AwaitDone<'a, T: 'static> {
    fut: &'a Future<T>,
    waker: Waker,
}

impl<T: 'static> MainStep for AwaitDone<'_, T> {
    fn step(&mut self, lp: &EventLoop) {
        if self.fut.done() {
            lp.stop();
        } else {
            // A spurious wake-up (a stale waker of an earlier call).
            self.fut.register(&self.waker);
        }
    }
}

/// `run_until_complete` of a plain future; see the module docs.
#[inline]
fn run_main_future<F: std::future::Future>(
    lp: &EventLoop,
    fut: F,
    at: &'static Location<'static>,
) -> Result<F::Output> {
    let running = lp.enter_untimed()?;
    let inner = &lp.inner;
    let _active = inner.main.begin();
    let mut main = MainFuture { fut: pin!(Some(fut)), output: None, waker: main_waker(inner) };
    let mut after_pass = false;
    if lp.is_quiet() {
        // Pass 1 would run the first step alone: run it now.
        after_pass = true;
        if let Some(output) = main.poll_once(lp) {
            if lp.is_quiet() {
                // Pass 2 would run the stop alone.
                count_passes(inner, 2);
                return output;
            }
            main.output = Some(output);
            inner.main.schedule(inner);
        }
        count_passes(inner, 1);
    } else {
        inner.main.schedule(inner);
    }
    inner.main.location.set(at);
    running.start_timing();
    let ran = lp.run_main(&mut main, after_pass);
    main.clear(lp);
    ran?;
    main.output.take().unwrap_or(Err(Error::StoppedBeforeComplete))
}

/// Counts `n` passes done inline, each running one step (or the stop).
#[inline]
fn count_passes(inner: &LoopInner, n: u64) {
    let stats = &inner.stats;
    stats.iterations.set(stats.iterations.get() + n);
    stats.callbacks_run.set(stats.callbacks_run.get() + n);
}

impl EventLoop {
    /// Runs the loop until `fut` completes and returns its output (asyncio's
    /// `run_until_complete`). `fut` is anything [`Awaitable`]: an `async`
    /// block or other `std::future::Future`, a [`Task`] or a [`Future`]
    /// (awaited in place; their output is itself a `Result`, and they keep
    /// their result).
    ///
    /// The order is asyncio's, where the future is wrapped in a task: its
    /// first step runs after the callbacks already queued, each wake-up
    /// queues its next step behind what is ready, and the loop returns one
    /// pass after it completes (asyncio's done callback stops the loop).
    /// What differs is the cost: evloop polls a plain future itself, in
    /// that task's place in the ready queue, so there is no task to
    /// allocate; and when the loop is quiet (nothing ready, no fd, no
    /// timer) and the future completes at its first poll without
    /// scheduling anything, the two passes asyncio would run are done
    /// inline: no pass, no poll, no clock read (such a call adds no busy
    /// time to [`stats`](EventLoop::stats); it counts its two passes).
    ///
    /// A plain future belongs to the call: if the call returns without
    /// its output (stopped, interrupted, an I/O error), the future is
    /// dropped, which cancels what it was awaiting. asyncio would leave
    /// the wrapper task pending; to get that, pass a task:
    /// `lp.run_until_complete(lp.create_task(fut))` keeps running it.
    ///
    /// # Errors
    ///
    /// [`Error::StoppedBeforeComplete`] if [`stop`](EventLoop::stop) ended
    /// the loop first; [`Error::Panicked`] if the future panicked;
    /// [`Error::Cancelled`] if its task was cancelled;
    /// [`Error::InvalidState`] for a task or future of another loop;
    /// [`Error::Closed`] and [`Error::AlreadyRunning`] (this or another
    /// loop is running on this thread) as for
    /// [`run_forever`](EventLoop::run_forever). A refused call schedules
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::new()?;
    /// let out = lp.run_until_complete(async {
    ///     evloop::sleep(Duration::from_millis(1)).await;
    ///     "done"
    /// })?;
    /// assert_eq!(out, "done");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn run_until_complete<A: Awaitable>(&self, fut: A) -> Result<A::Output> {
        // Each `run_on` enters the loop before anything else, which refuses
        // a closed loop, then one running here (this or another).
        fut.run_on(self)
    }
}

//! Running a future to completion: `run_until_complete` and `evloop::run`.
//!
//! A refused call schedules nothing; an accepted one stops the loop from a
//! done callback on the awaited future, as asyncio's
//! `_run_until_complete_cb` does, and reads the result without taking it
//! away from a [`Task`] or [`Future`] the caller still holds.

use crate::error::{Error, Result};
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use crate::task::future::Future;
use crate::task::helpers::TaskGroup;
use crate::task::task::Task;

mod sealed {
    pub trait Sealed {}
}

/// What [`EventLoop::run_until_complete`] and [`run`](crate::run) accept
/// (asyncio's awaitables): any `std::future::Future` (an `async` block, an
/// adapter future), which is wrapped in a new [`Task`]; a [`Task`] or a
/// [`Future`], which is awaited in place; a [`TaskGroup`].
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
}

impl<F: std::future::Future + 'static> sealed::Sealed for F {}
impl<T: Clone + 'static> sealed::Sealed for Task<T> {}
impl<T: Clone + 'static> sealed::Sealed for Future<T> {}
impl sealed::Sealed for TaskGroup {}

impl<F: std::future::Future + 'static> Awaitable for F {
    type Output = F::Output;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<F::Output> {
        let task = lp.create_task(self);
        run_until_done(lp, task.as_future())?;
        // Nobody else has this task: its result can be moved out.
        task.as_future().take_outcome().expect("the task is done")
    }
}

impl<T: Clone + 'static> Awaitable for Task<T> {
    type Output = Result<T>;

    fn run_on(self, lp: &EventLoop) -> Result<Result<T>> {
        self.as_future().clone().run_on(lp)
    }
}

impl<T: Clone + 'static> Awaitable for Future<T> {
    type Output = Result<T>;

    fn run_on(self, lp: &EventLoop) -> Result<Result<T>> {
        if !self.state_loop_is(lp) {
            return Err(Error::InvalidState("the future belongs to another event loop"));
        }
        run_until_done(lp, &self)?;
        Ok(self.result())
    }
}

impl Awaitable for TaskGroup {
    type Output = Result<()>;

    #[track_caller]
    fn run_on(self, lp: &EventLoop) -> Result<Result<()>> {
        std::future::IntoFuture::into_future(self).run_on(lp)
    }
}

/// Runs `lp` until `fut` is done: a done callback stops the loop (one pass
/// after completion, as asyncio). If something else stops the loop first,
/// the callback is removed and the future left as it is.
fn run_until_done<T: 'static>(lp: &EventLoop, fut: &Future<T>) -> Result<()> {
    let stopper = lp.downgrade();
    let id = fut.add_done_callback(move |_| {
        if let Some(lp) = stopper.upgrade() {
            lp.stop();
        }
    });
    let ran = lp.run_forever();
    if !fut.done() {
        fut.remove_done_callback(id);
        ran?;
        return Err(Error::StoppedBeforeComplete);
    }
    ran
}

impl EventLoop {
    /// Runs the loop until `fut` completes and returns its output (asyncio's
    /// `run_until_complete`). `fut` is anything [`Awaitable`]: an `async`
    /// block or other `std::future::Future` (wrapped in a task), a
    /// [`Task`] or a [`Future`] (awaited in place; their output is itself a
    /// `Result`, and they keep their result).
    ///
    /// The loop returns one pass after `fut` completes: its done callback
    /// stops the loop, as in asyncio.
    ///
    /// # Errors
    ///
    /// [`Error::StoppedBeforeComplete`] if [`stop`](EventLoop::stop) ended
    /// the loop first (the task stays scheduled; running again continues
    /// it); [`Error::Panicked`] if the future panicked; [`Error::Cancelled`]
    /// if its task was cancelled; [`Error::InvalidState`] for a task or
    /// future of another loop; [`Error::Closed`] and
    /// [`Error::AlreadyRunning`] (this or another loop is running on this
    /// thread) as for [`run_forever`](EventLoop::run_forever). A refused call
    /// schedules nothing.
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
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if self.is_running() || get_running_loop().is_ok() {
            return Err(Error::AlreadyRunning);
        }
        fut.run_on(self)
    }
}

/// Runs `fut` on a new event loop and closes it (asyncio's `asyncio.run`):
/// creates the loop, runs `fut` to completion, cancels the tasks still
/// pending and runs the loop until they have unwound, then closes the loop,
/// which also shuts its executor down.
///
/// # Errors
///
/// As [`EventLoop::run_until_complete`], plus [`Error::Io`] if the loop
/// cannot be created.
///
/// # Examples
///
/// ```
/// let out = evloop::run(async { 1 + 1 })?;
/// assert_eq!(out, 2);
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn run<A: Awaitable>(fut: A) -> Result<A::Output> {
    if get_running_loop().is_ok() {
        return Err(Error::AlreadyRunning);
    }
    let lp = EventLoop::new()?;
    let result = lp.run_until_complete(fut);
    cancel_leftover_tasks(&lp)?;
    lp.close()?;
    result
}

/// Cancels every unfinished task of `lp` and runs the loop until they are
/// gone (a cancelled task drops its future at its next step).
fn cancel_leftover_tasks(lp: &EventLoop) -> Result<()> {
    // Cancelled tasks finish at their next step; re-cancel each pass in
    // case dropping one future spawned another task.
    while lp.stats().tasks > 0 {
        crate::task::task::cancel_all(lp);
        lp.run_once(Some(std::time::Duration::ZERO))?;
    }
    Ok(())
}

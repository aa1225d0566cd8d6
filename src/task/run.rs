//! Running a future to completion: `run_until_complete` and `evloop::run`.

use std::future::IntoFuture;

use crate::error::{Error, Result};
use crate::runtime::event_loop::EventLoop;

impl EventLoop {
    /// Runs the loop until `fut` completes and returns its output (asyncio's
    /// `run_until_complete`). `fut` is anything awaitable: an `async` block, a
    /// [`Future`](crate::Future) (whose output is itself a `Result`), or a
    /// [`Task`](crate::Task); it is wrapped in a task.
    ///
    /// # Errors
    ///
    /// [`Error::StoppedBeforeComplete`] if [`stop`](EventLoop::stop) ended
    /// the loop first (the task stays scheduled); [`Error::Panicked`] if the
    /// future panicked; [`Error::Cancelled`] if its task was cancelled;
    /// [`Error::Closed`], [`Error::AlreadyRunning`] as for
    /// [`run_forever`](EventLoop::run_forever).
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
    pub fn run_until_complete<F>(&self, fut: F) -> Result<F::Output>
    where
        F: IntoFuture + 'static,
    {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if self.is_running() {
            return Err(Error::AlreadyRunning);
        }
        let task = self.create_task(fut.into_future());
        let stopper = self.clone();
        let id = task.add_done_callback(move |_| stopper.stop());
        let ran = self.run_forever();
        if !task.done() {
            task.remove_done_callback(id);
            ran?;
            return Err(Error::StoppedBeforeComplete);
        }
        ran?;
        task.as_future().take_outcome().expect("the task is done")
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
pub fn run<F>(fut: F) -> Result<F::Output>
where
    F: IntoFuture + 'static,
{
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

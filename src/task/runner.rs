//! [`Runner`]: asyncio's `Runner`, one loop for several top-level runs,
//! and [`run`], which is one run of a fresh runner.
//!
//! Invariant: the loop is made on first use and closed exactly once, by
//! [`Runner::close`] or the runner's drop; no task of it outlives the
//! close unfinished (leftovers are cancelled and run until they unwind),
//! and the default executor's threads have exited by then.

use std::cell::RefCell;
use std::fmt;

use crate::error::{Error, Result};
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use crate::task::run::Awaitable;

type LoopFactory = Box<dyn FnOnce() -> Result<EventLoop>>;

enum State {
    /// No loop yet: made by the first `run` or `get_loop`.
    Created(Option<LoopFactory>),
    Running(EventLoop),
    Closed,
}

/// Runs futures to completion on one event loop that it owns (asyncio's
/// `asyncio.Runner`): several [`run`](Runner::run) calls share the loop
/// (and so its tasks, servers and executor); [`close`](Runner::close), or
/// dropping the runner, cancels the tasks still pending, shuts the default
/// executor down and closes the loop.
///
/// # Examples
///
/// ```
/// use evloop::Runner;
/// let runner = Runner::new();
/// let lp = runner.get_loop()?;
/// let first = runner.run(async { evloop::spawn(async { 40 }) })?;
/// // The task spawned by the first run is still there for the second.
/// let second = runner.run(async move { first.await.map(|n| n + 2) })?;
/// assert_eq!(second?, 42);
/// runner.close()?;
/// assert!(lp.is_closed());
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Runner {
    state: RefCell<State>,
    debug: Option<bool>,
    cancel_on_ctrl_c: bool,
}

/// Options for a [`Runner`], from [`Runner::builder`].
#[derive(Default)]
pub struct RunnerBuilder {
    debug: Option<bool>,
    factory: Option<LoopFactory>,
    cancel_on_ctrl_c: bool,
}

impl RunnerBuilder {
    /// Turns the loop's debug mode on or off (asyncio's `debug=`); unset,
    /// the loop keeps its own setting.
    pub fn debug(mut self, on: bool) -> RunnerBuilder {
        self.debug = Some(on);
        self
    }

    /// Makes the loop with `factory` instead of [`EventLoop::new`]
    /// (asyncio's `loop_factory=`), e.g. a virtual-time loop for tests.
    ///
    /// # Examples
    ///
    /// ```
    /// let runner = evloop::Runner::builder()
    ///     .loop_factory(|| evloop::EventLoop::builder().autojump(std::time::Duration::ZERO).build())
    ///     .build();
    /// let start = runner.get_loop()?.time();
    /// runner.run(evloop::sleep(std::time::Duration::from_secs(3600)))?;
    /// assert_eq!(runner.get_loop()?.time() - start, std::time::Duration::from_secs(3600));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn loop_factory(mut self, factory: impl FnOnce() -> Result<EventLoop> + 'static) -> RunnerBuilder {
        self.factory = Some(Box::new(factory));
        self
    }

    /// Makes Ctrl-C (`SIGINT`) cancel the main task of each
    /// [`run`](Runner::run), as `asyncio.Runner` does (default: off,
    /// signals are left alone); see [`RunOptions::cancel_on_ctrl_c`]. The
    /// run's future is then wrapped in a task.
    pub fn cancel_on_ctrl_c(mut self, on: bool) -> RunnerBuilder {
        self.cancel_on_ctrl_c = on;
        self
    }

    /// The runner; its loop is made on first use.
    pub fn build(self) -> Runner {
        Runner {
            state: RefCell::new(State::Created(self.factory)),
            debug: self.debug,
            cancel_on_ctrl_c: self.cancel_on_ctrl_c,
        }
    }
}

impl Default for Runner {
    fn default() -> Runner {
        Runner::new()
    }
}

impl Runner {
    /// A runner with a default loop, made on first use.
    pub fn new() -> Runner {
        Runner::builder().build()
    }

    /// A builder for a runner with options.
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder::default()
    }

    /// The runner's loop, made now if it does not exist yet.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Runner::close); the loop
    /// factory's error (for the default, [`Error::Io`] if the poller cannot
    /// be made).
    pub fn get_loop(&self) -> Result<EventLoop> {
        let factory = match &mut *self.state.borrow_mut() {
            State::Running(lp) => return Ok(lp.clone()),
            State::Closed => return Err(Error::Closed),
            State::Created(factory) => factory.take(),
        };
        // The factory is user code: no borrow is alive while it runs.
        let lp = match factory {
            Some(factory) => factory()?,
            None => EventLoop::new()?,
        };
        if let Some(on) = self.debug {
            lp.set_debug(on);
        }
        *self.state.borrow_mut() = State::Running(lp.clone());
        Ok(lp)
    }

    /// Runs `fut` on the runner's loop until it completes, and returns its
    /// output (asyncio's `Runner.run`). Tasks it leaves behind stay on the
    /// loop for the next `run`, until [`close`](Runner::close).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] when called from inside a running loop
    /// (asyncio's `RuntimeError`), and as
    /// [`EventLoop::run_until_complete`] and [`get_loop`](Runner::get_loop);
    /// [`Error::Cancelled`] if Ctrl-C cancelled the main task (with
    /// [`RunnerBuilder::cancel_on_ctrl_c`]).
    #[track_caller]
    pub fn run<A: Awaitable>(&self, fut: A) -> Result<A::Output> {
        if get_running_loop().is_ok() {
            return Err(Error::AlreadyRunning);
        }
        let lp = self.get_loop()?;
        if self.cancel_on_ctrl_c {
            return crate::os::signal::run_cancelling_on_ctrl_c(&lp, fut.into_main_future())?;
        }
        lp.run_until_complete(fut)
    }

    /// Cancels every task still pending and runs the loop until they have
    /// unwound, shuts the default executor down (waiting for its threads),
    /// then closes the loop (asyncio's `Runner.close`). Calling it again,
    /// or on a runner that never made its loop, does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Running`] when called from inside the runner's running
    /// loop; an error of the final passes (the loop is closed all the
    /// same).
    pub fn close(&self) -> Result<()> {
        let running = match &*self.state.borrow() {
            State::Running(lp) => Some(lp.clone()),
            _ => None,
        };
        if running.as_ref().is_some_and(EventLoop::is_running) {
            return Err(Error::Running);
        }
        // Dropped after the borrow: an unused loop factory is user code.
        let previous = std::mem::replace(&mut *self.state.borrow_mut(), State::Closed);
        drop(previous);
        let Some(lp) = running else { return Ok(()) };
        let unwound = cancel_leftover_tasks(&lp)
            .and_then(|()| lp.run_until_complete(lp.shutdown_default_executor()).and_then(|r| r));
        let closed = lp.close();
        unwound.and(closed)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Errors have nowhere to go from a drop; the loop is closed anyway.
        let _ = self.close();
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.state.borrow() {
            State::Created(_) => "created",
            State::Running(_) => "initialized",
            State::Closed => "closed",
        };
        f.debug_struct("Runner")
            .field("state", &state)
            .field("debug", &self.debug)
            .field("cancel_on_ctrl_c", &self.cancel_on_ctrl_c)
            .finish()
    }
}

impl fmt::Debug for RunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerBuilder")
            .field("debug", &self.debug)
            .field("loop_factory", &self.factory.is_some())
            .field("cancel_on_ctrl_c", &self.cancel_on_ctrl_c)
            .finish()
    }
}

/// Runs `fut` on a new event loop and closes it (asyncio's `asyncio.run`):
/// one [`Runner::run`] then [`Runner::close`], which cancels the tasks
/// still pending and runs the loop until they have unwound, shuts the
/// default executor down and closes the loop.
///
/// # Errors
///
/// As [`Runner::run`] (so [`EventLoop::run_until_complete`]), plus
/// [`Error::Io`] if the loop cannot be created. An error of the clean-up
/// is returned only if the run itself succeeded.
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
    let runner = Runner::new();
    let result = runner.run(fut);
    let closed = runner.close();
    let out = result?;
    closed?;
    Ok(out)
}

/// How [`run_with`] runs its future: asyncio's `Runner` settings that
/// `evloop::run` leaves at their defaults (the same as [`RunnerBuilder`]'s,
/// for one run).
///
/// # Examples
///
/// ```
/// use evloop::RunOptions;
/// let out = evloop::run_with(RunOptions::new().cancel_on_ctrl_c(true), async { 6 * 7 })?;
/// assert_eq!(out, 42);
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    cancel_on_ctrl_c: bool,
}

impl RunOptions {
    /// The defaults, as [`run`]: signals are left alone.
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Makes Ctrl-C (`SIGINT`) cancel the main task, as `asyncio.run`
    /// and `asyncio.Runner` do (default: off, signals are left alone).
    /// The future then runs as a task; the first Ctrl-C cancels it (its
    /// future is dropped, so what it awaited is cancelled and its
    /// destructors run), `run_with` returns `Err(Error::Cancelled)`
    /// (asyncio raises `KeyboardInterrupt`), and the default disposition
    /// is back at once: a second Ctrl-C ends the process as usual.
    /// Applies only when `SIGINT` has its default disposition (nobody
    /// else handles it), as asyncio takes it only from Python's default
    /// handler; the disposition is restored when the task is done.
    pub fn cancel_on_ctrl_c(mut self, on: bool) -> RunOptions {
        self.cancel_on_ctrl_c = on;
        self
    }
}

/// [`run`] with [`RunOptions`]: one run of a [`Runner`] built as the
/// options say, then its close.
///
/// # Errors
///
/// As [`run`]; [`Error::Cancelled`] if Ctrl-C cancelled the main task
/// (with [`RunOptions::cancel_on_ctrl_c`]).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use evloop::RunOptions;
/// // A long job that Ctrl-C interrupts cleanly.
/// let out = evloop::run_with(RunOptions::new().cancel_on_ctrl_c(true), async {
///     evloop::sleep(Duration::from_secs(3600)).await;
/// });
/// if let Err(evloop::Error::Cancelled) = out {
///     eprintln!("interrupted");
/// }
/// ```
#[track_caller]
pub fn run_with<F>(options: RunOptions, fut: F) -> Result<F::Output>
where
    F: std::future::Future + 'static,
{
    let runner = Runner::builder().cancel_on_ctrl_c(options.cancel_on_ctrl_c).build();
    let result = runner.run(fut);
    let closed = runner.close();
    let out = result?;
    closed?;
    Ok(out)
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

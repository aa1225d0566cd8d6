//! `evloop._evloop`: evloop's Rust [`EventLoop`] as the engine of a Python
//! asyncio loop (the Python class lives in `evloop/_loop.py`).
//!
//! Invariant: every item the core runs is an asyncio `Handle` (or
//! `TimerHandle`) held as a `Py<PyAny>`; running it means calling its
//! `_run()` with the GIL held, exactly as asyncio's `_run_once` does. An
//! exception `_run()` lets through (only `KeyboardInterrupt`, `SystemExit`,
//! or a failing exception handler) is kept and interrupts the core's pass
//! (`EventLoop::interrupt`: the handles not yet run stay queued, in front),
//! and `run_until_stopped` raises it; nothing else escapes into the core,
//! so no Rust panic ever crosses a callback. Callbacks run with the GIL
//! held; the core's wait hook releases it around the blocking OS wait
//! only, and checks for signals after every poll.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{BlockingWait, EventLoop, RemoteLoop, TimerHandle, WaitDone, WaitHook};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit, intern};

mod virtual_time;

use virtual_time::VirtualTime;

/// What the callbacks of one `run_until_stopped` share with it.
#[derive(Default)]
struct RunState {
    /// The exception that must end the run (asyncio lets `KeyboardInterrupt`
    /// and `SystemExit` out of `_run_once`, the rest of the ready queue
    /// staying put).
    pending: RefCell<Option<PyErr>>,
    /// Debug mode: run handles through the Python loop's timing wrapper.
    debug: Cell<bool>,
    /// The handle of each fd watcher, by fd and direction. Kept here, not
    /// in the core's closures, so that the GC sees them (`__traverse__`):
    /// the self-pipe reader alone would otherwise keep every unclosed loop
    /// alive in an invisible cycle.
    watchers: RefCell<HashMap<(RawFd, Direction), Py<PyAny>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Read,
    Write,
}

thread_local! {
    /// The run state of the loop running on this thread. The core runs
    /// callbacks only inside `run_until_stopped`, which sets it.
    static ACTIVE: RefCell<Option<Rc<RunState>>> = const { RefCell::new(None) };
}

fn active() -> Option<Rc<RunState>> {
    ACTIVE.with(|a| a.borrow().clone())
}

/// How long a busy loop goes without polling for I/O (the core's
/// `busy_poll_interval`): a `sleep(0)` chain or a burst of `call_soon`
/// then pays one `epoll_wait(0)` per 250 µs instead of one per pass, and
/// an fd that becomes ready meanwhile waits at most that plus one pass.
const BUSY_POLL_INTERVAL: Duration = Duration::from_micros(250);

/// Keeps an exception that must end the run, and ends the core's pass.
fn interrupt_with(state: &RunState, e: PyErr, lp: Option<&EventLoop>) {
    *state.pending.borrow_mut() = Some(e);
    match lp {
        Some(lp) => lp.interrupt(),
        None => {
            if let Ok(lp) = evloop::get_running_loop() {
                lp.interrupt();
            }
        }
    }
}

/// The core's wait hook: the GIL is released for the blocking OS wait
/// alone, and Python's signal handlers run after every poll (an `EINTR`
/// ends the wait at once), so Ctrl-C raises `KeyboardInterrupt` out of
/// `run_forever` before another callback runs.
struct GilWaitHook {
    state: Rc<RunState>,
}

impl WaitHook for GilWaitHook {
    fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
        // Everything the wait touches is `Send`: no `unsafe` needed to let
        // other Python threads run meanwhile.
        Python::attach(|py| py.detach(move || wait.wait()))
    }

    fn after_poll(&self, lp: &EventLoop) {
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            interrupt_with(&self.state, e, Some(lp));
        }
    }
}

/// Runs one asyncio handle, as asyncio's `_run_once` does: skipped if
/// cancelled, `_run()` otherwise (which reports ordinary exceptions to the
/// loop's exception handler itself). An exception it lets through ends the
/// pass. Returns false if no run is active.
fn run_handle(py: Python<'_>, handle: &Py<PyAny>) -> bool {
    let Some(state) = active() else { return false };
    let h = handle.bind(py);
    let outcome = match h.getattr(intern!(py, "_cancelled")).and_then(|c| c.is_truthy()) {
        Ok(true) => return true,
        Ok(false) if state.debug.get() => h
            .getattr(intern!(py, "_loop"))
            .and_then(|lp| lp.call_method1(intern!(py, "_run_handle_debug"), (h,)))
            .map(drop),
        Ok(false) => h.call_method0(intern!(py, "_run")).map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        // KeyboardInterrupt, SystemExit or a failing exception handler:
        // the core stops after this handle, the rest staying queued.
        interrupt_with(&state, e, None);
    }
    true
}

/// A one-shot ready-queue item: `call_soon`, timers, threadsafe calls.
fn run_once_handle(handle: Py<PyAny>) {
    Python::attach(|py| run_handle(py, &handle));
}

fn core_error(e: evloop::Error) -> PyErr {
    match e.raw_os_error() {
        Some(errno) => std::io::Error::from_raw_os_error(errno).into(),
        None => match e {
            evloop::Error::Io(inner) => PyOSError::new_err(inner.to_string()),
            evloop::Error::Closed => PyRuntimeError::new_err("Event loop is closed"),
            other => PyRuntimeError::new_err(other.to_string()),
        },
    }
}

/// The native half of `evloop.EventLoop`: scheduling, fd watchers, the
/// clock and the run loop, on evloop's core. Used only from the thread
/// that created it (`unsendable`: PyO3 refuses other threads, and if the
/// last reference dies on another thread it reports an unraisable
/// `RuntimeError` and leaks the loop instead of aborting).
// CORE-NEED(foreign-drop): a Send owner would free the loop's fds when the
// GC drops it on another thread; CORE-NEEDS.md §7.
#[pyclass(unsendable, module = "evloop._evloop")]
struct Core {
    lp: EventLoop,
    state: Rc<RunState>,
    /// The loop's clock in Python's terms: `time()` is `epoch_secs` plus
    /// the core time elapsed since `epoch`.
    epoch: Instant,
    epoch_secs: f64,
    /// Set for a virtual-time loop (manual clock).
    virtual_time: Option<VirtualTime>,
}

#[pymethods]
impl Core {
    /// `Core()` for a real-time loop; `Core(virtual_time=True)` for one
    /// on the manual clock, which jumps to the next timer once it has been
    /// idle (no callback ready, no I/O) for `autojump_threshold` real
    /// seconds (`None`: never jumps; use `advance_time`).
    #[new]
    #[pyo3(signature = (*, virtual_time = false, autojump_threshold = Some(0.0)))]
    fn new(py: Python<'_>, virtual_time: bool, autojump_threshold: Option<f64>) -> PyResult<Core> {
        let autojump_after = autojump_threshold
            .map(|secs| {
                Duration::try_from_secs_f64(secs)
                    .map_err(|_| PyValueError::new_err("autojump_threshold must be a non-negative number"))
            })
            .transpose()?;
        let state = Rc::new(RunState::default());
        let mut builder = EventLoop::builder()
            .busy_poll_interval(BUSY_POLL_INTERVAL)
            .wait_hook(GilWaitHook { state: state.clone() });
        if virtual_time {
            builder = match autojump_after {
                Some(threshold) => builder.autojump(threshold),
                None => builder.manual_clock(),
            };
        }
        let lp = builder.build().map_err(core_error)?;
        let virtual_time = virtual_time.then(VirtualTime::default);
        // Both clocks are CLOCK_MONOTONIC on Linux; reading them back to
        // back makes `time()` agree with `time.monotonic()` to a
        // microsecond, so code mixing the two stays sane.
        let epoch = lp.time();
        let epoch_secs: f64 = py.import("time")?.call_method0("monotonic")?.extract()?;
        Ok(Core { lp, state, epoch, epoch_secs, virtual_time })
    }

    /// `loop.time()`: seconds on the loop's monotonic clock.
    fn time(&self) -> f64 {
        self.epoch_secs + self.lp.time().saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Queues an asyncio `Handle` (asyncio's `_ready.append`).
    fn call_soon(&self, handle: Py<PyAny>) -> PyResult<()> {
        if self.lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        // CORE-NEED(one-allocation): the core wraps this closure in its own
        // cell next to the Python handle; see python/CORE-NEEDS.md §5.
        self.lp.call_soon(move || run_once_handle(handle));
        Ok(())
    }

    /// Schedules an asyncio `TimerHandle` for loop time `when`; returns
    /// the native timer, whose `cancel()` frees it at once.
    fn call_at(&self, when: f64, handle: Py<PyAny>) -> PyResult<NativeTimer> {
        if self.lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        let at = self.instant_of(when);
        let timer = self.lp.call_at(at, move || run_once_handle(handle));
        Ok(NativeTimer { timer })
    }

    /// Watches `fd` for reading: `handle` (an asyncio `Handle`) runs in
    /// every pass while the fd is readable. Replaces an existing reader.
    fn add_reader(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.lp.add_reader(fd, fd_callback(fd, Direction::Read)).map_err(core_error)?;
        self.set_watcher(fd, Direction::Read, Some(handle));
        Ok(())
    }

    /// Stops watching `fd` for reading; false if it was not watched.
    fn remove_reader(&self, fd: RawFd) -> bool {
        let removed = self.lp.remove_reader(fd);
        self.set_watcher(fd, Direction::Read, None);
        removed
    }

    /// As [`add_reader`](Core::add_reader), for writing.
    fn add_writer(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.lp.add_writer(fd, fd_callback(fd, Direction::Write)).map_err(core_error)?;
        self.set_watcher(fd, Direction::Write, Some(handle));
        Ok(())
    }

    /// Stops watching `fd` for writing; false if it was not watched.
    fn remove_writer(&self, fd: RawFd) -> bool {
        let removed = self.lp.remove_writer(fd);
        self.set_watcher(fd, Direction::Write, None);
        removed
    }

    /// The thread-safe door (`call_soon_threadsafe`).
    fn remote(&self) -> Remote {
        Remote { remote: self.lp.remote() }
    }

    fn set_debug(&self, on: bool) {
        self.state.debug.set(on);
    }

    /// Asks the core's run to end after the current pass (asyncio's
    /// `stop()`: a `stop()` made before `run_until_stopped` still gets one
    /// pass with a zero timeout).
    fn stop(&self) {
        self.lp.stop();
    }

    /// Runs the core (`run_forever`, or `run_until_idle` in a virtual-time
    /// loop's idle mode) until `stop()`, or until a callback or a signal
    /// handler lets an exception through, which it raises.
    ///
    /// In a child of `fork()` a new loop runs normally; a loop made before
    /// the fork raises RuntimeError (the core's `Error::Forked`).
    fn run_until_stopped(&self, py: Python<'_>, pyloop: &Bound<'_, PyAny>) -> PyResult<()> {
        let previous = ACTIVE.with(|a| a.replace(Some(self.state.clone())));
        let outcome = self.run_passes(py, pyloop);
        ACTIVE.with(|a| *a.borrow_mut() = previous);
        outcome
    }

    /// Closes the core: pending callbacks and timers are dropped unrun, fd
    /// watchers forgotten, later threadsafe calls refused.
    fn close(&self) -> PyResult<()> {
        self.lp.close().map_err(core_error)?;
        let watchers = std::mem::take(&mut *self.state.watchers.borrow_mut());
        drop(watchers); // after the borrow: decrefs may run Python code
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.lp.is_closed()
    }

    /// Number of callbacks queued to run (for tests and `repr`).
    fn ready_count(&self) -> usize {
        self.lp.stats().ready
    }

    /// Number of live timers (for tests and `repr`).
    fn timer_count(&self) -> usize {
        self.lp.stats().timers
    }

    // ----- virtual time -----

    /// Moves a virtual-time loop's clock forward by `seconds`; timers that
    /// become due run on the next pass.
    fn advance_time(&self, seconds: f64) -> PyResult<()> {
        if self.virtual_time.is_none() {
            return Err(PyRuntimeError::new_err("advance_time needs a virtual-time loop"));
        }
        let d = Duration::try_from_secs_f64(seconds)
            .map_err(|_| PyValueError::new_err("advance_time needs a non-negative number of seconds"))?;
        self.lp.advance_time(d);
        Ok(())
    }

    /// While on, a virtual-time loop's run ends (with `_stopping` set)
    /// at the first pass that runs nothing, instead of jumping or waiting.
    fn set_idle_mode(&self, on: bool) -> PyResult<()> {
        match &self.virtual_time {
            Some(vt) => {
                vt.idle_mode.set(on);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("run_until_idle needs a virtual-time loop")),
        }
    }

    fn is_virtual_time(&self) -> bool {
        self.virtual_time.is_some()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // CORE-NEED(gc-visit): the fd watchers' handles are visited; the
        // handles of pending callbacks and timers sit inside the core's
        // closures, out of the GC's reach (`close()` frees them).
        // CORE-NEEDS.md §8.
        if let Ok(watchers) = self.state.watchers.try_borrow() {
            for handle in watchers.values() {
                visit.call(handle)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let watchers = self.state.watchers.try_borrow_mut().map(|mut w| std::mem::take(&mut *w));
        drop(watchers);
    }
}

impl Core {
    fn set_watcher(&self, fd: RawFd, direction: Direction, handle: Option<Py<PyAny>>) {
        let old = {
            let mut watchers = self.state.watchers.borrow_mut();
            match handle {
                Some(h) => watchers.insert((fd, direction), h),
                None => watchers.remove(&(fd, direction)),
            }
        };
        drop(old); // after the borrow: a decref may run Python code
    }

    /// Loop time in seconds to a core `Instant`, to the nearest
    /// nanosecond; NaN and the far future become "a year from now", the
    /// far past the epoch (due now). `time()` read when the timer runs may
    /// then be below `when` by a nanosecond at most, as on asyncio's own
    /// loop, which runs timers up to its clock resolution (1 ns) early.
    fn instant_of(&self, when: f64) -> Instant {
        let far = Duration::from_secs(365 * 86_400);
        let nanos = ((when - self.epoch_secs) * 1e9).round();
        if nanos.is_nan() || nanos >= far.as_nanos() as f64 {
            self.epoch + far
        } else if nanos >= 0.0 {
            self.epoch + Duration::from_nanos(nanos as u64)
        } else {
            let back = Duration::from_nanos((-nanos).min(far.as_nanos() as f64) as u64);
            self.epoch.checked_sub(back).unwrap_or(self.epoch)
        }
    }

    fn run_passes(&self, py: Python<'_>, pyloop: &Bound<'_, PyAny>) -> PyResult<()> {
        let idle_mode = self.virtual_time.as_ref().is_some_and(|vt| vt.idle_mode.get());
        let outcome = if idle_mode { self.lp.run_until_idle() } else { self.lp.run_forever() };
        let pending = self.state.pending.borrow_mut().take();
        match (outcome, pending) {
            // What a callback or a signal handler let through.
            (_, Some(e)) => Err(e),
            (Ok(()), None) => {
                if idle_mode {
                    // asyncio's run_forever ends on `_stopping`.
                    pyloop.setattr(intern!(py, "_stopping"), true)?;
                }
                Ok(())
            }
            (Err(e), None) => Err(core_error(e)),
        }
    }
}

/// An fd callback: runs the watcher's current handle in every pass while
/// the fd is ready.
fn fd_callback(fd: RawFd, direction: Direction) -> impl FnMut() + 'static {
    move || {
        Python::attach(|py| {
            let handle = active()
                .and_then(|state| state.watchers.borrow().get(&(fd, direction)).map(|h| h.clone_ref(py)));
            if let Some(handle) = handle {
                run_handle(py, &handle);
            }
        })
    }
}

/// The core's half of an asyncio `TimerHandle`.
#[pyclass(unsendable, module = "evloop._evloop")]
struct NativeTimer {
    timer: TimerHandle,
}

#[pymethods]
impl NativeTimer {
    /// Cancels the core timer; its closure (and the Python handle) is
    /// freed now.
    fn cancel(&self) {
        self.timer.cancel();
    }
}

/// `call_soon_threadsafe` from any thread.
#[pyclass(frozen, module = "evloop._evloop")]
struct Remote {
    remote: RemoteLoop,
}

#[pymethods]
impl Remote {
    /// Queues an asyncio `Handle` from any thread and wakes the loop.
    ///
    /// Raises `RuntimeError` if the loop is closed.
    fn call_soon_threadsafe(&self, handle: Py<PyAny>) -> PyResult<()> {
        self.remote.call_soon_threadsafe(move || run_once_handle(handle)).map_err(core_error)
    }
}

#[pymodule]
fn _evloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<NativeTimer>()?;
    m.add_class::<Remote>()?;
    Ok(())
}

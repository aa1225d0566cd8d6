//! `evloop._evloop`: evloop's Rust [`EventLoop`] as the engine of a Python
//! asyncio loop (the Python class lives in `evloop/_loop.py`).
//!
//! Invariant: every item the core runs is a Python handle queued as the
//! core's entry itself (`handle.rs`: a native `Handle`/`TimerHandle`, or
//! an asyncio `Handle` of asyncio's own making); running it means its
//! `_run()` with the GIL held, exactly as asyncio's `_run_once` does. An
//! exception `_run()` lets through (only `KeyboardInterrupt`, `SystemExit`,
//! or a failing exception handler) ends `run_until_stopped` with that
//! exception; nothing else escapes into the core, so no Rust panic ever
//! crosses a callback. The core is reached only on the thread that made
//! it (`LoopOwner`); elsewhere every method raises asyncio's
//! `RuntimeError`, and a GC drop there leaks the loop instead of touching it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{EventLoop, LoopOwner, RemoteLoop, TimerKey};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit, intern};

mod gil;
mod handle;
mod loop_base;
mod virtual_time;

use handle::{AsyncioEntry, Handle, HandleEntry, PyEntry, TimerEntry, TimerHandle};

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

/// Runs one fd watcher's handle (native or asyncio's), as asyncio's
/// `_run_once` does: skipped if cancelled, `_run()` otherwise (which
/// reports ordinary exceptions to the loop's exception handler itself).
fn run_handle(py: Python<'_>, handle: &Py<PyAny>) {
    let Some(state) = active() else { return };
    if state.pending.borrow().is_some() {
        return;
    }
    let h = handle.bind(py);
    let outcome = if state.debug.get() {
        h.getattr(intern!(py, "_loop"))
            .and_then(|lp| lp.call_method1(intern!(py, "_run_handle_debug"), (h,)))
            .map(drop)
    } else if let Ok(native) = h.cast::<Handle>() {
        Handle::run(native)
    } else {
        match h.getattr(intern!(py, "_cancelled")).and_then(|c| c.is_truthy()) {
            Ok(true) => Ok(()),
            Ok(false) => h.call_method0(intern!(py, "_run")).map(drop),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = outcome {
        *state.pending.borrow_mut() = Some(e);
    }
}

/// Runs one queued entry (`handle.rs`): in debug mode through the Python
/// loop's timing wrapper, else natively.
pub(crate) fn run_entry<E: PyEntry>(entry: E) {
    Python::attach(|py| {
        let Some(state) = active() else { return };
        if state.pending.borrow().is_some() {
            // CORE-NEED(stop-mid-pass): the core cannot end a pass early,
            // so an entry that comes after a KeyboardInterrupt in the same
            // pass puts itself back on the queue instead of running. It
            // lands behind what this pass scheduled; asyncio keeps it in
            // front. See python/CORE-NEEDS.md §2.
            if let Ok(lp) = evloop::get_running_loop() {
                lp.call_soon_entry(entry);
            }
            return;
        }
        entry.starting(py);
        let outcome = if state.debug.get() {
            let h = entry.handle(py);
            h.getattr(intern!(py, "_loop"))
                .and_then(|lp| lp.call_method1(intern!(py, "_run_handle_debug"), (h,)))
                .map(drop)
        } else {
            entry.run_handle(py)
        };
        if let Err(e) = outcome {
            *state.pending.borrow_mut() = Some(e);
        }
        drop(entry); // with the GIL: the last reference may go here
    });
}

/// asyncio's message for a loop used from a thread other than its own.
const OTHER_THREAD: &str = "Non-thread-safe operation invoked on an event loop other than the current one";

fn no_pyloop() -> PyErr {
    PyRuntimeError::new_err("the core has no Python loop (set_loop)")
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

/// What a core keeps on its loop's thread, beside the loop.
struct CoreState {
    state: Rc<RunState>,
    /// Set for a virtual-time loop (manual clock).
    virtual_time: Option<VirtualTime>,
    /// The Python loop (`evloop.EventLoop`) whose engine this is: the
    /// `_loop` of the handles it makes. Visited by the GC.
    pyloop: RefCell<Option<Py<PyAny>>>,
}

/// The core's loop, reached only on its own thread: every method of
/// [`Core`] calls [`OwnedLoop::check`] first, so the `Deref` (which panics
/// elsewhere) is only ever used where it succeeds.
struct OwnedLoop(LoopOwner<CoreState>);

impl OwnedLoop {
    /// The loop, or asyncio's `RuntimeError` off its thread.
    fn check(&self) -> PyResult<&EventLoop> {
        self.0.get().ok_or_else(|| PyRuntimeError::new_err(OTHER_THREAD))
    }

    fn core_state(&self) -> &CoreState {
        self.0.state().expect("checked: on the loop's thread")
    }
}

impl Deref for OwnedLoop {
    type Target = EventLoop;
    fn deref(&self) -> &EventLoop {
        self.0.get().expect("checked: on the loop's thread")
    }
}

/// The native half of `evloop.EventLoop`: scheduling, fd watchers, the
/// clock and the run loop, on evloop's core. Sendable: used from another
/// thread it raises asyncio's `RuntimeError`, and dropped there (by the
/// GC) it closes the cross-thread door and leaks the rest, never
/// touching the loop off its thread.
#[pyclass(frozen, module = "evloop._evloop")]
struct Core {
    lp: OwnedLoop,
    /// The loop's clock in Python's terms: `time()` is `epoch_secs` plus
    /// the core time elapsed since `epoch`.
    epoch: Instant,
    epoch_secs: f64,
    is_virtual: bool,
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
        let builder = if virtual_time { EventLoop::builder().manual_clock() } else { EventLoop::builder() };
        let lp = builder.build().map_err(core_error)?;
        let virtual_time = virtual_time.then(|| VirtualTime::new(autojump_after));
        // Both clocks are CLOCK_MONOTONIC on Linux; reading them back to
        // back makes `time()` agree with `time.monotonic()` to a
        // microsecond, so code mixing the two stays sane.
        let epoch = lp.time();
        let epoch_secs: f64 = py.import("time")?.call_method0("monotonic")?.extract()?;
        let is_virtual = virtual_time.is_some();
        let state =
            CoreState { state: Rc::new(RunState::default()), virtual_time, pyloop: RefCell::new(None) };
        Ok(Core { lp: OwnedLoop(LoopOwner::with_state(lp, state)), epoch, epoch_secs, is_virtual })
    }

    /// Names the Python loop this core drives (the `_loop` of its handles).
    fn set_loop(&self, pyloop: Py<PyAny>) -> PyResult<()> {
        self.lp.check()?;
        let old = self.lp.core_state().pyloop.replace(Some(pyloop));
        drop(old);
        Ok(())
    }

    /// `loop.time()`: seconds on the loop's monotonic clock. A real-time
    /// loop answers from any thread, as asyncio's does.
    fn time(&self) -> PyResult<f64> {
        let now = match self.lp.0.get() {
            Some(lp) => lp.time(),
            None if !self.is_virtual => Instant::now(),
            None => return Err(PyRuntimeError::new_err(OTHER_THREAD)),
        };
        Ok(self.epoch_secs + now.saturating_duration_since(self.epoch).as_secs_f64())
    }

    /// asyncio's `call_soon`: a native `Handle`, itself the queued entry.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        // One thread check for the loop and its state: this is the
        // hottest call of the binding.
        let (lp, cs) = self.lp.0.get_with_state().ok_or_else(|| PyRuntimeError::new_err(OTHER_THREAD))?;
        if lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        let pyloop = match &*cs.pyloop.borrow() {
            Some(pyloop) => pyloop.clone_ref(py),
            None => return Err(no_pyloop()),
        };
        let handle = handle::untracked(Py::new(
            py,
            Handle::new(py, callback, args.clone().unbind(), pyloop, context)?,
        )?);
        lp.call_soon_entry(HandleEntry(handle.clone_ref(py)));
        Ok(handle)
    }

    /// Queues an asyncio `Handle` asyncio made itself (`_add_callback`).
    fn call_handle(&self, handle: Py<PyAny>) -> PyResult<()> {
        self.open_loop()?.call_soon_entry(AsyncioEntry(handle));
        Ok(())
    }

    /// asyncio's `call_later`.
    #[pyo3(signature = (delay, callback, *args, context = None))]
    fn call_later(
        slf: &Bound<'_, Core>,
        delay: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let delay: f64 = delay.extract()?;
        let when = slf.get().time()? + delay;
        Core::schedule_at(slf, when, callback, args, context)
    }

    /// asyncio's `call_at`: a native `TimerHandle`, itself the core's
    /// timer entry; its `cancel()` removes the timer at once.
    #[pyo3(signature = (when, callback, *args, context = None))]
    fn call_at(
        slf: &Bound<'_, Core>,
        when: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        Core::schedule_at(slf, when.extract()?, callback, args, context)
    }

    /// Watches `fd` for reading: `handle` (an asyncio `Handle`) runs in
    /// every pass while the fd is readable. Replaces an existing reader.
    fn add_reader(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.lp.check()?;
        self.lp.add_reader(fd, fd_callback(fd, Direction::Read)).map_err(core_error)?;
        self.set_watcher(fd, Direction::Read, Some(handle));
        Ok(())
    }

    /// Stops watching `fd` for reading; false if it was not watched.
    fn remove_reader(&self, fd: RawFd) -> PyResult<bool> {
        self.lp.check()?;
        let removed = self.lp.remove_reader(fd);
        self.set_watcher(fd, Direction::Read, None);
        Ok(removed)
    }

    /// As [`add_reader`](Core::add_reader), for writing.
    fn add_writer(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.lp.check()?;
        self.lp.add_writer(fd, fd_callback(fd, Direction::Write)).map_err(core_error)?;
        self.set_watcher(fd, Direction::Write, Some(handle));
        Ok(())
    }

    /// Stops watching `fd` for writing; false if it was not watched.
    fn remove_writer(&self, fd: RawFd) -> PyResult<bool> {
        self.lp.check()?;
        let removed = self.lp.remove_writer(fd);
        self.set_watcher(fd, Direction::Write, None);
        Ok(removed)
    }

    /// The thread-safe door (`call_soon_threadsafe`).
    fn remote(&self) -> Remote {
        Remote { remote: self.lp.0.remote() }
    }

    fn set_debug(&self, on: bool) -> PyResult<()> {
        self.lp.check()?;
        self.state().debug.set(on);
        Ok(())
    }

    /// Runs passes of the loop until `pyloop._stopping` is true (checked
    /// after each pass, so `stop()` finishes the current pass, and a
    /// `stop()` made before this call still gets one pass with a zero
    /// timeout), or until a callback lets an exception through.
    ///
    /// CORE-NEED(after-fork): in a child forked inside a running loop the
    /// core still marks that loop as running on this thread, so this fails
    /// with RuntimeError; CORE-NEEDS.md §4.
    fn run_until_stopped(&self, py: Python<'_>, pyloop: &Bound<'_, PyAny>) -> PyResult<()> {
        self.lp.check()?;
        let previous = ACTIVE.with(|a| a.replace(Some(self.state().clone())));
        let outcome = self.run_passes(py, pyloop);
        ACTIVE.with(|a| *a.borrow_mut() = previous);
        outcome
    }

    /// Closes the core: pending callbacks and timers are dropped unrun, fd
    /// watchers forgotten, later threadsafe calls refused.
    fn close(&self) -> PyResult<()> {
        self.lp.check()?;
        self.lp.close().map_err(core_error)?;
        if let Some(vt) = self.virtual_time() {
            vt.clear();
        }
        let watchers = std::mem::take(&mut *self.state().watchers.borrow_mut());
        drop(watchers); // after the borrow: decrefs may run Python code
        Ok(())
    }

    fn is_closed(&self) -> PyResult<bool> {
        Ok(self.lp.check()?.is_closed())
    }

    /// Number of callbacks queued to run (for tests and `repr`).
    fn ready_count(&self) -> PyResult<usize> {
        Ok(self.lp.check()?.stats().ready)
    }

    /// Number of live timers (for tests and `repr`).
    fn timer_count(&self) -> PyResult<usize> {
        Ok(self.lp.check()?.stats().timers)
    }

    // ----- virtual time -----

    /// Moves a virtual-time loop's clock forward by `seconds`; timers that
    /// become due run on the next pass.
    fn advance_time(&self, seconds: f64) -> PyResult<()> {
        self.lp.check()?;
        if self.virtual_time().is_none() {
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
        self.lp.check()?;
        match self.virtual_time() {
            Some(vt) => {
                vt.idle_mode.set(on);
                Ok(())
            }
            None => Err(PyRuntimeError::new_err("run_until_idle needs a virtual-time loop")),
        }
    }

    fn is_virtual_time(&self) -> bool {
        self.is_virtual
    }

    /// Whether the calling thread is the loop's own (the only one that
    /// may use it; the GC may finalize the Python loop anywhere).
    fn is_owner_thread(&self) -> bool {
        self.lp.0.is_owner_thread()
    }

    /// Visits every Python object the core holds: the Python loop, the fd
    /// watchers' handles, and every queued handle and timer (the core's
    /// entries), so that a loop only its own callbacks refer to is
    /// collected. On another thread the loop cannot be read: nothing is
    /// visited, and the GC then sees those objects as referenced from
    /// outside (it keeps them; it never frees too much).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let (Some(lp), Some(cs)) = (self.lp.0.get(), self.lp.0.state()) else { return Ok(()) };
        if let Ok(pyloop) = cs.pyloop.try_borrow()
            && let Some(pyloop) = &*pyloop
        {
            visit.call(pyloop)?;
        }
        if let Ok(watchers) = cs.state.watchers.try_borrow() {
            for handle in watchers.values() {
                visit.call(handle)?;
            }
        }
        // Handles are not tracked by the GC themselves: one that only the
        // core refers to is part of the core, and its contents are
        // visited here; one referred to from elsewhere too is reachable
        // from outside anyway, and is skipped.
        let mut outcome = Ok(());
        let mut visit_one = |obj: &Py<PyAny>| {
            if outcome.is_ok() {
                outcome = visit.call(obj);
            }
        };
        lp.visit_entries(|e: &HandleEntry| {
            if handle::holds_the_only_reference(e.0.as_any()) {
                e.0.get().visit_fields(&mut visit_one);
            }
        });
        lp.visit_entries(|e: &TimerEntry| {
            if handle::holds_the_only_reference(e.handle.as_any()) {
                let timer = e.handle.get();
                timer.visit_core(&mut visit_one);
                handle::timer_base(&e.handle).get().visit_fields(&mut visit_one);
            }
        });
        lp.visit_entries(|e: &AsyncioEntry| visit_one(&e.0));
        outcome
    }

    /// Breaks the cycles `__traverse__` reported: drops every queued
    /// handle and timer, the fd watchers' handles and the Python loop.
    fn __clear__(&self) {
        let (Some(lp), Some(cs)) = (self.lp.0.get(), self.lp.0.state()) else { return };
        lp.clear_entries();
        let watchers = cs.state.watchers.try_borrow_mut().map(|mut w| std::mem::take(&mut *w));
        drop(watchers);
        let pyloop = cs.pyloop.try_borrow_mut().map(|mut p| p.take());
        drop(pyloop);
    }
}

impl Core {
    fn state(&self) -> &Rc<RunState> {
        &self.lp.core_state().state
    }

    fn virtual_time(&self) -> Option<&VirtualTime> {
        self.lp.core_state().virtual_time.as_ref()
    }

    fn pyloop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let pyloop = self.lp.core_state().pyloop.borrow();
        match &*pyloop {
            Some(lp) => Ok(lp.clone_ref(py)),
            None => Err(no_pyloop()),
        }
    }

    /// The loop, on its thread and open; asyncio's errors otherwise.
    fn open_loop(&self) -> PyResult<&EventLoop> {
        let lp = self.lp.check()?;
        if lp.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(lp)
    }

    fn schedule_at(
        slf: &Bound<'_, Core>,
        when: f64,
        callback: Py<PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let core = slf.get();
        let lp = core.open_loop()?;
        let handle = Handle::new(py, callback, args.clone().unbind(), core.pyloop(py)?, context)?;
        let timer = handle::untracked(Py::new(py, TimerHandle::new(handle, when))?);
        let at = core.instant_of(when);
        let live = core.virtual_time().map(|vt| vt.push(at));
        let key = lp.call_at_entry(at, TimerEntry { handle: timer.clone_ref(py), live });
        timer.get().set_timer(key, slf.clone().unbind());
        Ok(timer)
    }

    /// Cancels a timer from its `TimerHandle`; off the loop's thread it
    /// stays queued, cancelled, and is skipped when due.
    pub(crate) fn cancel_timer(&self, key: TimerKey) {
        if let Some(lp) = self.lp.0.get() {
            lp.cancel_timer(key);
        }
    }

    fn set_watcher(&self, fd: RawFd, direction: Direction, handle: Option<Py<PyAny>>) {
        let old = {
            let mut watchers = self.state().watchers.borrow_mut();
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
        if let Some(vt) = self.virtual_time() {
            return self.run_virtual_passes(py, pyloop, vt);
        }
        let stopping_attr = intern!(py, "_stopping");
        loop {
            let stopping = pyloop.getattr(stopping_attr)?.is_truthy()?;
            let outcome = if stopping || self.lp.stats().ready > 0 {
                // Nothing will block: keep the GIL for the callbacks.
                // CORE-NEED(busy-poll): this pass still pays epoll_wait(0);
                // CORE-NEEDS.md §6.
                self.lp.run_once(Some(Duration::ZERO))
            } else {
                // CORE-NEED(poll-hook): the core offers no hook around its
                // blocking wait, so the GIL is released for the whole pass
                // and each callback takes it back. See CORE-NEEDS.md §1.
                gil::without_gil(py, &self.lp, |lp| lp.run_once(None))
            };
            outcome.map_err(core_error)?;
            // An interrupted wait returns here: run Python's signal
            // handlers (KeyboardInterrupt, asyncio.Runner's SIGINT handler).
            py.check_signals()?;
            if let Some(e) = self.state().pending.borrow_mut().take() {
                return Err(e);
            }
            if stopping || pyloop.getattr(stopping_attr)?.is_truthy()? {
                return Ok(());
            }
        }
    }
}

// ===== the virtual-time loop =====

impl Core {
    /// The passes of a virtual-time loop: never wait for a timer; when a
    /// pass ran nothing, end (idle mode), or wait for I/O up to the
    /// autojump threshold and then jump the clock to the next timer.
    fn run_virtual_passes(
        &self,
        py: Python<'_>,
        pyloop: &Bound<'_, PyAny>,
        vt: &VirtualTime,
    ) -> PyResult<()> {
        let stopping_attr = intern!(py, "_stopping");
        loop {
            let stopping = pyloop.getattr(stopping_attr)?.is_truthy()?;
            let before = self.lp.stats().callbacks_run;
            self.lp.run_once(Some(Duration::ZERO)).map_err(core_error)?;
            self.after_pass(py)?;
            if stopping || pyloop.getattr(stopping_attr)?.is_truthy()? {
                return Ok(());
            }
            let stats = self.lp.stats();
            if stats.callbacks_run != before || stats.ready > 0 {
                continue;
            }
            if vt.idle_mode.get() {
                pyloop.setattr(stopping_attr, true)?;
                return Ok(());
            }
            let next = vt.next_live();
            match (vt.autojump_after, next) {
                (Some(after), Some(when)) => {
                    if !after.is_zero() {
                        let ran = self.lp.stats().callbacks_run;
                        gil::without_gil(py, &self.lp, |lp| lp.run_once(Some(after))).map_err(core_error)?;
                        self.after_pass(py)?;
                        if self.lp.stats().callbacks_run != ran {
                            continue;
                        }
                    }
                    let now = self.lp.time();
                    self.lp.advance_time(when.saturating_duration_since(now));
                }
                // No timer to jump to (or no jumping): wait for I/O or
                // another thread; the manual clock never wakes the wait.
                _ => {
                    gil::without_gil(py, &self.lp, |lp| lp.run_once(None)).map_err(core_error)?;
                    self.after_pass(py)?;
                }
            }
        }
    }

    /// After a pass: Python's signal handlers, then what a callback let
    /// through.
    fn after_pass(&self, py: Python<'_>) -> PyResult<()> {
        py.check_signals()?;
        match self.state().pending.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
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

/// `call_soon_threadsafe` from any thread.
#[pyclass(frozen, module = "evloop._evloop")]
struct Remote {
    remote: RemoteLoop,
}

#[pymethods]
impl Remote {
    /// asyncio's `call_soon_threadsafe` for the Python loop `pyloop`,
    /// from any thread: a native `Handle`, queued and the loop woken.
    ///
    /// Raises `RuntimeError` if the loop is closed.
    #[pyo3(signature = (pyloop, callback, args, context = None))]
    fn call_soon_threadsafe(
        &self,
        py: Python<'_>,
        pyloop: Py<PyAny>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let handle = handle::untracked(Py::new(py, Handle::new(py, callback, args, pyloop, context)?)?);
        let entry = HandleEntry(handle.clone_ref(py));
        self.remote.call_soon_threadsafe(move || run_entry(entry)).map_err(core_error)?;
        Ok(handle)
    }
}

#[pymodule]
fn _evloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    m.add_class::<Remote>()?;
    m.add_class::<loop_base::LoopBase>()?;
    Ok(())
}

//! `evloop._evloop`: evloop's Rust [`EventLoop`] as the engine of a Python
//! asyncio loop (the Python class lives in `evloop/_loop.py`).
//!
//! Invariant: every item the core runs is a Python handle queued as the
//! core's entry itself (`handle.rs`: a native `Handle`/`TimerHandle`, or
//! an asyncio `Handle` of asyncio's own making); running it means its
//! `_run()` with the GIL held, exactly as asyncio's `_run_once` does. An
//! exception `_run()` lets through (only `KeyboardInterrupt`, `SystemExit`,
//! or a failing exception handler) is kept and interrupts the core's pass
//! (`EventLoop::interrupt`: the handles not yet run stay queued, in front),
//! and `run_until_stopped` raises it; nothing else escapes into the core,
//! so no Rust panic ever crosses a callback. Callbacks run with the GIL
//! held; the core's wait hook releases it around the blocking OS wait
//! only, and checks for signals after every poll. The core is reached only on the thread that made
//! it (`LoopOwner`); elsewhere every method raises asyncio's
//! `RuntimeError`, and a GC drop there leaks the loop instead of touching it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Deref;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{BlockingWait, EventLoop, LoopOwner, RemoteLoop, TimerKey, WaitDone, WaitHook};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit, intern};

mod accept;
mod connect;
mod handle;
mod loop_base;
mod pysock;
mod sock;
mod transport;
mod udp;
mod virtual_time;

use handle::{AsyncioEntry, Handle, HandleEntry, PyEntry, TimerEntry, TimerHandle};

use virtual_time::VirtualTime;

/// The hasher of the fd watchers' map: a multiply-and-rotate of the key's
/// words (as rustc's FxHash). Its keys are fd numbers the kernel hands out,
/// which no peer chooses, so SipHash's protection against chosen keys buys
/// nothing here, and its cost shows on every readiness event.
#[derive(Default, Clone, Copy)]
pub(crate) struct FdHash;

impl std::hash::BuildHasher for FdHash {
    type Hasher = FdHasher;
    fn build_hasher(&self) -> FdHasher {
        FdHasher(0)
    }
}

/// See [`FdHash`].
pub(crate) struct FdHasher(u64);

impl FdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_i32(&mut self, i: i32) {
        self.add(i as u32 as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
}

/// What the callbacks of one `run_until_stopped` share with it.
#[derive(Default)]
pub(crate) struct RunState {
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
    watchers: RefCell<HashMap<(RawFd, Direction), Watcher, FdHash>>,
    /// The buffer native `sock_recv` receives into before copying the
    /// bytes into their `bytes` object (borrowed only while no Python code
    /// runs).
    scratch: RefCell<Vec<u8>>,
    /// The number of the loop's current pass (counted by the wait hook's
    /// `before_pass`): what tells a transport that wrote twice in a pass.
    pub(crate) pass: Cell<u64>,
    /// The transports holding corked writes, sent at the end of the pass
    /// ([`transport::uncork_all`]).
    pub(crate) corked: RefCell<Vec<Py<transport::StreamTransport>>>,
}

impl RunState {
    /// Takes the pending `sock_*` operation `id` out of the watchers, if
    /// it is still the watcher of `fd` in `direction`. The caller drops
    /// it (after this borrow has ended).
    fn take_op(&self, fd: RawFd, direction: Direction, id: u64) -> Option<Watcher> {
        let mut watchers = self.watchers.borrow_mut();
        match watchers.get(&(fd, direction)) {
            Some(Watcher::Op(op)) if op.id() == id => watchers.remove(&(fd, direction)),
            _ => None,
        }
    }

    /// Puts `new` in place of the pending operation `id`, if that is
    /// still the watcher of `fd` in `direction`; returns what it replaced
    /// (for the caller to drop after this borrow).
    fn replace_op(&self, fd: RawFd, direction: Direction, id: u64, new: Watcher) -> Option<Watcher> {
        let mut watchers = self.watchers.borrow_mut();
        let slot = watchers.get_mut(&(fd, direction))?;
        match slot {
            Watcher::Op(op) if op.id() == id => Some(std::mem::replace(slot, new)),
            _ => None,
        }
    }
}

/// What runs when a watched fd is ready.
enum Watcher {
    /// An asyncio `Handle` (`add_reader`, asyncio's own transports).
    Handle(Py<PyAny>),
    /// A native `sock_*` call waiting for its socket (`sock.rs`).
    Op(Rc<sock::SockOp>),
    /// The read registration a finished `sock_*` call left for the next
    /// one on the same socket object (`sock.rs`), so that a `sock_recv`
    /// loop costs no `epoll_ctl` per call. Nobody waits: the first time
    /// the fd is reported ready with nobody waiting, the registration
    /// goes. Invisible to `remove_reader` (asyncio has no reader there).
    Idle(Py<pyo3::types::PyWeakrefReference>),
    /// A native stream transport (`transport.rs`), for reading or
    /// writing by the key's direction.
    Stream(Py<transport::StreamTransport>),
    /// A native datagram transport (`udp.rs`), reader and writer.
    Datagram(Py<udp::DatagramTransport>),
    /// A server's listener, accepted on natively (`accept.rs`).
    Accept(Rc<accept::Listening>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Read,
    Write,
}

thread_local! {
    /// The run state of the loop running on this thread. The core runs
    /// callbacks only inside `run_until_stopped`, which sets it.
    static ACTIVE: RefCell<Option<Rc<RunState>>> = const { RefCell::new(None) };
}

pub(crate) fn active() -> Option<Rc<RunState>> {
    ACTIVE.with(|a| a.borrow().clone())
}

/// Whether `state`'s loop is the one running on this thread.
pub(crate) fn is_running(state: &Rc<RunState>) -> bool {
    ACTIVE.with(|a| a.borrow().as_ref().is_some_and(|s| Rc::ptr_eq(s, state)))
}

/// Runs `f` with the GIL token and the active run state: the way into
/// Python for everything the core calls back during a pass (queued
/// entries, fd callbacks, the wait hook's `after_poll`). Outside a run (`ACTIVE` unset), `f` gets
/// `None` and a token from `Python::attach`.
///
/// The core calls back only from inside `Core.run_until_stopped`, a
/// Python method that holds the GIL from start to end but for the
/// blocking OS wait (the wait hook's `detach`), in which nothing is
/// called back; `ACTIVE` is set exactly for that method's duration, on
/// its thread. So while it is set, the code the core calls back holds
/// the GIL, and the token needs no `Python::attach` (two reads and two
/// writes of PyO3's thread-local attach count per callback).
pub(crate) fn in_pass<R>(f: impl for<'py> FnOnce(Python<'py>, Option<&Rc<RunState>>) -> R) -> R {
    match active() {
        Some(state) => {
            // SAFETY: `ACTIVE` is set on this thread, so we are inside
            // `run_until_stopped`, which holds the GIL, and not in its
            // blocking wait, which calls nothing back (see above). The
            // token does not outlive `f`.
            let py = unsafe { Python::assume_attached() };
            f(py, Some(&state))
        }
        None => Python::attach(|py| f(py, None)),
    }
}

/// How long a busy loop goes without polling for I/O (the core's
/// `busy_poll_interval`): a `sleep(0)` chain or a burst of `call_soon`
/// then pays one `epoll_wait(0)` per 250 µs instead of one per pass, and
/// an fd that becomes ready meanwhile waits at most that plus one pass.
const BUSY_POLL_INTERVAL: Duration = Duration::from_micros(250);

/// Keeps an exception that must end the run, and ends the core's pass
/// after the running callback (the rest stays queued, in front).
pub(crate) fn interrupt_with(state: &RunState, e: PyErr, lp: Option<&EventLoop>) {
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
        // other Python threads run meanwhile. With the run's token, not a
        // `Python::attach` each time.
        in_pass(|py, _| py.detach(move || wait.wait()))
    }

    /// Releasing and retaking the GIL costs more than an `epoll_wait(0)`:
    /// a loop with an fd ready keeps the GIL (other threads still get it
    /// at the interpreter's switch interval, as from any busy loop).
    fn poll_first(&self) -> bool {
        true
    }

    /// The end of the previous pass: the writes it corked go out.
    fn before_pass(&self, lp: &EventLoop) {
        let state = &self.state;
        if !state.corked.borrow().is_empty()
            && let Some(e) = in_pass(|py, _| transport::uncork_all(py, state))
        {
            interrupt_with(state, e, Some(lp));
        }
        state.pass.set(state.pass.get() + 1);
    }

    fn after_poll(&self, lp: &EventLoop) {
        // Called in every pass (a busy one too, whose poll is skipped):
        // with the run's token, not a `Python::attach` each time.
        if let Err(e) = in_pass(|py, _| py.check_signals()) {
            interrupt_with(&self.state, e, Some(lp));
        }
    }
}

/// Runs one fd watcher's handle (native or asyncio's), as asyncio's
/// `_run_once` does: skipped if cancelled, `_run()` otherwise (which
/// reports ordinary exceptions to the loop's exception handler itself).
pub(crate) fn run_handle(py: Python<'_>, handle: &Py<PyAny>) {
    let Some(state) = active() else { return };
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
        interrupt_with(&state, e, None);
    }
}

/// Runs one queued entry (`handle.rs`): in debug mode through the Python
/// loop's timing wrapper, else natively.
pub(crate) fn run_entry<E: PyEntry>(entry: E) {
    in_pass(|py, state| {
        let Some(state) = state else {
            drop(entry); // with the GIL
            return;
        };
        entry.starting(py);
        let outcome = if state.debug.get() {
            let h = entry.handle(py);
            h.getattr(intern!(py, "_loop"))
                .and_then(|lp| lp.call_method1(intern!(py, "_run_handle_debug"), (h,)))
                .map(|_| false)
        } else {
            entry.run_handle(py)
        };
        match outcome {
            // The handle let go of its contents while running: dropping
            // the entry frees it.
            Ok(true) => drop(entry),
            Ok(false) => entry.finish(py), // the last reference may go here
            Err(e) => {
                // KeyboardInterrupt, SystemExit or a failing exception
                // handler: the core stops after this entry.
                interrupt_with(state, e, None);
                entry.finish(py);
            }
        }
    });
}

/// asyncio's message for a loop used from a thread other than its own.
pub(crate) const OTHER_THREAD: &str =
    "Non-thread-safe operation invoked on an event loop other than the current one";

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
    /// The parts of the Python loop's `_transports` mapping, read once
    /// (`transport.rs`). Visited by the GC.
    transports: RefCell<Option<transport::WeakMapping>>,
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
        let run_state = Rc::new(RunState::default());
        let mut builder = EventLoop::builder()
            .busy_poll_interval(BUSY_POLL_INTERVAL)
            .wait_hook(GilWaitHook { state: run_state.clone() });
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
        let is_virtual = virtual_time.is_some();
        let state = CoreState {
            state: run_state,
            virtual_time,
            pyloop: RefCell::new(None),
            transports: RefCell::new(None),
        };
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
        drop(self.set_watcher(fd, Direction::Read, Some(Watcher::Handle(handle))));
        Ok(())
    }

    /// Stops watching `fd` for reading; false if it was not watched.
    fn remove_reader(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.lp.check()?;
        let removed = self.lp.remove_reader(fd);
        let old = self.set_watcher(fd, Direction::Read, None);
        // A registration kept for the next sock_* call, or a cancelled
        // one's, is no reader (asyncio's was removed with its call).
        let reader = match &old {
            Some(Watcher::Idle(_)) => false,
            Some(Watcher::Op(op)) => !op.is_over(py),
            _ => true,
        };
        drop(old);
        Ok(removed && reader)
    }

    /// As [`add_reader`](Core::add_reader), for writing.
    fn add_writer(&self, fd: RawFd, handle: Py<PyAny>) -> PyResult<()> {
        self.lp.check()?;
        self.lp.add_writer(fd, fd_callback(fd, Direction::Write)).map_err(core_error)?;
        drop(self.set_watcher(fd, Direction::Write, Some(Watcher::Handle(handle))));
        Ok(())
    }

    /// Stops watching `fd` for writing; false if it was not watched.
    fn remove_writer(&self, fd: RawFd) -> PyResult<bool> {
        self.lp.check()?;
        let removed = self.lp.remove_writer(fd);
        drop(self.set_watcher(fd, Direction::Write, None));
        Ok(removed)
    }

    // ----- sock_* (sock.rs): the result, or a pending future to await -----

    /// asyncio's `sock_recv` (after its argument checks).
    fn sock_recv(&self, py: Python<'_>, sock: &Bound<'_, PyAny>, n: isize) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::recv_op(n)?)
    }

    /// asyncio's `sock_recv_into`.
    fn sock_recv_into(&self, py: Python<'_>, sock: &Bound<'_, PyAny>, buf: Py<PyAny>) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::Op::RecvInto { buf })
    }

    /// asyncio's `sock_recvfrom`.
    fn sock_recvfrom(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        bufsize: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::Op::RecvFrom { bufsize })
    }

    /// asyncio's `sock_recvfrom_into` (`nbytes` already defaulted).
    fn sock_recvfrom_into(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        buf: Py<PyAny>,
        nbytes: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::Op::RecvFromInto { buf, nbytes })
    }

    /// asyncio's `sock_sendall`.
    fn sock_sendall(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::sendall_op(data)?)
    }

    /// asyncio's `sock_sendto`.
    fn sock_sendto(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        data: Py<PyAny>,
        address: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::Op::SendTo { data, address })
    }

    /// asyncio's `sock_connect`, the address resolved.
    fn sock_connect(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        address: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        sock::connect(py, self, sock, address)
    }

    /// `loop.create_connection(protocol_factory, host, port)` for an
    /// IP-literal `host` (a `str`) and an `int` port, natively
    /// ([`connect`]): a connect in progress whose `future` is done with
    /// `(transport, protocol)`, the transport of class `cls`. `None` for
    /// anything else (host names, other types, debug mode, a loop or loop
    /// class with its own `sock_connect` or `_make_socket_transport`):
    /// asyncio's path takes those.
    ///
    /// # Errors
    ///
    /// What `socket()` or `connect()` raised at once, or what the factory
    /// or the transport raised if the connect completed at once (the
    /// socket is closed then).
    fn create_connection<'py>(
        slf: &Bound<'py, Core>,
        r#loop: &Bound<'py, PyAny>,
        host: &Bound<'py, PyAny>,
        port: &Bound<'py, PyAny>,
        protocol_factory: &Bound<'py, PyAny>,
        cls: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, connect::Opening>>> {
        connect::create_connection(slf.py(), slf, r#loop, host, port, protocol_factory, cls)
    }

    /// asyncio's `sock_accept`.
    fn sock_accept(&self, py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::Op::Accept)
    }

    /// asyncio's `_accept_connection` for a server without TLS (see
    /// `accept.rs`): up to `backlog` connections accepted on `sock`, each
    /// served by a protocol from `protocol_factory` over a transport of
    /// class `transport` made natively (`None`: the loop's
    /// `_make_socket_transport` makes it). The exception if accepting ran
    /// out of fds or memory (the caller backs off), else `None`.
    fn accept_connections<'py>(
        &self,
        py: Python<'py>,
        sock: &Bound<'py, PyAny>,
        protocol_factory: &Bound<'py, PyAny>,
        server: &Bound<'py, PyAny>,
        backlog: usize,
        transport: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.open_loop()?;
        let pyloop = self.pyloop(py)?.into_bound(py);
        accept::accept_connections(&pyloop, sock, protocol_factory, server, backlog, transport, None)
            .map(|(_, exhausted)| exhausted)
    }

    /// Serves `sock` (fd `fd`) natively (`EventLoop._start_serving` for a
    /// server without TLS): the listener's reader is the accept loop of
    /// `accept.rs` ([`accept_connections`](Core::accept_connections) on
    /// each readiness event, in a copy of the current context), replacing
    /// any reader it had; `_remove_reader` (asyncio's `_stop_serving`)
    /// ends it. `serving` is `_start_serving`'s arguments, given back to
    /// the loop's `_accept_out_of_resources` when accepting runs out of
    /// fds or memory.
    #[pyo3(signature = (fd, sock, protocol_factory, server, backlog, transport, serving))]
    #[allow(clippy::too_many_arguments)]
    fn start_serving(
        &self,
        py: Python<'_>,
        fd: RawFd,
        sock: &Bound<'_, PyAny>,
        protocol_factory: Py<PyAny>,
        server: Py<PyAny>,
        backlog: usize,
        transport: Option<Py<PyAny>>,
        serving: Py<PyTuple>,
    ) -> PyResult<()> {
        let lp = self.lp.check()?;
        let listening = accept::Listening {
            pyloop: self.pyloop(py)?,
            sock: sock.clone().unbind(),
            protocol_factory,
            server,
            backlog,
            transport,
            context: handle::copy_context(py)?,
            serving,
            sockname: accept::shared_sockname(sock)?.map(Bound::unbind),
            took_one_at: std::cell::Cell::new(None),
        };
        self.watch_anew(lp, fd, Direction::Read, Watcher::Accept(Rc::new(listening)))
    }

    /// asyncio's `_sock_sendfile_native` once the file is checked:
    /// `sendfile(2)` of `file` (fd `file_fd`) from `offset`, `count` bytes
    /// at most (0: to its end), `blocksize` per call; the bytes sent.
    #[allow(clippy::too_many_arguments)]
    fn sock_sendfile(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        file: Py<PyAny>,
        file_fd: RawFd,
        offset: u64,
        count: usize,
        blocksize: usize,
    ) -> PyResult<Py<PyAny>> {
        sock::start(py, self, sock, sock::sendfile_op(file, file_fd, offset, count, blocksize))
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

    /// Asks the core's run to end after the current pass (asyncio's
    /// `stop()`: a `stop()` made before `run_until_stopped` still gets one
    /// pass with a zero timeout). From another thread (asyncio tolerates
    /// that outside debug mode) the stop is sent through the thread-safe
    /// door, which also wakes the loop.
    fn stop(&self) -> PyResult<()> {
        match self.lp.0.get() {
            Some(lp) => lp.stop(),
            None => {
                let stop = || {
                    if let Ok(lp) = evloop::get_running_loop() {
                        lp.stop();
                    }
                };
                // Refused only once the loop is closed: nothing to stop.
                let _ = self.lp.0.remote().call_soon_threadsafe(stop);
            }
        }
        Ok(())
    }

    /// Runs the core (`run_forever`, or `run_until_idle` in a virtual-time
    /// loop's idle mode) until `stop()`, or until a callback or a signal
    /// handler lets an exception through, which it raises.
    ///
    /// In a child of `fork()` a new loop runs normally; a loop made before
    /// the fork raises RuntimeError (the core's `Error::Forked`).
    fn run_until_stopped(&self, py: Python<'_>, pyloop: &Bound<'_, PyAny>) -> PyResult<()> {
        self.lp.check()?;
        let previous = ACTIVE.with(|a| a.replace(Some(self.state().clone())));
        let outcome = self.run_passes(py, pyloop);
        // The last pass's corked writes go out before the run returns (the
        // caller may read the peer's socket next).
        let escaped = transport::uncork_all(py, self.state());
        ACTIVE.with(|a| *a.borrow_mut() = previous);
        match (outcome, escaped) {
            (Ok(()), Some(e)) => Err(e),
            (outcome, _) => outcome,
        }
    }

    /// Closes the core: pending callbacks and timers are dropped unrun, fd
    /// watchers forgotten, later threadsafe calls refused.
    fn close(&self) -> PyResult<()> {
        self.lp.check()?;
        self.lp.close().map_err(core_error)?;
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
        if let Ok(parts) = cs.transports.try_borrow()
            && let Some(parts) = &*parts
        {
            visit_each(&visit, |f| parts.visit(f))?;
        }
        if let Ok(watchers) = cs.state.watchers.try_borrow() {
            for watcher in watchers.values() {
                match watcher {
                    Watcher::Handle(handle) => visit.call(handle)?,
                    Watcher::Stream(transport) => visit.call(transport)?,
                    Watcher::Idle(_) => {}
                    Watcher::Datagram(transport) => visit.call(transport)?,
                    Watcher::Accept(listening) => visit_each(&visit, |f| listening.visit(f))?,
                    Watcher::Op(op) => visit_each(&visit, |f| op.visit(f))?,
                }
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
        lp.visit_entries(|e: &transport::TransportEntry| visit_one(e.transport()));
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
        let transports = cs.transports.try_borrow_mut().map(|mut t| t.take());
        drop(transports);
    }
}

/// Visits with `visit` every object `each` reports, stopping at the first
/// failure (for holders that list their objects through a callback).
pub(crate) fn visit_each(
    visit: &PyVisit<'_>,
    each: impl FnOnce(&mut dyn FnMut(&Py<PyAny>)),
) -> Result<(), PyTraverseError> {
    let mut outcome = Ok(());
    each(&mut |obj| {
        if outcome.is_ok() {
            outcome = visit.call(obj);
        }
    });
    outcome
}

impl Core {
    /// Where [`transport`] keeps the parts of the loop's `_transports`.
    pub(crate) fn transports_cache(&self) -> &RefCell<Option<transport::WeakMapping>> {
        &self.lp.core_state().transports
    }

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
        let key = lp.call_at_entry(at, TimerEntry { handle: timer.clone_ref(py) });
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

    /// Makes `watcher` the one that runs whenever `fd` is ready in
    /// `direction`, replacing any other.
    /// `same_socket`: the socket object the watcher is for; if the fd's
    /// registration is one a finished call on that same object left
    /// ([`Watcher::Idle`]), it is still that socket's (an open socket
    /// object keeps its fd), and it is reused as it is.
    fn watch(
        &self,
        lp: &EventLoop,
        fd: RawFd,
        direction: Direction,
        watcher: Watcher,
        same_socket: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = same_socket.py();
        let (idle_for_it, pending) = match self.state().watchers.borrow().get(&(fd, direction)) {
            Some(Watcher::Idle(weak)) => (weak.bind(py).upgrade().is_some_and(|s| s.is(same_socket)), None),
            Some(Watcher::Op(op)) => (false, Some(op.clone())),
            _ => (false, None),
        };
        // A cancelled call on the same socket, still registered, also
        // leaves its registration (checked after the borrow: `done()`).
        let reusable = idle_for_it || pending.is_some_and(|op| op.is_for(same_socket) && op.is_over(py));
        if !reusable {
            return self.watch_anew(lp, fd, direction, watcher);
        }
        drop(self.set_watcher(fd, direction, Some(watcher))); // the old one after the borrow
        Ok(())
    }

    pub(crate) fn watch_anew(
        &self,
        lp: &EventLoop,
        fd: RawFd,
        direction: Direction,
        watcher: Watcher,
    ) -> PyResult<()> {
        match direction {
            Direction::Read => lp.add_reader(fd, fd_callback(fd, direction)),
            Direction::Write => lp.add_writer(fd, fd_callback(fd, direction)),
        }
        .map_err(core_error)?;
        drop(self.set_watcher(fd, direction, Some(watcher)));
        Ok(())
    }

    /// Drops the pending `sock_*` operation on `sock` that watches `fd` in
    /// `direction`, if there is one (its registration too).
    pub(crate) fn drop_op_of(&self, fd: RawFd, direction: Direction, sock: &Bound<'_, PyAny>) {
        let id = match self.state().watchers.borrow().get(&(fd, direction)) {
            Some(Watcher::Op(op)) if op.is_for(sock) => Some(op.id()),
            _ => None,
        };
        let Some(removed) = id.and_then(|id| self.state().take_op(fd, direction, id)) else { return };
        if let Ok(lp) = self.lp.check()
            && !lp.is_closed()
        {
            match direction {
                Direction::Read => lp.remove_reader(fd),
                Direction::Write => lp.remove_writer(fd),
            };
        }
        drop(removed); // after the map's borrow: decrefs may run Python code
    }

    /// Sets or removes the watcher of `fd` in `direction`; returns the old
    /// one, for the caller to drop (a decref may run Python code).
    #[must_use]
    fn set_watcher(&self, fd: RawFd, direction: Direction, handle: Option<Watcher>) -> Option<Watcher> {
        let mut watchers = self.state().watchers.borrow_mut();
        match handle {
            Some(h) => watchers.insert((fd, direction), h),
            None => watchers.remove(&(fd, direction)),
        }
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
        let idle_mode = self.virtual_time().is_some_and(|vt| vt.idle_mode.get());
        let outcome = if idle_mode { self.lp.run_until_idle() } else { self.lp.run_forever() };
        let pending = self.state().pending.borrow_mut().take();
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
        in_pass(|py, state| {
            let Some(state) = state else { return };
            let watcher = match state.watchers.borrow().get(&(fd, direction)) {
                Some(Watcher::Handle(h)) => Some(Watcher::Handle(h.clone_ref(py))),
                Some(Watcher::Op(op)) => Some(Watcher::Op(op.clone())),
                Some(Watcher::Stream(t)) => Some(Watcher::Stream(t.clone_ref(py))),
                Some(Watcher::Datagram(t)) => Some(Watcher::Datagram(t.clone_ref(py))),
                Some(Watcher::Accept(l)) => Some(Watcher::Accept(l.clone())),
                Some(Watcher::Idle(_)) | None => None,
            };
            match watcher {
                Some(Watcher::Handle(handle)) => run_handle(py, &handle),
                Some(Watcher::Op(op)) => sock::on_ready(py, state, op),
                Some(Watcher::Stream(t)) => transport::on_ready(py, state, t.bind(py), direction),
                Some(Watcher::Datagram(t)) => udp::on_ready(py, state, &t, direction),
                Some(Watcher::Accept(l)) => accept::on_ready(py, state, &l),
                // Ready with nobody waiting: the kept registration goes.
                _ => sock::drop_idle(state, fd, direction),
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
    m.add_class::<sock::OpDone>()?;
    m.add_class::<loop_base::LoopBase>()?;
    m.add_class::<transport::StreamTransport>()?;
    m.add_class::<transport::EngineMethod>()?;
    m.add_function(wrap_pyfunction!(transport::init_stream_transport, m)?)?;
    m.add_class::<udp::DatagramTransport>()?;
    loop_base::add_call_soon(m.py())?;
    transport::install_finalizer(m.py());
    Ok(())
}

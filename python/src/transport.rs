//! Native stream transports: asyncio's `Transport` over a connected TCP or
//! Unix stream socket, made by the loop's `_make_socket_transport` (so
//! `create_connection`, `create_server`, `create_unix_connection`,
//! `create_unix_server` and `connect_accepted_socket` all get it) and
//! under TLS, where asyncio's `SSLProtocol` (a `BufferedProtocol`) rides
//! on it. The Python class is `evloop._loop._SocketTransport`, a real
//! `asyncio.Transport` (and `_FlowControlMixin`, which asyncio's sendfile
//! fallback checks for) that makes this engine and binds its methods into
//! the instance once (repr and asyncio's class attributes are Python; an
//! unclosed transport's ResourceWarning is this engine's finalizer);
//! everything that runs per event or per call is here.
//!
//! Behaviour is asyncio's `_SelectorSocketTransport`, call for call: one
//! `recv` per readiness event (into the protocol's own buffer for a
//! `BufferedProtocol`), `write` tries `send` at once and buffers only the
//! rest, flow control at the high/low water marks, `close` flushes first,
//! `abort` drops the buffer, and `connection_lost` runs exactly once,
//! through `call_soon` (or at once when a close's flush ends).
//!
//! Invariants:
//! - No `RefCell` borrow is alive while Python code runs: every Python
//!   object is cloned out of its cell in a statement of its own, and the
//!   write buffer is borrowed only around `send` and copies.
//! - The transport is its fd's watcher (the core's `Watcher::Stream`) for
//!   reading while it reads, and for writing while its buffer holds bytes;
//!   both registrations go before the socket is closed.
//! - The socket object is held until `_call_connection_lost` closes it,
//!   so the fd the syscalls use stays this socket's. As with asyncio, the
//!   transport owns the socket: closing it behind the transport's back
//!   (the object passed as `sock=`) is a bug in the caller.
//! - The state is reached on the loop's thread only (`LoopOwner`); the
//!   Python transport and this engine reference each other until the
//!   connection is lost, when the engine lets go of it (and of the loop,
//!   the protocol and the server), so closed connections are freed by
//!   reference counting alone.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{
    PyConnectionError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit, PyTypeError,
    PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PySet, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};
use socket2::SockRef;

use evloop::LoopOwner;

use crate::sock::Kind;
use crate::{Core, Direction, RunState, Watcher, interrupt_with};

/// The most one `recv` reads (asyncio's `max_size`).
const MAX_SIZE: usize = 256 * 1024;

/// After this many writes to a lost connection, each further one logs a
/// warning (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// The default high water mark of the write buffer (asyncio's).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// A read of at least this many bytes makes the next read of the transport
/// go straight into a `bytes` object of [`MAX_SIZE`] bytes, shrunk to what
/// came ([`crate::sock::recv_bytes_direct`]); blocks that size come from
/// the heap ([`crate::sock::big_blocks_from_the_heap`]), and shrinking one
/// there is cheap. In the 100 KiB echo benchmark that beat sizing the block
/// by `FIONREAD` first (an `ioctl` per read): 1.01 of rloop's speed, not
/// 0.99.
const DIRECT_READ: usize = 32 * 1024;

/// A read of at least this many bytes (and under [`DIRECT_READ`]) makes
/// the next one go straight into a `bytes` object of [`MEDIUM_SIZE`]
/// bytes, shrunk to what came: no copy out of the scratch buffer (a block
/// that size comes from the heap, not from `mmap`, so shrinking it is
/// cheap).
const MEDIUM_READ: usize = 4 * 1024;

/// The most a read after a medium one takes (a full one makes the next
/// read a big one).
const MEDIUM_SIZE: usize = 64 * 1024;

/// The most a transport's corked writes hold in all: a write that would
/// go over sends them and itself at once (one `sendmsg`).
const CORK_LIMIT: usize = 16 * 1024;

/// Where a transport is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading (unless paused) and writing.
    Open,
    /// `close()` was called and the buffer is still being flushed; no more
    /// reading. `is_closing()` from here on.
    Closing,
    /// `connection_lost` is scheduled or ran (asyncio's `_conn_lost`):
    /// nothing is read or written any more.
    Lost,
}

/// Bytes `send` did not take yet, in order; `head` is where the unsent
/// part starts (sent bytes are dropped in bulk, not one `memmove` per
/// `send`).
#[derive(Default)]
struct WriteBuffer {
    bytes: Vec<u8>,
    head: usize,
}

impl WriteBuffer {
    /// Capacity kept once the buffer is empty: a connection that once
    /// buffered a lot does not keep it while idle.
    const KEEP: usize = 64 * 1024;

    fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.head..]
    }

    fn push(&mut self, data: &[u8]) {
        if self.head > 0 && self.head >= self.bytes.len() / 2 {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        if self.head >= self.bytes.len() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        if self.bytes.capacity() > Self::KEEP {
            self.bytes = Vec::new();
        } else {
            self.bytes.clear();
        }
    }
}

/// What `send_or_buffer` did with a write.
enum Sent {
    /// The socket took it all.
    All,
    /// Some or all of it is buffered; `start_writer` if the buffer was
    /// empty before (the writer is to be registered).
    Buffered { start_writer: bool },
    /// Buffered until the end of the pass (corked); `first`: the
    /// transport is to be put on the run's list of corked transports.
    Corked { first: bool },
    /// `send` failed: a fatal error.
    Failed(io::Error),
}

/// A cell holding a Python object that goes away when the transport does.
type Slot = RefCell<Option<Py<PyAny>>>;

fn get<'py>(py: Python<'py>, slot: &Slot) -> Option<Bound<'py, PyAny>> {
    slot.borrow().as_ref().map(|o| o.bind(py).clone())
}

fn put(py: Python<'_>, slot: &Slot, value: Option<Py<PyAny>>) {
    let old = slot.replace(value);
    // After the borrow: a decref may run Python code. With the token: a
    // plain decref, without `Py`'s check of PyO3's thread-local state.
    if let Some(old) = old {
        old.drop_ref(py);
    }
}

/// asyncio's stream transport, natively (see the module docs): the engine
/// of `evloop._loop._SocketTransport`, which makes it. Sendable: its state
/// is reached only on the loop's thread (elsewhere every method raises
/// asyncio's `RuntimeError`), and dropped elsewhere (by a GC run another
/// thread started) it leaks that state rather than touch it there.
#[pyclass(frozen, weakref, module = "evloop._evloop", name = "StreamTransport")]
pub(crate) struct StreamTransport {
    owned: LoopOwner<Inner>,
}

fn inner<'a>(slf: &'a Bound<'_, StreamTransport>) -> PyResult<&'a Inner> {
    slf.get().inner()
}

impl StreamTransport {
    fn inner(&self) -> PyResult<&Inner> {
        self.owned.state().ok_or_else(|| PyRuntimeError::new_err(crate::OTHER_THREAD))
    }
}

/// A transport's state, on the loop's thread.
pub(crate) struct Inner {
    fd: RawFd,
    core: Py<Core>,
    extra: Py<PyDict>,
    /// The Python transport this is the engine of (an `asyncio.Transport`
    /// subclass, `evloop._loop._SocketTransport`): what protocols, the
    /// loop and servers are given. Let go once the connection is lost.
    owner: Slot,
    lp: Slot,
    sock: Slot,
    /// The socket object, kept after the connection is lost (closed):
    /// what `get_extra_info("socket")` wraps.
    socket_object: Py<PyAny>,
    protocol: Slot,
    server: Slot,
    /// The future `_make_empty_waiter` made (sendfile waits for it).
    empty_waiter: Slot,
    /// The context reads run in: a copy of the one current when reading
    /// was (re)started, as asyncio's reader `Handle` copies it.
    context: Slot,
    phase: Cell<Phase>,
    /// `write_eof()` was called.
    eof: Cell<bool>,
    /// `pause_reading()` was called (and not resumed).
    paused: Cell<bool>,
    /// The protocol is a `BufferedProtocol` (known once
    /// `read_methods_known`).
    buffered: Cell<bool>,
    /// `buffered`, `on_data` and `get_buffer` are the protocol's.
    read_methods_known: Cell<bool>,
    /// How many bytes the last read got: from [`MEDIUM_READ`] on, the next
    /// one reads straight into its `bytes`, not through the scratch buffer
    /// (a [`MAX_SIZE`] one from [`DIRECT_READ`] on: bulk transfers).
    last_read: Cell<usize>,
    /// The protocol's `data_received` (`buffer_updated` for a
    /// `BufferedProtocol`) and `get_buffer`, looked up once per protocol
    /// (as uvloop does) rather than at every read; `None` if the protocol
    /// has none, and the read then fails as asyncio's does.
    on_data: Slot,
    get_buffer: Slot,
    /// `pause_writing()` was called on the protocol (not resumed).
    protocol_paused: Cell<bool>,
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    /// asyncio's `_conn_lost` counter: 1 once lost, plus each write after.
    conn_lost: Cell<u32>,
    /// `_call_connection_lost` ran: it never runs twice.
    lost_called: Cell<bool>,
    /// Registered with the core as the fd's reader / writer.
    reading: Cell<bool>,
    writing: Cell<bool>,
    buffer: RefCell<WriteBuffer>,
    /// The loop pass (`RunState::pass`) of the last write made while the
    /// loop ran, and how many writes that pass made.
    last_write_pass: Cell<u64>,
    writes_in_pass: Cell<u32>,
    /// The transport wrote more than once in one pass lately (an HTTP
    /// server's head and body): its small writes are corked, buffered
    /// until the end of the pass and sent then in one `send`. A corked
    /// pass with a single write turns it off.
    coalesce: Cell<bool>,
    /// The buffer holds corked writes only (waiting for the end of the
    /// pass; no writer registered).
    corked: Cell<bool>,
    /// What the queued start entry runs ([`TransportEntry`]).
    start: RefCell<Option<Start>>,
    /// What the queued `_call_connection_lost` entry runs.
    lost: RefCell<Option<Lost>>,
}

/// asyncio's three calls queued when a transport is made, as one entry:
/// `protocol.connection_made(transport)` in `context` (a copy of the
/// context current when the transport was made), then the start of
/// reading, in another copy of it (asyncio's reader `Handle`'s), then
/// `waiter`'s result (`result`) unless it was cancelled. asyncio queues
/// the three one after the other, so nothing can run between them.
struct Start {
    protocol: Py<PyAny>,
    context: Py<PyAny>,
    waiter: Option<Py<PyAny>>,
    result: Py<PyAny>,
}

/// asyncio's queued `_call_connection_lost(exc)`, in `context` (a copy of
/// the context current when it was queued).
struct Lost {
    exc: Py<PyAny>,
    context: Py<PyAny>,
}

impl Start {
    fn visit(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        [&self.protocol, &self.context, &self.result].into_iter().chain(&self.waiter).for_each(visit);
    }
}

impl Lost {
    fn visit(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        visit(&self.exc);
        visit(&self.context);
    }
}

/// Which of a transport's queued calls a [`TransportEntry`] is.
#[derive(Clone, Copy)]
enum Step {
    Start,
    Lost,
}

/// A transport's own entry on the loop's ready queue, in place of the
/// `Handle`s asyncio's transport queues with `call_soon` (no handle
/// object, bound method or argument tuple per call): its start
/// ([`Start`]) or its `_call_connection_lost` ([`Lost`]), whose arguments
/// the transport holds meanwhile. Queued only on a loop that
/// [`queues_natively`](crate::loop_base::queues_natively). A failing
/// protocol method is reported as asyncio's handle would report it.
pub(crate) struct TransportEntry {
    transport: Py<StreamTransport>,
    step: Step,
}

impl TransportEntry {
    /// The transport, for the core's GC pass.
    pub(crate) fn transport(&self) -> &Py<PyAny> {
        self.transport.as_any()
    }
}

impl evloop::ForeignEntry for TransportEntry {
    fn run(self) {
        crate::run_entry(self);
    }
}

impl crate::handle::PyEntry for TransportEntry {
    /// Debug mode turned on after the entry was queued: a `Handle` of the
    /// same step, for the loop's timing wrapper.
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        let t = self.transport.bind(py);
        let name = match self.step {
            Step::Start => intern!(py, "_run_start"),
            Step::Lost => intern!(py, "_run_lost"),
        };
        let made = (|| -> PyResult<Bound<'py, PyAny>> {
            let this = inner(t)?;
            let handle = crate::handle::Handle::new(
                py,
                t.getattr(name)?.unbind(),
                PyTuple::empty(py).unbind(),
                this.core.get().pyloop(py)?,
                None,
            )?;
            Ok(Bound::new(py, handle)?.into_any())
        })();
        made.unwrap_or_else(|e| {
            e.write_unraisable(py, Some(t.as_any()));
            py.None().into_bound(py)
        })
    }

    fn run_handle(&self, py: Python<'_>) -> PyResult<bool> {
        let t = self.transport.bind(py);
        match self.step {
            Step::Start => Inner::run_start(t),
            Step::Lost => Inner::run_lost(t),
        }
        .map(|()| true)
    }
}

fn is_base(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py)
}

fn would_block(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn cached_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, module, name)
}

fn buffered_protocol_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    cached_type(py, &TYPE, "asyncio.protocols", "BufferedProtocol")
}

/// Whether servers' `_attach`/`_detach` take the transport (3.13's
/// `close_clients`/`abort_clients`) or nothing (3.11, 3.12).
fn server_tracks_clients(py: Python<'_>) -> bool {
    static TRACKS: PyOnceLock<bool> = PyOnceLock::new();
    *TRACKS.get_or_init(py, || py.version_info() >= (3, 13))
}

/// Whether `server` is exactly asyncio's `Server` of a Python whose
/// `_attach`/`_detach` only count its connections (3.11, 3.12): then
/// [`attach`] and [`detach`] do what those methods do, without their
/// Python frames.
fn counting_server(server: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = server.py();
    if server_tracks_clients(py) {
        return Ok(false);
    }
    static SERVER: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    Ok(server.get_type().is(cached_type(py, &SERVER, "asyncio.base_events", "Server")?))
}

/// `server._attach(...)`: one more connection (asyncio's method where it
/// would assert, or does more).
fn attach(server: &Bound<'_, PyAny>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = server.py();
    if counting_server(server)? && !server.getattr(intern!(py, "_sockets"))?.is_none() {
        let count: isize = server.getattr(intern!(py, "_active_count"))?.extract()?;
        return server.setattr(intern!(py, "_active_count"), count + 1);
    }
    if server_tracks_clients(py) {
        server.call_method1(intern!(py, "_attach"), (transport,)).map(drop)
    } else {
        server.call_method0(intern!(py, "_attach")).map(drop)
    }
}

/// `server._detach(...)`: one connection less; the server's waiters are
/// woken when it was the last one of a closed server.
fn detach(server: &Bound<'_, PyAny>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = server.py();
    if counting_server(server)? {
        let count: isize = server.getattr(intern!(py, "_active_count"))?.extract()?;
        if count > 0 {
            server.setattr(intern!(py, "_active_count"), count - 1)?;
            if count == 1 && server.getattr(intern!(py, "_sockets"))?.is_none() {
                server.call_method0(intern!(py, "_wakeup"))?;
            }
            return Ok(());
        }
    }
    if server_tracks_clients(py) {
        server.call_method1(intern!(py, "_detach"), (transport,)).map(drop)
    } else {
        server.call_method0(intern!(py, "_detach")).map(drop)
    }
}

/// The socket `fd` of a transport whose socket object is held.
fn sock_ref<'a>(fd: &'a BorrowedFd<'_>) -> SockRef<'a> {
    SockRef::from(fd)
}

impl Inner {
    /// Runs `f` on the transport's socket, if it still has it.
    fn with_socket<R>(&self, f: impl FnOnce(SockRef<'_>) -> io::Result<R>) -> Option<io::Result<R>> {
        if self.sock.borrow().is_none() {
            return None;
        }
        // SAFETY: the transport holds its socket object (checked above),
        // which owns `fd` and is closed only by `_call_connection_lost`
        // after it has been taken out of `sock`; no Python code runs
        // between the check and the end of `f` (a syscall on the fd), so
        // the fd stays open and this socket's for the borrow.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        Some(f(sock_ref(&borrowed)))
    }

    /// Makes `protocol` the one reads go to (its read methods are looked
    /// up at the first read: a connection that never reads, such as a
    /// server's that answers and closes in `connection_made`, looks up
    /// none).
    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        put(py, &self.protocol, Some(protocol.clone().unbind()));
        put(py, &self.on_data, None);
        put(py, &self.get_buffer, None);
        self.read_methods_known.set(false);
        Ok(())
    }

    /// Looks up the protocol's read methods, once per protocol.
    fn know_read_methods(&self, py: Python<'_>) -> PyResult<()> {
        if self.read_methods_known.get() {
            return Ok(());
        }
        let Some(protocol) = get(py, &self.protocol) else { return Ok(()) };
        let buffered = protocol.is_instance(buffered_protocol_type(py)?)?;
        let method = |name: &Bound<'_, PyString>| protocol.getattr(name).ok().map(Bound::unbind);
        let (on_data, get_buffer) = if buffered {
            (method(intern!(py, "buffer_updated")), method(intern!(py, "get_buffer")))
        } else {
            (method(intern!(py, "data_received")), None)
        };
        self.buffered.set(buffered);
        put(py, &self.on_data, on_data);
        put(py, &self.get_buffer, get_buffer);
        self.read_methods_known.set(true);
        Ok(())
    }

    /// The Python transport (None once lost).
    fn public<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        get(py, &self.owner).unwrap_or_else(|| py.None().into_bound(py))
    }

    fn is_closing(&self) -> bool {
        self.phase.get() != Phase::Open
    }

    fn is_reading(&self) -> bool {
        !self.is_closing() && !self.paused.get()
    }

    fn flag(&self, direction: Direction) -> &Cell<bool> {
        match direction {
            Direction::Read => &self.reading,
            Direction::Write => &self.writing,
        }
    }

    /// Makes the transport its fd's watcher in `direction`.
    fn watch(slf: &Bound<'_, StreamTransport>, direction: Direction) -> PyResult<()> {
        let this = inner(slf)?;
        if this.flag(direction).get() {
            return Ok(());
        }
        let core = this.core.get();
        let lp = core.open_loop()?;
        core.watch_anew(lp, this.fd, direction, Watcher::Stream(slf.clone().unbind()))?;
        this.flag(direction).set(true);
        Ok(())
    }

    /// Stops watching in `direction`, if this transport is still the
    /// fd's watcher there.
    fn unwatch(&self, direction: Direction) {
        if !self.flag(direction).replace(false) {
            return;
        }
        let core = self.core.get();
        let Ok(lp) = core.lp.check() else { return };
        let ours = matches!(
            core.state().watchers.borrow().get(&(self.fd, direction)),
            // A transport on this fd is this one: another would need the
            // same socket, which this one holds until it unregisters.
            Some(Watcher::Stream(_))
        );
        if !ours {
            return;
        }
        if !lp.is_closed() {
            match direction {
                Direction::Read => lp.remove_reader(self.fd),
                Direction::Write => lp.remove_writer(self.fd),
            };
        }
        drop(core.set_watcher(self.fd, direction, None));
    }

    fn call_soon(&self, py: Python<'_>, callback: Bound<'_, PyAny>, arg: Bound<'_, PyAny>) -> PyResult<()> {
        let lp = get(py, &self.lp).ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))?;
        crate::loop_base::call_soon(&lp, callback, PyTuple::new(py, [arg])?)
    }

    /// Reports an exception to the loop's handler with asyncio's context
    /// keys (`message`, `exception`, `transport`, `protocol`).
    fn report(slf: &Bound<'_, StreamTransport>, message: &str, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let Some(lp) = get(py, &this.lp) else { return Ok(()) };
        let context = PyDict::new(py);
        context.set_item(intern!(py, "message"), message)?;
        context.set_item(intern!(py, "exception"), exc)?;
        context.set_item(intern!(py, "transport"), this.public(py))?;
        context.set_item(intern!(py, "protocol"), get(py, &this.protocol))?;
        lp.call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// asyncio's `_fatal_error`: an OSError is the connection's end (not
    /// reported), anything else goes to the exception handler; then the
    /// transport is force-closed with it.
    fn fatal_error(slf: &Bound<'_, StreamTransport>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        if !exc.is_instance_of::<PyOSError>() {
            Self::report(slf, message, exc)?;
        }
        Self::force_close(slf, Some(exc))
    }

    /// A protocol callback failed: `KeyboardInterrupt`/`SystemExit` go
    /// on out, anything else is a fatal error with `message`.
    fn callback_failed(slf: &Bound<'_, StreamTransport>, e: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if is_base(py, &e) {
            return Err(e);
        }
        Self::fatal_error(slf, e.value(py), message)
    }

    fn force_close(slf: &Bound<'_, StreamTransport>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.phase.get() == Phase::Lost {
            return Ok(());
        }
        if !this.buffer.borrow().is_empty() {
            this.buffer.borrow_mut().clear();
        }
        this.corked.set(false);
        this.unwatch(Direction::Write);
        this.unwatch(Direction::Read);
        this.phase.set(Phase::Lost);
        this.conn_lost.set(this.conn_lost.get() + 1);
        let exc = match exc {
            Some(e) => e.clone(),
            None => py.None().into_bound(py),
        };
        Self::queue_connection_lost(slf, exc)
    }

    /// asyncio's `call_soon(self._call_connection_lost, exc)`: the
    /// transport's own entry where the loop takes it.
    fn queue_connection_lost(slf: &Bound<'_, StreamTransport>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let lp = get(py, &this.lp).ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))?;
        if !crate::loop_base::queues_natively(&lp)? {
            return this.call_soon(py, slf.getattr(intern!(py, "_call_connection_lost"))?, exc);
        }
        let core = this.core.get();
        let queue = core.open_loop()?;
        let lost = Lost { exc: exc.unbind(), context: crate::handle::copy_context(py)? };
        drop(this.lost.replace(Some(lost)));
        queue.call_soon_entry(TransportEntry { transport: slf.clone().unbind(), step: Step::Lost });
        Ok(())
    }

    /// The queued `_call_connection_lost` ([`Lost`]) runs.
    fn run_lost(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let Some(Lost { exc, context }) = this.lost.borrow_mut().take() else { return Ok(()) };
        let (exc, context) = (exc.into_bound(py), context.into_bound(py));
        let given = (!exc.is_none()).then_some(&exc);
        let outcome = crate::handle::run_in_context(py, &context, || Self::call_connection_lost(slf, given))
            .unwrap_or_else(|| Self::call_connection_lost(slf, given));
        let Err(e) = outcome else { return Ok(()) };
        let callback = slf.getattr(intern!(py, "_call_connection_lost"))?;
        let args = PyTuple::new(py, [exc])?;
        crate::handle::report_as_handle(&callback, &args, this.core.get().pyloop(py)?, context.unbind(), e)
    }

    /// The queued start ([`Start`]) runs: `connection_made`, the start of
    /// reading, the waiter's result. Each step runs whatever the one
    /// before did; a failure is reported as the handle asyncio queues for
    /// that step would report it, and an exception that must end the run
    /// (`KeyboardInterrupt`, `SystemExit`, a failing exception handler) is
    /// raised once all three have run.
    fn run_start(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let Some(start) = this.start.borrow_mut().take() else { return Ok(()) };
        let Start { protocol, context, waiter, result } = start;
        let (protocol, context) = (protocol.into_bound(py), context.into_bound(py));
        let owner = this.public(py);
        // Taken before connection_made runs: what it sets in its context
        // is not seen by reads, as with asyncio's separate handles.
        let read_context = crate::handle::copy_of(&context).transpose()?;
        let mut escaping: Option<PyErr> = None;
        let mut report =
            |callback: PyResult<Bound<'_, PyAny>>, args: &[Bound<'_, PyAny>], ctx: Py<PyAny>, e: PyErr| {
                let reported = (|| {
                    let args = PyTuple::new(py, args)?;
                    crate::handle::report_as_handle(&callback?, &args, this.core.get().pyloop(py)?, ctx, e)
                })();
                if let Err(e) = reported {
                    escaping.get_or_insert(e);
                }
            };
        let made = || protocol.call_method1(intern!(py, "connection_made"), (&owner,)).map(drop);
        let outcome = crate::handle::run_in_context(py, &context, made).unwrap_or_else(made);
        if let Err(e) = outcome {
            let callback = protocol.getattr(intern!(py, "connection_made"));
            report(callback, std::slice::from_ref(&owner), context.clone().unbind(), e);
        }
        if this.is_reading() && !this.reading.get() {
            let read_context = match read_context {
                Some(c) => c,
                None => crate::handle::copy_context(py)?,
            };
            put(py, &this.context, Some(read_context.clone_ref(py)));
            if let Err(e) = Self::watch(slf, Direction::Read) {
                report(slf.getattr(intern!(py, "_start_reading")), &[], read_context, e);
            }
        }
        if let Some(waiter) = waiter {
            let (waiter, result) = (waiter.into_bound(py), result.into_bound(py));
            if let Err(e) = set_result_unless_cancelled(&waiter, &result) {
                let callback = set_result_function(py).cloned();
                report(callback, &[waiter, result], crate::handle::copy_context(py)?, e);
            }
        }
        escaping.map_or(Ok(()), Err)
    }

    /// asyncio's `_maybe_pause_protocol`.
    fn maybe_pause_protocol(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let this = inner(slf)?;
        if this.buffer.borrow().len() <= this.high_water.get() || this.protocol_paused.replace(true) {
            return Ok(());
        }
        this.protocol_call(slf, intern!(slf.py(), "pause_writing"), "protocol.pause_writing() failed")
    }

    /// asyncio's `_maybe_resume_protocol`.
    fn maybe_resume_protocol(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let this = inner(slf)?;
        if !this.protocol_paused.get() || this.buffer.borrow().len() > this.low_water.get() {
            return Ok(());
        }
        this.protocol_paused.set(false);
        this.protocol_call(slf, intern!(slf.py(), "resume_writing"), "protocol.resume_writing() failed")
    }

    /// Calls a flow-control method of the protocol; its failure goes to
    /// the exception handler (`KeyboardInterrupt`/`SystemExit` on out).
    fn protocol_call(
        &self,
        slf: &Bound<'_, StreamTransport>,
        method: &Bound<'_, PyString>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let Some(protocol) = get(py, &self.protocol) else { return Ok(()) };
        match protocol.call_method0(method) {
            Ok(_) => Ok(()),
            Err(e) if is_base(py, &e) => Err(e),
            Err(e) => Self::report(slf, message, e.value(py)),
        }
    }

    /// The bytes of `data` go out: sent at once if nothing is buffered,
    /// the rest (or all) copied into the buffer. No Python code runs, so
    /// `data` may borrow a Python buffer.
    fn send_or_buffer(&self, data: &[u8]) -> Sent {
        if !self.buffer.borrow().is_empty() {
            self.buffer.borrow_mut().push(data);
            return Sent::Buffered { start_writer: false };
        }
        let sent =
            match self.with_socket(|s| s.send_with_flags(data, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)) {
                Some(Ok(n)) => n,
                Some(Err(e)) if would_block(&e) => 0,
                Some(Err(e)) => return Sent::Failed(e),
                None => 0,
            };
        if sent == data.len() {
            return Sent::All;
        }
        self.buffer.borrow_mut().push(&data[sent..]);
        Sent::Buffered { start_writer: true }
    }

    /// A write of `data` by the protocol or the user: corked while the
    /// transport's loop runs, if the transport writes more than once per
    /// pass and `data` is small (see `coalesce`); otherwise
    /// [`send_or_buffer`](Inner::send_or_buffer). No Python code runs.
    fn write_data(&self, data: &[u8]) -> Sent {
        let state = self.core.get().state();
        let running = crate::is_running(state);
        if running {
            let pass = state.pass.get();
            if self.last_write_pass.replace(pass) == pass {
                self.writes_in_pass.set(self.writes_in_pass.get().saturating_add(1));
                self.coalesce.set(true);
            } else {
                self.writes_in_pass.set(1);
            }
        }
        let fits = data.len() <= CORK_LIMIT.saturating_sub(self.buffer.borrow().len());
        if self.corked.get() {
            // A run sends its corked writes before it ends: not running,
            // they go now, first, as they do when this one does not fit.
            if running && fits {
                self.buffer.borrow_mut().push(data);
                return Sent::Corked { first: false };
            }
            self.corked.set(false);
            return self.send_after_buffered(data);
        }
        if running && self.coalesce.get() && fits && self.buffer.borrow().is_empty() {
            self.buffer.borrow_mut().push(data);
            self.corked.set(true);
            return Sent::Corked { first: true };
        }
        self.send_or_buffer(data)
    }

    /// The buffer (corked writes) and then `data` go out in one `sendmsg`,
    /// the rest buffered (the writer to be registered).
    fn send_after_buffered(&self, data: &[u8]) -> Sent {
        let sent = {
            let buffer = self.buffer.borrow();
            let parts = [io::IoSlice::new(buffer.pending()), io::IoSlice::new(data)];
            self.with_socket(|s| s.send_vectored_with_flags(&parts, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT))
        };
        let n = match sent {
            Some(Ok(n)) => n,
            Some(Err(e)) if would_block(&e) => 0,
            Some(Err(e)) => return Sent::Failed(e),
            None => 0,
        };
        let mut buffer = self.buffer.borrow_mut();
        let held = buffer.len();
        if n < held {
            buffer.consume(n);
            buffer.push(data);
        } else {
            buffer.clear();
            if n - held == data.len() {
                return Sent::All;
            }
            buffer.push(&data[n - held..]);
        }
        Sent::Buffered { start_writer: true }
    }

    /// The end of the pass for a corked transport (or something that
    /// reads the buffer: its size, `close`, `write_eof`, `abort`…): its
    /// corked writes go out in one `send`, the rest buffered as an
    /// unsent write's (the writer, flow control, or the fatal error).
    fn uncork(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let this = inner(slf)?;
        if !this.corked.replace(false) || this.phase.get() == Phase::Lost {
            return Ok(());
        }
        if this.writes_in_pass.get() == 1 {
            this.coalesce.set(false);
        }
        let sent = this.send_after_buffered(&[]);
        Self::after_send(slf, sent)
    }

    /// The Python half of a write, once `send_or_buffer` is done with the
    /// caller's bytes: the writer's registration, flow control, or the
    /// fatal error.
    fn after_send(slf: &Bound<'_, StreamTransport>, sent: Sent) -> PyResult<()> {
        match sent {
            Sent::All => Ok(()),
            Sent::Corked { first } => {
                if first {
                    let this = inner(slf)?;
                    this.core.get().state().corked.borrow_mut().push(slf.clone().unbind());
                }
                Ok(())
            }
            Sent::Buffered { start_writer } => {
                if start_writer {
                    Self::watch(slf, Direction::Write)?;
                }
                Self::maybe_pause_protocol(slf)
            }
            Sent::Failed(e) => {
                let exc = PyErr::from(e);
                Self::fatal_error(slf, exc.value(slf.py()), "Fatal write error on socket transport")
            }
        }
    }

    /// What `write` and `writelines` check first; false if the write is
    /// to be dropped (a lost connection).
    fn writable(&self, py: Python<'_>, what: &str) -> PyResult<bool> {
        if self.eof.get() {
            return Err(PyRuntimeError::new_err(format!("Cannot call {what}() after write_eof()")));
        }
        if self.empty_waiter.borrow().is_some() {
            return Err(PyRuntimeError::new_err(format!("unable to {what}; sendfile is in progress")));
        }
        if self.phase.get() == Phase::Lost {
            if self.conn_lost.get() >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                logger(py)?.call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
            }
            self.conn_lost.set(self.conn_lost.get() + 1);
            return Ok(false);
        }
        Ok(true)
    }

    /// One readiness event for reading (asyncio's `_read_ready`).
    fn read_ready(slf: &Bound<'_, StreamTransport>, state: &RunState) -> PyResult<()> {
        let this = inner(slf)?;
        if this.phase.get() == Phase::Lost {
            return Ok(());
        }
        this.know_read_methods(slf.py())?;
        if this.buffered.get() { Self::read_into_buffer(slf) } else { Self::read_data(slf, state) }
    }

    fn read_data(slf: &Bound<'_, StreamTransport>, state: &RunState) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.sock.borrow().is_none() {
            return Ok(());
        }
        // After a big read, the next goes straight into a `MAX_SIZE`
        // `bytes` object, shrunk to what came (no second copy); after a
        // medium read, into a `MEDIUM_SIZE` one. The end of the stream
        // comes as an empty one either way.
        let last = this.last_read.get();
        let read = if last >= DIRECT_READ {
            crate::sock::big_blocks_from_the_heap();
            crate::sock::recv_bytes_direct(py, this.fd, MAX_SIZE)
        } else if (MEDIUM_READ..DIRECT_READ).contains(&last) {
            crate::sock::recv_bytes_direct(py, this.fd, MEDIUM_SIZE)
        } else {
            crate::sock::recv_bytes(py, state, this.fd, MAX_SIZE)
        };
        let data = match read {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(()),
            Err(e) => return Self::callback_failed(slf, e, "Fatal read error on socket transport"),
        };
        this.last_read.set(data.as_bytes().len());
        if data.as_bytes().is_empty() {
            return Self::on_eof(slf);
        }
        let received = match get(py, &this.on_data) {
            Some(data_received) => data_received.call1((data,)),
            None => match get(py, &this.protocol) {
                Some(protocol) => protocol.call_method1(intern!(py, "data_received"), (data,)),
                None => return Ok(()),
            },
        };
        match received {
            Ok(_) => Ok(()),
            Err(e) => Self::callback_failed(slf, e, "Fatal error: protocol.data_received() call failed."),
        }
    }

    fn read_into_buffer(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let Some(protocol) = get(py, &this.protocol) else { return Ok(()) };
        let got = (|| {
            let buf = match get(py, &this.get_buffer) {
                Some(get_buffer) => get_buffer.call1((-1,))?,
                None => protocol.call_method1(intern!(py, "get_buffer"), (-1,))?,
            };
            let view = PyUntypedBuffer::get(&buf)?;
            if view.len_bytes() == 0 {
                return Err(PyRuntimeError::new_err("get_buffer() returned an empty buffer"));
            }
            if view.readonly() || !view.is_c_contiguous() {
                return Err(PyTypeError::new_err("get_buffer() must return a writable, C-contiguous buffer"));
            }
            Ok(view)
        })();
        let view = match got {
            Ok(view) => view,
            Err(e) => {
                return Self::callback_failed(slf, e, "Fatal error: protocol.get_buffer() call failed.");
            }
        };
        // SAFETY: `view` is a writable, C-contiguous export (checked
        // above) of `len_bytes()` bytes, held until the slice's last use
        // (one `recv`, no Python code in between, the GIL held), and
        // `recv` writes only initialized bytes into it.
        let memory = unsafe {
            std::slice::from_raw_parts_mut(view.buf_ptr().cast::<MaybeUninit<u8>>(), view.len_bytes())
        };
        let received = this.with_socket(|s| s.recv_with_flags(memory, libc::MSG_DONTWAIT));
        drop(view); // released before the protocol sees its buffer again
        let n = match received {
            None => return Ok(()),
            Some(Ok(n)) => n,
            Some(Err(e)) if would_block(&e) => return Ok(()),
            Some(Err(e)) => {
                return Self::callback_failed(slf, PyErr::from(e), "Fatal read error on socket transport");
            }
        };
        if n == 0 {
            return Self::on_eof(slf);
        }
        let updated = match get(py, &this.on_data) {
            Some(buffer_updated) => buffer_updated.call1((n,)),
            None => protocol.call_method1(intern!(py, "buffer_updated"), (n,)),
        };
        match updated {
            Ok(_) => Ok(()),
            Err(e) => Self::callback_failed(slf, e, "Fatal error: protocol.buffer_updated() call failed."),
        }
    }

    /// The peer's end of file: `eof_received()` returning true keeps the
    /// transport open for writing (no more reading); false closes it.
    fn on_eof(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let Some(protocol) = get(py, &this.protocol) else { return Ok(()) };
        let keep_open = match protocol.call_method0(intern!(py, "eof_received")).and_then(|k| k.is_truthy()) {
            Ok(keep) => keep,
            Err(e) => {
                return Self::callback_failed(slf, e, "Fatal error: protocol.eof_received() call failed.");
            }
        };
        if keep_open {
            this.unwatch(Direction::Read);
            Ok(())
        } else {
            Self::close(slf)
        }
    }

    /// One readiness event for writing: sends what the buffer holds.
    fn write_ready(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.phase.get() == Phase::Lost {
            return Ok(());
        }
        let sent = {
            let buffer = this.buffer.borrow();
            if buffer.is_empty() {
                None
            } else {
                this.with_socket(|s| {
                    s.send_with_flags(buffer.pending(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                })
            }
        };
        match sent {
            None => {}
            Some(Ok(n)) => this.buffer.borrow_mut().consume(n),
            Some(Err(e)) if would_block(&e) => return Ok(()),
            Some(Err(e)) => {
                this.unwatch(Direction::Write);
                this.buffer.borrow_mut().clear();
                let exc = PyErr::from(e).into_value(py).into_bound(py);
                Self::fatal_error(slf, exc.as_any(), "Fatal write error on socket transport")?;
                if let Some(waiter) = get(py, &this.empty_waiter) {
                    waiter.call_method1(intern!(py, "set_exception"), (exc,))?;
                }
                return Ok(());
            }
        }
        Self::maybe_resume_protocol(slf)?; // may write more
        if !this.buffer.borrow().is_empty() {
            return Ok(());
        }
        this.unwatch(Direction::Write);
        if let Some(waiter) = get(py, &this.empty_waiter)
            && !waiter.call_method0(intern!(py, "done"))?.is_truthy()?
        {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        if this.phase.get() == Phase::Closing {
            this.phase.set(Phase::Lost);
            this.conn_lost.set(this.conn_lost.get() + 1);
            Self::call_connection_lost(slf, None)
        } else if this.eof.get() {
            this.shutdown_write()
        } else {
            Ok(())
        }
    }

    fn shutdown_write(&self) -> PyResult<()> {
        match self.with_socket(|s| s.shutdown(std::net::Shutdown::Write)) {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn close(slf: &Bound<'_, StreamTransport>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.is_closing() {
            return Ok(());
        }
        Self::uncork(slf)?;
        if this.is_closing() {
            return Ok(()); // the send failed: the transport is lost
        }
        this.phase.set(Phase::Closing);
        this.unwatch(Direction::Read);
        if this.buffer.borrow().is_empty() {
            this.phase.set(Phase::Lost);
            this.conn_lost.set(this.conn_lost.get() + 1);
            this.unwatch(Direction::Write);
            Self::queue_connection_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    /// `protocol.connection_lost(exc)`, once; then the socket is closed
    /// and the transport lets go of the loop, the protocol and the server.
    fn call_connection_lost(
        slf: &Bound<'_, StreamTransport>,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.lost_called.replace(true) {
            return Ok(());
        }
        this.unwatch(Direction::Read);
        this.unwatch(Direction::Write);
        let outcome = match get(py, &this.protocol) {
            Some(protocol) => protocol.call_method1(intern!(py, "connection_lost"), (exc,)).map(drop),
            None => Ok(()),
        };
        // Reported with the rest below: the socket is closed whatever happens.
        let unregistered = match get(py, &this.lp) {
            Some(lp) => unregister_transport(this.core.get(), &lp, this.fd, &this.public(py)),
            None => Ok(()),
        };
        let sock = this.sock.borrow_mut().take();
        let closed = match &sock {
            Some(sock) => crate::sock::close(sock.bind(py)),
            None => Ok(()),
        };
        drop(sock);
        put(py, &this.protocol, None);
        put(py, &this.on_data, None);
        put(py, &this.get_buffer, None);
        put(py, &this.lp, None);
        put(py, &this.context, None);
        let server = this.server.borrow_mut().take();
        let detached = match &server {
            Some(server) => detach(server.bind(py), &this.public(py)),
            None => Ok(()),
        };
        drop(server);
        put(py, &this.owner, None);
        let waiter = this.empty_waiter.borrow().as_ref().map(|w| w.clone_ref(py));
        if let Some(waiter) = waiter {
            let waiter = waiter.bind(py);
            if !waiter.call_method0(intern!(py, "done"))?.is_truthy()? {
                let err = PyConnectionError::new_err("Connection is closed by peer");
                waiter.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?;
            }
        }
        outcome.and(unregistered).and(closed).and(detached)
    }
}

fn logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("asyncio.log")?.getattr("logger")?.unbind()))
        .map(|l| l.bind(py).clone())
}

impl StreamTransport {
    /// The engine of `owner` over `sock`, with asyncio's
    /// `_SelectorSocketTransport` arguments: `extra` gets `socket` (a
    /// `TransportSocket`), `sockname` and, unless given, `peername`, and
    /// Nagle's algorithm is turned off for TCP, as asyncio does.
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        r#loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        extra: &Bound<'_, PyDict>,
        server: Option<&Bound<'_, PyAny>>,
        owner: &Bound<'_, PyAny>,
        kind: Option<&Kind>,
    ) -> PyResult<Self> {
        let core = crate::loop_base::core_of(r#loop)?;
        let fd = crate::sock::fileno(sock)?;
        if fd < 0 {
            return Err(PyValueError::new_err("the socket is closed"));
        }
        // `kind` (a plain socket's) makes getsockname/getpeername and
        // TCP_NODELAY native; anything else gets its own methods called.
        // `socket` is made when first asked for (`get_extra_info`).
        if !extra.contains(intern!(py, "sockname"))? {
            extra.set_item(intern!(py, "sockname"), address(sock, fd, kind, Side::Local)?)?;
        }
        if !extra.contains(intern!(py, "peername"))? {
            extra.set_item(intern!(py, "peername"), address(sock, fd, kind, Side::Peer)?)?;
        }
        set_nodelay(sock, fd, kind)?;
        let lp = core.get().open_loop()?.clone();
        let inner = Inner {
            fd,
            core,
            extra: extra.clone().unbind(),
            owner: RefCell::new(Some(owner.clone().unbind())),
            lp: RefCell::new(Some(r#loop.clone().unbind())),
            sock: RefCell::new(Some(sock.clone().unbind())),
            socket_object: sock.clone().unbind(),
            protocol: RefCell::new(Some(protocol.clone().unbind())),
            server: RefCell::new(server.map(|s| s.clone().unbind())),
            empty_waiter: RefCell::new(None),
            context: RefCell::new(None),
            phase: Cell::new(Phase::Open),
            eof: Cell::new(false),
            paused: Cell::new(false),
            buffered: Cell::new(false),
            read_methods_known: Cell::new(false),
            last_read: Cell::new(0),
            last_write_pass: Cell::new(0),
            writes_in_pass: Cell::new(0),
            coalesce: Cell::new(false),
            corked: Cell::new(false),
            on_data: RefCell::new(None),
            get_buffer: RefCell::new(None),
            protocol_paused: Cell::new(false),
            high_water: Cell::new(DEFAULT_HIGH_WATER),
            low_water: Cell::new(DEFAULT_HIGH_WATER / 4),
            conn_lost: Cell::new(0),
            lost_called: Cell::new(false),
            reading: Cell::new(false),
            writing: Cell::new(false),
            buffer: RefCell::new(WriteBuffer::default()),
            start: RefCell::new(None),
            lost: RefCell::new(None),
        };
        inner.set_protocol(protocol)?;
        Ok(StreamTransport { owned: LoopOwner::with_state(lp, inner) })
    }

    /// What asyncio's constructor does with the loop once the object
    /// exists: the loop's `_transports` entry, the server's `_attach`,
    /// then, in order on the loop, `connection_made`, the start of
    /// reading and the waiter's result.
    fn start(
        slf: &Bound<'_, Self>,
        waiter: Option<&Bound<'_, PyAny>>,
        result: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        let lp = get(py, &this.lp).ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))?;
        if let Some(server) = get(py, &this.server) {
            attach(&server, &this.public(py))?;
        }
        register_transport(this.core.get(), &lp, this.fd, &this.public(py))?;
        let protocol = get(py, &this.protocol).ok_or_else(|| PyRuntimeError::new_err("no protocol"))?;
        let waiter = waiter.filter(|w| !w.is_none());
        let result = result.unwrap_or_else(|| py.None().into_bound(py));
        if crate::loop_base::queues_natively(&lp)? {
            let queue = this.core.get().open_loop()?;
            let start = Start {
                protocol: protocol.unbind(),
                context: crate::handle::copy_context(py)?,
                waiter: waiter.map(|w| w.clone().unbind()),
                result: result.unbind(),
            };
            drop(this.start.replace(Some(start)));
            queue.call_soon_entry(TransportEntry { transport: slf.clone().unbind(), step: Step::Start });
            return Ok(());
        }
        this.call_soon(py, protocol.getattr(intern!(py, "connection_made"))?, this.public(py))?;
        crate::loop_base::call_soon(&lp, slf.getattr(intern!(py, "_start_reading"))?, PyTuple::empty(py))?;
        if let Some(waiter) = waiter {
            let set = set_result_function(py)?.clone();
            crate::loop_base::call_soon(&lp, set, PyTuple::new(py, [waiter.clone(), result])?)?;
        }
        Ok(())
    }
}

// ===== the finalizer of an unclosed transport =====
//
// An open transport's engine and its Python transport refer to each other
// (the engine holds it until the connection is lost), so a transport
// dropped unclosed is freed by the cyclic GC only, which calls the
// engine's `tp_finalize` first. A transport whose connection was lost is
// freed by reference counting, which calls no finalizer: the Python class
// has no `__del__`, so freeing it costs no finalizer call.

/// An engine the GC is about to free: if its connection was not lost, warns
/// as asyncio's transport does (`ResourceWarning: unclosed transport
/// <...>`, the Python transport as its source) and closes the socket if
/// it is still open. Off
/// the loop's thread nothing is done (the GC frees such an engine on its
/// own thread only: see `__traverse__`).
fn warn_unclosed(engine: &Bound<'_, StreamTransport>) -> PyResult<()> {
    let py = engine.py();
    let Ok(this) = inner(engine) else { return Ok(()) };
    // The transport holds its socket until the connection is lost
    // (asyncio's `_sock is not None`); the socket's own finalizer may have
    // closed it already, earlier in the same collection.
    let Some(sock) = get(py, &this.sock) else { return Ok(()) };
    let transport = this.public(py);
    // SAFETY: a live object (the source, also the one argument of the
    // format's `%R`), a NUL-terminated format, the GIL held; -1 means an
    // exception is set (a warnings filter turned it into an error). The C
    // API works while the interpreter shuts down, when importing
    // `warnings` would not.
    let warned = unsafe {
        pyo3::ffi::PyErr_ResourceWarning(
            transport.as_ptr(),
            1,
            c"unclosed transport %R".as_ptr(),
            transport.as_ptr(),
        )
    };
    if warned < 0 {
        return Err(PyErr::fetch(py));
    }
    if crate::sock::fileno(&sock)? < 0 {
        return Ok(());
    }
    crate::sock::close(&sock)
}

/// The engine type's `tp_finalize` (see [`warn_unclosed`]): what it
/// raises is reported as unraisable, the exception being raised (if any)
/// is kept.
///
/// # Safety
///
/// Called by CPython only, as `tp_finalize` of `StreamTransport`: the GIL
/// held and `obj` a live `StreamTransport` object.
unsafe extern "C" fn engine_finalize(obj: *mut pyo3::ffi::PyObject) {
    // SAFETY: CPython calls finalizers with the GIL held; the token does
    // not outlive this call.
    let py = unsafe { Python::assume_attached() };
    // Never unwind into CPython.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let raised = PyErr::take(py);
        // SAFETY: a live object borrowed for the call (see above).
        let engine = unsafe { Bound::from_borrowed_ptr(py, obj) };
        if let Ok(engine) = engine.cast::<StreamTransport>()
            && let Err(e) = warn_unclosed(engine)
        {
            e.write_unraisable(py, Some(engine.as_any()));
        }
        if let Some(e) = raised {
            e.restore(py);
        }
    }));
}

/// Gives the engine type its finalizer ([`engine_finalize`]), once, when
/// the module is initialised.
pub(crate) fn install_finalizer(py: Python<'_>) {
    let ty = py.get_type::<StreamTransport>();
    // SAFETY: a heap type PyO3 made (alive as long as the module), with the
    // GIL held; `tp_finalize` is read by the GC only, under the GIL.
    unsafe { (*ty.as_type_ptr()).tp_finalize = Some(engine_finalize) };
}

/// [`set_result_unless_cancelled`] as a Python function (what asyncio's
/// transport queues for its waiter).
fn set_result_function(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static SET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    SET.get_or_try_init(py, || {
        wrap_pyfunction!(set_result_unless_cancelled, py).map(|f| f.into_any().unbind())
    })
    .map(|f| f.bind(py))
}

/// asyncio's `futures._set_result_unless_cancelled(fut, result)`, the
/// callback that completes a transport's waiter: `fut.set_result(result)`
/// unless `fut` was cancelled (natively: no Python frame, no import).
#[pyfunction]
fn set_result_unless_cancelled(fut: &Bound<'_, PyAny>, result: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    if fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        return Ok(());
    }
    fut.call_method1(intern!(py, "set_result"), (result,)).map(drop)
}

/// A method of `evloop._loop._SocketTransport` that is its engine's (a
/// class attribute there, one per method): looked up on a transport, it
/// gets the engine's bound method and stores it in the transport's
/// `__dict__`, which later lookups find first (this is a non-data
/// descriptor). A transport pays only for the methods it uses, once each,
/// and a call runs no Python frame.
#[pyclass(frozen, module = "evloop._evloop", name = "EngineMethod")]
pub(crate) struct EngineMethod {
    name: Py<PyString>,
}

#[pymethods]
impl EngineMethod {
    #[new]
    fn new(name: Bound<'_, PyString>) -> Self {
        EngineMethod { name: name.unbind() }
    }

    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        instance: Option<&Bound<'py, PyAny>>,
        _owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let Some(instance) = instance.filter(|i| !i.is_none()) else {
            return Ok(slf.clone().into_any()); // looked up on the class
        };
        let name = slf.get().name.bind(py);
        let method = instance.getattr(intern!(py, "_native"))?.getattr(name)?;
        // Into the instance (this descriptor has no `__set__`): later
        // lookups find it there first.
        instance.setattr(name, &method)?;
        Ok(method)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<engine method {}>", self.name.bind(py))
    }
}

/// `loop._transports[fd] = transport`. asyncio's `WeakValueDictionary`
/// is written as its `__setitem__` does (a `KeyedRef` to the transport,
/// whose callback is the mapping's `_remove`, into its `data`) without
/// that method's and `KeyedRef`'s Python frames; while removals are
/// pending (an iteration of it is running), or for another mapping, its
/// own `__setitem__` runs.
///
/// # Errors
///
/// What the mapping raises.
pub(crate) fn register_transport(
    core: &Core,
    pyloop: &Bound<'_, PyAny>,
    fd: RawFd,
    transport: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = pyloop.py();
    let transports = pyloop.getattr(intern!(py, "_transports"))?;
    static KEYED_REF: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static REF_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if let Some(parts) = weak_mapping(core, &transports)?
        && parts.no_pending_removals(py)
    {
        let keyed_ref = cached_type(py, &KEYED_REF, "weakref", "KeyedRef")?;
        let ref_new = REF_NEW.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("weakref")?.getattr("ref")?.getattr("__new__")?.unbind())
        })?;
        let weak = ref_new.bind(py).call1((keyed_ref, transport, parts.remove.bind(py)))?;
        weak.setattr(intern!(py, "key"), fd)?;
        return parts.data.bind(py).set_item(fd, weak);
    }
    transports.set_item(fd, transport)
}

/// The parts of asyncio's `WeakValueDictionary` (a loop's `_transports`)
/// that [`register_transport`] and [`unregister_transport`] use, read once
/// per mapping: its `__init__` alone sets them.
pub(crate) struct WeakMapping {
    mapping: Py<PyAny>,
    data: Py<PyDict>,
    remove: Py<PyAny>,
    pending_removals: Py<PyList>,
    iterating: Py<PySet>,
}

impl WeakMapping {
    fn no_pending_removals(&self, py: Python<'_>) -> bool {
        self.pending_removals.bind(py).is_empty()
    }

    fn settled(&self, py: Python<'_>) -> bool {
        self.no_pending_removals(py) && self.iterating.bind(py).is_empty()
    }

    fn clone_ref(&self, py: Python<'_>) -> WeakMapping {
        WeakMapping {
            mapping: self.mapping.clone_ref(py),
            data: self.data.clone_ref(py),
            remove: self.remove.clone_ref(py),
            pending_removals: self.pending_removals.clone_ref(py),
            iterating: self.iterating.clone_ref(py),
        }
    }

    /// The Python objects it holds, for the GC.
    pub(crate) fn visit(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        visit(&self.mapping);
        visit(self.data.as_any());
        visit(&self.remove);
        visit(self.pending_removals.as_any());
        visit(self.iterating.as_any());
    }
}

/// The parts of `transports` if it is asyncio's `WeakValueDictionary`
/// (the core keeps those of the last one it saw); `None` for any other
/// mapping. A copy: no borrow of the core's cache outlives this call.
fn weak_mapping(core: &Core, transports: &Bound<'_, PyAny>) -> PyResult<Option<WeakMapping>> {
    let py = transports.py();
    let cache = core.transports_cache();
    let cached =
        cache.borrow().as_ref().filter(|parts| parts.mapping.is(transports)).map(|p| p.clone_ref(py));
    if cached.is_some() {
        return Ok(cached);
    }
    static MAPPING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    if !transports.get_type().is(cached_type(py, &MAPPING, "weakref", "WeakValueDictionary")?) {
        return Ok(None);
    }
    let parts = WeakMapping {
        mapping: transports.clone().unbind(),
        data: transports.getattr(intern!(py, "data"))?.cast_into::<PyDict>()?.unbind(),
        remove: transports.getattr(intern!(py, "_remove"))?.unbind(),
        pending_removals: transports
            .getattr(intern!(py, "_pending_removals"))?
            .cast_into::<PyList>()?
            .unbind(),
        iterating: transports.getattr(intern!(py, "_iterating"))?.cast_into::<PySet>()?.unbind(),
    };
    let copy = parts.clone_ref(py);
    let old = cache.replace(Some(parts));
    drop(old); // after the borrow: a decref may run Python code
    Ok(Some(copy))
}

/// Drops `loop._transports[fd]` when it is `transport`, whose socket is
/// about to be closed (the fd may be reused from then on). asyncio leaves
/// the entry to the weak reference's callback when the transport is
/// collected (a Python frame per connection); a closed transport's entry
/// answers nothing either way (`_ensure_fd_no_transport` ignores a closing
/// transport). Left to that callback while the mapping is iterated, or for
/// a mapping other than asyncio's.
///
/// # Errors
///
/// What reading the mapping raises.
fn unregister_transport(
    core: &Core,
    pyloop: &Bound<'_, PyAny>,
    fd: RawFd,
    transport: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = pyloop.py();
    let Ok(transports) = pyloop.getattr(intern!(py, "_transports")) else { return Ok(()) };
    let data = match weak_mapping(core, &transports)? {
        Some(parts) if parts.settled(py) => parts.data.bind(py).clone(),
        _ => return Ok(()),
    };
    let Some(weak) = data.get_item(fd)? else { return Ok(()) };
    if weak.call0()?.is(transport) {
        data.del_item(fd)?;
    }
    Ok(())
}

/// `evloop._loop._SocketTransport.__init__`, natively:
/// `init_stream_transport(owner, loop, sock, protocol, waiter, extra,
/// server)` makes `owner`'s engine, fills `owner`'s attributes (`_extra`,
/// `_rawsock` and `_thread` first, which its `__repr__` reads
/// whatever happens next; then `_native`, whose methods the class's
/// [`EngineMethod`]s bind on first use) and starts it: the loop's `_transports` entry, the server's `_attach`,
/// then, in order on the loop, `connection_made`, the start of reading
/// and the waiter's result.
///
/// # Errors
///
/// A closed socket (`ValueError`), a closed loop, or what asyncio's
/// constructor would raise (`setsockopt`'s `OSError`...).
#[pyfunction]
#[pyo3(signature = (owner, r#loop, sock, protocol, waiter = None, extra = None, server = None))]
pub(crate) fn init_stream_transport(
    owner: &Bound<'_, PyAny>,
    r#loop: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    waiter: Option<&Bound<'_, PyAny>>,
    extra: Option<Bound<'_, PyDict>>,
    server: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let kind = crate::sock::plain_kind(sock)?;
    let native = init(owner, r#loop, sock, protocol, extra, server, kind.as_ref())?;
    StreamTransport::start(&native, waiter, None)
}

/// Makes `owner`'s engine and fills `owner`'s attributes (see
/// [`init_stream_transport`]) with the socket's kind known (`None`: not
/// a plain `socket.socket`); the caller starts the engine.
fn init<'py>(
    owner: &Bound<'py, PyAny>,
    r#loop: &Bound<'py, PyAny>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    extra: Option<Bound<'py, PyDict>>,
    server: Option<&Bound<'py, PyAny>>,
    kind: Option<&Kind>,
) -> PyResult<Bound<'py, StreamTransport>> {
    let py = owner.py();
    let extra = extra.unwrap_or_else(|| PyDict::new(py));
    // `_extra` is asyncio's `BaseTransport` slot; the others are the
    // instance's own attributes.
    owner.setattr(intern!(py, "_extra"), &extra)?;
    owner.setattr(intern!(py, "_rawsock"), sock)?;
    owner.setattr(intern!(py, "_thread"), thread_ident(py)?)?;
    let server = server.filter(|s| !s.is_none());
    let native =
        Bound::new(py, StreamTransport::new(py, r#loop, sock, protocol, &extra, server, owner, kind)?)?;
    owner.setattr(intern!(py, "_native"), &native)?;
    Ok(native)
}

/// A new transport of class `cls` (`evloop._loop._SocketTransport`) over
/// `sock`, made without running its Python `__init__`: what the native
/// accept loop makes for each connection (`kind`: the socket's, when it
/// is a plain `socket.socket`).
///
/// # Errors
///
/// As [`init_stream_transport`].
pub(crate) fn new_stream_transport<'py>(
    cls: &Bound<'py, PyAny>,
    r#loop: &Bound<'py, PyAny>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    extra: Bound<'py, PyDict>,
    server: Option<&Bound<'py, PyAny>>,
    kind: Option<&Kind>,
) -> PyResult<Bound<'py, PyAny>> {
    let owner = crate::sock::new_instance(cls)?;
    let native = init(&owner, r#loop, sock, protocol, Some(extra), server, kind)?;
    StreamTransport::start(&native, None, None)?;
    Ok(owner)
}

/// A client connection's transport of class `cls` over the connected
/// `sock`, made as `cls(loop, sock, protocol, waiter)` would be, without
/// running its Python `__init__`, except that `waiter` is done with
/// `(transport, protocol)` (what `create_connection` returns) once
/// `connection_made` ran ([`crate::connect`]); `peername`, if known, is
/// not asked of the socket.
///
/// # Errors
///
/// As [`init_stream_transport`].
pub(crate) fn new_client_transport<'py>(
    cls: &Bound<'py, PyAny>,
    r#loop: &Bound<'py, PyAny>,
    sock: &Bound<'py, PyAny>,
    protocol: &Bound<'py, PyAny>,
    waiter: &Bound<'py, PyAny>,
    peername: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let kind = crate::sock::plain_kind(sock)?;
    let owner = crate::sock::new_instance(cls)?;
    let extra = match peername {
        Some(name) => {
            let extra = PyDict::new(py);
            extra.set_item(intern!(py, "peername"), name)?;
            Some(extra)
        }
        None => None,
    };
    let native = init(&owner, r#loop, sock, protocol, extra, None, kind.as_ref())?;
    let result = PyTuple::new(py, [&owner, protocol])?;
    StreamTransport::start(&native, Some(waiter), Some(result.into_any()))?;
    Ok(owner)
}

/// `threading.get_ident()`.
fn thread_ident(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: a plain query of the calling thread's id (what
    // `threading.get_ident` returns), with the GIL held.
    let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    Ok(ident.into_pyobject(py)?.into_any())
}

/// asyncio's `TransportSocket(sock)` (a wrapper whose `close`/`detach`
/// are not there), made without its Python `__init__`, which only sets
/// its one slot.
fn transport_socket<'py>(sock: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = sock.py();
    static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let cls = cached_type(py, &TYPE, "asyncio.trsock", "TransportSocket")?;
    let wrapper = crate::sock::new_instance(cls)?;
    wrapper.setattr(intern!(py, "_sock"), sock)?;
    Ok(wrapper)
}

/// Which end of a connection [`address`] names.
#[derive(Clone, Copy)]
enum Side {
    Local,
    Peer,
}

/// `sock.getsockname()` / `sock.getpeername()`, or `None` where they raise
/// `OSError` (asyncio's `extra` values). Native for a plain IP socket.
fn address<'py>(
    sock: &Bound<'py, PyAny>,
    fd: RawFd,
    kind: Option<&Kind>,
    side: Side,
) -> PyResult<Bound<'py, PyAny>> {
    let py = sock.py();
    if kind.is_some_and(|k| matches!(k.family, libc::AF_INET | libc::AF_INET6)) {
        let named = crate::sock::with_fd(py, fd, |s| match side {
            Side::Local => s.local_addr(),
            Side::Peer => s.peer_addr(),
        });
        // A failed call (not connected...) is None, as where Python's
        // method raises `OSError`.
        let none = || Ok(py.None().into_bound(py));
        return match named {
            Ok(addr) => crate::pysock::to_python(py, &addr).map_or_else(none, |t| t.map(Bound::into_any)),
            Err(_) => none(),
        };
    }
    let method = match side {
        Side::Local => intern!(py, "getsockname"),
        Side::Peer => intern!(py, "getpeername"),
    };
    match sock.call_method0(method) {
        Ok(name) => Ok(name),
        Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(py.None().into_bound(py)),
        Err(e) => Err(e),
    }
}

/// asyncio's `_set_nodelay(sock)`: `TCP_NODELAY` on a TCP socket (small
/// writes go at once). Native for a plain socket; asyncio's function for
/// anything else.
fn set_nodelay(sock: &Bound<'_, PyAny>, fd: RawFd, kind: Option<&Kind>) -> PyResult<()> {
    let py = sock.py();
    let Some(kind) = kind else {
        let base_events = py.import(intern!(py, "asyncio.base_events"))?;
        return base_events.call_method1(intern!(py, "_set_nodelay"), (sock,)).map(drop);
    };
    let tcp = matches!(kind.family, libc::AF_INET | libc::AF_INET6)
        && kind.ty == libc::SOCK_STREAM
        && kind.proto == libc::IPPROTO_TCP;
    if tcp {
        match crate::sock::with_fd(py, fd, |s| s.set_tcp_nodelay(true)) {
            Ok(()) => {}
            Err(crate::sock::Try::Failed(e)) => return Err(e),
            // setsockopt(2) never waits.
            Err(_) => unreachable!("setsockopt does not fail with EAGAIN"),
        }
    }
    Ok(())
}

#[pymethods]
impl StreamTransport {
    /// Starts reading if the transport reads (not closing, not paused):
    /// what asyncio's transport queues after `connection_made`.
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = inner(slf)?;
        if !this.is_reading() || this.reading.get() {
            return Ok(());
        }
        put(slf.py(), &this.context, Some(crate::handle::copy_context(slf.py())?));
        Inner::watch(slf, Direction::Read)
    }

    /// The queued start, run by the `Handle` debug mode times in place of
    /// the transport's entry (see [`TransportEntry`]).
    fn _run_start(slf: &Bound<'_, Self>) -> PyResult<()> {
        Inner::run_start(slf)
    }

    /// The queued `_call_connection_lost`, run by the `Handle` debug mode
    /// times in place of the transport's entry.
    fn _run_lost(slf: &Bound<'_, Self>) -> PyResult<()> {
        Inner::run_lost(slf)
    }

    /// Sends `data` (bytes, bytearray or memoryview) at once as far as
    /// the socket takes it, and buffers the rest (a copy: the caller may
    /// reuse its object). Raises `RuntimeError` after `write_eof()` or
    /// while a sendfile runs; dropped silently once the connection is
    /// lost, as asyncio does (with a warning after 5 such writes).
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if let Ok(bytes) = data.cast::<PyBytes>() {
            if !this.writable(py, "write")? || bytes.as_bytes().is_empty() {
                return Ok(());
            }
            let sent = this.write_data(bytes.as_bytes());
            return Inner::after_send(slf, sent);
        }
        if !(data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            let kind = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{kind}'"
            )));
        }
        if !this.writable(py, "write")? {
            return Ok(());
        }
        let view = PyUntypedBuffer::get(data)?;
        if !view.is_c_contiguous() {
            return Err(PyTypeError::new_err("a C-contiguous bytes-like object is required"));
        }
        // SAFETY: a C-contiguous export of `len_bytes()` bytes, held until
        // `write_data` returns; no Python code runs meanwhile (the GIL
        // is held), so nothing writes to or resizes it.
        let bytes = unsafe { std::slice::from_raw_parts(view.buf_ptr().cast::<u8>(), view.len_bytes()) };
        if bytes.is_empty() {
            return Ok(());
        }
        let sent = this.write_data(bytes);
        drop(view);
        Inner::after_send(slf, sent)
    }

    /// Writes each bytes-like object of `list_of_data` in order, as one
    /// write (one `send` if the buffer is empty).
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.eof.get() {
            return Err(PyRuntimeError::new_err("Cannot call writelines() after write_eof()"));
        }
        if this.empty_waiter.borrow().is_some() {
            return Err(PyRuntimeError::new_err("unable to writelines; sendfile is in progress"));
        }
        let mut joined = Vec::new();
        for item in list_of_data.try_iter()? {
            let item = item?;
            let view = PyUntypedBuffer::get(&item)?;
            if !view.is_c_contiguous() {
                return Err(PyTypeError::new_err("a C-contiguous bytes-like object is required"));
            }
            // SAFETY: a C-contiguous export of `len_bytes()` bytes, held
            // while copied, with the GIL held and no Python code between.
            let bytes = unsafe { std::slice::from_raw_parts(view.buf_ptr().cast::<u8>(), view.len_bytes()) };
            joined.extend_from_slice(bytes);
        }
        if joined.is_empty() || !this.writable(py, "writelines")? {
            return Ok(());
        }
        let sent = this.write_data(&joined);
        Inner::after_send(slf, sent)
    }

    /// Closes the write side once the buffer is flushed
    /// (`shutdown(SHUT_WR)`); reading goes on.
    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = inner(slf)?;
        if this.is_closing() || this.eof.get() {
            return Ok(());
        }
        Inner::uncork(slf)?;
        if this.is_closing() {
            return Ok(()); // the send failed: the transport is lost
        }
        this.eof.set(true);
        if this.buffer.borrow().is_empty() { this.shutdown_write() } else { Ok(()) }
    }

    /// Always true: a stream socket can half-close.
    fn can_write_eof(&self) -> bool {
        true
    }

    /// Stops reading and closes once the buffer is flushed; then
    /// `connection_lost(None)` runs (on the loop's next pass if nothing
    /// was buffered).
    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Inner::close(slf)
    }

    /// Closes at once, dropping whatever is buffered;
    /// `connection_lost(None)` runs on the loop's next pass.
    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        // What was written before went out on asyncio's loop already.
        Inner::uncork(slf)?;
        Inner::force_close(slf, None)
    }

    #[pyo3(name = "is_closing")]
    fn py_is_closing(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.is_closing())
    }

    #[pyo3(name = "is_reading")]
    fn py_is_reading(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.is_reading())
    }

    /// Stops calling the protocol with data until `resume_reading()`.
    fn pause_reading(&self) -> PyResult<()> {
        let this = self.inner()?;
        if !this.is_reading() {
            return Ok(());
        }
        this.paused.set(true);
        this.unwatch(Direction::Read);
        Ok(())
    }

    /// Reads again after `pause_reading()`, in a copy of the caller's
    /// context (as asyncio's new reader handle).
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = inner(slf)?;
        if this.is_closing() || !this.paused.get() {
            return Ok(());
        }
        this.paused.set(false);
        Self::_start_reading(slf)
    }

    /// `extra[name]`, or `default`: `socket` (a `TransportSocket`, which
    /// neither closes nor detaches the fd), `sockname`, `peername`, and
    /// what the loop added (`peercert`... under TLS).
    #[pyo3(signature = (name, default = None))]
    fn get_extra_info<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = self.inner()?;
        let extra = this.extra.bind(py);
        if let Some(v) = extra.get_item(name)? {
            return Ok(v);
        }
        if name.is(intern!(py, "socket")) || name.eq(intern!(py, "socket"))? {
            // asyncio's `TransportSocket(sock)`, made on first request.
            let wrapper = transport_socket(this.socket_object.bind(py))?;
            extra.set_item(intern!(py, "socket"), &wrapper)?;
            return Ok(wrapper);
        }
        Ok(default.unwrap_or_else(|| py.None().into_bound(py)))
    }

    /// Hands the connection to another protocol; reads from the next one
    /// on go to it (`get_buffer`/`buffer_updated` for a
    /// `BufferedProtocol`).
    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = self.inner()?;
        this.set_protocol(protocol)?;
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.protocol).map(Bound::unbind))
    }

    /// Bytes buffered, not sent yet.
    fn get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let this = inner(slf)?;
        Inner::uncork(slf)?;
        Ok(this.buffer.borrow().len())
    }

    /// `(low, high)`: the protocol is paused above `high` buffered bytes
    /// and resumed at `low` or below.
    fn get_write_buffer_limits(&self) -> PyResult<(usize, usize)> {
        let this = self.inner()?;
        Ok((this.low_water.get(), this.high_water.get()))
    }

    /// asyncio's defaults: `high` 64 KiB, `low` a quarter of `high`
    /// (or `high` 4 × `low` if only `low` is given). Raises `ValueError`
    /// unless `high >= low >= 0`; pauses the protocol at once if the
    /// buffer is already above the new mark.
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let this = inner(slf)?;
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, None) => DEFAULT_HIGH_WATER as i64,
            (None, Some(l)) => l.saturating_mul(4),
        };
        let low = low.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!("high ({high}) must be >= low ({low}) must be >= 0")));
        }
        this.high_water.set(high as usize);
        this.low_water.set(low as usize);
        Inner::uncork(slf)?;
        Inner::maybe_pause_protocol(slf)
    }

    fn _force_close(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        Inner::force_close(slf, (!exc.is_none()).then_some(exc))
    }

    #[pyo3(signature = (exc, message = "Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        Inner::fatal_error(slf, exc, message)
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        Inner::call_connection_lost(slf, (!exc.is_none()).then_some(exc))
    }

    /// A future done once the buffer is empty (sendfile waits for it
    /// before sending on the socket itself).
    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = inner(slf)?;
        if this.empty_waiter.borrow().is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        Inner::uncork(slf)?;
        let lp = get(py, &this.lp).ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))?;
        let fut = lp.call_method0(intern!(py, "create_future"))?;
        if this.buffer.borrow().is_empty() {
            fut.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        put(py, &this.empty_waiter, Some(fut.clone().unbind()));
        Ok(fut.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
        let this = self.inner()?;
        put(py, &this.empty_waiter, None);
        Ok(())
    }

    #[getter]
    fn _sock_fd(&self) -> PyResult<RawFd> {
        let this = self.inner()?;
        Ok(this.fd)
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.sock).map(Bound::unbind))
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.lp).map(Bound::unbind))
    }

    #[getter]
    fn _protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.protocol).map(Bound::unbind))
    }

    #[getter]
    fn _server(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.server).map(Bound::unbind))
    }

    #[getter]
    fn _extra(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let this = self.inner()?;
        Ok(this.extra.clone_ref(py))
    }

    #[getter]
    fn _closing(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.is_closing())
    }

    #[getter]
    fn _conn_lost(&self) -> PyResult<u32> {
        let this = self.inner()?;
        Ok(this.conn_lost.get())
    }

    #[getter]
    fn _eof(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.eof.get())
    }

    #[getter]
    fn _paused(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.paused.get())
    }

    #[getter]
    fn _protocol_paused(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.protocol_paused.get())
    }

    #[getter]
    fn _empty_waiter(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let this = self.inner()?;
        Ok(get(py, &this.empty_waiter).map(Bound::unbind))
    }

    /// Whether the core watches the fd for reading / writing (for repr).
    #[getter]
    fn _read_polling(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.reading.get())
    }

    #[getter]
    fn _write_polling(&self) -> PyResult<bool> {
        let this = self.inner()?;
        Ok(this.writing.get())
    }

    /// Off the loop's thread (a GC run started by another thread) nothing
    /// is visited: the transport then looks referenced from outside and is
    /// kept, to be collected by a GC run on its own thread, where it may
    /// be dropped.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(this) = self.owned.state() else { return Ok(()) };
        visit.call(&this.core)?;
        visit.call(&this.extra)?;
        visit.call(&this.socket_object)?;
        for slot in [
            &this.owner,
            &this.lp,
            &this.sock,
            &this.protocol,
            &this.server,
            &this.empty_waiter,
            &this.context,
        ] {
            if let Ok(slot) = slot.try_borrow()
                && let Some(obj) = &*slot
            {
                visit.call(obj)?;
            }
        }
        if let Ok(start) = this.start.try_borrow()
            && let Some(start) = &*start
        {
            crate::visit_each(&visit, |f| start.visit(f))?;
        }
        if let Ok(lost) = this.lost.try_borrow()
            && let Some(lost) = &*lost
        {
            crate::visit_each(&visit, |f| lost.visit(f))?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let Some(this) = self.owned.state() else { return };
        for slot in [
            &this.owner,
            &this.lp,
            &this.protocol,
            &this.on_data,
            &this.get_buffer,
            &this.server,
            &this.empty_waiter,
            &this.context,
        ] {
            if let Ok(mut slot) = slot.try_borrow_mut() {
                let old = slot.take();
                drop(slot);
                drop(old);
            }
        }
        let start = this.start.try_borrow_mut().ok().and_then(|mut s| s.take());
        let lost = this.lost.try_borrow_mut().ok().and_then(|mut l| l.take());
        drop((start, lost));
    }
}

/// Runs the transport whose fd the core found ready in `direction`, in
/// its context for reads; what the protocol lets through goes where
/// asyncio's `Handle._run` sends it.
pub(crate) fn on_ready(
    py: Python<'_>,
    state: &Rc<RunState>,
    transport: &Bound<'_, StreamTransport>,
    direction: Direction,
) {
    // The core runs callbacks on the loop's thread only.
    let Ok(this) = inner(transport) else { return };
    let outcome = match direction {
        Direction::Read => match get(py, &this.context) {
            Some(context) => {
                crate::handle::run_in_context(py, &context, || Inner::read_ready(transport, state))
                    .unwrap_or_else(|| Inner::read_ready(transport, state))
            }
            None => Inner::read_ready(transport, state),
        },
        Direction::Write => Inner::write_ready(transport),
    };
    if let Err(e) = outcome {
        escaped(py, state, this, e);
    }
}

/// The end of a pass (or of a run): every corked transport of the run
/// sends its writes ([`Inner::uncork`]), those that protocol callbacks
/// cork meanwhile too. A failure goes to the loop's exception handler
/// as a callback's would; the first `KeyboardInterrupt`/`SystemExit` is
/// returned, for the caller to end the run with.
pub(crate) fn uncork_all(py: Python<'_>, state: &Rc<RunState>) -> Option<PyErr> {
    let mut base = None;
    loop {
        let corked = std::mem::take(&mut *state.corked.borrow_mut());
        if corked.is_empty() {
            return base;
        }
        for transport in corked {
            let transport = transport.bind(py);
            let Err(e) = Inner::uncork(transport) else { continue };
            if is_base(py, &e) {
                base.get_or_insert(e);
            } else if let Ok(this) = inner(transport) {
                escaped(py, state, this, e);
            }
        }
    }
}

/// What asyncio's `Handle._run` does with an exception a callback let
/// through: `KeyboardInterrupt`/`SystemExit` end the run, the rest goes
/// to the loop's exception handler.
fn escaped(py: Python<'_>, state: &Rc<RunState>, this: &Inner, e: PyErr) {
    if is_base(py, &e) {
        return interrupt_with(state, e, None);
    }
    let reported = (|| -> PyResult<()> {
        let lp = match get(py, &this.lp) {
            Some(lp) => lp,
            None => this.core.get().pyloop(py)?.into_bound(py),
        };
        let transport = this.public(py);
        let ctx = PyDict::new(py);
        ctx.set_item(intern!(py, "message"), format!("Exception in callback {}", transport.repr()?))?;
        ctx.set_item(intern!(py, "exception"), e.value(py))?;
        ctx.set_item(intern!(py, "transport"), transport)?;
        lp.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    })();
    if let Err(e) = reported {
        interrupt_with(state, e, None);
    }
}

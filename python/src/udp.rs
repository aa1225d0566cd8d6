//! A native datagram transport (`loop.create_datagram_endpoint`):
//! asyncio's `_SelectorDatagramTransport` in Rust, calling a Python
//! `DatagramProtocol`. `_loop.py`'s `_make_datagram_transport` builds it,
//! so asyncio's argument handling (families, `local_addr`/`remote_addr`,
//! `reuse_port`, `allow_broadcast`, `sock=`) is unchanged.
//!
//! Invariants:
//! - One datagram per readiness event, as asyncio: `recvfrom` then
//!   `protocol.datagram_received(data, addr)` (or `error_received(exc)`
//!   for an `OSError`), in the context the reader was started in, with no
//!   borrow held while the protocol runs (it may call any method here).
//! - `sendto` tries at once while nothing is buffered; what the socket
//!   refuses is queued whole (as `bytes`) and sent, in order, when the
//!   socket is writable, with asyncio's write-buffer flow control
//!   (`pause_writing` above the high-water mark, `resume_writing` at the
//!   low one).
//! - The transport is its fd's reader (and writer while it has a queue)
//!   in the core's watcher map; `close`/`abort` take it out, and the
//!   socket is closed in `_call_connection_lost`, after the protocol's
//!   `connection_lost`. A transport dropped unclosed warns
//!   (`ResourceWarning`) and closes its socket, as asyncio's `__del__`.
//! - Only exact `socket.socket` objects of the IP families get the direct
//!   syscalls and the address cache; other sockets (Unix datagram,
//!   wrappers) get their own `recvfrom`/`sendto`/`send` called.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyKeyboardInterrupt, PyOSError, PyResourceWarning, PySystemExit,
    PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use socket2::{SockAddr, SockRef};

use crate::{Core, Direction, RunState, Watcher, interrupt_with};

/// asyncio's `_SelectorTransport.max_size`: the largest datagram read.
const MAX_SIZE: usize = 256 * 1024;

/// asyncio's `FlowControlMixin` default high-water mark (64 KiB).
const HIGH_WATER: usize = 64 * 1024;

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// A datagram waiting for the socket to be writable, and its address
/// (`None`: the connected peer).
struct Queued {
    data: Py<PyBytes>,
    addr: Option<Py<PyAny>>,
}

/// The last peer seen, in both forms: an echo server answering the
/// address `datagram_received` gave it converts nothing either way.
struct Peer {
    raw: SockAddr,
    py: Py<PyAny>,
}

/// asyncio's datagram transport, native. Made by the loop
/// (`create_datagram_endpoint`), never by user code, inside `_loop.py`'s
/// `_DatagramTransport` (an `asyncio.DatagramTransport`, as `isinstance`
/// checks want), whose methods are this object's bound methods.
#[pyclass(frozen, unsendable, weakref, module = "evloop._evloop")]
pub(crate) struct DatagramTransport {
    core: Py<Core>,
    pyloop: Py<PyAny>,
    fd: RawFd,
    /// The socket object; `None` once closed (`_call_connection_lost`).
    sock: RefCell<Option<Py<PyAny>>>,
    protocol: RefCell<Option<Py<PyAny>>>,
    /// `remote_addr`: the only address `sendto` accepts, if set.
    address: Option<Py<PyAny>>,
    /// Whether the socket is connected (`extra["peername"]` is set):
    /// then `send`, not `sendto`.
    connected: bool,
    /// `AF_INET`/`AF_INET6` on an exact `socket.socket`: direct syscalls.
    native_family: Option<i32>,
    /// The `asyncio.DatagramTransport` the protocol knows (`_loop.py`'s
    /// `_DatagramTransport`, whose methods are this object's): named in
    /// exception-handler contexts; dropped with the protocol.
    owner: RefCell<Option<Py<PyAny>>>,
    /// The context the protocol's read callbacks run in (the reader's,
    /// as asyncio's `add_reader` handle copies it).
    context: RefCell<Option<Py<PyAny>>>,
    queue: RefCell<VecDeque<Queued>>,
    buffer_size: Cell<usize>,
    /// Bytes counted per queued datagram beyond its data (8 from 3.13 on,
    /// as asyncio counts the UDP header there).
    header_size: usize,
    /// Whether `sendto(b"")` sends an empty datagram (3.13 on) or
    /// nothing (3.11, 3.12).
    sends_empty: bool,
    closing: Cell<bool>,
    conn_lost: Cell<u32>,
    reading: Cell<bool>,
    writing: Cell<bool>,
    paused: Cell<bool>,
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    peer: RefCell<Option<Peer>>,
}

fn is_base(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py)
}

fn would_block(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py)
}

/// The Python `OSError` of an `io::Error` (`OSError(errno, strerror)`
/// picks the subclass: `ConnectionRefusedError`…).
fn os_error(err: &std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => {
            // SAFETY: strerror returns a valid C string for any errno;
            // it is copied at once, with the GIL held (no other thread
            // of this program calls strerror meanwhile through Python).
            let text =
                unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) }.to_string_lossy().into_owned();
            PyOSError::new_err((errno, text))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

/// Runs `f` on the socket whose fd is `fd`, as a `SockRef`.
fn with_fd<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> std::io::Result<R>) -> std::io::Result<R> {
    // SAFETY: `fd` is the fd of the socket object the transport holds
    // (`sock` is `Some`, checked by every caller), and the GIL is held
    // from that check to the end of this call with no Python code run in
    // between: the socket cannot be closed meanwhile, so the fd stays
    // open for the borrow, which ends with `f`.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&borrowed))
}

#[pymethods]
impl DatagramTransport {
    /// Made by `_make_datagram_transport` (which registers it in the
    /// loop's `_transports` and schedules `connection_made` and
    /// `_start_reading`, as asyncio's `__init__` does).
    #[new]
    #[pyo3(signature = (pyloop, sock, protocol, address, extra, owner))]
    fn new(
        py: Python<'_>,
        pyloop: Py<PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: Py<PyAny>,
        address: Option<Py<PyAny>>,
        extra: &Bound<'_, PyDict>,
        owner: Py<PyAny>,
    ) -> PyResult<Self> {
        let core: Py<Core> = crate::loop_base::core_of(pyloop.bind(py))?;
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let connected = match extra.get_item(intern!(py, "peername"))? {
            Some(peer) => peer.is_truthy()?,
            None => false,
        };
        let family: i32 = sock.getattr(intern!(py, "family"))?.extract()?;
        let plain = sock.get_type().is(py.import(intern!(py, "socket"))?.getattr(intern!(py, "socket"))?);
        let native_family =
            (plain && (family == libc::AF_INET || family == libc::AF_INET6)).then_some(family);
        let version: (u8, u8) = (py.version_info().major, py.version_info().minor);
        let new_style = version >= (3, 13);
        let address = address.filter(|a| a.bind(py).is_truthy().unwrap_or(true));
        Ok(DatagramTransport {
            core,
            pyloop,
            fd,
            sock: RefCell::new(Some(sock.clone().unbind())),
            protocol: RefCell::new(Some(protocol)),
            address,
            connected,
            native_family,
            owner: RefCell::new(Some(owner)),
            context: RefCell::new(None),
            queue: RefCell::new(VecDeque::new()),
            buffer_size: Cell::new(0),
            header_size: if new_style { 8 } else { 0 },
            sends_empty: new_style,
            closing: Cell::new(false),
            conn_lost: Cell::new(0),
            reading: Cell::new(false),
            writing: Cell::new(false),
            paused: Cell::new(false),
            high_water: Cell::new(HIGH_WATER),
            low_water: Cell::new(HIGH_WATER / 4),
            peer: RefCell::new(None),
        })
    }

    /// Starts reading (scheduled after `connection_made`, as asyncio's
    /// `_add_reader`): from now on each datagram goes to the protocol.
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        if this.closing.get() || this.reading.get() || this.sock.borrow().is_none() {
            return Ok(());
        }
        drop(this.context.replace(Some(crate::handle::copy_context(py)?)));
        this.watch(slf, Direction::Read)?;
        this.reading.set(true);
        Ok(())
    }

    /// asyncio's `DatagramTransport.sendto`: sends at once if nothing is
    /// queued, else queues `data` (copied) for when the socket is
    /// writable.
    ///
    /// Raises `TypeError` for data that is not `bytes`, `bytearray` or
    /// `memoryview`, and `ValueError` for an address other than
    /// `remote_addr` on a connected endpoint.
    #[pyo3(signature = (data, addr = None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            let kind = data.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{kind}'"
            )));
        }
        let len = data.len()?;
        if len == 0 && !this.sends_empty {
            return Ok(());
        }
        let mut addr = addr.filter(|a| !a.is_none());
        if let Some(address) = &this.address {
            let address = address.bind(py);
            if let Some(a) = &addr
                && !a.eq(address)?
            {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
            addr = Some(address.clone());
        }
        if this.conn_lost.get() > 0 && this.address.is_some() {
            if this.conn_lost.get() >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                logger(py)?.call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
            }
            this.conn_lost.set(this.conn_lost.get() + 1);
            return Ok(());
        }
        if this.queue.borrow().is_empty() {
            match this.send_one(py, data, addr.as_ref()) {
                Ok(true) => return Ok(()),
                Ok(false) => this.watch(slf, Direction::Write)?,
                Err(e) if is_base(py, &e) => return Err(e),
                Err(e) if e.is_instance_of::<PyOSError>(py) => {
                    return this.protocol_call(py, intern!(py, "error_received"), (e.into_value(py),));
                }
                Err(e) => {
                    this.fatal_error(slf, e, "Fatal write error on datagram transport")?;
                    return Ok(());
                }
            }
        }
        // Immutable from here on (`bytes(data)`: no copy of a `bytes`).
        let copy = py.get_type::<PyBytes>().call1((data,))?.cast_into::<PyBytes>()?;
        this.queue.borrow_mut().push_back(Queued { data: copy.unbind(), addr: addr.map(Bound::unbind) });
        this.buffer_size.set(this.buffer_size.get() + len + this.header_size);
        this.maybe_pause_protocol(slf)
    }

    /// Closes the transport: no more reading; queued datagrams are still
    /// sent, then `connection_lost(None)` runs (on the next pass) and the
    /// socket is closed. Idempotent.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.borrow();
        if this.closing.get() {
            return Ok(());
        }
        this.closing.set(true);
        this.unwatch(py, Direction::Read);
        if this.queue.borrow().is_empty() {
            this.conn_lost.set(this.conn_lost.get() + 1);
            this.unwatch(py, Direction::Write);
            this.call_soon_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    /// Closes the transport at once: queued datagrams are dropped, then
    /// `connection_lost(None)` runs (on the next pass).
    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.borrow().force_close(slf, slf.py().None().into_bound(slf.py()))
    }

    fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Bytes queued, waiting for the socket (asyncio counts the 8-byte
    /// UDP header per datagram from 3.13 on).
    fn get_write_buffer_size(&self) -> usize {
        self.buffer_size.get()
    }

    /// `(low, high)`: the write-buffer marks of flow control.
    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (self.low_water.get(), self.high_water.get())
    }

    /// asyncio's `set_write_buffer_limits(high=None, low=None)`: 64 KiB
    /// and a quarter of it by default.
    ///
    /// Raises `ValueError` unless `high >= low >= 0`.
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, Some(l)) => 4 * l,
            (None, None) => HIGH_WATER as i64,
        };
        let low = low.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!("high ({high}) must be >= low ({low}) must be >= 0")));
        }
        let this = slf.borrow();
        this.high_water.set(high as usize);
        this.low_water.set(low as usize);
        this.maybe_pause_protocol(slf)
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol.borrow().as_ref().map(|p| p.clone_ref(py))
    }

    /// The socket object, `None` once closed (asyncio's `_sock`).
    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.sock.borrow().as_ref().map(|s| s.clone_ref(py))
    }

    fn set_protocol(&self, protocol: Py<PyAny>) {
        drop(self.protocol.replace(Some(protocol)));
    }

    /// The loop's `_call_connection_lost`: `protocol.connection_lost(exc)`,
    /// then the socket is closed and the protocol forgotten.
    fn _call_connection_lost(&self, py: Python<'_>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let outcome = self.protocol_call(py, intern!(py, "connection_lost"), (exc,));
        let sock = self.sock.borrow_mut().take();
        let closed = match &sock {
            Some(sock) => sock.bind(py).call_method0(intern!(py, "close")).map(drop),
            None => Ok(()),
        };
        drop(sock);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        let context = self.context.borrow_mut().take();
        drop(context);
        let peer = self.peer.borrow_mut().take();
        drop(peer);
        let owner = self.owner.borrow_mut().take();
        drop(owner);
        outcome.and(closed)
    }

    fn __repr__(&self) -> PyResult<String> {
        let state = if self.sock.borrow().is_none() {
            " closed".to_string()
        } else if self.closing.get() {
            " closing".to_string()
        } else {
            String::new()
        };
        let read = if self.reading.get() && !self.closing.get() { "polling" } else { "idle" };
        let write = if self.writing.get() { "polling" } else { "idle" };
        Ok(format!(
            "<evloop.DatagramTransport{state} fd={} read={read} write=<{write}, bufsize={}>>",
            self.fd,
            self.buffer_size.get()
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        visit.call(&self.pyloop)?;
        if let Some(a) = &self.address {
            visit.call(a)?;
        }
        for cell in [&self.sock, &self.protocol, &self.context, &self.owner] {
            if let Ok(v) = cell.try_borrow()
                && let Some(v) = &*v
            {
                visit.call(v)?;
            }
        }
        if let Ok(peer) = self.peer.try_borrow()
            && let Some(peer) = &*peer
        {
            visit.call(&peer.py)?;
        }
        if let Ok(queue) = self.queue.try_borrow() {
            for q in queue.iter() {
                visit.call(&q.data)?;
                if let Some(a) = &q.addr {
                    visit.call(a)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // The socket stays: it is closed (or warned about) when the
        // transport goes, as asyncio's `__del__` does.
        let protocol = self.protocol.try_borrow_mut().map(|mut p| p.take());
        drop(protocol);
        let context = self.context.try_borrow_mut().map(|mut c| c.take());
        drop(context);
        let queue = self.queue.try_borrow_mut().map(|mut q| std::mem::take(&mut *q));
        drop(queue);
        let peer = self.peer.try_borrow_mut().map(|mut p| p.take());
        drop(peer);
        let owner = self.owner.try_borrow_mut().map(|mut o| o.take());
        drop(owner);
    }
}

impl Drop for DatagramTransport {
    fn drop(&mut self) {
        let Some(sock) = self.sock.get_mut().take() else { return };
        Python::attach(|py| {
            let message = format!("unclosed transport <evloop.DatagramTransport fd={}>", self.fd);
            if let Err(e) = PyErr::warn(
                py,
                &py.get_type::<PyResourceWarning>(),
                &std::ffi::CString::new(message).unwrap_or_default(),
                1,
            ) {
                e.write_unraisable(py, None);
            }
            if let Err(e) = sock.bind(py).call_method0(intern!(py, "close")) {
                e.write_unraisable(py, None);
            }
        });
    }
}

fn logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import(intern!(py, "asyncio.log"))?.getattr(intern!(py, "logger"))
}

impl DatagramTransport {
    /// Makes the transport its fd's watcher in `direction`.
    fn watch(&self, slf: &Bound<'_, Self>, direction: Direction) -> PyResult<()> {
        let core = self.core.get();
        let lp = core.open_loop()?;
        core.watch_anew(lp, self.fd, direction, Watcher::Datagram(slf.clone().unbind()))?;
        if direction == Direction::Write {
            self.writing.set(true);
        }
        Ok(())
    }

    /// Stops watching in `direction`, if the transport is the watcher.
    fn unwatch(&self, py: Python<'_>, direction: Direction) {
        if direction == Direction::Write {
            self.writing.set(false);
        } else {
            self.reading.set(false);
        }
        let core = self.core.get();
        let Ok(lp) = core.lp.check() else { return };
        let ours = matches!(
            core.state().watchers.borrow().get(&(self.fd, direction)),
            Some(Watcher::Datagram(t)) if std::ptr::eq(&*t.bind(py).borrow(), self)
        );
        if !ours {
            return;
        }
        match direction {
            Direction::Read => lp.remove_reader(self.fd),
            Direction::Write => lp.remove_writer(self.fd),
        };
        drop(core.set_watcher(self.fd, direction, None)); // after the borrow
    }

    /// One send of `data` to `addr` (the connected peer if `None`):
    /// `Ok(false)` if the socket would block.
    fn send_one(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let sock = match &*self.sock.borrow() {
            Some(s) => s.clone_ref(py),
            None => return Err(os_error(&std::io::Error::from_raw_os_error(libc::EBADF))),
        };
        let sock = sock.bind(py);
        if let Some(family) = self.native_family {
            let outcome = if let Ok(bytes) = data.cast::<PyBytes>() {
                self.send_native(bytes.as_bytes(), addr, family)
            } else {
                match PyUntypedBuffer::get(data) {
                    Ok(buf) if buf.is_c_contiguous() => {
                        // SAFETY: a C-contiguous export of `len_bytes()`
                        // bytes, held for the call; the GIL is held and no
                        // Python code runs while the slice is used.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), buf.len_bytes())
                        };
                        self.send_native(bytes, addr, family)
                    }
                    _ => None,
                }
            };
            match outcome {
                Some(Ok(_)) => return Ok(true),
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(false);
                }
                Some(Err(e)) => return Err(os_error(&e)),
                None => {} // an address Python's sendto resolves
            }
        }
        let sent = if self.connected {
            sock.call_method1(intern!(py, "send"), (data,))
        } else {
            sock.call_method1(intern!(py, "sendto"), (data, addr))
        };
        match sent {
            Ok(_) => Ok(true),
            Err(e) if would_block(py, &e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `send`/`sendto` on the fd; `None` if the address needs Python's
    /// resolution.
    fn send_native(
        &self,
        bytes: &[u8],
        addr: Option<&Bound<'_, PyAny>>,
        family: i32,
    ) -> Option<std::io::Result<usize>> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        if self.connected {
            return Some(with_fd(self.fd, |s| s.send_with_flags(bytes, flags)));
        }
        let to = self.raw_addr(addr?, family)?;
        Some(with_fd(self.fd, |s| s.send_to_with_flags(bytes, &to, flags)))
    }

    /// The `SockAddr` of `addr`: the cached peer's if it is that object.
    fn raw_addr(&self, addr: &Bound<'_, PyAny>, family: i32) -> Option<SockAddr> {
        if let Some(peer) = &*self.peer.borrow()
            && peer.py.bind(addr.py()).is(addr)
        {
            return Some(peer.raw.clone());
        }
        crate::pysock::from_python(addr, family)
    }

    /// The Python form of a sender's address, from the peer cache.
    fn py_addr(&self, py: Python<'_>, raw: SockAddr) -> PyResult<Option<Py<PyAny>>> {
        if let Some(peer) = &*self.peer.borrow()
            && peer.raw == raw
        {
            return Ok(Some(peer.py.clone_ref(py)));
        }
        let Some(addr) = crate::pysock::to_python(py, &raw) else { return Ok(None) };
        let addr = addr?.into_any().unbind();
        let old = self.peer.replace(Some(Peer { raw, py: addr.clone_ref(py) }));
        drop(old);
        Ok(Some(addr))
    }

    /// One datagram, or `Ok(None)` if none was waiting.
    fn receive(&self, py: Python<'_>, state: &RunState) -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
        let sock = match &*self.sock.borrow() {
            Some(s) => s.clone_ref(py),
            None => return Ok(None),
        };
        if self.native_family.is_some() {
            let got = {
                // No Python code runs while the scratch buffer is borrowed.
                let mut scratch = state.scratch.borrow_mut();
                scratch.clear();
                scratch.reserve(MAX_SIZE);
                let outcome = with_fd(self.fd, |s| {
                    let spare: &mut [MaybeUninit<u8>] = &mut scratch.spare_capacity_mut()[..MAX_SIZE];
                    s.recv_from_with_flags(spare, libc::MSG_DONTWAIT)
                });
                match outcome {
                    Ok((n, from)) => {
                        // SAFETY: `recvfrom` initialized the first `n`
                        // bytes of the spare capacity (never more than it
                        // was given); the vector was empty.
                        unsafe { scratch.set_len(n) };
                        Ok((PyBytes::new(py, &scratch).into_any().unbind(), from))
                    }
                    Err(e) => Err(e),
                }
            };
            return match got {
                Ok((data, from)) => match self.py_addr(py, from)? {
                    Some(addr) => Ok(Some((data, addr))),
                    // An IP socket only receives from IP senders.
                    None => Err(PyOSError::new_err("recvfrom gave a sender of another address family")),
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(os_error(&e)),
            };
        }
        match sock.bind(py).call_method1(intern!(py, "recvfrom"), (MAX_SIZE,)) {
            Ok(pair) => {
                let pair = pair.cast_into::<PyTuple>()?;
                Ok(Some((pair.get_item(0)?.unbind(), pair.get_item(1)?.unbind())))
            }
            Err(e) if would_block(py, &e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// asyncio's `_read_ready`, for one readiness event.
    fn read_ready(&self, slf: &Bound<'_, Self>, state: &RunState) -> PyResult<()> {
        let py = slf.py();
        if self.conn_lost.get() > 0 {
            return Ok(());
        }
        match self.receive(py, state) {
            Ok(Some((data, addr))) => self.protocol_call(py, intern!(py, "datagram_received"), (data, addr)),
            Ok(None) => Ok(()),
            Err(e) if is_base(py, &e) => Err(e),
            Err(e) if e.is_instance_of::<PyOSError>(py) => {
                self.protocol_call(py, intern!(py, "error_received"), (e.into_value(py),))
            }
            Err(e) => self.fatal_error(slf, e, "Fatal read error on datagram transport"),
        }
    }

    /// asyncio's `_sendto_ready`: sends what is queued, in order, until
    /// the socket refuses; once empty, stops watching for writability and
    /// finishes a pending `close`.
    fn sendto_ready(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        loop {
            let Some(next) = self.queue.borrow_mut().pop_front() else { break };
            let size = next.data.bind(py).as_bytes().len() + self.header_size;
            self.buffer_size.set(self.buffer_size.get().saturating_sub(size));
            match self.send_one(py, next.data.bind(py).as_any(), next.addr.as_ref().map(|a| a.bind(py))) {
                Ok(true) => {}
                Ok(false) => {
                    self.buffer_size.set(self.buffer_size.get() + size);
                    self.queue.borrow_mut().push_front(next);
                    break;
                }
                Err(e) if is_base(py, &e) => return Err(e),
                Err(e) if e.is_instance_of::<PyOSError>(py) => {
                    return self.protocol_call(py, intern!(py, "error_received"), (e.into_value(py),));
                }
                Err(e) => return self.fatal_error(slf, e, "Fatal write error on datagram transport"),
            }
        }
        self.maybe_resume_protocol(slf)?; // may queue more
        if self.queue.borrow().is_empty() {
            self.unwatch(py, Direction::Write);
            if self.closing.get() {
                self._call_connection_lost(py, &py.None().into_bound(py))?;
            }
        }
        Ok(())
    }

    /// `protocol.name(*args)`; nothing once the protocol is gone.
    fn protocol_call<'py, A: pyo3::call::PyCallArgs<'py>>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, pyo3::types::PyString>,
        args: A,
    ) -> PyResult<()> {
        let protocol = match &*self.protocol.borrow() {
            Some(p) => p.clone_ref(py),
            None => return Ok(()),
        };
        protocol.bind(py).call_method1(name, args).map(drop)
    }

    fn maybe_pause_protocol(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        if self.buffer_size.get() <= self.high_water.get() || self.paused.get() {
            return Ok(());
        }
        self.paused.set(true);
        self.flow_call(slf, "pause_writing")
    }

    fn maybe_resume_protocol(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        if !self.paused.get() || self.buffer_size.get() > self.low_water.get() {
            return Ok(());
        }
        self.paused.set(false);
        self.flow_call(slf, "resume_writing")
    }

    /// `protocol.pause_writing()`/`resume_writing()`; a failure goes to
    /// the loop's exception handler, as asyncio's `FlowControlMixin`.
    fn flow_call(&self, slf: &Bound<'_, Self>, name: &str) -> PyResult<()> {
        let py = slf.py();
        let protocol = match &*self.protocol.borrow() {
            Some(p) => p.clone_ref(py),
            None => return Ok(()),
        };
        match protocol.bind(py).call_method0(name) {
            Ok(_) => Ok(()),
            Err(e) if is_base(py, &e) => Err(e),
            Err(e) => self.exception_handler(slf, &format!("protocol.{name}() failed"), e),
        }
    }

    fn exception_handler(&self, slf: &Bound<'_, Self>, message: &str, e: PyErr) -> PyResult<()> {
        let py = slf.py();
        let context = PyDict::new(py);
        context.set_item(intern!(py, "message"), message)?;
        context.set_item(intern!(py, "exception"), e.value(py))?;
        match &*self.owner.borrow() {
            Some(owner) => context.set_item(intern!(py, "transport"), owner)?,
            None => context.set_item(intern!(py, "transport"), slf)?,
        }
        context.set_item(intern!(py, "protocol"), self.get_protocol(py))?;
        self.pyloop.bind(py).call_method1(intern!(py, "call_exception_handler"), (context,)).map(drop)
    }

    /// asyncio's `_fatal_error`: reported (unless an `OSError`), then
    /// the transport is closed at once.
    fn fatal_error(&self, slf: &Bound<'_, Self>, e: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let value = e.value(py).clone();
        if !e.is_instance_of::<PyOSError>(py) {
            self.exception_handler(slf, message, e)?;
        }
        self.force_close(slf, value.into_any())
    }

    /// asyncio's `_force_close`.
    fn force_close(&self, slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if self.conn_lost.get() > 0 {
            return Ok(());
        }
        if !self.queue.borrow().is_empty() {
            let queue = std::mem::take(&mut *self.queue.borrow_mut());
            drop(queue);
            self.buffer_size.set(0);
            self.unwatch(py, Direction::Write);
        }
        if !self.closing.get() {
            self.closing.set(true);
            self.unwatch(py, Direction::Read);
        }
        self.conn_lost.set(self.conn_lost.get() + 1);
        self.call_soon_lost(slf, exc)
    }

    fn call_soon_lost(&self, slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let lost = slf.getattr(intern!(py, "_call_connection_lost"))?;
        crate::loop_base::call_soon(self.pyloop.bind(py), lost, pyo3::types::PyTuple::new(py, [exc])?)
    }
}

/// The fd of a datagram transport is ready in `direction`: one read
/// (`_read_ready`) or a flush of the queue (`_sendto_ready`).
pub(crate) fn on_ready(
    py: Python<'_>,
    state: &Rc<RunState>,
    transport: &Py<DatagramTransport>,
    direction: Direction,
) {
    let slf = transport.bind(py);
    let this = slf.borrow();
    let outcome = match direction {
        Direction::Read => {
            let context = this.context.borrow().as_ref().map(|c| c.clone_ref(py));
            match context {
                Some(context) => {
                    crate::handle::run_in_context(py, context.bind(py), || this.read_ready(slf, state))
                        .unwrap_or_else(|| this.read_ready(slf, state))
                }
                None => this.read_ready(slf, state),
            }
        }
        Direction::Write => this.sendto_ready(slf),
    };
    if let Err(e) = outcome {
        escaped(py, state, slf, e);
    }
}

/// What asyncio's `Handle._run` does with an exception out of a
/// transport callback: `KeyboardInterrupt`/`SystemExit` end the run, the
/// rest goes to the loop's exception handler.
fn escaped(py: Python<'_>, state: &Rc<RunState>, slf: &Bound<'_, DatagramTransport>, e: PyErr) {
    if is_base(py, &e) {
        return interrupt_with(state, e, None);
    }
    let reported = slf.borrow().exception_handler(slf, "Exception in a datagram transport callback", e);
    if let Err(e) = reported {
        interrupt_with(state, e, None);
    }
}

//! Native `sock_*` (asyncio's low-level socket calls): each tries the
//! operation at once and, if the socket is not ready, returns a pending
//! asyncio `Future` and waits for readiness as a core fd watcher that
//! retries the operation, as asyncio's selector loop does, without a
//! Python frame, `Handle` or `functools.partial` per wait.
//!
//! Invariants:
//! - Bytes are only read when the operation is tried, and never once its
//!   future is done: a cancelled `sock_recv` leaves what arrives in the
//!   socket for the next read (asyncio's `if fut.done(): return`).
//! - A pending operation is the fd's watcher for its direction (the map
//!   `RunState::watchers`, visited by the GC); it leaves the map when it
//!   completes, and its future's done callback ([`OpDone`]) removes it on
//!   cancellation, unless another watcher replaced it meanwhile (asyncio's
//!   `_sock_read_done` checking `handle.cancelled()`).
//! - Only exact `socket.socket` objects get the direct syscalls (recv,
//!   recv_into, send); any other object (a subclass, a wrapper) gets its
//!   own methods called, as asyncio calls them.
//! - The direct syscalls never block (`MSG_DONTWAIT`), whatever the
//!   socket's mode: they run with the GIL held, and a blocking one would
//!   stall every Python thread, the one that would send the awaited
//!   bytes included.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit,
    PyTypeError, PyValueError,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType, PyWeakrefReference};
use socket2::SockRef;

use crate::{Direction, RunState, Watcher, active, interrupt_with};

/// Receives larger than this go to a buffer of their own instead of the
/// loop's reusable one, so that one huge `sock_recv` does not pin its
/// size for the loop's lifetime.
const SCRATCH_MAX: usize = 256 * 1024;

/// What a pending operation does when tried.
pub(crate) enum Op {
    Recv {
        n: usize,
    },
    RecvInto {
        buf: Py<PyAny>,
    },
    RecvFrom {
        bufsize: Py<PyAny>,
    },
    RecvFromInto {
        buf: Py<PyAny>,
        nbytes: Py<PyAny>,
    },
    /// The data's buffer is held (exported) while the send is pending, as
    /// asyncio holds a `memoryview`: a `bytearray` cannot be resized
    /// under it.
    SendAll {
        data: PyUntypedBuffer,
        sent: std::cell::Cell<usize>,
    },
    SendTo {
        data: Py<PyAny>,
        address: Py<PyAny>,
    },
    Connect {
        address: Py<PyAny>,
    },
    /// evloop's `create_connection` ([`crate::connect`]): a connect whose
    /// success makes the protocol and transport. No done callback: a
    /// cancelled one is dropped (its socket closed) by the coroutine's
    /// `abandon` or, first, when the fd is next ready.
    Open {
        address: Py<PyAny>,
        opening: Py<crate::connect::Opening>,
    },
    Accept,
    /// asyncio's `_sock_sendfile_native_impl`: `sendfile(2)` from the
    /// regular file `file` (its fd `file_fd`) at `offset`, at most `count`
    /// bytes in all (0: to the end of the file), `blocksize` per call.
    SendFile {
        file: Py<PyAny>,
        file_fd: RawFd,
        offset: std::cell::Cell<u64>,
        count: usize,
        blocksize: usize,
        sent: std::cell::Cell<usize>,
        /// Whether a call was made before this one (asyncio's
        /// `registered_fd is not None`).
        again: std::cell::Cell<bool>,
    },
}

impl Op {
    fn direction(&self) -> Direction {
        match self {
            Op::Recv { .. }
            | Op::RecvInto { .. }
            | Op::RecvFrom { .. }
            | Op::RecvFromInto { .. }
            | Op::Accept => Direction::Read,
            Op::SendAll { .. }
            | Op::SendTo { .. }
            | Op::Connect { .. }
            | Op::Open { .. }
            | Op::SendFile { .. } => Direction::Write,
        }
    }
}

/// A `sock_*` call waiting for its socket: the fd's watcher until done.
pub(crate) struct SockOp {
    id: u64,
    fd: RawFd,
    sock: SockObject,
    fut: Py<PyAny>,
    op: Op,
}

/// How an operation holds its socket object.
enum SockObject {
    /// The operation's future has a done callback ([`OpDone`]) that
    /// removes the operation at once when it is cancelled.
    Strong(Py<PyAny>),
    /// No done callback (the common `sock_recv`/`sock_recvfrom`/
    /// `sock_accept`, which hold no buffer): a cancelled operation stays
    /// the fd's watcher until the fd is next ready or another watcher
    /// replaces it, holding its socket weakly meanwhile, so that it never
    /// keeps a socket (and its fd) alive. While the call is pending, its
    /// coroutine holds the socket.
    Weak(Py<PyWeakrefReference>),
}

impl SockObject {
    fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        match self {
            SockObject::Strong(s) => Some(s.bind(py).clone()),
            SockObject::Weak(w) => w.bind(py).upgrade(),
        }
    }
}

impl SockOp {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the call is over (cancelled, mostly) while the operation
    /// is still the fd's watcher: then it is no reader or writer for
    /// asyncio's `remove_reader`, and a new call on the same socket may
    /// take its registration over.
    pub(crate) fn is_over(&self, py: Python<'_>) -> bool {
        self.fut.bind(py).call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true)
    }

    /// Whether `sock` is this operation's socket object.
    pub(crate) fn is_for(&self, sock: &Bound<'_, PyAny>) -> bool {
        self.sock.get(sock.py()).is_some_and(|s| s.is(sock))
    }

    /// Its call is over before the operation completed (cancelled): a
    /// `sock_sendfile` leaves the file's position after the bytes it did
    /// send, so that nothing is lost (asyncio leaves it where it was).
    fn cancelled(&self, py: Python<'_>) {
        if let Op::SendFile { file_fd, offset, sent, .. } = &self.op {
            // A failed seek (the file closed meanwhile) has nobody to
            // report to: the future is cancelled already.
            let _ = update_filepos(py, *file_fd, offset.get(), sent.get());
        }
    }

    /// The Python objects it holds, for the GC.
    pub(crate) fn visit(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        if let SockObject::Strong(sock) = &self.sock {
            visit(sock);
        }
        visit(&self.fut);
        match &self.op {
            Op::RecvInto { buf } => visit(buf),
            Op::RecvFrom { bufsize } => visit(bufsize),
            Op::RecvFromInto { buf, nbytes } => {
                visit(buf);
                visit(nbytes);
            }
            Op::SendTo { data, address } => {
                visit(data);
                visit(address);
            }
            Op::Connect { address } => visit(address),
            Op::Open { address, opening } => {
                visit(address);
                visit(opening.as_any());
            }
            Op::SendFile { file, .. } => visit(file),
            Op::Recv { .. } | Op::SendAll { .. } | Op::Accept => {}
        }
    }
}

/// What one try of an operation gave.
pub(crate) enum Try {
    Done(Py<PyAny>),
    /// Not ready (`EAGAIN`, `EINTR`): wait for readiness and try again.
    Wait,
    Failed(PyErr),
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn socket_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static SOCKET: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    SOCKET.import(py, "socket", "socket")
}

/// `_socket.socket`, the C type under `socket.socket`.
fn base_socket_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static BASE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    BASE.import(py, "_socket", "socket")
}

/// A socket object's family, type and protocol, as the C object holds
/// them: read through `_socket.socket`'s member descriptors, because
/// `socket.socket`'s `family` and `type` properties make enums of them
/// first (a Python frame and an enum lookup each).
pub(crate) struct Kind {
    pub(crate) family: i32,
    pub(crate) ty: i32,
    pub(crate) proto: i32,
}

impl Kind {
    /// The kind of `sock`, a `socket.socket` (or subclass) object.
    ///
    /// # Errors
    ///
    /// `TypeError` if `sock` is not a socket object.
    pub(crate) fn of(sock: &Bound<'_, PyAny>) -> PyResult<Kind> {
        let py = sock.py();
        let base = base_socket_type(py)?;
        let fields = socket_fields(py)?;
        let native = sock.is_instance(base)?;
        let read = |(get, offset): &Field| -> PyResult<i32> {
            match offset {
                // SAFETY: `sock` is an instance of `_socket.socket` (or a
                // subclass, which shares its layout), whose member
                // descriptor says a C `int` lives at `offset` in every
                // instance; the object is alive (borrowed) and the GIL held.
                Some(offset) if native => Ok(unsafe { read_int_field(sock, *offset) }),
                _ => get.bind(py).call1((sock,))?.extract(),
            }
        };
        Ok(Kind { family: read(&fields[0])?, ty: read(&fields[1])?, proto: read(&fields[2])? })
    }

    /// A `socket.socket` of this kind that owns `socket`, a non-blocking
    /// fd: its timeout is 0.0 as after asyncio's `setblocking(False)`,
    /// without the syscall (the constructor reads `SOCK_NONBLOCK` in the
    /// type it is given, and `type` then reads without it).
    ///
    /// # Errors
    ///
    /// What the constructor raises; `socket` is closed then.
    pub(crate) fn wrap<'py>(&self, py: Python<'py>, socket: socket2::Socket) -> PyResult<Bound<'py, PyAny>> {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let ty = self.ty | libc::SOCK_NONBLOCK;
        let conn = new_socket(py, self.family, ty, self.proto, Some(socket.as_raw_fd()))?;
        // The object owns the fd from here on (it closes it when collected).
        let _ = socket.into_raw_fd();
        Ok(conn)
    }
}

/// `socket.socket(family, ty, proto)` (a new socket) or, with `fileno`,
/// the object owning that fd, made as `socket.socket.__init__` makes it
/// (`_socket.socket`'s constructor, then `_io_refs = 0` and `_closed =
/// False`) without its Python frame. The fd is the object's only once
/// this returns `Ok`.
///
/// # Errors
///
/// What the constructor raises (`OSError` from `socket(2)`, or for a
/// `fileno` that is not a socket).
pub(crate) fn new_socket<'py>(
    py: Python<'py>,
    family: i32,
    ty: i32,
    proto: i32,
    fileno: Option<RawFd>,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = socket_type(py)?;
    // `socket.socket.__new__` (`_socket.socket`'s) and `_socket.socket.__init__`,
    // through their slots.
    let sock = new_instance(cls.as_any())?;
    let args = match fileno {
        Some(fd) => PyTuple::new(py, [family, ty, proto, fd])?,
        None => PyTuple::new(py, [family, ty, proto])?,
    };
    let base = base_socket_type(py)?;
    // SAFETY: a live type object, with the GIL held.
    match unsafe { (*base.as_type_ptr()).tp_init } {
        // SAFETY: `_socket.socket`'s own initialiser on an instance of a
        // subclass of it, called as CPython calls it (the object, an
        // argument tuple, no keywords) with the GIL held: -1 means an
        // exception is set.
        Some(init) if unsafe { init(sock.as_ptr(), args.as_ptr(), std::ptr::null_mut()) } < 0 => {
            return Err(PyErr::fetch(py));
        }
        Some(_) => {}
        None => return Err(PyTypeError::new_err("_socket.socket has no initialiser")),
    }
    set_socket_slot(&sock, Slot::IoRefs, 0i32.into_pyobject(py)?.into_any())?;
    set_socket_slot(&sock, Slot::Closed, pyo3::types::PyBool::new(py, false).to_owned().into_any())?;
    Ok(sock)
}

/// `cls.__new__(cls)`, through the type's `tp_new` slot (what the
/// `__new__` that lookup finds calls) without looking it up.
///
/// # Errors
///
/// What `__new__` raises; `TypeError` if `cls` is not a type.
pub(crate) fn new_instance<'py>(cls: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let ty = cls.cast::<PyType>()?;
    // SAFETY: a live type object, with the GIL held.
    let Some(tp_new) = (unsafe { (*ty.as_type_ptr()).tp_new }) else {
        return cls.call_method1(intern!(py, "__new__"), (cls,));
    };
    let args = PyTuple::empty(py);
    // SAFETY: the type's own constructor slot, called as CPython calls it
    // (the type, an argument tuple, no keywords) with the GIL held; it
    // returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, tp_new(ty.as_type_ptr(), args.as_ptr(), std::ptr::null_mut())) }
}

/// The two slots `socket.socket` adds to `_socket.socket`.
#[derive(Clone, Copy)]
enum Slot {
    /// `_io_refs`: how many `makefile()` objects use the socket.
    IoRefs,
    /// `_closed`: `close()` was called.
    Closed,
}

/// Where `socket.socket` keeps its `_io_refs` and `_closed` slots, if they
/// are plain object members (read from their member descriptors once).
fn socket_slots(py: Python<'_>) -> PyResult<Option<[isize; 2]>> {
    static SLOTS: PyOnceLock<Option<[isize; 2]>> = PyOnceLock::new();
    SLOTS
        .get_or_try_init(py, || {
            let dict = socket_type(py)?.getattr(intern!(py, "__dict__"))?;
            let offset = |name: &str| -> PyResult<Option<isize>> {
                Ok(member_offset(&dict.get_item(name)?, pyo3::ffi::Py_T_OBJECT_EX))
            };
            Ok::<_, PyErr>(offset("_io_refs")?.zip(offset("_closed")?).map(|(a, b)| [a, b]))
        })
        .copied()
}

/// `sock.<slot> = value` for a plain `socket.socket`, straight into the
/// slot (its member descriptor's `__set__` otherwise).
fn set_socket_slot(sock: &Bound<'_, PyAny>, slot: Slot, value: Bound<'_, PyAny>) -> PyResult<()> {
    let py = sock.py();
    let Some(offsets) = socket_slots(py)? else {
        let name = match slot {
            Slot::IoRefs => intern!(py, "_io_refs"),
            Slot::Closed => intern!(py, "_closed"),
        };
        return sock.setattr(name, value);
    };
    // SAFETY: `sock` is a plain `socket.socket` (the callers check), whose
    // member descriptor says an object pointer (NULL when unset) lives at
    // this offset in every instance; the GIL is held. The new reference
    // is stored, then the old one let go of (an int or a bool: no code
    // runs), as the descriptor's `__set__` does.
    unsafe {
        let place = field::<*mut pyo3::ffi::PyObject>(sock, offsets[slot as usize]);
        let old = place.read();
        place.write(value.into_ptr());
        pyo3::ffi::Py_XDECREF(old);
    }
    Ok(())
}

/// `sock._io_refs` of a plain `socket.socket`, read from its slot.
fn io_refs(sock: &Bound<'_, PyAny>) -> PyResult<isize> {
    let py = sock.py();
    let Some(offsets) = socket_slots(py)? else {
        return sock.getattr(intern!(py, "_io_refs"))?.extract();
    };
    // SAFETY: as in `set_socket_slot`; the value is borrowed only while
    // it is read (the object holds it), and an unset slot is NULL.
    let value = unsafe {
        let raw = field::<*mut pyo3::ffi::PyObject>(sock, offsets[Slot::IoRefs as usize]).read();
        if raw.is_null() {
            return sock.getattr(intern!(py, "_io_refs"))?.extract(); // its AttributeError
        }
        Borrowed::from_ptr(py, raw).to_owned()
    };
    value.extract()
}

/// A `_socket.socket` field: its member descriptor's `__get__`, and the
/// offset of its C `int` (`None` if it is not a plain int member).
type Field = (Py<PyAny>, Option<isize>);

/// `_socket.socket`'s `family`, `type` and `proto` fields, read once.
fn socket_fields(py: Python<'_>) -> PyResult<&[Field; 3]> {
    static FIELDS: PyOnceLock<[Field; 3]> = PyOnceLock::new();
    FIELDS.get_or_try_init(py, || {
        let dict = base_socket_type(py)?.getattr(intern!(py, "__dict__"))?;
        let field = |name: &str| -> PyResult<Field> {
            let descr = dict.get_item(name)?;
            Ok((descr.getattr("__get__")?.unbind(), int_member_offset(&descr)))
        };
        Ok::<_, PyErr>([field("family")?, field("type")?, field("proto")?])
    })
}

/// Where a plain socket object keeps its fd, if known: CPython's socket
/// object holds it (a C `int` on Unix) just before its family. Taken as
/// true only once a first open socket's `fileno()` agreed with it.
static FD_OFFSET: PyOnceLock<Option<isize>> = PyOnceLock::new();

/// Reads the C `int` at `offset` in `sock`.
///
/// # Safety
///
/// `sock` is a `_socket.socket` object (or a subclass's: same layout)
/// and `offset` the offset of a C `int` field of that layout.
unsafe fn read_int_field(sock: &Bound<'_, PyAny>, offset: isize) -> i32 {
    // SAFETY: as the caller promises; the object is alive (borrowed) and
    // the GIL held.
    unsafe { field::<i32>(sock, offset).read_unaligned() }
}

/// Where the field at `offset` in `obj` is, as a `T`.
///
/// # Safety
///
/// `offset` lies inside `obj`'s layout, where a `T` is kept; the pointer
/// is used only while `obj` is alive and the GIL held.
unsafe fn field<T>(obj: &Bound<'_, PyAny>, offset: isize) -> *mut T {
    // SAFETY: inside the object (as the caller promises).
    unsafe { obj.as_ptr().cast::<u8>().offset(offset).cast::<T>() }
}

/// The offset in its instances of the C `int` a member descriptor
/// (`_socket.socket.family`…) reads; `None` for any other kind of
/// descriptor or member (then its `__get__` is called instead).
fn int_member_offset(descr: &Bound<'_, PyAny>) -> Option<isize> {
    member_offset(descr, pyo3::ffi::Py_T_INT)
}

/// The offset in its instances of the member a member descriptor reads,
/// if the member is of `type_code`; `None` for any other kind of
/// descriptor or member.
fn member_offset(descr: &Bound<'_, PyAny>, type_code: std::os::raw::c_int) -> Option<isize> {
    // The address of CPython's static type object, only compared.
    let member_type = std::ptr::addr_of_mut!(pyo3::ffi::PyMemberDescr_Type);
    if descr.get_type().as_type_ptr() != member_type {
        return None;
    }
    // SAFETY: `descr` is exactly a member descriptor (checked above), so
    // its object is a `PyMemberDescrObject` whose `d_member` points at
    // the member definition of its type, alive while the type is.
    let member = unsafe { &*(*descr.as_ptr().cast::<pyo3::ffi::PyMemberDescrObject>()).d_member };
    (member.type_code == type_code).then_some(member.offset)
}

/// The [`Kind`] of a plain `socket.socket`; `None` for anything else
/// (a subclass, a wrapper), whose own methods are called instead.
///
/// # Errors
///
/// Only what reading the object's type raises.
pub(crate) fn plain_kind(sock: &Bound<'_, PyAny>) -> PyResult<Option<Kind>> {
    if is_plain_socket(sock)? { Kind::of(sock).map(Some) } else { Ok(None) }
}

/// `sock.close()`. For a plain `socket.socket` it does what that Python
/// method does (marks the object closed, and closes the fd unless a
/// `makefile()` object still uses it) without its two Python frames.
///
/// # Errors
///
/// What closing raises (`OSError` from `close(2)`).
pub(crate) fn close(sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = sock.py();
    if !is_plain_socket(sock)? {
        return sock.call_method0(intern!(py, "close")).map(drop);
    }
    set_socket_slot(sock, Slot::Closed, pyo3::types::PyBool::new(py, true).to_owned().into_any())?;
    if io_refs(sock)? <= 0 {
        static CLOSE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let close =
            CLOSE.get_or_try_init(py, || Ok::<_, PyErr>(base_socket_type(py)?.getattr("close")?.unbind()))?;
        close.bind(py).call1((sock,))?;
    }
    Ok(())
}

/// Whether `sock` is a plain `socket.socket`, whose `recv`/`send` the
/// loop may do itself on the fd.
pub(crate) fn is_plain_socket(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(sock.get_type().is(socket_type(sock.py())?))
}

/// `sock.fileno()`; for a plain `socket.socket`, read from the object
/// (see [`FD_OFFSET`]) without the method call.
pub(crate) fn fileno(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let py = sock.py();
    if !is_plain_socket(sock)? {
        return sock.call_method0(intern!(py, "fileno"))?.extract();
    }
    if let Some(known) = FD_OFFSET.get(py) {
        return match known {
            // SAFETY: a plain socket object, and an offset checked
            // against a socket of its type (below).
            Some(offset) => Ok(unsafe { read_int_field(sock, *offset) }),
            None => sock.call_method0(intern!(py, "fileno"))?.extract(),
        };
    }
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    if fd >= 0 {
        let guess = socket_fields(py)?[0].1.and_then(|family| family.checked_sub(4));
        // SAFETY: the guess lies inside the object (before its family
        // field, after its header): the `int` read there is only
        // compared, and kept as the fd's place if it is the fd.
        let header = std::mem::size_of::<pyo3::ffi::PyObject>() as isize;
        let agrees =
            guess.filter(|&at| at >= header).is_some_and(|at| unsafe { read_int_field(sock, at) } == fd);
        let _ = FD_OFFSET.set(py, guess.filter(|_| agrees));
    }
    Ok(fd)
}

/// The OSError Python's socket module raises for `errno`
/// (`OSError(errno, strerror)` picks the subclass: `ConnectionResetError`…).
fn os_error(py: Python<'_>, err: &io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => {
            let strerror = py
                .import(intern!(py, "os"))
                .and_then(|os| os.call_method1(intern!(py, "strerror"), (errno,)))
                .and_then(|s| s.extract::<String>())
                .unwrap_or_else(|_| err.to_string());
            PyOSError::new_err((errno, strerror))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

fn would_block(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// Runs `f` on the socket whose fd is `fd`.
pub(crate) fn with_fd<R>(
    py: Python<'_>,
    fd: RawFd,
    f: impl FnOnce(SockRef<'_>) -> io::Result<R>,
) -> Result<R, Try> {
    if fd < 0 {
        return Err(Try::Failed(os_error(py, &io::Error::from_raw_os_error(libc::EBADF))));
    }
    // SAFETY: `fd` is the number `fileno()` of a Python socket object the
    // caller holds just returned, and the GIL is held from that call to
    // the end of this one with no Python code run in between: the socket
    // cannot be closed meanwhile (closing it needs the GIL), so the fd
    // stays open for the borrow, which ends with `f`.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&borrowed))
        .map_err(|e| if would_block(&e) { Try::Wait } else { Try::Failed(os_error(py, &e)) })
}

/// A Python call that raises `BlockingIOError`/`InterruptedError` when not
/// ready (asyncio's `except (BlockingIOError, InterruptedError)`).
fn python_try(py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) -> Try {
    match outcome {
        Ok(v) => Try::Done(v.unbind()),
        Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => {
            Try::Wait
        }
        Err(e) => Try::Failed(e),
    }
}

/// A C-contiguous byte view of a buffer-exporting object.
fn contiguous(obj: &Bound<'_, PyAny>) -> PyResult<PyUntypedBuffer> {
    let buf = PyUntypedBuffer::get(obj)?;
    if !buf.is_c_contiguous() {
        // Python's socket methods ask for a C-contiguous buffer too.
        return Err(PyTypeError::new_err("a C-contiguous bytes-like object is required"));
    }
    Ok(buf)
}

/// The bytes of a held, C-contiguous buffer.
fn bytes_of(buf: &PyUntypedBuffer) -> &[u8] {
    // SAFETY: `buf` is a C-contiguous export (checked by `contiguous`) of
    // `len_bytes()` bytes at `buf_ptr()`, valid while `buf` is held; the
    // GIL is held while the slice is used (by one `send`, no Python code
    // in between), so no Python code can write into it meanwhile.
    unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), buf.len_bytes()) }
}

/// The memory of a held, C-contiguous, writable buffer, for one `recv`.
fn bytes_of_mut(buf: &mut PyUntypedBuffer) -> &mut [MaybeUninit<u8>] {
    // SAFETY: as `bytes_of`, and the exporter said it is writable
    // (checked by the caller); the slice lives for one `recv` with the
    // GIL held, the only writer meanwhile, and `recv` writes only
    // initialized bytes, so the buffer stays initialized for Python.
    unsafe { std::slice::from_raw_parts_mut(buf.buf_ptr().cast::<MaybeUninit<u8>>(), buf.len_bytes()) }
}

fn writable(obj: &Bound<'_, PyAny>, method: &str) -> PyResult<PyUntypedBuffer> {
    let buf = contiguous(obj)?;
    if buf.readonly() {
        let kind = obj.get_type().name()?;
        return Err(PyTypeError::new_err(format!(
            "{method}() argument 'buffer' must be read-write bytes-like object, not {kind}"
        )));
    }
    Ok(buf)
}

/// One try of `op` on `sock`.
fn attempt(py: Python<'_>, state: &RunState, sock: &Bound<'_, PyAny>, op: &Op) -> Try {
    match try_op(py, state, sock, op) {
        Ok(t) => t,
        Err(e) => Try::Failed(e),
    }
}

fn try_op(py: Python<'_>, state: &RunState, sock: &Bound<'_, PyAny>, op: &Op) -> PyResult<Try> {
    Ok(match op {
        Op::Recv { n } => {
            if !is_plain_socket(sock)? {
                return Ok(python_try(py, sock.call_method1(intern!(py, "recv"), (*n,))));
            }
            let fd = fileno(sock)?;
            if *n > SCRATCH_MAX {
                let mut own: Vec<u8> = Vec::with_capacity(*n);
                match recv_spare(py, fd, &mut own, *n) {
                    Ok(()) => Try::Done(PyBytes::new(py, &own).into_any().unbind()),
                    Err(t) => t,
                }
            } else {
                // No Python code runs while the scratch buffer is borrowed.
                let mut scratch = state.scratch.borrow_mut();
                scratch.clear();
                match recv_spare(py, fd, &mut scratch, *n) {
                    Ok(()) => Try::Done(PyBytes::new(py, &scratch).into_any().unbind()),
                    Err(t) => t,
                }
            }
        }
        Op::RecvInto { buf } => {
            let buf = buf.bind(py);
            if !is_plain_socket(sock)? {
                return Ok(python_try(py, sock.call_method1(intern!(py, "recv_into"), (buf,))));
            }
            let fd = fileno(sock)?;
            let mut view = writable(buf, "recv_into")?;
            match with_fd(py, fd, |s| s.recv_with_flags(bytes_of_mut(&mut view), libc::MSG_DONTWAIT)) {
                Ok(got) => Try::Done(got.into_pyobject(py)?.into_any().unbind()),
                Err(t) => t,
            }
        }
        Op::RecvFrom { bufsize } => python_try(py, sock.call_method1(intern!(py, "recvfrom"), (bufsize,))),
        Op::RecvFromInto { buf, nbytes } => {
            python_try(py, sock.call_method1(intern!(py, "recvfrom_into"), (buf, nbytes)))
        }
        Op::SendAll { data, sent } => {
            let bytes = bytes_of(data);
            let start = sent.get();
            let sent_now = if is_plain_socket(sock)? {
                let fd = fileno(sock)?;
                match with_fd(py, fd, |s| {
                    s.send_with_flags(&bytes[start..], libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                }) {
                    Ok(n) => n,
                    Err(t) => return Ok(t),
                }
            } else {
                let view = PyBytes::new(py, &bytes[start..]);
                match python_try(py, sock.call_method1(intern!(py, "send"), (view,))) {
                    Try::Done(n) => n.extract::<usize>(py)?,
                    other => return Ok(other),
                }
            };
            let total = start + sent_now;
            sent.set(total);
            if total >= bytes.len() { Try::Done(py.None()) } else { Try::Wait }
        }
        Op::SendTo { data, address } => {
            python_try(py, sock.call_method1(intern!(py, "sendto"), (data, 0, address)))
        }
        Op::Connect { address } | Op::Open { address, .. } => {
            // Tried again once writable: the connect's outcome is SO_ERROR.
            let so_error: Result<i32, Try> = if is_plain_socket(sock)? {
                with_fd(py, fileno(sock)?, |s| s.take_error())
                    .map(|err| err.and_then(|e| e.raw_os_error()).unwrap_or(0))
            } else {
                let asked = sock.call_method1(intern!(py, "getsockopt"), (libc::SOL_SOCKET, libc::SO_ERROR));
                match python_try(py, asked) {
                    Try::Done(err) => Ok(err.extract(py)?),
                    other => Err(other),
                }
            };
            match so_error {
                Ok(0) => Try::Done(py.None()),
                Ok(err) => {
                    let message = format!("Connect call failed {}", address.bind(py).str()?);
                    Try::Failed(PyOSError::new_err((err, message)))
                }
                Err(other) => other,
            }
        }
        Op::SendFile { file_fd, offset, count, blocksize, sent, again, .. } => {
            let first = !again.replace(true);
            let total = sent.get();
            let block = if *count > 0 { count.saturating_sub(total) } else { *blocksize };
            if block == 0 {
                update_filepos(py, *file_fd, offset.get(), total)?;
                return Ok(Try::Done(total.into_pyobject(py)?.into_any().unbind()));
            }
            let fd = fileno(sock)?;
            match with_fd(py, fd, |s| send_file(s, *file_fd, offset, block)) {
                Ok(0) => {
                    // End of the file.
                    update_filepos(py, *file_fd, offset.get(), total)?;
                    Try::Done(total.into_pyobject(py)?.into_any().unbind())
                }
                Ok(n) => {
                    sent.set(total + n);
                    if *count > 0 && total + n >= *count {
                        update_filepos(py, *file_fd, offset.get(), total + n)?;
                        Try::Done((total + n).into_pyobject(py)?.into_any().unbind())
                    } else {
                        Try::Wait
                    }
                }
                Err(Try::Failed(e)) => {
                    update_filepos(py, *file_fd, offset.get(), total)?;
                    Try::Failed(sendfile_error(py, e, first, total)?)
                }
                Err(other) => other,
            }
        }
        Op::Accept => match crate::accept::accept(sock)? {
            Some(pair) => Try::Done(PyTuple::new(py, [pair.0, pair.1])?.into_any().unbind()),
            None => Try::Wait,
        },
    })
}

/// One `sendfile(2)` of at most `count` bytes from `file_fd` at
/// `offset` (moved past what was sent) to `sock`.
fn send_file(
    sock: SockRef<'_>,
    file_fd: RawFd,
    offset: &std::cell::Cell<u64>,
    count: usize,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off =
        libc::off_t::try_from(offset.get()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a plain syscall: `sock` is borrowed (kept open) for the
    // call, `off` is a valid, exclusively borrowed offset, and the kernel
    // checks `file_fd` (an fd the file object gave; the operation holds
    // that object, and a closed fd fails with EBADF).
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file_fd, &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    offset.set(off as u64);
    Ok(n as usize)
}

/// asyncio's `_sock_sendfile_update_filepos`: once bytes were sent, the
/// file's position is where the sending stopped.
fn update_filepos(py: Python<'_>, file_fd: RawFd, offset: u64, sent: usize) -> PyResult<()> {
    if sent > 0 {
        let seek_set = 0;
        py.import(intern!(py, "os"))?.call_method1(intern!(py, "lseek"), (file_fd, offset, seek_set))?;
    }
    Ok(())
}

/// asyncio's treatment of a failed `sendfile`: before any byte went,
/// `SendfileNotAvailableError` (the caller falls back to read and send);
/// later, the error itself, `ENOTCONN` on a later call made a
/// `ConnectionError` (the peer went away mid-way).
fn sendfile_error(py: Python<'_>, e: PyErr, first: bool, sent: usize) -> PyResult<PyErr> {
    if sent == 0 {
        let cls = py.import(intern!(py, "asyncio"))?.getattr(intern!(py, "SendfileNotAvailableError"))?;
        return Ok(PyErr::from_value(cls.call1(("os.sendfile call failed",))?));
    }
    let value = e.value(py);
    let errno: Option<i32> = value.getattr(intern!(py, "errno")).ok().and_then(|n| n.extract().ok());
    if !first
        && errno == Some(libc::ENOTCONN)
        && !value.get_type().is_subclass_of::<pyo3::exceptions::PyConnectionError>()?
    {
        let new = pyo3::exceptions::PyConnectionError::new_err(("socket is not connected", libc::ENOTCONN));
        new.set_cause(py, Some(e));
        return Ok(new);
    }
    Ok(e)
}

/// One non-blocking `recv` of at most `max` bytes on `fd`, as a `bytes`
/// (empty at end of file); `None` if there was nothing to read.
pub(crate) fn recv_bytes<'py>(
    py: Python<'py>,
    state: &RunState,
    fd: RawFd,
    max: usize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let outcome = if max > SCRATCH_MAX {
        let mut own: Vec<u8> = Vec::with_capacity(max);
        recv_spare(py, fd, &mut own, max).map(|()| PyBytes::new(py, &own))
    } else {
        // No Python code runs while the scratch buffer is borrowed.
        let mut scratch = state.scratch.borrow_mut();
        scratch.clear();
        recv_spare(py, fd, &mut scratch, max).map(|()| PyBytes::new(py, &scratch))
    };
    match outcome {
        Ok(data) => Ok(Some(data)),
        Err(Try::Wait) => Ok(None),
        Err(Try::Failed(e)) => Err(e),
        Err(Try::Done(_)) => unreachable!("recv_spare fails only with Wait or Failed"),
    }
}

unsafe extern "C" {
    /// CPython's `_PyBytes_Resize` (a stable part of its C API since 2.x,
    /// which PyO3 does not re-export): shrinks a `bytes` object nothing
    /// else refers to yet; on failure it frees it, sets `*bytes` to NULL
    /// and raises.
    fn _PyBytes_Resize(bytes: *mut *mut pyo3::ffi::PyObject, newsize: pyo3::ffi::Py_ssize_t) -> i32;
}

/// `recv` of at most `max` bytes straight into a new `bytes` object,
/// shrunk to what came: the kernel's copy is the only one (the scratch
/// path copies a second time). For the medium and big reads of bulk
/// transfers; small reads cost less through the scratch buffer, whose
/// `bytes` is allocated at its final size.
pub(crate) fn recv_bytes_direct<'py>(
    py: Python<'py>,
    fd: RawFd,
    max: usize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let size =
        pyo3::ffi::Py_ssize_t::try_from(max).map_err(|_| PyValueError::new_err("read size too large"))?;
    // SAFETY: with a NULL source CPython allocates `max` uninitialised
    // bytes in a new object, which we own (or NULL with an exception set).
    let mut obj = unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    let got = with_fd(py, fd, |s| {
        // SAFETY: `obj` is a live `bytes` of `max` bytes of storage that
        // nothing else refers to yet; `recv` writes at most `max` of them.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(pyo3::ffi::PyBytes_AsString(obj).cast::<MaybeUninit<u8>>(), max)
        };
        s.recv_with_flags(buf, libc::MSG_DONTWAIT)
    });
    let n = match got {
        Ok(n) => n,
        Err(e) => {
            // SAFETY: our reference to the object made above.
            unsafe { pyo3::ffi::Py_DECREF(obj) };
            return match e {
                Try::Wait => Ok(None),
                Try::Failed(e) => Err(e),
                Try::Done(_) => unreachable!("with_fd fails only with Wait or Failed"),
            };
        }
    };
    if n < max {
        // SAFETY: `obj` is ours alone (refcount 1, never shared), as
        // `_PyBytes_Resize` requires; `n` is at most its size.
        if unsafe { _PyBytes_Resize(&mut obj, n as pyo3::ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    // SAFETY: `obj` is a new reference to a `bytes` object (or its
    // resized replacement), given to the `Bound`.
    Ok(Some(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked() }))
}

/// Makes sure glibc's malloc serves blocks of up to [`BIG_BLOCK`] bytes
/// from its heap, once per process, before the first big read.
///
/// glibc maps each block above its mmap threshold (128 KiB at start) fresh
/// from the kernel and unmaps it when freed, raising the threshold to the
/// size of a mapped block freed. A big read's `bytes` is shrunk to what
/// came before it is freed, so on its own it would keep the threshold
/// below its size, and every big read would map, fault in and unmap its
/// block again: a fresh process echoing 100 KiB messages ran at a fifth of
/// its speed. Freeing one block of that size once lifts the threshold
/// past it, as any program's big temporary would (a no-op where the
/// threshold is already higher, fixed by `mallopt`, or another allocator
/// is in use).
pub(crate) fn big_blocks_from_the_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(BIG_BLOCK))));
}

/// A little more than a `MAX_SIZE` `bytes` object takes (the transports'
/// big reads), page-rounded: what [`big_blocks_from_the_heap`] frees.
const BIG_BLOCK: usize = 256 * 1024 + 4096;

/// `recv` of at most `n` bytes into `vec`'s spare capacity.
fn recv_spare(py: Python<'_>, fd: RawFd, vec: &mut Vec<u8>, n: usize) -> Result<(), Try> {
    vec.reserve(n);
    let got = with_fd(py, fd, |s| {
        let spare: &mut [MaybeUninit<u8>] = &mut vec.spare_capacity_mut()[..n];
        s.recv_with_flags(spare, libc::MSG_DONTWAIT)
    })?;
    // SAFETY: `recv` initialized the first `got` bytes of the spare
    // capacity (it never reports more than it was given), and the vector
    // was empty before.
    unsafe { vec.set_len(got) };
    Ok(())
}

/// Tries `op` at once; if the socket is not ready, registers it as the
/// fd's watcher and returns its pending future.
pub(crate) fn start(
    py: Python<'_>,
    core: &crate::Core,
    sock: &Bound<'_, PyAny>,
    op: Op,
) -> PyResult<Py<PyAny>> {
    let lp = core.open_loop()?;
    let state = core.state().clone();
    match attempt(py, &state, sock, &op) {
        Try::Done(v) => return Ok(v),
        Try::Failed(e) => return Err(e),
        Try::Wait => {}
    }
    wait(py, core, lp, sock, op)
}

/// Registers `op` to be tried whenever its socket is ready, and returns
/// its future (asyncio's `_add_reader`/`_add_writer` plus the done
/// callback that removes it).
pub(crate) fn wait(
    py: Python<'_>,
    core: &crate::Core,
    lp: &evloop::EventLoop,
    sock: &Bound<'_, PyAny>,
    op: Op,
) -> PyResult<Py<PyAny>> {
    let pyloop = core.pyloop(py)?;
    let fd = fileno(sock)?;
    ensure_no_transport(pyloop.bind(py), fd)?;
    let fut = crate::loop_base::new_future(pyloop.bind(py))?;
    let direction = op.direction();
    let id = next_id();
    let holds_nothing = matches!(op, Op::Recv { .. } | Op::RecvFrom { .. } | Op::Accept);
    let weak = if holds_nothing { PyWeakrefReference::new(sock).ok() } else { None };
    let lazy = weak.is_some();
    let sock_ref = match weak {
        Some(w) => SockObject::Weak(w.unbind()),
        None => SockObject::Strong(sock.clone().unbind()),
    };
    let sock_op = Rc::new(SockOp { id, fd, sock: sock_ref, fut: fut.clone().unbind(), op });
    core.watch(lp, fd, direction, Watcher::Op(sock_op), sock)?;
    if !lazy {
        let done = Py::new(py, OpDone { id, fd, direction })?;
        fut.call_method1(intern!(py, "add_done_callback"), (done,))?;
    }
    Ok(fut.unbind())
}

/// asyncio's `_ensure_fd_no_transport`: refuses an fd an open transport
/// uses. Read straight from the `WeakValueDictionary`'s dict (its
/// `__getitem__` raises `KeyError` for the usual miss); asyncio's own
/// method if the loop's `_transports` is something else.
fn ensure_no_transport(pyloop: &Bound<'_, PyAny>, fd: RawFd) -> PyResult<()> {
    let py = pyloop.py();
    let transports = pyloop.getattr(intern!(py, "_transports"))?;
    let data = transports.getattr(intern!(py, "data")).ok().and_then(|d| d.cast_into::<PyDict>().ok());
    let Some(data) = data else {
        return pyloop.call_method1(intern!(py, "_ensure_fd_no_transport"), (fd,)).map(drop);
    };
    let Some(weak) = data.get_item(fd)? else { return Ok(()) };
    let transport = weak.call0()?;
    if transport.is_none() || transport.call_method0(intern!(py, "is_closing"))?.is_truthy()? {
        return Ok(());
    }
    Err(PyRuntimeError::new_err(format!("File descriptor {fd} is used by transport {}", transport.repr()?)))
}

/// Runs a pending operation whose socket the core found ready.
pub(crate) fn on_ready(py: Python<'_>, state: &Rc<RunState>, op: Rc<SockOp>) {
    let fut = op.fut.bind(py);
    let sock = op.sock.get(py);
    let over = match fut.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()) {
        Ok(over) => over,
        Err(e) => return report(py, state, fut, e),
    };
    let Some(sock) = sock.filter(|_| !over) else {
        // Cancelled meanwhile: nothing is read. A done callback removes a
        // strongly held operation; a weakly held one goes now, and so
        // does a connection's, with its socket.
        if let SockObject::Weak(_) = op.sock {
            forget(state, op.fd, op.op.direction(), op.id, op.sock.get(py).as_ref());
        }
        if let (Op::Open { .. }, Some(sock)) = (&op.op, op.sock.get(py)) {
            forget(state, op.fd, op.op.direction(), op.id, Some(&sock));
            if let Err(e) = close(&sock) {
                report(py, state, fut, e);
            }
        }
        return;
    };
    let outcome = attempt(py, state, &sock, &op.op);
    let settle = match outcome {
        Try::Wait => return,
        Try::Failed(e)
            if e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py) =>
        {
            // asyncio lets these out of the callback, into run_forever.
            return interrupt_with(state, e, None);
        }
        Try::Done(v) => {
            forget(state, op.fd, op.op.direction(), op.id, Some(&sock));
            match &op.op {
                Op::Open { opening, .. } => opening.get().connected(py),
                _ => fut.call_method1(intern!(py, "set_result"), (v,)).map(drop),
            }
        }
        Try::Failed(e) => {
            forget(state, op.fd, op.op.direction(), op.id, Some(&sock));
            match &op.op {
                Op::Open { opening, .. } => opening.get().failed(py, e),
                _ => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)).map(drop),
            }
        }
    };
    if let Err(e) = settle {
        report(py, state, fut, e);
    }
}

/// Unregisters a finished operation, if it is still its fd's watcher: a
/// read registration is kept for the next call on the same socket
/// ([`Watcher::Idle`]); a write one goes (a socket is writable nearly
/// always: kept, it would only report at once).
fn forget(state: &RunState, fd: RawFd, direction: Direction, id: u64, sock: Option<&Bound<'_, PyAny>>) {
    if direction == Direction::Read
        && let Some(Ok(weak)) = sock.map(PyWeakrefReference::new)
    {
        let replaced = state.replace_op(fd, direction, id, Watcher::Idle(weak.unbind()));
        drop(replaced); // after the map's borrow: decrefs may run Python code
        return;
    }
    let removed = state.take_op(fd, direction, id);
    if removed.is_some() {
        unregister(fd, direction);
    }
    drop(removed);
}

fn unregister(fd: RawFd, direction: Direction) {
    if let Ok(lp) = evloop::get_running_loop() {
        match direction {
            Direction::Read => lp.remove_reader(fd),
            Direction::Write => lp.remove_writer(fd),
        };
    }
}

/// The fd of a kept registration ([`Watcher::Idle`]) was reported ready
/// with nobody waiting: the registration goes, so that a level-triggered
/// fd nobody reads does not wake every pass.
pub(crate) fn drop_idle(state: &RunState, fd: RawFd, direction: Direction) {
    let old = {
        let mut watchers = state.watchers.borrow_mut();
        match watchers.get(&(fd, direction)) {
            Some(Watcher::Idle(_)) => watchers.remove(&(fd, direction)),
            _ => None,
        }
    };
    if old.is_some() {
        unregister(fd, direction);
    }
    drop(old);
}

/// An error no `sock_*` call expects (a failing `set_result`): to the
/// loop's exception handler, or out of the run for `KeyboardInterrupt`.
fn report(py: Python<'_>, state: &Rc<RunState>, fut: &Bound<'_, PyAny>, e: PyErr) {
    if e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py) {
        return interrupt_with(state, e, None);
    }
    let handled = (|| -> PyResult<()> {
        let context = PyDict::new(py);
        context.set_item("message", "Exception in a native sock_* callback")?;
        context.set_item("exception", e.value(py))?;
        context.set_item("future", fut)?;
        fut.call_method0(intern!(py, "get_loop"))?
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    })();
    if let Err(e) = handled {
        // The handler itself failed: asyncio lets that out of the pass.
        interrupt_with(state, e, None);
    }
}

/// The done callback of a pending operation's future: once the future is
/// done (cancelled, mostly: a completed operation unregisters itself
/// first), removes the operation from its fd if it is still the watcher.
#[pyclass(frozen, module = "evloop._evloop")]
pub(crate) struct OpDone {
    id: u64,
    fd: RawFd,
    direction: Direction,
}

#[pymethods]
impl OpDone {
    fn __call__(&self, py: Python<'_>, _fut: &Bound<'_, PyAny>) {
        let Some(state) = active() else { return };
        let op = match state.watchers.borrow().get(&(self.fd, self.direction)) {
            Some(Watcher::Op(op)) if op.id() == self.id => Some(op.clone()),
            _ => None,
        };
        if let Some(op) = op {
            forget(&state, self.fd, self.direction, self.id, op.sock.get(py).as_ref());
            op.cancelled(py);
        }
    }
}

/// asyncio's `sock_connect` once the address is resolved: `connect`, and
/// if it is in progress, wait until writable and read `SO_ERROR`.
pub(crate) fn connect(
    py: Python<'_>,
    core: &crate::Core,
    sock: &Bound<'_, PyAny>,
    address: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let lp = core.open_loop()?;
    match connect_now(py, sock, address)? {
        Try::Done(_) => Ok(py.None()),
        Try::Failed(e) => Err(e),
        Try::Wait => wait(py, core, lp, sock, Op::Connect { address: address.clone().unbind() }),
    }
}

/// The socket of `create_connection(factory, host, port)` for an
/// IP-literal `host` (a `str`) and an `int` port: a non-blocking TCP
/// `socket.socket` of the address's family, with the address to connect
/// to as asyncio's resolver gives it for a literal (what `connect` is
/// called with, and what its errors name); `None` for anything else.
pub(crate) fn literal_socket<'py>(
    py: Python<'py>,
    core: &crate::Core,
    host: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
) -> PyResult<Option<LiteralSocket<'py>>> {
    use std::net::IpAddr;
    let Ok(text) = host.cast::<pyo3::types::PyString>() else { return Ok(None) };
    let Ok(ip) = text.to_str()?.parse::<IpAddr>() else { return Ok(None) };
    if !port.is_instance_of::<pyo3::types::PyInt>() {
        return Ok(None);
    }
    // Out of range: asyncio's path raises what it raises.
    let Ok(number) = port.extract::<u16>() else { return Ok(None) };
    let port = number.into_pyobject(py)?.into_any();
    core.open_loop()?;
    let (family, address) = match ip {
        IpAddr::V4(_) => (libc::AF_INET, PyTuple::new(py, [host.clone(), port])?),
        IpAddr::V6(_) => {
            let zero = 0u32.into_pyobject(py)?.into_any();
            (libc::AF_INET6, PyTuple::new(py, [host.clone(), port, zero.clone(), zero])?)
        }
    };
    // Python makes the socket (one socket(2), non-blocking and
    // close-on-exec from the start: timeout 0.0, as after asyncio's
    // setblocking(False)); an object made around an fd of ours would
    // cost a getsockname(2) to check the fd.
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
    let sock = new_socket(py, family, ty, libc::IPPROTO_TCP, None)?;
    // What getpeername(2) gives once connected, as Python formats it: the
    // address itself when `host` is an IPv4 address written as Python
    // writes one.
    let peername = match ip {
        IpAddr::V4(v4) => crate::pysock::v4_host(py, v4).to_str()? == text.to_str()?,
        IpAddr::V6(_) => false,
    };
    Ok(Some(LiteralSocket { sock, address, peername }))
}

/// What [`literal_socket`] makes.
pub(crate) struct LiteralSocket<'py> {
    pub(crate) sock: Bound<'py, PyAny>,
    /// The address to connect to.
    pub(crate) address: Bound<'py, PyTuple>,
    /// `address` is the connection's `peername` as getpeername(2) would
    /// give it.
    pub(crate) peername: bool,
}

/// Makes `op` (an [`Op::Open`] whose connect is in progress on the fresh
/// socket `sock`) the socket's write watcher, for `fut`.
pub(crate) fn wait_open(
    core: &crate::Core,
    sock: &Bound<'_, PyAny>,
    fut: &Bound<'_, PyAny>,
    op: Op,
) -> PyResult<()> {
    let lp = core.open_loop()?;
    let fd = fileno(sock)?;
    let sock_op = Rc::new(SockOp {
        id: next_id(),
        fd,
        sock: SockObject::Strong(sock.clone().unbind()),
        fut: fut.clone().unbind(),
        op,
    });
    core.watch_anew(lp, fd, Direction::Write, Watcher::Op(sock_op))
}

/// The first try of a connect: straight `connect(2)` for a plain socket
/// and an IP-literal address in its family's tuple form, Python's
/// `connect` otherwise (host names, Unix paths, other objects).
pub(crate) fn connect_now(
    py: Python<'_>,
    sock: &Bound<'_, PyAny>,
    address: &Bound<'_, PyAny>,
) -> PyResult<Try> {
    if is_plain_socket(sock)?
        && let Some(addr) = crate::pysock::from_python(address, Kind::of(sock)?.family)
    {
        let fd = fileno(sock)?;
        let started = with_fd(py, fd, |s| {
            s.connect(&addr).map_err(|e| match e.raw_os_error() {
                // Python's `BlockingIOError` too: wait for writable.
                Some(libc::EINPROGRESS) => io::ErrorKind::WouldBlock.into(),
                _ => e,
            })
        });
        return Ok(match started {
            Ok(()) => Try::Done(py.None()),
            Err(t) => t,
        });
    }
    Ok(python_try(py, sock.call_method1(intern!(py, "connect"), (address,))))
}

/// Builds the operation of a `sock_*` call from its arguments.
pub(crate) fn recv_op(n: isize) -> PyResult<Op> {
    let n = usize::try_from(n).map_err(|_| PyValueError::new_err("negative buffersize in recv"))?;
    Ok(Op::Recv { n })
}

pub(crate) fn sendall_op(data: &Bound<'_, PyAny>) -> PyResult<Op> {
    Ok(Op::SendAll { data: contiguous(data)?, sent: std::cell::Cell::new(0) })
}

pub(crate) fn sendfile_op(
    file: Py<PyAny>,
    file_fd: RawFd,
    offset: u64,
    count: usize,
    blocksize: usize,
) -> Op {
    Op::SendFile {
        file,
        file_fd,
        offset: std::cell::Cell::new(offset),
        count,
        blocksize,
        sent: std::cell::Cell::new(0),
        again: std::cell::Cell::new(false),
    }
}

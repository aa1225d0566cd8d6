//! Native accepting: `sock_accept` and the accept loop of servers without
//! TLS take connections with `accept4(2)` and make their socket objects
//! themselves, as Python's `socket.accept()` followed by asyncio's
//! `setblocking(False)` would, without a Python frame per connection.
//!
//! Invariants:
//! - Only an exact `socket.socket` listener of `AF_INET`, `AF_INET6` or
//!   `AF_UNIX` is accepted on directly; any other object (a subclass, a
//!   wrapper, another family) gets its own `accept()` called, as asyncio
//!   calls it.
//! - An accepted fd is owned by exactly one thing at every moment: the
//!   `socket2::Socket` until its Python socket object exists, that object
//!   after. A failure in between closes it; none leaks.
//! - The connection's socket object is what Python's `socket.accept()`
//!   makes (`socket.socket` of the listener's family, type and protocol,
//!   its address as Python names it), then non-blocking (timeout 0.0).

use pyo3::exceptions::{
    PyBlockingIOError, PyConnectionAbortedError, PyInterruptedError, PyKeyboardInterrupt, PyOSError,
    PySystemExit,
};
use std::cell::Cell;
use std::rc::Rc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use socket2::SockRef;

use crate::sock::{Kind, Try, fileno, is_plain_socket, with_fd};

/// One accepted connection: its socket object and its peer's address.
pub(crate) type Accepted<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// Accepts one connection on `listener`: `None` if none is waiting
/// (`EAGAIN`, or `EINTR`: asyncio's `BlockingIOError`/`InterruptedError`),
/// otherwise the connection as `socket.accept()` gives it, non-blocking.
///
/// # Errors
///
/// The `OSError` subclass Python's `accept()` raises (`EMFILE` is an
/// `OSError`, `ECONNABORTED` a `ConnectionAbortedError`…), or what a
/// non-native listener's own `accept()`/`setblocking()` raises.
pub(crate) fn accept<'py>(listener: &Bound<'py, PyAny>) -> PyResult<Option<Accepted<'py>>> {
    accept_as(listener, native_kind(listener)?.as_ref())
}

/// [`accept`] with the listener's [`native_kind`] already read (a
/// server's batch reads it once).
fn accept_as<'py>(listener: &Bound<'py, PyAny>, kind: Option<&Kind>) -> PyResult<Option<Accepted<'py>>> {
    let py = listener.py();
    let Some(kind) = kind else {
        let pair = match listener.call_method0(intern!(py, "accept")) {
            Ok(pair) => pair,
            Err(e) if not_ready(py, &e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let conn = pair.get_item(0)?;
        conn.call_method1(intern!(py, "setblocking"), (false,))?;
        return Ok(Some((conn, pair.get_item(1)?)));
    };
    let fd = fileno(listener)?;
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    let (socket, addr) = match with_fd(py, fd, |s: SockRef<'_>| s.accept4(flags)) {
        Ok(pair) => pair,
        Err(Try::Wait) => return Ok(None),
        Err(Try::Failed(e)) => return Err(e),
        Err(Try::Done(_)) => unreachable!("with_fd fails only with Wait or Failed"),
    };
    let peer = crate::pysock::accepted_to_python(py, &addr)?;
    let conn = kind.wrap(py, socket)?;
    Ok(Some((conn, peer)))
}

/// The address every connection `listener` accepts has as its own: the
/// listener's, for an IP listener bound to a given address; `None` for a
/// wildcard (each connection's is the interface it came in on) or
/// anything else.
///
/// # Errors
///
/// Only what reading the socket object raises.
pub(crate) fn shared_sockname<'py>(listener: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = listener.py();
    let Some(kind) = native_kind(listener)? else { return Ok(None) };
    if !matches!(kind.family, libc::AF_INET | libc::AF_INET6) {
        return Ok(None);
    }
    let Ok(local) = with_fd(py, fileno(listener)?, |s| s.local_addr()) else { return Ok(None) };
    match local.as_socket() {
        Some(addr) if !addr.ip().is_unspecified() => match crate::pysock::to_python(py, &local) {
            Some(name) => Ok(Some(name?.into_any())),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Whether `e` is asyncio's "not ready, try again later".
fn not_ready(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py)
}

/// The listener's [`Kind`] if it is accepted on natively: an exact
/// `socket.socket` of `AF_INET`, `AF_INET6` or `AF_UNIX`.
fn native_kind(listener: &Bound<'_, PyAny>) -> PyResult<Option<Kind>> {
    if !is_plain_socket(listener)? {
        return Ok(None);
    }
    let kind = Kind::of(listener)?;
    Ok(matches!(kind.family, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX).then_some(kind))
}

/// Whether an accept error is asyncio's "out of system resource"
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the server stops accepting
/// for a while instead of spinning on a listener that stays ready.
fn out_of_resources(py: Python<'_>, e: &PyErr) -> bool {
    if !e.is_instance_of::<PyOSError>(py) {
        return false;
    }
    let errno = e.value(py).getattr(intern!(py, "errno")).ok().and_then(|n| n.extract::<i32>().ok());
    matches!(errno, Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// asyncio's `_accept_connection` for a server without TLS: up to
/// `backlog` connections per readiness event, each given a protocol from
/// `protocol_factory` and a transport of class `transport` (made
/// natively, without its Python `__init__`; `None`: by the loop's
/// `_make_socket_transport`, which a loop subclass may override) at once, with no task per connection (asyncio's waiter is done one
/// pass after `connection_made` and nothing else awaits it). `None` when
/// the listener is drained (or a connection was aborted before it was
/// taken: asyncio stops there too); the exception if accepting ran out of
/// fds or memory, for the caller's back-off; with how many connections
/// were taken (`backlog` of them: there may be more waiting).
///
/// # Errors
///
/// Any other accept error (the loop's exception handler reports it), and
/// `KeyboardInterrupt`/`SystemExit` from the factory or the transport.
#[allow(clippy::too_many_arguments)]
pub(crate) fn accept_connections<'py>(
    pyloop: &Bound<'py, PyAny>,
    sock: &Bound<'py, PyAny>,
    protocol_factory: &Bound<'py, PyAny>,
    server: &Bound<'py, PyAny>,
    backlog: usize,
    transport: Option<&Bound<'py, PyAny>>,
    sockname: Option<&Bound<'py, PyAny>>,
) -> PyResult<(usize, Option<Bound<'py, PyAny>>)> {
    let py = pyloop.py();
    let kind = native_kind(sock)?;
    for taken in 0..backlog {
        let (conn, peer) = match accept_as(sock, kind.as_ref()) {
            Ok(Some(pair)) => pair,
            Ok(None) => return Ok((taken, None)),
            Err(e) if e.is_instance_of::<PyConnectionAbortedError>(py) => return Ok((taken, None)),
            Err(e) if out_of_resources(py, &e) => {
                return Ok((taken, Some(e.into_value(py).into_bound(py).into_any())));
            }
            Err(e) => return Err(e),
        };
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "peername"), peer)?;
        if let Some(name) = sockname {
            extra.set_item(intern!(py, "sockname"), name)?;
        }
        serve(pyloop, &conn, extra, protocol_factory, server, transport, kind.as_ref())?;
    }
    Ok((backlog, None))
}

/// The protocol and transport of one accepted connection (`listener_kind`:
/// the listener's, if it is accepted on natively). A failure
/// closes the connection and is reported in debug mode only (asyncio's
/// `_accept_connection2`); `KeyboardInterrupt` and `SystemExit` go on.
fn serve<'py>(
    pyloop: &Bound<'py, PyAny>,
    conn: &Bound<'py, PyAny>,
    extra: Bound<'py, PyDict>,
    protocol_factory: &Bound<'py, PyAny>,
    server: &Bound<'py, PyAny>,
    transport: Option<&Bound<'py, PyAny>>,
    listener_kind: Option<&Kind>,
) -> PyResult<()> {
    let py = pyloop.py();
    let mut protocol = None;
    let made = (|| {
        let p = protocol_factory.call0()?;
        protocol = Some(p.clone());
        match transport {
            Some(cls) => {
                // A natively accepted connection is a plain socket of the
                // listener's kind; another one's kind is its own.
                let own = match listener_kind {
                    Some(_) => None,
                    None => crate::sock::plain_kind(conn)?,
                };
                let kind = listener_kind.or(own.as_ref());
                crate::transport::new_stream_transport(cls, pyloop, conn, &p, extra, Some(server), kind)
            }
            None => {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "extra"), extra)?;
                kwargs.set_item(intern!(py, "server"), server)?;
                let make = pyloop.getattr(intern!(py, "_make_socket_transport"))?;
                make.call((conn, &p), Some(&kwargs))
            }
        }
    })();
    let Err(e) = made else { return Ok(()) };
    if e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py) {
        return Err(e);
    }
    crate::sock::close(conn)?;
    if pyloop.call_method0(intern!(py, "get_debug"))?.is_truthy()? {
        let context = PyDict::new(py);
        context.set_item("message", "Error on transport creation for incoming connection")?;
        context.set_item("exception", e.into_value(py))?;
        if let Some(p) = protocol {
            context.set_item("protocol", p)?;
        }
        pyloop.call_method1(intern!(py, "call_exception_handler"), (context,))?;
    }
    Ok(())
}

/// A listener served natively (`EventLoop._start_serving` for a server
/// without TLS): the fd's watcher ([`crate::Watcher::Accept`]), which runs
/// [`accept_connections`] on each readiness event itself, without the
/// asyncio `Handle`, `Context.run` and `_accept_connection` frames asyncio
/// goes through.
///
/// A readiness event takes one connection, not a batch ending in an
/// `accept` that finds none (`EAGAIN` costs the kernel a socket and a file
/// made and freed: 3 µs, more than a connection's whole Python side here),
/// unless the listener was ready again at the very next poll after taking
/// one: then connections come faster than one per poll, and the event
/// takes up to `backlog` of them, as asyncio's `_accept_connection` does.
pub(crate) struct Listening {
    pub(crate) pyloop: Py<PyAny>,
    pub(crate) sock: Py<PyAny>,
    pub(crate) protocol_factory: Py<PyAny>,
    pub(crate) server: Py<PyAny>,
    pub(crate) backlog: usize,
    /// The transport class made natively; `None`: the loop's
    /// `_make_socket_transport` makes them.
    pub(crate) transport: Option<Py<PyAny>>,
    /// A copy of the context `_start_serving` ran in (asyncio's handle
    /// runs its callback in one): protocols and transports are made in it.
    pub(crate) context: Py<PyAny>,
    /// `_start_serving`'s arguments, for the retry after running out of
    /// fds or memory.
    pub(crate) serving: Py<PyTuple>,
    /// The listener's address when every connection it accepts has that
    /// one (an IP listener bound to a given address, not a wildcard): the
    /// `sockname` of its transports, without a `getsockname` each.
    pub(crate) sockname: Option<Py<PyAny>>,
    /// The loop's poll count (`LoopStats::polls`) when a readiness event
    /// last took exactly one connection, with no batch: ready again at the
    /// next poll, the listener gets a whole batch.
    pub(crate) took_one_at: Cell<Option<u64>>,
}

impl Listening {
    /// Visits every object held (the core's `__traverse__`).
    pub(crate) fn visit(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        for obj in [&self.pyloop, &self.sock, &self.protocol_factory, &self.server, &self.context] {
            visit(obj);
        }
        if let Some(name) = &self.sockname {
            visit(name);
        }
        if let Some(t) = &self.transport {
            visit(t);
        }
        visit(self.serving.as_any());
    }
}

/// The listener of `listening` is ready: one batch of accepts. Running
/// out of fds or memory goes to the loop's `_accept_out_of_resources`
/// (report, pause, retry later, as asyncio); any other error is reported
/// to the loop's exception handler as the failure of a callback, and
/// `KeyboardInterrupt`/`SystemExit` end the run.
pub(crate) fn on_ready(py: Python<'_>, state: &Rc<crate::RunState>, listening: &Listening) {
    let pyloop = listening.pyloop.bind(py);
    // The poll that found the listener ready (the loop is running: this
    // is its fd callback).
    let poll = evloop::get_running_loop().map(|lp| lp.stats().polls).ok();
    let batch = match (poll, listening.took_one_at.get()) {
        (Some(now), Some(then)) => now == then + 1,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let limit = if batch { listening.backlog } else { 1 };
    let accept = || {
        accept_connections(
            pyloop,
            listening.sock.bind(py),
            listening.protocol_factory.bind(py),
            listening.server.bind(py),
            limit,
            listening.transport.as_ref().map(|t| t.bind(py)),
            listening.sockname.as_ref().map(|n| n.bind(py)),
        )
    };
    let outcome =
        crate::handle::run_in_context(py, listening.context.bind(py), accept).unwrap_or_else(accept);
    let took_one = limit == 1 && matches!(outcome, Ok((1, None)));
    listening.took_one_at.set(if took_one { poll } else { None });
    let outcome = outcome.and_then(|(_, exhausted)| match exhausted {
        Some(exc) => {
            let mut args = vec![exc];
            args.extend(listening.serving.bind(py).iter());
            pyloop.call_method1(intern!(py, "_accept_out_of_resources"), PyTuple::new(py, args)?).map(drop)
        }
        None => Ok(()),
    });
    let Err(e) = outcome else { return };
    if e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py) {
        return crate::interrupt_with(state, e, None);
    }
    let reported = (|| -> PyResult<()> {
        let ctx = PyDict::new(py);
        let sock = listening.sock.bind(py);
        ctx.set_item(intern!(py, "message"), format!("Exception in callback accepting on {}", sock.repr()?))?;
        ctx.set_item(intern!(py, "exception"), e.value(py))?;
        ctx.set_item(intern!(py, "socket"), sock)?;
        pyloop.call_method1(intern!(py, "call_exception_handler"), (ctx,)).map(drop)
    })();
    if let Err(e) = reported {
        crate::interrupt_with(state, e, None);
    }
}

//! evloop's `create_connection` for the common call (an IP-literal host,
//! an `int` port, every option at its default, outside debug mode), in one
//! native operation awaited as one future: the socket and its connect,
//! then, once connected, the protocol from the factory and the transport,
//! whose start completes the future with `(transport, protocol)` once
//! `connection_made` ran. asyncio's coroutine awaits twice (the connect,
//! then the transport's waiter); this awaits once.
//!
//! Behaviour is asyncio's `create_connection` for one address: the
//! factory is called once the connect succeeded, in the context the call
//! was made in (a copy of it when the connect had to wait: what the
//! factory sets there is not seen by the caller's task, see the guide's
//! "Differences"); a failed connect raises what `sock_connect` raises; a
//! failing factory or transport closes the socket and raises; a cancelled
//! call closes the socket (still connecting) or the transport (made).
//!
//! Invariant: while connecting, the operation ([`Op::Open`]) is the
//! socket's write watcher and holds the [`Opening`]; once the future is
//! done, the socket is closed or owned by the transport.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit, intern};

use crate::sock::{self, Op, Try};
use crate::{Core, Direction};

/// A `create_connection` in progress (see the module docs): what the
/// coroutine awaits (`future`) and what it calls when it is cancelled or
/// closed (`abandon`).
#[pyclass(frozen, module = "evloop._evloop")]
pub(crate) struct Opening {
    /// Done with `(transport, protocol)`, or with the call's exception.
    future: Py<PyAny>,
    sock: Py<PyAny>,
    core: Py<Core>,
    protocol_factory: Py<PyAny>,
    /// The class of the transport (`evloop._loop._SocketTransport`).
    cls: Py<PyAny>,
    /// The context the factory and the transport are made in once the
    /// connect completes: a copy of the caller's.
    context: Py<PyAny>,
    /// The connection's `peername` when the address connected to is it
    /// (no getpeername(2) then).
    peername: Option<Py<PyAny>>,
    /// The transport, once made.
    transport: Mutex<Option<Py<PyAny>>>,
}

impl Opening {
    fn made(&self) -> MutexGuard<'_, Option<Py<PyAny>>> {
        self.transport.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connect succeeded: the protocol and the transport are made
    /// (the transport's start completes the future). A failure closes
    /// the socket and is the future's exception.
    pub(crate) fn connected(&self, py: Python<'_>) -> PyResult<()> {
        let context = self.context.bind(py);
        let outcome = crate::handle::run_in_context(py, context, || self.make_transport(py))
            .unwrap_or_else(|| self.make_transport(py));
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => self.failed(py, e),
        }
    }

    fn make_transport(&self, py: Python<'_>) -> PyResult<()> {
        let protocol = self.protocol_factory.bind(py).call0()?;
        let pyloop = self.core.get().pyloop(py)?;
        let sock = self.sock.bind(py);
        let transport = crate::transport::new_client_transport(
            self.cls.bind(py),
            pyloop.bind(py),
            sock,
            &protocol,
            self.future.bind(py),
            self.peername.as_ref().map(|p| p.bind(py)),
        )?;
        let old = self.made().replace(transport.unbind());
        drop(old); // after the lock
        Ok(())
    }

    /// The call failed with `e`: the socket is closed and `e` is the
    /// future's exception (unless the future is done: cancelled).
    pub(crate) fn failed(&self, py: Python<'_>, e: PyErr) -> PyResult<()> {
        let closed = sock::close(self.sock.bind(py));
        let fut = self.future.bind(py);
        if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?;
        }
        closed
    }
}

#[pymethods]
impl Opening {
    /// The future the coroutine awaits.
    #[getter]
    fn future(&self, py: Python<'_>) -> Py<PyAny> {
        self.future.clone_ref(py)
    }

    /// The coroutine was cancelled or closed while awaiting (or after the
    /// future was done, before it resumed): as asyncio's
    /// `create_connection`, the transport is closed if it was made, the
    /// socket otherwise (its pending connect dropped first).
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.made().take();
        if let Some(transport) = transport {
            return transport.bind(py).call_method0(intern!(py, "close")).map(drop);
        }
        let sock = self.sock.bind(py);
        let fd = sock::fileno(sock)?;
        if fd < 0 {
            return Ok(()); // closed when the call failed
        }
        self.core.get().drop_op_of(fd, Direction::Write, sock);
        sock::close(sock)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for obj in [&self.future, &self.sock, &self.protocol_factory, &self.cls, &self.context] {
            visit.call(obj)?;
        }
        if let Some(peername) = &self.peername {
            visit.call(peername)?;
        }
        visit.call(&self.core)?;
        if let Ok(made) = self.transport.try_lock()
            && let Some(transport) = &*made
        {
            visit.call(transport)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = self.transport.try_lock().ok().and_then(|mut t| t.take());
        drop(old);
    }
}

/// `Core.create_connection` (see there).
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_connection<'py>(
    py: Python<'py>,
    core: &Bound<'py, Core>,
    pyloop: &Bound<'py, PyAny>,
    host: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
    protocol_factory: &Bound<'py, PyAny>,
    cls: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, Opening>>> {
    if !replaces_asyncios_steps(pyloop)? {
        return Ok(None);
    }
    let Some(literal) = sock::literal_socket(py, core.get(), host, port)? else { return Ok(None) };
    let (sock, address) = (literal.sock, literal.address);
    let started = match sock::connect_now(py, &sock, address.as_any()) {
        Ok(started) => started,
        Err(e) => Try::Failed(e),
    };
    if let Try::Failed(e) = started {
        sock::close(&sock)?;
        return Err(e);
    }
    let future = crate::loop_base::new_future(core.get().pyloop(py)?.bind(py))?;
    let opening = Bound::new(
        py,
        Opening {
            future: future.unbind(),
            sock: sock.clone().unbind(),
            core: core.clone().unbind(),
            protocol_factory: protocol_factory.clone().unbind(),
            cls: cls.clone().unbind(),
            context: crate::handle::copy_context(py)?,
            peername: literal.peername.then(|| address.clone().into_any().unbind()),
            transport: Mutex::new(None),
        },
    )?;
    match started {
        // Connected at once: made here, in the caller's own context, as
        // asyncio makes them.
        Try::Done(_) => {
            if let Err(e) = opening.get().make_transport(py) {
                sock::close(&sock)?;
                return Err(e);
            }
        }
        _ => {
            let op = Op::Open { address: address.into_any().unbind(), opening: opening.clone().unbind() };
            if let Err(e) = sock::wait_open(core.get(), &sock, opening.get().future.bind(py), op) {
                sock::close(&sock)?;
                return Err(e);
            }
        }
    }
    Ok(Some(opening))
}

/// Whether asyncio's `create_connection` steps that the native one
/// replaces are evloop's own on `pyloop`: not in debug mode (whose
/// coroutine logs), and neither the loop (a mock set on the instance) nor
/// its class gives its own `sock_connect` or `_make_socket_transport`.
fn replaces_asyncios_steps(pyloop: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = pyloop.py();
    if crate::loop_base::native_debug(pyloop) != Some(false) {
        return Ok(false);
    }
    // SAFETY: a live object, with the GIL held; returns a new reference
    // or NULL with an exception set (an object without a `__dict__`).
    let attrs = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyObject_GenericGetDict(pyloop.as_ptr(), std::ptr::null_mut()),
        )
    };
    if let Ok(attrs) = attrs.and_then(|a| Ok(a.cast_into::<pyo3::types::PyDict>()?))
        && (attrs.contains(intern!(py, "sock_connect"))?
            || attrs.contains(intern!(py, "_make_socket_transport"))?)
    {
        return Ok(false);
    }
    crate::loop_base::keeps_connect_steps(pyloop)
}

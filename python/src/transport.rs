//! The read path of asyncio's socket transport, run natively: when
//! `_SelectorSocketTransport` registers its `_read_ready` (and neither it
//! nor `_read_ready__data_received` is overridden), the core's fd watcher
//! does what `_read_ready__data_received` does itself: `recv` on the fd,
//! then `protocol.data_received(data)`, in the handle's context, without
//! the `Handle._run`, `Context.run` and two Python frames per read.
//!
//! Invariant: the transport's own state decides everything, read at every
//! event (`_conn_lost`, `_read_ready_cb`, `_protocol`): a `set_protocol`
//! to a `BufferedProtocol`, debug mode, or a context that is not a real
//! `contextvars.Context` runs asyncio's Python path instead, and every
//! outcome other than data (end of file, errors) is handed to the
//! transport's own methods, so asyncio's behaviour is unchanged.

use std::os::fd::RawFd;
use std::rc::Rc;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::handle::run_in_context;
use crate::{RunState, interrupt_with, run_handle};

/// asyncio's `_SelectorSocketTransport._read_ready__data_received`, the
/// read callback this module stands in for.
fn data_received_path(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static PATH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    PATH.get_or_try_init(py, || {
        let cls = py.import("asyncio.selector_events")?.getattr("_SelectorSocketTransport")?;
        Ok::<_, PyErr>(cls.getattr("_read_ready__data_received")?.unbind())
    })
    .map(|p| p.bind(py))
}

/// The transport reader of `fd`: its asyncio handle (for cancellation,
/// the context, and the Python path) and the transport.
pub(crate) fn on_ready(py: Python<'_>, state: &Rc<RunState>, handle: &Py<PyAny>, transport: &Py<PyAny>) {
    let h = handle.bind(py);
    let native = (|| -> PyResult<Option<Bound<'_, PyAny>>> {
        if state.debug.get() || h.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            return Ok(None);
        }
        let tr = transport.bind(py);
        let cb = tr.getattr(intern!(py, "_read_ready_cb"))?;
        let path = data_received_path(py)?;
        let on_data = cb.getattr(intern!(py, "__func__")).is_ok_and(|f| f.is(path));
        if !on_data {
            return Ok(None);
        }
        Ok(Some(h.getattr(intern!(py, "_context"))?))
    })();
    let context = match native {
        Ok(Some(context)) => context,
        // Cancelled: as asyncio, nothing runs; the Python path otherwise.
        Ok(None) if h.getattr(intern!(py, "_cancelled")).and_then(|c| c.is_truthy()).unwrap_or(false) => {
            return;
        }
        Ok(None) | Err(_) => return run_handle(py, handle),
    };
    let Some(outcome) = run_in_context(py, &context, || read(py, state, transport.bind(py))) else {
        return run_handle(py, handle);
    };
    if let Err(e) = outcome {
        escaped(py, state, h, e);
    }
}

/// `_read_ready__data_received`, for one readiness event.
fn read(py: Python<'_>, state: &RunState, tr: &Bound<'_, PyAny>) -> PyResult<()> {
    if tr.getattr(intern!(py, "_conn_lost"))?.is_truthy()? {
        return Ok(());
    }
    let fd: RawFd = tr.getattr(intern!(py, "_sock_fd"))?.extract()?;
    let max: usize = tr.getattr(intern!(py, "max_size"))?.extract()?;
    let data = match crate::sock::recv_bytes(py, state, fd, max) {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(()), // not ready after all
        Err(e) if is_base(py, &e) => return Err(e),
        Err(e) => {
            tr.call_method1(
                intern!(py, "_fatal_error"),
                (e.into_value(py), "Fatal read error on socket transport"),
            )?;
            return Ok(());
        }
    };
    if data.as_bytes().is_empty() {
        tr.call_method0(intern!(py, "_read_ready__on_eof"))?;
        return Ok(());
    }
    let protocol = tr.getattr(intern!(py, "_protocol"))?;
    match protocol.call_method1(intern!(py, "data_received"), (data,)) {
        Ok(_) => Ok(()),
        Err(e) if is_base(py, &e) => Err(e),
        Err(e) => {
            let message = "Fatal error: protocol.data_received() call failed.";
            tr.call_method1(intern!(py, "_fatal_error"), (e.into_value(py), message)).map(drop)
        }
    }
}

fn is_base(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyKeyboardInterrupt>(py) || e.is_instance_of::<PySystemExit>(py)
}

/// What asyncio's `Handle._run` does with an exception the callback let
/// through: `KeyboardInterrupt`/`SystemExit` end the run, the rest goes
/// to the loop's exception handler.
fn escaped(py: Python<'_>, state: &Rc<RunState>, handle: &Bound<'_, PyAny>, e: PyErr) {
    if is_base(py, &e) {
        return interrupt_with(state, e, None);
    }
    let reported = (|| -> PyResult<()> {
        let ctx = PyDict::new(py);
        ctx.set_item(intern!(py, "message"), format!("Exception in callback {}", handle.repr()?))?;
        ctx.set_item(intern!(py, "exception"), e.value(py))?;
        ctx.set_item(intern!(py, "handle"), handle)?;
        handle.getattr(intern!(py, "_loop"))?.call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        Ok(())
    })();
    if let Err(e) = reported {
        interrupt_with(state, e, None);
    }
}

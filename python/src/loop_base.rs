//! `LoopBase`: the native base class of `evloop.EventLoop`, whose methods
//! are asyncio's scheduling calls (`call_soon`, `call_later`, `call_at`)
//! and its clock (`time`).
//!
//! Being methods of the class (not per-instance attributes), they are
//! what CPython's method-call fast path finds: `loop.call_soon(cb)` costs
//! no bound-method object and no instance-dict lookup, and goes straight
//! to the loop's [`Core`]. Invariant: the core is set once, by the Python
//! loop's `__init__`, before any scheduling call; debug mode goes through
//! the Python loop's checking versions (`_call_soon_debug`, …).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit, intern};

use crate::Core;
use crate::handle::{Handle, TimerHandle};

/// The native base of `evloop.EventLoop` (see the module docs).
#[pyclass(frozen, subclass, module = "evloop._evloop")]
pub(crate) struct LoopBase {
    core: OnceLock<Py<Core>>,
    /// The loop's debug mode, mirrored from `set_debug`.
    debug: AtomicBool,
}

impl LoopBase {
    fn core(&self) -> PyResult<&Py<Core>> {
        self.core.get().ok_or_else(|| PyRuntimeError::new_err("the loop has no core (EventLoop.__init__)"))
    }

    fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }
}

/// `name(*lead, *args, context=context)` on the Python loop: its debug-mode
/// version of a scheduling call.
fn call_debug<'py>(
    slf: &Bound<'py, LoopBase>,
    name: &Bound<'py, pyo3::types::PyString>,
    mut lead: Vec<Bound<'py, PyAny>>,
    args: &Bound<'py, PyTuple>,
    context: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    lead.extend(args.iter());
    let all = PyTuple::new(py, lead)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "context"), context)?;
    slf.call_method(name, all, Some(&kwargs))
}

#[pymethods]
impl LoopBase {
    /// Takes any arguments: the Python subclass's `__init__` reads them.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> LoopBase {
        LoopBase { core: OnceLock::new(), debug: AtomicBool::new(false) }
    }

    /// Names the loop's core, once.
    fn _set_core(&self, core: Py<Core>) -> PyResult<()> {
        self.core.set(core).map_err(|_| PyRuntimeError::new_err("the loop's core is already set"))
    }

    /// Debug mode on or off for the scheduling calls.
    fn _set_native_debug(&self, on: bool) {
        self.debug.store(on, Ordering::Relaxed);
    }

    /// asyncio's `time()`: seconds on the loop's monotonic clock (see
    /// `Core.time`).
    fn time(&self) -> PyResult<f64> {
        self.core()?.get().time()
    }

    /// asyncio's `call_soon`: a native `Handle`, itself the queued entry.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon<'py>(
        slf: &Bound<'py, LoopBase>,
        callback: Py<PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.debug() {
            return call_debug(
                slf,
                intern!(py, "_call_soon_debug"),
                vec![callback.into_bound(py)],
                args,
                context,
            );
        }
        let handle: Py<Handle> = this.core()?.get().call_soon(py, callback, args, context)?;
        Ok(handle.into_bound(py).into_any())
    }

    /// asyncio's `call_later`: a native `TimerHandle`.
    #[pyo3(signature = (delay, callback, *args, context = None))]
    fn call_later<'py>(
        slf: &Bound<'py, LoopBase>,
        delay: &Bound<'py, PyAny>,
        callback: Py<PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.debug() {
            let lead = vec![delay.clone(), callback.into_bound(py)];
            return call_debug(slf, intern!(py, "_call_later_debug"), lead, args, context);
        }
        let timer: Py<TimerHandle> = Core::call_later(this.core()?.bind(py), delay, callback, args, context)?;
        Ok(timer.into_bound(py).into_any())
    }

    /// asyncio's `call_at`: a native `TimerHandle`.
    #[pyo3(signature = (when, callback, *args, context = None))]
    fn call_at<'py>(
        slf: &Bound<'py, LoopBase>,
        when: &Bound<'py, PyAny>,
        callback: Py<PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.debug() {
            let lead = vec![when.clone(), callback.into_bound(py)];
            return call_debug(slf, intern!(py, "_call_at_debug"), lead, args, context);
        }
        let timer: Py<TimerHandle> = Core::call_at(this.core()?.bind(py), when, callback, args, context)?;
        Ok(timer.into_bound(py).into_any())
    }

    /// The core, for the GC: loop → core → (its queued handles, the
    /// Python loop) is a cycle the GC must see whole.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(core) = self.core.get() {
            visit.call(core)?;
        }
        Ok(())
    }
}

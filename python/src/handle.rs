//! Native `Handle` and `TimerHandle`: asyncio's API and reprs, and each
//! one *is* the core's queued entry ([`HandleEntry`], [`TimerEntry`]: one
//! `Py` pointer), so `call_soon` allocates the Python object and nothing
//! else.
//!
//! Invariant: no `PyRef` of a handle is held while Python code runs (the
//! callback, `repr` of its arguments, the exception handler), so a
//! callback may cancel its own handle.

use std::sync::{Mutex, MutexGuard, PoisonError};

use evloop::{ForeignEntry, TimerKey};
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{ffi, intern};

use crate::Core;

/// What a [`Handle`] holds. Locked only for moments that run no Python
/// code (no call, no decref that could free an object): values are cloned
/// or taken out, and dropped after the lock is released.
struct Fields {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
    /// The asyncio loop (for its exception handler and `_loop`).
    event_loop: Option<Py<PyAny>>,
    context: Option<Py<PyAny>>,
    cancelled: bool,
    /// What debug mode adds, boxed: a handle is made per `call_soon`, and
    /// 16 bytes less put it in a smaller size class of CPython's allocator
    /// (96 bytes with its GC header, not 112: fewer cache lines per queued
    /// handle).
    debug: Option<Box<DebugFields>>,
}

/// A handle's debug-mode fields.
#[derive(Default)]
struct DebugFields {
    /// Set by `cancel()` in debug mode: the repr the handle had.
    repr: Option<Py<PyAny>>,
    /// Debug mode: where the handle was made (asyncio's frame summary).
    source_traceback: Option<Py<PyAny>>,
}

impl Fields {
    fn repr(&self) -> Option<&Py<PyAny>> {
        self.debug.as_ref()?.repr.as_ref()
    }

    fn source_traceback(&self) -> Option<&Py<PyAny>> {
        self.debug.as_ref()?.source_traceback.as_ref()
    }

    fn debug_mut(&mut self) -> &mut DebugFields {
        self.debug.get_or_insert_with(Box::default)
    }
}

/// asyncio's `Handle`: a callback with its arguments and context, queued
/// on an evloop loop. Not a subclass of `asyncio.Handle` (as uvloop's
/// handles are not); the API is the same.
///
/// Not tracked by Python's GC (so making one triggers no collection):
/// while the loop holds a handle it alone refers to, the loop's core
/// visits the handle's contents for it (`Core.__traverse__`), and once
/// the loop has run or cancelled a handle, the handle lets go of its
/// callback, arguments and loop, so no cycle can run through it.
#[pyclass(frozen, module = "evloop._evloop", name = "Handle", subclass, weakref)]
pub(crate) struct Handle {
    fields: Mutex<Fields>,
}

impl Handle {
    pub(crate) fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        event_loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Handle> {
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            _ => copy_context(py)?,
        };
        Ok(Handle {
            fields: Mutex::new(Fields {
                callback: Some(callback),
                args: Some(args),
                event_loop: Some(event_loop),
                context: Some(context),
                cancelled: false,
                debug: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Fields> {
        self.fields.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Visits what the handle holds, for the GC pass of the core that
    /// alone refers to it; skipped if the fields are locked elsewhere.
    pub(crate) fn visit_fields(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        let Ok(f) = self.fields.try_lock() else { return };
        for obj in [&f.callback, &f.event_loop, &f.context].into_iter().flatten() {
            visit(obj);
        }
        for obj in [f.repr(), f.source_traceback()].into_iter().flatten() {
            visit(obj);
        }
        if let Some(args) = &f.args {
            visit(args.as_any());
        }
    }

    /// The loop ran the handle (or dropped it): it lets go of its
    /// callback, arguments and loop, which breaks any cycle through it.
    pub(crate) fn release(&self, this: &Py<Handle>) {
        // The caller's reference is the last one: the decref that follows
        // frees the handle and all it holds, and no cycle can run through
        // an object nothing else refers to. Most handles end this way.
        if holds_the_only_reference(this.as_any()) {
            return;
        }
        let taken = {
            let mut f = self.lock();
            (f.callback.take(), f.args.take(), f.event_loop.take())
        };
        drop(taken); // after the lock: a decref may run Python code
    }

    /// For an entry that has run, before it is dropped: if `this` is the
    /// last reference, everything the handle holds is let go now, with
    /// the GIL token, each by a plain decref (dropping a `Py` checks
    /// PyO3's thread-local attach count first), so that freeing the
    /// handle has nothing left to drop.
    /// Otherwise nothing is done: the entry's drop then releases it.
    pub(crate) fn release_attached(&self, py: Python<'_>, this: &Py<Handle>) {
        if !holds_the_only_reference(this.as_any()) {
            return;
        }
        let taken = {
            let mut f = self.lock();
            (f.callback.take(), f.args.take(), f.event_loop.take(), f.context.take())
        };
        // After the lock: a decref may run Python code.
        let (callback, args, event_loop, context) = taken;
        for obj in [callback, event_loop, context].into_iter().flatten() {
            obj.drop_ref(py);
        }
        if let Some(args) = args {
            args.drop_ref(py);
        }
    }

    /// asyncio's `Handle._repr_info`, as a list of words.
    fn repr_info(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        let (cancelled, callback, args, tb) = {
            let f = self.lock();
            (
                f.cancelled,
                f.callback.as_ref().map(|c| c.clone_ref(py)),
                f.args.as_ref().map(|a| a.clone_ref(py)),
                f.source_traceback().map(|t| t.clone_ref(py)),
            )
        };
        let mut info = vec![name.to_owned()];
        if cancelled {
            info.push("cancelled".to_owned());
        }
        if let Some(cb) = callback {
            let args: Py<PyAny> = match args {
                Some(a) => a.into_any(),
                None => py.None(),
            };
            info.push(format_callback_source(py, cb.bind(py), args.bind(py), self.is_debug(py))?);
        }
        if let Some(tb) = tb.map(|t| t.into_bound(py))
            && tb.is_truthy()?
        {
            let frame = tb.get_item(-1)?;
            info.push(format!("created at {}:{}", frame.get_item(0)?, frame.get_item(1)?));
        }
        Ok(info)
    }

    fn saved_repr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().repr().map(|r| r.clone_ref(py))
    }

    fn event_loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().event_loop.as_ref().map(|l| l.clone_ref(py))
    }

    /// The loop's `get_debug()`; an evloop loop's mirrored flag without a
    /// Python call (what its scheduling calls read too: `set_debug`
    /// keeps it), so that cancelling a handle (uvicorn: a keep-alive
    /// timer per request) runs no Python code.
    fn is_debug(&self, py: Python<'_>) -> bool {
        let Some(lp) = self.event_loop(py).map(|lp| lp.into_bound(py)) else { return false };
        if let Some(debug) = crate::loop_base::native_debug(&lp) {
            return debug;
        }
        lp.call_method0(intern!(py, "get_debug")).and_then(|d| d.is_truthy()).unwrap_or(false)
    }

    /// asyncio's `Handle.cancel` minus the timer part: remembers the repr
    /// in debug mode (as asyncio's: once cancelled), then lets go of the
    /// callback and its arguments.
    /// False if it was already cancelled.
    /// `when`: a `TimerHandle`'s deadline, for its repr.
    fn cancel_handle(&self, py: Python<'_>, name: &str, when: Option<f64>) -> PyResult<bool> {
        if self.is_cancelled() {
            return Ok(false);
        }
        let repr = if self.is_debug(py) {
            // asyncio marks the handle cancelled, then takes its repr.
            let mut info = self.repr_info(py, name)?;
            info.insert(1, "cancelled".to_owned());
            if let Some(when) = when {
                info.insert(2, format!("when={}", py_float_repr(py, when)?));
            }
            Some(format!("<{}>", info.join(" ")).into_pyobject(py)?.into_any().unbind())
        } else {
            None
        };
        let taken = {
            let mut f = self.lock();
            if f.cancelled {
                return Ok(false);
            }
            f.cancelled = true;
            let old_repr = match repr {
                Some(repr) => f.debug_mut().repr.replace(repr),
                None => None,
            };
            (f.callback.take(), f.args.take(), old_repr)
        };
        drop(taken); // after the lock: the decrefs may run Python code
        Ok(true)
    }

    /// Runs the callback in its context, as asyncio's `Handle._run`: an
    /// exception goes to the loop's exception handler; `KeyboardInterrupt`
    /// and `SystemExit` (and whatever the handler raises) come back.
    /// Runs the handle for the loop's queue entry that owns it. When that
    /// entry holds the only reference, the callback, arguments, context
    /// and loop are taken out in the same lock that reads them (no
    /// incref, no second lock to let go of them after the call): `Ok(true)`
    /// says so, and the entry need not release the handle again. A
    /// callback that fails gets its fields put back first, so that the
    /// exception handler sees the handle as asyncio shows it.
    pub(crate) fn run_queued(slf: &Bound<'_, Handle>) -> PyResult<bool> {
        let py = slf.py();
        if !holds_the_only_reference(slf.as_any().as_unbound()) {
            return Handle::run(slf).map(|()| false);
        }
        let taken = {
            let mut f = slf.get().lock();
            if f.cancelled {
                return Ok(false);
            }
            match (f.callback.take(), f.args.take(), f.context.take()) {
                (Some(cb), Some(args), Some(ctx)) => (cb, args, ctx, f.event_loop.take()),
                (cb, args, ctx) => {
                    (f.callback, f.args, f.context) = (cb, args, ctx);
                    return Ok(false);
                }
            }
        };
        let (callback, args, context, event_loop) = taken;
        let (callback, args, context) =
            (callback.into_bound(py), args.into_bound(py), context.into_bound(py));
        match call_in_context(py, &context, &callback, &args) {
            Ok(()) => Ok(true), // the `Bound`s are dropped here: plain decrefs
            Err(err) => {
                {
                    let mut f = slf.get().lock();
                    f.callback = Some(callback.clone().unbind());
                    f.args = Some(args.clone().unbind());
                    f.context = Some(context.unbind());
                    f.event_loop = event_loop;
                }
                Handle::report(slf, err, &callback, &args).map(|()| false)
            }
        }
    }

    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        // `Bound`s, not `Py`s: dropping one is a plain decref, without
        // `Py`'s check of PyO3's thread-local attach count.
        let (callback, args, context) = {
            let f = slf.get().lock();
            if f.cancelled {
                return Ok(());
            }
            match (&f.callback, &f.args, &f.context) {
                (Some(cb), Some(args), Some(ctx)) => {
                    (cb.bind(py).clone(), args.bind(py).clone(), ctx.bind(py).clone())
                }
                _ => return Ok(()),
            }
        };
        let outcome = call_in_context(py, &context, &callback, &args);
        let Err(err) = outcome else { return Ok(()) };
        Handle::report(slf, err, &callback, &args)
    }

    /// A callback of this handle raised `err`: `KeyboardInterrupt` and
    /// `SystemExit` propagate, anything else goes to the loop's exception
    /// handler with asyncio's context.
    /// `callback` and `args` are the ones that ran (the handle may have
    /// let go of them meanwhile: a callback that cancels its own handle).
    fn report(
        slf: &Bound<'_, Handle>,
        err: PyErr,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
            return Err(err);
        }
        let source = format_callback_source(py, callback, args.as_any(), slf.get().is_debug(py))?;
        let ctx = PyDict::new(py);
        ctx.set_item(intern!(py, "message"), format!("Exception in callback {source}"))?;
        ctx.set_item(intern!(py, "exception"), err.value(py))?;
        ctx.set_item(intern!(py, "handle"), slf)?;
        let (tb, event_loop) = {
            let f = slf.get().lock();
            (f.source_traceback().map(|t| t.clone_ref(py)), f.event_loop.as_ref().map(|l| l.clone_ref(py)))
        };
        if let Some(tb) = tb
            && tb.bind(py).is_truthy()?
        {
            ctx.set_item(intern!(py, "source_traceback"), tb)?;
        }
        if let Some(lp) = event_loop {
            lp.bind(py).call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        }
        Ok(())
    }
}

#[pymethods]
impl Handle {
    /// `Handle(callback, args, loop, context=None)`, as asyncio's (a handle
    /// made this way is not queued anywhere; `call_soon` makes and queues
    /// its own).
    #[new]
    #[pyo3(signature = (callback, args, r#loop, context = None))]
    fn py_new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Handle> {
        Handle::new(py, callback, args, r#loop, context)
    }

    /// Cancels the callback: it will not run, and it and its arguments
    /// are let go now.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.cancel_handle(py, "Handle", None).map(drop)
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().context.as_ref().map(|c| c.clone_ref(py))
    }

    fn _run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        Handle::run(slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().callback.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.lock().args.as_ref().map(|a| a.clone_ref(py))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.event_loop(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_context(py)
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.saved_repr(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().source_traceback().map(|t| t.clone_ref(py))
    }

    #[setter(_source_traceback)]
    fn set_source_traceback(&self, tb: Option<Py<PyAny>>) {
        let old = {
            let mut f = self.lock();
            match tb {
                Some(tb) => f.debug_mut().source_traceback.replace(tb),
                None => f.debug.as_mut().and_then(|d| d.source_traceback.take()),
            }
        };
        drop(old); // after the lock: the decref may run Python code
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        if let Some(repr) = self.saved_repr(py) {
            return repr.bind(py).str().map(|s| s.to_string());
        }
        Ok(format!("<{}>", self.repr_info(py, "Handle")?.join(" ")))
    }
}

/// asyncio's `TimerHandle`: a [`Handle`] due at loop time `when`, ordered
/// and compared by it. Cancelling it removes the core's timer at once.
#[pyclass(frozen, module = "evloop._evloop", name = "TimerHandle", extends = Handle)]
pub(crate) struct TimerHandle {
    when: f64,
    /// The core timer and the loop's core, until it runs or is cancelled.
    timer: Mutex<Option<(TimerKey, Py<Core>)>>,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle, when: f64) -> PyClassInitializer<TimerHandle> {
        PyClassInitializer::from(handle).add_subclass(TimerHandle { when, timer: Mutex::new(None) })
    }

    fn lock(&self) -> MutexGuard<'_, Option<(TimerKey, Py<Core>)>> {
        self.timer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_timer(&self, key: TimerKey, core: Py<Core>) {
        let old = self.lock().replace((key, core));
        drop(old);
    }

    /// The timer ran: nothing left to cancel in the core.
    fn forget_timer(&self) {
        let old = self.lock().take();
        drop(old);
    }

    /// Visits the core the timer refers to (see [`Handle::visit_fields`]).
    pub(crate) fn visit_core(&self, visit: &mut dyn FnMut(&Py<PyAny>)) {
        if let Ok(timer) = self.timer.try_lock()
            && let Some((_, core)) = &*timer
        {
            visit(core.as_any());
        }
    }
}

#[pymethods]
impl TimerHandle {
    /// `TimerHandle(when, callback, args, loop, context=None)`, as
    /// asyncio's (not scheduled: `call_at` makes and schedules its own).
    #[new]
    #[pyo3(signature = (when, callback, args, r#loop, context = None))]
    fn py_new(
        py: Python<'_>,
        when: f64,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<TimerHandle>> {
        Ok(TimerHandle::new(Handle::new(py, callback, args, r#loop, context)?, when))
    }

    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    /// Whether the timer is still in the loop's timer heap.
    #[getter]
    fn _scheduled(&self) -> bool {
        self.lock().is_some()
    }

    /// Cancels the callback and removes the core's timer now (asyncio's
    /// `TimerHandle.cancel` tells the loop, which counts it).
    fn cancel(slf: &Bound<'_, TimerHandle>) -> PyResult<()> {
        let py = slf.py();
        if !slf.as_super().get().cancel_handle(py, "TimerHandle", Some(slf.get().when))? {
            return Ok(());
        }
        let timer = slf.get().lock().take();
        if let Some((key, core)) = timer {
            // Off the loop's thread the core cannot be touched: the timer
            // stays in the heap and is skipped when due (it is cancelled).
            core.get().cancel_timer(key);
        }
        Ok(())
    }

    fn __repr__(slf: &Bound<'_, TimerHandle>) -> PyResult<String> {
        let py = slf.py();
        let base = slf.as_super().get();
        if let Some(repr) = base.saved_repr(py) {
            return repr.bind(py).str().map(|s| s.to_string());
        }
        let mut info = base.repr_info(py, "TimerHandle")?;
        let pos = if base.is_cancelled() { 2 } else { 1 };
        info.insert(pos, format!("when={}", py_float_repr(py, slf.get().when)?));
        Ok(format!("<{}>", info.join(" ")))
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.when.into_pyobject(py)?.hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, TimerHandle>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        use pyo3::basic::CompareOp;
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Le => a < b || same_handle(slf, other)?,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a > b || same_handle(slf, other)?,
            CompareOp::Eq => same_handle(slf, other)?,
            CompareOp::Ne => !same_handle(slf, other)?,
        };
        Ok(result.into_pyobject(py)?.to_owned().into_any().unbind())
    }
}

/// Takes a new handle out of the GC's lists (PyO3 makes every class a GC
/// type): it is never traversed by a collection, which is most of what a
/// million `call_soon` would otherwise cost in GC passes. The core visits
/// its contents instead (see [`Handle`]).
pub(crate) fn untracked<T>(handle: Py<T>) -> Py<T> {
    // SAFETY: a live object we hold a reference to, with the GIL held
    // (creating it needed `py`); untracking a GC object is always allowed,
    // and PyO3's dealloc untracks only if it is still tracked.
    unsafe { ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
    handle
}

/// Whether `obj`'s one reference is the caller's. Used with the GIL held
/// only (the loop's entries are dropped with it), without a Python token.
pub(crate) fn holds_the_only_reference(obj: &Py<PyAny>) -> bool {
    // SAFETY: `obj` is a live object the caller holds a reference to, and
    // the GIL is held; reading the count touches nothing else.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) == 1 }
}

/// The `Handle` a `TimerHandle` is, without a Python token (for the GC
/// pass, which has none).
pub(crate) fn timer_base(timer: &Py<TimerHandle>) -> &Py<Handle> {
    // SAFETY: `Py<T>` is `repr(transparent)` over the object pointer, and
    // a `TimerHandle` object is a `Handle` object (its base class): the
    // same pointer typed as its base, as `cast::<Handle>()` would give.
    unsafe { &*(timer as *const Py<TimerHandle>).cast::<Py<Handle>>() }
}

/// asyncio's `TimerHandle.__eq__`: same deadline, callback, arguments and
/// cancelled state.
fn same_handle(a: &Bound<'_, TimerHandle>, b: &Bound<'_, TimerHandle>) -> PyResult<bool> {
    if a.is(b) {
        return Ok(true);
    }
    let py = a.py();
    if a.get().when != b.get().when {
        return Ok(false);
    }
    let parts = |h: &Handle| {
        let f = h.lock();
        (
            f.cancelled,
            f.callback.as_ref().map(|c| c.clone_ref(py)),
            f.args.as_ref().map(|x| x.clone_ref(py).into_any()),
        )
    };
    let (ca, cba, aa) = parts(a.as_super().get());
    let (cb_, cbb, ab) = parts(b.as_super().get());
    if ca != cb_ {
        return Ok(false);
    }
    let eq = |x: Option<Py<PyAny>>, y: Option<Py<PyAny>>| -> PyResult<bool> {
        match (x, y) {
            (Some(x), Some(y)) => x.bind(py).eq(y.bind(py)),
            (None, None) => Ok(true),
            _ => Ok(false),
        }
    };
    Ok(eq(cba, cbb)? && eq(aa, ab)?)
}

fn py_float_repr(py: Python<'_>, x: f64) -> PyResult<String> {
    Ok(x.into_pyobject(py)?.repr()?.to_string())
}

/// asyncio's `format_helpers._format_callback_source`; from Python 3.13
/// on it shows the arguments only when told the loop is in debug mode,
/// as asyncio's handles tell it.
fn format_callback_source(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
    debug: bool,
) -> PyResult<String> {
    let helpers = py.import(intern!(py, "asyncio.format_helpers"))?;
    let format = helpers.getattr(intern!(py, "_format_callback_source"))?;
    if py.version_info() >= (3, 13) {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "debug"), debug)?;
        format.call((callback, args), Some(&kwargs))?.extract()
    } else {
        format.call1((callback, args))?.extract()
    }
}

/// `contextvars.copy_context()`.
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: called with the GIL held (`py`); returns a new reference or
    // NULL with an exception set, which `from_owned_ptr_or_err` handles.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }.map(Bound::unbind)
}

/// `context.copy()` of a real `contextvars.Context`; `None` for any
/// other object.
pub(crate) fn copy_of(context: &Bound<'_, PyAny>) -> Option<PyResult<Py<PyAny>>> {
    // SAFETY: a live object borrowed from `context`, with the GIL held;
    // the check reads its type only.
    if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
        return None;
    }
    // SAFETY: a Context, with the GIL held; returns a new reference or
    // NULL with an exception set.
    let copy = unsafe { Bound::from_owned_ptr_or_err(context.py(), ffi::PyContext_Copy(context.as_ptr())) };
    Some(copy.map(Bound::unbind))
}

/// Reports `err`, which `callback(*args)` raised when a native entry of
/// the loop `event_loop` ran it in `context`, as the `Handle` asyncio
/// queues for that call reports it (`Exception in callback ...`, the
/// handle in the context); `KeyboardInterrupt` and `SystemExit` come back.
///
/// # Errors
///
/// `err` itself if it must end the run, or what the handler raised.
pub(crate) fn report_as_handle(
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    event_loop: Py<PyAny>,
    context: Py<PyAny>,
    err: PyErr,
) -> PyResult<()> {
    let py = callback.py();
    if err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py) {
        return Err(err);
    }
    let handle =
        Handle::new(py, callback.clone().unbind(), args.clone().unbind(), event_loop, Some(context))?;
    Handle::report(&Bound::new(py, handle)?, err, callback, args)
}

/// `context.run(callback, *args)`, without building the argument tuple
/// `Context.run` needs when `context` is a real `contextvars.Context`
/// (asyncio passes any object with a `run` method through; so do we).
fn call_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: a live object borrowed from `context`, with the GIL held;
    // the check reads its type only.
    if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
        let all: Vec<Bound<'_, PyAny>> = std::iter::once(callback.clone()).chain(args.iter()).collect();
        return context.call_method1(intern!(py, "run"), PyTuple::new(py, all)?).map(drop);
    }
    // SAFETY: a Context, with the GIL held; -1 means an exception is set
    // (the context is already entered: `Context.run`'s RuntimeError).
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let outcome = call(callback, args);
    // SAFETY: the Context entered above, on this thread, with the GIL.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    outcome
}

/// Runs `f` inside `context` as `context.run` would, if `context` is a
/// real `contextvars.Context`; `None` (and `f` not run) if it is not.
pub(crate) fn run_in_context<R>(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    f: impl FnOnce() -> PyResult<R>,
) -> Option<PyResult<R>> {
    // SAFETY: a live object borrowed from `context`, with the GIL held;
    // the check reads its type only.
    if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
        return None;
    }
    // SAFETY: a Context, with the GIL held; -1 means an exception is set.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Some(Err(PyErr::fetch(py)));
    }
    let outcome = f();
    // SAFETY: the Context entered above, on this thread, with the GIL.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        return Some(Err(PyErr::fetch(py)));
    }
    Some(outcome)
}

/// `callback(*args)`. No argument or one (most callbacks: a future's
/// done-callbacks get the future) goes by vectorcall, without
/// `PyObject_Call`'s generic dispatch.
fn call(callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
    match args.len() {
        0 => callback.call0(),
        1 => callback.call1((args.get_item(0)?,)),
        _ => callback.call1(args),
    }
    .map(drop)
}

// ===== the core's entries =====

/// What the binding's run loop needs of each of its entries.
pub(crate) trait PyEntry: ForeignEntry {
    /// The Python handle (for debug mode's timing wrapper).
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny>;
    /// Called once the entry's turn has come, before it runs.
    fn starting(&self, _py: Python<'_>) {}
    /// Runs the handle (asyncio's `handle._run()`); `Ok(true)` when the
    /// handle has already let go of what it held, so [`finish`] has
    /// nothing left to do.
    ///
    /// [`finish`]: PyEntry::finish
    fn run_handle(&self, py: Python<'_>) -> PyResult<bool>;
    /// Lets go of the entry once it has run, with the GIL token (then
    /// drops it).
    fn finish(self, _py: Python<'_>)
    where
        Self: Sized,
    {
    }
}

/// A queued `Handle`: the entry *is* the Python object.
pub(crate) struct HandleEntry(pub(crate) Py<Handle>);

impl ForeignEntry for HandleEntry {
    fn run(self) {
        crate::run_entry(self);
    }
}

impl PyEntry for HandleEntry {
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.0.bind(py).clone().into_any()
    }
    fn run_handle(&self, py: Python<'_>) -> PyResult<bool> {
        Handle::run_queued(self.0.bind(py))
    }
    fn finish(self, py: Python<'_>) {
        self.0.get().release_attached(py, &self.0);
    }
}

impl Drop for HandleEntry {
    /// Run, cancelled or dropped with the loop's queues: the loop is done
    /// with the handle, which lets go of what it holds (see [`Handle`]).
    fn drop(&mut self) {
        self.0.get().release(&self.0);
    }
}

/// A queued asyncio `Handle` of asyncio's own making (signal handlers,
/// what asyncio passes to `_add_callback`): run through its `_run`.
pub(crate) struct AsyncioEntry(pub(crate) Py<PyAny>);

impl ForeignEntry for AsyncioEntry {
    fn run(self) {
        crate::run_entry(self);
    }
}

impl PyEntry for AsyncioEntry {
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.0.bind(py).clone()
    }
    fn run_handle(&self, py: Python<'_>) -> PyResult<bool> {
        let h = self.0.bind(py);
        if h.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            return Ok(false);
        }
        h.call_method0(intern!(py, "_run")).map(|_| false)
    }
}

/// A `TimerHandle` on the core's timer heap.
pub(crate) struct TimerEntry {
    pub(crate) handle: Py<TimerHandle>,
}

impl ForeignEntry for TimerEntry {
    fn run(self) {
        crate::run_entry(self);
    }
}

impl PyEntry for TimerEntry {
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.handle.bind(py).clone().into_any()
    }
    fn starting(&self, _py: Python<'_>) {
        self.handle.get().forget_timer();
    }
    fn run_handle(&self, py: Python<'_>) -> PyResult<bool> {
        Handle::run_queued(self.handle.bind(py).as_super())
    }
    fn finish(self, py: Python<'_>) {
        let base = timer_base(&self.handle);
        base.get().release_attached(py, base);
    }
}

impl Drop for TimerEntry {
    /// As [`HandleEntry`]'s.
    fn drop(&mut self) {
        let base = timer_base(&self.handle);
        base.get().release(base);
    }
}

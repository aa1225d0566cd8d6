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

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit, ffi, intern};

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

/// The core of the evloop loop `pyloop` (its `_core`), read natively from
/// a `LoopBase`.
///
/// # Errors
///
/// What reading `_core` raises for an object that is not a `LoopBase`
/// with its core set, or `TypeError` if it is not a core.
pub(crate) fn core_of(pyloop: &Bound<'_, PyAny>) -> PyResult<Py<Core>> {
    let py = pyloop.py();
    if let Ok(base) = pyloop.cast::<LoopBase>()
        && let Ok(core) = base.get().core()
    {
        return Ok(core.clone_ref(py));
    }
    Ok(pyloop.getattr(intern!(py, "_core"))?.cast_into::<Core>()?.unbind())
}

/// The debug mode of `lp` if it is an evloop loop (see
/// [`LoopBase::_set_native_debug`]); `None` for any other object.
pub(crate) fn native_debug(lp: &Bound<'_, PyAny>) -> Option<bool> {
    lp.cast::<LoopBase>().ok().map(|lb| lb.get().debug())
}

impl LoopBase {
    /// asyncio's `call_soon`: a native `Handle`, itself the queued entry
    /// (what `LoopBase.call_soon` does once its arguments are read).
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
}

// ===== LoopBase.call_soon as a C method =====
//
// `call_soon` is the hottest call of an asyncio loop (every task step and
// every future callback goes through it), so it is not a `#[pymethods]`
// method but a C method of the class made by hand, as CPython's own are
// (`METH_FASTCALL | METH_KEYWORDS`): CPython calls it straight from its
// method descriptor, without PyO3's trampoline (two updates of PyO3's
// thread-local attach count, its pass over the deferred decrefs) and
// without PyO3's generic argument reading: about 190 of the 925
// instructions `call_soon` cost (`bench/python/callgrind_loop.py`).
//
// PyO3's attach count may be zero here (no PyO3 frame below us): a `Py`
// dropped on this path would go to PyO3's deferred decrefs (correct, but
// slower), so the success path drops `Bound`s only (`context=None` too).

/// The message of the `TypeError` for a bad call, as PyO3's would be.
fn bad_call(what: std::fmt::Arguments<'_>) -> PyErr {
    PyTypeError::new_err(format!("LoopBase.call_soon() {what}"))
}

/// The keyword arguments `call_soon` takes.
enum Keyword {
    Callback,
    Context,
}

/// Which keyword argument `name` is (asyncio's `callback` may be passed
/// by name too).
fn keyword(name: &Bound<'_, PyAny>) -> PyResult<Keyword> {
    let py = name.py();
    // Keyword names are interned strings: almost always the very object
    // `intern!` holds.
    if name.is(intern!(py, "context")) {
        return Ok(Keyword::Context);
    }
    match name.cast::<PyString>()?.to_str()? {
        "context" => Ok(Keyword::Context),
        "callback" => Ok(Keyword::Callback),
        _ => Err(bad_call(format_args!("got an unexpected keyword argument '{name}'"))),
    }
}

/// The C function of `LoopBase.call_soon` (`METH_FASTCALL | METH_KEYWORDS`).
///
/// # Safety
///
/// Called by CPython only, as a method of `LoopBase` with those flags:
/// the GIL held, `slf` a live object, `args` the `nargs` positional
/// arguments followed by one value per name in `kwnames` (a tuple of
/// strings, or NULL for none), all borrowed for the call.
unsafe extern "C" fn call_soon_c(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls C methods with the GIL held; the token does
    // not outlive this call.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the arguments as CPython passes them (see above).
        unsafe { call_soon_from_raw(py, slf, args, nargs, kwnames) }
    }));
    match outcome {
        Ok(Ok(handle)) => handle.into_ptr(),
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        // Never unwind into CPython.
        Err(_) => {
            PanicException::new_err("LoopBase.call_soon panicked").restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Reads `call_soon(callback, *args, context=None)` from a vectorcall
/// and makes the call.
///
/// # Safety
///
/// As [`call_soon_c`], with `py` the token of the GIL it holds.
unsafe fn call_soon_from_raw<'py>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a live object borrowed for the call, with the GIL held.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let slf = slf.cast::<LoopBase>()?;
    let nargs = usize::try_from(nargs).unwrap_or(0);
    let positional: &[*mut ffi::PyObject] = if nargs == 0 {
        &[]
    } else {
        // SAFETY: `args` points to `nargs` (> 0) live objects, borrowed
        // for the call.
        unsafe { std::slice::from_raw_parts(args, nargs) }
    };
    let mut callback = positional.first().copied();
    let mut context = None;
    if !kwnames.is_null() {
        // SAFETY: CPython's keyword names of a vectorcall: a live tuple
        // of strings, borrowed for the call.
        let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
        // SAFETY: after the positional arguments, one live value per
        // keyword name, borrowed for the call.
        let values = unsafe { std::slice::from_raw_parts(args.add(nargs), names.len()) };
        for (name, &value) in names.iter().zip(values) {
            match keyword(&name)? {
                Keyword::Context => context = Some(value),
                Keyword::Callback if callback.is_some() => {
                    return Err(bad_call(format_args!("got multiple values for argument 'callback'")));
                }
                Keyword::Callback => callback = Some(value),
            }
        }
    }
    let Some(callback) = callback else {
        return Err(bad_call(format_args!("missing 1 required positional argument: 'callback'")));
    };
    // SAFETY (all three): live objects borrowed for the call.
    let callback = unsafe { Bound::from_borrowed_ptr(py, callback) };
    let context = context.map(|c| unsafe { Bound::from_borrowed_ptr(py, c) }).filter(|c| !c.is_none());
    let rest = match positional.get(1..) {
        Some(rest) if !rest.is_empty() => {
            PyTuple::new(py, rest.iter().map(|&arg| unsafe { Borrowed::from_ptr(py, arg) }))?
        }
        _ => PyTuple::empty(py),
    };
    LoopBase::call_soon(slf, callback.unbind(), &rest, context.map(Bound::unbind))
}

/// Makes `call_soon_c` the `call_soon` method of `LoopBase`.
pub(crate) fn add_call_soon(py: Python<'_>) -> PyResult<()> {
    // Made once, when the module is initialised (once per process), and
    // referred to by the class for as long as it lives.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: call_soon_c },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"call_soon($self, callback, *args, context=None)\n--\n\nasyncio's call_soon: a native Handle, itself the queued entry."
            .as_ptr(),
    }));
    let ty = py.get_type::<LoopBase>();
    // SAFETY: a live type object and a method definition that outlives
    // it; returns a new reference or NULL with an exception set.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def)) }?;
    ty.setattr(intern!(py, "call_soon"), &descr)?;
    // Already set if the module is initialised a second time (a
    // subinterpreter): the first descriptor is the one compared with.
    let _ = CALL_SOON.set(py, descr.unbind());
    Ok(())
}

/// `LoopBase.call_soon`'s method descriptor, as [`add_call_soon`] made it.
static CALL_SOON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `pyloop.call_soon(callback, *args)` from native code: straight to the
/// loop's core when `pyloop` is an evloop loop whose class keeps
/// `LoopBase`'s `call_soon` (no method lookup on the instance, no
/// argument parsing); the method call otherwise (a subclass's own
/// `call_soon`, another loop).
///
/// # Errors
///
/// What `call_soon` raises (a closed loop, another thread).
pub(crate) fn call_soon<'py>(
    pyloop: &Bound<'py, PyAny>,
    callback: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
) -> PyResult<()> {
    let py = pyloop.py();
    if let Ok(base) = pyloop.cast::<LoopBase>()
        && keeps_call_soon(pyloop)?
    {
        return LoopBase::call_soon(base, callback.unbind(), &args, None).map(drop);
    }
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(callback);
    all.extend(args.iter());
    pyloop.call_method1(intern!(py, "call_soon"), PyTuple::new(py, all)?).map(drop)
}

/// Whether the class of `pyloop` (an evloop loop) keeps `LoopBase`'s
/// `call_soon`.
fn keeps_call_soon(pyloop: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = pyloop.py();
    let Some(own) = CALL_SOON.get(py) else { return Ok(false) };
    class_verdict(&KEEPS_CALL_SOON, &pyloop.get_type(), |ty| {
        Ok(ty.getattr(intern!(py, "call_soon"))?.is(own))
    })
}

/// Whether the class of `pyloop` keeps `evloop.EventLoop`'s own
/// `sock_connect` and `_make_socket_transport` (the steps of asyncio's
/// `create_connection` that evloop's native one replaces).
///
/// # Errors
///
/// What importing `evloop._loop` or the lookups raise.
pub(crate) fn keeps_connect_steps(pyloop: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = pyloop.py();
    static OWN: PyOnceLock<[Py<PyAny>; 2]> = PyOnceLock::new();
    let own = OWN.get_or_try_init(py, || {
        let cls = py.import("evloop._loop")?.getattr("EventLoop")?;
        Ok::<_, PyErr>([
            cls.getattr("sock_connect")?.unbind(),
            cls.getattr("_make_socket_transport")?.unbind(),
        ])
    })?;
    class_verdict(&KEEPS_CONNECT_STEPS, &pyloop.get_type(), |ty| {
        Ok(ty.getattr(intern!(py, "sock_connect"))?.is(&own[0])
            && ty.getattr(intern!(py, "_make_socket_transport"))?.is(&own[1]))
    })
}

/// `check(ty)`, remembered in `cache` for the last class it held for,
/// with the version tag the class had then: CPython gives a type a new
/// tag (never one used before) whenever it or a base class changes, so a
/// class whose tag is unchanged still passes, without looking again.
fn class_verdict(
    cache: &'static std::thread::LocalKey<std::cell::Cell<(usize, u32)>>,
    ty: &Bound<'_, pyo3::types::PyType>,
    check: impl FnOnce(&Bound<'_, pyo3::types::PyType>) -> PyResult<bool>,
) -> PyResult<bool> {
    let tag = version_tag(ty);
    if tag != 0 && cache.with(|k| k.get()) == (ty.as_type_ptr() as usize, tag) {
        return Ok(true);
    }
    let passes = check(ty)?;
    // The lookups gave the type a version tag if it had none.
    let tag = version_tag(ty);
    if passes && tag != 0 {
        cache.with(|k| k.set((ty.as_type_ptr() as usize, tag)));
    }
    Ok(passes)
}

thread_local! {
    /// The last loop class found to keep `LoopBase.call_soon`.
    static KEEPS_CALL_SOON: std::cell::Cell<(usize, u32)> = const { std::cell::Cell::new((0, 0)) };
    /// The last loop class found to keep evloop's connect steps.
    static KEEPS_CONNECT_STEPS: std::cell::Cell<(usize, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// The version tag of `ty` (0: none valid; a changed type's tag is reset
/// to 0 at once).
fn version_tag(ty: &Bound<'_, pyo3::types::PyType>) -> u32 {
    // SAFETY: a live type object, with the GIL held; the field is a plain
    // integer CPython keeps up to date under the GIL.
    unsafe { (*ty.as_type_ptr()).tp_version_tag }
}

/// Whether native code may queue its own entries on the core of `pyloop`
/// in place of `pyloop.call_soon(...)` handles: an evloop loop whose class
/// keeps `LoopBase`'s `call_soon` (nobody would see the calls), outside
/// debug mode (whose handles are timed and reported by their repr).
///
/// # Errors
///
/// What looking up `call_soon` on the class raises.
pub(crate) fn queues_natively(pyloop: &Bound<'_, PyAny>) -> PyResult<bool> {
    match pyloop.cast::<LoopBase>() {
        Ok(base) if !base.get().debug() => keeps_call_soon(pyloop),
        _ => Ok(false),
    }
}

/// `asyncio.Future(loop=pyloop)`, by vectorcall (no keyword dict).
///
/// # Errors
///
/// What the constructor raises.
pub(crate) fn new_future<'py>(pyloop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = pyloop.py();
    let future =
        FUTURE.get_or_try_init(py, || py.import("asyncio.futures")?.getattr("Future").map(Bound::unbind))?;
    let kwnames = KWNAMES.get_or_try_init(py, || PyTuple::new(py, ["loop"]).map(Bound::unbind))?;
    // The slot before the arguments is ours to lend
    // (PY_VECTORCALL_ARGUMENTS_OFFSET); the keyword's value follows.
    let mut args = [std::ptr::null_mut(), pyloop.as_ptr()];
    // SAFETY: `future` is a live callable, `args[1..]` holds one live
    // object (the value of the one keyword named by the live tuple
    // `kwnames`), no positional argument; the GIL is held. The result
    // is a new reference or NULL with an exception set.
    unsafe {
        let obj = ffi::PyObject_Vectorcall(
            future.as_ptr(),
            args.as_mut_ptr().add(1),
            ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            kwnames.as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, obj)
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

    /// asyncio's `get_debug()`, without a Python frame: every
    /// `asyncio.Future` and `Task` asks its loop at creation.
    fn get_debug(&self) -> bool {
        self.debug()
    }

    /// asyncio's `_debug` attribute (what its `set_debug` writes and its
    /// code reads), kept in the native flag the scheduling calls read, so
    /// the two never disagree. Any value is taken for its truth.
    #[getter(_debug)]
    fn debug_attr(&self) -> bool {
        self.debug()
    }

    #[setter(_debug)]
    fn set_debug_attr(&self, on: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(on.is_truthy()?, Ordering::Relaxed);
        Ok(())
    }

    /// asyncio's `create_future()`: `asyncio.Future(loop=self)`, without a
    /// Python frame (every `await` on a stream reader makes one).
    fn create_future<'py>(slf: &Bound<'py, LoopBase>) -> PyResult<Bound<'py, PyAny>> {
        new_future(slf.as_any())
    }

    /// asyncio's `time()`: seconds on the loop's monotonic clock (see
    /// `Core.time`).
    fn time(&self) -> PyResult<f64> {
        self.core()?.get().time()
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

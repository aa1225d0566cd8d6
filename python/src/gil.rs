//! Releasing the GIL around a blocking pass of the core.
//!
//! The one `unsafe` of the binding, and temporary: it goes once the core
//! has a hook around its blocking poll (python/CORE-NEEDS.md §1), which
//! would release the GIL for the wait alone.

use evloop::EventLoop;
use pyo3::Python;

/// Lets a `!Send` value into `Python::detach`, which asks for `Send` only
/// so that no GIL-bound reference is used while the GIL is released.
struct SameThread<T>(T);

// SAFETY: `Python::detach` runs its closure synchronously on the calling
// thread, so the `EventLoop` (an `Rc` handle) never leaves the thread that
// owns it. It is not a Python reference: using it without the GIL is
// sound, and every callback it runs takes the GIL itself
// (`Python::attach`) before touching Python objects.
unsafe impl<T> Send for SameThread<T> {}

/// Runs `f(lp)` with the GIL released, so other Python threads (and
/// `call_soon_threadsafe` callers) run while the loop waits.
pub(crate) fn without_gil<R>(py: Python<'_>, lp: &EventLoop, f: impl FnOnce(&EventLoop) -> R + Send) -> R {
    let lp = SameThread(lp.clone());
    let out = py.detach(move || {
        let lp = lp;
        SameThread(f(&lp.0))
    });
    out.0
}

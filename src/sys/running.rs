//! The thread's running-loop slot: which loop is inside a `run_*` call on
//! this thread, read by `get_running_loop` and by every task wake-up.
//!
//! The slot is a raw pointer in a `Cell`, not an `Rc` in a `RefCell`: a
//! thread-local without a destructor is one TLS address, with no
//! registration check and no borrow flag, and that check and flag were a
//! fifth of a trivial `run_until_complete` (see BENCHMARKS.md).
//!
//! Invariant: a non-null slot points at a `LoopInner` whose strong count
//! includes one reference owned by a live (or leaked) [`Running`], the only
//! thing that writes a non-null pointer. A `Running` clears the slot
//! before it releases that reference, and only if the slot still names its
//! loop (a loop inherited through `fork()` is overwritten by the child's
//! next loop while its `Running` is still on the stack). A leaked
//! `Running` leaks its reference, so the pointer stays valid.

use std::cell::Cell;
use std::ptr;
use std::rc::Rc;

use crate::runtime::event_loop::LoopInner;

thread_local! {
    /// The loop inside a `run_*` call on this thread, or null.
    static SLOT: Cell<*const LoopInner> = const { Cell::new(ptr::null()) };
}

/// Holds this thread's slot for one loop: made by [`enter`], cleared on
/// drop. Owns one strong reference to the loop (see the module's
/// invariant).
pub(crate) struct Running {
    /// From `Rc::into_raw`: the reference this value owns.
    ptr: *const LoopInner,
}

/// Takes the slot for `inner`, or `None` while another loop (one not
/// inherited through `fork()`) holds it.
#[inline]
pub(crate) fn enter(inner: &Rc<LoopInner>) -> Option<Running> {
    SLOT.with(|slot| {
        let current = slot.get();
        if !current.is_null() {
            // SAFETY: a non-null slot names a loop a `Running` holds a
            // strong reference to (module invariant): it is alive.
            let holder = unsafe { &*current };
            if !holder.forked() {
                return None;
            }
            // The parent's loop, copied by fork() with the thread that
            // forked inside one of its callbacks: not running here. Its
            // `Running` still owns its reference and leaves the slot alone
            // when it drops, since the slot no longer names it.
        }
        let ptr = Rc::into_raw(inner.clone());
        slot.set(ptr);
        Some(Running { ptr })
    })
}

impl Drop for Running {
    #[inline]
    fn drop(&mut self) {
        SLOT.with(|slot| {
            if slot.get() == self.ptr {
                slot.set(ptr::null());
            }
        });
        // SAFETY: `ptr` came from `Rc::into_raw` in `enter` and this is the
        // one place its reference is released. The slot no longer names
        // the loop, so the module invariant does not rely on it any more.
        drop(unsafe { Rc::from_raw(self.ptr) });
    }
}

/// A strong reference to the slot's loop, if any.
#[inline]
fn current() -> Option<Rc<LoopInner>> {
    let ptr = SLOT.with(Cell::get);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null slot holds a pointer from `Rc::into_raw` whose
    // reference a `Running` owns (module invariant), so the allocation is
    // alive and the count is at least one; the count taken here is given
    // back when the returned `Rc` drops.
    Some(unsafe {
        Rc::increment_strong_count(ptr);
        Rc::from_raw(ptr)
    })
}

/// The loop in this thread's slot (`get_running_loop`), forked or not.
#[inline]
pub(crate) fn get() -> Option<Rc<LoopInner>> {
    current()
}

/// Runs `f` with the loop in this thread's slot, if any. `f` holds its own
/// strong reference, so it may do anything, ending the run included.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(Option<&LoopInner>) -> R) -> R {
    match current() {
        Some(inner) => f(Some(&inner)),
        None => f(None),
    }
}

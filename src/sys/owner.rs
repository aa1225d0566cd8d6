//! [`ThreadBound`]: a value that may be moved to, shared with and dropped
//! on any thread, but reached only on the thread that made it.
//!
//! Invariant: the wrapped value is touched (borrowed or dropped) only on
//! `thread`. Anywhere else it is unreachable, and dropping the wrapper
//! there leaks the value without reading a byte of it.

use std::mem::ManuallyDrop;
use std::thread::{self, ThreadId};

thread_local! {
    /// This thread's id, read once: `thread::current()` clones a handle,
    /// and the owner check runs on every call of an embedder's loop.
    static THREAD_ID: ThreadId = thread::current().id();
}

/// The current thread's id; `None` while the thread's locals are being
/// destroyed (no value is then reachable: it counts as another thread).
#[inline]
fn current_id() -> Option<ThreadId> {
    THREAD_ID.try_with(|id| *id).ok()
}

/// Ties a `!Send` value to the thread that made it.
pub(crate) struct ThreadBound<T> {
    value: ManuallyDrop<T>,
    thread: ThreadId,
}

// SAFETY: a `ThreadBound` moved to (or shared with) another thread gives
// no access to `value` there: `get` returns `None` off `thread`, and `Drop`
// off `thread` forgets `value` without touching it (so not even a
// reference count is read). Every access to `value` therefore happens on
// the thread that created it, which is exactly what `T: !Send`/`!Sync`
// require. `ThreadId`s are never reused within a process, so a later
// thread cannot pass for the owner.
unsafe impl<T> Send for ThreadBound<T> {}
// SAFETY: as for `Send`: `&ThreadBound<T>` on another thread yields no
// `&T`, so `T` is never shared between threads.
unsafe impl<T> Sync for ThreadBound<T> {}

impl<T> ThreadBound<T> {
    /// Binds `value` to the current thread.
    pub(crate) fn new(value: T) -> ThreadBound<T> {
        // The cached id: `thread::current()` clones the thread's handle, and
        // a thread-checked sleep is made per request by hyper's timer.
        let thread = current_id().unwrap_or_else(|| thread::current().id());
        ThreadBound { value: ManuallyDrop::new(value), thread }
    }

    /// Whether the current thread is the one that made it.
    #[inline]
    pub(crate) fn is_owner_thread(&self) -> bool {
        current_id() == Some(self.thread)
    }

    /// The value, on its own thread only.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        self.is_owner_thread().then_some(&*self.value)
    }

    /// The value, mutably, on its own thread only.
    #[inline]
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        if self.is_owner_thread() { Some(&mut *self.value) } else { None }
    }
}

impl<T> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        if self.is_owner_thread() {
            // SAFETY: on the owner thread; `value` is not used after this.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
        // Elsewhere `value` leaks: it cannot be dropped off its thread.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn reachable_and_dropped_on_its_thread() {
        let token = Rc::new(Cell::new(1));
        let bound = ThreadBound::new(token.clone());
        assert_eq!(bound.get().map(|t| t.get()), Some(1));
        drop(bound);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn unreachable_and_leaked_elsewhere() {
        let token = Rc::new(());
        let bound = ThreadBound::new(token.clone());
        let bound = thread::spawn(move || {
            assert!(bound.get().is_none());
            assert!(!bound.is_owner_thread());
            bound
        })
        .join()
        .unwrap();
        thread::spawn(move || drop(bound)).join().unwrap();
        assert_eq!(Rc::strong_count(&token), 2, "leaked, not dropped off its thread");
    }
}

//! Knowing that this process is a child of `fork()`.
//!
//! A `pthread_atfork` child handler (installed once, when the first loop
//! is built) bumps a process-wide fork generation. A loop remembers the
//! generation it was built in; one from an older generation was inherited
//! from the parent, whose threads did not come along: it must not run,
//! touch the epoll instance it shares with the parent, or take a lock one
//! of those threads may have held at the fork.
//!
//! The handlers also hold the task wake table's lock across the fork (the
//! prepare handler takes it, the parent and child handlers let it go), so
//! the child never inherits it locked by a thread that no longer exists.

use std::cell::RefCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped in every child right after `fork()`.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// What the prepare handler locked, for the parent or child handler
    /// to release on the same (forking) thread.
    static HELD: RefCell<Option<Box<dyn std::any::Any>>> = const { RefCell::new(None) };
}

/// The current fork generation: 0 in the original process, one more in
/// each generation of children.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

extern "C" fn prepare() {
    let guard = crate::task::task::hold_wake_table_for_fork();
    // `try_with`: a thread being torn down has no slot; forking from a
    // thread-local destructor then simply does not hold the lock.
    let _ = HELD.try_with(|h| *h.borrow_mut() = Some(guard));
}

extern "C" fn release() {
    let _ = HELD.try_with(|h| h.borrow_mut().take());
}

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    release();
}

/// Installs the fork handlers (once per process; later calls do nothing).
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are plain `extern "C"` functions that
        // live for the whole program. They run on the forking thread only:
        // `prepare` takes an ordinary lock no thread holds for long (never
        // while forking), `release` drops it, and in the child only that
        // thread exists, so neither can deadlock or race. A failure
        // (ENOMEM) only means forks are not detected; there is nothing
        // better to do than carry on.
        let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(child)) };
    });
}

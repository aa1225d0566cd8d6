//! The signal-context half of the loop's signal handling, and the
//! `sigaction` queries the other half needs.
//!
//! What runs in signal context is [`Target::on_signal`] and nothing else:
//! an atomic `fetch_or` of the signal's bit, then the loop's wake-up (an
//! atomic swap, and `Poller::notify`'s atomic compare-exchange plus one
//! `write(2)` to its eventfd). No lock, no allocation, no reference count
//! changes: all async-signal-safe. The process-wide handler itself is
//! `signal-hook-registry`'s, which runs every registered action without
//! locking and, on unregister, waits for the handlers still running before
//! it drops an action; so a [`Target`] is never freed under a handler.

use std::io;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use polling::Poller;

use crate::runtime::remote::RemoteShared;

pub(crate) use signal_hook_registry::SigId;

/// The highest signal number a [`Target`]'s bit set can hold.
pub(crate) const MAX_SIGNAL: c_int = 64;

/// One loop's receiving end: which signals arrived since the loop last
/// looked, and how to wake that loop.
pub(crate) struct Target {
    /// Bit `n - 1` is signal `n`.
    pending: AtomicU64,
    /// Signals whose delivery also resets their disposition to `SIG_DFL`,
    /// there and then (the runner's Ctrl-C: a second one must end the
    /// process even while the loop is stuck in a callback).
    default_on_delivery: AtomicU64,
    remote: Arc<RemoteShared>,
    /// Strong: the last reference may not go in signal context, and the
    /// registry drops actions (with this) only outside it.
    poller: Arc<Poller>,
}

impl Target {
    pub(crate) fn new(remote: Arc<RemoteShared>, poller: Arc<Poller>) -> Arc<Target> {
        Arc::new(Target {
            pending: AtomicU64::new(0),
            default_on_delivery: AtomicU64::new(0),
            remote,
            poller,
        })
    }

    /// The signals that arrived since the last call (bit `n - 1` for
    /// signal `n`), cleared.
    pub(crate) fn take_pending(&self) -> u64 {
        self.pending.swap(0, Ordering::AcqRel)
    }

    /// Makes a delivery of `signum` reset its disposition to `SIG_DFL` in
    /// the signal handler itself (`on`), or stops doing so.
    pub(crate) fn set_default_on_delivery(&self, signum: c_int, on: bool) {
        if on {
            self.default_on_delivery.fetch_or(bit(signum), Ordering::AcqRel);
        } else {
            self.default_on_delivery.fetch_and(!bit(signum), Ordering::AcqRel);
        }
    }

    /// Runs in signal context: see the module docs for why each step is
    /// async-signal-safe (`sigaction` is, too).
    fn on_signal(&self, signum: c_int) {
        if self.default_on_delivery.fetch_and(!bit(signum), Ordering::AcqRel) & bit(signum) != 0 {
            // SAFETY: an all-zero `sigaction` is SIG_DFL with no flags and
            // an empty mask; `sigaction` is async-signal-safe.
            unsafe {
                let default: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signum, &default, std::ptr::null_mut());
            }
        }
        // Before the wake: the loop reads the bits after it sees the
        // remote queue's pending flag.
        self.pending.fetch_or(bit(signum), Ordering::AcqRel);
        self.remote.wake_from_signal(&self.poller);
    }
}

/// The bit of `signum` in a pending set (`1 <= signum <= MAX_SIGNAL`).
pub(crate) fn bit(signum: c_int) -> u64 {
    1u64 << (signum - 1)
}

/// Adds an action for `signum` that tells `target`; the registry installs
/// its process-wide handler the first time the signal is watched.
///
/// # Errors
///
/// The OS error of `sigaction` (`EINVAL` for a signal that cannot be
/// caught, such as those the C library reserves).
///
/// # Panics
///
/// For a signal the registry forbids (`SIGKILL`, `SIGSTOP`, `SIGILL`,
/// `SIGFPE`, `SIGSEGV`): the caller rejects those first.
pub(crate) fn watch(signum: c_int, target: &Arc<Target>) -> io::Result<SigId> {
    let target = Arc::clone(target);
    // SAFETY: `register` requires that the action be async-signal-safe and
    // not panic; `on_signal` does two atomic operations and a `write(2)`
    // (see the module docs) and cannot panic, `signum` being in range.
    // The closure owns its `Arc`, which the registry drops outside signal
    // context after the last handler using it has returned.
    unsafe { signal_hook_registry::register(signum, move || target.on_signal(signum)) }
}

/// Removes an action added by [`watch`]. The registry keeps its handler
/// installed (with no action, a signal then does nothing); the caller
/// restores the disposition it wants with [`set_disposition`].
pub(crate) fn unwatch(id: SigId) {
    signal_hook_registry::unregister(id);
}

/// A signal's disposition as `sigaction` reports it.
#[derive(Clone, Copy)]
pub(crate) struct Disposition(libc::sigaction);

impl Disposition {
    /// Whether this is `SIG_DFL`.
    pub(crate) fn is_default(&self) -> bool {
        self.0.sa_sigaction == libc::SIG_DFL
    }

    /// Whether both name the same handler (or the same `SIG_DFL`/`SIG_IGN`).
    pub(crate) fn same_handler(&self, other: &Disposition) -> bool {
        self.0.sa_sigaction == other.0.sa_sigaction
    }
}

/// The current disposition of `signum`.
///
/// # Errors
///
/// `EINVAL` for a number that is not a signal.
pub(crate) fn disposition(signum: c_int) -> io::Result<Disposition> {
    // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, no flags,
    // empty mask), and the kernel only writes into it.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `old` is valid for writes.
    if unsafe { libc::sigaction(signum, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Disposition(old))
}

/// Sets the disposition of `signum` (one earlier returned by
/// [`disposition`], so a handler it names is one that was installed).
///
/// # Errors
///
/// `EINVAL` for a signal that cannot be caught.
pub(crate) fn set_disposition(signum: c_int, d: &Disposition) -> io::Result<()> {
    // SAFETY: `d` came from `sigaction` itself: its handler is SIG_DFL,
    // SIG_IGN or a function that was installed for this signal before,
    // with the flags it was installed with.
    if unsafe { libc::sigaction(signum, &d.0, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest real-time signal number of this C library.
pub(crate) fn sigrtmax() -> c_int {
    libc::SIGRTMAX()
}

/// The lowest real-time signal number of this C library.
pub(crate) fn sigrtmin() -> c_int {
    libc::SIGRTMIN()
}

/// Sends `signum` to the calling thread (the handler runs before this
/// returns): for the crate's own tests.
#[cfg(test)]
pub(crate) fn raise(signum: c_int) {
    // SAFETY: raise has no memory-safety preconditions.
    assert_eq!(unsafe { libc::raise(signum) }, 0, "raise");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_cover_every_signal() {
        assert_eq!(bit(1), 1);
        assert_eq!(bit(MAX_SIGNAL), 1 << 63);
        assert!(sigrtmax() <= MAX_SIGNAL);
        assert!(sigrtmin() < sigrtmax());
    }

    #[test]
    fn disposition_of_a_non_signal_is_einval() {
        let e = disposition(0).err().map(|e| e.raw_os_error());
        assert_eq!(e, Some(Some(libc::EINVAL)));
    }
}

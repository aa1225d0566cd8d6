//! The OS wait of a pass as an object, and the hook an embedder puts
//! around it ([`WaitHook`]).
//!
//! Invariant: a [`BlockingWait`] owns everything the wait touches (the
//! poller, the events buffer, the timeout) and nothing of the loop's
//! single-threaded state, so it is `Send` and runs with no loop borrow
//! alive; the loop gets the buffer back only through the [`WaitDone`] that
//! [`BlockingWait::wait`] returns, which is the one way to make one.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use polling::Poller;

use crate::runtime::event_loop::EventLoop;
use crate::sys::poller::{self, Events};

/// One blocking OS wait of the loop (`epoll_wait` on Linux), handed to
/// [`WaitHook::blocking_wait`] so that an embedder can run it with a global
/// lock released (the Python binding releases the GIL:
/// `py.detach(move || wait.wait())`, which needs `Send`).
///
/// It holds no reference into the loop: running it on another thread is
/// sound, though the loop waits for its [`WaitDone`] before going on.
pub struct BlockingWait {
    poller: Arc<Poller>,
    events: Events,
    timeout: Option<Duration>,
}

/// What a [`BlockingWait`] gave back: the events buffer and the outcome.
/// Only [`BlockingWait::wait`] makes one.
pub struct WaitDone {
    pub(crate) events: Events,
    pub(crate) outcome: io::Result<bool>,
}

// The embedder's hook moves both across a `Send` boundary.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<BlockingWait>();
    send::<WaitDone>();
};

impl BlockingWait {
    pub(crate) fn new(poller: Arc<Poller>, events: Events, timeout: Option<Duration>) -> BlockingWait {
        BlockingWait { poller, events, timeout }
    }

    /// How long the wait may block: `None` until an event or a wake-up
    /// (`call_soon_threadsafe`, a task woken from another thread). Never
    /// zero: a pass that must not block polls without the hook.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Waits, at most [`timeout`](BlockingWait::timeout). A signal that
    /// interrupts the wait (`EINTR`) ends it early with no events, so the
    /// embedder's [`WaitHook::after_poll`] sees the signal at once.
    pub fn wait(mut self) -> WaitDone {
        let outcome = poller::wait(&self.poller, &mut self.events, self.timeout);
        WaitDone { events: self.events, outcome }
    }
}

impl fmt::Debug for BlockingWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingWait").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl fmt::Debug for WaitDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitDone").field("ok", &self.outcome.is_ok()).finish_non_exhaustive()
    }
}

/// What an embedder runs around the poll step of every pass, set with
/// [`Builder::wait_hook`](crate::Builder::wait_hook).
///
/// Both methods are called with no borrow of the loop alive, so they may
/// call any loop method.
///
/// # Examples
///
/// Count the blocking waits, and end the run when a flag is raised (as the
/// Python binding does when `PyErr_CheckSignals` reports Ctrl-C):
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use evloop::{BlockingWait, EventLoop, WaitDone, WaitHook};
///
/// #[derive(Default)]
/// struct Hook { waits: Cell<u32>, quit: Cell<bool> }
/// struct Shared(Rc<Hook>);
/// impl WaitHook for Shared {
///     fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
///         self.0.waits.set(self.0.waits.get() + 1);
///         wait.wait() // e.g. inside `py.detach(move || wait.wait())`
///     }
///     fn after_poll(&self, lp: &EventLoop) {
///         if self.0.quit.get() {
///             lp.interrupt();
///         }
///     }
/// }
///
/// let hook = Rc::new(Hook::default());
/// let lp = EventLoop::builder().wait_hook(Shared(hook.clone())).build()?;
/// let h = hook.clone();
/// let l = lp.clone();
/// lp.call_later(Duration::from_millis(1), move || {
///     h.quit.set(true);
///     l.call_soon(|| unreachable!("interrupted first")); // the next pass polls at once
/// });
/// assert!(matches!(lp.run_forever(), Err(evloop::Error::Interrupted)));
/// assert!(hook.waits.get() >= 1);
/// # Ok::<(), evloop::Error>(())
/// ```
pub trait WaitHook: 'static {
    /// Runs the pass's OS wait when the pass may block (its timeout is not
    /// zero). Must return what `wait.wait()` returned; the default just
    /// calls it.
    fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
        wait.wait()
    }

    /// Whether a pass that may block first polls without blocking, and
    /// calls [`blocking_wait`](WaitHook::blocking_wait) only when that
    /// found nothing (no fd ready, no wake-up). For a hook whose wait costs
    /// more than one extra `epoll_wait(0)`: the Python binding's releases
    /// and retakes the GIL, which a loop with work waiting need not do.
    /// Default: false (every blocking pass calls the hook).
    fn poll_first(&self) -> bool {
        false
    }

    /// Called in every pass right after the poll step (also when the poll
    /// was non-blocking or skipped, see
    /// [`Builder::busy_poll_interval`](crate::Builder::busy_poll_interval)),
    /// before the I/O events found are queued and before any callback
    /// runs. Calling [`EventLoop::interrupt`] here ends the pass at once:
    /// the events are left for the next poll (readiness is
    /// level-triggered, nothing is lost) and the `run_*` call returns
    /// [`Error::Interrupted`](crate::Error::Interrupted).
    fn after_poll(&self, lp: &EventLoop) {
        let _ = lp;
    }

    /// Called at the start of every pass, before its timeout is computed
    /// (what it queues makes the pass poll without blocking): the end of
    /// the previous pass, for work a hook batches over one pass (the
    /// Python binding sends the small writes a pass made to a transport
    /// here, in one `send`). No borrow of the loop is alive. Calling
    /// [`EventLoop::interrupt`] here ends the `run_*` call before the pass
    /// polls.
    fn before_pass(&self, lp: &EventLoop) {
        let _ = lp;
    }
}

//! [`LoopOwner`]: an [`EventLoop`] (and an embedder's state beside it)
//! behind a `Send + Sync` handle, for owners that may die on any thread,
//! such as a Python object collected by the GC of whichever thread runs it.
//!
//! Invariant: the loop and the state are reached and dropped only on the
//! thread that built the owner; a drop anywhere else closes the loop's
//! cross-thread door (which is `Send`) and leaks the single-threaded rest.

use std::fmt;
use std::sync::Arc;

use crate::runtime::event_loop::EventLoop;
use crate::runtime::remote::{RemoteLoop, RemoteShared};
use crate::sys::owner::ThreadBound;

/// Owns an [`EventLoop`], plus an embedder's own single-threaded state
/// `S`, and may be sent to and dropped on any thread.
///
/// On the thread that built it, [`get`](LoopOwner::get) gives the loop and
/// [`state`](LoopOwner::state) the state, and dropping it drops both as
/// usual (loop first). On any other thread both give `None`, and dropping
/// it there:
/// - closes the loop's cross-thread queue: later
///   [`RemoteLoop::call_soon_threadsafe`] calls fail with
///   [`Error::Closed`](crate::Error::Closed), and the `Send` callbacks
///   still queued are dropped there;
/// - leaks everything else, without touching it: the loop's callbacks,
///   tasks and transports may hold `!Send` data whose destructors must not
///   run on another thread. That includes the loop's epoll fd and eventfd,
///   which its selector holds. Close the loop on its own thread first
///   ([`EventLoop::close`]) to free it all.
///
/// It never panics, on any thread.
///
/// # Examples
///
/// ```
/// use evloop::runtime::LoopOwner;
/// let owner = LoopOwner::new(evloop::EventLoop::new()?);
/// owner.get().expect("on its own thread").call_soon(|| {});
/// let remote = owner.remote();
/// std::thread::spawn(move || {
///     assert!(owner.get().is_none());
///     drop(owner); // leaks the loop, closes its cross-thread queue
/// })
/// .join()
/// .unwrap();
/// assert!(remote.call_soon_threadsafe(|| {}).is_err());
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct LoopOwner<S: 'static = ()> {
    bound: ThreadBound<(EventLoop, S)>,
    remote: Arc<RemoteShared>,
}

impl LoopOwner<()> {
    /// Takes ownership of `lp` on the current thread.
    ///
    /// Other clones of `lp` keep it alive as usual; the owner's own drop
    /// off this thread only leaks its share.
    pub fn new(lp: EventLoop) -> LoopOwner<()> {
        LoopOwner::with_state(lp, ())
    }
}

impl<S: 'static> LoopOwner<S> {
    /// Takes ownership of `lp` and of `state`, an embedder's data for the
    /// loop's thread (reached with [`state`](LoopOwner::state)).
    pub fn with_state(lp: EventLoop, state: S) -> LoopOwner<S> {
        let remote = lp.inner.remote.clone();
        LoopOwner { bound: ThreadBound::new((lp, state)), remote }
    }

    /// The loop, on the thread that built the owner; `None` elsewhere.
    #[inline]
    pub fn get(&self) -> Option<&EventLoop> {
        self.bound.get().map(|(lp, _)| lp)
    }

    /// The state, on the thread that built the owner; `None` elsewhere.
    #[inline]
    pub fn state(&self) -> Option<&S> {
        self.bound.get().map(|(_, state)| state)
    }

    /// The loop and the state together, on the thread that built the
    /// owner (one thread check where [`get`](LoopOwner::get) and
    /// [`state`](LoopOwner::state) make two); `None` elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::runtime::LoopOwner;
    /// let owner = LoopOwner::with_state(evloop::EventLoop::new()?, 7);
    /// let (lp, state) = owner.get_with_state().expect("on its own thread");
    /// assert_eq!((lp.is_closed(), *state), (false, 7));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[inline]
    pub fn get_with_state(&self) -> Option<(&EventLoop, &S)> {
        self.bound.get().map(|(lp, state)| (lp, state))
    }

    /// Whether the current thread is the one that built the owner.
    pub fn is_owner_thread(&self) -> bool {
        self.bound.is_owner_thread()
    }

    /// The loop's cross-thread door, from any thread.
    pub fn remote(&self) -> RemoteLoop {
        RemoteLoop { shared: self.remote.clone() }
    }
}

impl<S: 'static> Drop for LoopOwner<S> {
    fn drop(&mut self) {
        if self.bound.is_owner_thread() {
            return; // the fields drop as usual
        }
        // Callbacks other threads queued are `Send`: drop them here, one
        // by one, so a panicking destructor loses none of the others.
        for item in self.remote.close() {
            if let Err(message) = crate::runtime::guard::drop_user(item) {
                crate::exception::report(
                    log::Level::Error,
                    format_args!("panic in the destructor of a cross-thread callback: {message}"),
                );
            }
        }
    }
}

impl<S: 'static> fmt::Debug for LoopOwner<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopOwner")
            .field("owner_thread", &self.bound.is_owner_thread())
            .finish_non_exhaustive()
    }
}

//! The fd half of [`EventLoop`]: asyncio's `add_reader`/`add_writer` for
//! user fds, and the transport-owned Sources the networking layer uses.
//!
//! Both go through the selector's Sources (one per fd: owner, per direction
//! a callback and waiters). Every call here takes what the selector
//! released (replaced or cancelled callbacks, wakers) out of its borrow and
//! only then drops or wakes it, under the user-code guard.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;
use std::task::Waker;

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::runtime::event_loop::EventLoop;
use crate::runtime::guard::{drop_user, run_user};
use crate::runtime::handle::Runnable;
use crate::runtime::selector::{FdKey, Interest, Owner, Released, fd_callback};

/// A transport's registration of its fd with the loop, from
/// [`EventLoop::claim_source`]. It names one Source, generation included,
/// so it can never reach a later registration of the same fd number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnedSource(FdKey);

impl EventLoop {
    /// Drops and wakes what a selector call released, with no borrow alive;
    /// a panic there is reported, not propagated.
    pub(crate) fn finish(&self, released: Released) {
        if released.is_empty() {
            return;
        }
        let Released { callbacks, wake, dropped } = released;
        for waker in wake {
            if let Err(message) = run_user(move || waker.wake()) {
                self.report_fd_panic("panic in a waker woken by the event loop", message);
            }
        }
        if let Err(message) = drop_user((callbacks, dropped)) {
            self.report_fd_panic("panic in the destructor of an fd callback", message);
        }
    }

    fn report_fd_panic(&self, what: &str, message: String) {
        self.call_exception_handler(&ExceptionContext::new(what).with_error(Error::Panicked(message)));
    }

    /// Wakes the waiters whose fds the last poll found ready (step 2 of a
    /// pass, after the selector borrow ended).
    pub(crate) fn wake_fd_waiters(&self) {
        let mut wakers: Vec<Waker> = Vec::new();
        self.inner.selector.borrow_mut().take_woken(&mut wakers);
        for waker in wakers.drain(..) {
            if let Err(message) = run_user(move || waker.wake()) {
                self.report_fd_panic("panic in a waker woken by the event loop", message);
            }
        }
        // Hand the (empty) vector back so that its capacity is reused.
        self.inner.selector.borrow_mut().take_woken(&mut wakers);
    }

    /// Errors for a user operation on `fd` the loop cannot do: the loop is
    /// closed, or a transport owns the fd.
    pub(crate) fn check_user_fd(&self, fd: RawFd) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        match self.inner.selector.borrow().owner(fd) {
            Some(Owner::Transport) => Err(crate::runtime::selector::owned_by_transport()),
            _ => Ok(()),
        }
    }

    /// A user callback as a selector item: the closure inline, behind a
    /// `RefCell` since it is `FnMut` (it never runs nested: nested `run_*`
    /// calls are refused).
    #[track_caller]
    fn user_callback(f: impl FnMut() + 'static) -> Rc<dyn Runnable> {
        let f = RefCell::new(f);
        fd_callback(move || (f.borrow_mut())(), Location::caller())
    }

    fn add_fd(&self, fd: RawFd, owner: Owner, interest: Interest, callback: Rc<dyn Runnable>) -> Result<()> {
        let mut released = Released::default();
        let added =
            self.inner.selector.borrow_mut().add_callback(fd, owner, interest, callback, &mut released);
        // A replaced (or refused) callback is dropped here, after the borrow.
        self.finish(released);
        added
    }

    fn remove_fd(&self, fd: RawFd, owner: Owner, interest: Interest) -> bool {
        let mut released = Released::default();
        let removed = {
            let mut selector = self.inner.selector.borrow_mut();
            match selector.key_of(fd, owner) {
                Some(key) => selector.remove_callback(key, interest, &mut released),
                None => false,
            }
        };
        self.finish(released);
        removed
    }

    /// Calls `f` whenever `fd` is readable, until
    /// [`remove_reader`](EventLoop::remove_reader) (asyncio's `add_reader`).
    /// Level-triggered: while unread data remains, `f` runs again on every
    /// pass. Replaces an existing reader of `fd`. The reader and writer of an
    /// fd share one poller registration.
    ///
    /// The loop does not own `fd`: remove the reader before closing the
    /// fd. If it is closed first, `f` is not called from the next pass on
    /// (Linux's epoll drops the registration of a closed file by itself; a
    /// call already queued for the current pass still happens), and the
    /// loop's bookkeeping stays until `remove_reader` frees it or the
    /// number is reused. The first registration on the reused number —
    /// `add_reader`/`add_writer`, a `sock_*` or
    /// [`wait_readable`](EventLoop::wait_readable) wait, a transport — finds
    /// the old file gone, cancels `f` (even a call already queued) and
    /// drops it: a stale callback never runs on the file that took its
    /// number. This relies on Linux's `epoll_ctl` answering `ENOENT` for a
    /// file it no longer watches. A file still open through another fd (a
    /// `dup`, a forked child's copy) keeps reporting until every copy is
    /// closed: remove the reader first in that case.
    ///
    /// A reader and [`wait_readable`](EventLoop::wait_readable) waiters on
    /// the same fd coexist: all of them are told when it is readable.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller refuses the fd (`EBADF` for a closed fd,
    /// `EPERM` for a regular file); an existing reader is then kept.
    /// [`Error::InvalidState`] if a transport owns the fd.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io::{Read, Write}, os::fd::AsRawFd, os::unix::net::UnixStream};
    /// let lp = evloop::EventLoop::new()?;
    /// let (mut a, mut b) = UnixStream::pair()?;
    /// let fd = b.as_raw_fd();
    /// let reader_loop = lp.clone();
    /// lp.add_reader(fd, move || {
    ///     let mut buf = [0u8; 5];
    ///     b.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"hello");
    ///     reader_loop.remove_reader(fd);
    ///     reader_loop.stop();
    /// })?;
    /// a.write_all(b"hello")?;
    /// lp.run_forever()?;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn add_reader(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<()> {
        self.check_open();
        self.add_fd(fd, Owner::User, Interest::Read, EventLoop::user_callback(f))
    }

    /// Stops watching `fd` for reading; returns whether a reader was
    /// registered. Always frees the bookkeeping, even if the fd was already
    /// closed. A copy of the callback already queued for this pass is
    /// skipped, and the closure is dropped. An fd owned by a transport is
    /// left alone (returns false), and so is a reader that was already
    /// cancelled because the fd's number was reused (returns false).
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.remove_fd(fd, Owner::User, Interest::Read)
    }

    /// Calls `f` whenever `fd` is writable, until
    /// [`remove_writer`](EventLoop::remove_writer) (asyncio's `add_writer`).
    /// Same rules as [`add_reader`](EventLoop::add_reader).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller refuses the fd;
    /// [`Error::InvalidState`] if a transport owns it.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    #[track_caller]
    pub fn add_writer(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<()> {
        self.check_open();
        self.add_fd(fd, Owner::User, Interest::Write, EventLoop::user_callback(f))
    }

    /// Stops watching `fd` for writing; returns whether a writer was
    /// registered. Same rules as [`remove_reader`](EventLoop::remove_reader).
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.remove_fd(fd, Owner::User, Interest::Write)
    }

    // ------------------------------------------- transport-owned fds (net)

    /// Gives `fd` to a transport: a fresh Source it owns, watched for
    /// nothing yet; user readers, writers, `sock_*` and `wait_*` on it are
    /// refused until [`release_source`](EventLoop::release_source).
    /// Whatever was registered on that number before is cancelled: its
    /// file was closed (the number is being reused), or a user fd is being
    /// handed to a transport.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close()`; [`Error::Io`] for a negative fd.
    pub(crate) fn claim_source(&self, fd: RawFd) -> Result<OwnedSource> {
        let mut released = Released::default();
        let claimed = self.inner.selector.borrow_mut().claim(fd, &mut released);
        self.finish(released);
        claimed.map(OwnedSource)
    }

    /// Installs (or replaces) the transport's reader or writer callback.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close()`; [`Error::InvalidState`] if the
    /// Source was released; [`Error::Io`] if the poller refuses the fd.
    #[track_caller]
    pub(crate) fn set_source_callback(
        &self,
        source: OwnedSource,
        interest: Interest,
        f: impl Fn() + 'static,
    ) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let fd = self.inner.selector.borrow().fd_of(source.0);
        let fd = fd.ok_or(Error::InvalidState("the transport's fd registration was released"))?;
        self.add_fd(fd, Owner::Transport, interest, fd_callback(f, Location::caller()))
    }

    /// Removes the transport's reader or writer callback; returns whether
    /// there was one.
    pub(crate) fn clear_source_callback(&self, source: OwnedSource, interest: Interest) -> bool {
        let mut released = Released::default();
        let removed = self.inner.selector.borrow_mut().remove_callback(source.0, interest, &mut released);
        self.finish(released);
        removed
    }

    /// Ends the transport's ownership: callbacks and registration go.
    /// Call it before closing the fd. Releasing twice does nothing.
    pub(crate) fn release_source(&self, source: OwnedSource) {
        let mut released = Released::default();
        self.inner.selector.borrow_mut().release(source.0, &mut released);
        self.finish(released);
    }
}

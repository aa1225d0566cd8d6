//! The fd half of [`EventLoop`]: asyncio's `add_reader`/`add_writer` for
//! user fds, and the transport-owned registrations the networking layer
//! uses.

use std::os::fd::RawFd;
use std::panic::Location;

use crate::error::{Error, Result};
use crate::runtime::event_loop::EventLoop;
use crate::runtime::selector::{FdCallback, Interest};

impl EventLoop {
    fn add_fd(
        &self,
        fd: RawFd,
        interest: Interest,
        f: Box<dyn FnMut()>,
        at: &'static Location<'static>,
    ) -> Result<()> {
        self.check_open();
        if self.inner.selector.borrow().is_owned(fd) {
            return Err(Error::InvalidState("the fd is used by a transport"));
        }
        self.add_fd_unchecked(fd, interest, f, at)
    }

    fn add_fd_unchecked(
        &self,
        fd: RawFd,
        interest: Interest,
        f: Box<dyn FnMut()>,
        at: &'static Location<'static>,
    ) -> Result<()> {
        // Transports call this directly; after close() they get an error
        // (and close themselves) instead of re-filling the cleared selector.
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let callback = FdCallback::new(f, at);
        let replaced = self.inner.selector.borrow_mut().add(fd, interest, callback);
        // Any replaced callback is dropped here, after the borrow ended.
        replaced.map(drop).map_err(Error::from)
    }

    fn remove_fd(&self, fd: RawFd, interest: Interest) -> bool {
        if self.inner.selector.borrow().is_owned(fd) {
            return false;
        }
        self.remove_fd_unchecked(fd, interest)
    }

    fn remove_fd_unchecked(&self, fd: RawFd, interest: Interest) -> bool {
        let removed = self.inner.selector.borrow_mut().remove(fd, interest);
        removed.is_some()
    }

    /// Calls `f` whenever `fd` is readable, until
    /// [`remove_reader`](EventLoop::remove_reader) (asyncio's `add_reader`).
    /// Level-triggered: while unread data remains, `f` runs again on every
    /// pass. Replaces an existing reader of `fd`. The reader and writer of an
    /// fd share one poller registration.
    ///
    /// The loop does not own `fd`. Remove the reader before closing the fd:
    /// if the fd is closed first, Linux's epoll drops the registration by
    /// itself, so `f` simply stops being called, and the loop's bookkeeping
    /// stays until `remove_reader` frees it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller refuses the fd (`EBADF` for a closed fd,
    /// `EPERM` for a regular file); an existing reader is then kept.
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
        self.add_fd(fd, Interest::Read, Box::new(f), Location::caller())
    }

    /// Stops watching `fd` for reading; returns whether a reader was
    /// registered. Always frees the bookkeeping, even if the fd was already
    /// closed. A copy of the callback already queued for this pass is
    /// skipped. An fd owned by a transport is left alone (returns false).
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.remove_fd(fd, Interest::Read)
    }

    /// Calls `f` whenever `fd` is writable, until
    /// [`remove_writer`](EventLoop::remove_writer) (asyncio's `add_writer`).
    /// Same rules as [`add_reader`](EventLoop::add_reader).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the poller refuses the fd.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    #[track_caller]
    pub fn add_writer(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<()> {
        self.add_fd(fd, Interest::Write, Box::new(f), Location::caller())
    }

    /// Stops watching `fd` for writing; returns whether a writer was
    /// registered. Same rules as [`remove_reader`](EventLoop::remove_reader).
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.remove_fd(fd, Interest::Write)
    }

    // ------------------------------------------- transport-owned fds (net)

    /// Marks `fd` as owned by a transport: user readers/writers are refused.
    pub(crate) fn claim_fd(&self, fd: RawFd) {
        self.inner.selector.borrow_mut().set_owned(fd, true);
    }

    /// Ends a transport's ownership of `fd` (its readers/writers are gone).
    pub(crate) fn release_fd(&self, fd: RawFd) {
        self.inner.selector.borrow_mut().set_owned(fd, false);
    }

    #[track_caller]
    pub(crate) fn add_owned_reader(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<()> {
        self.add_fd_unchecked(fd, Interest::Read, Box::new(f), Location::caller())
    }

    #[track_caller]
    pub(crate) fn add_owned_writer(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<()> {
        self.add_fd_unchecked(fd, Interest::Write, Box::new(f), Location::caller())
    }

    pub(crate) fn remove_owned_reader(&self, fd: RawFd) -> bool {
        self.remove_fd_unchecked(fd, Interest::Read)
    }

    pub(crate) fn remove_owned_writer(&self, fd: RawFd) -> bool {
        self.remove_fd_unchecked(fd, Interest::Write)
    }
}

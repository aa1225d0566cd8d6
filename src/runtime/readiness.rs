//! [`WaitReady`]: a future that completes when an fd is readable or
//! writable, from [`EventLoop::wait_readable`] and
//! [`EventLoop::wait_writable`]; the `sock_*` coroutines wait with it.
//!
//! Invariant: a pending `WaitReady` is exactly one waiter in its fd's
//! Source. Dropping it removes that waiter and nothing else, so it is
//! cancel-safe and other waiters on the same fd (another task's
//! `sock_recv`, a reader callback) are untouched.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::runtime::event_loop::{EventLoop, WeakLoop};
use crate::runtime::selector::{FdKey, Interest, Released, WaitState};

enum State {
    /// Not polled yet: nothing registered.
    New,
    Waiting(FdKey, u64),
    Done,
}

/// Waits until an fd is ready for reading or writing; see
/// [`EventLoop::wait_readable`]. Output: `Ok(())` once it is.
///
/// Dropping it before it completes removes only its own registration.
/// It holds the loop weakly: if the loop is dropped meanwhile, it fails
/// with [`Error::Closed`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitReady {
    lp: WeakLoop,
    fd: RawFd,
    interest: Interest,
    state: State,
}

impl WaitReady {
    pub(crate) fn new(lp: &EventLoop, fd: RawFd, interest: Interest) -> WaitReady {
        WaitReady { lp: lp.downgrade(), fd, interest, state: State::New }
    }

    /// The fd this future waits for.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

impl fmt::Debug for WaitReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::New => "new",
            State::Waiting(..) => "waiting",
            State::Done => "done",
        };
        f.debug_struct("WaitReady")
            .field("fd", &self.fd)
            .field("interest", &self.interest)
            .field("state", &state)
            .finish()
    }
}

fn gone(lp: &EventLoop, fd: RawFd) -> Error {
    if lp.is_closed() {
        return Error::Closed;
    }
    io::Error::other(format!(
        "fd {fd} was closed (its number reused) or handed to a transport while waiting for it"
    ))
    .into()
}

impl Future for WaitReady {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let Some(lp) = this.lp.upgrade() else {
            this.state = State::Done;
            return Poll::Ready(Err(Error::Closed));
        };
        let mut released = Released::default();
        let outcome = match this.state {
            State::Done => Poll::Ready(Err(Error::InvalidState("WaitReady polled after it completed"))),
            State::New => {
                let added = lp.inner.selector.borrow_mut().add_waiter(
                    this.fd,
                    this.interest,
                    cx.waker().clone(),
                    &mut released,
                );
                match added {
                    Ok((key, id)) => {
                        this.state = State::Waiting(key, id);
                        Poll::Pending
                    }
                    Err(e) => {
                        this.state = State::Done;
                        Poll::Ready(Err(e))
                    }
                }
            }
            State::Waiting(key, id) => {
                let state = lp.inner.selector.borrow_mut().poll_waiter(
                    key,
                    this.interest,
                    id,
                    cx.waker(),
                    &mut released,
                );
                match state {
                    WaitState::Pending => Poll::Pending,
                    WaitState::Ready => {
                        this.state = State::Done;
                        Poll::Ready(Ok(()))
                    }
                    WaitState::Gone => {
                        this.state = State::Done;
                        Poll::Ready(Err(gone(&lp, this.fd)))
                    }
                }
            }
        };
        lp.finish(released);
        outcome
    }
}

impl Drop for WaitReady {
    fn drop(&mut self) {
        let State::Waiting(key, id) = self.state else { return };
        let Some(lp) = self.lp.upgrade() else { return };
        let mut released = Released::default();
        lp.inner.selector.borrow_mut().remove_waiter(key, self.interest, id, &mut released);
        lp.finish(released);
    }
}

impl EventLoop {
    /// Waits until `fd` is readable: a future that completes with `Ok(())`
    /// once the poller reports it (level-triggered: at once if data is
    /// already waiting). It reads nothing; do that yourself, and expect
    /// `WouldBlock` now and then (another waiter may have read first, or
    /// the readiness was spurious).
    ///
    /// Any number of waiters, and a reader callback, can wait on one fd;
    /// all of them are told. Dropping the future before it completes
    /// removes only its own registration (cancel-safe).
    ///
    /// The loop does not own `fd`. Closing it while a wait is pending
    /// leaves the wait pending until the number is reused by another
    /// registration on this loop, which ends it with an error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if a transport owns `fd`; [`Error::Io`] if
    /// the poller refuses it (`EBADF` for a closed fd, `EPERM` for a
    /// regular file), or if the fd was closed and its number reused (or
    /// handed to a transport) while waiting; [`Error::Closed`] if the loop
    /// is closed or dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{io::{Read, Write}, os::fd::AsRawFd, os::unix::net::UnixStream};
    /// let lp = evloop::EventLoop::new()?;
    /// let (mut a, mut b) = UnixStream::pair()?;
    /// let fd = b.as_raw_fd();
    /// let ready = lp.wait_readable(fd);
    /// a.write_all(b"hi")?;
    /// lp.run_until_complete(ready)??;
    /// let mut buf = [0u8; 2];
    /// b.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn wait_readable(&self, fd: RawFd) -> WaitReady {
        WaitReady::new(self, fd, Interest::Read)
    }

    /// Waits until `fd` is writable; the counterpart of
    /// [`wait_readable`](EventLoop::wait_readable), with the same rules.
    ///
    /// # Errors
    ///
    /// As [`wait_readable`](EventLoop::wait_readable).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{os::fd::AsRawFd, os::unix::net::UnixStream};
    /// let lp = evloop::EventLoop::new()?;
    /// let (a, _b) = UnixStream::pair()?;
    /// // An empty socket buffer has room: ready at once.
    /// lp.run_until_complete(lp.wait_writable(a.as_raw_fd()))??;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn wait_writable(&self, fd: RawFd) -> WaitReady {
        WaitReady::new(self, fd, Interest::Write)
    }
}

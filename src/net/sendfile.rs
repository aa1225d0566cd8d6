//! `loop.sendfile` over a stream transport: flush the transport's buffer,
//! then hand the socket to the kernel's zero-copy `sendfile(2)`.
//!
//! Invariant: while it runs the transport refuses `write` and does not
//! read; both are restored however the call ends (a guard, so even when
//! the awaiting task is cancelled midway).

use std::io;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::net::core::{self, TransportKind};
use crate::net::transport::{StreamInner, Transport};
use crate::runtime::event_loop::EventLoop;

/// Restores a transport after `sendfile`, however that ends (even if the
/// awaiting task is cancelled midway).
struct SendfileGuard {
    inner: Rc<StreamInner>,
    resume_reading: bool,
}

impl Drop for SendfileGuard {
    fn drop(&mut self) {
        self.inner.sendfile_active.set(false);
        if self.resume_reading {
            Transport::plain(self.inner.clone()).resume_reading();
        }
    }
}

impl EventLoop {
    /// Sends `count` bytes of `file` from `offset` (all of it from `offset`
    /// when `None`) over a stream transport (asyncio's `loop.sendfile`):
    /// flushes what the transport has buffered, then uses the kernel's
    /// zero-copy `sendfile(2)` ([`sock_sendfile`](EventLoop::sock_sendfile))
    /// on the transport's socket. Meanwhile reading is paused and `write`
    /// is refused; both are restored afterwards. Returns the bytes sent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the transport is closing or another
    /// `sendfile` is running on it; [`Error::Io`] from the file or socket;
    /// the connection's loss as `ConnectionReset`.
    pub async fn sendfile(
        &self,
        transport: &Transport,
        file: &std::fs::File,
        offset: u64,
        count: Option<usize>,
    ) -> Result<usize> {
        #[cfg(feature = "tls")]
        if transport.tls.is_some() {
            return Err(Error::InvalidState("sendfile() is not available on a TLS transport"));
        }
        let inner = &transport.inner;
        if inner.core().is_closing() {
            return Err(Error::InvalidState("cannot sendfile() on a closing transport"));
        }
        if inner.sendfile_active.replace(true) {
            return Err(Error::InvalidState("another sendfile() is in progress on this transport"));
        }
        let resume_reading = transport.is_reading();
        transport.pause_reading();
        let _guard = SendfileGuard { inner: inner.clone(), resume_reading };
        std::future::poll_fn(|cx| {
            if inner.core().is_lost() || inner.write_buffered() == 0 {
                return std::task::Poll::Ready(());
            }
            inner.add_empty_waiter(cx.waker());
            std::task::Poll::Pending
        })
        .await;
        if inner.core().is_lost() {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset).into());
        }
        // A duplicate of the fd: the transport keeps its own (and may close
        // it if the connection is lost meanwhile) without pulling the socket
        // out from under this call.
        let socket = inner.core().with_socket(|s| s.try_clone())?;
        let sent = self.sock_sendfile(&socket, file, offset, count).await;
        if let Err(e) = &sent
            && e.io_kind().is_some()
        {
            // The socket failed: the transport learns it too.
            core::force_close(inner, Some(e.clone()));
        }
        sent
    }
}

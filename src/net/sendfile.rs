//! `loop.sendfile` over a stream transport: flush the transport's buffer,
//! then hand the socket to the kernel's zero-copy `sendfile(2)`.
//!
//! On a TLS transport the kernel would send plaintext, so the file is read
//! and written through the transport instead (asyncio's fallback).
//!
//! Invariant: while it runs the transport does not read (and, on a plain
//! transport, refuses `write`); both are restored however the call ends
//! (a guard, so even when the awaiting task is cancelled midway).

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
    /// On a TLS transport (which `sendfile(2)` would bypass) it falls back
    /// to reading the file in blocks and writing them through the
    /// transport, waiting while its buffer is above the high-water mark, as
    /// asyncio does with its default `fallback=True` (there is no
    /// `fallback` switch here: a plain transport always has `sendfile(2)`).
    /// Reading is paused meanwhile; writes are not refused, so do not write
    /// until it returns. The file is read where it lies (`pread`, on the
    /// loop's thread) and its position is not moved.
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
            return sendfile_fallback(transport, file, offset, count).await;
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

/// Resumes reading after the fallback, however it ends.
#[cfg(feature = "tls")]
struct ResumeReading(Transport, bool);

#[cfg(feature = "tls")]
impl Drop for ResumeReading {
    fn drop(&mut self) {
        if self.1 {
            self.0.resume_reading();
        }
    }
}

/// asyncio's `_sendfile_fallback`: read a block, wait for the buffer to
/// drain below the high-water mark, write it through the transport.
#[cfg(feature = "tls")]
async fn sendfile_fallback(
    transport: &Transport,
    file: &std::fs::File,
    offset: u64,
    count: Option<usize>,
) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 64 * 1024;
    if transport.is_closing() {
        return Err(Error::InvalidState("cannot sendfile() on a closing transport"));
    }
    let _resume = ResumeReading(transport.clone(), transport.is_reading());
    transport.pause_reading();
    let inner = &transport.inner;
    let mut buf = vec![0; count.map_or(BLOCK, |c| c.min(BLOCK))];
    let mut sent = 0usize;
    loop {
        let want = count.map_or(buf.len(), |c| (c - sent).min(buf.len()));
        if want == 0 {
            return Ok(sent);
        }
        let pos = offset + sent as u64;
        let read = match file.read_at(&mut buf[..want], pos) {
            Ok(0) => return Ok(sent),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io_context(e, format_args!("sendfile: read the file at {pos}"))),
        };
        std::future::poll_fn(|cx| {
            let (high, _) = transport.get_write_buffer_limits();
            if inner.core().is_lost() || transport.get_write_buffer_size() <= high {
                return std::task::Poll::Ready(());
            }
            inner.add_empty_waiter(cx.waker());
            std::task::Poll::Pending
        })
        .await;
        if inner.core().is_lost() {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset).into());
        }
        transport.write(&buf[..read])?;
        sent += read;
    }
}

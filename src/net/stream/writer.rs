//! [`StreamWriter`]: the writing half of a stream.
//!
//! Invariant: `lost` is set exactly once, by the protocol's
//! `connection_lost`, and every task waiting in `drain`, `wait_closed` or
//! `poll_close` is woken then; the writer holds no loop (a protocol that
//! did would keep its loop alive through the loop's own fd table). Every
//! handle to one connection's writing side shares one [`WriteSide`], whose
//! drop closes the connection: the protocol never holds one, so the last
//! user handle going is what closes it.

use std::cell::Cell;
use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::reader::{ReaderShared, into_io};
use crate::error::{Error, Result};
use crate::net::Transport;

/// What the protocol shares with the writer.
pub(super) struct WriterShared {
    pub(super) write_paused: Cell<bool>,
    pub(super) drain_wakers: RefCell<Vec<Waker>>,
    /// `Some` once the connection is gone; the error, if any.
    pub(super) lost: RefCell<Option<Option<Error>>>,
}

impl WriterShared {
    /// Queues `cx`'s waker for the next drain or connection loss.
    pub(super) fn register(&self, cx: &Context<'_>) {
        let mut wakers = self.drain_wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }

    /// Ready once writing is not paused; the connection's error (or
    /// `gone` for a loss without one) once it is lost.
    pub(super) fn poll_writable(&self, cx: &Context<'_>, gone: io::ErrorKind) -> Poll<Result<()>> {
        if let Some(lost) = &*self.lost.borrow() {
            return Poll::Ready(Err(lost.clone().unwrap_or_else(|| io::Error::from(gone).into())));
        }
        if !self.write_paused.get() {
            return Poll::Ready(Ok(()));
        }
        self.register(cx);
        Poll::Pending
    }

    pub(super) fn wake_drainers(&self) {
        let wakers = std::mem::take(&mut *self.drain_wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

/// Closes its connection (after flushing) when the last writer handle is
/// dropped, as asyncio 3.13's `StreamWriter.__del__` does.
pub(super) struct WriteSide {
    /// The transport to close: the TLS one once `start_tls` upgraded it;
    /// `None` for a connection nobody writes to (a child's stdout pipe).
    transport: RefCell<Option<Transport>>,
}

impl WriteSide {
    pub(super) fn new(transport: Transport) -> Rc<WriteSide> {
        Rc::new(WriteSide { transport: RefCell::new(Some(transport)) })
    }
}

impl Drop for WriteSide {
    fn drop(&mut self) {
        // `close` flushes first and defers `connection_lost` to the next
        // pass, so this is safe wherever the last handle goes.
        if let Some(transport) = self.transport.get_mut() {
            transport.close();
        }
    }
}

/// The reader of a read-only connection (a child's stdout or stderr pipe):
/// its writer is dropped without closing the connection.
pub(crate) fn reader_only((reader, writer): (super::StreamReader, StreamWriter)) -> super::StreamReader {
    writer.side.transport.borrow_mut().take();
    reader
}

/// The writing half of a stream connection (asyncio's `StreamWriter`).
/// Cheap to clone.
///
/// When the last handle to a connection's writing side is dropped (every
/// clone, and the [`DuplexStream`](super::DuplexStream) holding one), the
/// connection is closed after its buffer is flushed, as asyncio 3.13 does
/// when a `StreamWriter` is collected; dropping only the reader closes
/// nothing. So `let (reader, _) = open_connection(..)` closes the
/// connection at once: keep the writer while you read. A stream server's
/// handler task holds its connection's writing side until it finishes, so
/// a handler that returns without [`close`](StreamWriter::close) closes
/// its connection (unless it handed a writer to someone else), one that
/// ignores its writer (`|reader, _| ..`) still reads, and one that panics
/// or is cancelled closes it too. Every connection is closed when the loop
/// is (so `evloop::run` leaves none open).
///
/// # Examples
///
/// ```
/// let got = evloop::run(async {
///     let server = evloop::start_server(
///         |mut reader, _writer| async move {
///             let all = reader.read_to_end().await.unwrap();
///             assert_eq!(all.len(), 3 * 100_000);
///         },
///         "127.0.0.1",
///         0,
///         Default::default(),
///     )
///     .await?;
///     let port = server.local_addr().unwrap().port();
///     let (_reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
///     for chunk in [b'a', b'b', b'c'] {
///         writer.write(&vec![chunk; 100_000])?;
///         // Waits while the buffer is over its high-water mark.
///         writer.drain().await?;
///     }
///     writer.close();
///     writer.wait_closed().await?;
///     server.close();
///     Ok::<_, evloop::Error>(writer.is_closing())
/// })??;
/// assert!(got);
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct StreamWriter {
    pub(super) transport: Transport,
    pub(super) shared: Rc<WriterShared>,
    pub(super) reader: Option<Rc<ReaderShared>>,
    pub(super) side: Rc<WriteSide>,
}

impl StreamWriter {
    /// Queues `data` on the transport; await [`drain`](StreamWriter::drain)
    /// now and then so a slow peer cannot make the buffer grow forever.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] after `write_eof` or `close`.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.transport.write(data)
    }

    /// Queues every buffer of `chunks`.
    ///
    /// # Errors
    ///
    /// As [`write`](StreamWriter::write).
    pub fn writelines<I>(&self, chunks: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.transport.writelines(chunks)
    }

    /// Waits until the write buffer is below its high-water mark (asyncio's
    /// `drain`): returns at once unless the transport paused writing.
    ///
    /// # Errors
    ///
    /// The connection's error if it was lost to one (e.g. `ConnectionReset`
    /// when the peer reset it), and `ConnectionReset` once the connection is
    /// gone for any other reason, a local `close()` included (as asyncio).
    pub async fn drain(&self) -> Result<()> {
        if let Some(reader) = &self.reader {
            let error = reader.error.borrow().clone();
            if let Some(e) = error {
                return Err(e);
            }
        }
        if self.transport.is_closing() {
            // Let connection_lost run if it is due, as asyncio does.
            crate::yield_now().await;
        }
        poll_fn(|cx| self.shared.poll_writable(cx, io::ErrorKind::ConnectionReset)).await
    }

    /// Closes the write side after the buffer is flushed (half-close).
    pub fn write_eof(&self) {
        self.transport.write_eof();
    }

    /// Whether `write_eof` is supported (always, for TCP and Unix streams).
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection after the buffer is flushed.
    pub fn close(&self) {
        self.transport.close();
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is closed.
    ///
    /// # Errors
    ///
    /// The connection's error, if it was lost to one.
    pub async fn wait_closed(&self) -> Result<()> {
        // A waker, not a loop future: the protocol must not hold its loop
        // (the loop would then be kept alive through its own fd table).
        poll_fn(|cx| {
            if self.shared.lost.borrow().is_some() {
                return Poll::Ready(());
            }
            self.shared.register(cx);
            Poll::Pending
        })
        .await;
        match &*self.shared.lost.borrow() {
            Some(Some(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The peer's IP address (TCP).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.transport.peer_addr()
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Upgrades the connection to TLS (asyncio's `StreamWriter.start_tls`):
    /// does the handshake, then this writer and its reader go through the
    /// TLS layer (see [`EventLoop::start_tls`](crate::EventLoop::start_tls)).
    /// Clones of the writer made before keep the plain transport: upgrade
    /// first, clone after.
    ///
    /// # Errors
    ///
    /// As [`EventLoop::start_tls`](crate::EventLoop::start_tls); after a
    /// failed handshake the connection is closed.
    ///
    /// # Panics
    ///
    /// If the loop was dropped.
    ///
    /// # Examples
    ///
    /// See [`net::tls`](crate::net::tls).
    #[cfg(feature = "tls")]
    pub async fn start_tls(
        &mut self,
        config: impl Into<crate::net::tls::TlsConfig>,
        options: crate::net::tls::TlsOptions,
    ) -> Result<()> {
        let lp = self.transport.get_loop();
        let upgraded = lp.start_tls(&self.transport, config, options).await?;
        if let Some(reader) = &self.reader {
            *reader.transport.borrow_mut() = Some(upgraded.clone());
        }
        *self.side.transport.borrow_mut() = Some(upgraded.clone());
        self.transport = upgraded;
        Ok(())
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter").field("transport", &self.transport).finish()
    }
}

impl futures_io::AsyncWrite for StreamWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // Respect flow control: accept data only while not paused.
        match self.as_ref().poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match self.transport.write(data) {
            Ok(()) => Poll::Ready(Ok(data.len())),
            Err(e) => Poll::Ready(Err(into_io(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A flush after a clean close has nothing left to do: `Ok`, or
        // hyper reports every connection it closes as a write error.
        if let Some(lost) = &*self.shared.lost.borrow() {
            return Poll::Ready(lost.clone().map_or(Ok(()), |e| Err(into_io(e))));
        }
        if self.transport.is_closing() {
            return Poll::Ready(Ok(()));
        }
        self.as_ref().poll_ready(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.transport.close();
        if self.shared.lost.borrow().is_some() {
            return Poll::Ready(Ok(()));
        }
        self.shared.register(cx);
        Poll::Pending
    }
}

impl StreamWriter {
    /// Ready when not paused for writing; the connection's error if lost.
    fn poll_ready(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_writable(cx, io::ErrorKind::BrokenPipe).map_err(into_io)
    }
}

//! Pipe transports (asyncio's `connect_read_pipe` / `connect_write_pipe`,
//! `_UnixReadPipeTransport` / `_UnixWritePipeTransport`): a stream
//! transport over a pipe, FIFO, socket or character device, driven with
//! `read(2)`/`write(2)` instead of `recv`/`send`.
//!
//! Invariant: a pipe transport is the stream [`Transport`] with one
//! direction switched off, so it has the stream transport's guarantees
//! unchanged (buffering, write flow control, close after flush, exactly
//! one `connection_lost`, closed by the loop's `close()`); the typed
//! handles [`ReadPipeTransport`] and [`WritePipeTransport`] show only the
//! methods that direction supports. The protocol is the ordinary
//! [`Protocol`](crate::net::Protocol), as in asyncio.
//!
//! # Broken pipes and `SIGPIPE`
//!
//! A write to a pipe whose reader has closed fails with `EPIPE`: the
//! transport closes with `connection_lost(Some(e))`, `e.kind()` being
//! [`BrokenPipe`](std::io::ErrorKind::BrokenPipe). The reader closing while
//! nothing is buffered is seen by polling the write end and gives
//! `connection_lost(None)` (asyncio does the same). This relies on
//! `SIGPIPE` being ignored, which Rust's runtime (like CPython's) sets up
//! before `main`; evloop never changes the process's disposition. A host
//! that restores `SIG_DFL` (some C programs embedding Rust do) is killed
//! by the signal on such a write instead.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::rc::Rc;

use socket2::Socket;

use crate::error::Result;
use crate::net::StreamProtocol;
use crate::net::transport::{PipeEnd, Transport};
use crate::runtime::event_loop::EventLoop;

/// The read end of a pipe connected to a protocol
/// ([`EventLoop::connect_read_pipe`]). Cheap to clone.
///
/// The protocol's `connection_made` receives the underlying
/// [`Transport`]; on a read pipe its `write` fails with
/// [`Error::InvalidState`](crate::Error::InvalidState) and `write_eof` does nothing.
#[derive(Clone)]
pub struct ReadPipeTransport(pub(crate) Transport);

/// The write end of a pipe connected to a protocol
/// ([`EventLoop::connect_write_pipe`]). Cheap to clone.
///
/// The protocol's `connection_made` receives the underlying
/// [`Transport`]; on a write pipe its `pause_reading`/`resume_reading` do
/// nothing and `is_reading` is false.
#[derive(Clone)]
pub struct WritePipeTransport(pub(crate) Transport);

impl ReadPipeTransport {
    /// Closes the pipe: no more `data_received`; `connection_lost(None)`
    /// follows on a later pass.
    pub fn close(&self) {
        self.0.close();
    }

    /// Whether the transport is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    /// Stops calling `data_received` until
    /// [`resume_reading`](ReadPipeTransport::resume_reading).
    pub fn pause_reading(&self) {
        self.0.pause_reading();
    }

    /// Resumes reading after [`pause_reading`](ReadPipeTransport::pause_reading).
    pub fn resume_reading(&self) {
        self.0.resume_reading();
    }

    /// Whether the transport is reading (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        self.0.is_reading()
    }

    /// The pipe's fd (asyncio's `get_extra_info("pipe")`), while it is open.
    pub fn fd(&self) -> RawFd {
        self.0.fd()
    }

    /// The stream transport underneath (what `connection_made` got).
    pub fn transport(&self) -> &Transport {
        &self.0
    }

    /// The loop the transport runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped.
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.0.get_loop()
    }
}

impl WritePipeTransport {
    /// Queues `data`: written at once if the pipe takes it, buffered
    /// otherwise (`pause_writing` past the high-water mark).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`](crate::Error::InvalidState) once closing.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.0.write(data)
    }

    /// Writes every buffer of `chunks`, in order.
    ///
    /// # Errors
    ///
    /// As [`write`](WritePipeTransport::write).
    pub fn writelines<I>(&self, chunks: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.0.writelines(chunks)
    }

    /// Closes the pipe once the buffer is flushed: the reader sees EOF (a
    /// pipe has no half-close, so this is [`close`](WritePipeTransport::close)).
    pub fn write_eof(&self) {
        self.0.write_eof();
    }

    /// Always true: [`write_eof`](WritePipeTransport::write_eof) closes the pipe.
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the pipe after the buffer is flushed; `connection_lost(None)`
    /// follows.
    pub fn close(&self) {
        self.0.close();
    }

    /// Closes at once, dropping buffered data.
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Whether the transport is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    /// Bytes accepted by `write` and not yet written.
    pub fn get_write_buffer_size(&self) -> usize {
        self.0.get_write_buffer_size()
    }

    /// Sets the write buffer's water marks, as
    /// [`Transport::set_write_buffer_limits`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`](crate::Error::InvalidState) if `low > high`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        self.0.set_write_buffer_limits(high, low)
    }

    /// The write buffer's `(low, high)` water marks.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.0.get_write_buffer_limits()
    }

    /// The pipe's fd, while it is open.
    pub fn fd(&self) -> RawFd {
        self.0.fd()
    }

    /// The stream transport underneath (what `connection_made` got).
    pub fn transport(&self) -> &Transport {
        &self.0
    }

    /// The loop the transport runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped.
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.0.get_loop()
    }
}

impl fmt::Debug for ReadPipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadPipeTransport").field(&self.0).finish()
    }
}

impl fmt::Debug for WritePipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WritePipeTransport").field(&self.0).finish()
    }
}

/// Starts a pipe transport on `fd` (nonblocking from now on), scheduling
/// `connection_made`. The fd is closed if it is refused.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) (`InvalidInput`) for a regular file or a directory, or
/// from `fstat`; [`Error::Closed`](crate::Error::Closed) after the loop's `close()`.
pub(crate) fn start_pipe<P: StreamProtocol>(
    lp: &EventLoop,
    fd: OwnedFd,
    protocol: P,
    end: PipeEnd,
    made: Option<crate::Future<()>>,
) -> Result<(Transport, Rc<RefCell<P>>)> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    let (fifo, socket) = (kind.is_fifo(), kind.is_socket());
    if !(fifo || socket || kind.is_char_device()) {
        let what = if end == PipeEnd::Read { "connect_read_pipe" } else { "connect_write_pipe" };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what}: pipe transports are for pipes, FIFOs, sockets and character devices, not {kind:?}"
            ),
        )
        .into());
    }
    let socket_like = Socket::from(OwnedFd::from(file));
    let (transport, protocol) = Transport::start(lp, socket_like, protocol, None, made)?;
    // A character device (a tty) may not report its reader closing.
    transport.set_pipe_end(end, fifo || socket);
    Ok((transport, protocol))
}

/// Starts a pipe transport and waits for its `connection_made`; a caller
/// cancelled meanwhile aborts it (nobody could reach it).
async fn connect_pipe<P: StreamProtocol>(
    lp: &EventLoop,
    fd: OwnedFd,
    protocol: P,
    end: PipeEnd,
) -> Result<(Transport, Rc<RefCell<P>>)> {
    struct AbortOnDrop(Option<Transport>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(t) = self.0.take() {
                t.abort();
            }
        }
    }
    let made = lp.create_future::<()>();
    let started = start_pipe(lp, fd, protocol, end, Some(made.clone()))?;
    let mut guard = AbortOnDrop(Some(started.0.clone()));
    made.await?;
    guard.0 = None;
    Ok(started)
}

impl EventLoop {
    /// Reads the pipe `pipe` with a protocol made by `factory` (asyncio's
    /// `connect_read_pipe`): `data_received` for each chunk, then at EOF
    /// (the writer closed) `eof_received` and `connection_lost(None)`.
    /// `pipe` is anything owning an fd: a [`ChildStdout`](std::process::ChildStdout),
    /// the read end of [`std::io::pipe`], a FIFO opened as a [`File`], a
    /// socket, a character device. It is made nonblocking (which the
    /// other holders of the same open file see too, as in asyncio) and
    /// owned by the transport from now on. Returns once `connection_made`
    /// has run.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) with kind `InvalidInput` for a regular file or a
    /// directory (the fd is closed); [`Error::Closed`](crate::Error::Closed) after `close()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use evloop::net::Protocol;
    ///
    /// #[derive(Default)]
    /// struct Collect(Vec<u8>, bool);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.0.extend_from_slice(data);
    ///     }
    ///     fn connection_lost(&mut self, _: Option<evloop::Error>) {
    ///         self.1 = true;
    ///     }
    /// }
    ///
    /// let (reader, mut writer) = std::io::pipe()?;
    /// writer.write_all(b"through the pipe")?;
    /// drop(writer); // EOF
    /// let lp = evloop::EventLoop::new()?;
    /// let (_transport, protocol) = lp.run_until_complete({
    ///     let lp = lp.clone();
    ///     async move { lp.connect_read_pipe(Collect::default, reader).await }
    /// })??;
    /// while !protocol.borrow().1 {
    ///     lp.run_once(None)?; // until connection_lost
    /// }
    /// assert_eq!(protocol.borrow().0, b"through the pipe");
    /// assert!(protocol.borrow().1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn connect_read_pipe<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(ReadPipeTransport, Rc<RefCell<P>>)> {
        let (transport, protocol) = connect_pipe(self, pipe.into(), factory(), PipeEnd::Read).await?;
        Ok((ReadPipeTransport(transport), protocol))
    }

    /// Writes to the pipe `pipe` from a protocol made by `factory`
    /// (asyncio's `connect_write_pipe`), with the stream transport's
    /// buffering and write flow control (`pause_writing` /
    /// `resume_writing`). `pipe` is anything owning an fd, as for
    /// [`connect_read_pipe`](EventLoop::connect_read_pipe). When the
    /// reader closes, the transport closes: `connection_lost(None)` if
    /// nothing was buffered, else (or for a write that fails) with the
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) error (see the
    /// [module docs](crate::os::pipe) on `SIGPIPE`). Returns once
    /// `connection_made` has run.
    ///
    /// # Errors
    ///
    /// As [`connect_read_pipe`](EventLoop::connect_read_pipe).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use evloop::net::Protocol;
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let (mut reader, writer) = std::io::pipe()?;
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// lp.run_until_complete(async move {
    ///     let (pipe, _) = l.connect_write_pipe(|| Quiet, writer).await?;
    ///     pipe.write(b"hello")?;
    ///     pipe.close(); // after the buffer is flushed: here at once
    ///     Ok::<_, evloop::Error>(())
    /// })??;
    /// let mut got = String::new();
    /// reader.read_to_string(&mut got)?;
    /// assert_eq!(got, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn connect_write_pipe<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(WritePipeTransport, Rc<RefCell<P>>)> {
        let (transport, protocol) = connect_pipe(self, pipe.into(), factory(), PipeEnd::Write).await?;
        Ok((WritePipeTransport(transport), protocol))
    }
}

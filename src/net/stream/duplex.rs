//! [`DuplexStream`]: one connection's [`StreamReader`] and [`StreamWriter`]
//! in one value, for the crates (codecs, TLS, WebSocket) that want a single
//! read + write stream.
//!
//! Invariant: the stream is exactly its two halves, nothing more: splitting
//! and joining lose no buffered byte, and dropping it is dropping them (so
//! the connection closes when the writer is the last handle to it).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{
    StreamConnectOptions, StreamReader, StreamWriter, open_connection, open_connection_from_socket,
    open_unix_connection,
};
use crate::error::Result;
use crate::net::Transport;

/// A connection's reader and writer in one value, implementing
/// `futures-io`'s [`AsyncRead`](futures_io::AsyncRead),
/// [`AsyncBufRead`](futures_io::AsyncBufRead) and
/// [`AsyncWrite`](futures_io::AsyncWrite).
///
/// Named for what it is (both directions of one stream); not `Stream`,
/// which every async user already has in scope as `futures::Stream`, the
/// async iterator.
///
/// Only asyncio's names that no `futures-io` extension trait also uses are
/// inherent here ([`readline`](DuplexStream::readline),
/// [`drain`](DuplexStream::drain), [`write_eof`](DuplexStream::write_eof)…),
/// so `AsyncReadExt::read_to_end`, `AsyncWriteExt::write_all` and
/// `AsyncWriteExt::close` work on it with method syntax; asyncio's
/// `read`/`write`/`close` are on its halves ([`reader`](DuplexStream::reader),
/// [`writer`](DuplexStream::writer)).
///
/// Dropping it closes the connection (after flushing) unless a clone of its
/// writer lives on; see [`StreamWriter`].
///
/// # Examples
///
/// ```
/// use futures_util::io::{AsyncReadExt, AsyncWriteExt};
/// use evloop::net::stream::{DuplexStream, duplex_handler};
///
/// let reply = evloop::run(async {
///     let server = evloop::start_server(
///         duplex_handler(|mut stream: DuplexStream| async move {
///             let line = stream.readline().await.unwrap();
///             stream.write_all(&line).await.unwrap();
///             // Returning closes the connection: the client sees EOF.
///         }),
///         "127.0.0.1",
///         0,
///         Default::default(),
///     )
///     .await?;
///     let port = server.local_addr().unwrap().port();
///     let mut stream = evloop::net::stream::open_stream("127.0.0.1", port, Default::default()).await?;
///     stream.write_all(b"hello\n").await?;
///     let mut reply = Vec::new();
///     stream.read_to_end(&mut reply).await?;
///     server.close();
///     Ok::<_, evloop::Error>(reply)
/// })??;
/// assert_eq!(reply, b"hello\n");
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct DuplexStream {
    reader: StreamReader,
    writer: StreamWriter,
}

impl DuplexStream {
    /// Joins a connection's two halves (tokio's `unsplit`). Nothing checks
    /// that they belong to one connection: joining halves of two makes a
    /// stream that reads one and writes the other.
    pub fn unsplit(reader: StreamReader, writer: StreamWriter) -> DuplexStream {
        DuplexStream { reader, writer }
    }

    /// Splits the stream into its halves, to read and write from two tasks.
    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Borrows both halves at once (to read in one future and write in
    /// another, joined). Not named `split`: `AsyncReadExt::split` (by
    /// value) would win method resolution over it.
    pub fn split_mut(&mut self) -> (&mut StreamReader, &mut StreamWriter) {
        (&mut self.reader, &mut self.writer)
    }

    /// The reading half: asyncio's `read(n)` and `read_to_end()` are there.
    pub fn reader(&mut self) -> &mut StreamReader {
        &mut self.reader
    }

    /// The writing half: asyncio's `write`, `writelines` and `close` are
    /// there.
    pub fn writer(&self) -> &StreamWriter {
        &self.writer
    }

    /// As [`StreamReader::readline`].
    ///
    /// # Errors
    ///
    /// As [`StreamReader::readline`].
    pub async fn readline(&mut self) -> Result<Vec<u8>> {
        self.reader.readline().await
    }

    /// As [`StreamReader::readexactly`].
    ///
    /// # Errors
    ///
    /// As [`StreamReader::readexactly`].
    pub async fn readexactly(&mut self, n: usize) -> Result<Vec<u8>> {
        self.reader.readexactly(n).await
    }

    /// As [`StreamReader::readuntil`].
    ///
    /// # Errors
    ///
    /// As [`StreamReader::readuntil`].
    pub async fn readuntil(&mut self, separator: &[u8]) -> Result<Vec<u8>> {
        self.reader.readuntil(separator).await
    }

    /// As [`StreamWriter::drain`].
    ///
    /// # Errors
    ///
    /// As [`StreamWriter::drain`].
    pub async fn drain(&self) -> Result<()> {
        self.writer.drain().await
    }

    /// As [`StreamWriter::write_eof`] (half-close: reading goes on).
    pub fn write_eof(&self) {
        self.writer.write_eof();
    }

    /// As [`StreamWriter::is_closing`].
    pub fn is_closing(&self) -> bool {
        self.writer.is_closing()
    }

    /// As [`StreamWriter::wait_closed`].
    ///
    /// # Errors
    ///
    /// As [`StreamWriter::wait_closed`].
    pub async fn wait_closed(&self) -> Result<()> {
        self.writer.wait_closed().await
    }

    /// The peer's IP address (TCP).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.writer.peer_addr()
    }

    /// The underlying transport.
    pub fn transport(&self) -> &Transport {
        self.writer.transport()
    }
}

impl From<(StreamReader, StreamWriter)> for DuplexStream {
    fn from((reader, writer): (StreamReader, StreamWriter)) -> DuplexStream {
        DuplexStream::unsplit(reader, writer)
    }
}

impl fmt::Debug for DuplexStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuplexStream").field("reader", &self.reader).field("writer", &self.writer).finish()
    }
}

impl futures_io::AsyncRead for DuplexStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, out)
    }
}

impl futures_io::AsyncBufRead for DuplexStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt);
    }
}

impl futures_io::AsyncWrite for DuplexStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}

/// Connects to `host:port` and returns the connection as one
/// [`DuplexStream`] ([`open_connection`] joined).
///
/// # Errors
///
/// As [`open_connection`].
///
/// # Panics
///
/// As [`open_connection`].
pub async fn open_stream(host: &str, port: u16, options: StreamConnectOptions) -> Result<DuplexStream> {
    open_connection(host, port, options).await.map(DuplexStream::from)
}

/// Connects to the Unix socket at `path` ([`open_unix_connection`] joined).
///
/// # Errors
///
/// As [`open_unix_connection`].
///
/// # Panics
///
/// As [`open_unix_connection`].
pub async fn open_unix_stream(path: impl AsRef<Path>, options: StreamConnectOptions) -> Result<DuplexStream> {
    open_unix_connection(path, options).await.map(DuplexStream::from)
}

/// A [`DuplexStream`] over a stream socket the caller connected
/// ([`open_connection_from_socket`] joined).
///
/// # Errors
///
/// As [`open_connection_from_socket`].
///
/// # Panics
///
/// As [`open_connection_from_socket`].
pub async fn open_stream_from_socket(
    socket: impl Into<socket2::Socket>,
    options: StreamConnectOptions,
) -> Result<DuplexStream> {
    open_connection_from_socket(socket, options).await.map(DuplexStream::from)
}

/// Adapts a handler taking one [`DuplexStream`] to the `(reader, writer)`
/// handler that [`start_server`](super::start_server),
/// [`start_unix_server`](super::start_unix_server) and
/// [`start_server_from_socket`](super::start_server_from_socket) take, so
/// every server function serves either kind of handler.
///
/// # Examples
///
/// See [`DuplexStream`].
pub fn duplex_handler<F, Fut>(handler: F) -> impl Fn(StreamReader, StreamWriter) -> Fut + 'static
where
    F: Fn(DuplexStream) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    move |reader, writer| handler(DuplexStream::unsplit(reader, writer))
}

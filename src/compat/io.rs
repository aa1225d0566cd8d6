//! hyper's `rt::Read`/`rt::Write` for the stream types, on their
//! `futures-io` implementations.
//!
//! Reads copy from the reader's buffer straight into hyper's
//! (`poll_fill_buf` + `put_slice` + `consume`: one copy, no `unsafe`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_io::{AsyncBufRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

use crate::{DuplexStream, StreamReader, StreamWriter};

/// Moves as much buffered data as fits into `buf`; an empty fill at EOF
/// leaves `buf` untouched, which is how hyper reads EOF.
fn read_buffered<R: AsyncBufRead + Unpin>(
    mut reader: Pin<&mut R>,
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    let n = {
        let available = ready!(reader.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        n
    };
    reader.consume(n);
    Poll::Ready(Ok(()))
}

impl hyper::rt::Read for DuplexStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        read_buffered(self, cx, buf)
    }
}

impl hyper::rt::Read for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        read_buffered(self, cx, buf)
    }
}

/// `poll_shutdown` is `poll_close`: the connection is closed once the
/// buffered bytes are sent (a half-close is [`StreamWriter::write_eof`]).
impl hyper::rt::Write for DuplexStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(self, cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(self, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_close(self, cx)
    }
}

/// As for [`DuplexStream`].
impl hyper::rt::Write for StreamWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(self, cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(self, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_close(self, cx)
    }
}

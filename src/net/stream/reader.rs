//! [`StreamReader`]: the reading half of a stream.
//!
//! Invariant: `buffered` counts every unread byte (the protocol's
//! `incoming` plus the reader's own buffer), and flow control pauses the
//! transport above 2 × `limit` and resumes it at `limit` (or when a read
//! needs more than is buffered); an exception set on the reader is
//! returned by every read before any buffered data, as in asyncio.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::DEFAULT_LIMIT;
use crate::error::{Error, Result};
use crate::net::Transport;

/// What the protocol shares with the reader.
pub(super) struct ReaderShared {
    /// Bytes received and not yet moved into the reader's own buffer.
    pub(super) incoming: RefCell<Vec<u8>>,
    /// Unread bytes in total (incoming plus the reader's buffer).
    pub(super) buffered: Cell<usize>,
    pub(super) limit: usize,
    pub(super) eof: Cell<bool>,
    pub(super) error: RefCell<Option<Error>>,
    /// `error` is set: what every read tests first, so one load.
    failed: Cell<bool>,
    pub(super) waker: RefCell<Option<Waker>>,
    pub(super) transport: RefCell<Option<Transport>>,
    /// Reading from the transport is paused by flow control.
    pub(super) paused: Cell<bool>,
}

impl ReaderShared {
    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(super) fn feed_data(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.incoming.borrow_mut().extend_from_slice(data);
        self.received(data.len());
    }

    /// `n` more bytes are in `incoming`: wake the reader, apply flow control.
    pub(super) fn received(&self, n: usize) {
        self.buffered.set(self.buffered.get() + n);
        self.wake();
        if !self.paused.get() && self.buffered.get() > 2 * self.limit {
            let transport = self.transport.borrow().clone();
            if let Some(t) = transport {
                self.paused.set(true);
                t.pause_reading();
            }
        }
    }

    pub(super) fn feed_eof(&self) {
        self.eof.set(true);
        self.wake();
    }

    pub(super) fn set_error(&self, e: Error) {
        *self.error.borrow_mut() = Some(e);
        self.failed.set(true);
        self.wake();
    }

    /// Resumes reading once the buffer is down to the limit (or when the
    /// reader must wait for more than is buffered: `force`).
    fn maybe_resume(&self, force: bool) {
        if self.paused.get() && (force || self.buffered.get() <= self.limit) {
            self.paused.set(false);
            let transport = self.transport.borrow().clone();
            if let Some(t) = transport {
                t.resume_reading();
            }
        }
    }
}

/// The reading half of a stream connection (asyncio's `StreamReader`).
///
/// Read methods take `&mut self`, so only one read can be pending at a
/// time: a second concurrent read on the same reader does not compile.
///
/// ```compile_fail
/// # async fn two(reader: &mut evloop::StreamReader) {
/// let a = reader.read(10);
/// let b = reader.read(10); // error: `*reader` borrowed mutably twice
/// let _ = (a.await, b.await);
/// # }
/// ```
///
/// # Examples
///
/// ```
/// let mut reader = evloop::StreamReader::new();
/// reader.feed_data(b"hello\nworld");
/// reader.feed_eof();
/// let lines = evloop::run(async move {
///     let first = reader.readline().await?;
///     let rest = reader.read_to_end().await?;
///     Ok::<_, evloop::Error>((first, rest))
/// })??;
/// assert_eq!(lines, (b"hello\n".to_vec(), b"world".to_vec()));
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct StreamReader {
    pub(super) shared: Rc<ReaderShared>,
    buf: Vec<u8>,
    pos: usize,
}

impl Default for StreamReader {
    fn default() -> StreamReader {
        StreamReader::with_limit(DEFAULT_LIMIT)
    }
}

impl StreamReader {
    /// A reader with no transport and the default limit, to be fed with
    /// [`feed_data`](StreamReader::feed_data) (tests, adapters).
    pub fn new() -> StreamReader {
        StreamReader::default()
    }

    /// A reader with the given buffer limit.
    ///
    /// # Panics
    ///
    /// If `limit` is 0.
    pub fn with_limit(limit: usize) -> StreamReader {
        assert!(limit > 0, "the stream limit must be positive");
        StreamReader {
            shared: Rc::new(ReaderShared {
                incoming: RefCell::new(Vec::new()),
                buffered: Cell::new(0),
                limit,
                eof: Cell::new(false),
                error: RefCell::new(None),
                failed: Cell::new(false),
                waker: RefCell::new(None),
                transport: RefCell::new(None),
                paused: Cell::new(false),
            }),
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// The buffer limit.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Appends bytes as if they had been received.
    pub fn feed_data(&self, data: &[u8]) {
        self.shared.feed_data(data);
    }

    /// Marks the end of the stream.
    pub fn feed_eof(&self) {
        self.shared.feed_eof();
    }

    /// Makes pending and later reads fail with `error`, even if data is
    /// still buffered (asyncio's `set_exception`: every read method raises
    /// it first).
    pub fn set_exception(&self, error: Error) {
        self.shared.set_error(error);
    }

    /// Whether EOF was received and everything before it has been read.
    pub fn at_eof(&self) -> bool {
        self.shared.eof.get() && self.shared.buffered.get() == 0
    }

    /// Unread bytes buffered.
    pub fn buffered(&self) -> usize {
        self.shared.buffered.get()
    }

    /// Moves what the protocol received into the reader's own buffer.
    fn pull(&mut self) {
        let mut incoming = self.shared.incoming.borrow_mut();
        if incoming.is_empty() {
            return;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            std::mem::swap(&mut self.buf, &mut incoming);
        } else {
            if self.pos > 0 && self.pos >= self.buf.len() / 2 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            self.buf.extend_from_slice(&incoming);
            incoming.clear();
        }
    }

    /// The unread bytes, after pulling in what arrived.
    fn data(&mut self) -> &[u8] {
        self.pull();
        &self.buf[self.pos..]
    }

    /// Drops `n` bytes from the front and lets flow control resume.
    fn consume_bytes(&mut self, n: usize) {
        self.pos += n;
        self.shared.buffered.set(self.shared.buffered.get() - n);
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.shared.maybe_resume(false);
    }

    fn take_bytes(&mut self, n: usize) -> Vec<u8> {
        self.pull();
        if n > 0 && self.pos == 0 && n == self.buf.len() && n >= self.buf.capacity() / 2 {
            // Everything buffered goes out and the buffer is not mostly
            // slack: hand over the buffer itself instead of copying it.
            let out = std::mem::take(&mut self.buf);
            self.shared.buffered.set(self.shared.buffered.get() - n);
            self.shared.maybe_resume(false);
            return out;
        }
        let out = self.data()[..n].to_vec();
        self.consume_bytes(n);
        out
    }

    /// The exception, if one is set. Every read checks it first, so the
    /// common case (none) is kept to one test.
    #[inline]
    fn take_error(&self) -> Option<Error> {
        if !self.shared.failed.get() {
            return None;
        }
        self.shared.error.borrow().as_ref().cloned()
    }

    /// Waits until something new arrives (data, EOF or an error).
    fn poll_wait(&mut self, cx: &mut Context<'_>, seen: usize) -> Poll<()> {
        if self.shared.buffered.get() != seen || self.shared.eof.get() || self.shared.failed.get() {
            return Poll::Ready(());
        }
        // Waiting for more than is buffered: reading must go on even if
        // flow control paused it, or this would never complete.
        self.shared.maybe_resume(true);
        let mut waker = self.shared.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    async fn wait_for_data(&mut self) {
        let seen = self.shared.buffered.get();
        poll_fn(|cx| self.poll_wait(cx, seen)).await;
    }

    /// Reads at most `n` bytes: whatever is buffered, or waits for the next
    /// data to arrive. An empty result means EOF (or `n == 0`).
    ///
    /// # Errors
    ///
    /// The connection's error (or the one given to
    /// [`set_exception`](StreamReader::set_exception)), even with data
    /// still buffered: like every read method, as in asyncio.
    pub async fn read(&mut self, n: usize) -> Result<Vec<u8>> {
        loop {
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            if n == 0 {
                return Ok(Vec::new());
            }
            let available = self.data().len();
            if available > 0 {
                return Ok(self.take_bytes(available.min(n)));
            }
            if self.shared.eof.get() {
                return Ok(Vec::new());
            }
            self.wait_for_data().await;
        }
    }

    /// Reads until EOF (asyncio's `read(-1)`).
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            if self.shared.eof.get() {
                let n = self.data().len();
                return Ok(self.take_bytes(n));
            }
            self.wait_for_data().await;
        }
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::IncompleteRead`] with the bytes read if EOF comes first
    /// (they are removed from the buffer); the connection's error.
    pub async fn readexactly(&mut self, n: usize) -> Result<Vec<u8>> {
        loop {
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            let available = self.data().len();
            if available >= n {
                return Ok(self.take_bytes(n));
            }
            if self.shared.eof.get() {
                let partial = self.take_bytes(available);
                return Err(Error::IncompleteRead { partial, expected: Some(n) });
            }
            self.wait_for_data().await;
        }
    }

    /// Reads up to and including `separator` (asyncio's `readuntil`).
    ///
    /// # Errors
    ///
    /// [`Error::LimitOverrun`] if the separator is not within `limit`
    /// bytes — the data stays in the buffer; [`Error::IncompleteRead`] with
    /// everything buffered if EOF comes first; the connection's error.
    ///
    /// # Panics
    ///
    /// If `separator` is empty.
    pub async fn readuntil(&mut self, separator: &[u8]) -> Result<Vec<u8>> {
        assert!(!separator.is_empty(), "the separator must not be empty");
        let limit = self.shared.limit;
        let mut offset = 0;
        let found = loop {
            if let Some(e) = self.take_error() {
                return Err(e);
            }
            let data = self.data();
            if data.len() >= offset + separator.len() {
                if let Some(i) = find(&data[offset..], separator) {
                    break offset + i;
                }
                // Next time, search only what is new (keeping an overlap in
                // case the separator straddles two chunks).
                offset = data.len() + 1 - separator.len();
                if offset > limit {
                    return Err(Error::LimitOverrun { consumed: offset });
                }
            }
            if self.shared.eof.get() {
                let n = self.data().len();
                let partial = self.take_bytes(n);
                return Err(Error::IncompleteRead { partial, expected: None });
            }
            self.wait_for_data().await;
        };
        if found > limit {
            return Err(Error::LimitOverrun { consumed: found });
        }
        Ok(self.take_bytes(found + separator.len()))
    }

    /// Reads one line, `\n` included (asyncio's `readline`). At EOF it
    /// returns what is left, possibly without `\n`, and then empty lines.
    ///
    /// # Errors
    ///
    /// [`Error::LimitOverrun`] if the line is longer than the limit; as in
    /// asyncio the overlong line is then discarded from the buffer (up to and
    /// including its `\n` if it has arrived, else everything buffered). The
    /// connection's error.
    pub async fn readline(&mut self) -> Result<Vec<u8>> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(Error::IncompleteRead { partial, .. }) => Ok(partial),
            Err(Error::LimitOverrun { consumed }) => {
                let data = self.data();
                let drop_n = if data.get(consumed) == Some(&b'\n') { consumed + 1 } else { data.len() };
                self.consume_bytes(drop_n);
                Err(Error::LimitOverrun { consumed })
            }
            Err(e) => Err(e),
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => memchr::memchr(*byte, haystack),
        _ => memchr::memmem::find(haystack, needle),
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("buffered", &self.buffered())
            .field("limit", &self.shared.limit)
            .field("eof", &self.shared.eof.get())
            .field("paused", &self.shared.paused.get())
            .finish()
    }
}

impl futures_io::AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let data = match futures_io::AsyncBufRead::poll_fill_buf(Pin::new(&mut *this), cx) {
            Poll::Ready(Ok(data)) => data,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        this.consume_bytes(n);
        Poll::Ready(Ok(n))
    }
}

impl futures_io::AsyncBufRead for StreamReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if let Some(e) = this.take_error() {
            return Poll::Ready(Err(into_io(e)));
        }
        if this.data().is_empty() && !this.shared.eof.get() {
            // Nothing new since `seen`: this registers the waker.
            let seen = this.shared.buffered.get();
            if this.poll_wait(cx, seen).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(this.data()))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().consume_bytes(amt);
    }
}

/// An evloop error as an `io::Error` for the `futures-io` traits.
pub(super) fn into_io(e: Error) -> io::Error {
    match e {
        Error::Io(inner) => io::Error::new(inner.kind(), Error::Io(inner)),
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::find;

    /// The first match, the plain way.
    fn naive(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn find_agrees_with_a_plain_search() {
        // Small alphabet so separators occur, partially and often; lengths
        // around the SIMD widths (16, 32, 64 bytes).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let needles: [&[u8]; 5] = [b"\n", b"\r\n", b"\r\n\r\n", b"ab", b"aba"];
        for len in 0..200 {
            for _ in 0..20 {
                let hay: Vec<u8> = (0..len).map(|_| b"ab\r\nx"[(next() % 5) as usize]).collect();
                for needle in needles {
                    assert_eq!(find(&hay, needle), naive(&hay, needle), "{hay:?} / {needle:?}");
                }
            }
        }
        assert_eq!(find(b"", b"\n"), None);
        assert_eq!(find(b"\n", b"\r\n"), None);
    }
}

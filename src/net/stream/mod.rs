//! asyncio's high-level streams: [`open_connection`] / [`start_server`] with
//! a [`StreamReader`] and a [`StreamWriter`], built on a
//! [`Protocol`](crate::net::Protocol) the way asyncio builds them:
//! `data_received` feeds the reader's buffer and wakes the task waiting in a
//! read; `pause_writing`/`resume_writing` gate [`StreamWriter::drain`].
//!
//! Flow control: when more than 2 × `limit` bytes are buffered unread, the
//! transport stops reading from the socket, and starts again once the
//! buffer is down to `limit`. A reader that needs more than is buffered
//! (say `readexactly` of a large block) resumes reading itself.
//!
//! Both halves also implement the `futures-io` traits (`AsyncRead`,
//! `AsyncBufRead`, `AsyncWrite`) so codecs and TLS crates built on them work
//! on evloop streams.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::net::protocol::ReadPath;
use crate::net::transport::READ_SIZE;
use crate::net::{Server, ServerOptions, StreamProtocol, Transport};
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use socket2::SockRef;

/// Default buffer limit of a stream (asyncio's 64 KiB).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// What the protocol shares with the reader.
struct ReaderShared {
    /// Bytes received and not yet moved into the reader's own buffer.
    incoming: RefCell<Vec<u8>>,
    /// Unread bytes in total (incoming plus the reader's buffer).
    buffered: Cell<usize>,
    limit: usize,
    eof: Cell<bool>,
    error: RefCell<Option<Error>>,
    waker: RefCell<Option<Waker>>,
    transport: RefCell<Option<Transport>>,
    /// Reading from the transport is paused by flow control.
    paused: Cell<bool>,
}

impl ReaderShared {
    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn feed_data(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.incoming.borrow_mut().extend_from_slice(data);
        self.received(data.len());
    }

    /// `n` more bytes are in `incoming`: wake the reader, apply flow control.
    fn received(&self, n: usize) {
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

    fn feed_eof(&self) {
        self.eof.set(true);
        self.wake();
    }

    fn set_error(&self, e: Error) {
        *self.error.borrow_mut() = Some(e);
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
    shared: Rc<ReaderShared>,
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

    fn take_error(&self) -> Option<Error> {
        self.shared.error.borrow().clone()
    }

    /// Waits until something new arrives (data, EOF or an error).
    fn poll_wait(&mut self, cx: &mut Context<'_>, seen: usize) -> Poll<()> {
        if self.shared.buffered.get() != seen || self.shared.eof.get() || self.shared.error.borrow().is_some()
        {
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|&b| b == needle[0]);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
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
fn into_io(e: Error) -> io::Error {
    match e {
        Error::Io(inner) => io::Error::new(inner.kind(), Error::Io(inner)),
        other => io::Error::other(other),
    }
}

/// What the protocol shares with the writer.
struct WriterShared {
    write_paused: Cell<bool>,
    drain_wakers: RefCell<Vec<Waker>>,
    /// `Some` once the connection is gone; the error, if any.
    lost: RefCell<Option<Option<Error>>>,
}

impl WriterShared {
    /// Queues `cx`'s waker for the next drain or connection loss.
    fn register(&self, cx: &Context<'_>) {
        let mut wakers = self.drain_wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }

    /// Ready once writing is not paused; the connection's error (or
    /// `gone` for a loss without one) once it is lost.
    fn poll_writable(&self, cx: &Context<'_>, gone: io::ErrorKind) -> Poll<Result<()>> {
        if let Some(lost) = &*self.lost.borrow() {
            return Poll::Ready(Err(lost.clone().unwrap_or_else(|| io::Error::from(gone).into())));
        }
        if !self.write_paused.get() {
            return Poll::Ready(Ok(()));
        }
        self.register(cx);
        Poll::Pending
    }

    fn wake_drainers(&self) {
        let wakers = std::mem::take(&mut *self.drain_wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }
}

type ClientConnected = Rc<dyn Fn(StreamReader, StreamWriter)>;

/// The protocol behind a stream pair (asyncio's `StreamReaderProtocol`).
struct StreamProtocolImpl {
    reader: Option<StreamReader>,
    reader_shared: Rc<ReaderShared>,
    writer: Rc<WriterShared>,
    on_connect: Option<ClientConnected>,
}

// Implemented directly (not through `Protocol`) to receive straight into
// the reader's buffer: one copy per byte fewer than `data_received`.
impl crate::net::protocol::sealed::Sealed for StreamProtocolImpl {}

impl StreamProtocol for StreamProtocolImpl {
    fn read_path(&self) -> ReadPath {
        ReadPath::Direct
    }

    fn receive(&mut self, socket: &socket2::Socket) -> io::Result<usize> {
        let shared = &self.reader_shared;
        let received = {
            let mut incoming = shared.incoming.borrow_mut();
            crate::sys::socket::recv_append(&SockRef::from(socket), &mut incoming, READ_SIZE)
        };
        if let Ok(n) = received
            && n > 0
        {
            shared.received(n);
        }
        received
    }

    fn get_buffer(&mut self, _: usize) -> Option<&mut [u8]> {
        None
    }

    fn buffer_updated(&mut self, _: usize) {}

    fn connection_made(&mut self, transport: &Transport) {
        *self.reader_shared.transport.borrow_mut() = Some(transport.clone());
        if let Some(on_connect) = self.on_connect.take()
            && let Some(reader) = self.reader.take()
        {
            let writer = StreamWriter {
                transport: transport.clone(),
                shared: self.writer.clone(),
                reader: Some(self.reader_shared.clone()),
            };
            on_connect(reader, writer);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.reader_shared.feed_data(data);
    }

    fn eof_received(&mut self) -> bool {
        self.reader_shared.feed_eof();
        // Keep the transport open: the writer may still send (half-close).
        true
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        match &error {
            None => self.reader_shared.feed_eof(),
            Some(e) => self.reader_shared.set_error(e.clone()),
        }
        self.reader_shared.transport.borrow_mut().take();
        *self.writer.lost.borrow_mut() = Some(error);
        self.writer.wake_drainers();
    }

    fn pause_writing(&mut self) {
        self.writer.write_paused.set(true);
    }

    fn resume_writing(&mut self) {
        self.writer.write_paused.set(false);
        self.writer.wake_drainers();
    }
}

/// The writing half of a stream connection (asyncio's `StreamWriter`).
/// Cheap to clone.
///
/// Dropping the reader and every writer handle does not close the
/// connection (the loop owns the transport); call
/// [`close`](StreamWriter::close) when done. A stream server's connection
/// is also closed when its handler task panics or is cancelled, and every
/// connection is closed when the loop is (so `evloop::run` leaves none
/// open).
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
    transport: Transport,
    shared: Rc<WriterShared>,
    reader: Option<Rc<ReaderShared>>,
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

fn stream_protocol(limit: usize, on_connect: Option<ClientConnected>) -> StreamProtocolImpl {
    let reader = StreamReader::with_limit(limit);
    StreamProtocolImpl {
        reader_shared: reader.shared.clone(),
        reader: Some(reader),
        writer: Rc::new(WriterShared {
            write_paused: Cell::new(false),
            drain_wakers: RefCell::new(Vec::new()),
            lost: RefCell::new(None),
        }),
        on_connect,
    }
}

fn split(
    transport: Transport,
    protocol: &Rc<RefCell<StreamProtocolImpl>>,
) -> Result<(StreamReader, StreamWriter)> {
    let mut p = protocol.borrow_mut();
    let reader = p.reader.take().ok_or(Error::InvalidState("the stream reader was already taken"))?;
    let writer = StreamWriter { transport, shared: p.writer.clone(), reader: Some(p.reader_shared.clone()) };
    Ok((reader, writer))
}

#[track_caller]
fn running_loop() -> EventLoop {
    match get_running_loop() {
        Ok(lp) => lp,
        Err(_) => panic!("stream functions must be awaited inside a task on a running evloop loop"),
    }
}

/// Options of [`open_connection`] and [`open_unix_connection`];
/// `Default::default()` gives asyncio's.
///
/// # Examples
///
/// ```
/// let opts = evloop::net::stream::ConnectOptions { limit: 1 << 20 };
/// assert_eq!(evloop::net::stream::ConnectOptions::default().limit, evloop::net::stream::DEFAULT_LIMIT);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The reader's buffer limit (default 64 KiB, asyncio's `limit`).
    pub limit: usize,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions { limit: DEFAULT_LIMIT }
    }
}

/// Connects to `host:port` and returns a reader/writer pair (asyncio's
/// `open_connection`).
///
/// # Errors
///
/// As [`EventLoop::create_connection`].
///
/// # Panics
///
/// When awaited outside a running loop, or if `options.limit` is 0.
///
/// # Examples
///
/// ```
/// let reply = evloop::run(async {
///     let server = evloop::start_server(
///         |mut reader, writer| async move {
///             let line = reader.readline().await.unwrap();
///             writer.write(&line).unwrap();
///             writer.close();
///         },
///         "127.0.0.1",
///         0,
///         Default::default(),
///     )
///     .await?;
///     let port = server.local_addr().unwrap().port();
///     let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
///     writer.write(b"hello\n")?;
///     let reply = reader.readline().await?;
///     server.close();
///     Ok::<_, evloop::Error>(reply)
/// })??;
/// assert_eq!(reply, b"hello\n");
/// # Ok::<(), evloop::Error>(())
/// ```
pub async fn open_connection(
    host: &str,
    port: u16,
    options: ConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = running_loop();
    let limit = options.limit;
    let (transport, protocol) =
        lp.create_connection(move || stream_protocol(limit, None), host, port).await?;
    split(transport, &protocol)
}

/// Connects to the Unix socket at `path` (asyncio's
/// `open_unix_connection`).
///
/// # Errors
///
/// As [`EventLoop::create_unix_connection`].
///
/// # Panics
///
/// When awaited outside a running loop, or if `options.limit` is 0.
pub async fn open_unix_connection(
    path: impl AsRef<Path>,
    options: ConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = running_loop();
    let limit = options.limit;
    let (transport, protocol) = lp.create_unix_connection(move || stream_protocol(limit, None), path).await?;
    split(transport, &protocol)
}

/// Options of [`start_server`] and [`start_unix_server`];
/// `Default::default()` gives asyncio's.
#[derive(Debug, Clone)]
pub struct StreamServerOptions {
    /// The readers' buffer limit (default 64 KiB).
    pub limit: usize,
    /// The listening socket's options.
    pub server: ServerOptions,
}

impl Default for StreamServerOptions {
    fn default() -> StreamServerOptions {
        StreamServerOptions { limit: DEFAULT_LIMIT, server: ServerOptions::default() }
    }
}

/// The protocol factory of a stream server: a reader/writer pair per
/// connection, handed to `client_connected` in its own task.
fn server_protocol_factory<F, Fut>(
    lp: &EventLoop,
    client_connected: F,
    limit: usize,
) -> impl Fn() -> StreamProtocolImpl + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let on_connect = connected_callback(lp, client_connected);
    move || stream_protocol(limit, Some(on_connect.clone()))
}

fn connected_callback<F, Fut>(lp: &EventLoop, client_connected: F) -> ClientConnected
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // Weak: the server holds this callback, and the loop may hold the
    // server (a task awaiting serve_forever).
    let lp = lp.downgrade();
    let client_connected = Rc::new(client_connected);
    Rc::new(move |reader, writer: StreamWriter| {
        let transport = writer.transport().clone();
        // Each connection is its own task, as in asyncio. The user's closure
        // is called inside the task, not here in `connection_made`, where
        // the transport's protocol is borrowed.
        let handler = client_connected.clone();
        // The connection is being made on this loop, so it exists.
        let task = lp.get().create_task(async move { handler(reader, writer).await });
        // asyncio (`StreamReaderProtocol`): a handler task that panics or
        // is cancelled closes its connection, and a panic is reported.
        // Without this the peer waited forever on a connection nobody
        // owned, and the panic went unseen.
        task.add_done_callback(move |task| {
            let failed = match task.exception() {
                Ok(Some(e)) => {
                    let ctx =
                        ExceptionContext::new("unhandled panic in a stream server's client_connected task")
                            .with_error(e)
                            .with_task(task.name());
                    task.get_loop().call_exception_handler(&ctx);
                    true
                }
                _ => task.cancelled(),
            };
            if failed {
                transport.close();
            }
        });
    })
}

/// Starts a server on `host:port` that runs `client_connected(reader,
/// writer)` as a new task for each connection (asyncio's `start_server`).
/// An empty `host` listens on every interface. If a connection's task
/// panics or is cancelled, its connection is closed, and a panic is passed
/// to the loop's exception handler.
///
/// # Errors
///
/// As [`EventLoop::create_server`].
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn start_server<F, Fut>(
    client_connected: F,
    host: &str,
    port: u16,
    options: StreamServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = running_loop();
    let factory = server_protocol_factory(&lp, client_connected, options.limit);
    lp.create_server(factory, host, port, options.server).await
}

/// Starts a Unix-socket server at `path` (asyncio's `start_unix_server`).
///
/// # Errors
///
/// As [`EventLoop::create_unix_server`].
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn start_unix_server<F, Fut>(
    client_connected: F,
    path: impl AsRef<Path>,
    options: StreamServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = running_loop();
    let factory = server_protocol_factory(&lp, client_connected, options.limit);
    lp.create_unix_server(factory, path, options.server).await
}

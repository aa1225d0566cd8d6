//! Stream transports (asyncio's `_SelectorSocketTransport`) for TCP and Unix
//! sockets, on the shared [transport core](crate::net::core).
//!
//! A transport owns its socket and registers it with the loop as a
//! transport-owned Source, held by generation (user `add_reader` on it is
//! refused; see the [transport core](crate::net::core)). The Source is
//! level-triggered: an edge-triggered one was measured and not adopted
//! (see the core's docs). Reading takes
//! the path the protocol's kind picks once, at creation: the loop's shared
//! receive buffer and `data_received`, a [`BufferedProtocol`]'s own buffer,
//! or the streams' direct receive. Writing: `write` sends at once when
//! nothing is buffered and keeps only what the socket did not take; a
//! writer callback flushes the rest. Closing: the socket is unregistered,
//! `connection_lost` runs (through `call_soon`, never inside a transport
//! method), then the socket and the protocol are dropped.
//!
//! [`BufferedProtocol`]: crate::net::BufferedProtocol

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Waker;

use socket2::{SockAddr, SockRef, Socket};

use crate::error::{Error, Result};
use crate::net::core::{self, Core, Lifecycle, TransportKind};
use crate::net::protocol::{ReadPath, StreamProtocol};
use crate::net::server::ServerLink;
use crate::net::sock::send_nosignal;
use crate::runtime::event_loop::EventLoop;

/// Default high-water mark of the write buffer (asyncio's 64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low-water mark: a quarter of the high one (asyncio's rule).
pub const DEFAULT_LOW_WATER: usize = DEFAULT_HIGH_WATER / 4;
/// How much one read asks for (asyncio's `max_size`).
pub(crate) const READ_SIZE: usize = 256 * 1024;
/// At most this many receives per readiness event (libuv reads up to 32
/// times while each fills its buffer; asyncio once).
pub(crate) const READS_PER_EVENT: usize = 4;

thread_local! {
    /// One receive buffer shared by every transport of the thread's loop:
    /// reads happen one at a time, so 10k connections need one buffer, not
    /// 10k. (A loop belongs to one thread, so per-thread is per-loop.)
    static READ_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Lends out the shared receive buffer (a fresh one if it is already lent).
pub(crate) fn take_read_buffer() -> Vec<u8> {
    let buf = READ_BUF.with(|b| b.take());
    if buf.len() >= READ_SIZE { buf } else { vec![0; READ_SIZE] }
}

/// Returns the buffer lent by [`take_read_buffer`].
pub(crate) fn put_read_buffer(buf: Vec<u8>) {
    READ_BUF.with(|b| b.set(buf));
}

/// Bytes accepted by `write` that the socket has not taken yet.
#[derive(Default)]
struct WriteBuffer {
    data: Vec<u8>,
    /// Bytes at the front of `data` already sent.
    sent: usize,
}

impl WriteBuffer {
    fn len(&self) -> usize {
        self.data.len() - self.sent
    }
    fn pending(&self) -> &[u8] {
        &self.data[self.sent..]
    }
    fn consume(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.data.len() {
            self.data.clear();
            self.sent = 0;
            if self.data.capacity() > 4 * READ_SIZE {
                self.data.shrink_to(READ_SIZE);
            }
        } else if self.sent > self.data.len() / 2 && self.sent > 64 * 1024 {
            // Move the tail to the front now and then, so a slow peer does
            // not make the buffer grow without bound.
            self.data.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// The read side: the peer's EOF and the user's pause are independent
/// (a pause after EOF must not make `resume_reading` read again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadSide {
    Reading,
    Paused,
    /// The peer's EOF was read: reading never restarts.
    AtEof,
    AtEofPaused,
}

/// Which end of a pipe a transport is ([`crate::os::pipe`]); sockets are
/// `NotPipe`. A pipe reads and writes with `read(2)`/`write(2)`, reads or
/// writes only, and a write pipe's reader callback watches for its peer
/// closing instead of reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeEnd {
    NotPipe,
    Read,
    Write,
}

/// The write side's half-close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    Open,
    /// `write_eof()` was called; the shutdown waits for the buffer.
    EofPending,
    EofSent,
}

pub(crate) struct StreamInner {
    core: Core<dyn StreamProtocol>,
    /// A `Cell`: `set_protocol` and `start_tls` swap the protocol (and its
    /// read path).
    read_path: Cell<ReadPath>,
    read_side: Cell<ReadSide>,
    write_side: Cell<WriteSide>,
    write_buf: RefCell<WriteBuffer>,
    is_tcp: bool,
    /// `EventLoop::sendfile` owns the socket for now: `write` is refused.
    pub(crate) sendfile_active: Cell<bool>,
    /// The server that accepted the connection, told once it is gone.
    server: Cell<Option<ServerLink>>,
    /// Set once, right after `start`, for pipe transports.
    pub(crate) pipe: Cell<PipeEnd>,
}

impl TransportKind for StreamInner {
    type Protocol = dyn StreamProtocol;

    fn core(&self) -> &Core<dyn StreamProtocol> {
        &self.core
    }

    fn discard_buffered(&self) {
        let dropped = std::mem::take(&mut *self.write_buf.borrow_mut());
        drop(dropped);
    }

    fn flush_without_waiting(&self) {
        // Errors are the caller's to learn: it is closing the transport.
        let _ = self.send_buffered();
    }

    fn before_lost(&self) {
        self.wake_empty_waiters();
    }

    fn after_lost(&self) {
        if let Some(server) = self.server.take() {
            server.connection_gone();
        }
    }
}

/// The write/control side of a stream connection (asyncio's
/// `asyncio.Transport`), handed to the protocol in `connection_made`.
/// Cheap to clone.
///
/// Keeping a clone in the protocol (as below) is the usual pattern and
/// frees nothing late: once `connection_lost` has run, the transport drops
/// its protocol and socket. Closing the loop closes every transport still
/// open, with `connection_lost(Some(Error::Closed))`.
///
/// # Examples
///
/// ```
/// use evloop::net::{Protocol, Transport};
///
/// /// Answers every message with its length, then hangs up.
/// struct Count(Option<Transport>);
///
/// impl Protocol for Count {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         let t = self.0.as_ref().unwrap();
///         t.write(format!("{}\n", data.len()).as_bytes()).unwrap();
///         t.close(); // flushes the reply first
///     }
/// }
///
/// let lp = evloop::EventLoop::new()?;
/// let l = lp.clone();
/// let reply = lp.run_until_complete(async move {
///     let server = l.create_server(|| Count(None), "127.0.0.1", 0, Default::default()).await?;
///     let port = server.local_addr().unwrap().port();
///     let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
///     writer.write(b"hello")?;
///     let reply = reader.read_to_end().await?;
///     server.close();
///     Ok::<_, evloop::Error>(reply)
/// })??;
/// assert_eq!(reply, b"5\n");
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Transport {
    /// The socket's transport (for a TLS transport, the one carrying the
    /// ciphertext: addresses and the fd come from it).
    pub(crate) inner: Rc<StreamInner>,
    /// Set on the application side of a TLS connection: the stream
    /// methods then act on the TLS layer (`net/tls`). One pointer test per
    /// call on the plain path.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Rc<crate::net::tls::TlsSession>>,
}

/// On a TLS transport, answers the call from the TLS layer instead.
macro_rules! via_tls {
    ($self:ident, $tls:ident => $e:expr) => {
        #[cfg(feature = "tls")]
        if let Some($tls) = &$self.tls {
            return $e;
        }
    };
}

impl Transport {
    /// Wraps a connected nonblocking socket, registers it with the loop and
    /// schedules `connection_made`. The protocol is returned shared so
    /// callers can reach it.
    pub(crate) fn start<P: StreamProtocol>(
        lp: &EventLoop,
        socket: Socket,
        protocol: P,
        server: Option<ServerLink>,
        made: Option<crate::Future<()>>,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        socket.set_nonblocking(true)?;
        let read_path = protocol.read_path();
        let protocol = Rc::new(RefCell::new(protocol));
        let fd = socket.as_raw_fd();
        let is_tcp = socket.local_addr().map(|a| a.is_ipv4() || a.is_ipv6()).unwrap_or(false);
        if is_tcp {
            // asyncio turns Nagle off on its TCP transports.
            let _ = socket.set_tcp_nodelay(true);
        }
        let shared: Rc<RefCell<dyn StreamProtocol>> = protocol.clone();
        let inner = Rc::new(StreamInner {
            core: Core::new(lp, fd, socket, shared)?,
            read_path: Cell::new(read_path),
            read_side: Cell::new(ReadSide::Reading),
            write_side: Cell::new(WriteSide::Open),
            write_buf: RefCell::new(WriteBuffer::default()),
            is_tcp,
            sendfile_active: Cell::new(false),
            server: Cell::new(server),
            pipe: Cell::new(PipeEnd::NotPipe),
        });
        core::register_closer(&inner);
        let transport = Transport::plain(inner);
        // asyncio: connection_made first, then start reading, both on the
        // next pass.
        let t = transport.clone();
        lp.call_soon(move || t.inner.made(made, &t));
        Ok((transport, protocol))
    }

    /// Queues `data` for sending. Sends at once if nothing is buffered;
    /// buffers what the socket does not take and flushes it as the socket
    /// drains. Crossing the high-water mark calls the protocol's
    /// `pause_writing`. I/O errors close the transport and reach the
    /// protocol's `connection_lost`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] after [`write_eof`](Transport::write_eof) or
    /// [`close`](Transport::close), or while
    /// [`sendfile`](EventLoop::sendfile) runs on the transport.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        via_tls!(self, tls => tls.write(data));
        self.inner.check_writable()?;
        self.inner.write(data);
        Ok(())
    }

    /// Writes every buffer of `chunks`, in order (asyncio's `writelines`).
    ///
    /// # Errors
    ///
    /// As [`write`](Transport::write), even when `chunks` is empty.
    pub fn writelines<I>(&self, chunks: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        via_tls!(self, tls => tls.writelines(chunks));
        self.inner.check_writable()?;
        for chunk in chunks {
            self.write(chunk.as_ref())?;
        }
        Ok(())
    }

    /// Closes the write side once the buffer is flushed (half-close); the
    /// peer sees EOF and can still send. Does nothing on a TLS transport
    /// (see [`can_write_eof`](Transport::can_write_eof)).
    pub fn write_eof(&self) {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return;
        }
        let inner = &self.inner;
        match inner.pipe.get() {
            // A pipe has no half-close: its write end closes (asyncio).
            PipeEnd::Write => return self.close(),
            PipeEnd::Read => return,
            PipeEnd::NotPipe => {}
        }
        if inner.core.is_closing() || inner.write_side.get() != WriteSide::Open {
            return;
        }
        inner.write_side.set(WriteSide::EofPending);
        if inner.write_buf.borrow().len() == 0 {
            inner.shutdown_write();
        }
    }

    /// Whether [`write_eof`](Transport::write_eof) is supported: true for
    /// TCP and Unix stream sockets and write pipes, false for read pipes
    /// and over TLS (as asyncio's SSL transport: TLS has no half-close
    /// that peers agree on).
    pub fn can_write_eof(&self) -> bool {
        via_tls!(self, _tls => false);
        self.inner.pipe.get() != PipeEnd::Read
    }

    /// Closes the transport: stops reading now, sends what is buffered, then
    /// calls the protocol's `connection_lost(None)` (on a later pass) and
    /// closes the socket. Calling it again does nothing. Over TLS, the
    /// plaintext is flushed, then `close_notify` is sent; a peer that does
    /// not take it within the shutdown timeout is cut off.
    pub fn close(&self) {
        via_tls!(self, tls => tls.close());
        let inner = &self.inner;
        if !inner.core.start_closing() {
            return;
        }
        inner.core.unwatch_read();
        if inner.write_buf.borrow().len() == 0 {
            core::connection_lost(inner, None);
        }
    }

    /// Closes the transport at once, dropping buffered data; the protocol
    /// gets `connection_lost(None)` on a later pass. Over TLS no
    /// `close_notify` is sent.
    pub fn abort(&self) {
        via_tls!(self, tls => tls.abort());
        core::force_close(&self.inner, None);
    }

    /// Whether the transport is closing or closed.
    pub fn is_closing(&self) -> bool {
        via_tls!(self, tls => tls.is_closing());
        self.inner.core.is_closing()
    }

    /// Stops calling `data_received` until
    /// [`resume_reading`](Transport::resume_reading). No-op if already
    /// paused or closing.
    pub fn pause_reading(&self) {
        // Lazily: the reader stays registered, and `on_readable`
        // unregisters it only if the fd reports readable while paused. A
        // pause that is resumed before the next readiness (a stream
        // reader's flow control, every 256 KiB read) costs no epoll_ctl.
        via_tls!(self, tls => tls.pause_reading());
        let inner = &self.inner;
        // A write pipe's reader callback watches for the peer closing.
        if inner.core.is_closing() || inner.pipe.get() == PipeEnd::Write {
            return;
        }
        match inner.read_side.get() {
            ReadSide::Reading => inner.read_side.set(ReadSide::Paused),
            ReadSide::AtEof => inner.read_side.set(ReadSide::AtEofPaused),
            ReadSide::Paused | ReadSide::AtEofPaused => {}
        }
    }

    /// Resumes reading after [`pause_reading`](Transport::pause_reading).
    pub fn resume_reading(&self) {
        via_tls!(self, tls => tls.resume_reading());
        let inner = &self.inner;
        if inner.core.is_closing() {
            return;
        }
        match inner.read_side.get() {
            ReadSide::Paused => {
                inner.read_side.set(ReadSide::Reading);
                inner.watch_read();
            }
            ReadSide::AtEofPaused => inner.read_side.set(ReadSide::AtEof),
            ReadSide::Reading | ReadSide::AtEof => {}
        }
    }

    /// Whether the transport is reading (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        via_tls!(self, tls => tls.is_reading());
        !self.inner.core.is_closing()
            && self.inner.pipe.get() != PipeEnd::Write
            && matches!(self.inner.read_side.get(), ReadSide::Reading | ReadSide::AtEof)
    }

    /// Bytes accepted by `write` and not yet sent (over TLS: plaintext
    /// waiting for the handshake plus ciphertext not yet sent).
    pub fn get_write_buffer_size(&self) -> usize {
        via_tls!(self, tls => tls.get_write_buffer_size());
        self.inner.write_buf.borrow().len()
    }

    /// Sets the write buffer's high- and low-water marks (asyncio's rules:
    /// only `high` given → low = high / 4; only `low` → high = 4 × low;
    /// neither → 64 KiB and 16 KiB). May pause or resume the protocol at
    /// once (never after it got `connection_lost`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if `low > high`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let (high, low) = match (high, low) {
            (None, None) => (DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER),
            (Some(h), None) => (h, h / 4),
            (None, Some(l)) => (l.saturating_mul(4), l),
            (Some(h), Some(l)) => (h, l),
        };
        if low > high {
            return Err(Error::InvalidState("the low-water mark must not exceed the high-water mark"));
        }
        via_tls!(self, tls => {
            tls.set_write_buffer_limits(high, low);
            Ok(())
        });
        let inner = &self.inner;
        inner.core.set_limits(high, low);
        let buffered = inner.write_buf.borrow().len();
        core::maybe_pause(inner, buffered);
        core::maybe_resume(inner, buffered);
        Ok(())
    }

    /// The write buffer's `(low, high)` water marks, as asyncio orders them.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        via_tls!(self, tls => tls.get_write_buffer_limits());
        (self.inner.core.low_water(), self.inner.core.high_water())
    }

    /// The peer's IP address, for a TCP transport (`None` once closed).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_sockaddr().ok().and_then(|a| a.as_socket())
    }

    /// The local IP address, for a TCP transport (`None` once closed).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_sockaddr().ok().and_then(|a| a.as_socket())
    }

    /// The peer's address, any family (Unix sockets included).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `getpeername`, or [`Error::InvalidState`] ("the
    /// transport is closed") once the socket is closed.
    pub fn peer_sockaddr(&self) -> Result<SockAddr> {
        self.inner.core.with_socket(|s| s.peer_addr())
    }

    /// The local address, any family.
    ///
    /// # Errors
    ///
    /// As [`peer_sockaddr`](Transport::peer_sockaddr).
    pub fn local_sockaddr(&self) -> Result<SockAddr> {
        self.inner.core.with_socket(|s| s.local_addr())
    }

    /// The raw fd of the socket (while it is open).
    pub fn fd(&self) -> RawFd {
        self.inner.core.fd
    }

    /// Whether this is a TCP (not Unix) transport.
    pub fn is_tcp(&self) -> bool {
        self.inner.is_tcp
    }

    /// The loop the transport runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped (the transport holds it weakly).
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.inner.core.get_loop()
    }

    /// Hands the connection to `protocol` (asyncio's `set_protocol`, used
    /// for protocol upgrades): every later call (`data_received`,
    /// `eof_received`, `pause_writing`, `connection_lost`…) goes to it, and
    /// bytes not yet read are read for it, with its kind's read path. It
    /// does not get `connection_made` (as in asyncio): it is handed the
    /// connection in the middle; give it the transport yourself. Safe from
    /// inside a method of the old protocol: the switch applies from the
    /// next call on. The old protocol is dropped once the transport no
    /// longer needs it (at once, or on the next pass if one of its methods
    /// is running), unless you keep its `Rc`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once `connection_lost` has run (the
    /// transport keeps no protocol then); `protocol` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{Protocol, Transport};
    ///
    /// /// Waits for "UPGRADE\n", then hands the connection to `Shout`.
    /// struct Plain(Option<Transport>);
    /// impl Protocol for Plain {
    ///     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         if data == b"UPGRADE\n" {
    ///             let t = self.0.take().unwrap();
    ///             t.set_protocol(Shout(t.clone())).unwrap();
    ///             t.write(b"ok\n").unwrap(); // the client waits for this
    ///         }
    ///     }
    /// }
    /// struct Shout(Transport);
    /// impl Protocol for Shout {
    ///     fn data_received(&mut self, data: &[u8]) { self.0.write(&data.to_ascii_uppercase()).unwrap(); }
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let reply = lp.run_until_complete(async move {
    ///     let server = l.create_server(|| Plain(None), "127.0.0.1", 0, Default::default()).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let (mut r, w) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    ///     w.write(b"UPGRADE\n")?;
    ///     assert_eq!(r.readline().await?, b"ok\n");
    ///     w.write(b"hi")?;
    ///     let reply = r.readexactly(2).await?;
    ///     server.close();
    ///     Ok::<_, evloop::Error>(reply)
    /// })??;
    /// assert_eq!(reply, b"HI");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn set_protocol<P: StreamProtocol>(&self, protocol: P) -> Result<Rc<RefCell<P>>> {
        let inner = &self.inner;
        if inner.core.lifecycle() == Lifecycle::Gone {
            let _ = crate::runtime::guard::drop_user(protocol);
            return Err(Error::InvalidState("the transport is closed"));
        }
        inner.read_path.set(protocol.read_path());
        let protocol = Rc::new(RefCell::new(protocol));
        let shared: Rc<RefCell<dyn StreamProtocol>> = protocol.clone();
        core::replace_protocol(inner, shared);
        Ok(protocol)
    }

    /// The protocol, if it is a `P` (asyncio's `get_protocol`, typed):
    /// the one `create_connection` returned or `set_protocol` set last.
    /// `None` if it is another type, once `connection_lost` has run, or
    /// while it is mutably borrowed (inside one of its own methods, where
    /// `self` is at hand anyway).
    pub fn get_protocol<P: StreamProtocol>(&self) -> Option<Rc<RefCell<P>>> {
        crate::sys::downcast::downcast_protocol(self.inner.core.protocol()?)
    }
}

impl Transport {
    /// Makes a transport that `start` just made a pipe end, before its
    /// `connection_made` runs. A write pipe watches its fd for the reader
    /// closing when `watch_peer` (a FIFO or a socket; a character device
    /// may not be pollable for that).
    pub(crate) fn set_pipe_end(&self, end: PipeEnd, watch_peer: bool) {
        self.inner.pipe.set(end);
        match end {
            // Writes are refused by the write side's state, off the
            // sockets' write path.
            PipeEnd::Read => self.inner.write_side.set(WriteSide::EofSent),
            PipeEnd::Write if !watch_peer => self.inner.read_side.set(ReadSide::AtEof),
            PipeEnd::Write | PipeEnd::NotPipe => {}
        }
    }
}

impl Transport {
    /// The plain (not TLS) transport over `inner`.
    pub(crate) fn plain(inner: Rc<StreamInner>) -> Transport {
        Transport {
            inner,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("fd", &self.inner.core.fd)
            .field("lifecycle", &self.inner.core.lifecycle())
            .field("read_side", &self.inner.read_side.get())
            .field("write_side", &self.inner.write_side.get())
            .field("write_buffer", &self.get_write_buffer_size())
            .finish()
    }
}

impl StreamInner {
    /// The scheduled start: `connection_made`, then reading.
    fn made(self: &Rc<Self>, made: Option<crate::Future<()>>, handle: &Transport) {
        // Closed (say by `Server::abort_clients`) before this pass:
        // connection_made still runs, so the protocol never gets
        // connection_lost (queued behind this callback) without it, as in
        // asyncio.
        let lost_before = self.core.is_lost();
        self.core.set_made();
        if lost_before {
            core::call_even_if_lost(self, |p| p.connection_made(handle));
            if let Some(made) = made {
                let _ = made.set_exception(io::Error::from(io::ErrorKind::ConnectionAborted));
            }
            return;
        }
        core::call(self, |p| p.connection_made(handle));
        if self.core.lifecycle() == Lifecycle::Open && self.read_side.get() == ReadSide::Reading {
            self.watch_read();
        }
        if let Some(made) = made {
            // Even if connection_made closed it: the caller gets the
            // transport it was handed, as in asyncio.
            let _ = made.set_result(());
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.sendfile_active.get() {
            return Err(Error::InvalidState("cannot write while sendfile() is in progress"));
        }
        if self.write_side.get() != WriteSide::Open {
            // A read pipe's write side is shut from the start.
            if self.pipe.get() == PipeEnd::Read {
                return Err(Error::InvalidState("cannot write to a read pipe"));
            }
            return Err(Error::InvalidState("cannot write after write_eof()"));
        }
        if self.core.is_closing() {
            return Err(Error::InvalidState("cannot write to a closing transport"));
        }
        Ok(())
    }

    /// Puts `protocol` (the TLS layer) in place of the current protocol,
    /// which is returned; `None` once the transport is lost.
    #[cfg(feature = "tls")]
    pub(crate) fn replace_protocol(
        &self,
        protocol: Rc<RefCell<dyn StreamProtocol>>,
    ) -> Option<Rc<RefCell<dyn StreamProtocol>>> {
        let read_path = protocol.borrow().read_path();
        let old = self.core.replace_protocol(protocol)?;
        self.read_path.set(read_path);
        Some(old)
    }

    pub(crate) fn write_buffered(&self) -> usize {
        self.write_buf.borrow().len()
    }

    pub(crate) fn add_empty_waiter(&self, waker: &Waker) {
        self.core.add_empty_waiter(waker);
    }

    fn watch_read(self: &Rc<Self>) {
        if matches!(self.read_side.get(), ReadSide::AtEof | ReadSide::AtEofPaused) {
            return;
        }
        let me = self.clone();
        // A write pipe's reader callback watches for the reader closing;
        // chosen here, once, rather than on every readiness event.
        let watched = if self.pipe.get() == PipeEnd::Write {
            self.core.watch_read(move || me.on_peer_closed())
        } else {
            self.core.watch_read(move || me.on_readable())
        };
        if let Err(e) = watched {
            core::force_close(self, Some(e));
        }
    }

    fn watch_write(self: &Rc<Self>) {
        let me = self.clone();
        if let Err(e) = self.core.watch_write(move || me.on_writable()) {
            core::force_close(self, Some(e));
        }
    }

    /// The reader callback: receives handed to the protocol the way its
    /// kind chose when the transport was made. A receive that fills the
    /// whole buffer is followed by another, up to [`READS_PER_EVENT`]: a
    /// bulk transfer then takes one poll per MiB instead of per 256 KiB,
    /// while a small message still costs exactly one `recv`.
    fn on_readable(self: &Rc<Self>) {
        if self.core.is_closing() {
            return;
        }
        if self.read_side.get() != ReadSide::Reading {
            // Paused (see `pause_reading`): stop watching the fd now.
            self.core.unwatch_read();
            return;
        }
        for _ in 1..READS_PER_EVENT {
            // A pause raised by the protocol is left lazy (see
            // `pause_reading`): the next readiness unregisters.
            if !self.receive_once() || self.core.is_closing() || self.read_side.get() != ReadSide::Reading {
                return;
            }
        }
        self.receive_once();
    }

    /// One receive; returns whether it filled the buffer (more may wait).
    fn receive_once(self: &Rc<Self>) -> bool {
        match self.read_path.get() {
            // The streams' direct receive is `recv(2)`: a pipe takes the
            // shared buffer and `data_received` instead.
            ReadPath::Direct if self.pipe.get() == PipeEnd::NotPipe => {
                let received = core::call(self, |p| self.core.io(|s| p.receive(s)));
                match received {
                    Some(Ok(0)) => self.on_eof(),
                    Some(Ok(_)) | None => {}
                    Some(Err(e)) => self.on_read_error(e),
                }
                // The streams' receive sizes its own reads.
                false
            }
            ReadPath::Buffered => {
                let received = core::call(self, |p| match p.get_buffer(READ_SIZE) {
                    Some(buf) if !buf.is_empty() => self.recv(buf).map(|n| (n, n == buf.len())),
                    _ => Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "get_buffer() returned an empty buffer",
                    )),
                });
                match received {
                    // The bytes are already in the protocol's buffer.
                    Some(Ok((0, _))) => self.on_eof(),
                    Some(Ok((n, full))) => {
                        core::call(self, |p| p.buffer_updated(n));
                        return full;
                    }
                    Some(Err(e)) => self.on_read_error(e),
                    None => {}
                }
                false
            }
            ReadPath::Shared | ReadPath::Direct => {
                let mut buf = take_read_buffer();
                let full = match self.recv(&mut buf) {
                    Ok(0) => {
                        put_read_buffer(buf);
                        self.on_eof();
                        return false;
                    }
                    Ok(n) => {
                        core::call(self, |p| p.data_received(&buf[..n]));
                        n == buf.len()
                    }
                    Err(e) => {
                        put_read_buffer(buf);
                        self.on_read_error(e);
                        return false;
                    }
                };
                put_read_buffer(buf);
                full
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pipe.get() != PipeEnd::NotPipe {
            return self.core.io(|s| crate::sys::process::read(s.as_fd(), buf));
        }
        self.core.io(|s| (&*SockRef::from(s)).read(buf))
    }

    /// A write pipe turned readable: its reader closed (asyncio's
    /// `_UnixWritePipeTransport._read_ready`): data still buffered can
    /// never be delivered.
    fn on_peer_closed(self: &Rc<Self>) {
        if self.core.is_lost() {
            return;
        }
        if self.write_buffered() > 0 {
            core::force_close(self, Some(io::Error::from(io::ErrorKind::BrokenPipe).into()));
        } else {
            core::connection_lost(self, None);
        }
    }

    fn on_read_error(self: &Rc<Self>, e: io::Error) {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
            _ => core::force_close(self, Some(e.into())),
        }
    }

    /// The peer sent EOF: asyncio's `_read_ready__on_eof`.
    fn on_eof(self: &Rc<Self>) {
        self.read_side.set(match self.read_side.get() {
            ReadSide::Paused | ReadSide::AtEofPaused => ReadSide::AtEofPaused,
            ReadSide::Reading | ReadSide::AtEof => ReadSide::AtEof,
        });
        self.core.unwatch_read();
        let keep_open = core::call(self, |p| p.eof_received());
        // A read pipe has nothing left to do after EOF (asyncio closes it
        // whatever `eof_received` answers).
        if keep_open == Some(false) || self.pipe.get() == PipeEnd::Read {
            Transport::plain(self.clone()).close();
        }
    }

    /// Sends or buffers `data`; the caller checked the state.
    pub(crate) fn write(self: &Rc<Self>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut rest = data;
        if self.write_buf.borrow().len() == 0 {
            match self.send(rest) {
                Ok(n) if n == rest.len() => return,
                Ok(n) => rest = &rest[n..],
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => return core::force_close(self, Some(e.into())),
            }
            self.watch_write();
        }
        let buffered = {
            let mut buf = self.write_buf.borrow_mut();
            buf.data.extend_from_slice(rest);
            buf.len()
        };
        core::maybe_pause(self, buffered);
    }

    fn send(&self, data: &[u8]) -> io::Result<usize> {
        if self.pipe.get() != PipeEnd::NotPipe {
            return self.core.io(|s| crate::sys::process::write(s.as_fd(), data));
        }
        self.core.io(|s| send_nosignal(&SockRef::from(s), data))
    }

    /// Sends from the write buffer until it is empty (`Ok(true)`) or the
    /// socket takes no more (`Ok(false)`); other errors are returned.
    fn send_buffered(&self) -> io::Result<bool> {
        loop {
            let sent = {
                let buf = self.write_buf.borrow();
                if buf.len() == 0 {
                    return Ok(true);
                }
                self.send(buf.pending())
            };
            match sent {
                Ok(0) => return Ok(false),
                Ok(n) => self.write_buf.borrow_mut().consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// The writer callback: flush as much as the socket takes.
    fn on_writable(self: &Rc<Self>) {
        if self.core.is_lost() {
            return;
        }
        match self.send_buffered() {
            Ok(true) => {}
            Ok(false) => return core::maybe_resume(self, self.write_buffered()),
            Err(e) => return core::force_close(self, Some(e.into())),
        }
        self.wake_empty_waiters();
        // resume_writing before unwatching: a protocol that writes again
        // (a bulk sender) finds the writer still registered, which saves
        // two `epoll_ctl` calls per refill.
        core::maybe_resume(self, 0);
        // resume_writing may have written more before calling close() or
        // write_eof(): finish those only once that is flushed too
        // (asyncio: "may append to buffer").
        if self.core.is_lost() || self.write_buffered() > 0 {
            return;
        }
        self.core.unwatch_write();
        if self.core.lifecycle() == Lifecycle::Closing {
            core::connection_lost(self, None);
        } else if self.write_side.get() == WriteSide::EofPending {
            self.shutdown_write();
        }
    }

    fn wake_empty_waiters(&self) {
        self.core.wake_empty_waiters();
    }

    fn shutdown_write(self: &Rc<Self>) {
        if self.write_side.replace(WriteSide::EofSent) == WriteSide::EofSent {
            return;
        }
        if let Err(e) = self.core.with_socket(|s| s.shutdown(std::net::Shutdown::Write)) {
            core::force_close(self, Some(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one idle connection costs is mostly these structs (the bench's
    /// "10k idle TCP connections" row): a change that grows one must show
    /// up here, not as a silent RSS regression. Shrinking one is welcome:
    /// lower the number.
    #[test]
    fn per_connection_structs_stay_small() {
        assert_eq!(size_of::<Core<dyn StreamProtocol>>(), 88);
        // Plus the Rc header: a 168-byte allocation, glibc's 176-byte bin.
        assert_eq!(size_of::<StreamInner>(), 152);
        assert_eq!(size_of::<Error>(), 40, "kept out of line, in the core's rare state");
    }
}

//! Stream transports (asyncio's `_SelectorSocketTransport`) for TCP and Unix
//! sockets.
//!
//! A transport owns its socket and registers it with the loop as a
//! transport-owned fd (user `add_reader` on it is refused). Reading: the
//! reader callback receives into the loop's shared receive buffer (or the
//! buffered protocol's own buffer) and hands the bytes to the protocol.
//! Writing: `write` sends at once when nothing is buffered and keeps only
//! what the socket did not take; a writer callback flushes the rest.
//! Closing: the socket is unregistered, `connection_lost` runs (through
//! `call_soon`, never inside a transport method), then the socket closes.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use socket2::{SockAddr, SockRef, Socket};

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::net::protocol::StreamProtocol;
use crate::net::sock::send_nosignal;
use crate::runtime::event_loop::EventLoop;

/// Default high-water mark of the write buffer (asyncio's 64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default low-water mark: a quarter of the high one (asyncio's rule).
pub const DEFAULT_LOW_WATER: usize = DEFAULT_HIGH_WATER / 4;
/// How much one read asks for (asyncio's `max_size`).
pub(crate) const READ_SIZE: usize = 256 * 1024;

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

/// A protocol notification that could not be delivered because the
/// protocol was busy in another method; delivered when that one returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    PauseWriting,
    ResumeWriting,
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

pub(crate) struct StreamInner {
    lp: EventLoop,
    fd: RawFd,
    socket: RefCell<Option<Socket>>,
    protocol: Rc<RefCell<dyn StreamProtocol>>,
    /// Set while a protocol method runs (re-entrancy guard).
    protocol_busy: Cell<bool>,
    deferred: RefCell<Vec<Deferred>>,
    write_buf: RefCell<WriteBuffer>,
    high_water: Cell<usize>,
    low_water: Cell<usize>,
    closing: Cell<bool>,
    /// `connection_lost` has been scheduled (or run): nothing more happens.
    lost: Cell<bool>,
    eof_pending: Cell<bool>,
    eof_sent: Cell<bool>,
    /// The peer's EOF was read: reading never restarts (a `resume_reading`
    /// would report the EOF again).
    eof_received: Cell<bool>,
    reading: Cell<bool>,
    reader_on: Cell<bool>,
    writer_on: Cell<bool>,
    writing_paused: Cell<bool>,
    is_tcp: bool,
    /// `EventLoop::sendfile` owns the socket for now: `write` is refused.
    sendfile_active: Cell<bool>,
    /// Tasks waiting for the write buffer to empty (`sendfile`).
    empty_waiters: RefCell<Vec<std::task::Waker>>,
    /// Called once when the connection is gone (server bookkeeping).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
}

/// The write/control side of a stream connection (asyncio's
/// `asyncio.Transport`), handed to the protocol in `connection_made`.
/// Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    pub(crate) inner: Rc<StreamInner>,
}

impl Transport {
    /// Wraps a connected nonblocking socket, registers it with the loop and
    /// schedules `connection_made`. The protocol is returned shared so
    /// callers can reach it.
    pub(crate) fn start<P: StreamProtocol>(
        lp: &EventLoop,
        socket: Socket,
        protocol: P,
        on_lost: Option<Box<dyn FnOnce()>>,
        made: Option<crate::Future<()>>,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        socket.set_nonblocking(true)?;
        let protocol = Rc::new(RefCell::new(protocol));
        let fd = socket.as_raw_fd();
        let is_tcp = socket.local_addr().map(|a| a.is_ipv4() || a.is_ipv6()).unwrap_or(false);
        if is_tcp {
            // asyncio turns Nagle off on its TCP transports.
            let _ = socket.set_tcp_nodelay(true);
        }
        let inner = Rc::new(StreamInner {
            lp: lp.clone(),
            fd,
            socket: RefCell::new(Some(socket)),
            protocol: protocol.clone(),
            protocol_busy: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            write_buf: RefCell::new(WriteBuffer::default()),
            high_water: Cell::new(DEFAULT_HIGH_WATER),
            low_water: Cell::new(DEFAULT_LOW_WATER),
            closing: Cell::new(false),
            lost: Cell::new(false),
            eof_pending: Cell::new(false),
            eof_sent: Cell::new(false),
            eof_received: Cell::new(false),
            sendfile_active: Cell::new(false),
            empty_waiters: RefCell::new(Vec::new()),
            reading: Cell::new(true),
            reader_on: Cell::new(false),
            writer_on: Cell::new(false),
            writing_paused: Cell::new(false),
            is_tcp,
            on_lost: RefCell::new(on_lost),
        });
        lp.claim_fd(fd);
        let transport = Transport { inner };
        // asyncio: connection_made first, then start reading, both on the
        // next pass.
        let t = transport.clone();
        lp.call_soon(move || {
            // Closed (say by `Server::abort_clients`) before this pass:
            // connection_made still runs, so the protocol never gets
            // connection_lost (already queued behind this callback) without
            // it, as in asyncio.
            let lost_before = t.inner.lost.get();
            let handle = t.clone();
            t.inner.call_protocol(|p| p.connection_made(&handle));
            if lost_before {
                if let Some(made) = made {
                    let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
                    let _ = made.set_exception(aborted);
                }
                return;
            }
            if !t.inner.closing.get() && t.inner.reading.get() {
                t.inner.register_reader();
            }
            if let Some(made) = made {
                let _ = made.set_result(());
            }
        });
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
    /// [`close`](Transport::close).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.inner.write(data)
    }

    /// Writes every buffer of `chunks`, in order (asyncio's `writelines`).
    ///
    /// # Errors
    ///
    /// As [`write`](Transport::write).
    pub fn writelines<I>(&self, chunks: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        for chunk in chunks {
            self.write(chunk.as_ref())?;
        }
        Ok(())
    }

    /// Closes the write side once the buffer is flushed (half-close); the
    /// peer sees EOF and can still send.
    pub fn write_eof(&self) {
        let inner = &self.inner;
        if inner.closing.get() || inner.eof_pending.replace(true) {
            return;
        }
        if inner.write_buf.borrow().len() == 0 {
            inner.shutdown_write();
        }
    }

    /// Whether [`write_eof`](Transport::write_eof) is supported: true for
    /// TCP and Unix stream sockets.
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the transport: stops reading now, sends what is buffered, then
    /// calls the protocol's `connection_lost(None)` (on a later pass) and
    /// closes the socket. Calling it again does nothing.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return;
        }
        inner.unregister_reader();
        if inner.write_buf.borrow().len() == 0 {
            inner.connection_lost(None);
        }
    }

    /// Closes the transport at once, dropping buffered data; the protocol
    /// gets `connection_lost(None)` on a later pass.
    pub fn abort(&self) {
        self.inner.force_close(None);
    }

    /// Whether the transport is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get()
    }

    /// Stops calling `data_received` until
    /// [`resume_reading`](Transport::resume_reading). No-op if already
    /// paused or closing.
    pub fn pause_reading(&self) {
        // Lazily: the reader stays registered, and `on_readable`
        // unregisters it only if the fd reports readable while paused. A
        // pause that is resumed before the next readiness (a stream
        // reader's flow control, every 256 KiB read) costs no epoll_ctl.
        let inner = &self.inner;
        if !inner.closing.get() {
            inner.reading.set(false);
        }
    }

    /// Resumes reading after [`pause_reading`](Transport::pause_reading).
    pub fn resume_reading(&self) {
        let inner = &self.inner;
        if inner.closing.get() || inner.reading.replace(true) {
            return;
        }
        inner.register_reader();
    }

    /// Whether the transport is reading (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        !self.inner.closing.get() && self.inner.reading.get()
    }

    /// Bytes accepted by `write` and not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.write_buf.borrow().len()
    }

    /// Sets the write buffer's high- and low-water marks (asyncio's rules:
    /// only `high` given → low = high / 4; only `low` → high = 4 × low;
    /// neither → 64 KiB and 16 KiB). May pause or resume the protocol at
    /// once.
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
        self.inner.high_water.set(high);
        self.inner.low_water.set(low);
        self.inner.maybe_pause_protocol();
        self.inner.maybe_resume_protocol();
        Ok(())
    }

    /// The write buffer's `(low, high)` water marks, as asyncio orders them.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        (self.inner.low_water.get(), self.inner.high_water.get())
    }

    /// The peer's IP address, for a TCP transport.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_sockaddr().ok().and_then(|a| a.as_socket())
    }

    /// The local IP address, for a TCP transport.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_sockaddr().ok().and_then(|a| a.as_socket())
    }

    /// The peer's address, any family (Unix sockets included).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `getpeername`, or [`Error::Closed`] once the
    /// socket is closed.
    pub fn peer_sockaddr(&self) -> Result<SockAddr> {
        self.inner.with_socket(|s| s.peer_addr())
    }

    /// The local address, any family.
    ///
    /// # Errors
    ///
    /// As [`peer_sockaddr`](Transport::peer_sockaddr).
    pub fn local_sockaddr(&self) -> Result<SockAddr> {
        self.inner.with_socket(|s| s.local_addr())
    }

    /// The raw fd of the socket (while it is open).
    pub fn fd(&self) -> RawFd {
        self.inner.fd
    }

    /// Whether this is a TCP (not Unix) transport.
    pub fn is_tcp(&self) -> bool {
        self.inner.is_tcp
    }

    /// The loop the transport runs on.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.lp.clone()
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("fd", &self.inner.fd)
            .field("closing", &self.is_closing())
            .field("reading", &self.is_reading())
            .field("write_buffer", &self.get_write_buffer_size())
            .finish()
    }
}

impl StreamInner {
    fn with_socket<T>(&self, f: impl FnOnce(&Socket) -> io::Result<T>) -> Result<T> {
        let socket = self.socket.borrow();
        let socket = socket.as_ref().ok_or(Error::Closed)?;
        Ok(f(socket)?)
    }

    /// Runs `f` on the protocol, then delivers what was deferred meanwhile.
    /// A panic closes the transport and is reported to the exception
    /// handler; the loop goes on.
    fn call_protocol(self: &Rc<Self>, f: impl FnOnce(&mut dyn StreamProtocol)) {
        let mut f = Some(f);
        self.call_protocol_dyn(&mut |p| {
            if let Some(f) = f.take() {
                f(p)
            }
        });
    }

    fn call_protocol_dyn(self: &Rc<Self>, f: &mut dyn FnMut(&mut dyn StreamProtocol)) {
        self.protocol_busy.set(true);
        let outcome = {
            let mut p = self.protocol.borrow_mut();
            std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut *p)))
        };
        self.protocol_busy.set(false);
        if let Err(payload) = outcome {
            let error = Error::Panicked(panic_message(&*payload));
            let ctx = ExceptionContext::new("panic in a protocol callback").with_error(error.clone());
            self.lp.call_exception_handler(&ctx);
            self.force_close(Some(error));
            return;
        }
        loop {
            let next = {
                let mut deferred = self.deferred.borrow_mut();
                if deferred.is_empty() { None } else { Some(deferred.remove(0)) }
            };
            match next {
                Some(Deferred::PauseWriting) => self.call_protocol_dyn(&mut |p| p.pause_writing()),
                Some(Deferred::ResumeWriting) => self.call_protocol_dyn(&mut |p| p.resume_writing()),
                None => break,
            }
        }
    }

    fn notify(self: &Rc<Self>, what: Deferred) {
        if self.protocol_busy.get() {
            self.deferred.borrow_mut().push(what);
        } else {
            match what {
                Deferred::PauseWriting => self.call_protocol(|p| p.pause_writing()),
                Deferred::ResumeWriting => self.call_protocol(|p| p.resume_writing()),
            }
        }
    }

    fn register_reader(self: &Rc<Self>) {
        if self.eof_received.get() || self.reader_on.replace(true) {
            return;
        }
        let me = self.clone();
        if let Err(e) = self.lp.add_owned_reader(self.fd, move || me.on_readable()) {
            self.reader_on.set(false);
            self.force_close(Some(e));
        }
    }

    fn unregister_reader(&self) {
        if self.reader_on.replace(false) {
            self.lp.remove_owned_reader(self.fd);
        }
    }

    fn register_writer(self: &Rc<Self>) {
        if self.writer_on.replace(true) {
            return;
        }
        let me = self.clone();
        if let Err(e) = self.lp.add_owned_writer(self.fd, move || me.on_writable()) {
            self.writer_on.set(false);
            self.force_close(Some(e));
        }
    }

    fn unregister_writer(&self) {
        if self.writer_on.replace(false) {
            self.lp.remove_owned_writer(self.fd);
        }
    }

    /// The reader callback: one receive, handed to the protocol.
    fn on_readable(self: &Rc<Self>) {
        if self.lost.get() {
            return;
        }
        if !self.reading.get() {
            // Paused (see `pause_reading`): stop watching the fd now.
            self.unregister_reader();
            return;
        }
        // A protocol may receive into its own storage (streams), or give a
        // buffer to fill (BufferedProtocol); `None` means a plain one.
        let mut direct = None;
        let mut received = None;
        self.call_protocol(|p| {
            let open = self.socket.borrow();
            let Some(socket) = open.as_ref() else { return };
            direct = p.receive(socket);
            // `recv` below borrows the socket again.
            drop(open);
            if direct.is_none()
                && let Some(buf) = p.get_buffer(READ_SIZE)
            {
                received = Some(if buf.is_empty() {
                    Err(io::Error::new(io::ErrorKind::InvalidInput, "get_buffer() returned an empty buffer"))
                } else {
                    self.recv(buf)
                });
            }
        });
        if self.lost.get() {
            return;
        }
        match direct {
            Some(Ok(0)) => return self.on_eof(),
            Some(Ok(_)) => return,
            Some(Err(e)) => return self.on_read_error(e),
            None => {}
        }
        match received {
            // A buffered protocol: the bytes are already in its buffer.
            Some(Ok(0)) => self.on_eof(),
            Some(Ok(n)) => self.call_protocol(|p| p.buffer_updated(n)),
            Some(Err(e)) => self.on_read_error(e),
            None => {
                let mut buf = take_read_buffer();
                match self.recv(&mut buf) {
                    Ok(0) => {
                        put_read_buffer(buf);
                        self.on_eof();
                    }
                    Ok(n) => {
                        self.call_protocol(|p| p.data_received(&buf[..n]));
                        put_read_buffer(buf);
                    }
                    Err(e) => {
                        put_read_buffer(buf);
                        self.on_read_error(e);
                    }
                }
            }
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let socket = self.socket.borrow();
        let Some(socket) = socket.as_ref() else { return Err(io::ErrorKind::NotConnected.into()) };
        (&*SockRef::from(socket)).read(buf)
    }

    fn on_read_error(self: &Rc<Self>, e: io::Error) {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
            _ => self.force_close(Some(e.into())),
        }
    }

    /// The peer sent EOF: asyncio's `_read_ready__on_eof`.
    fn on_eof(self: &Rc<Self>) {
        self.eof_received.set(true);
        self.unregister_reader();
        let mut keep_open = false;
        self.call_protocol(|p| keep_open = p.eof_received());
        if !keep_open && !self.closing.get() {
            Transport { inner: self.clone() }.close();
        }
    }

    fn write(self: &Rc<Self>, data: &[u8]) -> Result<()> {
        if self.sendfile_active.get() {
            return Err(Error::InvalidState("cannot write while sendfile() is in progress"));
        }
        if self.eof_pending.get() {
            return Err(Error::InvalidState("cannot write after write_eof()"));
        }
        if self.closing.get() {
            return Err(Error::InvalidState("cannot write to a closing transport"));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut rest = data;
        if self.write_buf.borrow().len() == 0 {
            match self.send(rest) {
                Ok(n) if n == rest.len() => return Ok(()),
                Ok(n) => rest = &rest[n..],
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    self.force_close(Some(e.into()));
                    return Ok(());
                }
            }
            self.register_writer();
        }
        self.write_buf.borrow_mut().data.extend_from_slice(rest);
        self.maybe_pause_protocol();
        Ok(())
    }

    fn send(&self, data: &[u8]) -> io::Result<usize> {
        let socket = self.socket.borrow();
        let Some(socket) = socket.as_ref() else { return Err(io::ErrorKind::NotConnected.into()) };
        send_nosignal(&SockRef::from(socket), data)
    }

    /// The writer callback: flush as much as the socket takes.
    fn on_writable(self: &Rc<Self>) {
        if self.lost.get() {
            return;
        }
        loop {
            let result = {
                let buf = self.write_buf.borrow();
                if buf.len() == 0 {
                    break;
                }
                self.send(buf.pending())
            };
            match result {
                Ok(n) => self.write_buf.borrow_mut().consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_resume_protocol();
                    return;
                }
                Err(e) => {
                    self.force_close(Some(e.into()));
                    return;
                }
            }
        }
        self.unregister_writer();
        self.wake_empty_waiters();
        self.maybe_resume_protocol();
        // resume_writing may have written more (and registered the writer
        // again) before calling close() or write_eof(): finish those only
        // once that is flushed too (asyncio: "may append to buffer").
        if self.lost.get() || self.write_buf.borrow().len() > 0 {
            return;
        }
        if self.closing.get() {
            self.connection_lost(None);
        } else if self.eof_pending.get() {
            self.shutdown_write();
        }
    }

    fn wake_empty_waiters(&self) {
        let waiters = std::mem::take(&mut *self.empty_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    fn shutdown_write(self: &Rc<Self>) {
        if self.eof_sent.replace(true) {
            return;
        }
        if let Err(e) = self.with_socket(|s| s.shutdown(std::net::Shutdown::Write)) {
            self.force_close(Some(e));
        }
    }

    fn maybe_pause_protocol(self: &Rc<Self>) {
        if !self.writing_paused.get() && self.write_buf.borrow().len() > self.high_water.get() {
            self.writing_paused.set(true);
            self.notify(Deferred::PauseWriting);
        }
    }

    fn maybe_resume_protocol(self: &Rc<Self>) {
        if self.writing_paused.get() && self.write_buf.borrow().len() <= self.low_water.get() {
            self.writing_paused.set(false);
            self.notify(Deferred::ResumeWriting);
        }
    }

    /// Closes now, dropping buffered data (asyncio's `_force_close`).
    fn force_close(self: &Rc<Self>, error: Option<Error>) {
        if self.lost.get() {
            return;
        }
        self.closing.set(true);
        let dropped = std::mem::take(&mut *self.write_buf.borrow_mut());
        drop(dropped);
        self.connection_lost(error);
    }

    /// Unregisters the socket, then schedules `connection_lost` and the
    /// socket's close for the next pass (never inside a transport method).
    fn connection_lost(self: &Rc<Self>, error: Option<Error>) {
        if self.lost.replace(true) {
            return;
        }
        self.closing.set(true);
        self.unregister_reader();
        self.unregister_writer();
        let me = self.clone();
        let lp = &self.lp;
        let finish = move || me.finish_connection_lost(error);
        if lp.is_closed() {
            finish();
        } else {
            lp.call_soon(finish);
        }
    }

    fn finish_connection_lost(self: &Rc<Self>, error: Option<Error>) {
        self.wake_empty_waiters();
        self.call_protocol(|p| p.connection_lost(error));
        self.lp.release_fd(self.fd);
        let socket = self.socket.borrow_mut().take();
        drop(socket);
        let on_lost = self.on_lost.borrow_mut().take();
        if let Some(on_lost) = on_lost {
            on_lost();
        }
    }
}

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
            Transport { inner: self.inner.clone() }.resume_reading();
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
        let inner = &transport.inner;
        if inner.closing.get() {
            return Err(Error::InvalidState("cannot sendfile() on a closing transport"));
        }
        if inner.sendfile_active.replace(true) {
            return Err(Error::InvalidState("another sendfile() is in progress on this transport"));
        }
        let resume_reading = transport.is_reading();
        transport.pause_reading();
        let _guard = SendfileGuard { inner: inner.clone(), resume_reading };
        std::future::poll_fn(|cx| {
            if inner.lost.get() || inner.write_buf.borrow().len() == 0 {
                return std::task::Poll::Ready(());
            }
            inner.empty_waiters.borrow_mut().push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await;
        if inner.lost.get() {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset).into());
        }
        // A duplicate of the fd: the transport keeps its own (and may close
        // it if the connection is lost meanwhile) without pulling the socket
        // out from under this call.
        let socket = inner.with_socket(|s| s.try_clone())?;
        let sent = self.sock_sendfile(&socket, file, offset, count).await;
        if let Err(e) = &sent
            && e.io_kind().is_some()
        {
            // The socket failed: the transport learns it too.
            inner.force_close(Some(e.clone()));
        }
        sent
    }
}

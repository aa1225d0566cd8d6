//! Datagram endpoints (asyncio's `create_datagram_endpoint`) for UDP and
//! Unix datagram sockets.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::rc::Rc;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::net::protocol::DatagramProtocol;
use crate::net::sock::recv_from;
use crate::net::transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};
use crate::runtime::event_loop::EventLoop;

/// Options of [`EventLoop::create_datagram_endpoint`].
#[derive(Debug, Clone, Default)]
pub struct DatagramOptions {
    /// Bind here (port 0: any free port).
    pub local_addr: Option<SocketAddr>,
    /// Connect to this peer: `sendto` without an address goes there, and
    /// only its datagrams are received.
    pub remote_addr: Option<SocketAddr>,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `SO_BROADCAST`.
    pub allow_broadcast: bool,
}

struct DatagramInner {
    lp: EventLoop,
    fd: RawFd,
    socket: RefCell<Option<Socket>>,
    protocol: Rc<RefCell<dyn DatagramProtocol>>,
    queue: RefCell<VecDeque<(Vec<u8>, Option<SockAddr>)>>,
    queued_bytes: Cell<usize>,
    connected: bool,
    closing: Cell<bool>,
    lost: Cell<bool>,
    writer_on: Cell<bool>,
    paused: Cell<bool>,
}

/// The sending side of a datagram endpoint (asyncio's
/// `DatagramTransport`). Cheap to clone.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Rc<DatagramInner>,
}

impl DatagramTransport {
    /// Sends one datagram to `addr` (or to the connected peer with `None`).
    /// Sent at once if nothing is queued; otherwise queued and flushed when
    /// the socket is writable. Send errors go to the protocol's
    /// `error_received`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the transport is closing, if `addr` is
    /// `None` on an unconnected endpoint, or given on a connected one for a
    /// different peer.
    pub fn sendto(&self, data: &[u8], addr: Option<&SockAddr>) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(Error::InvalidState("cannot send on a closing transport"));
        }
        if addr.is_none() && !inner.connected {
            return Err(Error::InvalidState("no address given and the endpoint is not connected"));
        }
        if let (true, Some(addr)) = (inner.connected, addr) {
            // send(2) on a connected socket ignores `addr`: without this
            // check a datagram meant for another peer would silently go to
            // the connected one (asyncio raises ValueError here).
            let peer = self.peer_addr()?;
            let same = match (addr.as_socket(), peer.as_socket()) {
                (Some(a), Some(b)) => a == b,
                _ => addr.as_pathname().is_some() && addr.as_pathname() == peer.as_pathname(),
            };
            if !same {
                return Err(Error::InvalidState("the address differs from the connected peer's"));
            }
        }
        if inner.queue.borrow().is_empty() {
            match inner.send(data, addr) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                Err(e) => {
                    inner.error_received(e.into());
                    return Ok(());
                }
            }
        }
        inner.queue.borrow_mut().push_back((data.to_vec(), addr.cloned()));
        inner.queued_bytes.set(inner.queued_bytes.get() + data.len());
        inner.register_writer();
        if !inner.paused.get() && inner.queued_bytes.get() > DEFAULT_HIGH_WATER {
            inner.paused.set(true);
            inner.notify(|p| p.pause_writing());
        }
        Ok(())
    }

    /// Closes the endpoint after the queue is flushed;
    /// `connection_lost(None)` follows on a later pass.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return;
        }
        inner.lp.remove_owned_reader(inner.fd);
        if inner.queue.borrow().is_empty() {
            inner.connection_lost(None);
        }
    }

    /// Closes at once, dropping queued datagrams.
    pub fn abort(&self) {
        self.inner.queue.borrow_mut().clear();
        self.inner.queued_bytes.set(0);
        self.inner.connection_lost(None);
    }

    /// Whether the endpoint is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get()
    }

    /// Bytes queued and not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.queued_bytes.get()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `getsockname`; [`Error::Closed`] once closed.
    pub fn local_addr(&self) -> Result<SockAddr> {
        let socket = self.inner.socket.borrow();
        Ok(socket.as_ref().ok_or(Error::Closed)?.local_addr()?)
    }

    /// The loop the endpoint runs on.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.lp.clone()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (`ENOTCONN` for an unconnected endpoint).
    pub fn peer_addr(&self) -> Result<SockAddr> {
        let socket = self.inner.socket.borrow();
        Ok(socket.as_ref().ok_or(Error::Closed)?.peer_addr()?)
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("fd", &self.inner.fd)
            .field("closing", &self.is_closing())
            .field("queued", &self.get_write_buffer_size())
            .finish()
    }
}

impl DatagramInner {
    /// Calls the protocol from a loop callback (never re-entrant).
    fn call_protocol(self: &Rc<Self>, f: impl FnOnce(&mut dyn DatagramProtocol)) {
        let outcome = {
            let mut p = self.protocol.borrow_mut();
            std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut *p)))
        };
        if let Err(payload) = outcome {
            let error = Error::Panicked(panic_message(&*payload));
            let ctx =
                ExceptionContext::new("panic in a datagram protocol callback").with_error(error.clone());
            self.lp.call_exception_handler(&ctx);
            self.queue.borrow_mut().clear();
            self.connection_lost(Some(error));
        }
    }

    fn send(&self, data: &[u8], addr: Option<&SockAddr>) -> io::Result<usize> {
        let socket = self.socket.borrow();
        let Some(socket) = socket.as_ref() else { return Err(io::ErrorKind::NotConnected.into()) };
        let s = SockRef::from(socket);
        match addr {
            Some(addr) if !self.connected => s.send_to_with_flags(data, addr, libc::MSG_NOSIGNAL),
            _ => s.send_with_flags(data, libc::MSG_NOSIGNAL),
        }
    }

    fn error_received(self: &Rc<Self>, e: Error) {
        self.notify(move |p| p.error_received(e));
    }

    /// Delivers a notification that `sendto` may trigger from inside a
    /// protocol method: now if the protocol is free, else on the next pass.
    fn notify(self: &Rc<Self>, f: impl FnOnce(&mut dyn DatagramProtocol) + 'static) {
        if self.protocol.try_borrow_mut().is_ok() {
            self.call_protocol(f);
        } else if !self.lp.is_closed() {
            let me = self.clone();
            self.lp.call_soon(move || me.call_protocol(f));
        }
    }

    fn register_writer(self: &Rc<Self>) {
        if self.writer_on.replace(true) {
            return;
        }
        let me = self.clone();
        if let Err(e) = self.lp.add_owned_writer(self.fd, move || me.on_writable()) {
            self.writer_on.set(false);
            self.error_received(e);
        }
    }

    fn on_readable(self: &Rc<Self>) {
        if self.lost.get() {
            return;
        }
        let mut buf = crate::net::transport::take_read_buffer();
        let received = {
            let socket = self.socket.borrow();
            match socket.as_ref() {
                Some(s) => recv_from(&SockRef::from(s), &mut buf),
                None => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        match received {
            Ok((n, from)) => self.call_protocol(|p| p.datagram_received(&buf[..n], from)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => self.error_received(e.into()),
        }
        crate::net::transport::put_read_buffer(buf);
    }

    fn on_writable(self: &Rc<Self>) {
        loop {
            let sent = {
                let queue = self.queue.borrow();
                let Some((data, addr)) = queue.front() else { break };
                self.send(data, addr.as_ref()).map(|_| data.len())
            };
            match sent {
                Ok(len) => {
                    self.queue.borrow_mut().pop_front();
                    self.queued_bytes.set(self.queued_bytes.get() - len);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The datagram is dropped, like a lost packet; report it.
                    let dropped = self.queue.borrow_mut().pop_front();
                    if let Some((data, _)) = dropped {
                        self.queued_bytes.set(self.queued_bytes.get() - data.len());
                    }
                    self.error_received(e.into());
                }
            }
        }
        if self.paused.get() && self.queued_bytes.get() <= DEFAULT_LOW_WATER {
            self.paused.set(false);
            self.call_protocol(|p| p.resume_writing());
        }
        if self.queue.borrow().is_empty() {
            if self.writer_on.replace(false) {
                self.lp.remove_owned_writer(self.fd);
            }
            if self.closing.get() {
                self.connection_lost(None);
            }
        }
    }

    fn connection_lost(self: &Rc<Self>, error: Option<Error>) {
        if self.lost.replace(true) {
            return;
        }
        self.closing.set(true);
        self.lp.remove_owned_reader(self.fd);
        if self.writer_on.replace(false) {
            self.lp.remove_owned_writer(self.fd);
        }
        let me = self.clone();
        let finish = move || {
            me.call_protocol(|p| p.connection_lost(error));
            me.lp.release_fd(me.fd);
            let socket = me.socket.borrow_mut().take();
            drop(socket);
        };
        if self.lp.is_closed() {
            finish();
        } else {
            self.lp.call_soon(finish);
        }
    }
}

impl EventLoop {
    /// Creates a UDP endpoint (asyncio's `create_datagram_endpoint`): binds
    /// to `local_addr` and/or connects to `remote_addr` (at least one is
    /// needed to pick the address family), then runs the protocol made by
    /// `factory`. Returns once `connection_made` has run.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] with neither address; [`Error::Io`] from
    /// `bind`/`connect`.
    pub async fn create_datagram_endpoint<P: DatagramProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        options: DatagramOptions,
    ) -> Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let Some(family_addr) = options.local_addr.or(options.remote_addr) else {
            return Err(Error::InvalidState("a datagram endpoint needs a local or a remote address"));
        };
        let socket =
            Socket::new(Domain::for_address(family_addr), Type::DGRAM.nonblocking().cloexec(), None)?;
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if options.allow_broadcast {
            socket.set_broadcast(true)?;
        }
        if let Some(local) = options.local_addr {
            socket.bind(&local.into())?;
        }
        if let Some(remote) = options.remote_addr {
            socket.connect(&remote.into())?;
        }
        self.start_datagram(socket, options.remote_addr.is_some(), factory()).await
    }

    /// Creates a Unix datagram endpoint bound to `local_path` and/or
    /// connected to `remote_path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `bind`/`connect`.
    pub async fn create_unix_datagram_endpoint<P: DatagramProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        local_path: Option<&Path>,
        remote_path: Option<&Path>,
    ) -> Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let socket = Socket::new(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)?;
        if let Some(local) = local_path {
            socket.bind(&SockAddr::unix(local)?)?;
        }
        if let Some(remote) = remote_path {
            socket.connect(&SockAddr::unix(remote)?)?;
        }
        self.start_datagram(socket, remote_path.is_some(), factory()).await
    }

    async fn start_datagram<P: DatagramProtocol>(
        &self,
        socket: Socket,
        connected: bool,
        protocol: P,
    ) -> Result<(DatagramTransport, Rc<RefCell<P>>)> {
        let protocol = Rc::new(RefCell::new(protocol));
        let fd = socket.as_raw_fd();
        let inner = Rc::new(DatagramInner {
            lp: self.clone(),
            fd,
            socket: RefCell::new(Some(socket)),
            protocol: protocol.clone(),
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            connected,
            closing: Cell::new(false),
            lost: Cell::new(false),
            writer_on: Cell::new(false),
            paused: Cell::new(false),
        });
        self.claim_fd(fd);
        let transport = DatagramTransport { inner: inner.clone() };
        // As asyncio (and the stream transports): connection_made and the
        // start of reading happen on the next pass, not inside this call.
        let made = self.create_future::<()>();
        let (handle, made_setter) = (transport.clone(), made.clone());
        self.call_soon(move || {
            let inner = &handle.inner;
            if inner.lost.get() {
                let _ = made_setter.set_exception(io::Error::from(io::ErrorKind::ConnectionAborted));
                return;
            }
            inner.call_protocol(|p| p.connection_made(&handle));
            let me = inner.clone();
            match inner.lp.add_owned_reader(inner.fd, move || me.on_readable()) {
                Ok(()) => {
                    let _ = made_setter.set_result(());
                }
                Err(e) => {
                    handle.abort();
                    let _ = made_setter.set_exception(e);
                }
            }
        });
        made.await?;
        Ok((transport, protocol))
    }
}

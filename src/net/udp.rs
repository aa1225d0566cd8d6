//! Datagram endpoints (asyncio's `create_datagram_endpoint`) for UDP and
//! Unix datagram sockets.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::error::{Error, Result};
use crate::net::core::{self, Core, Lifecycle, Notification, TransportKind};
use crate::net::protocol::DatagramProtocol;
use crate::net::sock::recv_from;
use crate::net::transport::{put_read_buffer, take_read_buffer};
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

pub(crate) struct DatagramInner {
    core: Core<dyn DatagramProtocol>,
    queue: RefCell<VecDeque<(Vec<u8>, Option<SockAddr>)>>,
    queued_bytes: Cell<usize>,
    connected: bool,
}

impl TransportKind for DatagramInner {
    type Protocol = dyn DatagramProtocol;

    fn core(&self) -> &Core<dyn DatagramProtocol> {
        &self.core
    }

    fn discard_buffered(&self) {
        let dropped = std::mem::take(&mut *self.queue.borrow_mut());
        self.queued_bytes.set(0);
        drop(dropped);
    }
}

/// The sending side of a datagram endpoint (asyncio's
/// `DatagramTransport`). Cheap to clone.
///
/// Like a stream [`Transport`](crate::net::Transport), it drops its
/// protocol after `connection_lost`, so a protocol may keep it; closing
/// the loop closes it (`connection_lost(Some(Error::Closed))`).
///
/// # Examples
///
/// ```
/// use evloop::net::{DatagramOptions, DatagramProtocol, DatagramTransport, SockAddr};
///
/// /// Sends every datagram back where it came from.
/// struct Echo(Option<DatagramTransport>);
///
/// impl DatagramProtocol for Echo {
///     fn connection_made(&mut self, t: &DatagramTransport) {
///         self.0 = Some(t.clone());
///     }
///     fn datagram_received(&mut self, data: &[u8], from: SockAddr) {
///         self.0.as_ref().unwrap().sendto(data, Some(&from)).unwrap();
///     }
/// }
///
/// struct Got(Vec<u8>);
/// impl DatagramProtocol for Got {
///     fn datagram_received(&mut self, data: &[u8], _: SockAddr) {
///         self.0 = data.to_vec();
///     }
/// }
///
/// let lp = evloop::EventLoop::new()?;
/// let l = lp.clone();
/// let got = lp.run_until_complete(async move {
///     let local = Some("127.0.0.1:0".parse().unwrap());
///     let (server, _) = l.create_datagram_endpoint(|| Echo(None), DatagramOptions { local_addr: local, ..Default::default() }).await?;
///     let remote = server.local_addr()?.as_socket();
///     let (client, got) = l.create_datagram_endpoint(|| Got(Vec::new()), DatagramOptions { remote_addr: remote, ..Default::default() }).await?;
///     client.sendto(b"ping", None)?;
///     while got.borrow().0.is_empty() {
///         evloop::yield_now().await;
///     }
///     client.close();
///     server.close();
///     let reply = got.borrow().0.clone();
///     Ok::<_, evloop::Error>(reply)
/// })??;
/// assert_eq!(got, b"ping");
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct DatagramTransport {
    pub(crate) inner: Rc<DatagramInner>,
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
        if inner.core.is_closing() {
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
        inner.watch_write();
        core::maybe_pause(inner, inner.queued_bytes.get());
        Ok(())
    }

    /// Closes the endpoint after the queue is flushed;
    /// `connection_lost(None)` follows on a later pass.
    pub fn close(&self) {
        let inner = &self.inner;
        if !inner.core.start_closing() {
            return;
        }
        inner.core.unwatch_read();
        if inner.queue.borrow().is_empty() {
            core::connection_lost(inner, None);
        }
    }

    /// Closes at once, dropping queued datagrams.
    pub fn abort(&self) {
        core::force_close(&self.inner, None);
    }

    /// Whether the endpoint is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.core.is_closing()
    }

    /// Bytes queued and not yet sent.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.queued_bytes.get()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `getsockname`; [`Error::InvalidState`] ("the
    /// transport is closed") once closed.
    pub fn local_addr(&self) -> Result<SockAddr> {
        self.inner.core.with_socket(|s| s.local_addr())
    }

    /// The loop the endpoint runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped (the transport holds it weakly).
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.inner.core.get_loop()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (`ENOTCONN` for an unconnected endpoint);
    /// [`Error::InvalidState`] once closed.
    pub fn peer_addr(&self) -> Result<SockAddr> {
        self.inner.core.with_socket(|s| s.peer_addr())
    }

    /// Replaces the protocol (asyncio's `set_protocol`): later datagrams,
    /// errors and `connection_lost` go to `protocol`; `connection_made` is
    /// not called again. The old protocol is dropped — after its current
    /// method returns when called from inside one. Returns the new
    /// protocol's handle.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once the endpoint is closed
    /// (`connection_lost` has run); `protocol` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{DatagramOptions, DatagramProtocol, SockAddr};
    ///
    /// struct First;
    /// impl DatagramProtocol for First {
    ///     fn datagram_received(&mut self, _: &[u8], _: SockAddr) {}
    /// }
    /// #[derive(Default)]
    /// struct Second(usize);
    /// impl DatagramProtocol for Second {
    ///     fn datagram_received(&mut self, _: &[u8], _: SockAddr) {
    ///         self.0 += 1;
    ///     }
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// lp.run_until_complete(async move {
    ///     let local = Some("127.0.0.1:0".parse().unwrap());
    ///     let (t, _) = l.create_datagram_endpoint(|| First, DatagramOptions { local_addr: local, ..Default::default() }).await?;
    ///     let second = t.set_protocol(Second::default())?;
    ///     assert!(t.get_protocol::<First>().is_none());
    ///     assert!(Rc::ptr_eq(&t.get_protocol::<Second>().unwrap(), &second));
    ///     t.close();
    ///     Ok::<_, evloop::Error>(())
    /// })??;
    /// # use std::rc::Rc;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn set_protocol<P: DatagramProtocol>(&self, protocol: P) -> Result<Rc<RefCell<P>>> {
        let inner = &self.inner;
        if inner.core.lifecycle() == Lifecycle::Gone {
            let _ = crate::runtime::guard::drop_user(protocol);
            return Err(Error::InvalidState("the transport is closed"));
        }
        let protocol = Rc::new(RefCell::new(protocol));
        let shared: Rc<RefCell<dyn DatagramProtocol>> = protocol.clone();
        core::replace_protocol(inner, shared);
        Ok(protocol)
    }

    /// The protocol, if it is a `P` (asyncio's `get_protocol`, typed): the
    /// one `create_datagram_endpoint` returned or `set_protocol` set last.
    /// `None` if it is another type, once `connection_lost` has run, or
    /// while it is mutably borrowed (inside one of its own methods).
    pub fn get_protocol<P: DatagramProtocol>(&self) -> Option<Rc<RefCell<P>>> {
        crate::sys::downcast::downcast_datagram_protocol(self.inner.core.protocol()?)
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("fd", &self.inner.core.fd)
            .field("lifecycle", &self.inner.core.lifecycle())
            .field("queued", &self.get_write_buffer_size())
            .finish()
    }
}

impl DatagramInner {
    fn send(&self, data: &[u8], addr: Option<&SockAddr>) -> io::Result<usize> {
        self.core.io(|socket| {
            let s = SockRef::from(socket);
            match addr {
                Some(addr) if !self.connected => s.send_to_with_flags(data, addr, libc::MSG_NOSIGNAL),
                _ => s.send_with_flags(data, libc::MSG_NOSIGNAL),
            }
        })
    }

    /// `error_received`, after the current protocol method if one runs.
    fn error_received(self: &Rc<Self>, e: Error) {
        core::notify(self, Notification::ErrorReceived(e));
    }

    fn watch_write(self: &Rc<Self>) {
        let me = self.clone();
        if let Err(e) = self.core.watch_write(move || me.on_writable()) {
            self.error_received(e);
        }
    }

    fn on_readable(self: &Rc<Self>) {
        if self.core.is_closing() {
            return;
        }
        let mut buf = take_read_buffer();
        let received = self.core.io(|s| recv_from(&SockRef::from(s), &mut buf));
        match received {
            Ok((n, from)) => {
                core::call(self, |p| p.datagram_received(&buf[..n], from));
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => self.error_received(e.into()),
        }
        put_read_buffer(buf);
    }

    fn on_writable(self: &Rc<Self>) {
        if self.core.is_lost() {
            return;
        }
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
                    if self.core.is_lost() {
                        return;
                    }
                }
            }
        }
        core::maybe_resume(self, self.queued_bytes.get());
        if self.core.is_lost() || !self.queue.borrow().is_empty() {
            return;
        }
        self.core.unwatch_write();
        if self.core.lifecycle() == Lifecycle::Closing {
            core::connection_lost(self, None);
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
        let shared: Rc<RefCell<dyn DatagramProtocol>> = protocol.clone();
        let inner = Rc::new(DatagramInner {
            core: Core::new(self, fd, socket, shared)?,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            connected,
        });
        core::register_closer(&inner);
        let transport = DatagramTransport { inner: inner.clone() };
        // As asyncio (and the stream transports): connection_made and the
        // start of reading happen on the next pass, not inside this call.
        let made = self.create_future::<()>();
        let (handle, made_setter) = (transport.clone(), made.clone());
        self.call_soon(move || {
            let inner = &handle.inner;
            if inner.core.is_lost() {
                let _ = made_setter.set_exception(io::Error::from(io::ErrorKind::ConnectionAborted));
                return;
            }
            inner.core.set_made();
            core::call(inner, |p| p.connection_made(&handle));
            if inner.core.is_closing() {
                let _ = made_setter.set_exception(io::Error::from(io::ErrorKind::ConnectionAborted));
                return;
            }
            let me = inner.clone();
            match inner.core.watch_read(move || me.on_readable()) {
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

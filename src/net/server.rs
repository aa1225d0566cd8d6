//! [`Server`]: the listening sockets, accepting, and the connections a
//! server accepted (made by `net/listen.rs`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Duration;

use slotmap::SlotMap;
use socket2::{SockAddr, Socket};

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::net::listen::ServerOptions;
use crate::net::protocol::StreamProtocol;
use crate::net::transport::Transport;
use crate::runtime::event_loop::{Closer, CloserKey, EventLoop, WeakLoop};
use crate::runtime::fds::OwnedSource;
use crate::runtime::handle::TimerHandle;
use crate::runtime::selector::Interest;
use crate::task::future::Future;

/// How long accepting pauses after the process ran out of fds or memory
/// (asyncio's `ACCEPT_RETRY_DELAY`).
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);

slotmap::new_key_type! {
    struct ConnKey;
}

type StartConnection = Box<dyn Fn(&EventLoop, Socket, ServerLink) -> Result<Transport>>;

/// A connection's tie to the server that accepted it: told when the
/// connection is gone (stored in the transport, not boxed: 10k idle
/// connections hold 10k of them).
pub(crate) struct ServerLink {
    server: Weak<ServerInner>,
    key: ConnKey,
}

impl ServerLink {
    /// The connection is gone: the server forgets it (and `wait_closed`
    /// may return).
    pub(crate) fn connection_gone(self) {
        if let Some(server) = self.server.upgrade() {
            let removed = server.connections.borrow_mut().remove(self.key);
            drop(removed);
            server.wake_waiters();
        }
    }
}

struct ServerInner {
    /// Weak, as transports hold it: the loop owns the server's
    /// registrations, not the other way round.
    lp: WeakLoop,
    /// The loop's `close()` closes the server; see [`Server::close`].
    closer: Cell<Option<CloserKey>>,
    /// The future a running `serve_forever` waits on; `close()` cancels it.
    forever: RefCell<Option<Future<()>>>,
    /// Each listening socket with its registration (level-triggered:
    /// `accept_ready` takes at most `backlog` connections per event).
    listeners: RefCell<Vec<(Socket, OwnedSource)>>,
    start_connection: StartConnection,
    backlog: i32,
    serving: Cell<bool>,
    closed: Cell<bool>,
    /// Accepting paused after EMFILE & co., until this timer fires.
    backoff: RefCell<Option<TimerHandle>>,
    /// Accepted connections still open; `None` for the instant between
    /// accepting and starting the transport (its `on_lost` needs the key).
    connections: RefCell<SlotMap<ConnKey, Option<Transport>>>,
    waiters: RefCell<Vec<Future<()>>>,
    /// A Unix server's socket path and the (device, inode) it was bound
    /// as, so `close` removes it only if it is still ours.
    unix_path: Option<(PathBuf, (u64, u64))>,
}

/// A listening server (asyncio's `Server`): accepts connections and runs a
/// protocol for each. Cheap to clone.
///
/// The loop holds a server only weakly: dropping every `Server` handle
/// stops listening (connections already accepted stay open), and closing
/// the loop closes the server.
///
/// # Examples
///
/// ```
/// use evloop::net::{Protocol, Transport};
/// struct Echo(Option<Transport>);
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
///     fn data_received(&mut self, data: &[u8]) { self.0.as_ref().unwrap().write(data).unwrap(); }
/// }
///
/// let lp = evloop::EventLoop::new()?;
/// let l = lp.clone();
/// let echoed = lp.run_until_complete(async move {
///     let server = l.create_server(|| Echo(None), "127.0.0.1", 0, Default::default()).await?;
///     let addr = server.local_addr().unwrap();
///     let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
///     client.set_nonblocking(true)?;
///     l.sock_connect(&client, &addr.into()).await?;
///     l.sock_sendall(&client, b"hi").await?;
///     let echoed = l.sock_recv(&client, 16).await?;
///     server.close();
///     Ok::<_, evloop::Error>(echoed)
/// })??;
/// assert_eq!(echoed, b"hi");
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Rc<ServerInner>,
}

impl ServerInner {
    fn lp(&self) -> Option<EventLoop> {
        self.lp.upgrade()
    }

    fn report(&self, ctx: &ExceptionContext) {
        if let Some(lp) = self.lp() {
            lp.call_exception_handler(ctx);
        }
    }

    fn sources(&self) -> Vec<OwnedSource> {
        self.listeners.borrow().iter().map(|(_, source)| *source).collect()
    }

    fn start_accepting(self: &Rc<Self>) {
        let Some(lp) = self.lp() else { return };
        for source in self.sources() {
            let me = Rc::downgrade(self);
            let added = lp.set_source_callback(source, Interest::Read, move || {
                if let Some(me) = me.upgrade() {
                    me.accept_ready(source);
                }
            });
            if let Err(e) = added {
                let ctx = ExceptionContext::new("server: could not watch a listening socket").with_error(e);
                self.report(&ctx);
            }
        }
    }

    fn stop_accepting(&self) {
        let Some(lp) = self.lp() else { return };
        for source in self.sources() {
            lp.clear_source_callback(source, Interest::Read);
        }
    }

    /// Accepts up to `backlog` connections (asyncio's `_accept_connection`).
    fn accept_ready(self: &Rc<Self>, source: OwnedSource) {
        for _ in 0..self.backlog.max(1) {
            let accepted = {
                let listeners = self.listeners.borrow();
                let Some((listener, _)) = listeners.iter().find(|(_, s)| *s == source) else { return };
                listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            };
            match accepted {
                Ok((socket, _)) => self.start(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The peer gave up between SYN and accept: try the next.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    self.back_off(e);
                    return;
                }
                Err(e) => {
                    let ctx = ExceptionContext::new("server: accept failed").with_error(e.into());
                    self.report(&ctx);
                    return;
                }
            }
        }
    }

    /// Out of fds or memory: report it, stop accepting for a second, then
    /// resume. Established connections are not touched.
    fn back_off(self: &Rc<Self>, e: io::Error) {
        let ctx = ExceptionContext::new(format!(
            "server: accept ran out of a system resource; pausing accepts for {} s",
            ACCEPT_RETRY_DELAY.as_secs_f64()
        ))
        .with_error(e.into());
        self.report(&ctx);
        self.stop_accepting();
        let Some(lp) = self.lp().filter(|lp| !lp.is_closed()) else { return };
        let me = Rc::downgrade(self);
        let timer = lp.call_later(ACCEPT_RETRY_DELAY, move || {
            if let Some(me) = me.upgrade() {
                me.backoff.borrow_mut().take();
                if me.serving.get() {
                    log::debug!(target: "evloop", "server: accept backoff over, accepting again");
                    me.start_accepting();
                }
            }
        });
        let old = self.backoff.borrow_mut().replace(timer);
        if let Some(old) = old {
            old.cancel();
        }
    }

    fn start(self: &Rc<Self>, socket: Socket) {
        let Some(lp) = self.lp() else { return };
        let key = self.connections.borrow_mut().insert(None);
        let link = ServerLink { server: Rc::downgrade(self), key };
        // The protocol factory is user code: a panic in it must not leave
        // the reserved slot behind (wait_closed would never return).
        let started =
            std::panic::catch_unwind(AssertUnwindSafe(|| (self.start_connection)(&lp, socket, link)))
                .unwrap_or_else(|payload| Err(Error::Panicked(panic_message(&*payload))));
        match started {
            Ok(transport) => {
                if let Some(slot) = self.connections.borrow_mut().get_mut(key) {
                    *slot = Some(transport);
                }
            }
            Err(e) => {
                self.connections.borrow_mut().remove(key);
                let ctx = ExceptionContext::new("server: could not start a connection").with_error(e);
                lp.call_exception_handler(&ctx);
            }
        }
    }

    fn wake_waiters(&self) {
        if !self.closed.get() || !self.connections.borrow().is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            let _ = w.set_result(());
        }
    }
}

impl Closer for ServerInner {
    fn close(self: Rc<Self>) {
        Server { inner: self }.close();
    }
}

impl Drop for ServerInner {
    fn drop(&mut self) {
        // Dropped without `close()`: the listening sockets close with this
        // struct, so take them off the loop first; otherwise their readers
        // and the transport claim would stay on fd numbers the next
        // sockets reuse.
        if self.closed.get() {
            return;
        }
        if let Some(lp) = self.lp().filter(|lp| !lp.is_closed()) {
            self.stop_accepting();
            for source in self.sources() {
                lp.release_source(source);
            }
            if let Some(key) = self.closer.take() {
                lp.forget_on_close(key);
            }
        }
    }
}

impl Server {
    /// Starts accepting connections (if not already).
    pub fn start_serving(&self) {
        let inner = &self.inner;
        if inner.closed.get() || inner.serving.replace(true) {
            return;
        }
        inner.start_accepting();
    }

    /// Whether the server is accepting connections.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.get()
    }

    /// Stops listening and closes the listening sockets (removing a Unix
    /// server's socket file), and makes a running
    /// [`serve_forever`](Server::serve_forever) end. Connections already
    /// accepted stay open; see [`close_clients`](Server::close_clients).
    /// Closing the loop closes its servers too (and, separately, their
    /// connections).
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.replace(true) {
            return;
        }
        inner.serving.set(false);
        if let Some(timer) = inner.backoff.borrow_mut().take() {
            timer.cancel();
        }
        inner.stop_accepting();
        let lp = inner.lp();
        if let Some(lp) = &lp {
            for source in inner.sources() {
                lp.release_source(source);
            }
        }
        let listeners = std::mem::take(&mut *inner.listeners.borrow_mut());
        drop(listeners);
        if let Some((path, id)) = &inner.unix_path
            && file_id(path) == Some(*id)
        {
            let _ = std::fs::remove_file(path);
        }
        if let (Some(key), Some(lp)) = (inner.closer.take(), &lp) {
            lp.forget_on_close(key);
        }
        // asyncio cancels the future serve_forever waits on.
        let forever = inner.forever.borrow().clone();
        if let Some(forever) = forever {
            forever.cancel();
        }
        inner.wake_waiters();
    }

    /// Waits until the server is closed and every connection it accepted is
    /// gone (asyncio 3.12's `wait_closed`).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] if the waiting future is cancelled;
    /// [`Error::Closed`] if the loop is gone.
    pub async fn wait_closed(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.get() && inner.connections.borrow().is_empty() {
            return Ok(());
        }
        let fut = inner.lp().ok_or(Error::Closed)?.create_future::<()>();
        inner.waiters.borrow_mut().push(fut.clone());
        fut.await
    }

    /// Accepts connections until the server is closed (asyncio's
    /// `serve_forever`). [`close`](Server::close) makes it end: once the
    /// connections the server accepted are gone it returns
    /// `Err(Error::Cancelled)`, as asyncio's raises `CancelledError`. If the
    /// awaiting task is cancelled, the server is closed.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the server is closed;
    /// [`Error::InvalidState`] if the server is already closed or another
    /// `serve_forever` is running on it (asyncio's `RuntimeError`);
    /// [`Error::Closed`] if the loop is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let ended = lp.run_until_complete(async move {
    ///     let server = evloop::start_server(|_, _| async {}, "127.0.0.1", 0, Default::default()).await?;
    ///     let s = server.clone();
    ///     let serving = evloop::spawn(async move { s.serve_forever().await });
    ///     evloop::yield_now().await;
    ///     assert!(server.serve_forever().await.is_err(), "one serve_forever at a time");
    ///     server.close();
    ///     Ok::<_, evloop::Error>(serving.await?)
    /// })??;
    /// assert!(matches!(ended, Err(evloop::Error::Cancelled)));
    /// # drop(l);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn serve_forever(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.forever.borrow().is_some() {
            return Err(Error::InvalidState("serve_forever() is already running on this server"));
        }
        if inner.closed.get() {
            return Err(Error::InvalidState("the server is closed"));
        }
        let forever = inner.lp().ok_or(Error::Closed)?.create_future::<()>();
        *inner.forever.borrow_mut() = Some(forever.clone());
        self.start_serving();
        struct CloseOnDrop<'a>(&'a Server);
        impl Drop for CloseOnDrop<'_> {
            fn drop(&mut self) {
                let forever = self.0.inner.forever.borrow_mut().take();
                drop(forever);
                self.0.close();
            }
        }
        let _guard = CloseOnDrop(self);
        let ended = (&forever).await;
        // Like asyncio's `await self.wait_closed()` before re-raising.
        self.wait_closed().await?;
        ended
    }

    /// The listening sockets' addresses (asyncio returns the sockets).
    pub fn sockets(&self) -> Vec<SockAddr> {
        self.inner.listeners.borrow().iter().filter_map(|(s, _)| s.local_addr().ok()).collect()
    }

    /// The first listening socket's IP address (handy with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets().iter().find_map(|a| a.as_socket())
    }

    /// Open connections accepted by this server.
    pub fn connections(&self) -> usize {
        self.inner.connections.borrow().len()
    }

    /// Closes every accepted connection gracefully (flushing writes).
    pub fn close_clients(&self) {
        for t in self.transports() {
            t.close();
        }
    }

    /// Aborts every accepted connection.
    pub fn abort_clients(&self) {
        for t in self.transports() {
            t.abort();
        }
    }

    fn transports(&self) -> Vec<Transport> {
        self.inner.connections.borrow().values().flatten().cloned().collect()
    }

    /// The loop the server runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped (the server holds it weakly).
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.inner.lp.get()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.sockets())
            .field("serving", &self.is_serving())
            .field("connections", &self.connections())
            .finish()
    }
}

/// The (device, inode) of the file at `path`, if any.
pub(crate) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl EventLoop {
    /// Claims the listening sockets and makes the server (accepting at
    /// once if `options.start_serving`).
    pub(crate) fn serve<P, F>(
        &self,
        listeners: Vec<Socket>,
        factory: F,
        options: &ServerOptions,
        unix_path: Option<(PathBuf, (u64, u64))>,
    ) -> Result<Server>
    where
        P: StreamProtocol,
        F: Fn() -> P + 'static,
    {
        #[cfg(feature = "tls")]
        if let Some(config) = options.ssl.clone() {
            let tls = crate::net::tls::TlsOptions {
                server_hostname: None,
                ssl_handshake_timeout: options.ssl_handshake_timeout,
                ssl_shutdown_timeout: options.ssl_shutdown_timeout,
            };
            let start_connection: StartConnection = Box::new(move |lp, socket, link| {
                crate::net::tls::start_server_connection(lp, socket, factory(), link, &config, &tls)
            });
            return self.serve_with(listeners, start_connection, options, unix_path);
        }
        let start_connection: StartConnection = Box::new(move |lp, socket, link| {
            Transport::start(lp, socket, factory(), Some(link), None).map(|(t, _)| t)
        });
        self.serve_with(listeners, start_connection, options, unix_path)
    }

    fn serve_with(
        &self,
        listeners: Vec<Socket>,
        start_connection: StartConnection,
        options: &ServerOptions,
        unix_path: Option<(PathBuf, (u64, u64))>,
    ) -> Result<Server> {
        let mut claimed = Vec::with_capacity(listeners.len());
        for socket in listeners {
            let source = match self.claim_source(socket.as_raw_fd()) {
                Ok(source) => source,
                Err(e) => {
                    for (_, source) in claimed {
                        self.release_source(source);
                    }
                    return Err(e);
                }
            };
            claimed.push((socket, source));
        }
        let listeners = claimed;
        let server = Server {
            inner: Rc::new(ServerInner {
                lp: self.downgrade(),
                closer: Cell::new(None),
                forever: RefCell::new(None),
                listeners: RefCell::new(listeners),
                start_connection,
                backlog: options.backlog,
                serving: Cell::new(false),
                closed: Cell::new(false),
                backoff: RefCell::new(None),
                connections: RefCell::new(SlotMap::with_key()),
                waiters: RefCell::new(Vec::new()),
                unix_path,
            }),
        };
        let me: Weak<ServerInner> = Rc::downgrade(&server.inner);
        let key = self.on_close(me);
        server.inner.closer.set(Some(key));
        if options.start_serving {
            server.start_serving();
        }
        Ok(server)
    }
}

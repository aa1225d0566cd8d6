//! Making servers: `create_server` (one host or several),
//! `create_unix_server`, `create_server_from_socket`, and their options.
//!
//! Invariant: either every listening socket a call asked for is bound,
//! listening and handed to the [`Server`], or the call fails and the
//! sockets made so far are closed: nothing is left listening.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::net::connect::nonblocking_stream;
use crate::net::protocol::StreamProtocol;
use crate::net::server::{Server, file_id};
use crate::runtime::event_loop::EventLoop;

/// Options of [`EventLoop::create_server`] and
/// [`EventLoop::create_unix_server`] (asyncio's keyword arguments);
/// `Default::default()` gives asyncio's defaults.
///
/// # Examples
///
/// ```
/// let opts = evloop::net::ServerOptions { backlog: 512, reuse_port: true, ..Default::default() };
/// assert!(opts.reuse_address && opts.start_serving);
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `listen(2)` backlog, and the most connections accepted per readiness
    /// event (asyncio's default: 100).
    pub backlog: i32,
    /// `SO_REUSEADDR` (TCP only; asyncio's default on Unix: on).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (processes) share the port.
    pub reuse_port: bool,
    /// Start accepting at once (otherwise call [`Server::start_serving`]).
    pub start_serving: bool,
    /// Unix servers: remove an existing socket file at the path first (a
    /// stale one left by a crashed process). Off by default: binding to a
    /// path that exists fails with `AddrInUse`.
    pub remove_stale_socket: bool,
    /// Serve TLS with this configuration (asyncio's `ssl`): each accepted
    /// connection does the handshake before its protocol gets
    /// `connection_made`; one that fails is closed and logged at debug
    /// level, as asyncio does. See [`net::tls`](crate::net::tls).
    #[cfg(feature = "tls")]
    pub ssl: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How long a client may take over the TLS handshake (asyncio's
    /// `ssl_handshake_timeout`, default 60 s).
    #[cfg(feature = "tls")]
    pub ssl_handshake_timeout: std::time::Duration,
    /// How long closing a TLS connection waits for the socket to take the
    /// last records (asyncio's `ssl_shutdown_timeout`, default 30 s).
    #[cfg(feature = "tls")]
    pub ssl_shutdown_timeout: std::time::Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
            start_serving: true,
            remove_stale_socket: false,
            #[cfg(feature = "tls")]
            ssl: None,
            #[cfg(feature = "tls")]
            ssl_handshake_timeout: crate::net::tls::DEFAULT_HANDSHAKE_TIMEOUT,
            #[cfg(feature = "tls")]
            ssl_shutdown_timeout: crate::net::tls::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// The `host` argument of [`EventLoop::create_server`] and
/// [`start_server`](crate::start_server): one host, or several (asyncio
/// accepts a string or a sequence). `""` means every interface (IPv4 and
/// IPv6). Each host is resolved and the server listens once on every
/// distinct address found.
///
/// # Examples
///
/// ```
/// use evloop::net::ServerHosts;
/// assert_eq!("localhost".hosts(), ["localhost"]);
/// assert_eq!(["127.0.0.1", "::1"].hosts(), ["127.0.0.1", "::1"]);
/// assert_eq!(vec![String::new()].hosts(), [""]);
/// ```
pub trait ServerHosts {
    /// The hosts, in order.
    fn hosts(&self) -> Vec<String>;
}

impl ServerHosts for str {
    fn hosts(&self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl ServerHosts for String {
    fn hosts(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<H: AsRef<str>> ServerHosts for [H] {
    fn hosts(&self) -> Vec<String> {
        self.iter().map(|h| h.as_ref().to_owned()).collect()
    }
}

impl<H: AsRef<str>, const N: usize> ServerHosts for [H; N] {
    fn hosts(&self) -> Vec<String> {
        self[..].hosts()
    }
}

impl<H: AsRef<str>> ServerHosts for Vec<H> {
    fn hosts(&self) -> Vec<String> {
        self[..].hosts()
    }
}

impl<T: ServerHosts + ?Sized> ServerHosts for &T {
    fn hosts(&self) -> Vec<String> {
        (**self).hosts()
    }
}

pub(crate) fn listen_on(addr: SocketAddr, options: &ServerOptions) -> io::Result<Socket> {
    let socket = nonblocking_stream(Domain::for_address(addr))?;
    if options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // Keep the IPv4 and IPv6 sockets of "all interfaces" apart.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    Ok(socket)
}

impl EventLoop {
    /// Listens on `host:port` and runs a protocol made by `factory` for each
    /// connection (asyncio's `create_server`). An empty `host` listens on
    /// every interface (IPv4 and IPv6); several hosts (`["127.0.0.1",
    /// "::1"]`, see [`ServerHosts`]) give one listening socket per distinct
    /// address they resolve to. Port 0 picks a free port, for each socket
    /// on its own (see [`Server::sockets`]). `options` as asyncio's keyword
    /// arguments; `Default::default()` for asyncio's defaults. To serve on
    /// a socket you made, see
    /// [`create_server_from_socket`](EventLoop::create_server_from_socket).
    ///
    /// The server holds its loop weakly; closing the loop closes it (and,
    /// separately, every connection it accepted).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from resolving, `bind` or `listen` (e.g. `AddrInUse`,
    /// "listen on 127.0.0.1:8080: …"); nothing is left listening then.
    /// `InvalidInput` for an empty list of hosts.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{Protocol, ServerOptions, Transport};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.write(b"hello\n").unwrap();
    ///         t.close();
    ///     }
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let greeting = lp.run_until_complete(async move {
    ///     let options = ServerOptions { backlog: 512, ..Default::default() };
    ///     let server = l.create_server(|| Hello, "127.0.0.1", 0, options).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let (mut reader, _writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    ///     let greeting = reader.read_to_end().await?;
    ///     server.close();
    ///     Ok::<_, evloop::Error>(greeting)
    /// })??;
    /// assert_eq!(greeting, b"hello\n");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn create_server<P, F>(
        &self,
        factory: F,
        host: impl ServerHosts,
        port: u16,
        options: ServerOptions,
    ) -> Result<Server>
    where
        P: StreamProtocol,
        F: Fn() -> P + 'static,
    {
        // (address, from the "all interfaces" host: IPv6 may be missing)
        let mut addrs: Vec<(SocketAddr, bool)> = Vec::new();
        for host in host.hosts() {
            let resolved = if host.is_empty() {
                vec![SocketAddr::from(([0, 0, 0, 0], port)), SocketAddr::from(([0u16; 8], port))]
            } else {
                self.getaddrinfo(&host, port).await?
            };
            for addr in resolved {
                // asyncio listens once per distinct address.
                if !addrs.iter().any(|(a, _)| *a == addr) {
                    addrs.push((addr, host.is_empty()));
                }
            }
        }
        if addrs.is_empty() {
            return Err(
                io::Error::new(io::ErrorKind::InvalidInput, "create_server: no host to listen on").into()
            );
        }
        let mut listeners = Vec::new();
        for (addr, all_interfaces) in addrs {
            match listen_on(addr, &options) {
                Ok(socket) => listeners.push(socket),
                // "All interfaces" on a machine without IPv6: IPv4 alone.
                Err(e)
                    if all_interfaces
                        && addr.is_ipv6()
                        && matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)) => {}
                // The sockets made so far close as `listeners` drops.
                Err(e) => return Err(Error::io_context(e, format_args!("listen on {addr}"))),
            }
        }
        self.serve(listeners, factory, &options, None)
    }

    /// Serves on a socket the caller made (asyncio's `create_server(sock=…)`
    /// and `create_unix_server(sock=…)`): a bound TCP or Unix stream socket,
    /// listening or not (it is made nonblocking and `listen(backlog)` is
    /// called, as asyncio does). The server owns it from now on. Of the
    /// `options`, `backlog` and `start_serving` apply; the socket options
    /// (`reuse_address`, `reuse_port`) are the caller's to set, and a Unix
    /// socket's file is not removed by [`Server::close`] (asyncio removes
    /// only a file it bound itself).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the socket is not a stream socket; [`Error::Io`]
    /// from `listen`.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{Domain, Protocol, Socket, Transport, Type};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.write(b"hello").unwrap();
    ///         t.close();
    ///     }
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    /// socket.set_reuse_address(true)?;
    /// socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())?;
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let greeting = lp.run_until_complete(async move {
    ///     let server = l.create_server_from_socket(|| Hello, socket, Default::default()).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let (mut reader, _w) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    ///     let greeting = reader.read_to_end().await?;
    ///     server.close();
    ///     Ok::<_, evloop::Error>(greeting)
    /// })??;
    /// assert_eq!(greeting, b"hello");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn create_server_from_socket<P, F>(
        &self,
        factory: F,
        socket: impl Into<Socket>,
        options: ServerOptions,
    ) -> Result<Server>
    where
        P: StreamProtocol,
        F: Fn() -> P + 'static,
    {
        let socket = socket.into();
        if socket.r#type()? != Type::STREAM {
            let msg = "create_server_from_socket: a stream socket was expected";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg).into());
        }
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.listen(options.backlog)?;
        self.serve(vec![socket], factory, &options, None)
    }

    /// Listens on the Unix socket `path` (asyncio's `create_unix_server`);
    /// `options.remove_stale_socket` removes an existing socket file first
    /// (only a socket: any other kind of file is an error).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] from `bind` (e.g. `AddrInUse` if the path exists) or
    /// `listen`.
    pub async fn create_unix_server<P, F>(
        &self,
        factory: F,
        path: impl AsRef<Path>,
        options: ServerOptions,
    ) -> Result<Server>
    where
        P: StreamProtocol,
        F: Fn() -> P + 'static,
    {
        let path = path.as_ref();
        if options.remove_stale_socket {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    let msg = format!("{} exists and is not a socket", path.display());
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, msg).into());
                }
                std::fs::remove_file(path)?;
            }
        }
        let socket = nonblocking_stream(Domain::UNIX)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(options.backlog)?;
        let id = file_id(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.serve(vec![socket], factory, &options, Some((path.to_owned(), id)))
    }
}

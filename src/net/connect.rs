//! The client side: `create_connection` and its options, the Unix twin,
//! connections over a socket the caller made, and RFC 8305's staggered
//! connect (asyncio's `staggered_race` with `_connect_sock`).
//!
//! Invariant: every socket an attempt opens is owned by that attempt's
//! future, so a losing, failed or cancelled attempt closes its socket
//! when the future is dropped; only the winner's socket reaches a
//! transport, and the caller gets it only after `connection_made` ran.

use std::cell::RefCell;
use std::fmt;
use std::future::Future as StdFuture;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::net::protocol::StreamProtocol;
use crate::net::transport::Transport;
use crate::runtime::event_loop::EventLoop;
use crate::task::{Sleep, sleep};

/// Options of [`EventLoop::create_connection`] and the other
/// connecting methods (asyncio's keyword arguments of
/// `create_connection`); `ConnectOptions::default()` gives asyncio's
/// defaults. Fields may be added: build it with the setters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let opts = evloop::net::ConnectOptions::new()
///     .local_addr("127.0.0.1", 0)
///     .happy_eyeballs_delay(Duration::from_millis(250));
/// assert_eq!(opts.local_addr, Some(("127.0.0.1".to_owned(), 0)));
/// assert_eq!(opts.interleave, None); // the delay implies 1 (see the field)
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Bind the socket here before connecting (asyncio's `local_addr`):
    /// the host is resolved like the remote one, and each attempt binds
    /// to the first of its addresses in the attempt's family that works.
    pub local_addr: Option<(String, u16)>,
    /// RFC 8305 "Happy Eyeballs" (asyncio's `happy_eyeballs_delay`): start
    /// the next address's attempt when the previous one failed or after
    /// this delay, whichever comes first, and keep the first that
    /// connects. `None` (the default) tries the addresses one after the
    /// other. RFC 8305 recommends 250 ms.
    pub happy_eyeballs_delay: Option<Duration>,
    /// Reorder the addresses by family, taking this many of the first
    /// family first and then alternating (asyncio's `interleave`). `None`
    /// keeps the resolver's order, unless `happy_eyeballs_delay` is set:
    /// then 1, as in asyncio.
    pub interleave: Option<usize>,
    /// Speak TLS with this client configuration (asyncio's `ssl`): the
    /// connection is returned after the handshake, and the protocol gets
    /// `connection_made` then. See [`net::tls`](crate::net::tls).
    #[cfg(feature = "tls")]
    pub ssl: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The name the server's certificate must match, sent as SNI
    /// (asyncio's `server_hostname`). Default: the host connected to; for
    /// a Unix socket or [`create_connection_to`](EventLoop::create_connection_to),
    /// the peer's IP address (none for Unix: set it).
    #[cfg(feature = "tls")]
    pub server_hostname: Option<String>,
    /// How long the TLS handshake may take (asyncio's
    /// `ssl_handshake_timeout`; `None`: 60 s).
    #[cfg(feature = "tls")]
    pub ssl_handshake_timeout: Option<Duration>,
    /// How long closing waits for the last TLS records to go (asyncio's
    /// `ssl_shutdown_timeout`; `None`: 30 s).
    #[cfg(feature = "tls")]
    pub ssl_shutdown_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// asyncio's defaults (the same as `Default::default()`).
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Sets [`local_addr`](ConnectOptions::local_addr).
    pub fn local_addr(mut self, host: impl Into<String>, port: u16) -> ConnectOptions {
        self.local_addr = Some((host.into(), port));
        self
    }

    /// Sets [`happy_eyeballs_delay`](ConnectOptions::happy_eyeballs_delay).
    pub fn happy_eyeballs_delay(mut self, delay: Duration) -> ConnectOptions {
        self.happy_eyeballs_delay = Some(delay);
        self
    }

    /// Sets [`interleave`](ConnectOptions::interleave).
    pub fn interleave(mut self, first_family_count: usize) -> ConnectOptions {
        self.interleave = Some(first_family_count);
        self
    }

    /// Sets [`ssl`](ConnectOptions::ssl).
    #[cfg(feature = "tls")]
    pub fn ssl(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> ConnectOptions {
        self.ssl = Some(config);
        self
    }

    /// Sets [`server_hostname`](ConnectOptions::server_hostname).
    #[cfg(feature = "tls")]
    pub fn server_hostname(mut self, name: impl Into<String>) -> ConnectOptions {
        self.server_hostname = Some(name.into());
        self
    }

    /// Sets [`ssl_handshake_timeout`](ConnectOptions::ssl_handshake_timeout).
    #[cfg(feature = "tls")]
    pub fn ssl_handshake_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.ssl_handshake_timeout = Some(timeout);
        self
    }

    /// Sets [`ssl_shutdown_timeout`](ConnectOptions::ssl_shutdown_timeout).
    #[cfg(feature = "tls")]
    pub fn ssl_shutdown_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.ssl_shutdown_timeout = Some(timeout);
        self
    }

    /// Makes the connection on `socket`: with TLS if asked for.
    async fn start_on<P: StreamProtocol>(
        &self,
        lp: &EventLoop,
        socket: Socket,
        protocol: P,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        #[cfg(feature = "tls")]
        if let Some(config) = &self.ssl {
            let tls = crate::net::tls::TlsOptions {
                server_hostname: self.server_hostname.clone(),
                ssl_handshake_timeout: self
                    .ssl_handshake_timeout
                    .unwrap_or(crate::net::tls::DEFAULT_HANDSHAKE_TIMEOUT),
                ssl_shutdown_timeout: self
                    .ssl_shutdown_timeout
                    .unwrap_or(crate::net::tls::DEFAULT_SHUTDOWN_TIMEOUT),
            };
            return crate::net::tls::connect_tls(lp, socket, protocol, config.clone(), &tls).await;
        }
        lp.start_transport(socket, protocol).await
    }

    /// The interleave in effect: the delay implies 1 (asyncio).
    fn effective_interleave(&self) -> Option<usize> {
        self.interleave.or(self.happy_eyeballs_delay.map(|_| 1))
    }

    /// Refuses the options that only a TCP connection to a host has.
    fn check_unix(&self) -> Result<()> {
        if self.local_addr.is_some() || self.happy_eyeballs_delay.is_some() || self.interleave.is_some() {
            let msg = "local_addr, happy_eyeballs_delay and interleave apply only when connecting to a host";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg).into());
        }
        Ok(())
    }
}

pub(crate) fn nonblocking_stream(domain: Domain) -> io::Result<Socket> {
    Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)
}

/// asyncio's `_interleave_addrinfos`: group by family in order of first
/// appearance, take `first_family_count - 1` of the first family, then one
/// of each family in turn.
pub(crate) fn interleave(addrs: Vec<SocketAddr>, first_family_count: usize) -> Vec<SocketAddr> {
    let mut families: Vec<Vec<SocketAddr>> = Vec::new();
    for addr in addrs {
        match families.iter_mut().find(|f| f[0].is_ipv4() == addr.is_ipv4()) {
            Some(family) => family.push(addr),
            None => families.push(vec![addr]),
        }
    }
    let mut queues: Vec<std::collections::VecDeque<SocketAddr>> =
        families.into_iter().map(Into::into).collect();
    let mut out = Vec::new();
    if let Some(first) = queues.first_mut() {
        let head = first_family_count.saturating_sub(1).min(first.len());
        out.extend(first.drain(..head));
    }
    while queues.iter().any(|q| !q.is_empty()) {
        for q in &mut queues {
            out.extend(q.pop_front());
        }
    }
    out
}

/// Binds `socket` to the first of `local` in `remote`'s family that works
/// (asyncio's `_connect_sock`).
fn bind_local(socket: &Socket, remote: SocketAddr, local: &[SocketAddr]) -> Result<()> {
    let mut last = None;
    for laddr in local.iter().filter(|l| l.is_ipv4() == remote.is_ipv4()) {
        match socket.bind(&(*laddr).into()) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(Error::io_context(e, format_args!("bind to local address {laddr}"))),
        }
    }
    Err(last.unwrap_or_else(|| {
        let family = if remote.is_ipv4() { "IPv4" } else { "IPv6" };
        let msg = format!("connect to {remote}: no local address in the {family} family");
        io::Error::new(io::ErrorKind::AddrNotAvailable, msg).into()
    }))
}

/// One attempt: a fresh socket, bound if asked, connected to `addr`.
async fn connect_one(lp: EventLoop, addr: SocketAddr, local: Rc<[SocketAddr]>) -> Result<Socket> {
    let socket = nonblocking_stream(Domain::for_address(addr))?;
    if !local.is_empty() {
        bind_local(&socket, addr, &local)?;
    }
    let connected = lp.sock_connect(&socket, &addr.into()).await;
    connected.map_err(|e| e.with_context(format_args!("connect to {addr}")))?;
    Ok(socket)
}

/// asyncio's rule for the error of a failed `create_connection`: one error
/// as it is; several with the same text, the first; else one listing all.
fn combine(mut errors: Vec<Error>) -> Error {
    if errors.len() <= 1 {
        return errors
            .pop()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to").into());
    }
    let first = errors[0].to_string();
    if errors.iter().all(|e| e.to_string() == first) {
        return errors.swap_remove(0);
    }
    let kind = match &errors[0] {
        Error::Io(e) if errors.iter().all(|x| matches!(x, Error::Io(o) if o.kind() == e.kind())) => e.kind(),
        _ => io::ErrorKind::Other,
    };
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    io::Error::new(kind, format!("multiple errors: {}", all.join("; "))).into()
}

type Attempt = Pin<Box<dyn StdFuture<Output = Result<Socket>>>>;

/// RFC 8305's staggered race (asyncio's `staggered_race`): attempt `i + 1`
/// starts when attempt `i` fails or `delay` after it started; the first to
/// connect wins and the others are dropped (which closes their sockets).
struct Staggered {
    lp: EventLoop,
    local: Rc<[SocketAddr]>,
    waiting: std::vec::IntoIter<SocketAddr>,
    running: Vec<(usize, Attempt)>,
    /// When the next attempt starts unless the latest one fails first.
    next_start: Option<Sleep>,
    delay: Duration,
    /// Failures, by attempt index.
    errors: Vec<(usize, Error)>,
    started: usize,
}

impl Staggered {
    fn start_next(&mut self) {
        self.next_start = None;
        let Some(addr) = self.waiting.next() else { return };
        let attempt = connect_one(self.lp.clone(), addr, self.local.clone());
        self.running.push((self.started, Box::pin(attempt)));
        self.started += 1;
        self.next_start = Some(sleep(self.delay));
    }
}

impl StdFuture for Staggered {
    type Output = Result<Socket>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Socket>> {
        let this = &mut *self;
        loop {
            let mut i = 0;
            while i < this.running.len() {
                match this.running[i].1.as_mut().poll(cx) {
                    // Returning drops the other attempts: their sockets close.
                    Poll::Ready(Ok(socket)) => return Poll::Ready(Ok(socket)),
                    Poll::Ready(Err(e)) => {
                        let (index, _) = this.running.remove(i);
                        this.errors.push((index, e));
                        // The latest attempt failed: start the next now.
                        if index + 1 == this.started {
                            this.start_next();
                        }
                    }
                    Poll::Pending => i += 1,
                }
            }
            match this.next_start.as_mut().map(|s| Pin::new(s).poll(cx)) {
                Some(Poll::Ready(())) => this.start_next(),
                _ if this.running.is_empty() => {
                    let mut errors = std::mem::take(&mut this.errors);
                    errors.sort_by_key(|(index, _)| *index);
                    return Poll::Ready(Err(combine(errors.into_iter().map(|(_, e)| e).collect())));
                }
                _ => return Poll::Pending,
            }
        }
    }
}

impl fmt::Debug for Staggered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staggered").field("running", &self.running.len()).finish()
    }
}

impl EventLoop {
    /// Connects to `host:port` and runs the protocol made by `factory` on
    /// the connection (asyncio's `create_connection`; its keyword
    /// arguments are the [`ConnectOptions`]: a local address to bind,
    /// Happy Eyeballs, address interleaving, TLS). `host` is resolved with
    /// [`getaddrinfo`](EventLoop::getaddrinfo); each address is tried in
    /// turn (or staggered, with Happy Eyeballs) until one connects.
    /// Returns once `connection_made` has run.
    ///
    /// # Errors
    ///
    /// The connection error if no address connects (e.g.
    /// `ConnectionRefused`, its message naming the address: "connect to
    /// 127.0.0.1:1: Connection refused"; with several addresses, one error
    /// listing each), or the resolver's error (also for `local_addr`); a
    /// bind error ("bind to local address …") if no local address of the
    /// attempt's family binds.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{Protocol, Transport};
    ///
    /// /// Sends a greeting and collects the reply.
    /// #[derive(Default)]
    /// struct Client(Vec<u8>);
    /// impl Protocol for Client {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.write(b"ping").unwrap();
    ///         t.write_eof();
    ///     }
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.0.extend_from_slice(data);
    ///     }
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let reply = lp.run_until_complete(async move {
    ///     let echo = |mut r: evloop::StreamReader, w: evloop::StreamWriter| async move {
    ///         let all = r.read_to_end().await.unwrap();
    ///         w.write(&all).unwrap();
    ///         w.close();
    ///     };
    ///     let server = evloop::start_server(echo, "127.0.0.1", 0, Default::default()).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let (transport, client) = l.create_connection(Client::default, "127.0.0.1", port, Default::default()).await?;
    ///     while !transport.is_closing() {
    ///         evloop::yield_now().await; // the server closes after echoing
    ///     }
    ///     server.close();
    ///     let reply = client.borrow().0.clone();
    ///     Ok::<_, evloop::Error>(reply)
    /// })??;
    /// assert_eq!(reply, b"ping");
    ///
    /// let l = lp.clone();
    /// let refused = lp.run_until_complete(async move {
    ///     l.create_connection(Client::default, "127.0.0.1", 1, Default::default()).await.map(|_| ())
    /// })?;
    /// assert!(refused.unwrap_err().to_string().contains("connect to 127.0.0.1:1"));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    /// With options:
    ///
    ///
    /// ```
    /// use evloop::net::{ConnectOptions, Protocol};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let local = lp.run_until_complete(async move {
    ///     let server = evloop::start_server(|_, _| async {}, "127.0.0.1", 0, Default::default()).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let options = ConnectOptions::new().local_addr("127.0.0.2", 0);
    ///     let (transport, _) = l.create_connection(|| Quiet, "127.0.0.1", port, options).await?;
    ///     let local = transport.local_addr().unwrap();
    ///     transport.close();
    ///     server.close();
    ///     Ok::<_, evloop::Error>(local)
    /// })??;
    /// assert_eq!(local.ip().to_string(), "127.0.0.2");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn create_connection<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        host: &str,
        port: u16,
        options: ConnectOptions,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        #[cfg(feature = "tls")]
        let options = {
            let mut options = options;
            // asyncio: server_hostname defaults to the host.
            if options.ssl.is_some() && options.server_hostname.is_none() {
                options.server_hostname = Some(host.to_owned());
            }
            options
        };
        let addrs = self.getaddrinfo(host, port).await?;
        self.create_connection_to(factory, addrs, options).await
    }

    /// [`create_connection`](EventLoop::create_connection) to
    /// addresses the caller resolved (its own resolver, SRV records…): the
    /// same attempts, interleaving and Happy Eyeballs over `addrs`, in
    /// their order. Not in asyncio (which always resolves `host`).
    ///
    /// # Errors
    ///
    /// As [`create_connection`](EventLoop::create_connection);
    /// `NotFound` if `addrs` is empty.
    pub async fn create_connection_to<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        addrs: impl IntoIterator<Item = SocketAddr>,
        options: ConnectOptions,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        let mut addrs: Vec<SocketAddr> = addrs.into_iter().collect();
        let local: Rc<[SocketAddr]> = match &options.local_addr {
            Some((host, port)) => self.getaddrinfo(host, *port).await?.into(),
            None => Rc::from([]),
        };
        if let Some(count) = options.effective_interleave() {
            addrs = interleave(addrs, count);
        }
        let socket = match options.happy_eyeballs_delay {
            None => {
                let mut errors = Vec::new();
                let mut connected = None;
                for addr in addrs {
                    match connect_one(self.clone(), addr, local.clone()).await {
                        Ok(socket) => {
                            connected = Some(socket);
                            break;
                        }
                        Err(e) => errors.push(e),
                    }
                }
                connected.ok_or_else(|| combine(errors))?
            }
            Some(delay) => {
                let mut race = Staggered {
                    lp: self.clone(),
                    local,
                    waiting: addrs.into_iter(),
                    running: Vec::new(),
                    next_start: None,
                    delay,
                    errors: Vec::new(),
                    started: 0,
                };
                race.start_next();
                race.await?
            }
        };
        options.start_on(self, socket, factory()).await
    }

    /// Connects to the Unix socket at `path` (asyncio's
    /// `create_unix_connection`). Of the [`ConnectOptions`], the TCP-only
    /// ones (`local_addr`, `happy_eyeballs_delay`, `interleave`) are
    /// refused, as asyncio's signature has none of them.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a TCP-only option; [`Error::Io`] from `connect`.
    pub async fn create_unix_connection<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        path: impl AsRef<Path>,
        options: ConnectOptions,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        options.check_unix()?;
        let path = path.as_ref();
        let socket = nonblocking_stream(Domain::UNIX)?;
        let connected = self.sock_connect(&socket, &SockAddr::unix(path)?).await;
        connected.map_err(|e| e.with_context(format_args!("connect to {}", path.display())))?;
        options.start_on(self, socket, factory()).await
    }

    /// Runs the protocol made by `factory` on a stream socket the caller
    /// connected (asyncio's `create_connection(sock=…)`): TCP or Unix,
    /// made nonblocking; the transport owns it from now on. Unlike
    /// [`connect_accepted_socket`](EventLoop::connect_accepted_socket) (the
    /// server side), `options` are a client's. The options that choose how
    /// to connect (`local_addr`, `happy_eyeballs_delay`, `interleave`) are
    /// refused: the socket is already connected.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the socket is not a stream socket or an option
    /// does not apply; [`Error::Io`] if it cannot be made nonblocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{ConnectOptions, Protocol, Transport};
    ///
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         t.write(b"hello").unwrap();
    ///     }
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let socket = std::net::TcpStream::connect(listener.local_addr()?)?;
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let (transport, _) = lp.run_until_complete(async move {
    ///     l.create_connection_from_socket(|| Hello, socket, ConnectOptions::new()).await
    /// })??;
    /// let mut got = [0; 5];
    /// std::io::Read::read_exact(&mut listener.accept()?.0, &mut got)?;
    /// assert_eq!(&got, b"hello");
    /// transport.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn create_connection_from_socket<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        socket: impl Into<Socket>,
        options: ConnectOptions,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        let socket = socket.into();
        options.check_unix()?;
        if socket.r#type()? != Type::STREAM {
            let msg = "create_connection_from_socket: a stream socket was expected";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg).into());
        }
        self.start_transport(socket, factory()).await
    }

    /// Runs a protocol on a socket that is already connected, e.g. one
    /// accepted elsewhere (asyncio's `connect_accepted_socket`). The socket
    /// is switched to nonblocking mode; the transport owns it from now on.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the socket cannot be made nonblocking.
    pub async fn connect_accepted_socket<P: StreamProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        socket: impl Into<Socket>,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        self.start_transport(socket.into(), factory()).await
    }

    pub(crate) async fn start_transport<P: StreamProtocol>(
        &self,
        socket: Socket,
        protocol: P,
    ) -> Result<(Transport, Rc<RefCell<P>>)> {
        let made = self.create_future::<()>();
        let started = Transport::start(self, socket, protocol, None, Some(made.clone()))?;
        // If the caller is cancelled before connection_made has run, nobody
        // will ever get this transport: abort it rather than leak an open
        // connection (asyncio closes it too).
        struct AbortOnDrop(Option<Transport>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                if let Some(t) = self.0.take() {
                    t.abort();
                }
            }
        }
        let mut guard = AbortOnDrop(Some(started.0.clone()));
        made.await?;
        guard.0 = None;
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 80))
    }

    fn v6(n: u16) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, n], 80))
    }

    /// asyncio's `_interleave_addrinfos` on the same inputs.
    #[test]
    fn interleave_matches_asyncio() {
        let addrs = vec![v6(1), v6(2), v6(3), v4(1), v4(2)];
        assert_eq!(interleave(addrs.clone(), 1), vec![v6(1), v4(1), v6(2), v4(2), v6(3)]);
        assert_eq!(interleave(addrs.clone(), 2), vec![v6(1), v6(2), v4(1), v6(3), v4(2)]);
        assert_eq!(interleave(addrs.clone(), 9), vec![v6(1), v6(2), v6(3), v4(1), v4(2)]);
        assert_eq!(interleave(vec![v4(1), v4(2)], 1), vec![v4(1), v4(2)]);
        assert_eq!(interleave(Vec::new(), 1), Vec::<SocketAddr>::new());
    }

    #[test]
    fn errors_combine_as_asyncio() {
        let refused = || Error::io_context(io::ErrorKind::ConnectionRefused.into(), "connect to a");
        assert_eq!(combine(vec![refused()]).to_string(), refused().to_string());
        assert_eq!(combine(vec![refused(), refused()]).to_string(), refused().to_string());
        let other = Error::io_context(io::ErrorKind::ConnectionRefused.into(), "connect to b");
        let both = combine(vec![refused(), other]);
        assert!(both.to_string().contains("connect to a") && both.to_string().contains("connect to b"));
        assert!(matches!(&both, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused));
    }
}

//! asyncio's `get_extra_info` for both transport kinds: the socket,
//! `sockname` and `peername`, by asyncio's names or typed.
//!
//! Invariant: user code never runs while a transport's socket is
//! borrowed, and nothing lent out can close or detach it. The socket is
//! lent to a closure as a duplicate fd of the same socket (`dup(2)`),
//! closed when the closure returns, so no view outlives the call either
//! (a kept duplicate would hold the connection open after `close()`).

use std::fmt;
use std::os::fd::RawFd;

use socket2::{SockAddr, Socket};

use crate::error::Result;
use crate::net::core::{Lifecycle, TransportKind};
use crate::net::transport::Transport;
use crate::net::udp::DatagramTransport;

/// A value of `get_extra_info` ([`Transport::get_extra_info`],
/// [`DatagramTransport::get_extra_info`]), named by asyncio's key. More
/// keys may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `"socket"`: the transport's socket, as a view that cannot close it.
    Socket(SocketView),
    /// `"sockname"`: the socket's own address.
    Sockname(SockAddr),
    /// `"peername"`: the peer's address (connected sockets only).
    Peername(SockAddr),
    /// `"peercert"` (TLS only): the peer's certificate chain, DER, leaf
    /// first, as [`Transport::peer_certificates`] gives it (asyncio gives a
    /// decoded dict of the leaf).
    #[cfg(feature = "tls")]
    PeerCert(Vec<crate::net::tls::pki_types::CertificateDer<'static>>),
    /// `"cipher"` (TLS only): asyncio's `(name, protocol version, secret
    /// bits)`, e.g. `("TLS13_AES_256_GCM_SHA384", "TLSv1.3", 256)`.
    #[cfg(feature = "tls")]
    Cipher(String, String, u32),
    /// `"ssl_object"` (TLS only): the negotiated session's details.
    #[cfg(feature = "tls")]
    SslObject(crate::net::tls::TlsInfo),
}

/// A transport's socket as `get_extra_info("socket")` gives it (asyncio's
/// `TransportSocket`): socket options and addresses can be read and set
/// through it, but it cannot close or detach the transport's socket.
///
/// [`with`](SocketView::with) lends the socket to a closure. Leave it
/// nonblocking, and do not read or write through it: the transport does
/// that, and its buffers would not know.
#[derive(Clone)]
pub struct SocketView {
    owner: Owner,
}

#[derive(Clone)]
enum Owner {
    Stream(Transport),
    Datagram(DatagramTransport),
}

impl SocketView {
    /// Runs `f` on the socket (see [`Transport::with_socket`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`](crate::Error::InvalidState) once the
    /// transport is closed; [`Error::Io`](crate::Error::Io) from `dup`.
    pub fn with<T>(&self, f: impl FnOnce(&Socket) -> T) -> Result<T> {
        match &self.owner {
            Owner::Stream(t) => t.with_socket(f),
            Owner::Datagram(t) => t.with_socket(f),
        }
    }

    /// The socket's fd number (asyncio's `fileno()`); it stays the
    /// transport's.
    pub fn fd(&self) -> RawFd {
        match &self.owner {
            Owner::Stream(t) => t.fd(),
            Owner::Datagram(t) => t.inner.core().fd,
        }
    }
}

impl fmt::Debug for SocketView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketView").field("fd", &self.fd()).finish()
    }
}

/// asyncio's keys, shared by both transport kinds.
fn lookup(
    name: &str,
    open: bool,
    view: impl FnOnce() -> SocketView,
    sockname: impl FnOnce() -> Result<SockAddr>,
    peername: impl FnOnce() -> Result<SockAddr>,
) -> Option<ExtraInfo> {
    match name {
        "socket" if open => Some(ExtraInfo::Socket(view())),
        "sockname" => sockname().ok().map(ExtraInfo::Sockname),
        "peername" => peername().ok().map(ExtraInfo::Peername),
        _ => None,
    }
}

impl Transport {
    /// Runs `f` on the transport's socket, to read or set socket options
    /// (asyncio's `get_extra_info("socket")`). `f` gets a duplicate fd of
    /// the same socket, closed when `f` returns: options set through it
    /// apply to the transport's socket, and `f` may call any transport
    /// method. Leave the socket nonblocking and do not read or write
    /// through it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`](crate::Error::InvalidState) ("the transport
    /// is closed") once `connection_lost` has run;
    /// [`Error::Io`](crate::Error::Io) from `dup` (out of fds).
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{Protocol, Transport};
    ///
    /// struct Idle;
    /// impl Protocol for Idle {
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let keepalive = lp.run_until_complete(async move {
    ///     let server = l.create_server(|| Idle, "127.0.0.1", 0, Default::default()).await?;
    ///     let port = server.local_addr().unwrap().port();
    ///     let (t, _) = l.create_connection(|| Idle, "127.0.0.1", port, Default::default()).await?;
    ///     t.with_socket(|s| s.set_keepalive(true))??;
    ///     let keepalive = t.with_socket(|s| s.keepalive())??;
    ///     t.close();
    ///     server.close();
    ///     Ok::<_, evloop::Error>(keepalive)
    /// })??;
    /// assert!(keepalive);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn with_socket<T>(&self, f: impl FnOnce(&Socket) -> T) -> Result<T> {
        self.inner.core().with_socket_dup(f)
    }

    /// asyncio's `get_extra_info(name)` for the keys a socket transport
    /// has: `"socket"` ([`ExtraInfo::Socket`]), `"sockname"`
    /// ([`local_sockaddr`](Transport::local_sockaddr)), `"peername"`
    /// ([`peer_sockaddr`](Transport::peer_sockaddr)); on a TLS transport
    /// also `"peercert"`, `"cipher"` and `"ssl_object"` (once the
    /// handshake is done; `None` on plain ones). `"sslcontext"` is not
    /// kept: the rustls config is the caller's. `None` for other
    /// keys and, unlike asyncio (which keeps what it read when the
    /// transport was made), once the socket is closed: the values are read
    /// when asked.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::net::{ExtraInfo, Protocol};
    ///
    /// struct Idle;
    /// impl Protocol for Idle {
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// lp.run_until_complete(async move {
    ///     let server = l.create_server(|| Idle, "127.0.0.1", 0, Default::default()).await?;
    ///     let addr = server.local_addr().unwrap();
    ///     let (t, _) = l.create_connection(|| Idle, "127.0.0.1", addr.port(), Default::default()).await?;
    ///     let Some(ExtraInfo::Peername(peer)) = t.get_extra_info("peername") else { panic!() };
    ///     assert_eq!(peer.as_socket(), Some(addr));
    ///     assert!(t.get_extra_info("no such key").is_none());
    ///     t.close();
    ///     server.close();
    ///     Ok::<_, evloop::Error>(())
    /// })??;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        #[cfg(feature = "tls")]
        match name {
            "peercert" => return self.peer_certificates().map(ExtraInfo::PeerCert),
            "cipher" => {
                let info = self.tls_info()?;
                let suite = info.cipher_suite.suite();
                let name = suite.as_str().map_or_else(|| format!("{suite:?}"), str::to_owned);
                let version = match info.version {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
                    rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
                    v => format!("{v:?}"),
                };
                return Some(ExtraInfo::Cipher(name, version, info.secret_bits));
            }
            "ssl_object" => return self.tls_info().map(ExtraInfo::SslObject),
            _ => {}
        }
        lookup(
            name,
            self.inner.core().lifecycle() != Lifecycle::Gone,
            || SocketView { owner: Owner::Stream(self.clone()) },
            || self.local_sockaddr(),
            || self.peer_sockaddr(),
        )
    }
}

impl DatagramTransport {
    /// As [`Transport::with_socket`].
    ///
    /// # Errors
    ///
    /// As [`Transport::with_socket`].
    pub fn with_socket<T>(&self, f: impl FnOnce(&Socket) -> T) -> Result<T> {
        self.inner.core().with_socket_dup(f)
    }

    /// As [`Transport::get_extra_info`]: `"socket"`, `"sockname"`, and
    /// `"peername"` for a connected endpoint.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        lookup(
            name,
            self.inner.core().lifecycle() != Lifecycle::Gone,
            || SocketView { owner: Owner::Datagram(self.clone()) },
            || self.local_addr(),
            || self.peer_addr(),
        )
    }
}

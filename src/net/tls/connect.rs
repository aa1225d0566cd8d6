//! Putting the TLS layer on a connection: `start_tls` on a live one, a
//! client connection right after `connect`, and each connection a TLS
//! server accepts.
//!
//! Invariant: the connection is handed to the caller only after the
//! handshake; a caller that stops waiting (its task cancelled) aborts it,
//! so no half-made connection is left open.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use socket2::Socket;

use super::session::{Timeouts, TlsLayer, TlsSession};
use super::{TlsConfig, TlsOptions, tls_error};
use crate::error::{Error, Result};
use crate::net::protocol::StreamProtocol;
use crate::net::server::ServerLink;
use crate::net::transport::Transport;
use crate::runtime::event_loop::EventLoop;
use crate::task::future::Future;

/// A rustls connection for `config`; a client one checks `server_name`
/// (a DNS name or an IP address).
fn new_connection(config: &TlsConfig, server_name: Option<&str>) -> Result<rustls::Connection> {
    match config {
        TlsConfig::Server(config) => {
            Ok(rustls::ServerConnection::new(config.clone()).map_err(tls_error)?.into())
        }
        TlsConfig::Client(config) => {
            let name = server_name.ok_or(Error::InvalidState(
                "a TLS client needs server_hostname (or a peer with an IP address)",
            ))?;
            let name = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
                Error::io_context(
                    io::Error::new(io::ErrorKind::InvalidInput, "not a valid DNS name or IP address"),
                    format_args!("server_hostname {name:?}"),
                )
            })?;
            Ok(rustls::ClientConnection::new(config.clone(), name).map_err(tls_error)?.into())
        }
    }
}

fn timeouts(options: &TlsOptions) -> Timeouts {
    Timeouts { handshake: options.ssl_handshake_timeout, shutdown: options.ssl_shutdown_timeout }
}

/// Aborts the connection unless disarmed: the waiting caller went away.
struct AbortOnDrop(Option<Transport>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl EventLoop {
    /// Upgrades a live connection to TLS (asyncio's `loop.start_tls`):
    /// puts the TLS layer between `transport` and its protocol, does the
    /// handshake, and returns the transport the protocol must use from now
    /// on (the old one is the socket's: writing to it would bypass TLS).
    /// The protocol does not get `connection_made` again; if the handshake
    /// fails, it gets `connection_lost` with the error, and the error is
    /// returned.
    ///
    /// asyncio takes the protocol as an argument; here the transport's
    /// own protocol is kept (what asyncio callers pass, almost always).
    /// The TLS side is the config's: [`TlsConfig::Server`] for
    /// `server_side=True`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the transport is closing or already TLS,
    /// or a client has no `server_hostname` and no peer IP address;
    /// [`Error::Tls`] if the handshake fails (certificate, name, protocol);
    /// [`Error::Io`] with `TimedOut` after `ssl_handshake_timeout`, or the
    /// socket's error.
    ///
    /// # Examples
    ///
    /// See [`net::tls`](crate::net::tls) and
    /// [`StreamWriter::start_tls`](crate::net::stream::StreamWriter::start_tls).
    pub async fn start_tls(
        &self,
        transport: &Transport,
        config: impl Into<TlsConfig>,
        options: TlsOptions,
    ) -> Result<Transport> {
        let config = config.into();
        if transport.is_tls() {
            return Err(Error::InvalidState("the transport already speaks TLS"));
        }
        if transport.is_closing() {
            return Err(Error::InvalidState("cannot start TLS on a closing transport"));
        }
        let peer_ip = transport.peer_addr().map(|a| a.ip().to_string());
        let name = options.server_hostname.as_deref().or(peer_ip.as_deref());
        let conn = new_connection(&config, name)?;
        let waiter = self.create_future::<()>();
        let session = TlsSession::new(conn, false, timeouts(&options), Some(waiter.clone()));
        let layer: Rc<RefCell<dyn StreamProtocol>> = Rc::new(RefCell::new(TlsLayer(session.clone())));
        let app = transport
            .inner
            .replace_protocol(layer)
            .ok_or(Error::InvalidState("cannot start TLS on a closing transport"))?;
        session.set_app(app);
        let plain = Transport::plain(transport.inner.clone());
        session.start(&plain);
        let mut guard = AbortOnDrop(Some(plain));
        waiter.await?;
        guard.0 = None;
        session.app_transport().ok_or(Error::InvalidState("the transport is closed"))
    }
}

/// A client connection on the connected `socket`: the TLS layer on a new
/// transport, `protocol` made once the handshake is done.
pub(crate) async fn connect_tls<P: StreamProtocol>(
    lp: &EventLoop,
    socket: Socket,
    protocol: P,
    config: Arc<rustls::ClientConfig>,
    options: &TlsOptions,
) -> Result<(Transport, Rc<RefCell<P>>)> {
    let peer_ip = socket.peer_addr().ok().and_then(|a| a.as_socket()).map(|a| a.ip().to_string());
    let name = options.server_hostname.as_deref().or(peer_ip.as_deref());
    let conn = new_connection(&TlsConfig::Client(config), name)?;
    let waiter: Future<()> = lp.create_future();
    let session = TlsSession::new(conn, true, timeouts(options), Some(waiter.clone()));
    let app = Rc::new(RefCell::new(protocol));
    session.set_app(app.clone());
    let (plain, _) = Transport::start(lp, socket, TlsLayer(session.clone()), None, None)?;
    let mut guard = AbortOnDrop(Some(plain));
    waiter.await?;
    guard.0 = None;
    let transport = session.app_transport().ok_or(Error::InvalidState("the transport is closed"))?;
    Ok((transport, app))
}

/// A connection a TLS server accepted: the server handshake, then
/// `protocol`'s `connection_made`. Returns the app-side transport (the
/// server's bookkeeping), so `Server::close_clients` closes through the
/// TLS layer (sending `close_notify`) and `abort_clients` aborts.
pub(crate) fn start_server_connection<P: StreamProtocol>(
    lp: &EventLoop,
    socket: Socket,
    protocol: P,
    link: ServerLink,
    config: &Arc<rustls::ServerConfig>,
    options: &TlsOptions,
) -> Result<Transport> {
    // On an error the server forgets the connection it counted.
    let conn = new_connection(&TlsConfig::Server(config.clone()), None)?;
    let session = TlsSession::new(conn, true, timeouts(options), None);
    session.set_app(Rc::new(RefCell::new(protocol)));
    let (plain, _) = Transport::start(lp, socket, TlsLayer(session.clone()), Some(link), None)?;
    Ok(Transport { inner: plain.inner, tls: Some(session) })
}

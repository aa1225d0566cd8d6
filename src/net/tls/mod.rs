//! TLS on evloop's transports, on [rustls] (asyncio's `ssl=` support and
//! `SSLProtocol`). Behind the default-on `tls` cargo feature; build with
//! `default-features = false` to leave rustls out.
//!
//! A TLS connection is a layer between a socket's transport and the
//! user's protocol: the protocol sees plaintext through the same
//! [`Transport`] API as on a plain socket (`write`, `writelines`,
//! `close`, `abort`, reading and writing flow control,
//! `get_write_buffer_size`), and the layer turns it into TLS records.
//! Invariant: every failure — a rustls error (bad or untrusted
//! certificate, name mismatch, a peer that does not speak TLS, an alert),
//! a socket error, a timeout — closes the socket with that error, which
//! reaches the connect future or [`start_tls`](crate::EventLoop::start_tls),
//! and the protocol's `connection_lost` if it had `connection_made`.
//!
//! Entry points:
//! - [`ConnectOptions::ssl`](crate::net::ConnectOptions::ssl) (with
//!   `server_hostname` and the timeouts) on
//!   [`create_connection`](crate::EventLoop::create_connection),
//!   [`create_unix_connection`](crate::EventLoop::create_unix_connection)
//!   and, through [`StreamConnectOptions`](crate::net::stream::StreamConnectOptions),
//!   [`open_connection`](crate::open_connection): the connection is
//!   returned once the handshake is done.
//! - [`ServerOptions::ssl`](crate::net::ServerOptions::ssl) on
//!   [`create_server`](crate::EventLoop::create_server),
//!   [`create_unix_server`](crate::EventLoop::create_unix_server) and the
//!   stream servers: each accepted connection does the server handshake
//!   before its protocol gets `connection_made`.
//! - [`EventLoop::start_tls`](crate::EventLoop::start_tls) upgrades a live
//!   connection (STARTTLS), and
//!   [`StreamWriter::start_tls`](crate::net::stream::StreamWriter::start_tls)
//!   a stream pair.
//!
//! # Configuration, and how it maps to `ssl.SSLContext`
//!
//! evloop takes rustls's own configurations, `Arc<rustls::ClientConfig>`
//! and `Arc<rustls::ServerConfig>` (wrapped as a [`TlsConfig`]; the
//! variant is asyncio's `server_side`). Helpers for the common cases:
//!
//! | asyncio | evloop |
//! |---|---|
//! | `ssl.create_default_context()` | [`client_config()`] (Mozilla's roots, compiled in) |
//! | `ctx.load_verify_locations(cafile)` | [`client_config_from_pem_file`] / [`client_config_with_roots`] |
//! | `ctx.load_cert_chain(certfile, keyfile)` (server) | [`server_config_from_pem_files`] / [`server_config`] |
//! | `ctx.set_alpn_protocols([...])` | set `alpn_protocols` on the rustls config before wrapping it in `Arc` |
//! | `get_extra_info('peercert')` | `get_extra_info("peercert")` or [`Transport::peer_certificates`] (DER chain) |
//! | `get_extra_info('cipher')` | `get_extra_info("cipher")` (the same tuple), [`Transport::cipher_suite`], [`Transport::tls_version`] |
//! | `get_extra_info('ssl_object')` | `get_extra_info("ssl_object")` or [`Transport::tls_info`] ([`TlsInfo`]) |
//! | `get_extra_info('ssl_object').selected_alpn_protocol()` | [`Transport::alpn_protocol`] |
//!
//! rustls does not do TLS 1.0/1.1, renegotiation, or compression, and
//! rejects what OpenSSL would only warn about; verification is always on
//! for a client config made by these helpers (`CERT_REQUIRED` and
//! `check_hostname`).
//!
//! # Examples
//!
//! ```
//! use evloop::net::ServerOptions;
//! use evloop::net::tls;
//!
//! // A self-signed certificate for "localhost" (from rcgen, here).
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! let chain = vec![cert.cert.der().clone()];
//! let key = tls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
//! let server_config = tls::server_config(chain.clone(), key)?;
//! let client_config = tls::client_config_with_roots(chain)?;
//!
//! let reply = evloop::run(async move {
//!     let options = evloop::net::stream::StreamServerOptions {
//!         server: ServerOptions { ssl: Some(server_config), ..Default::default() },
//!         ..Default::default()
//!     };
//!     let server = evloop::start_server(
//!         |mut reader, writer| async move {
//!             let line = reader.readline().await.unwrap();
//!             writer.write(&line).unwrap();
//!             writer.close();
//!         },
//!         "127.0.0.1",
//!         0,
//!         options,
//!     )
//!     .await?;
//!     let port = server.local_addr().unwrap().port();
//!     let connect = evloop::net::ConnectOptions::new().ssl(client_config).server_hostname("localhost");
//!     let options = evloop::net::stream::StreamConnectOptions::new().connect(connect);
//!     let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
//!     writer.write(b"hello over TLS\n")?;
//!     let reply = reader.readline().await?;
//!     server.close();
//!     Ok::<_, evloop::Error>(reply)
//! })??;
//! assert_eq!(reply, b"hello over TLS\n");
//! # Ok::<(), evloop::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};

use crate::error::{Error, Result};
use crate::net::transport::Transport;

mod connect;
pub(crate) mod session;

pub(crate) use connect::{connect_tls, start_server_connection};
pub(crate) use session::TlsSession;

/// The rustls crate evloop is built with, for its config types.
pub use rustls;
/// Certificate and key types (`CertificateDer`, `PrivateKeyDer`) with
/// their PEM parser (`pem::PemObject`).
pub use rustls::pki_types;

/// asyncio's default `ssl_handshake_timeout`: 60 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// asyncio's default `ssl_shutdown_timeout`: 30 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS configuration for one side of a connection (asyncio's
/// `SSLContext` plus `server_side`).
///
/// # Examples
///
/// ```
/// use evloop::net::tls::{self, TlsConfig};
///
/// let config: TlsConfig = tls::client_config().into();
/// assert!(!config.is_server());
/// ```
#[derive(Debug, Clone)]
pub enum TlsConfig {
    /// Connect as a client: verifies the server's certificate and name.
    Client(Arc<ClientConfig>),
    /// Accept as a server: presents the configured certificate.
    Server(Arc<ServerConfig>),
}

impl TlsConfig {
    /// Whether this is the server side (asyncio's `server_side`).
    pub fn is_server(&self) -> bool {
        matches!(self, TlsConfig::Server(_))
    }
}

impl From<Arc<ClientConfig>> for TlsConfig {
    fn from(config: Arc<ClientConfig>) -> TlsConfig {
        TlsConfig::Client(config)
    }
}

impl From<Arc<ServerConfig>> for TlsConfig {
    fn from(config: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig::Server(config)
    }
}

/// Options of [`start_tls`](crate::EventLoop::start_tls) (asyncio's
/// keyword arguments); `Default::default()` gives asyncio's.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let opts = evloop::net::tls::TlsOptions {
///     server_hostname: Some("example.com".into()),
///     ssl_handshake_timeout: Duration::from_secs(10),
///     ..Default::default()
/// };
/// assert_eq!(opts.ssl_shutdown_timeout, evloop::net::tls::DEFAULT_SHUTDOWN_TIMEOUT);
/// ```
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The name the server's certificate must match (and the SNI sent);
    /// a client only. Without it, the peer's IP address is checked.
    pub server_hostname: Option<String>,
    /// How long the handshake may take before the connection is aborted
    /// (default 60 s).
    pub ssl_handshake_timeout: Duration,
    /// How long `close` waits for the socket to take the last records and
    /// `close_notify` before it cuts the connection (default 30 s).
    pub ssl_shutdown_timeout: Duration,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions {
            server_hostname: None,
            ssl_handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

fn tls_error(e: rustls::Error) -> Error {
    Error::Tls(Arc::new(e))
}

fn pem_error(what: &Path, e: pki_types::pem::Error) -> Error {
    let kind = match &e {
        pki_types::pem::Error::Io(io) => io.kind(),
        _ => std::io::ErrorKind::InvalidData,
    };
    Error::io_context(std::io::Error::new(kind, e.to_string()), format_args!("read {}", what.display()))
}

/// A client configuration that trusts Mozilla's root certificates (the
/// `webpki-roots` set compiled into the binary): asyncio's
/// `ssl.create_default_context()`, without reading system files.
///
/// # Examples
///
/// ```
/// let config = evloop::net::tls::client_config();
/// assert!(config.alpn_protocols.is_empty());
/// ```
pub fn client_config() -> Arc<ClientConfig> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    Arc::new(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// A client configuration that trusts exactly `roots` (asyncio's
/// `load_verify_locations(cadata=...)`): a private CA, or a self-signed
/// server certificate.
///
/// # Errors
///
/// [`Error::Tls`] if a certificate cannot be parsed as a trust anchor.
///
/// # Examples
///
/// ```
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let config = evloop::net::tls::client_config_with_roots([cert.cert.der().clone()])?;
/// # let _ = config;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn client_config_with_roots(
    roots: impl IntoIterator<Item = pki_types::CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert).map_err(tls_error)?;
    }
    Ok(Arc::new(ClientConfig::builder().with_root_certificates(store).with_no_client_auth()))
}

/// A client configuration that trusts the certificates of the PEM file
/// at `path` (asyncio's `load_verify_locations(cafile)`).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read or holds no certificate;
/// [`Error::Tls`] as [`client_config_with_roots`].
pub fn client_config_from_pem_file(path: impl AsRef<Path>) -> Result<Arc<ClientConfig>> {
    let path = path.as_ref();
    let certs = read_certs(path)?;
    client_config_with_roots(certs)
}

/// A server configuration presenting `chain` (leaf first) with its
/// private key; no client certificates asked for (asyncio's server
/// context after `load_cert_chain`).
///
/// # Errors
///
/// [`Error::Tls`] if the key does not fit the certificate or is of an
/// unsupported kind.
///
/// # Examples
///
/// ```
/// use evloop::net::tls::{self, pki_types::PrivateKeyDer};
///
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
/// let config = tls::server_config(vec![cert.cert.der().clone()], key)?;
/// # let _ = config;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn server_config(
    chain: Vec<pki_types::CertificateDer<'static>>,
    key: pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let config =
        ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).map_err(tls_error)?;
    Ok(Arc::new(config))
}

/// A server configuration from PEM files: the certificate chain (leaf
/// first) and the private key (PKCS#8, PKCS#1 or SEC1), as asyncio's
/// `load_cert_chain(certfile, keyfile)`.
///
/// # Errors
///
/// [`Error::Io`] if a file cannot be read or holds no certificate or key;
/// [`Error::Tls`] as [`server_config`].
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>> {
    use pki_types::pem::PemObject;
    let chain = read_certs(cert.as_ref())?;
    let key_path = key.as_ref();
    let key = pki_types::PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e))?;
    server_config(chain, key)
}

fn read_certs(path: &Path) -> Result<Vec<pki_types::CertificateDer<'static>>> {
    use pki_types::pem::PemObject;
    let certs = pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "no certificate found");
        return Err(Error::io_context(e, format_args!("read {}", path.display())));
    }
    Ok(certs)
}

/// TLS details of a connection: asyncio's `get_extra_info('peercert')`,
/// `('cipher')` and `('ssl_object')`. All `None` on a plain transport.
impl Transport {
    /// Whether this transport is the application side of a TLS
    /// connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn with_tls<R>(&self, f: impl FnOnce(&rustls::Connection) -> Option<R>) -> Option<R> {
        self.tls.as_ref().and_then(|tls| tls.with_conn(f))
    }

    /// The peer's certificate chain (DER, leaf first) once the handshake
    /// is done: the server's on a client; a client's only if the server
    /// asked for one.
    pub fn peer_certificates(&self) -> Option<Vec<pki_types::CertificateDer<'static>>> {
        self.with_tls(|c| c.peer_certificates().map(|certs| certs.to_vec()))
    }

    /// The ALPN protocol both sides agreed on (e.g. `b"h2"`).
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.with_tls(|c| c.alpn_protocol().map(|p| p.to_vec()))
    }

    /// The TLS version negotiated (`TLSv1_3`, `TLSv1_2`).
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.with_tls(|c| c.protocol_version())
    }

    /// The cipher suite negotiated (its `suite()` names it, e.g.
    /// `TLS13_AES_256_GCM_SHA384`).
    pub fn cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        self.with_tls(|c| c.negotiated_cipher_suite())
    }

    /// On a server: the name the client asked for (SNI), if any.
    pub fn tls_server_name(&self) -> Option<String> {
        self.with_tls(|c| match c {
            rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => None,
        })
    }

    /// What asyncio's `get_extra_info('ssl_object')` is asked, in one
    /// value: the negotiated session's details. `None` on a plain
    /// transport and until the handshake is done.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.with_tls(|c| {
            let cipher_suite = c.negotiated_cipher_suite()?;
            Some(TlsInfo {
                version: c.protocol_version()?,
                cipher_suite,
                secret_bits: secret_bits(cipher_suite),
                alpn_protocol: c.alpn_protocol().map(<[u8]>::to_vec),
                server_name: match c {
                    rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
                    rustls::Connection::Client(_) => None,
                },
                peer_certificates: c.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
                server_side: matches!(c, rustls::Connection::Server(_)),
            })
        })
    }
}

/// A TLS connection's negotiated session (asyncio's `ssl_object` as far
/// as its questions have answers here), from [`Transport::tls_info`] or
/// `get_extra_info("ssl_object")`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The TLS version (`ssl_object.version()`).
    pub version: rustls::ProtocolVersion,
    /// The cipher suite (`ssl_object.cipher()`'s name).
    pub cipher_suite: rustls::SupportedCipherSuite,
    /// The symmetric key's size in bits (`cipher()`'s third element).
    pub secret_bits: u32,
    /// The agreed ALPN protocol (`selected_alpn_protocol()`).
    pub alpn_protocol: Option<Vec<u8>>,
    /// On a server: the name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The peer's chain, DER, leaf first (`getpeercert(binary_form=True)`
    /// is the first); empty if the peer sent none.
    pub peer_certificates: Vec<pki_types::CertificateDer<'static>>,
    /// Whether this side is the server (`ssl_object.server_side`).
    pub server_side: bool,
}

/// The suite's symmetric key size in bits, as OpenSSL's `cipher()` gives.
pub(crate) fn secret_bits(suite: rustls::SupportedCipherSuite) -> u32 {
    let bytes = match suite {
        rustls::SupportedCipherSuite::Tls13(s) => s.aead_alg.key_len(),
        rustls::SupportedCipherSuite::Tls12(s) => s.aead_alg.key_block_shape().enc_key_len,
    };
    u32::try_from(bytes * 8).unwrap_or(u32::MAX)
}

//! Serving HTTP/1 and HTTP/2 (detected per connection) on loop servers.

use std::future::Future;
use std::pin::Pin;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

use super::rt::{LoopExecutor, LoopTimer};
use crate::error::Result;
use crate::net::Server;
use crate::{DuplexStream, StreamReader, StreamWriter};

/// The error type hyper and hyper-util report connection failures with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper-util's auto-detecting connection builder (HTTP/1, or HTTP/2 when
/// the client opens with the HTTP/2 preface, with or without TLS) with
/// [`LoopExecutor`] and [`LoopTimer`] set for both protocols; otherwise
/// hyper's defaults: keep-alive on, and, because a timer is set, HTTP/1's
/// 30 s header-read timeout (re-armed for every request on the loop's
/// timer; `http1().header_read_timeout(None)` turns it off, which is what
/// a hyper or `axum::serve` server without a timer has). Configure it
/// further through its `http1()`/`http2()` and hand it to
/// [`hyper_handler_with`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let mut builder = evloop::compat::builder();
/// builder.http1().header_read_timeout(Duration::from_secs(10));
/// builder.http2().max_concurrent_streams(100);
/// ```
pub fn builder() -> auto::Builder<LoopExecutor> {
    let mut builder = auto::Builder::new(LoopExecutor);
    builder.http1().timer(LoopTimer);
    builder.http2().timer(LoopTimer);
    builder
}

/// Serves one connection with `service` until the client closes it (or
/// the service's response says so), with [`builder`]'s settings.
///
/// # Errors
///
/// hyper's error for a connection that failed: a malformed request, the
/// peer resetting the connection, a timeout.
///
/// # Panics
///
/// If no loop is running on the calling thread (HTTP/2 spawns its streams).
pub async fn serve_connection<S, B>(stream: DuplexStream, service: S) -> std::result::Result<(), BoxError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    builder().serve_connection(stream, service).await
}

/// A connection handler for [`start_server`](crate::start_server),
/// [`start_unix_server`](crate::net::stream::start_unix_server) and
/// [`start_server_from_socket`](crate::start_server_from_socket) that
/// serves HTTP/1 and HTTP/2 with a clone of `service` per connection
/// ([`builder`]'s settings). A connection's failure is logged at debug
/// level (`log`), not reported: it concerns that client only.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{Request, Response, body::Incoming, service::service_fn};
///
/// evloop::run(async {
///     let hello = service_fn(|_req: Request<Incoming>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
///     });
///     let server = evloop::start_server(evloop::compat::hyper_handler(hello), "127.0.0.1", 0, Default::default())
///         .await?;
///     server.close();
///     Ok::<_, evloop::Error>(())
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn hyper_handler<S, B>(service: S) -> impl Fn(StreamReader, StreamWriter) -> ConnFuture + 'static
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    hyper_handler_with(builder(), service)
}

/// The future of one connection served by [`hyper_handler`].
pub type ConnFuture = Pin<Box<dyn Future<Output = ()>>>;

/// As [`hyper_handler`], with a builder configured by the caller (start from
/// [`builder`] so the executor and timer are set).
pub fn hyper_handler_with<S, B>(
    builder: auto::Builder<LoopExecutor>,
    service: S,
) -> impl Fn(StreamReader, StreamWriter) -> ConnFuture + 'static
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    move |reader, writer| {
        let builder = builder.clone();
        let service = service.clone();
        Box::pin(async move {
            let stream = DuplexStream::unsplit(reader, writer);
            let peer = stream.peer_addr();
            if let Err(e) = builder.serve_connection(stream, service).await {
                log::debug!("hyper connection from {peer:?} failed: {e}");
            }
        })
    }
}

/// A connection handler serving a tower [`Service`](tower_service::Service)
/// (an axum `Router`, a tower stack) through hyper-util's
/// `TowerToHyperService`; otherwise as [`hyper_handler`]. This is how an
/// axum app runs on the loop: `axum::serve` needs tokio's listener.
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
///
/// evloop::run(async {
///     let app = Router::new().route("/", get(|| async { "hello" }));
///     let server = evloop::start_server(evloop::compat::tower_handler(app), "127.0.0.1", 0, Default::default())
///         .await?;
///     server.close();
///     Ok::<_, evloop::Error>(())
/// })??;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn tower_handler<S, B>(service: S) -> impl Fn(StreamReader, StreamWriter) -> ConnFuture + 'static
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    hyper_handler(TowerToHyperService::new(service))
}

/// Starts a TCP server on `host:port` serving `service` (HTTP/1 and
/// HTTP/2): [`start_server`](crate::start_server) with [`hyper_handler`]
/// and default options. The server runs until [`Server::close`]; each
/// connection is a task.
///
/// # Errors
///
/// As [`start_server`](crate::start_server): the address cannot be
/// resolved or bound.
///
/// # Panics
///
/// If no loop is running on the calling thread.
///
/// # Examples
///
/// See [the module](crate::compat).
pub async fn serve<S, B>(service: S, host: &str, port: u16) -> Result<Server>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    crate::start_server(hyper_handler(service), host, port, Default::default()).await
}

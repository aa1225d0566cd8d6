//! hyper's client over loop connections.

use hyper::body::Body;
use hyper::client::conn::{http1, http2};

use super::rt::{LoopExecutor, LoopTimer};
use super::server::BoxError;
use crate::error::{Error, Result};
use crate::{DuplexStream, open_stream};

/// Runs hyper's HTTP/1 client handshake on `stream` and spawns the
/// connection's driver as a loop task; requests go through the returned
/// sender. The connection closes when the sender is dropped (after the
/// responses in flight) or when the server closes it.
///
/// # Errors
///
/// hyper's handshake error, as [`Error::Other`](crate::Error).
///
/// # Panics
///
/// If no loop is running on the calling thread.
pub async fn http1_handshake<B>(stream: DuplexStream) -> Result<http1::SendRequest<B>>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (sender, conn) = http1::handshake(stream).await.map_err(Error::other)?;
    drop(crate::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("hyper HTTP/1 client connection failed: {e}");
        }
    }));
    Ok(sender)
}

/// Runs hyper's HTTP/2 client handshake on `stream` (prior knowledge: no
/// HTTP/1 upgrade), with [`LoopExecutor`] and [`LoopTimer`], and spawns the
/// connection's driver as a loop task. The sender is `Clone`: requests on
/// clones are multiplexed on the one connection.
///
/// # Errors
///
/// hyper's handshake error, as [`Error::Other`](crate::Error).
///
/// # Panics
///
/// If no loop is running on the calling thread.
pub async fn http2_handshake<B>(stream: DuplexStream) -> Result<http2::SendRequest<B>>
where
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (sender, conn) =
        http2::Builder::new(LoopExecutor).timer(LoopTimer).handshake(stream).await.map_err(Error::other)?;
    drop(crate::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("hyper HTTP/2 client connection failed: {e}");
        }
    }));
    Ok(sender)
}

/// Connects to `host:port` ([`open_stream`]) and runs
/// [`http1_handshake`].
///
/// # Errors
///
/// As [`open_stream`], then as [`http1_handshake`].
///
/// # Panics
///
/// If no loop is running on the calling thread.
pub async fn connect_http1<B>(host: &str, port: u16) -> Result<http1::SendRequest<B>>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    http1_handshake(open_stream(host, port, Default::default()).await?).await
}

/// Connects to `host:port` ([`open_stream`]) and runs
/// [`http2_handshake`].
///
/// # Errors
///
/// As [`open_stream`], then as [`http2_handshake`].
///
/// # Panics
///
/// If no loop is running on the calling thread.
pub async fn connect_http2<B>(host: &str, port: u16) -> Result<http2::SendRequest<B>>
where
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    http2_handshake(open_stream(host, port, Default::default()).await?).await
}

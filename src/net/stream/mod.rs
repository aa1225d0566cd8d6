//! asyncio's high-level streams: [`open_connection`] / [`start_server`] with
//! a [`StreamReader`] and a [`StreamWriter`], built on a
//! [`Protocol`](crate::net::Protocol) the way asyncio builds them:
//! `data_received` feeds the reader's buffer and wakes the task waiting in a
//! read; `pause_writing`/`resume_writing` gate [`StreamWriter::drain`].
//!
//! Flow control: when more than 2 × `limit` bytes are buffered unread, the
//! transport stops reading from the socket, and starts again once the
//! buffer is down to `limit`. A reader that needs more than is buffered
//! (say `readexactly` of a large block) resumes reading itself.
//!
//! Both halves, and [`DuplexStream`] (the two in one value, from
//! [`open_stream`] or a [`duplex_handler`]), also implement the
//! `futures-io` traits (`AsyncRead`, `AsyncBufRead`, `AsyncWrite`) so
//! codecs and TLS crates built on them work on evloop streams.
//!
//! Lifetime: dropping the last handle to a connection's writing side
//! closes the connection after flushing (asyncio 3.13 closes it when the
//! `StreamWriter` is collected); a server's handler task holds one until it
//! finishes. After a close, `poll_flush` and `poll_close` are `Ok`.
//!
//! # Name clashes with the `futures-io` extension traits
//!
//! asyncio's names are inherent methods, and an inherent method wins over
//! a trait method of the same name: with `AsyncWriteExt` in scope,
//! `writer.close().await` does not compile (the inherent
//! [`StreamWriter::close`] returns `()`), `writer.write(buf)` is the
//! inherent, synchronous one, and `reader.read(n)` / `reader.read_to_end()`
//! are asyncio's (a byte count and no buffer argument). Through a
//! `&mut StreamWriter` it turns round: `w.write(buf)` there is
//! `AsyncWriteExt::write`, found before the inherent `&self` method. Name
//! the one you mean with the fully qualified form:
//!
//! ```
//! use futures_util::io::{AsyncReadExt, AsyncWriteExt};
//! # evloop::run(async {
//! # let server = evloop::start_server(|_r, _w| async {}, "127.0.0.1", 0, Default::default()).await?;
//! # let port = server.local_addr().unwrap().port();
//! let (mut reader, mut writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
//! AsyncWriteExt::write(&mut writer, b"ping").await?;
//! AsyncWriteExt::close(&mut writer).await?;
//! let mut rest = Vec::new();
//! AsyncReadExt::read_to_end(&mut reader, &mut rest).await?;
//! # Ok::<(), evloop::Error>(())
//! # })??;
//! # Ok::<(), evloop::Error>(())
//! ```
//!
//! [`DuplexStream`] has none of the clashing names inherent, so the
//! extension methods work on it with method syntax.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::net::protocol::ReadPath;
use crate::net::transport::READ_SIZE;
use crate::net::{ConnectOptions, Server, ServerHosts, ServerOptions, StreamProtocol, Transport};
use crate::runtime::event_loop::{EventLoop, running_loop};
use socket2::SockRef;

mod duplex;
mod reader;
mod writer;

pub use duplex::{DuplexStream, duplex_handler, open_stream, open_stream_from_socket, open_unix_stream};

use reader::ReaderShared;
pub use reader::StreamReader;
pub use writer::StreamWriter;
pub(crate) use writer::reader_only;
use writer::{WriteSide, WriterShared};

/// Default buffer limit of a stream (asyncio's 64 KiB).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

type ClientConnected = Rc<dyn Fn(StreamReader, StreamWriter)>;

/// The protocol behind a stream pair (asyncio's `StreamReaderProtocol`);
/// subprocess pipes use it too.
pub(crate) struct StreamProtocolImpl {
    reader: Option<StreamReader>,
    reader_shared: Rc<ReaderShared>,
    writer: Rc<WriterShared>,
    on_connect: Option<ClientConnected>,
}

// Implemented directly (not through `Protocol`) to receive straight into
// the reader's buffer: one copy per byte fewer than `data_received`.
impl crate::net::protocol::sealed::Sealed for StreamProtocolImpl {}

impl StreamProtocol for StreamProtocolImpl {
    fn read_path(&self) -> ReadPath {
        ReadPath::Direct
    }

    fn receive(&mut self, socket: &socket2::Socket) -> io::Result<usize> {
        let shared = &self.reader_shared;
        let received = {
            let mut incoming = shared.incoming.borrow_mut();
            crate::sys::socket::recv_append(&SockRef::from(socket), &mut incoming, READ_SIZE)
        };
        if let Ok(n) = received
            && n > 0
        {
            shared.received(n);
        }
        received
    }

    fn get_buffer(&mut self, _: usize) -> Option<&mut [u8]> {
        None
    }

    fn buffer_updated(&mut self, _: usize) {}

    fn connection_made(&mut self, transport: &Transport) {
        *self.reader_shared.transport.borrow_mut() = Some(transport.clone());
        if let Some(on_connect) = self.on_connect.take()
            && let Some(reader) = self.reader.take()
        {
            let writer = StreamWriter {
                transport: transport.clone(),
                shared: self.writer.clone(),
                reader: Some(self.reader_shared.clone()),
                side: WriteSide::new(transport.clone()),
            };
            on_connect(reader, writer);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.reader_shared.feed_data(data);
    }

    fn eof_received(&mut self) -> bool {
        self.reader_shared.feed_eof();
        // Keep the transport open: the writer may still send (half-close).
        true
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        match &error {
            None => self.reader_shared.feed_eof(),
            Some(e) => self.reader_shared.set_error(e.clone()),
        }
        self.reader_shared.transport.borrow_mut().take();
        *self.writer.lost.borrow_mut() = Some(error);
        self.writer.wake_drainers();
    }

    fn pause_writing(&mut self) {
        self.writer.write_paused.set(true);
    }

    fn resume_writing(&mut self) {
        self.writer.write_paused.set(false);
        self.writer.wake_drainers();
    }
}

pub(crate) fn stream_protocol(limit: usize, on_connect: Option<ClientConnected>) -> StreamProtocolImpl {
    let reader = StreamReader::with_limit(limit);
    StreamProtocolImpl {
        reader_shared: reader.shared.clone(),
        reader: Some(reader),
        writer: Rc::new(WriterShared {
            write_paused: Cell::new(false),
            drain_wakers: RefCell::new(Vec::new()),
            lost: RefCell::new(None),
        }),
        on_connect,
    }
}

fn split(
    transport: Transport,
    protocol: &Rc<RefCell<StreamProtocolImpl>>,
) -> Result<(StreamReader, StreamWriter)> {
    split_parts(transport, &mut protocol.borrow_mut())
}

/// [`split`] on a protocol already borrowed (one wrapped in another).
pub(crate) fn split_parts(
    transport: Transport,
    p: &mut StreamProtocolImpl,
) -> Result<(StreamReader, StreamWriter)> {
    let reader = p.reader.take().ok_or(Error::InvalidState("the stream reader was already taken"))?;
    let writer = StreamWriter {
        side: WriteSide::new(transport.clone()),
        transport,
        shared: p.writer.clone(),
        reader: Some(p.reader_shared.clone()),
    };
    Ok((reader, writer))
}

/// Options of [`open_connection`] and [`open_unix_connection`]: the
/// reader's `limit` and the connection's [`ConnectOptions`];
/// `Default::default()` gives asyncio's. Fields may be added: build it
/// with the setters.
///
/// # Examples
///
/// ```
/// use evloop::net::ConnectOptions;
/// use evloop::net::stream::{DEFAULT_LIMIT, StreamConnectOptions};
/// let opts = StreamConnectOptions::new().limit(1 << 20).connect(ConnectOptions::new().local_addr("127.0.0.1", 0));
/// assert_eq!(opts.limit, 1 << 20);
/// assert_eq!(StreamConnectOptions::default().limit, DEFAULT_LIMIT);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamConnectOptions {
    /// The reader's buffer limit (default 64 KiB, asyncio's `limit`).
    pub limit: usize,
    /// The connection's options (local address, Happy Eyeballs…).
    pub connect: ConnectOptions,
}

impl Default for StreamConnectOptions {
    fn default() -> StreamConnectOptions {
        StreamConnectOptions { limit: DEFAULT_LIMIT, connect: ConnectOptions::default() }
    }
}

impl StreamConnectOptions {
    /// asyncio's defaults (the same as `Default::default()`).
    pub fn new() -> StreamConnectOptions {
        StreamConnectOptions::default()
    }

    /// Sets [`limit`](StreamConnectOptions::limit).
    pub fn limit(mut self, limit: usize) -> StreamConnectOptions {
        self.limit = limit;
        self
    }

    /// Sets [`connect`](StreamConnectOptions::connect).
    pub fn connect(mut self, connect: ConnectOptions) -> StreamConnectOptions {
        self.connect = connect;
        self
    }
}

/// Connects to `host:port` and returns a reader/writer pair (asyncio's
/// `open_connection`).
///
/// # Errors
///
/// As [`EventLoop::create_connection`].
///
/// # Panics
///
/// When awaited outside a running loop, or if `options.limit` is 0.
///
/// # Examples
///
/// ```
/// let reply = evloop::run(async {
///     let server = evloop::start_server(
///         |mut reader, writer| async move {
///             let line = reader.readline().await.unwrap();
///             writer.write(&line).unwrap();
///             writer.close();
///         },
///         "127.0.0.1",
///         0,
///         Default::default(),
///     )
///     .await?;
///     let port = server.local_addr().unwrap().port();
///     let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
///     writer.write(b"hello\n")?;
///     let reply = reader.readline().await?;
///     server.close();
///     Ok::<_, evloop::Error>(reply)
/// })??;
/// assert_eq!(reply, b"hello\n");
/// # Ok::<(), evloop::Error>(())
/// ```
pub async fn open_connection(
    host: &str,
    port: u16,
    options: StreamConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = running_loop("open_connection");
    let limit = options.limit;
    let factory = move || stream_protocol(limit, None);
    let (transport, protocol) = lp.create_connection(factory, host, port, options.connect).await?;
    split(transport, &protocol)
}

/// Connects to the Unix socket at `path` (asyncio's
/// `open_unix_connection`).
///
/// # Errors
///
/// As [`EventLoop::create_unix_connection`].
///
/// # Panics
///
/// When awaited outside a running loop, or if `options.limit` is 0.
pub async fn open_unix_connection(
    path: impl AsRef<Path>,
    options: StreamConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = running_loop("open_unix_connection");
    let limit = options.limit;
    let factory = move || stream_protocol(limit, None);
    let (transport, protocol) = lp.create_unix_connection(factory, path, options.connect).await?;
    split(transport, &protocol)
}

/// A reader/writer pair over a stream socket the caller connected
/// (asyncio's `open_connection(sock=…)`); the stream owns it from now on.
///
/// # Errors
///
/// As [`EventLoop::create_connection_from_socket`].
///
/// # Panics
///
/// When awaited outside a running loop, or if `options.limit` is 0.
pub async fn open_connection_from_socket(
    socket: impl Into<socket2::Socket>,
    options: StreamConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let lp = running_loop("open_connection_from_socket");
    let limit = options.limit;
    let factory = move || stream_protocol(limit, None);
    let (transport, protocol) = lp.create_connection_from_socket(factory, socket, options.connect).await?;
    split(transport, &protocol)
}

/// Options of [`start_server`] and [`start_unix_server`];
/// `Default::default()` gives asyncio's.
#[derive(Debug, Clone)]
pub struct StreamServerOptions {
    /// The readers' buffer limit (default 64 KiB).
    pub limit: usize,
    /// The listening socket's options.
    pub server: ServerOptions,
}

impl Default for StreamServerOptions {
    fn default() -> StreamServerOptions {
        StreamServerOptions { limit: DEFAULT_LIMIT, server: ServerOptions::default() }
    }
}

/// The protocol factory of a stream server: a reader/writer pair per
/// connection, handed to `client_connected` in its own task.
pub(crate) fn server_protocol_factory<F, Fut>(
    lp: &EventLoop,
    client_connected: F,
    limit: usize,
) -> impl Fn() -> StreamProtocolImpl + use<F, Fut>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let on_connect = connected_callback(lp, client_connected);
    move || stream_protocol(limit, Some(on_connect.clone()))
}

fn connected_callback<F, Fut>(lp: &EventLoop, client_connected: F) -> ClientConnected
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // Weak: the server holds this callback, and the loop may hold the
    // server (a task awaiting serve_forever).
    let lp = lp.downgrade();
    let client_connected = Rc::new(client_connected);
    Rc::new(move |reader, writer: StreamWriter| {
        let transport = writer.transport().clone();
        // Each connection is its own task, as in asyncio. The user's closure
        // is called inside the task, not here in `connection_made`, where
        // the transport's protocol is borrowed.
        let handler = client_connected.clone();
        // The task holds the writing side until it finishes: a handler
        // that returns without `close()` closes its connection (the peer
        // sees EOF), and one that ignores its writer still reads.
        let side = writer.side.clone();
        // The connection is being made on this loop, so it exists.
        let task = lp.get().create_task(async move {
            handler(reader, writer).await;
            drop(side);
        });
        // asyncio (`StreamReaderProtocol`): a handler task that panics or
        // is cancelled closes its connection, and a panic is reported.
        // Without this the peer waited forever on a connection nobody
        // owned, and the panic went unseen.
        task.add_done_callback(move |task| {
            let failed = match task.exception() {
                Ok(Some(e)) => {
                    let ctx =
                        ExceptionContext::new("unhandled panic in a stream server's client_connected task")
                            .with_error(e)
                            .with_task(task.name());
                    task.get_loop().call_exception_handler(&ctx);
                    true
                }
                _ => task.cancelled(),
            };
            if failed {
                transport.close();
            }
        });
    })
}

/// Starts a server on `host:port` that runs `client_connected(reader,
/// writer)` as a new task for each connection (asyncio's `start_server`).
/// An empty `host` listens on every interface; several hosts listen on
/// each (see [`ServerHosts`]). If a connection's task
/// panics or is cancelled, its connection is closed, and a panic is passed
/// to the loop's exception handler.
///
/// # Errors
///
/// As [`EventLoop::create_server`].
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn start_server<F, Fut>(
    client_connected: F,
    host: impl ServerHosts,
    port: u16,
    options: StreamServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = running_loop("start_server");
    let factory = server_protocol_factory(&lp, client_connected, options.limit);
    lp.create_server(factory, host, port, options.server).await
}

/// Starts a stream server on a socket the caller made (asyncio's
/// `start_server(sock=…)` and `start_unix_server(sock=…)`).
///
/// # Errors
///
/// As [`EventLoop::create_server_from_socket`].
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn start_server_from_socket<F, Fut>(
    client_connected: F,
    socket: impl Into<socket2::Socket>,
    options: StreamServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = running_loop("start_server_from_socket");
    let factory = server_protocol_factory(&lp, client_connected, options.limit);
    lp.create_server_from_socket(factory, socket, options.server).await
}

/// Starts a Unix-socket server at `path` (asyncio's `start_unix_server`).
///
/// # Errors
///
/// As [`EventLoop::create_unix_server`].
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn start_unix_server<F, Fut>(
    client_connected: F,
    path: impl AsRef<Path>,
    options: StreamServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = running_loop("start_unix_server");
    let factory = server_protocol_factory(&lp, client_connected, options.limit);
    lp.create_unix_server(factory, path, options.server).await
}

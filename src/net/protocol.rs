//! asyncio's protocol interfaces: [`Protocol`], [`BufferedProtocol`] and
//! [`DatagramProtocol`].
//!
//! A transport calls its protocol in asyncio's order:
//! `connection_made → data_received* → eof_received? → connection_lost`,
//! with `pause_writing`/`resume_writing` in between when the write buffer
//! crosses its limits. `connection_lost` is called exactly once, after the
//! last `data_received`, and no method is called after it; then the
//! transport drops the protocol. Closing the loop closes every transport
//! still open: its protocol gets `connection_lost(Some(Error::Closed))`
//! inside `close()` (a loop dropped without `close()` drops its protocols
//! without that call).

use crate::error::Error;
use crate::net::transport::Transport;
use crate::net::udp::DatagramTransport;
use socket2::SockAddr;

/// The callbacks of a stream connection (asyncio's `asyncio.Protocol`).
///
/// Each method is called from the loop with the protocol borrowed mutably;
/// a method may call any [`Transport`] method, including `close` and
/// `abort`. Notifications that a transport method triggers while the
/// protocol is busy (say `pause_writing` from a `write` inside
/// `data_received`) are delivered right after the current method returns.
///
/// # Examples
///
/// ```
/// use evloop::net::{Protocol, Transport};
///
/// /// Writes back whatever it receives.
/// struct Echo(Option<Transport>);
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.0 = Some(transport.clone());
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         if let Some(t) = &self.0 {
///             t.write(data).ok();
///         }
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// The connection is up; keep `transport` (a cheap clone) to write.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived. `data` is only valid for this call.
    fn data_received(&mut self, data: &[u8]);

    /// The peer closed its side (sent EOF). Return `true` to keep the
    /// connection half-open so you can still write (then close it yourself);
    /// `false` (the default) closes the transport.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after an orderly close, the error
    /// otherwise (reset, broken pipe…; [`Error::Closed`] when the loop was
    /// closed with the connection open). Called exactly once, and last.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }

    /// The transport's write buffer went over its high-water mark: stop
    /// writing until `resume_writing`.
    fn pause_writing(&mut self) {}

    /// The write buffer drained to its low-water mark.
    ///
    /// A `pause_writing` caused by writes made in here arrives only after
    /// this method returns (the protocol is busy until then), so a loop that
    /// writes until paused should check
    /// [`Transport::get_write_buffer_size`] against the high-water mark
    /// instead of waiting for the notification.
    fn resume_writing(&mut self) {}
}

/// A stream protocol that provides its own receive buffer (asyncio's
/// `BufferedProtocol`): the transport reads from the socket straight into
/// the slice returned by [`get_buffer`](BufferedProtocol::get_buffer), with
/// no intermediate copy. Use it by wrapping it in [`Buffered`].
pub trait BufferedProtocol: 'static {
    /// As [`Protocol::connection_made`].
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// A buffer to read into; `size_hint` is what the transport would like
    /// (the slice may be smaller or larger, but not empty).
    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8];

    /// `nbytes` bytes were written to the start of the last buffer.
    fn buffer_updated(&mut self, nbytes: usize);

    /// As [`Protocol::eof_received`].
    fn eof_received(&mut self) -> bool {
        false
    }

    /// As [`Protocol::connection_lost`].
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }

    /// As [`Protocol::pause_writing`].
    fn pause_writing(&mut self) {}

    /// As [`Protocol::resume_writing`].
    fn resume_writing(&mut self) {}
}

/// Marks a [`BufferedProtocol`] for the transport functions, which take
/// anything implementing [`StreamProtocol`].
#[derive(Debug, Default)]
pub struct Buffered<P>(pub P);

/// What a stream transport drives: every [`Protocol`], and
/// [`Buffered`]`<P>` for every [`BufferedProtocol`]. Sealed; implement
/// `Protocol` or `BufferedProtocol` instead.
pub trait StreamProtocol: sealed::Sealed + std::any::Any {
    /// How the transport reads for this protocol; asked when the protocol
    /// is given to the transport (made, or `set_protocol`).
    #[doc(hidden)]
    fn read_path(&self) -> ReadPath;
    #[doc(hidden)]
    fn connection_made(&mut self, transport: &Transport);
    /// [`ReadPath::Direct`]: receives from `socket` straight into the
    /// protocol's own storage and processes it. `Ok(0)` is EOF.
    #[doc(hidden)]
    fn receive(&mut self, socket: &socket2::Socket) -> std::io::Result<usize> {
        let _ = socket;
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// [`ReadPath::Buffered`]: the protocol's buffer to read into.
    #[doc(hidden)]
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]>;
    #[doc(hidden)]
    fn buffer_updated(&mut self, nbytes: usize);
    #[doc(hidden)]
    fn data_received(&mut self, data: &[u8]);
    #[doc(hidden)]
    fn eof_received(&mut self) -> bool;
    #[doc(hidden)]
    fn connection_lost(&mut self, error: Option<Error>);
    #[doc(hidden)]
    fn pause_writing(&mut self);
    #[doc(hidden)]
    fn resume_writing(&mut self);
}

/// How a stream transport reads for its protocol.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// Into the loop's shared receive buffer, then `data_received`.
    Shared,
    /// Into the buffer from `get_buffer`, then `buffer_updated`.
    Buffered,
    /// The protocol receives from the socket itself (streams).
    Direct,
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl<P: super::Protocol> Sealed for P {}
    impl<P: super::BufferedProtocol> Sealed for super::Buffered<P> {}
}

impl<P: Protocol> StreamProtocol for P {
    fn read_path(&self) -> ReadPath {
        ReadPath::Shared
    }
    fn connection_made(&mut self, transport: &Transport) {
        Protocol::connection_made(self, transport)
    }
    fn get_buffer(&mut self, _: usize) -> Option<&mut [u8]> {
        None
    }
    fn buffer_updated(&mut self, _: usize) {}
    fn data_received(&mut self, data: &[u8]) {
        Protocol::data_received(self, data)
    }
    fn eof_received(&mut self) -> bool {
        Protocol::eof_received(self)
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        Protocol::connection_lost(self, error)
    }
    fn pause_writing(&mut self) {
        Protocol::pause_writing(self)
    }
    fn resume_writing(&mut self) {
        Protocol::resume_writing(self)
    }
}

impl<P: BufferedProtocol> StreamProtocol for Buffered<P> {
    fn read_path(&self) -> ReadPath {
        ReadPath::Buffered
    }
    fn connection_made(&mut self, transport: &Transport) {
        self.0.connection_made(transport)
    }
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]> {
        Some(self.0.get_buffer(size_hint))
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.0.buffer_updated(nbytes)
    }
    fn data_received(&mut self, data: &[u8]) {
        // Not used for buffered protocols (the transport reads into
        // `get_buffer`), but kept correct: copy in through the buffer.
        let mut rest = data;
        while !rest.is_empty() {
            let buf = self.0.get_buffer(rest.len());
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.0.buffer_updated(n);
            rest = &rest[n..];
        }
    }
    fn eof_received(&mut self) -> bool {
        self.0.eof_received()
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.0.connection_lost(error)
    }
    fn pause_writing(&mut self) {
        self.0.pause_writing()
    }
    fn resume_writing(&mut self) {
        self.0.resume_writing()
    }
}

/// The callbacks of a datagram endpoint (asyncio's `DatagramProtocol`).
pub trait DatagramProtocol: std::any::Any {
    /// The endpoint is ready; keep `transport` to send.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: SockAddr);

    /// A send or receive failed (e.g. `ECONNREFUSED` from an ICMP port
    /// unreachable); the endpoint stays open.
    fn error_received(&mut self, error: Error) {
        let _ = error;
    }

    /// The endpoint was closed. Called exactly once.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }

    /// The send buffer went over its high-water mark.
    fn pause_writing(&mut self) {}

    /// The send buffer drained to its low-water mark.
    fn resume_writing(&mut self) {}
}

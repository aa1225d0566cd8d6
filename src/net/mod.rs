//! asyncio's networking layer on evloop: low-level `sock_*` coroutines,
//! transports and protocols, servers, UDP and Unix sockets, and name
//! resolution, N loops on N threads serving one port ([`LoopGroup`]),
//! and TLS on rustls ([`tls`], the default-on `tls` feature).
//! Everything is built on the loop's own readers, writers,
//! futures and tasks.
//!
//! Every socket the layer creates is nonblocking and close-on-exec, and
//! every send uses `MSG_NOSIGNAL`: a peer that has gone gives an error
//! (through `connection_lost` for transports), never a `SIGPIPE`.
//!
//! Lifetimes: transports and servers hold their loop weakly and are closed
//! by the loop's [`close`](crate::EventLoop::close); after
//! `connection_lost` a transport keeps neither its socket nor its protocol,
//! so nothing a connection owned outlives it (see the transport core,
//! `net/core.rs`).
//!
//! The `sock_*` methods, [`create_connection`](crate::EventLoop::create_connection),
//! [`create_server`](crate::EventLoop::create_server) and the rest are
//! methods of [`EventLoop`](crate::EventLoop); this module holds the types.

mod connect;
pub(crate) mod core;
mod dns;
mod extra;
mod listen;
mod multi;
pub(crate) mod protocol;
mod sendfile;
mod server;
pub(crate) mod sock;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub(crate) mod transport;
mod udp;

pub use connect::ConnectOptions;
pub use extra::{ExtraInfo, SocketView};
pub use listen::{ServerHosts, ServerOptions};
pub use multi::{LoopFailure, LoopGroup, LoopGroupError, handoff_protocol, handoff_streams};
pub use protocol::{Buffered, BufferedProtocol, DatagramProtocol, Protocol, StreamProtocol};
pub use server::{ACCEPT_RETRY_DELAY, Server};
pub use transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Transport};
pub use udp::{DatagramOptions, DatagramTransport};

/// The socket types the `sock_*` methods and servers use, re-exported.
pub use socket2::{self, Domain, SockAddr, Socket, Type};

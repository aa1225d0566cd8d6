//! hyper 1.x (and through it axum and other tower services) on the loop:
//! the `hyper` cargo feature.
//!
//! Named `compat` rather than `hyper` so that `use evloop::compat;` never
//! shadows the `hyper` crate in a user's scope. What it holds:
//!
//! - [`hyper::rt::Read`]/[`hyper::rt::Write`] for
//!   [`DuplexStream`](crate::DuplexStream) (and `Read` for
//!   [`StreamReader`](crate::StreamReader), `Write` for
//!   [`StreamWriter`](crate::StreamWriter)): hyper takes an evloop
//!   connection as it is, plain or TLS.
//! - [`LoopExecutor`]: hyper's `rt::Executor` spawning on the running loop;
//!   the futures need not be `Send`.
//! - [`LoopTimer`], [`SendSleep`], [`sleep`], [`sleep_until`]: hyper's
//!   `rt::Timer` on the loop's timers, and the `Send + Sync` sleep it wants,
//!   also what an axum handler (whose future must be `Send`) awaits instead
//!   of [`crate::sleep`].
//! - Serving: [`builder`] (hyper-util's HTTP/1 + HTTP/2 auto-detecting
//!   connection builder, set up with the executor and timer),
//!   [`serve_connection`], [`hyper_handler`]/[`tower_handler`] (handlers for
//!   [`start_server`](crate::start_server) and its siblings) and [`serve`].
//! - Client: [`http1_handshake`], [`http2_handshake`], [`connect_http1`],
//!   [`connect_http2`].
//!
//! No tokio runtime is involved: hyper-util is used without its `tokio`
//! feature; `h2` brings in tokio's I/O traits (`io-util`) only, no reactor
//! or scheduler.
//!
//! # What does not work
//!
//! - hyper's connection upgrades (`hyper::upgrade::on`, HTTP/1 `Upgrade`,
//!   HTTP/2 extended CONNECT): hyper requires the I/O type to be `Send` for
//!   them, and a loop's connection is not. For WebSocket, speak it on the
//!   [`DuplexStream`](crate::DuplexStream) directly (the `ws_echo` example
//!   uses async-tungstenite).
//! - Crates that need tokio's reactor: see the README's "Ecosystem"
//!   section (and [`RemoteLoop`](crate::RemoteLoop) for bridging to a tokio
//!   runtime on another thread).
//!
//! # Examples
//!
//! A server and a client on one loop:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper::{Request, Response, body::Incoming, service::service_fn};
//! use evloop::compat;
//!
//! let body = evloop::run(async {
//!     let hello = service_fn(|_req: Request<Incoming>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     });
//!     let server = compat::serve(hello, "127.0.0.1", 0).await?;
//!     let port = server.local_addr().unwrap().port();
//!
//!     let mut client = compat::connect_http1("127.0.0.1", port).await?;
//!     let req = Request::get("/").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
//!     let resp = client.send_request(req).await.map_err(evloop::Error::other)?;
//!     let body = resp.into_body().collect().await.map_err(evloop::Error::other)?.to_bytes();
//!     server.close();
//!     Ok::<_, evloop::Error>(body)
//! })??;
//! assert_eq!(body, "hello");
//! # Ok::<(), evloop::Error>(())
//! ```

mod client;
mod io;
mod rt;
mod server;

pub use client::{connect_http1, connect_http2, http1_handshake, http2_handshake};
pub use rt::{LoopExecutor, LoopTimer, SendSleep, sleep, sleep_until};
pub use server::{
    BoxError, ConnFuture, builder, hyper_handler, hyper_handler_with, serve, serve_connection, tower_handler,
};

/// The hyper crate this module is built against, re-exported so that users
/// name the same version.
pub use hyper;
/// The hyper-util crate this module is built against.
pub use hyper_util;

//! evloop is a single-threaded, callback-driven event loop modeled on
//! Python's `asyncio`: `call_soon`, `call_later`, `add_reader`, `Future`,
//! `Task`, `run_until_complete` — with Rust types in place of Python objects.
//! Plain closures and `async` code share one loop.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use evloop::EventLoop;
//!
//! let lp = EventLoop::new()?;
//! lp.call_soon(|| println!("Hello"));
//! lp.call_later(Duration::from_millis(10), || println!("World"));
//! let answer = lp.run_until_complete(async {
//!     evloop::sleep(Duration::from_millis(20)).await;
//!     42
//! })?;
//! assert_eq!(answer, 42);
//! lp.close()?;
//! # Ok::<(), evloop::Error>(())
//! ```
//!
//! # How an iteration runs
//!
//! [`EventLoop::run_once`] is CPython's `BaseEventLoop._run_once`:
//!
//! 1. The timeout is zero if callbacks are ready or the loop is stopping,
//!    otherwise the time until the earliest timer (at most 24 h), otherwise
//!    unbounded.
//! 2. The loop polls its fds (skipped when no fd is registered and the
//!    timeout is zero: nothing could be reported) and queues the callbacks
//!    of ready fds; then it takes what other threads sent.
//! 3. Every timer with `when <= now` moves to the ready queue, earliest
//!    first, equal deadlines first-in first-out. A timer never fires early.
//! 4. Exactly the callbacks ready at that point run; what they schedule runs
//!    in the next iteration, after another poll.
//!
//! No `RefCell` borrow of the loop is alive while user code runs, so every
//! method can be called from inside any callback, waker or task. A panicking
//! callback is caught and passed to the exception handler; the loop goes
//! on.
//!
//! # Networking and streams
//!
//! [`net`] has asyncio's networking layer — the `sock_*` coroutines,
//! [`Protocol`](net::Protocol)s driven by [`Transport`](net::Transport)s,
//! servers, UDP and Unix sockets, name resolution — as methods of
//! [`EventLoop`]. The high-level streams ([`open_connection`],
//! [`start_server`], [`StreamReader`], [`StreamWriter`]) sit on top and
//! implement the `futures-io` traits.
//!
//! # Timers and memory
//!
//! Cancelling a timer drops its closure at once. Its heap entry is removed
//! lazily: when it reaches the top of the heap, or when more than half of a
//! heap of over 100 entries is cancelled, at which point the heap is rebuilt
//! without them.
//!
//! # Testing timing logic
//!
//! A loop built with [`Builder::manual_clock`] has a clock that moves only
//! with [`EventLoop::advance_time`]; [`EventLoop::run_until_idle`] then runs
//! everything due, instantly. See [`asyncio`] for the asyncio → evloop name
//! table.
//!
//! # Layout
//!
//! The modules are the layers, bottom up: `sys` (private: every syscall
//! wrapper and every `unsafe` block; the rest of the crate denies unsafe
//! code), [`runtime`] (the loop, its selector, timers, handles, clock,
//! statistics and [`RemoteLoop`]; it knows nothing of networking),
//! [`task`] (futures, tasks and the helpers built on them), [`sync`],
//! [`net`] with the streams in [`net::stream`], and [`os`] (signals). The names used every day are
//! re-exported here; the future types that adapters return live in
//! [`task`].
//!
//! # Portability
//!
//! Unix with a 64-bit target (the poller key carries a generation count);
//! developed and tested on Linux (epoll).
#![deny(missing_docs, unsafe_op_in_unsafe_fn, unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod asyncio;
#[cfg(feature = "hyper")]
pub mod compat;
mod error;
mod exception;
pub mod net;
pub mod os;
pub mod runtime;
pub mod sync;
#[allow(unsafe_code)]
mod sys;
pub mod task;

pub use error::{Error, IoError, Result};
pub use exception::ExceptionContext;
pub use net::stream::{
    DuplexStream, StreamReader, StreamWriter, open_connection, open_connection_from_socket, open_stream,
    open_unix_connection, start_server, start_server_from_socket, start_unix_server,
};
pub use runtime::{
    BlockingWait, Builder, ConcurrentFuture, EventLoop, ExceptionHandler, ForeignEntry, Handle, LoopOwner,
    LoopStats, RemoteLoop, TimerHandle, TimerKey, WaitDone, WaitHook, get_running_loop,
};
pub use task::executor;
pub use task::{
    AnyTask, Awaitable, CallbackId, Future, Interval, ReturnWhen, Runner, RunnerBuilder, Task, TaskGroup,
    Timeout, all_tasks, as_completed, current_task, gather, gather_results, interval, run, shield, sleep,
    sleep_until, spawn, spawn_named, timeout, timeout_at, to_thread, wait, wait_for, yield_now,
};

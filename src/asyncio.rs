//! A guide for asyncio users: where each asyncio name lives in evloop.
//!
//! This module has no code; it is documentation.
//!
//! | asyncio | evloop | notes |
//! |---|---|---|
//! | `asyncio.new_event_loop()` | [`EventLoop::new()`](crate::EventLoop::new) | `EventLoop::builder()` for debug mode and the manual clock |
//! | `asyncio.get_running_loop()` | [`get_running_loop()`](crate::get_running_loop) | `Err(Error::NoRunningLoop)` outside a running loop |
//! | `loop.run_forever()` | [`run_forever()`](crate::EventLoop::run_forever) | |
//! | `loop.run_until_complete(f)` | [`run_until_complete(f)`](crate::EventLoop::run_until_complete) | any [`Awaitable`](crate::Awaitable): a future (wrapped in a task), a `Task` or `Future` (awaited in place, result kept), a `TaskGroup` |
//! | `loop.stop()`, `is_running()`, `close()`, `is_closed()` | same names | `close()` while running is `Err(Error::Running)` |
//! | `loop.time()` | [`time()`](crate::EventLoop::time) | an `Instant` |
//! | (test loop's `advance_time`) | [`advance_time(d)`](crate::EventLoop::advance_time), [`run_until_idle()`](crate::EventLoop::run_until_idle) | manual clock, public API |
//! | `loop._run_once()` | [`run_once(timeout)`](crate::EventLoop::run_once) | public |
//! | `loop.call_soon(cb, *args)` | [`call_soon(closure)`](crate::EventLoop::call_soon) → [`Handle`](crate::Handle) | arguments are captured by the closure |
//! | `loop.call_later(delay, cb)` | [`call_later(Duration, closure)`](crate::EventLoop::call_later) → [`TimerHandle`](crate::TimerHandle) | |
//! | `loop.call_at(when, cb)` | [`call_at(Instant, closure)`](crate::EventLoop::call_at) | |
//! | `Handle.cancel()`, `cancelled()`; `TimerHandle.when()` | same names | |
//! | `loop.call_soon_threadsafe(cb)` | [`lp.remote()`](crate::EventLoop::remote)`.call_soon_threadsafe(closure)` | [`RemoteLoop`](crate::RemoteLoop) is `Send + Sync` |
//! | `loop.run_in_executor(None, fn)` | [`run_in_executor(closure)`](crate::EventLoop::run_in_executor) → `Future<T>` | the loop's own small pool |
//! | `loop.add_reader(fd, cb)` / `remove_reader(fd)` | [`add_reader`](crate::EventLoop::add_reader) / [`remove_reader`](crate::EventLoop::remove_reader) | level-triggered, `FnMut` |
//! | `loop.add_writer(fd, cb)` / `remove_writer(fd)` | [`add_writer`](crate::EventLoop::add_writer) / [`remove_writer`](crate::EventLoop::remove_writer) | |
//! | — | [`wait_readable(fd)`](crate::EventLoop::wait_readable), [`wait_writable(fd)`](crate::EventLoop::wait_writable) | a readiness future for any fd; cancel-safe; shares the fd with `sock_*` waits and callbacks |
//! | `loop.set_exception_handler(h)` | [`set_exception_handler(Some(h))`](crate::EventLoop::set_exception_handler) | the context is an [`ExceptionContext`](crate::ExceptionContext) |
//! | `loop.call_exception_handler(ctx)`, `default_exception_handler(ctx)` | same names | |
//! | `loop.set_debug(True)`, `slow_callback_duration` | [`set_debug(true)`](crate::EventLoop::set_debug), [`Builder::slow_callback_duration`](crate::Builder::slow_callback_duration) | reports where the slow callback was scheduled |
//! | — | [`stats()`](crate::EventLoop::stats) | iterations, callbacks, pending counts, busy/idle time |
//! | `loop.create_future()` | [`create_future::<T>()`](crate::EventLoop::create_future) → [`Future<T>`](crate::Future) | |
//! | `fut.result()`, `exception()`, `done()`, `cancelled()`, `cancel()` | same names | `result()` needs `T: Clone`; awaiting by value does not |
//! | `fut.set_result(v)`, `set_exception(e)` | same names | `Err(Error::InvalidState)` when already done |
//! | `fut.add_done_callback(cb)`, `remove_done_callback(cb)` | same names | removal takes the [`CallbackId`](crate::CallbackId) returned when adding |
//! | `loop.create_task(coro)`, `asyncio.create_task(coro)` | [`create_task(fut)`](crate::EventLoop::create_task), [`spawn(fut)`](crate::spawn) → [`Task<T>`](crate::Task) | |
//! | `task.cancel()` | [`Task::cancel`](crate::Task::cancel) | the future is dropped at its next step (no `CancelledError` to catch: clean up in `Drop`) |
//! | `task.get_name()`, `set_name()` | [`name()`](crate::Task::name), [`set_name()`](crate::Task::set_name) | |
//! | `asyncio.run(main())` | [`evloop::run(fut)`](crate::run) | |
//! | `await asyncio.sleep(d)` | [`sleep(d)`](crate::sleep)`.await`, [`sleep_until(when)`](crate::sleep_until) | |
//! | `await asyncio.sleep(0)` | [`yield_now()`](crate::yield_now)`.await`, or `sleep(Duration::ZERO)` | resumes on the next pass |
//! | `asyncio.gather(*aws)` | [`gather(iter)`](crate::gather); [`gather_results(iter)`](crate::gather_results) for `return_exceptions=True` | children give `Result<T>`; `gather` gives `Result<Vec<T>>`, the first failure at once while the other children run on; outputs in input order |
//! | `asyncio.wait_for(aw, timeout)` | [`wait_for(fut, timeout)`](crate::wait_for) | `Err(Error::Timeout)`; the inner work is dropped/cancelled |
//! | `asyncio.TaskGroup` | [`TaskGroup`](crate::TaskGroup) | children return `Result<T>`; `group.await` |
//! | `asyncio.Event`, `Lock`, `Semaphore`, `Queue` | [`sync::Event`](crate::sync::Event), [`sync::Lock`](crate::sync::Lock), [`sync::Semaphore`](crate::sync::Semaphore), [`sync::Queue`](crate::sync::Queue) | FIFO-fair; `Lock::acquire` returns a guard |
//! | `await loop.sock_recv(sock, n)`, `sock_recv_into`, `sock_sendall`, `sock_connect`, `sock_accept` | [`sock_recv(&sock, n)`](crate::EventLoop::sock_recv)`.await` and the same names | any `AsFd` socket in nonblocking mode; cancelling loses no received bytes |
//! | `sock_recvfrom`, `sock_sendto`, `sock_sendfile` | [`sock_recvfrom`](crate::EventLoop::sock_recvfrom), [`sock_sendto`](crate::EventLoop::sock_sendto), [`sock_sendfile`](crate::EventLoop::sock_sendfile) | `sendfile(2)` with a read/send fallback |
//! | `asyncio.Protocol`, `BufferedProtocol`, `DatagramProtocol` | [`net::Protocol`](crate::net::Protocol), [`net::BufferedProtocol`](crate::net::BufferedProtocol) (wrapped in [`net::Buffered`](crate::net::Buffered)), [`net::DatagramProtocol`](crate::net::DatagramProtocol) | same method names and call order |
//! | `asyncio.Transport` (`write`, `writelines`, `write_eof`, `close`, `abort`, `pause_reading`, `get_write_buffer_size`, `set_write_buffer_limits`, …) | [`net::Transport`](crate::net::Transport), same names | `write` returns `Err(InvalidState)` after `close`/`write_eof` |
//! | `get_extra_info('peername')`, `('sockname')` | [`peer_addr`](crate::net::Transport::peer_addr), [`local_addr`](crate::net::Transport::local_addr) | |
//! | `loop.create_connection(factory, host, port)`, `create_unix_connection`, `connect_accepted_socket` | [`create_connection`](crate::EventLoop::create_connection) and the same names | return `(Transport, Rc<RefCell<P>>)` |
//! | `loop.create_server(factory, host, port, backlog=, reuse_port=, …)`, `create_unix_server` | [`create_server`](crate::EventLoop::create_server)`(factory, host, port, ServerOptions)`, [`create_unix_server`](crate::EventLoop::create_unix_server)`(factory, path, ServerOptions)` | keyword arguments are the fields of a `Default` options struct; `host = ""` for every interface |
//! | `Server.close()`, `wait_closed()`, `serve_forever()`, `is_serving()`, `sockets`, `close_clients()`, `abort_clients()` | [`net::Server`](crate::net::Server), same names | `sockets()` gives the addresses |
//! | `loop.create_datagram_endpoint(factory, local_addr=, remote_addr=)` | [`create_datagram_endpoint(factory, DatagramOptions)`](crate::EventLoop::create_datagram_endpoint), [`create_unix_datagram_endpoint`](crate::EventLoop::create_unix_datagram_endpoint) | |
//! | `loop.getaddrinfo(host, port)`, `getnameinfo(addr, flags)` | [`getaddrinfo`](crate::EventLoop::getaddrinfo), [`getnameinfo`](crate::EventLoop::getnameinfo) | on the executor; `Vec<SocketAddr>` |
//! | `loop.sendfile(transport, file)` | [`sendfile(&transport, &file, offset, count)`](crate::EventLoop::sendfile) | |
//! | `asyncio.open_connection`, `start_server`, `open_unix_connection`, `start_unix_server` | [`open_connection`](crate::open_connection), [`start_server`](crate::start_server), [`open_unix_connection`](crate::open_unix_connection), [`start_unix_server`](crate::start_unix_server) | `limit=` and the server keyword arguments in `StreamConnectOptions` / `StreamServerOptions` |
//! | `StreamReader.read(n)`, `read(-1)`, `readline`, `readexactly`, `readuntil`, `at_eof` | [`StreamReader`](crate::StreamReader): `read(n)`, [`read_to_end`](crate::StreamReader::read_to_end), same names | `&mut self`; also `futures_io::AsyncRead`/`AsyncBufRead` |
//! | `StreamWriter.write`, `writelines`, `drain`, `write_eof`, `close`, `wait_closed` | [`StreamWriter`](crate::StreamWriter), same names | also `futures_io::AsyncWrite` |
//! | `asyncio.IncompleteReadError`, `LimitOverrunError` | [`Error::IncompleteRead`](crate::Error::IncompleteRead), [`Error::LimitOverrun`](crate::Error::LimitOverrun) | |
//! | `asyncio.CancelledError`, `InvalidStateError`, `TimeoutError` | [`Error::Cancelled`](crate::Error::Cancelled), [`Error::InvalidState`](crate::Error::InvalidState), [`Error::Timeout`](crate::Error::Timeout) | one [`Error`](crate::Error) enum |
//! | `RuntimeError('Event loop is closed')` | panic "event loop is closed" when scheduling; [`Error::Closed`](crate::Error::Closed) from `run_*` and `call_soon_threadsafe` | |
//!
//! # Differences worth knowing
//!
//! - Callbacks are closures: there is no `*args`, and `contextvars` are not
//!   modelled.
//! - Cancellation drops the task's future at its next step; an `async` block
//!   cannot catch it, but every value it owns is dropped, so clean-up lives
//!   in `Drop` implementations.
//! - Awaiting a [`Future`](crate::Future) or [`Task`](crate::Task) by value
//!   hands it to the awaiter: if the awaiter is dropped first, the awaited
//!   future or task is cancelled, as asyncio cancels what a cancelled task
//!   was waiting on. Await by reference (`(&fut).await`) to share it instead.
//! - A panic is the counterpart of an unhandled Python exception: caught at
//!   the callback or task boundary and reported as
//!   [`Error::Panicked`](crate::Error::Panicked).
//! - `sock_*` waits are waiters on the fd, not `add_reader`/`add_writer`
//!   callbacks. In asyncio a `sock_recv` replaces a reader already on the
//!   socket: a second concurrent `sock_recv` on one socket leaves the
//!   first pending until it is cancelled, and a reader the user added is
//!   cancelled. In evloop any number of `sock_*` waits,
//!   `wait_readable`/`wait_writable` futures and one reader/writer
//!   callback share an fd, and all of them are told when it is ready.
//! - `sock_*` on a socket a transport owns fails before trying the
//!   operation. asyncio calls `recv`/`send` first and refuses only when
//!   it would have to wait.
//! - `wait_readable`/`wait_writable` have no asyncio counterpart. They
//!   are the readiness half of `sock_*`, for fds that are not sockets
//!   (pipes, ttys, eventfds) or for code that does its own I/O.
//! - Task numbers (`Task-N`) are given when a task's id or name is first
//!   asked for, so they are unique but not in creation order (asyncio
//!   numbers at creation): keeping the number out of the task block keeps
//!   a task within glibc's fast bins.
//! - Awaiting a `Task`/`Future` by value (`task.await`, which `gather`,
//!   `wait_for` and `TaskGroup` do) moves its result out, so `T` need not
//!   be `Clone`; `task.result()` afterwards gives `InvalidState`.
//!   `run_until_complete(task)` and `(&task).await` clone instead and
//!   leave the result in place.
//! - `run_until_complete` of a `Task`/`Future` needs `T: Clone` (Rust
//!   cannot clone-if-possible); use `async move { task.await }`
//!   otherwise.
//! - `wait_for(aw, 0)`: the awaitable is polled once (asyncio 3.12 runs a
//!   coroutine to its first suspension); not ready → `Timeout` and the
//!   awaitable is dropped/cancelled.
//! - `loop.close()` closes open transports and servers and calls
//!   `connection_lost(Error::Closed)` on their protocols (asyncio leaves
//!   them open and warns when they are collected). A loop dropped without
//!   `close()` closes the sockets without calling the protocols.
//! - Keyword arguments of `create_server`, `start_server`,
//!   `open_connection` and friends are the fields of a `Default` options
//!   struct passed as the last argument (`ServerOptions`,
//!   `StreamServerOptions`, `StreamConnectOptions`, `net::ConnectOptions`).
//! - The loop holds a `Server` weakly: dropping every handle stops
//!   listening (asyncio keeps a server serving while the loop references
//!   it).
//! - Loop-owned objects (futures, tasks, transports, servers) hold the
//!   loop weakly, so dropping the last `EventLoop` frees everything
//!   without `close()`. A task whose future holds an `EventLoop` clone
//!   itself (say to call `lp.sock_recv`) is a reference cycle that only
//!   `close()` (or `evloop::run`, which closes) breaks; Python's garbage
//!   collector would find it.
//! - `run_until_complete(fut)` of a plain future (not a `Task`) polls it
//!   in the place asyncio's wrapper task would have in the ready queue,
//!   without making a task, and owns it: when the call returns without its
//!   output (`stop()` first, `interrupt()`, an I/O error) the future is
//!   dropped, which cancels what it was awaiting; asyncio's wrapper task
//!   stays pending and runs on in a later `run_*`. Pass
//!   `lp.create_task(fut)` to keep it running. On a quiet loop (nothing
//!   ready, no fd, no timer) a future done at its first poll costs no
//!   pass and no clock read; `stats()` still counts asyncio's two passes
//!   but no busy time.
//! - A stream transport whose receive fills the whole read buffer (256 KiB,
//!   or a `BufferedProtocol`'s buffer) receives again in the same
//!   callback, up to 4 times per readiness event, so `data_received` /
//!   `buffer_updated` may run several times in one pass; asyncio's
//!   selector transports receive once per event (libuv up to 32 times).
//! - With `Builder::busy_poll_interval(d)` set (the Python binding uses
//!   250 µs), a pass with callbacks ready may skip the I/O poll: an fd that
//!   becomes ready is seen within `d` plus one pass. The default polls in
//!   every pass, as asyncio.
//! - After `fork()`, a loop built in the parent refuses to run in the child
//!   (`Error::Forked`): its epoll instance is shared with the parent, so
//!   running it would take the parent's events. asyncio's loop runs there.
//!   Build a new loop in the child; closing or dropping the inherited one
//!   is safe and leaves the parent's fds registered.

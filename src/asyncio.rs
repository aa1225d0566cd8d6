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
//! | `asyncio.run_coroutine_threadsafe(coro, loop)` | [`remote.run_coroutine_threadsafe(\|\| fut)`](crate::RemoteLoop::run_coroutine_threadsafe) → [`ConcurrentFuture`](crate::ConcurrentFuture) | takes the closure that makes the future; `result(timeout)`, `cancel()`, awaitable |
//! | `loop.run_in_executor(None, fn)` | [`run_in_executor(closure)`](crate::EventLoop::run_in_executor) → `Future<T>` | the loop's own small pool |
//! | `asyncio.to_thread(fn)` | [`to_thread(closure)`](crate::to_thread) | on the default executor |
//! | `loop.set_default_executor(ThreadPoolExecutor(n))`, `shutdown_default_executor()` | [`set_default_executor(n)`](crate::EventLoop::set_default_executor), [`shutdown_default_executor()`](crate::EventLoop::shutdown_default_executor)`.await` | takes a pool size |
//! | `loop.add_reader(fd, cb)` / `remove_reader(fd)` | [`add_reader`](crate::EventLoop::add_reader) / [`remove_reader`](crate::EventLoop::remove_reader) | level-triggered, `FnMut` |
//! | `loop.add_writer(fd, cb)` / `remove_writer(fd)` | [`add_writer`](crate::EventLoop::add_writer) / [`remove_writer`](crate::EventLoop::remove_writer) | |
//! | — | [`wait_readable(fd)`](crate::EventLoop::wait_readable), [`wait_writable(fd)`](crate::EventLoop::wait_writable) | a readiness future for any fd; cancel-safe; shares the fd with `sock_*` waits and callbacks |
//! | `loop.set_exception_handler(h)` | [`set_exception_handler(Some(h))`](crate::EventLoop::set_exception_handler) | the context is an [`ExceptionContext`](crate::ExceptionContext) |
//! | `loop.call_exception_handler(ctx)`, `default_exception_handler(ctx)`, `get_exception_handler()` | same names | `get_exception_handler` gives the [`ExceptionHandler`](crate::ExceptionHandler) |
//! | `loop.set_debug(True)`, `slow_callback_duration` | [`set_debug(true)`](crate::EventLoop::set_debug), [`Builder::slow_callback_duration`](crate::Builder::slow_callback_duration) | reports where the slow callback was scheduled |
//! | — | [`stats()`](crate::EventLoop::stats) | iterations, callbacks, pending counts, busy/idle time |
//! | `loop.create_future()` | [`create_future::<T>()`](crate::EventLoop::create_future) → [`Future<T>`](crate::Future) | |
//! | `fut.result()`, `exception()`, `done()`, `cancelled()`, `cancel()` | same names | `result()` needs `T: Clone`; awaiting by value does not |
//! | `fut.set_result(v)`, `set_exception(e)` | same names | `Err(Error::InvalidState)` when already done |
//! | `fut.add_done_callback(cb)`, `remove_done_callback(cb)` | same names | removal takes the [`CallbackId`](crate::CallbackId) returned when adding |
//! | `loop.create_task(coro)`, `asyncio.create_task(coro)` | [`create_task(fut)`](crate::EventLoop::create_task), [`spawn(fut)`](crate::spawn) → [`Task<T>`](crate::Task) | |
//! | `task.cancel()` | [`Task::cancel`](crate::Task::cancel) | the future is dropped at its next step (no `CancelledError` to catch: clean up in `Drop`) |
//! | `create_task(coro, name=)`, `task.get_name()`, `set_name()` | [`create_task_named`](crate::EventLoop::create_task_named), [`spawn_named`](crate::spawn_named), [`get_name`](crate::Task::get_name) (also [`name`](crate::Task::name)), [`set_name`](crate::Task::set_name) | `Task-N` numbered when first asked for |
//! | `asyncio.current_task()`, `all_tasks()` | [`current_task()`](crate::current_task), [`all_tasks()`](crate::all_tasks) → [`AnyTask`](crate::AnyTask) | the main future of `run`/`run_until_complete` is not a task |
//! | `asyncio.run(main())` | [`evloop::run(fut)`](crate::run) | |
//! | `asyncio.Runner(debug=, loop_factory=)` | [`Runner::builder()`](crate::Runner::builder)`.debug(..).loop_factory(..).cancel_on_ctrl_c(..).build()`, [`run`](crate::Runner::run), [`get_loop`](crate::Runner::get_loop), [`close`](crate::Runner::close) | dropping closes; Ctrl-C handling is opt-in |
//! | `asyncio.run(main())` with Ctrl-C cancelling the main task | [`Runner::builder()`](crate::Runner::builder)`.cancel_on_ctrl_c(true).build().run(fut)` | `Err(Error::Cancelled)`; `evloop::run` leaves signals alone |
//! | `await asyncio.sleep(d)` | [`sleep(d)`](crate::sleep)`.await`, [`sleep_until(when)`](crate::sleep_until) | |
//! | `await asyncio.sleep(0)` | [`yield_now()`](crate::yield_now)`.await`, or `sleep(Duration::ZERO)` | resumes on the next pass |
//! | `asyncio.gather(*aws)` | [`gather(iter)`](crate::gather); [`gather_results(iter)`](crate::gather_results) for `return_exceptions=True` | children give `Result<T>`; `gather` gives `Result<Vec<T>>`, the first failure at once while the other children run on; outputs in input order |
//! | `asyncio.wait_for(aw, timeout)` | [`wait_for(fut, timeout)`](crate::wait_for) | `Err(Error::Timeout)`; the inner work is dropped/cancelled |
//! | `async with asyncio.timeout(d) as t`, `timeout_at(when)`, `Timeout.reschedule/when/expired` | [`timeout(d, \|t\| fut)`](crate::timeout), [`timeout_at(when, \|t\| fut)`](crate::timeout_at), [`Timeout`](crate::Timeout) | the scope is a future; the handle is passed into the work |
//! | `asyncio.shield(aw)` | [`shield(task)`](crate::shield) | dropping the `Shield` leaves the task running; a plain future is spawned first |
//! | `asyncio.wait(aws, timeout, return_when)` | [`wait(tasks, timeout, ReturnWhen)`](crate::wait) → `(done, pending)` | `Vec`s in input order; tasks give `Result<T>` (an `Err` is an exception); cancels nothing |
//! | `asyncio.as_completed(aws, timeout)` | [`as_completed(tasks, timeout)`](crate::as_completed)`.next().await` | `Err(Error::Timeout)` for each missing outcome after the timeout |
//! | — | [`interval(period)`](crate::interval)`.tick().await` | missed ticks skipped, schedule kept |
//! | `asyncio.TaskGroup` | [`TaskGroup`](crate::TaskGroup) | children return `Result<T>`; `group.await` |
//! | `asyncio.Event`, `Lock`, `Semaphore`, `Queue` | [`sync::Event`](crate::sync::Event), [`sync::Lock`](crate::sync::Lock), [`sync::Semaphore`](crate::sync::Semaphore), [`sync::Queue`](crate::sync::Queue) | FIFO-fair; `Lock::acquire` returns a guard |
//! | `asyncio.Condition`, `Barrier`, `BoundedSemaphore` | [`sync::Condition`](crate::sync::Condition), [`sync::Barrier`](crate::sync::Barrier), [`sync::BoundedSemaphore`](crate::sync::BoundedSemaphore) | `Condition::wait` takes and returns the `LockGuard` |
//! | `asyncio.PriorityQueue`, `LifoQueue`, `Queue.shutdown()`, `QueueShutDown` | [`sync::PriorityQueue`](crate::sync::PriorityQueue), [`sync::LifoQueue`](crate::sync::LifoQueue), [`Queue::shutdown`](crate::sync::Queue::shutdown), [`Error::QueueShutDown`](crate::Error::QueueShutDown) | equal priorities FIFO; `put`/`get` give a `Result` |
//! | `await loop.sock_recv(sock, n)`, `sock_recv_into`, `sock_sendall`, `sock_connect`, `sock_accept` | [`sock_recv(&sock, n)`](crate::EventLoop::sock_recv)`.await` and the same names | any `AsFd` socket in nonblocking mode; cancelling loses no received bytes |
//! | `sock_recvfrom`, `sock_sendto`, `sock_sendfile` | [`sock_recvfrom`](crate::EventLoop::sock_recvfrom), [`sock_sendto`](crate::EventLoop::sock_sendto), [`sock_sendfile`](crate::EventLoop::sock_sendfile) | `sendfile(2)` with a read/send fallback |
//! | `asyncio.Protocol`, `BufferedProtocol`, `DatagramProtocol` | [`net::Protocol`](crate::net::Protocol), [`net::BufferedProtocol`](crate::net::BufferedProtocol) (wrapped in [`net::Buffered`](crate::net::Buffered)), [`net::DatagramProtocol`](crate::net::DatagramProtocol) | same method names and call order |
//! | `asyncio.Transport` (`write`, `writelines`, `write_eof`, `close`, `abort`, `pause_reading`, `get_write_buffer_size`, `set_write_buffer_limits`, …) | [`net::Transport`](crate::net::Transport), same names | `write` returns `Err(InvalidState)` after `close`/`write_eof` |
//! | `get_extra_info('socket')`, `('sockname')`, `('peername')` | [`get_extra_info(name)`](crate::net::Transport::get_extra_info) → [`net::ExtraInfo`](crate::net::ExtraInfo); typed: [`with_socket`](crate::net::Transport::with_socket), [`local_sockaddr`](crate::net::Transport::local_sockaddr), [`peer_sockaddr`](crate::net::Transport::peer_sockaddr) (also on `DatagramTransport`) | the socket is lent to a closure, never handed out |
//! | `transport.set_protocol(p)`, `get_protocol()` | [`set_protocol(p)`](crate::net::Transport::set_protocol), [`get_protocol::<P>()`](crate::net::Transport::get_protocol) (also on [`DatagramTransport`](crate::net::DatagramTransport::set_protocol)) | typed; safe from inside the old protocol's methods |
//! | `loop.create_connection(factory, host, port, local_addr=, happy_eyeballs_delay=, interleave=)`, `create_unix_connection`, `connect_accepted_socket` | [`create_connection(factory, host, port, ConnectOptions)`](crate::EventLoop::create_connection), [`create_unix_connection(factory, path, ConnectOptions)`](crate::EventLoop::create_unix_connection), [`connect_accepted_socket`](crate::EventLoop::connect_accepted_socket); [`create_connection_to`](crate::EventLoop::create_connection_to) for resolved addresses | return `(Transport, Rc<RefCell<P>>)`; [`net::ConnectOptions`](crate::net::ConnectOptions) has setters |
//! | `loop.create_connection(sock=)`, `open_connection(sock=)` | [`create_connection_from_socket`](crate::EventLoop::create_connection_from_socket), [`open_connection_from_socket`](crate::open_connection_from_socket) | |
//! | `loop.create_server(factory, host, port, backlog=, reuse_port=, …)`, `create_unix_server` | [`create_server`](crate::EventLoop::create_server)`(factory, host, port, ServerOptions)`, [`create_unix_server`](crate::EventLoop::create_unix_server)`(factory, path, ServerOptions)` | keyword arguments are the fields of a `Default` options struct; `host = ""` for every interface |
//! | `loop.create_server(sock=)`, `create_unix_server(sock=)`, `start_server(sock=)` | [`create_server_from_socket`](crate::EventLoop::create_server_from_socket), [`start_server_from_socket`](crate::start_server_from_socket) | |
//! | `loop.create_server(factory, [host1, host2], port)`, `start_serving=False` | `create_server(factory, ["h1", "h2"], port, …)` ([`ServerHosts`](crate::net::ServerHosts)); `ServerOptions { start_serving: false, .. }` then [`Server::start_serving`](crate::net::Server::start_serving) / `serve_forever` | one listener per distinct address |
//! | `Server.close()`, `wait_closed()`, `serve_forever()`, `is_serving()`, `sockets`, `close_clients()`, `abort_clients()` | [`net::Server`](crate::net::Server), same names | `sockets()` gives the addresses |
//! | `loop.create_datagram_endpoint(factory, local_addr=, remote_addr=)` | [`create_datagram_endpoint(factory, DatagramOptions)`](crate::EventLoop::create_datagram_endpoint), [`create_unix_datagram_endpoint`](crate::EventLoop::create_unix_datagram_endpoint) | |
//! | `loop.getaddrinfo(host, port)`, `getnameinfo(addr, flags)` | [`getaddrinfo`](crate::EventLoop::getaddrinfo), [`getnameinfo`](crate::EventLoop::getnameinfo) | on the executor; `Vec<SocketAddr>` |
//! | `loop.sendfile(transport, file)` | [`sendfile(&transport, &file, offset, count)`](crate::EventLoop::sendfile) | a TLS transport reads and writes (no `fallback=`) |
//! | `asyncio.open_connection`, `start_server`, `open_unix_connection`, `start_unix_server` | [`open_connection`](crate::open_connection), [`start_server`](crate::start_server), [`open_unix_connection`](crate::open_unix_connection), [`start_unix_server`](crate::start_unix_server) | `limit=` and the server keyword arguments in `StreamConnectOptions` / `StreamServerOptions` |
//! | `StreamReader.read(n)`, `read(-1)`, `readline`, `readexactly`, `readuntil`, `at_eof` | [`StreamReader`](crate::StreamReader): `read(n)`, [`read_to_end`](crate::StreamReader::read_to_end), same names | `&mut self`; also `futures_io::AsyncRead`/`AsyncBufRead` |
//! | `StreamWriter.write`, `writelines`, `drain`, `write_eof`, `close`, `wait_closed` | [`StreamWriter`](crate::StreamWriter), same names | also `futures_io::AsyncWrite` |
//! | — | [`DuplexStream`](crate::DuplexStream), [`open_stream`](crate::open_stream), [`duplex_handler`](crate::net::stream::duplex_handler) | reader and writer in one `futures-io` value |
//! | `asyncio.IncompleteReadError`, `LimitOverrunError` | [`Error::IncompleteRead`](crate::Error::IncompleteRead), [`Error::LimitOverrun`](crate::Error::LimitOverrun) | |
//! | `ssl=ctx, server_hostname=, ssl_handshake_timeout=, ssl_shutdown_timeout=` on `create_connection`/`open_connection` | [`ConnectOptions::ssl`](crate::net::ConnectOptions::ssl) and its siblings, on [`create_connection`](crate::EventLoop::create_connection) / `StreamConnectOptions::connect` | returns after the handshake; feature `tls` (on by default) |
//! | `ssl=ctx` on `create_server`/`start_server` | [`ServerOptions::ssl`](crate::net::ServerOptions::ssl) (+ the two timeouts) | handshake before `connection_made` |
//! | `loop.start_tls(transport, protocol, ctx, server_side=, server_hostname=)`, `StreamWriter.start_tls` | [`start_tls(&t, config, TlsOptions)`](crate::EventLoop::start_tls), [`StreamWriter::start_tls`](crate::net::stream::StreamWriter::start_tls) | returns the new transport |
//! | `ssl.create_default_context()`, `load_cert_chain`, `load_verify_locations` | [`net::tls::client_config`](crate::net::tls::client_config), [`server_config_from_pem_files`](crate::net::tls::server_config_from_pem_files), [`client_config_from_pem_file`](crate::net::tls::client_config_from_pem_file) | rustls configs |
//! | `get_extra_info('peercert')`, `('cipher')`, `('ssl_object')` | [`get_extra_info`](crate::net::Transport::get_extra_info) (`ExtraInfo::{PeerCert, Cipher, SslObject}`), [`peer_certificates`](crate::net::Transport::peer_certificates), [`tls_info`](crate::net::Transport::tls_info), [`cipher_suite`](crate::net::Transport::cipher_suite), [`tls_version`](crate::net::Transport::tls_version), [`alpn_protocol`](crate::net::Transport::alpn_protocol) | DER chain |
//! | `loop.add_signal_handler(sig, cb)`, `remove_signal_handler(sig)` | [`add_signal_handler(signum, closure)`](crate::EventLoop::add_signal_handler), [`remove_signal_handler(signum)`](crate::EventLoop::remove_signal_handler) | `FnMut`, run on the loop as a callback; numbers in [`os::signal`](crate::os::signal) |
//! | `loop.connect_read_pipe(factory, pipe)` | [`connect_read_pipe(factory, pipe)`](crate::EventLoop::connect_read_pipe) → ([`ReadPipeTransport`](crate::os::pipe::ReadPipeTransport), protocol) | `pipe`: anything `Into<OwnedFd>`; regular files refused |
//! | `loop.connect_write_pipe(factory, pipe)` | [`connect_write_pipe(factory, pipe)`](crate::EventLoop::connect_write_pipe) → ([`WritePipeTransport`](crate::os::pipe::WritePipeTransport), protocol) | stream transport flow control |
//! | `loop.subprocess_exec(factory, *args, stdin=…)` | [`subprocess_exec(factory, program, args, options)`](crate::EventLoop::subprocess_exec) → ([`SubprocessTransport`](crate::os::process::SubprocessTransport), protocol) | [`SubprocessOptions`](crate::os::process::SubprocessOptions) instead of keyword arguments |
//! | `loop.subprocess_shell(factory, cmd)` | [`subprocess_shell(factory, cmd, options)`](crate::EventLoop::subprocess_shell) | `/bin/sh -c cmd` |
//! | `asyncio.SubprocessProtocol` | [`os::process::SubprocessProtocol`](crate::os::process::SubprocessProtocol) | same methods; `fd` is an `i32` |
//! | `asyncio.create_subprocess_exec(*args)`, `create_subprocess_shell(cmd)` | [`os::process::create_subprocess_exec(program, args, options)`](crate::os::process::create_subprocess_exec), [`create_subprocess_shell`](crate::os::process::create_subprocess_shell) → [`Process`](crate::os::process::Process) | |
//! | `Process.wait()`, `communicate(input)`, `returncode`, `pid`, `send_signal`, `terminate`, `kill` | same names (`returncode()`, `pid()`) | `communicate` returns `(stdout, stderr)` as `Vec<u8>`, empty when not piped |
//! | `subprocess.PIPE`, `DEVNULL`, `STDOUT`, `None` | [`Stdio::Piped`](crate::os::process::Stdio), `Null`, `Stdout`, `Inherit`; `Stdio::Fd(fd)` for a file | |
//! | `asyncio.CancelledError`, `InvalidStateError`, `TimeoutError` | [`Error::Cancelled`](crate::Error::Cancelled), [`Error::InvalidState`](crate::Error::InvalidState), [`Error::Timeout`](crate::Error::Timeout) | one [`Error`](crate::Error) enum |
//! | `RuntimeError('Event loop is closed')` | panic "event loop is closed" when scheduling; [`Error::Closed`](crate::Error::Closed) from `run_*` and `call_soon_threadsafe` | |
//! | `uvicorn --workers N` (one loop per process) | [`net::LoopGroup::reuse_port`](crate::net::LoopGroup::reuse_port) or [`LoopGroup::with_acceptor`](crate::net::LoopGroup::with_acceptor) | one loop per thread in one process |
//!
//! # Differences worth knowing
//!
//! - Past one core, [`LoopGroup`](crate::net::LoopGroup) runs one loop per
//!   thread in one process, not a process per worker (uvicorn, gunicorn): it
//!   shares one port with `SO_REUSEPORT` or hands accepted sockets to the
//!   loops, and the setup's `Send` data (configuration, an `Arc`) is shared
//!   rather than copied.
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
//!   `create_connection`, `open_connection` and friends are an options
//!   value passed as the last argument: the fields of a `Default` struct
//!   (`ServerOptions`, `StreamServerOptions`) or a `#[non_exhaustive]`
//!   builder (`net::ConnectOptions::new().local_addr("127.0.0.1", 0)`,
//!   `StreamConnectOptions::new().limit(n)`). `sock=` is a form of its own:
//!   `create_connection_from_socket(factory, socket, options)` (and
//!   `open_connection_from_socket`), `create_server_from_socket` (and
//!   `start_server_from_socket`). `create_connection_to(factory, addrs,
//!   options)` connects to addresses you resolved (asyncio has no such
//!   form).
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
//! - `current_task()` is `None` in the future given to
//!   `run`/`run_until_complete`/`Runner::run` itself: evloop polls it
//!   without a task around it (asyncio wraps it in one). `spawn` it to make
//!   it a task.
//! - `wait` and `as_completed` watch tasks whose output is a `Result` for
//!   `FirstException` (an `Err` output is the exception; a panic too; a
//!   cancelled task is done, not failed, as in asyncio); `wait` gives
//!   `Vec`s in input order, and with no tasks returns at once (asyncio
//!   raises `ValueError`).
//! - `timeout(delay, |t| work)` is a future, not an `async with` block: the
//!   work gets the `Timeout` handle as an argument. The deadline is fixed
//!   when the scope is first polled (asyncio: when the block is entered,
//!   the same moment in practice); `Timeout::when()` is `None` until then,
//!   and `reschedule` is also allowed before.
//! - `run_coroutine_threadsafe` takes a `Send` closure that builds the
//!   future on the loop thread, not the future itself: a future holding
//!   evloop's own (single-threaded) futures across an `.await` is not
//!   `Send`. A `ConcurrentFuture` whose loop closes before the task
//!   finishes is resolved with `Error::Closed` (asyncio's stays pending
//!   forever).
//! - `set_default_executor` takes a pool size, not an executor object.
//! - `Barrier`: a waiter cancelled while the barrier fills breaks it (the
//!   others get `Error::BrokenBarrier`), as a timed-out
//!   `threading.Barrier.wait` does; asyncio 3.11 lets the cancelled party
//!   leave silently. `reset` and `abort` are plain methods, not coroutines.
//! - `PriorityQueue`: items that compare equal come out in put order (a
//!   sequence number breaks ties); asyncio's heap falls back to comparing
//!   the data.
//! - `Condition::wait` takes and gives back the `LockGuard`, so waiting
//!   without the lock cannot be written; `notify` without the lock is
//!   `Err(Error::InvalidState)` as asyncio's `RuntimeError`.
//! - `Queue::put` hands the item back (`Err(item)`) and `Queue::get` gives
//!   `Err(Error::QueueShutDown)` after a shutdown where asyncio raises
//!   `QueueShutDown`; `get_nowait` gives `None` both when empty and when
//!   shut down and empty (`is_shut_down` tells which); `put_nowait` hands
//!   the item back when full or shut down.
//! - `add_signal_handler` works on a loop of any thread, and several loops
//!   may watch one signal (each runs its handler); asyncio allows it only
//!   in the main thread. Deliveries that arrive before the loop's next pass
//!   merge into one call (asyncio calls once per byte its wakeup fd
//!   received).
//! - `remove_signal_handler` (and `close()`) restore the disposition evloop
//!   found when it first caught the signal, and only once no loop in the
//!   process watches it any more; asyncio sets `SIG_DFL` (for `SIGINT`,
//!   `default_int_handler`, which raises `KeyboardInterrupt`; a Rust
//!   program has no such handler, so `SIGINT`'s default is the OS's: the
//!   process ends). A signal whose `signal-hook-registry` handler another
//!   library installed first is left caught (one that starts watching only
//!   after evloop took the signal loses it at the restore). A handler
//!   removed while its call is queued does not run.
//! - `SIGSEGV`, `SIGILL` and `SIGFPE` are refused (Python accepts them; a
//!   handler deferred to the loop cannot fix the faulting instruction).
//! - `Runner` with `cancel_on_ctrl_c(true)` returns `Err(Error::Cancelled)`
//!   where `asyncio.Runner.run` raises `KeyboardInterrupt`; the
//!   cancellation drops the main future (Rust code cannot catch it and go
//!   on). The first Ctrl-C restores `SIGINT`'s default disposition in the
//!   signal handler itself, so a second one ends the process even while the
//!   loop is stuck in a callback (Python's second Ctrl-C raises
//!   `KeyboardInterrupt` there).
//! - When every address fails, asyncio raises `OSError('Multiple
//!   exceptions: …')`; evloop gives one `Error::Io` whose message lists
//!   each address's error ("multiple errors: connect to A: …; connect to B:
//!   …"), with the common `ErrorKind` if all share one (else `Other`).
//! - `get_extra_info` reads `sockname`/`peername` when asked, so after the
//!   socket is closed they are `None` (asyncio keeps what it read at
//!   creation). `"socket"` is a `SocketView`: `view.with(|s| …)` lends the
//!   socket as a duplicate fd of the same socket for the closure's duration
//!   (options set through it apply; it cannot close or detach the
//!   transport's fd, and none outlives the call, so a kept duplicate cannot
//!   hold a closed connection open). Of asyncio's keys, `socket`,
//!   `sockname`, `peername` and the TLS ones (`peercert`, `cipher`,
//!   `ssl_object`, below) exist so far.
//! - `get_protocol` is typed (`get_protocol::<P>()`), and gives `None`
//!   while the protocol is mutably borrowed (e.g. called from inside one of
//!   its own methods). `set_protocol` returns the new protocol's
//!   `Rc<RefCell<P>>`. As in asyncio, the new protocol gets no
//!   `connection_made`.
//! - Closing on drop: a `StreamWriter` closes its connection (after
//!   flushing) when its last handle is dropped (asyncio 3.13 does it on
//!   garbage collection, with a `ResourceWarning`; no warning here), so
//!   `let (reader, _) = open_connection(..)` closes at once. asyncio's
//!   `start_server` keeps the writer alive in the protocol until the
//!   connection is lost, so a handler returning without `close()` leaves
//!   the connection open; evloop's handler task closes it when it finishes
//!   (unless the handler handed a writer on).
//! - Name clashes with the `futures-io` extension traits: inherent
//!   `StreamWriter::write`/`close` and `StreamReader::read`/`read_to_end`
//!   (asyncio's) win over `AsyncWriteExt::write`/`close` and
//!   `AsyncReadExt::read`/`read_to_end` on a value (`w.close().await` does
//!   not compile: asyncio's `close` is not async); through a `&mut
//!   StreamWriter`, `.write(buf)` is `AsyncWriteExt`'s. Name the trait's
//!   with the fully qualified form (`AsyncWriteExt::close(&mut w).await`).
//!   `DuplexStream` has none of the clashing names inherent, so
//!   `stream.close().await`, `stream.write_all(..)`,
//!   `stream.read_to_end(&mut buf)` work with method syntax.
//! - `ssl=` takes rustls configurations, not an `ssl.SSLContext`:
//!   `Arc<rustls::ClientConfig>` on connections,
//!   `Arc<rustls::ServerConfig>` on servers. `ssl.create_default_context()`
//!   is `net::tls::client_config()` (Mozilla's roots compiled in, not the
//!   system store); `load_verify_locations(cafile)` is
//!   `client_config_from_pem_file`; `load_cert_chain(cert, key)` is
//!   `server_config_from_pem_files`; ALPN is the config's `alpn_protocols`
//!   field. rustls speaks TLS 1.2 and 1.3 only and always verifies with
//!   these helpers (`CERT_REQUIRED`, `check_hostname`).
//! - `start_tls(transport, protocol, sslcontext, server_side=,
//!   server_hostname=)` is `start_tls(&transport, config, TlsOptions)`: the
//!   protocol is the transport's own (what asyncio callers pass), and
//!   `server_side` is the config's kind (`TlsConfig::Server`). A client
//!   without `server_hostname` checks the peer's IP address instead of
//!   failing.
//! - `StreamWriter::start_tls` takes `&mut self`: clones of the writer made
//!   before the upgrade keep the plain transport (upgrade first, then
//!   clone).
//! - `get_extra_info('peercert')` gives a decoded dict of the leaf in
//!   asyncio; evloop's `ExtraInfo::PeerCert` is the DER chain, leaf first
//!   (`peer_certificates()`). `'cipher'` is the same `(name, version,
//!   secret bits)` tuple, with rustls's suite names
//!   (`TLS13_AES_256_GCM_SHA384`, not OpenSSL's `TLS_AES_256_GCM_SHA384`).
//!   `'ssl_object'` is a `TlsInfo` value (the negotiated session), not an
//!   object to call. `'sslcontext'` gives `None` (the rustls config is the
//!   caller's `Arc`).
//! - `sendfile` has no `fallback` parameter: a plain transport always uses
//!   `sendfile(2)`, a TLS one always reads and writes (asyncio's default
//!   `fallback=True`). The fallback reads the file with `pread` on the
//!   loop's thread (asyncio uses the executor), does not move the file's
//!   position, and does not refuse `write` meanwhile.
//! - On a TLS transport `write_eof` does nothing and `can_write_eof()` is
//!   false (asyncio raises `NotImplementedError`).
//! - Closing a TLS transport sends `close_notify` and closes the socket
//!   once it has taken it, without waiting for the peer's `close_notify`
//!   (TLS 1.3 allows it; asyncio waits up to `ssl_shutdown_timeout`); the
//!   shutdown timeout cuts a peer that does not read the last records.
//! - Subprocess options are a `SubprocessOptions` value with
//!   `std::process::Command`'s builder names instead of keyword arguments,
//!   and streams are *inherited* by default for `subprocess_exec` too
//!   (asyncio's low-level `subprocess_exec` pipes all three by default):
//!   use `SubprocessOptions::piped()` for asyncio's default.
//! - Dropping a `SubprocessTransport` or `Process` (every handle) neither
//!   kills the child nor leaks it: the child stays watched and is reaped
//!   when it exits (asyncio's `__del__` closes the transport, which kills
//!   it). `close()` kills a running child, as asyncio's does.
//! - Closing the loop kills and reaps every child still running and drops
//!   its protocol; asyncio leaves children to its child watcher.
//! - `send_signal` after the child was reaped is an `ESRCH` error
//!   (asyncio's `ProcessLookupError`), never a signal to a reused pid.
//! - A write pipe whose reader closes reports it as asyncio does
//!   (`connection_lost(None)` with nothing buffered, else a `BrokenPipe`
//!   error) only because `SIGPIPE` is ignored, as Rust's runtime sets it
//!   before `main`: evloop never changes the disposition, so a host that
//!   restores `SIG_DFL` is killed by the signal instead.

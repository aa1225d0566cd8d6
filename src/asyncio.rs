//! A guide for asyncio users: where each asyncio name lives in evloop.
//!
//! This module has no code; it is documentation.
//!
//! | asyncio | evloop | notes |
//! |---|---|---|
//! | `asyncio.new_event_loop()` | [`EventLoop::new()`](crate::EventLoop::new) | `EventLoop::builder()` for debug mode and the manual clock |
//! | `asyncio.get_running_loop()` | [`get_running_loop()`](crate::get_running_loop) | `Err(Error::NoRunningLoop)` outside a running loop |
//! | `loop.run_forever()` | [`run_forever()`](crate::EventLoop::run_forever) | |
//! | `loop.run_until_complete(f)` | [`run_until_complete(f)`](crate::EventLoop::run_until_complete) | any `IntoFuture`; wrapped in a task |
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
//! | `await asyncio.sleep(0)` | [`yield_now()`](crate::yield_now)`.await` | |
//! | `asyncio.gather(*aws)` | [`gather(iter)`](crate::gather); [`gather_results(iter)`](crate::gather_results) for `return_exceptions=True` | outputs in input order |
//! | `asyncio.wait_for(aw, timeout)` | [`wait_for(fut, timeout)`](crate::wait_for) | `Err(Error::Timeout)`; the inner work is dropped/cancelled |
//! | `asyncio.TaskGroup` | [`TaskGroup`](crate::TaskGroup) | children return `Result<T>`; `group.await` |
//! | `asyncio.Event`, `Lock`, `Semaphore`, `Queue` | [`sync::Event`](crate::sync::Event), [`sync::Lock`](crate::sync::Lock), [`sync::Semaphore`](crate::sync::Semaphore), [`sync::Queue`](crate::sync::Queue) | FIFO-fair; `Lock::acquire` returns a guard |
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

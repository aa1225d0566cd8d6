//! [`EventLoop`]: scheduling, the `run_once` iteration, and the loop's
//! lifecycle.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use polling::Poller;
use slotmap::SlotMap;

use crate::error::{Error, Result, panic_message};
use crate::exception::{ExceptionContext, report};
use crate::runtime::clock::Clock;
use crate::runtime::handle::{CallbackCell, ForeignEntry, Handle, IN_HEAP, Ready, Runnable, TimerHandle};
use crate::runtime::remote::{RemoteItem, RemoteLoop, RemoteShared};
use crate::runtime::selector::Selector;
use crate::runtime::stats::{LoopStats, StatsCells};
use crate::runtime::timers::TimerHeap;
use crate::runtime::wait::WaitHook;
use crate::sys::{fork, running};
use crate::task::run::{MainMarker, MainStep, PassHook};
use crate::task::task::{TaskKey, TaskSlot};

/// Longest single wait, as asyncio's `MAXIMUM_SELECT_TIMEOUT`: a timer far in
/// the future is re-checked once a day rather than trusted to a huge timeout.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Default `slow_callback_duration`, as asyncio's.
const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// Default [`Builder::busy_poll_interval`]: poll in every pass, as asyncio.
const DEFAULT_BUSY_POLL_INTERVAL: Duration = Duration::ZERO;

/// An exception handler as [`EventLoop::get_exception_handler`] gives it.
pub type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ExceptionContext)>;

static NEXT_LOOP_ID: AtomicU64 = AtomicU64::new(1);

/// The loop's state. One `Cell`/`RefCell` per field, each borrowed only for
/// the statement that needs it, never across a call into user code.
pub(crate) struct LoopInner {
    pub(crate) id: u64,
    pub(crate) ready: RefCell<VecDeque<Ready>>,
    pub(crate) timers: RefCell<TimerHeap>,
    pub(crate) selector: RefCell<Selector>,
    pub(crate) remote: Arc<RemoteShared>,
    /// Reused buffer for draining the remote queue without allocating.
    remote_buf: RefCell<Vec<RemoteItem>>,
    pub(crate) clock: Clock,
    running: Cell<bool>,
    stopping: Cell<bool>,
    /// Set by `interrupt()`: the pass ends after the running callback.
    interrupted: Cell<bool>,
    pub(crate) closed: Cell<bool>,
    debug: Cell<bool>,
    slow_callback_duration: Cell<Duration>,
    exception_handler: RefCell<Option<ExceptionHandler>>,
    pub(crate) stats: StatsCells,
    /// Every task that has not finished: the loop owns them (a dropped
    /// `Task` keeps running, as in asyncio).
    pub(crate) tasks: RefCell<SlotMap<TaskKey, TaskSlot>>,
    /// This loop's slot in the process-wide table task wakers name it by
    /// (claimed by the first task, freed when the loop is dropped).
    pub(crate) waker_slot: Cell<u16>,
    pub(crate) executor: RefCell<Option<crate::task::executor::Executor>>,
    /// What `close()` must shut first: transports and servers register a
    /// closer so the loop can close them (and drop their protocols)
    /// without knowing what they are.
    /// Held weakly and unboxed: a transport registers itself, which costs
    /// one slot, not an allocation.
    closers: RefCell<SlotMap<CloserKey, Weak<dyn Closer>>>,
    /// Signal handlers and subscriptions (os/signal.rs).
    pub(crate) signals: crate::os::signal::LoopSignals,
    /// The ready-queue entry of `run_until_complete`'s future (task/run.rs):
    /// when it runs, the pass polls that future in its place.
    pub(crate) main: Rc<MainMarker>,
    /// How the pass polls: the wait hook, the busy-poll bookkeeping,
    /// autojump, and the fork generation the loop was built in.
    pass: PassState,
}

/// The pass's settings and poll bookkeeping.
struct PassState {
    hook: Option<Rc<dyn WaitHook>>,
    /// While callbacks are ready, poll at most this often.
    busy_poll_interval: Duration,
    /// When the poller was last asked; `None` makes the next pass poll
    /// (every `run_*` call starts that way).
    last_poll: Cell<Option<Instant>>,
    /// Whether the last pass skipped its poll (busy-poll): `run_until_idle`
    /// is only idle after a pass that polled.
    skipped_poll: Cell<bool>,
    /// Manual clock only: how long a pass with nothing ready waits for I/O
    /// before moving the clock to the next timer.
    autojump: Option<Duration>,
    /// `sys::fork::generation()` when the loop was built: a loop from an
    /// older generation was inherited through `fork()`.
    fork_generation: u64,
}

/// Something [`EventLoop::close`] must shut first (a transport, a server),
/// registered with [`EventLoop::on_close`].
pub(crate) trait Closer {
    /// The loop is closing: close now (protocols may be called).
    fn close(self: Rc<Self>);
    /// The loop was dropped without `close()`: free what is held (the
    /// socket, the protocol) without calling user code but destructors.
    fn abandon(self: Rc<Self>) {}
}

slotmap::new_key_type! {
    /// A closer registered with [`EventLoop::on_close`].
    pub(crate) struct CloserKey;
}

/// A loop handle that does not keep the loop alive: what loop-owned
/// objects (futures, tasks, transports, servers) hold, so that dropping the
/// last [`EventLoop`] frees the loop and everything in it.
#[derive(Clone)]
pub(crate) struct WeakLoop(Weak<LoopInner>);

impl WeakLoop {
    /// The loop, unless it has been dropped.
    #[inline]
    pub(crate) fn upgrade(&self) -> Option<EventLoop> {
        self.0.upgrade().map(|inner| EventLoop { inner })
    }

    /// The loop; panics with a clear message if it was dropped.
    #[track_caller]
    pub(crate) fn get(&self) -> EventLoop {
        self.upgrade().expect("the event loop was dropped")
    }

    /// Whether both handles name the same loop.
    pub(crate) fn ptr_eq(&self, other: &EventLoop) -> bool {
        std::ptr::eq(self.0.as_ptr(), Rc::as_ptr(&other.inner))
    }
}

impl fmt::Debug for WeakLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakLoop").field("alive", &(self.0.strong_count() > 0)).finish()
    }
}

impl Drop for LoopInner {
    /// The last handle went without `close()`: refuse later cross-thread
    /// calls and wakes, then let the fields drop (closures, tasks and
    /// transports with them; transports close their sockets). Closers are
    /// dropped unrun: there is no loop left to call protocols from.
    fn drop(&mut self) {
        if self.forked() {
            // Inherited through fork(): the parent's threads may have held
            // the remote queue's or the executor's lock; the epoll instance
            // is the parent's too.
            self.selector.get_mut().abandon_poller();
            drop(self.remote.abandon_after_fork());
            std::mem::forget(self.executor.get_mut().take());
        } else {
            drop(self.remote.close());
        }
        let signals = self.signals.shutdown(self.forked());
        let _ = crate::runtime::guard::drop_user(signals);
        let closers = std::mem::take(self.closers.get_mut());
        for (_, closer) in closers {
            if let Some(closer) = closer.upgrade() {
                let _ = crate::runtime::guard::run_user(move || closer.abandon());
            }
        }
        // A `Task` handle the caller still holds would keep its future (and
        // whatever it owns) alive past the loop: drop every task's future
        // and waiters now, as `close` does.
        let tasks = crate::task::task::take_all(self);
        let _ = crate::runtime::guard::drop_user(tasks);
        crate::task::task::release_waker_slot(self);
    }
}

impl LoopInner {
    /// Whether this loop was built before the process forked (so it
    /// belongs to the parent).
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        self.pass.fork_generation != fork::generation()
    }

    /// Called by `TimerHandle::cancel` for a timer still in the heap.
    pub(crate) fn timer_cancelled(&self) {
        self.timers.borrow_mut().note_cancelled();
    }

    /// Pushes a runnable onto the ready queue (the loop thread only).
    #[inline]
    pub(crate) fn push_ready(&self, item: Rc<dyn Runnable>) {
        self.ready.borrow_mut().push_back(Ready::Core(item));
    }

    /// Pushes a foreign entry onto the ready queue, stored inline.
    #[inline]
    pub(crate) fn push_entry<E: ForeignEntry>(&self, entry: E) {
        self.ready.borrow_mut().push_back(Ready::foreign(entry));
    }

    /// Runs `f` with the loop that is running on this thread, if any.
    #[inline]
    pub(crate) fn with_running<R>(f: impl FnOnce(Option<&LoopInner>) -> R) -> R {
        running::with(f)
    }
}

/// A single-threaded event loop: asyncio's `AbstractEventLoop` in Rust.
///
/// `EventLoop` is a cheap handle (`Clone` copies an `Rc`) and is `!Send`: the
/// loop and everything scheduled on it belong to the thread that created it.
/// Use [`EventLoop::remote`] to reach it from other threads.
///
/// Each iteration ([`run_once`](EventLoop::run_once)) follows asyncio's
/// `_run_once`: compute a timeout, poll for I/O, move due timers to the ready
/// queue, then run exactly the callbacks that were ready when the pass began.
///
/// Loop-owned objects (futures, tasks, transports, servers, fd callbacks)
/// do not keep the loop alive: dropping the last `EventLoop` frees the loop
/// and everything in it, even without [`close`](EventLoop::close). A
/// callback or task that holds a clone of the `EventLoop` itself does keep
/// it alive (a reference cycle through user code); `close()` (or
/// [`run`](crate::run), which closes) breaks it.
///
/// # Methods by concern
///
/// | concern | methods |
/// |---|---|
/// | building | [`new`](EventLoop::new), [`builder`](EventLoop::builder) |
/// | running and stopping | [`run_forever`](EventLoop::run_forever), [`run_until_complete`](EventLoop::run_until_complete), [`run_once`](EventLoop::run_once), [`run_until_idle`](EventLoop::run_until_idle), [`stop`](EventLoop::stop), [`interrupt`](EventLoop::interrupt), [`is_running`](EventLoop::is_running), [`close`](EventLoop::close), [`is_closed`](EventLoop::is_closed) |
/// | scheduling callbacks | [`call_soon`](EventLoop::call_soon), [`call_later`](EventLoop::call_later), [`call_at`](EventLoop::call_at), [`time`](EventLoop::time), [`advance_time`](EventLoop::advance_time), [`next_timer`](EventLoop::next_timer) |
/// | embedders' entries | [`call_soon_entry`](EventLoop::call_soon_entry), [`call_at_entry`](EventLoop::call_at_entry), [`cancel_timer`](EventLoop::cancel_timer), [`visit_entries`](EventLoop::visit_entries), [`clear_entries`](EventLoop::clear_entries) |
/// | futures and tasks | [`create_future`](EventLoop::create_future), [`create_task`](EventLoop::create_task) |
/// | threads | [`remote`](EventLoop::remote) (`call_soon_threadsafe`), [`run_in_executor`](EventLoop::run_in_executor), [`set_default_executor`](EventLoop::set_default_executor), [`shutdown_default_executor`](EventLoop::shutdown_default_executor) |
/// | file descriptors | [`add_reader`](EventLoop::add_reader), [`remove_reader`](EventLoop::remove_reader), [`add_writer`](EventLoop::add_writer), [`remove_writer`](EventLoop::remove_writer) |
/// | low-level sockets | [`sock_recv`](EventLoop::sock_recv), [`sock_recv_into`](EventLoop::sock_recv_into), [`sock_sendall`](EventLoop::sock_sendall), [`sock_connect`](EventLoop::sock_connect), [`sock_accept`](EventLoop::sock_accept), [`sock_recvfrom`](EventLoop::sock_recvfrom), [`sock_recvfrom_into`](EventLoop::sock_recvfrom_into), [`sock_sendto`](EventLoop::sock_sendto), [`sock_sendfile`](EventLoop::sock_sendfile) |
/// | transports and servers | [`create_connection`](EventLoop::create_connection), [`create_unix_connection`](EventLoop::create_unix_connection), [`connect_accepted_socket`](EventLoop::connect_accepted_socket), [`create_server`](EventLoop::create_server), [`create_unix_server`](EventLoop::create_unix_server), [`create_datagram_endpoint`](EventLoop::create_datagram_endpoint), [`create_unix_datagram_endpoint`](EventLoop::create_unix_datagram_endpoint), [`sendfile`](EventLoop::sendfile) |
/// | name resolution | [`getaddrinfo`](EventLoop::getaddrinfo), [`getnameinfo`](EventLoop::getnameinfo) |
/// | signals | [`add_signal_handler`](EventLoop::add_signal_handler), [`remove_signal_handler`](EventLoop::remove_signal_handler) |
/// | errors and debugging | [`set_exception_handler`](EventLoop::set_exception_handler), [`get_exception_handler`](EventLoop::get_exception_handler), [`call_exception_handler`](EventLoop::call_exception_handler), [`default_exception_handler`](EventLoop::default_exception_handler), [`set_debug`](EventLoop::set_debug), [`get_debug`](EventLoop::get_debug), [`set_slow_callback_duration`](EventLoop::set_slow_callback_duration), [`stats`](EventLoop::stats) |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::EventLoop::new()?;
/// let stopper = lp.clone();
/// lp.call_soon(|| println!("first"));
/// lp.call_later(Duration::from_millis(10), move || stopper.stop());
/// lp.run_forever()?;
/// lp.close()?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) inner: Rc<LoopInner>,
}

/// Configures an [`EventLoop`] before it is built.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::EventLoop::builder()
///     .debug(true)
///     .slow_callback_duration(Duration::from_millis(50))
///     .manual_clock()
///     .build()?;
/// assert!(lp.get_debug());
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Builder {
    debug: bool,
    slow_callback_duration: Duration,
    manual_clock: bool,
    autojump: Option<Duration>,
    busy_poll_interval: Duration,
    wait_hook: Option<Rc<dyn WaitHook>>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            debug: false,
            slow_callback_duration: DEFAULT_SLOW_CALLBACK,
            manual_clock: false,
            autojump: None,
            busy_poll_interval: DEFAULT_BUSY_POLL_INTERVAL,
            wait_hook: None,
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("debug", &self.debug)
            .field("slow_callback_duration", &self.slow_callback_duration)
            .field("manual_clock", &self.manual_clock)
            .field("autojump", &self.autojump)
            .field("busy_poll_interval", &self.busy_poll_interval)
            .field("wait_hook", &self.wait_hook.is_some())
            .finish()
    }
}

impl Builder {
    /// Turns debug mode on or off (see [`EventLoop::set_debug`]).
    pub fn debug(mut self, on: bool) -> Builder {
        self.debug = on;
        self
    }

    /// In debug mode, callbacks that run at least this long are reported
    /// (default 100 ms).
    pub fn slow_callback_duration(mut self, d: Duration) -> Builder {
        self.slow_callback_duration = d;
        self
    }

    /// Uses a manual clock: [`EventLoop::time`] starts at the moment the loop
    /// is built and moves only with [`EventLoop::advance_time`]. The loop
    /// then never waits for a timer; drive it with `advance_time` and
    /// [`EventLoop::run_until_idle`]. Meant for tests of timing logic.
    ///
    /// `run_forever` (or `run_once(None)`) on such a loop with nothing but
    /// future timers pending blocks until I/O or another thread wakes it:
    /// nothing else can move the clock.
    pub fn manual_clock(mut self) -> Builder {
        self.manual_clock = true;
        self
    }

    /// Uses the manual clock (as [`manual_clock`](Builder::manual_clock))
    /// and moves it by itself, as trio's autojump clock does: when a pass
    /// finds nothing ready and no timer due, it waits for I/O (or another
    /// thread) for at most `threshold` of *real* time, and if nothing came
    /// it moves the clock to the earliest timer, which then runs in that
    /// pass. A one-hour `wait_for` then completes at once, at loop time
    /// one hour later, and timers still fire in deadline order at their
    /// exact deadlines.
    ///
    /// Jumps happen in the passes of [`run_forever`](EventLoop::run_forever),
    /// [`run_until_complete`](EventLoop::run_until_complete) and
    /// `run_once(None)`; never in [`run_until_idle`](EventLoop::run_until_idle)
    /// or `run_once(Some(..))`, which keep to their own time limit. A zero
    /// threshold jumps as soon as a non-blocking poll finds nothing; raise
    /// it when tests mix timers with real I/O that takes time to arrive.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::builder().autojump(Duration::ZERO).build()?;
    /// let start = lp.time();
    /// let out = lp.run_until_complete(evloop::wait_for(evloop::sleep(Duration::from_secs(7200)),
    ///                                                  Duration::from_secs(3600)))?;
    /// assert!(matches!(out, Err(evloop::Error::Timeout)));
    /// assert_eq!(lp.time() - start, Duration::from_secs(3600));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn autojump(mut self, threshold: Duration) -> Builder {
        self.manual_clock = true;
        self.autojump = Some(threshold);
        self
    }

    /// While callbacks are ready, polls for I/O (with a zero timeout) at
    /// most once per `interval` of real time instead of in every pass. The
    /// default, `Duration::ZERO`, polls in every pass, as asyncio does:
    /// code that counts passes to let I/O in (asyncio's `run_briefly`
    /// idiom, a `yield_now` loop) keeps working. The Python binding uses
    /// 250 µs.
    ///
    /// The bound: an fd that becomes ready while the loop is busy is seen
    /// by the first pass that starts at least `interval` after the last
    /// poll, so within `interval` plus the length of one pass. A pass that
    /// starts with nothing ready always polls (blocking if it may), and so
    /// does the first pass of every `run_*` call: I/O is never starved.
    /// Due timers and other threads' calls (`call_soon_threadsafe`) are
    /// checked in every pass regardless; they need no syscall.
    ///
    /// What it saves: a `sleep(0)` chain or a burst of `call_soon` pays one
    /// `epoll_wait(0)` per pass otherwise, most of the pass's cost.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::builder().busy_poll_interval(Duration::from_micros(250)).build()?;
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn busy_poll_interval(mut self, interval: Duration) -> Builder {
        self.busy_poll_interval = interval;
        self
    }

    /// Runs `hook` around the poll step of every pass (see [`WaitHook`]):
    /// an embedder releases a global lock around the blocking wait, and
    /// checks for signals after it.
    pub fn wait_hook(mut self, hook: impl WaitHook) -> Builder {
        self.wait_hook = Some(Rc::new(hook));
        self
    }

    /// Builds the loop.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the OS poller (epoll and its eventfd) cannot be
    /// created, e.g. when the process is out of file descriptors.
    pub fn build(self) -> Result<EventLoop> {
        fork::install();
        let poller = Arc::new(Poller::new()?);
        let clock = if self.manual_clock { Clock::manual() } else { Clock::Real };
        let epoch = clock.now();
        let inner = LoopInner {
            id: NEXT_LOOP_ID.fetch_add(1, Ordering::Relaxed),
            ready: RefCell::new(VecDeque::new()),
            timers: RefCell::new(TimerHeap::new(epoch)),
            selector: RefCell::new(Selector::new(poller.clone())),
            remote: Arc::new(RemoteShared::new(&poller)),
            remote_buf: RefCell::new(Vec::new()),
            clock,
            running: Cell::new(false),
            stopping: Cell::new(false),
            interrupted: Cell::new(false),
            closed: Cell::new(false),
            debug: Cell::new(self.debug),
            slow_callback_duration: Cell::new(self.slow_callback_duration),
            exception_handler: RefCell::new(None),
            stats: StatsCells::default(),
            tasks: RefCell::new(SlotMap::with_key()),
            waker_slot: Cell::new(crate::task::task::SLOT_UNCLAIMED),
            executor: RefCell::new(None),
            closers: RefCell::new(SlotMap::with_key()),
            signals: Default::default(),
            pass: PassState {
                hook: self.wait_hook,
                busy_poll_interval: self.busy_poll_interval,
                last_poll: Cell::new(None),
                skipped_poll: Cell::new(false),
                autojump: self.autojump,
                fork_generation: fork::generation(),
            },
            main: MainMarker::new(),
        };
        Ok(EventLoop { inner: Rc::new(inner) })
    }
}

/// Marks a loop as running on this thread for the length of a `run_*` call,
/// and undoes that on every exit path, panics included.
pub(crate) struct RunningGuard<'a> {
    lp: &'a EventLoop,
    /// This thread's running-loop slot, released after `drop` below.
    _slot: running::Running,
}

impl RunningGuard<'_> {
    /// Starts the busy-time clock of a run entered with
    /// [`EventLoop::enter_untimed`].
    pub(crate) fn start_timing(&self) {
        self.lp.inner.stats.start_run(Instant::now());
    }
}

impl Drop for RunningGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let inner = &self.lp.inner;
        inner.running.set(false);
        inner.stopping.set(false);
        inner.stats.end_run();
    }
}

/// Returns the loop running on the current thread (asyncio's
/// `get_running_loop`).
///
/// # Errors
///
/// [`Error::NoRunningLoop`] when called outside a callback or task.
///
/// # Examples
///
/// ```
/// assert!(evloop::get_running_loop().is_err());
/// let lp = evloop::EventLoop::new()?;
/// lp.call_soon(|| assert!(evloop::get_running_loop().is_ok()));
/// lp.run_until_idle()?;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn get_running_loop() -> Result<EventLoop> {
    running::get()
        // In a child of fork(), the parent's running loop is not running.
        .filter(|inner| !inner.forked())
        .map(|inner| EventLoop { inner })
        .ok_or(Error::NoRunningLoop)
}

/// The loop running on this thread, for the free functions and futures
/// that only make sense inside one (`spawn`, `sleep`, `gather`, the stream
/// openers…). One message for all of them, naming the caller.
///
/// # Panics
///
/// If no loop is running on this thread.
#[track_caller]
pub(crate) fn running_loop(what: &str) -> EventLoop {
    match get_running_loop() {
        Ok(lp) => lp,
        Err(_) => panic!(
            "{what} needs a running event loop: call it from a task or callback on a running \
             evloop loop (outside one, use the EventLoop methods)"
        ),
    }
}

impl EventLoop {
    /// Creates a loop with the default settings.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the OS poller cannot be created.
    pub fn new() -> Result<EventLoop> {
        Builder::default().build()
    }

    /// Returns a [`Builder`] to configure debug mode, the slow-callback
    /// threshold and the manual clock.
    pub fn builder() -> Builder {
        Builder::default()
    }

    // ---------------------------------------------------------------- running

    fn enter(&self) -> Result<RunningGuard<'_>> {
        let running = self.enter_untimed()?;
        running.start_timing();
        Ok(running)
    }

    /// [`enter`](Self::enter) without reading the clock: a
    /// `run_until_complete` that finishes without a pass is not timed.
    #[inline]
    pub(crate) fn enter_untimed(&self) -> Result<RunningGuard<'_>> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(Error::Closed);
        }
        if inner.forked() {
            return Err(Error::Forked);
        }
        if inner.running.get() {
            return Err(Error::AlreadyRunning);
        }
        // Another loop running on this thread refuses; the parent's loop
        // copied by fork() does not count.
        let slot = running::enter(inner).ok_or(Error::AlreadyRunning)?;
        inner.pass.last_poll.set(None);
        inner.running.set(true);
        Ok(RunningGuard { lp: self, _slot: slot })
    }

    /// Runs until [`stop`](EventLoop::stop) is called (asyncio's
    /// `run_forever`). If `stop` was called before, runs one iteration with a
    /// zero timeout and returns.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed loop; [`Error::AlreadyRunning`] if this
    /// or another loop is already running on this thread; [`Error::Io`] if
    /// waiting on the OS poller fails; [`Error::Interrupted`] after a
    /// callback called [`interrupt`](EventLoop::interrupt).
    pub fn run_forever(&self) -> Result<()> {
        let _running = self.enter()?;
        log::debug!(target: "evloop", "loop running (run_forever)");
        loop {
            if let Err(e) = self.iterate(None, None) {
                log::debug!(target: "evloop", "loop stopped: {e}");
                return Err(e);
            }
            if self.inner.stopping.get() {
                log::debug!(target: "evloop", "loop stopped");
                return Ok(());
            }
        }
    }

    /// Runs a single iteration, blocking at most `timeout` (`None`: as long as
    /// the loop needs to, until the next timer, I/O event or wake-up). Meant
    /// for embedding the loop in another one (a GUI toolkit's idle hook) and
    /// for tests.
    ///
    /// # Errors
    ///
    /// As [`run_forever`](EventLoop::run_forever).
    pub fn run_once(&self, timeout: Option<Duration>) -> Result<()> {
        let _running = self.enter()?;
        self.iterate(timeout, None)
    }

    /// Runs iterations with a zero timeout until nothing is ready and no timer
    /// is due, then returns without waiting for later timers. With the manual
    /// clock this makes timer logic testable without sleeping: advance the
    /// clock, then run until idle. `stop()` also ends it.
    ///
    /// An fd that stays ready does not keep it going: its callback runs once
    /// per call, because readiness is only polled at the start of a pass.
    ///
    /// # Errors
    ///
    /// As [`run_forever`](EventLoop::run_forever).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// let lp = evloop::EventLoop::builder().manual_clock().build()?;
    /// let fired = Rc::new(Cell::new(0));
    /// for secs in [1, 2, 3] {
    ///     let f = fired.clone();
    ///     lp.call_later(Duration::from_secs(secs), move || f.set(f.get() + 1));
    /// }
    /// lp.advance_time(Duration::from_secs(2));
    /// lp.run_until_idle()?;
    /// assert_eq!(fired.get(), 2);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn run_until_idle(&self) -> Result<()> {
        let _running = self.enter()?;
        loop {
            self.iterate(Some(Duration::ZERO), None)?;
            if self.inner.stopping.get() || self.is_idle() {
                return Ok(());
            }
        }
    }

    /// Runs passes for `run_until_complete` (task/run.rs) until stopped,
    /// polling `main` wherever its entry sits in the ready queue.
    /// `after_pass`: the caller has just done a pass's work itself (its
    /// future's first step on a quiet loop), so that pass's `stop` or
    /// `interrupt` ends the run before another pass.
    pub(crate) fn run_main(&self, main: &mut dyn MainStep, after_pass: bool) -> Result<()> {
        let inner = &self.inner;
        if after_pass {
            if inner.interrupted.replace(false) {
                return Err(Error::Interrupted);
            }
            if inner.stopping.get() {
                return Ok(());
            }
        }
        loop {
            self.iterate(None, Some(&mut *main))?;
            if inner.stopping.get() {
                return Ok(());
            }
        }
    }

    /// Whether a pass now would do nothing but run what is queued after
    /// this check: nothing ready, no fd, no timer, nothing from other
    /// threads, no `stop` or `interrupt` pending.
    #[inline]
    pub(crate) fn is_quiet(&self) -> bool {
        let inner = &self.inner;
        !inner.stopping.get()
            && !inner.interrupted.get()
            && inner.ready.borrow().is_empty()
            && inner.timers.borrow().len() == 0
            && inner.selector.borrow().is_empty()
            && !inner.remote.has_pending()
    }

    fn is_idle(&self) -> bool {
        let inner = &self.inner;
        if inner.pass.skipped_poll.get() || !inner.ready.borrow().is_empty() || inner.remote.has_pending() {
            return false;
        }
        let next = inner.timers.borrow_mut().next_deadline();
        next.is_none_or(|when| when > inner.clock.now())
    }

    /// One pass of the loop: CPython's `BaseEventLoop._run_once`.
    fn iterate(&self, max_wait: Option<Duration>, main: Option<&mut dyn MainStep>) -> Result<()> {
        if self.inner.interrupted.replace(false) {
            return Err(Error::Interrupted);
        }
        if self.inner.forked() {
            // A child of fork() returned into the parent's loop.
            return Err(Error::Forked);
        }
        if let Some(hook) = self.inner.pass.hook.as_deref() {
            hook.before_pass(self);
            if self.inner.interrupted.replace(false) {
                return Err(Error::Interrupted); // by the hook's before_pass
            }
        }
        let (wait, may_jump) = self.compute_timeout(max_wait);
        self.poll_io(wait)?;
        if self.inner.interrupted.replace(false) {
            return Err(Error::Interrupted); // by the wait hook's after_poll
        }
        if may_jump {
            self.autojump();
        }
        self.schedule_due_timers();
        match main {
            None => self.run_ready(&mut ()),
            Some(mut main) => self.run_ready(&mut main),
        }
        self.inner.stats.iterations.set(self.inner.stats.iterations.get() + 1);
        if self.inner.interrupted.replace(false) {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    /// Step 1: don't block if there is work or we are stopping; otherwise
    /// block until the earliest timer, or indefinitely. With the manual
    /// clock only `advance_time` moves time, so a timer is no reason to
    /// wake, unless the loop autojumps: then wait at most the threshold,
    /// and say that the clock may jump afterwards.
    fn compute_timeout(&self, max_wait: Option<Duration>) -> (Option<Duration>, bool) {
        let inner = &self.inner;
        if !inner.ready.borrow().is_empty() || inner.stopping.get() || inner.remote.has_pending() {
            return (Some(Duration::ZERO), false);
        }
        let Some(when) = inner.timers.borrow_mut().next_deadline() else {
            return (max_wait, false);
        };
        let now = inner.clock.now();
        if when <= now {
            return (Some(Duration::ZERO), false);
        }
        if inner.clock.is_manual() {
            return match (inner.pass.autojump, max_wait) {
                (Some(threshold), None) => (Some(threshold), true),
                _ => (max_wait, false),
            };
        }
        let until_timer = (when - now).min(MAX_WAIT);
        (Some(max_wait.map_or(until_timer, |m| m.min(until_timer))), false)
    }

    /// After an autojump pass's poll: if nothing arrived, move the manual
    /// clock to the earliest timer so that step 3 runs it.
    fn autojump(&self) {
        let inner = &self.inner;
        if !inner.ready.borrow().is_empty() || inner.remote.has_pending() {
            return;
        }
        let next = inner.timers.borrow_mut().next_deadline();
        if let Some(when) = next {
            inner.clock.advance_to(when);
        }
    }

    /// Step 2: poll the selector and drain the cross-thread queue. With no fd
    /// registered and no time to wait, the poll could only report a wake-up,
    /// which the `pending` flag already tells: skip the syscalls. While
    /// callbacks are ready, poll only once per busy-poll interval. The wait
    /// hook runs the blocking wait and looks at what came before it is
    /// queued.
    fn poll_io(&self, timeout: Option<Duration>) -> Result<()> {
        let inner = &self.inner;
        if let Some(hook) = inner.pass.hook.as_deref() {
            return self.poll_io_hooked(hook, timeout);
        }
        let mut selector = inner.selector.borrow_mut();
        if timeout == Some(Duration::ZERO) {
            let due = self.busy_poll_due();
            inner.pass.skipped_poll.set(!due);
            if due && !selector.is_empty() {
                selector.poll(timeout, &inner.ready)?;
                inner.stats.polls.set(inner.stats.polls.get() + 1);
            }
        } else {
            inner.pass.skipped_poll.set(false);
            let started = Instant::now();
            selector.poll(timeout, &inner.ready)?;
            let ended = Instant::now();
            inner.pass.last_poll.set(Some(ended));
            inner.stats.polls.set(inner.stats.polls.get() + 1);
            inner.stats.add_idle_time(ended - started);
        }
        let woken = selector.has_woken();
        drop(selector);
        if woken {
            self.wake_fd_waiters();
        }
        self.drain_remote();
        Ok(())
    }

    /// Step 2 with a wait hook: the hook runs the blocking wait (no borrow
    /// alive), and looks at the pass before what the poll found is queued.
    fn poll_io_hooked(&self, hook: &dyn WaitHook, timeout: Option<Duration>) -> Result<()> {
        let inner = &self.inner;
        let polled = if timeout == Some(Duration::ZERO) {
            let due = self.busy_poll_due();
            inner.pass.skipped_poll.set(!due);
            let mut selector = inner.selector.borrow_mut();
            let poll = due && !selector.is_empty();
            if poll {
                selector.wait(timeout)?;
                inner.stats.polls.set(inner.stats.polls.get() + 1);
            }
            poll
        } else {
            inner.pass.skipped_poll.set(false);
            let started = Instant::now();
            // A hook whose wait is costly may ask for a try without
            // blocking first: when something is ready already (a busy
            // server, a ping-pong on one loop) its wait is skipped.
            let found = hook.poll_first() && inner.selector.borrow_mut().wait(Some(Duration::ZERO))?;
            if found {
                // Nothing blocked: no idle time, and the poll's start is
                // its time (one clock read per pass, not two).
                inner.pass.last_poll.set(Some(started));
            } else {
                let wait = inner.selector.borrow_mut().begin_wait(timeout)?;
                let done = hook.blocking_wait(wait);
                inner.selector.borrow_mut().finish_wait(done)?;
                let ended = Instant::now();
                inner.pass.last_poll.set(Some(ended));
                inner.stats.add_idle_time(ended - started);
            }
            inner.stats.polls.set(inner.stats.polls.get() + 1);
            true
        };
        hook.after_poll(self);
        if inner.interrupted.get() {
            // The events stay undispatched: level-triggered, the next poll
            // reports them again.
            return Ok(());
        }
        let woken = {
            let mut selector = inner.selector.borrow_mut();
            if polled {
                selector.dispatch(&inner.ready);
            }
            selector.has_woken()
        };
        if woken {
            self.wake_fd_waiters();
        }
        self.drain_remote();
        Ok(())
    }

    /// Whether a pass with a zero timeout polls: always with nothing
    /// ready, else once `busy_poll_interval` has passed since the last
    /// poll. Records the poll it allows.
    #[inline]
    fn busy_poll_due(&self) -> bool {
        let pass = &self.inner.pass;
        if pass.busy_poll_interval.is_zero() {
            return true;
        }
        let now = Instant::now();
        if let Some(last) = pass.last_poll.get()
            && now.saturating_duration_since(last) < pass.busy_poll_interval
            && !self.inner.ready.borrow().is_empty()
        {
            return false;
        }
        pass.last_poll.set(Some(now));
        true
    }

    /// Moves what other threads sent (and `call_soon_threadsafe` calls made
    /// on this thread) onto the ready queue.
    #[inline]
    pub(crate) fn drain_remote(&self) {
        if self.inner.remote.has_pending() {
            self.drain_remote_now();
        }
    }

    #[cold]
    fn drain_remote_now(&self) {
        let inner = &self.inner;
        if inner.forked() {
            return; // the queue's lock may have stayed with the parent's threads
        }
        let mut items = std::mem::take(&mut *inner.remote_buf.borrow_mut());
        inner.remote.take_into(&mut items);
        for item in items.drain(..) {
            match item {
                RemoteItem::Call(f, at) => inner.push_ready(CallbackCell::new(f, at, 0)),
                RemoteItem::Wake(key) => crate::task::task::wake_on_loop(inner, key),
            }
        }
        *inner.remote_buf.borrow_mut() = items;
        // A signal wakes the loop through the same pending flag.
        crate::os::signal::dispatch_pending(self);
    }

    /// Step 3: move every due timer to the ready queue, earliest first, equal
    /// deadlines in scheduling order. Due means `when <= now`: never early.
    fn schedule_due_timers(&self) {
        let inner = &self.inner;
        let mut timers = inner.timers.borrow_mut();
        if timers.len() == 0 {
            return;
        }
        let now = inner.clock.now();
        let mut ready = inner.ready.borrow_mut();
        while let Some(timer) = timers.pop_due(now) {
            ready.push_back(timer);
        }
    }

    /// Step 4: run exactly the handles that are ready now; whatever they
    /// schedule waits for the next pass, after another poll.
    fn run_ready<H: PassHook>(&self, hook: &mut H) {
        let inner = &self.inner;
        let n = inner.ready.borrow().len();
        let debug = inner.debug.get();
        let mut ran = 0;
        for _ in 0..n {
            // Pop as its own statement: the borrow ends before user code runs.
            let item = inner.ready.borrow_mut().pop_front();
            let Some(item) = item else { break };
            let started = debug.then(Instant::now);
            match item {
                Ready::Core(item) => {
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| item.run()));
                    if let Ok(false) = outcome {
                        continue; // cancelled: skipped
                    }
                    // `run_until_complete`'s future, in its entry's place.
                    hook.after_item(self);
                    self.after_run(started, outcome.map(drop), || Some(item.location()));
                }
                Ready::Foreign(entry) => {
                    if entry.cancelled() {
                        drop(entry);
                        continue;
                    }
                    // Read before running: the run consumes the entry.
                    let location = entry.location();
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| entry.run()));
                    self.after_run(started, outcome, || location);
                }
            }
            ran += 1;
            if inner.interrupted.get() {
                // The rest of this pass stays at the front of the queue.
                break;
            }
        }
        inner.stats.callbacks_run.set(inner.stats.callbacks_run.get() + ran);
    }

    /// Reports what one run of `run_ready` needs reported: a slow callback
    /// (debug mode), a panic.
    #[inline]
    fn after_run(
        &self,
        started: Option<Instant>,
        outcome: std::thread::Result<()>,
        location: impl FnOnce() -> Option<&'static Location<'static>>,
    ) {
        if started.is_none() && outcome.is_ok() {
            return;
        }
        let location = location();
        if let Some(started) = started {
            self.check_slow(location, started.elapsed());
        }
        if let Err(payload) = outcome {
            let mut ctx = ExceptionContext::new("panic in a callback")
                .with_error(Error::Panicked(panic_message(&*payload)));
            if let Some(at) = location {
                ctx = ctx.with_location(at);
            }
            drop(payload);
            self.call_exception_handler(&ctx);
        }
    }

    fn check_slow(&self, location: Option<&'static Location<'static>>, took: Duration) {
        let inner = &self.inner;
        if took < inner.slow_callback_duration.get() {
            return;
        }
        inner.stats.slow_callbacks.set(inner.stats.slow_callbacks.get() + 1);
        let secs = took.as_secs_f64();
        match location {
            Some(at) => report(
                log::Level::Warn,
                format_args!("executing the callback scheduled at {at} took {secs:.3} seconds"),
            ),
            None => {
                report(log::Level::Warn, format_args!("executing a foreign entry took {secs:.3} seconds"))
            }
        }
    }

    /// Asks the loop to stop: the current iteration finishes, then
    /// `run_forever` (or `run_until_complete`) returns. Called while the loop
    /// is not running, it makes the next `run_forever` run one iteration with
    /// a zero timeout and return.
    pub fn stop(&self) {
        log::trace!(target: "evloop", "loop stop requested");
        self.inner.stopping.set(true);
    }

    /// Ends the current pass as soon as the running callback returns, and
    /// makes the `run_*` call return [`Error::Interrupted`]. The callbacks
    /// of the pass not yet run stay at the front of the ready queue, in
    /// order, ahead of what the pass scheduled: the next `run_*` runs them
    /// first. Called while the loop is not running, the next `run_*`
    /// returns `Err(Interrupted)` before running anything.
    ///
    /// This is how asyncio's `_run_once` lets `KeyboardInterrupt` and
    /// `SystemExit` out of a pass; an embedder (the Python binding) calls
    /// it from the callback that caught one and keeps the exception itself.
    /// Unlike [`stop`](EventLoop::stop), which finishes the pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// let lp = evloop::EventLoop::new()?;
    /// let ran = Rc::new(RefCell::new(Vec::new()));
    /// let (r, l) = (ran.clone(), lp.clone());
    /// lp.call_soon(move || {
    ///     r.borrow_mut().push("interrupts");
    ///     l.interrupt();
    /// });
    /// let r = ran.clone();
    /// lp.call_soon(move || r.borrow_mut().push("waits"));
    /// assert!(matches!(lp.run_forever(), Err(evloop::Error::Interrupted)));
    /// assert_eq!(*ran.borrow(), ["interrupts"]);
    /// lp.run_until_idle()?; // the rest runs next time
    /// assert_eq!(*ran.borrow(), ["interrupts", "waits"]);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn interrupt(&self) {
        self.inner.interrupted.set(true);
    }

    /// Whether a `run_*` method is executing.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Whether [`close`](EventLoop::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Closes the loop: pending callbacks, timers, fd callbacks and
    /// unfinished tasks are dropped without running, the executor's threads
    /// are told to finish, and later calls from other threads fail with
    /// [`Error::Closed`]. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Running`] if the loop is running; call
    /// [`stop`](EventLoop::stop) first.
    pub fn close(&self) -> Result<()> {
        log::debug!(target: "evloop", "loop closing");
        let inner = &self.inner;
        let forked = inner.forked();
        // A loop inherited through fork() from inside its run is not
        // running in this process: it may be closed.
        if inner.running.get() && !forked {
            return Err(Error::Running);
        }
        if inner.closed.replace(true) {
            return Ok(());
        }
        if forked {
            // Closing must not unregister the parent's fds from the epoll
            // instance both share: forget the poller first.
            inner.selector.borrow_mut().abandon_poller();
        }
        // Transports and servers first: they close their sockets and call
        // their protocols' `connection_lost`, with no borrow alive.
        loop {
            let closers: Vec<_> = inner.closers.borrow_mut().drain().map(|(_, c)| c).collect();
            if closers.is_empty() {
                break;
            }
            for closer in closers {
                let Some(closer) = closer.upgrade() else { continue };
                if let Err(message) = crate::runtime::guard::run_user(move || closer.close()) {
                    self.report_panic("panic while closing a transport or server", message);
                }
            }
        }
        // Signal handlers next: their dispositions are restored at once.
        let signals = inner.signals.shutdown(forked);
        self.drop_reporting(signals);
        // Take everything else out, then drop it with no borrow alive: the
        // closures' destructors are user code.
        let remote = if forked { inner.remote.abandon_after_fork() } else { inner.remote.close() };
        let ready = std::mem::take(&mut *inner.ready.borrow_mut());
        let timers = inner.timers.borrow_mut().take_all();
        let fds = inner.selector.borrow_mut().shutdown();
        let tasks = crate::task::task::take_all(inner);
        let executor = inner.executor.borrow_mut().take();
        let executor = if forked {
            // Its threads stayed in the parent, and may have held its lock.
            std::mem::forget(executor);
            None
        } else {
            executor
        };
        self.drop_reporting(remote);
        // Cancel, don't just drop: a `Handle` the caller still holds shares
        // the callback, which would otherwise outlive close() (as timers do).
        self.cancel_and_drop(ready);
        self.cancel_and_drop(timers);
        // Fd callbacks are dropped and waiters woken (to find the loop
        // closed) only now that no task is left to schedule.
        self.finish(fds);
        self.drop_reporting(tasks);
        self.drop_reporting(executor);
        Ok(())
    }

    /// Cancels loop-made entries (a `Handle` the caller still holds shares
    /// the callback, which would otherwise outlive the loop's hold on it)
    /// and drops them all, each on its own: a destructor that panics is
    /// reported and the rest are still dropped.
    fn cancel_and_drop(&self, items: impl IntoIterator<Item = Ready>) {
        for item in items {
            if let Err(message) = crate::runtime::guard::run_user(|| item.cancel()) {
                self.report_panic("panic in the destructor of a callback", message);
            }
            self.drop_reporting(item);
        }
    }

    /// Drops what `close` took out; a destructor that panics is reported,
    /// not propagated.
    pub(crate) fn drop_reporting<T>(&self, value: T) {
        if let Err(message) = crate::runtime::guard::drop_user(value) {
            self.report_panic("panic in a destructor while closing the loop", message);
        }
    }

    fn report_panic(&self, what: &str, message: String) {
        let ctx = ExceptionContext::new(what).with_error(Error::Panicked(message));
        self.default_exception_handler(&ctx);
    }

    /// Registers `closer` to be closed first thing in `close()`
    /// (transports and servers close themselves there), or abandoned if
    /// the loop is dropped without `close()`; one that is gone by then is
    /// skipped. Forget it with
    /// [`forget_on_close`](EventLoop::forget_on_close) once it no longer
    /// applies.
    pub(crate) fn on_close(&self, closer: Weak<dyn Closer>) -> CloserKey {
        self.inner.closers.borrow_mut().insert(closer)
    }

    /// Unregisters a closer.
    pub(crate) fn forget_on_close(&self, key: CloserKey) {
        let removed = self.inner.closers.borrow_mut().remove(key);
        drop(removed);
    }

    /// A handle that does not keep the loop alive.
    pub(crate) fn downgrade(&self) -> WeakLoop {
        WeakLoop(Rc::downgrade(&self.inner))
    }

    /// The loop's clock: `Instant::now()`, or the manual clock's time.
    pub fn time(&self) -> Instant {
        self.inner.clock.now()
    }

    /// The deadline of the earliest timer that has neither run nor been
    /// cancelled (`None` if there is none): where a manual clock would
    /// jump to, or when a loop embedded in another one next needs a pass.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::builder().manual_clock().build()?;
    /// assert_eq!(lp.next_timer(), None);
    /// let soon = lp.call_later(Duration::from_secs(1), || {});
    /// lp.call_later(Duration::from_secs(5), || {});
    /// assert_eq!(lp.next_timer(), Some(soon.when()));
    /// soon.cancel();
    /// assert_eq!(lp.next_timer(), Some(lp.time() + Duration::from_secs(5)));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn next_timer(&self) -> Option<Instant> {
        self.inner.timers.borrow_mut().next_deadline()
    }

    /// Moves the manual clock forward by `d`. Timers that become due run on
    /// the loop's next pass.
    ///
    /// # Panics
    ///
    /// If the loop was not built with [`Builder::manual_clock`].
    pub fn advance_time(&self, d: Duration) {
        assert!(
            self.inner.clock.advance(d),
            "advance_time needs a loop built with EventLoop::builder().manual_clock()"
        );
    }

    // ------------------------------------------------------------- scheduling

    #[track_caller]
    pub(crate) fn check_open(&self) {
        if self.inner.closed.get() {
            panic!("event loop is closed");
        }
    }

    /// Schedules `f` to run on the next pass of the loop (asyncio's
    /// `call_soon`). Callbacks run in the order they were scheduled.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// let lp = evloop::EventLoop::new()?;
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// for i in 0..3 {
    ///     let o = order.clone();
    ///     lp.call_soon(move || o.borrow_mut().push(i));
    /// }
    /// lp.run_until_idle()?;
    /// assert_eq!(*order.borrow(), [0, 1, 2]);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_soon(&self, f: impl FnOnce() + 'static) -> Handle {
        self.check_open();
        // One FIFO with `call_soon_threadsafe`, as asyncio's single ready
        // deque: what other threads (or this one) sent first goes first.
        self.drain_remote();
        let cell = CallbackCell::new(f, Location::caller(), 0);
        self.inner.push_ready(cell.clone());
        Handle { inner: cell }
    }

    /// Schedules `f` to run once `delay` has passed (asyncio's
    /// `call_later`). A zero delay runs it on the next pass, after the
    /// callbacks already ready.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::EventLoop::new()?;
    /// let stopper = lp.clone();
    /// let start = lp.time();
    /// lp.call_later(Duration::from_millis(20), move || stopper.stop());
    /// lp.run_forever()?;
    /// assert!(lp.time() - start >= Duration::from_millis(20));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> TimerHandle {
        let when = self.time().checked_add(delay).unwrap_or_else(|| self.time() + MAX_WAIT * 365);
        self.call_at(when, f)
    }

    /// Schedules `f` to run when the loop's clock reaches `when` (asyncio's
    /// `call_at`). A time in the past runs it on the next pass; timers that
    /// are due together run in deadline order, and equal deadlines in the
    /// order they were scheduled. A timer never runs before `when`.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> TimerHandle {
        self.check_open();
        let cell = CallbackCell::new(f, Location::caller(), IN_HEAP);
        self.inner.timers.borrow_mut().push(when, cell.clone());
        TimerHandle { inner: cell, when, event_loop: Rc::downgrade(&self.inner) }
    }

    // ------------------------------------------------------------- threads

    /// A `Send + Sync` handle for scheduling callbacks from other threads.
    pub fn remote(&self) -> RemoteLoop {
        RemoteLoop { shared: self.inner.remote.clone() }
    }

    // ---------------------------------------------------- errors and debug

    /// Sets the function called with errors nobody else will see: panicking
    /// callbacks, failed tasks nobody awaits (asyncio's
    /// `set_exception_handler`). `None` restores the default, which logs.
    ///
    /// A handler that panics is reported through the default handler.
    ///
    /// Rust's panic hook still prints its own "thread … panicked at" line
    /// to stderr when a callback panics; install a quieter hook with
    /// `std::panic::set_hook` if that is unwanted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// let lp = evloop::EventLoop::new()?;
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// lp.set_exception_handler(Some(move |_: &evloop::EventLoop, ctx: &evloop::ExceptionContext| {
    ///     s.borrow_mut().push(ctx.error.clone());
    /// }));
    /// lp.call_soon(|| panic!("boom"));
    /// lp.run_until_idle()?;
    /// assert!(matches!(&seen.borrow()[0], Some(evloop::Error::Panicked(m)) if m == "boom"));
    /// // Restore the default handler:
    /// lp.set_exception_handler(None::<fn(&evloop::EventLoop, &evloop::ExceptionContext)>);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn set_exception_handler<F>(&self, handler: Option<F>)
    where
        F: Fn(&EventLoop, &ExceptionContext) + 'static,
    {
        let new = handler.map(|h| Rc::new(h) as ExceptionHandler);
        let old = self.inner.exception_handler.replace(new);
        drop(old);
    }

    /// The handler set with
    /// [`set_exception_handler`](EventLoop::set_exception_handler), or
    /// `None` for the default (asyncio's `get_exception_handler`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// assert!(lp.get_exception_handler().is_none());
    /// lp.set_exception_handler(Some(|_: &evloop::EventLoop, _: &evloop::ExceptionContext| {}));
    /// let handler = lp.get_exception_handler().expect("set above");
    /// // Wrap it to set it again, on this loop or another one.
    /// lp.set_exception_handler(Some(move |l: &evloop::EventLoop, c: &evloop::ExceptionContext| handler(l, c)));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.exception_handler.borrow().clone()
    }

    /// Passes `ctx` to the exception handler, or to the default one if none
    /// is set or the handler panics.
    pub fn call_exception_handler(&self, ctx: &ExceptionContext) {
        let handler = self.inner.exception_handler.borrow().clone();
        let Some(handler) = handler else {
            self.default_exception_handler(ctx);
            return;
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| handler(self, ctx)));
        if let Err(payload) = outcome {
            let mut fallback = ExceptionContext::new(format!(
                "the exception handler panicked while handling: {}",
                ctx.message
            ))
            .with_error(Error::Panicked(panic_message(&*payload)));
            fallback.location = ctx.location;
            fallback.task = ctx.task.clone();
            self.default_exception_handler(&fallback);
        }
    }

    /// The default exception handler: logs `ctx` at error level through the
    /// `log` crate, or prints it to stderr if no logger is listening.
    pub fn default_exception_handler(&self, ctx: &ExceptionContext) {
        report(log::Level::Error, format_args!("{ctx}"));
    }

    /// Turns debug mode on or off: in debug mode every callback is timed and
    /// those that take at least `slow_callback_duration` are reported
    /// (`log` warning, or stderr) with the place they were scheduled.
    pub fn set_debug(&self, on: bool) {
        self.inner.debug.set(on);
    }

    /// Whether debug mode is on.
    pub fn get_debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// Sets the debug-mode threshold for slow callbacks.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.slow_callback_duration.set(d);
    }

    /// A snapshot of the loop's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// lp.call_soon(|| {});
    /// assert_eq!(lp.stats().ready, 1);
    /// lp.run_until_idle()?;
    /// let stats = lp.stats();
    /// assert_eq!((stats.ready, stats.callbacks_run), (0, 1));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn stats(&self) -> LoopStats {
        let inner = &self.inner;
        let selector = inner.selector.borrow();
        let mut stats = inner.stats.snapshot();
        stats.ready = inner.ready.borrow().len();
        stats.timers = inner.timers.borrow().live();
        stats.readers = selector.readers();
        stats.writers = selector.writers();
        stats.tasks = inner.tasks.borrow().len();
        stats
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .field("debug", &self.get_debug())
            .finish_non_exhaustive()
    }
}

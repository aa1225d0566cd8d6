//! Past one core: [`LoopGroup`] runs one loop per thread, the way uvicorn
//! runs one worker per core.
//!
//! An [`EventLoop`] is single-threaded (`!Send`), so a server that
//! outgrows a core runs N loops on N threads. What crosses threads is only
//! `Send`: the setup closure (shared by every loop), the listening sockets,
//! the accepted sockets and the [`RemoteLoop`]s; each loop builds its own
//! loop-local state (servers, protocols, tasks) on its own thread.
//!
//! Two ways to share the work:
//! - [`LoopGroup::reuse_port`]: every loop has its own listening socket on
//!   the same port (`SO_REUSEPORT`); the kernel spreads the connections
//!   over them (by a hash of the 4-tuple), with no thread in between.
//! - [`LoopGroup::with_acceptor`]: one acceptor loop owns the listening
//!   socket and hands each accepted socket to the next worker loop, round
//!   robin, through its [`RemoteLoop`].
//!
//! Invariant: a running group has every loop past its setup; `start`
//! returns only once each setup finished, and if one failed, every loop
//! already started is stopped and joined first. Shutting down (or
//! dropping) the group stops every loop through its `RemoteLoop`, waits
//! for each thread, and closes each loop, which closes its servers and
//! connections; what went wrong on any loop is returned, not lost.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use socket2::Socket;

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::net::listen::{ServerOptions, listen_on};
use crate::net::protocol::StreamProtocol;
use crate::net::server::ACCEPT_RETRY_DELAY;
use crate::net::stream::{StreamReader, StreamWriter};
use crate::net::transport::Transport;
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use crate::runtime::remote::RemoteLoop;

/// What runs on a loop's thread once its loop is built: the setup, to
/// completion; its output is kept until the loop stops.
type Job = Box<dyn FnOnce(&EventLoop) -> Result<Box<dyn Any>> + Send>;

/// What a loop thread reports once its setup is done.
type SetupDone = (usize, Result<RemoteLoop>);

/// The connection hand-off of a worker loop of [`LoopGroup::with_acceptor`].
type Handoff = Box<dyn FnMut(Socket)>;

thread_local! {
    /// The hand-off of the worker loop on this thread (a group makes its
    /// threads, so each has at most one).
    static HANDOFF: RefCell<Option<Handoff>> = const { RefCell::new(None) };
}

/// One loop of a group, and its thread.
struct Member {
    name: String,
    /// The worker's number; `None` for the acceptor.
    index: Option<usize>,
    remote: RemoteLoop,
    thread: Option<JoinHandle<Result<()>>>,
}

/// N event loops on N threads serving one port, the way uvicorn runs one
/// worker per core: an [`EventLoop`] is single-threaded, so a server that
/// outgrows a core runs several. Only `Send` things cross threads (the
/// setup closure, sockets, [`RemoteLoop`]s); each loop builds its servers,
/// protocols and tasks on its own thread.
///
/// - [`reuse_port`](LoopGroup::reuse_port): every loop has its own
///   listening socket on the port (`SO_REUSEPORT`); the kernel spreads
///   the connections, with no thread in between.
/// - [`with_acceptor`](LoopGroup::with_acceptor): one acceptor loop hands
///   each accepted socket to the next worker, round robin.
/// - [`spawn`](LoopGroup::spawn): loops without a listener.
///
/// Each constructor returns once every loop's setup is done; if one
/// failed or panicked, the loops already started are stopped and joined
/// first, and the error says which loop failed ([`LoopGroupError`]).
///
/// [`shutdown`](LoopGroup::shutdown) (or dropping the group) stops every
/// loop, joins its thread and closes the loop: its servers stop listening
/// and its connections are closed (their peers see EOF), pending tasks
/// and callbacks are dropped, as [`EventLoop::close`] does. It is not a
/// graceful drain: to let connections finish first, tell the loops
/// through [`remote`](LoopGroup::remote) (e.g. close each server and
/// await its `wait_closed`) before shutting down.
///
/// # Examples
///
/// Four loops on one port, each answering with its number:
///
/// ```
/// use std::io::Read;
/// use evloop::net::{LoopGroup, Protocol, Transport};
///
/// struct Which(usize);
/// impl Protocol for Which {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(self.0.to_string().as_bytes()).unwrap();
///         t.close();
///     }
///     fn data_received(&mut self, _: &[u8]) {}
/// }
///
/// let addr = "127.0.0.1:0".parse().unwrap();
/// let group = LoopGroup::reuse_port(4, addr, &Default::default(), |index, listener| async move {
///     let lp = evloop::get_running_loop()?;
///     // The server is kept (and serves) until the loop stops.
///     lp.create_server_from_socket(move || Which(index), listener, Default::default()).await
/// })?;
/// let mut reply = String::new();
/// std::net::TcpStream::connect(group.local_addr().unwrap())?.read_to_string(&mut reply)?;
/// assert!(reply.parse::<usize>().unwrap() < 4);
/// group.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LoopGroup {
    workers: Vec<Member>,
    acceptor: Option<Member>,
    local_addr: Option<SocketAddr>,
}

/// What went wrong on one loop of a [`LoopGroup`]: its setup failed or
/// panicked, or, at shutdown, its run or its close did.
#[derive(Debug, Clone)]
pub struct LoopFailure {
    /// The loop's thread name (`evloop-worker-N`, `evloop-acceptor`).
    pub name: String,
    /// The worker's number (from 0); `None` for the acceptor loop.
    pub index: Option<usize>,
    /// What happened (a panic is [`Error::Panicked`]).
    pub error: Error,
}

impl fmt::Display for LoopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.error)
    }
}

impl std::error::Error for LoopFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The error of [`LoopGroup`]'s constructors and
/// [`shutdown`](LoopGroup::shutdown) when one or more loops failed: every
/// failure, in loop order. It reaches the caller as
/// [`Error::Other`]; find it with `downcast_ref`.
///
/// # Examples
///
/// ```
/// use evloop::net::{LoopGroup, LoopGroupError};
///
/// let failed = LoopGroup::spawn(2, |index| async move {
///     if index == 1 {
///         panic!("no config for loop {index}");
///     }
///     Ok(())
/// });
/// let Err(evloop::Error::Other(e)) = failed else { panic!("expected a failure") };
/// let failures = &e.downcast_ref::<LoopGroupError>().unwrap().failures;
/// assert_eq!(failures[0].index, Some(1));
/// assert!(failures[0].to_string().contains("no config for loop 1"));
/// ```
#[derive(Debug, Clone)]
pub struct LoopGroupError {
    /// What failed, one entry per loop.
    pub failures: Vec<LoopFailure>,
}

impl fmt::Display for LoopGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.failures.len();
        write!(f, "{n} event loop{} of the group failed", if n == 1 { "" } else { "s" })?;
        for (i, failure) in self.failures.iter().enumerate() {
            write!(f, "{}{failure}", if i == 0 { ": " } else { "; " })?;
        }
        Ok(())
    }
}

impl std::error::Error for LoopGroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures.first().map(|f| f as &(dyn std::error::Error + 'static))
    }
}

fn group_error(mut failures: Vec<LoopFailure>) -> Error {
    failures.sort_by_key(|f| f.index.unwrap_or(usize::MAX));
    Error::other(LoopGroupError { failures })
}

fn invalid(msg: &str) -> Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned()).into()
}

/// Stops the loop running this callback.
fn stop_running() {
    if let Ok(lp) = get_running_loop() {
        lp.stop();
    }
}

/// A loop thread: builds the loop, runs the setup, reports it, runs until
/// stopped, drops the setup's output, closes the loop.
fn run_member(slot: usize, job: Job, done: mpsc::Sender<SetupDone>) -> Result<()> {
    let lp = match EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            let _ = done.send((slot, Err(e)));
            return Ok(());
        }
    };
    let state = match std::panic::catch_unwind(AssertUnwindSafe(|| job(&lp))) {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => return failed_setup(&lp, slot, e, done),
        Err(payload) => return failed_setup(&lp, slot, Error::Panicked(panic_message(&*payload)), done),
    };
    log::debug!(target: "evloop", "loop group: {} set up", std::thread::current().name().unwrap_or("loop"));
    let _ = done.send((slot, Ok(lp.remote())));
    drop(done);
    let ran = lp.run_forever();
    // The setup's output (servers, a hand-off) is user code: its drop may
    // panic, and the loop must still be closed.
    let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(state)));
    let closed = lp.close();
    ran?;
    dropped.map_err(|payload| Error::Panicked(panic_message(&*payload)))?;
    closed
}

/// A setup failed: closes the loop (so its fds are gone before the
/// caller hears of it), then reports.
fn failed_setup(lp: &EventLoop, slot: usize, error: Error, done: mpsc::Sender<SetupDone>) -> Result<()> {
    let _ = lp.close();
    let _ = done.send((slot, Err(error)));
    Ok(())
}

/// Starts one thread per job and waits for every setup. On a failure,
/// stops and joins the ones that started and returns every failure.
fn start_members(
    jobs: Vec<(String, Option<usize>, Job)>,
) -> std::result::Result<Vec<Member>, Vec<LoopFailure>> {
    let (done_tx, done_rx) = mpsc::channel::<SetupDone>();
    let mut started = Vec::with_capacity(jobs.len());
    let mut failures = Vec::new();
    for (slot, (name, index, job)) in jobs.into_iter().enumerate() {
        let done = done_tx.clone();
        match std::thread::Builder::new().name(name.clone()).spawn(move || run_member(slot, job, done)) {
            Ok(thread) => started.push((name, index, thread)),
            Err(e) => {
                let error = Error::io_context(e, format_args!("spawn the thread {name}"));
                failures.push(LoopFailure { name, index, error });
                break;
            }
        }
    }
    drop(done_tx);
    let mut remotes: Vec<Option<RemoteLoop>> = vec![None; started.len()];
    // Ends early only if every thread is gone (each reports once).
    for (slot, result) in done_rx.iter().take(started.len()) {
        match result {
            Ok(remote) => remotes[slot] = Some(remote),
            Err(error) => {
                let (name, index, _) = &started[slot];
                failures.push(LoopFailure { name: name.clone(), index: *index, error });
            }
        }
    }
    let mut members = Vec::with_capacity(started.len());
    for ((name, index, thread), remote) in started.into_iter().zip(remotes) {
        match remote {
            Some(remote) => members.push(Member { name, index, remote, thread: Some(thread) }),
            // Its setup failed (reported above); the thread is ending.
            None => {
                if let Err(payload) = thread.join() {
                    let error = Error::Panicked(panic_message(&*payload));
                    failures.push(LoopFailure { name, index, error });
                }
            }
        }
    }
    if failures.is_empty() {
        return Ok(members);
    }
    stop_and_join(&mut members, &mut failures);
    Err(failures)
}

/// Asks every member's loop to stop, then waits for each thread. A member
/// whose thread is the caller's (a loop shutting its own group down)
/// cannot be waited for: it is stopped and left to finish.
fn stop_and_join(members: &mut [Member], failures: &mut Vec<LoopFailure>) {
    for member in members.iter() {
        // Err: that loop is closed already (it stopped on its own).
        let _ = member.remote.call_soon_threadsafe(stop_running);
    }
    let me = std::thread::current().id();
    for member in members.iter_mut() {
        let Some(thread) = member.thread.take() else { continue };
        if thread.thread().id() == me {
            continue;
        }
        let error = match thread.join() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(payload) => Error::Panicked(panic_message(&*payload)),
        };
        failures.push(LoopFailure { name: member.name.clone(), index: member.index, error });
    }
}

/// Builds the job of a worker from the user's setup and its argument.
fn setup_job<A, S, Fut, T>(setup: Arc<S>, index: usize, arg: A) -> Job
where
    A: Send + 'static,
    S: Fn(usize, A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    Box::new(move |lp: &EventLoop| {
        let fut = setup(index, arg);
        let state = lp.run_until_complete(fut)??;
        Ok(Box::new(state) as Box<dyn Any>)
    })
}

fn worker_name(index: usize) -> String {
    format!("evloop-worker-{index}")
}

impl LoopGroup {
    /// Starts `loops` event loops, each on its own thread, and runs
    /// `setup(index)` on each (`index` from 0) to completion, as the loop's
    /// first work; what the setup returns is kept on its loop until the
    /// loop stops, then dropped there (before the loop closes). Returns
    /// once every setup is done.
    ///
    /// The building block of the two server shapes; use it for loops that
    /// need no shared listener (each connecting out, say).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `loops` is 0. If a setup fails or panics, the
    /// other loops are stopped and joined, and the error is
    /// [`Error::Other`] holding a [`LoopGroupError`] that lists each
    /// failure with its loop.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// let group = evloop::net::LoopGroup::spawn(3, move |index| {
    ///     let s = s.clone();
    ///     async move {
    ///         s.lock().unwrap().push((index, std::thread::current().name().map(str::to_owned)));
    ///         Ok(())
    ///     }
    /// })?;
    /// group.shutdown()?;
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen[2], (2, Some("evloop-worker-2".to_owned())));
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn spawn<S, Fut, T>(loops: usize, setup: S) -> Result<LoopGroup>
    where
        S: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        if loops == 0 {
            return Err(invalid("LoopGroup: at least one loop is needed"));
        }
        let setup = Arc::new(move |index: usize, (): ()| setup(index));
        let jobs = (0..loops).map(|i| (worker_name(i), Some(i), setup_job(setup.clone(), i, ()))).collect();
        let workers = start_members(jobs).map_err(group_error)?;
        Ok(LoopGroup { workers, acceptor: None, local_addr: None })
    }

    /// Starts `loops` event loops sharing one port: `loops` listening
    /// sockets are bound to `addr` with `SO_REUSEPORT` (port 0: the first
    /// picks a free port and the others join it), and loop `index` runs
    /// `setup(index, listener)` with its own. The setup makes a server on
    /// it — [`EventLoop::create_server_from_socket`] or
    /// [`start_server_from_socket`](crate::start_server_from_socket) — and
    /// returns it, to keep it serving until the loop stops (a dropped
    /// [`Server`](crate::net::Server) stops listening).
    ///
    /// The kernel picks the socket, and so the loop, of each new connection
    /// by a hash of its addresses and ports: the spread is even over many
    /// connections, not round robin, and a connection stays on the loop
    /// that accepted it. Every socket is listening before this returns,
    /// so connections made at once are queued, not refused. Of `options`,
    /// `backlog` and `reuse_address` apply (`reuse_port` is always on).
    /// Binding happens on the calling thread.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `loops` is 0; [`Error::Io`] from binding ("listen
    /// on 127.0.0.1:8080: Address in use"; nothing is left listening); the
    /// setup failures as in [`spawn`](LoopGroup::spawn).
    ///
    /// # Examples
    ///
    /// See [`LoopGroup`].
    pub fn reuse_port<S, Fut, T>(
        loops: usize,
        addr: SocketAddr,
        options: &ServerOptions,
        setup: S,
    ) -> Result<LoopGroup>
    where
        S: Fn(usize, Socket) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        if loops == 0 {
            return Err(invalid("LoopGroup: at least one loop is needed"));
        }
        let options = ServerOptions { reuse_port: true, ..options.clone() };
        let mut listeners = Vec::with_capacity(loops);
        let mut bind_to = addr;
        for _ in 0..loops {
            // On an error the sockets bound so far close as `listeners` drops.
            let socket = listen_on(bind_to, &options)
                .map_err(|e| Error::io_context(e, format_args!("listen on {bind_to}")))?;
            if bind_to.port() == 0 {
                let bound = socket.local_addr()?.as_socket();
                bind_to = bound.ok_or_else(|| invalid("LoopGroup: the listener has no IP address"))?;
            }
            listeners.push(socket);
        }
        let setup = Arc::new(setup);
        let jobs = listeners
            .into_iter()
            .enumerate()
            .map(|(i, socket)| (worker_name(i), Some(i), setup_job(setup.clone(), i, socket)))
            .collect();
        let workers = start_members(jobs).map_err(group_error)?;
        Ok(LoopGroup { workers, acceptor: None, local_addr: Some(bind_to) })
    }

    /// Starts `loops` worker loops and one acceptor loop listening on
    /// `addr`: the acceptor accepts each connection and hands the socket
    /// to the next worker, round robin, through the worker's
    /// [`RemoteLoop`]. Worker `index` runs `setup(index)`, which returns
    /// its hand-off: called on the worker's loop with each socket given to
    /// it — [`handoff_protocol`] and [`handoff_streams`] make one that runs
    /// a protocol or a stream handler on it, as a server would; it is
    /// dropped when the loop stops.
    ///
    /// Compared with [`reuse_port`](LoopGroup::reuse_port): the spread is
    /// exact (connection *k* goes to worker *k mod loops*, skipping a
    /// worker whose loop has ended) and works where `SO_REUSEPORT` does
    /// not, at the cost of one more thread and a cross-thread hand-off
    /// (a lock and an eventfd write) per connection. Of `options`,
    /// `backlog`, `reuse_address` and `reuse_port` apply. When accepting
    /// runs out of fds or memory, the acceptor reports it to its exception
    /// handler (logged) and pauses for
    /// [`ACCEPT_RETRY_DELAY`](crate::net::ACCEPT_RETRY_DELAY), as a server
    /// does.
    ///
    /// # Errors
    ///
    /// As [`reuse_port`](LoopGroup::reuse_port).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use evloop::net::{LoopGroup, handoff_streams};
    ///
    /// let addr = "127.0.0.1:0".parse().unwrap();
    /// let group = LoopGroup::with_acceptor(2, addr, &Default::default(), |index| async move {
    ///     Ok(handoff_streams(move |_reader, writer| async move {
    ///         writer.write(format!("worker {index}").as_bytes()).unwrap();
    ///     }, Default::default()))
    /// })?;
    /// let mut replies = Vec::new();
    /// for _ in 0..4 {
    ///     let mut reply = String::new();
    ///     std::net::TcpStream::connect(group.local_addr().unwrap())?.read_to_string(&mut reply)?;
    ///     replies.push(reply);
    /// }
    /// assert_eq!(replies, ["worker 0", "worker 1", "worker 0", "worker 1"]);
    /// group.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_acceptor<S, Fut, H>(
        loops: usize,
        addr: SocketAddr,
        options: &ServerOptions,
        setup: S,
    ) -> Result<LoopGroup>
    where
        S: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<H>> + 'static,
        H: FnMut(Socket) + 'static,
    {
        if loops == 0 {
            return Err(invalid("LoopGroup: at least one loop is needed"));
        }
        let listener =
            listen_on(addr, options).map_err(|e| Error::io_context(e, format_args!("listen on {addr}")))?;
        let local_addr = listener.local_addr()?.as_socket();
        let setup = Arc::new(move |index: usize, (): ()| {
            let made = setup(index);
            async move {
                let handoff: Handoff = Box::new(made.await?);
                HANDOFF.with(|slot| *slot.borrow_mut() = Some(handoff));
                Ok(ClearHandoff)
            }
        });
        let jobs = (0..loops).map(|i| (worker_name(i), Some(i), setup_job(setup.clone(), i, ()))).collect();
        let mut workers = start_members(jobs).map_err(group_error)?;
        let remotes: Vec<RemoteLoop> = workers.iter().map(|w| w.remote.clone()).collect();
        let job: Job = Box::new(move |lp: &EventLoop| {
            let task = lp.create_task_named("evloop-acceptor", accept_loop(listener, remotes));
            Ok(Box::new(AbortOnDrop(task)) as Box<dyn Any>)
        });
        match start_members(vec![("evloop-acceptor".to_owned(), None, job)]) {
            Ok(mut acceptor) => Ok(LoopGroup { workers, acceptor: acceptor.pop(), local_addr }),
            Err(mut failures) => {
                stop_and_join(&mut workers, &mut failures);
                Err(group_error(failures))
            }
        }
    }

    /// The address the group listens on (`None` for
    /// [`spawn`](LoopGroup::spawn)): with port 0, the port picked.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// How many worker loops the group runs (not counting the acceptor).
    pub fn loops(&self) -> usize {
        self.workers.len()
    }

    /// The [`RemoteLoop`] of worker `index`, to send it work
    /// (`call_soon_threadsafe`, `run_coroutine_threadsafe`); `None` past
    /// the last worker.
    pub fn remote(&self, index: usize) -> Option<&RemoteLoop> {
        self.workers.get(index).map(|w| &w.remote)
    }

    /// Stops every loop (the acceptor first, so no connection is handed to
    /// a stopping worker), waits for each thread, and closes each loop:
    /// listeners and connections are closed, pending work is dropped. Each
    /// loop stops at the end of the iteration it is in, so a callback
    /// blocking its thread delays this call.
    ///
    /// Do not call it from one of the group's own loops: that loop cannot
    /// wait for itself (it is stopped, not joined).
    ///
    /// # Errors
    ///
    /// [`Error::Other`] holding a [`LoopGroupError`] if a loop's run
    /// failed, its thread panicked, dropping its setup's output panicked,
    /// or closing it failed; every loop is still stopped and joined.
    pub fn shutdown(mut self) -> Result<()> {
        let failures = self.stop_all();
        if failures.is_empty() { Ok(()) } else { Err(group_error(failures)) }
    }

    fn stop_all(&mut self) -> Vec<LoopFailure> {
        let mut failures = Vec::new();
        if let Some(acceptor) = self.acceptor.take() {
            stop_and_join(&mut [acceptor], &mut failures);
        }
        stop_and_join(&mut self.workers, &mut failures);
        self.workers.clear();
        failures
    }
}

impl Drop for LoopGroup {
    /// Shuts the group down as [`shutdown`](LoopGroup::shutdown) does; what
    /// failed is logged (at error level, or to stderr without a logger).
    fn drop(&mut self) {
        let failures = self.stop_all();
        if !failures.is_empty() {
            let error = group_error(failures);
            crate::exception::report(log::Level::Error, format_args!("LoopGroup dropped: {error}"));
        }
    }
}

impl fmt::Debug for LoopGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopGroup")
            .field("loops", &self.workers.len())
            .field("acceptor", &self.acceptor.is_some())
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// A worker's setup output under an acceptor: drops the hand-off when the
/// loop stops.
struct ClearHandoff;

impl Drop for ClearHandoff {
    fn drop(&mut self) {
        let handoff = HANDOFF.with(|slot| slot.borrow_mut().take());
        drop(handoff);
    }
}

/// The acceptor's task, cancelled (its listener closed) when the loop stops.
struct AbortOnDrop(crate::Task<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// On a worker loop: gives `socket` to the loop's hand-off. The hand-off
/// is taken out of its slot while it runs (no borrow is alive in user
/// code) and put back even if it panics (the loop reports the panic).
fn deliver(socket: Socket) {
    struct PutBack(Option<Handoff>);
    impl Drop for PutBack {
        fn drop(&mut self) {
            if let Some(handoff) = self.0.take() {
                HANDOFF.with(|slot| {
                    let mut slot = slot.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(handoff);
                    }
                });
            }
        }
    }
    let mut guard = PutBack(HANDOFF.with(|slot| slot.borrow_mut().take()));
    // None: the worker is stopping; the socket closes here.
    if let Some(handoff) = guard.0.as_mut() {
        handoff(socket);
    }
}

/// The acceptor: accepts forever, handing each socket to the next worker
/// whose loop is open.
async fn accept_loop(listener: Socket, workers: Vec<RemoteLoop>) {
    let Ok(lp) = get_running_loop() else { return };
    let mut next = 0;
    loop {
        match lp.sock_accept(&listener).await {
            Ok((socket, _)) => {
                let Some(k) = (0..workers.len()).find(|k| !workers[(next + k) % workers.len()].is_closed())
                else {
                    log::warn!(target: "evloop", "loop group: every worker loop has ended; connection closed");
                    continue;
                };
                let worker = (next + k) % workers.len();
                next = (worker + 1) % workers.len();
                // Err: the worker closed after the check; the socket closes.
                if workers[worker].call_soon_threadsafe(move || deliver(socket)).is_err() {
                    log::debug!(target: "evloop", "loop group: worker {worker} ended; connection closed");
                }
            }
            Err(e) if e.io_kind() == Some(io::ErrorKind::Interrupted) => {}
            // The peer gave up between SYN and accept: try the next.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
            Err(e) => {
                let ctx = ExceptionContext::new(format!(
                    "loop group acceptor: accept failed; pausing accepts for {} s",
                    ACCEPT_RETRY_DELAY.as_secs_f64()
                ))
                .with_error(e);
                lp.call_exception_handler(&ctx);
                crate::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

/// A hand-off for [`LoopGroup::with_acceptor`] that runs a protocol made
/// by `factory` on each socket, as a server does for each connection it
/// accepts. The connection belongs to the worker's loop: closing the loop
/// (at shutdown) closes it. A connection that cannot be started is
/// reported to the loop's exception handler.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use evloop::net::{LoopGroup, Protocol, Transport, handoff_protocol};
///
/// struct Upper(Option<Transport>);
/// impl Protocol for Upper {
///     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
///     fn data_received(&mut self, data: &[u8]) {
///         let t = self.0.as_ref().unwrap();
///         t.write(&data.to_ascii_uppercase()).unwrap();
///         t.close();
///     }
/// }
///
/// let addr = "127.0.0.1:0".parse().unwrap();
/// let group = LoopGroup::with_acceptor(2, addr, &Default::default(), |_| async {
///     Ok(handoff_protocol(|| Upper(None)))
/// })?;
/// let mut client = std::net::TcpStream::connect(group.local_addr().unwrap())?;
/// client.write_all(b"hi")?;
/// let mut reply = String::new();
/// client.read_to_string(&mut reply)?;
/// assert_eq!(reply, "HI");
/// group.shutdown()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn handoff_protocol<P, F>(factory: F) -> impl FnMut(Socket) + 'static
where
    P: StreamProtocol,
    F: Fn() -> P + 'static,
{
    move |socket: Socket| {
        let Ok(lp) = get_running_loop() else { return };
        if let Err(e) = Transport::start(&lp, socket, factory(), None, None) {
            let ctx = ExceptionContext::new("loop group: could not start a connection").with_error(e);
            lp.call_exception_handler(&ctx);
        }
    }
}

/// A hand-off for [`LoopGroup::with_acceptor`] that runs
/// `client_connected(reader, writer)` as a task for each socket, as
/// [`start_server`](crate::start_server) does (`options.limit` is the
/// readers' buffer limit; the listening options do not apply here). As
/// there, a handler that returns closes its connection, and one that
/// panics is reported and its connection closed.
///
/// # Panics
///
/// If no loop is running on this thread: call it in the worker's setup.
///
/// # Examples
///
/// See [`LoopGroup::with_acceptor`].
pub fn handoff_streams<F, Fut>(
    client_connected: F,
    options: crate::net::stream::StreamServerOptions,
) -> impl FnMut(Socket) + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let lp = crate::runtime::event_loop::running_loop("handoff_streams");
    let factory = crate::net::stream::server_protocol_factory(&lp, client_connected, options.limit);
    move |socket: Socket| {
        let Ok(lp) = get_running_loop() else { return };
        if let Err(e) = Transport::start(&lp, socket, factory(), None, None) {
            let ctx = ExceptionContext::new("loop group: could not start a connection").with_error(e);
            lp.call_exception_handler(&ctx);
        }
    }
}

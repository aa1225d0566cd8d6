//! Helpers shared by the integration tests (`mod util;` in each test file).
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use evloop::EventLoop;

// ------------------------------------------------------------ loops

/// A loop with the manual clock: time moves only with `advance_time`.
pub fn manual_loop() -> EventLoop {
    EventLoop::builder().manual_clock().build().expect("build a manual-clock loop")
}

// ------------------------------------------------------------ drop counters

/// Increments its counter when dropped: move one into a closure to prove
/// the closure itself was freed (and when).
#[derive(Debug)]
pub struct DropCounter(Rc<Cell<usize>>);

impl DropCounter {
    /// A new counter at zero; make tokens that bump it with `token`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Rc<Cell<usize>> {
        Rc::new(Cell::new(0))
    }

    /// A token that adds one to `count` when dropped.
    pub fn token(count: &Rc<Cell<usize>>) -> DropCounter {
        DropCounter(count.clone())
    }
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The `Send` version of [`DropCounter`], for closures given to other threads.
#[derive(Debug)]
pub struct SendDropCounter(Arc<AtomicUsize>);

impl SendDropCounter {
    /// A token that adds one to `count` when dropped.
    pub fn token(count: &Arc<AtomicUsize>) -> SendDropCounter {
        SendDropCounter(count.clone())
    }
}

impl Drop for SendDropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------ recording order

/// A shared log of events, for order assertions from inside callbacks.
#[derive(Debug)]
pub struct Recorder<T>(Rc<RefCell<Vec<T>>>);

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder(self.0.clone())
    }
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder(Rc::new(RefCell::new(Vec::new())))
    }
}

impl<T: Clone> Recorder<T> {
    pub fn new() -> Recorder<T> {
        Recorder::default()
    }

    pub fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }

    /// A copy of everything recorded so far.
    pub fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// A closure that records `v` when called: `lp.call_soon(rec.pusher(1))`.
    pub fn pusher(&self, v: T) -> impl FnOnce() + 'static
    where
        T: 'static,
    {
        let rec = self.clone();
        move || rec.push(v)
    }
}

// ------------------------------------------------------------ watchdog

/// Aborts the whole test process if it is still alive after `limit`: bounds
/// tests that would otherwise hang (a missed wake-up) without using a sleep
/// as the assertion. Disarmed when dropped.
#[derive(Debug)]
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(what: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: `{what}` still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { disarm: Some(tx), thread: Some(thread) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------ sockets

/// A connected, non-blocking Unix socket pair.
pub fn socketpair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// Reads everything currently available from a non-blocking stream.
pub fn drain(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

// ------------------------------------------------------------ randomness

/// A deterministic linear congruential generator (Knuth's MMIX constants).
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 16
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

// ------------------------------------------------------------ exception handler

/// Installs an exception handler on `lp` that records every context it sees.
pub fn capture_exceptions(lp: &EventLoop) -> Rc<RefCell<Vec<evloop::ExceptionContext>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &evloop::ExceptionContext| {
        sink.borrow_mut().push(ctx.clone());
    }));
    seen
}

// ------------------------------------------------------------ drop-time probe

/// A drop counter that calls into the loop when dropped: put one in a
/// closure to prove the loop frees user closures with no `RefCell` borrow
/// alive (it would panic with "already borrowed" otherwise).
pub struct LoopProbe {
    lp: EventLoop,
    drops: Rc<Cell<usize>>,
}

impl LoopProbe {
    pub fn new(lp: &EventLoop, drops: &Rc<Cell<usize>>) -> LoopProbe {
        LoopProbe { lp: lp.clone(), drops: drops.clone() }
    }
}

impl Drop for LoopProbe {
    fn drop(&mut self) {
        let stats = self.lp.stats();
        let _ = (stats.ready, stats.timers, self.lp.is_closed(), self.lp.is_running(), self.lp.time());
        self.drops.set(self.drops.get() + 1);
    }
}

// ------------------------------------------------------------ failing callbacks

/// A panic inside a callback (a failed `assert!` included) is caught by the
/// loop and handed to its exception handler; it does not fail the test by
/// itself. Hold one of these for the length of a test that asserts inside
/// callbacks: it records what reaches the handler and fails the test, when
/// dropped, if anything did.
#[must_use = "the check runs when this is dropped at the end of the test"]
pub struct FailOnCallbackErrors(Rc<RefCell<Vec<String>>>);

/// Installs the recording exception handler on `lp`.
pub fn fail_on_callback_errors(lp: &EventLoop) -> FailOnCallbackErrors {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &evloop::ExceptionContext| {
        sink.borrow_mut().push(ctx.to_string());
    }));
    FailOnCallbackErrors(seen)
}

impl Drop for FailOnCallbackErrors {
    fn drop(&mut self) {
        if !thread::panicking() {
            let seen = self.0.borrow();
            assert!(seen.is_empty(), "callbacks failed inside the loop:\n{}", seen.join("\n"));
        }
    }
}

// ------------------------------------------------------------ networking tests

/// A fresh, empty directory under the system temp dir, unique to this
/// process and call (pid + counter), removed with its contents on drop.
/// For Unix socket paths and temp files.
#[derive(Debug)]
pub struct NetTempDir {
    path: std::path::PathBuf,
}

impl NetTempDir {
    pub fn new(tag: &str) -> NetTempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("evloop-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        NetTempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.path.join(name)
    }
}

impl Drop for NetTempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How many fds the process has open (entries of /proc/self/fd; the one
/// the listing itself uses is counted every time, so differences are exact).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count()
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft
/// limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid, exclusively borrowed struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0, "getrlimit");
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
        }
    }
    lim.rlim_cur
}

/// Runs the test `name` alone in a child process (the test binary re-run
/// with `--exact name`) when called from the parent, and returns `false`
/// once the child has passed; in the child (marked by the env var `var`)
/// returns `true` at once so the caller runs the real test body. The child
/// must print `marker` on stdout when its body finishes, which proves the
/// filter matched and the body ran. For tests that change process-wide
/// state (rlimits, signal dispositions) or count the process's fds.
pub fn run_test_in_child(name: &str, var: &str, marker: &str) -> bool {
    if std::env::var_os(var).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, "1")
        .output()
        .expect("spawn the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child test {name} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(marker),
        "child test {name} did not run its body\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    false
}

/// The longest a networking test waits for one expected event before it
/// fails (instead of hanging).
pub const NET_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`NET_TIMEOUT`].
pub async fn within<F: std::future::IntoFuture>(what: &str, fut: F) -> F::Output {
    match evloop::wait_for(fut, NET_TIMEOUT).await {
        Ok(v) => v,
        Err(e) => panic!("timed out waiting for {what}: {e}"),
    }
}

/// One thing a [`RecProto`] saw, in order.
#[derive(Debug, Clone)]
pub enum NetEv {
    Made,
    Data(Vec<u8>),
    Eof,
    Lost(Option<evloop::Error>),
    /// `pause_writing`, with the write buffer size at that moment.
    PauseWriting(usize),
    /// `resume_writing`, with the write buffer size at that moment.
    ResumeWriting(usize),
}

/// The shared record of one connection driven by a [`RecProto`].
pub struct ConnState {
    events: RefCell<Vec<NetEv>>,
    transport: RefCell<Option<evloop::net::Transport>>,
    changed: evloop::sync::Event,
}

impl ConnState {
    fn push(&self, ev: NetEv) {
        self.events.borrow_mut().push(ev);
        self.changed.set();
    }

    /// Everything seen so far.
    pub fn events(&self) -> Vec<NetEv> {
        self.events.borrow().clone()
    }

    /// Event names in order, consecutive `data` merged into one:
    /// "made", "data", "eof", "lost", "pause", "resume".
    pub fn names(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for ev in self.events.borrow().iter() {
            let name = match ev {
                NetEv::Made => "made",
                NetEv::Data(_) => "data",
                NetEv::Eof => "eof",
                NetEv::Lost(_) => "lost",
                NetEv::PauseWriting(_) => "pause",
                NetEv::ResumeWriting(_) => "resume",
            };
            if !(name == "data" && out.last() == Some(&"data")) {
                out.push(name);
            }
        }
        out
    }

    /// Every received byte, in order.
    pub fn data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.events.borrow().iter() {
            if let NetEv::Data(d) = ev {
                out.extend_from_slice(d);
            }
        }
        out
    }

    /// How many `data_received` calls there were.
    pub fn data_calls(&self) -> usize {
        self.events.borrow().iter().filter(|e| matches!(e, NetEv::Data(_))).count()
    }

    /// The arguments of every `connection_lost` call.
    pub fn lost(&self) -> Vec<Option<evloop::Error>> {
        self.events
            .borrow()
            .iter()
            .filter_map(|e| if let NetEv::Lost(err) = e { Some(err.clone()) } else { None })
            .collect()
    }

    pub fn is_lost(&self) -> bool {
        !self.lost().is_empty()
    }

    /// The transport given to `connection_made`.
    pub fn transport(&self) -> evloop::net::Transport {
        self.transport.borrow().clone().expect("connection_made has not run")
    }

    /// Waits until `cond` holds (checked after every event), failing the
    /// test after [`NET_TIMEOUT`].
    pub async fn until(&self, what: &str, cond: impl Fn(&ConnState) -> bool) {
        let deadline = std::time::Instant::now() + NET_TIMEOUT;
        loop {
            if cond(self) {
                return;
            }
            self.changed.clear();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if evloop::wait_for(self.changed.wait(), left).await.is_err() {
                panic!("timed out waiting for {what}; events so far: {:?}", self.names());
            }
        }
    }

    /// Waits for `connection_lost`.
    pub async fn until_lost(&self) {
        self.until("connection_lost", |s| s.is_lost()).await;
    }

    /// Waits until at least `n` bytes have been received.
    pub async fn until_data(&self, n: usize) {
        self.until("data", |s| s.data().len() >= n).await;
    }
}

type TransportHook = Box<dyn FnMut(&evloop::net::Transport)>;
type DataHook = Box<dyn FnMut(&evloop::net::Transport, &[u8])>;

/// A [`Protocol`](evloop::net::Protocol) that records every call in a
/// shared [`ConnState`] and then runs the optional hook for it.
pub struct RecProto {
    pub state: Rc<ConnState>,
    /// What `eof_received` returns.
    pub keep_open_on_eof: bool,
    pub on_made: Option<TransportHook>,
    pub on_data: Option<DataHook>,
    pub on_eof: Option<TransportHook>,
    pub on_lost: Option<TransportHook>,
    pub on_pause: Option<TransportHook>,
    pub on_resume: Option<TransportHook>,
}

impl RecProto {
    pub fn new() -> (RecProto, Rc<ConnState>) {
        let state = Rc::new(ConnState {
            events: RefCell::new(Vec::new()),
            transport: RefCell::new(None),
            changed: evloop::sync::Event::new(),
        });
        let proto = RecProto {
            state: state.clone(),
            keep_open_on_eof: false,
            on_made: None,
            on_data: None,
            on_eof: None,
            on_lost: None,
            on_pause: None,
            on_resume: None,
        };
        (proto, state)
    }

    /// An echo: writes back whatever arrives.
    pub fn echo() -> (RecProto, Rc<ConnState>) {
        let (mut p, s) = RecProto::new();
        p.on_data = Some(Box::new(|t, d| t.write(d).expect("echo write")));
        (p, s)
    }

    fn t(&self) -> evloop::net::Transport {
        self.state.transport()
    }
}

impl evloop::net::Protocol for RecProto {
    fn connection_made(&mut self, transport: &evloop::net::Transport) {
        *self.state.transport.borrow_mut() = Some(transport.clone());
        self.state.push(NetEv::Made);
        if let Some(h) = &mut self.on_made {
            h(transport);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.state.push(NetEv::Data(data.to_vec()));
        let t = self.t();
        if let Some(h) = &mut self.on_data {
            h(&t, data);
        }
    }

    fn eof_received(&mut self) -> bool {
        self.state.push(NetEv::Eof);
        let t = self.t();
        if let Some(h) = &mut self.on_eof {
            h(&t);
        }
        self.keep_open_on_eof
    }

    fn connection_lost(&mut self, error: Option<evloop::Error>) {
        self.state.push(NetEv::Lost(error));
        let t = self.t();
        if let Some(h) = &mut self.on_lost {
            h(&t);
        }
    }

    fn pause_writing(&mut self) {
        let t = self.t();
        self.state.push(NetEv::PauseWriting(t.get_write_buffer_size()));
        if let Some(h) = &mut self.on_pause {
            h(&t);
        }
    }

    fn resume_writing(&mut self) {
        let t = self.t();
        self.state.push(NetEv::ResumeWriting(t.get_write_buffer_size()));
        if let Some(h) = &mut self.on_resume {
            h(&t);
        }
    }
}

/// A nonblocking TCP or Unix stream socket connected to `addr` with
/// `sock_connect`.
pub async fn net_connect(lp: &EventLoop, addr: &evloop::net::SockAddr) -> evloop::net::Socket {
    let domain = if addr.is_unix() {
        evloop::net::Domain::UNIX
    } else {
        evloop::net::Domain::for_address(addr.as_socket().unwrap())
    };
    let s = evloop::net::Socket::new(domain, evloop::net::Type::STREAM, None).expect("socket");
    s.set_nonblocking(true).expect("nonblocking");
    lp.sock_connect(&s, addr).await.expect("sock_connect");
    s
}

/// Reads exactly `n` bytes with `sock_recv`; fails on EOF first.
pub async fn net_read_exact(lp: &EventLoop, s: &evloop::net::Socket, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let got = lp.sock_recv(s, (n - out.len()).min(256 * 1024)).await.expect("sock_recv");
        assert!(!got.is_empty(), "EOF after {} of {n} bytes", out.len());
        out.extend_from_slice(&got);
    }
    out
}

/// Reads until EOF (or an error, returned with what came before it).
pub async fn net_read_to_end(lp: &EventLoop, s: &evloop::net::Socket) -> (Vec<u8>, Option<evloop::Error>) {
    let mut out = Vec::new();
    loop {
        match lp.sock_recv(s, 256 * 1024).await {
            Ok(got) if got.is_empty() => return (out, None),
            Ok(got) => out.extend_from_slice(&got),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// `n` bytes of a recognisable pattern (a position-dependent byte, so a
/// lost, doubled or reordered chunk shows).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + i / 251) % 256) as u8).collect()
}

/// A TCP server on 127.0.0.1:0 whose connections run the [`RecProto`]s
/// made by `make`; each connection's [`ConnState`] is put on the returned
/// queue when it is accepted.
pub async fn net_rec_server(
    lp: &EventLoop,
    make: impl Fn() -> (RecProto, Rc<ConnState>) + 'static,
) -> (evloop::net::Server, std::net::SocketAddr, ConnQueue) {
    let conns = ConnQueue::unbounded();
    let q = conns.clone();
    let factory = move || {
        let (p, s) = make();
        q.put_nowait(s).ok().expect("unbounded queue");
        p
    };
    let server = lp.create_server(factory, "127.0.0.1", 0, Default::default()).await.expect("create_server");
    let addr = server.local_addr().expect("server address");
    (server, addr, conns)
}

/// The accepted connections' states, in accept order: a queue that is
/// never shut down, so `get` gives the state itself.
#[derive(Clone)]
pub struct ConnQueue(evloop::sync::Queue<Rc<ConnState>>);

impl ConnQueue {
    pub fn unbounded() -> ConnQueue {
        ConnQueue(evloop::sync::Queue::unbounded())
    }

    pub fn put_nowait(&self, s: Rc<ConnState>) -> Result<(), Rc<ConnState>> {
        self.0.put_nowait(s)
    }

    pub async fn get(&self) -> Rc<ConnState> {
        self.0.get().await.expect("the queue is never shut down")
    }
}

/// Gives the loop `n` passes (each `yield_now` is one iteration, with a
/// poll), so that anything already scheduled or already readable has run.
pub async fn net_passes(n: usize) {
    for _ in 0..n {
        evloop::yield_now().await;
    }
}

/// A count that tasks can wait on.
#[derive(Clone, Default)]
pub struct NetCounter {
    n: Rc<Cell<usize>>,
    changed: evloop::sync::Event,
}

impl NetCounter {
    pub fn new() -> NetCounter {
        NetCounter::default()
    }

    pub fn add(&self) {
        self.n.set(self.n.get() + 1);
        self.changed.set();
    }

    pub fn get(&self) -> usize {
        self.n.get()
    }

    /// Waits until the count reaches `n`, failing after [`NET_TIMEOUT`].
    pub async fn until(&self, n: usize) {
        let deadline = std::time::Instant::now() + NET_TIMEOUT;
        while self.n.get() < n {
            self.changed.clear();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if evloop::wait_for(self.changed.wait(), left).await.is_err() {
                panic!("timed out waiting for the count to reach {n} (it is {})", self.n.get());
            }
        }
    }
}

/// The `/proc/self/fd` link of `fd` (`socket:[inode]`, `pipe:[inode]`…):
/// it names the open file itself, so a later file that reuses the fd
/// number (or a port another test takes) is told apart.
pub fn fd_link(fd: std::os::fd::RawFd) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("read /proc/self/fd link")
}

/// Whether any open fd of the process links to `link` (see [`fd_link`]).
pub fn is_open_file(link: &std::path::Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| l == link)
}

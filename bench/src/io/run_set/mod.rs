//! The `run` subcommand's I/O benchmarks (what `callgrind.sh`, `strace.sh`
//! and `.ci/perf-gate` count): loopback TCP on one thread, TCP_NODELAY on
//! both ends. The floor and tokio are in `floor.rs`.
//!
//! * echo: a client writes a message, waits until all of it has come back
//!   through an echo server on the same loop, and repeats; one op is one
//!   round trip. The first round trip is untimed (it overlaps the accept
//!   and `connection_made`); the clock runs from the moment the client
//!   writes the second message until the last byte of message `ops + 1`
//!   is back. Peers: evloop `Protocol`, `BufferedProtocol` and streams; a
//!   raw level-triggered epoll loop on `libc` (the floor); tokio's
//!   current-thread runtime.
//! * bulk: `ops` chunks of 256 KiB from one end to the other; one op is a
//!   chunk, printed as GB/s (10^9 bytes per second).
//!
//! Every echo checks byte counts, the first and last byte of every chunk
//! received, two per-round marker bytes, and the whole message every 16th
//! round trip ([`EchoCheck`]). Every bulk run checks the byte count and,
//! for each read, its first and last byte plus the per-chunk marker at every
//! chunk boundary inside it ([`BulkCheck`]).

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::net::{Buffered, BufferedProtocol, Protocol, Transport};
use evloop::{EventLoop, StreamReader, StreamWriter};

use crate::common::Sample;

mod floor;
pub use floor::{bulk_raw_epoll, echo_raw_epoll_1k, echo_tokio_1k};

/// Size of a bulk chunk, of the receive buffers, and of one bulk read.
pub const CHUNK: usize = 256 * 1024;
/// Every `FULL_CHECK_EVERY`-th echo round trip compares the whole message.
const FULL_CHECK_EVERY: u64 = 16;

// ------------------------------------------------------------------ checks

/// The client side of an echo: builds each message and checks what comes
/// back. Shared by every echo peer, so they all pay the same.
pub struct EchoCheck {
    payload: Vec<u8>,
    /// Round trips completed.
    rounds: u64,
    /// Bytes of the current round trip received so far.
    got: usize,
    /// Bytes received in total.
    bytes: u64,
    full_checks: u64,
}

impl EchoCheck {
    pub fn new(size: usize) -> EchoCheck {
        assert!(size >= 2);
        let payload = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut c = EchoCheck { payload, rounds: 0, got: 0, bytes: 0, full_checks: 0 };
        c.mark();
        c
    }

    /// Per-round marker bytes at both ends of the message.
    fn mark(&mut self) {
        let n = self.payload.len();
        self.payload[0] = self.rounds as u8;
        self.payload[n - 1] = (self.rounds >> 8) as u8 ^ 0xA5;
    }

    /// The message of the current round trip.
    pub fn message(&self) -> &[u8] {
        &self.payload
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Checks received bytes; true when the current message is all back
    /// (the next `message()` is then ready).
    pub fn received(&mut self, data: &[u8]) -> bool {
        let (got, n) = (self.got, data.len());
        assert!(n > 0 && got + n <= self.payload.len(), "echo returned more than was sent");
        let want = &self.payload[got..got + n];
        if self.rounds.is_multiple_of(FULL_CHECK_EVERY) {
            assert!(data == want, "echo payload corrupted (round trip {})", self.rounds);
            self.full_checks += 1;
        } else {
            assert!(
                data[0] == want[0] && data[n - 1] == want[n - 1],
                "echo payload corrupted (round trip {})",
                self.rounds
            );
        }
        self.got += n;
        self.bytes += n as u64;
        if self.got < self.payload.len() {
            return false;
        }
        self.got = 0;
        self.rounds += 1;
        self.mark();
        true
    }

    /// The final checks of a run of `total` round trips.
    pub fn finish(&self, total: u64) {
        assert_eq!(self.rounds, total, "every round trip completed");
        assert_eq!(self.got, 0, "no partial message left");
        assert_eq!(self.bytes, total * self.payload.len() as u64, "every byte came back once");
        assert!(self.full_checks >= total.div_ceil(FULL_CHECK_EVERY).min(total));
    }
}

/// The expected byte at `offset` of a bulk stream: chunk `k` is the pattern
/// `i % 251`, with byte 0 replaced by the marker `k as u8`.
fn bulk_byte(offset: u64) -> u8 {
    let (k, i) = (offset / CHUNK as u64, offset % CHUNK as u64);
    if i == 0 { k as u8 } else { (i % 251) as u8 }
}

/// Chunk `k` of a bulk stream (pattern with its marker written in).
pub fn bulk_chunk() -> Vec<u8> {
    (0..CHUNK).map(|i| bulk_byte(i as u64)).collect()
}

fn set_bulk_marker(chunk: &mut [u8], k: u64) {
    chunk[0] = k as u8;
}

/// The receiving side of a bulk transfer.
#[derive(Default)]
pub struct BulkCheck {
    pub bytes: u64,
    pub reads: u64,
}

impl BulkCheck {
    pub fn received(&mut self, data: &[u8]) {
        let (o, n) = (self.bytes, data.len() as u64);
        assert!(n > 0);
        let ok = |j: u64| data[j as usize] == bulk_byte(o + j);
        assert!(ok(0) && ok(n - 1), "bulk data corrupted near offset {o}");
        // Every chunk boundary inside this read: the marker byte.
        let mut j = (CHUNK as u64 - o % CHUNK as u64) % CHUNK as u64;
        while j < n {
            assert!(ok(j), "bulk chunk marker wrong at offset {}", o + j);
            j += CHUNK as u64;
        }
        self.bytes += n;
        self.reads += 1;
    }
}

/// Whether TCP_NODELAY is on for `fd`.
fn nodelay(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the call; a bad fd only errors.
    let r = unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&raw mut v).cast(), &raw mut len)
    };
    r == 0 && v != 0
}

// ------------------------------------------------------ the timed window

/// Start and end of the timed part, and the loop counters at both ends.
#[derive(Default)]
struct Window {
    start: Cell<Option<Instant>>,
    end: Cell<Option<Instant>>,
    iterations: Cell<u64>,
    polls: Cell<u64>,
}

impl Window {
    fn open(&self, lp: &EventLoop) {
        let s = lp.stats();
        self.iterations.set(s.iterations);
        self.polls.set(s.polls);
        self.start.set(Some(Instant::now()));
    }
    fn close(&self, lp: &EventLoop) {
        self.end.set(Some(Instant::now()));
        let s = lp.stats();
        self.iterations.set(s.iterations - self.iterations.get());
        self.polls.set(s.polls - self.polls.get());
    }
    fn sample(&self, ops: u64) -> Sample {
        let (Some(start), Some(end)) = (self.start.get(), self.end.get()) else {
            return Sample::new(Duration::ZERO);
        };
        let per = ops.max(1) as f64;
        Sample::new(end - start)
            .metric("iters/op", self.iterations.get() as f64 / per)
            .metric("polls/op", self.polls.get() as f64 / per)
    }
}

// ------------------------------------------------ evloop Protocol echoes

/// The echo server: writes back whatever it receives.
struct EchoServer(Option<Transport>);

impl Protocol for EchoServer {
    fn connection_made(&mut self, t: &Transport) {
        assert!(nodelay(t.fd()), "server transport without TCP_NODELAY");
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.0.as_ref().expect("connected").write(data).expect("echo write");
    }
}

/// The same as a `BufferedProtocol`: the transport receives into `buf`.
struct BufferedEchoServer {
    t: Option<Transport>,
    buf: Vec<u8>,
}

impl BufferedProtocol for BufferedEchoServer {
    fn connection_made(&mut self, t: &Transport) {
        assert!(nodelay(t.fd()), "server transport without TCP_NODELAY");
        self.t = Some(t.clone());
    }
    fn get_buffer(&mut self, _size_hint: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.t.as_ref().expect("connected").write(&self.buf[..nbytes]).expect("echo write");
    }
}

/// What the echo client shares with the benchmark.
struct EchoClientState {
    lp: EventLoop,
    check: RefCell<EchoCheck>,
    /// Round trips to make, the untimed first one included.
    total: u64,
    window: Window,
    done: evloop::Future<()>,
}

struct EchoClient {
    st: Rc<EchoClientState>,
    t: Option<Transport>,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, t: &Transport) {
        assert!(nodelay(t.fd()), "client transport without TCP_NODELAY");
        self.t = Some(t.clone());
        // The first, untimed round trip.
        t.write(self.st.check.borrow().message()).expect("client write");
    }
    fn data_received(&mut self, data: &[u8]) {
        let st = &*self.st;
        let mut check = st.check.borrow_mut();
        if !check.received(data) {
            return;
        }
        let rounds = check.rounds();
        if rounds == 1 {
            st.window.open(&st.lp);
        }
        if rounds == st.total {
            st.window.close(&st.lp);
            st.done.set_result(()).expect("done once");
        } else {
            self.t.as_ref().expect("connected").write(check.message()).expect("client write");
        }
    }
}

/// `ops` round trips of `size` bytes through an evloop echo server (plain or
/// buffered protocol) and an evloop `Protocol` client on `lp`.
fn echo_protocol(lp: &EventLoop, ops: u64, size: usize, buffered: bool) -> Sample {
    let st = Rc::new(EchoClientState {
        lp: lp.clone(),
        check: RefCell::new(EchoCheck::new(size)),
        total: ops + 1,
        window: Window::default(),
        done: lp.create_future(),
    });
    let l = lp.clone();
    let s = st.clone();
    lp.run_until_complete(async move {
        let server = if buffered {
            l.create_server(
                || Buffered(BufferedEchoServer { t: None, buf: vec![0; CHUNK] }),
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
        } else {
            l.create_server(|| EchoServer(None), "127.0.0.1", 0, Default::default()).await
        }
        .expect("echo server");
        let port = server.local_addr().expect("bound").port();
        let c = s.clone();
        let (client, _) = l
            .create_connection(move || EchoClient { st: c, t: None }, "127.0.0.1", port, Default::default())
            .await
            .expect("connect");
        (&s.done).await.expect("all round trips");
        client.close();
        server.close();
        server.wait_closed().await.expect("server closed");
    })
    .expect("run the echo");
    st.check.borrow().finish(ops + 1);
    assert_eq!(lp.stats().tasks, 0);
    st.window.sample(ops)
}

pub fn echo_protocol_1k(lp: &EventLoop, ops: u64) -> Sample {
    echo_protocol(lp, ops, 1024, false)
}

pub fn echo_protocol_10k(lp: &EventLoop, ops: u64) -> Sample {
    echo_protocol(lp, ops, 10 * 1024, false)
}

pub fn echo_protocol_100k(lp: &EventLoop, ops: u64) -> Sample {
    echo_protocol(lp, ops, 100 * 1024, false)
}

pub fn echo_buffered_1k(lp: &EventLoop, ops: u64) -> Sample {
    echo_protocol(lp, ops, 1024, true)
}

// ----------------------------------------------------------- streams echo

/// `ops` round trips of 1 KiB: `start_server` handler `read(64 KiB)` →
/// `write` → `drain()`, client `write` + `readexactly(1024)`.
pub fn echo_streams_1k(lp: &EventLoop, ops: u64) -> Sample {
    const SIZE: usize = 1024;
    let window = Rc::new(Window::default());
    let echoed = Rc::new(Cell::new(0u64));
    let l = lp.clone();
    let (w, e) = (window.clone(), echoed.clone());
    let check = lp
        .run_until_complete(async move {
            let served = e.clone();
            let server = evloop::start_server(
                move |mut reader: StreamReader, writer: StreamWriter| {
                    let served = served.clone();
                    async move {
                        assert!(nodelay(writer.transport().fd()));
                        loop {
                            let data = reader.read(64 * 1024).await.expect("server read");
                            if data.is_empty() {
                                break;
                            }
                            writer.write(&data).expect("server write");
                            writer.drain().await.expect("server drain");
                            served.set(served.get() + data.len() as u64);
                        }
                        writer.close();
                    }
                },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .expect("stream server");
            let port = server.local_addr().expect("bound").port();
            let (mut reader, writer) =
                evloop::open_connection("127.0.0.1", port, Default::default()).await.expect("connect");
            assert!(nodelay(writer.transport().fd()));
            let mut check = EchoCheck::new(SIZE);
            for round in 0..=ops {
                if round == 1 {
                    w.open(&l);
                }
                writer.write(check.message()).expect("client write");
                let back = reader.readexactly(SIZE).await.expect("readexactly");
                assert!(check.received(&back), "readexactly returned a whole message");
            }
            w.close(&l);
            writer.close();
            server.close();
            server.wait_closed().await.expect("server closed");
            check
        })
        .expect("run the echo");
    check.finish(ops + 1);
    assert_eq!(echoed.get(), (ops + 1) * SIZE as u64, "the server echoed every byte");
    assert_eq!(lp.stats().tasks, 0, "the handler task finished");
    window.sample(ops)
}

// ------------------------------------------------------------------- bulk

/// `ops` chunks of 256 KiB: a `StreamWriter` (`write` + `drain()` per
/// chunk) to a `StreamReader` (`read(256 KiB)` until all bytes are in),
/// both tasks on `lp`.
pub fn bulk_streams(lp: &EventLoop, ops: u64) -> Sample {
    let total = ops * CHUNK as u64;
    let window = Rc::new(Window::default());
    let received = Rc::new(RefCell::new(BulkCheck::default()));
    let l = lp.clone();
    let (w, r) = (window.clone(), received.clone());
    lp.run_until_complete(async move {
        let (rl, rw, rr) = (l.clone(), w.clone(), r.clone());
        let server = evloop::start_server(
            move |mut reader: StreamReader, writer: StreamWriter| {
                let (l, w, r) = (rl.clone(), rw.clone(), rr.clone());
                async move {
                    loop {
                        let data = reader.read(CHUNK).await.expect("bulk read");
                        if data.is_empty() {
                            break;
                        }
                        let mut check = r.borrow_mut();
                        check.received(&data);
                        if check.bytes == total {
                            w.close(&l);
                        }
                    }
                    writer.close();
                }
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .expect("stream server");
        let port = server.local_addr().expect("bound").port();
        let (_reader, writer) =
            evloop::open_connection("127.0.0.1", port, Default::default()).await.expect("connect");
        let mut chunk = bulk_chunk();
        w.open(&l);
        for k in 0..ops {
            set_bulk_marker(&mut chunk, k);
            writer.write(&chunk).expect("bulk write");
            writer.drain().await.expect("drain");
        }
        if ops == 0 {
            w.close(&l);
        }
        writer.close();
        server.wait_closed_after_close().await;
    })
    .expect("run the transfer");
    let check = received.borrow();
    assert_eq!(check.bytes, total, "every byte arrived once");
    assert_eq!(lp.stats().tasks, 0, "the handler task finished");
    window.sample(ops).metric("reads/op", check.reads as f64 / ops.max(1) as f64)
}

/// Closing a server and waiting for its connections, in one call.
trait CloseAndWait {
    async fn wait_closed_after_close(&self);
}

impl CloseAndWait for evloop::net::Server {
    async fn wait_closed_after_close(&self) {
        self.close();
        self.wait_closed().await.expect("server closed");
    }
}

/// The sending side of `bulk_protocol`.
struct BulkSender {
    t: RefCell<Option<Transport>>,
    chunk: RefCell<Vec<u8>>,
    next: Cell<u64>,
    ops: u64,
    pauses: Cell<u64>,
    paused: Cell<bool>,
}

impl BulkSender {
    /// Writes chunks while the transport's buffer is at most its high-water
    /// mark. (Inside a protocol method `pause_writing` is only delivered
    /// when the method returns, so the buffer size is what tells.)
    fn pump(&self) {
        let t = self.t.borrow().clone().expect("connected");
        let (_, high) = t.get_write_buffer_limits();
        let mut chunk = self.chunk.borrow_mut();
        while self.next.get() < self.ops && t.get_write_buffer_size() <= high {
            set_bulk_marker(&mut chunk, self.next.get());
            t.write(&chunk).expect("bulk write");
            self.next.set(self.next.get() + 1);
        }
    }
}

struct BulkSendProtocol(Rc<BulkSender>);

impl Protocol for BulkSendProtocol {
    fn connection_made(&mut self, t: &Transport) {
        assert!(nodelay(t.fd()));
        *self.0.t.borrow_mut() = Some(t.clone());
    }
    fn data_received(&mut self, _: &[u8]) {
        panic!("the receiver sends nothing");
    }
    fn pause_writing(&mut self) {
        assert!(!self.0.paused.replace(true));
        self.0.pauses.set(self.0.pauses.get() + 1);
    }
    fn resume_writing(&mut self) {
        assert!(self.0.paused.replace(false));
        self.0.pump();
    }
}

struct BulkReceiver {
    lp: EventLoop,
    check: RefCell<BulkCheck>,
    total: u64,
    window: Window,
    done: evloop::Future<()>,
}

struct BulkReceiveProtocol(Rc<BulkReceiver>);

impl Protocol for BulkReceiveProtocol {
    fn connection_made(&mut self, t: &Transport) {
        assert!(nodelay(t.fd()));
    }
    fn data_received(&mut self, data: &[u8]) {
        let r = &*self.0;
        let mut check = r.check.borrow_mut();
        check.received(data);
        if check.bytes == r.total {
            r.window.close(&r.lp);
            r.done.set_result(()).expect("done once");
        }
    }
}

/// `ops` chunks of 256 KiB through a plain `Protocol` pair, the sender
/// driven by `pause_writing`/`resume_writing`: the transport's own ceiling.
pub fn bulk_protocol(lp: &EventLoop, ops: u64) -> Sample {
    let rx = Rc::new(BulkReceiver {
        lp: lp.clone(),
        check: RefCell::new(BulkCheck::default()),
        total: ops * CHUNK as u64,
        window: Window::default(),
        done: lp.create_future(),
    });
    let tx = Rc::new(BulkSender {
        t: RefCell::new(None),
        chunk: RefCell::new(bulk_chunk()),
        next: Cell::new(0),
        ops,
        pauses: Cell::new(0),
        paused: Cell::new(false),
    });
    let l = lp.clone();
    let (r, s) = (rx.clone(), tx.clone());
    lp.run_until_complete(async move {
        let rf = r.clone();
        let server = l
            .create_server(move || BulkReceiveProtocol(rf.clone()), "127.0.0.1", 0, Default::default())
            .await
            .expect("server");
        let port = server.local_addr().expect("bound").port();
        let sf = s.clone();
        let (client, _) = l
            .create_connection(move || BulkSendProtocol(sf), "127.0.0.1", port, Default::default())
            .await
            .expect("connect");
        r.window.open(&l);
        if ops == 0 {
            r.window.close(&l);
        } else {
            s.pump();
            (&r.done).await.expect("all bytes");
        }
        client.close();
        server.wait_closed_after_close().await;
    })
    .expect("run the transfer");
    assert_eq!(tx.next.get(), ops, "every chunk was written");
    let check = rx.check.borrow();
    assert_eq!(check.bytes, ops * CHUNK as u64, "every byte arrived once");
    let per = ops.max(1) as f64;
    rx.window
        .sample(ops)
        .metric("reads/op", check.reads as f64 / per)
        .metric("pauses/op", tx.pauses.get() as f64 / per)
}

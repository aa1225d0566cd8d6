//! The run set's peers that are not evloop: the raw level-triggered epoll
//! floor and tokio's current-thread runtime, checked by the same
//! [`EchoCheck`] and [`BulkCheck`] as evloop's benchmarks.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use evloop::EventLoop;

use super::{BulkCheck, CHUNK, EchoCheck, bulk_chunk, nodelay, set_bulk_marker};
use crate::common::Sample;

// ------------------------------------------------------------- raw epoll

/// One end of a raw connection: its socket and what `send` did not take.
struct RawSide {
    sock: TcpStream,
    out: Vec<u8>,
    /// Registered for EPOLLOUT too.
    want_out: bool,
}

/// Both ends of a loopback TCP connection, nonblocking, TCP_NODELAY.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(true).unwrap();
        assert!(nodelay(s.as_raw_fd()));
    }
    (client, server)
}

/// A level-triggered epoll instance with a few raw helpers.
struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    fn new() -> Epoll {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(fd >= 0, "epoll_create1: {}", io::Error::last_os_error());
        Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; 64] }
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: i32, token: u64) {
        let mut ev = libc::epoll_event { events: events as u32, u64: token };
        // SAFETY: `ev` is valid for the call.
        let r = unsafe { libc::epoll_ctl(self.fd, op, fd, &raw mut ev) };
        assert_eq!(r, 0, "epoll_ctl: {}", io::Error::last_os_error());
    }

    /// Blocks until something is ready; the (token, flags) pairs.
    fn wait(&mut self) -> impl Iterator<Item = (u64, u32)> + '_ {
        // SAFETY: `events` has room for its length.
        let n = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), self.events.len() as i32, -1) };
        let n = if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "epoll_wait: {e}");
            0
        } else {
            n as usize
        };
        self.events[..n].iter().map(|ev| (ev.u64, ev.events))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// `recv(2)`, as evloop's transport does it.
fn raw_recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// `send(2)` with MSG_NOSIGNAL, as evloop's transport does it.
fn raw_send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads of its length.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

impl RawSide {
    fn new(sock: TcpStream) -> RawSide {
        RawSide { sock, out: Vec::new(), want_out: false }
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends `data` now if nothing is queued, queues what the socket did not
    /// take and asks for EPOLLOUT.
    fn write(&mut self, ep: &Epoll, token: u64, data: &[u8]) {
        let mut rest = data;
        if self.out.is_empty() {
            match raw_send(self.fd(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("send: {e}"),
            }
            if rest.is_empty() {
                return;
            }
        }
        self.out.extend_from_slice(rest);
        if !self.want_out {
            self.want_out = true;
            ep.ctl(libc::EPOLL_CTL_MOD, self.fd(), libc::EPOLLIN | libc::EPOLLOUT, token);
        }
    }

    /// EPOLLOUT: flush what is queued; back to EPOLLIN only once empty.
    fn flush(&mut self, ep: &Epoll, token: u64) {
        while !self.out.is_empty() {
            match raw_send(self.fd(), &self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("send: {e}"),
            }
        }
        if self.want_out {
            self.want_out = false;
            ep.ctl(libc::EPOLL_CTL_MOD, self.fd(), libc::EPOLLIN, token);
        }
    }
}

/// The floor: the same ping-pong on a hand-written level-triggered epoll
/// loop, one `epoll_wait` per iteration, one `recv` per readable event.
fn echo_raw_epoll(ops: u64, size: usize) -> Sample {
    const SERVER: u64 = 0;
    const CLIENT: u64 = 1;
    let (client, server) = tcp_pair();
    let mut ep = Epoll::new();
    let mut sides = [RawSide::new(server), RawSide::new(client)];
    for (token, side) in sides.iter().enumerate() {
        ep.ctl(libc::EPOLL_CTL_ADD, side.fd(), libc::EPOLLIN, token as u64);
    }
    let mut buf = vec![0u8; CHUNK];
    let mut check = EchoCheck::new(size);
    let total = ops + 1;
    let mut start = None;
    let mut iterations = 0u64;
    let mut first_iteration = 0u64;
    let mut events = Vec::with_capacity(64);
    let msg = check.message().to_vec();
    sides[CLIENT as usize].write(&ep, CLIENT, &msg);
    let end = 'outer: loop {
        events.clear();
        events.extend(ep.wait());
        iterations += 1;
        for &(token, flags) in &events {
            let side = &mut sides[token as usize];
            if flags & (libc::EPOLLOUT as u32) != 0 {
                side.flush(&ep, token);
            }
            if flags & ((libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32) == 0 {
                continue;
            }
            let n = match raw_recv(side.fd(), &mut buf) {
                Ok(0) => panic!("unexpected EOF"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("recv: {e}"),
            };
            if token == SERVER {
                side.write(&ep, token, &buf[..n]);
            } else if check.received(&buf[..n]) {
                if check.rounds() == 1 {
                    start = Some(Instant::now());
                    first_iteration = iterations;
                }
                if check.rounds() == total {
                    break 'outer Instant::now();
                }
                side.write(&ep, token, check.message());
            }
        }
    };
    check.finish(total);
    let elapsed = start.map_or(Duration::ZERO, |s| end - s);
    Sample::new(elapsed).metric("iters/op", (iterations - first_iteration) as f64 / ops.max(1) as f64)
}

pub fn echo_raw_epoll_1k(_lp: &EventLoop, ops: u64) -> Sample {
    echo_raw_epoll(ops, 1024)
}

// ------------------------------------------------------------------ tokio

thread_local! {
    /// One runtime for every round, as evloop gets one loop per benchmark.
    static TOKIO: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
}

/// The same ping-pong on tokio's current-thread runtime: a server task
/// doing `read` → `write_all`, a client task doing `write_all` →
/// `read_exact`.
fn echo_tokio(ops: u64, size: usize) -> Sample {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    TOKIO.with(|rt| {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                s.set_nodelay(true).unwrap();
                assert!(nodelay(s.as_raw_fd()));
                let mut buf = vec![0u8; 64 * 1024];
                let mut echoed = 0u64;
                loop {
                    let n = s.read(&mut buf).await.expect("server read");
                    if n == 0 {
                        break echoed;
                    }
                    s.write_all(&buf[..n]).await.expect("server write");
                    echoed += n as u64;
                }
            });
            let client = tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
                c.set_nodelay(true).unwrap();
                assert!(nodelay(c.as_raw_fd()));
                let mut check = EchoCheck::new(size);
                let mut back = vec![0u8; size];
                let mut start = None;
                for round in 0..=ops {
                    if round == 1 {
                        start = Some(Instant::now());
                    }
                    c.write_all(check.message()).await.expect("client write");
                    c.read_exact(&mut back).await.expect("read_exact");
                    assert!(check.received(&back));
                }
                let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
                check.finish(ops + 1);
                elapsed
            });
            let elapsed = client.await.expect("client task");
            let echoed = server.await.expect("server task");
            assert_eq!(echoed, (ops + 1) * size as u64, "the server echoed every byte");
            Sample::new(elapsed)
        })
    })
}

pub fn echo_tokio_1k(_lp: &EventLoop, ops: u64) -> Sample {
    echo_tokio(ops, 1024)
}

/// The bulk floor: the same transfer on the raw epoll loop (sender writes a
/// chunk whenever its queue is empty; receiver `recv`s 256 KiB at a time).
pub fn bulk_raw_epoll(_lp: &EventLoop, ops: u64) -> Sample {
    const RECEIVER: u64 = 0;
    const SENDER: u64 = 1;
    let (client, server) = tcp_pair();
    let mut ep = Epoll::new();
    let mut rx = RawSide::new(server);
    let mut tx = RawSide::new(client);
    ep.ctl(libc::EPOLL_CTL_ADD, rx.fd(), libc::EPOLLIN, RECEIVER);
    ep.ctl(libc::EPOLL_CTL_ADD, tx.fd(), libc::EPOLLOUT, SENDER);
    let total = ops * CHUNK as u64;
    let mut buf = vec![0u8; CHUNK];
    let mut chunk = bulk_chunk();
    let mut check = BulkCheck::default();
    let mut next = 0u64;
    let mut events = Vec::with_capacity(64);
    let start = Instant::now();
    // The sender keeps at most one chunk queued: write it when writable.
    let mut pending: Option<usize> = None;
    while check.bytes < total {
        events.clear();
        events.extend(ep.wait());
        for &(token, flags) in &events {
            if token == SENDER {
                loop {
                    if pending.is_none() && next < ops {
                        set_bulk_marker(&mut chunk, next);
                        next += 1;
                        pending = Some(0);
                    }
                    let Some(off) = pending else { break };
                    match raw_send(tx.fd(), &chunk[off..]) {
                        Ok(n) if off + n == CHUNK => pending = None,
                        Ok(n) => pending = Some(off + n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("send: {e}"),
                    }
                }
                if pending.is_none() && next == ops && !tx.want_out {
                    tx.want_out = true; // done: stop asking for EPOLLOUT
                    ep.ctl(libc::EPOLL_CTL_MOD, tx.fd(), 0, SENDER);
                }
            } else if flags & ((libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32) != 0 {
                match raw_recv(rx.fd(), &mut buf) {
                    Ok(0) => panic!("unexpected EOF"),
                    Ok(n) => check.received(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(next, ops);
    assert_eq!(check.bytes, total, "every byte arrived once");
    rx.out.clear();
    Sample::new(elapsed).metric("reads/op", check.reads as f64 / ops.max(1) as f64)
}

//! In-process I/O on one loop over loopback TCP: echo ping-pong (the
//! client sends a message, the server echoes it, the client waits for all
//! of it, repeat) and bulk transfer with flow control (64 KiB writes, the
//! server counts and answers the total).
//!
//! Peers: evloop `Protocol`, evloop streams, tokio (current-thread), smol
//! (`LocalExecutor` + `async-io`), and the floor: a level-triggered epoll
//! loop on `libc` doing what a loop must do at the least (one `recv` per
//! readiness event into a 256 KiB buffer, direct `send` with a buffer and
//! `EPOLLOUT` only for what the socket does not take). Every socket has
//! TCP_NODELAY, as asyncio's and evloop's transports do.
//!
//! Each call sets up a server and a connection (untimed), warms up with 50
//! round trips, then times `n` round trips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::common::{Echo, EchoCheck, Runner, pattern};

pub const ECHO_PEERS: &[&str] =
    &["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"];
pub const BULK_PEERS: &[&str] = ECHO_PEERS;

const WARM_UP: u64 = 50;
const READ_SIZE: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// A Rust echo runner: `n` round trips of `size` bytes.
pub fn echo_runner(peer: &str, size: usize) -> Option<Runner> {
    let f: fn(usize, u64) -> Duration = match peer {
        "evloop" => evloop_echo,
        "evloop-streams" => streams_echo,
        "tokio" => tokio_echo,
        "smol" => smol_echo,
        "raw-epoll" => raw_echo,
        _ => return None,
    };
    Some(Box::new(move |n| f(size, n)))
}

/// A Rust bulk runner: `total` bytes.
pub fn bulk_runner(peer: &str) -> Option<Runner> {
    let f: fn(u64) -> Duration = match peer {
        "evloop" => evloop_bulk,
        "evloop-streams" => streams_bulk,
        "tokio" => tokio_bulk,
        "smol" => smol_bulk,
        "raw-epoll" => raw_bulk,
        _ => return None,
    };
    Some(Box::new(f))
}

// ------------------------------------------------------------ evloop Protocol

mod ev {
    use super::*;
    use evloop::net::{Protocol, Transport};

    pub struct EchoServer(pub Option<Transport>);

    impl Protocol for EchoServer {
        fn connection_made(&mut self, t: &Transport) {
            self.0 = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.0.as_ref().expect("connected").write(data).expect("echo write");
        }
    }

    pub struct EchoClient {
        pub t: Option<Transport>,
        pub check: EchoCheck,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for EchoClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            match self.check.data(data) {
                Echo::More => {}
                Echo::Again => self.t.as_ref().unwrap().write(&self.check.msg).unwrap(),
                Echo::Done => self.lp.stop(),
            }
        }
    }

    pub struct BulkServer {
        pub t: Option<Transport>,
        pub total: u64,
        pub count: u64,
    }

    impl Protocol for BulkServer {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.count += data.len() as u64;
            assert!(self.count <= self.total, "bulk overrun");
            if self.count == self.total {
                self.t.as_ref().unwrap().write(&self.count.to_le_bytes()).unwrap();
            }
        }
    }

    /// What the bulk client shares with the code that starts it: the
    /// protocol itself is borrowed by the transport while it calls it, so
    /// the pump works on this, not on the protocol.
    pub struct BulkState {
        pub total: u64,
        pub sent: std::cell::Cell<u64>,
        pub chunk: Vec<u8>,
        pub ack: std::cell::RefCell<Vec<u8>>,
    }

    /// Writes while the transport's buffer is at most its high-water mark;
    /// `resume_writing` calls it again.
    pub fn pump(t: &Transport, st: &BulkState) {
        let (_, high) = t.get_write_buffer_limits();
        while st.sent.get() < st.total && t.get_write_buffer_size() <= high {
            let n = (CHUNK as u64).min(st.total - st.sent.get()) as usize;
            t.write(&st.chunk[..n]).unwrap();
            st.sent.set(st.sent.get() + n as u64);
        }
    }

    pub struct BulkClient {
        pub t: Option<Transport>,
        pub st: Rc<BulkState>,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for BulkClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            let mut ack = self.st.ack.borrow_mut();
            ack.extend_from_slice(data);
            if ack.len() == 8 {
                self.lp.stop();
            }
        }
        fn resume_writing(&mut self) {
            pump(self.t.as_ref().unwrap(), &self.st);
        }
    }
}

/// One echo session on evloop protocols; public for `echo-count`.
pub fn evloop_echo(size: usize, n: u64) -> Duration {
    use evloop::EventLoop;
    let lp = EventLoop::new().unwrap();
    let msg = Rc::new(pattern(size));
    let (l, m) = (lp.clone(), msg.clone());
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let server =
                l.create_server(|| ev::EchoServer(None), "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::EchoClient { t: None, check: EchoCheck::new(m, 0), lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let run = |rounds: u64| {
        client.borrow_mut().check = EchoCheck::new(msg.clone(), rounds);
        let start = Instant::now();
        transport.write(&msg).unwrap();
        lp.run_forever().unwrap();
        let t = start.elapsed();
        assert_eq!(client.borrow().check.completed, rounds);
        t
    };
    run(WARM_UP);
    let t = run(n);
    transport.close();
    server.close();
    server.close_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

fn evloop_bulk(total: u64) -> Duration {
    use evloop::EventLoop;
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let st = Rc::new(ev::BulkState {
        total,
        sent: Default::default(),
        chunk: pattern(CHUNK),
        ack: Default::default(),
    });
    let st2 = st.clone();
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let server = l
                .create_server(
                    move || ev::BulkServer { t: None, total, count: 0 },
                    "127.0.0.1",
                    0,
                    Default::default(),
                )
                .await
                .unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::BulkClient { t: None, st: st2, lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let start = Instant::now();
    ev::pump(&transport, &st);
    lp.run_forever().unwrap();
    let t = start.elapsed();
    let ack = u64::from_le_bytes(st.ack.borrow()[..8].try_into().unwrap());
    assert_eq!(ack, total, "the server received every byte");
    transport.close();
    server.close();
    server.close_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

// ------------------------------------------------------------ evloop streams

fn streams_echo(size: usize, n: u64) -> Duration {
    use evloop::{EventLoop, open_connection, start_server};
    let lp = EventLoop::new().unwrap();
    let msg = Rc::new(pattern(size));
    let (server, mut reader, writer) = lp
        .run_until_complete(async move {
            let server = start_server(
                |mut r, w| async move {
                    loop {
                        let data = r.read(READ_SIZE).await.unwrap();
                        if data.is_empty() {
                            break;
                        }
                        w.write(&data).unwrap();
                        w.drain().await.unwrap();
                    }
                    w.close();
                },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .unwrap();
            let port = server.local_addr().unwrap().port();
            let (r, w) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
            (server, r, w)
        })
        .unwrap();
    let mut run = |rounds: u64| {
        let (m, w) = (msg.clone(), writer.clone());
        let mut r = std::mem::replace(&mut reader, evloop::StreamReader::new());
        let (t, r) = lp
            .run_until_complete(async move {
                let mut check = EchoCheck::new(m.clone(), rounds);
                let start = Instant::now();
                loop {
                    w.write(&m).unwrap();
                    let data = r.readexactly(m.len()).await.unwrap();
                    if check.data(&data) == Echo::Done {
                        break;
                    }
                }
                (start.elapsed(), r)
            })
            .unwrap();
        reader = r;
        t
    };
    run(WARM_UP);
    let t = run(n);
    writer.close();
    server.close();
    lp.run_until_complete(async move { server.wait_closed().await }).unwrap().unwrap();
    lp.close().unwrap();
    t
}

fn streams_bulk(total: u64) -> Duration {
    use evloop::{EventLoop, open_connection, start_server};
    let lp = EventLoop::new().unwrap();
    lp.run_until_complete(async move {
        let server = start_server(
            move |mut r, w| async move {
                let mut count = 0u64;
                loop {
                    let data = r.read(READ_SIZE).await.unwrap();
                    if data.is_empty() {
                        break;
                    }
                    count += data.len() as u64;
                    assert!(count <= total, "bulk overrun");
                    if count == total {
                        w.write(&count.to_le_bytes()).unwrap();
                    }
                }
                w.close();
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut r, w) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let n = (CHUNK as u64).min(total - sent) as usize;
            w.write(&chunk[..n]).unwrap();
            w.drain().await.unwrap();
            sent += n as u64;
        }
        let ack = r.readexactly(8).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack[..].try_into().unwrap()), total);
        w.close();
        server.close();
        server.wait_closed().await.unwrap();
        t
    })
    .unwrap()
}

// -------------------------------------------------------------------- tokio

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

pub fn tokio_echo(size: usize, n: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    let rt = tokio_rt();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k]).await.unwrap();
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let msg = Rc::new(pattern(size));
        let mut buf = vec![0u8; READ_SIZE];
        let mut t = Duration::ZERO;
        for rounds in [WARM_UP, n] {
            let mut check = EchoCheck::new(msg.clone(), rounds);
            let start = Instant::now();
            c.write_all(&msg).await.unwrap();
            loop {
                let k = c.read(&mut buf).await.unwrap();
                match check.data(&buf[..k]) {
                    Echo::More => {}
                    Echo::Again => c.write_all(&msg).await.unwrap(),
                    Echo::Done => break,
                }
            }
            t = start.elapsed();
        }
        drop(c);
        server.await.unwrap();
        t
    })
}

fn tokio_bulk(total: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    let rt = tokio_rt();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            let mut count = 0u64;
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                count += k as u64;
                assert!(count <= total);
                if count == total {
                    s.write_all(&count.to_le_bytes()).await.unwrap();
                }
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let k = (CHUNK as u64).min(total - sent) as usize;
            c.write_all(&chunk[..k]).await.unwrap();
            sent += k as u64;
        }
        let mut ack = [0u8; 8];
        c.read_exact(&mut ack).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack), total);
        drop(c);
        server.await.unwrap();
        t
    })
}

// --------------------------------------------------------------------- smol

fn smol_echo(size: usize, n: u64) -> Duration {
    use async_executor::LocalExecutor;
    use async_io::Async;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let server = ex.spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.get_ref().set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                s.write_all(&buf[..k]).await.unwrap();
            }
        });
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        c.get_ref().set_nodelay(true).unwrap();
        let msg = Rc::new(pattern(size));
        let mut buf = vec![0u8; READ_SIZE];
        let mut t = Duration::ZERO;
        for rounds in [WARM_UP, n] {
            let mut check = EchoCheck::new(msg.clone(), rounds);
            let start = Instant::now();
            c.write_all(&msg).await.unwrap();
            loop {
                let k = c.read(&mut buf).await.unwrap();
                match check.data(&buf[..k]) {
                    Echo::More => {}
                    Echo::Again => c.write_all(&msg).await.unwrap(),
                    Echo::Done => break,
                }
            }
            t = start.elapsed();
        }
        drop(c);
        server.await;
        t
    }))
}

fn smol_bulk(total: u64) -> Duration {
    use async_executor::LocalExecutor;
    use async_io::Async;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let ex = LocalExecutor::new();
    async_io::block_on(ex.run(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let server = ex.spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.get_ref().set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_SIZE];
            let mut count = 0u64;
            loop {
                let k = s.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                count += k as u64;
                assert!(count <= total);
                if count == total {
                    s.write_all(&count.to_le_bytes()).await.unwrap();
                }
            }
        });
        let mut c = Async::<TcpStream>::connect(addr).await.unwrap();
        c.get_ref().set_nodelay(true).unwrap();
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let k = (CHUNK as u64).min(total - sent) as usize;
            c.write_all(&chunk[..k]).await.unwrap();
            sent += k as u64;
        }
        let mut ack = [0u8; 8];
        c.read_exact(&mut ack).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack), total);
        drop(c);
        server.await;
        t
    }))
}

// ------------------------------------------------------------ raw epoll floor

/// A nonblocking socket in the floor loop, with what it could not send yet.
struct RawConn {
    stream: TcpStream,
    token: u64,
    out: Vec<u8>,
    sent: usize,
    watching_out: bool,
}

struct RawLoop {
    ep: RawFd,
    events: Vec<libc::epoll_event>,
}

impl RawLoop {
    fn new() -> RawLoop {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0, "epoll_create1");
        RawLoop { ep, events: vec![libc::epoll_event { events: 0, u64: 0 }; 16] }
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev outlives the call.
        let r = unsafe { libc::epoll_ctl(self.ep, op, fd, &mut ev) };
        assert_eq!(r, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }

    fn add(&self, c: &RawConn) {
        self.ctl(libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), libc::EPOLLIN as u32, c.token);
    }

    /// Waits (level-triggered); returns (token, events) pairs.
    fn wait(&mut self) -> Vec<(u64, u32)> {
        // SAFETY: the buffer holds `len` events.
        let n = unsafe { libc::epoll_wait(self.ep, self.events.as_mut_ptr(), self.events.len() as i32, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "epoll_wait: {e}");
            return Vec::new();
        }
        self.events[..n as usize].iter().map(|e| (e.u64, e.events)).collect()
    }

    /// Sends at once if nothing is pending; keeps the rest and asks for
    /// EPOLLOUT.
    fn write(&self, c: &mut RawConn, data: &[u8]) {
        let mut data = data;
        if c.out.len() == c.sent {
            let n = send(c.stream.as_raw_fd(), data);
            data = &data[n..];
        }
        if !data.is_empty() {
            c.out.extend_from_slice(data);
            self.want_out(c, true);
        }
    }

    fn flush(&self, c: &mut RawConn) {
        let n = send(c.stream.as_raw_fd(), &c.out[c.sent..]);
        c.sent += n;
        if c.sent == c.out.len() {
            c.out.clear();
            c.sent = 0;
            self.want_out(c, false);
        }
    }

    fn want_out(&self, c: &mut RawConn, on: bool) {
        if c.watching_out != on {
            c.watching_out = on;
            let ev = if on { libc::EPOLLIN | libc::EPOLLOUT } else { libc::EPOLLIN } as u32;
            self.ctl(libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), ev, c.token);
        }
    }
}

impl Drop for RawLoop {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.ep) };
    }
}

fn send(fd: RawFd, data: &[u8]) -> usize {
    // SAFETY: data is valid for its length.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "send: {e}");
        return 0;
    }
    n as usize
}

fn recv(fd: RawFd, buf: &mut [u8]) -> usize {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "recv: {e}");
        return 0;
    }
    n as usize
}

fn raw_pair() -> (RawConn, RawConn) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_nonblocking(true).unwrap();
        s.set_nodelay(true).unwrap();
    }
    let conn = |stream, token| RawConn { stream, token, out: Vec::new(), sent: 0, watching_out: false };
    (conn(client, 0), conn(server, 1))
}

pub fn raw_echo(size: usize, n: u64) -> Duration {
    let (mut client, mut server) = raw_pair();
    let mut lp = RawLoop::new();
    lp.add(&client);
    lp.add(&server);
    let msg = Rc::new(pattern(size));
    let mut buf = vec![0u8; READ_SIZE];
    let mut t = Duration::ZERO;
    for rounds in [WARM_UP, n] {
        let mut check = EchoCheck::new(msg.clone(), rounds);
        let start = Instant::now();
        lp.write(&mut client, &msg);
        'run: loop {
            for (token, ev) in lp.wait() {
                let c = if token == 0 { &mut client } else { &mut server };
                if ev & libc::EPOLLOUT as u32 != 0 {
                    lp.flush(c);
                }
                if ev & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                    continue;
                }
                let k = recv(c.stream.as_raw_fd(), &mut buf);
                if k == 0 {
                    continue;
                }
                if token == 1 {
                    lp.write(&mut server, &buf[..k]);
                } else {
                    match check.data(&buf[..k]) {
                        Echo::More => {}
                        Echo::Again => lp.write(&mut client, &msg),
                        Echo::Done => break 'run,
                    }
                }
            }
        }
        t = start.elapsed();
    }
    t
}

fn raw_bulk(total: u64) -> Duration {
    let (mut client, mut server) = raw_pair();
    let mut lp = RawLoop::new();
    lp.add(&client);
    lp.add(&server);
    let chunk = pattern(CHUNK);
    let mut buf = vec![0u8; READ_SIZE];
    let (mut sent, mut count) = (0u64, 0u64);
    let mut ack = Vec::new();
    let start = Instant::now();
    // Writes chunks while the socket takes them all.
    let pump = |lp: &RawLoop, c: &mut RawConn, sent: &mut u64| {
        while *sent < total && c.out.len() == c.sent {
            let k = (CHUNK as u64).min(total - *sent) as usize;
            lp.write(c, &chunk[..k]);
            *sent += k as u64;
        }
    };
    pump(&lp, &mut client, &mut sent);
    'run: loop {
        for (token, ev) in lp.wait() {
            if token == 0 {
                if ev & libc::EPOLLOUT as u32 != 0 {
                    lp.flush(&mut client);
                    pump(&lp, &mut client, &mut sent);
                }
                if ev & libc::EPOLLIN as u32 != 0 {
                    let k = recv(client.stream.as_raw_fd(), &mut buf);
                    ack.extend_from_slice(&buf[..k]);
                    if ack.len() == 8 {
                        break 'run;
                    }
                }
            } else if ev & libc::EPOLLIN as u32 != 0 {
                let k = recv(server.stream.as_raw_fd(), &mut buf);
                count += k as u64;
                assert!(count <= total);
                if k > 0 && count == total {
                    lp.write(&mut server, &count.to_le_bytes());
                }
            }
        }
    }
    let t = start.elapsed();
    assert_eq!(u64::from_le_bytes(ack[..].try_into().unwrap()), total);
    t
}

// ------------------------------------------------------ shared Python peers

/// Blocking helpers for the cross-process benchmarks' checks.
pub fn blocking_roundtrip(addr: &str, request: &[u8], until: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(until.len()).any(|w| w == until) {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(got)
}

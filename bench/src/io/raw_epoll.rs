//! The floor of the in-process I/O sections: a level-triggered epoll loop
//! on `libc`.

use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{CHUNK, READ_SIZE, WARM_UP};
use crate::common::{Echo, EchoCheck, pattern};

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

pub fn raw_bulk(total: u64) -> Duration {
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

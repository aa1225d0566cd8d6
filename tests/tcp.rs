//! TCP transports and protocols: asyncio's call order, half-close, every
//! way a connection ends, flow control, buffered protocols, pausing,
//! re-entrant transport calls, panics, many connections, fd hygiene and
//! SIGPIPE.

mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use evloop::net::{
    Buffered, BufferedProtocol, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Protocol, ServerOptions, SockAddr,
    Socket, Transport,
};
use evloop::{Error, EventLoop};
use util::{
    ConnState, NetCounter, NetEv, RecProto, Watchdog, capture_exceptions, fail_on_callback_errors,
    net_connect, net_passes, net_read_exact, net_read_to_end, net_rec_server, open_fd_count, pattern,
    raise_fd_limit, run_test_in_child, within,
};

const MIB: usize = 1024 * 1024;

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

fn sockaddr(addr: SocketAddr) -> SockAddr {
    addr.into()
}

/// Bytes waiting in the socket's receive queue (FIONREAD).
fn unread_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the valid pointer.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "ioctl(FIONREAD): {}", io::Error::last_os_error());
    n as usize
}

fn is_invalid_state<T: std::fmt::Debug>(r: &evloop::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidState(_)))
}

// ------------------------------------------------------------ call order

#[test]
fn call_order_and_eof_received_false_closes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"hello").await.unwrap();
        s.until_data(5).await;
        c.shutdown(Shutdown::Write).unwrap();
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "eof", "lost"]);
        assert_eq!(s.data(), b"hello");
        assert!(matches!(s.lost()[..], [None]), "{:?}", s.lost());
        assert!(s.transport().is_closing());
        // The transport closed the socket: the client reads EOF.
        let (rest, err) = net_read_to_end(&l, &c).await;
        assert!(rest.is_empty() && err.is_none(), "{rest:?} {err:?}");
        server.close();
    })
    .unwrap();
}

#[test]
fn eof_received_true_keeps_the_connection_open_for_writing() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            // Writing from inside eof_received works too.
            p.on_eof = Some(Box::new(|t| t.write(b"in-eof;").unwrap()));
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"ping").await.unwrap();
        s.until_data(4).await;
        let readers_before = l.stats().readers;
        c.shutdown(Shutdown::Write).unwrap();
        s.until("eof", |s| s.names().contains(&"eof")).await;
        let t = s.transport();
        assert!(!t.is_closing(), "eof_received returned true: the transport stays open");
        // Reading stopped (the EOF would otherwise be reported forever).
        assert_eq!(l.stats().readers, readers_before - 1);
        t.write(b"pong").unwrap();
        assert_eq!(net_read_exact(&l, &c, 11).await, b"in-eof;pong");
        assert!(!s.is_lost());
        t.close();
        s.until_lost().await;
        let (rest, err) = net_read_to_end(&l, &c).await;
        assert!(rest.is_empty() && err.is_none());
        assert_eq!(s.names(), ["made", "data", "eof", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
        server.close();
    })
    .unwrap();
}

#[test]
fn eof_received_is_called_at_most_once_even_if_reading_resumes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        c.shutdown(Shutdown::Write).unwrap();
        s.until("eof", |s| s.names().contains(&"eof")).await;
        let t = s.transport();
        // Pausing and resuming after EOF must not report the EOF again.
        t.pause_reading();
        t.resume_reading();
        net_passes(5).await;
        assert_eq!(s.names(), ["made", "eof"]);
        t.write(b"still open").unwrap();
        assert_eq!(net_read_exact(&l, &c, 10).await, b"still open");
        t.close();
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "eof", "lost"]);
        server.close();
    })
    .unwrap();
}

// ------------------------------------------------------------ connection_lost exactly once

/// After `connection_lost`, more close/abort calls and a few passes must
/// not call it again.
async fn assert_lost_once(s: &ConnState) {
    let t = s.transport();
    t.close();
    t.abort();
    net_passes(5).await;
    assert_eq!(s.lost().len(), 1, "{:?}", s.names());
    assert_eq!(s.names().last(), Some(&"lost"));
}

#[test]
fn connection_lost_once_when_the_peer_closes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        drop(c);
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "eof", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
        assert_lost_once(&s).await;
    })
    .unwrap();
}

#[test]
fn connection_lost_once_on_close() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        t.write(b"last words").unwrap();
        t.close();
        assert!(t.is_closing());
        assert!(!t.is_reading());
        // Never called from inside the transport method.
        assert!(!s.is_lost());
        s.until_lost().await;
        assert!(matches!(s.lost()[..], [None]));
        let (got, err) = net_read_to_end(&l, &c).await;
        assert_eq!(got, b"last words");
        assert!(err.is_none());
        assert_lost_once(&s).await;
        assert_eq!(s.names(), ["made", "lost"]);
    })
    .unwrap();
}

#[test]
fn connection_lost_once_on_abort_and_buffered_data_is_dropped() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        let big = pattern(10 * MIB);
        t.write(&big).unwrap();
        assert!(t.get_write_buffer_size() > 0, "10 MiB cannot all fit in the socket");
        t.abort();
        assert!(t.is_closing());
        assert_eq!(t.get_write_buffer_size(), 0, "abort drops the buffer");
        assert!(!s.is_lost());
        s.until_lost().await;
        assert!(matches!(s.lost()[..], [None]));
        let (got, _) = net_read_to_end(&l, &c).await;
        assert!(got.len() < big.len());
        assert_eq!(got[..], big[..got.len()]);
        assert!(is_invalid_state(&t.write(b"x")));
        assert_lost_once(&s).await;
        assert_eq!(s.names(), ["made", "pause", "lost"]);
    })
    .unwrap();
}

#[test]
fn connection_lost_once_with_connection_reset() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::echo).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 1).await, b"x");
        // SO_LINGER 0: close sends RST instead of FIN.
        c.set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        s.until_lost().await;
        let lost = s.lost();
        match &lost[..] {
            [Some(e)] => assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionReset), "{e}"),
            other => panic!("expected one connection_lost(Some(reset)), got {other:?}"),
        }
        assert_eq!(s.names(), ["made", "data", "lost"]);
        assert!(s.transport().is_closing());
        assert_lost_once(&s).await;
    })
    .unwrap();
}

// ------------------------------------------------------------ flow control

#[test]
fn write_flow_control_pauses_above_high_and_resumes_at_low_water() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        assert_eq!(t.get_write_buffer_limits(), (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER));
        assert_eq!((DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER), (16 * 1024, 64 * 1024));
        let all = pattern(10 * MIB);
        // The peer does not read while we write.
        for chunk in all.chunks(64 * 1024) {
            let before = s.names();
            t.write(chunk).unwrap();
            let size = t.get_write_buffer_size();
            let paused = s.names().contains(&"pause");
            if !before.contains(&"pause") {
                // pause_writing exactly when the buffer first goes over
                // the high-water mark, inside `write`.
                assert_eq!(paused, size > DEFAULT_HIGH_WATER, "buffer {size}, events {:?}", s.names());
            }
        }
        assert!(t.get_write_buffer_size() > DEFAULT_HIGH_WATER);
        assert_eq!(s.names(), ["made", "pause"]);
        // Now read: the buffer drains, resume_writing comes at the low mark.
        let got = net_read_exact(&l, &c, all.len()).await;
        assert!(got == all, "bytes lost, doubled or reordered");
        s.until("resume", |s| s.names().contains(&"resume")).await;
        assert_eq!(t.get_write_buffer_size(), 0);
        assert_eq!(s.names(), ["made", "pause", "resume"]);
        for ev in s.events() {
            match ev {
                NetEv::PauseWriting(size) => assert!(size > DEFAULT_HIGH_WATER, "paused at {size}"),
                NetEv::ResumeWriting(size) => assert!(size <= DEFAULT_LOW_WATER, "resumed at {size}"),
                _ => {}
            }
        }
        t.close();
        s.until_lost().await;
    })
    .unwrap();
}

#[test]
fn set_write_buffer_limits_pauses_and_resumes_at_once() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        assert!(is_invalid_state(&t.set_write_buffer_limits(Some(10), Some(20))));
        t.set_write_buffer_limits(Some(4000), None).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (1000, 4000));
        t.set_write_buffer_limits(None, Some(1000)).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (1000, 4000));
        let all = pattern(8 * MIB);
        t.write(&all).unwrap();
        let buffered = t.get_write_buffer_size();
        assert!(buffered > 4000);
        assert_eq!(s.names(), ["made", "pause"]);
        // Raising the high-water mark above the buffer resumes at once.
        t.set_write_buffer_limits(Some(buffered + 1), Some(buffered)).unwrap();
        assert_eq!(s.names(), ["made", "pause", "resume"]);
        // And lowering it pauses again.
        t.set_write_buffer_limits(None, None).unwrap();
        assert_eq!(s.names(), ["made", "pause", "resume", "pause"]);
        let got = net_read_exact(&l, &c, all.len()).await;
        assert!(got == all);
        s.until("resume", |s| s.names().len() == 5).await;
        assert_eq!(s.names(), ["made", "pause", "resume", "pause", "resume"]);
    })
    .unwrap();
}

// ------------------------------------------------------------ buffered protocol

struct BufEcho {
    t: Option<Transport>,
    buf: Vec<u8>,
    hints: Rc<RefCell<Vec<usize>>>,
    updated: Rc<RefCell<Vec<usize>>>,
    lost: Rc<RefCell<Vec<Option<Error>>>>,
}

impl BufferedProtocol for BufEcho {
    fn connection_made(&mut self, transport: &Transport) {
        self.t = Some(transport.clone());
    }
    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8] {
        self.hints.borrow_mut().push(size_hint);
        &mut self.buf
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.updated.borrow_mut().push(nbytes);
        self.t.as_ref().unwrap().write(&self.buf[..nbytes]).unwrap();
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.lost.borrow_mut().push(error);
    }
}

/// The client side: a buffered protocol collecting what arrives.
struct BufCollect {
    buf: [u8; 777],
    got: Rc<RefCell<Vec<u8>>>,
    changed: evloop::sync::Event,
}

impl BufferedProtocol for BufCollect {
    fn get_buffer(&mut self, _: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.got.borrow_mut().extend_from_slice(&self.buf[..nbytes]);
        self.changed.set();
    }
}

#[test]
fn buffered_protocol_echo() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let hints = Rc::new(RefCell::new(Vec::new()));
        let updated = Rc::new(RefCell::new(Vec::new()));
        let lost = Rc::new(RefCell::new(Vec::new()));
        let (h, u, lo) = (hints.clone(), updated.clone(), lost.clone());
        let server = l
            .create_server(
                move || {
                    Buffered(BufEcho {
                        t: None,
                        buf: vec![0; 1000],
                        hints: h.clone(),
                        updated: u.clone(),
                        lost: lo.clone(),
                    })
                },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let changed = evloop::sync::Event::new();
        let (g, ch) = (got.clone(), changed.clone());
        let (t, proto) = l
            .create_connection(
                move || Buffered(BufCollect { buf: [0; 777], got: g, changed: ch }),
                "127.0.0.1",
                addr.port(),
                Default::default(),
            )
            .await
            .unwrap();
        let data = pattern(300 * 1024);
        t.write(&data).unwrap();
        while got.borrow().len() < data.len() {
            changed.clear();
            within("echo", changed.wait()).await;
        }
        assert!(*got.borrow() == data);
        assert!(*proto.borrow().0.got.borrow() == data);
        assert!(!hints.borrow().is_empty() && hints.borrow().iter().all(|&h| h > 0));
        assert!(updated.borrow().iter().all(|&n| n > 0 && n <= 1000));
        assert_eq!(updated.borrow().iter().sum::<usize>(), data.len());
        assert!(updated.borrow().len() >= data.len() / 1000);
        t.close();
        while lost.borrow().is_empty() {
            within("server side connection_lost", evloop::yield_now()).await;
        }
        assert!(matches!(lost.borrow()[..], [None]));
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

// ------------------------------------------------------------ pause_reading

#[test]
fn pause_reading_stops_data_received_until_resume_reading() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"first").await.unwrap();
        s.until_data(5).await;
        let t = s.transport();
        assert!(t.is_reading());
        t.pause_reading();
        t.pause_reading(); // no-op
        assert!(!t.is_reading());
        let more = pattern(32 * 1024);
        l.sock_sendall(&c, &more).await.unwrap();
        // Wait until the bytes are in the server socket's receive queue, so
        // the fd is readable for the passes that follow.
        while unread_bytes(t.fd()) < more.len() {
            within("bytes in flight", evloop::yield_now()).await;
        }
        net_passes(10).await;
        assert_eq!(s.data(), b"first", "data_received while paused");
        assert_eq!(unread_bytes(t.fd()), more.len());
        t.resume_reading();
        assert!(t.is_reading());
        s.until_data(5 + more.len()).await;
        let mut want = b"first".to_vec();
        want.extend_from_slice(&more);
        assert!(s.data() == want);
        t.close();
        s.until_lost().await;
    })
    .unwrap();
}

// ------------------------------------------------------------ close inside data_received

#[test]
fn close_inside_data_received_flushes_buffered_writes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.on_data = Some(Box::new(|t, _| {
                t.write(&pattern(MIB)).unwrap();
                t.close();
                assert!(matches!(t.write(b"late"), Err(Error::InvalidState(_))));
            }));
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"request").await.unwrap();
        let (got, err) = net_read_to_end(&l, &c).await;
        assert!(err.is_none(), "{err:?}");
        assert!(got == pattern(MIB), "got {} bytes", got.len());
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
        assert_lost_once(&s).await;
    })
    .unwrap();
}

#[test]
fn close_inside_data_received_stops_data_received() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.on_data = Some(Box::new(|t, _| t.close()));
            (p, s)
        })
        .await;
        let c = Rc::new(net_connect(&l, &sockaddr(addr)).await);
        let s = within("accept", conns.get()).await;
        // More than one read's worth: data is still coming after close().
        let sender = {
            let (l, c) = (l.clone(), c.clone());
            evloop::spawn(async move {
                let _ = l.sock_sendall(&*c, &pattern(4 * MIB)).await;
            })
        };
        s.until_lost().await;
        net_passes(5).await;
        assert_eq!(s.data_calls(), 1, "data_received after close()");
        assert_eq!(s.names(), ["made", "data", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
        sender.cancel();
    })
    .unwrap();
}

// ------------------------------------------------------------ invalid writes, write_eof

#[test]
fn write_after_close_or_write_eof_is_invalid_state() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            (p, s)
        })
        .await;

        // write_eof: a half-close; the peer sees EOF and may still send.
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        assert!(t.can_write_eof());
        t.write(b"before eof").unwrap();
        t.write_eof();
        t.write_eof(); // idempotent
        assert!(is_invalid_state(&t.write(b"x")));
        assert!(is_invalid_state(&t.writelines([b"a".as_slice(), b"b"])));
        assert!(!t.is_closing());
        let (got, err) = net_read_to_end(&l, &c).await;
        assert_eq!(got, b"before eof");
        assert!(err.is_none());
        l.sock_sendall(&c, b"still talking").await.unwrap();
        s.until_data(13).await;
        assert_eq!(s.data(), b"still talking");
        drop(c);
        s.until("eof", |s| s.names().contains(&"eof")).await;
        t.close();
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "eof", "lost"]);

        // close: writes are refused at once.
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let t = s.transport();
        t.writelines([b"one ".as_slice(), b"two"]).unwrap();
        t.close();
        assert!(is_invalid_state(&t.write(b"x")));
        assert!(t.write(b"").is_err());
        s.until_lost().await;
        assert!(is_invalid_state(&t.write(b"x")));
        let (got, _) = net_read_to_end(&l, &c).await;
        assert_eq!(got, b"one two");
    })
    .unwrap();
}

// ------------------------------------------------------------ re-entrancy

/// Calls a bit of everything on the transport.
fn poke(t: &Transport) {
    let _ = t.get_write_buffer_size();
    let _ = t.get_write_buffer_limits();
    let _ = t.is_closing();
    let _ = t.is_reading();
    let _ = t.peer_addr();
    let _ = t.local_addr();
    let _ = t.get_loop().stats();
}

#[test]
fn transport_methods_from_inside_every_callback() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let lost_writes = Rc::new(RefCell::new(Vec::new()));
        let lw = lost_writes.clone();
        let (_server, addr, conns) = net_rec_server(&l, move || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            p.on_made = Some(Box::new(|t| {
                poke(t);
                t.set_write_buffer_limits(Some(1 << 20), None).unwrap();
                t.pause_reading();
                t.resume_reading();
                t.write(b"made;").unwrap();
            }));
            p.on_data = Some(Box::new(|t, _| {
                poke(t);
                t.pause_reading();
                t.resume_reading();
                // Over the high-water mark: pause_writing is deferred until
                // this method returns.
                t.set_write_buffer_limits(None, None).unwrap();
                // (More than the kernel's socket buffers take at once.)
                t.write(&pattern(16 * MIB)).unwrap();
                t.writelines([b";".as_slice()]).unwrap();
            }));
            p.on_pause = Some(Box::new(|t| {
                poke(t);
                t.write(b"p;").unwrap();
                // Resumes: resume_writing is deferred until pause returns.
                t.set_write_buffer_limits(Some(1 << 30), None).unwrap();
                t.pause_reading();
                t.resume_reading();
            }));
            p.on_resume = Some(Box::new(|t| {
                poke(t);
                t.write(b"r;").unwrap();
            }));
            p.on_eof = Some(Box::new(|t| {
                poke(t);
                t.write(b"bye").unwrap();
                t.pause_reading();
                t.resume_reading();
                t.close();
                t.close();
            }));
            let lw = lw.clone();
            p.on_lost = Some(Box::new(move |t| {
                poke(t);
                lw.borrow_mut().push(t.write(b"x").is_err());
                t.pause_reading();
                t.resume_reading();
                t.set_write_buffer_limits(Some(5), Some(1)).unwrap();
                t.write_eof();
                t.close();
                t.abort();
            }));
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"go").await.unwrap();
        s.until_data(2).await;
        c.shutdown(Shutdown::Write).unwrap();
        let (got, err) = net_read_to_end(&l, &c).await;
        assert!(err.is_none(), "{err:?}");
        let mut want = b"made;".to_vec();
        want.extend_from_slice(&pattern(16 * MIB));
        want.extend_from_slice(b";p;r;bye");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "wrong bytes or order");
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "pause", "resume", "eof", "lost"]);
        assert!(matches!(s.lost()[..], [None]), "{:?}", s.lost());
        assert_eq!(*lost_writes.borrow(), [true]);
        assert_lost_once(&s).await;
    })
    .unwrap();
}

#[test]
fn abort_inside_data_received_and_close_inside_pause_writing() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let n = Rc::new(Cell::new(0));
        let (_server, addr, conns) = net_rec_server(&l, move || {
            let (mut p, s) = RecProto::new();
            n.set(n.get() + 1);
            if n.get() == 1 {
                p.on_data = Some(Box::new(|t, _| {
                    t.write(b"dropped?").unwrap();
                    t.abort();
                    assert!(t.write(b"x").is_err());
                    t.close();
                    t.pause_reading();
                    t.resume_reading();
                }));
            } else {
                p.on_data = Some(Box::new(|t, _| t.write(&pattern(16 * MIB)).unwrap()));
                p.on_pause = Some(Box::new(|t| {
                    t.write(b"end").unwrap();
                    t.close();
                }));
            }
            (p, s)
        })
        .await;

        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
        assert_lost_once(&s).await;

        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        let (got, err) = net_read_to_end(&l, &c).await;
        assert!(err.is_none());
        let mut want = pattern(16 * MIB);
        want.extend_from_slice(b"end");
        assert!(got == want);
        s.until_lost().await;
        // As in asyncio, the buffer draining while closing still resumes.
        assert_eq!(s.names(), ["made", "data", "pause", "resume", "lost"]);
        assert!(matches!(s.lost()[..], [None]));
    })
    .unwrap();
}

#[test]
fn close_inside_resume_writing_after_writing_more_flushes_everything() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.on_made = Some(Box::new(|t| {
                // Low-water mark 0: resume_writing comes when the buffer is
                // empty, from the writer callback that emptied it.
                t.set_write_buffer_limits(Some(64 * 1024), Some(0)).unwrap();
                t.write(&pattern(16 * MIB)).unwrap();
            }));
            let mut resumed = false;
            p.on_resume = Some(Box::new(move |t| {
                if !resumed {
                    resumed = true;
                    // A sender's last chunk, then close: asyncio's
                    // "may append to buffer" case.
                    t.write(&pattern(16 * MIB)).unwrap();
                    t.close();
                }
            }));
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        let (got, err) = net_read_to_end(&l, &c).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 32 * MIB, "the data written in resume_writing was dropped");
        let mut want = pattern(16 * MIB);
        want.extend_from_slice(&pattern(16 * MIB));
        assert!(got == want);
        s.until_lost().await;
        assert!(matches!(s.lost()[..], [None]), "{:?}", s.lost());
    })
    .unwrap();
}

#[test]
fn write_eof_inside_resume_writing_after_writing_more_flushes_first() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            p.on_made = Some(Box::new(|t| {
                t.set_write_buffer_limits(Some(64 * 1024), Some(0)).unwrap();
                t.write(&pattern(16 * MIB)).unwrap();
            }));
            let mut resumed = false;
            p.on_resume = Some(Box::new(move |t| {
                if !resumed {
                    resumed = true;
                    t.write(&pattern(16 * MIB)).unwrap();
                    t.write_eof();
                }
            }));
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        let (got, err) = net_read_to_end(&l, &c).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 32 * MIB, "write_eof cut off data written before it");
        // Half-closed, not closed: the peer can still talk to us.
        l.sock_sendall(&c, b"reply").await.unwrap();
        s.until_data(5).await;
        assert!(!s.is_lost(), "{:?}", s.lost());
        s.transport().close();
        s.until_lost().await;
        assert!(matches!(s.lost()[..], [None]), "{:?}", s.lost());
    })
    .unwrap();
}

#[test]
fn close_or_abort_inside_connection_made() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        for abort in [false, true] {
            let (server, addr, conns) = net_rec_server(&l, RecProto::new).await;
            let (t, proto) = l
                .create_connection(
                    move || {
                        let (mut p, _) = RecProto::new();
                        p.on_made = Some(Box::new(move |t| {
                            t.write(b"hello and goodbye").unwrap();
                            if abort {
                                t.abort()
                            } else {
                                t.close()
                            }
                            assert!(t.write(b"x").is_err());
                        }));
                        p
                    },
                    "127.0.0.1",
                    addr.port(),
                    Default::default(),
                )
                .await
                .expect("create_connection returns even if connection_made closed the transport");
            let cs = proto.borrow().state.clone();
            assert!(t.is_closing());
            cs.until_lost().await;
            assert_eq!(cs.names(), ["made", "lost"]);
            assert!(matches!(cs.lost()[..], [None]));
            let ss = within("accept", conns.get()).await;
            ss.until_lost().await;
            if !abort {
                assert_eq!(ss.data(), b"hello and goodbye");
            }
            server.close();
        }
    })
    .unwrap();
}

#[test]
fn cancelling_create_connection_does_not_leak_the_connection() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let slot: Rc<RefCell<Option<evloop::Task<()>>>> = Rc::default();
        let client_state: Rc<RefCell<Option<Rc<ConnState>>>> = Rc::default();
        let task = {
            let (l, slot, cs) = (l.clone(), slot.clone(), client_state.clone());
            evloop::spawn(async move {
                let made = l
                    .create_connection(
                        move || {
                            // The connection is up and the transport about to
                            // start: cancel the caller now.
                            slot.borrow().as_ref().unwrap().cancel();
                            let (p, s) = RecProto::new();
                            *cs.borrow_mut() = Some(s);
                            p
                        },
                        "127.0.0.1",
                        addr.port(),
                        Default::default(),
                    )
                    .await;
                panic!("create_connection returned after its task was cancelled: {:?}", made.map(|(t, _)| t));
            })
        };
        *slot.borrow_mut() = Some(task.clone());
        let ss = within("accept", conns.get()).await;
        while !task.done() {
            within("cancellation", evloop::yield_now()).await;
        }
        assert!(task.cancelled());
        // Nobody holds the transport: it must be closed, not left open.
        let cs = client_state.borrow().clone().expect("the factory ran");
        cs.until_lost().await;
        ss.until_lost().await;
        assert!(matches!(cs.lost()[..], [None]));
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

struct EmptyBuffer {
    lost: Rc<RefCell<Vec<Option<Error>>>>,
    eof: Rc<Cell<bool>>,
}

impl BufferedProtocol for EmptyBuffer {
    fn get_buffer(&mut self, _: usize) -> &mut [u8] {
        &mut []
    }
    fn buffer_updated(&mut self, _: usize) {}
    fn eof_received(&mut self) -> bool {
        self.eof.set(true);
        false
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.lost.borrow_mut().push(error);
    }
}

#[test]
fn an_empty_buffer_from_get_buffer_is_an_error_not_an_eof() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let lost = Rc::new(RefCell::new(Vec::new()));
        let eof = Rc::new(Cell::new(false));
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (lo, e) = (lost.clone(), eof.clone());
        let (_t, _) =
            l.connect_accepted_socket(move || Buffered(EmptyBuffer { lost: lo, eof: e }), a).await.unwrap();
        use std::io::Write;
        (&b).write_all(b"data").unwrap();
        while lost.borrow().is_empty() {
            within("connection_lost", evloop::yield_now()).await;
        }
        assert!(!eof.get(), "the peer never sent EOF");
        assert!(matches!(lost.borrow()[..], [Some(_)]), "{:?}", lost.borrow());
    })
    .unwrap();
}

// ------------------------------------------------------------ panics

#[test]
fn panicking_data_received_closes_the_transport_and_the_loop_goes_on() {
    let lp = new_loop();
    let seen = capture_exceptions(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let n = Rc::new(Cell::new(0));
        let (server, addr, conns) = net_rec_server(&l, move || {
            n.set(n.get() + 1);
            if n.get() == 1 {
                let (mut p, s) = RecProto::new();
                p.on_data = Some(Box::new(|_, _| panic!("boom in data_received")));
                (p, s)
            } else {
                RecProto::echo()
            }
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        s.until_lost().await;
        match &s.lost()[..] {
            [Some(Error::Panicked(msg))] => assert!(msg.contains("boom in data_received"), "{msg}"),
            other => panic!("expected connection_lost(Some(Panicked)), got {other:?}"),
        }
        assert!(s.transport().is_closing());
        {
            let seen = seen.borrow();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(
                matches!(&seen[0].error, Some(Error::Panicked(m)) if m.contains("boom")),
                "{:?}",
                seen[0]
            );
        }
        // The peer sees the connection end.
        let (_, _) = net_read_to_end(&l, &c).await;
        // The server and the loop still work.
        let c2 = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c2, b"still alive").await.unwrap();
        assert_eq!(net_read_exact(&l, &c2, 11).await, b"still alive");
        assert_eq!(seen.borrow().len(), 1);
        server.close();
    })
    .unwrap();
}

// ------------------------------------------------------------ many connections

#[test]
fn a_thousand_concurrent_connections_echo() {
    raise_fd_limit();
    let _dog = Watchdog::new("a_thousand_concurrent_connections_echo", Duration::from_secs(120));
    const N: usize = 1000;
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let made = NetCounter::new();
        let m = made.clone();
        let factory = move || {
            m.add();
            RecProto::echo().0
        };
        let opts = ServerOptions { backlog: 1024, ..Default::default() };
        let server = l.create_server(factory, "127.0.0.1", 0, opts).await.unwrap();
        let addr = sockaddr(server.local_addr().unwrap());
        let all_connected = evloop::sync::Event::new();
        let clients = (0..N).map(|i| {
            let (l, addr, all_connected) = (l.clone(), addr.clone(), all_connected.clone());
            async move {
                let c = net_connect(&l, &addr).await;
                // Everyone holds the connection open until all are up.
                all_connected.wait().await;
                let msg: Vec<u8> = format!("client {i} says {}", "hi ".repeat(i % 50)).into_bytes();
                l.sock_sendall(&c, &msg).await.unwrap();
                let back = net_read_exact(&l, &c, msg.len()).await;
                assert_eq!(back, msg);
                Ok(i)
            }
        });
        let waiter = {
            let (made, all_connected) = (made.clone(), all_connected.clone());
            evloop::spawn(async move {
                made.until(N).await;
                all_connected.set();
            })
        };
        let done = within("1000 echoes", evloop::gather(clients)).await.unwrap();
        assert_eq!(done, (0..N).collect::<Vec<_>>());
        waiter.await.unwrap();
        assert_eq!(made.get(), N);
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

/// A server-side echo counting lost connections.
struct CountEcho {
    t: Option<Transport>,
    lost: NetCounter,
}

impl Protocol for CountEcho {
    fn connection_made(&mut self, t: &Transport) {
        self.t = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.t.as_ref().unwrap().write(data).unwrap();
    }
    fn connection_lost(&mut self, _: Option<Error>) {
        self.lost.add();
    }
}

/// A client that sends one byte, closes when it is echoed, and says when it
/// is gone.
struct OneShot {
    lost: NetCounter,
    t: Option<Transport>,
}

impl Protocol for OneShot {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"y").unwrap();
        self.t = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        assert_eq!(data, b"y");
        self.t.as_ref().unwrap().close();
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        assert!(error.is_none(), "{error:?}");
        self.lost.add();
    }
}

#[test]
fn ten_thousand_connect_close_cycles_leave_the_fd_count_unchanged() {
    const NAME: &str = "ten_thousand_connect_close_cycles_leave_the_fd_count_unchanged";
    const MARKER: &str = "FD-CYCLES-CHILD-DONE";
    // Counting the process's fds needs a process with no other tests.
    if !run_test_in_child(NAME, "EVLOOP_TEST_FD_CYCLES_CHILD", MARKER) {
        return;
    }
    let _dog = Watchdog::new(NAME, Duration::from_secs(300));
    const CYCLES: usize = 10_000;
    const BATCH: usize = 100;
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let fds_at_start = open_fd_count();
        let server_lost = NetCounter::new();
        let sl = server_lost.clone();
        let server = l
            .create_server(
                move || CountEcho { t: None, lost: sl.clone() },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let addr = sockaddr(server.local_addr().unwrap());
        let fds_with_server = open_fd_count();
        assert_eq!(fds_with_server, fds_at_start + 1);
        for batch in 0..CYCLES / BATCH {
            let cycles = (0..BATCH).map(|i| {
                let (l, addr) = (l.clone(), addr.clone());
                async move {
                    if i % 2 == 0 {
                        // sock_* client.
                        let c = net_connect(&l, &addr).await;
                        l.sock_sendall(&c, b"x").await.unwrap();
                        assert_eq!(net_read_exact(&l, &c, 1).await, b"x");
                    } else {
                        // Transport client.
                        let lost = NetCounter::new();
                        let lo = lost.clone();
                        let (t, _) = l
                            .create_connection(
                                move || OneShot { lost: lo, t: None },
                                "127.0.0.1",
                                port,
                                Default::default(),
                            )
                            .await
                            .unwrap();
                        lost.until(1).await;
                        assert!(t.is_closing());
                    }
                    Ok(())
                }
            });
            within("a batch of cycles", evloop::gather(cycles)).await.unwrap();
            server_lost.until((batch + 1) * BATCH).await;
        }
        assert_eq!(server.connections(), 0);
        assert_eq!(open_fd_count(), fds_with_server, "fds leaked by {CYCLES} connect/close cycles");
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
        assert_eq!(open_fd_count(), fds_at_start, "fds leaked after server close");
        let stats = l.stats();
        assert_eq!((stats.readers, stats.writers), (0, 0));
    })
    .unwrap();
    println!("{MARKER}");
}

// ------------------------------------------------------------ owned fds

#[test]
fn add_reader_on_a_transport_fd_is_refused() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (_server, addr, conns) = net_rec_server(&l, RecProto::echo).await;
        let (t, client) = l
            .create_connection(|| RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
            .await
            .unwrap();
        let s = within("accept", conns.get()).await;
        let fd = t.fd();
        assert!(matches!(l.add_reader(fd, || panic!("must not run")), Err(Error::InvalidState(_))));
        assert!(matches!(l.add_writer(fd, || panic!("must not run")), Err(Error::InvalidState(_))));
        assert!(!l.remove_reader(fd));
        assert!(!l.remove_writer(fd));
        // The server side too.
        let sfd = {
            s.until("made", |s| !s.names().is_empty()).await;
            s.transport().fd()
        };
        assert!(matches!(l.add_reader(sfd, || {}), Err(Error::InvalidState(_))));
        assert!(!l.remove_reader(sfd));
        // The transports still work: the reader was not replaced or removed.
        t.write(b"echo me").unwrap();
        let cs = client.borrow().state.clone();
        cs.until_data(7).await;
        assert_eq!(cs.data(), b"echo me");
        t.close();
        cs.until_lost().await;
    })
    .unwrap();
}

// ------------------------------------------------------------ connecting

#[test]
fn connect_accepted_socket_with_a_std_tcp_stream() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (accepted, peer) = listener.accept().unwrap();
    assert!(!accepted.nonblocking_state());
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (t, proto) = l.connect_accepted_socket(|| RecProto::echo().0, accepted).await.unwrap();
        let s = proto.borrow().state.clone();
        assert_eq!(s.names(), ["made"], "connection_made has run when the call returns");
        assert_eq!(t.peer_addr(), Some(peer));
        assert_eq!(t.local_addr(), Some(addr));
        assert!(t.is_tcp());
        let c = Socket::from(client);
        c.set_nonblocking(true).unwrap();
        l.sock_sendall(&c, b"accepted elsewhere").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 18).await, b"accepted elsewhere");
        drop(c);
        s.until_lost().await;
        assert_eq!(s.names(), ["made", "data", "eof", "lost"]);
    })
    .unwrap();
}

trait NonblockingState {
    fn nonblocking_state(&self) -> bool;
}

impl NonblockingState for std::net::TcpStream {
    fn nonblocking_state(&self) -> bool {
        // SAFETY: F_GETFL on an fd the stream keeps open.
        let flags = unsafe { libc::fcntl(self.as_raw_fd(), libc::F_GETFL) };
        flags & libc::O_NONBLOCK != 0
    }
}

#[test]
fn create_connection_to_localhost_by_name_and_addresses() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::echo).await;
        let (t, client) = l
            .create_connection(|| RecProto::new().0, "localhost", addr.port(), Default::default())
            .await
            .unwrap();
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        let st = s.transport();
        // Addresses on both ends agree.
        assert_eq!(t.peer_addr(), Some(addr));
        assert_eq!(st.local_addr(), Some(addr));
        assert_eq!(st.peer_addr(), t.local_addr());
        assert!(t.local_addr().unwrap().ip().is_loopback());
        assert_eq!(t.peer_sockaddr().unwrap().as_socket(), Some(addr));
        assert!(t.is_tcp() && st.is_tcp());
        t.write(b"by name").unwrap();
        let cs = client.borrow().state.clone();
        cs.until_data(7).await;
        assert_eq!(cs.data(), b"by name");
        t.close();
        cs.until_lost().await;
        assert!(matches!(t.peer_sockaddr(), Err(Error::InvalidState(_))));
        assert_eq!(t.peer_addr(), None);
        server.close();
    })
    .unwrap();
}

#[test]
fn create_connection_to_a_closed_port_is_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let lp = new_loop();
    let l = lp.clone();
    let made = Rc::new(Cell::new(false));
    let m = made.clone();
    let result = lp
        .run_until_complete(async move {
            l.create_connection(
                move || {
                    m.set(true);
                    RecProto::new().0
                },
                "127.0.0.1",
                port,
                Default::default(),
            )
            .await
        })
        .unwrap();
    match result {
        Err(e) => assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionRefused), "{e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    assert!(!made.get(), "no protocol for a failed connection");
}

// ------------------------------------------------------------ SIGPIPE

/// Clears the socket's pending error (SO_ERROR), so that the next send
/// reports EPIPE (which raises SIGPIPE without MSG_NOSIGNAL) instead of
/// the stored ECONNRESET.
fn clear_so_error(fd: RawFd) {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `err`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn writing_to_a_closed_peer_never_raises_sigpipe() {
    const NAME: &str = "writing_to_a_closed_peer_never_raises_sigpipe";
    const MARKER: &str = "SIGPIPE-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_SIGPIPE_CHILD", MARKER) {
        return;
    }
    // SAFETY: restores the default disposition: a SIGPIPE now kills the
    // process (the Rust runtime ignores it by default).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let broken = |e: &Option<Error>| {
            matches!(
                e.as_ref().and_then(Error::io_kind),
                Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
            )
        };

        // TCP: the peer is gone; keep writing until the transport gives up.
        let (_server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.keep_open_on_eof = true;
            (p, s)
        })
        .await;
        let c = net_connect(&l, &sockaddr(addr)).await;
        let s = within("accept", conns.get()).await;
        s.until("made", |s| !s.names().is_empty()).await;
        drop(c);
        s.until("eof", |s| s.names().contains(&"eof")).await;
        let t = s.transport();
        let mut writes = 0;
        while !t.is_closing() {
            clear_so_error(t.fd());
            t.write(b"anyone there?").unwrap();
            writes += 1;
            assert!(writes < 10_000, "the transport never noticed the peer was gone");
            evloop::yield_now().await;
        }
        s.until_lost().await;
        assert!(matches!(&s.lost()[..], [e] if broken(e)), "{:?}", s.lost());

        // Unix: EPIPE at once.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (t, proto) = l.connect_accepted_socket(|| RecProto::new().0, a).await.unwrap();
        let s = proto.borrow().state.clone();
        drop(b);
        while !t.is_closing() {
            t.write(b"anyone there?").unwrap();
            evloop::yield_now().await;
        }
        s.until_lost().await;
        assert!(matches!(&s.lost()[..], [e] if broken(e)), "{:?}", s.lost());

        // sock_sendall.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        drop(b);
        let e = l.sock_sendall(&a, b"anyone there?").await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::BrokenPipe), "{e}");
    })
    .unwrap();
    println!("{MARKER}");
}

#[test]
fn transports_of_both_ends_are_reported_as_tcp_and_unix() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (t, _) = l.connect_accepted_socket(|| RecProto::new().0, a).await.unwrap();
        assert!(!t.is_tcp());
        assert_eq!(t.peer_addr(), None);
        assert!(t.peer_sockaddr().unwrap().is_unix());
        t.abort();
    })
    .unwrap();
}

// ------------------------------------------------ nothing after connection_lost

#[test]
fn no_resume_writing_after_abort_with_writing_paused() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            // Never read, so the client's writes pile up.
            p.on_made = Some(Box::new(|t| t.pause_reading()));
            (p, s)
        })
        .await;
        let (t, proto) = l
            .create_connection(|| RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
            .await
            .unwrap();
        let cs = proto.borrow().state.clone();
        let _accepted = within("accept", conns.get()).await;
        t.set_write_buffer_limits(Some(1024), None).unwrap();
        t.write(&vec![7; 32 * MIB]).unwrap();
        assert_eq!(cs.names(), ["made", "pause"]);
        t.abort();
        // The buffer is empty now: before the fix this delivered
        // resume_writing, before and after connection_lost.
        t.set_write_buffer_limits(Some(16 * MIB), None).unwrap();
        cs.until_lost().await;
        t.set_write_buffer_limits(Some(1024), Some(0)).unwrap();
        t.set_write_buffer_limits(None, None).unwrap();
        net_passes(3).await;
        assert_eq!(cs.names(), ["made", "pause", "lost"]);
        server.close();
    })
    .unwrap();
}

#[test]
fn a_pause_writing_deferred_by_a_panicking_method_is_never_delivered() {
    let lp = new_loop();
    let seen = capture_exceptions(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.on_data = Some(Box::new(|t, _| {
                // Past the high-water mark inside data_received: the
                // pause waits for the method to return, which it never does.
                t.write(&vec![1; 32 * MIB]).unwrap();
                panic!("after the write");
            }));
            (p, s)
        })
        .await;
        // A client that never reads.
        let client = util::net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&client, b"go").await.unwrap();
        let ss = within("accept", conns.get()).await;
        ss.until_lost().await;
        net_passes(3).await;
        assert_eq!(ss.names(), ["made", "data", "lost"]);
        assert!(matches!(ss.lost()[..], [Some(Error::Panicked(_))]), "{:?}", ss.lost());
        server.close();
    })
    .unwrap();
    assert_eq!(seen.borrow().len(), 1, "the panic was reported once");
}

#[test]
fn writelines_of_nothing_after_close_or_write_eof_errors_like_write() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, _conns) = net_rec_server(&l, RecProto::new).await;
        for eof in [false, true] {
            let (t, _p) = l
                .create_connection(|| RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
                .await
                .unwrap();
            assert!(t.writelines(Vec::<Vec<u8>>::new()).is_ok(), "nothing to write on an open transport");
            if eof {
                t.write_eof();
            } else {
                t.close();
            }
            assert!(matches!(t.write(b""), Err(Error::InvalidState(_))));
            assert!(matches!(t.writelines(Vec::<Vec<u8>>::new()), Err(Error::InvalidState(_))));
            t.close();
        }
        server.close();
    })
    .unwrap();
}

#[test]
fn a_pause_raised_while_the_caller_borrows_the_protocol_comes_on_the_next_pass() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, || {
            let (mut p, s) = RecProto::new();
            p.on_made = Some(Box::new(|t| t.pause_reading()));
            (p, s)
        })
        .await;
        let (t, proto) = l
            .create_connection(|| RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
            .await
            .unwrap();
        let _accepted = within("accept", conns.get()).await;
        let cs = {
            // Borrowed outside any protocol method: before, the transport
            // called pause_writing through this borrow, panicked, and
            // closed the connection.
            let borrowed = proto.borrow_mut();
            t.write(&vec![3; 32 * MIB]).unwrap();
            borrowed.state.clone()
        };
        assert_eq!(cs.names(), ["made"], "not delivered through the borrow");
        net_passes(2).await;
        assert_eq!(cs.names(), ["made", "pause"]);
        assert!(!t.is_closing());
        t.abort();
        cs.until_lost().await;
        assert!(matches!(cs.lost()[..], [None]));
        server.close();
    })
    .unwrap();
}

// ------------------------------------------------------------ read sizes

/// Records the size of every `buffer_updated`, reading into 100 bytes.
struct SmallBuffer {
    buf: [u8; 100],
    sizes: Rc<RefCell<Vec<usize>>>,
}

impl BufferedProtocol for SmallBuffer {
    fn get_buffer(&mut self, _: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.sizes.borrow_mut().push(nbytes);
    }
}

/// A receive that fills the protocol's buffer is followed by another in
/// the same pass (fewer polls for a bulk transfer), at most 4 per
/// readiness event so one busy connection cannot hold the loop; a receive
/// that does not fill it ends the pass's reading.
#[test]
fn a_full_buffer_is_read_again_in_the_same_pass_up_to_four_times() {
    let lp = util::manual_loop();
    let _errors = fail_on_callback_errors(&lp);
    let sizes = Rc::new(RefCell::new(Vec::new()));
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (l, s) = (lp.clone(), sizes.clone());
    let (t, _) = lp
        .run_until_complete(async move {
            l.connect_accepted_socket(move || Buffered(SmallBuffer { buf: [0; 100], sizes: s }), a).await
        })
        .unwrap()
        .unwrap();
    use std::io::Write;
    (&b).write_all(&[7; 450]).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*sizes.borrow(), [100; 4], "four full reads in one pass");
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*sizes.borrow(), [100, 100, 100, 100, 50]);
    (&b).write_all(&[7; 30]).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(sizes.borrow().len(), 6);
    assert_eq!(sizes.borrow()[5], 30);
    t.close();
    lp.run_until_idle().unwrap();
}

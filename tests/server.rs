//! Servers: close and wait_closed, closing and aborting clients,
//! serve_forever, start_serving, SO_REUSEPORT, the EMFILE backoff, and
//! call order for connections cut before `connection_made`.

mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::net::{ACCEPT_RETRY_DELAY, ServerOptions, SockAddr, Socket};
use evloop::{Error, EventLoop, ExceptionContext};
use util::{
    NetCounter, RecProto, Watchdog, fail_on_callback_errors, fd_link, is_open_file, net_connect, net_passes,
    net_read_exact, net_read_to_end, net_rec_server, pattern, run_test_in_child, within,
};

const MIB: usize = 1024 * 1024;

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

fn sockaddr(addr: SocketAddr) -> SockAddr {
    addr.into()
}

/// Tries to connect to `addr`; the error kind if it fails.
async fn try_connect(lp: &EventLoop, addr: SocketAddr) -> Result<Socket, Option<io::ErrorKind>> {
    let s = Socket::new(evloop::net::Domain::IPV4, evloop::net::Type::STREAM, None).unwrap();
    s.set_nonblocking(true).unwrap();
    match lp.sock_connect(&s, &sockaddr(addr)).await {
        Ok(()) => Ok(s),
        Err(e) => Err(e.io_kind()),
    }
}

#[test]
fn close_and_wait_closed_wait_for_the_accepted_connections() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::echo).await;
        assert!(server.is_serving());
        assert_eq!(server.sockets().len(), 1);
        assert_eq!(server.sockets()[0].as_socket(), Some(addr));
        let c1 = net_connect(&l, &sockaddr(addr)).await;
        let c2 = net_connect(&l, &sockaddr(addr)).await;
        let s1 = within("accept 1", conns.get()).await;
        let s2 = within("accept 2", conns.get()).await;
        s1.until("made", |s| !s.names().is_empty()).await;
        s2.until("made", |s| !s.names().is_empty()).await;
        assert_eq!(server.connections(), 2);

        server.close();
        server.close(); // idempotent
        assert!(!server.is_serving());
        assert!(server.sockets().is_empty());
        assert_eq!(try_connect(&l, addr).await.err(), Some(Some(io::ErrorKind::ConnectionRefused)));

        let waiter = {
            let (server, s1, s2) = (server.clone(), s1.clone(), s2.clone());
            evloop::spawn(async move {
                server.wait_closed().await.unwrap();
                (server.connections(), s1.is_lost(), s2.is_lost())
            })
        };
        // Accepted connections are untouched by close().
        l.sock_sendall(&c1, b"still here").await.unwrap();
        assert_eq!(net_read_exact(&l, &c1, 10).await, b"still here");
        net_passes(5).await;
        assert!(!waiter.done());

        drop(c1);
        s1.until_lost().await;
        net_passes(5).await;
        assert!(!waiter.done(), "wait_closed returned with a connection still open");
        assert_eq!(server.connections(), 1);

        drop(c2);
        s2.until_lost().await;
        assert_eq!(within("wait_closed", waiter).await.unwrap(), (0, true, true));
        // Once closed, wait_closed returns at once.
        within("wait_closed again", server.wait_closed()).await.unwrap();
        assert!(matches!(server.serve_forever().await, Err(Error::InvalidState(_))));
    })
    .unwrap();
}

#[test]
fn wait_closed_before_close_waits_for_close() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, _addr, _conns) = net_rec_server(&l, RecProto::echo).await;
        let waiter = {
            let server = server.clone();
            evloop::spawn(async move { server.wait_closed().await })
        };
        net_passes(5).await;
        assert!(!waiter.done());
        server.close();
        within("wait_closed", waiter).await.unwrap().unwrap();
    })
    .unwrap();
}

#[test]
fn close_clients_flushes_and_closes_every_connection() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let clients = [net_connect(&l, &sockaddr(addr)).await, net_connect(&l, &sockaddr(addr)).await];
        let states = [within("accept", conns.get()).await, within("accept", conns.get()).await];
        let big = pattern(8 * MIB);
        for s in &states {
            s.until("made", |s| !s.names().is_empty()).await;
            s.transport().write(&big).unwrap();
            assert!(s.transport().get_write_buffer_size() > 0);
        }
        server.close_clients();
        for s in &states {
            assert!(s.transport().is_closing());
            assert!(!s.is_lost(), "close() waits for the buffer to drain");
        }
        assert!(server.is_serving(), "close_clients leaves the listener alone");
        for c in &clients {
            let (got, err) = net_read_to_end(&l, c).await;
            assert!(err.is_none(), "{err:?}");
            assert!(got == big, "the buffered data was not flushed");
        }
        for s in &states {
            s.until_lost().await;
            assert!(matches!(s.lost()[..], [None]));
        }
        assert_eq!(server.connections(), 0);
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

#[test]
fn abort_clients_drops_buffers_and_closes_every_connection() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, conns) = net_rec_server(&l, RecProto::new).await;
        let clients = [net_connect(&l, &sockaddr(addr)).await, net_connect(&l, &sockaddr(addr)).await];
        let states = [within("accept", conns.get()).await, within("accept", conns.get()).await];
        let big = pattern(16 * MIB);
        for s in &states {
            s.until("made", |s| !s.names().is_empty()).await;
            s.transport().write(&big).unwrap();
        }
        server.abort_clients();
        for s in &states {
            assert_eq!(s.transport().get_write_buffer_size(), 0);
            s.until_lost().await;
            assert!(matches!(s.lost()[..], [None]));
        }
        // Gone without the clients reading a byte.
        assert_eq!(server.connections(), 0);
        for c in &clients {
            let (got, _) = net_read_to_end(&l, c).await;
            assert!(got.len() < big.len());
        }
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

#[test]
fn serve_forever_ends_cancelled_when_the_server_is_closed_from_another_task() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let conns = util::ConnQueue::unbounded();
        let q = conns.clone();
        let opts = ServerOptions { start_serving: false, ..Default::default() };
        let server = l
            .create_server(
                move || {
                    let (p, s) = RecProto::echo();
                    q.put_nowait(s).ok().unwrap();
                    p
                },
                "127.0.0.1",
                0,
                opts,
            )
            .await
            .unwrap();
        assert!(!server.is_serving());
        let addr = server.local_addr().unwrap();
        let forever = {
            let server = server.clone();
            evloop::spawn(async move { server.serve_forever().await })
        };
        // serve_forever starts serving.
        let c = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c, b"served").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 6).await, b"served");
        assert!(server.is_serving());
        let s = within("accept", conns.get()).await;

        let closer = {
            let server = server.clone();
            evloop::spawn(async move { server.close() })
        };
        within("closer", closer).await.unwrap();
        assert!(!server.is_serving());
        // Like wait_closed, serve_forever returns once the connections are gone.
        net_passes(5).await;
        assert!(!forever.done());
        drop(c);
        s.until_lost().await;
        // asyncio: close() cancels serve_forever.
        let ended = within("serve_forever", forever).await.unwrap();
        assert!(matches!(ended, Err(evloop::Error::Cancelled)), "{ended:?}");

        // With no connection open it returns as soon as the server closes.
        let (server, _, _) = net_rec_server(&l, RecProto::echo).await;
        let forever = {
            let server = server.clone();
            evloop::spawn(async move { server.serve_forever().await })
        };
        net_passes(3).await;
        assert!(!forever.done());
        let closer = {
            let server = server.clone();
            evloop::spawn(async move { server.close() })
        };
        within("closer", closer).await.unwrap();
        let ended = within("serve_forever", forever).await.unwrap();
        assert!(matches!(ended, Err(evloop::Error::Cancelled)), "{ended:?}");
    })
    .unwrap();
}

#[test]
fn cancelling_serve_forever_closes_the_server() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, addr, _conns) = net_rec_server(&l, RecProto::echo).await;
        let forever = {
            let server = server.clone();
            evloop::spawn(async move { server.serve_forever().await })
        };
        let c = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 1).await, b"x");
        assert!(forever.cancel());
        net_passes(2).await;
        assert!(forever.cancelled());
        assert!(!server.is_serving());
        assert!(server.sockets().is_empty());
        assert_eq!(try_connect(&l, addr).await.err(), Some(Some(io::ErrorKind::ConnectionRefused)));
    })
    .unwrap();
}

#[test]
fn start_serving_false_accepts_nothing_until_start_serving() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let made = NetCounter::new();
        let m = made.clone();
        let opts = ServerOptions { start_serving: false, ..Default::default() };
        let server = l
            .create_server(
                move || {
                    m.add();
                    RecProto::echo().0
                },
                "127.0.0.1",
                0,
                opts,
            )
            .await
            .unwrap();
        assert!(!server.is_serving());
        let addr = server.local_addr().unwrap();
        // The kernel completes the handshake (the socket listens), but the
        // loop does not accept.
        let c = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c, b"waiting").await.unwrap();
        net_passes(10).await;
        assert_eq!(made.get(), 0);
        assert_eq!(server.connections(), 0);
        server.start_serving();
        server.start_serving(); // no-op
        assert!(server.is_serving());
        assert_eq!(net_read_exact(&l, &c, 7).await, b"waiting");
        assert_eq!(made.get(), 1);
        server.close();
        assert!(!server.is_serving());
        server.start_serving(); // closed: stays closed
        assert!(!server.is_serving());
    })
    .unwrap();
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (made_a, made_b) = (NetCounter::new(), NetCounter::new());
        let opts = ServerOptions { reuse_port: true, ..Default::default() };
        let m = made_a.clone();
        let a = l
            .create_server(
                move || {
                    m.add();
                    RecProto::echo().0
                },
                "127.0.0.1",
                0,
                opts.clone(),
            )
            .await
            .unwrap();
        let port = a.local_addr().unwrap().port();
        let m = made_b.clone();
        let b = l
            .create_server(
                move || {
                    m.add();
                    RecProto::echo().0
                },
                "127.0.0.1",
                port,
                opts,
            )
            .await
            .unwrap();
        assert_eq!(b.local_addr().unwrap().port(), port);
        // Without SO_REUSEPORT the port is taken.
        let third = l.create_server(|| RecProto::echo().0, "127.0.0.1", port, Default::default()).await;
        assert_eq!(third.err().and_then(|e| e.io_kind()), Some(io::ErrorKind::AddrInUse));

        let addr = a.local_addr().unwrap();
        const N: usize = 32;
        for i in 0..N {
            let c = net_connect(&l, &sockaddr(addr)).await;
            let msg = format!("client {i}");
            l.sock_sendall(&c, msg.as_bytes()).await.unwrap();
            assert_eq!(net_read_exact(&l, &c, msg.len()).await, msg.as_bytes());
        }
        assert_eq!(made_a.get() + made_b.get(), N);
        // With one closed, the other serves every connection.
        a.close();
        let before = made_b.get();
        for _ in 0..8 {
            let c = net_connect(&l, &sockaddr(addr)).await;
            l.sock_sendall(&c, b"b").await.unwrap();
            assert_eq!(net_read_exact(&l, &c, 1).await, b"b");
        }
        assert_eq!(made_b.get(), before + 8);
        b.close();
    })
    .unwrap();
}

// ------------------------------------------------------------ call order for early closes

#[test]
fn connections_closed_before_connection_made_keep_the_call_order() {
    let _dog = Watchdog::new(
        "connections_closed_before_connection_made_keep_the_call_order",
        Duration::from_secs(60),
    );
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    let (server, addr, conns) =
        lp.run_until_complete(async move { net_rec_server(&l, RecProto::new).await }).unwrap();
    for abort in [true, false] {
        let _client = std::net::TcpStream::connect(addr).unwrap();
        // One pass: the listener is readable, the connection is accepted
        // and connection_made is scheduled for the next pass.
        while server.connections() == 0 {
            lp.run_once(Some(Duration::from_secs(5))).unwrap();
        }
        if abort {
            server.abort_clients();
        } else {
            server.close_clients();
        }
        let conns = conns.clone();
        let s = lp
            .run_until_complete(async move {
                let s = within("accept", conns.get()).await;
                s.until_lost().await;
                s
            })
            .unwrap();
        assert_eq!(s.names(), ["made", "lost"], "abort={abort}");
        assert!(matches!(s.lost()[..], [None]));
        assert_eq!(server.connections(), 0);
    }
    server.close();
}

// ------------------------------------------------------------ failures

#[test]
fn a_panicking_protocol_factory_does_not_leak_a_connection() {
    let lp = new_loop();
    let seen: Rc<RefCell<Vec<ExceptionContext>>> = util::capture_exceptions(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let n = Rc::new(Cell::new(0));
        let (server, addr, _conns) = net_rec_server(&l, move || {
            n.set(n.get() + 1);
            assert!(n.get() != 1, "factory failure");
            RecProto::echo()
        })
        .await;
        let c1 = net_connect(&l, &sockaddr(addr)).await;
        // The failed connection is closed.
        let (got, _) = within("close of the failed connection", net_read_to_end(&l, &c1)).await;
        assert!(got.is_empty());
        assert_eq!(seen.borrow().len(), 1);
        assert!(
            matches!(&seen.borrow()[0].error, Some(Error::Panicked(m)) if m.contains("factory failure")),
            "{:?}",
            seen.borrow()
        );
        assert_eq!(server.connections(), 0);
        // The server goes on.
        let c2 = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c2, b"ok").await.unwrap();
        assert_eq!(net_read_exact(&l, &c2, 2).await, b"ok");
        drop(c2);
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

/// The fd of the listening socket bound to `addr`.
fn listener_fd(addr: SocketAddr) -> i32 {
    for fd in open_fds() {
        // SAFETY: the fd is open for the duration of this borrow (nothing
        // else runs in this single-test child process).
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&sock);
        let listening = sock.r#type().is_ok() && sock.is_listener().unwrap_or(false);
        if listening && sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr) {
            return fd;
        }
    }
    panic!("no listener on {addr}");
}

#[test]
fn dropping_a_server_without_close_unregisters_its_listener() {
    const NAME: &str = "dropping_a_server_without_close_unregisters_its_listener";
    const MARKER: &str = "DROP-SERVER-CHILD-DONE";
    // Reuses an fd number on purpose: no other test may run meanwhile.
    if !run_test_in_child(NAME, "EVLOOP_TEST_DROP_SERVER_CHILD", MARKER) {
        return;
    }
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let readers = l.stats().readers;
        let (server, addr, _conns) = net_rec_server(&l, RecProto::echo).await;
        assert_eq!(l.stats().readers, readers + 1);
        let fd = listener_fd(addr);
        drop(server);
        assert_eq!(try_connect(&l, addr).await.err(), Some(Some(io::ErrorKind::ConnectionRefused)));
        assert_eq!(l.stats().readers, readers, "the closed listener's reader is still registered");
        // A new socket on the same fd number is the user's to watch.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let copy = (probe.as_raw_fd() != fd).then(|| {
            // SAFETY: `fd` is free (the listener was closed) and nothing
            // else runs in this process; dup2 puts a copy of the probe there,
            // owned by the OwnedFd from now on.
            let reused = unsafe { libc::dup2(probe.as_raw_fd(), fd) };
            assert_eq!(reused, fd);
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
        });
        l.add_reader(fd, || {}).expect("add_reader on a reused fd number");
        assert!(l.remove_reader(fd));
        drop(copy);
    })
    .unwrap();
    println!("{MARKER}");
}

// ------------------------------------------------------------ EMFILE

/// The open fd numbers.
fn open_fds() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own fd is closed by now.
    // SAFETY: F_GETFD only queries the fd table.
    listed.into_iter().filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1).collect()
}

fn set_soft_fd_limit(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid, exclusively borrowed struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "{}", io::Error::last_os_error());
    }
}

#[test]
fn emfile_pauses_accepting_then_resumes() {
    const NAME: &str = "emfile_pauses_accepting_then_resumes";
    const MARKER: &str = "EMFILE-CHILD-DONE";
    // Lowering RLIMIT_NOFILE must not affect other tests.
    if !run_test_in_child(NAME, "EVLOOP_TEST_EMFILE_CHILD", MARKER) {
        return;
    }
    let _dog = Watchdog::new(NAME, Duration::from_secs(60));
    let lp = new_loop();
    let errors: Rc<RefCell<Vec<(Instant, ExceptionContext)>>> = Rc::default();
    let sink = errors.clone();
    let handler_called = evloop::sync::Event::new();
    let hc = handler_called.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        sink.borrow_mut().push((Instant::now(), ctx.clone()));
        hc.set();
    }));
    let l = lp.clone();
    lp.run_until_complete(async move {
        let made_at: Rc<RefCell<Vec<Instant>>> = Rc::default();
        let made = NetCounter::new();
        let lost = NetCounter::new();
        let (ma, m, lo) = (made_at.clone(), made.clone(), lost.clone());
        let server = l
            .create_server(
                move || {
                    ma.borrow_mut().push(Instant::now());
                    m.add();
                    let (mut p, s) = RecProto::echo();
                    let lo = lo.clone();
                    p.on_lost = Some(Box::new(move |_| lo.add()));
                    (p, s).0
                },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
            .unwrap();
        let addr = sockaddr(server.local_addr().unwrap());

        // An established client, echoing before and during the backoff.
        let existing = net_connect(&l, &addr).await;
        l.sock_sendall(&existing, b"before").await.unwrap();
        assert_eq!(net_read_exact(&l, &existing, 6).await, b"before");

        // Leave room for exactly `free` more fds: the limit goes just past
        // the second free fd number (open fds above the limit stay open).
        // Client sockets are made first: they must not compete with accept
        // for the last fds.
        let free = 2;
        let clients: Vec<Socket> = (0..free + 3)
            .map(|_| {
                let s = Socket::new(evloop::net::Domain::IPV4, evloop::net::Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        // For a second shortage later.
        let extra: Vec<Socket> = (0..8)
            .map(|_| {
                let s = Socket::new(evloop::net::Domain::IPV4, evloop::net::Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let open = open_fds();
        let limit = (0..).filter(|fd| !open.contains(fd)).nth(free - 1).unwrap() as u64 + 1;
        set_soft_fd_limit(limit);

        for c in &clients {
            l.sock_connect(c, &addr).await.unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            l.sock_sendall(c, &[i as u8]).await.unwrap();
        }
        within("the exception handler", handler_called.wait()).await;
        let emfile_at = {
            let errors = errors.borrow();
            assert_eq!(errors.len(), 1);
            let err = errors[0].1.error.as_ref().expect("an error");
            assert!(matches!(err, Error::Io(e) if e.raw_os_error() == Some(libc::EMFILE)), "{err:?}");
            errors[0].0
        };
        // Accepted until the fds ran out: the existing client and `free` more.
        made.until(1 + free).await;
        assert_eq!(server.connections(), 1 + free);

        // While accepting is paused, established connections are served.
        l.sock_sendall(&existing, b"during").await.unwrap();
        assert_eq!(net_read_exact(&l, &existing, 6).await, b"during");
        // The accepted clients echo too (FIFO accept: the first `free`).
        for (i, c) in clients.iter().enumerate().take(free) {
            assert_eq!(net_read_exact(&l, c, 1).await, [i as u8]);
        }
        assert!(emfile_at.elapsed() < ACCEPT_RETRY_DELAY, "the checks above took too long to mean anything");
        assert_eq!(made.get(), 1 + free, "accepted during the backoff");

        // Free fds: close the accepted clients (and the server's ends go).
        let mut clients = clients;
        let waiting = clients.split_off(free);
        drop(clients);
        lost.until(free).await;

        // Accepting resumes after ACCEPT_RETRY_DELAY; the rest are served.
        for (i, c) in waiting.iter().enumerate() {
            assert_eq!(within("echo after the backoff", net_read_exact(&l, c, 1)).await, [(free + i) as u8]);
        }
        let resumed_at = made_at.borrow()[1 + free];
        let paused = resumed_at.duration_since(emfile_at);
        assert!(paused >= ACCEPT_RETRY_DELAY, "resumed after {paused:?}");
        assert!(paused < ACCEPT_RETRY_DELAY + Duration::from_secs(5), "resumed after {paused:?}");
        assert_eq!(made.get(), 1 + free + waiting.len());
        assert_eq!(errors.borrow().len(), 1, "one report per backoff");
        l.sock_sendall(&existing, b"after").await.unwrap();
        assert_eq!(net_read_exact(&l, &existing, 5).await, b"after");

        // A second shortage: one more report and one more pause.
        let open = open_fds();
        let free2 = (0..limit as i32).filter(|fd| !open.contains(fd)).count();
        let extra = &extra[..free2 + 2];
        handler_called.clear();
        let base = made.get();
        for c in extra {
            l.sock_connect(c, &addr).await.unwrap();
        }
        for (i, c) in extra.iter().enumerate() {
            l.sock_sendall(c, &[100 + i as u8]).await.unwrap();
        }
        within("the exception handler again", handler_called.wait()).await;
        let second_at = {
            let errors = errors.borrow();
            assert_eq!(errors.len(), 2, "one report per backoff");
            errors[1].0
        };
        made.until(base + free2).await;
        for (i, c) in extra.iter().enumerate().take(free2) {
            assert_eq!(net_read_exact(&l, c, 1).await, [100 + i as u8]);
        }
        assert!(second_at.elapsed() < ACCEPT_RETRY_DELAY);
        assert_eq!(made.get(), base + free2);
        let lost_so_far = lost.get();
        let freed = waiting.len();
        drop(waiting);
        lost.until(lost_so_far + freed).await;
        for (i, c) in extra.iter().enumerate().skip(free2) {
            assert_eq!(
                within("echo after the second backoff", net_read_exact(&l, c, 1)).await,
                [100 + i as u8]
            );
        }
        let paused = made_at.borrow()[base + free2].duration_since(second_at);
        assert!(paused >= ACCEPT_RETRY_DELAY, "resumed after {paused:?}");
        assert_eq!(errors.borrow().len(), 2, "one report per backoff");
        server.close();
    })
    .unwrap();
    println!("{MARKER}");
}

#[test]
fn a_second_concurrent_serve_forever_is_an_error() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server, _addr, _conns) = net_rec_server(&l, RecProto::echo).await;
        let first = {
            let server = server.clone();
            evloop::spawn(async move { server.serve_forever().await })
        };
        net_passes(2).await;
        let second = server.serve_forever().await;
        assert!(matches!(second, Err(Error::InvalidState(_))), "asyncio raises RuntimeError: {second:?}");
        assert!(!first.done(), "the refused call leaves the first one running");
        assert!(server.is_serving());
        server.close();
        let ended = within("serve_forever", first).await.unwrap();
        assert!(matches!(ended, Err(Error::Cancelled)), "{ended:?}");
        assert!(matches!(server.serve_forever().await, Err(Error::InvalidState(_))), "closed");
    })
    .unwrap();
}

// ------------------------------------------------------------ hosts and sockets

/// asyncio's `create_server(host=[...])`: one listening socket per
/// distinct address, each accepting.
#[test]
fn several_hosts_listen_on_each_address() {
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
        let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.1"];
        let server = l.create_server(factory, hosts, 0, Default::default()).await.unwrap();
        let addrs: Vec<SocketAddr> = server.sockets().iter().filter_map(|a| a.as_socket()).collect();
        let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.2"], "the repeated host listens once");
        for (n, addr) in addrs.iter().enumerate() {
            let c = net_connect(&l, &sockaddr(*addr)).await;
            l.sock_sendall(&c, b"ping").await.unwrap();
            assert_eq!(net_read_exact(&l, &c, 4).await, b"ping");
            assert_eq!(made.get(), n + 1);
        }
        server.close();
    })
    .unwrap();
}

/// One host failing to listen fails the whole call, and the sockets made
/// for the other hosts are closed.
#[test]
fn a_host_that_cannot_listen_fails_the_server_and_closes_the_others() {
    let lp = new_loop();
    let taken = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            l.create_server(|| RecProto::new().0, ["127.0.0.3", "127.0.0.2"], port, Default::default())
                .await
                .map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(io::ErrorKind::AddrInUse));
    assert!(err.to_string().starts_with(&format!("listen on 127.0.0.2:{port}: ")), "{err}");
    // 127.0.0.3's socket was closed: its address is free again.
    std::net::TcpListener::bind(("127.0.0.3", port)).expect("127.0.0.3's listener is gone");
    // No host at all is an error too.
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            let none: [&str; 0] = [];
            l.create_server(|| RecProto::new().0, none, 0, Default::default()).await.map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(io::ErrorKind::InvalidInput));
}

/// asyncio's `create_server(sock=...)`: a bound socket the caller made
/// (not yet listening) serves; `start_serving = false` holds accepts until
/// `start_serving()`; a datagram socket is refused.
#[test]
fn create_server_from_socket_serves_on_the_callers_socket() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let socket = Socket::new(evloop::net::Domain::IPV4, evloop::net::Type::STREAM, None).unwrap();
        socket.bind(&sockaddr("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let listener = fd_link(socket.as_raw_fd());
        let made = NetCounter::new();
        let m = made.clone();
        let factory = move || {
            m.add();
            RecProto::echo().0
        };
        let opts = ServerOptions { start_serving: false, ..Default::default() };
        let server = l.create_server_from_socket(factory, socket, opts).await.unwrap();
        assert_eq!(server.local_addr(), Some(addr));
        assert!(!server.is_serving());
        let c = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c, b"held").await.unwrap();
        net_passes(10).await;
        assert_eq!(made.get(), 0, "nothing accepted before start_serving");
        server.start_serving();
        assert_eq!(net_read_exact(&l, &c, 4).await, b"held");
        assert_eq!(made.get(), 1);
        assert!(is_open_file(&listener));
        server.close();
        // The server owned the socket: closing it closed the file (not a
        // refused connect: another test may take the freed port at once).
        assert!(!is_open_file(&listener), "the listening socket is still open");

        let udp = Socket::new(evloop::net::Domain::IPV4, evloop::net::Type::DGRAM, None).unwrap();
        let err =
            l.create_server_from_socket(|| RecProto::new().0, udp, Default::default()).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(io::ErrorKind::InvalidInput));
    })
    .unwrap();
}

/// The streams' twin: `start_server_from_socket`.
#[test]
fn start_server_from_socket_runs_the_stream_handler() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = |mut r: evloop::StreamReader, w: evloop::StreamWriter| async move {
            let line = r.readline().await.unwrap();
            w.write(&line).unwrap();
            w.close();
        };
        let server = evloop::start_server_from_socket(handler, listener, Default::default()).await.unwrap();
        let c = net_connect(&l, &sockaddr(addr)).await;
        l.sock_sendall(&c, b"hi\n").await.unwrap();
        assert_eq!(within("echo", net_read_to_end(&l, &c)).await.0, b"hi\n");
        server.close();
    })
    .unwrap();
}

//! `create_connection`'s options: `local_addr`, Happy Eyeballs (RFC 8305's
//! staggered attempts) and `interleave`, the combined error when every
//! address fails, connections over a socket the caller made.
//!
//! The address that "never answers" is a listener whose accept queue is
//! full (`listen(0)` plus one connection nobody accepts): the kernel drops
//! later SYNs (whatever `tcp_syncookies` says: syncookies answer a full
//! SYN queue, not a full accept queue), so a connect to it stays in
//! progress until the client gives up, minutes later.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use evloop::net::{ConnectOptions, Domain, Socket, Type};
use evloop::{Error, EventLoop};
use util::{
    RecProto, Watchdog, fail_on_callback_errors, manual_loop, open_fd_count, run_test_in_child, within,
};

const DELAY: Duration = Duration::from_millis(250);

/// A listener at `ip` whose accept queue is full, with the connection that
/// fills it: a connect to its address never completes.
fn unanswering(ip: [u8; 4]) -> (Socket, std::net::TcpStream, SocketAddr) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener.bind(&SocketAddr::from((ip, 0)).into()).expect("bind");
    listener.listen(0).expect("listen(0)");
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Blocking: once it returns, the queue holds it and is full.
    let filler = std::net::TcpStream::connect(addr).expect("fill the accept queue");
    (listener, filler, addr)
}

/// A port on `127.0.0.1` where nothing listens (connect: refused).
fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The test: the first address never completes its handshake, the
/// second answers. The second attempt starts exactly one delay after the
/// first (manual clock), wins, and the first attempt's socket is closed.
#[test]
fn happy_eyeballs_starts_the_next_address_after_the_delay_and_the_first_to_connect_wins() {
    const NAME: &str = "happy_eyeballs_starts_the_next_address_after_the_delay_and_the_first_to_connect_wins";
    const MARKER: &str = "happy-eyeballs body ran";
    // In a child: the test counts the process's fds.
    if !run_test_in_child(NAME, "EVLOOP_TEST_HAPPY_EYEBALLS_CHILD", MARKER) {
        return;
    }
    let _dog = Watchdog::new(NAME, Duration::from_secs(60));
    let lp = manual_loop();
    let _errors = fail_on_callback_errors(&lp);
    let (_full, _filler, slow) = unanswering([127, 0, 0, 2]);
    let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good_addr = good.local_addr().unwrap();

    let fds_before = open_fd_count();
    let start = lp.time();
    let l = lp.clone();
    let options = ConnectOptions::new().happy_eyeballs_delay(DELAY);
    let task = lp.create_task(async move {
        l.create_connection_to(|| RecProto::new().0, [slow, good_addr], options).await
    });
    lp.run_until_idle().unwrap();
    assert!(!task.done(), "the first address must not answer");
    assert_eq!(open_fd_count(), fds_before + 1, "one attempt, one socket");

    lp.advance_time(DELAY - Duration::from_millis(1));
    lp.run_until_idle().unwrap();
    assert!(!task.done());
    assert_eq!(open_fd_count(), fds_before + 1, "the second attempt waits for the delay");

    lp.advance_time(Duration::from_millis(1));
    let (transport, _) = lp.run_until_complete(task).unwrap().unwrap().expect("the second address connects");
    assert_eq!(transport.peer_addr(), Some(good_addr), "the answering address won");
    assert_eq!(lp.time() - start, DELAY, "connected one delay after the start, no later");
    assert_eq!(open_fd_count(), fds_before + 1, "the losing attempt's socket is closed");
    let (_accepted, from) = good.accept().unwrap();
    assert_eq!(Some(from), transport.local_addr());
    transport.abort();
    lp.run_until_idle().unwrap();
    assert_eq!(open_fd_count(), fds_before + 1, "the accepted socket only");
    println!("{MARKER}");
}

/// asyncio: a failed attempt starts the next one at once, not after the
/// delay.
#[test]
fn happy_eyeballs_moves_on_at_once_when_an_attempt_fails() {
    let _dog = Watchdog::new("happy_eyeballs_moves_on_at_once", Duration::from_secs(60));
    let lp = manual_loop();
    let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good_addr = good.local_addr().unwrap();
    let start = lp.time();
    let l = lp.clone();
    let options = ConnectOptions::new().happy_eyeballs_delay(Duration::from_secs(3600));
    let (transport, _) = lp
        .run_until_complete(async move {
            l.create_connection_to(|| RecProto::new().0, [refused_addr(), good_addr], options).await
        })
        .unwrap()
        .expect("connects to the second address");
    assert_eq!(transport.peer_addr(), Some(good_addr));
    assert_eq!(lp.time(), start, "no delay was waited");
    transport.abort();
}

/// Every address fails: one error naming each address, in attempt order
/// (asyncio joins them in one `OSError`), with and without Happy Eyeballs.
#[test]
fn when_every_address_fails_the_error_lists_each() {
    let lp = EventLoop::new().unwrap();
    let a = refused_addr();
    let b = SocketAddr::from(([127, 0, 0, 3], a.port()));
    for options in [ConnectOptions::new(), ConnectOptions::new().happy_eyeballs_delay(DELAY)] {
        let l = lp.clone();
        let err = lp
            .run_until_complete(async move {
                l.create_connection_to(|| RecProto::new().0, [a, b], options).await.map(|_| ())
            })
            .unwrap()
            .unwrap_err();
        let text = err.to_string();
        let (at_a, at_b) = (text.find(&format!("connect to {a}")), text.find(&format!("connect to {b}")));
        assert!(at_a.is_some() && at_b.is_some() && at_a < at_b, "{text}");
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "both refused: the kind is kept: {err:?}"
        );
    }
    // One address: its error as it is.
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            l.create_connection_to(|| RecProto::new().0, [a], ConnectOptions::new()).await.map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    assert!(err.to_string().starts_with(&format!("connect to {a}: ")), "{err}");
    assert!(!err.to_string().contains("multiple"), "{err}");
}

/// Cancelling the caller while attempts are in progress closes every
/// attempt's socket.
#[test]
fn cancelling_a_staggered_connect_closes_every_attempt() {
    const NAME: &str = "cancelling_a_staggered_connect_closes_every_attempt";
    const MARKER: &str = "cancel-staggered body ran";
    if !run_test_in_child(NAME, "EVLOOP_TEST_CANCEL_STAGGERED_CHILD", MARKER) {
        return;
    }
    let lp = manual_loop();
    let (_l1, _f1, slow1) = unanswering([127, 0, 0, 2]);
    let (_l2, _f2, slow2) = unanswering([127, 0, 0, 3]);
    let fds_before = open_fd_count();
    let l = lp.clone();
    let options = ConnectOptions::new().happy_eyeballs_delay(DELAY);
    let task = lp.create_task(async move {
        l.create_connection_to(|| RecProto::new().0, [slow1, slow2], options).await.map(|_| ())
    });
    lp.run_until_idle().unwrap();
    lp.advance_time(DELAY);
    lp.run_until_idle().unwrap();
    assert_eq!(open_fd_count(), fds_before + 2, "both attempts are in progress");
    task.cancel();
    lp.run_until_idle().unwrap();
    assert!(task.cancelled());
    assert_eq!(open_fd_count(), fds_before, "both sockets closed");
    println!("{MARKER}");
}

/// `local_addr`: the connection comes from the address asked for.
#[test]
fn local_addr_binds_before_connecting() {
    let lp = EventLoop::new().unwrap();
    let _errors = fail_on_callback_errors(&lp);
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let l = lp.clone();
    let (transport, _) = lp
        .run_until_complete(async move {
            let options = ConnectOptions::new().local_addr("127.0.0.2", 0);
            within("connect", l.create_connection(|| RecProto::new().0, "127.0.0.1", port, options)).await
        })
        .unwrap()
        .expect("connect from 127.0.0.2");
    let (_accepted, from) = server.accept().unwrap();
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    assert_eq!(transport.local_addr(), Some(from));
    transport.abort();
}

/// A local address of the wrong family is an error that says so; a local
/// address that cannot be bound names it.
#[test]
fn local_addr_errors_say_what_failed() {
    let lp = EventLoop::new().unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let connect = |options: ConnectOptions| {
        let l = lp.clone();
        lp.run_until_complete(async move {
            l.create_connection(|| RecProto::new().0, "127.0.0.1", port, options).await.map(|_| ())
        })
        .unwrap()
        .unwrap_err()
    };
    let err = connect(ConnectOptions::new().local_addr("::1", 0));
    assert!(err.to_string().contains("no local address in the IPv4 family"), "{err}");
    // The server's own address and port are taken.
    let err = connect(ConnectOptions::new().local_addr("127.0.0.1", port));
    assert!(err.to_string().contains(&format!("bind to local address 127.0.0.1:{port}")), "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
}

/// The TCP-only options are refused for Unix connections.
#[test]
fn unix_connections_refuse_tcp_options() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            let options = ConnectOptions::new().happy_eyeballs_delay(DELAY);
            l.create_unix_connection(|| RecProto::new().0, "/nonexistent", options).await.map(|_| ())
        })
        .unwrap()
        .unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidInput), "{err:?}");
}

/// `open_connection` passes its `connect` options on.
#[test]
fn open_connection_takes_the_connect_options() {
    use evloop::net::stream::StreamConnectOptions;
    let lp = EventLoop::new().unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let local = lp
        .run_until_complete(async move {
            let options =
                StreamConnectOptions::new().connect(ConnectOptions::new().local_addr("127.0.0.4", 0));
            let (_r, w) = evloop::open_connection("127.0.0.1", port, options).await?;
            let local = w.transport().local_addr();
            w.close();
            Ok::<_, Error>(local)
        })
        .unwrap()
        .unwrap();
    assert_eq!(local.unwrap().ip().to_string(), "127.0.0.4");
}

/// asyncio's `create_connection(sock=...)`: a connected socket the caller
/// made; the options that choose how to connect are refused, and so is a
/// datagram socket.
#[test]
fn create_connection_from_socket_runs_on_the_callers_socket() {
    let lp = EventLoop::new().unwrap();
    let _errors = fail_on_callback_errors(&lp);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mine = socket.local_addr().unwrap();
    let l = lp.clone();
    let (transport, _) = lp
        .run_until_complete(async move {
            l.create_connection_from_socket(|| RecProto::new().0, socket, ConnectOptions::new()).await
        })
        .unwrap()
        .unwrap();
    assert_eq!(transport.local_addr(), Some(mine));
    transport.abort();

    for (socket, options) in [
        (
            std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap().into(),
            ConnectOptions::new().local_addr("127.0.0.1", 0),
        ),
        (Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(), ConnectOptions::new()),
    ] {
        let l = lp.clone();
        let err = lp
            .run_until_complete(async move {
                l.create_connection_from_socket(|| RecProto::new().0, socket, options).await.map(|_| ())
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput), "{err}");
    }
}

/// The streams' twin: `open_connection_from_socket`.
#[test]
fn open_connection_from_socket_gives_a_stream_pair() {
    let lp = EventLoop::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    std::io::Write::write_all(&mut peer, b"line\n").unwrap();
    let line = lp
        .run_until_complete(async move {
            let (mut r, w) = evloop::open_connection_from_socket(socket, Default::default()).await?;
            let line = within("readline", r.readline()).await?;
            w.close();
            Ok::<_, Error>(line)
        })
        .unwrap()
        .unwrap();
    assert_eq!(line, b"line\n");
}

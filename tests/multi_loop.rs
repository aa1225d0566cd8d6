//! N loops on N threads serving one port ([`LoopGroup`]): `SO_REUSEPORT`
//! listeners each accept connections, the acceptor hands them out round
//! robin, a failing setup is reported with its loop, and shutdown stops,
//! joins and closes every loop (threads and fds back to baseline; open
//! connections see EOF). The tests that count the process's threads or fds
//! run alone in a child process.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use evloop::Error;
use evloop::net::{LoopGroup, LoopGroupError, Protocol, Transport, handoff_protocol};
use util::{NET_TIMEOUT, open_fd_count, run_test_in_child};

/// Writes its loop's number and a newline, then keeps the connection
/// open (echoing) until the peer closes it.
struct Which {
    index: usize,
    transport: Option<Transport>,
}

impl Protocol for Which {
    fn connection_made(&mut self, t: &Transport) {
        t.write(format!("{}\n", self.index).as_bytes()).unwrap();
        self.transport = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
}

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `loops` loops on one port with `SO_REUSEPORT`, each serving [`Which`].
fn reuse_port_group(loops: usize) -> LoopGroup {
    LoopGroup::reuse_port(loops, any_addr(), &Default::default(), |index, listener| async move {
        let lp = evloop::get_running_loop()?;
        lp.create_server_from_socket(move || Which { index, transport: None }, listener, Default::default())
            .await
    })
    .expect("start the group")
}

/// Connects and reads the serving loop's number; the stream stays open.
fn connect(addr: SocketAddr) -> (usize, TcpStream) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        assert_eq!(stream.read(&mut byte).expect("read the loop's number"), 1, "EOF before the number");
        line.push(byte[0]);
    }
    let index = String::from_utf8(line).unwrap().trim().parse().expect("a loop number");
    (index, stream)
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").expect("read /proc/self/task").count()
}

/// Waits (bounded) until the process is back to `threads` threads: a
/// joined thread may take a moment to leave /proc after `join` returns.
fn assert_threads_back_to(threads: usize) {
    let deadline = std::time::Instant::now() + NET_TIMEOUT;
    while thread_count() > threads {
        assert!(std::time::Instant::now() < deadline, "{} threads, {threads} expected", thread_count());
        std::thread::yield_now();
    }
}

fn group_failures(e: &Error) -> Vec<(Option<usize>, String)> {
    let Error::Other(inner) = e else { panic!("expected a LoopGroupError, got {e:?}") };
    let group = inner.downcast_ref::<LoopGroupError>().expect("a LoopGroupError");
    group.failures.iter().map(|f| (f.index, f.to_string())).collect()
}

#[test]
fn reuse_port_loops_each_accept_and_all_stop_on_shutdown() {
    if !run_test_in_child(
        "reuse_port_loops_each_accept_and_all_stop_on_shutdown",
        "EVLOOP_MULTI_REUSE_CHILD",
        "reuse port child done",
    ) {
        return;
    }
    const LOOPS: usize = 4;
    // Bound: with 4 listeners the chance that one gets none of 2000
    // hashed connections is about 4 × (3/4)^2000.
    const MAX_CONNECTIONS: usize = 2000;
    let fds = open_fd_count();
    let threads = thread_count();
    let group = reuse_port_group(LOOPS);
    assert_eq!(group.loops(), LOOPS);
    assert_eq!(thread_count(), threads + LOOPS, "one thread per loop");
    let addr = group.local_addr().unwrap();
    assert_ne!(addr.port(), 0, "the port picked is reported");
    let mut per_loop = [0usize; LOOPS];
    let mut made = 0;
    while per_loop.contains(&0) {
        assert!(made < MAX_CONNECTIONS, "some loop accepted nothing in {made} connections: {per_loop:?}");
        let (index, stream) = connect(addr);
        per_loop[index] += 1;
        made += 1;
        drop(stream);
    }
    println!("connections per loop after {made}: {per_loop:?}");
    group.shutdown().expect("a clean shutdown");
    assert_threads_back_to(threads);
    assert_eq!(open_fd_count(), fds, "every listener, connection, epoll fd and eventfd closed");
    assert!(TcpStream::connect(addr).is_err(), "nothing listens on the port any more");
    println!("reuse port child done");
}

#[test]
fn the_acceptor_hands_connections_out_round_robin() {
    if !run_test_in_child(
        "the_acceptor_hands_connections_out_round_robin",
        "EVLOOP_MULTI_ACCEPTOR_CHILD",
        "acceptor child done",
    ) {
        return;
    }
    let fds = open_fd_count();
    let threads = thread_count();
    let group = LoopGroup::with_acceptor(3, any_addr(), &Default::default(), |index| async move {
        Ok(handoff_protocol(move || Which { index, transport: None }))
    })
    .unwrap();
    assert_eq!(thread_count(), threads + 4, "three workers and the acceptor");
    let addr = group.local_addr().unwrap();
    let mut open = Vec::new();
    let mut order = Vec::new();
    for _ in 0..9 {
        let (index, stream) = connect(addr);
        order.push(index);
        open.push(stream); // kept open: each worker serves several at once
    }
    assert_eq!(order, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    // The connections run on the workers: each still echoes.
    for stream in &mut open {
        stream.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
    }
    drop(open);
    group.shutdown().unwrap();
    assert_threads_back_to(threads);
    assert_eq!(open_fd_count(), fds);
    println!("acceptor child done");
}

#[test]
fn the_acceptor_skips_a_worker_whose_loop_ended() {
    let group = LoopGroup::with_acceptor(3, any_addr(), &Default::default(), |index| async move {
        let mut handoff = handoff_protocol(move || Which { index, transport: None });
        Ok(move |socket| {
            if index == 1 {
                // Worker 1 ends its own loop on its first connection,
                // which closes (the client sees EOF).
                evloop::get_running_loop().unwrap().stop();
                drop(socket);
            } else {
                handoff(socket);
            }
        })
    })
    .unwrap();
    let addr = group.local_addr().unwrap();
    assert_eq!(connect(addr).0, 0);
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    assert_eq!(refused.read(&mut [0u8; 8]).unwrap(), 0, "worker 1 closed its connection");
    let deadline = std::time::Instant::now() + NET_TIMEOUT;
    while !group.remote(1).unwrap().is_closed() {
        assert!(std::time::Instant::now() < deadline, "worker 1's loop did not close");
        std::thread::yield_now();
    }
    let order: Vec<usize> = (0..4).map(|_| connect(addr).0).collect();
    assert_eq!(order, [2, 0, 2, 0], "worker 1 is skipped once its loop has ended");
    // A loop that stopped on its own is not a failure.
    group.shutdown().unwrap();
}

#[test]
fn a_panic_in_one_loops_setup_is_reported_and_the_others_are_stopped() {
    if !run_test_in_child(
        "a_panic_in_one_loops_setup_is_reported_and_the_others_are_stopped",
        "EVLOOP_MULTI_PANIC_CHILD",
        "setup panic child done",
    ) {
        return;
    }
    let fds = open_fd_count();
    let threads = thread_count();
    let set_up = Arc::new(AtomicUsize::new(0));
    let s = set_up.clone();
    let failed = LoopGroup::reuse_port(4, any_addr(), &Default::default(), move |index, listener| {
        let s = s.clone();
        async move {
            if index == 2 {
                panic!("loop {index} has no configuration");
            }
            let lp = evloop::get_running_loop()?;
            let server = lp
                .create_server_from_socket(
                    move || Which { index, transport: None },
                    listener,
                    Default::default(),
                )
                .await?;
            s.fetch_add(1, Ordering::SeqCst);
            Ok(server)
        }
    });
    let failures = group_failures(&failed.unwrap_err());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, Some(2));
    assert!(
        failures[0].1.contains("evloop-worker-2") && failures[0].1.contains("loop 2 has no configuration")
    );
    assert_eq!(set_up.load(Ordering::SeqCst), 3, "the other loops had started");
    // They were stopped, joined and closed before the error came back.
    assert_eq!(thread_count(), threads);
    assert_eq!(open_fd_count(), fds);

    // An error (not a panic) from a setup, and from several loops: each listed.
    let failed = LoopGroup::spawn(3, |index| async move {
        if index == 0 {
            return Ok(());
        }
        Err(Error::InvalidState("no database"))
    });
    let failures = group_failures(&failed.unwrap_err());
    assert_eq!(failures.iter().map(|f| f.0).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert!(failures.iter().all(|f| f.1.contains("no database")));
    assert_threads_back_to(threads);
    assert_eq!(open_fd_count(), fds);
    println!("setup panic child done");
}

#[test]
fn shutdown_closes_open_connections_and_the_peers_see_eof() {
    for group in [
        reuse_port_group(2),
        LoopGroup::with_acceptor(2, any_addr(), &Default::default(), |index| async move {
            Ok(handoff_protocol(move || Which { index, transport: None }))
        })
        .unwrap(),
    ] {
        let addr = group.local_addr().unwrap();
        let mut open: Vec<TcpStream> = (0..6).map(|_| connect(addr).1).collect();
        for stream in &mut open {
            stream.write_all(b"x").unwrap();
            let mut echo = [0u8];
            stream.read_exact(&mut echo).unwrap();
        }
        group.shutdown().unwrap();
        for stream in &mut open {
            let mut rest = Vec::new();
            // Blocks until the server side closes (bounded by the timeout).
            stream.read_to_end(&mut rest).expect("EOF, not a timeout");
            assert!(rest.is_empty(), "{rest:?}");
        }
    }
}

#[test]
fn dropping_the_group_shuts_it_down() {
    if !run_test_in_child("dropping_the_group_shuts_it_down", "EVLOOP_MULTI_DROP_CHILD", "drop child done") {
        return;
    }
    let fds = open_fd_count();
    let threads = thread_count();
    let group = reuse_port_group(3);
    let addr = group.local_addr().unwrap();
    let (_, mut stream) = connect(addr);
    drop(group);
    assert_eq!(stream.read(&mut [0u8; 4]).unwrap(), 0, "the connection was closed");
    drop(stream);
    assert_threads_back_to(threads);
    assert_eq!(open_fd_count(), fds);
    println!("drop child done");
}

#[test]
fn setup_output_is_dropped_on_its_own_loop_and_a_panicking_drop_is_reported() {
    /// Records the thread it is dropped on; panics there if asked.
    struct State {
        drops: Arc<Mutex<Vec<String>>>,
        panic: bool,
    }
    impl Drop for State {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            self.drops.lock().unwrap().push(name);
            if self.panic {
                panic!("state of a loop panicked in drop");
            }
        }
    }
    let drops = Arc::new(Mutex::new(Vec::new()));
    let d = drops.clone();
    let group = LoopGroup::spawn(2, move |index| {
        let drops = d.clone();
        async move { Ok(State { drops, panic: index == 1 }) }
    })
    .unwrap();
    assert!(drops.lock().unwrap().is_empty(), "kept while the loops run");
    let failures = group_failures(&group.shutdown().unwrap_err());
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, Some(1));
    assert!(failures[0].1.contains("state of a loop panicked in drop"), "{}", failures[0].1);
    let mut dropped_on = drops.lock().unwrap().clone();
    dropped_on.sort();
    assert_eq!(dropped_on, ["evloop-worker-0", "evloop-worker-1"]);
}

#[test]
fn remote_sends_work_to_one_loop() {
    let group = LoopGroup::spawn(2, |_| async { Ok(()) }).unwrap();
    let on = group
        .remote(1)
        .unwrap()
        .run_coroutine_threadsafe(|| async { std::thread::current().name().map(str::to_owned) })
        .unwrap()
        .result(Some(NET_TIMEOUT))
        .unwrap();
    assert_eq!(on.as_deref(), Some("evloop-worker-1"));
    assert!(group.remote(2).is_none());
    group.shutdown().unwrap();
}

#[test]
fn bad_arguments_are_refused_and_leave_nothing_behind() {
    let none = LoopGroup::spawn(0, |_| async { Ok(()) }).unwrap_err();
    assert_eq!(none.io_kind(), Some(std::io::ErrorKind::InvalidInput));
    // The port is taken (without SO_REUSEPORT): the error names it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let setups = Arc::new(AtomicUsize::new(0));
    let s = setups.clone();
    let e = LoopGroup::reuse_port(2, addr, &Default::default(), move |_, _| {
        s.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    })
    .unwrap_err();
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{e}");
    assert!(e.to_string().contains(&format!("listen on {addr}")), "{e}");
    let e = LoopGroup::with_acceptor(2, addr, &Default::default(), |_| async { Ok(|_| {}) }).unwrap_err();
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{e}");
    assert_eq!(setups.load(Ordering::SeqCst), 0, "no loop was started");
}

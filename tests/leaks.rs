//! The leak matrix, whole-loop cases: `close()` with everything still open
//! at once (transports, a server, sleeping tasks, timers, tasks blocked in
//! `sock_recv`, a reader), the last handle dropped without `close()` in the
//! same state, and a `RemoteLoop` or waker outliving the loop — every
//! protocol, closure, task and fd is freed. (Per-kind cases — 10,000
//! closed connections, `evloop::run` with open streams, datagram endpoints
//! — are in `net_lifetimes.rs`, `fds.rs` and `lifecycle.rs`.) Drop counters
//! prove the objects went; fd counts prove the sockets, the epoll fd and the
//! eventfd did. Each test counts the
//! process's fds, so it runs alone in a child process.

mod util;

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use evloop::EventLoop;
use evloop::net::{Protocol, Transport};
use util::{DropCounter, Watchdog, open_fd_count, run_test_in_child, socketpair};

/// The documented echo pattern: keeps its transport (so protocol and
/// transport refer to each other) and counts its own drop.
struct KeepingEcho {
    transport: Option<Transport>,
    lost: Rc<Cell<usize>>,
    _token: DropCounter,
}

impl Protocol for KeepingEcho {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
    fn connection_lost(&mut self, _: Option<evloop::Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

/// Runs the loop until `cond` holds, failing after a generous bound of
/// passes (each pass blocks at most 10 ms waiting for I/O).
fn run_until(lp: &EventLoop, what: &str, cond: impl Fn() -> bool) {
    for _ in 0..5_000 {
        if cond() {
            return;
        }
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    panic!("the loop never got to: {what}");
}

#[test]
fn close_frees_open_transports_servers_tasks_timers_and_readers() {
    const NAME: &str = "close_frees_open_transports_servers_tasks_timers_and_readers";
    if run_test_in_child(NAME, "EVLOOP_TEST_LEAKS_CLOSE_CHILD", MARKER) {
        // Tasks blocked in sock_recv hold the loop: only close() frees them.
        fill_then_end(NAME, true, |lp| {
            lp.close().unwrap();
            Some(lp) // still alive while the fds are counted
        });
    }
}

#[test]
fn dropping_the_last_loop_handle_without_close_frees_everything() {
    const NAME: &str = "dropping_the_last_loop_handle_without_close_frees_everything";
    if run_test_in_child(NAME, "EVLOOP_TEST_LEAKS_DROP_CHILD", MARKER) {
        fill_then_end(NAME, false, |lp| {
            drop(lp);
            None
        });
    }
}

/// What a child test prints when its body has run.
const MARKER: &str = "LEAKS-CHILD-DONE";

/// Fills a new loop (see [`fill_a_loop`]), ends it with `end` (which may
/// hand back a handle it kept alive), then checks that every drop token
/// went and the fd count is back to where it was before the loop.
fn fill_then_end(
    name: &'static str,
    blocked_in_sock_recv: bool,
    end: impl FnOnce(EventLoop) -> Option<EventLoop>,
) {
    let _dog = Watchdog::new(name, Duration::from_secs(120));
    let (a, b) = socketpair();
    let fds_at_start = open_fd_count();
    let lp = EventLoop::new().unwrap();
    let dropped = DropCounter::new();
    let everything = fill_a_loop(&lp, &dropped, &b, 50, blocked_in_sock_recv);
    let kept = end(lp);
    assert_eq!(dropped.get(), everything, "every protocol, task, timer and reader is freed");
    assert_eq!(open_fd_count(), fds_at_start, "every socket and the poller's fds are closed");
    drop(kept);
    assert_eq!(open_fd_count(), fds_at_start);
    drop((a, b));
    println!("{MARKER}");
}

/// Leaves `lp` with `pairs` open connections (both ends transports, each
/// protocol counted), a listening server, 100 tasks asleep, 100 pending
/// timers, 100 tasks blocked on sockets (in `sock_recv`, holding an
/// `EventLoop`, if `blocked_in_sock_recv`; else in `wait_readable`), and a
/// reader on `fd_owner`.
/// Returns how many drop tokens it handed out.
fn fill_a_loop(
    lp: &EventLoop,
    dropped: &Rc<Cell<usize>>,
    fd_owner: &impl AsRawFd,
    pairs: usize,
    blocked_in_sock_recv: bool,
) -> usize {
    let mut tokens = 0;
    let lost = Rc::new(Cell::new(0));
    let (d, lo) = (dropped.clone(), lost.clone());
    let l = lp.clone();
    let server = lp
        .run_until_complete(async move {
            l.create_server(
                move || KeepingEcho { transport: None, lost: lo.clone(), _token: DropCounter::token(&d) },
                "127.0.0.1",
                0,
                Default::default(),
            )
            .await
        })
        .unwrap()
        .unwrap();
    let port = server.local_addr().unwrap().port();
    for _ in 0..pairs {
        let (d, lo) = (dropped.clone(), lost.clone());
        let l = lp.clone();
        lp.run_until_complete(async move {
            l.create_connection(
                move || KeepingEcho { transport: None, lost: lo, _token: DropCounter::token(&d) },
                "127.0.0.1",
                port,
                Default::default(),
            )
            .await
        })
        .unwrap()
        .unwrap();
        tokens += 2; // the client's protocol and the server's
    }
    run_until(lp, "every server-side connection_made", || server.connections() == pairs);
    for _ in 0..100 {
        let token = DropCounter::token(dropped);
        lp.create_task(async move {
            evloop::sleep(Duration::from_secs(3600)).await;
            drop(token);
        });
        let token = DropCounter::token(dropped);
        lp.call_later(Duration::from_secs(3600), move || drop(token));
        tokens += 2;
    }
    // Tasks blocked on sockets they own: in `sock_recv` (the task's future
    // then holds an `EventLoop`, a cycle only `close()` breaks), or waiting
    // for readiness, which holds the loop weakly.
    for _ in 0..100 {
        let (mine, peer) = socketpair();
        mine.set_nonblocking(true).unwrap();
        let token = DropCounter::token(dropped);
        if blocked_in_sock_recv {
            let l = lp.clone();
            lp.create_task(async move {
                let _keep = (token, peer);
                let _ = l.sock_recv(&mine, 16).await;
            });
        } else {
            let ready = lp.wait_readable(mine.as_raw_fd());
            lp.create_task(async move {
                let _keep = (token, peer, mine);
                let _ = ready.await;
            });
        }
        tokens += 1;
    }
    let token = DropCounter::token(dropped);
    let fd = fd_owner.as_raw_fd();
    lp.add_reader(fd, move || {
        let _ = &token;
    })
    .unwrap();
    tokens += 1;
    // Let the tasks reach their awaits.
    for _ in 0..3 {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    drop(server);
    tokens
}

#[test]
fn a_remote_loop_or_waker_that_outlives_its_loop_holds_no_fd() {
    const NAME: &str = "a_remote_loop_or_waker_that_outlives_its_loop_holds_no_fd";
    const MARKER: &str = "LEAKS-REMOTE-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_LEAKS_REMOTE_CHILD", MARKER) {
        return;
    }
    let _dog = Watchdog::new(NAME, Duration::from_secs(60));
    let fds_at_start = open_fd_count();
    for close_first in [true, false] {
        let lp = EventLoop::new().unwrap();
        let remote = lp.remote();
        let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
        let s = slot.clone();
        lp.create_task(std::future::poll_fn(move |cx| {
            *s.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }));
        lp.run_once(Some(Duration::ZERO)).unwrap();
        let waker = slot.lock().unwrap().take().expect("the task ran and left its waker");
        if close_first {
            lp.close().unwrap();
        }
        drop(lp);
        assert_eq!(open_fd_count(), fds_at_start, "no fd outlives the loop (close first: {close_first})");
        assert!(remote.is_closed());
        assert!(matches!(remote.call_soon_threadsafe(|| {}), Err(evloop::Error::Closed)));
        // Waking a task of a dead loop, from another thread, is a no-op.
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert_eq!(open_fd_count(), fds_at_start);
    }
    println!("{MARKER}");
}

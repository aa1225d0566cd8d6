//! File-descriptor callbacks: `add_reader`, `add_writer`, level-triggered
//! readiness, removal and replacement from inside callbacks, closed and
//! reused fd numbers.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use evloop::{Error, EventLoop};
use util::{
    DropCounter, LoopProbe, Recorder, Watchdog, drain, fail_on_callback_errors, manual_loop, socketpair,
};

/// Tests here close fds and count on the kernel handing the lowest free
/// number to the next socket: run them one at a time so that no other
/// test of this binary takes a number in between.
fn fd_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One pass that does not wait.
fn pass(lp: &EventLoop) {
    lp.run_once(Some(Duration::ZERO)).unwrap();
}

fn counter() -> (Rc<Cell<u32>>, impl FnMut() + 'static) {
    let n = Rc::new(Cell::new(0));
    let m = n.clone();
    (n, move || m.set(m.get() + 1))
}

/// Creates socket pairs until one of them gets the fd number `target`,
/// returning that end and its peer. The pairs made on the way are closed
/// afterwards. Linux hands out the lowest free number, so the first pair
/// normally has it.
fn pair_with_fd(target: RawFd) -> (UnixStream, UnixStream) {
    let mut spare = Vec::new();
    for _ in 0..1000 {
        let (x, y) = socketpair();
        if x.as_raw_fd() == target {
            return (x, y);
        }
        if y.as_raw_fd() == target {
            return (y, x);
        }
        spare.push((x, y));
    }
    panic!("fd {target} was not reused");
}

// ------------------------------------------------------------ basics

#[test]
fn reader_and_writer_fire_on_a_socketpair() {
    let _g = fd_lock();
    let _dog = Watchdog::new("reader_and_writer_fire_on_a_socketpair", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let got = Rc::new(RefCell::new(Vec::new()));
    // The writer sends once and removes itself; the reader on the other end
    // gets the bytes and stops the loop, which blocked until they arrived.
    {
        let lp2 = lp.clone();
        let mut a = a;
        lp.add_writer(fa, move || {
            a.write_all(b"ping").unwrap();
            assert!(lp2.remove_writer(fa));
        })
        .unwrap();
    }
    {
        let (lp2, got) = (lp.clone(), got.clone());
        let mut b = b;
        lp.add_reader(fb, move || {
            got.borrow_mut().extend(drain(&mut b));
            if got.borrow().len() >= 4 {
                assert!(lp2.remove_reader(fb));
                lp2.stop();
            }
        })
        .unwrap();
    }
    assert_eq!((lp.stats().readers, lp.stats().writers), (1, 1));
    lp.run_forever().unwrap();
    assert_eq!(&*got.borrow(), b"ping");
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));
}

/// The loop blocks in the poller (nothing else to do) until another thread
/// writes to the socket.
#[test]
fn reader_wakes_a_blocked_loop() {
    let _g = fd_lock();
    let _dog = Watchdog::new("reader_wakes_a_blocked_loop", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (a, mut b) = socketpair();
    let fb = b.as_raw_fd();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        (&a).write_all(b"hi").unwrap();
        a
    });
    // The first callback lets the writer go; the loop then has nothing to
    // do but wait for the socket.
    lp.call_soon(move || go_tx.send(()).unwrap());
    let got = Rc::new(RefCell::new(Vec::new()));
    let (lp2, g) = (lp.clone(), got.clone());
    lp.add_reader(fb, move || {
        g.borrow_mut().extend(drain(&mut b));
        if g.borrow().len() == 2 {
            lp2.stop();
        }
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(&*got.borrow(), b"hi");
    let _a = writer.join().unwrap();
    assert!(lp.remove_reader(fb));
}

#[test]
fn reader_on_a_tcp_listener_accepts() {
    let _g = fd_lock();
    let _dog = Watchdog::new("reader_on_a_tcp_listener_accepts", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let accepted = Rc::new(Cell::new(0));
    let (lp2, acc) = (lp.clone(), accepted.clone());
    lp.add_reader(fd, move || {
        loop {
            match listener.accept() {
                Ok(_) => acc.set(acc.get() + 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("accept: {e}"),
            }
        }
        if acc.get() == 3 {
            assert!(lp2.remove_reader(fd));
            lp2.stop();
        }
    })
    .unwrap();
    let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    lp.run_forever().unwrap();
    assert_eq!(accepted.get(), 3);
    drop(clients);
}

// ------------------------------------------------------------ level-triggered

/// While unread bytes remain the reader runs on every pass; once they are
/// read, it stops.
#[test]
fn reader_refires_while_data_is_unread() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"abc").unwrap();
    let got = Recorder::new();
    let g = got.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move || {
        let mut byte = [0u8; 1];
        (&b).read_exact(&mut byte).unwrap(); // one byte per call
        g.push(byte[0]);
    })
    .unwrap();
    for expected in [1, 2, 3, 3, 3] {
        pass(&lp);
        assert_eq!(got.len(), expected);
    }
    assert_eq!(got.get(), b"abc");
    // More data: it fires again.
    (&a).write_all(b"d").unwrap();
    pass(&lp);
    assert_eq!(got.get(), b"abcd");
    assert!(lp.remove_reader(fd));
}

/// A writer runs on every pass while the socket can take more, stops while
/// its buffer is full, and runs again once the peer reads.
#[test]
fn writer_refires_while_writable_and_pauses_when_full() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, mut b) = socketpair();
    let fa = a.as_raw_fd();
    let (runs, mut count) = counter();
    let full = Rc::new(Cell::new(false));
    let f = full.clone();
    lp.add_writer(fa, move || {
        count();
        let chunk = [0u8; 16 * 1024];
        loop {
            match (&a).write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        f.set(true);
    })
    .unwrap();
    pass(&lp);
    assert_eq!(runs.get(), 1);
    assert!(full.get());
    for _ in 0..3 {
        pass(&lp);
    }
    assert_eq!(runs.get(), 1, "a full socket is not writable");
    assert!(!drain(&mut b).is_empty());
    pass(&lp);
    assert_eq!(runs.get(), 2, "writable again once the peer read");
    assert!(lp.remove_writer(fa));
    pass(&lp);
    assert_eq!(runs.get(), 2);
}

// ------------------------------------------------------------ removal

#[test]
fn remove_reader_inside_its_own_callback() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"unread").unwrap();
    let fd = b.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let runs = Rc::new(Cell::new(0));
    let (lp2, r) = (lp.clone(), runs.clone());
    lp.add_reader(fd, move || {
        let _t = &token;
        r.set(r.get() + 1);
        assert!(lp2.remove_reader(fd), "registered while it runs");
        assert!(!lp2.remove_reader(fd), "removed now");
        assert_eq!(lp2.stats().readers, 0);
    })
    .unwrap();
    pass(&lp);
    assert_eq!(runs.get(), 1);
    assert_eq!(drops.get(), 1, "the closure is freed once it returned");
    for _ in 0..3 {
        pass(&lp);
    }
    assert_eq!(runs.get(), 1, "data is still unread, but the reader is gone");
    assert_eq!(lp.stats().readers, 0);
    assert_eq!(lp.stats().callbacks_run, 1);
    drop(b);
}

#[test]
fn remove_returns_false_when_nothing_is_registered() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    assert!(!lp.remove_reader(fd));
    assert!(!lp.remove_writer(fd));
    lp.add_writer(fd, || {}).unwrap();
    assert!(!lp.remove_reader(fd), "a writer is not a reader");
    assert!(lp.remove_writer(fd));
    assert!(!lp.remove_writer(fd));
    assert!(!lp.remove_reader(-1));
}

/// A callback that runs first in a pass removes the reader of another fd
/// whose event was already queued for this same pass: that reader must not
/// run.
#[test]
fn removing_a_reader_already_queued_in_this_pass_skips_it() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a_tx, a_rx) = socketpair();
    let (b_tx, b_rx) = socketpair();
    (&a_tx).write_all(b"a").unwrap();
    (&b_tx).write_all(b"b").unwrap();
    let (fa, fb) = (a_rx.as_raw_fd(), b_rx.as_raw_fd());
    let rec = Recorder::new();
    lp.add_reader(fa, {
        let rec = rec.clone();
        move || rec.push("a")
    })
    .unwrap();
    lp.add_reader(fb, {
        let rec = rec.clone();
        move || rec.push("b")
    })
    .unwrap();
    // Queued before the pass, so it runs before the fd callbacks the pass's
    // poll queues after it.
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_soon(move || {
            assert_eq!(lp2.stats().ready, 2, "both readers are queued for this pass");
            assert!(lp2.remove_reader(fb));
            rec.push("remover");
        });
    }
    pass(&lp);
    assert_eq!(rec.get(), ["remover", "a"]);
    assert_eq!(lp.stats().callbacks_run, 2);
    pass(&lp);
    assert_eq!(rec.get(), ["remover", "a", "a"]);
    assert!(lp.remove_reader(fa));
    drop((a_rx, b_rx));
}

/// Two readers, each removing the other: whichever the poller reports
/// first runs, the other is skipped, in that pass and later ones.
#[test]
fn readers_removing_each_other_in_one_pass() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a_tx, a_rx) = socketpair();
    let (b_tx, b_rx) = socketpair();
    (&a_tx).write_all(b"a").unwrap();
    (&b_tx).write_all(b"b").unwrap();
    let fds = [a_rx.as_raw_fd(), b_rx.as_raw_fd()];
    let rec = Recorder::new();
    for i in 0..2 {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.add_reader(fds[i], move || {
            rec.push(i);
            if rec.len() == 1 {
                assert!(lp2.remove_reader(fds[1 - i]), "the other reader is still registered");
            }
        })
        .unwrap();
    }
    pass(&lp);
    assert_eq!(rec.len(), 1, "exactly one of them ran: {:?}", rec.get());
    let winner = rec.get()[0];
    assert_eq!(lp.stats().readers, 1);
    pass(&lp);
    assert_eq!(rec.get(), [winner, winner], "only the survivor runs on");
    assert!(lp.remove_reader(fds[winner]));
    drop((a_rx, b_rx));
}

#[test]
fn removing_a_writer_already_queued_in_this_pass_skips_it() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let rec = Recorder::new();
    for (fd, name) in [(fa, "a"), (fb, "b")] {
        let rec = rec.clone();
        lp.add_writer(fd, move || rec.push(name)).unwrap();
    }
    let lp2 = lp.clone();
    lp.call_soon(move || {
        assert_eq!(lp2.stats().ready, 2);
        assert!(lp2.remove_writer(fa));
        assert!(lp2.remove_writer(fb));
    });
    pass(&lp);
    assert!(rec.is_empty(), "{:?}", rec.get());
    assert_eq!(lp.stats().writers, 0);
}

// ------------------------------------------------------------ replacement

#[test]
fn add_reader_replaces_the_existing_reader() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"x").unwrap();
    let fd = b.as_raw_fd();
    let drops = Rc::new(Cell::new(0));
    let rec = Recorder::new();
    {
        let (rec, probe) = (rec.clone(), LoopProbe::new(&lp, &drops));
        lp.add_reader(fd, move || {
            let _p = &probe;
            rec.push("old");
        })
        .unwrap();
    }
    lp.add_reader(fd, {
        let rec = rec.clone();
        move || rec.push("new")
    })
    .unwrap();
    assert_eq!(drops.get(), 1, "the replaced closure is dropped at once");
    assert_eq!(lp.stats().readers, 1);
    pass(&lp);
    assert_eq!(rec.get(), ["new"]);
    assert!(lp.remove_reader(fd));
    assert_eq!(lp.stats().readers, 0);
    drop(b);
}

/// Replacing a reader whose event is already queued for this pass: the old
/// one is skipped; the new one waits for the next poll.
#[test]
fn replacing_a_reader_queued_in_this_pass() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"x").unwrap();
    let fd = b.as_raw_fd();
    let rec = Recorder::new();
    lp.add_reader(fd, {
        let rec = rec.clone();
        move || rec.push("old")
    })
    .unwrap();
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_soon(move || {
            assert_eq!(lp2.stats().ready, 1, "the old reader is queued");
            let rec2 = rec.clone();
            lp2.add_reader(fd, move || rec2.push("new")).unwrap();
            rec.push("replaced");
        });
    }
    pass(&lp);
    assert_eq!(rec.get(), ["replaced"]);
    pass(&lp);
    assert_eq!(rec.get(), ["replaced", "new"]);
    assert!(lp.remove_reader(fd));
    drop(b);
}

#[test]
fn reader_and_writer_on_one_fd() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"x").unwrap();
    let fd = b.as_raw_fd();
    let rec = Recorder::new();
    lp.add_writer(fd, {
        let rec = rec.clone();
        move || rec.push("w")
    })
    .unwrap();
    lp.add_reader(fd, {
        let rec = rec.clone();
        move || rec.push("r")
    })
    .unwrap();
    assert_eq!((lp.stats().readers, lp.stats().writers), (1, 1));
    pass(&lp);
    assert_eq!(rec.get(), ["r", "w"], "both run in one pass, the reader first");
    assert!(lp.remove_reader(fd));
    pass(&lp);
    assert_eq!(rec.get(), ["r", "w", "w"], "the writer keeps its registration");
    lp.add_reader(fd, {
        let rec = rec.clone();
        move || rec.push("r2")
    })
    .unwrap();
    assert!(lp.remove_writer(fd));
    pass(&lp);
    assert_eq!(rec.get(), ["r", "w", "w", "r2"], "and the reader survives removing the writer");
    assert!(lp.remove_reader(fd));
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));
    pass(&lp);
    assert_eq!(rec.len(), 4);
    drop(b);
}

// ------------------------------------------------------------ closed and reused fds

/// Sockets A and B are both readable, so one poll queues both readers. The
/// first of them to run removes the other's reader, closes the other's fd,
/// makes a new socket that gets the same fd number, and registers a reader
/// on it. The stale event of the old socket must not run the new reader in
/// this pass (nor the old, removed one); the new reader runs from the next
/// poll on.
#[test]
fn fd_closed_and_reused_in_the_same_batch_with_remove_reader() {
    fd_reuse_in_one_batch(true);
}

/// The same, but the closed fd's reader is *not* removed first. Closing the
/// socket made epoll drop the old registration by itself; `add_reader` on
/// the reused number then replaces the old (stale) callback in the loop's
/// bookkeeping — the queued copy of the old callback is skipped — and
/// registers the new socket with the poller afresh. Again nothing runs for
/// that fd in this pass, and the new reader runs from the next poll on.
#[test]
fn fd_closed_and_reused_in_the_same_batch_without_remove_reader() {
    fd_reuse_in_one_batch(false);
}

struct Side {
    rx: Option<UnixStream>,
    _tx: UnixStream,
    fd: RawFd,
    runs: u32,
}

fn fd_reuse_in_one_batch(remove_first: bool) {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let mut sides = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = socketpair();
        (&tx).write_all(b"data").unwrap();
        sides.push(Side { fd: rx.as_raw_fd(), rx: Some(rx), _tx: tx, runs: 0 });
    }
    let sides = Rc::new(RefCell::new(sides));
    let first: Rc<Cell<Option<usize>>> = Rc::new(Cell::new(None));
    let new_runs = Rc::new(Cell::new(0));
    let new_pair: Rc<RefCell<Option<(UnixStream, UnixStream)>>> = Rc::new(RefCell::new(None));

    for i in 0..2 {
        let (lp2, sides, first, new_runs, new_pair) =
            (lp.clone(), sides.clone(), first.clone(), new_runs.clone(), new_pair.clone());
        let fd = sides.borrow()[i].fd;
        lp.add_reader(fd, move || {
            sides.borrow_mut()[i].runs += 1;
            if first.get().is_some() {
                return;
            }
            first.set(Some(i));
            let other = 1 - i;
            assert_eq!(lp2.stats().ready, 1, "the other reader is queued for this pass");
            let other_fd = sides.borrow()[other].fd;
            if remove_first {
                assert!(lp2.remove_reader(other_fd));
            }
            let closed = sides.borrow_mut()[other].rx.take();
            drop(closed); // closes the fd
            let (new_rx, new_tx) = pair_with_fd(other_fd);
            assert_eq!(new_rx.as_raw_fd(), other_fd, "the fd number is reused");
            (&new_tx).write_all(b"new").unwrap(); // readable from the start
            let n = new_runs.clone();
            lp2.add_reader(other_fd, move || n.set(n.get() + 1)).unwrap();
            *new_pair.borrow_mut() = Some((new_rx, new_tx));
        })
        .unwrap();
    }

    pass(&lp);
    let winner = first.get().expect("a reader ran");
    let loser = 1 - winner;
    assert_eq!(sides.borrow()[winner].runs, 1);
    assert_eq!(sides.borrow()[loser].runs, 0, "the closed socket's queued reader was skipped");
    assert_eq!(new_runs.get(), 0, "the stale event did not reach the new reader");
    assert_eq!(lp.stats().readers, 2);

    pass(&lp);
    assert_eq!(new_runs.get(), 1, "the new registration is live");
    assert_eq!(sides.borrow()[winner].runs, 2);
    assert_eq!(sides.borrow()[loser].runs, 0);

    let fds: Vec<RawFd> = sides.borrow().iter().map(|s| s.fd).collect();
    for fd in fds {
        assert!(lp.remove_reader(fd));
    }
    assert_eq!(lp.stats().readers, 0);
    lp.close().unwrap();
}

/// The user closes the fd without `remove_reader`: epoll forgets it, so the
/// callback stops; the loop's bookkeeping stays until `remove_reader`, which
/// still succeeds and frees it.
#[test]
fn fd_closed_without_remove_reader() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"unread").unwrap();
    let fd = b.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    lp.add_reader(fd, move || {
        let _t = &token;
        r.set(r.get() + 1);
    })
    .unwrap();
    pass(&lp);
    assert_eq!(runs.get(), 1);
    drop(b); // closed with its data unread
    for _ in 0..3 {
        pass(&lp);
    }
    assert_eq!(runs.get(), 1, "a closed fd reports nothing");
    assert_eq!(lp.stats().readers, 1, "the loop does not know it was closed");
    assert_eq!(drops.get(), 0);
    assert!(lp.remove_reader(fd));
    assert_eq!(lp.stats().readers, 0);
    assert_eq!(drops.get(), 1, "remove_reader freed the closure");
    assert!(!lp.remove_reader(fd));
    drop(a);
}

#[test]
fn add_reader_on_a_closed_or_invalid_fd_is_an_io_error() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let closed = b.as_raw_fd();
    drop(b);
    let out = lp.add_reader(closed, || {});
    const EBADF: i32 = 9;
    assert!(matches!(&out, Err(Error::Io(e)) if e.raw_os_error() == Some(EBADF)), "{out:?}");
    let out = lp.add_writer(closed, || {});
    assert!(matches!(out, Err(Error::Io(_))), "{out:?}");
    assert!(matches!(lp.add_reader(-1, || {}), Err(Error::Io(_))));
    assert!(matches!(lp.add_reader(1_000_000, || {}), Err(Error::Io(_))));
    let s = lp.stats();
    assert_eq!((s.readers, s.writers), (0, 0), "nothing was registered");
    assert!(!lp.remove_reader(closed));
    // The loop is fine afterwards.
    lp.add_writer(a.as_raw_fd(), || {}).unwrap();
    assert!(lp.remove_writer(a.as_raw_fd()));
}

#[test]
fn add_reader_on_a_regular_file_is_an_io_error() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let path = std::env::temp_dir().join(format!("evloop-fds-test-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let out = lp.add_reader(file.as_raw_fd(), || {});
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(out, Err(Error::Io(_))), "{out:?}");
    assert_eq!(lp.stats().readers, 0);
}

/// Replacing the reader of an fd that was closed meanwhile fails, and the
/// old reader stays registered (so `remove_reader` can still free it).
#[test]
fn replacing_the_reader_of_a_closed_fd_fails_and_keeps_the_old_one() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    lp.add_reader(fd, move || {
        let _t = &token;
    })
    .unwrap();
    drop(b);
    let new_drops = DropCounter::new();
    let new_token = DropCounter::token(&new_drops);
    let out = lp.add_reader(fd, move || {
        let _t = &new_token;
    });
    assert!(matches!(out, Err(Error::Io(_))), "{out:?}");
    assert_eq!(new_drops.get(), 1, "the refused closure was dropped");
    assert_eq!(drops.get(), 0, "the old one was kept");
    assert_eq!(lp.stats().readers, 1);
    assert!(lp.remove_reader(fd));
    assert_eq!(drops.get(), 1);
    drop(a);
}

// ------------------------------------------------------------ stale registrations

/// Fills the send buffer of `s` (nonblocking) so that it is not writable.
fn fill(s: &UnixStream) {
    let chunk = [0u8; 64 * 1024];
    loop {
        match (&*s).write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Opens `/dev/null` until a number above `fd` comes back, holding every
/// free number below `fd`: once `fd` is closed, it is the lowest free
/// number, so the next socket gets it.
fn hold_numbers_below(fd: RawFd) -> Vec<std::fs::File> {
    let mut held = Vec::new();
    loop {
        let f = std::fs::File::open("/dev/null").unwrap();
        if f.as_raw_fd() > fd {
            return held;
        }
        held.push(f);
    }
}

/// Defect: a writer left on a closed fd came back when the number was
/// reused, because registering on the new file re-armed the old entry.
/// Here the old writer is queued for the very pass in which a callback
/// closes its socket (no `remove_writer`), takes the number for a new
/// socket and puts a reader on it: the queued copy is skipped, the old
/// closure is dropped, and it never runs again; the new reader works and
/// `remove_*` act on the new registration only.
#[test]
fn stale_writer_never_runs_after_its_number_is_reused_for_a_user_reader() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (old, _old_peer) = socketpair();
    let fd = old.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let (old_runs, mut bump) = counter();
    // An empty socket buffer: writable on every pass.
    lp.add_writer(fd, move || {
        let _t = &token;
        bump();
    })
    .unwrap();
    pass(&lp);
    assert_eq!(old_runs.get(), 1);

    let (new_runs, new_reader) = counter();
    let new_pair = Rc::new(RefCell::new(None));
    let (lp2, slot) = (lp.clone(), new_pair.clone());
    lp.call_soon(move || {
        assert_eq!(lp2.stats().ready, 1, "the old writer is queued behind this callback");
        drop(old); // closed without remove_writer
        let (new, peer) = pair_with_fd(fd);
        (&peer).write_all(b"x").unwrap(); // readable, and writable too
        lp2.add_reader(fd, new_reader).unwrap();
        *slot.borrow_mut() = Some((new, peer));
    });
    pass(&lp);
    assert_eq!(old_runs.get(), 1, "the queued copy of the stale writer was skipped");
    assert_eq!(drops.get(), 1, "the stale writer was dropped when its number was reused");
    for _ in 0..5 {
        pass(&lp);
    }
    assert_eq!(old_runs.get(), 1, "the stale writer never came back");
    assert_eq!(new_runs.get(), 5, "the new reader runs on every pass");
    assert_eq!((lp.stats().readers, lp.stats().writers), (1, 0));
    assert!(!lp.remove_writer(fd), "the new file has no writer");
    assert!(lp.remove_reader(fd));
    pass(&lp);
    assert_eq!(new_runs.get(), 5);
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));
}

/// The same with the directions swapped: a reader left on a closed fd
/// (queued, with data unread) and a writer on the file that reuses its
/// number. The new file has data waiting too, so a resurrected reader
/// would run.
#[test]
fn stale_reader_never_runs_after_its_number_is_reused_for_a_user_writer() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (old, old_peer) = socketpair();
    (&old_peer).write_all(b"unread").unwrap();
    let fd = old.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let (old_runs, mut bump) = counter();
    lp.add_reader(fd, move || {
        let _t = &token;
        bump();
    })
    .unwrap();
    pass(&lp);
    assert_eq!(old_runs.get(), 1);

    let (new_runs, new_writer) = counter();
    let new_pair = Rc::new(RefCell::new(None));
    let (lp2, slot) = (lp.clone(), new_pair.clone());
    lp.call_soon(move || {
        assert_eq!(lp2.stats().ready, 1, "the old reader is queued behind this callback");
        drop(old);
        let (new, peer) = pair_with_fd(fd);
        (&peer).write_all(b"new data").unwrap();
        lp2.add_writer(fd, new_writer).unwrap();
        *slot.borrow_mut() = Some((new, peer));
    });
    pass(&lp);
    assert_eq!(old_runs.get(), 1, "the queued copy of the stale reader was skipped");
    assert_eq!(drops.get(), 1);
    for _ in 0..5 {
        pass(&lp);
    }
    assert_eq!(old_runs.get(), 1, "the stale reader never came back");
    assert_eq!(new_runs.get(), 5);
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 1));
    assert!(!lp.remove_reader(fd), "the new file has no reader");
    assert!(lp.remove_writer(fd));
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));
}

/// The reported case: a writer left on a closed fd whose number then goes
/// to a connection a server accepts (in the same pass as the close). The
/// stale writer — which, like the program that found the bug, writes to
/// the fd by number — must never run: no bytes of it reach the client, the
/// transport echoes normally, and the user's `remove_writer`/`add_writer`
/// leave the transport's fd alone.
#[test]
fn stale_writer_never_runs_after_its_number_goes_to_an_accepted_transport() {
    let _g = fd_lock();
    let _dog = Watchdog::new("stale_writer_never_runs_after_…_accepted_transport", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let conns: Rc<RefCell<Vec<Rc<util::ConnState>>>> = Rc::new(RefCell::new(Vec::new()));
    let server = {
        let (l, conns) = (lp.clone(), conns.clone());
        lp.run_until_complete(async move {
            let factory = move || {
                let (proto, state) = util::RecProto::echo();
                conns.borrow_mut().push(state);
                proto
            };
            l.create_server(factory, "127.0.0.1", 0, Default::default()).await
        })
        .unwrap()
        .unwrap()
    };
    let addr = server.local_addr().unwrap();

    let (old, _old_peer) = socketpair();
    fill(&old); // not writable: the writer waits while the fd is open
    let fd = old.as_raw_fd();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let (old_runs, mut bump) = counter();
    lp.add_writer(fd, move || {
        let _t = &token;
        bump();
        // SAFETY: writes from a valid buffer; a closed fd gives EBADF.
        unsafe { libc::write(fd, b"stale".as_ptr().cast(), 5) };
    })
    .unwrap();
    pass(&lp);
    assert_eq!(old_runs.get(), 0);

    let held = hold_numbers_below(fd);
    let mut client = TcpStream::connect(addr).unwrap(); // waits in the backlog
    // Queued ahead of the listener's reader: the accept in this same pass
    // gets the number just freed.
    lp.call_soon(move || drop(old));
    pass(&lp);
    drop(held);
    assert_eq!(conns.borrow().len(), 1, "the server accepted in the pass that closed the fd");
    assert_eq!(drops.get(), 1, "the stale writer was dropped when a transport took its number");
    pass(&lp); // connection_made
    let transport = conns.borrow()[0].transport();
    assert_eq!(transport.fd(), fd, "the accepted socket reuses the number");
    assert!(!lp.remove_writer(fd), "the user has no writer on the transport's fd");
    assert!(matches!(lp.add_writer(fd, || {}), Err(Error::InvalidState(_))));
    assert!(!lp.remove_reader(fd), "the transport's reader is not the user's to remove");

    let remote = lp.remote();
    let peer = std::thread::spawn(move || {
        client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        client.write_all(b"hello").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let read = client.read_to_end(&mut got);
        remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
        read.map(|_| got)
    });
    lp.run_forever().unwrap();
    let got = peer.join().unwrap().unwrap();
    assert_eq!(got, b"hello", "only the echo reached the client");
    assert_eq!(old_runs.get(), 0, "the stale writer never ran");
    server.close();
    lp.close().unwrap();
}

// ------------------------------------------------------------ wait_readable / wait_writable

fn poll_once(fut: &mut evloop::runtime::WaitReady) -> std::task::Poll<evloop::Result<()>> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(fut).poll(&mut cx)
}

#[test]
fn wait_readable_completes_when_data_arrives() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let task = lp.create_task({
        let lp = lp.clone();
        async move { lp.wait_readable(fd).await }
    });
    lp.run_until_idle().unwrap();
    assert!(!task.done(), "nothing to read yet");
    assert_eq!(lp.stats().readers, 1);
    (&a).write_all(b"x").unwrap();
    lp.run_until_complete(task).unwrap().unwrap().unwrap();
    assert_eq!(lp.stats().readers, 0, "a finished wait leaves nothing registered");
    // A writable socket is ready at once.
    lp.run_until_complete(lp.wait_writable(fd)).unwrap().unwrap();
    drop(b);
}

/// Every waiter on one fd is told, a reader callback on it too; dropping
/// one waiter leaves the others (and the callback) registered.
#[test]
fn waiters_and_a_reader_share_one_fd() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let (reader_runs, reader) = counter();
    lp.add_reader(fd, reader).unwrap();
    let woke = Rc::new(Cell::new(0));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (lp, woke) = (lp.clone(), woke.clone());
            lp.clone().create_task(async move {
                lp.wait_readable(fd).await.unwrap();
                woke.set(woke.get() + 1);
            })
        })
        .collect();
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().readers, 1, "one fd, one registration");
    assert!(tasks[1].cancel());
    lp.run_until_idle().unwrap();
    assert_eq!(woke.get(), 0);
    (&a).write_all(b"x").unwrap();
    pass(&lp); // the poll wakes the waiters and queues the reader
    pass(&lp); // the woken tasks finish
    assert_eq!(woke.get(), 2, "both remaining waiters woke");
    assert!(reader_runs.get() >= 1);
    assert!(tasks[0].done() && tasks[2].done() && tasks[1].cancelled());
    assert_eq!(lp.stats().readers, 1, "the reader stays");
    assert!(lp.remove_reader(fd));
    assert_eq!(lp.stats().readers, 0);
}

/// Cancel safety at the future level: a dropped wait frees its
/// registration and nothing else.
#[test]
fn dropping_a_pending_wait_removes_only_its_registration() {
    let _g = fd_lock();
    let lp = manual_loop();
    let (_a, b) = socketpair();
    let fd = b.as_raw_fd();
    let mut first = lp.wait_readable(fd);
    let mut second = lp.wait_readable(fd);
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(lp.stats().readers, 1);
    drop(first);
    assert_eq!(lp.stats().readers, 1, "the second wait is still registered");
    drop(second);
    assert_eq!(lp.stats().readers, 0);
    // An unpolled future never registered anything.
    drop(lp.wait_writable(fd));
    assert_eq!(lp.stats().writers, 0);
}

#[test]
fn wait_readable_errors() {
    let _g = fd_lock();
    let lp = manual_loop();
    // A closed fd.
    let (a, b) = socketpair();
    let closed = b.as_raw_fd();
    drop(b);
    let out = lp.run_until_complete(lp.wait_readable(closed)).unwrap();
    assert!(matches!(&out, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EBADF)), "{out:?}");
    // A regular file.
    let path = std::env::temp_dir().join(format!("evloop-wait-test-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let out = lp.run_until_complete(lp.wait_writable(file.as_raw_fd())).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(out, Err(Error::Io(_))), "{out:?}");
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));

    // Waiting on a socket whose number is closed and reused meanwhile:
    // the first registration on the new file ends the old wait.
    let fd = a.as_raw_fd();
    let mut wait = lp.wait_readable(fd);
    assert!(poll_once(&mut wait).is_pending());
    drop(a);
    let (new, _peer) = pair_with_fd(fd);
    lp.add_writer(fd, || {}).unwrap();
    let out = poll_once(&mut wait);
    assert!(matches!(&out, std::task::Poll::Ready(Err(Error::Io(_)))), "{out:?}");
    assert!(lp.remove_writer(fd));
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));

    // The loop closes (or goes) while a wait is pending.
    let mut wait = lp.wait_writable(new.as_raw_fd());
    let mut other = lp.wait_readable(new.as_raw_fd());
    assert!(poll_once(&mut wait).is_pending());
    assert!(poll_once(&mut other).is_pending());
    lp.close().unwrap();
    assert!(matches!(poll_once(&mut wait), std::task::Poll::Ready(Err(Error::Closed))));
    drop(lp);
    assert!(matches!(poll_once(&mut other), std::task::Poll::Ready(Err(Error::Closed))));
}

// ------------------------------------------------------------ nothing outlives the loop

/// Readers, writers and tasks blocked in `wait_*` and `sock_*` pending at
/// `close()` are all freed, and the loop's fds with them.
#[test]
fn pending_fd_callbacks_and_waits_are_freed_by_close() {
    let _g = fd_lock();
    let fds_before = util::open_fd_count();
    let drops = DropCounter::new();
    let (a, b) = socketpair();
    let b = Rc::new(b);
    let lp = manual_loop();
    let token = DropCounter::token(&drops);
    lp.add_reader(b.as_raw_fd(), move || {
        let _t = &token;
    })
    .unwrap();
    let token = DropCounter::token(&drops);
    lp.add_writer(a.as_raw_fd(), move || {
        let _t = &token;
    })
    .unwrap();
    for _ in 0..2 {
        let (wait, token) = (lp.wait_readable(b.as_raw_fd()), DropCounter::token(&drops));
        lp.create_task(async move {
            let _t = token;
            let _ = wait.await;
        });
        let (l, s, token) = (lp.clone(), b.clone(), DropCounter::token(&drops));
        lp.create_task(async move {
            let _t = token;
            let _ = l.sock_recv(&*s, 10).await;
        });
    }
    lp.run_until_idle().unwrap();
    assert_eq!(drops.get(), 0, "everything is still waiting");
    assert_eq!(lp.stats().readers, 1, "one fd watched for reading");
    lp.close().unwrap();
    assert_eq!(drops.get(), 6, "close() freed the callbacks and the waiting tasks");
    assert_eq!((lp.stats().readers, lp.stats().writers), (0, 0));
    drop(lp);
    drop((a, b));
    assert_eq!(util::open_fd_count(), fds_before, "the loop's fds are closed");
}

/// Dropping the last handle without `close()` frees the fd callbacks and
/// the loop's fds even while `wait_*` futures are pending: they hold the
/// loop weakly, and fail with `Closed` afterwards.
#[test]
fn a_loop_dropped_with_pending_waits_frees_everything() {
    let _g = fd_lock();
    let fds_before = util::open_fd_count();
    let drops = DropCounter::new();
    let (a, b) = socketpair();
    let lp = manual_loop();
    let token = DropCounter::token(&drops);
    lp.add_reader(b.as_raw_fd(), move || {
        let _t = &token;
    })
    .unwrap();
    let mut waits = [lp.wait_readable(b.as_raw_fd()), lp.wait_writable(a.as_raw_fd())];
    for w in &mut waits {
        assert!(poll_once(w).is_pending());
    }
    drop(lp);
    assert_eq!(drops.get(), 1, "the reader was freed with the loop");
    for w in &mut waits {
        assert!(matches!(poll_once(w), std::task::Poll::Ready(Err(Error::Closed))));
    }
    drop(waits);
    drop((a, b));
    assert_eq!(util::open_fd_count(), fds_before, "the loop's fds are closed");
}

/// `sock_*` waits leave a lasting registration on their fd (re-armed by the
/// next wait). Once the socket is closed and its number reused, that
/// registration is found stale: a reader, a `sock_recv` and a transport on
/// the new file all work, and the old socket's data never reaches them.
#[test]
fn a_lasting_sock_registration_gives_way_when_its_number_is_reused() {
    let _g = fd_lock();
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    b.set_nonblocking(true).unwrap();
    let fd = b.as_raw_fd();
    let b = Rc::new(b);
    // Two completed waits: one Source, registered across them.
    for msg in [&b"one"[..], b"two"] {
        let waiting = {
            let (l, b) = (lp.clone(), b.clone());
            lp.create_task(async move { l.sock_recv(&*b, 16).await })
        };
        pass(&lp);
        (&a).write_all(msg).unwrap();
        assert_eq!(lp.run_until_complete(waiting).unwrap().unwrap().unwrap(), msg);
        assert_eq!(lp.stats().readers, 0, "nothing is watched between waits");
    }
    // Data left unread on the old file, which is then closed.
    (&a).write_all(b"stale").unwrap();
    drop(Rc::try_unwrap(b).expect("the tasks are done with it"));
    let (c, d) = pair_with_fd(fd);
    let (runs, count) = counter();
    lp.add_reader(fd, count).unwrap();
    for _ in 0..3 {
        pass(&lp);
    }
    assert_eq!(runs.get(), 0, "the new file has no data: the old one's does not leak in");
    (&d).write_all(b"new").unwrap();
    pass(&lp);
    assert_eq!(runs.get(), 1);
    assert!(lp.remove_reader(fd));
    c.set_nonblocking(true).unwrap();
    let (got, c) = {
        let l = lp.clone();
        lp.run_until_complete(async move { (l.sock_recv(&c, 16).await, c) }).unwrap()
    };
    assert_eq!(got.unwrap(), b"new");
    // That wait left a lasting Source on the new file too; a transport
    // claiming the socket takes the number over from it.
    let (l, conn) = (lp.clone(), c);
    let (t, state) = lp
        .run_until_complete(async move {
            let (proto, state) = util::RecProto::new();
            let (t, _) = l.connect_accepted_socket(move || proto, conn).await.unwrap();
            (t, state)
        })
        .unwrap();
    (&d).write_all(b"to the transport").unwrap();
    let st = state.clone();
    lp.run_until_complete(async move { st.until("data", |s| s.data().len() == 16).await }).unwrap();
    assert_eq!(state.data(), b"to the transport");
    t.close();
    lp.run_until_idle().unwrap();
    assert!(state.is_lost());
    drop(d);
    drop(a);
}

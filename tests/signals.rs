//! Signals on the loop: `add_signal_handler` / `remove_signal_handler`.
//!
//! The tests of this binary run in parallel threads of one process, and a
//! disposition is process-wide: each test owns its own signal (a standard
//! one nobody else here uses, or a real-time one), so none sees another's.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use evloop::EventLoop;
use util::{DropCounter, Watchdog, capture_exceptions, fail_on_callback_errors};

/// Real-time signal `n`: the default action (ending the process) makes a
/// missed handler loud, and there are enough for one per test.
fn rt(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

/// Whether `sig` has its default disposition, as `sigaction` reports it.
fn is_default(sig: i32) -> bool {
    // SAFETY: a zeroed sigaction is valid; a null new action only queries.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0, "sigaction query");
        old.sa_sigaction == libc::SIG_DFL
    }
}

/// Sends `sig` to the calling thread: the process-wide handler runs on
/// it before `raise` returns.
fn raise(sig: i32) {
    // SAFETY: raise has no memory-safety preconditions.
    assert_eq!(unsafe { libc::raise(sig) }, 0, "raise");
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Blocks until thread `tid` of this process sits in an epoll wait: the
/// loop on it is blocked with nothing to do (explicit synchronisation,
/// read from /proc, instead of a sleep).
fn wait_until_blocked_in_epoll(tid: i32) {
    let mut waits = vec![libc::SYS_epoll_pwait, 441 /* epoll_pwait2 */];
    #[cfg(target_arch = "x86_64")]
    waits.push(libc::SYS_epoll_wait);
    let path = format!("/proc/self/task/{tid}/syscall");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&path).expect("read the thread's current syscall");
        let nr = text.split_whitespace().next().and_then(|n| n.parse::<i64>().ok());
        if nr.is_some_and(|nr| waits.contains(&nr)) {
            return;
        }
        assert!(Instant::now() < deadline, "thread {tid} never blocked in epoll: {text}");
        thread::yield_now();
    }
}

#[test]
fn handler_runs_on_the_loop_when_another_thread_raises_while_it_blocks() {
    let _dog = Watchdog::new("signal from another thread", Duration::from_secs(30));
    let sig = libc::SIGUSR1;
    let lp = EventLoop::new().unwrap();
    let _errors = fail_on_callback_errors(&lp);
    let ran_on = Rc::new(Cell::new(None));
    let (r, stopper) = (ran_on.clone(), lp.clone());
    lp.add_signal_handler(sig, move || {
        // An ordinary callback: the loop is running, on its own thread.
        assert!(evloop::get_running_loop().is_ok());
        r.set(Some(thread::current().id()));
        stopper.stop();
    })
    .unwrap();
    let tid = gettid();
    let sender = thread::spawn(move || {
        wait_until_blocked_in_epoll(tid);
        raise(sig); // delivered to the sender thread itself
    });
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert_eq!(ran_on.get(), Some(thread::current().id()));
    assert!(lp.remove_signal_handler(sig).unwrap());
    lp.close().unwrap();
}

#[test]
fn handler_runs_when_a_child_process_sends_the_signal() {
    let _dog = Watchdog::new("signal from a child", Duration::from_secs(30));
    let sig = libc::SIGUSR2;
    let lp = EventLoop::new().unwrap();
    let _errors = fail_on_callback_errors(&lp);
    let calls = Rc::new(Cell::new(0));
    let (c, stopper) = (calls.clone(), lp.clone());
    lp.add_signal_handler(sig, move || {
        c.set(c.get() + 1);
        stopper.stop();
    })
    .unwrap();
    let tid = gettid();
    let sender = thread::spawn(move || {
        wait_until_blocked_in_epoll(tid);
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(std::process::id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    });
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert_eq!(calls.get(), 1);
    lp.close().unwrap();
    assert!(is_default(sig), "close() restores the default disposition");
}

#[test]
fn deliveries_before_a_pass_merge_into_one_call() {
    let sig = rt(0);
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(sig, move || c.set(c.get() + 1)).unwrap();
    raise(sig);
    raise(sig);
    assert_eq!(calls.get(), 0, "never run in signal context");
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 1);
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 2);
    lp.close().unwrap();
}

#[test]
fn a_second_add_replaces_the_first() {
    let sig = rt(1);
    let lp = EventLoop::new().unwrap();
    let (first, second) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let first_dropped = DropCounter::new();
    let (f, token) = (first.clone(), DropCounter::token(&first_dropped));
    lp.add_signal_handler(sig, move || {
        let _ = &token;
        f.set(f.get() + 1);
    })
    .unwrap();
    let s = second.clone();
    lp.add_signal_handler(sig, move || s.set(s.get() + 1)).unwrap();
    assert_eq!(first_dropped.get(), 1, "the replaced handler is dropped at once");
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!((first.get(), second.get()), (0, 1));
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert!(is_default(sig));
}

#[test]
fn remove_restores_the_default_disposition() {
    let sig = libc::SIGWINCH;
    let lp = EventLoop::new().unwrap();
    assert!(is_default(sig));
    assert!(!lp.remove_signal_handler(sig).unwrap(), "nothing to remove");
    lp.add_signal_handler(sig, || {}).unwrap();
    assert!(!is_default(sig), "caught while the handler is installed");
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert!(is_default(sig));
    assert!(!lp.remove_signal_handler(sig).unwrap());
    // Adding again after a restore catches the signal again.
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(sig, move || c.set(c.get() + 1)).unwrap();
    assert!(!is_default(sig));
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 1);
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert!(is_default(sig));
}

#[test]
fn a_removed_handler_does_not_run_its_queued_call() {
    let sig = rt(2);
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(sig, move || c.set(c.get() + 1)).unwrap();
    // A callback queued before the signal's call removes the handler.
    let l = lp.clone();
    lp.call_soon(move || assert!(l.remove_signal_handler(sig).unwrap()));
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 0);
    assert!(is_default(sig));
}

#[test]
fn two_loops_on_two_threads_both_get_one_signal() {
    let _dog = Watchdog::new("two loops, one signal", Duration::from_secs(30));
    let sig = rt(3);
    let ready = Arc::new(Barrier::new(3));
    let (tids_tx, tids_rx) = mpsc::channel();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (ready, tids_tx) = (ready.clone(), tids_tx.clone());
            thread::spawn(move || {
                let lp = EventLoop::new().unwrap();
                let calls = Rc::new(Cell::new(0));
                let (c, stopper) = (calls.clone(), lp.clone());
                lp.add_signal_handler(sig, move || {
                    c.set(c.get() + 1);
                    stopper.stop();
                })
                .unwrap();
                tids_tx.send(gettid()).unwrap();
                ready.wait();
                lp.run_forever().unwrap();
                lp.close().unwrap();
                calls.get()
            })
        })
        .collect();
    ready.wait();
    for tid in tids_rx.iter().take(2) {
        wait_until_blocked_in_epoll(tid);
    }
    // One process-directed signal: the OS runs the handler on one thread,
    // which wakes both loops.
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
    let calls: Vec<usize> = loops.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(calls, [1, 1]);
    assert!(is_default(sig), "the last loop to close restores the disposition");
}

#[test]
fn one_loop_removing_keeps_the_signal_caught_for_the_other() {
    let sig = rt(4);
    let (a, b) = (EventLoop::new().unwrap(), EventLoop::new().unwrap());
    let calls = Rc::new(Cell::new(0));
    a.add_signal_handler(sig, || {}).unwrap();
    let c = calls.clone();
    b.add_signal_handler(sig, move || c.set(c.get() + 1)).unwrap();
    assert!(a.remove_signal_handler(sig).unwrap());
    assert!(!is_default(sig), "b still watches it");
    raise(sig);
    b.run_until_idle().unwrap();
    assert_eq!(calls.get(), 1);
    drop(b); // dropped without close(): restores too
    assert!(is_default(sig));
}

#[test]
fn invalid_and_uncatchable_signals_are_refused_with_their_name() {
    let lp = EventLoop::new().unwrap();
    let cases = [
        (libc::SIGKILL, "add_signal_handler(SIGKILL): SIGKILL cannot be caught"),
        (libc::SIGSTOP, "add_signal_handler(SIGSTOP): SIGSTOP cannot be caught"),
        (0, "add_signal_handler(signal 0): invalid signal number 0"),
        (-1, "add_signal_handler(signal -1): invalid signal number -1"),
        (1000, "add_signal_handler(signal 1000): invalid signal number 1000"),
    ];
    for (sig, message) in cases {
        let e = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert_eq!(e.to_string(), message);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput));
        assert!(lp.remove_signal_handler(sig).is_err());
    }
    let e = lp.add_signal_handler(libc::SIGSEGV, || {}).unwrap_err();
    assert!(e.to_string().starts_with("add_signal_handler(SIGSEGV): SIGSEGV is raised by a faulting"), "{e}");
    // Reserved by the C library (its threads use them): the OS refuses.
    if libc::SIGRTMIN() > 32 {
        let e = lp.add_signal_handler(32, || {}).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        assert!(e.to_string().starts_with("add_signal_handler(signal 32): "), "{e}");
    }
    // The loop is untouched and keeps working.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true));
    lp.run_until_idle().unwrap();
    assert!(ran.get());
    lp.close().unwrap();
    assert!(matches!(lp.add_signal_handler(rt(5), || {}), Err(evloop::Error::Closed)));
    assert!(is_default(rt(5)));
    assert!(!lp.remove_signal_handler(rt(5)).unwrap());
}

#[test]
fn a_panicking_handler_is_reported_and_stays_installed() {
    let sig = rt(6);
    let lp = EventLoop::new().unwrap();
    let seen = capture_exceptions(&lp);
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(sig, move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            panic!("handler failed");
        }
    })
    .unwrap();
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 1);
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert!(matches!(&seen[0].error, Some(evloop::Error::Panicked(m)) if m == "handler failed"));
        let at = seen[0].location.expect("where the handler was added");
        assert_eq!(at.file(), file!());
    }
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 2, "still installed after its panic");
    lp.close().unwrap();
    assert!(is_default(sig));
}

#[test]
fn a_handler_can_remove_itself_and_add_others_from_inside() {
    let (sig, other) = (rt(7), rt(8));
    let lp = EventLoop::new().unwrap();
    let _errors = fail_on_callback_errors(&lp);
    let dropped = DropCounter::new();
    let other_calls = Rc::new(Cell::new(0));
    let (l, token, oc) = (lp.clone(), DropCounter::token(&dropped), other_calls.clone());
    let d = dropped.clone();
    lp.add_signal_handler(sig, move || {
        let _ = &token;
        assert!(l.remove_signal_handler(sig).unwrap());
        // Still alive: dropped after it returns, not under its own feet.
        assert_eq!(d.get(), 0);
        let oc = oc.clone();
        l.add_signal_handler(other, move || oc.set(oc.get() + 1)).unwrap();
    })
    .unwrap();
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(dropped.get(), 1);
    assert!(is_default(sig));
    raise(other);
    lp.run_until_idle().unwrap();
    assert_eq!(other_calls.get(), 1);
    lp.close().unwrap();
    assert!(is_default(other));
}

#[test]
fn close_drops_the_handlers_and_restores_their_dispositions() {
    let (a, b) = (rt(9), rt(10));
    let lp = EventLoop::new().unwrap();
    let dropped = DropCounter::new();
    for sig in [a, b] {
        let token = DropCounter::token(&dropped);
        lp.add_signal_handler(sig, move || {
            let _ = &token;
        })
        .unwrap();
    }
    raise(a); // pending when the loop closes: never runs
    lp.close().unwrap();
    assert_eq!(dropped.get(), 2);
    assert!(is_default(a) && is_default(b));
    assert!(!lp.remove_signal_handler(a).unwrap());
}

#[test]
fn a_handler_that_replaces_itself_keeps_the_new_one() {
    let sig = rt(11);
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (l, lg) = (lp.clone(), log.clone());
    lp.add_signal_handler(sig, move || {
        lg.borrow_mut().push("first");
        let lg = lg.clone();
        l.add_signal_handler(sig, move || lg.borrow_mut().push("second")).unwrap();
    })
    .unwrap();
    for _ in 0..2 {
        raise(sig);
        lp.run_until_idle().unwrap();
    }
    assert_eq!(*log.borrow(), ["first", "second"]);
    lp.close().unwrap();
}

/// Joins a thread when dropped (the main task's future is dropped by the
/// cancel, which must not leave the sender running).
struct JoinOnDrop(Option<thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.join().unwrap();
        }
    }
}

/// The only test here that touches `SIGINT`: plain `run` leaves it alone,
/// `run_with(cancel_on_ctrl_c)` takes it for the main task and restores it.
#[test]
fn ctrl_c_cancels_the_main_task_only_when_asked() {
    let _dog = Watchdog::new("ctrl-c runner", Duration::from_secs(30));
    let sig = libc::SIGINT;
    assert!(is_default(sig));
    evloop::run(async move { assert!(is_default(sig), "run leaves signals alone") }).unwrap();

    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = dropped.clone();
    let out = evloop::run_with(evloop::RunOptions::new().cancel_on_ctrl_c(true), async move {
        assert!(!is_default(sig), "SIGINT is caught while the main task runs");
        let _token = util::SendDropCounter::token(&d);
        let tid = gettid();
        let _sender = JoinOnDrop(Some(thread::spawn(move || {
            wait_until_blocked_in_epoll(tid);
            raise(sig);
        })));
        std::future::pending::<()>().await;
    });
    assert!(matches!(out, Err(evloop::Error::Cancelled)), "{out:?}");
    assert_eq!(dropped.load(std::sync::atomic::Ordering::SeqCst), 1, "the main future was dropped");
    assert!(is_default(sig), "a second Ctrl-C has its default action");

    // The first Ctrl-C restores the default at once, in the signal handler:
    // before the loop has run the handler that cancels the task.
    let out = evloop::run_with(evloop::RunOptions::new().cancel_on_ctrl_c(true), async move {
        raise(sig);
        assert!(is_default(sig), "a second Ctrl-C would end the process now");
        std::future::pending::<()>().await;
    });
    assert!(matches!(out, Err(evloop::Error::Cancelled)), "{out:?}");

    // Done without a Ctrl-C: the result comes back and SIGINT is restored.
    let out = evloop::run_with(evloop::RunOptions::new().cancel_on_ctrl_c(true), async { 7 });
    assert_eq!(out.unwrap(), 7);
    assert!(is_default(sig));
}

/// Calls into the loop's signal handling from its destructor: panics
/// (reported, then caught by the test) if a borrow were alive.
struct RemovesOnDrop {
    lp: EventLoop,
    sig: i32,
    drops: Rc<Cell<usize>>,
}

impl Drop for RemovesOnDrop {
    fn drop(&mut self) {
        let _ = self.lp.remove_signal_handler(self.sig).unwrap();
        let _ = self.lp.add_signal_handler(self.sig, || {});
        let _ = self.lp.remove_signal_handler(self.sig).unwrap();
        self.drops.set(self.drops.get() + 1);
    }
}

#[test]
fn handler_destructors_may_call_the_loop() {
    let (sig, other) = (rt(12), rt(13));
    let lp = EventLoop::new().unwrap();
    let seen = capture_exceptions(&lp);
    let drops = Rc::new(Cell::new(0));
    let probe = || RemovesOnDrop { lp: lp.clone(), sig: other, drops: drops.clone() };
    let p = probe();
    lp.add_signal_handler(sig, move || {
        let _ = &p;
    })
    .unwrap();
    lp.add_signal_handler(sig, || {}).unwrap(); // replaces: drops the first
    assert_eq!(drops.get(), 1);
    let p = probe();
    lp.add_signal_handler(sig, move || {
        let _ = &p;
    })
    .unwrap();
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert_eq!(drops.get(), 2);
    let p = probe();
    lp.add_signal_handler(sig, move || {
        let _ = &p;
    })
    .unwrap();
    lp.close().unwrap();
    assert_eq!(drops.get(), 3);
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    assert!(is_default(sig) && is_default(other));
}

/// A second Ctrl-C ends the process even while the loop is stuck in a
/// callback (here: the main task, between two raises with no await). Run
/// in a child process, which the signal kills.
#[test]
fn a_second_ctrl_c_ends_a_stuck_program() {
    use std::os::unix::process::ExitStatusExt;
    const CHILD: &str = "EVLOOP_TEST_SECOND_CTRL_C";
    if std::env::var_os(CHILD).is_some() {
        let _ = evloop::run_with(evloop::RunOptions::new().cancel_on_ctrl_c(true), async {
            raise(libc::SIGINT);
            println!("first Ctrl-C survived");
            raise(libc::SIGINT);
            println!("second Ctrl-C survived");
        });
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_second_ctrl_c_ends_a_stuck_program", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}\n{stdout}", out.status);
    assert!(stdout.contains("first Ctrl-C survived"), "{stdout}");
    assert!(!stdout.contains("second Ctrl-C survived"), "{stdout}");
}

/// The disposition of `sig` as a raw handler value (SIG_DFL, SIG_IGN or a
/// function's address).
fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: as in `is_default`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0, "sigaction query");
        old.sa_sigaction
    }
}

#[test]
fn remove_restores_the_disposition_it_found_not_always_the_default() {
    let sig = rt(14);
    // SAFETY: SIG_IGN is a valid disposition for a real-time signal.
    assert_ne!(unsafe { libc::signal(sig, libc::SIG_IGN) }, libc::SIG_ERR);
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(sig, move || c.set(c.get() + 1)).unwrap();
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 1, "caught although it was ignored before");
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert_eq!(handler_of(sig), libc::SIG_IGN, "ignored again, as it was found");
    raise(sig); // ignored: nothing happens
    // SAFETY: as above.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

#[test]
fn another_library_watching_the_same_signal_keeps_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sig = rt(15);
    let theirs = Arc::new(AtomicUsize::new(0));
    let t = theirs.clone();
    // SAFETY: the action is one atomic increment: async-signal-safe.
    let id = unsafe {
        signal_hook_registry::register(sig, move || {
            t.fetch_add(1, Ordering::SeqCst);
        })
    }
    .unwrap();
    let installed = handler_of(sig);
    let lp = EventLoop::new().unwrap();
    let ours = Rc::new(Cell::new(0));
    let o = ours.clone();
    lp.add_signal_handler(sig, move || o.set(o.get() + 1)).unwrap();
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!((theirs.load(Ordering::SeqCst), ours.get()), (1, 1), "both watchers get it");
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert_eq!(handler_of(sig), installed, "left caught for the other library");
    raise(sig);
    lp.run_until_idle().unwrap();
    assert_eq!((theirs.load(Ordering::SeqCst), ours.get()), (2, 1));
    lp.close().unwrap();
    assert!(signal_hook_registry::unregister(id));
}

/// 500 handshakes: a thread sends the signal (process-directed, so the OS
/// runs the handler on whichever thread it picks, the loop's included)
/// and waits until the loop has run the handler before sending the next.
/// A lost wake-up between the loop's drain and its next wait would hang
/// here (and the watchdog would abort).
#[test]
fn no_signal_is_lost_between_passes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 500;
    let _dog = Watchdog::new("signal handshakes", Duration::from_secs(60));
    let sig = rt(16);
    let lp = EventLoop::new().unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let (h, stopper) = (handled.clone(), lp.clone());
    lp.add_signal_handler(sig, move || {
        if h.fetch_add(1, Ordering::SeqCst) + 1 == N {
            stopper.stop();
        }
    })
    .unwrap();
    let h = handled.clone();
    let sender = thread::spawn(move || {
        for i in 1..=N {
            // SAFETY: kill has no memory-safety preconditions.
            assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
            while h.load(Ordering::SeqCst) < i {
                thread::yield_now();
            }
        }
    });
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), N);
    lp.close().unwrap();
}

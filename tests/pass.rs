//! The loop pass: the wait hook around the blocking poll, the busy-poll
//! interval, the manual clock's autojump and `next_timer`, and loops after
//! `fork()`.

mod util;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evloop::{BlockingWait, Error, EventLoop, WaitDone, WaitHook};
use util::{Recorder, Watchdog, fail_on_callback_errors, socketpair};

/// Schedules a chain of `n` callbacks, one per pass: callback `i` records
/// `i`, runs `at(i)`, then schedules `i + 1`.
fn chain(lp: &EventLoop, rec: &Recorder<String>, n: usize, at: Rc<dyn Fn(usize)>) {
    fn link(lp: EventLoop, rec: Recorder<String>, i: usize, n: usize, at: Rc<dyn Fn(usize)>) {
        if i == n {
            return;
        }
        let l = lp.clone();
        lp.call_soon(move || {
            rec.push(i.to_string());
            at(i);
            link(l, rec, i + 1, n, at);
        });
    }
    link(lp.clone(), rec.clone(), 0, n, at);
}

// ------------------------------------------------------------ wait hook

/// Records what the loop hands the hook.
#[derive(Default)]
struct Seen {
    blocking_timeouts: RefCell<Vec<Option<Duration>>>,
    after_polls: Cell<usize>,
    interrupt_next: Cell<bool>,
}

struct Recording(Rc<Seen>);

impl WaitHook for Recording {
    fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
        self.0.blocking_timeouts.borrow_mut().push(wait.timeout());
        wait.wait()
    }
    fn after_poll(&self, lp: &EventLoop) {
        self.0.after_polls.set(self.0.after_polls.get() + 1);
        if self.0.interrupt_next.replace(false) {
            lp.interrupt();
        }
    }
}

fn hooked_loop() -> (EventLoop, Rc<Seen>) {
    let seen = Rc::new(Seen::default());
    let lp = EventLoop::builder().wait_hook(Recording(seen.clone())).build().unwrap();
    (lp, seen)
}

/// Only the passes that may block go through `blocking_wait`; every pass
/// calls `after_poll`.
#[test]
fn only_blocking_waits_go_through_the_hook() {
    let _dog = Watchdog::new("only_blocking_waits_go_through_the_hook", Duration::from_secs(30));
    let (lp, seen) = hooked_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    chain(&lp, &rec, 5, Rc::new(|_| {}));
    let l = lp.clone();
    lp.call_later(Duration::from_millis(1), move || l.stop());
    lp.run_forever().unwrap();
    assert_eq!(rec.len(), 5);
    let timeouts = seen.blocking_timeouts.borrow();
    assert!(!timeouts.is_empty(), "the wait for the timer went through the hook");
    for t in timeouts.iter() {
        let t = t.expect("a timer is pending: the wait is bounded");
        assert!(t > Duration::ZERO && t <= Duration::from_millis(1), "{t:?}");
    }
    assert_eq!(seen.after_polls.get() as u64, lp.stats().iterations);
}

/// A hook that asks to poll first is skipped while an fd is ready already,
/// and called once nothing is: the blocking wait then still ends on I/O.
#[test]
fn a_poll_first_hook_waits_only_when_nothing_is_ready() {
    struct First(Rc<Cell<usize>>);
    impl WaitHook for First {
        fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
            self.0.set(self.0.get() + 1);
            wait.wait()
        }
        fn poll_first(&self) -> bool {
            true
        }
    }
    let _dog = Watchdog::new("a_poll_first_hook_waits_only_when_nothing_is_ready", Duration::from_secs(30));
    let waits = Rc::new(Cell::new(0));
    let lp = EventLoop::builder().wait_hook(First(waits.clone())).build().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (mut a, b) = socketpair();
    a.write_all(b"x").unwrap();
    let reads = Rc::new(Cell::new(0));
    let r = reads.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move || r.set(r.get() + 1)).unwrap();
    // Readable from the start (level-triggered, never drained): every
    // blocking pass finds it at once, without the hook's wait.
    for _ in 0..5 {
        lp.run_once(None).unwrap();
    }
    assert_eq!((reads.get(), waits.get()), (5, 0));
    assert!(lp.remove_reader(fd));
    // Nothing ready now: the pass waits through the hook, until the timer.
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_millis(2), move || f.set(true));
    while !fired.get() {
        lp.run_once(None).unwrap();
    }
    assert!(waits.get() >= 1, "the wait for the timer went through the hook");
    assert_eq!(reads.get(), 5);
    drop(b);
}

/// `before_pass` runs at the start of every pass, before the timeout is
/// computed: what it queues runs in that pass without blocking, and an
/// interrupt there ends the run before the pass polls.
#[test]
fn before_pass_runs_first_in_every_pass_and_may_queue_or_interrupt() {
    #[derive(Default)]
    struct Flags {
        /// `stats().iterations` at each call.
        calls: RefCell<Vec<u64>>,
        queue_once: Cell<bool>,
        interrupt_once: Cell<bool>,
        ran: Cell<bool>,
    }
    struct Before(Rc<Flags>);
    impl WaitHook for Before {
        fn before_pass(&self, lp: &EventLoop) {
            let flags = &self.0;
            flags.calls.borrow_mut().push(lp.stats().iterations);
            if flags.queue_once.replace(false) {
                let f = flags.clone();
                lp.call_soon(move || f.ran.set(true));
            }
            if flags.interrupt_once.replace(false) {
                lp.interrupt();
            }
        }
    }
    let _dog = Watchdog::new(
        "before_pass_runs_first_in_every_pass_and_may_queue_or_interrupt",
        Duration::from_secs(30),
    );
    let flags = Rc::new(Flags::default());
    let lp = EventLoop::builder().wait_hook(Before(flags.clone())).build().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    chain(&lp, &rec, 3, Rc::new(|_| {}));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.len(), 3);
    // Once per pass, before the pass is counted.
    let iterations = lp.stats().iterations;
    assert_eq!(*flags.calls.borrow(), (0..iterations).collect::<Vec<_>>());

    // An fd that never becomes readable: a pass with nothing ready would
    // block on it for good. What the hook queues runs in the same pass.
    let (_a, b) = socketpair();
    lp.add_reader(b.as_raw_fd(), || unreachable!("never readable")).unwrap();
    flags.queue_once.set(true);
    lp.run_once(None).unwrap();
    assert!(flags.ran.get());
    assert_eq!(lp.stats().iterations, iterations + 1);

    // An interrupt ends the run before the pass polls or runs anything.
    flags.interrupt_once.set(true);
    let r = rec.clone();
    lp.call_soon(move || r.push("too early".to_string()));
    assert!(matches!(lp.run_forever(), Err(Error::Interrupted)));
    assert_eq!(rec.len(), 3);
    lp.run_until_idle().unwrap(); // the callback runs next time
    assert_eq!(rec.len(), 4);
    assert!(lp.remove_reader(b.as_raw_fd()));
}

/// The hook may run the wait on another thread (`BlockingWait` is `Send`),
/// and another thread's call wakes it.
#[test]
fn the_wait_can_run_on_another_thread() {
    struct Elsewhere;
    impl WaitHook for Elsewhere {
        fn blocking_wait(&self, wait: BlockingWait) -> WaitDone {
            assert_eq!(wait.timeout(), None);
            std::thread::spawn(move || wait.wait()).join().unwrap()
        }
    }
    let _dog = Watchdog::new("the_wait_can_run_on_another_thread", Duration::from_secs(30));
    let lp = EventLoop::builder().wait_hook(Elsewhere).build().unwrap();
    let remote = lp.remote();
    let (tx, rx) = mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        rx.recv().unwrap();
        remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
    });
    // The loop is about to block with nothing else to do.
    lp.call_soon(move || tx.send(()).unwrap());
    lp.run_forever().unwrap();
    sender.join().unwrap();
    lp.close().unwrap();
}

/// `interrupt()` from `after_poll` ends the pass before any callback, and
/// the fd event found by that poll is neither lost nor run twice.
#[test]
fn an_interrupt_after_the_poll_runs_nothing_and_loses_nothing() {
    let _dog =
        Watchdog::new("an_interrupt_after_the_poll_runs_nothing_and_loses_nothing", Duration::from_secs(30));
    let (lp, seen) = hooked_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (mut a, b) = socketpair();
    let rec = Recorder::new();
    let (r, fd) = (rec.clone(), b.as_raw_fd());
    let l = lp.clone();
    lp.add_reader(fd, move || {
        r.push("read".to_string());
        l.remove_reader(fd);
    })
    .unwrap();
    a.write_all(b"x").unwrap();
    lp.call_soon(rec.pusher("queued".to_string()));
    seen.interrupt_next.set(true);
    assert!(matches!(lp.run_once(None), Err(Error::Interrupted)));
    assert!(rec.is_empty(), "nothing ran in the interrupted pass");
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["queued", "read"]);
    lp.close().unwrap();
}

// ------------------------------------------------------------ busy poll

/// A chain of callbacks, one per pass; callback `write_at` makes the fd
/// readable. Returns the order in which chain links and the fd's reader ran.
fn busy_chain_with_io(lp: &EventLoop, write_at: usize, spin: Option<Duration>) -> Vec<String> {
    let (a, b) = socketpair();
    let rec = Recorder::new();
    let (r, fd, l) = (rec.clone(), b.as_raw_fd(), lp.clone());
    lp.add_reader(fd, move || {
        r.push("io".to_string());
        l.remove_reader(fd);
    })
    .unwrap();
    let a = RefCell::new(a);
    chain(
        lp,
        &rec,
        40,
        Rc::new(move |i| {
            if i == write_at {
                a.borrow_mut().write_all(b"x").unwrap();
                if let Some(spin) = spin {
                    // Real time passing with callbacks ready, as in a busy loop.
                    let t0 = Instant::now();
                    while t0.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                }
            }
        }),
    );
    lp.run_until_idle().unwrap();
    drop(b);
    rec.get()
}

fn position(order: &[String], what: &str) -> usize {
    order.iter().position(|s| s == what).unwrap_or_else(|| panic!("{what} missing from {order:?}"))
}

/// The default polls in every pass, as asyncio: the reader runs in the pass
/// right after the one that made the fd readable.
#[test]
fn by_default_every_pass_polls() {
    let lp = EventLoop::new().unwrap();
    let order = busy_chain_with_io(&lp, 5, None);
    assert_eq!(position(&order, "io"), position(&order, "5") + 2, "{order:?}");
}

/// With an interval longer than the whole run, a busy loop does not poll
/// while callbacks are ready, but I/O is not starved: the first pass with
/// nothing ready polls, and `run_until_idle` only ends after it.
#[test]
fn a_busy_loop_polls_once_the_callbacks_run_out() {
    let lp = EventLoop::builder().busy_poll_interval(Duration::from_secs(3600)).build().unwrap();
    let order = busy_chain_with_io(&lp, 5, None);
    assert_eq!(order.last().map(String::as_str), Some("io"), "{order:?}");
    assert_eq!(order.len(), 41);
    // The first pass of the run polled, and the pass after the chain.
    assert_eq!(lp.stats().polls, 2, "{:?}", lp.stats());
}

/// Once the interval has passed since the last poll, the next pass polls
/// even though callbacks are ready: the bound is the interval plus one pass.
#[test]
fn the_interval_bounds_how_long_ready_io_waits() {
    let interval = Duration::from_millis(2);
    let lp = EventLoop::builder().busy_poll_interval(interval).build().unwrap();
    let order = busy_chain_with_io(&lp, 5, Some(interval));
    assert_eq!(position(&order, "io"), position(&order, "5") + 2, "{order:?}");
}

/// Due timers and other threads' calls need no poll: they are picked up in
/// every pass, busy or not.
#[test]
fn timers_and_threadsafe_calls_do_not_wait_for_the_poll() {
    let lp =
        EventLoop::builder().manual_clock().busy_poll_interval(Duration::from_secs(3600)).build().unwrap();
    let (_a, b) = socketpair();
    lp.add_reader(b.as_raw_fd(), || {}).unwrap(); // so that polls are not skipped anyway
    let rec = Recorder::new();
    lp.call_later(Duration::from_secs(1), rec.pusher("timer".to_string()));
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (l, r, seen_at_7) = (lp.clone(), ran.clone(), Rc::new(Cell::new(false)));
    let seen = seen_at_7.clone();
    chain(
        &lp,
        &rec,
        10,
        Rc::new(move |i| match i {
            2 => l.advance_time(Duration::from_secs(1)),
            5 => {
                let (remote, r) = (remote.clone(), r.clone());
                let sent = std::thread::spawn(move || {
                    remote.call_soon_threadsafe(move || r.store(true, std::sync::atomic::Ordering::SeqCst))
                });
                sent.join().unwrap().unwrap();
            }
            // Link 5 ran in pass 6; pass 7 queued the threadsafe call behind
            // link 6, so it has run by link 7 (pass 8).
            7 => seen.set(ran.load(std::sync::atomic::Ordering::SeqCst)),
            _ => {}
        }),
    );
    lp.run_until_idle().unwrap();
    let order = rec.get();
    // Advanced in link 2's pass; due in the next pass, behind link 3.
    assert_eq!(position(&order, "timer"), position(&order, "3") + 1, "{order:?}");
    assert!(seen_at_7.get(), "the threadsafe call waited for a poll");
    lp.remove_reader(b.as_raw_fd());
}

// ------------------------------------------------------------ autojump

/// With autojump the loop moves its manual clock to each next timer: timers
/// fire in order at their exact deadlines, with no real waiting.
#[test]
fn autojump_runs_timers_at_their_deadlines() {
    let _dog = Watchdog::new("autojump_runs_timers_at_their_deadlines", Duration::from_secs(30));
    let lp = EventLoop::builder().autojump(Duration::ZERO).build().unwrap();
    let t0 = lp.time();
    let seen = Rc::new(RefCell::new(Vec::new()));
    for secs in [30u64, 10, 20, 10] {
        let (s, l) = (seen.clone(), lp.clone());
        lp.call_later(Duration::from_secs(secs), move || s.borrow_mut().push((secs, l.time() - t0)));
    }
    lp.call_later(Duration::from_secs(1000), || panic!("cancelled")).cancel();
    let l = lp.clone();
    lp.call_later(Duration::from_secs(31), move || l.stop());
    lp.run_forever().unwrap();
    let secs = |s| Duration::from_secs(s);
    assert_eq!(*seen.borrow(), [(10, secs(10)), (10, secs(10)), (20, secs(20)), (30, secs(30))]);
    assert_eq!(lp.time() - t0, secs(31), "the cancelled timer was not jumped to");
}

/// `run_until_idle` and `run_once(Some(..))` keep their own limits: no jump.
#[test]
fn autojump_only_in_passes_that_may_block() {
    let lp = EventLoop::builder().autojump(Duration::ZERO).build().unwrap();
    let t0 = lp.time();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(10), move || f.set(true));
    lp.run_until_idle().unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!fired.get());
    assert_eq!(lp.time(), t0);
    assert_eq!(lp.next_timer(), Some(t0 + Duration::from_secs(10)));
    lp.run_once(None).unwrap();
    assert!(fired.get());
    assert_eq!(lp.time() - t0, Duration::from_secs(10));
    assert_eq!(lp.next_timer(), None);
}

/// I/O that arrives within the threshold is handled before any jump.
#[test]
fn autojump_waits_for_io_up_to_the_threshold() {
    let _dog = Watchdog::new("autojump_waits_for_io_up_to_the_threshold", Duration::from_secs(30));
    let lp = EventLoop::builder().autojump(Duration::from_secs(3600)).build().unwrap();
    let t0 = lp.time();
    let (mut a, b) = socketpair();
    let timer = lp.call_later(Duration::from_secs(60), || panic!("jumped before the I/O"));
    let (l, fd) = (lp.clone(), b.as_raw_fd());
    lp.add_reader(fd, move || {
        timer.cancel();
        l.remove_reader(fd);
        l.stop();
    })
    .unwrap();
    a.write_all(b"x").unwrap(); // readable before the wait: it returns at once
    lp.run_forever().unwrap();
    assert_eq!(lp.time(), t0);
    lp.close().unwrap();
}

/// `next_timer` skips cancelled and run timers.
#[test]
fn next_timer_is_the_earliest_live_deadline() {
    let lp = util::manual_loop();
    let t0 = lp.time();
    let a = lp.call_later(Duration::from_secs(1), || {});
    lp.call_later(Duration::from_secs(3), || {});
    lp.call_later(Duration::from_secs(2), || {});
    assert_eq!(lp.next_timer(), Some(t0 + Duration::from_secs(1)));
    a.cancel();
    assert_eq!(lp.next_timer(), Some(t0 + Duration::from_secs(2)));
    lp.advance_time(Duration::from_secs(2));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.next_timer(), Some(t0 + Duration::from_secs(3)));
}

// ------------------------------------------------------------ fork

/// `fork()` from inside a running loop, as multiprocessing's fork start
/// method does, while another thread is sending to the loop: the child
/// sees no running loop, its copy of the parent's loop refuses to run and
/// closes without touching the parent's fds (nor hanging on a lock the
/// sender held), and a new loop builds and runs. The parent's reader still
/// fires afterwards.
#[test]
fn a_child_of_fork_runs_a_new_loop_and_leaves_the_parents_loop_alone() {
    const NAME: &str = "a_child_of_fork_runs_a_new_loop_and_leaves_the_parents_loop_alone";
    const MARKER: &str = "fork test body done";
    if !util::run_test_in_child(NAME, "EVLOOP_TEST_FORK_CHILD", MARKER) {
        return;
    }
    let _dog = Watchdog::new(NAME, Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (mut a, b) = socketpair();
    let got = Rc::new(Cell::new(false));
    let (g, l, fd) = (got.clone(), lp.clone(), b.as_raw_fd());
    lp.add_reader(fd, move || {
        g.set(true);
        l.stop();
    })
    .unwrap();
    // A thread that keeps the remote queue's lock busy.
    let remote = lp.remote();
    let stop_sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = stop_sending.clone();
    let sender = std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if remote.call_soon_threadsafe(|| {}).is_err() {
                break;
            }
        }
    });
    let status = Rc::new(Cell::new(None));
    let (st, l) = (status.clone(), lp.clone());
    lp.call_soon(move || {
        // SAFETY: fork in a test; the child only runs the checks below and
        // leaves with `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_child(&l))) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: ends the child without running the parent's
            // destructors or the harness.
            unsafe { libc::_exit(code) };
        }
        let mut wstatus = 0;
        // SAFETY: waits for the child just forked.
        let waited = unsafe { libc::waitpid(pid, &mut wstatus, 0) };
        assert_eq!(waited, pid);
        st.set(Some(wstatus));
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    stop_sending.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let wstatus = status.get().expect("the parent waited for the child");
    assert!(libc::WIFEXITED(wstatus) && libc::WEXITSTATUS(wstatus) == 0, "child failed: {wstatus:#x}");
    // The child closed its copy of the loop: the parent's reader still fires.
    a.write_all(b"x").unwrap();
    lp.run_forever().unwrap();
    assert!(got.get());
    lp.remove_reader(fd);
    lp.close().unwrap();
    println!("{MARKER}");
}

/// The child's half of the fork test; panics on failure.
fn in_child(inherited: &EventLoop) {
    assert!(matches!(evloop::get_running_loop(), Err(Error::NoRunningLoop)));
    assert!(matches!(inherited.run_once(Some(Duration::ZERO)), Err(Error::Forked)));
    assert!(inherited.remote().call_soon_threadsafe(|| {}).is_err());
    let fresh = EventLoop::new().unwrap();
    let value = fresh
        .run_until_complete(async {
            evloop::sleep(Duration::from_millis(1)).await;
            evloop::spawn(async { 42 }).await
        })
        .unwrap();
    assert_eq!(value.unwrap(), 42);
    fresh.close().unwrap();
    inherited.close().unwrap();
}

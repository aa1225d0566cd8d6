//! The loop's lifecycle: run, stop, nested runs, close.

mod util;

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, EventLoop};
use util::{LoopProbe, Recorder, Watchdog, fail_on_callback_errors, manual_loop, socketpair};

// ------------------------------------------------------------ stop

/// `stop()` before `run_forever`: one iteration with a zero timeout. What is
/// already scheduled runs; what that schedules does not.
#[test]
fn stop_before_run_runs_one_iteration_with_zero_timeout() {
    let _dog = Watchdog::new("stop_before_run_runs_one_iteration_with_zero_timeout", Duration::from_secs(30));
    // Real clock, and a timer an hour away: blocking for it would hang.
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    lp.call_later(Duration::from_secs(3600), rec.pusher("far timer"));
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_soon(move || {
            rec.push("a");
            lp2.call_soon(rec.pusher("scheduled by a"));
        });
    }
    lp.call_soon(rec.pusher("b"));
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(rec.get(), ["a", "b"]);
    assert_eq!(lp.stats().iterations, 1);
    assert_eq!(lp.stats().ready, 1);
    assert!(!lp.is_running());

    // The stop request was used up: the next run_forever runs until told.
    {
        let lp2 = lp.clone();
        let r = rec.clone();
        lp.call_soon(move || {
            let lp3 = lp2.clone();
            lp2.call_soon(move || {
                r.push("stopper");
                lp3.stop();
            });
        });
    }
    lp.run_forever().unwrap();
    assert_eq!(rec.get(), ["a", "b", "scheduled by a", "stopper"]);
    assert_eq!(lp.stats().iterations, 3);
}

#[test]
fn stop_with_nothing_scheduled_returns_at_once() {
    let _dog = Watchdog::new("stop_with_nothing_scheduled_returns_at_once", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(lp.stats().iterations, 1);
}

/// `stop()` inside a callback finishes the current iteration: callbacks
/// already queued for it still run, new ones wait.
#[test]
fn stop_inside_a_callback_finishes_the_iteration() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_soon(move || {
            rec.push("stopper");
            lp2.stop();
            lp2.call_soon(rec.pusher("next pass"));
        });
    }
    lp.call_soon(rec.pusher("same pass"));
    lp.run_forever().unwrap();
    assert_eq!(rec.get(), ["stopper", "same pass"]);
    assert_eq!(lp.stats().iterations, 1);
    assert!(!lp.is_running());
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["stopper", "same pass", "next pass"]);
}

#[test]
fn stop_from_a_timer_ends_run_forever() {
    let _dog = Watchdog::new("stop_from_a_timer_ends_run_forever", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let lp2 = lp.clone();
    let t0 = lp.time();
    let h = lp.call_later(Duration::from_millis(10), move || lp2.stop());
    lp.run_forever().unwrap();
    assert!(lp.time() >= h.when());
    assert!(lp.time() - t0 >= Duration::from_millis(10));
}

#[test]
fn stop_ends_run_until_idle_early() {
    let _dog = Watchdog::new("stop_ends_run_until_idle_early", Duration::from_secs(30));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let count = Rc::new(Cell::new(0));
    fn forever(lp: EventLoop, count: Rc<Cell<u32>>) {
        count.set(count.get() + 1);
        if count.get() == 3 {
            lp.stop();
        }
        let lp2 = lp.clone();
        lp.call_soon(move || forever(lp2, count));
    }
    let (lp2, c) = (lp.clone(), count.clone());
    lp.call_soon(move || forever(lp2, c));
    lp.run_until_idle().unwrap();
    assert_eq!(count.get(), 3);
    // The pending callback holds a clone of the loop (a cycle through user
    // code): close() breaks it, as the EventLoop docs say.
    lp.close().unwrap();
}

#[test]
fn run_until_complete_returns_the_output() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    assert_eq!(lp.run_until_complete(async { 6 * 7 }).unwrap(), 42);
    assert!(!lp.is_running());
}

#[test]
fn run_until_complete_stopped_first() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let never = lp.create_future::<()>();
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop());
    let out = lp.run_until_complete(async move { (&never).await });
    assert!(matches!(out, Err(Error::StoppedBeforeComplete)), "{out:?}");
}

// ------------------------------------------------------------ nested runs

fn nested_results(outer: &EventLoop, target: &EventLoop) -> Vec<String> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, t, o) = (seen.clone(), target.clone(), outer.clone());
    outer.call_soon(move || {
        assert!(o.is_running());
        let mut s = s.borrow_mut();
        s.push(format!("{:?}", t.run_forever()));
        s.push(format!("{:?}", t.run_once(Some(Duration::ZERO))));
        s.push(format!("{:?}", t.run_until_idle()));
        s.push(format!("{:?}", t.run_until_complete(async {})));
    });
    outer.run_until_idle().unwrap();
    assert!(!outer.is_running());
    seen.take()
}

#[test]
fn nested_run_is_refused_with_already_running() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let results = nested_results(&lp, &lp);
    assert_eq!(results, vec!["Err(AlreadyRunning)"; 4]);
    // The loop itself is unharmed.
    let rec = Recorder::new();
    lp.call_soon(rec.pusher(1));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), [1]);
}

#[test]
fn running_another_loop_inside_a_callback_is_refused() {
    let outer = manual_loop();
    let inner = manual_loop();
    let _strict = (fail_on_callback_errors(&outer), fail_on_callback_errors(&inner));
    let results = nested_results(&outer, &inner);
    assert_eq!(results, vec!["Err(AlreadyRunning)"; 4]);
    assert!(!inner.is_running());
    // Both loops still work afterwards.
    inner.run_until_idle().unwrap();
    outer.run_until_idle().unwrap();
}

#[test]
fn is_running_inside_and_outside() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    assert!(!lp.is_running());
    let seen = Rc::new(Cell::new(false));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || s.set(lp2.is_running()));
    lp.run_until_idle().unwrap();
    assert!(seen.get());
    assert!(!lp.is_running());
}

// ------------------------------------------------------------ close

#[test]
fn close_while_running_is_refused() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || *s.borrow_mut() = Some(lp2.close()));
    let rec = Recorder::new();
    lp.call_soon(rec.pusher("still scheduling"));
    lp.run_until_idle().unwrap();
    assert!(matches!(seen.borrow_mut().take(), Some(Err(Error::Running))));
    assert!(!lp.is_closed());
    assert_eq!(rec.get(), ["still scheduling"]);
    lp.close().unwrap();
    assert!(lp.is_closed());
}

/// `close` drops everything pending, without running it, and is idempotent.
#[test]
fn close_drops_pending_callbacks_timers_and_fd_callbacks_without_running_them() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(0));
    let (a, b) = socketpair();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    use std::io::Write;
    (&b).write_all(b"ready").unwrap(); // `a` is readable, both are writable

    // Each closure holds a probe (that also keeps the loop alive: a cycle
    // that close() must break) and counts its runs.
    let closure = || {
        let probe = LoopProbe::new(&lp, &drops);
        let r = ran.clone();
        move || {
            let _p = &probe;
            r.set(r.get() + 1);
        }
    };
    lp.call_soon(closure());
    lp.call_later(Duration::from_secs(5), closure());
    lp.call_at(lp.time(), closure()); // due, but no pass runs before close
    lp.add_reader(fa, closure()).unwrap();
    lp.add_writer(fa, closure()).unwrap();
    lp.add_writer(fb, closure()).unwrap();
    let s = lp.stats();
    assert_eq!((s.ready, s.timers, s.readers, s.writers), (1, 2, 1, 2));

    lp.close().unwrap();
    assert!(lp.is_closed());
    assert_eq!(drops.get(), 6, "every pending closure was dropped by close()");
    assert_eq!(ran.get(), 0, "and none of them ran");
    let s = lp.stats();
    assert_eq!((s.ready, s.timers, s.readers, s.writers), (0, 0, 0, 0));

    lp.close().unwrap();
    assert_eq!(drops.get(), 6);
    assert!(lp.is_closed());
    drop((a, b));
}

/// The same when the caller still holds the `Handle` and `TimerHandle`
/// (say, to cancel them later): close() still frees the closures, and the
/// handles report them cancelled.
#[test]
fn close_drops_pending_closures_even_while_their_handles_are_held() {
    let lp = manual_loop();
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(0));
    let closure = || {
        let probe = LoopProbe::new(&lp, &drops);
        let r = ran.clone();
        move || {
            let _p = &probe;
            r.set(r.get() + 1);
        }
    };
    let soon = lp.call_soon(closure());
    let later = lp.call_later(Duration::from_secs(5), closure());
    let due = lp.call_at(lp.time(), closure());
    lp.close().unwrap();
    assert_eq!(drops.get(), 3, "close() freed the closures although the handles are alive");
    assert_eq!(ran.get(), 0);
    assert!(soon.cancelled() && later.cancelled() && due.cancelled());
    assert_eq!(lp.stats().timers, 0);
    drop((soon, later, due));
    assert_eq!(drops.get(), 3);
}

#[test]
fn close_drops_cross_thread_calls_still_queued() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let drops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let token = util::SendDropCounter::token(&drops);
    lp.remote().call_soon_threadsafe(move || drop(token)).unwrap();
    lp.close().unwrap();
    assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn closed_loop_refuses_to_run() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    lp.close().unwrap();
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(lp.run_once(None), Err(Error::Closed)));
    assert!(matches!(lp.run_until_idle(), Err(Error::Closed)));
    assert!(matches!(lp.run_until_complete(async {}), Err(Error::Closed)));
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn call_soon_after_close_panics() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    lp.close().unwrap();
    lp.call_soon(|| {});
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn call_later_after_close_panics() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    lp.close().unwrap();
    lp.call_later(Duration::from_secs(1), || {});
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn call_at_after_close_panics() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    lp.close().unwrap();
    lp.call_at(lp.time(), || {});
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn add_reader_after_close_panics() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, _b) = socketpair();
    lp.close().unwrap();
    let _ = lp.add_reader(a.as_raw_fd(), || {});
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn add_writer_after_close_panics() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, _b) = socketpair();
    lp.close().unwrap();
    let _ = lp.add_writer(a.as_raw_fd(), || {});
}

#[test]
fn remove_after_close_is_harmless() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, _b) = socketpair();
    lp.add_reader(a.as_raw_fd(), || {}).unwrap();
    lp.close().unwrap();
    assert!(!lp.remove_reader(a.as_raw_fd()), "close already removed it");
    assert!(!lp.remove_writer(a.as_raw_fd()));
}

// ------------------------------------------------------------ issue 10, defect 3

/// Dropping the last `EventLoop` without `close()` while 100 tasks sleep:
/// every task's future is dropped and the loop's fds are closed (tasks and
/// futures hold the loop weakly, so nothing keeps it alive).
#[test]
fn dropping_the_loop_without_close_drops_100_sleeping_tasks_and_its_fds() {
    if !util::run_test_in_child(
        "dropping_the_loop_without_close_drops_100_sleeping_tasks_and_its_fds",
        "EVLOOP_CHILD_DROP_TASKS",
        "dropped-100-tasks",
    ) {
        return;
    }
    let baseline = util::open_fd_count();
    let lp = EventLoop::new().unwrap();
    let drops = util::DropCounter::new();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let token = util::DropCounter::token(&drops);
        tasks.push(lp.create_task(async move {
            let _token = token;
            evloop::sleep(Duration::from_secs(3600)).await;
        }));
    }
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().tasks, 100);
    assert!(util::open_fd_count() > baseline, "the loop has its poller open");
    drop(lp);
    assert_eq!(drops.get(), 100, "every sleeping task's future was dropped");
    assert_eq!(util::open_fd_count(), baseline, "the loop's fds were closed");
    // Task handles kept past the loop are inert.
    assert!(tasks.iter().all(|t| !t.done()));
    assert!(tasks[0].cancel());
    drop(tasks);
    println!("dropped-100-tasks");
}

/// A task waker that outlives its loop is a no-op and holds no fd.
#[test]
fn a_task_waker_that_outlives_the_loop_holds_no_fd() {
    if !util::run_test_in_child(
        "a_task_waker_that_outlives_the_loop_holds_no_fd",
        "EVLOOP_CHILD_WAKER_FD",
        "waker-holds-no-fd",
    ) {
        return;
    }
    let baseline = util::open_fd_count();
    let lp = EventLoop::new().unwrap();
    let stash: Rc<RefCell<Option<std::task::Waker>>> = Rc::default();
    let s = stash.clone();
    lp.create_task(std::future::poll_fn(move |cx| {
        *s.borrow_mut() = Some(cx.waker().clone());
        std::task::Poll::<()>::Pending
    }));
    lp.run_until_idle().unwrap();
    drop(lp);
    assert_eq!(util::open_fd_count(), baseline);
    let waker = stash.borrow_mut().take().expect("the task stored its waker");
    waker.wake_by_ref();
    std::thread::spawn(move || waker.wake()).join().unwrap();
    assert_eq!(util::open_fd_count(), baseline);
    println!("waker-holds-no-fd");
}

/// A task whose done callback holds the task itself, left pending; `end`
/// closes or drops the loop. Returns how many of the future and the
/// callback (with its task handle) were dropped.
fn done_callback_cycle_drops(end: impl FnOnce(evloop::EventLoop)) -> usize {
    let lp = manual_loop();
    let drops = util::DropCounter::new();
    let token = util::DropCounter::token(&drops);
    let task = lp.create_task(async move {
        let _token = token;
        evloop::sleep(Duration::from_secs(3600)).await;
    });
    let again = task.clone();
    let cb_token = util::DropCounter::token(&drops);
    task.add_done_callback(move |_| {
        let _ = (&again, &cb_token);
    });
    lp.run_until_idle().unwrap();
    drop(task);
    end(lp);
    drops.get()
}

/// `close()` breaks the cycle a task's done callback can make with the task.
#[test]
fn close_drops_done_callbacks_that_hold_their_own_task() {
    let dropped = done_callback_cycle_drops(|lp| lp.close().unwrap());
    assert_eq!(dropped, 2, "the future and the done callback (with its task handle) were dropped");
}

/// The same cycle, broken by dropping the loop without `close()`.
#[test]
fn dropping_the_loop_drops_done_callbacks_that_hold_their_own_task() {
    let dropped = done_callback_cycle_drops(drop);
    assert_eq!(dropped, 2, "the task's future and its done callback were dropped");
}

/// Tasks blocked in `sock_recv` on sockets they own, each holding a handle
/// on the loop (as `lp.sock_recv(..)` in a task does): that is a cycle
/// through the loop, which `close()` breaks — it drops the tasks, their
/// sockets, and with the last handle the loop's own fds.
#[test]
fn close_frees_tasks_blocked_in_sock_recv_and_every_fd() {
    if !util::run_test_in_child(
        "close_frees_tasks_blocked_in_sock_recv_and_every_fd",
        "EVLOOP_CHILD_CLOSE_SOCK_RECV",
        "closed-sock-recv",
    ) {
        return;
    }
    let baseline = util::open_fd_count();
    let lp = EventLoop::new().unwrap();
    let drops = util::DropCounter::new();
    let mut peers = Vec::new();
    for _ in 0..50 {
        let (mine, peer) = socketpair();
        peers.push(peer);
        let sock = evloop::net::Socket::from(std::os::fd::OwnedFd::from(mine));
        let (l, token) = (lp.clone(), util::DropCounter::token(&drops));
        lp.create_task(async move {
            let _token = token;
            let _ = l.sock_recv(&sock, 16).await;
        });
    }
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().tasks, 50);
    lp.close().unwrap();
    assert_eq!(drops.get(), 50, "every blocked task's future was dropped");
    drop(lp);
    drop(peers);
    assert_eq!(util::open_fd_count(), baseline, "sockets, epoll and eventfd all closed");
    println!("closed-sock-recv");
}

/// `interrupt()` ends the pass after the running callback (asyncio lets
/// `KeyboardInterrupt` out of `_run_once` this way): the rest of the pass
/// stays at the front of the queue, ahead of what the pass scheduled.
#[test]
fn interrupt_ends_the_pass_and_the_rest_runs_first_next_time() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let order = Rc::new(RefCell::new(Vec::new()));
    let push = |v: &'static str| {
        let order = order.clone();
        move || order.borrow_mut().push(v)
    };
    lp.call_soon(push("a"));
    let (l, p_b, p_d) = (lp.clone(), push("b"), push("d"));
    lp.call_soon(move || {
        p_b();
        l.call_soon(p_d); // scheduled by the pass: runs after "c"
        l.interrupt();
    });
    lp.call_soon(push("c"));
    assert!(matches!(lp.run_forever(), Err(Error::Interrupted)));
    assert_eq!(*order.borrow(), ["a", "b"]);
    assert!(!lp.is_running());
    lp.run_until_idle().unwrap();
    assert_eq!(*order.borrow(), ["a", "b", "c", "d"]);
    lp.close().unwrap();
}

#[test]
fn interrupt_outside_a_pass_makes_the_next_run_return_before_running_anything() {
    let lp = manual_loop();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    lp.call_soon(move || r.set(r.get() + 1));
    lp.interrupt();
    assert!(matches!(lp.run_once(Some(Duration::ZERO)), Err(Error::Interrupted)));
    assert_eq!(ran.get(), 0);
    lp.run_until_idle().unwrap();
    assert_eq!(ran.get(), 1, "the interrupt is used up: the next run goes on");
}

#[test]
fn an_interrupted_run_until_complete_leaves_the_task_to_finish_later() {
    let lp = manual_loop();
    let l = lp.clone();
    let task = lp.create_task(async move {
        evloop::yield_now().await;
        l.interrupt();
        evloop::yield_now().await;
        7
    });
    assert!(matches!(lp.run_until_complete(task.clone()), Err(Error::Interrupted)));
    assert!(!task.done());
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 7);
    lp.close().unwrap();
}

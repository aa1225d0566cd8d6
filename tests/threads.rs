//! `RemoteLoop::call_soon_threadsafe`: every call runs exactly once, in
//! order per sending thread, and wakes a loop blocked with nothing to do.

mod util;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Error, EventLoop, RemoteLoop};
use util::{Recorder, SendDropCounter, Watchdog, fail_on_callback_errors, manual_loop};

const THREADS: usize = 4;
const PER_THREAD: u64 = 100_000;

/// What the callbacks check on the loop thread. Atomics only because the
/// closures must be `Send`; they are all run by the loop thread.
struct Tally {
    loop_thread: thread::ThreadId,
    next: [AtomicU64; THREADS],
    out_of_order: AtomicU64,
    wrong_thread: AtomicU64,
    total: AtomicU64,
}

#[test]
fn call_soon_threadsafe_from_four_threads_runs_each_call_once_in_order() {
    let _dog = Watchdog::new("call_soon_threadsafe_from_four_threads", Duration::from_secs(120));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let tally = Arc::new(Tally {
        loop_thread: thread::current().id(),
        next: Default::default(),
        out_of_order: AtomicU64::new(0),
        wrong_thread: AtomicU64::new(0),
        total: AtomicU64::new(0),
    });
    let start = Arc::new(Barrier::new(THREADS));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (remote, tally, start) = (lp.remote(), tally.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for seq in 0..PER_THREAD {
                    let tally = tally.clone();
                    remote
                        .call_soon_threadsafe(move || {
                            if thread::current().id() != tally.loop_thread {
                                tally.wrong_thread.fetch_add(1, Ordering::Relaxed);
                            }
                            // Runs exactly once and in order: each call finds
                            // the counter at its own sequence number.
                            if tally.next[t].fetch_add(1, Ordering::Relaxed) != seq {
                                tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                            }
                            let total = tally.total.fetch_add(1, Ordering::Relaxed) + 1;
                            if total == THREADS as u64 * PER_THREAD {
                                evloop::get_running_loop().unwrap().stop();
                            }
                        })
                        .expect("loop is open");
                }
            })
        })
        .collect();
    lp.run_forever().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    // Nothing else is queued: no call runs twice.
    lp.run_until_idle().unwrap();
    for t in 0..THREADS {
        assert_eq!(tally.next[t].load(Ordering::Relaxed), PER_THREAD, "thread {t}");
    }
    assert_eq!(tally.out_of_order.load(Ordering::Relaxed), 0);
    assert_eq!(tally.wrong_thread.load(Ordering::Relaxed), 0);
    assert_eq!(tally.total.load(Ordering::Relaxed), THREADS as u64 * PER_THREAD);
    assert_eq!(lp.stats().callbacks_run, THREADS as u64 * PER_THREAD);
}

/// The syscall numbers of the epoll waits (`/proc/<tid>/syscall` shows the
/// one a blocked thread is in).
#[cfg(target_arch = "x86_64")]
const EPOLL_WAITS: &[&str] = &["232", "281", "441"];
#[cfg(target_arch = "aarch64")]
const EPOLL_WAITS: &[&str] = &["22", "441"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EPOLL_WAITS: &[&str] = &[];

/// Waits until the thread whose `/proc` task path is `task` is blocked in
/// an epoll wait. Returns false if that can't be observed here.
fn wait_until_blocked_in_epoll(task: &str) -> bool {
    let path = format!("/proc/{task}/syscall");
    loop {
        let Ok(text) = std::fs::read_to_string(&path) else { return false };
        let nr = text.split_whitespace().next().unwrap_or("");
        if EPOLL_WAITS.is_empty() {
            return false;
        }
        if EPOLL_WAITS.contains(&nr) {
            return true;
        }
        thread::sleep(Duration::from_millis(1)); // polling, not an assertion
    }
}

/// The loop is blocked in `run_forever` with nothing to do (no timer, no
/// fd); another thread's `call_soon_threadsafe(stop)` wakes it, and
/// `run_forever` returns.
#[test]
fn call_soon_threadsafe_wakes_an_idle_loop() {
    let _dog = Watchdog::new("call_soon_threadsafe_wakes_an_idle_loop", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let task = std::fs::read_link("/proc/thread-self").ok().map(|p| p.display().to_string());
    let remote = lp.remote();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let waker = thread::spawn(move || {
        started_rx.recv().unwrap();
        // Make sure the loop really is asleep in the poller before waking it.
        let observed = task.as_deref().is_some_and(wait_until_blocked_in_epoll);
        let sent = Instant::now();
        remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
        (observed, sent)
    });
    // Runs in the first iteration; after it, the loop has nothing to do.
    lp.call_soon(move || started_tx.send(()).unwrap());
    lp.run_forever().unwrap();
    let returned = Instant::now();
    let (observed, sent) = waker.join().unwrap();
    assert!(returned >= sent);
    let stats = lp.stats();
    assert_eq!(stats.iterations, 2);
    if observed {
        // The first iteration had work, so it did not poll (no fd is
        // registered); the second blocked in the poller until woken.
        assert_eq!(stats.polls, 1);
        assert!(stats.idle_time > Duration::ZERO);
    }
}

#[test]
fn call_soon_threadsafe_after_close_is_refused() {
    let lp = manual_loop();
    let remote = lp.remote();
    assert!(!remote.is_closed());
    lp.close().unwrap();
    assert!(remote.is_closed());
    let drops = Arc::new(AtomicUsize::new(0));
    let token = SendDropCounter::token(&drops);
    let out = remote.call_soon_threadsafe(move || drop(token));
    assert!(matches!(out, Err(Error::Closed)), "{out:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the refused closure is dropped");
    // From another thread too.
    let r: RemoteLoop = remote.clone();
    let out = thread::spawn(move || r.call_soon_threadsafe(|| {})).join().unwrap();
    assert!(matches!(out, Err(Error::Closed)), "{out:?}");
}

/// Called from the loop thread during a pass, it runs in the next pass.
#[test]
fn call_soon_threadsafe_from_the_loop_thread_runs_next_pass() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let remote = lp.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let (rec, ran) = (rec.clone(), ran.clone());
        lp.call_soon(move || {
            rec.push("callback");
            remote
                .call_soon_threadsafe(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        });
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["callback"]);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn run_until_idle_runs_calls_that_arrived_before_it() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let ran = Arc::new(AtomicUsize::new(0));
    let remote = lp.remote();
    let r = ran.clone();
    thread::spawn(move || {
        for _ in 0..10 {
            let r = r.clone();
            remote
                .call_soon_threadsafe(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
    })
    .join()
    .unwrap();
    lp.run_until_idle().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 10);
}

#[test]
fn remote_loop_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<RemoteLoop>();
}

// ------------------------------------------------- run_coroutine_threadsafe

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn run_coroutine_threadsafe_from_eight_threads() {
    let _dog = Watchdog::new("run_coroutine_threadsafe_from_eight_threads", Duration::from_secs(120));
    let lp = EventLoop::new().unwrap();
    let remote = lp.remote();
    let loop_thread = thread::current().id();
    let start = Arc::new(Barrier::new(8));
    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            let (remote, start) = (remote.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let futs: Vec<_> = (0..50u64)
                    .map(|j| {
                        remote
                            .run_coroutine_threadsafe_with(move || async move {
                                evloop::yield_now().await;
                                (i * 1000 + j, thread::current().id())
                            })
                            .unwrap()
                    })
                    .collect();
                futs.into_iter().map(|f| f.result(Some(LIMIT)).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let stopper = {
        let remote = remote.clone();
        thread::spawn(move || {
            let results: Vec<Vec<_>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
            remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
            results
        })
    };
    lp.run_forever().unwrap();
    let results = stopper.join().unwrap();
    for (i, per_thread) in results.iter().enumerate() {
        let values: Vec<u64> = per_thread.iter().map(|(v, _)| *v).collect();
        assert_eq!(values, (0..50).map(|j| i as u64 * 1000 + j).collect::<Vec<_>>());
        assert!(per_thread.iter().all(|(_, t)| *t == loop_thread), "every task ran on the loop thread");
    }
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn a_concurrent_future_cancelled_from_another_thread_cancels_the_task() {
    let _dog = Watchdog::new("concurrent_future_cancel", Duration::from_secs(60));
    let lp = EventLoop::new().unwrap();
    let remote = lp.remote();
    let drops = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let token = SendDropCounter::token(&drops);
    let fut = remote
        .run_coroutine_threadsafe_with(move || async move {
            let _token = token;
            started_tx.send(()).unwrap();
            evloop::sleep(Duration::from_secs(3600)).await;
        })
        .unwrap();
    let canceller = {
        let remote = remote.clone();
        thread::spawn(move || {
            started_rx.recv_timeout(LIMIT).unwrap();
            assert!(matches!(fut.result(Some(Duration::from_millis(1))), Err(Error::Timeout)));
            assert!(fut.cancel());
            let outcome = fut.result(Some(LIMIT));
            remote.call_soon_threadsafe(|| evloop::get_running_loop().unwrap().stop()).unwrap();
            (outcome, fut.cancelled() || fut.done(), fut.cancel())
        })
    };
    lp.run_forever().unwrap();
    let (outcome, done, cancel_again) = canceller.join().unwrap();
    assert!(matches!(outcome, Err(Error::Cancelled)));
    assert!(done);
    assert!(!cancel_again, "cancel after done is false");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the task's future was dropped");
    assert_eq!(lp.stats().tasks, 0, "the task ended");
}

#[test]
fn run_coroutine_threadsafe_on_a_closed_loop_errors_and_close_releases_waiters() {
    let lp = EventLoop::new().unwrap();
    let remote = lp.remote();
    // Started, then the loop closes with the task pending.
    let pending = remote.run_coroutine_threadsafe_with(|| evloop::sleep(Duration::from_secs(3600))).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!pending.done());
    assert_eq!(lp.stats().tasks, 1);
    // Submitted but never run: closing resolves it too.
    let queued = remote.run_coroutine_threadsafe(async { 1 }).unwrap();
    lp.close().unwrap();
    assert!(matches!(queued.result(Some(LIMIT)), Err(Error::Closed)));
    assert!(matches!(pending.result(Some(LIMIT)), Err(Error::Closed)));
    assert!(matches!(remote.run_coroutine_threadsafe(async { 2 }), Err(Error::Closed)));
}

#[test]
fn a_concurrent_future_can_be_awaited_from_another_loop() {
    let _dog = Watchdog::new("concurrent_future_awaited", Duration::from_secs(60));
    let (remote_tx, remote_rx) = mpsc::channel::<RemoteLoop>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let serving = thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        remote_tx.send(lp.remote()).unwrap();
        let l = lp.clone();
        lp.run_until_complete(async move {
            // Run until told to stop (polled through the executor).
            let stop = l.run_in_executor(move || stop_rx.recv_timeout(LIMIT).is_ok());
            stop.await.unwrap()
        })
        .unwrap()
    });
    let remote = remote_rx.recv_timeout(LIMIT).unwrap();
    let client = EventLoop::new().unwrap();
    let got = client
        .run_until_complete(async move {
            let fut = remote
                .run_coroutine_threadsafe_with(|| async {
                    evloop::sleep(Duration::from_millis(1)).await;
                    "from the other loop"
                })
                .unwrap();
            let first = (&fut).await;
            let again = fut.await;
            (first, again)
        })
        .unwrap();
    assert_eq!(got.0.unwrap(), "from the other loop");
    assert!(matches!(got.1, Err(Error::InvalidState(_))), "the outcome is taken once");
    stop_tx.send(()).unwrap();
    assert!(serving.join().unwrap());
}

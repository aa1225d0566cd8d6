//! Behaviour of `run_in_executor` and the loop's thread pool.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use evloop::executor::MAX_WORKERS;
use evloop::{Error, EventLoop};
use util::{SendDropCounter, Watchdog};

/// How long any single wait in these tests may take before it counts as a
/// failure (never reached when things work).
const LIMIT: Duration = Duration::from_secs(20);

/// This thread's kernel id, as named under `/proc/self/task`.
fn current_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// The name of thread `tid` of this process, or `None` if it has exited.
fn thread_comm(tid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok().map(|s| s.trim_end().to_owned())
}

/// Waits (bounded) until none of `tids` is alive; returns those still alive.
fn wait_until_exited(tids: &HashSet<String>) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let alive: Vec<String> = tids.iter().filter(|t| thread_comm(t).is_some()).cloned().collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A gate that jobs wait at until the test opens it (bounded by `LIMIT`).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let guard = open.lock().unwrap();
        let (guard, timeout) = cv.wait_timeout_while(guard, LIMIT, |open| !*open).unwrap();
        assert!(*guard && !timeout.timed_out(), "the gate was never opened");
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Submits `n` jobs that report their thread id and then wait at `gate`;
/// returns the futures and the ids (distinct: the jobs run concurrently).
fn blocked_jobs(lp: &EventLoop, n: usize, gate: &Gate) -> (Vec<evloop::Future<usize>>, HashSet<String>) {
    let (tx, rx) = mpsc::channel();
    let futures = (0..n)
        .map(|i| {
            let (tx, gate) = (tx.clone(), gate.clone());
            lp.run_in_executor(move || {
                tx.send(current_tid()).unwrap();
                gate.wait();
                i
            })
        })
        .collect();
    let tids: HashSet<String> =
        (0..n).map(|_| rx.recv_timeout(LIMIT).expect("every job starts on its own worker")).collect();
    assert_eq!(tids.len(), n, "{n} jobs blocked at once run on {n} threads");
    (futures, tids)
}

#[test]
fn run_in_executor_computes_on_another_thread() {
    let _watchdog = Watchdog::new("run_in_executor_computes_on_another_thread", LIMIT * 2);
    let lp = EventLoop::new().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let token = SendDropCounter::token(&drops);
    let loop_thread = thread::current().id();
    let fut = lp.run_in_executor(move || {
        let _token = token;
        let me = thread::current();
        (me.id(), me.name().map(str::to_owned), (1..=100u64).sum::<u64>())
    });
    let (id, name, sum) = lp.run_until_complete(fut).unwrap().unwrap();
    assert_ne!(id, loop_thread);
    assert_eq!(name.as_deref(), Some("evloop-executor"));
    assert_eq!(sum, 5050);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the job's closure was freed");
    lp.close().unwrap();
}

#[test]
fn a_panicking_job_gives_panicked_and_the_pool_keeps_working() {
    let _watchdog = Watchdog::new("a_panicking_job_gives_panicked", LIMIT * 2);
    let lp = EventLoop::new().unwrap();
    let fut = lp.run_in_executor(|| -> u32 { panic!("job failed") });
    let out = lp.run_until_complete(fut).unwrap();
    assert!(matches!(out, Err(Error::Panicked(m)) if m == "job failed"));

    let fut = lp.run_in_executor(|| 5u32);
    assert!(matches!(lp.run_until_complete(fut), Ok(Ok(5))));
    lp.close().unwrap();
}

#[test]
fn many_jobs_all_complete() {
    const JOBS: u64 = 50;
    let _watchdog = Watchdog::new("many_jobs_all_complete", LIMIT * 2);
    let lp = EventLoop::new().unwrap();
    let futures: Vec<_> =
        (0..JOBS).map(|i| lp.run_in_executor(move || (i * i, thread::current().id()))).collect();
    let results = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for fut in futures {
                out.push(fut.await.unwrap());
            }
            out
        })
        .unwrap();
    let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..JOBS).map(|i| i * i).collect::<Vec<_>>());
    let threads: HashSet<_> = results.iter().map(|(_, t)| *t).collect();
    assert!(threads.len() <= MAX_WORKERS, "{} threads", threads.len());
    assert!(!threads.contains(&thread::current().id()));
    lp.close().unwrap();
}

#[test]
fn close_stops_idle_workers() {
    let _watchdog = Watchdog::new("close_stops_idle_workers", LIMIT * 3);
    let lp = EventLoop::new().unwrap();
    let gate = Gate::default();
    let (futures, tids) = blocked_jobs(&lp, 3, &gate);
    gate.open();
    let values = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for fut in futures {
                out.push(fut.await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(values, [0, 1, 2]);
    for tid in &tids {
        assert_eq!(thread_comm(tid).as_deref(), Some("evloop-executor"), "idle workers stay alive");
    }

    lp.close().unwrap();
    let alive = wait_until_exited(&tids);
    assert!(alive.is_empty(), "workers still alive {LIMIT:?} after close: {alive:?}");
}

#[test]
fn close_drops_queued_jobs_and_busy_workers_exit_after_their_job() {
    let _watchdog = Watchdog::new("close_drops_queued_jobs", LIMIT * 3);
    let lp = EventLoop::new().unwrap();
    let gate = Gate::default();
    let (_futures, tids) = blocked_jobs(&lp, MAX_WORKERS, &gate);

    // Every worker is busy: this job waits in the queue.
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    let (token, r) = (SendDropCounter::token(&drops), ran.clone());
    let queued = lp.run_in_executor(move || {
        let _token = token;
        r.store(true, Ordering::SeqCst);
    });

    lp.close().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1, "close drops the jobs that have not started");
    assert!(!ran.load(Ordering::SeqCst));
    assert!(!queued.done());
    for tid in &tids {
        assert!(thread_comm(tid).is_some(), "busy workers finish their job first");
    }

    gate.open();
    let alive = wait_until_exited(&tids);
    assert!(alive.is_empty(), "workers still alive {LIMIT:?} after close: {alive:?}");
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn run_in_executor_on_a_closed_loop_panics() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let _ = lp.run_in_executor(|| 1);
}

#[test]
fn set_default_executor_bounds_the_pool() {
    let _watchdog = Watchdog::new("set_default_executor_bounds_the_pool", LIMIT * 3);
    let lp = EventLoop::new().unwrap();
    assert!(matches!(lp.set_default_executor(0), Err(Error::InvalidState(_))));
    lp.set_default_executor(2).unwrap();
    let gate = Gate::default();
    let (tx, rx) = mpsc::channel();
    let futures: Vec<_> = (0..4)
        .map(|i| {
            let (tx, gate) = (tx.clone(), gate.clone());
            lp.run_in_executor(move || {
                tx.send(current_tid()).unwrap();
                gate.wait();
                i
            })
        })
        .collect();
    let first: HashSet<String> = (0..2).map(|_| rx.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(first.len(), 2);
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "only two jobs run at once");
    gate.open();
    let values = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for fut in futures {
                out.push(fut.await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(values, [0, 1, 2, 3]);
    let all: HashSet<String> = first.into_iter().chain((0..2).map(|_| rx.recv().unwrap())).collect();
    assert_eq!(all.len(), 2, "the last two jobs reuse the two workers");
    lp.close().unwrap();
}

#[test]
fn jobs_of_a_replaced_executor_still_resolve() {
    let _watchdog = Watchdog::new("jobs_of_a_replaced_executor_still_resolve", LIMIT * 3);
    let lp = EventLoop::new().unwrap();
    let gate = Gate::default();
    let (old, old_tids) = blocked_jobs(&lp, 2, &gate);
    lp.set_default_executor(1).unwrap();
    let new = lp.run_in_executor(current_tid);
    gate.open();
    let (olds, new_tid) = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for fut in old {
                out.push(fut.await.unwrap());
            }
            (out, new.await.unwrap())
        })
        .unwrap();
    assert_eq!(olds, [0, 1]);
    assert!(!old_tids.contains(&new_tid), "the new pool has its own thread");
    let alive = wait_until_exited(&old_tids);
    assert!(alive.is_empty(), "the old pool's threads exit once drained: {alive:?}");
    lp.close().unwrap();
}

#[test]
fn shutdown_default_executor_finishes_queued_jobs_waits_for_threads_and_refuses_more() {
    let _watchdog = Watchdog::new("shutdown_default_executor", LIMIT * 3);
    let lp = EventLoop::new().unwrap();
    lp.set_default_executor(1).unwrap();
    let gate = Gate::default();
    let (running, tids) = blocked_jobs(&lp, 1, &gate);
    let queued = lp.run_in_executor(|| 10);
    let shutdown = lp.create_task(lp.shutdown_default_executor());
    let ticks = std::rc::Rc::new(std::cell::Cell::new(0));
    let t = ticks.clone();
    // The loop keeps running while the helper thread waits.
    let ticker = lp.create_task(async move {
        for _ in 0..3 {
            evloop::yield_now().await;
            t.set(t.get() + 1);
        }
    });
    lp.run_until_complete(ticker).unwrap().unwrap();
    assert_eq!(ticks.get(), 3);
    assert!(!shutdown.done(), "a job is still running");
    gate.open();
    lp.run_until_complete(shutdown).unwrap().unwrap().unwrap();
    assert_eq!(running[0].result().unwrap(), 0);
    assert_eq!(queued.result().unwrap(), 10, "queued jobs ran before the shutdown finished");
    // Joined; the kernel may list the thread a moment longer.
    assert!(wait_until_exited(&tids).is_empty(), "the worker has exited");
    let refused = lp.run_until_complete(lp.run_in_executor(|| 1)).unwrap();
    assert!(matches!(refused, Err(Error::InvalidState(_))));
    // A new pool works again.
    lp.set_default_executor(1).unwrap();
    assert_eq!(lp.run_until_complete(lp.run_in_executor(|| 2)).unwrap().unwrap(), 2);
    lp.close().unwrap();
}

#[test]
fn to_thread_runs_on_the_default_executor() {
    let here = current_tid();
    let (tid, name) =
        evloop::run(evloop::to_thread(|| (current_tid(), thread::current().name().map(str::to_owned))))
            .unwrap()
            .unwrap();
    assert_ne!(tid, here);
    assert_eq!(name.as_deref(), Some("evloop-executor"));
    let panicked = evloop::run(evloop::to_thread(|| -> u32 { panic!("in a thread") })).unwrap();
    assert!(matches!(panicked, Err(Error::Panicked(m)) if m == "in a thread"));
}

#[test]
fn run_waits_for_the_executor_threads() {
    let _watchdog = Watchdog::new("run_waits_for_the_executor_threads", LIMIT * 3);
    let (tx, rx) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    evloop::run(async move {
        // Not awaited: the run returns while the job sleeps.
        let _job = evloop::get_running_loop().unwrap().run_in_executor(move || {
            tx.send(current_tid()).unwrap();
            thread::sleep(Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
        });
        evloop::yield_now().await;
    })
    .unwrap();
    let tid = rx.recv_timeout(LIMIT).unwrap();
    assert!(finished.load(Ordering::SeqCst), "asyncio.run shuts the executor down and waits for it");
    assert!(wait_until_exited(&HashSet::from([tid])).is_empty());
}

//! evloop's micro workloads: the `run` subcommand's core set (what
//! `callgrind.sh`, `strace.sh` and `.ci/perf-gate` count) and evloop's
//! column of the suite's micro section, so that both time exactly the
//! same work.
//!
//! Each workload runs `ops` operations on `lp`, times only them, checks its
//! own result (panicking if it is wrong) and returns a [`Sample`].

use std::cell::Cell;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use evloop::{EventLoop, TimerHandle};

use super::TALK_DRAIN;
use crate::common::{Runner, Sample, bump, counter};

/// `ops` × `call_soon`, then one `run_until_idle` drains them all: the cost
/// of scheduling plus dispatching one callback.
pub fn call_soon_batch(lp: &EventLoop, ops: u64) -> Sample {
    let ran = counter();
    let before = lp.stats().callbacks_run;
    let start = Instant::now();
    for _ in 0..ops {
        let ran = ran.clone();
        lp.call_soon(move || bump(&ran));
    }
    lp.run_until_idle().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(ran.get(), ops, "every callback ran exactly once");
    assert_eq!(lp.stats().callbacks_run - before, ops);
    Sample::new(elapsed)
}

pub fn chain_step(lp: EventLoop, ran: Rc<Cell<u64>>, left: u64) {
    bump(&ran);
    if left > 1 {
        let next = lp.clone();
        next.call_soon(move || chain_step(lp, ran, left - 1));
    }
}

/// Runs a chain of `ops` callbacks, each scheduling the next, so every
/// callback costs one full loop iteration. Returns (elapsed, iterations).
pub fn run_chain(lp: &EventLoop, ops: u64) -> (Duration, u64) {
    let ran = counter();
    let before = lp.stats().iterations;
    let start = Instant::now();
    {
        let (l, r) = (lp.clone(), ran.clone());
        lp.call_soon(move || chain_step(l, r, ops));
    }
    lp.run_until_idle().unwrap();
    let elapsed = start.elapsed();
    let iterations = lp.stats().iterations - before;
    assert_eq!(ran.get(), ops, "every link of the chain ran");
    assert_eq!(iterations, ops, "one loop iteration per link");
    (elapsed, iterations)
}

/// One callback per loop turn, no fd registered: the bare iteration cost.
pub fn call_soon_chain(lp: &EventLoop, ops: u64) -> Sample {
    let polls_before = lp.stats().polls;
    let (elapsed, _) = run_chain(lp, ops);
    let polls = lp.stats().polls - polls_before;
    Sample::new(elapsed).metric("polls/turn", polls as f64 / ops as f64)
}

/// A random-ish delay between 1 ms and ~10 s (xorshift64).
pub fn next_delay(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_micros(1_000 + *state % 10_000_000)
}

/// `call_later(random delay)` immediately followed by `cancel()`.
pub fn timer_schedule_cancel(lp: &EventLoop, ops: u64) -> Sample {
    let fired = counter();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let start = Instant::now();
    for _ in 0..ops {
        let f = fired.clone();
        let t: TimerHandle = lp.call_later(next_delay(&mut rng), move || bump(&f));
        t.cancel();
        black_box(&t);
    }
    let elapsed = start.elapsed();
    let stats = lp.stats();
    assert_eq!(stats.timers, 0, "no live timer left");
    assert_eq!(Rc::strong_count(&fired), 1, "cancel dropped every closure");
    lp.run_until_idle().unwrap();
    assert_eq!(fired.get(), 0, "no cancelled timer fired");
    Sample::new(elapsed)
}

/// `ops` × `call_later(0)`, then `run_until_idle` fires them all.
pub fn timer_fire(lp: &EventLoop, ops: u64) -> Sample {
    let fired = counter();
    let start = Instant::now();
    for _ in 0..ops {
        let f = fired.clone();
        lp.call_later(Duration::ZERO, move || bump(&f));
    }
    lp.run_until_idle().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(fired.get(), ops, "every timer fired once");
    assert_eq!(lp.stats().timers, 0);
    Sample::new(elapsed)
}

/// Spawns trivial tasks in batches of 5000 (`create_task`, then
/// `run_until_idle`), reading each task's result.
pub fn task_spawn(lp: &EventLoop, ops: u64) -> Sample {
    const BATCH: u64 = 5_000;
    let ran = counter();
    let mut tasks = Vec::with_capacity(BATCH as usize);
    let mut sum = 0u64;
    let mut done = 0u64;
    let start = Instant::now();
    while done < ops {
        let n = BATCH.min(ops - done);
        for i in done..done + n {
            let r = ran.clone();
            tasks.push(lp.create_task(async move {
                bump(&r);
                i
            }));
        }
        lp.run_until_idle().unwrap();
        for t in tasks.drain(..) {
            sum += t.result().expect("the task finished");
        }
        done += n;
    }
    let elapsed = start.elapsed();
    assert_eq!(ran.get(), ops, "every task ran once");
    assert_eq!(sum, ops * (ops - 1) / 2, "every task's value came back");
    assert_eq!(lp.stats().tasks, 0, "no task left behind");
    Sample::new(elapsed)
}

/// One task: `create_future`, `call_soon(set_result)`, `await` — `ops` times.
pub fn future_roundtrip(lp: &EventLoop, ops: u64) -> Sample {
    let inner = lp.clone();
    let before = lp.stats().iterations;
    let start = Instant::now();
    let sum = lp
        .run_until_complete(async move {
            let mut sum = 0u64;
            for i in 0..ops {
                let fut = inner.create_future::<u64>();
                let setter = fut.clone();
                inner.call_soon(move || setter.set_result(i).unwrap());
                sum += fut.await.unwrap();
            }
            sum
        })
        .unwrap();
    let elapsed = start.elapsed();
    let iterations = lp.stats().iterations - before;
    assert_eq!(sum, ops * (ops.saturating_sub(1)) / 2, "every result arrived");
    Sample::new(elapsed).metric("iters/op", iterations as f64 / ops as f64)
}

/// `run_until_complete` of a trivial future, `ops` times: each call polls
/// it where asyncio would run its task (on this idle loop: at once, with
/// asyncio's two passes done inline) and returns its result (the peers'
/// `block_on`).
pub fn run_until_complete(lp: &EventLoop, ops: u64) -> Sample {
    let before = lp.stats().iterations;
    let mut sum = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        sum += lp.run_until_complete(async move { i }).unwrap();
    }
    let elapsed = start.elapsed();
    let iterations = lp.stats().iterations - before;
    assert_eq!(sum, ops * ops.saturating_sub(1) / 2, "every result came back");
    assert_eq!(lp.stats().tasks, 0, "no task left behind");
    Sample::new(elapsed).metric("iters/op", iterations as f64 / ops.max(1) as f64)
}

/// One task awaiting `yield_now()` `ops` times.
pub fn yield_now(lp: &EventLoop, ops: u64) -> Sample {
    let before = lp.stats().iterations;
    let start = Instant::now();
    let turns = lp
        .run_until_complete(async move {
            let mut turns = 0u64;
            for _ in 0..ops {
                evloop::yield_now().await;
                turns += 1;
            }
            turns
        })
        .unwrap();
    let elapsed = start.elapsed();
    let iterations = lp.stats().iterations - before;
    assert_eq!(turns, ops);
    assert!(iterations > ops, "each yield costs a loop turn ({iterations} iterations)");
    Sample::new(elapsed).metric("iters/op", iterations as f64 / ops as f64)
}

/// One task awaiting `sleep(Duration::ZERO)` `ops` times.
pub fn sleep_zero(lp: &EventLoop, ops: u64) -> Sample {
    let before = lp.stats().iterations;
    let start = Instant::now();
    let turns = lp
        .run_until_complete(async move {
            let mut turns = 0u64;
            for _ in 0..ops {
                evloop::sleep(Duration::ZERO).await;
                turns += 1;
            }
            turns
        })
        .unwrap();
    let elapsed = start.elapsed();
    let iterations = lp.stats().iterations - before;
    assert_eq!(turns, ops);
    assert!(iterations > ops, "each sleep costs a loop turn ({iterations} iterations)");
    Sample::new(elapsed).metric("iters/op", iterations as f64 / ops as f64)
}

/// As `call_soon_chain` with one idle reader registered (a socketpair end
/// nobody writes to), so every iteration really polls the OS.
pub fn fd_chain(lp: &EventLoop, ops: u64) -> Sample {
    let (_a, b) = UnixStream::pair().unwrap();
    let fired = counter();
    let f = fired.clone();
    lp.add_reader(b.as_raw_fd(), move || bump(&f)).unwrap();
    let polls_before = lp.stats().polls;
    let (elapsed, _) = run_chain(lp, ops);
    let polls = lp.stats().polls - polls_before;
    assert_eq!(fired.get(), 0, "the idle reader never fires");
    assert!(polls >= ops, "every iteration polls the fd ({polls} polls for {ops} turns)");
    assert!(lp.remove_reader(b.as_raw_fd()));
    Sample::new(elapsed).metric("polls/turn", polls as f64 / ops as f64)
}

thread_local! {
    static REMOTE_RAN: Cell<u64> = const { Cell::new(0) };
}

/// 4 threads × ops/4 `call_soon_threadsafe` into a running loop; the last
/// callback stops it. Reports polls to show how wake-ups are batched.
pub fn remote_calls(lp: &EventLoop, ops: u64) -> Sample {
    const THREADS: u64 = 4;
    REMOTE_RAN.with(|c| c.set(0));
    let go = Arc::new(Barrier::new(THREADS as usize + 1));
    let mut workers = Vec::new();
    for t in 0..THREADS {
        let remote = lp.remote();
        let go = go.clone();
        let n = ops / THREADS + u64::from(t < ops % THREADS);
        workers.push(std::thread::spawn(move || {
            go.wait();
            for _ in 0..n {
                remote
                    .call_soon_threadsafe(move || {
                        let ran = REMOTE_RAN.with(|c| {
                            c.set(c.get() + 1);
                            c.get()
                        });
                        if ran == ops {
                            evloop::get_running_loop().unwrap().stop();
                        }
                    })
                    .unwrap();
            }
        }));
    }
    let before = lp.stats();
    // Release the senders from inside the running loop.
    lp.call_soon(move || {
        go.wait();
    });
    let start = Instant::now();
    if ops > 0 {
        lp.run_forever().unwrap();
    } else {
        lp.run_until_idle().unwrap();
    }
    let elapsed = start.elapsed();
    for w in workers {
        w.join().unwrap();
    }
    let after = lp.stats();
    assert_eq!(REMOTE_RAN.with(Cell::get), ops, "every remote call ran once");
    let polls = (after.polls - before.polls) as f64;
    let iterations = (after.iterations - before.iterations) as f64;
    Sample::new(elapsed).metric("polls", polls).metric("calls/iter", ops as f64 / iterations.max(1.0))
}

fn timer_step(lp: EventLoop, ran: Rc<Cell<u64>>, left: u64) {
    bump(&ran);
    if left > 1 {
        let next = lp.clone();
        next.call_later(Duration::from_millis(1), move || timer_step(lp, ran, left - 1));
    }
}

/// A chain of `call_later(1 ms)`: the loop blocks in the poller for each
/// link. Measures timer latency (ns per link ≈ 1 ms + overshoot); used by
/// `strace.sh` for syscalls per blocking wait.
pub fn timer_wait_chain(lp: &EventLoop, ops: u64) -> Sample {
    let ran = counter();
    let polls_before = lp.stats().polls;
    let start = Instant::now();
    {
        let (l, r) = (lp.clone(), ran.clone());
        lp.call_later(Duration::from_millis(1), move || timer_step(l, r, ops));
    }
    if ops > 0 {
        while ran.get() < ops {
            lp.run_once(None).unwrap();
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(ran.get(), ops);
    assert!(elapsed >= Duration::from_millis(ops), "timers never fire early");
    Sample::new(elapsed).metric("polls/link", (lp.stats().polls - polls_before) as f64 / ops.max(1) as f64)
}

// ------------------------------------------------------------------ evloop

/// Closes the loop when the runner is dropped (callbacks holding clones of
/// the loop would otherwise keep it alive).
struct Closing(evloop::EventLoop);

impl Drop for Closing {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

/// A runner for one of the shared evloop workloads, on the guarded loop.
fn shared(guard: Closing, work: fn(&evloop::EventLoop, u64) -> Sample) -> Runner {
    Box::new(move |ops| work(&guard.0, ops).elapsed)
}

pub fn evloop_runner(bench: &str) -> Option<Runner> {
    use evloop::EventLoop;
    let guard = Closing(EventLoop::new().expect("create an evloop loop"));
    let r: Runner = match bench {
        // The `run` subcommand's own workloads (above): the
        // suite's evloop column times exactly what `evloop-bench` and
        // `callgrind.sh` measure.
        "call_soon_batch" => shared(guard, call_soon_batch),
        "call_soon_chain" => shared(guard, call_soon_chain),
        "timer_schedule_cancel" => shared(guard, timer_schedule_cancel),
        "timer_fire" => shared(guard, timer_fire),
        "yield_now" => shared(guard, yield_now),
        "sleep_zero" => shared(guard, sleep_zero),
        "future_roundtrip" => shared(guard, future_roundtrip),
        "task_spawn" => shared(guard, task_spawn),
        "run_until_complete" => shared(guard, run_until_complete),
        "talk_run_until_complete" => Box::new(move |ops| {
            let lp = &guard.0;
            let mut done = 0u64;
            let start = Instant::now();
            for _ in 0..ops {
                lp.run_until_complete(evloop::sleep(Duration::ZERO)).unwrap();
                done += 1;
            }
            let t = start.elapsed();
            assert_eq!(done, ops);
            assert_eq!(lp.stats().tasks, 0);
            t
        }),
        "talk_call_soon" => Box::new(move |ops| {
            let lp = &guard.0;
            let ran = counter();
            let start = Instant::now();
            let mut i = 0;
            while i < ops {
                let n = TALK_DRAIN.min(ops - i);
                for _ in 0..n {
                    let ran = ran.clone();
                    lp.call_soon(move || bump(&ran));
                }
                lp.run_until_idle().unwrap();
                i += n;
            }
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            t
        }),
        "talk_call_later0" => Box::new(move |ops| {
            let lp = &guard.0;
            let ran = counter();
            let start = Instant::now();
            let mut i = 0;
            while i < ops {
                let n = TALK_DRAIN.min(ops - i);
                for _ in 0..n {
                    let ran = ran.clone();
                    lp.call_later(Duration::ZERO, move || bump(&ran));
                }
                lp.run_until_idle().unwrap();
                i += n;
            }
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            t
        }),
        _ => return None,
    };
    Some(r)
}

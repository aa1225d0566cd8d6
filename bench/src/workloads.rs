//! The evloop micro benchmarks themselves, shared by the two harnesses:
//! `evloop-bench` (`main.rs`: rounds, targets, callgrind/strace counts)
//! and `peers` (`peers/micro.rs`: evloop's column in the side-by-side
//! suite), so that both time exactly the same work.
//!
//! Each function runs `ops` operations on `lp`, times only them, checks its
//! own result (panicking if it is wrong) and returns a [`Sample`].

// Each binary uses part of this module (`peers` reads no metrics).
#![allow(dead_code)]

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{EventLoop, TimerHandle};

/// What one round of a benchmark reports.
pub struct Sample {
    /// Time of the measured part only (loop construction excluded).
    pub elapsed: Duration,
    /// Extra per-round figures, printed as median (min–max).
    pub metrics: Vec<(&'static str, f64)>,
}

impl Sample {
    pub fn new(elapsed: Duration) -> Sample {
        Sample { elapsed, metrics: Vec::new() }
    }
    pub fn metric(mut self, name: &'static str, value: f64) -> Sample {
        self.metrics.push((name, value));
        self
    }
}

pub fn counter() -> Rc<Cell<u64>> {
    Rc::new(Cell::new(0))
}

pub fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

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

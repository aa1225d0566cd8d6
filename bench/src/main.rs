//! Micro benchmarks for evloop.
//!
//! ```text
//! cargo run --release -p evloop-bench -- [all|NAME...] [--quick] [--ops N] [--rounds N] [--warmup N] [--list]
//! ```
//!
//! Every benchmark builds its own loop, times only the work it measures,
//! and checks its own result (callbacks counted, values summed): a run whose
//! check fails panics instead of printing a number.
//!
//! Each benchmark runs `--rounds` times (7; 3 with `--quick`) after one
//! untimed warm-up round and prints the median and the min–max in ns per
//! operation. `--ops N --rounds 1` (warm-up off unless `--warmup` says so)
//! runs exactly N operations once, for `callgrind.sh` and `strace.sh`.

use std::cell::Cell;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use evloop::{EventLoop, TimerHandle};

/// What one round of a benchmark reports.
struct Sample {
    /// Time of the measured part only (loop construction excluded).
    elapsed: Duration,
    /// Extra per-round figures, printed as median (min–max).
    metrics: Vec<(&'static str, f64)>,
}

impl Sample {
    fn new(elapsed: Duration) -> Sample {
        Sample { elapsed, metrics: Vec::new() }
    }
    fn metric(mut self, name: &'static str, value: f64) -> Sample {
        self.metrics.push((name, value));
        self
    }
}

struct Bench {
    name: &'static str,
    /// Operations per round by default.
    ops: u64,
    /// What one operation is.
    unit: &'static str,
    /// Target median in ns/op, if the project set one.
    target: Option<f64>,
    run: fn(&EventLoop, u64) -> Sample,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "call_soon_batch",
        ops: 200_000,
        unit: "callback",
        target: Some(40.0),
        run: call_soon_batch,
    },
    Bench { name: "call_soon_chain", ops: 200_000, unit: "turn", target: None, run: call_soon_chain },
    Bench {
        name: "timer_schedule_cancel",
        ops: 200_000,
        unit: "pair",
        target: Some(120.0),
        run: timer_schedule_cancel,
    },
    Bench { name: "timer_fire", ops: 100_000, unit: "timer", target: None, run: timer_fire },
    Bench { name: "fd_chain", ops: 200_000, unit: "turn", target: None, run: fd_chain },
    Bench { name: "task_spawn", ops: 50_000, unit: "task", target: Some(300.0), run: task_spawn },
    Bench {
        name: "future_roundtrip",
        ops: 200_000,
        unit: "round trip",
        target: Some(300.0),
        run: future_roundtrip,
    },
    Bench { name: "yield_now", ops: 200_000, unit: "turn", target: Some(350.0), run: yield_now },
    Bench { name: "sleep_zero", ops: 200_000, unit: "turn", target: None, run: sleep_zero },
    Bench { name: "remote_calls", ops: 400_000, unit: "call", target: None, run: remote_calls },
    Bench { name: "timer_wait_chain", ops: 100, unit: "1ms wait", target: None, run: timer_wait_chain },
];

fn new_loop() -> EventLoop {
    EventLoop::new().expect("create the event loop")
}

fn counter() -> Rc<Cell<u64>> {
    Rc::new(Cell::new(0))
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

// ------------------------------------------------------------------ benches

/// `ops` × `call_soon`, then one `run_until_idle` drains them all: the cost
/// of scheduling plus dispatching one callback.
fn call_soon_batch(lp: &EventLoop, ops: u64) -> Sample {
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

fn chain_step(lp: EventLoop, ran: Rc<Cell<u64>>, left: u64) {
    bump(&ran);
    if left > 1 {
        let next = lp.clone();
        next.call_soon(move || chain_step(lp, ran, left - 1));
    }
}

/// Runs a chain of `ops` callbacks, each scheduling the next, so every
/// callback costs one full loop iteration. Returns (elapsed, iterations).
fn run_chain(lp: &EventLoop, ops: u64) -> (Duration, u64) {
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
fn call_soon_chain(lp: &EventLoop, ops: u64) -> Sample {
    let polls_before = lp.stats().polls;
    let (elapsed, _) = run_chain(lp, ops);
    let polls = lp.stats().polls - polls_before;
    Sample::new(elapsed).metric("polls/turn", polls as f64 / ops as f64)
}

/// As `call_soon_chain` with one idle reader registered (a socketpair end
/// nobody writes to), so every iteration really polls the OS.
fn fd_chain(lp: &EventLoop, ops: u64) -> Sample {
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

/// A random-ish delay between 1 ms and ~10 s (xorshift64).
fn next_delay(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_micros(1_000 + *state % 10_000_000)
}

/// `call_later(random delay)` immediately followed by `cancel()`.
fn timer_schedule_cancel(lp: &EventLoop, ops: u64) -> Sample {
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
fn timer_fire(lp: &EventLoop, ops: u64) -> Sample {
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
fn task_spawn(lp: &EventLoop, ops: u64) -> Sample {
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
fn future_roundtrip(lp: &EventLoop, ops: u64) -> Sample {
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
fn yield_now(lp: &EventLoop, ops: u64) -> Sample {
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
fn sleep_zero(lp: &EventLoop, ops: u64) -> Sample {
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

thread_local! {
    static REMOTE_RAN: Cell<u64> = const { Cell::new(0) };
}

/// 4 threads × ops/4 `call_soon_threadsafe` into a running loop; the last
/// callback stops it. Reports polls to show how wake-ups are batched.
fn remote_calls(lp: &EventLoop, ops: u64) -> Sample {
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
fn timer_wait_chain(lp: &EventLoop, ops: u64) -> Sample {
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

// ------------------------------------------------------------------ harness

struct Options {
    names: Vec<String>,
    rounds: usize,
    warmup: usize,
    ops: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: evloop-bench [all|NAME...] [--quick] [--rounds N] [--warmup N] [--ops N] [--list]\n\
         benchmarks: {}",
        BENCHES.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
    );
    std::process::exit(2);
}

fn parse_args() -> Options {
    let mut names = Vec::new();
    let mut rounds = None;
    let mut warmup = None;
    let mut ops = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>| -> u64 {
        v.and_then(|s| s.replace('_', "").parse().ok()).unwrap_or_else(|| usage())
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--rounds" => rounds = Some(number(args.next()) as usize),
            "--warmup" => warmup = Some(number(args.next()) as usize),
            "--ops" => ops = Some(number(args.next())),
            "--list" => {
                for b in BENCHES {
                    println!("{:<22} {:>8} ops/round  (1 op = {})", b.name, b.ops, b.unit);
                }
                std::process::exit(0);
            }
            "-h" | "--help" => usage(),
            "all" => names.extend(BENCHES.iter().map(|b| b.name.to_string())),
            s if s.starts_with('-') => usage(),
            s => {
                if !BENCHES.iter().any(|b| b.name == s) {
                    eprintln!("unknown benchmark {s:?}");
                    usage();
                }
                names.push(s.to_string());
            }
        }
    }
    if names.is_empty() {
        names.extend(BENCHES.iter().map(|b| b.name.to_string()));
    }
    let rounds = rounds.unwrap_or(if quick { 3 } else { 7 }).max(1);
    // An exact op count is for instruction/syscall counting: no warm-up.
    let warmup = warmup.unwrap_or(if ops.is_some() { 0 } else { 1 });
    Options { names, rounds, warmup, ops }
}

/// The 1-minute load average: on a shared machine, numbers taken under load
/// are not comparable with numbers taken on an idle one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 100.0 { format!("{ns:.0}") } else { format!("{ns:.1}") }
}

fn fmt_metric(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") }
}

/// One timed round. Not inlined so that `callgrind.sh` can count only the
/// measured rounds (`--toggle-collect=*measured_round*`), leaving the
/// warm-up round out.
#[inline(never)]
fn measured_round(bench: &Bench, lp: &EventLoop, ops: u64) -> Sample {
    (bench.run)(lp, ops)
}

struct Result_ {
    bench: &'static Bench,
    median: f64,
}

fn main() {
    let opts = parse_args();
    println!(
        "evloop-bench: {} round(s) per benchmark, {} warm-up, ns per op (median, min-max); load average {}",
        opts.rounds,
        opts.warmup,
        load_average()
    );
    println!("{:<22} {:>8} {:>10} {:>21}  {:<11} extra", "benchmark", "ops", "median", "min-max", "op");
    let mut results = Vec::new();
    for name in &opts.names {
        let bench = BENCHES.iter().find(|b| b.name == name).expect("checked in parse_args");
        let ops = opts.ops.unwrap_or(bench.ops);
        // One loop per benchmark, shared by its warm-up and timed rounds: a
        // real loop lives long, so its queues keep their capacity and the
        // allocator is warm. Every round leaves the loop idle.
        let lp = new_loop();
        for _ in 0..opts.warmup {
            black_box((bench.run)(&lp, ops));
        }
        let samples: Vec<Sample> =
            (0..opts.rounds).map(|_| measured_round(bench, &lp, black_box(ops))).collect();
        lp.close().expect("close the loop");
        let per_op =
            sorted(samples.iter().map(|s| s.elapsed.as_nanos() as f64 / ops.max(1) as f64).collect());
        let med = median(&per_op);
        let mut extra = Vec::new();
        for (i, (metric, _)) in samples[0].metrics.iter().enumerate() {
            let vals = sorted(samples.iter().map(|s| s.metrics[i].1).collect());
            let (lo, hi) = (vals[0], vals[vals.len() - 1]);
            if lo == hi {
                extra.push(format!("{metric}={}", fmt_metric(lo)));
            } else {
                extra.push(format!(
                    "{metric}={} ({}-{})",
                    fmt_metric(median(&vals)),
                    fmt_metric(lo),
                    fmt_metric(hi)
                ));
            }
        }
        let range = format!("{}-{}", fmt_ns(per_op[0]), fmt_ns(per_op[per_op.len() - 1]));
        println!(
            "{:<22} {:>8} {:>10} {:>21}  {:<11} {}",
            bench.name,
            ops,
            fmt_ns(med),
            range,
            bench.unit,
            extra.join(" ")
        );
        results.push(Result_ { bench, median: med });
    }
    println!("load average at the end: {}", load_average());
    let targeted: Vec<&Result_> = results.iter().filter(|r| r.bench.target.is_some()).collect();
    if !targeted.is_empty() {
        println!("\ntargets (median ns/op):");
        let mut failed = 0;
        for r in targeted {
            let target = r.bench.target.expect("filtered");
            let pass = r.median <= target;
            failed += usize::from(!pass);
            println!(
                "  {:<22} <= {:>5.0}   measured {:>8}   {}",
                r.bench.name,
                target,
                fmt_ns(r.median),
                if pass { "PASS" } else { "FAIL" }
            );
        }
        if failed > 0 {
            println!("  {failed} target(s) missed");
        }
    }
}

//! `evloop-bench run`: evloop's own benchmarks, the core loop
//! (`micro/evloop.rs`) and loopback networking (`io/run_set.rs`), with
//! rounds, medians and the per-benchmark targets.
//!
//! ```text
//! evloop-bench run [all|core|io|NAME...] [--quick] [--ops N] [--rounds N] [--warmup N] [--list]
//! ```
//!
//! Every benchmark builds its own loop, times only the work it measures,
//! and checks its own result (callbacks counted, values summed, bytes
//! echoed and compared): a run whose check fails panics instead of printing
//! a number.
//!
//! Each benchmark runs `--rounds` times (7; 3 with `--quick`) after one
//! untimed warm-up round, the rounds of all selected benchmarks interleaved
//! (A B C A B C ...), and prints the median and the min–max per operation
//! (ns, µs or GB/s). `--ops N --rounds 1` (warm-up off unless `--warmup`
//! says so) runs exactly N operations once: what `callgrind.sh`,
//! `strace.sh` and `.ci/perf-gate` count.

use std::hint::black_box;

use evloop::EventLoop;

use crate::common::Sample;
use crate::io::run_set as io;
use crate::micro::evloop::*;

/// How a benchmark's per-op figure is printed.
#[derive(Clone, Copy)]
enum Show {
    /// Nanoseconds per op.
    Ns,
    /// Microseconds per op.
    Us,
    /// Throughput: GB/s (10^9 bytes per second) with this many bytes per op.
    GBps(u64),
}

/// Core loop micro benchmarks, or the networking ones (`io.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    Core,
    Io,
}

struct Bench {
    name: &'static str,
    group: Group,
    /// Operations per round by default.
    ops: u64,
    /// Operations per round with `--quick`, if not `ops`.
    quick_ops: Option<u64>,
    /// What one operation is.
    unit: &'static str,
    show: Show,
    /// Target median in ns/op, if the project set one.
    target: Option<f64>,
    run: fn(&EventLoop, u64) -> Sample,
}

/// A core benchmark, printed in ns/op.
const fn core_bench(
    name: &'static str,
    ops: u64,
    unit: &'static str,
    target: Option<f64>,
    run: fn(&EventLoop, u64) -> Sample,
) -> Bench {
    Bench { name, group: Group::Core, ops, quick_ops: None, unit, show: Show::Ns, target, run }
}

/// An I/O benchmark (its targets are in `IO_TARGETS`).
const fn io_bench(
    name: &'static str,
    ops: u64,
    quick_ops: Option<u64>,
    unit: &'static str,
    show: Show,
    run: fn(&EventLoop, u64) -> Sample,
) -> Bench {
    Bench { name, group: Group::Io, ops, quick_ops, unit, show, target: None, run }
}

const BULK_CHUNK: u64 = io::CHUNK as u64;

const BENCHES: &[Bench] = &[
    core_bench("call_soon_batch", 200_000, "callback", Some(40.0), call_soon_batch),
    core_bench("call_soon_chain", 200_000, "turn", None, call_soon_chain),
    core_bench("timer_schedule_cancel", 200_000, "pair", Some(120.0), timer_schedule_cancel),
    core_bench("timer_fire", 100_000, "timer", None, timer_fire),
    core_bench("fd_chain", 200_000, "turn", None, fd_chain),
    core_bench("task_spawn", 50_000, "task", Some(300.0), task_spawn),
    core_bench("future_roundtrip", 200_000, "round trip", Some(300.0), future_roundtrip),
    core_bench("run_until_complete", 100_000, "call", None, run_until_complete),
    core_bench("yield_now", 200_000, "turn", Some(350.0), yield_now),
    core_bench("sleep_zero", 200_000, "turn", None, sleep_zero),
    core_bench("remote_calls", 400_000, "call", None, remote_calls),
    core_bench("timer_wait_chain", 100, "1ms wait", None, timer_wait_chain),
    io_bench("echo_protocol_1k", 20_000, None, "round trip", Show::Us, io::echo_protocol_1k),
    io_bench("echo_protocol_10k", 10_000, None, "round trip", Show::Us, io::echo_protocol_10k),
    io_bench("echo_protocol_100k", 2_000, None, "round trip", Show::Us, io::echo_protocol_100k),
    io_bench("echo_buffered_1k", 20_000, None, "round trip", Show::Us, io::echo_buffered_1k),
    io_bench("echo_streams_1k", 20_000, None, "round trip", Show::Us, io::echo_streams_1k),
    io_bench("echo_raw_epoll_1k", 20_000, None, "round trip", Show::Us, io::echo_raw_epoll_1k),
    io_bench("echo_tokio_1k", 20_000, None, "round trip", Show::Us, io::echo_tokio_1k),
    // 4096 × 256 KiB = 1 GiB (--quick: 256 MiB).
    io_bench("bulk_streams", 4096, Some(1024), "256KiB", Show::GBps(BULK_CHUNK), io::bulk_streams),
    io_bench("bulk_protocol", 4096, Some(1024), "256KiB", Show::GBps(BULK_CHUNK), io::bulk_protocol),
    io_bench("bulk_raw_epoll", 4096, Some(1024), "256KiB", Show::GBps(BULK_CHUNK), io::bulk_raw_epoll),
];

/// A target relating two benchmarks of the same run (or a throughput).
enum IoTarget {
    /// median(name) ≤ max × median(base) (`<` if `strict`).
    Ratio { name: &'static str, base: &'static str, max: f64, strict: bool },
    /// At least this many GB/s (median).
    MinGBps { name: &'static str, gbps: f64 },
}

const IO_TARGETS: &[IoTarget] = &[
    IoTarget::Ratio { name: "echo_protocol_1k", base: "echo_raw_epoll_1k", max: 1.2, strict: false },
    IoTarget::Ratio { name: "echo_protocol_1k", base: "echo_tokio_1k", max: 1.0, strict: true },
    IoTarget::Ratio { name: "echo_streams_1k", base: "echo_protocol_1k", max: 1.5, strict: false },
    IoTarget::MinGBps { name: "bulk_streams", gbps: 1.5 },
];

fn new_loop() -> EventLoop {
    EventLoop::new().expect("create the event loop")
}

// ------------------------------------------------------------------ benches

// ------------------------------------------------------------------ harness

struct Options {
    names: Vec<String>,
    rounds: usize,
    warmup: usize,
    ops: Option<u64>,
    quick: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: evloop-bench run [all|core|io|NAME...] [--quick] [--rounds N] [--warmup N] [--ops N] [--list]\n\
         benchmarks: {}",
        BENCHES.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
    );
    std::process::exit(2);
}

fn parse_args(args: Vec<String>) -> Options {
    let mut names: Vec<String> = Vec::new();
    let mut rounds = None;
    let mut warmup = None;
    let mut ops = None;
    let mut quick = false;
    let mut args = args.into_iter();
    let number = |v: Option<String>| -> u64 {
        v.and_then(|s| s.replace('_', "").parse().ok()).unwrap_or_else(|| usage())
    };
    let group = |g: Option<Group>| BENCHES.iter().filter(move |b| g.is_none_or(|g| b.group == g));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--rounds" => rounds = Some(number(args.next()) as usize),
            "--warmup" => warmup = Some(number(args.next()) as usize),
            "--ops" => ops = Some(number(args.next())),
            "--list" => {
                for b in BENCHES {
                    let group = if b.group == Group::Io { "io" } else { "core" };
                    println!("{:<22} {:<4} {:>8} ops/round  (1 op = {})", b.name, group, b.ops, b.unit);
                }
                std::process::exit(0);
            }
            "-h" | "--help" => usage(),
            "all" => names.extend(group(None).map(|b| b.name.to_string())),
            "core" => names.extend(group(Some(Group::Core)).map(|b| b.name.to_string())),
            "io" => names.extend(group(Some(Group::Io)).map(|b| b.name.to_string())),
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
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let rounds = rounds.unwrap_or(if quick { 3 } else { 7 }).max(1);
    // An exact op count is for instruction/syscall counting: no warm-up.
    let warmup = warmup.unwrap_or(if ops.is_some() { 0 } else { 1 });
    Options { names, rounds, warmup, ops, quick }
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

impl Show {
    /// The printed figure for `ns` per op, and its unit.
    fn value(self, ns: f64) -> f64 {
        match self {
            Show::Ns => ns,
            Show::Us => ns / 1000.0,
            Show::GBps(bytes) => bytes as f64 / ns.max(f64::MIN_POSITIVE),
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Show::Ns => "ns/op",
            Show::Us => "us/op",
            Show::GBps(_) => "GB/s",
        }
    }
    fn fmt(self, v: f64) -> String {
        match self {
            Show::Ns => fmt_ns(v),
            Show::Us | Show::GBps(_) => format!("{v:.2}"),
        }
    }
}

/// One timed round. Not inlined so that `callgrind.sh` can count only the
/// measured rounds (`--toggle-collect=*measured_round*`), leaving the
/// warm-up round out.
#[inline(never)]
fn measured_round(bench: &Bench, lp: &EventLoop, ops: u64) -> Sample {
    (bench.run)(lp, ops)
}

/// One benchmark of this invocation: its loop and its rounds, in order.
struct Run {
    bench: &'static Bench,
    lp: EventLoop,
    ops: u64,
    samples: Vec<Sample>,
    /// ns per op of each round, in round order.
    per_op: Vec<f64>,
    median: f64,
}

/// The `run` subcommand; `args` follow the word `run`.
pub fn main(args: Vec<String>) {
    let opts = parse_args(args);
    println!(
        "evloop-bench: {} round(s) per benchmark, interleaved (A B C A B C ...), {} warm-up; \
         median and min-max per op; load average {}",
        opts.rounds,
        opts.warmup,
        load_average()
    );
    let mut runs: Vec<Run> = opts
        .names
        .iter()
        .map(|name| {
            let bench = BENCHES.iter().find(|b| b.name == name).expect("checked in parse_args");
            let default_ops = if opts.quick { bench.quick_ops.unwrap_or(bench.ops) } else { bench.ops };
            // One loop per benchmark, shared by its warm-up and timed rounds:
            // a real loop lives long, so its queues keep their capacity and
            // the allocator is warm. Every round leaves the loop idle.
            Run {
                bench,
                lp: new_loop(),
                ops: opts.ops.unwrap_or(default_ops),
                samples: Vec::new(),
                per_op: Vec::new(),
                median: 0.0,
            }
        })
        .collect();
    for run in &runs {
        for _ in 0..opts.warmup {
            black_box((run.bench.run)(&run.lp, run.ops));
        }
    }
    // Round by round across the benchmarks, so that a burst of load on the
    // shared machine hits every peer alike and ratios stay comparable.
    for _ in 0..opts.rounds {
        for run in &mut runs {
            let sample = measured_round(run.bench, &run.lp, black_box(run.ops));
            run.samples.push(sample);
        }
    }
    println!(
        "{:<22} {:>8} {:>10} {:>21} {:<6} {:<11} extra",
        "benchmark", "ops", "median", "min-max", "unit", "op"
    );
    for run in &mut runs {
        run.lp.close().expect("close the loop");
        let (bench, ops, samples) = (run.bench, run.ops, &run.samples);
        run.per_op = samples.iter().map(|s| s.elapsed.as_nanos() as f64 / ops.max(1) as f64).collect();
        let per_op = sorted(run.per_op.clone());
        run.median = median(&per_op);
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
        let show = bench.show;
        // Throughput: the slowest round gives the lowest figure.
        let (a, b) = (show.value(per_op[0]), show.value(per_op[per_op.len() - 1]));
        let range = format!("{}-{}", show.fmt(a.min(b)), show.fmt(a.max(b)));
        println!(
            "{:<22} {:>8} {:>10} {:>21} {:<6} {:<11} {}",
            bench.name,
            ops,
            show.fmt(show.value(run.median)),
            range,
            show.unit(),
            bench.unit,
            extra.join(" ")
        );
    }
    println!("load average at the end: {}", load_average());
    let targeted: Vec<&Run> = runs.iter().filter(|r| r.bench.target.is_some()).collect();
    let mut failed = 0;
    if !targeted.is_empty() {
        println!("\ntargets (median ns/op):");
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
    }
    failed += io_targets(&runs);
    if failed > 0 {
        println!("  {failed} target(s) missed");
    }
}

/// Prints the I/O targets whose benchmarks ran; returns how many failed.
/// A ratio target is judged on the median of the paired per-round ratios
/// (round i of one against round i of the other, taken back to back, so a
/// burst of load on the shared machine hits both); the ratio of the two
/// medians is printed beside it.
fn io_targets(runs: &[Run]) -> usize {
    let find = |name: &str| runs.iter().find(|r| r.bench.name == name);
    let mut lines = Vec::new();
    let mut failed = 0;
    for t in IO_TARGETS {
        match *t {
            IoTarget::Ratio { name, base, max, strict } => {
                let (Some(a), Some(b)) = (find(name), find(base)) else { continue };
                let paired = sorted(a.per_op.iter().zip(&b.per_op).map(|(x, y)| x / y).collect());
                let ratio = median(&paired);
                let pass = if strict { ratio < max } else { ratio <= max };
                failed += usize::from(!pass);
                let op = if strict { "<" } else { "<=" };
                lines.push(format!(
                    "  {name:<18} {op:>2} {max:.1} x {base:<18} measured {ratio:.3} x \
                     (rounds {:.3}-{:.3}; ratio of medians {:.3})   {}",
                    paired[0],
                    paired[paired.len() - 1],
                    a.median / b.median,
                    if pass { "PASS" } else { "FAIL" }
                ));
            }
            IoTarget::MinGBps { name, gbps } => {
                let Some(a) = find(name) else { continue };
                let measured = a.bench.show.value(a.median);
                let pass = measured >= gbps;
                failed += usize::from(!pass);
                lines.push(format!(
                    "  {name:<18} >= {gbps:.1} GB/s {:<22}measured {measured:.2} GB/s   {}",
                    "",
                    if pass { "PASS" } else { "FAIL" }
                ));
            }
        }
    }
    if !lines.is_empty() {
        println!("\nI/O targets (ratios: median of the paired per-round ratios):");
        for l in lines {
            println!("{l}");
        }
    }
    failed
}

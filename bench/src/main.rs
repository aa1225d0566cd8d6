//! evloop's benchmark harness: one binary, one subcommand per use.
//!
//! ```text
//! evloop-bench run [all|core|io|NAME...] [--quick] [--ops N] [--rounds N] [--warmup N] [--list]
//!     evloop's own benchmarks with rounds and targets (harness.rs); with
//!     --ops N --rounds 1: exactly N ops, for callgrind.sh, strace.sh, .ci/perf-gate
//! evloop-bench suite [--quick] [--rounds N] [--only SECTION,...] [--python PATH]
//!                    [--http-hello PATH] [--out FILE] [--results DIR]
//!     the side-by-side suite (bench/run.sh): writes BENCHMARKS.md, chart.svg, raw.tsv.
//!     Sections: micro echo bulk tls cross http eco multi memory subprocess counts
//! evloop-bench one micro NAME PEER OPS   one run of a Rust micro benchmark (for perf)
//! evloop-bench one echo PEER SIZE N      one in-process echo session
//! evloop-bench one bulk PEER BYTES       one in-process bulk transfer
//! evloop-bench one subprocess NAME PEER OPS   spawn|cat on evloop|tokio
//! evloop-bench echo-count PEER SIZE N    an echo inside `measured_echo` (callgrind, strace)
//! evloop-bench bulk-count PEER BYTES     a bulk transfer inside `measured_bulk` (strace)
//! evloop-bench chart RAW.tsv OUT.svg     redraw the chart from a run's raw values
//! evloop-bench serve KIND PORT           echo-evloop | echo-tokio | http-hyper | http-hyper-mt2
//!                                        | hyper-evloop | axum-evloop | axum-tokio
//!                                        | axum-evloop-timeout | axum-tokio-timeout
//! evloop-bench loadgen PORT CONNS SIZE SECS [WARM]   the cross-process echo load generator
//! evloop-bench mem-timers evloop|tokio N RSS with N pending timers
//! ```
//!
//! Layout: one module per workload family, the peer (evloop, tokio, smol,
//! calloop, raw epoll, asyncio/uvloop) a parameter of each: `micro/`,
//! `io/` (in-process echo and bulk), `net.rs` (cross-process echo),
//! `http.rs`, `multi.rs` (HTTP on 2 cores), `memory.rs`, `counts.rs` (callgrind and strace), `python.rs`
//! (the asyncio/uvloop workers). `suite.rs` runs the sections; `report/`
//! writes the markdown, the targets, the chart and the raw values.

mod common;
mod counts;
mod eco;
mod harness;
mod http;
mod io;
mod memory;
mod micro;
mod multi;
mod net;
mod process;
mod python;
mod report;
mod subprocess;
mod suite;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "{}",
        include_str!("main.rs")
            .lines()
            .skip(3)
            .take(18)
            .map(|l| l.trim_start_matches("//! "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::process::exit(2);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    let s = args.get(i).unwrap_or_else(|| usage());
    s.parse().ok().or_else(|| s.replace('_', "").parse().ok()).unwrap_or_else(|| usage())
}

/// One echo session, not inlined so that callgrind can count only it.
#[inline(never)]
fn measured_echo(peer: &str, size: usize, n: u64) -> Duration {
    let mut r = io::echo_runner(peer, size).unwrap_or_else(|| usage());
    r(n)
}

/// One bulk transfer, not inlined so that callgrind can count only it.
#[inline(never)]
fn measured_bulk(peer: &str, bytes: u64) -> Duration {
    let mut r = io::bulk_runner(peer).unwrap_or_else(|| usage());
    r(bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => harness::main(args[1..].to_vec()),
        Some("suite") => suite::run_all(parse_suite(&args[1..])),
        Some("one") => match args.get(1).map(String::as_str) {
            Some("micro") => {
                let (name, peer, ops): (String, String, u64) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
                let mut r = micro::runner(&peer, &name).unwrap_or_else(|| usage());
                let d = r(ops);
                println!("{name} {peer}: {:.1} ns/op", d.as_nanos() as f64 / ops as f64);
            }
            Some("echo") => {
                let (peer, size, n): (String, usize, u64) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
                let d = measured_echo(&peer, size, n);
                println!("echo {peer} {size} B: {:.2} µs/round trip", d.as_nanos() as f64 / 1e3 / n as f64);
            }
            Some("bulk") => {
                let (peer, bytes): (String, u64) = (arg(&args, 2), arg(&args, 3));
                let d = measured_bulk(&peer, bytes);
                println!(
                    "bulk {peer} {bytes} B: {:.0} MiB/s",
                    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
                );
            }
            Some("subprocess") => {
                let (name, peer, ops): (String, String, u64) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
                let mut r = subprocess::runner(&peer, &name).unwrap_or_else(|| usage());
                let d = r(ops);
                println!(
                    "subprocess {name} {peer}: {:.1} µs/op, {:.0} ops/s",
                    d.as_nanos() as f64 / 1e3 / ops as f64,
                    ops as f64 / d.as_secs_f64()
                );
            }
            _ => usage(),
        },
        Some("echo-count") => {
            let (peer, size, n): (String, usize, u64) = (arg(&args, 1), arg(&args, 2), arg(&args, 3));
            std::hint::black_box(measured_echo(&peer, size, n));
        }
        Some("bulk-count") => {
            let (peer, bytes): (String, u64) = (arg(&args, 1), arg(&args, 2));
            std::hint::black_box(measured_bulk(&peer, bytes));
        }
        Some("chart") => {
            let (tsv, svg): (String, String) = (arg(&args, 1), arg(&args, 2));
            let rows = report::chart::rows_from_tsv(std::path::Path::new(&tsv));
            report::chart::draw_chart(&rows, std::path::Path::new(&svg));
        }
        Some("serve") => net::serve(&arg::<String>(&args, 1), arg(&args, 2)),
        Some("loadgen") => {
            let warm = args.get(5).and_then(|w| w.parse().ok()).unwrap_or(0.2);
            net::loadgen(arg(&args, 1), arg(&args, 2), arg(&args, 3), arg(&args, 4), warm)
        }
        Some("mem-timers") => memory::mem_timers(&arg::<String>(&args, 1), arg(&args, 2)),
        _ => usage(),
    }
}

fn parse_suite(args: &[String]) -> suite::Config {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf();
    let exe_dir =
        std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)).unwrap_or_default();
    let venv_python = root.join("bench/.venv/bin/python");
    let mut cfg = suite::Config {
        quick: false,
        rounds: 0,
        python: if venv_python.exists() { venv_python } else { PathBuf::from("python3") },
        http_hello: exe_dir.join("examples/http_hello"),
        out_md: root.join("BENCHMARKS.md"),
        results: root.join("bench/results"),
        root,
        only: Vec::new(),
        command_line: String::new(),
    };
    let mut i = 0;
    let mut shown = vec!["bench/run.sh".to_string()];
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--quick" => {
                cfg.quick = true;
                shown.push("--quick".into());
            }
            "--rounds" => {
                cfg.rounds = value().parse().unwrap_or_else(|_| usage());
                shown.push(format!("--rounds {}", cfg.rounds));
                i += 1;
            }
            "--only" => {
                cfg.only = value().split(',').map(str::to_string).collect();
                for s in &cfg.only {
                    if !suite::SECTIONS.contains(&s.as_str()) {
                        eprintln!("unknown section {s:?}; sections: {}", suite::SECTIONS.join(" "));
                        std::process::exit(2);
                    }
                }
                shown.push(format!("--only {}", value()));
                i += 1;
            }
            "--python" => {
                cfg.python = PathBuf::from(value());
                i += 1;
            }
            "--http-hello" => {
                cfg.http_hello = PathBuf::from(value());
                i += 1;
            }
            "--out" => {
                cfg.out_md = PathBuf::from(value());
                i += 1;
            }
            "--results" => {
                cfg.results = PathBuf::from(value());
                i += 1;
            }
            _ => usage(),
        }
        i += 1;
    }
    if cfg.rounds == 0 {
        cfg.rounds = if cfg.quick { 3 } else { 7 };
    }
    cfg.command_line = shown.join(" ");
    cfg
}

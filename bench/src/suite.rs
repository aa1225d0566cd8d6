//! `evloop-bench suite` (what `bench/run.sh` runs): every section, peers
//! interleaved round by round; the report writer (`report/`) turns the
//! rows into BENCHMARKS.md, bench/results/chart.svg and
//! bench/results/raw.tsv.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::common::{Row, Runner, load_average};
use crate::process::{output_of, say};
use crate::report::{self, targets};
use crate::{counts, eco, http, io, memory, micro, net, python, subprocess};

pub const SECTIONS: &[&str] =
    &["micro", "echo", "bulk", "tls", "cross", "http", "eco", "multi", "memory", "subprocess", "counts"];

/// What `suite` was asked to do.
pub struct Config {
    pub quick: bool,
    pub rounds: usize,
    pub root: PathBuf,
    pub python: PathBuf,
    pub http_hello: PathBuf,
    pub out_md: PathBuf,
    pub results: PathBuf,
    pub only: Vec<String>,
    pub command_line: String,
}

impl Config {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
    pub fn py_script(&self, name: &str) -> PathBuf {
        self.root.join("bench/python").join(name)
    }
}

/// A target of the issue, evaluated on this run's numbers.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub pass: Option<bool>,
}

/// Everything one run produced, for the report writer.
#[derive(Default)]
pub struct Suite {
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    /// Extra markdown per section (counts, notes).
    pub extra: Vec<(&'static str, String)>,
    pub notes: Vec<String>,
    pub versions: Vec<(String, String)>,
}

/// Runs `runners` round by round, rotating the order each round (A B C,
/// B C A, …), after one untimed warm-up run each when `warm_ops > 0`.
/// Returns the per-round values `value(duration, ops)` for each runner.
pub fn interleave(
    runners: &mut [(String, Runner)],
    ops: u64,
    warm_ops: u64,
    rounds: usize,
    value: impl Fn(Duration, u64) -> f64,
) -> Vec<Vec<f64>> {
    if warm_ops > 0 {
        for (_, r) in runners.iter_mut() {
            std::hint::black_box(r(warm_ops));
        }
    }
    let n = runners.len();
    let mut out = vec![Vec::new(); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let d = (runners[i].1)(ops);
            out[i].push(value(d, ops));
        }
    }
    out
}

pub fn run_all(cfg: Config) {
    let started_at = output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let t0 = Instant::now();
    let load_start = load_average();
    std::fs::create_dir_all(&cfg.results).expect("create the results directory");
    // The last run's raw values, before this run overwrites them: the echo
    // and memory targets compare with them.
    let raw = cfg.results.join("raw.tsv");
    let previous = if raw.exists() { report::chart::rows_from_tsv(&raw) } else { Vec::new() };
    let mut s = Suite::default();
    let mut workers: Vec<(String, python::Shared)> = Vec::new();
    for kind in ["asyncio", "uvloop"] {
        match python::Worker::spawn(&cfg.python, &cfg.py_script("micro.py"), kind) {
            Ok(mut w) => {
                if w.answers() {
                    workers.push((kind.to_string(), Rc::new(RefCell::new(w))));
                } else {
                    s.notes.push(format!(
                        "the {kind} worker exited at start (is {kind} installed for {}?): no {kind} numbers",
                        cfg.python.display()
                    ));
                }
            }
            Err(e) => s.notes.push(format!("the {kind} worker did not start ({e}): no {kind} numbers")),
        }
    }
    say(format!(
        "suite ({} mode, {} rounds); load average {load_start}",
        if cfg.quick { "quick" } else { "full" },
        cfg.rounds
    ));
    if cfg.wants("micro") {
        micro::section_micro(&cfg, &mut s, &workers);
    }
    if cfg.wants("echo") {
        io::section_echo(&cfg, &mut s, &workers);
    }
    if cfg.wants("bulk") {
        io::section_bulk(&cfg, &mut s, &workers);
    }
    if cfg.wants("tls") {
        crate::tls::section_tls(&cfg, &mut s);
    }
    if cfg.wants("cross") {
        net::section_cross(&cfg, &mut s);
    }
    if cfg.wants("http") {
        http::section_http(&cfg, &mut s);
    }
    if cfg.wants("eco") {
        eco::section_eco(&cfg, &mut s);
    }
    if cfg.wants("multi") {
        crate::multi::section_multi(&cfg, &mut s);
    }
    if cfg.wants("memory") {
        memory::section_memory(&cfg, &mut s);
    }
    if cfg.wants("subprocess") {
        subprocess::section_subprocess(&cfg, &mut s);
    }
    if cfg.wants("counts") {
        counts::section_counts(&cfg, &mut s);
    }
    s.versions = report::versions(&cfg, &workers);
    drop(workers);
    targets::evaluate_targets(&mut s, &previous);
    let load_end = load_average();
    report::write_report(&cfg, &s, &started_at, t0.elapsed(), (load_start, load_end));
    println!("\ntargets:");
    for t in &s.targets {
        let res = match t.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        println!("  {res:<5} {}: {}", t.what, t.measured);
    }
    println!(
        "\nwrote {} and {}/chart.svg in {:.0} s",
        cfg.out_md.display(),
        cfg.results.display(),
        t0.elapsed().as_secs_f64()
    );
}

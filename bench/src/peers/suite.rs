//! `peers all`: runs every section, peers interleaved round by round, and
//! writes BENCHMARKS.md, bench/results/chart.svg and bench/results/raw.tsv.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::common::{Cell, Row, Runner, load_average, raise_fd_limit, rss_kib};
use crate::report::{self, Panel, fmt_ratio, relative_speed};
use crate::{io, micro, net, python};

pub const SECTIONS: &[&str] = &["micro", "echo", "bulk", "cross", "http", "memory", "counts"];

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
    fn py_script(&self, name: &str) -> PathBuf {
        self.root.join("bench/python").join(name)
    }
}

/// A target of the issue, evaluated on this run's numbers.
struct Target {
    what: &'static str,
    measured: String,
    pass: Option<bool>,
}

#[derive(Default)]
struct Suite {
    rows: Vec<Row>,
    targets: Vec<Target>,
    /// Extra markdown per section (counts, notes).
    extra: Vec<(&'static str, String)>,
    notes: Vec<String>,
    versions: Vec<(String, String)>,
}

fn say(msg: impl AsRef<str>) {
    eprintln!("[peers {}] {}", chrono_like_now(), msg.as_ref());
}

fn chrono_like_now() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    format!("{:6.1}s", start.elapsed().as_secs_f64())
}

/// Runs `runners` round by round, rotating the order each round (A B C,
/// B C A, …), after one untimed warm-up run each when `warm_ops > 0`.
/// Returns the per-round values `value(duration, ops)` for each runner.
fn interleave(
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

/// Wraps `cmd` with `taskset -c CPU` when taskset exists.
fn pinned(cpu: usize, program: &Path) -> Command {
    if have("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(s.trim().to_string())
}

/// A server process, killed on drop.
struct Server {
    name: String,
    child: Child,
    port: u16,
}

impl Server {
    fn start(name: &str, mut cmd: Command) -> Result<Server, String> {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("{name}: spawn: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let port = loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name}: exited before listening"));
            }
            if let Some(port) = port_in(&line) {
                break port;
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Ok(Server { name: name.to_string(), child, port })
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn rss_kib(&self) -> Option<(u64, u64)> {
        rss_kib(&self.child.id().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a line like "listening on 127.0.0.1:8080" or
/// "serving HTTP on http://127.0.0.1:8080/".
fn port_in(line: &str) -> Option<u16> {
    let i = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn self_exe() -> PathBuf {
    std::env::current_exe().expect("own executable")
}

// ------------------------------------------------------------------ sections

const MICRO_PEERS: &[&str] = &["evloop", "asyncio", "uvloop", "tokio", "smol", "calloop"];

fn section_micro(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
    for b in micro::BENCHES {
        let ops = if cfg.quick { b.ops_quick } else { b.ops_full };
        let mut runners: Vec<(String, Runner)> = Vec::new();
        let mut row = Row::new("micro", b.name, format!("ns/{}", b.unit), true);
        for peer in MICRO_PEERS {
            let runner = match *peer {
                "asyncio" | "uvloop" => workers
                    .iter()
                    .find(|(k, _)| k == peer)
                    .map(|(_, w)| python::runner(w, move |ops| format!("micro {} {ops}", b.name))),
                _ => micro::runner(peer, b.name),
            };
            match runner {
                Some(r) => runners.push((peer.to_string(), r)),
                None => row.cells.push((peer.to_string(), Cell::Na)),
            }
        }
        say(format!("micro {} ({} ops × {} rounds, {} peers)", b.name, ops, cfg.rounds, runners.len()));
        let values =
            interleave(&mut runners, ops, ops, cfg.rounds, |d, ops| d.as_nanos() as f64 / ops as f64);
        for ((peer, _), v) in runners.iter().zip(values) {
            row.cells.push((peer.clone(), Cell::Values(v)));
        }
        row.cells.sort_by_key(|(p, _)| MICRO_PEERS.iter().position(|q| q == p));
        row.notes.push(b.what.to_string());
        s.rows.push(row);
    }
}

fn section_echo(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
    // (size, round trips full, quick, rounds × cfg.rounds). The 1 KiB row
    // carries a target against two peers that sit within a few percent of
    // evloop: four times the rounds of a quarter the length give the median
    // of paired ratios more samples in the same time.
    let sizes: [(usize, u64, u64, usize); 3] =
        [(1024, 5_000, 1_000, 4), (10 * 1024, 10_000, 2_000, 1), (100 * 1024, 2_000, 400, 1)];
    for (size, full, quick, more) in sizes {
        let n = if cfg.quick { quick } else { full };
        let rounds = cfg.rounds * more;
        let mut runners: Vec<(String, Runner)> = Vec::new();
        for peer in io::ECHO_PEERS {
            let r = match *peer {
                "asyncio" | "uvloop" => workers
                    .iter()
                    .find(|(k, _)| k == peer)
                    .map(|(_, w)| python::runner(w, move |n| format!("echo {size} {n}"))),
                _ => io::echo_runner(peer, size),
            };
            if let Some(r) = r {
                runners.push((peer.to_string(), r));
            }
        }
        say(format!("echo {} KiB ({n} round trips × {rounds} rounds)", size / 1024));
        let values = interleave(&mut runners, n, 0, rounds, |d, n| d.as_nanos() as f64 / 1e3 / n as f64);
        let mut row = Row::new("echo", format!("echo {} KiB", size / 1024), "µs/round trip", true);
        for ((peer, _), v) in runners.iter().zip(values) {
            row.cells.push((peer.clone(), Cell::Values(v)));
        }
        s.rows.push(row);
    }
}

fn section_bulk(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
    let total: u64 = if cfg.quick { 64 << 20 } else { 256 << 20 };
    let mut runners: Vec<(String, Runner)> = Vec::new();
    for peer in io::BULK_PEERS {
        let r = match *peer {
            "asyncio" | "uvloop" => workers
                .iter()
                .find(|(k, _)| k == peer)
                .map(|(_, w)| python::runner(w, |total| format!("bulk {total}"))),
            _ => io::bulk_runner(peer),
        };
        if let Some(r) = r {
            runners.push((peer.to_string(), r));
        }
    }
    say(format!("bulk {} MiB × {} rounds", total >> 20, cfg.rounds));
    let values = interleave(&mut runners, total, 0, cfg.rounds, |d, total| {
        total as f64 / (1 << 20) as f64 / d.as_secs_f64()
    });
    let mut row = Row::new("bulk", format!("bulk {} MiB", total >> 20), "MiB/s", false);
    for ((peer, _), v) in runners.iter().zip(values) {
        row.cells.push((peer.clone(), Cell::Values(v)));
    }
    s.rows.push(row);
}

/// Starts the cross-process echo servers, pinned to CPU 0.
fn echo_servers(cfg: &Config, pin: bool) -> Vec<Result<Server, String>> {
    let exe = self_exe();
    let mut out = Vec::new();
    for (name, kind) in [("evloop", "echo-evloop"), ("tokio", "echo-tokio")] {
        let mut cmd = if pin { pinned(0, &exe) } else { Command::new(&exe) };
        cmd.args(["serve", kind, "0"]);
        out.push(Server::start(name, cmd));
    }
    for lp in ["asyncio", "uvloop"] {
        let mut cmd = if pin { pinned(0, &cfg.python) } else { Command::new(&cfg.python) };
        cmd.arg(cfg.py_script("servers.py")).args(["echo", "--loop", lp]);
        out.push(Server::start(lp, cmd));
    }
    out
}

fn check_echo_server(srv: &Server) -> Result<(), String> {
    let msg = crate::common::pattern(1024);
    let got = io::blocking_roundtrip(&srv.addr(), &msg, &msg[1000..]).map_err(|e| e.to_string())?;
    if got == msg { Ok(()) } else { Err(format!("{}: wrong echo", srv.name)) }
}

fn section_cross(cfg: &Config, s: &mut Suite) {
    let (secs, warm) = if cfg.quick { (0.4, 0.1) } else { (2.0, 0.2) };
    let reps = 3;
    let servers = echo_servers(cfg, true);
    let exe = self_exe();
    let mut rows = Vec::new();
    for conns in [1usize, 10] {
        let mut row = Row::new("cross", format!("echo 1 KiB, {conns} conn"), "round trips/s", false);
        for srv in &servers {
            match srv {
                Ok(srv) => match check_echo_server(srv) {
                    Ok(()) => row.cells.push((srv.name.clone(), Cell::Values(Vec::new()))),
                    Err(e) => row.cells.push((srv.name.clone(), Cell::Failed(e))),
                },
                Err(e) => {
                    row.cells.push((e.split(':').next().unwrap_or("?").to_string(), Cell::Failed(e.clone())))
                }
            }
        }
        rows.push(row);
    }
    say(format!("cross-process echo: {reps} × {secs} s per server and concurrency"));
    for rep in 0..reps {
        for (ci, conns) in [1usize, 10].into_iter().enumerate() {
            let live: Vec<&Server> = servers.iter().filter_map(|s| s.as_ref().ok()).collect();
            for k in 0..live.len() {
                let srv = live[(rep + k) % live.len()];
                let mut cmd = pinned(1, &exe);
                cmd.args([
                    "loadgen",
                    &srv.port.to_string(),
                    &conns.to_string(),
                    "1024",
                    &secs.to_string(),
                    &warm.to_string(),
                ]);
                let out = cmd.output().expect("run the load generator");
                let text = String::from_utf8_lossy(&out.stdout);
                let cell = rows[ci].cells.iter_mut().find(|(p, _)| *p == srv.name).map(|(_, c)| c).unwrap();
                let parsed = text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .as_slice()
                    .get(0..3)
                    .filter(|w| w[0] == "ok")
                    .and_then(|w| Some((w[1].parse::<f64>().ok()?, w[2].parse::<f64>().ok()?)));
                match (parsed, cell) {
                    (Some((n, ns)), Cell::Values(v)) => v.push(n / (ns / 1e9)),
                    (None, c) => {
                        *c = Cell::Failed(format!(
                            "load generator: {}",
                            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no output")
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    for r in &mut rows {
        r.notes.push(format!(
            "servers pinned to CPU 0, the epoll load generator to CPU 1; median of {reps} × {secs} s, each after {warm} s of warm-up"
        ));
    }
    s.rows.extend(rows);
}

fn http_check(addr: &str) -> Result<(), String> {
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let got = io::blocking_roundtrip(addr, req, net::HTTP_BODY.as_bytes()).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&got);
    if text.starts_with("HTTP/1.1 200") && text.ends_with(net::HTTP_BODY) {
        Ok(())
    } else {
        Err(format!("unexpected response {text:?}"))
    }
}

fn section_http(cfg: &Config, s: &mut Suite) {
    let mut row = Row::new("http", "HTTP hello, wrk -c100", "requests/s", false);
    // The server's own CPU time per request, from /proc: user time is what
    // the loop and the HTTP code cost, system time what the kernel's TCP
    // path costs. Steadier than requests/s when both are CPU-bound.
    let mut user = Row::new("http", "HTTP hello: server user CPU per request", "µs/request", true);
    let mut system = Row::new("http", "HTTP hello: server system CPU per request", "µs/request", true);
    if !have("wrk") {
        s.notes.push("HTTP: `wrk` is not installed; the HTTP section was skipped.".into());
        for p in ["evloop http_hello", "uvloop+httptools", "tokio+hyper", "asyncio+httptools"] {
            row.cells.push((p.into(), Cell::Failed("wrk missing".into())));
        }
        s.rows.push(row);
        return;
    }
    let secs = if cfg.quick { 1 } else { 3 };
    let rounds = if cfg.quick { 3 } else { 5 };
    let mut servers: Vec<Server> = Vec::new();
    let mut start = |name: &str, cmd: Command| -> Cell {
        match Server::start(name, cmd).and_then(|srv| {
            http_check(&srv.addr()).map_err(|e| format!("{name}: {e}"))?;
            Ok(srv)
        }) {
            Ok(srv) => {
                servers.push(srv);
                Cell::Values(Vec::new())
            }
            Err(e) => Cell::Failed(e),
        }
    };
    if cfg.http_hello.exists() {
        let mut c = pinned(0, &cfg.http_hello);
        c.args(["--serve", "0"]);
        row.cells.push(("evloop http_hello".into(), start("evloop http_hello", c)));
    } else {
        let msg = format!("{} not built", cfg.http_hello.display());
        row.cells.push(("evloop http_hello".into(), Cell::Failed(msg)));
    }
    for lp in ["uvloop", "asyncio"] {
        let mut c = pinned(0, &cfg.python);
        c.arg(cfg.py_script("servers.py")).args(["http", "--loop", lp]);
        let name = format!("{lp}+httptools");
        row.cells.push((name.clone(), start(&name, c)));
    }
    let mut c = pinned(0, &self_exe());
    c.args(["serve", "http-hyper", "0"]);
    row.cells.push(("tokio+hyper".into(), start("tokio+hyper", c)));
    for (name, _) in &row.cells {
        user.cells.push((name.clone(), Cell::Values(Vec::new())));
        system.cells.push((name.clone(), Cell::Values(Vec::new())));
    }
    say(format!("HTTP: wrk -t1 -c100, {rounds} rounds × {secs} s per server"));
    let mut errors: Vec<String> = Vec::new();
    for round in 0..rounds {
        for k in 0..servers.len() {
            let srv = &servers[(round + k) % servers.len()];
            let mut cmd = pinned(1, Path::new("wrk"));
            if !have("taskset") {
                cmd = Command::new("wrk");
            }
            cmd.args(["-t1", "-c100", &format!("-d{secs}s"), &format!("http://{}/", srv.addr())]);
            let cpu_before = cpu_ticks(srv.child.id());
            let out = cmd.output().expect("run wrk");
            let cpu_after = cpu_ticks(srv.child.id());
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let requests = text
                .lines()
                .find(|l| l.contains(" requests in "))
                .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
            if let (Some((u0, s0)), Some((u1, s1)), Some(n)) = (cpu_before, cpu_after, requests)
                && n > 0.0
            {
                let us_per_tick = 1e6 / clock_ticks_per_second();
                for (r, ticks) in [(&mut user, u1 - u0), (&mut system, s1 - s0)] {
                    if let Some((_, Cell::Values(v))) = r.cells.iter_mut().find(|(p, _)| *p == srv.name) {
                        v.push(ticks as f64 * us_per_tick / n);
                    }
                }
            }
            let rps = text
                .lines()
                .find(|l| l.starts_with("Requests/sec:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
            let non2xx = text
                .lines()
                .find(|l| l.contains("Non-2xx or 3xx responses"))
                .and_then(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(l) = text.lines().find(|l| l.contains("Socket errors")) {
                errors.push(format!("{} round {round}: {}", srv.name, l.trim()));
            }
            let cell = row.cells.iter_mut().find(|(p, _)| *p == srv.name).map(|(_, c)| c).unwrap();
            match (rps, non2xx) {
                (Some(r), 0) => {
                    if let Cell::Values(v) = cell {
                        v.push(r);
                    }
                }
                (_, bad) => *cell = Cell::Failed(format!("wrk: {bad} non-2xx responses or no result")),
            }
        }
    }
    row.notes.push(format!(
        "servers pinned to CPU 0, `wrk -t1 -c100 -d{secs}s` pinned to CPU 1; {rounds} rounds, interleaved; \
         every server answers `GET /` with 200 and `{}` (checked before the run, and wrk's non-2xx count must be 0); \
         hyper's Date header is off so that all send the same headers",
        net::HTTP_BODY
    ));
    for e in errors {
        row.notes.push(format!("wrk reported {e}"));
    }
    for (r, field) in [(&mut user, "utime"), (&mut system, "stime")] {
        r.notes.push(format!(
            "the server process's {field} from /proc/PID/stat across each wrk run, divided by the requests wrk \
             completed (clock-tick resolution: {:.0} ms)",
            1e3 / clock_ticks_per_second()
        ));
        for (name, cell) in &mut r.cells {
            if row.values(name).is_none() {
                *cell = Cell::Failed("no wrk result".into());
            }
        }
    }
    s.rows.push(row);
    s.rows.push(user);
    s.rows.push(system);
}

/// (utime, stime) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file; `rest` starts at field 3.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a configuration value; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

fn section_memory(cfg: &Config, s: &mut Suite) {
    const TIMERS: u64 = 1_000_000;
    say("memory: 1M pending timers");
    let mut rss = Row::new("memory", "1M pending timers: RSS", "MiB", true);
    let mut growth = Row::new("memory", "1M pending timers: RSS growth", "MiB", true);
    let mut hwm = Row::new("memory", "1M pending timers: peak (VmHWM)", "MiB", true);
    let mut record = |peer: &str, reply: Option<String>| {
        let nums: Vec<f64> = reply
            .as_deref()
            .and_then(|r| r.strip_prefix("ok"))
            .map(|r| r.split_whitespace().filter_map(|w| w.parse().ok()).collect())
            .unwrap_or_default();
        if nums.len() == 3 {
            rss.cells.push((peer.into(), Cell::Values(vec![nums[1] / 1024.0])));
            growth.cells.push((peer.into(), Cell::Values(vec![(nums[1] - nums[0]) / 1024.0])));
            hwm.cells.push((peer.into(), Cell::Values(vec![nums[2] / 1024.0])));
        } else {
            let why = reply.unwrap_or_else(|| "no output".into());
            for r in [&mut rss, &mut growth, &mut hwm] {
                r.cells.push((peer.into(), Cell::Failed(why.clone())));
            }
        }
    };
    for peer in ["evloop", "tokio"] {
        let out = Command::new(self_exe()).args(["mem-timers", peer, &TIMERS.to_string()]).output();
        record(peer, out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()));
    }
    for lp in ["asyncio", "uvloop"] {
        // A fresh interpreter, so that nothing else has grown its heap.
        let reply = python::Worker::spawn(&cfg.python, &cfg.py_script("micro.py"), lp).ok().map(|mut w| {
            match w.call(&format!("mem_timers {TIMERS}")) {
                python::Reply::Ok(r) => format!("ok {r}"),
                python::Reply::Na => "na".into(),
            }
        });
        record(lp, reply);
    }
    for r in [&mut rss, &mut growth, &mut hwm] {
        r.notes.push(
            "each in a fresh process: `call_later(1 h + i µs)` × 1M, handles dropped, nothing fired \
             (tokio: 1M boxed `sleep`s, each polled once so it is registered); VmRSS after one loop turn"
                .into(),
        );
    }
    s.rows.push(rss);
    s.rows.push(growth);
    s.rows.push(hwm);

    const CONNS: usize = 10_000;
    let limit = raise_fd_limit(CONNS as u64 + 1024);
    let n = CONNS.min(limit.saturating_sub(256) as usize);
    if n < CONNS {
        s.notes.push(format!("memory: the fd limit ({limit}) allowed only {n} connections"));
    }
    say(format!("memory: {n} idle TCP connections"));
    let mut conn_rss =
        Row::new("memory", format!("{}k idle TCP connections: server RSS", n / 1000), "MiB", true);
    let mut conn_growth =
        Row::new("memory", format!("{}k idle TCP connections: RSS growth", n / 1000), "MiB", true);
    for srv in echo_servers(cfg, false) {
        let srv = match srv {
            Ok(srv) => srv,
            Err(e) => {
                let name = e.split(':').next().unwrap_or("?").to_string();
                conn_rss.cells.push((name.clone(), Cell::Failed(e.clone())));
                conn_growth.cells.push((name, Cell::Failed(e)));
                continue;
            }
        };
        std::thread::sleep(Duration::from_millis(100));
        say(format!("memory: {n} connections to the {} echo server", srv.name));
        let (before, _) = srv.rss_kib().unwrap_or((0, 0));
        match net::open_idle_connections(srv.port, n) {
            Ok(conns) => {
                std::thread::sleep(Duration::from_millis(300));
                let (after, _) = srv.rss_kib().unwrap_or((0, 0));
                conn_rss.cells.push((srv.name.clone(), Cell::Values(vec![after as f64 / 1024.0])));
                conn_growth
                    .cells
                    .push((srv.name.clone(), Cell::Values(vec![(after as f64 - before as f64) / 1024.0])));
                // The server goes first, so that the TIME_WAIT states end up on
                // its side and do not use up the client's ephemeral ports.
                drop(srv);
                drop(conns);
            }
            Err(e) => {
                conn_rss.cells.push((srv.name.clone(), Cell::Failed(e.to_string())));
                conn_growth.cells.push((srv.name.clone(), Cell::Failed(e.to_string())));
            }
        }
    }
    for r in [&mut conn_rss, &mut conn_growth] {
        r.notes.push(format!(
            "the echo servers of the cross-process test, each a fresh process; {n} connections opened, \
             each checked with a 1-byte echo, then left idle; the server's VmRSS 0.3 s later \
             (tokio's server gives each connection its own 4 KiB read buffer, as tokio's echo example does; evloop's transports share one receive buffer per loop)"
        ));
    }
    s.rows.push(conn_rss);
    s.rows.push(conn_growth);
}

// ------------------------------------------------------------ deterministic

fn target_dir() -> PathBuf {
    // …/<target>/release/peers
    self_exe().parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

fn section_counts(cfg: &Config, s: &mut Suite) {
    let mut md = String::new();
    let exe = self_exe();
    let (ops, base) = if cfg.quick { (10_000, 1_000) } else { (100_000, 1_000) };
    if have("valgrind") {
        say("callgrind: instructions per operation");
        md.push_str("### Instructions per operation (callgrind)\n\n");
        let _ = writeln!(
            md,
            "`bench/callgrind.sh --ops {ops} --base {base}`: user-space instructions of the measured round \
             only, `(Ir(N) − Ir(M)) / (N − M)`; stable across noisy runs, the number to watch for regressions.\n"
        );
        md.push_str(
            "| path | benchmark (bench/src/workloads.rs) | instructions/op |\n| --- | --- | ---: |\n",
        );
        let benches = [
            ("call_soon", "call_soon_batch"),
            ("call_soon, one loop turn each", "call_soon_chain"),
            ("timer schedule + cancel", "timer_schedule_cancel"),
            ("timer fire", "timer_fire"),
            ("task spawn + complete", "task_spawn"),
            ("future round trip", "future_roundtrip"),
            ("task yield", "yield_now"),
        ];
        for (path, bench) in benches {
            let out = Command::new(cfg.root.join("bench/callgrind.sh"))
                .args(["--ops", &ops.to_string(), "--base", &base.to_string(), bench])
                .env("CARGO_TARGET_DIR", target_dir())
                .output();
            let value = out
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| {
                    let text = String::from_utf8_lossy(&o.stdout).into_owned();
                    let line = text.lines().find(|l| l.starts_with(bench))?.to_string();
                    line.split_whitespace().last().map(str::to_string)
                })
                .unwrap_or_else(|| "failed (see callgrind.sh)".into());
            let _ = writeln!(md, "| {path} | `{bench}` | {value} |");
        }
        // Echo: this binary's echo-count, toggled on `measured_echo`.
        let (n, m) = if cfg.quick { (1_000u64, 100u64) } else { (4_000, 400) };
        md.push_str(&format!(
            "\nEcho round trip, 1 KiB, client and server on one loop (`peers echo-count IMPL 1024 N`, \
             N = {n} minus N = {m}; user space only — the kernel's share is in the syscall counts below):\n\n"
        ));
        md.push_str("| implementation | instructions/round trip | × raw epoll |\n| --- | ---: | ---: |\n");
        let dir = std::env::temp_dir().join("evloop-peers-callgrind");
        let _ = std::fs::create_dir_all(&dir);
        let mut floor = None;
        for imp in ["raw-epoll", "evloop", "evloop-streams", "tokio", "smol"] {
            let ir = |k: u64| -> Option<f64> {
                let file = dir.join(format!("callgrind.out.{imp}.{k}"));
                let st = Command::new("valgrind")
                    .args(["--tool=callgrind", "--dump-instr=no", "--collect-atstart=no"])
                    .arg("--toggle-collect=*measured_echo*")
                    .arg(format!("--callgrind-out-file={}", file.display()))
                    .arg(&exe)
                    .args(["echo-count", imp, "1024", &k.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()?;
                if !st.success() {
                    return None;
                }
                let text = std::fs::read_to_string(&file).ok()?;
                let _ = std::fs::remove_file(&file);
                text.lines().find_map(|l| l.strip_prefix("summary:")?.trim().parse::<f64>().ok())
            };
            match (ir(n), ir(m)) {
                (Some(a), Some(b)) => {
                    let per = (a - b) / (n - m) as f64;
                    if imp == "raw-epoll" {
                        floor = Some(per);
                    }
                    let ratio = floor.map(|f| format!("{:.2}", per / f)).unwrap_or_default();
                    let _ = writeln!(md, "| {imp} | {per:.0} | {ratio} |");
                }
                _ => {
                    let _ = writeln!(md, "| {imp} | failed | |");
                }
            }
        }
        md.push('\n');
    } else {
        s.notes.push("valgrind is not installed: no instruction counts.".into());
    }
    if have("strace") {
        say("strace: syscalls per loop iteration and per echo round trip");
        md.push_str("### Syscalls (strace -c)\n\n`bench/strace.sh`:\n\n```text\n");
        let out =
            Command::new(cfg.root.join("bench/strace.sh")).env("CARGO_TARGET_DIR", target_dir()).output();
        match out {
            Ok(o) if o.status.success() => md.push_str(String::from_utf8_lossy(&o.stdout).trim_end()),
            Ok(o) => md.push_str(&format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => md.push_str(&format!("failed: {e}")),
        }
        md.push_str("\n```\n\n");
        let (n, m) = (2_000u64, 200u64);
        let _ = writeln!(
            md,
            "Echo round trip, 1 KiB, client and server on one loop: syscalls per round trip \
             (`strace -f -c peers echo-count IMPL 1024 N`, N = {n} minus N = {m}):\n"
        );
        md.push_str("| implementation | syscalls/round trip | breakdown |\n| --- | ---: | --- |\n");
        for imp in ["raw-epoll", "evloop", "evloop-streams", "tokio", "smol"] {
            let counts = |k: u64| -> Option<Vec<(String, f64)>> {
                let file = std::env::temp_dir().join(format!("evloop-peers-strace.{imp}.{k}"));
                let st = Command::new("strace")
                    .args(["-f", "-c", "-o"])
                    .arg(&file)
                    .arg(&exe)
                    .args(["echo-count", imp, "1024", &k.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .ok()?;
                if !st.success() {
                    return None;
                }
                let text = std::fs::read_to_string(&file).ok()?;
                let _ = std::fs::remove_file(&file);
                Some(
                    text.lines()
                        .filter_map(|l| {
                            let w: Vec<&str> = l.split_whitespace().collect();
                            if w.len() < 5 || w[0].parse::<f64>().is_err() || *w.last()? == "total" {
                                return None;
                            }
                            Some((w.last()?.to_string(), w[3].parse().ok()?))
                        })
                        .collect(),
                )
            };
            match (counts(n), counts(m)) {
                (Some(a), Some(b)) => {
                    let mut per: Vec<(String, f64)> = a
                        .iter()
                        .map(|(name, c)| {
                            let base = b.iter().find(|(q, _)| q == name).map(|(_, c)| *c).unwrap_or(0.0);
                            (name.clone(), (c - base) / (n - m) as f64)
                        })
                        .filter(|(_, d)| d.abs() > 0.005)
                        .collect();
                    per.sort_by(|x, y| y.1.total_cmp(&x.1));
                    let total: f64 = per.iter().map(|(_, d)| d).sum();
                    let breakdown: Vec<String> = per.iter().map(|(nm, d)| format!("{nm} {d:.2}")).collect();
                    let _ = writeln!(md, "| {imp} | {total:.2} | {} |", breakdown.join(", "));
                }
                _ => {
                    let _ = writeln!(md, "| {imp} | failed | |");
                }
            }
        }
        md.push('\n');
    } else {
        s.notes.push("strace is not installed: no syscall counts.".into());
    }
    s.extra.push(("counts", md));
}

// ------------------------------------------------------------------ targets

fn find<'a>(s: &'a Suite, bench: &str) -> Option<&'a Row> {
    s.rows.iter().find(|r| r.bench == bench)
}

fn evaluate_targets(s: &mut Suite) {
    let mut t = Vec::new();
    let m = |bench: &str, peer: &str| find(s, bench).and_then(|r| r.median(peer));
    // 1. call_soon batch ≥ 20× uvloop.
    let rel =
        |bench: &str, peer: &str, base: &str| find(s, bench).and_then(|r| relative_speed(r, peer, base));
    t.push(
        match (
            m("call_soon_batch", "evloop"),
            m("call_soon_batch", "uvloop"),
            rel("call_soon_batch", "evloop", "uvloop"),
        ) {
            (Some(e), Some(u), Some(r)) => Target {
                what: "`call_soon` batch ≥ 20× uvloop",
                measured: format!(
                    "evloop {e:.1} ns, uvloop {u:.1} ns per callback: evloop {}× as fast",
                    fmt_ratio(r)
                ),
                pass: Some(r >= 20.0),
            },
            _ => {
                Target {
                    what: "`call_soon` batch ≥ 20× uvloop", measured: "not measured".into(), pass: None
                }
            }
        },
    );
    // 2. chain turn faster than tokio's yield_now turn.
    t.push(match (m("call_soon_chain", "evloop"), m("yield_now", "tokio")) {
        (Some(e), Some(k)) => Target {
            what: "chain turn faster than tokio's `yield_now` turn",
            measured: format!(
                "evloop chain {e:.1} ns/turn, tokio yield_now {k:.1} ns/turn ({}×)",
                fmt_ratio(k / e)
            ),
            pass: Some(e < k),
        },
        _ => Target {
            what: "chain turn faster than tokio's `yield_now` turn",
            measured: "not measured".into(),
            pass: None,
        },
    });
    // 3. task spawn+complete ≤ 0.5× tokio's.
    t.push(
        match (m("task_spawn", "evloop"), m("task_spawn", "tokio"), rel("task_spawn", "tokio", "evloop")) {
            (Some(e), Some(k), Some(r)) => Target {
                what: "task spawn + complete ≤ 0.5× tokio's",
                measured: format!(
                    "evloop {e:.0} ns, tokio {k:.0} ns per task: evloop takes {}× tokio's time",
                    fmt_ratio(r)
                ),
                pass: Some(r <= 0.5),
            },
            _ => Target {
                what: "task spawn + complete ≤ 0.5× tokio's",
                measured: "not measured".into(),
                pass: None,
            },
        },
    );
    // 4. in-process 1 KiB echo ≤ 1.2× raw epoll and faster than tokio.
    t.push(match (
        m("echo 1 KiB", "evloop"),
        m("echo 1 KiB", "raw-epoll"),
        m("echo 1 KiB", "tokio"),
        rel("echo 1 KiB", "raw-epoll", "evloop"),
        rel("echo 1 KiB", "tokio", "evloop"),
    ) {
        (Some(e), Some(r), Some(k), Some(vs_floor), Some(vs_tokio)) => Target {
            what: "in-process 1 KiB echo ≤ 1.2× raw epoll and faster than tokio",
            measured: format!(
                "evloop {e:.2} µs, raw epoll {r:.2} µs, tokio {k:.2} µs per round trip: evloop takes {}× the floor's time and {}× tokio's",
                fmt_ratio(vs_floor),
                fmt_ratio(vs_tokio)
            ),
            pass: Some(vs_floor <= 1.2 && vs_tokio < 1.0),
        },
        _ => Target {
            what: "in-process 1 KiB echo ≤ 1.2× raw epoll and faster than tokio",
            measured: "not measured".into(),
            pass: None,
        },
    });
    // 5. HTTP hello ≥ 1.0× tokio+hyper.
    let http = s.rows.iter().find(|r| r.section == "http");
    let http_rel = http.and_then(|r| relative_speed(r, "evloop http_hello", "tokio+hyper"));
    t.push(
        match http.and_then(|r| Some((r.median("evloop http_hello")?, r.median("tokio+hyper")?, http_rel?))) {
            Some((e, h, r)) => Target {
                what: "HTTP hello ≥ 1.0× tokio+hyper requests/s",
                measured: format!("evloop {e:.0} req/s, tokio+hyper {h:.0} req/s: {}×", fmt_ratio(r)),
                pass: Some(r >= 1.0),
            },
            None => Target {
                what: "HTTP hello ≥ 1.0× tokio+hyper requests/s",
                measured: "not measured".into(),
                pass: None,
            },
        },
    );
    // 6. 1M pending timers ≤ 128 MiB RSS.
    t.push(match m("1M pending timers: RSS", "evloop") {
        Some(v) => Target {
            what: "1M pending timers ≤ 128 MiB RSS",
            measured: format!(
                "{v:.1} MiB (peak {:.1} MiB)",
                m("1M pending timers: peak (VmHWM)", "evloop").unwrap_or(f64::NAN)
            ),
            pass: Some(v <= 128.0),
        },
        None => {
            Target { what: "1M pending timers ≤ 128 MiB RSS", measured: "not measured".into(), pass: None }
        }
    });
    // 7. 10k idle TCP connections ≤ 64 MiB RSS.
    let conns = s.rows.iter().find(|r| r.bench.ends_with("idle TCP connections: server RSS"));
    t.push(match conns.and_then(|r| Some((r.bench.clone(), r.median("evloop")?))) {
        Some((bench, v)) => Target {
            what: "10k idle TCP connections ≤ 64 MiB RSS",
            measured: format!("{v:.1} MiB ({bench})"),
            pass: Some(v <= 64.0 && bench.starts_with("10k")),
        },
        None => Target {
            what: "10k idle TCP connections ≤ 64 MiB RSS",
            measured: "not measured".into(),
            pass: None,
        },
    });
    s.targets = t;
}

// ------------------------------------------------------------------- report

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<f64>().unwrap_or(0.0))
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let virt = output_of("systemd-detect-virt", &[]).filter(|v| !v.is_empty() && !v.contains("not found"));
    let mut m = vec![
        ("CPU".into(), model),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
    ];
    if let Some(v) = virt {
        m.push(("virtualization".into(), v));
    }
    m
}

fn lock_version(root: &Path, krate: &str) -> String {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let needle = format!("name = \"{krate}\"\n");
    lock.find(&needle)
        .and_then(|i| lock[i + needle.len()..].lines().next())
        .and_then(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "?".into())
}

fn versions(cfg: &Config, workers: &[(String, python::Shared)]) -> Vec<(String, String)> {
    let git = output_of("git", &["-C", &cfg.root.to_string_lossy(), "rev-parse", "--short", "HEAD"])
        .unwrap_or_default();
    let dirty = output_of(
        "git",
        &["-C", &cfg.root.to_string_lossy(), "status", "--porcelain", "--untracked-files=no"],
    )
    .map(|o| !o.is_empty())
    .unwrap_or(false);
    let mut v = vec![(
        "evloop".to_string(),
        format!(
            "{} (git {git}{})",
            lock_version(&cfg.root, "evloop"),
            if dirty { ", with uncommitted changes" } else { "" }
        ),
    )];
    v.push(("rustc".into(), output_of("rustc", &["--version"]).unwrap_or_default()));
    for k in ["tokio", "async-executor", "async-io", "calloop", "hyper", "hyper-util", "polling"] {
        v.push((k.into(), lock_version(&cfg.root, k)));
    }
    for (_, w) in workers {
        if let python::Reply::Ok(line) = w.borrow_mut().call("versions") {
            for part in line.split_whitespace() {
                if let Some((k, val)) = part.split_once('=') {
                    let k = if k == "python" { "Python (asyncio)".to_string() } else { k.to_string() };
                    if !v.iter().any(|(q, _)| *q == k) {
                        v.push((k, val.to_string()));
                    }
                }
            }
        }
    }
    // One Python line is enough.
    let mut seen_python = false;
    v.retain(|(k, _)| {
        if k.starts_with("Python") {
            let keep = !seen_python;
            seen_python = true;
            keep
        } else {
            true
        }
    });
    for (tool, args) in [("wrk", vec!["-v"]), ("valgrind", vec!["--version"]), ("strace", vec!["-V"])] {
        if let Some(out) = output_of(tool, &args) {
            v.push((tool.into(), out.lines().next().unwrap_or("").to_string()));
        }
    }
    v
}

fn write_report(cfg: &Config, s: &Suite, started: &str, elapsed: Duration, load: (String, String)) {
    let mut md = String::new();
    md.push_str("# Benchmarks: evloop side by side\n\n");
    let _ = writeln!(
        md,
        "Generated by `{}` ({} mode) on {started}, in {:.0} s. Every number below comes from that one run; \
         peers run interleaved round by round (A B C, B C A, …), medians quoted, min–max in small print. \
         The machine is shared and noisy: compare **ratios within this run**, not absolute times across runs. \
         Load average at the start {} and at the end {}.\n",
        cfg.command_line,
        if cfg.quick { "--quick" } else { "full" },
        elapsed.as_secs_f64(),
        load.0,
        load.1
    );
    md.push_str("![evloop side by side](bench/results/chart.svg)\n\n");
    md.push_str("## Machine and versions\n\n| | |\n| --- | --- |\n");
    for (k, v) in machine().iter().chain(s.versions.iter()) {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md.push_str("\n## Targets\n\n| target | measured (this run) | result |\n| --- | --- | --- |\n");
    for t in &s.targets {
        let res = match t.pass {
            Some(true) => "**PASS**",
            Some(false) => "**FAIL**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {res} |", t.what, t.measured);
    }
    md.push_str(
        "\nEach cell: **median**, then min–max over the rounds, then the peer's speed relative to the \
         column named (above 1: faster than it; for times that column's time ÷ the peer's time, for \
         rates the peer's rate ÷ that column's rate). Ratios are the median over the rounds of each \
         round's ratio: the peers of a round run back to back, so a round's ratio cancels most of the \
         load the machine's other tenants add, which medians taken apart do not. Targets comparing two \
         peers on one workload use the same paired ratio; the chain-vs-`yield_now` target compares two \
         workloads, so it uses their medians.\n",
    );
    let sections: [(&str, &str, &[&str], &str, &str); 6] = [
        (
            "micro",
            "Loop micro benchmarks",
            &["evloop", "asyncio", "uvloop", "tokio", "smol", "calloop"],
            "evloop",
            "Same shape in every peer that has the operation (n/a otherwise). Rust peers run in this process \
             (one loop/runtime per benchmark, reused across its rounds, one untimed warm-up run each); \
             asyncio and uvloop run in two long-lived `bench/python/micro.py --worker` processes with the GC \
             off in the timed regions. tokio is the current-thread runtime with a `LocalSet`; smol is \
             `async-executor::LocalExecutor` + `async-io`; calloop uses idle callbacks, `Timer` sources and \
             its futures executor.",
        ),
        (
            "echo",
            "In-process echo ping-pong (loopback TCP, one loop)",
            &["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"],
            "evloop",
            "Client and server on the same loop/thread: the client sends the message, the server echoes \
             it, the client waits for all of it and sends again. Every chunk is checked to continue the \
             message, the last round trip byte for byte. `evloop` is the `Protocol` API, `evloop-streams` \
             `start_server`/`open_connection` with `readexactly`; `raw-epoll` is the floor, a level-triggered \
             epoll loop on `libc` (one `recv` per readiness event, direct `send`). TCP_NODELAY everywhere. \
             50 untimed round trips first, on a fresh connection per round.",
        ),
        (
            "bulk",
            "Bulk transfer with flow control (loopback TCP, one loop)",
            &["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"],
            "evloop",
            "The client writes 64 KiB chunks while the transport's write buffer is at most its high-water \
             mark (64 KiB; resumes on `resume_writing`; streams: `write` + `drain`; tokio/smol: `write_all`); \
             the server counts the bytes and answers the total, which the client checks.",
        ),
        (
            "cross",
            "Cross-process echo (1 KiB messages)",
            &["evloop", "tokio", "asyncio", "uvloop"],
            "evloop",
            "Echo servers in their own processes (evloop `Protocol`, tokio current-thread, asyncio and uvloop \
             `Protocol`), driven by this suite's epoll load generator (`peers loadgen`): each connection sends \
             1 KiB and waits for the full echo (checked byte for byte) before sending again.",
        ),
        (
            "http",
            "HTTP/1.1 hello world (wrk)",
            &["evloop http_hello", "tokio+hyper", "uvloop+httptools", "asyncio+httptools"],
            "evloop http_hello",
            "`examples/http_hello.rs --serve` (evloop `Protocol` + httparse), hyper 1 on tokio's \
             current-thread runtime (`peers serve http-hyper`), and an asyncio `Protocol` with httptools on \
             uvloop and on asyncio's own loop (`bench/python/servers.py http`). Keep-alive, one response \
             per request.",
        ),
        (
            "memory",
            "Memory",
            &["evloop", "tokio", "asyncio", "uvloop"],
            "evloop",
            "Resident memory of a process (VmRSS / VmHWM from /proc), one measurement each.",
        ),
    ];
    for (key, title, peers, base, intro) in sections {
        let rows: Vec<&Row> = s.rows.iter().filter(|r| r.section == key).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n## {title}\n\n{intro}\n");
        report::table(&rows, peers, base, &mut md);
        let mut notes: Vec<String> = Vec::new();
        for r in &rows {
            for n in &r.notes {
                let n = if key == "micro" { format!("`{}`: {n}", r.bench) } else { n.clone() };
                if !notes.contains(&n) {
                    notes.push(n);
                }
            }
        }
        if !notes.is_empty() {
            md.push('\n');
            for n in notes {
                let _ = writeln!(md, "- {n}");
            }
        }
    }
    for (key, text) in &s.extra {
        if *key == "counts" {
            md.push_str("\n## Deterministic counts\n\n");
            md.push_str(text);
        }
    }
    if !s.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for n in &s.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md.push_str(
        "\n## Reproducing\n\n```sh\nbench/run.sh            # full run (under 10 minutes)\nbench/run.sh --quick    # under 2 minutes\n```\n\n\
         Raw per-round values: `bench/results/raw.tsv`. The suite's code: `bench/src/bin/peers.rs` and \
         `bench/src/peers/`, `bench/python/`, `bench/run.sh`.\n",
    );
    std::fs::write(&cfg.out_md, md).expect("write BENCHMARKS.md");

    // Raw values.
    let mut tsv = String::from("section\tbenchmark\tunit\tpeer\tround\tvalue\n");
    for r in &s.rows {
        for (p, c) in &r.cells {
            if let Cell::Values(v) = c {
                for (i, x) in v.iter().enumerate() {
                    let _ = writeln!(tsv, "{}\t{}\t{}\t{p}\t{i}\t{x}", r.section, r.bench, r.unit);
                }
            }
        }
    }
    std::fs::write(cfg.results.join("raw.tsv"), tsv).expect("write raw.tsv");

    draw_chart(&s.rows, &cfg.results.join("chart.svg"));
}

/// The chart of BENCHMARKS.md: one panel per group of sections.
pub fn draw_chart(rows: &[Row], path: &Path) {
    let pick = |key: &str| -> Vec<&Row> { rows.iter().filter(|r| r.section == key).collect() };
    let mut panels = Vec::new();
    let micro_rows = pick("micro");
    if !micro_rows.is_empty() {
        panels.push(Panel {
            title: "Loop micro benchmarks: speed relative to evloop".into(),
            rows: micro_rows,
            peers: vec!["evloop", "asyncio", "uvloop", "tokio", "smol", "calloop"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    let io_rows: Vec<&Row> = rows.iter().filter(|r| r.section == "echo" || r.section == "bulk").collect();
    if !io_rows.is_empty() {
        panels.push(Panel {
            title: "In-process I/O on one loop: speed relative to evloop".into(),
            rows: io_rows,
            peers: vec!["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    let cross = pick("cross");
    if !cross.is_empty() {
        panels.push(Panel {
            title: "Cross-process echo: round trips/s relative to evloop".into(),
            rows: cross,
            peers: vec!["evloop", "tokio", "asyncio", "uvloop"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    let http: Vec<&Row> = rows.iter().filter(|r| r.section == "http" && r.unit == "requests/s").collect();
    if !http.is_empty() {
        panels.push(Panel {
            title: "HTTP hello world (wrk): requests/s relative to evloop".into(),
            rows: http,
            peers: vec!["evloop http_hello", "tokio+hyper", "uvloop+httptools", "asyncio+httptools"],
            base: "evloop http_hello",
            axis: "requests/s relative to evloop's http_hello (log scale; right of 1 = more than evloop)"
                .into(),
        });
    }
    let memory: Vec<&Row> =
        rows.iter().filter(|r| r.section == "memory" && r.bench.ends_with("RSS")).collect();
    if !memory.is_empty() {
        panels.push(Panel {
            title: "Memory: resident set relative to evloop".into(),
            rows: memory,
            peers: vec!["evloop", "tokio", "asyncio", "uvloop"],
            base: "evloop",
            axis: "evloop's RSS ÷ the peer's (log scale; right of 1 = smaller than evloop)".into(),
        });
    }
    if !panels.is_empty()
        && let Err(e) = report::chart(path, &panels)
    {
        eprintln!("chart: {e}");
    }
}

/// Reads bench/results/raw.tsv back (for `peers chart`: redraw without a run).
pub fn rows_from_tsv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("read the raw.tsv");
    let mut rows: Vec<Row> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            continue;
        }
        let section =
            SECTIONS.iter().chain(["memory"].iter()).find(|s| **s == f[0]).copied().unwrap_or("micro");
        let value: f64 = f[5].parse().unwrap_or(f64::NAN);
        let i = match rows.iter().position(|r| r.section == section && r.bench == f[1]) {
            Some(i) => i,
            None => {
                rows.push(Row::new(section, f[1], f[2], !f[2].ends_with("/s")));
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        match row.cells.iter_mut().find(|(p, _)| p == f[3]) {
            Some((_, Cell::Values(v))) => v.push(value),
            _ => row.cells.push((f[3].to_string(), Cell::Values(vec![value]))),
        }
    }
    rows
}

pub fn run_all(cfg: Config) {
    let started_at = output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let t0 = Instant::now();
    let load_start = load_average();
    std::fs::create_dir_all(&cfg.results).expect("create the results directory");
    let mut s = Suite::default();
    let mut workers: Vec<(String, python::Shared)> = Vec::new();
    for kind in ["asyncio", "uvloop"] {
        match python::Worker::spawn(&cfg.python, &cfg.py_script("micro.py"), kind) {
            Ok(w) => workers.push((kind.to_string(), Rc::new(RefCell::new(w)))),
            Err(e) => s.notes.push(format!("the {kind} worker did not start ({e}): no {kind} numbers")),
        }
    }
    say(format!(
        "peers all ({} mode, {} rounds); load average {load_start}",
        if cfg.quick { "quick" } else { "full" },
        cfg.rounds
    ));
    if cfg.wants("micro") {
        section_micro(&cfg, &mut s, &workers);
    }
    if cfg.wants("echo") {
        section_echo(&cfg, &mut s, &workers);
    }
    if cfg.wants("bulk") {
        section_bulk(&cfg, &mut s, &workers);
    }
    if cfg.wants("cross") {
        section_cross(&cfg, &mut s);
    }
    if cfg.wants("http") {
        section_http(&cfg, &mut s);
    }
    if cfg.wants("memory") {
        section_memory(&cfg, &mut s);
    }
    if cfg.wants("counts") {
        section_counts(&cfg, &mut s);
    }
    s.versions = versions(&cfg, &workers);
    drop(workers);
    evaluate_targets(&mut s);
    let load_end = load_average();
    write_report(&cfg, &s, &started_at, t0.elapsed(), (load_start, load_end));
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

//! The report writer: BENCHMARKS.md (tables, targets, machine and versions)
//! and bench/results/raw.tsv; the chart in `chart.rs`, the targets in
//! `targets.rs`. Sections produce rows; nothing here measures.

pub mod chart;
pub mod targets;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::common::{Cell, Row, fmt_num, median, min_max};
use crate::process::output_of;
use crate::python;
use crate::suite::{Config, Suite};

/// The peer's speed relative to `base` (above 1: faster than `base`): the
/// median over the rounds of the per-round ratio when both have one value
/// per round (the peers of a round run back to back, so the ratio of a
/// round cancels most of the machine's load changes), else the ratio of
/// the medians.
pub fn relative_speed(row: &Row, peer: &str, base: &str) -> Option<f64> {
    let (p, b) = (row.values(peer)?, row.values(base)?);
    let speed = |p: f64, b: f64| if row.lower_is_better { b / p } else { p / b };
    if p.len() == b.len() && p.len() > 1 {
        let ratios: Vec<f64> = p.iter().zip(b).map(|(p, b)| speed(*p, *b)).collect();
        Some(median(&ratios))
    } else {
        Some(speed(median(p), median(b)))
    }
}

/// A markdown table: one line per row, one column per peer; each cell the
/// median, the min–max over the rounds, and the speed relative to `base`.
pub fn table(rows: &[&Row], peers: &[&str], base: &str, out: &mut String) {
    let _ = write!(out, "| benchmark | unit |");
    for p in peers {
        let _ = write!(out, " {p} |");
    }
    out.push('\n');
    out.push_str("| --- | --- |");
    for _ in peers {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for row in rows {
        let dir = if row.lower_is_better { "lower is better" } else { "higher is better" };
        let _ = write!(out, "| `{}` | {} <sub>({dir})</sub> |", row.bench, row.unit);
        for p in peers {
            let cell = row.cells.iter().find(|(q, _)| q == p).map(|(_, c)| c);
            let text = match cell {
                None | Some(Cell::Na) => "n/a".to_string(),
                Some(Cell::Failed(why)) => format!("failed: {why}"),
                Some(Cell::Values(v)) if v.is_empty() => "n/a".to_string(),
                Some(Cell::Values(v)) => {
                    let med = median(v);
                    let mut s = format!("**{}**", fmt_num(med));
                    if v.len() > 1 {
                        let (lo, hi) = min_max(v);
                        let _ = write!(s, "<br><sub>{}–{}</sub>", fmt_num(lo), fmt_num(hi));
                    }
                    if *p != base
                        && let Some(r) = relative_speed(row, p, base)
                    {
                        let _ = write!(s, "<br><sub>{}× {base}</sub>", fmt_ratio(r));
                    }
                    s
                }
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else if r >= 0.001 {
        format!("{r:.3}")
    } else {
        format!("{r:.1e}")
    }
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

pub fn versions(cfg: &Config, workers: &[(String, python::Shared)]) -> Vec<(String, String)> {
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

/// Where `bench/python/peers.py --benchmarks` puts its section.
const PYTHON_BEGIN: &str = "<!-- python-peers:";
const PYTHON_END: &str = "<!-- /python-peers -->";

/// The Python peers' section of an old BENCHMARKS.md, markers included.
fn python_section(old: &str) -> Option<&str> {
    let start = old.find(PYTHON_BEGIN)?;
    let len = old[start..].find(PYTHON_END)? + PYTHON_END.len();
    Some(&old[start..start + len])
}

pub fn write_report(cfg: &Config, s: &Suite, started: &str, elapsed: Duration, load: (String, String)) {
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
    let sections: [(&str, &str, &[&str], &str, &str); 10] = [
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
            "tls",
            "TLS on one loop (loopback TCP, TLS 1.3, rustls + ring on both sides)",
            &["evloop", "tokio-rustls"],
            "evloop",
            "evloop's TLS layer (`ServerOptions::ssl`, `ConnectOptions::ssl`, the `Protocol` API) against \
             tokio-rustls on tokio's current-thread runtime, with the same rustls build, crypto provider and \
             certificate: the difference is the I/O around rustls. Echo: 1 KiB ping-pong as in the echo \
             section (50 untimed round trips first); bulk: 64 KiB writes under flow control (tokio-rustls: \
             `write_all`), the server answers the total. Handshakes are not timed.",
        ),
        (
            "cross",
            "Cross-process echo (1 KiB messages)",
            &["evloop", "tokio", "asyncio", "uvloop"],
            "evloop",
            "Echo servers in their own processes (evloop `Protocol`, tokio current-thread, asyncio and uvloop \
             `Protocol`), driven by this suite's epoll load generator (`evloop-bench loadgen`): each connection sends \
             1 KiB and waits for the full echo (checked byte for byte) before sending again.",
        ),
        (
            "http",
            "HTTP/1.1 hello world (wrk)",
            &["evloop http_hello", "tokio+hyper", "uvloop+httptools", "asyncio+httptools"],
            "evloop http_hello",
            "`examples/http_hello.rs --serve` (evloop `Protocol` + httparse), hyper 1 on tokio's \
             current-thread runtime (`evloop-bench serve http-hyper`), and an asyncio `Protocol` with httptools on \
             uvloop and on asyncio's own loop (`bench/python/servers.py http`). Keep-alive, one response \
             per request.",
        ),
        (
            "eco",
            "Ecosystem: hyper and axum on evloop vs on tokio (wrk)",
            &["evloop", "tokio"],
            "evloop",
            "The HTTP hello served by hyper 1 and by an axum `Router`, each on evloop through `evloop::compat` \
             (the `hyper` feature) and on tokio's current-thread runtime: `evloop-bench serve hyper-evloop | \
             http-hyper | axum-evloop | axum-tokio | axum-evloop-timeout | axum-tokio-timeout`, the same hyper \
             settings on both sides of a row. Keep-alive, one response per request; CPU rows are the \
             server's user + system time per request.",
        ),
        (
            "multi",
            "Multi-loop: HTTP hello on 2 cores (wrk)",
            crate::multi::PEERS,
            crate::multi::BASE,
            "Past one core: `examples/multi_loop_http.rs --serve` on 1 and 2 loops (one thread each; \
             `SO_REUSEPORT` listeners, or `--acceptor`: one acceptor loop handing sockets round robin) \
             against hyper 1 on tokio's multi-thread runtime with 2 workers (`evloop-bench serve \
             http-hyper-mt2`) and on the current-thread runtime. Nothing is pinned: the servers and wrk \
             share the machine's cores, so wrk's own CPU limits every row (on 2 cores, a 2-loop server \
             and wrk compete). Keep-alive, one response per request, no `Date` header on any.",
        ),
        (
            "memory",
            "Memory",
            &["evloop", "tokio", "asyncio", "uvloop"],
            "evloop",
            "Resident memory of a process (VmRSS / VmHWM from /proc), one measurement each.",
        ),
        (
            "subprocess",
            "Subprocesses",
            &["evloop", "tokio"],
            "evloop",
            "`create_subprocess_exec` against `tokio::process` on the current-thread runtime, in this process: \
             spawn + wait of `true` one after another (stdio inherited), and one 64-byte line written to a \
             running `cat` and read back (`readline` / `BufReader::read_until`), one line in flight.",
        ),
    ];
    for (key, title, peers, base, intro) in sections {
        let rows: Vec<&Row> = s.rows.iter().filter(|r| r.section == key).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n## {title}\n\n{intro}\n");
        table(&rows, peers, base, &mut md);
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
         Raw per-round values: `bench/results/raw.tsv`. The suite's code: `bench/src/` (`evloop-bench suite`; one module per \
         workload family, the report writer in `bench/src/report/`), `bench/python/`, `bench/run.sh`.\n",
    );
    // The Python package's section is bench/python/peers.py's, not this
    // suite's: carry it over from the file being replaced.
    if let Some(section) = std::fs::read_to_string(&cfg.out_md).ok().as_deref().and_then(python_section) {
        md.push('\n');
        md.push_str(section);
        md.push('\n');
    }
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

    chart::draw_chart(&s.rows, &cfg.results.join("chart.svg"));
}

#[cfg(test)]
mod tests {
    use super::python_section;

    #[test]
    fn the_python_section_is_found_with_its_markers() {
        let old = "# Benchmarks\n\n<!-- python-peers: by peers.py -->\n## Python\n| a |\n<!-- /python-peers -->\ntail\n";
        assert_eq!(
            python_section(old),
            Some("<!-- python-peers: by peers.py -->\n## Python\n| a |\n<!-- /python-peers -->")
        );
        assert_eq!(python_section("# Benchmarks\n"), None);
        assert_eq!(python_section("<!-- python-peers: cut short\n"), None);
    }
}

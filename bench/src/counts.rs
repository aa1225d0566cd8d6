//! The counts section: callgrind instructions and strace syscalls per
//! operation (exact, noise-free figures).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{have, say, self_exe};
use crate::suite::{Config, Suite};

// ------------------------------------------------------------ deterministic

fn target_dir() -> PathBuf {
    // …/<target>/release/evloop-bench
    self_exe().parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

pub fn section_counts(cfg: &Config, s: &mut Suite) {
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
            "| path | benchmark (bench/src/micro/evloop.rs) | instructions/op |\n| --- | --- | ---: |\n",
        );
        let benches = [
            ("call_soon", "call_soon_batch"),
            ("call_soon, one loop turn each", "call_soon_chain"),
            ("timer schedule + cancel", "timer_schedule_cancel"),
            ("timer fire", "timer_fire"),
            ("task spawn + complete", "task_spawn"),
            ("run_until_complete of a trivial future", "run_until_complete"),
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
            "\nEcho round trip, 1 KiB, client and server on one loop (`evloop-bench echo-count IMPL 1024 N`, \
             N = {n} minus N = {m}; user space only — the kernel's share is in the syscall counts below):\n\n"
        ));
        md.push_str("| implementation | instructions/round trip | × raw epoll |\n| --- | ---: | ---: |\n");
        let dir = std::env::temp_dir().join("evloop-bench-callgrind");
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
             (`strace -f -c evloop-bench echo-count IMPL 1024 N`, N = {n} minus N = {m}):\n"
        );
        md.push_str("| implementation | syscalls/round trip | breakdown |\n| --- | ---: | --- |\n");
        for imp in ["raw-epoll", "evloop", "evloop-streams", "tokio", "smol"] {
            let counts = |k: u64| syscalls(&["echo-count", imp, "1024", &k.to_string()]);
            match (counts(n), counts(m)) {
                (Some(a), Some(b)) => {
                    let per = per_op(&a, &b, (n - m) as f64);
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

/// Each syscall's count in one run of this binary with `args`, from
/// `strace -f -c` (`None` if the run or strace failed).
pub fn syscalls(args: &[&str]) -> Option<Vec<(String, f64)>> {
    let file = std::env::temp_dir().join(format!("evloop-bench-strace.{}", args.join("-")));
    let st = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&file)
        .arg(self_exe())
        .args(args)
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
}

/// Per-op counts from a long run `a` and a short run `b`, `ops` apart
/// (start-up and set-up cancel out), largest first.
pub fn per_op(a: &[(String, f64)], b: &[(String, f64)], ops: f64) -> Vec<(String, f64)> {
    let mut per: Vec<(String, f64)> = a
        .iter()
        .map(|(name, c)| {
            let base = b.iter().find(|(q, _)| q == name).map(|(_, c)| *c).unwrap_or(0.0);
            (name.clone(), (c - base) / ops)
        })
        .filter(|(_, d)| d.abs() > 0.005)
        .collect();
    per.sort_by(|x, y| y.1.total_cmp(&x.1));
    per
}

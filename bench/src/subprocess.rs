//! Subprocess benchmarks, evloop against `tokio::process` on tokio's
//! current-thread runtime: spawn + wait of `true` (spawns per second), and
//! the round-trip latency of one 64-byte line through a running `cat`.
//! Both peers inherit or pipe the same streams, so the fork/exec and the
//! kernel's pipe work are the same; what differs is the runtime around
//! them (evloop: a pidfd per child; tokio: its SIGCHLD-driven reaper).

use std::time::{Duration, Instant};

use crate::common::{Cell, Row, Runner};
use crate::process::say;
use crate::suite::{Config, Suite, interleave};

pub const PEERS: &[&str] = &["evloop", "tokio"];

/// The line each cat round trip sends (63 bytes and a newline).
const LINE: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

/// `name` ("spawn" or "cat") on `peer`: a runner of `n` operations.
pub fn runner(peer: &str, name: &str) -> Option<Runner> {
    match (peer, name) {
        ("evloop", "spawn") => Some(evloop_spawn()),
        ("evloop", "cat") => Some(evloop_cat()),
        ("tokio", "spawn") => Some(tokio_spawn()),
        ("tokio", "cat") => Some(tokio_cat()),
        _ => None,
    }
}

fn evloop_spawn() -> Runner {
    use evloop::os::process::{SubprocessOptions, create_subprocess_exec};
    let lp = evloop::EventLoop::new().expect("a loop");
    Box::new(move |n| {
        lp.run_until_complete(async move {
            let start = Instant::now();
            for _ in 0..n {
                let child =
                    create_subprocess_exec("true", [] as [&str; 0], SubprocessOptions::new()).await.unwrap();
                assert_eq!(child.wait().await.unwrap(), 0);
            }
            start.elapsed()
        })
        .unwrap()
    })
}

fn evloop_cat() -> Runner {
    use evloop::os::process::{Stdio, SubprocessOptions, create_subprocess_exec};
    let lp = evloop::EventLoop::new().expect("a loop");
    Box::new(move |n| {
        lp.run_until_complete(async move {
            let options = SubprocessOptions::new().stdin(Stdio::Piped).stdout(Stdio::Piped);
            let mut cat = create_subprocess_exec("cat", [] as [&str; 0], options).await.unwrap();
            let stdin = cat.stdin.take().unwrap();
            let stdout = cat.stdout.as_mut().unwrap();
            let start = Instant::now();
            for _ in 0..n {
                stdin.write(LINE).unwrap();
                let line = stdout.readline().await.unwrap();
                assert_eq!(line, LINE);
            }
            let elapsed = start.elapsed();
            stdin.close();
            assert_eq!(cat.wait().await.unwrap(), 0);
            elapsed
        })
        .unwrap()
    })
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn tokio_spawn() -> Runner {
    let rt = tokio_runtime();
    Box::new(move |n| {
        rt.block_on(async move {
            let start = Instant::now();
            for _ in 0..n {
                let status = tokio::process::Command::new("true").status().await.unwrap();
                assert!(status.success());
            }
            start.elapsed()
        })
    })
}

fn tokio_cat() -> Runner {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let rt = tokio_runtime();
    Box::new(move |n| {
        rt.block_on(async move {
            let mut cat = tokio::process::Command::new("cat")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = cat.stdin.take().unwrap();
            let mut stdout = BufReader::new(cat.stdout.take().unwrap());
            let mut line = Vec::with_capacity(128);
            let start = Instant::now();
            for _ in 0..n {
                stdin.write_all(LINE).await.unwrap();
                line.clear();
                stdout.read_until(b'\n', &mut line).await.unwrap();
                assert_eq!(line, LINE);
            }
            let elapsed = start.elapsed();
            drop(stdin);
            assert!(cat.wait().await.unwrap().success());
            elapsed
        })
    })
}

/// The suite's "subprocess" section: both workloads, both peers
/// interleaved round by round.
pub fn section_subprocess(cfg: &Config, s: &mut Suite) {
    let (spawns, trips) = if cfg.quick { (100, 1000) } else { (300, 5000) };
    for (name, ops, bench, unit, lower) in [
        ("spawn", spawns, "spawn + wait of true".to_string(), "spawns/s", false),
        ("cat", trips, "cat round trip, 64 B line".to_string(), "µs/round trip", true),
    ] {
        let mut runners: Vec<(String, Runner)> =
            PEERS.iter().filter_map(|p| runner(p, name).map(|r| (p.to_string(), r))).collect();
        say(format!("subprocess {name} ({ops} ops × {} rounds)", cfg.rounds));
        let value = |d: Duration, n: u64| {
            if lower { d.as_nanos() as f64 / 1e3 / n as f64 } else { n as f64 / d.as_secs_f64() }
        };
        let values = interleave(&mut runners, ops, ops / 10, cfg.rounds, value);
        let mut row = Row::new("subprocess", bench, unit, lower);
        for ((peer, _), v) in runners.iter().zip(values) {
            row.cells.push((peer.clone(), Cell::Values(v)));
        }
        s.rows.push(row);
    }
}

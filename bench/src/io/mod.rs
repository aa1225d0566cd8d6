//! In-process I/O on one loop over loopback TCP: echo ping-pong (the
//! client sends a message, the server echoes it, the client waits for all
//! of it, repeat) and bulk transfer with flow control (64 KiB writes, the
//! server counts and answers the total).
//!
//! Peers: evloop `Protocol`, evloop streams, tokio (current-thread), smol
//! (`LocalExecutor` + `async-io`), and the floor: a level-triggered epoll
//! loop on `libc` doing what a loop must do at the least (one `recv` per
//! readiness event into a 256 KiB buffer, direct `send` with a buffer and
//! `EPOLLOUT` only for what the socket does not take). Every socket has
//! TCP_NODELAY, as asyncio's and evloop's transports do.
//!
//! Each call sets up a server and a connection (untimed), warms up with 50
//! round trips, then times `n` round trips.

mod evloop;
mod raw_epoll;
pub mod run_set;
mod smol;
mod tokio;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{Cell, Row, Runner};
use crate::counts::{per_op, syscalls};
use crate::process::{have, say};
use crate::python;
use crate::suite::{Config, Suite, interleave};

pub const ECHO_PEERS: &[&str] =
    &["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"];
pub const BULK_PEERS: &[&str] = ECHO_PEERS;

pub const WARM_UP: u64 = 50;
pub const READ_SIZE: usize = 256 * 1024;
pub const CHUNK: usize = 64 * 1024;

/// A Rust echo runner: `n` round trips of `size` bytes.
pub fn echo_runner(peer: &str, size: usize) -> Option<Runner> {
    let f: fn(usize, u64) -> Duration = match peer {
        "evloop" => evloop::evloop_echo,
        "evloop-streams" => evloop::streams_echo,
        "tokio" => tokio::tokio_echo,
        "smol" => smol::smol_echo,
        "raw-epoll" => raw_epoll::raw_echo,
        _ => return None,
    };
    Some(Box::new(move |n| f(size, n)))
}

/// A Rust bulk runner: `total` bytes.
pub fn bulk_runner(peer: &str) -> Option<Runner> {
    let f: fn(u64) -> Duration = match peer {
        "evloop" => evloop::evloop_bulk,
        "evloop-streams" => evloop::streams_bulk,
        "tokio" => tokio::tokio_bulk,
        "smol" => smol::smol_bulk,
        "raw-epoll" => raw_epoll::raw_bulk,
        _ => return None,
    };
    Some(Box::new(f))
}

// ------------------------------------------------------ shared Python peers

/// Blocking helpers for the cross-process benchmarks' checks.
pub fn blocking_roundtrip(addr: &str, request: &[u8], until: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(until.len()).any(|w| w == until) {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(got)
}

pub fn section_echo(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
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
        for peer in ECHO_PEERS {
            let r = match *peer {
                "asyncio" | "uvloop" => workers
                    .iter()
                    .find(|(k, _)| k == peer)
                    .map(|(_, w)| python::runner(w, move |n| format!("echo {size} {n}"))),
                _ => echo_runner(peer, size),
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

pub fn section_bulk(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
    let total: u64 = if cfg.quick { 64 << 20 } else { 256 << 20 };
    let mut runners: Vec<(String, Runner)> = Vec::new();
    for peer in BULK_PEERS {
        let r = match *peer {
            "asyncio" | "uvloop" => workers
                .iter()
                .find(|(k, _)| k == peer)
                .map(|(_, w)| python::runner(w, |total| format!("bulk {total}"))),
            _ => bulk_runner(peer),
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
    bulk_syscalls(total, s);
}

/// Syscalls, reads and writes per MiB of each Rust peer's bulk transfer,
/// so that a throughput miss can be explained (read sizes, writes per
/// chunk, poller calls): `strace -f -c` of `bulk-count PEER BYTES` for the
/// section's size and a quarter of it, the difference divided by the MiB
/// between them.
fn bulk_syscalls(total: u64, s: &mut Suite) {
    const READS: &[&str] = &["read", "readv", "recvfrom", "recvmsg"];
    const WRITES: &[&str] = &["write", "writev", "sendto", "sendmsg"];
    if !have("strace") {
        s.notes.push("strace is not installed: no syscall counts for the bulk transfer.".into());
        return;
    }
    say(format!("bulk {} MiB: syscalls per MiB (strace -c)", total >> 20));
    let mib = |what: &str| format!("bulk {} MiB: {what} per MiB", total >> 20);
    let mut rows = [
        Row::new("bulk", mib("syscalls"), "syscalls/MiB", true),
        Row::new("bulk", mib("reads"), "reads/MiB", true),
        Row::new("bulk", mib("writes"), "writes/MiB", true),
    ];
    let small = total / 4;
    let between = (total - small) as f64 / (1 << 20) as f64;
    for peer in BULK_PEERS.iter().filter(|p| bulk_runner(p).is_some()) {
        let run = |bytes: u64| syscalls(&["bulk-count", peer, &bytes.to_string()]);
        let cells: [Cell; 3] = match (run(total), run(small)) {
            (Some(a), Some(b)) => {
                let per = per_op(&a, &b, between);
                let sum = |names: &[&str]| -> f64 {
                    per.iter()
                        .filter(|(n, _)| names.is_empty() || names.contains(&n.as_str()))
                        .map(|(_, d)| d)
                        .sum()
                };
                [sum(&[]), sum(READS), sum(WRITES)].map(|v| Cell::Values(vec![v]))
            }
            _ => std::array::from_fn(|_| Cell::Failed("strace run failed".into())),
        };
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.cells.push((peer.to_string(), cell));
        }
    }
    rows[0].notes.push(format!(
        "syscalls per MiB moved: `strace -f -c evloop-bench bulk-count PEER BYTES` for {} MiB minus {} MiB \
         (one count per peer, not timed; how much one read finds depends on the kernel's socket buffers, so \
         reads per MiB can move between runs); reads: {}; writes: {}",
        total >> 20,
        small >> 20,
        READS.join("/"),
        WRITES.join("/")
    ));
    s.rows.extend(rows);
}

//! Loop micro benchmarks, the same shape on every Rust peer that has the
//! operation: evloop, tokio (current-thread runtime + `LocalSet`), smol
//! (`async-executor::LocalExecutor` + `async-io`) and calloop (idle
//! callbacks, timers, its futures executor). The Python peers run the same
//! shapes in `bench/python/micro.py`.
//!
//! Each `*_runner` builds one long-lived loop/runtime for a benchmark and
//! returns a closure that runs `ops` operations, times only them, checks
//! the result (panicking if it is wrong) and returns the time.

mod calloop;
pub mod evloop;
mod smol;
mod tokio;

use crate::common::{Cell, Row, Runner};
use crate::process::say;
use crate::python;
use crate::suite::{Config, Suite, interleave};

/// A micro benchmark: its name, what one op is, default op counts, and
/// how each peer implements it (`None`: the peer has no such operation).
pub struct MicroBench {
    pub name: &'static str,
    pub unit: &'static str,
    pub ops_full: u64,
    pub ops_quick: u64,
    pub what: &'static str,
}

pub const BENCHES: &[MicroBench] = &[
    MicroBench {
        name: "call_soon_batch",
        unit: "callback",
        ops_full: 200_000,
        ops_quick: 100_000,
        what: "200k `call_soon` then one drain (calloop: `insert_idle` + one `dispatch`)",
    },
    MicroBench {
        name: "call_soon_chain",
        unit: "turn",
        ops_full: 100_000,
        ops_quick: 20_000,
        what: "each callback schedules the next: one full loop turn per callback (calloop: an idle callback inserting the next, one `dispatch(0)` each)",
    },
    MicroBench {
        name: "timer_schedule_cancel",
        unit: "pair",
        ops_full: 200_000,
        ops_quick: 50_000,
        what: "`call_later(random 1 ms–10 s)` + `cancel()` (tokio/smol: a sleep/timer polled once, then dropped; calloop: `insert_source(Timer)` + `remove`)",
    },
    MicroBench {
        name: "timer_fire",
        unit: "timer",
        ops_full: 100_000,
        ops_quick: 50_000,
        what: "100k `call_later(0)`, then run until all fired (calloop: `Timer::immediate()` sources, drained every 10k because its timer dispatch slows down superlinearly with the number due at once)",
    },
    MicroBench {
        name: "yield_now",
        unit: "turn",
        ops_full: 100_000,
        ops_quick: 20_000,
        what: "one task awaiting `yield_now()` in a loop (asyncio/uvloop: `await asyncio.sleep(0)`)",
    },
    MicroBench {
        name: "sleep_zero",
        unit: "turn",
        ops_full: 100_000,
        ops_quick: 20_000,
        what: "one task awaiting a zero-length timer sleep in a loop: evloop `sleep(ZERO)`, asyncio/uvloop `sleep(1e-9)` (their `sleep(0)` is a bare yield, see `yield_now`), tokio `sleep(ZERO)`, which waits for the next tick of its 1 ms timer wheel (so only 200 are timed per round, scaled); smol n/a: `Timer::after(ZERO)` is ready when first polled, no loop turn",
    },
    MicroBench {
        name: "future_roundtrip",
        unit: "round trip",
        ops_full: 100_000,
        ops_quick: 20_000,
        what: "inside a task: create a future, resolve it from a `call_soon` callback, await it (tokio/smol have no loop-resolved future: a spawned task's `JoinHandle`, i.e. spawn + complete + await)",
    },
    MicroBench {
        name: "task_spawn",
        unit: "task",
        ops_full: 50_000,
        ops_quick: 20_000,
        what: "50k tiny tasks spawned in batches of 5000, run to completion, each result read (calloop: its futures executor)",
    },
    MicroBench {
        name: "run_until_complete",
        unit: "call",
        ops_full: 50_000,
        ops_quick: 20_000,
        what: "`run_until_complete` of a trivial future (`async { i }`) per op, its result read: evloop polls it in a task's place (on an idle loop the first poll completes it and no pass runs); tokio `rt.block_on` (current-thread), smol `block_on` (async-io), asyncio/uvloop `run_until_complete(coro())`; calloop n/a (no block_on)",
    },
    MicroBench {
        name: "talk_run_until_complete",
        unit: "call",
        ops_full: 20_000,
        ops_quick: 5_000,
        what: "the talk's body 1: `loop.run_until_complete(sleep(0))` per op; evloop `sleep(ZERO)` (a timer), asyncio `sleep(0)` (a yield); tokio `rt.block_on(yield_now())` and smol `block_on(yield_now())`, since tokio's `sleep(ZERO)` waits for a 1 ms tick",
    },
    MicroBench {
        name: "talk_call_soon",
        unit: "callback",
        ops_full: 200_000,
        ops_quick: 50_000,
        what: "the talk's body 2: `call_soon(cb)` per op, drained every 10k",
    },
    MicroBench {
        name: "talk_call_later0",
        unit: "timer",
        ops_full: 200_000,
        ops_quick: 50_000,
        what: "the talk's body 3: `call_later(0, cb)` per op, drained every 10k",
    },
];

const TASK_BATCH: u64 = 5_000;
/// tokio `sleep(ZERO)`s timed per run (each waits for a 1 ms timer tick).
const TOKIO_SLEEPS: u64 = 200;
/// calloop's timer dispatch slows down with the number of timers due at
/// once (superlinearly), so its `timer_fire` drains every 10k.
const CALLOOP_TIMER_BATCH: u64 = 10_000;
const TALK_DRAIN: u64 = 10_000;

/// The runner of micro benchmark `bench` on Rust peer `peer` (`None`: the
/// peer has no such operation).
pub fn runner(peer: &str, bench: &str) -> Option<Runner> {
    match peer {
        "evloop" => evloop::evloop_runner(bench),
        "tokio" => tokio::tokio_runner(bench),
        "smol" => smol::smol_runner(bench),
        "calloop" => calloop::calloop_runner(bench),
        _ => None,
    }
}

// ------------------------------------------------------------------ section

pub const MICRO_PEERS: &[&str] = &["evloop", "asyncio", "uvloop", "tokio", "smol", "calloop"];

pub fn section_micro(cfg: &Config, s: &mut Suite, workers: &[(String, python::Shared)]) {
    for b in BENCHES {
        let ops = if cfg.quick { b.ops_quick } else { b.ops_full };
        let mut runners: Vec<(String, Runner)> = Vec::new();
        let mut row = Row::new("micro", b.name, format!("ns/{}", b.unit), true);
        for peer in MICRO_PEERS {
            let runner = match *peer {
                "asyncio" | "uvloop" => workers
                    .iter()
                    .find(|(k, _)| k == peer)
                    .map(|(_, w)| python::runner(w, move |ops| format!("micro {} {ops}", b.name))),
                _ => runner(peer, b.name),
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

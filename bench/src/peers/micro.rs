//! Loop micro benchmarks, the same shape on every Rust peer that has the
//! operation: evloop, tokio (current-thread runtime + `LocalSet`), smol
//! (`async-executor::LocalExecutor` + `async-io`) and calloop (idle
//! callbacks, timers, its futures executor). The Python peers run the same
//! shapes in `bench/python/micro.py`.
//!
//! Each `*_runner` builds one long-lived loop/runtime for a benchmark and
//! returns a closure that runs `ops` operations, times only them, checks
//! the result (panicking if it is wrong) and returns the time.

use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::common::Runner;
use crate::workloads::{self, bump, counter, next_delay};

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

pub fn runner(peer: &str, bench: &str) -> Option<Runner> {
    match peer {
        "evloop" => evloop_runner(bench),
        "tokio" => tokio_runner(bench),
        "smol" => smol_runner(bench),
        "calloop" => calloop_runner(bench),
        _ => None,
    }
}

// ------------------------------------------------------------------ evloop

/// Closes the loop when the runner is dropped (callbacks holding clones of
/// the loop would otherwise keep it alive).
struct Closing(evloop::EventLoop);

impl Drop for Closing {
    fn drop(&mut self) {
        let _ = self.0.close();
    }
}

/// A runner for one of the shared evloop workloads, on the guarded loop.
fn shared(guard: Closing, work: fn(&evloop::EventLoop, u64) -> workloads::Sample) -> Runner {
    Box::new(move |ops| work(&guard.0, ops).elapsed)
}

pub fn evloop_runner(bench: &str) -> Option<Runner> {
    use evloop::EventLoop;
    let guard = Closing(EventLoop::new().expect("create an evloop loop"));
    let r: Runner = match bench {
        // The harness's own workloads (`bench/src/workloads.rs`): the
        // suite's evloop column times exactly what `evloop-bench` and
        // `callgrind.sh` measure.
        "call_soon_batch" => shared(guard, workloads::call_soon_batch),
        "call_soon_chain" => shared(guard, workloads::call_soon_chain),
        "timer_schedule_cancel" => shared(guard, workloads::timer_schedule_cancel),
        "timer_fire" => shared(guard, workloads::timer_fire),
        "yield_now" => shared(guard, workloads::yield_now),
        "sleep_zero" => shared(guard, workloads::sleep_zero),
        "future_roundtrip" => shared(guard, workloads::future_roundtrip),
        "task_spawn" => shared(guard, workloads::task_spawn),
        "talk_run_until_complete" => Box::new(move |ops| {
            let lp = &guard.0;
            let mut done = 0u64;
            let start = Instant::now();
            for _ in 0..ops {
                lp.run_until_complete(evloop::sleep(Duration::ZERO)).unwrap();
                done += 1;
            }
            let t = start.elapsed();
            assert_eq!(done, ops);
            assert_eq!(lp.stats().tasks, 0);
            t
        }),
        "talk_call_soon" => Box::new(move |ops| {
            let lp = &guard.0;
            let ran = counter();
            let start = Instant::now();
            let mut i = 0;
            while i < ops {
                let n = TALK_DRAIN.min(ops - i);
                for _ in 0..n {
                    let ran = ran.clone();
                    lp.call_soon(move || bump(&ran));
                }
                lp.run_until_idle().unwrap();
                i += n;
            }
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            t
        }),
        "talk_call_later0" => Box::new(move |ops| {
            let lp = &guard.0;
            let ran = counter();
            let start = Instant::now();
            let mut i = 0;
            while i < ops {
                let n = TALK_DRAIN.min(ops - i);
                for _ in 0..n {
                    let ran = ran.clone();
                    lp.call_later(Duration::ZERO, move || bump(&ran));
                }
                lp.run_until_idle().unwrap();
                i += n;
            }
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            t
        }),
        _ => return None,
    };
    Some(r)
}

// ------------------------------------------------------------------- tokio

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

pub fn tokio_runner(bench: &str) -> Option<Runner> {
    use tokio::task::{LocalSet, spawn_local};
    let rt = tokio_rt();
    let local = LocalSet::new();
    let r: Runner = match bench {
        "timer_schedule_cancel" => Box::new(move |ops| {
            local.block_on(&rt, async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
                let mut fired = 0u64;
                let start = Instant::now();
                for _ in 0..ops {
                    let mut s = pin!(tokio::time::sleep(next_delay(&mut rng)));
                    // The first poll registers the timer; dropping cancels it.
                    if futures_lite::future::poll_once(s.as_mut()).await.is_some() {
                        fired += 1;
                    }
                }
                let t = start.elapsed();
                assert_eq!(fired, 0);
                t
            })
        }),
        "yield_now" | "sleep_zero" => {
            let sleep = bench == "sleep_zero";
            Box::new(move |ops| {
                // tokio's timer wheel ticks every millisecond: `sleep(ZERO)`
                // waits for the next tick, so only a few are timed and the
                // time is scaled to `ops`.
                let k = if sleep { ops.min(TOKIO_SLEEPS) } else { ops };
                let start = Instant::now();
                let turns = local.block_on(&rt, async move {
                    spawn_local(async move {
                        let mut turns = 0u64;
                        for _ in 0..k {
                            if sleep {
                                tokio::time::sleep(Duration::ZERO).await;
                            } else {
                                tokio::task::yield_now().await;
                            }
                            turns += 1;
                        }
                        turns
                    })
                    .await
                    .unwrap()
                });
                let t = start.elapsed();
                assert_eq!(turns, k);
                t.mul_f64(ops as f64 / k.max(1) as f64)
            })
        }
        "future_roundtrip" => Box::new(move |ops| {
            let start = Instant::now();
            let sum = local.block_on(&rt, async move {
                spawn_local(async move {
                    let mut sum = 0u64;
                    for i in 0..ops {
                        sum += spawn_local(async move { i }).await.unwrap();
                    }
                    sum
                })
                .await
                .unwrap()
            });
            let t = start.elapsed();
            assert_eq!(sum, ops * ops.saturating_sub(1) / 2);
            t
        }),
        "task_spawn" => Box::new(move |ops| {
            let ran = counter();
            let r2 = ran.clone();
            let start = Instant::now();
            let sum = local.block_on(&rt, async move {
                let mut handles = Vec::with_capacity(TASK_BATCH as usize);
                let (mut sum, mut done) = (0u64, 0u64);
                while done < ops {
                    let n = TASK_BATCH.min(ops - done);
                    for i in done..done + n {
                        let r = r2.clone();
                        handles.push(spawn_local(async move {
                            bump(&r);
                            i
                        }));
                    }
                    for h in handles.drain(..) {
                        sum += h.await.unwrap();
                    }
                    done += n;
                }
                sum
            });
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            assert_eq!(sum, ops * (ops - 1) / 2);
            t
        }),
        "talk_run_until_complete" => Box::new(move |ops| {
            let mut done = 0u64;
            let start = Instant::now();
            for _ in 0..ops {
                rt.block_on(tokio::task::yield_now());
                done += 1;
            }
            let t = start.elapsed();
            assert_eq!(done, ops);
            t
        }),
        _ => return None,
    };
    Some(r)
}

// -------------------------------------------------------------------- smol

pub fn smol_runner(bench: &str) -> Option<Runner> {
    use async_executor::LocalExecutor;
    use async_io::{Timer, block_on};
    let ex: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
    let r: Runner = match bench {
        "timer_schedule_cancel" => Box::new(move |ops| {
            block_on(ex.run(async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
                let mut fired = 0u64;
                let start = Instant::now();
                for _ in 0..ops {
                    let mut t = pin!(Timer::after(next_delay(&mut rng)));
                    if futures_lite::future::poll_once(t.as_mut()).await.is_some() {
                        fired += 1;
                    }
                }
                let t = start.elapsed();
                assert_eq!(fired, 0);
                t
            }))
        }),
        "yield_now" => Box::new(move |ops| {
            let start = Instant::now();
            let task = ex.spawn(async move {
                let mut turns = 0u64;
                for _ in 0..ops {
                    futures_lite::future::yield_now().await;
                    turns += 1;
                }
                turns
            });
            let turns = block_on(ex.run(task));
            let t = start.elapsed();
            assert_eq!(turns, ops);
            t
        }),
        "future_roundtrip" => Box::new(move |ops| {
            let start = Instant::now();
            let ex2 = ex.clone();
            let task = ex.spawn(async move {
                let mut sum = 0u64;
                for i in 0..ops {
                    sum += ex2.spawn(async move { i }).await;
                }
                sum
            });
            let sum = block_on(ex.run(task));
            let t = start.elapsed();
            assert_eq!(sum, ops * ops.saturating_sub(1) / 2);
            t
        }),
        "task_spawn" => Box::new(move |ops| {
            let ran = counter();
            let mut tasks = Vec::with_capacity(TASK_BATCH as usize);
            let (mut sum, mut done) = (0u64, 0u64);
            let start = Instant::now();
            while done < ops {
                let n = TASK_BATCH.min(ops - done);
                for i in done..done + n {
                    let r = ran.clone();
                    tasks.push(ex.spawn(async move {
                        bump(&r);
                        i
                    }));
                }
                sum += block_on(ex.run(async {
                    let mut s = 0;
                    for t in tasks.drain(..) {
                        s += t.await;
                    }
                    s
                }));
                done += n;
            }
            let t = start.elapsed();
            assert_eq!(ran.get(), ops);
            assert_eq!(sum, ops * (ops - 1) / 2);
            t
        }),
        "talk_run_until_complete" => Box::new(move |ops| {
            let mut done = 0u64;
            let start = Instant::now();
            for _ in 0..ops {
                block_on(futures_lite::future::yield_now());
                done += 1;
            }
            let t = start.elapsed();
            assert_eq!(done, ops);
            t
        }),
        _ => return None,
    };
    Some(r)
}

// ----------------------------------------------------------------- calloop

#[derive(Default)]
pub struct CData {
    ran: u64,
    sum: u64,
}

type CLoop = calloop::EventLoop<'static, CData>;

fn calloop_chain(h: calloop::LoopHandle<'static, CData>, left: u64) {
    let h2 = h.clone();
    h.insert_idle(move |d: &mut CData| {
        d.ran += 1;
        if left > 1 {
            calloop_chain(h2, left - 1);
        }
    });
}

pub fn calloop_runner(bench: &str) -> Option<Runner> {
    use calloop::timer::{TimeoutAction, Timer};
    let mut el: CLoop = calloop::EventLoop::try_new().expect("calloop loop");
    let mut data = CData::default();
    let r: Runner = match bench {
        "call_soon_batch" | "talk_call_soon" => {
            let drain = if bench == "talk_call_soon" { TALK_DRAIN } else { u64::MAX };
            Box::new(move |ops| {
                data.ran = 0;
                let h = el.handle();
                let start = Instant::now();
                let mut i = 0;
                while i < ops {
                    let n = drain.min(ops - i);
                    for _ in 0..n {
                        h.insert_idle(|d: &mut CData| d.ran += 1);
                    }
                    el.dispatch(Some(Duration::ZERO), &mut data).unwrap();
                    i += n;
                }
                let t = start.elapsed();
                assert_eq!(data.ran, ops);
                t
            })
        }
        "call_soon_chain" => Box::new(move |ops| {
            data.ran = 0;
            let mut turns = 0u64;
            let start = Instant::now();
            calloop_chain(el.handle(), ops);
            while data.ran < ops {
                el.dispatch(Some(Duration::ZERO), &mut data).unwrap();
                turns += 1;
            }
            let t = start.elapsed();
            assert_eq!(data.ran, ops);
            assert_eq!(turns, ops, "one dispatch per link");
            t
        }),
        "timer_schedule_cancel" => Box::new(move |ops| {
            data.ran = 0;
            let h = el.handle();
            let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
            let start = Instant::now();
            for _ in 0..ops {
                let tok = h
                    .insert_source(Timer::from_duration(next_delay(&mut rng)), |_, _, d: &mut CData| {
                        d.ran += 1;
                        TimeoutAction::Drop
                    })
                    .unwrap();
                h.remove(tok);
            }
            let t = start.elapsed();
            el.dispatch(Some(Duration::ZERO), &mut data).unwrap();
            assert_eq!(data.ran, 0);
            t
        }),
        "timer_fire" | "talk_call_later0" => {
            let drain = if bench == "talk_call_later0" { TALK_DRAIN } else { CALLOOP_TIMER_BATCH };
            Box::new(move |ops| {
                data.ran = 0;
                let h = el.handle();
                let start = Instant::now();
                let mut i = 0;
                while i < ops {
                    let n = drain.min(ops - i);
                    for _ in 0..n {
                        h.insert_source(Timer::immediate(), |_, _, d: &mut CData| {
                            d.ran += 1;
                            TimeoutAction::Drop
                        })
                        .unwrap();
                    }
                    i += n;
                    while data.ran < i {
                        el.dispatch(Some(Duration::ZERO), &mut data).unwrap();
                    }
                }
                let t = start.elapsed();
                assert_eq!(data.ran, ops);
                t
            })
        }
        "task_spawn" => {
            let (exec, sched) = calloop::futures::executor::<u64>().expect("calloop executor");
            el.handle()
                .insert_source(exec, |v, _, d: &mut CData| {
                    d.sum += v;
                    d.ran += 1;
                })
                .expect("insert the executor");
            Box::new(move |ops| {
                data.ran = 0;
                data.sum = 0;
                let bumps = counter();
                let start = Instant::now();
                let mut done = 0u64;
                while done < ops {
                    let n = TASK_BATCH.min(ops - done);
                    for i in done..done + n {
                        let b = bumps.clone();
                        sched
                            .schedule(async move {
                                bump(&b);
                                i
                            })
                            .unwrap();
                    }
                    done += n;
                    while data.ran < done {
                        el.dispatch(Some(Duration::ZERO), &mut data).unwrap();
                    }
                }
                let t = start.elapsed();
                assert_eq!(bumps.get(), ops);
                assert_eq!(data.sum, ops * (ops - 1) / 2);
                t
            })
        }
        _ => return None,
    };
    Some(r)
}

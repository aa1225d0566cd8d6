//! tokio's column of the micro section: the current-thread runtime with a
//! `LocalSet`.

use std::pin::pin;
use std::time::{Duration, Instant};

use super::{TASK_BATCH, TOKIO_SLEEPS};
use crate::common::{Runner, bump, counter};
use crate::micro::evloop::next_delay;

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
        "run_until_complete" => Box::new(move |ops| {
            let mut sum = 0u64;
            let start = Instant::now();
            for i in 0..ops {
                sum += rt.block_on(async move { i });
            }
            let t = start.elapsed();
            assert_eq!(sum, ops * ops.saturating_sub(1) / 2);
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

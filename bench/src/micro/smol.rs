//! smol's column of the micro section: `async-executor::LocalExecutor`
//! driven by `async-io::block_on`.

use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use super::TASK_BATCH;
use crate::common::{Runner, bump, counter};
use crate::micro::evloop::next_delay;

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
        "run_until_complete" => Box::new(move |ops| {
            let mut sum = 0u64;
            let start = Instant::now();
            for i in 0..ops {
                sum += block_on(async move { i });
            }
            let t = start.elapsed();
            assert_eq!(sum, ops * ops.saturating_sub(1) / 2);
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

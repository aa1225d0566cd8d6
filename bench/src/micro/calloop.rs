//! calloop's column of the micro section: idle callbacks, `Timer` sources
//! and its futures executor.

use std::time::{Duration, Instant};

use super::{CALLOOP_TIMER_BATCH, TALK_DRAIN, TASK_BATCH};
use crate::common::{Runner, bump, counter};
use crate::micro::evloop::next_delay;

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

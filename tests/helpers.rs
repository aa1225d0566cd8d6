//! Behaviour of the coroutine helpers: sleep, yield_now, gather,
//! gather_results, wait_for and TaskGroup.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, TaskGroup};
use util::{DropCounter, Recorder, capture_exceptions, manual_loop};

type BoxFut<T> = Pin<Box<dyn StdFuture<Output = T>>>;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn sleep_never_ends_early_and_dropping_it_cancels_its_timer() {
    let lp = manual_loop();
    let done = Recorder::<&'static str>::new();
    let d = done.clone();
    let task = lp.create_task(async move {
        evloop::sleep(secs(10)).await;
        d.push("slept");
    });
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().timers, 1, "the timer starts at the first poll");
    lp.advance_time(secs(10) - Duration::from_nanos(1));
    lp.run_until_idle().unwrap();
    assert!(done.is_empty());
    lp.advance_time(Duration::from_nanos(1));
    lp.run_until_idle().unwrap();
    assert_eq!(done.get(), ["slept"]);
    assert!(task.done());

    let task = lp.create_task(evloop::sleep(secs(10)));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().timers, 1);
    task.cancel();
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn sleep_until_and_yield_now() {
    let lp = manual_loop();
    let when = lp.time() + secs(5);
    let task = lp.create_task(async move {
        evloop::sleep_until(when).await;
        evloop::get_running_loop().unwrap().time()
    });
    lp.run_until_idle().unwrap();
    assert!(!task.done());
    lp.advance_time(secs(5));
    lp.run_until_idle().unwrap();
    assert_eq!(task.result().unwrap(), when);

    // yield_now gives exactly one pass to the others.
    let log = Recorder::<&'static str>::new();
    let l = log.clone();
    lp.create_task(async move {
        l.push("task before");
        evloop::yield_now().await;
        l.push("task after");
    });
    lp.call_soon(log.pusher("callback"));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), ["task before", "callback", "task after"]);
}

#[test]
fn gather_returns_outputs_in_input_order_though_they_finish_in_reverse() {
    let lp = manual_loop();
    let finished = Recorder::<u64>::new();
    let f = finished.clone();
    let task = lp.create_task(evloop::gather((1..=4u64).map(move |i| {
        let f = f.clone();
        async move {
            evloop::sleep(secs(10 * (5 - i))).await;
            f.push(i);
            Ok(i * 100)
        }
    })));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().tasks, 5, "the gather and its four children");
    for _ in 0..4 {
        assert!(!task.done());
        lp.advance_time(secs(10));
        lp.run_until_idle().unwrap();
    }
    assert_eq!(finished.get(), [4, 3, 2, 1]);
    assert_eq!(task.result().unwrap().unwrap(), [100, 200, 300, 400]);
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn gather_of_nothing_is_empty() {
    let lp = manual_loop();
    let out = lp.run_until_complete(evloop::gather(Vec::<BoxFut<Result<u8, Error>>>::new())).unwrap();
    assert!(out.unwrap().is_empty());
}

#[test]
fn gather_returns_the_first_error_and_lets_the_other_children_run_on() {
    // asyncio: the first exception goes to the awaiter; the other children
    // are not cancelled. Nothing panics.
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let sibling_done = Rc::new(std::cell::Cell::new(false));
    let s = sibling_done.clone();
    let children: Vec<BoxFut<Result<u32, Error>>> = vec![
        Box::pin(async move {
            let _token = token;
            evloop::sleep(secs(3600)).await;
            s.set(true);
            Ok(1)
        }),
        Box::pin(async {
            evloop::sleep(secs(1)).await;
            panic!("child exploded");
        }),
        Box::pin(async { Err(Error::Timeout) }),
    ];
    let awaiter = lp.create_task(evloop::gather(children));
    lp.run_until_idle().unwrap();
    match awaiter.result() {
        Ok(Err(Error::Timeout)) => {}
        other => panic!("expected the third child's Err(Timeout), got {other:?}"),
    }
    assert_eq!(lp.stats().tasks, 2, "the sleeping and the panicking child run on");
    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().tasks, 1, "the panicking child finished; the sleeper runs on");
    assert_eq!(drops.get(), 0, "nobody cancelled the sleeping sibling");
    lp.advance_time(secs(3600));
    lp.run_until_idle().unwrap();
    assert!(sibling_done.get(), "the sibling finished its work");
    assert_eq!(drops.get(), 1);
    let stats = lp.stats();
    assert_eq!((stats.tasks, stats.timers), (0, 0));
    drop(awaiter);
    lp.run_until_idle().unwrap();
    assert!(seen.borrow().is_empty(), "the late failure is not 'never retrieved': {:?}", seen.borrow());
}

#[test]
fn gather_of_a_panicking_child_fails_with_panicked_instead_of_panicking() {
    let lp = manual_loop();
    let children: Vec<BoxFut<Result<u32, Error>>> = vec![
        Box::pin(async {
            evloop::yield_now().await;
            panic!("child exploded")
        }),
        Box::pin(async { Ok(2) }),
    ];
    let out = lp.run_until_complete(evloop::gather(children)).unwrap();
    assert!(matches!(&out, Err(Error::Panicked(m)) if m.contains("child exploded")), "{out:?}");
}

#[test]
fn gather_fails_with_cancelled_when_someone_else_cancels_a_child_task() {
    let lp = manual_loop();
    let children: Vec<evloop::Task<u32>> = (0..3u32)
        .map(|i| {
            lp.create_task(async move {
                evloop::sleep(secs(10)).await;
                i
            })
        })
        .collect();
    let awaiter = lp.create_task(evloop::gather(children.clone()));
    lp.run_until_idle().unwrap();
    assert!(!awaiter.done());
    assert!(children[1].cancel());
    lp.run_until_idle().unwrap();
    assert!(matches!(awaiter.result(), Ok(Err(Error::Cancelled))), "{:?}", awaiter.result());
    assert!(!children[0].done() && !children[2].done(), "the other children run on");
    lp.advance_time(secs(10));
    lp.run_until_idle().unwrap();
    // Finished, not cancelled (their values went to gather's by-value
    // awaiters, which drop them).
    assert!(children[0].done() && !children[0].cancelled());
    assert!(children[2].done() && !children[2].cancelled());
}

#[test]
fn dropping_a_pending_gather_cancels_its_children() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let children: Vec<BoxFut<Result<(), Error>>> = (0..3)
        .map(|_| {
            let token = DropCounter::token(&drops);
            Box::pin(async move {
                let _token = token;
                evloop::sleep(secs(3600)).await;
                Ok(())
            }) as BoxFut<Result<(), Error>>
        })
        .collect();
    let task = lp.create_task(evloop::gather(children));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().tasks, 4);
    task.cancel();
    lp.run_until_idle().unwrap();
    assert_eq!(drops.get(), 3);
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn dropping_a_pending_gather_results_cancels_every_child() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let children: Vec<BoxFut<Result<(), Error>>> = (0..3)
        .map(|_| {
            let token = DropCounter::token(&drops);
            Box::pin(async move {
                let _token = token;
                evloop::sleep(secs(3600)).await;
                Ok(())
            }) as BoxFut<Result<(), Error>>
        })
        .collect();
    let task = lp.create_task(evloop::gather_results(children));
    lp.run_until_idle().unwrap();
    task.cancel();
    lp.run_until_idle().unwrap();
    assert_eq!(drops.get(), 3, "not only the child being awaited");
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn gather_results_returns_every_outcome_in_order() {
    let lp = manual_loop();
    let children: Vec<BoxFut<Result<&'static str, Error>>> = vec![
        Box::pin(async {
            evloop::sleep(secs(2)).await;
            Ok("slow")
        }),
        Box::pin(async { panic!("second failed") }),
        Box::pin(async {
            evloop::yield_now().await;
            Ok("fast")
        }),
        Box::pin(async { Err(Error::Timeout) }),
    ];
    let task = lp.create_task(evloop::gather_results(children));
    lp.run_until_idle().unwrap();
    assert!(!task.done(), "waits for every child, failures included");
    lp.advance_time(secs(2));
    lp.run_until_idle().unwrap();
    let out = lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(out.len(), 4);
    assert!(matches!(out[0], Ok("slow")));
    assert!(matches!(&out[1], Err(Error::Panicked(m)) if m == "second failed"));
    assert!(matches!(out[2], Ok("fast")));
    assert!(matches!(out[3], Err(Error::Timeout)));
}

#[test]
fn wait_for_timeout_cancels_a_task_passed_by_value() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let inner = lp.create_task(async move {
        let _token = token;
        evloop::sleep(secs(3600)).await;
        "inner"
    });
    let outer = lp.create_task(evloop::wait_for(inner.clone(), secs(10)));
    lp.run_until_idle().unwrap();
    lp.advance_time(secs(9));
    lp.run_until_idle().unwrap();
    assert!(!outer.done(), "no timeout before the deadline");
    assert!(!inner.done());

    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();
    assert!(matches!(outer.result(), Ok(Err(Error::Timeout))));
    assert!(inner.cancelled(), "the inner task was cancelled");
    assert_eq!(drops.get(), 1);
    let stats = lp.stats();
    assert_eq!((stats.tasks, stats.timers), (0, 0));
}

#[test]
fn wait_for_timeout_cancels_a_future_passed_by_value() {
    let lp = manual_loop();
    let fut = lp.create_future::<u8>();
    let outer = lp.create_task(evloop::wait_for(fut.clone(), secs(1)));
    lp.run_until_idle().unwrap();
    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();
    assert!(matches!(outer.result(), Ok(Err(Error::Timeout))));
    assert!(fut.cancelled());
}

#[test]
fn wait_for_timeout_drops_an_async_block() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let outer = lp.create_task(evloop::wait_for(
        async move {
            let _token = token;
            evloop::sleep(secs(3600)).await;
        },
        secs(5),
    ));
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().timers, 2, "the inner sleep and the timeout");
    lp.advance_time(secs(5));
    lp.run_until_idle().unwrap();
    assert!(matches!(outer.result(), Ok(Err(Error::Timeout))));
    assert_eq!(drops.get(), 1);
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn wait_for_completing_in_time_gives_the_value() {
    let lp = manual_loop();
    let outer = lp.create_task(evloop::wait_for(
        async {
            evloop::sleep(secs(1)).await;
            99
        },
        secs(5),
    ));
    lp.run_until_idle().unwrap();
    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();
    assert!(matches!(outer.result(), Ok(Ok(99))));
    assert_eq!(lp.stats().timers, 0, "the timeout's timer was cancelled");

    // Already-complete work wins even with a zero timeout.
    let out = lp.run_until_complete(evloop::wait_for(async { 5 }, Duration::ZERO)).unwrap();
    assert!(matches!(out, Ok(5)));
}

#[test]
fn task_group_first_failure_cancels_the_siblings_and_is_returned() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let children = Rc::new(std::cell::RefCell::new(Vec::new()));
    let c = children.clone();
    let outer = lp.create_task(async move {
        let group = TaskGroup::new();
        let slow = group.spawn(async move {
            let _token = token;
            evloop::sleep(secs(3600)).await;
            Ok(())
        });
        let first = group.spawn(async {
            evloop::sleep(secs(1)).await;
            Err::<(), _>(Error::InvalidState("first failure"))
        });
        let later = group.spawn(async {
            evloop::sleep(secs(2)).await;
            Err::<(), _>(Error::InvalidState("later failure"))
        });
        c.borrow_mut().extend([slow, first, later]);
        group.await
    });
    lp.run_until_idle().unwrap();
    assert!(!outer.done());
    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();

    assert!(matches!(outer.result(), Ok(Err(Error::InvalidState("first failure")))), "{:?}", outer.result());
    let children = children.borrow();
    assert!(children[0].cancelled(), "the slow sibling was cancelled");
    assert!(matches!(children[1].result(), Ok(Err(Error::InvalidState("first failure")))));
    assert!(children[2].cancelled(), "the later failure never happened");
    assert_eq!(drops.get(), 1);
    let stats = lp.stats();
    assert_eq!((stats.tasks, stats.timers), (0, 0));
}

#[test]
fn task_group_where_every_child_succeeds_is_ok() {
    let lp = manual_loop();
    let finished = Recorder::<u64>::new();
    let f = finished.clone();
    let outer = lp.create_task(async move {
        let group = TaskGroup::new();
        let children: Vec<_> = (1..=3u64)
            .map(|i| {
                let f = f.clone();
                group.spawn(async move {
                    evloop::sleep(secs(i)).await;
                    f.push(i);
                    Ok(i)
                })
            })
            .collect();
        let result = group.await;
        (result, children.iter().map(|c| c.result().unwrap().unwrap()).collect::<Vec<_>>())
    });
    lp.run_until_idle().unwrap();
    lp.advance_time(secs(2));
    lp.run_until_idle().unwrap();
    assert!(!outer.done(), "the group waits for every child");
    lp.advance_time(secs(1));
    lp.run_until_idle().unwrap();
    let (result, values) = lp.run_until_complete(outer).unwrap().unwrap();
    assert!(result.is_ok());
    assert_eq!(values, [1, 2, 3]);
    assert_eq!(finished.get(), [1, 2, 3]);
}

#[test]
fn task_group_counts_a_panicking_child_as_failure() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let outer = lp.create_task(async move {
        let group = TaskGroup::new();
        group.spawn(async move {
            let _token = token;
            evloop::sleep(secs(3600)).await;
            Ok(())
        });
        group.spawn(async {
            evloop::yield_now().await;
            if true {
                panic!("child panicked");
            }
            Ok(())
        });
        group.await
    });
    lp.run_until_idle().unwrap();
    assert!(matches!(outer.result(), Ok(Err(Error::Panicked(m))) if m == "child panicked"));
    assert_eq!(drops.get(), 1, "the sibling was cancelled");
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn cancelling_the_task_awaiting_a_group_cancels_the_children() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let outer = lp.create_task(async move {
        let group = TaskGroup::new();
        group.spawn(async move {
            let _token = token;
            evloop::sleep(secs(3600)).await;
            Ok(())
        });
        group.await
    });
    lp.run_until_idle().unwrap();
    outer.cancel();
    lp.run_until_idle().unwrap();
    assert!(outer.cancelled());
    assert_eq!(drops.get(), 1);
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn a_child_spawned_after_the_group_failed_is_cancelled_at_once() {
    let lp = manual_loop();
    let polled = Rc::new(std::cell::Cell::new(false));
    let p = polled.clone();
    let outer = lp.create_task(async move {
        let group = TaskGroup::new();
        group.spawn(async { Err::<(), _>(Error::Timeout) });
        // One pass for the child to fail, one for its done callback.
        evloop::yield_now().await;
        evloop::yield_now().await;
        let late = group.spawn(async move {
            p.set(true);
            Ok(())
        });
        (group.await, late)
    });
    lp.run_until_idle().unwrap();
    let (result, late) = lp.run_until_complete(outer).unwrap().unwrap();
    assert!(matches!(result, Err(Error::Timeout)));
    assert!(late.cancelled());
    assert!(!polled.get(), "the late child never ran");
}

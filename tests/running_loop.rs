//! The thread's running loop: `get_running_loop` while several loops take
//! turns on one thread, nested runs refused, loops dropped while another
//! runs, and task wake-ups that cross from one loop's run to another loop.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, EventLoop, get_running_loop};
use util::{DropCounter, fail_on_callback_errors, manual_loop};

/// Whether `running` (what `get_running_loop` gave) is `lp`: a callback
/// queued through it shows up on `lp`'s ready queue. It stays queued
/// there and runs in a later pass.
fn is_loop(running: &EventLoop, lp: &EventLoop) -> bool {
    let before = lp.stats().ready;
    running.call_soon(|| {});
    lp.stats().ready == before + 1
}

/// Whether the running loop is `lp`.
fn running_is(lp: &EventLoop) -> bool {
    get_running_loop().is_ok_and(|running| is_loop(&running, lp))
}

#[test]
fn the_running_loop_is_seen_in_callbacks_timers_tasks_and_the_main_future() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let seen = Rc::new(Cell::new(0));
    let (a, b, c) = (lp.clone(), lp.clone(), lp.clone());
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    lp.call_soon(move || {
        assert!(running_is(&a));
        s1.set(s1.get() + 1);
    });
    lp.call_later(Duration::from_millis(5), move || {
        assert!(running_is(&b));
        s2.set(s2.get() + 1);
    });
    let task = lp.create_task(async move {
        assert!(running_is(&c));
        evloop::sleep(Duration::from_millis(10)).await;
        assert!(running_is(&c));
        s3.set(s3.get() + 1);
    });
    let main = lp.clone();
    lp.run_until_complete(async move {
        assert!(running_is(&main));
        lp_advance(&main, Duration::from_millis(20));
        task.await.unwrap();
        assert!(running_is(&main));
    })
    .unwrap();
    assert_eq!(seen.get(), 3);
    assert!(matches!(get_running_loop(), Err(Error::NoRunningLoop)));
}

/// Moves the manual clock from inside the run.
fn lp_advance(lp: &EventLoop, d: Duration) {
    lp.advance_time(d);
}

#[test]
fn two_loops_driven_in_turns_each_see_themselves() {
    let a = manual_loop();
    let b = manual_loop();
    let _strict_a = fail_on_callback_errors(&a);
    let _strict_b = fail_on_callback_errors(&b);
    // A timer keeps `b` from being quiet, so its runs take the full pass
    // path; `a`'s runs take the inline path (nothing pending).
    let idle = b.call_later(Duration::from_secs(3600), || {});
    for i in 0..50u32 {
        let (lp, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (me, them) = (lp.clone(), other.clone());
        let got = lp
            .run_until_complete(async move {
                assert!(running_is(&me));
                assert!(!them.is_running());
                i
            })
            .unwrap();
        assert_eq!(got, i);
        assert!(get_running_loop().is_err(), "no loop is running between the runs");
        // Run what `running_is` queued, on the loop it was queued on.
        lp.run_until_idle().unwrap();
    }
    idle.cancel();
    assert_eq!((a.stats().ready, b.stats().ready), (0, 0));
}

#[test]
fn a_run_of_another_loop_inside_a_callback_is_refused_and_schedules_nothing() {
    let a = manual_loop();
    let b = manual_loop();
    let _strict = fail_on_callback_errors(&a);
    let checked = Rc::new(Cell::new(false));
    let (outer, inner, done) = (a.clone(), b.clone(), checked.clone());
    a.call_soon(move || {
        assert!(matches!(inner.run_until_complete(async { 1 }), Err(Error::AlreadyRunning)));
        assert!(matches!(inner.run_until_idle(), Err(Error::AlreadyRunning)));
        assert!(matches!(inner.run_forever(), Err(Error::AlreadyRunning)));
        assert!(matches!(outer.run_until_complete(async { 1 }), Err(Error::AlreadyRunning)));
        assert_eq!(inner.stats().ready, 0, "the refused calls scheduled nothing");
        assert!(!inner.is_running());
        // The refused calls left the running loop in place.
        assert!(running_is(&outer));
        done.set(true);
    });
    a.run_until_idle().unwrap();
    assert!(checked.get());
    assert!(get_running_loop().is_err());
    // `b` runs normally afterwards.
    assert_eq!(b.run_until_complete(async { 2 }).unwrap(), 2);
}

#[test]
fn a_loop_is_freed_when_its_last_handle_goes_after_a_run() {
    let drops = DropCounter::new();
    let a = manual_loop();
    assert_eq!(a.run_until_complete(async { 1 }).unwrap(), 1);
    a.run_until_idle().unwrap();
    // A callback left queued: freed with the loop, not kept by the
    // thread's running-loop slot.
    let token = DropCounter::token(&drops);
    a.call_soon(move || drop(token));
    drop(a);
    assert_eq!(drops.get(), 1);
    assert!(get_running_loop().is_err());
}

#[test]
fn a_loop_dropped_inside_another_loops_callback_is_freed_there() {
    let drops = DropCounter::new();
    let a = manual_loop();
    let b = manual_loop();
    let _strict = fail_on_callback_errors(&b);
    a.run_until_complete(async {}).unwrap();
    let token = DropCounter::token(&drops);
    a.call_soon(move || drop(token));
    let slot = Rc::new(Cell::new(Some(a)));
    let (take, counted, me) = (slot.clone(), drops.clone(), b.clone());
    let checked = Rc::new(Cell::new(false));
    let done = checked.clone();
    b.call_soon(move || {
        drop(take.take());
        assert_eq!(counted.get(), 1, "the other loop went at once, with its callback");
        assert!(running_is(&me), "the running loop is still this one");
        done.set(true);
    });
    b.run_until_idle().unwrap();
    assert!(checked.get());
}

#[test]
fn a_task_woken_while_another_loop_runs_steps_on_its_own_loop() {
    let a = manual_loop();
    let b = manual_loop();
    let _strict_a = fail_on_callback_errors(&a);
    let _strict_b = fail_on_callback_errors(&b);
    let fut = a.create_future::<u32>();
    let stepped = Rc::new(Cell::new(false));
    let (waiting, flag, home) = (fut.clone(), stepped.clone(), a.clone());
    let task = a.create_task(async move {
        let v = waiting.await.unwrap();
        assert!(running_is(&home), "the task steps on its own loop");
        flag.set(true);
        v + 1
    });
    // The task's first step: it now waits on `fut`.
    a.run_until_idle().unwrap();
    assert!(!stepped.get());
    let (setter, seen) = (fut.clone(), stepped.clone());
    b.call_soon(move || {
        // Wakes `a`'s task while `b` is the running loop.
        setter.set_result(41).unwrap();
        assert!(!seen.get(), "the task does not step inside another loop's run");
    });
    b.run_until_idle().unwrap();
    assert!(!stepped.get());
    assert_eq!(b.stats().tasks, 0);
    assert_eq!(a.run_until_complete(task).unwrap().unwrap(), 42);
    assert!(stepped.get());
}

#[test]
fn the_slot_is_released_when_the_main_future_panics() {
    let a = manual_loop();
    let b = manual_loop();
    let out = a.run_until_complete(async {
        panic!("main future fails");
    });
    assert!(matches!(out, Err(Error::Panicked(_))));
    assert!(!a.is_running());
    assert!(get_running_loop().is_err());
    let other = b.clone();
    assert!(b.run_until_complete(async move { running_is(&other) }).unwrap());
    assert!(a.run_until_complete(async { true }).unwrap(), "the panicked loop runs again");
}

#[test]
fn a_loop_handle_taken_inside_the_run_keeps_the_loop_but_not_the_slot() {
    let drops = DropCounter::new();
    let a = manual_loop();
    let kept = a.run_until_complete(async { get_running_loop().unwrap() }).unwrap();
    assert!(!kept.is_running());
    assert!(get_running_loop().is_err());
    let token = DropCounter::token(&drops);
    kept.call_soon(move || drop(token));
    drop(a);
    assert_eq!(drops.get(), 0, "the handle from get_running_loop still holds the loop");
    drop(kept);
    assert_eq!(drops.get(), 1);
}

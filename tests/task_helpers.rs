//! Behaviour of the task helpers: `shield`, `wait`, `as_completed`, the
//! `timeout` scopes, `interval`, `current_task`/`all_tasks` and task names,
//! each checked against the ordering and results asyncio gives.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, EventLoop, ReturnWhen, Task};
use util::{DropCounter, Recorder, manual_loop};

const S: Duration = Duration::from_secs(1);

/// A task that sleeps `secs` of loop time, then returns `value`.
fn after(lp: &EventLoop, secs: u64, value: Result<u32, Error>) -> Task<Result<u32, Error>> {
    lp.create_task(async move {
        evloop::sleep(S * secs as u32).await;
        value
    })
}

/// Runs what is ready (new tasks start their timers), advances the
/// manual clock by `secs` and runs what became due.
fn advance(lp: &EventLoop, secs: u64) {
    lp.run_until_idle().unwrap();
    lp.advance_time(S * secs as u32);
    lp.run_until_idle().unwrap();
}

// ------------------------------------------------------------------ shield

#[test]
fn shield_keeps_the_inner_task_running_when_the_outer_is_cancelled() {
    let lp = manual_loop();
    let inner = after(&lp, 10, Ok(7));
    let i = inner.clone();
    let outer = lp.create_task(async move { evloop::shield(i).await });
    advance(&lp, 1);
    assert!(outer.cancel());
    advance(&lp, 1);
    assert!(outer.cancelled());
    assert!(!inner.done(), "the inner task goes on");
    advance(&lp, 10);
    assert_eq!(inner.result().unwrap().unwrap(), 7, "its result is still there");
}

#[test]
fn shield_gives_the_inner_outcome_and_passes_the_inner_cancellation_out() {
    let lp = manual_loop();
    let failing = after(&lp, 1, Err(Error::Timeout));
    let f = failing.clone();
    let outer = lp.create_task(async move { evloop::shield(f).await });
    advance(&lp, 1);
    assert!(matches!(outer.result().unwrap(), Ok(Err(Error::Timeout))));

    let inner = after(&lp, 10, Ok(1));
    let i = inner.clone();
    let outer = lp.create_task(async move { evloop::shield(i).await });
    advance(&lp, 1);
    inner.cancel();
    advance(&lp, 1);
    assert!(matches!(outer.result().unwrap(), Err(Error::Cancelled)), "the inner's cancellation comes out");
    assert!(!outer.cancelled(), "the outer task itself finished normally");
}

#[test]
fn shield_of_a_plain_future_spawns_it() {
    let lp = manual_loop();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let outer = lp.create_task(async move {
        evloop::shield(async move {
            evloop::sleep(S).await;
            r.set(true);
        })
        .await
    });
    lp.run_until_idle().unwrap();
    outer.cancel();
    advance(&lp, 2);
    assert!(ran.get(), "the shielded future ran to the end after the outer was cancelled");
}

// -------------------------------------------------------------------- wait

#[test]
fn wait_first_exception_returns_at_the_first_failure() {
    let lp = manual_loop();
    let tasks = vec![after(&lp, 1, Ok(1)), after(&lp, 2, Err(Error::Timeout)), after(&lp, 3, Ok(3))];
    let t = tasks.clone();
    let waited = lp.create_task(async move { evloop::wait(t, None, ReturnWhen::FirstException).await });
    advance(&lp, 1);
    assert!(!waited.done(), "a success does not end FirstException");
    advance(&lp, 1);
    let (done, pending) = waited.result().unwrap();
    assert_eq!(done.len(), 2);
    assert!(matches!(done[1].result().unwrap(), Err(Error::Timeout)));
    assert_eq!(pending.len(), 1);
    assert!(!pending[0].done() && !pending[0].cancelled(), "wait cancels nothing");
    advance(&lp, 1);
    assert_eq!(tasks[2].result().unwrap().unwrap(), 3);
}

#[test]
fn wait_first_exception_without_failures_waits_for_all() {
    let lp = manual_loop();
    let tasks = vec![after(&lp, 2, Ok(1)), after(&lp, 1, Ok(2))];
    let waited = lp.create_task(async move { evloop::wait(tasks, None, ReturnWhen::FirstException).await });
    advance(&lp, 1);
    assert!(!waited.done());
    advance(&lp, 1);
    let (done, pending) = waited.result().unwrap();
    assert_eq!((done.len(), pending.len()), (2, 0));
}

#[test]
fn wait_first_completed_and_all_completed() {
    let lp = manual_loop();
    let tasks = vec![after(&lp, 3, Ok(1)), after(&lp, 1, Ok(2)), after(&lp, 2, Ok(3))];
    let t = tasks.clone();
    let first = lp.create_task(async move { evloop::wait(t, None, ReturnWhen::FirstCompleted).await });
    let t = tasks.clone();
    let all = lp.create_task(async move { evloop::wait(t, None, ReturnWhen::AllCompleted).await });
    advance(&lp, 1);
    let (done, pending) = first.result().unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].result().unwrap().unwrap(), 2);
    assert_eq!(pending.len(), 2, "pending keeps input order");
    assert!(!all.done());
    advance(&lp, 2);
    let (done, pending) = all.result().unwrap();
    assert_eq!((done.len(), pending.len()), (3, 0));
}

#[test]
fn wait_timeout_returns_the_split_and_cancels_nothing() {
    let lp = manual_loop();
    let tasks = vec![after(&lp, 1, Ok(1)), after(&lp, 5, Ok(2))];
    let t = tasks.clone();
    let waited = lp.create_task(async move { evloop::wait(t, Some(S * 2), ReturnWhen::AllCompleted).await });
    advance(&lp, 1);
    assert!(!waited.done());
    advance(&lp, 1);
    let (done, pending) = waited.result().unwrap();
    assert_eq!((done.len(), pending.len()), (1, 1));
    advance(&lp, 3);
    assert_eq!(tasks[1].result().unwrap().unwrap(), 2, "the pending task ran on");
}

#[test]
fn wait_on_tasks_already_done_returns_at_once() {
    let lp = manual_loop();
    let t = after(&lp, 0, Ok(1));
    lp.run_until_idle().unwrap();
    assert!(t.done());
    let (done, pending) = lp.run_until_complete(evloop::wait([t], None, ReturnWhen::FirstCompleted)).unwrap();
    assert_eq!((done.len(), pending.len()), (1, 0));
}

#[test]
fn a_dropped_wait_leaves_no_callback_behind() {
    let lp = manual_loop();
    let dropped = DropCounter::new();
    let task = after(&lp, 10, Ok(1));
    let (t, token) = (task.clone(), DropCounter::token(&dropped));
    let waiter = lp.create_task(async move {
        let _token = token;
        evloop::wait([t], None, ReturnWhen::AllCompleted).await
    });
    advance(&lp, 1);
    waiter.cancel();
    advance(&lp, 1);
    assert_eq!(dropped.get(), 1);
    drop(waiter);
    // The wait's done callback was removed: finishing the task schedules
    // nothing but its own completion.
    advance(&lp, 10);
    assert_eq!(task.result().unwrap().unwrap(), 1);
    assert_eq!(lp.stats().tasks, 0);
}

// ------------------------------------------------------------ as_completed

#[test]
fn as_completed_gives_outcomes_in_completion_order() {
    let lp = manual_loop();
    let got = Recorder::<Result<u32, String>>::new();
    let g = got.clone();
    let l = lp.clone();
    let consumer = lp.create_task(async move {
        let tasks = [after(&l, 3, Ok(3)), after(&l, 1, Ok(1)), after(&l, 2, Err(Error::Timeout))];
        let mut completed = evloop::as_completed(tasks, None);
        while let Some(outcome) = completed.next().await {
            g.push(outcome.unwrap().map_err(|e| e.to_string()));
        }
    });
    for _ in 0..3 {
        advance(&lp, 1);
    }
    assert!(consumer.done());
    assert_eq!(got.get(), [Ok(1), Err(Error::Timeout.to_string()), Ok(3)]);
}

#[test]
fn as_completed_timeout_gives_timeout_for_each_missing_outcome() {
    let lp = manual_loop();
    let got = Recorder::<String>::new();
    let g = got.clone();
    let l = lp.clone();
    let slow = Rc::new(Cell::new(None));
    let s = slow.clone();
    lp.create_task(async move {
        let tasks = [after(&l, 1, Ok(1)), after(&l, 5, Ok(5)), after(&l, 6, Ok(6))];
        s.set(Some(tasks[1].clone()));
        let mut completed = evloop::as_completed(tasks, Some(S * 2));
        while let Some(outcome) = completed.next().await {
            g.push(match outcome {
                Ok(v) => format!("{}", v.unwrap()),
                Err(e) => format!("{e:?}"),
            });
        }
    });
    advance(&lp, 1);
    assert_eq!(got.get(), ["1"]);
    advance(&lp, 1);
    assert_eq!(got.get(), ["1", "Timeout", "Timeout"]);
    let slow = slow.take().unwrap();
    assert!(!slow.cancelled(), "as_completed cancels nothing");
    advance(&lp, 3);
    assert_eq!(slow.result().unwrap().unwrap(), 5);
}

// ---------------------------------------------------------------- timeout

#[test]
fn timeout_cancels_the_work_and_reports_timeout() {
    let lp = manual_loop();
    let dropped = DropCounter::new();
    let token = DropCounter::token(&dropped);
    let scope = evloop::timeout(S * 5, async move {
        let _token = token;
        evloop::sleep(S * 100).await;
    });
    let handle = scope.handle();
    let task = lp.create_task(scope);
    lp.run_until_idle().unwrap();
    assert_eq!(handle.when(), Some(lp.time() + S * 5), "the deadline is fixed when entered");
    advance(&lp, 4);
    assert!(!task.done());
    advance(&lp, 1);
    assert!(matches!(task.result().unwrap(), Err(Error::Timeout)));
    assert!(handle.expired());
    assert_eq!(dropped.get(), 1, "the work was dropped");
    assert!(matches!(handle.reschedule(None), Err(Error::InvalidState(_))), "too late to move it");
    assert_eq!(lp.stats().timers, 0, "the work's sleep timer went with it");
}

#[test]
fn timeout_reschedule_from_inside_moves_the_deadline() {
    let lp = manual_loop();
    let start = lp.time();
    let task = lp.create_task(evloop::timeout_scope(S * 10, move |t| async move {
        evloop::sleep(S * 5).await;
        assert_eq!(t.when(), Some(start + S * 10));
        // Push it out: the work needs 13 s in all.
        t.reschedule(Some(start + S * 15)).unwrap();
        evloop::sleep(S * 8).await;
        "done"
    }));
    advance(&lp, 5);
    advance(&lp, 5);
    assert!(!task.done(), "the old deadline passed without effect");
    advance(&lp, 3);
    assert_eq!(task.result().unwrap().unwrap(), "done");

    // reschedule(None) removes the deadline; an earlier one fires earlier.
    let start = lp.time();
    let task = lp.create_task(evloop::timeout_scope(S, move |t| async move {
        t.reschedule(None).unwrap();
        evloop::sleep(S * 50).await;
        t.reschedule(Some(start + S * 60)).unwrap();
        evloop::sleep(S * 50).await;
    }));
    advance(&lp, 50);
    assert!(!task.done());
    advance(&lp, 10);
    assert!(matches!(task.result().unwrap(), Err(Error::Timeout)));
}

#[test]
fn nested_timeouts_the_inner_one_fires_and_the_outer_goes_on() {
    let lp = manual_loop();
    let task = lp.create_task(evloop::timeout(S * 10, async {
        let inner = evloop::timeout(S * 2, evloop::sleep(S * 100)).await;
        assert!(matches!(inner, Err(Error::Timeout)));
        evloop::sleep(S).await;
        "outer finished"
    }));
    advance(&lp, 2);
    assert!(!task.done());
    advance(&lp, 1);
    assert_eq!(task.result().unwrap().unwrap(), "outer finished");
}

#[test]
fn nested_timeouts_the_outer_one_fires_and_the_inner_cannot_swallow_it() {
    let lp = manual_loop();
    let inner_saw = Rc::new(Cell::new(false));
    let saw = inner_saw.clone();
    let task = lp.create_task(evloop::timeout(S * 2, async move {
        let inner = evloop::timeout(S * 10, evloop::sleep(S * 100)).await;
        // Never reached: the outer scope dropped this work.
        saw.set(true);
        inner
    }));
    advance(&lp, 2);
    assert!(matches!(task.result().unwrap(), Err(Error::Timeout)), "the outer reports");
    assert!(!inner_saw.get(), "the inner scope never saw a timeout of its own");

    // Both due in one pass: the outer reports, as asyncio's counting of
    // cancellations has it.
    let task = lp.create_task(evloop::timeout(S * 5, async {
        let inner = evloop::timeout(S * 3, evloop::sleep(S * 100)).await;
        Ok::<_, Error>(inner.is_err())
    }));
    advance(&lp, 6);
    assert!(matches!(task.result().unwrap(), Err(Error::Timeout)));
}

#[test]
fn timeout_at_and_none_deadlines() {
    let lp = manual_loop();
    let when = lp.time() + S * 3;
    let task = lp.create_task(evloop::timeout_at(when, evloop::sleep(S * 10)));
    advance(&lp, 3);
    assert!(matches!(task.result().unwrap(), Err(Error::Timeout)));
    let task = lp.create_task(evloop::timeout(None, evloop::sleep(S * 10)));
    advance(&lp, 10);
    assert!(task.result().unwrap().is_ok(), "no deadline");
    let scope = evloop::timeout_scope_at(None, |t| async move { t.when() });
    assert_eq!(lp.run_until_complete(scope).unwrap().unwrap(), None);
}

// --------------------------------------------------------------- interval

#[test]
fn interval_ticks_on_schedule_and_skips_missed_ticks() {
    let lp = manual_loop();
    let start = lp.time();
    let ticks = Recorder::<Duration>::new();
    let busy = Rc::new(Cell::new(false));
    let (t, b) = (ticks.clone(), busy.clone());
    lp.create_task(async move {
        let mut every = evloop::interval(S * 10);
        for _ in 0..5 {
            let due = every.tick().await;
            t.push(due - start);
            if b.get() {
                // Busy for 35 s: three ticks are missed.
                evloop::sleep(S * 35).await;
                b.set(false);
            }
        }
    });
    lp.run_until_idle().unwrap();
    assert_eq!(ticks.get(), [Duration::ZERO], "the first tick is at once");
    advance(&lp, 9);
    assert_eq!(ticks.len(), 1, "never early");
    busy.set(true);
    advance(&lp, 1);
    assert_eq!(ticks.get(), [Duration::ZERO, S * 10]);
    advance(&lp, 35);
    // Back at 45 s: the tick due at 20 s comes at once (one, not three),
    // the next on the original schedule at 50 s.
    assert_eq!(ticks.get(), [Duration::ZERO, S * 10, S * 20]);
    advance(&lp, 4);
    assert_eq!(ticks.len(), 3);
    advance(&lp, 1);
    assert_eq!(ticks.get(), [Duration::ZERO, S * 10, S * 20, S * 50]);
    advance(&lp, 10);
    assert_eq!(ticks.get()[4], S * 60);
}

// ------------------------------------------------- current_task, all_tasks

#[test]
fn current_task_names_and_all_tasks() {
    let lp = manual_loop();
    let seen = Recorder::<Option<String>>::new();
    let s = seen.clone();
    let named = lp.create_task_named("worker", async move {
        s.push(evloop::current_task().map(|t| t.get_name()));
        evloop::sleep(S).await;
        s.push(evloop::current_task().map(|t| t.name()));
    });
    let unnamed = lp.create_task(async { evloop::sleep(S * 2).await });
    assert_eq!(unnamed.get_name(), format!("Task-{}", unnamed.id()));
    lp.run_until_idle().unwrap();
    let mut names: Vec<String> = lp.all_tasks().iter().map(|t| t.name()).collect();
    names.sort();
    let mut expected = vec!["worker".to_owned(), unnamed.name()];
    expected.sort();
    assert_eq!(names, expected);
    lp.call_soon(|| assert!(evloop::current_task().is_none(), "a plain callback runs in no task"));
    advance(&lp, 1);
    assert_eq!(seen.get(), [Some("worker".to_owned()), Some("worker".to_owned())]);
    assert!(named.done());
    assert!(evloop::current_task().is_none(), "outside the loop");

    // Renaming and cancelling through the type-erased handle.
    let all = lp.all_tasks();
    assert_eq!(all.len(), 1);
    all[0].set_name("renamed");
    assert_eq!(unnamed.name(), "renamed");
    assert!(all[0].cancel());
    lp.run_until_idle().unwrap();
    assert!(unnamed.cancelled() && all[0].cancelled() && all[0].done());
    assert!(!all[0].cancel(), "already done");
    assert!(lp.all_tasks().is_empty());
}

#[test]
fn spawn_named_and_all_tasks_on_the_running_loop() {
    let out = evloop::run(async {
        let t = evloop::spawn_named("child", async { evloop::current_task().unwrap().name() });
        let during = evloop::all_tasks().len();
        (t.await.unwrap(), during, evloop::all_tasks().len())
    })
    .unwrap();
    assert_eq!(out, ("child".to_owned(), 1, 0));
}

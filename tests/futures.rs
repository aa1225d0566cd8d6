//! Behaviour of `evloop::Future`: done callbacks, states, awaiting.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use evloop::{Error, EventLoop};
use util::{DropCounter, Recorder, capture_exceptions, manual_loop};

#[test]
fn done_callbacks_are_deferred_and_run_in_registration_order() {
    let lp = manual_loop();
    let fut = lp.create_future::<u32>();
    let log = Recorder::new();
    for name in ["a", "b", "c"] {
        let log = log.clone();
        fut.add_done_callback(move |f| log.push(format!("{name}:{}", f.result().unwrap())));
    }
    assert_eq!(lp.stats().ready, 0, "nothing is scheduled before completion");

    fut.set_result(7).unwrap();
    // Never inline: completion only hands the callbacks to call_soon.
    assert!(log.get().is_empty());
    assert_eq!(lp.stats().ready, 3);

    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), ["a:7", "b:7", "c:7"]);
    assert_eq!(lp.stats().ready, 0);
}

#[test]
fn done_callbacks_run_after_callbacks_already_queued() {
    let lp = manual_loop();
    let fut = lp.create_future::<()>();
    let log = Recorder::new();
    let l = log.clone();
    lp.call_soon(move || l.push("earlier call_soon"));
    let l = log.clone();
    fut.add_done_callback(move |_| l.push("done callback"));
    let l = log.clone();
    let setter = fut.clone();
    lp.call_soon(move || {
        setter.set_result(()).unwrap();
        l.push("set_result returned");
    });
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), ["earlier call_soon", "set_result returned", "done callback"]);
}

#[test]
fn awaiting_tasks_and_done_callbacks_are_told_in_the_order_they_came() {
    // asyncio: a task awaiting a future is one more done callback, so it
    // resumes in its place among the others.
    let lp = manual_loop();
    let fut = lp.create_future::<u32>();
    let log = Recorder::new();
    let l = log.clone();
    fut.add_done_callback(move |f| l.push(format!("first callback:{}", f.result().unwrap())));
    let (f, l) = (fut.clone(), log.clone());
    lp.create_task(async move {
        let value = (&f).await.unwrap();
        l.push(format!("task:{value}"));
    });
    lp.run_until_idle().unwrap();
    let l = log.clone();
    fut.add_done_callback(move |f| l.push(format!("second callback:{}", f.result().unwrap())));
    let setter = fut.clone();
    lp.call_soon(move || setter.set_result(7).unwrap());
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), ["first callback:7", "task:7", "second callback:7"]);
}

#[test]
fn done_callback_added_after_completion_is_scheduled_not_run_inline() {
    let lp = manual_loop();
    let fut = lp.create_future::<&'static str>();
    fut.set_result("x").unwrap();
    lp.run_until_idle().unwrap();

    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    fut.add_done_callback(move |f| {
        assert_eq!(f.result().unwrap(), "x");
        r.set(true);
    });
    assert!(!ran.get(), "a callback on a done future must not run inline");
    assert_eq!(lp.stats().ready, 1);
    lp.run_until_idle().unwrap();
    assert!(ran.get());
}

#[test]
fn done_callback_added_from_a_done_callback_runs_in_a_later_pass() {
    let lp = manual_loop();
    let fut = lp.create_future::<()>();
    let log = Recorder::new();
    let l = log.clone();
    fut.add_done_callback(move |f| {
        let l2 = l.clone();
        f.add_done_callback(move |_| l2.push("nested"));
        l.push("first");
    });
    let l = log.clone();
    fut.add_done_callback(move |_| l.push("second"));
    fut.set_result(()).unwrap();
    lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(log.get(), ["first", "second"]);
    lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(log.get(), ["first", "second", "nested"]);
}

#[test]
fn remove_done_callback_before_completion() {
    let lp = manual_loop();
    let fut = lp.create_future::<()>();
    let log = Recorder::new();
    let drops = DropCounter::new();
    let ids: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let log = log.clone();
            let token = DropCounter::token(&drops);
            fut.add_done_callback(move |_| {
                let _token = token;
                log.push(name);
            })
        })
        .collect();
    assert!(fut.remove_done_callback(ids[1]));
    assert_eq!(drops.get(), 1, "the removed callback is dropped");
    assert!(!fut.remove_done_callback(ids[1]), "removing twice finds nothing");

    fut.set_result(()).unwrap();
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), ["a", "c"]);
    assert_eq!(drops.get(), 3);
    assert!(!fut.remove_done_callback(ids[0]), "a callback that ran is gone");
}

#[test]
fn remove_done_callback_from_inside_another_done_callback_is_too_late() {
    // asyncio hands every callback to call_soon when the future completes,
    // so removing a sibling from inside a done callback finds nothing and
    // the sibling still runs.
    let lp = manual_loop();
    let fut = lp.create_future::<()>();
    let log = Recorder::new();
    let second_id = Rc::new(Cell::new(None));
    let removed = Rc::new(Cell::new(None));
    {
        let log = log.clone();
        let second_id = second_id.clone();
        let removed = removed.clone();
        fut.add_done_callback(move |f| {
            log.push("first");
            removed.set(Some(f.remove_done_callback(second_id.get().unwrap())));
        });
    }
    let l = log.clone();
    second_id.set(Some(fut.add_done_callback(move |_| l.push("second"))));

    fut.set_result(()).unwrap();
    lp.run_until_idle().unwrap();
    assert_eq!(removed.get(), Some(false));
    assert_eq!(log.get(), ["first", "second"]);
}

#[test]
fn setting_a_done_future_again_is_invalid_state() {
    let lp = manual_loop();
    let drops = DropCounter::new();

    let fut = lp.create_future::<DropCounter>();
    fut.set_result(DropCounter::token(&drops)).unwrap();
    assert!(matches!(fut.set_result(DropCounter::token(&drops)), Err(Error::InvalidState(_))));
    assert_eq!(drops.get(), 1, "the rejected value is dropped");
    assert!(matches!(fut.set_exception(Error::Timeout), Err(Error::InvalidState(_))));
    assert!(!fut.cancel(), "cancel of a done future returns false");
    assert_eq!(fut.exception().unwrap().map(|e| e.to_string()), None, "the first result stays");

    let fut = lp.create_future::<u8>();
    fut.set_exception(Error::Timeout).unwrap();
    assert!(matches!(fut.set_result(1), Err(Error::InvalidState(_))));
    assert!(!fut.cancel());
    assert!(matches!(fut.result(), Err(Error::Timeout)));

    let fut = lp.create_future::<u8>();
    assert!(fut.cancel());
    assert!(!fut.cancel(), "cancelling twice returns false");
    assert!(matches!(fut.set_result(1), Err(Error::InvalidState(_))));
    assert!(matches!(fut.set_exception(Error::Timeout), Err(Error::InvalidState(_))));
    assert!(fut.cancelled());
    assert!(matches!(fut.result(), Err(Error::Cancelled)));
}

#[test]
fn result_and_exception_in_every_state() {
    let lp = manual_loop();

    let pending = lp.create_future::<u32>();
    assert!(!pending.done());
    assert!(!pending.cancelled());
    assert!(matches!(pending.result(), Err(Error::InvalidState(_))));
    assert!(matches!(pending.exception(), Err(Error::InvalidState(_))));

    let ok = lp.create_future::<u32>();
    ok.set_result(5).unwrap();
    assert!(ok.done() && !ok.cancelled());
    assert_eq!(ok.result().unwrap(), 5);
    assert_eq!(ok.result().unwrap(), 5, "result() clones: it can be read again");
    assert!(matches!(ok.exception(), Ok(None)));

    let failed = lp.create_future::<u32>();
    failed.set_exception(Error::Panicked("bad".into())).unwrap();
    assert!(failed.done() && !failed.cancelled());
    assert!(matches!(failed.result(), Err(Error::Panicked(m)) if m == "bad"));
    assert!(matches!(failed.exception(), Ok(Some(Error::Panicked(m))) if m == "bad"));

    let cancelled = lp.create_future::<u32>();
    assert!(cancelled.cancel());
    assert!(cancelled.done() && cancelled.cancelled());
    assert!(matches!(cancelled.result(), Err(Error::Cancelled)));
    assert!(matches!(cancelled.exception(), Err(Error::Cancelled)));
}

#[test]
fn awaiting_a_cancelled_future_gives_cancelled() {
    let lp = manual_loop();
    let fut = lp.create_future::<String>();
    let f = fut.clone();
    let by_value = lp.create_task(async move { f.await });
    let f = fut.clone();
    let by_ref = lp.create_task(async move { (&f).await });
    lp.run_until_idle().unwrap();
    assert!(!by_value.done() && !by_ref.done());

    let canceller = fut.clone();
    lp.call_soon(move || assert!(canceller.cancel()));
    lp.run_until_idle().unwrap();
    assert!(matches!(by_value.result().unwrap(), Err(Error::Cancelled)));
    assert!(matches!(by_ref.result().unwrap(), Err(Error::Cancelled)));
    assert!(!by_value.cancelled(), "the tasks themselves finished normally");
}

#[test]
fn awaiting_a_failed_future_gives_its_exception() {
    let lp = manual_loop();
    let fut = lp.create_future::<u8>();
    let f = fut.clone();
    let task = lp.create_task(async move { f.await });
    fut.set_exception(Error::InvalidState("custom")).unwrap();
    lp.run_until_idle().unwrap();
    assert!(matches!(task.result().unwrap(), Err(Error::InvalidState("custom"))));
}

/// A non-`Clone` value: a socket plus a drop token.
struct Connection {
    stream: UnixStream,
    _token: DropCounter,
}

#[test]
fn non_clone_result_moves_through_await() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let (mut peer, stream) = UnixStream::pair().unwrap();

    let fut = lp.create_future::<Connection>();
    let boxed = lp.create_future::<Box<DropCounter>>();
    let (f1, f2) = (fut.clone(), boxed.clone());
    let task = lp.create_task(async move {
        let mut conn = f1.await.expect("the connection");
        conn.stream.write_all(b"ping").unwrap();
        let token = f2.await.expect("the box");
        drop(token);
        conn
    });
    lp.run_until_idle().unwrap();
    assert!(!task.done());

    let conn = Connection { stream, _token: DropCounter::token(&drops) };
    let setter = fut.clone();
    lp.call_soon(move || setter.set_result(conn).unwrap_or_else(|_| panic!("set once")));
    boxed.set_result(Box::new(DropCounter::token(&drops))).unwrap_or_else(|_| panic!("set once"));
    lp.run_until_idle().unwrap();
    assert!(task.done());
    assert_eq!(drops.get(), 1, "the boxed token was moved out and dropped by the task");

    // The value was moved out: the future no longer has it.
    assert!(matches!(fut.exception(), Ok(None)));
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    // Take the connection out of the task by value too (run_until_complete
    // of the task itself would clone its result: `Connection` is not Clone).
    let conn = lp.run_until_complete(async move { task.await }).unwrap().unwrap();
    assert_eq!(drops.get(), 1);
    drop(conn);
    assert_eq!(drops.get(), 2);
}

#[test]
fn awaiting_by_reference_from_two_tasks_gives_both_the_value() {
    let lp = manual_loop();
    let fut = lp.create_future::<String>();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let f = fut.clone();
            lp.create_task(async move { (&f).await })
        })
        .collect();
    lp.run_until_idle().unwrap();
    assert!(tasks.iter().all(|t| !t.done()));

    let setter = fut.clone();
    lp.call_soon(move || setter.set_result("shared".to_owned()).unwrap());
    lp.run_until_idle().unwrap();
    for task in &tasks {
        assert_eq!(task.result().unwrap().unwrap(), "shared");
    }
    assert_eq!(fut.result().unwrap(), "shared", "by-reference awaiters leave the value in place");
}

#[test]
fn dropping_a_by_value_awaiter_cancels_the_future_but_a_by_ref_one_does_not() {
    let lp = manual_loop();
    let by_value = lp.create_future::<u8>();
    let by_ref = lp.create_future::<u8>();
    let (a, b) = (by_value.clone(), by_ref.clone());
    let t1 = lp.create_task(async move { a.await });
    let t2 = lp.create_task(async move { (&b).await });
    lp.run_until_idle().unwrap();
    t1.cancel();
    t2.cancel();
    lp.run_until_idle().unwrap();
    assert!(t1.cancelled() && t2.cancelled());
    assert!(by_value.cancelled());
    assert!(!by_ref.done());
}

#[test]
fn run_until_complete_of_a_future_returns_its_result_inside_ok() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u32>();
    let setter = fut.clone();
    lp.call_soon(move || setter.set_result(42).unwrap());
    let out: evloop::Result<evloop::Result<u32>> = lp.run_until_complete(fut);
    assert!(matches!(out, Ok(Ok(42))));

    let fut = lp.create_future::<u32>();
    let setter = fut.clone();
    lp.call_soon(move || setter.set_exception(Error::Timeout).unwrap());
    assert!(matches!(lp.run_until_complete(fut), Ok(Err(Error::Timeout))));
    lp.close().unwrap();
}

#[test]
fn an_exception_nobody_retrieved_is_reported_when_the_future_is_dropped() {
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);

    let fut = lp.create_future::<u8>();
    fut.set_exception(Error::InvalidState("lost")).unwrap();
    drop(fut);
    lp.run_until_idle().unwrap();
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].message.contains("never retrieved"), "{}", seen[0].message);
        assert!(matches!(seen[0].error, Some(Error::InvalidState("lost"))));
    }

    // Retrieved: not reported.
    let fut = lp.create_future::<u8>();
    fut.set_exception(Error::InvalidState("seen")).unwrap();
    assert!(fut.exception().unwrap().is_some());
    drop(fut);
    lp.run_until_idle().unwrap();
    assert_eq!(seen.borrow().len(), 1);
}

#[test]
fn completing_a_future_of_a_closed_loop_drops_its_callbacks_unrun() {
    let lp = manual_loop();
    let fut = lp.create_future::<u8>();
    let drops = DropCounter::new();
    let ran = Rc::new(Cell::new(false));
    let (token, r) = (DropCounter::token(&drops), ran.clone());
    fut.add_done_callback(move |_| {
        let _token = token;
        r.set(true);
    });
    lp.close().unwrap();
    fut.set_result(1).unwrap();
    assert_eq!(drops.get(), 1);
    assert!(!ran.get());
    assert_eq!(fut.result().unwrap(), 1);
}

#[test]
fn futures_are_cheap_shared_handles() {
    let lp = manual_loop();
    let fut = lp.create_future::<Vec<u8>>();
    let clone = fut.clone();
    clone.set_result(vec![1, 2]).unwrap();
    assert!(fut.done());
    assert_eq!(fut.result().unwrap(), [1, 2]);
    let debug = format!("{fut:?}");
    assert!(debug.contains("finished"), "{debug}");
}

//! Behaviour of `evloop::Task`: scheduling, cancellation, panics, wakers,
//! names, `run_until_complete` and `evloop::run`.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use evloop::{Error, EventLoop, Task};
use util::{DropCounter, Recorder, Watchdog, capture_exceptions, manual_loop};

const ZERO: Option<Duration> = Some(Duration::ZERO);

#[test]
fn task_steps_interleave_fairly_with_call_soon_callbacks() {
    // Design: the first step is scheduled with call_soon (so it sits between
    // callbacks scheduled before and after create_task), each wake-up pushes
    // the task to the back of the ready queue, and each pass runs only what
    // was ready when it began.
    let lp = manual_loop();
    let log = Recorder::<String>::new();

    lp.call_soon(log.pusher("A".into()));
    let l = log.clone();
    let task = lp.create_task(async move {
        for i in 0..3 {
            l.push(format!("T{i}"));
            evloop::yield_now().await;
        }
        l.push("T3".into());
        "finished"
    });
    let l = log.clone();
    task.add_done_callback(move |t| l.push(format!("T-done:{}", t.result().unwrap())));

    // B reschedules itself three times: B0..B3.
    fn chain(lp: EventLoop, log: Recorder<String>, n: u32) {
        log.push(format!("B{n}"));
        if n < 3 {
            let next = lp.clone();
            lp.call_soon(move || chain(next, log, n + 1));
        }
    }
    let (lp2, l) = (lp.clone(), log.clone());
    lp.call_soon(move || chain(lp2, l, 0));
    assert_eq!(lp.stats().ready, 3, "A, the task's first step, B0");

    let passes: [&[&str]; 5] =
        [&["A", "T0", "B0"], &["T1", "B1"], &["T2", "B2"], &["T3", "B3"], &["T-done:finished"]];
    let mut expected = Vec::new();
    for (i, pass) in passes.iter().enumerate() {
        lp.run_once(ZERO).unwrap();
        expected.extend(pass.iter().map(|s| s.to_string()));
        assert_eq!(log.get(), expected, "after pass {i}");
    }
    assert_eq!(task.result().unwrap(), "finished");
    let stats = lp.stats();
    assert_eq!((stats.ready, stats.tasks), (0, 0));
}

#[test]
fn cancelling_a_task_drops_its_future_and_cancels_what_it_awaited() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let inner = lp.create_future::<u32>();

    let (token, awaited) = (DropCounter::token(&drops), inner.clone());
    let waiting = lp.create_task(async move {
        let _token = token;
        awaited.await
    });
    let token = DropCounter::token(&drops);
    let sleeping = lp.create_task(async move {
        let _token = token;
        evloop::sleep(Duration::from_secs(3600)).await;
    });
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().timers, 1);
    assert_eq!(lp.stats().tasks, 2);
    assert_eq!(drops.get(), 0);

    assert!(waiting.cancel());
    assert!(sleeping.cancel());
    assert!(waiting.cancel(), "a cancel already requested still reports a pending task");
    // The cancellation happens at the task's next step, not inline.
    assert!(!waiting.done() && !sleeping.done());
    assert_eq!(drops.get(), 0);

    lp.run_until_idle().unwrap();
    assert!(waiting.cancelled() && sleeping.cancelled());
    assert_eq!(drops.get(), 2, "both async blocks were dropped");
    assert!(inner.cancelled(), "the future awaited by value was cancelled");
    assert_eq!(lp.stats().timers, 0, "the sleep's timer was cancelled");
    assert_eq!(lp.stats().tasks, 0);
    assert!(!waiting.cancel(), "cancel of a finished task returns false");
    assert!(matches!(waiting.result(), Err(Error::Cancelled)));
    assert!(matches!(waiting.exception(), Err(Error::Cancelled)));
    assert!(matches!(lp.run_until_complete(sleeping), Ok(Err(Error::Cancelled))));
}

#[test]
fn cancelling_the_awaiter_of_a_task_cancels_that_task() {
    let lp = manual_loop();
    let inner = lp.create_task(evloop::sleep(Duration::from_secs(3600)));
    let awaited = inner.clone();
    let outer = lp.create_task(async move { awaited.await });
    lp.run_until_idle().unwrap();
    outer.cancel();
    lp.run_until_idle().unwrap();
    assert!(outer.cancelled());
    assert!(inner.cancelled());
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn a_task_can_cancel_itself_and_ends_cancelled_at_its_next_step() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let log = Recorder::<&'static str>::new();
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::default();

    let (token, l, handle) = (DropCounter::token(&drops), log.clone(), me.clone());
    let task = lp.create_task(async move {
        let _token = token;
        let this = handle.borrow().clone().expect("handle set before the first step");
        assert!(this.cancel());
        assert!(!this.done(), "self-cancellation is not inline");
        l.push("after cancel");
        evloop::yield_now().await;
        l.push("never: resumed after cancel");
    });
    *me.borrow_mut() = Some(task.clone());
    lp.run_until_idle().unwrap();
    assert!(task.cancelled());
    assert_eq!(log.get(), ["after cancel"]);
    assert_eq!(drops.get(), 1);
    me.borrow_mut().take();

    // Cancelled itself and then returned without awaiting: still cancelled.
    let me: Rc<RefCell<Option<Task<u8>>>> = Rc::default();
    let handle = me.clone();
    let task = lp.create_task(async move {
        handle.borrow().clone().unwrap().cancel();
        5
    });
    *me.borrow_mut() = Some(task.clone());
    lp.run_until_idle().unwrap();
    assert!(task.cancelled());
    assert!(matches!(task.result(), Err(Error::Cancelled)));
    me.borrow_mut().take();
}

#[test]
fn cancel_before_the_first_step_never_polls_the_future() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let polled = Rc::new(Cell::new(false));
    let (token, p) = (DropCounter::token(&drops), polled.clone());
    let task = lp.create_task(async move {
        p.set(true);
        drop(token);
    });
    assert!(task.cancel());
    assert_eq!(drops.get(), 0, "dropped at the next step, not inside cancel()");
    lp.run_until_idle().unwrap();
    assert!(!polled.get(), "the async block never ran");
    assert_eq!(drops.get(), 1, "the async block was dropped");
    assert!(task.cancelled());
    assert_eq!(lp.stats().tasks, 0);
}

#[test]
fn a_panic_in_a_task_fails_it_and_the_loop_goes_on() {
    let lp = EventLoop::new().unwrap();
    let out = lp.run_until_complete(async {
        let child = evloop::spawn(async {
            evloop::yield_now().await;
            panic!("task exploded");
        });
        child.await
    });
    assert!(matches!(out, Ok(Err(Error::Panicked(m))) if m == "task exploded"));

    // The panic inside the task was not a panic of the outer task or loop.
    assert!(matches!(lp.run_until_complete(async { 1 + 1 }), Ok(2)));
    let direct = lp.run_until_complete(async { panic!("direct") });
    assert!(matches!(direct, Err(Error::Panicked(m)) if m == "direct"));
    assert!(matches!(lp.run_until_complete(async { 3 }), Ok(3)));
    lp.close().unwrap();
}

#[test]
fn a_panicking_task_nobody_awaits_is_reported_to_the_exception_handler() {
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);
    let task = lp.create_task(async { panic!("nobody listens") });
    task.set_name("lonely");
    let (file, line) = (file!(), line!() - 2);
    drop(task);
    lp.run_until_idle().unwrap();
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(matches!(&seen[0].error, Some(Error::Panicked(m)) if m == "nobody listens"));
        // asyncio's wording for a task, with the task and where it was made.
        assert_eq!(seen[0].message, "Task exception was never retrieved");
        assert_eq!(seen[0].task.as_deref(), Some("lonely"));
        let at = seen[0].location.expect("the spawn location");
        assert_eq!((at.file(), at.line()), (file, line));
    }

    // A failure that was looked at is not reported.
    let task = lp.create_task(async { panic!("looked at") });
    lp.run_until_idle().unwrap();
    assert!(matches!(task.exception(), Ok(Some(Error::Panicked(m))) if m == "looked at"));
    drop(task);
    lp.run_until_idle().unwrap();
    assert_eq!(seen.borrow().len(), 1);
}

/// A std future whose waker is handed to another thread; ready once the
/// flag is set.
struct RemoteWake {
    flag: Arc<AtomicBool>,
    wakers: mpsc::Sender<Waker>,
    sent: bool,
}

impl std::future::Future for RemoteWake {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if !self.sent {
            self.sent = true;
            self.wakers.send(cx.waker().clone()).unwrap();
        }
        Poll::Pending
    }
}

/// The scheduler state of thread `tid` of this process ('R', 'S', ...).
fn thread_state(tid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the parenthesised command name.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn a_wake_from_another_thread_wakes_a_blocked_loop() {
    let _watchdog = Watchdog::new("a_wake_from_another_thread_wakes_a_blocked_loop", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let loop_tid = std::fs::read_link("/proc/thread-self").unwrap();
    let loop_tid = loop_tid.file_name().unwrap().to_string_lossy().into_owned();

    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Waker>();
    let waker_thread = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            let waker = rx.recv_timeout(Duration::from_secs(20)).expect("the task sends its waker");
            // Wait (bounded) until the loop thread sleeps in the poller: its
            // only possible blocking point with nothing ready and no timer.
            let deadline = Instant::now() + Duration::from_secs(20);
            while thread_state(&loop_tid) != Some('S') {
                assert!(Instant::now() < deadline, "the loop thread never blocked");
                std::thread::yield_now();
            }
            flag.store(true, Ordering::SeqCst);
            waker.wake();
        })
    };
    let idle_before = lp.stats().idle_time;
    let out = lp.run_until_complete(RemoteWake { flag, wakers: tx, sent: false });
    assert!(out.is_ok());
    waker_thread.join().unwrap();
    assert!(lp.stats().idle_time > idle_before, "the loop blocked in the poller before the wake");
    lp.close().unwrap();
}

#[test]
fn a_waker_outlives_its_task_and_its_loop() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let stash: Rc<RefCell<Option<Waker>>> = Rc::default();
    let (token, s) = (DropCounter::token(&drops), stash.clone());
    let task = lp.create_task(std::future::poll_fn(move |cx| {
        let _keep = &token;
        *s.borrow_mut() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    lp.run_until_idle().unwrap();
    assert!(task.done());
    assert_eq!(drops.get(), 1, "the finished task's future was freed");
    let waker = stash.borrow_mut().take().unwrap();

    // Waking a finished task on a live loop is a no-op.
    waker.wake_by_ref();
    lp.run_until_idle().unwrap();
    let stats = lp.stats();
    assert_eq!((stats.ready, stats.tasks), (0, 0));

    drop(task);
    lp.close().unwrap();
    drop(lp);
    waker.wake_by_ref();
    let by_value = waker.clone();
    by_value.wake();
    let other = waker.clone();
    std::thread::spawn(move || {
        other.wake_by_ref();
        other.wake();
    })
    .join()
    .unwrap();
    drop(waker);
    assert_eq!(drops.get(), 1);

    // The same with a loop that is dropped without being closed.
    let lp = manual_loop();
    let stash: Rc<RefCell<Option<Waker>>> = Rc::default();
    let s = stash.clone();
    lp.create_task(std::future::poll_fn(move |cx| {
        *s.borrow_mut() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    lp.run_until_idle().unwrap();
    drop(lp);
    let waker = stash.borrow_mut().take().unwrap();
    waker.wake_by_ref();
    std::thread::spawn(move || waker.wake()).join().unwrap();
}

#[test]
fn task_names_default_to_task_n_and_can_be_set() {
    let lp = manual_loop();
    let a = lp.create_task(async {});
    let b = lp.create_task(async {});
    assert_eq!(a.name(), format!("Task-{}", a.id()));
    assert_eq!(b.name(), format!("Task-{}", b.id()));
    assert!(b.id() > a.id(), "ids increase");
    b.set_name("worker");
    assert_eq!(b.name(), "worker");
    assert_eq!(a.name(), format!("Task-{}", a.id()), "renaming one task leaves the others");
    assert!(format!("{b:?}").contains("worker"));
    assert!(a.location().file().ends_with("tasks.rs"), "{}", a.location());
    lp.run_until_idle().unwrap();
    assert_eq!(b.name(), "worker", "the name survives completion");
}

#[test]
#[should_panic(expected = "spawn needs a running event loop")]
fn spawn_outside_a_running_loop_panics() {
    let _ = evloop::spawn(async {});
}

#[test]
fn a_task_sleeping_an_hour_on_the_manual_clock_completes_without_real_waiting() {
    let started = Instant::now();
    let lp = manual_loop();
    let t0 = lp.time();
    let task = lp.create_task(async {
        evloop::sleep(Duration::from_secs(3600)).await;
        evloop::get_running_loop().unwrap().time()
    });
    lp.run_until_idle().unwrap();
    assert!(!task.done());
    lp.advance_time(Duration::from_secs(3599));
    lp.run_until_idle().unwrap();
    assert!(!task.done(), "a sleep never ends early");
    lp.advance_time(Duration::from_secs(1));
    assert!(!task.done(), "advance_time alone runs nothing");
    lp.run_until_idle().unwrap();
    assert!(task.done());
    assert_eq!(task.result().unwrap() - t0, Duration::from_secs(3600));
    assert!(started.elapsed() < Duration::from_secs(60), "no real waiting");
}

#[test]
fn run_until_complete_returns_stopped_before_complete_when_stopped_first() {
    let lp = EventLoop::new().unwrap();
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop());
    let never = lp.create_future::<()>();
    let out = lp.run_until_complete(never.clone());
    assert!(matches!(out, Err(Error::StoppedBeforeComplete)), "{out:?}");
    assert!(!lp.is_running());
    assert_eq!(lp.stats().tasks, 0, "a Future is awaited in place, not wrapped in a task");
    assert!(!never.done(), "stopping leaves the future alone");

    // The loop can still be run: completing the future finishes the work,
    // and running the same future again returns its result.
    let setter = never.clone();
    lp.call_soon(move || setter.set_result(()).unwrap());
    assert!(matches!(lp.run_until_complete(never.clone()), Ok(Ok(()))));
    assert!(matches!(never.result(), Ok(())));
    lp.close().unwrap();
}

#[test]
fn evloop_run_cancels_leftover_tasks_and_closes_the_loop() {
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let (value, lp) = evloop::run(async move {
        evloop::spawn(async move {
            let _token = token;
            std::future::pending::<()>().await;
        });
        let sleeper = evloop::spawn(evloop::sleep(Duration::from_secs(3600)));
        evloop::yield_now().await;
        drop(sleeper);
        (7, evloop::get_running_loop().unwrap())
    })
    .unwrap();
    assert_eq!(value, 7);
    assert_eq!(drops.get(), 1, "the leftover task's future was dropped before run returned");
    assert!(lp.is_closed());
    assert_eq!(lp.stats().tasks, 0);
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn one_hundred_thousand_tasks_complete_and_leave_nothing_behind() {
    const N: usize = 100_000;
    let lp = manual_loop();
    let drops = DropCounter::new();
    let finished = Rc::new(Cell::new(0usize));
    for i in 0..N {
        let (token, finished) = (DropCounter::token(&drops), finished.clone());
        lp.create_task(async move {
            let _token = token;
            if i % 10 == 0 {
                evloop::sleep(Duration::from_millis((i % 7) as u64)).await;
            } else {
                evloop::yield_now().await;
            }
            finished.set(finished.get() + 1);
        });
    }
    assert_eq!(lp.stats().tasks, N);
    lp.run_until_idle().unwrap();
    assert!(lp.stats().timers > 0, "the sleepers wait for the clock");
    lp.advance_time(Duration::from_millis(10));
    lp.run_until_idle().unwrap();
    assert_eq!(finished.get(), N);
    assert_eq!(drops.get(), N, "every future was dropped");
    let stats = lp.stats();
    assert_eq!((stats.tasks, stats.ready, stats.timers), (0, 0, 0));
    lp.close().unwrap();
}

#[test]
fn a_kept_waker_of_a_finished_task_never_wakes_a_later_task() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::task::{Poll, Waker};
    // Finished tasks hand their waker allocation to the next task; one that
    // someone kept must not be handed on, or its wake would reach that task.
    let lp = evloop::EventLoop::new().unwrap();
    let kept: Rc<RefCell<Option<Waker>>> = Rc::default();
    let k = kept.clone();
    lp.run_until_complete(std::future::poll_fn(move |cx| {
        *k.borrow_mut() = Some(cx.waker().clone());
        Poll::Ready(())
    }))
    .unwrap();
    for _ in 0..10 {
        lp.run_until_complete(async {}).unwrap();
    }
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    let waiting = lp.create_task(std::future::poll_fn(move |_| {
        p.set(p.get() + 1);
        Poll::<()>::Pending
    }));
    lp.run_until_idle().unwrap();
    assert_eq!(polls.get(), 1);
    kept.borrow_mut().take().unwrap().wake();
    lp.run_until_idle().unwrap();
    assert_eq!(polls.get(), 1, "the stale waker reached a new task");
    waiting.cancel();
    lp.run_until_idle().unwrap();
}

// ------------------------------------------------------------ issue 10, defect 6

#[test]
fn run_until_complete_of_a_task_leaves_its_result_for_task_result() {
    let lp = manual_loop();
    let task = lp.create_task(async { String::from("kept") });
    assert_eq!(lp.run_until_complete(task.clone()).unwrap().unwrap(), "kept");
    assert_eq!(task.result().unwrap(), "kept", "run_until_complete did not take the result");
    // And again: asyncio returns the result every time.
    assert_eq!(lp.run_until_complete(task.clone()).unwrap().unwrap(), "kept");
}

#[test]
fn run_until_complete_of_a_task_after_a_stop_returns_the_result_the_second_time() {
    let lp = manual_loop();
    let task = lp.create_task(async {
        evloop::sleep(Duration::from_secs(5)).await;
        7
    });
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop());
    let first = lp.run_until_complete(task.clone());
    assert!(matches!(first, Err(Error::StoppedBeforeComplete)), "{first:?}");
    assert_eq!(lp.stats().tasks, 1, "only the task itself: no wrapper was left behind");
    lp.advance_time(Duration::from_secs(5));
    assert_eq!(lp.run_until_complete(task.clone()).unwrap().unwrap(), 7);
    assert_eq!(task.result().unwrap(), 7);
}

#[test]
fn run_until_complete_refused_because_another_loop_runs_schedules_nothing() {
    let outer = manual_loop();
    let inner = manual_loop();
    let polled = Rc::new(Cell::new(false));
    let (i, p) = (inner.clone(), polled.clone());
    let refused = Rc::new(RefCell::new(None));
    let r = refused.clone();
    outer.call_soon(move || {
        let out = i.run_until_complete(async move { p.set(true) });
        *r.borrow_mut() = Some(matches!(out, Err(Error::AlreadyRunning)));
    });
    outer.run_until_idle().unwrap();
    assert_eq!(*refused.borrow(), Some(true));
    for lp in [&outer, &inner] {
        let stats = lp.stats();
        assert_eq!((stats.tasks, stats.ready), (0, 0), "nothing scheduled anywhere");
    }
    inner.run_until_idle().unwrap();
    outer.run_until_idle().unwrap();
    assert!(!polled.get(), "the refused future never ran");

    // A closed loop refuses too, without panicking.
    inner.close().unwrap();
    assert!(matches!(inner.run_until_complete(async {}), Err(Error::Closed)));
    assert!(matches!(evloop::run(async {}), Ok(())));
}

#[test]
fn run_until_complete_returns_one_pass_after_the_task_completes_as_asyncio() {
    // asyncio: the task finishes in pass 1; `_run_until_complete_cb` (a done
    // callback, scheduled with call_soon) stops the loop in pass 2.
    let lp = manual_loop();
    let before = lp.stats().iterations;
    lp.run_until_complete(async { 1 }).unwrap();
    assert_eq!(lp.stats().iterations - before, 2, "an async block");

    let task = lp.create_task(async { 2 });
    let before = lp.stats().iterations;
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(lp.stats().iterations - before, 2, "a task: no wrapper task, no extra pass");
}

#[test]
fn run_until_complete_of_a_task_of_another_loop_is_refused() {
    let (a, b) = (manual_loop(), manual_loop());
    let task = a.create_task(async { 1 });
    assert!(matches!(b.run_until_complete(task.clone()), Err(Error::InvalidState(_))));
    assert_eq!(a.run_until_complete(task).unwrap().unwrap(), 1);
}

// ------------------------------------------------------------ issue 10, defect 7

#[test]
fn set_result_through_a_tasks_future_is_invalid_state_and_the_task_runs_on() {
    let lp = manual_loop();
    let task = lp.create_task(async {
        evloop::yield_now().await;
        "body"
    });
    assert!(matches!(task.as_future().set_result("outside"), Err(Error::InvalidState(_))));
    assert!(matches!(task.as_future().set_exception(Error::Timeout), Err(Error::InvalidState(_))));
    assert!(!task.done(), "the task was not completed from outside");
    lp.run_until_idle().unwrap();
    assert_eq!(task.result().unwrap(), "body", "the task's own result");
}

#[test]
fn cancel_through_a_tasks_future_is_task_cancel() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let task = lp.create_task(async move {
        let _token = token;
        evloop::sleep(Duration::from_secs(3600)).await;
    });
    lp.run_until_idle().unwrap();
    assert!(task.as_future().cancel());
    assert!(!task.done(), "not marked done while the body still exists");
    assert_eq!(drops.get(), 0);
    lp.run_until_idle().unwrap();
    assert!(task.done() && task.cancelled());
    assert_eq!(drops.get(), 1, "the body was dropped at its next step");
    assert!(!task.as_future().cancel(), "already done");
    assert_eq!(lp.stats().timers, 0, "the sleep's timer went with it");
}

// ------------------------------------------------------------ issue 10, defect 3

#[test]
fn get_loop_after_the_loop_is_dropped_panics_with_a_clear_message() {
    let lp = manual_loop();
    let task = lp.create_task(async {});
    let fut = lp.create_future::<u8>();
    assert!(task.get_loop().is_closed() == lp.is_closed());
    drop(lp);
    for get in
        [Box::new(move || drop(task.get_loop())) as Box<dyn FnOnce()>, Box::new(move || drop(fut.get_loop()))]
    {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(get)).unwrap_err();
        let msg = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned());
        assert_eq!(msg.as_deref(), Some("the event loop was dropped"));
    }
}

#[test]
fn a_task_done_callback_does_not_keep_the_task_alive() {
    // Task::add_done_callback used to capture a handle on the task in the
    // task's own callback list: a cycle no drop could break.
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let task = lp.create_task(async move {
        let _token = token;
        evloop::sleep(Duration::from_secs(3600)).await;
    });
    let weak = Rc::downgrade(&Rc::new(()));
    task.add_done_callback(move |_| drop(weak));
    lp.run_until_idle().unwrap();
    drop(task);
    drop(lp);
    assert_eq!(drops.get(), 1, "dropping the loop dropped the task and its future");
}

#[test]
fn futures_and_tasks_do_not_keep_the_loop_alive() {
    let lp = manual_loop();
    let fut = lp.create_future::<u8>();
    let task = lp.create_task(async { evloop::sleep(Duration::from_secs(1)).await });
    lp.run_until_idle().unwrap();
    let probe = Rc::new(());
    let p = probe.clone();
    lp.call_later(Duration::from_secs(10), move || drop(p));
    drop(lp);
    assert_eq!(Rc::strong_count(&probe), 1, "the loop (and its timers) were freed");
    assert!(!task.done(), "dropped with the loop, never finished");
    fut.add_done_callback(|_| unreachable!("a dropped loop runs nothing"));
    assert!(fut.set_result(1).is_ok(), "completing drops the callback unrun");
}

// ------------------------------------------------------------ issue 10, defect 9

#[test]
fn sleep_zero_resumes_on_the_next_pass_like_a_call_soon_chain() {
    let lp = manual_loop();
    let log = Recorder::<String>::new();
    let l = log.clone();
    lp.create_task(async move {
        for i in 0..3 {
            l.push(format!("S{i}"));
            evloop::sleep(Duration::ZERO).await;
        }
        l.push("S3".into());
    });
    fn chain(lp: EventLoop, log: Recorder<String>, n: u32) {
        log.push(format!("C{n}"));
        if n < 3 {
            let next = lp.clone();
            lp.call_soon(move || chain(next, log, n + 1));
        }
    }
    let (lp2, l) = (lp.clone(), log.clone());
    lp.call_soon(move || chain(lp2, l, 0));
    let mut expected = Vec::new();
    for i in 0..4 {
        lp.run_once(ZERO).unwrap();
        expected.extend([format!("S{i}"), format!("C{i}")]);
        assert_eq!(log.get(), expected, "pass {i}: one turn per pass, no timer in between");
    }
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn wait_for_zero_times_out_unless_the_result_is_ready_at_once() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let child = lp.create_task(async move {
        let _token = token;
        evloop::yield_now().await;
        1
    });
    let c = child.clone();
    let out = lp.run_until_complete(async move {
        let timed_out = evloop::wait_for(c, Duration::ZERO).await;
        let ready = evloop::wait_for(async { 2 }, Duration::ZERO).await;
        (timed_out, ready)
    });
    let (timed_out, ready) = out.unwrap();
    assert!(matches!(timed_out, Err(Error::Timeout)), "{timed_out:?}");
    assert!(matches!(ready, Ok(2)));
    lp.run_until_idle().unwrap();
    assert!(child.cancelled(), "the task that was not done was cancelled, as asyncio");
    assert_eq!(drops.get(), 1);
}

// ------------------------------------------------------------ wakers without a pool

#[test]
fn tasks_wake_on_and_off_the_loop_thread_even_with_300_loops_alive() {
    // Task wakers are bits naming a slot of a process-wide table (256
    // slots); loops beyond that fall back to allocated wakers. Both kinds
    // must wake, from the loop thread and from another one.
    util::raise_fd_limit();
    let _watchdog = Watchdog::new("300 loops", Duration::from_secs(60));
    let loops: Vec<EventLoop> = (0..300).map(|_| manual_loop()).collect();
    for lp in &loops {
        // The first task claims the loop's slot, while there is one.
        lp.run_until_complete(async {}).unwrap();
    }
    for lp in loops.iter().step_by(37).chain(loops.last()) {
        let (tx, rx) = mpsc::channel::<Waker>();
        let flag = Arc::new(AtomicBool::new(false));
        let task = lp.create_task(RemoteWake { flag: flag.clone(), wakers: tx, sent: false });
        lp.run_until_idle().unwrap();
        let waker = rx.recv().unwrap();
        assert!(!task.done());
        let f = flag.clone();
        let w = waker.clone();
        std::thread::spawn(move || {
            f.store(true, Ordering::SeqCst);
            w.wake();
        })
        .join()
        .unwrap();
        assert!(matches!(lp.run_until_complete(task.clone()), Ok(Ok(()))), "woken from another thread");

        // run_until_complete's own future (no task) wakes the same ways.
        let (tx, rx) = mpsc::channel::<Waker>();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let waker_thread = std::thread::spawn(move || {
            let waker = rx.recv().unwrap();
            f.store(true, Ordering::SeqCst);
            waker.wake();
        });
        lp.run_until_complete(RemoteWake { flag, wakers: tx, sent: false }).unwrap();
        waker_thread.join().unwrap();
        lp.run_until_complete(async { evloop::yield_now().await }).unwrap();

        let local = lp.create_task(async { evloop::yield_now().await });
        lp.run_until_idle().unwrap();
        assert!(local.done(), "woken on the loop thread");
        waker.wake_by_ref(); // a finished task: a no-op
        lp.run_until_idle().unwrap();
        assert_eq!(lp.stats().tasks, 0);
    }
}

// ------------------------------------------------ run_until_complete without a task

#[test]
fn run_until_complete_on_a_quiet_loop_keeps_asyncios_two_passes() {
    // asyncio: pass 1 runs the wrapper task's step, pass 2 what the step
    // scheduled, then the done callback that stops the loop. evloop does
    // both passes inline when the step leaves nothing behind, and really
    // runs them when it does.
    let lp = manual_loop();
    let log = Recorder::<&str>::new();
    let before = lp.stats();
    let (l, inner) = (log.clone(), lp.clone());
    let out = lp.run_until_complete(async move {
        l.push("step");
        inner.call_soon(l.pusher("callback"));
        inner.call_later(Duration::ZERO, l.pusher("timer"));
        7
    });
    assert_eq!(out.unwrap(), 7);
    assert_eq!(log.get(), ["step", "callback", "timer"], "pass 2 ran before returning");
    let after = lp.stats();
    assert_eq!(after.iterations - before.iterations, 2);
    assert_eq!((after.ready, after.timers, after.tasks), (0, 0, 0));

    // Nothing scheduled: the same two passes, counted, none run.
    let before = lp.stats();
    assert_eq!(lp.run_until_complete(async { 8 }).unwrap(), 8);
    let after = lp.stats();
    assert_eq!(after.iterations - before.iterations, 2);
    assert_eq!(after.callbacks_run - before.callbacks_run, 2, "the step and the stop");
    assert_eq!(after.polls, before.polls);
}

#[test]
fn run_until_complete_runs_queued_callbacks_before_the_first_step() {
    let lp = manual_loop();
    let log = Recorder::<&str>::new();
    lp.call_soon(log.pusher("before"));
    let l = log.clone();
    let out = lp.run_until_complete(async move {
        l.push("step 1");
        evloop::yield_now().await;
        l.push("step 2");
    });
    out.unwrap();
    assert_eq!(log.get(), ["before", "step 1", "step 2"]);

    // Wake-ups queue the next step behind what is already ready.
    let log = Recorder::<String>::new();
    let (l, inner) = (log.clone(), lp.clone());
    lp.run_until_complete(async move {
        for i in 0..3 {
            inner.call_soon(l.pusher(format!("cb{i}")));
            evloop::yield_now().await;
            l.push(format!("step{i}"));
        }
    })
    .unwrap();
    assert_eq!(log.get(), ["cb0", "step0", "cb1", "step1", "cb2", "step2"]);
}

#[test]
fn stop_or_interrupt_in_the_first_step_ends_the_run_after_that_pass() {
    let lp = manual_loop();
    let inner = lp.clone();
    let before = lp.stats().iterations;
    let out = lp.run_until_complete(async move {
        inner.stop();
        "done anyway"
    });
    assert_eq!(out.unwrap(), "done anyway", "done in pass 1: asyncio returns its result");
    assert_eq!(lp.stats().iterations - before, 1);
    assert!(!lp.is_running());

    let inner = lp.clone();
    let out = lp.run_until_complete(async move {
        inner.interrupt();
        evloop::yield_now().await;
    });
    assert!(matches!(out, Err(Error::Interrupted)), "{out:?}");
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().ready, 0);
}

#[test]
fn a_future_stopped_before_complete_is_dropped_and_cancels_what_it_awaited() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let never = lp.create_future::<u32>();
    let (token, awaited) = (DropCounter::token(&drops), never.clone());
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop());
    let out = lp.run_until_complete(async move {
        let _token = token;
        awaited.await
    });
    assert!(matches!(out, Err(Error::StoppedBeforeComplete)), "{out:?}");
    assert_eq!(drops.get(), 1, "the future belonged to the call");
    assert!(never.cancelled(), "dropping a by-value await cancels, as a cancelled task would");
    // A task keeps running instead, as asyncio's wrapper task does.
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop());
    let task = lp.create_task(async { evloop::yield_now().await });
    assert!(matches!(lp.run_until_complete(task.clone()), Err(Error::StoppedBeforeComplete)));
    assert!(matches!(lp.run_until_complete(task), Ok(Ok(()))));
}

#[test]
fn a_stale_entry_of_an_interrupted_run_never_polls_the_next_future_early() {
    // The first run is interrupted while its next step is queued; that
    // queued entry must not stand for the next call's first step, which
    // belongs behind the callback queued before it.
    let lp = manual_loop();
    let inner = lp.clone();
    let out = lp.run_until_complete(async move {
        let l = inner.clone();
        inner.call_soon(move || l.interrupt());
        evloop::yield_now().await; // queued after the interrupting callback
        unreachable!("the run ends first");
    });
    assert!(matches!(out, Err(Error::Interrupted)), "{out:?}");
    assert_eq!(lp.stats().ready, 1, "the first future's next step is still queued");

    let log = Recorder::<&str>::new();
    lp.call_soon(log.pusher("queued first"));
    let l = log.clone();
    lp.run_until_complete(async move { l.push("second future") }).unwrap();
    assert_eq!(log.get(), ["queued first", "second future"]);
    assert_eq!(lp.stats().ready, 0);
}

#[test]
fn the_future_is_dropped_when_it_completes_and_a_panicking_destructor_is_reported() {
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let (d, inner) = (drops.clone(), lp.clone());
    let checked = Rc::new(Cell::new(false));
    let c = checked.clone();
    let out = lp.run_until_complete(async move {
        let _token = token;
        evloop::yield_now().await;
        // Checked one pass later, between completion and the stop.
        inner.call_soon(move || c.set(d.get() == 1));
        1
    });
    assert_eq!(out.unwrap(), 1);
    assert!(checked.get(), "dropped at completion, as a finished task drops its future");

    /// Ready at once; its destructor (run after completion) panics.
    struct ReadyBomb;
    impl std::future::Future for ReadyBomb {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
            Poll::Ready(2)
        }
    }
    impl Drop for ReadyBomb {
        fn drop(&mut self) {
            panic!("destructor panics");
        }
    }
    assert_eq!(lp.run_until_complete(ReadyBomb).unwrap(), 2, "the output survives its future's destructor");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert!(matches!(&seen[0].error, Some(Error::Panicked(m)) if m == "destructor panics"));
}

#[test]
fn a_tasks_future_is_polled_in_place_and_may_borrow_from_itself() {
    // The future lives inline in the task's block: a borrow of its own
    // local held across awaits must see the same place at every step.
    let lp = manual_loop();
    let task = lp.create_task(async {
        let local = [7u64; 4];
        let borrowed = &local;
        let mut places = Vec::new();
        for _ in 0..3 {
            places.push(borrowed.as_ptr() as usize);
            evloop::yield_now().await;
        }
        places.push(local.as_ptr() as usize);
        (places, borrowed.iter().sum::<u64>())
    });
    lp.run_until_idle().unwrap();
    let (places, sum) = task.result().unwrap();
    assert_eq!(sum, 28);
    assert_eq!(places.len(), 4);
    assert!(places.iter().all(|p| *p == places[0]), "the future moved between steps: {places:?}");
}

#[test]
fn a_large_future_runs_inline_and_is_dropped_once() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let task = lp.create_task(async move {
        let _token = token;
        let mut big = [0u8; 4096];
        evloop::yield_now().await;
        big[4095] = 9;
        big.iter().map(|b| *b as u32).sum::<u32>()
    });
    lp.run_until_idle().unwrap();
    assert_eq!(task.result().unwrap(), 9);
    assert_eq!(drops.get(), 1, "the future is dropped when the task completes");
}

/// A task whose future holds its own `Task` handle: an `Rc` cycle through
/// the task's block, which only dropping the future in place breaks.
fn self_owning_task(lp: &EventLoop, drops: &Rc<Cell<usize>>) -> Task<()> {
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let pending = lp.create_future::<()>();
    let (slot, token) = (me.clone(), DropCounter::token(drops));
    let task = lp.create_task(async move {
        let _token = token;
        let _me = slot.borrow_mut().take();
        let _ = pending.await;
    });
    *me.borrow_mut() = Some(task.clone());
    task
}

#[test]
fn close_drops_a_task_future_that_holds_its_own_task() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let task = self_owning_task(&lp, &drops);
    lp.run_until_idle().unwrap();
    assert!(!task.done());
    assert_eq!(drops.get(), 0);
    lp.close().unwrap();
    assert_eq!(drops.get(), 1, "close drops the future in place, breaking the cycle");
    assert!(!task.done(), "an abandoned task is never completed");
}

#[test]
fn dropping_the_loop_drops_a_task_future_that_holds_its_own_task() {
    let drops = DropCounter::new();
    let task = {
        let lp = manual_loop();
        let task = self_owning_task(&lp, &drops);
        lp.run_until_idle().unwrap();
        task
    };
    assert_eq!(drops.get(), 1, "dropping the last loop handle drops every task's future");
    drop(task);
}

#[test]
fn a_cancelled_task_drops_its_future_at_its_next_step_even_before_its_first() {
    let lp = manual_loop();
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let task = lp.create_task(async move {
        let _token = token;
        p.set(true);
    });
    assert!(task.cancel());
    assert_eq!(drops.get(), 0, "dropped at the next step, not inside cancel()");
    lp.run_once(ZERO).unwrap();
    assert_eq!(drops.get(), 1);
    assert!(!polled.get());
    assert!(task.cancelled());
    assert_eq!(lp.stats().ready, 0);
}

#[test]
fn clear_entries_keeps_queued_task_steps() {
    // Task steps sit in the ready queue as inline entries; clearing the
    // embedder's entries must not lose them (the task would never run).
    struct Noop;
    impl evloop::runtime::ForeignEntry for Noop {
        fn run(self) {}
    }
    let lp = manual_loop();
    let task = lp.create_task(async {
        evloop::yield_now().await;
        5
    });
    lp.call_soon_entry(Noop);
    lp.clear_entries();
    lp.run_until_idle().unwrap();
    assert_eq!(task.result().unwrap(), 5);
    // And a step queued by a wake-up, not by create_task.
    let task = lp.create_task(async {
        evloop::yield_now().await;
        6
    });
    lp.run_once(ZERO).unwrap();
    lp.clear_entries();
    lp.run_until_idle().unwrap();
    assert_eq!(task.result().unwrap(), 6);
}

//! Behaviour of `Runner` (asyncio's `asyncio.Runner`) and `evloop::run`.

// `util` is shared with other test files; its `DropCounter::new` returns the
// counter rather than `Self`.
#[allow(clippy::new_ret_no_self)]
mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, EventLoop, Runner};
use util::DropCounter;

#[test]
fn several_runs_share_one_loop_and_its_tasks() {
    let runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    let counter = Rc::new(Cell::new(0));
    let c = counter.clone();
    let background = runner
        .run(async move {
            evloop::spawn(async move {
                loop {
                    evloop::yield_now().await;
                    c.set(c.get() + 1);
                }
            })
        })
        .unwrap();
    let ticks_after_first = counter.get();
    runner.run(async { evloop::yield_now().await }).unwrap();
    assert!(counter.get() > ticks_after_first, "the first run's task goes on in the second");
    assert!(runner.get_loop().unwrap().is_running() || !lp.is_closed());
    assert!(!background.done());
    runner.close().unwrap();
    assert!(background.cancelled(), "close cancels leftover tasks");
    assert!(lp.is_closed());
    assert!(matches!(runner.run(async {}), Err(Error::Closed)));
    assert!(matches!(runner.get_loop(), Err(Error::Closed)));
    runner.close().unwrap();
}

#[test]
fn close_unwinds_leftover_tasks_before_closing() {
    let dropped = DropCounter::new();
    let runner = Runner::new();
    let token = DropCounter::token(&dropped);
    let unwound_on_open_loop = Rc::new(Cell::new(false));
    let seen = unwound_on_open_loop.clone();
    struct OnDrop(Rc<Cell<bool>>, #[allow(dead_code)] util::DropCounter);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            // A destructor that needs the loop still open (asyncio runs
            // the cancelled tasks' `finally` blocks before closing).
            self.0.set(evloop::get_running_loop().is_ok_and(|lp| !lp.is_closed()));
        }
    }
    runner
        .run(async move {
            evloop::spawn(async move {
                let _guard = OnDrop(seen, token);
                evloop::sleep(Duration::from_secs(3600)).await;
            });
            evloop::yield_now().await;
        })
        .unwrap();
    drop(runner);
    assert_eq!(dropped.get(), 1);
    assert!(unwound_on_open_loop.get(), "leftovers unwind inside a pass of the open loop");
}

#[test]
fn the_builder_sets_debug_and_the_loop_factory() {
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let runner = Runner::builder()
        .debug(true)
        .loop_factory(move || {
            m.set(m.get() + 1);
            EventLoop::builder().autojump(Duration::ZERO).build()
        })
        .build();
    assert_eq!(made.get(), 0, "the loop is made on first use");
    let lp = runner.get_loop().unwrap();
    assert!(lp.get_debug());
    let start = lp.time();
    runner.run(evloop::sleep(Duration::from_secs(60))).unwrap();
    assert_eq!(lp.time() - start, Duration::from_secs(60), "the virtual clock jumped");
    runner.get_loop().unwrap();
    assert_eq!(made.get(), 1);
}

#[test]
fn run_from_inside_a_running_loop_is_refused() {
    let outer = Runner::new();
    let inner = Rc::new(Runner::new());
    let i = inner.clone();
    let refused = outer.run(async move { i.run(async { 1 }).map(|_| ()) }).unwrap();
    assert!(matches!(refused, Err(Error::AlreadyRunning)));
    let nested_run = outer.run(async { evloop::run(async { 1 }).map(|_| ()) }).unwrap();
    assert!(matches!(nested_run, Err(Error::AlreadyRunning)));
    assert_eq!(inner.run(async { 2 }).unwrap(), 2, "the inner runner is usable afterwards");
}

#[test]
fn close_from_inside_the_runners_loop_is_refused() {
    let runner = Rc::new(Runner::new());
    let r = runner.clone();
    let refused = runner.run(async move { r.close() }).unwrap();
    assert!(matches!(refused, Err(Error::Running)));
    runner.close().unwrap();
}

#[test]
fn a_runner_that_never_ran_closes_without_making_a_loop() {
    let made = Rc::new(Cell::new(false));
    let m = made.clone();
    let runner = Runner::builder()
        .loop_factory(move || {
            m.set(true);
            EventLoop::new()
        })
        .build();
    runner.close().unwrap();
    assert!(!made.get());
    assert!(matches!(runner.get_loop(), Err(Error::Closed)));
}

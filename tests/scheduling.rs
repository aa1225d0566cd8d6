//! `call_soon` and the ready queue: order, passes, cancellation.

mod util;

use std::cell::Cell;
use std::rc::Rc;

use evloop::{EventLoop, Handle};
use util::{DropCounter, Recorder, fail_on_callback_errors, manual_loop, socketpair};

#[test]
fn call_soon_runs_in_fifo_order() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    for i in 0..100 {
        lp.call_soon(rec.pusher(i));
    }
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), (0..100).collect::<Vec<_>>());
}

#[test]
fn all_callbacks_ready_at_the_start_of_a_pass_run_in_that_pass() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    for i in 0..3 {
        lp.call_soon(rec.pusher(i));
    }
    lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), [0, 1, 2]);
    assert_eq!(lp.stats().iterations, 1);
}

/// A callback scheduled while a pass runs waits for the next pass, and a
/// poll happens in between: a level-triggered reader on a readable socket
/// is queued by every poll, so it shows up between the two callbacks, and
/// the poll counter moves.
#[test]
fn callback_scheduled_during_a_pass_runs_next_pass_after_a_poll() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec: Recorder<(&str, u64, u64)> = Recorder::new();
    let (tx, rx) = socketpair();
    use std::io::Write;
    (&tx).write_all(b"x").unwrap();
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.add_reader(std::os::fd::AsRawFd::as_raw_fd(&rx), move || {
            let s = lp2.stats();
            rec.push(("reader", s.iterations, s.polls));
        })
        .unwrap();
    }
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_soon(move || {
            let s = lp2.stats();
            rec.push(("first", s.iterations, s.polls));
            let (rec, lp3) = (rec.clone(), lp2.clone());
            lp2.call_soon(move || {
                let s = lp3.stats();
                rec.push(("second", s.iterations, s.polls));
            });
        });
    }
    lp.run_once(None).unwrap();
    assert_eq!(rec.get(), [("first", 0, 1), ("reader", 0, 1)], "`second` must wait for the next pass");
    lp.run_once(None).unwrap();
    assert_eq!(
        rec.get(),
        [("first", 0, 1), ("reader", 0, 1), ("second", 1, 2), ("reader", 1, 2)],
        "`second` runs in pass 2, after pass 2's poll"
    );
    assert!(lp.remove_reader(std::os::fd::AsRawFd::as_raw_fd(&rx)));
}

/// Without any fd, the same rule holds: one new callback per pass.
#[test]
fn a_chain_of_call_soon_advances_one_link_per_iteration() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let depth = Rc::new(Cell::new(0u32));
    fn link(lp: EventLoop, depth: Rc<Cell<u32>>) {
        depth.set(depth.get() + 1);
        if depth.get() < 5 {
            let lp2 = lp.clone();
            lp.call_soon(move || link(lp2, depth));
        }
    }
    {
        let (lp2, depth) = (lp.clone(), depth.clone());
        lp.call_soon(move || link(lp2, depth));
    }
    for pass in 1..=5 {
        lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
        assert_eq!(depth.get(), pass);
    }
    assert_eq!(lp.stats().ready, 0);
}

#[test]
fn cancelled_before_run_never_runs_and_its_closure_is_freed() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let ran = Rc::new(Cell::new(false));
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let r = ran.clone();
    let h = lp.call_soon(move || {
        let _t = &token;
        r.set(true);
    });
    assert!(!h.cancelled());
    h.cancel();
    assert!(h.cancelled());
    assert_eq!(drops.get(), 1, "cancel frees the closure at once");
    h.cancel(); // idempotent
    lp.run_until_idle().unwrap();
    assert!(!ran.get());
    assert_eq!(lp.stats().callbacks_run, 0, "skipped callbacks are not counted");
}

#[test]
fn cancel_by_an_earlier_callback_in_the_same_pass() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let victim: Rc<Cell<Option<Handle>>> = Rc::new(Cell::new(None));
    {
        let (rec, victim) = (rec.clone(), victim.clone());
        lp.call_soon(move || {
            rec.push("killer");
            victim.take().expect("victim handle set").cancel();
        });
    }
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let r = rec.clone();
    victim.set(Some(lp.call_soon(move || {
        let _t = &token;
        r.push("victim");
    })));
    lp.call_soon(rec.pusher("after"));
    lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["killer", "after"]);
    assert_eq!(drops.get(), 1);
    assert_eq!(lp.stats().callbacks_run, 2);
}

#[test]
fn cancel_after_run_does_nothing() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let h = lp.call_soon(rec.pusher(1));
    lp.run_until_idle().unwrap();
    h.cancel();
    assert!(!h.cancelled(), "a handle that ran is not cancelled");
    assert_eq!(rec.get(), [1]);
}

#[test]
fn a_callback_cannot_cancel_itself_after_starting() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let slot: Rc<Cell<Option<Handle>>> = Rc::new(Cell::new(None));
    let count = Rc::new(Cell::new(0));
    let (s, c) = (slot.clone(), count.clone());
    let h = lp.call_soon(move || {
        c.set(c.get() + 1);
        let me = s.take().unwrap();
        me.cancel();
        assert!(!me.cancelled(), "already running: cancel is a no-op");
    });
    slot.set(Some(h));
    lp.run_until_idle().unwrap();
    assert_eq!(count.get(), 1);
}

#[test]
fn a_callback_runs_once_and_its_closure_is_dropped_after_running() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let h = lp.call_soon(move || {
        let _t = &token;
        c.set(c.get() + 1);
    });
    lp.run_until_idle().unwrap();
    lp.run_until_idle().unwrap();
    assert_eq!(count.get(), 1);
    assert_eq!(drops.get(), 1, "freed after running even though the Handle is alive");
    drop(h);
}

#[test]
fn handle_records_where_it_was_scheduled() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (h, line) = (lp.call_soon(|| {}), line!());
    assert_eq!(h.location().file(), file!());
    assert_eq!(h.location().line(), line);
    assert!(format!("{h:?}").contains(&format!("{}:{line}", file!())));
}

#[test]
fn get_running_loop_outside_and_inside() {
    assert!(matches!(evloop::get_running_loop(), Err(evloop::Error::NoRunningLoop)));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    {
        let rec = rec.clone();
        lp.call_soon(move || {
            let running = evloop::get_running_loop().expect("inside a callback");
            assert!(running.is_running());
            // It is this loop: what we schedule on it runs here.
            running.call_soon(rec.pusher("via get_running_loop"));
        });
    }
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["via get_running_loop"]);
    assert!(matches!(evloop::get_running_loop(), Err(evloop::Error::NoRunningLoop)));
}

#[test]
fn every_public_method_is_callable_from_inside_a_callback() {
    // No RefCell borrow is alive while user code runs: poke at everything.
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (a, b) = socketpair();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&b);
    let done = Rc::new(Cell::new(false));
    let (lp2, d) = (lp.clone(), done.clone());
    lp.call_soon(move || {
        let _ = lp2.stats();
        let _ = lp2.time();
        let h = lp2.call_soon(|| {});
        h.cancel();
        let t = lp2.call_later(std::time::Duration::from_secs(1), || {});
        t.cancel();
        lp2.add_reader(fd, || {}).unwrap();
        lp2.add_writer(fd, || {}).unwrap();
        assert!(lp2.remove_reader(fd));
        assert!(lp2.remove_writer(fd));
        lp2.set_debug(lp2.get_debug());
        lp2.advance_time(std::time::Duration::from_millis(1));
        let _ = lp2.is_running();
        let _ = lp2.is_closed();
        let _ = lp2.remote();
        d.set(true);
    });
    lp.run_until_idle().unwrap();
    assert!(done.get());
    drop(a);
}

/// asyncio keeps one ready deque: `call_soon_threadsafe` on the loop's own
/// thread runs before a `call_soon` made after it (it used to run after).
#[test]
fn call_soon_threadsafe_on_the_loop_thread_keeps_fifo_order_with_call_soon() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let remote = lp.remote();
    let push = |v: u32| {
        let order = order.clone();
        move || order.lock().unwrap().push(v)
    };
    remote.call_soon_threadsafe(push(1)).unwrap();
    lp.call_soon(push(2));
    remote.call_soon_threadsafe(push(3)).unwrap();
    lp.call_soon(push(4));
    // And from inside a callback, while the loop runs.
    let (inner_remote, inner_lp) = (remote.clone(), lp.clone());
    let (p5, p6) = (push(5), push(6));
    lp.call_soon(move || {
        inner_remote.call_soon_threadsafe(p5).unwrap();
        inner_lp.call_soon(p6);
    });
    lp.run_until_idle().unwrap();
    assert_eq!(*order.lock().unwrap(), [1, 2, 3, 4, 5, 6]);
}

/// A closure whose destructor panics is user code like any other: `close()`
/// reports it and still frees everything else.
#[test]
fn close_survives_a_closure_whose_destructor_panics_and_frees_the_rest() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("destructor panics");
        }
    }
    let lp = manual_loop();
    let dropped = DropCounter::new();
    let bomb = PanicsOnDrop;
    lp.call_soon(move || drop(bomb));
    let token = DropCounter::token(&dropped);
    lp.call_soon(move || drop(token));
    let bomb = PanicsOnDrop;
    lp.call_later(std::time::Duration::from_secs(1), move || drop(bomb));
    let token = DropCounter::token(&dropped);
    lp.call_later(std::time::Duration::from_secs(1), move || drop(token));
    lp.close().expect("close returns normally");
    assert_eq!(dropped.get(), 2, "the other closures were freed too");
    assert!(lp.is_closed());
}

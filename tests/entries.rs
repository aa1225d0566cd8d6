//! Foreign entries (`ForeignEntry`): `call_soon_entry`, `call_at_entry`,
//! `cancel_timer`, `visit_entries`, `clear_entries`. Each entry is run or
//! dropped exactly once, with no loop borrow alive.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use evloop::{EventLoop, ForeignEntry, TimerKey};
use util::{DropCounter, Recorder, capture_exceptions, fail_on_callback_errors, manual_loop};

/// Records its id when run; counts its drop.
struct Rec {
    id: u32,
    rec: Recorder<u32>,
    _drop: DropCounter,
}

/// The entry: one word, the embedder's own allocation.
struct RecEntry(Box<Rec>);

impl ForeignEntry for RecEntry {
    fn run(self) {
        self.0.rec.push(self.0.id);
    }
}

fn rec(id: u32, rec: &Recorder<u32>, drops: &Rc<Cell<usize>>) -> RecEntry {
    RecEntry(Box::new(Rec { id, rec: rec.clone(), _drop: DropCounter::token(drops) }))
}

/// Runs a closure (boxed: one word), for entries that call back into the loop.
struct Call(Box<dyn FnOnce()>);

impl ForeignEntry for Call {
    fn run(self) {
        (self.0)();
    }
}

fn call(f: impl FnOnce() + 'static) -> Call {
    Call(Box::new(f))
}

#[test]
fn entries_and_closures_share_one_fifo() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    for i in 0..6 {
        if i % 2 == 0 {
            lp.call_soon_entry(rec(i, &log, &drops));
        } else {
            lp.call_soon(log.pusher(i));
        }
    }
    assert_eq!(lp.stats().ready, 6);
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(drops.get(), 3, "each entry dropped once, after its run");
    assert_eq!(lp.stats().callbacks_run, 6);
}

#[test]
fn an_entry_scheduled_by_an_entry_runs_on_the_next_pass() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let (l, r, d) = (lp.clone(), log.clone(), drops.clone());
    lp.call_soon_entry(call(move || {
        r.push(1);
        l.call_soon_entry(rec(3, &r, &d));
    }));
    lp.call_soon_entry(rec(2, &log, &drops));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(log.get(), [1, 2]);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(log.get(), [1, 2, 3]);
    assert_eq!(drops.get(), 2);
}

#[test]
fn timers_order_by_deadline_then_fifo_across_both_kinds() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let t0 = lp.time();
    lp.call_at_entry(t0 + Duration::from_secs(2), rec(1, &log, &drops));
    lp.call_at(t0 + Duration::from_secs(1), log.pusher(2));
    lp.call_at_entry(t0 + Duration::from_secs(1), rec(3, &log, &drops));
    lp.call_at(t0 + Duration::from_secs(2), log.pusher(4));
    lp.call_at_entry(t0 + Duration::from_secs(1), rec(5, &log, &drops));
    assert_eq!(lp.stats().timers, 5);

    lp.advance_time(Duration::from_millis(999));
    lp.run_until_idle().unwrap();
    assert!(log.is_empty(), "never early");
    lp.advance_time(Duration::from_millis(1));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [2, 3, 5]);
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [2, 3, 5, 1, 4]);
    assert_eq!(drops.get(), 3);
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn cancel_timer_drops_the_entry_at_once_and_keys_go_stale() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let t0 = lp.time();
    let a = lp.call_at_entry(t0 + Duration::from_secs(1), rec(1, &log, &drops));
    let b = lp.call_at_entry(t0 + Duration::from_secs(1), rec(2, &log, &drops));
    assert!(lp.cancel_timer(a));
    assert_eq!(drops.get(), 1, "dropped at cancel, not when the deadline comes");
    assert!(!lp.cancel_timer(a), "cancelling twice does nothing");
    assert_eq!(lp.stats().timers, 1);
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [2]);
    assert_eq!(drops.get(), 2);
    assert!(!lp.cancel_timer(b), "a timer that ran cannot be cancelled");
    // A new timer may reuse the slot; the old key still names nothing.
    let c = lp.call_at_entry(t0 + Duration::from_secs(5), rec(3, &log, &drops));
    assert!(!lp.cancel_timer(b));
    assert!(lp.cancel_timer(c));
    assert_eq!(drops.get(), 3);
}

#[test]
fn cancelling_many_timers_drops_every_entry_at_once() {
    let lp = manual_loop();
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let keys: Vec<TimerKey> = (0..5_000)
        .map(|i| lp.call_at_entry(lp.time() + Duration::from_secs(1), rec(i, &log, &drops)))
        .collect();
    for key in keys {
        assert!(lp.cancel_timer(key));
    }
    assert_eq!(drops.get(), 5_000);
    assert_eq!(lp.stats().timers, 0);
    lp.advance_time(Duration::from_secs(2));
    lp.run_until_idle().unwrap();
    assert!(log.is_empty());
}

/// An entry that says it is cancelled is dropped unrun when its turn comes.
struct Flagged {
    cancelled: Rc<Cell<bool>>,
    ran: Rc<Cell<u32>>,
}

impl ForeignEntry for Flagged {
    fn run(self) {
        self.ran.set(self.ran.get() + 1);
    }
    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

#[test]
fn an_entry_that_reports_cancelled_is_skipped_and_dropped() {
    let lp = manual_loop();
    let (flag, ran) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
    lp.call_soon_entry(Flagged { cancelled: flag.clone(), ran: ran.clone() });
    lp.call_soon_entry(Flagged { cancelled: flag.clone(), ran: ran.clone() });
    flag.set(true);
    lp.run_until_idle().unwrap();
    assert_eq!(ran.get(), 0);
    assert_eq!(Rc::strong_count(&ran), 1, "both dropped");
    assert_eq!(lp.stats().callbacks_run, 0, "skipped entries do not count as run");
}

#[test]
fn close_drops_ready_and_timer_entries_once() {
    let lp = manual_loop();
    let (log, drops) = (Recorder::new(), DropCounter::new());
    lp.call_soon_entry(rec(1, &log, &drops));
    let key = lp.call_at_entry(lp.time() + Duration::from_secs(1), rec(2, &log, &drops));
    lp.call_at_entry(lp.time(), rec(3, &log, &drops));
    lp.close().unwrap();
    assert_eq!(drops.get(), 3);
    assert!(!lp.cancel_timer(key), "the timer is gone with the loop's queues");
    assert!(log.is_empty());
    lp.close().unwrap();
    assert_eq!(drops.get(), 3);
}

#[test]
fn dropping_the_loop_drops_its_entries_once() {
    let (log, drops) = (Recorder::new(), DropCounter::new());
    {
        let lp = manual_loop();
        lp.call_soon_entry(rec(1, &log, &drops));
        lp.call_at_entry(lp.time() + Duration::from_secs(9), rec(2, &log, &drops));
    }
    assert_eq!(drops.get(), 2);
    assert!(log.is_empty());
}

#[test]
#[should_panic(expected = "event loop is closed")]
fn call_soon_entry_on_a_closed_loop_panics() {
    let lp = manual_loop();
    lp.close().unwrap();
    lp.call_soon_entry(call(|| {}));
}

#[test]
fn a_panicking_entry_is_reported_and_the_loop_goes_on() {
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    lp.call_soon_entry(call(|| panic!("entry boom")));
    lp.call_soon_entry(rec(1, &log, &drops));
    lp.call_at_entry(lp.time(), call(|| panic!("timer boom")));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [1]);
    let seen = seen.borrow();
    let messages: Vec<String> =
        seen.iter().map(|ctx| format!("{:?}", ctx.error.as_ref().expect("an error"))).collect();
    assert_eq!(seen.len(), 2, "{messages:?}");
    assert!(messages[0].contains("entry boom"), "{messages:?}");
    assert!(messages[1].contains("timer boom"), "{messages:?}");
}

/// Records where it was made, like a handle does.
struct Located(&'static std::panic::Location<'static>);

impl ForeignEntry for Located {
    fn run(self) {
        panic!("located boom");
    }
    fn location(&self) -> Option<&'static std::panic::Location<'static>> {
        Some(self.0)
    }
}

#[test]
fn a_panic_report_carries_the_entry_location() {
    let lp = manual_loop();
    let seen = capture_exceptions(&lp);
    let here = std::panic::Location::caller();
    lp.call_soon_entry(Located(here));
    lp.run_until_idle().unwrap();
    assert_eq!(seen.borrow()[0].location, Some(here));
}

/// Its destructor calls into the loop: proves no borrow is alive then.
struct CancelsOnDrop {
    lp: EventLoop,
    other: Rc<Cell<Option<TimerKey>>>,
}

impl ForeignEntry for CancelsOnDrop {
    fn run(self) {}
}

impl Drop for CancelsOnDrop {
    fn drop(&mut self) {
        if let Some(key) = self.other.take() {
            assert!(self.lp.cancel_timer(key));
        }
        self.lp.call_soon(|| {});
    }
}

#[test]
fn entry_destructors_may_call_the_loop() {
    let lp = manual_loop();
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let other = Rc::new(Cell::new(None));
    let first = lp.call_at_entry(
        lp.time() + Duration::from_secs(1),
        CancelsOnDrop { lp: lp.clone(), other: other.clone() },
    );
    other.set(Some(lp.call_at_entry(lp.time() + Duration::from_secs(1), rec(1, &log, &drops))));
    // Dropped by cancel_timer: its destructor cancels the second timer.
    assert!(lp.cancel_timer(first));
    assert_eq!(drops.get(), 1);
    // Dropped after running, and by clear_entries: both call the loop.
    lp.call_soon_entry(CancelsOnDrop { lp: lp.clone(), other: Rc::new(Cell::new(None)) });
    lp.run_until_idle().unwrap();
    lp.call_soon_entry(CancelsOnDrop { lp: lp.clone(), other: Rc::new(Cell::new(None)) });
    lp.clear_entries();
    lp.run_until_idle().unwrap();
    assert!(log.is_empty());
}

#[test]
fn visit_entries_sees_every_entry_of_its_type_and_nothing_else() {
    let lp = manual_loop();
    let (log, drops) = (Recorder::new(), DropCounter::new());
    lp.call_soon_entry(rec(1, &log, &drops));
    lp.call_soon(|| {});
    lp.call_soon_entry(call(|| {}));
    let cancelled = lp.call_at_entry(lp.time() + Duration::from_secs(1), rec(2, &log, &drops));
    lp.call_at_entry(lp.time() + Duration::from_secs(2), rec(3, &log, &drops));
    assert!(lp.cancel_timer(cancelled));
    let mut ids = Vec::new();
    lp.visit_entries(|e: &RecEntry| ids.push(e.0.id));
    ids.sort();
    assert_eq!(ids, [1, 3]);
    let mut calls = 0;
    lp.visit_entries(|_: &Call| calls += 1);
    assert_eq!(calls, 1);
}

#[test]
fn visit_entries_from_inside_a_callback() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (l, s) = (lp.clone(), seen.clone());
    lp.call_soon(move || l.visit_entries(|e: &RecEntry| s.borrow_mut().push(e.0.id)));
    lp.call_soon_entry(rec(7, &log, &drops));
    lp.run_until_idle().unwrap();
    assert_eq!(*seen.borrow(), [7], "the entry still queued in this pass is visited");
}

#[test]
fn clear_entries_drops_foreign_entries_and_keeps_the_rest() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    lp.call_soon(log.pusher(1));
    lp.call_soon_entry(rec(2, &log, &drops));
    lp.call_soon(log.pusher(3));
    let key = lp.call_at_entry(lp.time(), rec(4, &log, &drops));
    lp.call_at(lp.time(), log.pusher(5));
    lp.clear_entries();
    assert_eq!(drops.get(), 2);
    assert!(!lp.cancel_timer(key), "a cleared timer's key is spent");
    assert_eq!(lp.stats().timers, 1);
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [1, 3, 5], "closures keep their order");
    assert!(!lp.is_closed());
    lp.call_soon_entry(rec(6, &log, &drops));
    lp.run_until_idle().unwrap();
    assert_eq!(log.get(), [1, 3, 5, 6]);
}

// ------------------------------------------------------------ LoopOwner

#[test]
fn loop_owner_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<evloop::LoopOwner<Rc<Cell<u32>>>>();
}

#[test]
fn loop_owner_on_its_thread_gives_the_loop_and_drops_everything() {
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let state_drops = DropCounter::new();
    let owner = evloop::LoopOwner::with_state(manual_loop(), DropCounter::token(&state_drops));
    assert!(owner.is_owner_thread());
    let lp = owner.get().expect("own thread").clone();
    lp.call_soon_entry(rec(1, &log, &drops));
    lp.call_at_entry(lp.time() + Duration::from_secs(1), rec(2, &log, &drops));
    assert!(owner.state().is_some());
    drop(lp);
    drop(owner);
    assert_eq!((drops.get(), state_drops.get()), (2, 1));
    assert!(log.is_empty());
}

#[test]
fn loop_owner_dropped_on_another_thread_closes_the_remote_and_leaks_the_rest() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (log, drops) = (Recorder::new(), DropCounter::new());
    let state_drops = DropCounter::new();
    let sent_drops = Arc::new(AtomicUsize::new(0));
    let lp = manual_loop();
    lp.call_soon_entry(rec(1, &log, &drops));
    let remote = lp.remote();
    let token = util::SendDropCounter::token(&sent_drops);
    remote.call_soon_threadsafe(move || drop(token)).unwrap();
    let owner = evloop::LoopOwner::with_state(lp, DropCounter::token(&state_drops));
    // `DropCounter` is `!Send`; the owner carries it across anyway.
    let outcome = std::thread::spawn(move || {
        assert!(owner.get().is_none() && owner.state().is_none());
        let remote = owner.remote();
        drop(owner);
        remote.call_soon_threadsafe(|| {}).is_err()
    })
    .join();
    assert_eq!(outcome.ok(), Some(true), "no panic; the remote refuses after the drop");
    assert_eq!(sent_drops.load(Ordering::SeqCst), 1, "the queued Send callback was dropped there");
    assert_eq!((drops.get(), state_drops.get()), (0, 0), "the !Send rest leaked, untouched");
    assert!(remote.call_soon_threadsafe(|| {}).is_err());
}

#[test]
fn debug_mode_times_foreign_entries_too() {
    let lp = EventLoop::builder()
        .manual_clock()
        .debug(true)
        .slow_callback_duration(Duration::ZERO)
        .build()
        .unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (log, drops) = (Recorder::new(), DropCounter::new());
    lp.call_soon_entry(rec(1, &log, &drops));
    lp.call_soon_entry(Located(std::panic::Location::caller()).into_quiet());
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().slow_callbacks, 2, "with and without a location");
    assert_eq!(log.get(), [1]);
}

impl Located {
    /// The same location, but an entry that does not panic.
    fn into_quiet(self) -> Quiet {
        Quiet(self.0)
    }
}

struct Quiet(&'static std::panic::Location<'static>);

impl ForeignEntry for Quiet {
    fn run(self) {}
    fn location(&self) -> Option<&'static std::panic::Location<'static>> {
        Some(self.0)
    }
}

//! Timers: `call_later`, `call_at`, deadline order, FIFO at equal deadlines,
//! never early, cancellation and the heap's memory, the manual clock.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{EventLoop, TimerHandle};
use util::{DropCounter, Lcg, Recorder, Watchdog, fail_on_callback_errors, manual_loop};

// ------------------------------------------------------------ allocation meter

/// Counts the bytes allocated and not yet freed *by the current thread*, so
/// that the compaction test can measure its own memory while other tests of
/// this binary run in parallel on other threads.
struct ThreadMeter;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn meter(delta: isize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + delta));
    if delta > 0 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }
}

/// Allocations (and growing reallocations) made by the current thread.
fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; the meter
// only touches a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for ThreadMeter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            meter(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            meter(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        meter(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            meter(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: ThreadMeter = ThreadMeter;

// ------------------------------------------------------------ order

/// asyncio's "negative delay": deadlines already in the past run on the next
/// pass, in deadline order, ahead of a deadline of "now".
#[test]
fn call_at_in_the_past_runs_next_pass_in_deadline_order() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let t = lp.time();
    let ago = |ms| t.checked_sub(Duration::from_millis(ms)).expect("the monotonic clock is > 3 s old");
    lp.call_at(ago(1000), rec.pusher("-1s"));
    lp.call_at(ago(3000), rec.pusher("-3s"));
    lp.call_at(t, rec.pusher("now"));
    lp.call_later(Duration::ZERO, rec.pusher("later(0)"));
    lp.call_at(ago(2000), rec.pusher("-2s"));
    lp.call_at(ago(1), rec.pusher("-1ms"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["-3s", "-2s", "-1s", "-1ms", "now", "later(0)"]);
}

/// The same on the real clock, with deadlines before the loop was created.
#[test]
fn call_at_in_the_past_on_the_real_clock() {
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let t = lp.time();
    for (ms, name) in [(5, "-5ms"), (50, "-50ms"), (20, "-20ms")] {
        lp.call_at(t.checked_sub(Duration::from_millis(ms)).unwrap(), rec.pusher(name));
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["-50ms", "-20ms", "-5ms"]);
}

#[test]
fn equal_deadlines_run_first_in_first_out() {
    let _dog = Watchdog::new("equal_deadlines_run_first_in_first_out", Duration::from_secs(30));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let when = lp.time() + Duration::from_secs(1);
    let early = lp.time() + Duration::from_millis(500);
    for i in 0..50 {
        lp.call_at(when, rec.pusher(i));
        if i == 25 {
            lp.call_at(early, rec.pusher(-1));
        }
    }
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    let mut expected = vec![-1];
    expected.extend(0..50);
    assert_eq!(rec.get(), expected);
}

#[test]
fn call_soon_callbacks_queued_before_the_pass_run_before_due_timers() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    lp.call_later(Duration::ZERO, rec.pusher("timer"));
    lp.call_soon(rec.pusher("soon"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["soon", "timer"]);
}

#[test]
fn a_zero_delay_timer_scheduled_by_a_callback_waits_for_the_next_pass() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    {
        let (rec, lp2) = (rec.clone(), lp.clone());
        lp.call_later(Duration::ZERO, move || {
            rec.push("outer");
            lp2.call_later(Duration::ZERO, rec.pusher("inner"));
        });
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["outer"]);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["outer", "inner"]);
}

// ------------------------------------------------------------ never early

#[test]
fn timer_never_fires_early_on_the_manual_clock() {
    let _dog = Watchdog::new("timer_never_fires_early_on_the_manual_clock", Duration::from_secs(30));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let t0 = lp.time();
    let fired_at = Rc::new(Cell::new(None));
    let (f, lp2) = (fired_at.clone(), lp.clone());
    let h = lp.call_later(Duration::from_secs(10), move || f.set(Some(lp2.time())));
    assert_eq!(h.when(), t0 + Duration::from_secs(10));
    assert_eq!(lp.stats().timers, 1);

    lp.advance_time(Duration::from_millis(9_999));
    lp.run_until_idle().unwrap();
    assert_eq!(fired_at.get(), None, "at t+9.999s the timer must not have run");
    assert_eq!(lp.stats().timers, 1);

    lp.advance_time(Duration::from_millis(1));
    lp.run_until_idle().unwrap();
    assert_eq!(fired_at.get(), Some(t0 + Duration::from_secs(10)), "runs exactly at its deadline");
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn advance_time_alone_does_not_run_timers() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_later(Duration::from_secs(1), move || r.set(true));
    lp.advance_time(Duration::from_secs(5));
    assert!(!ran.get(), "due timers run on the next pass, not inside advance_time");
    lp.run_until_idle().unwrap();
    assert!(ran.get());
}

/// Real clock: inside the callback, the loop's time has reached the deadline.
#[test]
fn timer_never_fires_early_on_the_real_clock() {
    let _dog = Watchdog::new("timer_never_fires_early_on_the_real_clock", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let fired = Rc::new(Cell::new(0));
    let early = Rc::new(RefCell::new(Vec::new()));
    let n: u64 = 12;
    for i in 0..n {
        let slot: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let (s, lp2, f) = (slot.clone(), lp.clone(), fired.clone());
        // Odd microsecond delays so that deadlines fall between milliseconds.
        let delay = Duration::from_micros(1_337 * (i + 1) + 271);
        let early = early.clone();
        let h = lp.call_later(delay, move || {
            // Count first, assert after the run: a failed assertion in here
            // must not keep the loop from stopping.
            f.set(f.get() + 1);
            if f.get() == n {
                lp2.stop();
            }
            let when = s.get().expect("deadline recorded");
            let (now, wall) = (lp2.time(), Instant::now());
            if now < when || wall < when {
                early.borrow_mut().push(when - now.min(wall));
            }
        });
        slot.set(Some(h.when()));
    }
    lp.run_forever().unwrap();
    assert_eq!(fired.get(), n);
    assert!(early.borrow().is_empty(), "timers ran early by {:?}", early.borrow());
    assert_eq!(lp.stats().callbacks_run, n);
}

// ------------------------------------------------------------ cancellation

#[test]
fn cancelled_timer_never_runs_and_frees_its_closure_now() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let drops = DropCounter::new();
    let token = DropCounter::token(&drops);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp.call_later(Duration::from_secs(1), move || {
        let _t = &token;
        r.set(true);
    });
    assert_eq!(lp.stats().timers, 1);
    h.cancel();
    assert!(h.cancelled());
    assert_eq!(drops.get(), 1);
    assert_eq!(lp.stats().timers, 0, "a cancelled timer is not counted");
    h.cancel();
    assert_eq!(lp.stats().timers, 0, "cancelling twice does not count twice");
    lp.advance_time(Duration::from_secs(2));
    lp.run_until_idle().unwrap();
    assert!(!ran.get());
    assert_eq!(lp.stats().callbacks_run, 0);
}

#[test]
fn a_due_timer_cancelled_by_an_earlier_one_in_the_same_pass_does_not_run() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let victim: Rc<Cell<Option<TimerHandle>>> = Rc::new(Cell::new(None));
    {
        let (rec, v) = (rec.clone(), victim.clone());
        lp.call_later(Duration::from_secs(1), move || {
            rec.push("first");
            v.take().unwrap().cancel();
        });
    }
    victim.set(Some(lp.call_later(Duration::from_secs(2), rec.pusher("victim"))));
    lp.call_later(Duration::from_secs(3), rec.pusher("third"));
    lp.advance_time(Duration::from_secs(3));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(rec.get(), ["first", "third"]);
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn cancelling_a_timer_after_it_ran_does_nothing() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let h = lp.call_later(Duration::ZERO, rec.pusher(1));
    lp.call_later(Duration::from_secs(9), rec.pusher(2));
    lp.run_until_idle().unwrap();
    h.cancel();
    assert!(!h.cancelled());
    assert_eq!(lp.stats().timers, 1, "cancelling a fired timer must not disturb the live count");
}

/// Schedule a lot of timers, cancel them all: the heap is compacted, so the
/// memory they took is given back and the loop has nothing left to do.
#[test]
fn compaction_bounds_the_heap() {
    // A million: about a second in a debug build.
    let n: usize = 1_000_000;
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let drops = DropCounter::new();
    let base = live_bytes();

    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let token = DropCounter::token(&drops);
        let delay = Duration::from_millis(1 + (i as u64 * 7919) % 3_600_000);
        handles.push(lp.call_later(delay, move || {
            let _t = &token;
            unreachable!("cancelled timer ran");
        }));
    }
    assert_eq!(lp.stats().timers, n);
    let peak = live_bytes() - base;
    assert!(peak > (n * 64) as isize, "peak {peak} bytes: the meter is not measuring");

    for h in &handles {
        h.cancel();
    }
    assert_eq!(drops.get(), n, "every closure freed at cancel time");
    assert_eq!(lp.stats().timers, 0);
    drop(handles);

    // What is left is a handful of dead entries below the compaction
    // threshold, not a million of them.
    let left = live_bytes() - base;
    eprintln!("PEAK {peak} LEFT {left}");
    assert!(left < 64 * 1024, "{left} bytes still held after cancelling {n} timers (peak {peak})");

    // And nothing is left to run: the loop is idle at once, even an hour on.
    lp.advance_time(Duration::from_secs(7200));
    let started = Instant::now();
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().iterations, 1);
    assert_eq!(lp.stats().callbacks_run, 0);
    assert_eq!(lp.stats().timers, 0);
    assert!(started.elapsed() < Duration::from_secs(1), "run_until_idle took {:?}", started.elapsed());
    assert!(live_bytes() - base < 64 * 1024);
}

// ------------------------------------------------------------ manual clock

/// 1000 timers at pseudo-random whole-second offsets over an hour (so many
/// share a deadline): they run in deadline order, ties in scheduling order,
/// each at or after its deadline, without any real waiting.
/// What `thousand_timers` returns: the run order, every (deadline in
/// seconds, timer) sorted as they must run, and the latest lateness in ms.
type Thousand = (Recorder<usize>, Vec<(u64, usize)>, Rc<Cell<usize>>);

fn thousand_timers(lp: &EventLoop) -> Thousand {
    let mut lcg = Lcg::new(0x5eed);
    let rec = Recorder::new();
    let late = Rc::new(Cell::new(0usize));
    let t0 = lp.time();
    let mut offsets = Vec::new();
    for i in 0..1000 {
        let secs = lcg.below(3600) + 1;
        offsets.push((secs, i));
        let when = t0 + Duration::from_secs(secs);
        let (rec, lp2, late) = (rec.clone(), lp.clone(), late.clone());
        lp.call_at(when, move || {
            assert!(lp2.time() >= when, "timer {i} ran early");
            // Count how far past the deadline it ran (for the stepping test).
            late.set(late.get().max((lp2.time() - when).as_millis() as usize));
            rec.push(i);
        });
    }
    offsets.sort(); // (deadline, scheduling order)
    let ties = offsets.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(ties > 50, "the test wants shared deadlines, got {ties}");
    (rec, offsets, late)
}

#[test]
fn manual_clock_thousand_timers_in_one_jump() {
    let _dog = Watchdog::new("manual_clock_thousand_timers_in_one_jump", Duration::from_secs(60));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (rec, deadlines, _) = thousand_timers(&lp);
    lp.advance_time(Duration::from_secs(3600));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), deadlines.iter().map(|&(_, i)| i).collect::<Vec<_>>());
    assert_eq!(lp.stats().iterations, 1, "every due timer runs in a single pass");
    assert_eq!(lp.stats().callbacks_run, 1000);
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn manual_clock_thousand_timers_in_steps() {
    let _dog = Watchdog::new("manual_clock_thousand_timers_in_steps", Duration::from_secs(60));
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let (rec, deadlines, late) = thousand_timers(&lp);
    let step = Duration::from_millis(7_300);
    let t0 = lp.time();
    let mut steps = 0;
    while lp.time() - t0 <= Duration::from_secs(3600) {
        lp.advance_time(step);
        lp.run_until_idle().unwrap();
        steps += 1;
        // Everything due so far has run, nothing more.
        let elapsed = lp.time() - t0;
        let due = deadlines.iter().filter(|&&(secs, _)| Duration::from_secs(secs) <= elapsed).count();
        assert_eq!(rec.len(), due, "after {elapsed:?}");
    }
    assert!(steps > 400);
    assert_eq!(rec.get(), deadlines.iter().map(|&(_, i)| i).collect::<Vec<_>>());
    assert!(late.get() < step.as_millis() as usize, "each timer ran on the first pass after its deadline");
    assert_eq!(lp.stats().timers, 0);
}

#[test]
fn manual_clock_time_moves_only_with_advance_time() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let t0 = lp.time();
    lp.call_soon(|| {});
    lp.run_until_idle().unwrap();
    assert_eq!(lp.time(), t0);
    lp.advance_time(Duration::from_secs(3600));
    assert_eq!(lp.time() - t0, Duration::from_secs(3600));
}

#[test]
#[should_panic(expected = "manual_clock")]
fn advance_time_on_a_real_clock_loop_panics() {
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    lp.advance_time(Duration::from_secs(1));
}

// ------------------------------------------------------------ idle

#[test]
fn run_until_idle_returns_while_a_far_timer_is_pending() {
    let _dog = Watchdog::new("run_until_idle_returns_while_a_far_timer_is_pending", Duration::from_secs(30));
    for lp in [EventLoop::new().unwrap(), manual_loop()] {
        let _strict = fail_on_callback_errors(&lp);
        let rec = Recorder::new();
        lp.call_soon(rec.pusher("soon"));
        lp.call_later(Duration::from_secs(3600), rec.pusher("far"));
        lp.run_until_idle().unwrap();
        assert_eq!(rec.get(), ["soon"]);
        assert_eq!(lp.stats().timers, 1);
        assert!(!lp.is_running());
    }
}

#[test]
fn run_until_idle_runs_chains_of_due_work_to_the_end() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let count = Rc::new(Cell::new(0));
    fn again(lp: EventLoop, count: Rc<Cell<u32>>) {
        count.set(count.get() + 1);
        if count.get() < 10 {
            let lp2 = lp.clone();
            lp.call_later(Duration::ZERO, move || again(lp2, count));
        }
    }
    let (lp2, c) = (lp.clone(), count.clone());
    lp.call_soon(move || again(lp2, c));
    lp.run_until_idle().unwrap();
    assert_eq!(count.get(), 10);
}

/// `run_once(Some(t))` with nothing to do waits for `t`, then returns.
#[test]
fn run_once_with_a_timeout_returns_when_nothing_happens() {
    let _dog = Watchdog::new("run_once_with_a_timeout_returns_when_nothing_happens", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let timeout = Duration::from_millis(30);
    let t0 = lp.time();
    lp.run_once(Some(timeout)).unwrap();
    let waited = lp.time() - t0;
    assert!(waited >= timeout, "returned after {waited:?}, before the {timeout:?} timeout");
    assert_eq!(lp.stats().iterations, 1);
    assert_eq!(lp.stats().polls, 1);
    assert!(lp.stats().idle_time > Duration::ZERO);
}

/// A timer due before the `run_once` timeout shortens the wait, and runs.
#[test]
fn run_once_wakes_for_a_timer_due_before_its_timeout() {
    let _dog = Watchdog::new("run_once_wakes_for_a_timer_due_before_its_timeout", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let rec = Recorder::new();
    let h = lp.call_later(Duration::from_millis(5), rec.pusher("timer"));
    // One long timeout: the pass waits until the timer, not for an hour.
    while rec.is_empty() {
        lp.run_once(Some(Duration::from_secs(3600))).unwrap();
    }
    assert!(lp.time() >= h.when());
}

// ------------------------------------------------------------ sleep's timer

/// A waker that counts its wake-ups; its `Arc`'s strong count tells how
/// many clones the loop still holds.
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (std::sync::Arc<Wakes>, std::task::Waker) {
    let wakes = std::sync::Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
    (wakes.clone(), std::task::Waker::from(wakes))
}

fn wakes(w: &Wakes) -> usize {
    w.0.load(std::sync::atomic::Ordering::SeqCst)
}

/// Polls `sleep` once with `waker`, inside a callback of the running loop.
fn poll_in_loop(
    lp: &EventLoop,
    sleep: &Rc<RefCell<Pin<Box<evloop::task::Sleep>>>>,
    waker: &std::task::Waker,
) -> bool {
    let out = Rc::new(Cell::new(false));
    let (s, w, o) = (sleep.clone(), waker.clone(), out.clone());
    lp.call_soon(move || {
        let mut cx = std::task::Context::from_waker(&w);
        o.set(s.borrow_mut().as_mut().poll(&mut cx).is_ready());
    });
    lp.run_until_idle().unwrap();
    out.get()
}

use std::future::Future as _;
use std::pin::Pin;

/// A sleep keeps only the waker of its latest poll (the one before is
/// dropped at once), and its timer wakes that one.
#[test]
fn a_sleep_wakes_the_waker_of_its_latest_poll() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let sleep = Rc::new(RefCell::new(Box::pin(evloop::sleep(Duration::from_secs(5)))));
    let (a, waker_a) = counting_waker();
    let (b, waker_b) = counting_waker();
    assert!(!poll_in_loop(&lp, &sleep, &waker_a));
    assert_eq!(std::sync::Arc::strong_count(&a), 3, "ours, waker_a and the timer's clone");
    assert!(!poll_in_loop(&lp, &sleep, &waker_b));
    assert_eq!(std::sync::Arc::strong_count(&a), 2, "the timer let go of the first waker");
    assert!(!poll_in_loop(&lp, &sleep, &waker_b), "the same waker again: nothing changes");
    assert_eq!(std::sync::Arc::strong_count(&b), 3);
    lp.advance_time(Duration::from_secs(4));
    lp.run_until_idle().unwrap();
    assert_eq!((wakes(&a), wakes(&b)), (0, 0), "never early");
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert_eq!((wakes(&a), wakes(&b)), (0, 1));
    assert_eq!(std::sync::Arc::strong_count(&b), 2, "the fired timer dropped its waker");
    assert!(poll_in_loop(&lp, &sleep, &waker_b), "fired: ready");
    assert!(poll_in_loop(&lp, &sleep, &waker_a), "and stays ready");
}

/// Dropping an armed sleep cancels its timer and drops its waker at
/// once; the timer never wakes anything.
#[test]
fn dropping_an_armed_sleep_drops_its_waker_at_once() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let sleep = Rc::new(RefCell::new(Box::pin(evloop::sleep(Duration::from_secs(5)))));
    let (a, waker_a) = counting_waker();
    assert!(!poll_in_loop(&lp, &sleep, &waker_a));
    assert!(lp.next_timer().is_some());
    drop(Rc::try_unwrap(sleep).expect("the only reference"));
    assert_eq!(std::sync::Arc::strong_count(&a), 2, "ours and waker_a: the timer's clone is gone");
    assert_eq!(lp.next_timer(), None, "the timer was cancelled");
    lp.advance_time(Duration::from_secs(10));
    lp.run_until_idle().unwrap();
    assert_eq!(wakes(&a), 0);
}

/// Arming and cancelling a sleep allocates nothing once the heap has
/// grown: the timer entry is the waker itself (hyper arms one per request
/// for its header-read timeout).
#[test]
fn arming_and_cancelling_a_sleep_allocates_nothing() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let counts = Rc::new(Cell::new((0usize, 0usize)));
    let c = counts.clone();
    lp.call_soon(move || {
        let (_wakes, waker) = counting_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut cycle = |n: usize| {
            for _ in 0..n {
                let mut sleep = std::pin::pin!(evloop::sleep(Duration::from_secs(30)));
                assert!(sleep.as_mut().poll(&mut cx).is_pending());
                assert!(sleep.as_mut().poll(&mut cx).is_pending());
            }
        };
        cycle(1_000); // the heap and the timer slots grow to their working size
        let before = allocations();
        cycle(1_000);
        c.set((before, allocations()));
    });
    lp.run_until_idle().unwrap();
    let (before, after) = counts.get();
    assert_eq!(after - before, 0, "allocations for 1,000 sleeps armed and cancelled");
}

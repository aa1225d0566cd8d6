//! [`Handle`] and [`TimerHandle`]: what `call_soon`, `call_later` and
//! `call_at` return; the [`Runnable`] items and [`ForeignEntry`] values
//! that sit in the ready queue ([`Ready`]); [`TimerKey`], the name of a
//! foreign timer; and the [`EventLoop`] methods that queue, cancel, visit
//! and clear foreign entries.
//!
//! Invariant: a [`Ready`] element is run or dropped exactly once, always
//! with no `RefCell` borrow of the loop alive.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Instant;

use crate::runtime::event_loop::{EventLoop, LoopInner};
use crate::sys::entry::ErasedEntry;

/// Anything the loop can put on its ready queue: a scheduled callback, a
/// timer's callback, an fd callback, or a task step.
///
/// `run` is always called with no `RefCell` borrow of the loop alive.
pub(crate) trait Runnable {
    /// Runs the item once; false if it was skipped (cancelled, or a
    /// one-shot callback that already ran).
    fn run(&self) -> bool;
    /// Whether the item was cancelled; cancelled items are skipped.
    fn cancelled(&self) -> bool {
        false
    }
    /// Cancels the item, dropping its callback; returns false if it was
    /// already cancelled or has already run.
    fn cancel(&self) -> bool {
        false
    }
    /// Where the item was created, for debug reports.
    fn location(&self) -> &'static Location<'static>;
}

/// A value an embedder queues on the loop as it is, without the loop
/// allocating anything around it: at most two words (a pointer to the
/// embedder's own object, say), run at most once.
///
/// This is how the Python binding makes `call_soon` cost one allocation:
/// its `Handle` object *is* the queued entry. Queue one with
/// [`EventLoop::call_soon_entry`](crate::EventLoop::call_soon_entry) or
/// [`EventLoop::call_at_entry`](crate::EventLoop::call_at_entry).
///
/// Every method is called on the loop's thread with no borrow of the loop
/// alive, so each may call any loop method. A panic in `run` is caught and
/// reported to the loop's exception handler, like a panicking callback's.
///
/// Using a type larger than two words, or aligned more strictly than a
/// word, fails to compile.
///
/// # Examples
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use evloop::runtime::ForeignEntry;
///
/// // Two words: a pointer and a number.
/// struct Say(Rc<RefCell<Vec<u32>>>, u32);
/// impl ForeignEntry for Say {
///     fn run(self) {
///         self.0.borrow_mut().push(self.1);
///     }
/// }
///
/// let lp = evloop::EventLoop::new()?;
/// let log = Rc::new(RefCell::new(Vec::new()));
/// lp.call_soon_entry(Say(log.clone(), 1));
/// let l = log.clone();
/// lp.call_soon(move || l.borrow_mut().push(2));
/// lp.call_soon_entry(Say(log.clone(), 3));
/// lp.run_until_idle()?;
/// assert_eq!(*log.borrow(), [1, 2, 3]);
/// # Ok::<(), evloop::Error>(())
/// ```
pub trait ForeignEntry: Sized + 'static {
    /// Runs the entry; it is consumed. Not called if
    /// [`cancelled`](ForeignEntry::cancelled) says true when the entry's
    /// turn comes: the entry is dropped instead.
    fn run(self);

    /// Whether the entry was cancelled by its owner (asyncio's
    /// `Handle.cancelled()`); asked just before running it. Default: never.
    fn cancelled(&self) -> bool {
        false
    }

    /// Where the entry was made, for the loop's panic and slow-callback
    /// reports. Default: unknown.
    fn location(&self) -> Option<&'static Location<'static>> {
        None
    }
}

slotmap::new_key_type! {
    /// Names a timer queued with
    /// [`EventLoop::call_at_entry`](crate::EventLoop::call_at_entry), for
    /// [`EventLoop::cancel_timer`](crate::EventLoop::cancel_timer). A
    /// plain copyable key: it neither keeps the timer alive nor is
    /// confused with a later timer once this one has run or been cancelled.
    pub struct TimerKey;
}

/// One element of the ready queue: a loop-made [`Runnable`] (callback
/// cells, fd callbacks, task steps), or an embedder's [`ForeignEntry`]
/// stored inline.
pub(crate) enum Ready {
    Core(Rc<dyn Runnable>),
    Foreign(ErasedEntry),
}

// The queue element stays three words: the foreign variant's function
// table pointer is never null, which is the tag for `Core`.
const _: () = assert!(size_of::<Ready>() == 3 * size_of::<usize>());

impl Ready {
    /// Wraps a foreign entry.
    #[inline]
    pub(crate) fn foreign<E: ForeignEntry>(entry: E) -> Ready {
        Ready::Foreign(ErasedEntry::new(entry))
    }

    /// Runs the element as the loop's pass does, minus the reporting.
    #[cfg(test)]
    pub(crate) fn run(self) -> bool {
        match self {
            Ready::Core(item) => item.run(),
            Ready::Foreign(entry) if entry.cancelled() => false,
            Ready::Foreign(entry) => {
                entry.run();
                true
            }
        }
    }

    /// Cancels a loop-made element, dropping its callback (`close()`); a
    /// foreign entry is simply dropped by its owner afterwards.
    pub(crate) fn cancel(&self) {
        if let Ready::Core(item) = self {
            item.cancel();
        }
    }

    /// The foreign entry, if it is one of type `E`.
    pub(crate) fn downcast_ref<E: ForeignEntry>(&self) -> Option<&E> {
        match self {
            Ready::Core(_) => None,
            Ready::Foreign(entry) => entry.downcast_ref(),
        }
    }

    pub(crate) fn is_foreign(&self) -> bool {
        matches!(self, Ready::Foreign(_))
    }
}

impl From<Rc<dyn Runnable>> for Ready {
    #[inline]
    fn from(item: Rc<dyn Runnable>) -> Ready {
        Ready::Core(item)
    }
}

// ===== impl EventLoop: foreign entries =====

impl EventLoop {
    /// Queues `entry` to run on the next pass, in one FIFO with
    /// [`call_soon`](EventLoop::call_soon): the entry itself is the queue
    /// element, so nothing is allocated for it (see [`ForeignEntry`]). It
    /// is run once, or dropped unrun if it says it is
    /// [`cancelled`](ForeignEntry::cancelled) when its turn comes, or by
    /// [`close`](EventLoop::close), or when the loop is dropped.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    #[track_caller]
    #[inline]
    pub fn call_soon_entry<E: ForeignEntry>(&self, entry: E) {
        self.check_open();
        self.drain_remote();
        self.inner.push_entry(entry);
    }

    /// Queues `entry` to run when the loop's clock reaches `when`, with the
    /// ordering of [`call_at`](EventLoop::call_at) (deadline order, equal
    /// deadlines FIFO across both kinds of timer, never early). The entry
    /// is stored in the loop's timer table without a separate allocation;
    /// the returned key cancels it.
    ///
    /// The entry is dropped exactly once: after it runs, at
    /// [`cancel_timer`](EventLoop::cancel_timer), at
    /// [`close`](EventLoop::close) or
    /// [`clear_entries`](EventLoop::clear_entries), or with the loop.
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use evloop::ForeignEntry;
    ///
    /// struct Bump(Rc<Cell<u32>>);
    /// impl ForeignEntry for Bump {
    ///     fn run(self) {
    ///         self.0.set(self.0.get() + 1);
    ///     }
    /// }
    ///
    /// let lp = evloop::EventLoop::builder().manual_clock().build()?;
    /// let hits = Rc::new(Cell::new(0));
    /// let soon = lp.call_at_entry(lp.time() + Duration::from_secs(1), Bump(hits.clone()));
    /// let later = lp.call_at_entry(lp.time() + Duration::from_secs(2), Bump(hits.clone()));
    /// assert!(lp.cancel_timer(later));
    /// lp.advance_time(Duration::from_secs(5));
    /// lp.run_until_idle()?;
    /// assert_eq!(hits.get(), 1);
    /// assert!(!lp.cancel_timer(soon), "it already ran");
    /// assert_eq!(Rc::strong_count(&hits), 1, "both entries were dropped");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn call_at_entry<E: ForeignEntry>(&self, when: Instant, entry: E) -> TimerKey {
        self.check_open();
        self.inner.timers.borrow_mut().push_foreign(when, entry)
    }

    /// Cancels a timer queued with [`call_at_entry`](EventLoop::call_at_entry),
    /// dropping its entry now (asyncio's `TimerHandle.cancel`). False if
    /// it already ran or was cancelled (or the loop was closed): the key
    /// never names another timer.
    pub fn cancel_timer(&self, key: TimerKey) -> bool {
        let entry = self.inner.timers.borrow_mut().cancel_foreign(key);
        let Some(entry) = entry else { return false };
        // Dropped after the borrow: the entry's destructor is user code.
        self.drop_reporting(entry);
        true
    }

    /// Calls `f` with every foreign entry of type `E` the loop holds: ready
    /// to run and waiting on a timer. For an embedder's garbage collector
    /// (Python's `tp_traverse`), which must see every object the loop keeps
    /// alive to collect a loop only its own callbacks refer to.
    ///
    /// The loop's queues are borrowed (shared) while `f` runs: `f` must not
    /// schedule or cancel anything on this loop (that panics with a
    /// `RefCell` borrow error). Called while the loop is in the middle of
    /// changing a queue (it cannot be, from user code), that queue is
    /// skipped rather than panicking.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::ForeignEntry;
    ///
    /// struct Tagged(u32);
    /// impl ForeignEntry for Tagged {
    ///     fn run(self) {}
    /// }
    ///
    /// let lp = evloop::EventLoop::new()?;
    /// lp.call_soon_entry(Tagged(1));
    /// lp.call_at_entry(lp.time(), Tagged(2));
    /// lp.call_soon(|| {});
    /// let mut seen = Vec::new();
    /// lp.visit_entries(|t: &Tagged| seen.push(t.0));
    /// seen.sort();
    /// assert_eq!(seen, [1, 2]);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn visit_entries<E: ForeignEntry>(&self, mut f: impl FnMut(&E)) {
        if let Ok(ready) = self.inner.ready.try_borrow() {
            ready.iter().filter_map(Ready::downcast_ref::<E>).for_each(&mut f);
        }
        if let Ok(timers) = self.inner.timers.try_borrow() {
            timers.foreign_entries().filter_map(|e| e.downcast_ref::<E>()).for_each(&mut f);
        }
    }

    /// Drops every foreign entry the loop holds, ready or on a timer,
    /// without running it (an embedder's GC `tp_clear`): like
    /// [`close`](EventLoop::close) for foreign entries, but the loop stays
    /// open. Callbacks made by the loop itself (closures, fd callbacks,
    /// tasks) are left alone. The keys of cleared timers are spent.
    pub fn clear_entries(&self) {
        let inner = &self.inner;
        let queued = std::mem::take(&mut *inner.ready.borrow_mut());
        let (foreign, kept): (VecDeque<Ready>, VecDeque<Ready>) =
            queued.into_iter().partition(Ready::is_foreign);
        // No user code ran since the take: the queue is still empty.
        *inner.ready.borrow_mut() = kept;
        let timers = inner.timers.borrow_mut().take_foreign();
        for entry in foreign {
            self.drop_reporting(entry);
        }
        for entry in timers {
            self.drop_reporting(entry);
        }
    }
}

const CANCELLED: u8 = 1;
/// The callback was consumed by running it.
const DONE: u8 = 2;
/// A timer that is still in the loop's heap (counts towards compaction).
pub(crate) const IN_HEAP: u8 = 4;

/// A one-shot callback: the allocation behind a [`Handle`] or [`TimerHandle`].
pub(crate) struct CallbackCell<F> {
    state: Cell<u8>,
    location: &'static Location<'static>,
    callback: Cell<Option<F>>,
}

impl<F: FnOnce() + 'static> CallbackCell<F> {
    pub(crate) fn new(callback: F, location: &'static Location<'static>, state: u8) -> Rc<Self> {
        Rc::new(CallbackCell { state: Cell::new(state), location, callback: Cell::new(Some(callback)) })
    }
}

/// State bits shared by every callback cell, so the timer heap can ask
/// whether an entry still counts without knowing its closure type.
pub(crate) trait TimerState {
    fn clear_in_heap(&self);
    fn is_in_heap(&self) -> bool;
}

impl<F: FnOnce() + 'static> TimerState for CallbackCell<F> {
    fn clear_in_heap(&self) {
        self.state.set(self.state.get() & !IN_HEAP);
    }
    fn is_in_heap(&self) -> bool {
        self.state.get() & IN_HEAP != 0
    }
}

impl<F: FnOnce() + 'static> Runnable for CallbackCell<F> {
    #[inline]
    fn run(&self) -> bool {
        let state = self.state.get();
        if state & (CANCELLED | DONE) != 0 {
            return false;
        }
        self.state.set(state | DONE);
        if let Some(f) = self.callback.take() {
            f();
        }
        true
    }

    fn cancelled(&self) -> bool {
        self.state.get() & CANCELLED != 0
    }

    fn cancel(&self) -> bool {
        let state = self.state.get();
        if state & (CANCELLED | DONE) != 0 {
            return false;
        }
        self.state.set(state | CANCELLED);
        // Like asyncio, a cancelled handle lets go of its callback at once, so
        // whatever the closure captured is freed now, not when the loop gets
        // around to skipping it. A destructor that panics is reported, not
        // passed on to whoever called cancel() (or close()).
        if let Err(message) = crate::runtime::guard::drop_user(self.callback.take()) {
            let ctx =
                crate::exception::ExceptionContext::new("panic in the destructor of a cancelled callback")
                    .with_error(crate::error::Error::Panicked(message))
                    .with_location(self.location);
            crate::exception::report(log::Level::Error, format_args!("{ctx}"));
        }
        true
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// A callback scheduled with [`EventLoop::call_soon`](crate::EventLoop::call_soon)
/// (asyncio's `Handle`).
///
/// Dropping a `Handle` does not cancel the callback; call [`Handle::cancel`].
///
/// # Examples
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let lp = evloop::EventLoop::new()?;
/// let ran = Rc::new(Cell::new(false));
/// let r = ran.clone();
/// let handle = lp.call_soon(move || r.set(true));
/// handle.cancel();
/// assert!(handle.cancelled());
/// lp.run_until_idle()?;
/// assert!(!ran.get());
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Rc<dyn Runnable>,
}

impl Handle {
    /// Cancels the callback if it has not run yet; it will never run, and
    /// the closure is dropped now. Cancelling twice, or after the callback
    /// ran, does nothing.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Whether [`cancel`](Handle::cancel) was called before the callback ran.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// Where the callback was scheduled (the caller of `call_soon`).
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("cancelled", &self.cancelled())
            .field("created_at", &format_args!("{}", self.location()))
            .finish()
    }
}

/// A callback scheduled for a point in time with
/// [`EventLoop::call_later`](crate::EventLoop::call_later) or
/// [`EventLoop::call_at`](crate::EventLoop::call_at) (asyncio's `TimerHandle`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::EventLoop::builder().manual_clock().build()?;
/// let timer = lp.call_later(Duration::from_secs(5), || unreachable!());
/// assert_eq!(timer.when(), lp.time() + Duration::from_secs(5));
/// timer.cancel();
/// lp.advance_time(Duration::from_secs(10));
/// lp.run_until_idle()?; // the cancelled timer does not run
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct TimerHandle {
    pub(crate) inner: Rc<dyn TimerRunnable>,
    pub(crate) when: Instant,
    pub(crate) event_loop: Weak<LoopInner>,
}

/// A runnable that also carries timer-heap bookkeeping.
pub(crate) trait TimerRunnable: Runnable + TimerState {}
impl<T: Runnable + TimerState> TimerRunnable for T {}

impl TimerHandle {
    /// Cancels the timer if it has not fired yet. The closure is dropped
    /// now; the heap entry is removed lazily (see the crate docs on
    /// compaction). Cancelling twice, or after the timer fired, does nothing.
    pub fn cancel(&self) {
        let was_in_heap = self.inner.is_in_heap();
        if self.inner.cancel()
            && was_in_heap
            && let Some(lp) = self.event_loop.upgrade()
        {
            lp.timer_cancelled();
        }
    }

    /// Whether [`cancel`](TimerHandle::cancel) was called before it fired.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The loop time at which the timer is due.
    pub fn when(&self) -> Instant {
        self.when
    }

    /// Where the timer was scheduled (the caller of `call_later`/`call_at`).
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location()
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when)
            .field("cancelled", &self.cancelled())
            .field("created_at", &format_args!("{}", self.location()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_drops_the_closure_and_skips_the_run() {
        let token = Rc::new(());
        let held = token.clone();
        let cell = CallbackCell::new(move || drop(held), Location::caller(), 0);
        assert_eq!(Rc::strong_count(&token), 2);
        assert!(cell.cancel());
        assert_eq!(Rc::strong_count(&token), 1, "closure freed at cancel time");
        assert!(!cell.cancel(), "second cancel is a no-op");
        cell.run();
        assert!(cell.cancelled());
    }

    #[test]
    fn cancel_reports_a_panicking_destructor_instead_of_panicking() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("destructor panics");
            }
        }
        let bomb = Bomb;
        let cell = CallbackCell::new(move || drop(bomb), Location::caller(), 0);
        assert!(cell.cancel(), "cancel returns normally");
        assert!(cell.cancelled());
        assert!(!cell.run(), "a cancelled callback never runs");
    }

    #[test]
    fn run_consumes_once_and_cancel_after_run_is_false() {
        let count = Rc::new(Cell::new(0));
        let c = count.clone();
        let cell = CallbackCell::new(move || c.set(c.get() + 1), Location::caller(), 0);
        cell.run();
        cell.run();
        assert_eq!(count.get(), 1);
        assert!(!cell.cancel());
        assert!(!cell.cancelled());
    }
}

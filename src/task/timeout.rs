//! Timeout scopes (asyncio 3.11's `asyncio.timeout` / `timeout_at`): a
//! deadline around a piece of async work that can be moved while the work
//! runs.
//!
//! Invariant: a scope's timer is armed only while the scope is entered
//! (first polled, not yet finished), and holds the scope only weakly, so a
//! dropped scope leaves no timer and no cycle. When the deadline passes,
//! the scope's next poll drops the work (which cancels what it awaits)
//! *before* polling it again, and reports [`Error::Timeout`]; an outer
//! scope that expired drops the inner scopes with its work, so only the
//! scope that fired reports and no inner scope can swallow it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runtime::event_loop::{WeakLoop, running_loop};
use crate::runtime::handle::TimerHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not polled yet: a relative deadline is not fixed yet.
    Created,
    Entered,
    Expired,
    Exited,
}

struct TimeoutState {
    phase: Cell<Phase>,
    when: Cell<Option<Instant>>,
    /// The delay of `timeout(delay)`, until the scope is entered.
    delay: Cell<Option<Duration>>,
    timer: RefCell<Option<TimerHandle>>,
    waker: RefCell<Option<Waker>>,
    event_loop: RefCell<Option<WeakLoop>>,
}

impl TimeoutState {
    /// (Re)arms the timer for `when` (none: no deadline).
    fn arm(self: &Rc<Self>, when: Option<Instant>) {
        self.when.set(when);
        let old = self.timer.borrow_mut().take();
        if let Some(old) = old {
            old.cancel();
        }
        let Some(when) = when else { return };
        let Some(lp) = self.event_loop.borrow().as_ref().and_then(WeakLoop::upgrade) else { return };
        let weak: Weak<TimeoutState> = Rc::downgrade(self);
        let timer = lp.call_at(when, move || {
            let Some(state) = weak.upgrade() else { return };
            if state.phase.get() == Phase::Entered {
                state.phase.set(Phase::Expired);
                state.timer.borrow_mut().take();
                let waker = state.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        });
        *self.timer.borrow_mut() = Some(timer);
    }

    fn disarm(&self) {
        let timer = self.timer.borrow_mut().take();
        if let Some(timer) = timer {
            timer.cancel();
        }
    }
}

/// The deadline of a [`TimeoutScope`] (asyncio's `asyncio.Timeout`): a
/// cheap handle, usable from inside the scope's work to read or move the
/// deadline.
#[derive(Clone)]
pub struct Timeout {
    state: Rc<TimeoutState>,
}

impl Timeout {
    fn new(when: Option<Instant>, delay: Option<Duration>) -> Timeout {
        Timeout {
            state: Rc::new(TimeoutState {
                phase: Cell::new(Phase::Created),
                when: Cell::new(when),
                delay: Cell::new(delay),
                timer: RefCell::new(None),
                waker: RefCell::new(None),
                event_loop: RefCell::new(None),
            }),
        }
    }

    /// The deadline, in loop time; `None` for no deadline, and for a
    /// `timeout(delay)` scope that has not been entered yet (its deadline
    /// is fixed when it is first polled).
    pub fn when(&self) -> Option<Instant> {
        self.state.when.get()
    }

    /// Moves the deadline to `when` (`None`: no deadline); a deadline
    /// already past expires the scope on the loop's next pass. Callable
    /// before the scope is entered (it replaces the delay) and while it
    /// runs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] once the scope has expired or finished
    /// (asyncio's `RuntimeError`).
    pub fn reschedule(&self, when: Option<Instant>) -> Result<()> {
        match self.state.phase.get() {
            Phase::Created => {
                self.state.delay.set(None);
                self.state.when.set(when);
                Ok(())
            }
            Phase::Entered => {
                self.state.arm(when);
                Ok(())
            }
            Phase::Expired => Err(Error::InvalidState("the timeout has expired")),
            Phase::Exited => Err(Error::InvalidState("the timeout scope has finished")),
        }
    }

    /// Whether the deadline passed and the scope was (or is being)
    /// cancelled.
    pub fn expired(&self) -> bool {
        self.state.phase.get() == Phase::Expired
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout").field("phase", &self.state.phase.get()).field("when", &self.when()).finish()
    }
}

/// Work under a deadline: the future of [`timeout`], [`timeout_at`],
/// [`timeout_scope`] and [`timeout_scope_at`]. It gives `Ok(output)`, or
/// [`Error::Timeout`] if the deadline passed first, in which case the work
/// was dropped (cancelling what it awaited). Dropping the scope disarms
/// its timer.
pub struct TimeoutScope<F> {
    fut: Option<Pin<Box<F>>>,
    timeout: Timeout,
}

impl<F> TimeoutScope<F> {
    /// The scope's [`Timeout`], to read or move its deadline.
    pub fn handle(&self) -> Timeout {
        self.timeout.clone()
    }
}

/// Runs `fut` with a deadline `delay` from when it is first polled
/// (asyncio's `async with asyncio.timeout(delay)`); `None` for no deadline
/// (until [`Timeout::reschedule`] sets one). Unlike
/// [`wait_for`](crate::wait_for), the deadline can be moved while the work
/// runs: see [`timeout_scope`] for a handle inside the work, or
/// [`TimeoutScope::handle`] for one outside.
///
/// # Errors
///
/// [`Error::Timeout`] if the deadline passes first.
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(evloop::timeout(
///     Duration::from_millis(5),
///     evloop::sleep(Duration::from_secs(3600)),
/// ))?;
/// assert!(matches!(out, Err(evloop::Error::Timeout)));
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn timeout<F: IntoFuture>(delay: impl Into<Option<Duration>>, fut: F) -> TimeoutScope<F::IntoFuture> {
    TimeoutScope { fut: Some(Box::pin(fut.into_future())), timeout: Timeout::new(None, delay.into()) }
}

/// Runs `fut` with a deadline at loop time `when` (asyncio's
/// `asyncio.timeout_at`); `None` for no deadline.
///
/// # Errors
///
/// [`Error::Timeout`] if the deadline passes first.
///
/// # Panics
///
/// When polled outside a running loop.
pub fn timeout_at<F: IntoFuture>(when: impl Into<Option<Instant>>, fut: F) -> TimeoutScope<F::IntoFuture> {
    TimeoutScope { fut: Some(Box::pin(fut.into_future())), timeout: Timeout::new(when.into(), None) }
}

/// [`timeout`] with the scope's [`Timeout`] handed to the work, which can
/// then move its own deadline: the shape of asyncio's
/// `async with asyncio.timeout(delay) as t:`.
///
/// # Errors
///
/// [`Error::Timeout`] if the deadline passes first.
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(evloop::timeout_scope(Duration::from_millis(5), |t| async move {
///     // More time is needed: push the deadline out.
///     let later = evloop::get_running_loop().unwrap().time() + Duration::from_secs(3600);
///     t.reschedule(Some(later)).unwrap();
///     evloop::sleep(Duration::from_millis(10)).await;
///     "done"
/// }))?;
/// assert_eq!(out?, "done");
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn timeout_scope<F, Fut>(delay: impl Into<Option<Duration>>, work: F) -> TimeoutScope<Fut::IntoFuture>
where
    F: FnOnce(Timeout) -> Fut,
    Fut: IntoFuture,
{
    let timeout = Timeout::new(None, delay.into());
    TimeoutScope { fut: Some(Box::pin(work(timeout.clone()).into_future())), timeout }
}

/// [`timeout_at`] with the scope's [`Timeout`] handed to the work.
///
/// # Errors
///
/// [`Error::Timeout`] if the deadline passes first.
///
/// # Panics
///
/// When polled outside a running loop.
pub fn timeout_scope_at<F, Fut>(when: impl Into<Option<Instant>>, work: F) -> TimeoutScope<Fut::IntoFuture>
where
    F: FnOnce(Timeout) -> Fut,
    Fut: IntoFuture,
{
    let timeout = Timeout::new(when.into(), None);
    TimeoutScope { fut: Some(Box::pin(work(timeout.clone()).into_future())), timeout }
}

impl<F: std::future::Future> std::future::Future for TimeoutScope<F> {
    type Output = Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<F::Output>> {
        let this = &mut *self;
        let state = &this.timeout.state;
        if state.phase.get() == Phase::Created {
            let lp = running_loop("timeout");
            *state.event_loop.borrow_mut() = Some(lp.downgrade());
            state.phase.set(Phase::Entered);
            let when = match state.delay.take() {
                Some(d) => {
                    Some(lp.time().checked_add(d).unwrap_or_else(|| lp.time() + Duration::from_secs(1 << 40)))
                }
                None => state.when.get(),
            };
            state.arm(when);
        }
        let Some(fut) = this.fut.as_mut() else { panic!("TimeoutScope polled after completion") };
        if state.phase.get() == Phase::Expired {
            this.fut = None;
            return Poll::Ready(Err(Error::Timeout));
        }
        {
            let mut slot = state.waker.borrow_mut();
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            this.fut = None;
            state.disarm();
            state.phase.set(Phase::Exited);
            return Poll::Ready(Ok(v));
        }
        Poll::Pending
    }
}

impl<F> Drop for TimeoutScope<F> {
    fn drop(&mut self) {
        let state = &self.timeout.state;
        state.disarm();
        if state.phase.get() != Phase::Expired {
            state.phase.set(Phase::Exited);
        }
    }
}

impl<F> fmt::Debug for TimeoutScope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutScope").field("timeout", &self.timeout).finish()
    }
}

//! asyncio's coroutine helpers: `sleep`, `yield_now` (`sleep(0)`), `gather`,
//! `wait_for` and `TaskGroup`. All of them work on the running loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runtime::event_loop::running_loop;
use crate::runtime::event_loop::{EventLoop, WeakLoop};
use crate::runtime::handle::{ForeignEntry, TimerKey};
use crate::task::task::{Task, TaskSlot};

/// Stores `waker` in `slot` unless it would wake the same task already.
pub(crate) fn remember(slot: &RefCell<Option<Waker>>, waker: &Waker) {
    let mut slot = slot.borrow_mut();
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

/// Wakes (and empties) `slot`, outside its borrow.
pub(crate) fn wake(slot: &RefCell<Option<Waker>>) {
    let waker = slot.borrow_mut().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

enum Deadline {
    After(Duration),
    At(Instant),
}

/// Where a [`Sleep`] stands.
enum SleepState {
    /// Not polled yet: no timer.
    New,
    /// Its deadline had passed at the first poll: it yielded once.
    Yielded,
    /// Its timer is in the loop's heap: a [`SleepEntry`] under `key`.
    Armed { key: TimerKey, when: Instant, lp: WeakLoop },
    /// The timer fired.
    Fired,
}

/// A sleep's timer: the waker of the task awaiting it. It is the heap's
/// foreign entry itself (two words), so arming a sleep allocates nothing
/// and cancelling it drops the waker at once.
struct SleepEntry(Waker);

impl ForeignEntry for SleepEntry {
    fn run(self) {
        self.0.wake();
    }
}

/// The future of [`sleep`] and [`sleep_until`]. Dropping it cancels its
/// timer.
pub struct Sleep {
    deadline: Deadline,
    state: SleepState,
}

/// Completes after `d` of loop time (asyncio's `asyncio.sleep`). The timer is
/// scheduled on the running loop when first polled, and cancelled if the
/// `Sleep` is dropped. `sleep(Duration::ZERO)` is [`yield_now`], as
/// `asyncio.sleep(0)`: no timer, the task resumes on the loop's next pass.
///
/// With the manual clock, it completes once
/// [`advance_time`](crate::EventLoop::advance_time) has moved past its deadline.
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// evloop::run(async {
///     println!("Hello");
///     evloop::sleep(Duration::from_millis(10)).await;
///     println!("World");
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn sleep(d: Duration) -> Sleep {
    Sleep { deadline: Deadline::After(d), state: SleepState::New }
}

/// Completes when the loop's clock reaches `when`; a `when` already
/// reached at the first poll resumes on the next pass, as `sleep(ZERO)`.
///
/// # Panics
///
/// When polled outside a running loop.
pub fn sleep_until(when: Instant) -> Sleep {
    Sleep { deadline: Deadline::At(when), state: SleepState::New }
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.state {
            SleepState::Yielded | SleepState::Fired => Poll::Ready(()),
            SleepState::New => {
                let lp = running_loop("sleep");
                let now = lp.time();
                let when = match self.deadline {
                    Deadline::After(d) => {
                        now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(1 << 40))
                    }
                    Deadline::At(when) => when,
                };
                if when <= now {
                    // asyncio's `sleep(0)`: a bare yield. A timer would be
                    // moved to the ready queue on the next pass and resume
                    // the task one pass later still.
                    self.state = SleepState::Yielded;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let key = lp.call_at_entry(when, SleepEntry(cx.waker().clone()));
                self.state = SleepState::Armed { key, when, lp: lp.downgrade() };
                Poll::Pending
            }
            SleepState::Armed { key, lp, .. } => {
                let Some(lp) = lp.upgrade() else { return Poll::Pending };
                match lp.update_sleep_waker(*key, cx.waker()) {
                    Some(()) => Poll::Pending,
                    // Its entry left the heap: it fired (it may still be on
                    // the ready queue, where its wake-up is a no-op for a
                    // task that has moved on). A loop closed before that
                    // dropped it: then the sleep never ends, as a timer of
                    // a closed loop never fires.
                    None if lp.is_closed() => Poll::Pending,
                    None => {
                        self.state = SleepState::Fired;
                        Poll::Ready(())
                    }
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let SleepState::Armed { key, lp, .. } = &self.state
            && let Some(lp) = lp.upgrade()
        {
            lp.cancel_timer(*key);
        }
    }
}

impl EventLoop {
    /// A sleep's poll: makes `waker` the one its timer wakes. `None` once
    /// the timer has left the heap (fired, or dropped by `close`). The old
    /// waker is replaced and dropped, and the new one cloned, with no
    /// borrow alive: both may run a foreign executor's code.
    fn update_sleep_waker(&self, key: TimerKey, waker: &Waker) -> Option<()> {
        {
            let mut timers = self.inner.timers.borrow_mut();
            let entry = timers.foreign_mut::<SleepEntry>(key)?;
            if entry.0.will_wake(waker) {
                return Some(());
            }
        }
        let new = waker.clone();
        let old = {
            let mut timers = self.inner.timers.borrow_mut();
            let entry = timers.foreign_mut::<SleepEntry>(key)?;
            std::mem::replace(&mut entry.0, new)
        };
        drop(old);
        Some(())
    }
}

/// The future of [`yield_now`].
pub struct YieldNow {
    yielded: bool,
}

/// Gives the other callbacks and tasks a turn, then resumes (asyncio's
/// `await asyncio.sleep(0)`): the task is re-queued at the back of the ready
/// queue and continues on the loop's next pass.
///
/// # Examples
///
/// ```
/// evloop::run(async {
///     for _ in 0..3 {
///         evloop::yield_now().await;
///     }
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What the children's done callbacks tell the [`Gather`].
#[derive(Default)]
struct GatherShared {
    /// The index of the first child that failed, was cancelled or panicked.
    first_failure: Cell<Option<usize>>,
    finished: Cell<usize>,
    waker: RefCell<Option<Waker>>,
}

/// The future of [`gather`] (and, inside [`GatherResults`], of
/// [`gather_results`]).
pub struct Gather<F: std::future::Future + 'static> {
    unstarted: Vec<F>,
    tasks: Vec<Task<F::Output>>,
    shared: Rc<GatherShared>,
    /// Completed: dropping it no longer cancels the children.
    done: bool,
}

/// Runs every awaitable of `futures` concurrently, each as its own task,
/// and completes with their results in input order (asyncio's `gather`).
/// The tasks are started on the running loop when the `Gather` is first
/// polled.
///
/// Each child gives a `Result<T>` (a [`Task`] or [`Future`](crate::Future)
/// awaited by value does; an `async` block returns one), and `gather` gives
/// `Result<Vec<T>>`:
/// - `Ok` with every value, in input order, once all children succeeded;
/// - the first failure as soon as it happens: a child's `Err`, a panic
///   ([`Error::Panicked`]), or a child cancelled by someone else
///   ([`Error::Cancelled`]). As in asyncio, the other children are *not*
///   cancelled: they run on, and their outcomes are dropped.
///
/// Dropping a pending `Gather` (cancelling the task that awaits it, a
/// timeout) cancels the children, as cancelling asyncio's gather does. Use
/// [`gather_results`] for every outcome (asyncio's
/// `return_exceptions=True`).
///
/// # Panics
///
/// When polled outside a running loop (with at least one child).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(evloop::gather((1..=3).map(|i| async move {
///     evloop::sleep(Duration::from_millis(10 * (4 - i))).await;
///     Ok(i * 10)
/// })))?;
/// assert_eq!(out?, [10, 20, 30]);
///
/// let failed = evloop::run(evloop::gather([
///     Box::pin(async { Ok(1) }) as std::pin::Pin<Box<dyn std::future::Future<Output = evloop::Result<i32>>>>,
///     Box::pin(async { Err(evloop::Error::Timeout) }),
/// ]))?;
/// assert!(matches!(failed, Err(evloop::Error::Timeout)));
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn gather<I, T>(futures: I) -> Gather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T>>,
    <I::Item as IntoFuture>::IntoFuture: 'static,
    T: 'static,
{
    Gather {
        unstarted: futures.into_iter().map(IntoFuture::into_future).collect(),
        tasks: Vec::new(),
        shared: Rc::default(),
        done: false,
    }
}

// The unstarted futures are only ever moved into tasks, never polled in
// place, so `Gather` needs no pinning of its own.
impl<F: std::future::Future + 'static> Unpin for Gather<F> {}

/// A child's outcome with the task's own failure (panic, cancellation)
/// and the child's `Err` folded into one `Result`.
fn flatten<T>(outcome: Result<Result<T>>) -> Result<T> {
    outcome.and_then(|inner| inner)
}

impl<T: 'static, F: std::future::Future<Output = Result<T>> + 'static> Gather<F> {
    #[track_caller]
    fn start(&mut self) {
        if self.unstarted.is_empty() {
            return;
        }
        let lp = running_loop("gather");
        self.tasks = self.unstarted.drain(..).map(|f| lp.create_task(f)).collect();
        for (i, task) in self.tasks.iter().enumerate() {
            let shared = self.shared.clone();
            task.as_future().add_done_callback(move |f| {
                // Looking marks the outcome retrieved: a child failing after
                // the gather returned is not "never retrieved" (asyncio).
                let failed = f.with_outcome(|o| matches!(o, Some(Err(_) | Ok(Err(_)))));
                if failed && shared.first_failure.get().is_none() {
                    shared.first_failure.set(Some(i));
                }
                shared.finished.set(shared.finished.get() + 1);
                wake(&shared.waker);
            });
        }
    }

    /// Ready once every child is done or, with `fail_fast`, one failed.
    fn poll_children(&mut self, cx: &mut Context<'_>, fail_fast: bool) -> Poll<()> {
        assert!(!self.done, "Gather polled after completion");
        self.start();
        let all_done = self.shared.finished.get() == self.tasks.len();
        if all_done || (fail_fast && self.shared.first_failure.get().is_some()) {
            self.done = true;
            return Poll::Ready(());
        }
        remember(&self.shared.waker, cx.waker());
        Poll::Pending
    }

    fn take(&self, i: usize) -> Result<T> {
        flatten(self.tasks[i].as_future().take_outcome().unwrap_or(Err(Error::InvalidState("unfinished"))))
    }
}

impl<T: 'static, F: std::future::Future<Output = Result<T>> + 'static> std::future::Future for Gather<F> {
    type Output = Result<Vec<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Vec<T>>> {
        let this = self.get_mut();
        if this.poll_children(cx, true).is_pending() {
            return Poll::Pending;
        }
        if let Some(i) = this.shared.first_failure.get() {
            return Poll::Ready(Err(this.take(i).err().unwrap_or(Error::InvalidState("no failure"))));
        }
        Poll::Ready((0..this.tasks.len()).map(|i| this.take(i)).collect())
    }
}

impl<F: std::future::Future + 'static> Drop for Gather<F> {
    fn drop(&mut self) {
        if !self.done {
            for task in &self.tasks {
                task.cancel();
            }
        }
    }
}

/// The future of [`gather_results`].
pub struct GatherResults<F: std::future::Future + 'static> {
    gather: Gather<F>,
}

/// Like [`gather`], but waits for every child and gives every outcome in
/// input order, failures included (asyncio's
/// `gather(..., return_exceptions=True)`): a child's `Err`, a panic as
/// [`Error::Panicked`], a cancelled child as [`Error::Cancelled`].
/// Dropping a pending `GatherResults` cancels the children.
///
/// # Panics
///
/// When polled outside a running loop (with at least one child).
///
/// # Examples
///
/// ```
/// let out = evloop::run(evloop::gather_results([
///     Box::pin(async { Ok(1) }) as std::pin::Pin<Box<dyn std::future::Future<Output = evloop::Result<i32>>>>,
///     Box::pin(async { panic!("no") }),
///     Box::pin(async { Err(evloop::Error::Timeout) }),
/// ]))?;
/// assert_eq!(out[0].as_ref().ok(), Some(&1));
/// assert!(matches!(&out[1], Err(evloop::Error::Panicked(m)) if m == "no"));
/// assert!(matches!(&out[2], Err(evloop::Error::Timeout)));
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn gather_results<I, T>(futures: I) -> GatherResults<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture<Output = Result<T>>,
    <I::Item as IntoFuture>::IntoFuture: 'static,
    T: 'static,
{
    GatherResults { gather: gather(futures) }
}

impl<T: 'static, F: std::future::Future<Output = Result<T>> + 'static> std::future::Future
    for GatherResults<F>
{
    type Output = Vec<Result<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Result<T>>> {
        let gather = &mut self.get_mut().gather;
        if gather.poll_children(cx, false).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready((0..gather.tasks.len()).map(|i| gather.take(i)).collect())
    }
}

/// The future of [`wait_for`].
pub struct WaitFor<F> {
    fut: Option<Pin<Box<F>>>,
    timeout: Duration,
    sleep: Sleep,
}

/// Awaits `fut` for at most `timeout` (asyncio's `wait_for`). On timeout the
/// inner future is dropped — which cancels it, and a [`Task`] awaited by
/// value is cancelled too — and the result is [`Error::Timeout`].
///
/// A zero `timeout` polls `fut` once: its output if it is ready at once,
/// else [`Error::Timeout`] right away, as asyncio 3.12 does for
/// `wait_for(aw, 0)` (the awaitable runs to its first suspension; a task
/// that has not finished yet times out).
///
/// # Errors
///
/// [`Error::Timeout`] if `timeout` passes first.
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(evloop::wait_for(
///     evloop::sleep(Duration::from_secs(3600)),
///     Duration::from_millis(10),
/// ))?;
/// assert!(matches!(out, Err(evloop::Error::Timeout)));
/// let ready = evloop::run(evloop::wait_for(async { 7 }, Duration::ZERO))?;
/// assert_eq!(ready?, 7);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn wait_for<F: IntoFuture>(fut: F, timeout: Duration) -> WaitFor<F::IntoFuture> {
    WaitFor { fut: Some(Box::pin(fut.into_future())), timeout, sleep: sleep(timeout) }
}

impl<F: std::future::Future> std::future::Future for WaitFor<F> {
    type Output = Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<F::Output>> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else { panic!("WaitFor polled after completion") };
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            this.fut = None;
            return Poll::Ready(Ok(v));
        }
        if this.timeout.is_zero() || Pin::new(&mut this.sleep).poll(cx).is_ready() {
            this.fut = None;
            return Poll::Ready(Err(Error::Timeout));
        }
        Poll::Pending
    }
}

#[derive(Default)]
struct GroupState {
    children: RefCell<Vec<TaskSlot>>,
    running: Cell<usize>,
    error: RefCell<Option<Error>>,
    waker: RefCell<Option<Waker>>,
}

impl GroupState {
    /// Records the first failure and cancels every other child.
    fn fail(&self, error: Error) {
        {
            let mut first = self.error.borrow_mut();
            if first.is_some() {
                return;
            }
            *first = Some(error);
        }
        self.cancel_children();
    }

    fn cancel_children(&self) {
        let children = self.children.borrow().clone();
        for child in children {
            child.request_cancel();
        }
    }
}

/// A set of child tasks that succeed or fail together (asyncio's
/// `TaskGroup`). Children are futures returning `Result<T>`; the first child
/// that returns an error or panics cancels all the others, and awaiting the
/// group (by value: `group.await`) waits for every child and gives that
/// first error. A child cancelled because of that does not count as
/// another failure. Dropping a pending `group.await` cancels the children.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(async {
///     let group = evloop::TaskGroup::new();
///     let slow = group.spawn(async {
///         evloop::sleep(Duration::from_secs(3600)).await;
///         Ok(())
///     });
///     group.spawn(async { Err::<(), _>(evloop::Error::Timeout) });
///     let result = group.await;
///     (result, slow.cancelled())
/// })?;
/// assert!(matches!(out, (Err(evloop::Error::Timeout), true)));
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Default)]
pub struct TaskGroup {
    state: Rc<GroupState>,
}

impl TaskGroup {
    /// An empty group.
    pub fn new() -> TaskGroup {
        TaskGroup::default()
    }

    /// Starts `fut` as a child task on the running loop. After the group
    /// has failed, the new child is cancelled at once.
    ///
    /// # Panics
    ///
    /// If no loop is running on this thread.
    #[track_caller]
    pub fn spawn<T, F>(&self, fut: F) -> Task<Result<T>>
    where
        T: 'static,
        F: std::future::Future<Output = Result<T>> + 'static,
    {
        let lp = running_loop("TaskGroup::spawn");
        // The child's error is acted on in its done callback, once the child
        // has finished (asyncio's `_on_task_done`): failing from inside the
        // child would cancel the child itself too, and a task that cancels
        // itself ends cancelled instead of with its error.
        let error = Rc::new(RefCell::new(None));
        let child_error = error.clone();
        let task = lp.create_task(async move {
            let out = fut.await;
            if let Err(e) = &out {
                *child_error.borrow_mut() = Some(e.clone());
            }
            out
        });
        self.state.running.set(self.state.running.get() + 1);
        if let Some(slot) = task.slot() {
            self.state.children.borrow_mut().push(slot);
        }
        let state = self.state.clone();
        task.add_done_callback(move |t| {
            let returned = error.borrow_mut().take();
            if let Some(e) = returned.or_else(|| t.exception().ok().flatten()) {
                state.fail(e);
            }
            state.running.set(state.running.get() - 1);
            if state.running.get() == 0 {
                wake(&state.waker);
            }
        });
        if self.state.error.borrow().is_some() {
            task.cancel();
        }
        task
    }
}

/// The future of `group.await`.
pub struct TaskGroupWait {
    state: Option<Rc<GroupState>>,
}

impl IntoFuture for TaskGroup {
    type Output = Result<()>;
    type IntoFuture = TaskGroupWait;

    fn into_future(self) -> TaskGroupWait {
        TaskGroupWait { state: Some(self.state) }
    }
}

impl std::future::Future for TaskGroupWait {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let state = self.state.as_ref().expect("TaskGroupWait polled after completion");
        if state.running.get() > 0 {
            remember(&state.waker, cx.waker());
            return Poll::Pending;
        }
        let error = state.error.borrow_mut().take();
        self.state = None;
        Poll::Ready(error.map_or(Ok(()), Err))
    }
}

impl Drop for TaskGroupWait {
    fn drop(&mut self) {
        if let Some(state) = self.state.take()
            && state.running.get() > 0
        {
            state.cancel_children();
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match &self.state {
            SleepState::Armed { when, .. } => Some(*when),
            _ => None,
        };
        f.debug_struct("Sleep").field("when", &when).finish()
    }
}

impl fmt::Debug for YieldNow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YieldNow").field("yielded", &self.yielded).finish()
    }
}

impl<F: std::future::Future + 'static> fmt::Debug for Gather<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gather")
            .field("tasks", &(self.unstarted.len() + self.tasks.len()))
            .field("finished", &self.shared.finished.get())
            .finish()
    }
}

impl<F: std::future::Future + 'static> fmt::Debug for GatherResults<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherResults").field("gather", &self.gather).finish()
    }
}

impl<F> fmt::Debug for WaitFor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitFor").field("done", &self.fut.is_none()).field("sleep", &self.sleep).finish()
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("running", &self.state.running.get())
            .field("failed", &self.state.error.borrow().is_some())
            .finish()
    }
}

impl fmt::Debug for TaskGroupWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroupWait").field("done", &self.state.is_none()).finish()
    }
}

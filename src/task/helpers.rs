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
use crate::runtime::event_loop::{EventLoop, get_running_loop};
use crate::runtime::handle::TimerHandle;
use crate::task::task::{Task, TaskSlot};

#[track_caller]
fn running_loop(what: &str) -> EventLoop {
    match get_running_loop() {
        Ok(lp) => lp,
        Err(_) => panic!("{what} must be awaited inside a task on a running evloop loop"),
    }
}

/// Stores `waker` in `slot` unless it would wake the same task already.
fn remember(slot: &RefCell<Option<Waker>>, waker: &Waker) {
    let mut slot = slot.borrow_mut();
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

fn wake(slot: &RefCell<Option<Waker>>) {
    let waker = slot.borrow_mut().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[derive(Default)]
struct SleepShared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

enum Deadline {
    After(Duration),
    At(Instant),
}

/// The future of [`sleep`] and [`sleep_until`]. Dropping it cancels its
/// timer.
pub struct Sleep {
    deadline: Deadline,
    timer: Option<(TimerHandle, Rc<SleepShared>)>,
}

/// Completes after `d` of loop time (asyncio's `asyncio.sleep`). The timer is
/// scheduled on the running loop when first polled, and cancelled if the
/// `Sleep` is dropped. `sleep(Duration::ZERO)` is [`yield_now`]'s cheaper
/// cousin: it completes on the loop's next pass.
///
/// With the manual clock, it completes once
/// [`advance_time`](EventLoop::advance_time) has moved past its deadline.
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
    Sleep { deadline: Deadline::After(d), timer: None }
}

/// Completes when the loop's clock reaches `when`.
///
/// # Panics
///
/// When polled outside a running loop.
pub fn sleep_until(when: Instant) -> Sleep {
    Sleep { deadline: Deadline::At(when), timer: None }
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer.is_none() {
            let lp = running_loop("sleep");
            let shared = Rc::new(SleepShared::default());
            let fire = shared.clone();
            let when = match self.deadline {
                Deadline::After(d) => {
                    lp.time().checked_add(d).unwrap_or_else(|| lp.time() + Duration::from_secs(1 << 40))
                }
                Deadline::At(when) => when,
            };
            let timer = lp.call_at(when, move || {
                fire.fired.set(true);
                wake(&fire.waker);
            });
            self.timer = Some((timer, shared));
        }
        let (_, shared) = self.timer.as_ref().expect("set above");
        if shared.fired.get() {
            return Poll::Ready(());
        }
        remember(&shared.waker, cx.waker());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timer, _)) = self.timer.take() {
            timer.cancel();
        }
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

/// The future of [`gather`].
pub struct Gather<F: std::future::Future + 'static> {
    unstarted: Vec<F>,
    tasks: Vec<Task<F::Output>>,
    results: Vec<F::Output>,
    failure: Rc<GatherFailure>,
}

/// Set by the tasks' done callbacks: a failure of any task, not only of
/// the one `poll_next` waits on, must reach the `Gather` at once.
#[derive(Default)]
struct GatherFailure {
    /// The index of the first task that failed or was cancelled.
    first: Cell<Option<usize>>,
    waker: RefCell<Option<Waker>>,
}

/// Runs every future of `futures` concurrently, each as its own task, and
/// completes with their outputs in input order (asyncio's `gather`). The
/// tasks are started on the running loop when the `Gather` is first polled.
///
/// If a task fails (panics, or is cancelled by someone else), the others are
/// cancelled and the `Gather` panics with the same message, so the task
/// awaiting it fails with [`Error::Panicked`] — asyncio's "the first
/// exception propagates". Use [`gather_results`] to get every outcome
/// instead. Dropping a pending `Gather` cancels its tasks.
///
/// # Panics
///
/// When polled outside a running loop, and as described above.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let out = evloop::run(evloop::gather((1..=3).map(|i| async move {
///     evloop::sleep(Duration::from_millis(10 * (4 - i))).await;
///     i * 10
/// })))?;
/// assert_eq!(out, [10, 20, 30]);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn gather<I>(futures: I) -> Gather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture,
    <I::Item as IntoFuture>::IntoFuture: 'static,
    <I::Item as IntoFuture>::Output: 'static,
{
    Gather {
        unstarted: futures.into_iter().map(IntoFuture::into_future).collect(),
        tasks: Vec::new(),
        results: Vec::new(),
        failure: Rc::default(),
    }
}

// The unstarted futures are only ever moved into tasks, never polled in
// place, so `Gather` needs no pinning of its own.
impl<F: std::future::Future + 'static> Unpin for Gather<F> {}

impl<F: std::future::Future + 'static> Gather<F> {
    fn start(&mut self) {
        if !self.unstarted.is_empty() {
            let lp = running_loop("gather");
            self.tasks = self.unstarted.drain(..).map(|f| lp.create_task(f)).collect();
            self.results.reserve(self.tasks.len());
            for (i, task) in self.tasks.iter().enumerate() {
                let failure = self.failure.clone();
                task.as_future().add_done_callback(move |f| {
                    if (f.cancelled() || matches!(f.exception(), Ok(Some(_))))
                        && failure.first.get().is_none()
                    {
                        failure.first.set(Some(i));
                        wake(&failure.waker);
                    }
                });
            }
        }
    }

    /// Polls tasks in order from the first unfinished one; returns the
    /// outcome of the next task if it is done.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<F::Output>>> {
        let Some(task) = self.tasks.get(self.results.len()) else { return Poll::Ready(None) };
        match task.as_future().take_outcome() {
            Some(outcome) => Poll::Ready(Some(outcome)),
            None => {
                task.as_future().register(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<F: std::future::Future + 'static> std::future::Future for Gather<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<F::Output>> {
        let this = self.get_mut();
        this.start();
        remember(&this.failure.waker, cx.waker());
        if let Some(i) = this.failure.first.get()
            && let Some(Err(e)) = this.tasks[i].as_future().take_outcome()
        {
            for task in &this.tasks {
                task.cancel();
            }
            panic!("gather: a task failed: {e}");
        }
        loop {
            match this.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(std::mem::take(&mut this.results)),
                Poll::Ready(Some(Ok(value))) => this.results.push(value),
                Poll::Ready(Some(Err(e))) => {
                    for task in &this.tasks {
                        task.cancel();
                    }
                    panic!("gather: a task failed: {e}");
                }
            }
        }
    }
}

impl<F: std::future::Future + 'static> Drop for Gather<F> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.cancel();
        }
    }
}

/// Like [`gather`], but completes with every task's outcome, failures
/// included (asyncio's `gather(..., return_exceptions=True)`).
///
/// # Panics
///
/// When polled outside a running loop.
///
/// # Examples
///
/// ```
/// let out = evloop::run(evloop::gather_results([
///     Box::pin(async { 1 }) as std::pin::Pin<Box<dyn std::future::Future<Output = i32>>>,
///     Box::pin(async { panic!("no") }),
/// ]))?;
/// assert_eq!(out[0].as_ref().ok(), Some(&1));
/// assert!(matches!(&out[1], Err(evloop::Error::Panicked(m)) if m == "no"));
/// # Ok::<(), evloop::Error>(())
/// ```
pub async fn gather_results<I>(futures: I) -> Vec<Result<<I::Item as IntoFuture>::Output>>
where
    I: IntoIterator,
    I::Item: IntoFuture,
    <I::Item as IntoFuture>::IntoFuture: 'static,
    <I::Item as IntoFuture>::Output: 'static,
{
    let lp = running_loop("gather_results");
    let tasks: Vec<_> = futures.into_iter().map(|f| lp.create_task(f.into_future())).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await);
    }
    out
}

/// The future of [`wait_for`].
pub struct WaitFor<F> {
    fut: Option<Pin<Box<F>>>,
    sleep: Sleep,
}

/// Awaits `fut` for at most `timeout` (asyncio's `wait_for`). On timeout the
/// inner future is dropped — which cancels it, and a [`Task`] awaited by
/// value is cancelled too — and the result is [`Error::Timeout`].
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
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn wait_for<F: IntoFuture>(fut: F, timeout: Duration) -> WaitFor<F::IntoFuture> {
    WaitFor { fut: Some(Box::pin(fut.into_future())), sleep: sleep(timeout) }
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
        if Pin::new(&mut this.sleep).poll(cx).is_ready() {
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
        self.state.children.borrow_mut().push(task.slot());
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
        let when = self.timer.as_ref().map(|(t, _)| t.when());
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
            .field("finished", &self.results.len())
            .finish()
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

//! Waiting on several tasks at once — [`wait`] and [`as_completed`] — and
//! protecting one from cancellation — [`shield`].
//!
//! Invariant: these helpers watch their tasks through done callbacks that
//! they remove again when they finish or are dropped, so a helper leaves
//! nothing behind in a task that outlives it; and they never cancel the
//! tasks they watch (asyncio's `wait` and `as_completed` don't either).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::runtime::event_loop::running_loop;
use crate::runtime::handle::TimerHandle;
use crate::task::future::{CallbackId, Future};
use crate::task::helpers::{remember, wake};
use crate::task::task::Task;

/// Something [`wait`] and [`as_completed`] can watch: a [`Task`] or a
/// [`Future`], or a plain `std::future::Future`, which becomes a task on
/// the running loop (asyncio's `ensure_future`).
pub trait IntoTask {
    /// The task's output.
    type Output: 'static;
    /// The watched handle.
    type Handle: Watched<Output = Self::Output>;
    /// The handle to watch; a plain future is spawned on the running loop.
    fn into_task(self) -> Self::Handle;
}

/// A [`Task`] or [`Future`] as [`wait`] and [`as_completed`] see it.
pub trait Watched: Clone + 'static {
    /// The output.
    type Output: 'static;
    /// The result-carrying future (a task's view of itself).
    fn future(&self) -> &Future<Self::Output>;
}

impl<T: 'static> Watched for Task<T> {
    type Output = T;
    fn future(&self) -> &Future<T> {
        self.as_future()
    }
}

impl<T: 'static> Watched for Future<T> {
    type Output = T;
    fn future(&self) -> &Future<T> {
        self
    }
}

impl<T: 'static> IntoTask for Task<T> {
    type Output = T;
    type Handle = Task<T>;
    fn into_task(self) -> Task<T> {
        self
    }
}

impl<T: 'static> IntoTask for Future<T> {
    type Output = T;
    type Handle = Future<T>;
    fn into_task(self) -> Future<T> {
        self
    }
}

impl<F: std::future::Future + 'static> IntoTask for F {
    type Output = F::Output;
    type Handle = Task<F::Output>;
    #[track_caller]
    fn into_task(self) -> Task<F::Output> {
        running_loop("wait / as_completed / shield").create_task(self)
    }
}

// ------------------------------------------------------------------ shield

/// The future of [`shield`].
pub struct Shield<T: 'static> {
    task: Option<Task<T>>,
}

/// Awaits `task` without letting a cancellation reach it (asyncio's
/// `shield`): dropping the `Shield` (its awaiting task cancelled, a
/// timeout) leaves the task running, and its outcome stays in the task for
/// whoever holds a handle. A plain future is first made a task on the
/// running loop. Awaited to the end, the `Shield` moves the task's outcome
/// out, as `task.await` does: [`Error::Cancelled`] if the task itself was
/// cancelled, [`Error::Panicked`] if it panicked.
///
/// # Panics
///
/// Given a plain future outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// evloop::run(async {
///     let inner = evloop::spawn(async {
///         evloop::sleep(Duration::from_millis(20)).await;
///         "finished"
///     });
///     let outer = evloop::wait_for(evloop::shield(inner.clone()), Duration::from_millis(1)).await;
///     assert!(matches!(outer, Err(evloop::Error::Timeout)));
///     assert!(!inner.cancelled(), "the inner task goes on");
///     assert_eq!(inner.await.unwrap(), "finished");
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn shield<A: IntoTask<Handle = Task<<A as IntoTask>::Output>>>(task: A) -> Shield<A::Output> {
    Shield { task: Some(task.into_task()) }
}

impl<T: 'static> std::future::Future for Shield<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let task = self.task.as_ref().expect("Shield polled after completion");
        match task.as_future().take_outcome() {
            Some(outcome) => {
                self.task = None;
                Poll::Ready(outcome)
            }
            None => {
                task.as_future().register(cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> fmt::Debug for Shield<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("task", &self.task).finish()
    }
}

// -------------------------------------------------------------------- wait

/// When [`wait`] returns (asyncio's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// As soon as any task is done.
    FirstCompleted,
    /// As soon as any task fails (its `Result` output is `Err`, or it
    /// panicked), or all are done. A cancelled task is done, not failed,
    /// as in asyncio.
    FirstException,
    /// Once every task is done.
    #[default]
    AllCompleted,
}

struct WaitShared {
    done: Cell<usize>,
    failed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The future of [`wait`].
pub struct Wait<W: Watched> {
    tasks: Vec<W>,
    callbacks: Vec<Option<CallbackId>>,
    shared: Rc<WaitShared>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
    timer: Option<TimerHandle>,
    timed_out: Rc<Cell<bool>>,
    started: bool,
    finished: bool,
}

/// Waits for the tasks until `return_when` holds or `timeout` passes, and
/// gives `(done, pending)`: the tasks that are done and those that are
/// not, each in input order (asyncio's `wait`, whose sets have no order).
/// Nothing is cancelled, not on timeout either: the pending tasks go on.
/// A task that fails is one whose output is `Err` (or that panicked): the
/// tasks carry `Result`s, as [`gather`](crate::gather)'s children do.
///
/// With no tasks it returns at once (asyncio raises `ValueError`).
///
/// # Panics
///
/// When polled outside a running loop; given a plain future outside one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use evloop::ReturnWhen;
/// evloop::run(async {
///     let fast = evloop::spawn(async { Err::<u32, _>(evloop::Error::Timeout) });
///     let slow = evloop::spawn(async {
///         evloop::sleep(Duration::from_secs(3600)).await;
///         Ok(1)
///     });
///     let (done, pending) = evloop::wait([fast, slow], None, ReturnWhen::FirstException).await;
///     assert_eq!((done.len(), pending.len()), (1, 1));
///     pending[0].cancel();
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn wait<I, T>(
    tasks: I,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Wait<<I::Item as IntoTask>::Handle>
where
    I: IntoIterator,
    I::Item: IntoTask<Output = Result<T>>,
    T: 'static,
{
    let tasks: Vec<_> = tasks.into_iter().map(IntoTask::into_task).collect();
    let n = tasks.len();
    Wait {
        tasks,
        callbacks: vec![None; n],
        shared: Rc::new(WaitShared {
            done: Cell::new(0),
            failed: Cell::new(false),
            waker: RefCell::new(None),
        }),
        return_when,
        timeout,
        timer: None,
        timed_out: Rc::new(Cell::new(false)),
        started: false,
        finished: false,
    }
}

/// Whether a finished task failed, for `FirstException`.
fn failed<T>(fut: &Future<Result<T>>) -> bool {
    fut.with_outcome(|o| match o {
        Some(Err(Error::Cancelled)) => false,
        Some(Err(_)) | Some(Ok(Err(_))) => true,
        _ => false,
    })
}

impl<T: 'static, W: Watched<Output = Result<T>>> Wait<W> {
    fn start(&mut self) {
        self.started = true;
        for (i, task) in self.tasks.iter().enumerate() {
            let fut = task.future();
            if fut.done() {
                self.shared.done.set(self.shared.done.get() + 1);
                if failed(fut) {
                    self.shared.failed.set(true);
                }
                continue;
            }
            let shared = self.shared.clone();
            self.callbacks[i] = Some(fut.add_done_callback(move |f| {
                shared.done.set(shared.done.get() + 1);
                if failed(f) {
                    shared.failed.set(true);
                }
                wake(&shared.waker);
            }));
        }
        if let Some(timeout) = self.timeout
            && !self.satisfied()
        {
            let (timed_out, shared) = (self.timed_out.clone(), self.shared.clone());
            self.timer = Some(running_loop("wait").call_later(timeout, move || {
                timed_out.set(true);
                wake(&shared.waker);
            }));
        }
    }
}

impl<W: Watched> Wait<W> {
    fn satisfied(&self) -> bool {
        let done = self.shared.done.get();
        let all = done == self.tasks.len();
        match self.return_when {
            ReturnWhen::FirstCompleted => done > 0 || all,
            ReturnWhen::FirstException => self.shared.failed.get() || all,
            ReturnWhen::AllCompleted => all,
        }
    }

    /// Removes the done callbacks and the timer.
    fn cleanup(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
        for (task, id) in self.tasks.iter().zip(self.callbacks.iter_mut()) {
            if let Some(id) = id.take() {
                task.future().remove_done_callback(id);
            }
        }
    }
}

impl<W: Watched> Unpin for Wait<W> {}

impl<T: 'static, W: Watched<Output = Result<T>>> std::future::Future for Wait<W> {
    type Output = (Vec<W>, Vec<W>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(Vec<W>, Vec<W>)> {
        let this = self.get_mut();
        assert!(!this.finished, "Wait polled after completion");
        if !this.started {
            this.start();
        }
        if !this.satisfied() && !this.timed_out.get() {
            remember(&this.shared.waker, cx.waker());
            return Poll::Pending;
        }
        this.finished = true;
        this.cleanup();
        let (done, pending) = std::mem::take(&mut this.tasks).into_iter().partition(|t| t.future().done());
        Poll::Ready((done, pending))
    }
}

impl<W: Watched> Drop for Wait<W> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl<W: Watched> fmt::Debug for Wait<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("tasks", &self.tasks.len())
            .field("done", &self.shared.done.get())
            .field("return_when", &self.return_when)
            .finish()
    }
}

// ------------------------------------------------------------ as_completed

struct CompletedShared<T: 'static> {
    /// Tasks that finished, in the order they did.
    finished: RefCell<VecDeque<Future<T>>>,
    timed_out: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The tasks of [`as_completed`], handed out in the order they finish.
pub struct AsCompleted<T: 'static> {
    tasks: Vec<(Future<T>, Option<CallbackId>)>,
    /// Outcomes not handed out yet.
    remaining: usize,
    shared: Rc<CompletedShared<T>>,
    timer: Option<TimerHandle>,
}

/// Gives the outcomes of `tasks` in the order they finish (asyncio's
/// `as_completed`), one per [`next`](AsCompleted::next) call. If `timeout`
/// passes first, each outcome still missing is [`Error::Timeout`] (asyncio
/// raises `TimeoutError` at the next await); the tasks are not cancelled.
/// The timeout starts now, so this must be called on the running loop.
///
/// # Panics
///
/// Outside a running loop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// evloop::run(async {
///     let tasks = [30, 10, 20].map(|ms| evloop::spawn(async move {
///         evloop::sleep(Duration::from_millis(ms)).await;
///         ms
///     }));
///     let mut order = Vec::new();
///     let mut completed = evloop::as_completed(tasks, None);
///     while let Some(ms) = completed.next().await {
///         order.push(ms.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]);
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn as_completed<I>(tasks: I, timeout: Option<Duration>) -> AsCompleted<<I::Item as IntoTask>::Output>
where
    I: IntoIterator,
    I::Item: IntoTask,
{
    let lp = running_loop("as_completed");
    let shared = Rc::new(CompletedShared {
        finished: RefCell::new(VecDeque::new()),
        timed_out: Cell::new(false),
        waker: RefCell::new(None),
    });
    let tasks: Vec<_> = tasks
        .into_iter()
        .map(|t| {
            let fut = t.into_task().future().clone();
            let s = shared.clone();
            let id = fut.add_done_callback(move |f| {
                s.finished.borrow_mut().push_back(f.clone());
                wake(&s.waker);
            });
            (fut, Some(id))
        })
        .collect();
    let timer = timeout.map(|d| {
        let s = shared.clone();
        lp.call_later(d, move || {
            s.timed_out.set(true);
            wake(&s.waker);
        })
    });
    AsCompleted { remaining: tasks.len(), tasks, shared, timer }
}

impl<T: 'static> AsCompleted<T> {
    /// The next outcome to finish; `None` once all were handed out.
    /// After the timeout, [`Error::Timeout`] for each one still missing.
    // An async `next`, not `Iterator::next`: the crate has no `Stream`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> impl std::future::Future<Output = Option<Result<T>>> + '_ {
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    /// How many outcomes are still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        if self.remaining == 0 {
            self.cleanup();
            return Poll::Ready(None);
        }
        let next = self.shared.finished.borrow_mut().pop_front();
        if let Some(fut) = next {
            self.remaining -= 1;
            let outcome = fut.take_outcome().unwrap_or(Err(Error::InvalidState("taken by another awaiter")));
            return Poll::Ready(Some(outcome));
        }
        if self.shared.timed_out.get() {
            self.remaining -= 1;
            self.cleanup();
            return Poll::Ready(Some(Err(Error::Timeout)));
        }
        remember(&self.shared.waker, cx.waker());
        Poll::Pending
    }

    fn cleanup(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
        for (fut, id) in &mut self.tasks {
            if let Some(id) = id.take() {
                fut.remove_done_callback(id);
            }
        }
    }
}

impl<T: 'static> Drop for AsCompleted<T> {
    fn drop(&mut self) {
        self.cleanup();
    }
}

impl<T: 'static> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted").field("remaining", &self.remaining).finish()
    }
}

//! [`Task`]: drives a `std::future::Future` on the loop, one step per
//! wake-up (asyncio's `Task`).
//!
//! The loop owns every unfinished task in a slotmap. A task's waker holds
//! only the task's key and the loop's cross-thread queue, so it is
//! `Send + Sync`: woken on the loop thread while the loop runs, it pushes the
//! task onto the ready queue directly (FIFO with callbacks); woken from
//! anywhere else, it goes through the remote queue and `Poller::notify()`.
//! A stale key (finished task, closed loop) makes a wake a no-op.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use slotmap::{Key, KeyData};

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::runtime::event_loop::{EventLoop, LoopInner, running_loop};
use crate::runtime::handle::Runnable;
use crate::runtime::remote::{RemoteItem, RemoteShared};
use crate::task::future::{CallbackId, Future, FutureCell, FutureOwned, FutureState, report_unretrieved};

slotmap::new_key_type! {
    /// A task's place in its loop.
    pub(crate) struct TaskKey;
}

/// What the loop keeps of a task, type-erased.
pub(crate) type TaskSlot = Rc<dyn TaskStep>;

/// A task as the loop sees it.
pub(crate) trait TaskStep: Runnable {
    /// Marks the task as queued; false if it already was.
    fn mark_scheduled(&self) -> bool;
    /// Drops the wrapped future and everything waiting on the task, for
    /// `close`. Returns what must be dropped outside any borrow.
    fn abandon(&self) -> Box<dyn Any>;
    /// `Task::cancel` without knowing `T`.
    fn request_cancel(&self);
}

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// Wakers kept for reuse per loop: a spawn then costs one allocation less.
/// Sized for bursts of a few thousand tasks (about 400 KiB at most).
const WAKER_POOL_MAX: usize = 8192;

/// The waker of one task. Recycled through the loop's pool when the task
/// finishes and nobody else holds a clone (no stale wake can reach the next
/// task that gets it).
pub(crate) struct TaskWaker {
    loop_id: u64,
    /// The task's key. Only written while the task core holds the only
    /// handles to this waker (see [`PooledWaker`]), so no wake can race it.
    key: AtomicU64,
    remote: Arc<RemoteShared>,
}

/// A task's waker together with its allocation: the `Arc` shows whether
/// anyone else kept a clone (`strong_count` is 2 when the pair is all there
/// is), without the atomic read-modify-writes of rebuilding the `Waker`
/// for every task.
pub(crate) struct PooledWaker {
    arc: Arc<TaskWaker>,
    waker: Waker,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let woken_here = LoopInner::with_running(|running| match running {
            Some(inner) if inner.id == self.loop_id => {
                wake_on_loop(inner, self.key.load(Ordering::Relaxed));
                true
            }
            _ => false,
        });
        if !woken_here {
            // Another thread, or the loop is not running right now. After
            // `close` the push fails, and a wake of a dead task is a no-op.
            let _ = self.remote.push(RemoteItem::Wake(self.key.load(Ordering::Relaxed)));
        }
    }
}

/// Schedules the task with `key` on `inner`'s ready queue, unless it has
/// finished or is already scheduled.
pub(crate) fn wake_on_loop(inner: &LoopInner, key: u64) {
    let key = TaskKey::from(KeyData::from_ffi(key));
    let task = inner.tasks.borrow().get(key).cloned();
    if let Some(task) = task
        && task.mark_scheduled()
    {
        inner.push_ready(task);
    }
}

/// Removes every task from the loop (on `close`), dropping their futures;
/// returns what must be dropped after the caller's borrows end.
pub(crate) fn take_all(inner: &LoopInner) -> Vec<Box<dyn Any>> {
    let tasks: Vec<TaskSlot> = inner.tasks.borrow_mut().drain().map(|(_, t)| t).collect();
    let mut leftovers: Vec<Box<dyn Any>> = tasks.iter().map(|t| t.abandon()).collect();
    leftovers.push(Box::new(tasks));
    leftovers
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T>>>;

/// A task as its [`Future`] handles see it (through
/// `FutureCell::task`): what `Task<T>`'s own methods need.
pub(crate) trait TaskControl {
    /// `Task::cancel`.
    fn cancel(&self) -> bool;
    fn id(&self) -> u64;
    fn name(&self) -> String;
    fn set_name(&self, name: Box<str>);
    fn location(&self) -> &'static Location<'static>;
}

/// The task: header, wrapped future and result state in one `Rc` block.
struct TaskCore<T: 'static> {
    key: Cell<TaskKey>,
    location: &'static Location<'static>,
    id: u64,
    /// `None` until `set_name`: the default name is formatted on demand.
    name: Cell<Option<Box<str>>>,
    coro: Cell<Option<BoxFuture<T>>>,
    /// The task's result; `Future<T>` handles of the task point here.
    output: FutureState<T>,
    /// Taken out while the future is polled (no borrow held meanwhile).
    waker: Cell<Option<PooledWaker>>,
    scheduled: Cell<bool>,
    cancel_requested: Cell<bool>,
    /// The block's own handle, for the ready queue and done callbacks.
    this: Weak<TaskCore<T>>,
}

impl<T: 'static> TaskCore<T> {
    /// Removes the task from its loop: it will never step again.
    fn unregister(&self) {
        let Some(lp) = self.output.weak_loop().upgrade() else { return };
        let removed = lp.inner.tasks.borrow_mut().remove(self.key.get());
        drop(lp);
        drop(removed);
    }

    fn handle(&self) -> Option<Future<T>> {
        let this: Rc<dyn FutureCell<T>> = self.this.upgrade()?;
        Some(Future { inner: this })
    }

    fn finish(&self, outcome: std::result::Result<T, Error>) {
        self.unregister();
        if let Some(handle) = self.handle() {
            let _ = self.output.finish(outcome, &handle);
        }
    }

    /// Returns the waker to the loop's pool if nobody else holds a clone
    /// of it (a finished task's key must not reach a new task).
    fn recycle_waker(&self, waker: Option<PooledWaker>) {
        // The pair itself accounts for two strong counts. Nobody can clone
        // the waker meanwhile: this task holds the only handles.
        if let Some(waker) = waker
            && Arc::strong_count(&waker.arc) == 2
            && let Some(lp) = self.output.weak_loop().upgrade()
        {
            let mut pool = lp.inner.waker_pool.borrow_mut();
            if pool.len() < WAKER_POOL_MAX {
                pool.push(waker);
            }
        }
    }

    fn schedule(&self) {
        if self.mark_scheduled()
            && let Some(lp) = self.output.weak_loop().upgrade()
            && let Some(this) = self.this.upgrade()
        {
            lp.inner.push_ready(this);
        }
    }
}

impl<T: 'static> Drop for TaskCore<T> {
    fn drop(&mut self) {
        // asyncio's wording for tasks, with the task named: the future's
        // own report would not say which task failed.
        if let Some(error) = self.output.unretrieved_error() {
            let name = TaskControl::name(self);
            let ctx = ExceptionContext::new("Task exception was never retrieved")
                .with_error(error)
                .with_task(name)
                .with_location(self.location);
            report_unretrieved(self.output.weak_loop(), ctx);
        }
    }
}

impl<T: 'static> Runnable for TaskCore<T> {
    /// One step: poll the wrapped future once.
    fn run(&self) -> bool {
        self.scheduled.set(false);
        let Some(mut coro) = self.coro.take() else { return false };
        let waker = self.waker.take();
        if self.cancel_requested.get() {
            drop(coro);
            self.finish(Err(Error::Cancelled));
            self.recycle_waker(waker);
            return true;
        }
        let polled = {
            let waker = waker.as_ref().map_or(Waker::noop(), |w| &w.waker);
            let mut cx = Context::from_waker(waker);
            std::panic::catch_unwind(AssertUnwindSafe(|| coro.as_mut().poll(&mut cx)))
        };
        if let Ok(Poll::Pending) = polled {
            self.coro.set(Some(coro));
            self.waker.set(waker);
            return true;
        }
        match polled {
            Ok(Poll::Pending) => unreachable!("handled above"),
            Ok(Poll::Ready(value)) => {
                drop(coro);
                // asyncio: a task that cancelled itself and then returned
                // still ends cancelled.
                if self.cancel_requested.get() {
                    drop(value);
                    self.finish(Err(Error::Cancelled));
                } else {
                    self.finish(Ok(value));
                }
            }
            Err(payload) => {
                // Dropping a future that panicked may panic again; that
                // second panic must not escape the loop.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(coro)));
                self.finish(Err(Error::Panicked(panic_message(&*payload))));
            }
        }
        self.recycle_waker(waker);
        true
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl<T: 'static> TaskStep for TaskCore<T> {
    fn mark_scheduled(&self) -> bool {
        !self.scheduled.replace(true)
    }

    fn request_cancel(&self) {
        TaskControl::cancel(self);
    }

    fn abandon(&self) -> Box<dyn Any> {
        let coro = self.coro.take();
        let waker = self.waker.take();
        let waiting = self.output.abandon();
        Box::new((coro, waker, waiting))
    }
}

impl<T: 'static> TaskControl for TaskCore<T> {
    fn cancel(&self) -> bool {
        if self.output.done() {
            return false;
        }
        if !self.cancel_requested.replace(true) {
            self.schedule();
        }
        true
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn name(&self) -> String {
        let name = self.name.take();
        let shown = match &name {
            Some(name) => name.to_string(),
            None => format!("Task-{}", self.id),
        };
        self.name.set(name);
        shown
    }

    fn set_name(&self, name: Box<str>) {
        self.name.set(Some(name));
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl<T: 'static> FutureCell<T> for TaskCore<T> {
    fn state(&self) -> &FutureState<T> {
        &self.output
    }

    fn task(&self) -> Option<&dyn TaskControl> {
        Some(self)
    }

    fn task_slot(self: Rc<Self>) -> Option<TaskSlot> {
        Some(self)
    }
}

/// A future running on the loop (asyncio's `Task`).
///
/// Created by [`EventLoop::create_task`] or [`spawn`]. The first step is
/// scheduled with `call_soon`; each wake-up schedules one more step. The
/// loop keeps the task alive: dropping a `Task` does not stop it.
///
/// A `Task<T>` has the inspection API of [`Future<T>`] and is awaited the
/// same way: `task.await` gives `Result<T>` ([`Error::Cancelled`] if it was
/// cancelled, [`Error::Panicked`] if it panicked). Only the task itself
/// sets its result: [`Task::cancel`] is the one way to end it early.
///
/// A task does not keep its loop alive: dropping the last [`EventLoop`]
/// without `close()` drops every unfinished task's future.
///
/// # Examples
///
/// ```
/// let lp = evloop::EventLoop::new()?;
/// let task = lp.create_task(async { 6 * 7 });
/// assert_eq!(task.name(), format!("Task-{}", task.id()));
/// assert_eq!(lp.run_until_complete(task.clone())??, 42);
/// assert_eq!(task.result()?, 42);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Task<T: 'static> {
    fut: Future<T>,
}

impl<T: 'static> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task { fut: self.fut.clone() }
    }
}

impl EventLoop {
    /// Wraps `fut` in a [`Task`] and schedules its first step (asyncio's
    /// `loop.create_task`).
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let task = lp.create_task(async { "hello" });
    /// task.set_name("greeter");
    /// assert_eq!(lp.run_until_complete(task.clone())??, "hello");
    /// assert_eq!(task.name(), "greeter");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn create_task<F>(&self, fut: F) -> Task<F::Output>
    where
        F: std::future::Future + 'static,
    {
        self.check_open();
        let id = NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed);
        let inner = &self.inner;
        let coro: BoxFuture<F::Output> = Box::pin(fut);
        // Read the caller here: `#[track_caller]` does not reach into the
        // closure below, where `Location::caller()` would name this file.
        let location = Location::caller();
        let mut created = None;
        let recycled = inner.waker_pool.borrow_mut().pop();
        let weak_loop = self.downgrade();
        inner.tasks.borrow_mut().insert_with_key(|key| {
            let key_bits = key.data().as_ffi();
            let waker = match recycled {
                Some(waker) => {
                    // Only wakers nobody else held went into the pool.
                    waker.arc.key.store(key_bits, Ordering::Relaxed);
                    waker
                }
                None => {
                    let arc = Arc::new(TaskWaker {
                        loop_id: inner.id,
                        key: AtomicU64::new(key_bits),
                        remote: inner.remote.clone(),
                    });
                    PooledWaker { waker: Waker::from(arc.clone()), arc }
                }
            };
            let core = Rc::new_cyclic(|this| TaskCore {
                key: Cell::new(key),
                location,
                name: Cell::new(None),
                id,
                coro: Cell::new(Some(coro)),
                output: FutureState::new(weak_loop),
                waker: Cell::new(Some(waker)),
                scheduled: Cell::new(false),
                cancel_requested: Cell::new(false),
                this: this.clone(),
            });
            created = Some(core.clone());
            core
        });
        let core = created.expect("insert_with_key calls its closure");
        core.schedule();
        Task { fut: Future { inner: core } }
    }
}

/// Wraps `fut` in a [`Task`] on the running loop (asyncio's
/// `asyncio.create_task`).
///
/// # Panics
///
/// If no loop is running on this thread.
///
/// # Examples
///
/// ```
/// let answer = evloop::run(async {
///     let child = evloop::spawn(async { 21 * 2 });
///     child.await
/// })?;
/// assert_eq!(answer?, 42);
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn spawn<F>(fut: F) -> Task<F::Output>
where
    F: std::future::Future + 'static,
{
    running_loop("spawn").create_task(fut)
}

impl<T: 'static> Task<T> {
    fn control(&self) -> &dyn TaskControl {
        self.fut.inner.task().expect("a Task's future is a task block")
    }

    /// The task's number, unique in the process; the default name is
    /// `Task-<id>`.
    pub fn id(&self) -> u64 {
        self.control().id()
    }

    /// The task's name (`Task-N` unless set).
    pub fn name(&self) -> String {
        self.control().name()
    }

    /// Renames the task; the name appears in debug output and reports.
    pub fn set_name(&self, name: impl Into<String>) {
        self.control().set_name(name.into().into_boxed_str());
    }

    /// The loop the task runs on.
    ///
    /// # Panics
    ///
    /// If every handle to the loop was dropped ("the event loop was
    /// dropped"): a task does not keep its loop alive.
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.fut.get_loop()
    }

    /// Asks the task to stop: at its next step the wrapped future is dropped
    /// (which cancels whatever it was awaiting) and the task completes as
    /// cancelled. Returns false if the task is already done. A task may
    /// cancel itself; the cancellation then happens at its next step.
    ///
    /// Unlike Python, the future gets no chance to catch the cancellation:
    /// clean-up belongs in `Drop`.
    pub fn cancel(&self) -> bool {
        self.control().cancel()
    }

    /// Whether the task is finished (result, panic, or cancelled).
    pub fn done(&self) -> bool {
        self.fut.done()
    }

    /// Whether the task was cancelled.
    pub fn cancelled(&self) -> bool {
        self.fut.cancelled()
    }

    /// The task's result, as [`Future::result`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while running, [`Error::Cancelled`],
    /// [`Error::Panicked`].
    pub fn result(&self) -> Result<T>
    where
        T: Clone,
    {
        self.fut.result()
    }

    /// The error the task ended with, as [`Future::exception`].
    ///
    /// # Errors
    ///
    /// As [`Future::exception`].
    pub fn exception(&self) -> Result<Option<Error>> {
        self.fut.exception()
    }

    /// Calls `f` (through `call_soon`) once the task is done.
    pub fn add_done_callback(&self, f: impl FnOnce(&Task<T>) + 'static) -> CallbackId {
        // The callback gets a handle made from the one it is called with:
        // capturing `self` would make the task own a handle on itself.
        self.fut.add_done_callback(move |fut| f(&Task { fut: fut.clone() }))
    }

    /// Removes a done callback; returns whether it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        self.fut.remove_done_callback(id)
    }

    /// The task's result as a [`Future`]: a view of the task, not a copy.
    /// Its `set_result` and `set_exception` fail with
    /// [`Error::InvalidState`] (only the task sets its result) and its
    /// `cancel` is [`Task::cancel`].
    pub fn as_future(&self) -> &Future<T> {
        &self.fut
    }

    /// The loop's type-erased view of this task.
    pub(crate) fn slot(&self) -> TaskSlot {
        self.fut.inner.clone().task_slot().expect("a Task's future is a task block")
    }

    /// Where the task was created.
    pub fn location(&self) -> &'static Location<'static> {
        self.control().location()
    }
}

impl<T: 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name())
            .field("done", &self.done())
            .field("cancelled", &self.cancelled())
            .field("created_at", &format_args!("{}", self.location()))
            .finish()
    }
}

/// The future of `task.await`: the task's result. Dropping it before the
/// task finishes cancels the task, as asyncio cancels the task a cancelled
/// awaiter was waiting on.
pub struct TaskJoin<T: 'static> {
    result: FutureOwned<T>,
}

impl<T: 'static> std::future::Future for TaskJoin<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // `FutureOwned` is `Unpin`; so is `TaskJoin`. Dropping it early
        // cancels the task's view, which is `Task::cancel`.
        Pin::new(&mut self.get_mut().result).poll(cx)
    }
}

impl<T: 'static> IntoFuture for Task<T> {
    type Output = Result<T>;
    type IntoFuture = TaskJoin<T>;

    fn into_future(self) -> TaskJoin<T> {
        TaskJoin { result: self.fut.into_future() }
    }
}

impl<'a, T: Clone + 'static> IntoFuture for &'a Task<T> {
    type Output = Result<T>;
    type IntoFuture = crate::task::future::FutureRef<'a, T>;

    fn into_future(self) -> Self::IntoFuture {
        (&self.fut).into_future()
    }
}

/// Asks every unfinished task of `lp` to cancel (for `evloop::run`).
pub(crate) fn cancel_all(lp: &EventLoop) {
    let tasks: Vec<TaskSlot> = lp.inner.tasks.borrow().values().cloned().collect();
    for task in tasks {
        task.request_cancel();
    }
}

impl<T: 'static> fmt::Debug for TaskJoin<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskJoin").field("result", &self.result).finish()
    }
}

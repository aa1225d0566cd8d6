//! [`Task`]: drives a `std::future::Future` on the loop, one step per
//! wake-up (asyncio's `Task`).
//!
//! The loop owns every unfinished task in a slotmap. A task's waker is
//! plain bits — the loop's slot in a process-wide wake table and the task's
//! key — so it allocates nothing, holds nothing and is `Send + Sync`: woken
//! on the loop thread while the loop runs, it pushes the task onto the ready
//! queue directly (FIFO with callbacks); woken from anywhere else, it finds
//! the loop's cross-thread queue in the table and goes through it and
//! `Poller::notify()`. A stale key (finished task, closed or dropped loop)
//! makes a wake a no-op, or at worst a spurious wake-up of another task,
//! which the `Future` contract allows.
//!
//! A task is two allocations: its block (result state and header, 104
//! bytes with the `Rc` counts for a `u64` result) and the boxed future.
//! Putting the future inline needs it pinned inside a block that is also
//! viewed as `Rc<Shared<T>>` by `Future` handles and as `Rc<dyn Runnable>`
//! by the ready queue; safe code cannot get `Pin<&mut F>` out of that, so
//! it takes a raw task in `sys/` (own reference count and vtable) or
//! `Pin<Rc<_>>` through every holder, neither done yet. The header is
//! kept small so that the inline block would still fit glibc's fast bins
//! (120 bytes) for a future of up to 24 bytes; a block that leaves them
//! costs a few hundred instructions in `malloc`/`free` when tasks come in
//! bursts (measured: 16 more bytes took `task_spawn` from 1171 to 1481).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::IntoFuture;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slotmap::{Key, KeyData};

use crate::error::{Error, Result, panic_message};
use crate::runtime::event_loop::{EventLoop, LoopInner, running_loop};
use crate::runtime::handle::Runnable;
use crate::runtime::remote::{RemoteItem, RemoteShared};
use crate::sys::waker::{BitsWaker, bits_waker};
use crate::task::future::{
    CANCEL_REQUESTED, CallbackId, Future, FutureOwned, FutureState, IS_TASK, SCHEDULED, Shared, TaskPart,
};

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
    /// For `finish`, to get its typed handle back from the loop's slot.
    fn into_any(self: Rc<Self>) -> Rc<dyn Any>;
}

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

/// Live loops whose task wakers are bits: a waker's top 8 bits index this
/// table. A loop claims a slot for its first task and frees it when dropped.
static WAKE_TABLE: Mutex<Vec<Option<std::sync::Weak<RemoteShared>>>> = Mutex::new(Vec::new());

/// Loops that can have bits wakers at once; later ones fall back to
/// allocated wakers.
const WAKE_SLOTS: usize = 256;
/// `LoopInner::waker_slot` before the first task: no slot claimed yet.
pub(crate) const SLOT_UNCLAIMED: u16 = u16::MAX;
/// `LoopInner::waker_slot` when the table was full.
const SLOT_NONE: u16 = u16::MAX - 1;
/// Task indexes that fit next to the loop slot and the key's version.
const MAX_BITS_INDEX: u64 = 1 << 24;

fn wake_table() -> std::sync::MutexGuard<'static, Vec<Option<std::sync::Weak<RemoteShared>>>> {
    WAKE_TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The wake table locked, for `sys::fork` to hold across a `fork()` so the
/// child never inherits it locked by a thread that did not come along.
pub(crate) fn hold_wake_table_for_fork() -> Box<dyn Any> {
    Box::new(wake_table())
}

/// The loop's slot in the wake table, claiming one on first use.
#[inline]
fn waker_slot(inner: &LoopInner) -> Option<u16> {
    let slot = inner.waker_slot.get();
    if (slot as usize) < WAKE_SLOTS {
        return Some(slot);
    }
    claim_waker_slot(inner)
}

#[cold]
fn claim_waker_slot(inner: &LoopInner) -> Option<u16> {
    let mut slot = inner.waker_slot.get();
    if slot == SLOT_UNCLAIMED {
        let mut table = wake_table();
        let free = table.iter().position(Option::is_none);
        slot = match free {
            Some(i) => i as u16,
            None if table.len() < WAKE_SLOTS => {
                table.push(None);
                (table.len() - 1) as u16
            }
            None => SLOT_NONE,
        };
        if let Some(entry) = table.get_mut(slot as usize) {
            *entry = Some(Arc::downgrade(&inner.remote));
        }
        inner.waker_slot.set(slot);
    }
    (slot != SLOT_NONE).then_some(slot)
}

/// Frees the loop's wake-table slot (the loop is being dropped). Wakers
/// still naming it become no-ops, or spurious wakes of a later loop's task.
pub(crate) fn release_waker_slot(inner: &LoopInner) {
    let slot = inner.waker_slot.replace(SLOT_UNCLAIMED);
    if (slot as usize) < WAKE_SLOTS
        && let Some(entry) = wake_table().get_mut(slot as usize)
    {
        *entry = None;
    }
}

/// The bits of a task waker: slot (8) | key index (24) | key version (32);
/// `None` for a loop without a slot or a key that does not fit.
#[inline]
fn encode(slot: u16, key: TaskKey) -> Option<usize> {
    let ffi = key.data().as_ffi();
    let (index, version) = (ffi & 0xffff_ffff, ffi >> 32);
    (index < MAX_BITS_INDEX && (slot as usize) < WAKE_SLOTS)
        .then_some((((slot as u64) << 56) | (index << 32) | version) as usize)
}

fn decode(bits: usize) -> (u16, u64) {
    let bits = bits as u64;
    let (index, version) = ((bits >> 32) & (MAX_BITS_INDEX - 1), bits & 0xffff_ffff);
    ((bits >> 56) as u16, (version << 32) | index)
}

/// What a task's bits waker does.
struct TaskWake;

impl BitsWaker for TaskWake {
    fn wake(bits: usize) {
        let (slot, key) = decode(bits);
        let woken_here = LoopInner::with_running(|running| match running {
            Some(inner) if inner.waker_slot.get() == slot => {
                wake_on_loop(inner, key);
                true
            }
            _ => false,
        });
        if !woken_here {
            // Another thread, or the loop is not running right now.
            let remote = wake_table().get(slot as usize).and_then(|e| e.as_ref()?.upgrade());
            if let Some(remote) = remote {
                let _ = remote.push(RemoteItem::Wake(key));
            }
        }
    }
}

/// The waker of a task whose loop has no wake-table slot (more than
/// [`WAKE_SLOTS`] loops alive) or whose key does not fit in the bits: one
/// allocation per poll, the slow path nobody should normally take.
struct TaskWaker {
    loop_id: u64,
    key: u64,
    remote: Arc<RemoteShared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let woken_here = LoopInner::with_running(|running| match running {
            Some(inner) if inner.id == self.loop_id => {
                wake_on_loop(inner, self.key);
                true
            }
            _ => false,
        });
        if !woken_here {
            // After `close` the push fails, and a wake of a dead task is a
            // no-op.
            let _ = self.remote.push(RemoteItem::Wake(self.key));
        }
    }
}

/// The allocated waker for the task `key` of `inner`.
fn fallback_waker(inner: &LoopInner, key: TaskKey) -> Waker {
    Waker::from(Arc::new(TaskWaker {
        loop_id: inner.id,
        key: key.data().as_ffi(),
        remote: inner.remote.clone(),
    }))
}

/// The key bits of `run_until_complete`'s future (task/run.rs): version 0,
/// which no slot-map key has (their versions are odd).
pub(crate) const MAIN_KEY: u64 = 0;

/// The waker of `run_until_complete`'s future on `inner`: bits naming
/// [`MAIN_KEY`], or the allocated fallback.
#[inline]
pub(crate) fn main_waker(inner: &LoopInner) -> Waker {
    let slot = inner.waker_slot.get();
    if (slot as usize) < WAKE_SLOTS {
        return bits_waker::<TaskWake>(((slot as u64) << 56 | MAIN_KEY) as usize);
    }
    main_waker_slow(inner)
}

#[cold]
fn main_waker_slow(inner: &LoopInner) -> Waker {
    match waker_slot(inner) {
        Some(slot) => bits_waker::<TaskWake>(((slot as u64) << 56 | MAIN_KEY) as usize),
        None => Waker::from(Arc::new(TaskWaker {
            loop_id: inner.id,
            key: MAIN_KEY,
            remote: inner.remote.clone(),
        })),
    }
}

/// Schedules the task with `key` on `inner`'s ready queue, unless it has
/// finished or is already scheduled.
pub(crate) fn wake_on_loop(inner: &LoopInner, key: u64) {
    if key == MAIN_KEY {
        inner.main.schedule(inner);
        return;
    }
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

/// A task as its [`Future`] handles see it (through `TaskPart::as_task`):
/// what `Task<T>`'s own methods need. `state` is the block's result state.
pub(crate) trait TaskControl<T: 'static> {
    /// `Task::cancel`.
    fn cancel(&self, state: &FutureState<T>) -> bool;
    fn id(&self) -> u64;
    fn name(&self) -> String;
    fn set_name(&self, name: Box<str>);
    fn location(&self) -> &'static Location<'static>;
    /// The loop's `Rc` of the task, while it is unfinished.
    fn slot(&self, state: &FutureState<T>) -> Option<TaskSlot>;
}

/// A task's number and name: asked for rarely, so kept out of line and
/// made on first use.
struct TaskInfo {
    id: u64,
    name: Option<Box<str>>,
}

/// What a task's block holds after its result state.
struct TaskRest<T: 'static> {
    key: TaskKey,
    location: &'static Location<'static>,
    info: Cell<Option<Box<TaskInfo>>>,
    coro: Cell<Option<BoxFuture<T>>>,
}

/// The task: result state, header and wrapped future in one `Rc` block;
/// its `Future<T>` handles are the same block seen as `Shared<T>`.
///
/// Kept small on purpose (88 bytes for a `u64` result, 104 with the `Rc`
/// counts; 120 is the largest request glibc serves from its fast bins, and
/// a task that misses them costs a few hundred instructions more in
/// `malloc`/`free` when tasks are made in bursts). Hence the lazy
/// [`TaskInfo`], the task flags living in the result state's flag byte,
/// the boxed waiter list (8 bytes; most tasks have none), and no self
/// handle (the loop's slot map has the `Rc` while the task is unfinished).
type TaskCore<T> = Shared<T, TaskRest<T>>;

impl<T: 'static> TaskRest<T> {
    /// The task's `Rc` in its loop, while it is unfinished.
    fn registered(&self, state: &FutureState<T>) -> Option<(EventLoop, TaskSlot)> {
        let lp = state.weak_loop().upgrade()?;
        let slot = lp.inner.tasks.borrow().get(self.key).cloned()?;
        Some((lp, slot))
    }

    fn info<R>(&self, f: impl FnOnce(&mut TaskInfo) -> R) -> R {
        let mut info = self.info.take().unwrap_or_else(|| {
            Box::new(TaskInfo { id: NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed), name: None })
        });
        let out = f(&mut info);
        self.info.set(Some(info));
        out
    }
}

impl<T: 'static> TaskCore<T> {
    fn finish(&self, outcome: std::result::Result<T, Error>) {
        // Removed from the loop: it will never step again. The removed
        // `Rc` is the handle done callbacks get.
        let removed =
            self.state.weak_loop().upgrade().and_then(|lp| lp.inner.tasks.borrow_mut().remove(self.rest.key));
        let handle = removed.and_then(|slot| slot.into_any().downcast::<TaskCore<T>>().ok());
        match handle {
            Some(core) => {
                let handle = Future { inner: core as Rc<Shared<T>> };
                let _ = self.state.finish(outcome, &handle);
            }
            // No loop left to run callbacks: just record the outcome.
            None => self.state.finish_unscheduled(outcome),
        }
    }
}

impl<T: 'static> Runnable for TaskCore<T> {
    /// One step: poll the wrapped future once.
    fn run(&self) -> bool {
        self.state.set_flag(SCHEDULED, false);
        let Some(mut coro) = self.rest.coro.take() else { return false };
        if self.state.flag(CANCEL_REQUESTED) {
            drop(coro);
            self.finish(Err(Error::Cancelled));
            return true;
        }
        let waker = match encode(self.state.waker_slot.get(), self.rest.key) {
            Some(bits) => bits_waker::<TaskWake>(bits),
            None => {
                let Some(lp) = self.state.weak_loop().upgrade() else { return false };
                fallback_waker(&lp.inner, self.rest.key)
            }
        };
        let polled = {
            let mut cx = Context::from_waker(&waker);
            std::panic::catch_unwind(AssertUnwindSafe(|| coro.as_mut().poll(&mut cx)))
        };
        match polled {
            Ok(Poll::Pending) => self.rest.coro.set(Some(coro)),
            Ok(Poll::Ready(value)) => {
                drop(coro);
                // asyncio: a task that cancelled itself and then returned
                // still ends cancelled.
                if self.state.flag(CANCEL_REQUESTED) {
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
        true
    }

    fn location(&self) -> &'static Location<'static> {
        self.rest.location
    }
}

impl<T: 'static> TaskStep for TaskCore<T> {
    fn mark_scheduled(&self) -> bool {
        !self.state.set_flag(SCHEDULED, true)
    }

    fn into_any(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }

    fn request_cancel(&self) {
        self.rest.cancel(&self.state);
    }

    fn abandon(&self) -> Box<dyn Any> {
        let coro = self.rest.coro.take();
        let waiting = self.state.abandon();
        Box::new((coro, waiting))
    }
}

impl<T: 'static> TaskPart<T> for TaskRest<T> {
    fn as_task(&self) -> Option<&dyn TaskControl<T>> {
        Some(self)
    }
}

impl<T: 'static> TaskControl<T> for TaskRest<T> {
    fn cancel(&self, state: &FutureState<T>) -> bool {
        if state.done() {
            return false;
        }
        if !state.set_flag(CANCEL_REQUESTED, true)
            && let Some((lp, slot)) = self.registered(state)
            && slot.mark_scheduled()
        {
            lp.inner.push_ready(slot);
        }
        true
    }

    fn id(&self) -> u64 {
        self.info(|info| info.id)
    }

    fn name(&self) -> String {
        self.info(|info| match &info.name {
            Some(name) => name.to_string(),
            None => format!("Task-{}", info.id),
        })
    }

    fn set_name(&self, name: Box<str>) {
        self.info(|info| info.name = Some(name));
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }

    fn slot(&self, state: &FutureState<T>) -> Option<TaskSlot> {
        self.registered(state).map(|(_, slot)| slot)
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
/// without `close()` drops every unfinished task's future. A future that
/// itself holds an `EventLoop` (a task that captured `lp` to call
/// `lp.sock_recv(..)`) is such a handle, and keeps the loop alive until
/// [`close`](EventLoop::close) drops it.
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
        let inner = &self.inner;
        let coro: BoxFuture<F::Output> = Box::pin(fut);
        // Read the caller here: `#[track_caller]` does not reach into the
        // closure below, where `Location::caller()` would name this file.
        let location = Location::caller();
        let mut created = None;
        let weak_loop = self.downgrade();
        inner.tasks.borrow_mut().insert_with_key(|key| {
            let core = Rc::new(TaskCore {
                state: FutureState::new(weak_loop),
                rest: TaskRest { key, location, info: Cell::new(None), coro: Cell::new(Some(coro)) },
            });
            created = Some(core.clone());
            core
        });
        let core = created.expect("insert_with_key calls its closure");
        core.state.waker_slot.set(waker_slot(inner).unwrap_or(u16::MAX));
        core.state.set_flag(SCHEDULED | IS_TASK, true);
        self.inner.push_ready(core.clone());
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
    fn control(&self) -> &dyn TaskControl<T> {
        self.fut.inner.rest.as_task().expect("a Task's future is a task block")
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
        self.control().cancel(&self.fut.inner.state)
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

    /// The loop's type-erased view of this task, while it is unfinished.
    pub(crate) fn slot(&self) -> Option<TaskSlot> {
        self.control().slot(&self.fut.inner.state)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_block_fits_glibcs_fast_bins() {
        // `Rc` adds its two counts: 104 + 16 = 120 bytes, the largest
        // request glibc's fast bins serve on 64-bit targets.
        assert!(std::mem::size_of::<TaskCore<u64>>() <= 104, "{}", std::mem::size_of::<TaskCore<u64>>());
    }

    #[test]
    fn waker_bits_round_trip() {
        let key = TaskKey::from(KeyData::from_ffi((7u64 << 32) | 0x12_3456));
        let bits = encode(200, key).expect("fits");
        assert_eq!(decode(bits), (200, key.data().as_ffi()));
        let too_big = TaskKey::from(KeyData::from_ffi((7u64 << 32) | (1 << 24)));
        assert_eq!(encode(1, too_big), None);
    }
}

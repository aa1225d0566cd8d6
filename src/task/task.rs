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
//! A task is one allocation (async-task's shape): result state, header
//! and the wrapped future inline, in one `Rc` block. Every holder of the
//! block — its `Future<T>`/`Task<T>` handles (the block seen as
//! `Shared<T>`), the loop's task map ([`TaskSlot`]) and the ready queue
//! (a `TaskEntry`, the block's `Rc` stored inline in the queue element as
//! a `ForeignEntry`) — holds it as `Pin<Rc<_>>`, which unsizes, clones and
//! derefs like `Rc`; so the future never moves, and the one `unsafe` step
//! (polling and dropping it in place through a shared pinned reference)
//! lives in `sys::pinned` with its proof. A step takes the queue's
//! `Pin<Rc<Self>>` (a dispatchable receiver), which is also how a finishing
//! task hands its done callbacks a typed handle without a downcast. The
//! header is kept small so the block fits glibc's fast bins (120 bytes
//! with the `Rc` counts) for a future of up to 16 bytes (`async { i }`
//! with a `u64` result fills it exactly: any header growth leaves them); a
//! block that leaves them costs a few hundred instructions in
//! `malloc`/`free` when tasks come in bursts (measured: 16 more bytes took
//! `task_spawn` from 1171 to 1481).

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
use crate::runtime::handle::{ForeignEntry, Ready};
use crate::runtime::remote::{RemoteItem, RemoteShared};
use crate::sys::pinned::{PinCell, Pinned, PinnedHead};
use crate::sys::waker::{BitsWaker, bits_waker};
use crate::task::future::{
    CANCEL_REQUESTED, CallbackId, Future, FutureOwned, FutureState, IS_TASK, SCHEDULED, Shared, TaskPart,
};

slotmap::new_key_type! {
    /// A task's place in its loop.
    pub(crate) struct TaskKey;
}

/// What the loop keeps of a task, type-erased: the pinned block.
pub(crate) type TaskSlot = Pin<Rc<dyn TaskStep>>;

/// A task as the loop sees it.
pub(crate) trait TaskStep {
    /// One step: polls the wrapped future once. False if the step was
    /// skipped (the future is gone: finished, cancelled, abandoned).
    /// Consumes the ready queue's `Rc`; a finishing task gives it to its
    /// done callbacks as their handle.
    fn step(self: Pin<Rc<Self>>) -> bool;
    /// Marks the task as queued; false if it already was.
    fn mark_scheduled(&self) -> bool;
    /// Drops the wrapped future where it lies (for `close` and loop drop,
    /// called with no borrow alive); a no-op while the future is being
    /// polled.
    fn drop_future(self: Pin<&Self>);
    /// Takes out everything waiting on the task, for `close`; the caller
    /// drops it outside any borrow.
    fn abandon(&self) -> Box<dyn Any>;
    /// `Task::cancel` without knowing `T`.
    fn request_cancel(&self);
    /// Where the task was created.
    fn location(&self) -> &'static Location<'static>;
    /// The task's number ([`Task::id`]).
    fn task_id(&self) -> u64;
    /// The task's name ([`Task::name`]).
    fn task_name(&self) -> String;
    /// Renames the task.
    fn set_task_name(&self, name: Box<str>);
    /// Whether the task is done, and whether it was cancelled.
    fn task_done(&self) -> (bool, bool);
}

thread_local! {
    /// The key bits of the task whose step is running on this thread
    /// (`MAIN_KEY`, 0, for none): what `current_task` looks up. One loop
    /// runs per thread at a time, so the key alone names the task.
    static CURRENT: Cell<u64> = const { Cell::new(MAIN_KEY) };
}

/// The task whose step is running on this thread, if any, on `lp`.
pub(crate) fn current_slot(lp: &EventLoop) -> Option<TaskSlot> {
    let key = CURRENT.get();
    if key == MAIN_KEY {
        return None;
    }
    lp.inner.tasks.borrow().get(TaskKey::from(KeyData::from_ffi(key))).cloned()
}

/// A task step on the ready queue: the task's block itself, stored inline
/// in the queue element (see [`ForeignEntry`]), so scheduling a task
/// allocates nothing.
struct TaskEntry(TaskSlot);

impl ForeignEntry for TaskEntry {
    #[inline]
    fn run(self) {
        self.0.step();
    }

    fn location(&self) -> Option<&'static Location<'static>> {
        Some(self.0.location())
    }
}

/// Whether a ready-queue element is a task step: loop-made, though it is
/// stored as a foreign entry (`clear_entries` keeps it).
pub(crate) fn is_task_step(entry: &Ready) -> bool {
    entry.downcast_ref::<TaskEntry>().is_some()
}

/// Queues a step of `task` on `inner`'s ready queue.
#[inline]
fn push_step(inner: &LoopInner, task: TaskSlot) {
    inner.push_entry(TaskEntry(task));
}

/// Drops a task's future in place when dropped: what `take_all` leaves
/// for its caller to drop outside its borrows.
struct DropFuture(TaskSlot);

impl Drop for DropFuture {
    fn drop(&mut self) {
        self.0.as_ref().drop_future();
    }
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
        push_step(inner, task);
    }
}

/// Removes every task from the loop (on `close`), dropping their futures;
/// returns what must be dropped after the caller's borrows end.
pub(crate) fn take_all(inner: &LoopInner) -> Vec<Box<dyn Any>> {
    let tasks: Vec<TaskSlot> = inner.tasks.borrow_mut().drain().map(|(_, t)| t).collect();
    let mut leftovers: Vec<Box<dyn Any>> = Vec::with_capacity(tasks.len() * 2 + 1);
    for task in &tasks {
        leftovers.push(Box::new(DropFuture(task.clone())));
        leftovers.push(task.abandon());
    }
    leftovers.push(Box::new(tasks));
    leftovers
}

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

/// A task's own fields, after its result state.
struct TaskHead {
    key: TaskKey,
    location: &'static Location<'static>,
    info: Cell<Option<Box<TaskInfo>>>,
    /// The task's span (the `tracing` feature), made at its first step,
    /// when a name given right after creation is already set.
    #[cfg(feature = "tracing")]
    span: std::cell::OnceCell<tracing::Span>,
}

impl<F> PinnedHead<PinCell<F>> for TaskHead {}

/// What a task's block holds after its result state: its fields, then the
/// wrapped future inline, pinned.
type TaskRest<F> = Pinned<TaskHead, PinCell<F>>;

/// The task: result state, header and wrapped future in one pinned `Rc`
/// block; its `Future<T>` handles are the same block seen as `Shared<T>`.
///
/// Kept small on purpose (104 bytes for a `u64` result and an
/// `async { i }` future, 120 with the `Rc` counts: exactly the largest
/// request glibc serves from its fast bins; a task that misses them costs
/// a few hundred instructions more in `malloc`/`free` when tasks are made
/// in bursts). Hence the lazy [`TaskInfo`], the task flags living in the
/// result state's flag byte, the boxed waiter list (8 bytes; most tasks
/// have none), and no self handle (the loop's slot map has the `Rc` while
/// the task is unfinished).
type TaskCore<T, F> = Shared<T, TaskRest<F>>;

impl TaskHead {
    /// The task's `Rc` in its loop, while it is unfinished.
    fn registered<T>(&self, state: &FutureState<T>) -> Option<(EventLoop, TaskSlot)> {
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

    /// The span entered around each poll: `task` at INFO level, target
    /// `evloop::task`, with the task's name, number and spawn location.
    /// No parent: a task outlives the code that spawned it.
    #[cfg(feature = "tracing")]
    fn span(&self) -> &tracing::Span {
        self.span.get_or_init(|| {
            let (id, name) = self.info(|info| (info.id, info.name.clone()));
            let name = name.map_or_else(|| format!("Task-{id}"), String::from);
            tracing::info_span!(
                target: "evloop::task",
                parent: None,
                "task",
                task.name = %name,
                task.id = id,
                spawn.location = %self.location,
            )
        })
    }
}

impl<T: 'static, F: std::future::Future<Output = T> + 'static> TaskCore<T, F> {
    /// The task's fields and its future's cell.
    #[inline]
    fn parts(self: Pin<&Self>) -> (&TaskHead, Pin<&PinCell<F>>) {
        let rest = self.rest_pinned();
        (rest.get_ref().head(), rest.rest_pinned())
    }

    fn finish(self: &Pin<Rc<Self>>, outcome: std::result::Result<T, Error>) {
        let state = self.head();
        // Removed from the loop: it will never step again. The task's own
        // `Rc` is the handle done callbacks get.
        let key = self.rest().head().key;
        let removed = state.weak_loop().upgrade().and_then(|lp| lp.inner.tasks.borrow_mut().remove(key));
        match removed {
            Some(slot) => {
                drop(slot);
                let handle = Future { inner: self.clone() as Pin<Rc<Shared<T>>> };
                let _ = state.finish(outcome, &handle);
            }
            // No loop left to run callbacks: just record the outcome.
            None => state.finish_unscheduled(outcome),
        }
    }
}

impl<T: 'static, F: std::future::Future<Output = T> + 'static> TaskStep for TaskCore<T, F> {
    fn step(self: Pin<Rc<Self>>) -> bool {
        let state = self.head();
        state.set_flag(SCHEDULED, false);
        let (head, fut) = self.as_ref().parts();
        if state.flag(CANCEL_REQUESTED) {
            // False: the future is already gone (finished or abandoned).
            if !fut.clear() {
                return false;
            }
            self.finish(Err(Error::Cancelled));
            return true;
        }
        let waker = match encode(state.waker_slot.get(), head.key) {
            Some(bits) => bits_waker::<TaskWake>(bits),
            None => {
                let Some(lp) = state.weak_loop().upgrade() else { return false };
                fallback_waker(&lp.inner, head.key)
            }
        };
        let polled = {
            #[cfg(feature = "tracing")]
            let _entered = head.span().enter();
            let mut cx = Context::from_waker(&waker);
            let outer = CURRENT.replace(head.key.data().as_ffi());
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)));
            CURRENT.set(outer);
            polled
        };
        match polled {
            Ok(Some(Poll::Pending)) => {}
            // The future is gone, or busy (a step from inside its own
            // poll): nothing to do.
            Ok(None) => return false,
            Ok(Some(Poll::Ready(value))) => {
                fut.clear();
                // asyncio: a task that cancelled itself and then returned
                // still ends cancelled.
                if state.flag(CANCEL_REQUESTED) {
                    drop(value);
                    self.finish(Err(Error::Cancelled));
                } else {
                    self.finish(Ok(value));
                }
            }
            Err(payload) => {
                // Dropping a future that panicked may panic again; that
                // second panic must not escape the loop.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| fut.clear()));
                self.finish(Err(Error::Panicked(panic_message(&*payload))));
            }
        }
        true
    }

    fn mark_scheduled(&self) -> bool {
        !self.head().set_flag(SCHEDULED, true)
    }

    fn drop_future(self: Pin<&Self>) {
        self.parts().1.clear();
    }

    fn abandon(&self) -> Box<dyn Any> {
        Box::new(self.head().abandon())
    }

    fn request_cancel(&self) {
        self.rest().head().cancel(self.head());
    }

    fn location(&self) -> &'static Location<'static> {
        self.rest().head().location
    }

    fn task_id(&self) -> u64 {
        TaskControl::<T>::id(self.rest().head())
    }

    fn task_name(&self) -> String {
        TaskControl::<T>::name(self.rest().head())
    }

    fn set_task_name(&self, name: Box<str>) {
        TaskControl::<T>::set_name(self.rest().head(), name);
    }

    fn task_done(&self) -> (bool, bool) {
        (self.head().done(), self.head().cancelled())
    }
}

impl<T: 'static, F: std::future::Future<Output = T> + 'static> TaskPart<T> for TaskRest<F> {
    fn as_task(&self) -> Option<&dyn TaskControl<T>> {
        Some(self.head())
    }
}

impl<T: 'static> TaskControl<T> for TaskHead {
    fn cancel(&self, state: &FutureState<T>) -> bool {
        if state.done() {
            return false;
        }
        if !state.set_flag(CANCEL_REQUESTED, true)
            && let Some((lp, slot)) = self.registered(state)
            && slot.mark_scheduled()
        {
            push_step(&lp.inner, slot);
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
        #[cfg(feature = "tracing")]
        if let Some(span) = self.span.get() {
            span.record("task.name", tracing::field::display(&name));
        }
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
        // Read the caller here: `#[track_caller]` does not reach into the
        // closure below, where `Location::caller()` would name this file.
        let location = Location::caller();
        let mut created = None;
        let weak_loop = self.downgrade();
        inner.tasks.borrow_mut().insert_with_key(|key| {
            let head = TaskHead {
                key,
                location,
                info: Cell::new(None),
                #[cfg(feature = "tracing")]
                span: std::cell::OnceCell::new(),
            };
            let core: Pin<Rc<TaskCore<F::Output, F>>> =
                Rc::pin(Pinned::new(FutureState::new(weak_loop), Pinned::new(head, PinCell::new(fut))));
            created = Some(core.clone());
            core
        });
        let core = created.expect("insert_with_key calls its closure");
        let state = core.head();
        state.waker_slot.set(waker_slot(inner).unwrap_or(u16::MAX));
        state.set_flag(SCHEDULED | IS_TASK, true);
        push_step(inner, core.clone());
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
        self.fut.inner.rest().as_task().expect("a Task's future is a task block")
    }

    /// The task's number, unique in the process; the default name is
    /// `Task-<id>`. Numbers are handed out when first asked for (`id`,
    /// `name`, `Debug`), not at creation, so that creating a task costs no
    /// counter: they follow the order of asking (asyncio numbers tasks as
    /// they are created).
    pub fn id(&self) -> u64 {
        self.control().id()
    }

    /// The task's name (`Task-N` unless set).
    pub fn name(&self) -> String {
        self.control().name()
    }

    /// The task's name (asyncio's spelling of [`name`](Task::name)).
    pub fn get_name(&self) -> String {
        self.name()
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
        self.control().cancel(self.fut.inner.head())
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
        self.control().slot(self.fut.inner.head())
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

    // The `tracing` feature adds the task's span to the header.
    #[cfg(not(feature = "tracing"))]
    #[test]
    fn a_task_block_fits_glibcs_fast_bins() {
        fn block_size<F: std::future::Future + 'static>(_: &F) -> usize {
            std::mem::size_of::<TaskCore<F::Output, F>>()
        }
        let i = 7u64;
        let fut = async move { i };
        // `Rc` adds its two counts: 104 + 16 = 120 bytes, the largest
        // request glibc's fast bins serve on 64-bit targets.
        assert!(block_size(&fut) <= 104, "{}", block_size(&fut));
        eprintln!("task block: {} bytes", block_size(&fut));
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

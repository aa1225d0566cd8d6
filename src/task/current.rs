//! Tasks seen from outside their type: [`current_task`], [`all_tasks`],
//! the type-erased [`AnyTask`] they give, and named task creation.
//!
//! Invariant: an `AnyTask` is the loop's own `Rc` of the task, so it keeps
//! the task's block (not its loop) alive and sees the same state and name
//! as every `Task<T>` handle of it.

use std::fmt;
use std::panic::Location;

use crate::runtime::event_loop::{EventLoop, get_running_loop, running_loop};
use crate::task::task::{Task, TaskSlot, current_slot};

impl EventLoop {
    /// [`create_task`](EventLoop::create_task) with a name (asyncio's
    /// `create_task(coro, name=...)`).
    ///
    /// # Panics
    ///
    /// With "event loop is closed" if the loop was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let lp = evloop::EventLoop::new()?;
    /// let task = lp.create_task_named("worker-1", async { 1 });
    /// assert_eq!(task.get_name(), "worker-1");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn create_task_named<F>(&self, name: impl Into<String>, fut: F) -> Task<F::Output>
    where
        F: std::future::Future + 'static,
    {
        let task = self.create_task(fut);
        task.set_name(name);
        task
    }

    /// The loop's unfinished tasks (asyncio's `all_tasks(loop)`), in no
    /// particular order, as type-erased [`AnyTask`] handles.
    pub fn all_tasks(&self) -> Vec<AnyTask> {
        self.inner.tasks.borrow().values().map(|slot| AnyTask { slot: slot.clone() }).collect()
    }
}

/// [`spawn`](crate::spawn) with a name (asyncio's `create_task(coro, name=...)`).
///
/// # Panics
///
/// If no loop is running on this thread.
#[track_caller]
pub fn spawn_named<F>(name: impl Into<String>, fut: F) -> Task<F::Output>
where
    F: std::future::Future + 'static,
{
    running_loop("spawn_named").create_task_named(name, fut)
}

/// The task whose step is running now (asyncio's `current_task()`), or
/// `None` outside a task: in a plain callback, outside a running loop, and
/// in the future given to [`run_until_complete`](EventLoop::run_until_complete)
/// or [`run`](crate::run) itself, which evloop polls without a task
/// around it (asyncio wraps it in one). `spawn` it to make it a task.
///
/// # Examples
///
/// ```
/// evloop::run(async {
///     let task = evloop::spawn_named("me", async {
///         evloop::current_task().map(|t| t.name())
///     });
///     assert_eq!(task.await.unwrap().as_deref(), Some("me"));
///     assert!(evloop::current_task().is_none(), "the main future is not a task");
/// })?;
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn current_task() -> Option<AnyTask> {
    let lp = get_running_loop().ok()?;
    current_slot(&lp).map(|slot| AnyTask { slot })
}

/// The running loop's unfinished tasks (asyncio's `all_tasks()`); see
/// [`EventLoop::all_tasks`].
///
/// # Panics
///
/// If no loop is running on this thread.
pub fn all_tasks() -> Vec<AnyTask> {
    running_loop("all_tasks").all_tasks()
}

/// A handle to a task of any output type: what [`current_task`] and
/// [`all_tasks`] give. It has a [`Task`]'s name, state and `cancel`, but
/// not its result (the type is not known here).
#[derive(Clone)]
pub struct AnyTask {
    slot: TaskSlot,
}

impl AnyTask {
    /// The task's number ([`Task::id`]).
    pub fn id(&self) -> u64 {
        self.slot.task_id()
    }

    /// The task's name ([`Task::name`]).
    pub fn name(&self) -> String {
        self.slot.task_name()
    }

    /// The task's name (asyncio's spelling of [`name`](AnyTask::name)).
    pub fn get_name(&self) -> String {
        self.name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        self.slot.set_task_name(name.into().into_boxed_str());
    }

    /// Asks the task to stop, as [`Task::cancel`]; false if it is done.
    pub fn cancel(&self) -> bool {
        if self.done() {
            return false;
        }
        self.slot.request_cancel();
        true
    }

    /// Whether the task is finished.
    pub fn done(&self) -> bool {
        self.slot.task_done().0
    }

    /// Whether the task was cancelled.
    pub fn cancelled(&self) -> bool {
        self.slot.task_done().1
    }

    /// Where the task was created.
    pub fn location(&self) -> &'static Location<'static> {
        self.slot.location()
    }
}

impl fmt::Debug for AnyTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyTask")
            .field("name", &self.name())
            .field("done", &self.done())
            .field("created_at", &format_args!("{}", self.location()))
            .finish()
    }
}

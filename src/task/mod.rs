//! Futures and tasks on the loop: [`Future`], [`Task`], the time helpers
//! ([`sleep`], [`yield_now`], [`interval`], the [`timeout`] scopes),
//! [`gather`], [`wait_for`], [`wait`], [`as_completed`] and [`shield`],
//! the [`TaskGroup`], the thread-pool [`executor`] and [`to_thread`], and
//! [`Runner`] with [`run`].
//!
//! The crate root re-exports the names; the future types that adapters
//! return (`Sleep`, `Gather`, `WaitFor`, `TaskJoin`…) live here.
//!
//! With the `tracing` cargo feature, every task has a span: `task` at
//! INFO level, target `evloop::task`, with the fields `task.name` (its
//! name at its first poll, recorded again by a later `set_name`),
//! `task.id` and `spawn.location` (where `create_task`/`spawn` was
//! called), and no parent (a task outlives its spawner). It is made at
//! the task's first poll and entered around each poll, so events logged
//! inside a task carry it. The future given to `run_until_complete` or
//! `run` is not a task and has none. Filter the spans out with an
//! `evloop::task=off` directive.

pub(crate) mod current;
pub mod executor;
pub(crate) mod future;
pub(crate) mod helpers;
pub(crate) mod interval;
pub(crate) mod run;
pub(crate) mod runner;
#[allow(clippy::module_inception)]
pub(crate) mod task;
pub(crate) mod timeout;
pub(crate) mod wait;

pub use current::{AnyTask, all_tasks, current_task, spawn_named};
pub use executor::{ToThread, to_thread};
pub use future::{CallbackId, Future, FutureOwned, FutureRef};
pub use helpers::{
    Gather, GatherResults, Sleep, TaskGroup, TaskGroupWait, WaitFor, YieldNow, gather, gather_results, sleep,
    sleep_until, wait_for, yield_now,
};
pub use interval::{Interval, interval};
pub use run::Awaitable;
pub use runner::{Runner, RunnerBuilder, run};
pub use task::{Task, TaskJoin, spawn};
pub use timeout::{Timeout, TimeoutScope, timeout, timeout_at};
pub use wait::{AsCompleted, IntoTask, ReturnWhen, Shield, Wait, Watched, as_completed, shield, wait};

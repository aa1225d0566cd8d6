//! Futures and tasks on the loop: [`Future`], [`Task`], the time helpers
//! ([`sleep`], [`yield_now`], [`interval`], the [`timeout`] scopes),
//! [`gather`], [`wait_for`], [`wait`], [`as_completed`] and [`shield`],
//! the [`TaskGroup`], the thread-pool [`executor`] and [`to_thread`], and
//! [`Runner`] with [`run`].
//!
//! The crate root re-exports the names; the future types that adapters
//! return (`Sleep`, `Gather`, `WaitFor`, `TaskJoin`…) live here.

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

pub use executor::{ToThread, to_thread};
pub use future::{CallbackId, Future, FutureOwned, FutureRef};
pub use helpers::{
    Gather, GatherResults, Sleep, TaskGroup, TaskGroupWait, WaitFor, YieldNow, gather, gather_results, sleep,
    sleep_until, wait_for, yield_now,
};
pub use interval::{Interval, interval};
pub use run::Awaitable;
pub use runner::{RunOptions, Runner, RunnerBuilder, run, run_with};
pub use task::{AnyTask, Task, TaskJoin, all_tasks, current_task, spawn, spawn_named};
pub use timeout::{Timeout, TimeoutScope, timeout, timeout_at, timeout_scope, timeout_scope_at};
pub use wait::{AsCompleted, IntoTask, ReturnWhen, Shield, Wait, Watched, as_completed, shield, wait};

//! Futures and tasks on the loop: [`Future`], [`Task`], the time helpers
//! ([`sleep`], [`yield_now`]), [`gather`] and [`wait_for`], the
//! [`TaskGroup`], the thread-pool [`executor`], and [`run`].
//!
//! The crate root re-exports the names; the future types that adapters
//! return (`Sleep`, `Gather`, `WaitFor`, `TaskJoin`…) live here.

pub mod executor;
pub(crate) mod future;
pub(crate) mod helpers;
pub(crate) mod run;
#[allow(clippy::module_inception)]
pub(crate) mod task;

pub use future::{CallbackId, Future, FutureOwned, FutureRef};
pub use helpers::{
    Gather, GatherResults, Sleep, TaskGroup, TaskGroupWait, WaitFor, YieldNow, gather, gather_results, sleep,
    sleep_until, wait_for, yield_now,
};
pub use run::{Awaitable, run};
pub use run::{RunOptions, run_with};
pub use task::{Task, TaskJoin, spawn};

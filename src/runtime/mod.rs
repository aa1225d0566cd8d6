//! The loop itself: the [`EventLoop`] and its `run_once` pass, the fd
//! selector (one lasting Source per fd, and the [`WaitReady`] future), the
//! timer heap, handles, the clock, statistics and the cross-thread door
//! ([`RemoteLoop`]).
//!
//! This layer knows nothing of networking: transports and servers reach it
//! through the fd and ownership API the selector offers.

pub(crate) mod clock;
pub(crate) mod event_loop;
pub(crate) mod fds;
pub(crate) mod guard;
pub(crate) mod handle;
pub(crate) mod owner;
pub(crate) mod readiness;
pub(crate) mod remote;
pub(crate) mod selector;
pub(crate) mod stats;
pub(crate) mod timers;
pub(crate) mod wait;

pub use event_loop::{Builder, EventLoop, ExceptionHandler, get_running_loop};
pub use handle::{ForeignEntry, Handle, TimerHandle, TimerKey};
pub use owner::LoopOwner;
pub use readiness::WaitReady;
pub use remote::{ConcurrentFuture, RemoteLoop};
pub use stats::LoopStats;
pub use wait::{BlockingWait, WaitDone, WaitHook};

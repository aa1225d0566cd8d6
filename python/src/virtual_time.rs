//! The virtual-time loop's state in the binding: only whether
//! `run_until_idle` is running. The clock, and the jump to the next timer
//! once the loop is idle, are the core's (`Builder::autojump`,
//! `EventLoop::next_timer`).

use std::cell::Cell;

/// Settings and state of a virtual-time core.
#[derive(Default)]
pub(crate) struct VirtualTime {
    /// `run_until_idle`: return instead of jumping or blocking.
    pub(crate) idle_mode: Cell<bool>,
}

//! The operating-system surface beside [`net`](crate::net): signals,
//! pipe transports and subprocesses.
//!
//! The invariant this layer keeps: nothing here runs user code outside the
//! loop's own passes. What the OS delivers asynchronously (a signal, a
//! child's exit) is only recorded where it arrives; the loop picks it up
//! in its next pass and runs the user's callback there, like any other
//! callback. Pipes and pidfds are transport-owned Sources of the loop, so
//! its `close()` closes them.

pub mod pipe;
pub mod process;
pub mod signal;

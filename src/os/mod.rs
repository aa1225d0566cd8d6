//! The operating-system surface beside [`net`](crate::net): signals (and,
//! with them, what subprocesses and pipes need).
//!
//! The invariant this layer keeps: nothing here runs user code outside the
//! loop's own passes. What the OS delivers asynchronously (a signal) is
//! only recorded where it arrives, in `sys`; the loop picks it up in its
//! next pass and runs the user's callback there, like any other callback.

pub mod signal;

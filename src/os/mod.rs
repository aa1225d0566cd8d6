//! asyncio's OS surface beside [`net`](crate::net): pipe transports and
//! subprocesses (and signals). Each submodule states its own invariant;
//! all of them hand their fds to the loop as transport-owned Sources, so
//! the loop's `close()` closes them.

pub mod pipe;
pub mod process;

//! Every syscall the crate makes that std and socket2 do not wrap, and every
//! `unsafe` block of the crate (the rest of the crate is
//! `#![deny(unsafe_code)]`). Each function here is a safe wrapper whose
//! `// SAFETY:` comment says why its call is sound.
//!
//! Linux-only pieces say so in their docs; the crate is developed and
//! tested on Linux.

pub(crate) mod dns;
pub(crate) mod downcast;
pub(crate) mod entry;
pub(crate) mod fork;
pub(crate) mod owner;
pub(crate) mod pinned;
pub(crate) mod poller;
pub(crate) mod process;
pub(crate) mod running;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod waker;

//! Running user code that may panic: callbacks, protocol methods, and the
//! destructors of closures the loop drops. Written once, used by every
//! layer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::panic_message;

/// Runs `f`, turning a panic into its message.
pub(crate) fn run_user<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        // The payload itself may panic when dropped; keep that inside too.
        let message = panic_message(&*payload);
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        message
    })
}

/// Drops `value` (user closures, protocols, futures), returning the
/// message of a panic its destructor raised, if any.
pub(crate) fn drop_user<T>(value: T) -> Result<(), String> {
    run_user(move || drop(value))
}

//! What the loop reports when user code fails: [`ExceptionContext`], the
//! default exception handler, and the slow-callback report of debug mode.

use std::fmt;
use std::panic::Location;

use crate::error::Error;

/// Describes an error the loop caught but nobody awaited: a panicking
/// callback, a task that failed with no one to await it, a failed accept.
/// asyncio passes a dict with the same information to its exception handler.
///
/// # Examples
///
/// ```
/// let ctx = evloop::ExceptionContext::new("something went wrong")
///     .with_error(evloop::Error::Timeout);
/// assert_eq!(ctx.message, "something went wrong");
/// assert!(ctx.to_string().contains("timed out"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExceptionContext {
    /// What happened, in a sentence.
    pub message: String,
    /// The error, for a panic [`Error::Panicked`] with the panic message.
    pub error: Option<Error>,
    /// Where the failing callback or task was scheduled.
    pub location: Option<&'static Location<'static>>,
    /// The name of the task involved, if any.
    pub task: Option<String>,
}

impl ExceptionContext {
    /// A context with just a message.
    pub fn new(message: impl Into<String>) -> ExceptionContext {
        ExceptionContext { message: message.into(), error: None, location: None, task: None }
    }

    /// Adds the error.
    pub fn with_error(mut self, error: Error) -> ExceptionContext {
        self.error = Some(error);
        self
    }

    /// Adds the place where the failing callback was scheduled.
    pub fn with_location(mut self, location: &'static Location<'static>) -> ExceptionContext {
        self.location = Some(location);
        self
    }

    /// Adds the name of the task involved.
    pub fn with_task(mut self, name: impl Into<String>) -> ExceptionContext {
        self.task = Some(name.into());
        self
    }
}

impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(task) = &self.task {
            write!(f, "\n  task: {task}")?;
        }
        if let Some(location) = self.location {
            write!(f, "\n  scheduled at: {location}")?;
        }
        if let Some(error) = &self.error {
            write!(f, "\n  error: {error}")?;
        }
        Ok(())
    }
}

/// Writes a report through `log` at `level` when a logger listens at that
/// level, and to stderr otherwise, so that a program without a logger still
/// sees panics and slow callbacks (asyncio's logging has the same fallback).
pub(crate) fn report(level: log::Level, text: fmt::Arguments<'_>) {
    if log::log_enabled!(target: "evloop", level) {
        log::log!(target: "evloop", level, "{text}");
    } else {
        eprintln!("evloop {}: {text}", level.as_str().to_ascii_lowercase());
    }
}

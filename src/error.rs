//! The crate's one error type.

use std::io;

/// Everything that can go wrong in evloop.
///
/// Most variants mirror an asyncio exception: [`Error::Cancelled`] is
/// `asyncio.CancelledError`, [`Error::InvalidState`] is
/// `asyncio.InvalidStateError`, [`Error::Timeout`] is `TimeoutError`.
///
/// `Error` is `Clone` so that a failed [`Future`](crate::Future) can hand the
/// same error to every awaiter; I/O errors are shared behind an `Arc` for that.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event loop is closed; create a new one to schedule more work.
    #[error("event loop is closed")]
    Closed,
    /// `close()` was called while the loop was running; call `stop()` first.
    #[error("cannot close a running event loop; call stop() first")]
    Running,
    /// A `run_*` method was called while this or another loop is already
    /// running on this thread.
    #[error("this event loop is already running (or another loop is running on this thread)")]
    AlreadyRunning,
    /// No loop is running on this thread.
    #[error("no running event loop; call this from inside a callback or task")]
    NoRunningLoop,
    /// `stop()` ended the loop before the future given to
    /// `run_until_complete` finished.
    #[error("event loop stopped before the future completed")]
    StoppedBeforeComplete,
    /// The future or task was cancelled.
    #[error("the operation was cancelled")]
    Cancelled,
    /// An operation that is not allowed in the object's current state, such as
    /// setting the result of a future twice.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// A deadline passed before the operation finished.
    #[error("the operation timed out")]
    Timeout,
    /// A callback or task panicked; the string is the panic message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// EOF came before a stream read got what it needed (asyncio's
    /// `IncompleteReadError`). `partial` holds the bytes that were read;
    /// `expected` is the count `readexactly` wanted (`None` for
    /// `readuntil`).
    #[error("{} bytes read before EOF, {} expected", partial.len(), match expected { Some(n) => n.to_string(), None => "more".to_owned() })]
    IncompleteRead {
        /// What was read before EOF.
        partial: Vec<u8>,
        /// How many bytes were wanted, if known.
        expected: Option<usize>,
    },
    /// A stream's separator was not found within its limit (asyncio's
    /// `LimitOverrunError`); the data stays in the buffer.
    #[error("separator not found within the stream limit ({consumed} bytes examined)")]
    LimitOverrun {
        /// How many bytes are buffered up to the point the limit was hit
        /// (or to the separator, if it was found past the limit).
        consumed: usize,
    },
    /// An operating-system error.
    #[error("I/O error: {0}")]
    Io(std::sync::Arc<io::Error>),
    /// Any other error, supplied by user code.
    #[error("{0}")]
    Other(std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any error type as [`Error::Other`].
    ///
    /// # Examples
    ///
    /// ```
    /// let e = evloop::Error::other(std::fmt::Error);
    /// assert!(matches!(e, evloop::Error::Other(_)));
    /// ```
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Other(std::sync::Arc::new(e))
    }

    /// The OS error number, if this is an [`Error::Io`] from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The OS error kind, if this is an [`Error::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }
}

/// Extracts the text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(std::sync::Arc::new(e))
    }
}

/// `Result<T, evloop::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

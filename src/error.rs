//! The crate's one error type.

use std::fmt;
use std::io;
use std::sync::Arc;

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
    /// A callback called [`EventLoop::interrupt`](crate::EventLoop::interrupt):
    /// the pass ended early and the `run_*` call returned; the callbacks not
    /// yet run stay queued. (An embedder, such as the Python binding, uses
    /// this for `KeyboardInterrupt` and `SystemExit`.)
    #[error("the event loop was interrupted by a callback")]
    Interrupted,
    /// The loop was built before this process was forked: it belongs to
    /// the parent and cannot run in the child. Build a new loop there.
    #[error(
        "this event loop was created in the parent process before fork(); create a new loop in the child"
    )]
    Forked,
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
    /// A [`Barrier`](crate::sync::Barrier) was aborted, reset or broken
    /// while the task waited, or is broken now (asyncio's
    /// `BrokenBarrierError`).
    #[error("the barrier is broken (aborted, reset, or a waiter was cancelled)")]
    BrokenBarrier,
    /// The queue was shut down (asyncio 3.13's `QueueShutDown`): no more
    /// puts, and gets once it is empty.
    #[error("the queue is shut down")]
    QueueShutDown,
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
    /// An operating-system error, with what was being done when it
    /// happened where that helps ("connect to 127.0.0.1:1"). Its
    /// [`source`](std::error::Error::source) is the `io::Error`.
    #[error("{0}")]
    Io(#[source] IoError),
    /// The TLS layer failed: a bad or untrusted certificate, a name
    /// mismatch, a peer that does not speak TLS, an alert from the peer
    /// (see [`net::tls`](crate::net::tls)).
    #[cfg(feature = "tls")]
    #[error("TLS error: {0}")]
    Tls(std::sync::Arc<rustls::Error>),
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
            Error::Io(e) => e.get_ref().raw_os_error(),
            _ => None,
        }
    }

    /// The OS error kind, if this is an [`Error::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.get_ref().kind()),
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
        Error::Io(IoError(Arc::new(IoErrorInner { error: e, context: None })))
    }
}

impl Error {
    /// An [`Error::Io`] that says what was being done: `context` comes
    /// first in the message ("connect to 127.0.0.1:1: Connection refused").
    pub(crate) fn io_context(error: io::Error, context: impl fmt::Display) -> Error {
        let context = Some(context.to_string().into_boxed_str());
        Error::Io(IoError(Arc::new(IoErrorInner { error, context })))
    }

    /// Adds `context` to an [`Error::Io`] (replacing any it had); other
    /// errors pass through unchanged.
    pub(crate) fn with_context(self, context: impl fmt::Display) -> Error {
        let Error::Io(IoError(inner)) = self else { return self };
        let error = match Arc::try_unwrap(inner) {
            Ok(inner) => inner.error,
            // Shared with another holder: an equal error (same OS number,
            // or same kind and message).
            Err(shared) => match shared.error.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(shared.error.kind(), shared.error.to_string()),
            },
        };
        Error::io_context(error, context)
    }
}

/// The `io::Error` inside [`Error::Io`], shared (so `Error` stays `Clone`)
/// and with an optional description of what failed. Derefs to the
/// `io::Error`, so `e.kind()` and `e.raw_os_error()` work on it directly.
///
/// # Examples
///
/// ```
/// use std::io;
/// let e = evloop::Error::from(io::Error::from(io::ErrorKind::ConnectionRefused));
/// let evloop::Error::Io(inner) = &e else { unreachable!() };
/// assert_eq!(inner.kind(), io::ErrorKind::ConnectionRefused);
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Clone)]
pub struct IoError(Arc<IoErrorInner>);

struct IoErrorInner {
    error: io::Error,
    context: Option<Box<str>>,
}

impl IoError {
    /// The OS error.
    pub fn get_ref(&self) -> &io::Error {
        &self.0.error
    }

    /// What was being done when the error happened, if recorded.
    pub fn context(&self) -> Option<&str> {
        self.0.context.as_deref()
    }
}

impl std::ops::Deref for IoError {
    type Target = io::Error;

    fn deref(&self) -> &io::Error {
        &self.0.error
    }
}

impl fmt::Debug for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.context {
            Some(context) => {
                f.debug_struct("IoError").field("context", context).field("error", &self.0.error).finish()
            }
            None => fmt::Debug::fmt(&self.0.error, f),
        }
    }
}

/// The message includes the `io::Error`'s own (so printing the error alone
/// says everything); [`source`](std::error::Error::source) returns it too.
impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.context {
            Some(context) => write!(f, "{context}: {}", self.0.error),
            None => write!(f, "I/O error: {}", self.0.error),
        }
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.error)
    }
}

/// `Result<T, evloop::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_have_a_source_and_say_what_failed() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = Error::io_context(refused, "connect to 127.0.0.1:1");
        let text = e.to_string();
        assert!(text.starts_with("connect to 127.0.0.1:1: "), "{text}");
        assert!(text.contains("os error 111"), "{text}");
        let source = std::error::Error::source(&e).expect("Error::Io has a source");
        let io = source.downcast_ref::<IoError>().expect("the source is the IoError");
        assert_eq!(io.context(), Some("connect to 127.0.0.1:1"));
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionRefused));
        let os = std::error::Error::source(io).expect("IoError's source is the io::Error");
        assert!(os.downcast_ref::<io::Error>().is_some());
        // Context replaces context, and keeps the OS error.
        let again = e.clone().with_context("connect to [::1]:1");
        assert!(again.to_string().starts_with("connect to [::1]:1: "), "{again}");
        assert_eq!(again.raw_os_error(), Some(libc::ECONNREFUSED));
        // Without context, the message is as before.
        assert_eq!(Error::from(io::Error::other("x")).to_string(), "I/O error: x");
    }
}

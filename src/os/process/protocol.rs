//! [`SubprocessProtocol`]: asyncio's `SubprocessProtocol`.

use crate::error::Error;
use crate::os::process::SubprocessTransport;

/// The callbacks of a child process (asyncio's `asyncio.SubprocessProtocol`),
/// driven by a [`SubprocessTransport`].
///
/// Order, as asyncio: `connection_made` first; then, interleaved,
/// `pipe_data_received` for each chunk a piped stdout (fd 1) or stderr
/// (fd 2) produces, `pipe_connection_lost` once for each piped stream
/// (stdin, fd 0, included) as it closes, and `process_exited` once the
/// child has exited and been reaped; `connection_lost(None)` last, once the
/// child has exited and every pipe is lost. Each method is called with the
/// protocol borrowed mutably and may call any transport method.
///
/// # Examples
///
/// ```
/// use evloop::os::process::{SubprocessOptions, SubprocessProtocol, Stdio};
///
/// #[derive(Default)]
/// struct Collect {
///     out: Vec<u8>,
///     exited: bool,
///     lost: bool,
/// }
///
/// impl SubprocessProtocol for Collect {
///     fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
///         assert_eq!(fd, 1);
///         self.out.extend_from_slice(data);
///     }
///     fn process_exited(&mut self) {
///         self.exited = true;
///     }
///     fn connection_lost(&mut self, _: Option<evloop::Error>) {
///         self.lost = true;
///     }
/// }
///
/// let lp = evloop::EventLoop::new()?;
/// let l = lp.clone();
/// let (transport, protocol) = lp.run_until_complete(async move {
///     let options = SubprocessOptions::new().stdout(Stdio::Piped);
///     let (transport, protocol) = l.subprocess_exec(Collect::default, "echo", ["hi"], options).await?;
///     transport.wait().await?;
///     Ok::<_, evloop::Error>((transport, protocol))
/// })??;
/// while !protocol.borrow().lost {
///     lp.run_once(None)?; // until the pipes are closed too
/// }
/// assert_eq!(transport.get_returncode(), Some(0));
/// assert!(protocol.borrow().exited);
/// assert_eq!(protocol.borrow().out, b"hi\n");
/// # Ok::<(), evloop::Error>(())
/// ```
pub trait SubprocessProtocol: 'static {
    /// The child is running and its pipes are connected; keep `transport`
    /// (a cheap clone) to write to its stdin or signal it.
    fn connection_made(&mut self, transport: &SubprocessTransport) {
        let _ = transport;
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (`fd` 2).
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }

    /// The pipe of the child's `fd` closed: `None` at EOF or after a close
    /// of ours, the error otherwise (a broken stdin pipe after the child
    /// exited while data was buffered: `BrokenPipe`).
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<Error>) {
        let _ = (fd, error);
    }

    /// The child exited; the transport's
    /// [`get_returncode`](SubprocessTransport::get_returncode) has its status.
    fn process_exited(&mut self) {}

    /// The child has exited and all its pipes are closed. Called exactly
    /// once, and last; the transport then drops the protocol.
    fn connection_lost(&mut self, error: Option<Error>) {
        let _ = error;
    }

    /// The stdin pipe's write buffer went over its high-water mark.
    fn pause_writing(&mut self) {}

    /// The stdin pipe's write buffer drained to its low-water mark.
    fn resume_writing(&mut self) {}
}

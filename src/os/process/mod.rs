//! Subprocesses (asyncio's `subprocess_exec`/`subprocess_shell` with a
//! [`SubprocessProtocol`], and `create_subprocess_exec`/`_shell` with a
//! [`Process`]), their pipes being [pipe transports](crate::os::pipe).
//!
//! Invariant: no child outlives its watch unreaped. A child is spawned with
//! `std::process::Command` (which does the fork/exec safely and reports an
//! exec failure), its exit observed with a pidfd registered on the loop
//! (Linux ≥ 5.3), and it is reaped on the loop thread as soon as it exits,
//! whether or not anyone still holds its handles. Closing (or dropping)
//! the loop kills a child still running and reaps it. Each child has its
//! own pidfd, so loops on several threads spawn and reap independently,
//! with no process-wide `SIGCHLD` handler.
//!
//! Where `pidfd_open` is missing (`ENOSYS` before Linux 5.3, or refused by
//! a sandbox), the child is watched through a `SIGCHLD` subscription of
//! its loop ([`crate::os::signal`]): each `SIGCHLD` makes the loop poll
//! each such child with `waitpid(pid, WNOHANG)`, which reaps only that
//! child, never another loop's or another library's. This installs a
//! process-wide `SIGCHLD` handler while such children are watched (and
//! restores the default disposition after).
//!
//! asyncio's returncode convention holds: the exit code, or `-N` for a
//! child killed by signal `N`.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::rc::Rc;

use crate::error::Result;
use crate::net::transport::PipeEnd;
use crate::os::pipe::start_pipe;
use crate::runtime::event_loop::EventLoop;

mod child;
mod options;
mod protocol;
mod transport;

pub use child::{Process, create_subprocess_exec, create_subprocess_shell};
pub use options::{Stdio, SubprocessOptions};
pub use protocol::SubprocessProtocol;
pub use transport::{PipeTransport, SubprocessTransport};

use transport::{Forward, PipeProto};

/// Waits for the transport's `connection_made`; a caller cancelled
/// meanwhile closes the transport (which kills the child: nobody could
/// reach it), as asyncio does.
async fn connect_made(transport: &SubprocessTransport, made: crate::Future<()>) -> Result<()> {
    struct CloseOnDrop<'a>(Option<&'a SubprocessTransport>);
    impl Drop for CloseOnDrop<'_> {
        fn drop(&mut self) {
            if let Some(t) = self.0.take() {
                t.close();
            }
        }
    }
    let mut guard = CloseOnDrop(Some(transport));
    made.await?;
    guard.0 = None;
    Ok(())
}

impl EventLoop {
    /// Runs `program` with `args` (no shell), driven by a protocol made by
    /// `factory` (asyncio's `loop.subprocess_exec`). Each piped stream is
    /// a pipe transport whose data reaches the protocol as
    /// `pipe_data_received(fd, data)`; see [`SubprocessProtocol`] for the
    /// order of the calls. Returns once `connection_made` has run.
    ///
    /// Streams are inherited unless `options` pipes them
    /// ([`SubprocessOptions::piped`] pipes all three, asyncio's default
    /// here).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) naming the program if it cannot be
    /// spawned (not found, not executable, a bad `current_dir`);
    /// `InvalidInput` for [`Stdio::Stdout`] given as stdin or stdout;
    /// [`Error::Closed`](crate::Error::Closed) after `close()` (the child
    /// is then killed and reaped).
    ///
    /// # Examples
    ///
    /// See [`SubprocessProtocol`].
    pub async fn subprocess_exec<P, I, S>(
        &self,
        factory: impl FnOnce() -> P,
        program: impl AsRef<OsStr>,
        args: I,
        options: SubprocessOptions,
    ) -> Result<(SubprocessTransport, Rc<RefCell<P>>)>
    where
        P: SubprocessProtocol,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if self.is_closed() {
            return Err(crate::Error::Closed);
        }
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let protocol = Rc::new(RefCell::new(factory()));
        let spawned = options::spawn(program.as_ref(), &args, options)?;
        let made = self.create_future::<()>();
        let shared: Rc<RefCell<dyn SubprocessProtocol>> = protocol.clone();
        let transport =
            SubprocessTransport::start(self, spawned, shared, Some(made.clone()), |fd, proc, pipe| {
                let end = if fd == 0 { PipeEnd::Write } else { PipeEnd::Read };
                let proto = PipeProto { proc: proc.clone(), inner: Forward { fd, proc: proc.clone() } };
                start_pipe(self, pipe, proto, end, None).map(|(t, _)| t)
            })?;
        connect_made(&transport, made).await?;
        Ok((transport, protocol))
    }

    /// Runs `cmd` through `/bin/sh -c`, as
    /// [`subprocess_exec`](EventLoop::subprocess_exec) (asyncio's
    /// `loop.subprocess_shell`).
    ///
    /// # Errors
    ///
    /// As [`subprocess_exec`](EventLoop::subprocess_exec).
    pub async fn subprocess_shell<P: SubprocessProtocol>(
        &self,
        factory: impl FnOnce() -> P,
        cmd: impl AsRef<OsStr>,
        options: SubprocessOptions,
    ) -> Result<(SubprocessTransport, Rc<RefCell<P>>)> {
        let args = [OsStr::new("-c"), cmd.as_ref()];
        self.subprocess_exec(factory, "/bin/sh", args, options).await
    }
}

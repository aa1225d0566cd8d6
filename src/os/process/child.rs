//! [`Process`]: asyncio's high-level `asyncio.subprocess.Process`, with
//! its pipes as streams.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use crate::error::{Error, Result};
use crate::net::stream::{StreamReader, StreamWriter, reader_only, split_parts, stream_protocol};
use crate::net::transport::PipeEnd;
use crate::os::pipe::start_pipe;
use crate::os::process::options::{SubprocessOptions, spawn};
use crate::os::process::transport::{PipeProto, SubprocessTransport};
use crate::os::process::{SubprocessProtocol, connect_made};
use crate::runtime::event_loop::{EventLoop, running_loop};

/// A child process whose piped streams are a [`StreamWriter`] (stdin) and
/// [`StreamReader`]s (stdout, stderr), made by [`create_subprocess_exec`]
/// or [`create_subprocess_shell`] (asyncio's `Process`). A stream that is
/// not [`Piped`](crate::os::process::Stdio::Piped) is `None`.
///
/// Dropping it (or cancelling a task waiting in [`wait`](Process::wait))
/// does not kill the child: it stays watched and is reaped when it exits.
/// Closing the loop kills a child still running.
///
/// # Examples
///
/// ```
/// use evloop::os::process::{Stdio, SubprocessOptions, create_subprocess_exec};
///
/// let (out, code) = evloop::run(async {
///     let options = SubprocessOptions::new().stdin(Stdio::Piped).stdout(Stdio::Piped);
///     let mut child = create_subprocess_exec("tr", ["a-z", "A-Z"], options).await?;
///     let (out, _err) = child.communicate(Some(b"shout\n")).await?;
///     Ok::<_, evloop::Error>((out, child.returncode()))
/// })??;
/// assert_eq!(out, b"SHOUT\n");
/// assert_eq!(code, Some(0));
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Process {
    /// The child's stdin, if piped.
    pub stdin: Option<StreamWriter>,
    /// The child's stdout, if piped.
    pub stdout: Option<StreamReader>,
    /// The child's stderr, if piped (and not merged into stdout).
    pub stderr: Option<StreamReader>,
    transport: SubprocessTransport,
}

/// The protocol behind a [`Process`]: the streams do the pipes' work.
struct Quiet;
impl SubprocessProtocol for Quiet {}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.transport.get_pid()
    }

    /// The exit status once the child exited: its code, or `-N` if signal
    /// `N` killed it; `None` while it runs.
    pub fn returncode(&self) -> Option<i32> {
        self.transport.get_returncode()
    }

    /// Waits for the child to exit and returns its returncode. It does not
    /// read the pipes: a child that fills a pipe nobody reads blocks, so
    /// use [`communicate`](Process::communicate) for output of any size.
    ///
    /// # Errors
    ///
    /// None today (see [`SubprocessTransport::wait`]).
    pub async fn wait(&self) -> Result<i32> {
        self.transport.wait().await
    }

    /// Writes `input` to stdin and closes it, reads stdout and stderr to
    /// their end, all at once (so no pipe fills up), then waits for the
    /// exit. Returns what stdout and stderr produced (empty for a stream
    /// that is not piped; asyncio gives `None`). A child that exits
    /// without reading all of `input` is not an error (asyncio ignores the
    /// broken pipe too).
    ///
    /// # Errors
    ///
    /// A pipe's I/O error other than a broken pipe or reset.
    pub async fn communicate(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>)> {
        let stdin = self.stdin.take();
        let feed = async move {
            let Some(writer) = stdin else { return Ok(()) };
            let written = match input {
                Some(input) => match writer.write(input) {
                    Ok(()) => writer.drain().await,
                    Err(e) => Err(e),
                },
                None => Ok(()),
            };
            writer.close();
            match written {
                // The child stopped reading (or its pipe is already
                // closed): its exit status tells the rest.
                Err(Error::InvalidState(_)) => Ok(()),
                Err(e)
                    if matches!(
                        e.io_kind(),
                        Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
                    ) =>
                {
                    Ok(())
                }
                other => other,
            }
        };
        let mut stdout = self.stdout.take();
        let mut stderr = self.stderr.take();
        let read_out = read_all(stdout.as_mut());
        let read_err = read_all(stderr.as_mut());
        let (fed, out, err) = join3(feed, read_out, read_err).await;
        self.stdout = stdout;
        self.stderr = stderr;
        fed?;
        let (out, err) = (out?, err?);
        self.wait().await?;
        Ok((out, err))
    }

    /// Sends `signal` (a `libc::SIG*` number) to the child.
    ///
    /// # Errors
    ///
    /// As [`SubprocessTransport::send_signal`]: `ESRCH` once the child
    /// has been reaped.
    pub fn send_signal(&self, signal: i32) -> Result<()> {
        self.transport.send_signal(signal)
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    ///
    /// As [`send_signal`](Process::send_signal).
    pub fn terminate(&self) -> Result<()> {
        self.transport.terminate()
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    ///
    /// As [`send_signal`](Process::send_signal).
    pub fn kill(&self) -> Result<()> {
        self.transport.kill()
    }

    /// The transport underneath.
    pub fn transport(&self) -> &SubprocessTransport {
        &self.transport
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid()).field("returncode", &self.returncode()).finish()
    }
}

async fn read_all(reader: Option<&mut StreamReader>) -> Result<Vec<u8>> {
    match reader {
        Some(reader) => reader.read_to_end().await,
        None => Ok(Vec::new()),
    }
}

/// Runs three futures concurrently, to completion.
async fn join3<A: Future, B: Future, C: Future>(a: A, b: B, c: C) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if rc.is_none()
            && let Poll::Ready(v) = c.as_mut().poll(cx)
        {
            rc = Some(v);
        }
        if ra.is_some() && rb.is_some() && rc.is_some() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    (ra.take().unwrap(), rb.take().unwrap(), rc.take().unwrap())
}

/// Spawns `program args…` and connects its pipes as streams.
pub(crate) async fn spawn_process(
    lp: &EventLoop,
    program: &OsStr,
    args: Vec<OsString>,
    options: SubprocessOptions,
) -> Result<Process> {
    if lp.is_closed() {
        return Err(Error::Closed);
    }
    let limit = options.limit;
    let spawned = spawn(program, &args, options)?;
    let mut halves: [Option<(StreamReader, StreamWriter)>; 3] = [None, None, None];
    let made = lp.create_future::<()>();
    let protocol: Rc<RefCell<dyn SubprocessProtocol>> = Rc::new(RefCell::new(Quiet));
    let transport =
        SubprocessTransport::start(lp, spawned, protocol, Some(made.clone()), |fd, proc, pipe| {
            let end = if fd == 0 { PipeEnd::Write } else { PipeEnd::Read };
            let proto = PipeProto { proc: proc.clone(), inner: stream_protocol(limit, None) };
            let (transport, protocol) = start_pipe(lp, pipe, proto, end, None)?;
            let pair = split_parts(transport.clone(), &mut protocol.borrow_mut().inner)?;
            halves[fd as usize] = Some(pair);
            Ok(transport)
        })?;
    connect_made(&transport, made).await?;
    let [stdin, stdout, stderr] = halves;
    Ok(Process {
        stdin: stdin.map(|(_, w)| w),
        // Dropping a read pipe's writer must not close the pipe.
        stdout: stdout.map(reader_only),
        stderr: stderr.map(reader_only),
        transport,
    })
}

/// Runs `program` with `args` (no shell) and returns it as a [`Process`]
/// (asyncio's `asyncio.create_subprocess_exec`). Streams are inherited
/// unless `options` pipes them.
///
/// # Errors
///
/// [`Error::Io`] naming the program if it cannot be spawned (not found,
/// not executable, a bad `current_dir`); `InvalidInput` for
/// [`Stdio::Stdout`](crate::os::process::Stdio::Stdout) given as stdin or
/// stdout.
///
/// # Panics
///
/// When awaited outside a running loop.
pub async fn create_subprocess_exec<I, S>(
    program: impl AsRef<OsStr>,
    args: I,
    options: SubprocessOptions,
) -> Result<Process>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let lp = running_loop("create_subprocess_exec");
    let args = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    spawn_process(&lp, program.as_ref(), args, options).await
}

/// Runs `cmd` through `/bin/sh -c` and returns it as a [`Process`]
/// (asyncio's `asyncio.create_subprocess_shell`). Quote what you pass
/// in: the shell interprets it.
///
/// # Errors
///
/// As [`create_subprocess_exec`].
///
/// # Panics
///
/// When awaited outside a running loop.
///
/// # Examples
///
/// ```
/// use evloop::os::process::{Stdio, SubprocessOptions, create_subprocess_shell};
///
/// let code = evloop::run(async {
///     let child = create_subprocess_shell("exit 7", SubprocessOptions::new()).await?;
///     child.wait().await
/// })??;
/// assert_eq!(code, 7);
/// # Ok::<(), evloop::Error>(())
/// ```
pub async fn create_subprocess_shell(cmd: impl AsRef<OsStr>, options: SubprocessOptions) -> Result<Process> {
    let lp = running_loop("create_subprocess_shell");
    let args = vec![OsString::from("-c"), cmd.as_ref().to_owned()];
    spawn_process(&lp, OsStr::new("/bin/sh"), args, options).await
}

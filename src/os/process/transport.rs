//! [`SubprocessTransport`]: a running child, its pipe transports and the
//! watch on its exit (asyncio's `BaseSubprocessTransport` with the Unix
//! child watcher).
//!
//! Invariants:
//! - Every child is reaped, by exactly one `waitpid`, on the loop thread:
//!   the exit watch (a pidfd, or a `SIGCHLD` subscription where there is
//!   none) keeps the transport's state alive until the child exits,
//!   whoever holds the handles, and the loop's `close()` (or its drop)
//!   kills a child still running and reaps it. A pid is signalled only
//!   while its child is unreaped, so a reused pid is never hit.
//! - The protocol gets `connection_made` first and `connection_lost` last,
//!   once the child exited *and* every pipe is lost (asyncio's order); the
//!   state then drops the protocol, which breaks the cycle of a protocol
//!   that keeps its transport.
//! - No borrow is alive while the protocol runs; calls made from the exit
//!   watch go through `call_soon`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::error::{Error, Result};
use crate::exception::ExceptionContext;
use crate::net::protocol::{ReadPath, sealed::Sealed};
use crate::net::{Protocol, StreamProtocol, Transport};
use crate::os::pipe::{ReadPipeTransport, WritePipeTransport};
use crate::os::process::SubprocessProtocol;
use crate::os::process::options::Spawned;
use crate::os::signal::{Subscription, subscribe};
use crate::runtime::event_loop::{Closer, CloserKey, EventLoop, WeakLoop};
use crate::runtime::fds::OwnedSource;
use crate::runtime::guard::{drop_user, run_user};
use crate::runtime::selector::Interest;

/// How the child's exit is observed.
enum Watch {
    /// A pidfd registered for readability (Linux ≥ 5.3).
    Pidfd { source: OwnedSource, fd: OwnedFd },
    /// Without pidfd: the loop's `SIGCHLD` subscription
    /// ([`crate::os::signal`]); each signal polls this child with a
    /// `waitpid(pid, WNOHANG)`, which never takes another loop's child.
    Sigchld(#[allow(dead_code)] Subscription),
}

thread_local! {
    /// Tests only: skip the pidfd, as on a kernel without one.
    static FORCE_SIGCHLD: Cell<bool> = const { Cell::new(false) };
}

/// Tests: make this thread's next spawns watch their exit through
/// `SIGCHLD`, as on a kernel without `pidfd_open`.
#[cfg(test)]
pub(crate) fn force_sigchld(on: bool) {
    FORCE_SIGCHLD.with(|f| f.set(on));
}

pub(crate) struct ProcInner {
    lp: WeakLoop,
    pid: u32,
    /// `None` once reaped.
    child: RefCell<Option<Child>>,
    returncode: Cell<Option<i32>>,
    /// By the child's fd: 0 stdin, 1 stdout, 2 stderr.
    pipes: RefCell<[Option<Transport>; 3]>,
    /// Pipes whose `connection_lost` has not run yet.
    pipes_open: Cell<u8>,
    protocol: RefCell<Option<Rc<RefCell<dyn SubprocessProtocol>>>>,
    exit_wakers: RefCell<Vec<Waker>>,
    watch: RefCell<Option<Watch>>,
    closer: Cell<Option<CloserKey>>,
    /// `close()` was called.
    closed: Cell<bool>,
    /// `connection_lost` is scheduled or done.
    finished: Cell<bool>,
}

/// A running (or exited) child process with its pipes (asyncio's
/// `SubprocessTransport`), made by
/// [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) and
/// handed to the protocol in `connection_made`. Cheap to clone.
///
/// Dropping every handle neither kills nor leaks the child: it stays
/// watched and is reaped when it exits. [`close`](SubprocessTransport::close)
/// kills it if it is still running (asyncio), and so does closing or
/// dropping the loop.
#[derive(Clone)]
pub struct SubprocessTransport {
    pub(crate) inner: Rc<ProcInner>,
}

/// One pipe of a child, as [`SubprocessTransport::get_pipe_transport`]
/// returns it.
#[derive(Debug, Clone)]
pub enum PipeTransport {
    /// The child's stdin (fd 0).
    Write(WritePipeTransport),
    /// The child's stdout (fd 1) or stderr (fd 2).
    Read(ReadPipeTransport),
}

/// asyncio's returncode: the exit code, or minus the signal that killed it.
fn returncode_of(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| -s)).unwrap_or(255)
}

impl SubprocessTransport {
    /// Watches `spawned`'s exit, connects each of its pipes with
    /// `connect(fd, state, pipe)`, and schedules `connection_made`, then
    /// `made`'s result.
    ///
    /// # Errors
    ///
    /// What `connect` or the watch fails with; the child is then killed
    /// (and reaped once it exits).
    pub(crate) fn start(
        lp: &EventLoop,
        spawned: Spawned,
        protocol: Rc<RefCell<dyn SubprocessProtocol>>,
        made: Option<crate::Future<()>>,
        mut connect: impl FnMut(i32, &Rc<ProcInner>, OwnedFd) -> Result<Transport>,
    ) -> Result<SubprocessTransport> {
        let Spawned { child, pipes } = spawned;
        let inner = Rc::new(ProcInner {
            lp: lp.downgrade(),
            pid: child.id(),
            child: RefCell::new(Some(child)),
            returncode: Cell::new(None),
            pipes: RefCell::new([None, None, None]),
            pipes_open: Cell::new(0),
            protocol: RefCell::new(Some(protocol)),
            exit_wakers: RefCell::new(Vec::new()),
            watch: RefCell::new(None),
            closer: Cell::new(None),
            closed: Cell::new(false),
            finished: Cell::new(false),
        });
        let weak: std::rc::Weak<dyn Closer> = Rc::downgrade(&inner) as std::rc::Weak<ProcInner>;
        inner.closer.set(Some(lp.on_close(weak)));
        let transport = SubprocessTransport { inner };
        let connected = transport.connect_pipes(pipes, &mut connect);
        let watched = connected.and_then(|()| transport.inner.watch_exit(lp));
        if let Err(e) = watched {
            // Nobody will get this child: kill it and reap it now.
            let pipes = transport.inner.pipes.borrow().clone();
            for pipe in pipes.iter().flatten() {
                pipe.abort();
            }
            transport.inner.shut_for_loop();
            return Err(e);
        }
        let t = transport.clone();
        lp.call_soon(move || {
            t.inner.call_protocol(|p| p.connection_made(&t));
            if let Some(made) = made {
                let _ = made.set_result(());
            }
        });
        Ok(transport)
    }

    fn connect_pipes(
        &self,
        pipes: [Option<OwnedFd>; 3],
        connect: &mut impl FnMut(i32, &Rc<ProcInner>, OwnedFd) -> Result<Transport>,
    ) -> Result<()> {
        for (fd, pipe) in (0..).zip(pipes) {
            let Some(pipe) = pipe else { continue };
            let transport = connect(fd, &self.inner, pipe)?;
            self.inner.pipes.borrow_mut()[fd as usize] = Some(transport);
            self.inner.pipes_open.set(self.inner.pipes_open.get() + 1);
        }
        Ok(())
    }

    /// The child's process id (asyncio's `get_pid`).
    pub fn get_pid(&self) -> u32 {
        self.inner.pid
    }

    /// The child's exit status once it exited and was reaped: its exit
    /// code, or `-N` if signal `N` killed it (asyncio's `get_returncode`).
    pub fn get_returncode(&self) -> Option<i32> {
        self.inner.returncode.get()
    }

    /// The pipe transport of the child's `fd` (0, 1 or 2), if that stream
    /// is piped.
    pub fn get_pipe_transport(&self, fd: i32) -> Option<PipeTransport> {
        let index = usize::try_from(fd).ok().filter(|&i| i < 3)?;
        let transport = self.inner.pipes.borrow()[index].clone()?;
        Some(if index == 0 {
            PipeTransport::Write(WritePipeTransport(transport))
        } else {
            PipeTransport::Read(ReadPipeTransport(transport))
        })
    }

    /// Sends `signal` (a `libc::SIG*` number) to the child.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with kind `NotFound` (`ESRCH`, asyncio's
    /// `ProcessLookupError`) once the child has been reaped; `EINVAL`
    /// for a bad signal number.
    pub fn send_signal(&self, signal: i32) -> Result<()> {
        if self.inner.returncode.get().is_some() || self.inner.child.borrow().is_none() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH).into());
        }
        crate::sys::process::kill(self.inner.pid, signal).map_err(|e| {
            Error::from(e).with_context(format_args!("signal {signal} to pid {}", self.inner.pid))
        })
    }

    /// Sends `SIGTERM`.
    ///
    /// # Errors
    ///
    /// As [`send_signal`](SubprocessTransport::send_signal).
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL`.
    ///
    /// # Errors
    ///
    /// As [`send_signal`](SubprocessTransport::send_signal).
    pub fn kill(&self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Closes the pipes (stdin after its buffer is flushed) and kills the
    /// child if it is still running (asyncio's `close`). The child is
    /// still reaped, and the protocol still gets `pipe_connection_lost`,
    /// `process_exited` and `connection_lost`. Calling it again does
    /// nothing.
    pub fn close(&self) {
        if self.inner.closed.replace(true) {
            return;
        }
        let pipes = self.inner.pipes.borrow().clone();
        for transport in pipes.iter().flatten() {
            transport.close();
        }
        if self.inner.returncode.get().is_none() {
            // A child that exited but is not yet reaped: ESRCH-free, as
            // the pid is still ours.
            let _ = self.kill();
        }
    }

    /// Whether [`close`](SubprocessTransport::close) was called.
    pub fn is_closing(&self) -> bool {
        self.inner.closed.get()
    }

    /// Waits for the child to exit; its returncode (asyncio's `_wait`,
    /// what [`Process::wait`](crate::os::process::Process::wait) uses).
    /// Cancelling the wait leaves the child watched: it is reaped anyway.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a loop closed while
    /// waiting.
    pub async fn wait(&self) -> Result<i32> {
        poll_fn(|cx| match self.inner.returncode.get() {
            Some(code) => Poll::Ready(Ok(code)),
            None => {
                let mut wakers = self.inner.exit_wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    /// The loop the transport runs on.
    ///
    /// # Panics
    ///
    /// If the loop was dropped.
    #[track_caller]
    pub fn get_loop(&self) -> EventLoop {
        self.inner.lp.get()
    }
}

impl fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprocessTransport")
            .field("pid", &self.inner.pid)
            .field("returncode", &self.inner.returncode.get())
            .field("closed", &self.inner.closed.get())
            .finish()
    }
}

impl ProcInner {
    /// Calls the protocol (if it is still held) with no borrow of ours
    /// alive; a panic is reported to the loop's exception handler.
    pub(crate) fn call_protocol(&self, f: impl FnOnce(&mut dyn SubprocessProtocol)) {
        let protocol = self.protocol.borrow().clone();
        let Some(protocol) = protocol else { return };
        if let Err(message) = run_user(|| f(&mut *protocol.borrow_mut())) {
            self.report("panic in a subprocess protocol callback", Error::Panicked(message));
        }
    }

    /// [`call_protocol`](ProcInner::call_protocol) on the next pass: for
    /// notifications that may come while the protocol is busy (a write to
    /// stdin from `pipe_data_received` that pauses writing).
    fn call_protocol_soon(self: &Rc<Self>, f: impl FnOnce(&mut dyn SubprocessProtocol) + 'static) {
        if let Some(lp) = self.live_loop() {
            let me = self.clone();
            lp.call_soon(move || me.call_protocol(f));
        }
    }

    fn report(&self, what: &str, error: Error) {
        if let Some(lp) = self.lp.upgrade() {
            lp.call_exception_handler(&ExceptionContext::new(what).with_error(error));
        }
    }

    fn live_loop(&self) -> Option<EventLoop> {
        self.lp.upgrade().filter(|lp| !lp.is_closed())
    }

    /// Starts watching for the exit: a pidfd, else a waiter thread.
    fn watch_exit(self: &Rc<Self>, lp: &EventLoop) -> Result<()> {
        if self.watch.borrow().is_some() || self.returncode.get().is_some() {
            return Ok(());
        }
        let pidfd = if FORCE_SIGCHLD.with(Cell::get) {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        } else {
            crate::sys::process::pidfd_open(self.pid)
        };
        match pidfd {
            Ok(fd) => {
                let source = lp.claim_source(fd.as_raw_fd())?;
                let me = self.clone();
                if let Err(e) = lp.set_source_callback(source, Interest::Read, move || me.poll_exit()) {
                    lp.release_source(source);
                    return Err(e);
                }
                *self.watch.borrow_mut() = Some(Watch::Pidfd { source, fd });
                Ok(())
            }
            // Already reaped by someone else: no status to be had. On the
            // next pass, so that `connection_made` (scheduled by the
            // caller right after) precedes `process_exited`.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                let me = self.clone();
                lp.call_soon(move || me.poll_exit());
                Ok(())
            }
            // ENOSYS before Linux 5.3 (or a sandbox refusing it).
            Err(_) => self.watch_with_sigchld(lp),
        }
    }

    /// The fallback without pidfd: a `SIGCHLD` subscription on this loop
    /// (several loops and children may hold one each; every one runs per
    /// signal). The child may have exited before the subscription
    /// existed, so it is polled once on the next pass too.
    fn watch_with_sigchld(self: &Rc<Self>, lp: &EventLoop) -> Result<()> {
        let me = self.clone();
        let subscription = subscribe(lp, libc::SIGCHLD, move || me.poll_exit())?;
        *self.watch.borrow_mut() = Some(Watch::Sigchld(subscription));
        let me = self.clone();
        lp.call_soon(move || me.poll_exit());
        Ok(())
    }

    fn unwatch(&self) {
        let watch = self.watch.borrow_mut().take();
        match watch {
            Some(Watch::Pidfd { source, fd }) => {
                // Unregistered before the fd closes.
                if let Some(lp) = self.lp.upgrade() {
                    lp.release_source(source);
                }
                drop(fd);
            }
            // Dropped even from inside its own callback: the signal layer
            // allows that.
            Some(Watch::Sigchld(subscription)) => drop(subscription),
            None => {}
        }
    }

    /// The exit watch fired: reap the child if it exited.
    fn poll_exit(self: &Rc<Self>) {
        if self.returncode.get().is_some() {
            return;
        }
        let status = match self.child.borrow_mut().as_mut() {
            Some(child) => child.try_wait(),
            None => return,
        };
        let code = match status {
            Ok(Some(status)) => returncode_of(status),
            Ok(None) => return,
            Err(e) => {
                // Someone else reaped it (a `waitpid(-1)` elsewhere in the
                // process): asyncio reports 255 too.
                log::warn!("child process {} could not be waited for ({e}); returncode 255", self.pid);
                255
            }
        };
        self.exited(code);
    }

    fn exited(self: &Rc<Self>, code: i32) {
        self.returncode.set(Some(code));
        let child = self.child.borrow_mut().take();
        drop(child);
        self.unwatch();
        self.wake_exit_waiters();
        self.call_protocol_soon(|p| p.process_exited());
        self.try_finish();
    }

    fn wake_exit_waiters(&self) {
        let wakers = std::mem::take(&mut *self.exit_wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// A pipe's `connection_lost` ran.
    pub(crate) fn pipe_lost(self: &Rc<Self>) {
        self.pipes_open.set(self.pipes_open.get().saturating_sub(1));
        self.try_finish();
    }

    /// Schedules `connection_lost` once the child exited and every pipe
    /// is lost.
    fn try_finish(self: &Rc<Self>) {
        if self.returncode.get().is_none() || self.pipes_open.get() > 0 || self.finished.replace(true) {
            return;
        }
        match self.live_loop() {
            Some(lp) => {
                let me = self.clone();
                lp.call_soon(move || me.finish());
            }
            None => self.finish(),
        }
    }

    fn finish(&self) {
        self.call_protocol(|p| p.connection_lost(None));
        let protocol = self.protocol.borrow_mut().take();
        if let Err(message) = drop_user(protocol) {
            self.report("panic in the destructor of a subprocess protocol", Error::Panicked(message));
        }
        if let (Some(key), Some(lp)) = (self.closer.take(), self.lp.upgrade()) {
            lp.forget_on_close(key);
        }
    }

    /// The loop is closing or gone: kill a child still running, reap it,
    /// and let go of the protocol (no more calls to it).
    fn shut_for_loop(&self) {
        self.closed.set(true);
        let child = self.child.borrow_mut().take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let code = match child.wait() {
                Ok(status) => returncode_of(status),
                Err(_) => 255,
            };
            self.returncode.set(Some(code));
        }
        self.unwatch();
        self.finished.set(true);
        if let (Some(key), Some(lp)) = (self.closer.take(), self.lp.upgrade()) {
            lp.forget_on_close(key);
        }
        self.wake_exit_waiters();
        let protocol = self.protocol.borrow_mut().take();
        let pipes = std::mem::take(&mut *self.pipes.borrow_mut());
        let _ = drop_user((protocol, pipes));
    }
}

impl Closer for ProcInner {
    fn close(self: Rc<Self>) {
        self.shut_for_loop();
    }

    fn abandon(self: Rc<Self>) {
        self.shut_for_loop();
    }
}

/// A pipe's protocol: `inner` does the work, and the subprocess state
/// learns when the pipe is lost.
pub(crate) struct PipeProto<Q> {
    pub(crate) proc: Rc<ProcInner>,
    pub(crate) inner: Q,
}

impl<Q: StreamProtocol> Sealed for PipeProto<Q> {}

impl<Q: StreamProtocol> StreamProtocol for PipeProto<Q> {
    fn read_path(&self) -> ReadPath {
        self.inner.read_path()
    }
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport)
    }
    fn receive(&mut self, socket: &socket2::Socket) -> io::Result<usize> {
        self.inner.receive(socket)
    }
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]> {
        self.inner.get_buffer(size_hint)
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.inner.buffer_updated(nbytes)
    }
    fn data_received(&mut self, data: &[u8]) {
        self.inner.data_received(data)
    }
    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.inner.connection_lost(error);
        self.proc.pipe_lost();
    }
    fn pause_writing(&mut self) {
        self.inner.pause_writing()
    }
    fn resume_writing(&mut self) {
        self.inner.resume_writing()
    }
}

/// The low-level API's pipe protocol: forwards to the
/// [`SubprocessProtocol`] with the child's fd.
pub(crate) struct Forward {
    pub(crate) fd: i32,
    pub(crate) proc: Rc<ProcInner>,
}

impl Protocol for Forward {
    fn data_received(&mut self, data: &[u8]) {
        let fd = self.fd;
        self.proc.call_protocol(|p| p.pipe_data_received(fd, data));
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        let fd = self.fd;
        self.proc.call_protocol(|p| p.pipe_connection_lost(fd, error));
    }
    fn pause_writing(&mut self) {
        self.proc.call_protocol_soon(|p| p.pause_writing());
    }
    fn resume_writing(&mut self) {
        self.proc.call_protocol_soon(|p| p.resume_writing());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::process::SubprocessOptions;

    #[derive(Default)]
    struct Exits(Vec<&'static str>);
    impl SubprocessProtocol for Exits {
        fn process_exited(&mut self) {
            self.0.push("exited");
        }
        fn connection_lost(&mut self, _: Option<Error>) {
            self.0.push("lost");
        }
    }

    /// The fallback for kernels without pidfd: `SIGCHLD` makes the loop
    /// poll its children, an exit before the subscription included.
    #[test]
    fn sigchld_fallback_reports_exit_codes_and_signals() {
        force_sigchld(true);
        let lp = EventLoop::new().unwrap();
        let l = lp.clone();
        let (codes, protocol) = lp
            .run_until_complete(async move {
                let (t1, p) = l.subprocess_shell(Exits::default, "exit 3", SubprocessOptions::new()).await?;
                let (t2, _) =
                    l.subprocess_exec(Exits::default, "sleep", ["10"], SubprocessOptions::new()).await?;
                assert!(matches!(&*t2.inner.watch.borrow(), Some(Watch::Sigchld(_))));
                t2.kill()?;
                let codes = (t1.wait().await?, t2.wait().await?);
                crate::sleep(std::time::Duration::from_millis(1)).await;
                Ok::<_, Error>((codes, p))
            })
            .unwrap()
            .unwrap();
        force_sigchld(false);
        assert_eq!(codes, (3, -9));
        assert_eq!(protocol.borrow().0, ["exited", "lost"]);
    }
}

//! The transport core shared by the stream ([`Transport`](crate::net::Transport))
//! and datagram ([`DatagramTransport`](crate::net::DatagramTransport))
//! transports; CPython's `_SelectorTransport` is the model.
//!
//! Invariants:
//! - The lifecycle only moves forward: `Open → Closing → Lost → Gone`.
//!   Once `Lost`, the protocol gets exactly one more call,
//!   `connection_lost`; once `Gone` it has been dropped, with the socket.
//!   So a protocol that keeps its transport (the usual echo pattern) is
//!   freed after `connection_lost`: the transport no longer holds it.
//! - The core holds its loop weakly and registers a closer with
//!   [`EventLoop::on_close`]: `close()` on the loop closes the transport
//!   (`connection_lost` with [`Error::Closed`]); dropping the loop without
//!   `close()` drops the closer unrun, whose guard still drops the socket
//!   and the protocol (no protocol call: there is no loop to run it on).
//! - A protocol method runs with the protocol marked busy; notifications a
//!   transport method raises meanwhile (`pause_writing` from a `write`
//!   inside `data_received`) wait in `deferred` and are delivered when the
//!   method returns, unless the transport is lost by then.
//! - The fd is registered through one [`OwnedSource`], claimed when the
//!   core is made and released after `connection_lost` (or when the core
//!   is dropped first): it names a Source by generation, so no late call
//!   can reach a later socket that got the same fd number. It is
//!   level-triggered. Edge-triggered stream transports (one registration
//!   for the transport's life, reads until drained) were built and
//!   measured: fewer syscalls per bulk chunk (2.24 instead of 3.39, no
//!   `epoll_ctl`) and better HTTP hello ratios, but 2–4% more instructions
//!   per echo round trip and about half the bulk MiB/s, so they were not
//!   adopted (commits a807321 and e01e221 of the `wip-edge` branch).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::{Rc, Weak};
use std::task::Waker;

use socket2::Socket;

use crate::error::{Error, Result, panic_message};
use crate::exception::ExceptionContext;
use crate::net::protocol::{DatagramProtocol, StreamProtocol};
use crate::runtime::event_loop::{Closer, CloserKey, EventLoop, WeakLoop};
use crate::runtime::fds::OwnedSource;
use crate::runtime::guard::drop_user;
use crate::runtime::selector::Interest;

/// Where a transport is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Reading and writing.
    Open,
    /// `close()` was called: no more reads or writes; the buffer is being
    /// flushed, then `connection_lost(None)`.
    Closing,
    /// `connection_lost` is due (scheduled for the next pass).
    Lost,
    /// `connection_lost` ran; the socket and the protocol are dropped.
    Gone,
}

/// A protocol notification raised by a transport method.
#[derive(Debug)]
pub(crate) enum Notification {
    PauseWriting,
    ResumeWriting,
    /// Datagram transports only.
    ErrorReceived(Error),
}

/// The protocol calls the core makes itself, whatever the kind.
pub(crate) trait CoreProtocol {
    fn notify(&mut self, what: Notification);
    fn connection_lost(&mut self, error: Option<Error>);
}

impl CoreProtocol for dyn StreamProtocol {
    fn notify(&mut self, what: Notification) {
        match what {
            Notification::PauseWriting => self.pause_writing(),
            Notification::ResumeWriting => self.resume_writing(),
            Notification::ErrorReceived(_) => {}
        }
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        StreamProtocol::connection_lost(self, error)
    }
}

impl CoreProtocol for dyn DatagramProtocol {
    fn notify(&mut self, what: Notification) {
        match what {
            Notification::PauseWriting => self.pause_writing(),
            Notification::ResumeWriting => self.resume_writing(),
            Notification::ErrorReceived(e) => self.error_received(e),
        }
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        DatagramProtocol::connection_lost(self, error)
    }
}

/// A transport kind built on [`Core`]: what differs between stream and
/// datagram transports when one is closed.
pub(crate) trait TransportKind: 'static {
    type Protocol: ?Sized + CoreProtocol + 'static;
    fn core(&self) -> &Core<Self::Protocol>;
    /// Drops what is buffered for sending (a forced close).
    fn discard_buffered(&self);
    /// The loop is closing: send what the socket takes now, without
    /// waiting, before the rest is discarded.
    fn flush_without_waiting(&self) {}
    /// Runs just before `connection_lost` (wake tasks waiting on the
    /// transport).
    fn before_lost(&self) {}
    /// Runs once the transport is gone (server bookkeeping).
    fn after_lost(&self) {}
}

/// Bits of [`Core::flags`].
mod flag {
    /// `connection_made` has run: `connection_lost` may follow.
    pub(super) const MADE: u8 = 1;
    /// A protocol method is running (the re-entrancy guard).
    pub(super) const BUSY: u8 = 2;
    /// A flush of the deferred notifications is scheduled (the protocol
    /// was borrowed by someone else when a notification came).
    pub(super) const FLUSH_SCHEDULED: u8 = 4;
    pub(super) const WRITING_PAUSED: u8 = 8;
    /// The reader callback is installed.
    pub(super) const READER_ON: u8 = 16;
    /// The writer callback is installed.
    pub(super) const WRITER_ON: u8 = 32;
}

/// What few transports ever need, allocated on first use so an idle
/// connection does not carry it.
#[derive(Default)]
struct Rare {
    /// Notifications raised while the protocol was busy.
    deferred: VecDeque<Notification>,
    /// The argument of the `connection_lost` that is due.
    lost_error: Option<Error>,
    /// `(high, low)` water marks other than the defaults.
    limits: Option<(usize, usize)>,
    /// Tasks waiting for the write buffer to empty (`sendfile`).
    empty_waiters: Vec<Waker>,
}

/// The state every transport has: socket, protocol, lifecycle, flow
/// control and the fd registrations. Kept small: 10k idle connections
/// hold 10k of these (the size is pinned by a unit test).
pub(crate) struct Core<P: ?Sized> {
    lp: WeakLoop,
    pub(crate) fd: RawFd,
    lifecycle: Cell<Lifecycle>,
    flags: Cell<u8>,
    socket: RefCell<Option<Socket>>,
    protocol: RefCell<Option<Rc<RefCell<P>>>>,
    rare: RefCell<Option<Box<Rare>>>,
    /// The fd's registration with the loop, from creation to
    /// `connection_lost` (`None` after): keyed by generation, so a late
    /// call can never reach a later socket with the same fd number.
    source: Cell<Option<OwnedSource>>,
    closer: Cell<Option<CloserKey>>,
}

impl<P: ?Sized + CoreProtocol + 'static> Core<P> {
    /// A core for `socket`, claiming its fd on `lp`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close()`.
    pub(crate) fn new(
        lp: &EventLoop,
        fd: RawFd,
        socket: Socket,
        protocol: Rc<RefCell<P>>,
    ) -> Result<Core<P>> {
        let source = lp.claim_source(fd)?;
        Ok(Core {
            lp: lp.downgrade(),
            fd,
            lifecycle: Cell::new(Lifecycle::Open),
            flags: Cell::new(0),
            socket: RefCell::new(Some(socket)),
            protocol: RefCell::new(Some(protocol)),
            rare: RefCell::new(None),
            source: Cell::new(Some(source)),
            closer: Cell::new(None),
        })
    }

    #[inline]
    fn flag(&self, bit: u8) -> bool {
        self.flags.get() & bit != 0
    }

    /// Sets or clears `bit`; returns whether it was set.
    #[inline]
    fn set_flag(&self, bit: u8, on: bool) -> bool {
        let old = self.flags.get();
        self.flags.set(if on { old | bit } else { old & !bit });
        old & bit != 0
    }

    /// Runs `f` on the rare state, making it if needed.
    fn rare<T>(&self, f: impl FnOnce(&mut Rare) -> T) -> T {
        f(self.rare.borrow_mut().get_or_insert_with(Box::default))
    }

    fn has_deferred(&self) -> bool {
        self.rare.borrow().as_ref().is_some_and(|r| !r.deferred.is_empty())
    }

    fn clear_deferred(&self) {
        let dropped = self.rare.borrow_mut().as_mut().map(|r| std::mem::take(&mut r.deferred));
        drop(dropped);
    }

    fn pop_deferred(&self) -> Option<Notification> {
        self.rare.borrow_mut().as_mut().and_then(|r| r.deferred.pop_front())
    }

    /// Queues a task to wake once the write buffer is empty.
    pub(crate) fn add_empty_waiter(&self, waker: &Waker) {
        self.rare(|r| r.empty_waiters.push(waker.clone()));
    }

    /// Wakes the tasks waiting for the write buffer to empty.
    pub(crate) fn wake_empty_waiters(&self) {
        let waiters = self.rare.borrow_mut().as_mut().map(|r| std::mem::take(&mut r.empty_waiters));
        for w in waiters.into_iter().flatten() {
            w.wake();
        }
    }

    /// The loop, while it exists.
    pub(crate) fn event_loop(&self) -> Option<EventLoop> {
        self.lp.upgrade()
    }

    /// The loop; panics if it was dropped.
    #[track_caller]
    pub(crate) fn get_loop(&self) -> EventLoop {
        self.lp.get()
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.get()
    }

    /// `close()` was called or the connection is lost.
    pub(crate) fn is_closing(&self) -> bool {
        self.lifecycle.get() != Lifecycle::Open
    }

    /// `connection_lost` is due or done.
    pub(crate) fn is_lost(&self) -> bool {
        matches!(self.lifecycle.get(), Lifecycle::Lost | Lifecycle::Gone)
    }

    /// Moves `Open → Closing`; false if it was not open.
    pub(crate) fn start_closing(&self) -> bool {
        if self.lifecycle.get() != Lifecycle::Open {
            return false;
        }
        self.lifecycle.set(Lifecycle::Closing);
        true
    }

    /// Swaps in `protocol` and returns the old one (`start_tls` puts the
    /// TLS layer between the transport and its protocol); `None`, and no
    /// swap, once the transport is lost.
    #[cfg(feature = "tls")]
    pub(crate) fn replace_protocol(&self, protocol: Rc<RefCell<P>>) -> Option<Rc<RefCell<P>>> {
        if self.is_lost() {
            return None;
        }
        self.protocol.borrow_mut().replace(protocol)
    }

    pub(crate) fn set_made(&self) {
        self.set_flag(flag::MADE, true);
        log::trace!(target: "evloop", "transport made (peer {})", self.peer_for_log());
    }

    /// The peer's address for a log line; only looked up if it is logged.
    fn peer_for_log(&self) -> String {
        if !log::log_enabled!(target: "evloop", log::Level::Trace) {
            return String::new();
        }
        match self.with_socket(|s| s.peer_addr()) {
            Ok(a) => a.as_socket().map_or_else(|| format!("{a:?}"), |a| a.to_string()),
            Err(_) => "unknown".to_owned(),
        }
    }

    /// Runs `f` on the socket while it is open.
    ///
    /// # Errors
    ///
    /// `what`'s error from `f`, or [`Error::InvalidState`] once the
    /// transport is closed.
    pub(crate) fn with_socket<T>(&self, f: impl FnOnce(&Socket) -> io::Result<T>) -> Result<T> {
        let socket = self.socket.borrow();
        let socket = socket.as_ref().ok_or(Error::InvalidState("the transport is closed"))?;
        Ok(f(socket)?)
    }

    /// Runs `f` (user code) on a duplicate of the socket's fd (`dup(2)`,
    /// closed when `f` returns): the same socket, but no borrow of the
    /// transport is alive while `f` runs, and `f` cannot close the
    /// transport's fd.
    ///
    /// # Errors
    ///
    /// As [`with_socket`](Core::with_socket), or `dup`'s error.
    pub(crate) fn with_socket_dup<T>(&self, f: impl FnOnce(&Socket) -> T) -> Result<T> {
        let dup = self.with_socket(|s| s.try_clone())?;
        Ok(f(&dup))
    }

    /// The protocol, while the transport has one.
    pub(crate) fn protocol(&self) -> Option<Rc<RefCell<P>>> {
        self.protocol.borrow().clone()
    }

    /// Runs `f` on the socket, or fails with `NotConnected` once closed
    /// (the I/O paths, which treat it as any other socket error).
    pub(crate) fn io<T>(&self, f: impl FnOnce(&Socket) -> io::Result<T>) -> io::Result<T> {
        match self.socket.borrow().as_ref() {
            Some(socket) => f(socket),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The write buffer's `(high, low)` water marks.
    pub(crate) fn limits(&self) -> (usize, usize) {
        let limits = self.rare.borrow().as_ref().and_then(|r| r.limits);
        limits
            .unwrap_or((crate::net::transport::DEFAULT_HIGH_WATER, crate::net::transport::DEFAULT_LOW_WATER))
    }

    pub(crate) fn high_water(&self) -> usize {
        self.limits().0
    }

    pub(crate) fn low_water(&self) -> usize {
        self.limits().1
    }

    pub(crate) fn set_limits(&self, high: usize, low: usize) {
        let defaults = (crate::net::transport::DEFAULT_HIGH_WATER, crate::net::transport::DEFAULT_LOW_WATER);
        if (high, low) == defaults && self.rare.borrow().is_none() {
            return;
        }
        self.rare(|r| r.limits = Some((high, low)).filter(|&l| l != defaults));
    }

    /// Installs the reader or writer callback (no-op if already on).
    fn watch(&self, on: u8, interest: Interest, f: impl Fn() + 'static) -> Result<()> {
        if self.flag(on) {
            return Ok(());
        }
        let lp = self.event_loop().ok_or(Error::Closed)?;
        let source = self.source.get().ok_or(Error::InvalidState("the transport is closed"))?;
        lp.set_source_callback(source, interest, f)?;
        self.set_flag(on, true);
        Ok(())
    }

    fn unwatch(&self, on: u8, interest: Interest) {
        if self.set_flag(on, false)
            && let (Some(lp), Some(source)) = (self.event_loop(), self.source.get())
        {
            lp.clear_source_callback(source, interest);
        }
    }

    /// Watches the fd for reading with `f` (no-op if already watched).
    pub(crate) fn watch_read(&self, f: impl Fn() + 'static) -> Result<()> {
        self.watch(flag::READER_ON, Interest::Read, f)
    }

    pub(crate) fn unwatch_read(&self) {
        self.unwatch(flag::READER_ON, Interest::Read);
    }

    /// Watches the fd for writing with `f` (no-op if already watched).
    pub(crate) fn watch_write(&self, f: impl Fn() + 'static) -> Result<()> {
        self.watch(flag::WRITER_ON, Interest::Write, f)
    }

    pub(crate) fn unwatch_write(&self) {
        self.unwatch(flag::WRITER_ON, Interest::Write);
    }

    /// Takes the socket and the protocol out and drops them, no borrow
    /// alive (the protocol's destructor is user code).
    fn drop_resources(&self) -> std::result::Result<(), String> {
        let socket = self.socket.borrow_mut().take();
        drop(socket);
        let protocol = self.protocol.borrow_mut().take();
        // Deferred notifications and the lost error hold user errors.
        let rare = self.rare.borrow_mut().take();
        drop_user((protocol, rare))
    }
}

impl<P: ?Sized> Drop for Core<P> {
    fn drop(&mut self) {
        // A transport dropped before `connection_lost` (say one that never
        // started reading, with every handle gone) still hands its fd back
        // before the socket closes: a Source the poller does not watch is
        // never found stale, so it would keep the number from the user.
        let Some(lp) = self.lp.upgrade() else { return };
        if let Some(source) = self.source.take() {
            lp.release_source(source);
        }
        if let Some(key) = self.closer.take() {
            lp.forget_on_close(key);
        }
    }
}

/// Reports a panic from protocol code to the loop's exception handler.
fn report(lp: Option<EventLoop>, what: &str, error: Error) {
    if let Some(lp) = lp {
        let ctx = ExceptionContext::new(what).with_error(error);
        lp.call_exception_handler(&ctx);
    }
}

impl<K: TransportKind> Closer for K {
    fn close(self: Rc<Self>) {
        loop_closing(&self);
    }

    /// The loop went without `close()`: free the socket and the protocol
    /// (no protocol call: there is no loop to run it on).
    fn abandon(self: Rc<Self>) {
        let core = self.core();
        if core.lifecycle.replace(Lifecycle::Gone) != Lifecycle::Gone {
            let _ = core.drop_resources();
        }
    }
}

/// Registers `this` with its loop's `close()`; call once, when the
/// transport is made.
pub(crate) fn register_closer<K: TransportKind>(this: &Rc<K>) {
    let Some(lp) = this.core().event_loop() else { return };
    let weak: Weak<K> = Rc::downgrade(this);
    let key = lp.on_close(weak);
    this.core().closer.set(Some(key));
}

/// The loop is closing: close now, telling the protocol so.
fn loop_closing<K: TransportKind>(this: &Rc<K>) {
    match this.core().lifecycle.get() {
        Lifecycle::Open | Lifecycle::Closing => {
            this.flush_without_waiting();
            force_close(this, Some(Error::Closed))
        }
        // Its `connection_lost` was scheduled on a pass that will not come.
        Lifecycle::Lost => finish_lost(this),
        Lifecycle::Gone => {}
    }
}

/// Calls the protocol unless the transport is lost. A panic is reported
/// and closes the transport (`connection_lost` with the panic).
/// Notifications raised meanwhile are delivered after `f` returns.
#[inline]
pub(crate) fn call<K: TransportKind, R>(this: &Rc<K>, f: impl FnOnce(&mut K::Protocol) -> R) -> Option<R> {
    if this.core().is_lost() {
        return None;
    }
    invoke(this, f)
}

/// Calls the protocol even though the transport is lost: only for a
/// `connection_made` that must precede the due `connection_lost`.
pub(crate) fn call_even_if_lost<K: TransportKind, R>(
    this: &Rc<K>,
    f: impl FnOnce(&mut K::Protocol) -> R,
) -> Option<R> {
    invoke(this, f)
}

/// Calls the protocol (whatever the lifecycle), then delivers deferred
/// notifications while the transport is not lost.
fn invoke<K: TransportKind, R>(this: &Rc<K>, f: impl FnOnce(&mut K::Protocol) -> R) -> Option<R> {
    let core = this.core();
    let protocol = core.protocol.borrow().clone()?;
    let was_busy = core.set_flag(flag::BUSY, true);
    debug_assert!(!was_busy, "a protocol method called re-entrantly");
    // catch_unwind itself, not `run_user`: this is the per-event path, and
    // the panic's text is only needed when there is one.
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *protocol.borrow_mut())));
    core.set_flag(flag::BUSY, false);
    drop(protocol);
    match outcome {
        Ok(value) => {
            // Almost always empty: keep the common path to one test.
            if core.has_deferred() {
                deliver_deferred(this);
            }
            Some(value)
        }
        Err(payload) => {
            let error = Error::Panicked(panic_message(&*payload));
            // The payload's destructor is user code too.
            let _ = drop_user(payload);
            core.clear_deferred();
            report(core.event_loop(), "panic in a protocol callback", error.clone());
            force_close(this, Some(error));
            None
        }
    }
}

fn deliver_deferred<K: TransportKind>(this: &Rc<K>) {
    loop {
        let core = this.core();
        if core.is_lost() {
            core.clear_deferred();
            return;
        }
        let next = core.pop_deferred();
        let Some(what) = next else { return };
        invoke(this, |p| p.notify(what));
    }
}

/// Delivers a notification now if the protocol is free, after its current
/// method if it is busy, on the next pass if someone else borrows it; never
/// once the transport is lost.
pub(crate) fn notify<K: TransportKind>(this: &Rc<K>, what: Notification) {
    let core = this.core();
    if core.is_lost() {
        return;
    }
    if core.flag(flag::BUSY) {
        core.rare(|r| r.deferred.push_back(what));
        return;
    }
    let free = core.protocol.borrow().as_ref().is_some_and(|p| p.try_borrow_mut().is_ok());
    if free {
        invoke(this, |p| p.notify(what));
        return;
    }
    // Borrowed outside any protocol method (say the caller holds the
    // `Rc<RefCell<P>>` that `create_connection` returned, mutably).
    core.rare(|r| r.deferred.push_back(what));
    if !core.set_flag(flag::FLUSH_SCHEDULED, true)
        && let Some(lp) = core.event_loop().filter(|lp| !lp.is_closed())
    {
        let me = this.clone();
        lp.call_soon(move || {
            me.core().set_flag(flag::FLUSH_SCHEDULED, false);
            deliver_deferred(&me);
        });
    }
}

/// Puts `protocol` in the old one's place (`set_protocol`). The old one is
/// dropped with no borrow alive: now, or on the next pass if one of its
/// methods is running (that method's caller still holds it, and would
/// otherwise drop it unguarded when it returns).
pub(crate) fn replace_protocol<K: TransportKind>(this: &Rc<K>, protocol: Rc<RefCell<K::Protocol>>) {
    let core = this.core();
    let old = core.protocol.borrow_mut().replace(protocol);
    let Some(old) = old else { return };
    let lp = core.event_loop();
    match lp.as_ref().filter(|lp| !lp.is_closed()) {
        Some(lp) if core.flag(flag::BUSY) => {
            let weak = lp.downgrade();
            lp.call_soon(move || {
                if let Err(message) = drop_user(old) {
                    report(weak.upgrade(), "panic in the destructor of a protocol", Error::Panicked(message));
                }
            });
        }
        _ => {
            if let Err(message) = drop_user(old) {
                report(lp, "panic in the destructor of a protocol", Error::Panicked(message));
            }
        }
    }
}

/// Crossed the high-water mark: `pause_writing`, once.
pub(crate) fn maybe_pause<K: TransportKind>(this: &Rc<K>, buffered: usize) {
    let core = this.core();
    if !core.flag(flag::WRITING_PAUSED) && buffered > core.high_water() {
        core.set_flag(flag::WRITING_PAUSED, true);
        notify(this, Notification::PauseWriting);
    }
}

/// Down to the low-water mark: `resume_writing`, once per pause.
pub(crate) fn maybe_resume<K: TransportKind>(this: &Rc<K>, buffered: usize) {
    let core = this.core();
    if core.flag(flag::WRITING_PAUSED) && buffered <= core.low_water() {
        core.set_flag(flag::WRITING_PAUSED, false);
        notify(this, Notification::ResumeWriting);
    }
}

/// Closes now, dropping buffered data (asyncio's `_force_close`).
pub(crate) fn force_close<K: TransportKind>(this: &Rc<K>, error: Option<Error>) {
    if this.core().is_lost() {
        return;
    }
    this.discard_buffered();
    connection_lost(this, error);
}

/// Stops watching the fd and schedules `connection_lost(error)` for the
/// next pass (never inside a transport method); on a closed or dropped
/// loop it runs now.
pub(crate) fn connection_lost<K: TransportKind>(this: &Rc<K>, error: Option<Error>) {
    let core = this.core();
    if core.is_lost() {
        return;
    }
    core.lifecycle.set(Lifecycle::Lost);
    core.clear_deferred();
    if error.is_some() {
        core.rare(|r| r.lost_error = error);
    }
    core.unwatch_read();
    core.unwatch_write();
    match core.event_loop().filter(|lp| !lp.is_closed()) {
        Some(lp) => {
            let me = this.clone();
            lp.call_soon(move || finish_lost(&me));
        }
        None => finish_lost(this),
    }
}

/// Calls `connection_lost`, then drops the socket, the protocol and the
/// closer: nothing of the connection stays reachable from the transport.
fn finish_lost<K: TransportKind>(this: &Rc<K>) {
    let core = this.core();
    if core.lifecycle.get() != Lifecycle::Lost {
        return;
    }
    this.before_lost();
    let error = core.rare.borrow_mut().as_mut().and_then(|r| r.lost_error.take());
    log::trace!(target: "evloop", "transport lost (peer {}): {error:?}", core.peer_for_log());
    if core.flag(flag::MADE) {
        // A panic here is reported; the transport is already lost.
        invoke(this, |p| p.connection_lost(error));
    }
    core.lifecycle.set(Lifecycle::Gone);
    let lp = core.event_loop();
    if let (Some(lp), Some(source)) = (&lp, core.source.take()) {
        lp.release_source(source);
    }
    if let Err(message) = core.drop_resources() {
        report(lp.clone(), "panic in the destructor of a protocol", Error::Panicked(message));
    }
    if let (Some(key), Some(lp)) = (core.closer.take(), &lp) {
        lp.forget_on_close(key);
    }
    this.after_lost();
}

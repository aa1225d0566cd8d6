//! The TLS layer of one connection (asyncio's `SSLProtocol`): a protocol
//! on the socket's transport that decrypts what arrives for the user's
//! protocol and encrypts what the user writes, behind the same
//! [`Transport`] API.
//!
//! Invariants:
//! - The socket's ("plain") transport owns the layer ([`TlsLayer`]) as its
//!   protocol; the layer owns the user's ("app") protocol until the plain
//!   transport's `connection_lost`, which gives the app protocol its own
//!   `connection_lost` (if it had `connection_made`) and drops it. Every
//!   error (rustls, socket, timeout, panic) closes the plain transport
//!   with it, so there is one way down.
//! - No `RefCell` of the session is borrowed while user code runs: the
//!   rustls connection is borrowed to feed, drain or encrypt, and released
//!   before the app protocol (or the plain transport, which may call back
//!   into the layer) is called.
//! - The app's write buffer is the plain transport's (ciphertext: rustls's
//!   own is drained into it on every write), so its water marks are the
//!   plain transport's and `pause_writing`/`resume_writing` are forwarded.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use crate::error::Error;
use crate::exception::ExceptionContext;
use crate::net::core::{self, TransportKind};
use crate::net::protocol::{Protocol, ReadPath, StreamProtocol};
use crate::net::transport::Transport;
use crate::runtime::guard::{drop_user, run_user};
use crate::runtime::handle::TimerHandle;
use crate::task::future::Future;

/// Plaintext handed to `data_received` at most this much at a time.
const CHUNK: usize = 64 * 1024;
/// Plaintext encrypted per step of a large `write`, so rustls's record
/// queue stays small.
const WRITE_STEP: usize = 256 * 1024;

thread_local! {
    /// The decrypted bytes lent to `data_received`, shared by the thread's
    /// connections (one is delivered at a time): an idle connection
    /// holds no receive buffer.
    static PLAIN_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn take_buf() -> Vec<u8> {
    let buf = PLAIN_BUF.with(|b| b.take());
    if buf.len() >= CHUNK { buf } else { vec![0; CHUNK] }
}

fn put_buf(buf: Vec<u8>) {
    PLAIN_BUF.with(|b| b.set(buf));
}

/// Where the TLS connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the plain transport (a server connection not yet made).
    Idle,
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The app closed: `close_notify` sent, the plain transport closing.
    Closing,
    /// The plain transport is lost; the app protocol is told or dropped.
    Lost,
}

/// A notification for the app protocol, raised while it was busy.
#[derive(Debug, Clone, Copy)]
enum AppNote {
    PauseWriting,
    ResumeWriting,
}

/// How long the TLS layer waits (asyncio's `ssl_handshake_timeout` and
/// `ssl_shutdown_timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) handshake: Duration,
    pub(crate) shutdown: Duration,
}

/// One TLS connection's state, shared by the layer (the plain transport's
/// protocol) and every app-side [`Transport`] handle.
pub(crate) struct TlsSession {
    conn: RefCell<rustls::Connection>,
    /// The socket's transport, once the layer is on it.
    plain: OnceCell<Transport>,
    /// The user's protocol, until its `connection_lost` (or the layer is
    /// dropped).
    app: RefCell<Option<Rc<RefCell<dyn StreamProtocol>>>>,
    app_read_path: Cell<ReadPath>,
    state: Cell<State>,
    /// `connection_made` runs after the handshake (false for `start_tls`,
    /// whose protocol already had it on the plain transport).
    call_connection_made: bool,
    /// The app protocol had `connection_made`: it gets `connection_lost`.
    app_made: Cell<bool>,
    app_busy: Cell<bool>,
    app_eof: Cell<bool>,
    read_paused: Cell<bool>,
    /// rustls saw the peer's `close_notify`.
    peer_closed: Cell<bool>,
    /// Decrypted bytes rustls holds that the app has not had.
    readable: Cell<usize>,
    /// Ciphertext that arrived while reading was paused.
    incoming: RefCell<Vec<u8>>,
    deferred: RefCell<VecDeque<AppNote>>,
    /// Resolved when the handshake is done; failed if it fails.
    waiter: RefCell<Option<Future<()>>>,
    /// The handshake timeout, then the shutdown timeout.
    timer: RefCell<Option<TimerHandle>>,
    timeouts: Timeouts,
}

impl TlsSession {
    /// A session for `conn`, to drive the protocol given to
    /// [`set_app`](TlsSession::set_app) once the layer is on a transport
    /// ([`start`](TlsSession::start)).
    pub(crate) fn new(
        mut conn: rustls::Connection,
        call_connection_made: bool,
        timeouts: Timeouts,
        waiter: Option<Future<()>>,
    ) -> Rc<TlsSession> {
        // Flow control is the plain transport's: rustls's queues are
        // drained into it at once, so they need no limit of their own.
        conn.set_buffer_limit(None);
        Rc::new(TlsSession {
            conn: RefCell::new(conn),
            plain: OnceCell::new(),
            app: RefCell::new(None),
            app_read_path: Cell::new(ReadPath::Shared),
            state: Cell::new(State::Idle),
            call_connection_made,
            app_made: Cell::new(!call_connection_made),
            app_busy: Cell::new(false),
            app_eof: Cell::new(false),
            read_paused: Cell::new(false),
            peer_closed: Cell::new(false),
            readable: Cell::new(0),
            incoming: RefCell::new(Vec::new()),
            deferred: RefCell::new(VecDeque::new()),
            waiter: RefCell::new(waiter),
            timer: RefCell::new(None),
            timeouts,
        })
    }

    /// The user's protocol, which the layer drives.
    pub(crate) fn set_app(&self, app: Rc<RefCell<dyn StreamProtocol>>) {
        self.app_read_path.set(app.borrow().read_path());
        *self.app.borrow_mut() = Some(app);
    }

    /// The app-side transport handle.
    pub(crate) fn app_transport(self: &Rc<Self>) -> Option<Transport> {
        let plain = self.plain.get()?;
        Some(Transport { inner: plain.inner.clone(), tls: Some(self.clone()) })
    }

    /// The layer is on `plain`: start the handshake and its timeout.
    pub(crate) fn start(self: &Rc<Self>, plain: &Transport) {
        if self.state.get() != State::Idle || self.plain.set(plain.clone()).is_err() {
            return;
        }
        self.state.set(State::Handshaking);
        let weak = Rc::downgrade(self);
        let timeout = self.timeouts.handshake;
        if let Some(lp) = plain.inner.core().event_loop().filter(|lp| !lp.is_closed()) {
            let timer = lp.call_later(timeout, move || {
                let Some(me) = weak.upgrade() else { return };
                if me.state.get() == State::Handshaking {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the TLS handshake took longer than {timeout:?}: connection aborted"),
                    );
                    me.fail(e.into());
                }
            });
            self.set_timer(Some(timer));
        }
        // A client speaks first (ClientHello).
        self.flush_tls();
    }

    fn set_timer(&self, timer: Option<TimerHandle>) {
        let old = self.timer.replace(timer);
        if let Some(old) = old {
            old.cancel();
        }
    }

    /// Closes the plain transport with `error` (the one way down).
    fn fail(&self, error: Error) {
        if let Some(plain) = self.plain.get() {
            core::force_close(&plain.inner, Some(error));
        }
    }

    // ===== the app side: what the user's Transport calls =====
    // Out of line: the plain transport's methods inline only the test.

    fn check_writable(&self) -> crate::Result<()> {
        match self.state.get() {
            State::Closing | State::Lost => Err(Error::InvalidState("cannot write to a closing transport")),
            _ => Ok(()),
        }
    }

    #[inline(never)]
    pub(crate) fn write(self: &Rc<Self>, data: &[u8]) -> crate::Result<()> {
        self.check_writable()?;
        self.encrypt(data);
        self.flush_tls();
        Ok(())
    }

    #[inline(never)]
    pub(crate) fn writelines<I>(self: &Rc<Self>, chunks: I) -> crate::Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.check_writable()?;
        // One flush for all: the records go out in one send.
        for chunk in chunks {
            self.encrypt(chunk.as_ref());
        }
        self.flush_tls();
        Ok(())
    }

    /// Hands plaintext to rustls (buffered there during the handshake).
    fn encrypt(self: &Rc<Self>, data: &[u8]) {
        for step in data.chunks(WRITE_STEP) {
            let written = self.conn.borrow_mut().writer().write_all(step);
            if written.is_err() {
                // Unreachable with no buffer limit; never lose bytes silently.
                return self.fail(io::Error::other("the TLS layer refused plaintext").into());
            }
            if data.len() > WRITE_STEP {
                self.flush_tls();
            }
        }
    }

    /// Moves rustls's queued records into the plain transport.
    fn flush_tls(&self) {
        let Some(plain) = self.plain.get() else { return };
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
            }
        }
        if !out.is_empty() {
            // A closing plain transport refuses: the connection is going.
            let _ = plain.inner.check_writable().map(|()| plain.inner.write(&out));
        }
    }

    /// asyncio: during the handshake, abort; else flush, send
    /// `close_notify`, close the socket's transport once it is flushed,
    /// and cut it off if that takes longer than the shutdown timeout.
    #[inline(never)]
    pub(crate) fn close(self: &Rc<Self>) {
        match self.state.get() {
            State::Idle | State::Handshaking => {
                self.state.set(State::Closing);
                if let Some(plain) = self.plain.get() {
                    core::force_close(&plain.inner, None);
                }
            }
            State::Open => {
                self.state.set(State::Closing);
                self.conn.borrow_mut().send_close_notify();
                self.flush_tls();
                let Some(plain) = self.plain.get() else { return };
                Transport::plain(plain.inner.clone()).close();
                if plain.inner.core().is_lost() {
                    return;
                }
                let weak = Rc::downgrade(self);
                if let Some(lp) = plain.inner.core().event_loop().filter(|lp| !lp.is_closed()) {
                    let timeout = self.timeouts.shutdown;
                    let timer = lp.call_later(timeout, move || {
                        if let Some(me) = weak.upgrade() {
                            let e = io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("the TLS shutdown took longer than {timeout:?}: connection aborted"),
                            );
                            me.fail(e.into());
                        }
                    });
                    self.set_timer(Some(timer));
                }
            }
            State::Closing | State::Lost => {}
        }
    }

    #[inline(never)]
    pub(crate) fn abort(&self) {
        if let Some(plain) = self.plain.get() {
            core::force_close(&plain.inner, None);
        }
        if self.state.get() != State::Lost {
            self.state.set(State::Closing);
        }
    }

    #[inline(never)]
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.state.get(), State::Closing | State::Lost)
    }

    #[inline(never)]
    pub(crate) fn pause_reading(&self) {
        if self.is_closing() || self.read_paused.replace(true) {
            return;
        }
        if let Some(plain) = self.plain.get() {
            Transport::plain(plain.inner.clone()).pause_reading();
        }
    }

    #[inline(never)]
    pub(crate) fn resume_reading(self: &Rc<Self>) {
        if self.is_closing() || !self.read_paused.replace(false) {
            return;
        }
        let Some(plain) = self.plain.get() else { return };
        Transport::plain(plain.inner.clone()).resume_reading();
        // What arrived or was decrypted meanwhile: on the next pass, never
        // inside this call (the app protocol may be the caller).
        if let Some(lp) = plain.inner.core().event_loop().filter(|lp| !lp.is_closed()) {
            let me = self.clone();
            lp.call_soon(move || me.read_backlog());
        }
    }

    #[inline(never)]
    pub(crate) fn is_reading(&self) -> bool {
        !self.is_closing() && !self.read_paused.get()
    }

    #[inline(never)]
    pub(crate) fn get_write_buffer_size(&self) -> usize {
        // rustls's own queue is drained into the plain transport at every
        // write, so what is left is the plain transport's.
        self.plain.get().map_or(0, |p| p.inner.write_buffered())
    }

    #[inline(never)]
    pub(crate) fn set_write_buffer_limits(&self, high: usize, low: usize) {
        if let Some(plain) = self.plain.get() {
            // Checked by the caller; the plain transport notifies the
            // layer, which forwards to the app.
            let _ = Transport::plain(plain.inner.clone()).set_write_buffer_limits(Some(high), Some(low));
        }
    }

    #[inline(never)]
    pub(crate) fn get_write_buffer_limits(&self) -> (usize, usize) {
        match self.plain.get() {
            Some(plain) => Transport::plain(plain.inner.clone()).get_write_buffer_limits(),
            None => (crate::net::DEFAULT_LOW_WATER, crate::net::DEFAULT_HIGH_WATER),
        }
    }

    /// Runs `f` on the rustls connection (the info accessors).
    pub(crate) fn with_conn<R>(&self, f: impl FnOnce(&rustls::Connection) -> R) -> R {
        f(&self.conn.borrow())
    }

    // ===== the plain side: what the layer's protocol methods call =====

    fn on_ciphertext(self: &Rc<Self>, data: &[u8]) {
        if !matches!(self.state.get(), State::Handshaking | State::Open) {
            return;
        }
        let backlog = !self.incoming.borrow().is_empty();
        if self.read_paused.get() || backlog {
            self.incoming.borrow_mut().extend_from_slice(data);
            if !self.read_paused.get() {
                self.read_backlog();
            }
            return;
        }
        let used = self.process(data);
        self.stash(&data[used..]);
    }

    /// Processes what waited while reading was paused.
    fn read_backlog(self: &Rc<Self>) {
        if self.read_paused.get() || !matches!(self.state.get(), State::Handshaking | State::Open) {
            return;
        }
        let backlog = std::mem::take(&mut *self.incoming.borrow_mut());
        let used = self.process(&backlog);
        // Anything that arrived while `process` ran went to `incoming`
        // after the part not processed.
        let mut incoming = self.incoming.borrow_mut();
        let newer = std::mem::take(&mut *incoming);
        incoming.extend_from_slice(&backlog[used..]);
        incoming.extend_from_slice(&newer);
    }

    fn stash(&self, rest: &[u8]) {
        if !rest.is_empty() && matches!(self.state.get(), State::Handshaking | State::Open) {
            self.incoming.borrow_mut().extend_from_slice(rest);
        }
    }

    /// Feeds `data` to rustls, answering the handshake and handing
    /// plaintext to the app as it is decrypted; stops early when reading
    /// is paused. Returns how much of `data` was used.
    fn process(self: &Rc<Self>, data: &[u8]) -> usize {
        let mut rest = data;
        loop {
            // Deliver first: rustls takes no input while its plaintext
            // buffer is full.
            if !self.deliver_plaintext() {
                break;
            }
            if rest.is_empty() || !matches!(self.state.get(), State::Handshaking | State::Open) {
                break;
            }
            let fed = {
                let mut conn = self.conn.borrow_mut();
                match conn.read_tls(&mut rest) {
                    // After the peer's close_notify: the rest is ignored.
                    Ok(0) => {
                        rest = &[];
                        Ok(())
                    }
                    Ok(_) => conn.process_new_packets().map(|io| {
                        self.readable.set(io.plaintext_bytes_to_read());
                        if io.peer_has_closed() {
                            self.peer_closed.set(true);
                        }
                    }),
                    Err(e) => {
                        drop(conn);
                        self.fail(e.into());
                        return data.len();
                    }
                }
            };
            if let Err(e) = fed {
                // rustls queued an alert for the peer: send it first.
                self.flush_tls();
                self.fail(Error::Tls(std::sync::Arc::new(e)));
                return data.len();
            }
            // Handshake replies, alerts, session tickets, key updates.
            self.flush_tls();
            if self.state.get() == State::Handshaking && !self.conn.borrow().is_handshaking() {
                self.handshake_done();
            }
        }
        if self.peer_closed.get() && self.readable.get() == 0 && !self.read_paused.get() {
            self.app_eof_received();
        }
        data.len() - rest.len()
    }

    /// Hands decrypted bytes to the app; false if it cannot take more now
    /// (paused, closing or gone).
    fn deliver_plaintext(self: &Rc<Self>) -> bool {
        while self.readable.get() > 0 {
            if self.read_paused.get() || self.state.get() != State::Open {
                return false;
            }
            let delivered = match self.app_read_path.get() {
                ReadPath::Buffered => self.call_app(|p| match p.get_buffer(CHUNK) {
                    Some(buf) if !buf.is_empty() => {
                        let n = self.conn.borrow_mut().reader().read(buf).unwrap_or(0);
                        if n > 0 {
                            p.buffer_updated(n);
                        }
                        n
                    }
                    _ => 0,
                }),
                ReadPath::Shared | ReadPath::Direct => {
                    let mut buf = take_buf();
                    let n = self.conn.borrow_mut().reader().read(&mut buf).unwrap_or(0);
                    let done = if n > 0 {
                        self.call_app(|p| p.data_received(&buf[..n])).map(|()| n)
                    } else {
                        Some(0)
                    };
                    put_buf(buf);
                    done
                }
            };
            match delivered {
                Some(n) if n > 0 => self.readable.set(self.readable.get().saturating_sub(n)),
                // An empty buffer from get_buffer, or a panic (reported,
                // the connection closed): nothing more for this app.
                Some(_) => {
                    self.readable.set(0);
                    if self.app_read_path.get() == ReadPath::Buffered {
                        self.fail(
                            io::Error::new(
                                io::ErrorKind::InvalidInput,
                                "get_buffer() returned an empty buffer",
                            )
                            .into(),
                        );
                    }
                    return false;
                }
                None => return false,
            }
        }
        true
    }

    fn handshake_done(self: &Rc<Self>) {
        self.state.set(State::Open);
        self.set_timer(None);
        if self.call_connection_made
            && let Some(transport) = self.app_transport()
        {
            self.app_made.set(true);
            self.call_app(|p| p.connection_made(&transport));
        }
        let waiter = self.waiter.borrow_mut().take();
        if let Some(waiter) = waiter {
            let _ = waiter.set_result(());
        }
    }

    fn app_eof_received(self: &Rc<Self>) {
        if self.state.get() != State::Open || self.app_eof.replace(true) {
            return;
        }
        if self.call_app(|p| p.eof_received()) == Some(false) {
            self.close();
        }
    }

    /// The peer closed the socket (its FIN).
    fn on_plain_eof(self: &Rc<Self>) {
        match self.state.get() {
            State::Idle | State::Handshaking => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                );
                self.fail(e.into());
            }
            // Without close_notify (a truncation asyncio also accepts as EOF).
            State::Open => {
                self.peer_closed.set(true);
                if self.readable.get() == 0 && !self.read_paused.get() {
                    self.app_eof_received();
                }
            }
            State::Closing | State::Lost => {}
        }
    }

    /// The plain transport is gone: tell the handshake's waiter and the
    /// app, then drop the app protocol.
    fn on_plain_lost(self: &Rc<Self>, error: Option<Error>) {
        let was = self.state.replace(State::Lost);
        self.set_timer(None);
        self.incoming.borrow_mut().clear();
        let waiter = self.waiter.borrow_mut().take();
        if let Some(waiter) = waiter {
            let e = error.clone().unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the connection closed during the TLS handshake",
                )
                .into()
            });
            let _ = waiter.set_exception(e);
        }
        if self.app_made.get() {
            self.call_app(|p| p.connection_lost(error));
        } else if let Some(e) = error {
            log::debug!("TLS connection failed before it was made ({was:?}): {e}");
        }
        self.release_app();
    }

    /// Drops the app protocol (user code: its destructor may panic).
    fn release_app(&self) {
        let app = self.app.borrow_mut().take();
        self.deferred.borrow_mut().clear();
        if let Err(message) = drop_user(app) {
            self.report("panic in the destructor of a protocol", Error::Panicked(message));
        }
    }

    fn report(&self, what: &str, error: Error) {
        if let Some(lp) = self.plain.get().and_then(|p| p.inner.core().event_loop()) {
            lp.call_exception_handler(&ExceptionContext::new(what).with_error(error));
        }
    }

    /// Forwards a flow-control notification from the plain transport.
    fn notify_app(self: &Rc<Self>, note: AppNote) {
        if !self.app_made.get() || self.state.get() == State::Lost {
            return;
        }
        if self.app_busy.get() {
            self.deferred.borrow_mut().push_back(note);
            return;
        }
        self.call_app(|p| match note {
            AppNote::PauseWriting => p.pause_writing(),
            AppNote::ResumeWriting => p.resume_writing(),
        });
    }

    /// Calls the app protocol, catching a panic (reported; it closes the
    /// connection, as on a plain transport), then delivers what it raised.
    fn call_app<R>(self: &Rc<Self>, f: impl FnOnce(&mut dyn StreamProtocol) -> R) -> Option<R> {
        let app = self.app.borrow().clone()?;
        self.app_busy.set(true);
        let outcome = run_user(|| f(&mut *app.borrow_mut()));
        self.app_busy.set(false);
        drop(app);
        match outcome {
            Ok(value) => {
                loop {
                    let next = self.deferred.borrow_mut().pop_front();
                    let Some(note) = next else { break };
                    self.notify_app(note);
                }
                Some(value)
            }
            Err(message) => {
                self.deferred.borrow_mut().clear();
                let error = Error::Panicked(message);
                self.report("panic in a protocol callback", error.clone());
                self.fail(error);
                None
            }
        }
    }
}

/// The TLS layer as the plain transport's protocol.
pub(crate) struct TlsLayer(pub(crate) Rc<TlsSession>);

impl Protocol for TlsLayer {
    fn connection_made(&mut self, transport: &Transport) {
        self.0.start(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        self.0.on_ciphertext(data);
    }

    fn eof_received(&mut self) -> bool {
        self.0.on_plain_eof();
        // The layer closes the socket itself (after its close_notify).
        true
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        self.0.on_plain_lost(error);
    }

    fn pause_writing(&mut self) {
        self.0.notify_app(AppNote::PauseWriting);
    }

    fn resume_writing(&mut self) {
        self.0.notify_app(AppNote::ResumeWriting);
    }
}

impl Drop for TlsLayer {
    /// Dropped without `connection_lost` (the loop dropped unclosed): the
    /// app protocol holds an app transport, which holds the session, so
    /// drop the protocol here or nothing is freed.
    fn drop(&mut self) {
        self.0.release_app();
    }
}

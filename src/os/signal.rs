//! Signals on the loop: asyncio's `add_signal_handler` and
//! `remove_signal_handler`.
//!
//! The invariant: a handler never runs in signal context. The process-wide
//! handler (`signal-hook-registry`'s, in `sys::signal`) only sets the
//! signal's bit in each watching loop's pending set and wakes that loop;
//! the loop's next pass turns the bits into ordinary ready callbacks,
//! which run the handlers with no borrow of the loop alive. Every loop
//! watching a signal gets it, whichever thread the OS delivers it to.
//!
//! Dispositions: when the last watcher of a signal in the process goes
//! (handlers and crate-internal subscriptions of every loop), the
//! disposition evloop found before it first took the signal is put back
//! (`SIG_DFL` in a program that never touched it), as asyncio's
//! `remove_signal_handler` does. A signal whose registry handler was
//! already installed by another library is left as it is; a library that
//! starts watching a signal through the registry only *after* evloop took
//! it loses it when evloop restores the disposition (the registry does not
//! say who else is watching).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::{Arc, Mutex, MutexGuard};

use slotmap::SlotMap;

use crate::error::{Error, Result};
use crate::runtime::event_loop::{EventLoop, WeakLoop};
use crate::runtime::handle::CallbackCell;
use crate::sys::signal::{self as sys, Disposition, SigId, Target};

pub use libc::{
    SIGALRM, SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2, SIGWINCH,
};

slotmap::new_key_type! {
    /// A crate-internal subscription to one signal of one loop.
    struct SubKey;
}

/// A callback waiting for its signal. `f` is `None` while it runs: it is
/// taken out of the loop's state for the call and put back after, unless
/// it was replaced or removed meanwhile.
struct Callback {
    /// Tells a handler apart from the one that replaced it.
    generation: u64,
    f: Option<Box<dyn FnMut()>>,
    /// Where it was added: the location reported for its panics and in
    /// debug mode.
    at: &'static Location<'static>,
}

/// One signal this loop watches: the user's handler and the crate's
/// subscriptions share one registration.
struct Watched {
    id: SigId,
    handler: Option<Callback>,
    subs: SlotMap<SubKey, Callback>,
}

struct State {
    target: Arc<Target>,
    watched: BTreeMap<c_int, Watched>,
    next_generation: u64,
}

/// A loop's signal handlers and subscriptions (a field of the loop),
/// created with the first one.
#[derive(Default)]
pub(crate) struct LoopSignals {
    state: RefCell<Option<Box<State>>>,
}

/// Which callback a queued run is for.
#[derive(Clone, Copy)]
enum Which {
    Handler(u64),
    Sub(SubKey),
}

impl LoopSignals {
    /// Unregisters every signal of the loop (restoring dispositions no
    /// other loop still needs) and returns the callbacks, for the caller
    /// to drop with no borrow alive. `forked`: the loop was inherited
    /// through `fork()`, whose parent threads may have held the registry's
    /// locks; its registrations are then left alone.
    pub(crate) fn shutdown(&self, forked: bool) -> Option<impl Sized + use<>> {
        let state = self.state.borrow_mut().take()?;
        if forked {
            std::mem::forget(state);
            return None;
        }
        for (&signum, watched) in &state.watched {
            if let Err(e) = release(signum, watched.id) {
                log::warn!("evloop: could not restore the disposition of {}: {e}", name(signum));
            }
        }
        Some(state)
    }
}

/// Moves the signals that arrived since the last call onto the ready
/// queue, one callback per handler and subscription (the loop's remote
/// drain calls this: a signal wakes the loop through the remote queue's
/// pending flag).
pub(crate) fn dispatch_pending(lp: &EventLoop) {
    let inner = &lp.inner;
    let mut due = Vec::new();
    {
        let state = inner.signals.state.borrow();
        let Some(state) = state.as_ref() else { return };
        let bits = state.target.take_pending();
        if bits == 0 {
            return;
        }
        for (&signum, watched) in &state.watched {
            if bits & sys::bit(signum) == 0 {
                continue;
            }
            if let Some(h) = &watched.handler {
                due.push((signum, Which::Handler(h.generation), h.at));
            }
            due.extend(watched.subs.iter().map(|(key, s)| (signum, Which::Sub(key), s.at)));
        }
    }
    for (signum, which, at) in due {
        let weak = lp.downgrade();
        inner.push_ready(CallbackCell::new(move || run_callback(&weak, signum, which), at, 0));
    }
}

/// Runs one handler or subscription: taken out of the state for the call
/// (no borrow alive while it runs), put back unless it was replaced or
/// removed meanwhile; a panic is passed on to the loop, which reports it.
fn run_callback(weak: &WeakLoop, signum: c_int, which: Which) {
    let Some(lp) = weak.upgrade() else { return };
    let taken = lp.inner.signals.with_callback(signum, which, |c| c.f.take()).flatten();
    let Some(mut f) = taken else { return };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(&mut f));
    let mut f = Some(f);
    lp.inner.signals.with_callback(signum, which, |c| {
        if c.f.is_none() {
            c.f = f.take();
        }
    });
    // Replaced or removed while it ran: dropped here, with no borrow alive.
    drop(f);
    if let Err(payload) = outcome {
        std::panic::resume_unwind(payload);
    }
}

impl LoopSignals {
    /// Calls `f` on the callback `which` of `signum`, if it still exists.
    fn with_callback<R>(&self, signum: c_int, which: Which, f: impl FnOnce(&mut Callback) -> R) -> Option<R> {
        let mut state = self.state.borrow_mut();
        let watched = state.as_mut()?.watched.get_mut(&signum)?;
        let callback = match which {
            Which::Handler(generation) => watched.handler.as_mut().filter(|h| h.generation == generation)?,
            Which::Sub(key) => watched.subs.get_mut(key)?,
        };
        Some(f(callback))
    }

    /// Runs `f` on the loop's entry for `signum`, registering the signal
    /// first if the loop does not watch it yet. Runs no user code.
    fn with_watched<R>(
        &self,
        lp: &EventLoop,
        signum: c_int,
        f: impl FnOnce(&mut Watched, u64) -> R,
    ) -> Result<R> {
        let mut slot = self.state.borrow_mut();
        if slot.is_none() {
            let poller = lp.inner.remote.poller().ok_or(Error::Closed)?;
            let target = Target::new(lp.inner.remote.clone(), poller);
            *slot = Some(Box::new(State { target, watched: BTreeMap::new(), next_generation: 0 }));
        }
        let state = slot.as_mut().expect("just created");
        state.next_generation += 1;
        let generation = state.next_generation;
        if !state.watched.contains_key(&signum) {
            let id = acquire(signum, &state.target)?;
            state.watched.insert(signum, Watched { id, handler: None, subs: SlotMap::with_key() });
        }
        let watched = state.watched.get_mut(&signum).expect("just inserted");
        Ok(f(watched, generation))
    }

    /// Removes with `f` what it takes out of the entry for `signum`, then
    /// unregisters the signal if nothing is left watching it. Returns what
    /// `f` took, for the caller to drop with no borrow alive.
    fn remove<T>(&self, signum: c_int, f: impl FnOnce(&mut Watched) -> T) -> Result<Option<T>> {
        let (taken, emptied) = {
            let mut state = self.state.borrow_mut();
            let Some(state) = state.as_mut() else { return Ok(None) };
            let Some(watched) = state.watched.get_mut(&signum) else { return Ok(None) };
            let taken = f(watched);
            let emptied = if watched.handler.is_none() && watched.subs.is_empty() {
                state.watched.remove(&signum).map(|w| w.id)
            } else {
                None
            };
            (taken, emptied)
        };
        if let Some(id) = emptied {
            // The callback goes either way: drop it (by the caller) even if
            // the disposition could not be restored.
            if let Err(e) = release(signum, id) {
                drop(taken);
                return Err(e);
            }
        }
        Ok(Some(taken))
    }
}

// ------------------------------------------------------- the public surface

impl EventLoop {
    /// Runs `f` on the loop whenever signal `signum` arrives (asyncio's
    /// `loop.add_signal_handler`). `f` runs as an ordinary callback in the
    /// loop's next pass, never in signal context, so it may do anything a
    /// callback may: call any loop method, complete futures, stop the loop.
    /// Adding a handler for a signal that has one replaces it (the old one
    /// is dropped).
    ///
    /// The signal is caught process-wide: it no longer has its default
    /// action (for `SIGINT` and `SIGTERM`, ending the process) until the
    /// handler is removed. Several loops, on any threads, may watch the
    /// same signal: each runs its own handler. Deliveries that come
    /// before the loop's next pass are merged into one call, as the OS
    /// merges a standard signal that is already pending. A panic in `f` is
    /// reported to the [exception handler](EventLoop::set_exception_handler);
    /// the handler stays installed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind `InvalidInput`, naming the signal, for a
    /// number that is not a signal, for `SIGKILL` and `SIGSTOP` (which
    /// cannot be caught), and for `SIGSEGV`, `SIGILL` and `SIGFPE` (raised
    /// by the faulting instruction itself, which a deferred handler cannot
    /// fix); [`Error::Io`] if the OS refuses the signal (those the C
    /// library reserves for itself); [`Error::Closed`] on a closed loop.
    /// A failed call changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::os::signal::SIGUSR1;
    /// let lp = evloop::EventLoop::new()?;
    /// let stopper = lp.clone();
    /// lp.add_signal_handler(SIGUSR1, move || stopper.stop())?;
    /// // Another thread, or another process, sends the signal.
    /// std::process::Command::new("kill")
    ///     .args(["-USR1", &std::process::id().to_string()])
    ///     .status()?;
    /// lp.run_forever()?; // until the handler stops it
    /// assert!(lp.remove_signal_handler(SIGUSR1)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_signal_handler(&self, signum: i32, f: impl FnMut() + 'static) -> Result<()> {
        let at = Location::caller();
        check_signal(signum, "add_signal_handler")?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let f: Box<dyn FnMut()> = Box::new(f);
        let old = self.inner.signals.with_watched(self, signum, move |watched, generation| {
            watched.handler.replace(Callback { generation, f: Some(f), at })
        })?;
        // The replaced handler's destructor is user code: no borrow alive.
        drop(old);
        Ok(())
    }

    /// Removes the handler of signal `signum` (asyncio's
    /// `loop.remove_signal_handler`) and returns whether there was one.
    /// Once no loop in the process watches the signal any more, its
    /// disposition is restored to what it was before evloop caught it:
    /// in a program that did not set one, `SIG_DFL`, the signal's default
    /// action (asyncio restores `default_int_handler` for `SIGINT`, which
    /// raises `KeyboardInterrupt`; the Rust default is the OS's: the
    /// process ends). A call already queued for the handler does not run.
    ///
    /// # Errors
    ///
    /// As [`add_signal_handler`](EventLoop::add_signal_handler) for an
    /// invalid signal number; [`Error::Io`] if the disposition could not
    /// be restored (the handler is removed all the same).
    ///
    /// # Examples
    ///
    /// ```
    /// use evloop::os::signal::SIGUSR2;
    /// let lp = evloop::EventLoop::new()?;
    /// assert!(!lp.remove_signal_handler(SIGUSR2)?);
    /// lp.add_signal_handler(SIGUSR2, || {})?;
    /// assert!(lp.remove_signal_handler(SIGUSR2)?);
    /// assert!(lp.remove_signal_handler(9).is_err()); // SIGKILL
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn remove_signal_handler(&self, signum: i32) -> Result<bool> {
        check_signal(signum, "remove_signal_handler")?;
        let old = self.inner.signals.remove(signum, |watched| watched.handler.take())?;
        let removed = matches!(old, Some(Some(_)));
        drop(old);
        Ok(removed)
    }
}

// ---------------------------------------------------- crate subscriptions

/// A crate-internal watch on one signal of one loop, independent of the
/// user's handler for it (the subprocess layer's `SIGCHLD` fallback uses
/// one). Dropping it unsubscribes; once nothing on the loop watches the
/// signal, it is unregistered as by `remove_signal_handler`.
pub(crate) struct Subscription {
    lp: WeakLoop,
    signum: c_int,
    key: SubKey,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("signal", &name(self.signum)).finish_non_exhaustive()
    }
}

/// Runs `cb` on `lp` (as an ordinary callback, in the pass after the
/// signal arrives) whenever `signum` arrives, until the returned
/// [`Subscription`] is dropped. Several subscriptions and the user's
/// handler may watch the same signal; each runs. The subprocess layer
/// watches SIGCHLD this way where pidfds are unavailable.
///
/// # Errors
///
/// As [`EventLoop::add_signal_handler`].
#[track_caller]
pub(crate) fn subscribe(lp: &EventLoop, signum: c_int, cb: impl FnMut() + 'static) -> Result<Subscription> {
    let at = Location::caller();
    check_signal(signum, "subscribe")?;
    if lp.is_closed() {
        return Err(Error::Closed);
    }
    let f: Box<dyn FnMut()> = Box::new(cb);
    let key = lp.inner.signals.with_watched(lp, signum, move |watched, generation| {
        watched.subs.insert(Callback { generation, f: Some(f), at })
    })?;
    Ok(Subscription { lp: lp.downgrade(), signum, key })
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(lp) = self.lp.upgrade() else { return };
        let key = self.key;
        match lp.inner.signals.remove(self.signum, |watched| watched.subs.remove(key)) {
            Ok(callback) => drop(callback),
            Err(e) => log::warn!("evloop: could not restore the disposition of {}: {e}", name(self.signum)),
        }
    }
}

// ------------------------------------------------ process-wide dispositions

/// What evloop did to one signal's disposition, process-wide.
struct Taken {
    /// Loops that watch the signal now.
    loops: usize,
    /// The disposition before evloop caught the signal: restored when the
    /// last loop stops watching it.
    found: Disposition,
    /// The registry's handler, to reinstall after a restore (the registry
    /// installs it only the first time).
    installed: Disposition,
    /// The registry's handler was there before evloop's first watch:
    /// another library uses the signal, so its disposition is left alone.
    shared: bool,
    /// `found` is installed again.
    restored: bool,
}

static TAKEN: Mutex<BTreeMap<c_int, Taken>> = Mutex::new(BTreeMap::new());

fn taken() -> MutexGuard<'static, BTreeMap<c_int, Taken>> {
    // Nothing panics while holding it; a poisoned map is still consistent.
    TAKEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `target` for `signum`, installing the registry's handler (or
/// reinstalling it after a restore).
fn acquire(signum: c_int, target: &Arc<Target>) -> Result<SigId> {
    let context = || format!("add_signal_handler({})", name(signum));
    let os = |e: io::Error| Error::io_context(e, context());
    let mut taken = taken();
    let Some(t) = taken.get_mut(&signum) else {
        let found = sys::disposition(signum).map_err(os)?;
        let id = sys::watch(signum, target).map_err(os)?;
        let installed = match sys::disposition(signum) {
            Ok(d) => d,
            Err(e) => {
                sys::unwatch(id);
                return Err(os(e));
            }
        };
        let shared = installed.same_handler(&found);
        taken.insert(signum, Taken { loops: 1, found, installed, shared, restored: false });
        return Ok(id);
    };
    if t.restored {
        let found = sys::disposition(signum).map_err(os)?;
        let id = sys::watch(signum, target).map_err(os)?;
        if let Err(e) = sys::set_disposition(signum, &t.installed) {
            sys::unwatch(id);
            return Err(os(e));
        }
        (t.found, t.restored) = (found, false);
        t.loops = 1;
        return Ok(id);
    }
    let id = sys::watch(signum, target).map_err(os)?;
    t.loops += 1;
    Ok(id)
}

/// Unregisters one loop's watch of `signum`; the last one restores what
/// evloop found.
fn release(signum: c_int, id: SigId) -> Result<()> {
    let mut taken = taken();
    sys::unwatch(id);
    let Some(t) = taken.get_mut(&signum) else { return Ok(()) };
    t.loops = t.loops.saturating_sub(1);
    if t.loops == 0 && !t.shared && !t.restored {
        sys::set_disposition(signum, &t.found)
            .map_err(|e| Error::io_context(e, format!("remove_signal_handler({})", name(signum))))?;
        t.restored = true;
    }
    Ok(())
}

/// Whether `signum` has its default disposition now.
fn is_default(signum: c_int) -> bool {
    sys::disposition(signum).is_ok_and(|d| d.is_default())
}

// ------------------------------------------------------------ the runner

/// Runs `fut` as the main task of `lp` with Ctrl-C cancelling it, as
/// `asyncio.Runner.run` does: if `SIGINT` has its default disposition
/// (nobody else handles it), a handler is installed that, on the first
/// Ctrl-C, cancels the main task; that delivery restores the default
/// disposition at once (in the signal handler), so that a second Ctrl-C
/// ends the process as it would without the loop, even while the loop is
/// stuck in a callback. The handler is removed when the task is done,
/// whatever happened.
pub(crate) fn run_cancelling_on_ctrl_c<F>(lp: &EventLoop, fut: F) -> Result<F::Output>
where
    F: std::future::Future + 'static,
{
    let task = lp.create_task(fut);
    let ours = if is_default(SIGINT) {
        let (t, weak) = (task.clone(), lp.downgrade());
        let installed = lp.add_signal_handler(SIGINT, move || {
            t.cancel();
            if let Some(lp) = weak.upgrade() {
                let _ = lp.remove_signal_handler(SIGINT);
            }
        });
        let ours = installed.ok().and_then(|()| lp.inner.signals.handler_generation(SIGINT));
        // The first Ctrl-C restores the default in the signal handler
        // itself: a second one ends the process even if the loop is stuck
        // in a callback and has not run the handler yet.
        lp.inner.signals.set_default_on_delivery(SIGINT, ours.is_some());
        ours
    } else {
        None
    };
    let out = lp.run_until_complete(async move { task.await });
    if ours.is_some() {
        lp.inner.signals.set_default_on_delivery(SIGINT, false);
        // Unless the first Ctrl-C removed it, or the program replaced it.
        if lp.inner.signals.handler_generation(SIGINT) == ours {
            let _ = lp.remove_signal_handler(SIGINT);
        }
    }
    out?
}

impl LoopSignals {
    /// See `sys::signal::Target::set_default_on_delivery`.
    fn set_default_on_delivery(&self, signum: c_int, on: bool) {
        if let Some(state) = self.state.borrow().as_ref() {
            state.target.set_default_on_delivery(signum, on);
        }
    }

    /// Which handler `signum` has (changes when it is replaced).
    fn handler_generation(&self, signum: c_int) -> Option<u64> {
        let state = self.state.borrow();
        state.as_ref()?.watched.get(&signum)?.handler.as_ref().map(|h| h.generation)
    }
}

// --------------------------------------------------------------- checking

/// Refuses what cannot be a loop signal, with an error naming it.
fn check_signal(signum: c_int, what: &str) -> Result<()> {
    let why = if !(1..=sys::sigrtmax().min(sys::MAX_SIGNAL)).contains(&signum) {
        format!("invalid signal number {signum}")
    } else if signum == libc::SIGKILL || signum == libc::SIGSTOP {
        format!("{} cannot be caught", name(signum))
    } else if [libc::SIGSEGV, libc::SIGILL, libc::SIGFPE].contains(&signum) {
        format!("{} is raised by a faulting instruction and cannot be handled on the loop", name(signum))
    } else {
        return Ok(());
    };
    let error = io::Error::new(io::ErrorKind::InvalidInput, why);
    Err(Error::io_context(error, format!("{what}({})", name(signum))))
}

/// The signal's usual name ("SIGINT", "SIGRTMIN+2"), or its number.
pub(crate) fn name(signum: c_int) -> String {
    const NAMES: &[(c_int, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    if let Some((_, n)) = NAMES.iter().find(|(s, _)| *s == signum) {
        return (*n).to_owned();
    }
    let (min, max) = (sys::sigrtmin(), sys::sigrtmax());
    if (min..=max).contains(&signum) {
        return if signum == min { "SIGRTMIN".to_owned() } else { format!("SIGRTMIN+{}", signum - min) };
    }
    format!("signal {signum}")
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Each test its own real-time signal (the lib's tests share a
    /// process); counted down from the top, away from tests/signals.rs.
    fn rt(n: c_int) -> c_int {
        sys::sigrtmax() - n
    }

    fn counter() -> (Rc<Cell<u32>>, impl FnMut() + 'static) {
        let count = Rc::new(Cell::new(0));
        let c = count.clone();
        (count, move || c.set(c.get() + 1))
    }

    #[test]
    fn subscriptions_and_the_handler_share_a_signal_independently() {
        let sig = rt(0);
        let lp = EventLoop::new().unwrap();
        let (handler, h) = counter();
        let (first, f) = counter();
        let (second, g) = counter();
        let sub1 = subscribe(&lp, sig, f).unwrap();
        lp.add_signal_handler(sig, h).unwrap();
        let sub2 = subscribe(&lp, sig, g).unwrap();
        sys::raise(sig);
        lp.run_until_idle().unwrap();
        assert_eq!((handler.get(), first.get(), second.get()), (1, 1, 1));
        // Removing the user's handler leaves the subscriptions (and the
        // signal caught).
        assert!(lp.remove_signal_handler(sig).unwrap());
        assert!(!is_default(sig));
        drop(sub1);
        sys::raise(sig);
        lp.run_until_idle().unwrap();
        assert_eq!((handler.get(), first.get(), second.get()), (1, 1, 2));
        drop(sub2);
        assert!(is_default(sig), "the last watcher restores the default");
    }

    #[test]
    fn a_subscription_outlives_its_loop_quietly() {
        let sig = rt(1);
        let lp = EventLoop::new().unwrap();
        let (count, f) = counter();
        let sub = subscribe(&lp, sig, f).unwrap();
        lp.close().unwrap();
        assert!(is_default(sig));
        assert!(matches!(subscribe(&lp, sig, || {}), Err(Error::Closed)));
        drop(sub);
        drop(lp);
        assert_eq!(count.get(), 0);
        assert!(
            format!("{:?}", subscribe(&EventLoop::new().unwrap(), sig, || {}).unwrap()).contains("SIGRTMIN+")
        );
        assert!(is_default(sig));
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGINT), "SIGINT");
        assert_eq!(name(sys::sigrtmin() + 2), "SIGRTMIN+2");
        assert_eq!(name(0), "signal 0");
    }

    #[test]
    fn refused_signals_are_named() {
        let e = check_signal(libc::SIGKILL, "add_signal_handler").unwrap_err();
        assert_eq!(e.to_string(), "add_signal_handler(SIGKILL): SIGKILL cannot be caught");
        assert_eq!(e.io_kind(), Some(io::ErrorKind::InvalidInput));
        let e = check_signal(0, "add_signal_handler").unwrap_err();
        assert_eq!(e.to_string(), "add_signal_handler(signal 0): invalid signal number 0");
        assert!(check_signal(libc::SIGSEGV, "x").is_err());
        assert!(check_signal(libc::SIGUSR1, "x").is_ok());
    }
}

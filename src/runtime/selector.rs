//! The selector: lasting fd Sources on top of `polling::Poller`.
//!
//! One Source per fd number the loop watches. It holds its owner (the user,
//! or a transport), per direction an optional callback (`add_reader`,
//! transports) and a list of waiting wakers (`sock_*`, `wait_readable`),
//! and what the poller watches for it. This is the only module that
//! registers fds with the poller (through [`crate::sys::poller`]).
//!
//! Invariants:
//! - A Source's poller key is its slotmap key, generation included: an
//!   event reported for a Source that has since been removed finds nothing.
//! - The poller watches exactly the directions that have a callback or a
//!   waiter: level-triggered when there is a callback (or waiters on both
//!   sides), one-shot when there are only waiters on one side (see
//!   [`Registration::Oneshot`]). A user Source left with neither is removed
//!   if it was level-triggered (`remove_reader` frees everything); a
//!   one-shot one stays registered, unwatched, for the next `sock_*` wait
//!   on its fd, until its number is reused (then it is stale, below), a
//!   transport claims the number, or the loop closes.
//! - Transports hold their Source by [`FdKey`] (generation included) from
//!   claim to release; only user registrations go by fd number.
//! - A Source whose file the kernel no longer knows is *detached* before
//!   anything else uses its number: on Linux, `epoll_ctl(MOD)` answers
//!   `ENOENT` once the registered file was closed, even if the number now
//!   names another file. Every user registration on an existing Source
//!   asks that question, and a transport's claim replaces whatever was
//!   there. Detaching cancels the callbacks (a copy already queued for this
//!   pass is skipped) and wakes the waiters, which then find their Source
//!   gone: a stale registration never runs again.
//! - No user code runs here: replaced callbacks and wakers leave in a
//!   [`Released`] for the caller to drop or wake once its borrow has ended.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use polling::Poller;
use slotmap::{Key, KeyData, SlotMap};

use crate::error::{Error, Result};
use crate::runtime::handle::{Ready, Runnable};
use crate::runtime::wait::{BlockingWait, WaitDone};
use crate::sys::poller::{self, Events};

// Poller keys carry the slotmap key's version in their upper 32 bits.
const _: () = assert!(usize::BITS == 64, "evloop needs 64-bit poller keys");

slotmap::new_key_type! {
    /// Identifies one Source; stale once it is removed, even if its fd
    /// number is registered again.
    pub(crate) struct FdKey;
}

/// Which side of an fd a callback or waiter watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Who registers callbacks on a Source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// `add_reader`/`add_writer`, `sock_*` and `wait_*`: the fd is the user's.
    User,
    /// A transport or server: user callbacks and waiters are refused.
    Transport,
}

/// The error for user registrations on an fd a transport owns.
pub(crate) fn owned_by_transport() -> Error {
    Error::InvalidState("the fd is used by a transport")
}

/// A reader or writer callback. It stays registered (level-triggered) until
/// removed or replaced; `cancelled` marks one that was, so a copy already on
/// the ready queue is skipped. The closure is stored inline: one allocation
/// per callback (10k idle connections hold 10k of them).
pub(crate) struct FdCallback<F> {
    cancelled: Cell<bool>,
    location: &'static Location<'static>,
    callback: F,
}

/// Makes the queue item of an fd callback (see [`FdCallback`]).
pub(crate) fn fd_callback<F: Fn() + 'static>(
    callback: F,
    location: &'static Location<'static>,
) -> Rc<dyn Runnable> {
    Rc::new(FdCallback { cancelled: Cell::new(false), location, callback })
}

impl<F: Fn()> Runnable for FdCallback<F> {
    fn run(&self) -> bool {
        if self.cancelled.get() {
            return false;
        }
        (self.callback)();
        true
    }
    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }
    fn cancel(&self) -> bool {
        !self.cancelled.replace(true)
    }
    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// What a selector call took out and the caller must drop (callbacks,
/// wakers) or wake, after its borrow of the selector ended.
#[derive(Default)]
#[must_use = "callbacks and wakers must be dropped or woken outside the selector borrow"]
pub(crate) struct Released {
    pub(crate) callbacks: Vec<Rc<dyn Runnable>>,
    /// Waiters of a detached Source: woken so that they see it is gone.
    pub(crate) wake: Vec<Waker>,
    /// Wakers replaced or refused: dropped, not woken.
    pub(crate) dropped: Vec<Waker>,
}

impl Released {
    pub(crate) fn is_empty(&self) -> bool {
        self.callbacks.is_empty() && self.wake.is_empty() && self.dropped.is_empty()
    }
}

pub(crate) struct Waiter {
    id: u64,
    /// Taken when the waiter fires.
    waker: Option<Waker>,
    fired: bool,
}

/// The waiters of a Source, both directions. Boxed and made on first use:
/// most Sources (transports, `add_reader`) never have a waiter.
#[derive(Default)]
struct Waiters {
    read: Vec<Waiter>,
    write: Vec<Waiter>,
}

/// Fires the waiters that have not fired yet.
fn fire_waiters(waiters: &mut [Waiter], woken: &mut Vec<Waker>) {
    for w in waiters {
        if !w.fired {
            w.fired = true;
            woken.extend(w.waker.take());
        }
    }
}

/// A set of directions, as bits (it keeps [`Source`] at 48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sides(u8);

impl Sides {
    const READ: u8 = 1;
    const WRITE: u8 = 2;

    fn new(read: bool, write: bool) -> Sides {
        Sides((u8::from(read) * Sides::READ) | (u8::from(write) * Sides::WRITE))
    }
    fn read(self) -> bool {
        self.0 & Sides::READ != 0
    }
    fn write(self) -> bool {
        self.0 & Sides::WRITE != 0
    }
    fn any(self) -> bool {
        self.0 != 0
    }
}

/// How a Source is registered with the poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// Not in the poller.
    None,
    /// Level-triggered (callbacks, or waiters on both sides), watching
    /// these sides.
    Level(Sides),
    /// One-shot (waiters on one side only, no callback): the kernel stops
    /// reporting after one event until re-armed by `epoll_ctl(MOD)`.
    /// `watch` is what the waiters want, `armed` what the kernel reports
    /// now (nothing once it fired).
    ///
    /// Such a registration outlives its waiters (a lasting Source): the
    /// next `sock_*` wait on the fd re-arms it with one `MOD` instead of an
    /// `ADD` and a `DEL` per wait. An armed one left without waiters (a
    /// cancelled wait) reports once more at most, and so does an fd closed
    /// while a `dup` of it stays open, which epoll keeps watching.
    Oneshot { watch: Sides, armed: Sides },
}

impl Registration {
    /// The sides counted in [`Selector::readers`] and
    /// [`Selector::writers`]: those with a callback or a waiter.
    fn watched(self) -> Sides {
        match self {
            Registration::None => Sides::default(),
            Registration::Level(sides) | Registration::Oneshot { watch: sides, .. } => sides,
        }
    }
}

struct Source {
    fd: RawFd,
    owner: Owner,
    registration: Registration,
    read: Option<Rc<dyn Runnable>>,
    write: Option<Rc<dyn Runnable>>,
    waiters: Option<Box<Waiters>>,
}

impl Source {
    fn callback(&mut self, interest: Interest) -> &mut Option<Rc<dyn Runnable>> {
        match interest {
            Interest::Read => &mut self.read,
            Interest::Write => &mut self.write,
        }
    }

    /// The waiters of one side, making the list if needed.
    fn waiters_mut(&mut self, interest: Interest) -> &mut Vec<Waiter> {
        let waiters = self.waiters.get_or_insert_with(Box::default);
        match interest {
            Interest::Read => &mut waiters.read,
            Interest::Write => &mut waiters.write,
        }
    }

    fn waiters(&self, interest: Interest) -> &[Waiter] {
        match (&self.waiters, interest) {
            (None, _) => &[],
            (Some(w), Interest::Read) => &w.read,
            (Some(w), Interest::Write) => &w.write,
        }
    }

    /// Frees the waiter lists once both are empty.
    fn trim_waiters(&mut self) {
        if self.waiters.as_ref().is_some_and(|w| w.read.is_empty() && w.write.is_empty()) {
            self.waiters = None;
        }
    }

    fn wanted(&self) -> Sides {
        Sides::new(
            self.read.is_some() || !self.waiters(Interest::Read).is_empty(),
            self.write.is_some() || !self.waiters(Interest::Write).is_empty(),
        )
    }

    /// Whether the poller should watch it one-shot: waiters on one side
    /// only and no callback (callbacks are level-triggered, as asyncio's;
    /// one-shot waiters on both sides would need a re-arm after each
    /// event).
    fn wants_oneshot(&self, want: Sides) -> bool {
        self.read.is_none() && self.write.is_none() && want != Sides(Sides::READ | Sides::WRITE)
    }

    /// Whether the poller has a registration for it.
    fn registered(&self) -> bool {
        self.registration != Registration::None
    }

    /// The poller reported the fd: queue the callbacks, fire the waiters
    /// (the reader first, then the writer, like asyncio's selector loop).
    #[inline]
    fn fire(&mut self, readable: bool, writable: bool, ready: &mut VecDeque<Ready>, woken: &mut Vec<Waker>) {
        if let Registration::Oneshot { armed, .. } = &mut self.registration {
            *armed = Sides::default();
        }
        if readable && let Some(cb) = &self.read {
            ready.push_back(Ready::Core(cb.clone()));
        }
        if writable && let Some(cb) = &self.write {
            ready.push_back(Ready::Core(cb.clone()));
        }
        if let Some(waiters) = &mut self.waiters {
            if readable {
                fire_waiters(&mut waiters.read, woken);
            }
            if writable {
                fire_waiters(&mut waiters.write, woken);
            }
        }
    }

    /// Empties the Source: callbacks cancelled, waiters to be woken.
    fn take_all(&mut self, released: &mut Released) {
        for cb in [self.read.take(), self.write.take()].into_iter().flatten() {
            cb.cancel();
            released.callbacks.push(cb);
        }
        if let Some(waiters) = self.waiters.take() {
            let Waiters { read, write } = *waiters;
            released.wake.extend(read.into_iter().chain(write).filter_map(|w| w.waker));
        }
    }
}

/// What a user registration adds to a Source.
enum Item {
    Callback(Rc<dyn Runnable>),
    Waiter(u64, Waker),
}

impl Item {
    fn release(self, released: &mut Released) {
        match self {
            Item::Callback(cb) => released.callbacks.push(cb),
            Item::Waiter(_, w) => released.dropped.push(w),
        }
    }
}

/// How to take an [`Item`] back off a side.
enum Undo {
    /// The callback it replaced.
    Callback(Option<Rc<dyn Runnable>>),
    Waiter,
}

fn put(src: &mut Source, interest: Interest, item: Item) -> Undo {
    match item {
        Item::Callback(cb) => Undo::Callback(src.callback(interest).replace(cb)),
        Item::Waiter(id, waker) => {
            src.waiters_mut(interest).push(Waiter { id, waker: Some(waker), fired: false });
            Undo::Waiter
        }
    }
}

fn take_back(src: &mut Source, interest: Interest, undo: Undo) -> Item {
    match undo {
        Undo::Callback(previous) => Item::Callback(
            std::mem::replace(src.callback(interest), previous).expect("the callback just put"),
        ),
        Undo::Waiter => {
            let w = src.waiters_mut(interest).pop().expect("the waiter just put");
            src.trim_waiters();
            Item::Waiter(w.id, w.waker.expect("a waiter that has not fired"))
        }
    }
}

/// Why the poller could not be brought in line with a Source.
enum SyncError {
    /// The kernel no longer knows the registered file.
    Stale,
    Io(io::Error),
}

/// What [`Selector::poll_waiter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    Pending,
    /// The fd became ready; the waiter is removed.
    Ready,
    /// The Source was detached (its fd closed and the number reused, or
    /// taken by a transport) or the loop closed.
    Gone,
}

fn poller_key(key: FdKey) -> u64 {
    key.data().as_ffi()
}

fn closed_error() -> io::Error {
    io::Error::other("event loop is closed")
}

/// Fd number → its Source: a vector indexed by the number (the kernel hands
/// out the lowest free number, so they are small and dense), with a map for
/// numbers past [`FdTable::DENSE`] so that one huge number cannot make the
/// vector huge. Cheaper than a hash map in memory (8 bytes a slot) and in
/// time (the `sock_*` methods look their fd up on every call).
#[derive(Default)]
struct FdTable {
    dense: Vec<Option<FdKey>>,
    sparse: HashMap<RawFd, FdKey>,
}

impl FdTable {
    const DENSE: usize = 1 << 16;

    fn slot(fd: RawFd) -> Option<usize> {
        usize::try_from(fd).ok().filter(|&i| i < FdTable::DENSE)
    }

    fn get(&self, fd: RawFd) -> Option<FdKey> {
        match FdTable::slot(fd) {
            Some(i) => self.dense.get(i).copied().flatten(),
            None => self.sparse.get(&fd).copied(),
        }
    }

    fn insert(&mut self, fd: RawFd, key: FdKey) {
        match FdTable::slot(fd) {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, None);
                }
                self.dense[i] = Some(key);
            }
            None => {
                self.sparse.insert(fd, key);
            }
        }
    }

    fn remove(&mut self, fd: RawFd) {
        match FdTable::slot(fd) {
            Some(i) => {
                if let Some(slot) = self.dense.get_mut(i) {
                    *slot = None;
                }
            }
            None => {
                self.sparse.remove(&fd);
            }
        }
    }
}

/// The Sources plus the poller.
pub(crate) struct Selector {
    /// `None` once the loop is closed: its epoll fd and eventfd are freed
    /// then, not when the last handle goes.
    poller: Option<Arc<Poller>>,
    sources: SlotMap<FdKey, Source>,
    by_fd: FdTable,
    /// `None` while a [`BlockingWait`] has it (or if a wait hook panicked
    /// with it: the next poll makes a new one).
    events: Option<Events>,
    /// Wakers of waiters that fired in the last poll, for the loop to wake
    /// once its borrow has ended.
    woken: Vec<Waker>,
    next_waiter: u64,
    readers: usize,
    writers: usize,
}

impl Selector {
    pub(crate) fn new(poller: Arc<Poller>) -> Selector {
        Selector {
            poller: Some(poller),
            sources: SlotMap::with_key(),
            by_fd: FdTable::default(),
            events: Some(Events::new()),
            woken: Vec::new(),
            next_waiter: 0,
            readers: 0,
            writers: 0,
        }
    }

    /// Whether no fd is watched for anything (no callback, no waiter):
    /// then polling can only report a wake-up (or a lasting Source's
    /// stale one-shot event, which nobody waits for).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.readers == 0 && self.writers == 0
    }

    /// Fds watched for reading (by a callback or a waiter).
    pub(crate) fn readers(&self) -> usize {
        self.readers
    }

    /// Fds watched for writing.
    pub(crate) fn writers(&self) -> usize {
        self.writers
    }

    /// Who owns `fd`'s Source, if it has one.
    pub(crate) fn owner(&self, fd: RawFd) -> Option<Owner> {
        self.by_fd.get(fd).map(|key| self.sources[key].owner)
    }

    /// The key of `fd`'s Source, if `owner` owns it.
    pub(crate) fn key_of(&self, fd: RawFd, owner: Owner) -> Option<FdKey> {
        self.by_fd.get(fd).filter(|&key| self.sources[key].owner == owner)
    }

    /// The fd of a live Source.
    pub(crate) fn fd_of(&self, key: FdKey) -> Option<RawFd> {
        self.sources.get(key).map(|s| s.fd)
    }

    // -------------------------------------------------------- the poller

    /// Tells the poller what `key`'s Source wants. With `verify`, asks the
    /// kernel even when nothing changed, to learn whether it still knows
    /// the registered file. On error the poller state is unchanged.
    fn sync(&mut self, key: FdKey, verify: bool) -> std::result::Result<(), SyncError> {
        let poller = self.poller.as_deref().ok_or_else(|| SyncError::Io(closed_error()))?;
        let src = &mut self.sources[key];
        let want = src.wanted();
        let oneshot = src.wants_oneshot(want);
        let (fd, pk) = (src.fd, poller_key(key));
        let registered = |sides: Sides| {
            if oneshot {
                Registration::Oneshot { watch: sides, armed: sides }
            } else {
                Registration::Level(sides)
            }
        };
        let old = src.registration;
        let new = match old {
            Registration::None if !want.any() => return Ok(()),
            Registration::None => {
                match poller::register(poller, fd, pk, want.read(), want.write(), oneshot) {
                    // Only if a registration escaped our bookkeeping; take it over.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        poller::reregister(poller, fd, pk, want.read(), want.write(), oneshot)
                            .map_err(SyncError::Io)?
                    }
                    other => other.map_err(SyncError::Io)?,
                }
                registered(want)
            }
            // A lasting Source: the registration stays for the next wait.
            Registration::Oneshot { armed, .. } if !want.any() && src.owner == Owner::User => {
                Registration::Oneshot { watch: want, armed }
            }
            _ if !want.any() => {
                poller::deregister(poller, fd);
                Registration::None
            }
            Registration::Level(sides) if !oneshot && sides == want && !verify => return Ok(()),
            // Still armed for this side: nothing to tell the kernel.
            Registration::Oneshot { armed, .. } if oneshot && armed == want && !verify => {
                Registration::Oneshot { watch: want, armed }
            }
            _ => {
                match poller::reregister(poller, fd, pk, want.read(), want.write(), oneshot) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SyncError::Stale),
                    other => other.map_err(SyncError::Io)?,
                }
                registered(want)
            }
        };
        src.registration = new;
        let (old, new) = (old.watched(), new.watched());
        self.readers = self.readers + usize::from(new.read()) - usize::from(old.read());
        self.writers = self.writers + usize::from(new.write()) - usize::from(old.write());
        Ok(())
    }

    fn insert(&mut self, fd: RawFd, owner: Owner) -> FdKey {
        let source =
            Source { fd, owner, registration: Registration::None, read: None, write: None, waiters: None };
        let key = self.sources.insert(source);
        self.by_fd.insert(fd, key);
        key
    }

    /// Removes a Source from the books (the caller has dealt with the
    /// poller): callbacks cancelled, waiters to be woken.
    fn detach(&mut self, key: FdKey, released: &mut Released) {
        let Some(mut src) = self.sources.remove(key) else { return };
        if self.by_fd.get(src.fd) == Some(key) {
            self.by_fd.remove(src.fd);
        }
        let watched = src.registration.watched();
        self.readers -= usize::from(watched.read());
        self.writers -= usize::from(watched.write());
        src.take_all(released);
    }

    /// Removes a user Source nothing is registered on any more (the poller
    /// no longer watches it: `sync` deregistered it).
    fn remove_if_unused(&mut self, key: FdKey) {
        if let Some(src) = self.sources.get(key)
            && src.owner == Owner::User
            && !src.wanted().any()
            && !src.registered()
        {
            self.by_fd.remove(src.fd);
            self.sources.remove(key);
        }
    }

    /// After a removal: brings the poller in line, detaching the Source if
    /// its file is gone, and drops it if nothing is left on it.
    fn after_removal(&mut self, key: FdKey, released: &mut Released) {
        match self.sync(key, false) {
            Err(SyncError::Stale) => self.detach(key, released),
            // The fd is closed (`EBADF`): the kernel dropped the
            // registration; what is left stays until removed or until the
            // number is reused (then `ENOENT` detaches it).
            Err(SyncError::Io(_)) | Ok(()) => self.remove_if_unused(key),
        }
    }

    // ------------------------------------------------ registrations

    /// Adds `item` on `fd` for `owner`, making the Source if needed, and
    /// detaching a stale one first. A callback replaces the side's previous
    /// one (into `released`, cancelled). On error nothing changed and the
    /// item is in `released`.
    fn attach(
        &mut self,
        fd: RawFd,
        owner: Owner,
        interest: Interest,
        mut item: Item,
        released: &mut Released,
    ) -> Result<FdKey> {
        if self.poller.is_none() {
            item.release(released);
            return Err(Error::Closed);
        }
        if let Some(key) = self.by_fd.get(fd)
            && self.sources[key].owner != owner
        {
            // A transport that closed its fd without releasing it must not
            // hold the number forever: if the kernel says the file is gone,
            // the Source is stale like any other.
            let src = &self.sources[key];
            if src.registered() && matches!(self.sync(key, true), Err(SyncError::Stale)) {
                self.detach(key, released);
            } else {
                item.release(released);
                return Err(owned_by_transport());
            }
        }
        if let Some(key) = self.by_fd.get(fd) {
            let undo = put(&mut self.sources[key], interest, item);
            // A transport keeps its fd open while it owns it: no need to
            // ask the kernel whether the file is still the same.
            match self.sync(key, owner == Owner::User) {
                Ok(()) => {
                    if let Undo::Callback(Some(previous)) = undo {
                        previous.cancel();
                        released.callbacks.push(previous);
                    }
                    return Ok(key);
                }
                Err(e) => {
                    item = take_back(&mut self.sources[key], interest, undo);
                    match e {
                        // The number names another file now: start afresh.
                        SyncError::Stale => self.detach(key, released),
                        SyncError::Io(e) => {
                            item.release(released);
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        let key = self.insert(fd, owner);
        let undo = put(&mut self.sources[key], interest, item);
        if let Err(e) = self.sync(key, false) {
            let item = take_back(&mut self.sources[key], interest, undo);
            item.release(released);
            self.sources.remove(key);
            self.by_fd.remove(fd);
            return Err(match e {
                SyncError::Io(e) => e.into(),
                SyncError::Stale => io::Error::from(io::ErrorKind::NotFound).into(),
            });
        }
        Ok(key)
    }

    /// Installs `callback` as the reader or writer of `fd` for `owner`,
    /// replacing any previous one.
    pub(crate) fn add_callback(
        &mut self,
        fd: RawFd,
        owner: Owner,
        interest: Interest,
        callback: Rc<dyn Runnable>,
        released: &mut Released,
    ) -> Result<()> {
        self.attach(fd, owner, interest, Item::Callback(callback), released).map(drop)
    }

    /// Removes the reader or writer callback of `key`'s Source. Never
    /// fails: an fd the user already closed still has its bookkeeping
    /// freed. Returns whether there was one.
    pub(crate) fn remove_callback(
        &mut self,
        key: FdKey,
        interest: Interest,
        released: &mut Released,
    ) -> bool {
        let Some(src) = self.sources.get_mut(key) else { return false };
        let Some(cb) = src.callback(interest).take() else { return false };
        cb.cancel();
        released.callbacks.push(cb);
        self.after_removal(key, released);
        true
    }

    /// Adds a waiter for `interest` on `fd` (a user fd). Returns the Source
    /// and the waiter's id.
    pub(crate) fn add_waiter(
        &mut self,
        fd: RawFd,
        interest: Interest,
        waker: Waker,
        released: &mut Released,
    ) -> Result<(FdKey, u64)> {
        let id = self.next_waiter;
        self.next_waiter += 1;
        let key = self.attach(fd, Owner::User, interest, Item::Waiter(id, waker), released)?;
        Ok((key, id))
    }

    /// Checks a waiter: ready (and then removed), still pending (its waker
    /// updated), or gone with its Source.
    pub(crate) fn poll_waiter(
        &mut self,
        key: FdKey,
        interest: Interest,
        id: u64,
        waker: &Waker,
        released: &mut Released,
    ) -> WaitState {
        let Some(src) = self.sources.get_mut(key) else { return WaitState::Gone };
        let Some(waiters) = src.waiters.as_mut() else { return WaitState::Gone };
        let side = match interest {
            Interest::Read => &mut waiters.read,
            Interest::Write => &mut waiters.write,
        };
        let Some(at) = side.iter().position(|w| w.id == id) else { return WaitState::Gone };
        let waiter = &mut side[at];
        if waiter.fired {
            side.remove(at);
            src.trim_waiters();
            self.after_removal(key, released);
            return WaitState::Ready;
        }
        if !waiter.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            released.dropped.extend(waiter.waker.replace(waker.clone()));
        }
        WaitState::Pending
    }

    /// Removes a waiter that is no longer wanted (its future was dropped).
    pub(crate) fn remove_waiter(&mut self, key: FdKey, interest: Interest, id: u64, released: &mut Released) {
        let Some(src) = self.sources.get_mut(key) else { return };
        let Some(waiters) = src.waiters.as_mut() else { return };
        let side = match interest {
            Interest::Read => &mut waiters.read,
            Interest::Write => &mut waiters.write,
        };
        let Some(at) = side.iter().position(|w| w.id == id) else { return };
        let waiter = side.remove(at);
        src.trim_waiters();
        released.dropped.extend(waiter.waker);
        self.after_removal(key, released);
    }

    // ------------------------------------------------ transport ownership

    /// Gives `fd` to a transport: a fresh Source it owns, not yet watched.
    /// Whatever was registered on the number
    /// before is detached (its file is gone, or — a user fd handed to a
    /// transport — superseded).
    pub(crate) fn claim(&mut self, fd: RawFd, released: &mut Released) -> Result<FdKey> {
        // A handle of its own: `detach` below needs `self` mutably.
        let Some(poller) = self.poller.clone() else { return Err(Error::Closed) };
        if fd < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative file descriptor").into());
        }
        if let Some(key) = self.by_fd.get(fd) {
            if self.sources[key].registered() {
                // If the file is still there, stop watching it under the
                // old key; if not, the kernel already did (ENOENT).
                poller::deregister(&poller, fd);
            }
            self.detach(key, released);
        }
        Ok(self.insert(fd, Owner::Transport))
    }

    /// Ends a transport's ownership: its callbacks and the Source go.
    pub(crate) fn release(&mut self, key: FdKey, released: &mut Released) {
        let Some(src) = self.sources.get(key) else { return };
        if src.registered()
            && let Some(poller) = self.poller.as_deref()
        {
            poller::deregister(poller, src.fd);
        }
        self.detach(key, released);
    }

    // ------------------------------------------------ polling

    /// Waits for readiness (at most `timeout`; `None` blocks until an event
    /// or a notify) and queues what it found (see [`dispatch`](Selector::dispatch)).
    #[inline]
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        ready: &RefCell<VecDeque<Ready>>,
    ) -> io::Result<()> {
        self.wait(timeout)?;
        self.dispatch(ready);
        Ok(())
    }

    /// Waits for readiness and keeps the events for
    /// [`dispatch`](Selector::dispatch); says whether it found anything: an
    /// fd's readiness or a wake-up from another thread.
    #[inline]
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let p = self.poller.as_deref().ok_or_else(closed_error)?;
        let events = self.events.get_or_insert_with(Events::new);
        let notified = poller::wait(p, events, timeout)?;
        Ok(notified || !events.is_empty())
    }

    /// The wait of [`wait`](Selector::wait) as an object that borrows
    /// nothing of the selector, for the loop's wait hook to run. The
    /// events buffer travels with it; [`finish_wait`](Selector::finish_wait)
    /// puts it back.
    pub(crate) fn begin_wait(&mut self, timeout: Option<Duration>) -> io::Result<BlockingWait> {
        let p = self.poller.clone().ok_or_else(closed_error)?;
        let events = self.events.take().unwrap_or_else(Events::new);
        Ok(BlockingWait::new(p, events, timeout))
    }

    /// Takes back what a [`BlockingWait`] returned; its events wait for
    /// [`dispatch`](Selector::dispatch).
    pub(crate) fn finish_wait(&mut self, done: WaitDone) -> io::Result<()> {
        self.events = Some(done.events);
        done.outcome.map(drop)
    }

    /// Queues the callbacks of the fds the last wait reported — the reader
    /// first, then the writer, like asyncio's selector loop — and collects
    /// the wakers of their waiters (see [`take_woken`](Selector::take_woken)).
    pub(crate) fn dispatch(&mut self, ready: &RefCell<VecDeque<Ready>>) {
        let mut ready = ready.borrow_mut();
        let Selector { sources, events, woken, .. } = self;
        let Some(events) = events else { return };
        for ev in events.ready() {
            // A missing Source is a stale event: it was removed since.
            let key = FdKey::from(KeyData::from_ffi(ev.key));
            let Some(src) = sources.get_mut(key) else { continue };
            src.fire(ev.readable, ev.writable, &mut ready, woken);
        }
    }

    /// After `fork()`, in the child: forgets the poller without telling
    /// the kernel anything. The epoll instance is shared with the parent,
    /// so removing an fd from it here would unregister the parent's fd;
    /// with no poller, closing the Sources makes no `epoll_ctl` call.
    pub(crate) fn abandon_poller(&mut self) {
        self.poller = None;
    }

    /// The wakers whose fds became ready in the last poll, swapped with
    /// `into` (an empty vector, so both keep their capacity).
    pub(crate) fn take_woken(&mut self, into: &mut Vec<Waker>) {
        std::mem::swap(&mut self.woken, into);
    }

    /// Whether the last poll fired waiters.
    #[inline]
    pub(crate) fn has_woken(&self) -> bool {
        !self.woken.is_empty()
    }

    /// Unregisters everything and frees the poller (on `close`).
    pub(crate) fn shutdown(&mut self) -> Released {
        let mut released = Released::default();
        let keys: Vec<FdKey> = self.sources.keys().collect();
        for key in keys {
            self.release(key, &mut released);
        }
        released.wake.append(&mut self.woken);
        self.poller = None;
        released
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::{Mutex, MutexGuard};

    /// Unit tests that open fds take this lock: some of them close an fd
    /// and count on getting its number back, which a test opening fds on
    /// another thread meanwhile would take.
    pub(crate) fn fd_lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn selector() -> Selector {
        Selector::new(Arc::new(Poller::new().unwrap()))
    }

    /// A socket with the number `fd`: other tests of this binary may take
    /// numbers meanwhile, so make pairs until one gets it.
    fn socket_with_fd(fd: RawFd) -> (UnixStream, Vec<UnixStream>) {
        let mut spare = Vec::new();
        for _ in 0..1000 {
            let (x, y) = UnixStream::pair().unwrap();
            if x.as_raw_fd() == fd {
                spare.push(y);
                return (x, spare);
            }
            if y.as_raw_fd() == fd {
                spare.push(x);
                return (y, spare);
            }
            spare.extend([x, y]);
        }
        panic!("fd {fd} was not reused");
    }

    fn callback() -> Rc<dyn Runnable> {
        fd_callback(|| {}, Location::caller())
    }

    /// Small numbers index the vector; a huge or negative one goes to the
    /// map and does not grow the vector.
    #[test]
    fn the_fd_table_keeps_huge_numbers_out_of_its_vector() {
        let mut keys: SlotMap<FdKey, ()> = SlotMap::with_key();
        let (a, b, c) = (keys.insert(()), keys.insert(()), keys.insert(()));
        let mut table = FdTable::default();
        table.insert(3, a);
        table.insert(1 << 30, b);
        table.insert(-1, c);
        assert_eq!(table.dense.len(), 4);
        assert_eq!((table.get(3), table.get(1 << 30), table.get(-1)), (Some(a), Some(b), Some(c)));
        assert_eq!((table.get(2), table.get(1000), table.get(-2)), (None, None, None));
        table.remove(3);
        table.remove(1 << 30);
        table.remove(-1);
        assert_eq!((table.get(3), table.get(1 << 30), table.get(-1)), (None, None, None));
        assert!(table.sparse.is_empty());
    }

    /// Every watched fd has a Source and every transport a reader
    /// callback: their sizes are part of what an idle connection costs
    /// (see also `net::transport`'s size test).
    #[test]
    fn per_fd_structs_stay_small() {
        assert_eq!(size_of::<Source>(), 48);
        let rc = std::rc::Rc::new(());
        // A transport's callback: the closure holds one `Rc`.
        let transport_callback = FdCallback {
            cancelled: Cell::new(false),
            location: Location::caller(),
            callback: move || drop(rc.clone()),
        };
        assert_eq!(size_of_val(&transport_callback), 24);
    }

    /// A transport Source whose fd was closed without `release` does not
    /// keep the number from the user once the kernel says the file is gone.
    #[test]
    fn a_stale_transport_source_gives_way_to_a_user_registration() {
        let _g = fd_lock();
        let mut sel = selector();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let mut released = Released::default();
        let key = sel.claim(fd, &mut released).unwrap();
        sel.add_callback(fd, Owner::Transport, Interest::Read, callback(), &mut released).unwrap();
        // While the file is open, the user is refused.
        let refused = sel.add_callback(fd, Owner::User, Interest::Write, callback(), &mut released);
        assert!(matches!(refused, Err(Error::InvalidState(_))));
        drop(a);
        let (_c, _spare) = socket_with_fd(fd);
        sel.add_callback(fd, Owner::User, Interest::Write, callback(), &mut released).unwrap();
        assert_eq!(sel.owner(fd), Some(Owner::User));
        assert_eq!(sel.fd_of(key), None, "the stale Source is gone");
        assert_eq!((sel.readers(), sel.writers()), (0, 1));
        assert_eq!(released.callbacks.len(), 2, "the refused and the stale callbacks");
        assert!(released.callbacks[1].cancelled(), "the stale one was cancelled");
        drop(sel.shutdown());
    }

    /// A waiter added to a Source that turns out stale lands on a fresh
    /// Source with a new key; the old waiters are woken to find theirs gone.
    #[test]
    fn a_stale_source_is_replaced_with_a_new_generation() {
        let _g = fd_lock();
        let mut sel = selector();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let mut released = Released::default();
        let (old, old_id) = sel.add_waiter(fd, Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        drop(a);
        let (_c, _spare) = socket_with_fd(fd);
        let (new, _) = sel.add_waiter(fd, Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        assert_ne!(old, new);
        assert_eq!(released.wake.len(), 1, "the old waiter is woken");
        let state = sel.poll_waiter(old, Interest::Read, old_id, Waker::noop(), &mut released);
        assert_eq!(state, WaitState::Gone);
        assert_eq!(sel.readers(), 1);
        drop(sel.shutdown());
    }

    fn poll_now(sel: &mut Selector) -> Vec<u64> {
        let ready = RefCell::new(VecDeque::new());
        sel.poll(Some(Duration::ZERO), &ready).unwrap();
        sel.events.as_ref().expect("events").ready().iter().map(|ev| ev.key).collect()
    }

    /// `sock_*` waits on one fd reuse one lasting Source and registration:
    /// the next wait re-arms it (one `MOD`) instead of adding and deleting
    /// it every time; nothing counts as watched in between.
    #[test]
    fn waits_on_one_fd_reuse_a_lasting_source() {
        let _g = fd_lock();
        let mut sel = selector();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let mut released = Released::default();
        let (key, id) = sel.add_waiter(fd, Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        assert_eq!(
            sel.sources[key].registration,
            Registration::Oneshot { watch: Sides::new(true, false), armed: Sides::new(true, false) }
        );
        std::io::Write::write_all(&mut a, b"x").unwrap();
        assert_eq!(poll_now(&mut sel), [poller_key(key)]);
        assert_eq!(sel.poll_waiter(key, Interest::Read, id, Waker::noop(), &mut released), WaitState::Ready);
        // Fired and gone: the kernel reports no more, nothing is watched,
        // but the Source stays for the next wait.
        assert_eq!(
            sel.sources[key].registration,
            Registration::Oneshot { watch: Sides::default(), armed: Sides::default() }
        );
        assert!(sel.is_empty());
        assert_eq!(poll_now(&mut sel), [] as [u64; 0], "one-shot: the unread byte is not reported again");
        let (again, id) = sel.add_waiter(fd, Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        assert_eq!(again, key, "the same Source");
        assert_eq!(sel.readers(), 1);
        assert_eq!(poll_now(&mut sel), [poller_key(key)], "re-armed");
        assert_eq!(sel.poll_waiter(key, Interest::Read, id, Waker::noop(), &mut released), WaitState::Ready);
        assert!(sel.sources[key].waiters.is_none(), "the waiter lists are freed");
        assert!(released.is_empty());
        drop(sel.shutdown());
    }

    /// A lasting registration left armed by a cancelled wait, on a file
    /// that stays open through a `dup` after its fd is closed (epoll keeps
    /// watching the file then, and nothing can delete it any more), reports
    /// once at most: the loop does not spin on it.
    #[test]
    fn a_lasting_registration_of_a_dup_reports_once_at_most() {
        let _g = fd_lock();
        let mut sel = selector();
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut released = Released::default();
        let (key, id) =
            sel.add_waiter(b.as_raw_fd(), Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        sel.remove_waiter(key, Interest::Read, id, &mut released);
        let dup = b.try_clone().unwrap();
        drop(b);
        std::io::Write::write_all(&mut a, b"x").unwrap();
        assert_eq!(poll_now(&mut sel), [poller_key(key)]);
        for _ in 0..3 {
            assert_eq!(poll_now(&mut sel), [] as [u64; 0]);
        }
        drop(dup);
        drop(released);
        drop(sel.shutdown());
    }

    /// A waiter on the other side, or a callback, turns the one-shot
    /// registration level-triggered; once they go, the waiter left is
    /// one-shot again.
    #[test]
    fn a_source_is_one_shot_only_with_waiters_on_one_side() {
        let _g = fd_lock();
        let mut sel = selector();
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let mut released = Released::default();
        let (key, read) = sel.add_waiter(fd, Interest::Read, Waker::noop().clone(), &mut released).unwrap();
        let (_, write) = sel.add_waiter(fd, Interest::Write, Waker::noop().clone(), &mut released).unwrap();
        assert_eq!(sel.sources[key].registration, Registration::Level(Sides::new(true, true)));
        // The empty socket is writable: the write waiter fires.
        assert_eq!(poll_now(&mut sel), [poller_key(key)]);
        assert_eq!(
            sel.poll_waiter(key, Interest::Write, write, Waker::noop(), &mut released),
            WaitState::Ready
        );
        assert_eq!(
            sel.sources[key].registration,
            Registration::Oneshot { watch: Sides::new(true, false), armed: Sides::new(true, false) }
        );
        sel.add_callback(fd, Owner::User, Interest::Write, callback(), &mut released).unwrap();
        assert_eq!(sel.sources[key].registration, Registration::Level(Sides::new(true, true)));
        assert!(sel.remove_callback(key, Interest::Write, &mut released));
        sel.remove_waiter(key, Interest::Read, read, &mut released);
        assert_eq!((sel.readers(), sel.writers()), (0, 0));
        assert!(sel.fd_of(key).is_some(), "lasting");
        drop(released);
        drop(sel.shutdown());
    }
}

//! The selector: fd registrations on top of `polling::Poller`.
//!
//! This is the only module that registers fds with the poller (through
//! [`crate::sys::poller`]). Each fd has one entry holding its reader and
//! writer callbacks and one level-triggered poller registration whose
//! interest is "readable if there is a reader, writable if there is a
//! writer". The poller key of an entry is its slotmap key, version
//! included, so an event that was reported for an entry that has since been
//! removed (say, its fd was closed and the number reused for a new
//! registration) finds no entry and is dropped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use polling::Poller;
use slotmap::{Key, KeyData, SlotMap};

use crate::runtime::handle::Runnable;
use crate::sys::poller::{self, Events};

// Poller keys carry the slotmap key's version in their upper 32 bits.
const _: () = assert!(usize::BITS == 64, "evloop needs 64-bit poller keys");

slotmap::new_key_type! {
    /// Identifies one fd registration; stale after `remove`.
    pub(crate) struct FdKey;
}

/// Which side of an fd a callback watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A reader or writer callback. It stays registered (level-triggered) until
/// removed or replaced; `cancelled` marks one that was, so a copy already on
/// the ready queue is skipped.
pub(crate) struct FdCallback {
    cancelled: Cell<bool>,
    location: &'static Location<'static>,
    callback: RefCell<Box<dyn FnMut()>>,
}

impl FdCallback {
    pub(crate) fn new(callback: Box<dyn FnMut()>, location: &'static Location<'static>) -> Rc<FdCallback> {
        Rc::new(FdCallback { cancelled: Cell::new(false), location, callback: RefCell::new(callback) })
    }
}

impl Runnable for FdCallback {
    fn run(&self) -> bool {
        if self.cancelled.get() {
            return false;
        }
        // The callback can only be running once: nested `run_*` calls are
        // refused, so this borrow never collides.
        (self.callback.borrow_mut())();
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

struct FdEntry {
    fd: RawFd,
    reader: Option<Rc<FdCallback>>,
    writer: Option<Rc<FdCallback>>,
}

impl FdEntry {
    fn sides(&self) -> (bool, bool) {
        (self.reader.is_some(), self.writer.is_some())
    }
}

fn poller_key(key: FdKey) -> u64 {
    key.data().as_ffi()
}

/// The fd registry plus the poller.
pub(crate) struct Selector {
    /// `None` once the loop is closed: its epoll fd and eventfd are freed
    /// then, not when the last handle goes.
    poller: Option<Arc<Poller>>,
    entries: SlotMap<FdKey, FdEntry>,
    by_fd: HashMap<RawFd, FdKey>,
    /// Fds owned by transports: user `add_reader`/`add_writer` is refused.
    owned: HashSet<RawFd>,
    events: Events,
    readers: usize,
    writers: usize,
}

impl Selector {
    pub(crate) fn new(poller: Arc<Poller>) -> Selector {
        Selector {
            poller: Some(poller),
            entries: SlotMap::with_key(),
            by_fd: HashMap::new(),
            owned: HashSet::new(),
            events: Events::new(),
            readers: 0,
            writers: 0,
        }
    }

    fn poller(&self) -> io::Result<&Poller> {
        self.poller.as_deref().ok_or_else(|| io::Error::other("event loop is closed"))
    }

    /// Unregisters everything and frees the poller (on `close`); returns
    /// the callbacks for the caller to drop after releasing its borrow.
    pub(crate) fn shutdown(&mut self) -> Vec<Rc<FdCallback>> {
        let callbacks = self.clear();
        self.poller = None;
        callbacks
    }

    /// Whether no fd is registered: then polling can only report a wake-up.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Marks `fd` as owned by a transport (or releases it).
    pub(crate) fn set_owned(&mut self, fd: RawFd, owned: bool) {
        if owned {
            self.owned.insert(fd);
        } else {
            self.owned.remove(&fd);
        }
    }

    pub(crate) fn is_owned(&self, fd: RawFd) -> bool {
        self.owned.contains(&fd)
    }

    pub(crate) fn readers(&self) -> usize {
        self.readers
    }

    pub(crate) fn writers(&self) -> usize {
        self.writers
    }

    /// Installs `callback` as the reader or writer of `fd`, replacing any
    /// previous one, which is returned (cancelled) for the caller to drop
    /// after releasing its borrow.
    pub(crate) fn add(
        &mut self,
        fd: RawFd,
        interest: Interest,
        callback: Rc<FdCallback>,
    ) -> io::Result<Option<Rc<FdCallback>>> {
        let Some(&key) = self.by_fd.get(&fd) else {
            let key = self.entries.insert(FdEntry { fd, reader: None, writer: None });
            let entry = &mut self.entries[key];
            match interest {
                Interest::Read => entry.reader = Some(callback),
                Interest::Write => entry.writer = Some(callback),
            }
            let (read, write) = entry.sides();
            let added = poller::register(self.poller()?, fd, poller_key(key), read, write);
            if let Err(e) = added {
                self.entries.remove(key);
                return Err(e);
            }
            self.by_fd.insert(fd, key);
            self.count(interest, 1);
            return Ok(None);
        };
        let entry = &mut self.entries[key];
        let slot = match interest {
            Interest::Read => &mut entry.reader,
            Interest::Write => &mut entry.writer,
        };
        let old = slot.replace(callback);
        let sides = entry.sides();
        if let Err(e) = self.rearm(fd, key, sides) {
            // Put things back as they were: the caller keeps its old callback.
            let entry = &mut self.entries[key];
            let slot = match interest {
                Interest::Read => &mut entry.reader,
                Interest::Write => &mut entry.writer,
            };
            *slot = old;
            return Err(e);
        }
        match &old {
            Some(old) => {
                old.cancel();
            }
            None => self.count(interest, 1),
        }
        Ok(old)
    }

    /// Changes the interest of a registered fd. If the kernel no longer knows
    /// the fd (it was closed and its number reused), registers it afresh.
    fn rearm(&self, fd: RawFd, key: FdKey, (read, write): (bool, bool)) -> io::Result<()> {
        let p = self.poller()?;
        match poller::reregister(p, fd, poller_key(key), read, write) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                poller::register(p, fd, poller_key(key), read, write)
            }
            other => other,
        }
    }

    /// Removes the reader or writer of `fd`, returning it (cancelled) for the
    /// caller to drop after releasing its borrow. Frees the entry, and the
    /// poller registration, when neither side is left. Never fails: an fd the
    /// user already closed still has its bookkeeping freed.
    pub(crate) fn remove(&mut self, fd: RawFd, interest: Interest) -> Option<Rc<FdCallback>> {
        let &key = self.by_fd.get(&fd)?;
        let entry = &mut self.entries[key];
        let removed = match interest {
            Interest::Read => entry.reader.take(),
            Interest::Write => entry.writer.take(),
        }?;
        removed.cancel();
        let now_unused = entry.reader.is_none() && entry.writer.is_none();
        let sides = entry.sides();
        self.count(interest, -1);
        if now_unused {
            if let Some(p) = &self.poller {
                poller::deregister(p, fd);
            }
            self.entries.remove(key);
            self.by_fd.remove(&fd);
        } else {
            // An error means the fd is closed; the entry stays until the
            // other side is removed too.
            let _ = self.rearm(fd, key, sides);
        }
        Some(removed)
    }

    fn count(&mut self, interest: Interest, delta: isize) {
        let n = match interest {
            Interest::Read => &mut self.readers,
            Interest::Write => &mut self.writers,
        };
        *n = n.checked_add_signed(delta).expect("fd callback count");
    }

    /// Waits for readiness (at most `timeout`; `None` blocks until an event
    /// or a notify) and queues the callbacks of ready fds: the reader first,
    /// then the writer, like asyncio's selector loop.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        ready: &RefCell<VecDeque<Rc<dyn Runnable>>>,
    ) -> io::Result<()> {
        let p = self.poller.as_deref().ok_or_else(|| io::Error::other("event loop is closed"))?;
        poller::wait(p, &mut self.events, timeout)?;
        let mut ready = ready.borrow_mut();
        for ev in self.events.ready() {
            self.dispatch(ev.key, ev.readable, ev.writable, &mut ready);
        }
        Ok(())
    }

    /// Queues the callbacks of the entry with poller key `data`, if it still
    /// exists (a missing entry is a stale event: its registration was
    /// removed).
    fn dispatch(&self, data: u64, readable: bool, writable: bool, ready: &mut VecDeque<Rc<dyn Runnable>>) {
        let key = FdKey::from(KeyData::from_ffi(data));
        let Some(entry) = self.entries.get(key) else { return };
        if readable && let Some(reader) = &entry.reader {
            ready.push_back(reader.clone());
        }
        if writable && let Some(writer) = &entry.writer {
            ready.push_back(writer.clone());
        }
    }

    /// Unregisters everything (on `close`) and returns the callbacks for the
    /// caller to drop after releasing its borrow.
    pub(crate) fn clear(&mut self) -> Vec<Rc<FdCallback>> {
        let mut callbacks = Vec::new();
        for (_, entry) in self.entries.drain() {
            if let Some(p) = &self.poller {
                poller::deregister(p, entry.fd);
            }
            for cb in [entry.reader, entry.writer].into_iter().flatten() {
                cb.cancel();
                callbacks.push(cb);
            }
        }
        self.by_fd.clear();
        self.owned.clear();
        self.readers = 0;
        self.writers = 0;
        callbacks
    }
}

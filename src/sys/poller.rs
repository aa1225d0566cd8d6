//! The poller calls: registering fds with `polling::Poller` and, on Linux,
//! waiting with one `epoll_wait` on the poller's own epoll fd.
//!
//! # One syscall per wait (Linux)
//!
//! `Poller::wait` in polling 3.x costs five syscalls on Linux (timerfd set,
//! timerfd re-arm, `epoll_wait`, eventfd read, eventfd re-arm). [`wait`]
//! therefore calls `epoll_wait` itself, with a millisecond timeout rounded
//! up (so timers are never early), and reports whether polling's internal
//! notifier fired; the caller then lets `Poller::wait` run once, which
//! clears and re-arms the notifier. This relies on two facts of polling's
//! epoll backend, pinned by the `~3.11` requirement and checked by the tests
//! below: an event's `u64` data is the key given at registration, and the
//! notifier's key is `usize::MAX`.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use polling::{Event, PollMode, Poller};

/// The key polling's epoll backend gives its own notifier.
pub(crate) const NOTIFY_KEY: u64 = usize::MAX as u64;

/// Borrows a raw fd for one `epoll_ctl` call.
///
/// # Safety
///
/// The returned `BorrowedFd` must not outlive the call it is passed to. The
/// fd may already be closed (the user closed it before removing it); the
/// kernel then answers `EBADF` or `ENOENT`, which callers treat as "already
/// gone". No memory is reached through it.
unsafe fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller uses the fd for a single syscall and tolerates
    // errors for a closed fd.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn interest(key: u64, read: bool, write: bool) -> Event {
    Event::new(key as usize, read, write)
}

fn mode(oneshot: bool) -> PollMode {
    if oneshot { PollMode::Oneshot } else { PollMode::Level }
}

/// Registers `fd` under `key`, watching the given sides: level-triggered,
/// or one-shot (reported once, then silent until [`reregister`]ed).
///
/// polling marks `add` unsafe because the fd must be deleted from the
/// poller before it is closed; breaking that rule costs correctness, not
/// memory safety: epoll drops a closed fd's registration by itself, and the
/// selector's keys carry a generation, so a late event for a removed entry
/// finds nothing.
pub(crate) fn register(
    poller: &Poller,
    fd: RawFd,
    key: u64,
    read: bool,
    write: bool,
    oneshot: bool,
) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative file descriptor"));
    }
    // SAFETY: see above: the selector deletes the fd before forgetting it;
    // an fd closed early only stops reporting.
    unsafe { poller.add_with_mode(fd, interest(key, read, write), mode(oneshot)) }
}

/// Changes what `fd` (registered under `key`) is watched for, and how;
/// re-arms a one-shot registration.
///
/// # Errors
///
/// `NotFound` (`ENOENT`) if the kernel does not watch the file that `fd`
/// names now: on Linux, epoll forgets a registration when its file is
/// closed, and looks registrations up by file as well as by number, so
/// this also answers for a number that was closed and reused. The
/// selector relies on it to detect stale registrations. `EBADF` if the
/// number is not open at all.
pub(crate) fn reregister(
    poller: &Poller,
    fd: RawFd,
    key: u64,
    read: bool,
    write: bool,
    oneshot: bool,
) -> io::Result<()> {
    // SAFETY: borrowed for this one call only.
    poller.modify_with_mode(unsafe { borrow(fd) }, interest(key, read, write), mode(oneshot))
}

/// Removes `fd` from the poller; errors (already closed) are ignored.
pub(crate) fn deregister(poller: &Poller, fd: RawFd) {
    // SAFETY: borrowed for this one call; a closed fd gives EBADF.
    let _ = poller.delete(unsafe { borrow(fd) });
}

/// Readiness reported for one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The key given at registration.
    pub(crate) key: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

/// Reusable storage for the events of one wait.
pub(crate) struct Events {
    #[cfg(target_os = "linux")]
    raw: Vec<libc::epoll_event>,
    /// Where polling's own `wait` reports, when it clears its notifier.
    #[cfg(target_os = "linux")]
    scratch: polling::Events,
    #[cfg(not(target_os = "linux"))]
    events: polling::Events,
    ready: Vec<Readiness>,
}

impl Events {
    /// Whether the last wait reported no fd (a wake-up is not an fd).
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    pub(crate) fn new() -> Events {
        Events::with_capacity(1024)
    }

    /// Room for `n` events per wait (the kernel keeps the rest for the
    /// next one).
    pub(crate) fn with_capacity(n: usize) -> Events {
        Events {
            #[cfg(target_os = "linux")]
            raw: Vec::with_capacity(n),
            #[cfg(target_os = "linux")]
            scratch: polling::Events::new(),
            #[cfg(not(target_os = "linux"))]
            events: polling::Events::new(),
            ready: Vec::with_capacity(1024),
        }
    }

    /// What the last [`wait`] reported, in the kernel's order.
    pub(crate) fn ready(&self) -> &[Readiness] {
        &self.ready
    }
}

/// Waits at most `timeout` (`None`: until an event or a notify) and fills
/// `events`. Returns whether the poller was notified (a wake-up from
/// another thread); the notifier is cleared before returning. An
/// interrupted wait (`EINTR`) returns with no events.
///
/// # Errors
///
/// The poller's error, other than `EINTR`.
#[cfg(target_os = "linux")]
#[inline] // once per pass: keep it inside the selector's poll
pub(crate) fn wait(poller: &Poller, events: &mut Events, timeout: Option<Duration>) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let timeout_ms = match timeout {
        None => -1,
        Some(d) => i32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    events.ready.clear();
    events.raw.clear();
    let capacity = events.raw.capacity();
    // SAFETY: the poller's epoll fd stays open while `poller` is borrowed;
    // `raw` has room for `capacity` entries, and the kernel initializes the
    // first `n` it reports.
    let n = unsafe {
        libc::epoll_wait(poller.as_raw_fd(), events.raw.as_mut_ptr(), capacity as libc::c_int, timeout_ms)
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    // SAFETY: the kernel wrote `n <= capacity` events.
    unsafe { events.raw.set_len(n as usize) };
    const READ: u32 = (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    let mut notified = false;
    for ev in &events.raw {
        let (key, flags) = (ev.u64, ev.events);
        if key == NOTIFY_KEY {
            notified = true;
            continue;
        }
        events.ready.push(Readiness { key, readable: flags & READ != 0, writable: flags & WRITE != 0 });
    }
    if notified {
        // Let polling clear and re-arm its notifier. It may report fd
        // events too (ones that came since, or past `raw`'s capacity):
        // keep them, since a one-shot registration reports only once;
        // one already in the list is not repeated (a level-triggered one
        // reports in both waits).
        events.scratch.clear();
        poller.wait(&mut events.scratch, Some(Duration::ZERO))?;
        for ev in events.scratch.iter() {
            let key = ev.key as u64;
            if key != NOTIFY_KEY && !events.ready.iter().any(|r| r.key == key) {
                events.ready.push(Readiness { key, readable: ev.readable, writable: ev.writable });
            }
        }
    }
    Ok(notified)
}

/// Waits at most `timeout` and fills `events` (portable path: polling's own
/// `wait`). Returns whether the poller was notified, as far as polling
/// tells (it does not: always false; the remote queue's flag covers it).
///
/// # Errors
///
/// The poller's error.
#[cfg(not(target_os = "linux"))]
pub(crate) fn wait(poller: &Poller, events: &mut Events, timeout: Option<Duration>) -> io::Result<bool> {
    events.ready.clear();
    events.events.clear();
    poller.wait(&mut events.events, timeout)?;
    for ev in events.events.iter() {
        events.ready.push(Readiness { key: ev.key as u64, readable: ev.readable, writable: ev.writable });
    }
    Ok(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// The fast path reads polling's registrations straight from epoll: if
    /// a polling release changes how it encodes keys, this fails.
    #[test]
    fn epoll_data_is_the_registration_key() {
        let _g = crate::runtime::selector::tests::fd_lock();
        let poller = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let key = (7u64 << 32) | 3;
        register(&poller, b.as_raw_fd(), key, true, false, false).unwrap();
        a.write_all(b"x").unwrap();
        let mut events = Events::new();
        let notified = wait(&poller, &mut events, Some(Duration::from_secs(5))).unwrap();
        assert!(!notified);
        assert_eq!(events.ready(), [Readiness { key, readable: true, writable: false }]);
        deregister(&poller, b.as_raw_fd());
    }

    /// ...and tells polling's notifier apart by its key.
    #[test]
    fn the_notifier_reports_under_its_own_key() {
        let _g = crate::runtime::selector::tests::fd_lock();
        let poller = Poller::new().unwrap();
        poller.notify().unwrap();
        let mut events = Events::new();
        assert!(wait(&poller, &mut events, Some(Duration::from_secs(5))).unwrap());
        assert!(events.ready().is_empty());
        // Cleared: a second wait times out with nothing.
        assert!(!wait(&poller, &mut events, Some(Duration::ZERO)).unwrap());
    }

    /// One-shot registrations report once: an event that polling's own
    /// `wait` picks up while clearing the notifier (here: past the raw
    /// buffer's room of one) must still be reported, or its waiter would
    /// never wake.
    #[test]
    fn events_seen_while_clearing_the_notifier_are_kept() {
        let _g = crate::runtime::selector::tests::fd_lock();
        let poller = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        register(&poller, b.as_raw_fd(), 1, true, false, true).unwrap();
        register(&poller, d.as_raw_fd(), 2, true, false, false).unwrap();
        // The notifier is ready first, so it takes the only raw slot.
        poller.notify().unwrap();
        a.write_all(b"x").unwrap();
        c.write_all(b"y").unwrap();
        let mut events = Events::with_capacity(1);
        assert!(wait(&poller, &mut events, Some(Duration::from_secs(5))).unwrap());
        let mut keys: Vec<u64> = events.ready().iter().map(|r| r.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2]);
        // The one-shot one is now silent; the level-triggered one is not.
        assert!(!wait(&poller, &mut events, Some(Duration::ZERO)).unwrap());
        assert_eq!(events.ready(), [Readiness { key: 2, readable: true, writable: false }]);
        deregister(&poller, b.as_raw_fd());
        deregister(&poller, d.as_raw_fd());
    }
}

//! The syscalls of subprocesses and pipe transports that std does not
//! wrap: `pidfd_open(2)`, `kill(2)`, and plain
//! `read(2)`/`write(2)` on a borrowed fd (pipes are not sockets, so
//! `recv`/`send` do not apply).
//!
//! Linux only: `pidfd_open` needs Linux 5.3; where it is missing it
//! fails with `ENOSYS` and the caller falls back to `SIGCHLD`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Turns a `-1` return into the thread's `errno`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// `pidfd_open(pid, 0)`: an fd that turns readable when the child `pid`
/// exits (and stays readable), close-on-exec.
///
/// # Errors
///
/// `ENOSYS` before Linux 5.3; `ESRCH` if `pid` was already reaped.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd
    // or -1; it touches no memory of ours.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    let fd =
        libc::c_int::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned an fd out of range"))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `kill(pid, signal)`.
///
/// # Errors
///
/// `ESRCH` if no such process, `EINVAL` for a bad signal, `EPERM`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        // 0 and negative pids address process groups: never what a
        // child's transport means.
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill takes two integers and touches no memory.
    check(unsafe { libc::kill(pid, signal) } as libc::c_long).map(drop)
}

/// `read(2)` into `buf`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call, and `fd` is open (borrowed).
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// `write(2)` from `data`. On a pipe whose reader is gone this is `EPIPE`
/// as long as `SIGPIPE` is ignored (Rust's runtime ignores it before
/// `main`); a host that restores `SIG_DFL` is killed by the signal instead.
pub(crate) fn write(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads of `data.len()` bytes for the
    // whole call, and `fd` is open (borrowed).
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    check(n as libc::c_long).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn read_and_write_move_bytes_through_a_pipe() {
        let (mut r, mut w) = std::io::pipe().unwrap();
        assert_eq!(write(w.as_fd(), b"abc").unwrap(), 3);
        let mut buf = [0; 8];
        assert_eq!(read(r.as_fd(), &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        w.write_all(b"x").unwrap();
        r.read_exact(&mut buf[..1]).unwrap();
    }

    #[test]
    fn pidfd_of_a_reaped_child_is_esrch_and_kill_refuses_groups() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Running or exited, but not reaped: a pidfd. (Valgrind does not
        // know the syscall: ENOSYS, as before Linux 5.3.)
        match pidfd_open(pid) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                child.wait().unwrap();
                return;
            }
            opened => assert!(opened.is_ok(), "{opened:?}"),
        }
        child.wait().unwrap();
        assert_eq!(pidfd_open(pid).unwrap_err().raw_os_error(), Some(libc::ESRCH));
        assert_eq!(kill(0, libc::SIGTERM).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}

//! Socket and file syscalls that socket2 leaves to the caller's `unsafe`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{SockAddr, SockRef};

/// `recvfrom(2)` into an initialized buffer.
pub(crate) fn recv_from(sock: &SockRef<'_>, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    sock.recv_from(as_uninit(buf))
}

/// `recv(2)` appended to `vec`'s spare capacity: at most `max` bytes are
/// received, after the bytes `vec` already holds, and `vec`'s length grows
/// by the number received.
pub(crate) fn recv_append(sock: &SockRef<'_>, vec: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    vec.reserve(max);
    let spare = &mut vec.spare_capacity_mut()[..max];
    let n = sock.recv(spare)?;
    let len = vec.len() + n;
    // SAFETY: `recv` initialized the first `n` bytes of the spare capacity,
    // which directly follow the `len - n` bytes already initialized.
    unsafe { vec.set_len(len) };
    Ok(n)
}

fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and the
    // socket calls this is used for only write initialized bytes into the
    // buffer, so the slice stays fully initialized for the caller.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// One `sendfile(2)` call from `file` at `offset` to `sock`, at most
/// `count` bytes (Linux's zero-copy path; other Unixes have other
/// signatures and are not supported).
pub(crate) fn sendfile(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on two fds borrowed (so kept open) for the call;
    // `off` is a valid, exclusively borrowed offset.
    let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

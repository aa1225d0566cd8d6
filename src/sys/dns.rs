//! `getnameinfo(3)`: the reverse lookup std does not offer.

use std::ffi::CStr;
use std::io;
use std::net::SocketAddr;

use socket2::SockAddr;

/// Resolves `addr` to a host and service name with `getnameinfo(3)`,
/// passing `flags` (`NI_*`) through. Blocks: call it off the loop thread.
///
/// # Errors
///
/// The resolver's message (`gai_strerror`) as an `io::Error`.
pub(crate) fn getnameinfo(addr: SocketAddr, flags: i32) -> io::Result<(String, String)> {
    let sa = SockAddr::from(addr);
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes; the output
    // buffers are writable for the lengths passed, and getnameinfo
    // NUL-terminates what it writes into them.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy().into_owned();
        return Err(io::Error::other(format!("getnameinfo({addr}): {msg}")));
    }
    // SAFETY: both buffers were NUL-terminated by a successful getnameinfo.
    let (host, serv) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    Ok((host.to_string_lossy().into_owned(), serv.to_string_lossy().into_owned()))
}

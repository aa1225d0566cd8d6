//! Low-level socket coroutines (asyncio's `loop.sock_*`): each tries the
//! operation at once and, if the socket is not ready, waits for readiness
//! as one waiter on the fd's Source ([`WaitReady`]), then tries again.
//!
//! Data is only ever read inside the awaiting future's `poll`, never when
//! readiness is reported, so dropping (cancelling) a pending operation
//! loses nothing: bytes that arrived stay in the socket for the next read.
//! A cancelled wait removes only its own waiter: other tasks waiting on the
//! same socket still wake.
//!
//! The fd's registration with the poller outlasts each wait (one-shot, in
//! the selector's lasting Source): the next wait on the same socket
//! re-arms it with one `epoll_ctl(MOD)` instead of an `ADD` and a `DEL`
//! per wait. It goes when the fd number is reused (found stale then),
//! when a transport takes the number, or when the loop closes.
//!
//! Every `sock_*` method fails with [`Error::InvalidState`](crate::Error)
//! on a socket a transport owns (checked before the first try, so the
//! transport's bytes are never read from under it), with
//! [`Error::Closed`](crate::Error) on a closed loop, and with
//! [`Error::Io`](crate::Error) (`EBADF`) for a closed fd.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use socket2::{SockAddr, SockRef, Socket};

use crate::error::Result;
use crate::runtime::EventLoop;
use crate::runtime::WaitReady;

/// Which readiness to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Readable,
    Writable,
}

fn wait(lp: &EventLoop, fd: RawFd, readiness: Readiness) -> WaitReady {
    match readiness {
        Readiness::Readable => lp.wait_readable(fd),
        Readiness::Writable => lp.wait_writable(fd),
    }
}

/// Retries `op` until it stops failing with `WouldBlock`, waiting for
/// `readiness` in between; `EINTR` is retried at once.
pub(crate) async fn retry<T>(
    lp: &EventLoop,
    fd: RawFd,
    readiness: Readiness,
    mut op: impl FnMut() -> io::Result<T>,
) -> Result<T> {
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(lp, fd, readiness).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `send(2)` with `MSG_NOSIGNAL`: a peer that has gone gives `EPIPE`, never
/// a `SIGPIPE` that kills the process.
pub(crate) fn send_nosignal(sock: &SockRef<'_>, data: &[u8]) -> io::Result<usize> {
    sock.send_with_flags(data, libc::MSG_NOSIGNAL)
}

/// Checks that the loop may use the socket — open loop, no transport owns
/// it — and that it is in nonblocking mode, as the `sock_*` methods need
/// (asyncio raises for blocking sockets too). Done before the first try, so
/// a transport's data is never read from under it.
fn check_socket(lp: &EventLoop, sock: &SockRef<'_>) -> Result<()> {
    lp.check_user_fd(sock.as_raw_fd())?;
    if sock.nonblocking()? {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "the socket must be in nonblocking mode").into())
    }
}

impl EventLoop {
    /// Receives up to `n` bytes (asyncio's `sock_recv`); an empty vector
    /// means the peer closed the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `recv`, or for a socket that is
    /// not nonblocking; [`Error::InvalidState`](crate::Error::InvalidState)
    /// if a transport owns the socket; [`Error::Closed`](crate::Error::Closed)
    /// if the loop is closed. The other `sock_*` methods fail the same way.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use std::io::Write;
    /// let lp = evloop::EventLoop::new()?;
    /// let (mut a, b) = UnixStream::pair()?;
    /// b.set_nonblocking(true)?;
    /// a.write_all(b"ping")?;
    /// let got = lp.run_until_complete({
    ///     let lp = lp.clone();
    ///     async move { lp.sock_recv(&b, 1024).await }
    /// })??;
    /// assert_eq!(got, b"ping");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn sock_recv(&self, sock: &impl AsFd, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let got = self.sock_recv_into(sock, &mut buf).await?;
        buf.truncate(got);
        Ok(buf)
    }

    /// Receives into `buf` (asyncio's `sock_recv_into`), returning the number
    /// of bytes read; 0 means the peer closed the connection.
    ///
    /// # Errors
    ///
    /// As [`sock_recv`](EventLoop::sock_recv).
    pub async fn sock_recv_into(&self, sock: &impl AsFd, buf: &mut [u8]) -> Result<usize> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        let fd = sock.as_fd().as_raw_fd();
        retry(self, fd, Readiness::Readable, || (&*s).read(buf)).await
    }

    /// Sends all of `data` (asyncio's `sock_sendall`), waiting for the
    /// socket to drain as needed. If the future is dropped midway, an
    /// unknown prefix of `data` has been sent.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `send` (e.g. `EPIPE` when the
    /// peer has gone; never a `SIGPIPE`).
    pub async fn sock_sendall(&self, sock: &impl AsFd, data: &[u8]) -> Result<()> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        let fd = sock.as_fd().as_raw_fd();
        let mut sent = 0;
        while sent < data.len() {
            sent += retry(self, fd, Readiness::Writable, || send_nosignal(&s, &data[sent..])).await?;
        }
        Ok(())
    }

    /// Connects `sock` to `addr` (asyncio's `sock_connect`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io): the connect error, e.g.
    /// `ConnectionRefused`.
    pub async fn sock_connect(&self, sock: &impl AsFd, addr: &SockAddr) -> Result<()> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        match s.connect(addr) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        let fd = sock.as_fd().as_raw_fd();
        self.wait_writable(fd).await?;
        match s.take_error()? {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }

    /// Accepts a connection (asyncio's `sock_accept`). The new socket is
    /// nonblocking and close-on-exec.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `accept4`.
    pub async fn sock_accept(&self, listener: &impl AsFd) -> Result<(Socket, SockAddr)> {
        let s = SockRef::from(listener);
        check_socket(self, &s)?;
        let fd = listener.as_fd().as_raw_fd();
        retry(self, fd, Readiness::Readable, || s.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)).await
    }

    /// Receives one datagram of at most `n` bytes and its sender (asyncio's
    /// `sock_recvfrom`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `recvfrom`.
    pub async fn sock_recvfrom(&self, sock: &impl AsFd, n: usize) -> Result<(Vec<u8>, SockAddr)> {
        let mut buf = vec![0u8; n];
        let (got, from) = self.sock_recvfrom_into(sock, &mut buf).await?;
        buf.truncate(got);
        Ok((buf, from))
    }

    /// Receives one datagram into `buf` (asyncio's `sock_recvfrom_into`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `recvfrom`.
    pub async fn sock_recvfrom_into(&self, sock: &impl AsFd, buf: &mut [u8]) -> Result<(usize, SockAddr)> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        let fd = sock.as_fd().as_raw_fd();
        retry(self, fd, Readiness::Readable, || recv_from(&s, buf)).await
    }

    /// Sends one datagram to `addr` (asyncio's `sock_sendto`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from `sendto`.
    pub async fn sock_sendto(&self, sock: &impl AsFd, data: &[u8], addr: &SockAddr) -> Result<usize> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        let fd = sock.as_fd().as_raw_fd();
        retry(self, fd, Readiness::Writable, || s.send_to_with_flags(data, addr, libc::MSG_NOSIGNAL)).await
    }

    /// Sends `count` bytes of `file` (all of it from `offset` when `None`)
    /// over the connected stream socket (asyncio's `sock_sendfile`), with
    /// Linux's zero-copy `sendfile(2)`, falling back to reading and sending
    /// when the kernel refuses (`EINVAL`/`ENOSYS`, e.g. for some file
    /// systems). The file's own position is not used or changed. Returns the
    /// number of bytes sent, which is short only if the file ends first.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) from the file or the socket.
    pub async fn sock_sendfile(
        &self,
        sock: &impl AsFd,
        file: &File,
        offset: u64,
        count: Option<usize>,
    ) -> Result<usize> {
        let s = SockRef::from(sock);
        check_socket(self, &s)?;
        let fd = sock.as_fd().as_raw_fd();
        let total = match count {
            Some(n) => n,
            None => usize::try_from(file.metadata()?.len().saturating_sub(offset)).unwrap_or(usize::MAX),
        };
        let mut sent = 0usize;
        let mut zero_copy = true;
        while sent < total {
            let pos = offset + sent as u64;
            let chunk = (total - sent).min(1 << 30);
            if zero_copy {
                match retry(self, fd, Readiness::Writable, || {
                    crate::sys::socket::sendfile(sock.as_fd(), file.as_fd(), pos, chunk)
                })
                .await
                {
                    Ok(0) => break,
                    Ok(n) => sent += n,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) && sent == 0 => {
                        zero_copy = false;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let mut buf = vec![0u8; chunk.min(256 * 1024)];
                let n = std::os::unix::fs::FileExt::read_at(file, &mut buf, pos)?;
                if n == 0 {
                    break;
                }
                self.sock_sendall(sock, &buf[..n]).await?;
                sent += n;
            }
        }
        Ok(sent)
    }
}

pub(crate) use crate::sys::socket::recv_from;

//! The low-level `sock_*` coroutines: round trips, errors, sendfile, and
//! cancellation that loses no data.

mod util;

use std::io::{self, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use evloop::net::{Domain, SockAddr, Socket, Type};
use evloop::{Error, EventLoop};
use util::{NetTempDir, fail_on_callback_errors, net_passes, net_read_exact, pattern, within};

const MIB: usize = 1024 * 1024;

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

fn nonblocking(domain: Domain, ty: Type) -> Socket {
    let s = Socket::new(domain, ty, None).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn listener() -> (Socket, SocketAddr) {
    let l = nonblocking(Domain::IPV4, Type::STREAM);
    l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
    l.listen(16).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    (l, addr)
}

/// A connected TCP pair made with sock_accept and sock_connect:
/// (accepted, client).
async fn tcp_pair(lp: &EventLoop) -> (Socket, Socket) {
    let (l, addr) = listener();
    let accept = {
        let lp = lp.clone();
        evloop::spawn(async move { lp.sock_accept(&l).await })
    };
    let c = nonblocking(Domain::IPV4, Type::STREAM);
    lp.sock_connect(&c, &addr.into()).await.unwrap();
    let (a, peer) = within("sock_accept", accept).await.unwrap().unwrap();
    assert_eq!(peer.as_socket(), c.local_addr().unwrap().as_socket());
    (a, c)
}

fn fd_flag(fd: RawFd, get: libc::c_int, flag: libc::c_int) -> bool {
    // SAFETY: F_GETFD/F_GETFL only query the fd.
    let v = unsafe { libc::fcntl(fd, get) };
    assert!(v >= 0);
    v & flag != 0
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ------------------------------------------------------------ round trips

#[test]
fn sock_accept_connect_sendall_recv_into_round_trip() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, c) = tcp_pair(&l).await;
        // The accepted socket is nonblocking and close-on-exec.
        assert!(fd_flag(a.as_raw_fd(), libc::F_GETFL, libc::O_NONBLOCK));
        assert!(fd_flag(a.as_raw_fd(), libc::F_GETFD, libc::FD_CLOEXEC));
        assert_eq!(a.peer_addr().unwrap().as_socket(), c.local_addr().unwrap().as_socket());

        // More than the socket buffers hold: sendall has to wait for the
        // reader, which runs concurrently on the same loop.
        let data = pattern(8 * MIB);
        let reader = {
            let l = l.clone();
            let n = data.len();
            evloop::spawn(async move {
                let mut got = Vec::with_capacity(n);
                let mut buf = vec![0u8; 64 * 1024];
                while got.len() < n {
                    let k = l.sock_recv_into(&a, &mut buf).await.unwrap();
                    assert!(k > 0, "EOF after {} bytes", got.len());
                    got.extend_from_slice(&buf[..k]);
                }
                (got, a)
            })
        };
        l.sock_sendall(&c, &data).await.unwrap();
        let (got, a) = within("reader", reader).await.unwrap();
        assert!(got == data, "bytes lost or reordered");

        l.sock_sendall(&a, b"and back").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 8).await, b"and back");
        // EOF: an empty read.
        drop(a);
        assert_eq!(l.sock_recv(&c, 10).await.unwrap(), b"");
        assert_eq!((l.stats().readers, l.stats().writers), (0, 0));
    })
    .unwrap();
}

#[test]
fn sock_sendto_and_sock_recvfrom_round_trip() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let any: SockAddr = SocketAddr::from(([127, 0, 0, 1], 0)).into();
        let u1 = nonblocking(Domain::IPV4, Type::DGRAM);
        let u2 = nonblocking(Domain::IPV4, Type::DGRAM);
        u1.bind(&any).unwrap();
        u2.bind(&any).unwrap();
        let (a1, a2) = (u1.local_addr().unwrap(), u2.local_addr().unwrap());

        // The receiver waits first.
        let receiver = {
            let l = l.clone();
            evloop::spawn(async move {
                let first = l.sock_recvfrom(&u2, 100).await.unwrap();
                let mut buf = [0u8; 100];
                let (n, from) = l.sock_recvfrom_into(&u2, &mut buf).await.unwrap();
                (first, buf[..n].to_vec(), from, u2)
            })
        };
        net_passes(2).await;
        assert!(!receiver.done());
        assert_eq!(l.sock_sendto(&u1, b"datagram one", &a2).await.unwrap(), 12);
        assert_eq!(l.sock_sendto(&u1, b"two", &a2).await.unwrap(), 3);
        let ((d1, f1), d2, f2, u2) = within("datagrams", receiver).await.unwrap();
        assert_eq!(d1, b"datagram one");
        assert_eq!(d2, b"two");
        assert_eq!(f1, a1);
        assert_eq!(f2, a1);
        // Datagram boundaries are kept; a short buffer truncates.
        l.sock_sendto(&u2, b"0123456789", &a1).await.unwrap();
        let (d, from) = l.sock_recvfrom(&u1, 4).await.unwrap();
        assert_eq!((d.as_slice(), from), (b"0123".as_slice(), a2));
    })
    .unwrap();
}

#[test]
fn sock_connect_to_a_closed_port_is_connection_refused() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let c = nonblocking(Domain::IPV4, Type::STREAM);
        let addr: SockAddr = SocketAddr::from(([127, 0, 0, 1], closed_port())).into();
        let e = l.sock_connect(&c, &addr).await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionRefused), "{e}");
        assert_eq!(l.stats().writers, 0);
    })
    .unwrap();
}

#[test]
fn sock_methods_refuse_blocking_sockets() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, _c) = tcp_pair(&l).await;
        a.set_nonblocking(false).unwrap();
        let e = l.sock_recv(&a, 10).await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::InvalidInput), "{e}");
        let e = l.sock_sendall(&a, b"x").await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::InvalidInput), "{e}");
    })
    .unwrap();
}

// ------------------------------------------------------------ cancellation

#[test]
fn cancelled_sock_recv_loses_no_bytes_and_removes_its_reader() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, c) = tcp_pair(&l).await;
        // The peer sends nothing: the receive times out.
        let r = evloop::wait_for(l.sock_recv(&a, 100), Duration::from_millis(20)).await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert_eq!(l.stats().readers, 0, "the cancelled sock_recv left its reader");
        l.sock_sendall(&c, b"hello after timeout").await.unwrap();
        assert_eq!(net_read_exact(&l, &a, 19).await, b"hello after timeout");

        // sock_recv_into, cancelled after the bytes arrived but before it
        // ran again: they stay in the socket.
        let a = std::rc::Rc::new(a);
        let task = {
            let (l, a) = (l.clone(), a.clone());
            evloop::spawn(async move {
                let mut buf = [0u8; 100];
                l.sock_recv_into(&*a, &mut buf).await.map(|n| buf[..n].to_vec())
            })
        };
        net_passes(2).await;
        assert!(!task.done());
        assert_eq!(l.stats().readers, 1);
        l.sock_sendall(&c, b"racing bytes").await.unwrap();
        assert!(task.cancel());
        net_passes(3).await;
        assert!(task.cancelled());
        assert_eq!(l.stats().readers, 0);
        assert_eq!(net_read_exact(&l, &a, 12).await, b"racing bytes");
    })
    .unwrap();
}

#[test]
fn cancelled_sock_accept_loses_no_connection() {
    let lp = new_loop();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (listener, addr) = listener();
        let r = evloop::wait_for(l.sock_accept(&listener), Duration::from_millis(20)).await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert_eq!(l.stats().readers, 0);
        let c = nonblocking(Domain::IPV4, Type::STREAM);
        l.sock_connect(&c, &addr.into()).await.unwrap();
        let (a, _) = within("accept", l.sock_accept(&listener)).await.unwrap();
        l.sock_sendall(&c, b"hi").await.unwrap();
        assert_eq!(net_read_exact(&l, &a, 2).await, b"hi");
    })
    .unwrap();
}

// ------------------------------------------------------------ sendfile

#[test]
fn sock_sendfile_sends_a_10_mib_file_intact() {
    let dir = NetTempDir::new("sendfile");
    let path = dir.join("data.bin");
    let content = pattern(10 * MIB + 123);
    std::fs::File::create(&path).unwrap().write_all(&content).unwrap();
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let mut file = std::fs::File::open(&path).unwrap();
        let (a, c) = tcp_pair(&l).await;
        let a = std::rc::Rc::new(a);
        let n = content.len();
        let reader = {
            let (l, a) = (l.clone(), a.clone());
            evloop::spawn(async move { net_read_exact(&l, &a, n).await })
        };
        let sent = l.sock_sendfile(&c, &file, 0, None).await.unwrap();
        assert_eq!(sent, n);
        let got = within("the file's bytes", reader).await.unwrap();
        assert!(got == content, "the file arrived damaged");
        // The file's own position is not used or moved.
        assert_eq!(file.stream_position().unwrap(), 0);

        // A slice from an offset.
        let sent = l.sock_sendfile(&c, &file, 1000, Some(5000)).await.unwrap();
        assert_eq!(sent, 5000);
        assert_eq!(net_read_exact(&l, &a, 5000).await, content[1000..6000]);
        // Asking for more than the file holds sends what there is.
        let sent = l.sock_sendfile(&c, &file, (n - 10) as u64, Some(100)).await.unwrap();
        assert_eq!(sent, 10);
        assert_eq!(net_read_exact(&l, &a, 10).await, content[n - 10..]);
        let _ = file.seek(io::SeekFrom::Start(0));
    })
    .unwrap();
}

// ------------------------------------------------------------ waiters and owners

/// Defect: two tasks `sock_recv` on one socket; the first times out and its
/// cleanup removed the second one's reader, so the second never woke
/// although data arrived. Each wait is its own waiter now: the timed-out
/// one removes only itself.
#[test]
fn two_sock_recv_on_one_socket_and_the_first_times_out() {
    let lp = util::manual_loop();
    let _errors = fail_on_callback_errors(&lp);
    let (a, b) = util::socketpair();
    let b = std::rc::Rc::new(b);
    let first = {
        let (l, b) = (lp.clone(), b.clone());
        lp.create_task(async move { evloop::wait_for(l.sock_recv(&*b, 100), Duration::from_secs(1)).await })
    };
    let second = {
        let (l, b) = (lp.clone(), b.clone());
        lp.create_task(async move { l.sock_recv(&*b, 100).await })
    };
    lp.run_until_idle().unwrap();
    assert!(!first.done() && !second.done());
    assert_eq!(lp.stats().readers, 1, "one socket, one registration");
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert!(first.done(), "the first receive timed out");
    assert!(matches!(first.result(), Ok(Err(Error::Timeout))), "{:?}", first.result());
    assert!(!second.done());
    assert_eq!(lp.stats().readers, 1, "the second receive is still waiting");
    (&a).write_all(b"for the second").unwrap();
    let got = lp.run_until_complete(second).unwrap().unwrap().unwrap();
    assert_eq!(got, b"for the second");
    assert_eq!(lp.stats().readers, 0);
}

/// `sock_*` and `wait_*` refuse an fd a transport owns — before trying
/// the operation, so the transport's bytes are not read from under it —
/// and report a closed fd as `EBADF`.
#[test]
fn sock_methods_refuse_a_transports_fd_and_a_closed_fd() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (listener, addr) = listener();
        let (transport, _proto) = l
            .create_connection(|| util::RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
            .await
            .unwrap();
        let (accepted, _) = within("accept", l.sock_accept(&listener)).await.unwrap();
        l.sock_sendall(&accepted, b"for the transport").await.unwrap();
        let fd = transport.fd();
        // SAFETY: the transport keeps the fd open for this block.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let r = l.sock_recv(&borrowed, 100).await;
        assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}");
        let r = l.sock_sendall(&borrowed, b"x").await;
        assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}");
        let r = l.wait_readable(fd).await;
        assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}");
        transport.close();

        let s = nonblocking(Domain::IPV4, Type::STREAM);
        let closed = s.as_raw_fd();
        drop(s);
        // SAFETY: the number is closed; the calls only get EBADF for it.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(closed) };
        let r = l.sock_recv(&borrowed, 100).await;
        assert!(matches!(&r, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EBADF)), "{r:?}");
    })
    .unwrap();
}

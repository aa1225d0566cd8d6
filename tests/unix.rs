//! Unix stream servers and connections: round trip, addresses, stale
//! socket files, removal on close, half-close; and the read path on
//! socketpairs (what is queued is exactly what the peer wrote): EOF behind
//! data, pausing inside a read, one connection not starving the others.

mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::rc::Rc;

use evloop::EventLoop;
use evloop::net::{Buffered, BufferedProtocol, ServerOptions, SockAddr, Transport};
use util::{
    NetTempDir, RecProto, fail_on_callback_errors, net_connect, net_passes, net_read_exact, pattern, within,
};

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

#[test]
fn unix_server_and_connection_round_trip() {
    let dir = NetTempDir::new("unix-rt");
    let path = dir.join("echo.sock");
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let conns = util::ConnQueue::unbounded();
        let q = conns.clone();
        let server = l
            .create_unix_server(
                move || {
                    let (p, s) = RecProto::echo();
                    q.put_nowait(s).ok().unwrap();
                    p
                },
                &path,
                Default::default(),
            )
            .await
            .unwrap();
        assert!(is_socket(&path));
        assert!(server.is_serving());
        assert_eq!(server.sockets()[0].as_pathname(), Some(path.as_path()));
        assert_eq!(server.local_addr(), None, "not an IP server");

        let (t, client) =
            l.create_unix_connection(|| RecProto::new().0, &path, Default::default()).await.unwrap();
        let cs = client.borrow().state.clone();
        assert_eq!(cs.names(), ["made"]);
        let ss = within("accept", conns.get()).await;
        assert!(!t.is_tcp());
        assert_eq!(t.peer_addr(), None);
        assert_eq!(t.peer_sockaddr().unwrap().as_pathname(), Some(path.as_path()));
        ss.until("made", |s| !s.names().is_empty()).await;
        assert_eq!(ss.transport().local_sockaddr().unwrap().as_pathname(), Some(path.as_path()));

        let data = util::pattern(1024 * 1024);
        t.write(&data).unwrap();
        cs.until_data(data.len()).await;
        assert!(cs.data() == data);

        // Half-close works on Unix sockets too.
        assert!(t.can_write_eof());
        t.write_eof();
        ss.until_lost().await;
        cs.until_lost().await;
        // (Both ends may pause and resume writing on the way.)
        for s in [&ss, &cs] {
            let mut names = s.names();
            names.retain(|n| !matches!(*n, "pause" | "resume"));
            names.dedup();
            assert_eq!(names, ["made", "data", "eof", "lost"]);
            assert!(matches!(s.lost()[..], [None]));
        }
        server.close();
        within("wait_closed", server.wait_closed()).await.unwrap();
    })
    .unwrap();
}

#[test]
fn binding_to_an_existing_path_fails_unless_remove_stale_socket() {
    let dir = NetTempDir::new("unix-stale");
    let path = dir.join("stale.sock");
    // A socket file left behind by a listener that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(is_socket(&path));
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    lp.run_until_complete(async move {
        let e = l.create_unix_server(|| RecProto::echo().0, &path, Default::default()).await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::AddrInUse), "{e}");
        assert!(is_socket(&path));

        let opts = ServerOptions { remove_stale_socket: true, ..Default::default() };
        let server = l.create_unix_server(|| RecProto::echo().0, &path, opts.clone()).await.unwrap();
        let c = net_connect(&l, &SockAddr::unix(&path).unwrap()).await;
        l.sock_sendall(&c, b"fresh").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 5).await, b"fresh");
        server.close();

        // Only a socket is removed: a regular file is an error, and kept.
        let e = l.create_unix_server(|| RecProto::echo().0, &file, opts).await.unwrap_err();
        assert_eq!(e.io_kind(), Some(io::ErrorKind::AlreadyExists), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    })
    .unwrap();
}

#[test]
fn closing_a_unix_server_removes_its_socket_file() {
    let dir = NetTempDir::new("unix-close");
    let path = dir.join("server.sock");
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let server = l.create_unix_server(|| RecProto::echo().0, &path, Default::default()).await.unwrap();
        let c = net_connect(&l, &SockAddr::unix(&path).unwrap()).await;
        l.sock_sendall(&c, b"x").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 1).await, b"x");
        assert!(is_socket(&path));
        server.close();
        assert!(!path.exists(), "the socket file outlived the server");
        let e = l
            .create_unix_connection(|| RecProto::new().0, &path, Default::default())
            .await
            .err()
            .expect("connected");
        assert_eq!(e.io_kind(), Some(io::ErrorKind::NotFound), "{e}");
        // The accepted connection is still served until it closes.
        l.sock_sendall(&c, b"y").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 1).await, b"y");
        drop(c);
        within("wait_closed", server.wait_closed()).await.unwrap();
        // And a new server may bind the path again.
        let again = l.create_unix_server(|| RecProto::echo().0, &path, Default::default()).await.unwrap();
        again.close();
        assert!(!path.exists());
    })
    .unwrap();
}

#[test]
fn closing_a_unix_server_leaves_a_socket_file_someone_else_bound_since() {
    let dir = NetTempDir::new("unix-rebound");
    let path = dir.join("server.sock");
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let server = l.create_unix_server(|| RecProto::echo().0, &path, Default::default()).await.unwrap();
        // Another process replaces the path with its own socket.
        std::fs::remove_file(&path).unwrap();
        let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        server.close();
        assert!(is_socket(&path), "close() removed a socket file that was not the server's");
        drop(other);
    })
    .unwrap();
}

// ------------------------------------------------------------ the read path

/// Bytes and the peer's FIN both queued before the transport starts: the
/// bytes, then `eof_received`. (A reader that takes a short read to mean
/// "drained", as an edge-triggered one may, loses the EOF: no new
/// readiness event comes for it.)
#[test]
fn bytes_and_eof_queued_before_the_transport_starts_both_arrive() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let data = pattern(1000);
        (&b).write_all(&data).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let (proto, state) = RecProto::new();
        let (_t, _) = l.connect_accepted_socket(move || proto, a).await.unwrap();
        state.until_lost().await;
        assert_eq!(state.names(), ["made", "data", "eof", "lost"]);
        assert!(state.data() == data);
        drop(b);
    })
    .unwrap();
    lp.close().unwrap();
}

/// Reads `chunk` bytes at a time into its own buffer and records them;
/// optionally pauses reading after the first read.
struct Chunked {
    buf: Vec<u8>,
    got: Rc<RefCell<Vec<u8>>>,
    calls: Rc<Cell<usize>>,
    pause_after_first: bool,
    transport: Option<Transport>,
    /// Called at the first `buffer_updated` (with no borrow of `got`).
    on_first: Option<Box<dyn FnOnce()>>,
}

impl Chunked {
    fn new(chunk: usize, got: &Rc<RefCell<Vec<u8>>>, calls: &Rc<Cell<usize>>) -> Chunked {
        Chunked {
            buf: vec![0; chunk],
            got: got.clone(),
            calls: calls.clone(),
            pause_after_first: false,
            transport: None,
            on_first: None,
        }
    }
}

impl BufferedProtocol for Chunked {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn get_buffer(&mut self, _: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, n: usize) {
        self.got.borrow_mut().extend_from_slice(&self.buf[..n]);
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() == 1 {
            if self.pause_after_first {
                self.transport.as_ref().unwrap().pause_reading();
            }
            if let Some(f) = self.on_first.take() {
                f();
            }
        }
    }
}

/// `pause_reading` inside the protocol takes effect before the next read,
/// and `resume_reading` delivers what was left although the peer writes
/// nothing more.
#[test]
fn pause_reading_inside_a_read_holds_the_rest_until_resume() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let data = pattern(1000);
        (&b).write_all(&data).unwrap();
        let (got, calls) = (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(0)));
        let mut proto = Chunked::new(100, &got, &calls);
        proto.pause_after_first = true;
        let (t, _) = l.connect_accepted_socket(move || Buffered(proto), a).await.unwrap();
        net_passes(10).await;
        assert_eq!(calls.get(), 1, "no read after pause_reading");
        assert!(!t.is_reading());
        t.resume_reading();
        for _ in 0..100 {
            if got.borrow().len() == data.len() {
                break;
            }
            net_passes(1).await;
        }
        assert!(*got.borrow() == data, "the rest arrived with no new write from the peer");
        t.close();
        drop(b);
    })
    .unwrap();
    lp.close().unwrap();
}

/// One connection with more queued than one read takes yields the pass:
/// a callback scheduled during its first read runs before the connection
/// has read everything, and the rest still arrives with no new write from
/// the peer.
#[test]
fn a_busy_connection_does_not_starve_other_callbacks() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let data = pattern(200);
        (&b).write_all(&data).unwrap();
        let (got, calls) = (Rc::new(RefCell::new(Vec::new())), Rc::new(Cell::new(0)));
        let seen_by_other = Rc::new(Cell::new(usize::MAX));
        let mut proto = Chunked::new(1, &got, &calls);
        let (lp2, c, seen) = (l.clone(), calls.clone(), seen_by_other.clone());
        proto.on_first = Some(Box::new(move || {
            lp2.call_soon(move || seen.set(c.get()));
        }));
        let (t, _) = l.connect_accepted_socket(move || Buffered(proto), a).await.unwrap();
        for _ in 0..1000 {
            if got.borrow().len() == data.len() {
                break;
            }
            net_passes(1).await;
        }
        assert!(*got.borrow() == data);
        let seen = seen_by_other.get();
        assert!(
            seen >= 1 && seen < data.len(),
            "the other callback ran after {seen} of {} reads",
            data.len()
        );
        t.close();
        drop(b);
    })
    .unwrap();
    lp.close().unwrap();
}

/// A protocol that keeps nothing, so the transport's last handle can go.
struct Quiet;

impl evloop::net::Protocol for Quiet {
    fn data_received(&mut self, _: &[u8]) {}
}

/// Regression: a transport freed before `connection_lost` (paused, every
/// handle dropped) left its claim on the fd number behind, so the user's
/// `add_reader` on that number was refused as "used by a transport".
#[test]
fn a_transport_freed_without_connection_lost_gives_its_fd_number_back() {
    let lp = new_loop();
    let l = lp.clone();
    let fd = lp
        .run_until_complete(async move {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let (t, proto) = l.connect_accepted_socket(|| Quiet, a).await.unwrap();
            let fd = t.fd();
            t.pause_reading();
            drop((t, proto));
            // The reader, still registered (pausing is lazy), sees the
            // pause at the next readiness and lets go of the transport.
            (&b).write_all(b"x").unwrap();
            net_passes(5).await;
            drop(b);
            fd
        })
        .unwrap();
    // The socket is closed; whatever now has the number, it is not a
    // transport of this loop.
    let added = lp.add_reader(fd, || {});
    assert!(!matches!(added, Err(evloop::Error::InvalidState(_))), "{added:?}");
    lp.remove_reader(fd);
    lp.close().unwrap();
}

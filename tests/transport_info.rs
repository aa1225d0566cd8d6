//! What a transport tells and lets change mid-connection: `set_protocol`
//! / `get_protocol` (asyncio's protocol switch, e.g. for upgrades) and
//! `get_extra_info` / `with_socket` (asyncio's `socket`, `sockname`,
//! `peername`), on stream and datagram transports.

mod util;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use evloop::net::{Buffered, BufferedProtocol, DatagramOptions, ExtraInfo, Protocol, Transport};
use evloop::{Error, EventLoop};
use util::{DropCounter, RecProto, fail_on_callback_errors, net_connect, net_passes, net_read_exact, within};

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

/// What `Before` does on "switch".
type Switch = Box<dyn FnOnce(&Transport)>;

/// The first protocol of a connection: on "switch" it hands the
/// connection to the one `next` makes, then acks (so the client knows
/// the next bytes go to the new protocol).
struct Before {
    transport: Option<Transport>,
    next: Option<Switch>,
    seen: Rc<RefCell<Vec<u8>>>,
    _drops: DropCounter,
}

impl Protocol for Before {
    fn connection_made(&mut self, t: &Transport) {
        self.transport = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.seen.borrow_mut().extend_from_slice(data);
        if data == b"switch" {
            let t = self.transport.take().unwrap();
            (self.next.take().unwrap())(&t);
            t.write(b"ack").unwrap();
        }
    }
    fn connection_lost(&mut self, _: Option<Error>) {
        panic!("the old protocol must not get connection_lost");
    }
}

/// A server whose connections start with `Before`; returns it, its
/// address, the bytes `Before` saw and its drop count.
async fn switching_server(
    lp: &EventLoop,
    next: impl Fn(&Transport) + Clone + 'static,
) -> (evloop::net::Server, SocketAddr, Rc<RefCell<Vec<u8>>>, Rc<Cell<usize>>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let drops = DropCounter::new();
    let (s, d) = (seen.clone(), drops.clone());
    let factory = move || {
        let next = next.clone();
        Before {
            transport: None,
            next: Some(Box::new(move |t: &Transport| next(t))),
            seen: s.clone(),
            _drops: DropCounter::token(&d),
        }
    };
    let server = lp.create_server(factory, "127.0.0.1", 0, Default::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    (server, addr, seen, drops)
}

/// The test: `set_protocol` from inside `data_received` sends the
/// next bytes to the new protocol, which gets `connection_lost` too; the
/// old one is dropped and gets nothing more.
#[test]
fn set_protocol_inside_data_received_switches_the_next_bytes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let states = Rc::new(RefCell::new(Vec::new()));
        let st = states.clone();
        let (server, addr, seen, drops) = switching_server(&l, move |t| {
            let (p, state) = RecProto::echo();
            let p = t.set_protocol(p).expect("switch");
            // Typed lookups: the new protocol is there, the old one not.
            assert!(Rc::ptr_eq(&t.get_protocol::<RecProto>().expect("the new protocol"), &p));
            assert!(t.get_protocol::<Before>().is_none());
            // As asyncio's upgrades do: the new protocol is told itself.
            Protocol::connection_made(&mut *p.borrow_mut(), t);
            st.borrow_mut().push(state);
        })
        .await;
        let c = net_connect(&l, &addr.into()).await;
        l.sock_sendall(&c, b"switch").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 3).await, b"ack");
        net_passes(2).await;
        assert_eq!(drops.get(), 1, "the old protocol is dropped once its method returned");
        l.sock_sendall(&c, b"after").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 5).await, b"after", "the new protocol echoes");
        assert_eq!(*seen.borrow(), b"switch", "the old protocol saw none of the later bytes");
        let state = states.borrow()[0].clone();
        assert_eq!(state.data(), b"after");
        drop(c);
        within("connection_lost", state.until_lost()).await;
        assert_eq!(
            state.names(),
            ["made", "data", "eof", "lost"],
            "only the connection_made the switch made itself"
        );
        server.close();
    })
    .unwrap();
}

/// A buffered protocol that collects what it is given.
struct Collect {
    buf: Vec<u8>,
    got: Rc<RefCell<Vec<u8>>>,
}

impl BufferedProtocol for Collect {
    fn get_buffer(&mut self, _: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, n: usize) {
        self.got.borrow_mut().extend_from_slice(&self.buf[..n]);
    }
}

/// Switching to a buffered protocol switches the read path: the bytes go
/// through its `get_buffer`/`buffer_updated`.
#[test]
fn set_protocol_to_a_buffered_protocol_reads_into_its_buffer() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let (server, addr, _, _) = switching_server(&l, move |t| {
            t.set_protocol(Buffered(Collect { buf: vec![0; 3], got: g.clone() })).unwrap();
        })
        .await;
        let c = net_connect(&l, &addr.into()).await;
        l.sock_sendall(&c, b"switch").await.unwrap();
        assert_eq!(net_read_exact(&l, &c, 3).await, b"ack");
        l.sock_sendall(&c, b"buffered").await.unwrap();
        while got.borrow().len() < 8 {
            evloop::yield_now().await;
        }
        assert_eq!(*got.borrow(), b"buffered");
        server.close();
    })
    .unwrap();
}

/// From outside any protocol method the old protocol is dropped at once;
/// `get_protocol` finds the one `create_connection` returned; after
/// `connection_lost` the switch is refused and the protocol dropped.
#[test]
fn set_protocol_outside_a_callback_and_after_the_connection_is_gone() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let drops = DropCounter::new();
        let d = drops.clone();
        struct Tagged(#[allow(dead_code)] DropCounter);
        impl Protocol for Tagged {
            fn data_received(&mut self, _: &[u8]) {}
        }
        let (t, first) = l
            .create_connection(move || Tagged(DropCounter::token(&d)), "127.0.0.1", port, Default::default())
            .await
            .unwrap();
        assert!(Rc::ptr_eq(&t.get_protocol::<Tagged>().unwrap(), &first));
        // Borrowed by the caller: the type cannot be asked.
        {
            let _held = first.borrow_mut();
            assert!(t.get_protocol::<Tagged>().is_none());
        }
        drop(first);
        let (p, state) = RecProto::new();
        let p = t.set_protocol(p).unwrap();
        assert_eq!(drops.get(), 1, "dropped at once: nothing else held it");
        Protocol::connection_made(&mut *p.borrow_mut(), &t);
        drop(p);
        t.abort();
        let (_peer, _) = listener.accept().unwrap();
        within("connection_lost", state.until_lost()).await;
        assert!(
            t.get_protocol::<RecProto>().is_none(),
            "the transport keeps no protocol after connection_lost"
        );
        let late = DropCounter::new();
        let err = t.set_protocol(Tagged(DropCounter::token(&late))).map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::InvalidState(_)), "{err:?}");
        assert_eq!(late.get(), 1, "the refused protocol is dropped");
    })
    .unwrap();
}

/// asyncio's `sockname`, `peername` and `socket`, and the typed
/// `with_socket`: the socket view sets options on the transport's own
/// socket, may call transport methods, and nothing is left after close.
#[test]
fn extra_info_gives_the_socket_and_both_addresses() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (t, _) = l
            .create_connection(|| RecProto::new().0, "127.0.0.1", addr.port(), Default::default())
            .await
            .unwrap();
        let Some(ExtraInfo::Peername(peer)) = t.get_extra_info("peername") else { panic!("peername") };
        assert_eq!(peer.as_socket(), Some(addr));
        let Some(ExtraInfo::Sockname(me)) = t.get_extra_info("sockname") else { panic!("sockname") };
        assert_eq!(me.as_socket(), t.local_addr());
        assert!(t.get_extra_info("sslcontext").is_none(), "unknown keys give None, as asyncio's default");

        let Some(ExtraInfo::Socket(view)) = t.get_extra_info("socket") else { panic!("socket") };
        assert_eq!(view.fd(), t.fd());
        assert!(t.with_socket(|s| s.tcp_nodelay()).unwrap().unwrap(), "asyncio's TCP_NODELAY is on");
        view.with(|s| s.set_tcp_nodelay(false)).unwrap().unwrap();
        // The option was set on the transport's own socket.
        let fd = t.fd();
        let nodelay = t.with_socket(|s| {
            // A transport method from inside the closure: nothing is borrowed.
            assert!(!t.is_closing());
            s.tcp_nodelay()
        });
        assert!(!nodelay.unwrap().unwrap());
        assert_eq!(fd, t.fd());

        t.close();
        let state_lost = t.clone();
        while state_lost.get_extra_info("socket").is_some() {
            evloop::yield_now().await;
        }
        assert!(t.get_extra_info("peername").is_none());
        assert!(t.get_extra_info("sockname").is_none());
        assert!(matches!(view.with(|_| ()), Err(Error::InvalidState(_))));
        assert!(matches!(t.with_socket(|_| ()), Err(Error::InvalidState(_))));
    })
    .unwrap();
}

/// `abort()` from inside `with_socket` on a closed loop finishes the
/// transport inline (no pass to run it on): it must not trip over a borrow.
#[test]
fn aborting_inside_with_socket_after_the_loop_closed_is_safe() {
    let lp = new_loop();
    let l = lp.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (t, _) = lp
        .run_until_complete(async move {
            l.create_connection(|| RecProto::new().0, "127.0.0.1", port, Default::default()).await
        })
        .unwrap()
        .unwrap();
    let t2 = t.clone();
    let out = t.with_socket(move |s| {
        t2.abort();
        s.local_addr().is_ok()
    });
    assert!(out.unwrap(), "the lent socket stays usable for the closure");
    lp.close().unwrap();
    assert!(t.get_extra_info("socket").is_none());
}

/// The datagram transport answers the same keys; `peername` only when
/// connected.
#[test]
fn datagram_extra_info() {
    struct Quiet;
    impl evloop::net::DatagramProtocol for Quiet {
        fn datagram_received(&mut self, _: &[u8], _: evloop::net::SockAddr) {}
    }
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let local = Some("127.0.0.1:0".parse().unwrap());
        let (server, _) = l
            .create_datagram_endpoint(|| Quiet, DatagramOptions { local_addr: local, ..Default::default() })
            .await?;
        let Some(ExtraInfo::Sockname(addr)) = server.get_extra_info("sockname") else { panic!("sockname") };
        assert!(server.get_extra_info("peername").is_none(), "not connected");
        let remote = addr.as_socket();
        let (client, _) = l
            .create_datagram_endpoint(|| Quiet, DatagramOptions { remote_addr: remote, ..Default::default() })
            .await?;
        let Some(ExtraInfo::Peername(peer)) = client.get_extra_info("peername") else { panic!("peername") };
        assert_eq!(peer.as_socket(), remote);
        let Some(ExtraInfo::Socket(view)) = client.get_extra_info("socket") else { panic!("socket") };
        assert_eq!(view.with(|s| s.r#type().unwrap()).unwrap(), evloop::net::Type::DGRAM);
        client.close();
        server.close();
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
}

//! Datagram endpoints: UDP and Unix datagram round trips, error_received,
//! invalid sends, panics, and connection_lost exactly once.

mod util;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use evloop::net::{DatagramOptions, DatagramProtocol, DatagramTransport, SockAddr};
use evloop::{Error, EventLoop};
use util::{NET_TIMEOUT, NetTempDir, capture_exceptions, fail_on_callback_errors, net_passes, within};

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

#[derive(Debug, Clone)]
enum Dg {
    Made,
    Datagram(Vec<u8>, SockAddr),
    Error(Error),
    Lost(Option<Error>),
}

#[derive(Default)]
struct DgState {
    events: RefCell<Vec<Dg>>,
    transport: RefCell<Option<DatagramTransport>>,
    changed: evloop::sync::Event,
}

impl DgState {
    fn push(&self, e: Dg) {
        self.events.borrow_mut().push(e);
        self.changed.set();
    }

    fn events(&self) -> Vec<Dg> {
        self.events.borrow().clone()
    }

    fn datagrams(&self) -> Vec<(Vec<u8>, SockAddr)> {
        self.events()
            .into_iter()
            .filter_map(|e| if let Dg::Datagram(d, a) = e { Some((d, a)) } else { None })
            .collect()
    }

    fn errors(&self) -> Vec<Error> {
        self.events().into_iter().filter_map(|e| if let Dg::Error(e) = e { Some(e) } else { None }).collect()
    }

    fn lost(&self) -> Vec<Option<Error>> {
        self.events().into_iter().filter_map(|e| if let Dg::Lost(e) = e { Some(e) } else { None }).collect()
    }

    async fn until(&self, what: &str, cond: impl Fn(&DgState) -> bool) {
        let deadline = std::time::Instant::now() + NET_TIMEOUT;
        while !cond(self) {
            self.changed.clear();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if evloop::wait_for(self.changed.wait(), left).await.is_err() {
                panic!("timed out waiting for {what}: {:?}", self.events());
            }
        }
    }
}

/// Records everything; echoes datagrams back to their sender if `echo`.
struct DgRec {
    state: Rc<DgState>,
    echo: bool,
    panic_on_datagram: bool,
}

impl DgRec {
    fn new(echo: bool) -> (DgRec, Rc<DgState>) {
        let state = Rc::new(DgState::default());
        (DgRec { state: state.clone(), echo, panic_on_datagram: false }, state)
    }
}

impl DatagramProtocol for DgRec {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        *self.state.transport.borrow_mut() = Some(transport.clone());
        self.state.push(Dg::Made);
    }

    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        self.state.push(Dg::Datagram(data.to_vec(), addr.clone()));
        assert!(!self.panic_on_datagram, "boom in datagram_received");
        if self.echo {
            let t = self.state.transport.borrow().clone().unwrap();
            t.sendto(data, Some(&addr)).unwrap();
        }
    }

    fn error_received(&mut self, error: Error) {
        self.state.push(Dg::Error(error));
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        self.state.push(Dg::Lost(error));
    }
}

fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn closed_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind(loopback0()).unwrap();
    s.local_addr().unwrap()
}

#[test]
fn udp_round_trip_between_a_server_and_a_connected_client() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server_t, server_p) = l
            .create_datagram_endpoint(
                || DgRec::new(true).0,
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        let server = server_p.borrow().state.clone();
        let server_addr = server_t.local_addr().unwrap().as_socket().unwrap();
        assert!(server_t.peer_addr().is_err(), "not connected");
        let (client_t, client_p) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { remote_addr: Some(server_addr), ..Default::default() },
            )
            .await
            .unwrap();
        let client = client_p.borrow().state.clone();
        assert_eq!(client_t.peer_addr().unwrap().as_socket(), Some(server_addr));
        let client_addr = client_t.local_addr().unwrap();
        // connection_made has run when the call returns.
        assert!(matches!(client.events()[..], [Dg::Made]));

        for i in 0..10u8 {
            let msg = vec![i; 100 + i as usize];
            client_t.sendto(&msg, None).unwrap();
        }
        client.until("10 echoes", |s| s.datagrams().len() == 10).await;
        for (i, (d, from)) in client.datagrams().into_iter().enumerate() {
            assert_eq!(d, vec![i as u8; 100 + i]);
            assert_eq!(from.as_socket(), Some(server_addr));
        }
        assert!(server.datagrams().iter().all(|(_, from)| *from == client_addr));
        assert!(server.errors().is_empty() && client.errors().is_empty());

        client_t.close();
        server_t.close();
        assert!(client_t.is_closing());
        client.until("lost", |s| !s.lost().is_empty()).await;
        server.until("lost", |s| !s.lost().is_empty()).await;
        client_t.close();
        client_t.abort();
        net_passes(5).await;
        for s in [&client, &server] {
            assert!(matches!(s.lost()[..], [None]), "{:?}", s.events());
            assert!(matches!(s.events().last(), Some(Dg::Lost(None))));
            assert!(matches!(s.events().first(), Some(Dg::Made)));
        }
        assert!(matches!(client_t.sendto(b"x", None), Err(Error::InvalidState(_))));
        assert_eq!((l.stats().readers, l.stats().writers), (0, 0));
    })
    .unwrap();
}

#[test]
fn unix_datagram_round_trip_with_bound_paths() {
    let dir = NetTempDir::new("unix-dgram");
    let (srv_path, cli_path) = (dir.join("server.sock"), dir.join("client.sock"));
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server_t, server_p) =
            l.create_unix_datagram_endpoint(|| DgRec::new(true).0, Some(&srv_path), None).await.unwrap();
        let (client_t, client_p) = l
            .create_unix_datagram_endpoint(|| DgRec::new(false).0, Some(&cli_path), Some(&srv_path))
            .await
            .unwrap();
        let (server, client) = (server_p.borrow().state.clone(), client_p.borrow().state.clone());
        assert_eq!(client_t.peer_addr().unwrap().as_pathname(), Some(srv_path.as_path()));
        client_t.sendto(b"over a unix socket", None).unwrap();
        // Sending to the path explicitly works too.
        let srv_addr = SockAddr::unix(&srv_path).unwrap();
        client_t.sendto(b"second", Some(&srv_addr)).unwrap();
        client.until("echoes", |s| s.datagrams().len() == 2).await;
        let got = client.datagrams();
        assert_eq!(got[0].0, b"over a unix socket");
        assert_eq!(got[1].0, b"second");
        assert_eq!(got[0].1.as_pathname(), Some(srv_path.as_path()));
        let seen = server.datagrams();
        assert_eq!(seen[0].1.as_pathname(), Some(cli_path.as_path()));
        server_t.close();
        client_t.close();
        server.until("lost", |s| !s.lost().is_empty()).await;
        client.until("lost", |s| !s.lost().is_empty()).await;
    })
    .unwrap();
}

#[test]
fn udp_error_received_on_connection_refused() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (t, p) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { remote_addr: Some(closed_udp_port()), ..Default::default() },
            )
            .await
            .unwrap();
        let s = p.borrow().state.clone();
        // The first send draws an ICMP port unreachable; the error shows on
        // the next send or receive.
        t.sendto(b"anyone?", None).unwrap();
        net_passes(2).await;
        t.sendto(b"anyone?", None).unwrap();
        s.until("error_received", |s| !s.errors().is_empty()).await;
        let e = &s.errors()[0];
        assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionRefused), "{e}");
        // The endpoint stays open.
        net_passes(3).await;
        assert!(!t.is_closing());
        assert!(s.lost().is_empty());
        t.sendto(b"still usable", None).unwrap();
        t.close();
        s.until("lost", |s| !s.lost().is_empty()).await;
        assert!(matches!(s.lost()[..], [None]));
    })
    .unwrap();
}

#[test]
fn invalid_sends_and_endpoints_are_refused() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let none = l.create_datagram_endpoint(|| DgRec::new(false).0, DatagramOptions::default()).await;
        assert!(matches!(none, Err(Error::InvalidState(_))));

        let (unconnected, _) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        assert!(matches!(unconnected.sendto(b"x", None), Err(Error::InvalidState(_))));

        let (peer, peer_p) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        let peer_addr = peer.local_addr().unwrap().as_socket().unwrap();
        let (connected, _) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { remote_addr: Some(peer_addr), ..Default::default() },
            )
            .await
            .unwrap();
        // The connected peer's own address is fine; another is refused.
        connected.sendto(b"to the peer", Some(&peer_addr.into())).unwrap();
        let other = unconnected.local_addr().unwrap();
        assert!(matches!(connected.sendto(b"elsewhere", Some(&other)), Err(Error::InvalidState(_))));
        let ps = peer_p.borrow().state.clone();
        ps.until("datagram", |s| !s.datagrams().is_empty()).await;
        net_passes(3).await;
        assert_eq!(ps.datagrams().len(), 1);
        assert_eq!(ps.datagrams()[0].0, b"to the peer");
        for t in [unconnected, peer, connected] {
            t.close();
        }
    })
    .unwrap();
}

#[test]
fn panicking_datagram_received_closes_the_endpoint() {
    let lp = new_loop();
    let seen = capture_exceptions(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (t, p) = l
            .create_datagram_endpoint(
                || {
                    let (mut p, _) = DgRec::new(false);
                    p.panic_on_datagram = true;
                    p
                },
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        let s = p.borrow().state.clone();
        let to = t.local_addr().unwrap().as_socket().unwrap();
        let sender = std::net::UdpSocket::bind(loopback0()).unwrap();
        sender.send_to(b"boom", to).unwrap();
        s.until("lost", |s| !s.lost().is_empty()).await;
        assert!(
            matches!(&s.lost()[..], [Some(Error::Panicked(m))] if m.contains("boom")),
            "{:?}",
            s.events()
        );
        assert!(t.is_closing());
        assert_eq!(seen.borrow().len(), 1);
        assert!(matches!(&seen.borrow()[0].error, Some(Error::Panicked(_))));
        // The loop goes on.
        within("a pass", evloop::yield_now()).await;
    })
    .unwrap();
}

/// Calls transport methods from inside every datagram callback.
struct Busy {
    state: Rc<DgState>,
    t: Option<DatagramTransport>,
    received: usize,
    lost_send_refused: Rc<std::cell::Cell<bool>>,
}

impl DatagramProtocol for Busy {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        self.t = Some(transport.clone());
        let _ = (transport.get_write_buffer_size(), transport.is_closing(), transport.local_addr());
        transport.sendto(b"0", None).unwrap();
        self.state.push(Dg::Made);
    }

    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        self.state.push(Dg::Datagram(data.to_vec(), addr));
        self.received += 1;
        let t = self.t.clone().unwrap();
        if self.received < 3 {
            t.sendto(format!("{}", self.received).as_bytes(), None).unwrap();
        } else {
            t.sendto(b"last", None).unwrap();
            t.close();
            t.close();
            t.abort();
            assert!(t.sendto(b"x", None).is_err());
        }
    }

    fn error_received(&mut self, error: Error) {
        self.state.push(Dg::Error(error));
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        let t = self.t.clone().unwrap();
        self.lost_send_refused.set(t.sendto(b"x", None).is_err());
        t.close();
        t.abort();
        self.state.push(Dg::Lost(error));
    }
}

#[test]
fn datagram_transport_methods_from_inside_every_callback() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (echo_t, echo_p) = l
            .create_datagram_endpoint(
                || DgRec::new(true).0,
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        let echo_addr = echo_t.local_addr().unwrap().as_socket().unwrap();
        let state = Rc::new(DgState::default());
        let refused = Rc::new(std::cell::Cell::new(false));
        let (st, rf) = (state.clone(), refused.clone());
        let (t, _) = l
            .create_datagram_endpoint(
                move || Busy { state: st, t: None, received: 0, lost_send_refused: rf },
                DatagramOptions { remote_addr: Some(echo_addr), ..Default::default() },
            )
            .await
            .unwrap();
        state.until("lost", |s| !s.lost().is_empty()).await;
        net_passes(5).await;
        assert!(t.is_closing());
        assert!(matches!(state.lost()[..], [None]), "{:?}", state.events());
        let got: Vec<Vec<u8>> = state.datagrams().into_iter().map(|(d, _)| d).collect();
        assert_eq!(got, [b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
        assert!(refused.get());
        // The echo server got everything, "last" included (sent before close).
        let echo = echo_p.borrow().state.clone();
        echo.until("four datagrams", |s| s.datagrams().len() == 4).await;
        assert_eq!(echo.datagrams()[3].0, b"last");
        echo_t.close();
    })
    .unwrap();
}

#[test]
fn transport_registration_after_loop_close_fails_instead_of_refilling_the_selector() {
    // A datagram endpoint kept past close(): sending afterwards must not
    // register a writer on the closed loop.
    let lp = evloop::EventLoop::new().unwrap();
    let l = lp.clone();
    let (transport, _proto) = lp
        .run_until_complete(async move {
            struct Quiet;
            impl evloop::net::DatagramProtocol for Quiet {
                fn datagram_received(&mut self, _: &[u8], _: evloop::net::SockAddr) {}
            }
            let opts = evloop::net::DatagramOptions {
                local_addr: Some("127.0.0.1:0".parse().unwrap()),
                ..Default::default()
            };
            l.create_datagram_endpoint(|| Quiet, opts).await
        })
        .unwrap()
        .unwrap();
    lp.close().unwrap();
    assert_eq!(lp.stats().readers + lp.stats().writers, 0);
    transport.abort();
    assert_eq!(transport.get_write_buffer_size(), 0);
    assert_eq!(lp.stats().readers + lp.stats().writers, 0);
}

/// Hands the endpoint to `next` from inside its first `datagram_received`
/// (asyncio's `set_protocol` from a protocol method), counting its drop.
struct Handover {
    next: Option<DgRec>,
    dropped: Rc<std::cell::Cell<usize>>,
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for Handover {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }

    fn datagram_received(&mut self, _: &[u8], _: SockAddr) {
        let t = self.transport.clone().unwrap();
        let next = self.next.take().expect("one datagram reaches the old protocol");
        t.set_protocol(next).unwrap();
        // Still inside the old protocol: it is not dropped yet.
        assert_eq!(self.dropped.get(), 0);
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.dropped.set(self.dropped.get() + 1);
    }
}

#[test]
fn set_protocol_from_inside_datagram_received_routes_later_datagrams_and_drops_the_old_one() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let l = lp.clone();
    let dropped = Rc::new(std::cell::Cell::new(0));
    let d = dropped.clone();
    lp.run_until_complete(async move {
        let (next, next_state) = DgRec::new(false);
        let (server, _) = l
            .create_datagram_endpoint(
                move || Handover { next: Some(next), dropped: d, transport: None },
                DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
            )
            .await
            .unwrap();
        let to = server.local_addr().unwrap().as_socket();
        let (client, _) = l
            .create_datagram_endpoint(
                || DgRec::new(false).0,
                DatagramOptions { remote_addr: to, ..Default::default() },
            )
            .await
            .unwrap();
        client.sendto(b"first", None).unwrap();
        within("the handover", async {
            while server.get_protocol::<DgRec>().is_none() {
                evloop::yield_now().await;
            }
        })
        .await;
        assert!(server.get_protocol::<Handover>().is_none());
        client.sendto(b"second", None).unwrap();
        next_state.until("the second datagram", |s| !s.datagrams().is_empty()).await;
        assert_eq!(next_state.datagrams()[0].0, b"second");
        // connection_made is not called again on the new protocol.
        assert!(!next_state.events().iter().any(|e| matches!(e, Dg::Made)));
        server.close();
        next_state.until("connection_lost", |s| !s.lost().is_empty()).await;
        assert!(matches!(next_state.lost()[..], [None]));
        assert!(server.get_protocol::<DgRec>().is_none());
        client.close();
    })
    .unwrap();
    assert_eq!(dropped.get(), 1);
}

#[test]
fn set_protocol_after_close_is_refused_and_drops_the_protocol() {
    let lp = new_loop();
    let l = lp.clone();
    let dropped = Rc::new(std::cell::Cell::new(0));
    let d = dropped.clone();
    lp.run_until_complete(async move {
        let (t, state) = {
            let (rec, state) = DgRec::new(false);
            let (t, _) = l
                .create_datagram_endpoint(
                    move || rec,
                    DatagramOptions { local_addr: Some(loopback0()), ..Default::default() },
                )
                .await
                .unwrap();
            (t, state)
        };
        t.close();
        state.until("connection_lost", |s| !s.lost().is_empty()).await;
        let refused = t.set_protocol(Handover { next: None, dropped: d, transport: None });
        assert!(matches!(refused, Err(Error::InvalidState(_))), "{:?}", refused.err());
    })
    .unwrap();
    assert_eq!(dropped.get(), 1);
}

//! What transports, datagram endpoints and servers leave behind: nothing.
//! Protocols that keep their transport are dropped after
//! `connection_lost`; the loop's `close()` closes what is still open (and
//! `evloop::run` with it); a loop dropped without `close()` still closes
//! the sockets. Each test counts drops, and fds in a child process of its
//! own (other tests' sockets would blur the count).

mod util;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::rc::Rc;

use evloop::net::{DatagramOptions, DatagramProtocol, DatagramTransport, Protocol, SockAddr, Transport};
use evloop::{Error, EventLoop};
use util::{DropCounter, NetCounter, net_passes, open_fd_count, raise_fd_limit, run_test_in_child, within};

/// The echo pattern of the docs: keeps its transport, echoes, closes on EOF.
struct Keeper {
    transport: Option<Transport>,
    lost: Rc<RefCell<Vec<Option<Error>>>>,
    done: NetCounter,
    _drop: DropCounter,
}

impl Keeper {
    fn new(drops: &Rc<Cell<usize>>, lost: &Rc<RefCell<Vec<Option<Error>>>>, done: &NetCounter) -> Keeper {
        Keeper { transport: None, lost: lost.clone(), done: done.clone(), _drop: DropCounter::token(drops) }
    }
}

impl Protocol for Keeper {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.transport.as_ref().unwrap().write(data).unwrap();
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        self.lost.borrow_mut().push(error);
        self.done.add();
    }
}

/// A client that keeps its transport: sends a ping, closes on the echo.
struct Pinger {
    transport: Option<Transport>,
    done: NetCounter,
    _drop: DropCounter,
}

impl Protocol for Pinger {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(b"ping").unwrap();
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, _: &[u8]) {
        self.transport.as_ref().unwrap().close();
    }
    fn connection_lost(&mut self, _: Option<Error>) {
        self.done.add();
    }
}

fn lost_log() -> Rc<RefCell<Vec<Option<Error>>>> {
    Rc::new(RefCell::new(Vec::new()))
}

#[test]
fn protocols_of_10000_closed_connections_are_all_dropped_while_the_loop_runs() {
    const NAME: &str = "protocols_of_10000_closed_connections_are_all_dropped_while_the_loop_runs";
    const MARKER: &str = "TEN-THOUSAND-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_10K_CHILD", MARKER) {
        return;
    }
    const CONNECTIONS: usize = 10_000;
    const AT_ONCE: usize = 100;
    raise_fd_limit();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (server_drops, client_drops) = (DropCounter::new(), DropCounter::new());
        let (served, clients) = (NetCounter::new(), NetCounter::new());
        let lost = lost_log();
        let (d, s, lg) = (server_drops.clone(), served.clone(), lost.clone());
        let server = l
            .create_server(move || Keeper::new(&d, &lg, &s), "127.0.0.1", 0, Default::default())
            .await
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let fds = open_fd_count();
        for batch in 0..CONNECTIONS / AT_ONCE {
            for _ in 0..AT_ONCE {
                let (d, c) = (client_drops.clone(), clients.clone());
                let factory = move || Pinger { transport: None, done: c, _drop: DropCounter::token(&d) };
                l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            }
            within("a batch of connections", served.until((batch + 1) * AT_ONCE)).await;
            within("a batch of clients", clients.until((batch + 1) * AT_ONCE)).await;
        }
        net_passes(3).await;
        assert_eq!(server_drops.get(), CONNECTIONS, "server protocols dropped");
        assert_eq!(client_drops.get(), CONNECTIONS, "client protocols dropped");
        assert!(lost.borrow().iter().all(|e| e.is_none()), "orderly closes");
        assert_eq!(server.connections(), 0);
        assert_eq!(open_fd_count(), fds, "fds back to the count before the first connection");
        server.close();
    })
    .unwrap();
    lp.close().unwrap();
    println!("{MARKER}");
}

/// Keeps its datagram transport, as a request/response protocol does.
struct DatagramKeeper {
    transport: Option<DatagramTransport>,
    lost: Rc<Cell<usize>>,
    _drop: DropCounter,
}

impl DatagramProtocol for DatagramKeeper {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }
    fn datagram_received(&mut self, _: &[u8], _: SockAddr) {}
    fn connection_lost(&mut self, _: Option<Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn datagram_protocols_that_keep_their_transport_are_dropped_after_close() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (drops, lost) = (DropCounter::new(), Rc::new(Cell::new(0)));
    let (d, lo) = (drops.clone(), lost.clone());
    lp.run_until_complete(async move {
        let mut endpoints = Vec::new();
        for _ in 0..10 {
            let (d, lo) = (d.clone(), lo.clone());
            let options =
                DatagramOptions { local_addr: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
            let factory = move || DatagramKeeper { transport: None, lost: lo, _drop: DropCounter::token(&d) };
            let (t, _) = l.create_datagram_endpoint(factory, options).await.unwrap();
            endpoints.push(t);
        }
        for t in &endpoints {
            t.close();
        }
        net_passes(2).await;
        assert_eq!(lo.get(), 10);
        assert_eq!(d.get(), 10, "every datagram protocol dropped while the loop runs");
        // The handles outlive their protocols harmlessly.
        assert!(endpoints.iter().all(|t| t.is_closing() && t.local_addr().is_err()));
    })
    .unwrap();
    assert_eq!(drops.get(), 10);
}

#[test]
fn closed_servers_and_their_factories_are_dropped() {
    const NAME: &str = "closed_servers_and_their_factories_are_dropped";
    const MARKER: &str = "SERVERS-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_SERVERS_CHILD", MARKER) {
        return;
    }
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let fds = open_fd_count();
        let drops = DropCounter::new();
        for _ in 0..100 {
            let token = DropCounter::token(&drops);
            let (done, lost) = (NetCounter::new(), lost_log());
            let counts = DropCounter::new();
            let factory = move || {
                let _ = &token;
                Keeper::new(&counts, &lost, &done)
            };
            let server = l.create_server(factory, "127.0.0.1", 0, Default::default()).await.unwrap();
            let copy = server.clone();
            server.close();
            copy.wait_closed().await.unwrap();
        }
        net_passes(2).await;
        assert_eq!(drops.get(), 100, "every closed server freed its factory");
        assert_eq!(open_fd_count(), fds);
    })
    .unwrap();
    lp.close().unwrap();
    println!("{MARKER}");
}

#[test]
fn loop_close_closes_50_open_pairs_and_drops_their_100_protocols() {
    const NAME: &str = "loop_close_closes_50_open_pairs_and_drops_their_100_protocols";
    const MARKER: &str = "CLOSE-PAIRS-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_CLOSE_PAIRS_CHILD", MARKER) {
        return;
    }
    let fds = open_fd_count();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (drops, lost, accepted) = (DropCounter::new(), lost_log(), NetCounter::new());
    let (d, lg, acc) = (drops.clone(), lost.clone(), accepted.clone());
    let server = lp
        .run_until_complete(async move {
            let (d2, lg2, acc2) = (d.clone(), lg.clone(), acc.clone());
            let factory = move || {
                acc2.add();
                Keeper::new(&d2, &lg2, &NetCounter::new())
            };
            let server = l.create_server(factory, "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            for _ in 0..50 {
                let factory = || Keeper::new(&d, &lg, &NetCounter::new());
                l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            }
            within("accepts", acc.until(50)).await;
            net_passes(2).await;
            server
        })
        .unwrap();
    assert_eq!(drops.get(), 0, "all 100 open");
    lp.close().unwrap();
    assert_eq!(drops.get(), 100, "close() dropped every protocol");
    let lost = lost.borrow();
    assert_eq!(lost.len(), 100, "connection_lost exactly once each");
    assert!(lost.iter().all(|e| matches!(e, Some(Error::Closed))), "told the loop closed: {:?}", lost[0]);
    assert!(!server.is_serving());
    drop(server);
    drop(lp);
    assert_eq!(open_fd_count(), fds, "fds back to the count before the loop");
    println!("{MARKER}");
}

#[test]
fn evloop_run_returning_with_an_open_stream_closes_it() {
    const NAME: &str = "evloop_run_returning_with_an_open_stream_closes_it";
    const MARKER: &str = "RUN-STREAM-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_RUN_STREAM_CHILD", MARKER) {
        return;
    }
    let fds = open_fd_count();
    for _ in 0..3 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            // Returns only at EOF: the stream left open must be closed.
            s.read_to_end(&mut got).unwrap();
            got
        });
        evloop::run(async move {
            let (_reader, writer) =
                evloop::open_connection("127.0.0.1", port, Default::default()).await.unwrap();
            writer.write(b"left open").unwrap();
            writer.drain().await.unwrap();
        })
        .unwrap();
        assert_eq!(peer.join().unwrap(), b"left open", "the peer read everything, then EOF");
    }
    assert_eq!(open_fd_count(), fds, "no fd left per run");
    println!("{MARKER}");
}

#[test]
fn dropping_the_loop_without_close_closes_transports_and_servers() {
    const NAME: &str = "dropping_the_loop_without_close_closes_transports_and_servers";
    const MARKER: &str = "DROP-LOOP-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_DROP_LOOP_CHILD", MARKER) {
        return;
    }
    let fds = open_fd_count();
    let (drops, accepted) = (DropCounter::new(), NetCounter::new());
    {
        let lp = EventLoop::new().unwrap();
        let l = lp.clone();
        let (d, acc) = (drops.clone(), accepted.clone());
        lp.run_until_complete(async move {
            let (d2, acc2) = (d.clone(), acc.clone());
            let factory = move || {
                acc2.add();
                Keeper::new(&d2, &lost_log(), &NetCounter::new())
            };
            let server = l.create_server(factory, "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            for _ in 0..10 {
                let factory = || Keeper::new(&d, &lost_log(), &NetCounter::new());
                l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            }
            within("accepts", acc.until(10)).await;
            net_passes(2).await;
        })
        .unwrap();
        assert_eq!(drops.get(), 0);
    }
    assert_eq!(drops.get(), 20, "the loop's drop dropped every protocol");
    assert_eq!(open_fd_count(), fds, "and closed every socket");
    println!("{MARKER}");
}

#[test]
fn dropping_the_loop_without_close_closes_open_streams() {
    const NAME: &str = "dropping_the_loop_without_close_closes_open_streams";
    const MARKER: &str = "DROP-LOOP-STREAMS-CHILD-DONE";
    if !run_test_in_child(NAME, "EVLOOP_TEST_DROP_LOOP_STREAMS_CHILD", MARKER) {
        return;
    }
    let fds = open_fd_count();
    let kept: Rc<RefCell<Vec<(evloop::StreamReader, evloop::StreamWriter)>>> = Rc::default();
    {
        let lp = EventLoop::new().unwrap();
        let k = kept.clone();
        lp.run_until_complete(async move {
            let accepted = NetCounter::new();
            let (k2, acc) = (k.clone(), accepted.clone());
            // The handlers finish at once: no task is left pending.
            let handler = move |r, w| {
                k2.borrow_mut().push((r, w));
                acc.add();
                async {}
            };
            let server = evloop::start_server(handler, "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            for _ in 0..5 {
                let pair = evloop::open_connection("127.0.0.1", port, Default::default()).await.unwrap();
                k.borrow_mut().push(pair);
            }
            within("accepts", accepted.until(5)).await;
        })
        .unwrap();
    }
    assert_eq!(kept.borrow().len(), 10);
    assert!(kept.borrow().iter().all(|(_, w)| w.is_closing()), "the loop's drop closed every stream");
    kept.borrow_mut().clear();
    assert_eq!(open_fd_count(), fds, "and every socket");
    println!("{MARKER}");
}

#[test]
fn loop_close_closes_open_datagram_endpoints() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (drops, lost) = (DropCounter::new(), Rc::new(Cell::new(0)));
    let (d, lo) = (drops.clone(), lost.clone());
    let endpoints = lp
        .run_until_complete(async move {
            let mut endpoints = Vec::new();
            for _ in 0..3 {
                let (d, lo) = (d.clone(), lo.clone());
                let options = DatagramOptions {
                    local_addr: Some("127.0.0.1:0".parse().unwrap()),
                    ..Default::default()
                };
                let factory =
                    move || DatagramKeeper { transport: None, lost: lo, _drop: DropCounter::token(&d) };
                endpoints.push(l.create_datagram_endpoint(factory, options).await.unwrap().0);
            }
            endpoints
        })
        .unwrap();
    assert_eq!(drops.get(), 0);
    lp.close().unwrap();
    assert_eq!(lost.get(), 3, "connection_lost once each, inside close()");
    assert_eq!(drops.get(), 3);
    assert!(endpoints.iter().all(|t| t.is_closing()));
}

#[test]
fn a_connection_lost_still_due_at_loop_close_is_delivered_once_inside_close() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (drops, lost, accepted) = (DropCounter::new(), lost_log(), NetCounter::new());
    let (d, lg, acc) = (drops.clone(), lost.clone(), accepted.clone());
    let (server, client) = lp
        .run_until_complete(async move {
            let (d2, acc2) = (d.clone(), acc.clone());
            let factory = move || {
                acc2.add();
                Keeper::new(&d2, &lost_log(), &NetCounter::new())
            };
            let server = l.create_server(factory, "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let factory = || Keeper::new(&d, &lg, &NetCounter::new());
            let (client, _) =
                l.create_connection(factory, "127.0.0.1", port, Default::default()).await.unwrap();
            within("accept", acc.until(1)).await;
            (server, client)
        })
        .unwrap();
    // Scheduled for the next pass, which never comes.
    client.abort();
    assert!(lost.borrow().is_empty(), "not yet delivered");
    lp.close().unwrap();
    assert!(matches!(lost.borrow()[..], [None]), "the abort's connection_lost, once: {:?}", lost.borrow());
    assert_eq!(drops.get(), 2, "both ends' protocols dropped");
    assert!(client.is_closing() && !server.is_serving());
}

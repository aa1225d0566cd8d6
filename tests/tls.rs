//! TLS between evloop clients and servers: streams and protocols over TCP
//! and Unix sockets, ALPN and the connection's TLS details, certificate
//! and name failures, timeouts (manual clock), STARTTLS, flow control with
//! 10 MiB each way, panics, loop close, and fds freed after 1000
//! connections.

#![cfg(feature = "tls")]

mod tls_common;
mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use std::sync::Arc;

use evloop::net::ConnectOptions;
use evloop::net::stream::{StreamConnectOptions, StreamServerOptions};
use evloop::net::tls::{self, TlsOptions};
use evloop::net::{Protocol, ServerOptions, Transport};
use evloop::{Error, EventLoop};
use tls_common::TestPki;
use util::{DropCounter, NetTempDir, capture_exceptions, manual_loop};

fn tls_server_options(config: std::sync::Arc<tls::rustls::ServerConfig>) -> StreamServerOptions {
    StreamServerOptions {
        server: ServerOptions { ssl: Some(config), ..Default::default() },
        ..Default::default()
    }
}

fn client_options(pki: &TestPki) -> StreamConnectOptions {
    with_tls(pki.client_config(), None)
}

/// Stream options for a TLS client with `config`, checking `name`.
fn with_tls(config: Arc<tls::rustls::ClientConfig>, name: Option<&str>) -> StreamConnectOptions {
    let mut connect = ConnectOptions::new().ssl(config);
    if let Some(name) = name {
        connect = connect.server_hostname(name);
    }
    StreamConnectOptions::new().connect(connect)
}

/// An echo handler: writes back each line, closes at EOF.
async fn echo_lines(mut reader: evloop::StreamReader, writer: evloop::StreamWriter) {
    loop {
        let line = reader.readline().await.unwrap_or_default();
        if line.is_empty() {
            break;
        }
        writer.write(&line).unwrap();
    }
    writer.close();
}

#[test]
fn stream_client_and_server_over_tcp() {
    let pki = TestPki::localhost();
    let got = evloop::run(async move {
        let server =
            evloop::start_server(echo_lines, "127.0.0.1", 0, tls_server_options(pki.server_config())).await?;
        let port = server.local_addr().unwrap().port();
        let options = with_tls(pki.client_config(), Some("localhost"));
        let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
        assert!(writer.transport().is_tls());
        assert!(!writer.can_write_eof(), "asyncio's SSL transport cannot write EOF");
        writer.write(b"one\n")?;
        writer.writelines([&b"two\n"[..], b"three\n"])?;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(reader.readline().await?);
        }
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>(got)
    })
    .unwrap()
    .unwrap();
    assert_eq!(got, b"one\ntwo\nthree\n");
}

#[test]
fn server_hostname_defaults_to_the_host() {
    let pki = TestPki::localhost();
    let got = evloop::run(async move {
        let server =
            evloop::start_server(echo_lines, "127.0.0.1", 0, tls_server_options(pki.server_config())).await?;
        let port = server.local_addr().unwrap().port();
        // "localhost" is both the host connected to and the name checked.
        let (mut reader, writer) = evloop::open_connection("localhost", port, client_options(&pki)).await?;
        writer.write(b"hi\n")?;
        let line = reader.readline().await?;
        server.close();
        Ok::<_, Error>(line)
    })
    .unwrap()
    .unwrap();
    assert_eq!(got, b"hi\n");
}

#[test]
fn stream_client_and_server_over_unix_sockets() {
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-unix");
    let path = dir.join("tls.sock");
    let got = evloop::run(async move {
        let server =
            evloop::start_unix_server(echo_lines, &path, tls_server_options(pki.server_config())).await?;
        let options = with_tls(pki.client_config(), Some("localhost"));
        let (mut reader, writer) = evloop::open_unix_connection(&path, options).await?;
        writer.write(b"over a unix socket\n")?;
        let line = reader.readline().await?;
        writer.close();
        writer.wait_closed().await?;
        server.close();
        Ok::<_, Error>(line)
    })
    .unwrap()
    .unwrap();
    assert_eq!(got, b"over a unix socket\n");
}

#[test]
fn unix_client_without_a_server_hostname_is_refused_clearly() {
    let pki = TestPki::localhost();
    let dir = NetTempDir::new("tls-unix-noname");
    let path = dir.join("tls.sock");
    let err = evloop::run(async move {
        let server =
            evloop::start_unix_server(echo_lines, &path, tls_server_options(pki.server_config())).await?;
        let res = evloop::open_unix_connection(&path, client_options(&pki)).await.map(|_| ());
        server.close();
        Ok::<_, Error>(res)
    })
    .unwrap()
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("server_hostname"), "{err}");
}

/// Records what a protocol saw.
#[derive(Default)]
struct Seen {
    made: Cell<bool>,
    data: RefCell<Vec<u8>>,
    eof: Cell<bool>,
    lost: RefCell<Option<Option<String>>>,
    pauses: Cell<usize>,
    resumes: Cell<usize>,
    transport: RefCell<Option<Transport>>,
}

struct Recording(Rc<Seen>, #[allow(dead_code)] Option<DropCounter>);

impl Protocol for Recording {
    fn connection_made(&mut self, t: &Transport) {
        assert!(t.is_tls(), "the protocol sees the TLS side");
        self.0.made.set(true);
        *self.0.transport.borrow_mut() = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.0.data.borrow_mut().extend_from_slice(data);
    }
    fn eof_received(&mut self) -> bool {
        self.0.eof.set(true);
        false
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        *self.0.lost.borrow_mut() = Some(error.map(|e| e.to_string()));
        self.0.transport.borrow_mut().take();
    }
    fn pause_writing(&mut self) {
        self.0.pauses.set(self.0.pauses.get() + 1);
    }
    fn resume_writing(&mut self) {
        self.0.resumes.set(self.0.resumes.get() + 1);
    }
}

/// A protocol server that answers "ping" with "pong" and closes.
struct Pong(Option<Transport>);

impl Protocol for Pong {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        assert_eq!(data, b"ping");
        let t = self.0.as_ref().unwrap();
        t.write(b"pong").unwrap();
        t.close();
    }
}

#[test]
fn protocol_server_with_a_start_tls_client_and_clean_close() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(Seen::default());
    let drops = DropCounter::new();
    let (s, d) = (seen.clone(), drops.clone());
    let config = pki.server_config();
    let client = pki.client_config();
    lp.run_until_complete(async move {
        let options = ServerOptions { ssl: Some(config), ..Default::default() };
        let server = l.create_server(|| Pong(None), "127.0.0.1", 0, options).await?;
        let port = server.local_addr().unwrap().port();
        // A protocol client: plain connection, then start_tls.
        struct Plain(Rc<Seen>, #[allow(dead_code)] Option<DropCounter>);
        impl Protocol for Plain {
            fn data_received(&mut self, data: &[u8]) {
                self.0.data.borrow_mut().extend_from_slice(data);
            }
            fn eof_received(&mut self) -> bool {
                self.0.eof.set(true);
                false
            }
            fn connection_lost(&mut self, error: Option<Error>) {
                *self.0.lost.borrow_mut() = Some(error.map(|e| e.to_string()));
            }
        }
        let s2 = s.clone();
        let (plain, _proto) = l
            .create_connection(
                move || Plain(s2, Some(DropCounter::token(&d))),
                "127.0.0.1",
                port,
                Default::default(),
            )
            .await?;
        let options = TlsOptions { server_hostname: Some("localhost".into()), ..Default::default() };
        let t = l.start_tls(&plain, client, options).await?;
        assert!(t.is_tls() && !plain.is_tls());
        assert_eq!(t.tls_version(), Some(tls::rustls::ProtocolVersion::TLSv1_3));
        assert!(t.cipher_suite().is_some());
        let chain = t.peer_certificates().expect("the server's chain");
        assert_eq!(chain[0], pki.cert_der);
        assert_eq!(t.fd(), plain.fd());
        assert_eq!(t.peer_addr(), plain.peer_addr());
        t.write(b"ping")?;
        while s.lost.borrow().is_none() {
            evloop::sleep(Duration::from_millis(1)).await;
        }
        assert!(t.is_closing());
        assert!(t.write(b"late").is_err());
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(&*seen.data.borrow(), b"pong");
    assert!(seen.eof.get(), "close_notify reached the client as EOF");
    assert_eq!(*seen.lost.borrow(), Some(None), "an orderly close");
    assert_eq!(drops.get(), 1, "the protocol is freed after connection_lost");
}

#[test]
fn create_connection_ssl_makes_the_protocol_after_the_handshake() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(Seen::default());
    let s = seen.clone();
    let config = pki.server_config();
    let client = pki.client_config();
    lp.run_until_complete(async move {
        let options = ServerOptions { ssl: Some(config), ..Default::default() };
        let server = l.create_server(|| Pong(None), "127.0.0.1", 0, options).await?;
        let port = server.local_addr().unwrap().port();
        // server_hostname defaults to the host: "localhost" is in the cert.
        let options = ConnectOptions::new().ssl(client);
        let (t, protocol) =
            l.create_connection(move || Recording(s, None), "localhost", port, options).await?;
        assert!(t.is_tls());
        assert!(protocol.borrow().0.made.get(), "connection_made ran before the connect returned");
        t.write(b"ping")?;
        while protocol.borrow().0.lost.borrow().is_none() {
            evloop::sleep(Duration::from_millis(1)).await;
        }
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(&*seen.data.borrow(), b"pong");
    assert!(seen.eof.get());
    assert_eq!(*seen.lost.borrow(), Some(None));
}

#[test]
fn alpn_is_negotiated_and_visible_on_both_sides() {
    let pki = TestPki::localhost();
    let server_config = pki.server_config_alpn(&[b"h2", b"http/1.1"]);
    let client_config = pki.client_config_alpn(&[b"http/1.1", b"spdy"]);
    let server_saw = Rc::new(RefCell::new(None));
    let saw = server_saw.clone();
    let client_alpn = evloop::run(async move {
        let server = evloop::start_server(
            move |mut reader, writer| {
                let saw = saw.clone();
                async move {
                    let t = writer.transport();
                    *saw.borrow_mut() = Some((t.alpn_protocol(), t.tls_server_name(), t.peer_certificates()));
                    let _ = reader.readline().await;
                    writer.close();
                }
            },
            "127.0.0.1",
            0,
            tls_server_options(server_config),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let options = with_tls(client_config, Some("localhost"));
        let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
        let alpn = writer.transport().alpn_protocol();
        writer.write(b"bye\n")?;
        let _ = reader.read_to_end().await;
        server.close();
        Ok::<_, Error>(alpn)
    })
    .unwrap()
    .unwrap();
    assert_eq!(client_alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (alpn, name, certs) = server_saw.borrow_mut().take().expect("the server's handler ran");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(name.as_deref(), Some("localhost"), "SNI");
    assert!(certs.is_none(), "no client certificate was asked for");
}

/// Connects a TLS client to a TLS server made from `server_pki`,
/// checking `name` against roots from `client_pki`; the connect error.
fn connect_error(server_pki: &TestPki, client_pki: &TestPki, name: &str) -> (Error, bool) {
    let server_config = server_pki.server_config();
    let client_config = client_pki.client_config();
    let name = name.to_owned();
    let handler_ran = Rc::new(Cell::new(false));
    let ran = handler_ran.clone();
    let err = evloop::run(async move {
        let server = evloop::start_server(
            move |_r, w| {
                ran.set(true);
                async move { w.close() }
            },
            "127.0.0.1",
            0,
            tls_server_options(server_config),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let options = with_tls(client_config, Some(&name));
        let res = evloop::open_connection("127.0.0.1", port, options).await.map(|_| ());
        // Let the server see the alert and drop the connection.
        for _ in 0..10 {
            evloop::yield_now().await;
        }
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>(res)
    })
    .unwrap()
    .unwrap()
    .unwrap_err();
    (err, handler_ran.get())
}

#[test]
fn a_hostname_mismatch_is_rejected() {
    let pki = TestPki::localhost();
    let (err, handler_ran) = connect_error(&pki, &pki, "example.com");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    assert!(!handler_ran, "the server's protocol is never made");
}

#[test]
fn an_untrusted_root_is_rejected() {
    let server = TestPki::localhost();
    let other = TestPki::localhost();
    let (err, handler_ran) = connect_error(&server, &other, "localhost");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(!handler_ran);
}

#[test]
fn a_peer_that_does_not_speak_tls_is_an_error_not_a_hang() {
    let pki = TestPki::localhost();
    let err = evloop::run(async move {
        // A plain server answering like an HTTP server would.
        let server = evloop::start_server(
            |mut r, w| async move {
                let _ = r.read(100).await;
                w.write(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
                w.close();
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let res = evloop::open_connection("localhost", port, client_options(&pki)).await.map(|_| ());
        server.close();
        Ok::<_, Error>(res)
    })
    .unwrap()
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[test]
fn a_plain_client_of_a_tls_server_gets_closed() {
    let pki = TestPki::localhost();
    let (reply, made) = evloop::run(async move {
        let made = Rc::new(Cell::new(false));
        let m = made.clone();
        let server = evloop::start_server(
            move |_r, w| {
                m.set(true);
                async move { w.close() }
            },
            "127.0.0.1",
            0,
            tls_server_options(pki.server_config()),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
        writer.write(b"GET / HTTP/1.0\r\n\r\n")?;
        // The server answers with an alert (or nothing) and closes.
        let reply = reader.read_to_end().await.unwrap_or_default();
        server.close();
        Ok::<_, Error>((reply, made.get()))
    })
    .unwrap()
    .unwrap();
    assert!(!made, "the server's protocol is never made");
    assert!(reply.len() < 64, "at most an alert: {reply:?}");
}

/// Records only how the connection ended.
struct Lost(Rc<Seen>);

impl Protocol for Lost {
    fn data_received(&mut self, data: &[u8]) {
        self.0.data.borrow_mut().extend_from_slice(data);
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        *self.0.lost.borrow_mut() = Some(error.map(|e| e.to_string()));
    }
}

fn socket_of(s: std::os::unix::net::UnixStream) -> evloop::net::Socket {
    evloop::net::Socket::from(std::os::fd::OwnedFd::from(s))
}

/// A client on one end of a socketpair whose other end never answers.
fn silent_peer_client(
    lp: &EventLoop,
    timeout: Duration,
) -> (evloop::Task<evloop::Result<()>>, std::os::unix::net::UnixStream) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let pki = TestPki::localhost();
    let l = lp.clone();
    let task = lp.create_task(async move {
        let (plain, _) =
            l.connect_accepted_socket(|| Lost(Rc::new(Seen::default())), socket_of(ours)).await?;
        let options = TlsOptions {
            server_hostname: Some("localhost".into()),
            ssl_handshake_timeout: timeout,
            ..Default::default()
        };
        let res = l.start_tls(&plain, pki.client_config(), options).await;
        assert!(plain.is_closing());
        res.map(|_| ())
    });
    (task, theirs)
}

#[test]
fn the_handshake_times_out_against_a_silent_peer() {
    let lp = manual_loop();
    let (task, mut theirs) = silent_peer_client(&lp, Duration::from_secs(60));
    lp.run_until_idle().unwrap();
    // The ClientHello went out; nothing came back.
    theirs.set_nonblocking(true).unwrap();
    let mut hello = [0u8; 5];
    theirs.read_exact(&mut hello).unwrap();
    assert_eq!(hello[0], 22, "a TLS handshake record");
    lp.advance_time(Duration::from_secs(59));
    lp.run_until_idle().unwrap();
    assert!(!task.done(), "not before the timeout");
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    assert!(task.done());
    let err = lp.run_until_complete(task).unwrap().unwrap().unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::TimedOut), "{err}");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    // The socket was closed: the peer reads EOF after the ClientHello.
    theirs.set_nonblocking(false).unwrap();
    let mut rest = Vec::new();
    theirs.read_to_end(&mut rest).unwrap();
}

#[test]
fn a_protocol_client_gets_connection_lost_when_start_tls_fails() {
    let lp = manual_loop();
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let seen = Rc::new(Seen::default());
    let s = seen.clone();
    let l = lp.clone();
    let pki = TestPki::localhost();
    let task = lp.create_task(async move {
        let sock = evloop::net::Socket::from(std::os::fd::OwnedFd::from(ours));
        struct P(Rc<Seen>);
        impl Protocol for P {
            fn data_received(&mut self, _: &[u8]) {}
            fn connection_lost(&mut self, error: Option<Error>) {
                *self.0.lost.borrow_mut() = Some(error.map(|e| e.to_string()));
            }
        }
        let (t, _) = l.connect_accepted_socket(|| P(s), sock).await?;
        let options = TlsOptions { server_hostname: Some("localhost".into()), ..Default::default() };
        l.start_tls(&t, pki.client_config(), options).await.map(|_| ())
    });
    lp.run_until_idle().unwrap();
    // The peer answers the ClientHello with garbage.
    theirs.write_all(b"this is not TLS at all\r\n").unwrap();
    let err = lp.run_until_complete(task).unwrap().unwrap().unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    lp.run_until_idle().unwrap();
    let lost = seen.lost.borrow().clone().expect("connection_lost ran");
    assert!(lost.unwrap().contains("TLS"), "the protocol learns the error");
}

#[test]
fn start_tls_after_a_plaintext_exchange() {
    let pki = TestPki::localhost();
    let server_config = pki.server_config();
    let got = evloop::run(async move {
        let server = evloop::start_server(
            move |mut reader, mut writer| {
                let config = server_config.clone();
                async move {
                    let line = reader.readline().await.unwrap();
                    assert_eq!(line, b"STARTTLS\n");
                    writer.write(b"220 go ahead\n").unwrap();
                    writer.start_tls(config, Default::default()).await.unwrap();
                    let secret = reader.readline().await.unwrap();
                    writer.write(&[b"secret was: ", &secret[..]].concat()).unwrap();
                    writer.close();
                }
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (mut reader, mut writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
        writer.write(b"STARTTLS\n")?;
        assert_eq!(reader.readline().await?, b"220 go ahead\n");
        assert!(!writer.transport().is_tls());
        let options = TlsOptions { server_hostname: Some("localhost".into()), ..Default::default() };
        writer.start_tls(pki.client_config(), options).await?;
        assert!(writer.transport().is_tls());
        writer.write(b"swordfish\n")?;
        let reply = reader.read_to_end().await?;
        server.close();
        Ok::<_, Error>(reply)
    })
    .unwrap()
    .unwrap();
    assert_eq!(got, b"secret was: swordfish\n");
}

/// A deterministic byte stream and its checksum.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = util::Lcg::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn ten_mib_each_way_under_flow_control() {
    const SIZE: usize = 10 << 20;
    let pki = TestPki::localhost();
    let up = pattern(1, SIZE);
    let down = pattern(2, SIZE);
    let (up_sum, down_sum) = (checksum(&up), checksum(&down));
    let drained_paused = Rc::new(Cell::new(false));
    let dp = drained_paused.clone();
    let (server_got, client_got) = evloop::run(async move {
        let down = Rc::new(down);
        let server_got = Rc::new(Cell::new(0u64));
        let sg = server_got.clone();
        let server = evloop::start_server(
            move |mut reader, writer| {
                let down = down.clone();
                let sg = sg.clone();
                async move {
                    // Send while receiving: both directions at once.
                    let w = writer.clone();
                    let sender = evloop::spawn(async move {
                        for chunk in down.chunks(100_000) {
                            w.write(chunk).unwrap();
                            w.drain().await.unwrap();
                        }
                    });
                    let got = reader.readexactly(SIZE).await.unwrap();
                    sg.set(checksum(&got));
                    sender.await.unwrap();
                    writer.close();
                }
            },
            "127.0.0.1",
            0,
            tls_server_options(pki.server_config()),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let options = with_tls(pki.client_config(), Some("localhost"));
        let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
        let w = writer.clone();
        let sender = evloop::spawn(async move {
            for chunk in up.chunks(1 << 20) {
                w.write(chunk).unwrap();
                // A 1 MiB write is over the high-water mark: the buffer
                // counts the ciphertext not yet sent.
                if w.transport().get_write_buffer_size() > evloop::net::DEFAULT_HIGH_WATER {
                    dp.set(true);
                }
                w.drain().await.unwrap();
            }
        });
        let got = reader.read_to_end().await?;
        sender.await?;
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>((server_got.get(), checksum(&got)))
    })
    .unwrap()
    .unwrap();
    assert_eq!(server_got, up_sum, "client → server");
    assert_eq!(client_got, down_sum, "server → client");
    assert!(drained_paused.get(), "flow control was exercised");
}

/// A TLS server protocol that writes `size` bytes at once and closes
/// once its buffer has drained.
struct Flood(Rc<Seen>, usize);

impl Protocol for Flood {
    fn connection_made(&mut self, t: &Transport) {
        *self.0.transport.borrow_mut() = Some(t.clone());
        t.write(&vec![7u8; self.1]).unwrap();
        assert!(t.get_write_buffer_size() > evloop::net::DEFAULT_HIGH_WATER, "the ciphertext waits");
    }
    fn data_received(&mut self, _: &[u8]) {}
    fn pause_writing(&mut self) {
        self.0.pauses.set(self.0.pauses.get() + 1);
    }
    fn resume_writing(&mut self) {
        self.0.resumes.set(self.0.resumes.get() + 1);
        let t = self.0.transport.borrow_mut().take().unwrap();
        assert!(t.get_write_buffer_size() <= evloop::net::DEFAULT_LOW_WATER);
        t.close();
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        *self.0.lost.borrow_mut() = Some(error.map(|e| e.to_string()));
    }
}

#[test]
fn pause_and_resume_writing_reach_a_tls_protocol() {
    const SIZE: usize = 4 << 20;
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(Seen::default());
    let s = seen.clone();
    let config = pki.server_config();
    let got = lp
        .run_until_complete(async move {
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let server = l.create_server(move || Flood(s.clone(), SIZE), "127.0.0.1", 0, options).await?;
            let port = server.local_addr().unwrap().port();
            let options = with_tls(pki.client_config(), Some("localhost"));
            let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
            let t = writer.transport().clone();
            t.set_write_buffer_limits(Some(1000), None)?;
            assert_eq!(t.get_write_buffer_limits(), (250, 1000));
            let got = reader.read_to_end().await?;
            server.close();
            Ok::<_, Error>(got.len())
        })
        .unwrap()
        .unwrap();
    lp.run_until_idle().unwrap();
    assert_eq!(got, SIZE);
    assert_eq!((seen.pauses.get(), seen.resumes.get()), (1, 1));
    assert_eq!(*seen.lost.borrow(), Some(None));
}

#[test]
fn a_panicking_tls_protocol_is_reported_and_its_connection_closed() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let errors = capture_exceptions(&lp);
    let l = lp.clone();
    let client = pki.client_config();
    let config = pki.server_config();
    let closed = lp
        .run_until_complete(async move {
            struct Boom;
            impl Protocol for Boom {
                fn data_received(&mut self, _: &[u8]) {
                    panic!("boom in data_received");
                }
            }
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let server = l.create_server(|| Boom, "127.0.0.1", 0, options).await?;
            let port = server.local_addr().unwrap().port();
            let options = with_tls(client, Some("localhost"));
            let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
            writer.write(b"trigger")?;
            let rest = reader.read_to_end().await;
            server.close();
            Ok::<_, Error>(rest.map(|r| r.is_empty()).unwrap_or(true))
        })
        .unwrap()
        .unwrap();
    assert!(closed);
    let errors = errors.borrow();
    assert!(errors.iter().any(|c| format!("{c:?}").contains("boom in data_received")), "{errors:?}");
}

#[test]
fn closing_the_loop_closes_tls_connections_and_frees_their_protocols() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(Seen::default());
    let drops = DropCounter::new();
    let (s, d) = (seen.clone(), drops.clone());
    let config = pki.server_config();
    let client = pki.client_config();
    let s2 = seen.clone();
    let client_kept = lp
        .run_until_complete(async move {
            let seen = s2;
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let server = l
                .create_server(
                    move || Recording(s.clone(), Some(DropCounter::token(&d))),
                    "127.0.0.1",
                    0,
                    options,
                )
                .await?;
            let port = server.local_addr().unwrap().port();
            let options = with_tls(client, Some("localhost"));
            let (reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
            writer.write(b"hello")?;
            while seen.data.borrow().is_empty() {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            // Kept open past the loop's close: dropping the writer would close
            // the connection itself.
            Ok::<_, Error>((reader, writer))
        })
        .unwrap()
        .unwrap();
    assert!(seen_made(&seen));
    let _client = client_kept;
    lp.close().unwrap();
    assert_eq!(seen.lost.borrow().clone(), Some(Some(Error::Closed.to_string())));
    assert_eq!(drops.get(), 1, "the app protocol is freed by the loop's close");
}

fn seen_made(seen: &Seen) -> bool {
    seen.made.get()
}

#[test]
fn dropping_an_unclosed_loop_frees_tls_protocols() {
    let pki = TestPki::localhost();
    let drops = DropCounter::new();
    {
        let lp = EventLoop::new().unwrap();
        let l = lp.clone();
        let d = drops.clone();
        let seen = Rc::new(Seen::default());
        let config = pki.server_config();
        let client = pki.client_config();
        lp.run_until_complete(async move {
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let s = seen.clone();
            let server = l
                .create_server(
                    move || Recording(s.clone(), Some(DropCounter::token(&d))),
                    "127.0.0.1",
                    0,
                    options,
                )
                .await?;
            let port = server.local_addr().unwrap().port();
            let options = with_tls(client, Some("localhost"));
            let (_r, _w) = evloop::open_connection("127.0.0.1", port, options).await?;
            while !seen.made.get() {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
    }
    assert_eq!(drops.get(), 1, "the server-side protocol (it holds its transport) is freed");
}

#[test]
fn abort_sends_no_close_notify_and_close_does() {
    let pki = TestPki::localhost();
    let results = evloop::run(async move {
        let mut results = Vec::new();
        for abort in [false, true] {
            let server = evloop::start_server(
                move |_reader, writer| async move {
                    writer.write(b"bye").unwrap();
                    if abort {
                        // Let "bye" go out first, then cut.
                        evloop::sleep(Duration::from_millis(10)).await;
                        writer.transport().abort();
                    } else {
                        writer.close();
                    }
                },
                "127.0.0.1",
                0,
                tls_server_options(pki.server_config()),
            )
            .await?;
            let port = server.local_addr().unwrap().port();
            let options = with_tls(pki.client_config(), Some("localhost"));
            let (mut reader, _writer) = evloop::open_connection("127.0.0.1", port, options).await?;
            let got = reader.read_to_end().await;
            results.push(got.map(|d| d == b"bye").unwrap_or(false));
            server.close();
        }
        Ok::<_, Error>(results)
    })
    .unwrap()
    .unwrap();
    // Both deliver the data; the streams take an EOF without close_notify
    // as EOF too (as asyncio does).
    assert_eq!(results, vec![true, true]);
}

#[test]
fn the_shutdown_timeout_cuts_a_peer_that_does_not_read() {
    let lp = manual_loop();
    let pki = TestPki::localhost();
    let (server_end, client_end) = std::os::unix::net::UnixStream::pair().unwrap();
    let seen = Rc::new(Seen::default());
    let s = seen.clone();
    let l = lp.clone();
    let server_config = pki.server_config();
    let client_config = pki.client_config();
    let server_task = lp.create_task({
        let l = l.clone();
        async move {
            let (plain, _) = l.connect_accepted_socket(|| Lost(s), socket_of(server_end)).await?;
            l.start_tls(&plain, server_config, TlsOptions::default()).await
        }
    });
    let client_task = lp.create_task(async move {
        let (plain, _) =
            l.connect_accepted_socket(|| Lost(Rc::new(Seen::default())), socket_of(client_end)).await?;
        let options = TlsOptions { server_hostname: Some("localhost".into()), ..Default::default() };
        l.start_tls(&plain, client_config, options).await
    });
    for _ in 0..20 {
        lp.run_until_idle().unwrap();
    }
    let server_tls = lp.run_until_complete(server_task).unwrap().unwrap().unwrap();
    let client_tls = lp.run_until_complete(client_task).unwrap().unwrap().unwrap();
    // The client stops reading; the server sends more than the socket
    // holds, then closes.
    client_tls.pause_reading();
    server_tls.write(&vec![1u8; 8 << 20]).unwrap();
    server_tls.close();
    lp.run_until_idle().unwrap();
    lp.advance_time(Duration::from_secs(29));
    lp.run_until_idle().unwrap();
    assert!(seen.lost.borrow().is_none(), "still flushing before the timeout");
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    let lost = seen.lost.borrow().clone().expect("cut off at the shutdown timeout");
    assert!(lost.unwrap().contains("shutdown"), "the protocol learns why");
    client_tls.abort();
    lp.run_until_idle().unwrap();
}

#[test]
fn a_thousand_tls_connections_leave_no_fd_behind() {
    const MARKER: &str = "tls-fd-cycles-done";
    // fds are process-wide: counted in a child running this test alone.
    if !util::run_test_in_child(
        "a_thousand_tls_connections_leave_no_fd_behind",
        "EVLOOP_TLS_FD_CHILD",
        MARKER,
    ) {
        return;
    }
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let server_config = pki.server_config();
    let client_config = pki.client_config();
    let served = Rc::new(Cell::new(0usize));
    let sv = served.clone();
    let (before, after) = lp
        .run_until_complete(async move {
            let options = tls_server_options(server_config);
            let server = evloop::start_server(
                move |mut reader, writer| {
                    let sv = sv.clone();
                    async move {
                        let line = reader.readline().await.unwrap_or_default();
                        writer.write(&line).unwrap();
                        writer.close();
                        sv.set(sv.get() + 1);
                    }
                },
                "127.0.0.1",
                0,
                options,
            )
            .await?;
            let port = server.local_addr().unwrap().port();
            let before = util::open_fd_count();
            for i in 0..1000 {
                let options = with_tls(client_config.clone(), Some("localhost"));
                let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, options).await?;
                writer.write(format!("{i}\n").as_bytes())?;
                assert_eq!(reader.readline().await?, format!("{i}\n").as_bytes());
                writer.close();
                writer.wait_closed().await?;
            }
            // wait_closed returns once every connection the server
            // accepted is gone; the listener's fd is closed too.
            server.close();
            server.wait_closed().await?;
            let after = util::open_fd_count() + 1;
            drop(l);
            Ok::<_, Error>((before, after))
        })
        .unwrap()
        .unwrap();
    assert_eq!(served.get(), 1000);
    assert_eq!(after, before, "every connection's fds are closed");
    println!("{MARKER}");
}

#[test]
fn set_protocol_on_a_tls_transport_swaps_the_app_protocol_not_the_tls_layer() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(Seen::default());
    let s = seen.clone();
    let config = pki.server_config();
    let client = pki.client_config();
    let drops = DropCounter::new();
    let d = drops.clone();
    lp.run_until_complete(async move {
        /// Answers "ping" with "pong" and keeps the connection open.
        struct PongOpen(Option<Transport>);
        impl Protocol for PongOpen {
            fn connection_made(&mut self, t: &Transport) {
                self.0 = Some(t.clone());
            }
            fn data_received(&mut self, _: &[u8]) {
                self.0.as_ref().unwrap().write(b"pong").unwrap();
            }
        }
        let options = ServerOptions { ssl: Some(config), ..Default::default() };
        let server = l.create_server(|| PongOpen(None), "127.0.0.1", 0, options).await?;
        let port = server.local_addr().unwrap().port();
        let options = ConnectOptions::new().ssl(client).server_hostname("localhost");
        let first = Rc::new(Seen::default());
        let (t, _) = l
            .create_connection(
                move || Recording(first, Some(DropCounter::token(&d))),
                "127.0.0.1",
                port,
                options,
            )
            .await?;
        assert!(t.get_protocol::<Recording>().is_some());
        let new = t.set_protocol(Lost(s))?;
        assert_eq!(drops.get(), 1, "the old app protocol is dropped");
        assert!(t.get_protocol::<Lost>().is_some_and(|p| Rc::ptr_eq(&p, &new)));
        t.write(b"ping")?;
        while seen.data.borrow().is_empty() {
            evloop::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(&*seen.data.borrow(), b"pong", "decrypted for the new protocol");
        t.close();
        server.close();
        server.abort_clients();
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
}

//! TLS follow-ups: `get_extra_info`'s TLS keys, `Server::close_clients`
//! and `abort_clients` through the TLS layer, and `sendfile` over TLS
//! (the read-and-write fallback). Peers are blocking rustls clients on
//! threads, so what they report (close_notify or a truncation) is
//! rustls's own word.

#![cfg(feature = "tls")]

mod tls_common;
mod util;

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use evloop::net::tls;
use evloop::net::{ConnectOptions, ExtraInfo, Protocol, ServerOptions};
use evloop::{Error, EventLoop};
use tls_common::TestPki;

/// Counts the bytes it receives.
struct Counting(Rc<Cell<usize>>);

impl Protocol for Counting {
    fn data_received(&mut self, data: &[u8]) {
        self.0.set(self.0.get() + data.len());
    }
}

/// A blocking rustls client on a thread: writes `hello`, then reads to the
/// end. Returns what it read and how the read ended.
fn blocking_client(
    port: u16,
    config: Arc<tls::rustls::ClientConfig>,
    hello: &'static [u8],
) -> std::thread::JoinHandle<(Vec<u8>, std::io::Result<usize>)> {
    std::thread::spawn(move || {
        use std::io::Write;
        let name = tls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = tls::rustls::ClientConnection::new(config, name).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut stream = tls::rustls::StreamOwned::new(conn, sock);
        stream.write_all(hello).unwrap();
        stream.flush().unwrap();
        let mut got = Vec::new();
        let end = stream.read_to_end(&mut got);
        (got, end)
    })
}

/// Serves TLS, waits until a client's `hello` arrived, runs `end` on the
/// server, and returns how the client's read ended.
fn end_clients(end: fn(&evloop::net::Server)) -> std::io::Result<usize> {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let received = Rc::new(Cell::new(0));
    let r = received.clone();
    let config = pki.server_config();
    let client = pki.client_config();
    let peer = lp
        .run_until_complete(async move {
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let server = l.create_server(move || Counting(r.clone()), "127.0.0.1", 0, options).await?;
            let port = server.local_addr().unwrap().port();
            let peer = blocking_client(port, client, b"hello");
            // The hello arrived, so the handshake is done on both sides.
            while received.get() < 5 {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(server.connections(), 1);
            end(&server);
            while server.connections() > 0 {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            server.close();
            server.wait_closed().await?;
            Ok::<_, Error>(peer)
        })
        .unwrap()
        .unwrap();
    let (got, end) = peer.join().unwrap();
    assert!(got.is_empty());
    end
}

#[test]
fn close_clients_on_a_tls_server_sends_close_notify() {
    let end = end_clients(|s| s.close_clients());
    assert_eq!(end.map_err(|e| e.kind()).ok(), Some(0), "a clean TLS close (close_notify), not a truncation");
}

#[test]
fn abort_clients_on_a_tls_server_sends_no_close_notify() {
    let end = end_clients(|s| s.abort_clients());
    let kind = end.expect_err("an abort is a truncation").kind();
    assert!(
        matches!(kind, std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset),
        "{kind:?}"
    );
}

#[test]
fn get_extra_info_answers_the_tls_keys_and_plain_transports_do_not() {
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let config = pki.server_config();
    let client = pki.client_config();
    let cert = pki.cert_der.clone();
    lp.run_until_complete(async move {
        let options = ServerOptions { ssl: Some(config), ..Default::default() };
        let server = l.create_server(|| Counting(Rc::default()), "127.0.0.1", 0, options).await?;
        let port = server.local_addr().unwrap().port();
        let options = ConnectOptions::new().ssl(client);
        let (t, _) = l.create_connection(|| Counting(Rc::default()), "localhost", port, options).await?;
        let Some(ExtraInfo::PeerCert(chain)) = t.get_extra_info("peercert") else { panic!("peercert") };
        assert_eq!(chain[0], cert);
        let Some(ExtraInfo::Cipher(name, version, bits)) = t.get_extra_info("cipher") else {
            panic!("cipher")
        };
        assert!(name.starts_with("TLS13_"), "{name}");
        assert_eq!(version, "TLSv1.3");
        let expected_bits = if name.contains("_128_") { 128 } else { 256 };
        assert_eq!(bits, expected_bits, "{name}");
        let Some(ExtraInfo::SslObject(info)) = t.get_extra_info("ssl_object") else { panic!("ssl_object") };
        assert_eq!(info.version, tls::rustls::ProtocolVersion::TLSv1_3);
        assert_eq!(info.cipher_suite, t.cipher_suite().unwrap());
        assert_eq!(info.peer_certificates, chain);
        assert!(!info.server_side);
        assert!(t.get_extra_info("sslcontext").is_none());
        assert!(
            matches!(t.get_extra_info("peername"), Some(ExtraInfo::Peername(_))),
            "socket keys still answer"
        );
        t.close();

        let plain_server =
            l.create_server(|| Counting(Rc::default()), "127.0.0.1", 0, Default::default()).await?;
        let port = plain_server.local_addr().unwrap().port();
        let (p, _) =
            l.create_connection(|| Counting(Rc::default()), "127.0.0.1", port, Default::default()).await?;
        for key in ["peercert", "cipher", "ssl_object", "sslcontext"] {
            assert!(p.get_extra_info(key).is_none(), "{key} on a plain transport");
        }
        p.close();
        server.close();
        plain_server.close();
        Ok::<_, Error>(())
    })
    .unwrap()
    .unwrap();
}

/// Keeps what it receives.
struct Collect(Rc<RefCell<Vec<u8>>>);

impl Protocol for Collect {
    fn data_received(&mut self, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
    }
}

fn temp_file(name: &str, data: &[u8]) -> (std::path::PathBuf, std::fs::File) {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("evloop-tls-sendfile-{}-{name}", std::process::id()));
    std::fs::File::create(&path).unwrap().write_all(data).unwrap();
    (path.clone(), std::fs::File::open(&path).unwrap())
}

/// Sends `data[offset..][..count]` with `sendfile` over TLS and returns
/// what the server received and what `sendfile` returned.
fn sendfile_over_tls(name: &str, data: &[u8], offset: u64, count: Option<usize>) -> (Vec<u8>, usize) {
    let (path, file) = temp_file(name, data);
    let pki = TestPki::localhost();
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, got_loop) = (got.clone(), got.clone());
    let config = pki.server_config();
    let client = pki.client_config();
    let sent = lp
        .run_until_complete(async move {
            let options = ServerOptions { ssl: Some(config), ..Default::default() };
            let server = l.create_server(move || Collect(g.clone()), "127.0.0.1", 0, options).await?;
            let port = server.local_addr().unwrap().port();
            let options = ConnectOptions::new().ssl(client);
            let (t, _) = l.create_connection(|| Counting(Rc::default()), "localhost", port, options).await?;
            // A small buffer, so the fallback must wait for it to drain.
            t.set_write_buffer_limits(Some(16 * 1024), None)?;
            t.write(b"<")?;
            let sent = l.sendfile(&t, &file, offset, count).await?;
            assert!(t.is_reading(), "reading resumed after sendfile");
            t.write(b">")?;
            // Close once all arrived: closing with the server's session
            // tickets unread would reset the connection (as plain TCP does).
            while got_loop.borrow().len() < sent + 2 {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            t.close();
            while server.connections() > 0 {
                evloop::sleep(Duration::from_millis(1)).await;
            }
            server.close();
            Ok::<_, Error>(sent)
        })
        .unwrap()
        .unwrap();
    std::fs::remove_file(path).unwrap();
    let got = got.borrow().clone();
    (got, sent)
}

#[test]
fn sendfile_over_tls_falls_back_to_writes_and_arrives_intact() {
    let data: Vec<u8> =
        (0..3 * 1024 * 1024 + 7u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let (got, sent) = sendfile_over_tls("all", &data, 0, None);
    assert_eq!(sent, data.len());
    assert_eq!(got.len(), data.len() + 2);
    assert!(got[0] == b'<' && got[got.len() - 1] == b'>', "between the writes before and after it");
    assert!(got[1..got.len() - 1] == data[..], "the file arrived intact");

    let (got, sent) = sendfile_over_tls("part", &data, 100_000, Some(200_001));
    assert_eq!(sent, 200_001);
    assert!(got[1..got.len() - 1] == data[100_000..300_001]);

    let (got, sent) = sendfile_over_tls("past-end", &data, data.len() as u64 - 10, Some(1000));
    assert_eq!(sent, 10, "stops at the end of the file");
    assert!(got[1..got.len() - 1] == data[data.len() - 10..]);
}

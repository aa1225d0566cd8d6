//! TLS on one loop over loopback TCP: echo ping-pong of 1 KiB and a bulk
//! transfer with flow control, evloop's TLS layer (`Protocol` API,
//! `ServerOptions::ssl` / `ConnectOptions::ssl`) against tokio-rustls on
//! tokio's current-thread runtime. Both use the same rustls build and
//! crypto provider (ring), TLS 1.3 and the same self-signed certificate,
//! so the difference is the I/O layer around rustls.
//!
//! Each call sets up a server and a connection (untimed: the handshake is
//! not measured), then times the workload: echo warms up with 50 round
//! trips first.

use std::cell::{Cell as StdCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evloop::net::tls::rustls;
use evloop::net::tls::{self as etls, pki_types};

use crate::common::{Cell, Echo, EchoCheck, Row, Runner, pattern};
use crate::io::{CHUNK, READ_SIZE, WARM_UP};
use crate::process::say;
use crate::suite::{Config, Suite, interleave};

pub const PEERS: &[&str] = &["evloop", "tokio-rustls"];

/// One certificate for every run: made once per process.
fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    thread_local! {
        static CONFIGS: RefCell<Option<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)>> =
            const { RefCell::new(None) };
    }
    CONFIGS.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
                let der = cert.cert.der().clone();
                let key = pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
                (
                    etls::server_config(vec![der.clone()], key).unwrap(),
                    etls::client_config_with_roots([der]).unwrap(),
                )
            })
            .clone()
    })
}

pub fn echo_runner(peer: &str, size: usize) -> Option<Runner> {
    let f: fn(usize, u64) -> Duration = match peer {
        "evloop" => evloop_echo,
        "tokio-rustls" => tokio_echo,
        _ => return None,
    };
    Some(Box::new(move |n| f(size, n)))
}

pub fn bulk_runner(peer: &str) -> Option<Runner> {
    let f: fn(u64) -> Duration = match peer {
        "evloop" => evloop_bulk,
        "tokio-rustls" => tokio_bulk,
        _ => return None,
    };
    Some(Box::new(f))
}

// ------------------------------------------------------------ evloop

mod ev {
    use super::*;
    use evloop::net::{Protocol, Transport};

    pub struct EchoServer(pub Option<Transport>);

    impl Protocol for EchoServer {
        fn connection_made(&mut self, t: &Transport) {
            self.0 = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.0.as_ref().unwrap().write(data).unwrap();
        }
    }

    pub struct EchoClient {
        pub t: Option<Transport>,
        pub check: EchoCheck,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for EchoClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            match self.check.data(data) {
                Echo::More => {}
                Echo::Again => self.t.as_ref().unwrap().write(&self.check.msg).unwrap(),
                Echo::Done => self.lp.stop(),
            }
        }
    }

    pub struct BulkServer {
        pub t: Option<Transport>,
        pub total: u64,
        pub count: u64,
    }

    impl Protocol for BulkServer {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            self.count += data.len() as u64;
            assert!(self.count <= self.total, "bulk overrun");
            if self.count == self.total {
                self.t.as_ref().unwrap().write(&self.count.to_le_bytes()).unwrap();
            }
        }
    }

    pub struct BulkState {
        pub total: u64,
        pub sent: StdCell<u64>,
        pub chunk: Vec<u8>,
        pub ack: RefCell<Vec<u8>>,
    }

    /// Writes 64 KiB chunks while the buffer is at most its high-water
    /// mark; `resume_writing` calls it again.
    pub fn pump(t: &Transport, st: &BulkState) {
        let (_, high) = t.get_write_buffer_limits();
        while st.sent.get() < st.total && t.get_write_buffer_size() <= high {
            let n = (CHUNK as u64).min(st.total - st.sent.get()) as usize;
            t.write(&st.chunk[..n]).unwrap();
            st.sent.set(st.sent.get() + n as u64);
        }
    }

    pub struct BulkClient {
        pub t: Option<Transport>,
        pub st: Rc<BulkState>,
        pub lp: evloop::EventLoop,
    }

    impl Protocol for BulkClient {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            let mut ack = self.st.ack.borrow_mut();
            ack.extend_from_slice(data);
            if ack.len() == 8 {
                self.lp.stop();
            }
        }
        fn resume_writing(&mut self) {
            pump(self.t.as_ref().unwrap(), &self.st);
        }
    }
}

fn tls_options() -> (evloop::net::ServerOptions, evloop::net::ConnectOptions) {
    let (server, client) = configs();
    (
        evloop::net::ServerOptions { ssl: Some(server), ..Default::default() },
        evloop::net::ConnectOptions::new().ssl(client).server_hostname("localhost"),
    )
}

pub fn evloop_echo(size: usize, n: u64) -> Duration {
    let lp = evloop::EventLoop::new().unwrap();
    let msg = Rc::new(pattern(size));
    let (l, m) = (lp.clone(), msg.clone());
    let (server_options, connect) = tls_options();
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let server =
                l.create_server(|| ev::EchoServer(None), "127.0.0.1", 0, server_options).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::EchoClient { t: None, check: EchoCheck::new(m, 0), lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port, connect).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let run = |rounds: u64| {
        client.borrow_mut().check = EchoCheck::new(msg.clone(), rounds);
        let start = Instant::now();
        transport.write(&msg).unwrap();
        lp.run_forever().unwrap();
        let t = start.elapsed();
        assert_eq!(client.borrow().check.completed, rounds);
        t
    };
    run(WARM_UP);
    let t = run(n);
    transport.abort();
    server.close();
    server.abort_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

pub fn evloop_bulk(total: u64) -> Duration {
    let lp = evloop::EventLoop::new().unwrap();
    let l = lp.clone();
    let st = Rc::new(ev::BulkState {
        total,
        sent: Default::default(),
        chunk: pattern(CHUNK),
        ack: Default::default(),
    });
    let st2 = st.clone();
    let (server_options, connect) = tls_options();
    let (server, transport, client) = lp
        .run_until_complete(async move {
            let factory = move || ev::BulkServer { t: None, total, count: 0 };
            let server = l.create_server(factory, "127.0.0.1", 0, server_options).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let l2 = l.clone();
            let factory = move || ev::BulkClient { t: None, st: st2, lp: l2 };
            let (t, p) = l.create_connection(factory, "127.0.0.1", port, connect).await.unwrap();
            (server, t, p)
        })
        .unwrap();
    let start = Instant::now();
    ev::pump(&transport, &st);
    lp.run_forever().unwrap();
    let t = start.elapsed();
    let ack = u64::from_le_bytes(st.ack.borrow()[..8].try_into().unwrap());
    assert_eq!(ack, total, "the server received every byte");
    transport.abort();
    server.close();
    server.abort_clients();
    lp.run_until_idle().unwrap();
    drop(client);
    lp.close().unwrap();
    t
}

// ------------------------------------------------------------ tokio-rustls

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

type TokioPair = (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, tokio::task::JoinHandle<()>);

/// A connected TLS client and the server task running `serve` on the
/// accepted TLS stream.
async fn tokio_pair<F, Fut>(serve: F) -> TokioPair
where
    F: FnOnce(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    use tokio::net::{TcpListener, TcpStream};
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let server = tokio::task::spawn_local(async move {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let s = acceptor.accept(s).await.unwrap();
        serve(s).await;
    });
    let c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config);
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let c = connector.connect(name, c).await.unwrap();
    (c, server)
}

pub fn tokio_echo(size: usize, n: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (mut c, server) = tokio_pair(|mut s| async move {
            let mut buf = vec![0u8; READ_SIZE];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => s.write_all(&buf[..k]).await.unwrap(),
                }
            }
        })
        .await;
        let msg = Rc::new(pattern(size));
        let mut buf = vec![0u8; READ_SIZE];
        let mut t = Duration::ZERO;
        for rounds in [WARM_UP, n] {
            let mut check = EchoCheck::new(msg.clone(), rounds);
            let start = Instant::now();
            c.write_all(&msg).await.unwrap();
            loop {
                let k = c.read(&mut buf).await.unwrap();
                match check.data(&buf[..k]) {
                    Echo::More => {}
                    Echo::Again => c.write_all(&msg).await.unwrap(),
                    Echo::Done => break,
                }
            }
            t = start.elapsed();
        }
        drop(c);
        server.await.unwrap();
        t
    })
}

pub fn tokio_bulk(total: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (mut c, server) = tokio_pair(move |mut s| async move {
            let mut buf = vec![0u8; READ_SIZE];
            let mut count = 0u64;
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        count += k as u64;
                        assert!(count <= total);
                        if count == total {
                            s.write_all(&count.to_le_bytes()).await.unwrap();
                            s.flush().await.unwrap();
                        }
                    }
                }
            }
        })
        .await;
        let chunk = pattern(CHUNK);
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let k = (CHUNK as u64).min(total - sent) as usize;
            c.write_all(&chunk[..k]).await.unwrap();
            sent += k as u64;
        }
        c.flush().await.unwrap();
        let mut ack = [0u8; 8];
        c.read_exact(&mut ack).await.unwrap();
        let t = start.elapsed();
        assert_eq!(u64::from_le_bytes(ack), total);
        drop(c);
        server.await.unwrap();
        t
    })
}

// ------------------------------------------------------------ the section

pub fn section_tls(cfg: &Config, s: &mut Suite) {
    let (n, rounds) = if cfg.quick { (1_000, cfg.rounds) } else { (5_000, cfg.rounds * 2) };
    let mut runners: Vec<(String, Runner)> =
        PEERS.iter().filter_map(|p| Some((p.to_string(), echo_runner(p, 1024)?))).collect();
    say(format!("TLS echo 1 KiB ({n} round trips × {rounds} rounds)"));
    let values = interleave(&mut runners, n, 0, rounds, |d, n| d.as_nanos() as f64 / 1e3 / n as f64);
    let mut row = Row::new("tls", "TLS echo 1 KiB", "µs/round trip", true);
    for ((peer, _), v) in runners.iter().zip(values) {
        row.cells.push((peer.clone(), Cell::Values(v)));
    }
    s.rows.push(row);

    let total: u64 = 64 << 20;
    let mut runners: Vec<(String, Runner)> =
        PEERS.iter().filter_map(|p| Some((p.to_string(), bulk_runner(p)?))).collect();
    say(format!("TLS bulk {} MiB × {} rounds", total >> 20, cfg.rounds));
    let values = interleave(&mut runners, total, 0, cfg.rounds, |d, total| {
        total as f64 / (1 << 20) as f64 / d.as_secs_f64()
    });
    let mut row = Row::new("tls", format!("TLS bulk {} MiB", total >> 20), "MiB/s", false);
    for ((peer, _), v) in runners.iter().zip(values) {
        row.cells.push((peer.clone(), Cell::Values(v)));
    }
    s.rows.push(row);
}

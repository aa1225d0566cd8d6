//! Cross-process pieces: the Rust servers (evloop and tokio echo, tokio +
//! hyper HTTP hello), the epoll load generator, and the memory probes.
//!
//! Every server prints `listening on 127.0.0.1:PORT` on stdout once it
//! accepts, then serves until killed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::common::{pattern, raise_fd_limit, rss_kib};

/// The body every HTTP hello server answers (as `examples/http_hello.rs`).
pub const HTTP_BODY: &str = r#"{"message": "Hello World"}"#;

fn announce(port: u16) {
    println!("listening on 127.0.0.1:{port}");
    std::io::stdout().flush().unwrap();
}

pub fn serve(kind: &str, port: u16) {
    raise_fd_limit(65536);
    match kind {
        "echo-evloop" => serve_echo_evloop(port),
        "echo-tokio" => serve_echo_tokio(port),
        "http-hyper" => serve_http_hyper(port),
        _ => panic!("unknown server {kind:?} (echo-evloop, echo-tokio, http-hyper)"),
    }
}

mod ev {
    use evloop::net::{Protocol, Transport};

    pub struct Echo(pub Option<Transport>);

    impl Protocol for Echo {
        fn connection_made(&mut self, t: &Transport) {
            self.0 = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            if let Some(t) = &self.0 {
                t.write(data).ok();
            }
        }
    }
}

fn serve_echo_evloop(port: u16) {
    let lp = evloop::EventLoop::new().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let opts = evloop::net::ServerOptions { backlog: 1024, ..Default::default() };
        let server = l.create_server(|| ev::Echo(None), "127.0.0.1", port, opts).await.unwrap();
        announce(server.local_addr().unwrap().port());
        server.serve_forever().await
    })
    .unwrap()
    .unwrap();
}

fn serve_echo_tokio(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        announce(listener.local_addr().unwrap().port());
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            if s.write_all(&buf[..k]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}

fn serve_http_hyper(port: u16) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::header::{CONTENT_TYPE, HeaderValue};
    use hyper::{Request, Response, server::conn::http1, service::service_fn};
    use hyper_util::rt::{TokioIo, TokioTimer};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        announce(listener.local_addr().unwrap().port());
        loop {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut resp = Response::new(Full::new(Bytes::from_static(HTTP_BODY.as_bytes())));
                    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    // evloop's http_hello and the httptools server send no Date header.
                    .auto_date_header(false)
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
}

// ------------------------------------------------------------ load generator

/// Echo load: `conns` connections, each sending `size` bytes and waiting for
/// the whole echo (checked byte for byte) before sending again. Warms up
/// for `warm` seconds, then counts round trips for `secs`. Prints
/// `ok ROUND_TRIPS NS`.
pub fn loadgen(port: u16, conns: usize, size: usize, secs: f64, warm: f64) {
    raise_fd_limit(65536);
    let msg = pattern(size);
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    struct C {
        s: TcpStream,
        got: usize,
    }
    let mut cs: Vec<C> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
            s.set_nodelay(true).unwrap();
            C { s, got: 0 }
        })
        .collect();
    for (i, c) in cs.iter_mut().enumerate() {
        (&c.s).write_all(&msg).unwrap(); // blocking: small, the socket takes it
        c.s.set_nonblocking(true).unwrap();
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: ev outlives the call.
        assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.s.as_raw_fd(), &mut ev) }, 0);
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.max(1)];
    let mut buf = vec![0u8; 256 * 1024];
    let warm_until = Instant::now() + Duration::from_secs_f64(warm);
    let mut counting: Option<Instant> = None;
    let mut done = 0u64;
    let measure = Duration::from_secs_f64(secs);
    loop {
        // SAFETY: events holds `len` entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 1000) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        assert!(n > 0, "the server stopped answering");
        for e in &events[..n as usize] {
            let c = &mut cs[e.u64 as usize];
            let k = match (&c.s).read(&mut buf) {
                Ok(0) => panic!("the server closed a connection"),
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("read: {e}"),
            };
            assert!(c.got + k <= size && buf[..k] == msg[c.got..c.got + k], "wrong echo");
            c.got += k;
            if c.got == size {
                c.got = 0;
                done += 1;
                write_all_nonblocking(&c.s, &msg);
            }
        }
        let now = Instant::now();
        match counting {
            None if now >= warm_until => {
                counting = Some(now);
                done = 0;
            }
            Some(start) if now - start >= measure => {
                println!("ok {done} {}", (now - start).as_nanos());
                return;
            }
            _ => {}
        }
    }
}

fn write_all_nonblocking(mut s: &TcpStream, mut data: &[u8]) {
    while !data.is_empty() {
        match s.write(data) {
            Ok(k) => data = &data[k..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

// ------------------------------------------------------------------ memory

/// `n` pending timers in a fresh process; prints `ok BEFORE RSS HWM` (KiB).
pub fn mem_timers(kind: &str, n: u64) {
    let before = rss_kib("self").unwrap().0;
    match kind {
        "evloop" => {
            let lp = evloop::EventLoop::new().unwrap();
            let fired = std::rc::Rc::new(std::cell::Cell::new(0u64));
            for i in 0..n {
                let f = fired.clone();
                let h = lp.call_later(Duration::from_secs(3600) + Duration::from_micros(i), move || {
                    f.set(f.get() + 1)
                });
                // Keep no handles: a real program drops most of them.
                drop(h);
            }
            lp.run_once(Some(Duration::ZERO)).unwrap();
            assert_eq!(lp.stats().timers as u64, n, "every timer is pending");
            assert_eq!(fired.get(), 0);
            let (rss, hwm) = rss_kib("self").unwrap();
            println!("ok {before} {rss} {hwm}");
            std::process::exit(0); // skip freeing a million closures
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut sleeps = Vec::with_capacity(n as usize);
                let mut fired = 0;
                for i in 0..n {
                    let mut s =
                        Box::pin(tokio::time::sleep(Duration::from_secs(3600) + Duration::from_micros(i)));
                    if futures_lite::future::poll_once(s.as_mut()).await.is_some() {
                        fired += 1;
                    }
                    sleeps.push(s);
                }
                tokio::task::yield_now().await;
                assert_eq!(fired, 0);
                assert_eq!(sleeps.len() as u64, n);
                let (rss, hwm) = rss_kib("self").unwrap();
                println!("ok {before} {rss} {hwm}");
                std::process::exit(0);
            });
        }
        _ => panic!("mem-timers: evloop or tokio"),
    }
}

/// Opens `n` connections to an echo server, checks each with a 1-byte
/// echo, and returns them (kept open by the caller while it measures).
pub fn open_idle_connections(port: u16, n: usize) -> std::io::Result<Vec<TcpStream>> {
    raise_fd_limit(n as u64 + 1024);
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    // In batches, each checked before the next: connecting faster than the
    // server accepts would overflow its accept queue (SYNs dropped, retried
    // after a second).
    const BATCH: usize = 100; // below every server's listen backlog (tokio: 128)
    while conns.len() < n {
        let first = conns.len();
        for _ in first..(first + BATCH).min(n) {
            let s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            conns.push(s);
        }
        for (i, mut s) in conns.iter().enumerate().skip(first) {
            let b = [(i % 251) as u8];
            s.write_all(&b)?;
        }
        for (i, mut s) in conns.iter().enumerate().skip(first) {
            let mut r = [0u8; 1];
            s.read_exact(&mut r)?;
            if r[0] != (i % 251) as u8 {
                return Err(std::io::Error::other("wrong echo"));
            }
        }
    }
    Ok(conns)
}

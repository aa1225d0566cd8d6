//! The cross-process echo section: the Rust servers (evloop and tokio echo;
//! `serve http-hyper` is in `http.rs`), the epoll load generator, and the
//! section driving them.
//!
//! Every server prints `listening on 127.0.0.1:PORT` on stdout once it
//! accepts, then serves until killed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use std::process::Command;

use crate::common::{Cell, Row, pattern, raise_fd_limit};
use crate::io::blocking_roundtrip;
use crate::process::{Server, pinned, say, self_exe};
use crate::suite::{Config, Suite};

pub fn announce(port: u16) {
    println!("listening on 127.0.0.1:{port}");
    std::io::stdout().flush().unwrap();
}

pub fn serve(kind: &str, port: u16) {
    raise_fd_limit(65536);
    match kind {
        "echo-evloop" => serve_echo_evloop(port),
        "echo-tokio" => serve_echo_tokio(port),
        "http-hyper" => crate::http::serve_http_hyper(port),
        "http-hyper-mt2" => crate::http::serve_http_hyper_multi_thread(port, 2),
        "hyper-evloop" => crate::eco::serve_hyper_evloop(port),
        "axum-evloop" => crate::eco::serve_axum_evloop(port),
        "axum-tokio" => crate::eco::serve_axum_tokio(port),
        "axum-evloop-timeout" => crate::eco::serve_axum_evloop_timeout(port),
        "axum-tokio-timeout" => crate::eco::serve_axum_tokio_timeout(port),
        _ => panic!(
            "unknown server {kind:?} (echo-evloop, echo-tokio, http-hyper, http-hyper-mt2, hyper-evloop, \
             axum-evloop, axum-tokio, axum-evloop-timeout, axum-tokio-timeout)"
        ),
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

/// Starts the cross-process echo servers, pinned to CPU 0.
pub fn echo_servers(cfg: &Config, pin: bool) -> Vec<Result<Server, String>> {
    let exe = self_exe();
    let mut out = Vec::new();
    for (name, kind) in [("evloop", "echo-evloop"), ("tokio", "echo-tokio")] {
        let mut cmd = if pin { pinned(0, &exe) } else { Command::new(&exe) };
        cmd.args(["serve", kind, "0"]);
        out.push(Server::start(name, cmd));
    }
    for lp in ["asyncio", "uvloop"] {
        let mut cmd = if pin { pinned(0, &cfg.python) } else { Command::new(&cfg.python) };
        cmd.arg(cfg.py_script("servers.py")).args(["echo", "--loop", lp]);
        out.push(Server::start(lp, cmd));
    }
    out
}

fn check_echo_server(srv: &Server) -> Result<(), String> {
    let msg = crate::common::pattern(1024);
    let got = blocking_roundtrip(&srv.addr(), &msg, &msg[1000..]).map_err(|e| e.to_string())?;
    if got == msg { Ok(()) } else { Err(format!("{}: wrong echo", srv.name)) }
}

pub fn section_cross(cfg: &Config, s: &mut Suite) {
    let (secs, warm) = if cfg.quick { (0.4, 0.1) } else { (2.0, 0.2) };
    let reps = 3;
    let servers = echo_servers(cfg, true);
    let exe = self_exe();
    let mut rows = Vec::new();
    for conns in [1usize, 10] {
        let mut row = Row::new("cross", format!("echo 1 KiB, {conns} conn"), "round trips/s", false);
        for srv in &servers {
            match srv {
                Ok(srv) => match check_echo_server(srv) {
                    Ok(()) => row.cells.push((srv.name.clone(), Cell::Values(Vec::new()))),
                    Err(e) => row.cells.push((srv.name.clone(), Cell::Failed(e))),
                },
                Err(e) => {
                    row.cells.push((e.split(':').next().unwrap_or("?").to_string(), Cell::Failed(e.clone())))
                }
            }
        }
        rows.push(row);
    }
    say(format!("cross-process echo: {reps} × {secs} s per server and concurrency"));
    for rep in 0..reps {
        for (ci, conns) in [1usize, 10].into_iter().enumerate() {
            let live: Vec<&Server> = servers.iter().filter_map(|s| s.as_ref().ok()).collect();
            for k in 0..live.len() {
                let srv = live[(rep + k) % live.len()];
                let mut cmd = pinned(1, &exe);
                cmd.args([
                    "loadgen",
                    &srv.port.to_string(),
                    &conns.to_string(),
                    "1024",
                    &secs.to_string(),
                    &warm.to_string(),
                ]);
                let out = cmd.output().expect("run the load generator");
                let text = String::from_utf8_lossy(&out.stdout);
                let cell = rows[ci].cells.iter_mut().find(|(p, _)| *p == srv.name).map(|(_, c)| c).unwrap();
                let parsed = text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .as_slice()
                    .get(0..3)
                    .filter(|w| w[0] == "ok")
                    .and_then(|w| Some((w[1].parse::<f64>().ok()?, w[2].parse::<f64>().ok()?)));
                match (parsed, cell) {
                    (Some((n, ns)), Cell::Values(v)) => v.push(n / (ns / 1e9)),
                    (None, c) => {
                        *c = Cell::Failed(format!(
                            "load generator: {}",
                            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no output")
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    for r in &mut rows {
        r.notes.push(format!(
            "servers pinned to CPU 0, the epoll load generator to CPU 1; median of {reps} × {secs} s, each after {warm} s of warm-up"
        ));
    }
    s.rows.extend(rows);
}

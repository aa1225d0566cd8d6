//! The memory section: RSS with 1M pending timers, and of each echo server
//! holding 10k idle connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{Cell, Row, raise_fd_limit, rss_kib};
use crate::net::echo_servers;
use crate::process::{say, self_exe};
use crate::python;
use crate::suite::{Config, Suite};

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

pub fn section_memory(cfg: &Config, s: &mut Suite) {
    const TIMERS: u64 = 1_000_000;
    say("memory: 1M pending timers");
    let mut rss = Row::new("memory", "1M pending timers: RSS", "MiB", true);
    let mut growth = Row::new("memory", "1M pending timers: RSS growth", "MiB", true);
    let mut hwm = Row::new("memory", "1M pending timers: peak (VmHWM)", "MiB", true);
    let mut record = |peer: &str, reply: Option<String>| {
        let nums: Vec<f64> = reply
            .as_deref()
            .and_then(|r| r.strip_prefix("ok"))
            .map(|r| r.split_whitespace().filter_map(|w| w.parse().ok()).collect())
            .unwrap_or_default();
        if nums.len() == 3 {
            rss.cells.push((peer.into(), Cell::Values(vec![nums[1] / 1024.0])));
            growth.cells.push((peer.into(), Cell::Values(vec![(nums[1] - nums[0]) / 1024.0])));
            hwm.cells.push((peer.into(), Cell::Values(vec![nums[2] / 1024.0])));
        } else {
            let why = reply.unwrap_or_else(|| "no output".into());
            for r in [&mut rss, &mut growth, &mut hwm] {
                r.cells.push((peer.into(), Cell::Failed(why.clone())));
            }
        }
    };
    for peer in ["evloop", "tokio"] {
        let out = Command::new(self_exe()).args(["mem-timers", peer, &TIMERS.to_string()]).output();
        record(peer, out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()));
    }
    for lp in ["asyncio", "uvloop"] {
        // A fresh interpreter, so that nothing else has grown its heap.
        let reply = python::Worker::spawn(&cfg.python, &cfg.py_script("micro.py"), lp).ok().map(|mut w| {
            match w.call(&format!("mem_timers {TIMERS}")) {
                python::Reply::Ok(r) => format!("ok {r}"),
                python::Reply::Na => "na".into(),
            }
        });
        record(lp, reply);
    }
    for r in [&mut rss, &mut growth, &mut hwm] {
        r.notes.push(
            "each in a fresh process: `call_later(1 h + i µs)` × 1M, handles dropped, nothing fired \
             (tokio: 1M boxed `sleep`s, each polled once so it is registered); VmRSS after one loop turn"
                .into(),
        );
    }
    s.rows.push(rss);
    s.rows.push(growth);
    s.rows.push(hwm);

    const CONNS: usize = 10_000;
    let limit = raise_fd_limit(CONNS as u64 + 1024);
    let n = CONNS.min(limit.saturating_sub(256) as usize);
    if n < CONNS {
        s.notes.push(format!("memory: the fd limit ({limit}) allowed only {n} connections"));
    }
    say(format!("memory: {n} idle TCP connections"));
    let mut conn_rss =
        Row::new("memory", format!("{}k idle TCP connections: server RSS", n / 1000), "MiB", true);
    let mut conn_growth =
        Row::new("memory", format!("{}k idle TCP connections: RSS growth", n / 1000), "MiB", true);
    for srv in echo_servers(cfg, false) {
        let srv = match srv {
            Ok(srv) => srv,
            Err(e) => {
                let name = e.split(':').next().unwrap_or("?").to_string();
                conn_rss.cells.push((name.clone(), Cell::Failed(e.clone())));
                conn_growth.cells.push((name, Cell::Failed(e)));
                continue;
            }
        };
        std::thread::sleep(Duration::from_millis(100));
        say(format!("memory: {n} connections to the {} echo server", srv.name));
        let (before, _) = srv.rss_kib().unwrap_or((0, 0));
        match open_idle_connections(srv.port, n) {
            Ok(conns) => {
                std::thread::sleep(Duration::from_millis(300));
                let (after, _) = srv.rss_kib().unwrap_or((0, 0));
                conn_rss.cells.push((srv.name.clone(), Cell::Values(vec![after as f64 / 1024.0])));
                conn_growth
                    .cells
                    .push((srv.name.clone(), Cell::Values(vec![(after as f64 - before as f64) / 1024.0])));
                // The server goes first, so that the TIME_WAIT states end up on
                // its side and do not use up the client's ephemeral ports.
                drop(srv);
                drop(conns);
            }
            Err(e) => {
                conn_rss.cells.push((srv.name.clone(), Cell::Failed(e.to_string())));
                conn_growth.cells.push((srv.name.clone(), Cell::Failed(e.to_string())));
            }
        }
    }
    for r in [&mut conn_rss, &mut conn_growth] {
        r.notes.push(format!(
            "the echo servers of the cross-process test, each a fresh process; {n} connections opened, \
             each checked with a 1-byte echo, then left idle; the server's VmRSS 0.3 s later \
             (tokio's server gives each connection its own 4 KiB read buffer, as tokio's echo example does; evloop's transports share one receive buffer per loop)"
        ));
    }
    s.rows.push(conn_rss);
    s.rows.push(conn_growth);
}

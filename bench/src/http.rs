//! The HTTP hello section: wrk against evloop's `http_hello` example,
//! tokio + hyper, and the Python servers.

use std::path::Path;
use std::process::Command;

use crate::common::{Cell, Row};
use crate::io::blocking_roundtrip;
use crate::net::announce;
use crate::process::{Server, have, pinned, say, self_exe};
use crate::suite::{Config, Suite};

/// The body every HTTP hello server answers (as `examples/http_hello.rs`).
pub const HTTP_BODY: &str = r#"{"message": "Hello World"}"#;

pub fn serve_http_hyper(port: u16) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    serve_http_hyper_on(rt, port);
}

/// hyper on tokio's multi-thread runtime with `workers` worker threads
/// (the multi-loop section's peer).
pub fn serve_http_hyper_multi_thread(port: u16, workers: usize) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    serve_http_hyper_on(rt, port);
}

fn serve_http_hyper_on(rt: tokio::runtime::Runtime, port: u16) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::header::{CONTENT_TYPE, HeaderValue};
    use hyper::{Request, Response, server::conn::http1, service::service_fn};
    use hyper_util::rt::{TokioIo, TokioTimer};
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

pub fn http_check(addr: &str) -> Result<(), String> {
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let got = blocking_roundtrip(addr, req, HTTP_BODY.as_bytes()).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&got);
    if text.starts_with("HTTP/1.1 200") && text.ends_with(HTTP_BODY) {
        Ok(())
    } else {
        Err(format!("unexpected response {text:?}"))
    }
}

pub fn section_http(cfg: &Config, s: &mut Suite) {
    let mut row = Row::new("http", "HTTP hello, wrk -c100", "requests/s", false);
    // The server's own CPU time per request, from /proc: user time is what
    // the loop and the HTTP code cost, system time what the kernel's TCP
    // path costs. Steadier than requests/s when both are CPU-bound.
    let mut user = Row::new("http", "HTTP hello: server user CPU per request", "µs/request", true);
    let mut system = Row::new("http", "HTTP hello: server system CPU per request", "µs/request", true);
    if !have("wrk") {
        s.notes.push("HTTP: `wrk` is not installed; the HTTP section was skipped.".into());
        for p in ["evloop http_hello", "uvloop+httptools", "tokio+hyper", "asyncio+httptools"] {
            row.cells.push((p.into(), Cell::Failed("wrk missing".into())));
        }
        s.rows.push(row);
        return;
    }
    let secs = if cfg.quick { 1 } else { 3 };
    let rounds = if cfg.quick { 3 } else { 5 };
    let mut servers: Vec<Server> = Vec::new();
    let mut start = |name: &str, cmd: Command| -> Cell {
        match Server::start(name, cmd).and_then(|srv| {
            http_check(&srv.addr()).map_err(|e| format!("{name}: {e}"))?;
            Ok(srv)
        }) {
            Ok(srv) => {
                servers.push(srv);
                Cell::Values(Vec::new())
            }
            Err(e) => Cell::Failed(e),
        }
    };
    if cfg.http_hello.exists() {
        let mut c = pinned(0, &cfg.http_hello);
        c.args(["--serve", "0"]);
        row.cells.push(("evloop http_hello".into(), start("evloop http_hello", c)));
    } else {
        let msg = format!("{} not built", cfg.http_hello.display());
        row.cells.push(("evloop http_hello".into(), Cell::Failed(msg)));
    }
    for lp in ["uvloop", "asyncio"] {
        let mut c = pinned(0, &cfg.python);
        c.arg(cfg.py_script("servers.py")).args(["http", "--loop", lp]);
        let name = format!("{lp}+httptools");
        row.cells.push((name.clone(), start(&name, c)));
    }
    let mut c = pinned(0, &self_exe());
    c.args(["serve", "http-hyper", "0"]);
    row.cells.push(("tokio+hyper".into(), start("tokio+hyper", c)));
    for (name, _) in &row.cells {
        user.cells.push((name.clone(), Cell::Values(Vec::new())));
        system.cells.push((name.clone(), Cell::Values(Vec::new())));
    }
    say(format!("HTTP: wrk -t1 -c100, {rounds} rounds × {secs} s per server"));
    let mut errors: Vec<String> = Vec::new();
    for round in 0..rounds {
        for k in 0..servers.len() {
            let srv = &servers[(round + k) % servers.len()];
            let run = wrk_run(srv, secs);
            if let Some((u, sys)) = run.cpu_us_per_request {
                for (r, v) in [(&mut user, u), (&mut system, sys)] {
                    if let Some((_, Cell::Values(vals))) = r.cells.iter_mut().find(|(p, _)| *p == srv.name) {
                        vals.push(v);
                    }
                }
            }
            let (rps, non2xx) = (run.rps, run.non2xx);
            if let Some(l) = run.socket_errors {
                errors.push(format!("{} round {round}: {l}", srv.name));
            }
            let cell = row.cells.iter_mut().find(|(p, _)| *p == srv.name).map(|(_, c)| c).unwrap();
            match (rps, non2xx) {
                (Some(r), 0) => {
                    if let Cell::Values(v) = cell {
                        v.push(r);
                    }
                }
                (_, bad) => *cell = Cell::Failed(format!("wrk: {bad} non-2xx responses or no result")),
            }
        }
    }
    row.notes.push(format!(
        "servers pinned to CPU 0, `wrk -t1 -c100 -d{secs}s` pinned to CPU 1; {rounds} rounds, interleaved; \
         every server answers `GET /` with 200 and `{}` (checked before the run, and wrk's non-2xx count must be 0); \
         hyper's Date header is off so that all send the same headers",
        HTTP_BODY
    ));
    for e in errors {
        row.notes.push(format!("wrk reported {e}"));
    }
    for (r, field) in [(&mut user, "utime"), (&mut system, "stime")] {
        r.notes.push(format!(
            "the server process's {field} from /proc/PID/stat across each wrk run, divided by the requests wrk \
             completed (clock-tick resolution: {:.0} ms)",
            1e3 / clock_ticks_per_second()
        ));
        for (name, cell) in &mut r.cells {
            if row.values(name).is_none() {
                *cell = Cell::Failed("no wrk result".into());
            }
        }
    }
    s.rows.push(row);
    s.rows.push(user);
    s.rows.push(system);
}

/// What one wrk run against a server measured.
pub struct WrkRun {
    pub rps: Option<f64>,
    /// The server's (user, system) CPU time per completed request, in µs.
    pub cpu_us_per_request: Option<(f64, f64)>,
    pub non2xx: u64,
    /// wrk's "Socket errors" line, if any.
    pub socket_errors: Option<String>,
}

/// `wrk -t1 -c100 -dSECS` (pinned to CPU 1 where taskset exists) against
/// `srv`, with the server's CPU time read from /proc around it.
pub fn wrk_run(srv: &Server, secs: u64) -> WrkRun {
    let mut cmd = pinned(1, Path::new("wrk"));
    if !have("taskset") {
        cmd = Command::new("wrk");
    }
    cmd.args(["-t1", "-c100", &format!("-d{secs}s"), &format!("http://{}/", srv.addr())]);
    let cpu_before = cpu_ticks(srv.child.id());
    let out = cmd.output().expect("run wrk");
    let cpu_after = cpu_ticks(srv.child.id());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
    let cpu_us_per_request = match (cpu_before, cpu_after, requests) {
        (Some((u0, s0)), Some((u1, s1)), Some(n)) if n > 0.0 => {
            let us_per_tick = 1e6 / clock_ticks_per_second();
            Some(((u1 - u0) as f64 * us_per_tick / n, (s1 - s0) as f64 * us_per_tick / n))
        }
        _ => None,
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
        .and_then(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let socket_errors = text.lines().find(|l| l.contains("Socket errors")).map(|l| l.trim().to_string());
    WrkRun { rps, cpu_us_per_request, non2xx, socket_errors }
}

/// (utime, stime) of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file; `rest` starts at field 3.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a configuration value; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

//! The ecosystem section: hyper and axum serving the HTTP hello on evloop
//! (through `evloop::compat`) and on tokio's current-thread runtime, wrk
//! against each, interleaved; requests/s and the server's CPU time per
//! request.

use std::process::Command;

use crate::common::{Cell, Row};
use crate::http::{HTTP_BODY, http_check, wrk_run};
use crate::net::announce;
use crate::process::{Server, have, pinned, say, self_exe};
use crate::suite::{Config, Suite};

fn hyper_hello() -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use hyper::header::{CONTENT_TYPE, HeaderValue};
    let mut resp =
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(HTTP_BODY.as_bytes())));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn axum_app() -> axum::Router {
    use axum::http::header::CONTENT_TYPE;
    axum::Router::new()
        .route("/", axum::routing::get(|| async { ([(CONTENT_TYPE, "application/json")], HTTP_BODY) }))
}

fn stream_options() -> evloop::net::stream::StreamServerOptions {
    let server = evloop::net::ServerOptions { backlog: 1024, ..Default::default() };
    evloop::net::stream::StreamServerOptions { server, ..Default::default() }
}

/// hyper on evloop, as the tokio peer (`serve_http_hyper`): the same
/// response, no Date header; hyper-util's auto builder (HTTP/1 here).
pub fn serve_hyper_evloop(port: u16) {
    use hyper::{Request, body::Incoming, service::service_fn};
    let mut builder = evloop::compat::builder();
    // As the tokio peer's hyper, which has no timer: no header-read timeout.
    builder.http1().auto_date_header(false).header_read_timeout(None);
    let service =
        service_fn(|_req: Request<Incoming>| async { Ok::<_, std::convert::Infallible>(hyper_hello()) });
    serve_evloop(port, evloop::compat::hyper_handler_with(builder, service));
}

/// axum on evloop, as `axum::serve` runs it on tokio (hyper-util's auto
/// builder, no timer): `compat::builder()` with the header-read timeout
/// off, serving the `Router` through `TowerToHyperService`.
pub fn serve_axum_evloop(port: u16) {
    let mut builder = evloop::compat::builder();
    builder.http1().header_read_timeout(None);
    let service = hyper_util::service::TowerToHyperService::new(axum_app());
    serve_evloop(port, evloop::compat::hyper_handler_with(builder, service));
}

/// axum on evloop with `compat::tower_handler`'s defaults: hyper's 30 s
/// header-read timeout on the loop's timer, re-armed for every request.
pub fn serve_axum_evloop_timeout(port: u16) {
    serve_evloop(port, evloop::compat::tower_handler(axum_app()));
}

fn serve_evloop(
    port: u16,
    handler: impl Fn(evloop::StreamReader, evloop::StreamWriter) -> evloop::compat::ConnFuture + 'static,
) {
    evloop::run(async move {
        let server = evloop::start_server(handler, "127.0.0.1", port, stream_options()).await.unwrap();
        announce(server.local_addr().unwrap().port());
        server.serve_forever().await
    })
    .unwrap()
    .unwrap();
}

/// axum on tokio's current-thread runtime with the same 30 s header-read
/// timeout: what `axum::serve` does (hyper-util's auto builder per
/// accepted connection), with tokio's timer set on the builder.
pub fn serve_axum_tokio_timeout(port: u16) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        announce(listener.local_addr().unwrap().port());
        let app = axum_app();
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await;
            });
        }
    });
}

/// axum on tokio's current-thread runtime with `axum::serve`, TCP_NODELAY
/// on as evloop's transports have it.
pub fn serve_axum_tokio(port: u16) {
    use axum::serve::ListenerExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        announce(listener.local_addr().unwrap().port());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, axum_app()).await.unwrap();
    });
}

/// (row bench name, peer, server kind of `evloop-bench serve`).
const SERVERS: &[(&str, &str, &str)] = &[
    ("hyper hello", "evloop", "hyper-evloop"),
    ("hyper hello", "tokio", "http-hyper"),
    ("axum hello", "evloop", "axum-evloop"),
    ("axum hello", "tokio", "axum-tokio"),
    ("axum hello, 30 s header timeout", "evloop", "axum-evloop-timeout"),
    ("axum hello, 30 s header timeout", "tokio", "axum-tokio-timeout"),
];

/// The benchmarks of the section, in row order.
const BENCHES: &[&str] = &["hyper hello", "axum hello", "axum hello, 30 s header timeout"];

pub fn section_eco(cfg: &Config, s: &mut Suite) {
    let mut rows: Vec<Row> = Vec::new();
    for bench in BENCHES {
        rows.push(Row::new("eco", format!("{bench}, wrk -c100"), "requests/s", false));
        rows.push(Row::new(
            "eco",
            format!("{bench}: server CPU (user+system) per request"),
            "µs/request",
            true,
        ));
    }
    let row_of = |bench: &str, cpu: bool| {
        let i = BENCHES.iter().position(|b| *b == bench).unwrap();
        2 * i + usize::from(cpu)
    };
    if !have("wrk") {
        s.notes.push("Ecosystem: `wrk` is not installed; the section was skipped.".into());
        return;
    }
    let secs = if cfg.quick { 1 } else { 3 };
    let rounds = if cfg.quick { 3 } else { 5 };
    let mut servers: Vec<(usize, Server)> = Vec::new();
    for (i, (bench, peer, kind)) in SERVERS.iter().enumerate() {
        let mut cmd: Command = pinned(0, &self_exe());
        cmd.args(["serve", kind, "0"]);
        let name = format!("{peer}+{kind}");
        let cell = match Server::start(&name, cmd).and_then(|srv| {
            http_check(&srv.addr()).map_err(|e| format!("{name}: {e}"))?;
            Ok(srv)
        }) {
            Ok(srv) => {
                servers.push((i, srv));
                Cell::Values(Vec::new())
            }
            Err(e) => Cell::Failed(e),
        };
        rows[row_of(bench, false)].cells.push((peer.to_string(), cell.clone()));
        rows[row_of(bench, true)].cells.push((peer.to_string(), cell));
    }
    say(format!("Ecosystem: wrk -t1 -c100, {rounds} rounds × {secs} s per server"));
    for round in 0..rounds {
        for k in 0..servers.len() {
            let (i, srv) = &servers[(round + k) % servers.len()];
            let (bench, peer, _) = SERVERS[*i];
            let run = wrk_run(srv, secs);
            if let Some(e) = &run.socket_errors {
                rows[row_of(bench, false)].notes.push(format!("wrk reported {peer} round {round}: {e}"));
            }
            let push = |row: &mut Row, v: Option<f64>| {
                let cell = row.cells.iter_mut().find(|(p, _)| p == peer).map(|(_, c)| c).unwrap();
                match (v, run.non2xx) {
                    (Some(v), 0) => {
                        if let Cell::Values(vals) = cell {
                            vals.push(v);
                        }
                    }
                    (_, bad) => *cell = Cell::Failed(format!("wrk: {bad} non-2xx responses or no result")),
                }
            };
            push(&mut rows[row_of(bench, false)], run.rps);
            push(&mut rows[row_of(bench, true)], run.cpu_us_per_request.map(|(u, s)| u + s));
        }
    }
    rows[0].notes.push(format!(
        "servers pinned to CPU 0, `wrk -t1 -c100 -d{secs}s` pinned to CPU 1; {rounds} rounds, all six servers \
         interleaved; every server answers `GET /` with 200 and `{HTTP_BODY}` (checked first; wrk's non-2xx \
         count must be 0). The same hyper settings on both sides of a row. hyper: evloop-bench serve \
         hyper-evloop (`compat::hyper_handler_with`, hyper-util's auto builder, no header-read timeout) vs \
         http-hyper (hyper's http1 builder on tokio, no timer), both without the Date header"
    ));
    rows[2].notes.push(
        "axum: the same `Router` with hyper-util's auto builder, Date header on, TCP_NODELAY on, no \
         header-read timeout: `compat::hyper_handler_with` on evloop and `axum::serve` (which sets no timer) \
         on tokio"
            .into(),
    );
    rows[4].notes.push(
        "axum with hyper's 30 s header-read timeout, re-armed per request: `compat::tower_handler`'s \
         defaults on evloop (the loop's timer) and the auto builder with `TokioTimer` on tokio"
            .into(),
    );
    rows[1].notes.push("utime + stime of the server process from /proc/PID/stat across each wrk run, divided by the requests wrk completed".into());
    s.rows.extend(rows);
}

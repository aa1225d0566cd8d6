//! Run with: cargo run --example axum_hello --features hyper
//!
//! An axum `Router` served on an evloop loop through
//! `evloop::compat::tower_handler` (axum built without its `tokio`
//! feature: `axum::serve` needs tokio's listener, the Router itself is a
//! plain tower service). `/slow` awaits the loop's timer inside a handler
//! with `evloop::compat::sleep`, the `Send` sleep that axum's handler
//! bounds accept (`evloop::sleep` is not `Send`).
//!
//! `cargo run --example axum_hello --features hyper -- [PORT]` serves until
//! killed (default 3000); try `curl http://127.0.0.1:3000/` and
//! `curl http://127.0.0.1:3000/slow/250`. With `--demo` a client on the
//! same loop checks every route and exits 0 (what CI runs).

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use evloop::compat;
use http_body_util::{BodyExt, Empty};
use hyper::Request;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                compat::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route("/hello/{name}", get(|Path(name): Path<String>| async move { format!("Hello, {name}!") }))
}

async fn fetch(port: u16, path: &str) -> Result<(u16, Bytes), evloop::Error> {
    let mut client = compat::connect_http1::<Empty<Bytes>>("127.0.0.1", port).await?;
    let req = Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let resp = client.send_request(req).await.map_err(evloop::Error::other)?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await.map_err(evloop::Error::other)?.to_bytes()))
}

async fn demo(port: u16) -> Result<(), evloop::Error> {
    assert_eq!(fetch(port, "/").await?, (200, Bytes::from("Hello, World!")));
    assert_eq!(fetch(port, "/hello/evloop").await?, (200, Bytes::from("Hello, evloop!")));
    assert_eq!(fetch(port, "/missing").await?.0, 404);
    // Two slow requests at once: the handlers wait on the loop together.
    let started = Instant::now();
    let a = evloop::spawn(async move { fetch(port, "/slow/100").await });
    let b = evloop::spawn(async move { fetch(port, "/slow/100").await });
    assert_eq!(a.await??, (200, Bytes::from("slept 100 ms")));
    assert_eq!(b.await??, (200, Bytes::from("slept 100 ms")));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    println!("demo: axum routes answered; two 100 ms handler sleeps took {took:?} together");
    Ok(())
}

fn main() -> Result<(), evloop::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo_mode = args.iter().any(|a| a == "--demo");
    let port = match args.iter().find(|a| !a.starts_with("--")) {
        Some(p) => p.parse().expect("PORT must be a number"),
        None if demo_mode => 0,
        None => 3000,
    };
    evloop::run(async move {
        let server =
            evloop::start_server(compat::tower_handler(app()), "127.0.0.1", port, Default::default()).await?;
        let port = server.local_addr().expect("bound").port();
        if demo_mode {
            demo(port).await?;
            server.close();
            return Ok(());
        }
        println!("serving on http://127.0.0.1:{port}/");
        server.serve_forever().await
    })?
}

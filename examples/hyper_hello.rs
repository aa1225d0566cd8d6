//! Run with: cargo run --example hyper_hello --features hyper
//!
//! hyper 1.x serving "Hello World" on an evloop loop, HTTP/1.1 and HTTP/2
//! on one port (the protocol is detected per connection from the client's
//! first bytes), through `evloop::compat`: no tokio runtime.
//!
//! `cargo run --example hyper_hello --features hyper -- [PORT]` serves
//! until killed (default 3000; 0 picks a free port) and prints its URL;
//! try `curl http://127.0.0.1:3000/` and `curl --http2-prior-knowledge
//! http://127.0.0.1:3000/`. With `--demo` a hyper client on the same loop
//! sends requests over HTTP/1.1 and HTTP/2, checks the answers and exits 0
//! (what CI runs).

use std::convert::Infallible;

use bytes::Bytes;
use evloop::compat;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = format!("Hello World ({:?} {})\n", req.version(), req.uri().path());
    Ok(Response::builder().header("content-type", "text/plain").body(Full::new(Bytes::from(body))).unwrap())
}

async fn demo(port: u16) -> Result<(), evloop::Error> {
    let mut h1 = compat::connect_http1::<Empty<Bytes>>("127.0.0.1", port).await?;
    for i in 0..10 {
        let req = Request::get(format!("/h1/{i}")).header("host", "localhost").body(Empty::new()).unwrap();
        let resp = h1.send_request(req).await.map_err(evloop::Error::other)?;
        let body = resp.into_body().collect().await.map_err(evloop::Error::other)?.to_bytes();
        assert_eq!(body, format!("Hello World (HTTP/1.1 /h1/{i})\n"));
    }
    let h2 = compat::connect_http2::<Empty<Bytes>>("127.0.0.1", port).await?;
    // Ten requests in flight at once on one HTTP/2 connection.
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let mut h2 = h2.clone();
            evloop::spawn(async move {
                let req = Request::get(format!("http://localhost/h2/{i}")).body(Empty::new()).unwrap();
                let resp = h2.send_request(req).await.map_err(evloop::Error::other)?;
                let body = resp.into_body().collect().await.map_err(evloop::Error::other)?.to_bytes();
                assert_eq!(body, format!("Hello World (HTTP/2.0 /h2/{i})\n"));
                Ok::<_, evloop::Error>(())
            })
        })
        .collect();
    for request in requests {
        request.await??;
    }
    println!("demo: 10 HTTP/1.1 and 10 HTTP/2 requests answered");
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
        let server = compat::serve(service_fn(hello), "127.0.0.1", port).await?;
        let port = server.local_addr().expect("bound").port();
        if demo_mode {
            demo(port).await?;
            server.close();
            return Ok(());
        }
        println!("serving on http://127.0.0.1:{port}/ (HTTP/1.1 and HTTP/2)");
        server.serve_forever().await
    })?
}

//! hyper, axum and WebSocket on the loop through `evloop::compat` (the
//! `hyper` feature): servers and clients on one loop, bodies streamed both
//! ways, connections freed on close, hyper's timeouts and axum handlers on
//! the loop's (manual) clock, and the thread check of `SendSleep`.
#![cfg(feature = "hyper")]

mod util;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use evloop::EventLoop;
use evloop::compat;
use evloop::net::Server;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use util::Watchdog;

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

const LIMIT: Duration = Duration::from_secs(60);

/// Waits (on the loop) until `cond` holds; panics after 10 s of loop time.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        evloop::sleep(Duration::from_millis(1)).await;
    }
    panic!("still waiting for {what}");
}

/// A service answering `/` with the path and method, echoing the request
/// body back as it arrives on `/echo`; each clone holds `token`.
fn app(
    token: Rc<()>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Boxed>,
    Error = Infallible,
    Future: 'static,
> + Clone {
    service_fn(move |req: Request<Incoming>| {
        let _held = token.clone();
        async move {
            let body: Boxed = if req.uri().path() == "/echo" {
                req.into_body().boxed_unsync()
            } else {
                let text = format!("{} {} {:?}", req.method(), req.uri().path(), req.version());
                Full::new(Bytes::from(text)).map_err(|e: Infallible| match e {}).boxed_unsync()
            };
            Ok::<_, Infallible>(Response::new(body))
        }
    })
}

async fn start(token: &Rc<()>) -> (Server, u16) {
    let server = compat::serve(app(token.clone()), "127.0.0.1", 0).await.expect("serve");
    let port = server.local_addr().expect("bound").port();
    (server, port)
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "localhost").body(Empty::new()).unwrap()
}

async fn body_of(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.expect("response body").to_bytes()
}

/// 1 MiB in 64 chunks of distinct bytes, as a streamed request body.
fn chunks() -> Vec<Bytes> {
    (0..64u8).map(|i| Bytes::from(vec![i; 16 * 1024])).collect()
}

fn streamed(
    chunks: Vec<Bytes>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin> {
    StreamBody::new(futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c)))))
}

#[test]
fn http1_many_requests_on_one_connection() {
    let _dog = Watchdog::new("http1_many_requests_on_one_connection", LIMIT);
    evloop::run(async {
        let token = Rc::new(());
        let (server, port) = start(&token).await;
        let mut client = compat::connect_http1::<Empty<Bytes>>("127.0.0.1", port).await.unwrap();
        for i in 0..200 {
            client.ready().await.unwrap();
            let resp = client.send_request(get(&format!("/r{i}"))).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(body_of(resp).await, format!("GET /r{i} HTTP/1.1"));
        }
        server.close();
    })
    .unwrap();
}

#[test]
fn http2_concurrent_requests_are_multiplexed() {
    let _dog = Watchdog::new("http2_concurrent_requests_are_multiplexed", LIMIT);
    evloop::run(async {
        let token = Rc::new(());
        let (server, port) = start(&token).await;
        // Prior-knowledge HTTP/2 to the auto-detecting server.
        let client = compat::connect_http2::<Empty<Bytes>>("127.0.0.1", port).await.unwrap();
        let requests: Vec<_> = (0..200)
            .map(|i| {
                let mut client = client.clone();
                evloop::spawn(async move {
                    let resp = client.send_request(get(&format!("http://localhost/r{i}"))).await.unwrap();
                    assert_eq!(resp.version(), hyper::Version::HTTP_2);
                    body_of(resp).await
                })
            })
            .collect();
        for (i, task) in requests.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), format!("GET /r{i} HTTP/2.0"));
        }
        server.close();
    })
    .unwrap();
}

fn check_echo(got: Bytes) {
    let want: Vec<u8> = chunks().concat();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "echoed body differs");
}

#[test]
fn http1_streams_bodies_both_ways() {
    let _dog = Watchdog::new("http1_streams_bodies_both_ways", LIMIT);
    evloop::run(async {
        let token = Rc::new(());
        let (server, port) = start(&token).await;
        let mut client = compat::connect_http1("127.0.0.1", port).await.unwrap();
        for _ in 0..3 {
            let req = Request::post("/echo").header("host", "localhost").body(streamed(chunks())).unwrap();
            let resp = client.send_request(req).await.unwrap();
            // Chunked both ways: neither side knew the length up front.
            assert!(resp.headers().get("content-length").is_none());
            check_echo(body_of(resp).await);
        }
        server.close();
    })
    .unwrap();
}

#[test]
fn http2_streams_bodies_both_ways() {
    let _dog = Watchdog::new("http2_streams_bodies_both_ways", LIMIT);
    evloop::run(async {
        let token = Rc::new(());
        let (server, port) = start(&token).await;
        let client = compat::connect_http2("127.0.0.1", port).await.unwrap();
        let echoes: Vec<_> = (0..4)
            .map(|_| {
                let mut client = client.clone();
                evloop::spawn(async move {
                    let req = Request::post("http://localhost/echo").body(streamed(chunks())).unwrap();
                    body_of(client.send_request(req).await.unwrap()).await
                })
            })
            .collect();
        for echo in echoes {
            check_echo(echo.await.unwrap());
        }
        server.close();
    })
    .unwrap();
}

#[test]
fn closed_connections_free_their_server_side() {
    let _dog = Watchdog::new("closed_connections_free_their_server_side", LIMIT);
    evloop::run(async {
        let token = Rc::new(());
        let (server, port) = start(&token).await;
        // Dropping the last service clone is dropping the connection's
        // future, and with it its stream (which closes the socket).
        assert_eq!(Rc::strong_count(&token), 2, "the server's handler holds one service");
        let mut h1 = compat::connect_http1::<Empty<Bytes>>("127.0.0.1", port).await.unwrap();
        let mut h2 = compat::connect_http2::<Empty<Bytes>>("127.0.0.1", port).await.unwrap();
        body_of(h1.send_request(get("/")).await.unwrap()).await;
        body_of(h2.send_request(get("http://localhost/")).await.unwrap()).await;
        assert_eq!(Rc::strong_count(&token), 4, "one service per open connection");
        drop(h1);
        drop(h2);
        until("both connections to be freed", || Rc::strong_count(&token) == 2).await;
        server.close();
        server.wait_closed().await.unwrap();
        drop(server);
        until("the server's handler to be freed", || Rc::strong_count(&token) == 1).await;
    })
    .unwrap();
}

/// Sends half a request head to a server made by `handler` on an
/// autojump loop (loop time leaps to the next timer whenever the loop
/// would otherwise wait); returns what came back and the loop time until
/// the server closed the connection.
fn half_a_head_against<H, F>(handler: impl FnOnce() -> H) -> (Vec<u8>, Duration, Duration)
where
    H: Fn(evloop::StreamReader, evloop::StreamWriter) -> F + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    let lp = EventLoop::builder().autojump(Duration::from_millis(20)).build().unwrap();
    let start = lp.time();
    let handler = handler();
    let (reply, elapsed) = lp
        .run_until_complete(async move {
            use futures_util::io::{AsyncReadExt, AsyncWriteExt};
            let server = evloop::start_server(handler, "127.0.0.1", 0, Default::default()).await.unwrap();
            let port = server.local_addr().unwrap().port();
            let mut stream = evloop::open_stream("127.0.0.1", port, Default::default()).await.unwrap();
            let lp = evloop::get_running_loop().unwrap();
            let sent = lp.time();
            stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await.unwrap();
            let elapsed = lp.time() - sent;
            server.close();
            (reply, elapsed)
        })
        .unwrap();
    let total = lp.time() - start;
    (reply, elapsed, total)
}

#[test]
fn header_read_timeout_runs_on_the_loop_clock() {
    let _dog = Watchdog::new("header_read_timeout_runs_on_the_loop_clock", LIMIT);
    let (reply, elapsed, total) = half_a_head_against(|| {
        let mut builder = compat::builder();
        builder.http1().header_read_timeout(Duration::from_secs(10));
        compat::hyper_handler_with(builder, app(Rc::new(())))
    });
    // hyper closes the connection without a response.
    assert!(reply.is_empty(), "{reply:?}");
    assert!(elapsed >= Duration::from_secs(10), "closed after {elapsed:?} of loop time");
    assert!(total < Duration::from_secs(20), "closed after {total:?} of loop time");
}

/// `compat::builder`'s defaults (what `hyper_handler` and `tower_handler`
/// use) include hyper's 30 s header-read timeout, on the loop's timer.
#[test]
fn the_default_handlers_time_out_a_header_after_30_s() {
    let _dog = Watchdog::new("the_default_handlers_time_out_a_header_after_30_s", LIMIT);
    let (reply, elapsed, total) = half_a_head_against(|| compat::hyper_handler(app(Rc::new(()))));
    assert!(reply.is_empty(), "{reply:?}");
    assert!(elapsed >= Duration::from_secs(30), "closed after {elapsed:?} of loop time");
    assert!(total < Duration::from_secs(60), "closed after {total:?} of loop time");
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
    let (reply, elapsed, _) = half_a_head_against(move || compat::tower_handler(app));
    assert!(reply.is_empty() && elapsed >= Duration::from_secs(30), "{reply:?} after {elapsed:?}");
}

#[test]
fn axum_route_awaits_the_loop_sleep() {
    use axum::routing::get as route;
    let _dog = Watchdog::new("axum_route_awaits_the_loop_sleep", LIMIT);
    let lp = EventLoop::builder().autojump(Duration::from_millis(20)).build().unwrap();
    let order = Rc::new(Cell::new(Vec::<&str>::new()));
    let (slow_at, fast_at) = lp
        .run_until_complete({
            let order = order.clone();
            async move {
                let app = axum::Router::new()
                    .route(
                        "/slow",
                        route(|| async {
                            // A Send future awaiting the loop's timer: an hour.
                            compat::sleep(Duration::from_secs(3600)).await;
                            "slept"
                        }),
                    )
                    .route("/fast", route(|| async { "fast" }));
                let server =
                    evloop::start_server(compat::tower_handler(app), "127.0.0.1", 0, Default::default())
                        .await
                        .unwrap();
                let port = server.local_addr().unwrap().port();
                let lp = evloop::get_running_loop().unwrap();
                let t0 = lp.time();
                let fetch = |path: &'static str| {
                    let order = order.clone();
                    let lp = lp.clone();
                    evloop::spawn(async move {
                        let mut c = compat::connect_http1::<Empty<Bytes>>("127.0.0.1", port).await.unwrap();
                        let body = body_of(c.send_request(get(path)).await.unwrap()).await;
                        let mut seen = order.take();
                        seen.push(if body == "slept" { "slow" } else { "fast" });
                        order.set(seen);
                        lp.time() - t0
                    })
                };
                let slow = fetch("/slow");
                let fast = fetch("/fast");
                let (slow_at, fast_at) = (slow.await.unwrap(), fast.await.unwrap());
                server.close();
                (slow_at, fast_at)
            }
        })
        .unwrap();
    assert_eq!(order.take(), ["fast", "slow"]);
    assert!(slow_at >= Duration::from_secs(3600), "slow answered after {slow_at:?}");
    assert!(fast_at < Duration::from_secs(1), "fast answered after {fast_at:?}");
}

#[test]
fn websocket_echoes_a_1_mib_message() {
    use async_tungstenite::tungstenite::Message;
    let _dog = Watchdog::new("websocket_echoes_a_1_mib_message", LIMIT);
    evloop::run(async {
        let server = evloop::start_server(
            evloop::net::stream::duplex_handler(|stream| async move {
                let mut ws = async_tungstenite::accept_async(stream).await.unwrap();
                while let Some(msg) = ws.next().await {
                    let msg = msg.unwrap();
                    if msg.is_close() {
                        break;
                    }
                    ws.send(msg).await.unwrap();
                }
            }),
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let stream = evloop::open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut ws, _) = async_tungstenite::client_async("ws://localhost/", stream).await.unwrap();
        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(big.clone())).await.unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(got) => assert!(got == big, "echo differs"),
            other => panic!("unexpected {other:?}"),
        }
        ws.close(None).await.unwrap();
        server.close();
    })
    .unwrap();
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast::<String>()
        .map(|s| *s)
        .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

const OFF_THREAD: &str = "evloop::compat::SendSleep used on a thread other than the one that created it";

#[test]
fn send_sleep_polled_on_another_thread_panics() {
    let sleep = compat::sleep(Duration::from_secs(1));
    assert!(sleep.is_owner_thread());
    let payload = thread::spawn(move || {
        let mut sleep = sleep;
        assert!(!sleep.is_owner_thread());
        assert_eq!(format!("{sleep:?}"), "SendSleep(<other thread>)");
        let _ = Pin::new(&mut sleep).poll(&mut Context::from_waker(Waker::noop()));
    })
    .join()
    .expect_err("polling off its thread must panic");
    assert!(panic_text(payload).starts_with(OFF_THREAD));
}

#[test]
fn send_sleep_reset_on_another_thread_panics() {
    let sleep = compat::sleep(Duration::from_secs(1));
    let payload = thread::spawn(move || {
        let mut sleep = sleep;
        Pin::new(&mut sleep).reset(std::time::Instant::now());
    })
    .join()
    .expect_err("reset off its thread must panic");
    assert!(panic_text(payload).starts_with(OFF_THREAD));
}

#[test]
fn send_sleep_moved_away_and_back_still_works() {
    let lp = util::manual_loop();
    let sleep = compat::sleep(Duration::from_secs(5));
    // Moving is allowed (that is what `Send` is for); touching is not.
    let sleep = thread::spawn(move || sleep).join().unwrap();
    let done = Rc::new(Cell::new(false));
    let flag = done.clone();
    let task = lp.create_task(async move {
        sleep.await;
        flag.set(true);
    });
    lp.run_until_idle().unwrap();
    assert!(!done.get());
    lp.advance_time(Duration::from_secs(5));
    lp.run_until_idle().unwrap();
    assert!(done.get() && task.done());
}

#[test]
fn timer_reset_moves_the_deadline() {
    use hyper::rt::Timer;
    let lp = util::manual_loop();
    let done = Rc::new(Cell::new(false));
    let flag = done.clone();
    let start = lp.time();
    lp.create_task(async move {
        let timer = compat::LoopTimer;
        assert_eq!(timer.now(), evloop::get_running_loop().unwrap().time());
        let mut sleep = timer.sleep(Duration::from_secs(10));
        // Polled once (timer scheduled), then moved later.
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        timer.reset(&mut sleep, start + Duration::from_secs(20));
        assert!(sleep.is::<compat::SendSleep>(), "reset in place, not replaced");
        sleep.await;
        flag.set(true);
    });
    lp.run_until_idle().unwrap();
    lp.advance_time(Duration::from_secs(10));
    lp.run_until_idle().unwrap();
    assert!(!done.get(), "the first deadline no longer applies");
    lp.advance_time(Duration::from_secs(10));
    lp.run_until_idle().unwrap();
    assert!(done.get());
}

#[test]
fn executor_runs_non_send_futures_on_the_loop() {
    use hyper::rt::Executor;
    let lp = util::manual_loop();
    let ran = Rc::new(Cell::new(0));
    let count = ran.clone();
    lp.create_task(async move {
        for _ in 0..3 {
            let count = count.clone(); // an Rc: not Send
            compat::LoopExecutor.execute(async move { count.set(count.get() + 1) });
        }
    });
    lp.run_until_idle().unwrap();
    assert_eq!(ran.get(), 3);
}

/// The README's bridge: tokio-only code (here tokio's timer, which panics
/// outside a tokio runtime) runs on a tokio runtime on another thread; the
/// loop awaits its `JoinHandle` (a `Send` future woken from that thread),
/// and tokio tasks reach back into the loop with
/// `RemoteLoop::run_coroutine_threadsafe`.
#[test]
fn bridge_to_a_tokio_runtime_on_another_thread() {
    let _dog = Watchdog::new("bridge_to_a_tokio_runtime_on_another_thread", LIMIT);
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let tokio_thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        handle_tx.send(rt.handle().clone()).unwrap();
        rt.block_on(stop_rx).unwrap();
    });
    let tokio = handle_rx.recv().unwrap();
    let loop_thread = thread::current().id();
    let (from_tokio, from_loop) = evloop::run(async move {
        // Loop → tokio: spawn there, await the JoinHandle here.
        let from_tokio = tokio
            .spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_ne!(thread::current().id(), loop_thread);
                "tokio's timer"
            })
            .await
            .unwrap();
        // tokio → loop: a tokio task submits a coroutine to the loop.
        let remote = evloop::get_running_loop().unwrap().remote();
        let from_loop = tokio
            .spawn(async move {
                let on_loop = remote
                    .run_coroutine_threadsafe(move || async move {
                        assert_eq!(thread::current().id(), loop_thread);
                        evloop::sleep(Duration::from_millis(1)).await;
                        "the loop's timer"
                    })
                    .unwrap();
                on_loop.await.unwrap()
            })
            .await
            .unwrap();
        (from_tokio, from_loop)
    })
    .unwrap();
    assert_eq!((from_tokio, from_loop), ("tokio's timer", "the loop's timer"));
    stop_tx.send(()).unwrap();
    tokio_thread.join().unwrap();
}

//! Run with: cargo run --example ws_echo --features hyper
//!
//! A WebSocket echo server on async-tungstenite's futures-io support (no
//! tokio), over evloop's [`DuplexStream`](evloop::DuplexStream): every
//! text or binary message comes back as sent. (hyper's own upgrade path is
//! not used: hyper requires `Send` I/O for upgrades.)
//!
//! `cargo run --example ws_echo --features hyper -- [PORT]` serves until
//! killed (default 9001) at `ws://127.0.0.1:9001/`. With `--demo` a client
//! on the same loop sends a text message and a 1 MiB binary one, checks
//! the echoes, closes and exits 0 (what CI runs). Built with the `hyper`
//! feature only so that it builds with the other ecosystem examples; it
//! uses nothing of `evloop::compat`.

use async_tungstenite::tungstenite::Message;
use evloop::DuplexStream;
use evloop::net::stream::duplex_handler;
use futures_util::StreamExt;

async fn echo(stream: DuplexStream) {
    let peer = stream.peer_addr();
    let mut ws = match async_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => return eprintln!("{peer:?}: handshake failed: {e}"),
    };
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(msg) if msg.is_text() || msg.is_binary() => {
                if let Err(e) = ws.send(msg).await {
                    return eprintln!("{peer:?}: {e}");
                }
            }
            // Pings are answered and closes completed by tungstenite itself.
            Ok(_) => {}
            Err(e) => return eprintln!("{peer:?}: {e}"),
        }
    }
}

async fn demo(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let stream = evloop::open_stream("127.0.0.1", port, Default::default()).await?;
    let (mut ws, _) = async_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), stream).await?;
    ws.send(Message::text("hello")).await?;
    assert_eq!(ws.next().await.ok_or("closed")??, Message::text("hello"));
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await?;
    match ws.next().await.ok_or("closed")?? {
        Message::Binary(got) => assert!(got == big, "1 MiB echo differs"),
        other => panic!("unexpected {other:?}"),
    }
    ws.close(None).await?;
    println!("demo: text and 1 MiB binary messages echoed");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo_mode = args.iter().any(|a| a == "--demo");
    let port = match args.iter().find(|a| !a.starts_with("--")) {
        Some(p) => p.parse()?,
        None if demo_mode => 0,
        None => 9001,
    };
    evloop::run(async move {
        let server =
            evloop::start_server(duplex_handler(echo), "127.0.0.1", port, Default::default()).await?;
        let port = server.local_addr().expect("bound").port();
        if demo_mode {
            demo(port).await?;
            server.close();
            return Ok(());
        }
        println!("serving on ws://127.0.0.1:{port}/");
        server.serve_forever().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?
}

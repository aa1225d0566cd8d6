//! Run with: cargo run --example streams_client
//!
//! A line-based TCP client on the streams API (asyncio's "TCP echo client
//! using streams"): `open_connection` gives a `StreamReader` and a
//! `StreamWriter`; the client writes a line, awaits `drain()`, reads the
//! reply with `readline()`, and so on; at the end it closes the writer and
//! awaits `wait_closed()`.
//!
//! By default it talks to a server it starts itself on a free port, which
//! answers every line in upper case and says `BYE` and closes on `quit`.
//! Options:
//!
//! - `--connect HOST:PORT`: talk to another server instead, any that
//!   answers line for line, e.g. `cargo run --example echo_streams --
//!   --serve` and then `cargo run --example streams_client -- --connect
//!   127.0.0.1:8888`;
//! - any other arguments are the lines to send (default: `hello`,
//!   `how are you?`, `quit`).

use evloop::{StreamReader, StreamWriter};

/// The demo server: each line back in upper case, until `quit`.
async fn shout_back(mut reader: StreamReader, writer: StreamWriter) {
    loop {
        let line = match reader.readline().await {
            Ok(line) if !line.is_empty() => line,
            _ => break, // EOF or an error: the client is gone.
        };
        if line.trim_ascii() == b"quit" {
            writer.write(b"BYE\n").ok();
            break;
        }
        if writer.write(&line.to_ascii_uppercase()).is_err() || writer.drain().await.is_err() {
            break;
        }
    }
    writer.close();
    let _ = writer.wait_closed().await;
}

/// Sends each line and prints the reply; stops early if the server closes.
async fn talk(host: &str, port: u16, lines: &[String]) -> evloop::Result<()> {
    let (mut reader, writer) = evloop::open_connection(host, port, Default::default()).await?;
    let peer = writer.peer_addr().map_or_else(|| format!("{host}:{port}"), |a| a.to_string());
    println!("connected to {peer}");
    for line in lines {
        println!("> {line}");
        writer.write(format!("{line}\n").as_bytes())?;
        writer.drain().await?;
        let reply = reader.readline().await?;
        if reply.is_empty() {
            println!("(the server closed the connection)");
            break;
        }
        println!("< {}", String::from_utf8_lossy(&reply).trim_end());
    }
    writer.close();
    writer.wait_closed().await?;
    println!("connection closed");
    Ok(())
}

/// Splits `HOST:PORT` (`[::1]:8888` for IPv6).
fn parse_target(target: &str) -> Result<(String, u16), String> {
    let (host, port) =
        target.rsplit_once(':').ok_or_else(|| format!("expected HOST:PORT, got {target:?}"))?;
    let port = port.parse().map_err(|_| format!("bad port in {target:?}"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut target = None;
    let mut lines = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connect" => target = Some(parse_target(&args.next().ok_or("--connect needs HOST:PORT")?)?),
            _ => lines.push(arg),
        }
    }
    if lines.is_empty() {
        lines = ["hello", "how are you?", "quit"].map(String::from).to_vec();
    }

    evloop::run(async move {
        if let Some((host, port)) = target {
            return talk(&host, port, &lines).await;
        }
        let server = evloop::start_server(shout_back, "127.0.0.1", 0, Default::default()).await?;
        let port = server.local_addr().expect("a TCP server has an address").port();
        println!("(demo server listening on 127.0.0.1:{port})");
        let outcome = talk("127.0.0.1", port, &lines).await;
        server.close();
        server.wait_closed().await?;
        outcome
    })??;
    Ok(())
}

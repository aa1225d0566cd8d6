//! Run with: cargo run --example echo_streams
//!
//! The asyncio documentation's streams echo server: `start_server` runs
//! `handle_connection(reader, writer)` as a new task for each client. The
//! handler reads up to 100 bytes at a time, prints what it received and from
//! whom, writes it back and awaits `drain()` (flow control); it stops at
//! `quit\n` or when the client goes away, then closes the writer and awaits
//! `wait_closed()`.
//!
//! By default the example runs a demo on a free port: 20 clients (tasks
//! using `open_connection`) connect at once, each sends a few lines, checks
//! every echo, sends `quit\n` and waits for the server to close the
//! connection; then the server closes and the program exits. Options:
//!
//! - `--clients N`: the number of demo clients (default 20);
//! - `--serve [PORT]`: serve forever (default port 8888), e.g. try
//!   `nc 127.0.0.1 8888`, or `cargo run --example streams_client --
//!   --connect 127.0.0.1:8888`.

use std::time::Instant;

use evloop::{Error, StreamReader, StreamWriter};

const LINES_PER_CLIENT: usize = 3;

async fn handle_connection(mut reader: StreamReader, writer: StreamWriter) {
    let peer = writer.peer_addr().map_or_else(|| "?".to_owned(), |a| a.to_string());
    loop {
        let data = match reader.read(100).await {
            Ok(data) if data.is_empty() => break, // EOF: the client left.
            Ok(data) => data,
            Err(e) => {
                println!("[server] read from {peer} failed: {e}");
                break;
            }
        };
        println!("[server] received {:?} from {peer}", String::from_utf8_lossy(&data));
        // `drain` waits only when the client is slow to read its echoes.
        if writer.write(&data).is_err() || writer.drain().await.is_err() {
            break;
        }
        // The demo clients wait for each echo before sending more, so a
        // read never holds more than one of their lines.
        if data == b"quit\n" {
            break;
        }
    }
    println!("[server] closing the connection to {peer}");
    writer.close();
    if let Err(e) = writer.wait_closed().await {
        println!("[server] {peer} closed with an error: {e}");
    }
}

/// A demo client: sends its lines, checks each echo, then quits.
async fn client(id: usize, port: u16) -> evloop::Result<()> {
    let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
    let lines = (0..LINES_PER_CLIENT).map(|n| format!("hello {n} from client {id}\n"));
    for line in lines.chain(["quit\n".to_owned()]) {
        writer.write(line.as_bytes())?;
        writer.drain().await?;
        let echo = reader.readline().await?;
        if echo != line.as_bytes() {
            let got = String::from_utf8_lossy(&echo);
            return Err(std::io::Error::other(format!("client {id}: sent {line:?}, got {got:?}")).into());
        }
    }
    // After `quit` the server closes its side: we read EOF.
    let rest = reader.read_to_end().await?;
    if !rest.is_empty() {
        return Err(std::io::Error::other(format!("client {id}: unexpected {rest:?} after quit")).into());
    }
    writer.close();
    writer.wait_closed().await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = 0;
    let mut clients = 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve" => {
                serve_forever = true;
                port = 8888;
            }
            "--clients" => clients = args.next().ok_or("--clients needs a number")?.parse()?,
            other if serve_forever => port = other.parse().map_err(|_| format!("bad port {other:?}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    evloop::run(async move {
        let server = evloop::start_server(handle_connection, "127.0.0.1", port, Default::default()).await?;
        let addr = server.local_addr().expect("a TCP server has an address");
        println!("[server] serving on {addr}");
        if serve_forever {
            return server.serve_forever().await;
        }

        let start = Instant::now();
        let outcomes = evloop::gather_results((0..clients).map(|id| client(id, addr.port()))).await;
        let mut failed = 0;
        for (id, outcome) in outcomes.into_iter().enumerate() {
            // A client's own error, a panic or a cancellation.
            if let Err(e) = outcome {
                failed += 1;
                println!("[demo] client {id} failed: {e}");
            }
        }
        server.close();
        server.wait_closed().await?;
        println!(
            "[demo] {} of {clients} clients got all {} echoes back, in {:.1} ms",
            clients - failed,
            LINES_PER_CLIENT + 1,
            start.elapsed().as_secs_f64() * 1000.0
        );
        if failed > 0 {
            return Err(std::io::Error::other(format!("{failed} clients failed")).into());
        }
        Ok::<_, Error>(())
    })??;
    Ok(())
}

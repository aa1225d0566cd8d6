//! Run with: cargo run --example echo_protocol
//!
//! A TCP echo server written as a [`Protocol`], asyncio's "TCP echo server
//! protocol": `connection_made` keeps the transport, `data_received` writes
//! the bytes back, `connection_lost` reports the disconnection. The clients
//! are protocols too, started with `create_connection` on the same loop:
//! each sends its messages one at a time and checks every echo.
//!
//! By default the example runs a self-contained demo on a free port: 10
//! clients connect at once, send 5 messages each, then close; the server
//! closes when they are gone and the program exits. Options:
//!
//! - `--serve` to serve forever instead (default port 8888), then try
//!   `nc 127.0.0.1 8888` in another terminal;
//! - a port number, e.g. `cargo run --example echo_protocol -- --serve 9000`.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use evloop::net::{Protocol, Transport};
use evloop::{Error, EventLoop};

const CLIENTS: usize = 10;
const MESSAGES_PER_CLIENT: usize = 5;

/// What the server counts, shared by its connections (loop thread only).
#[derive(Default)]
struct Counters {
    connections: Cell<usize>,
    bytes_echoed: Cell<usize>,
}

/// The server side of one connection.
struct EchoServer {
    transport: Option<Transport>,
    peer: String,
    counters: Rc<Counters>,
}

impl Protocol for EchoServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.peer = transport.peer_addr().map_or_else(|| "?".to_owned(), |a| a.to_string());
        self.counters.connections.set(self.counters.connections.get() + 1);
        println!("[server] connection from {}", self.peer);
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        let Some(transport) = &self.transport else { return };
        // A write error (the peer is gone) reaches connection_lost.
        if transport.write(data).is_ok() {
            self.counters.bytes_echoed.set(self.counters.bytes_echoed.get() + data.len());
        }
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        match error {
            None => println!("[server] {} disconnected", self.peer),
            Some(e) => println!("[server] {} lost: {e}", self.peer),
        }
    }
}

/// A demo client: sends its messages one by one, waiting for each echo,
/// then closes. `done` gets the number of echoes checked, or the error.
struct EchoClient {
    id: usize,
    transport: Option<Transport>,
    to_send: VecDeque<Vec<u8>>,
    expected: Vec<u8>,
    received: Vec<u8>,
    echoes: usize,
    done: evloop::Future<usize>,
}

impl EchoClient {
    fn new(id: usize, done: evloop::Future<usize>) -> EchoClient {
        let to_send = (0..MESSAGES_PER_CLIENT)
            .map(|n| format!("client {id}, message {n}: {}\n", "*".repeat(id + n)).into_bytes())
            .collect();
        EchoClient {
            id,
            transport: None,
            to_send,
            expected: Vec::new(),
            received: Vec::new(),
            echoes: 0,
            done,
        }
    }

    fn send_next(&mut self) {
        let Some(transport) = &self.transport else { return };
        match self.to_send.pop_front() {
            Some(message) => {
                // The next message goes out only after the previous echo,
                // so `expected` is exactly what the server owes us.
                transport.write(&message).ok();
                self.expected = message;
            }
            None => transport.close(),
        }
    }

    fn fail(&mut self, message: String) {
        let _ = self.done.set_exception(io::Error::other(message));
        if let Some(transport) = &self.transport {
            transport.abort();
        }
    }
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        self.send_next();
    }

    fn data_received(&mut self, data: &[u8]) {
        self.received.extend_from_slice(data);
        // TCP may split or merge segments: compare once all of it is here.
        if self.received.len() < self.expected.len() {
            return;
        }
        if self.received != self.expected {
            let got = String::from_utf8_lossy(&self.received).into_owned();
            let want = String::from_utf8_lossy(&self.expected).into_owned();
            return self.fail(format!("client {}: expected {want:?}, got {got:?}", self.id));
        }
        self.echoes += 1;
        self.received.clear();
        self.send_next();
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        // If data_received already failed `done`, these calls fail and
        // that first error stays.
        let _ = match error {
            Some(e) => self.done.set_exception(e),
            None if self.echoes < MESSAGES_PER_CLIENT => self.done.set_exception(io::Error::other(format!(
                "client {}: the server closed after {} echoes",
                self.id, self.echoes
            ))),
            None => self.done.set_result(self.echoes),
        };
    }
}

/// Connects one client and waits until it has checked all its echoes.
async fn run_client(lp: EventLoop, id: usize, port: u16) -> evloop::Result<usize> {
    let done = lp.create_future();
    let client_done = done.clone();
    lp.create_connection(move || EchoClient::new(id, client_done), "127.0.0.1", port, Default::default())
        .await?;
    done.await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => serve_forever = true,
            other => port = Some(other.parse().map_err(|_| format!("unknown argument {other:?}"))?),
        }
    }
    let port: u16 = port.unwrap_or(if serve_forever { 8888 } else { 0 });

    let lp = EventLoop::new()?;
    let counters = Rc::new(Counters::default());
    let l = lp.clone();
    let server_counters = counters.clone();
    let outcome = lp.run_until_complete(async move {
        let factory =
            move || EchoServer { transport: None, peer: String::new(), counters: server_counters.clone() };
        let server = l.create_server(factory, "127.0.0.1", port, Default::default()).await?;
        let addr = server.local_addr().expect("a TCP server has an address");
        println!("[server] echo server listening on {addr}");
        if serve_forever {
            return server.serve_forever().await.map(|()| Vec::new());
        }

        let start = Instant::now();
        let clients = (0..CLIENTS).map(|id| run_client(l.clone(), id, addr.port()));
        let results = evloop::gather_results(clients).await;
        println!("[demo] {CLIENTS} clients finished in {:.1} ms", start.elapsed().as_secs_f64() * 1000.0);
        // Stop listening, then wait until every accepted connection has
        // gone through connection_lost.
        server.close();
        server.wait_closed().await?;
        Ok::<_, Error>(results)
    })??;

    if serve_forever {
        return Ok(());
    }
    let mut failed = 0;
    for (id, result) in outcome.iter().enumerate() {
        match result {
            Ok(n) => println!("[demo] client {id}: {n} echoes checked"),
            Err(e) => {
                failed += 1;
                println!("[demo] client {id} failed: {e}");
            }
        }
    }
    println!(
        "[demo] server saw {} connections and echoed {} bytes; {} of {CLIENTS} clients ok",
        counters.connections.get(),
        counters.bytes_echoed.get(),
        CLIENTS - failed
    );
    lp.close()?;
    if failed > 0 {
        return Err(format!("{failed} clients failed").into());
    }
    Ok(())
}

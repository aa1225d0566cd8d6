//! Run with: cargo run --example concurrent_requests
//!
//! Why an event loop pays off for I/O-bound work: ten requests to a slow
//! server, made one after another and then all at once.
//!
//! The example starts its own slow TCP server on the loop. Each client
//! connection sends one line, `request`, and the server answers `response`
//! after a random delay; a timer per request (`call_later`) does the
//! waiting, so the server keeps serving other connections meanwhile. The
//! clients are tasks using the low-level `sock_connect` / `sock_sendall` /
//! `sock_recv` methods on nonblocking sockets.
//!
//! - Sequential: each request is awaited before the next starts, so the
//!   wall time is about the sum of the server's delays.
//! - Concurrent: `evloop::gather` runs the ten requests as ten tasks, so the
//!   wall time is about the longest single delay.
//!
//! Options:
//!
//! - `--article`: delays of 500–2000 ms instead of 50–200 ms, as in the
//!   article this reproduces (the sequential run then takes ~12 s);
//! - `--seed N`: seed of the random delays (default: from the clock).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::net::{Domain, Protocol, Socket, Transport, Type};
use evloop::{Error, EventLoop};

const REQUESTS: usize = 10;

/// A tiny linear congruential generator (Knuth's MMIX constants): plenty
/// for picking delays, and no extra crate.
struct Lcg(u64);

impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// A duration uniformly in `[low, high]`, to the millisecond.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (low.as_millis() as u32, high.as_millis() as u32);
        Duration::from_millis(u64::from(low + self.next_u32() % (high - low + 1)))
    }
}

/// State shared by the server's connections.
struct SlowServer {
    lp: EventLoop,
    rng: RefCell<Lcg>,
    delays: (Duration, Duration),
    /// Every delay the server chose, for comparing with the wall times.
    chosen: RefCell<Vec<Duration>>,
    /// Requests being handled right now, and the most at any one time.
    in_flight: Cell<usize>,
    most_in_flight: Cell<usize>,
}

/// One server connection: answers each `request` line after a delay.
struct SlowConnection {
    server: Rc<SlowServer>,
    transport: Option<Transport>,
    pending: Vec<u8>,
}

impl Protocol for SlowConnection {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let Some(transport) = self.transport.clone() else { return };
            if line != b"request\n" {
                transport.write(b"error: unknown request\n").ok();
                continue;
            }
            let server = &self.server;
            let delay = server.rng.borrow_mut().between(server.delays.0, server.delays.1);
            server.chosen.borrow_mut().push(delay);
            server.in_flight.set(server.in_flight.get() + 1);
            server.most_in_flight.set(server.most_in_flight.get().max(server.in_flight.get()));
            // The "slow work": a timer, so the loop is free meanwhile.
            let server = server.clone();
            self.server.lp.call_later(delay, move || {
                server.in_flight.set(server.in_flight.get() - 1);
                if !transport.is_closing() {
                    transport.write(b"response\n").ok();
                }
            });
        }
    }
}

/// One request on its own connection, with the `sock_*` methods.
async fn request(lp: EventLoop, addr: SocketAddr) -> evloop::Result<String> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking().cloexec(), None)?;
    lp.sock_connect(&socket, &addr.into()).await?;
    lp.sock_sendall(&socket, b"request\n").await?;
    let mut reply = Vec::new();
    while !reply.ends_with(b"\n") {
        let chunk = lp.sock_recv(&socket, 64).await?;
        if chunk.is_empty() {
            break; // The server closed early; return what there is.
        }
        reply.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    // Dropping the socket closes the connection.
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The sum and the maximum of the delays the server chose since `from`.
fn delays_since(server: &SlowServer, from: usize) -> (Duration, Duration) {
    let chosen = server.chosen.borrow();
    let delays = &chosen[from..];
    (delays.iter().sum(), delays.iter().copied().max().unwrap_or_default())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut delays = (Duration::from_millis(50), Duration::from_millis(200));
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--article" => delays = (Duration::from_millis(500), Duration::from_millis(2000)),
            "--seed" => seed = Some(args.next().ok_or("--seed needs a number")?.parse::<u64>()?),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.map_or(1, |d| d.as_nanos() as u64)
    });

    let lp = EventLoop::new()?;
    let server_state = Rc::new(SlowServer {
        lp: lp.clone(),
        rng: RefCell::new(Lcg(seed)),
        delays,
        chosen: RefCell::new(Vec::new()),
        in_flight: Cell::new(0),
        most_in_flight: Cell::new(0),
    });
    let l = lp.clone();
    let state = server_state.clone();
    lp.run_until_complete(async move {
        let factory_state = state.clone();
        let factory =
            move || SlowConnection { server: factory_state.clone(), transport: None, pending: Vec::new() };
        let server = l.create_server(factory, "127.0.0.1", 0, Default::default()).await?;
        let addr = server.local_addr().expect("a TCP server has an address");
        println!(
            "slow server on {addr}: answers each request after {}–{} (seed {seed})",
            ms(state.delays.0),
            ms(state.delays.1)
        );

        println!("\n{REQUESTS} requests, one after another:");
        let start = Instant::now();
        for i in 0..REQUESTS {
            let sent = Instant::now();
            let reply = request(l.clone(), addr).await?;
            println!("  request {i}: {reply:?} after {}", ms(sent.elapsed()));
        }
        let sequential = start.elapsed();
        let (sum, _) = delays_since(&state, 0);
        println!("  wall time {} (sum of the server's delays: {})", ms(sequential), ms(sum));

        println!("\n{REQUESTS} requests at once, with gather:");
        let before = state.chosen.borrow().len();
        state.most_in_flight.set(0);
        let start = Instant::now();
        let replies = evloop::gather((0..REQUESTS).map(|_| {
            let l = l.clone();
            async move {
                let sent = Instant::now();
                request(l, addr).await.map(|reply| (reply, sent.elapsed()))
            }
        }))
        .await?;
        let concurrent = start.elapsed();
        for (i, (reply, took)) in replies.into_iter().enumerate() {
            println!("  request {i}: {reply:?} after {}", ms(took));
        }
        let (_, longest) = delays_since(&state, before);
        println!(
            "  wall time {} (longest server delay: {}; {} requests were in flight at once)",
            ms(concurrent),
            ms(longest),
            state.most_in_flight.get()
        );

        println!(
            "\nconcurrent was {:.1}x faster: the loop waits for all ten replies at the same time",
            sequential.as_secs_f64() / concurrent.as_secs_f64()
        );
        server.close();
        Ok::<_, Error>(())
    })??;
    lp.close()?;
    Ok(())
}

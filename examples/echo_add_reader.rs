//! Run with: cargo run --example echo_add_reader
//!
//! A TCP echo server driven only by `add_reader`, the lowest level of I/O
//! the loop offers. The listening socket's reader accepts connections; each
//! connection gets its own reader that echoes what arrives and, at end of
//! file, removes itself and drops (closes) the stream.
//!
//! By default the example runs a self-contained demo: 20 client threads
//! connect, send a few lines each, check the echo and disconnect; each
//! reports back to the loop with `call_soon_threadsafe`, and the loop stops
//! when all have finished. Options:
//!
//! - a port number (default 0: any free port), e.g.
//!   `cargo run --example echo_add_reader -- 8888`
//! - `--serve` to serve forever instead of running the demo clients, e.g.
//!   `cargo run --example echo_add_reader -- --serve 8888` and then
//!   `nc 127.0.0.1 8888` in another terminal.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use evloop::EventLoop;

const CLIENTS: usize = 20;
const MESSAGES_PER_CLIENT: usize = 5;

/// Per-server counters, only touched on the loop thread.
#[derive(Default)]
struct Counters {
    accepted: Cell<usize>,
    open: Cell<usize>,
    bytes_echoed: Cell<usize>,
}

/// The listener's reader: accepts every pending connection.
fn on_listener_readable(lp: &EventLoop, listener: &TcpListener, counters: &Rc<Counters>) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = serve_connection(lp, stream, peer, counters) {
                    eprintln!("cannot serve {peer}: {e}");
                }
            }
            // Level-triggered: anything left is reported again next pass.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("accept failed: {e}");
                return;
            }
        }
    }
}

/// Registers a reader that echoes everything `stream` receives.
fn serve_connection(
    lp: &EventLoop,
    stream: TcpStream,
    peer: SocketAddr,
    counters: &Rc<Counters>,
) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let fd = stream.as_raw_fd();
    counters.accepted.set(counters.accepted.get() + 1);
    counters.open.set(counters.open.get() + 1);

    let reader_loop = lp.clone();
    let counters = counters.clone();
    // The reader owns the stream; taking it out of the Option closes it.
    let mut stream = Some(stream);
    let mut buf = [0u8; 4096];
    lp.add_reader(fd, move || {
        let Some(conn) = stream.as_mut() else { return };
        let done = match conn.read(&mut buf) {
            Ok(0) => true, // end of file: the client is gone
            // Messages are small and each client reads its echo before
            // sending more, so the send buffer never fills here. A server
            // for arbitrary peers would keep what `write` could not send
            // and flush it from an `add_writer` callback.
            Ok(n) => match conn.write_all(&buf[..n]) {
                Ok(()) => {
                    counters.bytes_echoed.set(counters.bytes_echoed.get() + n);
                    false
                }
                Err(e) => {
                    eprintln!("{peer}: write failed: {e}");
                    true
                }
            },
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => false,
            Err(e) => {
                eprintln!("{peer}: read failed: {e}");
                true
            }
        };
        if done {
            // Remove the reader before the fd is closed, then close it.
            reader_loop.remove_reader(fd);
            drop(stream.take());
            counters.open.set(counters.open.get() - 1);
        }
    })
    .map_err(io::Error::other)
}

/// One demo client (runs on its own thread): connects, sends lines, checks
/// that each comes back unchanged, and disconnects.
fn run_client(addr: SocketAddr, id: usize) -> io::Result<()> {
    let stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    for n in 0..MESSAGES_PER_CLIENT {
        let line = format!("client {id} message {n}\n");
        writer.write_all(line.as_bytes())?;
        let mut echo = String::new();
        reader.read_line(&mut echo)?;
        if echo != line {
            return Err(io::Error::other(format!("expected {line:?}, got {echo:?}")));
        }
    }
    Ok(())
    // Dropping both halves closes the connection: the server sees EOF.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = 0u16;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => serve_forever = true,
            other => port = other.parse().map_err(|_| format!("unknown argument {other:?}"))?,
        }
    }

    let lp = EventLoop::new()?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let counters = Rc::new(Counters::default());
    {
        let lp2 = lp.clone();
        let counters = counters.clone();
        let listener_fd = listener.as_raw_fd();
        // `listener` moves into the reader and lives as long as it does.
        lp.add_reader(listener_fd, move || on_listener_readable(&lp2, &listener, &counters))?;
    }
    println!("echo server listening on {addr}");

    if serve_forever {
        lp.run_forever()?;
        return Ok(());
    }

    // Demo mode: clients on threads report back through the remote handle.
    let start = Instant::now();
    let finished = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for id in 0..CLIENTS {
        let remote = lp.remote();
        let finished = finished.clone();
        let failures = failures.clone();
        threads.push(std::thread::spawn(move || {
            let outcome = run_client(addr, id).map_err(|e| e.to_string());
            remote
                .call_soon_threadsafe(move || {
                    if let Err(e) = outcome {
                        failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("client {id} failed: {e}");
                    }
                    let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    if n == CLIENTS {
                        evloop::get_running_loop().expect("called on the loop").stop();
                    }
                })
                .expect("the loop is still open");
        }));
    }
    lp.run_forever()?;
    for thread in threads {
        thread.join().expect("client thread panicked");
    }

    // Let the server read the last EOFs (a client may report before its
    // FIN has been handled) so the summary shows every connection closed.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while counters.open.get() > 0 && Instant::now() < deadline {
        lp.run_once(Some(std::time::Duration::from_millis(10)))?;
    }

    let failed = failures.load(Ordering::SeqCst);
    println!(
        "{CLIENTS} clients x {MESSAGES_PER_CLIENT} messages: {} ok, {failed} failed, in {:.1} ms",
        CLIENTS - failed,
        start.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "server: {} connections accepted, {} still open, {} bytes echoed",
        counters.accepted.get(),
        counters.open.get(),
        counters.bytes_echoed.get()
    );
    lp.close()?;
    if failed > 0 {
        return Err(format!("{failed} clients failed").into());
    }
    Ok(())
}

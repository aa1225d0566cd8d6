//! Run with: cargo run --release --example multi_loop_http -- [--loops N] [--acceptor] [--serve PORT | --demo]
//!
//! Past one core: the HTTP hello server (`GET /` answers
//! `{"message": "Hello World"}`) on N event loops, one per thread, the way
//! uvicorn runs one worker per core. An `EventLoop` is single-threaded, so
//! a server that outgrows a core runs several; [`LoopGroup`] starts them,
//! runs the same setup on each (the setup closure is `Send`; the server,
//! protocols and tasks it makes stay on their loop), and shuts them all
//! down.
//!
//! - By default every loop has its own listening socket on the port
//!   (`SO_REUSEPORT`), and the kernel spreads the connections.
//! - `--acceptor`: one acceptor loop owns the listening socket and hands
//!   each accepted socket to the next loop, round robin.
//!
//! `--loops N` (default: the number of CPUs). `--serve PORT` (the default,
//! on 8080; 0 picks a free port) serves until SIGINT (Ctrl-C) or SIGTERM,
//! then stops every loop, closes the connections, and exits 0; it prints
//! `listening on ADDR` once every loop serves. `GET /loop` answers the
//! number of the loop that served it, e.g. try
//! `for i in 1 2 3 4; do curl http://127.0.0.1:8080/loop; echo; done` or
//! `wrk -t2 -c100 -d5s http://127.0.0.1:8080/`. `--demo` (what CI runs)
//! starts the loops on a free port, connects until more than one loop has
//! answered (or every loop, with `--acceptor`), checks the hello response,
//! shuts down and exits 0.
//!
//! The HTTP/1.1 handling is the small core of `examples/http_hello.rs`:
//! keep-alive, pipelining, 16 KiB request-head limit (431), 400 for a
//! malformed request or conflicting `Content-Length`, flow control. See
//! that example for the `Date` header and the idle timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use evloop::net::{LoopGroup, Protocol, ServerOptions, Transport, handoff_protocol};
use evloop::os::signal::{SIGINT, SIGTERM};

const BODY: &str = r#"{"message": "Hello World"}"#;
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// One HTTP/1.1 connection on loop `index`.
struct Http {
    index: usize,
    transport: Option<Transport>,
    buffer: Vec<u8>,
    /// Request body bytes still to skip.
    skip_body: usize,
}

impl Http {
    fn new(index: usize) -> Http {
        Http { index, transport: None, buffer: Vec::new(), skip_body: 0 }
    }

    /// Answers every complete request in the buffer into `out`; false once
    /// the connection must close.
    fn answer(&mut self, out: &mut Vec<u8>) -> bool {
        let mut consumed = 0;
        let keep_alive = loop {
            let rest = &self.buffer[consumed..];
            if self.skip_body > 0 {
                let skipped = self.skip_body.min(rest.len());
                self.skip_body -= skipped;
                consumed += skipped;
                if self.skip_body > 0 {
                    break true;
                }
                continue;
            }
            if rest.is_empty() {
                break true;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(rest) {
                Ok(httparse::Status::Complete(head)) if head <= MAX_HEAD => {
                    consumed += head;
                    match respond(&request, self.index, out) {
                        Ok((keep, body)) => {
                            self.skip_body = body;
                            if !keep {
                                break false;
                            }
                        }
                        Err(status) => {
                            error_response(status, out);
                            break false;
                        }
                    }
                }
                Ok(httparse::Status::Partial) if rest.len() <= MAX_HEAD => break true,
                Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                    error_response("431 Request Header Fields Too Large", out);
                    break false;
                }
                Err(_) => {
                    error_response("400 Bad Request", out);
                    break false;
                }
            }
        };
        self.buffer.drain(..consumed);
        keep_alive
    }
}

impl Protocol for Http {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn connection_lost(&mut self, _error: Option<evloop::Error>) {
        self.transport = None;
    }

    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let mut out = Vec::new();
        let keep_alive = self.answer(&mut out);
        let Some(transport) = &self.transport else { return };
        transport.write(&out).ok();
        if !keep_alive {
            transport.close(); // after what is buffered is sent
        }
    }

    fn pause_writing(&mut self) {
        // The client pipelines faster than it reads: stop reading.
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

/// The response to one request: (keep the connection, body bytes to
/// skip), or an error status.
fn respond(
    req: &httparse::Request<'_, '_>,
    index: usize,
    out: &mut Vec<u8>,
) -> Result<(bool, usize), &'static str> {
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err("400 Bad Request");
    };
    let mut content_length: Option<usize> = None;
    let mut keep_alive = version == 1;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
            match (n, content_length) {
                (None, _) => return Err("400 Bad Request"),
                // Conflicting lengths: a request-smuggling attempt.
                (Some(n), Some(seen)) if n != seen => return Err("400 Bad Request"),
                (Some(n), _) => content_length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("400 Bad Request"); // chunked bodies are not read here
        }
    }
    let loop_number = index.to_string();
    let (status, body): (&str, &str) = match (path, method) {
        ("/", "GET" | "HEAD") => ("200 OK", BODY),
        ("/loop", "GET" | "HEAD") => ("200 OK", &loop_number),
        ("/" | "/loop", _) => ("405 Method Not Allowed", ""),
        _ => ("404 Not Found", ""),
    };
    let connection = if keep_alive { "" } else { "Connection: close\r\n" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{connection}\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    Ok((keep_alive, content_length.unwrap_or(0)))
}

fn error_response(status: &str, out: &mut Vec<u8>) {
    let head = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(head.as_bytes());
}

struct Args {
    loops: usize,
    acceptor: bool,
    /// `None`: the demo.
    serve: Option<u16>,
}

fn parse_args() -> Result<Args, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args { loops: cpus, acceptor: false, serve: Some(8080) };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{what} needs a number"))?;
            v.parse().map_err(|_| format!("{what}: not a number: {v}"))
        };
        match arg.as_str() {
            "--loops" => args.loops = number("--loops")?.max(1),
            "--acceptor" => args.acceptor = true,
            "--serve" => args.serve = Some(u16::try_from(number("--serve")?).map_err(|e| e.to_string())?),
            "--demo" => args.serve = None,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn start(args: &Args, port: u16) -> evloop::Result<LoopGroup> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let options = ServerOptions { backlog: 1024, ..Default::default() };
    if args.acceptor {
        LoopGroup::with_acceptor(args.loops, addr, &options, |index| async move {
            Ok(handoff_protocol(move || Http::new(index)))
        })
    } else {
        let server_options = options.clone();
        LoopGroup::reuse_port(args.loops, addr, &options, move |index, listener| {
            let options = server_options.clone();
            async move {
                let lp = evloop::get_running_loop()?;
                // Returned, so the server is kept until the loop stops.
                lp.create_server_from_socket(move || Http::new(index), listener, options).await
            }
        })
    }
}

/// One `GET` on a new connection; the response's status line and body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((head.lines().next().unwrap_or("").to_owned(), body.to_owned()))
}

fn demo(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let group = start(args, 0)?;
    let addr = group.local_addr().expect("the group listens");
    println!(
        "[demo] {} loops on {addr} ({})",
        args.loops,
        if args.acceptor { "acceptor" } else { "SO_REUSEPORT" }
    );
    let (status, body) = get(addr, "/")?;
    if status != "HTTP/1.1 200 OK" || body != BODY {
        return Err(format!("unexpected response to GET /: {status:?} {body:?}").into());
    }
    // Every loop should answer; with SO_REUSEPORT the kernel picks, so
    // ask until more than one has (all of them, round robin).
    let want = if args.acceptor { args.loops } else { args.loops.min(2) };
    let mut answered = vec![0usize; args.loops];
    let mut tries = 0;
    while answered.iter().filter(|&&n| n > 0).count() < want {
        tries += 1;
        if tries > 1000 {
            return Err(format!("only these loops answered in 1000 requests: {answered:?}").into());
        }
        let (_, body) = get(addr, "/loop")?;
        let index: usize = body.parse().map_err(|_| format!("bad /loop answer {body:?}"))?;
        answered[index] += 1;
    }
    println!("[demo] requests answered per loop: {answered:?}");
    group.shutdown()?;
    if TcpStream::connect(addr).is_ok() {
        return Err("the port still accepts connections after shutdown".into());
    }
    println!("[demo] every loop stopped; done");
    Ok(())
}

fn serve(args: &Args, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let group = start(args, port)?;
    println!("listening on {}", group.local_addr().expect("the group listens"));
    std::io::stdout().flush()?;
    // This thread waits for a signal on a loop of its own.
    let lp = evloop::EventLoop::new()?;
    for signum in [SIGINT, SIGTERM] {
        let l = lp.clone();
        lp.add_signal_handler(signum, move || l.stop())?;
    }
    lp.run_forever()?;
    println!("stopping {} loops", group.loops());
    group.shutdown()?;
    lp.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        format!("{e}\nusage: multi_loop_http [--loops N] [--acceptor] [--serve PORT | --demo]")
    })?;
    match args.serve {
        None => demo(&args),
        Some(port) => serve(&args, port),
    }
}

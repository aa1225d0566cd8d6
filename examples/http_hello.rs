//! Run with: cargo run --example http_hello
//!
//! The FastAPI "hello world" (`GET /` answers `{"message": "Hello World"}`)
//! as an HTTP/1.1 server written directly on a [`Protocol`], no framework:
//!
//! - `data_received` appends to a per-connection buffer and answers every
//!   complete request head in it (parsed with `httparse`), so requests split
//!   across reads and pipelined requests both work; all the answers to one
//!   read go out in one `write`.
//! - Connections are kept alive (HTTP/1.1's default) unless the client sends
//!   `Connection: close` or speaks HTTP/1.0 without `Connection: keep-alive`.
//! - `GET /` (or `HEAD /`) answers 200 with a JSON body; another method on
//!   `/` answers 405; any other path 404; a malformed request 400 and close.
//!   Request bodies (`Content-Length`) are read and ignored.
//! - Flow control: when a client pipelines faster than it reads, the
//!   transport's `pause_writing` pauses reading until the replies drain.
//! - Limits, as a server facing the internet needs: a request head over
//!   16 KiB answers 431 however it was split into reads (one 100 KB
//!   header in a single write included); conflicting `Content-Length`
//!   headers answer 400 (request smuggling); a connection that completes no
//!   request for [`IDLE_TIMEOUT`] (idle keep-alive, or a head trickled in
//!   slowly) is closed. Every response carries a `Date` header.
//!
//! By default the example runs a demo on a free port: raw-socket clients
//! (tasks using `sock_*`) send keep-alive, pipelined, byte-by-byte, HTTP/1.0
//! and malformed requests and check every response, then it exits.
//!
//! `--serve [PORT]` serves forever (default port 8080), e.g. try
//! `curl -v http://127.0.0.1:8080/` or `wrk -t1 -c50 -d3s http://127.0.0.1:8080/`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use evloop::net::{Domain, Protocol, Socket, Transport, Type};
use evloop::{Error, EventLoop, TimerHandle};

const BODY: &str = r#"{"message": "Hello World"}"#;
/// Request heads larger than this are refused (431) rather than buffered.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A connection that completes no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-wide counters (loop thread only).
#[derive(Default)]
struct Stats {
    connections: Cell<usize>,
    requests: Cell<usize>,
}

/// What to do with a connection after answering a request.
#[derive(PartialEq)]
enum After {
    KeepAlive,
    Close,
}

/// One HTTP connection.
struct HttpConnection {
    transport: Option<Transport>,
    /// Bytes received and not yet consumed: the next request's start.
    buffer: Vec<u8>,
    /// Body bytes of the last request still to be skipped.
    skip_body: usize,
    stats: Rc<Stats>,
    idle: Rc<IdleTimer>,
}

/// Closes a connection that completes no request for `timeout`. One timer
/// per connection, re-armed only when it fires: a request just moves
/// `last_request`, so keep-alive traffic costs no timer operations.
struct IdleTimer {
    timeout: Duration,
    last_request: Cell<Instant>,
    timer: RefCell<Option<TimerHandle>>,
}

impl IdleTimer {
    fn arm(self: &Rc<Self>, transport: &Transport, when: Instant) {
        let (me, t) = (self.clone(), transport.clone());
        let handle = transport.get_loop().call_at(when, move || me.fired(&t));
        *self.timer.borrow_mut() = Some(handle);
    }

    fn fired(self: &Rc<Self>, transport: &Transport) {
        self.timer.borrow_mut().take();
        let deadline = self.last_request.get() + self.timeout;
        if transport.get_loop().time() >= deadline {
            transport.close();
        } else {
            self.arm(transport, deadline);
        }
    }

    fn cancel(&self) {
        let timer = self.timer.borrow_mut().take();
        if let Some(timer) = timer {
            timer.cancel();
        }
    }
}

impl HttpConnection {
    fn new(stats: Rc<Stats>, timeout: Duration) -> HttpConnection {
        let idle = Rc::new(IdleTimer {
            timeout,
            last_request: Cell::new(Instant::now()),
            timer: RefCell::new(None),
        });
        HttpConnection { transport: None, buffer: Vec::new(), skip_body: 0, stats, idle }
    }

    /// Answers every complete request in the buffer, appending the
    /// responses to `out`. Returns `After::Close` once the connection must
    /// close (the rest of the buffer is then ignored).
    fn answer_buffered(&mut self, out: &mut Vec<u8>) -> After {
        let mut consumed = 0;
        let after = loop {
            let rest = &self.buffer[consumed..];
            if self.skip_body > 0 {
                let skipped = self.skip_body.min(rest.len());
                self.skip_body -= skipped;
                consumed += skipped;
                if self.skip_body > 0 {
                    break After::KeepAlive;
                }
                continue;
            }
            if rest.is_empty() {
                break After::KeepAlive;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(rest) {
                // A head that arrived whole in one read is held to the
                // limit too.
                Ok(httparse::Status::Complete(head_len)) if head_len > MAX_HEAD => {
                    error_response("431 Request Header Fields Too Large", out);
                    break After::Close;
                }
                Ok(httparse::Status::Complete(head_len)) => {
                    consumed += head_len;
                    self.stats.requests.set(self.stats.requests.get() + 1);
                    if let Some(transport) = &self.transport {
                        self.idle.last_request.set(transport.get_loop().time());
                    }
                    match respond(&request, out) {
                        Ok((after, body_len)) => {
                            self.skip_body = body_len;
                            if after == After::Close {
                                break After::Close;
                            }
                        }
                        Err(status) => {
                            error_response(status, out);
                            break After::Close;
                        }
                    }
                }
                Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => {
                    error_response("431 Request Header Fields Too Large", out);
                    break After::Close;
                }
                // Wait for the rest of the head.
                Ok(httparse::Status::Partial) => break After::KeepAlive,
                Err(httparse::Error::TooManyHeaders) => {
                    error_response("431 Request Header Fields Too Large", out);
                    break After::Close;
                }
                Err(_) => {
                    error_response("400 Bad Request", out);
                    break After::Close;
                }
            }
        };
        self.buffer.drain(..consumed);
        after
    }
}

impl Protocol for HttpConnection {
    fn connection_made(&mut self, transport: &Transport) {
        self.stats.connections.set(self.stats.connections.get() + 1);
        self.transport = Some(transport.clone());
        let now = transport.get_loop().time();
        self.idle.last_request.set(now);
        self.idle.arm(transport, now + self.idle.timeout);
    }

    fn connection_lost(&mut self, _error: Option<Error>) {
        // The timer holds the transport: let both go now.
        self.idle.cancel();
        self.transport = None;
    }

    fn data_received(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        let mut out = Vec::new();
        let after = self.answer_buffered(&mut out);
        let Some(transport) = &self.transport else { return };
        transport.write(&out).ok();
        if after == After::Close {
            // Sends what is buffered first, then closes.
            transport.close();
        }
    }

    fn pause_writing(&mut self) {
        // The client is not reading its replies: stop reading its requests.
        if let Some(transport) = &self.transport {
            transport.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(transport) = &self.transport {
            transport.resume_reading();
        }
    }
}

/// Writes the response to one parsed request. Returns whether to keep the
/// connection open and how many body bytes follow the head, or the status
/// line of an error response.
fn respond(request: &httparse::Request<'_, '_>, out: &mut Vec<u8>) -> Result<(After, usize), &'static str> {
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version) else {
        return Err("400 Bad Request");
    };
    let mut body_len = None;
    let mut connection_close = version == 0; // HTTP/1.0 closes by default.
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| "400 Bad Request")?.trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().map_err(|_| "400 Bad Request")?;
            // Two different lengths: a proxy in front may have used the
            // other one (request smuggling), so refuse (RFC 9112 §6.3).
            if body_len.is_some_and(|seen| seen != len) {
                return Err("400 Bad Request");
            }
            body_len = Some(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies are not worth supporting here.
            return Err("501 Not Implemented");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    connection_close = false;
                }
            }
        }
    }
    let after = if connection_close { After::Close } else { After::KeepAlive };
    let (status, content_type, body, extra) = match (method, path.split('?').next()) {
        ("GET" | "HEAD", Some("/")) => ("200 OK", "application/json", BODY, ""),
        (_, Some("/")) => {
            ("405 Method Not Allowed", "text/plain", "method not allowed\n", "Allow: GET, HEAD\r\n")
        }
        _ => ("404 Not Found", "application/json", r#"{"detail": "Not Found"}"#, ""),
    };
    let connection = if after == After::Close { "close" } else { "keep-alive" };
    let head = with_date(|date| {
        format!(
            "HTTP/1.1 {status}\r\nDate: {date}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             {extra}Connection: {connection}\r\n\r\n",
            body.len()
        )
    });
    out.extend_from_slice(head.as_bytes());
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    Ok((after, body_len.unwrap_or(0)))
}

/// Calls `f` with the current `Date` header value (RFC 9110's
/// IMF-fixdate), formatted once a second, not once a response.
fn with_date<T>(f: impl FnOnce(&str) -> T) -> T {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != now {
            *date = (now, http_date(now));
        }
        f(&date.1)
    })
}

/// `secs` since the Unix epoch as an HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01,
/// counted in 400-year eras of 146 097 days that start on 1 March (so the
/// leap day ends a year).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}

fn error_response(status: &str, out: &mut Vec<u8>) {
    let body = format!("{status}\n");
    let head = with_date(|date| {
        format!(
            "HTTP/1.1 {status}\r\nDate: {date}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
    });
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

// ---------------------------------------------------------------------------
// Demo clients: raw sockets driven by the loop's sock_* methods.

/// A response as the demo clients see it.
#[derive(Debug)]
struct Response {
    status: u16,
    connection: String,
    content_type: String,
    body: String,
}

/// A client connection that reads responses one at a time.
struct Client {
    lp: EventLoop,
    socket: Socket,
    received: Vec<u8>,
}

impl Client {
    async fn connect(lp: &EventLoop, addr: SocketAddr) -> evloop::Result<Client> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking().cloexec(), None)?;
        lp.sock_connect(&socket, &addr.into()).await?;
        Ok(Client { lp: lp.clone(), socket, received: Vec::new() })
    }

    async fn send(&self, data: &[u8]) -> evloop::Result<()> {
        self.lp.sock_sendall(&self.socket, data).await
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> evloop::Result<bool> {
        let chunk = self.lp.sock_recv(&self.socket, 4096).await?;
        self.received.extend_from_slice(&chunk);
        Ok(!chunk.is_empty())
    }

    /// The next response, or `None` if the server closed the connection
    /// before sending one.
    async fn response(&mut self) -> evloop::Result<Option<Response>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.received) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let header = |name: &str| {
                        let found = parsed.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
                        found.map(|h| String::from_utf8_lossy(h.value).into_owned()).unwrap_or_default()
                    };
                    let status = parsed.code.unwrap_or(0);
                    let (connection, content_type) = (header("connection"), header("content-type"));
                    let body_len: usize = header("content-length").parse().map_err(Error::other)?;
                    while self.received.len() < head_len + body_len {
                        if !self.fill().await? {
                            return Err(std::io::Error::other("EOF inside a response body").into());
                        }
                    }
                    let body = String::from_utf8_lossy(&self.received[head_len..head_len + body_len]);
                    let response = Response { status, connection, content_type, body: body.into_owned() };
                    self.received.drain(..head_len + body_len);
                    return Ok(Some(response));
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill().await? {
                        return if self.received.is_empty() {
                            Ok(None)
                        } else {
                            Err(std::io::Error::other("EOF inside a response head").into())
                        };
                    }
                }
                Err(e) => return Err(Error::other(e)),
            }
        }
    }

    /// Whether the server has closed the connection (after any responses).
    async fn closed_by_server(&mut self) -> evloop::Result<bool> {
        Ok(self.received.is_empty() && !self.fill().await?)
    }
}

fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: demo\r\n{extra_headers}\r\n")
}

/// Checks one condition of the demo, turning a failure into an error.
fn check(ok: bool, what: &str) -> evloop::Result<()> {
    if ok {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(std::io::Error::other(format!("check failed: {what}")).into())
    }
}

fn expect(response: Option<Response>, status: u16, what: &str) -> evloop::Result<Response> {
    let response =
        response.ok_or_else(|| Error::other(std::io::Error::other(format!("{what}: no response"))))?;
    check(response.status == status, &format!("{what} -> {} {:?}", response.status, response.body))?;
    Ok(response)
}

async fn demo(lp: EventLoop, addr: SocketAddr) -> evloop::Result<()> {
    println!("keep-alive: three requests on one connection, one at a time");
    let mut client = Client::connect(&lp, addr).await?;
    for i in 0..3 {
        client.send(get("/", "").as_bytes()).await?;
        let response = expect(client.response().await?, 200, &format!("GET / #{i}"))?;
        check(
            response.body == BODY
                && response.content_type == "application/json"
                && response.connection == "keep-alive",
            "JSON body, connection kept alive",
        )?;
    }
    drop(client);

    println!("pipelining: three requests in one write, the last with Connection: close");
    let mut client = Client::connect(&lp, addr).await?;
    let pipelined = [get("/", ""), get("/missing", ""), get("/?q=1", "Connection: close\r\n")].concat();
    client.send(pipelined.as_bytes()).await?;
    expect(client.response().await?, 200, "GET /")?;
    expect(client.response().await?, 404, "GET /missing")?;
    let last = expect(client.response().await?, 200, "GET /?q=1 with Connection: close")?;
    check(last.connection == "close", "the last response says Connection: close")?;
    check(client.closed_by_server().await?, "the server closed the connection")?;

    println!("partial requests: one request sent a few bytes at a time");
    let mut client = Client::connect(&lp, addr).await?;
    let request = get("/", "");
    for piece in request.as_bytes().chunks(7) {
        client.send(piece).await?;
        evloop::sleep(Duration::from_millis(1)).await;
    }
    expect(client.response().await?, 200, "GET / in 7-byte pieces")?;
    // Then a request with a body, whose body arrives separately.
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel").await?;
    evloop::sleep(Duration::from_millis(1)).await;
    client.send(format!("lo{}", get("/", "")).as_bytes()).await?;
    expect(client.response().await?, 405, "POST / with a split body")?;
    expect(client.response().await?, 200, "GET / right after the body")?;
    drop(client);

    println!("HTTP/1.0 and HEAD");
    let mut client = Client::connect(&lp, addr).await?;
    client.send(b"HEAD / HTTP/1.0\r\n\r\n").await?;
    // A HEAD response has a Content-Length but no body: read the head only.
    while !client.received.windows(4).any(|w| w == b"\r\n\r\n") {
        if !client.fill().await? {
            break;
        }
    }
    let head = String::from_utf8_lossy(&client.received).into_owned();
    check(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "HEAD / -> 200, no body")?;
    check(head.contains("Connection: close"), "HTTP/1.0 closes by default")?;
    client.received.clear();
    check(client.closed_by_server().await?, "the server closed the connection")?;

    println!("malformed request");
    let mut client = Client::connect(&lp, addr).await?;
    client.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await?;
    expect(client.response().await?, 400, "a header line without a colon")?;
    check(client.closed_by_server().await?, "the server closed the connection")?;

    println!("ten concurrent keep-alive clients, 100 requests each");
    let clients = (0..10).map(|_| {
        let lp = lp.clone();
        async move {
            let mut client = Client::connect(&lp, addr).await?;
            for _ in 0..100 {
                client.send(get("/", "").as_bytes()).await?;
                let response = client.response().await?;
                if !response.is_some_and(|r| r.status == 200 && r.body == BODY) {
                    return Err(std::io::Error::other("bad response").into());
                }
            }
            Ok::<_, Error>(())
        }
    });
    let outcomes = evloop::gather_results(clients).await;
    check(outcomes.iter().all(Result::is_ok), "1000 responses, all 200 with the JSON body")?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut serve_forever = false;
    let mut port = 0;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => {
                serve_forever = true;
                port = 8080;
            }
            other if serve_forever => port = other.parse().map_err(|_| format!("bad port {other:?}"))?,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }

    let lp = EventLoop::new()?;
    let stats = Rc::new(Stats::default());
    let l = lp.clone();
    let server_stats = stats.clone();
    lp.run_until_complete(async move {
        let server = l
            .create_server(
                move || HttpConnection::new(server_stats.clone(), IDLE_TIMEOUT),
                "127.0.0.1",
                port,
                Default::default(),
            )
            .await?;
        let addr = server.local_addr().expect("a TCP server has an address");
        println!("serving HTTP on http://{addr}/");
        if serve_forever {
            return server.serve_forever().await;
        }
        demo(l.clone(), addr).await?;
        server.close();
        server.close_clients();
        server.wait_closed().await
    })??;
    println!("server: {} connections, {} requests", stats.connections.get(), stats.requests.get());
    lp.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The server logic in-process: limits parsed straight from one buffer
    //! (one read), end to end over loopback, and the idle timeout on the
    //! manual clock.

    use super::*;
    use std::io::{Read, Write};

    fn connection() -> HttpConnection {
        HttpConnection::new(Rc::new(Stats::default()), IDLE_TIMEOUT)
    }

    /// The responses to `input` arriving in one read.
    fn answer(input: &[u8]) -> (String, After) {
        let mut conn = connection();
        conn.buffer.extend_from_slice(input);
        let mut out = Vec::new();
        let after = conn.answer_buffered(&mut out);
        (String::from_utf8_lossy(&out).into_owned(), after)
    }

    /// Sends `request` in one write over loopback; the response up to EOF.
    fn exchange(request: Vec<u8>) -> String {
        evloop::run(async move {
            let lp = evloop::get_running_loop()?;
            let stats = Rc::new(Stats::default());
            let server = lp
                .create_server(
                    move || HttpConnection::new(stats.clone(), IDLE_TIMEOUT),
                    "127.0.0.1",
                    0,
                    Default::default(),
                )
                .await?;
            let port = server.local_addr().unwrap().port();
            let (mut reader, writer) = evloop::open_connection("127.0.0.1", port, Default::default()).await?;
            writer.write(&request)?;
            let response = reader.read_to_end().await?;
            server.close();
            Ok::<_, Error>(String::from_utf8_lossy(&response).into_owned())
        })
        .expect("the loop ran")
        .expect("the exchange worked")
    }

    #[test]
    fn one_100_kb_header_in_a_single_read_is_431() {
        let big = format!("X-Big: {}\r\n", "a".repeat(100_000));
        let (out, after) = answer(get("/", &big).as_bytes());
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(after == After::Close);
    }

    #[test]
    fn a_head_over_the_limit_in_pieces_is_431() {
        let mut conn = connection();
        let mut out = Vec::new();
        conn.buffer.extend_from_slice(b"GET / HTTP/1.1\r\nX-Big: ");
        assert!(conn.answer_buffered(&mut out) == After::KeepAlive && out.is_empty());
        conn.buffer.extend_from_slice(&[b'a'; MAX_HEAD]);
        assert!(conn.answer_buffered(&mut out) == After::Close);
        assert!(out.starts_with(b"HTTP/1.1 431 "));
    }

    #[test]
    fn a_head_just_under_the_limit_is_served() {
        let request = get("/", "");
        let pad = MAX_HEAD - request.len() - "X-Pad: \r\n".len();
        let (out, _) = answer(get("/", &format!("X-Pad: {}\r\n", "p".repeat(pad))).as_bytes());
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    }

    #[test]
    fn conflicting_content_lengths_are_400_and_close() {
        let request = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
        let response = exchange(request.as_bytes().to_vec());
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
        assert!(response.contains("Connection: close\r\n"));
        // The same length twice is one length (RFC 9112 §6.3).
        let (out, _) = answer(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi");
        assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
    }

    #[test]
    fn every_response_has_a_date_header() {
        let response = exchange(get("/", "Connection: close\r\n").into_bytes());
        let date = response.lines().find_map(|l| l.strip_prefix("Date: ")).expect("a Date header");
        assert_eq!(date.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len());
        assert!(date.ends_with(" GMT"));
        let (error, _) = answer(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
        assert!(error.starts_with("HTTP/1.1 400 ") && error.contains("\r\nDate: "));
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    /// Runs the loop until `cond` holds (the kernel delivering on
    /// loopback); bounded, so a missed event fails instead of hanging.
    fn pump(lp: &EventLoop, what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            lp.run_until_idle().unwrap();
            if cond() {
                return;
            }
            std::thread::yield_now();
        }
        panic!("timed out waiting for {what}");
    }

    /// What the client can read now: `Some(bytes)` (empty at EOF, or at a
    /// reset: a close with request bytes unread resets), or `None` if
    /// nothing is there yet.
    fn try_read(client: &mut std::net::TcpStream) -> Option<Vec<u8>> {
        let mut buf = [0; 4096];
        match client.read(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(Vec::new()),
            Err(e) => panic!("read: {e}"),
        }
    }

    #[test]
    fn a_connection_idle_for_the_timeout_is_closed_on_the_manual_clock() {
        let lp = EventLoop::builder().manual_clock().build().unwrap();
        let stats = Rc::new(Stats::default());
        let s = stats.clone();
        let l = lp.clone();
        let server = lp
            .run_until_complete(async move {
                let factory = move || HttpConnection::new(s.clone(), IDLE_TIMEOUT);
                l.create_server(factory, "127.0.0.1", 0, Default::default()).await
            })
            .unwrap()
            .unwrap();
        let mut client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        pump(&lp, "the accept", || stats.connections.get() == 1);

        // Just short of the timeout: still open.
        lp.advance_time(IDLE_TIMEOUT - Duration::from_millis(1));
        lp.run_until_idle().unwrap();
        assert_eq!(try_read(&mut client), None);

        // A request restarts the count.
        client.write_all(get("/", "").as_bytes()).unwrap();
        let mut response = Vec::new();
        pump(&lp, "the response", || {
            response.extend(try_read(&mut client).unwrap_or_default());
            response.ends_with(BODY.as_bytes())
        });
        lp.advance_time(IDLE_TIMEOUT - Duration::from_millis(1));
        lp.run_until_idle().unwrap();
        assert_eq!(try_read(&mut client), None, "the request restarted the idle timeout");

        // Then a head trickled in and never finished: closed at the timeout.
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        lp.advance_time(Duration::from_millis(2));
        pump(&lp, "the close", || try_read(&mut client).is_some_and(|b| b.is_empty()));
        server.close();
        lp.close().unwrap();
    }
}

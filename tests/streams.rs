//! Behaviour of the high-level streams (`open_connection`, `start_server`,
//! `StreamReader`, `StreamWriter`), modeled on asyncio's streams tests.
//!
//! Everything runs on loopback (`127.0.0.1:0`) or on Unix sockets in the
//! temp dir. Every test is bounded by `wait_for`, so a missed wake-up fails
//! the test instead of hanging it.

mod util;

use std::cell::{Cell, RefCell};
use std::future::Future as StdFuture;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use evloop::net::stream::{DEFAULT_LIMIT, StreamConnectOptions, StreamServerOptions};
use evloop::net::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Server, ServerOptions};
use evloop::sync::{Event, Queue};
use evloop::{
    Error, StreamReader, StreamWriter, gather, open_connection, open_unix_connection, spawn, start_server,
    start_unix_server, yield_now,
};
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use futures_util::stream::StreamExt;

use util::Recorder;

// ------------------------------------------------------------ helpers

/// Runs `fut` on a fresh loop, failing the test if it takes longer than
/// `limit` (a hang is a bug, not a slow machine).
fn run_for<T: 'static>(limit: Duration, fut: impl StdFuture<Output = T> + 'static) -> T {
    evloop::run(evloop::wait_for(fut, limit))
        .expect("the test's future panicked or the loop failed")
        .unwrap_or_else(|_| panic!("the test did not finish within {limit:?}"))
}

fn run<T: 'static>(fut: impl StdFuture<Output = T> + 'static) -> T {
    run_for(Duration::from_secs(30), fut)
}

/// Yields to the loop until `cond` holds; panics after 10 s. For waiting
/// on something the kernel does (loopback delivery), never as an assertion.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        yield_now().await;
    }
}

type Conn = (StreamReader, StreamWriter);

/// A stream server that hands each accepted connection's reader and writer
/// to the test through a queue, so the server side runs in the test's own
/// tasks (whose failures the test sees).
async fn queue_server(limit: usize) -> (Server, Queue<Conn>, u16) {
    let queue = Queue::unbounded();
    let q = queue.clone();
    let options = StreamServerOptions { limit, ..Default::default() };
    let server = start_server(
        move |reader, writer| {
            let q = q.clone();
            async move {
                q.put_nowait((reader, writer)).expect("the queue is unbounded");
            }
        },
        "127.0.0.1",
        0,
        options,
    )
    .await
    .expect("start_server");
    let port = server.local_addr().expect("a TCP server has an address").port();
    (server, queue, port)
}

/// A client connection to a fresh queue server, and the server's side of it.
async fn stream_pair(server_limit: usize) -> (Server, Conn, Conn) {
    let (server, queue, port) = queue_server(server_limit).await;
    let client = open_connection("127.0.0.1", port, Default::default()).await.expect("open_connection");
    let accepted = queue.get().await.unwrap();
    (server, client, accepted)
}

/// A client stream connected to a plain (blocking) std socket the test
/// drives by hand.
async fn raw_peer_pair(limit: usize) -> (Conn, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let client = open_connection("127.0.0.1", port, StreamConnectOptions::new().limit(limit))
        .await
        .expect("open_connection");
    // The handshake is complete once open_connection returns: this accept
    // does not block.
    let (peer, _) = listener.accept().expect("accept");
    (client, peer)
}

/// Closes `peer` with `SO_LINGER` 0: the kernel sends RST, not FIN.
fn reset(peer: TcpStream) {
    let socket = socket2::Socket::from(peer);
    socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    drop(socket);
}

/// A byte stream that names its own offsets: each 8-byte word holds its
/// index, so a lost, repeated or reordered piece shows where it went wrong.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| ((i / 8) as u64).to_le_bytes()[i % 8]).collect()
}

fn assert_pattern(data: &[u8], offset: usize) {
    if data != pattern(offset, data.len()).as_slice() {
        let expected = pattern(offset, data.len());
        let at = data.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(0);
        panic!("stream corrupted at byte {} (chunk at {offset}, {} bytes)", offset + at, data.len());
    }
}

fn is_reset(e: &Error) -> bool {
    matches!(e.io_kind(), Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe))
}

/// Counts how often the wrapped future is polled: a task is polled again
/// only when woken, so the count shows the reader saw new data.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<usize>>,
}

impl<F: StdFuture> StdFuture for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

/// Polls `fut` once, with a waker that does nothing.
fn poll_once<F: StdFuture>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn temp_socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("evloop-streams-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns it.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0, "getrlimit");
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
    }
    lim.rlim_cur
}

// ------------------------------------------------------------ readline

#[test]
fn readline_without_trailing_newline_returns_the_tail_at_eof() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"one\ntwo\nthr");
        reader.feed_data(b"ee");
        reader.feed_eof();
        assert_eq!(reader.readline().await.unwrap(), b"one\n");
        assert_eq!(reader.readline().await.unwrap(), b"two\n");
        assert_eq!(reader.readline().await.unwrap(), b"three");
        assert!(reader.at_eof());
        // After EOF: empty lines, as asyncio.
        assert_eq!(reader.readline().await.unwrap(), b"");
        assert_eq!(reader.readline().await.unwrap(), b"");
    });
}

#[test]
fn readline_with_trailing_newline_then_empty_at_eof() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"last line\n");
        reader.feed_eof();
        assert!(!reader.at_eof(), "a line is still buffered");
        assert_eq!(reader.readline().await.unwrap(), b"last line\n");
        assert!(reader.at_eof());
        assert_eq!(reader.readline().await.unwrap(), b"");
    });
}

#[test]
fn readline_waits_for_the_newline_over_a_connection() {
    run(async {
        let ((mut reader, _w), mut peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        let polls = Rc::new(Cell::new(0));
        let task = spawn(CountPolls {
            inner: Box::pin(async move {
                let line = reader.readline().await;
                (line, reader)
            }),
            polls: polls.clone(),
        });
        until("the reader's first poll", || polls.get() >= 1).await;
        peer.write_all(b"no newline yet").unwrap();
        until("the partial line to reach the reader", || polls.get() >= 2).await;
        assert!(!task.done(), "readline returned before the newline arrived");
        peer.write_all(b", now\nnext").unwrap();
        let (line, mut reader) = task.await.unwrap();
        assert_eq!(line.unwrap(), b"no newline yet, now\n");
        drop(peer);
        assert_eq!(reader.readline().await.unwrap(), b"next");
        assert_eq!(reader.readline().await.unwrap(), b"");
    });
}

#[test]
fn readline_over_the_limit_with_the_newline_buffered_discards_that_line() {
    run(async {
        let mut reader = StreamReader::with_limit(8);
        reader.feed_data(b"0123456789abcdef\nnext\n");
        match reader.readline().await {
            Err(Error::LimitOverrun { consumed }) => assert_eq!(consumed, 16),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        // asyncio: the overlong line is dropped up to and including its
        // newline; what follows stays.
        assert_eq!(reader.buffered(), 5);
        assert_eq!(reader.readline().await.unwrap(), b"next\n");
        assert_eq!(reader.buffered(), 0);
    });
}

#[test]
fn readline_over_the_limit_without_the_newline_clears_the_buffer() {
    run(async {
        let mut reader = StreamReader::with_limit(8);
        reader.feed_data(b"0123456789ab");
        match reader.readline().await {
            Err(Error::LimitOverrun { consumed }) => assert_eq!(consumed, 12),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        // The separator has not arrived: asyncio clears the whole buffer.
        assert_eq!(reader.buffered(), 0);
        // The rest of the overlong line then reads as a line of its own
        // (asyncio does the same).
        reader.feed_data(b"cd\nok\n");
        assert_eq!(reader.readline().await.unwrap(), b"cd\n");
        assert_eq!(reader.readline().await.unwrap(), b"ok\n");
    });
}

#[test]
fn readline_limit_boundary() {
    run(async {
        // A separator at index == limit is allowed (asyncio: isep > limit
        // overruns), one byte later is not.
        let mut reader = StreamReader::with_limit(8);
        reader.feed_data(b"01234567\n012345678\nz\n");
        assert_eq!(reader.readline().await.unwrap(), b"01234567\n");
        assert!(matches!(reader.readline().await, Err(Error::LimitOverrun { consumed: 9 })));
        assert_eq!(reader.readline().await.unwrap(), b"z\n");
    });
}

// ------------------------------------------------------------ readuntil

#[test]
fn readuntil_finds_a_separator_split_across_two_feeds() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"HEAD\r\n");
        // Not there yet: the first half alone must not match.
        assert!(poll_once(reader.readuntil(b"\r\n\r\n")).is_pending());
        reader.feed_data(b"\r\nbody");
        assert_eq!(reader.readuntil(b"\r\n\r\n").await.unwrap(), b"HEAD\r\n\r\n");
        assert_eq!(reader.buffered(), 4);
        reader.feed_eof();
        assert_eq!(reader.read_to_end().await.unwrap(), b"body");
    });
}

#[test]
fn readuntil_finds_a_separator_split_across_two_data_received_calls() {
    run(async {
        let sep = b"\r\n\r\n";
        // Split the separator at every inner point, and before/after it.
        for split in 0..=sep.len() {
            let ((mut reader, _w), mut peer) = raw_peer_pair(DEFAULT_LIMIT).await;
            let polls = Rc::new(Cell::new(0));
            let task = spawn(CountPolls {
                inner: Box::pin(async move {
                    let got = reader.readuntil(b"\r\n\r\n").await;
                    (got, reader)
                }),
                polls: polls.clone(),
            });
            until("the reader's first poll", || polls.get() >= 1).await;
            let mut first = b"GET / HTTP/1.1".to_vec();
            first.extend_from_slice(&sep[..split]);
            let mut second = sep[split..].to_vec();
            second.extend_from_slice(b"trailing");
            peer.write_all(&first).unwrap();
            // The reader's task is woken only by data_received: once it
            // was polled again, the first half has been searched.
            until("the first half to reach the reader", || polls.get() >= 2).await;
            if split < sep.len() {
                assert!(!task.done(), "split {split}: readuntil completed without the whole separator");
            }
            peer.write_all(&second).unwrap();
            let (got, mut reader) = task.await.unwrap();
            assert_eq!(got.unwrap(), b"GET / HTTP/1.1\r\n\r\n", "split {split}");
            drop(peer);
            assert_eq!(reader.read_to_end().await.unwrap(), b"trailing", "split {split}");
        }
    });
}

#[test]
fn readuntil_past_the_limit_is_limit_overrun_and_keeps_the_buffer() {
    run(async {
        // Separator not found within the limit.
        let mut reader = StreamReader::with_limit(16);
        let data = pattern(0, 40);
        reader.feed_data(&data);
        match reader.readuntil(b"\r\n").await {
            Err(Error::LimitOverrun { consumed }) => assert!(consumed > 16, "consumed {consumed}"),
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(reader.buffered(), 40, "readuntil must leave the data in place");
        reader.feed_eof();
        assert_eq!(reader.read_to_end().await.unwrap(), data);

        // Separator found, but past the limit.
        let mut reader = StreamReader::with_limit(16);
        reader.feed_data(b"01234567890123456789\r\nrest");
        assert!(matches!(reader.readuntil(b"\r\n").await, Err(Error::LimitOverrun { consumed: 20 })));
        assert_eq!(reader.buffered(), 26);
        assert_eq!(reader.readexactly(26).await.unwrap(), b"01234567890123456789\r\nrest");
    });
}

#[test]
fn readuntil_past_the_limit_over_a_connection_then_every_byte_is_readable() {
    run(async {
        // A tiny limit, so flow control pauses the transport; the reads
        // that follow the overrun must resume it and get everything.
        const LIMIT: usize = 64;
        let ((mut reader, _w), mut peer) = raw_peer_pair(LIMIT).await;
        let data = pattern(0, 100_000);
        peer.write_all(&data[..10]).unwrap();
        let polls = Rc::new(Cell::new(0));
        let task = spawn(CountPolls {
            inner: Box::pin(async move {
                let got = reader.readuntil(b"\xff\xfe\xfd").await;
                (got, reader)
            }),
            polls: polls.clone(),
        });
        until("the first 10 bytes", || polls.get() >= 2).await;
        peer.write_all(&data[10..]).unwrap();
        drop(peer);
        let (got, mut reader) = task.await.unwrap();
        assert!(matches!(got, Err(Error::LimitOverrun { .. })), "{got:?}");
        assert_eq!(reader.read_to_end().await.unwrap(), data);
    });
}

#[test]
fn readuntil_at_eof_without_separator_is_incomplete_read_with_everything() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"no separator");
        reader.feed_eof();
        match reader.readuntil(b"||").await {
            Err(Error::IncompleteRead { partial, expected }) => {
                assert_eq!(partial, b"no separator");
                assert_eq!(expected, None);
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        assert!(reader.at_eof());
    });
}

// ------------------------------------------------------------ readexactly, read, read_to_end, at_eof

#[test]
fn readexactly_at_eof_is_incomplete_read_with_the_partial_bytes() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"abc");
        reader.feed_data(b"de");
        assert_eq!(reader.readexactly(2).await.unwrap(), b"ab");
        reader.feed_eof();
        match reader.readexactly(5).await {
            Err(Error::IncompleteRead { partial, expected }) => {
                assert_eq!(partial, b"cde");
                assert_eq!(expected, Some(5));
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        // asyncio: the partial bytes are taken out of the buffer.
        assert!(reader.at_eof());
        assert_eq!(reader.buffered(), 0);
        assert_eq!(reader.readexactly(0).await.unwrap(), b"");
    });
}

#[test]
fn readexactly_of_more_than_twice_the_limit_completes() {
    run(async {
        // Flow control pauses reading at 2 × limit; a readexactly that
        // needs more must resume it itself, or it waits forever.
        const LIMIT: usize = 1024;
        let ((mut reader, _w), mut peer) = raw_peer_pair(LIMIT).await;
        let data = pattern(0, 200 * LIMIT);
        let sender = std::thread::spawn(move || {
            peer.write_all(&data).unwrap();
            peer
        });
        let got = reader.readexactly(200 * LIMIT).await.unwrap();
        assert_pattern(&got, 0);
        drop(sender.join().unwrap());
        assert_eq!(reader.read(10).await.unwrap(), b"");
    });
}

#[test]
fn read_returns_at_most_n() {
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"0123");
        reader.feed_data(b"456789");
        assert_eq!(reader.read(0).await.unwrap(), b"");
        assert_eq!(reader.buffered(), 10);
        assert_eq!(reader.read(7).await.unwrap(), b"0123456", "a read may span two feeds");
        assert_eq!(reader.read(100).await.unwrap(), b"789", "only what is buffered");
        reader.feed_eof();
        assert_eq!(reader.read(100).await.unwrap(), b"", "EOF");
    });
}

#[test]
fn read_returns_at_most_n_over_a_connection() {
    run(async {
        let ((mut reader, _w), mut peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        let data = pattern(0, 10_000);
        peer.write_all(&data).unwrap();
        drop(peer);
        let mut got = Vec::new();
        loop {
            let chunk = reader.read(333).await.unwrap();
            assert!(chunk.len() <= 333, "read(333) returned {} bytes", chunk.len());
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
    });
}

#[test]
fn read_to_end_collects_every_write_until_eof() {
    run(async {
        let ((mut reader, _w), mut peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        let data = pattern(0, 300_000);
        let sender = std::thread::spawn(move || {
            for piece in data.chunks(70_000) {
                peer.write_all(piece).unwrap();
            }
            // Dropping the peer sends FIN.
        });
        let got = reader.read_to_end().await.unwrap();
        sender.join().unwrap();
        assert_eq!(got.len(), 300_000);
        assert_pattern(&got, 0);
        assert!(reader.at_eof());
        assert_eq!(reader.read_to_end().await.unwrap(), b"");
    });
}

#[test]
fn at_eof_only_once_eof_arrived_and_the_buffer_is_empty() {
    run(async {
        let mut reader = StreamReader::new();
        assert!(!reader.at_eof());
        reader.feed_data(b"ab");
        assert!(!reader.at_eof());
        reader.feed_eof();
        assert!(!reader.at_eof(), "data is still buffered");
        assert_eq!(reader.read(1).await.unwrap(), b"a");
        assert!(!reader.at_eof());
        assert_eq!(reader.read(10).await.unwrap(), b"b");
        assert!(reader.at_eof());
    });
}

#[test]
fn at_eof_over_a_connection() {
    run(async {
        let (server, (mut cr, cw), (_sr, sw)) = stream_pair(DEFAULT_LIMIT).await;
        sw.write(b"bye").unwrap();
        sw.close();
        assert_eq!(cr.readexactly(3).await.unwrap(), b"bye");
        // The FIN may not have been processed yet: at_eof is true only
        // after a read has seen it.
        assert_eq!(cr.read(10).await.unwrap(), b"");
        assert!(cr.at_eof());
        cw.close();
        server.close();
    });
}

// ------------------------------------------------------------ flow control

#[test]
fn slow_reader_memory_stays_bounded_and_every_byte_arrives_in_order() {
    const TOTAL: usize = 100 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    const READ: usize = 8 * 1024;
    run_for(Duration::from_secs(240), async {
        let (server, (_cr, cw), (mut sr, _sw)) = stream_pair(DEFAULT_LIMIT).await;
        let sender = spawn(async move {
            let mut sent = 0;
            while sent < TOTAL {
                let n = CHUNK.min(TOTAL - sent);
                cw.write(&pattern(sent, n)).unwrap();
                cw.drain().await.unwrap();
                sent += n;
            }
            cw.write_eof();
            sent
        });
        let mut received = 0;
        let mut max_buffered = 0;
        loop {
            let chunk = sr.read(READ).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            assert!(chunk.len() <= READ);
            assert_pattern(&chunk, received);
            received += chunk.len();
            max_buffered = max_buffered.max(sr.buffered());
            // Read slowly: the sender gets several turns per read.
            yield_now().await;
        }
        assert_eq!(sender.await.unwrap(), TOTAL);
        assert_eq!(received, TOTAL);
        let bound = 2 * DEFAULT_LIMIT + 256 * 1024;
        assert!(max_buffered <= bound, "the reader buffered {max_buffered} bytes (bound {bound})");
        // Otherwise the reader kept up and the bound proves nothing.
        assert!(
            max_buffered > 2 * DEFAULT_LIMIT,
            "the reader never fell behind (max {max_buffered}): the test did not exercise flow control"
        );
        server.close();
    });
}

/// Writes to `writer` until its transport buffers more than the high-water
/// mark (the peer must not be reading); returns the bytes written.
fn fill_until_paused(writer: &StreamWriter) -> usize {
    let chunk = vec![0x5a; 256 * 1024];
    let mut written = 0;
    while writer.transport().get_write_buffer_size() <= DEFAULT_HIGH_WATER {
        writer.write(&chunk).unwrap();
        written += chunk.len();
        assert!(written < 1 << 30, "wrote 1 GiB without the socket filling up");
    }
    written
}

#[test]
fn drain_blocks_while_paused_and_resumes_when_the_peer_reads() {
    run(async {
        let (server, (_cr, cw), (mut sr, _sw)) = stream_pair(DEFAULT_LIMIT).await;
        assert!(cw.drain().await.is_ok(), "nothing written: drain returns at once");
        let written = fill_until_paused(&cw);
        // Two drainers at once: both wait, both are woken.
        let (w1, w2) = (cw.clone(), cw.clone());
        let drain = spawn(async move { w1.drain().await });
        let drain2 = spawn(async move { w2.drain().await });
        // The peer reads nothing, so nothing leaves the buffer: however
        // many passes the loop makes, the drain must stay pending.
        for _ in 0..200 {
            yield_now().await;
        }
        assert!(!drain.done(), "drain returned while writing was paused");
        assert!(!drain2.done(), "drain returned while writing was paused");
        assert!(cw.transport().get_write_buffer_size() > DEFAULT_HIGH_WATER);

        let reading = spawn(async move {
            let mut n = 0;
            loop {
                let chunk = sr.read(1 << 20).await.unwrap();
                if chunk.is_empty() {
                    return n;
                }
                n += chunk.len();
            }
        });
        drain.await.unwrap().unwrap();
        drain2.await.unwrap().unwrap();
        assert!(cw.transport().get_write_buffer_size() <= DEFAULT_LOW_WATER, "drain resumed early");
        cw.close();
        assert_eq!(reading.await.unwrap(), written);
        server.close();
    });
}

#[test]
fn drain_after_peer_reset_is_an_error() {
    run(async {
        let ((_r, writer), peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        writer.write(b"hello").unwrap();
        reset(peer);
        // The loop's reader sees the reset and closes the transport.
        until("the reset to close the transport", || writer.is_closing()).await;
        assert!(matches!(writer.write(b"more"), Err(Error::InvalidState(_))));
        let e = writer.drain().await.unwrap_err();
        assert!(is_reset(&e), "{e:?}");
        // And it stays an error.
        assert!(is_reset(&writer.drain().await.unwrap_err()));
    });
}

#[test]
fn drain_after_peer_reset_seen_by_a_read_is_an_error() {
    run(async {
        let ((mut reader, writer), peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        reset(peer);
        let e = reader.read(10).await.unwrap_err();
        assert!(is_reset(&e), "{e:?}");
        let _ = writer.write(b"x");
        let e = writer.drain().await.unwrap_err();
        assert!(is_reset(&e), "{e:?}");
    });
}

#[test]
fn pending_drain_gets_the_error_when_the_peer_resets() {
    run(async {
        let ((_r, writer), peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        fill_until_paused(&writer);
        let w = writer.clone();
        let drain = spawn(async move { w.drain().await });
        for _ in 0..50 {
            yield_now().await;
        }
        assert!(!drain.done());
        reset(peer);
        let e = drain.await.unwrap().unwrap_err();
        assert!(is_reset(&e), "{e:?}");
    });
}

// ------------------------------------------------------------ errors to readers

#[test]
fn pending_read_gets_the_transport_error_on_peer_reset() {
    run(async {
        let ((reader, _w), peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        let task = spawn(async move {
            let mut reader = reader;
            let first = reader.read(100).await;
            let second = reader.readline().await;
            (first, second)
        });
        for _ in 0..20 {
            yield_now().await;
        }
        assert!(!task.done(), "read returned with nothing sent");
        reset(peer);
        let (first, second) = task.await.unwrap();
        let e = first.unwrap_err();
        assert!(is_reset(&e), "{e:?}");
        // The error sticks, as asyncio's set_exception.
        assert!(is_reset(&second.unwrap_err()));
    });
}

#[test]
fn with_an_exception_set_every_read_raises_it_first_even_with_data_buffered() {
    // asyncio's streams.py: read, readline, readuntil and readexactly all
    // check the exception before the buffer (issue 10: read, readline and
    // readuntil returned the data while readexactly raised).
    run(async {
        let mut reader = StreamReader::new();
        reader.feed_data(b"kept\nmore\n");
        reader.set_exception(Error::other(std::fmt::Error));
        assert!(matches!(reader.read(10).await, Err(Error::Other(_))));
        assert!(matches!(reader.read(0).await, Err(Error::Other(_))));
        assert!(matches!(reader.readline().await, Err(Error::Other(_))));
        assert!(matches!(reader.readuntil(b"\n").await, Err(Error::Other(_))));
        assert!(matches!(reader.readexactly(2).await, Err(Error::Other(_))));
        assert!(matches!(reader.read_to_end().await, Err(Error::Other(_))));
        let mut buf = [0u8; 4];
        let got = futures_lite_read(&mut reader, &mut buf).await;
        assert!(got.is_err(), "AsyncRead too: {got:?}");
        // Nothing was consumed.
        assert_eq!(reader.buffered(), 10);
    });
}

/// One `AsyncRead::poll_read`, awaited.
async fn futures_lite_read(reader: &mut StreamReader, buf: &mut [u8]) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| futures_io::AsyncRead::poll_read(std::pin::Pin::new(&mut *reader), cx, buf))
        .await
}

#[test]
#[allow(clippy::await_holding_refcell_ref)] // the point of the test
fn two_concurrent_reads_through_a_shared_refcell_fail_instead_of_hanging() {
    run(async {
        let ((reader, _w), mut peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        let reader = Rc::new(RefCell::new(reader));
        let r1 = reader.clone();
        let first = spawn(async move {
            let mut r = r1.borrow_mut();
            r.read(100).await
        });
        // Let the first read start (and hold its borrow).
        until("the first read to take the reader", || reader.try_borrow_mut().is_err()).await;
        let r2 = reader.clone();
        let second = spawn(async move {
            let mut r = r2.borrow_mut();
            r.read(100).await
        });
        match second.await {
            Err(Error::Panicked(msg)) => assert!(msg.contains("borrow"), "{msg}"),
            other => panic!("the second read should fail, got {other:?}"),
        }
        // The first read is unaffected and still completes.
        assert!(!first.done());
        peer.write_all(b"for the first").unwrap();
        assert_eq!(first.await.unwrap().unwrap(), b"for the first");
    });
}

// ------------------------------------------------------------ closing

#[test]
fn wait_closed_after_close() {
    run(async {
        let (server, (mut cr, cw), (mut sr, sw)) = stream_pair(DEFAULT_LIMIT).await;
        cw.write(b"ping\n").unwrap();
        assert_eq!(sr.readline().await.unwrap(), b"ping\n");
        assert!(!cw.is_closing());
        cw.close();
        assert!(cw.is_closing());
        assert!(cw.transport().local_sockaddr().is_ok(), "close() must not close the socket inline");
        cw.wait_closed().await.unwrap();
        // connection_lost has run: the socket is gone.
        assert!(matches!(cw.transport().local_sockaddr(), Err(Error::InvalidState(_))));
        // Waiting again returns at once.
        cw.wait_closed().await.unwrap();
        assert_eq!(cr.read(10).await.unwrap(), b"");
        // The server side sees EOF and can close too.
        assert_eq!(sr.read(10).await.unwrap(), b"");
        sw.close();
        sw.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await.unwrap();
        assert_eq!(server.connections(), 0);
    });
}

#[test]
fn wait_closed_waits_until_buffered_data_is_flushed() {
    run(async {
        let (server, (_cr, cw), (mut sr, _sw)) = stream_pair(DEFAULT_LIMIT).await;
        let written = fill_until_paused(&cw);
        cw.close();
        let w = cw.clone();
        let closed = spawn(async move { w.wait_closed().await });
        for _ in 0..50 {
            yield_now().await;
        }
        assert!(!closed.done(), "wait_closed returned with data still buffered");
        let got = sr.read_to_end().await.unwrap();
        assert_eq!(got.len(), written, "close() must flush what was buffered");
        closed.await.unwrap().unwrap();
        server.close();
    });
}

#[test]
fn write_eof_half_close_server_replies_after_reading_to_end() {
    run(async {
        let (server, (mut cr, cw), (mut sr, sw)) = stream_pair(DEFAULT_LIMIT).await;
        let server_side = spawn(async move {
            let request = sr.read_to_end().await.unwrap();
            assert!(sr.at_eof());
            // Our side is still open for writing.
            sw.write(b"got: ").unwrap();
            sw.write(&request).unwrap();
            sw.close();
            sw.wait_closed().await.unwrap();
            request
        });
        assert!(cw.can_write_eof());
        cw.writelines([&b"request "[..], b"body"]).unwrap();
        cw.write_eof();
        assert!(matches!(cw.write(b"more"), Err(Error::InvalidState(_))));
        assert!(!cw.is_closing(), "write_eof keeps the read side open");
        let reply = cr.read_to_end().await.unwrap();
        assert_eq!(reply, b"got: request body");
        assert_eq!(server_side.await.unwrap(), b"request body");
        cw.close();
        cw.wait_closed().await.unwrap();
        server.close();
    });
}

// ------------------------------------------------------------ servers

#[test]
fn client_connected_runs_each_connection_as_its_own_task() {
    run(async {
        let log = Recorder::<String>::new();
        let second_arrived = Event::new();
        let (l, ev) = (log.clone(), second_arrived.clone());
        let server = start_server(
            move |mut reader, writer| {
                let (log, ev) = (l.clone(), ev.clone());
                async move {
                    let line = reader.readline().await.unwrap();
                    let name = String::from_utf8(line.trim_ascii_end().to_vec()).unwrap();
                    log.push(format!("{name} read"));
                    if name == "first" {
                        // Blocks this connection's task until the other
                        // connection's task has run.
                        ev.wait().await;
                    } else {
                        ev.set();
                    }
                    writer.write(format!("ack {name}\n").as_bytes()).unwrap();
                    log.push(format!("{name} replied"));
                    writer.close();
                }
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut r1, w1) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        w1.write(b"first\n").unwrap();
        until("the first handler to read its line", || log.len() == 1).await;
        let (mut r2, w2) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        w2.write(b"second\n").unwrap();
        assert_eq!(r2.readline().await.unwrap(), b"ack second\n");
        assert_eq!(r1.readline().await.unwrap(), b"ack first\n");
        assert_eq!(log.get(), ["first read", "second read", "second replied", "first replied"]);
        drop((w1, w2));
        server.close();
    });
}

#[test]
fn five_hundred_concurrent_clients_all_get_their_echoes() {
    const CLIENTS: usize = 500;
    let limit = raise_fd_limit();
    assert!(limit >= 2 * CLIENTS as u64 + 100, "RLIMIT_NOFILE hard limit {limit} is too low for this test");
    run_for(Duration::from_secs(60), async {
        let server = start_server(
            |mut reader, writer| async move {
                loop {
                    let line = reader.readline().await.unwrap();
                    if line.is_empty() {
                        break;
                    }
                    writer.write(&line).unwrap();
                }
                writer.close();
            },
            "127.0.0.1",
            0,
            // Every client connects in the same pass: let the listen queue
            // hold them all, instead of the kernel dropping SYNs over the
            // default backlog of 100 (which only costs retransmit time).
            StreamServerOptions {
                server: ServerOptions { backlog: 1024, ..Default::default() },
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let results = gather((0..CLIENTS).map(|i| async move {
            let (mut reader, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
            let messages = [format!("client {i} hello\n"), format!("client {i} bye\n")];
            let mut replies = Vec::new();
            for m in &messages {
                writer.write(m.as_bytes()).unwrap();
                replies.push(String::from_utf8(reader.readline().await.unwrap()).unwrap());
            }
            writer.close();
            writer.wait_closed().await.unwrap();
            Ok((messages.to_vec(), replies))
        }))
        .await
        .unwrap();
        assert_eq!(results.len(), CLIENTS);
        for (sent, got) in &results {
            assert_eq!(sent, got);
        }
        server.close();
        // Every server-side connection saw EOF and closed itself.
        evloop::wait_for(server.wait_closed(), Duration::from_secs(10)).await.unwrap().unwrap();
    });
}

#[test]
fn unix_stream_round_trip() {
    let path = temp_socket_path("round-trip");
    let p = path.clone();
    run(async move {
        let server = start_unix_server(
            |mut reader, writer| async move {
                while let Ok(line) = reader.readline().await {
                    if line.is_empty() {
                        break;
                    }
                    writer.write(&line.to_ascii_uppercase()).unwrap();
                }
                writer.close();
            },
            &p,
            Default::default(),
        )
        .await
        .unwrap();
        assert!(p.exists());
        let (mut reader, writer) = open_unix_connection(&p, Default::default()).await.unwrap();
        assert_eq!(writer.peer_addr(), None, "a Unix socket has no IP peer");
        writer.write(b"over a unix socket\n").unwrap();
        assert_eq!(reader.readline().await.unwrap(), b"OVER A UNIX SOCKET\n");
        // Many lines in one go, then a half-close: every line comes back,
        // in order, and then EOF.
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i} of the unix test\n")).collect();
        writer.writelines(&lines).unwrap();
        writer.write_eof();
        let echoed = reader.read_to_end().await.unwrap();
        assert_eq!(echoed, lines.concat().to_ascii_uppercase().into_bytes());
        assert!(reader.at_eof());
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await.unwrap();
        assert!(!p.exists(), "closing the server removes its socket file");
    });
    let _ = std::fs::remove_file(&path);
}

// ------------------------------------------------------------ futures-io

#[test]
fn futures_io_read_to_end_read_line_and_lines() {
    run(async {
        let (server, (mut cr, _cw), (_sr, sw)) = stream_pair(DEFAULT_LIMIT).await;
        sw.write(b"alpha\nbeta\r\ngamma\ndelta").unwrap();
        sw.close();
        let mut line = String::new();
        assert_eq!(AsyncBufReadExt::read_line(&mut cr, &mut line).await.unwrap(), 6);
        assert_eq!(line, "alpha\n");
        let rest: Vec<String> = AsyncBufReadExt::lines(&mut cr).map(|l| l.unwrap()).collect().await;
        assert_eq!(rest, ["beta", "gamma", "delta"]);
        assert!(cr.at_eof());

        // read_to_end through the futures-io trait, across many reads.
        let (_s2, (mut cr, _cw), (_sr, sw)) = stream_pair(DEFAULT_LIMIT).await;
        let data = pattern(0, 500_000);
        let d = data.clone();
        spawn(async move {
            for piece in d.chunks(100_000) {
                sw.write(piece).unwrap();
                sw.drain().await.unwrap();
            }
            sw.close();
        });
        let mut got = Vec::new();
        assert_eq!(AsyncReadExt::read_to_end(&mut cr, &mut got).await.unwrap(), data.len());
        assert_eq!(got, data);
        server.close();
    });
}

#[test]
fn futures_io_read_gets_the_reset_error() {
    run(async {
        let ((mut reader, _w), peer) = raw_peer_pair(DEFAULT_LIMIT).await;
        reset(peer);
        let mut buf = [0u8; 16];
        let e = AsyncReadExt::read(&mut reader, &mut buf).await.unwrap_err();
        assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
            "{e:?}"
        );
    });
}

#[test]
fn futures_io_copy_echo_server_write_all_and_close() {
    run(async {
        let outcomes = Queue::unbounded();
        let out = outcomes.clone();
        let server = start_server(
            move |mut reader, mut writer| {
                let out = out.clone();
                async move {
                    // An echo server built from futures-io combinators.
                    let copied = futures_util::io::copy(&mut reader, &mut writer).await;
                    let closed = AsyncWriteExt::close(&mut writer).await;
                    out.put_nowait((copied.map_err(|e| e.to_string()), closed.map_err(|e| e.to_string())))
                        .expect("the queue is unbounded");
                }
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut reader, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        // Big enough that both sides' flow control engages.
        let data = pattern(0, 4 << 20);
        let d = data.clone();
        let mut w = writer.clone();
        let sending = spawn(async move {
            w.write_all(&d).await.unwrap();
            w.flush().await.unwrap();
            w.write_eof();
        });
        let mut echoed = Vec::new();
        AsyncReadExt::read_to_end(&mut reader, &mut echoed).await.unwrap();
        sending.await.unwrap();
        assert_eq!(echoed.len(), data.len());
        assert_pattern(&echoed, 0);
        let (copied, closed) = outcomes.get().await.unwrap();
        assert_eq!(copied, Ok(data.len() as u64));
        assert_eq!(closed, Ok(()));

        // AsyncWriteExt::close on the client: resolves once the connection
        // is gone.
        let mut w = writer.clone();
        AsyncWriteExt::close(&mut w).await.unwrap();
        assert!(writer.is_closing());
        assert!(matches!(writer.transport().local_sockaddr(), Err(Error::InvalidState(_))));
        server.close();
    });
}

#[test]
fn futures_io_poll_write_waits_while_writing_is_paused() {
    run(async {
        let (server, (_cr, cw), (mut sr, _sw)) = stream_pair(DEFAULT_LIMIT).await;
        let written = fill_until_paused(&cw);
        let mut w = cw.clone();
        let writing = spawn(async move { w.write_all(b"after the pause").await });
        for _ in 0..50 {
            yield_now().await;
        }
        assert!(!writing.done(), "poll_write accepted data while the transport was paused");
        let before = cw.transport().get_write_buffer_size();
        let reading = spawn(async move { sr.read_to_end().await });
        writing.await.unwrap().unwrap();
        assert!(before > DEFAULT_HIGH_WATER);
        cw.close();
        let got = reading.await.unwrap().unwrap();
        assert_eq!(got.len(), written + 15);
        assert!(got.ends_with(b"after the pause"));
        server.close();
    });
}

#[test]
fn futures_io_write_all_then_close_delivers_everything() {
    run(async {
        let (server, (_cr, mut cw), (mut sr, _sw)) = stream_pair(DEFAULT_LIMIT).await;
        let data = pattern(0, 1 << 20);
        let d = data.clone();
        let writing = spawn(async move {
            cw.write_all(&d).await.unwrap();
            AsyncWriteExt::close(&mut cw).await.unwrap();
            cw
        });
        let got = sr.read_to_end().await.unwrap();
        let cw = writing.await.unwrap();
        assert!(cw.is_closing());
        assert_eq!(got, data);
        server.close();
    });
}

#[test]
fn a_panicking_handler_task_closes_its_connection_and_is_reported() {
    run(async {
        let lp = evloop::get_running_loop().unwrap();
        let reported = util::capture_exceptions(&lp);
        let server = start_server(
            |mut reader, writer| async move {
                let line = reader.readline().await.unwrap();
                writer.write(b"partial reply").unwrap();
                panic!("handler failed on {:?}", String::from_utf8_lossy(&line));
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut reader, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        writer.write(b"hello\n").unwrap();
        // asyncio closes the transport when the client_connected task
        // fails: the client sees what was written, then EOF, not a hang.
        assert_eq!(reader.read_to_end().await.unwrap(), b"partial reply");
        until("the server connection to go away", || server.connections() == 0).await;
        let reported = reported.borrow();
        assert_eq!(reported.len(), 1, "{reported:?}");
        let text = reported[0].to_string();
        assert!(text.contains("handler failed on \"hello\\n\""), "{text}");
        drop(reported);
        server.close();
    });
}

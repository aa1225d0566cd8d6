//! `DuplexStream` (one connection's reader and writer in one value) and the
//! stream lifetime rules: dropping the last writer handle closes the
//! connection, a server handler that returns closes its connection, and
//! `poll_flush`/`poll_close` after a close are `Ok`.
//!
//! Every test runs on loopback (`127.0.0.1:0`) under `wait_for`, so a
//! missed close fails the test instead of hanging it.

mod util;

use std::future::Future as StdFuture;
use std::time::Duration;

use asynchronous_codec::{Framed, LinesCodec};
use evloop::net::stream::{DuplexStream, duplex_handler, open_stream};
use evloop::sync::Queue;
use evloop::{StreamReader, StreamWriter, open_connection, spawn, start_server};
use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use futures_util::sink::SinkExt;
use futures_util::stream::StreamExt;

use util::{DropCounter, pattern};

fn run<T: 'static>(fut: impl StdFuture<Output = T> + 'static) -> T {
    evloop::run(evloop::wait_for(fut, Duration::from_secs(30)))
        .expect("the test's future panicked or the loop failed")
        .unwrap_or_else(|_| panic!("the test did not finish within 30 s"))
}

/// A server whose accepted connections go to the test through a queue.
async fn queue_server() -> (evloop::net::Server, u16, Queue<(StreamReader, StreamWriter)>) {
    let conns = Queue::unbounded();
    let q = conns.clone();
    let server = start_server(
        move |reader, writer| {
            q.put_nowait((reader, writer)).expect("the queue is unbounded");
            async {}
        },
        "127.0.0.1",
        0,
        Default::default(),
    )
    .await
    .unwrap();
    let port = server.local_addr().unwrap().port();
    (server, port, conns)
}

// ------------------------------------------------------------ drop closes

#[test]
fn handler_returning_without_close_gives_the_client_eof() {
    run(async {
        let server = start_server(
            |mut reader, writer| async move {
                let line = reader.readline().await.unwrap();
                writer.write(&line).unwrap();
                // No close(): returning must close the connection.
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut reader, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        writer.write(b"ping\n").unwrap();
        assert_eq!(reader.read_to_end().await.unwrap(), b"ping\n");
        server.close();
    });
}

#[test]
fn handler_ignoring_its_writer_still_reads_until_it_returns() {
    run(async {
        let got = Queue::unbounded();
        let g = got.clone();
        let server = start_server(
            move |mut reader, _| {
                let g = g.clone();
                async move {
                    g.put_nowait(reader.readexactly(4).await.unwrap()).unwrap();
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
        writer.write(b"abcd").unwrap();
        assert_eq!(got.get().await.unwrap(), b"abcd");
        assert_eq!(reader.read_to_end().await.unwrap(), b"");
        server.close();
    });
}

#[test]
fn handler_that_hands_its_writer_on_keeps_the_connection_open() {
    run(async {
        let writers = Queue::unbounded();
        let w = writers.clone();
        let server = start_server(
            move |_reader, writer| {
                w.put_nowait(writer).unwrap();
                async {}
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut reader, _client_writer) =
            open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let server_writer: StreamWriter = writers.get().await.unwrap();
        // The handler returned, but a writer handle lives on.
        for _ in 0..5 {
            evloop::yield_now().await;
        }
        assert!(!server_writer.is_closing());
        server_writer.write(b"late").unwrap();
        drop(server_writer);
        assert_eq!(reader.read_to_end().await.unwrap(), b"late");
        server.close();
    });
}

#[test]
fn dropping_every_writer_clone_closes_after_flushing() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let (_r, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut peer, _peer_writer) = conns.get().await.unwrap();
        let data = pattern(1 << 20);
        writer.write(&data).unwrap();
        let clone = writer.clone();
        let transport = writer.transport().clone();
        drop(writer);
        assert!(!transport.is_closing(), "a clone still holds the writing side");
        drop(clone);
        assert!(transport.is_closing());
        // Everything written before the drop arrives, then EOF.
        assert_eq!(peer.read_to_end().await.unwrap(), data);
        server.close();
    });
}

#[test]
fn dropping_only_the_reader_closes_nothing() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let (reader, writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut peer, _pw) = conns.get().await.unwrap();
        drop(reader);
        writer.write(b"still here").unwrap();
        assert_eq!(peer.readexactly(10).await.unwrap(), b"still here");
        assert!(!writer.is_closing());
        drop(writer);
        assert_eq!(peer.read_to_end().await.unwrap(), b"");
        server.close();
    });
}

#[test]
fn flush_and_close_after_close_are_ok() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let (_r, mut writer) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut peer, _pw) = conns.get().await.unwrap();
        writer.write(b"bye").unwrap();
        AsyncWriteExt::close(&mut writer).await.unwrap();
        // hyper flushes after its own close: a clean close is no error.
        writer.flush().await.unwrap();
        AsyncWriteExt::close(&mut writer).await.unwrap();
        // Closing (not yet closed) counts too.
        let (_r2, mut w2) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let _peer2 = conns.get().await.unwrap();
        w2.close();
        w2.flush().await.unwrap();
        assert_eq!(peer.read_to_end().await.unwrap(), b"bye");
        server.close();
    });
}

#[test]
fn dropped_connections_free_their_sockets_and_handler_state() {
    // The protocol holds neither half, and the halves hold no loop: once
    // every handle is dropped the connection closes and its sockets and
    // the handler's state are freed (no reader/writer/transport cycle).
    const NAME: &str = "dropped_connections_free_their_sockets_and_handler_state";
    const MARKER: &str = "duplex-fd-check-done";
    if !util::run_test_in_child(NAME, "EVLOOP_TEST_DUPLEX_FDS_CHILD", MARKER) {
        return;
    }
    let drops = DropCounter::new();
    let d = drops.clone();
    run(async move {
        let server = start_server(
            move |mut reader, writer| {
                let token = DropCounter::token(&d);
                async move {
                    let _token = token;
                    let _writer = writer;
                    let _ = reader.read_to_end().await;
                }
            },
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let before = util::open_fd_count();
        for _ in 0..5 {
            let mut stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
            stream.write_all(b"x").await.unwrap();
            let transport = stream.transport().clone();
            drop(stream);
            assert!(transport.is_closing());
            drop(transport);
        }
        // Both ends' sockets go once the server saw EOF and returned.
        let mut passes = 0;
        while util::open_fd_count() > before {
            passes += 1;
            assert!(passes < 100_000, "sockets were not freed");
            evloop::yield_now().await;
        }
        server.close();
        server.wait_closed().await.unwrap();
    });
    assert_eq!(drops.get(), 5, "every handler's state was freed");
    println!("{MARKER}");
}

// ------------------------------------------------------------ DuplexStream

#[test]
fn dropping_a_duplex_stream_gives_the_peer_eof() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let mut stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut peer, _pw) = conns.get().await.unwrap();
        stream.write_all(b"last words").await.unwrap();
        drop(stream);
        assert_eq!(peer.read_to_end().await.unwrap(), b"last words");
        server.close();
    });
}

#[test]
fn duplex_server_echo_through_futures_io_copy() {
    run(async {
        let server = start_server(
            duplex_handler(|stream: DuplexStream| async move {
                let (mut reader, mut writer) = stream.into_split();
                futures_util::io::copy(&mut reader, &mut writer).await.unwrap();
            }),
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let data = pattern(3 << 20);
        let d = data.clone();
        let sending = spawn(async move {
            writer.write_all(&d).await.unwrap();
            writer.write_eof();
            writer
        });
        let mut echoed = Vec::new();
        AsyncReadExt::read_to_end(&mut reader, &mut echoed).await.unwrap();
        let writer = sending.await.unwrap();
        assert_eq!(echoed.len(), data.len());
        assert!(echoed == data);
        // Joined again, the halves are one stream.
        let joined = DuplexStream::unsplit(reader, writer);
        let mut joined = joined;
        assert!(joined.reader().at_eof());
        server.close();
    });
}

#[test]
fn duplex_buf_reader_lines_and_inherent_asyncio_reads() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let mut stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        let (_pr, pw) = conns.get().await.unwrap();
        pw.write(b"HEAD\r\nabc:one\ntwo\nthree").unwrap();
        drop(pw);
        assert_eq!(stream.readuntil(b"\r\n").await.unwrap(), b"HEAD\r\n");
        assert_eq!(stream.readexactly(4).await.unwrap(), b"abc:");
        let lines: Vec<String> = BufReader::new(&mut stream).lines().map(|l| l.unwrap()).collect().await;
        assert_eq!(lines, ["one", "two", "three"]);
        assert!(stream.reader().at_eof());
        server.close();
    });
}

#[test]
fn duplex_split_reads_and_writes_at_once() {
    run(async {
        let server = start_server(
            duplex_handler(|mut stream: DuplexStream| async move {
                let (reader, writer) = stream.split_mut();
                let mut line = String::new();
                // AsyncBufRead on the reader half, asyncio's write on the
                // other (through `&mut`, `.write` is AsyncWriteExt's).
                futures_util::io::AsyncBufReadExt::read_line(reader, &mut line).await.unwrap();
                StreamWriter::write(writer, line.to_uppercase().as_bytes()).unwrap();
            }),
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let mut stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        stream.write_all(b"shout\n").await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "SHOUT\n");
        // The extension trait's close works with method syntax here.
        stream.close().await.unwrap();
        stream.wait_closed().await.unwrap();
        server.close();
    });
}

#[test]
fn framed_lines_codec_round_trip() {
    run(async {
        let server = start_server(
            duplex_handler(|stream: DuplexStream| async move {
                let mut framed = Framed::new(stream, LinesCodec);
                while let Some(line) = framed.next().await {
                    let line = line.unwrap();
                    framed.send(format!("echo {line}")).await.unwrap();
                }
            }),
            "127.0.0.1",
            0,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let stream = open_stream("127.0.0.1", port, Default::default()).await.unwrap();
        let mut framed = Framed::new(stream, LinesCodec);
        let mut replies = Vec::new();
        for i in 0..100 {
            framed.send(format!("line {i}\n")).await.unwrap();
            replies.push(framed.next().await.unwrap().unwrap());
        }
        assert_eq!(replies[0], "echo line 0\n");
        assert_eq!(replies[99], "echo line 99\n");
        // Closing the sink closes the stream; the server's handler ends.
        framed.close().await.unwrap();
        let stream = framed.into_inner();
        assert!(stream.is_closing());
        server.close();
    });
}

#[test]
fn duplex_stream_is_one_value_of_its_halves() {
    run(async {
        let (server, port, conns) = queue_server().await;
        let (r, w) = open_connection("127.0.0.1", port, Default::default()).await.unwrap();
        let (mut pr, pw) = conns.get().await.unwrap();
        pw.write(b"xyz").unwrap();
        let mut stream: DuplexStream = (r, w).into();
        assert_eq!(stream.readexactly(3).await.unwrap(), b"xyz");
        stream.writer().write(b"ok").unwrap();
        stream.drain().await.unwrap();
        assert_eq!(pr.readexactly(2).await.unwrap(), b"ok");
        assert!(format!("{stream:?}").starts_with("DuplexStream"));
        server.close();
    });
}

//! Pipe transports (`connect_read_pipe` / `connect_write_pipe`) over
//! `pipe(2)`, FIFOs, sockets and character devices: asyncio's call order,
//! the writer closing (EOF) and the reader closing (broken pipe), write
//! flow control against a reader that does not read, refusal of regular
//! files, and the loop's `close()` closing them.

mod util;

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;

use evloop::EventLoop;
use evloop::net::Protocol;
use util::{NetEv, NetTempDir, RecProto, fail_on_callback_errors, within};

fn new_loop() -> EventLoop {
    EventLoop::new().expect("new loop")
}

#[test]
fn read_pipe_gets_data_then_eof_then_lost_when_the_writer_closes() {
    let lp = new_loop();
    let _errors = fail_on_callback_errors(&lp);
    let (reader, mut writer) = io::pipe().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (proto, state) = RecProto::new();
        let (transport, _) = l.connect_read_pipe(|| proto, reader).await.unwrap();
        assert!(transport.is_reading());
        writer.write_all(b"first ").unwrap();
        state.until_data(6).await;
        writer.write_all(b"second").unwrap();
        drop(writer);
        state.until_lost().await;
        assert_eq!(state.names(), ["made", "data", "eof", "lost"]);
        assert_eq!(state.data(), b"first second");
        assert!(state.lost()[0].is_none(), "EOF is an orderly close");
        assert!(transport.is_closing());
    })
    .unwrap();
}

/// asyncio closes a read pipe at EOF whatever `eof_received` answers:
/// there is no write side to keep open.
#[test]
fn read_pipe_closes_at_eof_even_if_the_protocol_asks_to_stay_open() {
    let lp = new_loop();
    let (reader, writer) = io::pipe().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (mut proto, state) = RecProto::new();
        proto.keep_open_on_eof = true;
        let (transport, _) = l.connect_read_pipe(|| proto, reader).await.unwrap();
        drop(writer);
        within("connection_lost", state.until_lost()).await;
        assert_eq!(state.names(), ["made", "eof", "lost"]);
        // The protocol's transport refuses writes on a read pipe.
        let t = state.transport();
        assert!(matches!(t.write(b"x"), Err(evloop::Error::InvalidState(_))));
        assert!(!t.can_write_eof());
        assert!(!transport.is_reading());
    })
    .unwrap();
}

#[test]
fn read_pipe_pause_and_resume_reading() {
    let lp = new_loop();
    let (reader, mut writer) = io::pipe().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (proto, state) = RecProto::new();
        let (transport, _) = l.connect_read_pipe(|| proto, reader).await.unwrap();
        transport.pause_reading();
        assert!(!transport.is_reading());
        writer.write_all(b"held").unwrap();
        util::net_passes(5).await;
        assert_eq!(state.names(), ["made"], "paused: nothing delivered");
        transport.resume_reading();
        state.until_data(4).await;
        transport.close();
        state.until_lost().await;
        assert_eq!(state.names(), ["made", "data", "lost"]);
    })
    .unwrap();
}

#[test]
fn write_pipe_delivers_in_order_and_closes_after_flushing() {
    let lp = new_loop();
    let (mut reader, writer) = io::pipe().unwrap();
    let l = lp.clone();
    let state = lp
        .run_until_complete(async move {
            let (proto, state) = RecProto::new();
            let (pipe, _) = l.connect_write_pipe(|| proto, writer).await.unwrap();
            assert!(pipe.can_write_eof());
            assert!(!state.transport().is_reading());
            pipe.write(b"one ").unwrap();
            pipe.writelines([b"two ".as_slice(), b"three"]).unwrap();
            pipe.write_eof(); // a pipe's write_eof is close
            assert!(pipe.is_closing());
            state.until_lost().await;
            state
        })
        .unwrap();
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "one two three");
    assert_eq!(state.names(), ["made", "lost"]);
    assert!(state.lost()[0].is_none());
}

/// asyncio's `_UnixWritePipeTransport._read_ready`: the reader closing is
/// seen even while nothing is being written: `connection_lost(None)`.
#[test]
fn write_pipe_sees_the_reader_close_while_idle() {
    let lp = new_loop();
    let (reader, writer) = io::pipe().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (proto, state) = RecProto::new();
        let (pipe, _) = l.connect_write_pipe(|| proto, writer).await.unwrap();
        drop(reader);
        within("connection_lost", state.until_lost()).await;
        assert!(state.lost()[0].is_none());
        assert!(pipe.is_closing());
        assert!(matches!(pipe.write(b"late"), Err(evloop::Error::InvalidState(_))));
    })
    .unwrap();
}

/// Flow control on a write pipe whose reader does not read: one
/// `pause_writing` past the high-water mark, one `resume_writing` once a
/// reader drains it, every byte delivered in order; then the reader
/// closing with data still buffered gives `BrokenPipe`.
#[test]
fn write_pipe_flow_control_then_broken_pipe_when_the_reader_goes() {
    let lp = new_loop();
    let (mut reader, writer) = io::pipe().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (mut proto, state) = RecProto::new();
        let written = std::rc::Rc::new(std::cell::Cell::new(0));
        // Keep writing while not paused (the usual producer).
        let count = written.clone();
        proto.on_made = Some(Box::new(move |t| {
            let chunk = vec![7u8; 16 * 1024];
            while t.get_write_buffer_size() <= evloop::net::DEFAULT_HIGH_WATER {
                t.write(&chunk).unwrap();
                count.set(count.get() + chunk.len());
            }
        }));
        let (pipe, _) = l.connect_write_pipe(|| proto, writer).await.unwrap();
        let pauses = || state.events().iter().filter(|e| matches!(e, NetEv::PauseWriting(_))).count();
        state.until("pause_writing", |s| s.names().contains(&"pause")).await;
        assert_eq!(pauses(), 1);
        assert!(pipe.get_write_buffer_size() > evloop::net::DEFAULT_HIGH_WATER);
        // Nobody reads: more passes change nothing.
        util::net_passes(5).await;
        assert_eq!(state.names(), ["made", "pause"]);
        // Read exactly everything on a thread and check it.
        let total = written.get();
        let drain = std::thread::spawn(move || {
            let mut buf = vec![0; total];
            reader.read_exact(&mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 7));
            reader
        });
        state.until("resume_writing", |s| s.names().contains(&"resume")).await;
        assert_eq!(pauses(), 1);
        let reader = evloop::wait_for(l.run_in_executor(move || drain.join().unwrap()), util::NET_TIMEOUT)
            .await
            .unwrap()
            .unwrap();
        // Now fill it again and close the reader with data buffered.
        let chunk = vec![1u8; 256 * 1024];
        pipe.write(&chunk).unwrap();
        assert!(pipe.get_write_buffer_size() > 0);
        drop(reader);
        state.until_lost().await;
        let lost = state.lost();
        let error = lost[0].as_ref().expect("an error: data was lost");
        assert_eq!(error.io_kind(), Some(io::ErrorKind::BrokenPipe), "{error}");
    })
    .unwrap();
}

#[test]
fn regular_files_are_refused_with_a_clear_error() {
    // Counts the process's fds: alone in a child process.
    if !util::run_test_in_child(
        "regular_files_are_refused_with_a_clear_error",
        "EVLOOP_PIPES_CHILD",
        "refused-ok",
    ) {
        return;
    }
    let lp = new_loop();
    let dir = NetTempDir::new("pipe-file");
    let path = dir.join("plain");
    std::fs::write(&path, b"data").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let before = util::open_fd_count();
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            #[derive(Debug)]
            struct Never;
            impl Protocol for Never {
                fn data_received(&mut self, _: &[u8]) {}
            }
            l.connect_read_pipe(|| Never, file).await.unwrap_err()
        })
        .unwrap();
    assert_eq!(err.io_kind(), Some(io::ErrorKind::InvalidInput));
    assert!(err.to_string().contains("connect_read_pipe"), "{err}");
    assert!(util::open_fd_count() < before, "the refused fd is closed");
    // The loop goes on.
    assert_eq!(lp.run_until_complete(async { 5 }).unwrap(), 5);
    println!("refused-ok");
}

#[test]
fn a_fifo_works_both_ways() {
    let lp = new_loop();
    let dir = NetTempDir::new("pipe-fifo");
    let path = dir.join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    // Nonblocking open of the read end first, so the write end's open
    // does not block.
    let read_end = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).unwrap();
    let write_end = OpenOptions::new().write(true).open(&path).unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (rproto, rstate) = RecProto::new();
        let (wproto, wstate) = RecProto::new();
        l.connect_read_pipe(|| rproto, read_end).await.unwrap();
        let (w, _) = l.connect_write_pipe(|| wproto, write_end).await.unwrap();
        w.write(b"through the fifo").unwrap();
        w.close();
        within("fifo data", rstate.until_lost()).await;
        wstate.until_lost().await;
        assert_eq!(rstate.data(), b"through the fifo");
        assert_eq!(rstate.names(), ["made", "data", "eof", "lost"]);
    })
    .unwrap();
}

/// A character device that cannot be polled (`/dev/null`) still takes
/// writes: it never blocks, so nothing is ever buffered.
#[test]
fn a_character_device_takes_writes() {
    let lp = new_loop();
    let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (proto, state) = RecProto::new();
        let (w, _) = l.connect_write_pipe(|| proto, null).await.unwrap();
        w.write(&vec![0; 1 << 20]).unwrap();
        assert_eq!(w.get_write_buffer_size(), 0);
        w.close();
        state.until_lost().await;
        assert!(state.lost()[0].is_none());
    })
    .unwrap();
}

#[test]
fn a_socket_end_works_as_a_read_pipe() {
    let lp = new_loop();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let (proto, state) = RecProto::new();
        l.connect_read_pipe(|| proto, ours).await.unwrap();
        theirs.write_all(b"sock").unwrap();
        drop(theirs);
        state.until_lost().await;
        assert_eq!(state.data(), b"sock");
    })
    .unwrap();
}

#[test]
fn closing_the_loop_closes_open_pipes_and_their_fds() {
    if !util::run_test_in_child(
        "closing_the_loop_closes_open_pipes_and_their_fds",
        "EVLOOP_PIPES_CHILD",
        "loop-close-ok",
    ) {
        return;
    }
    let before = util::open_fd_count();
    let (reader, writer) = io::pipe().unwrap();
    let lp = new_loop();
    let l = lp.clone();
    let (rstate, wstate) = lp
        .run_until_complete(async move {
            let (rproto, rstate) = RecProto::new();
            let (wproto, wstate) = RecProto::new();
            l.connect_read_pipe(|| rproto, reader).await.unwrap();
            l.connect_write_pipe(|| wproto, writer).await.unwrap();
            (rstate, wstate)
        })
        .unwrap();
    lp.close().unwrap();
    for state in [&rstate, &wstate] {
        let lost = state.lost();
        assert_eq!(lost.len(), 1);
        assert!(matches!(lost[0], Some(evloop::Error::Closed)), "{lost:?}");
    }
    drop(lp);
    assert_eq!(util::open_fd_count(), before);
    println!("loop-close-ok");
}

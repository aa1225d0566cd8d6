//! Subprocesses: the high-level `Process` (cat round trip, 10 MiB through
//! a child while stdin is still being written, `communicate`, kill on
//! timeout, exit codes, a missing program), the low-level
//! `SubprocessProtocol`'s call order, stdio choices, and reaping: 1000
//! short-lived children, a cancelled `wait()`, dropped handles, loop close,
//! loops on several threads. Zombies are counted from `/proc`.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use evloop::os::process::{
    PipeTransport, Process, Stdio, SubprocessOptions, SubprocessProtocol, SubprocessTransport,
    create_subprocess_exec, create_subprocess_shell,
};
use evloop::{Error, EventLoop};
use util::{NET_TIMEOUT, within};

fn piped() -> SubprocessOptions {
    SubprocessOptions::piped()
}

/// `(state, ppid)` of `pid` from `/proc/PID/stat`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is still a child of this process (running or a zombie).
fn is_our_child(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(_, ppid)| ppid == std::process::id())
}

/// How many zombie children this process has.
fn zombie_count() -> usize {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid) == Some(('Z', me)))
        .count()
}

/// Runs loop passes until `pid` is no child of ours any more (reaped),
/// failing after [`NET_TIMEOUT`].
fn run_until_reaped(lp: &EventLoop, pid: u32) {
    let deadline = std::time::Instant::now() + NET_TIMEOUT;
    while is_our_child(pid) {
        assert!(std::time::Instant::now() < deadline, "child {pid} was never reaped");
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

#[test]
fn cat_round_trip_through_a_process() {
    let code = evloop::run(async {
        let mut cat = create_subprocess_exec("cat", [] as [&str; 0], piped()).await?;
        let stdin = cat.stdin.take().unwrap();
        let stdout = cat.stdout.as_mut().unwrap();
        for line in ["hello\n", "evloop\n"] {
            stdin.write(line.as_bytes())?;
            stdin.drain().await?;
            assert_eq!(within("a line back", stdout.readline()).await?, line.as_bytes());
        }
        stdin.close();
        assert_eq!(stdout.read_to_end().await?, b"");
        assert!(stdout.at_eof());
        within("exit", cat.wait()).await
    })
    .unwrap()
    .unwrap();
    assert_eq!(code, 0);
}

/// Both directions at once: 10 MiB written to `cat` by one task while
/// another reads its output; neither pipe's buffer can hold it all, so
/// this deadlocks unless both sides make progress together.
#[test]
fn ten_mib_through_cat_while_stdin_is_still_being_written() {
    const TOTAL: usize = 10 << 20;
    let (read, code) = evloop::run(async {
        let mut cat = create_subprocess_exec("cat", [] as [&str; 0], piped()).await?;
        let stdin = cat.stdin.take().unwrap();
        let mut stdout = cat.stdout.take().unwrap();
        let writer = evloop::spawn(async move {
            let chunk = util::pattern(64 * 1024);
            for _ in 0..TOTAL / chunk.len() {
                stdin.write(&chunk)?;
                stdin.drain().await?;
            }
            stdin.close();
            Ok::<_, Error>(())
        });
        let reader = evloop::spawn(async move {
            let expected = util::pattern(64 * 1024);
            let mut n = 0;
            loop {
                let data = stdout.read(256 * 1024).await?;
                if data.is_empty() {
                    return Ok::<_, Error>(n);
                }
                for (i, b) in data.iter().enumerate() {
                    assert_eq!(*b, expected[(n + i) % expected.len()], "byte {}", n + i);
                }
                n += data.len();
            }
        });
        within("the writer", writer).await??;
        let read = within("the reader", reader).await??;
        Ok::<_, Error>((read, cat.wait().await?))
    })
    .unwrap()
    .unwrap();
    assert_eq!(read, TOTAL);
    assert_eq!(code, 0);
}

#[test]
fn communicate_feeds_stdin_and_collects_both_outputs() {
    let (out, err, code) = evloop::run(async {
        let script = "read x; echo out:$x; echo err:$x >&2; exit 5";
        let mut child = create_subprocess_shell(script, piped()).await?;
        let (out, err) = within("communicate", child.communicate(Some(b"42\n"))).await?;
        Ok::<_, Error>((out, err, child.returncode()))
    })
    .unwrap()
    .unwrap();
    assert_eq!(out, b"out:42\n");
    assert_eq!(err, b"err:42\n");
    assert_eq!(code, Some(5));
}

/// A child that exits without reading its input is not an error for
/// `communicate` (asyncio ignores the broken pipe), with input far larger
/// than the pipe.
#[test]
fn communicate_ignores_a_child_that_does_not_read_stdin() {
    let (out, code) = evloop::run(async {
        let mut child = create_subprocess_shell("echo done", piped()).await?;
        let input = vec![b'x'; 4 << 20];
        let (out, _) = within("communicate", child.communicate(Some(&input))).await?;
        Ok::<_, Error>((out, child.returncode()))
    })
    .unwrap()
    .unwrap();
    assert_eq!(out, b"done\n");
    assert_eq!(code, Some(0));
}

#[test]
fn kill_on_timeout_reports_the_signal() {
    let code = evloop::run(async {
        let child = create_subprocess_exec("sleep", ["30"], SubprocessOptions::new()).await?;
        let timed_out = evloop::wait_for(child.wait(), Duration::from_millis(50)).await;
        assert!(matches!(timed_out, Err(Error::Timeout)), "{timed_out:?}");
        assert_eq!(child.returncode(), None);
        child.kill()?;
        within("exit after kill", child.wait()).await
    })
    .unwrap()
    .unwrap();
    assert_eq!(code, -9, "killed by SIGKILL: minus the signal number, as asyncio");
}

#[test]
fn exit_codes_and_signals_become_returncodes() {
    let codes = evloop::run(async {
        let mut codes = Vec::new();
        for script in ["exit 0", "exit 1", "exit 42", "kill -TERM $$"] {
            let child = create_subprocess_shell(script, SubprocessOptions::new()).await?;
            codes.push(within("exit", child.wait()).await?);
            assert_eq!(child.returncode(), codes.last().copied());
            // Reaped: its pid is never signalled again.
            let err = child.send_signal(libc::SIGTERM).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        }
        Ok::<_, Error>(codes)
    })
    .unwrap()
    .unwrap();
    assert_eq!(codes, [0, 1, 42, -15]);
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let lp = EventLoop::new().unwrap();
    let err = lp
        .run_until_complete(async {
            create_subprocess_exec("evloop-no-such-program", ["x"], piped()).await.unwrap_err()
        })
        .unwrap();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert!(err.to_string().contains("evloop-no-such-program"), "{err}");
    // The loop goes on.
    let l = lp.clone();
    let err = lp
        .run_until_complete(async move {
            let dir = SubprocessOptions::new().current_dir("/evloop/no/such/dir");
            l.subprocess_exec(Order::default, "true", [] as [&str; 0], dir).await.unwrap_err()
        })
        .unwrap();
    assert!(err.to_string().contains("true"), "{err}");
}

/// Records the protocol calls.
#[derive(Default, Debug)]
struct Order {
    calls: Vec<String>,
    out: Vec<u8>,
    err: Vec<u8>,
    transport: Option<SubprocessTransport>,
}

impl SubprocessProtocol for Order {
    fn connection_made(&mut self, transport: &SubprocessTransport) {
        self.calls.push("made".into());
        self.transport = Some(transport.clone());
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        match fd {
            1 => self.out.extend_from_slice(data),
            2 => self.err.extend_from_slice(data),
            _ => panic!("data on fd {fd}"),
        }
    }
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<Error>) {
        assert!(error.is_none(), "{error:?}");
        self.calls.push(format!("pipe{fd}"));
    }
    fn process_exited(&mut self) {
        let code = self.transport.as_ref().unwrap().get_returncode();
        self.calls.push(format!("exited:{}", code.unwrap()));
    }
    fn connection_lost(&mut self, error: Option<Error>) {
        assert!(error.is_none());
        self.calls.push("lost".into());
    }
}

/// asyncio's order: `connection_made` first, `connection_lost` last,
/// after `process_exited` and every `pipe_connection_lost`; the protocol
/// is dropped then (it keeps its transport: the cycle is broken).
#[test]
fn subprocess_protocol_calls_come_in_asyncio_order() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let protocol = lp
        .run_until_complete(async move {
            let (transport, protocol) = l
                .subprocess_shell(Order::default, "read x; echo out$x; echo err >&2; exit 3", piped())
                .await?;
            assert_eq!(protocol.borrow().calls, ["made"]);
            let Some(PipeTransport::Write(stdin)) = transport.get_pipe_transport(0) else { panic!("stdin") };
            assert!(matches!(transport.get_pipe_transport(1), Some(PipeTransport::Read(_))));
            assert!(transport.get_pipe_transport(3).is_none());
            stdin.write(b"!\n")?;
            assert_eq!(within("exit", transport.wait()).await?, 3);
            let weak = Rc::downgrade(&protocol);
            drop(transport);
            within("connection_lost", async {
                while !protocol.borrow().calls.iter().any(|c| c == "lost") {
                    evloop::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            Ok::<_, Error>((protocol, weak))
        })
        .unwrap()
        .unwrap();
    let (protocol, weak) = protocol;
    let p = protocol.borrow();
    assert_eq!(p.out, b"out!\n");
    assert_eq!(p.err, b"err\n");
    assert_eq!(p.calls.first().map(String::as_str), Some("made"));
    assert_eq!(p.calls.last().map(String::as_str), Some("lost"));
    let mut middle = p.calls[1..p.calls.len() - 1].to_vec();
    middle.sort();
    assert_eq!(middle, ["exited:3", "pipe0", "pipe1", "pipe2"]);
    drop(p);
    drop(protocol);
    assert!(weak.upgrade().is_none(), "the transport let go of its protocol");
}

#[test]
fn stderr_can_follow_stdout_and_streams_can_be_null() {
    let (merged, nulls) = evloop::run(async {
        let script = "echo a; echo b >&2; echo c";
        let options = SubprocessOptions::new().stdout(Stdio::Piped).stderr(Stdio::Stdout);
        let mut child = create_subprocess_shell(script, options).await?;
        assert!(child.stderr.is_none() && child.stdin.is_none());
        let (out, err) = child.communicate(None).await?;
        assert!(err.is_empty());
        let options = SubprocessOptions::new().stdin(Stdio::Null).stdout(Stdio::Null).stderr(Stdio::Piped);
        let mut quiet = create_subprocess_shell("cat; echo out; echo err >&2", options).await?;
        assert!(quiet.stdout.is_none());
        let (_, err) = quiet.communicate(None).await?;
        Ok::<_, Error>((out, err))
    })
    .unwrap()
    .unwrap();
    assert_eq!(merged, b"a\nb\nc\n");
    assert_eq!(nulls, b"err\n");
}

#[test]
fn stdout_to_a_file_cwd_and_environment() {
    let dir = util::NetTempDir::new("proc-file");
    let path = dir.join("out.txt");
    let file = std::fs::File::create(&path).unwrap();
    let got = evloop::run(async move {
        let options = SubprocessOptions::new().stdout(Stdio::Fd(file.into())).current_dir("/");
        let child = create_subprocess_shell("pwd", options).await?;
        child.wait().await?;
        let options = SubprocessOptions::new().stdout(Stdio::Piped).env_clear().env("EVLOOP_X", "x1");
        let mut env = create_subprocess_exec("/usr/bin/env", [] as [&str; 0], options).await?;
        let (out, _) = env.communicate(None).await?;
        Ok::<_, Error>(out)
    })
    .unwrap()
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"/\n");
    assert_eq!(got, b"EVLOOP_X=x1\n");
    let bad = evloop::run(async {
        create_subprocess_exec("true", [] as [&str; 0], SubprocessOptions::new().stdout(Stdio::Stdout)).await
    })
    .unwrap();
    assert_eq!(bad.unwrap_err().io_kind(), Some(std::io::ErrorKind::InvalidInput));
}

/// A task waiting in `wait()` is cancelled: the child is still reaped
/// when it exits, with nobody waiting and every handle dropped.
#[test]
fn cancelling_wait_leaves_the_child_reaped_later() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (pid, stdin) = lp
        .run_until_complete(async move {
            let mut cat = create_subprocess_exec("cat", [] as [&str; 0], piped()).await?;
            let stdin = cat.stdin.take().unwrap();
            let pid = cat.pid();
            let waiter = l.create_task(async move { cat.wait().await });
            evloop::sleep(Duration::from_millis(1)).await;
            assert!(waiter.cancel());
            assert!(within("the cancel", async { (&waiter).await }).await.is_err());
            Ok::<_, Error>((pid, stdin))
        })
        .unwrap()
        .unwrap();
    assert!(is_our_child(pid), "cat still runs: its stdin is open");
    stdin.close(); // cat sees EOF and exits
    drop(stdin);
    run_until_reaped(&lp, pid);
    assert!(!is_our_child(pid));
}

/// Handles dropped right after the spawn: the child is still watched,
/// reaped when it exits, and the protocol still hears about it.
#[test]
fn dropped_handles_keep_the_child_watched() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let seen = Rc::new(RefCell::new(Vec::new()));
    struct Tell(Rc<RefCell<Vec<&'static str>>>);
    impl SubprocessProtocol for Tell {
        fn process_exited(&mut self) {
            self.0.borrow_mut().push("exited");
        }
        fn connection_lost(&mut self, _: Option<Error>) {
            self.0.borrow_mut().push("lost");
        }
    }
    let s = seen.clone();
    let pid = lp
        .run_until_complete(async move {
            let (transport, protocol) = l.subprocess_shell(move || Tell(s), "echo bye", piped()).await?;
            let pid = transport.get_pid();
            drop((transport, protocol));
            Ok::<_, Error>(pid)
        })
        .unwrap()
        .unwrap();
    run_until_reaped(&lp, pid);
    let deadline = std::time::Instant::now() + NET_TIMEOUT;
    while seen.borrow().len() < 2 && std::time::Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(*seen.borrow(), ["exited", "lost"]);
}

/// `close()` on the transport kills a running child (asyncio) and it is
/// still reaped; closing the loop kills and reaps one still running.
#[test]
fn transport_close_and_loop_close_kill_and_reap() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (closed_code, survivor) = lp
        .run_until_complete(async move {
            let (t, _) = l.subprocess_exec(Order::default, "sleep", ["30"], piped()).await?;
            t.close();
            assert!(t.is_closing());
            let code = within("exit after close", t.wait()).await?;
            let survivor: Process = create_subprocess_exec("sleep", ["30"], SubprocessOptions::new()).await?;
            Ok::<_, Error>((code, survivor))
        })
        .unwrap()
        .unwrap();
    assert_eq!(closed_code, -9);
    let pid = survivor.pid();
    assert!(is_our_child(pid));
    lp.close().unwrap();
    assert!(!is_our_child(pid), "loop close killed and reaped it");
    assert_eq!(survivor.returncode(), Some(-9));
}

/// 1000 short-lived children, 50 at a time: afterwards the process has as
/// many fds and zombies as before (alone in a child process, since both
/// counts are process-wide).
#[test]
fn a_thousand_short_lived_children_leave_no_fds_and_no_zombies() {
    if !util::run_test_in_child(
        "a_thousand_short_lived_children_leave_no_fds_and_no_zombies",
        "EVLOOP_PROCESS_CHILD",
        "thousand-ok",
    ) {
        return;
    }
    let lp = EventLoop::new().unwrap();
    // The loop's own fds first, so the baseline is what the children add.
    lp.run_until_complete(async {}).unwrap();
    let fds = util::open_fd_count();
    let zombies = zombie_count();
    let l = lp.clone();
    let codes = lp
        .run_until_complete(async move {
            let mut codes = Vec::new();
            for _ in 0..20 {
                let batch = (0..50).map(|i| {
                    let l = l.clone();
                    async move {
                        let options = if i % 2 == 0 { piped() } else { SubprocessOptions::new() };
                        let mut child = create_subprocess_exec("true", [] as [&str; 0], options).await?;
                        let _ = l;
                        child.communicate(None).await?;
                        child.wait().await
                    }
                });
                codes.extend(evloop::gather(batch).await?);
            }
            Ok::<_, Error>(codes)
        })
        .unwrap()
        .unwrap();
    assert_eq!(codes.len(), 1000);
    assert!(codes.iter().all(|&c| c == 0), "{codes:?}");
    // Pipes' connection_lost runs on the pass after their EOF.
    lp.run_until_idle().unwrap();
    assert_eq!(util::open_fd_count(), fds);
    assert_eq!(zombie_count(), zombies);
    println!("thousand-ok");
}

/// Loops on four threads spawning at once: each reaps its own children.
#[test]
fn loops_on_several_threads_spawn_concurrently() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                evloop::run(async move {
                    let mut codes = Vec::new();
                    for i in 0..10 {
                        let child =
                            create_subprocess_shell(format!("exit {}", t * 10 + i), SubprocessOptions::new())
                                .await?;
                        codes.push(child.wait().await?);
                    }
                    Ok::<_, Error>(codes)
                })
                .unwrap()
                .unwrap()
            })
        })
        .collect();
    for (t, thread) in threads.into_iter().enumerate() {
        let codes = thread.join().unwrap();
        assert_eq!(codes, (0..10).map(|i| (t * 10 + i) as i32).collect::<Vec<_>>());
    }
}

/// `terminate` and writes through `get_pipe_transport`, from inside a
/// protocol callback.
#[test]
fn signals_and_pipe_writes_from_inside_callbacks() {
    #[derive(Default)]
    struct Stopper {
        transport: Option<SubprocessTransport>,
        out: Vec<u8>,
    }
    impl SubprocessProtocol for Stopper {
        fn connection_made(&mut self, transport: &SubprocessTransport) {
            self.transport = Some(transport.clone());
            let Some(PipeTransport::Write(stdin)) = transport.get_pipe_transport(0) else { panic!("stdin") };
            stdin.write(b"ping\n").unwrap();
        }
        fn pipe_data_received(&mut self, _: i32, data: &[u8]) {
            self.out.extend_from_slice(data);
            if self.out.ends_with(b"\n") {
                self.transport.as_ref().unwrap().terminate().unwrap();
            }
        }
    }
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let (code, out) = lp
        .run_until_complete(async move {
            let (t, p) = l.subprocess_exec(Stopper::default, "cat", [] as [&str; 0], piped()).await?;
            let code = within("exit", t.wait()).await?;
            let out = p.borrow().out.clone();
            Ok::<_, Error>((code, out))
        })
        .unwrap()
        .unwrap();
    assert_eq!(out, b"ping\n");
    assert_eq!(code, -libc::SIGTERM);
}

/// Write flow control reaches the `SubprocessProtocol`: a child that does
/// not read its stdin makes the stdin pipe pause writing (delivered as
/// `pause_writing`, never while the protocol is busy); killing the child
/// then loses the buffered data: `pipe_connection_lost(0, BrokenPipe)`.
#[test]
fn stdin_flow_control_reaches_the_protocol_and_a_dead_reader_breaks_the_pipe() {
    #[derive(Default)]
    struct Flow {
        transport: Option<SubprocessTransport>,
        events: Vec<String>,
    }
    impl SubprocessProtocol for Flow {
        fn connection_made(&mut self, transport: &SubprocessTransport) {
            self.transport = Some(transport.clone());
            let Some(PipeTransport::Write(stdin)) = transport.get_pipe_transport(0) else { panic!("stdin") };
            // Far more than the pipe and the high-water mark hold.
            stdin.write(&vec![b'x'; 1 << 20]).unwrap();
        }
        fn pause_writing(&mut self) {
            self.events.push("pause".into());
            self.transport.as_ref().unwrap().kill().unwrap();
        }
        fn resume_writing(&mut self) {
            self.events.push("resume".into());
        }
        fn pipe_connection_lost(&mut self, fd: i32, error: Option<Error>) {
            let kind = error.and_then(|e| e.io_kind());
            self.events.push(format!("pipe{fd}:{kind:?}"));
        }
        fn connection_lost(&mut self, _: Option<Error>) {
            self.events.push("lost".into());
        }
    }
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let events = lp
        .run_until_complete(async move {
            let options = SubprocessOptions::new().stdin(Stdio::Piped);
            let (t, p) = l.subprocess_exec(Flow::default, "sleep", ["30"], options).await?;
            assert_eq!(within("exit", t.wait()).await?, -9);
            within("connection_lost", async {
                while !p.borrow().events.iter().any(|e| e == "lost") {
                    evloop::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            let events = p.borrow().events.clone();
            Ok::<_, Error>(events)
        })
        .unwrap()
        .unwrap();
    assert_eq!(events, ["pause", "pipe0:Some(BrokenPipe)", "lost"]);
}

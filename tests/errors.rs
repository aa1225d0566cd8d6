//! Errors and introspection: panicking callbacks and the exception
//! handler, debug mode's slow-callback report, loop statistics.

mod util;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use evloop::{Error, EventLoop, ExceptionContext};
use util::{Recorder, Watchdog, fail_on_callback_errors, manual_loop, socketpair};

// ------------------------------------------------------------ log capture

/// Records every `log` message of this test binary; tests look for their
/// own by a unique marker (they run in parallel).
struct CaptureLog;

static LOGGED: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());
static CAPTURE: CaptureLog = CaptureLog;

impl log::Log for CaptureLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let text = format!("{}", record.args());
        LOGGED.lock().unwrap_or_else(|p| p.into_inner()).push((record.level(), text));
    }
    fn flush(&self) {}
}

fn capture_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The captured messages that contain `marker`.
fn logged_with(marker: &str) -> Vec<(log::Level, String)> {
    LOGGED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, m)| m.contains(marker))
        .cloned()
        .collect()
}

/// "file:line" of a location, as the loop prints it (plus ":column").
fn at(file: &str, line: u32) -> String {
    format!("{file}:{line}:")
}

type Seen = Rc<RefCell<Vec<ExceptionContext>>>;

fn record_exceptions(lp: &EventLoop) -> Seen {
    let seen: Seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        sink.borrow_mut().push(ctx.clone());
    }));
    seen
}

fn panicked_with(ctx: &ExceptionContext) -> &str {
    match &ctx.error {
        Some(Error::Panicked(m)) => m,
        other => panic!("expected Error::Panicked, got {other:?}"),
    }
}

// ------------------------------------------------------------ panics

#[test]
fn panic_in_a_callback_reaches_the_exception_handler_and_the_loop_goes_on() {
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    let rec = Recorder::new();
    lp.call_soon(rec.pusher("before"));
    let (_h, line) = (lp.call_soon(|| panic!("boom {}", 42)), line!());
    lp.call_soon(rec.pusher("after"));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["before", "after"], "the next callback ran, in the same pass");
    assert_eq!(lp.stats().iterations, 1);

    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let ctx = &seen[0];
    assert_eq!(ctx.message, "panic in a callback");
    assert_eq!(panicked_with(ctx), "boom 42");
    let loc = ctx.location.expect("the handle's location");
    assert_eq!((loc.file(), loc.line()), (file!(), line), "location is the call_soon call");
    assert!(ctx.to_string().contains(&at(file!(), line)));
    assert!(ctx.task.is_none());
}

#[test]
fn panic_payloads_that_are_not_strings() {
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    lp.call_soon(|| std::panic::panic_any(7_u32));
    lp.call_soon(|| panic!("static str"));
    lp.run_until_idle().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert_eq!(panicked_with(&seen[0]), "Box<dyn Any>");
    assert_eq!(panicked_with(&seen[1]), "static str");
}

#[test]
fn the_handler_gets_the_loop_and_may_schedule_on_it() {
    let lp = manual_loop();
    let rec = Recorder::new();
    let r = rec.clone();
    lp.set_exception_handler(Some(move |lp: &EventLoop, ctx: &ExceptionContext| {
        let msg = panicked_with(ctx).to_owned();
        lp.call_soon(r.pusher(msg));
    }));
    lp.call_soon(|| panic!("first"));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["first"]);
}

#[test]
fn panic_does_not_end_run_forever() {
    let _dog = Watchdog::new("panic_does_not_end_run_forever", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let seen = record_exceptions(&lp);
    let lp2 = lp.clone();
    lp.call_soon(move || {
        let lp3 = lp2.clone();
        lp2.call_soon(move || lp3.stop());
        panic!("in run_forever");
    });
    lp.run_forever().unwrap();
    assert_eq!(seen.borrow().len(), 1);
    assert!(!lp.is_running());
}

/// A panicking handler: the default handler reports both the original
/// error and the handler's panic, and the loop survives.
#[test]
fn a_panicking_exception_handler_falls_back_to_the_default() {
    capture_log();
    let lp = manual_loop();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        c.set(c.get() + 1);
        panic!("handler-exploded-7d1f");
    }));
    let rec = Recorder::new();
    let (_h, line) = (lp.call_soon(|| panic!("callback-failed-7d1f")), line!());
    lp.call_soon(rec.pusher("after"));
    lp.run_until_idle().unwrap();
    assert_eq!(rec.get(), ["after"], "the loop went on");
    assert_eq!(calls.get(), 1);

    let logged = logged_with("handler-exploded-7d1f");
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, text) = &logged[0];
    assert_eq!(*level, log::Level::Error);
    assert!(text.contains("the exception handler panicked while handling: panic in a callback"), "{text}");
    assert!(text.contains(&at(file!(), line)), "{text}");
    // The handler is still installed and still used.
    lp.call_soon(|| panic!("again-7d1f"));
    lp.run_until_idle().unwrap();
    assert_eq!(calls.get(), 2);
}

#[test]
fn the_default_handler_logs_the_panic_with_its_location() {
    capture_log();
    let lp = manual_loop();
    let (_h, line) = (lp.call_soon(|| panic!("default-handler-3c9a")), line!());
    lp.run_until_idle().unwrap();
    let logged = logged_with("default-handler-3c9a");
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, text) = &logged[0];
    assert_eq!(*level, log::Level::Error);
    assert!(text.contains("panic in a callback"), "{text}");
    assert!(text.contains(&at(file!(), line)), "{text}");
}

#[test]
fn removing_the_handler_restores_the_default() {
    capture_log();
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    lp.call_soon(|| panic!("restored-default-51e0"));
    lp.run_until_idle().unwrap();
    assert!(seen.borrow().is_empty());
    assert_eq!(logged_with("restored-default-51e0").len(), 1);
}

#[test]
fn call_exception_handler_and_default_exception_handler() {
    capture_log();
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    let ctx = ExceptionContext::new("direct-call-a8b2").with_error(Error::Timeout).with_task("worker");
    lp.call_exception_handler(&ctx);
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(seen.borrow()[0].message, "direct-call-a8b2");
    assert!(logged_with("direct-call-a8b2").is_empty(), "a custom handler replaces the log");
    lp.default_exception_handler(&ctx);
    let logged = logged_with("direct-call-a8b2");
    assert_eq!(logged.len(), 1);
    assert!(logged[0].1.contains("worker") && logged[0].1.contains("timed out"), "{:?}", logged[0]);
}

#[test]
fn panic_in_a_timer_callback_reports_the_call_later_line() {
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    let (_t, line) = (lp.call_later(Duration::from_secs(1), || panic!("timer")), line!());
    lp.advance_time(Duration::from_secs(1));
    lp.run_until_idle().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let loc = seen[0].location.unwrap();
    assert_eq!((loc.file(), loc.line()), (file!(), line));
}

#[test]
fn panic_in_a_threadsafe_callback_reports_the_call_soon_threadsafe_line() {
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    let remote = lp.remote();
    let (sent, line) = (remote.call_soon_threadsafe(|| panic!("remote")), line!());
    sent.unwrap();
    lp.run_until_idle().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(panicked_with(&seen[0]), "remote");
    let loc = seen[0].location.unwrap();
    assert_eq!((loc.file(), loc.line()), (file!(), line));
}

/// A panicking reader stays registered and, its data still unread, runs
/// again on the next pass.
#[test]
fn panic_in_an_fd_reader_keeps_it_registered() {
    let lp = manual_loop();
    let seen = record_exceptions(&lp);
    let (a, b) = socketpair();
    (&a).write_all(b"x").unwrap();
    let fd = b.as_raw_fd();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let (added, line) = (
        lp.add_reader(fd, move || {
            r.set(r.get() + 1);
            panic!("reader {}", r.get());
        }),
        line!(),
    );
    added.unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(runs.get(), 1);
    assert_eq!(lp.stats().readers, 1);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(runs.get(), 2, "the reader ran again");
    let seen = seen.borrow();
    assert_eq!(
        seen.iter().map(|c| panicked_with(c).to_owned()).collect::<Vec<_>>(),
        ["reader 1", "reader 2"]
    );
    let loc = seen[0].location.unwrap();
    assert_eq!((loc.file(), loc.line()), (file!(), line - 4), "location is the add_reader call");
    assert!(lp.remove_reader(fd));
}

// ------------------------------------------------------------ debug mode

fn busy_wait(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn slow_callback_is_reported_in_debug_mode_with_its_location() {
    capture_log();
    let lp =
        EventLoop::builder().debug(true).slow_callback_duration(Duration::from_millis(5)).build().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    assert!(lp.get_debug());
    lp.call_soon(|| {}); // fast: not reported
    let (_h, line) = (lp.call_soon(|| busy_wait(Duration::from_millis(20))), line!());
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().slow_callbacks, 1);
    let here = at(file!(), line);
    let logged = logged_with(&here);
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, text) = &logged[0];
    assert_eq!(*level, log::Level::Warn);
    assert!(text.contains("took"), "{text}");
}

#[test]
fn slow_callbacks_are_not_timed_outside_debug_mode() {
    capture_log();
    let lp = EventLoop::builder().slow_callback_duration(Duration::from_millis(5)).build().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    assert!(!lp.get_debug());
    let (_h, line) = (lp.call_soon(|| busy_wait(Duration::from_millis(20))), line!());
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().slow_callbacks, 0);
    assert!(logged_with(&at(file!(), line)).is_empty());

    // Switched on at run time, with a threshold set at run time.
    lp.set_debug(true);
    lp.set_slow_callback_duration(Duration::from_millis(2));
    let (_h, line) = (lp.call_soon(|| busy_wait(Duration::from_millis(10))), line!());
    lp.run_until_idle().unwrap();
    assert_eq!(lp.stats().slow_callbacks, 1);
    assert_eq!(logged_with(&at(file!(), line)).len(), 1);
}

#[test]
fn slow_fd_and_timer_callbacks_are_reported_with_their_location() {
    capture_log();
    let lp =
        EventLoop::builder().debug(true).slow_callback_duration(Duration::from_millis(5)).build().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let (added, w_line) = (lp.add_writer(fd, || busy_wait(Duration::from_millis(10))), line!());
    added.unwrap();
    let (_t, t_line) = (lp.call_later(Duration::ZERO, || busy_wait(Duration::from_millis(10))), line!());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(lp.remove_writer(fd));
    assert_eq!(lp.stats().slow_callbacks, 2);
    assert_eq!(logged_with(&at(file!(), w_line)).len(), 1);
    assert_eq!(logged_with(&at(file!(), t_line)).len(), 1);
}

// ------------------------------------------------------------ stats

#[test]
fn stats_count_what_is_scheduled_and_what_ran() {
    let lp = manual_loop();
    let _strict = fail_on_callback_errors(&lp);
    let s = lp.stats();
    assert_eq!((s.iterations, s.callbacks_run, s.polls, s.slow_callbacks), (0, 0, 0, 0));
    assert_eq!((s.ready, s.timers, s.readers, s.writers, s.tasks), (0, 0, 0, 0, 0));

    let (a, b) = socketpair();
    for _ in 0..3 {
        lp.call_soon(|| {});
    }
    lp.call_soon(|| {}).cancel();
    lp.call_later(Duration::from_secs(1), || {});
    lp.call_later(Duration::from_secs(2), || {});
    lp.call_later(Duration::from_secs(3), || {}).cancel();
    lp.add_reader(a.as_raw_fd(), || {}).unwrap();
    lp.add_writer(a.as_raw_fd(), || {}).unwrap();
    lp.add_writer(b.as_raw_fd(), || {}).unwrap();
    let s = lp.stats();
    // A cancelled handle stays on the ready queue until skipped.
    assert_eq!((s.ready, s.timers, s.readers, s.writers), (4, 2, 1, 2));

    // Pass 1: 3 callbacks and 2 writers (nothing to read yet).
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let s = lp.stats();
    assert_eq!((s.iterations, s.callbacks_run, s.polls), (1, 5, 1));
    assert_eq!((s.ready, s.timers), (0, 2));

    // Pass 2: one timer is due, plus the two writers.
    lp.advance_time(Duration::from_secs(1));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let s = lp.stats();
    assert_eq!((s.iterations, s.callbacks_run, s.polls, s.timers), (2, 8, 2, 1));

    assert!(lp.remove_writer(a.as_raw_fd()));
    assert!(lp.remove_writer(b.as_raw_fd()));
    assert!(lp.remove_reader(a.as_raw_fd()));
    let s = lp.stats();
    assert_eq!((s.readers, s.writers), (0, 0));
    assert_eq!(s.slow_callbacks, 0);
}

/// Busy time is time spent running; idle time is time blocked in the
/// poller, e.g. waiting for a timer.
#[test]
fn stats_busy_and_idle_time() {
    let _dog = Watchdog::new("stats_busy_and_idle_time", Duration::from_secs(30));
    let lp = EventLoop::new().unwrap();
    let _strict = fail_on_callback_errors(&lp);
    let s0 = lp.stats();
    assert_eq!((s0.busy_time, s0.idle_time), (Duration::ZERO, Duration::ZERO));

    // Running a callback that busy-waits: busy time grows, idle does not
    // (with work ready and no fd, the loop does not even poll).
    lp.call_soon(|| busy_wait(Duration::from_millis(20)));
    lp.run_until_idle().unwrap();
    let s1 = lp.stats();
    assert!(s1.busy_time >= Duration::from_millis(20), "{s1:?}");
    assert_eq!(s1.idle_time, Duration::ZERO);
    assert_eq!(s1.polls, 0);

    // Waiting for a timer: the loop blocks in the poller until it is due,
    // and that time is idle time.
    let lp2 = lp.clone();
    let wait = Duration::from_millis(60);
    let h = lp.call_later(wait, move || lp2.stop());
    lp.run_forever().unwrap();
    assert!(lp.time() >= h.when());
    let s2 = lp.stats();
    let idle = s2.idle_time - s1.idle_time;
    assert!(idle >= wait / 2, "blocked {idle:?} of a {wait:?} wait: {s2:?}");
    assert!(s2.polls > s1.polls);
    assert!(s2.busy_time >= s1.busy_time);

    // Outside run_* neither moves.
    let s3 = lp.stats();
    busy_wait(Duration::from_millis(5));
    let s4 = lp.stats();
    assert_eq!((s3.busy_time, s3.idle_time), (s4.busy_time, s4.idle_time));
}

#[test]
fn stats_while_running_include_the_current_run() {
    let lp = manual_loop();
    let seen = Rc::new(Cell::new(Duration::ZERO));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        busy_wait(Duration::from_millis(10));
        s.set(lp2.stats().busy_time);
    });
    lp.run_until_idle().unwrap();
    assert!(seen.get() >= Duration::from_millis(10), "{:?}", seen.get());
}

// ------------------------------------------------------------ networking

struct Quiet;
impl evloop::net::Protocol for Quiet {
    fn data_received(&mut self, _: &[u8]) {}
}

#[test]
fn connect_errors_name_the_address() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    let dir = util::NetTempDir::new("connect-error");
    let missing = dir.join("nobody-listens");
    let (tcp, unix) = lp
        .run_until_complete(async move {
            let tcp = l
                .create_connection(|| Quiet, "127.0.0.1", 1, Default::default())
                .await
                .err()
                .expect("port 1 refuses");
            let unix = l
                .create_unix_connection(|| Quiet, &missing, Default::default())
                .await
                .err()
                .expect("no such socket");
            (tcp, unix)
        })
        .unwrap();
    assert_eq!(tcp.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    assert!(tcp.to_string().contains("connect to 127.0.0.1:1: "), "{tcp}");
    assert!(tcp.to_string().contains("refused"), "{tcp}");
    assert_eq!(tcp.raw_os_error(), Some(libc::ECONNREFUSED), "the OS error number is kept");
    let source = std::error::Error::source(&tcp).expect("Error::Io has a source");
    assert!(source.to_string().contains("127.0.0.1:1"), "{source}");
    assert_eq!(unix.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert_eq!(unix.raw_os_error(), Some(libc::ENOENT));
    assert!(unix.to_string().contains("nobody-listens"), "{unix}");
}

#[test]
fn address_getters_of_a_closed_transport_say_the_transport_is_closed() {
    let lp = EventLoop::new().unwrap();
    let l = lp.clone();
    lp.run_until_complete(async move {
        let server = l.create_server(|| Quiet, "127.0.0.1", 0, Default::default()).await.unwrap();
        let port = server.local_addr().unwrap().port();
        let (t, _) = l.create_connection(|| Quiet, "127.0.0.1", port, Default::default()).await.unwrap();
        t.abort();
        evloop::yield_now().await;
        for e in [t.peer_sockaddr().unwrap_err(), t.local_sockaddr().unwrap_err()] {
            assert!(matches!(e, Error::InvalidState(_)), "{e:?}");
            assert!(e.to_string().contains("transport is closed"), "{e}");
        }
        assert!(!l.is_closed());
        server.close();
    })
    .unwrap();
}

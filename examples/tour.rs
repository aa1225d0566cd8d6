//! Run with: cargo run --example tour
//!
//! A guided tour of evloop in numbered steps. Each step prints a one-line
//! explanation, then what the loop actually did: callback order, timers,
//! cancellation, an fd reader, a call from another thread, the manual
//! clock, a panicking callback, tasks and the helpers built on them, and the
//! loop's statistics. The whole tour takes a fraction of a second.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::sync::Queue;
use evloop::{EventLoop, ExceptionContext};

type Log = Rc<RefCell<Vec<String>>>;

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// Returns a closure that appends `entry` to `log`.
fn record(log: &Log, entry: impl Into<String>) -> impl FnOnce() + 'static {
    let log = log.clone();
    let entry = entry.into();
    move || log.borrow_mut().push(entry)
}

struct Steps(Cell<u32>);

impl Steps {
    fn next(&self, title: &str, explanation: &str) {
        self.0.set(self.0.get() + 1);
        println!("\n{}. {title}\n   {explanation}", self.0.get());
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> evloop::Result<()> {
    let started = Instant::now();
    let steps = Steps(Cell::new(0));
    let lp = EventLoop::new()?;

    // ------------------------------------------------------------------
    steps.next("call_soon runs callbacks in FIFO order", "three callbacks scheduled a, b, c run as a, b, c.");
    let log = new_log();
    for name in ["a", "b", "c"] {
        lp.call_soon(record(&log, name));
    }
    lp.run_until_idle()?;
    println!("   ran: {}", log.borrow().join(", "));

    // ------------------------------------------------------------------
    steps.next(
        "A callback scheduled during a pass runs on the next pass",
        "`first` schedules `nested`; `second` was already queued, so it runs before `nested`.",
    );
    let log = new_log();
    {
        let inner_lp = lp.clone();
        let inner_log = log.clone();
        lp.call_soon(move || {
            inner_log.borrow_mut().push("first (pass 1)".into());
            inner_lp.call_soon(record(&inner_log, "nested (pass 2)"));
        });
    }
    lp.call_soon(record(&log, "second (pass 1)"));
    lp.run_once(Some(Duration::ZERO))?;
    println!("   after one run_once: {}", log.borrow().join(", "));
    lp.run_once(Some(Duration::ZERO))?;
    println!("   after another:      {}", log.borrow().join(", "));

    // ------------------------------------------------------------------
    steps.next(
        "call_later fires timers by deadline, not by scheduling order",
        "timers scheduled for 50, 10 and 30 ms fire as 10, 30, 50 ms, never early.",
    );
    let log = new_log();
    let t0 = lp.time();
    for delay in [50, 10, 30] {
        let timer_log = log.clone();
        let timer_lp = lp.clone();
        lp.call_later(Duration::from_millis(delay), move || {
            let late = timer_lp.time() - t0;
            timer_log.borrow_mut().push(format!("{delay} ms timer at {}", ms(late)));
        });
    }
    let stopper = lp.clone();
    lp.call_later(Duration::from_millis(50), move || stopper.stop());
    lp.run_forever()?;
    for line in log.borrow().iter() {
        println!("   {line}");
    }

    // ------------------------------------------------------------------
    steps.next(
        "Cancelling a Handle or a TimerHandle",
        "a cancelled callback and a cancelled timer never run; the others do.",
    );
    let log = new_log();
    let soon = lp.call_soon(record(&log, "cancelled call_soon"));
    lp.call_soon(record(&log, "kept call_soon"));
    let timer = lp.call_later(Duration::from_millis(10), record(&log, "cancelled timer"));
    lp.call_later(Duration::from_millis(10), record(&log, "kept timer"));
    soon.cancel();
    timer.cancel();
    let stopper = lp.clone();
    lp.call_later(Duration::from_millis(15), move || stopper.stop());
    lp.run_forever()?;
    println!("   handle cancelled: {}, timer cancelled: {}", soon.cancelled(), timer.cancelled());
    println!("   ran: {}", log.borrow().join(", "));

    // ------------------------------------------------------------------
    steps.next(
        "add_reader on a socket pair",
        "a reader on one end echoes what it reads; a reader on the other end receives the echo.",
    );
    let (client, server) = UnixStream::pair()?;
    client.set_nonblocking(true)?;
    server.set_nonblocking(true)?;
    let (client_fd, server_fd) = (client.as_raw_fd(), server.as_raw_fd());
    {
        let lp2 = lp.clone();
        let mut server = server;
        lp.add_reader(server_fd, move || {
            let mut buf = [0u8; 64];
            let n = server.read(&mut buf).expect("read from the socket pair");
            println!("   server read {:?}, echoing it", String::from_utf8_lossy(&buf[..n]));
            server.write_all(&buf[..n]).expect("write to the socket pair");
            lp2.remove_reader(server_fd);
        })?;
    }
    let echoed = Rc::new(RefCell::new(String::new()));
    {
        let lp2 = lp.clone();
        let echoed = echoed.clone();
        let mut client = client.try_clone()?;
        lp.add_reader(client_fd, move || {
            let mut buf = [0u8; 64];
            let n = client.read(&mut buf).expect("read from the socket pair");
            echoed.borrow_mut().push_str(&String::from_utf8_lossy(&buf[..n]));
            lp2.remove_reader(client_fd);
            lp2.stop();
        })?;
    }
    (&client).write_all(b"ping")?;
    lp.run_forever()?;
    println!("   client got back {:?}", echoed.borrow());

    // ------------------------------------------------------------------
    steps.next(
        "call_soon_threadsafe from another thread",
        "a worker thread hands a closure to the loop; it runs on the loop's thread and wakes the poller.",
    );
    let remote = lp.remote();
    let loop_thread = std::thread::current().id();
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        let sender = std::thread::current().id();
        remote
            .call_soon_threadsafe(move || {
                let here = std::thread::current().id();
                println!(
                    "   sent from {sender:?}, running on {here:?} (the loop thread: {})",
                    here == loop_thread
                );
                evloop::get_running_loop().expect("inside the loop").stop();
            })
            .expect("the loop is open");
    });
    let waited = Instant::now();
    lp.run_forever()?;
    worker.join().expect("the worker thread");
    println!("   the loop slept in the poller until the call arrived ({})", ms(waited.elapsed()));

    // ------------------------------------------------------------------
    steps.next(
        "The manual clock",
        "a loop built with manual_clock() runs an hour of once-a-minute timers instantly.",
    );
    let virtual_loop = EventLoop::builder().manual_clock().build()?;
    let fired = Rc::new(Cell::new(0u32));
    for minute in 1..=60 {
        let fired = fired.clone();
        virtual_loop.call_later(Duration::from_secs(60 * minute), move || fired.set(fired.get() + 1));
    }
    let wall = Instant::now();
    virtual_loop.advance_time(Duration::from_secs(30 * 60));
    virtual_loop.run_until_idle()?;
    println!("   after advancing 30 min: {} timers fired", fired.get());
    virtual_loop.advance_time(Duration::from_secs(30 * 60));
    virtual_loop.run_until_idle()?;
    println!(
        "   after advancing 60 min: {} timers fired, in {} of real time",
        fired.get(),
        ms(wall.elapsed())
    );
    virtual_loop.close()?;

    // ------------------------------------------------------------------
    steps.next(
        "A panicking callback goes to the exception handler",
        "the panic is caught, a custom handler sees it, and the loop carries on with the next callback.",
    );
    // Silence Rust's default panic message for this step: the handler
    // reports the panic instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    lp.set_exception_handler(Some(|_: &EventLoop, ctx: &ExceptionContext| {
        println!("   handler: {}", ctx.message);
        if let Some(error) = &ctx.error {
            println!("   handler: error = {error}");
        }
        if let Some(location) = ctx.location {
            println!("   handler: scheduled at {location}");
        }
    }));
    lp.call_soon(|| panic!("boom"));
    lp.call_soon(|| println!("   the next callback still runs"));
    lp.run_until_idle()?;
    lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    std::panic::set_hook(default_hook);

    // ------------------------------------------------------------------
    steps.next(
        "Tasks: create_task and spawn",
        "async code runs as tasks; a task spawns a child, both sleep, the parent awaits the child.",
    );
    let parent = lp.create_task(async {
        let child = evloop::spawn(async {
            evloop::sleep(Duration::from_millis(20)).await;
            "child result"
        });
        child.set_name("child");
        evloop::sleep(Duration::from_millis(10)).await;
        println!("   parent slept 10 ms, now awaiting {}", child.name());
        // Awaiting a task gives Result: Err if it panicked or was cancelled.
        child.await.expect("the child finishes")
    });
    parent.set_name("parent");
    let t = Instant::now();
    let out = lp.run_until_complete(parent)??;
    println!("   parent got {out:?} after {}", ms(t.elapsed()));

    // ------------------------------------------------------------------
    steps.next(
        "gather runs awaitables concurrently",
        "three sleeps of 30, 10 and 20 ms take about 30 ms together; results come in input order.",
    );
    let t = Instant::now();
    let results = lp.run_until_complete(evloop::gather([30u64, 10, 20].map(|delay| async move {
        evloop::sleep(Duration::from_millis(delay)).await;
        Ok(delay * 10)
    })))??;
    println!("   results {results:?} after {}", ms(t.elapsed()));

    // ------------------------------------------------------------------
    steps.next(
        "wait_for gives up after a timeout",
        "a task that would sleep an hour is cancelled after 20 ms; the awaiter gets Error::Timeout.",
    );
    let t = Instant::now();
    let outcome = lp.run_until_complete(async {
        let slow = evloop::spawn(async {
            evloop::sleep(Duration::from_secs(3600)).await;
            "never"
        });
        let watcher = slow.clone();
        let outcome = evloop::wait_for(slow, Duration::from_millis(20)).await;
        evloop::yield_now().await; // let the cancellation take effect
        (outcome, watcher.cancelled())
    })?;
    println!("   outcome {:?} after {}; the slow task cancelled: {}", outcome.0, ms(t.elapsed()), outcome.1);

    // ------------------------------------------------------------------
    steps.next(
        "A Queue between a producer and a consumer",
        "a bounded queue (2 items) makes the producer wait for the consumer.",
    );
    let total = lp.run_until_complete(async {
        let queue = Queue::new(2);
        let producer_queue = queue.clone();
        let producer = evloop::spawn(async move {
            for item in 1..=5 {
                producer_queue.put(item).await.ok();
                println!("   put {item} (queue size {})", producer_queue.qsize());
            }
        });
        let mut total = 0;
        for _ in 0..5 {
            let item = queue.get().await.expect("never shut down");
            println!("   got {item}");
            evloop::sleep(Duration::from_millis(2)).await; // "process" the item
            total += item;
            queue.task_done().expect("one task_done per get");
        }
        queue.join().await;
        producer.await.expect("the producer finishes");
        total
    })?;
    println!("   consumer total: {total}");

    // ------------------------------------------------------------------
    steps.next("Loop statistics", "counters the loop kept during this tour.");
    let stats = lp.stats();
    println!(
        "   iterations {}, callbacks run {}, polls {}, busy {}, idle {}",
        stats.iterations,
        stats.callbacks_run,
        stats.polls,
        ms(stats.busy_time),
        ms(stats.idle_time)
    );
    println!(
        "   pending now: ready {}, timers {}, readers {}, writers {}, tasks {}",
        stats.ready, stats.timers, stats.readers, stats.writers, stats.tasks
    );
    lp.close()?;
    println!("\nTour finished in {}.", ms(started.elapsed()));
    Ok(())
}

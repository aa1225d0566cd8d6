//! Run with: cargo run --example blocking_vs_sleep
//!
//! Why callbacks must not block: a task sleeps 100 ms, but a `call_soon`
//! callback then blocks the thread for 500 ms, so the loop cannot fire the
//! task's timer on time and the sleep takes at least 500 ms. The second run
//! turns on debug mode (`set_debug(true)`): the loop times every callback
//! and reports the slow one, with the place it was scheduled (on stderr when
//! no `log` logger is installed).

use std::time::{Duration, Instant};

use evloop::EventLoop;

fn measure(lp: &EventLoop) -> evloop::Result<Duration> {
    let sleeper = lp.create_task(async {
        let start = Instant::now();
        evloop::sleep(Duration::from_millis(100)).await;
        start.elapsed()
    });
    // Runs right after the task's first step, which started the 100 ms timer.
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(500)));
    lp.run_until_complete(sleeper)?
}

fn main() -> evloop::Result<()> {
    let lp = EventLoop::new()?;
    let took = measure(&lp)?;
    println!("sleep(100 ms) took {} ms because a callback blocked for 500 ms", took.as_millis());
    lp.close()?;

    println!("\nAgain in debug mode (slow callbacks are reported):");
    let lp = EventLoop::new()?;
    lp.set_debug(true);
    let took = measure(&lp)?;
    println!("sleep(100 ms) took {} ms", took.as_millis());
    println!("slow callbacks reported: {}", lp.stats().slow_callbacks);
    lp.close()
}

//! Run with: cargo run --example futures
//!
//! Futures and done callbacks: a `Future<i32>` is resolved one second later
//! by a `call_later` timer calling `set_result(42)`; its done callback
//! prints the result. Then `gather` runs three sleeps concurrently and the
//! wall time comes out as the longest sleep, not the sum.

use std::time::{Duration, Instant};

use evloop::EventLoop;

fn main() -> evloop::Result<()> {
    let lp = EventLoop::new()?;

    // Part 1: a future completed by a timer.
    let fut = lp.create_future::<i32>();
    fut.add_done_callback(|f| {
        println!("Future is done! Result: {}", f.result().expect("the future has a result"));
    });
    let setter = fut.clone();
    lp.call_later(Duration::from_secs(1), move || setter.set_result(42).expect("set once"));
    println!("Waiting for the future...");
    // The outer `?` is the loop's error, the inner one the future's own.
    let value = lp.run_until_complete(fut)??;
    println!("run_until_complete returned {value}");

    // Part 2: gather several sleeps.
    let delays = [300u64, 900, 600];
    let start = Instant::now();
    let results = lp.run_until_complete(evloop::gather(delays.map(|ms| async move {
        evloop::sleep(Duration::from_millis(ms)).await;
        Ok(format!("slept {ms} ms"))
    })))??;
    for result in &results {
        println!("{result}");
    }
    println!(
        "gather took {:.2} s for {:.2} s of sleeping in total",
        start.elapsed().as_secs_f64(),
        delays.iter().sum::<u64>() as f64 / 1000.0
    );

    lp.close()
}

//! Run with: cargo run --example call_soon
//!
//! Plain callbacks, the way asyncio talks introduce the event loop: `foo`
//! and `bar` are scheduled with `call_soon` and run in that order on the
//! loop's first pass; then "Hello" is printed at once and "World" one second
//! later by a `call_later` timer, which also stops the loop.

use std::time::Duration;

use evloop::EventLoop;

fn foo() {
    println!("foo");
}

fn bar() {
    println!("bar");
}

fn main() -> evloop::Result<()> {
    let lp = EventLoop::new()?;

    // Scheduled first, run first.
    lp.call_soon(foo);
    lp.call_soon(bar);

    lp.call_soon(|| println!("Hello"));
    let stopper = lp.clone();
    lp.call_later(Duration::from_secs(1), move || {
        println!("World");
        stopper.stop();
    });

    let start = lp.time();
    lp.run_forever()?;
    println!("(the loop ran for {:.2} s)", (lp.time() - start).as_secs_f64());
    lp.close()
}

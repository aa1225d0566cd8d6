//! Run with: cargo run --example greet
//!
//! asyncio's hello world: `evloop::run` (asyncio's `asyncio.run`) creates a
//! loop, runs an `async` block that prints "Hello", sleeps one second
//! without blocking the loop, and prints "World"; then it closes the loop.

use std::time::Duration;

fn main() -> evloop::Result<()> {
    evloop::run(async {
        println!("Hello");
        evloop::sleep(Duration::from_secs(1)).await;
        println!("World");
    })
}

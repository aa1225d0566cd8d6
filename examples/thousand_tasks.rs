//! Run with: cargo run --example thousand_tasks
//!
//! A thousand concurrent tasks: each sleeps a pseudo-random time between 0
//! and 1 second and returns it. Together they ask for about 500 seconds of
//! sleep, yet the whole run takes about one second of wall time, because a
//! sleeping task costs only a timer on the loop.

use std::time::{Duration, Instant};

const TASKS: u64 = 1000;

/// A tiny linear congruential generator (Knuth's MMIX constants): enough
/// randomness for a demo without an extra crate.
struct Lcg(u64);

impl Lcg {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

fn main() -> evloop::Result<()> {
    let mut rng = Lcg(0x5eed);
    let delays: Vec<u64> = (0..TASKS).map(|_| rng.next_below(1000)).collect();

    let start = Instant::now();
    let slept = evloop::run(async move {
        let tasks: Vec<_> = delays
            .into_iter()
            .map(|ms| {
                evloop::spawn(async move {
                    evloop::sleep(Duration::from_millis(ms)).await;
                    ms
                })
            })
            .collect();
        // `gather` accepts tasks as well as plain futures.
        evloop::gather(tasks).await.expect("no task fails")
    })?;

    let total: u64 = slept.iter().sum();
    println!("{} tasks finished", slept.len());
    println!("sum of requested sleeps: {:.1} s", total as f64 / 1000.0);
    println!("wall time:               {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

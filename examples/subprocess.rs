//! Run with: cargo run --example subprocess
//!
//! Runs several shell commands at once, streams each one's output lines
//! (stderr merged into stdout) with the command's name as a prefix, kills
//! the one that overruns its time limit, and prints every exit status.

use std::time::Duration;

use evloop::Error;
use evloop::os::process::{Stdio, SubprocessOptions, create_subprocess_shell};

/// Runs `cmd`, printing its lines as they come; kills it after `limit`.
async fn supervise(name: &'static str, cmd: &'static str, limit: Duration) -> evloop::Result<i32> {
    let options = SubprocessOptions::new().stdout(Stdio::Piped).stderr(Stdio::Stdout);
    let mut child = create_subprocess_shell(cmd, options).await?;
    let mut output = child.stdout.take().expect("stdout is piped");
    let stream = async move {
        loop {
            let line = output.readline().await?;
            if line.is_empty() {
                return Ok::<_, Error>(());
            }
            print!("[{name}] {}", String::from_utf8_lossy(&line));
        }
    };
    match evloop::wait_for(stream, limit).await {
        Ok(streamed) => streamed?,
        Err(Error::Timeout) => {
            println!("[{name}] still running after {limit:?}: killing it");
            child.kill()?;
        }
        Err(e) => return Err(e),
    }
    child.wait().await
}

fn describe(code: i32) -> String {
    if code < 0 { format!("killed by signal {}", -code) } else { format!("exited with status {code}") }
}

fn main() -> evloop::Result<()> {
    let commands: [(&'static str, &'static str, u64); 4] = [
        ("count", "for i in 1 2 3; do echo tick $i; sleep 0.1; done", 5_000),
        ("greet", "echo hello; echo 'and hello from stderr' >&2", 5_000),
        ("fail", "echo about to fail; exit 3", 5_000),
        ("slow", "echo started; sleep 30; echo never printed", 500),
    ];
    evloop::run(async move {
        let tasks: Vec<_> = commands
            .iter()
            .map(|&(name, cmd, ms)| (name, evloop::spawn(supervise(name, cmd, Duration::from_millis(ms)))))
            .collect();
        for (name, task) in tasks {
            match task.await? {
                Ok(code) => println!("{name}: {}", describe(code)),
                Err(e) => println!("{name}: failed: {e}"),
            }
        }
        Ok(())
    })?
}

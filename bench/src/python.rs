//! The Python peers (asyncio, uvloop): a long-lived `bench/python/micro.py
//! --worker` process per loop, driven one command per line, so that the
//! Python peers take their turns interleaved with the Rust ones.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use crate::common::Runner;

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub kind: String,
}

/// What a worker answered.
pub enum Reply {
    Ok(String),
    Na,
}

impl Worker {
    pub fn spawn(python: &Path, script: &Path, kind: &str) -> std::io::Result<Worker> {
        let mut child = Command::new(python)
            .arg(script)
            .args(["--loop", kind, "--worker"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Worker { child, stdin, stdout, kind: kind.to_string() })
    }

    /// Whether the worker answers (it exits at once when its loop, e.g.
    /// uvloop, is not installed).
    pub fn answers(&mut self) -> bool {
        let mut line = String::new();
        writeln!(self.stdin, "versions").and_then(|_| self.stdin.flush()).is_ok()
            && self.stdout.read_line(&mut line).is_ok()
            && line.starts_with("ok")
    }

    /// Sends one command; panics on an "err" reply (a failed check).
    pub fn call(&mut self, cmd: &str) -> Reply {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).expect("write to the Python worker");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from the Python worker");
        let line = line.trim_end();
        if line == "na" {
            Reply::Na
        } else if let Some(rest) = line.strip_prefix("ok") {
            Reply::Ok(rest.trim().to_string())
        } else {
            panic!("{} worker: `{cmd}` failed: {line:?}", self.kind);
        }
    }

    /// A command answering with nanoseconds.
    pub fn call_ns(&mut self, cmd: &str) -> Option<Duration> {
        match self.call(cmd) {
            Reply::Na => None,
            Reply::Ok(s) => Some(Duration::from_nanos(
                s.parse().unwrap_or_else(|_| panic!("{}: bad reply {s:?} to {cmd}", self.kind)),
            )),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

pub type Shared = Rc<RefCell<Worker>>;

/// A runner that sends `format(ops)` to the worker.
pub fn runner(worker: &Shared, command: impl Fn(u64) -> String + 'static) -> Runner {
    let w = worker.clone();
    Box::new(move |ops| {
        let cmd = command(ops);
        w.borrow_mut().call_ns(&cmd).unwrap_or_else(|| panic!("{cmd}: not available"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_exits_at_start_does_not_answer() {
        // What a worker does when `import uvloop` fails: it exits at once.
        let mut w = Worker::spawn(Path::new("false"), Path::new("micro.py"), "uvloop").unwrap();
        assert!(!w.answers());
    }
}

//! Child processes of the suite: servers pinned to a CPU, tools that may be
//! missing, progress messages.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::common::rss_kib;

pub fn say(msg: impl AsRef<str>) {
    eprintln!("[suite {}] {}", chrono_like_now(), msg.as_ref());
}

fn chrono_like_now() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    format!("{:6.1}s", start.elapsed().as_secs_f64())
}

/// Wraps `cmd` with `taskset -c CPU` when taskset exists.
pub fn pinned(cpu: usize, program: &Path) -> Command {
    if have("taskset") {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn output_of(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(s.trim().to_string())
}

pub fn self_exe() -> PathBuf {
    std::env::current_exe().expect("own executable")
}

/// A server process, killed on drop.
pub struct Server {
    pub name: String,
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(name: &str, mut cmd: Command) -> Result<Server, String> {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("{name}: spawn: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let port = loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name}: exited before listening"));
            }
            if let Some(port) = port_in(&line) {
                break port;
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Ok(Server { name: name.to_string(), child, port })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        rss_kib(&self.child.id().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a line like "listening on 127.0.0.1:8080" or
/// "serving HTTP on http://127.0.0.1:8080/".
fn port_in(line: &str) -> Option<u16> {
    let i = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

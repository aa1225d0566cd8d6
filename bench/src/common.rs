//! Pieces every family shares: what a timed run returns, result rows,
//! statistics, /proc readers, fd limits and the echo check.

use std::cell::Cell as StdCell;
use std::rc::Rc;
use std::time::Duration;

/// One timed run of a workload: the measured time of `ops` operations.
pub type Runner = Box<dyn FnMut(u64) -> Duration>;

/// What one round of a `run` benchmark reports.
pub struct Sample {
    /// Time of the measured part only (loop construction excluded).
    pub elapsed: Duration,
    /// Extra per-round figures, printed as median (min–max).
    pub metrics: Vec<(&'static str, f64)>,
}

impl Sample {
    pub fn new(elapsed: Duration) -> Sample {
        Sample { elapsed, metrics: Vec::new() }
    }
    pub fn metric(mut self, name: &'static str, value: f64) -> Sample {
        self.metrics.push((name, value));
        self
    }
}

pub fn counter() -> Rc<StdCell<u64>> {
    Rc::new(StdCell::new(0))
}

pub fn bump(c: &StdCell<u64>) {
    c.set(c.get() + 1);
}

/// What a table cell holds.
#[derive(Clone, Debug)]
pub enum Cell {
    /// The peer has no such operation (the reason is shown in the notes).
    Na,
    /// One value per round (ns/op, µs/round trip, req/s, MiB…).
    Values(Vec<f64>),
    /// The workload could not run (a server did not start, a tool is
    /// missing); the message says why.
    Failed(String),
}

/// One row of a results table: a workload measured on every peer.
#[derive(Clone, Debug)]
pub struct Row {
    pub section: &'static str,
    pub bench: String,
    /// Unit of the values, e.g. "ns/callback".
    pub unit: String,
    pub lower_is_better: bool,
    /// (peer, cell) in column order.
    pub cells: Vec<(String, Cell)>,
    /// Peer-specific remarks, printed under the table.
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(section: &'static str, bench: impl Into<String>, unit: impl Into<String>, lower: bool) -> Row {
        Row {
            section,
            bench: bench.into(),
            unit: unit.into(),
            lower_is_better: lower,
            cells: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn values(&self, peer: &str) -> Option<&[f64]> {
        self.cells.iter().find(|(p, _)| p == peer).and_then(|(_, c)| match c {
            Cell::Values(v) if !v.is_empty() => Some(v.as_slice()),
            _ => None,
        })
    }

    pub fn median(&self, peer: &str) -> Option<f64> {
        self.values(peer).map(median)
    }
}

pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    let s = sorted(v);
    (s[0], s[s.len() - 1])
}

/// Formats a number with about three significant digits.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// (VmRSS, VmHWM) in KiB of a process (`self` or a pid).
pub fn rss_kib(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Raises the soft fd limit to `want` (or the hard limit if lower).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_fd_limit(want: u64) -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want.min(lim.rlim_max as u64);
        if (lim.rlim_cur as u64) < target {
            lim.rlim_cur = target as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
        lim.rlim_cur as u64
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// A message of `size` bytes with a position-dependent pattern, so that a
/// misplaced or stale chunk fails the check.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// The client side's check of an echo: every chunk must continue the
/// message where the previous one stopped, and the last round trip is
/// compared byte for byte.
pub struct EchoCheck {
    pub msg: std::rc::Rc<Vec<u8>>,
    /// Bytes of the current round trip received so far.
    pub got: usize,
    /// Round trips still to complete (the current one included).
    pub left: u64,
    /// The bytes of the last round trip.
    pub last: Vec<u8>,
    pub completed: u64,
}

/// What the client does after a chunk arrived.
#[derive(PartialEq, Eq, Debug)]
pub enum Echo {
    /// The current round trip is incomplete.
    More,
    /// A round trip completed and another one starts: send the message.
    Again,
    /// All round trips completed.
    Done,
}

impl EchoCheck {
    pub fn new(msg: std::rc::Rc<Vec<u8>>, round_trips: u64) -> EchoCheck {
        EchoCheck { msg, got: 0, left: round_trips, last: Vec::new(), completed: 0 }
    }

    pub fn data(&mut self, data: &[u8]) -> Echo {
        let size = self.msg.len();
        assert!(!data.is_empty() && self.got + data.len() <= size, "echo overran the message");
        assert_eq!(data[0], self.msg[self.got], "echo chunk out of place");
        if self.left == 1 {
            self.last.extend_from_slice(data);
        }
        self.got += data.len();
        if self.got < size {
            return Echo::More;
        }
        self.got = 0;
        self.completed += 1;
        self.left -= 1;
        if self.left == 0 {
            assert!(self.last == *self.msg, "the last echo differs from the message");
            Echo::Done
        } else {
            Echo::Again
        }
    }
}

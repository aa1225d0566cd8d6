//! The multi-loop section: HTTP hello on 1 and 2 evloop loops
//! (`examples/multi_loop_http`, `SO_REUSEPORT` and acceptor) against hyper
//! on tokio's multi-thread runtime (2 workers) and current-thread
//! runtime, wrk as the client, interleaved rounds in one run.

use std::process::Command;

use crate::common::{Cell, Row};
use crate::http::{clock_ticks_per_second, cpu_ticks, http_check};
use crate::process::{Server, have, say, self_exe};
use crate::suite::{Config, Suite};

/// The columns, in order.
pub const PEERS: &[&str] = &[
    "evloop 1 loop",
    "evloop 2 loops",
    "evloop 2 loops (acceptor)",
    "tokio multi-thread 2 workers + hyper",
    "tokio current-thread + hyper",
];

/// What the others are compared with.
pub const BASE: &str = "evloop 2 loops";

/// The server command of each column.
fn command(cfg: &Config, peer: &str) -> Option<Command> {
    let multi = cfg.http_hello.with_file_name("multi_loop_http");
    let evloop = |args: &[&str]| {
        let mut c = Command::new(&multi);
        c.args(["--serve", "0"]).args(args);
        c
    };
    let hyper = |kind: &str| {
        let mut c = Command::new(self_exe());
        c.args(["serve", kind, "0"]);
        c
    };
    Some(match peer {
        "evloop 1 loop" => evloop(&["--loops", "1"]),
        "evloop 2 loops" => evloop(&["--loops", "2"]),
        "evloop 2 loops (acceptor)" => evloop(&["--loops", "2", "--acceptor"]),
        "tokio multi-thread 2 workers + hyper" => hyper("http-hyper-mt2"),
        "tokio current-thread + hyper" => hyper("http-hyper"),
        _ => return None,
    })
}

/// wrk's figures from its text output.
struct WrkResult {
    requests_per_s: Option<f64>,
    requests: Option<f64>,
    non_2xx: u64,
    socket_errors: Option<String>,
}

fn parse_wrk(text: &str) -> WrkResult {
    let field = |prefix: &str, nth: usize| {
        text.lines()
            .find(|l| l.contains(prefix))
            .and_then(|l| l.split_whitespace().nth(nth)?.parse::<f64>().ok())
    };
    WrkResult {
        requests_per_s: text
            .lines()
            .find(|l| l.starts_with("Requests/sec:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok()),
        requests: field(" requests in ", 0),
        non_2xx: text
            .lines()
            .find(|l| l.contains("Non-2xx or 3xx responses"))
            .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
            .unwrap_or(0),
        socket_errors: text.lines().find(|l| l.contains("Socket errors")).map(|l| l.trim().to_owned()),
    }
}

pub fn section_multi(cfg: &Config, s: &mut Suite) {
    let mut row = Row::new("multi", "HTTP hello on 2 cores, wrk -t2 -c100", "requests/s", false);
    let mut cpu = Row::new(
        "multi",
        "HTTP hello on 2 cores: server CPU per request (user + system)",
        "µs/request",
        true,
    );
    if !have("wrk") {
        s.notes.push("Multi-loop: `wrk` is not installed; the section was skipped.".into());
        for p in PEERS {
            row.cells.push((p.to_string(), Cell::Failed("wrk missing".into())));
        }
        s.rows.push(row);
        return;
    }
    let secs = if cfg.quick { 1 } else { 3 };
    let rounds = if cfg.quick { 3 } else { cfg.rounds.max(3) };
    let mut servers: Vec<Server> = Vec::new();
    for peer in PEERS {
        let started = command(cfg, peer).ok_or_else(|| format!("{peer}: no command")).and_then(|cmd| {
            let srv = Server::start(peer, cmd)?;
            http_check(&srv.addr()).map_err(|e| format!("{peer}: {e}"))?;
            Ok(srv)
        });
        let cell = match started {
            Ok(srv) => {
                servers.push(srv);
                Cell::Values(Vec::new())
            }
            Err(e) => Cell::Failed(e),
        };
        row.cells.push((peer.to_string(), cell.clone()));
        cpu.cells.push((peer.to_string(), cell));
    }
    say(format!("multi-loop HTTP: wrk -t2 -c100, {rounds} rounds × {secs} s per server"));
    let mut errors = Vec::new();
    for round in 0..rounds {
        for k in 0..servers.len() {
            let srv = &servers[(round + k) % servers.len()];
            let before = cpu_ticks(srv.child.id());
            let out = Command::new("wrk")
                .args(["-t2", "-c100", &format!("-d{secs}s"), &format!("http://{}/", srv.addr())])
                .output()
                .expect("run wrk");
            let after = cpu_ticks(srv.child.id());
            let wrk = parse_wrk(&String::from_utf8_lossy(&out.stdout));
            if let Some(e) = wrk.socket_errors {
                errors.push(format!("{} round {round}: {e}", srv.name));
            }
            if let (Some((u0, s0)), Some((u1, s1)), Some(n)) = (before, after, wrk.requests)
                && n > 0.0
                && let Some((_, Cell::Values(v))) = cpu.cells.iter_mut().find(|(p, _)| *p == srv.name)
            {
                v.push(((u1 - u0) + (s1 - s0)) as f64 * 1e6 / clock_ticks_per_second() / n);
            }
            let cell = row.cells.iter_mut().find(|(p, _)| *p == srv.name).map(|(_, c)| c).unwrap();
            match (wrk.requests_per_s, wrk.non_2xx) {
                (Some(r), 0) => {
                    if let Cell::Values(v) = cell {
                        v.push(r);
                    }
                }
                (_, bad) => *cell = Cell::Failed(format!("wrk: {bad} non-2xx responses or no result")),
            }
        }
    }
    row.notes.push(format!(
        "nothing pinned; `wrk -t2 -c100 -d{secs}s` shares the 2 cores with the server; {rounds} rounds, \
         interleaved; every server answers `GET /` with 200 and the hello body (checked before the run; \
         wrk's non-2xx count must be 0)"
    ));
    cpu.notes.push(
        "the server process's utime + stime from /proc/PID/stat across each wrk run, divided by the requests \
         wrk completed"
            .into(),
    );
    for e in errors {
        row.notes.push(format!("wrk reported {e}"));
    }
    s.rows.push(row);
    s.rows.push(cpu);
}

//! The suite's targets, judged on the numbers of one run.
//!
//! Each Rust row is judged against the best Rust peer of the same run (the
//! peer with the best median among tokio, smol and calloop, whichever have
//! the operation), on the median of the paired per-round ratios. Python
//! peers are no target: comparing a Rust closure with a Python callback
//! says nothing about the loop. The echo and memory rows are also held to
//! the previous run (the raw values the suite is about to overwrite): echo
//! rows by evloop's ratio to the best Rust peer, since absolute times move
//! with the machine's load from run to run; memory rows by the RSS itself.

use super::{fmt_ratio, relative_speed};
use crate::common::Row;
use crate::suite::{Suite, Target};

/// How much worse than the previous run an echo ratio or a memory figure
/// may be before the "no worse than the last run" target fails: the run to
/// run spread of a paired ratio on the shared 2-core machines.
const PREVIOUS_SLACK: f64 = 0.05;

fn find<'a>(rows: &'a [Row], bench: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.bench == bench)
}

/// The best of `peers` on `row` (lowest median for times, highest for
/// rates), with evloop's speed relative to it (above 1: evloop faster).
fn best_peer<'a>(row: &Row, evloop: &str, peers: &[&'a str]) -> Option<(&'a str, f64)> {
    let best = peers
        .iter()
        .filter_map(|p| Some((*p, row.median(p)?)))
        .min_by(|a, b| if row.lower_is_better { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) })?;
    Some((best.0, relative_speed(row, evloop, best.0)?))
}

fn not_measured(what: String) -> Target {
    Target { what, measured: "not measured".into(), pass: None }
}

/// evloop on `bench` against the best of `peers`: passes when evloop's
/// speed relative to it is at least `min_speed` (1: at least as fast; 0.5:
/// at most twice its time).
fn against_best(rows: &[Row], bench: &str, peers: &[&str], min_speed: f64, what: String) -> Target {
    let Some(row) = find(rows, bench) else { return not_measured(what) };
    let (Some((best, speed)), Some(e)) = (best_peer(row, "evloop", peers), row.median("evloop")) else {
        return not_measured(what);
    };
    let b = row.median(best).unwrap_or(f64::NAN);
    Target {
        what,
        measured: format!(
            "evloop {e:.1} {unit}, best Rust peer {best} {b:.1} {unit}: evloop {}× as fast",
            fmt_ratio(speed),
            unit = row.unit
        ),
        pass: Some(speed >= min_speed),
    }
}

pub fn evaluate_targets(s: &mut Suite, previous: &[Row]) {
    let rows = &s.rows;
    let mut t = Vec::new();
    let m = |bench: &str, peer: &str| find(rows, bench).and_then(|r| r.median(peer));

    // A loop turn: evloop's callback chain against the best Rust peer's
    // cheapest turn (tokio and smol have no callbacks: their `yield_now`;
    // calloop: its own idle-callback chain).
    let what =
        "chain turn faster than the best Rust peer's loop turn (tokio/smol `yield_now`, calloop chain)";
    let turns = [("tokio", "yield_now"), ("smol", "yield_now"), ("calloop", "call_soon_chain")];
    let best_turn =
        turns.iter().filter_map(|(p, b)| Some((*p, *b, m(b, p)?))).min_by(|a, b| a.2.total_cmp(&b.2));
    t.push(match (m("call_soon_chain", "evloop"), best_turn) {
        (Some(e), Some((p, b, v))) => Target {
            what: what.into(),
            measured: format!(
                "evloop chain {e:.1} ns/turn, {p} `{b}` {v:.1} ns/turn ({}×)",
                fmt_ratio(v / e)
            ),
            pass: Some(e < v),
        },
        _ => not_measured(what.into()),
    });
    t.push(against_best(
        rows,
        "task_spawn",
        &["tokio", "smol", "calloop"],
        1.0,
        "`task_spawn` at or below the best Rust peer's time (tokio, smol, calloop)".into(),
    ));
    t.push(against_best(
        rows,
        "run_until_complete",
        &["smol", "tokio"],
        0.5,
        "`run_until_complete` of a trivial future within 2× the best Rust peer's `block_on` (smol, tokio)"
            .into(),
    ));
    // The 1 KiB echo: the floor and the best Rust peer.
    let what = "in-process 1 KiB echo ≤ 1.2× raw epoll and at or above the best Rust peer (tokio, smol)";
    t.push(
        match find(rows, "echo 1 KiB").map(|r| {
            (
                r.median("evloop"),
                relative_speed(r, "raw-epoll", "evloop"),
                best_peer(r, "evloop", &["tokio", "smol"]),
            )
        }) {
            Some((Some(e), Some(vs_floor), Some((best, speed)))) => Target {
                what: what.into(),
                measured: format!(
                    "evloop {e:.2} µs per round trip: {}× the floor's time; {}× as fast as {best}",
                    fmt_ratio(vs_floor),
                    fmt_ratio(speed)
                ),
                pass: Some(vs_floor <= 1.2 && speed >= 1.0),
            },
            _ => not_measured(what.into()),
        },
    );
    // Bulk: this run's size (64 MiB with --quick, 256 MiB in a full run;
    // the target holds for both, each judged in its own run).
    match rows.iter().find(|r| r.section == "bulk" && r.unit == "MiB/s") {
        Some(r) => t.push(against_best(
            rows,
            &r.bench.clone(),
            &["tokio", "smol"],
            1.0,
            format!("{} at or above the best Rust peer's MiB/s (tokio, smol)", r.bench),
        )),
        None => t.push(not_measured("bulk transfer at or above the best Rust peer's MiB/s".into())),
    }
    let what = "HTTP hello ≥ 1.0× tokio+hyper requests/s";
    let http = rows.iter().find(|r| r.section == "http");
    t.push(
        match http.and_then(|r| {
            Some((
                r.median("evloop http_hello")?,
                r.median("tokio+hyper")?,
                relative_speed(r, "evloop http_hello", "tokio+hyper")?,
            ))
        }) {
            Some((e, h, r)) => Target {
                what: what.into(),
                measured: format!("evloop {e:.0} req/s, tokio+hyper {h:.0} req/s: {}×", fmt_ratio(r)),
                pass: Some(r >= 1.0),
            },
            None => not_measured(what.into()),
        },
    );
    for bench in ["hyper hello", "axum hello"] {
        let what = format!("{bench} on evloop ≥ 1.0× on tokio current-thread, requests/s");
        let row = rows.iter().find(|r| r.section == "eco" && r.bench == format!("{bench}, wrk -c100"));
        t.push(
            match row.and_then(|r| {
                Some((r.median("evloop")?, r.median("tokio")?, relative_speed(r, "evloop", "tokio")?))
            }) {
                Some((e, k, r)) => Target {
                    what,
                    measured: format!("evloop {e:.0} req/s, tokio {k:.0} req/s: {}×", fmt_ratio(r)),
                    pass: Some(r >= 1.0),
                },
                None => not_measured(what),
            },
        );
    }
    let what = "1M pending timers ≤ 128 MiB RSS";
    t.push(match m("1M pending timers: RSS", "evloop") {
        Some(v) => Target {
            what: what.into(),
            measured: format!(
                "{v:.1} MiB (peak {:.1} MiB)",
                m("1M pending timers: peak (VmHWM)", "evloop").unwrap_or(f64::NAN)
            ),
            pass: Some(v <= 128.0),
        },
        None => not_measured(what.into()),
    });
    let what = "10k idle TCP connections ≤ 64 MiB RSS";
    let conns = rows.iter().find(|r| r.bench.ends_with("idle TCP connections: server RSS"));
    t.push(match conns.and_then(|r| Some((r.bench.clone(), r.median("evloop")?))) {
        Some((bench, v)) => Target {
            what: what.into(),
            measured: format!("{v:.1} MiB ({bench})"),
            pass: Some(v <= 64.0 && bench.starts_with("10k")),
        },
        None => not_measured(what.into()),
    });
    t.extend(against_previous(rows, previous));
    s.targets = t;
}

/// Echo and memory rows no worse than in the previous run.
fn against_previous(rows: &[Row], previous: &[Row]) -> Vec<Target> {
    let mut t = Vec::new();
    if previous.is_empty() {
        t.push(not_measured(
            "echo and memory rows no worse than the previous run (no previous raw.tsv)".into(),
        ));
        return t;
    }
    for row in rows.iter().filter(|r| r.section == "echo") {
        let what = format!("`{}` no worse than the previous run (evloop ÷ best Rust peer)", row.bench);
        let now = best_peer(row, "evloop", &["tokio", "smol"]);
        let before = find(previous, &row.bench).and_then(|p| best_peer(p, "evloop", &["tokio", "smol"]));
        t.push(match (now, before) {
            (Some((p_now, now)), Some((p_before, before))) => Target {
                what,
                measured: format!(
                    "{}× as fast as {p_now}; previous run {}× as fast as {p_before}",
                    fmt_ratio(now),
                    fmt_ratio(before)
                ),
                pass: Some(now >= before * (1.0 - PREVIOUS_SLACK)),
            },
            _ => not_measured(what),
        });
    }
    for row in rows.iter().filter(|r| r.section == "memory" && r.bench.ends_with("RSS")) {
        let what = format!("`{}` no worse than the previous run", row.bench);
        let before = find(previous, &row.bench).and_then(|p| p.median("evloop"));
        t.push(match (row.median("evloop"), before) {
            (Some(now), Some(before)) => Target {
                what,
                measured: format!("{now:.1} MiB; previous run {before:.1} MiB"),
                pass: Some(now <= before * (1.0 + PREVIOUS_SLACK)),
            },
            _ => not_measured(what),
        });
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Cell;

    fn row(section: &'static str, bench: &str, unit: &str, lower: bool, cells: &[(&str, &[f64])]) -> Row {
        let mut r = Row::new(section, bench, unit, lower);
        for (p, v) in cells {
            r.cells.push((p.to_string(), Cell::Values(v.to_vec())));
        }
        r
    }

    #[test]
    fn the_best_peer_is_the_fastest_whichever_way_the_unit_points() {
        let times = row(
            "micro",
            "task_spawn",
            "ns/task",
            true,
            &[("evloop", &[200.0]), ("tokio", &[300.0]), ("smol", &[100.0])],
        );
        let (best, speed) = best_peer(&times, "evloop", &["tokio", "smol", "calloop"]).unwrap();
        assert_eq!(best, "smol");
        assert!((speed - 0.5).abs() < 1e-9, "evloop takes twice smol's time: {speed}");
        let rates = row(
            "bulk",
            "bulk 64 MiB",
            "MiB/s",
            false,
            &[("evloop", &[900.0]), ("tokio", &[1000.0]), ("smol", &[800.0])],
        );
        let (best, speed) = best_peer(&rates, "evloop", &["tokio", "smol"]).unwrap();
        assert_eq!(best, "tokio");
        assert!((speed - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_rust_row_is_judged_on_the_best_rust_peer_and_python_is_ignored() {
        let rows = [row(
            "micro",
            "task_spawn",
            "ns/task",
            true,
            &[("evloop", &[150.0]), ("uvloop", &[1000.0]), ("tokio", &[200.0]), ("calloop", &[120.0])],
        )];
        let t = against_best(&rows, "task_spawn", &["tokio", "smol", "calloop"], 1.0, "t".into());
        assert_eq!(t.pass, Some(false), "calloop is faster: {}", t.measured);
        assert!(t.measured.contains("calloop"), "{}", t.measured);
        let t = against_best(&rows, "task_spawn", &["tokio"], 1.0, "t".into());
        assert_eq!(t.pass, Some(true));
        let t = against_best(&rows, "run_until_complete", &["smol"], 0.5, "t".into());
        assert_eq!(t.pass, None, "a row that did not run is not measured");
    }

    #[test]
    fn echo_and_memory_rows_are_held_to_the_previous_run() {
        let echo = |e: f64| {
            row("echo", "echo 1 KiB", "µs/round trip", true, &[("evloop", &[e]), ("tokio", &[10.0])])
        };
        let mem = |e: f64| row("memory", "1M pending timers: RSS", "MiB", true, &[("evloop", &[e])]);
        let previous = [echo(10.0), mem(80.0)];
        // 2 % slower relative to tokio and 1 % more memory: within the slack.
        let t = against_previous(&[echo(10.2), mem(80.8)], &previous);
        assert_eq!(t.iter().map(|t| t.pass).collect::<Vec<_>>(), [Some(true), Some(true)]);
        // 20 % slower and 20 % more memory: both fail.
        let t = against_previous(&[echo(12.0), mem(96.0)], &previous);
        assert_eq!(t.iter().map(|t| t.pass).collect::<Vec<_>>(), [Some(false), Some(false)]);
        let t = against_previous(&[echo(10.0)], &[]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].pass, None, "no previous run: not measured");
    }
}

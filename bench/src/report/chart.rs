//! The chart of BENCHMARKS.md (plotters, SVG backend).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{fmt_ratio, relative_speed};
use crate::common::{Cell, Row};
use crate::suite::SECTIONS;

/// One panel of the chart: groups (rows) of bars (peers), each bar the
/// peer's speed relative to `base`.
pub struct Panel<'a> {
    pub title: String,
    pub rows: Vec<&'a Row>,
    pub peers: Vec<&'a str>,
    pub base: &'a str,
    /// The x axis' description.
    pub axis: String,
}

const PALETTE: [RGBColor; 9] = [
    RGBColor(0xd6, 0x27, 0x28), // evloop: red
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0x17, 0xbe, 0xcf),
];

fn color_of(peer: &str) -> RGBColor {
    const ORDER: [&str; 12] = [
        "evloop",
        "asyncio",
        "uvloop",
        "tokio",
        "smol",
        "calloop",
        "raw-epoll",
        "evloop-streams",
        "uvloop+httptools",
        "tokio+hyper",
        "asyncio+httptools",
        "evloop http_hello",
    ];
    let i = ORDER.iter().position(|p| *p == peer).unwrap_or(8);
    match peer {
        "evloop-streams" => RGBColor(0xf4, 0xa5, 0xa5),
        "evloop http_hello" => PALETTE[0],
        "uvloop+httptools" => PALETTE[2],
        "asyncio+httptools" => PALETTE[1],
        "tokio+hyper" => PALETTE[3],
        _ => PALETTE[i.min(8)],
    }
}

fn fmt_axis(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{:.1}", x).trim_end_matches(".0").to_string()
    } else {
        let digits = (-x.log10()).ceil() as usize + 1;
        let s = format!("{x:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws the panels stacked vertically into an SVG file.
pub fn chart(path: &Path, panels: &[Panel<'_>]) -> Result<(), Box<dyn std::error::Error>> {
    let bar_h = 9u32;
    let heights: Vec<u32> =
        panels.iter().map(|p| 110 + p.rows.len() as u32 * (p.peers.len() as u32 * bar_h + 14)).collect();
    let total: u32 = heights.iter().sum();
    let root = SVGBackend::new(path, (1100, total)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut areas = Vec::new();
    let mut rest = root.clone();
    for h in &heights {
        let (top, bottom) = rest.split_vertically(*h);
        areas.push(top);
        rest = bottom;
    }
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    panel: &Panel<'_>,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = panel.rows.len();
    // Relative speeds, clamped into the axis range.
    let mut lo = 1.0f64;
    let mut hi = 1.0f64;
    for row in &panel.rows {
        for p in &panel.peers {
            if let Some(r) = relative_speed(row, p, panel.base) {
                lo = lo.min(r);
                hi = hi.max(r);
            }
        }
    }
    // A margin on both sides; at least 0.5×–2× so that 1 is never at an edge.
    let lo = (lo / 1.6).clamp(1e-5, 0.5);
    let hi = (hi * 1.6).max(2.0);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(260)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(12)
        .x_desc(panel.axis.clone())
        .x_label_formatter(&|x| format!("{}×", fmt_axis(*x)))
        .label_style(("sans-serif", 13))
        .draw()?;
    let peers = &panel.peers;
    let band = 0.8 / peers.len() as f64;
    for (k, p) in peers.iter().enumerate() {
        let color = color_of(p);
        let bars: Vec<Rectangle<(f64, f64)>> = panel
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let r = relative_speed(row, p, panel.base)?.clamp(lo, hi);
                // Row 0 at the top; peers top-down within a group.
                let y_top = (n - 1 - i) as f64 + 0.9 - k as f64 * band;
                Some(Rectangle::new([(lo, y_top - band * 0.9), (r, y_top)], color.filled()))
            })
            .collect();
        // Each bar's value at its end, so that narrow ranges read well.
        let value_style =
            TextStyle::from(("sans-serif", 9).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let values: Vec<Text<'_, (f64, f64), String>> = panel
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let raw = relative_speed(row, p, panel.base)?;
                let y_top = (n - 1 - i) as f64 + 0.9 - k as f64 * band;
                let label = format!("{}×", fmt_ratio(raw));
                Some(Text::new(label, (raw.clamp(lo, hi), y_top - band * 0.45), value_style.clone()))
            })
            .collect();
        chart.draw_series(values)?;
        chart
            .draw_series(bars)?
            .label(*p)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart.draw_series(LineSeries::new(vec![(1.0, 0.0), (1.0, n as f64)], BLACK.stroke_width(1)))?;
    // The row names, right-aligned left of the plot (row 0 at the top).
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, row) in panel.rows.iter().enumerate() {
        // backend_coord is in the whole image; `area` draws relative to its corner.
        let (px, py) = chart.backend_coord(&(lo, (n - 1 - i) as f64 + 0.5));
        let (bx, by) = area.get_base_pixel();
        area.draw(&Text::new(row.bench.clone(), (px - bx - 8, py - by), style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// The chart of BENCHMARKS.md: one panel per group of sections.
pub fn draw_chart(rows: &[Row], path: &Path) {
    let pick = |key: &str| -> Vec<&Row> { rows.iter().filter(|r| r.section == key).collect() };
    let mut panels = Vec::new();
    let micro_rows = pick("micro");
    if !micro_rows.is_empty() {
        panels.push(Panel {
            title: "Loop micro benchmarks: speed relative to evloop".into(),
            rows: micro_rows,
            peers: vec!["evloop", "asyncio", "uvloop", "tokio", "smol", "calloop"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    // Speeds only: the bulk section's syscall counts stay in the tables.
    let io_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| (r.section == "echo" || r.section == "bulk") && !r.unit.ends_with("/MiB"))
        .collect();
    if !io_rows.is_empty() {
        panels.push(Panel {
            title: "In-process I/O on one loop: speed relative to evloop".into(),
            rows: io_rows,
            peers: vec!["evloop", "evloop-streams", "asyncio", "uvloop", "tokio", "smol", "raw-epoll"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    let cross = pick("cross");
    if !cross.is_empty() {
        panels.push(Panel {
            title: "Cross-process echo: round trips/s relative to evloop".into(),
            rows: cross,
            peers: vec!["evloop", "tokio", "asyncio", "uvloop"],
            base: "evloop",
            axis: "speed relative to evloop (log scale; right of 1 = faster than evloop)".into(),
        });
    }
    let http: Vec<&Row> = rows.iter().filter(|r| r.section == "http" && r.unit == "requests/s").collect();
    if !http.is_empty() {
        panels.push(Panel {
            title: "HTTP hello world (wrk): requests/s relative to evloop".into(),
            rows: http,
            peers: vec!["evloop http_hello", "tokio+hyper", "uvloop+httptools", "asyncio+httptools"],
            base: "evloop http_hello",
            axis: "requests/s relative to evloop's http_hello (log scale; right of 1 = more than evloop)"
                .into(),
        });
    }
    let memory: Vec<&Row> =
        rows.iter().filter(|r| r.section == "memory" && r.bench.ends_with("RSS")).collect();
    if !memory.is_empty() {
        panels.push(Panel {
            title: "Memory: resident set relative to evloop".into(),
            rows: memory,
            peers: vec!["evloop", "tokio", "asyncio", "uvloop"],
            base: "evloop",
            axis: "evloop's RSS ÷ the peer's (log scale; right of 1 = smaller than evloop)".into(),
        });
    }
    if !panels.is_empty()
        && let Err(e) = chart(path, &panels)
    {
        eprintln!("chart: {e}");
    }
}

/// Reads bench/results/raw.tsv back (for `evloop-bench chart`: redraw without a run).
pub fn rows_from_tsv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("read the raw.tsv");
    let mut rows: Vec<Row> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            continue;
        }
        let section =
            SECTIONS.iter().chain(["memory"].iter()).find(|s| **s == f[0]).copied().unwrap_or("micro");
        let value: f64 = f[5].parse().unwrap_or(f64::NAN);
        let i = match rows.iter().position(|r| r.section == section && r.bench == f[1]) {
            Some(i) => i,
            None => {
                rows.push(Row::new(section, f[1], f[2], !f[2].ends_with("/s")));
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        match row.cells.iter_mut().find(|(p, _)| p == f[3]) {
            Some((_, Cell::Values(v))) => v.push(value),
            _ => row.cells.push((f[3].to_string(), Cell::Values(vec![value]))),
        }
    }
    rows
}

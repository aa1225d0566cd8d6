//! BENCHMARKS.md tables and the chart (plotters, SVG backend).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::common::{Cell, Row, fmt_num, median, min_max};

/// The peer's speed relative to `base` (above 1: faster than `base`): the
/// median over the rounds of the per-round ratio when both have one value
/// per round (the peers of a round run back to back, so the ratio of a
/// round cancels most of the machine's load changes), else the ratio of
/// the medians.
pub fn relative_speed(row: &Row, peer: &str, base: &str) -> Option<f64> {
    let (p, b) = (row.values(peer)?, row.values(base)?);
    let speed = |p: f64, b: f64| if row.lower_is_better { b / p } else { p / b };
    if p.len() == b.len() && p.len() > 1 {
        let ratios: Vec<f64> = p.iter().zip(b).map(|(p, b)| speed(*p, *b)).collect();
        Some(median(&ratios))
    } else {
        Some(speed(median(p), median(b)))
    }
}

/// A markdown table: one line per row, one column per peer; each cell the
/// median, the min–max over the rounds, and the speed relative to `base`.
pub fn table(rows: &[&Row], peers: &[&str], base: &str, out: &mut String) {
    let _ = write!(out, "| benchmark | unit |");
    for p in peers {
        let _ = write!(out, " {p} |");
    }
    out.push('\n');
    out.push_str("| --- | --- |");
    for _ in peers {
        out.push_str(" ---: |");
    }
    out.push('\n');
    for row in rows {
        let dir = if row.lower_is_better { "lower is better" } else { "higher is better" };
        let _ = write!(out, "| `{}` | {} <sub>({dir})</sub> |", row.bench, row.unit);
        for p in peers {
            let cell = row.cells.iter().find(|(q, _)| q == p).map(|(_, c)| c);
            let text = match cell {
                None | Some(Cell::Na) => "n/a".to_string(),
                Some(Cell::Failed(why)) => format!("failed: {why}"),
                Some(Cell::Values(v)) if v.is_empty() => "n/a".to_string(),
                Some(Cell::Values(v)) => {
                    let med = median(v);
                    let mut s = format!("**{}**", fmt_num(med));
                    if v.len() > 1 {
                        let (lo, hi) = min_max(v);
                        let _ = write!(s, "<br><sub>{}–{}</sub>", fmt_num(lo), fmt_num(hi));
                    }
                    if *p != base
                        && let Some(r) = relative_speed(row, p, base)
                    {
                        let _ = write!(s, "<br><sub>{}× {base}</sub>", fmt_ratio(r));
                    }
                    s
                }
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.2}")
    } else if r >= 0.001 {
        format!("{r:.3}")
    } else {
        format!("{r:.1e}")
    }
}

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

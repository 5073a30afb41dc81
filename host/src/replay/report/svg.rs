//! The chart: a self-contained SVG (no script, no external font or stylesheet) of two panels
//! over the same simulated time axis: (a) the share of the backlog cloned, one step curve per
//! policy; (b) dispatches per minute, one line per policy and code host (colour: policy, dash
//! pattern: code host).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::axis::{self, Axis};
use super::format::{self, escape};
use super::{downsample, policy_colour, rows};
use crate::replay::Replay;
use crate::text::truncated;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 900.0;
/// The height of the title above the panels.
const TITLE_BAND: f64 = 44.0;
const PLOT_LEFT: f64 = 80.0;
const PLOT_RIGHT: f64 = 850.0;
const LEGEND_X: f64 = 885.0;
const LEGEND_ROW: f64 = 22.0;
/// Legend entries shown per panel; more are counted.
const LEGEND_ROWS: usize = 13;
/// Characters of a label a legend shows.
const LEGEND_LABEL_CHARS: usize = 36;
/// Points per curve at most: more than the plot's pixels across, so nothing visible is lost.
pub(super) const MAX_POINTS: usize = 2_000;
/// Curves are drawn at least this thick, so a screenshot shows them.
const STROKE: f64 = 3.0;
/// The dash pattern of each code host's lines, host `j` taking `DASHES[j % 5]`.
const DASHES: [&str; 5] = ["none", "12 6", "3 5", "14 5 3 5", "6 3"];
const GRID: &str = "#dddddd";
const INK: &str = "#222222";

/// A plot's area, in the SVG's coordinates.
#[derive(Clone, Copy)]
struct Plot {
    top: f64,
    bottom: f64,
    x: Axis,
    y: Axis,
}

impl Plot {
    fn x(self, value: f64) -> f64 {
        PLOT_LEFT + (value / self.x.end).clamp(0.0, 1.0) * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn y(self, value: f64) -> f64 {
        self.bottom - (value / self.y.end).clamp(0.0, 1.0) * (self.bottom - self.top)
    }
}

/// A two-panel chart of the replay, as one self-contained SVG document: (a) the backlog cloned
/// (%) over simulated time, one step curve per policy; (b) dispatches per minute per code host,
/// one line per policy and host. Policy `i` is drawn in [`super::POLICY_COLOURS`]`[i % 6]`;
/// curves are cut to at most 2,000 points each, so a million-repo run stays a small file.
pub fn svg(replay: &Replay) -> String {
    chart(replay, true)
}

/// The chart, with its title above the panels when `titled` (a page that shows the title
/// itself leaves it out).
pub(super) fn chart(replay: &Replay, titled: bool) -> String {
    let hosts: Vec<&str> = replay
        .runs
        .iter()
        .flat_map(|run| run.per_minute_by_host.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let last_clone = replay.runs.iter().filter_map(|run| run.cloned.last().map(|p| p.0)).fold(0.0, f64::max);
    let minutes = replay.runs.iter().flat_map(|run| run.per_minute_by_host.values().map(Vec::len)).max().unwrap_or(0);
    let x = axis::time(last_clone.max(minutes as f64 * 60.0));
    let peak = replay.runs.iter().flat_map(|run| run.per_minute_by_host.values().flatten()).copied().max().unwrap_or(0);

    let mut out = String::with_capacity(64 * 1024);
    // Untitled, the view starts below the title's band.
    let (top, height) = if titled { (0.0, HEIGHT) } else { (TITLE_BAND, HEIGHT - TITLE_BAND) };
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 {top} {WIDTH} {height}" font-family="sans-serif" font-size="13" fill="{INK}">"#
    );
    let _ = write!(out, r#"<rect y="{top}" width="{WIDTH}" height="{height}" fill="white"/>"#);
    if titled {
        let title = truncated(&rows::title(replay), 140);
        let _ =
            write!(out, r#"<text x="{PLOT_LEFT}" y="30" font-size="18" font-weight="bold">{}</text>"#, escape(&title));
    }

    let cloned = Plot { top: 84.0, bottom: 404.0, x, y: Axis { end: 100.0, step: 20.0 } };
    let heading = format!("(a) Backlog cloned, % of {} repos", format::count(replay.backlog));
    frame(&mut out, cloned, &heading, |v| format!("{v}%"));
    cloned_curves(&mut out, replay, cloned);
    policy_legend(&mut out, replay, cloned);

    let rate = Plot { top: 514.0, bottom: 834.0, x, y: axis::count(f64::from(peak)) };
    frame(&mut out, rate, "(b) Dispatches per minute, by code host", |v| format::count(v as u64));
    rate_lines(&mut out, replay, &hosts, rate);
    host_legend(&mut out, &hosts, rate);

    out.push_str("</svg>");
    out
}

/// A panel's heading, grid, axes, tick labels and the time axis's title.
fn frame(out: &mut String, plot: Plot, heading: &str, y_label: impl Fn(f64) -> String) {
    let _ = write!(
        out,
        r#"<text x="{PLOT_LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        plot.top - 14.0,
        escape(heading)
    );
    for value in plot.y.ticks() {
        let y = plot.y(value);
        let _ = write!(out, r#"<line x1="{PLOT_LEFT}" y1="{y:.1}" x2="{PLOT_RIGHT}" y2="{y:.1}" stroke="{GRID}"/>"#);
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            PLOT_LEFT - 8.0,
            y + 4.0,
            escape(&y_label(value))
        );
    }
    for value in plot.x.ticks() {
        let x = plot.x(value);
        let _ =
            write!(out, r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="{GRID}"/>"#, plot.top, plot.bottom);
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            plot.bottom + 18.0,
            escape(&axis::time_label(value))
        );
    }
    let _ = write!(
        out,
        r#"<path d="M{PLOT_LEFT},{top}V{bottom}H{PLOT_RIGHT}" fill="none" stroke="{INK}"/>"#,
        top = plot.top,
        bottom = plot.bottom
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-style="italic">simulated time</text>"#,
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        plot.bottom + 38.0
    );
}

/// Panel (a): one step curve per policy; a run that cloned the whole backlog stays at 100%
/// to the axis's end.
fn cloned_curves(out: &mut String, replay: &Replay, plot: Plot) {
    let percent = |cloned: u64| if replay.backlog == 0 { 0.0 } else { cloned as f64 * 100.0 / replay.backlog as f64 };
    for (i, run) in replay.runs.iter().enumerate() {
        let mut points = downsample::steps(&run.cloned, MAX_POINTS);
        if points.is_empty() {
            points.push((0.0, 0));
        }
        let mut d = String::with_capacity(points.len() * 16);
        let _ = write!(d, "M{:.1},{:.1}", plot.x(points[0].0), plot.y(percent(points[0].1)));
        for &(t, cloned) in &points[1..] {
            let _ = write!(d, "H{:.1}V{:.1}", plot.x(t), plot.y(percent(cloned)));
        }
        if replay.backlog > 0 && points.last().is_some_and(|p| p.1 >= replay.backlog) {
            let _ = write!(d, "H{PLOT_RIGHT}");
        }
        let _ = write!(
            out,
            r#"<path class="cloned" d="{d}" fill="none" stroke="{}" stroke-width="{}"><title>{}</title></path>"#,
            policy_colour(i),
            stroke(i, replay.runs.len()),
            escape(&run.label)
        );
    }
}

/// The width of policy `i`'s lines of `n`: each one drawn is thinner than the one beneath it,
/// so policies that did the same stay visible on top of each other.
fn stroke(i: usize, n: usize) -> f64 {
    // At most 8 px wider than the top line, at most 3 px a step.
    let step = if n > 1 { (8.0 / (n - 1) as f64).min(3.0) } else { 0.0 };
    STROKE + step * n.saturating_sub(i + 1) as f64
}

/// Panel (b): one step line per policy and code host, level across each minute.
fn rate_lines(out: &mut String, replay: &Replay, hosts: &[&str], plot: Plot) {
    if hosts.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no dispatches</text>"#,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            (plot.top + plot.bottom) / 2.0
        );
    }
    for (i, run) in replay.runs.iter().enumerate() {
        for (j, host) in hosts.iter().enumerate() {
            let Some(counts) = run.per_minute_by_host.get(*host) else { continue };
            let points = downsample::minutes(counts, MAX_POINTS);
            let mut d = String::with_capacity(points.len() * 16);
            for (k, (minute, count)) in points.iter().enumerate() {
                let (x, y) = (plot.x(*minute as f64 * 60.0), plot.y(f64::from(*count)));
                if k == 0 {
                    let _ = write!(d, "M{x:.1},{y:.1}");
                } else {
                    let _ = write!(d, "H{x:.1}V{y:.1}");
                }
            }
            if let Some((minute, _)) = points.last() {
                let _ = write!(d, "H{:.1}", plot.x((*minute as f64 + 1.0) * 60.0));
            }
            let _ = write!(
                out,
                r#"<path class="rate" d="{d}" fill="none" stroke="{}" stroke-width="{}" stroke-dasharray="{}" stroke-linejoin="round"><title>{} · {}</title></path>"#,
                policy_colour(i),
                stroke(i, replay.runs.len()),
                DASHES[j % DASHES.len()],
                escape(&run.label),
                escape(host)
            );
        }
    }
}

/// Panel (a)'s legend: each policy's colour and label.
fn policy_legend(out: &mut String, replay: &Replay, plot: Plot) {
    let entries = replay.runs.iter().enumerate().map(|(i, run)| (policy_colour(i), "none", run.label.as_str()));
    legend(out, plot, "policy", entries.collect());
}

/// Panel (b)'s legend: each code host's dash pattern; colours are panel (a)'s.
fn host_legend(out: &mut String, hosts: &[&str], plot: Plot) {
    let entries = hosts.iter().enumerate().map(|(j, host)| (INK, DASHES[j % DASHES.len()], *host));
    legend(out, plot, "code host (colour: policy)", entries.collect());
}

/// A legend beside a plot: a heading, then a line sample and a label per entry, at most
/// [`LEGEND_ROWS`] of them and a count of the rest.
fn legend(out: &mut String, plot: Plot, heading: &str, entries: Vec<(&str, &str, &str)>) {
    let _ = write!(out, r#"<text x="{LEGEND_X}" y="{}" font-weight="bold">{}</text>"#, plot.top + 4.0, escape(heading));
    for (k, (colour, dash, label)) in entries.iter().take(LEGEND_ROWS).enumerate() {
        let y = plot.top + 4.0 + LEGEND_ROW * (k + 1) as f64;
        let _ = write!(
            out,
            r#"<line x1="{LEGEND_X}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-width="{STROKE}" stroke-dasharray="{dash}"/>"#,
            y - 4.0,
            LEGEND_X + 34.0,
            y - 4.0
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{y:.1}">{}</text>"#,
            LEGEND_X + 42.0,
            escape(&format::shortened(label, LEGEND_LABEL_CHARS))
        );
    }
    if entries.len() > LEGEND_ROWS {
        let y = plot.top + 4.0 + LEGEND_ROW * (LEGEND_ROWS + 1) as f64;
        let more = entries.len() - LEGEND_ROWS;
        let _ = write!(out, r#"<text x="{}" y="{y:.1}" font-style="italic">and {more} more</text>"#, LEGEND_X + 42.0);
    }
}

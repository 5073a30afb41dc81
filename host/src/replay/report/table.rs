//! The report as plain text for a terminal: the snapshot's facts, then one column per policy.

use std::fmt::Write as _;

use super::format::{self, width};
use super::rows::{self, Section};
use crate::replay::Replay;

/// Spaces between two columns.
const GAP: usize = 3;

/// Characters of a policy's label a column's header shows, so a few columns fit a terminal.
const HEADER_CHARS: usize = 32;

/// A plain-text side-by-side comparison of the replay's policies, for the terminal that ran the
/// replay: the snapshot's facts, then one aligned column per policy (time to 50/90/99/100% of
/// the backlog and to the top-N, peak dispatches per minute per code host and per shard, and
/// the totals). Text from outside is stripped of control characters, so a label cannot drive
/// the terminal.
pub fn table(replay: &Replay) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", format::terminal(&rows::title(replay)));
    let facts = rows::facts(replay);
    let name_width = facts.iter().map(|(name, _)| width(name)).max().unwrap_or(0);
    for (name, value) in &facts {
        let _ = writeln!(out, "  {name:<name_width$}  {}", format::terminal(value));
    }
    out.push('\n');

    let sections = rows::sections(replay);
    let headers: Vec<String> = replay
        .runs
        .iter()
        .map(|run| format::shortened(&format::terminal(&run.label), HEADER_CHARS).into_owned())
        .collect();
    let labels = |s: &Section| s.rows.iter().map(|r| 2 + width(&format::terminal(&r.label))).collect::<Vec<_>>();
    let label_width = sections.iter().flat_map(|s| labels(s).into_iter().chain([width(s.title)])).max().unwrap_or(0);
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, header)| {
            let cells = sections.iter().flat_map(|s| &s.rows).map(|r| r.cells.get(i).map_or(0, |c| width(c)));
            cells.chain([width(header)]).max().unwrap_or(0)
        })
        .collect();

    line(&mut out, "", label_width, &headers, &widths);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &"-".repeat(label_width), label_width, &rule, &widths);
    for section in &sections {
        let _ = writeln!(out, "{}", section.title);
        if section.rows.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for row in &section.rows {
            line(&mut out, &format!("  {}", format::terminal(&row.label)), label_width, &row.cells, &widths);
        }
    }
    out
}

/// One table line: the label left-aligned, each cell right-aligned in its column, no trailing
/// spaces.
fn line(out: &mut String, label: &str, label_width: usize, cells: &[String], widths: &[usize]) {
    let mut text = format!("{label}{}", " ".repeat(label_width.saturating_sub(width(label))));
    for (cell, w) in cells.iter().zip(widths) {
        let pad = GAP + w.saturating_sub(width(cell));
        text.push_str(&" ".repeat(pad));
        text.push_str(cell);
    }
    let _ = writeln!(out, "{}", text.trim_end());
}

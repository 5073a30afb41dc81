//! What the report's tables say, before any rendering: the snapshot's facts, then sections of
//! rows with one cell per policy run. The text table and the HTML page both render these, so
//! the terminal and the browser show the same numbers.

use std::collections::{BTreeMap, BTreeSet};

use super::format::{self, NOT_APPLICABLE};
use crate::replay::{PolicyRun, Replay};

/// Shard addresses the facts list by name; more are counted.
const SHARDS_LISTED: usize = 6;

/// The title of the report.
pub(super) fn title(replay: &Replay) -> String {
    format!("What-if replay of {}", replay.source)
}

/// The snapshot's facts, as `(name, value)`.
pub(super) fn facts(replay: &Replay) -> Vec<(&'static str, String)> {
    let mut shards = format::count(replay.shards.len() as u64);
    if !replay.shards.is_empty() {
        let listed: Vec<&str> = replay.shards.iter().take(SHARDS_LISTED).map(String::as_str).collect();
        shards = format!("{shards}: {}", listed.join(", "));
        if replay.shards.len() > SHARDS_LISTED {
            shards.push_str(&format!(" and {} more", replay.shards.len() - SHARDS_LISTED));
        }
    }
    vec![
        ("snapshot", replay.source.clone()),
        ("taken at", replay.taken_at.clone()),
        ("repos", format::count(replay.repos)),
        ("backlog", format!("{} not cloned at the snapshot", format::count(replay.backlog))),
        ("shards", shards),
        ("tick", format::duration(replay.tick_secs)),
        ("clone time", replay.clone_time.clone()),
    ]
}

/// A titled group of rows.
pub(super) struct Section {
    pub title: &'static str,
    pub rows: Vec<Row>,
}

/// One row: its label and one cell per policy run, in the replay's order.
pub(super) struct Row {
    pub label: String,
    pub cells: Vec<String>,
}

/// The sections of the comparison table.
pub(super) fn sections(replay: &Replay) -> Vec<Section> {
    let runs = &replay.runs;
    let row =
        |label: String, cell: &dyn Fn(&PolicyRun) -> String| Row { label, cells: runs.iter().map(cell).collect() };

    let mut time = Vec::new();
    for percent in [50, 90, 99, 100] {
        time.push(row(format!("{percent}% of backlog cloned"), &|run: &PolicyRun| match run
            .milestones
            .iter()
            .find(|m| m.percent == percent)
        {
            Some(m) => format::milestone(m.at_secs),
            None => NOT_APPLICABLE.to_string(),
        }));
    }
    if let Some(top) = top_label(replay) {
        type Pick = fn(&crate::replay::TopCloned) -> Option<f64>;
        let half: Pick = |t| t.half_at_secs;
        let all: Pick = |t| t.all_at_secs;
        for (what, pick) in [("half cloned", half), ("all cloned", all)] {
            time.push(row(format!("{top}: {what}"), &|run: &PolicyRun| {
                run.top.as_ref().map_or_else(|| NOT_APPLICABLE.to_string(), |t| format::milestone(pick(t)))
            }));
        }
    }

    let peaks = |per: fn(&PolicyRun) -> &BTreeMap<String, Vec<u32>>| -> Vec<Row> {
        let peaks: Vec<BTreeMap<&str, u32>> =
            runs.iter().map(|run| PolicyRun::peaks(per(run)).into_iter().collect()).collect();
        let keys: BTreeSet<&str> = peaks.iter().flat_map(|p| p.keys().copied()).collect();
        keys.into_iter()
            .map(|key| Row {
                label: key.to_string(),
                cells: peaks.iter().map(|p| format::count(u64::from(p.get(key).copied().unwrap_or(0)))).collect(),
            })
            .collect()
    };

    let totals = vec![
        row("dispatches".into(), &|run| format::count(run.dispatches)),
        row("retries".into(), &|run| format::count(run.retries)),
        row("gave up".into(), &|run| format::count(run.gave_up)),
        row("ticks".into(), &|run| format::count(run.ticks)),
        row("fallbacks to built-in order".into(), &|run| format::count(run.fallbacks)),
        row("wall time".into(), &|run| format::duration(run.wall_secs)),
    ];

    // The first repos of the top-N listing, by name: when each policy cloned it, and why it
    // placed it there (cut for the table; replay.json holds the whole sentence).
    let listed: Vec<&str> = runs
        .iter()
        .max_by_key(|run| run.top_repos.len())
        .map_or_else(Vec::new, |run| run.top_repos.iter().map(|t| t.name.as_str()).collect());
    let listed_row = |name: &str, cell: &dyn Fn(&crate::replay::TopRepo) -> String| Row {
        label: name.to_string(),
        cells: runs
            .iter()
            .map(|run| run.top_repos.iter().find(|t| t.name == name).map_or_else(|| NOT_APPLICABLE.to_string(), cell))
            .collect(),
    };
    let top_cloned: Vec<Row> =
        listed.iter().map(|name| listed_row(name, &|t| format::milestone(t.cloned_at_secs))).collect();
    let top_why: Vec<Row> = listed
        .iter()
        .map(|name| {
            listed_row(name, &|t| {
                t.why
                    .as_deref()
                    .map_or_else(|| "(cannot explain)".to_string(), |why| crate::text::truncated(why, WHY_BYTES))
            })
        })
        .collect();

    let mut sections = vec![
        Section { title: "Simulated time until", rows: time },
        Section { title: "Peak dispatches per minute, by code host", rows: peaks(|run| &run.per_minute_by_host) },
        Section { title: "Peak dispatches per minute, by shard", rows: peaks(|run| &run.per_minute_by_shard) },
        Section { title: "Totals", rows: totals },
    ];
    if !top_cloned.is_empty() {
        sections.insert(1, Section { title: "Top repos: cloned after", rows: top_cloned });
        sections
            .insert(2, Section { title: "Top repos: why, in each policy's words (at the snapshot)", rows: top_why });
    }
    sections
}

/// The longest explanation a table cell shows.
const WHY_BYTES: usize = 60;

/// The label of the top-N rows: the replay's own (`top 100 by stars`), else `top N` from a
/// run that has one; `None` when no run tracked a top-N listing.
fn top_label(replay: &Replay) -> Option<String> {
    let n = replay.runs.iter().find_map(|run| run.top.map(|t| t.n));
    match (&replay.top, n) {
        (Some(label), _) => Some(label.clone()),
        (None, Some(n)) => Some(format!("top {}", format::count(n))),
        (None, None) => None,
    }
}

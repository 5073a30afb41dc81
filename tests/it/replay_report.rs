//! The what-if replay's HTML report, rendered by headless Chromium: an operator opening it sees
//! each policy's curves in the policy's colour. Hand-made runs: this checks the rendering; the
//! replay's own output is fed in by the end-to-end replay test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clonekeeper::replay::report::{html, POLICY_COLOURS};
use clonekeeper::replay::{Milestone, PolicyRun, Replay, TopCloned};

use crate::support::browser::{screenshot, Image};

const BACKLOG: u64 = 20_000;

/// Pixels a policy's colour must cover to count as drawn: its two curves cover thousands (a
/// 3-pixel line across a 770-pixel plot, twice); a legend sample is about a hundred, and
/// antialiasing blends a colour with white, which leaves it out of the tolerance.
const DRAWN: usize = 1_500;

/// Pixels of a colour that count as absent: a few stray blends at most.
const ABSENT: usize = 20;

/// Per-channel tolerance when matching a colour: the curves' cores are the colour exactly.
const TOLERANCE: u8 = 12;

/// A run cloning `BACKLOG * share` repos along `shape(0..=1)` over `secs`, one point per
/// change (thousands of points, so the chart's downsampling is in the picture too).
fn run(label: &str, secs: f64, share: f64, shape: fn(f64) -> f64, hosts: &[(&str, u32)]) -> PolicyRun {
    let total = (BACKLOG as f64 * share) as u64;
    let cloned: Vec<(f64, u64)> = (0..=total).map(|c| (secs * shape(c as f64 / total as f64), c)).collect();
    let at = |percent: u64| cloned.iter().find(|p| p.1 * 100 >= BACKLOG * percent).map(|p| p.0);
    let minutes = (secs / 60.0).ceil() as usize;
    let per_minute_by_host: BTreeMap<String, Vec<u32>> = hosts
        .iter()
        .map(|(host, peak)| {
            let curve = (0..minutes).map(|m| (f64::from(*peak) * (1.0 - m as f64 / minutes as f64)) as u32);
            (host.to_string(), curve.collect())
        })
        .collect();
    PolicyRun {
        top_repos: Vec::new(),
        label: label.to_string(),
        milestones: [50, 90, 99, 100].map(|p| Milestone { percent: p as u8, at_secs: at(p) }),
        top: Some(TopCloned { n: 100, half_at_secs: at(1), all_at_secs: at(2) }),
        per_minute_by_shard: BTreeMap::from([(
            "gitserver-0:3178".into(),
            per_minute_by_host.values().flatten().copied().collect(),
        )]),
        per_minute_by_host,
        dispatches: total + 40,
        retries: 40,
        gave_up: BACKLOG - total,
        ticks: (secs / 30.0) as u64,
        fallbacks: 0,
        wall_secs: 1.5,
        cloned,
    }
}

fn replay(runs: Vec<PolicyRun>) -> Replay {
    Replay {
        source: "snapshots/prod-<2025-01-02>.json".into(),
        taken_at: "2025-01-02T03:04:05Z".into(),
        repos: 1_250_000,
        backlog: BACKLOG,
        shards: vec!["gitserver-0:3178".into(), "gitserver-1:3178".into()],
        tick_secs: 30.0,
        clone_time: "observed: 1,200 clones, median 4.1 s".into(),
        top: Some("top 100 by stars".into()),
        runs,
    }
}

/// Two policies with different curves: the built-in order clones steadily and finishes in 2
/// hours; the module front-loads and stops at 95% (its retrier gave up on the rest).
fn two_runs() -> Vec<PolicyRun> {
    vec![
        run("built-in", 7_200.0, 1.0, |x| x, &[("github.com", 120), ("gitlab.example.com", 40)]),
        run("stars.wasm", 5_400.0, 0.95, |x| x * x, &[("github.com", 90), ("gitlab.example.com", 70)]),
    ]
}

/// Writes the report of `replay` and Chromium's screenshot of it under the test binary's
/// scratch folder (kept after the run, to look at) and decodes the screenshot.
fn render(name: &str, replay: &Replay) -> (Image, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("replay_report");
    std::fs::create_dir_all(&dir).expect("creating the report folder");
    let page = dir.join(format!("{name}.html"));
    let png = dir.join(format!("{name}.png"));
    std::fs::write(&page, html(replay)).expect("writing the report");
    screenshot(&page, &png);
    (Image::open(&png), png)
}

#[test]
fn replay_report_shows_each_policys_curves_in_its_colour() {
    let (image, png) = render("two-policies", &replay(two_runs()));
    assert_eq!((image.width, image.height), (1400, 1800), "{}", png.display());
    for (i, label) in ["built-in", "stars.wasm"].iter().enumerate() {
        let pixels = image.count_colour(POLICY_COLOURS[i], TOLERANCE);
        assert!(pixels >= DRAWN, "{label}'s colour {} covers {pixels} pixels of {}", POLICY_COLOURS[i], png.display());
    }
}

#[test]
fn replay_report_of_one_policy_shows_no_second_colour() {
    let mut runs = two_runs();
    runs.truncate(1);
    let (image, png) = render("one-policy", &replay(runs));
    let first = image.count_colour(POLICY_COLOURS[0], TOLERANCE);
    let second = image.count_colour(POLICY_COLOURS[1], TOLERANCE);
    assert!(first >= DRAWN, "the first policy's colour covers {first} pixels of {}", png.display());
    assert!(second <= ABSENT, "a report of one policy shows {second} pixels of the second's colour: {}", png.display());
}

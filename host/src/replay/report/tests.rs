use std::collections::BTreeMap;

use expect_test::expect;

use super::format::{count, duration, escape, milestone, shortened};
use super::svg::MAX_POINTS;
use super::{axis, downsample, html, svg, table, POLICY_COLOURS};
use crate::replay::{Milestone, PolicyRun, Replay, TopCloned};

fn milestones(at: [Option<f64>; 4]) -> [Milestone; 4] {
    let percents = [50, 90, 99, 100];
    std::array::from_fn(|i| Milestone { percent: percents[i], at_secs: at[i] })
}

fn run(label: &str, cloned: Vec<(f64, u64)>, at: [Option<f64>; 4]) -> PolicyRun {
    PolicyRun {
        top_repos: Vec::new(),
        label: label.to_string(),
        cloned,
        milestones: milestones(at),
        top: None,
        per_minute_by_host: BTreeMap::new(),
        per_minute_by_shard: BTreeMap::new(),
        dispatches: 0,
        retries: 0,
        gave_up: 0,
        ticks: 0,
        fallbacks: 0,
        wall_secs: 0.0,
    }
}

fn replay(runs: Vec<PolicyRun>) -> Replay {
    Replay {
        source: "snap.json".into(),
        taken_at: "2025-01-02T03:04:05Z".into(),
        repos: 1_234_567,
        backlog: 1_000,
        shards: vec!["gitserver-0:3178".into(), "gitserver-1:3178".into()],
        tick_secs: 30.0,
        clone_time: "observed: 1,200 clones, median 4.1 s".into(),
        top: Some("top 100 by stars".into()),
        runs,
    }
}

/// Two runs that differ in every row: the built-in order finishes, the module does not.
fn sample() -> Replay {
    let mut builtin = run(
        "built-in",
        vec![(0.0, 0), (60.0, 500), (600.0, 900), (3_000.0, 990), (3_720.0, 1_000)],
        [Some(60.0), Some(600.0), Some(3_000.0), Some(3_720.0)],
    );
    builtin.top = Some(TopCloned { n: 100, half_at_secs: Some(250.0), all_at_secs: Some(12.46) });
    builtin.per_minute_by_host = BTreeMap::from([("github.com".into(), vec![3, 40, 7])]);
    builtin.per_minute_by_shard = BTreeMap::from([("gitserver-0:3178".into(), vec![2, 30])]);
    (builtin.dispatches, builtin.retries, builtin.gave_up, builtin.ticks, builtin.wall_secs) = (1_050, 50, 0, 125, 2.5);
    let mut stars = run("stars.wasm", vec![(0.0, 0), (30.0, 500), (90_000.0, 980)], [Some(30.0), None, None, None]);
    stars.top = Some(TopCloned { n: 100, half_at_secs: Some(5.0), all_at_secs: None });
    stars.per_minute_by_host =
        BTreeMap::from([("github.com".into(), vec![9, 9]), ("gitlab.example.com".into(), vec![1, 120])]);
    (stars.dispatches, stars.retries, stars.gave_up, stars.ticks, stars.fallbacks) = (1_200, 220, 20, 3_001, 4);
    replay(vec![builtin, stars])
}

#[test]
fn durations_read_like_a_person_would_write_them() {
    let cases = [
        (0.0, "0.0s"),
        (12.46, "12.5s"),
        (59.96, "1m 00s"),
        (250.0, "4m 10s"),
        (3_599.6, "1h 00m"),
        (3_720.0, "1h 02m"),
        (7_170.0, "2h 00m"),
        (90_000.0, "1d 01h"),
        (-1.0, "n/a"),
        (f64::NAN, "n/a"),
    ];
    for (secs, want) in cases {
        assert_eq!(duration(secs), want, "{secs} s");
    }
    assert_eq!(milestone(None), "not reached");
    assert_eq!(milestone(Some(250.0)), "4m 10s");
}

#[test]
fn counts_have_thousands_separators() {
    for (n, want) in
        [(0, "0"), (999, "999"), (1_000, "1,000"), (1_234_567, "1,234,567"), (u64::MAX, "18,446,744,073,709,551,615")]
    {
        assert_eq!(count(n), want);
    }
}

#[test]
fn table_shows_every_row_side_by_side() {
    expect![[r#"
        What-if replay of snap.json
          snapshot    snap.json
          taken at    2025-01-02T03:04:05Z
          repos       1,234,567
          backlog     1,000 not cloned at the snapshot
          shards      2: gitserver-0:3178, gitserver-1:3178
          tick        30.0s
          clone time  observed: 1,200 clones, median 4.1 s

                                                   built-in    stars.wasm
        ----------------------------------------   --------   -----------
        Simulated time until
          50% of backlog cloned                      1m 00s         30.0s
          90% of backlog cloned                     10m 00s   not reached
          99% of backlog cloned                     50m 00s   not reached
          100% of backlog cloned                     1h 02m   not reached
          top 100 by stars: half cloned              4m 10s          5.0s
          top 100 by stars: all cloned                12.5s   not reached
        Peak dispatches per minute, by code host
          github.com                                     40             9
          gitlab.example.com                              0           120
        Peak dispatches per minute, by shard
          gitserver-0:3178                               30             0
        Totals
          dispatches                                  1,050         1,200
          retries                                        50           220
          gave up                                         0            20
          ticks                                         125         3,001
          fallbacks to built-in order                     0             4
          wall time                                    2.5s          0.0s
    "#]]
    .assert_eq(&table(&sample()));
}

/// The comparison's header line and its rows (the lines under the rule that hold cells).
fn comparison(text: &str) -> (&str, Vec<&str>) {
    let lines: Vec<&str> = text.lines().skip_while(|l| !l.is_empty()).skip(1).collect();
    (lines[0], lines[2..].iter().copied().filter(|l| l.starts_with("  ")).collect())
}

#[test]
fn long_labels_keep_their_start_and_end() {
    assert_eq!(shortened("built-in", 8), "built-in");
    assert_eq!(shortened("prioritize-by-stars-v1.wasm", 16), "prioriti…v1.wasm");
    assert_eq!(shortened("prioritize-by-stars-v1.wasm", 15).chars().count(), 15);
    assert_eq!(shortened("äöüßäöü", 5), "äö…öü");
}

#[test]
fn table_columns_line_up() {
    let text = table(&sample());
    let (header, lines) = comparison(&text);
    // Every cell is right-aligned: it ends where its column's header ends.
    let ends: Vec<usize> =
        ["built-in", "stars.wasm"].iter().map(|h| header.find(h).expect("header") + h.len()).collect();
    let mut rows = 0;
    for line in lines {
        let chars: Vec<char> = line.chars().collect();
        for &end in &ends {
            assert!(chars[end - 1] != ' ' && chars.get(end).is_none_or(|c| *c == ' '), "misaligned: {line:?}");
        }
        assert_eq!(chars.len(), *ends.last().expect("columns"), "last column ends the line: {line:?}");
        rows += 1;
    }
    assert_eq!(rows, 15);
    assert_eq!(text.matches("not reached").count(), 4);
}

#[test]
fn top_rows_appear_only_with_a_top_listing() {
    let mut plain = sample();
    plain.top = None;
    assert!(table(&plain).contains("top 100: all cloned"), "a run's N names the rows when the replay has no label");
    for run in &mut plain.runs {
        run.top = None;
    }
    assert!(!table(&plain).contains("top"));
}

/// Parses `svg` as XML: the report is well-formed for every input.
fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("the SVG is not well-formed XML: {e}\n{svg}"))
}

fn paths<'a>(doc: &'a roxmltree::Document<'a>, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.has_tag_name("path") && n.attribute("class") == Some(class)).collect()
}

#[test]
fn svg_draws_one_thick_curve_per_policy_in_its_colour() {
    let runs = (0..8).map(|i| run(&format!("policy-{i}"), vec![(0.0, 0), (10.0 * i as f64, 500)], [None; 4]));
    let text = svg(&replay(runs.collect()));
    let doc = parse(&text);
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let curves = paths(&doc, "cloned");
    assert_eq!(curves.len(), 8);
    // Each curve is thinner than the one beneath it, so identical runs stay visible.
    let widths: Vec<f64> =
        curves.iter().filter_map(|c| c.attribute("stroke-width").and_then(|w| w.parse().ok())).collect();
    assert!(widths.windows(2).all(|w| w[0] > w[1]), "{widths:?}");
    assert!(widths[0] <= 11.0, "{widths:?}");
    for (i, curve) in curves.iter().enumerate() {
        assert_eq!(curve.attribute("stroke"), Some(POLICY_COLOURS[i % 6]), "policy {i}");
        let width: f64 = curve.attribute("stroke-width").and_then(|w| w.parse().ok()).expect("a stroke width");
        assert!(width >= 3.0, "policy {i} drawn {width} wide");
        let title = curve.children().find(|c| c.has_tag_name("title")).and_then(|t| t.text());
        assert_eq!(title, Some(format!("policy-{i}").as_str()));
    }
}

#[test]
fn svg_draws_a_line_per_policy_and_host_dashed_by_host() {
    let doc_text = svg(&sample());
    let doc = parse(&doc_text);
    let lines = paths(&doc, "rate");
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.attribute("stroke").unwrap_or(""), l.attribute("stroke-dasharray").unwrap_or("")))
        .collect();
    let (github, gitlab) = ("none", "12 6");
    assert_eq!(seen, [(POLICY_COLOURS[0], github), (POLICY_COLOURS[1], github), (POLICY_COLOURS[1], gitlab)]);
    for text in ["policy", "github.com", "gitlab.example.com", "100%", "(a) Backlog cloned, % of 1,000 repos"] {
        assert!(doc.descendants().any(|n| n.text() == Some(text)), "no text {text:?}");
    }
}

#[test]
fn hostile_text_is_escaped_everywhere() {
    let hostile = "<script>alert(\"x\")</script> & 'q' \u{1}\u{1b}[31m";
    let mut r = sample();
    r.runs[0].label = hostile.into();
    r.runs[1].per_minute_by_host.insert("<img src=x onerror=alert(1)>".into(), vec![1]);
    r.source = "</title><script>".into();
    r.top = Some("top <b>".into());

    let svg_text = svg(&r);
    let doc = parse(&svg_text);
    let title = paths(&doc, "cloned")[0].children().find(|c| c.has_tag_name("title")).and_then(|t| t.text());
    assert_eq!(title, Some("<script>alert(\"x\")</script> & 'q' \u{FFFD}\u{FFFD}[31m"), "the label survives as text");
    assert!(!doc.descendants().any(|n| n.has_tag_name("script") || n.has_tag_name("img")));

    let page = html(&r);
    for raw in ["<script", "<img", "<b>", "\u{1}", "\u{1b}"] {
        assert!(!page.contains(raw), "the page holds {raw:?} unescaped");
    }
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"));

    let text = table(&r);
    assert!(!text.contains(['\u{1}', '\u{1b}']), "the table holds terminal control characters");
    assert_eq!(escape("plain"), "plain");
}

#[test]
fn html_holds_the_chart_and_every_table_row() {
    let r = sample();
    let page = html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    let chart = &page[page.find("<svg").expect("the chart inline")..page.find("</svg>").expect("a whole chart") + 6];
    assert_eq!(paths(&parse(chart), "cloned").len(), 2, "both curves");
    assert_eq!(page.matches("What-if replay of snap.json").count(), 2, "the title once on the page, once in its tab");
    assert!(!page.contains("http://") || page.matches("http://").count() == 1, "only the SVG namespace");
    assert!(!page.contains("<link") && !page.contains("src="), "the page loads nothing");
    for line in comparison(&table(&r)).1 {
        // The first words of each row (its label) and its last cell.
        let label = line.trim().split("  ").next().expect("a label");
        let last = line.rsplit("   ").next().expect("a cell").trim();
        assert!(page.contains(&format!("<th scope=\"row\">{label}</th>")), "no row {label:?}");
        assert!(page.contains(&format!("<td>{last}</td>")), "no cell {last:?} of {label:?}");
    }
    assert_eq!(page.matches("<tr class=\"section\">").count(), 4);
    assert!(page.contains("<dt>clone time</dt><dd>observed: 1,200 clones, median 4.1 s</dd>"), "the facts");
}

#[test]
fn step_downsampling_keeps_the_ends_and_caps_the_points() {
    let points: Vec<(f64, u64)> = (0..1_000_000u64).map(|i| (i as f64 * 0.37 + (i % 7) as f64 * 0.01, i)).collect();
    let kept = downsample::steps(&points, MAX_POINTS);
    assert!(kept.len() <= MAX_POINTS && kept.len() > MAX_POINTS / 2, "{} points", kept.len());
    assert_eq!(kept.first(), points.first());
    assert_eq!(kept.last(), points.last());
    assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1), "a subsequence in order");

    let short = &points[..10];
    assert_eq!(downsample::steps(short, MAX_POINTS), short);
    assert_eq!(downsample::steps(&[], MAX_POINTS), []);
    // Out of time order or at one instant, the cap still holds.
    let shuffled: Vec<(f64, u64)> = (0..100_000u64).map(|i| ((i * 7_919 % 100_000) as f64, i)).collect();
    assert!(downsample::steps(&shuffled, 100).len() <= 100);
    let instant: Vec<(f64, u64)> = (0..5_000u64).map(|i| (5.0, i)).collect();
    assert_eq!(downsample::steps(&instant, 100), [(5.0, 0), (5.0, 4_999)]);
}

#[test]
fn minute_downsampling_keeps_peaks_and_ends() {
    let mut counts: Vec<u32> = (0..1_000_000u32).map(|m| m % 13).collect();
    counts[123_457] = 5_000;
    counts[999_999] = 1;
    let kept = downsample::minutes(&counts, MAX_POINTS);
    assert!(kept.len() <= MAX_POINTS, "{} points", kept.len());
    assert_eq!(kept.first(), Some(&(0, 0)));
    assert_eq!(kept.last(), Some(&(999_999, 1)));
    assert!(kept.contains(&(123_457, 5_000)), "the peak survives");
    assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(downsample::minutes(&[4, 5], MAX_POINTS), [(0, 4), (1, 5)]);
}

#[test]
fn a_million_point_run_makes_a_small_chart() {
    let mut r = sample();
    r.backlog = 1_000_000;
    r.runs[0].cloned = (0..=1_000_000u64).map(|i| (i as f64 * 0.5, i)).collect();
    r.runs[0].per_minute_by_host.insert("github.com".into(), (0..10_000u32).map(|m| m % 120).collect());
    let text = svg(&r);
    assert!(text.len() < 200_000, "{} bytes", text.len());
    parse(&text);
}

#[test]
fn axes_step_in_round_units() {
    let cases = [(3_720.0, 600.0, 4_200.0), (45.0, 10.0, 50.0), (0.0, 10.0, 60.0), (90_000.0, 21_600.0, 108_000.0)];
    for (max, step, end) in cases {
        assert_eq!(axis::time(max), axis::Axis { end, step }, "{max} s");
    }
    let long = axis::time(400.0 * 86_400.0);
    assert_eq!(long.step % 86_400.0, 0.0, "whole days");
    assert!(long.ticks().count() <= 9);
    assert_eq!(axis::count(120.0), axis::Axis { end: 120.0, step: 20.0 });
    assert_eq!(axis::count(3.0), axis::Axis { end: 3.0, step: 1.0 });
    assert_eq!(axis::count(0.0), axis::Axis { end: 1.0, step: 1.0 });
    let labels: Vec<String> = [0.0, 45.0, 1_800.0, 5_400.0, 172_800.0].map(axis::time_label).into();
    assert_eq!(labels, ["0", "45s", "30m", "1h 30m", "2d"]);
}

//! `clonekeeper replay`: what each policy would do to a snapshot's clone queue, side by side,
//! in the terminal and as an HTML report with a chart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::replay::clone_time::CloneTime;
use crate::replay::policies::Choice;
use crate::replay::{self, report, Top, TopBy};

/// The command's arguments, parsed.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The snapshot file (`clonekeeper snapshot`, or the one `clonekeeper demo` leaves).
    pub snapshot: PathBuf,
    /// A policy module (`.wasm`) to replay, or `builtin` for the built-in order and retry.
    /// Repeat to compare; each runs on the same clone times and failures.
    #[arg(long = "policy", required = true)]
    pub policies: Vec<String>,
    /// How long clones take: `observed` (learned from the snapshot's recent dispatches, with
    /// their failure rate) or a duration such as `20s` (every clone, none failing).
    #[arg(long, default_value = "observed")]
    pub clone_time: String,
    /// How often the replayed sidecar ticks (re-reads and re-orders) in simulated time:
    /// `auto` (the deployment's interval, or longer for a large backlog: see README) or a
    /// duration; the deployment's own interval replays its exact cadence, at more cost.
    #[arg(long, default_value = "auto")]
    pub tick: String,
    /// Follow the top N repos of the backlog (by --by) in the report.
    #[arg(long, default_value_t = 100)]
    pub top: usize,
    /// The column the top N are ranked by: stars, updated-at or created-at.
    #[arg(long, default_value = "stars")]
    pub by: String,
    /// Follow these repos instead (a file of names, one per line).
    #[arg(long)]
    pub top_names: Option<PathBuf>,
    /// Stop each replay after this much simulated time.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub horizon: Duration,
    /// Seeds the clone-time draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the report goes (report.html, chart.svg, replay.json); default: beside the
    /// snapshot, in NAME.replay/.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(args: ReplayArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clonekeeper replay: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &ReplayArgs) -> Result<(), String> {
    let capture = replay::capture::read(&args.snapshot)?;
    let clone_time = match args.clone_time.as_str() {
        "observed" => CloneTime::observed(&capture.clones).ok_or_else(|| {
            format!(
                "{}: the snapshot observed no successful clone to learn from; give --clone-time DURATION",
                args.snapshot.display()
            )
        })?,
        text => CloneTime::Fixed(
            humantime::parse_duration(text)
                .map_err(|e| format!("--clone-time {text:?}: neither `observed` nor a duration: {e}"))?,
        ),
    };
    let by = match (&args.top_names, args.by.as_str()) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            TopBy::Names(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        }
        (None, "stars") => TopBy::Stars,
        (None, "updated-at") => TopBy::UpdatedAt,
        (None, "created-at") => TopBy::CreatedAt,
        (None, other) => return Err(format!("--by {other:?}: one of stars, updated-at, created-at")),
    };
    let tick = match args.tick.as_str() {
        "auto" => replay::engine::auto_tick(&capture, &clone_time),
        text => humantime::parse_duration(text)
            .map_err(|e| format!("--tick {text:?}: neither `auto` nor a duration: {e}"))?
            .max(capture.interval),
    };
    let options = replay::Options {
        tick,
        clone_time,
        horizon: args.horizon,
        seed: args.seed,
        top: (args.top > 0).then_some(Top { n: args.top, by }),
    };
    let choices: Vec<Choice> = args.policies.iter().map(|p| Choice::parse(p)).collect();
    let source = args.snapshot.display().to_string();
    let replay = replay::run(&capture, &choices, &options, &source)?;
    print!("{}", report::table(&replay));
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.snapshot));
    write_report(&replay, &out)?;
    println!("\nReport: {}", out.join("report.html").display());
    Ok(())
}

fn default_out(snapshot: &Path) -> PathBuf {
    let name = snapshot.file_name().map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
    let stem = name.trim_end_matches(".gz").trim_end_matches(".ndjson");
    snapshot.with_file_name(format!("{stem}.replay"))
}

fn write_report(replay: &replay::Replay, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = serde_json::to_vec_pretty(replay).map_err(|e| e.to_string())?;
    for (file, bytes) in [
        ("report.html", report::html(replay).into_bytes()),
        ("chart.svg", report::svg(replay).into_bytes()),
        ("replay.json", json),
    ] {
        let path = out.join(file);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

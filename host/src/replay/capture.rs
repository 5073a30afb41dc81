//! The snapshot file: what a running sidecar knows, for replay and for the operator's own
//! queries. gzip-compressed JSON lines (`.ndjson.gz`), one object per line, told apart by
//! `kind`:
//!
//! - `header` (first line): format, when and by which version it was taken, the tick
//!   interval, caps, backoff, routing and shard addresses, and the number of repos;
//! - `repo`: one per desired repo: the columns policies read, its state in the last tick, its
//!   owning shard, and its attempt record when it has one;
//! - `clone`: one per recent dispatch outcome: shard, duration, success.
//!
//! Clone URLs are left out: they can carry credentials. Timestamps are RFC 3339, so data tools
//! read them as timestamps. jq, DuckDB (`read_json_auto`) and pandas (`read_json(lines=True)`)
//! open the file as it is; README.md shows a query.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::machine::{ObservedClone, Settings, Snapshot};
use crate::model::{AttemptRecord, CloneUrl, DesiredRepo, RecordedState, RepoName, ServiceType, ShardIdx, Timestamp};
use crate::reconcile::RepoState;
use crate::routing::{Routing, ShardMap};
use crate::schedule::{Backoff, Limits};

/// The format this build writes and reads; a file of another format is refused by name.
pub const FORMAT: &str = "clonekeeper-snapshot/1";

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header(Header),
    Repo(RepoLine),
    Clone(CloneLine),
}

/// The first line: the deployment's settings that decide a replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub taken_at: String,
    /// The clonekeeper version that wrote the file.
    pub clonekeeper: String,
    pub interval_secs: f64,
    pub max_in_flight: u32,
    pub max_in_flight_per_shard: u32,
    pub backoff_base_secs: f64,
    pub backoff_max_secs: f64,
    /// `md5` or `rendezvous`.
    pub routing: String,
    pub shards: Vec<String>,
    pub repos: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RepoLine {
    id: i64,
    name: String,
    code_host: String,
    service_type: Option<String>,
    private: bool,
    fork: bool,
    archived: bool,
    stars: Option<u32>,
    created_at: Option<String>,
    updated_at: Option<String>,
    /// Not in any repo DB shape clonekeeper reads yet; kept so files stay one format when it is.
    size_bytes: Option<u64>,
    state: String,
    shard: String,
    attempts: u32,
    last_error: Option<String>,
    last_attempt_at: Option<String>,
    next_attempt_at: Option<String>,
    gave_up: Option<String>,
    in_flight: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct CloneLine {
    name: String,
    shard: String,
    finished_at: String,
    secs: f64,
    succeeded: bool,
    size_bytes: Option<u64>,
}

/// What the tick loop hands over for a snapshot: shared or copied once, then written off the
/// loop.
#[derive(Debug)]
pub struct Parts {
    pub settings: Settings,
    pub snapshot: Arc<Snapshot>,
    /// The last tick's state of each desired repo, index-aligned with `snapshot`.
    pub states: Vec<RepoState>,
    pub attempts: HashMap<RepoName, AttemptRecord>,
    pub clones: Vec<ObservedClone>,
    pub taken_at: Timestamp,
}

/// Writes `parts` as a snapshot file (gzip, JSON lines) to `out`, streaming.
pub fn write(parts: &Parts, out: impl Write) -> io::Result<()> {
    // JSON goes out in many small writes: buffer them before the compressor, which pays per
    // call.
    let mut out = io::BufWriter::with_capacity(1 << 18, GzEncoder::new(out, flate2::Compression::fast()));
    let settings = &parts.settings;
    let addrs = settings.shards.addrs();
    let header = Header {
        format: FORMAT.to_string(),
        taken_at: parts.taken_at.to_rfc3339(),
        clonekeeper: env!("CARGO_PKG_VERSION").to_string(),
        interval_secs: settings.interval.as_secs_f64(),
        max_in_flight: settings.limits.max_in_flight,
        max_in_flight_per_shard: settings.limits.max_in_flight_per_shard,
        backoff_base_secs: settings.backoff.base.as_secs_f64(),
        backoff_max_secs: settings.backoff.max.as_secs_f64(),
        routing: routing_name(settings.shards.routing()).to_string(),
        shards: addrs.to_vec(),
        repos: parts.snapshot.desired.repos.len() as u64,
    };
    write_line(&mut out, &Line::Header(header))?;
    let repos = &parts.snapshot.desired.repos;
    for (idx, repo) in repos.iter().enumerate() {
        let record = parts.attempts.get(repo.name());
        let state = parts.states.get(idx).copied().unwrap_or(RepoState::Unknown);
        let shard = parts.snapshot.routes.get(idx).and_then(|&s| addrs.get(usize::from(s)));
        let line = RepoLine {
            id: repo.id(),
            name: repo.name().to_string(),
            code_host: repo.code_host().to_string(),
            service_type: repo.service_type().map(|kind| kind.as_str().to_string()),
            private: repo.private(),
            fork: repo.fork(),
            archived: repo.archived(),
            stars: repo.stars(),
            created_at: repo.created_at().map(Timestamp::to_rfc3339),
            updated_at: repo.updated_at().map(Timestamp::to_rfc3339),
            size_bytes: None,
            state: state.as_str().to_string(),
            shard: shard.cloned().unwrap_or_default(),
            attempts: record.map_or(0, |r| r.attempts),
            last_error: record.and_then(|r| r.last_error.clone()),
            last_attempt_at: record.and_then(|r| r.last_attempt_at).map(Timestamp::to_rfc3339),
            next_attempt_at: record.and_then(|r| r.next_attempt_at).map(Timestamp::to_rfc3339),
            gave_up: record.and_then(|r| r.gave_up.clone()),
            in_flight: record.is_some_and(|r| r.in_flight),
        };
        write_line(&mut out, &Line::Repo(line))?;
    }
    for clone in &parts.clones {
        let line = CloneLine {
            name: clone.name.to_string(),
            shard: addrs.get(usize::from(clone.shard)).cloned().unwrap_or_default(),
            finished_at: clone.finished_at.to_rfc3339(),
            secs: clone.took.as_secs_f64(),
            succeeded: clone.succeeded,
            size_bytes: None,
        };
        write_line(&mut out, &Line::Clone(line))?;
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?.finish()?.flush()
}

fn write_line(out: &mut impl Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// A snapshot file, read back.
#[derive(Debug)]
pub struct Capture {
    pub header: Header,
    pub shards: ShardMap,
    pub limits: Limits,
    pub interval: Duration,
    pub backoff: Backoff,
    pub taken_at: Timestamp,
    /// Sorted by name, names unique, as a desired set.
    pub repos: Vec<CapturedRepo>,
    pub clones: Vec<CapturedClone>,
}

/// One desired repo as the snapshot saw it.
#[derive(Clone, Debug)]
pub struct CapturedRepo {
    /// The row as policies see it; its clone URL is `https://` + the name (the file has none).
    pub repo: DesiredRepo,
    pub state: RepoState,
    pub shard: ShardIdx,
    pub record: Option<AttemptRecord>,
}

/// One dispatch outcome the snapshot recorded.
#[derive(Clone, Debug)]
pub struct CapturedClone {
    pub took: Duration,
    pub succeeded: bool,
    pub size_bytes: Option<u64>,
}

/// Reads a snapshot file. Errors name the file and the line.
pub fn read(path: &Path) -> Result<Capture, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_from(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(BufReader::new(file))))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_from(reader: impl BufRead) -> Result<Capture, String> {
    let mut lines = reader.lines().enumerate();
    let header = match lines.next() {
        Some((_, Ok(text))) => match serde_json::from_str::<Line>(&text) {
            Ok(Line::Header(header)) => header,
            Ok(_) => return Err("line 1: not a snapshot header".to_string()),
            Err(error) => return Err(format!("line 1: not a snapshot header: {error}")),
        },
        Some((_, Err(error))) => return Err(format!("not a gzip-compressed snapshot: {error}")),
        None => return Err("empty file".to_string()),
    };
    if header.format != FORMAT {
        return Err(format!("format {:?}; this clonekeeper reads {FORMAT:?}", header.format));
    }
    let routing = match header.routing.as_str() {
        "md5" => Routing::Md5,
        "rendezvous" => Routing::Rendezvous,
        other => return Err(format!("line 1: unknown routing {other:?}")),
    };
    let shards = ShardMap::new(header.shards.clone(), routing).ok_or_else(|| {
        format!("line 1: {} shard addresses; 1 to {} are possible", header.shards.len(), ShardIdx::MAX)
    })?;
    let shard_of: HashMap<&str, ShardIdx> =
        header.shards.iter().enumerate().map(|(i, addr)| (addr.as_str(), i as ShardIdx)).collect();
    let mut repos = Vec::with_capacity(usize::try_from(header.repos.min(50_000_000)).unwrap_or(0));
    let mut clones = Vec::new();
    let mut service_types: HashMap<String, ServiceType> = HashMap::new();
    for (idx, line) in lines {
        let at = |what: String| format!("line {}: {what}", idx + 1);
        let text = line.map_err(|e| at(e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&text).map_err(|e| at(e.to_string()))? {
            Line::Header(_) => return Err(at("a second header".to_string())),
            Line::Repo(line) => {
                let shard = *shard_of
                    .get(line.shard.as_str())
                    .ok_or_else(|| at(format!("shard {:?} is not in the header's list", line.shard)))?;
                repos.push(captured_repo(line, shard, &mut service_types).map_err(at)?);
            }
            Line::Clone(line) => clones.push(CapturedClone {
                took: Duration::try_from_secs_f64(line.secs)
                    .map_err(|_| at(format!("clone duration {} is not a duration", line.secs)))?,
                succeeded: line.succeeded,
                size_bytes: line.size_bytes,
            }),
        }
    }
    repos.sort_by(|a: &CapturedRepo, b| a.repo.name.cmp(&b.repo.name));
    if let Some(pair) = repos.windows(2).find(|pair| pair[0].repo.name == pair[1].repo.name) {
        return Err(format!("repo {} appears twice", pair[0].repo.name));
    }
    let secs = |value: f64, what: &str| {
        Duration::try_from_secs_f64(value).map_err(|_| format!("line 1: {what} {value} is not a duration"))
    };
    Ok(Capture {
        limits: Limits {
            max_in_flight: header.max_in_flight.max(1),
            max_in_flight_per_shard: header.max_in_flight_per_shard.max(1),
        },
        interval: secs(header.interval_secs, "interval_secs")?.max(Duration::from_millis(100)),
        backoff: Backoff {
            base: secs(header.backoff_base_secs, "backoff_base_secs")?,
            max: secs(header.backoff_max_secs, "backoff_max_secs")?,
        },
        taken_at: timestamp(&header.taken_at).map_err(|e| format!("line 1: taken_at: {e}"))?,
        shards,
        header,
        repos,
        clones,
    })
}

fn captured_repo(
    line: RepoLine,
    shard: ShardIdx,
    service_types: &mut HashMap<String, ServiceType>,
) -> Result<CapturedRepo, String> {
    let name =
        RepoName::normalize(&line.name).ok_or_else(|| format!("repo name {:?} is not a repo name", line.name))?;
    let optional = |value: Option<String>, what: &str| {
        value.map(|text| timestamp(&text).map_err(|e| format!("{what} of {}: {e}", line.name))).transpose()
    };
    let service_type =
        line.service_type.map(|st| service_types.entry(st.clone()).or_insert_with(|| ServiceType::new(&st)).clone());
    let state = repo_state(&line.state)
        .ok_or_else(|| format!("state {:?} of {} is not a repo state", line.state, line.name))?;
    let record = (line.attempts > 0 || line.gave_up.is_some() || line.next_attempt_at.is_some()).then(|| {
        Ok::<_, String>(AttemptRecord {
            attempts: line.attempts,
            last_error: line.last_error.clone(),
            last_attempt_at: optional(line.last_attempt_at.clone(), "last_attempt_at")?,
            next_attempt_at: optional(line.next_attempt_at.clone(), "next_attempt_at")?,
            in_flight: line.in_flight,
            gave_up: line.gave_up.clone(),
        })
    });
    let repo = DesiredRepo {
        id: line.id,
        url: CloneUrl::for_repo(&format!("https://{name}"), name.as_str()),
        service_type,
        created_at: optional(line.created_at.clone(), "created_at")?,
        updated_at: optional(line.updated_at.clone(), "updated_at")?,
        stars: line.stars,
        fork: line.fork,
        archived: line.archived,
        private: line.private,
        recorded: RecordedState::NotTracked,
        name,
    };
    Ok(CapturedRepo { repo, state, shard, record: record.transpose()? })
}

fn timestamp(text: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

fn repo_state(text: &str) -> Option<RepoState> {
    [RepoState::Cloned, RepoState::Cloning, RepoState::Uncloned, RepoState::Failed, RepoState::Unknown, RepoState::Lost]
        .into_iter()
        .find(|state| state.as_str() == text)
}

fn routing_name(routing: Routing) -> &'static str {
    match routing {
        Routing::Md5 => "md5",
        Routing::Rendezvous => "rendezvous",
    }
}

#[cfg(test)]
mod tests;

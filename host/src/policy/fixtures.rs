//! Fixture files: inputs and the decisions a module must give for them. `clonekeeper policy
//! test` runs them, and the reloader runs those shipped beside a module
//! (`NAME.fixtures.json`, `NAME.fixtures/*.json`) before the module goes live.
//!
//! The format is documented with examples in docs/policies.md. In short:
//!
//! ```json
//! {"now": "2024-05-01T00:00:00Z", "config": "min_stars = 10",
//!  "cases": [
//!   {"name": "stars first", "interface": "prioritize",
//!    "repos": [{"name": "github.com/a/small", "stars": 1}, {"name": "github.com/a/big", "stars": 900}],
//!    "expect": {"order": ["github.com/a/big", "github.com/a/small"], "not_now": []}},
//!   {"interface": "reenqueue", "failures": [{"repo": {"name": "github.com/a/b", "attempts": 9}, "error": "404"}],
//!    "expect": {"decisions": [{"give_up": "not found"}]}},
//!   {"interface": "rate-limits", "seen": [{"key": {"code_host": "github.com"}, "repos": 10}],
//!    "expect": {"limits": [{"key": {"code_host": "github.com"}, "per_hour": 5000, "burst": 10}]}},
//!   {"interface": "init", "config": "min_stars = -1", "expect": {"error": "min_stars"}}]}
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::module::{Interface, Module};
use super::view::{KeyLimit, KeyLoad, RepoView, Retry, RetryFailure, ViewState};
use crate::model::Timestamp;
use crate::schedule::Priority;

/// `now` when a fixture gives none: 2024-01-01T00:00:00Z.
pub const DEFAULT_NOW: i64 = 1_704_067_200_000;

/// A time in a fixture: Unix milliseconds or RFC 3339 text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Time {
    Millis(i64),
    Text(String),
}

impl Time {
    pub fn millis(&self) -> Result<i64, String> {
        match self {
            Time::Millis(millis) => Ok(*millis),
            Time::Text(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|e| format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time ({e})")),
        }
    }
}

/// A repo in a fixture: only `name` is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSpec {
    pub name: String,
    pub id: Option<i64>,
    pub code_host: Option<String>,
    pub service_type: Option<String>,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub fork: bool,
    #[serde(default)]
    pub archived: bool,
    pub stars: Option<u32>,
    pub created_at: Option<Time>,
    pub updated_at: Option<Time>,
    pub size_bytes: Option<u64>,
    pub state: Option<ViewState>,
    pub shard: Option<u32>,
    pub shard_addr: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Time>,
}

impl RepoSpec {
    /// The view with defaults filled in: id = position + 1, code host = first segment of the
    /// name, service type from well-known hosts, state `uncloned` (`failed` when `last_error`
    /// is set), shard 0 at `gitserver-<shard>:3178`.
    pub fn to_view(&self, position: usize) -> Result<RepoView, String> {
        let code_host = self.code_host.clone().unwrap_or_else(|| crate::schedule::code_host_of(&self.name).to_string());
        let service_type = self.service_type.clone().unwrap_or_else(|| {
            match code_host.as_str() {
                "github.com" => "github",
                "gitlab.com" => "gitlab",
                "bitbucket.org" => "bitbucketCloud",
                _ => "",
            }
            .to_string()
        });
        let shard = self.shard.unwrap_or(0);
        let time = |t: &Option<Time>| t.as_ref().map(Time::millis).transpose();
        let failed = self.last_error.is_some();
        Ok(RepoView {
            id: self.id.unwrap_or(i64::try_from(position).unwrap_or(i64::MAX - 1) + 1),
            name: self.name.clone(),
            code_host,
            service_type,
            private: self.private,
            fork: self.fork,
            archived: self.archived,
            stars: self.stars,
            created_at: time(&self.created_at).map_err(|e| format!("repo {}: created_at: {e}", self.name))?,
            updated_at: time(&self.updated_at).map_err(|e| format!("repo {}: updated_at: {e}", self.name))?,
            size_bytes: self.size_bytes,
            state: self.state.unwrap_or(if failed { ViewState::Failed } else { ViewState::Uncloned }),
            shard,
            shard_addr: self.shard_addr.clone().unwrap_or_else(|| format!("gitserver-{shard}:3178")),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            last_attempt_at: time(&self.last_attempt_at)
                .map_err(|e| format!("repo {}: last_attempt_at: {e}", self.name))?,
        })
    }
}

/// Repos for `policy eval --repos FILE`: a JSON list of repo specs, or `{"repos": [...]}`.
pub fn parse_repos(text: &str) -> Result<Vec<RepoView>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        List(Vec<RepoSpec>),
        Object { repos: Vec<RepoSpec> },
    }
    let specs = match serde_json::from_str::<File>(text).map_err(|e| format!("not a list of repos: {e}"))? {
        File::List(list) | File::Object { repos: list } => list,
    };
    specs.iter().enumerate().map(|(idx, spec)| spec.to_view(idx)).collect()
}

/// One failure in a `reenqueue` case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSpec {
    pub repo: RepoSpec,
    #[serde(default)]
    pub error: Option<String>,
}

/// An expected `reenqueue` decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExpectRetry {
    /// `"now"`, or `"give_up"` for a give-up with any reason.
    Word(String),
    /// `{"after_ms": 60000}` or `{"after_ms": {"min": 1000, "max": 2000}}`.
    After { after_ms: AfterMs },
    /// `{"give_up": "exact reason"}`.
    GiveUp { give_up: String },
}

/// An exact delay or a range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AfterMs {
    Exact(u64),
    Range { min: u64, max: u64 },
}

/// What a case expects; which fields apply depends on the interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// prioritize: the dispatch order (score descending, ties by id), not-now repos left out.
    pub order: Option<Vec<String>>,
    /// prioritize: the order must start with these.
    pub top: Option<Vec<String>>,
    /// prioritize: exactly these repos are "not now" (any order).
    pub not_now: Option<Vec<String>>,
    /// prioritize: exact scores by repo name.
    pub scores: Option<HashMap<String, f64>>,
    /// reenqueue: one per failure.
    pub decisions: Option<Vec<ExpectRetry>>,
    /// rate-limits: the limits, any order.
    pub limits: Option<Vec<KeyLimit>>,
    /// init: the config is accepted.
    pub ok: Option<bool>,
    /// init: the config is refused with a message containing this.
    pub error: Option<String>,
}

/// One case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: Option<String>,
    /// `prioritize`, `reenqueue`, `rate-limits` or `init`.
    pub interface: String,
    pub now: Option<Time>,
    /// Replaces the file's config (and `NAME.toml`) for this case.
    pub config: Option<String>,
    #[serde(default)]
    pub repos: Vec<RepoSpec>,
    #[serde(default)]
    pub failures: Vec<FailureSpec>,
    #[serde(default)]
    pub seen: Vec<KeyLoad>,
    pub expect: Expect,
}

/// A fixture file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureFile {
    pub now: Option<Time>,
    /// Config text for `init`, replacing `NAME.toml`.
    pub config: Option<String>,
    pub cases: Vec<Case>,
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    pub name: String,
    pub interface: String,
    /// `None`: passed. Otherwise what differed, possibly over several lines.
    pub failure: Option<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The fixture files shipped beside module `name` in `dir`: `NAME.fixtures.json` and
/// `NAME.fixtures/*.json`, sorted.
pub fn shipped_with(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = dir.join(format!("{name}.fixtures.json"));
    if single.is_file() {
        files.push(single);
    }
    if let Ok(entries) = std::fs::read_dir(dir.join(format!("{name}.fixtures"))) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.')))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

/// Reads and runs one fixture file. `Err` when the file cannot be read or parsed.
pub fn run_file(module: &Module, path: &Path) -> Result<Vec<CaseResult>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FixtureFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a fixture file: {e}", path.display()))?;
    Ok(run(module, &file))
}

/// Runs every case of `file` against `module`.
pub fn run(module: &Module, file: &FixtureFile) -> Vec<CaseResult> {
    file.cases
        .iter()
        .enumerate()
        .map(|(idx, case)| {
            let name = case.name.clone().unwrap_or_else(|| format!("case {}", idx + 1));
            let failure = run_case(module, file, case).err();
            CaseResult { name, interface: case.interface.clone(), failure }
        })
        .collect()
}

fn run_case(module: &Module, file: &FixtureFile, case: &Case) -> Result<(), String> {
    let now = Timestamp::from_millis(
        case.now.as_ref().or(file.now.as_ref()).map(Time::millis).transpose()?.unwrap_or(DEFAULT_NOW),
    );
    let config = case.config.as_ref().or(file.config.as_ref());
    let configured;
    let module = match config {
        Some(config) if *config != module.config => {
            configured = module.with_config(config);
            &configured
        }
        _ => module,
    };
    let expect = &case.expect;
    let interface = Interface::parse(&case.interface).or((case.interface == "init").then_some(Interface::Lifecycle));
    let interface = interface.ok_or_else(|| {
        format!("unknown interface {:?} (prioritize, reenqueue, rate-limits or init)", case.interface)
    })?;
    if interface != Interface::Lifecycle && !module.implements(interface) {
        return Err(format!("the module does not implement {interface}"));
    }
    match interface {
        Interface::Explain | Interface::ExplainLimits => {
            Err(format!("{interface} has no fixtures: its sentences are for people"))
        }
        Interface::Prioritize => {
            let repos: Vec<RepoView> =
                case.repos.iter().enumerate().map(|(idx, spec)| spec.to_view(idx)).collect::<Result<_, _>>()?;
            let answers = module.prioritize(&repos, now).map_err(|e| format!("the call failed: {e}"))?;
            check_prioritize(&repos, &answers, expect)
        }
        Interface::Reenqueue => {
            let failures: Vec<RetryFailure> = case
                .failures
                .iter()
                .enumerate()
                .map(|(idx, spec)| {
                    let mut repo = spec.repo.to_view(idx)?;
                    if spec.repo.state.is_none() {
                        repo.state = ViewState::Failed;
                    }
                    let error = spec.error.clone().or_else(|| repo.last_error.clone()).unwrap_or_default();
                    if repo.last_error.is_none() && !error.is_empty() {
                        repo.last_error = Some(error.clone());
                    }
                    Ok(RetryFailure { repo, error })
                })
                .collect::<Result<_, String>>()?;
            let answers = module.reenqueue(&failures, now).map_err(|e| format!("the call failed: {e}"))?;
            let want = expect.decisions.as_ref().ok_or("expect.decisions is missing")?;
            check_retries(&failures, &answers, want)
        }
        Interface::RateLimits => {
            let answers = module.rate_limits(&case.seen, now).map_err(|e| format!("the call failed: {e}"))?;
            let want = expect.limits.as_ref().ok_or("expect.limits is missing")?;
            let mut want = want.clone();
            let mut got = answers;
            want.sort_by(|a, b| a.key.cmp(&b.key));
            got.sort_by(|a, b| a.key.cmp(&b.key));
            if want == got {
                return Ok(());
            }
            let show = |limits: &[KeyLimit]| -> Vec<String> {
                limits.iter().map(|l| serde_json::to_string(l).unwrap_or_default()).collect()
            };
            Err(format!("limits differ:\n{}", line_diff(&show(&want), &show(&got))))
        }
        Interface::Lifecycle => {
            let text = config.map(String::as_str).unwrap_or(&module.config);
            match (module.try_init(text), &expect.error) {
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(want)) => Err(format!("init accepted the config; expected an error containing {want:?}")),
                (Err(error), Some(want)) if error.to_string().contains(want.as_str()) => Ok(()),
                (Err(error), Some(want)) => {
                    Err(format!("init failed with {error}; expected an error containing {want:?}"))
                }
                (Err(error), None) => Err(format!("init failed: {error}")),
            }
        }
    }
}

/// The dispatch order a set of answers gives: score descending, ties by lower id.
pub fn dispatch_order<'a>(repos: &'a [RepoView], answers: &[Priority]) -> (Vec<&'a RepoView>, Vec<&'a RepoView>) {
    let mut scored: Vec<(f64, &RepoView)> = Vec::new();
    let mut not_now = Vec::new();
    for (repo, answer) in repos.iter().zip(answers) {
        match answer {
            Priority::Score(score) => scored.push((*score, repo)),
            Priority::NotNow => not_now.push(repo),
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    (scored.into_iter().map(|(_, repo)| repo).collect(), not_now)
}

fn check_prioritize(repos: &[RepoView], answers: &[Priority], expect: &Expect) -> Result<(), String> {
    let (order, not_now) = dispatch_order(repos, answers);
    let order: Vec<String> = order.iter().map(|r| r.name.clone()).collect();
    let mut problems = Vec::new();
    if let Some(want) = &expect.order {
        if *want != order {
            problems.push(format!("order differs:\n{}", line_diff(want, &order)));
        }
    }
    if let Some(want) = &expect.top {
        let got: Vec<String> = order.iter().take(want.len()).cloned().collect();
        if *want != got {
            problems.push(format!("top {} differ:\n{}", want.len(), line_diff(want, &got)));
        }
    }
    if let Some(want) = &expect.not_now {
        let mut want = want.clone();
        want.sort();
        let mut got: Vec<String> = not_now.iter().map(|r| r.name.clone()).collect();
        got.sort();
        if want != got {
            problems.push(format!("not_now differs:\n{}", line_diff(&want, &got)));
        }
    }
    if let Some(want) = &expect.scores {
        let mut names: Vec<&String> = want.keys().collect();
        names.sort();
        for name in names {
            let got = repos.iter().position(|r| r.name == *name).map(|idx| answers[idx]);
            match got {
                Some(Priority::Score(score)) if score == want[name] => {}
                Some(other) => problems.push(format!("score of {name}: expected {}, got {other:?}", want[name])),
                None => problems.push(format!("score of {name}: no such repo in the case")),
            }
        }
    }
    if expect.order.is_none() && expect.top.is_none() && expect.not_now.is_none() && expect.scores.is_none() {
        problems.push("expect has none of order, top, not_now, scores".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn check_retries(failures: &[RetryFailure], got: &[Retry], want: &[ExpectRetry]) -> Result<(), String> {
    let matches = |want: &ExpectRetry, got: &Retry| match (want, got) {
        (ExpectRetry::Word(word), Retry::Now) => word == "now",
        (ExpectRetry::Word(word), Retry::GiveUp(_)) => word == "give_up",
        (ExpectRetry::After { after_ms: AfterMs::Exact(ms) }, Retry::After(delay)) => {
            delay.as_millis() == u128::from(*ms)
        }
        (ExpectRetry::After { after_ms: AfterMs::Range { min, max } }, Retry::After(delay)) => {
            (u128::from(*min)..=u128::from(*max)).contains(&delay.as_millis())
        }
        (ExpectRetry::GiveUp { give_up }, Retry::GiveUp(reason)) => give_up == reason,
        _ => false,
    };
    let show_want = |w: &ExpectRetry| serde_json::to_string(w).unwrap_or_default();
    let show_got = |g: &Retry| match g {
        Retry::Now => "\"now\"".to_string(),
        Retry::After(delay) => format!("{{\"after_ms\":{}}}", delay.as_millis()),
        Retry::GiveUp(reason) => format!("{{\"give_up\":{}}}", serde_json::to_string(reason).unwrap_or_default()),
    };
    if want.len() != got.len() {
        return Err(format!("expected {} decisions, the case has {} failures", want.len(), got.len()));
    }
    let mut out = String::new();
    for ((w, g), failure) in want.iter().zip(got).zip(failures) {
        if !matches(w, g) {
            let _ = writeln!(out, "  {}:\n  - {}\n  + {}", failure.repo.name, show_want(w), show_got(g));
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(format!("decisions differ:\n{}", out.trim_end()))
    }
}

/// A line diff of two lists (longest common subsequence): `  ` kept, `- ` expected only,
/// `+ ` actual only.
pub fn line_diff(want: &[String], got: &[String]) -> String {
    let (n, m) = (want.len(), got.len());
    if n * m > 4_000_000 {
        return format!("  - {want:?}\n  + {got:?}");
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            let _ = writeln!(out, "    {}", want[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "  + {}", got[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "  - {}", want[i]);
            i += 1;
        }
    }
    out.trim_end().to_string()
}

//! Plain data shared by every part of clonekeeper: the desired repos read from the repo DB,
//! what the shards report, and the durable attempt record of each repo.
//!
//! These types carry no I/O and derive neither `Serialize` nor `FromRow`: adapters convert at
//! the edge, so the core never learns about SQL, HTTP or JSON.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gitserver_api::canonical_repo_name;

mod desired_repos;
mod name_list;

pub use desired_repos::{DesiredRepos, DesiredReposBuilder, DesiredRow, DesiredValues, NameClash, Router, SortedRepos};
pub use name_list::{ListTooLarge, NameList, NameListBuilder};

/// Milliseconds since the Unix epoch.
///
/// The core takes time as a parameter and never reads a clock; wall-clock time (not a
/// monotonic instant) because backoff deadlines are stored and must survive a restart.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Only the edges (tick loop, adapters) call this.
    pub fn now() -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 form for status output and logs.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }
}

/// A repository name in gitserver's normal form: the key for comparing, routing and storing.
///
/// Invariant: the text is the output of [`canonical_repo_name`], so two spellings of one repo
/// always compare equal, and a shard sent this name stores and lists it unchanged.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(Box<str>);

impl RepoName {
    /// Normalises `raw` as gitserver would. Returns `None` for a name that normalises to
    /// nothing (e.g. `/` or `..`), which no shard could store.
    pub fn normalize(raw: &str) -> Option<RepoName> {
        let normal = canonical_repo_name(raw);
        (!normal.is_empty()).then(|| RepoName(normal.into_boxed_str()))
    }

    /// Wraps a name that a gitserver returned, which is normal already. Re-normalising
    /// would be cheap, but a shard's list of a million names is the hot path.
    pub fn from_normalized(name: impl Into<Box<str>>) -> RepoName {
        RepoName(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RepoName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// From this many repos the work over a whole set (a full read's routing and its sort by name,
/// reconcile's per-shard lookups) runs on every core; below it the thread pool costs more than
/// it saves.
pub const PARALLEL_FROM: usize = 50_000;

/// Index of a shard in the configured address list. The order of that list is part of the
/// routing scheme, so an index is stable for the life of a configuration.
pub type ShardIdx = u16;

/// What the repo DB itself records about a repo's clone state, read so that write-back only
/// touches rows whose recorded state is wrong.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RecordedState {
    /// The schema has no clone-state column (mid-2020 shape).
    NotTracked,
    /// `repo.cloned` (late-2020 shape).
    ClonedFlag(bool),
    /// `gitserver_repos` (2021 shape): `clone_status`, `None` when the repo has no row yet,
    /// and `shard_id`, as an index into the load's `recorded_shards`.
    Status { status: Option<CloneStatus>, shard: Option<RecordedShard> },
}

/// Where a `gitserver_repos.shard_id` value stands in the load's `recorded_shards`, stored one
/// up so that an `Option` of it takes two bytes: a million desired repos each hold one (in the
/// recorded-state column of [`DesiredRepos`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordedShard(std::num::NonZeroU16);

impl RecordedShard {
    /// The shard at `index`; `None` past 65,534 distinct values.
    pub fn new(index: usize) -> Option<RecordedShard> {
        u16::try_from(index + 1).ok().and_then(std::num::NonZeroU16::new).map(RecordedShard)
    }

    pub fn index(self) -> usize {
        usize::from(self.0.get() - 1)
    }
}

/// gitserver's own clone-status vocabulary (`gitserver_repos.clone_status`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CloneStatus {
    NotCloned,
    Cloning,
    Cloned,
}

impl CloneStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CloneStatus::NotCloned => "not_cloned",
            CloneStatus::Cloning => "cloning",
            CloneStatus::Cloned => "cloned",
        }
    }
}

/// Which of a repo row's optional columns a read of the desired set fills; the others are left
/// unknown (`None`, `false`, [`RecordedState::NotTracked`]).
///
/// Every read has id, name, clone URL and `created_at` (the built-in order and the status's
/// oldest-uncloned age use it). The rest costs the repo DB and the reader time at a million
/// rows, so it is read only while something uses it: stars for a module that reads them
/// (parsing `repo.metadata` JSON is the costliest column), the details for a module that sees
/// them, the recorded clone state for write-back (in the 2021 schema, a join of its own).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoColumns {
    /// `stars`.
    pub stars: bool,
    /// `service_type`, `updated_at`, `fork`, `archived`, `private`.
    pub details: bool,
    /// `recorded`.
    pub recorded: bool,
}

impl RepoColumns {
    /// Every column.
    pub const ALL: RepoColumns = RepoColumns { stars: true, details: true, recorded: true };
    /// What policies can read: stars and the details.
    pub const POLICY: RepoColumns = RepoColumns { stars: true, details: true, recorded: false };

    /// The columns either set holds.
    pub fn union(self, other: RepoColumns) -> RepoColumns {
        RepoColumns {
            stars: self.stars || other.stars,
            details: self.details || other.details,
            recorded: self.recorded || other.recorded,
        }
    }

    /// The columns both sets hold.
    pub fn intersection(self, other: RepoColumns) -> RepoColumns {
        RepoColumns {
            stars: self.stars && other.stars,
            details: self.details && other.details,
            recorded: self.recorded && other.recorded,
        }
    }

    /// Whether every column of `other` is in this set.
    pub fn covers(self, other: RepoColumns) -> bool {
        self.union(other) == self
    }
}

/// One repo that should exist on some shard (`deleted_at IS NULL`), with what a policy may
/// want to know about it, as an owned record: what a read decodes a row into, a delta's few
/// rows, a snapshot file's lines. The desired set itself keeps its repos column by column
/// ([`DesiredRepos`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredRepo {
    /// `repo.id`.
    pub id: i64,
    pub name: RepoName,
    /// Missing when the row has no usable clone URL; reconcile reports it as a problem.
    pub url: CloneUrl,
    /// `repo.external_service_type` (`github`, `gitlab`, …), interned by the reader.
    pub service_type: Option<ServiceType>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    /// `repo.stars` where the schema has it, else `metadata->>'stargazerCount'` when present.
    pub stars: Option<u32>,
    pub fork: bool,
    pub archived: bool,
    pub private: bool,
    pub recorded: RecordedState,
}

impl DesiredRepo {
    /// A repo with only what every row has: id, name and clone URL; every other column
    /// unknown or false and no recorded clone state (as simulations and tests build them).
    pub fn new(id: i64, name: RepoName, clone_url: &str) -> DesiredRepo {
        DesiredRepo {
            id,
            url: CloneUrl::for_repo(clone_url, name.as_str()),
            name,
            service_type: None,
            created_at: None,
            updated_at: None,
            stars: None,
            fork: false,
            archived: false,
            private: false,
            recorded: RecordedState::NotTracked,
        }
    }

    /// The clone URL, if the row has a usable one.
    pub fn clone_url(&self) -> Option<Cow<'_, str>> {
        self.url.resolve(&self.name)
    }

    /// The host part of the clone URL's authority, or of the name, for per-code-host limits.
    pub fn code_host(&self) -> &str {
        let name = self.name.as_str();
        name.split('/').next().unwrap_or(name)
    }
}

/// A `repo.external_service_type` value. A handful of them are shared by a million repos, so
/// a [`DesiredRepos`] keeps each once and a 2-byte index per repo.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServiceType(Arc<String>);

impl ServiceType {
    pub fn new(kind: &str) -> ServiceType {
        ServiceType(Arc::new(kind.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the one interned value (cheaper than comparing the text).
    pub fn ptr_eq(&self, other: &ServiceType) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for ServiceType {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ServiceType {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A repo's clone URL, stored without repeating the repo's name where it can be: most are
/// `https://` + the name (+ `.git`), and a million repos would otherwise hold a second copy of
/// a million names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloneUrl {
    /// The row has no usable clone URL.
    Missing,
    /// `https://{name}`, or `https://{name}.git` with `git`, for the repo's normal name.
    FromName {
        git: bool,
    },
    Other(Box<str>),
}

impl CloneUrl {
    /// `url` as the clone URL of the repo named `name` (its normal form).
    pub fn for_repo(url: &str, name: &str) -> CloneUrl {
        match url.strip_prefix("https://").and_then(|rest| rest.strip_prefix(name)) {
            Some("") => CloneUrl::FromName { git: false },
            Some(".git") => CloneUrl::FromName { git: true },
            _ => CloneUrl::Other(url.into()),
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, CloneUrl::Missing)
    }

    /// The URL of the repo named `name` (the name it was made for).
    pub fn resolve(&self, name: &RepoName) -> Option<Cow<'_, str>> {
        match self {
            CloneUrl::Missing => None,
            CloneUrl::FromName { git: false } => Some(Cow::Owned(format!("https://{name}"))),
            CloneUrl::FromName { git: true } => Some(Cow::Owned(format!("https://{name}.git"))),
            CloneUrl::Other(url) => Some(Cow::Borrowed(url)),
        }
    }
}

/// The durable record of clonekeeper's dispatches of one repo: everything that cannot be
/// re-derived from the repo DB and the shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Dispatches started so far (an interrupted dispatch counts).
    pub attempts: u32,
    /// git's or the transport's message from the last failed dispatch.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    /// Not dispatched again before this time (backoff).
    pub next_attempt_at: Option<Timestamp>,
    /// A dispatch was started and its outcome not yet recorded. Seen after a restart, it means
    /// the previous process died mid-dispatch.
    pub in_flight: bool,
    /// Set when a retry policy gave up on the repo, with its reason.
    pub gave_up: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The desired set holds a `RecordedState` per repo where write-back reads it.
    #[test]
    fn a_recorded_state_takes_4_bytes() {
        assert_eq!(size_of::<RecordedState>(), 4);
        assert_eq!(RecordedShard::new(0).map(RecordedShard::index), Some(0));
        assert_eq!(RecordedShard::new(65_534).map(RecordedShard::index), Some(65_534));
        assert_eq!(RecordedShard::new(65_535), None);
    }

    #[test]
    fn a_clone_url_made_of_the_name_is_stored_without_it_and_every_url_reads_back_unchanged() {
        let name = RepoName::normalize("GitHub.com/Acme/Widget").expect("a name");
        for (url, derived) in [
            ("https://github.com/acme/widget", true),
            ("https://github.com/acme/widget.git", true),
            ("https://github.com/Acme/Widget.git", false),
            ("https://github.com/acme/widget.git/", false),
            ("git@github.com:acme/widget.git", false),
            ("https://github.com/acme/widget-two.git", false),
            ("http://github.com/acme/widget", false),
        ] {
            let stored = CloneUrl::for_repo(url, name.as_str());
            assert_eq!(matches!(stored, CloneUrl::FromName { .. }), derived, "{url}");
            assert_eq!(stored.resolve(&name).as_deref(), Some(url));
        }
        assert_eq!(CloneUrl::Missing.resolve(&name), None);
    }
}

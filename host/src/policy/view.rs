//! The policy host's own plain types for what a policy sees and answers, and their
//! conversions from the core's types and into the generated WIT types.
//!
//! These mirror `wit/policy.wit` field by field; the CLI and fixtures build them from JSON, the
//! sidecar from its repo records. `prioritize` takes its repos column by column (`batch.rs`);
//! these rows are what authors write in fixtures and what `reenqueue` takes.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bindings::{rate_limits, CloneState, WitRepoView};
use crate::model::{AttemptRecord, DesiredRepo, ShardIdx, Timestamp};
use crate::reconcile::RepoState;

/// Where a repo stands this tick (`clone-state`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewState {
    #[default]
    Uncloned,
    Failed,
    Cloning,
    Cloned,
    Lost,
}

impl From<RepoState> for ViewState {
    fn from(state: RepoState) -> ViewState {
        match state {
            RepoState::Cloned => ViewState::Cloned,
            RepoState::Cloning => ViewState::Cloning,
            RepoState::Failed => ViewState::Failed,
            RepoState::Uncloned | RepoState::Unknown => ViewState::Uncloned,
            RepoState::Lost => ViewState::Lost,
        }
    }
}

impl From<ViewState> for CloneState {
    fn from(state: ViewState) -> CloneState {
        match state {
            ViewState::Uncloned => CloneState::Uncloned,
            ViewState::Failed => CloneState::Failed,
            ViewState::Cloning => CloneState::Cloning,
            ViewState::Cloned => CloneState::Cloned,
            ViewState::Lost => CloneState::Lost,
        }
    }
}

/// One repository as a policy sees it (`repo-view`). Times are Unix milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoView {
    pub id: i64,
    pub name: String,
    pub code_host: String,
    pub service_type: String,
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    pub stars: Option<u32>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub size_bytes: Option<u64>,
    pub state: ViewState,
    pub shard: u32,
    pub shard_addr: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
}

impl RepoView {
    /// The view of a desired repo with its state, owning shard and attempt record.
    pub fn from_repo(
        repo: &DesiredRepo,
        state: RepoState,
        shard: ShardIdx,
        shard_addr: &str,
        record: Option<&AttemptRecord>,
    ) -> RepoView {
        RepoView {
            id: repo.id,
            name: repo.name.as_str().to_string(),
            code_host: repo.code_host().to_string(),
            service_type: repo.service_type.as_deref().unwrap_or_default().to_string(),
            private: repo.private,
            fork: repo.fork,
            archived: repo.archived,
            stars: repo.stars,
            created_at: repo.created_at.map(Timestamp::as_millis),
            updated_at: repo.updated_at.map(Timestamp::as_millis),
            size_bytes: None,
            state: state.into(),
            shard: u32::from(shard),
            shard_addr: shard_addr.to_string(),
            attempts: record.map_or(0, |r| r.attempts),
            last_error: record.and_then(|r| r.last_error.clone()),
            last_attempt_at: record.and_then(|r| r.last_attempt_at).map(Timestamp::as_millis),
        }
    }

    /// The generated WIT type (copies the strings).
    pub(super) fn to_wit(&self) -> WitRepoView {
        WitRepoView {
            id: self.id,
            name: self.name.clone(),
            code_host: self.code_host.clone(),
            service_type: self.service_type.clone(),
            private: self.private,
            fork: self.fork,
            archived: self.archived,
            stars: self.stars,
            created_at: self.created_at,
            updated_at: self.updated_at,
            size_bytes: self.size_bytes,
            state: self.state.into(),
            shard: self.shard,
            shard_addr: self.shard_addr.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            last_attempt_at: self.last_attempt_at,
        }
    }
}

/// One failure for `reenqueue`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryFailure {
    pub repo: RepoView,
    /// git's or the transport's message; empty for a lost clone.
    pub error: String,
}

/// A checked `reenqueue` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retry {
    Now,
    After(Duration),
    GiveUp(String),
}

/// What a rate limit applies to (`limit-key`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// A code host, e.g. `github.com`.
    CodeHost(String),
    /// A shard, by address.
    Shard(String),
}

impl LimitKey {
    pub(super) fn to_wit(&self) -> rate_limits::LimitKey {
        match self {
            LimitKey::CodeHost(host) => rate_limits::LimitKey::CodeHost(host.clone()),
            LimitKey::Shard(addr) => rate_limits::LimitKey::Shard(addr.clone()),
        }
    }

    pub(super) fn from_wit(key: rate_limits::LimitKey) -> LimitKey {
        match key {
            rate_limits::LimitKey::CodeHost(host) => LimitKey::CodeHost(host),
            rate_limits::LimitKey::Shard(addr) => LimitKey::Shard(addr),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::CodeHost(host) => write!(f, "code host {host}"),
            LimitKey::Shard(addr) => write!(f, "shard {addr}"),
        }
    }
}

/// What the host sees of one key (`key-load`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLoad {
    pub key: LimitKey,
    /// For a code host, its repos' (most common) service type; empty for a shard or unknown.
    #[serde(default)]
    pub service_type: String,
    #[serde(default)]
    pub repos: u32,
    #[serde(default)]
    pub queued: u32,
    #[serde(default)]
    pub in_flight: u32,
}

/// A checked limit (`limit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimit {
    pub key: LimitKey,
    pub per_hour: u32,
    pub burst: u32,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

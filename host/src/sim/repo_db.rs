//! The simulated repo DB: `repo` rows that are inserted, soft-deleted, undeleted, renamed and
//! given new clone URLs, read the way the real reader builds its desired set.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::machine::Snapshot;
use crate::model::{DesiredRepo, DesiredRepos, RepoName, Timestamp};
use crate::routing::ShardMap;
use crate::sources::repo_db::{DesiredChanges, DesiredSet};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Code hosts the simulated names use, so per-host rate limits have more than one key.
const HOSTS: [&str; 3] = ["github.com", "gitlab.com", "bitbucket.org"];

#[derive(Clone, Debug)]
pub struct Row {
    pub id: i64,
    pub name: RepoName,
    pub clone_url: String,
    pub deleted: bool,
    /// The table's version when the row was last written (Postgres' `xmin`, simplified).
    pub version: u64,
}

/// The `repo` table and its availability.
#[derive(Debug, Default)]
pub struct RepoDb {
    rows: BTreeMap<i64, Row>,
    next_id: i64,
    next_name: u64,
    url_version: u64,
    /// Bumped by every write: a read's mark.
    version: u64,
    /// The version of the last write that changed what a read returns (not a rewrite).
    content_version: u64,
    /// Reads fail at once until then.
    pub down_until: Timestamp,
    /// Reads hang (until the client's bound) until then.
    pub hung_until: Timestamp,
}

impl RepoDb {
    pub fn with_repos(n: usize, rng: &mut ChaCha8Rng) -> RepoDb {
        let mut db = RepoDb::default();
        for _ in 0..n {
            db.insert(rng);
        }
        db
    }

    fn fresh_name(&mut self, rng: &mut ChaCha8Rng) -> RepoName {
        self.next_name += 1;
        let host = HOSTS[rng.random_range(0..HOSTS.len())];
        RepoName::from_normalized(format!("{host}/org{}/repo{}", self.next_name % 7, self.next_name))
    }

    pub fn insert(&mut self, rng: &mut ChaCha8Rng) {
        self.next_id += 1;
        let name = self.fresh_name(rng);
        let clone_url = format!("https://{name}.git");
        self.version += 1;
        self.content_version = self.version;
        let row = Row { id: self.next_id, name, clone_url, deleted: false, version: self.version };
        self.rows.insert(self.next_id, row);
    }

    /// A row to change (its version bumped).
    fn pick(&mut self, rng: &mut ChaCha8Rng, deleted: bool) -> Option<&mut Row> {
        let ids: Vec<i64> = self.rows.values().filter(|r| r.deleted == deleted).map(|r| r.id).collect();
        let id = *ids.get(rng.random_range(0..ids.len().max(1)))?;
        self.version += 1;
        let version = self.version;
        let row = self.rows.get_mut(&id)?;
        row.version = version;
        Some(row)
    }

    /// A row to change: picked, and the change counted as one a read sees.
    fn change(&mut self, rng: &mut ChaCha8Rng, deleted: bool) -> Option<&mut Row> {
        self.content_version = self.version + 1;
        self.pick(rng, deleted)
    }

    /// Repo-updater rewrites `rows` rows (live or soft-deleted) without changing a column the
    /// sidecar reads: a delta returns them, and nothing changes.
    pub fn rewrite(&mut self, rng: &mut ChaCha8Rng, rows: usize) {
        for _ in 0..rows {
            let deleted = rng.random_bool(0.2);
            self.pick(rng, deleted);
        }
    }

    /// Whether a write since `mark` changed what a read returns.
    pub fn changed_since(&self, mark: u64) -> bool {
        self.content_version > mark
    }

    /// The mark of a read made now.
    pub fn mark(&self) -> u64 {
        self.version
    }

    /// An incremental read: the rows written after `mark`, as the real reader returns them.
    pub fn changes_since(&self, mark: u64) -> DesiredChanges {
        let changed: Vec<&Row> = self.rows.values().filter(|r| r.version > mark).collect();
        let mut repos: Vec<DesiredRepo> =
            changed.iter().filter(|r| !r.deleted).map(|r| Self::desired_repo(r)).collect();
        repos.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        DesiredChanges { ids: changed.iter().map(|r| r.id).collect(), repos, ..DesiredChanges::default() }
    }

    fn desired_repo(row: &Row) -> DesiredRepo {
        DesiredRepo {
            created_at: Some(Timestamp::from_millis(row.id)),
            ..DesiredRepo::new(row.id, row.name.clone(), &row.clone_url)
        }
    }

    pub fn soft_delete(&mut self, rng: &mut ChaCha8Rng) {
        if let Some(row) = self.change(rng, false) {
            row.deleted = true;
        }
    }

    pub fn undelete(&mut self, rng: &mut ChaCha8Rng) {
        if let Some(row) = self.change(rng, true) {
            row.deleted = false;
        }
    }

    pub fn rename(&mut self, rng: &mut ChaCha8Rng) {
        let name = self.fresh_name(rng);
        if let Some(row) = self.change(rng, false) {
            row.name = name;
        }
    }

    pub fn change_clone_url(&mut self, rng: &mut ChaCha8Rng) {
        self.url_version += 1;
        let version = self.url_version;
        if let Some(row) = self.change(rng, false) {
            row.clone_url = format!("https://mirror{version}.example/{}.git", row.name);
        }
    }

    /// Names of live rows, the set the shards must end up holding.
    pub fn desired_names(&self) -> Vec<RepoName> {
        let mut names: Vec<RepoName> = self.rows.values().filter(|r| !r.deleted).map(|r| r.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Names only deleted rows carry: a read makes their deletion known.
    pub fn deleted_names(&self) -> Vec<RepoName> {
        let live = self.desired_names();
        let mut names: Vec<RepoName> = self
            .rows
            .values()
            .filter(|r| r.deleted && live.binary_search(&r.name).is_err())
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// One successful read, as the real reader builds it: live rows, sorted by name, the lowest
    /// id winning a name clash, each routed to its owner.
    pub fn read(&self, shards: &ShardMap) -> Arc<Snapshot> {
        let mut repos: Vec<DesiredRepo> = self.rows.values().filter(|r| !r.deleted).map(Self::desired_repo).collect();
        repos.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        repos.dedup_by(|later, first| later.name == first.name);
        let repos = DesiredRepos::from_records(repos);
        Arc::new(Snapshot::routed(DesiredSet { repos, ..DesiredSet::default() }, shards))
    }
}

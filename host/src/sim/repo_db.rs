//! The simulated repo DB: `repo` rows that are inserted, soft-deleted, undeleted, renamed and
//! given new clone URLs, read the way the real reader builds its desired set.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::machine::Snapshot;
use crate::model::{DesiredRepo, RepoName, Timestamp};
use crate::routing::ShardMap;
use crate::sources::repo_db::DesiredSet;
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
}

/// The `repo` table and its availability.
#[derive(Debug, Default)]
pub struct RepoDb {
    rows: BTreeMap<i64, Row>,
    next_id: i64,
    next_name: u64,
    url_version: u64,
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
        self.rows.insert(self.next_id, Row { id: self.next_id, name, clone_url, deleted: false });
    }

    fn pick(&mut self, rng: &mut ChaCha8Rng, deleted: bool) -> Option<&mut Row> {
        let ids: Vec<i64> = self.rows.values().filter(|r| r.deleted == deleted).map(|r| r.id).collect();
        let id = *ids.get(rng.random_range(0..ids.len().max(1)))?;
        self.rows.get_mut(&id)
    }

    pub fn soft_delete(&mut self, rng: &mut ChaCha8Rng) {
        if let Some(row) = self.pick(rng, false) {
            row.deleted = true;
        }
    }

    pub fn undelete(&mut self, rng: &mut ChaCha8Rng) {
        if let Some(row) = self.pick(rng, true) {
            row.deleted = false;
        }
    }

    pub fn rename(&mut self, rng: &mut ChaCha8Rng) {
        let name = self.fresh_name(rng);
        if let Some(row) = self.pick(rng, false) {
            row.name = name;
        }
    }

    pub fn change_clone_url(&mut self, rng: &mut ChaCha8Rng) {
        self.url_version += 1;
        let version = self.url_version;
        if let Some(row) = self.pick(rng, false) {
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
        let mut repos: Vec<DesiredRepo> = self
            .rows
            .values()
            .filter(|r| !r.deleted)
            .map(|r| DesiredRepo {
                created_at: Some(Timestamp::from_millis(r.id)),
                ..DesiredRepo::new(r.id, r.name.clone(), &r.clone_url)
            })
            .collect();
        repos.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        repos.dedup_by(|later, first| later.name == first.name);
        let routes = repos.iter().map(|r| shards.shard_for(&r.name)).collect();
        Arc::new(Snapshot { desired: DesiredSet { repos, ..DesiredSet::default() }, routes })
    }
}

//! Incremental reads: the rows changed since a read, and applying them to the desired set that
//! read gave. Pure; the query is in `query.rs`, the argument of what a delta sees in
//! ARCHITECTURE.md ("Incremental repo DB reads").

use std::collections::HashSet;

use super::desired::clash_problem;
use super::{DesiredSet, RowProblem};
use crate::model::{DesiredRepo, DesiredReposBuilder, ListTooLarge};

/// Where a read stood in the repo DB's history: every change that read could not see was made
/// by a transaction whose id is at or past this one (Postgres `txid_snapshot_xmin` of a
/// snapshot taken before the read). Only Postgres has one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReadMark(pub(super) u64);

impl ReadMark {
    /// The 32-bit transaction id Postgres compares row versions (`xmin`) with.
    pub(super) fn xid(self) -> String {
        (self.0 % (1 << 32)).to_string()
    }
}

/// What changed since a [`ReadMark`]: every `repo` row written since (or whose clone URL or
/// recorded clone state was), as it is now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredChanges {
    /// The id of every row the delta returned, desired or not: each replaces what the previous
    /// set held for that id.
    pub ids: Vec<i64>,
    /// The returned rows that are desired (not soft-deleted, usable), sorted by name.
    pub repos: Vec<DesiredRepo>,
    /// Problems of the returned rows.
    pub problems: Vec<RowProblem>,
    /// The recorded shards the repos index: the previous set's, then any new ones.
    pub recorded_shards: Vec<std::sync::Arc<str>>,
}

impl DesiredChanges {
    /// The changes without the rows `base` already holds exactly as they are now: repo-updater
    /// rewrites rows for columns this read does not fill (`updated_at`, metadata), and each
    /// rewrite makes a delta return the row. Applying such rows would copy the whole set for
    /// nothing, every tick, so they are dropped here and a delta of only them leaves `ids`
    /// empty (the caller then keeps the set as it is).
    ///
    /// A row is dropped only when neither the delta nor `base` reports a problem for it, so a
    /// problem's text never goes stale.
    pub fn without_rows_held_by(mut self, base: &DesiredSet) -> DesiredChanges {
        let reported: HashSet<i64> = self.problems.iter().map(|problem| problem.repo_id).collect();
        let base_reports = |id: i64| base.problems.binary_search_by_key(&id, |problem| problem.repo_id).is_ok();
        let mut held: HashSet<i64> = HashSet::new();
        self.repos.retain(|repo| {
            let same = !reported.contains(&repo.id)
                && !base_reports(repo.id)
                && base.repos.find(repo.name.as_str()).is_some_and(|row| row.holds(repo));
            if same {
                held.insert(repo.id);
            }
            !same
        });
        // Ids with no usable row now (soft-deleted or skipped): nothing to remove where `base`
        // neither holds nor reports them, e.g. a soft-deleted row rewritten again.
        let fresh: HashSet<i64> = self.repos.iter().map(|repo| repo.id).collect();
        let gone: HashSet<i64> =
            self.ids.iter().copied().filter(|id| !fresh.contains(id) && !reported.contains(id)).collect();
        if !gone.is_empty() {
            let in_base: HashSet<i64> = base.repos.iter().map(|row| row.id()).filter(|id| gone.contains(id)).collect();
            held.extend(gone.into_iter().filter(|&id| !in_base.contains(&id) && !base_reports(id)));
        }
        if !held.is_empty() {
            self.ids.retain(|id| !held.contains(id));
        }
        self
    }
}

impl DesiredSet {
    /// The set after `changes`: every repo whose id changed is replaced by its new row (or
    /// removed, if it is no longer desired). Also returns, for each repo of the result, its
    /// index in `self` if it was carried over unchanged, so per-repo derived data (the owning
    /// shard) is reused rather than recomputed.
    ///
    /// Names stay unique: on a clash the lower id wins and the other is reported, as in a full
    /// read. (A repo that lost such a clash in an earlier read comes back only with the next
    /// full read, `[sync] full_interval` later at most.)
    pub fn apply(&self, changes: DesiredChanges) -> Result<(DesiredSet, Vec<Option<u32>>), ListTooLarge> {
        let changed: HashSet<i64> = changes.ids.iter().copied().collect();
        let mut kept = self.repos.iter().filter(|row| !changed.contains(&row.id())).peekable();
        let fresh_bytes: usize = changes.repos.iter().map(|repo| repo.name.as_str().len()).sum();
        let mut fresh = changes.repos.into_iter().peekable();
        let mut problems: Vec<RowProblem> =
            self.problems.iter().filter(|p| !changed.contains(&p.repo_id)).cloned().collect();
        problems.extend(changes.problems);

        let rows = self.repos.len() + fresh.len();
        let mut repos = DesiredReposBuilder::with_capacity(rows, self.repos.name_bytes() + fresh_bytes);
        let mut origins: Vec<Option<u32>> = Vec::with_capacity(rows);
        loop {
            // Merge by (name, id); the kept set and the fresh rows are each sorted and unique.
            let take_kept = match (kept.peek(), fresh.peek()) {
                (Some(old), Some(new)) => (old.name(), old.id()) <= (new.name.as_str(), new.id),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (id, name) = if take_kept {
                let row = kept.peek().expect("peeked");
                (row.id(), row.name())
            } else {
                let repo = fresh.peek().expect("peeked");
                (repo.id, repo.name.as_str())
            };
            if let Some(kept_id) = repos.last_id().filter(|_| repos.last_name() == Some(name)) {
                problems.push(clash_problem(id, name, kept_id));
                if take_kept {
                    kept.next();
                } else {
                    fresh.next();
                }
                continue;
            }
            if take_kept {
                let row = kept.next().expect("peeked");
                repos.push_row(row)?;
                origins.push(u32::try_from(row.index()).ok());
            } else {
                let repo = fresh.next().expect("peeked");
                repos.push(&repo)?;
                origins.push(None);
            }
        }
        problems.sort_by_key(|problem| problem.repo_id);
        let recorded_shards =
            if changes.recorded_shards.is_empty() { self.recorded_shards.clone() } else { changes.recorded_shards };
        Ok((DesiredSet { repos: repos.finish_in_order(), problems, recorded_shards }, origins))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RepoName;

    fn repo(id: i64, name: &str, url: &str) -> DesiredRepo {
        DesiredRepo::new(id, RepoName::normalize(name).expect("a name"), url)
    }

    fn set(repos: Vec<DesiredRepo>) -> DesiredSet {
        let mut repos = repos;
        repos.sort_by(|a, b| a.name.cmp(&b.name));
        DesiredSet { repos: repos.into(), ..DesiredSet::default() }
    }

    /// `set` after a delta of one row, `repo`, under its own id.
    fn apply_row(set: &DesiredSet, repo: DesiredRepo) -> DesiredSet {
        let changes = DesiredChanges { ids: vec![repo.id], repos: vec![repo], ..DesiredChanges::default() };
        set.apply(changes).expect("room").0
    }

    fn render(set: &DesiredSet) -> Vec<String> {
        set.repos
            .iter()
            .map(|r| format!("{} {} {}", r.id(), r.name(), r.clone_url().as_deref().unwrap_or("-")))
            .collect()
    }

    #[test]
    fn every_kind_of_change_lands_and_unchanged_repos_keep_their_index() {
        let before = set(vec![
            repo(1, "github.com/a/one", "u1"),
            repo(2, "github.com/a/two", "u2"),
            repo(3, "github.com/a/three", "u3"),
            repo(4, "github.com/a/four", "u4"),
        ]);
        // 2 renamed, 3 soft-deleted, 4 gets a new clone URL, 5 inserted.
        let mut fresh = vec![
            repo(4, "github.com/a/four", "u4-new"),
            repo(5, "github.com/a/five", "u5"),
            repo(2, "github.com/a/zwei", "u2"),
        ];
        fresh.sort_by(|a, b| a.name.cmp(&b.name));
        let changes = DesiredChanges { ids: vec![2, 3, 4, 5], repos: fresh, ..DesiredChanges::default() };
        let (after, origins) = before.apply(changes).expect("room");
        assert_eq!(
            render(&after),
            vec![
                "5 github.com/a/five u5",
                "4 github.com/a/four u4-new",
                "1 github.com/a/one u1",
                "2 github.com/a/zwei u2"
            ]
        );
        let one = before.repos.iter().position(|r| r.id() == 1).map(|i| i as u32);
        assert_eq!(origins, vec![None, None, one, None], "only the unchanged repo is carried over");

        // An undelete is an insert of the same id.
        let back = apply_row(&after, repo(3, "github.com/a/three", "u3"));
        assert_eq!(back.repos.len(), 5);
    }

    /// Rows carried over are copied column by column into the new set: every value of theirs
    /// (a clone URL not made of the name, a service type, stars of 0, flags, timestamps, the
    /// recorded state) survives, and a new row's values land beside them.
    #[test]
    fn rows_carried_over_keep_every_value() {
        use crate::model::{CloneStatus, RecordedShard, RecordedState, ServiceType, Timestamp};
        let full = |id: i64, name: &str| DesiredRepo {
            service_type: Some(ServiceType::new(if id % 2 == 0 { "github" } else { "gitlab" })),
            created_at: Some(Timestamp::from_millis(id * 1000)),
            updated_at: Some(Timestamp::from_millis(id * 2000)),
            stars: Some(u32::try_from(id % 3).expect("small")),
            fork: id % 2 == 0,
            archived: id % 3 == 0,
            private: true,
            recorded: RecordedState::Status { status: Some(CloneStatus::Cloned), shard: RecordedShard::new(1) },
            ..repo(id, name, &format!("git@example.com:{name}.git"))
        };
        let records: Vec<DesiredRepo> = (1..=6).map(|id| full(id, &format!("github.com/a/r{id}"))).collect();
        let before = set(records.clone());
        let mut fresh = full(9, "github.com/a/r9");
        fresh.stars = None;
        fresh.service_type = Some(ServiceType::new("bitbucket"));
        let (after, origins) = before
            .apply(DesiredChanges { ids: vec![3, 9], repos: vec![fresh.clone()], ..DesiredChanges::default() })
            .expect("room");
        let mut want: Vec<DesiredRepo> = records.into_iter().filter(|r| r.id != 3).collect();
        want.push(fresh);
        assert_eq!(after.repos.iter().map(|row| row.to_record()).collect::<Vec<_>>(), want);
        assert_eq!(origins.iter().filter(|origin| origin.is_some()).count(), 5);
    }

    #[test]
    fn rows_rewritten_as_they_were_are_no_change() {
        let mut before = set(vec![
            repo(1, "github.com/a/one", "u1"),
            repo(2, "github.com/a/two", "u2"),
            repo(3, "github.com/a/three", "u3"),
        ]);
        before.problems = vec![RowProblem { repo_id: 3, name: "github.com/a/three".into(), message: "old".into() }];
        // 1 rewritten as it was, 9 a soft-deleted row rewritten: neither changes the set.
        let rewritten = DesiredChanges {
            ids: vec![1, 9],
            repos: vec![repo(1, "github.com/a/one", "u1")],
            ..DesiredChanges::default()
        };
        assert_eq!(rewritten.without_rows_held_by(&before).ids, Vec::<i64>::new());

        // 2 has a new clone URL; 3 is as it was but its problem may have gone; 1 was soft-deleted.
        let mut fresh = vec![repo(2, "github.com/a/two", "u2-new"), repo(3, "github.com/a/three", "u3")];
        fresh.sort_by(|a, b| a.name.cmp(&b.name));
        let changed = DesiredChanges { ids: vec![1, 2, 3], repos: fresh, ..DesiredChanges::default() };
        let kept = changed.clone().without_rows_held_by(&before);
        assert_eq!(kept, changed, "every row here changes the set");

        // A row reported now is kept, so its problem lands.
        let reported = DesiredChanges {
            ids: vec![2],
            repos: vec![repo(2, "github.com/a/two", "u2")],
            problems: vec![RowProblem { repo_id: 2, name: "github.com/a/two".into(), message: "new".into() }],
            ..DesiredChanges::default()
        };
        assert_eq!(reported.clone().without_rows_held_by(&before), reported);
    }

    #[test]
    fn a_rename_onto_a_taken_name_keeps_the_lower_id_and_reports_the_other() {
        let before = set(vec![repo(1, "github.com/a/one", "u1"), repo(7, "github.com/a/seven", "u7")]);
        let after = apply_row(&before, repo(7, "github.com/a/one", "u7"));
        assert_eq!(render(&after), vec!["1 github.com/a/one u1"]);
        assert_eq!(after.problems.len(), 1);
        assert_eq!(after.problems[0].repo_id, 7);
    }

    #[test]
    fn problems_of_changed_rows_are_replaced_and_the_others_kept() {
        let mut before = set(vec![repo(1, "github.com/a/one", "u1")]);
        before.problems = vec![
            RowProblem { repo_id: 1, name: "github.com/a/one".into(), message: "old".into() },
            RowProblem { repo_id: 9, name: "x".into(), message: "untouched".into() },
        ];
        let after = apply_row(&before, repo(1, "github.com/a/one", "u1"));
        let messages: Vec<&str> = after.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages, vec!["untouched"]);
    }
}

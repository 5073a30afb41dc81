//! What the tick loop knows of each shard: its last good answer, and whether its latest
//! observation failed or is late. Pure: observations in, [`Actual`] out.
//!
//! **Invariant:** a read that fails or is late never takes anything away. The last list and
//! the last *cloning* list stay in use until the shard answers again, so nothing is
//! re-dispatched because a read failed (a repo gitserver is still cloning would otherwise
//! look uncloned and be dispatched a second time).

use std::sync::Arc;

use super::input::ShardObservation;
use crate::model::{NameList, RepoName, Timestamp};
use crate::reconcile::{Actual, ShardActual};

/// How one observation changed a shard, for logs and the scheduler's pauses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// It answered (and had failed before, if `recovered`).
    Answered { recovered: bool },
    /// It failed (for the first time in a row, if `first`).
    Failed { first: bool },
    /// Its observation is still running (and was not late before, if `first`).
    Late { first: bool },
}

/// A shard's last answer, shared with each tick's [`Actual`] rather than copied into it.
#[derive(Debug)]
struct Listing {
    cloned: Arc<NameList>,
    cloning: Arc<[RepoName]>,
}

#[derive(Debug, Default)]
struct ShardView {
    /// The last successful answer; `None` if the shard has never answered.
    last: Option<Listing>,
    /// Why the last finished observation failed.
    error: Option<String>,
    /// When the observation still running started, if a tick found it unfinished.
    late_since: Option<Timestamp>,
}

/// The view of every shard, in configured address order.
#[derive(Debug)]
pub struct ShardViews {
    views: Vec<ShardView>,
}

impl ShardViews {
    pub fn new(n_shards: usize) -> ShardViews {
        ShardViews { views: (0..n_shards).map(|_| ShardView::default()).collect() }
    }

    /// Takes one shard's observation.
    pub fn handle(&mut self, shard: usize, observation: ShardObservation) -> Transition {
        let Some(view) = self.views.get_mut(shard) else {
            return Transition::Late { first: false };
        };
        match observation {
            ShardObservation::Answered(answer) => {
                view.last = Some(Listing { cloned: Arc::new(answer.cloned), cloning: answer.cloning.into() });
                view.late_since = None;
                Transition::Answered { recovered: view.error.take().is_some() }
            }
            ShardObservation::Failed(error) => {
                view.late_since = None;
                Transition::Failed { first: view.error.replace(error).is_none() }
            }
            ShardObservation::Late { since } => Transition::Late { first: view.late_since.replace(since).is_none() },
        }
    }

    /// The actual state for reconcile: each shard's last answer, whatever happened since.
    pub fn actual(&self) -> Actual {
        Actual {
            shards: self
                .views
                .iter()
                .map(|view| match &view.last {
                    Some(last) => ShardActual {
                        reachable: view.error.is_none(),
                        cloned: Some(Arc::clone(&last.cloned)),
                        cloning: Arc::clone(&last.cloning),
                    },
                    None => ShardActual::default(),
                })
                .collect(),
        }
    }

    /// Reachable: it has answered, and its last finished observation did not fail.
    pub fn reachable(&self, shard: usize) -> bool {
        self.views.get(shard).is_some_and(|v| v.last.is_some() && v.error.is_none())
    }

    pub fn error(&self, shard: usize) -> Option<&str> {
        self.views.get(shard).and_then(|v| v.error.as_deref())
    }

    /// Whether the shard's last answer lists `name` as cloned.
    pub fn lists(&self, shard: usize, name: &RepoName) -> bool {
        self.views.get(shard).and_then(|v| v.last.as_ref()).is_some_and(|last| last.cloned.contains(name.as_str()))
    }

    /// Every name a shard's last answer said it was cloning.
    pub fn cloning(&self) -> impl Iterator<Item = &RepoName> {
        self.views.iter().filter_map(|v| v.last.as_ref()).flat_map(|last| last.cloning.iter())
    }

    pub fn late_since(&self, shard: usize) -> Option<Timestamp> {
        self.views.get(shard).and_then(|v| v.late_since)
    }
}

#[cfg(test)]
mod tests {
    use super::super::input::ShardAnswer;
    use super::*;

    fn names(list: &[&str]) -> Vec<RepoName> {
        list.iter().map(|n| RepoName::from_normalized(*n)).collect()
    }

    fn answer(cloned: &[&str], cloning: &[&str]) -> ShardObservation {
        ShardObservation::Answered(ShardAnswer { cloned: names(cloned).into(), cloning: names(cloning) })
    }

    #[test]
    fn a_shard_never_answered_is_unknown_not_empty() {
        let views = ShardViews::new(2);
        let actual = views.actual();
        assert!(actual.shards.iter().all(|s| s.cloned.is_none() && !s.reachable));
    }

    #[test]
    fn a_failed_read_keeps_the_last_list_and_the_last_cloning_list() {
        let mut views = ShardViews::new(1);
        assert_eq!(
            views.handle(0, answer(&["github.com/a/done"], &["github.com/a/busy"])),
            Transition::Answered { recovered: false }
        );
        assert_eq!(
            views.handle(0, ShardObservation::Failed("shard s: GET /list?cloned: timed out".into())),
            Transition::Failed { first: true }
        );
        let actual = views.actual();
        let shard = &actual.shards[0];
        assert!(!shard.reachable);
        assert_eq!(shard.cloned.as_deref(), Some(&NameList::from(names(&["github.com/a/done"]))));
        assert_eq!(&shard.cloning[..], names(&["github.com/a/busy"]), "a failed read must not drop what is cloning");
        assert_eq!(views.handle(0, ShardObservation::Failed("again".into())), Transition::Failed { first: false });
        assert_eq!(
            views.handle(0, answer(&["github.com/a/done", "github.com/a/busy"], &[])),
            Transition::Answered { recovered: true }
        );
        assert!(views.reachable(0));
        assert!(views.actual().shards[0].cloning.is_empty());
    }

    #[test]
    fn a_late_shard_keeps_its_answer_and_reachability() {
        let mut views = ShardViews::new(1);
        views.handle(0, answer(&["github.com/a/done"], &["github.com/a/busy"]));
        let since = Timestamp::from_millis(5_000);
        assert_eq!(views.handle(0, ShardObservation::Late { since }), Transition::Late { first: true });
        assert_eq!(views.handle(0, ShardObservation::Late { since }), Transition::Late { first: false });
        assert_eq!(views.late_since(0), Some(since));
        assert!(views.reachable(0), "late is not (yet) unreachable");
        assert_eq!(&views.actual().shards[0].cloning[..], names(&["github.com/a/busy"]));
        views.handle(0, answer(&[], &[]));
        assert_eq!(views.late_since(0), None);
    }
}

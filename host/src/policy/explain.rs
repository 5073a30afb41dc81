//! Why a repo got its score, in the serving module's words (contract 0.2.1 `explain`): asked
//! only when an operator looks, off the tick loop, with the same limits as any call.

use super::{Interface, PolicyHost, RepoView};
use crate::model::Timestamp;

impl PolicyHost {
    /// The sentence of the module with digest `decided_by` for `repo`, if that module still
    /// serves `prioritize`; `None` when it cannot explain (built against 0.2.0, or replaced).
    /// A failed call is explained as such: the operator asked.
    pub fn explain_priority(&self, decided_by: &str, repo: &RepoView, now: Timestamp) -> Option<String> {
        let set = self.current();
        let module = set.serving(Interface::Prioritize).filter(|m| &*m.digest == decided_by)?;
        if !module.implements(Interface::Explain) {
            return None;
        }
        Some(match module.explain_priority(repo, now) {
            Ok(text) => text,
            Err(failure) => format!("(the module could not say why: explain {failure})"),
        })
    }
}

impl PolicyHost {
    /// The sentence of the rate-limit module with digest `decided_by` on the limit it gave
    /// `key`, if that module still serves `rate-limits` and can explain.
    pub fn explain_limit(
        &self,
        decided_by: &str,
        question: &(String, String, (u32, u32)),
        now: Timestamp,
    ) -> Option<String> {
        let set = self.current();
        let module = set.serving(Interface::RateLimits).filter(|m| &*m.digest == decided_by)?;
        if !module.implements(Interface::ExplainLimits) {
            return None;
        }
        let (key, service_type, limit) = question;
        Some(match module.explain_limit(key, service_type, *limit, now) {
            Ok(text) => text,
            Err(failure) => format!("(the module could not say why: explain-limits {failure})"),
        })
    }
}

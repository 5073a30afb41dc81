//! Test instrumentation behind `POST /debug/repo-update-error`: make `/repo-update` answer a
//! chosen repository with a chosen `Error`, whatever git would say.
//!
//! git's own messages cannot be steered into every shape a client must survive (a NUL byte,
//! control characters, megabytes of text); this hook can. A fault stays until it is cleared
//! with an empty `error`, and a faulty repository is never cloned.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use gitserver_api::normalize_repo_name;
use serde::{Deserialize, Serialize};

/// Body of `POST /debug/repo-update-error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoUpdateFault {
    /// The repository, in any spelling; it is normalised.
    pub repo: String,
    /// The `Error` every `/repo-update` of `repo` answers; empty clears the fault.
    pub error: String,
}

/// The faults of one server, by normalised name.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    errors: Mutex<HashMap<String, String>>,
}

impl Faults {
    pub(crate) fn set(&self, fault: RepoUpdateFault) {
        let name = normalize_repo_name(&fault.repo);
        // A map edited in single statements is consistent after any panic.
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.error.is_empty() {
            errors.remove(&name);
        } else {
            errors.insert(name, fault.error);
        }
    }

    /// The error to answer for the normalised `name`, if a fault is set.
    pub(crate) fn error_for(&self, name: &str) -> Option<String> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }
}

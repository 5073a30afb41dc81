//! The policies a replay compares: the built-in order and retry, or a module file loaded by
//! the same policy host the sidecar runs (from a folder of its own, with the module's
//! `NAME.toml` beside it when there is one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::machine::Policies;
use crate::model::Timestamp;
use crate::policy::{CallLimits, HostConfig, PolicyEngine, PolicyHost};
use crate::schedule::{Backoff, BuiltinRetry};

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The built-in order and retry rhythm: what runs with no module.
    Builtin,
    /// A module file (`.wasm`).
    Module(PathBuf),
}

impl Choice {
    /// `builtin`, or a path to a module.
    pub fn parse(text: &str) -> Choice {
        if text == "builtin" {
            Choice::Builtin
        } else {
            Choice::Module(PathBuf::from(text))
        }
    }

    /// The label of this side in the report.
    pub fn label(&self) -> String {
        match self {
            Choice::Builtin => "built-in".to_string(),
            Choice::Module(path) => {
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
            }
        }
    }
}

/// A loaded side: the machine's policies, and the folder the host loaded them from (removed
/// when dropped).
pub struct Loaded {
    pub policies: Policies,
    /// The policy host of a module (`None`: the built-in behaviour).
    pub host: Option<Arc<PolicyHost>>,
    _dir: Option<tempfile::TempDir>,
}

/// Loads `choice` for a deployment with these shards and retry rhythm. A module the host
/// refuses is an error naming the file and the reason.
pub fn load(choice: &Choice, shard_addrs: &[String], backoff: Backoff, now: Timestamp) -> Result<Loaded, String> {
    let dir = match choice {
        Choice::Builtin => None,
        Choice::Module(path) => Some(module_folder(path)?),
    };
    // A replay has no tick to keep: a generous call deadline, and no tick budget.
    let limits = CallLimits { call_timeout: Duration::from_secs(10), ..CallLimits::default() };
    let engine = PolicyEngine::new(limits, None).map_err(|e| format!("starting the policy engine: {e}"))?;
    let config = HostConfig {
        dir: dir.as_ref().map(|d| d.path().to_path_buf()),
        allowlist: None,
        quarantine_after: 3,
        shard_addrs: shard_addrs.to_vec(),
        builtin_retry: BuiltinRetry { backoff, max_attempts: None },
    };
    let host = Arc::new(PolicyHost::new(engine, config));
    if let Choice::Module(path) = choice {
        host.reload(now).map_err(|e| format!("{}: {e}", path.display()))?;
        let set = host.current();
        if let Some(rejected) = set.rejected.first() {
            return Err(format!("{}: refused: {}", path.display(), rejected.rejection));
        }
        if set.modules.is_empty() {
            return Err(format!("{}: the policy host loaded no module from it", path.display()));
        }
    }
    let policies = Policies {
        prioritizer: Arc::clone(&host) as Arc<dyn crate::schedule::Prioritizer>,
        retry: Arc::clone(&host) as Arc<dyn crate::schedule::RetryPolicy>,
        rate_limits: Arc::clone(&host) as Arc<dyn crate::schedule::RateLimitPolicy>,
    };
    let host = matches!(choice, Choice::Module(_)).then_some(host);
    Ok(Loaded { policies, host, _dir: dir })
}

/// A folder holding only the module (and its `NAME.toml`), as the host loads a policy folder.
fn module_folder(path: &Path) -> Result<tempfile::TempDir, String> {
    let name = path.file_name().ok_or_else(|| format!("{}: not a module file", path.display()))?;
    let dir = tempfile::Builder::new().prefix("clonekeeper-replay-").tempdir().map_err(|e| e.to_string())?;
    std::fs::copy(path, dir.path().join(name)).map_err(|e| format!("{}: {e}", path.display()))?;
    let toml = path.with_extension("toml");
    if toml.is_file() {
        let toml_name = toml.file_name().unwrap_or_default();
        std::fs::copy(&toml, dir.path().join(toml_name)).map_err(|e| format!("{}: {e}", toml.display()))?;
    }
    Ok(dir)
}

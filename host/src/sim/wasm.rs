//! The real policy host in the simulation, for one seed in [`WASM_EVERY`]: wasmtime components
//! (a `prioritize` that reads stars, a `reenqueue` that gives up after three attempts) behind
//! the same [`PolicyHost`] the sidecar runs, instead of the simulated policies.
//!
//! The host's deadlines are wall-clock, so a run stays a function of its seed only while no
//! call reaches them: the limits here are generous (60 s a call, and no tick budget, since the
//! simulated shell never opens one), far above what a batch of at most a few hundred repos
//! takes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::model::Timestamp;
use crate::policy::componentize::componentize;
use crate::policy::{CallLimits, HostConfig, PolicyEngine, PolicyHost};
use crate::schedule::{Backoff, BuiltinRetry};

/// One seed in this many runs with the real policy host.
pub const WASM_EVERY: u64 = 40;

const PRELUDE: &str = include_str!("../policy/testdata/prelude.wat");
const PRIORITIZER: &str = include_str!("../policy/testdata/stars.wat");
const RETRIER: &str = include_str!("../policy/testdata/retry.wat");

/// What every wasm seed of a batch shares: the modules' folder and one engine (whose disk
/// cache makes every load after the first a deserialisation).
pub struct WasmKit {
    dir: tempfile::TempDir,
    engine: Arc<PolicyEngine>,
}

/// Built once per batch of seeds, on first use.
pub type SharedKit = OnceLock<Result<WasmKit, String>>;

impl WasmKit {
    fn build() -> Result<WasmKit, String> {
        let dir = tempfile::Builder::new().prefix("clonekeeper-sim-policies-").tempdir().map_err(|e| e.to_string())?;
        for (file, text, world) in [("a-stars.wasm", PRIORITIZER, "prioritizer"), ("retry.wasm", RETRIER, "retrier")] {
            let core = text.replace(";; @prelude", PRELUDE);
            let component = componentize(core.as_bytes(), Some(world))?;
            std::fs::write(dir.path().join(file), component).map_err(|e| e.to_string())?;
        }
        let cache = dir.path().join("cache");
        let limits = CallLimits { call_timeout: Duration::from_secs(60), memory_limit_bytes: 64 << 20 };
        let engine = PolicyEngine::new(limits, Some(cache)).map_err(|e| e.to_string())?;
        Ok(WasmKit { dir, engine })
    }

    /// A fresh host (a new process's) with both modules loaded.
    pub fn host(
        kit: &SharedKit,
        shard_addrs: Vec<String>,
        backoff: Backoff,
        now: Timestamp,
    ) -> Result<Arc<PolicyHost>, String> {
        let kit = kit.get_or_init(WasmKit::build).as_ref().map_err(Clone::clone)?;
        let modules = kit.dir.path().to_path_buf();
        let config = HostConfig {
            dir: Some(modules),
            allowlist: None,
            quarantine_after: 3,
            shard_addrs,
            builtin_retry: BuiltinRetry { backoff, max_attempts: None },
        };
        let host = Arc::new(PolicyHost::new(Arc::clone(&kit.engine), config));
        let report = host.reload(now).map_err(|e| e.to_string())?;
        if host.current().modules.len() != 2 {
            return Err(format!("the simulation's policy modules did not load: {report:?}"));
        }
        Ok(host)
    }
}

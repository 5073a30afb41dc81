//! The policy engine: WebAssembly components that decide what clones first (`prioritize`),
//! how fast (`rate-limits`) and when to retry or give up (`reenqueue`), loaded from a watched
//! folder and called under limits.
//!
//! - [`engine`]: the one wasmtime engine, epoch ticker, pooling allocator.
//! - [`cache`]: the disk cache of precompiled code, and why it can be trusted.
//! - `log`: the `log` import, with its budgets per call.
//! - [`limits`]: what one call may hold (memory summed over its memories; memories, tables
//!   and instances per component).
//! - [`module`]: loading and validating one component; calls with answer checks.
//! - `answers`: those checks, pure (property-tested in `answer_props`).
//! - [`health`]: quarantine with backoff (pure).
//! - [`budget`]: the policy time of one tick (`tick_budget`).
//! - [`reload`]: the folder scan, the watcher, and the swap of the [`PolicySet`].
//! - [`fixtures`]: the fixture format shared by `clonekeeper policy test` and the load-time
//!   self-check.
//! - [`scaffold`]: `clonekeeper policy new`; [`componentize`]: core module → component.
//!
//! **Architecture invariants.**
//! - Only this module sees wasmtime or bindgen types; the sidecar uses the
//!   [`Prioritizer`], [`RetryPolicy`] and [`RateLimitPolicy`] traits, which [`PolicyHost`]
//!   implements.
//! - A decision never fails: the chain is the serving module → the last good module for that
//!   interface → the built-in behaviour. A module that traps, times out, runs out of memory or
//!   answers wrongly counts a failure; `quarantine_after` in a row quarantine it with backoff.
//! - The live [`PolicySet`] is swapped whole (arc-swap). A call holds the set it started with,
//!   so in-flight decisions finish on the old module; a module that fails to load never
//!   replaces a loaded one.
//!
//! **Precedence.** Several modules may sit in the folder. For each decision interface, the
//! loaded module whose file name sorts first (byte order) among those implementing it serves
//! it; the others are on standby. `lifecycle` is per module.

pub mod agreement;
mod answers;
mod batch;
mod bindings;
pub mod budget;
pub mod cache;
pub mod componentize;
pub mod engine;
mod explain;
pub mod fixtures;
pub mod health;
mod interface;
pub mod limits;
mod log;
pub mod mode;
pub mod module;
pub mod reload;
pub mod scaffold;
mod seams;
pub mod shadow;
mod view;

#[cfg(test)]
mod answer_props;
#[cfg(test)]
mod sidecar_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

pub use batch::Columns;
pub use bindings::{PACKAGE, WIT_TEXT};
pub use engine::{short_digest, CallLimits, PolicyEngine};
pub use module::{CallFailure, Interface, Module, Rejection, Source};
pub use view::{KeyLimit, KeyLoad, LimitKey, RepoView, Retry, RetryFailure, ViewState};

use crate::config::PolicyConfig;
use crate::model::{RepoColumns, Timestamp};
use crate::schedule::{
    self, BuiltinOrder, BuiltinRetry, Candidate, Failure, Prioritizer, Priority, RateLimit, RateLimitPolicy,
    RetryDecision, RetryPolicy, BUILTIN,
};
use crate::status::PolicyStatus;

/// Errors that stop the policy host from starting at all (modules that fail to load are not
/// errors: they are rejected and shown in status).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("creating the WebAssembly engine failed: {0}")]
    Engine(String),
    #[error("policy.dir {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("watching policy.dir {path} failed: {message}")]
    Watch { path: PathBuf, message: String },
}

/// An answer and who gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided<T> {
    pub answers: T,
    /// The digest of the module that answered.
    pub digest: Arc<str>,
    /// Its name (file name without `.wasm`).
    pub module: Arc<str>,
}

/// What the host needs besides the engine.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The watched folder; `None`: built-in behaviour only.
    pub dir: Option<PathBuf>,
    pub allowlist: Option<Vec<String>>,
    pub quarantine_after: u32,
    /// Shard addresses in configured order, for `repo-view.shard-addr` and limit keys.
    pub shard_addrs: Vec<String>,
    /// The built-in retry rhythm, the last link of the `reenqueue` chain.
    pub builtin_retry: BuiltinRetry,
}

/// A module refused at load, kept for status.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub rejection: Rejection,
    /// sha256 of the config text it was tried with: a rejected pair is not tried again.
    pub config_digest: String,
    pub at: Timestamp,
}

/// The modules in force: an immutable value, swapped whole.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Bumped by every reload that changed something.
    pub generation: u64,
    /// Loaded modules, by file name.
    pub modules: Vec<Arc<Module>>,
    /// Modules refused at the last reload that saw them.
    pub rejected: Vec<Rejected>,
    /// Per decision interface, the chain of modules to ask: the serving one, then the last
    /// good one.
    pub chains: BTreeMap<Interface, Vec<Arc<Module>>>,
}

impl PolicySet {
    /// The repo columns any module that may be asked, serving or shadow, can see: stars and
    /// the details for a `prioritize` module that names them, both for any `reenqueue` module
    /// (its rows carry every column), the details for any `rate-limits` module (a key's load
    /// names its most common service type). The built-in behaviour needs neither.
    pub fn columns_read(&self) -> RepoColumns {
        let prioritizer = |m: &Module| RepoColumns {
            stars: m.columns.has_stars(),
            details: m.columns.has_details(),
            recorded: false,
        };
        let module = |m: &Module, interfaces: &mut dyn Iterator<Item = Interface>| {
            interfaces.fold(RepoColumns::default(), |read, interface| {
                read.union(match interface {
                    Interface::Prioritize => prioritizer(m),
                    Interface::Reenqueue => RepoColumns::POLICY,
                    Interface::RateLimits => RepoColumns { details: true, ..RepoColumns::default() },
                    _ => RepoColumns::default(),
                })
            })
        };
        let asked = self
            .chains
            .iter()
            .flat_map(|(&interface, chain)| chain.iter().map(move |m| module(m, &mut std::iter::once(interface))));
        let shadows = self.shadows().map(|m| module(m, &mut m.shadowed.iter().copied()));
        asked.chain(shadows).fold(RepoColumns::default(), RepoColumns::union)
    }

    /// The modules in shadow mode, by file name.
    pub fn shadows(&self) -> impl Iterator<Item = &Arc<Module>> {
        self.modules.iter().filter(|m| m.mode == mode::Mode::Shadow)
    }

    /// The modules to ask about `interface`, in order; empty: built-in only.
    pub fn chain(&self, interface: Interface) -> &[Arc<Module>] {
        self.chains.get(&interface).map_or(&[], Vec::as_slice)
    }

    /// The module serving `interface`, if any.
    pub fn serving(&self, interface: Interface) -> Option<&Arc<Module>> {
        self.chain(interface).first()
    }
}

type Listener = Arc<dyn Fn() + Send + Sync>;

/// The policy engine as the sidecar sees it: the live [`PolicySet`], decisions with fallback,
/// reloads and status.
pub struct PolicyHost {
    engine: Arc<PolicyEngine>,
    config: HostConfig,
    set: ArcSwap<PolicySet>,
    /// One reload at a time.
    reload_lock: Mutex<()>,
    /// Called after a reload or a change of a module's health state (status refresh).
    listener: Mutex<Option<Listener>>,
    /// Where call durations, loads and fallbacks are counted, once set.
    metrics: OnceLock<Arc<crate::metrics::Metrics>>,
    /// The `prioritize` time of the current tick.
    tick_budget: budget::TickBudget,
    /// What the shadow modules' last evaluations found.
    shadow: shadow::ShadowState,
}

impl PolicyHost {
    /// A host with no modules loaded yet; call [`PolicyHost::reload`] (or start the watcher).
    pub fn new(engine: Arc<PolicyEngine>, config: HostConfig) -> PolicyHost {
        PolicyHost {
            engine,
            config,
            set: ArcSwap::from_pointee(PolicySet::default()),
            reload_lock: Mutex::new(()),
            listener: Mutex::new(None),
            metrics: OnceLock::new(),
            tick_budget: budget::TickBudget::new(crate::config::DEFAULT_POLICY_TICK_BUDGET),
            shadow: shadow::ShadowState::default(),
        }
    }

    /// Sets the policy time each tick may spend in `prioritize` (`[policy] tick_budget`).
    /// The policy time one tick may spend in `prioritize`; each shadow module gets as much.
    pub fn tick_budget(&self) -> std::time::Duration {
        self.tick_budget.limit()
    }

    pub fn set_tick_budget(&self, limit: std::time::Duration) {
        self.tick_budget.set_limit(limit);
    }

    /// Opens the policy time budget of a new tick: the sidecar calls it before ordering a
    /// plan. Until it is first called, calls are not budgeted.
    pub fn start_tick(&self) {
        self.tick_budget.start();
    }

    /// Counts into `metrics` from now on: `policy_eval_seconds{module,interface}` per call,
    /// `policy_loads_total{result}` per load, `policy_fallbacks_total` per failed call.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    fn count_load(&self, loaded: bool) {
        if let Some(metrics) = self.metrics.get() {
            use crate::metrics::{LoadLabels, LoadResult};
            let result = if loaded { LoadResult::loaded } else { LoadResult::rejected };
            metrics.policy_loads.get_or_create(&LoadLabels { result }).inc();
        }
    }

    /// Builds the engine and host from `[policy]`.
    pub fn from_config(
        policy: &PolicyConfig,
        shard_addrs: Vec<String>,
        builtin_retry: BuiltinRetry,
    ) -> Result<PolicyHost, PolicyError> {
        let limits = CallLimits { call_timeout: policy.call_timeout, memory_limit_bytes: policy.memory_limit_bytes };
        let engine = PolicyEngine::new(limits, policy.cache_dir.clone())?;
        let host = PolicyHost::new(
            engine,
            HostConfig {
                dir: policy.dir.clone(),
                allowlist: policy.allowlist.clone(),
                quarantine_after: policy.quarantine_after,
                shard_addrs,
                builtin_retry,
            },
        );
        host.set_tick_budget(policy.tick_budget);
        Ok(host)
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The live set (the same value a decision started now would use).
    pub fn current(&self) -> Arc<PolicySet> {
        self.set.load_full()
    }

    /// Registers a function called after each reload and each quarantine (the sidecar
    /// refreshes `/v1/status` with it).
    pub fn set_listener(&self, listener: impl Fn() + Send + Sync + 'static) {
        *self.listener.lock().expect("listener lock poisoned") = Some(Arc::new(listener));
    }

    fn notify(&self) {
        let listener = self.listener.lock().expect("listener lock poisoned").clone();
        if let Some(listener) = listener {
            listener();
        }
    }

    fn swap(&self, set: PolicySet) {
        self.set.store(Arc::new(set));
        self.notify();
    }

    /// Asks the chain for `interface` with `call`; `None` when no module answered (the caller
    /// uses the built-in behaviour).
    fn decide<T>(
        &self,
        interface: Interface,
        now: Timestamp,
        call: impl Fn(&Module) -> Result<T, CallFailure>,
    ) -> Option<Decided<T>> {
        let set = self.set.load_full();
        let chain = set.chain(interface);
        for (position, module) in chain.iter().enumerate() {
            let admitted = module.health.lock().expect("health lock poisoned").admit(now, self.config.quarantine_after);
            if !admitted {
                continue;
            }
            let started = std::time::Instant::now();
            // A panic here is a host bug met while handling this module's answer: it fails
            // this call (and the tick goes on) instead of taking the tick loop down.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(module))).unwrap_or_else(|panic| {
                    Err(CallFailure::Trap(format!(
                        "the host panicked handling the call: {}",
                        reload::panic_text(&panic)
                    )))
                });
            if let Some(metrics) = self.metrics.get() {
                let labels = crate::metrics::PolicyEvalLabels {
                    module: module.name.to_string(),
                    interface: interface.as_str().to_string(),
                };
                metrics.policy_eval.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            }
            match result {
                Ok(answers) => {
                    module.health.lock().expect("health lock poisoned").success();
                    if position > 0 {
                        tracing::debug!(%interface, module = %module.name, "A fallback module answered.");
                    }
                    return Some(Decided {
                        answers,
                        digest: Arc::clone(&module.digest),
                        module: Arc::clone(&module.name),
                    });
                }
                Err(failure) => self.record_failure(module, interface, &failure, now),
            }
        }
        None
    }

    fn record_failure(&self, module: &Module, interface: Interface, failure: &CallFailure, now: Timestamp) {
        if let Some(metrics) = self.metrics.get() {
            metrics.policy_fallbacks.inc();
        }
        let error = failure.to_string();
        let verdict = module.health.lock().expect("health lock poisoned").failure(
            error.clone(),
            now,
            self.config.quarantine_after,
        );
        let (name, digest) = (&*module.name, short_digest(&module.digest));
        match verdict {
            health::FailureVerdict::Counted => {
                tracing::warn!(module = name, digest, %interface, %error, "Policy call failed; falling back.")
            }
            health::FailureVerdict::Quarantined(until) => {
                tracing::warn!(
                    module = name,
                    digest,
                    %interface,
                    %error,
                    until = %until.to_rfc3339(),
                    "Policy call failed; the module is quarantined."
                );
                self.notify();
            }
        }
    }

    /// `prioritize` through the chain; `None`: use the built-in order.
    pub fn prioritize(&self, repos: &[RepoView], now: Timestamp) -> Option<Decided<Vec<Priority>>> {
        let set = self.set.load();
        if set.chain(Interface::Prioritize).is_empty() {
            return None;
        }
        drop(set);
        self.decide(Interface::Prioritize, now, |module| module.prioritize(repos, now))
    }

    /// `reenqueue` through the chain; `None`: use the built-in retry rhythm.
    pub fn reenqueue(&self, failures: &[RetryFailure], now: Timestamp) -> Option<Decided<Vec<Retry>>> {
        self.decide(Interface::Reenqueue, now, |module| module.reenqueue(failures, now))
    }

    /// `rate-limits` through the chain; `None`: no limits.
    pub fn rate_limits(&self, seen: &[KeyLoad], now: Timestamp) -> Option<Decided<Vec<KeyLimit>>> {
        self.decide(Interface::RateLimits, now, |module| module.rate_limits(seen, now))
    }

    /// Who answers `interface` now: a module digest, or `builtin`.
    pub fn serving_digest(&self, interface: Interface) -> Arc<str> {
        self.set.load().serving(interface).map_or_else(|| Arc::from(BUILTIN), |m| Arc::clone(&m.digest))
    }

    /// One line per module for `/v1/status`: loaded ones first (by name), then rejected ones.
    pub fn status(&self, now: Timestamp) -> Vec<PolicyStatus> {
        let set = self.set.load_full();
        let mut out = Vec::new();
        for module in &set.modules {
            let health = module.health.lock().expect("health lock poisoned").clone();
            let serving: Vec<String> = Interface::DECISIONS
                .iter()
                .filter(|&&i| set.serving(i).is_some_and(|m| Arc::ptr_eq(m, module)))
                .map(|i| i.as_str().to_string())
                .collect();
            let state = if health.is_quarantined(now) {
                "quarantined"
            } else if module.mode == mode::Mode::Shadow {
                "shadow"
            } else if serving.is_empty() {
                "standby"
            } else {
                "active"
            };
            out.push(PolicyStatus {
                name: module.name.to_string(),
                file: module.path.display().to_string(),
                digest: module.digest.to_string(),
                interfaces: module.interfaces.iter().map(|i| i.as_str().to_string()).collect(),
                columns: module.columns.names().into_iter().map(str::to_string).collect(),
                serving,
                loaded_at: Some(module.loaded_at.to_rfc3339()),
                state: state.to_string(),
                last_error: health.last_error.clone(),
                quarantined_until: health.quarantined_until.filter(|&t| t > now).map(Timestamp::to_rfc3339),
                calls: health.calls,
                failures: health.failures,
                shadow: (module.mode == mode::Mode::Shadow).then(|| self.shadow_figures(module)).flatten(),
            });
        }
        for rejected in &set.rejected {
            out.push(PolicyStatus {
                name: rejected.rejection.name.clone(),
                file: rejected.rejection.path.display().to_string(),
                digest: rejected.rejection.digest.clone(),
                interfaces: Vec::new(),
                columns: Vec::new(),
                serving: Vec::new(),
                loaded_at: None,
                state: "rejected".to_string(),
                last_error: Some(rejected.rejection.error.clone()),
                quarantined_until: None,
                calls: 0,
                failures: 0,
                shadow: None,
            });
        }
        out
    }

    fn shard_addr(&self, shard: u16) -> &str {
        self.config.shard_addrs.get(usize::from(shard)).map_or("", String::as_str)
    }
}

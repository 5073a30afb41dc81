//! One policy module: validated against the contract at load, then called with fresh stores.
//!
//! Loading is where everything that can be checked once is checked: the bytes are a
//! component, its digest is allowed, it imports nothing but `log` (and the type-only `types`),
//! it exports at least one decision interface, each export has the contract's exact types, and
//! `init` accepts the operator's config. A module that passes is called without further
//! surprises except those only a call can show (traps, timeouts, memory, wrong answers), which
//! [`Module`]'s call methods (`calls.rs`) turn into a [`CallFailure`] after checking every answer.
//!
//! **Instances.** Every call instantiates the module afresh from its `InstancePre` (a few
//! microseconds with the pooling allocator) and calls `init` with the module's config before
//! the decision function, so no state survives from one call to the next: a call cannot see
//! another's data, and a trap leaves nothing behind.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{types::ComponentItem, Instance, InstancePre};
use wasmtime::Store;

use super::batch::Columns;
use super::bindings::{
    explain, explain_limits, lifecycle, prioritize, rank, rate_limits, reenqueue, EARLIER_VERSIONS, PACKAGE, VERSION,
    VERSIONS,
};
use super::engine::{digest_of, PolicyEngine, StoreData};
use super::health::Health;
use super::limits::{MemoryCapExceeded, TableCapExceeded};
use crate::model::Timestamp;
use crate::text;

mod calls;

/// Longest delay a `reenqueue` answer may ask for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest give-up reason kept (longer ones are cut).
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest explanation kept (longer ones are cut).
pub const MAX_EXPLANATION_BYTES: usize = 300;

pub use super::interface::Interface;

/// Why one call of a module did not give a usable answer. Every kind counts as a failure of
/// the module (towards quarantine) and sends the decision down the fallback chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The epoch deadline passed.
    Timeout(Duration),
    /// The module trapped (including growing memory past the cap, and `init` failing).
    Trap(String),
    /// The module answered, but the answer broke the contract.
    BadAnswer(String),
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::Timeout(limit) => {
                write!(f, "timed out: the call ran past policy.call_timeout ({})", humantime::format_duration(*limit))
            }
            CallFailure::Trap(message) => write!(f, "trapped: {message}"),
            CallFailure::BadAnswer(message) => write!(f, "answered wrongly: {message}"),
        }
    }
}

/// A module file as found in the policy directory.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file name without `.wasm`: the module's name in logs and status.
    pub name: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// The text of `NAME.toml` beside it, empty when there is none.
    pub config: String,
}

/// Why a module was refused at load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub name: String,
    pub path: PathBuf,
    pub digest: String,
    pub error: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {} ({}): {}", self.name, self.path.display(), self.error)
    }
}

/// Interface indices resolved at load, so a call does no string lookups.
#[derive(Clone)]
struct Exports {
    explain: Option<explain::GuestIndices>,
    explain_limits: Option<explain_limits::GuestIndices>,
    lifecycle: Option<lifecycle::GuestIndices>,
    prioritize: Option<Prioritizer>,
    rate_limits: Option<rate_limits::GuestIndices>,
    reenqueue: Option<reenqueue::GuestIndices>,
}

/// How a module answers what to clone first.
#[derive(Clone)]
enum Prioritizer {
    /// `rank` (0.2.2): scores in one `list<f64>`, which leaves the module in one copy.
    Rank(rank::GuestIndices),
    /// `prioritize` (0.2.0, 0.2.1): a `list<priority>` of variants, lifted one at a time.
    Variants(prioritize::GuestIndices),
}

/// A validated module, ready to call from any thread.
pub struct Module {
    pub name: Arc<str>,
    pub path: PathBuf,
    /// sha256 of the file, lower-case hex.
    pub digest: Arc<str>,
    /// The text passed to `init` (`NAME.toml` without the host's `[clonekeeper]` table).
    pub config: String,
    /// `NAME.toml` as read: a reload that finds it unchanged keeps the module.
    pub file_config: String,
    /// Serving, or shadowing the serving module (`NAME.toml`'s `[clonekeeper] mode`).
    pub mode: super::mode::Mode,
    /// The interfaces a shadow answers beside the serving module (empty while serving).
    pub shadowed: Vec<Interface>,
    /// The contract version it was built against: `0.2.0`, `0.2.1` (which can explain) or
    /// `0.2.2` (which answers `rank`).
    pub contract: &'static str,
    /// Exported interfaces, in [`Interface`] order.
    pub interfaces: Vec<Interface>,
    /// The columns `prioritize` reads (its `columns` answer at load); empty without it.
    pub columns: Columns,
    pub loaded_at: Timestamp,
    /// Whether the precompiled code came from the disk cache.
    pub from_cache: bool,
    pub health: Mutex<Health>,
    engine: Arc<PolicyEngine>,
    pre: InstancePre<StoreData>,
    exports: Exports,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// Validates `source` and runs its `init`. Slow (compiles unless cached): call it off the
    /// async runtime. The error names the file and says what is wrong.
    pub fn load(
        engine: &Arc<PolicyEngine>,
        source: &Source,
        allowlist: Option<&[String]>,
        now: Timestamp,
    ) -> Result<Module, Rejection> {
        let digest = digest_of(&source.bytes);
        let reject = |error: String| Rejection {
            name: source.name.clone(),
            path: source.path.clone(),
            digest: digest.clone(),
            error,
        };
        if let Some(allowed) = allowlist {
            if !allowed.iter().any(|d| d.eq_ignore_ascii_case(&digest)) {
                return Err(reject(format!("its sha256 {digest} is not in policy.allowlist")));
            }
        }
        let (component, from_cache) = engine.compile(&source.bytes, &digest).map_err(reject)?;
        let wasm_engine = engine.engine();
        let component_type = component.component_type();

        let names = component_type.imports(wasm_engine).chain(component_type.exports(wasm_engine)).map(|(n, _)| n);
        if let Some(other) = names.filter_map(contract_version).find(|v| !VERSIONS.contains(v)) {
            return Err(reject(format!(
                "was built against clonekeeper:policy@{other}, and this clonekeeper speaks {PACKAGE} (and \
                 loads {EARLIER_VERSIONS}): rebuild it against wit/policy.wit (docs/policies.md lists what \
                 changed between versions)"
            )));
        }

        let names = component_type.imports(wasm_engine).chain(component_type.exports(wasm_engine)).map(|(n, _)| n);
        let versions: Vec<&str> = names.filter_map(contract_version).collect();
        let contract = VERSIONS.into_iter().rev().find(|v| versions.contains(v)).unwrap_or(VERSION);
        let allowed_imports: Vec<String> = VERSIONS
            .iter()
            .flat_map(|v| [format!("clonekeeper:policy/log@{v}"), format!("clonekeeper:policy/types@{v}")])
            .collect();
        for (name, _) in component_type.imports(wasm_engine) {
            if !allowed_imports.iter().any(|a| a == name) {
                let hint = if name.starts_with("wasi:") {
                    " (build Python with `componentize-py … componentize --stub-wasi`, JavaScript with \
                     `jco componentize --disable all`, Rust for wasm32-unknown-unknown)"
                } else {
                    ""
                };
                return Err(reject(format!(
                    "imports {name}, which policies may not use: a policy may import only \
                     clonekeeper:policy/log@{VERSION}{hint}"
                )));
            }
        }

        let mut interfaces = Vec::new();
        let mut exported = Vec::new();
        let mut ranks = false;
        for (name, item) in component_type.exports(wasm_engine) {
            exported.push(name.to_string());
            let known = Interface::ALL.into_iter().find_map(|i| Some((i, i.exported_as(name)?)));
            match (known, item.ty) {
                (Some((interface, wit_name)), ComponentItem::ComponentInstance(_)) => {
                    ranks |= wit_name == "rank";
                    if !interfaces.contains(&interface) {
                        interfaces.push(interface);
                    }
                }
                (Some((_, wit_name)), _) => {
                    return Err(reject(format!("exports {name} but not as an instance of interface {wit_name}")))
                }
                (None, _) => {
                    tracing::debug!(module = %source.name, export = name, "Ignoring an export outside the contract.")
                }
            }
        }
        interfaces.sort();
        if !interfaces.iter().any(|i| Interface::DECISIONS.contains(i)) {
            return Err(reject(format!(
                "implements none of {PACKAGE}'s rank, rate-limits or reenqueue (it exports: {}); \
                 build it for one of the worlds in wit/policy.wit",
                if exported.is_empty() { "nothing".to_string() } else { exported.join(", ") }
            )));
        }

        let pre =
            engine.linker().instantiate_pre(&component).map_err(|e| reject(format!("cannot be linked: {e:#}")))?;
        let has = |i: Interface| interfaces.contains(&i);
        let indices_error = |i: &str, e: wasmtime::Error| reject(type_error(i, &e));
        let exports = Exports {
            explain: has(Interface::Explain)
                .then(|| explain::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| indices_error("explain", e))?,
            explain_limits: has(Interface::ExplainLimits)
                .then(|| explain_limits::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| indices_error("explain-limits", e))?,
            lifecycle: has(Interface::Lifecycle)
                .then(|| lifecycle::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| indices_error("lifecycle", e))?,
            // A module that exports both answers through `rank`.
            prioritize: match (has(Interface::Prioritize), ranks) {
                (false, _) => None,
                (true, true) => {
                    Some(Prioritizer::Rank(rank::GuestIndices::new(&pre).map_err(|e| indices_error("rank", e))?))
                }
                (true, false) => Some(Prioritizer::Variants(
                    prioritize::GuestIndices::new(&pre).map_err(|e| indices_error("prioritize", e))?,
                )),
            },
            rate_limits: has(Interface::RateLimits)
                .then(|| rate_limits::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| indices_error("rate-limits", e))?,
            reenqueue: has(Interface::Reenqueue)
                .then(|| reenqueue::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| indices_error("reenqueue", e))?,
        };
        let split = super::mode::split(&source.config).map_err(|e| reject(format!("{}.toml: {e}", source.name)))?;
        let shadowed = match split.mode {
            super::mode::Mode::Serving => Vec::new(),
            super::mode::Mode::Shadow if split.shadows.is_empty() => {
                Interface::DECISIONS.into_iter().filter(|i| interfaces.contains(i)).collect()
            }
            super::mode::Mode::Shadow => {
                if let Some(missing) = split.shadows.iter().find(|i| !interfaces.contains(i)) {
                    return Err(reject(format!(
                        "{}.toml: [clonekeeper] shadows {missing}, which it does not implement",
                        source.name
                    )));
                }
                split.shadows.clone()
            }
        };
        let (mode, config) = (split.mode, split.config);
        let mut module = Module {
            name: Arc::from(source.name.as_str()),
            path: source.path.clone(),
            digest: Arc::from(digest.as_str()),
            config,
            file_config: source.config.clone(),
            mode,
            shadowed,
            contract,
            interfaces,
            columns: Columns::default(),
            loaded_at: now,
            from_cache,
            health: Mutex::new(Health::default()),
            engine: Arc::clone(engine),
            pre,
            exports,
        };
        module.columns = module.check_types_and_init().map_err(reject)?;
        Ok(module)
    }

    pub fn implements(&self, interface: Interface) -> bool {
        self.interfaces.contains(&interface)
    }

    /// The WIT name it answers `interface` through: `rank` or, built before 0.2.2, `prioritize`.
    pub fn exported_name(&self, interface: Interface) -> &'static str {
        match (interface, &self.exports.prioritize) {
            (Interface::Prioritize, Some(Prioritizer::Variants(_))) => "prioritize",
            (other, _) => other.wit_names()[0],
        }
    }

    /// Instantiates once, type-checks every export against the contract (a wrong signature
    /// fails here, not mid-tick), runs `init`, and asks `prioritize` which columns it reads.
    fn check_types_and_init(&self) -> Result<Columns, String> {
        let (mut store, instance) = self.instantiate().map_err(|e| e.to_string())?;
        let e = &self.exports;
        let ranker = match &e.prioritize {
            Some(Prioritizer::Rank(indices)) => {
                Some(indices.load(&mut store, &instance).map_err(|e| type_error("rank", &e))?)
            }
            _ => None,
        };
        let prioritizer = match &e.prioritize {
            Some(Prioritizer::Variants(indices)) => {
                Some(indices.load(&mut store, &instance).map_err(|e| type_error("prioritize", &e))?)
            }
            _ => None,
        };
        if let Some(indices) = &e.rate_limits {
            indices.load(&mut store, &instance).map_err(|e| type_error("rate-limits", &e))?;
        }
        if let Some(indices) = &e.reenqueue {
            indices.load(&mut store, &instance).map_err(|e| type_error("reenqueue", &e))?;
        }
        if let Some(indices) = &e.lifecycle {
            indices.load(&mut store, &instance).map_err(|e| type_error("lifecycle", &e))?;
        }
        if let Some(indices) = &e.explain {
            indices.load(&mut store, &instance).map_err(|e| type_error("explain", &e))?;
        }
        if let Some(indices) = &e.explain_limits {
            indices.load(&mut store, &instance).map_err(|e| type_error("explain-limits", &e))?;
        }
        self.init(&mut store, &instance).map_err(|e| match e {
            CallFailure::BadAnswer(message) => message,
            other => format!("init {other}"),
        })?;
        let columns = match (ranker, prioritizer) {
            (Some(guest), _) => {
                guest.call_columns(&mut store).map_err(|e| format!("rank's columns {}", self.failure(e)))
            }
            (None, Some(guest)) => {
                guest.call_columns(&mut store).map_err(|e| format!("prioritize's columns {}", self.failure(e)))
            }
            (None, None) => Ok(Vec::new()),
        };
        columns.map(|columns| Columns::from_wit(&columns))
    }

    /// A fresh store and instance, with `init` not yet called.
    fn instantiate(&self) -> Result<(Store<StoreData>, Instance), CallFailure> {
        let mut store = self.engine.new_store(&self.name, &self.digest);
        let instance = self.pre.instantiate(&mut store).map_err(|e| self.failure(e))?;
        Ok((store, instance))
    }

    /// Calls `init(config)` if the module exports `lifecycle`. A refusal is a
    /// [`CallFailure::BadAnswer`] whose message quotes the module.
    fn init(&self, store: &mut Store<StoreData>, instance: &Instance) -> Result<(), CallFailure> {
        let Some(indices) = &self.exports.lifecycle else {
            return Ok(());
        };
        let guest = indices.load(&mut *store, instance).map_err(|e| self.failure(e))?;
        match guest.call_init(&mut *store, &self.config) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(init_refused(&message)),
            Err(error) => Err(self.failure(error)),
        }
    }

    /// A fresh, initialised instance.
    fn ready(&self) -> Result<(Store<StoreData>, Instance), CallFailure> {
        let (mut store, instance) = self.instantiate()?;
        store.data_mut().demote_logs = true;
        self.init(&mut store, &instance)?;
        store.data_mut().demote_logs = false;
        Ok((store, instance))
    }

    /// Classifies a wasmtime error from a call.
    fn failure(&self, error: wasmtime::Error) -> CallFailure {
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return CallFailure::Timeout(self.engine.limits().call_timeout);
        }
        if let Some(exceeded) = error.downcast_ref::<MemoryCapExceeded>() {
            return CallFailure::Trap(exceeded.to_string());
        }
        if let Some(exceeded) = error.downcast_ref::<TableCapExceeded>() {
            return CallFailure::Trap(exceeded.to_string());
        }
        let text = format!("{error:#}");
        if text.contains("Memory maximum size exceeded") {
            // One memory past the pool's slot size, which is the cap too.
            return CallFailure::Trap(format!(
                "memory limit exceeded: a memory would grow past policy.memory_limit_mb ({} bytes)",
                self.engine.limits().memory_limit_bytes
            ));
        }
        CallFailure::Trap(first_lines(&text))
    }

    /// Runs only `init` with `config` (for fixtures that test config handling).
    pub fn try_init(&self, config: &str) -> Result<(), CallFailure> {
        let (mut store, instance) = self.instantiate()?;
        let Some(indices) = &self.exports.lifecycle else {
            return Ok(());
        };
        let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
        match guest.call_init(&mut store, config) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(init_refused(&message)),
            Err(error) => Err(self.failure(error)),
        }
    }

    /// This module fed `columns` instead of those it asked for (the benchmark measures what
    /// the choice saves; extra columns are only extra data to a module).
    pub fn with_columns(&self, columns: Columns) -> Module {
        let mut module = self.with_config(&self.config);
        module.columns = columns;
        module
    }

    /// This module with another config, sharing the compiled code (fixtures may bring their
    /// own config).
    pub fn with_config(&self, config: &str) -> Module {
        Module {
            name: Arc::clone(&self.name),
            path: self.path.clone(),
            digest: Arc::clone(&self.digest),
            config: config.to_string(),
            file_config: self.file_config.clone(),
            mode: self.mode,
            shadowed: self.shadowed.clone(),
            interfaces: self.interfaces.clone(),
            columns: self.columns,
            loaded_at: self.loaded_at,
            from_cache: self.from_cache,
            health: Mutex::new(Health::default()),
            engine: Arc::clone(&self.engine),
            pre: self.pre.clone(),
            contract: self.contract,
            exports: self.exports.clone(),
        }
    }
}

/// The version in a contract import or export name, e.g. `0.1.0` in
/// `clonekeeper:policy/log@0.1.0`; `None` for names outside the contract.
fn contract_version(name: &str) -> Option<&str> {
    name.strip_prefix("clonekeeper:policy/")?.split_once('@').map(|(_, version)| version)
}

/// `interface` is the WIT name the module exports, e.g. `rank`.
fn type_error(interface: &str, error: &wasmtime::Error) -> String {
    format!(
        "exports clonekeeper:policy/{interface} with types that do not match wit/policy.wit: {}",
        first_lines(&format!("{error:#}"))
    )
}

/// The first few lines of a (possibly long, backtrace-carrying) error, on one line.
fn first_lines(text: &str) -> String {
    let mut out: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).take(4).collect();
    out.dedup();
    let mut joined = out.join(" | ");
    text::truncate(&mut joined, 600);
    joined
}

/// `init`'s refusal, its message cut to [`MAX_REASON_BYTES`] (a module chooses its length).
fn init_refused(message: &str) -> CallFailure {
    CallFailure::BadAnswer(format!("init rejected its config: {}", text::truncated(message, MAX_REASON_BYTES)))
}

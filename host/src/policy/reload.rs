//! Loading the policy folder: a scan that builds the next [`PolicySet`], and a watcher that
//! rescans on every change.
//!
//! **What a scan looks at.** Every `NAME.wasm` in the folder whose name does not start with a
//! dot (so Kubernetes' `..data` and `..2024_…` entries are skipped), following symlinks, with
//! `NAME.toml` beside it as its config and `NAME.fixtures.json` or `NAME.fixtures/*.json` as
//! its self-check. A module whose file, config and digest are unchanged is kept as it is
//! (health included); one refused before with the same digest and config is not tried again.
//!
//! **Why half-written files are harmless.** A scan reads each file once and judges those
//! bytes: a partial file is not a valid component, so it is rejected and the previous version
//! of the module stays in force. The write that completes it is another event, another scan,
//! and the complete bytes load.
//!
//! **Watching.** notify's debouncer watches the folder itself (not the files, so renames over
//! a module and the `..data` symlink swap are seen) and wakes a reload thread, which also
//! rescans every [`RESCAN_INTERVAL`] in case an event was lost.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;

use super::engine::{digest_of, short_digest};
use super::fixtures;
use super::mode::Mode;
use super::module::{Interface, Module, Rejection, Source};
use super::{PolicyError, PolicyHost, PolicySet, Rejected};
use crate::model::Timestamp;

/// Quiet time after the last event before a rescan.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// A rescan happens at least this often, events or not.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Names of modules newly loaded (a new file, a new version, or a new config).
    pub loaded: Vec<String>,
    /// Modules refused by this reload (not those refused before and unchanged since).
    pub rejected: Vec<String>,
    /// Names of modules whose file is gone.
    pub removed: Vec<String>,
}

impl ReloadReport {
    pub fn changed(&self) -> bool {
        !(self.loaded.is_empty() && self.rejected.is_empty() && self.removed.is_empty())
    }
}

/// A module file found by a scan: its source, or why it could not be read.
type Found = Result<Source, Rejection>;

/// Lists the modules in `dir`, by name.
pub fn scan(dir: &Path) -> Result<Vec<Found>, std::io::Error> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let Some(name) = file_name.strip_suffix(".wasm") else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let path = entry.path();
        let read = fs::read(&path).and_then(|bytes| {
            let config_path = dir.join(format!("{name}.toml"));
            let config = match fs::read_to_string(&config_path) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(error) => return Err(std::io::Error::new(error.kind(), format!("{name}.toml: {error}"))),
            };
            Ok((bytes, config))
        });
        found.push(match read {
            Ok((bytes, config)) => Ok(Source { name: name.to_string(), path, bytes, config }),
            Err(error) => Err(Rejection {
                name: name.to_string(),
                path,
                digest: String::new(),
                error: format!("cannot be read: {error}"),
            }),
        });
    }
    found.sort_by(|a, b| found_name(a).cmp(found_name(b)));
    Ok(found)
}

fn found_name(found: &Found) -> &str {
    match found {
        Ok(source) => &source.name,
        Err(rejection) => &rejection.name,
    }
}

impl PolicyHost {
    /// Rescans the policy folder and swaps in the result. Compiles what is new: call it off
    /// the async runtime. Never leaves the host without its previous good modules.
    pub fn reload(&self, now: Timestamp) -> Result<ReloadReport, PolicyError> {
        // A reload that panicked left nothing half-done behind the lock (the set is swapped
        // whole, at the end), so a poisoned lock is safe to take.
        let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(dir) = self.config.dir.clone() else {
            return Ok(ReloadReport::default());
        };
        let found = scan(&dir).map_err(|source| PolicyError::Dir { path: dir.clone(), source })?;
        let old = self.set.load_full();
        let mut report = ReloadReport::default();
        let mut modules: Vec<Arc<Module>> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        let present: HashSet<String> = found.iter().map(|f| found_name(f).to_string()).collect();
        let keep_previous = |name: &str, modules: &mut Vec<Arc<Module>>| {
            if let Some(previous) = old.modules.iter().find(|m| &*m.name == name) {
                modules.push(Arc::clone(previous));
            }
        };

        for entry in found {
            let source = match entry {
                Ok(source) => source,
                Err(rejection) => {
                    keep_previous(&rejection.name, &mut modules);
                    self.log_rejection(&rejection);
                    self.count_load(false);
                    report.rejected.push(rejection.name.clone());
                    rejected.push(Rejected { rejection, config_digest: String::new(), at: now });
                    continue;
                }
            };
            let digest = digest_of(&source.bytes);
            let config_digest = digest_of(source.config.as_bytes());
            if let Some(same) = old
                .modules
                .iter()
                .find(|m| *m.name == *source.name && *m.digest == *digest && m.file_config == source.config)
            {
                modules.push(Arc::clone(same));
                continue;
            }
            if let Some(same) = old.rejected.iter().find(|r| {
                r.rejection.name == source.name && r.rejection.digest == digest && r.config_digest == config_digest
            }) {
                keep_previous(&source.name, &mut modules);
                rejected.push(same.clone());
                continue;
            }
            match self.load_guarded(&source, &dir, now) {
                Ok(module) => {
                    tracing::info!(
                        module = %module.name,
                        file = %module.path.display(),
                        digest = short_digest(&module.digest),
                        interfaces = %module.interfaces.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(","),
                        from_cache = module.from_cache,
                        "Policy module loaded."
                    );
                    report.loaded.push(source.name.clone());
                    self.count_load(true);
                    modules.push(Arc::new(module));
                }
                Err(rejection) => {
                    keep_previous(&source.name, &mut modules);
                    self.log_rejection(&rejection);
                    self.count_load(false);
                    report.rejected.push(rejection.name.clone());
                    rejected.push(Rejected { rejection, config_digest, at: now });
                }
            }
        }
        for module in &old.modules {
            if !present.contains(&*module.name) {
                tracing::info!(module = %module.name, digest = short_digest(&module.digest), "Policy module removed.");
                report.removed.push(module.name.to_string());
            }
        }

        let chains = build_chains(&old, &modules, &present);
        for interface in Interface::DECISIONS {
            let before = old.serving(interface).map(|m| Arc::clone(&m.digest));
            let after = chains.get(&interface).and_then(|c| c.first()).map(|m| Arc::clone(&m.digest));
            if before != after {
                let serving = chains.get(&interface).and_then(|c| c.first());
                tracing::info!(
                    %interface,
                    module = serving.map_or("builtin", |m| &*m.name),
                    digest = serving.map_or("builtin", |m| short_digest(&m.digest)),
                    "Policy serving this interface changed."
                );
            }
        }
        let rejected_changed = old.rejected.len() != rejected.len()
            || old.rejected.iter().zip(&rejected).any(|(a, b)| a.rejection != b.rejection);
        let set = PolicySet {
            generation: old.generation + u64::from(report.changed() || rejected_changed),
            modules,
            rejected,
            chains,
        };
        self.swap(set);
        Ok(report)
    }

    /// [`PolicyHost::load_checked`], with a panic (a bug on our side, e.g. in checking what
    /// the module said) turned into this module's rejection: one module must never take the
    /// reload thread, and with it every later module, down.
    fn load_guarded(&self, source: &Source, dir: &Path, now: Timestamp) -> Result<Module, Rejection> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.load_checked(source, dir, now))).unwrap_or_else(
            |panic| {
                Err(Rejection {
                    name: source.name.clone(),
                    path: source.path.clone(),
                    digest: digest_of(&source.bytes),
                    error: format!("loading it panicked (a clonekeeper bug; please report it): {}", panic_text(&panic)),
                })
            },
        )
    }

    /// Loads a module and runs the fixtures it ships, if any.
    fn load_checked(&self, source: &Source, dir: &Path, now: Timestamp) -> Result<Module, Rejection> {
        let module = Module::load(&self.engine, source, self.config.allowlist.as_deref(), now)?;
        let files = fixtures::shipped_with(dir, &source.name);
        if files.is_empty() {
            return Ok(module);
        }
        let mut failures = Vec::new();
        let mut cases = 0;
        for file in &files {
            match fixtures::run_file(&module, file) {
                Ok(results) => {
                    cases += results.len();
                    failures.extend(
                        results.into_iter().filter(|r| !r.passed()).map(|r| {
                            format!("{}: case {:?}: {}", file.display(), r.name, r.failure.unwrap_or_default())
                        }),
                    );
                }
                Err(error) => failures.push(error),
            }
        }
        if failures.is_empty() {
            tracing::info!(module = %source.name, cases, "Policy fixtures passed.");
            return Ok(module);
        }
        Err(Rejection {
            name: source.name.clone(),
            path: source.path.clone(),
            digest: module.digest.to_string(),
            error: format!(
                "its fixture self-check failed ({} of {cases} cases): {}",
                failures.len(),
                failures.into_iter().take(3).collect::<Vec<_>>().join("; ")
            ),
        })
    }

    fn log_rejection(&self, rejection: &Rejection) {
        tracing::warn!(
            module = %rejection.name,
            file = %rejection.path.display(),
            digest = short_digest(&rejection.digest),
            error = %rejection.error,
            "Policy module rejected; what was in force stays in force."
        );
    }

    /// Loads the folder now, then watches it: every change (debounced) triggers a reload on a
    /// dedicated thread. Reloading stops when the returned [`Watcher`] is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, PolicyError> {
        let Some(dir) = self.config.dir.clone() else {
            return Ok(Watcher { _debouncer: None, stop: None });
        };
        let watch_error = |message: String| PolicyError::Watch { path: dir.clone(), message };
        let (tx, rx) = mpsc::channel::<Wake>();
        let event_tx = tx.clone();
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: notify_debouncer_full::DebounceEventResult| {
            let relevant = match &result {
                Ok(events) => !events.is_empty(),
                Err(_) => true,
            };
            if relevant {
                let _ = event_tx.send(Wake::Changed);
            }
        })
        .map_err(|e| watch_error(e.to_string()))?;
        debouncer.watch(&dir, RecursiveMode::Recursive).map_err(|e| watch_error(e.to_string()))?;
        if let Err(error) = self.reload(Timestamp::now()) {
            tracing::error!(%error, "Loading the policy folder failed; built-in behaviour until it can be read.");
        }
        let host = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("policy-reload".to_string())
            .spawn(move || loop {
                match rx.recv_timeout(RESCAN_INTERVAL) {
                    Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    Ok(Wake::Changed) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                // Events that came in meanwhile are covered by this one scan.
                while let Ok(wake) = rx.try_recv() {
                    if matches!(wake, Wake::Stop) {
                        return;
                    }
                }
                let Some(host) = host.upgrade() else {
                    return;
                };
                let reloaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.reload(Timestamp::now())));
                match reloaded {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::error!(%error, "Rescanning the policy folder failed; keeping the modules in force.")
                    }
                    Err(panic) => tracing::error!(
                        panic = panic_text(&panic),
                        "Rescanning the policy folder panicked (a clonekeeper bug); keeping the modules in force \
                         and watching on."
                    ),
                }
            })
            .map_err(|e| watch_error(format!("starting the reload thread: {e}")))?;
        tracing::info!(dir = %dir.display(), "Watching the policy folder.");
        Ok(Watcher { _debouncer: Some(Box::new(debouncer)), stop: Some(tx) })
    }
}

enum Wake {
    Changed,
    Stop,
}

/// Keeps the folder watched; dropping it stops the watcher and the reload thread.
pub struct Watcher {
    _debouncer: Option<Box<dyn std::any::Any + Send>>,
    stop: Option<mpsc::Sender<Wake>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(Wake::Stop);
        }
    }
}

/// Per decision interface: the first module by name implementing it serves; the previous
/// serving module (if its file is still there, e.g. an older version of the same module) is
/// the last good one behind it.
fn build_chains(
    old: &PolicySet,
    modules: &[Arc<Module>],
    present: &HashSet<String>,
) -> BTreeMap<Interface, Vec<Arc<Module>>> {
    let mut chains = BTreeMap::new();
    // A shadow never decides, nor stays on as the last good module once it is one.
    let shadows: HashSet<&str> = modules.iter().filter(|m| m.mode == Mode::Shadow).map(|m| &*m.name).collect();
    for interface in Interface::DECISIONS {
        let mut chain: Vec<Arc<Module>> = Vec::new();
        if let Some(serving) = modules.iter().find(|m| m.implements(interface) && m.mode == Mode::Serving) {
            chain.push(Arc::clone(serving));
        }
        for previous in old.chain(interface) {
            if chain.len() >= 2 {
                break;
            }
            let duplicate = chain.iter().any(|m| m.digest == previous.digest && m.config == previous.config);
            if !duplicate && present.contains(&*previous.name) && !shadows.contains(&*previous.name) {
                chain.push(Arc::clone(previous));
            }
        }
        if !chain.is_empty() {
            chains.insert(interface, chain);
        }
    }
    chains
}

/// The message of a caught panic, for a log line or a rejection.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    crate::text::truncated(&text, 600)
}

/// The folder a module file sits in, for fixtures shipped beside it.
pub fn dir_of(path: &Path) -> PathBuf {
    path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

//! The one wasmtime [`Engine`] of the process: component model, Cranelift, epoch interruption
//! with a 10 ms ticker thread, the pooling allocator sized by `[policy]`, and the on-disk cache
//! of precompiled code.
//!
//! **Invariant:** every call into a module runs in a fresh [`Store`] with an epoch deadline
//! and a memory cap ([`PolicyEngine::new_store`]); nothing a module does can outlive its call.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits};

use super::bindings::{self, LogLevel};
use super::PolicyError;

/// How often the ticker thread advances the engine's epoch; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bounds of every call, from `[policy]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock budget of one call (init included).
    pub call_timeout: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_limit_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits { call_timeout: Duration::from_millis(500), memory_limit_bytes: 256 << 20 }
    }
}

/// What a store carries: the module's identity (for its log lines) and its limits.
pub struct StoreData {
    pub module: Arc<str>,
    pub digest: Arc<str>,
    limits: StoreLimits,
    /// Log lines the module may still write in this call; a chatty module is cut off.
    log_budget: u32,
    /// Log at debug level whatever the module asks (set while `init` runs before a call:
    /// it runs before every call, and its lines were shown once at load).
    pub demote_logs: bool,
}

/// Log lines one call may write.
const LOG_LINES_PER_CALL: u32 = 100;
/// Longest message or field value kept from a module's log line.
const LOG_TEXT_MAX: usize = 1024;

impl bindings::clonekeeper::policy::log::Host for StoreData {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let mut message = message;
        truncate(&mut message, LOG_TEXT_MAX);
        let mut text = String::new();
        for (key, mut value) in fields.into_iter().take(32) {
            truncate(&mut value, LOG_TEXT_MAX);
            text.push_str(&format!("{key}={value:?} "));
        }
        let fields = text.trim_end();
        let (module, digest) = (&*self.module, short_digest(&self.digest));
        let level = if self.demote_logs { LogLevel::Debug } else { level };
        match level {
            LogLevel::Debug => tracing::debug!(module, digest, fields, "Policy: {message}"),
            LogLevel::Info => tracing::info!(module, digest, fields, "Policy: {message}"),
            LogLevel::Warn => tracing::warn!(module, digest, fields, "Policy: {message}"),
            LogLevel::Error => tracing::error!(module, digest, fields, "Policy: {message}"),
        }
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// The first 12 hex digits of a digest, for log lines.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The engine, the linker with the one host import, the call limits and the code cache.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreData>,
    limits: CallLimits,
    cache_dir: Option<PathBuf>,
    /// Hex digest of the engine's compatibility hash: part of every cache key.
    engine_key: String,
    /// Components compiled by Cranelift (not loaded from the cache) since start.
    compiled: AtomicU64,
}

impl PolicyEngine {
    /// Builds the engine and starts its epoch ticker (a thread that ends when the engine is
    /// dropped).
    pub fn new(limits: CallLimits, cache_dir: Option<PathBuf>) -> Result<Arc<PolicyEngine>, PolicyError> {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(128)
            .total_core_instances(512)
            .total_memories(128)
            .total_tables(512)
            .max_tables_per_module(4)
            .table_elements(200_000)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .max_memory_size(limits.memory_limit_bytes)
            .max_unused_warm_slots(16);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // jco's QuickJS components declare the async builtins (`task.cancel`, …) even when
            // they never use them; calls stay synchronous.
            .wasm_component_model_async(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        bindings::clonekeeper::policy::log::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |data| data)
            .map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        // `types` holds only types; a component that uses them imports it as an empty instance.
        linker
            .instance(&format!("clonekeeper:policy/types@{}", bindings::VERSION))
            .map_err(|e| PolicyError::Engine(format!("{e:#}")))?;

        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("policy-epoch".to_string())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            })
            .map_err(|e| PolicyError::Engine(format!("starting the epoch ticker: {e}")))?;

        Ok(Arc::new(PolicyEngine { engine, linker, limits, cache_dir, engine_key, compiled: AtomicU64::new(0) }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StoreData> {
        &self.linker
    }

    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// How many components Cranelift compiled since start (cache hits excluded).
    pub fn compiled_count(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// A fresh store for one call: the epoch deadline from `call_timeout`, memory capped at
    /// `memory_limit_bytes` (growth past it traps).
    pub fn new_store(&self, module: &Arc<str>, digest: &Arc<str>) -> Store<StoreData> {
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_limit_bytes)
            .table_elements(200_000)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        let data = StoreData {
            module: Arc::clone(module),
            digest: Arc::clone(digest),
            limits,
            log_budget: LOG_LINES_PER_CALL,
            demote_logs: false,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limits);
        store.set_epoch_deadline(self.deadline_ticks());
        store.epoch_deadline_trap();
        store
    }

    /// The call timeout in epoch ticks, rounded up, plus one because the current tick may be
    /// nearly over.
    fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        let ticks = self.limits.call_timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Compiles `bytes` (a binary component, or WAT text), or loads its precompiled code from
    /// the cache. Returns the component and whether the cache supplied it. Slow (Cranelift):
    /// call it off the async runtime.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> Result<(Component, bool), String> {
        let cached = self.cache_path(digest);
        if let Some(path) = &cached {
            if path.is_file() {
                // SAFETY: the cache directory holds only what `precompile_component` wrote for
                // this engine (the key includes its compatibility hash); it must be as trusted
                // as the binary itself, which the docs say.
                match unsafe { Component::deserialize_file(&self.engine, path) } {
                    Ok(component) => return Ok((component, true)),
                    Err(error) => tracing::warn!(
                        path = %path.display(),
                        error = format!("{error:#}"),
                        "A cached policy could not be loaded; compiling it again."
                    ),
                }
            }
        }
        if bytes.is_empty() {
            return Err("is empty (a half-written file?)".to_string());
        }
        let bytes = if bytes.starts_with(b"\0asm") {
            std::borrow::Cow::Borrowed(bytes)
        } else {
            wat::parse_bytes(bytes).map_err(|error| {
                let first = error.to_string().lines().next().unwrap_or_default().to_string();
                format!("is not a WebAssembly component: neither the binary format nor valid WAT text ({first})")
            })?
        };
        check_component_header(&bytes)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let Some(path) = cached else {
            let component = Component::new(&self.engine, &bytes).map_err(|e| format!("invalid component: {e:#}"))?;
            return Ok((component, false));
        };
        let code = self.engine.precompile_component(&bytes).map_err(|e| format!("invalid component: {e:#}"))?;
        if let Err(error) = write_atomically(&path, &code) {
            tracing::warn!(path = %path.display(), %error, "Caching precompiled policy code failed; continuing without.");
        }
        // SAFETY: `code` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(&self.engine, &code) }
            .map_err(|e| format!("loading precompiled code: {e:#}"))?;
        Ok((component, false))
    }

    /// Where the precompiled code of `digest` is cached, if caching is on.
    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }
}

/// Writes to a temporary file beside `path` and renames it into place, so a reader never sees
/// half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Refuses what is not a binary component before Cranelift sees it, with a message an
/// author can act on.
fn check_component_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    match bytes.get(..8) {
        Some(header) if header.starts_with(MAGIC) && header[6..8] == [0x01, 0x00] => Ok(()),
        Some(header) if header.starts_with(MAGIC) && header[4..8] == [0x01, 0x00, 0x00, 0x00] => {
            Err("is a core WebAssembly module, not a component: turn it into a component against wit/ \
             (wasm-tools component new, or the policy's build script)"
                .to_string())
        }
        _ => Err(format!(
            "is not a WebAssembly component ({} bytes, no component header; a half-written file?)",
            bytes.len()
        )),
    }
}

/// sha256 of `bytes`, lower-case hex.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A [`Hasher`] over sha256, so the cache key is stable across runs (unlike `DefaultHasher`).
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

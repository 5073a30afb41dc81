//! The one wasmtime [`Engine`] of the process: component model, Cranelift, epoch interruption
//! with a 10 ms ticker thread, the pooling allocator sized by `[policy]`, and the on-disk cache
//! of precompiled code.
//!
//! **Invariant:** every call into a module runs in a fresh [`Store`] with an epoch deadline
//! and a memory cap ([`PolicyEngine::new_store`]); nothing a module does can outlive its call.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::bindings;
use super::cache::CodeCache;
use super::limits::{self, StoreLimiter};
use super::log::LogBudget;
use super::PolicyError;

/// How often the ticker thread advances the engine's epoch; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bounds of every call, from `[policy]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock budget of one call (init included).
    pub call_timeout: Duration,
    /// Linear memory one call may hold, all its memories together, in bytes.
    pub memory_limit_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits { call_timeout: Duration::from_millis(500), memory_limit_bytes: 256 << 20 }
    }
}

impl StoreData {
    /// The most linear memory the store's instances held at once.
    pub fn memory_peak(&self) -> usize {
        self.limiter.peak()
    }
}

/// What a store carries: the module's identity (for its log lines) and its limits.
pub struct StoreData {
    pub module: Arc<str>,
    pub digest: Arc<str>,
    limiter: StoreLimiter,
    /// What the module may still log in this call; a chatty module is cut off.
    pub(super) log_budget: LogBudget,
    /// Log at debug level whatever the module asks (set while `init` runs before a call:
    /// it runs before every call, and its lines were shown once at load).
    pub demote_logs: bool,
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
    /// The checked cache folder; `None` when caching is off or the folder was refused.
    cache: Option<CodeCache>,
    /// Components compiled by Cranelift (not loaded from the cache) since start.
    compiled: AtomicU64,
}

impl PolicyEngine {
    /// Builds the engine and starts its epoch ticker (a thread that ends when the engine is
    /// dropped).
    pub fn new(limits: CallLimits, cache_dir: Option<PathBuf>) -> Result<Arc<PolicyEngine>, PolicyError> {
        // Per component, the limits the store's limiter enforces too (so a component that
        // could never instantiate is refused at load); in total, room for many calls at once.
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(128)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(1024)
            .max_core_instances_per_component(limits::MAX_CORE_INSTANCES)
            .max_memories_per_component(limits::MAX_MEMORIES)
            .max_tables_per_component(limits::MAX_TABLES)
            .max_memories_per_module(limits::MAX_MEMORIES)
            .max_tables_per_module(limits::MAX_TABLES)
            .table_elements(limits::MAX_TABLE_ELEMENTS)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            // No one memory may be larger than all of them together.
            .max_memory_size(limits.memory_limit_bytes)
            .max_unused_warm_slots(16);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // The component model's async *validation* stays on: jco's QuickJS components
            // (the `policy new --lang js` scaffold) declare the async builtins (`task.cancel`,
            // …) even when they never use them, and fail to parse without it. Calls stay
            // synchronous: the host never runs an async export or gives a task a way to wait.
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
        let engine_key: [u8; 8] = hasher.0.finalize()[..8].try_into().expect("sha256 has 32 bytes");
        // An unusable cache costs compile time, not correctness: the sidecar runs on without.
        let cache = cache_dir.and_then(|dir| match CodeCache::open(&dir, engine_key) {
            Ok(cache) => Some(cache),
            Err(error) => {
                tracing::error!(%error, "The policy cache folder is refused; policies are compiled at every load.");
                None
            }
        });

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

        Ok(Arc::new(PolicyEngine { engine, linker, limits, cache, compiled: AtomicU64::new(0) }))
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

    /// A fresh store for one call: the epoch deadline from `call_timeout`, all its memories
    /// together capped at `memory_limit_bytes` (growth past it traps), and the counts of
    /// [`limits`].
    pub fn new_store(&self, module: &Arc<str>, digest: &Arc<str>) -> Store<StoreData> {
        let data = StoreData {
            module: Arc::clone(module),
            digest: Arc::clone(digest),
            limiter: StoreLimiter::new(self.limits.memory_limit_bytes),
            log_budget: LogBudget::default(),
            demote_logs: false,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
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

    /// Whether compiled code is cached (a folder was configured and passed its checks).
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Compiles `bytes` (a binary component, or WAT text), or loads its precompiled code from
    /// the cache. Returns the component and whether the cache supplied it. Slow (Cranelift):
    /// call it off the async runtime.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> Result<(Component, bool), String> {
        if let Some(code) = self.cache.as_ref().and_then(|cache| cache.lookup(digest)) {
            // SAFETY: `lookup` returns only an entry of a folder owned by this user and
            // writable by no one else, whose header says this engine compiled it from these
            // very module bytes and whose code matches the sha256 written beside it.
            match unsafe { Component::deserialize(&self.engine, &code) } {
                Ok(component) => return Ok((component, true)),
                Err(error) => tracing::warn!(
                    digest = short_digest(digest),
                    error = format!("{error:#}"),
                    "A cached policy could not be loaded; compiling it again."
                ),
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
        let Some(cache) = &self.cache else {
            let component = Component::new(&self.engine, &bytes).map_err(compile_error)?;
            return Ok((component, false));
        };
        let code = self.engine.precompile_component(&bytes).map_err(compile_error)?;
        cache.store(digest, &code);
        // SAFETY: `code` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(&self.engine, &code) }.map_err(compile_error)?;
        Ok((component, false))
    }
}

/// A compile error as a rejection says it: the sandbox's limits named as such.
fn compile_error(error: wasmtime::Error) -> String {
    let text = format!("{error:#}");
    if text.contains("pooling allocator") || text.contains("per-instance limit") {
        let first = crate::text::truncated(text.lines().next().unwrap_or_default(), 600);
        return format!(
            "exceeds the policy sandbox's limits (per component at most {} core instances, {} memories, \
             {} tables; each memory at most policy.memory_limit_mb): {first}",
            limits::MAX_CORE_INSTANCES,
            limits::MAX_MEMORIES,
            limits::MAX_TABLES,
        );
    }
    format!("invalid component: {}", crate::text::truncated(&text, 2000))
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

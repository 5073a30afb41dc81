//! The policy engine: `prioritize` over N repos in batches of 10,000 through a Rust-built
//! module (`--policy-module`, e.g. target/policies/popular-first.wasm), against the same
//! scoring compiled into the host, and against the same decision in Rego (regorus). All three
//! start from the host's desired set (`DesiredRepos`, column by column, read through
//! `DesiredRow`), so each pays for its own input conversion. Also: the per-call cost of a fresh instance, compiling against loading cached
//! code, and how long a written file takes to go live.
//!
//! The scoring is popular-first's (policies/popular-first): `log2(1 + stars)` plus an activity
//! term halving every 30 days since `updated_at`, minus 1000 for forks and for archived repos.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clonekeeper::model::{CloneUrl, DesiredRepo, DesiredRepos, RecordedState, RepoName, ServiceType, Timestamp};
use clonekeeper::policy::{CallLimits, Columns, HostConfig, Interface, Module, PolicyEngine, PolicyHost, Source};
use clonekeeper::reconcile::RepoState;
use clonekeeper::schedule::{BuiltinRetry, Candidate, Prioritizer, Priority};

use crate::report::{median, Section};

const BATCH: usize = 10_000;
const DAY_MS: f64 = 86_400_000.0;
const NOW: i64 = 1_900_000_000_000;

/// The Rego twin of popular-first. Rego has no logarithm or power builtins: `log2` and `exp2`
/// are regorus extensions (native Rust functions), which only flatters Rego.
#[cfg(feature = "rego")]
const REGO: &str = r#"
package clonekeeper

import rego.v1

scores := [score(r) | some r in input.repos]

score(r) := s if {
    s := log2(1 + object.get(r, "stars", 0)) + 10 * activity(r) - penalty(r, "fork") - penalty(r, "archived")
}

activity(r) := exp2(0 - (max([0, input.now - r.updated_at]) / 86400000) / 30) if r.updated_at != null
activity(r) := 0 if r.updated_at == null

penalty(r, flag) := 1000 if r[flag] == true
penalty(r, flag) := 0 if r[flag] == false
"#;

fn desired_repo(idx: usize) -> DesiredRepo {
    let mix = (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    DesiredRepo {
        id: idx as i64 + 1,
        name: RepoName::from_normalized(format!("github.com/org-{}/repo-{idx}", idx % 1000)),
        url: CloneUrl::FromName { git: true },
        service_type: Some(ServiceType::new("github")),
        created_at: Some(Timestamp::from_millis(NOW - (mix % 1000) as i64 * 86_400_000)),
        updated_at: (!mix.is_multiple_of(7)).then(|| Timestamp::from_millis(NOW - (mix % 365) as i64 * 86_400_000)),
        stars: (!mix.is_multiple_of(5)).then_some((mix % 50_000) as u32),
        fork: mix.is_multiple_of(10),
        archived: mix % 20 == 1,
        private: false,
        recorded: RecordedState::NotTracked,
    }
}

const LIBM_NOTE: &str = "The second native baseline scores with the pure-Rust `libm` that the Wasm guest's standard library uses for `log2` and `exp2` (wasm32-unknown-unknown has no C library). The ratio against it is what the engine costs (the boundary, instantiation, Cranelift's code) without the difference between the two math libraries. Where that ratio is above 3×, the boundary row and the guest's arithmetic (Cranelift's code for the same Rust source) are the reasons.";

/// popular-first's scoring, compiled into the host, with the C library's `log2`/`exp2`
/// (`std`) or with the pure-Rust `libm` the Wasm guest's standard library uses
/// (`pure_rust_math`): the second isolates what the engine costs from what the math costs.
struct NativePopularFirst {
    pure_rust_math: bool,
}

/// With the C library's math.
const NATIVE: NativePopularFirst = NativePopularFirst { pure_rust_math: false };
/// With the guest's pure-Rust math.
const NATIVE_LIBM: NativePopularFirst = NativePopularFirst { pure_rust_math: true };

impl NativePopularFirst {
    fn exp2(&self, x: f64) -> f64 {
        if self.pure_rust_math {
            libm::exp2(x)
        } else {
            x.exp2()
        }
    }

    fn log2(&self, x: f64) -> f64 {
        if self.pure_rust_math {
            libm::log2(x)
        } else {
            x.log2()
        }
    }
}

impl Prioritizer for NativePopularFirst {
    fn prioritize(&self, batch: &[Candidate<'_>], now: Timestamp) -> Vec<Priority> {
        batch
            .iter()
            .map(|c| {
                let repo = c.repo;
                let stars = f64::from(repo.stars().unwrap_or(0));
                let activity = repo.updated_at().map_or(0.0, |updated| {
                    let age_days = (now.as_millis().saturating_sub(updated.as_millis())).max(0) as f64 / DAY_MS;
                    self.exp2(-age_days / 30.0)
                });
                let mut score = self.log2(1.0 + stars) + 10.0 * activity;
                if repo.fork() {
                    score -= 1000.0;
                }
                if repo.archived() {
                    score -= 1000.0;
                }
                Priority::Score(score)
            })
            .collect()
    }
}

fn candidates(desired: &DesiredRepos) -> Vec<Candidate<'_>> {
    desired.iter().map(|repo| Candidate { repo, shard: 0, state: RepoState::Uncloned, record: None }).collect()
}

/// Times `f` `runs` times; the median.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    median(&mut samples)
}

/// The median time of each of `paths` over `runs` rounds, each round running every path once
/// in turn; and the sum of what the paths returned (kept, so no path is optimised away).
fn time_interleaved<const N: usize>(runs: usize, mut paths: [&mut dyn FnMut() -> f64; N]) -> ([Duration; N], f64) {
    let mut samples: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::new());
    let mut checksum = 0.0;
    for _ in 0..runs.max(1) {
        for (path, samples) in paths.iter_mut().zip(&mut samples) {
            let started = Instant::now();
            checksum += path();
            samples.push(started.elapsed());
        }
    }
    (samples.map(|mut s| median(&mut s)), checksum)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

fn host_for(dir: &Path, cache: &Path) -> anyhow::Result<Arc<PolicyHost>> {
    let limits = CallLimits { call_timeout: Duration::from_secs(10), memory_limit_bytes: 1 << 30 };
    let engine = PolicyEngine::new(limits, Some(cache.to_path_buf()))?;
    Ok(Arc::new(PolicyHost::new(
        engine,
        HostConfig {
            dir: Some(dir.to_path_buf()),
            allowlist: None,
            quarantine_after: 3,
            shard_addrs: vec!["gitserver-0:3178".to_string()],
            builtin_retry: BuiltinRetry::default(),
        },
    )))
}

/// The same component with a custom section appended: same code, another digest.
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = format!("bench-{n}");
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

pub fn run(module_path: &Path, n_repos: usize, n_rego: usize, runs: usize) -> anyhow::Result<Section> {
    let bytes = std::fs::read(module_path).map_err(|e| anyhow::anyhow!("{}: {e}", module_path.display()))?;
    let name = module_path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string();
    let mut section = Section::new(format!(
        "Policy engine: prioritize over {n_repos} repos in batches of {BATCH} ({name}, Rust guest)"
    ));
    let now = Timestamp::from_millis(NOW);
    let desired: DesiredRepos = (0..n_repos).map(desired_repo).collect();
    let all = candidates(&desired);

    // Compile vs load from the cache, on fresh engines.
    let cache = tempfile::tempdir()?;
    let limits = CallLimits { call_timeout: Duration::from_secs(10), memory_limit_bytes: 1 << 30 };
    let source =
        Source { name: name.clone(), path: module_path.to_path_buf(), bytes: bytes.clone(), config: String::new() };
    let compile = time(1, || {
        let engine = PolicyEngine::new(limits.clone(), Some(cache.path().to_path_buf())).expect("engine");
        Module::load(&engine, &source, None, now).expect("the module loads");
    });
    let mut module = None;
    let cached = time(runs, || {
        let engine = PolicyEngine::new(limits.clone(), Some(cache.path().to_path_buf())).expect("engine");
        let loaded = Module::load(&engine, &source, None, now).expect("the module loads");
        assert!(loaded.from_cache);
        module = Some(loaded);
    });
    let module = module.expect("loaded above");

    // The live path: candidates → the columns the module reads → guest memory → call → checked answers.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(format!("{name}.wasm")), &bytes)?;
    let host = host_for(dir.path(), cache.path())?;
    host.reload(now)?;
    anyhow::ensure!(host.current().serving(Interface::Prioritize).is_some(), "{name} does not implement prioritize");
    // The boundary alone: the same columns into a module that only copies stars out, answering
    // `rank` (0.2.2) as popular-first does, and `prioritize` (0.2.1's list of variants).
    let shard_addrs = vec!["gitserver-0:3178".to_string()];
    let boundary = boundary_module(include_bytes!("boundary.wat"), "boundary", &module, cache.path(), now)?;
    let boundary_variants =
        boundary_module(include_bytes!("boundary_variants.wat"), "boundary_variants", &module, cache.path(), now)?;
    // The paths whose ratios the section reports take turns, run by run, so that a machine
    // whose speed drifts (a shared VM) slows each of them alike.
    let score = |answers: &[Priority]| matches!(answers[0], Priority::Score(s) if s > 0.0) as u8 as f64;
    let ([wasm, native, native_libm, wasm_boundary, wasm_boundary_variants], mut checksum) = time_interleaved(
        runs,
        [
            &mut || {
                let answers = all.chunks(BATCH).map(|batch| host.prioritize_traced(batch, now));
                answers.map(|(answers, by)| if &*by == "builtin" { f64::NAN } else { score(&answers) }).sum()
            },
            &mut || all.chunks(BATCH).map(|batch| score(&NATIVE.prioritize(batch, now))).sum(),
            &mut || all.chunks(BATCH).map(|batch| score(&NATIVE_LIBM.prioritize(batch, now))).sum(),
            &mut || {
                let answers = all.chunks(BATCH).map(|b| boundary.prioritize_candidates(b, &shard_addrs, now));
                answers.map(|a| a.expect("answers").len() as f64).sum()
            },
            &mut || {
                let answers = all.chunks(BATCH).map(|b| boundary_variants.prioritize_candidates(b, &shard_addrs, now));
                answers.map(|a| a.expect("answers").len() as f64).sum()
            },
        ],
    );
    // A batch the built-in order answered (the module failed) makes the sum NaN.
    anyhow::ensure!(checksum.is_finite(), "every batch was answered by the module");
    // Same answers, or the comparison means nothing.
    for batch in all.chunks(BATCH).take(3) {
        let (a, _) = host.prioritize_traced(batch, now);
        let b = NATIVE.prioritize(batch, now);
        let c = NATIVE_LIBM.prioritize(batch, now);
        anyhow::ensure!(b.len() == c.len(), "the two native scorings answer alike");
        for (x, y) in a.iter().zip(&b).chain(a.iter().zip(&c)) {
            match (x, y) {
                (Priority::Score(x), Priority::Score(y)) => anyhow::ensure!((x - y).abs() < 1e-6, "{x} != {y}"),
                _ => anyhow::bail!("answers differ: {x:?} {y:?}"),
            }
        }
    }

    // Where the boundary costs go: the columns the module reads against every column (the
    // names and strings included), and the fixed cost of a fresh instance per call.
    let every_column = module.with_columns(Columns::all());
    let wasm_all_columns = time(runs, || {
        for batch in all.chunks(BATCH) {
            let answers = every_column.prioritize_candidates(batch, &shard_addrs, now).expect("answers");
            checksum += answers.len() as f64;
        }
    });
    let calls = 200;
    let instantiate = time(runs, || {
        for _ in 0..calls {
            module.prioritize(&[], now).expect("an empty batch");
        }
    }) / calls;
    let batches = n_repos.div_ceil(BATCH) as u32;
    let columns = module.columns.names().join(", ");

    section.row(&format!("prioritize through the module, reading {columns} (the live path)"), ms(wasm), "");
    section.row("baseline: the same scoring compiled into the host", ms(native), "");
    section.row("ratio module / native", ratio(wasm, native), "goal ≤ 3×");
    section.row(
        "second baseline: the same scoring with the guest's pure-Rust math (libm crate) instead of the C library's",
        ms(native_libm),
        "",
    );
    section.row("ratio module / native with the same math", ratio(wasm, native_libm), "goal ≤ 3× (the engine alone)");
    section.row(
        "  of which: a fresh instance + init per call (× batches)",
        format!("{:.1} µs × {batches} = {}", instantiate.as_secs_f64() * 1e6, ms(instantiate * batches)),
        "",
    );
    section.row(
        "  of which: the boundary (columns built and copied in, answers back and checked: a module that computes nothing)",
        ms(wasm_boundary.saturating_sub(instantiate * batches)),
        "",
    );
    section.row("  the rest: the guest's arithmetic (log2, exp2 in Wasm)", ms(wasm.saturating_sub(wasm_boundary)), "");
    section.row(
        "the boundary with 0.2.1's answer, a list<priority> of variants (modules built before 0.2.2)",
        ms(wasm_boundary_variants.saturating_sub(instantiate * batches)),
        "",
    );
    section.row(
        "ratio list<priority> / list<f64> boundary",
        ratio(
            wasm_boundary_variants.saturating_sub(instantiate * batches),
            wasm_boundary.saturating_sub(instantiate * batches),
        ),
        "what rank's answer shape saves",
    );
    section.row("the same module fed every column (names and other strings included)", ms(wasm_all_columns), "");
    section.row("ratio every column / native", ratio(wasm_all_columns, native), "what reading only its columns saves");
    section.row(
        "instantiate + init + empty call (InstancePre, pooling)",
        format!("{:.1} µs", instantiate.as_secs_f64() * 1e6),
        "",
    );
    section.row(&format!("load {name}: compile with Cranelift"), ms(compile), "");
    section.row(&format!("load {name}: from the disk cache"), ms(cached), "");
    section.row("ratio compile / cached load", ratio(compile, cached), "");

    #[cfg(feature = "rego")]
    {
        // Rego: the same decision, on fewer repos if asked (regorus is an interpreter).
        let rego_candidates = &all[..n_rego.min(n_repos)];
        let rego = time(runs.min(3), || {
            let scores = rego_eval(rego_candidates, now).expect("regorus evaluates");
            checksum += scores.len() as f64;
        });
        let wasm_same = time(runs, || {
            for batch in rego_candidates.chunks(BATCH) {
                checksum += host.prioritize_traced(batch, now).0.len() as f64;
            }
        });
        let rego_scores = rego_eval(&rego_candidates[..1000.min(rego_candidates.len())], now)?;
        let native_scores = NATIVE.prioritize(&rego_candidates[..rego_scores.len()], now);
        for (x, y) in rego_scores.iter().zip(&native_scores) {
            let Priority::Score(y) = y else { anyhow::bail!("native said not-now") };
            anyhow::ensure!((x - y).abs() < 1e-6, "Rego and native disagree: {x} != {y}");
        }
        section.row(&format!("the same decision in Rego (regorus), {} repos", rego_candidates.len()), ms(rego), "");
        section.row(&format!("the module on the same {} repos", rego_candidates.len()), ms(wasm_same), "");
        section.row("ratio Rego / module", ratio(rego, wasm_same), "goal ≥ 10×");
    }
    #[cfg(not(feature = "rego"))]
    section.row(
        "the same decision in Rego (regorus)",
        "not measured: build with `--features rego`".to_string(),
        "goal ≥ 10×",
    );
    #[cfg(not(feature = "rego"))]
    let _ = n_rego;

    // Reload latency: a new version written into a watched folder until it serves.
    let reload = reload_latency(&bytes, &name, cache.path(), runs)?;
    section.row("reload: file written → new version serving (watcher, debounced, cached code)", ms(reload), "");

    section.notes.push(
        "What a call costs: copying data across the boundary, and the guest's own arithmetic. The canonical ABI copies a list of plain numbers in one go, \
         but lowers records, options and flags entry by entry and every string through a call into the guest's allocator, and lifts a list of variants one entry at a time; \
         under contract 0.1.0 (a list of repo-view records, four strings each) this module cost 40.6× native. Contract 0.2.0 passes the batch as columns of plain numbers \
         (0 when unknown, with a known-bit in flags), sends repeated strings once per batch with indices, and fills only the columns the module names in `columns`: \
         the every-column row is what a module reading everything pays. Contract 0.2.2's `rank` answers in columns too (`scores: list<f64>`, `not-now` as positions), \
         where `prioritize` answered a `list<priority>` of variants; the two boundary rows compare the shapes. What is left is building the columns from the desired set \
         (the native path reads the same rows inside its own time), the `flags` column, which wasmtime lowers one entry at a time, and the guest's arithmetic: \
         `log2` and `exp2` are software routines in Wasm where the host uses the C library's. The example guests are built at opt-level 3, which took about a tenth off each call against opt-level \"s\"."
            .to_string(),
    );
    section.notes.push(
        "Every path starts from the host's desired set (`DesiredRepos`, its columns read through `DesiredRow` handles) and returns one answer per repo; the module's and the native answers are compared for equality, and Rego's on the first 1000 repos. \
         The module path is the live one (`PolicyHost` as the scheduler's `Prioritizer`: build the columns the module reads, a fresh instance and `init` per call, copy the columns into guest memory, lift and check the answers). \
         Rego has no logarithm or power builtins, so `log2` and `exp2` are regorus extensions written in Rust; the input is built as regorus `Value`s from the same rows. \
         Compile and cached-load times are for one fresh engine each."
            .to_string(),
    );
    section.notes.push(LIBM_NOTE.to_string());
    std::hint::black_box(checksum);
    Ok(section)
}

/// A boundary WAT (`name`.wat) as a loaded module, asking for the same columns as `like`.
fn boundary_module(wat: &[u8], name: &str, like: &Module, cache: &Path, now: Timestamp) -> anyhow::Result<Module> {
    let bytes = clonekeeper::policy::componentize::componentize(wat, Some("prioritizer"))
        .map_err(|e| anyhow::anyhow!("{name}.wat: {e}"))?;
    let engine = PolicyEngine::new(
        CallLimits { call_timeout: Duration::from_secs(10), memory_limit_bytes: 1 << 30 },
        Some(cache.to_path_buf()),
    )?;
    let source =
        Source { name: name.to_string(), path: PathBuf::from(format!("{name}.wat")), bytes, config: String::new() };
    let module = Module::load(&engine, &source, None, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(module.columns == like.columns, "{name}.wat reads {:?}, not {:?}", module.columns, like.columns);
    Ok(module)
}

#[cfg(feature = "rego")]
fn rego_eval(candidates: &[Candidate<'_>], now: Timestamp) -> anyhow::Result<Vec<f64>> {
    use std::collections::BTreeMap;

    use regorus::Value;
    let mut engine = regorus::Engine::new();
    engine.add_extension(
        "log2".to_string(),
        1,
        Box::new(|args: Vec<Value>| Ok(Value::from(args[0].as_f64()?.log2()))),
    )?;
    engine.add_extension(
        "exp2".to_string(),
        1,
        Box::new(|args: Vec<Value>| Ok(Value::from(args[0].as_f64()?.exp2()))),
    )?;
    engine.add_policy("popular_first.rego".to_string(), REGO.to_string())?;
    let key = |k: &str| Value::from(k);
    let list: Vec<Value> = candidates
        .iter()
        .map(|candidate| {
            let repo = candidate.repo;
            let mut object = BTreeMap::new();
            object.insert(key("name"), Value::from(repo.name()));
            object.insert(key("id"), Value::from(repo.id()));
            if let Some(stars) = repo.stars() {
                object.insert(key("stars"), Value::from(i64::from(stars)));
            }
            object.insert(key("updated_at"), repo.updated_at().map_or(Value::Null, |t| Value::from(t.as_millis())));
            object.insert(key("fork"), Value::from(repo.fork()));
            object.insert(key("archived"), Value::from(repo.archived()));
            Value::from(object)
        })
        .collect();
    let mut input = BTreeMap::new();
    input.insert(key("now"), Value::from(now.as_millis()));
    input.insert(key("repos"), Value::from(list));
    engine.set_input(Value::from(input));
    let scores = engine.eval_rule("data.clonekeeper.scores".to_string())?;
    scores.as_array()?.iter().map(|v| v.as_f64()).collect()
}

fn reload_latency(bytes: &[u8], name: &str, cache: &Path, runs: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes)?;
    let host = host_for(dir.path(), cache)?;
    let _watcher = host.watch()?;
    let mut samples = Vec::new();
    for n in 0..runs.max(3) {
        let next = variant(bytes, n);
        // Compile each variant into the cache first: this measures the reload path, not Cranelift.
        let engine = PolicyEngine::new(CallLimits::default(), Some(cache.to_path_buf()))?;
        let source = Source { name: name.to_string(), path: path.clone(), bytes: next.clone(), config: String::new() };
        Module::load(&engine, &source, None, Timestamp::from_millis(NOW)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let digest = clonekeeper::policy::engine::digest_of(&next);
        let started = Instant::now();
        std::fs::write(&path, &next)?;
        while *host.serving_digest(Interface::Prioritize) != *digest {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the new version never went live");
            std::thread::sleep(Duration::from_millis(1));
        }
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("reload sample {n}: {:?}", started.elapsed());
        }
        samples.push(started.elapsed());
    }
    Ok(median(&mut samples))
}

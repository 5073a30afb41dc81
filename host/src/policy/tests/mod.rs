//! Tests of the policy engine with real wasmtime components built from the WAT modules in
//! `testdata/` (hand-written core modules, turned into components against `wit/` here).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::componentize::{componentize, componentize_with_wit};
use super::engine::digest_of;
use super::*;
use crate::schedule::Priority;

const PRELUDE: &str = include_str!("../testdata/prelude.wat");

/// The text of `testdata/NAME.wat` with the prelude spliced in.
fn core_wat(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata").join(format!("{name}.wat"));
    let text = std::fs::read_to_string(&path).expect("test module exists");
    text.replace(";; @prelude", PRELUDE)
}

/// A binary component of `testdata/NAME.wat` for `world`.
fn component(name: &str, world: &str) -> Vec<u8> {
    componentize(core_wat(name).as_bytes(), Some(world)).expect("test module encodes")
}

/// The stars prioritizer with `bonus` added to every score: distinct bytes, distinct digest.
fn stars_with_bonus(bonus: u32) -> Vec<u8> {
    let text = core_wat("stars").replace("(f64.const 0 (; BONUS ;))", &format!("(f64.const {bonus})"));
    componentize(text.as_bytes(), Some("prioritizer")).expect("test module encodes")
}

fn limits() -> CallLimits {
    CallLimits { call_timeout: Duration::from_millis(100), memory_limit_bytes: 16 << 20 }
}

fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(limits(), None).expect("engine")
}

fn host_for(dir: &Path, quarantine_after: u32) -> Arc<PolicyHost> {
    Arc::new(PolicyHost::new(
        engine(),
        HostConfig {
            dir: Some(dir.to_path_buf()),
            allowlist: None,
            quarantine_after,
            shard_addrs: vec!["gitserver-0:3178".to_string()],
            builtin_retry: crate::schedule::BuiltinRetry::default(),
        },
    ))
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000)
}

fn repos(stars: &[u32]) -> Vec<RepoView> {
    stars
        .iter()
        .enumerate()
        .map(|(idx, &stars)| RepoView {
            id: idx as i64 + 1,
            name: format!("github.com/org/repo{}", idx + 1),
            code_host: "github.com".to_string(),
            stars: Some(stars),
            shard_addr: "gitserver-0:3178".to_string(),
            ..RepoView::default()
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).expect("write module");
    digest_of(bytes)
}

fn source(name: &str, bytes: Vec<u8>) -> Source {
    Source { name: name.to_string(), path: PathBuf::from(format!("{name}.wasm")), bytes, config: String::new() }
}

fn load(name: &str, bytes: Vec<u8>) -> Result<Module, Rejection> {
    Module::load(&engine(), &source(name, bytes), None, now())
}

/// Polls `check` until it holds, failing the test after 30 s.
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status_of<'a>(status: &'a [PolicyStatus], state: &str) -> Vec<&'a PolicyStatus> {
    status.iter().filter(|s| s.state == state).collect()
}

// === Loading and validation ===

#[test]
fn a_valid_prioritizer_loads_and_answers() {
    let module = load("stars", component("stars", "prioritizer")).expect("loads");
    assert_eq!(module.interfaces, vec![Interface::Prioritize, Interface::Lifecycle]);
    let answers = module.prioritize(&repos(&[5, 50, 0]), now()).expect("answers");
    assert_eq!(answers, vec![Priority::Score(5.0), Priority::Score(50.0), Priority::Score(0.0)]);
}

#[test]
fn invalid_bytes_are_rejected_with_a_clear_message() {
    let error = load("junk", b"\x00asm\x0d\x00\x01\x00garbage".to_vec()).unwrap_err();
    assert!(error.error.contains("invalid component"), "{error}");
    let error = load("text", b"hello, not wasm".to_vec()).unwrap_err();
    assert!(error.error.contains("not a WebAssembly component"), "{error}");
    let error = load("empty", Vec::new()).unwrap_err();
    assert!(error.error.contains("empty"), "{error}");
    let core = wat::parse_str(core_wat("stars")).expect("core module");
    let error = load("core", core).unwrap_err();
    assert!(error.error.contains("core WebAssembly module, not a component"), "{error}");
    assert!(error.to_string().contains("core.wasm"), "names the file: {error}");
}

#[test]
fn a_half_written_component_is_rejected() {
    let bytes = component("stars", "prioritizer");
    let error = load("half", bytes[..bytes.len() / 2].to_vec()).unwrap_err();
    assert!(error.error.contains("invalid component"), "{error}");
}

#[test]
fn extra_imports_are_refused_naming_the_import() {
    let wit = r#"
        package clonekeeper:hostile;

        package wasi:cli@0.2.0 {
            interface environment {
                get-arguments: func() -> list<string>;
            }
        }

        world extra-import {
            import wasi:cli/environment@0.2.0;
            include clonekeeper:policy/prioritizer@0.2.0;
        }
    "#;
    let bytes = componentize_with_wit(core_wat("extra_import").as_bytes(), wit, "extra-import").expect("encodes");
    let error = load("sneaky", bytes).unwrap_err();
    assert!(error.error.contains("imports wasi:cli/environment@0.2.0, which policies may not use"), "{}", error.error);
    assert!(error.error.contains("--stub-wasi"), "hints at the fix: {}", error.error);
}

#[test]
fn a_wrong_signature_is_refused_at_load() {
    let forged = r#"
        package clonekeeper:policy@0.2.0;
        interface prioritize { prioritize: func(now: s64) -> u32; }
        interface lifecycle { init: func(config: string) -> result<_, string>; }
        world wrong-signature { export lifecycle; export prioritize; }
    "#;
    let error = load("forged", forged_component(&core_wat("wrong_signature"), forged, "wrong-signature")).unwrap_err();
    assert!(error.error.contains("types that do not match wit/policy.wit"), "{}", error.error);
    assert!(error.error.contains("clonekeeper:policy/prioritize with types"), "{}", error.error);
}

/// A component of `core` (a WAT text) for `world` of the WIT text `contract`.
fn forged_component(core: &str, contract: &str, world: &str) -> Vec<u8> {
    let mut core = wat::parse_str(core).expect("core module");
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("forged.wit", contract).expect("forged WIT parses");
    let world = resolve.select_world(&[package], Some(world)).expect("world");
    wit_component::embed_component_metadata(&mut core, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("embeds");
    wit_component::ComponentEncoder::default().module(&core).expect("module").encode().expect("encodes")
}

#[test]
fn a_module_built_against_another_contract_version_is_refused_naming_both() {
    let old = r#"
        package clonekeeper:policy@0.1.0;
        interface prioritize { prioritize: func(now: s64) -> u32; }
        interface lifecycle { init: func(config: string) -> result<_, string>; }
        world old { export lifecycle; export prioritize; }
    "#;
    let core = core_wat("wrong_signature").replace("@0.2.0", "@0.1.0");
    let error = load("old", forged_component(&core, old, "old")).unwrap_err();
    assert!(error.error.contains("built against clonekeeper:policy@0.1.0"), "{}", error.error);
    assert!(error.error.contains("speaks clonekeeper:policy@0.2.2 (and loads 0.2.0 and 0.2.1)"), "{}", error.error);
}

#[test]
fn a_module_whose_columns_trap_or_hang_or_answer_junk_is_refused_at_load() {
    let columns = "(call $columns_one (i32.const 5 (; stars ;)))";
    let cases = [
        ("unreachable", "prioritize's columns trapped"),
        ("(loop $forever (br $forever)) (i32.const 0)", "prioritize's columns timed out"),
        // A column index past the end of the enum.
        ("(call $columns_one (i32.const 99))", "prioritize's columns trapped"),
    ];
    for (body, expected) in cases {
        let core = core_wat("stars").replace(columns, body);
        let bytes = componentize(core.as_bytes(), Some("prioritizer")).expect("encodes");
        let error = load("bad-columns", bytes).unwrap_err();
        assert!(error.error.contains(expected), "{body}: {}", error.error);
    }
}

#[test]
fn prioritize_gets_the_columns_it_asks_for_and_no_others() {
    let module = load("stars", component("stars", "prioritizer")).expect("loads");
    assert_eq!(module.columns.names(), vec!["stars"]);
    let repos: Vec<RepoView> =
        [Some(7), None, Some(1)].into_iter().map(|stars| RepoView { stars, ..RepoView::default() }).collect();
    let answers = module.prioritize(&repos, Timestamp::from_millis(0)).expect("answers");
    assert_eq!(answers, vec![Priority::Score(7.0), Priority::Score(0.0), Priority::Score(1.0)]);
    // `oldest_first` reads ids only: the stars above must not reach it, the ids must.
    let module = load("oldest", component("oldest_first", "prioritizer")).expect("loads");
    assert_eq!(module.columns.names(), vec!["id"]);
    let repos: Vec<RepoView> = [5, 2, 9].into_iter().map(|id| RepoView { id, ..RepoView::default() }).collect();
    let answers = module.prioritize(&repos, Timestamp::from_millis(0)).expect("answers");
    assert_eq!(answers, vec![Priority::Score(-5.0), Priority::NotNow, Priority::Score(-9.0)]);
}

#[test]
fn a_component_implementing_no_decision_is_refused() {
    let wat = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (type $t (func))
        (func (export "hello") (type $t) (canon lift (core func $i "f"))))"#;
    let error = load("nothing", wat.as_bytes().to_vec()).unwrap_err();
    assert!(error.error.contains("implements none of"), "{}", error.error);
    assert!(error.error.contains("hello"), "lists what it exports: {}", error.error);
}

#[test]
fn init_rejecting_its_config_rejects_the_module() {
    let error = load("bad-init", component("bad_init", "prioritizer")).unwrap_err();
    assert_eq!(error.error, "init rejected its config: max_stars must be a number");
}

#[test]
fn the_allowlist_admits_only_listed_digests() {
    let bytes = component("stars", "prioritizer");
    let digest = digest_of(&bytes);
    let other = "0".repeat(64);
    let refused = Module::load(&engine(), &source("stars", bytes.clone()), Some(&[other]), now()).unwrap_err();
    assert!(refused.error.contains("is not in policy.allowlist"), "{}", refused.error);
    assert!(refused.error.contains(&digest));
    let upper = digest.to_uppercase();
    Module::load(&engine(), &source("stars", bytes), Some(&[upper]), now()).expect("listed digest loads");
}

#[test]
fn the_disk_cache_skips_compilation_on_the_second_load() {
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = component("stars", "prioritizer");
    let first = PolicyEngine::new(limits(), Some(cache.path().to_path_buf())).expect("engine");
    let module = Module::load(&first, &source("stars", bytes.clone()), None, now()).expect("loads");
    assert!(!module.from_cache);
    assert_eq!(first.compiled_count(), 1);
    let files: Vec<_> = std::fs::read_dir(cache.path()).expect("cache dir").collect();
    assert_eq!(files.len(), 1, "one precompiled file");

    let second = PolicyEngine::new(limits(), Some(cache.path().to_path_buf())).expect("engine");
    let module = Module::load(&second, &source("stars", bytes), None, now()).expect("loads");
    assert!(module.from_cache, "loaded from the cache");
    assert_eq!(second.compiled_count(), 0, "nothing compiled");
    assert_eq!(module.prioritize(&repos(&[3]), now()).expect("answers"), vec![Priority::Score(3.0)]);
}

// === Answers and call limits ===

#[test]
fn hostile_calls_fail_cleanly() {
    let cases: [(&str, &str); 5] = [
        ("loop", "timed out"),
        ("membomb", "memory limit exceeded"),
        ("trap", "trapped"),
        ("wrong_len", "returned 4 answers for 3 inputs"),
        ("nan_score", "not finite"),
    ];
    for (name, expected) in cases {
        let module = load(name, component(name, "prioritizer")).expect("hostile modules pass validation");
        let started = Instant::now();
        let error = module.prioritize(&repos(&[1, 2, 3]), now()).unwrap_err().to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(started.elapsed() < Duration::from_secs(10), "{name} was stopped");
    }
}

#[test]
fn reenqueue_answers_are_checked() {
    let module = load("retry", component("retry", "retrier")).expect("loads");
    let failures: Vec<RetryFailure> = [1, 5]
        .iter()
        .map(|&attempts| RetryFailure {
            repo: RepoView { name: format!("github.com/a/{attempts}"), attempts, ..RepoView::default() },
            error: "boom".to_string(),
        })
        .collect();
    let answers = module.reenqueue(&failures, now()).expect("answers");
    assert_eq!(answers, vec![Retry::After(Duration::from_secs(60)), Retry::GiveUp("too many attempts".to_string())]);

    let too_late = core_wat("retry").replace("(i64.const 60000 (; DELAY ;))", "(i64.const 2592000001)");
    let module = load("late", componentize(too_late.as_bytes(), Some("retrier")).expect("encodes")).expect("loads");
    let error = module.reenqueue(&failures, now()).unwrap_err().to_string();
    assert!(error.contains("more than the 30 days allowed"), "{error}");
}

#[test]
fn rate_limit_answers_are_checked() {
    let module = load("limits", component("limits", "limiter")).expect("loads");
    let seen = vec![
        KeyLoad {
            key: LimitKey::CodeHost("github.com".to_string()),
            service_type: "github".to_string(),
            repos: 10,
            queued: 5,
            in_flight: 1,
        },
        KeyLoad {
            key: LimitKey::Shard("gitserver-0:3178".to_string()),
            service_type: String::new(),
            repos: 10,
            queued: 5,
            in_flight: 1,
        },
    ];
    let answers = module.rate_limits(&seen, now()).expect("answers");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], KeyLimit { key: seen[0].key.clone(), per_hour: 3600, burst: 2, max_in_flight: Some(1) });

    let zero = core_wat("limits").replace("(i32.const 3600 (; PER_HOUR ;))", "(i32.const 0)");
    let module = load("zero", componentize(zero.as_bytes(), Some("limiter")).expect("encodes")).expect("loads");
    let error = module.rate_limits(&seen, now()).unwrap_err().to_string();
    assert!(error.contains("per-hour 0"), "{error}");
}

#[test]
fn the_host_tells_a_rate_limit_policy_each_code_host_s_service_type() {
    // A limiter whose per-hour is 1 + the length of the key's service type (key-load: the
    // service-type string's length sits at offset 16).
    let by_type = core_wat("limits")
        .replace("(i32.const 3600 (; PER_HOUR ;))", "(i32.add (i32.const 1) (i32.load offset=16 (local.get $src)))");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "limits.wasm", &componentize(by_type.as_bytes(), Some("limiter")).expect("encodes"));
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    let load = |key: crate::schedule::LimitKey, service_type: Option<&str>| crate::schedule::KeyLoad {
        key,
        service_type: service_type.map(Arc::from),
        repos: 1,
        queued: 1,
        in_flight: 0,
    };
    let seen = [
        load(crate::schedule::LimitKey::CodeHost("gitlab.example.com".into()), Some("gitlab")),
        load(crate::schedule::LimitKey::CodeHost("git.example.org".into()), None),
        load(crate::schedule::LimitKey::Shard(0), None),
    ];
    let limits = RateLimitPolicy::limits(&*host, &seen, now());
    let per_hour: Vec<u32> = limits.iter().map(|(_, limit)| limit.per_hour.get()).collect();
    assert_eq!(per_hour, [7, 1, 1], "gitlab, unknown, a shard: {limits:?}");
}

// === The host: fallback, quarantine, status ===

#[test]
fn load_time_rejections_keep_the_previous_module_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "policy.wasm", &stars_with_bonus(0));
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    let full = component("stars", "prioritizer");
    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid bytes", b"\x00asm\x0d\x00\x01\x00garbage".to_vec(), "invalid component"),
        ("half-written", full[..full.len() / 3].to_vec(), "invalid component"),
        ("init rejects config", component("bad_init", "prioritizer"), "init rejected its config"),
        ("no decision interface", b"(component)".to_vec(), "implements none of"),
    ];
    for (what, bytes, expected) in hostile {
        let bad = write(dir.path(), "policy.wasm", &bytes);
        host.reload(now()).expect("reload");
        let decided = host.prioritize(&repos(&[7]), now()).expect("a module answers");
        assert_eq!(*decided.digest, good, "{what}: the previous module stays live");
        assert_eq!(decided.answers, vec![Priority::Score(7.0)]);
        let status = host.status(now());
        let rejected = status_of(&status, "rejected");
        assert_eq!(rejected.len(), 1, "{what}: {status:?}");
        assert_eq!(rejected[0].digest, bad);
        let error = rejected[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains(expected), "{what}: {error}");
        assert_eq!(status_of(&status, "active")[0].digest, good);
    }
}

#[test]
fn call_failures_fall_back_to_the_last_good_module_then_quarantine() {
    for hostile in ["loop", "membomb", "trap", "wrong_len", "nan_score"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "policy.wasm", &stars_with_bonus(0));
        let host = host_for(dir.path(), 2);
        host.reload(now()).expect("reload");
        let bad = write(dir.path(), "policy.wasm", &component(hostile, "prioritizer"));
        host.reload(now()).expect("reload");
        assert_eq!(*host.serving_digest(Interface::Prioritize), bad, "{hostile} passes validation and serves");

        for call in 0..3 {
            let decided = host.prioritize(&repos(&[4, 9]), now()).expect("a module answers");
            assert_eq!(*decided.digest, good, "{hostile}, call {call}: the last good module answers");
            assert_eq!(decided.answers, vec![Priority::Score(4.0), Priority::Score(9.0)]);
        }
        let status = host.status(now());
        let quarantined = status_of(&status, "quarantined");
        assert_eq!(quarantined.len(), 1, "{hostile}: {status:?}");
        assert_eq!(quarantined[0].digest, bad);
        assert_eq!(quarantined[0].calls, 2, "{hostile}: not called while quarantined");
        assert!(quarantined[0].last_error.is_some());
    }
}

#[test]
fn without_a_good_module_the_builtin_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "policy.wasm", &component("trap", "prioritizer"));
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    assert!(host.prioritize(&repos(&[1]), now()).is_none(), "nothing answered: the caller uses the built-in");

    // Through the trait, the built-in order answers and says so.
    let repo = crate::model::DesiredRepo {
        id: 1,
        name: crate::model::RepoName::normalize("github.com/a/b").expect("name"),
        url: crate::model::CloneUrl::Other("https://github.com/a/b".into()),
        service_type: None,
        created_at: None,
        updated_at: None,
        stars: Some(3),
        fork: false,
        archived: false,
        private: false,
        recorded: crate::model::RecordedState::NotTracked,
    };
    let one = crate::model::DesiredRepos::in_given_order(std::slice::from_ref(&repo));
    let candidate = Candidate { repo: one.at(0), shard: 0, state: crate::reconcile::RepoState::Uncloned, record: None };
    let (answers, by) = host.prioritize_traced(&[candidate], now());
    assert_eq!(answers.len(), 1);
    assert_eq!(&*by, BUILTIN);
}

#[test]
fn quarantine_backs_off_and_probation_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "policy.wasm", &component("trap", "prioritizer"));
    let host = host_for(dir.path(), 2);
    host.reload(now()).expect("reload");
    let module = Arc::clone(host.current().serving(Interface::Prioritize).expect("serving"));
    let calls = || module.health.lock().expect("lock").calls;
    let t0 = now();
    host.prioritize(&repos(&[1]), t0);
    host.prioritize(&repos(&[1]), t0);
    assert_eq!(calls(), 2);
    let until = module.health.lock().expect("lock").quarantined_until.expect("quarantined");
    assert_eq!(until, t0.saturating_add(health::QUARANTINE_BASE));
    host.prioritize(&repos(&[1]), t0.saturating_add(Duration::from_secs(29)));
    assert_eq!(calls(), 2, "not called during quarantine");
    // Released on probation: one more failure quarantines it again, twice as long.
    let t1 = t0.saturating_add(Duration::from_secs(31));
    host.prioritize(&repos(&[1]), t1);
    assert_eq!(calls(), 3);
    let until = module.health.lock().expect("lock").quarantined_until.expect("quarantined again");
    assert_eq!(until, t1.saturating_add(health::QUARANTINE_BASE * 2));
}

#[test]
fn health_is_pure_bookkeeping() {
    let mut health = health::Health::default();
    let t = now();
    assert_eq!(health.failure("a".into(), t, 3), health::FailureVerdict::Counted);
    health.success();
    assert_eq!(health.failure("b".into(), t, 3), health::FailureVerdict::Counted);
    assert_eq!(health.failure("c".into(), t, 3), health::FailureVerdict::Counted);
    let until = t.saturating_add(health::QUARANTINE_BASE);
    assert_eq!(health.failure("d".into(), t, 3), health::FailureVerdict::Quarantined(until));
    assert!(!health.admit(t, 3));
    assert!(health.admit(until, 3));
    health.success();
    assert_eq!(health.quarantines, 0, "a success clears the backoff");
    let mut long = health::Health::default();
    let mut at = t;
    for _ in 0..20 {
        assert!(long.admit(at, 1));
        if let health::FailureVerdict::Quarantined(until) = long.failure("x".into(), at, 1) {
            at = until;
        }
    }
    assert_eq!(long.quarantined_until, Some(at));
    assert!(at.since(t) > health::QUARANTINE_MAX, "capped but still retried");
}

#[test]
fn precedence_goes_to_the_first_file_name_and_interfaces_combine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a-stars.wasm", &stars_with_bonus(1));
    let b = write(dir.path(), "b-stars.wasm", &stars_with_bonus(2));
    let r = write(dir.path(), "c-retry.wasm", &component("retry", "retrier"));
    std::fs::write(dir.path().join(".hidden.wasm"), b"ignored").expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"ignored").expect("write");
    let host = host_for(dir.path(), 3);
    let report = host.reload(now()).expect("reload");
    assert_eq!(report.loaded, vec!["a-stars", "b-stars", "c-retry"]);
    assert_eq!(*host.serving_digest(Interface::Prioritize), a);
    assert_eq!(*host.serving_digest(Interface::Reenqueue), r);
    assert_eq!(&*host.serving_digest(Interface::RateLimits), BUILTIN);
    let status = host.status(now());
    let states: Vec<(&str, &str)> = status.iter().map(|s| (s.name.as_str(), s.state.as_str())).collect();
    assert_eq!(states, vec![("a-stars", "active"), ("b-stars", "standby"), ("c-retry", "active")]);
    std::fs::remove_file(dir.path().join("a-stars.wasm")).expect("remove");
    let report = host.reload(now()).expect("reload");
    assert_eq!(report.removed, vec!["a-stars"]);
    assert_eq!(*host.serving_digest(Interface::Prioritize), b);
}

#[test]
fn config_beside_the_module_reaches_init_and_a_change_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "policy.wasm", &stars_with_bonus(0));
    std::fs::write(dir.path().join("policy.toml"), "x = 1").expect("write");
    let host = host_for(dir.path(), 3);
    assert_eq!(host.reload(now()).expect("reload").loaded, vec!["policy"]);
    assert_eq!(host.current().modules[0].config, "x = 1");
    assert!(!host.reload(now()).expect("reload").changed(), "nothing changed");
    std::fs::write(dir.path().join("policy.toml"), "x = 2").expect("write");
    assert_eq!(host.reload(now()).expect("reload").loaded, vec!["policy"]);
    assert_eq!(host.current().modules[0].config, "x = 2");
}

#[test]
fn shipped_fixtures_gate_loading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "policy.wasm", &stars_with_bonus(0));
    let fixture = |first: &str, second: &str| {
        format!(
            r#"{{"cases": [{{"name": "stars first", "interface": "prioritize",
                "repos": [{{"name": "github.com/a/few", "stars": 1}}, {{"name": "github.com/a/many", "stars": 90}}],
                "expect": {{"order": ["{first}", "{second}"]}}}}]}}"#
        )
    };
    std::fs::write(dir.path().join("policy.fixtures.json"), fixture("github.com/a/many", "github.com/a/few"))
        .expect("write");
    let host = host_for(dir.path(), 3);
    assert_eq!(host.reload(now()).expect("reload").loaded, vec!["policy"]);
    // A new version whose fixtures fail is rejected; the old one stays.
    std::fs::create_dir(dir.path().join("policy.fixtures")).expect("mkdir");
    std::fs::write(dir.path().join("policy.fixtures/wrong.json"), fixture("github.com/a/few", "github.com/a/many"))
        .expect("write");
    write(dir.path(), "policy.wasm", &stars_with_bonus(5));
    assert_eq!(host.reload(now()).expect("reload").rejected, vec!["policy"]);
    assert_eq!(*host.serving_digest(Interface::Prioritize), good);
    let status = host.status(now());
    let error = status_of(&status, "rejected")[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("fixture self-check failed (1 of 2 cases)"), "{error}");
    assert!(error.contains("wrong.json"), "{error}");
}

// === Through the scheduler's seams ===

#[test]
fn the_host_orders_a_plan_through_the_prioritizer_trait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = write(dir.path(), "policy.wasm", &stars_with_bonus(0));
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    let desired: Vec<crate::model::DesiredRepo> = [(1, 5), (2, 500), (3, 50)]
        .iter()
        .map(|&(id, stars)| crate::model::DesiredRepo {
            id,
            name: crate::model::RepoName::normalize(&format!("github.com/a/r{id}")).expect("name"),
            url: crate::model::CloneUrl::Other("https://example.invalid".into()),
            service_type: None,
            created_at: None,
            updated_at: None,
            stars: Some(stars),
            fork: false,
            archived: false,
            private: false,
            recorded: crate::model::RecordedState::NotTracked,
        })
        .collect();
    let plan = crate::reconcile::Plan {
        states: vec![crate::reconcile::RepoState::Uncloned; 3],
        due: vec![0, 1, 2],
        ..Default::default()
    };
    let desired = crate::model::DesiredRepos::in_given_order(&desired);
    let ordered = crate::schedule::order(&desired, &[0, 0, 0], &plan, &Default::default(), host.as_ref(), 2, now());
    let ids: Vec<u32> = ordered.jobs.iter().map(|j| j.repo).collect();
    assert_eq!(ids, vec![1, 2, 0], "most stars first");
    assert!(ordered.decisions.iter().all(|(_, by)| **by == *digest), "each decision names the module");
}

mod budget;
mod cache;
mod rank;
mod reload;
mod sandbox;
mod shadow;

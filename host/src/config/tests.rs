//! Config tests: files and variables in, a `Config` or every problem out.

use std::io::Write;

use super::*;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const MINIMAL: &str = r#"
[repo_db]
url = "postgres://postgres@127.0.0.1:5432/sourcegraph"

[gitserver]
addrs = ["gitserver-0:3178", "gitserver-1:3178"]
"#;

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let f = file(text);
    Config::load_from(Some(f.path()), vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.shards.addrs(), ["gitserver-0:3178", "gitserver-1:3178"]);
    assert_eq!(c.shards.routing(), Routing::Md5);
    assert_eq!(c.state_url, c.repo_db_url, "state defaults to the repo DB");
    assert_eq!(c.interval, Duration::from_secs(10));
    assert_eq!(c.limits, Limits { max_in_flight_per_shard: 5, max_in_flight: 40 });
    assert_eq!(c.target, DispatchTarget::Gitserver);
    assert_eq!(c.admin_listen, "127.0.0.1:9187".parse().unwrap());
    assert!(!c.writeback);
    assert_eq!(c.max_attempts, None);
}

#[test]
fn full_file_is_read() {
    let c = load(
        r#"
[repo_db]
url = "sqlite:///var/lib/ck/repos.db"
[state]
url = "postgres://ck@db/state"
[gitserver]
addrs = ["a:1", "b:2", "c:3"]
routing = "rendezvous"
timeout = "5s"
[sync]
interval = "2s"
[dispatch]
max_in_flight_per_shard = 2
max_in_flight = 4
target = "repo-updater"
repo_updater_addr = "repo-updater:3182"
backoff_base = "1s"
backoff_max = "1m"
max_attempts = 7
[writeback]
enabled = true
[admin]
listen = "0.0.0.0:9000"
[log]
format = "json"
"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.shards.routing(), Routing::Rendezvous);
    assert_eq!(c.state_url, "postgres://ck@db/state");
    assert_eq!(c.interval, Duration::from_secs(2));
    assert_eq!(c.target, DispatchTarget::RepoUpdater("repo-updater:3182".into()));
    assert_eq!(c.backoff, Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) });
    assert_eq!(c.max_attempts, Some(7));
    assert!(c.writeback);
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn environment_overrides_every_key() {
    let c = load(
        MINIMAL,
        &[
            ("CLONEKEEPER_GITSERVER_ADDRS", "x:1, y:2"),
            ("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT_PER_SHARD", "9"),
            ("CLONEKEEPER_SYNC_INTERVAL", "250ms"),
            ("CLONEKEEPER_REPO_DB_URL", "sqlite:repos.db"),
            ("CLONEKEEPER_WRITEBACK_ENABLED", "true"),
            ("CLONEKEEPER_TEST_SOMETHING", "ignored: not a section"),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(c.shards.addrs(), ["x:1", "y:2"]);
    assert_eq!(c.limits.max_in_flight_per_shard, 9);
    assert_eq!(c.interval, Duration::from_millis(250));
    assert_eq!(c.repo_db_url, "sqlite:repos.db");
    assert!(c.writeback);
}

#[test]
fn environment_alone_is_enough() {
    let vars = [
        ("CLONEKEEPER_REPO_DB_URL".to_string(), "postgres://p@h/db".to_string()),
        ("CLONEKEEPER_GITSERVER_ADDRS".to_string(), "g:3178".to_string()),
    ];
    let c = Config::load_from(None, vars).unwrap();
    assert_eq!(c.shards.len(), 1);
}

/// Found by the config properties: figment's own value parser panics on a backslash before a multi-byte
/// character, so a stray variable could crash the sidecar at start.
#[test]
fn variable_values_are_read_as_toml_or_kept_as_text() {
    let p = problems(MINIMAL, &[("CLONEKEEPER_GITSERVER_ADDRS", "\"\u{113c5}\\\u{1ee24}\"")]);
    assert!(p.contains("gitserver.addrs") && p.contains("is not host:port"), "{p}");

    let c = load(MINIMAL, &[("CLONEKEEPER_GITSERVER_ADDRS", "[\"x:1\", \"y:2\"]")]).unwrap();
    assert_eq!(c.shards.len(), 2);
    let c = load(MINIMAL, &[("CLONEKEEPER_SYNC_INTERVAL", "\"2s\"")]).unwrap();
    assert_eq!(c.interval, Duration::from_secs(2));

    // A second line cannot smuggle in another key: the whole text is then one string.
    let p = problems(MINIMAL, &[("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT", "3\nmax_attempts = 1")]);
    assert!(p.contains("max_in_flight") && p.contains("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT"), "{p}");
}

fn problems(text: &str, vars: &[(&str, &str)]) -> String {
    load(text, vars).unwrap_err().to_string()
}

#[test]
fn bad_values_name_their_key_and_source() {
    let p = problems(&MINIMAL.replace("[gitserver]", "[gitserver]\nrouting = \"round-robin\""), &[]);
    assert!(p.contains("routing") && p.contains("round-robin"), "{p}");

    let p = problems(MINIMAL, &[("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT", "lots")]);
    assert!(p.contains("max_in_flight") && p.contains("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT"), "{p}");

    let p = problems(&format!("{MINIMAL}\n[sync]\ninterval = \"soon\"\n"), &[]);
    assert!(p.contains("interval"), "{p}");

    let p = problems(&format!("{MINIMAL}\n[dispatch]\nmax_inflight = 3\n"), &[]);
    assert!(p.contains("max_inflight"), "typos are refused: {p}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let p = problems(
        r#"
[repo_db]
url = "mysql://x"
[gitserver]
addrs = ["nohost", "a:1", "a:1"]
[dispatch]
max_in_flight = 0
target = "repo-updater"
[admin]
listen = "localhost"
"#,
        &[],
    );
    for needle in [
        "repo_db.url",
        "\"nohost\" is not host:port",
        "listed twice",
        "dispatch.max_in_flight: must be at least 1",
        "repo_updater_addr",
        "admin.listen",
    ] {
        assert!(p.contains(needle), "missing {needle:?} in {p}");
    }
}

#[test]
fn missing_file_and_missing_keys_are_clear() {
    let p = Config::load_from(Some(Path::new("/nonexistent/ck.toml")), Vec::new()).unwrap_err().to_string();
    assert!(p.contains("/nonexistent/ck.toml"), "{p}");
    let p = problems("[gitserver]\naddrs = [\"a:1\"]\n", &[]);
    assert!(p.contains("repo_db"), "{p}");
}

#[test]
fn full_interval_defaults_to_five_minutes_or_the_interval_and_is_never_shorter_than_it() {
    assert_eq!(load(MINIMAL, &[]).unwrap().full_interval, Duration::from_secs(300));
    let slow = load(MINIMAL, &[("CLONEKEEPER_SYNC_INTERVAL", "10m")]).unwrap();
    assert_eq!(slow.full_interval, Duration::from_secs(600), "an interval longer than 5m is the default");
    let set = load(MINIMAL, &[("CLONEKEEPER_SYNC_FULL_INTERVAL", "1h")]).unwrap();
    assert_eq!(set.full_interval, Duration::from_secs(3600));
    let error = load(MINIMAL, &[("CLONEKEEPER_SYNC_FULL_INTERVAL", "5s")]).unwrap_err();
    assert!(error.to_string().contains("sync.full_interval: 5s must be at least sync.interval"), "{error}");
}

#[test]
fn stall_after_defaults_to_three_intervals_but_at_least_a_minute() {
    assert_eq!(load(MINIMAL, &[]).unwrap().stall_after, Duration::from_secs(60));
    let slow = load(MINIMAL, &[("CLONEKEEPER_SYNC_INTERVAL", "45s")]).unwrap();
    assert_eq!(slow.stall_after, Duration::from_secs(135));
    let set = load(MINIMAL, &[("CLONEKEEPER_SYNC_STALL_AFTER", "5m")]).unwrap();
    assert_eq!(set.stall_after, Duration::from_secs(300));
    let error = load(MINIMAL, &[("CLONEKEEPER_SYNC_STALL_AFTER", "5s")]).unwrap_err();
    assert!(error.to_string().contains("sync.stall_after: 5s must be longer than sync.interval (10s)"), "{error}");
}

#[test]
fn every_pool_gets_statement_and_lock_timeouts() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.repo_db_timeouts, DbTimeouts { statement: Duration::from_secs(120), lock: Duration::from_secs(10) });
    assert_eq!(c.state_timeouts, DbTimeouts { statement: Duration::from_secs(30), lock: Duration::from_secs(10) });
    let text = format!("{MINIMAL}\n[state]\nstatement_timeout = \"5s\"\nlock_timeout = \"50ms\"\n");
    let error = load(&text, &[]).unwrap_err();
    assert!(error.to_string().contains("state.statement_timeout and state.lock_timeout"), "{error}");
}

#[test]
fn placeholder_and_short_admin_tokens_are_refused() {
    for token in ["CHANGE-ME", "change-me-please-now", "short"] {
        let error = load(MINIMAL, &[("CLONEKEEPER_ADMIN_TOKEN", token)]).unwrap_err();
        assert!(error.to_string().contains("admin.token: a placeholder or shorter than 16 bytes"), "{token}: {error}");
    }
    let generated = "3f1c9a0e7b2d4c6f8a1b3d5e7f9a0c2e";
    assert_eq!(
        load(MINIMAL, &[("CLONEKEEPER_ADMIN_TOKEN", generated)]).unwrap().admin_token.as_deref(),
        Some(generated)
    );
}

#[test]
fn policy_tick_budget_defaults_to_5s_and_must_fit_a_call() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.policy.tick_budget, Duration::from_secs(5));
    let c = load(&format!("{MINIMAL}\n[policy]\ntick_budget = \"2s\"\n"), &[]).unwrap();
    assert_eq!(c.policy.tick_budget, Duration::from_secs(2));
    let error = load(&format!("{MINIMAL}\n[policy]\ncall_timeout = \"1s\"\ntick_budget = \"500ms\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("policy.tick_budget: must be at least policy.call_timeout (1s)"), "{error}");
}

#[test]
fn ha_needs_postgres_and_a_takeover_delay_longer_than_two_checks() {
    assert_eq!(load(MINIMAL, &[]).unwrap().ha, None, "one replica unless asked");
    let ha = [("CLONEKEEPER_HA_ENABLED", "true")];
    let sqlite = problems(&MINIMAL.replace("postgres://", "sqlite://x.db?ignored="), &ha);
    assert!(sqlite.contains("ha.enabled") && sqlite.contains("Postgres state DB"), "{sqlite}");

    let c = load(MINIMAL, &ha).unwrap().ha.expect("[ha] on");
    assert_eq!(c.lock_key, 0x636b_6c65_6164_6572);
    assert_eq!((c.check_interval, c.takeover_delay), (Duration::from_secs(1), Duration::from_secs(5)));

    let tight = problems(MINIMAL, &[ha[0], ("CLONEKEEPER_HA_CHECK_INTERVAL", "3s")]);
    assert!(tight.contains("ha.takeover_delay") && tight.contains("6s"), "{tight}");
}

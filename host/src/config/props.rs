//! Properties of the config parser: any file text and any `CLONEKEEPER_*` variables give a
//! `Config` or problems that each name a key or where the value came from (never a panic);
//! generated valid configs read back, from a file or from the environment alone, as written.

use std::io::Write;

use proptest::prelude::*;

use super::*;

fn load(text: &str, vars: &[(String, String)]) -> (Result<Config, ConfigError>, String) {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().expect("a temp file");
    f.write_all(text.as_bytes()).expect("writing the temp file");
    let path = f.path().display().to_string();
    (Config::load_from(Some(f.path()), vars.iter().cloned()), path)
}

/// A duration as an operator writes it, and its value.
fn duration() -> impl Strategy<Value = (String, Duration)> {
    prop_oneof![
        (1u64..100_000).prop_map(|n| (format!("{n}ms"), Duration::from_millis(n))),
        (1u64..100_000).prop_map(|n| (format!("{n}s"), Duration::from_secs(n))),
        (1u64..10_000).prop_map(|n| (format!("{n}m"), Duration::from_secs(60 * n))),
        (1u64..1_000).prop_map(|n| (format!("{n}h"), Duration::from_secs(3600 * n))),
        (1u64..48, 1u64..60).prop_map(|(h, m)| (format!("{h}h {m}m"), Duration::from_secs(3600 * h + 60 * m))),
    ]
}

/// A policy call timeout that fits the default `policy.tick_budget` (5 s), as written.
fn call_timeout() -> impl Strategy<Value = (String, Duration)> {
    prop_oneof![
        (1u64..=5_000).prop_map(|n| (format!("{n}ms"), Duration::from_millis(n))),
        (1u64..=5).prop_map(|n| (format!("{n}s"), Duration::from_secs(n))),
    ]
}

/// A valid configuration, as the values it should load to.
#[derive(Clone, Debug)]
struct Valid {
    repo_db_url: String,
    state_url: Option<String>,
    addrs: Vec<String>,
    rendezvous: bool,
    timeout: (String, Duration),
    interval: (String, Duration),
    per_shard: u32,
    global: u32,
    repo_updater: Option<String>,
    backoff_base: (String, Duration),
    backoff_max: (String, Duration),
    max_attempts: u32,
    writeback: bool,
    call_timeout: (String, Duration),
    decision_sample: f64,
}

fn valid() -> impl Strategy<Value = Valid> {
    let url = prop_oneof!["postgres://[a-z]{1,8}@[a-z]{1,8}:5432/[a-z]{1,8}", "sqlite:/[a-z]{1,8}/[a-z]{1,8}\\.db"];
    let addr = "[a-z][a-z0-9-]{0,10}(\\.[a-z]{1,6})?:[1-9][0-9]{0,3}";
    (
        (url.clone(), prop::option::of(url), prop::collection::btree_set(addr, 1..8), any::<bool>()),
        (duration(), duration().prop_filter("at least 100ms", |(_, d)| *d >= Duration::from_millis(100))),
        (1u32..100, 1u32..1000, prop::option::of(addr)),
        (duration(), duration(), 0u32..50, any::<bool>(), call_timeout(), 0u32..=100),
    )
        .prop_map(
            |(
                (repo_db_url, state_url, addrs, rendezvous),
                (timeout, interval),
                (per_shard, global, repo_updater),
                (a, b, max_attempts, writeback, call_timeout, sample),
            )| {
                let (backoff_base, backoff_max) = if a.1 <= b.1 { (a, b) } else { (b, a) };
                Valid {
                    repo_db_url,
                    state_url,
                    addrs: addrs.into_iter().collect(),
                    rendezvous,
                    timeout,
                    interval,
                    per_shard,
                    global,
                    repo_updater,
                    backoff_base,
                    backoff_max,
                    max_attempts,
                    writeback,
                    call_timeout,
                    decision_sample: f64::from(sample) / 100.0,
                }
            },
        )
}

impl Valid {
    /// `(key, TOML value)` pairs, section by section.
    fn entries(&self) -> Vec<(&'static str, &'static str, String)> {
        let quoted = |s: &str| format!("{s:?}");
        let mut out = vec![
            ("repo_db", "url", quoted(&self.repo_db_url)),
            (
                "gitserver",
                "addrs",
                format!("[{}]", self.addrs.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(", ")),
            ),
            ("gitserver", "routing", quoted(if self.rendezvous { "rendezvous" } else { "md5" })),
            ("gitserver", "timeout", quoted(&self.timeout.0)),
            ("sync", "interval", quoted(&self.interval.0)),
            ("dispatch", "max_in_flight_per_shard", self.per_shard.to_string()),
            ("dispatch", "max_in_flight", self.global.to_string()),
            ("dispatch", "backoff_base", quoted(&self.backoff_base.0)),
            ("dispatch", "backoff_max", quoted(&self.backoff_max.0)),
            ("dispatch", "max_attempts", self.max_attempts.to_string()),
            ("writeback", "enabled", self.writeback.to_string()),
            ("log", "decision_sample", format!("{:?}", self.decision_sample)),
            ("policy", "call_timeout", quoted(&self.call_timeout.0)),
        ];
        if let Some(url) = &self.state_url {
            out.push(("state", "url", quoted(url)));
        }
        if let Some(addr) = &self.repo_updater {
            out.push(("dispatch", "target", quoted("repo-updater")));
            out.push(("dispatch", "repo_updater_addr", quoted(addr)));
        }
        out
    }

    fn toml(&self) -> String {
        let mut text = String::new();
        for section in SECTIONS {
            text.push_str(&format!("[{section}]\n"));
            for (_, key, value) in self.entries().into_iter().filter(|(s, _, _)| s == section) {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    }

    /// The same configuration as environment variables: lists comma-separated, strings bare.
    fn vars(&self) -> Vec<(String, String)> {
        self.entries()
            .into_iter()
            .map(|(section, key, value)| {
                let value = if key == "addrs" { self.addrs.join(",") } else { value.trim_matches('"').to_string() };
                (format!("CLONEKEEPER_{}_{}", section.to_uppercase(), key.to_uppercase()), value)
            })
            .collect()
    }

    fn check(&self, c: &Config) -> Result<(), TestCaseError> {
        prop_assert_eq!(&c.repo_db_url, &self.repo_db_url);
        prop_assert_eq!(&c.state_url, self.state_url.as_ref().unwrap_or(&self.repo_db_url));
        prop_assert_eq!(c.shards.addrs(), &self.addrs[..]);
        prop_assert_eq!(c.shards.routing(), if self.rendezvous { Routing::Rendezvous } else { Routing::Md5 });
        prop_assert_eq!(c.list_timeout, self.timeout.1);
        prop_assert_eq!(c.interval, self.interval.1);
        prop_assert_eq!(c.limits, Limits { max_in_flight_per_shard: self.per_shard, max_in_flight: self.global });
        let target = self.repo_updater.clone().map_or(DispatchTarget::Gitserver, DispatchTarget::RepoUpdater);
        prop_assert_eq!(&c.target, &target);
        prop_assert_eq!(c.backoff, Backoff { base: self.backoff_base.1, max: self.backoff_max.1 });
        prop_assert_eq!(c.max_attempts, (self.max_attempts > 0).then_some(self.max_attempts));
        prop_assert_eq!(c.writeback, self.writeback);
        prop_assert_eq!(c.decision_log_sample, self.decision_sample);
        prop_assert_eq!(c.policy.call_timeout, self.call_timeout.1);
        Ok(())
    }
}

/// Text that is sometimes TOML of the right shape and sometimes not at all.
fn file_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[repo_db]".to_string()),
        Just("[gitserver]".to_string()),
        Just("[dispatch]".to_string()),
        Just("[bogus]".to_string()),
        Just("url = \"postgres://a@b/c\"".to_string()),
        Just("addrs = [\"a:1\", \"b:2\"]".to_string()),
        Just("addrs = \"a:1,b:2\"".to_string()),
        "[a-z_]{1,24} = (\"[^\"\\\\]{0,12}\"|[0-9]{1,12}|true|\\[\\]|\\{\\})",
        any::<String>(),
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

fn vars() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("CLONEKEEPER_GITSERVER_ADDRS".to_string()),
        Just("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT".to_string()),
        Just("CLONEKEEPER_SYNC_INTERVAL".to_string()),
        Just("CLONEKEEPER_REPO_DB_URL".to_string()),
        "CLONEKEEPER_[A-Z_.]{0,24}",
        "CLONEKEEPER_(GITSERVER|POLICY|LOG)_.{0,12}",
    ];
    let value =
        prop_oneof!["[a-z0-9:,. ]{0,16}", any::<String>(), Just("[1, 2]".to_string()), Just("{a = 1}".to_string())];
    prop::collection::vec((name, value), 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_input_loads_or_names_what_is_wrong(text in file_text(), vars in vars()) {
        let (result, path) = load(&text, &vars);
        let Err(error) = result else { return Ok(()) };
        prop_assert!(!error.problems.is_empty());
        for problem in &error.problems {
            let names_source = problem.contains(&path) || problem.contains("environment variable CLONEKEEPER_");
            let names_key = SECTIONS.iter().any(|section| problem.contains(section));
            prop_assert!(names_source || names_key, "{problem:?} names neither a key nor a source");
        }
    }

    #[test]
    fn valid_configs_read_back_from_a_file(valid in valid()) {
        let (result, _) = load(&valid.toml(), &[]);
        let config = result.map_err(|e| TestCaseError::fail(format!("{e}\n{}", valid.toml())))?;
        valid.check(&config)?;
    }

    #[test]
    fn valid_configs_read_back_from_the_environment_alone(valid in valid()) {
        let config = Config::load_from(None, valid.vars())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{:?}", valid.vars())))?;
        valid.check(&config)?;
    }

    /// A variable wins over the file, whatever the file says.
    #[test]
    fn environment_wins_over_the_file(valid in valid(), (text, interval) in duration().prop_filter("at least 100ms", |(_, d)| *d >= Duration::from_millis(100))) {
        let (result, _) = load(&valid.toml(), &[("CLONEKEEPER_SYNC_INTERVAL".to_string(), text)]);
        let config = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(config.interval, interval);
    }
}

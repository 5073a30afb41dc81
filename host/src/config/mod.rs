//! Configuration: one TOML file plus `CLONEKEEPER_<SECTION>_<KEY>` environment overrides,
//! parsed once at startup; every problem is reported, each naming its key and source.
//!
//! Policies are watched data, not config, and are not read here.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use crate::db::DbTimeouts;
use crate::routing::{Routing, ShardMap};
use crate::schedule::{Backoff, Limits};

/// The sections of the file; also how environment variables find their section.
const SECTIONS: &[&str] =
    &["repo_db", "state", "gitserver", "sync", "dispatch", "writeback", "admin", "log", "policy", "ha"];

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub repo_db_url: String,
    /// Statement and lock timeouts of the repo DB's sessions.
    pub repo_db_timeouts: DbTimeouts,
    /// Where attempts and backoff are stored; the repo DB unless configured.
    pub state_url: String,
    pub state_timeouts: DbTimeouts,
    pub shards: ShardMap,
    pub list_timeout: Duration,
    pub max_response_bytes: usize,
    pub interval: Duration,
    /// How long without a completed tick (or a successful repo DB read) counts as a stall.
    pub stall_after: Duration,
    /// The period of full observations: every repo missing from a shard's list is asked about
    /// (between them, only those whose answer can change a decision).
    pub full_interval: Duration,
    pub limits: Limits,
    pub target: DispatchTarget,
    pub dispatch_timeout: Duration,
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
    pub writeback: bool,
    pub admin_listen: SocketAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub admin_token: Option<String>,
    pub decision_log_sample: f64,
    pub policy: PolicyConfig,
    /// `[ha]`: several replicas with one leader; `None`: this process dispatches alone.
    pub ha: Option<HaConfig>,
}

/// Several replicas, one leader (`[ha]`): the leader holds a Postgres advisory lock on a
/// session of its own in the state DB; the others follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    /// The advisory lock key; replicas of one deployment share it, deployments sharing a state
    /// DB must not.
    pub lock_key: i64,
    /// How often the leader checks its lock session, and a follower tries for the lock.
    pub check_interval: Duration,
    /// How long a new leader waits after taking the lock before it dispatches: longer than a
    /// lost leader can take to notice (two checks), so the two never dispatch at once.
    pub takeover_delay: Duration,
}

/// The default of `[policy] tick_budget`: ten default call timeouts, a pause of the tick loop
/// that dispatch outcomes and the admin API ride out (policy calls run off the runtime).
pub const DEFAULT_POLICY_TICK_BUDGET: Duration = Duration::from_secs(5);

/// Where policy modules live and how each call is bounded (`[policy]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// The watched folder of `*.wasm` components (and `NAME.toml` beside each); none: built-in
    /// behaviour only.
    pub dir: Option<std::path::PathBuf>,
    /// Wall-clock budget of one policy call (enforced with epoch interruption).
    pub call_timeout: Duration,
    /// Linear memory one call may hold, all of its memories together.
    pub memory_limit_bytes: usize,
    /// Policy time one tick may spend in `prioritize`; past it the tick's remaining batches
    /// get the built-in order.
    pub tick_budget: Duration,
    /// Where precompiled code is cached, keyed by module digest and engine version.
    pub cache_dir: Option<std::path::PathBuf>,
    /// When set, only modules whose sha256 (lower-case hex) is listed are loaded.
    pub allowlist: Option<Vec<String>>,
    /// Traps in a row before a module is quarantined.
    pub quarantine_after: u32,
}

/// Where clones are requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DispatchTarget {
    /// `POST /repo-update` on the owning shard.
    Gitserver,
    /// `POST /enqueue-repo-update` on repo-updater at this address.
    RepoUpdater(String),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// A configuration that cannot be used; lists every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

// === The file as written ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    repo_db: RepoDbSection,
    #[serde(default)]
    state: StateSection,
    gitserver: GitserverSection,
    #[serde(default)]
    sync: SyncSection,
    #[serde(default)]
    dispatch: DispatchSection,
    #[serde(default)]
    writeback: WritebackSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    policy: PolicySection,
    #[serde(default)]
    ha: HaSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoDbSection {
    url: String,
    #[serde(default = "defaults::repo_db_statement_timeout", with = "humantime_serde")]
    statement_timeout: Duration,
    #[serde(default = "defaults::lock_timeout", with = "humantime_serde")]
    lock_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateSection {
    url: Option<String>,
    #[serde(default = "defaults::state_statement_timeout", with = "humantime_serde")]
    statement_timeout: Duration,
    #[serde(default = "defaults::lock_timeout", with = "humantime_serde")]
    lock_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitserverSection {
    #[serde(deserialize_with = "list_or_comma_separated")]
    addrs: Vec<String>,
    #[serde(default)]
    routing: RoutingName,
    #[serde(default = "defaults::list_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "defaults::max_response_mb")]
    max_response_mb: u32,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RoutingName {
    #[default]
    Md5,
    Rendezvous,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncSection {
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    interval: Duration,
    /// None: the larger of 3 × interval and 60 s.
    #[serde(default, with = "humantime_serde")]
    stall_after: Option<Duration>,
    /// None: 5 minutes, or the interval if longer.
    #[serde(default, with = "humantime_serde")]
    full_interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchSection {
    #[serde(default = "defaults::per_shard")]
    max_in_flight_per_shard: u32,
    #[serde(default = "defaults::global")]
    max_in_flight: u32,
    #[serde(default)]
    target: TargetName,
    repo_updater_addr: Option<String>,
    #[serde(default = "defaults::dispatch_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "defaults::backoff_base", with = "humantime_serde")]
    backoff_base: Duration,
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    backoff_max: Duration,
    /// 0 means never give up.
    #[serde(default)]
    max_attempts: u32,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum TargetName {
    #[default]
    Gitserver,
    RepoUpdater,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WritebackSection {
    #[serde(default)]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminSection {
    #[serde(default = "defaults::admin_listen")]
    listen: String,
    /// Bearer token for mutating calls; without it they are refused.
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySection {
    dir: Option<std::path::PathBuf>,
    #[serde(default = "defaults::policy_call_timeout", with = "humantime_serde")]
    call_timeout: Duration,
    #[serde(default = "defaults::policy_memory_mb")]
    memory_limit_mb: u32,
    #[serde(default = "defaults::policy_tick_budget", with = "humantime_serde")]
    tick_budget: Duration,
    cache_dir: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "optional_list_or_comma_separated")]
    allowlist: Option<Vec<String>>,
    #[serde(default = "defaults::quarantine_after")]
    quarantine_after: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    #[serde(default = "defaults::log_format")]
    format: LogFormat,
    #[serde(default = "defaults::log_level")]
    level: String,
    /// Fraction of policy decisions written to the decision log (0 to 1).
    #[serde(default = "defaults::decision_log_sample")]
    decision_sample: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaSection {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "defaults::ha_lock_key")]
    lock_key: i64,
    #[serde(default = "defaults::ha_check_interval", with = "humantime_serde")]
    check_interval: Duration,
    #[serde(default = "defaults::ha_takeover_delay", with = "humantime_serde")]
    takeover_delay: Duration,
}

mod defaults;

macro_rules! section_defaults {
    ($($ty:ident),*) => {$(
        impl Default for $ty {
            fn default() -> $ty {
                Figment::new().extract::<$ty>().expect("every field of this section has a default")
            }
        }
    )*};
}
section_defaults!(StateSection, SyncSection, DispatchSection, AdminSection, LogSection, PolicySection, HaSection);

fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(list) => list,
        Raw::One(text) => text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    })
}

fn optional_list_or_comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    list_or_comma_separated(d).map(Some)
}

// === Loading ===

impl Config {
    /// Reads `path` (if given) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(path, std::env::vars())
    }

    /// Reads `path` and the given environment; tests pass their own variables.
    pub fn load_from(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError { problems: vec![format!("{}: no such config file", path.display())] });
            }
            figment = figment.merge(Toml::file(path));
        }
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("CLONEKEEPER_").and_then(env_key) else {
                continue;
            };
            figment = figment.merge(EnvVar { name, key, value });
        }
        let file: File = figment
            .extract()
            .map_err(|error| ConfigError { problems: error.into_iter().map(|e| e.to_string()).collect() })?;
        Config::validate(file)
    }

    fn validate(file: File) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let scheme_ok = |url: &str| ["postgres://", "postgresql://", "sqlite:"].iter().any(|s| url.starts_with(s));
        check(scheme_ok(&file.repo_db.url), "repo_db.url: expected a postgres:// or sqlite: URL".to_string());
        if let Some(url) = &file.state.url {
            check(scheme_ok(url), "state.url: expected a postgres:// or sqlite: URL".to_string());
        }
        check(!file.gitserver.addrs.is_empty(), "gitserver.addrs: at least one shard address is needed".to_string());
        for addr in &file.gitserver.addrs {
            check(valid_host_port(addr), format!("gitserver.addrs: {addr:?} is not host:port"));
        }
        let mut seen = std::collections::HashSet::new();
        for addr in &file.gitserver.addrs {
            check(seen.insert(addr), format!("gitserver.addrs: {addr:?} is listed twice"));
        }
        check(file.sync.interval >= Duration::from_millis(100), "sync.interval: must be at least 100ms".to_string());
        let stall_after = file.sync.stall_after.unwrap_or_else(|| defaults::stall_after(file.sync.interval));
        check(
            stall_after > file.sync.interval,
            format!(
                "sync.stall_after: {} must be longer than sync.interval ({})",
                humantime::format_duration(stall_after),
                humantime::format_duration(file.sync.interval)
            ),
        );
        let full_interval = file.sync.full_interval.unwrap_or_else(|| defaults::full_interval(file.sync.interval));
        check(
            full_interval >= file.sync.interval,
            format!(
                "sync.full_interval: {} must be at least sync.interval ({})",
                humantime::format_duration(full_interval),
                humantime::format_duration(file.sync.interval)
            ),
        );
        for (key, timeouts) in [
            ("repo_db", (file.repo_db.statement_timeout, file.repo_db.lock_timeout)),
            ("state", (file.state.statement_timeout, file.state.lock_timeout)),
        ] {
            check(
                timeouts.0 >= Duration::from_secs(1) && timeouts.1 >= Duration::from_millis(100),
                format!("{key}.statement_timeout and {key}.lock_timeout: must be at least 1s and 100ms"),
            );
        }
        check(
            file.dispatch.max_in_flight_per_shard >= 1,
            "dispatch.max_in_flight_per_shard: must be at least 1".to_string(),
        );
        check(file.dispatch.max_in_flight >= 1, "dispatch.max_in_flight: must be at least 1".to_string());
        check(
            file.dispatch.backoff_base <= file.dispatch.backoff_max && !file.dispatch.backoff_base.is_zero(),
            "dispatch.backoff_base: must be above zero and at most dispatch.backoff_max".to_string(),
        );
        check(
            (0.0..=1.0).contains(&file.log.decision_sample),
            "log.decision_sample: must be between 0 and 1".to_string(),
        );
        check(
            !file.policy.call_timeout.is_zero() && file.policy.memory_limit_mb >= 1,
            "policy.call_timeout and policy.memory_limit_mb: must be above zero".to_string(),
        );
        check(
            file.policy.tick_budget >= file.policy.call_timeout,
            format!(
                "policy.tick_budget: must be at least policy.call_timeout ({}), or no call could finish",
                humantime::format_duration(file.policy.call_timeout)
            ),
        );
        if let Some(list) = &file.policy.allowlist {
            for digest in list {
                check(
                    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                    format!("policy.allowlist: {digest:?} is not a sha256 hex digest"),
                );
            }
        }
        if let Some(token) = file.admin.token.as_deref().filter(|t| !t.is_empty()) {
            check(
                token.len() >= MIN_TOKEN_BYTES && !is_placeholder(token),
                format!(
                    "admin.token: a placeholder or shorter than {MIN_TOKEN_BYTES} bytes; \
                     generate one, e.g. `openssl rand -hex 32`"
                ),
            );
        }
        check(file.gitserver.max_response_mb >= 1, "gitserver.max_response_mb: must be at least 1".to_string());
        let state_url = file.state.url.clone().unwrap_or_else(|| file.repo_db.url.clone());
        if file.ha.enabled {
            check(
                state_url.starts_with("postgres://") || state_url.starts_with("postgresql://"),
                "ha.enabled: several replicas need a Postgres state DB (state.url, or repo_db.url); \
                 SQLite serves one replica only"
                    .to_string(),
            );
            check(
                file.ha.check_interval >= Duration::from_millis(100),
                "ha.check_interval: must be at least 100ms".to_string(),
            );
            check(
                file.ha.takeover_delay > file.ha.check_interval * 2,
                format!(
                    "ha.takeover_delay: must be longer than two ha.check_interval ({}), the time a lost leader \
                     may take to notice",
                    humantime::format_duration(file.ha.check_interval * 2)
                ),
            );
        }
        let target = match (file.dispatch.target, &file.dispatch.repo_updater_addr) {
            (TargetName::Gitserver, _) => Some(DispatchTarget::Gitserver),
            (TargetName::RepoUpdater, Some(addr)) if valid_host_port(addr) => {
                Some(DispatchTarget::RepoUpdater(addr.clone()))
            }
            (TargetName::RepoUpdater, _) => {
                problems.push("dispatch.repo_updater_addr: target \"repo-updater\" needs a host:port".to_string());
                None
            }
        };
        let admin_listen = file
            .admin
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| format!("admin.listen: {:?} is not an ip:port address ({e})", file.admin.listen));
        if let Err(problem) = &admin_listen {
            problems.push(problem.clone());
        }
        let routing = match file.gitserver.routing {
            RoutingName::Md5 => Routing::Md5,
            RoutingName::Rendezvous => Routing::Rendezvous,
        };
        let shards = ShardMap::new(file.gitserver.addrs.clone(), routing);
        let (Some(shards), Some(target), Ok(admin_listen), true) = (shards, target, admin_listen, problems.is_empty())
        else {
            return Err(ConfigError { problems });
        };
        Ok(Config {
            state_url,
            state_timeouts: DbTimeouts { statement: file.state.statement_timeout, lock: file.state.lock_timeout },
            repo_db_timeouts: DbTimeouts { statement: file.repo_db.statement_timeout, lock: file.repo_db.lock_timeout },
            repo_db_url: file.repo_db.url,
            shards,
            list_timeout: file.gitserver.timeout,
            max_response_bytes: (file.gitserver.max_response_mb as usize) << 20,
            interval: file.sync.interval,
            stall_after,
            full_interval,
            limits: Limits {
                max_in_flight_per_shard: file.dispatch.max_in_flight_per_shard,
                max_in_flight: file.dispatch.max_in_flight,
            },
            target,
            dispatch_timeout: file.dispatch.timeout,
            backoff: Backoff { base: file.dispatch.backoff_base, max: file.dispatch.backoff_max },
            max_attempts: (file.dispatch.max_attempts > 0).then_some(file.dispatch.max_attempts),
            writeback: file.writeback.enabled,
            admin_listen,
            log_format: file.log.format,
            log_level: file.log.level,
            admin_token: file.admin.token.filter(|t| !t.is_empty()),
            decision_log_sample: file.log.decision_sample,
            policy: PolicyConfig {
                dir: file.policy.dir,
                call_timeout: file.policy.call_timeout,
                memory_limit_bytes: (file.policy.memory_limit_mb as usize) << 20,
                tick_budget: file.policy.tick_budget,
                cache_dir: file.policy.cache_dir,
                allowlist: file.policy.allowlist,
                quarantine_after: file.policy.quarantine_after.max(1),
            },
            ha: file.ha.enabled.then_some(HaConfig {
                lock_key: file.ha.lock_key,
                check_interval: file.ha.check_interval,
                takeover_delay: file.ha.takeover_delay,
            }),
        })
    }
}

/// The shortest admin token accepted: a guessable token on a pod IP is no protection.
const MIN_TOKEN_BYTES: usize = 16;

/// Tokens copied from an example rather than generated.
fn is_placeholder(token: &str) -> bool {
    let folded: String = token.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    folded.starts_with("changeme") || ["placeholder", "secret", "password", "token"].contains(&folded.as_str())
}

/// `REPO_DB_URL` → `repo_db.url`; variables of unknown sections are not ours and are ignored.
fn env_key(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    SECTIONS.iter().find_map(|section| {
        let rest = key.strip_prefix(section)?.strip_prefix('_')?;
        (!rest.is_empty()).then(|| format!("{section}.{rest}"))
    })
}

fn valid_host_port(addr: &str) -> bool {
    let addr = addr.strip_prefix("http://").or_else(|| addr.strip_prefix("https://")).unwrap_or(addr);
    match addr.trim_end_matches('/').rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// One `CLONEKEEPER_…` variable as a figment provider, so an error names the variable.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl figment::Provider for EnvVar {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        match figment::util::nest(&self.key, env_value(&self.value)) {
            figment::value::Value::Dict(_, dict) => Ok(figment::Profile::Default.collect(dict)),
            _ => Err(figment::Error::from(format!("{}: not a section key", self.name))),
        }
    }
}

/// A variable's text as a typed value: a TOML value (`5`, `true`, `["a:1"]`, `"quoted"`) when it is exactly
/// one, else the text as a string. TOML's own parser reads it because figment's `Value::from_str` panics on a
/// backslash before a multi-byte character, and an environment variable must never crash the sidecar.
fn env_value(text: &str) -> figment::value::Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {text}")).ok().filter(|table| table.len() == 1);
    parsed
        .and_then(|mut table| table.remove("v"))
        .and_then(|value| <figment::value::Value as serde::Deserialize>::deserialize(value).ok())
        .unwrap_or_else(|| text.into())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;

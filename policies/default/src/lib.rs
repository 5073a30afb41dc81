//! The built-in behaviour of clonekeeper as a policy module: a starting point to copy.
//!
//! - Order (`rank`), as `host/src/schedule/priority.rs`: never-attempted repos before
//!   failed ones; among never-attempted the oldest `created_at` first; among failed the one
//!   whose last attempt is oldest first; the host breaks ties by the lower repo id. It reads
//!   the attempts, created-at and last-attempt-at columns.
//! - Retry (`reenqueue`), as `host/src/schedule/backoff.rs`: wait `base · 2^(attempts-1)`,
//!   capped at `max`; never give up unless `max_attempts` is set. Unlike the host, no jitter.

use std::sync::Mutex;

use clonekeeper::policy::log::{log, Level};
use clonekeeper::policy::types::{Column, RepoBatch, RepoView, Timestamp};
use exports::clonekeeper::policy::{explain, lifecycle, rank, reenqueue};
use rank::Ranking;
use reenqueue::{Failure, Retry};

wit_bindgen::generate!({ path: "../../wit", world: "prioritizer-retrier" });

/// What `default.toml` may set; the defaults are the host's.
#[derive(Clone, Copy, Debug)]
struct Config {
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    /// Give up after this many failed attempts; `None`: never.
    max_attempts: Option<u32>,
}

const DEFAULTS: Config = Config { backoff_base_ms: 10_000, backoff_max_ms: 30 * 60_000, max_attempts: None };
/// The longest delay the contract allows (`after-ms`: at most 30 days).
const MAX_DELAY_MS: u64 = 30 * 24 * 3_600_000;
/// Scores of never-attempted repos sit above this; failed ones below (as in the host).
const BAND: f64 = 1e15;

static CONFIG: Mutex<Config> = Mutex::new(DEFAULTS);

fn config() -> Config {
    *CONFIG.lock().unwrap()
}

struct Policy;

impl lifecycle::Guest for Policy {
    fn init(text: String) -> Result<(), String> {
        let config = parse_config(&text).map_err(|e| format!("default.toml: {e}"))?;
        log(
            Level::Info,
            "default policy configured",
            &[
                ("backoff_base_ms".into(), config.backoff_base_ms.to_string()),
                ("backoff_max_ms".into(), config.backoff_max_ms.to_string()),
                ("max_attempts".into(), config.max_attempts.map_or("never".into(), |n| n.to_string())),
            ],
        );
        *CONFIG.lock().unwrap() = config;
        Ok(())
    }
}

impl rank::Guest for Policy {
    fn columns() -> Vec<Column> {
        vec![Column::Attempts, Column::CreatedAt, Column::LastAttemptAt]
    }

    fn rank(_now: Timestamp, repos: RepoBatch) -> Ranking {
        let rows = repos.attempts.iter().zip(&repos.created_at).zip(&repos.last_attempt_at);
        let scores = rows
            .map(|((&attempts, &created_at), &last_attempt_at)| score(attempts, created_at, last_attempt_at))
            .collect();
        Ranking { scores, not_now: Vec::new() }
    }
}

impl explain::Guest for Policy {
    fn explain_priority(now: Timestamp, repo: RepoView) -> String {
        let days_ago = |at: Option<Timestamp>| match at {
            Some(at) => format!("{} days ago", now.saturating_sub(at).max(0) / 86_400_000),
            None => "at an unknown time".to_string(),
        };
        if repo.attempts > 0 {
            format!(
                "failed {} time(s), last {}: failed repos go after never-attempted ones, the one that failed longest ago first",
                repo.attempts,
                days_ago(repo.last_attempt_at)
            )
        } else {
            format!(
                "never attempted, created {}: never-attempted repos go first, the oldest first",
                days_ago(repo.created_at)
            )
        }
    }
}

impl reenqueue::Guest for Policy {
    fn reenqueue(_now: Timestamp, failures: Vec<Failure>) -> Vec<Retry> {
        let config = config();
        failures
            .iter()
            .map(|failure| {
                let attempts = failure.repo.attempts;
                match config.max_attempts {
                    Some(max) if attempts >= max => Retry::GiveUp(format!("gave up after {attempts} failed attempts")),
                    _ => Retry::AfterMs(delay_ms(&config, attempts)),
                }
            })
            .collect()
    }
}

export!(Policy);

/// Higher goes first: never-attempted repos score `2·BAND − created_at`, failed ones
/// `−last_attempt_at`, so each group runs oldest first. Unknown times arrive as 0.
fn score(attempts: u32, created_at: Timestamp, last_attempt_at: Timestamp) -> f64 {
    if attempts > 0 {
        -(last_attempt_at as f64)
    } else {
        2.0 * BAND - created_at as f64
    }
}

/// The delay after the `attempts`-th failed attempt (1-based): `base · 2^(attempts-1)`, capped.
fn delay_ms(config: &Config, attempts: u32) -> u64 {
    let exponent = attempts.saturating_sub(1).min(30);
    config.backoff_base_ms.saturating_mul(1 << exponent).min(config.backoff_max_ms)
}

fn parse_config(text: &str) -> Result<Config, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut config = DEFAULTS;
    for (key, value) in &table {
        match key.as_str() {
            "backoff_base" => config.backoff_base_ms = duration_ms(key, value)?,
            "backoff_max" => config.backoff_max_ms = duration_ms(key, value)?,
            "max_attempts" => {
                let n = value.as_integer().filter(|n| (1..=i64::from(u32::MAX)).contains(n));
                config.max_attempts = Some(n.ok_or("max_attempts: must be a whole number above zero")? as u32);
            }
            _ => return Err(format!("unknown key {key:?} (known: backoff_base, backoff_max, max_attempts)")),
        }
    }
    if config.backoff_base_ms == 0 || config.backoff_base_ms > config.backoff_max_ms {
        return Err("backoff_base: must be above zero and at most backoff_max".into());
    }
    if config.backoff_max_ms > MAX_DELAY_MS {
        return Err("backoff_max: must be at most 30 days".into());
    }
    Ok(config)
}

/// A duration such as `"10s"`, `"30m"`, `"1h 30m"` or `"500ms"` (units ms, s, m, h, d).
fn duration_ms(key: &str, value: &toml::Value) -> Result<u64, String> {
    let got = value.as_str().map_or_else(|| value.type_str().to_string(), |s| format!("{s:?}"));
    let bad = || format!("{key}: expected a duration such as \"10s\", \"30m\" or \"1h 30m\", got {got}");
    let text = value.as_str().ok_or_else(bad)?;
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == ' ').unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        total = total.saturating_add(number.saturating_mul(unit));
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

//! Defaults, in one place so the README's reference can be checked against them.

use std::time::Duration;

use super::LogFormat;

pub fn list_timeout() -> Duration {
    Duration::from_secs(30)
}
pub fn repo_db_statement_timeout() -> Duration {
    Duration::from_secs(120)
}
pub fn state_statement_timeout() -> Duration {
    Duration::from_secs(30)
}
pub fn lock_timeout() -> Duration {
    Duration::from_secs(10)
}
/// The larger of 3 × interval and 60 s: long enough for a slow tick at scale, short
/// enough that a stuck one is seen within minutes.
pub fn stall_after(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(60))
}
/// The period of full reads and progress sweeps: 5 minutes, or the interval if longer.
pub fn full_interval(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(300))
}
pub fn max_response_mb() -> u32 {
    512
}
pub fn interval() -> Duration {
    Duration::from_secs(10)
}
pub fn per_shard() -> u32 {
    5
}
pub fn global() -> u32 {
    40
}
pub fn dispatch_timeout() -> Duration {
    Duration::from_secs(3600)
}
pub fn backoff_base() -> Duration {
    Duration::from_secs(10)
}
pub fn backoff_max() -> Duration {
    Duration::from_secs(30 * 60)
}
pub fn admin_listen() -> String {
    "127.0.0.1:9187".to_string()
}
pub fn log_format() -> LogFormat {
    LogFormat::Human
}
pub fn log_level() -> String {
    "info".to_string()
}
pub fn decision_log_sample() -> f64 {
    0.01
}
pub fn policy_call_timeout() -> Duration {
    Duration::from_millis(500)
}
pub fn policy_tick_budget() -> Duration {
    super::DEFAULT_POLICY_TICK_BUDGET
}
pub fn policy_memory_mb() -> u32 {
    256
}
pub fn quarantine_after() -> u32 {
    3
}
/// "ckleader" in ASCII: an arbitrary key unlikely to clash with another application's.
pub fn ha_lock_key() -> i64 {
    0x636b_6c65_6164_6572
}
pub fn ha_check_interval() -> Duration {
    Duration::from_secs(1)
}
pub fn ha_takeover_delay() -> Duration {
    Duration::from_secs(5)
}

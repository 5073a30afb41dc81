//! End-to-end tests: real Postgres, real git, real HTTP, the real sidecar and dev gitserver
//! binaries as child processes. See `support` for the harness.

mod support;

mod bad_config;
mod broken_clone_url;
mod chaos_demo;
mod clone_finishing_mid_observation;
mod demo_snapshot;
mod explained_limit;
mod failed_read;
mod ha;
mod hostile_shards;
mod incremental_reads;
mod nul_in_clone_error;
mod operator;
mod plain_logs;
mod policy_sandbox;
mod policy_swap;
mod replay;
mod replay_report;
mod routing_table;
mod schema_shapes;
mod seed_scenario;
mod shadow_mode;
mod shard_down;
mod sidecar_sigkill;
mod sigterm;
mod stalls;
mod state_db_restart;
mod status_endpoint;
mod writeback_shard;

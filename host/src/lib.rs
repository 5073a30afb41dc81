//! clonekeeper: keeps a code-search deployment's git mirrors complete.
//!
//! Each tick reads the desired repos from the repo DB and the actual clones from every
//! gitserver shard, reconciles the two (pure, in [`reconcile`]), orders and paces the work
//! (pure, in [`schedule`]) and dispatches clones ([`dispatch`]). See ARCHITECTURE.md.

pub mod admin;
pub mod cli;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod error_chain;
pub mod explain;
pub mod liveness;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod reconcile;
pub mod replay;
pub mod routing;
pub mod schedule;
pub mod shard_leases;
pub mod sidecar;
pub mod sim;
pub mod sources;
pub mod state;
pub mod status;
pub mod text;

#[cfg(test)]
mod tidy;

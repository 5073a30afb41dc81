//! Adapters that read the world: the repo DB (desired) and the gitserver shards (actual).

pub mod gitserver;
pub mod repo_db;

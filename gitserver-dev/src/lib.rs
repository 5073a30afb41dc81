//! A gitserver-compatible development server: the HTTP API of Sourcegraph's gitserver as it
//! was in 2020, backed by real `git clone --mirror` runs.
//!
//! Tests and the demo run it, in-process through [`Server`] or as the `gitserver-dev` binary;
//! production never does. It reproduces the property clonekeeper exists to repair: the clone
//! queue lives in memory only, so killing the server loses every queued and running clone,
//! and the partial clone directories are deleted on the next start.
//!
//! Endpoints (bodies are the types of [`gitserver_api`]):
//!
//! - `GET /list?cloned`: normalised names of the mirrors on disk, sorted.
//! - `POST /repos`, `POST /repo-clone-progress`: per-name status, keyed as requested.
//! - `POST /repo-update`: starts a clone and blocks until it ends; a repository already cloned or
//!   already being cloned is answered at once.
//! - `POST /is-repo-cloneable`: `git ls-remote URL HEAD`.
//! - `POST /delete`: removes a mirror.
//! - `GET /debug/dispatches`: test instrumentation that the real gitserver never had. It
//!   records every `/repo-update` that started a clone and, per repository, the largest
//!   number of `/repo-update` requests handled at the same time, so a test can prove that a
//!   client never dispatched one repository twice at once. See [`DispatchLog`].
//! - `POST /debug/repo-update-error`: test instrumentation too: `/repo-update` of a chosen
//!   repository answers a chosen `Error` (a NUL byte, say). See [`RepoUpdateFault`].
//!
//! Storage: `<repos_dir>/<normalised name>/.git` is a bare mirror. Clones run in
//! `<repos_dir>/.tmp/` and are renamed into place once complete, so a mirror is either
//! absent or whole.

mod cli;
mod clones;
mod config;
mod debug;
mod faults;
pub mod fixture;
mod git;
mod json_body;
mod layout;
mod listing;
mod routes;
mod server;

pub use cli::cli_main;
pub use config::{Config, DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_CLONES};
pub use debug::{DispatchEvent, DispatchLog};
pub use faults::RepoUpdateFault;
pub use server::Server;

//! gitserver's HTTP API as the Go services spoke it: request and response bodies, and the
//! repository-name normalisation every gitserver applies before a name becomes a directory.
//!
//! Field names follow the Go structs: untagged fields keep their Go capitalisation
//! (`Repos`, `Results`, `CloneInProgress`), tagged ones are lower case (`repo`, `url`).
//! Both clonekeeper's client and the dev server use these types, so the two cannot drift.

mod name;
mod wire;

pub use name::{canonical_repo_name, is_canonical_repo_name, normalize_repo_name};

#[cfg(test)]
mod name_props;
pub use wire::*;

//! The Rust side of `wit/policy.wit`, generated at compile time by `bindgen!`.
//!
//! **API boundary:** only `policy/` sees these types; the rest of clonekeeper talks to the
//! policy host in its own plain types ([`super::RepoView`], [`crate::schedule::Priority`], …).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
});

pub use self::clonekeeper::policy::log::Level as LogLevel;
pub use self::clonekeeper::policy::types::{CloneState, Column, RepoBatch, RepoFlags, RepoView as WitRepoView};
pub use self::exports::clonekeeper::policy::explain;
pub use self::exports::clonekeeper::policy::explain_limits;
pub use self::exports::clonekeeper::policy::lifecycle;
pub use self::exports::clonekeeper::policy::prioritize;
pub use self::exports::clonekeeper::policy::rank;
pub use self::exports::clonekeeper::policy::rate_limits;
pub use self::exports::clonekeeper::policy::reenqueue;

/// The WIT package every policy is built against.
pub const PACKAGE: &str = "clonekeeper:policy@0.2.2";

/// The contract's text, for `policy new` scaffolds and error messages.
pub const WIT_TEXT: &str = include_str!("../../../wit/policy.wit");

/// The contract's version, as it appears in import and export names.
pub const VERSION: &str = "0.2.2";

/// The versions a module may be built against: 0.2.1 and 0.2.2 only added interfaces
/// (`explain`, `rank`), and wasmtime matches 0.2.x names semver-compatibly, so modules built
/// against earlier 0.2 contracts link against these bindings.
pub const VERSIONS: [&str; 3] = ["0.2.0", "0.2.1", "0.2.2"];

/// The versions before [`VERSION`] that the host still loads, for messages.
pub const EARLIER_VERSIONS: &str = "0.2.0 and 0.2.1";

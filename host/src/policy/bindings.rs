//! The Rust side of `wit/policy.wit`, generated at compile time by `bindgen!`.
//!
//! **API boundary:** only `policy/` sees these types; the rest of clonekeeper talks to the
//! policy host in its own plain types ([`super::RepoView`], [`crate::schedule::Priority`], …).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "full",
});

pub use self::clonekeeper::policy::log::Level as LogLevel;
pub use self::clonekeeper::policy::types::{CloneState, Column, RepoBatch, RepoFlags, RepoView as WitRepoView};
pub use self::exports::clonekeeper::policy::explain;
pub use self::exports::clonekeeper::policy::explain_limits;
pub use self::exports::clonekeeper::policy::lifecycle;
pub use self::exports::clonekeeper::policy::prioritize;
pub use self::exports::clonekeeper::policy::rate_limits;
pub use self::exports::clonekeeper::policy::reenqueue;

/// The WIT package every policy is built against.
pub const PACKAGE: &str = "clonekeeper:policy@0.2.1";

/// The contract's text, for `policy new` scaffolds and error messages.
pub const WIT_TEXT: &str = include_str!("../../../wit/policy.wit");

/// The contract's version, as it appears in import and export names.
pub const VERSION: &str = "0.2.1";

/// The versions a module may be built against: 0.2.1 only added the `explain` interface, and
/// wasmtime matches 0.2.x names semver-compatibly, so 0.2.0 modules link against these bindings.
pub const VERSIONS: [&str; 2] = ["0.2.0", "0.2.1"];

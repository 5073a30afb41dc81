//! The contract's interfaces, and the names they have in a component in each contract version
//! the host loads.

use std::fmt;

use super::bindings::VERSIONS;

/// The interfaces a module can export.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// What to clone first: exported as `rank` (0.2.2) or as `prioritize` (0.2.0, 0.2.1).
    Prioritize,
    RateLimits,
    Reenqueue,
    Lifecycle,
    /// Why a repo gets its score (0.2.1): asked only when someone looks.
    Explain,
    /// Why a code host or shard gets its rate limit (0.2.1): asked only when someone looks.
    ExplainLimits,
}

impl Interface {
    /// The decision interfaces, each served by at most one module at a time.
    pub const DECISIONS: [Interface; 3] = [Interface::Prioritize, Interface::RateLimits, Interface::Reenqueue];

    /// The name in WIT, e.g. `rate-limits`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Prioritize => "prioritize",
            Interface::RateLimits => "rate-limits",
            Interface::Reenqueue => "reenqueue",
            Interface::Lifecycle => "lifecycle",
            Interface::Explain => "explain",
            Interface::ExplainLimits => "explain-limits",
        }
    }

    /// Every interface of the contract.
    pub const ALL: [Interface; 6] = [
        Interface::Prioritize,
        Interface::RateLimits,
        Interface::Reenqueue,
        Interface::Lifecycle,
        Interface::Explain,
        Interface::ExplainLimits,
    ];

    pub fn parse(name: &str) -> Option<Interface> {
        Interface::ALL.into_iter().find(|i| i.as_str() == name)
    }

    /// The names a component exports this interface under, newest first: `prioritize` is
    /// answered by `rank` since 0.2.2, and by `prioritize` in modules built before.
    pub fn wit_names(self) -> &'static [&'static str] {
        match self {
            Interface::Prioritize => &["rank", "prioritize"],
            Interface::RateLimits => &["rate-limits"],
            Interface::Reenqueue => &["reenqueue"],
            Interface::Lifecycle => &["lifecycle"],
            Interface::Explain => &["explain"],
            Interface::ExplainLimits => &["explain-limits"],
        }
    }

    /// The WIT name `name` exports this interface under (e.g. `rank` for
    /// `clonekeeper:policy/rank@0.2.2`), in any contract version the host loads.
    pub(super) fn exported_as(self, name: &str) -> Option<&'static str> {
        let (interface, version) = name.strip_prefix("clonekeeper:policy/")?.split_once('@')?;
        VERSIONS.contains(&version).then_some(())?;
        self.wit_names().iter().copied().find(|n| *n == interface)
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

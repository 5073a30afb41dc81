//! The contract's interfaces, and the names they have in a component in each contract version
//! the host loads.

use std::fmt;

use super::bindings::{VERSION, VERSIONS};

/// The interfaces a module can export.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
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

    /// Whether `name` exports this interface, in any contract version the host loads.
    pub(super) fn is_export(self, name: &str) -> bool {
        VERSIONS.iter().any(|v| name == format!("clonekeeper:policy/{}@{v}", self.as_str()))
    }

    /// The export name in a component, e.g. `clonekeeper:policy/rate-limits@0.2.0`.
    pub fn export_name(self) -> String {
        format!("clonekeeper:policy/{}@{VERSION}", self.as_str())
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

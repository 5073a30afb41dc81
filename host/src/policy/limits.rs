//! What one call may hold: linear memory summed over every memory in its store, and how many
//! memories, tables and core instances one component may bring.
//!
//! A cap per linear memory is not a cap per call: a component may define several memories
//! (multi-memory, or several core modules), and 16 memories × 256 MiB is 4 GiB. So the store's
//! [`ResourceLimiter`] adds up every memory's size and refuses growth past
//! `policy.memory_limit_mb` in total, and the pooling allocator refuses at load a component
//! with more memories, tables or core instances than the examples need (with margin).
//!
//! **Measured** (wasmtime 48, the example policies in `policies/` as built by
//! `scripts/build-policies.sh`; memory as the limiter counted it, after load and at the
//! largest call of 10,000 repos or 100 keys):
//!
//! | example | guest | core instances | memories | tables | memory at load | memory in a call |
//! |---|---|---|---|---|---|---|
//! | default | Rust | 3 | 1 | 2 | 1.1 MiB | 1.6 MiB |
//! | popular-first | Rust | 3 | 1 | 2 | 1.1 MiB | 1.6 MiB |
//! | code-host-limits | Python (componentize-py) | 38 | 1 | 2 | 12.6 MiB | 12.6 MiB |
//! | org-tiers | JavaScript (jco, QuickJS) | 13 | 3 | 3 | 1.4 MiB | 4.3 MiB |
//!
//! The limits below are more than twice the most any example needs.

use wasmtime::ResourceLimiter;

/// Core instances one component may instantiate (Python's componentize-py output needs 38).
pub const MAX_CORE_INSTANCES: u32 = 96;
/// Linear memories one component may define, all modules together (JavaScript needs 3).
pub const MAX_MEMORIES: u32 = 8;
/// Tables one component may define, all modules together (JavaScript needs 3).
pub const MAX_TABLES: u32 = 8;
/// Elements of any one table (QuickJS's function table is the largest seen).
pub const MAX_TABLE_ELEMENTS: usize = 200_000;

/// Growth of a store's memories past the call's cap: the call traps with this error.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the module's memories would hold {wanted} bytes together, more than \
     policy.memory_limit_mb allows ({cap} bytes)"
)]
pub struct MemoryCapExceeded {
    pub wanted: usize,
    pub cap: usize,
}

/// A table grown past [`MAX_TABLE_ELEMENTS`]: the call traps with this error.
#[derive(Debug, thiserror::Error)]
#[error("table limit exceeded: a table would hold {wanted} elements, more than the {MAX_TABLE_ELEMENTS} allowed")]
pub struct TableCapExceeded {
    pub wanted: usize,
}

/// The limiter of one store (one call): the sum of its memories' sizes is at most `cap`.
#[derive(Debug)]
pub struct StoreLimiter {
    /// Bytes all memories of the store may hold together.
    cap: usize,
    /// Bytes they hold now (as granted; a grant whose growth then failed is taken back).
    // Invariant: used <= cap.
    used: usize,
    /// The last growth granted, taken back if wasmtime reports that it failed.
    last_growth: usize,
    /// The most `used` has been, for measurements.
    peak: usize,
}

impl StoreLimiter {
    pub fn new(cap: usize) -> StoreLimiter {
        StoreLimiter { cap, used: 0, last_growth: 0, peak: 0 }
    }

    /// The most memory the store's memories held together so far, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Called for every memory's initial size too (with `current` 0), so instantiation
        // counts against the cap like growth does.
        let growth = desired.saturating_sub(current);
        let wanted = self.used.saturating_add(growth);
        if wanted > self.cap {
            return Err(MemoryCapExceeded { wanted, cap: self.cap }.into());
        }
        self.used = wanted;
        self.last_growth = growth;
        self.peak = self.peak.max(self.used);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(std::mem::take(&mut self.last_growth));
        // As before the cap was summed: a failed growth traps rather than returning -1,
        // which guests rarely check.
        Err(error)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(TableCapExceeded { wanted: desired }.into());
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_summed_over_memories_and_refused_past_the_cap() {
        let mut limiter = StoreLimiter::new(10 << 16);
        assert!(limiter.memory_growing(0, 4 << 16, None).expect("first memory"));
        assert!(limiter.memory_growing(0, 4 << 16, None).expect("second memory"));
        let error = limiter.memory_growing(4 << 16, 7 << 16, None).unwrap_err();
        assert!(error.downcast_ref::<MemoryCapExceeded>().is_some(), "{error:#}");
        assert!(limiter.memory_growing(4 << 16, 6 << 16, None).expect("up to the cap"));
        assert_eq!(limiter.peak(), 10 << 16);
    }

    #[test]
    fn a_failed_growth_is_taken_back() {
        let mut limiter = StoreLimiter::new(10 << 16);
        assert!(limiter.memory_growing(0, 8 << 16, None).expect("grant"));
        assert!(limiter.memory_grow_failed(wasmtime::format_err!("no")).is_err(), "traps");
        assert!(limiter.memory_growing(0, 8 << 16, None).expect("the space is free again"));
    }
}

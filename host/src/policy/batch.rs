//! The columnar `repo-batch` that `prioritize` takes, filled with only the columns a module
//! reads (its `columns` answer at load).
//!
//! **Why columns.** Copying data into a guest is the cost of a policy call, not the guest's
//! arithmetic: the canonical ABI lowers a list of records field by field, and every string
//! through a call into the guest's allocator. A list of integers is one copy. So the batch is
//! a record of lists; numbers are plain (0 when unknown, with a `…-known` bit in `flags`)
//! rather than options, which are lowered one at a time; strings that repeat (code hosts,
//! service types, shard addresses) travel once per batch as tables with indices; and a module
//! pays only for the columns it reads (names, the only per-repository strings, cost most).
//! BENCHMARKS.md has the figures.

use std::collections::HashMap;
use std::fmt;

use super::bindings::{CloneState, Column, RepoBatch, RepoFlags};
use super::view::{RepoView, ViewState};
use crate::model::Timestamp;
use crate::schedule::Candidate;

/// The set of columns a module reads.
#[derive(Copy, Clone, Default, PartialEq, Eq)]
pub struct Columns(u16);

/// Every column, in WIT order.
const ALL: [Column; 14] = [
    Column::Id,
    Column::Name,
    Column::CodeHost,
    Column::ServiceType,
    Column::Flags,
    Column::Stars,
    Column::CreatedAt,
    Column::UpdatedAt,
    Column::SizeBytes,
    Column::State,
    Column::Shard,
    Column::Attempts,
    Column::LastError,
    Column::LastAttemptAt,
];

impl Columns {
    /// Every column (for views and tools that show a whole batch).
    pub fn all() -> Columns {
        Columns::from_wit(&ALL)
    }

    pub(super) fn from_wit(columns: &[Column]) -> Columns {
        Columns(columns.iter().fold(0, |bits, &c| bits | bit(c)))
    }

    pub(super) fn has(self, column: Column) -> bool {
        self.0 & bit(column) != 0
    }

    /// Whether the set holds stars, which the repo DB reader skips when no module reads them.
    pub fn has_stars(self) -> bool {
        self.has(Column::Stars)
    }

    /// Whether the set holds a column filled from the repo row's details (service type, flags,
    /// updated-at), which the reader skips when no module sees them.
    pub fn has_details(self) -> bool {
        self.has(Column::ServiceType) || self.has(Column::Flags) || self.has(Column::UpdatedAt)
    }

    /// The WIT names of the columns in the set, e.g. `["stars", "updated-at"]`.
    pub fn names(self) -> Vec<&'static str> {
        ALL.into_iter().filter(|&c| self.has(c)).map(column_name).collect()
    }
}

impl fmt::Debug for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

fn bit(column: Column) -> u16 {
    1 << (column as u16)
}

fn column_name(column: Column) -> &'static str {
    match column {
        Column::Id => "id",
        Column::Name => "name",
        Column::CodeHost => "code-host",
        Column::ServiceType => "service-type",
        Column::Flags => "flags",
        Column::Stars => "stars",
        Column::CreatedAt => "created-at",
        Column::UpdatedAt => "updated-at",
        Column::SizeBytes => "size-bytes",
        Column::State => "state",
        Column::Shard => "shard",
        Column::Attempts => "attempts",
        Column::LastError => "last-error",
        Column::LastAttemptAt => "last-attempt-at",
    }
}

/// One repository as the batch builder reads it: the scheduler's candidates and the CLI's
/// and fixtures' [`RepoView`] rows both are.
pub(super) trait Row {
    fn id(&self) -> i64;
    fn name(&self) -> &str;
    fn code_host(&self) -> &str;
    fn service_type(&self) -> &str;
    fn private_fork_archived(&self) -> (bool, bool, bool);
    fn stars(&self) -> Option<u32>;
    fn created_at(&self) -> Option<i64>;
    fn updated_at(&self) -> Option<i64>;
    fn size_bytes(&self) -> Option<u64>;
    fn state(&self) -> CloneState;
    fn shard(&self) -> u32;
    fn shard_addr(&self) -> &str;
    fn attempts(&self) -> u32;
    fn last_error(&self) -> Option<&str>;
    fn last_attempt_at(&self) -> Option<i64>;
}

/// Which `…-known` bits a batch carries: one per number column the module reads. Worked
/// out once per batch, so that each row costs a few plain tests.
#[derive(Clone, Copy)]
struct KnownBits {
    stars: bool,
    created_at: bool,
    updated_at: bool,
    size_bytes: bool,
    last_attempt_at: bool,
}

impl KnownBits {
    fn of(wanted: Columns) -> KnownBits {
        KnownBits {
            stars: wanted.has(Column::Stars),
            created_at: wanted.has(Column::CreatedAt),
            updated_at: wanted.has(Column::UpdatedAt),
            size_bytes: wanted.has(Column::SizeBytes),
            last_attempt_at: wanted.has(Column::LastAttemptAt),
        }
    }
}

/// The row's facts, and which of the numbers in `known` are known: a `…-known` bit means
/// nothing without its column, and reading a field no column needs costs memory traffic.
fn flags_of<R: Row>(row: &R, known: KnownBits) -> RepoFlags {
    let (private, fork, archived) = row.private_fork_archived();
    let bits = [
        (private, RepoFlags::PRIVATE),
        (fork, RepoFlags::FORK),
        (archived, RepoFlags::ARCHIVED),
        (known.stars && row.stars().is_some(), RepoFlags::STARS_KNOWN),
        (known.created_at && row.created_at().is_some(), RepoFlags::CREATED_AT_KNOWN),
        (known.updated_at && row.updated_at().is_some(), RepoFlags::UPDATED_AT_KNOWN),
        (known.size_bytes && row.size_bytes().is_some(), RepoFlags::SIZE_BYTES_KNOWN),
        (known.last_attempt_at && row.last_attempt_at().is_some(), RepoFlags::LAST_ATTEMPT_AT_KNOWN),
    ];
    bits.into_iter().filter(|&(yes, _)| yes).fold(RepoFlags::empty(), |flags, (_, bit)| flags | bit)
}

/// A scheduler candidate with the shard address list it indexes.
pub(super) struct CandidateRow<'a> {
    pub candidate: &'a Candidate<'a>,
    pub shard_addrs: &'a [String],
}

impl Row for CandidateRow<'_> {
    fn id(&self) -> i64 {
        self.candidate.repo.id()
    }
    fn name(&self) -> &str {
        self.candidate.repo.name()
    }
    fn code_host(&self) -> &str {
        self.candidate.repo.code_host()
    }
    fn service_type(&self) -> &str {
        self.candidate.repo.service_type().map(|kind| kind.as_str()).unwrap_or_default()
    }
    fn private_fork_archived(&self) -> (bool, bool, bool) {
        let repo = self.candidate.repo;
        (repo.private(), repo.fork(), repo.archived())
    }
    fn stars(&self) -> Option<u32> {
        self.candidate.repo.stars()
    }
    fn created_at(&self) -> Option<i64> {
        self.candidate.repo.created_at().map(Timestamp::as_millis)
    }
    fn updated_at(&self) -> Option<i64> {
        self.candidate.repo.updated_at().map(Timestamp::as_millis)
    }
    fn size_bytes(&self) -> Option<u64> {
        None
    }
    fn state(&self) -> CloneState {
        ViewState::from(self.candidate.state).into()
    }
    fn shard(&self) -> u32 {
        u32::from(self.candidate.shard)
    }
    fn shard_addr(&self) -> &str {
        self.shard_addrs.get(usize::from(self.candidate.shard)).map_or("", String::as_str)
    }
    fn attempts(&self) -> u32 {
        self.candidate.record.map_or(0, |r| r.attempts)
    }
    fn last_error(&self) -> Option<&str> {
        self.candidate.record.and_then(|r| r.last_error.as_deref())
    }
    fn last_attempt_at(&self) -> Option<i64> {
        self.candidate.record.and_then(|r| r.last_attempt_at).map(Timestamp::as_millis)
    }
}

impl Row for RepoView {
    fn id(&self) -> i64 {
        self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn code_host(&self) -> &str {
        &self.code_host
    }
    fn service_type(&self) -> &str {
        &self.service_type
    }
    fn private_fork_archived(&self) -> (bool, bool, bool) {
        (self.private, self.fork, self.archived)
    }
    fn stars(&self) -> Option<u32> {
        self.stars
    }
    fn created_at(&self) -> Option<i64> {
        self.created_at
    }
    fn updated_at(&self) -> Option<i64> {
        self.updated_at
    }
    fn size_bytes(&self) -> Option<u64> {
        self.size_bytes
    }
    fn state(&self) -> CloneState {
        self.state.into()
    }
    fn shard(&self) -> u32 {
        self.shard
    }
    fn shard_addr(&self) -> &str {
        &self.shard_addr
    }
    fn attempts(&self) -> u32 {
        self.attempts
    }
    fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    fn last_attempt_at(&self) -> Option<i64> {
        self.last_attempt_at
    }
}

/// Distinct strings of a batch, in first-seen order, and each row's index among them.
#[derive(Default)]
struct Table<'a> {
    index: HashMap<&'a str, u32>,
    names: Vec<String>,
    of_rows: Vec<u32>,
}

impl<'a> Table<'a> {
    fn with_capacity(rows: usize) -> Table<'a> {
        Table { of_rows: Vec::with_capacity(rows), ..Table::default() }
    }

    fn push(&mut self, value: &'a str) {
        let next = self.names.len() as u32;
        let idx = *self.index.entry(value).or_insert_with(|| {
            self.names.push(value.to_string());
            next
        });
        self.of_rows.push(idx);
    }
}

/// The batch of `rows` with the columns in `wanted` filled, one pass over the rows per column:
/// each pass reads one field of every row into one array, a loop without branches on the
/// columns (one pass for all of them measured slower once the desired set was kept in columns).
pub(super) fn build<R: Row>(rows: &[R], wanted: Columns) -> RepoBatch {
    let has = |column: Column| wanted.has(column);
    let known = KnownBits::of(wanted);
    let mut code_hosts = Table::with_capacity(if has(Column::CodeHost) { rows.len() } else { 0 });
    if has(Column::CodeHost) {
        rows.iter().for_each(|row| code_hosts.push(row.code_host()));
    }
    let mut service_types = Table::with_capacity(if has(Column::ServiceType) { rows.len() } else { 0 });
    if has(Column::ServiceType) {
        rows.iter().for_each(|row| service_types.push(row.service_type()));
    }
    let mut shard_addrs: Vec<String> = Vec::new();
    if has(Column::Shard) {
        for row in rows {
            let idx = row.shard() as usize;
            if shard_addrs.len() <= idx {
                shard_addrs.resize(idx + 1, String::new());
            }
            if shard_addrs[idx].is_empty() {
                shard_addrs[idx] = row.shard_addr().to_string();
            }
        }
    }
    RepoBatch {
        len: u32::try_from(rows.len()).unwrap_or(u32::MAX),
        ids: column(rows, has(Column::Id), R::id),
        names: column(rows, has(Column::Name), |row| row.name().to_string()),
        code_hosts: code_hosts.of_rows,
        code_host_names: code_hosts.names,
        service_types: service_types.of_rows,
        service_type_names: service_types.names,
        flags: column(rows, has(Column::Flags), |row| flags_of(row, known)),
        stars: column(rows, has(Column::Stars), |row| row.stars().unwrap_or(0)),
        created_at: column(rows, has(Column::CreatedAt), |row| row.created_at().unwrap_or(0)),
        updated_at: column(rows, has(Column::UpdatedAt), |row| row.updated_at().unwrap_or(0)),
        size_bytes: column(rows, has(Column::SizeBytes), |row| row.size_bytes().unwrap_or(0)),
        states: column(rows, has(Column::State), R::state),
        shards: column(rows, has(Column::Shard), R::shard),
        shard_addrs,
        attempts: column(rows, has(Column::Attempts), R::attempts),
        last_errors: column(rows, has(Column::LastError), |row| row.last_error().map(str::to_string)),
        last_attempt_at: column(rows, has(Column::LastAttemptAt), |row| row.last_attempt_at().unwrap_or(0)),
    }
}

/// `value` of every row when the column is `wanted`, else nothing.
fn column<R, T>(rows: &[R], wanted: bool, value: impl Fn(&R) -> T) -> Vec<T> {
    if wanted {
        rows.iter().map(value).collect()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: i64, name: &str, shard: u32) -> RepoView {
        RepoView {
            id,
            name: name.to_string(),
            code_host: name.split('/').next().unwrap_or_default().to_string(),
            service_type: "github".to_string(),
            fork: id % 2 == 0,
            stars: Some(id as u32),
            shard,
            shard_addr: format!("gitserver-{shard}:3178"),
            ..RepoView::default()
        }
    }

    #[test]
    fn only_wanted_columns_are_filled_and_each_has_one_entry_per_repo() {
        let mut rows = [view(1, "github.com/a/x", 2), view(2, "gitlab.com/b/y", 0), view(3, "github.com/c/z", 2)];
        rows[2].stars = None;
        rows[2].updated_at = Some(1_700_000_000_000);
        let wanted = [Column::Stars, Column::UpdatedAt, Column::Flags, Column::CodeHost, Column::Shard];
        let batch = build(&rows, Columns::from_wit(&wanted));
        assert_eq!(batch.len, 3);
        assert_eq!(batch.stars, vec![1, 2, 0], "unknown stars are 0");
        assert_eq!(
            batch.flags,
            vec![RepoFlags::STARS_KNOWN, RepoFlags::FORK | RepoFlags::STARS_KNOWN, RepoFlags::UPDATED_AT_KNOWN],
            "…with their known bit clear"
        );
        assert_eq!(batch.code_host_names, vec!["github.com", "gitlab.com"]);
        assert_eq!(batch.code_hosts, vec![0, 1, 0]);
        assert_eq!(batch.shards, vec![2, 0, 2]);
        assert_eq!(batch.shard_addrs, vec!["gitserver-0:3178", "", "gitserver-2:3178"]);
        // Not asked for: empty, whatever the rows hold.
        assert!(batch.ids.is_empty() && batch.names.is_empty() && batch.service_types.is_empty());
        assert!(batch.service_type_names.is_empty() && batch.attempts.is_empty() && batch.last_errors.is_empty());
    }

    #[test]
    fn column_sets_name_their_columns_in_wit_order() {
        let set = Columns::from_wit(&[Column::UpdatedAt, Column::Stars, Column::Stars]);
        assert_eq!(set.names(), vec!["stars", "updated-at"]);
        assert_eq!(Columns::all().names().len(), ALL.len());
        assert!(!Columns::default().has(Column::Id));
    }
}

//! The desired repos of one read, held column by column.
//!
//! A million repos as records cost ~135 B each (a 104-byte record, a name allocation, the
//! allocator's overhead), and a read that changes anything builds the next set beside the last
//! one. As columns they cost their name's bytes plus 21 B (a 4-byte name end, the id, a URL
//! form, `created_at`): the names in one buffer (as a shard's [`NameList`]), the numbers in
//! plain arrays, and the columns a read did not fill (no row has a value other than the
//! default) not held at all. The policy batch and reconcile
//! read a column as one array instead of touching each record's cache lines.

use std::borrow::Cow;
use std::fmt;

use super::{
    CloneUrl, DesiredRepo, ListTooLarge, NameList, NameListBuilder, RecordedState, RepoName, ServiceType, Timestamp,
};

/// `created_at` and `updated_at` when unknown: no timestamp a database returns is this far back
/// (chrono's range ends at ±262,000 years).
const NO_TIME: i64 = i64::MIN;

/// Bits of the `flags` column.
const FORK: u8 = 1;
const ARCHIVED: u8 = 2;
const PRIVATE: u8 = 4;
/// The `stars` column holds a value for the row.
const HAS_STARS: u8 = 8;

/// How a row's clone URL is stored (see [`CloneUrl`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum UrlForm {
    Missing,
    /// `https://{name}`.
    Https,
    /// `https://{name}.git`.
    HttpsGit,
    /// In `other_urls`.
    Other,
}

/// The desired repos, sorted by name, with one value per repo in each column. Rows are read
/// through [`DesiredRow`] handles; owned records ([`DesiredRepo`]) exist only at the edges
/// (a delta's few rows, tests, replay files).
#[derive(Clone, Default)]
pub struct DesiredRepos {
    names: NameList,
    ids: Vec<i64>,
    urls: Vec<UrlForm>,
    /// The clone URLs not made of the name, by row, sorted by row.
    other_urls: Vec<(u32, Box<str>)>,
    /// One up into `service_types`, 0 for none; empty while no row has one.
    service_type: Vec<u16>,
    service_types: Vec<ServiceType>,
    /// Milliseconds, [`NO_TIME`] for none; each empty while no row has one.
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    /// Valid where `flags` has [`HAS_STARS`]; empty while no row has stars.
    stars: Vec<u32>,
    /// [`FORK`], [`ARCHIVED`], [`PRIVATE`], [`HAS_STARS`]; empty while no row sets one.
    flags: Vec<u8>,
    /// Empty while every row is [`RecordedState::NotTracked`].
    recorded: Vec<RecordedState>,
}

/// One row of a [`DesiredRepos`]: a borrowed handle, as cheap to copy as an index.
#[derive(Copy, Clone)]
pub struct DesiredRow<'a> {
    repos: &'a DesiredRepos,
    idx: usize,
}

impl DesiredRepos {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The row at `idx`, if there is one.
    pub fn get(&self, idx: usize) -> Option<DesiredRow<'_>> {
        (idx < self.len()).then_some(DesiredRow { repos: self, idx })
    }

    /// The row at `idx`. Panics past the end, as indexing a slice does.
    pub fn at(&self, idx: usize) -> DesiredRow<'_> {
        assert!(idx < self.len(), "row {idx} of {} desired repos", self.len());
        DesiredRow { repos: self, idx }
    }

    /// Every row, in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = DesiredRow<'_>> + DoubleEndedIterator + Clone + '_ {
        (0..self.len()).map(move |idx| DesiredRow { repos: self, idx })
    }

    /// The name of row `idx`. Panics past the end.
    pub fn name(&self, idx: usize) -> &str {
        self.names.get(idx)
    }

    /// The names, in order (one buffer: cheaper than going row by row).
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter()
    }

    /// Bytes of all names together.
    pub fn name_bytes(&self) -> usize {
        self.names.text_len()
    }

    /// The row named `name`, or where it would go.
    pub fn binary_search(&self, name: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.names.get(mid).cmp(name) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// The row named `name`.
    pub fn find(&self, name: &str) -> Option<DesiredRow<'_>> {
        self.binary_search(name).ok().map(|idx| DesiredRow { repos: self, idx })
    }

    /// The set of `repos`, sorted by name then id (names are expected to be unique; the reader
    /// and `DesiredSet::apply` see to it). For tests, simulations and replay files.
    pub fn from_records(mut repos: Vec<DesiredRepo>) -> DesiredRepos {
        repos.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let mut builder =
            DesiredReposBuilder::with_capacity(repos.len(), repos.iter().map(|r| r.name.as_str().len()).sum());
        for repo in &repos {
            builder.push(repo).expect("test and replay sets hold far less than 4 GiB of names");
        }
        builder.finish_in_order()
    }

    /// The set of `repos` in the order given, sorted or not: for tests of code that does not
    /// rely on the order.
    #[cfg(test)]
    pub(crate) fn in_given_order(repos: &[DesiredRepo]) -> DesiredRepos {
        let mut builder = DesiredReposBuilder::default();
        for repo in repos {
            builder.push(repo).expect("a test set holds far less than 4 GiB of names");
        }
        builder.finish_in_order()
    }

    /// Bytes the columns hold on the heap: what this module's memory claims are checked
    /// against (a unit test pins them).
    pub fn heap_bytes(&self) -> usize {
        self.names.heap_bytes()
            + self.ids.capacity() * size_of::<i64>()
            + self.urls.capacity() * size_of::<UrlForm>()
            + self.other_urls.iter().map(|(_, url)| size_of::<(u32, Box<str>)>() + url.len()).sum::<usize>()
            + self.service_type.capacity() * size_of::<u16>()
            + (self.created_at.capacity() + self.updated_at.capacity()) * size_of::<i64>()
            + self.stars.capacity() * size_of::<u32>()
            + self.flags.capacity()
            + self.recorded.capacity() * size_of::<RecordedState>()
    }
}

impl PartialEq for DesiredRepos {
    fn eq(&self, other: &DesiredRepos) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl fmt::Debug for DesiredRepos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<DesiredRepo>> for DesiredRepos {
    fn from(repos: Vec<DesiredRepo>) -> DesiredRepos {
        DesiredRepos::from_records(repos)
    }
}

impl FromIterator<DesiredRepo> for DesiredRepos {
    fn from_iter<I: IntoIterator<Item = DesiredRepo>>(repos: I) -> DesiredRepos {
        DesiredRepos::from_records(repos.into_iter().collect())
    }
}

impl<'a> DesiredRow<'a> {
    /// The row's index in its set (the index routes and plans use).
    pub fn index(self) -> usize {
        self.idx
    }

    /// `repo.id`.
    pub fn id(self) -> i64 {
        self.repos.ids[self.idx]
    }

    /// The name in gitserver's normal form (see [`RepoName`]).
    pub fn name(self) -> &'a str {
        self.repos.names.get(self.idx)
    }

    /// The name as an owned [`RepoName`] (an allocation: for the few repos a tick acts on).
    pub fn repo_name(self) -> RepoName {
        RepoName::from_normalized(self.name())
    }

    /// The clone URL, if the row has a usable one.
    pub fn clone_url(self) -> Option<Cow<'a, str>> {
        match self.repos.urls[self.idx] {
            UrlForm::Missing => None,
            UrlForm::Https => Some(Cow::Owned(format!("https://{}", self.name()))),
            UrlForm::HttpsGit => Some(Cow::Owned(format!("https://{}.git", self.name()))),
            UrlForm::Other => self.other_url().map(Cow::Borrowed),
        }
    }

    /// Whether the row lacks a usable clone URL (reconcile reports it as a problem).
    pub fn url_missing(self) -> bool {
        self.repos.urls[self.idx] == UrlForm::Missing
    }

    fn other_url(self) -> Option<&'a str> {
        let others = &self.repos.other_urls;
        let row = u32::try_from(self.idx).ok()?;
        others.binary_search_by_key(&row, |(row, _)| *row).ok().map(|at| &*others[at].1)
    }

    /// The clone URL as stored (see [`CloneUrl`]).
    pub fn url(self) -> CloneUrl {
        match self.repos.urls[self.idx] {
            UrlForm::Missing => CloneUrl::Missing,
            UrlForm::Https => CloneUrl::FromName { git: false },
            UrlForm::HttpsGit => CloneUrl::FromName { git: true },
            UrlForm::Other => self.other_url().map_or(CloneUrl::Missing, |url| CloneUrl::Other(url.into())),
        }
    }

    /// `repo.external_service_type`.
    pub fn service_type(self) -> Option<&'a ServiceType> {
        let one_up = self.repos.service_type.get(self.idx).copied().unwrap_or(0);
        one_up.checked_sub(1).and_then(|idx| self.repos.service_types.get(usize::from(idx)))
    }

    pub fn created_at(self) -> Option<Timestamp> {
        time(&self.repos.created_at, self.idx)
    }

    pub fn updated_at(self) -> Option<Timestamp> {
        time(&self.repos.updated_at, self.idx)
    }

    /// `repo.stars` where the schema has it, else `metadata->>'stargazerCount'` when present.
    pub fn stars(self) -> Option<u32> {
        // The column stays empty while every starred row has 0.
        (self.flags() & HAS_STARS != 0).then(|| self.repos.stars.get(self.idx).copied().unwrap_or(0))
    }

    pub fn fork(self) -> bool {
        self.flags() & FORK != 0
    }

    pub fn archived(self) -> bool {
        self.flags() & ARCHIVED != 0
    }

    pub fn private(self) -> bool {
        self.flags() & PRIVATE != 0
    }

    fn flags(self) -> u8 {
        self.repos.flags.get(self.idx).copied().unwrap_or(0)
    }

    pub fn recorded(self) -> RecordedState {
        self.repos.recorded.get(self.idx).copied().unwrap_or(RecordedState::NotTracked)
    }

    /// The host part of the name, for per-code-host limits.
    pub fn code_host(self) -> &'a str {
        let name = self.name();
        name.split('/').next().unwrap_or(name)
    }

    /// The row as an owned record.
    pub fn to_record(self) -> DesiredRepo {
        DesiredRepo {
            id: self.id(),
            name: self.repo_name(),
            url: self.url(),
            service_type: self.service_type().cloned(),
            created_at: self.created_at(),
            updated_at: self.updated_at(),
            stars: self.stars(),
            fork: self.fork(),
            archived: self.archived(),
            private: self.private(),
            recorded: self.recorded(),
        }
    }

    /// Whether `record` holds exactly this row's values (without building a record).
    pub fn holds(self, record: &DesiredRepo) -> bool {
        self.id() == record.id
            && self.name() == record.name.as_str()
            && self.url() == record.url
            && self.service_type().map(ServiceType::as_str) == record.service_type.as_deref()
            && self.created_at() == record.created_at
            && self.updated_at() == record.updated_at
            && self.stars() == record.stars
            && self.fork() == record.fork
            && self.archived() == record.archived
            && self.private() == record.private
            && self.recorded() == record.recorded
    }
}

fn time(column: &[i64], idx: usize) -> Option<Timestamp> {
    column.get(idx).copied().filter(|&millis| millis != NO_TIME).map(Timestamp::from_millis)
}

impl PartialEq for DesiredRow<'_> {
    fn eq(&self, other: &DesiredRow<'_>) -> bool {
        self.id() == other.id()
            && self.name() == other.name()
            && self.url() == other.url()
            && self.service_type().map(ServiceType::as_str) == other.service_type().map(ServiceType::as_str)
            && self.created_at() == other.created_at()
            && self.updated_at() == other.updated_at()
            && self.stars() == other.stars()
            && self.flags() == other.flags()
            && self.recorded() == other.recorded()
    }
}

impl fmt::Debug for DesiredRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_record(), f)
    }
}

/// Builds a [`DesiredRepos`] a row at a time: in name order ([`finish_in_order`]) or in any
/// order, sorted at the end ([`finish_sorted`]).
///
/// [`finish_in_order`]: DesiredReposBuilder::finish_in_order
/// [`finish_sorted`]: DesiredReposBuilder::finish_sorted
#[derive(Default)]
pub struct DesiredReposBuilder {
    names: NameListBuilder,
    repos: DesiredRepos,
    /// The last service type looked up and its index: rows come in runs of one type.
    last_service_type: Option<(ServiceType, u16)>,
}

/// What a clashing row became when [`DesiredReposBuilder::finish_sorted`] kept the lower id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameClash {
    /// The row left out.
    pub id: i64,
    pub name: RepoName,
    /// The row kept.
    pub kept_id: i64,
}

impl DesiredReposBuilder {
    /// Room for `rows` rows whose names take `name_bytes` in all.
    pub fn with_capacity(rows: usize, name_bytes: usize) -> DesiredReposBuilder {
        let mut builder = DesiredReposBuilder {
            names: NameListBuilder::with_capacity(rows, name_bytes),
            ..DesiredReposBuilder::default()
        };
        builder.repos.ids.reserve(rows);
        builder.repos.urls.reserve(rows);
        builder
    }

    pub fn len(&self) -> usize {
        self.repos.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.repos.ids.is_empty()
    }

    /// The name of the last row pushed.
    pub fn last_name(&self) -> Option<&str> {
        self.names.last()
    }

    /// The id of the last row pushed.
    pub fn last_id(&self) -> Option<i64> {
        self.repos.ids.last().copied()
    }

    /// Appends `repo`, unless the names would pass the 4 GiB a `u32` offset addresses.
    pub fn push(&mut self, repo: &DesiredRepo) -> Result<(), ListTooLarge> {
        self.push_values(DesiredValues {
            id: repo.id,
            name: repo.name.as_str(),
            url: &repo.url,
            service_type: repo.service_type.as_ref(),
            created_at: repo.created_at,
            updated_at: repo.updated_at,
            stars: repo.stars,
            fork: repo.fork,
            archived: repo.archived,
            private: repo.private,
            recorded: repo.recorded,
        })
    }

    /// Appends a row of another set.
    pub fn push_row(&mut self, row: DesiredRow<'_>) -> Result<(), ListTooLarge> {
        self.push_values(DesiredValues {
            id: row.id(),
            name: row.name(),
            url: &row.url(),
            service_type: row.service_type(),
            created_at: row.created_at(),
            updated_at: row.updated_at(),
            stars: row.stars(),
            fork: row.fork(),
            archived: row.archived(),
            private: row.private(),
            recorded: row.recorded(),
        })
    }

    /// Appends one row's values, without a record: what a full read does a million times.
    pub fn push_values(&mut self, values: DesiredValues<'_>) -> Result<(), ListTooLarge> {
        let row = self.len();
        self.names.try_push(values.name)?;
        let repos = &mut self.repos;
        repos.ids.push(values.id);
        let form = match values.url {
            CloneUrl::Missing => UrlForm::Missing,
            CloneUrl::FromName { git: false } => UrlForm::Https,
            CloneUrl::FromName { git: true } => UrlForm::HttpsGit,
            CloneUrl::Other(url) => match u32::try_from(row) {
                Ok(row) => {
                    repos.other_urls.push((row, url.clone()));
                    UrlForm::Other
                }
                Err(_) => UrlForm::Missing,
            },
        };
        repos.urls.push(form);
        let service_type = values.service_type.map_or(0, |kind| self.service_type_index(kind));
        let repos = &mut self.repos;
        push_lazily(&mut repos.service_type, row, service_type, 0);
        push_lazily(&mut repos.created_at, row, values.created_at.map_or(NO_TIME, Timestamp::as_millis), NO_TIME);
        push_lazily(&mut repos.updated_at, row, values.updated_at.map_or(NO_TIME, Timestamp::as_millis), NO_TIME);
        push_lazily(&mut repos.stars, row, values.stars.unwrap_or(0), 0);
        let flags = flag_bits(values.fork, values.archived, values.private)
            | if values.stars.is_some() { HAS_STARS } else { 0 };
        push_lazily(&mut repos.flags, row, flags, 0);
        push_lazily(&mut repos.recorded, row, values.recorded, RecordedState::NotTracked);
        Ok(())
    }

    /// One up into the table of service types; 0 (unknown) past 65,535 distinct types.
    fn service_type_index(&mut self, kind: &ServiceType) -> u16 {
        if let Some((last, idx)) = &self.last_service_type {
            if last.ptr_eq(kind) || last.as_str() == kind.as_str() {
                return *idx;
            }
        }
        let table = &mut self.repos.service_types;
        let at = match table.iter().position(|known| known.as_str() == kind.as_str()) {
            Some(at) => at,
            None => {
                table.push(kind.clone());
                table.len() - 1
            }
        };
        let Ok(one_up) = u16::try_from(at + 1) else {
            table.pop();
            return 0;
        };
        self.last_service_type = Some((kind.clone(), one_up));
        one_up
    }

    /// The set, for rows pushed in name order.
    pub fn finish_in_order(self) -> DesiredRepos {
        let DesiredReposBuilder { names, mut repos, .. } = self;
        repos.names = names.finish();
        repos.shrink_to_fit();
        repos
    }

    /// The set, sorted by name; of rows with one name, the lowest id is kept and the others
    /// are returned. Sorts on every core from `parallel_from` rows.
    pub fn finish_sorted(self, parallel_from: usize) -> (DesiredRepos, Vec<NameClash>) {
        let repos = self.finish_in_order();
        let mut order = name_order(&repos, parallel_from);
        let mut clashes = Vec::new();
        order.dedup_by(|later, kept| {
            let (later, kept) = (*later as usize, *kept as usize);
            if repos.names.get(later) != repos.names.get(kept) {
                return false;
            }
            clashes.push(NameClash {
                id: repos.ids[later],
                name: RepoName::from_normalized(repos.names.get(later)),
                kept_id: repos.ids[kept],
            });
            true
        });
        (repos.into_permuted(&order), clashes)
    }
}

/// The rows of `repos` by name, then id.
///
/// Sorting a million indices by the names they point to spends its time fetching names from
/// all over the buffer. So each row is sorted with a key held beside its index: the 16 bytes of
/// its name that follow the prefix every name shares (`github.com/` in most deployments), as
/// two big-endian numbers. Keys compare as the names do (Postgres text holds no NUL byte, so the
/// zero padding of a short name sorts it first, as a prefix sorts before a longer name), so only
/// rows whose keys tie are compared by name. The keyed rows are freed before the caller copies
/// the columns into order, which is where the read peaks.
fn name_order(repos: &DesiredRepos, parallel_from: usize) -> Vec<u32> {
    let names = &repos.names;
    let shared = match names.iter().next() {
        Some(first) => names.iter().fold(first.len(), |shared, name| {
            first.as_bytes()[..shared].iter().zip(name.as_bytes()).take_while(|(a, b)| a == b).count()
        }),
        None => 0,
    };
    let key = |name: &str| {
        let rest = name.as_bytes().get(shared..).unwrap_or_default();
        let mut key = [0u8; 16];
        let len = rest.len().min(16);
        key[..len].copy_from_slice(&rest[..len]);
        u128::from_be_bytes(key)
    };
    let rows = u32::try_from(repos.len()).unwrap_or(u32::MAX);
    // (high half, low half, row): 8-byte alignment, where a `u128` would pad each to 32 bytes.
    let mut keyed: Vec<(u64, u64, u32)> = names
        .iter()
        .zip(0..rows)
        .map(|(name, row)| {
            let key = key(name);
            ((key >> 64) as u64, key as u64, row)
        })
        .collect();
    let by_key_name_id = |a: &(u64, u64, u32), b: &(u64, u64, u32)| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
            let (a, b) = (a.2 as usize, b.2 as usize);
            names.get(a).cmp(names.get(b)).then(repos.ids[a].cmp(&repos.ids[b]))
        })
    };
    if keyed.len() >= parallel_from {
        rayon::slice::ParallelSliceMut::par_sort_unstable_by(&mut keyed[..], by_key_name_id);
    } else {
        keyed.sort_unstable_by(by_key_name_id);
    }
    keyed.into_iter().map(|(_, _, row)| row).collect()
}

/// One row's values, borrowed, as [`DesiredReposBuilder::push_values`] takes them: the fields
/// of a [`DesiredRepo`] without owning a name.
#[derive(Copy, Clone, Debug)]
pub struct DesiredValues<'a> {
    pub id: i64,
    /// In gitserver's normal form (see [`RepoName`]).
    pub name: &'a str,
    pub url: &'a CloneUrl,
    pub service_type: Option<&'a ServiceType>,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    pub stars: Option<u32>,
    pub fork: bool,
    pub archived: bool,
    pub private: bool,
    pub recorded: RecordedState,
}

fn flag_bits(fork: bool, archived: bool, private: bool) -> u8 {
    (if fork { FORK } else { 0 }) | (if archived { ARCHIVED } else { 0 }) | (if private { PRIVATE } else { 0 })
}

/// Pushes `value` as row `row` of a column that stays empty while every row is `default`.
fn push_lazily<T: Copy + PartialEq>(column: &mut Vec<T>, row: usize, value: T, default: T) {
    if column.is_empty() {
        if value == default {
            return;
        }
        column.reserve(row + 1);
        column.resize(row, default);
    }
    column.push(value);
}

impl DesiredRepos {
    fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        self.urls.shrink_to_fit();
        self.other_urls.shrink_to_fit();
        self.service_type.shrink_to_fit();
        self.created_at.shrink_to_fit();
        self.updated_at.shrink_to_fit();
        self.stars.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.recorded.shrink_to_fit();
    }

    /// The rows `order` names, in that order. Column by column, each old one freed before the
    /// next is copied: the set is never held twice over.
    fn into_permuted(mut self, order: &[u32]) -> DesiredRepos {
        let names = {
            let bytes = order.iter().map(|&row| self.names.get(row as usize).len()).sum();
            let mut names = NameListBuilder::with_capacity(order.len(), bytes);
            for &row in order {
                names.push(self.names.get(row as usize));
            }
            names.finish()
        };
        self.names = names;
        fn permute<T: Copy>(column: &mut Vec<T>, order: &[u32]) {
            if !column.is_empty() {
                *column = order.iter().map(|&row| column[row as usize]).collect();
            }
        }
        permute(&mut self.ids, order);
        permute(&mut self.urls, order);
        permute(&mut self.service_type, order);
        permute(&mut self.created_at, order);
        permute(&mut self.updated_at, order);
        permute(&mut self.stars, order);
        permute(&mut self.flags, order);
        permute(&mut self.recorded, order);
        if !self.other_urls.is_empty() {
            let mut others = std::mem::take(&mut self.other_urls);
            others.sort_unstable_by_key(|(row, _)| *row);
            let mut moved: Vec<(u32, Box<str>)> = Vec::with_capacity(others.len());
            for (new_row, &old_row) in order.iter().enumerate() {
                if let Ok(at) = others.binary_search_by_key(&old_row, |(row, _)| *row) {
                    if let Ok(new_row) = u32::try_from(new_row) {
                        moved.push((new_row, std::mem::take(&mut others[at].1)));
                    }
                }
            }
            self.other_urls = moved;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CloneStatus, RecordedShard};

    fn record(id: i64, name: &str, url: &str) -> DesiredRepo {
        DesiredRepo::new(id, RepoName::normalize(name).expect("a name"), url)
    }

    #[test]
    fn every_value_reads_back_as_pushed_and_unused_columns_take_no_room() {
        let github = ServiceType::new("github");
        let mut full = record(7, "github.com/a/full", "git@github.com:a/full.git");
        full.service_type = Some(github.clone());
        full.created_at = Some(Timestamp::from_millis(-5));
        full.updated_at = Some(Timestamp::from_millis(9));
        full.stars = Some(0);
        full.fork = true;
        full.private = true;
        full.recorded = RecordedState::Status { status: Some(CloneStatus::Cloning), shard: RecordedShard::new(2) };
        let plain = record(3, "github.com/a/plain", "https://github.com/a/plain.git");
        let missing = DesiredRepo { url: CloneUrl::Missing, ..record(5, "gitlab.com/b/none", "") };
        let records = vec![missing.clone(), full.clone(), plain.clone()];
        let set = DesiredRepos::from_records(records.clone());

        let back: Vec<DesiredRepo> = set.iter().map(DesiredRow::to_record).collect();
        assert_eq!(back, vec![full.clone(), plain.clone(), missing.clone()], "sorted by name, values intact");
        assert!(set.iter().zip([&full, &plain, &missing]).all(|(row, record)| row.holds(record)));
        assert_eq!(set.find("github.com/a/plain").map(DesiredRow::id), Some(3));
        assert_eq!(set.binary_search("github.com/a/g"), Err(1));
        assert_eq!(set.at(2).code_host(), "gitlab.com");
        assert!(set.at(2).url_missing() && set.at(2).clone_url().is_none());
        assert_eq!(set.at(1).clone_url().as_deref(), Some("https://github.com/a/plain.git"));

        let bare = DesiredRepos::from_records(vec![plain.clone(), record(1, "github.com/z/z", "")]);
        assert!(bare.updated_at.is_empty() && bare.stars.is_empty() && bare.flags.is_empty());
        assert!(bare.recorded.is_empty() && bare.service_type.is_empty() && bare.created_at.is_empty());
        assert_eq!(bare.at(0).stars(), None);
        assert!(!bare.at(0).holds(&full));
    }

    /// The memory claim of the module documentation: a read without policy columns costs each
    /// repo its name and 21 bytes (a 4-byte name end, id, URL form, `created_at`); the
    /// policy columns add 2 (service type), 8 (`updated_at`), 4 (stars) and 1 (flags).
    #[test]
    fn a_repo_costs_its_name_and_a_few_words() {
        let n = 10_000;
        let repo = |i: usize| {
            let mut repo = record(i as i64, &format!("github.com/o/r-{i}"), &format!("https://github.com/o/r-{i}"));
            repo.created_at = Some(Timestamp::from_millis(i as i64));
            repo
        };
        let minimal: DesiredRepos = (0..n).map(repo).collect();
        assert_eq!(minimal.heap_bytes(), minimal.name_bytes() + n * 21);
        let with_policy_columns: DesiredRepos = (0..n)
            .map(|i| DesiredRepo {
                service_type: Some(ServiceType::new("github")),
                updated_at: Some(Timestamp::from_millis(1)),
                stars: Some(3),
                ..repo(i)
            })
            .collect();
        assert_eq!(with_policy_columns.heap_bytes(), with_policy_columns.name_bytes() + n * (21 + 2 + 8 + 4 + 1));
    }

    /// The keyed sort against a plain sort by name: shared prefixes, names shorter than the
    /// key, names that tie on the key, names that are prefixes of others, one name repeated.
    #[test]
    fn the_keyed_order_is_the_order_of_the_names() {
        let mut names: Vec<String> = vec![
            "github.com/a".into(),
            "github.com/ab".into(),
            "github.com/abcdefgh".into(),
            "github.com/abcdefgh/x".into(),
            "github.com/abcdefgh/w".into(),
            "github.com/abcdefghi".into(),
            "github.com/B".into(),
            "github.com/ü/x".into(),
            "github.com/abcdefgh/w".into(),
            "github.com/abcdefghijklmnopq".into(),
            "github.com/abcdefghijklmnop".into(),
            "github.com/abcdefghijklmnopqr/s".into(),
        ];
        names.extend((0..300).map(|i| format!("github.com/org-{}/repo-{}", i % 7, (i * 7_919) % 300)));
        for parallel_from in [1, usize::MAX] {
            let mut builder = DesiredReposBuilder::default();
            for (id, name) in names.iter().enumerate().rev() {
                builder.push(&DesiredRepo::new(id as i64, RepoName::from_normalized(name.as_str()), "")).expect("room");
            }
            let (set, clashes) = builder.finish_sorted(parallel_from);
            let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(set.names().collect::<Vec<_>>(), want);
            assert_eq!(clashes.len(), names.len() - want.len());
        }
        let one = DesiredRepos::from_records(vec![record(1, "x/y", "")]);
        assert_eq!(name_order(&one, 1), vec![0]);
        assert!(name_order(&DesiredRepos::default(), 1).is_empty());
    }

    #[test]
    fn an_unsorted_build_sorts_keeps_the_lower_id_and_moves_every_column_with_its_row() {
        let mut builder = DesiredReposBuilder::default();
        let mut rows = Vec::new();
        for id in (0..200).rev() {
            let mut repo = record(id, &format!("github.com/o/r-{}", id % 150), &format!("https://x/{id}"));
            repo.stars = (id % 3 == 0).then_some(id as u32);
            repo.archived = id % 5 == 0;
            repo.created_at = Some(Timestamp::from_millis(id * 10));
            builder.push(&repo).expect("room");
            rows.push(repo);
        }
        let (set, clashes) = builder.finish_sorted(50);
        assert_eq!(set.len(), 150);
        assert_eq!(clashes.len(), 50);
        assert!(clashes.iter().all(|c| c.kept_id == c.id - 150));
        assert!(set.names().collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]));
        for row in set.iter() {
            let original = rows.iter().find(|r| r.id == row.id()).expect("a pushed row");
            assert!(row.holds(original), "{row:?} against {original:?}");
            assert!(row.id() < 150, "the lower id wins");
        }
    }
}

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

use super::{CloneUrl, DesiredRepo, ListTooLarge, NameList, RecordedState, RepoName, ServiceType, Timestamp};

mod build;
#[cfg(test)]
mod tests;

pub use build::{DesiredReposBuilder, DesiredValues, NameClash, Router, SortedRepos};

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
    pub fn try_from_records(mut repos: Vec<DesiredRepo>) -> Result<DesiredRepos, ListTooLarge> {
        repos.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let mut builder =
            DesiredReposBuilder::with_capacity(repos.len(), repos.iter().map(|r| r.name.as_str().len()).sum());
        for repo in &repos {
            builder.push(repo)?;
        }
        Ok(builder.finish_in_order())
    }

    /// [`DesiredRepos::try_from_records`] for sets built in code (tests, simulations, one
    /// record at a time), whose names are far below 4 GiB; a set read from a file uses the
    /// fallible one.
    pub fn from_records(repos: Vec<DesiredRepo>) -> DesiredRepos {
        DesiredRepos::try_from_records(repos).expect("a set built in code holds far less than 4 GiB of names")
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

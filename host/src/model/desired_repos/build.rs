//! Building a [`DesiredRepos`]: rows pushed in name order, or in any order and sorted at the
//! end by a permutation applied one column at a time, so the set is never held twice.

use super::{DesiredRepos, DesiredRow, UrlForm, ARCHIVED, FORK, HAS_STARS, NO_TIME, PRIVATE};
use crate::model::{
    CloneUrl, DesiredRepo, ListTooLarge, NameList, NameListBuilder, RecordedState, RepoName, ServiceType, ShardIdx,
    Timestamp,
};

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
    /// Routes each row as it is pushed, when set ([`DesiredReposBuilder::route_with`]).
    router: Option<Router>,
    /// `routes[i]` owns row `i`, when routed.
    routes: Vec<ShardIdx>,
}

/// A row's owning shard from its name: what [`DesiredReposBuilder::route_with`] calls per row.
pub type Router = Box<dyn Fn(&str) -> ShardIdx + Send + Sync>;

/// A set sorted by [`DesiredReposBuilder::finish_sorted`].
#[derive(Debug)]
pub struct SortedRepos {
    pub repos: DesiredRepos,
    /// The rows left out because a row with a lower id had their name.
    pub clashes: Vec<NameClash>,
    /// `routes[i]` owns `repos[i]`; empty unless the builder routed its rows.
    pub routes: Vec<ShardIdx>,
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
        let mut builder = DesiredReposBuilder::default();
        builder.reserve(rows, name_bytes);
        builder
    }

    /// Room for `rows` more rows whose names take `name_bytes` more in all.
    pub fn reserve(&mut self, rows: usize, name_bytes: usize) {
        self.names.reserve(rows, name_bytes);
        self.repos.ids.reserve(rows);
        self.repos.urls.reserve(rows);
        if self.router.is_some() {
            self.routes.reserve(rows);
        }
    }

    /// Routes every row as it is pushed, so a full read's md5 per name runs while the repo DB
    /// is still sending rows (the reader waits on the server most of the time) instead of
    /// after the last one; [`DesiredReposBuilder::finish_sorted`] returns the routes in the
    /// set's order. Set before the first row: a builder that holds rows already returns no
    /// routes.
    pub fn route_with(&mut self, router: Router) {
        if self.is_empty() {
            self.routes.reserve(self.repos.ids.capacity());
            self.router = Some(router);
        }
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
        if let Some(route) = &self.router {
            self.routes.push(route(values.name));
        }
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
    pub fn finish_sorted(mut self, parallel_from: usize) -> SortedRepos {
        let routes = std::mem::take(&mut self.routes);
        let repos = self.finish_in_order();
        let order = name_order(&repos, routes, parallel_from);
        let clashes = order
            .left_out
            .iter()
            .map(|&(row, kept)| NameClash {
                id: repos.ids[row as usize],
                name: RepoName::from_normalized(repos.names.get(row as usize)),
                kept_id: repos.ids[kept as usize],
            })
            .collect();
        SortedRepos { repos: repos.into_permuted(order.rows), clashes, routes: order.routes }
    }
}

/// The rows of a set by name, then id, as [`name_order`] finds them.
#[derive(Debug, Default, PartialEq)]
pub(super) struct NameOrder {
    /// The rows kept, in name order: of rows with one name, the lowest id.
    pub rows: Vec<u32>,
    /// Their routes, in the same order: empty unless routes were given.
    pub routes: Vec<ShardIdx>,
    /// (row left out, row kept) for each row whose name a kept row has.
    pub left_out: Vec<(u32, u32)>,
}

/// A row as the sort by name sees it: the 16 bytes of its name after the prefix every name
/// shares, as two big-endian numbers (where a `u128` would pad each entry to 32 bytes), its
/// row and its route.
#[derive(Copy, Clone)]
struct Keyed {
    high: u64,
    low: u64,
    row: u32,
    route: ShardIdx,
}

/// The rows of `repos` by name, then id; `routes` (one per row, or empty) follow their rows.
///
/// Sorting a million indices by the names they point to spends its time fetching names from
/// all over the buffer. So each row is sorted with a key held beside its index: the 16 bytes of
/// its name that follow the prefix every name shares (`github.com/` in most deployments). Keys
/// compare as the names do (Postgres text holds no NUL byte, so the zero padding of a short
/// name sorts it first, as a prefix sorts before a longer name), so only rows whose keys tie
/// are compared by name, in the sort and when rows of one name are left out. The keyed rows
/// are freed before the caller copies the columns into order, which is where the read peaks.
pub(super) fn name_order(repos: &DesiredRepos, routes: Vec<ShardIdx>, parallel_from: usize) -> NameOrder {
    use rayon::prelude::*;
    let names = &repos.names;
    let parallel = names.len() >= parallel_from;
    let shared = shared_prefix(names, parallel);
    let routed = !routes.is_empty() && routes.len() == names.len();
    let keyed_row = |row: u32| {
        let rest = names.get(row as usize).as_bytes().get(shared..).unwrap_or_default();
        let mut key = [0u8; 16];
        let len = rest.len().min(16);
        key[..len].copy_from_slice(&rest[..len]);
        let key = u128::from_be_bytes(key);
        let route = if routed { routes[row as usize] } else { 0 };
        Keyed { high: (key >> 64) as u64, low: key as u64, row, route }
    };
    let rows = u32::try_from(repos.len()).unwrap_or(u32::MAX);
    let mut keyed: Vec<Keyed> =
        if parallel { (0..rows).into_par_iter().map(keyed_row).collect() } else { (0..rows).map(keyed_row).collect() };
    drop(routes);
    let same_name = |a: &Keyed, b: &Keyed| {
        (a.high, a.low) == (b.high, b.low) && names.get(a.row as usize) == names.get(b.row as usize)
    };
    let by_key_name_id = |a: &Keyed, b: &Keyed| {
        (a.high, a.low).cmp(&(b.high, b.low)).then_with(|| {
            let (a, b) = (a.row as usize, b.row as usize);
            names.get(a).cmp(names.get(b)).then(repos.ids[a].cmp(&repos.ids[b]))
        })
    };
    if parallel {
        keyed.par_sort_unstable_by(by_key_name_id);
    } else {
        keyed.sort_unstable_by(by_key_name_id);
    }
    let mut order = NameOrder {
        rows: Vec::with_capacity(keyed.len()),
        routes: Vec::with_capacity(if routed { keyed.len() } else { 0 }),
        left_out: Vec::new(),
    };
    let mut kept: Option<&Keyed> = None;
    for entry in &keyed {
        if let Some(kept) = kept.filter(|kept| same_name(kept, entry)) {
            order.left_out.push((entry.row, kept.row));
            continue;
        }
        order.rows.push(entry.row);
        if routed {
            order.routes.push(entry.route);
        }
        kept = Some(entry);
    }
    order
}

/// The length of the prefix every name shares (0 for no names).
fn shared_prefix(names: &NameList, parallel: bool) -> usize {
    use rayon::prelude::*;
    if names.is_empty() {
        return 0;
    }
    let first = names.get(0).as_bytes();
    let within = |shared: usize, row: usize| {
        first[..shared].iter().zip(names.get(row).as_bytes()).take_while(|(a, b)| a == b).count()
    };
    if parallel {
        (1..names.len()).into_par_iter().fold(|| first.len(), within).reduce(|| first.len(), usize::min)
    } else {
        (1..names.len()).fold(first.len(), within)
    }
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
    /// next is copied: the set is never held twice over. The names come last, so `order`
    /// itself can become their new ends: the copy of the names, the largest column and where a
    /// full read peaks, has one index array beside it rather than two.
    fn into_permuted(mut self, order: Vec<u32>) -> DesiredRepos {
        fn permute<T: Copy>(column: &mut Vec<T>, order: &[u32]) {
            if !column.is_empty() {
                *column = order.iter().map(|&row| column[row as usize]).collect();
            }
        }
        permute(&mut self.ids, &order);
        permute(&mut self.urls, &order);
        permute(&mut self.service_type, &order);
        permute(&mut self.created_at, &order);
        permute(&mut self.updated_at, &order);
        permute(&mut self.stars, &order);
        permute(&mut self.flags, &order);
        permute(&mut self.recorded, &order);
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
        // The new text is no longer than the old (the same names, less any left out), whose
        // ends are u32.
        let mut text = String::with_capacity(self.names.text_len());
        let mut ends = order;
        for slot in &mut ends {
            text.push_str(self.names.get(*slot as usize));
            *slot = u32::try_from(text.len()).expect("the names' text is no longer than before");
        }
        self.names = NameList::from_parts(text, ends);
        self
    }
}

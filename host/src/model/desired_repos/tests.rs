//! Tests of the columnar desired set: values, memory, the sorted build.
use super::build::name_order;
use super::*;
use crate::model::{CloneStatus, RecordedShard, ShardIdx};

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
        let SortedRepos { repos: set, clashes, routes } = builder.finish_sorted(parallel_from);
        assert!(routes.is_empty(), "no routes without a router");
        let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(set.names().collect::<Vec<_>>(), want);
        assert_eq!(clashes.len(), names.len() - want.len());
    }
    let one = DesiredRepos::from_records(vec![record(1, "x/y", "")]);
    assert_eq!(name_order(&one, Vec::new(), 1).rows, vec![0]);
    assert_eq!(name_order(&DesiredRepos::default(), Vec::new(), 1), Default::default());
}

/// A route that differs from name to name, to see that each stays with its row.
fn route_of(name: &str) -> ShardIdx {
    name.bytes().fold(7u16, |hash, byte| hash.wrapping_mul(31).wrapping_add(u16::from(byte)))
}

#[test]
fn an_unsorted_build_sorts_keeps_the_lower_id_and_moves_every_column_with_its_row() {
    let mut builder = DesiredReposBuilder::default();
    builder.route_with(Box::new(route_of));
    let mut rows = Vec::new();
    for id in (0..200).rev() {
        let mut repo = record(id, &format!("github.com/o/r-{}", id % 150), &format!("https://x/{id}"));
        repo.stars = (id % 3 == 0).then_some(id as u32);
        repo.archived = id % 5 == 0;
        repo.created_at = Some(Timestamp::from_millis(id * 10));
        builder.push(&repo).expect("room");
        rows.push(repo);
    }
    let SortedRepos { repos: set, clashes, routes } = builder.finish_sorted(50);
    assert_eq!(set.len(), 150);
    assert_eq!(routes, set.names().map(route_of).collect::<Vec<_>>(), "each route follows its row");
    assert_eq!(clashes.len(), 50);
    assert!(clashes.iter().all(|c| c.kept_id == c.id - 150));
    assert!(set.names().collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]));
    for row in set.iter() {
        let original = rows.iter().find(|r| r.id == row.id()).expect("a pushed row");
        assert!(row.holds(original), "{row:?} against {original:?}");
        assert!(row.id() < 150, "the lower id wins");
    }
}

//! Properties of name normalisation, on arbitrary text and on spellings built by the rules of
//! DESIGN.md §5 (a trailing `.git`, unclean paths, upper-case hosts, upper-case GitHub names).

use proptest::prelude::*;

use crate::{canonical_repo_name, is_canonical_repo_name, normalize_repo_name};

/// Text that exercises every rule: path syntax, `.git`, hosts, upper case outside ASCII
/// (final sigma, dotted capital I, the Kelvin sign), NUL and arbitrary characters.
fn raw_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(".git".to_string()),
        Just(".GIT".to_string()),
        Just("GitHub.com".to_string()),
        Just("github.com".to_string()),
        Just("GitLab.COM".to_string()),
        Just("ΣΑΣ".to_string()),
        Just("İ".to_string()),
        Just("\u{212A}".to_string()),
        Just("\0".to_string()),
        "[a-zA-Z0-9._-]{1,6}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// A name already in normal form: lower-case host, clean segments, no `.git` at the end.
fn normal_name() -> impl Strategy<Value = (String, Vec<String>)> {
    let host = prop_oneof![Just("github.com".to_string()), Just("gitlab.example.com".to_string()), "[a-z0-9.-]{1,12}"]
        .prop_filter("a clean segment", |h| h != "." && h != ".." && !h.ends_with(".git"));
    let segment = "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,10}".prop_filter("no .git ending", |s| !s.ends_with(".git"));
    (host, prop::collection::vec(segment, 1..4)).prop_map(|(host, mut segments)| {
        if host == "github.com" {
            segments.iter_mut().for_each(|s| *s = s.to_ascii_lowercase());
        }
        (host, segments)
    })
}

/// A spelling of `host/segments` that gitserver maps to the same name, picked by `choices`.
fn respell(host: &str, segments: &[String], choices: &[u8]) -> String {
    let pick = |i: usize| choices.get(i).copied().unwrap_or(0);
    let upper = |text: &str, bits: u8| -> String {
        text.chars()
            .enumerate()
            .map(|(i, c)| if (bits >> (i % 8)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect()
    };
    let mut out = String::new();
    if pick(0) & 1 == 1 {
        out.push('/');
    }
    out.push_str(&upper(host, pick(1)));
    for (i, segment) in segments.iter().enumerate() {
        let c = pick(2 + i);
        out.push_str(if c & 1 == 1 { "//" } else { "/" });
        if c & 2 == 2 {
            out.push_str("./");
        }
        if c & 4 == 4 {
            out.push_str("detour/../");
        }
        // Only GitHub is case-insensitive beyond the host.
        if host == "github.com" {
            out.push_str(&upper(segment, c >> 3));
        } else {
            out.push_str(segment);
        }
    }
    if pick(7) & 1 == 1 {
        out.push('/');
    } else if pick(7) & 2 == 2 {
        out.push_str(".git");
    }
    out
}

fn host_of(name: &str) -> Option<&str> {
    name.split_once('/').map(|(host, _)| host)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalising_never_panics_and_gives_a_clean_path(raw in raw_name()) {
        let normal = normalize_repo_name(&raw);
        prop_assert!(!normal.starts_with('/'), "{normal:?}");
        prop_assert!(!normal.ends_with('/'), "{normal:?}");
        prop_assert!(!normal.contains("//"), "{normal:?}");
        prop_assert!(normal.split('/').all(|s| s != "." && s != ".."), "{normal:?}");
        if let Some(host) = host_of(&normal) {
            prop_assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "host of {normal:?}");
            if host == "github.com" {
                prop_assert!(!normal.bytes().any(|b| b.is_ascii_uppercase()), "{normal:?}");
            }
        }
    }

    /// The name clonekeeper compares on is one a shard stores unchanged when sent it.
    #[test]
    fn canonical_name_is_a_fixed_point_of_the_shards_normalisation(raw in raw_name()) {
        let canonical = canonical_repo_name(&raw);
        prop_assert_eq!(normalize_repo_name(&canonical), canonical.clone());
        prop_assert_eq!(canonical_repo_name(&canonical), canonical.clone());
        prop_assert!(!canonical.ends_with(".git"), "{canonical:?}");
        // It departs from gitserver's single pass only where that pass is unstable.
        let once = normalize_repo_name(&raw);
        if normalize_repo_name(&once) == once {
            prop_assert_eq!(canonical, once);
        }
    }

    /// The reader's shortcut: a name it takes as canonical without normalising is canonical,
    /// and every canonical name with no upper-case letter is taken.
    #[test]
    fn the_canonical_check_agrees_with_normalising(raw in raw_name()) {
        let canonical = canonical_repo_name(&raw);
        if is_canonical_repo_name(&raw) {
            prop_assert_eq!(&canonical, &raw);
        }
        if !canonical.is_empty() && !canonical.bytes().any(|b| b.is_ascii_uppercase()) {
            prop_assert!(is_canonical_repo_name(&canonical), "{canonical:?} is canonical");
        }
    }

    #[test]
    fn spellings_that_differ_by_the_rules_normalise_alike(
        (host, segments) in normal_name(),
        choices in prop::collection::vec(any::<u8>(), 8),
    ) {
        let normal = format!("{host}/{}", segments.join("/"));
        prop_assert_eq!(normalize_repo_name(&normal), normal.clone(), "already normal");
        let spelling = respell(&host, &segments, &choices);
        prop_assert_eq!(normalize_repo_name(&spelling), normal.clone(), "spelling {:?}", spelling);
        prop_assert_eq!(canonical_repo_name(&spelling), normal, "spelling {:?}", spelling);
    }

    /// Outside GitHub only the host is case-insensitive: upper case in the path survives.
    #[test]
    fn paths_outside_github_keep_their_case(segment in "[a-z][a-zA-Z0-9]{0,8}") {
        let name = format!("GitLab.com/Org/{segment}");
        prop_assert_eq!(normalize_repo_name(&name), format!("gitlab.com/Org/{segment}"));
    }
}

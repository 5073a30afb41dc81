//! gitserver's repository-name normalisation (`protocol.NormalizeRepo`).
//!
//! Every gitserver normalises a name before it becomes a directory, so `/list?cloned` returns
//! normalised names while the repo DB may hold other spellings. Compare on normalised names,
//! always; route on them too (the md5 of the normalised name picks the shard).

/// Normalises a repository name the way gitserver does: strip one trailing `.git`, clean the
/// path as a `/`-rooted path (`a//b/../c` → `a/c`), lower-case the host (the first segment),
/// and lower-case the whole name for `github.com`. Names without any ASCII upper-case letter or
/// without a `/` are not lower-cased at all, exactly as in Go.
///
/// One pass is what a shard applies to a name it receives; it is not always stable
/// (`a.git.git` → `a.git`). A client that sends names back needs [`canonical_repo_name`].
pub fn normalize_repo_name(name: &str) -> String {
    let trimmed = name.strip_suffix(".git").unwrap_or(name);
    let cleaned = clean_rooted(trimmed);
    if !cleaned.bytes().any(|b| b.is_ascii_uppercase()) {
        return cleaned;
    }
    let Some(slash) = cleaned.find('/') else {
        return cleaned;
    };
    let host = to_lower_like_go(&cleaned[..slash]);
    let path = &cleaned[slash..];
    if host == "github.com" {
        format!("{host}{}", to_lower_like_go(path))
    } else {
        format!("{host}{path}")
    }
}

/// [`normalize_repo_name`] repeated until it no longer changes the name: the form a shard
/// leaves alone.
///
/// clonekeeper sends its normal form to the shard, which normalises it once more before it
/// becomes a directory. For a name whose single pass is unstable (`x/y.git.git`,
/// `github.com/a/B.GIT` → `github.com/a/b.git`), the shard would store and list another name
/// than the one compared on, and the clone would never be confirmed. For every other name this
/// is the single pass.
pub fn canonical_repo_name(name: &str) -> String {
    let mut normal = normalize_repo_name(name);
    // Only a result that ends in `.git` can change again: the cleaned path is clean and the
    // lower-casing is idempotent. Each further pass removes at least those four bytes.
    while normal.ends_with(".git") {
        normal = normalize_repo_name(&normal);
    }
    normal
}

/// Whether `name` is its own [`canonical_repo_name`], checked without building a string: no
/// ASCII upper-case letter (so nothing is lower-cased), no `.git` to strip, and a clean path
/// (no empty, `.` or `..` segment, so no leading or trailing slash). Nearly every name in a
/// repo DB is, and a full read normalises a million of them.
pub fn is_canonical_repo_name(name: &str) -> bool {
    !name.is_empty()
        && !name.ends_with(".git")
        && !name.bytes().any(|b| b.is_ascii_uppercase())
        && name.split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

/// Go's `strings.ToLower`: each character through its simple lower-case mapping.
///
/// Rust's `str::to_lowercase` differs in two places that would change the name and so its
/// md5 shard: a final `Σ` becomes `ς` (Go: `σ`), and `İ` becomes `i̇`, two characters (Go: `i`).
fn to_lower_like_go(text: &str) -> String {
    text.chars().flat_map(|c| if c == '\u{130}' { 'i'.to_lowercase() } else { c.to_lowercase() }).collect()
}

/// `path.Clean("/" + p)[1:]` from Go: the cleaned path without its leading slash.
fn clean_rooted(path: &str) -> String {
    // Nearly every name is clean already: one copy, without a list of its segments (a full
    // read normalises a million names).
    if path.split('/').all(|segment| !matches!(segment, "" | "." | "..")) {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::{canonical_repo_name as c, normalize_repo_name as n};

    #[test]
    fn strips_git_suffix_and_cleans_paths() {
        assert_eq!(n("gitlab.com/a/b.git"), "gitlab.com/a/b");
        assert_eq!(n("gitlab.com//a/./b/../c"), "gitlab.com/a/c");
        assert_eq!(n("/gitlab.com/a/b/"), "gitlab.com/a/b");
        assert_eq!(n("../../x/y"), "x/y");
        assert_eq!(n("a.git.git"), "a.git");
    }

    #[test]
    fn lower_cases_host_and_all_of_github() {
        assert_eq!(n("GitLab.com/Org/Repo"), "gitlab.com/Org/Repo");
        assert_eq!(n("GitHub.com/Org/Repo.git"), "github.com/org/repo");
        assert_eq!(n("github.com/Sourcegraph/Sourcegraph"), "github.com/sourcegraph/sourcegraph");
        // No slash: Go leaves the case alone.
        assert_eq!(n("LocalRepo"), "LocalRepo");
    }

    #[test]
    fn lower_cases_each_character_as_go_does() {
        assert_eq!(n("github.com/A/ΟΔΟΣ"), "github.com/a/οδοσ");
        assert_eq!(n("github.com/A/İ"), "github.com/a/i");
    }

    #[test]
    fn canonical_form_is_what_a_shard_stores_for_it() {
        assert_eq!(c("a.git.git"), "a");
        assert_eq!(c("github.com/a/B.GIT"), "github.com/a/b");
        assert_eq!(c("gitlab.com/a/b.git/"), "gitlab.com/a/b");
        assert_eq!(c("github.com/Org/Repo.git"), n("github.com/Org/Repo.git"));
    }
}

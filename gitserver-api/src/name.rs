//! gitserver's repository-name normalisation (`protocol.NormalizeRepo`).
//!
//! Every gitserver normalises a name before it becomes a directory, so `/list?cloned` returns
//! normalised names while the repo DB may hold other spellings. Compare on normalised names,
//! always; route on them too (the md5 of the normalised name picks the shard).

/// Normalises a repository name the way gitserver does: strip one trailing `.git`, clean the
/// path as a `/`-rooted path (`a//b/../c` → `a/c`), lower-case the host (the first segment),
/// and lower-case the whole name for `github.com`. Names without any ASCII upper-case letter or
/// without a `/` are not lower-cased at all, exactly as in Go.
pub fn normalize_repo_name(name: &str) -> String {
    let trimmed = name.strip_suffix(".git").unwrap_or(name);
    let cleaned = clean_rooted(trimmed);
    if !cleaned.bytes().any(|b| b.is_ascii_uppercase()) {
        return cleaned;
    }
    let Some(slash) = cleaned.find('/') else {
        return cleaned;
    };
    let host = cleaned[..slash].to_lowercase();
    let path = &cleaned[slash..];
    if host == "github.com" {
        format!("{host}{}", path.to_lowercase())
    } else {
        format!("{host}{path}")
    }
}

/// `path.Clean("/" + p)[1:]` from Go: the cleaned path without its leading slash.
fn clean_rooted(path: &str) -> String {
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
    use super::normalize_repo_name as n;

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
}

//! Where things live under `repos_dir`: which directory a repository name maps to, which
//! names are acceptable as directories, and the temporary area for clones in progress.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory under `repos_dir` that holds clones in progress. Not a valid repository name
/// segment, and skipped by the listing.
pub(crate) const TMP_DIR: &str = ".tmp";

/// The directory that marks a mirror: `<repos_dir>/<name>/.git`.
pub(crate) const MIRROR_DIR: &str = ".git";

/// A repository name that cannot become a directory under `repos_dir`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repo name {name:?}: {why}")]
pub(crate) struct InvalidName {
    name: String,
    why: &'static str,
}

/// The on-disk layout rooted at `repos_dir`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where clones run before they are renamed into place.
    pub(crate) fn tmp_root(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// `<repos_dir>/<name>`, for a normalised name. Refuses names that would escape the root,
    /// land in the temporary area or inside another mirror.
    pub(crate) fn repo_dir(&self, name: &str) -> Result<PathBuf, InvalidName> {
        let invalid = |why| InvalidName { name: name.to_owned(), why };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.contains('\0') || name.contains('\\') {
            return Err(invalid("contains a NUL or a backslash"));
        }
        for (index, segment) in name.split('/').enumerate() {
            match segment {
                "" | "." | ".." => return Err(invalid("not a clean relative path")),
                MIRROR_DIR => return Err(invalid("a path segment is `.git`")),
                TMP_DIR if index == 0 => return Err(invalid("reserved for clones in progress")),
                _ => {}
            }
        }
        Ok(self.root.join(name))
    }

    /// `<repos_dir>/<name>/.git`, the bare mirror of a normalised name.
    pub(crate) fn mirror_dir(&self, name: &str) -> Result<PathBuf, InvalidName> {
        Ok(self.repo_dir(name)?.join(MIRROR_DIR))
    }

    /// Whether the mirror of a normalised name exists. Clones are renamed into place whole,
    /// so existence means complete.
    pub(crate) fn is_cloned(&self, name: &str) -> bool {
        self.mirror_dir(name).is_ok_and(|dir| dir.is_dir())
    }

    /// Creates the root and an empty temporary area, deleting whatever partial clones a
    /// previous run left behind: like the real gitserver, a restart forgets every clone that
    /// was in progress.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.tmp_root();
        // A git process killed a moment ago may still finish one last write while we delete,
        // which makes `remove_dir_all` fail with "directory not empty"; try again briefly.
        let mut attempts = 0;
        loop {
            match std::fs::remove_dir_all(&tmp) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound => break,
                Err(err) if attempts < 10 => {
                    attempts += 1;
                    tracing::debug!("Removing {} failed ({err}), trying again.", tmp.display());
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => return Err(err),
            }
        }
        std::fs::create_dir_all(&tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names_to_directories_and_refuses_unsafe_ones() {
        let layout = Layout::new(PathBuf::from("/r"));
        assert_eq!(layout.mirror_dir("github.com/a/b"), Ok(PathBuf::from("/r/github.com/a/b/.git")));
        for bad in ["", "a//b", "../a", "a/./b", ".tmp/x", ".tmp", "a/.git/b", "a\\b"] {
            assert!(layout.repo_dir(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(layout.repo_dir("a/.tmp").is_ok());
    }

    #[test]
    fn prepare_wipes_leftover_clones() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let layout = Layout::new(dir.path().join("repos"));
        std::fs::create_dir_all(layout.tmp_root().join("clone-7/objects")).expect("mkdir");
        layout.prepare().expect("prepare");
        assert!(layout.tmp_root().is_dir());
        assert_eq!(std::fs::read_dir(layout.tmp_root()).expect("read").count(), 0);
    }
}

//! `/list?cloned`: finds the mirrors under `repos_dir` by walking the tree for `.git`
//! directories.
//!
//! The walk never descends into a `.git` directory (a mirror holds thousands of files) nor
//! into the temporary area, and uses the file types `read_dir` already returns, so listing
//! thousands of repositories costs about one `readdir` per directory on the way to them.

use std::io;
use std::path::{Path, PathBuf};

use crate::layout::{MIRROR_DIR, TMP_DIR};

/// Names of the mirrors under `root`, sorted. Names are relative paths with `/` separators,
/// which are the normalised names the mirrors were cloned under.
///
/// Blocking; call it from `spawn_blocking`. Directories that vanish during the walk (a
/// concurrent `/delete`) are skipped; an unreadable root is an error.
pub(crate) fn list_cloned(root: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut pending: Vec<(PathBuf, String)> = Vec::new();
    visit(root, "", &mut names, &mut pending)?;
    while let Some((dir, name)) = pending.pop() {
        if let Err(err) = visit(&dir, &name, &mut names, &mut pending) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!("Skipping {} while listing: {err}.", dir.display());
            }
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Reads one directory: records it as a mirror if it holds `.git`, queues its other
/// subdirectories. `name` is the directory's path relative to the root ("" for the root).
fn visit(dir: &Path, name: &str, names: &mut Vec<String>, pending: &mut Vec<(PathBuf, String)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // `file_type` does not follow symlinks: a symlinked directory is not walked.
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let file_name = entry.file_name();
        let Some(segment) = file_name.to_str() else {
            tracing::warn!("Skipping {} while listing: not UTF-8.", entry.path().display());
            continue;
        };
        if segment == MIRROR_DIR {
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        } else if !(name.is_empty() && segment == TMP_DIR) {
            let child = if name.is_empty() { segment.to_owned() } else { format!("{name}/{segment}") };
            pending.push((entry.path(), child));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_mirrors_sorted_skipping_tmp_and_mirror_insides() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path();
        for path in [
            "github.com/b/x/.git/refs/heads",
            "github.com/a/y/.git",
            "github.com/a/y/nested/.git",
            "gitlab.com/half/done",
            ".tmp/clone-1/.git",
            "github.com/a/y/.git/modules/sub/.git",
        ] {
            std::fs::create_dir_all(root.join(path)).expect("mkdir");
        }
        std::fs::write(root.join("github.com/stray"), "file").expect("write");
        assert_eq!(list_cloned(root).expect("list"), ["github.com/a/y", "github.com/a/y/nested", "github.com/b/x"]);
    }

    #[test]
    fn missing_root_is_an_error() {
        let dir = tempfile::tempdir().expect("a temp dir");
        assert!(list_cloned(&dir.path().join("nope")).is_err());
    }
}

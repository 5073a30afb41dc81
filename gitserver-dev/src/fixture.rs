//! Source repositories for tests and the demo: real bare git repositories with one commit,
//! made with the `git` on `PATH`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a source repository could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making the source repository {path}: {message}")]
pub struct FixtureError {
    pub path: PathBuf,
    pub message: String,
}

/// Creates (or reuses) a bare repository at `path` holding one commit on `main` whose README
/// names `name`, and returns `path`: an absolute path is a clone URL git accepts.
pub fn source_repo(path: &Path, name: &str) -> Result<PathBuf, FixtureError> {
    if path.join("HEAD").is_file() {
        return Ok(path.to_path_buf());
    }
    let fail = |message: String| FixtureError { path: path.to_path_buf(), message };
    run(Command::new("git").args(["init", "--quiet", "--bare"]).arg(path), None).map_err(fail)?;
    let readme = format!("# {name}\n");
    let stream = format!(
        "commit refs/heads/main\ncommitter Fixture <fixture@example.com> 1600000000 +0000\ndata 4\ninit\n\
         M 644 inline README.md\ndata {}\n{readme}\n",
        readme.len()
    );
    run(Command::new("git").arg("--git-dir").arg(path).args(["fast-import", "--quiet"]), Some(&stream))
        .map_err(fail)?;
    run(Command::new("git").arg("--git-dir").arg(path).args(["symbolic-ref", "HEAD", "refs/heads/main"]), None)
        .map_err(fail)?;
    Ok(path.to_path_buf())
}

fn run(command: &mut Command, stdin: Option<&str>) -> Result<(), String> {
    let mut child = command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running git failed (is it installed?): {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| format!("feeding git failed: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("waiting for git failed: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_a_cloneable_bare_repo_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.git");
        super::source_repo(&path, "a").unwrap();
        super::source_repo(&path, "a").unwrap();
        let out =
            std::process::Command::new("git").arg("--git-dir").arg(&path).args(["log", "--oneline"]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("init"));
    }
}

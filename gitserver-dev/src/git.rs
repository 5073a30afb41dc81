//! The two git commands the server runs: `clone --mirror` and `ls-remote`.
//!
//! Every child gets no stdin, no terminal prompt (a missing credential fails instead of
//! hanging) and is killed when its future is dropped, so a killed server leaves no git
//! process behind.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

/// A git command that did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GitError {
    /// git ran and failed; the message is its trimmed stderr, as gitserver reported it.
    #[error("{0}")]
    Failed(String),
    /// git could not be started at all.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
}

/// `git clone --mirror URL DEST`: a bare mirror of every ref of `url` in `dest`.
pub(crate) async fn clone_mirror(url: &str, dest: &Path) -> Result<(), GitError> {
    let mut command = git();
    command.args(["clone", "--mirror", "--quiet", "--"]).arg(url).arg(dest);
    run(command, "clone").await
}

/// `git ls-remote URL HEAD`: succeeds when `url` can be read, which is what gitserver calls
/// cloneable.
pub(crate) async fn ls_remote_head(url: &str) -> Result<(), GitError> {
    let mut command = git();
    command.args(["ls-remote", "--", url, "HEAD"]);
    run(command, "ls-remote").await
}

fn git() -> Command {
    let mut command = Command::new("git");
    command
        .args(["-c", "protocol.file.allow=always"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(mut command: Command, verb: &str) -> Result<(), GitError> {
    let output = command.output().await.map_err(GitError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        Err(GitError::Failed(format!("git {verb} exited with {}", output.status)))
    } else {
        Err(GitError::Failed(stderr))
    }
}

//! A bad configuration stops `clonekeeper run` at once with exit status 2 and a message naming
//! the offending key (and the environment variable it came from).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::sidecar::{command, free_port};
use crate::support::{kill_process_group, DEADLINE, POLL};

fn valid_file(dir: &Path, extra_gitserver_line: &str) -> std::path::PathBuf {
    let path = dir.join("clonekeeper.toml");
    let text = format!(
        "[repo_db]\nurl = \"postgres://postgres@127.0.0.1:5432/ck_it_no_such_db\"\n\n\
         [gitserver]\naddrs = [\"127.0.0.1:3178\"]\n{extra_gitserver_line}\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    );
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// Runs the command to its end, killing it (and failing) if it is still running at the deadline:
/// a sidecar that accepted the config would run forever.
async fn run_to_end(mut command: Command, log: &Path) -> Output {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("starting clonekeeper-under-test");
    let deadline = Instant::now() + DEADLINE.min(Duration::from_secs(30));
    loop {
        if let Some(status) = child.try_wait().expect("polling the child") {
            let stdout = std::io::read_to_string(child.stdout.take().expect("piped")).unwrap_or_default();
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            return Output { status, stdout: stdout.into_bytes(), stderr: stderr.into_bytes() };
        }
        if Instant::now() >= deadline {
            kill_process_group(&mut child);
            panic!(
                "clonekeeper accepted the configuration and kept running; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn bad_config_in_file_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = valid_file(dir.path(), "routing = \"round-robin\"");
    let log = dir.path().join("stderr.log");
    let mut cmd = command(&log);
    cmd.arg("run").arg("--config").arg(&config);
    let output = run_to_end(cmd, &log).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("gitserver.routing"), "the message should name the key: {stderr}");
    assert!(stderr.contains("round-robin"), "the message should quote the bad value: {stderr}");
}

#[tokio::test]
async fn bad_config_in_env_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = valid_file(dir.path(), "");
    let log = dir.path().join("stderr.log");
    let mut cmd = command(&log);
    cmd.arg("run").arg("--config").arg(&config).env("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT", "lots");
    let output = run_to_end(cmd, &log).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("dispatch.max_in_flight"), "the message should name the key: {stderr}");
    assert!(
        stderr.contains("CLONEKEEPER_DISPATCH_MAX_IN_FLIGHT"),
        "the message should name the environment variable: {stderr}"
    );
}

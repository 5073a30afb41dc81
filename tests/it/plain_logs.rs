//! A log file gets plain text: no ANSI colour codes when stderr is not a terminal, even
//! without `NO_COLOR` (the harness sets it for every other test; this one removes it).

use std::time::Instant;

use crate::support::sidecar::{command, free_port};
use crate::support::{kill_process_group, DEADLINE, POLL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("clonekeeper.toml");
    // A repo DB that does not exist: the sidecar logs a warning (coloured on a terminal) and
    // retries, which is all this test needs.
    let text = format!(
        "[repo_db]\nurl = \"postgres://postgres@127.0.0.1:5432/ck_it_plain_logs_no_such_db\"\n\n\
         [gitserver]\naddrs = [\"127.0.0.1:3178\"]\n\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    );
    std::fs::write(&config, text).expect("writing the config");
    let log = dir.path().join("clonekeeper.log");
    let mut child = command(&log)
        .env_remove("NO_COLOR")
        .arg("run")
        .arg("--config")
        .arg(&config)
        .spawn()
        .expect("starting clonekeeper-under-test");
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("retrying") {
            break text;
        }
        if Instant::now() >= deadline {
            kill_process_group(&mut child);
            panic!("no retry warning in the log; log:\n{text}");
        }
        tokio::time::sleep(POLL).await;
    };
    kill_process_group(&mut child);
    assert!(text.contains("WARN"), "{text}");
    assert!(!text.contains('\u{1b}'), "the log file carries escape codes:\n{text:?}");
}

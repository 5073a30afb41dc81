//! The `gitserver-dev` binary: flags, the "listening on" line, signals and exit codes.

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use support::Api;

const BIN: &str = env!("CARGO_BIN_EXE_gitserver-dev");

#[tokio::test]
async fn announces_its_port_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--clone-delay", "10ms", "--repos-dir"])
        .arg(tmp.path().join("repos"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line).expect("a line on stdout");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    assert_ne!(addr.port(), 0);
    assert!(Api::new(addr).list().await.is_empty());

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let status = child.wait().expect("the binary exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn exits_2_on_bad_arguments() {
    for args in [
        vec!["--repos-dir", "/tmp/x", "--max-concurrent-clones", "0"],
        vec!["--repos-dir", "/tmp/x", "--clone-delay", "soon"],
        vec!["--repos-dir", "/tmp/x", "--listen", "nowhere"],
        vec!["--listen", "127.0.0.1:0"],
    ] {
        let status = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the binary runs");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}

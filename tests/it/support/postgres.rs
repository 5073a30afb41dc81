//! A Postgres cluster of a test's own (`initdb` and `pg_ctl` from /usr/lib/postgresql, run as
//! the `postgres` user since Postgres refuses root), so stopping or crashing it affects no
//! other test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A Postgres cluster of the test's own, so stopping it affects no other test.
pub struct PrivatePostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn bin(name: &str) -> PathBuf {
        let versions =
            std::fs::read_dir("/usr/lib/postgresql").expect("Postgres server binaries in /usr/lib/postgresql");
        let mut dirs: Vec<PathBuf> = versions.filter_map(|e| e.ok()).map(|e| e.path().join("bin").join(name)).collect();
        dirs.sort();
        dirs.pop().filter(|p| p.exists()).unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql"))
    }

    /// Postgres refuses to run as root, so the cluster runs as the `postgres` user.
    fn as_postgres(program: &Path, args: &[&str]) {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runuser runs");
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn create() -> PrivatePostgres {
        let dir = tempfile::Builder::new().prefix("ck-pg-").tempdir().expect("a temporary directory");
        let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
        assert!(status.success(), "chown of the cluster directory failed");
        let data = dir.path().join("data");
        let data_text = data.to_str().expect("UTF-8 path");
        Self::as_postgres(&Self::bin("initdb"), &["-D", data_text, "-A", "trust", "-U", "postgres", "--no-sync"]);
        let cluster = PrivatePostgres { port: crate::support::sidecar::free_port(), data, _dir: dir };
        cluster.start();
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data.to_str().expect("UTF-8 path");
        let mut all = vec!["-D", data, "-w"];
        all.extend_from_slice(args);
        Self::as_postgres(&Self::bin("pg_ctl"), &all);
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.pg_ctl(&["-o", &options, "-l", log.to_str().expect("UTF-8 path"), "start"]);
    }

    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// Stops the server as a crash would (`-m immediate`: every backend killed at once, no
    /// shutdown checkpoint); [`PrivatePostgres::start`] brings it back on the same port.
    pub fn crash(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_string();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Self::bin("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

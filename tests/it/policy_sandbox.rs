//! The policy sandbox end to end: a module that trips the host (an `init` refusal as long as
//! the module likes, cut inside a multi-byte character) is rejected while the sidecar keeps
//! reloading, and a cache folder on a full filesystem costs only the cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clonekeeper::policy::componentize::componentize;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{command, Sidecar, SidecarConfig};
use crate::support::{eventually, source_repos};

const PRELUDE: &str = include_str!("../../host/src/policy/testdata/prelude.wat");
const STARS: &str = include_str!("../../host/src/policy/testdata/stars.wat");
const BAD_INIT: &str = include_str!("../../host/src/policy/testdata/bad_init.wat");

/// A good prioritizer (most stars first), as a binary component.
fn stars() -> Vec<u8> {
    componentize(STARS.replace(";; @prelude", PRELUDE).as_bytes(), Some("prioritizer")).expect("encodes")
}

/// A prioritizer whose `init` refuses every config with `x` and 1,500 `é`: 3,001 bytes, the
/// 1,024th inside a character.
fn long_refusal() -> Vec<u8> {
    let message = format!("x{}", "é".repeat(1500));
    let core = BAD_INIT
        .replace("\"max_stars must be a number\"", &format!("{message:?}"))
        .replace("(i32.const 26)", &format!("(i32.const {})", message.len()));
    componentize(core.as_bytes(), Some("prioritizer")).expect("encodes")
}

/// Writes beside, then renames into place, as a deployment tool would.
fn drop_in(dir: &Path, name: &str, bytes: &[u8]) {
    let staging = dir.join(format!(".{name}.partial"));
    std::fs::write(&staging, bytes).expect("writing the module");
    std::fs::rename(&staging, dir.join(name)).expect("renaming into place");
}

/// Repos for the sidecar to order, on a shard slow enough that some stay queued.
async fn repos_and_shard(work: &Path) -> (PgDb, DevShard) {
    let names: Vec<String> = (0..16).map(|i| format!("github.com/sandbox/repo-{i:02}")).collect();
    let urls = source_repos(&work.join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    let rows: Vec<NewRepo> =
        names.iter().zip(&urls).enumerate().map(|(i, (n, u))| NewRepo::new(n, u).stars(i as i32)).collect();
    db.insert_repos(&rows).await;
    let shard = DevShard::start(&work.join("shard"), Duration::from_millis(500));
    (db, shard)
}

/// Whether `/metrics` shows `module` answering `prioritize` at least once.
async fn served_prioritize(sidecar: &Sidecar, module: &str) -> Result<(), String> {
    let text = reqwest::get(sidecar.url("/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let calls = text
        .lines()
        .filter(|l| l.starts_with("clonekeeper_policy_eval_seconds_count{"))
        .filter(|l| l.contains(&format!("module=\"{module}\"")) && l.contains("interface=\"prioritize\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    if calls >= 1.0 {
        Ok(())
    } else {
        Err(format!("{module} has not answered prioritize yet"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_init_refusal_trips_the_host_is_rejected_and_the_next_module_serves() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let (db, shard) = repos_and_shard(work.path()).await;
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("creating the policy folder");
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.max_in_flight_per_shard = 1;
    config.policy_dir = Some(policies.clone());
    let sidecar = Sidecar::start(&config);
    sidecar.wait_for("a first tick", |s| s.ticks >= 1).await;

    drop_in(&policies, "a-refuses.wasm", &long_refusal());
    let rejected = sidecar
        .wait_for("the refusing module rejected", |s| {
            s.policies.iter().any(|p| p.name == "a-refuses" && p.state == "rejected")
        })
        .await;
    let error = rejected.policies.iter().find(|p| p.name == "a-refuses").and_then(|p| p.last_error.clone());
    let error = error.expect("a rejected module shows its error");
    assert!(error.starts_with("init rejected its config: xéé"), "{error}");
    assert!(error.len() < 1100, "the module's text is cut: {} bytes", error.len());

    // The reload thread lives on: the next module dropped in is loaded and serves.
    drop_in(&policies, "b-good.wasm", &stars());
    sidecar
        .wait_for("the good module active", |s| {
            s.policies.iter().any(|p| p.name == "b-good" && p.state == "active" && p.serving == ["prioritize"])
        })
        .await;
    eventually("the good module answering prioritize", || served_prioritize(&sidecar, "b-good")).await;

    // `policy check` on the refusing module: exit status 1 and the message, no panic.
    let log = work.path().join("check.log");
    let status = command(&log)
        .args(["policy", "check", "--no-cache"])
        .arg(policies.join("a-refuses.wasm"))
        .status()
        .expect("running clonekeeper policy check");
    let stderr = std::fs::read_to_string(&log).expect("the check's stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a-refuses.wasm") && stderr.contains("init rejected its config: xéé"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A tmpfs of 64 KiB mounted at a fresh folder, mode 0700, unmounted on drop.
struct FullFilesystem {
    dir: PathBuf,
}

impl FullFilesystem {
    /// Mounts it and fills it to the last byte. Needs root (as CI runs the tests).
    fn mount(dir: PathBuf) -> FullFilesystem {
        std::fs::create_dir_all(&dir).expect("creating the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("running mount");
        assert!(mounted.success(), "mount -t tmpfs failed ({mounted}): this test needs root");
        let full = FullFilesystem { dir };
        let mut filler = std::fs::File::create(full.dir.join("filler")).expect("creating the filler");
        let chunk = vec![0u8; 4096];
        let error = loop {
            if let Err(error) = std::io::Write::write_all(&mut filler, &chunk) {
                break error;
            }
        };
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "the filesystem is full: {error}");
        full
    }
}

impl Drop for FullFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_folder_on_a_full_filesystem_costs_only_the_cache() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let full = FullFilesystem::mount(work.path().join("cache"));
    let (db, shard) = repos_and_shard(work.path()).await;
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("creating the policy folder");
    drop_in(&policies, "stars.wasm", &stars());
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.max_in_flight_per_shard = 1;
    config.policy_dir = Some(policies);
    config.policy_cache_dir = Some(full.dir.clone());
    let sidecar = Sidecar::start(&config);

    sidecar
        .wait_for("the module active", |s| s.policies.iter().any(|p| p.name == "stars" && p.state == "active"))
        .await;
    eventually("the module answering prioritize", || served_prioritize(&sidecar, "stars")).await;
    let log = sidecar.log_tail(100_000);
    assert!(log.contains("Caching precompiled policy code failed"), "the failed write is a warning:\n{log}");
    assert!(log.contains("No space left on device"), "naming the cause:\n{log}");
    let entries: Vec<_> =
        std::fs::read_dir(&full.dir).expect("the cache folder").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(entries, ["filler"], "no partial entry is left behind");
}

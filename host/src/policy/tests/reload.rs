//! Hot reload through the watcher, and swaps under load.

use super::*;

// === What the live set asks of the repo DB ===

/// The repo DB reader skips the columns no module that may be asked sees: stars (the costly
/// one) for a prioritizer that does not name them, the details unless a module sees them.
#[test]
fn the_set_reads_only_the_columns_its_modules_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host_for(dir.path(), 3);
    let read = || host.current().columns_read();
    let stars_only = RepoColumns { stars: true, ..RepoColumns::default() };
    host.reload(now()).expect("reload");
    assert_eq!(read(), RepoColumns::default(), "built-in behaviour only");
    write(dir.path(), "oldest.wasm", &component("oldest_first", "prioritizer"));
    host.reload(now()).expect("reload");
    assert_eq!(read(), RepoColumns::default(), "a prioritizer that reads only ids");
    write(dir.path(), "stars.wasm", &component("stars", "prioritizer"));
    host.reload(now()).expect("reload");
    assert_eq!(read(), RepoColumns::default(), "a standby module is never asked");
    write(dir.path(), "a-stars.wasm", &component("stars", "prioritizer"));
    host.reload(now()).expect("reload");
    assert_eq!(read(), stars_only, "the serving prioritizer reads stars, nothing else");
    write(dir.path(), "limits.wasm", &component("limits", "limiter"));
    host.reload(now()).expect("reload");
    assert_eq!(read(), RepoColumns { details: true, ..stars_only }, "a key's load names its service type");
    write(dir.path(), "retry.wasm", &component("retry", "retrier"));
    host.reload(now()).expect("reload");
    assert_eq!(read(), RepoColumns::POLICY, "a retry row carries every column");
    assert!(!read().recorded, "the recorded state is write-back's, never a module's");
}

// === Hot reload through the watcher ===

#[test]
fn the_watcher_reloads_on_write_in_place_rename_and_symlink_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.wasm");
    let host = host_for(dir.path(), 3);
    let _watcher = host.watch().expect("watch");
    let serving = |digest: &str| *host.serving_digest(Interface::Prioritize) == *digest;

    // A new file, written in place in two parts: the first part may be seen and rejected.
    let v1 = stars_with_bonus(1);
    let d1 = digest_of(&v1);
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&v1[..v1.len() / 2]).expect("write");
        file.sync_all().expect("sync");
        std::thread::sleep(Duration::from_millis(50));
        file.write_all(&v1[v1.len() / 2..]).expect("write");
    }
    eventually("the written module serves", || serving(&d1));

    // Overwritten in place with a half-written file: rejected, v1 stays.
    let v2 = stars_with_bonus(2);
    let d2 = digest_of(&v2);
    std::fs::write(&path, &v2[..v2.len() / 2]).expect("write");
    eventually("the half-written file is rejected", || {
        status_of(&host.status(now()), "rejected").iter().any(|s| s.digest == digest_of(&v2[..v2.len() / 2]))
    });
    assert!(serving(&d1), "the previous version stays");
    std::fs::write(&path, &v2).expect("write");
    eventually("the completed file serves", || serving(&d2));

    // Atomic rename from a dotfile (ignored while written).
    let v3 = stars_with_bonus(3);
    let d3 = digest_of(&v3);
    std::fs::write(dir.path().join(".policy.wasm.tmp"), &v3).expect("write");
    std::fs::rename(dir.path().join(".policy.wasm.tmp"), &path).expect("rename");
    eventually("the renamed module serves", || serving(&d3));
}

#[cfg(unix)]
#[test]
fn the_watcher_follows_a_kubernetes_configmap_swap() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let v1 = stars_with_bonus(11);
    let v2 = stars_with_bonus(12);
    std::fs::create_dir(root.join("..2024_01_01")).expect("mkdir");
    std::fs::write(root.join("..2024_01_01/policy.wasm"), &v1).expect("write");
    symlink("..2024_01_01", root.join("..data")).expect("symlink");
    symlink("..data/policy.wasm", root.join("policy.wasm")).expect("symlink");
    let host = host_for(root, 3);
    let _watcher = host.watch().expect("watch");
    eventually("v1 serves", || *host.serving_digest(Interface::Prioritize) == *digest_of(&v1));

    // What the kubelet does: a new timestamped folder, a new link, renamed over `..data`.
    std::fs::create_dir(root.join("..2024_01_02")).expect("mkdir");
    std::fs::write(root.join("..2024_01_02/policy.wasm"), &v2).expect("write");
    symlink("..2024_01_02", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("rename");
    std::fs::remove_dir_all(root.join("..2024_01_01")).expect("cleanup");
    eventually("v2 serves", || *host.serving_digest(Interface::Prioritize) == *digest_of(&v2));
    let names: Vec<String> = host.status(now()).into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["policy"], "the ..data entries are not modules");
}

// === Hot swap under load ===

#[test]
fn a_hundred_swaps_under_load_lose_no_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let engine = PolicyEngine::new(limits(), Some(cache.path().to_path_buf())).expect("engine");
    let host = Arc::new(PolicyHost::new(
        engine,
        HostConfig {
            dir: Some(dir.path().to_path_buf()),
            allowlist: None,
            quarantine_after: 3,
            shard_addrs: Vec::new(),
            builtin_retry: crate::schedule::BuiltinRetry::default(),
        },
    ));
    // Five versions, told apart by the bonus each adds to every score.
    let versions: Vec<(u32, Vec<u8>)> = (1..=5).map(|bonus| (bonus * 1000, stars_with_bonus(bonus * 1000))).collect();
    let bonus_of: std::collections::HashMap<String, u32> =
        versions.iter().map(|(bonus, bytes)| (digest_of(bytes), *bonus)).collect();
    write(dir.path(), "policy.wasm", &versions[0].1);
    host.reload(now()).expect("reload");

    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let host = Arc::clone(&host);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let batch = repos(&[1, 2, 3, 4]);
            let mut decisions = Vec::new();
            while !stop.load(Ordering::Relaxed) || decisions.len() < 100 {
                decisions.push(host.prioritize(&batch, now()));
            }
            decisions
        })
    };
    for swap in 1..=100 {
        write(dir.path(), "policy.wasm", &versions[swap % versions.len()].1);
        let report = host.reload(now()).expect("reload");
        assert_eq!(report.loaded, vec!["policy"], "swap {swap}");
    }
    stop.store(true, Ordering::Relaxed);
    let decisions = caller.join().expect("caller thread");
    let mut seen = std::collections::HashSet::new();
    for (idx, decided) in decisions.iter().enumerate() {
        let decided = decided.as_ref().unwrap_or_else(|| panic!("decision {idx} failed"));
        let bonus = bonus_of.get(&*decided.digest).unwrap_or_else(|| panic!("unknown digest {}", decided.digest));
        let expected: Vec<Priority> = [1, 2, 3, 4].iter().map(|s| Priority::Score(f64::from(bonus + s))).collect();
        assert_eq!(decided.answers, expected, "decision {idx} was made by the module its digest names");
        seen.insert(Arc::clone(&decided.digest));
    }
    assert!(decisions.len() >= 100);
    assert!(seen.len() >= 2, "decisions were made by several versions: {seen:?}");
}

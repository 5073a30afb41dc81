//! The precompiled-code cache is trusted only as far as it is checked.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;

fn cached_engine(dir: &Path) -> Arc<PolicyEngine> {
    PolicyEngine::new(limits(), Some(dir.to_path_buf())).expect("engine")
}

/// The one `.cwasm` entry in `dir`.
fn entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().expect("one entry")
}

#[test]
fn entries_are_written_0600_in_a_0700_folder_it_creates() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("cache");
    let engine = cached_engine(&dir);
    assert!(engine.caches());
    Module::load(&engine, &source("stars", component("stars", "prioritizer")), None, now()).expect("loads");
    let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&entry(&dir)), 0o600);
}

#[test]
fn a_tampered_entry_is_not_deserialised_but_recompiled() {
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = component("stars", "prioritizer");
    let first = cached_engine(cache.path());
    Module::load(&first, &source("stars", bytes.clone()), None, now()).expect("loads");
    let path = entry(cache.path());
    let original = std::fs::read(&path).expect("read entry");

    // One byte of code changed, the header left alone: a deserialize of it could run anything.
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&path, &tampered).expect("tamper");
    let second = cached_engine(cache.path());
    let module = Module::load(&second, &source("stars", bytes.clone()), None, now()).expect("loads");
    assert!(!module.from_cache, "the tampered entry was not used");
    assert_eq!(second.compiled_count(), 1, "compiled again");
    assert_eq!(module.prioritize(&repos(&[4]), now()).expect("answers"), vec![Priority::Score(4.0)]);
    assert_eq!(std::fs::read(&path).expect("rewritten"), original, "the entry was replaced by a good one");

    // A good entry of another module, copied under this module's name.
    let other = stars_with_bonus(5);
    Module::load(&second, &source("other", other.clone()), None, now()).expect("loads");
    let other_entry = cache
        .path()
        .join(path.file_name().expect("name").to_string_lossy().replace(&digest_of(&bytes), &digest_of(&other)));
    std::fs::copy(&other_entry, &path).expect("copy");
    let third = cached_engine(cache.path());
    let module = Module::load(&third, &source("stars", bytes), None, now()).expect("loads");
    assert!(!module.from_cache, "an entry compiled from other bytes was not used");
    assert_eq!(module.prioritize(&repos(&[4]), now()).expect("answers"), vec![Priority::Score(4.0)]);
}

#[test]
fn an_entry_writable_by_others_is_not_used() {
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = component("stars", "prioritizer");
    Module::load(&cached_engine(cache.path()), &source("stars", bytes.clone()), None, now()).expect("loads");
    let path = entry(cache.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let engine = cached_engine(cache.path());
    let module = Module::load(&engine, &source("stars", bytes), None, now()).expect("loads");
    assert!(!module.from_cache);
    assert_eq!(engine.compiled_count(), 1);
}

#[test]
fn a_cache_folder_writable_by_others_or_owned_by_another_user_is_refused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let bytes = component("stars", "prioritizer");
    Module::load(&cached_engine(cache.path()), &source("stars", bytes.clone()), None, now()).expect("loads");

    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let error = crate::policy::cache::CodeCache::open(cache.path(), [0; 8]).unwrap_err().to_string();
    assert!(error.contains(&cache.path().display().to_string()), "names the folder: {error}");
    assert!(error.contains("writable by group or others"), "{error}");
    let engine = cached_engine(cache.path());
    assert!(!engine.caches(), "the engine runs without the cache");
    let module = Module::load(&engine, &source("stars", bytes.clone()), None, now()).expect("still loads");
    assert!(!module.from_cache, "the entry in the refused folder was not used");

    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let other_user = std::fs::metadata(cache.path()).expect("metadata").uid() + 1;
    std::os::unix::fs::chown(cache.path(), Some(other_user), None).expect("chown (the tests run as root)");
    let error = crate::policy::cache::CodeCache::open(cache.path(), [0; 8]).unwrap_err().to_string();
    assert!(error.contains("is owned by uid"), "{error}");
    assert!(!cached_engine(cache.path()).caches());
}

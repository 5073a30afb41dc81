//! Tidy checks: architecture rules the compiler cannot enforce, checked as tests.

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Every `.rs` file of the pure core: reconcile/, schedule/, and the loop's decisions
/// (machine/).
fn core_files() -> Vec<std::path::PathBuf> {
    ["reconcile", "schedule", "machine"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap().map(|e| e.unwrap().path()))
        .collect()
}

/// The core must stay pure: no I/O crate, no clock and no randomness may appear in
/// reconcile/, schedule/ or machine/. The simulator relies on it: the same seed must make the
/// same run.
#[test]
fn tidy_core_does_no_io() {
    let banned = [
        "tokio",
        "sqlx",
        "hyper",
        "reqwest",
        "axum",
        "wasmtime",
        "std::fs",
        "std::net",
        "SystemTime",
        "Timestamp::now",
        "Instant::now",
        "rand::",
    ];
    for path in core_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in banned {
            let hits = text.lines().filter(|l| l.contains(banned)).count();
            assert_eq!(hits, 0, "{} mentions {banned}", path.display());
        }
    }
}

/// Core types derive neither `Serialize` nor `FromRow`: adapters convert at the boundary
/// (status.rs, explain.rs, the policy fixture format), so a wire format never constrains them.
#[test]
fn tidy_core_types_derive_no_wire_format() {
    let mut files = core_files();
    files.push(format!("{ROOT}/model/mod.rs").into());
    files.push(format!("{ROOT}/model/name_list.rs").into());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("#[derive(") && (l.contains("Serialize") || l.contains("FromRow")))
            .collect();
        assert!(hits.is_empty(), "{} derives a wire format: {hits:?}", path.display());
    }
}

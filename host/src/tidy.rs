//! Tidy checks: architecture rules the compiler cannot enforce, checked as tests.

/// The core must stay pure: no I/O crate may appear in reconcile/ or schedule/.
#[test]
fn tidy_core_does_no_io() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    for dir in ["reconcile", "schedule"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for banned in [
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
            ] {
                let hits = text.lines().filter(|l| l.contains(banned)).count();
                assert_eq!(hits, 0, "{} mentions {banned}", path.display());
            }
        }
    }
}

//! Any text as the config file (and as one environment variable): a config or problems, each
//! naming a key or a source, never a panic. Each run writes the file once; slow but honest.
#![no_main]

use std::io::{Seek, Write};
use std::sync::Mutex;

use clonekeeper::config::Config;
use libfuzzer_sys::fuzz_target;

static FILE: Mutex<Option<tempfile::NamedTempFile>> = Mutex::new(None);

fuzz_target!(|input: &str| {
    let mut guard = FILE.lock().expect("one fuzzing thread");
    let file = guard.get_or_insert_with(|| {
        tempfile::Builder::new().suffix(".toml").tempfile().expect("a temp file")
    });
    // The text up to the first NUL is the file; the rest is CLONEKEEPER_SYNC_INTERVAL.
    let (text, var) = input.split_once('\0').unwrap_or((input, ""));
    let handle = file.as_file_mut();
    handle.set_len(0).expect("truncate");
    handle.rewind().expect("rewind");
    handle.write_all(text.as_bytes()).expect("write");
    let vars = (!var.is_empty()).then(|| ("CLONEKEEPER_SYNC_INTERVAL".to_string(), var.to_string()));
    if let Err(error) = Config::load_from(Some(file.path()), vars) {
        assert!(!error.problems.is_empty());
    }
});

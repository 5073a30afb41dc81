//! Any bytes as the body of each gitserver answer the client decodes: an answer or an error
//! naming the shard and the call, never a panic, never an unbounded message.
#![no_main]

use clonekeeper::sources::gitserver::{answer, GitserverError};
use libfuzzer_sys::fuzz_target;

const ADDR: &str = "gitserver-0:3178";

fn check<T>(call: &str, result: Result<T, GitserverError>) {
    if let Err(error) = result {
        let text = error.to_string();
        assert!(text.contains(ADDR) && text.contains(call), "{text}");
        assert!(text.len() <= 4096, "a {}-byte error", text.len());
    }
}

fuzz_target!(|body: &[u8]| {
    // A small cap as well as a large one, so the refusal path is taken too.
    for limit in [1 << 20, 64] {
        check(answer::LIST, answer::list(ADDR, body, limit));
        check(answer::CLONE_PROGRESS, answer::clone_progress(ADDR, body, limit));
        check(answer::REPO_UPDATE, answer::repo_update(ADDR, body, limit));
        check(answer::ENQUEUE, answer::enqueue(ADDR, body, limit));
    }
});

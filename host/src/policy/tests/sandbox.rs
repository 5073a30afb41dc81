//! The sandbox against hostile modules: text a module chooses the length of, memory summed
//! over all of a call's memories, and the count of memories, tables and instances.

use super::*;

/// `bad_init` refusing every config with `message` instead of its own.
fn refusing_init(message: &str) -> Vec<u8> {
    let text = core_wat("bad_init")
        .replace("\"max_stars must be a number\"", &format!("{message:?}"))
        .replace("(i32.const 26)", &format!("(i32.const {})", message.len()));
    componentize(text.as_bytes(), Some("prioritizer")).expect("test module encodes")
}

/// An `init` refusal of 2,001 bytes whose 1,024th byte falls inside a two-byte character.
fn long_multibyte_refusal() -> String {
    format!("x{}", "é".repeat(1000))
}

// === Text a module chooses ===

#[test]
fn a_long_multibyte_init_refusal_is_cut_on_a_char_boundary() {
    let message = long_multibyte_refusal();
    assert!(!message.is_char_boundary(module::MAX_REASON_BYTES), "the cut must fall inside a character");
    let error = load("chatty-init", refusing_init(&message)).unwrap_err();
    let quoted = error.error.strip_prefix("init rejected its config: ").expect("names init");
    assert!(quoted.len() <= module::MAX_REASON_BYTES, "{} bytes", quoted.len());
    assert!(quoted.starts_with("xéé") && quoted.ends_with(crate::text::ELLIPSIS), "{quoted}");
}

#[test]
fn a_reload_that_meets_a_long_init_refusal_rejects_it_and_loads_the_next_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host_for(dir.path(), 3);
    write(dir.path(), "a-refuses.wasm", &refusing_init(&long_multibyte_refusal()));
    let good = write(dir.path(), "b-good.wasm", &stars_with_bonus(7));
    let report = host.reload(now()).expect("reload");
    assert_eq!(report.rejected, ["a-refuses"]);
    assert_eq!(report.loaded, ["b-good"]);
    assert_eq!(*host.serving_digest(Interface::Prioritize), *good);
}

// === Memory, tables and instances ===

/// A prioritizer with a second memory: `prioritize` grows each of its two memories by
/// `pages` (64 KiB each) and answers a score of 0 per repo if both grew.
fn two_memories(pages: u32) -> Vec<u8> {
    let text = format!(
        r#"(module
  ;; @prelude
  (memory $extra 1)
  (func (export "clonekeeper:policy/prioritize@0.2.0#columns") (result i32)
    (call $columns_none))
  (func (export "clonekeeper:policy/prioritize@0.2.0#prioritize")
    (param $args i32) (result i32) (local $n i32)
    (local.set $n (i32.load offset=8 (local.get $args)))
    (if (i32.eq (memory.grow $extra (i32.const {pages})) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))
    (call $return_list (call $list_area (local.get $n) (i32.const 16) (i32.const 8)) (local.get $n)))
)"#
    )
    .replace(";; @prelude", PRELUDE);
    componentize(text.as_bytes(), Some("prioritizer")).expect("test module encodes")
}

#[test]
fn the_memory_cap_is_the_sum_of_all_memories_of_a_call() {
    let cap_pages = (limits().memory_limit_bytes >> 16) as u32;
    // Each memory stays under the cap; together they would not.
    let greedy = load("two-memories", two_memories(cap_pages / 2 + 8)).expect("two memories are allowed");
    let error = greedy.prioritize(&repos(&[1, 2]), now()).unwrap_err();
    assert!(matches!(error, CallFailure::Trap(_)), "{error}");
    assert!(error.to_string().contains("memory limit exceeded") && error.to_string().contains("together"), "{error}");
    // Within the cap together, the same module answers.
    let modest = load("two-memories", two_memories(cap_pages / 4)).expect("loads");
    assert_eq!(modest.prioritize(&repos(&[1, 2]), now()).expect("answers").len(), 2);
}

/// A raw component whose one core module defines `memories` memories and `tables` tables,
/// instantiated `instances` times.
fn raw_component(memories: u32, tables: u32, instances: u32) -> Vec<u8> {
    let module = format!(
        "(core module $m {} {})",
        "(memory 1) ".repeat(memories as usize),
        "(table 1 funcref) ".repeat(tables as usize)
    );
    let instances = "(core instance (instantiate $m)) ".repeat(instances as usize);
    format!("(component {module} {instances})").into_bytes()
}

#[test]
fn a_component_with_more_memories_tables_or_instances_than_allowed_is_refused_at_load() {
    use super::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};
    // One module past a per-module limit, or several within it past the per-component one.
    let cases = [
        ("memories", raw_component(MAX_MEMORIES + 1, 0, 1), format!("memories count of {}", MAX_MEMORIES + 1)),
        ("tables", raw_component(0, MAX_TABLES + 1, 1), format!("tables count of {}", MAX_TABLES + 1)),
        ("instances", raw_component(0, 0, MAX_CORE_INSTANCES + 1), format!("{} core module", MAX_CORE_INSTANCES + 1)),
        ("spread", raw_component(1, 1, MAX_MEMORIES + 1), format!("{} Wasm linear memories", MAX_MEMORIES + 1)),
    ];
    for (name, bytes, detail) in cases {
        let error = load(name, bytes).unwrap_err();
        assert!(error.error.contains("exceeds the policy sandbox's limits"), "{name}: {error}");
        assert!(error.error.contains(&detail), "{name}: {error}");
    }
    // At the limits, the same shapes compile (and are then refused for exporting nothing).
    let error = load("at-limits", raw_component(1, MAX_TABLES / MAX_MEMORIES, MAX_MEMORIES)).unwrap_err();
    assert!(error.error.contains("implements none of"), "{error}");
}

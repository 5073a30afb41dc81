//! Properties of the answer decoders: any bytes give an answer or an error naming the shard and
//! the call (never a panic, never an unbounded message); answers written with the Go field names
//! decode to what was written; answers over the cap are refused whatever they hold.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::answer;
use super::{CallError, GitserverError};
use crate::model::RepoName;

const ADDR: &str = "gitserver-7:3178";
const LIMIT: usize = 1 << 20;

/// A decoder reduced to "did it decode".
type Decode = fn(&[u8], usize) -> Result<(), GitserverError>;

/// Every decoder, by call name.
fn decoders() -> [(&'static str, Decode); 4] {
    [
        (answer::LIST, |b, l| answer::list(ADDR, b, l).map(drop)),
        (answer::CLONE_PROGRESS, |b, l| answer::clone_progress(ADDR, b, l).map(drop)),
        (answer::REPO_UPDATE, |b, l| answer::repo_update(ADDR, b, l).map(drop)),
        (answer::ENQUEUE, |b, l| answer::enqueue(ADDR, b, l).map(drop)),
    ]
}

/// JSON-shaped values with the field names the decoders look for, so the bytes get past the
/// first character often enough to reach the typed parts.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Results".to_string()),
        Just("Cloned".to_string()),
        Just("CloneInProgress".to_string()),
        Just("CloneProgress".to_string()),
        Just("LastFetched".to_string()),
        Just("Error".to_string()),
        Just("id".to_string()),
        Just("name".to_string()),
        Just("url".to_string()),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Bytes a broken or hostile shard might send: noise, JSON of the wrong shape, and JSON cut
/// short or with a byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>()).prop_map(|(v, at, byte, cut)| {
            let mut bytes = v.to_string().into_bytes();
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            bytes
        }),
    ]
}

fn check_error(error: &GitserverError, call: &str) -> Result<(), TestCaseError> {
    let text = error.to_string();
    prop_assert!(text.contains(ADDR) && text.contains(call), "{text}");
    prop_assert!(matches!(error.kind, CallError::Decode(_)), "{text}");
    // A fixed budget, not the constant itself, so the test fails if the cap goes away.
    prop_assert!(text.len() <= 512, "{} bytes", text.len());
    prop_assert!(!error.kind.is_shard_down(), "a bad answer is not a down shard: {text}");
    Ok(())
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(any::<String>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_name_the_shard_and_call(body in body()) {
        for (call, decode) in decoders() {
            if let Err(error) = decode(&body, LIMIT) {
                check_error(&error, call)?;
            }
        }
    }

    /// A huge offending value is quoted by serde in its message; the error stays short.
    #[test]
    fn decode_errors_stay_short(text in "[a-zA-Zé€😀 ]{400,2000}") {
        let body = json!(text).to_string().into_bytes();
        for (call, decode) in decoders() {
            let error = decode(&body, LIMIT).expect_err("a string is none of the answers");
            check_error(&error, call)?;
        }
    }

    #[test]
    fn oversized_answers_are_refused_whatever_they_hold(names in prop::collection::vec("[a-z/]{0,20}", 0..20), over in 1usize..64) {
        let body = json!(names).to_string().into_bytes();
        let limit = body.len().saturating_sub(over);
        prop_assume!(body.len() > limit);
        for (call, decode) in decoders() {
            let error = decode(&body, limit).expect_err("over the cap");
            prop_assert!(matches!(error.kind, CallError::TooLarge { .. }), "{}", error);
            prop_assert!(error.to_string().contains(call));
        }
        // At exactly the cap, the list is read.
        prop_assert_eq!(answer::list(ADDR, &body, body.len()).map(|n| n.len()).ok(), Some(names.len()));
    }

    #[test]
    fn list_gives_the_names_as_written(names in prop::collection::vec(any::<String>(), 0..30)) {
        let body = json!(names).to_string().into_bytes();
        let decoded = answer::list(ADDR, &body, LIMIT).expect("a JSON array of strings");
        prop_assert_eq!(decoded.iter().collect::<Vec<&str>>(), names.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Missing fields are false; a name the shard finished counts as cloned even if it also
    /// says in progress; names come back normalised.
    #[test]
    fn clone_progress_sorts_names_by_state(
        states in prop::collection::btree_map(
            "[a-z]{1,6}/[a-zA-Z0-9]{1,8}",
            (prop::option::of(any::<bool>()), prop::option::of(any::<bool>()), opt_string()),
            0..20,
        ),
    ) {
        let mut results = serde_json::Map::new();
        for (name, (cloned, in_progress, progress)) in &states {
            let mut state = serde_json::Map::new();
            cloned.map(|c| state.insert("Cloned".into(), json!(c)));
            in_progress.map(|p| state.insert("CloneInProgress".into(), json!(p)));
            progress.as_ref().map(|p| state.insert("CloneProgress".into(), json!(p)));
            results.insert(name.clone(), Value::Object(state));
        }
        let body = json!({ "Results": results }).to_string().into_bytes();
        let progress = answer::clone_progress(ADDR, &body, LIMIT).expect("a valid answer");
        let normal = |n: &String| RepoName::normalize(n).expect("a two-segment name");
        let cloned: Vec<RepoName> = states.iter().filter(|(_, s)| s.0 == Some(true)).map(|(n, _)| normal(n)).collect();
        let cloning: Vec<RepoName> =
            states.iter().filter(|(_, s)| s.0 != Some(true) && s.1 == Some(true)).map(|(n, _)| normal(n)).collect();
        prop_assert_eq!(progress.cloned, cloned);
        prop_assert_eq!(progress.cloning, cloning);
    }

    /// The Go field names, written out by hand (not by the same derive that reads them), plus a
    /// field gitserver may add later, which is ignored.
    #[test]
    fn repo_update_reads_the_go_fields(
        cloned in any::<bool>(),
        in_progress in any::<bool>(),
        last_fetched in opt_string(),
        last_changed in opt_string(),
        error in any::<String>(),
    ) {
        let body = json!({
            "Cloned": cloned,
            "CloneInProgress": in_progress,
            "LastFetched": last_fetched,
            "LastChanged": last_changed,
            "Error": error,
            "QueueCap": 3,
        })
        .to_string()
        .into_bytes();
        let answer = answer::repo_update(ADDR, &body, LIMIT).expect("a valid answer");
        prop_assert_eq!(answer.cloned, cloned);
        prop_assert_eq!(answer.clone_in_progress, in_progress);
        prop_assert_eq!(answer.last_fetched, last_fetched);
        prop_assert_eq!(answer.last_changed, last_changed);
        prop_assert_eq!(answer.error, error);
    }

    #[test]
    fn enqueue_reads_the_tagged_fields(id in any::<i64>(), name in any::<String>(), url in any::<String>()) {
        let body = json!({ "id": id, "name": name, "url": url }).to_string().into_bytes();
        let answer = answer::enqueue(ADDR, &body, LIMIT).expect("a valid answer");
        prop_assert_eq!((answer.id, answer.name, answer.url), (id, name, url));
    }
}

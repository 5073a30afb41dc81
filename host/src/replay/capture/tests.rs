use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::{read, write, Parts, FORMAT};
use crate::machine::{ObservedClone, Settings, Snapshot};
use crate::model::{AttemptRecord, DesiredRepo, RepoName, ServiceType, Timestamp};
use crate::reconcile::RepoState;
use crate::routing::{Routing, ShardMap};
use crate::schedule::{Backoff, Limits};
use crate::sources::repo_db::DesiredSet;

const AT: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn parts() -> Parts {
    let shards = ShardMap::new(vec!["gs-0:3178".into(), "gs-1:3178".into()], Routing::Rendezvous).expect("shards");
    let mut repos: Vec<DesiredRepo> = ["github.com/a/one", "gitlab.com/b/two", "github.com/c/three"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = RepoName::from_normalized(*name);
            let mut repo = DesiredRepo::new(i as i64 + 1, name.clone(), &format!("https://user:secret@{name}"));
            repo.stars = (i != 1).then_some(10 * i as u32);
            repo.updated_at = Some(Timestamp::from_millis(AT.as_millis() - 86_400_000));
            repo.service_type = Some(ServiceType::new(if i == 1 { "gitlab" } else { "github" }));
            repo.fork = i == 2;
            repo
        })
        .collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    let states = vec![RepoState::Cloned, RepoState::Failed, RepoState::Uncloned];
    let failed = repos[1].name.clone();
    let snapshot = Snapshot::routed(DesiredSet { repos: repos.into(), ..DesiredSet::default() }, &shards);
    let record = AttemptRecord {
        attempts: 2,
        last_error: Some("fatal: \"remote\" hung up\n".into()),
        last_attempt_at: Some(AT),
        next_attempt_at: Some(AT.saturating_add(Duration::from_secs(30))),
        in_flight: false,
        gave_up: None,
    };
    Parts {
        settings: Settings {
            shards,
            limits: Limits { max_in_flight_per_shard: 3, max_in_flight: 7 },
            interval: Duration::from_secs(10),
            backoff: Backoff { base: Duration::from_secs(2), max: Duration::from_secs(600) },
            full_interval: Duration::from_secs(300),
        },
        snapshot: Arc::new(snapshot),
        states,
        attempts: HashMap::from([(failed.clone(), record)]),
        clones: vec![
            ObservedClone {
                name: failed,
                shard: 1,
                finished_at: AT,
                took: Duration::from_millis(4_500),
                succeeded: false,
            },
            ObservedClone {
                name: RepoName::from_normalized("github.com/a/one"),
                shard: 0,
                finished_at: AT,
                took: Duration::from_secs(12),
                succeeded: true,
            },
        ],
        taken_at: AT,
    }
}

fn written(parts: &Parts) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write(parts, file.as_file_mut()).expect("write");
    file
}

#[test]
fn a_written_snapshot_reads_back_with_every_column_state_record_and_clone() {
    let parts = parts();
    let file = written(&parts);
    let capture = read(file.path()).expect("read back");
    assert_eq!(capture.header.format, FORMAT);
    assert_eq!(capture.shards.addrs(), parts.settings.shards.addrs());
    assert_eq!(capture.shards.routing(), Routing::Rendezvous);
    assert_eq!(capture.limits, parts.settings.limits);
    assert_eq!(capture.interval, parts.settings.interval);
    assert_eq!(capture.backoff, parts.settings.backoff);
    assert_eq!(capture.taken_at, AT);
    assert_eq!(capture.repos.len(), 3);
    for (idx, (got, want)) in capture.repos.iter().zip(parts.snapshot.desired.repos.iter()).enumerate() {
        assert_eq!(got.repo.name.as_str(), want.name());
        assert_eq!((got.repo.id, got.repo.stars, got.repo.fork), (want.id(), want.stars(), want.fork()));
        assert_eq!((got.repo.updated_at, got.repo.service_type.as_ref()), (want.updated_at(), want.service_type()));
        assert_eq!(got.state, parts.states[idx]);
        assert_eq!(got.shard, parts.snapshot.routes[idx]);
        assert_eq!(got.record.as_ref(), parts.attempts.get(want.name()));
        // The credentials of the clone URL stay out of the file.
        assert_eq!(got.repo.clone_url().as_deref(), Some(format!("https://{}", want.name()).as_str()));
    }
    assert_eq!(capture.clones.len(), 2);
    assert_eq!((capture.clones[0].took, capture.clones[0].succeeded), (Duration::from_millis(4_500), false));
    assert_eq!((capture.clones[1].took, capture.clones[1].succeeded), (Duration::from_secs(12), true));
}

#[test]
fn the_file_is_gzip_json_lines_that_name_their_kind_and_hold_no_secret() {
    let file = written(&parts());
    let text = gunzip(file.path());
    let kinds: Vec<String> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("a JSON object per line")["kind"].to_string()
        })
        .collect();
    assert_eq!(kinds, ["\"header\"", "\"repo\"", "\"repo\"", "\"repo\"", "\"clone\"", "\"clone\""]);
    assert!(!text.contains("secret"), "a clone URL's credentials reached the file");
}

fn gunzip(path: &std::path::Path) -> String {
    let mut text = String::new();
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"));
    std::io::Read::read_to_string(&mut gz, &mut text).expect("gzip");
    text
}

fn snapshot_of_lines(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let mut gz = flate2::write::GzEncoder::new(file.as_file_mut(), flate2::Compression::fast());
    for line in lines {
        writeln!(gz, "{line}").expect("write");
    }
    gz.finish().expect("finish");
    file
}

#[test]
fn a_bad_file_is_refused_naming_the_file_and_the_line() {
    let good = written(&parts());
    let text = gunzip(good.path());
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![header.replace(FORMAT, "clonekeeper-snapshot/9")], "format \"clonekeeper-snapshot/9\""),
        (
            vec![header.to_string(), lines[1].replace("gs-0:3178", "gs-9:3178").replace("gs-1:3178", "gs-9:3178")],
            "line 2: shard \"gs-9:3178\"",
        ),
        (vec![header.to_string(), "{\"kind\":\"repo\",\"id\":1}".to_string()], "line 2: missing field"),
        (
            vec![header.to_string(), lines[2].replace("\"state\":\"", "\"state\":\"sideways")],
            "line 2: state \"sideways",
        ),
        (vec![header.to_string(), lines[1].to_string(), lines[1].to_string()], "appears twice"),
        (vec![lines[1].to_string()], "line 1: not a snapshot header"),
    ];
    for (case, want) in cases {
        let refs: Vec<&str> = case.iter().map(String::as_str).collect();
        let file = snapshot_of_lines(&refs);
        let error = read(file.path()).expect_err(want);
        assert!(error.contains(want), "{error:?} does not say {want:?}");
        assert!(error.contains(&file.path().display().to_string()), "{error:?} does not name the file");
    }
    let plain = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(plain.path(), "{\"kind\":\"header\"}\n").expect("write");
    let error = read(plain.path()).expect_err("not gzip");
    assert!(error.contains("not a gzip-compressed snapshot"), "{error}");
}

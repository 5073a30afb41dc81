//! The policy engine wired into the real tick loop: SQLite repo DB, a dev gitserver shard with
//! real `git clone`, and a policy folder full of modules, some hostile. Clones must keep
//! flowing, the retry policy must decide retries and give-ups, and status must show every
//! module's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::componentize::componentize;
use super::PolicyHost;
use crate::config::Config;
use crate::db::Database;
use crate::schedule::BuiltinRetry;
use crate::sidecar::{self, Parts, Shared};
use crate::sources::gitserver::{ClientConfig, GitserverClient};
use crate::sources::repo_db::{RepoDb, SQLITE_SCHEMA_2020_10};
use crate::state::StateStore;

const PRELUDE: &str = include_str!("testdata/prelude.wat");

fn component(name: &str, world: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/policy/testdata/{name}.wat"));
    let text = std::fs::read_to_string(path).expect("test module exists").replace(";; @prelude", PRELUDE);
    componentize(edit(text).as_bytes(), Some(world)).expect("test module encodes")
}

const REPOS: usize = 12;
const BROKEN: &str = "github.com/acme/broken";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_policies_never_stop_cloning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();

    // Source repos, and one row whose clone URL leads nowhere.
    let mut rows = Vec::new();
    for idx in 0..REPOS {
        let name = format!("github.com/acme/repo-{idx:02}");
        let path = root.join(format!("sources/repo-{idx:02}.git"));
        let made = gitserver_dev::fixture::source_repo(&path, &name).expect("source repo");
        rows.push((name, made.to_string_lossy().to_string()));
    }
    rows.push((BROKEN.to_string(), root.join("sources/missing.git").to_string_lossy().to_string()));
    let db_url = format!("sqlite://{}", root.join("repos.db").display());
    let Database::Sqlite(pool) = Database::connect(&db_url).await.expect("sqlite") else { panic!("sqlite") };
    sqlx::raw_sql(SQLITE_SCHEMA_2020_10).execute(&pool).await.expect("schema");
    sqlx::query("INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{}')")
        .execute(&pool)
        .await
        .expect("service");
    for (idx, (name, url)) in rows.iter().enumerate() {
        let id = idx as i64 + 1;
        sqlx::query("INSERT INTO repo (id, name, external_service_type, external_service_id, external_id, created_at) VALUES (?, ?, 'github', '1', ?, ?)")
            .bind(id).bind(name).bind(format!("R_{id}")).bind(1_600_000_000_000i64 + id)
            .execute(&pool).await.expect("repo");
        sqlx::query("INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES (1, ?, ?)")
            .bind(id)
            .bind(url)
            .execute(&pool)
            .await
            .expect("url");
    }
    pool.close().await;

    let shard = gitserver_dev::Server::start(gitserver_dev::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        repos_dir: root.join("gitserver-0"),
        max_concurrent_clones: 4,
        clone_delay: Duration::from_millis(20),
    })
    .expect("dev gitserver");

    // The policy folder: a trapping prioritizer (serves first by name, then is quarantined),
    // a limiter (one clone in flight per key), a retrier (give up after 3 attempts), and junk.
    let policies = root.join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(policies.join("a-trap.wasm"), component("trap", "prioritizer", |t| t)).expect("write");
    let limits =
        component("limits", "limiter", |t| t.replace("(i32.const 3600 (; PER_HOUR ;))", "(i32.const 3600000)"));
    std::fs::write(policies.join("b-limits.wasm"), limits).expect("write");
    let retry = component("retry", "retrier", |t| t.replace("(i64.const 60000 (; DELAY ;))", "(i64.const 50)"));
    std::fs::write(policies.join("c-retry.wasm"), retry).expect("write");
    std::fs::write(policies.join("d-junk.wasm"), b"\x00asm\x0d\x00\x01\x00not really").expect("write");

    let vars = [
        ("CLONEKEEPER_REPO_DB_URL", db_url.clone()),
        ("CLONEKEEPER_GITSERVER_ADDRS", shard.addr().to_string()),
        ("CLONEKEEPER_SYNC_INTERVAL", "200ms".to_string()),
        ("CLONEKEEPER_ADMIN_LISTEN", "127.0.0.1:0".to_string()),
        ("CLONEKEEPER_POLICY_DIR", policies.display().to_string()),
        ("CLONEKEEPER_POLICY_CALL_TIMEOUT", "200ms".to_string()),
        ("CLONEKEEPER_POLICY_QUARANTINE_AFTER", "2".to_string()),
    ];
    let config = Config::load_from(None, vars.map(|(k, v)| (k.to_string(), v))).expect("config");
    let addrs = vec![shard.addr().to_string()];
    let retry = BuiltinRetry { backoff: config.backoff, max_attempts: config.max_attempts };
    let host = Arc::new(PolicyHost::from_config(&config.policy, addrs, retry).expect("policy host"));
    let loader = Arc::clone(&host);
    tokio::task::spawn_blocking(move || loader.reload(crate::model::Timestamp::now()))
        .await
        .expect("loader")
        .expect("reload");

    let shared = Shared::default();
    let status = Arc::clone(&shared.status);
    let (_control_tx, control_rx) = tokio::sync::mpsc::channel(8);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let parts = Parts {
        repo_db: RepoDb::open(Database::connect(&db_url).await.expect("db")).await.expect("repo db"),
        state: StateStore::open(Database::connect(&db_url).await.expect("db")).await.expect("state"),
        client: GitserverClient::new(ClientConfig::default()).expect("client"),
        prioritizer: host.clone(),
        retry: host.clone(),
        rate_limits: host.clone(),
        policy: Some(Arc::clone(&host)),
        config,
    };
    let loop_task = tokio::spawn(sidecar::run(parts, shared, control_rx, async {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = status.load_full();
        if now.totals.cloned == REPOS as u64 && now.dispatches.failed >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "clones stopped flowing: {now:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    loop_task.await.expect("loop task").expect("loop ran");

    let state = StateStore::open(Database::connect(&db_url).await.expect("db")).await.expect("state");
    let records = state.load().await.expect("records");
    let broken = records.iter().find(|(name, _)| name.as_str() == BROKEN).map(|(_, r)| r).expect("broken record");
    assert_eq!(broken.attempts, 3, "{broken:?}");
    assert_eq!(broken.gave_up.as_deref(), Some("too many attempts"), "the retrier gave up: {broken:?}");

    let policies = status.load_full().policies.clone();
    let state_of = |name: &str| policies.iter().find(|p| p.name == name).map(|p| p.state.as_str());
    assert_eq!(state_of("a-trap"), Some("quarantined"), "{policies:#?}");
    assert_eq!(state_of("b-limits"), Some("active"), "{policies:#?}");
    assert_eq!(state_of("c-retry"), Some("active"), "{policies:#?}");
    assert_eq!(state_of("d-junk"), Some("rejected"), "{policies:#?}");
    let trap = policies.iter().find(|p| p.name == "a-trap").expect("listed");
    assert!(trap.last_error.as_deref().unwrap_or_default().contains("trapped"), "{trap:?}");
    let limits = policies.iter().find(|p| p.name == "b-limits").expect("listed");
    assert!(limits.calls > 0 && limits.failures == 0, "{limits:?}");
    shard.kill();
}

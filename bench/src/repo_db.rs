//! Reading N desired rows through the repo source vs `psql -c "COPY (…) TO STDOUT"`.
//!
//! Two baselines, both Postgres's own fastest way out, measured in the same run against the
//! same database: the same statement (the ratio is what clonekeeper's decoding costs), and
//! the I/O floor, only what a tick needs (id, name, clone URL; the ratio is what the
//! statement's extra columns cost). Rows carry GitHub-like `metadata` JSON (~450 bytes) and 2%
//! are soft-deleted, as in a real late-2020 repo DB.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use clonekeeper::db::Database;
use clonekeeper::model::RepoColumns;
use clonekeeper::sources::repo_db::{RepoDb, POSTGRES_SCHEMA_2020_10};

use crate::alloc;
use crate::reconcile::fmt_duration;
use crate::report::{median, Section};

/// The section, and the URL of the database it read (the tick section reuses it).
pub async fn run(admin_url: &str, n_repos: usize, runs: usize) -> anyhow::Result<(Section, String)> {
    let db_name = format!("ck_bench_rows_v2_{n_repos}");
    let live = n_repos - n_repos / 50;
    let db_url = prepare(admin_url, &db_name, n_repos).await?;
    let repo_db = RepoDb::open(Database::connect(&db_url).await?).await?;
    let sql = repo_db.desired_sql(RepoColumns::ALL);

    let mut ours = Vec::new();
    let mut extra_peak = 0;
    let mut kept = 0;
    for _ in 0..runs {
        let before = alloc::live();
        alloc::reset_peak();
        let started = Instant::now();
        let set = repo_db.load_desired().await?;
        ours.push(started.elapsed());
        extra_peak = extra_peak.max(alloc::peak() - before);
        kept = alloc::live() - before;
        anyhow::ensure!(set.repos.len() == live, "read {} rows, expected {live}", set.repos.len());
    }
    let read_with = |columns: RepoColumns| {
        let repo_db = repo_db.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..runs {
                let started = Instant::now();
                let set = repo_db.load_desired_reading(columns).await?;
                times.push(started.elapsed());
                anyhow::ensure!(set.repos.len() == live, "read {} rows, expected {live}", set.repos.len());
                anyhow::ensure!(columns.stars || set.repos.iter().all(|r| r.stars().is_none()), "stars were read");
            }
            Ok::<_, anyhow::Error>(median(&mut times))
        }
    };
    let t_writeback = read_with(RepoColumns { recorded: true, ..RepoColumns::default() }).await?;
    let t_minimal = read_with(RepoColumns::default()).await?;

    let copy_of = |sql: &str| -> anyhow::Result<Vec<std::time::Duration>> {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = Command::new("psql")
                .args(["-X", "-q", "-d", &db_url, "-c", &format!("COPY ({sql}) TO STDOUT")])
                .stdout(Stdio::null())
                .status()
                .context("running psql")?;
            times.push(started.elapsed());
            anyhow::ensure!(status.success(), "psql COPY failed");
        }
        Ok(times)
    };
    let mut copy = copy_of(&sql)?;
    let mut floor = copy_of(
        "SELECT repo.id, repo.name, esr.clone_url FROM repo \
           JOIN external_service_repos AS esr ON esr.repo_id = repo.id \
          WHERE repo.deleted_at IS NULL",
    )?;

    let t = median(&mut ours);
    let b = median(&mut copy);
    let f = median(&mut floor);
    let per_repo = |bytes: usize| bytes as f64 / n_repos as f64;
    let mut section = Section::new(format!(
        "Repo DB read: {n_repos} rows (2% soft-deleted, GitHub-like metadata), Postgres, late-2020 schema"
    ));
    let ratio = |t: std::time::Duration| format!("{:.2}×", t.as_secs_f64() / f.as_secs_f64());
    section.row(
        "every column (a module reading stars and details, write-back on): RepoDb::load_desired",
        fmt_duration(t),
        "",
    );
    section.row("baseline: psql COPY (same query) TO STDOUT > /dev/null", fmt_duration(b), "");
    section.row("ratio load / COPY", format!("{:.2}×", t.as_secs_f64() / b.as_secs_f64()), "goal ≤ 1.3×");
    section.row("I/O floor: psql COPY (SELECT id, name, clone_url … join) TO STDOUT > /dev/null", fmt_duration(f), "");
    section.row("ratio every column / floor", ratio(t), "");
    section.row(
        "no module, write-back on (id, name, clone URL, created_at, repo.cloned)",
        fmt_duration(t_writeback),
        "",
    );
    section.row("ratio / floor", ratio(t_writeback), "");
    section.row("no module, no write-back, the default (id, name, clone URL, created_at)", fmt_duration(t_minimal), "");
    section.row("ratio / floor", ratio(t_minimal), "goal ≤ 1.3× (issue 10)");
    section.row(
        "peak memory during the load",
        format!("{:.0} MB ({:.0} bytes/repo)", extra_peak as f64 / 1e6, per_repo(extra_peak)),
        "a few hundred MB",
    );
    section.row("desired set kept", format!("{:.0} MB ({:.0} bytes/repo)", kept as f64 / 1e6, per_repo(kept)), "");
    section.notes.push(
        "Stars live in `repo.metadata` JSON in this schema: parsing it costs about as much as all the other columns together. The sidecar reads only the columns something uses (`RepoColumns`): id, name, clone URL and created_at always; stars and the details (service type, updated_at, fork, archived, private) while a module that may be asked sees them; the recorded clone state only with write-back on. The last rows are the sidecar's read without a policy module. What separates the default read from the floor is the reader's work (sqlx's rows, the check that a name is in normal form, the sort by name) and created_at; the `DISTINCT ON` that picks one clone URL per repo adds little to the statement (next section)."
            .to_string(),
    );
    Ok((section, db_url))
}

/// Creates and fills the benchmark database once; later runs reuse it.
async fn prepare(admin_url: &str, db_name: &str, n_repos: usize) -> anyhow::Result<String> {
    let Database::Postgres(admin) = Database::connect(admin_url).await? else {
        anyhow::bail!("the benchmark needs a Postgres admin URL");
    };
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    let db_url = format!("{base}/{db_name}");
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1").bind(db_name).fetch_optional(&admin).await?;
    if exists.is_some() {
        let Database::Postgres(pool) = Database::connect(&db_url).await? else { unreachable!() };
        let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM repo").fetch_one(&pool).await.ok();
        if rows == Some(n_repos as i64) {
            return Ok(db_url);
        }
        pool.close().await;
        sqlx::query(&format!("DROP DATABASE \"{db_name}\" WITH (FORCE)")).execute(&admin).await?;
    }
    eprintln!("creating {db_name} with {n_repos} repos…");
    sqlx::query(&format!("CREATE DATABASE \"{db_name}\"")).execute(&admin).await?;
    let Database::Postgres(pool) = Database::connect(&db_url).await? else { unreachable!() };
    sqlx::raw_sql(POSTGRES_SCHEMA_2020_10).execute(&pool).await?;
    let fill = format!(
        "INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{{}}');
         INSERT INTO repo (id, name, external_service_type, external_service_id, external_id, created_at, updated_at, fork, archived, private, metadata, deleted_at)
           SELECT i, 'github.com/org-' || (i % 5000) || '/repo-' || i, 'github', '1', 'R_' || i,
                  now() - make_interval(secs => i), now(), i % 7 = 0, i % 11 = 0, i % 13 = 0,
                  jsonb_build_object('stargazerCount', i % 1000,
                                     'description', repeat('a repository description ', 8),
                                     'url', 'https://github.com/org/repo-' || i, 'isFork', false,
                                     'primaryLanguage', jsonb_build_object('name', 'Go'),
                                     'viewerPermission', 'READ', 'nameWithOwner', 'org/repo-' || i,
                                     'id', 'MDEwOlJlcG9zaXRvcnk' || i),
                  CASE WHEN i % 50 = 0 THEN now() END
           FROM generate_series(1, {n_repos}) AS i;
         INSERT INTO external_service_repos (external_service_id, repo_id, clone_url)
           SELECT 1, i, 'https://github.com/org-' || (i % 5000) || '/repo-' || i || '.git'
           FROM generate_series(1, {n_repos}) AS i;
         ANALYZE;"
    );
    sqlx::raw_sql(&fill).execute(&pool).await?;
    Ok(db_url)
}

//! Reading N desired rows through the repo source vs `psql -c "COPY (same query) TO STDOUT"`.
//!
//! The baseline is Postgres's own fastest way out for the same statement, measured in the
//! same run against the same database; the ratio is what clonekeeper's decoding costs.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use clonekeeper::db::Database;
use clonekeeper::sources::repo_db::{RepoDb, POSTGRES_SCHEMA_2020_10};

use crate::alloc;
use crate::reconcile::fmt_duration;
use crate::report::{median, Section};

pub async fn run(admin_url: &str, n_repos: usize, runs: usize) -> anyhow::Result<Section> {
    let db_name = format!("ck_bench_rows_{n_repos}");
    let db_url = prepare(admin_url, &db_name, n_repos).await?;
    let repo_db = RepoDb::open(Database::connect(&db_url).await?).await?;
    let sql = repo_db.desired_sql();

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
        anyhow::ensure!(set.repos.len() == n_repos, "read {} rows, expected {n_repos}", set.repos.len());
    }

    let mut copy = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("psql")
            .args(["-X", "-q", "-d", &db_url, "-c", &format!("COPY ({sql}) TO STDOUT")])
            .stdout(Stdio::null())
            .status()
            .context("running psql")?;
        copy.push(started.elapsed());
        anyhow::ensure!(status.success(), "psql COPY failed");
    }

    let t = median(&mut ours);
    let b = median(&mut copy);
    let per_repo = |bytes: usize| bytes as f64 / n_repos as f64;
    let mut section = Section::new(format!("Repo DB read: {n_repos} rows, Postgres, late-2020 schema"));
    section.row("RepoDb::load_desired (one streaming query, decoded)", fmt_duration(t), "");
    section.row("baseline: psql COPY (same query) TO STDOUT > /dev/null", fmt_duration(b), "");
    section.row("ratio load / COPY", format!("{:.2}×", t.as_secs_f64() / b.as_secs_f64()), "goal ≤ 1.3×");
    section.row(
        "peak memory during the load",
        format!("{:.0} MB ({:.0} bytes/repo)", extra_peak as f64 / 1e6, per_repo(extra_peak)),
        "a few hundred MB",
    );
    section.row("desired set kept", format!("{:.0} MB ({:.0} bytes/repo)", kept as f64 / 1e6, per_repo(kept)), "");
    Ok(section)
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
         INSERT INTO repo (id, name, external_service_type, external_service_id, external_id, created_at, updated_at, fork, archived, private, metadata)
           SELECT i, 'github.com/org-' || (i % 5000) || '/repo-' || i, 'github', '1', 'R_' || i,
                  now() - make_interval(secs => i), now(), i % 7 = 0, i % 11 = 0, i % 13 = 0,
                  jsonb_build_object('stargazerCount', i % 1000)
           FROM generate_series(1, {n_repos}) AS i;
         INSERT INTO external_service_repos (external_service_id, repo_id, clone_url)
           SELECT 1, i, 'https://github.com/org-' || (i % 5000) || '/repo-' || i || '.git'
           FROM generate_series(1, {n_repos}) AS i;
         ANALYZE;"
    );
    sqlx::raw_sql(&fill).execute(&pool).await?;
    Ok(db_url)
}

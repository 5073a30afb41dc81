//! The desired-repos statement's plan on each of the three schema shapes at N repos, as
//! Postgres runs it (`EXPLAIN (ANALYZE, FORMAT JSON)`): its execution time, and every sort in
//! the plan with the rows it sorted and where. Measured for the sidecar's default read (no
//! policy module, no write-back) and for a read of every column, beside the I/O floor of the
//! same database (the plan of `SELECT id, name, clone URL`), so each cost is a ratio.

use anyhow::Context as _;
use clonekeeper::db::Database;
use clonekeeper::model::RepoColumns;
use clonekeeper::sources::repo_db::{RepoDb, POSTGRES_SCHEMA_2020_06, POSTGRES_SCHEMA_2021};
use serde_json::Value;

use crate::report::Section;

/// One shape: its database, the schema text and the statements that fill it.
struct Shape {
    name: &'static str,
    db_name: String,
    schema: &'static str,
    fill: String,
    floor: &'static str,
}

/// What one `EXPLAIN ANALYZE` said.
struct Plan {
    millis: f64,
    sorts: Vec<String>,
}

pub async fn run(admin_url: &str, n_repos: usize, existing_2020_10: &str) -> anyhow::Result<Section> {
    let rows = format!(
        "SELECT i, 'github.com/org-' || (i % 5000) || '/repo-' || i, 'github', '1', 'R_' || i, \
                now() - make_interval(secs => i), now(), i % 7 = 0, i % 11 = 0, i % 13 = 0, \
                CASE WHEN i % 50 = 0 THEN now() END \
           FROM generate_series(1, {n_repos}) AS i"
    );
    let columns = "id, name, external_service_type, external_service_id, external_id, created_at, updated_at, \
                   fork, archived, private, deleted_at";
    let shapes = [
        Shape {
            name: "2020-06 (clone URL in `repo.sources` JSON)",
            db_name: format!("ck_bench_plan_2020_06_{n_repos}"),
            schema: POSTGRES_SCHEMA_2020_06,
            fill: format!(
                "INSERT INTO repo ({columns}, sources) SELECT *, jsonb_build_object('extsvc:github:1', \
                   jsonb_build_object('ID', 'extsvc:github:1', 'CloneURL', 'https://github.com/org/repo-' || r.i || '.git')) \
                   FROM ({rows}) AS r(i, n, t, s, e, c, u, f, a, p, d)"
            ),
            floor: "SELECT id, name, sources FROM repo WHERE deleted_at IS NULL",
        },
        Shape {
            name: "2020-10 (`external_service_repos`, `repo.cloned`)",
            db_name: String::new(),
            schema: "",
            fill: String::new(),
            floor: "SELECT repo.id, repo.name, esr.clone_url FROM repo \
                    JOIN external_service_repos AS esr ON esr.repo_id = repo.id WHERE repo.deleted_at IS NULL",
        },
        Shape {
            name: "2021 (`gitserver_repos`, `repo.stars`)",
            db_name: format!("ck_bench_plan_2021_{n_repos}"),
            schema: POSTGRES_SCHEMA_2021,
            fill: format!(
                "INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{{}}'); \
                 INSERT INTO repo ({columns}) {rows}; \
                 UPDATE repo SET stars = id % 1000; \
                 INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) \
                   SELECT 1, i, 'https://github.com/org/repo-' || i || '.git' FROM generate_series(1, {n_repos}) AS i; \
                 INSERT INTO gitserver_repos (repo_id, clone_status, shard_id) \
                   SELECT i, CASE WHEN i % 10 = 1 THEN 'not_cloned' ELSE 'cloned' END, 'shard-' || (i % 8) \
                   FROM generate_series(1, {n_repos}) AS i"
            ),
            floor: "SELECT repo.id, repo.name, esr.clone_url FROM repo \
                    JOIN external_service_repos AS esr ON esr.repo_id = repo.id WHERE repo.deleted_at IS NULL",
        },
    ];

    let mut section = Section::new(format!(
        "Query plans: the desired-repos statement on each schema shape, {n_repos} rows, Postgres (EXPLAIN ANALYZE)"
    ));
    for shape in &shapes {
        let db_url = if shape.schema.is_empty() {
            existing_2020_10.to_string()
        } else {
            prepare(admin_url, shape, n_repos).await?
        };
        let Database::Postgres(pool) = Database::connect(&db_url).await? else {
            anyhow::bail!("the plans need Postgres");
        };
        let repo_db = RepoDb::open(Database::Postgres(pool.clone())).await?;
        let floor = explain(&db_url, shape.floor)?;
        let default = explain(&db_url, &repo_db.desired_sql(RepoColumns::default()))?;
        let every = explain(&db_url, &repo_db.desired_sql(RepoColumns::ALL))?;
        let describe = |plan: &Plan| {
            let sorts = if plan.sorts.is_empty() { "no sort".to_string() } else { plan.sorts.join("; ") };
            format!("{:.0} ms = {:.2}× floor ({sorts})", plan.millis, plan.millis / floor.millis)
        };
        section.row(&format!("{}: floor (id, name, clone URL)", shape.name), format!("{:.0} ms", floor.millis), "");
        section.row(&format!("{}: default read (no module, no write-back)", shape.name), describe(&default), "");
        section.row(&format!("{}: every column", shape.name), describe(&every), "");
        pool.close().await;
    }
    section.notes.push(
        "Execution times are Postgres's own (`EXPLAIN ANALYZE`, with its per-node timing off), so they leave out sending the rows, which the sections above measure. \
         Each sort is named with the relation it sorts, the rows sorted and where it ran (memory or disk). \
         The sort in the two newer shapes is the `DISTINCT ON (repo_id)` that picks one clone URL per repo (the lowest `external_service_id`): `external_service_repos` is sorted, not the join, and the repo rows are merged with it in id order. \
         The 2020-06 shape has no such table: each repo's URL is its own `sources` JSON."
            .to_string(),
    );
    Ok(section)
}

/// Runs `EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)` of `sql` with psql (best of two, the
/// first warming the cache).
fn explain(db_url: &str, sql: &str) -> anyhow::Result<Plan> {
    let mut best: Option<Plan> = None;
    for _ in 0..2 {
        let output = std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-d", db_url, "-c"])
            .arg(format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"))
            .output()
            .context("running psql")?;
        anyhow::ensure!(output.status.success(), "explaining {sql}: {}", String::from_utf8_lossy(&output.stderr));
        let json: Value = serde_json::from_slice(&output.stdout).context("an EXPLAIN document")?;
        let top = json.get(0).context("an EXPLAIN document")?;
        let millis = top.get("Execution Time").and_then(Value::as_f64).context("an execution time")?;
        let mut sorts = Vec::new();
        collect_sorts(top.get("Plan").context("a plan")?, &mut sorts);
        if best.as_ref().is_none_or(|b| millis < b.millis) {
            best = Some(Plan { millis, sorts });
        }
    }
    best.context("two runs")
}

/// Every `Sort` node below `node`: the relation (or set-returning function) under it, its rows
/// over all its loops, and its method.
fn collect_sorts(node: &Value, out: &mut Vec<String>) {
    if node.get("Node Type").and_then(Value::as_str) == Some("Sort") {
        let rows = node.get("Actual Rows").and_then(Value::as_f64).unwrap_or(0.0)
            * node.get("Actual Loops").and_then(Value::as_f64).unwrap_or(1.0);
        let method = node.get("Sort Method").and_then(Value::as_str).unwrap_or("sort");
        let space = node.get("Sort Space Type").and_then(Value::as_str).unwrap_or("?");
        let relation = first_relation(node).unwrap_or("?");
        out.push(format!("sorts {rows:.0} rows of {relation}, {method}, {space}"));
    }
    for child in node.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        collect_sorts(child, out);
    }
}

fn first_relation(node: &Value) -> Option<&str> {
    node.get("Relation Name")
        .or_else(|| node.get("Function Name"))
        .and_then(Value::as_str)
        .or_else(|| node.get("Plans")?.as_array()?.iter().find_map(first_relation))
}

/// Creates and fills the shape's database once; later runs reuse it.
async fn prepare(admin_url: &str, shape: &Shape, n_repos: usize) -> anyhow::Result<String> {
    let Database::Postgres(admin) = Database::connect(admin_url).await? else {
        anyhow::bail!("the benchmark needs a Postgres admin URL");
    };
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    let db_url = format!("{base}/{}", shape.db_name);
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&shape.db_name)
        .fetch_optional(&admin)
        .await?;
    if exists.is_some() {
        let Database::Postgres(pool) = Database::connect(&db_url).await? else { unreachable!() };
        let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM repo").fetch_one(&pool).await.ok();
        pool.close().await;
        if rows == Some(n_repos as i64) {
            return Ok(db_url);
        }
        sqlx::query(&format!("DROP DATABASE \"{}\" WITH (FORCE)", shape.db_name)).execute(&admin).await?;
    }
    eprintln!("creating {} with {n_repos} repos…", shape.db_name);
    sqlx::query(&format!("CREATE DATABASE \"{}\"", shape.db_name)).execute(&admin).await?;
    let Database::Postgres(pool) = Database::connect(&db_url).await? else { unreachable!() };
    sqlx::raw_sql(shape.schema).execute(&pool).await?;
    sqlx::raw_sql(&format!("{}; ANALYZE;", shape.fill)).execute(&pool).await?;
    pool.close().await;
    Ok(db_url)
}

//! `clonekeeper status`: a running sidecar's status as a table.

use std::process::ExitCode;

use crate::status::Status;

pub async fn main(admin: &str, json: bool) -> ExitCode {
    let url =
        if admin.starts_with("http") { format!("{admin}/v1/status") } else { format!("http://{admin}/v1/status") };
    let answer = async {
        let response = reqwest::get(&url).await?.error_for_status()?;
        response.json::<Status>().await
    };
    match answer.await {
        Ok(status) if json => {
            println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(status) => {
            print!("{}", render(&status));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("clonekeeper status: reading {url} failed: {error}");
            ExitCode::from(1)
        }
    }
}

/// The table: one line per shard and a total.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "{:<28} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>7} {:>9}  {}\n",
        "SHARD", "DESIRED", "CLONED", "CLONING", "UNCLONED", "FAILED", "ORPHANED", "QUEUED", "IN_FLIGHT", "STATE"
    );
    let line = |name: &str, c: &crate::status::StateCounts, state: &str| {
        format!(
            "{:<28} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:>7} {:>9}  {}\n",
            name, c.desired, c.cloned, c.cloning, c.uncloned, c.failed, c.orphaned, c.queued, c.in_flight, state
        )
    };
    for shard in &status.shards {
        let state = match (&shard.error, shard.reachable) {
            (Some(error), _) => format!("UNREACHABLE: {error}"),
            (None, true) => "ok".to_string(),
            (None, false) => "not yet listed".to_string(),
        };
        out.push_str(&line(&shard.addr, &shard.counts, &state));
    }
    out.push_str(&line("TOTAL", &status.totals, &format!("{} ticks", status.ticks)));
    if let Some(error) = &status.repo_db_error {
        out.push_str(&format!("repo DB: {error}\n"));
    }
    out
}

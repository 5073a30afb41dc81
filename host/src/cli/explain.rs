//! `clonekeeper explain NAME`: why one repo is (not) cloned, from a running sidecar.

use std::process::ExitCode;

use crate::explain::Explain;

pub async fn main(admin: &str, name: &str, json: bool) -> ExitCode {
    let base = if admin.starts_with("http") { admin.to_string() } else { format!("http://{admin}") };
    let url = format!("{base}/v1/repos/{}", name.trim_start_matches('/'));
    let answer = async {
        let response = reqwest::get(&url).await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    match answer.await {
        Ok((status, body)) if status.is_success() => match serde_json::from_str::<Explain>(&body) {
            Ok(explain) if json => {
                println!("{}", serde_json::to_string_pretty(&explain).unwrap_or(body));
                ExitCode::SUCCESS
            }
            Ok(explain) => {
                print!("{}", render(&explain));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("clonekeeper explain: {url} answered something unexpected: {error}");
                ExitCode::from(1)
            }
        },
        Ok((status, body)) => {
            eprintln!("clonekeeper explain: {url}: HTTP {status}: {body}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("clonekeeper explain: reading {url} failed: {error}");
            ExitCode::from(1)
        }
    }
}

/// A short report, one fact per line, ending with a sentence that answers "why".
pub fn render(e: &Explain) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<16} {value}\n"));
    line("repo", e.name.clone());
    if !e.desired {
        line("desired", "no (not in the repo DB, or deleted)".to_string());
        line("listed on", if e.listed_on.is_empty() { "no shard".to_string() } else { e.listed_on.join(", ") });
        return out;
    }
    line("desired", format!("yes (repo id {})", e.repo_id.unwrap_or_default()));
    line("owning shard", e.shard.clone().unwrap_or_default());
    line("state", e.state.clone().unwrap_or_else(|| "not reconciled yet".to_string()));
    if !e.listed_on.is_empty() {
        line("listed on", e.listed_on.join(", "));
    }
    line("attempts", e.attempts.to_string());
    if let Some(error) = &e.last_error {
        line("last error", error.clone());
    }
    if let Some(at) = &e.last_attempt_at {
        line("last attempt", at.clone());
    }
    if let Some(at) = &e.next_attempt_at {
        line("next attempt", format!("{at}{}", if e.backing_off { " (backing off)" } else { "" }));
    }
    if let Some(reason) = &e.gave_up {
        line("gave up", reason.clone());
    }
    if e.in_flight {
        line("in flight", "yes".to_string());
    }
    if let Some(position) = e.queue_position {
        line("queue position", position.to_string());
    }
    if let Some(d) = &e.last_decision {
        line("last decision", format!("{} → {} (module {})", d.interface, d.decision, d.module));
        if let Some(why) = &d.explanation {
            line("why", why.clone());
        }
    }
    if let Some(limit) = &e.rate_limit {
        let why = limit.explanation.as_deref().map_or(String::new(), |why| format!(": {why}"));
        line("rate limit", format!("{} at {} (module {}){why}", limit.key, limit.limit, limit.module));
    }
    for shadow in &e.shadow {
        let serving = e.queue_position.map_or(String::new(), |p| format!(", serving order #{}", p + 1));
        line(
            "shadow",
            format!(
                "{} → {}, its order #{}{serving} (not serving)",
                shadow.module,
                shadow.decision,
                shadow.position + 1
            ),
        );
    }
    if let Some(until) = &e.shard_paused_until {
        line("shard paused", format!("until {until} (the shard is failing)"));
    }
    if let Some(problem) = &e.problem {
        line("problem", problem.clone());
    }
    out.push_str(&format!("\n{}\n", why(e)));
    out
}

fn why(e: &Explain) -> String {
    match e.state.as_deref() {
        Some("cloned") => "It is cloned on its owning shard.".to_string(),
        Some("cloning") => "A clone is in progress.".to_string(),
        Some("unknown") => "Its shard has never answered a list call, so nothing is known or dispatched.".to_string(),
        _ if e.problem.is_some() => "Its repo DB row cannot be dispatched; fix the row.".to_string(),
        _ if e.gave_up.is_some() => {
            "The retry policy gave up on it; `POST /v1/repos/NAME/enqueue` retries now.".to_string()
        }
        _ if e.shard_paused_until.is_some() => "Its shard is failing; dispatches to it are paused.".to_string(),
        _ if e.backing_off => "Its last dispatch failed; it is waiting for its next attempt.".to_string(),
        _ if e.queue_position.is_some() => "It is queued and waits for a dispatch slot.".to_string(),
        _ => "It is due and will be queued on the next tick.".to_string(),
    }
}

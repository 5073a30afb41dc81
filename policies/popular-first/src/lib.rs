//! popular-first: stars and recent activity first, forks and archived repositories last.
//!
//! A repository scores
//!
//! ```text
//! stars_weight · log2(1 + stars)
//!   + activity_weight · 2^(−days since updated_at / activity_half_life_days)
//!   − fork_penalty (if a fork) − archived_penalty (if archived)
//! ```
//!
//! With the defaults a repository with 1,000 stars scores about 10, one updated today 10 more,
//! and the penalties (1,000 each) put every fork and archived repository after all others.
//! Unknown stars count as 0, an unknown `updated_at` as no recent activity.
//!
//! It reads three columns of the batch (stars, updated-at, flags), so only those cross into
//! the module.

use std::sync::Mutex;

use clonekeeper::policy::log::{log, Level};
use clonekeeper::policy::types::{Column, RepoBatch, RepoFlags, RepoView, Timestamp};
use exports::clonekeeper::policy::{explain, lifecycle, rank};
use rank::Ranking;

wit_bindgen::generate!({ path: "../../wit", world: "prioritizer" });

/// The weights; every key of `popular-first.toml` is one of these fields.
#[derive(Clone, Copy, Debug)]
struct Weights {
    stars_weight: f64,
    activity_weight: f64,
    activity_half_life_days: f64,
    fork_penalty: f64,
    archived_penalty: f64,
}

const DEFAULTS: Weights = Weights {
    stars_weight: 1.0,
    activity_weight: 10.0,
    activity_half_life_days: 30.0,
    fork_penalty: 1000.0,
    archived_penalty: 1000.0,
};

const DAY_MS: f64 = 86_400_000.0;

static WEIGHTS: Mutex<Weights> = Mutex::new(DEFAULTS);

struct Policy;

impl lifecycle::Guest for Policy {
    fn init(text: String) -> Result<(), String> {
        let weights = parse_config(&text).map_err(|e| format!("popular-first.toml: {e}"))?;
        log(Level::Info, "popular-first configured", &[("weights".into(), format!("{weights:?}"))]);
        *WEIGHTS.lock().unwrap() = weights;
        Ok(())
    }
}

impl rank::Guest for Policy {
    fn columns() -> Vec<Column> {
        vec![Column::Stars, Column::UpdatedAt, Column::Flags]
    }

    fn rank(now: Timestamp, repos: RepoBatch) -> Ranking {
        let weights = *WEIGHTS.lock().unwrap();
        let rows = repos.stars.iter().zip(&repos.updated_at).zip(&repos.flags);
        let scores = rows
            .map(|((&stars, &updated_at), &flags)| {
                // Unknown stars arrive as 0; an unknown updated-at (its bit clear) means no activity.
                let updated_at = flags.contains(RepoFlags::UPDATED_AT_KNOWN).then_some(updated_at);
                score(&weights, now, stars, updated_at, flags)
            })
            .collect();
        // Every repository is ranked now: popular-first never holds one back.
        Ranking { scores, not_now: Vec::new() }
    }
}

impl explain::Guest for Policy {
    fn explain_priority(now: Timestamp, repo: RepoView) -> String {
        let weights = *WEIGHTS.lock().unwrap();
        let mut flags = RepoFlags::empty();
        flags.set(RepoFlags::FORK, repo.fork);
        flags.set(RepoFlags::ARCHIVED, repo.archived);
        let total = score(&weights, now, repo.stars.unwrap_or(0), repo.updated_at, flags);
        let stars = match repo.stars {
            Some(stars) => format!("{stars} stars"),
            None => "stars unknown".to_string(),
        };
        let updated = match repo.updated_at {
            Some(at) => format!("updated {} days ago", (now.saturating_sub(at)).max(0) / 86_400_000),
            None => "no recorded activity".to_string(),
        };
        let mut penalties = Vec::new();
        if repo.fork {
            penalties.push("a fork");
        }
        if repo.archived {
            penalties.push("archived");
        }
        let penalties =
            if penalties.is_empty() { String::new() } else { format!(", last as {}", penalties.join(" and ")) };
        format!("score {total:.1}: {stars}, {updated}{penalties}")
    }
}

export!(Policy);

fn score(w: &Weights, now: Timestamp, stars: u32, updated_at: Option<Timestamp>, flags: RepoFlags) -> f64 {
    let stars = f64::from(stars);
    // Activity decays from 1 (updated now, or in the future) by half every half-life.
    let activity = updated_at.map_or(0.0, |updated| {
        let age_days = (now.saturating_sub(updated)).max(0) as f64 / DAY_MS;
        (-age_days / w.activity_half_life_days).exp2()
    });
    let mut score = w.stars_weight * (1.0 + stars).log2() + w.activity_weight * activity;
    if flags.contains(RepoFlags::FORK) {
        score -= w.fork_penalty;
    }
    if flags.contains(RepoFlags::ARCHIVED) {
        score -= w.archived_penalty;
    }
    score
}

fn parse_config(text: &str) -> Result<Weights, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut w = DEFAULTS;
    for (key, value) in &table {
        let number = value
            .as_float()
            .or_else(|| value.as_integer().map(|n| n as f64))
            .ok_or_else(|| format!("{key}: expected a number, got {}", value.type_str()))?;
        if !(number.is_finite() && number >= 0.0) {
            return Err(format!("{key}: must be at least 0, got {number}"));
        }
        let field = match key.as_str() {
            "stars_weight" => &mut w.stars_weight,
            "activity_weight" => &mut w.activity_weight,
            "activity_half_life_days" => &mut w.activity_half_life_days,
            "fork_penalty" => &mut w.fork_penalty,
            "archived_penalty" => &mut w.archived_penalty,
            _ => {
                return Err(format!(
                    "unknown key {key:?} (known: stars_weight, activity_weight, activity_half_life_days, \
                     fork_penalty, archived_penalty)"
                ))
            }
        };
        *field = number;
    }
    if w.activity_half_life_days <= 0.0 {
        return Err("activity_half_life_days: must be above 0".into());
    }
    Ok(w)
}

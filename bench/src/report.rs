//! BENCHMARKS.md: one table per benchmark, figures from a single run of the harness.

use std::fmt::Write as _;
use std::time::Duration;

/// One benchmark's table.
pub struct Section {
    pub title: String,
    rows: Vec<(String, String, String)>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: String) -> Section {
        Section { title, rows: Vec::new(), notes: Vec::new() }
    }

    pub fn row(&mut self, what: &str, value: String, goal: &str) {
        self.rows.push((what.to_string(), value, goal.to_string()));
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "## {}\n\n| measure | value | goal |\n|---|---|---|", self.title);
        for (what, value, goal) in &self.rows {
            let _ = writeln!(out, "| {what} | {value} | {goal} |");
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out.push('\n');
    }
}

pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

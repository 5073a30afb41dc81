//! What each policy of a [`Replay`](super::Replay) did, side by side, for an operator: a plain-text table for
//! the terminal ([`table`]), a self-contained SVG chart ([`svg`]) and one self-contained HTML
//! page holding both ([`html`]).
//!
//! Pure functions of the replay: no I/O, no clock. Policy labels, code host names and shard
//! addresses come from files and operators, so every renderer escapes them for its medium.
//!
//! - `rows.rs`: what the tables say (facts, sections, one cell per policy), shared by the
//!   text table and the HTML page so they cannot drift.
//! - `format.rs`: durations, counts and the text made safe for a terminal or markup.
//! - `downsample.rs`: long curves cut to a size a chart needs.
//! - `svg.rs` with `axis.rs`: the chart; `table.rs`, `html.rs`: the other two renderers.

mod axis;
mod downsample;
mod format;
mod html;
mod rows;
mod svg;
mod table;

#[cfg(test)]
mod tests;

pub use html::html;
pub use svg::svg;
pub use table::table;

/// The colour of each policy's curves, policy `i` taking `POLICY_COLOURS[i % 6]`: strongly
/// distinct hues, so runs compared side by side are told apart at a glance (and by pixel in
/// the browser test).
pub const POLICY_COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// The colour of policy `index`'s curves.
fn policy_colour(index: usize) -> &'static str {
    POLICY_COLOURS[index % POLICY_COLOURS.len()]
}

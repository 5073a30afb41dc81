//! The report as one self-contained HTML page: inline CSS, the chart as inline SVG, the
//! tables as HTML tables; no script, and a content security policy that forbids loading
//! anything, so the page opens the same offline, from a file or an attachment.

use std::fmt::Write as _;

use super::format::escape;
use super::{rows, svg};
use crate::replay::Replay;

const STYLE: &str = "\
body{font-family:sans-serif;color:#222;margin:24px;max-width:1240px}\
h1{font-size:22px;margin:0 0 12px}\
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0 0 16px}\
dl.facts dt{font-weight:bold}dl.facts dd{margin:0}\
figure{margin:0 0 16px}figure svg{max-width:100%;height:auto}\
table{border-collapse:collapse;font-size:14px}\
th,td{padding:3px 12px;border-bottom:1px solid #eee}\
thead th{text-align:right;border-bottom:2px solid #222}\
td{text-align:right;font-variant-numeric:tabular-nums}\
tbody th{text-align:left;font-weight:normal;padding-left:24px}\
tr.section th{text-align:left;font-weight:bold;padding:12px 12px 3px;border-bottom:1px solid #222}";

/// The whole report as one HTML page an operator can open or attach anywhere: title, the
/// snapshot's facts, the chart of [`svg`](super::svg) inline (under the page's title), and [`table`](super::table)'s
/// rows as HTML tables. Everything from outside is escaped, and the page loads nothing.
pub fn html(replay: &Replay) -> String {
    let title = escape(&rows::title(replay)).into_owned();
    let mut out = String::with_capacity(128 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    let _ = writeln!(out, "<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(out, "<h1>{title}</h1>");

    out.push_str("<dl class=\"facts\">\n");
    for (name, value) in rows::facts(replay) {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(&value));
    }
    out.push_str("</dl>\n<figure>\n");
    out.push_str(&svg::chart(replay, false));
    out.push_str("\n</figure>\n");

    out.push_str("<table>\n<thead><tr><th></th>");
    for run in &replay.runs {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(&run.label));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let columns = replay.runs.len() + 1;
    for section in rows::sections(replay) {
        let _ = writeln!(out, "<tr class=\"section\"><th colspan=\"{columns}\">{}</th></tr>", escape(section.title));
        if section.rows.is_empty() {
            let _ = writeln!(out, "<tr><th scope=\"row\" colspan=\"{columns}\">(none)</th></tr>");
        }
        for row in &section.rows {
            let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(&row.label));
            for cell in &row.cells {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

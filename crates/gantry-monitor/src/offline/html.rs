//! The drift report as one self-contained HTML page: no scripts, no external
//! assets, a histogram per column (reference vs current) drawn here as
//! inline SVG, light and dark colours from `prefers-color-scheme`. The page
//! is also well-formed XML (every element closed, text escaped), so any XML
//! parser can check it.

use std::fmt::Write;

use super::{ColumnDrift, DriftReport, status_word, table_cells};
use crate::drift::Bin;
use crate::format::format_value;

const STYLE: &str = "\
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1f2328; --muted: #59636e; \
--line: #d1d9e0; --card: #f6f8fa; --ref: #8c959f; --cur: #0969da; --drift: #cf222e; \
--ok: #1a7f37; --warn: #9a6700; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --fg: #e6edf3; \
--muted: #9198a1; --line: #3d444d; --card: #151b23; --ref: #6e7681; --cur: #4493f8; \
--drift: #f85149; --ok: #3fb950; --warn: #d29922; } }
body { font: 14px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; background: var(--bg); \
color: var(--fg); max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.1rem; margin: 0 0 .25rem; }
.meta { color: var(--muted); margin-top: 0; }
.verdict { font-size: 1.1rem; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: var(--cur); }
.drift { color: var(--drift); font-weight: 600; } .ok { color: var(--ok); } \
.insufficient-data { color: var(--warn); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; \
padding: 1rem; margin: 1rem 0; }
section p { margin: .25rem 0 .75rem; color: var(--muted); }
svg { display: block; width: 100%; height: auto; }
svg .ref { fill: var(--ref); } svg .cur { fill: var(--cur); }
svg text { fill: var(--muted); font-size: 11px; font-family: inherit; }
svg .axis { stroke: var(--line); stroke-width: 1; }";

/// The whole page.
pub fn to_html(report: &DriftReport) -> String {
    let mut page = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n");
    page.push_str("<meta charset=\"utf-8\"/>\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    let _ = writeln!(
        page,
        "<title>Drift report: {} vs {}</title>",
        escape(or_dash(&report.current)),
        escape(or_dash(&report.reference))
    );
    let _ = writeln!(page, "<style>\n{STYLE}\n</style>\n</head>\n<body>");
    page.push_str("<h1>Drift report</h1>\n");
    let _ = writeln!(
        page,
        "<p class=\"meta\">reference {} ({} rows) · current {} ({} rows) · a column drifts when its PSI is above {}</p>",
        escape(or_dash(&report.reference)),
        report.reference_rows,
        escape(or_dash(&report.current)),
        report.current_rows,
        format_value(report.threshold)
    );
    let verdict_class = if report.any_drift() { "drift" } else { "ok" };
    let _ = writeln!(
        page,
        "<p class=\"verdict {verdict_class}\">{}</p>",
        escape(&report.verdict)
    );

    let columns: Vec<&ColumnDrift> = report
        .drift
        .iter()
        .chain(&report.prediction_drift)
        .collect();
    if !columns.is_empty() {
        page.push_str(
            "<table>\n<thead><tr><th>feature</th><th>PSI</th><th>JS</th><th>KS p</th><th>missing</th><th>status</th></tr></thead>\n<tbody>\n",
        );
        for (i, d) in columns.iter().enumerate() {
            let [feature, psi, js, p_value, missing, status] = table_cells(&d.drift);
            let _ = writeln!(
                page,
                "<tr><td><a href=\"#c{i}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"{}\">{}</td></tr>",
                escape(&feature),
                escape(&psi),
                escape(&js),
                escape(&p_value),
                escape(&missing),
                status_word(d.drift.status),
                escape(&status)
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    if !report.unmatched.is_empty() {
        let names: Vec<String> = report.unmatched.iter().map(|n| escape(n)).collect();
        let _ = writeln!(
            page,
            "<p class=\"meta\">Not in the reference, so not compared: {}</p>",
            names.join(", ")
        );
    }
    for (i, d) in columns.iter().enumerate() {
        page.push_str(&section(i, d));
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn section(i: usize, d: &ColumnDrift) -> String {
    let drift = &d.drift;
    let status = status_word(drift.status);
    let mut out = format!(
        "<section id=\"c{i}\">\n<h2>{} <span class=\"{status}\">{status}</span></h2>\n",
        escape(&drift.feature)
    );
    let mut facts = vec![format!("{} rows, {} values", drift.rows, drift.samples)];
    if let Some(psi) = drift.psi {
        facts.push(format!("PSI {}", format_value(psi)));
    }
    if let Some(js) = drift.jensen_shannon {
        facts.push(format!("Jensen–Shannon {}", format_value(js)));
    }
    if let Some(ks) = &drift.ks {
        facts.push(format!(
            "KS {} (p {})",
            format_value(ks.statistic),
            format_value(ks.p_value)
        ));
    }
    if let Some(chi) = &drift.chi_square {
        facts.push(format!(
            "chi² {} with {} df (p {})",
            format_value(chi.statistic),
            chi.degrees_of_freedom,
            format_value(chi.p_value)
        ));
    }
    if let Some(m) = drift.missing_fraction {
        facts.push(format!(
            "missing {}% (reference {}%)",
            format_value(m * 100.0),
            format_value(drift.reference_missing_fraction * 100.0)
        ));
    }
    if let Some(note) = &drift.note {
        facts.push(note.clone());
    }
    let _ = writeln!(out, "<p>{}</p>", escape(&facts.join(" · ")));
    if !drift.bins.is_empty() {
        out.push_str(&histogram_svg(&drift.feature, &drift.bins));
    }
    out.push_str("</section>\n");
    out
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 56.0;

/// Grouped bars, reference then current, of each bin's share of values.
pub(crate) fn histogram_svg(feature: &str, bins: &[Bin]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top_share = bins
        .iter()
        .flat_map(|b| [b.reference, b.live])
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    // A round top for the axis: the next 5% (at least 5%).
    let y_max = ((top_share * 20.0).ceil() / 20.0).max(0.05);
    let n = bins.len().max(1) as f64;
    let group = plot_w / n;
    let bar = group * 0.4;
    let pad = group * 0.1;
    let y = |share: f64| TOP + plot_h - (share.clamp(0.0, y_max) / y_max) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\n",
        escape(&format!("histogram of {feature}: reference and current"))
    );
    // Legend.
    let _ = writeln!(
        svg,
        "<rect class=\"ref\" x=\"{LEFT}\" y=\"8\" width=\"10\" height=\"10\"/><text x=\"{:.1}\" y=\"17\">reference</text>\
         <rect class=\"cur\" x=\"{:.1}\" y=\"8\" width=\"10\" height=\"10\"/><text x=\"{:.1}\" y=\"17\">current</text>",
        LEFT + 14.0,
        LEFT + 90.0,
        LEFT + 104.0
    );
    // Horizontal guides at 0, half and the top.
    for share in [0.0, y_max / 2.0, y_max] {
        let _ = writeln!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}%</text>",
            WIDTH - RIGHT,
            y(share),
            y(share),
            LEFT - 4.0,
            y(share) + 4.0,
            format_value((share * 1000.0).round() / 10.0)
        );
    }
    let rotate = bins.len() > 8;
    let max_chars = if rotate {
        14
    } else {
        ((group / 6.5) as usize).max(4)
    };
    for (i, b) in bins.iter().enumerate() {
        let x0 = LEFT + i as f64 * group + pad;
        let _ = writeln!(
            svg,
            "<g><title>{}</title><rect class=\"ref\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\"/><rect class=\"cur\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{:.1}\"/></g>",
            escape(&format!(
                "{}: reference {}%, current {}%",
                b.label,
                format_value((b.reference * 1000.0).round() / 10.0),
                format_value((b.live * 1000.0).round() / 10.0)
            )),
            y(b.reference),
            TOP + plot_h - y(b.reference),
            x0 + bar,
            y(b.live),
            TOP + plot_h - y(b.live),
        );
        let cx = LEFT + (i as f64 + 0.5) * group;
        let ly = TOP + plot_h + 14.0;
        let label = escape(&shorten(&b.label, max_chars));
        if rotate {
            let _ = writeln!(
                svg,
                "<text x=\"{cx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {cx:.1} {ly:.1})\">{label}</text>"
            );
        } else {
            let _ = writeln!(
                svg,
                "<text x=\"{cx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{label}</text>"
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// Text for HTML/XML content and attribute values; characters XML 1.0
/// cannot hold at all (most control characters) become U+FFFD.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

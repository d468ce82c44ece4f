//! The drift report as markdown (step logs, `report.md`, pull requests).

use super::{DriftReport, table_cells};
use crate::format::format_value;

/// Header lines, the drift table, the label's line, unmatched columns and
/// the verdict.
pub fn to_markdown(report: &DriftReport) -> String {
    let mut md = String::from("# Drift report\n\n");
    md.push_str(&format!(
        "- reference: {} ({} rows)\n- current: {} ({} rows)\n- a column drifts when its PSI is above {}\n\n",
        inline(&report.reference),
        report.reference_rows,
        inline(&report.current),
        report.current_rows,
        format_value(report.threshold)
    ));
    if !report.drift.is_empty() {
        md.push_str(
            "| feature | PSI | JS | KS p | missing | status |\n|---|---:|---:|---:|---:|---|\n",
        );
        for d in &report.drift {
            let cells = table_cells(&d.drift).map(|c| cell(&c));
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        md.push('\n');
    }
    if let Some(p) = &report.prediction_drift {
        let [feature, psi, js, p_value, missing, status] = table_cells(&p.drift);
        md.push_str(&format!(
            "{}: psi {psi}, js {js}, p {p_value}, missing {missing} — {status}\n\n",
            inline(&feature)
        ));
    }
    if !report.unmatched.is_empty() {
        let names: Vec<String> = report.unmatched.iter().map(|n| inline(n)).collect();
        md.push_str(&format!(
            "Not in the reference, so not compared: {}\n\n",
            names.join(", ")
        ));
    }
    md.push_str(&format!("**{}**\n", cell(&report.verdict)));
    md
}

/// Text safe inside a table cell: `|` escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A name as inline code (backticks inside become quotes).
fn inline(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        format!("`{}`", cell(&text.replace('`', "'")))
    }
}

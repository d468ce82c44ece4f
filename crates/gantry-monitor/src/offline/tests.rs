use gantry_ml::columnar::{Reading, parse_csv};
use gantry_ml::dataset::{Column, ColumnData, Dataset};
use gantry_ml::profile::profile_dataset;

use super::*;

/// A deterministic spread of `n` values in [0, 1).
fn spread(n: usize, seed: u64) -> Vec<f64> {
    (0..n as u64)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f64 / 1000.0)
        .collect()
}

/// `age` (numeric), `plan` (categorical), `score` (numeric), label `churn`;
/// `shift` moves `age` by that much and changes plan's mix when `mix`.
fn data(n: usize, seed: u64, shift: f64, mix: bool) -> Dataset {
    let u = spread(n, seed);
    let v = spread(n, seed + 1);
    let plans = |i: usize| {
        let p = if mix {
            ["basic", "pro", "pro", "pro"]
        } else {
            ["basic", "basic", "pro", "team"]
        };
        p[i % 4].to_string()
    };
    Dataset::new(vec![
        Column::new(
            "age",
            ColumnData::Float(u.iter().map(|x| Some(20.0 + 40.0 * x + shift)).collect()),
        ),
        Column::new(
            "plan",
            ColumnData::Categorical((0..n).map(|i| Some(plans(i))).collect()),
        ),
        Column::new(
            "score",
            ColumnData::Float(v.iter().map(|x| Some(x * 10.0)).collect()),
        ),
        Column::new(
            "churn",
            ColumnData::Categorical(
                (0..n)
                    .map(|i| Some(if i % 5 == 0 { "yes" } else { "no" }.to_string()))
                    .collect(),
            ),
        ),
    ])
    .unwrap()
}

fn reference() -> Profile {
    profile_dataset(&data(2000, 1, 0.0, false), 10, 20)
}

fn status(report: &DriftReport, feature: &str) -> DriftStatus {
    report
        .drift
        .iter()
        .find(|d| d.drift.feature == feature)
        .unwrap_or_else(|| panic!("no {feature} in {report:#?}"))
        .drift
        .status
}

#[test]
fn shifted_columns_drift_and_unchanged_ones_do_not() {
    let settings = DriftSettings {
        label: Some("churn".to_string()),
        ..DriftSettings::default()
    };
    let report = compare(&reference(), &data(1500, 7, 15.0, true), &settings).unwrap();
    let features: Vec<&str> = report
        .drift
        .iter()
        .map(|d| d.drift.feature.as_str())
        .collect();
    assert_eq!(
        features,
        ["age", "plan", "score"],
        "the label is not a feature"
    );
    assert_eq!(status(&report, "age"), DriftStatus::Drift);
    assert_eq!(status(&report, "plan"), DriftStatus::Drift);
    assert_eq!(status(&report, "score"), DriftStatus::Ok);
    assert_eq!(report.drifted, ["age", "plan"]);
    assert_eq!(report.verdict, "drift on 2 of 3 features (age, plan)");
    let age = &report.drift[0];
    assert_eq!(age.edges.len(), 11, "numeric columns carry their bin edges");
    assert!(age.drift.ks.is_some() && age.drift.chi_square.is_none());
    let plan = &report.drift[1];
    assert!(plan.edges.is_empty());
    assert!(plan.drift.chi_square.is_some());
    let prediction = report.prediction_drift.as_ref().unwrap();
    assert_eq!(prediction.drift.feature, "prediction (churn)");
    assert_eq!(prediction.drift.status, DriftStatus::Ok);
    assert!(report.any_drift());

    let m = metrics(&report);
    assert_eq!(m["columns"], 4.0);
    assert_eq!(m["drifted"], 2.0);
    assert_eq!(m["psi.age"], age.drift.psi.unwrap());
    assert!(m.contains_key("psi.churn"));
    assert_eq!(
        m["max_psi"],
        age.drift.psi.unwrap().max(plan.drift.psi.unwrap())
    );
}

#[test]
fn the_same_distribution_shows_no_drift_and_the_threshold_is_ours() {
    let current = data(1500, 9, 0.0, false);
    let report = compare(&reference(), &current, &DriftSettings::default()).unwrap();
    assert!(!report.any_drift(), "{report:#?}");
    assert_eq!(report.verdict, "no drift on 4 features");
    // A threshold below every PSI above 0 (plan and churn have exactly the
    // reference's proportions) makes those drift.
    let strict = DriftSettings {
        threshold: 1e-12,
        ..DriftSettings::default()
    };
    let report = compare(&reference(), &current, &strict).unwrap();
    assert_eq!(report.drifted, ["age", "score"], "{report:#?}");
}

#[test]
fn drift_of_is_the_monitors_comparison_with_another_threshold() {
    let profile = reference();
    let column = profile.column("age").unwrap();
    let values: Vec<Value> = (0..200)
        .map(|i| Value::from(30.0 + f64::from(i) / 10.0))
        .collect();
    let live: Vec<Option<&Value>> = values.iter().map(Some).collect();
    let monitor = feature_drift("age", column, &live, 30);
    let psi = monitor.psi.unwrap();
    assert_eq!(
        drift_of("age", column, &live, 30, PSI_DRIFT_THRESHOLD),
        monitor
    );
    assert_eq!(
        drift_of("age", column, &live, 30, psi * 2.0).status,
        DriftStatus::Ok
    );
    assert_eq!(
        drift_of("age", column, &live, 30, psi / 2.0).status,
        DriftStatus::Drift
    );
    // Too few values stay insufficient whatever the threshold.
    let few = &live[..5];
    assert_eq!(
        drift_of("age", column, few, 30, 1e-9).status,
        DriftStatus::InsufficientData
    );
}

#[test]
fn columns_are_selected_checked_and_matched_by_name() {
    let settings = DriftSettings {
        columns: Some(vec!["score".to_string()]),
        ..DriftSettings::default()
    };
    let report = compare(&reference(), &data(500, 3, 0.0, false), &settings).unwrap();
    assert_eq!(report.drift.len(), 1);
    assert_eq!(report.drift[0].drift.feature, "score");

    let err = compare(
        &reference(),
        &data(500, 3, 0.0, false),
        &DriftSettings {
            columns: Some(vec!["agee".to_string()]),
            ..DriftSettings::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "column `agee` is not a column of the reference; its columns are: age, plan, score, churn"
    );
    let err = compare(
        &reference(),
        &data(500, 3, 0.0, false),
        &DriftSettings {
            label: Some("y".to_string()),
            ..DriftSettings::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("label `y`"), "{err}");

    // A current batch without `score` and with a new `extra` column.
    let mut current = data(500, 3, 0.0, false);
    current.columns.retain(|c| c.name != "score");
    current.columns.push(Column::new(
        "extra",
        ColumnData::Float(vec![Some(1.0); 500]),
    ));
    let report = compare(&reference(), &current, &DriftSettings::default()).unwrap();
    let score = report
        .drift
        .iter()
        .find(|d| d.drift.feature == "score")
        .unwrap();
    assert_eq!(score.drift.status, DriftStatus::InsufficientData);
    assert_eq!(score.drift.note.as_deref(), Some("not in the current data"));
    assert_eq!(score.drift.missing_fraction, Some(1.0));
    assert_eq!(report.unmatched, ["extra"]);
    assert_eq!(
        report.verdict,
        "no drift on 3 of 4 features (1 without enough data)"
    );
}

#[test]
fn a_csv_table_and_a_dataset_give_the_same_report() {
    let current = data(800, 5, 4.0, true);
    let mut csv = String::from("age,plan,score,churn\n");
    for row in 0..current.rows() {
        let cells: Vec<String> = current
            .columns
            .iter()
            .map(|c| c.text(row).unwrap_or_default())
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let path = std::path::Path::new("cur.csv");
    let reference = reference();
    let mut table = parse_csv(csv.as_bytes(), path, &|_| Reading::Infer).unwrap();
    // `churn` holds yes/no: inferred as a bool, a category in the reference.
    let misfit = misfits(&reference, &table);
    assert_eq!(misfit, ["churn"]);
    let again = parse_csv(csv.as_bytes(), path, &|name| match reference.column(name) {
        Some(c) if misfit.iter().any(|m| m == name) => reading_for(c),
        _ => Reading::Skip,
    })
    .unwrap();
    table.replace_from(again);
    assert!(misfits(&reference, &table).is_empty());
    let settings = DriftSettings {
        label: Some("churn".to_string()),
        ..DriftSettings::default()
    };
    let from_table = compare(&reference, &table, &settings).unwrap();
    let from_dataset = compare(&reference, &current, &settings).unwrap();
    assert_eq!(from_table, from_dataset);
}

#[test]
fn markdown_lists_every_column_and_the_verdict() {
    let settings = DriftSettings {
        label: Some("churn".to_string()),
        ..DriftSettings::default()
    };
    let mut report = compare(&reference(), &data(900, 2, 15.0, false), &settings).unwrap();
    report.reference = "ref.csv".to_string();
    report.current = "cur|rent.csv".to_string();
    let md = to_markdown(&report);
    assert!(md.starts_with("# Drift report\n"), "{md}");
    assert!(
        md.contains("- current: `cur\\|rent.csv` (900 rows)"),
        "{md}"
    );
    assert!(
        md.contains("| feature | PSI | JS | KS p | missing | status |"),
        "{md}"
    );
    for d in &report.drift {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", d.drift.feature)))
            .unwrap_or_else(|| panic!("no row for {} in {md}", d.drift.feature));
        assert!(
            row.ends_with(&format!("| {} |", status_word(d.drift.status))),
            "{row}"
        );
    }
    assert!(md.contains("`prediction (churn)`: psi "), "{md}");
    assert!(md.contains(" (chi²) |"), "{md}");
    assert!(
        md.trim_end().ends_with(&format!("**{}**", report.verdict)),
        "{md}"
    );
}

/// Checks that `text` is well-formed XML as far as tags go: every element
/// closed in order, attributes quoted, no stray `<` or `&`. Returns the
/// element names in document order.
fn check_xml(text: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['<', '&']) {
        let (before, at) = rest.split_at(start);
        assert!(!before.contains('>'), "stray > before {at:.40}");
        if at.starts_with('&') {
            let end = at.find(';').expect("entity without ;");
            let entity = &at[1..end];
            assert!(
                ["amp", "lt", "gt", "quot", "#39"].contains(&entity),
                "unknown entity &{entity};"
            );
            rest = &at[end + 1..];
            continue;
        }
        let end = at.find('>').expect("unclosed tag");
        let tag = &at[1..end];
        rest = &at[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag
            .split_whitespace()
            .next()
            .expect("empty tag")
            .to_string();
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        seen.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(!rest.contains('>'), "stray > at the end");
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    seen
}

#[test]
fn the_html_page_is_self_contained_well_formed_and_escaped() {
    let mut current = data(1000, 4, 15.0, true);
    current.columns[2].name = "<b>score & \"co\"".to_string();
    let mut reference_data = data(2000, 1, 0.0, false);
    reference_data.columns[2].name = "<b>score & \"co\"".to_string();
    let reference = profile_dataset(&reference_data, 10, 20);
    let settings = DriftSettings {
        label: Some("churn".to_string()),
        ..DriftSettings::default()
    };
    let mut report = compare(&reference, &current, &settings).unwrap();
    report.current = "cur.csv".to_string();
    let html = to_html(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    let elements = check_xml(&html);
    assert_eq!(
        elements.iter().filter(|e| *e == "svg").count(),
        4,
        "one chart per column"
    );
    assert_eq!(elements.iter().filter(|e| *e == "section").count(), 4);
    for forbidden in ["script", "link", "img", "iframe"] {
        assert!(
            !elements.iter().any(|e| e == forbidden),
            "<{forbidden}> in the page"
        );
    }
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "no link but the SVG namespace"
    );
    assert!(
        !html.contains("src=") && !html.contains("url("),
        "no external assets"
    );
    assert!(html.contains("@media (prefers-color-scheme: dark)"));
    assert!(
        html.contains("&lt;b&gt;score &amp; &quot;co&quot;"),
        "escaped name"
    );
    assert!(!html.contains("<b>score"), "raw name leaked");
    for d in report.drift.iter().chain(&report.prediction_drift) {
        assert!(
            html.contains(&html::escape(&d.drift.feature)),
            "{}",
            d.drift.feature
        );
    }
    assert!(html.contains(&report.verdict));
}

#[test]
fn bars_are_proportional_to_each_bins_share() {
    let bins = vec![
        crate::drift::Bin {
            label: "a".to_string(),
            reference: 0.5,
            live: 0.25,
        },
        crate::drift::Bin {
            label: "a very long category name indeed".to_string(),
            reference: 0.5,
            live: 0.75,
        },
    ];
    let svg = html::histogram_svg("x", &bins);
    check_xml(&svg);
    let heights: Vec<f64> = svg
        .split("<rect class=\"")
        .skip(3) // the legend's two swatches
        .filter_map(|r| {
            let h = r.split("height=\"").nth(1)?;
            h.split('"').next()?.parse().ok()
        })
        .collect();
    // Top of the axis: 75% → bars of 50/75, 25/75, 50/75 and 75/75 of 156 px.
    assert_eq!(heights, [104.0, 52.0, 104.0, 156.0]);
    assert!(svg.contains("a very long category name indeed: reference 50%, current 75%"));
    assert!(
        svg.contains(">a very long category name indeed</text>"),
        "{svg}"
    );
    // Many bins: labels turn and shorten, the whole label stays in the tooltip.
    let many: Vec<crate::drift::Bin> = (0..12)
        .map(|i| crate::drift::Bin {
            label: format!("[{i}.000001, {}.000001)", i + 1),
            reference: 1.0 / 12.0,
            live: 1.0 / 12.0,
        })
        .collect();
    let svg = html::histogram_svg("x", &many);
    check_xml(&svg);
    assert!(svg.contains("rotate(-35"), "{svg}");
    assert!(svg.contains(">[0.000001, 1.…</text>"), "{svg}");
    assert!(
        svg.contains("<title>[0.000001, 1.000001): reference"),
        "{svg}"
    );
}

use gantry_monitor::{
    AlertState, DriftStatus, FeatureKind, MonitorConfig, MonitorReport, OTHER_BUCKET, Task,
    evaluate,
};
use serde_json::{Value, json};

use crate::fixture::*;

fn classification(log: &[gantry_monitor::Observation], rules: &[&str]) -> MonitorReport {
    evaluate(
        Some(&reference("species")),
        Some("species"),
        Task::Classification,
        log,
        &config(rules),
        NOW,
    )
}

fn status(report: &MonitorReport, feature: &str) -> DriftStatus {
    report
        .drift
        .iter()
        .find(|d| d.feature == feature)
        .unwrap_or_else(|| panic!("no drift entry for {feature}"))
        .status
}

#[test]
fn traffic_like_training_shows_no_drift() {
    let log = traffic(11, 600, |_, _, _| {});
    let report = classification(
        &log,
        &[
            "psi > 0.2",
            "js > 0.1",
            "ks_pvalue < 0.001",
            "prediction_psi > 0.2",
        ],
    );
    assert_eq!(report.samples, 600);
    let features: Vec<&str> = report.drift.iter().map(|d| d.feature.as_str()).collect();
    assert_eq!(
        features,
        ["x1", "x2", "color"],
        "every input, not the label"
    );
    for d in &report.drift {
        assert_eq!(d.status, DriftStatus::Ok, "{d:?}");
        assert_eq!((d.rows, d.samples), (600, 600));
        assert!(d.psi.unwrap() < 0.1, "{d:?}");
        assert_eq!(d.missing_fraction, Some(0.0));
    }
    let x1 = &report.drift[0];
    assert_eq!(x1.kind, FeatureKind::Numeric);
    assert!(x1.ks.unwrap().p_value > 0.01, "{x1:?}");
    assert_eq!(x1.bins.len(), 10);
    let color = &report.drift[2];
    assert_eq!(color.kind, FeatureKind::Categorical);
    assert!(color.chi_square.unwrap().p_value > 0.01, "{color:?}");
    assert!(color.ks.is_none());
    let labels: Vec<&str> = color.bins.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["red", "green", "blue", OTHER_BUCKET]);
    let prediction = report.prediction_drift.as_ref().unwrap();
    assert_eq!(prediction.status, DriftStatus::Ok);
    assert!(
        report.alerts.iter().all(|a| a.state == AlertState::Ok),
        "{:#?}",
        report.alerts
    );
    assert_eq!(
        report.verdict,
        "no drift on 3 features; no feedback labels yet"
    );
}

#[test]
fn a_shift_of_three_standard_deviations_drifts_that_feature_only() {
    let log = traffic(12, 600, |_, _, o| {
        let shifted = input(o, "x1") + 3.0;
        set(o, "x1", json!(shifted));
    });
    let report = classification(
        &log,
        &["psi > 0.2", "psi > 0.2 for feature x2", "ks(x1) > 0.5"],
    );
    assert_eq!(status(&report, "x1"), DriftStatus::Drift);
    assert_eq!(status(&report, "x2"), DriftStatus::Ok);
    assert_eq!(status(&report, "color"), DriftStatus::Ok);
    let x1 = &report.drift[0];
    assert!(x1.psi.unwrap() > 2.0, "{x1:?}");
    let ks = x1.ks.unwrap();
    assert!(ks.statistic > 0.8 && ks.p_value < 1e-12, "{ks:?}");

    let [any, x2, ks_rule] = &report.alerts[..] else {
        panic!("{:?}", report.alerts)
    };
    assert_eq!(any.state, AlertState::Firing);
    assert_eq!(any.feature.as_deref(), Some("x1"));
    assert!(
        any.message.starts_with("psi of x1 is ") && any.message.ends_with(" > 0.2"),
        "{}",
        any.message
    );
    assert_eq!(any.value, x1.psi);
    assert_eq!(x2.state, AlertState::Ok);
    assert!(x2.message.contains("(fires when > 0.2)"), "{}", x2.message);
    assert_eq!(ks_rule.state, AlertState::Firing);
    assert_eq!(ks_rule.rule, "ks(x1) > 0.5");
    assert_eq!(
        report.verdict,
        "drift on 1 of 3 features (x1); no feedback labels yet (2 alerts firing)"
    );
}

#[test]
fn a_new_mix_of_categories_drifts_with_unseen_values_in_other() {
    let mut rng = Rng::new(5);
    let log = traffic(13, 600, |_, _, o| {
        let color = ["red", "green", "blue", "purple"][rng.pick(&[0.1, 0.3, 0.3, 0.3])];
        set(o, "color", json!(color));
    });
    let report = classification(&log, &["js(color) > 0.1", "psi > 0.2"]);
    assert_eq!(status(&report, "color"), DriftStatus::Drift);
    assert_eq!(status(&report, "x1"), DriftStatus::Ok);
    assert_eq!(status(&report, "x2"), DriftStatus::Ok);
    let color = &report.drift[2];
    let other = color.bins.last().unwrap();
    assert_eq!(other.label, OTHER_BUCKET);
    assert_eq!(other.reference, 0.0);
    assert!((other.live - 0.3).abs() < 0.06, "{other:?}");
    assert!(color.chi_square.unwrap().p_value < 1e-12);
    assert!(report.alerts.iter().all(|a| a.state == AlertState::Firing));
    assert_eq!(report.alerts[1].feature.as_deref(), Some("color"));
}

#[test]
fn predictions_drift_against_the_label_distribution() {
    let log = traffic(14, 400, |_, _, o| o.prediction = Some(json!("c")));
    let report = classification(&log, &["prediction_psi > 0.2", "prediction_js > 0.3"]);
    let prediction = report.prediction_drift.as_ref().unwrap();
    assert_eq!(prediction.status, DriftStatus::Drift);
    assert_eq!(prediction.kind, FeatureKind::Categorical);
    assert_eq!(prediction.feature, "prediction (species)");
    assert!(
        report.alerts.iter().all(|a| a.state == AlertState::Firing),
        "{:?}",
        report.alerts
    );
    assert!(
        report
            .verdict
            .starts_with("no drift on 3 features; predictions drifted (psi "),
        "{}",
        report.verdict
    );
}

#[test]
fn integer_classes_compare_over_the_label_histogram_whatever_their_json_type() {
    use gantry_ml::dataset::{Column, ColumnData, Dataset};
    let mut rng = Rng::new(3);
    let classes: Vec<Option<i64>> = (0..1000)
        .map(|_| Some(rng.pick(&[0.7, 0.3]) as i64))
        .collect();
    let dataset = Dataset::new(vec![Column::new("churn", ColumnData::Int(classes))]).unwrap();
    let reference = gantry_ml::profile::profile_dataset(&dataset, 10, 20);
    let run = |weights: [f64; 2]| {
        let mut rng = Rng::new(4);
        let log = traffic(20, 400, |i, _, o| {
            let class = rng.pick(&weights);
            // The model answers as text, integer or float: one class each way.
            o.prediction = Some(match i % 3 {
                0 => json!(class.to_string()),
                1 => json!(class),
                _ => json!(class as f64),
            });
        });
        evaluate(
            Some(&reference),
            Some("churn"),
            Task::Classification,
            &log,
            &config(&[]),
            NOW,
        )
        .prediction_drift
        .unwrap()
    };
    let same = run([0.7, 0.3]);
    assert_eq!(
        (same.kind, same.status),
        (FeatureKind::Numeric, DriftStatus::Ok),
        "{same:?}"
    );
    assert_eq!(same.samples, 400);
    assert_eq!(run([0.2, 0.8]).status, DriftStatus::Drift);
}

#[test]
fn regression_predictions_compare_with_the_target_histogram() {
    let reference = reference("target");
    let run = |offset: f64| {
        let log = traffic(15, 500, |_, row, o| {
            o.prediction = Some(json!(row.target + offset))
        });
        evaluate(
            Some(&reference),
            Some("target"),
            Task::Regression,
            &log,
            &config(&["prediction_psi > 0.2"]),
            NOW,
        )
    };
    let same = run(0.0);
    let prediction = same.prediction_drift.as_ref().unwrap();
    assert_eq!(prediction.kind, FeatureKind::Numeric);
    assert_eq!(prediction.status, DriftStatus::Ok, "{prediction:?}");
    assert!(prediction.ks.unwrap().p_value > 0.01);
    assert_eq!(same.alerts[0].state, AlertState::Ok);
    let features: Vec<&str> = same.drift.iter().map(|d| d.feature.as_str()).collect();
    assert_eq!(features, ["x1", "x2", "color"]);

    let shifted = run(20.0);
    assert_eq!(
        shifted.prediction_drift.as_ref().unwrap().status,
        DriftStatus::Drift
    );
    assert_eq!(shifted.alerts[0].state, AlertState::Firing);
}

#[test]
fn missing_and_unparsable_values_count_as_missing_and_rows_without_inputs_do_not_count() {
    let mut log = traffic(16, 600, |i, _, o| match i % 10 {
        0 => set(o, "x2", Value::Null),
        1 => set(o, "x2", json!("abc")),
        2 => {
            o.inputs.remove("x2");
        }
        3 => set(o, "x2", json!("NA")),
        // Numeric text is a number, as the serving path reads it.
        4 => {
            let text = input(o, "x2").to_string();
            set(o, "x2", json!(text));
        }
        _ => {}
    });
    for o in log.iter_mut().take(50) {
        o.inputs.clear();
    }
    let report = classification(
        &log,
        &["missing(x2) > 0.3", "missing > 0.3", "missing(x1) > 0.3"],
    );
    assert_eq!(report.samples, 600);
    let x2 = &report.drift[1];
    assert_eq!(x2.rows, 550);
    assert_eq!(x2.samples, 330);
    assert_eq!(x2.missing_fraction, Some(220.0 / 550.0));
    assert_eq!(x2.reference_missing_fraction, 0.0);
    assert_eq!(x2.status, DriftStatus::Ok, "{x2:?}");
    let states: Vec<AlertState> = report.alerts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [AlertState::Firing, AlertState::Firing, AlertState::Ok]
    );
    assert_eq!(report.alerts[1].feature.as_deref(), Some("x2"));
    assert_eq!(report.alerts[0].message, "missing of x2 is 0.4 > 0.3");
}

#[test]
fn below_min_samples_drift_is_insufficient_data_and_nothing_fires() {
    let log = traffic(17, 20, |_, _, o| {
        let shifted = input(o, "x1") + 10.0;
        set(o, "x1", json!(shifted));
        o.prediction = Some(json!("c"));
    });
    let report = classification(
        &log,
        &[
            "psi > 0.2",
            "psi(x1) > 0.2",
            "missing > 0.0",
            "prediction_psi > 0.2",
            "ks_pvalue < 0.05",
        ],
    );
    for d in &report.drift {
        assert_eq!(d.status, DriftStatus::InsufficientData);
        assert_eq!((d.psi, d.jensen_shannon), (None, None));
        assert!(d.ks.is_none() && d.chi_square.is_none() && d.bins.is_empty());
        assert_eq!(d.missing_fraction, Some(0.0), "still reported");
        assert_eq!(
            d.note.as_deref(),
            Some("20 live values, 30 needed (min_samples) to compare distributions")
        );
    }
    assert_eq!(
        report.prediction_drift.as_ref().unwrap().status,
        DriftStatus::InsufficientData
    );
    for alert in &report.alerts {
        assert_eq!(alert.state, AlertState::NoData, "{alert:?}");
        assert_eq!(alert.value, None);
    }
    assert_eq!(
        report.alerts[1].message,
        "psi of x1: 20 live values, 30 needed (min_samples) to compare distributions"
    );
    assert_eq!(
        report.alerts[2].message,
        "missing: no feature has a value yet (20 live rows, 30 needed (min_samples))"
    );
    assert_eq!(
        report.verdict,
        "not enough data for drift yet (20 predictions in the last hour, 30 values per feature needed); no feedback labels yet"
    );
    // A lower bar computes it.
    let config = MonitorConfig {
        min_samples: 10,
        ..config(&["psi(x1) > 0.2"])
    };
    let report = evaluate(
        Some(&reference("species")),
        Some("species"),
        Task::Classification,
        &log,
        &config,
        NOW,
    );
    assert_eq!(report.drift[0].status, DriftStatus::Drift);
    assert_eq!(report.alerts[0].state, AlertState::Firing);
}

#[test]
fn a_profile_from_before_samples_has_no_ks_and_says_why() {
    let mut reference = reference("species");
    for c in &mut reference.columns {
        if let Some(n) = &mut c.numeric {
            n.sample.clear();
        }
    }
    let log = traffic(18, 300, |_, _, _| {});
    let report = evaluate(
        Some(&reference),
        Some("species"),
        Task::Classification,
        &log,
        &config(&["ks(x1) > 0.1", "ks_pvalue < 0.01", "ks(color) > 0.1"]),
        NOW,
    );
    let x1 = &report.drift[0];
    assert!(x1.ks.is_none() && x1.psi.is_some());
    assert!(x1.note.as_deref().unwrap().contains("no sample"), "{x1:?}");
    let messages: Vec<&str> = report.alerts.iter().map(|a| a.message.as_str()).collect();
    assert!(report.alerts.iter().all(|a| a.state == AlertState::NoData));
    assert!(
        messages[0].starts_with("ks of x1: the reference profile has no sample"),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with(
            "ks_pvalue: no feature has a value yet (the reference profile has no sample"
        ),
        "{messages:?}"
    );
    assert_eq!(
        messages[2],
        "ks of color: KS applies to numeric features; this one is categorical (use psi, js or chi-square)"
    );
}

#[test]
fn the_report_is_plain_json() {
    let log = traffic(19, 300, |_, _, _| {});
    let report = classification(&log, &["psi > 0.2"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["drift"][0]["kind"], "numeric");
    assert_eq!(json["drift"][0]["status"], "ok");
    assert_eq!(json["alerts"][0]["state"], "ok");
    assert_eq!(json["alerts"][0]["rule"], "psi > 0.2");
    assert!(json["drift"][0]["ks"]["p_value"].is_f64());
    let back: MonitorReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    let few = classification(&log[..5], &[]);
    let json = serde_json::to_value(&few).unwrap();
    assert_eq!(json["drift"][2]["status"], "insufficient-data");
    assert_eq!(json["drift"][2]["kind"], "categorical");
}

//! Rules that cannot be evaluated say why instead of firing.

use gantry_monitor::{AlertState, Task, evaluate};

use crate::fixture::*;

#[test]
fn unknown_features_the_label_and_a_missing_reference_are_no_data() {
    let reference = reference("species");
    let log = traffic(21, 200, |_, _, _| {});
    let rules = config(&[
        "psi(nope) > 0.2",
        "psi > 0.2 for feature species",
        "psi(X1) > 0.2",
        "prediction_psi > 0.2",
    ]);
    let report = evaluate(
        Some(&reference),
        Some("species"),
        Task::Classification,
        &log,
        &rules,
        NOW,
    );
    assert!(
        report.alerts[..3]
            .iter()
            .all(|a| a.state == AlertState::NoData)
    );
    assert_eq!(
        report.alerts[0].message,
        "psi: feature `nope` is not an input of the reference profile (inputs: x1, x2, color)"
    );
    assert_eq!(
        report.alerts[1].message,
        "psi: feature `species` is the label column; watch it with prediction_psi or prediction_js"
    );
    assert!(
        report.alerts[2].message.contains("`X1` is not an input"),
        "names are case-sensitive"
    );
    assert_eq!(report.alerts[3].state, AlertState::Ok);

    let without = evaluate(
        None,
        Some("species"),
        Task::Classification,
        &log,
        &rules,
        NOW,
    );
    assert!(without.drift.is_empty() && without.prediction_drift.is_none());
    assert!(without.alerts.iter().all(|a| a.state == AlertState::NoData));
    assert_eq!(
        without.alerts[0].message,
        "psi: the deployment has no reference profile to compare with"
    );
    assert_eq!(
        without.alerts[3].message,
        "the deployment has no reference profile to compare predictions with"
    );
    assert!(
        without
            .verdict
            .starts_with("no reference profile, so drift is not checked")
    );

    let unknown_label = evaluate(
        Some(&reference),
        None,
        Task::Classification,
        &log,
        &rules,
        NOW,
    );
    assert!(unknown_label.prediction_drift.is_none());
    // Without a label column every profile column is an input.
    assert_eq!(unknown_label.drift.len(), 4);
    assert_eq!(
        unknown_label.alerts[3].message,
        "the model's label column is unknown, so predictions have no reference"
    );
}

#[test]
fn a_rule_over_all_features_reports_the_worst_and_how_many_cross() {
    let log = traffic(22, 400, |_, _, o| {
        let x1 = input(o, "x1") + 3.0;
        let x2 = input(o, "x2") * 0.5;
        set(o, "x1", serde_json::json!(x1));
        set(o, "x2", serde_json::json!(x2));
    });
    let report = evaluate(
        Some(&reference("species")),
        Some("species"),
        Task::Classification,
        &log,
        &config(&["psi > 0.2", "ks_pvalue < 0.001", "js < 0.0001"]),
        NOW,
    );
    let x1_psi = report.drift[0].psi.unwrap();
    let x2_psi = report.drift[1].psi.unwrap();
    let worst = if x1_psi > x2_psi { "x1" } else { "x2" };
    let psi = &report.alerts[0];
    assert_eq!(psi.feature.as_deref(), Some(worst));
    assert_eq!(psi.value, Some(x1_psi.max(x2_psi)));
    assert!(
        psi.message
            .ends_with("> 0.2 (2 features over the threshold)"),
        "{}",
        psi.message
    );
    // The smallest p-value is the worst.
    let ks = &report.alerts[1];
    let smallest = report
        .drift
        .iter()
        .filter_map(|d| d.ks.map(|k| k.p_value))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(ks.value, Some(smallest));
    assert_eq!(ks.state, AlertState::Firing);
    // `js < x` over all features reads the largest value too: it fires only
    // when every feature is below.
    assert_eq!(report.alerts[2].state, AlertState::Ok);
    assert_eq!(report.firing().count(), 2);
}
